/*
 * route.c - a mount's several store servers (see route.h). Owns one mconn
 * per server ever listed, each server's health, the health thread, and
 * the choice of a server for each request.
 *
 * Routing: rendezvous (highest random weight) hashing. A key's weight on
 * a server is XXH3_64bits(key NUL server address); servers sorted by
 * weight, highest first, are the key's order, and a request goes to the
 * first healthy server in it. Adding a server moves to it only the keys
 * it now wins (about 1/N); removing one moves only the keys it had. The
 * key of a request that names a mailbox (DELIVER, LIST, STAT, FETCH,
 * EXPUNGE, SETINFO, WATCH of new/ and cur/) is its mailbox; every other
 * request (ordinary files, directories, locks, OPEN, READDIR, ...) uses
 * the key "/", so they all go to one home server at a time, and so do
 * all the locks of a file.
 *
 * Health (one thread): a server is down when its connection is down,
 * or when its PING, sent every health_ms, has no answer after
 * failover_ms. Going down fails its pending requests at once
 * (mconn_fail_all) when another server is healthy; the retryable ones
 * (reads, DELIVER with its idempotency id) are sent again by
 * route_call_async to the next healthy server of their key. A request
 * that was on its way to the server as it went down (chosen before,
 * queued after the failing) is failed and moved the same way at once
 * (check_late), a waiting route_call too: one without MCONN_RETRY then
 * fails at once with EIO rather than at its deadline. With no healthy
 * server left they stay queued
 * on their connection, which sends them again when it is back (within
 * the mount's timeout). A down server is up again after ROUTE_UP_STREAK
 * answered PINGs in a row, one health interval apart; its keys then
 * return to it. A server list file (servers_file=) is looked at on every
 * tick of the health thread and read again when it changed. Every change
 * is logged and reported to opts->moved.
 *
 * EAGAIN: a store short of memory for bodies (its per-connection bound,
 * mstored(8) LIMITS) answers a DELIVER or COMMIT with EAGAIN, which
 * means the request had no effect (mstore-protocol(7), "Retries"). One
 * sent with MCONN_RETRY is then sent again, the same bytes (so the same
 * idempotency id: it is stored once), after a back-off of ROUTE_AGAIN_MIN
 * ms doubling to ROUTE_AGAIN_MAX, for as long as its first deadline
 * allows: each resend carries that deadline (mconn_call_until), and one
 * that would begin too late is not sent; the caller then gets the
 * EAGAIN. The resends wait on rt->again and go out from the health
 * thread (a callback must not block).
 *
 * Lock: rt->mu guards the server table and health; never held across a
 * call into mconn that may run callbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "mstclient.h"
#include "mstat.h"
#include "route.h"

struct rsrv {
	char *addr;
	struct mconn *c;
	struct route *rt;
	int listed;		/* in the current list */
	int healthy;		/* rt->mu */
	int streak;		/* rt->mu: PINGs answered while down */
	int64_t ping_at;	/* rt->mu: outstanding PING sent at, or 0 */
	int64_t next_ping;	/* rt->mu */
	uint64_t ping_seq;	/* rt->mu: the PING that counts */
	int refail;		/* rt->mu: a request reached it after it
				   was judged down (see check_late) */
};

/* Back-off between resends of a request answered EAGAIN (ms). */
#define ROUTE_AGAIN_MIN		10
#define ROUTE_AGAIN_MAX		500

struct rcall;

struct route {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rsrv *srv[ROUTE_MAX];
	size_t n;
	struct route_opts o;
	int stop;
	struct stat list_st;	/* health thread: servers_file last read */
	int started;		/* the health thread runs */
	pthread_t thr;
	struct rcall *again;	/* mu: to be sent again, soonest first */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
route_weight(const char *key, size_t klen, const char *server)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, key, klen);
	XXH3_64bits_update(&st, "", 1);
	XXH3_64bits_update(&st, server, strlen(server));
	return XXH3_64bits_digest(&st);
}

