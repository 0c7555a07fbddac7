/*
 * mconn.c - the mount's connection to the store (see mconn.h). Owns one
 * socket to one server of the list, the table of outstanding requests
 * (with the bytes of those that may be sent again), a connection thread
 * that reads every frame, completes requests and reconnects, and a timer
 * thread that fails requests past their deadline. Never interprets a
 * payload other than NOTIFY, and never keeps a caller past its request's
 * deadline: a request either gets its reply or -EIO by then.
 *
 * Threads:
 *   callers  any thread: in state UP a caller writes its own request on
 *            the socket, holding send_mu for all of its frames.
 *   conn     connects (HELLO/AUTH through mstclient), reads and dispatches
 *            frames, fails or retains requests when the connection drops,
 *            reconnects, runs opts->up, re-sends what waits in the send
 *            queue, and sends what callbacks submitted (a callback's
 *            request is never written on the thread that runs callbacks
 *            while it could block the reading of replies).
 *   timer    fails requests whose deadline has passed.
 * Callbacks run on conn or timer (or in mconn_free) with no lock held;
 * replies (and notices) that conn reads while it writes are dispatched
 * once it has let go of send_mu (flush_queue).
 *
 * Connection states (c->state):
 *
 *           connect, HELLO,             up() run,
 *           AUTH ok                     queue written
 *     DOWN -----------------> REPLAY ------------------> UP
 *     |  ^                       |                        |
 *     |  |  EOF, read or write error, bad frame           |
 *     |  +-----------------------+------------------------+
 *     |  |
 *     +--+ attempt failed: wait 50 ms doubling to 1 s, next server
 *
 *   In DOWN and REPLAY new requests wait in the send queue (until their
 *   deadline at most); in UP callers send directly. Requests that were
 *   (even partly) written when the connection drops fail with -EIO unless
 *   submitted with |retry|; those go back to the queue, keeping their
 *   bytes and their id, and are sent again after up() has run.
 *
 * Request life: queued (in sq, sent_gen 0) -> written (sent_gen = gen)
 * -> completed by its reply, by its deadline or by a drop. A request that
 * times out after it was written stays in the id table as a "zombie" until
 * its reply ends or the connection drops, so that its id is not reused
 * while the server may still answer it (mstore-protocol(7), "Request ids").
 *
 * References: the id table holds one; a writer and whoever completes a
 * request (and runs its callback) hold one each while they use it. The
 * last one frees the request.
 *
 * The connection is an mst_client kept open after HELLO/AUTH: every byte
 * goes through its transport (mst_client_read/writev), plaintext or TLS
 * alike. An SSL object cannot be read and written by two threads at
 * once, so each transport call holds io_mu (a leaf lock, never held
 * across a wait).
 *
 * A connection attempt (connect, HELLO, AUTH) blocks the conn thread for
 * at most MCONN_CONNECT_MAX ms, which bounds how long mconn_new and
 * mconn_free can take per server.
 *
 * Lock order: c->send_mu, then c->mu. A sync waiter's w->mu is taken
 * alone. No callback runs while its thread holds send_mu or mu: the
 * callers' locks come before both. Only the conn thread changes c->fd
 * and closes the socket, and it holds both locks to do so, so a writer
 * (holding send_mu) never writes to a descriptor number that was closed
 * and reused.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "mconn.h"
#include "mstat.h"
#include "mstclient.h"
#include "mstreader.h"

#define MCONN_TIMEOUT_DEFAULT	10000	/* ms per request */
#define MCONN_CONNECT_MAX	2000	/* ms for connect + HELLO + AUTH */
#define MCONN_BACKOFF_MIN	50	/* ms between attempts, doubling */
#define MCONN_BACKOFF_MAX	1000
#define MCONN_BUCKETS		1024u	/* id table; a power of two */
#define MCONN_RXBUF		(64u << 10)	/* bytes per recv(2) */
#define MCONN_REPLY_MAX		(1ull << 30)	/* bytes in one reply */
#define MCONN_FLUSH_RETRY	5	/* ms, see conn_serve */
#define MCONN_LOG_GAP		1000	/* ms between two lines of one kind */
/* A reply slower than this is logged (ms; 0: half the request timeout),
 * so that a store that nears the timeout is seen before it is reached. */
#ifndef MCONN_SLOW_MS
#define MCONN_SLOW_MS		0
#endif

enum mstate {
	MC_DOWN,
	MC_REPLAY,
	MC_UP,
};

enum sqname {
	SQ_NONE,
	SQ_MAIN,
	SQ_UP,			/* submitted by up(): sent first */
};

struct mreq {
	/* Set before the request is published, then read-only. */
	uint32_t id;
	uint8_t op;
	uint8_t retry;
	uint8_t untimed;	/* no deadline: a waiting LOCK */
	uint8_t borrow;		/* |body| is the caller's (MCONN_BORROW) */
	const uint8_t *body;	/* in |buf| after the head, or the caller's */
	int64_t deadline;	/* CLOCK_MONOTONIC ms; INT64_MAX if untimed */
	int64_t start_ms;	/* submitted at (for the slow-reply log) */
	mconn_cb *cb;
	void *arg;
	size_t hlen, blen;

	atomic_int refs;

	/* All guarded by c->mu. */
	struct mreq *hnext;		/* id table chain */
	TAILQ_ENTRY(mreq) all;		/* c->all while not completed */
	TAILQ_ENTRY(mreq) sq;		/* c->sq or c->sq_up */
	struct mreq *dnext;		/* completion batch (owner's only) */
	uint8_t in_all;
	uint8_t in_sq;			/* enum sqname */
	uint8_t writing;		/* a writer is using |buf| */
	uint8_t zombie;			/* completed; id still outstanding */
	uint8_t done;			/* callback owns |rep| */
	uint8_t cb_held;		/* completed while a writer sends the
					 * borrowed body: the writer calls back
					 * once it let go of send_mu */
	uint64_t sent_gen;		/* 0, or c->gen it was written on */
	uint8_t *buf;			/* head then body; NULL once unneeded */
	struct mreply rep;		/* frames gathered so far */
	size_t fcap;			/* rep.frames allocated */
	uint64_t rep_bytes;
};

TAILQ_HEAD(mreq_list, mreq);

/* One kind of log line, at most one per MCONN_LOG_GAP ms; the lines left
 * out meanwhile are counted in the next. */
struct loglimit {
	int64_t at_ms;		/* last line, or 0 */
	unsigned skipped;	/* events not logged since */
};

/* A whole frame read while the conn thread held send_mu, kept to be
 * dispatched once it has let go (see flush_queue). */
struct rx_kept {
	struct rx_kept *next;
	struct mst_hdr h;
	uint8_t *pay;
};

/* Frame reader state; the conn thread's own. */
struct rx {
	uint8_t *buf;		/* MCONN_RXBUF bytes read, [off, len) unused */
	size_t off, len;
	struct mst_reader rd;	/* the frame being read */
	int eof;		/* the server closed the connection */
	int keep;		/* keep whole frames instead of dispatching */
	struct rx_kept *kept, *kept_last;	/* in arrival order */
};

struct mconn {
	/* Set by mconn_new, then read-only. */
	char **servers;
	size_t nservers;
	uint8_t *key;
	size_t keylen;
	char *name;
	int tls;
	char *cafile;
	int timeout_ms;
	mconn_notice_fn *notice;
	mconn_up_fn *up;
	void *arg;
	int wakefd;			/* eventfd: wakes the conn thread */
	pthread_t conn_thread, timer_thread;

	pthread_mutex_t send_mu;	/* one whole request on the socket */
	pthread_mutex_t io_mu;		/* one transport call on |cl| */

