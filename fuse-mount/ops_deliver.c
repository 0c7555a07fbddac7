/*
 * ops_deliver.c - the operations that make a delivery: link() or
 * rename() of a tmp/ file into new/ or cur/ is one DELIVER carrying the
 * whole body, its checksum and a fresh idempotency id, answered only once
 * the store has made it durable (a retry after a reconnection reuses the
 * id, so the message is stored once). Renames within new/ and cur/ of one
 * folder are SETINFO; other renames are RENAME. A hard link of an
 * ordinary file is one LINK in the store; a link of a message into
 * another folder gets EXDEV, which Maildir writers (Dovecot's COPY)
 * answer by copying.
 *
 * The body goes out from the tmp/ file's own buffer (memory, or a
 * mapping of its spool file), not from a copy: the buffer is pinned
 * (fbuf_pin) from before the DELIVER is encoded until its answer is in,
 * and a write to the file meanwhile fails with ETXTBSY.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"
#include "store.h"

/* Encode a DELIVER of |b| as |dir|/|name| into |head| and map its body
 * (*body_out; body_done once answered). |b| is pinned by the caller.
 * Returns the head's length. */
static int
deliver_encode(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, const struct mst_attr *sa, uint8_t *head, size_t cap,
    const uint8_t **body_out)
{
	char dpath[MST_PATH_MAX + 1];
	unsigned sub;
	int rc;

	pthread_mutex_lock(&m->mu);
	rc = inode_path(dir, dpath, sizeof dpath);
	sub = dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	return store_deliver_encode(dpath, sub, name, b, sa, head, cap,
	    body_out);
}

/* The DELIVER that sent |b|'s view |p| is answered (or was never sent:
 * then |p| may be NULL, nothing was mapped). */
static void
body_done(struct mount *m, struct fbuf *b, const uint8_t *p)
{
	if (p != NULL)
		fbuf_unmap(b, p);
	pthread_mutex_lock(&m->mu);
	fbuf_unpin(b);
	pthread_mutex_unlock(&m->mu);
}

/* The store's answer to a DELIVER: the new entry joins the folder cache
 * and the directory's mtime moves on. */
static int
deliver_finish(struct mount *m, struct minode *dir, const char *name,
    const struct mreply *r, struct mst_attr *attr_out)
{
	struct mst_attr_rep ar;
	int rc = r->status;

	if (rc == 0)
		rc = attr_from(r, &ar);
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

int
do_deliver(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, mode_t mode, uid_t uid, gid_t gid,
    struct mst_attr *attr_out)
{
	struct mst_attr sa = { .mode = mode, .uid = uid, .gid = gid };
	uint8_t head[2 * MST_PATH_MAX + 128];
	const uint8_t *p = NULL;
	struct mreply r;
	int rc, len;

	pthread_mutex_lock(&m->mu);
	fbuf_pin(b);
	pthread_mutex_unlock(&m->mu);
	len = deliver_encode(m, dir, name, b, &sa, head, sizeof head, &p);
	if (len < 0) {
		body_done(m, b, NULL);
		return len;
	}
	rc = store_deliver(m, head, (size_t)len, p, (size_t)b->size, &r);
	body_done(m, b, p);
	if (rc == 0)
		rc = deliver_finish(m, dir, name, &r, attr_out);
	mreply_free(&r);
	return rc;
}

/* A link() waiting for its DELIVER: answered from mconn's thread. */
struct link_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *src, *dir;
	struct fbuf *b;		/* src's, pinned */
	const uint8_t *body;	/* its view, sent */
	char name[MST_NAME_MAX + 1];
};

static void
link_done(void *arg, struct mreply *r)
{
	struct link_wait *w = arg;
	struct mount *m = w->m;
	struct minode *n = NULL;
	struct mst_attr a;
	int rc = deliver_finish(m, w->dir, w->name, r, &a);

	mreply_free(r);
	body_done(m, w->b, w->body);
	pthread_mutex_lock(&m->mu);
	inode_close(m, w->src);
	if (rc == 0 && (n = node_remote(m, w->dir, w->name, &a, 1)) == NULL)
		rc = -ENOMEM;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		fuse_reply_err(w->req, -rc);
	else
		reply_entry(w->req, m, n);
	free(w);
}

/*
 * link(tmp/X, new/Y): deliver, and keep tmp/X as it is. The DELIVER goes
 * out and the worker thread returns; the reply to the kernel is sent
 * when the store has answered (link_done), so a worker is not held for a
 * round trip and a group commit.
 */
