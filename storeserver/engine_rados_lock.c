/*
 * engine_rados_lock.c - LOCK on the rados back-end: POSIX record locks
 * and flock(2) locks that hold across every mstored on one pool, with
 * the semantics lock.c gives them in one server (mstore-protocol(7),
 * LOCK). Owns the lock tables in the pool, this server's liveness lease,
 * its waiting LOCK jobs, and the one thread that runs every LOCK and
 * ENG_OP_UNLOCK_OWNER job of this server in arrival order (so this
 * server never races itself on a table, and no mutex but the queue's is
 * needed).
 *
 * Objects:
 *   k.<id>         file <id>'s lock table: omap g = generation (16 hex),
 *                  t = 'K' then one 46-byte record per held lock: server
 *                  sid u64, connection token u64, owner u64, pid u32,
 *                  type u8, flock u8, start u64, end u64 (little-endian),
 *                  POSIX locks by start, then flock locks in grant order
 *                  (lock_table_list's order). Changed only by ONE write
 *                  guarded by omap_cmp(g) (or an exclusive create), so two
 *                  servers never both decide on one version. Emptied, not
 *                  removed, when its last lock goes.
 *   mst.srv.<sid>  this server's lease: a cls_lock exclusive lock "live"
 *                  of lock_lease seconds (engine_conf, default 10), taken
 *                  before its first record is written and renewed every
 *                  fifth of that. sid = incarnation
 *                  << 16 | epoch. A record whose lease has no locker (its
 *                  server died, or stopped: the object is removed at
 *                  close) is dropped by whichever server next reads that
 *                  table, and the waiters it blocked are granted. Its
 *                  omap w.<token>.<owner> = the owner each POSIX request
 *                  waiting in this server waits for (deadlock walks).
 *
 * One LOCK: read k.<id>, load it into a fresh lock.c table (one lock_conn
 * per (sid, token), records of dead servers left out), apply the request
 * with lock_request (without MST_LKF_WAIT: waiting is done here), dump
 * it, write it if it changed, answer after the write. On a write that
 * released anything, k.<id> is notified (fire and forget). A conflict
 * with MST_LKF_WAIT parks the job in this server's memory: the thread
 * watches k.<id> while it has waiters there and retries them all, in
 * arrival order and in one write, on a notify from another server, after
 * a release of its own, and every RL_POLL_MS against lost notifies and
 * dead holders. A grant is held from the write on; its reply follows.
 *
 * Self-fencing: if the lease cannot be renewed for lock_lease - 3 s (by
 * this server's monotonic clock from the send of the last renewal that
 * succeeded; the OSD's lease runs lock_lease s from its receipt, which
 * is later), this server stops using its records. First every client
 * connection holding records or waiting is closed (engine_conf.fence:
 * the client sees a lost connection, as after a restart, and knows its
 * locks are gone), then it takes a new epoch (a new sid and lease) and
 * removes the old lease, so that others drop its old records at once.
 * A guard thread of its own watches that deadline, so neither a lock
 * thread nor a lease thread stuck in a storage call (each may take up
 * to the 5 s OSD timeout) delays the closing past the lease: the 3 s
 * left cover the closing (milliseconds, on the network layer's loop)
 * and the drift of this host's clock rate against the OSD's.
 *
 * EDEADLK: a POSIX request about to wait publishes its blocker under
 * w. first, then follows the chain of waiting owners (this server's in
 * memory, others' through their w. keys), at most 10, as lock.c does;
 * again whenever a retry finds a new blocker.
 *
 * Differences from lock.c in one server (mstored(8), BACK-ENDS):
 *  - two requests closing one deadlock cycle through two servers at the
 *    same instant may both get EDEADLK (Linux fails one of them);
 *  - LOCK_CONN_LOCKS_MAX counts one connection's locks per file;
 *  - a holder's locks outlive a SIGKILLed server by up to lock_lease s;
 *  - a server that could not renew its lease (stalled, or cut off from
 *    the OSDs) closes its lock-holding connections: those locks are lost
 *    to their owners, as if the server had restarted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_rados.h"
#include "lock.h"
#include "log.h"
#include "metrics.h"

#define RL_LEASE_S	10		/* lease duration by default, s */
#define RL_LEASE_MIN_S	5
#define RL_MARGIN_MS	3000		/* fenced this long before it lapses */
#define RL_POLL_MS	1000		/* waiters retried at least this often */
#define RL_ALIVE_MS	1000		/* a live lease is trusted this long */
#define RL_REC_LEN	46u
#define RL_TRIES	64		/* CAS attempts, then EIO */
#define RL_QUEUED_MS	10000		/* a LOCK queued longer: EIO */
#define RL_NOTIFY_MS	5000u
#define RL_LOCK_NAME	"live"
#define RL_COOKIE	"mstored"

enum { RL_JOB, RL_RETRY };

/* One thing for the thread to do. */
struct rl_item {
	struct rl_item *next;
	int kind;
	struct job *j;		/* RL_JOB */
	uint64_t fid;		/* RL_RETRY */
	int64_t at;		/* queued */
};

/* A parked LOCK job and the owner in its way. */
struct rl_wait {
	struct rl_wait *next;
	struct job *j;
	uint64_t bsid, btok, bown;
	/* One retry's verdict, applied once its write is done. */
	int rc;
	int decided;
	struct mst_lock_rep rep;
	/* What this server's w. key for it says (registered set). */
	int registered;
	uint64_t rsid, rtok, rown;
};

/* What a watch callback knows: the file. After its unwatch it waits in
 * rl.dead until a rados_watch_flush has seen every callback out. */
struct rl_wctx {
	struct rl_wctx *next;
	uint64_t fid;
};

/* A file with waiters of this server. */
struct rl_file {
	struct rl_file *next;
	uint64_t fid;
	struct rl_wait *waiters;	/* arrival order */
	uint64_t cookie;
	int watching;
	struct rl_wctx *x;	/* the watch's argument, or NULL */
};

/* A connection of this server that sent LOCK. */
struct rl_conn {
	struct rl_conn *next;
	uint64_t token;
	uint64_t *fids;		/* files where it holds records */
	size_t *nlocks;		/* ... how many locks in each (metrics) */
	size_t nfids, cap;
	unsigned nwait;
	int ended;		/* its records could not all be removed:
				   tried again every RL_POLL_MS */
	uint64_t fenced;	/* the sid whose fence closed it */
};

/* What is known of another server's (or an old epoch's) lease. */
struct rl_peer {
	struct rl_peer *next;
	uint64_t sid;
	int dead;
	int64_t at;		/* when it was last seen alive */
};

/* A table as read. */
struct rl_tab {
	int exists;
	uint64_t gen;
	uint8_t *t;		/* records only (after 'K') */
	size_t n;		/* records */
};

/* A table loaded into lock.c. */
struct rl_stub {
	uint64_t sid, tok;
	struct lock_conn *lc;
};