	pthread_mutex_t mu;
	pthread_cond_t timer_cv;	/* guarded by mu: timer wake-up */
	pthread_cond_t state_cv;	/* guarded by mu: first_done */
	enum mstate state;		/* guarded by mu */
	int fd;				/* guarded by mu and send_mu */
	struct mst_client *cl;		/* guarded like fd; owns fd */
	uint64_t gen;			/* guarded by mu: connections made */
	uint32_t max_frame;		/* guarded by mu */
	uint64_t max_body;		/* guarded by mu */
	uint32_t features;		/* guarded by mu: the server's HELLO */
	uint32_t next_id;		/* guarded by mu */
	int stopping;			/* guarded by mu */
	int first_done;			/* guarded by mu */
	int in_up;			/* guarded by mu: up() is running */
	int write_err;			/* guarded by mu: why a writer cut
					   the connection, for the log */
	struct loglimit slow_log;	/* guarded by mu: slow replies */
	struct loglimit eio_log;	/* guarded by mu: EIO from the store */
	struct mreq *tab[MCONN_BUCKETS];	/* guarded by mu */
	struct mreq_list all;		/* guarded by mu: deadline order */
	struct mreq_list sq, sq_up;	/* guarded by mu: to be written */

	/* Set by the conn thread before it reads the socket, cleared once
	 * every whole frame it read has been dispatched (notices applied,
	 * callbacks run): see mconn_rx_quiet. */
	atomic_int rx_busy;
	/* Bytes the conn thread has read from the transport (guarded by
	 * io_mu; the conn thread reads its own), and how many of them it
	 * had read when it last finished dispatching every whole frame
	 * (guarded by mu; rx_cv, with mu, says it moved): see
	 * mconn_rx_settle. */
	uint64_t rx_in;
	uint64_t rx_done;
	int rx_waiters;			/* guarded by mu */
	pthread_cond_t rx_cv;

	/* The conn thread's own. */
	struct rx rx;
	uint32_t rx_max_frame;
	size_t server;			/* index being tried or used */
	int logged_down;
	int64_t up_since;
};

/*
 * The one place mconn logs; the mount may redirect it. Logged: connection
 * losses and recoveries, one line each, and every way a request ends in
 * EIO (a deadline, a lost connection, a server judged down, the store's
 * own EIO), so that an EIO a program sees can be told apart by the log;
 * and replies that come late, before they reach the deadline.
 */
static void
mconn_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	flockfile(stderr);
	fputs("mount.mstore: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail on Linux. */
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether a line of kind |l| may go out now; *skipped gets the number
 * of events left out since the last one. Called with c->mu held. */
static int
log_allowed(struct loglimit *l, int64_t now, unsigned *skipped)
{
	if (l->at_ms != 0 && now - l->at_ms < MCONN_LOG_GAP) {
		l->skipped++;
		return 0;
	}
	*skipped = l->skipped;
	l->skipped = 0;
	l->at_ms = now;
	return 1;
}

static const char *
op_str(unsigned op)
{
	const char *name = mst_op_name(op);

	return name ? name : "request";
}

static struct timespec
ms_to_ts(int64_t ms)
{
	struct timespec ts = {
		.tv_sec = ms / 1000,
		.tv_nsec = (ms % 1000) * 1000000,
	};

	return ts;
}

/* How long writing |r| may take: its deadline, or for an untimed request
 * the ordinary timeout from now (the wait for the reply is unbounded,
 * putting it on the wire is not). */
static int64_t
write_deadline(const struct mconn *c, const struct mreq *r)
{
	return r->untimed ? now_ms() + c->timeout_ms : r->deadline;
}

static int
on_own_thread(struct mconn *c)
{
	pthread_t self = pthread_self();

	return pthread_equal(self, c->conn_thread) ||
	    pthread_equal(self, c->timer_thread);
}

static void
wake(struct mconn *c)
{
	uint64_t one = 1;

	/* Only fails when the counter is saturated: it is awake anyway. */
	(void)!write(c->wakefd, &one, sizeof one);
}

static void
drain_wake(struct mconn *c)
{
	uint64_t n;

	/* Non-blocking eventfd: EAGAIN when already drained. */
	(void)!read(c->wakefd, &n, sizeof n);
}

void
mreply_free(struct mreply *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nframes; i++)
		free(r->frames[i].p);
	free(r->frames);
	r->frames = NULL;
	r->nframes = 0;
}

/* --- requests and the id table --- */

static void
req_free(struct mreq *r)
{
	free(r->buf);
	if (!r->done)
		mreply_free(&r->rep);
	free(r);
}

static void
req_ref(struct mreq *r)
{
	atomic_fetch_add(&r->refs, 1);
}

static void
req_unref(struct mreq *r)
{
	if (atomic_fetch_sub(&r->refs, 1) == 1)
		req_free(r);
}

static struct mreq **
tab_slot(struct mconn *c, uint32_t id)
{
	struct mreq **pp = &c->tab[id & (MCONN_BUCKETS - 1)];

	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->hnext;
	return pp;
}

/* Remove |r| from the id table; the table's reference goes to the caller. */
static void
tab_del(struct mconn *c, struct mreq *r)
{
	struct mreq **pp = tab_slot(c, r->id);

	if (*pp == r)
		*pp = r->hnext;
	r->hnext = NULL;
}

/* A fresh id, never 0, not outstanding. */
static uint32_t
new_id(struct mconn *c)
{
	do {
		if (++c->next_id == 0)
			c->next_id = 1;
	} while (*tab_slot(c, c->next_id) != NULL);
	return c->next_id;
}

static void
sq_del(struct mconn *c, struct mreq *r)
{
	if (r->in_sq == SQ_MAIN)
		TAILQ_REMOVE(&c->sq, r, sq);
	else if (r->in_sq == SQ_UP)
		TAILQ_REMOVE(&c->sq_up, r, sq);
	r->in_sq = SQ_NONE;
}

/* Release |buf| unless a writer is using it (it releases it then). */
static void
buf_release(struct mreq *r)
{
	if (r->writing)
		return;
	free(r->buf);
	r->buf = NULL;
}

/*
 * Take |r| out of the running with status |status| and add it to the
 * completion batch |*done|, whose owner runs the callback. When the
 * server may still answer it (|outstanding|), it stays in the id table
 * as a zombie and the batch takes a reference of its own; otherwise the
 * table's reference passes to the batch. Called with c->mu held.
 */
static void
req_finish(struct mconn *c, struct mreq *r, int status, int outstanding,
    struct mreq **done)
{
	if (r->in_all)
		TAILQ_REMOVE(&c->all, r, all);
	r->in_all = 0;
	sq_del(c, r);
	if (status != 0)
		mreply_free(&r->rep);
	r->rep.status = status;
	r->done = 1;
	buf_release(r);
	if (outstanding) {
		r->zombie = 1;
		req_ref(r);
	} else {
		tab_del(c, r);
	}
	/* The caller may free a borrowed body once called back: not while
	 * a writer still sends from it. The batch's reference waits too. */
	if (r->borrow && r->writing) {
		r->cb_held = 1;
		return;
	}
	r->dnext = *done;
	*done = r;
}

/* Run the callbacks of a completion batch. No lock held. */
static void
run_done(struct mreq *done)
{
	struct mreq *r, *next;

	/* Oldest first: the batch was built by prepending. */
	for (r = NULL; done != NULL; done = next) {
		next = done->dnext;
		done->dnext = r;
		r = done;
	}
	for (; r != NULL; r = next) {
		next = r->dnext;
		r->cb(r->arg, &r->rep);
		req_unref(r);
	}
}

/* --- writing --- */

/*
 * The one place that writes to the socket: handles EINTR, EAGAIN and
 * short writes, and gives up at |deadline| (-ETIMEDOUT). Adds the bytes
 * written to *wrote (at least 1 once a TLS write was left waiting, as
 * part of a record may be out). On the conn thread (|serve|) it keeps reading and
 * dispatching replies while it waits, so that neither side can block the
 * other with full socket buffers, and stops when mconn_free wakes it.
 */