void
route_order(const char *key, size_t klen, const char *const *servers,
    size_t n, size_t *idx)
{
	uint64_t w[ROUTE_MAX];
	size_t i, j, t;

	for (i = 0; i < n && i < ROUTE_MAX; i++) {
		w[i] = route_weight(key, klen, servers[i]);
		idx[i] = i;
	}
	/* Insertion sort: a few servers. Ties (never in practice) by
	 * address, so every mount agrees. */
	for (i = 1; i < n && i < ROUTE_MAX; i++)
		for (j = i; j > 0; j--) {
			size_t a = idx[j - 1], b = idx[j];

			if (w[a] > w[b] || (w[a] == w[b] &&
			    strcmp(servers[a], servers[b]) <= 0))
				break;
			t = idx[j - 1];
			idx[j - 1] = idx[j];
			idx[j] = t;
		}
}

/* Whether a listed server is healthy; mu held. */
static int
any_healthy(const struct route *rt)
{
	size_t i;

	for (i = 0; i < rt->n; i++)
		if (rt->srv[i]->listed && rt->srv[i]->healthy)
			return 1;
	return 0;
}

/* The server for |key| now, skipping |avoid| (or NULL); mu held. */
static struct rsrv *
pick(struct route *rt, const char *key, size_t klen, const struct rsrv *avoid)
{
	const char *addr[ROUTE_MAX];
	struct rsrv *ls[ROUTE_MAX];
	size_t idx[ROUTE_MAX], i, n = 0;

	for (i = 0; i < rt->n; i++)
		if (rt->srv[i]->listed) {
			ls[n] = rt->srv[i];
			addr[n++] = rt->srv[i]->addr;
		}
	if (n == 0)
		return NULL;
	route_order(key, klen, addr, n, idx);
	for (i = 0; i < n; i++)
		if (ls[idx[i]]->healthy && ls[idx[i]] != avoid)
			return ls[idx[i]];
	return avoid != NULL && ls[idx[0]] == avoid && n > 1 ? ls[idx[1]] :
	    ls[idx[0]];
}

struct mconn *
route_conn(struct route *rt, const char *key, size_t klen)
{
	struct rsrv *s;

	pthread_mutex_lock(&rt->mu);
	s = pick(rt, key, klen, NULL);
	pthread_mutex_unlock(&rt->mu);
	return s ? s->c : NULL;
}

static struct rsrv *home_of(struct route *rt);

size_t
route_view(struct route *rt, char *buf, size_t cap)
{
	struct rsrv *home;
	size_t i, len = 0;
	int n;

	pthread_mutex_lock(&rt->mu);
	home = home_of(rt);
	for (i = 0; i < rt->n; i++) {
		const struct rsrv *s = rt->srv[i];

		n = snprintf(buf + (len < cap ? len : cap),
		    len < cap ? cap - len : 0, "%s %s%s\n", s->addr,
		    !s->listed ? "left" : s->healthy ? "up" : "down",
		    s == home ? " home" : "");
		if (n > 0)
			len += (size_t)n;
	}
	pthread_mutex_unlock(&rt->mu);
	return len;
}

int
route_server_of(struct route *rt, const char *key, size_t klen, char *buf,
    size_t cap)
{
	struct rsrv *s;
	size_t n = 0;
	int rc = -ENOTCONN;

	pthread_mutex_lock(&rt->mu);
	s = pick(rt, key, klen, NULL);
	if (s != NULL) {
		n = strlen(s->addr);
		rc = n < cap ? (int)n : -ERANGE;
		if (rc >= 0)
			memcpy(buf, s->addr, n + 1);
	}
	pthread_mutex_unlock(&rt->mu);
	return rc;
}

/* --- requests, sent again elsewhere when their server goes down --- */

