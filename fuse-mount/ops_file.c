/*
 * ops_file.c - open files; each op_* a thin adapter over a do_* core
 * (see mount.h for the layers). Three kinds:
 *  - local files (tmp/, or created directly in new/ or cur/): contents in
 *    an fbuf here (for a tmp/ file with the kernel's passthrough, a
 *    spool file that the kernel reads and writes itself: passthru.c); a
 *    direct create is delivered at flush, fsync or close and its errors
 *    are returned there;
 *  - messages: immutable, read with FETCH, cached by the kernel
 *    (keep_cache);
 *  - ordinary files (dovecot-uidlist, indexes, lock files...): state in
 *    the store, addressed by object id, shared by every open on every
 *    host. The kernel's page cache is the only cache here: a write()
 *    goes into it and, as one WRITE, to the store before the call
 *    returns, so every descriptor, mmap and stat on this host sees it at
 *    once and it is durable when write() returns. Pages are dropped when
 *    the store says another host changed the file (a notice, or a newer
 *    change counter found at open or at a lock grant): close-to-open
 *    consistency, and lock-to-lock for programs that lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "mount.h"
#include "store.h"

static struct fhandle *
fh_of(struct fuse_file_info *fi)
{
	return (struct fhandle *)(uintptr_t)fi->fh;
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

/* Deliver what a direct create in new/ or cur/ owes the store. Ordinary
 * files owe nothing: their writes were durable when they returned. */
static int
handle_sync(struct mount *m, struct fhandle *h)
{
	if (h->n->local && h->n->parent->folder)
		return deliver_pending(m, h);
	return 0;
}

/* mu held. A handle that may write a local file counts in m->writers
 * until handle_free. */
static struct fhandle *
handle_new(struct mount *m, struct minode *n, int flags)
{
	struct fhandle *h = calloc(1, sizeof *h);

	if (h == NULL)
		return NULL;
	h->n = n;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	h->append = (flags & O_APPEND) != 0;
	if (n->local)
		h->buf = n->buf;	/* the inode's: it outlives the handle */
	else
		h->ofile = n->attr.type == MST_T_FILE;
	if (n->local && h->writable) {
		h->writer = 1;
		m->writers++;
	}
	return h;
}

/*
 * Local files (tmp/ files, and direct creates in new/ or cur/ until
 * delivered) are opened for direct I/O: each write(2) comes here as it
 * is (up to max_write, 1 MiB, in one WRITE) and never goes through the
 * kernel's page cache. Through the page cache, every write(2) would
 * first cost a GETXATTR of security.capability (FUSE file systems never
 * get the kernel's no-setuid shortcut, and ops_xattr.c answers getxattr,
 * so the kernel must ask each time whether privileges need dropping):
 * one request more per write(2), 256 of them for a 1 MiB message written
 * in 4 KiB pieces. Their contents live here (fbuf) anyway; reads come
 * from there. A tmp/ file cannot be mapped shared and writable (the
 * kernel answers mmap with ENODEV); no Maildir writer does that. The
 * privilege drop the kernel no longer makes is do_write's.
 */
static int
local_direct(struct mount *m, const struct fhandle *h)
{
	int local;

	pthread_mutex_lock(&m->mu);
	local = h->n->local;
	pthread_mutex_unlock(&m->mu);
	return local;
}

/*
 * A tmp/ file whose buffer is a passthrough backing file (passthru.c)
 * is opened with it, every time: the kernel refuses (EIO) any other
 * open of an inode that has a backing file while one is open, and a
 * reader must see what the kernel wrote. Also a message delivered from
 * it (rename) while a handle opened so is still open: its bytes are the
 * message's. Not a file moved out to an ordinary name: its I/O is the
 * store's, so the kernel's EIO is the answer until those handles close.
 * Sets up |fi| and returns the backing id to send, or 0 for an open as
 * without passthrough.
 */
static int
open_backed(struct mount *m, struct fhandle *h, struct fuse_file_info *fi)
{
	struct minode *n = h->n;
	int bid = 0;

	pthread_mutex_lock(&m->mu);
	if (n->buf && n->buf->bid > 0 && (n->local ||
	    (n->pt_opens > 0 && n->attr.type == MST_T_MSG))) {
		bid = n->buf->bid;
		h->pt = 1;
		n->pt_opens++;
	}
	pthread_mutex_unlock(&m->mu);
	if (bid) {
		fi->direct_io = 0;	/* the kernel's I/O, not ours */
		fi->keep_cache = 0;	/* not allowed with passthrough */
	}
	return bid;
}

/* |h| goes (mu held): it no longer counts as opened with passthrough. */
static void
close_backed(struct fhandle *h)
{
	if (h->pt) {
		h->n->pt_opens--;
		h->pt = 0;
	}
}

