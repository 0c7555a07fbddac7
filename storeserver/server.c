/*
 * server.c - mstored's network layer. Owns the libevent loop, every
 * connection and its state machine, and dispatch: turns frames into
 * jobs for the engine and completed jobs into reply frames, and hands
 * their notices, and those of changes other servers made, to the watch
 * table (watch.c) for NOTIFY. The listeners (listen.c) give it accepted
 * sockets. Runs on one thread and never blocks: the engine's threads
 * only touch |s->mu|, the eventfd (server_job_done,
 * server_engine_notice, server_engine_fence) and, to send a reply
 * themselves, a connection's |omu| and socket (below); bad bytes from a
 * peer end that peer's connection, never the process.
 *
 * Lock order: c->omu, then s->mu. The loop takes each alone and holds
 * omu only around its own output buffer, never across a call out.
 *
 * Replies from the engine's threads. A job the engine completes on its
 * own thread (a delivery, on the syncer's, once its batch's fdatasync
 * returned) used to wait there for the loop: woken through the eventfd,
 * it had to get a CPU, queue the reply and wait for the socket to be
 * writable before the client heard of it; on a busy host that was 0.5-1
 * ms per delivery. Now server_job_done writes a small reply on the socket
 * itself when nothing can come before it on that connection: a
 * plaintext socket, nothing in the bufferevent's output (|out_busy|), no
 * completion of the connection still waiting for the loop (|waiting|:
 * replies leave in the order the engine completed them), and no change
 * already answered whose notices the loop has not queued yet
 * (|unnoticed|). The job still goes to the loop, which does the rest
 * (accounting, notices, freeing) and sends nothing. A short write
 * leaves the end of the frame in |rest|, which the loop queues before
 * anything else. The job is on the done list before the reply is
 * written, and the loop takes every such completion before it reads a
 * frame (conn_catch_up): so what a client does after such a reply, and
 * any frame that causes for others, comes after the notices of its
 * change, as HELLO's SOLE promises.
 *
 * LOCK requests never reach the engine: the lock table (lock.c) is
 * memory of this thread, answered at once or, for a request that waits,
 * when another connection's unlock or end grants it. An engine whose
 * storage other servers share sets engine_ops.locks and gets every LOCK
 * as a job instead (engine.h), and one ENG_OP_UNLOCK_OWNER job when a
 * connection that sent LOCK drains or closes. Such an engine that lost
 * its lock lease names the connections holding or waiting for its locks
 * (server_engine_fence): they are closed here, on the loop, before it
 * lets other servers grant what they held.
 *
 * Connection states:
 *
 *   accept --> HELLO --HELLO--> AUTH --AUTH ok--> READY
 *                |   (no key_file) --------------> READY
 *                |                 |                 |
 *   other op: EPROTO   bad proof/other op:   EOF, SIGTERM
 *                |         EACCES            |
 *                v            v              v
 *              DRAIN <--------+--------------+
 *   (reads nothing; closes when its jobs are done and replies flushed)
 *
 *   any state --framing error, reset, watcher over its output limit-->
 *   CLOSED: the socket is gone; the struct lives on while jobs it
 *   submitted are in the engine (|refs|), and their replies are dropped.
 *   On the way its locks and waiting LOCKs are dropped (waking others)
 *   and, if it ever sent OPEN, one ENG_OP_CLOSE_OWNER job drops its
 *   open references in the engine.
 *
 * Each connection has one timer (conn_arm) that closes it: in HELLO and
 * AUTH at handshake_timeout after accept; in READY when a frame begun
 * is not whole within read_timeout, when a streaming body waits longer
 * for its next DATA, or, if idle_timeout is set, when nothing at all is
 * pending. Independently, replies left unread for STALL_SECONDS close it.
 * The same timer drops (without closing anything) a spool that no SPOOL
 * has added to for spool_timeout (TO_SPOOL): a client that stops
 * writing a file it spools, or never links it, or vanishes without its
 * connection ending, must not hold that memory for ever.
 *
 * With tls_cert and tls_key, every TCP connection is a TLS bufferevent
 * (server-side handshake first; no plaintext fallback) and the frames
 * above are unchanged; Unix-socket connections stay plaintext.
 */
#include <config.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "listen.h"
#include "lock.h"
#include "log.h"
#include "metrics.h"
#include "mstclient.h"
#include "server.h"
#include "watch.h"

/*
 * Per-connection bounds. Bodies being assembled plus jobs in the engine
 * may hold max_connection_memory bytes or max_requests_per_connection
 * jobs (mstore.conf(5)) before the connection stops being read; it
 * resumes as completions drain (backpressure). One body is always
 * admitted, so a single max_message_size body fits even when it is larger
 * than the bound.
 */
#define CONN_STREAMS_MAX	256u	/* bodies streaming at once */
#define CONN_SPOOLS_MAX		64u	/* SPOOLs held; more drop the oldest */
#define CONN_OUT_HIGH		(8u << 20)	/* stop reading above this */
#define CONN_OUT_LOW		(1u << 20)	/* write callback below this */
#define CONN_READ_MAX		(256u << 10)	/* bytes per read(2) */
#define EARLY_MAX		4096u	/* largest reply an engine thread
					   writes itself (server_job_done) */
#define STALL_SECONDS		60	/* replies pending, none written */
#define LIMIT_LOG_SECONDS	60
#define AUTHFAIL_SLOTS		64	/* peers whose failures are counted */
#define SERVER_NAME		"mstored " PACKAGE_VERSION

struct server;
struct conn;

/* A DELIVER, PUT or WRITE body arriving in DATA frames. */
struct stream {
	struct stream *next;
	uint32_t id;
	uint8_t op;
	struct job *job;	/* NULL: discarding until the last frame */
	struct mst_body body;
	uint64_t reserved;	/* bytes counted in conn->body_bytes */
	int status;		/* discarding: the error to reply with */
	char detail[160];
};

/*
 * A body a client SPOOLs while it is still being written (see
 * mstore-protocol(7), SPOOL): memory of this connection only, never
 * handed to the engine until a COMMIT names it, then as the body of a
 * DELIVER job. Nothing of it is stored before that COMMIT, so dropping
 * it (the connection ends, too many spools, the memory bound) loses no
 * message: the COMMIT then finds none and the client sends the DELIVER.
 */
struct spool {
	struct spool *next;	/* most recently sent to first */
	uint8_t idem[MST_IDEM_LEN];
	uint8_t *buf;
	size_t len, cap;	/* cap is counted in conn->body_bytes */
	int64_t used_ms;	/* the last SPOOL to it (monotonic) */
};

enum conn_state {
	CS_HELLO,
	CS_AUTH,
	CS_READY,
	CS_DRAIN,
	CS_CLOSED,
};

/*
 * What a connection's timer waits for (conn_arm). Only the peer's
 * silence counts: while the server itself holds back reading
 * (backpressure, draining) no read deadline runs.
 */
enum conn_timeout {
	TO_NONE,
	TO_HANDSHAKE,	/* accept to READY: handshake_timeout */
	TO_FRAME,	/* a frame begun, not complete: read_timeout */
	TO_BODY,	/* a body streaming, no DATA since: read_timeout */
	TO_IDLE,	/* nothing pending at all: idle_timeout */
	TO_SPOOL,	/* a spool unused: spool_timeout drops it */
};

struct conn {
	struct server *srv;
	struct bufferevent *bev;	/* NULL once CLOSED */
	enum conn_state state;
	int refs;		/* the socket's + one per job in the engine */
	int reading;		/* EV_READ enabled */
	int in_input;		/* conn_input is on the stack */
	uint32_t max_frame;	/* negotiated */
	uint8_t cnonce[MST_NONCE_LEN];
	uint8_t snonce[MST_NONCE_LEN];
	char peer[96];		/* "conn 7 (127.0.0.1:40312)" for logs */
	char host[64];		/* "127.0.0.1", "[::1]", "unix:PATH" */
	struct event *ev_timer;	/* the deadline of |timeout| */
	enum conn_timeout timeout;	/* which deadline is armed */
	int64_t accepted_ms;	/* monotonic, for handshake_timeout */
	int64_t frame_ms;	/* a frame began arriving; 0: none */
	int64_t last_frame_ms;	/* the last whole frame arrived */
	int64_t idle_ms;	/* became idle (TO_IDLE armed) */
	int64_t frame_ns;	/* the frame being handled arrived */
	int64_t reply_ns;	/* nonzero: the job being answered arrived */
	int local;		/* came in on a Unix socket */
	int tls;		/* |bev| is a TLS bufferevent */
	struct stream *streams;
	unsigned nstreams;
	struct spool *spools;
	unsigned nspools;
	uint64_t body_bytes;	/* reserved by bodies being assembled */
	uint64_t job_bytes;	/* payload + body of jobs in the engine */
	unsigned njobs;		/* jobs in the engine */
	struct watch_conn watch;	/* its WATCHes */
	LIST_ENTRY(conn) link;	/* s->conns, until CLOSED */
	uint64_t token;		/* job.owner: nonzero, never reused */
	int opened;		/* sent an OPEN: CLOSE_OWNER at the end */
	int watched;		/* sent a WATCH: CLOSE_OWNER at the end */
	struct lock_conn *locks;	/* NULL until its first LOCK */
	int elocks;		/* sent LOCK to the engine: UNLOCK_OWNER due */

	/* Replies written by engine threads (server_job_done). */
	int early;		/* plaintext socket: they may (loop's) */
	pthread_mutex_t omu;
	int dfd;		/* guarded by omu: their socket, -1: none */
	int out_busy;		/* guarded by omu: output queued here */
	unsigned waiting;	/* guarded by omu: completions the loop
				   has yet to answer */
	uint8_t *rest;		/* guarded by omu: EARLY_MAX bytes, or NULL */
	size_t rest_len;	/* guarded by omu: unwritten end of a reply */
};

/* Failed logins of one peer address: logged once per LIMIT_LOG_SECONDS,
 * the rest counted and reported with the next line. */
struct authfail {
	char host[64];		/* "" when free */
	time_t logged;		/* last line about it */
	uint64_t unlogged;	/* failures since */
};

struct server {
	struct event_base *base;
	struct listen_set *listen;
	struct event *ev_done, *ev_term, *ev_int, *ev_hup, *ev_drain;
	struct event *ev_authfail;	/* reports counts nobody logged */
	int efd;		/* eventfd: completions are waiting */

	pthread_mutex_t mu;
	atomic_uint unnoticed;	/* changes answered by an engine thread
				   whose notices the loop has not sent */
	struct job *done_head;	/* guarded by mu */
	struct job *done_tail;	/* guarded by mu */
	pthread_cond_t fence_cv;	/* fence_done moved */
	uint64_t fence_asked;	/* guarded by mu: fences sent to the loop */
	uint64_t fence_done;	/* guarded by mu: and carried out */

	const struct engine_ops *ops;
	struct engine *eng;

	LIST_HEAD(, conn) conns;
	unsigned nconns;
	uint64_t njobs;		/* jobs in the engine, all connections */
	int stopping;
	uint64_t serial;	/* connections accepted, names them */

	struct server_key keys[SERVER_KEYS_MAX];
	size_t nkeys;		/* 0: no AUTH */
	struct authfail authfail[AUTHFAIL_SLOTS];
	uint64_t server_id;
	uint32_t max_frame;
	uint64_t max_body;
	uint64_t conn_mem_max;	/* max_connection_memory */
	unsigned conn_jobs_max;	/* max_requests_per_connection */
	int handshake_timeout;	/* seconds, each of them */
	int read_timeout;
	int idle_timeout;	/* 0: off */
	int spool_timeout;	/* seconds a spool is kept unused */