struct rcall {
	struct route *rt;
	struct rsrv *s;		/* where it went last */
	unsigned op, flags, tries;
	unsigned nagain;	/* EAGAIN answers so far */
	int64_t deadline;	/* the first send's, for EAGAIN resends */
	int64_t due;		/* on rt->again: when to send it again */
	struct rcall *anext;	/* rt->again */
	mconn_cb *cb;
	void *arg;
	size_t klen, hlen, blen;
	char *key;		/* these three in one allocation */
	uint8_t *head, *body;
};

static void rcall_done(void *arg, struct mreply *r);

void (*route_test_after_pick)(const char *addr);

/*
 * A request was just handed to the connection of |s|, chosen while |s|
 * was healthy. When the health thread judged |s| down in between, its
 * mconn_fail_all may have run before the request was queued: nothing
 * would then move the request, and it would wait on the dead connection
 * for its whole timeout. So the health thread is asked to fail the
 * requests of |s| once more, on its own thread (callbacks must not run
 * here, where the caller may hold its locks).
 */
static void
check_late(struct route *rt, struct rsrv *s)
{
	pthread_mutex_lock(&rt->mu);
	if (s->listed && !s->healthy && any_healthy(rt)) {
		s->refail = 1;
		pthread_cond_signal(&rt->cv);
	}
	pthread_mutex_unlock(&rt->mu);
}

/* Send |x| to x->s, by |until| at the latest (0: the connection's
 * timeout). Once it is handed over, |x| may be gone already (rcall_done
 * may have run). */
static int
rcall_send(struct rcall *x, int64_t until)
{
	struct route *rt = x->rt;
	struct rsrv *s = x->s;
	int rc;

	rc = mconn_call_until(s->c, x->op, x->head, x->hlen,
	    x->blen ? x->body : NULL, x->blen, x->flags, until, rcall_done, x);
	if (rc == 0)
		check_late(rt, s);
	return rc;
}

/*
 * |x| was answered EAGAIN: queue it to be sent again after its back-off,
 * if that leaves time before its deadline. Returns 1 when queued (the
 * health thread sends it), 0 when the caller is to get the EAGAIN.
 */