/* Never touches h->n: it may be gone once the handle is closed. mu NOT
 * held. */
static void
handle_free(struct mount *m, struct fhandle *h)
{
	if (h && h->writer) {
		pthread_mutex_lock(&m->mu);
		m->writers--;
		pthread_mutex_unlock(&m->mu);
	}
	if (h && h->own_buf)
		fbuf_free(h->buf);
	free(h);
}

/* --- ordinary files --- */

int
ofile_getattr(struct mount *m, struct minode *n)
{
	struct mst_attr a;
	uint64_t id;
	int fetch, known, rc;

	pthread_mutex_lock(&m->mu);
	fetch = n->stale || mono_ms() - n->attr_at_ms >=
	    (int64_t)(m->entry_timeout * 1000);
	/* Known by its name (minode.pos), the attributes a lookup would
	 * answer from memory answer a getattr too, past the timeout: a
	 * change elsewhere marks the file stale by its notice (checked as
	 * do_lookup does, with the home connection's input dispatched). */
	known = fetch && !n->stale && inode_file_known(m, n);
	if (known && !route_rx_quiet(m->route)) {
		pthread_mutex_unlock(&m->mu);
		known = route_rx_settle(m->route, MNT_RX_SETTLE_MS);
		pthread_mutex_lock(&m->mu);
		known = known && !n->stale && inode_file_known(m, n);
	}
	if (known)
		fetch = 0;
	id = n->attr.id;
	pthread_mutex_unlock(&m->mu);
	if (!fetch)
		return 0;
	rc = store_getattr(m, id, &a);
	if (rc == -ENOENT)
		rc = -ESTALE;		/* gone from the store */
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	if (ofile_refresh(n, &a))
		n->epoch++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/*
 * The store holds an ordinary file for this mount while it is open here
 * (so that it outlives an unlink): every open takes its own OPEN, and
 * waits for it, before the kernel may read the file; its release sends
 * CLOSE. Holding first closes the window in which another process could
 * rename over or unlink the name between our look at the file and the
 * hold: a page fault on a mapping would then find the file gone, and the
 * kernel answers that with SIGBUS. n->store_open counts the holds that
 * the store granted on this connection (on_up takes them again after a
 * reconnect); it changes under m->mu. CLOSE is sent after m->mu is let
 * go: putting it on the wire may wait for the socket (behind a large
 * DELIVER) for as long as the request timeout, and every operation of
 * the mount would wait with it. It still goes out before any later OPEN
 * of the file: n->closing counts the CLOSEs decided and not yet handed
 * to the connection, and an OPEN waits for them (close_cv), so the store
 * sees the holds of one file in the order this mount took and let go of
 * them.
 */
static int
ofile_hold(struct mount *m, struct minode *n, struct mst_attr *a)
{
	uint64_t id;
	int rc;

	pthread_mutex_lock(&m->mu);
	while (n->closing > 0)
		pthread_cond_wait(&m->close_cv, &m->mu);
	id = n->attr.id;
	pthread_mutex_unlock(&m->mu);
	rc = store_open(m, id, a);
	if (rc == -ENOENT)
		rc = -ESTALE;	/* gone: the kernel looks the name up again */
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	n->store_open++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static void
ofile_unhold(struct mount *m, struct minode *n)
{
	uint64_t id = 0;
	int held;

	pthread_mutex_lock(&m->mu);
	held = n->store_open > 0;
	if (held) {
		n->store_open--;
		n->closing++;
		n->close_wait++;	/* until answered (store_close) */
		id = n->attr.id;
	}
	pthread_mutex_unlock(&m->mu);
	if (!held)
		return;
	/* Handed to the connection when this returns (written, or queued
	 * in order); a failure only ends the hold with the connection. */
	(void)store_close(m, n, id);
	pthread_mutex_lock(&m->mu);
	if (--n->closing == 0)
		pthread_cond_broadcast(&m->close_cv);
	pthread_mutex_unlock(&m->mu);
}

/*
 * The permission bits that an open(O_TRUNC) of an existing file by |uid|
 * leaves. With atomic O_TRUNC the kernel skips its own truncate, and
 * with it what do_truncate() does for a caller without CAP_FSETID
 * (setattr_should_drop_suidgid(), applied by fuse_setattr()): the file
 * is no longer set-user-ID, nor set-group-ID if group-executable. Only
 * the uid is known here, so root stands for CAP_FSETID.
 */
static uint32_t
trunc_mode(uint32_t mode, uid_t uid)
{
	return uid == 0 ? mode : mode_drop_privs(mode);
}

/* Close-to-open: hold the file and learn its state at every open; keep
 * the kernel's pages only if nothing changed since they were read. An
 * O_TRUNC by |uid| also drops privileges (trunc_mode) in the same
 * request. */
static int
ofile_open(struct mount *m, struct minode *n, struct fuse_file_info *fi,
    uid_t uid)
{
	struct mst_fsetattr_req q = { .valid = MST_SA_SIZE | MST_SA_MTIME };
	struct mst_attr a;
	int rc = ofile_hold(m, n, &a);

	if (rc < 0)
		return rc;
	if (fi->flags & O_TRUNC) {	/* the kernel leaves it to us */
		q.id = a.id;
		q.mtime_ns = now_ns();
		q.mode = trunc_mode(a.mode, uid);
		if (q.mode != a.mode)
			q.valid |= MST_SA_MODE;
		rc = store_fsetattr(m, &q, &a);
		if (rc == -ENOENT)
			rc = -ESTALE;
		if (rc < 0) {
			ofile_unhold(m, n);
			return rc;
		}
	}
	pthread_mutex_lock(&m->mu);
	if (ofile_refresh(n, &a)) {
		n->epoch++;
		fi->keep_cache = 0;
	} else {
		fi->keep_cache = 1;
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int
ofile_setattr(struct mount *m, struct minode *n, const struct stat *st,
    int set)
{
	struct mst_fsetattr_req q = { 0 };
	struct mst_attr a;
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&m->mu);
	q.id = n->attr.id;
	pthread_mutex_unlock(&m->mu);
	q.valid = (set & FUSE_SET_ATTR_MODE ? MST_SA_MODE : 0) |
	    (set & FUSE_SET_ATTR_UID ? MST_SA_UID : 0) |
	    (set & FUSE_SET_ATTR_GID ? MST_SA_GID : 0) |
	    (set & FUSE_SET_ATTR_SIZE ? MST_SA_SIZE : 0) |
	    (set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW) ?
	    MST_SA_MTIME : 0) |
	    (set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW) ?
	    MST_SA_ATIME : 0);
	q.mode = st->st_mode & 07777;
	if (q.valid == 0) {
		/* chown(f, -1, -1) and the like (the kernel sends no bits):
		 * only the ctime moves. */
		q.valid = MST_SA_MODE;
		pthread_mutex_lock(&m->mu);
		q.mode = n->attr.mode;
		pthread_mutex_unlock(&m->mu);
	}
	if (q.valid == 0)
		return 0;
	q.uid = st->st_uid;
	q.gid = st->st_gid;
	q.size = (uint64_t)st->st_size;
	q.mtime_ns = set & FUSE_SET_ATTR_MTIME_NOW ? ts_to_ns(&now) :
	    ts_to_ns(&st->st_mtim);
	q.atime_ns = set & FUSE_SET_ATTR_ATIME_NOW ? ts_to_ns(&now) :
	    ts_to_ns(&st->st_atim);
	rc = store_fsetattr(m, &q, &a);
	if (rc == -ENOENT)
		rc = -ESTALE;
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	(void)ofile_refresh(n, &a);	/* our own change: pages stay */
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int
ofile_link(struct mount *m, struct minode *src, struct minode *dir,
    const char *name)
{
	char path[MST_PATH_MAX + 1];
	struct mst_attr_rep ar;
	uint64_t id;
	int rc;

	pthread_mutex_lock(&m->mu);
	id = src->attr.id;
	rc = inode_child_path(dir, name, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (rc == 0)
		rc = store_link(m, id, path, &ar);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	inode_dir_changed(m, dir, NULL);
	(void)ofile_refresh(src, &ar.attr);
	src->nlookup++;
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* A READ or WRITE answered from mconn's thread. */
struct io_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *n;	/* held open by the request's handle */
	uint64_t epoch;		/* n->epoch when the request left */
	uint64_t off;
	size_t size;
	int append;
	uint64_t base;		/* WRITE: the size the kernel had */
	uint8_t last;		/* WRITE: its last byte */
};

/*
 * The kernel takes a file's new size from a write(2) only when the
 * writer runs again after our answer; until then a stat by another
 * process must not see the store's size: it returns what we answer even
 * while the kernel keeps its own, and a mapping made to our size faults
 * past the kernel's end (SIGBUS). Nor may stat answer the old size once
 * the kernel has the new one: it would take it and cut its pages.
 *  - while WRITEs are in flight, stat answers the size from before them
 *    (inode_stat; the kernel ignores sizes answered then);
 *  - once answered, the settler thread stores the write's last byte
 *    again through the kernel (fuse_lowlevel_notify_store), which moves
 *    the kernel's size to the write's end before it returns (it may wait
 *    for the writer to unlock its last page, so it runs on its own
 *    thread: a READ answer from the connection thread may be what that
 *    page waits for);
 *  - meanwhile a stat waits (ofile_settle_wait), bounded.
 */
struct settle {
	struct settle *next;
	struct minode *n;	/* pinned (nopen) */
	fuse_ino_t ino;
	uint64_t end;
	uint8_t last;
};

/* |end|: the size the kernel now has at least (0: unknown). */
static void
settle_done(struct mount *m, struct minode *n, uint64_t end)
{
	pthread_mutex_lock(&m->mu);
	if (end > n->sz_shown && end <= n->attr.size)
		n->sz_shown = end;
	if (--n->wr_settle == 0)
		pthread_cond_broadcast(&m->settled_cv);
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
}

static void
settle_queue(struct mount *m, struct minode *n, uint64_t end, uint8_t last)
{
	struct settle *s = calloc(1, sizeof *s);

	if (s == NULL) {
		settle_done(m, n, 0);	/* stat answers at once again */
		return;
	}
	s->n = n;
	s->ino = n->ino;
	s->end = end;
	s->last = last;
	pthread_mutex_lock(&m->sq_mu);
	if (m->sq_tail)
		m->sq_tail->next = s;
	else
		m->sq_head = s;
	m->sq_tail = s;
	pthread_cond_signal(&m->sq_cv);
	pthread_mutex_unlock(&m->sq_mu);
}

void *
settler_main(void *arg)
{
	struct mount *m = arg;
	struct settle *s;
	int rc;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(1);

	for (;;) {
		pthread_mutex_lock(&m->sq_mu);
		while (m->sq_head == NULL && !m->sq_stop)
			pthread_cond_wait(&m->sq_cv, &m->sq_mu);
		s = m->sq_head;
		if (s && (m->sq_head = s->next) == NULL)
			m->sq_tail = NULL;
		pthread_mutex_unlock(&m->sq_mu);
		if (s == NULL)
			return NULL;
		bv.buf[0].mem = &s->last;
		/* -ENOENT: the kernel dropped the inode; nothing to move. */
		rc = fuse_lowlevel_notify_store(m->se, s->ino,
		    (off_t)(s->end - 1), &bv, 0);
		settle_done(m, s->n, rc == 0 ? s->end : 0);
		free(s);
	}
}

void
settler_stop(struct mount *m)
{
	struct settle *s;

	pthread_mutex_lock(&m->sq_mu);
	if (m->sq_stop) {	/* never started */
		pthread_mutex_unlock(&m->sq_mu);
		return;
	}
	m->sq_stop = 1;
	pthread_cond_broadcast(&m->sq_cv);
	pthread_mutex_unlock(&m->sq_mu);
	pthread_join(m->settler, NULL);
	while ((s = m->sq_head) != NULL) {
		m->sq_head = s->next;
		settle_done(m, s->n, 0);
		free(s);
	}
}

/* A stat waits for its file's settles, at most SETTLE_WAIT_MS: the
 * settler may wait behind a page lock, and a stat must not hang. */
#define SETTLE_WAIT_MS	200

void
ofile_settle_wait(struct mount *m, struct minode *n)
{
	struct timespec until;

	if (n->wr_settle == 0)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += SETTLE_WAIT_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (n->wr_settle > 0)
		if (pthread_cond_timedwait(&m->settled_cv, &m->mu,
		    &until) != 0)
			break;
}

static struct io_wait *
io_wait_new(fuse_req_t req, struct mount *m, struct minode *n, uint64_t off,
    size_t size)
{
	struct io_wait *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->req = req;
	w->m = m;
	w->n = n;
	w->off = off;
	w->size = size;
	pthread_mutex_lock(&m->mu);
	w->epoch = n->epoch;
	pthread_mutex_unlock(&m->mu);
	return w;
}

/* A change from elsewhere may have raced with a read: the kernel is about
 * to cache what the store had before it, so its pages must be dropped
 * again once the reply is in. Asked before the reply (notices run on this
 * same thread, so none comes between), because once the kernel has the
 * reply it may close the file and forget the inode, freeing w->n: the
 * inode number to invalidate, or 0. */
static fuse_ino_t
io_raced(struct io_wait *w)
{
	fuse_ino_t ino;

	pthread_mutex_lock(&w->m->mu);
	ino = w->n->epoch != w->epoch ? w->n->ino : 0;
	pthread_mutex_unlock(&w->m->mu);
	return ino;
}

static void
ofile_read_done(void *arg, struct mreply *r)
{
	struct io_wait *w = arg;
	struct mst_data_rep d;
	int rc = store_data_reply(MST_OP_READ, r, w->size, &d);
	fuse_ino_t raced = io_raced(w);

	if (rc == -ENOENT)
		rc = -ESTALE;
	if (rc < 0)
		fuse_reply_err(w->req, -rc);
	else
		fuse_reply_buf(w->req, (const char *)d.data.p, d.data.len);
	mreply_free(r);
	if (raced)
		inval_queue(w->m, raced, NULL);
	free(w);
}

/* 1 when sent (ofile_read_done answers the kernel), or a negative
 * errno. */
static int
ofile_read(struct mount *m, fuse_req_t req, struct fhandle *h, size_t size,
    off_t off)
{
	struct io_wait *w;
	uint32_t room = route_max_frame(m->route) - 64;
	int rc;

	if (size > room)
		size = room;	/* a short read: the kernel asks again */
	w = io_wait_new(req, m, h->n, (uint64_t)off, size);
	if (w == NULL)
		return -ENOMEM;
	rc = store_read(m, h->n->attr.id, (uint64_t)off, (uint32_t)size,
	    ofile_read_done, w);
	if (rc < 0) {
		free(w);
		return rc;
	}
	return 1;
}

static void
ofile_write_done(void *arg, struct mreply *r)
{
	struct io_wait *w = arg;
	struct mount *m = w->m;
	struct mst_attr_rep ar;
	int rc = store_attr_reply(r, &ar), moved = 0, settle = 0;
	struct minode *n = w->n;
	fuse_ino_t ino = n->ino, raced;

	mreply_free(r);
	if (rc == -ENOENT)
		rc = -ESTALE;
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		/* Our own change: the kernel's pages already hold it. Two
		 * writes' answers may cross: keep the newer. */
		if (ar.attr.change >= w->n->attr.change) {
			w->n->attr = ar.attr;
			w->n->attr_at_ms = mono_ms();
		}
		pthread_mutex_unlock(&m->mu);
		/* An append landed at the store's end, which another host
		 * may have moved: the kernel put the bytes at its own idea
		 * of the end. */
		moved = w->append && ar.attr.size - w->size != w->off;
	}
	raced = rc == 0 ? io_raced(w) : 0;	/* before w->n may go */
	/* Stat keeps answering the old size until the kernel has the new
	 * one (settle_queue); wr_busy drops with wr_settle up. */
	pthread_mutex_lock(&m->mu);
	n->wr_busy--;
	if (rc == 0 && w->off + w->size > w->base) {
		n->wr_settle++;
		n->nopen++;	/* pinned until settled */
		settle = 1;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		fuse_reply_err(w->req, -rc);
	else
		fuse_reply_write(w->req, w->size);
	if (settle)
		settle_queue(m, n, w->off + w->size, w->last);
	if (moved)
		inval_queue(m, ino, NULL);
	else if (raced)
		inval_queue(m, raced, NULL);
	free(w);
}

/* 1 when sent (ofile_write_done answers the kernel), or a negative
 * errno. */
static int
ofile_write(struct mount *m, fuse_req_t req, struct fhandle *h,
    const char *p, size_t size, off_t off)
{
	struct minode *n = h->n;
	struct io_wait *w = io_wait_new(req, m, n, (uint64_t)off, size);
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->append = h->append;
	w->last = size ? (uint8_t)p[size - 1] : 0;
	pthread_mutex_lock(&m->mu);
	if (n->wr_busy++ == 0 && n->wr_settle == 0)
		n->wr_base = n->attr.size;	/* what the kernel has now */
	w->base = n->wr_base;
	pthread_mutex_unlock(&m->mu);
	rc = store_write(m, n->attr.id, (uint64_t)off, h->append, p, size,
	    ofile_write_done, w);
	if (rc < 0) {
		pthread_mutex_lock(&m->mu);
		n->wr_busy--;
		pthread_mutex_unlock(&m->mu);
		free(w);
		return rc;
	}
	return 1;
}

/* --- create and open --- */

/* Create |path| in the store (an empty ordinary file): 0; or find the
 * one another host made meanwhile when |flags| allow opening it: 1.
 * *dir_out: the directory's change counter and mtime after the create
 * (0 and 0 when it found one). */
static int
ofile_create(struct mount *m, const char *path, int flags,
    struct mst_attr *a, struct mst_attr_rep *dir_out)
{
	struct mst_attr_rep ar;
	struct mreply r;
	struct fbuf *b = fbuf_new();
	int rc;

	if (b == NULL)
		return -ENOMEM;
	/* Always exclusive: the kernel calls create only when it found no
	 * entry; if another host made one meanwhile, open that instead. */
	rc = put_buf_rep(m, path, b, 1, a, dir_out);
	fbuf_free(b);
	if (rc == 0) {
		*a = dir_out->attr;
		return 0;
	}
	dir_out->dir_change = dir_out->dir_mtime_ns = 0;
	if (rc != -EEXIST || (flags & O_EXCL))
		return rc;
	rc = call_path(m, MST_OP_LOOKUP, path, &r);
	if (rc == 0)
		rc = attr_from(&r, &ar);
	mreply_free(&r);
	if (rc == 0 && ar.attr.type == MST_T_DIR)
		rc = -EISDIR;
	if (rc == 0)
		*a = ar.attr;
	return rc < 0 ? rc : 1;
}

static int
do_create(struct mount *m, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi, const struct fuse_ctx *ctx,
    struct fhandle **out)
{
	char path[MST_PATH_MAX + 1];
	struct mst_attr a = { .type = MST_T_FILE, .mode = mode & 07777,
		.uid = ctx->uid, .gid = ctx->gid };
	struct minode *p, *n;
	struct ownstamp os;
	struct mst_attr_rep dr = { 0 };
	int found, rc, flags = fi->flags;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	if (p == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	inode_new_owner(p, ctx, 0, &a);
	if (p->dkind != DK_PLAIN) {
		n = inode_local_find(m, p, name);
		found = n != NULL;
		if (n == NULL && p->folder && folder_find(p->folder, name))
			rc = -EEXIST;
		else if (n && (flags & O_EXCL))
			rc = -EEXIST;
		else if (n == NULL &&
		    (n = inode_local_new(m, p, name, mode)) == NULL)
			rc = -ENOMEM;
		else
			rc = 0;
		/* A tmp/ file open nowhere: the kernel writes it itself
		 * (passthrough); refused, it is buffered here as before. */
		if (rc == 0 && p->dkind == DK_TMP && n->nopen == 0)
			(void)passthru_back(m, n);
		if (rc == 0) {
			n->attr.uid = a.uid;
			n->attr.gid = a.gid;
			if (flags & O_TRUNC)
				rc = fbuf_truncate(n->buf, m, 0);
			if (rc == 0 && (flags & O_TRUNC) && found)
				n->attr.mode = trunc_mode(n->attr.mode,
				    ctx->uid);
		}
		if (rc == 0 && (*out = handle_new(m, n, flags)) == NULL)
			rc = -ENOMEM;
		if (rc == 0) {
			n->nlookup++;
			n->nopen++;
		}
		pthread_mutex_unlock(&m->mu);
		return rc;
	}
	rc = inode_child_path(p, name, path, sizeof path);
	inode_own_stamp(m, p, &os);
	pthread_mutex_unlock(&m->mu);
	if (rc == 0)
		rc = ofile_create(m, path, flags, &a, &dr);
	if (rc < 0)
		return rc;
	found = rc;
	rc = 0;
	pthread_mutex_lock(&m->mu);
	inode_dir_changed(m, p, name);
	n = node_remote(m, p, name, &a, 1);
	if (n && (*out = handle_new(m, n, flags)) != NULL) {
		n->nopen++;
		n->stale = 0;
		inode_own_done(m, p, &os, NULL, n, dr.dir_change,
		    dr.dir_mtime_ns);
	} else {
		if (n)
			inode_forget(m, n, 1);
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	rc = ofile_hold(m, n, &a);
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		(void)ofile_refresh(n, &a);
		pthread_mutex_unlock(&m->mu);
	}
	if (rc == 0 && (flags & O_TRUNC) && found &&
	    (a.size > 0 || trunc_mode(a.mode, ctx->uid) != a.mode)) {
		/* It existed (made elsewhere meanwhile): O_TRUNC applies. */
		struct stat st = { .st_mode = trunc_mode(a.mode, ctx->uid) };

		rc = ofile_setattr(m, n, &st, FUSE_SET_ATTR_SIZE |
		    FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_MTIME_NOW);
		if (rc < 0)
			ofile_unhold(m, n);
	}
	if (rc < 0) {		/* the kernel gets no entry: undo ours */
		pthread_mutex_lock(&m->mu);
		inode_forget(m, n, 1);
		inode_close(m, n);
		pthread_mutex_unlock(&m->mu);
		handle_free(m, *out);
	}
	return rc;
}

void
op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fuse_entry_param e = { 0 };
	struct fhandle *h = NULL;
	int rc = do_create(m, parent, name, mode, fi, fuse_req_ctx(req), &h);
	int bid;

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	/* tmp/ files owe the store nothing at close: skip FLUSH. */
	fi->noflush = h->n->local && h->n->parent->dkind == DK_TMP;
	fi->direct_io = local_direct(m, h);
	bid = open_backed(m, h, fi);
	e.ino = h->n->ino;
	e.generation = 1;
	e.entry_timeout = h->ofile ? 0 : m->entry_timeout;	/* see reply_entry */
	e.attr_timeout = h->ofile ? 0 : m->entry_timeout;
	pthread_mutex_lock(&m->mu);
	inode_stat(h->n, &e.attr);
	pthread_mutex_unlock(&m->mu);
	passthru_next(bid);
	rc = fuse_reply_create(req, &e, fi);
	passthru_next(0);
	if (rc == -ENOENT) {
		if (h->ofile)
			ofile_unhold(m, h->n);
		pthread_mutex_lock(&m->mu);
		close_backed(h);
		inode_forget(m, h->n, 1);
		inode_close(m, h->n);
		pthread_mutex_unlock(&m->mu);
		handle_free(m, h);
	}
}

static int
do_open(struct mount *m, fuse_ino_t ino, struct fuse_file_info *fi, uid_t uid,
    struct fhandle **out)
{
	char dpath[MST_PATH_MAX + 1];
	struct mst_str mb = { 0 }, fo;
	struct minode *n;
	struct fhandle *h = NULL;
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n == NULL)
		rc = -ESTALE;
	else if (n->attr.type == MST_T_DIR)
		rc = -EISDIR;
	else if (n->attr.type == MST_T_MSG && (fi->flags & O_ACCMODE) !=
	    O_RDONLY)
		rc = -EPERM;		/* message bodies are immutable */
	else if ((h = handle_new(m, n, fi->flags)) == NULL)
		rc = -ENOMEM;
	if (rc == 0) {
		n->nopen++;
		inode_touch(m, n);	/* open: off the eviction list */
		if (n->local && (fi->flags & O_TRUNC))
			rc = fbuf_truncate(n->buf, m, 0);
		if (rc == 0 && n->local && (fi->flags & O_TRUNC))
			n->attr.mode = trunc_mode(n->attr.mode, uid);
		if (n->attr.type == MST_T_MSG) {
			rc = inode_path(n->parent, dpath, sizeof dpath);
			(void)inode_classify(m, dpath, &mb, &fo);
			snprintf(h->mailbox, sizeof h->mailbox, "%.*s",
			    (int)mb.len, mb.p ? mb.p : "");
			fi->keep_cache = 1;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (rc == 0 && h->ofile)
		rc = ofile_open(m, n, fi, uid);
	if (rc < 0 && h) {
		pthread_mutex_lock(&m->mu);
		inode_close(m, n);
		pthread_mutex_unlock(&m->mu);
		handle_free(m, h);
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
	int rc = do_open(m, ino, fi, fuse_req_ctx(req)->uid, &h);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->direct_io = local_direct(m, h);
	passthru_next(open_backed(m, h, fi));
	rc = fuse_reply_open(req, fi);
	passthru_next(0);
	if (rc == -ENOENT) {
		if (h->ofile)
			ofile_unhold(m, h->n);
		pthread_mutex_lock(&m->mu);
		close_backed(h);
		inode_close(m, h->n);
		pthread_mutex_unlock(&m->mu);
		handle_free(m, h);
	}
}

/* --- messages --- */

/* FETCH a message range into |out|. */
static ssize_t
fetch(struct mount *m, struct fhandle *h, char *out, size_t size, off_t off)
{
	struct mst_fetch_req q = { .mailbox = mst_str_of(h->mailbox),
		.id = h->n->attr.id };
	struct mst_data_rep d;
	struct mreply r;
	size_t got = 0;
	int rc = 0;

	while (rc == 0 && got < size) {
		q.offset = (uint64_t)off + got;
		q.length = (uint32_t)(size - got);
		rc = store_fetch(m, &q, &r);
		if (rc == 0)
			rc = store_data_reply(MST_OP_FETCH, &r, size - got,
			    &d);
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
struct msg_read {
	fuse_req_t req;
	size_t size;
};

static void
read_done(void *arg, struct mreply *r)
{
	struct msg_read *w = arg;
	struct mst_data_rep d;
	int rc = store_data_reply(MST_OP_FETCH, r, w->size, &d);

	if (rc < 0)
		fuse_reply_err(w->req, -rc);
	else
		fuse_reply_buf(w->req, (const char *)d.data.p, d.data.len);
	mreply_free(r);
	free(w);
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
	struct msg_read *w;

	/* The frame of the mailbox's server: a reply cut at a smaller one
	 * would be a short read, which the kernel takes for the end. */
	if (size + 64 > store_max_frame(m, mst_str_of(h->mailbox)))
		return 0;
	w = malloc(sizeof *w);
	if (w == NULL)
		return 0;
	w->req = req;
	w->size = size;
	if (store_fetch_async(m, &q, read_done, w) < 0) {
		free(w);
		return 0;
	}
	return 1;
}

/*
 * Read |size| bytes at |off| through |h|. 1 when a request went out
 * whose callback answers the kernel; 0 with the bytes in a new *out
 * (*len of them; free it); or a negative errno.
 */
static int
do_read(struct mount *m, fuse_req_t req, struct fhandle *h, size_t size,
    off_t off, char **out, size_t *len)
{
	char *buf;
	ssize_t n;

	if (h->ofile)
		return ofile_read(m, req, h, size, off);
	if (h->buf == NULL && read_async(m, req, h, size, off))
		return 1;		/* read_done replies */
	buf = malloc(size ? size : 1);
	if (buf == NULL)
		return -ENOMEM;
	if (h->buf) {
		pthread_mutex_lock(&m->mu);
		inode_local_refresh(h->n);	/* the kernel may write it */
		n = fbuf_read(h->buf, buf, size, (uint64_t)off);
		pthread_mutex_unlock(&m->mu);
	} else {
		n = fetch(m, h, buf, size, off);
	}
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	*out = buf;
	*len = (size_t)n;
	return 0;
}

void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = do_read(mount_of(req), req, fh_of(fi), size, off, &buf,
	    &len);

	(void)ino;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (rc == 0)
		fuse_reply_buf(req, buf, len);
	free(buf);
}

/* Write |size| bytes at |off| through |h|: 1 when a request went out
 * whose callback answers the kernel, 0 when written here, or a negative
 * errno. */
static int
do_write(struct mount *m, fuse_req_t req, struct fhandle *h, const char *p,
    size_t size, off_t off)
{
	int rc;

	if (h->ofile)
		return ofile_write(m, req, h, p, size, off);
	if (h->buf == NULL || h->delivered)
		return -EBADF;
	pthread_mutex_lock(&m->mu);
	rc = fbuf_write(h->buf, m, p, size, (uint64_t)off);
	/* As the kernel does for a write through its page cache (which a
	 * local file skips, see local_direct): a written file is no longer
	 * set-user-ID, nor set-group-ID if group-executable. */
	if (rc == 0)
		h->n->attr.mode = mode_drop_privs(h->n->attr.mode);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void
op_write(fuse_req_t req, fuse_ino_t ino, const char *p, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct fhandle *h = fh_of(fi);
	struct minode *n = NULL;
	int rc = do_write(m, req, h, p, size, off);

	(void)ino;
	/* A large tmp/ file's body goes to the store as it is written
	 * (ops_deliver.c, spooled bodies), once the writer has its answer. */
	if (rc == 0 && !h->ofile)
		n = spool_hold(m, h->n, size);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (rc == 0)
		fuse_reply_write(req, size);
	if (n)
		spool_write(m, n);
}

/* close(2) of any descriptor drops the caller's POSIX locks on the file
 * (fcntl(2)); the kernel tells us which owner closed. */
static int
do_flush(struct mount *m, struct fhandle *h, uint64_t owner)
{
	int rc = handle_sync(m, h);

	if (rc == 0 && h->ofile)
		rc = lock_release(m, h->n, owner, 0);
	return rc;
}

void
op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = do_flush(mount_of(req), fh_of(fi), fi->lock_owner);

	(void)ino;
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	struct fhandle *h = fh_of(fi);
	int rc = handle_sync(mount_of(req), h);

	(void)ino;
	(void)datasync;
	/* A tmp/ file: its body goes to the store now, outside any
	 * directory lock, so that link() only commits a name. */
	if (rc == 0 && h->buf != NULL && !h->ofile && !h->delivered)
		stage_tmp(mount_of(req), h->n);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* The last close of a handle: what is owed is delivered, a flock lock
 * released (|flock_release|), and the handle freed. Errors are logged:
 * close(2) has returned by now. */
static void
do_release(struct mount *m, struct fhandle *h, uint64_t owner,
    int flock_release)
{
	int rc = handle_sync(m, h);

	if (rc < 0)
		syslog(LOG_ERR, "mount.mstore: delivery of %s at close: %s",
		    h->n->name, strerror(-rc));
	if (h->ofile && flock_release) {
		rc = lock_release(m, h->n, owner, 1);
		if (rc < 0)
			syslog(LOG_ERR, "mount.mstore: flock release of %s: %s",
			    h->n->name, strerror(-rc));
	}
	if (h->ofile)
		ofile_unhold(m, h->n);
	pthread_mutex_lock(&m->mu);
	close_backed(h);
	inode_close(m, h->n);
	pthread_mutex_unlock(&m->mu);
	handle_free(m, h);
}

void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	do_release(mount_of(req), fh_of(fi), fi->lock_owner,
	    fi->flock_release);
	fuse_reply_err(req, 0);
}