	struct watch_table *watches;

	struct lock_table *locks;
	struct event *ev_locks;	/* send lock replies (locks_kick) */
};

static void conn_input(struct conn *c);
static void conn_update(struct conn *c);
static void conn_close(struct conn *c, const char *why);

/* ---- small helpers ---- */

static void
conn_ref(struct conn *c)
{
	c->refs++;
}

static void
conn_unref(struct conn *c)
{
	assert(c->refs > 0);
	if (--c->refs > 0)
		return;
	assert(c->state == CS_CLOSED && c->bev == NULL);
	pthread_mutex_destroy(&c->omu);
	free(c->rest);
	free(c);
}

/* ---- sending ---- */

/* Append one frame to |b|. Returns 0 or -ENOMEM. */
static int
frame_add(struct evbuffer *b, uint8_t op, uint16_t flags, unsigned status,
    uint32_t id, const void *p, size_t len)
{
	struct mst_hdr h = {
		.version = MST_VERSION,
		.op = op,
		.flags = flags,
		.status = (uint16_t)status,
		.id = id,
		.len = (uint32_t)len,
	};
	uint8_t hb[MST_HDR_LEN];

	mst_hdr_encode(&h, hb, sizeof hb);	/* cannot fail: fixed size */
	if (evbuffer_add(b, hb, sizeof hb) < 0 ||
	    (len > 0 && evbuffer_add(b, p, len) < 0))
		return -ENOMEM;
	return 0;
}

/* Queue the unwritten end of a reply an engine thread wrote (c->omu
 * held), ahead of anything else. 0 or -ENOMEM. */
static int
conn_queue_rest(struct conn *c, struct evbuffer *out)
{
	if (c->rest_len == 0)
		return 0;
	if (evbuffer_add(out, c->rest, c->rest_len) < 0)
		return -ENOMEM;
	c->rest_len = 0;
	return 0;
}

/* Queue one frame. On failure (out of memory) the connection is closed:
 * a reply that cannot be sent leaves the peer's view inconsistent. */
static void
conn_send(struct conn *c, uint8_t op, uint16_t flags, unsigned status,
    uint32_t id, const void *p, size_t len)
{
	struct evbuffer *out;
	int rc = 0;

	if (c->bev == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	if (c->early) {
		/* The output is the loop's until it is written out. */
		pthread_mutex_lock(&c->omu);
		c->out_busy = 1;
		rc = conn_queue_rest(c, out);
		pthread_mutex_unlock(&c->omu);
	}
	if (rc < 0 || frame_add(out, op, flags, status, id, p, len) < 0) {
		log_err("%s: out of memory queueing a %s frame", c->peer,
		    mst_op_name(op));
		conn_close(c, NULL);
		return;
	}
	/* A request is answered by its last reply frame; it arrived with
	 * its job, or else with the frame being handled (for a LOCK that
	 * waited: with its connection's latest frame). */
	if ((flags & MST_F_REPLY) && !(flags & MST_F_MORE))
		metrics_request(op, status, metrics_now_ns() -
		    (c->reply_ns ? c->reply_ns : c->frame_ns));
}

/* Error reply: status from |err| (either sign), optional detail text. */
static void
conn_reply_error(struct conn *c, uint8_t op, uint32_t id, int err,
    const char *detail)
{
	struct mst_error_rep e = { .detail = mst_str_of(detail) };
	uint8_t buf[2 + MST_DETAIL_MAX];
	int n;

	if (e.detail.len > MST_DETAIL_MAX)
		e.detail.len = MST_DETAIL_MAX;
	n = mst_error_rep_encode(&e, buf, sizeof buf);
	if (n < 0)
		n = 0;		/* cannot happen: detail fits; send it bare */
	conn_send(c, op, MST_F_REPLY, mst_errno_to_status(err), id, buf,
	    (size_t)n);
}

/* ---- connection state ---- */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);	/* cannot fail */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * At any time, a peer that leaves replies unread for STALL_SECONDS is
 * dropped rather than hold its buffers and its slot for ever (a hung
 * client fails its calls with EIO anyway). Read deadlines are conn_arm's.
 */
static void
conn_set_timeouts(struct conn *c)
{
	struct timeval stall = { .tv_sec = STALL_SECONDS };

	bufferevent_set_timeouts(c->bev, NULL, &stall);
}

/*
 * Nothing in flight, nothing held: no jobs, no replies queued, no body
 * streaming, no watch (a watcher's silence is its normal state: it waits
 * for notices), no lock state and no file it opened.
 */