static int
again_queue(struct rcall *x)
{
	struct route *rt = x->rt;
	struct rcall **pp;
	int64_t now = now_ms(), wait;

	if ((x->op != MST_OP_DELIVER && x->op != MST_OP_COMMIT) ||
	    !(x->flags & MCONN_RETRY))
		return 0;
	wait = x->nagain < 6 ? (int64_t)ROUTE_AGAIN_MIN << x->nagain :
	    ROUTE_AGAIN_MAX;
	if (wait > ROUTE_AGAIN_MAX)
		wait = ROUTE_AGAIN_MAX;
	/* Spread the resends of requests refused together. */
	wait = wait / 2 + (int64_t)((uintptr_t)x >> 4 ^ (uint64_t)now) %
	    (wait / 2 + 1);
	/* A resend needs time for its answer too: one round trip and a
	 * group commit are well within ROUTE_AGAIN_MAX. */
	if (now + wait + ROUTE_AGAIN_MAX > x->deadline) {
		syslog(LOG_WARNING, "mount.mstore: %s for %.*s: the store "
		    "answered EAGAIN %u time(s) (short of memory for bodies); "
		    "no time left to send it again: EAGAIN", mst_op_name(x->op),
		    (int)x->klen, x->key, x->nagain + 1);
		return 0;
	}
	if (x->nagain++ == 0)
		syslog(LOG_INFO, "mount.mstore: %s for %.*s: the store "
		    "answered EAGAIN (short of memory for bodies); sending it "
		    "again, with the same id, within its timeout",
		    mst_op_name(x->op), (int)x->klen, x->key);
	x->due = now + wait;
	pthread_mutex_lock(&rt->mu);
	if (rt->stop) {		/* route_free has answered the others */
		pthread_mutex_unlock(&rt->mu);
		return 0;
	}
	for (pp = &rt->again; *pp != NULL && (*pp)->due <= x->due;
	    pp = &(*pp)->anext)
		;
	x->anext = *pp;
	*pp = x;
	pthread_cond_signal(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	return 1;
}

/* On the health thread, no lock held: send again the requests whose
 * back-off is over, each to its key's server now. */
static void
again_send(struct route *rt)
{
	struct rcall *due = NULL, **tail = &due, *x;
	int64_t now = now_ms();
	int rc, stop;

	pthread_mutex_lock(&rt->mu);
	stop = rt->stop;
	while ((x = rt->again) != NULL && (x->due <= now || stop)) {
		rt->again = x->anext;
		x->anext = NULL;
		x->s = pick(rt, x->key, x->klen, NULL);
		*tail = x;
		tail = &x->anext;
	}
	pthread_mutex_unlock(&rt->mu);
	while ((x = due) != NULL) {
		struct mreply r = { .status = -EAGAIN };

		due = x->anext;
		rc = stop || x->s == NULL ? -ESHUTDOWN :
		    rcall_send(x, x->deadline);
		if (rc == 0)
			continue;
		x->cb(x->arg, &r);
		free(x);
	}
}

static void
rcall_done(void *arg, struct mreply *r)
{
	struct rcall *x = arg;
	struct route *rt = x->rt;
	struct rsrv *next = NULL;
	int rc;

	if (r->status == -EAGAIN && again_queue(x)) {
		mreply_free(r);
		return;
	}
	if (r->status == -EIO && x->tries < ROUTE_MAX) {
		pthread_mutex_lock(&rt->mu);
		if (!x->s->healthy || !x->s->listed) {
			next = pick(rt, x->key, x->klen, x->s);
			if (next == x->s || !next->healthy)
				next = NULL;
		}
		pthread_mutex_unlock(&rt->mu);
	}
	if (next != NULL) {
		syslog(LOG_INFO, "mount.mstore: request (op %u) for %.*s "
		    "resent to %s after %s went down", x->op, (int)x->klen,
		    x->key, next->addr, x->s->addr);
		x->s = next;
		x->tries++;
		mstat_add(MS_REROUTED, 1);
		mreply_free(r);
		rc = rcall_send(x, 0);
		if (rc == 0)
			return;
		syslog(LOG_ERR, "mount.mstore: request (op %u) for %.*s could "
		    "not be resent to %s: %s; it fails with EIO", x->op,
		    (int)x->klen, x->key, next->addr, strerror(-rc));
		r->status = -EIO;
	}
	x->cb(x->arg, r);
	free(x);
}

int
route_call_async(struct route *rt, const char *key, size_t klen,
    unsigned op, const void *head, size_t hlen, const void *body,
    size_t blen, unsigned flags, mconn_cb *cb, void *arg)
{
	struct rcall *x;
	struct rsrv *s;
	int rc;

	pthread_mutex_lock(&rt->mu);
	s = pick(rt, key, klen, NULL);
	pthread_mutex_unlock(&rt->mu);
	if (s == NULL)
		return -ENOTCONN;
	if (route_test_after_pick != NULL)
		route_test_after_pick(s->addr);
	if (!(flags & MCONN_RETRY)) {
		rc = mconn_call_flags(s->c, op, head, hlen, body, blen,
		    flags, cb, arg);
		if (rc == 0)
			check_late(rt, s);
		return rc;
	}
	/* A borrowed body stays the caller's until x->cb has run. */
	x = malloc(sizeof *x + klen + 1 + hlen +
	    (flags & MCONN_BORROW ? 0 : blen));
	if (x == NULL)
		return -ENOMEM;
	*x = (struct rcall){ .rt = rt, .s = s, .op = op, .flags = flags,
		.cb = cb, .arg = arg, .klen = klen, .hlen = hlen,
		.blen = blen };
	x->deadline = now_ms() + mconn_timeout(s->c);
	x->key = (char *)(x + 1);
	memcpy(x->key, key, klen);
	x->key[klen] = '\0';
	x->head = (uint8_t *)x->key + klen + 1;
	memcpy(x->head, head, hlen);
	if (flags & MCONN_BORROW) {
		x->body = (uint8_t *)body;
	} else {
		x->body = x->head + hlen;
		if (blen)
			memcpy(x->body, body, blen);
	}
	rc = rcall_send(x, 0);
	if (rc < 0)
		free(x);
	return rc;
}

struct rwait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	struct mreply *out;
};

