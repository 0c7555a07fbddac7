/*
 * netlab_proxy.c - the delaying TCP proxy. Owns one listener per mapping
 * and, for each accepted connection, both sockets and the bytes between
 * them. Never drops, reorders or alters a byte of a live connection,
 * never holds much more than buf_max bytes per direction (it stops
 * reading the sender instead, and TCP pushes back), and never blocks.
 *
 * Delay. Each read is a chunk stamped with its arrival time; a chunk
 * leaves for the other socket when now >= arrival + delay, in arrival
 * order. A direction keeps its chunks as records (due time, length) in
 * a fixed ring over one evbuffer that holds their bytes, so a chunk
 * costs neither an allocation nor a copy (evbuffer_remove_buffer moves
 * whole chains). One timer per direction waits for the oldest chunk.
 * The loop must run with EVENT_BASE_FLAG_PRECISE_TIMER (netlab.c sets
 * it): without it libevent rounds timeouts to whole milliseconds and
 * reads a coarse clock, and a 0.25 ms delay would become 1 to 4 ms.
 *
 * Half-close. EOF is a chunk of length 0: it takes the same delay, after
 * the bytes before it, and becomes shutdown(SHUT_WR) of the other socket
 * once that socket's output has drained and, for the target, once its
 * connect has finished (shutdown of a socket in SYN_SENT aborts it).
 *
 * Connection states, per direction:
 *
 *   OPEN --EOF read--> EOF QUEUED --delay--> EOF DUE --output drained-->
 *   SHUT (shutdown(SHUT_WR) sent on)
 *
 *   both directions SHUT: the connection is freed.
 *   error or reset on either socket, failed connect: both sockets are
 *   closed at once and the bytes still held are dropped, as a broken
 *   network would lose them.
 *
 * Every callback ends in conn_settle(), the only place that shuts down,
 * pauses, resumes and frees, so no callback touches a freed connection.
 *
 * Reads. libevent 2.1 reads a socket at most 4 KiB per call and per loop
 * pass, whatever bufferevent_set_max_single_read asks, so a 1 MiB message
 * became 256 chunks, 256 passes and 256 timers, and the proxy rather than
 * the delay set how fast bulk data crossed (1 MiB echoed through it took
 * 11 ms with no delay at all). The read callback therefore also reads
 * what else the socket holds, up to IO_MAX, straight into held, as part
 * of the same chunk (a bufferevent's input only takes libevent's own
 * reads); EOF and errors are left for libevent's next read to see.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "netlab.h"

#define DIR_CHUNKS	1024		/* chunks in flight per direction */
#define IO_MAX		(64 << 10)	/* bytes per read(2) or write(2) */
#define ACCEPT_RETRY_S	1		/* after EMFILE and friends */

enum { SIDE_CLIENT, SIDE_TARGET };

struct chunk {
	uint64_t due_ns;		/* arrival + delay */
	size_t len;			/* 0: EOF */
};

/* One direction: bytes read from |src|, held, then written to |dst|. */
struct dir {
	struct conn *c;
	int side;			/* of src: SIDE_CLIENT or SIDE_TARGET */
	struct bufferevent *src, *dst;
	struct evbuffer *held;		/* the bytes of ring[] */
	struct chunk ring[DIR_CHUNKS];
	unsigned head, count;
	struct event *timer;		/* fires when ring[head] is due */
	bool eof_read;			/* EOF queued as a chunk */
	bool eof_due;			/* EOF released; shut once drained */
	bool shut;			/* shutdown(dst, SHUT_WR) done */
	bool paused;			/* src not read: too much held */
	uint64_t bytes;			/* forwarded so far */
};

struct conn {
	struct proxy *p;
	TAILQ_ENTRY(conn) link;
	unsigned long id;
	char peer[NETLAB_ADDR_MAX];	/* the client's address */
	struct bufferevent *bev[2];	/* [SIDE_CLIENT], [SIDE_TARGET] */
	struct dir dir[2];		/* indexed by the side they read */
	bool connected;			/* target connect finished */
	bool dead;			/* error: free at the next settle */
};

struct proxy {
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *retry;		/* re-enables accepting */
	struct netlab_addr listen, target;
	uint64_t delay_ns;
	size_t buf_max;
	TAILQ_HEAD(, conn) conns;
	unsigned nconns;
	unsigned long accepted;
	uint64_t bytes[2];		/* of closed connections, per dir */
};

static const char *const side_name[2] = { "client", "target" };

static size_t
dir_queued(const struct dir *d)
{
	return evbuffer_get_length(d->held) +
	    evbuffer_get_length(bufferevent_get_output(d->dst));
}