static int rx_read(struct mconn *c);
static int rx_release(struct mconn *c);

static int
io_writev(struct mconn *c, struct mst_client *cl, struct iovec *iov, int n,
    int64_t deadline, int serve, size_t *wrote)
{
	int fd = mst_client_fd(cl);
	struct pollfd p[2];
	int64_t left;
	ssize_t w;
	short ev;
	int rc, stop;

	while (n > 0) {
		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		pthread_mutex_lock(&c->io_mu);
		w = mst_client_writev(cl, iov, n, &ev);
		pthread_mutex_unlock(&c->io_mu);
		if (w > 0) {
			*wrote += (size_t)w;
			while (n > 0 && (size_t)w >= iov->iov_len) {
				w -= (ssize_t)iov->iov_len;
				iov++;
				n--;
			}
			if (n > 0) {
				iov->iov_base = (uint8_t *)iov->iov_base + w;
				iov->iov_len -= (size_t)w;
			}
			continue;
		}
		if (w != -EAGAIN)
			return w < 0 ? (int)w : -EIO;
		/* A TLS write left waiting may have sent part of a record:
		 * count the stream as touched, so that giving up drops it. */
		if (*wrote == 0 && mst_client_tls(cl))
			*wrote = 1;
		if (ev == 0)
			continue;
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		p[0] = (struct pollfd){ .fd = fd, .events = ev };
		p[1] = (struct pollfd){ .fd = c->wakefd, .events = POLLIN };
		if (serve)
			p[0].events |= POLLIN;
		rc = poll(p, serve ? 2 : 1, left > INT32_MAX ? INT32_MAX :
		    (int)left);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc <= 0)
			continue;
		if (serve && (p[1].revents & POLLIN)) {
			drain_wake(c);
			pthread_mutex_lock(&c->mu);
			stop = c->stopping;
			pthread_mutex_unlock(&c->mu);
			if (stop)
				return -ECANCELED;
		}
		if (serve && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			rc = rx_read(c);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/*
 * Write request |r| as frames of at most |mf| payload bytes: the first
 * frame (head and as much body as fits), then DATA frames; MORE on all
 * but the last.
 */
static int
send_req(struct mconn *c, struct mst_client *cl, uint32_t mf, struct mreq *r,
    int serve, size_t *wrote)
{
	struct mst_hdr h = {
		.version = MST_VERSION,
		.op = r->op,
		.id = r->id,
	};
	uint8_t hb[MST_HDR_LEN];
	struct iovec iov[3];
	const uint8_t *p = r->body;
	size_t left = r->blen, chunk, first = r->hlen;
	int rc;

	do {
		chunk = left < mf - first ? left : mf - first;
		left -= chunk;
		h.len = (uint32_t)(first + chunk);
		h.flags = left > 0 ? MST_F_MORE : 0;
		rc = mst_hdr_encode(&h, hb, sizeof hb);
		if (rc < 0)
			return rc;
		iov[0] = (struct iovec){ .iov_base = hb, .iov_len = sizeof hb };
		iov[1] = (struct iovec){ .iov_base = r->buf,
		    .iov_len = first };
		iov[2] = (struct iovec){ .iov_base = (void *)p,
		    .iov_len = chunk };
		rc = io_writev(c, cl, iov, 3, write_deadline(c, r), serve,
		    wrote);
		p += chunk;
		first = 0;
		h.op = MST_OP_DATA;
	} while (rc == 0 && left > 0);
	return rc;
}

/*
 * Take the first queued request for writing. Called with both locks
 * held; returns NULL when the queue is empty.
 */
static struct mreq *
write_begin(struct mconn *c, struct mreq *r)
{
	if (r == NULL)
		r = TAILQ_FIRST(&c->sq_up);
	if (r == NULL)
		r = TAILQ_FIRST(&c->sq);
	if (r == NULL)
		return NULL;
	sq_del(c, r);
	r->sent_gen = c->gen;
	r->writing = 1;
	req_ref(r);
	return r;
}

/*
 * Account for a finished write of |r| (result |rc|, |wrote| bytes). A
 * write that failed after some bytes left the stream mid-request: the
 * socket is shut down so that the conn thread drops the connection. A
 * write that timed out before its first byte sent nothing: the request
 * is unsent again (and past its deadline, so the timer fails it).
 * Called holding send_mu, so c->fd is the socket that was written.
 *
 * Returns 1 when |r| was completed while it was being written (its
 * callback was held back, see req_finish): the caller runs it with
 * held_done once it has let go of send_mu, never before. A callback may
 * wait for a lock of the mount's, and a thread holding that lock may be
 * waiting for send_mu to send a request of its own (a CLOSE sent under
 * the mount's lock): the two would wait for each other until that
 * request's deadline. Otherwise 0, and the writer's reference is gone.
 */
static int
write_end(struct mconn *c, struct mreq *r, int rc, size_t wrote)
{
	int unsent = rc == -ETIMEDOUT && wrote == 0, call = 0;

	if (rc < 0 && !unsent)
		(void)shutdown(c->fd, SHUT_RDWR);	/* conn thread logs */
	pthread_mutex_lock(&c->mu);
	if (rc < 0 && !unsent && c->write_err == 0)
		c->write_err = rc;
	r->writing = 0;
	if (!r->retry || r->done)
		buf_release(r);
	if (r->cb_held) {	/* completed meanwhile (req_finish) */
		r->cb_held = 0;
		call = 1;
	}
	if (unsent) {
		r->sent_gen = 0;
		if (r->zombie) {
			r->zombie = 0;
			tab_del(c, r);
			req_unref(r);	/* the table's */
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (!call)
		req_unref(r);	/* the writer's */
	return call;
}

/* The callback write_end held back; send_mu not held. */
static void
held_done(struct mreq *r)
{
	r->cb(r->arg, &r->rep);
	req_unref(r);		/* the batch's, held by req_finish */
	req_unref(r);		/* the writer's */
}

/*
 * The conn thread writes everything queued: in REPLAY the requests
 * retained over a reconnection and those submitted meanwhile, after
 * up(); in UP what callbacks submitted. Ends REPLAY when the queue is
 * empty, atomically with the check, so no request is left behind.
 * With |try| (in UP) it does not wait for a caller's write to end:
 * waiting would stop it reading replies, which the server may need
 * before it reads on (-EBUSY; the caller tries again soon).
 *
 * While a write waits for room it reads on (io_writev), holding send_mu:
 * the frames it reads are kept, and dispatched, callbacks and notices
 * included, only once send_mu is let go. A callback may wait for a lock
 * of the mount's whose holder waits for send_mu to send (a CLOSE sent
 * under the mount's lock); run here, each would wait for the other until
 * that request's deadline, with no reply read meanwhile.
 */
static int
flush_queue(struct mconn *c, int try)
{
	struct mreq *r, *held = NULL, **held_tail = &held;
	struct mst_client *cl;
	size_t wrote;
	uint32_t mf;
	int rc = 0, drc;

	if (!try)
		pthread_mutex_lock(&c->send_mu);
	else if (pthread_mutex_trylock(&c->send_mu) != 0)
		return -EBUSY;
	c->rx.keep = 1;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		if (c->stopping) {
			pthread_mutex_unlock(&c->mu);
			rc = -ECANCELED;
			break;
		}
		r = write_begin(c, NULL);
		if (r == NULL) {
			if (c->state == MC_REPLAY)
				c->state = MC_UP;
			pthread_mutex_unlock(&c->mu);
			break;
		}
		cl = c->cl;
		mf = c->max_frame;
		pthread_mutex_unlock(&c->mu);
		wrote = 0;
		rc = send_req(c, cl, mf, r, 1, &wrote);
		if (write_end(c, r, rc, wrote)) {
			r->dnext = NULL;	/* in no batch: see req_finish */
			*held_tail = r;
			held_tail = &r->dnext;
		}
		if (rc < 0 && rc != -ETIMEDOUT)
			break;
		if (rc == -ETIMEDOUT && wrote > 0)
			break;
		rc = 0;
	}
	pthread_mutex_unlock(&c->send_mu);
	drc = rx_release(c);
	while ((r = held) != NULL) {
		held = r->dnext;
		held_done(r);
	}
	return rc < 0 ? rc : drc;
}

static int
queue_pending(struct mconn *c)
{
	int any;

	pthread_mutex_lock(&c->mu);
	any = c->state == MC_UP &&
	    (!TAILQ_EMPTY(&c->sq) || !TAILQ_EMPTY(&c->sq_up));
	pthread_mutex_unlock(&c->mu);
	return any;
}

/* --- reading --- */

/* Append one reply frame's payload to |r|; takes ownership of |p|. */
static int
rep_append(struct mreq *r, uint8_t *p, size_t len)
{
	struct mreply_frame *f;
	size_t cap;

	if (r->rep.nframes == r->fcap) {
		cap = r->fcap ? r->fcap * 2 : 2;
		f = realloc(r->rep.frames, cap * sizeof *f);
		if (f == NULL)
			return -ENOMEM;
		r->rep.frames = f;
		r->fcap = cap;
	}
	r->rep.frames[r->rep.nframes++] = (struct mreply_frame){
		.p = p,
		.len = len,
	};
	r->rep_bytes += len;
	return 0;
}

static int
rx_notice(struct mconn *c, const struct mst_hdr *h, uint8_t *pay)
{
	struct mst_notify n;
	int rc;

	if (h->id != 0 || h->op != MST_OP_NOTIFY || h->status != 0 ||
	    (h->flags & (MST_F_REPLY | MST_F_MORE))) {
		free(pay);
		return -EPROTO;
	}
	rc = mst_notify_decode(&n, pay, h->len);
	if (rc >= 0)
		mstat_add(MS_NOTICES, 1);
	if (rc >= 0 && c->notice != NULL)
		c->notice(c->arg, &n);
	if (rc < 0)
		mconn_log("a NOTIFY that does not decode was refused (%s); "
		    "dropping the connection", strerror(-rc));
	free(pay);
	return rc < 0 ? rc : 0;
}

/* What rx_frame logs once it has let go of c->mu. */
enum rx_note {
	RX_QUIET,
	RX_EIO,			/* the store answered EIO */
	RX_UNKNOWN,		/* a status this mount does not know */
	RX_TOOBIG,		/* a reply over MCONN_REPLY_MAX */
};

static int64_t
slow_ms(const struct mconn *c)
{
	return MCONN_SLOW_MS > 0 ? MCONN_SLOW_MS : c->timeout_ms / 2;
}

/*
 * Dispatch one complete frame; takes ownership of |pay|. Returns 0, or a
 * negative errno when the frame breaks the protocol (the connection is
 * then dropped). Every EIO it causes is logged (at most one line a
 * second of each kind), and so is a reply that came late.
 */
static int
rx_frame(struct mconn *c, const struct mst_hdr *h, uint8_t *pay)
{
	struct mreq *r, *done = NULL;
	int more = (h->flags & MST_F_MORE) != 0, rc = 0, err, finished = 0;
	enum rx_note note = RX_QUIET;
	unsigned skipped = 0, slow_skipped = 0;
	int64_t now = 0, took = -1;

	if (h->flags & MST_F_NOTICE)
		return rx_notice(c, h, pay);
	pthread_mutex_lock(&c->mu);
	r = *tab_slot(c, h->id);
	if (!(h->flags & MST_F_REPLY) || h->id == 0 || r == NULL ||
	    r->sent_gen != c->gen || r->op != h->op ||
	    (h->status != 0 && more)) {
		rc = -EPROTO;
	} else if (r->zombie) {
		if (!more) {
			r->zombie = 0;
			tab_del(c, r);
			req_unref(r);
		}
	} else if (h->status != 0) {
		err = mst_status_to_errno(h->status);
		if (err == EIO && log_allowed(&c->eio_log, now_ms(), &skipped))
			note = h->status == MST_S_EIO ? RX_EIO : RX_UNKNOWN;
		finished = 1;
	} else if (r->rep_bytes + h->len > MCONN_REPLY_MAX) {
		note = RX_TOOBIG;
		err = EIO;
		finished = 1;
	} else if (rep_append(r, pay, h->len) < 0) {
		err = ENOMEM;
		finished = 1;
	} else {
		pay = NULL;
		err = 0;
		finished = !more;
	}
	if (finished) {
		/* How long it took, before req_finish lets another thread
		 * run the callback (and free |r|). */
		if (!r->untimed) {
			now = now_ms();
			took = now - r->start_ms;
			if (took < slow_ms(c) || !log_allowed(&c->slow_log, now,
			    &slow_skipped))
				took = -1;
		}
		req_finish(c, r, -err, err != 0 && more, &done);
	}
	pthread_mutex_unlock(&c->mu);
	if (note == RX_EIO || note == RX_UNKNOWN)
		mconn_log("the store at %s answered a %s with %s: EIO "
		    "(%u more such answers not logged before it)",
		    c->servers[c->server], op_str(h->op), note == RX_EIO ?
		    "EIO" : "a status this mount does not know", skipped);
	else if (note == RX_TOOBIG)
		mconn_log("the store at %s answered a %s with more than %llu "
		    "bytes: EIO", c->servers[c->server], op_str(h->op),
		    (unsigned long long)MCONN_REPLY_MAX);
	if (took >= 0)
		mconn_log("the store at %s answered a %s after %lld ms (the "
		    "timeout is %d ms; %u more late answers not logged before "
		    "it)", c->servers[c->server], op_str(h->op),
		    (long long)took, c->timeout_ms, slow_skipped);
	free(pay);
	run_done(done);
	return rc;
}

/* Keep a whole frame for rx_release; takes ownership of |pay|. */
static int
rx_keep(struct rx *x, const struct mst_hdr *h, uint8_t *pay)
{
	struct rx_kept *k = malloc(sizeof *k);

	if (k == NULL) {
		free(pay);
		return -ENOMEM;
	}
	*k = (struct rx_kept){ .h = *h, .pay = pay };
	if (x->kept_last)
		x->kept_last->next = k;
	else
		x->kept = k;
	x->kept_last = k;
	return 0;
}

/* Stop keeping frames, and dispatch the kept ones in the order they came.
 * Returns 0, or the first frame's error that breaks the protocol (the
 * rest are dropped with the connection, as rx_read drops what follows
 * such a frame). */
/* Every whole frame read so far is dispatched: waiters in
 * mconn_rx_settle learn how far. The conn thread only. */
static void
rx_passed(struct mconn *c)
{
	atomic_store(&c->rx_busy, 0);
	pthread_mutex_lock(&c->mu);
	c->rx_done = c->rx_in;
	if (c->rx_waiters > 0)
		pthread_cond_broadcast(&c->rx_cv);
	pthread_mutex_unlock(&c->mu);
}

static int
rx_release(struct mconn *c)
{
	struct rx *x = &c->rx;
	struct rx_kept *k;
	int rc = 0;

	x->keep = 0;
	while ((k = x->kept) != NULL) {
		x->kept = k->next;
		if (rc == 0)
			rc = rx_frame(c, &k->h, k->pay);
		else
			free(k->pay);
		free(k);
	}
	x->kept_last = NULL;
	rx_passed(c);
	return rc;
}

/* No decrypted bytes wait in the transport (always so in plaintext). */
static int
rx_drained(struct mconn *c)
{
	size_t more;

	pthread_mutex_lock(&c->io_mu);
	more = mst_client_pending(c->cl);
	pthread_mutex_unlock(&c->io_mu);
	return more == 0;
}

/* Feed buffered bytes to the frame reader; dispatch a frame when whole
 * (or keep it, while the conn thread holds send_mu). */
static int
rx_consume(struct mconn *c)
{
	struct rx *x = &c->rx;
	struct mst_hdr h;
	size_t used;
	uint8_t *pay;
	int rc;

	rc = mst_reader_feed(&x->rd, c->rx_max_frame, x->buf + x->off,
	    x->len - x->off, &used, &h, &pay);
	x->off += used;
	if (rc <= 0)
		return rc;
	if (x->keep)
		return rx_keep(x, &h, pay);
	/* The last frame read so far, and a reply: every notice read was
	 * applied already, so the connection is quiet before the reply's
	 * callback wakes its caller (whose next lookup may ask). */
	if (x->off == x->len && !(h.flags & MST_F_NOTICE) && rx_drained(c))
		atomic_store(&c->rx_busy, 0);
	return rx_frame(c, &h, pay);
}

/* Read what the socket has (once; with TLS, until no decrypted bytes
 * wait, as poll(2) cannot see those) and dispatch every whole frame. */
static int
rx_read(struct mconn *c)
{
	struct rx *x = &c->rx;
	size_t more;
	ssize_t r;
	short ev;
	int rc;

	atomic_store(&c->rx_busy, 1);
	do {
		pthread_mutex_lock(&c->io_mu);
		r = mst_client_read(c->cl, x->buf, MCONN_RXBUF, &ev);
		if (r > 0)
			c->rx_in += (uint64_t)r;
		pthread_mutex_unlock(&c->io_mu);
		if (r == -ECONNRESET) {
			x->eof = 1;
			return r;
		}
		if (r == -EAGAIN) {
			if (!x->keep)
				rx_passed(c);
			return 0;
		}
		if (r < 0)
			return (int)r;
		x->off = 0;
		x->len = (size_t)r;
		while (x->off < x->len) {
			rc = rx_consume(c);
			if (rc < 0)
				return rc;
		}
		pthread_mutex_lock(&c->io_mu);
		more = mst_client_pending(c->cl);
		pthread_mutex_unlock(&c->io_mu);
	} while (more > 0);
	if (!x->keep)	/* else rx_release dispatches, then clears */
		rx_passed(c);
	return 0;
}

static void
rx_reset(struct rx *x)
{
	struct rx_kept *k;

	mst_reader_reset(&x->rd);
	x->off = x->len = 0;
	x->eof = 0;
	x->keep = 0;
	while ((k = x->kept) != NULL) {
		x->kept = k->next;
		free(k->pay);
		free(k);
	}
	x->kept_last = NULL;
}

/* --- connection management (conn thread) --- */

/* Detect a dead peer on TCP within about a request timeout. */
static int
tune_tcp(struct mconn *c, int fd)
{
	int one = 1, idle, intvl = 1, cnt = 3;
	unsigned int user = (unsigned int)c->timeout_ms;

	idle = c->timeout_ms / 1000 > 1 ? c->timeout_ms / 1000 : 1;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof intvl) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user,
	    sizeof user) < 0)
		return -errno;
	return 0;
}