static void
rwait_done(void *arg, struct mreply *r)
{
	struct rwait *w = arg;

	pthread_mutex_lock(&w->mu);
	*w->out = *r;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int
route_call(struct route *rt, const char *key, size_t klen, unsigned op,
    const void *head, size_t hlen, const void *body, size_t blen,
    unsigned flags, struct mreply *out)
{
	struct rwait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		0, out };
	int rc;

	/* Through route_call_async with or without MCONN_RETRY: a request
	 * handed to a server just judged down is failed at once there
	 * (check_late), not left on the dead connection until its
	 * deadline. */
	memset(out, 0, sizeof *out);
	rc = route_call_async(rt, key, klen, op, head, hlen, body, blen,
	    flags, rwait_done, &w);
	if (rc < 0) {
		out->status = rc;
		return rc;
	}
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	return out->status;
}

int
route_connected(struct route *rt)
{
	struct mconn *c = route_conn(rt, ROUTE_HOME, 1);

	return c != NULL && mconn_connected(c);
}

int
route_rx_quiet(struct route *rt)
{
	struct mconn *c = route_conn(rt, ROUTE_HOME, 1);

	return c != NULL && mconn_rx_quiet(c);
}

int
route_rx_settle(struct route *rt, int ms)
{
	struct mconn *c = route_conn(rt, ROUTE_HOME, 1);

	return c != NULL && mconn_rx_settle(c, ms);
}

uint32_t
route_max_frame(struct route *rt)
{
	struct mconn *c = route_conn(rt, ROUTE_HOME, 1);

	return c ? mconn_max_frame(c) : MST_FRAME_DEFAULT;
}

/* --- the list file --- */

int
route_read_list(const char *path, char *buf, size_t cap, const char **v)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	ssize_t got;
	size_t len = 0;
	char *p, *w, *save = NULL;
	int fd, n = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len + 1 < cap && (got = read(fd, buf + len,
	    cap - 1 - len)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	for (p = buf; (p = strchr(p, '#')) != NULL;)
		while (*p && *p != '\n')
			*p++ = ' ';
	for (w = strtok_r(buf, ", \t\r\n", &save); w;
	    w = strtok_r(NULL, ", \t\r\n", &save)) {
		if (n == ROUTE_MAX || mst_addr_parse(w, &ss, &sl) < 0)
			return -EINVAL;
		v[n++] = w;
	}
	return n ? n : -EINVAL;
}

/* On the health thread: the list file changed? Then it is the list. */
static void
reread_list(struct route *rt)
{
	const char *v[ROUTE_MAX];
	char buf[ROUTE_MAX * 128];
	struct stat st;
	int n;

	if (rt->o.servers_file == NULL ||
	    stat(rt->o.servers_file, &st) < 0 ||
	    (st.st_mtim.tv_sec == rt->list_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == rt->list_st.st_mtim.tv_nsec &&
	    st.st_size == rt->list_st.st_size &&
	    st.st_ino == rt->list_st.st_ino))
		return;
	rt->list_st = st;
	n = route_read_list(rt->o.servers_file, buf, sizeof buf, v);
	if (n < 0) {
		syslog(LOG_ERR, "mount.mstore: %s: %s; the server list stays "
		    "as it was", rt->o.servers_file, n == -EINVAL ?
		    "no servers, a bad address or too many" : strerror(-n));
		return;
	}
	syslog(LOG_NOTICE, "mount.mstore: server list read again from %s "
	    "(%d servers)", rt->o.servers_file, n);
	(void)route_set_servers(rt, v, (size_t)n);
}