static void
dir_arm(struct dir *d, uint64_t now)
{
	const struct chunk *k = &d->ring[d->head];
	uint64_t wait = k->due_ns > now ? k->due_ns - now : 0;
	struct timeval tv;

	/* Whole microseconds, rounded up: never before the due time. */
	wait = (wait + 999) / 1000;
	tv.tv_sec = (time_t)(wait / 1000000);
	tv.tv_usec = (suseconds_t)(wait % 1000000);
	/*
	 * libevent adds |tv| to the time it cached when this loop pass
	 * began, which is before |now|: the timer would fire early and
	 * re-arm for the few microseconds left. Refresh the cache first.
	 */
	if (event_base_update_cache_time(d->c->p->base) < 0 ||
	    evtimer_add(d->timer, &tv) < 0) {
		netlab_log("conn %lu from %s: evtimer_add failed",
		    d->c->id, d->c->peer);
		d->c->dead = true;
	}
}

/* Move every chunk that is due to dst's output; arm the timer for the
 * next one. */
static void
dir_release(struct dir *d)
{
	struct evbuffer *out = bufferevent_get_output(d->dst);
	uint64_t now = netlab_now_ns();

	while (d->count > 0 && d->ring[d->head].due_ns <= now) {
		struct chunk *k = &d->ring[d->head];

		if (k->len == 0) {
			d->eof_due = true;
		} else {
			int n = evbuffer_remove_buffer(d->held, out, k->len);

			/* held holds exactly the bytes of the ring. */
			assert(n == (int)k->len);
			d->bytes += k->len;
		}
		d->head = (d->head + 1) % DIR_CHUNKS;
		d->count--;
	}
	if (d->count > 0)
		dir_arm(d, now);
}

/* Queue a chunk of |len| bytes (0: EOF) that arrived now. */
static void
dir_push(struct dir *d, size_t len)
{
	struct chunk *k = &d->ring[(d->head + d->count) % DIR_CHUNKS];

	assert(d->count < DIR_CHUNKS);
	k->due_ns = netlab_now_ns() + d->c->p->delay_ns;
	k->len = len;
	d->count++;
	/* A pending timer serves an older chunk and re-arms for this one. */
	if (!evtimer_pending(d->timer, NULL))
		dir_release(d);
}

/* Append what else src's socket holds to held, up to IO_MAX in all
 * (|len| is there already), in as few recv calls as it takes; returns
 * the new length. EOF and errors are left for libevent's next read. */
static size_t
dir_drain(struct dir *d, size_t len)
{
	int fd = bufferevent_getfd(d->src);

	while (len < IO_MAX) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_reserve_space(d->held, (ev_ssize_t)(IO_MAX - len),
		    &v, 1) != 1)
			break;
		if (v.iov_len > IO_MAX - len)
			v.iov_len = IO_MAX - len;
		n = recv(fd, v.iov_base, v.iov_len, MSG_DONTWAIT);
		v.iov_len = n > 0 ? (size_t)n : 0;
		if (evbuffer_commit_space(d->held, &v, 1) < 0 || n <= 0)
			break;
		len += (size_t)n;
	}
	return len;
}

/* Take what src's input holds as one chunk, if the ring has room; a full
 * ring leaves it there until conn_settle() finds room. From the read
 * callback (|more|), what else the socket holds joins the chunk. */
static void
dir_take(struct dir *d, bool more)
{
	struct evbuffer *in = bufferevent_get_input(d->src);
	size_t len = evbuffer_get_length(in);

	if (len == 0 || d->count == DIR_CHUNKS)
		return;
	if (evbuffer_add_buffer(d->held, in) < 0) {
		netlab_log("conn %lu from %s: out of memory", d->c->id,
		    d->c->peer);
		d->c->dead = true;
		return;
	}
	if (more && !d->eof_read)
		len = dir_drain(d, len);
	dir_push(d, len);
}

/* Send EOF on once it is due and dst has written everything. */
static void
dir_shut(struct dir *d)
{
	struct conn *c = d->c;
	int to = !d->side;

	if (!d->eof_due || d->shut || (to == SIDE_TARGET && !c->connected) ||
	    evbuffer_get_length(bufferevent_get_output(d->dst)) > 0)
		return;
	if (shutdown(bufferevent_getfd(d->dst), SHUT_WR) < 0) {
		netlab_log("conn %lu from %s: shutdown(%s, SHUT_WR): %s",
		    c->id, c->peer, side_name[to], strerror(errno));
		c->dead = true;
		return;
	}
	d->shut = true;
}

/* Backpressure with hysteresis: stop reading src above buf_max held,
 * read again below half of it. */