/*
 * One attempt on c->servers[c->server]: connect (TLS when asked), HELLO,
 * AUTH. On success the client is kept as the connection's transport and
 * the connection is in REPLAY.
 */
static int
conn_open(struct mconn *c)
{
	const char *addr = c->servers[c->server];
	struct mst_client_opts o = {
		.name = c->name,
		.key = c->key,
		.keylen = c->keylen,
		.timeout_ms = c->timeout_ms < MCONN_CONNECT_MAX ?
		    c->timeout_ms : MCONN_CONNECT_MAX,
		.tls = c->tls,
		.cafile = c->cafile,
	};
	struct mst_client *cl;
	uint32_t mf;
	uint64_t mb;
	uint32_t feat;
	int fd, rc;

	rc = mst_client_connect(addr, &o, &cl);
	if (rc < 0)
		return rc;
	if (c->key != NULL && !(mst_client_hello(cl)->features &
	    MST_FEAT_AUTH)) {
		/* mstore-protocol(7): a keyed client must see a proof. */
		mst_client_free(cl);
		return -EACCES;
	}
	fd = mst_client_fd(cl);
	mf = mst_client_max_frame(cl);
	mb = mst_client_hello(cl)->max_body;
	feat = mst_client_hello(cl)->features;
	rc = 0;
	if (strncmp(addr, "unix:", 5) != 0)
		rc = tune_tcp(c, fd);
	if (rc < 0)
		goto fail;
	if (mf < MST_FRAME_MIN || mf > MST_FRAME_LIMIT) {
		rc = -EPROTO;
		goto fail;
	}
	pthread_mutex_lock(&c->send_mu);
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	c->cl = cl;
	c->gen++;
	c->state = MC_REPLAY;
	c->write_err = 0;
	c->max_frame = mf;
	c->max_body = mb;
	c->features = feat;
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&c->send_mu);
	c->rx_max_frame = mf;
	return 0;