/* --- health --- */

/* The home server now; mu held. */
static struct rsrv *
home_of(struct route *rt)
{
	return pick(rt, ROUTE_HOME, 1, NULL);
}

/* Mailboxes moved (the home server was |home| before): tell the mount.
 * A new home server has none of the OPENs and locks of the old one: for
 * the mount that is a lost connection (conn.up); otherwise only watches
 * and caches are renewed (moved). No lock held. */
static void
report_move(struct route *rt, const struct rsrv *home)
{
	struct rsrv *now;

	pthread_mutex_lock(&rt->mu);
	now = home_of(rt);
	pthread_mutex_unlock(&rt->mu);
	if (now != home) {
		syslog(LOG_NOTICE, "mount.mstore: home server (ordinary "
		    "files, directories, locks) is now %s",
		    now ? now->addr : "none");
		if (rt->o.conn.up)
			rt->o.conn.up(rt->o.conn.arg);
	} else if (rt->o.moved) {
		rt->o.moved(rt->o.conn.arg);
	}
}

struct ping_arg {
	struct rsrv *s;
	uint64_t seq;
};

static void
set_health(struct rsrv *s, int healthy, const char *why)
{
	s->healthy = healthy;
	s->streak = 0;
	syslog(healthy ? LOG_NOTICE : LOG_WARNING, "mount.mstore: store "
	    "server %s is %s (%s); its mailboxes move to %s", s->addr,
	    healthy ? "up" : "down", why, healthy ? "it again" :
	    "the next server of each");
}

static void
ping_done(void *arg, struct mreply *r)
{
	struct ping_arg *p = arg;
	struct rsrv *s = p->s;
	struct route *rt = s->rt;
	struct rsrv *home;
	int moved = 0;

	pthread_mutex_lock(&rt->mu);
	home = home_of(rt);
	if (p->seq == s->ping_seq && s->ping_at != 0) {
		s->ping_at = 0;
		/* Checks of a returning server are one interval apart. */
		s->next_ping = now_ms() + rt->o.health_ms;
		if (r->status == 0 && !s->healthy && s->listed &&
		    ++s->streak >= ROUTE_UP_STREAK) {
			set_health(s, 1, "health checks pass");
			moved = 1;
		} else if (r->status != 0) {
			s->streak = 0;
		}
	}
	pthread_mutex_unlock(&rt->mu);
	mreply_free(r);
	free(p);
	if (moved)
		report_move(rt, home);
}

static void
send_ping(struct rsrv *s, int64_t now)
{
	struct mst_ping q = { (uint64_t)now };
	struct ping_arg *p = malloc(sizeof *p);
	uint8_t buf[16];
	int n = mst_ping_encode(&q, buf, sizeof buf);

	if (p == NULL || n < 0) {
		free(p);
		return;
	}
	pthread_mutex_lock(&s->rt->mu);
	p->s = s;
	p->seq = ++s->ping_seq;
	s->ping_at = now;
	pthread_mutex_unlock(&s->rt->mu);
	if (mconn_call_async(s->c, MST_OP_PING, buf, (size_t)n, NULL, 0, 0,
	    ping_done, p) < 0)
		free(p);
}

