/*
 * netlab.h - netlab, a TCP delay proxy with an echo responder and a
 * round-trip probe, for benchmarks that must see network latency on one
 * machine (no tc netem here). Shared by netlab.c (command line),
 * netlab_net.c (addresses, sockets, clock, log), netlab_proxy.c (the
 * delaying proxy) and netlab_echo.c (echo responder and probe).
 * See netlab(1).
 */
#ifndef NETLAB_H
#define NETLAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>

#define NETLAB_ADDR_MAX		64	/* "[v6 address]:port" and its NUL */
#define NETLAB_DELAY_MAX_MS	60000	/* one-way delay limit, -d */
#define NETLAB_BUF_DEFAULT	(1u << 20)	/* bytes held per direction */
#define NETLAB_BUF_MIN		(64u << 10)
#define NETLAB_BUF_MAX		(1u << 30)

/* A socket address as parsed from "A.B.C.D:PORT" or "[V6]:PORT". */
struct netlab_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char str[NETLAB_ADDR_MAX];	/* for messages */
};

/* --- netlab_net.c --- */

/*
 * Parse a numeric "A.B.C.D:PORT" or "[V6]:PORT" into |out|; no host
 * names, so netlab never asks a resolver. Returns 0 or -EINVAL.
 */
int netlab_addr_parse(const char *s, struct netlab_addr *out);

/* Is |a| a wildcard address (0.0.0.0 or ::)? */
int netlab_addr_is_any(const struct netlab_addr *a);

/* The port of |a|, in host byte order. */
unsigned netlab_addr_port(const struct netlab_addr *a);

/* Format |sa| as "A.B.C.D:PORT" or "[V6]:PORT" into |buf|. */
void netlab_addr_format(const struct sockaddr *sa, char *buf, size_t n);

/*
 * Bind and listen on |a| (SO_REUSEADDR, close-on-exec, non-blocking) and
 * return the socket in |*fd_out|. If |a| has port 0, the kernel's choice
 * is written back into |a| (both ss and str). Returns 0 or a negative
 * errno from socket(2), bind(2), listen(2) or getsockname(2).
 */
int netlab_listen(struct netlab_addr *a, int *fd_out);

/* Disable Nagle on |fd|. Returns 0 or a negative errno. */
int netlab_nodelay(int fd);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t netlab_now_ns(void);

/* One line "netlab: MESSAGE" on stderr. */
void netlab_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- netlab_proxy.c --- */

struct proxy;

/*
 * Start forwarding connections accepted on |listen| to |target|, each
 * byte after |delay_ns|, holding at most about |buf_max| bytes per
 * direction of each connection. Writes the bound port back into |listen|
 * when it asked for port 0. Returns 0 or a negative errno from
 * netlab_listen(), or -ENOMEM.
 */
int proxy_open(struct event_base *base, struct netlab_addr *listen,
    const struct netlab_addr *target, uint64_t delay_ns, size_t buf_max,
    struct proxy **out);

/* Stop listening and drop every connection. proxy_close(NULL) is a no-op.
 * Returns the number of connections that were still open. */
unsigned proxy_close(struct proxy *p);

/* --- netlab_echo.c --- */

struct echo;

/*
 * Answer every connection on |listen| by sending back what it sends;
 * after its EOF, the rest of the echo, then the connection is closed.
 * Writes the bound port back into |listen|. Returns 0, a negative errno
 * from netlab_listen(), or -ENOMEM.
 */
int echo_open(struct event_base *base, struct netlab_addr *listen,
    struct echo **out);

/* Stop listening and drop every connection. echo_close(NULL) is a no-op. */
void echo_close(struct echo *e);

/* What measure_run() found; times in nanoseconds. */
struct measure {
	uint64_t connect_ns;
	uint64_t rtt_min_ns;
	uint64_t rtt_median_ns;
	uint64_t rtt_max_ns;
	unsigned count;			/* round trips timed */
};

#define MEASURE_COUNT_MAX	10000

/*
 * Connect to the echo responder at |a| and time |count| round trips of a
 * small message (after one untimed warm-up), each within |timeout_ms|.
 * Returns 0, -ETIMEDOUT, -EPROTO (the echo differs or the peer closed)
 * or a negative errno from socket(2), connect(2), poll(2), read(2) or
 * write(2). Prints nothing.
 */
int measure_run(const struct netlab_addr *a, unsigned count, int timeout_ms,
    struct measure *out);

#endif /* NETLAB_H */