struct rl_work {
	uint64_t fid;
	struct lock_table *t;
	struct rl_stub *st;
	size_t nst, cap;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rl_item *qh, *qt;	/* guarded by mu */
	int stop;			/* guarded by mu */
	int started;			/* guarded by mu */
	pthread_t thr;
	struct rados_engine *e;
	/* The lease, renewed by its own thread so that slow lock work
	 * never delays it. */
	pthread_cond_t lcv;
	pthread_t lthr;
	int lstarted;
	int leased;			/* guarded by mu */
	uint64_t lease_sid;		/* guarded by mu */
	int64_t lease_ok;		/* guarded by mu: send time of the
					   last renewal that succeeded */
	int lease_lost;			/* guarded by mu: renewal said ENOENT */
	int lease_s;			/* the lease's duration, seconds */
	int renew_ms;			/* renewed this often */
	int fence_ms;			/* fenced once not renewed this long */
	/* The guard: closes the clients of a lapsing lease in time. */
	pthread_cond_t gcv;
	pthread_t gthr;
	int gstarted;
	uint64_t guard_sid;		/* guarded by mu: fenced by the guard */
	int gbusy;			/* guarded by mu: the guard is closing
					   connections (gcv when done) */
	/* rl.conns' links, nfids, nwait and ended are written under mu
	 * (the guard reads them); the rest is the lock thread's. */
	/* The lock thread's own from here on. */
	uint64_t sid;
	int64_t next_poll;
	struct rl_file *files;
	struct rl_conn *conns;
	struct rl_peer *peers;
	struct rl_wctx *dead;		/* unwatched, to free after a flush */
	uint64_t grants, waits, purged;
} rl = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.lcv = PTHREAD_COND_INITIALIZER,
	.gcv = PTHREAD_COND_INITIALIZER,
};