static int
do_link(struct mount *m, fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	uint8_t head[2 * MST_PATH_MAX + 128];
	struct link_wait *w;
	struct minode *src, *dir;
	const uint8_t *p = NULL;
	struct mst_attr sa;
	struct fbuf *b = NULL;
	int rc, len;

	if (strlen(newname) > MST_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&m->mu);
	src = inode_get(m, ino);
	dir = inode_get(m, newparent);
	if (src && dir && is_ofile(src) && dir->dkind == DK_PLAIN) {
		pthread_mutex_unlock(&m->mu);
		rc = ofile_link(m, src, dir, newname);
		if (rc == 0)
			reply_entry(req, m, src);
		return rc;
	}
	if (src == NULL || dir == NULL)
		rc = -ESTALE;
	else if (!src->local || dir->folder == NULL)
		rc = -EXDEV;
	else if (inode_local_find(m, dir, newname) ||
	    folder_find(dir->folder, newname))
		rc = -EEXIST;
	else
		rc = 0;
	if (rc == 0) {
		/* One reference for link_done, one for us until the body is
		 * unmapped: link_done may run before mconn_call_async
		 * returns. */
		src->nopen += 2;
		b = src->buf;
		fbuf_pin(b);	/* until link_done */
		sa = src->attr;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	w = calloc(1, sizeof *w);
	len = w ? deliver_encode(m, dir, newname, b, &sa, head, sizeof head,
	    &p) : -ENOMEM;
	if (len >= 0) {
		w->req = req;
		w->m = m;
		w->src = src;
		w->dir = dir;
		w->b = b;
		w->body = p;
		strcpy(w->name, newname);
		rc = store_deliver_async(m, head, (size_t)len, p,
		    (size_t)b->size, link_done, w);
	} else {
		rc = len;
		p = NULL;	/* nothing mapped */
	}
	if (rc < 0) {		/* link_done will not run */
		free(w);
		body_done(m, b, p);
	}
	pthread_mutex_lock(&m->mu);
	inode_close(m, src);
	if (rc < 0)
		inode_close(m, src);
	pthread_mutex_unlock(&m->mu);
	return rc;			/* 0: link_done replies */
}

void
op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	int rc = do_link(mount_of(req), req, ino, newparent, newname);

	if (rc < 0)
		fuse_reply_err(req, -rc);
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

/* A rename of a local file into new/ or cur/ waiting for its DELIVER. */
struct rename_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *n, *dir;
	const uint8_t *body;	/* n->buf's view, sent; n->buf is pinned */
	char name[MST_NAME_MAX + 1];
};

static void
rename_done(void *arg, struct mreply *r)
{
	struct rename_wait *w = arg;
	struct mount *m = w->m;
	struct mst_attr a;
	int rc = deliver_finish(m, w->dir, w->name, r, &a);

	mreply_free(r);
	body_done(m, w->n->buf, w->body);	/* before it can be freed */
	pthread_mutex_lock(&m->mu);
	if (rc == 0) {
		rc = inode_move(m, w->n, w->dir, w->name);
		inode_delivered(m, w->n, &a);
	}
	inode_close(m, w->n);
	pthread_mutex_unlock(&m->mu);
	/* The kernel's dentry keeps the local inode: have it look again. */
	if (rc == 0)
		inval_queue(m, w->dir->ino, w->name);
	fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	free(w);
}

/* Send the DELIVER for rename(tmp/X, new/Y); 1 when rename_done will
 * answer the kernel, or a negative errno. n->nopen holds two references
 * for us on entry (see do_link), and n->buf is pinned. */
static int
rename_deliver(struct mount *m, fuse_req_t req, struct minode *n,
    struct minode *np, const char *newname, const struct mst_attr *a)
{
	uint8_t head[2 * MST_PATH_MAX + 128];
	struct rename_wait *w = calloc(1, sizeof *w);
	const uint8_t *p = NULL;
	int rc, len;

	len = w ? deliver_encode(m, np, newname, n->buf, a, head, sizeof head,
	    &p) : -ENOMEM;
	if (len >= 0) {
		w->req = req;
		w->m = m;
		w->n = n;
		w->dir = np;
		w->body = p;
		strcpy(w->name, newname);
		rc = store_deliver_async(m, head, (size_t)len, p,
		    (size_t)n->buf->size, rename_done, w);
	} else {
		rc = len;
		p = NULL;	/* nothing mapped */
	}
	if (rc < 0) {		/* rename_done will not run */
		free(w);
		body_done(m, n->buf, p);
	}
	pthread_mutex_lock(&m->mu);
	inode_close(m, n);
	if (rc < 0)
		inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
	return rc < 0 ? rc : 1;
}

