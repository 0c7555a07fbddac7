/*
 * lock.c - the lock table of mstored: POSIX record locks and flock(2)
 * locks on ordinary files, granted by the store so that they hold across
 * every host that mounts it. Owns the locks, the requests waiting for
 * them and the replies owed to those requests; knows nothing of sockets
 * or the engine, and never blocks. Behaves as Linux does on a local file
 * system (fs/locks.c), with these choices:
 *
 *  - A POSIX owner is (connection, lock_req.owner), a flock owner the
 *    same pair (the mount sends the open file there). The two kinds live
 *    in separate lists and never conflict with each other.
 *  - POSIX requests are atomic: a conflict with another owner leaves the
 *    requester's own locks as they were. Granting replaces the owner's
 *    locks in the range (splitting, trimming, converting) and merges
 *    same-type ranges that overlap or touch, as fcntl(2) does.
 *  - flock conversion is not atomic, as flock(2) says: the old lock is
 *    dropped first, then the new one tried, so a failed or waiting
 *    conversion has given up the old lock.
 *  - A new request is granted when it conflicts with no held lock, even
 *    if others wait (Linux has no fairness either). Waiting requests are
 *    retried in arrival order after every change to a file's locks, and
 *    each that no longer conflicts is granted.
 *  - A POSIX request that would wait on an owner who waits, directly or
 *    along a chain of at most LOCK_DEADLK_DEPTH waiting owners, for the
 *    requester fails with EDEADLK, checked when it would start waiting
 *    and again each time it is retried, as Linux does (and, as there,
 *    a chain longer than that is not followed). flock never reports it.
 *
 * Invariants:
 *  1. The locks of one owner on one file never overlap, and two of them
 *     of the same type never touch (end + 1 == start): they are merged.
 *  2. f->posix is ordered by start, so the first conflict found is the
 *     lowest one (what F_GETLK reports).
 *  3. An owner has at most one flock lock per file.
 *  4. A file is in the hash table exactly while it has a lock or a
 *     waiting request; a waiter's reply node is the waiter itself, so
 *     waking never allocates and a granted or cancelled request always
 *     gets its reply.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "lock.h"

struct lfile;

struct lk {
	TAILQ_ENTRY(lk) by_file;	/* f->posix or f->flocks */
	LIST_ENTRY(lk) by_conn;
	struct lfile *f;
	struct lock_conn *lc;
	uint64_t owner;
	uint64_t start;
	uint64_t end;
	uint32_t pid;
	uint8_t type;
	uint8_t flock;
};

enum { W_WAITING, W_DONE };

/* A request waiting in f->waiters, then (W_DONE) its reply in t->done. */
struct waiter {
	TAILQ_ENTRY(waiter) link;	/* f->waiters, then t->done */
	LIST_ENTRY(waiter) by_conn;
	struct lfile *f;
	struct lock_conn *lc;
	int state;
	/* The owner of the lock it last found in its way; current because
	 * any change to f's locks retries it. Compared, never followed
	 * after its lock_conn is freed (lock_conn_free retries first). */
	const struct lock_conn *blk_lc;
	uint64_t blk_owner;
	struct lock_done d;
	struct mst_lock_req q;
};

TAILQ_HEAD(lk_list, lk);
TAILQ_HEAD(waiter_list, waiter);

struct lfile {
	struct lfile *next;		/* hash chain */
	struct lfile *dirty_next;	/* lock_conn_free's list */
	uint64_t id;
	int dirty;
	struct lk_list posix;		/* by start (invariant 2) */
	struct lk_list flocks;		/* in grant order */
	struct waiter_list waiters;	/* arrival order */
};

struct lock_conn {
	struct lock_table *t;
	void *ctx;
	LIST_HEAD(, lk) locks;
	LIST_HEAD(, waiter) waiters;	/* waiting and done */
	size_t nlocks;
	size_t nwaiters;		/* waiting and done */
};

