/*
 * ops_lock.c - fcntl(2) record locks and flock(2) locks on ordinary
 * files, granted by the store so that they hold across every mount of
 * it. The kernel hands us each request with its lock owner; we pass the
 * owner and pid to the store and answer the kernel with what the store
 * decided. Never grants anything itself. Each op_* is a thin adapter
 * over a do_* core; the requests are store.c's.
 *
 * Publishing: writes to ordinary files reach the store before write(2)
 * returns, so everything a holder wrote is in the store when it unlocks.
 * After a grant we ask the store for the file's change counter, and if
 * another host changed the file since the kernel cached its pages, those
 * pages are dropped before the caller learns it holds the lock: what the
 * previous holder wrote is what the new one reads. From the store's only
 * server the notices say it first (grant_current), and a file none
 * marked changed is not asked about. A grant also ends
 * every name the mount knew missing (struct negset in mount.h), so the
 * files the previous holder created are found.
 *
 * F_SETLKW and blocking flock wait in the store without a deadline and
 * without holding a FUSE worker; a signal (FUSE INTERRUPT) sends a
 * CANCEL, and the store then fails the wait with EINTR. If the
 * connection drops, the store releases every lock and wait this mount
 * had (the waits fail with EIO), as a crashed host's locks would be.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <syslog.h>

#include "locktab.h"
#include "mount.h"
#include "store.h"

/*
 * A lock request in flight. Two references: the sender's, dropped once
 * the request is on its way, and the reply path's, dropped after the
 * kernel has its answer. |sent| and |intr| (guarded by m->mu) make sure
 * a signal's CANCEL goes out after the LOCK it cancels, whichever of the
 * two happens first.
 */
struct lock_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *n;	/* kept by the open file the lock is on */
	struct mst_lock_req q;
	struct flock fl;	/* F_GETLK's answer */
	atomic_int refs;
	int sent, intr;
};

static void
lock_wait_unref(struct lock_wait *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1)
		free(w);
}

/* The kernel's flock range to the store's: l_len 0 means to the end. */
static void
range_of(const struct flock *fl, struct mst_lock_req *q)
{
	q->start = (uint64_t)fl->l_start;
	q->end = fl->l_len == 0 ? MST_LK_EOF :
	    (uint64_t)fl->l_start + (uint64_t)fl->l_len - 1;
}

static uint8_t
type_of(short t)
{
	return t == F_RDLCK ? MST_LK_RD : t == F_WRLCK ? MST_LK_WR : MST_LK_UN;
}

static struct lock_wait *
lock_wait_new(fuse_req_t req, struct fuse_file_info *fi, struct minode *n)
{
	struct lock_wait *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->req = req;
	w->m = mount_of(req);
	w->n = n;
	w->q.id = n->attr.id;
	w->q.owner = fi->lock_owner;
	atomic_init(&w->refs, 1);
	return w;
}

static void
finish(void *arg)
{
	struct lock_wait *w = arg;

	fuse_reply_err(w->req, 0);
	lock_wait_unref(w);
}

/* The file's state after a grant: drop the kernel's pages if another
 * host changed it, then answer. */
static void
revalidated(void *arg, struct mreply *r)
{
	struct lock_wait *w = arg;
	struct mount *m = w->m;
	struct mst_attr_rep ar;
	int changed = 1;

	if (store_attr_reply(r, &ar) == 0) {
		pthread_mutex_lock(&m->mu);
		changed = ofile_refresh(w->n, &ar.attr);
		if (changed)
			w->n->epoch++;
		pthread_mutex_unlock(&m->mu);
	}
	mreply_free(r);
	if (changed)
		inval_then(m, w->n->ino, finish, w);	/* unknown: drop */
	else
		finish(w);
}

/*
 * Is the file as the store has it, with no need to ask? From the store's
 * only server (SOLE) a grant comes after the notices of every change
 * made before it, and this thread applied them before this callback: a
 * file no notice marked stale, known by its name under a watch that was
 * active all along (inode_file_known: the watch generation and the
 * stamps are those its name was learnt under), changed nowhere else,
 * so the kernel's pages of it are the store's.
 */
static int
grant_current(struct lock_wait *w)
{
	int cur;

	if (!store_home_sole(w->m))
		return 0;
	pthread_mutex_lock(&w->m->mu);
	cur = !w->n->stale && inode_file_known(w->m, w->n);
	pthread_mutex_unlock(&w->m->mu);
	return cur;
}