fail:
	mst_client_free(cl);	/* never used: nothing to report */
	return rc;
}

/*
 * The connection is gone: fail what was written on it unless it may be
 * retried, queue the rest again in submission order, close the socket.
 */
static void
conn_down(struct mconn *c)
{
	struct mreq *r, *next, **pp, *done = NULL;
	unsigned nfail = 0, op = 0;
	size_t i;

	/* Wake writers blocked on it; it may already be shut down. */
	(void)shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&c->send_mu);
	pthread_mutex_lock(&c->mu);
	c->state = MC_DOWN;
	/* Closes the socket; its close(2) reports nothing to act on. */
	mst_client_free(c->cl);
	c->cl = NULL;
	c->fd = -1;
	for (i = 0; i < MCONN_BUCKETS; i++) {
		for (pp = &c->tab[i]; (r = *pp) != NULL;) {
			if (!r->zombie) {
				pp = &r->hnext;
				continue;
			}
			*pp = r->hnext;
			req_unref(r);
		}
	}
	while ((r = TAILQ_FIRST(&c->sq_up)) != NULL)
		sq_del(c, r);
	while ((r = TAILQ_FIRST(&c->sq)) != NULL)
		sq_del(c, r);
	for (r = TAILQ_FIRST(&c->all); r != NULL; r = next) {
		next = TAILQ_NEXT(r, all);
		if (r->sent_gen != 0 && !r->retry) {
			if (nfail++ == 0)
				op = r->op;
			req_finish(c, r, -EIO, 0, &done);
			continue;
		}
		if (r->sent_gen != 0)
			mstat_add(MS_RESENT, 1);
		r->sent_gen = 0;
		mreply_free(&r->rep);
		r->rep_bytes = 0;
		TAILQ_INSERT_TAIL(&c->sq, r, sq);
		r->in_sq = SQ_MAIN;
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&c->send_mu);
	rx_reset(&c->rx);
	atomic_store(&c->rx_busy, 0);
	/* The connection's loss is logged already; say what it cost. */
	if (nfail > 0)
		mconn_log("%u request(s) written to the store at %s and not to "
		    "be sent again failed with the connection (the first a "
		    "%s): EIO", nfail, c->servers[c->server], op_str(op));
	run_done(done);
}

static void
first_pass_done(struct mconn *c)
{
	pthread_mutex_lock(&c->mu);
	c->first_done = 1;
	pthread_cond_broadcast(&c->state_cv);
	pthread_mutex_unlock(&c->mu);
}