/* A local file moves: deliver it, PUT it, or move it within tmp/. */
static int
rename_local(struct mount *m, fuse_req_t req, struct minode *n,
    struct minode *np, const char *newname, unsigned flags)
{
	char path[MST_PATH_MAX + 1];
	struct minode *old;
	struct mst_attr a;
	int rc;

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
	if (np->folder) {
		if (strlen(newname) > MST_NAME_MAX) {
			pthread_mutex_unlock(&m->mu);
			return -ENAMETOOLONG;
		}
		n->nopen += 2;
		fbuf_pin(n->buf);	/* until rename_done */
		pthread_mutex_unlock(&m->mu);
		return rename_deliver(m, req, n, np, newname, &a);
	}
	n->nopen++;
	rc = inode_child_path(np, newname, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (rc == 0)
		rc = put_buf(m, path, n->buf, flags & RENAME_NOREPLACE, &a, &a);
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

/* A rename within the store, answered from mconn's thread. Directory
 * minodes are never freed, so |p| and |np| outlive the request. */
struct move_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *p, *np;
	char name[MST_NAME_MAX + 1], newname[MST_NAME_MAX + 1];
};

static void
moved(void *arg, struct mreply *r)
{
	struct move_wait *w = arg;
	struct mount *m = w->m;
	struct mst_attr_rep ar;
	struct minode *n;
	int rc = r->status;

	if (rc == 0)
		rc = attr_from(r, &ar);
	mreply_free(r);
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		if (w->p->folder)
			folder_del(w->p->folder, w->name);
		if (w->np->folder)
			folder_put(w->np->folder, w->newname, &ar.attr);
		/* One record changed both directories, at one time. */
		folder_touch(w->p, ar.dir_mtime_ns);
		folder_touch(w->np, ar.dir_mtime_ns);
		if (!w->np->folder)
			inode_dir_changed(m, w->np, w->newname);
		if (!w->p->folder && w->p != w->np)
			inode_dir_changed(m, w->p, NULL);
		n = inode_get(m, ar.attr.id);
		if (n && is_ofile(n))	/* its ctime moved, not its data */
			(void)ofile_refresh(n, &ar.attr);
		if (n)
			rc = inode_move(m, n, w->np, w->newname);
		pthread_mutex_unlock(&m->mu);
		inval_queue(m, w->p->ino, NULL);
		if (w->np != w->p)
			inval_queue(m, w->np->ino, NULL);
	}
	fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	free(w);
}

/* Returns 0, a negative errno, or 1 when a callback answers the kernel. */
static int
do_rename(struct mount *m, fuse_req_t req, fuse_ino_t parent,
    const char *name, fuse_ino_t newparent, const char *newname,
    unsigned flags)
{
	char from[MST_PATH_MAX + 1], to[MST_PATH_MAX + 1];
	char fdir[MST_PATH_MAX + 1], tdir[MST_PATH_MAX + 1];
	struct mst_setinfo_req si = { 0 };
	struct mst_rename_req rn = { 0 };
	struct minode *p, *np, *n;
	struct move_wait *w;
	int rc, setinfo;

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
		return rename_local(m, req, n, np, newname, flags);
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
	} else {
		rn.from = mst_str_of(from);
		rn.to = mst_str_of(to);
		rn.flags = flags & RENAME_NOREPLACE ? MST_RN_NOREPLACE : 0;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -ENOMEM;
	w->req = req;
	w->m = m;
	w->p = p;
	w->np = np;
	snprintf(w->name, sizeof w->name, "%s", name);
	snprintf(w->newname, sizeof w->newname, "%s", newname);
	rc = setinfo ? store_setinfo(m, &si, moved, w) :
	    store_rename(m, &rn, moved, w);
	if (rc < 0) {
		free(w);
		return rc;
	}
	return 1;			/* moved() replies */
}

void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	int rc = do_rename(mount_of(req), req, parent, name, newparent,
	    newname, flags);

	if (rc != 1)
		fuse_reply_err(req, rc < 0 ? -rc : 0);
}
