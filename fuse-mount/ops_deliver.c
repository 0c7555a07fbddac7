/*
 * ops_deliver.c - the operations that make a delivery: link() or
 * rename() of a tmp/ file into new/ or cur/ is one DELIVER carrying the
 * whole body, its checksum and a fresh idempotency id, answered only once
 * the store has made it durable (a retry after a reconnection reuses the
 * id, so the message is stored once). Renames within new/ and cur/ of one
 * folder are SETINFO; other renames are RENAME. Hard links are only
 * deliveries: anything else gets EXDEV, which Maildir writers answer by
 * copying.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mount.h"

int
do_deliver(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, mode_t mode, uid_t uid, gid_t gid,
    struct mst_attr *attr_out)
{
	char dpath[MST_PATH_MAX + 1];
	struct mst_deliver_req q = { .name = mst_str_of(name),
		.mode = mode & 07777, .uid = uid, .gid = gid };
	struct mst_attr_rep ar;
	const uint8_t *p;
	struct mreply r;
	uint8_t head[2 * MST_PATH_MAX + 128];
	int rc, len;

	if (getrandom(q.idem, sizeof q.idem, 0) != sizeof q.idem)
		return -EIO;
	pthread_mutex_lock(&m->mu);
	rc = inode_path(dir, dpath, sizeof dpath);
	q.sub = dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	(void)inode_classify(m, dpath, &q.mailbox, &q.folder);
	rc = fbuf_map(b, &p);
	if (rc < 0)
		return rc;
	q.body_size = b->size;
	q.checksum = mst_checksum(p, (size_t)b->size);
	len = mst_deliver_req_encode(&q, head, sizeof head);
	rc = len < 0 ? len : mconn_call(m->conn, MST_OP_DELIVER, head,
	    (size_t)len, p, (size_t)b->size, 1, &r);
	fbuf_unmap(b, p);
	if (len < 0)
		return len;
	if (rc == 0)
		rc = attr_from(&r, &ar);
	mreply_free(&r);
	if (rc < 0)
		return rc;
	*attr_out = ar.attr;
	pthread_mutex_lock(&m->mu);
	folder_put(dir->folder, name, &ar.attr);
	folder_touch(dir, ar.dir_mtime_ns);
	pthread_mutex_unlock(&m->mu);
	inval_queue(m, dir->ino, NULL);	/* the kernel's cached dir mtime */
	return 0;
}

/* link(tmp/X, new/Y): deliver, and keep tmp/X as it is. */
static int
do_link(struct mount *m, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname, struct minode **out)
{
	struct minode *src, *dir;
	struct mst_attr a, sa;
	struct fbuf *b;
	int rc;

	pthread_mutex_lock(&m->mu);
	src = inode_get(m, ino);
	dir = inode_get(m, newparent);
	if (src == NULL || dir == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	if (!src->local || dir->folder == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -EXDEV;
	}
	if (inode_local_find(m, dir, newname) ||
	    folder_find(dir->folder, newname)) {
		pthread_mutex_unlock(&m->mu);
		return -EEXIST;
	}
	src->nopen++;			/* keep it while we read it */
	b = src->buf;
	sa = src->attr;
	pthread_mutex_unlock(&m->mu);
	rc = do_deliver(m, dir, newname, b, sa.mode, sa.uid, sa.gid, &a);
	pthread_mutex_lock(&m->mu);
	inode_close(m, src);
	*out = rc == 0 ? inode_remote(m, dir, newname, &a, 1) : NULL;
	pthread_mutex_unlock(&m->mu);
	return rc < 0 ? rc : *out ? 0 : -ENOMEM;
}

void
op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	struct mount *m = mount_of(req);
	struct minode *n = NULL;
	int rc = do_link(m, ino, newparent, newname, &n);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, m, n);
}

/* Both in new/ or cur/ of the same mailbox folder? Then it is SETINFO. */
static int
same_folder(struct mount *m, const char *a, const char *b,
    struct mst_setinfo_req *q)
{
	struct mst_str ma, fa, mb, fb;
	enum dkind ka = inode_classify(m, a, &ma, &fa);
	enum dkind kb = inode_classify(m, b, &mb, &fb);

	if ((ka != DK_NEW && ka != DK_CUR) || (kb != DK_NEW && kb != DK_CUR))
		return 0;
	if (ma.len != mb.len || fa.len != fb.len ||
	    memcmp(ma.p, mb.p, ma.len) || memcmp(fa.p, fb.p, fa.len))
		return 0;
	q->mailbox = ma;
	q->folder = fa;
	q->from_sub = ka == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	q->to_sub = kb == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	return 1;
}

