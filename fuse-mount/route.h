/*
 * route.h - a mount's several store servers (layer 3, beside store.c; see
 * route.c): one mconn per server, health checks, and the choice of a
 * server for each request by rendezvous hashing. No FUSE types.
 */
#ifndef MST_ROUTE_H
#define MST_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "mconn.h"

#define ROUTE_MAX		64	/* servers ever listed in one mount */
#define ROUTE_HEALTH_MS		1000	/* health_interval= default */
#define ROUTE_FAILOVER_MS	2000	/* failover_timeout= default */
#define ROUTE_UP_STREAK		2	/* passed checks before a return */

struct route;

/* Called on the health thread after a server went down or came back
 * (mailboxes moved): watches and caches of moved mailboxes are to be
 * renewed. Must not block on the store. */
typedef void route_moved_fn(void *arg);

struct route_opts {
	struct mconn_opts conn;		/* servers, key, TLS, timeouts, and
					   notice for every server; up runs
					   only for the home server */
	int health_ms;			/* PING period */
	int failover_ms;		/* no answer for this long: down */
	route_moved_fn *moved;		/* with conn.arg */
	const char *servers_file;	/* or NULL: a server list read again
					   whenever the file changes */
};

/* The weight of |server| for |key| (XXH3_64bits of key, NUL, server):
 * the server of highest weight wins. Pure; for tests too. */
uint64_t route_weight(const char *key, size_t klen, const char *server);
/* Order |n| servers for |key|, highest weight first: |idx| gets the
 * indices 0..n-1 of |servers| in that order. Pure. */
void route_order(const char *key, size_t klen, const char *const *servers,
    size_t n, size_t *idx);

/* Start one connection per server and the health thread. 0 or a
 * negative errno. */
int route_new(const struct route_opts *o, struct route **out);
void route_free(struct route *rt);
/* Replace the server list: servers new to it are connected, those no
 * longer in it stop receiving requests (their connection is kept until
 * route_free, for requests already in flight). 0 or a negative errno. */
int route_set_servers(struct route *rt, const char *const *servers,
    size_t n);

/* Read a server list file: addresses separated by commas, blanks or
 * newlines, '#' to the end of a line a comment. Writes up to ROUTE_MAX
 * pointers into |buf| (which it fills, NUL-terminated words) to |v|.
 * The count, or a negative errno (-EINVAL: empty, a bad address or too
 * many). */
int route_read_list(const char *path, char *buf, size_t cap,
    const char **v);

/* The key of the home server (ordinary files, directories, locks). */
#define ROUTE_HOME	"/"

/* The connection that serves |key| now: the first healthy server in
 * |key|'s rendezvous order (the first listed one when none is healthy). */
struct mconn *route_conn(struct route *rt, const char *key, size_t klen);

/*
 * mconn_call_flags through the server of |key|. With MCONN_RETRY, a
 * request that fails with -EIO because its server went down is sent
 * again, with the same bytes (a DELIVER keeps its idempotency id), to
 * the next healthy server of |key|; a DELIVER or COMMIT answered EAGAIN
 * is sent again after a back-off, within its first deadline (route.c).
 */
int route_call_async(struct route *rt, const char *key, size_t klen,
    unsigned op, const void *head, size_t hlen, const void *body,
    size_t blen, unsigned flags, mconn_cb *cb, void *arg);
/* The same, waiting; as mconn_call (but it must not be called from an
 * mconn callback: it would wait for itself). -ENOTCONN when no server is
 * listed; -EIO at once, not at the deadline, when the server went down
 * as the request was handed to it and another server is up. */
int route_call(struct route *rt, const char *key, size_t klen, unsigned op,
    const void *head, size_t hlen, const void *body, size_t blen,
    unsigned flags, struct mreply *out);

/*
 * The routing view, for operators (ops_xattr.c shows it): one line per
 * server ever listed, in list order, "ADDR up|down|left[ home]\n" (left:
 * no longer listed; home: the server of ROUTE_HOME). Writes at most
 * |cap| bytes, no NUL. Returns the whole view's length (more than |cap|
 * when it did not fit).
 */
size_t route_view(struct route *rt, char *buf, size_t cap);
/* The address of the server that serves |key| now (as route_conn picks
 * it) into |buf|, NUL-terminated. Its length, or -ENOTCONN (none
 * listed), or -ERANGE. */
int route_server_of(struct route *rt, const char *key, size_t klen,
    char *buf, size_t cap);

/* For tests only (NULL otherwise): called by route_call_async between
 * choosing a request's server (|addr|) and handing the request to that
 * server's connection, the moment in which the health thread may judge
 * the server down. */
extern void (*route_test_after_pick)(const char *addr);

/* Is the home server's connection up; limits of the home connection. */
int route_connected(struct route *rt);
uint32_t route_max_frame(struct route *rt);
/* The home connection is up and has dispatched everything it received,
 * notices included (mconn_rx_quiet). */
int route_rx_quiet(struct route *rt);
/* Wait (|ms| at most) until the home connection has dispatched what the
 * server had sent by now and is quiet (mconn_rx_settle): 1 then, else 0. */
int route_rx_settle(struct route *rt, int ms);

#endif /* MST_ROUTE_H */