static void
dir_flow(struct dir *d)
{
	size_t max = d->c->p->buf_max;
	size_t queued;

	if (d->eof_read)
		return;
	dir_take(d, false);
	queued = dir_queued(d);
	if (!d->paused && (queued >= max || d->count >= DIR_CHUNKS - 1)) {
		if (bufferevent_disable(d->src, EV_READ) < 0)
			d->c->dead = true;
		d->paused = true;
	} else if (d->paused && queued <= max / 2 &&
	    d->count < DIR_CHUNKS / 2) {
		if (bufferevent_enable(d->src, EV_READ) < 0)
			d->c->dead = true;
		d->paused = false;
	}
}

static void
conn_free(struct conn *c)
{
	struct proxy *p = c->p;

	for (int i = 0; i < 2; i++) {
		struct dir *d = &c->dir[i];

		p->bytes[i] += d->bytes;
		if (d->timer != NULL)
			event_free(d->timer);
		if (d->held != NULL)
			evbuffer_free(d->held);
		if (c->bev[i] != NULL)
			bufferevent_free(c->bev[i]);
	}
	TAILQ_REMOVE(&p->conns, c, link);
	p->nconns--;
	free(c);
}

/* The end of every callback: shut, pause or resume, free. */
static void
conn_settle(struct conn *c)
{
	for (int i = 0; i < 2 && !c->dead; i++) {
		dir_shut(&c->dir[i]);
		dir_flow(&c->dir[i]);
	}
	if (c->dead || (c->dir[0].shut && c->dir[1].shut))
		conn_free(c);
}

static int
side_of(const struct conn *c, const struct bufferevent *bev)
{
	return bev == c->bev[SIDE_CLIENT] ? SIDE_CLIENT : SIDE_TARGET;
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	dir_take(&c->dir[side_of(c, bev)], true);
	conn_settle(c);
}

static void
conn_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;		/* settle looks at both sides */
	conn_settle(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int side = side_of(c, bev);
	struct dir *d = &c->dir[side];

	if (what & BEV_EVENT_CONNECTED) {
		c->connected = true;
	} else if (what & BEV_EVENT_EOF) {
		/* Whatever came before the EOF goes first. */
		dir_take(d, false);
		if (d->count == DIR_CHUNKS) {
			/* Cannot happen: reading stops with one slot left. */
			netlab_log("conn %lu from %s: EOF with no room",
			    c->id, c->peer);
			c->dead = true;
		} else {
			d->eof_read = true;
			d->paused = false;
			dir_push(d, 0);
		}
	} else {
		int err = EVUTIL_SOCKET_ERROR();

		if (side == SIDE_TARGET && !c->connected)
			netlab_log("conn %lu from %s: connect %s: %s", c->id,
			    c->peer, c->p->target.str, strerror(err));
		else
			netlab_log("conn %lu from %s: %s %s: %s", c->id,
			    c->peer, what & BEV_EVENT_READING ? "read from" :
			    "write to", side_name[side],
			    err ? strerror(err) : "error");
		c->dead = true;
	}
	conn_settle(c);
}

/* Start a non-blocking connect to the target. Returns the socket or a
 * negative errno (logged). */
static int
conn_dial(struct conn *c)
{
	const struct netlab_addr *t = &c->p->target;
	int fd, rc;

	fd = socket(t->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		rc = -errno;
		netlab_log("conn %lu from %s: socket: %s", c->id, c->peer,
		    strerror(-rc));
		return rc;
	}
	rc = netlab_nodelay(fd);
	if (rc == 0 && connect(fd, (const struct sockaddr *)&t->ss, t->len) < 0
	    && errno != EINPROGRESS)
		rc = -errno;
	if (rc < 0) {
		netlab_log("conn %lu from %s: connect %s: %s", c->id, c->peer,
		    t->str, strerror(-rc));
		(void)close(fd);	/* never connected: nothing to flush */
		return rc;
	}
	return fd;
}

static void
dir_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dir *d = arg;

	(void)fd;		/* a pure timer */
	(void)what;
	dir_release(d);
	conn_settle(d->c);
}

static int
dir_init(struct conn *c, int side)
{
	struct dir *d = &c->dir[side];

	d->c = c;
	d->side = side;
	d->src = c->bev[side];
	d->dst = c->bev[!side];
	d->held = evbuffer_new();
	d->timer = evtimer_new(c->p->base, dir_timer, d);
	return d->held != NULL && d->timer != NULL ? 0 : -ENOMEM;
}