static void
granted(void *arg, struct mreply *r)
{
	struct lock_wait *w = arg;
	struct mst_lock_rep lr;
	int rc = store_lock_reply(r, &lr);

	mreply_free(r);
	if (rc == -ENOENT)
		rc = -ESTALE;
	if (rc == 0 && w->q.type != MST_LK_UN && !store_home_sole(w->m)) {
		/* A name the previous holder created may have no notice
		 * here yet (through another server it comes later): no
		 * name is known missing any more (struct negset), nor
		 * present (minode.pos). From the store's only server the
		 * grant comes after those notices, and the connection
		 * thread applied them before this callback runs. */
		pthread_mutex_lock(&w->m->mu);
		w->m->neg_epoch++;
		w->m->pos_epoch++;
		pthread_mutex_unlock(&w->m->mu);
	}
	if (rc == 0 && w->q.type != MST_LK_UN) {
		/* Held now: whatever happens next, the answer is success. */
		if (grant_current(w))
			finish(w);
		else if (store_getattr_async(w->m, w->q.id, revalidated,
		    w) < 0)
			inval_then(w->m, w->n->ino, finish, w);
		return;			/* revalidated() or finish() answers */
	}
	if (rc == 0 && (w->q.flags & MST_LKF_FLOCK || (w->q.start == 0 &&
	    w->q.end == MST_LK_EOF))) {
		/* All of the owner's locks of this kind on the file are gone. */
		pthread_mutex_lock(&w->m->mu);
		(void)locktab_release(w->m->locks, w->n->ino, w->q.owner,
		    w->q.flags & MST_LKF_FLOCK ? LT_FLOCK : LT_POSIX);
		pthread_mutex_unlock(&w->m->mu);
	}
	fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	lock_wait_unref(w);
}

static void
cancel_sent(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);		/* the waiting LOCK gets EINTR, or was done */
}

static void
send_cancel(struct mount *m, struct mst_lock_req q)
{
	q.flags = (uint8_t)((q.flags & MST_LKF_FLOCK) | MST_LKF_CANCEL);
	if (store_lock(m, &q, cancel_sent, NULL) < 0)
		syslog(LOG_WARNING, "mount.mstore: cannot cancel a lock wait "
		    "on object %llu", (unsigned long long)q.id);
}

/* A signal interrupted F_SETLKW or flock: ask the store to give up the
 * wait. Runs under libfuse's request lock, before the kernel has its
 * answer, so |w| is still alive. */
static void
interrupted(fuse_req_t req, void *arg)
{
	struct lock_wait *w = arg;
	int cancel;

	(void)req;
	pthread_mutex_lock(&w->m->mu);
	w->intr = 1;
	cancel = w->sent;
	pthread_mutex_unlock(&w->m->mu);
	if (cancel)
		send_cancel(w->m, w->q);
}

/* Send |w|'s LOCK; the reply path owns |w| from then on. 0, or a
 * negative errno (and then |w| is still the caller's). */
static int
lock_send(struct lock_wait *w)
{
	struct mount *m = w->m;
	struct mst_lock_req q = w->q;
	int rc, cancel;

	/* Recorded before it leaves: its grant could cross a close. */
	pthread_mutex_lock(&m->mu);
	rc = q.type == MST_LK_UN ? 0 : locktab_grant(m->locks, w->n->ino,
	    q.owner, q.flags & MST_LKF_FLOCK ? LT_FLOCK : LT_POSIX);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return -ENOLCK;
	if (!(q.flags & MST_LKF_WAIT))
		return store_lock(m, &q, granted, w);
	/* Before sending: once sent, the request may be answered (and the
	 * kernel's request freed) at any moment. */
	fuse_req_interrupt_func(w->req, interrupted, w);
	atomic_fetch_add(&w->refs, 1);		/* the sender's */
	rc = store_lock(m, &q, granted, w);
	if (rc < 0) {
		atomic_fetch_sub(&w->refs, 1);
		return rc;
	}
	pthread_mutex_lock(&m->mu);
	w->sent = 1;
	cancel = w->intr;
	pthread_mutex_unlock(&m->mu);
	if (cancel)
		send_cancel(m, q);
	lock_wait_unref(w);
	return 0;
}

/* The minode of an open ordinary file, or NULL. */
static struct minode *
locked_node(struct mount *m, fuse_ino_t ino)
{
	struct minode *n;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n && !is_ofile(n))
		n = NULL;
	pthread_mutex_unlock(&m->mu);
	return n;
}

/* The lock requests below return 0 once the request is on its way (its
 * callback answers the kernel) or a negative errno. */
static int
do_setlk(struct mount *m, fuse_req_t req, fuse_ino_t ino,
    struct fuse_file_info *fi, const struct flock *lock, int sleep)
{
	struct minode *n = locked_node(m, ino);
	struct lock_wait *w;
	int rc;