static int
conn_idle(const struct conn *c)
{
	return c->njobs == 0 && c->nstreams == 0 && c->nspools == 0 &&
	    c->watch.n == 0 &&
	    c->locks == NULL && !c->opened && c->frame_ms == 0 &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

static int64_t spool_oldest(const struct conn *c);
static void spools_expire(struct conn *c);

/*
 * Arm the connection's one deadline for its state: the handshake must
 * end handshake_timeout after accept; a frame once begun must be whole
 * within read_timeout (so a peer cannot hold a half-sent frame, or trickle
 * it a byte at a time); a body streaming in DATA frames must get its next
 * frame within read_timeout; a connection with nothing pending is closed
 * after idle_timeout when that is set.
 */
static void
conn_arm(struct conn *c)
{
	struct server *srv = c->srv;
	enum conn_timeout to = TO_NONE;
	int64_t base = 0, now = mono_ms(), left;
	int secs = 0;
	struct timeval tv;

	if (c->state == CS_HELLO || c->state == CS_AUTH) {
		to = TO_HANDSHAKE;
		base = c->accepted_ms;
		secs = srv->handshake_timeout;
	} else if (c->state == CS_READY && c->reading && c->frame_ms) {
		to = TO_FRAME;
		base = c->frame_ms;
		secs = srv->read_timeout;
	} else if (c->state == CS_READY && c->reading && c->nstreams) {
		to = TO_BODY;
		base = c->last_frame_ms;
		secs = srv->read_timeout;
	} else if (c->state == CS_READY && srv->idle_timeout &&
	    conn_idle(c)) {
		to = TO_IDLE;
		if (c->timeout != TO_IDLE)
			c->idle_ms = now;
		base = c->idle_ms;
		secs = srv->idle_timeout;
	}
	/* A spool's deadline, when it comes first, is armed instead; the
	 * other is armed again once the spool is dropped. */
	if (c->state == CS_READY && c->spools != NULL &&
	    (to == TO_NONE || spool_oldest(c) + (int64_t)srv->spool_timeout *
	    1000 < base + (int64_t)secs * 1000)) {
		to = TO_SPOOL;
		base = spool_oldest(c);
		secs = srv->spool_timeout;
	}
	c->timeout = to;
	if (to == TO_NONE) {
		evtimer_del(c->ev_timer);
		return;
	}
	left = base + (int64_t)secs * 1000 - now;
	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	/* Adding a pending timer only moves it: cannot fail for a timer
	 * that was created. */
	(void)evtimer_add(c->ev_timer, &tv);
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct server *srv = c->srv;

	(void)fd;
	(void)what;
	switch (c->timeout) {
	case TO_HANDSHAKE:
		log_info("%s: closing: no handshake within %d s "
		    "(handshake_timeout)", c->peer, srv->handshake_timeout);
		break;
	case TO_FRAME:
		log_info("%s: closing: a frame begun %d s ago is still "
		    "incomplete (read_timeout)", c->peer, srv->read_timeout);
		break;
	case TO_BODY:
		log_info("%s: closing: a body is in progress and no DATA came "
		    "for %d s (read_timeout)", c->peer, srv->read_timeout);
		break;
	case TO_IDLE:
		log_debug("%s: closing: idle for %d s (idle_timeout)",
		    c->peer, srv->idle_timeout);
		break;
	case TO_SPOOL:
		spools_expire(c);
		conn_update(c);
		return;
	case TO_NONE:
		return;
	}
	conn_close(c, NULL);
}

static void
set_reading(struct conn *c, int on)
{
	if (on == c->reading)
		return;
	/* Bytes of a frame that waited while we did not read are not the
	 * peer's delay: its clock starts again (conn_input). */
	c->frame_ms = 0;
	if (on)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
	c->reading = on;
}

static int
conn_over_limit(const struct conn *c)
{
	/* Only jobs in the engine free memory by themselves; pausing while
	 * nothing is there would starve the bodies that need more DATA. */
	if (c->njobs == 0)
		return 0;
	return c->njobs + c->nstreams >= c->srv->conn_jobs_max ||
	    c->job_bytes + c->body_bytes >= c->srv->conn_mem_max;
}

static void
stream_free(struct conn *c, struct stream *s)
{
	c->body_bytes -= s->reserved;
	c->nstreams--;
	job_free(s->job);
	free(s);
}

static void
spool_free(struct conn *c, struct spool *s)
{
	c->body_bytes -= s->cap;
	c->nspools--;
	free(s->buf);
	free(s);
}

/* Take the spool of |idem| off the list (its memory still counted), or
 * NULL. */
static struct spool *
spool_take(struct conn *c, const uint8_t *idem)
{
	struct spool **pp, *s;

	for (pp = &c->spools; (s = *pp) != NULL; pp = &s->next)
		if (memcmp(s->idem, idem, MST_IDEM_LEN) == 0) {
			*pp = s->next;
			s->next = NULL;
			return s;
		}
	return NULL;
}

/* When the least recently used spool was last sent to (the list is in
 * use order, most recent first); c->spools is not empty. */
static int64_t
spool_oldest(const struct conn *c)
{
	const struct spool *s = c->spools;

	while (s->next != NULL)
		s = s->next;
	return s->used_ms;
}

/* Drop the least recently used spool, saying why (at info level when
 * |loud|: the client did nothing wrong otherwise). */
static void
spool_drop_oldest(struct conn *c, const char *why, int loud)
{
	struct spool **pp = &c->spools, *s;

	while ((*pp)->next != NULL)
		pp = &(*pp)->next;
	s = *pp;
	*pp = NULL;
	if (loud)
		log_info("%s: dropped a spool of %zu bytes: %s", c->peer,
		    s->len, why);
	else
		log_debug("%s: dropped a spool of %zu bytes: %s", c->peer,
		    s->len, why);
	spool_free(c, s);
}

/* Drop the spools nothing was sent to for spool_timeout: their COMMIT,
 * if it ever comes, gets ESTALE and the client sends the DELIVER. */
static void
spools_expire(struct conn *c)
{
	int64_t cut = mono_ms() - (int64_t)c->srv->spool_timeout * 1000;
	char why[96];

	snprintf(why, sizeof why, "unused for %d s (spool_timeout)",
	    c->srv->spool_timeout);
	while (c->spools != NULL && spool_oldest(c) <= cut)
		spool_drop_oldest(c, why, 1);
}

/* Bodies streaming and spools: neither was acknowledged as stored. */
static void
drop_streams(struct conn *c)
{
	struct stream *s;
	struct spool *sp;

	while ((s = c->streams) != NULL) {
		c->streams = s->next;
		stream_free(c, s);
	}
	while ((sp = c->spools) != NULL) {
		c->spools = sp->next;
		spool_free(c, sp);
	}
}

static void server_check_stop(struct server *srv);
static void locks_kick(struct server *srv);
static void close_owner(struct conn *c);
static void unlock_owner(struct conn *c);

/*
 * Tear down the socket now. |why| is logged at debug level (protocol
 * errors are the peer's problem, not the operator's); NULL when the
 * caller already logged.
 */
static void
conn_close(struct conn *c, const char *why)
{
	struct server *srv = c->srv;

	if (c->state == CS_CLOSED)
		return;
	if (why != NULL)
		log_debug("%s: closing: %s", c->peer, why);
	event_free(c->ev_timer);
	c->ev_timer = NULL;
	drop_streams(c);
	watch_conn_clear(&c->watch);
	if (c->locks != NULL) {
		lock_conn_free(c->locks);	/* may grant others' waits */
		c->locks = NULL;
		locks_kick(srv);
	}
	if (c->early) {
		pthread_mutex_lock(&c->omu);	/* no engine thread writes */
		c->dfd = -1;
		c->rest_len = 0;
		pthread_mutex_unlock(&c->omu);
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	c->reading = 0;
	c->state = CS_CLOSED;
	LIST_REMOVE(c, link);
	srv->nconns--;
	if (c->opened || c->watched)
		close_owner(c);
	if (c->elocks)
		unlock_owner(c);
	conn_unref(c);		/* the socket's reference */
	server_check_stop(srv);
}

/* Read no more; close once the jobs in flight are answered. Bodies still
 * streaming are dropped: they were never acknowledged. */
static void
conn_drain(struct conn *c)
{
	if (c->state == CS_CLOSED || c->state == CS_DRAIN)
		return;
	c->state = CS_DRAIN;
	drop_streams(c);
	/* Its waiting LOCKs would hold the drain: answered EINTR now. */
	if (c->elocks)
		unlock_owner(c);
	conn_set_timeouts(c);
	conn_update(c);
}

static void
conn_update_reading(struct conn *c)
{
	size_t olen;
	int want;

	if (c->state == CS_CLOSED)
		return;
	olen = evbuffer_get_length(bufferevent_get_output(c->bev));
	if (c->state == CS_DRAIN) {
		if (c->njobs == 0 && olen == 0) {
			conn_close(c, "drained");
			return;
		}
		set_reading(c, 0);
		/* Be called back once everything is written. */
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		return;
	}
	want = !c->srv->stopping && olen < CONN_OUT_HIGH &&
	    !conn_over_limit(c);
	if (want && !c->reading) {
		set_reading(c, 1);
		if (!c->in_input)
			conn_input(c);	/* frames may be buffered already */
		return;
	}
	set_reading(c, want);
}

/* Re-evaluate reading, closing and the deadline after anything that
 * changes them. */
static void
conn_update(struct conn *c)
{
	conn_ref(c);		/* closing may drop the last reference */
	conn_update_reading(c);
	if (c->state != CS_CLOSED)
		conn_arm(c);
	conn_unref(c);
}

/* ---- the watch table's view of a connection (watch.h) ---- */

static void
conn_watch_send(void *ctx, const uint8_t *p, size_t len)
{
	metrics_notice_sent();
	conn_send(ctx, MST_OP_NOTIFY, MST_F_NOTICE, 0, 0, p, len);
}

static size_t
conn_watch_backlog(void *ctx)
{
	struct conn *c = ctx;

	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void
conn_watch_close(void *ctx)
{
	conn_close(ctx, NULL);
}

static const struct watch_io conn_watch_io = {
	.send = conn_watch_send,
	.backlog = conn_watch_backlog,
	.close = conn_watch_close,
};

/* ---- jobs ---- */

/*
 * "stats" is open to every client. The commands that make the store work
 * (scrub reads every byte, compact and checkpoint write) need a client
 * that proved the shared key, or one on a Unix socket, whose file
 * permissions say who may connect.
 */
static int
admin_allowed(const struct conn *c, const struct mst_admin_req *a)
{
	if (a->cmd.len == 5 && memcmp(a->cmd.p, "stats", 5) == 0)
		return 1;
	return c->local || c->srv->nkeys > 0;
}

/* Does the engine keep staged bodies (STAGE, COMMIT)? */
static int
server_stages(const struct server *srv)
{
	return srv->ops != NULL && srv->ops->stage;
}

/*
 * Is this server the only one that changes its store and grants its
 * locks (HELLO's SOLE)? Then the notices of a change go to the watchers'
 * output (job_complete) before any frame that a reply to the change can
 * have caused, a lock granted at the holder's unlock included, on this
 * one loop. An engine whose storage other servers share takes the LOCKs
 * (engine_ops.locks): their notices come by another way, maybe later.
 */
static int
server_sole(const struct server *srv)
{
	return srv->ops != NULL && !srv->ops->locks;
}

/* Decode |p| into j->req according to j->op. */
static int
decode_req(struct job *j, const uint8_t *p, size_t len)
{
	switch (j->op) {
	case MST_OP_DELIVER:
		return mst_deliver_req_decode(&j->req.deliver, p, len);
	case MST_OP_STAGE:
		return mst_stage_req_decode(&j->req.stage, p, len);
	case MST_OP_COMMIT:
		return mst_commit_req_decode(&j->req.commit, p, len);
	case MST_OP_LIST:
		return mst_list_req_decode(&j->req.list, p, len);
	case MST_OP_STAT:
	case MST_OP_EXPUNGE:
		return mst_msg_ref_decode(&j->req.ref, p, len);
	case MST_OP_FETCH:
		return mst_fetch_req_decode(&j->req.fetch, p, len);
	case MST_OP_SETINFO:
		return mst_setinfo_req_decode(&j->req.setinfo, p, len);
	case MST_OP_LOOKUP:
	case MST_OP_RMDIR:
	case MST_OP_READDIR:
	case MST_OP_UNLINK:
	case MST_OP_STATFS:
	case MST_OP_WATCH:
		return mst_path_req_decode(&j->req.path, p, len);
	case MST_OP_MKDIR:
		return mst_mkdir_req_decode(&j->req.mkdir, p, len);
	case MST_OP_PUT:
		return mst_put_req_decode(&j->req.put, p, len);
	case MST_OP_GET:
		return mst_get_req_decode(&j->req.get, p, len);
	case MST_OP_RENAME:
		return mst_rename_req_decode(&j->req.rename, p, len);
	case MST_OP_SETATTR:
		return mst_setattr_req_decode(&j->req.setattr, p, len);
	case MST_OP_ADMIN:
		return mst_admin_req_decode(&j->req.admin, p, len);
	case MST_OP_GETATTR:
	case MST_OP_OPEN:
	case MST_OP_CLOSE:
		return mst_id_req_decode(&j->req.fid, p, len);
	case MST_OP_READ:
		return mst_read_req_decode(&j->req.read, p, len);
	case MST_OP_WRITE:
		return mst_write_req_decode(&j->req.write, p, len);
	case MST_OP_FSETATTR:
		return mst_fsetattr_req_decode(&j->req.fsetattr, p, len);
	case MST_OP_LINK:
		return mst_link_req_decode(&j->req.link, p, len);
	case MST_OP_LOCK:	/* engine_ops.locks only (do_lock) */
		return mst_lock_req_decode(&j->req.lock, p, len);
	default:
		return -EOPNOTSUPP;
	}
}

/* Give |j| its own copy of the payload and re-point the views into it. */
static int
job_own_payload(struct job *j, const uint8_t *p, size_t len)
{
	int rc;

	j->payload = malloc(len ? len : 1);
	if (j->payload == NULL)
		return -ENOMEM;
	if (len)
		memcpy(j->payload, p, len);
	j->payload_len = len;
	rc = decode_req(j, j->payload, len);
	assert(rc == 0);	/* the same bytes decoded before */
	return rc;
}

static void job_complete(struct server *srv, struct job *j);
static int conn_early_done(struct conn *c);

/* job.answered: who sends the reply of a job the engine completed. */
enum {
	ANSWERED_NOW = 0,	/* engine_ops.try_now, on the loop */
	ANSWERED_LOOP,		/* the loop; counted in c->waiting */
	ANSWERED_EARLY,		/* the engine's thread sent it already */
};

static void
job_submit(struct conn *c, struct job *j)
{
	struct server *srv = c->srv;

	j->owner = c->token;
	c->njobs++;
	c->job_bytes += j->payload_len + j->body_len;
	srv->njobs++;
	conn_ref(c);
	/* A look in the index is answered here, without two thread
	 * hand-offs (engine_ops.try_now); replies go out of order anyway. */
	if (srv->ops->try_now && srv->ops->try_now(srv->eng, j)) {
		job_complete(srv, j);
		return;
	}
	srv->ops->submit(srv->eng, j);
	conn_update(c);
}

/* One internal job for |c|'s token (j->owner), |op| an ENG_OP_*; it
 * keeps the conn alive until it completes, and gets no reply. */
static void
owner_job(struct conn *c, uint8_t op, const char *oom)
{
	struct job *j;

	if (c->srv->ops == NULL)
		return;
	j = calloc(1, sizeof *j);
	if (j == NULL) {
		log_err("%s: out of memory %s", c->peer, oom);
		return;
	}
	j->op = op;
	j->max_frame = c->max_frame;
	j->conn = c;
	job_submit(c, j);
}

/*
 * |c| has ended after an OPEN or a WATCH: have the engine drop the
 * references it still holds, so that files unlinked while open are
 * freed, and what it keeps of its watches (rados). The job
 * keeps the closed conn alive until it completes (its reply is dropped).
 * Not after the engine is closed (server_free): its references died
 * with it.
 */
static void
close_owner(struct conn *c)
{
	owner_job(c, ENG_OP_CLOSE_OWNER, "closing its open files; they stay "
	    "referenced until restart");
}

/*
 * |c| sent LOCK to the engine and ends or drains: have the engine drop
 * its locks and answer its waiting LOCKs. Once per connection.
 */
static void
unlock_owner(struct conn *c)
{
	c->elocks = 0;
	owner_job(c, ENG_OP_UNLOCK_OWNER, "releasing its locks; they stay "
	    "until its server restarts");
}

/*
 * An engine answer that reaches the client as EIO: either a real I/O
 * error or an errno the protocol has no status for (mst_errno_to_status
 * maps those to EIO). The engine logs most of them itself; this line
 * makes sure none goes unlogged, with the errno the client cannot see.
 * At most 10 lines a second (a damaged disk fails every read), with a
 * count of those left out. Runs on the loop thread only.
 */
static void
log_eio_reply(uint8_t op, int status)
{
	static time_t sec;
	static unsigned lines, dropped;
	time_t now = time(NULL);
	int err = status == INT_MIN ? EIO : status < 0 ? -status : status;

	if (now != sec) {
		if (dropped)
			log_warn("engine: %u more EIO replies not logged",
			    dropped);
		sec = now;
		lines = 0;
		dropped = 0;
	}
	if (lines >= 10) {
		dropped++;
		return;
	}
	lines++;
	log_warn("engine: %s answered EIO (engine error: %s)",
	    mst_op_name(op), strerror(err));
}

/*
 * The frames that answer a completed job: one with the error status and
 * the first payload, if any; one empty frame; or each payload, all but
 * the last flagged MORE. reply_count says how many; reply_frame gives
 * the i-th one's flags and payload.
 */
static size_t
reply_count(const struct job *j)
{
	return j->status != 0 || j->nframes == 0 ? 1 : j->nframes;
}

static void
reply_frame(const struct job *j, size_t i, uint16_t *flags, const void **p,
    size_t *len)
{
	static const uint8_t empty[1];

	*flags = (uint16_t)(MST_F_REPLY |
	    (i + 1 < reply_count(j) ? MST_F_MORE : 0));
	*p = j->nframes ? j->frames[i].p : empty;
	*len = j->nframes ? j->frames[i].len : 0;
}

/* The length of a payload of |j| over |max_frame|, or 0: none is. */
static size_t
reply_too_big(const struct job *j, uint32_t max_frame)
{
	size_t i;

	for (i = 0; i < j->nframes; i++)
		if (j->frames[i].len > max_frame)
			return j->frames[i].len;
	return 0;
}

/* Send the reply frames of a completed job. */
static void
job_reply(struct conn *c, const struct job *j)
{
	uint8_t op = j->reply_op ? j->reply_op : j->op;
	unsigned status = mst_errno_to_status(j->status);
	size_t i, n, len = reply_too_big(j, c->max_frame);
	const void *p;
	uint16_t flags;

	if (len > 0) {
		log_err("engine: %s reply frame of %zu bytes exceeds "
		    "max_frame %u", mst_op_name(op), len, c->max_frame);
		conn_reply_error(c, op, j->id, -EIO, NULL);
		return;
	}
	if (j->status != 0 && status == MST_S_EIO)
		log_eio_reply(op, j->status);
	n = reply_count(j);
	for (i = 0; i < n; i++) {
		reply_frame(j, i, &flags, &p, &len);
		conn_send(c, op, flags, status, j->id, p, len);
	}
}

/* On the loop: the engine is done with |j|. */
static void
job_complete(struct server *srv, struct job *j)
{
	struct conn *c = j->conn;
	size_t i;

	c->njobs--;
	c->job_bytes -= j->payload_len + j->body_len;
	srv->njobs--;
	if ((j->op == MST_OP_DELIVER || j->op == MST_OP_COMMIT) &&
	    j->status == 0)
		metrics_delivered(j->req.deliver.body_size);
	if (j->answered == ANSWERED_EARLY) {
		if (conn_early_done(c) < 0) {
			log_err("%s: out of memory queueing a reply", c->peer);
			conn_close(c, NULL);
		}
	} else if (c->state != CS_CLOSED && j->op != ENG_OP_UNLOCK_OWNER &&
	    j->op != ENG_OP_UNWATCH) {
		c->reply_ns = j->start_ns;
		job_reply(c, j);
		c->reply_ns = 0;
	}
	if (j->answered == ANSWERED_LOOP) {	/* and queued, if any */
		pthread_mutex_lock(&c->omu);
		c->waiting--;
		pthread_mutex_unlock(&c->omu);
	}
	/* A closed connection's watchers are gone already. */
	if (j->op == MST_OP_WATCH && c->state != CS_CLOSED)
		watch_done(&c->watch, j);
	for (i = 0; i < j->nnotices; i++)
		watch_notify(srv->watches, &j->notices[i], &c->watch);
	if (j->answered == ANSWERED_EARLY && j->nnotices > 0)
		atomic_fetch_sub(&srv->unnoticed, 1);
	job_free(j);
	conn_update(c);
	conn_unref(c);		/* the job's reference */
	server_check_stop(srv);
}

/*
 * On the loop: notices of changes another server made (carried by a job
 * with no connection, see server_engine_notice). Nobody asked for them,
 * so every watcher hears of them.
 */
static void
notices_complete(struct server *srv, struct job *j)
{
	size_t i;

	for (i = 0; i < j->nnotices; i++)
		watch_notify(srv->watches, &j->notices[i], NULL);
	job_free(j);
}

/*
 * On the loop: the engine lost its lock lease (server_engine_fence).
 * Every connection named is closed now, so that none of their clients
 * goes on believing it holds a lock that another server may grant; then
 * the waiting engine thread is released.
 */
static void
fence_complete(struct server *srv, struct job *j)
{
	const uint8_t *p = j->payload;
	size_t i, n = j->payload_len / 8, closed = 0;
	struct conn *c, *next;
	uint64_t tok;

	for (c = LIST_FIRST(&srv->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, link);
		for (i = 0; i < n; i++) {
			memcpy(&tok, p + i * 8, 8);
			if (tok == c->token)
				break;
		}
		if (i == n)
			continue;
		log_info("%s: closed: its locks went with the lapsed lock "
		    "lease", c->peer);
		conn_close(c, NULL);
		closed++;
	}
	if (closed > 0)
		log_info("lock lease lapsed: %zu connection(s) closed", closed);
	pthread_mutex_lock(&srv->mu);
	if (srv->fence_done < j->lsn)
		srv->fence_done = j->lsn;
	pthread_cond_broadcast(&srv->fence_cv);
	pthread_mutex_unlock(&srv->mu);
	job_free(j);
}

/* Take the completed jobs off the shared list, oldest first. */
static struct job *
take_done(struct server *srv)
{
	struct job *head;

	pthread_mutex_lock(&srv->mu);
	head = srv->done_head;
	srv->done_head = srv->done_tail = NULL;
	pthread_mutex_unlock(&srv->mu);
	return head;
}

/* Complete every job on the shared list, oldest first. */
static void
done_run(struct server *srv)
{
	struct job *j, *next;

	for (j = take_done(srv); j != NULL; j = next) {
		next = j->next;
		if (j->conn == NULL && j->op == ENG_OP_FENCE)
			fence_complete(srv, j);
		else if (j->conn == NULL)
			notices_complete(srv, j);
		else
			job_complete(srv, j);
	}
}

static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t v;
	ssize_t r;

	(void)what;
	/* Read the counter before taking the list: a job pushed after the
	 * read writes the eventfd again, so none is left behind. */
	do
		r = read(fd, &v, sizeof v);
	while (r < 0 && errno == EINTR);
	done_run(srv);
}

/*
 * On the loop, before a frame of |c| is read or its end handled: the
 * replies engine threads wrote may have caused it, so their notices go
 * out first (see the top). -1: |c| was closed meanwhile.
 */
static int
conn_catch_up(struct conn *c)
{
	int closed;

	if (atomic_load(&c->srv->unnoticed) == 0)
		return 0;
	conn_ref(c);
	done_run(c->srv);
	closed = c->state == CS_CLOSED;
	conn_unref(c);
	return closed ? -1 : 0;
}

/* From any thread: queue |j| for the loop. 1: the loop must be woken
 * (done_wake), 0: it has been already. */
static int
done_queue(struct server *srv, struct job *j)
{
	int wake;

	j->next = NULL;
	pthread_mutex_lock(&srv->mu);
	wake = srv->done_head == NULL;
	if (srv->done_tail != NULL)
		srv->done_tail->next = j;
	else
		srv->done_head = j;
	srv->done_tail = j;
	pthread_mutex_unlock(&srv->mu);
	return wake;
}

static void
done_wake(struct server *srv)
{
	uint64_t one = 1;
	ssize_t w;

	do
		w = write(srv->efd, &one, sizeof one);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		log_err("completion eventfd: write: %s", strerror(errno));
}

/* From any thread: queue |j| for the loop and wake it if it sleeps. */
static void
done_push(struct server *srv, struct job *j)
{
	if (done_queue(srv, j))
		done_wake(srv);
}

/*
 * May an engine thread send |j|'s reply (see the top)? Not for a job the
 * loop must see complete first (WATCH, LOCK, the network layer's own
 * jobs), nor an EIO the loop logs. Encodes the frames into |buf|:
 * returns their length, or 0 when the loop sends them (also when they
 * exceed EARLY_MAX).
 */
static size_t
early_encode(const struct job *j, uint8_t *buf)
{
	uint8_t op = j->reply_op ? j->reply_op : j->op;
	unsigned status = mst_errno_to_status(j->status);
	size_t i, n, plen, len = 0;
	struct mst_hdr h;
	const void *p;

	if (j->op == MST_OP_WATCH || j->op == MST_OP_LOCK ||
	    j->op == ENG_OP_CLOSE_OWNER || j->op == ENG_OP_UNLOCK_OWNER ||
	    j->op == ENG_OP_UNWATCH || j->op == ENG_OP_FENCE ||
	    status == MST_S_EIO || reply_too_big(j, j->max_frame))
		return 0;
	n = reply_count(j);
	for (i = 0; i < n; i++) {
		h = (struct mst_hdr){
			.version = MST_VERSION,
			.op = op,
			.status = (uint16_t)status,
			.id = j->id,
		};
		reply_frame(j, i, &h.flags, &p, &plen);
		if (plen > EARLY_MAX - MST_HDR_LEN - len)
			return 0;
		h.len = (uint32_t)plen;
		mst_hdr_encode(&h, buf + len, MST_HDR_LEN);
		memcpy(buf + len + MST_HDR_LEN, p, plen);
		len += MST_HDR_LEN + plen;
	}
	return len;
}

/*
 * An engine thread writes a reply on |c|'s socket (c->omu held, the
 * output idle). What the socket does not take now waits in c->rest for
 * the loop, which queues it before anything else; if there is no memory
 * for it, the frame is torn and the connection is shut down (the client
 * retries its requests on a new one).
 */
static void
conn_early_write(struct conn *c, const uint8_t *p, size_t len)
{
	ssize_t n;

	do
		n = send(c->dfd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)len)
		return;
	c->out_busy = 1;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		c->dfd = -1;	/* the loop hears of the error itself */
		return;
	}
	if (n < 0)
		n = 0;
	if (c->rest == NULL)
		c->rest = malloc(EARLY_MAX);
	if (c->rest == NULL) {
		log_err("%s: out of memory keeping a reply; shutting the "
		    "connection down", c->peer);
		(void)shutdown(c->dfd, SHUT_RDWR);	/* its end comes next */
		c->dfd = -1;
		return;
	}
	memcpy(c->rest, p + n, len - (size_t)n);
	c->rest_len = len - (size_t)n;
}