static void *
health_main(void *arg)
{
	struct route *rt = arg;
	struct rsrv *ping[ROUTE_MAX], *fail[ROUTE_MAX], *home;
	size_t i, np, nf;
	int64_t now;
	int moved, tick = rt->o.health_ms < 400 ? rt->o.health_ms / 4 : 100;
	int wait;
	struct timespec ts;

	pthread_mutex_lock(&rt->mu);
	while (!rt->stop) {
		pthread_mutex_unlock(&rt->mu);
		reread_list(rt);
		pthread_mutex_lock(&rt->mu);
		now = now_ms();
		np = nf = 0;
		moved = 0;
		home = home_of(rt);
		for (i = 0; i < rt->n; i++) {
			struct rsrv *s = rt->srv[i];
			int conn = mconn_connected(s->c);

			if (!s->listed)
				continue;
			if (s->refail && !s->healthy) {
				/* after its mconn_fail_all: see check_late */
				fail[nf++] = s;
			}
			s->refail = 0;
			if (s->healthy && !conn) {
				set_health(s, 0, "connection lost");
				fail[nf++] = s;
				moved = 1;
			} else if (s->healthy && s->ping_at != 0 &&
			    now - s->ping_at >= rt->o.failover_ms) {
				set_health(s, 0, "no answer to a health "
				    "check");
				s->ping_at = 0;
				fail[nf++] = s;
				moved = 1;
			} else if (!s->healthy && s->ping_at != 0 &&
			    now - s->ping_at >= rt->o.failover_ms) {
				s->ping_at = 0;
				s->streak = 0;
			}
			if (conn && s->ping_at == 0 && now >= s->next_ping) {
				s->next_ping = now + rt->o.health_ms;
				ping[np++] = s;
			}
		}
		/* Requests move only where a healthy server can take them.
		 * With none (a single server, or all down) they stay with
		 * their connection, which sends them again once it is back,
		 * within the mount's timeout, as a one-server mount always
		 * did. */
		if (!any_healthy(rt))
			nf = 0;
		pthread_mutex_unlock(&rt->mu);
		for (i = 0; i < nf; i++)
			mconn_fail_all(fail[i]->c);
		for (i = 0; i < np; i++)
			send_ping(ping[i], now);
		if (moved)
			report_move(rt, home);
		again_send(rt);
		pthread_mutex_lock(&rt->mu);
		wait = tick;
		if (rt->again != NULL && rt->again->due - now_ms() < wait)
			wait = rt->again->due - now_ms() > 0 ?
			    (int)(rt->again->due - now_ms()) : 0;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)wait * 1000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		if (!rt->stop)
			(void)pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
	}
	pthread_mutex_unlock(&rt->mu);
	return NULL;
}

/* --- the server table --- */

/* A server's connection came back. When it is the home server, the
 * mount registers again what the store forgot with the old connection
 * (conn.up); otherwise the mailboxes it serves renew their watches. */
static void
srv_up(void *arg)
{
	struct rsrv *s = arg;
	struct route *rt = s->rt;
	struct rsrv *home;

	pthread_mutex_lock(&rt->mu);
	home = home_of(rt);
	pthread_mutex_unlock(&rt->mu);
	if (home == s || home == NULL) {
		if (rt->o.conn.up)
			rt->o.conn.up(rt->o.conn.arg);
	} else if (rt->o.moved) {
		rt->o.moved(rt->o.conn.arg);
	}
}

static void
srv_notice(void *arg, const struct mst_notify *n)
{
	struct rsrv *s = arg;

	s->rt->o.conn.notice(s->rt->o.conn.arg, n);
}

/* A server and its connection; no lock held (mconn_new may run srv_up). */
static struct rsrv *
srv_new(struct route *rt, const char *addr)
{
	struct mconn_opts co = rt->o.conn;
	const char *one[1] = { addr };
	struct rsrv *s = calloc(1, sizeof *s);

	if (s == NULL || (s->addr = strdup(addr)) == NULL) {
		free(s);
		return NULL;
	}
	s->rt = rt;
	s->listed = 1;
	co.servers = one;
	co.nservers = 1;
	co.up = srv_up;
	co.notice = rt->o.conn.notice ? srv_notice : NULL;
	co.arg = s;
	if (mconn_new(&co, &s->c) < 0) {
		free(s->addr);
		free(s);
		return NULL;
	}
	return s;
}