	if (n == NULL)
		return -ENOLCK;
	w = lock_wait_new(req, fi, n);
	if (w == NULL)
		return -ENOLCK;
	w->q.pid = (uint32_t)lock->l_pid;
	w->q.type = type_of(lock->l_type);
	w->q.flags = sleep && w->q.type != MST_LK_UN ? MST_LKF_WAIT : 0;
	range_of(lock, &w->q);
	rc = lock_send(w);
	if (rc < 0)
		free(w);
	return rc;
}

void
op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
    struct flock *lock, int sleep)
{
	int rc = do_setlk(mount_of(req), req, ino, fi, lock, sleep);

	if (rc < 0)
		fuse_reply_err(req, -rc);
}

static int
do_flock(struct mount *m, fuse_req_t req, fuse_ino_t ino,
    struct fuse_file_info *fi, int op)
{
	struct minode *n = locked_node(m, ino);
	struct lock_wait *w;
	int rc, kind = op & (LOCK_SH | LOCK_EX | LOCK_UN);

	if (n == NULL)
		return -ENOLCK;		/* only ordinary files */
	w = lock_wait_new(req, fi, n);
	if (w == NULL)
		return -ENOLCK;
	w->q.pid = fuse_req_ctx(req)->pid;
	w->q.type = kind == LOCK_SH ? MST_LK_RD : kind == LOCK_EX ? MST_LK_WR :
	    MST_LK_UN;
	w->q.flags = MST_LKF_FLOCK;
	if (w->q.type != MST_LK_UN && !(op & LOCK_NB))
		w->q.flags |= MST_LKF_WAIT;
	w->q.start = 0;
	w->q.end = MST_LK_EOF;
	rc = lock_send(w);
	if (rc < 0)
		free(w);
	return rc;
}

void
op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	int rc = do_flock(mount_of(req), req, ino, fi, op);

	if (rc < 0)
		fuse_reply_err(req, -rc);
}

static void
tested(void *arg, struct mreply *r)
{
	struct lock_wait *w = arg;
	struct mst_lock_rep lr;
	int rc = store_lock_reply(r, &lr);

	mreply_free(r);
	if (rc == 0) {
		w->fl.l_type = lr.type == MST_LK_RD ? F_RDLCK :
		    lr.type == MST_LK_WR ? F_WRLCK : F_UNLCK;
		w->fl.l_whence = SEEK_SET;
		w->fl.l_start = (off_t)lr.start;
		w->fl.l_len = lr.end == MST_LK_EOF ? 0 :
		    (off_t)(lr.end - lr.start + 1);
		/* The holder's pid on its own host; the kernel shows 0 for
		 * a pid that does not exist here. */
		w->fl.l_pid = (pid_t)lr.pid;
		fuse_reply_lock(w->req, &w->fl);
	} else {
		fuse_reply_err(w->req, rc == -ENOENT ? ESTALE : -rc);
	}
	free(w);
}

static int
do_getlk(struct mount *m, fuse_req_t req, fuse_ino_t ino,
    struct fuse_file_info *fi, const struct flock *lock)
{
	struct minode *n = locked_node(m, ino);
	struct lock_wait *w;
	int rc;

	if (n == NULL)
		return -ENOLCK;		/* only ordinary files */
	w = lock_wait_new(req, fi, n);
	if (w == NULL)
		return -ENOLCK;
	w->q.pid = (uint32_t)lock->l_pid;
	w->q.type = type_of(lock->l_type);
	w->q.flags = MST_LKF_TEST;
	range_of(lock, &w->q);
	rc = w->q.type == MST_LK_UN ? -EINVAL :
	    store_lock_test(m, &w->q, tested, w);
	if (rc < 0)
		free(w);
	return rc;
}

void
op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
    struct flock *lock)
{
	int rc = do_getlk(mount_of(req), req, ino, fi, lock);

	if (rc < 0)
		fuse_reply_err(req, -rc);
}

int
lock_release(struct mount *m, struct minode *n, uint64_t owner, int flock)
{
	struct mst_lock_req q = { .owner = owner, .type = MST_LK_UN,
		.flags = flock ? MST_LKF_FLOCK : 0, .start = 0,
		.end = MST_LK_EOF };
	struct mst_lock_rep lr;
	int rc, kind = flock ? LT_FLOCK : LT_POSIX, held;

	pthread_mutex_lock(&m->mu);
	q.id = n->attr.id;
	held = locktab_held(m->locks, n->ino, owner, kind);
	pthread_mutex_unlock(&m->mu);
	if (!held)
		return 0;		/* this owner never asked for one */
	rc = store_lock_sync(m, &q, &lr);
	if (rc == -ENOENT)
		rc = 0;			/* gone: nothing is held */
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		(void)locktab_release(m->locks, n->ino, owner, kind);
		pthread_mutex_unlock(&m->mu);
	}
	return rc;
}