static void reg_put(struct rl_wait *x, int set);
static void locks_publish(void);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The CLOCK_MONOTONIC deadline |ms| from now, for a timed wait. */
static void
deadline_in(struct timespec *ts, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void
tab_oid(char *out, uint64_t fid)
{
	re_oid(out, 'k', fid);
}

static void
lease_oid(char *out, size_t cap, uint64_t sid)
{
	char hex[17];

	re_hex(hex, sid);
	snprintf(out, cap, "mst.srv.%s", hex);
}

/* ---- the queue ---- */

static void
push(struct rl_item *it)
{
	it->next = NULL;
	it->at = now_ms();
	pthread_mutex_lock(&rl.mu);
	if (rl.qt != NULL)
		rl.qt->next = it;
	else
		rl.qh = it;
	rl.qt = it;
	pthread_cond_signal(&rl.cv);
	pthread_mutex_unlock(&rl.mu);
}

static void
push_retry(uint64_t fid)
{
	struct rl_item *it = calloc(1, sizeof *it);

	if (it == NULL)
		return;		/* the poll retries it */
	it->kind = RL_RETRY;
	it->fid = fid;
	push(it);
}

/* ---- replies ---- */

static void
finish(struct job *j, int rc, const struct mst_lock_rep *rep)
{
	uint8_t *buf;
	int n;

	if (rc == 0 && j->op == MST_OP_LOCK) {
		buf = malloc(32);
		n = buf != NULL ? mst_lock_rep_encode(rep, buf, 32) : -ENOMEM;
		if (n < 0) {
			free(buf);
			rc = -ENOMEM;
		} else if (job_add_frame(j, buf, (size_t)n) < 0) {
			rc = -ENOMEM;
		}
	}
	j->status = rc;
	locks_publish();	/* before the reply: a scrape after it sees it */
	rl.e->conf.done(rl.e->conf.done_arg, j);
}

/* ---- connections and files of this server ---- */

static struct rl_conn *
conn_find(uint64_t token, int make)
{
	struct rl_conn *c;

	for (c = rl.conns; c != NULL; c = c->next)
		if (c->token == token)
			return c;
	if (!make || (c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	c->token = token;
	pthread_mutex_lock(&rl.mu);
	c->next = rl.conns;
	rl.conns = c;
	pthread_mutex_unlock(&rl.mu);
	return c;
}

/* Forget |c|'s |i|-th file (rl.mu held). */
static void
conn_forget(struct rl_conn *c, size_t i)
{
	c->nfids--;
	c->fids[i] = c->fids[c->nfids];
	c->nlocks[i] = c->nlocks[c->nfids];
}

/* Remember how many locks connection |token| holds in |fid|. */
static void
conn_note(uint64_t token, uint64_t fid, size_t count)
{
	struct rl_conn *c = conn_find(token, count > 0);
	uint64_t *n;
	size_t *k, i, cap;

	if (c == NULL)
		return;
	for (i = 0; i < c->nfids; i++)
		if (c->fids[i] == fid)
			break;
	if (i < c->nfids) {
		pthread_mutex_lock(&rl.mu);
		if (count == 0)
			conn_forget(c, i);
		else
			c->nlocks[i] = count;
		pthread_mutex_unlock(&rl.mu);
		return;
	}
	if (count == 0)
		return;
	if (c->nfids == c->cap) {
		cap = c->cap ? c->cap * 2 : 8;
		n = realloc(c->fids, cap * sizeof *n);
		if (n != NULL)
			c->fids = n;
		k = n != NULL ? realloc(c->nlocks, cap * sizeof *k) : NULL;
		if (k == NULL) {
			log_err("rados: out of memory noting a lock of a "
			    "connection: it stays until its server's lease "
			    "lapses");
			return;
		}
		c->nlocks = k;
		c->cap = cap;
	}
	pthread_mutex_lock(&rl.mu);
	c->fids[c->nfids] = fid;
	c->nlocks[c->nfids++] = count;
	pthread_mutex_unlock(&rl.mu);
}

/* The locks and waiting LOCKs of this server's connections, for the
 * metrics (the lock thread's own lists: no I/O). */
static void
locks_publish(void)
{
	const struct rl_conn *c;
	const struct rl_file *f;
	const struct rl_wait *w;
	uint64_t locks = 0, waiters = 0;
	size_t i;

	for (c = rl.conns; c != NULL; c = c->next)
		for (i = 0; i < c->nfids; i++)
			locks += c->nlocks[i];
	for (f = rl.files; f != NULL; f = f->next)
		for (w = f->waiters; w != NULL; w = w->next)
			waiters++;
	metrics_engine_locks(locks, waiters);
}

static struct rl_file *
file_find(uint64_t fid)
{
	struct rl_file *f;

	for (f = rl.files; f != NULL; f = f->next)
		if (f->fid == fid)
			return f;
	return NULL;
}

static void
on_notify(void *arg, uint64_t notify_id, uint64_t cookie,
    uint64_t notifier_id, void *data, size_t len)
{
	struct rl_wctx *x = arg;
	char oid[RE_OID_MAX];

	(void)data;
	(void)len;
	tab_oid(oid, x->fid);
	(void)rados_notify_ack(rl.e->io, oid, notify_id, cookie, NULL, 0);
	if (notifier_id != rl.e->instance)
		push_retry(x->fid);	/* own releases retry at once */
}

static void
on_watch_error(void *arg, uint64_t cookie, int err)
{
	struct rl_wctx *x = arg;

	(void)cookie;
	log_warn("rados: lock watch of file %" PRIu64 " lost: %s (polled "
	    "until it is made anew)", x->fid, strerror(-err));
	push_retry(x->fid);
}

static void file_unwatch(struct rl_file *f);

static void
file_watch(struct rl_file *f)
{
	struct rl_wctx *x = calloc(1, sizeof *x);
	char oid[RE_OID_MAX];
	int rc;

	if (x == NULL)
		return;		/* polled */
	x->fid = f->fid;
	f->x = x;
	tab_oid(oid, f->fid);
	rc = rados_watch2(rl.e->io, oid, &f->cookie, on_notify,
	    on_watch_error, x);
	f->watching = rc == 0;
	if (rc < 0) {
		log_warn("rados: watching %s: %s (its waiters are polled)",
		    oid, strerror(-rc));
		file_unwatch(f);	/* x to rl.dead */
	}
}

static void
file_unwatch(struct rl_file *f)
{
	if (f->watching)
		(void)rados_unwatch2(rl.e->io, f->cookie);
	f->watching = 0;
	if (f->x != NULL) {
		f->x->next = rl.dead;
		rl.dead = f->x;
		f->x = NULL;
	}
}

/* Free the arguments of ended watches once no callback can use them. */
static void
dead_free(void)
{
	struct rl_wctx *x;

	if (rl.dead == NULL)
		return;
	(void)rados_watch_flush(rl.e->cl);
	while ((x = rl.dead) != NULL) {
		rl.dead = x->next;
		free(x);
	}
}

/* Drop |f| once no waiter is left. */
static void
file_maybe_free(struct rl_file *f)
{
	struct rl_file **pp;

	if (f->waiters != NULL)
		return;
	file_unwatch(f);
	for (pp = &rl.files; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	free(f);
}

/* ---- leases ---- */

static int
lease_lock(uint64_t sid, uint8_t flags)
{
	struct timeval d = { .tv_sec = rl.lease_s };
	char oid[RE_OID_MAX + 8];

	lease_oid(oid, sizeof oid, sid);
	return rados_lock_exclusive(rl.e->io, oid, RL_LOCK_NAME, RL_COOKIE,
	    "mstored lock lease", &d, flags);
}

static void
lease_drop(uint64_t sid)
{
	char oid[RE_OID_MAX + 8];

	/* The lease and the waiters' keys with it: others read ENOENT,
	 * which is a dead server. If this fails, the lease lapses. */
	lease_oid(oid, sizeof oid, sid);
	(void)rados_remove(rl.e->io, oid);
}

/*
 * Close every client connection that holds records or waits in this
 * server (engine_conf.fence), and return once they are closed: their
 * clients must not go on believing in locks that others may be granted.
 * From the guard or the lock thread, without rl.mu.
 */
static void
fence_clients(uint64_t sid, const char *why)
{
	uint64_t *toks = NULL, *n;
	size_t ntok = 0, cap = 0;
	struct rl_conn *c;

	pthread_mutex_lock(&rl.mu);
	for (c = rl.conns; c != NULL; c = c->next) {
		if (c->ended || c->fenced == sid ||
		    (c->nfids == 0 && c->nwait == 0))
			continue;
		if (ntok == cap) {
			n = realloc(toks, (cap ? cap * 2 : 16) * sizeof *n);
			if (n == NULL)
				break;	/* those named are closed still */
			toks = n;
			cap = cap ? cap * 2 : 16;
		}
		c->fenced = sid;
		toks[ntok++] = c->token;
	}
	pthread_mutex_unlock(&rl.mu);
	if (ntok > 0 || why != NULL)
		log_err("rados: lock lease of sid %016" PRIx64 " %s: closing "
		    "the %zu client connection(s) holding or waiting for its "
		    "locks", sid, why != NULL ? why : "given up", ntok);
	if (ntok > 0 && rl.e->conf.fence != NULL)
		rl.e->conf.fence(rl.e->conf.fence_arg, toks, ntok);
	free(toks);
}

/* Why a lease is being fenced, into |buf| (rl.mu held). */
static const char *
lapse_why(char *buf, size_t cap)
{
	int64_t late = now_ms() - rl.lease_ok;

	if (late > rl.fence_ms)
		snprintf(buf, cap, "was not renewed for %" PRId64 ".%" PRId64
		    " s (limit %d.%d s of %d s)", late / 1000,
		    late % 1000 / 100, rl.fence_ms / 1000,
		    rl.fence_ms % 1000 / 100, rl.lease_s);
	else
		snprintf(buf, cap, "was found lapsed by its renewal");
	return buf;
}

/* The guard thread: once the lease is past its fence deadline, closes
 * the clients of its locks at once (the lock thread may be busy). */
static void *
guard_main(void *arg)
{
	struct timespec ts;
	const char *why;
	char wbuf[96];
	uint64_t sid;
	int64_t due;

	(void)arg;
	pthread_mutex_lock(&rl.mu);
	while (!rl.stop) {
		if (rl.leased && rl.guard_sid != rl.lease_sid &&
		    (rl.lease_lost || now_ms() - rl.lease_ok > rl.fence_ms)) {
			sid = rl.guard_sid = rl.lease_sid;
			why = lapse_why(wbuf, sizeof wbuf);
			rl.gbusy = 1;
			pthread_mutex_unlock(&rl.mu);
			fence_clients(sid, why);
			pthread_mutex_lock(&rl.mu);
			rl.gbusy = 0;
			pthread_cond_broadcast(&rl.gcv);
			continue;
		}
		due = 60000;
		if (rl.leased && rl.guard_sid != rl.lease_sid)
			due = rl.lease_ok + rl.fence_ms + 1 - now_ms();
		deadline_in(&ts, due);
		(void)pthread_cond_timedwait(&rl.gcv, &rl.mu, &ts);
	}
	pthread_mutex_unlock(&rl.mu);
	return NULL;
}

/* The lease was not renewed in time: records under this sid may be
 * dropped by others at any moment, so none is used again. Its clients
 * are closed first (again, if the guard did: connections may have been
 * granted since), then the lease is removed. */
static void
fence(void)
{
	struct rl_conn *c;
	struct rl_file *f;
	struct rl_wait *x;
	const char *why;
	char wbuf[96];

	pthread_mutex_lock(&rl.mu);
	why = rl.guard_sid == rl.sid ? NULL : lapse_why(wbuf, sizeof wbuf);
	rl.guard_sid = rl.sid;
	pthread_mutex_unlock(&rl.mu);
	fence_clients(rl.sid, why);
	pthread_mutex_lock(&rl.mu);
	while (rl.gbusy)		/* the guard's closing is not done */
		pthread_cond_wait(&rl.gcv, &rl.mu);
	pthread_mutex_unlock(&rl.mu);
	log_err("rados: lock lease of sid %016" PRIx64 " given up: its "
	    "locks may be taken by others; continuing under a new lease",
	    rl.sid);
	pthread_mutex_lock(&rl.mu);
	rl.leased = 0;
	pthread_mutex_unlock(&rl.mu);
	lease_drop(rl.sid);
	pthread_mutex_lock(&rl.mu);
	rl.sid++;
	for (c = rl.conns; c != NULL; c = c->next)
		c->nfids = 0;
	pthread_mutex_unlock(&rl.mu);
	/* The waiters' keys, under the new sid. */
	for (f = rl.files; f != NULL; f = f->next)
		for (x = f->waiters; x != NULL; x = x->next)
			if (x->registered)
				reg_put(x, 1);
}

/* Is the lease held but no longer to be trusted? */
static int
lease_lapsing(void)
{
	int bad;

	pthread_mutex_lock(&rl.mu);
	bad = rl.leased && (rl.lease_lost ||
	    now_ms() - rl.lease_ok > rl.fence_ms);
	pthread_mutex_unlock(&rl.mu);
	return bad;
}

/* The lease thread: renews the lease every rl.renew_ms while held. */
static void *
lease_main(void *arg)
{
	struct timespec ts;
	uint64_t sid;
	int64_t t0;
	int rc;

	(void)arg;
	pthread_mutex_lock(&rl.mu);
	while (!rl.stop) {
		deadline_in(&ts, rl.renew_ms);
		(void)pthread_cond_timedwait(&rl.lcv, &rl.mu, &ts);
		if (rl.stop || !rl.leased || rl.lease_lost)
			continue;
		/* Past rl.fence_ms others may soon find it lapsed and drop
		 * its records (and remember it dead): never renewed again,
		 * whatever the OSD would say now. */
		if (now_ms() - rl.lease_ok > rl.fence_ms) {
			rl.lease_lost = 1;
			pthread_cond_broadcast(&rl.gcv);
			continue;
		}
		sid = rl.lease_sid;
		pthread_mutex_unlock(&rl.mu);
		t0 = now_ms();
		rc = lease_lock(sid, LIBRADOS_LOCK_FLAG_MUST_RENEW);
		if (rc < 0)
			log_warn("rados: renewing the lock lease of sid %016"
			    PRIx64 ": %s", sid, strerror(-rc));
		pthread_mutex_lock(&rl.mu);
		if (!rl.leased || rl.lease_sid != sid)
			continue;
		if (rc == 0 && now_ms() - rl.lease_ok <= rl.fence_ms) {
			rl.lease_ok = t0;
		} else if (rc == -ENOENT) {
			rl.lease_lost = 1;	/* lapsed and taken away */
			pthread_cond_broadcast(&rl.gcv);
		}
	}
	pthread_mutex_unlock(&rl.mu);
	return NULL;
}

/* Before a record of this server is written. 0 or -EIO. */
static int
lease_ensure(void)
{
	int64_t t0 = now_ms();
	int rc, leased;

	if (lease_lapsing())
		fence();
	pthread_mutex_lock(&rl.mu);
	leased = rl.leased;
	pthread_mutex_unlock(&rl.mu);
	if (leased)
		return 0;
	rc = lease_lock(rl.sid, 0);
	if (rc < 0) {
		log_err("rados: taking the lock lease of sid %016" PRIx64
		    ": %s", rl.sid, strerror(-rc));
		return -EIO;
	}
	pthread_mutex_lock(&rl.mu);
	rl.leased = 1;
	rl.lease_sid = rl.sid;
	rl.lease_ok = t0;
	rl.lease_lost = 0;
	if (!rl.lstarted)
		rl.lstarted = pthread_create(&rl.lthr, NULL, lease_main,
		    NULL) == 0;
	if (!rl.gstarted)
		rl.gstarted = pthread_create(&rl.gthr, NULL, guard_main,
		    NULL) == 0;
	pthread_cond_broadcast(&rl.gcv);
	rc = rl.lstarted && rl.gstarted ? 0 : -EIO;
	if (rc < 0)
		rl.leased = 0;	/* no record without both threads */
	pthread_mutex_unlock(&rl.mu);
	if (rc < 0)
		log_err("rados: starting the lock lease threads failed");
	return rc;
}

/* Is the server that wrote records under |sid| gone? */
static int
peer_dead(uint64_t sid)
{
	char oid[RE_OID_MAX + 8], tag[64], clients[256], cookies[256];
	char addrs[256];
	size_t tl = sizeof tag, cl = sizeof clients, kl = sizeof cookies;
	size_t al = sizeof addrs;
	struct rl_peer *p;
	int excl;
	ssize_t n;

	if (sid == rl.sid)
		return 0;
	for (p = rl.peers; p != NULL; p = p->next)
		if (p->sid == sid)
			break;
	if (p != NULL && (p->dead || now_ms() - p->at < RL_ALIVE_MS))
		return p->dead;
	if (p == NULL) {
		p = calloc(1, sizeof *p);
		if (p == NULL)
			return 0;
		p->sid = sid;
		p->next = rl.peers;
		rl.peers = p;
	}
	lease_oid(oid, sizeof oid, sid);
	n = rados_list_lockers(rl.e->io, oid, RL_LOCK_NAME, &excl, tag, &tl,
	    clients, &cl, cookies, &kl, addrs, &al);
	if (n == 0 || n == -ENOENT) {
		p->dead = 1;
		log_info("rados: lock lease of sid %016" PRIx64 " has lapsed: "
		    "its locks are dropped", sid);
	} else {
		if (n < 0 && n != -ERANGE)
			log_warn("rados: reading lease %s: %s (taken as alive)",
			    oid, strerror((int)-n));
		p->at = now_ms();
	}
	return p->dead;
}

/* ---- tables ---- */

static void
tab_free(struct rl_tab *tb)
{
	free(tb->t);
	memset(tb, 0, sizeof *tb);
}

static int
tab_read(uint64_t fid, struct rl_tab *tb)
{
	static const char *const keys[] = { "g", "t", NULL };
	struct kvset vals = { 0 };
	const struct kv *g, *t;
	char oid[RE_OID_MAX];
	int rc;

	memset(tb, 0, sizeof *tb);
	tab_oid(oid, fid);
	rc = re_read(rl.e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	g = kvset_get(&vals, "g");
	t = kvset_get(&vals, "t");
	rc = -EIO;
	if (g == NULL || t == NULL || re_unhex(g->v, g->vlen, &tb->gen) < 0 ||
	    t->vlen < 1 || t->v[0] != 'K' || (t->vlen - 1) % RL_REC_LEN) {
		log_err("rados: lock table %s is malformed", oid);
		goto out;
	}
	tb->n = (t->vlen - 1) / RL_REC_LEN;
	tb->t = malloc(t->vlen);
	if (tb->t == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(tb->t, t->v + 1, t->vlen - 1);
	tb->exists = 1;
	rc = 0;
out:
	kvset_free(&vals);
	return rc;
}

static struct lock_conn *
stub(struct rl_work *w, uint64_t sid, uint64_t tok)
{
	struct rl_stub *n;
	size_t i;

	for (i = 0; i < w->nst; i++)
		if (w->st[i].sid == sid && w->st[i].tok == tok)
			return w->st[i].lc;
	if (w->nst == w->cap) {
		n = realloc(w->st, (w->cap ? w->cap * 2 : 4) * sizeof *n);
		if (n == NULL)
			return NULL;
		w->st = n;
		w->cap = w->cap ? w->cap * 2 : 4;
	}
	n = &w->st[w->nst];
	n->sid = sid;
	n->tok = tok;
	n->lc = lock_conn_new(w->t, n);
	if (n->lc == NULL)
		return NULL;
	w->nst++;
	return n->lc;
}

static const struct rl_stub *
stub_of(const struct rl_work *w, const struct lock_conn *lc)
{
	size_t i;

	for (i = 0; i < w->nst; i++)
		if (w->st[i].lc == lc)
			return &w->st[i];
	return NULL;
}

static void
work_free(struct rl_work *w)
{
	size_t i;

	for (i = 0; i < w->nst; i++)
		lock_conn_free(w->st[i].lc);
	free(w->st);
	lock_table_free(w->t);
	memset(w, 0, sizeof *w);
}

/*
 * Load |tb| into a fresh lock.c table, leaving out the records of dead
 * servers and, when |drop| is set, those of this server's connection
 * |drop_tok|. 0, -ENOMEM or -EIO.
 */
static int
work_load(struct rl_work *w, uint64_t fid, const struct rl_tab *tb,
    int drop, uint64_t drop_tok)
{
	struct lock_conn *lc;
	struct lock_info li;
	const uint8_t *p;
	uint64_t sid, tok;
	size_t i;
	int rc;

	memset(w, 0, sizeof *w);
	w->fid = fid;
	w->t = lock_table_new();
	if (w->t == NULL)
		return -ENOMEM;
	for (i = 0; i < tb->n; i++) {
		p = tb->t + i * RL_REC_LEN;
		sid = er_get64(p);
		tok = er_get64(p + 8);
		if (drop && sid == rl.sid && tok == drop_tok)
			continue;
		if (peer_dead(sid)) {
			rl.purged++;
			continue;
		}
		memset(&li, 0, sizeof li);
		li.owner = er_get64(p + 16);
		li.pid = er_get32(p + 24);
		li.type = p[28];
		li.flock = p[29];
		li.start = er_get64(p + 30);
		li.end = er_get64(p + 38);
		lc = stub(w, sid, tok);
		if (lc == NULL)
			return -ENOMEM;
		rc = lock_load(lc, fid, &li);
		if (rc < 0) {
			log_err("rados: lock table of file %" PRIu64 " has a "
			    "bad record", fid);
			return rc == -ENOMEM ? rc : -EIO;
		}
	}
	return 0;
}

/* The records of |w|, in lock_table_list's order; *out malloc'ed. */
static int
work_dump(const struct rl_work *w, uint8_t **out, size_t *nout)
{
	size_t n = lock_table_list(w->t, w->fid, NULL, 0), i;
	struct lock_info *li = calloc(n ? n : 1, sizeof *li);
	uint8_t *buf = malloc(1 + n * RL_REC_LEN), *p;
	const struct rl_stub *s;

	if (li == NULL || buf == NULL) {
		free(li);
		free(buf);
		return -ENOMEM;
	}
	lock_table_list(w->t, w->fid, li, n);
	buf[0] = 'K';
	for (i = 0; i < n; i++) {
		p = buf + 1 + i * RL_REC_LEN;
		s = stub_of(w, li[i].conn);
		er_put64(p, s->sid);
		er_put64(p + 8, s->tok);
		er_put64(p + 16, li[i].owner);
		er_put32(p + 24, li[i].pid);
		p[28] = li[i].type;
		p[29] = li[i].flock;
		er_put64(p + 30, li[i].start);
		er_put64(p + 38, li[i].end);
	}
	free(li);
	*out = buf;
	*nout = n;
	return 0;
}

static void
notify_done(rados_completion_t c, void *arg)
{
	(void)arg;
	rados_aio_release(c);
}

/* Wake the waiters of other servers on |fid| (fire and forget: the
 * change is written, and they poll anyway). */
static void
notify_file(uint64_t fid)
{
	char oid[RE_OID_MAX];
	rados_completion_t c;
	int rc;

	tab_oid(oid, fid);
	rc = rados_aio_create_completion2(NULL, notify_done, &c);
	if (rc < 0)
		return;
	rc = rados_aio_notify(rl.e->io, oid, c, "K", 1, RL_NOTIFY_MS, NULL,
	    NULL);
	if (rc < 0)
		rados_aio_release(c);
}

/*
 * Write |w| over |tb| if it differs. 0 (written or nothing to write),
 * -EAGAIN (another server wrote first: read again) or an error. Notes
 * which of this server's connections hold records now, and notifies on
 * any release.
 */
static int
commit(const struct rl_tab *tb, const struct rl_work *w)
{
	char oid[RE_OID_MAX], g[17];
	rados_write_op_t op;
	uint64_t sid;
	uint8_t *buf;
	size_t n, i, k;
	int rc, released = 0, mine = 0;

	rc = work_dump(w, &buf, &n);
	if (rc < 0)
		return rc;
	if (n == tb->n && (n == 0 ||
	    memcmp(buf + 1, tb->t, n * RL_REC_LEN) == 0)) {
		free(buf);
		goto noted;
	}
	for (i = 0; i < tb->n && !released; i++) {
		for (k = 0; k < n; k++)
			if (memcmp(tb->t + i * RL_REC_LEN,
			    buf + 1 + k * RL_REC_LEN, RL_REC_LEN) == 0)
				break;
		released = k == n;
	}
	for (k = 0; k < n; k++)
		if (er_get64(buf + 1 + k * RL_REC_LEN) == rl.sid)
			mine = 1;
	sid = rl.sid;
	if (mine && (rc = lease_ensure()) < 0) {
		free(buf);
		return rc;
	}
	if (sid != rl.sid) {
		free(buf);
		return -EAGAIN;		/* fenced: again under the new sid */
	}
	op = rados_create_write_op();
	if (op == NULL) {
		free(buf);
		return -ENOMEM;
	}
	if (tb->exists) {
		re_hex(g, tb->gen);
		re_cmp(op, "g", g, 16);
	} else {
		rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	}
	re_hex(g, tb->gen + 1);
	re_set(op, "g", g, 16);
	re_set(op, "t", buf, 1 + n * RL_REC_LEN);
	free(buf);
	tab_oid(oid, w->fid);
	rc = re_write(rl.e, oid, op);
	if (rc == -ECANCELED || rc == -EEXIST)
		return -EAGAIN;
	if (rc < 0)
		return re_err("lock table write", oid, rc);
	/* A write that took so long that the lease may have lapsed before
	 * it landed: others may take these records for a dead server's,
	 * so they are given up and the request decided again. */
	if (mine && lease_lapsing()) {
		fence();
		return -EAGAIN;
	}
	if (released) {
		notify_file(w->fid);
		if (file_find(w->fid) != NULL)
			push_retry(w->fid);
	}
noted:
	for (i = 0; i < w->nst; i++)
		if (w->st[i].sid == rl.sid)
			conn_note(w->st[i].tok, w->fid,
			    lock_conn_nlocks(w->st[i].lc));
	return 0;
}

/* ---- deadlocks (this server's waiters only) ---- */

static struct rl_wait *
waiter_of(uint64_t tok, uint64_t owner)
{
	struct rl_file *f;
	struct rl_wait *w;

	for (f = rl.files; f != NULL; f = f->next)
		for (w = f->waiters; w != NULL; w = w->next)
			if (w->j->owner == tok &&
			    w->j->req.lock.owner == owner &&
			    !(w->j->req.lock.flags & MST_LKF_FLOCK))
				return w;
	return NULL;
}

/* Would POSIX owner (tok, owner), blocked by (bsid, btok, bown), wait
 * for itself? lock.c's walk, over this server's waiters. */
static int
would_deadlock(const struct mst_lock_req *q, uint64_t tok, uint64_t bsid,
    uint64_t btok, uint64_t bown)
{
	struct rl_wait *w;
	int i;

	if (q->flags & MST_LKF_FLOCK)
		return 0;
	for (i = 0; i < 10; i++) {
		if (bsid != rl.sid)
			return 0;
		w = waiter_of(btok, bown);
		if (w == NULL)
			return 0;
		bsid = w->bsid;
		btok = w->btok;
		bown = w->bown;
		if (bsid == rl.sid && btok == tok && bown == q->owner)
			return 1;
	}
	return 0;
}

/* The owner |q| of |lc| conflicts with in |w|. */
static void
blocker(const struct rl_work *w, struct lock_conn *lc,
    const struct mst_lock_req *q, uint64_t *bsid, uint64_t *btok,
    uint64_t *bown)
{
	struct lock_info li;
	const struct rl_stub *s;

	*bsid = *btok = *bown = 0;
	if (!lock_conflict(lc, q, &li))
		return;
	s = stub_of(w, li.conn);
	*bsid = s->sid;
	*btok = s->tok;
	*bown = li.owner;
}

/* ---- this server's waiters, as other servers see them ---- */

/*
 * Every POSIX request waiting in this server has a key w.<token>.<owner>
 * in the omap of mst.srv.<sid> naming the owner in its way (sid, token,
 * owner, 24 bytes little-endian), so that another server can follow a
 * chain of waiting owners through this one (deadlock_across). Written
 * before the walk that could find a cycle, so two requests closing one
 * cycle at the same time both see it (both get EDEADLK: Linux fails
 * one). Removed when the request ends; the object goes at stop.
 */
static void
reg_key(char *out, size_t cap, uint64_t tok, uint64_t owner)
{
	char a[17], b[17];

	re_hex(a, tok);
	re_hex(b, owner);
	snprintf(out, cap, "w.%s.%s", a, b);
}

/* Publish |x|'s blocker, or with |set| 0 withdraw its key. */
static void
reg_put(struct rl_wait *x, int set)
{
	char oid[RE_OID_MAX + 8], k[40];
	rados_write_op_t op;
	uint8_t v[24];
	int rc;

	if (x->j->req.lock.flags & MST_LKF_FLOCK)
		return;
	op = rados_create_write_op();
	if (op == NULL)
		return;
	reg_key(k, sizeof k, x->j->owner, x->j->req.lock.owner);
	if (set) {
		er_put64(v, x->bsid);
		er_put64(v + 8, x->btok);
		er_put64(v + 16, x->bown);
		re_set(op, k, v, sizeof v);
	} else {
		re_rm(op, k);
	}
	lease_oid(oid, sizeof oid, rl.sid);
	rc = re_write(rl.e, oid, op);
	if (rc < 0)
		log_warn("rados: %s waiting owner in %s: %s (deadlocks through "
		    "it may go unseen)", set ? "publishing a" : "withdrawing a",
		    oid, strerror(-rc));
	x->registered = set;
	x->rsid = x->bsid;
	x->rtok = x->btok;
	x->rown = x->bown;
}

/* The owner (sid, tok, owner) waits for, from its server's keys: 1, or
 * 0 when it does not wait (or that cannot be read). */
static int
reg_get(uint64_t sid, uint64_t tok, uint64_t owner, uint64_t out[3])
{
	char oid[RE_OID_MAX + 8], k[40];
	const char *keys[] = { k, NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	int rc, found = 0;

	reg_key(k, sizeof k, tok, owner);
	lease_oid(oid, sizeof oid, sid);
	rc = re_read(rl.e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	v = rc == 0 ? kvset_get(&vals, k) : NULL;
	if (v != NULL && v->vlen == 24) {
		out[0] = er_get64((const uint8_t *)v->v);
		out[1] = er_get64((const uint8_t *)v->v + 8);
		out[2] = er_get64((const uint8_t *)v->v + 16);
		found = 1;
	}
	kvset_free(&vals);
	return found;
}

/*
 * Would POSIX owner (tok, owner), blocked by (bsid, btok, bown), wait
 * for itself? lock.c's walk of at most 10 waiting owners, through this
 * server's waiters in memory and other servers' w. keys.
 */
static int
deadlock_across(uint64_t tok, uint64_t owner, uint64_t bsid, uint64_t btok,
    uint64_t bown)
{
	struct rl_wait *w;
	uint64_t b[3];
	int i;

	for (i = 0; i < 10; i++) {
		if (bsid == rl.sid) {
			w = waiter_of(btok, bown);
			if (w == NULL)
				return 0;
			b[0] = w->bsid;
			b[1] = w->btok;
			b[2] = w->bown;
		} else if (!reg_get(bsid, btok, bown, b)) {
			return 0;
		}
		bsid = b[0];
		btok = b[1];
		bown = b[2];
		if (bsid == rl.sid && btok == tok && bown == owner)
			return 1;
	}
	return 0;
}

/*
 * |x|, already off its file's list, is answered; its key goes (or names
 * the blocker of another request of the same owner that still waits).
 */
static void
waiter_end(struct rl_wait *x, int rc, const struct mst_lock_rep *rep)
{
	struct rl_conn *c = conn_find(x->j->owner, 0);
	struct rl_wait *o;

	pthread_mutex_lock(&rl.mu);
	if (c != NULL && c->nwait > 0)
		c->nwait--;
	pthread_mutex_unlock(&rl.mu);
	if (x->registered) {
		o = waiter_of(x->j->owner, x->j->req.lock.owner);
		if (o != NULL)
			reg_put(o, 1);
		else
			reg_put(x, 0);
	}
	finish(x->j, rc, rep);
	free(x);
}

/*
 * A POSIX waiter of |f| (on its list) with a new blocker: published,
 * then checked for a cycle through other servers. 1 when it ended with
 * EDEADLK (and is off the list).
 */
static int
waiter_blocked(struct rl_file *f, struct rl_wait *x)
{
	struct rl_wait **pp;

	if (x->j->req.lock.flags & MST_LKF_FLOCK)
		return 0;
	if (x->registered && x->rsid == x->bsid && x->rtok == x->btok &&
	    x->rown == x->bown)
		return 0;
	reg_put(x, 1);
	if (!deadlock_across(x->j->owner, x->j->req.lock.owner, x->bsid,
	    x->btok, x->bown))
		return 0;
	for (pp = &f->waiters; *pp != x; pp = &(*pp)->next)
		;
	*pp = x->next;
	waiter_end(x, -EDEADLK, NULL);
	return 1;
}

/* ---- the jobs ---- */

static void
park(struct job *j, uint64_t bsid, uint64_t btok, uint64_t bown)
{
	uint64_t fid = j->req.lock.id;
	struct rl_file *f = file_find(fid);
	struct rl_wait *w = calloc(1, sizeof *w), **pp;
	struct rl_conn *c = conn_find(j->owner, 1);
	int fresh = f == NULL;

	if (w == NULL || c == NULL || (f == NULL &&
	    (f = calloc(1, sizeof *f)) == NULL)) {
		free(w);
		finish(j, -ENOMEM, NULL);
		return;
	}
	if (fresh) {
		f->fid = fid;
		f->next = rl.files;
		rl.files = f;
	}
	w->j = j;
	w->bsid = bsid;
	w->btok = btok;
	w->bown = bown;
	for (pp = &f->waiters; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = w;
	pthread_mutex_lock(&rl.mu);
	c->nwait++;
	pthread_mutex_unlock(&rl.mu);
	rl.waits++;
	locks_publish();
	if (waiter_blocked(f, w)) {
		file_maybe_free(f);
		return;
	}
	if (!f->watching) {
		file_watch(f);
		push_retry(fid);	/* a release before the watch */
	}
}

static void
cancel(struct job *j)
{
	const struct mst_lock_req *q = &j->req.lock;
	struct lock_table *t = lock_table_new();
	struct lock_conn *lc = t != NULL ? lock_conn_new(t, NULL) : NULL;
	struct rl_wait *w, **pp;
	struct mst_lock_rep rep;
	struct rl_file *f;
	int rc = -ENOMEM;

	/* lock.c's checks and reply, on an empty table. */
	if (lc != NULL)
		rc = lock_request(lc, j->id, q, &rep);
	lock_conn_free(lc);
	lock_table_free(t);
	if (rc == 0 && (f = file_find(q->id)) != NULL) {
		for (pp = &f->waiters; (w = *pp) != NULL;) {
			if (w->j->owner != j->owner ||
			    w->j->req.lock.owner != q->owner) {
				pp = &w->next;
				continue;
			}
			*pp = w->next;
			waiter_end(w, -EINTR, NULL);
		}
		file_maybe_free(f);
	}
	finish(j, rc, &rep);
}

/*
 * Decides on a loaded table (and may change it): 0 to write what it left,
 * or an error that ends table_cas without writing.
 */
typedef int rl_step_fn(struct rl_work *w, void *arg);

/*
 * One change of file |fid|'s table: read it, load it (without the
 * records of this server's connection |drop_tok| when |drop|), run
 * |step| on it, write it if it changed; again from the read while
 * another server wrote first. 0 or an error.
 */
static int
table_cas(uint64_t fid, int drop, uint64_t drop_tok, rl_step_fn *step,
    void *arg)
{
	struct rl_work w;
	struct rl_tab tb;
	int rc, tries;

	for (tries = 0; tries < RL_TRIES; tries++) {
		rc = tab_read(fid, &tb);
		if (rc < 0)
			return rc;
		rc = work_load(&w, fid, &tb, drop, drop_tok);
		if (rc == 0 && step != NULL)
			rc = step(&w, arg);
		if (rc == 0)
			rc = commit(&tb, &w);
		work_free(&w);
		tab_free(&tb);
		if (rc != -EAGAIN)
			return rc;
	}
	log_err("rados: lock table of file %" PRIu64 ": %d writes raced, "
	    "giving up with EIO", fid, RL_TRIES);
	return -EIO;
}

/* One LOCK request on a loaded table. */
struct lock_step {
	struct job *j;
	struct mst_lock_req q;		/* without MST_LKF_WAIT */
	struct mst_lock_rep rep;
	int rc;				/* lock_request's, or EDEADLK */
	int waits;
	uint64_t bsid, btok, bown;	/* with |waits|: in its way */
};

static int
step_lock(struct rl_work *w, void *arg)
{
	struct lock_step *s = arg;
	struct lock_conn *lc = stub(w, rl.sid, s->j->owner);
	struct rl_conn *c;

	if (lc == NULL)
		return -ENOMEM;
	s->waits = 0;
	s->rc = lock_request(lc, s->j->id, &s->q, &s->rep);
	if (s->rc != -EAGAIN || !(s->j->req.lock.flags & MST_LKF_WAIT))
		return 0;
	blocker(w, lc, &s->q, &s->bsid, &s->btok, &s->bown);
	c = conn_find(s->j->owner, 0);
	if (would_deadlock(&s->q, s->j->owner, s->bsid, s->btok, s->bown))
		s->rc = -EDEADLK;
	else if (c != NULL && c->nwait >= LOCK_CONN_WAITERS_MAX)
		s->rc = -ENOLCK;
	else
		s->waits = 1;
	/* Written even so: a flock conversion gives up the old lock
	 * first, and dead servers' records were left out. */
	return 0;
}

static void
run_lock(struct job *j)
{
	struct lock_step s = { .j = j, .q = j->req.lock };
	int rc;

	if (s.q.flags & MST_LKF_CANCEL) {
		cancel(j);
		return;
	}
	s.q.flags &= (uint8_t)~MST_LKF_WAIT;
	rc = table_cas(s.q.id, 0, 0, step_lock, &s);
	if (rc < 0) {
		finish(j, rc, NULL);
		return;
	}
	if (s.waits) {
		park(j, s.bsid, s.btok, s.bown);
		return;
	}
	if (s.rc == 0 && !(s.q.flags & MST_LKF_TEST) && s.q.type != MST_LK_UN)
		rl.grants++;
	finish(j, s.rc, &s.rep);
}

/*
 * Every waiter of |f| in arrival order on a loaded table; a grant can
 * free a range (a downgrade), so passes repeat until one grants nothing.
 * Each decided waiter is answered once the table is written.
 */
static int
step_retry(struct rl_work *w, void *arg)
{
	struct rl_file *f = arg;
	struct mst_lock_req q;
	struct lock_conn *lc;
	struct rl_wait *x;
	int again;

	for (x = f->waiters; x != NULL; x = x->next)
		x->decided = 0;
	do {
		again = 0;
		for (x = f->waiters; x != NULL; x = x->next) {
			if (x->decided)
				continue;
			q = x->j->req.lock;
			q.flags &= (uint8_t)~MST_LKF_WAIT;
			lc = stub(w, rl.sid, x->j->owner);
			if (lc == NULL)
				return -ENOMEM;
			x->rc = lock_request(lc, x->j->id, &q, &x->rep);
			if (x->rc == -EAGAIN) {
				blocker(w, lc, &q, &x->bsid, &x->btok,
				    &x->bown);
				if (!would_deadlock(&q, x->j->owner, x->bsid,
				    x->btok, x->bown))
					continue;
				x->rc = -EDEADLK;
			}
			x->decided = 1;
			if (x->rc == 0)
				again = 1;
		}
	} while (again);
	return 0;
}

/* Retry every waiter of |fid|, in one write. */
static void
run_retry(uint64_t fid)
{
	struct rl_file *f = file_find(fid);
	struct rl_wait *x, *next, **pp;

	if (f == NULL || table_cas(fid, 0, 0, step_retry, f) < 0)
		return;		/* logged; polled again */
	for (pp = &f->waiters; (x = *pp) != NULL;) {
		if (!x->decided) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		if (x->rc == 0)
			rl.grants++;
		waiter_end(x, x->rc, &x->rep);
	}
	/* Those still waiting may wait for someone else now. */
	for (x = f->waiters; x != NULL; x = next) {
		next = x->next;
		(void)waiter_blocked(f, x);
	}
	file_maybe_free(f);
}

/*
 * Remove the records of ended connection |c| from every table it holds
 * some in, keeping the files where that failed (storage errors) for the
 * next try. 1 when none is left.
 */
static int
conn_drop_locks(struct rl_conn *c)
{
	size_t i = 0;
	int rc;

	while (i < c->nfids) {
		rc = table_cas(c->fids[i], 1, c->token, NULL, NULL);
		if (rc == 0) {
			pthread_mutex_lock(&rl.mu);
			conn_forget(c, i);
			pthread_mutex_unlock(&rl.mu);
			continue;
		}
		if (!c->ended)
			log_err("rados: the locks of a closed connection on "
			    "file %" PRIu64 " could not be removed yet (%s): "
			    "tried again every second", c->fids[i],
			    strerror(-rc));
		i++;
	}
	return c->nfids == 0;
}

static void
conn_free(struct rl_conn *c)
{
	struct rl_conn **cp;

	pthread_mutex_lock(&rl.mu);
	for (cp = &rl.conns; *cp != c; cp = &(*cp)->next)
		;
	*cp = c->next;
	pthread_mutex_unlock(&rl.mu);
	free(c->fids);
	free(c->nlocks);
	free(c);
}

/* A connection ended or drains: its waiters get EINTR, its locks go. */
static void
run_end(struct job *j)
{
	struct rl_conn *c = conn_find(j->owner, 0);
	struct rl_file *f, *next;
	struct rl_wait *x, **pp;

	for (f = rl.files; f != NULL; f = next) {
		next = f->next;
		for (pp = &f->waiters; (x = *pp) != NULL;) {
			if (x->j->owner != j->owner) {
				pp = &x->next;
				continue;
			}
			*pp = x->next;
			waiter_end(x, -EINTR, NULL);
		}
		file_maybe_free(f);
	}
	if (c != NULL) {
		if (conn_drop_locks(c)) {
			conn_free(c);
		} else {
			pthread_mutex_lock(&rl.mu);
			c->ended = 1;
			pthread_mutex_unlock(&rl.mu);
		}
	}
	finish(j, 0, NULL);
}

/* ---- the thread ---- */

static void
tick(void)
{
	struct rl_file *f, *next;
	struct rl_conn *c, *cn;
	int64_t t = now_ms();

	if (lease_lapsing())
		fence();
	if (t < rl.next_poll)
		return;
	rl.next_poll = t + RL_POLL_MS;
	dead_free();
	for (c = rl.conns; c != NULL; c = cn) {
		cn = c->next;
		if (c->ended && conn_drop_locks(c))
			conn_free(c);
	}
	for (f = rl.files; f != NULL; f = next) {
		next = f->next;		/* run_retry may free f */
		/* A watch that failed or erred is made anew. */
		if (!f->watching ||
		    rados_watch_check(rl.e->io, f->cookie) < 0) {
			file_unwatch(f);
			file_watch(f);
		}
		run_retry(f->fid);
	}
}

static void
handle(struct rl_item *it)
{
	/* The storage is so slow that the jobs before it took its time
	 * (each op times out after 5 s): answer as a timeout would. An
	 * UNLOCK_OWNER is never given up; retries cost nothing. */
	if (it->kind == RL_JOB && it->j->op == MST_OP_LOCK &&
	    now_ms() - it->at > RL_QUEUED_MS) {
		log_warn("rados: a LOCK waited %d s for earlier ones: storage "
		    "too slow, answering EIO", RL_QUEUED_MS / 1000);
		finish(it->j, -EIO, NULL);
	} else if (it->kind == RL_RETRY)
		run_retry(it->fid);
	else if (it->j->op == ENG_OP_UNLOCK_OWNER)
		run_end(it->j);
	else
		run_lock(it->j);
}

static void *
lock_main(void *arg)
{
	struct rl_item *it;
	struct timespec ts;
	int64_t due;
	int stop;

	(void)arg;
	rl.next_poll = now_ms() + RL_POLL_MS;
	for (;;) {
		pthread_mutex_lock(&rl.mu);
		while (rl.qh == NULL && !rl.stop) {
			due = rl.next_poll;
			if (rl.files == NULL && !rl.leased)
				due = now_ms() + 60000;
			due -= now_ms();
			if (due <= 0)
				break;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += due / 1000;
			ts.tv_nsec += (due % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (pthread_cond_timedwait(&rl.cv, &rl.mu, &ts) ==
			    ETIMEDOUT)
				break;
		}
		it = rl.qh;
		if (it != NULL) {
			rl.qh = it->next;
			if (rl.qh == NULL)
				rl.qt = NULL;
		}
		stop = rl.stop;
		pthread_mutex_unlock(&rl.mu);
		if (it != NULL) {
			handle(it);
			free(it);
		} else if (stop) {
			break;
		}
		tick();
		locks_publish();
	}
	return NULL;
}

void
re_lock_submit(struct rados_engine *e, struct job *j)
{
	struct rl_item *it = calloc(1, sizeof *it);
	pthread_condattr_t ca;
	int rc = 0;

	if (it == NULL) {
		j->status = -ENOMEM;
		e->conf.done(e->conf.done_arg, j);
		return;
	}
	pthread_mutex_lock(&rl.mu);
	if (!rl.started) {
		rl.e = e;
		rl.sid = e->inc << 16 | 1;
		rl.lease_s = e->conf.lock_lease ? (int)e->conf.lock_lease :
		    RL_LEASE_S;
		if (rl.lease_s < RL_LEASE_MIN_S)
			rl.lease_s = RL_LEASE_MIN_S;
		rl.renew_ms = rl.lease_s * 1000 / 5;
		rl.fence_ms = rl.lease_s * 1000 - RL_MARGIN_MS;
		pthread_cond_destroy(&rl.cv);
		pthread_cond_destroy(&rl.lcv);
		pthread_cond_destroy(&rl.gcv);
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&rl.cv, &ca);
		pthread_cond_init(&rl.lcv, &ca);
		pthread_cond_init(&rl.gcv, &ca);
		pthread_condattr_destroy(&ca);
		rc = pthread_create(&rl.thr, NULL, lock_main, NULL);
		rl.started = rc == 0;
	}
	pthread_mutex_unlock(&rl.mu);
	if (rc != 0) {
		log_err("rados: starting the lock thread: %s", strerror(rc));
		free(it);
		j->status = -ENOMEM;
		e->conf.done(e->conf.done_arg, j);
		return;
	}
	it->kind = RL_JOB;
	it->j = j;
	push(it);
}

void
re_lock_stop(struct rados_engine *e)
{
	struct rl_file *f;
	struct rl_wait *x;
	struct rl_conn *c;
	struct rl_peer *p;
	int started, lstarted, gstarted;

	(void)e;		/* rl.e since the first LOCK */
	pthread_mutex_lock(&rl.mu);
	rl.stop = 1;
	started = rl.started;
	pthread_cond_signal(&rl.cv);
	pthread_cond_signal(&rl.lcv);
	pthread_cond_broadcast(&rl.gcv);
	pthread_mutex_unlock(&rl.mu);
	if (!started)
		return;
	pthread_join(rl.thr, NULL);
	pthread_mutex_lock(&rl.mu);
	lstarted = rl.lstarted;		/* set by the lock thread only */
	gstarted = rl.gstarted;
	pthread_mutex_unlock(&rl.mu);
	if (lstarted)
		pthread_join(rl.lthr, NULL);
	if (gstarted)
		pthread_join(rl.gthr, NULL);
	while ((f = rl.files) != NULL) {
		while ((x = f->waiters) != NULL) {
			f->waiters = x->next;
			finish(x->j, -EINTR, NULL);
			free(x);
		}
		file_maybe_free(f);
	}
	dead_free();
	if (rl.leased)
		lease_drop(rl.sid);	/* others drop our records at once */
	log_info("rados: locks: %" PRIu64 " granted, %" PRIu64 " waited, %"
	    PRIu64 " records of lapsed leases dropped", rl.grants, rl.waits,
	    rl.purged);
	while ((c = rl.conns) != NULL) {
		rl.conns = c->next;
		free(c->fids);
		free(c->nlocks);
		free(c);
	}
	metrics_engine_locks(0, 0);
	while ((p = rl.peers) != NULL) {
		rl.peers = p->next;
		free(p);
	}
	rl.started = 0;
	rl.lstarted = 0;
	rl.gstarted = 0;
	rl.guard_sid = 0;
	rl.leased = 0;
}