/*
 * On the loop, for a job whose reply an engine thread sent: waits for
 * that write to end (it holds c->omu) and queues what it left over.
 * 0 or -ENOMEM.
 */
static int
conn_early_done(struct conn *c)
{
	int rc = 0;

	pthread_mutex_lock(&c->omu);
	if (c->bev != NULL)
		rc = conn_queue_rest(c, bufferevent_get_output(c->bev));
	pthread_mutex_unlock(&c->omu);
	return rc;
}

void
server_job_done(void *arg, struct job *j)
{
	struct server *srv = arg;
	struct conn *c = j->conn;
	uint8_t buf[EARLY_MAX], op = j->reply_op ? j->reply_op : j->op;
	unsigned status = mst_errno_to_status(j->status);
	int64_t start_ns = j->start_ns;
	size_t len;
	int wake;

	/* The job is ours again: |next| is free for our list. */
	if (c == NULL) {
		done_push(srv, j);
		return;
	}
	len = c->early ? early_encode(j, buf) : 0;
	pthread_mutex_lock(&c->omu);
	if (c->dfd < 0 || c->out_busy || c->waiting > 0 ||
	    atomic_load(&srv->unnoticed) > 0)
		len = 0;
	if (len > 0) {
		j->answered = ANSWERED_EARLY;
		if (j->nnotices > 0)
			atomic_fetch_add(&srv->unnoticed, 1);
	} else {
		j->answered = ANSWERED_LOOP;
		c->waiting++;
	}
	/* On the list before the client can hear of it: conn_catch_up. */
	wake = done_queue(srv, j);
	if (len > 0)
		conn_early_write(c, buf, len);
	pthread_mutex_unlock(&c->omu);	/* |j| and |c| are the loop's */
	if (len > 0)
		metrics_request(op, status, metrics_now_ns() - start_ns);
	if (wake)
		done_wake(srv);
}

/*
 * The notice takes the completions' path to the loop, so it is fanned
 * out by the same code, in order with them. It travels as a job without
 * a connection (job_complete is never called for it): the notice is
 * copied, because the engine only lends it.
 */
void
server_engine_notice(void *arg, const struct jnotice *n)
{
	struct job *j = calloc(1, sizeof *j);

	if (j == NULL || job_add_notice(j, n->dir, n->name, n->event, n->id,
	    n->change) < 0) {
		log_err("notify %s: out of memory: a change made by another "
		    "server is not pushed to its watchers", n->dir);
		job_free(j);
		return;
	}
	done_push(arg, j);
}