int
route_set_servers(struct route *rt, const char *const *servers, size_t n)
{
	struct rsrv *add[ROUTE_MAX], *home;
	size_t i, j, nadd = 0;
	int rc = 0, moved = 0;

	if (n == 0 || n > ROUTE_MAX)
		return -EINVAL;
	pthread_mutex_lock(&rt->mu);
	home = home_of(rt);
	for (i = 0; i < rt->n; i++) {
		int keep = 0;

		for (j = 0; j < n; j++)
			keep |= strcmp(rt->srv[i]->addr, servers[j]) == 0;
		if (rt->srv[i]->listed != keep) {
			syslog(LOG_NOTICE, "mount.mstore: store server %s %s "
			    "the list; its mailboxes move", rt->srv[i]->addr,
			    keep ? "is back in" : "left");
			moved = 1;
		}
		rt->srv[i]->listed = keep;
	}
	pthread_mutex_unlock(&rt->mu);
	for (j = 0; j < n; j++) {
		int known = 0;

		for (i = 0; i < rt->n; i++)	/* only this thread adds */
			known |= strcmp(rt->srv[i]->addr, servers[j]) == 0;
		for (i = 0; i < nadd; i++)
			known |= strcmp(add[i]->addr, servers[j]) == 0;
		if (known)
			continue;
		if (rt->n + nadd == ROUTE_MAX) {
			rc = -E2BIG;
			break;
		}
		add[nadd] = srv_new(rt, servers[j]);
		if (add[nadd] == NULL) {
			rc = -ENOMEM;
			break;
		}
		nadd++;
	}
	pthread_mutex_lock(&rt->mu);
	for (i = 0; i < nadd; i++) {
		add[i]->healthy = mconn_connected(add[i]->c);
		syslog(LOG_NOTICE, "mount.mstore: store server %s joined "
		    "(%s); it takes its share of mailboxes", add[i]->addr,
		    add[i]->healthy ? "up" : "not reachable yet");
		rt->srv[rt->n++] = add[i];
		moved = 1;
	}
	pthread_cond_signal(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	if (moved && rt->started)
		report_move(rt, home);
	return rc;
}

int
route_new(const struct route_opts *o, struct route **out)
{
	struct route *rt;
	int rc;

	if (o->conn.nservers == 0 || o->conn.nservers > ROUTE_MAX)
		return -EINVAL;
	rt = calloc(1, sizeof *rt);
	if (rt == NULL)
		return -ENOMEM;
	pthread_mutex_init(&rt->mu, NULL);
	pthread_cond_init(&rt->cv, NULL);
	rt->o = *o;
	if (rt->o.health_ms <= 0)
		rt->o.health_ms = ROUTE_HEALTH_MS;
	if (rt->o.failover_ms <= 0)
		rt->o.failover_ms = ROUTE_FAILOVER_MS;
	rc = route_set_servers(rt, o->conn.servers, o->conn.nservers);
	if (rc == 0 && pthread_create(&rt->thr, NULL, health_main, rt) != 0)
		rc = -EAGAIN;
	rt->started = rc == 0;
	if (rc < 0) {
		route_free(rt);
		return rc;
	}
	*out = rt;
	return 0;
}

void
route_free(struct route *rt)
{
	size_t i;

	if (rt == NULL)
		return;
	pthread_mutex_lock(&rt->mu);
	rt->stop = 1;
	pthread_cond_signal(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	if (rt->started)
		pthread_join(rt->thr, NULL);
	again_send(rt);		/* stopping: each answered EAGAIN */
	for (i = 0; i < rt->n; i++) {
		mconn_free(rt->srv[i]->c);
		free(rt->srv[i]->addr);
		free(rt->srv[i]);
	}
	pthread_mutex_destroy(&rt->mu);
	pthread_cond_destroy(&rt->cv);
	free(rt);
}
