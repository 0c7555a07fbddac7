/*
 * ops_file.c - open files. Three kinds:
 *  - local files (tmp/, or created directly in new/ or cur/): contents in
 *    an fbuf here; a direct create is delivered at flush, fsync or close
 *    and its errors are returned there;
 *  - messages: immutable, read with FETCH, cached by the kernel
 *    (keep_cache);
 *  - other files (dovecot-uidlist, indexes, lock files): whole small
 *    objects, read with GET at open, written back with one PUT at flush,
 *    fsync or close when changed. Exclusive create is an exclusive PUT,
 *    so dotlocks work across mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "mount.h"

static struct fhandle *
fh_of(struct fuse_file_info *fi)
{
	return (struct fhandle *)(uintptr_t)fi->fh;
}

int
put_buf(struct mount *m, const char *path, struct fbuf *b, int excl,
    const struct mst_attr *a, struct mst_attr *out)
{
	struct mst_put_req q = { .path = mst_str_of(path),
		.flags = excl ? MST_PUT_EXCL : 0, .mode = a->mode,
		.uid = a->uid, .gid = a->gid };
	struct mst_attr_rep ar;
	const uint8_t *p;
	struct mreply r;
	uint8_t head[MST_PATH_MAX + 64];
	int rc, len;

	rc = fbuf_map(b, &p);
	if (rc < 0)
		return rc;
	q.body_size = b->size;
	q.checksum = mst_checksum(p, (size_t)b->size);
	len = mst_put_req_encode(&q, head, sizeof head);
	rc = mconn_call(m->conn, MST_OP_PUT, head, (size_t)len, p,
	    (size_t)b->size, 0, &r);
	fbuf_unmap(b, p);
	if (rc == 0)
		rc = attr_from(&r, &ar);
	if (rc == 0 && out)
		*out = ar.attr;
	mreply_free(&r);
	return rc;
}

/* GET a whole small file into |b|. */
static int
get_all(struct mount *m, const char *path, struct fbuf *b)
{
	struct mst_get_req q = { .path = mst_str_of(path) };
	struct mst_data_rep d;
	struct mreply r;
	uint8_t head[MST_PATH_MAX + 32];
	uint64_t total = 1;
	int rc = 0, len;

	while (rc == 0 && q.offset < total) {
		q.length = 1u << 20;
		len = mst_get_req_encode(&q, head, sizeof head);
		rc = mconn_call(m->conn, MST_OP_GET, head, (size_t)len, NULL,
		    0, 1, &r);
		if (rc == 0)
			rc = r.nframes == 1 ? mst_data_rep_decode(&d,
			    r.frames[0].p, r.frames[0].len) : -EPROTO;
		if (rc == 0) {
			total = d.total_size;
			rc = d.data.len ? fbuf_write(b, m, d.data.p, d.data.len,
			    q.offset) : 0;
			q.offset += d.data.len;
			if (d.data.len == 0 && q.offset < total)
				rc = -EIO;	/* no progress */
		}
		mreply_free(&r);
	}
	if (rc == 0 && total == 0)
		rc = fbuf_truncate(b, m, 0);
	return rc;
}

/* Deliver a file created directly in new/ or cur/: once. */
static int
deliver_pending(struct mount *m, struct fhandle *h)
{
	struct minode *n = h->n, *dir;
	struct mst_attr a;
	char name[MST_NAME_MAX + 1];
	int rc;

	pthread_mutex_lock(&m->mu);
	dir = n->parent;
	if (h->delivered || n->unlinked || !dir->folder) {
		pthread_mutex_unlock(&m->mu);
		return 0;
	}
	snprintf(name, sizeof name, "%s", n->name);
	a = n->attr;
	pthread_mutex_unlock(&m->mu);
	rc = do_deliver(m, dir, name, n->buf, a.mode, a.uid, a.gid, &a);
	if (rc == 0) {
		h->delivered = 1;
		pthread_mutex_lock(&m->mu);
		inode_delivered(m, n, &a);	/* the store has it now */
		pthread_mutex_unlock(&m->mu);
		inval_queue(m, dir->ino, name);
	}
	return rc;
}

/* Write back whatever this handle owes the store. */
static int
handle_sync(struct mount *m, struct fhandle *h)
{
	char path[MST_PATH_MAX + 1];
	struct mst_attr a, out;
	int rc;

	if (h->n->local)
		return h->n->parent->folder ? deliver_pending(m, h) : 0;
	if (!h->dirty || h->delivered)
		return 0;
	pthread_mutex_lock(&m->mu);
	rc = inode_path(h->n, path, sizeof path);
	a = h->n->attr;
	pthread_mutex_unlock(&m->mu);
	if (rc == 0)
		rc = put_buf(m, path, h->buf, 0, &a, &out);
	if (rc == 0) {
		h->dirty = 0;
		pthread_mutex_lock(&m->mu);
		h->n->attr = out;
		h->n->attr_at_ms = mono_ms();
		pthread_mutex_unlock(&m->mu);
	}
	return rc;
}