/* Connected: run up(), then send what waits, then let callers in. */
static int
conn_up(struct mconn *c)
{
	mconn_log("connected to the store at %s", c->servers[c->server]);
	c->logged_down = 0;
	mstat_add(MS_CONNECTS, 1);
	if (c->up_since != 0)
		mstat_add(MS_RECONNECTS, 1);
	c->up_since = now_ms();
	if (c->up != NULL) {
		pthread_mutex_lock(&c->mu);
		c->in_up = 1;
		pthread_mutex_unlock(&c->mu);
		c->up(c->arg);
		pthread_mutex_lock(&c->mu);
		c->in_up = 0;
		pthread_mutex_unlock(&c->mu);
	}
	return flush_queue(c, 0);
}

static int
is_stopping(struct mconn *c)
{
	int stop;

	pthread_mutex_lock(&c->mu);
	stop = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return stop;
}

/* Wait |ms| or until woken; returns 1 when stopping. */
static int
conn_sleep(struct mconn *c, int ms)
{
	struct pollfd p = { .fd = c->wakefd, .events = POLLIN };

	if (poll(&p, 1, ms) > 0)
		drain_wake(c);
	return is_stopping(c);
}

/*
 * Wait for input or a wake-up; read, then write what callbacks queued.
 * While a caller holds the socket for writing, look again every
 * MCONN_FLUSH_RETRY ms.
 */
static int
conn_serve(struct mconn *c, int *busy)
{
	struct pollfd p[2] = {
		{ .fd = c->fd, .events = POLLIN },
		{ .fd = c->wakefd, .events = POLLIN },
	};
	int rc;

	rc = poll(p, 2, *busy ? MCONN_FLUSH_RETRY : -1);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	if (p[1].revents & POLLIN)
		drain_wake(c);
	if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
		rc = rx_read(c);
		if (rc < 0)
			return rc;
	}
	*busy = 0;
	if (!queue_pending(c))
		return 0;
	rc = flush_queue(c, 1);
	if (rc == -EBUSY) {
		*busy = 1;
		rc = 0;
	}
	return rc;
}

/* One line per lost connection, saying why. */
static void
log_down(struct mconn *c, int rc)
{
	const char *addr = c->servers[c->server];
	int werr;

	pthread_mutex_lock(&c->mu);
	werr = c->write_err;
	pthread_mutex_unlock(&c->mu);
	if (werr != 0)
		mconn_log("lost the connection to the store at %s: writing a "
		    "request: %s; reconnecting", addr, strerror(-werr));
	else if (c->rx.eof)
		mconn_log("lost the connection to the store at %s: closed by "
		    "the server; reconnecting", addr);
	else
		mconn_log("lost the connection to the store at %s: %s; "
		    "reconnecting", addr, strerror(-rc));
	c->logged_down = 1;
}

/* After a drop: back off only when connections keep failing soon after
 * they were made, then start over at the preferred server. */
static int
conn_after_drop(struct mconn *c, int *backoff)
{
	c->server = 0;
	if (now_ms() - c->up_since >= MCONN_BACKOFF_MAX) {
		*backoff = MCONN_BACKOFF_MIN;
		return 0;
	}
	if (conn_sleep(c, *backoff))
		return 1;
	*backoff = *backoff * 2 < MCONN_BACKOFF_MAX ? *backoff * 2 :
	    MCONN_BACKOFF_MAX;
	return 0;
}

static void *
conn_main(void *arg)
{
	struct mconn *c = arg;
	int backoff = MCONN_BACKOFF_MIN, busy = 0, rc;
	size_t tried = 0;

	/* mconn_new holds mu until c->conn_thread is set. */
	pthread_mutex_lock(&c->mu);
	pthread_mutex_unlock(&c->mu);
	while (!is_stopping(c)) {
		if (c->fd >= 0) {
			rc = conn_serve(c, &busy);
		} else if ((rc = conn_open(c)) == 0) {
			tried = 0;
			busy = 0;
			rc = conn_up(c);
			first_pass_done(c);
		} else {
			if (++tried == c->nservers && !c->logged_down) {
				mconn_log("cannot reach the store (%s: %s); "
				    "retrying in the background",
				    c->servers[c->server],
				    mst_client_strerror(rc));
				c->logged_down = 1;
				first_pass_done(c);
			}
			c->server = (c->server + 1) % c->nservers;
			if (conn_sleep(c, backoff))
				break;
			backoff = backoff * 2 < MCONN_BACKOFF_MAX ?
			    backoff * 2 : MCONN_BACKOFF_MAX;
			continue;
		}
		if (rc == 0 || rc == -ECANCELED)
			continue;
		log_down(c, rc);
		conn_down(c);
		tried = 0;
		if (conn_after_drop(c, &backoff))
			break;
	}
	if (c->fd >= 0)
		conn_down(c);
	first_pass_done(c);
	return NULL;
}

/* --- timeouts (timer thread) --- */

/* The pending request with the earliest deadline. Timed requests share
 * one timeout, so |all| holds them in deadline order; untimed ones (a
 * few waiting LOCKs) are skipped. Called with c->mu held. */
static struct mreq *
first_timed(struct mconn *c)
{
	struct mreq *r;

	TAILQ_FOREACH(r, &c->all, all)
		if (!r->untimed)
			return r;
	return NULL;
}

static void *
timer_main(void *arg)
{
	struct mconn *c = arg;
	struct mreq *r, *done;
	struct timespec ts;
	unsigned nexp, op = 0;
	int64_t now;
	int sent = 0;

	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		r = first_timed(c);
		if (r == NULL) {
			pthread_cond_wait(&c->timer_cv, &c->mu);
			continue;
		}
		now = now_ms();
		if (r->deadline > now) {
			ts = ms_to_ts(r->deadline);
			/* ETIMEDOUT or a wake-up: look again either way. */
			(void)pthread_cond_timedwait(&c->timer_cv, &c->mu, &ts);
			continue;
		}
		done = NULL;
		nexp = 0;
		while ((r = first_timed(c)) != NULL && r->deadline <= now) {
			if (nexp++ == 0) {
				op = r->op;
				sent = r->sent_gen != 0;
			}
			req_finish(c, r, -EIO, r->sent_gen != 0, &done);
		}
		mstat_add(MS_TIMEOUTS, nexp);
		pthread_mutex_unlock(&c->mu);
		/* Say so: a silent EIO cannot be told from the store's. */
		mconn_log("%u request(s) to the store at %s got no answer "
		    "within %d ms (the first a %s, %s): EIO", nexp,
		    c->servers[c->server], c->timeout_ms,
		    op_str(op), sent ? "sent" : "never sent");
		run_done(done);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* --- public interface --- */

static int
check_opts(const struct mconn_opts *o)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	size_t i;

	if (o == NULL || o->servers == NULL || o->nservers == 0 ||
	    o->timeout_ms < 0 || (o->key == NULL) != (o->keylen == 0) ||
	    o->keylen > MST_KEY_MAX || (o->tls && o->cafile == NULL))
		return -EINVAL;
	for (i = 0; i < o->nservers; i++)
		if (o->servers[i] == NULL ||
		    mst_addr_parse(o->servers[i], &ss, &sl) < 0 ||
		    (o->tls && ss.ss_family == AF_UNIX))
			return -EINVAL;
	return 0;
}

static int
copy_opts(struct mconn *c, const struct mconn_opts *o)
{
	size_t i;

	c->servers = calloc(o->nservers, sizeof *c->servers);
	if (c->servers == NULL)
		return -ENOMEM;
	c->nservers = o->nservers;
	for (i = 0; i < o->nservers; i++)
		if ((c->servers[i] = strdup(o->servers[i])) == NULL)
			return -ENOMEM;
	if (o->key != NULL) {
		c->key = malloc(o->keylen);
		if (c->key == NULL)
			return -ENOMEM;
		memcpy(c->key, o->key, o->keylen);
		c->keylen = o->keylen;
	}
	if (o->name != NULL && (c->name = strdup(o->name)) == NULL)
		return -ENOMEM;
	c->tls = o->tls;
	if (o->cafile != NULL && (c->cafile = strdup(o->cafile)) == NULL)
		return -ENOMEM;
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : MCONN_TIMEOUT_DEFAULT;
	c->notice = o->notice;
	c->up = o->up;
	c->arg = o->arg;
	return 0;
}

