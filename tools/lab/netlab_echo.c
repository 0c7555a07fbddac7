/*
 * netlab_echo.c - the echo responder (--echo) and the round-trip probe
 * (--measure). The responder sends every connection's bytes back in
 * order, stops reading a connection whose echo it cannot send fast
 * enough, and closes a connection once its EOF has come and the echo has
 * gone out. The probe is a plain blocking client with poll(2) timeouts;
 * it never writes more than one small message before reading it back.
 */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
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

#define ECHO_HELD_MAX	(1u << 20)	/* echo bytes waiting to be sent */
#define PING_LEN	64

struct echo_conn {
	struct echo *e;
	TAILQ_ENTRY(echo_conn) link;
	struct bufferevent *bev;
	bool eof;
	bool paused;
};

struct echo {
	struct evconnlistener *lev;
	struct netlab_addr listen;
	TAILQ_HEAD(, echo_conn) conns;
};

static void
echo_conn_free(struct echo_conn *ec)
{
	TAILQ_REMOVE(&ec->e->conns, ec, link);
	bufferevent_free(ec->bev);
	free(ec);
}

/* The end of every callback: close when done, pause or resume reading. */
static void
echo_conn_settle(struct echo_conn *ec)
{
	size_t held = evbuffer_get_length(bufferevent_get_output(ec->bev));
	int rc = 0;

	if (ec->eof && held == 0) {
		echo_conn_free(ec);
		return;
	}
	if (ec->eof)
		return;
	if (!ec->paused && held >= ECHO_HELD_MAX) {
		rc = bufferevent_disable(ec->bev, EV_READ);
		ec->paused = true;
	} else if (ec->paused && held <= ECHO_HELD_MAX / 2) {
		rc = bufferevent_enable(ec->bev, EV_READ);
		ec->paused = false;
	}
	if (rc < 0) {
		netlab_log("echo %s: cannot change reading", ec->e->listen.str);
		echo_conn_free(ec);
	}
}

static void
echo_read(struct bufferevent *bev, void *arg)
{
	struct echo_conn *ec = arg;

	if (bufferevent_write_buffer(bev, bufferevent_get_input(bev)) < 0) {
		netlab_log("echo %s: out of memory", ec->e->listen.str);
		echo_conn_free(ec);
		return;
	}
	echo_conn_settle(ec);
}

static void
echo_write(struct bufferevent *bev, void *arg)
{
	(void)bev;		/* ec->bev */
	echo_conn_settle(arg);
}

static void
echo_event(struct bufferevent *bev, short what, void *arg)
{
	struct echo_conn *ec = arg;

	(void)bev;		/* ec->bev */
	if (what & BEV_EVENT_EOF) {
		ec->eof = true;
		echo_conn_settle(ec);
		return;
	}
	/* A reset peer is an ordinary end for an echo: no log. */
	echo_conn_free(ec);
}

static void
echo_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct echo *e = arg;
	struct echo_conn *ec;
	int rc;

	(void)sa;		/* every peer is answered alike */
	(void)salen;
	ec = calloc(1, sizeof *ec);
	if (ec == NULL) {
		netlab_log("echo %s: out of memory", e->listen.str);
		(void)close(fd);	/* nothing sent yet */
		return;
	}
	ec->e = e;
	ec->bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (ec->bev == NULL) {
		netlab_log("echo %s: out of memory", e->listen.str);
		(void)close(fd);	/* nothing sent yet */
		free(ec);
		return;
	}
	TAILQ_INSERT_TAIL(&e->conns, ec, link);
	rc = netlab_nodelay(fd);
	if (rc < 0) {
		netlab_log("echo %s: TCP_NODELAY: %s", e->listen.str,
		    strerror(-rc));
		echo_conn_free(ec);
		return;
	}
	bufferevent_setcb(ec->bev, echo_read, echo_write, echo_event, ec);
	bufferevent_setwatermark(ec->bev, EV_WRITE, ECHO_HELD_MAX / 2, 0);
	if (bufferevent_enable(ec->bev, EV_READ | EV_WRITE) < 0) {
		netlab_log("echo %s: cannot start reading", e->listen.str);
		echo_conn_free(ec);
	}
}

int
echo_open(struct event_base *base, struct netlab_addr *listen,
    struct echo **out)
{
	struct echo *e;
	int fd, rc;