/* A local file moves: deliver it, PUT it, or move it within tmp/. */
static int
rename_local(struct mount *m, struct minode *n, struct minode *np,
    const char *newname, unsigned flags)
{
	char path[MST_PATH_MAX + 1];
	struct mst_put_req q = { 0 };
	struct mst_attr_rep ar;
	struct minode *old;
	struct mst_attr a;
	struct mreply r;
	uint8_t head[MST_PATH_MAX + 64];
	const uint8_t *p;
	int rc, len;

	pthread_mutex_lock(&m->mu);
	a = n->attr;
	if (np->dkind == DK_TMP) {
		old = inode_local_find(m, np, newname);
		rc = old && (flags & RENAME_NOREPLACE) ? -EEXIST : 0;
		if (rc == 0 && old)
			inode_local_unlink(m, old);
		if (rc == 0)
			rc = inode_move(m, n, np, newname);
		pthread_mutex_unlock(&m->mu);
		return rc;
	}
	n->nopen++;
	rc = np->folder ? 0 : inode_child_path(np, newname, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (rc == 0 && np->folder) {
		rc = do_deliver(m, np, newname, n->buf, a.mode, a.uid, a.gid,
		    &a);
	} else if (rc == 0) {
		q.path = mst_str_of(path);
		q.flags = flags & RENAME_NOREPLACE ? MST_PUT_EXCL : 0;
		q.mode = a.mode;
		q.uid = a.uid;
		q.gid = a.gid;
		rc = fbuf_map(n->buf, &p);
		if (rc == 0) {
			q.body_size = n->buf->size;
			q.checksum = mst_checksum(p, (size_t)q.body_size);
			len = mst_put_req_encode(&q, head, sizeof head);
			rc = mconn_call(m->conn, MST_OP_PUT, head, (size_t)len,
			    p, (size_t)q.body_size, 0, &r);
			fbuf_unmap(n->buf, p);
			if (rc == 0)
				rc = attr_from(&r, &ar);
			if (rc == 0)
				a = ar.attr;
			mreply_free(&r);
		}
	}
	pthread_mutex_lock(&m->mu);
	if (rc == 0) {
		rc = inode_move(m, n, np, newname);
		inode_delivered(m, n, &a);
	}
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
	/* The kernel's dentry keeps the local inode: have it look again. */
	if (rc == 0)
		inval_queue(m, np->ino, newname);
	return rc;
}

static int
do_rename(struct mount *m, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned flags)
{
	char from[MST_PATH_MAX + 1], to[MST_PATH_MAX + 1];
	char fdir[MST_PATH_MAX + 1], tdir[MST_PATH_MAX + 1];
	struct mst_setinfo_req si = { 0 };
	struct mst_rename_req rn = { 0 };
	struct mst_attr_rep ar;
	struct minode *p, *np, *n;
	struct fentry *fe;
	struct mreply r;
	uint8_t buf[2 * MST_PATH_MAX + 64];
	int rc, len, setinfo;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;		/* RENAME_EXCHANGE, WHITEOUT */
	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	np = inode_get(m, newparent);
	if (p == NULL || np == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	n = inode_local_find(m, p, name);
	if (n) {
		pthread_mutex_unlock(&m->mu);
		return rename_local(m, n, np, newname, flags);
	}
	if (p->dkind == DK_TMP || np->dkind == DK_TMP) {
		pthread_mutex_unlock(&m->mu);
		return p->dkind == DK_TMP ? -ENOENT : -EXDEV;
	}
	rc = inode_child_path(p, name, from, sizeof from);
	if (rc == 0)
		rc = inode_child_path(np, newname, to, sizeof to);
	if (rc == 0)
		rc = inode_path(p, fdir, sizeof fdir);
	if (rc == 0)
		rc = inode_path(np, tdir, sizeof tdir);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	setinfo = same_folder(m, fdir, tdir, &si);
	if (setinfo) {
		si.from_name = mst_str_of(name);
		si.to_name = mst_str_of(newname);
		si.flags = flags & RENAME_NOREPLACE ? MST_RN_NOREPLACE : 0;
		len = mst_setinfo_req_encode(&si, buf, sizeof buf);
	} else {
		rn.from = mst_str_of(from);
		rn.to = mst_str_of(to);
		rn.flags = flags & RENAME_NOREPLACE ? MST_RN_NOREPLACE : 0;
		len = mst_rename_req_encode(&rn, buf, sizeof buf);
	}
	rc = mconn_call(m->conn, setinfo ? MST_OP_SETINFO : MST_OP_RENAME, buf,
	    (size_t)len, NULL, 0, 0, &r);
	if (rc == 0)
		rc = attr_from(&r, &ar);
	mreply_free(&r);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	if (p->folder && (fe = folder_find(p->folder, name)) != NULL)
		folder_del(p->folder, name);
	if (np->folder)
		folder_put(np->folder, newname, &ar.attr);
	/* One record changed both directories, at one time. */
	folder_touch(p, ar.dir_mtime_ns);
	folder_touch(np, ar.dir_mtime_ns);
	n = inode_get(m, ar.attr.id);
	if (n)
		rc = inode_move(m, n, np, newname);
	pthread_mutex_unlock(&m->mu);
	inval_queue(m, p->ino, NULL);
	if (np != p)
		inval_queue(m, np->ino, NULL);
	return rc;
}

void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	int rc = do_rename(mount_of(req), parent, name, newparent, newname,
	    flags);

	fuse_reply_err(req, rc < 0 ? -rc : 0);
}