/*
 * Closing connections is the loop's to do: the tokens travel there as a
 * job without a connection (like a notice), and the engine thread waits
 * until the loop has closed them, at most FENCE_WAIT_MS (a loop that is
 * not running any more closes every connection anyway).
 */
#define FENCE_WAIT_MS	2000

void
server_engine_fence(void *arg, const uint64_t *owners, size_t n)
{
	struct server *srv = arg;
	struct job *j = calloc(1, sizeof *j);
	struct timespec ts;
	uint64_t seq;

	if (j == NULL || (n > 0 && (j->payload = malloc(n * 8)) == NULL)) {
		log_err("fence: out of memory: the connections holding locks "
		    "given up are not closed");
		free(j);
		return;
	}
	if (n > 0)
		memcpy(j->payload, owners, n * 8);
	j->payload_len = n * 8;
	j->op = ENG_OP_FENCE;
	pthread_mutex_lock(&srv->mu);
	seq = ++srv->fence_asked;
	pthread_mutex_unlock(&srv->mu);
	j->lsn = seq;
	done_push(srv, j);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += FENCE_WAIT_MS / 1000;
	pthread_mutex_lock(&srv->mu);
	while (srv->fence_done < seq &&
	    pthread_cond_timedwait(&srv->fence_cv, &srv->mu, &ts) == 0)
		;
	if (srv->fence_done < seq)
		log_warn("fence: the connections holding locks were not "
		    "closed within %d ms", FENCE_WAIT_MS);
	pthread_mutex_unlock(&srv->mu);
}

/* ---- bodies ---- */