struct lock_table {
	struct lfile **b;		/* power-of-two buckets */
	size_t nb;
	size_t n;
	struct waiter_list done;	/* replies owed, oldest first */
};

#define LOCK_BUCKETS_MIN	64u
/* Waiting owners followed when looking for a deadlock: Linux's
 * MAX_DEADLK_ITERATIONS, which bounds the work of one request. */
#define LOCK_DEADLK_DEPTH	10

/* ---- the hash table of files ---- */

/* Object ids are small and sequential: mix them (splitmix64). */
static uint64_t
id_hash(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static struct lfile *
file_find(const struct lock_table *t, uint64_t id)
{
	struct lfile *f;

	for (f = t->b[id_hash(id) & (t->nb - 1)]; f != NULL; f = f->next)
		if (f->id == id)
			return f;
	return NULL;
}

static void
table_grow(struct lock_table *t)
{
	size_t nb = t->nb * 2, i, k;
	struct lfile **b = calloc(nb, sizeof *b), *f, *next;

	if (b == NULL)
		return;		/* longer chains, still correct */
	for (i = 0; i < t->nb; i++) {
		for (f = t->b[i]; f != NULL; f = next) {
			next = f->next;
			k = id_hash(f->id) & (nb - 1);
			f->next = b[k];
			b[k] = f;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

/* The file |id|, made empty if it has no entry. NULL when out of
 * memory. */
static struct lfile *
file_get(struct lock_table *t, uint64_t id)
{
	struct lfile *f = file_find(t, id);
	size_t k;

	if (f != NULL)
		return f;
	f = calloc(1, sizeof *f);
	if (f == NULL)
		return NULL;
	f->id = id;
	TAILQ_INIT(&f->posix);
	TAILQ_INIT(&f->flocks);
	TAILQ_INIT(&f->waiters);
	if (t->n >= t->nb)
		table_grow(t);
	k = id_hash(id) & (t->nb - 1);
	f->next = t->b[k];
	t->b[k] = f;
	t->n++;
	return f;
}

/* Drop |f| from the table once nothing refers to it (invariant 4). */
static void
file_maybe_free(struct lock_table *t, struct lfile *f)
{
	struct lfile **pp;

	if (!TAILQ_EMPTY(&f->posix) || !TAILQ_EMPTY(&f->flocks) ||
	    !TAILQ_EMPTY(&f->waiters))
		return;
	for (pp = &t->b[id_hash(f->id) & (t->nb - 1)]; *pp != f;
	    pp = &(*pp)->next)
		;
	*pp = f->next;
	t->n--;
	free(f);
}

/* ---- ranges ---- */

static int
overlaps(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return s1 <= e2 && s2 <= e1;
}

/* Overlapping or adjacent: [s1,e1] and [s2,e2] form one range. */
static int
touches(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
	return overlaps(s1, e1, s2, e2) ||
	    (e1 != UINT64_MAX && e1 + 1 == s2) ||
	    (e2 != UINT64_MAX && e2 + 1 == s1);
}

static int
types_conflict(unsigned a, unsigned b)
{
	return a == MST_LK_WR || b == MST_LK_WR;
}

static int
is_owner(const struct lk *l, const struct lock_conn *lc, uint64_t owner)
{
	return l->lc == lc && l->owner == owner;
}

/* ---- held locks ---- */

/* Insert into f->posix keeping it ordered by start (invariant 2). */
static void
posix_insert(struct lfile *f, struct lk *l)
{
	struct lk *at;

	TAILQ_FOREACH(at, &f->posix, by_file)
		if (at->start > l->start)
			break;
	if (at != NULL)
		TAILQ_INSERT_BEFORE(at, l, by_file);
	else
		TAILQ_INSERT_TAIL(&f->posix, l, by_file);
}

static struct lk *
lk_new(struct lfile *f, struct lock_conn *lc, const struct mst_lock_req *q)
{
	struct lk *l = calloc(1, sizeof *l);

	if (l == NULL)
		return NULL;
	l->f = f;
	l->lc = lc;
	l->owner = q->owner;
	l->pid = q->pid;
	l->type = q->type;
	l->flock = (q->flags & MST_LKF_FLOCK) != 0;
	l->start = l->flock ? 0 : q->start;
	l->end = l->flock ? MST_LK_EOF : q->end;
	return l;
}

static void
lk_attach(struct lk *l)
{
	if (l->flock)
		TAILQ_INSERT_TAIL(&l->f->flocks, l, by_file);
	else
		posix_insert(l->f, l);
	LIST_INSERT_HEAD(&l->lc->locks, l, by_conn);
	l->lc->nlocks++;
}

static void
lk_remove(struct lk *l)
{
	TAILQ_REMOVE(l->flock ? &l->f->flocks : &l->f->posix, l, by_file);
	LIST_REMOVE(l, by_conn);
	l->lc->nlocks--;
	free(l);
}

/* The first lock of another owner that |q| conflicts with, or NULL. */
static struct lk *
find_conflict(struct lfile *f, const struct lock_conn *lc,
    const struct mst_lock_req *q)
{
	struct lk *l;

	if (q->flags & MST_LKF_FLOCK) {
		TAILQ_FOREACH(l, &f->flocks, by_file)
			if (!is_owner(l, lc, q->owner) &&
			    types_conflict(l->type, q->type))
				return l;
		return NULL;
	}
	TAILQ_FOREACH(l, &f->posix, by_file) {
		if (l->start > q->end)
			break;		/* ordered by start */
		if (!is_owner(l, lc, q->owner) &&
		    overlaps(l->start, l->end, q->start, q->end) &&
		    types_conflict(l->type, q->type))
			return l;
	}
	return NULL;
}

/*
 * How many locks the owner gains (may be negative) when |q| (RD, WR or
 * UN) is applied, and whether one of its locks must be split in two.
 */
static long
posix_delta(struct lfile *f, const struct lock_conn *lc,
    const struct mst_lock_req *q, int *split_out)
{
	long delta = q->type == MST_LK_UN ? 0 : 1;
	struct lk *l;

	*split_out = 0;
	TAILQ_FOREACH(l, &f->posix, by_file) {
		if (!is_owner(l, lc, q->owner))
			continue;
		if (q->type != MST_LK_UN && l->type == q->type &&
		    touches(l->start, l->end, q->start, q->end)) {
			delta--;	/* merged into the new lock */
		} else if (overlaps(l->start, l->end, q->start, q->end)) {
			if (l->start < q->start && l->end > q->end) {
				delta++;
				*split_out = 1;
			} else if (l->start >= q->start && l->end <= q->end) {
				delta--;
			}
		}
	}
	return delta;
}

/*
 * Replace the owner's locks in [q->start, q->end] with |q| (RD, WR or
 * UN): split what straddles the range, trim what sticks out of it, drop
 * what it covers, and merge same-type neighbours into the new lock.
 * Checks the bound and allocates before changing anything. 0, -ENOLCK
 * or -ENOMEM.
 */
static int
posix_apply(struct lfile *f, struct lock_conn *lc,
    const struct mst_lock_req *q)
{
	uint64_t s = q->start, e = q->end;
	struct lk *l, *next, *nl = NULL, *piece = NULL;
	int split;
	long delta = posix_delta(f, lc, q, &split);

	if (delta > 0 && lc->nlocks + (size_t)delta > LOCK_CONN_LOCKS_MAX)
		return -ENOLCK;
	if ((q->type != MST_LK_UN && (nl = lk_new(f, lc, q)) == NULL) ||
	    (split && (piece = calloc(1, sizeof *piece)) == NULL)) {
		free(nl);
		return -ENOMEM;
	}
	for (l = TAILQ_FIRST(&f->posix); l != NULL; l = next) {
		next = TAILQ_NEXT(l, by_file);
		if (!is_owner(l, lc, q->owner))
			continue;
		if (nl != NULL && l->type == nl->type &&
		    touches(l->start, l->end, s, e)) {
			if (l->start < nl->start)
				nl->start = l->start;
			if (l->end > nl->end)
				nl->end = l->end;
			lk_remove(l);
		} else if (!overlaps(l->start, l->end, s, e)) {
			continue;
		} else if (l->start < s && l->end > e) {
			*piece = *l;	/* [e+1, end] of the same lock */
			piece->start = e + 1;
			l->end = s - 1;
			lk_attach(piece);
			piece = NULL;
		} else if (l->start < s) {
			l->end = s - 1;
		} else if (l->end > e) {
			/* Its start moves up: keep f->posix ordered. */
			TAILQ_REMOVE(&f->posix, l, by_file);
			l->start = e + 1;
			posix_insert(f, l);
		} else {
			lk_remove(l);
		}
	}
	if (nl != NULL)
		lk_attach(nl);
	return 0;
}

static struct lk *
flock_of(struct lfile *f, const struct lock_conn *lc, uint64_t owner)
{
	struct lk *l;

	TAILQ_FOREACH(l, &f->flocks, by_file)
		if (is_owner(l, lc, owner))
			return l;
	return NULL;
}

/*
 * Try to grant |q| (RD or WR). Sets *changed when the file's locks
 * changed, even on failure (a flock conversion drops the old lock
 * first). 0, -EAGAIN (a conflict, then in *blocker), -ENOLCK or
 * -ENOMEM.
 */
static int
try_grant(struct lfile *f, struct lock_conn *lc,
    const struct mst_lock_req *q, int *changed, struct lk **blocker)
{
	struct lk *l;
	int rc;

	if (!(q->flags & MST_LKF_FLOCK)) {
		if ((*blocker = find_conflict(f, lc, q)) != NULL)
			return -EAGAIN;
		rc = posix_apply(f, lc, q);
		if (rc == 0)
			*changed = 1;
		return rc;
	}
	l = flock_of(f, lc, q->owner);
	if (l != NULL && l->type == q->type)
		return 0;
	if (l != NULL) {
		lk_remove(l);
		*changed = 1;
	}
	if ((*blocker = find_conflict(f, lc, q)) != NULL)
		return -EAGAIN;
	if (lc->nlocks >= LOCK_CONN_LOCKS_MAX)
		return -ENOLCK;
	l = lk_new(f, lc, q);
	if (l == NULL)
		return -ENOMEM;
	lk_attach(l);
	*changed = 1;
	return 0;
}

/* What a grant of |q| replies: the lock as requested (flock: all). */
static void
granted_rep(const struct mst_lock_req *q, struct mst_lock_rep *rep)
{
	int flock = (q->flags & MST_LKF_FLOCK) != 0;

	rep->type = q->type;
	rep->pid = q->pid;
	rep->start = flock ? 0 : q->start;
	rep->end = flock ? MST_LK_EOF : q->end;
}

/* ---- waiting requests ---- */

/* |w| is answered: move it from its file's queue to the reply queue. */
static void
waiter_finish(struct waiter *w, int status)
{
	struct lock_table *t = w->lc->t;

	TAILQ_REMOVE(&w->f->waiters, w, link);
	w->state = W_DONE;
	w->d.status = status;
	if (status == 0)
		granted_rep(&w->q, &w->d.rep);
	else
		memset(&w->d.rep, 0, sizeof w->d.rep);
	TAILQ_INSERT_TAIL(&t->done, w, link);
}

/* The reply of |w| was taken or is not wanted any more. */
static void
waiter_free(struct waiter *w)
{
	LIST_REMOVE(w, by_conn);
	w->lc->nwaiters--;
	free(w);
}

/*
 * Would the POSIX request of (lc, owner), blocked by |blocker|, wait for
 * itself? Follow the owner of the blocking lock to the request it waits
 * on, and that request's blocker, LOCK_DEADLK_DEPTH times at most.
 */
static int
would_deadlock(const struct lock_conn *lc, uint64_t owner,
    const struct lk *blocker)
{
	const struct lock_conn *blc = blocker->lc;
	uint64_t bown = blocker->owner;
	const struct waiter *w;
	int i;

	for (i = 0; i < LOCK_DEADLK_DEPTH; i++) {
		LIST_FOREACH(w, &blc->waiters, by_conn)
			if (w->state == W_WAITING && w->q.owner == bown &&
			    !(w->q.flags & MST_LKF_FLOCK))
				break;
		if (w == NULL)
			return 0;
		blc = w->blk_lc;
		bown = w->blk_owner;
		if (blc == lc && bown == owner)
			return 1;
	}
	return 0;
}

/* |q| of |lc| is to wait behind |blocker|: -EDEADLK or 0. */
static int
deadlock_check(const struct lock_conn *lc, const struct mst_lock_req *q,
    const struct lk *blocker)
{
	if (q->flags & MST_LKF_FLOCK)
		return 0;
	return would_deadlock(lc, q->owner, blocker) ? -EDEADLK : 0;
}

/*
 * The locks of |f| changed: retry its waiters in arrival order and grant
 * each that no longer conflicts. A grant can itself free a range (a
 * conversion), so passes repeat until one changes nothing.
 */
static void
retry_waiters(struct lfile *f)
{
	struct waiter *w, *next;
	struct lk *blocker;
	int again, changed, rc;

	do {
		again = 0;
		for (w = TAILQ_FIRST(&f->waiters); w != NULL; w = next) {
			next = TAILQ_NEXT(w, link);
			changed = 0;
			rc = try_grant(f, w->lc, &w->q, &changed, &blocker);
			if (changed)
				again = 1;
			if (rc == -EAGAIN) {
				w->blk_lc = blocker->lc;
				w->blk_owner = blocker->owner;
				rc = deadlock_check(w->lc, &w->q, blocker);
				if (rc == 0)
					continue;
			}
			waiter_finish(w, rc);
		}
	} while (again);
}

static int
waiter_add(struct lfile *f, struct lock_conn *lc, uint32_t req_id,
    const struct mst_lock_req *q, const struct lk *blocker)
{
	struct waiter *w;
	int rc = deadlock_check(lc, q, blocker);

	if (rc < 0)
		return rc;
	if (lc->nwaiters >= LOCK_CONN_WAITERS_MAX)
		return -ENOLCK;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -ENOMEM;
	w->f = f;
	w->lc = lc;
	w->state = W_WAITING;
	w->q = *q;
	w->blk_lc = blocker->lc;
	w->blk_owner = blocker->owner;
	w->d.ctx = lc->ctx;
	w->d.req_id = req_id;
	TAILQ_INSERT_TAIL(&f->waiters, w, link);
	LIST_INSERT_HEAD(&lc->waiters, w, by_conn);
	lc->nwaiters++;
	return LOCK_QUEUED;
}

/* CANCEL: every waiting request of this owner on this object fails with
 * EINTR. One already granted has its reply queued and stays granted. */
static void
cancel_waiters(struct lock_conn *lc, const struct mst_lock_req *q)
{
	struct waiter *w, *next;
	struct lfile *f = NULL;

	for (w = LIST_FIRST(&lc->waiters); w != NULL; w = next) {
		next = LIST_NEXT(w, by_conn);
		if (w->state != W_WAITING || w->q.owner != q->owner ||
		    w->q.id != q->id)
			continue;
		f = w->f;
		waiter_finish(w, -EINTR);
	}
	if (f != NULL)
		file_maybe_free(lc->t, f);
}

/* ---- requests ---- */

static int
req_check(const struct mst_lock_req *q)
{
	if (q->flags & ~MST_LKF_ALL)
		return -EINVAL;
	if (q->flags & MST_LKF_CANCEL)
		return q->flags & (MST_LKF_TEST | MST_LKF_WAIT) ? -EINVAL : 0;
	if (q->type != MST_LK_RD && q->type != MST_LK_WR &&
	    q->type != MST_LK_UN)
		return -EINVAL;
	if (!(q->flags & MST_LKF_FLOCK) && q->start > q->end)
		return -EINVAL;
	if ((q->flags & MST_LKF_TEST) &&
	    ((q->flags & MST_LKF_WAIT) || q->type == MST_LK_UN))
		return -EINVAL;
	return 0;
}

static void
test_lock(struct lock_conn *lc, const struct mst_lock_req *q,
    struct mst_lock_rep *rep)
{
	struct lfile *f = file_find(lc->t, q->id);
	struct lk *l = f != NULL ? find_conflict(f, lc, q) : NULL;

	memset(rep, 0, sizeof *rep);
	rep->type = MST_LK_UN;
	if (l == NULL)
		return;
	rep->type = l->type;
	rep->pid = l->pid;
	rep->start = l->start;
	rep->end = l->end;
}

/* UN: the owner's locks in the range (flock: its flock) go. */
static int
unlock(struct lock_conn *lc, const struct mst_lock_req *q)
{
	struct lfile *f = file_find(lc->t, q->id);
	struct lk *l;
	int rc = 0;

	if (f == NULL)
		return 0;
	if (q->flags & MST_LKF_FLOCK) {
		l = flock_of(f, lc, q->owner);
		if (l != NULL)
			lk_remove(l);
	} else {
		rc = posix_apply(f, lc, q);
	}
	retry_waiters(f);
	file_maybe_free(lc->t, f);
	return rc;
}

int
lock_request(struct lock_conn *lc, uint32_t req_id,
    const struct mst_lock_req *q, struct mst_lock_rep *rep_out)
{
	struct lk *blocker = NULL;
	struct lfile *f;
	int rc, changed = 0;

	rc = req_check(q);
	if (rc < 0)
		return rc;
	if (q->flags & MST_LKF_TEST) {
		test_lock(lc, q, rep_out);
		return 0;
	}
	if (q->flags & MST_LKF_CANCEL) {
		cancel_waiters(lc, q);
		granted_rep(q, rep_out);
		rep_out->type = MST_LK_UN;
		return 0;
	}
	if (q->type == MST_LK_UN) {
		rc = unlock(lc, q);
		if (rc == 0)
			granted_rep(q, rep_out);
		return rc;
	}
	f = file_get(lc->t, q->id);
	if (f == NULL)
		return -ENOMEM;
	rc = try_grant(f, lc, q, &changed, &blocker);
	if (rc == -EAGAIN && (q->flags & MST_LKF_WAIT))
		rc = waiter_add(f, lc, req_id, q, blocker);
	if (changed)
		retry_waiters(f);
	file_maybe_free(lc->t, f);
	if (rc == 0)
		granted_rep(q, rep_out);
	return rc;
}

int
lock_table_next(struct lock_table *t, struct lock_done *out)
{
	struct waiter *w = TAILQ_FIRST(&t->done);

	if (w == NULL)
		return 0;
	TAILQ_REMOVE(&t->done, w, link);
	*out = w->d;
	waiter_free(w);
	return 1;
}

/* ---- connections and the table ---- */

struct lock_conn *
lock_conn_new(struct lock_table *t, void *ctx)
{
	struct lock_conn *lc = calloc(1, sizeof *lc);

	if (lc == NULL)
		return NULL;
	lc->t = t;
	lc->ctx = ctx;
	LIST_INIT(&lc->locks);
	LIST_INIT(&lc->waiters);
	return lc;
}

static void
mark_dirty(struct lfile **list, struct lfile *f)
{
	if (f->dirty)
		return;
	f->dirty = 1;
	f->dirty_next = *list;
	*list = f;
}

void
lock_conn_free(struct lock_conn *lc)
{
	struct lfile *dirty = NULL, *f;
	struct waiter *w;
	struct lk *l;

	if (lc == NULL)
		return;
	while ((w = LIST_FIRST(&lc->waiters)) != NULL) {
		if (w->state == W_WAITING) {
			TAILQ_REMOVE(&w->f->waiters, w, link);
			mark_dirty(&dirty, w->f);
		} else {
			TAILQ_REMOVE(&lc->t->done, w, link);
		}
		waiter_free(w);
	}
	while ((l = LIST_FIRST(&lc->locks)) != NULL) {
		mark_dirty(&dirty, l->f);
		lk_remove(l);
	}
	while ((f = dirty) != NULL) {
		dirty = f->dirty_next;
		f->dirty = 0;
		retry_waiters(f);
		file_maybe_free(lc->t, f);
	}
	free(lc);
}

struct lock_table *
lock_table_new(void)
{
	struct lock_table *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->nb = LOCK_BUCKETS_MIN;
	t->b = calloc(t->nb, sizeof *t->b);
	if (t->b == NULL) {
		free(t);
		return NULL;
	}
	TAILQ_INIT(&t->done);
	return t;
}

void
lock_table_free(struct lock_table *t)
{
	if (t == NULL)
		return;
	/* Every lock_conn is gone, so every file and reply went with it. */
	free(t->b);
	free(t);
}

/* ---- introspection ---- */

static void
info_of(const struct lk *l, struct lock_info *i)
{
	i->conn = l->lc;
	i->owner = l->owner;
	i->pid = l->pid;
	i->type = l->type;
	i->flock = l->flock;
	i->start = l->start;
	i->end = l->end;
}

size_t
lock_table_list(const struct lock_table *t, uint64_t id,
    struct lock_info *out, size_t cap)
{
	struct lfile *f = file_find(t, id);
	const struct lk *l;
	size_t n = 0;

	if (f == NULL)
		return 0;
	TAILQ_FOREACH(l, &f->posix, by_file)
		if (n++ < cap)
			info_of(l, &out[n - 1]);
	TAILQ_FOREACH(l, &f->flocks, by_file)
		if (n++ < cap)
			info_of(l, &out[n - 1]);
	return n;
}

int
lock_load(struct lock_conn *lc, uint64_t id, const struct lock_info *li)
{
	struct mst_lock_req q;
	struct lfile *f;
	struct lk *l;

	if ((li->type != MST_LK_RD && li->type != MST_LK_WR) ||
	    li->start > li->end ||
	    (li->flock && (li->start != 0 || li->end != MST_LK_EOF)))
		return -EINVAL;
	f = file_get(lc->t, id);
	if (f == NULL)
		return -ENOMEM;
	memset(&q, 0, sizeof q);
	q.id = id;
	q.owner = li->owner;
	q.pid = li->pid;
	q.type = li->type;
	q.flags = li->flock ? MST_LKF_FLOCK : 0;
	q.start = li->start;
	q.end = li->end;
	l = lk_new(f, lc, &q);
	if (l == NULL) {
		file_maybe_free(lc->t, f);
		return -ENOMEM;
	}
	lk_attach(l);
	return 0;
}

int
lock_conflict(struct lock_conn *lc, const struct mst_lock_req *q,
    struct lock_info *out)
{
	struct lfile *f = file_find(lc->t, q->id);
	struct lk *l = f != NULL ? find_conflict(f, lc, q) : NULL;

	if (l == NULL)
		return 0;
	info_of(l, out);
	return 1;
}

size_t
lock_conn_nlocks(const struct lock_conn *lc)
{
	return lc->nlocks;
}

size_t
lock_conn_nwaiters(const struct lock_conn *lc)
{
	return lc->nwaiters;
}

size_t
lock_table_nfiles(const struct lock_table *t)
{
	return t->n;
}