	e = calloc(1, sizeof *e);
	if (e == NULL)
		return -ENOMEM;
	TAILQ_INIT(&e->conns);
	rc = netlab_listen(listen, &fd);
	if (rc < 0) {
		free(e);
		return rc;
	}
	e->listen = *listen;
	/* Backlog 0: the socket is listening already. */
	e->lev = evconnlistener_new(base, echo_accept, e,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (e->lev == NULL) {
		(void)close(fd);	/* a listener: nothing to flush */
		free(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

void
echo_close(struct echo *e)
{
	if (e == NULL)
		return;
	while (!TAILQ_EMPTY(&e->conns))
		echo_conn_free(TAILQ_FIRST(&e->conns));
	evconnlistener_free(e->lev);
	free(e);
}

/* --- the probe --- */

/* Wait until |fd| is ready for |events|, at most until |deadline_ns|.
 * Returns 0, -ETIMEDOUT or a negative errno from poll(2). */
static int
wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = netlab_now_ns();
		int ms, n;

		if (now >= deadline_ns)
			return -ETIMEDOUT;
		ms = (int)((deadline_ns - now + 999999) / 1000000);
		n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int
probe_connect(const struct netlab_addr *a, uint64_t deadline_ns, int *fd_out)
{
	socklen_t len = sizeof(int);
	int fd, rc, err;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	rc = netlab_nodelay(fd);
	if (rc < 0)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
		*fd_out = fd;
		return 0;
	}
	if (errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	rc = wait_fd(fd, POLLOUT, deadline_ns);
	if (rc < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
		rc = -errno;
		goto fail;
	}
	if (err != 0) {
		rc = -err;
		goto fail;
	}
	*fd_out = fd;
	return 0;
fail:
	(void)close(fd);	/* nothing sent */
	return rc;
}

/*
 * Do |n| bytes of |what| on non-blocking |fd| by |deadline_ns|: write
 * them all (|out| != NULL) or read them all into |in|. The one place
 * that retries EINTR, EAGAIN and short transfers. Returns 0,
 * -ETIMEDOUT, -EPROTO (EOF before |n| bytes) or a negative errno.
 */
static int
io_all(int fd, const uint8_t *out, uint8_t *in, size_t n,
    uint64_t deadline_ns)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = out ? send(fd, out + done, n - done, MSG_NOSIGNAL)
				: recv(fd, in + done, n - done, 0);
		int rc;

		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		if (r == 0)
			return -EPROTO;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = wait_fd(fd, out ? POLLOUT : POLLIN, deadline_ns);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* One timed ping: send PING_LEN bytes numbered |seq|, read them back. */
static int
probe_ping(int fd, unsigned seq, int timeout_ms, uint64_t *rtt_out)
{
	uint8_t msg[PING_LEN], back[PING_LEN];
	uint64_t t0 = netlab_now_ns();
	uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000;
	int rc;

	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(seq * 31 + i);
	rc = io_all(fd, msg, NULL, sizeof msg, deadline);
	if (rc == 0)
		rc = io_all(fd, NULL, back, sizeof back, deadline);
	if (rc < 0)
		return rc;
	if (memcmp(msg, back, sizeof msg) != 0)
		return -EPROTO;
	*rtt_out = netlab_now_ns() - t0;
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
measure_run(const struct netlab_addr *a, unsigned count, int timeout_ms,
    struct measure *out)
{
	uint64_t *rtt, t0, warm;
	int fd = -1, rc;

	if (count == 0 || count > MEASURE_COUNT_MAX)
		return -EINVAL;
	rtt = calloc(count, sizeof *rtt);
	if (rtt == NULL)
		return -ENOMEM;
	t0 = netlab_now_ns();
	rc = probe_connect(a, t0 + (uint64_t)timeout_ms * 1000000, &fd);
	if (rc < 0)
		goto out;
	out->connect_ns = netlab_now_ns() - t0;
	/* The warm-up round trip also waits for the proxy's own connect. */
	rc = probe_ping(fd, 0, timeout_ms, &warm);
	for (unsigned i = 0; i < count && rc == 0; i++)
		rc = probe_ping(fd, i + 1, timeout_ms, &rtt[i]);
	(void)close(fd);	/* every echo is in: nothing left to lose */
	if (rc < 0)
		goto out;
	qsort(rtt, count, sizeof *rtt, cmp_u64);
	out->count = count;
	out->rtt_min_ns = rtt[0];
	out->rtt_max_ns = rtt[count - 1];
	out->rtt_median_ns = rtt[count / 2];
	if (count % 2 == 0)
		out->rtt_median_ns = (rtt[count / 2 - 1] + rtt[count / 2]) / 2;
out:
	free(rtt);
	return rc;
}
