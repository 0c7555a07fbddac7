/*
 * listen.h - mstored's listening sockets: binding the listen addresses
 * of the configuration, accepting connections within max_connections,
 * and the TLS context of the TCP listeners. Runs on the network loop's
 * thread; hands each accepted socket to the network layer.
 */
#ifndef MST_LISTEN_H
#define MST_LISTEN_H

#include <openssl/ssl.h>

#include <event2/event.h>

#include "conf.h"

struct listen_set;

/* What the listeners need of the network layer, called with |arg|. */
struct listen_ops {
	/* Connections open now; at max_connections new ones are closed
	 * at once (logged at most once a minute). */
	unsigned (*count)(void *arg);
	/*
	 * Take over the accepted socket |fd| (TCP_NODELAY set on TCP).
	 * |addr| names the peer in logs ("127.0.0.1:40312", or the
	 * listener's "unix:PATH"), |host| is |addr| without the port, and
	 * |local| is 1 for a Unix socket.
	 */
	void (*accept)(void *arg, evutil_socket_t fd, const char *addr,
	    const char *host, int local);
};

/*
 * Load the TLS certificate and key of |c| if set, then bind and listen
 * on every listen address of |c| (removing a stale Unix socket file
 * first) on |base|. |ops| is borrowed for the set's life. Logs the
 * reason of a failure and returns 0, -EINVAL (unusable tls_cert or
 * tls_key), -EADDRINUSE, -EACCES, -ENOMEM or another negative errno of
 * socket(2)/bind(2)/listen(2). On failure nothing is left open.
 */
int listen_open(struct event_base *base, const struct conf *c,
    const struct listen_ops *ops, void *arg, struct listen_set **out);

/* Stop accepting for good and remove the Unix socket files the set
 * created (unless replaced meanwhile). Names stay for the logs. */
void listen_close(struct listen_set *ls);

/* listen_close, then free. NULL does nothing. */
void listen_free(struct listen_set *ls);

/* The TLS context of the TCP listeners; NULL: they speak plaintext. */
SSL_CTX *listen_tls(const struct listen_set *ls);

/* "127.0.0.1:4870, unix:/run/mstored.sock" (actual ports for port 0). */
const char *listen_addresses(const struct listen_set *ls);

#endif /* MST_LISTEN_H */