static struct fhandle *
handle_new(struct minode *n, int flags)
{
	struct fhandle *h = calloc(1, sizeof *h);

	if (h == NULL)
		return NULL;
	h->n = n;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	if (n->local)
		h->buf = n->buf;	/* the inode's: it outlives the handle */
	return h;
}

/* Never touches h->n: it may be gone once the handle is closed. */
static void
handle_free(struct fhandle *h)
{
	if (h && h->own_buf)
		fbuf_free(h->buf);
	free(h);
}

static int
do_create(struct mount *m, fuse_ino_t parent, const char *name, mode_t mode,
    int flags, const struct fuse_ctx *ctx, struct fhandle **out)
{
	char path[MST_PATH_MAX + 1];
	struct mst_attr a = { .type = MST_T_FILE, .mode = mode & 07777,
		.uid = ctx->uid, .gid = ctx->gid };
	struct minode *p, *n;
	struct fbuf *b;
	int rc;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	if (p == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	inode_new_owner(p, ctx, 0, &a);
	if (p->dkind != DK_PLAIN) {
		n = inode_local_find(m, p, name);
		if (n == NULL && p->folder && folder_find(p->folder, name))
			rc = -EEXIST;
		else if (n && (flags & O_EXCL))
			rc = -EEXIST;
		else if (n == NULL &&
		    (n = inode_local_new(m, p, name, mode)) == NULL)
			rc = -ENOMEM;
		else
			rc = 0;
		if (rc == 0) {
			n->attr.uid = a.uid;
			n->attr.gid = a.gid;
			if (flags & O_TRUNC)
				rc = fbuf_truncate(n->buf, m, 0);
		}
		if (rc == 0 && (*out = handle_new(n, flags)) == NULL)
			rc = -ENOMEM;
		if (rc == 0) {
			n->nlookup++;
			n->nopen++;
		}
		pthread_mutex_unlock(&m->mu);
		return rc;
	}
	rc = inode_child_path(p, name, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	b = fbuf_new();
	if (b == NULL)
		return -ENOMEM;
	/* Always exclusive: the kernel calls create only when it found no
	 * entry; if another host made one meanwhile, open that instead. */
	rc = put_buf(m, path, b, 1, &a, &a);
	if (rc == -EEXIST && !(flags & O_EXCL)) {
		struct mreply r;
		struct mst_attr_rep ar;

		rc = call_path(m, MST_OP_LOOKUP, path, &r);
		if (rc == 0)
			rc = attr_from(&r, &ar);
		mreply_free(&r);
		if (rc == 0 && !(flags & O_TRUNC))
			rc = get_all(m, path, b);
		a = ar.attr;
	}
	if (rc < 0) {
		fbuf_free(b);
		return rc;
	}
	pthread_mutex_lock(&m->mu);
	n = inode_remote(m, p, name, &a, 1);
	if (n && (*out = handle_new(n, flags)) != NULL) {
		(*out)->buf = b;
		(*out)->own_buf = 1;
		(*out)->dirty = (flags & O_TRUNC) && a.size;
		n->nopen++;
	} else {
		if (n)
			inode_forget(m, n, 1);
		fbuf_free(b);
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void
op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fuse_entry_param e = { 0 };
	struct fhandle *h = NULL;
	int rc = do_create(m, parent, name, mode, fi->flags, fuse_req_ctx(req),
	    &h);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	/* tmp/ files owe the store nothing at close: skip FLUSH. */
	fi->noflush = h->n->local && h->n->parent->dkind == DK_TMP;
	e.ino = h->n->ino;
	e.generation = 1;
	e.attr_timeout = e.entry_timeout = m->entry_timeout;
	pthread_mutex_lock(&m->mu);
	inode_stat(h->n, &e.attr);
	pthread_mutex_unlock(&m->mu);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		pthread_mutex_lock(&m->mu);
		inode_forget(m, h->n, 1);
		inode_close(m, h->n);
		pthread_mutex_unlock(&m->mu);
		handle_free(h);
	}
}

static int
do_open(struct mount *m, fuse_ino_t ino, struct fuse_file_info *fi,
    struct fhandle **out)
{
	char path[MST_PATH_MAX + 1], dpath[MST_PATH_MAX + 1];
	struct mst_str mb = { 0 }, fo;
	struct minode *n;
	struct fhandle *h;
	int rc = 0, get = 0;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n == NULL)
		rc = -ESTALE;
	else if (n->attr.type == MST_T_DIR)
		rc = -EISDIR;
	else if (n->attr.type == MST_T_MSG && (fi->flags & O_ACCMODE) !=
	    O_RDONLY)
		rc = -EPERM;		/* message bodies are immutable */
	else if ((h = handle_new(n, fi->flags)) == NULL)
		rc = -ENOMEM;
	if (rc == 0) {
		n->nopen++;
		if (n->local && (fi->flags & O_TRUNC))
			rc = fbuf_truncate(n->buf, m, 0);
		if (n->attr.type == MST_T_MSG) {
			rc = inode_path(n->parent, dpath, sizeof dpath);
			(void)inode_classify(m, dpath, &mb, &fo);
			snprintf(h->mailbox, sizeof h->mailbox, "%.*s",
			    (int)mb.len, mb.p ? mb.p : "");
			fi->keep_cache = 1;
		} else if (!n->local) {
			get = 1;
			rc = inode_path(n, path, sizeof path);
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (rc == 0 && get) {
		h->buf = fbuf_new();
		h->own_buf = 1;
		if (h->buf == NULL)
			rc = -ENOMEM;
		else if (fi->flags & O_TRUNC)
			h->dirty = 1;
		else
			rc = get_all(m, path, h->buf);
	}
	if (rc < 0 && n && h) {
		pthread_mutex_lock(&m->mu);
		inode_close(m, n);
		pthread_mutex_unlock(&m->mu);
		handle_free(h);
	}
	if (rc == 0)
		*out = h;
	return rc;
}

void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fhandle *h = NULL;
	int rc = do_open(m, ino, fi, &h);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&m->mu);
		inode_close(m, h->n);
		pthread_mutex_unlock(&m->mu);
		handle_free(h);
	}
}