/* Takes ownership of |fd|, the accepted client socket. */
static int
conn_open(struct proxy *p, int fd, const struct sockaddr *sa)
{
	struct conn *c;
	int tfd, rc;

	c = calloc(1, sizeof *c);
	if (c == NULL) {
		netlab_log("%s: connection: out of memory", p->listen.str);
		(void)close(fd);	/* nothing sent yet */
		return -ENOMEM;
	}
	c->p = p;
	c->id = ++p->accepted;
	netlab_addr_format(sa, c->peer, sizeof c->peer);
	TAILQ_INSERT_TAIL(&p->conns, c, link);
	p->nconns++;

	c->bev[SIDE_CLIENT] = bufferevent_socket_new(p->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev[SIDE_CLIENT] == NULL) {
		(void)close(fd);	/* nothing sent yet */
		rc = -ENOMEM;
		goto fail;
	}
	rc = netlab_nodelay(fd);
	if (rc < 0) {
		netlab_log("conn %lu from %s: TCP_NODELAY: %s", c->id, c->peer,
		    strerror(-rc));
		goto fail;
	}
	tfd = conn_dial(c);
	if (tfd < 0) {
		rc = tfd;
		goto fail;
	}
	c->bev[SIDE_TARGET] = bufferevent_socket_new(p->base, tfd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev[SIDE_TARGET] == NULL) {
		(void)close(tfd);	/* nothing sent yet */
		rc = -ENOMEM;
		goto fail;
	}
	/* NULL address: the socket is already connecting; wait for it. */
	if (bufferevent_socket_connect(c->bev[SIDE_TARGET], NULL, 0) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		struct bufferevent *bev = c->bev[i];

		rc = dir_init(c, i);
		if (rc < 0)
			goto fail;
		bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
		/* The write callback runs when output falls to buf_max/2. */
		bufferevent_setwatermark(bev, EV_WRITE, p->buf_max / 2, 0);
		if (bufferevent_set_max_single_read(bev, IO_MAX) < 0 ||
		    bufferevent_set_max_single_write(bev, IO_MAX) < 0 ||
		    bufferevent_enable(bev, EV_READ | EV_WRITE) < 0) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	return 0;
fail:
	if (rc == -ENOMEM)
		netlab_log("conn %lu from %s: out of memory", c->id, c->peer);
	conn_free(c);
	return rc;
}

static void
proxy_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void)lev;		/* p->lev */
	(void)salen;		/* netlab_addr_format reads the family */
	/* Failures are logged and end only this connection. */
	(void)conn_open(arg, fd, sa);
}

/*
 * accept(2) failed: EMFILE, ENFILE, ENOBUFS, ENOMEM. The pending
 * connection stays in the backlog and the listener would spin on it, so
 * stop accepting for a second (clients wait in the backlog meanwhile).
 */
static void
proxy_accept_error(struct evconnlistener *lev, void *arg)
{
	struct proxy *p = arg;
	struct timeval tv = { .tv_sec = ACCEPT_RETRY_S };
	int err = EVUTIL_SOCKET_ERROR();

	netlab_log("%s: accept: %s (%u connections open); pausing %d s",
	    p->listen.str, strerror(err), p->nconns, ACCEPT_RETRY_S);
	if (evconnlistener_disable(lev) < 0 || evtimer_add(p->retry, &tv) < 0)
		netlab_log("%s: cannot pause accepting", p->listen.str);
}

static void
proxy_retry(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *p = arg;

	(void)fd;		/* a pure timer */
	(void)what;
	if (evconnlistener_enable(p->lev) < 0)
		netlab_log("%s: cannot resume accepting", p->listen.str);
}

int
proxy_open(struct event_base *base, struct netlab_addr *listen,
    const struct netlab_addr *target, uint64_t delay_ns, size_t buf_max,
    struct proxy **out)
{
	struct proxy *p;
	int fd, rc;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	p->base = base;
	p->target = *target;
	p->delay_ns = delay_ns;
	p->buf_max = buf_max;
	TAILQ_INIT(&p->conns);
	p->retry = evtimer_new(base, proxy_retry, p);
	if (p->retry == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = netlab_listen(listen, &fd);
	if (rc < 0)
		goto fail;
	p->listen = *listen;
	/* Backlog 0: the socket is listening already. */
	p->lev = evconnlistener_new(base, proxy_accept, p,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (p->lev == NULL) {
		(void)close(fd);	/* a listener: nothing to flush */
		rc = -ENOMEM;
		goto fail;
	}
	evconnlistener_set_error_cb(p->lev, proxy_accept_error);
	*out = p;
	return 0;
fail:
	if (p->retry != NULL)
		event_free(p->retry);
	free(p);
	return rc;
}

unsigned
proxy_close(struct proxy *p)
{
	unsigned open;

	if (p == NULL)
		return 0;
	open = p->nconns;
	while (!TAILQ_EMPTY(&p->conns))
		conn_free(TAILQ_FIRST(&p->conns));
	netlab_log("%s -> %s: %lu connections, %llu bytes to the target, "
	    "%llu back", p->listen.str, p->target.str, p->accepted,
	    (unsigned long long)p->bytes[SIDE_CLIENT],
	    (unsigned long long)p->bytes[SIDE_TARGET]);
	evconnlistener_free(p->lev);
	event_free(p->retry);
	free(p);
	return open;
}