/* Threads start with every signal blocked: the mount's main thread
 * handles them. */
static int
start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	rc = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (rc != 0)
		return -rc;
	rc = pthread_create(t, NULL, fn, arg);
	/* Restoring a mask that was valid cannot fail. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

/* Free what mconn_new made; the threads are not running. */
static void
destroy(struct mconn *c, int inited)
{
	size_t i;

	if (inited) {
		pthread_mutex_destroy(&c->send_mu);
		pthread_mutex_destroy(&c->io_mu);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->timer_cv);
		pthread_cond_destroy(&c->state_cv);
		pthread_cond_destroy(&c->rx_cv);
	}
	if (c->wakefd >= 0)
		close(c->wakefd);
	for (i = 0; c->servers != NULL && i < c->nservers; i++)
		free(c->servers[i]);
	free(c->servers);
	free(c->key);
	free(c->name);
	free(c->cafile);
	free(c->rx.buf);
	free(c);
}

static int
init_sync(struct mconn *c)
{
	pthread_condattr_t ca;
	int rc;

	rc = pthread_condattr_init(&ca);
	if (rc != 0)
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&c->timer_cv, &ca);
	if (rc == 0 && (rc = pthread_cond_init(&c->state_cv, NULL)) != 0)
		pthread_cond_destroy(&c->timer_cv);
	if (rc == 0 && (rc = pthread_cond_init(&c->rx_cv, &ca)) != 0) {
		pthread_cond_destroy(&c->timer_cv);
		pthread_cond_destroy(&c->state_cv);
	}
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return -rc;
	/* Default mutexes: initialisation cannot fail on Linux. */
	(void)pthread_mutex_init(&c->mu, NULL);
	(void)pthread_mutex_init(&c->send_mu, NULL);
	(void)pthread_mutex_init(&c->io_mu, NULL);
	return 0;
}

int
mconn_new(const struct mconn_opts *o, struct mconn **out)
{
	struct mconn *c;
	int rc, inited = 0;

	rc = check_opts(o);
	if (rc < 0)
		return rc;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	c->wakefd = -1;
	c->fd = -1;
	c->state = MC_DOWN;
	c->max_frame = MST_FRAME_DEFAULT;
	c->max_body = MST_BODY_MAX;
	TAILQ_INIT(&c->all);
	TAILQ_INIT(&c->sq);
	TAILQ_INIT(&c->sq_up);
	rc = copy_opts(c, o);
	if (rc < 0)
		goto fail;
	c->rx.buf = malloc(MCONN_RXBUF);
	if (c->rx.buf == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->wakefd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = init_sync(c);
	if (rc < 0)
		goto fail;
	inited = 1;
	/* Held while the thread ids are stored: both threads take mu before
	 * they look at them (on_own_thread). */
	pthread_mutex_lock(&c->mu);
	rc = start_thread(&c->timer_thread, timer_main, c);
	if (rc < 0) {
		pthread_mutex_unlock(&c->mu);
		goto fail;
	}
	rc = start_thread(&c->conn_thread, conn_main, c);
	if (rc < 0) {
		c->stopping = 1;
		pthread_cond_broadcast(&c->timer_cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->timer_thread, NULL);
		goto fail;
	}
	while (!c->first_done)
		pthread_cond_wait(&c->state_cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	*out = c;
	return 0;
fail:
	destroy(c, inited);
	return rc;
}

void
mconn_free(struct mconn *c)
{
	struct mreq *r, *done = NULL;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_broadcast(&c->timer_cv);
	pthread_mutex_unlock(&c->mu);
	wake(c);
	pthread_join(c->conn_thread, NULL);
	pthread_join(c->timer_thread, NULL);
	/* conn_down has dropped the zombies; fail what is left. */
	pthread_mutex_lock(&c->mu);
	while ((r = TAILQ_FIRST(&c->all)) != NULL)
		req_finish(c, r, -EIO, 0, &done);
	pthread_mutex_unlock(&c->mu);
	run_done(done);
	rx_reset(&c->rx);
	destroy(c, 1);
}

static int
check_call(struct mconn *c, unsigned op, const void *head, size_t hlen,
    const void *body, size_t blen, mconn_cb *cb)
{
	if (cb == NULL || (head == NULL && hlen > 0) ||
	    (body == NULL && blen > 0) || mst_op_name(op) == NULL ||
	    op == MST_OP_HELLO || op == MST_OP_AUTH || op == MST_OP_DATA ||
	    op == MST_OP_NOTIFY)
		return -EINVAL;
	if (blen > 0 && op != MST_OP_DELIVER && op != MST_OP_STAGE &&
	    op != MST_OP_PUT && op != MST_OP_WRITE &&
	    op != MST_OP_SPOOL)	/* its data, in one frame */
		return -EINVAL;
	/* The head must fit the first frame at any negotiable size. */
	if (hlen > MST_FRAME_MIN)
		return -EMSGSIZE;
	if (blen > MST_BODY_MAX || blen > mconn_max_body(c))
		return -EFBIG;
	return 0;
}

/* Publish |r|: id, deadline (|until| if it is earlier than the
 * timeout's, 0: none), table, queues. Called with c->mu held. */
static void
req_publish(struct mconn *c, struct mreq *r, int64_t until)
{
	struct mreq **slot, *prev;

	r->id = new_id(c);
	r->start_ms = now_ms();
	r->deadline = r->untimed ? INT64_MAX : r->start_ms + c->timeout_ms;
	if (until > 0 && until < r->deadline)
		r->deadline = until;
	slot = tab_slot(c, r->id);
	*slot = r;
	/* Same timeout for all: submission order is deadline order, but
	 * for a request with an earlier deadline of its own (a resend
	 * within its first one's), which goes before the later ones. */
	prev = TAILQ_LAST(&c->all, mreq_list);
	while (prev != NULL && (prev->untimed || prev->deadline > r->deadline))
		prev = TAILQ_PREV(prev, mreq_list, all);
	if (prev == NULL)
		TAILQ_INSERT_HEAD(&c->all, r, all);
	else
		TAILQ_INSERT_AFTER(&c->all, prev, r, all);
	if (first_timed(c) == r)
		pthread_cond_signal(&c->timer_cv);
	r->in_all = 1;
	if (c->in_up && pthread_equal(pthread_self(), c->conn_thread)) {
		TAILQ_INSERT_TAIL(&c->sq_up, r, sq);
		r->in_sq = SQ_UP;
	} else {
		TAILQ_INSERT_TAIL(&c->sq, r, sq);
		r->in_sq = SQ_MAIN;
	}
}

/* The caller writes its own request; the timer fails it if it cannot. */
static void
write_own(struct mconn *c, struct mreq *r)
{
	struct timespec ts = ms_to_ts(write_deadline(c, r));
	struct mst_client *cl;
	size_t wrote = 0;
	uint32_t mf;
	int rc, held;

	rc = pthread_mutex_clocklock(&c->send_mu, CLOCK_MONOTONIC, &ts);
	if (rc != 0)
		return;		/* ETIMEDOUT: the timer fails it now */
	pthread_mutex_lock(&c->mu);
	if (r->in_sq == SQ_NONE || c->state != MC_UP) {
		/* Completed, or the conn thread will send it. */
		pthread_mutex_unlock(&c->mu);
		pthread_mutex_unlock(&c->send_mu);
		return;
	}
	write_begin(c, r);
	cl = c->cl;
	mf = c->max_frame;
	pthread_mutex_unlock(&c->mu);
	rc = send_req(c, cl, mf, r, 0, &wrote);
	held = write_end(c, r, rc, wrote);
	pthread_mutex_unlock(&c->send_mu);
	if (held)
		held_done(r);
}

/* Requests submitted, by op, over every connection of this process:
 * what mconn_op_count reports. Relaxed: counts, not order. */
static atomic_uint_fast64_t op_sent[256];

uint64_t
mconn_op_count(unsigned op)
{
	return op < 256 ? atomic_load_explicit(&op_sent[op],
	    memory_order_relaxed) : 0;
}

int
mconn_call_async(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, int retry, mconn_cb *cb,
    void *arg)
{
	return mconn_call_flags(c, op, head, hlen, body, blen,
	    retry ? MCONN_RETRY : 0, cb, arg);
}

int
mconn_call_flags(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, unsigned flags,
    mconn_cb *cb, void *arg)
{
	return mconn_call_until(c, op, head, hlen, body, blen, flags, 0, cb,
	    arg);
}

int
mconn_call_until(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, unsigned flags,
    int64_t until, mconn_cb *cb, void *arg)
{
	struct mreq *r;
	int rc, direct, own;

	rc = check_call(c, op, head, hlen, body, blen, cb);
	if (rc < 0)
		return rc;
	atomic_fetch_add_explicit(&op_sent[op & 0xff], 1,
	    memory_order_relaxed);
	r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->borrow = (flags & MCONN_BORROW) != 0;
	r->buf = malloc(hlen + (r->borrow ? 0 : blen) + 1);
	if (r->buf == NULL) {
		free(r);
		return -ENOMEM;
	}
	if (hlen > 0)
		memcpy(r->buf, head, hlen);
	r->body = r->borrow ? body : r->buf + hlen;
	if (blen > 0 && !r->borrow)
		memcpy(r->buf + hlen, body, blen);
	r->op = (uint8_t)op;
	r->retry = (flags & MCONN_RETRY) != 0;
	r->untimed = (flags & MCONN_UNTIMED) != 0;
	r->hlen = hlen;
	r->blen = blen;
	r->cb = cb;
	r->arg = arg;
	atomic_init(&r->refs, 2);	/* the table's and ours */
	own = on_own_thread(c);
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		req_free(r);
		return -ESHUTDOWN;
	}
	req_publish(c, r, until);
	direct = c->state == MC_UP && !own;
	pthread_mutex_unlock(&c->mu);
	if (direct)
		write_own(c, r);
	else if (own && pthread_equal(pthread_self(), c->timer_thread))
		wake(c);
	req_unref(r);
	return 0;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;		/* guarded by mu */
	struct mreply *out;	/* guarded by mu */
};

static void
call_done(void *arg, struct mreply *r)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->mu);
	*w->out = *r;		/* the reply's frames move to *out */
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