static struct stream *
stream_find(struct conn *c, uint32_t id)
{
	struct stream *s;

	for (s = c->streams; s != NULL; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void
stream_unlink(struct conn *c, struct stream *s)
{
	struct stream **pp;

	for (pp = &c->streams; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
	stream_free(c, s);
}

static struct stream *
stream_new(struct conn *c, const struct mst_hdr *h)
{
	struct stream *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	s->id = h->id;
	s->op = h->op;
	s->next = c->streams;
	c->streams = s;
	c->nstreams++;
	return s;
}

/*
 * Refuse a body-carrying request. The reply goes out once the client has
 * finished sending the body, so that the request id is free on both sides
 * when the client sees it; the DATA frames until then are discarded.
 */
static void
body_refuse(struct conn *c, const struct mst_hdr *h, int err,
    const char *detail)
{
	struct stream *s;

	if (!(h->flags & MST_F_MORE)) {
		conn_reply_error(c, h->op, h->id, err, detail);
		return;
	}
	s = stream_new(c, h);
	if (s == NULL) {
		log_err("%s: out of memory", c->peer);
		conn_close(c, NULL);
		return;
	}
	s->status = err;
	snprintf(s->detail, sizeof s->detail, "%s", detail ? detail : "");
}

static int
is_body_op(unsigned op)
{
	return op == MST_OP_DELIVER || op == MST_OP_STAGE || op == MST_OP_PUT ||
	    op == MST_OP_WRITE;
}

/* The body fields of a DELIVER, PUT or WRITE job. */
static struct mst_bytes *
body_view(struct job *j)
{
	switch (j->op) {
	case MST_OP_DELIVER:
		return &j->req.deliver.body;
	case MST_OP_STAGE:
		return &j->req.stage.body;
	case MST_OP_WRITE:
		return &j->req.write.body;
	default:
		return &j->req.put.body;
	}
}

static uint64_t
body_size(const struct job *j)
{
	switch (j->op) {
	case MST_OP_DELIVER:
		return j->req.deliver.body_size;
	case MST_OP_STAGE:
		return j->req.stage.body_size;
	case MST_OP_WRITE:
		return j->req.write.body_size;
	default:
		return j->req.put.body_size;
	}
}

static uint64_t
body_checksum(const struct job *j)
{
	switch (j->op) {
	case MST_OP_DELIVER:
		return j->req.deliver.checksum;
	case MST_OP_STAGE:
		return j->req.stage.checksum;
	case MST_OP_WRITE:
		return j->req.write.checksum;
	default:
		return j->req.put.checksum;
	}
}

/* The whole body is in: verify it and hand the job to the engine. */
static void
body_finish(struct conn *c, struct job *j)
{
	struct mst_bytes whole = {
		.p = j->body,
		.len = j->body_len <= UINT32_MAX ? (uint32_t)j->body_len : 0,
	};

	if (mst_checksum(j->body, j->body_len) != body_checksum(j)) {
		log_debug("%s: %s id %u: body checksum mismatch", c->peer,
		    mst_op_name(j->op), j->id);
		conn_reply_error(c, j->op, j->id, -EBADMSG,
		    "body checksum mismatch");
		job_free(j);
		return;
	}
	/* The engine reads job->body/body_len; the view is a convenience
	 * (empty for a body of exactly 4 GiB, which a u32 cannot hold). */
	*body_view(j) = whole;
	job_submit(c, j);
}

/* First frame of DELIVER, PUT or WRITE, already decoded into |j|. */
static void
body_start(struct conn *c, struct job *j, const struct mst_hdr *h,
    const uint8_t *p)
{
	int more = h->flags & MST_F_MORE;
	struct mst_bytes chunk = *body_view(j);
	uint64_t size = body_size(j);
	struct mst_body b = { .want = size };
	char detail[160];
	struct stream *s;
	int rc;

	if (size > c->srv->max_body || size > SIZE_MAX - 1) {
		snprintf(detail, sizeof detail, "body of %llu bytes exceeds "
		    "max_message_size (%llu)", (unsigned long long)size,
		    (unsigned long long)c->srv->max_body);
		job_free(j);
		body_refuse(c, h, -EFBIG, detail);
		return;
	}
	/* Spools are only a head start (their COMMIT falls back to a
	 * DELIVER): a body about to be stored goes first. */
	while (c->spools != NULL &&
	    c->body_bytes + size > c->srv->conn_mem_max)
		spool_drop_oldest(c, "room for a body", 0);
	if (c->body_bytes > 0 && c->body_bytes + size > c->srv->conn_mem_max) {
		job_free(j);
		body_refuse(c, h, -EAGAIN,
		    "too many bodies in progress on this connection");
		return;
	}
	rc = mst_body_add(&b, chunk.len, more);
	if (rc < 0) {
		job_free(j);
		body_refuse(c, h, rc, "body frames do not add up to body_size");
		return;
	}
	j->body = malloc(size ? size : 1);
	if (j->body == NULL || job_own_payload(j, p, h->len - chunk.len) < 0) {
		job_free(j);
		body_refuse(c, h, -ENOMEM, NULL);
		return;
	}
	j->body_len = size;
	if (chunk.len)
		memcpy(j->body, chunk.p, chunk.len);
	if (rc == 1) {
		body_finish(c, j);
		return;
	}
	s = stream_new(c, h);
	if (s == NULL) {
		job_free(j);
		body_refuse(c, h, -ENOMEM, NULL);
		return;
	}
	s->job = j;
	s->body = b;
	s->reserved = size;
	c->body_bytes += size;
}

static void
do_data(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct stream *s = stream_find(c, h->id);
	int more = h->flags & MST_F_MORE, rc;
	uint64_t have;
	struct job *j;

	if (s == NULL) {
		log_debug("%s: DATA for id %u, which has no body in progress",
		    c->peer, h->id);
		conn_close(c, "protocol error");
		return;
	}
	if (s->job != NULL) {
		have = s->body.have;
		rc = mst_body_add(&s->body, h->len, more);
		if (rc < 0) {
			job_free(s->job);
			s->job = NULL;
			c->body_bytes -= s->reserved;
			s->reserved = 0;
			s->status = rc;
			snprintf(s->detail, sizeof s->detail,
			    "body frames do not add up to body_size");
		} else {
			memcpy(s->job->body + have, p, h->len);
			if (rc == 0)
				return;
			j = s->job;
			s->job = NULL;
			stream_unlink(c, s);
			body_finish(c, j);
			return;
		}
	}
	if (more)
		return;
	conn_reply_error(c, s->op, s->id, s->status,
	    s->detail[0] ? s->detail : NULL);
	stream_unlink(c, s);
}

/* ---- requests ---- */

static int spool_commit(struct conn *c, const struct mst_hdr *h,
    const uint8_t *p);

static void
do_request(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	int body_op = is_body_op(h->op);
	char detail[128];
	struct job *j;
	int rc;

	if (body_op && stream_find(c, h->id) != NULL) {
		log_debug("%s: %s reuses id %u while its body is streaming",
		    c->peer, mst_op_name(h->op), h->id);
		conn_close(c, "protocol error");
		return;
	}
	if (body_op && (h->flags & MST_F_MORE) &&
	    c->nstreams >= CONN_STREAMS_MAX) {
		log_debug("%s: more than %u bodies streaming at once",
		    c->peer, CONN_STREAMS_MAX);
		conn_close(c, "protocol error");
		return;
	}
	if (h->op == MST_OP_COMMIT && spool_commit(c, h, p))
		return;
	if (h->op == MST_OP_WATCH && watch_conn_full(&c->watch)) {
		conn_reply_error(c, h->op, h->id, -ENOSPC,
		    "too many watches on this connection");
		return;
	}
	if ((h->op == MST_OP_STAGE || h->op == MST_OP_COMMIT) &&
	    !server_stages(c->srv)) {
		/* Not offered in HELLO: the client sends DELIVER instead. */
		if (body_op)
			body_refuse(c, h, -EOPNOTSUPP, "no STAGE on this "
			    "back-end");
		else
			conn_reply_error(c, h->op, h->id, -EOPNOTSUPP,
			    "no COMMIT on this back-end");
		return;
	}
	j = calloc(1, sizeof *j);
	if (j == NULL) {
		if (body_op)
			body_refuse(c, h, -ENOMEM, NULL);
		else
			conn_reply_error(c, h->op, h->id, -ENOMEM, NULL);
		return;
	}
	j->op = h->op;
	j->id = h->id;
	j->max_frame = c->max_frame;
	j->conn = c;
	j->start_ns = c->frame_ns;
	rc = decode_req(j, p, h->len);
	if (rc < 0) {
		job_free(j);
		snprintf(detail, sizeof detail, "malformed %s: %s",
		    mst_op_name(h->op), strerror(-rc));
		log_debug("%s: id %u: %s", c->peer, h->id, detail);
		if (body_op)
			body_refuse(c, h, rc, detail);
		else
			conn_reply_error(c, h->op, h->id, rc, detail);
		return;
	}
	if (body_op) {
		body_start(c, j, h, p);
		return;
	}
	if (h->op == MST_OP_ADMIN && !admin_allowed(c, &j->req.admin)) {
		job_free(j);
		log_warn("%s: ADMIN refused over TCP without a key", c->peer);
		conn_reply_error(c, h->op, h->id, -EACCES, "scrub, compact and "
		    "checkpoint need the Unix socket or a key_file");
		return;
	}
	if (job_own_payload(j, p, h->len) < 0 || (h->op == MST_OP_WATCH &&
	    watch_begin(&c->watch, j->req.path.path.p,
	    j->req.path.path.len) < 0)) {
		job_free(j);
		conn_reply_error(c, h->op, h->id, -ENOMEM, NULL);
		return;
	}
	if (h->op == MST_OP_OPEN)
		c->opened = 1;
	if (h->op == MST_OP_WATCH)
		c->watched = 1;	/* the engine may track its watches */
	job_submit(c, j);
}

/* Make room for |len| more bytes in |s|, counting them in
 * c->body_bytes. 0, -EFBIG or -EAGAIN (the connection's memory bound;
 * one spool alone may still reach max_body), or -ENOMEM. */
static int
spool_grow(struct conn *c, struct spool *s, size_t len)
{
	size_t want = s->len + len, cap = s->cap ? s->cap : 64u << 10;
	uint8_t *nb;

	if (want > c->srv->max_body)
		return -EFBIG;
	if (want <= s->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	if (cap > c->srv->max_body)
		cap = want;
	if (c->body_bytes - s->cap > 0 &&
	    c->body_bytes - s->cap + cap > c->srv->conn_mem_max)
		return -EAGAIN;
	nb = realloc(s->buf, cap);
	if (nb == NULL)
		return -ENOMEM;
	c->body_bytes += cap - s->cap;
	s->buf = nb;
	s->cap = cap;
	return 0;
}

/*
 * SPOOL: append to the body this connection gathers under idem, in
 * memory (mstore-protocol(7)). Answered here, never by the engine: it
 * stores nothing. Any failure drops the spool, so a later COMMIT finds
 * none (ESTALE) or a short one (EINVAL), and the client sends DELIVER.
 */
static void
do_spool(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	static const uint8_t empty[1];
	struct mst_spool_req q;
	struct spool *s;
	int rc = mst_spool_req_decode(&q, p, h->len);

	if (rc < 0) {
		conn_reply_error(c, h->op, h->id, rc, "malformed SPOOL");
		return;
	}
	s = spool_take(c, q.idem);
	if (q.offset == 0 && s != NULL) {	/* afresh, or dropped */
		spool_free(c, s);
		s = NULL;
	}
	if (q.offset == 0 && q.length == 0) {
		conn_send(c, h->op, MST_F_REPLY, 0, h->id, empty, 0);
		return;
	}
	if (q.offset != (s ? s->len : 0)) {
		if (s)
			spool_free(c, s);
		conn_reply_error(c, h->op, h->id, -EINVAL,
		    "SPOOL offset is not the end of the spool");
		return;
	}
	if (s == NULL) {
		if (c->nspools >= CONN_SPOOLS_MAX)
			spool_drop_oldest(c, "too many spools", 0);
		s = calloc(1, sizeof *s);
		if (s == NULL) {
			conn_reply_error(c, h->op, h->id, -ENOMEM, NULL);
			return;
		}
		memcpy(s->idem, q.idem, MST_IDEM_LEN);
		c->nspools++;
	}
	rc = spool_grow(c, s, q.length);
	if (rc < 0) {
		spool_free(c, s);
		conn_reply_error(c, h->op, h->id, rc, rc == -EAGAIN ?
		    "spools over max_connection_memory" : NULL);
		return;
	}
	memcpy(s->buf + s->len, q.data.p, q.length);
	s->len += q.length;
	s->used_ms = mono_ms();
	s->next = c->spools;
	c->spools = s;
	conn_send(c, h->op, MST_F_REPLY, 0, h->id, empty, 0);
}

/*
 * A COMMIT whose idem names a spool of this connection: the spool's
 * bytes are the body of a DELIVER with the COMMIT's fields (COMMIT's
 * layout is DELIVER's without the body, so its bytes decode as such a
 * DELIVER), and the engine runs that DELIVER, answered as COMMIT. The
 * spool goes whatever the outcome. Returns 0 when no spool is named
 * (the COMMIT of a staged body, or of nothing: the engine answers).
 */
static int
spool_commit(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct mst_commit_req q;
	struct spool *s;
	struct job *j;
	int rc;

	if (c->spools == NULL || mst_commit_req_decode(&q, p, h->len) < 0 ||
	    (s = spool_take(c, q.idem)) == NULL)
		return 0;
	c->nspools--;
	c->body_bytes -= s->cap;
	if (s->len != q.body_size ||
	    mst_checksum(s->buf, s->len) != q.checksum) {
		free(s->buf);
		free(s);
		conn_reply_error(c, h->op, h->id, -EINVAL, "the spool is not "
		    "the body COMMIT names (size or checksum)");
		return 1;
	}
	j = calloc(1, sizeof *j);
	if (j != NULL)
		j->payload = malloc(h->len ? h->len : 1);
	if (j == NULL || j->payload == NULL) {
		free(j);
		free(s->buf);
		free(s);
		conn_reply_error(c, h->op, h->id, -ENOMEM, NULL);
		return 1;
	}
	memcpy(j->payload, p, h->len);
	j->payload_len = h->len;
	j->op = MST_OP_DELIVER;
	j->reply_op = MST_OP_COMMIT;
	j->id = h->id;
	j->max_frame = c->max_frame;
	j->conn = c;
	j->start_ns = c->frame_ns;
	rc = decode_req(j, j->payload, j->payload_len);
	/* The job owns the buffer now, counted by its length: give back
	 * the room grown ahead (a shrink does not fail on Linux; if it
	 * did, the larger buffer is kept). */
	j->body = s->len > 0 && s->len < s->cap ?
	    realloc(s->buf, s->len) : NULL;
	if (j->body == NULL)
		j->body = s->buf;
	j->body_len = s->len;
	free(s);
	if (rc < 0) {
		job_free(j);
		conn_reply_error(c, h->op, h->id, rc, "malformed COMMIT");
		return 1;
	}
	j->req.deliver.body.p = j->body;
	j->req.deliver.body.len = j->body_len <= UINT32_MAX ?
	    (uint32_t)j->body_len : 0;
	job_submit(c, j);
	return 1;
}

static void
do_ping(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct mst_ping ping;
	uint8_t buf[8];
	int n = mst_ping_decode(&ping, p, h->len);

	if (n < 0) {
		conn_reply_error(c, h->op, h->id, n, "malformed PING");
		return;
	}
	n = mst_ping_encode(&ping, buf, sizeof buf);
	conn_send(c, MST_OP_PING, MST_F_REPLY, 0, h->id, buf, (size_t)n);
}

/* Tell an engine that keeps watches (engine_ops.watches) of an UNWATCH
 * answered; its job sends nothing. Out of memory, the engine keeps the
 * directory until the connection ends (CLOSE_OWNER). */
static void
unwatch_job(struct conn *c, const uint8_t *p, size_t len)
{
	struct job *j = calloc(1, sizeof *j);

	if (j == NULL)
		return;
	j->op = ENG_OP_UNWATCH;
	j->max_frame = c->max_frame;
	j->conn = c;
	/* Decoded here: decode_req takes no internal opcode from a peer. */
	j->payload = malloc(len ? len : 1);
	if (j->payload == NULL) {
		job_free(j);
		return;
	}
	if (len)
		memcpy(j->payload, p, len);
	j->payload_len = len;
	if (mst_path_req_decode(&j->req.path, j->payload, len) < 0) {
		job_free(j);
		return;
	}
	job_submit(c, j);
}

static void
do_unwatch(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct mst_path_req q;
	int rc = mst_path_req_decode(&q, p, h->len);

	if (rc < 0) {
		conn_reply_error(c, h->op, h->id, rc, "malformed UNWATCH");
		return;
	}
	if (watch_end(&c->watch, q.path.p, q.path.len) < 0) {
		conn_reply_error(c, h->op, h->id, -ENOENT, "not watched");
		return;
	}
	conn_send(c, h->op, MST_F_REPLY, 0, h->id, NULL, 0);
	if (c->srv->ops != NULL && c->srv->ops->watches)
		unwatch_job(c, p, h->len);
}

/* ---- locks ---- */

static void
lock_reply(struct conn *c, uint32_t id, const struct mst_lock_rep *r)
{
	uint8_t buf[32];
	int n = mst_lock_rep_encode(r, buf, sizeof buf);

	assert(n > 0);
	conn_send(c, MST_OP_LOCK, MST_F_REPLY, 0, id, buf, (size_t)n);
}

/*
 * Send the replies the lock table owes to requests that waited. A send
 * that fails closes that connection, which frees its lock_conn and its
 * queued replies before the next is taken, so the loop stays valid.
 */
static void
locks_flush(struct server *srv)
{
	struct lock_done d;

	while (lock_table_next(srv->locks, &d)) {
		if (d.status == 0)
			lock_reply(d.ctx, d.req_id, &d.rep);
		else
			conn_reply_error(d.ctx, MST_OP_LOCK, d.req_id, d.status,
			    d.status == -EINTR ? "cancelled" : NULL);
	}
}

static void
on_locks(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	locks_flush(arg);
}

/* Flush the lock replies from the loop, not from the caller: conn_close
 * runs inside loops over other connections (notice fan-out) that a
 * failed send, closing one of them, would break. */
static void
locks_kick(struct server *srv)
{
	event_active(srv->ev_locks, EV_TIMEOUT, 0);
}

static void
do_lock(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct server *srv = c->srv;
	struct mst_lock_req q;
	struct mst_lock_rep r;
	int rc;

	if (srv->ops != NULL && srv->ops->locks) {
		c->elocks = 1;
		do_request(c, h, p);	/* decoded there, as a job */
		return;
	}
	rc = mst_lock_req_decode(&q, p, h->len);
	if (rc < 0) {
		conn_reply_error(c, h->op, h->id, rc, "malformed LOCK");
		return;
	}
	if (c->locks == NULL) {
		c->locks = lock_conn_new(srv->locks, c);
		if (c->locks == NULL) {
			conn_reply_error(c, h->op, h->id, -ENOMEM, NULL);
			return;
		}
	}
	rc = lock_request(c->locks, h->id, &q, &r);
	if (rc == 0)
		lock_reply(c, h->id, &r);
	else if (rc == -ENOLCK)
		conn_reply_error(c, h->op, h->id, rc, "too many locks or "
		    "waiting lock requests on this connection");
	else if (rc != LOCK_QUEUED)
		conn_reply_error(c, h->op, h->id, rc, NULL);
	/* Replies to the requests this one granted or cancelled. A send
	 * that fails closes only its own connection; if that is c,
	 * conn_input sees it closed and stops. */
	locks_flush(srv);
}

/* ---- handshake ---- */

/* A handshake violation: answer, then close once the answer is out. */
static void
refuse(struct conn *c, const struct mst_hdr *h, int err, const char *detail)
{
	log_debug("%s: %s id %u refused: %s", c->peer, mst_op_name(h->op),
	    h->id, detail);
	conn_reply_error(c, h->op, h->id, err, detail);
	conn_drain(c);
}

static void
do_hello(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct server *srv = c->srv;
	struct mst_hello_req q;
	struct mst_hello_rep r = {
		.version = MST_VERSION,
		.features = MST_FEAT_WATCH | MST_FEAT_SPOOL |
		    (srv->nkeys ? MST_FEAT_AUTH : 0) |
		    (server_stages(srv) ? MST_FEAT_STAGE : 0) |
		    (server_sole(srv) ? MST_FEAT_SOLE : 0),
		.max_body = srv->max_body,
		.server_id = srv->server_id,
		.server = mst_str_of(SERVER_NAME),
	};
	uint8_t buf[128 + sizeof SERVER_NAME];
	int n = mst_hello_req_decode(&q, p, h->len);

	if (n < 0) {
		refuse(c, h, n, "malformed HELLO");
		return;
	}
	if (q.min_version > MST_VERSION || q.max_version < MST_VERSION) {
		refuse(c, h, -EPROTONOSUPPORT, "this server speaks version 1");
		return;
	}
	if (q.max_frame < MST_FRAME_MIN) {
		refuse(c, h, -EINVAL, "max_frame below 65536");
		return;
	}
	if (getrandom(c->snonce, sizeof c->snonce, GRND_NONBLOCK) !=
	    (ssize_t)sizeof c->snonce) {
		log_err("%s: getrandom: %s", c->peer, strerror(errno));
		refuse(c, h, -EAGAIN, "no randomness for a nonce yet");
		return;
	}
	memcpy(c->cnonce, q.nonce, sizeof c->cnonce);
	memcpy(r.nonce, c->snonce, sizeof r.nonce);
	c->max_frame = q.max_frame < srv->max_frame ? q.max_frame :
	    srv->max_frame;
	r.max_frame = c->max_frame;
	n = mst_hello_rep_encode(&r, buf, sizeof buf);
	assert(n > 0);
	conn_send(c, MST_OP_HELLO, MST_F_REPLY, 0, h->id, buf, (size_t)n);
	if (srv->nkeys) {
		c->state = CS_AUTH;
		return;
	}
	c->state = CS_READY;
	conn_set_timeouts(c);
	log_debug("%s: ready (%.*s)", c->peer, (int)q.client.len, q.client.p);
}

static void
authfail_arm(struct server *srv)
{
	struct timeval tv = { .tv_sec = LIMIT_LOG_SECONDS };

	/* Cannot fail for a timer that was created. */
	(void)evtimer_add(srv->ev_authfail, &tv);
}

/* Report each peer whose window has passed (every peer when |all|), so
 * a guesser that stops is still reported. Returns whether counts remain. */
static int
authfail_report(struct server *srv, int all)
{
	time_t now = time(NULL);
	struct authfail *a;
	int more = 0;
	size_t i;

	for (i = 0; i < AUTHFAIL_SLOTS; i++) {
		a = &srv->authfail[i];
		if (a->unlogged == 0)
			continue;
		if (!all && now - a->logged < LIMIT_LOG_SECONDS) {
			more = 1;
			continue;
		}
		log_warn("authentication failed %llu more time(s) from %s in "
		    "the last %lld s", (unsigned long long)a->unlogged,
		    a->host, (long long)(now - a->logged));
		a->logged = now;
		a->unlogged = 0;
	}
	return more;
}

/* Once a minute while failures are counted. */
static void
on_authfail(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (authfail_report(srv, 0))
		authfail_arm(srv);
}

/*
 * Log a failed login, at most once per peer address per
 * LIMIT_LOG_SECONDS: a guesser must not fill the log. The failures in
 * between are counted and reported by on_authfail once the window has
 * passed, or with the next line about that peer if it comes first.
 * The table is small; a peer that finds no slot takes the one logged
 * longest ago, so a flood of addresses costs lines, never memory.
 */
static void
authfail_log(struct server *srv, const struct conn *c)
{
	struct authfail *a = NULL, *oldest = &srv->authfail[0];
	time_t now = time(NULL);
	size_t i;

	for (i = 0; i < AUTHFAIL_SLOTS && a == NULL; i++) {
		if (strcmp(srv->authfail[i].host, c->host) == 0)
			a = &srv->authfail[i];
		else if (srv->authfail[i].logged < oldest->logged)
			oldest = &srv->authfail[i];
	}
	if (a == NULL) {
		a = oldest;
		if (a->host[0] && a->unlogged)
			log_warn("authentication failed %llu more time(s) from "
			    "%s", (unsigned long long)a->unlogged, a->host);
		*a = (struct authfail){ .logged = 0 };
		snprintf(a->host, sizeof a->host, "%s", c->host);
	}
	if (a->logged != 0 && now - a->logged < LIMIT_LOG_SECONDS) {
		a->unlogged++;
		if (!evtimer_pending(srv->ev_authfail, NULL))
			authfail_arm(srv);
		return;
	}
	if (a->unlogged)
		log_warn("%s: authentication failed (and %llu more time(s) "
		    "from %s in the last %lld s)", c->peer,
		    (unsigned long long)a->unlogged, c->host,
		    (long long)(now - a->logged));
	else
		log_warn("%s: authentication failed", c->peer);
	a->logged = now;
	a->unlogged = 0;
}

/* The key |a| proves, or -1. Every key is tried, so the time taken does
 * not say which matched. */
static int
auth_match(const struct server *srv, const struct conn *c,
    const struct mst_auth *a)
{
	uint8_t want[MST_PROOF_LEN];
	int found = -1;
	size_t i;

	for (i = 0; i < srv->nkeys; i++) {
		mst_auth_proof(srv->keys[i].key, srv->keys[i].len, "client",
		    c->cnonce, c->snonce, want);
		if (mst_auth_equal(a->proof, want) && found < 0)
			found = (int)i;
	}
	explicit_bzero(want, sizeof want);
	return found;
}

static void
do_auth(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	struct server *srv = c->srv;
	struct mst_auth a;
	uint8_t buf[MST_PROOF_LEN];
	int n = mst_auth_decode(&a, p, h->len), k = -1;

	if (n >= 0)
		k = auth_match(srv, c, &a);
	if (k < 0) {
		authfail_log(srv, c);
		conn_reply_error(c, h->op, h->id, -EACCES,
		    "authentication failed");
		conn_drain(c);
		return;
	}
	/* The server proves the key the client used: a client that has
	 * only the old or only the new key checks against that one. */
	mst_auth_proof(srv->keys[k].key, srv->keys[k].len, "server",
	    c->cnonce, c->snonce, a.proof);
	n = mst_auth_encode(&a, buf, sizeof buf);
	conn_send(c, MST_OP_AUTH, MST_F_REPLY, 0, h->id, buf, (size_t)n);
	c->state = CS_READY;
	conn_set_timeouts(c);
	log_debug("%s: authenticated%s", c->peer, k > 0 ?
	    " with key_file_next" : "");
}

/* ---- frames ---- */

static void
conn_frame(struct conn *c, const struct mst_hdr *h, const uint8_t *p)
{
	switch (c->state) {
	case CS_HELLO:
		if (h->op == MST_OP_HELLO)
			do_hello(c, h, p);
		else
			refuse(c, h, -EPROTO, "HELLO expected");
		return;
	case CS_AUTH:
		if (h->op == MST_OP_AUTH)
			do_auth(c, h, p);
		else
			refuse(c, h, -EACCES, "AUTH required");
		return;
	case CS_READY:
		break;
	case CS_DRAIN:
	case CS_CLOSED:
		return;
	}
	switch (h->op) {
	case MST_OP_HELLO:
	case MST_OP_AUTH:
		conn_reply_error(c, h->op, h->id, -EPROTO,
		    "handshake already done");
		return;
	case MST_OP_PING:
		do_ping(c, h, p);
		return;
	case MST_OP_DATA:
		do_data(c, h, p);
		return;
	case MST_OP_UNWATCH:
		do_unwatch(c, h, p);
		return;
	case MST_OP_LOCK:
		do_lock(c, h, p);
		return;
	case MST_OP_SPOOL:
		do_spool(c, h, p);
		return;
	case MST_OP_NOTIFY:
		conn_reply_error(c, h->op, h->id, -EOPNOTSUPP,
		    "NOTIFY is sent by the server only");
		return;
	default:
		do_request(c, h, p);
		return;
	}
}

/*
 * Read up to |want| more bytes of a frame that is not whole yet (its
 * length already checked against max_frame), as much as the socket holds
 * now. libevent 2.1 reads a socket at most 4 KiB at a time
 * (EVBUFFER_MAX_READ, whatever bufferevent_set_max_single_read says),
 * one pass of the loop each: a 1 MiB body took 256 reads and callbacks,
 * and a copy to make the frame contiguous. Here the rest of the frame
 * goes into one chain with room for all of it (evbuffer_expand moves
 * the few bytes already there, and later calls find the room left), so
 * the frame's pullup copies nothing. Address space for a whole frame is
 * taken at its header, as the pullup took it before; pages are touched
 * only as bytes arrive. Plaintext sockets only: a TLS bufferevent reads
 * through OpenSSL. An end of input or an error is left to the
 * bufferevent's own next read, which reports it. Returns the bytes read,
 * or 0.
 */
static size_t
conn_read_more(struct conn *c, struct evbuffer *in, size_t want)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	struct evbuffer_iovec v;
	ssize_t n;

	if (c->tls || fd < 0 || want <= 4096)
		return 0;
	/* A bufferevent freezes the end of its input buffer; its own read
	 * thaws it the same way. */
	evbuffer_unfreeze(in, 0);
	n = 0;
	if (evbuffer_expand(in, want) == 0 &&
	    evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) == 1) {
		if (v.iov_len > want)
			v.iov_len = want;
		do
			n = recv(fd, v.iov_base, v.iov_len, MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		/* Not committed on failure: the reservation lapses. */
		v.iov_len = n > 0 ? (size_t)n : 0;
		if (n > 0 && evbuffer_commit_space(in, &v, 1) < 0)
			n = 0;
	}
	evbuffer_freeze(in, 0);
	return n > 0 ? (size_t)n : 0;
}

/* Take every complete frame out of the input buffer. */
static void
conn_input(struct conn *c)
{
	struct evbuffer *in;
	uint8_t hb[MST_HDR_LEN];
	struct mst_hdr h;
	unsigned char *frame;
	size_t avail;
	int rc;

	conn_ref(c);
	c->in_input = 1;
	while (c->reading && (c->state == CS_HELLO || c->state == CS_AUTH ||
	    c->state == CS_READY)) {
		in = bufferevent_get_input(c->bev);
		avail = evbuffer_get_length(in);
		if (avail < MST_HDR_LEN) {
			if (avail > 0 && c->frame_ms == 0)
				c->frame_ms = mono_ms();
			break;
		}
		evbuffer_copyout(in, hb, sizeof hb);
		/* Before HELLO the server's own maximum applies. */
		rc = mst_hdr_decode(&h, hb, sizeof hb, c->max_frame);
		if (rc < 0 && rc != -EOPNOTSUPP) {
			log_debug("%s: bad frame header: %s", c->peer,
			    strerror(-rc));
			conn_close(c, "protocol error");
			break;
		}
		if (h.flags & (MST_F_REPLY | MST_F_NOTICE)) {
			log_debug("%s: client sent a reply or notice frame",
			    c->peer);
			conn_close(c, "protocol error");
			break;
		}
		while (avail < MST_HDR_LEN + (size_t)h.len &&
		    conn_read_more(c, in, MST_HDR_LEN + (size_t)h.len -
		    avail) > 0)
			avail = evbuffer_get_length(in);
		if (avail < MST_HDR_LEN + (size_t)h.len) {
			if (c->frame_ms == 0)
				c->frame_ms = mono_ms();
			break;
		}
		frame = evbuffer_pullup(in, MST_HDR_LEN + (ssize_t)h.len);
		if (frame == NULL) {
			log_err("%s: out of memory reading a frame", c->peer);
			conn_close(c, NULL);
			break;
		}
		c->frame_ns = metrics_now_ns();
		if (rc == -EOPNOTSUPP && c->state == CS_READY) {
			/* The length is valid, so skip just this frame. Before
			 * HELLO or AUTH, conn_frame refuses it like any other
			 * request there (mstore-protocol(7), "Connection
			 * setup"). */
			conn_reply_error(c, h.op, h.id, -EOPNOTSUPP,
			    "unknown opcode");
		} else {
			conn_frame(c, &h, frame + MST_HDR_LEN);
		}
		if (c->state == CS_CLOSED)
			break;
		evbuffer_drain(in, MST_HDR_LEN + (size_t)h.len);
		c->frame_ms = 0;
		c->last_frame_ms = mono_ms();
	}
	c->in_input = 0;
	conn_update(c);
	conn_unref(c);
}

/* ---- libevent callbacks ---- */

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	if (conn_catch_up(arg) < 0)
		return;
	conn_input(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_update(arg);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int err = EVUTIL_SOCKET_ERROR();
	unsigned long tls_err;
	char buf[160];

	if (conn_catch_up(c) < 0)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
		log_info("%s: closing: replies unread for %d s", c->peer,
		    STALL_SECONDS);
		conn_close(c, NULL);
	} else if (what & BEV_EVENT_TIMEOUT) {
		conn_close(c, "read timeout");
	} else if (what & BEV_EVENT_ERROR) {
		tls_err = c->tls ? bufferevent_get_openssl_error(bev) : 0;
		if (tls_err != 0) {
			ERR_error_string_n(tls_err, buf, sizeof buf);
			log_info("%s: closing: TLS: %s", c->peer, buf);
			conn_close(c, NULL);
			return;
		}
		log_debug("%s: %s", c->peer, strerror(err));
		conn_close(c, "socket error");
	} else if (what & BEV_EVENT_EOF) {
		log_debug("%s: end of input", c->peer);
		conn_drain(c);
	}
}

/* The bufferevent wrote out all it held: engine threads may write
 * replies again (server_job_done). */
static void
conn_out_cb(struct evbuffer *b, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct conn *c = arg;

	if (info->n_deleted == 0 || evbuffer_get_length(b) > 0)
		return;
	pthread_mutex_lock(&c->omu);
	if (c->rest_len == 0)
		c->out_busy = 0;
	pthread_mutex_unlock(&c->omu);
}

static void
conn_new(struct server *srv, evutil_socket_t fd, const char *peer,
    const char *host, int local)
{
	struct conn *c = calloc(1, sizeof *c);
	SSL_CTX *tls = srv->listen ? listen_tls(srv->listen) : NULL;
	SSL *ssl;

	if (c != NULL)
		c->ev_timer = evtimer_new(srv->base, on_conn_timer, c);
	if (c == NULL || c->ev_timer == NULL) {
		log_err("accept %s: out of memory", peer);
		close(fd);
		free(c);
		return;
	}
	if (tls != NULL && !local) {
		/* A TLS listener speaks only TLS: bytes that are not a TLS
		 * handshake fail it, and the connection is closed. */
		ssl = SSL_new(tls);
		c->bev = ssl == NULL ? NULL : bufferevent_openssl_socket_new(
		    srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
		if (c->bev == NULL && ssl != NULL)
			SSL_free(ssl);
		if (c->bev != NULL) {
			/* A peer that closes without close_notify has sent
			 * whole frames or nothing: an end, not an attack. */
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
			c->tls = 1;
		}
	} else {
		c->bev = bufferevent_socket_new(srv->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (c->bev == NULL) {
		log_err("accept %s: out of memory", peer);
		close(fd);
		event_free(c->ev_timer);
		free(c);
		return;
	}
	c->srv = srv;
	c->refs = 1;
	c->state = CS_HELLO;
	pthread_mutex_init(&c->omu, NULL);
	c->dfd = -1;
	if (!c->tls && evbuffer_add_cb(bufferevent_get_output(c->bev),
	    conn_out_cb, c) != NULL) {
		c->early = 1;
		c->dfd = fd;
	}
	c->max_frame = srv->max_frame;
	c->local = local;
	c->token = srv->serial;		/* conn_accept numbered it: never 0 */
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	snprintf(c->host, sizeof c->host, "%s", host);
	c->accepted_ms = mono_ms();
	watch_conn_init(&c->watch, srv->watches, c, c->peer);
	LIST_INSERT_HEAD(&srv->conns, c, link);
	srv->nconns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUT_LOW, 0);
	bufferevent_set_max_single_read(c->bev, CONN_READ_MAX);
	conn_set_timeouts(c);
	bufferevent_enable(c->bev, EV_WRITE);
	set_reading(c, 1);
	conn_arm(c);
	log_debug("%s: connected", c->peer);
}

/* ---- the listeners' view of the server (listen.h) ---- */

static unsigned
conn_count(void *arg)
{
	const struct server *srv = arg;

	return srv->nconns;
}

static void
conn_accept(void *arg, evutil_socket_t fd, const char *addr,
    const char *host, int local)
{
	struct server *srv = arg;
	char peer[96];

	snprintf(peer, sizeof peer, "conn %llu (%s)",
	    (unsigned long long)++srv->serial, addr);
	metrics_accepted();
	conn_new(srv, fd, peer, host, local);
}

static const struct listen_ops conn_listen_ops = {
	.count = conn_count,
	.accept = conn_accept,
};

/* ---- signals and shutdown ---- */

static void
server_check_stop(struct server *srv)
{
	if (srv->stopping && srv->nconns == 0 && srv->njobs == 0)
		event_base_loopexit(srv->base, NULL);
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	log_warn("shutdown: gave up after %d s with %llu job(s) in flight "
	    "and %u connection(s) open", SERVER_DRAIN_SECONDS,
	    (unsigned long long)srv->njobs, srv->nconns);
	event_base_loopexit(srv->base, NULL);
}

static const char *
sig_name(evutil_socket_t sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" :
	    "signal";
}

static void
on_term(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	struct timeval drain = { .tv_sec = SERVER_DRAIN_SECONDS };
	struct conn *c, *next;

	(void)what;
	if (srv->stopping) {
		log_warn("%s again: stopping without waiting", sig_name(sig));
		event_base_loopbreak(srv->base);
		return;
	}
	srv->stopping = 1;
	log_info("%s: shutting down (%u connection(s), %llu job(s) in "
	    "flight)", sig_name(sig), srv->nconns,
	    (unsigned long long)srv->njobs);
	authfail_report(srv, 1);
	evtimer_del(srv->ev_authfail);
	listen_close(srv->listen);
	for (c = LIST_FIRST(&srv->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, link);	/* c may close and go */
		conn_drain(c);
	}
	evtimer_add(srv->ev_drain, &drain);
	server_check_stop(srv);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	int rc = log_reopen();

	(void)sig;
	(void)what;
	(void)arg;
	if (rc < 0)
		log_err("SIGHUP: reopening the log: %s", strerror(-rc));
	else
		log_info("SIGHUP: log reopened");
}

/* ---- public ---- */

int
server_tls(const struct server *s)
{
	return listen_tls(s->listen) != NULL;
}

int
server_new(const struct conf *c, const struct server_key *keys,
    size_t nkeys, struct server **out)
{
	struct server *srv = calloc(1, sizeof *srv);
	pthread_condattr_t ca;
	int rc = -ENOMEM;

	if (srv == NULL)
		return -ENOMEM;
	srv->efd = -1;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->fence_cv, &ca);
	pthread_condattr_destroy(&ca);
	LIST_INIT(&srv->conns);
	if (nkeys > SERVER_KEYS_MAX) {
		rc = -EINVAL;
		goto fail;
	}
	if (nkeys)
		memcpy(srv->keys, keys, nkeys * sizeof *keys);
	srv->nkeys = nkeys;
	srv->conn_mem_max = c->max_connection_memory;
	srv->conn_jobs_max = (unsigned)c->max_requests_per_connection;
	srv->handshake_timeout = c->handshake_timeout;
	srv->read_timeout = c->read_timeout;
	srv->idle_timeout = c->idle_timeout;
	srv->spool_timeout = c->spool_timeout;
	srv->max_frame = (uint32_t)c->max_frame;
	srv->max_body = c->max_message_size;
	if (getrandom(&srv->server_id, sizeof srv->server_id, 0) !=
	    (ssize_t)sizeof srv->server_id) {
		rc = -errno;
		log_err("getrandom: %s", strerror(-rc));
		goto fail;
	}
	srv->base = event_base_new();
	if (srv->base == NULL)
		goto fail;
	srv->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->efd < 0) {
		rc = -errno;
		log_err("eventfd: %s", strerror(-rc));
		goto fail;
	}
	srv->ev_done = event_new(srv->base, srv->efd, EV_READ | EV_PERSIST,
	    on_done, srv);
	srv->ev_term = evsignal_new(srv->base, SIGTERM, on_term, srv);
	srv->ev_int = evsignal_new(srv->base, SIGINT, on_term, srv);
	srv->ev_hup = evsignal_new(srv->base, SIGHUP, on_hup, srv);
	srv->ev_drain = evtimer_new(srv->base, on_drain_timeout, srv);
	srv->ev_authfail = evtimer_new(srv->base, on_authfail, srv);
	srv->ev_locks = event_new(srv->base, -1, 0, on_locks, srv);
	srv->locks = lock_table_new();
	srv->watches = watch_table_new(&conn_watch_io,
	    (unsigned)c->max_watches_per_connection);
	if (srv->ev_done == NULL || srv->ev_term == NULL ||
	    srv->ev_int == NULL || srv->ev_hup == NULL ||
	    srv->ev_drain == NULL || srv->ev_authfail == NULL ||
	    srv->ev_locks == NULL || srv->locks == NULL ||
	    srv->watches == NULL ||
	    event_add(srv->ev_done, NULL) < 0 ||
	    event_add(srv->ev_term, NULL) < 0 ||
	    event_add(srv->ev_int, NULL) < 0 ||
	    event_add(srv->ev_hup, NULL) < 0)
		goto fail;
	rc = listen_open(srv->base, c, &conn_listen_ops, srv, &srv->listen);
	if (rc < 0)
		goto fail;
	*out = srv;
	return 0;
fail:
	if (rc == -ENOMEM)
		log_err("starting the server: out of memory");
	server_free(srv);
	return rc;
}

void
server_set_engine(struct server *s, const struct engine_ops *ops,
    struct engine *e)
{
	s->ops = ops;
	s->eng = e;
}

struct event_base *
server_base(struct server *s)
{
	return s->base;
}

/* On the loop, at a scrape: what only the loop knows. */
void
server_metrics_live(void *arg, struct metrics_live *out)
{
	struct server *srv = arg;
	struct conn *c;

	*out = (struct metrics_live){
		.connections = srv->nconns,
		.jobs = srv->njobs,
	};
	LIST_FOREACH(c, &srv->conns, link) {
		out->watches += c->watch.n;
		if (c->locks != NULL) {
			out->locks += lock_conn_nlocks(c->locks);
			out->lock_waiters += lock_conn_nwaiters(c->locks);
		}
	}
}

const char *
server_addresses(const struct server *s)
{
	return s->listen ? listen_addresses(s->listen) : "";
}

int
server_run(struct server *s)
{
	if (event_base_dispatch(s->base) < 0) {
		log_err("event loop failed");
		return -EIO;
	}
	return 0;
}

void
server_free(struct server *s)
{
	struct job *j, *next;
	struct conn *c;

	if (s == NULL)
		return;
	/* Jobs the engine finished after the loop stopped: the conns they
	 * hold are released here, their replies dropped. */
	for (j = take_done(s); j != NULL; j = next) {
		next = j->next;
		c = j->conn;
		job_free(j);
		if (c == NULL)
			continue;	/* another server's notices */
		c->njobs--;
		s->njobs--;
		conn_unref(c);
	}
	s->stopping = 1;
	s->ops = NULL;		/* closed: no CLOSE_OWNER jobs any more */
	s->eng = NULL;
	while ((c = LIST_FIRST(&s->conns)) != NULL)
		conn_close(c, NULL);
	lock_table_free(s->locks);	/* every conn let go of it */
	watch_table_free(s->watches);	/* and of this */
	listen_free(s->listen);
	if (s->ev_done)
		event_free(s->ev_done);
	if (s->ev_term)
		event_free(s->ev_term);
	if (s->ev_int)
		event_free(s->ev_int);
	if (s->ev_hup)
		event_free(s->ev_hup);
	if (s->ev_drain)
		event_free(s->ev_drain);
	if (s->ev_authfail)
		event_free(s->ev_authfail);
	if (s->ev_locks)
		event_free(s->ev_locks);
	if (s->efd >= 0)
		close(s->efd);
	if (s->base)
		event_base_free(s->base);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->fence_cv);
	explicit_bzero(s->keys, sizeof s->keys);
	free(s);
}