/* FETCH a message range into |out|. */
static ssize_t
fetch(struct mount *m, struct fhandle *h, char *out, size_t size, off_t off)
{
	struct mst_fetch_req q = { .mailbox = mst_str_of(h->mailbox),
		.id = h->n->attr.id };
	struct mst_data_rep d;
	struct mreply r;
	uint8_t head[MST_PATH_MAX + 32];
	size_t got = 0;
	int rc = 0, len;

	while (rc == 0 && got < size) {
		q.offset = (uint64_t)off + got;
		q.length = (uint32_t)(size - got);
		len = mst_fetch_req_encode(&q, head, sizeof head);
		rc = mconn_call(m->conn, MST_OP_FETCH, head, (size_t)len, NULL,
		    0, 1, &r);
		if (rc == 0)
			rc = r.nframes == 1 ? mst_data_rep_decode(&d,
			    r.frames[0].p, r.frames[0].len) : -EPROTO;
		if (rc == 0) {
			memcpy(out + got, d.data.p, d.data.len);
			got += d.data.len;
			if (d.data.len == 0)
				size = got;	/* end of the message */
		}
		mreply_free(&r);
	}
	return rc < 0 ? rc : (ssize_t)got;
}

/* A read of a message answered from mconn's thread. */
static void
read_done(void *arg, struct mreply *r)
{
	fuse_req_t req = arg;
	struct mst_data_rep d;
	int rc = r->status;

	if (rc == 0)
		rc = r->nframes == 1 ? mst_data_rep_decode(&d, r->frames[0].p,
		    r->frames[0].len) : -EPROTO;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, (const char *)d.data.p, d.data.len);
	mreply_free(r);
}

/* One FETCH for a read that fits a reply frame (the kernel asks for at
 * most 128 KiB): the worker does not wait for the store. 1 when sent. */
static int
read_async(struct mount *m, fuse_req_t req, struct fhandle *h, size_t size,
    off_t off)
{
	struct mst_fetch_req q = { .mailbox = mst_str_of(h->mailbox),
		.id = h->n->attr.id, .offset = (uint64_t)off,
		.length = (uint32_t)size };
	uint8_t head[MST_PATH_MAX + 32];
	int len;

	if (size + 64 > mconn_max_frame(m->conn))
		return 0;
	len = mst_fetch_req_encode(&q, head, sizeof head);
	return len >= 0 && mconn_call_async(m->conn, MST_OP_FETCH, head,
	    (size_t)len, NULL, 0, 1, read_done, req) == 0;
}

void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fhandle *h = fh_of(fi);
	char *buf;
	ssize_t n;

	(void)ino;
	if (h->buf == NULL && read_async(m, req, h, size, off))
		return;			/* read_done replies */
	buf = malloc(size ? size : 1);
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (h->buf) {
		pthread_mutex_lock(&m->mu);
		n = fbuf_read(h->buf, buf, size, (uint64_t)off);
		pthread_mutex_unlock(&m->mu);
	} else {
		n = fetch(m, h, buf, size, off);
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void
op_write(fuse_req_t req, fuse_ino_t ino, const char *p, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fhandle *h = fh_of(fi);
	int rc;

	(void)ino;
	if (h->buf == NULL || h->delivered) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&m->mu);
	rc = fbuf_write(h->buf, m, p, size, (uint64_t)off);
	if (rc == 0)
		h->dirty = 1;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void
op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = handle_sync(mount_of(req), fh_of(fi));

	(void)ino;
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	int rc = handle_sync(mount_of(req), fh_of(fi));

	(void)ino;
	(void)datasync;
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fhandle *h = fh_of(fi);
	int rc = handle_sync(m, h);

	(void)ino;
	if (rc < 0)
		syslog(LOG_ERR, "mount.mstore: write-back of %s at close: %s",
		    h->n->name, strerror(-rc));
	pthread_mutex_lock(&m->mu);
	inode_close(m, h->n);
	pthread_mutex_unlock(&m->mu);
	handle_free(h);
	fuse_reply_err(req, 0);
}