int
mconn_call(struct mconn *c, unsigned op, const void *head, size_t hlen,
    const void *body, size_t blen, int retry, struct mreply *out)
{
	struct waiter w = { .out = out };
	int rc;

	memset(out, 0, sizeof *out);
	if (on_own_thread(c)) {
		out->status = -EDEADLK;	/* its reply could never arrive */
		return out->status;
	}
	rc = pthread_cond_init(&w.cv, NULL);
	if (rc != 0) {
		out->status = -rc;
		return out->status;
	}
	/* A default mutex: initialisation cannot fail on Linux. */
	(void)pthread_mutex_init(&w.mu, NULL);
	rc = mconn_call_async(c, op, head, hlen, body, blen, retry, call_done,
	    &w);
	if (rc < 0) {
		out->status = rc;
	} else {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return out->status;
}

void
mconn_fail_all(struct mconn *c)
{
	struct mreq *r, *done = NULL;
	unsigned n = 0, op = 0;

	pthread_mutex_lock(&c->mu);
	while ((r = TAILQ_FIRST(&c->all)) != NULL) {
		if (n++ == 0)
			op = r->op;
		req_finish(c, r, -EIO, r->sent_gen != 0, &done);
	}
	pthread_mutex_unlock(&c->mu);
	if (n > 0)
		mconn_log("%u request(s) to the store at %s failed when it was "
		    "judged down (the first a %s): EIO (those that may be "
		    "sent again go to another server)", n,
		    c->servers[c->server], op_str(op));
	run_done(done);
}

int
mconn_connected(struct mconn *c)
{
	int up;

	pthread_mutex_lock(&c->mu);
	up = c->state == MC_UP;
	pthread_mutex_unlock(&c->mu);
	return up;
}

int
mconn_rx_quiet(struct mconn *c)
{
	int unread = 1, quiet;

	/* The socket first, then the flag: a frame that left the socket
	 * after this look was read with rx_busy set already, and it stays
	 * set until that frame is dispatched. */
	pthread_mutex_lock(&c->mu);
	quiet = c->state == MC_UP && c->fd >= 0 &&
	    ioctl(c->fd, FIONREAD, &unread) == 0 && unread == 0;
	pthread_mutex_unlock(&c->mu);
	return quiet && !atomic_load(&c->rx_busy);
}

/*
 * A pass that reaches the bytes sampled is not enough: a burst larger
 * than the socket's receive buffer waits in the server's send queue, and
 * comes in only as the conn thread reads (the window opens). A notice
 * the server sent before the call may be among those bytes, so the wait
 * goes on, sampling again, until the connection is quiet.
 */
int
mconn_rx_settle(struct mconn *c, int ms)
{
	struct timespec until, now;
	uint64_t target;
	int unread = 0, ok, rc = 0;

	if (mconn_rx_quiet(c))
		return 1;
	if (on_own_thread(c))
		return 0;	/* it would wait for itself */
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)ms * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	do {
		pthread_mutex_lock(&c->mu);
		/* What is in the socket now and what was read from it: both
		 * under io_mu, which the conn thread holds from its read to
		 * the count. With TLS the socket's bytes are not the
		 * transport's: no wait. */
		ok = c->state == MC_UP && c->fd >= 0 && !c->tls;
		if (ok) {
			pthread_mutex_lock(&c->io_mu);
			ok = ioctl(c->fd, FIONREAD, &unread) == 0 &&
			    unread >= 0;
			target = c->rx_in + (uint64_t)unread;
			pthread_mutex_unlock(&c->io_mu);
		}
		if (!ok) {
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
		c->rx_waiters++;
		while (c->rx_done < target && c->state == MC_UP && rc == 0)
			rc = pthread_cond_timedwait(&c->rx_cv, &c->mu, &until);
		c->rx_waiters--;
		ok = c->rx_done >= target && c->state == MC_UP;
		pthread_mutex_unlock(&c->mu);
		if (!ok)
			return 0;
		if (mconn_rx_quiet(c))
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec < until.tv_sec || (now.tv_sec == until.tv_sec &&
	    now.tv_nsec < until.tv_nsec));
	return 0;
}

uint32_t
mconn_max_frame(struct mconn *c)
{
	uint32_t mf;

	pthread_mutex_lock(&c->mu);
	mf = c->max_frame;
	pthread_mutex_unlock(&c->mu);
	return mf;
}

uint32_t
mconn_features(struct mconn *c)
{
	uint32_t f;

	pthread_mutex_lock(&c->mu);
	f = c->features;
	pthread_mutex_unlock(&c->mu);
	return f;
}

int
mconn_timeout(const struct mconn *c)
{
	return c->timeout_ms;	/* read-only after mconn_new */
}

uint64_t
mconn_max_body(struct mconn *c)
{
	uint64_t mb;

	pthread_mutex_lock(&c->mu);
	mb = c->max_body;
	pthread_mutex_unlock(&c->mu);
	return mb;
}
