/*
 * server.h - mstored's network layer: one libevent loop that owns the
 * connections (server.c), the listeners (listen.c) and the watch table
 * (watch.c), decodes requests into jobs for the storage engine and sends
 * the replies and change notices.
 */
#ifndef MST_SERVER_H
#define MST_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "engine.h"
#include "mstclient.h"

struct server;
struct event_base;

/* A shared key; a server holds up to SERVER_KEYS_MAX (rotation). */
#define SERVER_KEYS_MAX	2
struct server_key {
	uint8_t key[MST_KEY_MAX];
	size_t len;
};

/*
 * Create the loop, bind every listen address of |c| (removing a stale
 * Unix socket file first) and install the signal handlers. |c| and
 * |keys| are copied from; |nkeys| is 0 when no AUTH is required, else
 * AUTH accepts a proof made with any of them. Logs the reason of a
 * failure and returns 0, -EINVAL (too many keys, or unusable tls_cert or
 * tls_key: both are loaded here), -EADDRINUSE, -EACCES,
 * -ENOMEM or another negative errno of socket(2)/bind(2)/listen(2).
 */
int server_new(const struct conf *c, const struct server_key *keys,
    size_t nkeys, struct server **out);

/* engine_conf.done for an engine whose done_arg is the server. Called
 * from engine threads; takes the job back and wakes the loop. */
void server_job_done(void *arg, struct job *j);

/* engine_conf.notice for an engine whose notice_arg is the server: a
 * change another server made. Called from engine threads; copies |n|,
 * wakes the loop, which sends it to every watcher of n->dir. Out of
 * memory, it logs and the notice is lost. */
void server_engine_notice(void *arg, const struct jnotice *n);

/* engine_conf.fence for an engine whose fence_arg is the server: has the
 * loop close every connection whose token is in |owners| and waits until
 * it has (at most 2 s). From engine threads only. */
void server_engine_fence(void *arg, const uint64_t *owners, size_t n);

/* Hand the opened engine to the server; jobs go to it from now on. */
void server_set_engine(struct server *s, const struct engine_ops *ops,
    struct engine *e);

/* 1 when the TCP listeners speak TLS (tls_cert and tls_key). */
int server_tls(const struct server *s);

/* The loop's event_base: mstored's metrics endpoint (metrics_http.c)
 * runs on it. */
struct event_base *server_base(struct server *s);

/* metrics_live_fn (metrics.h) for an endpoint on server_base(|arg|):
 * connections, watches, locks and jobs in flight now. Loop only. */
struct metrics_live;
void server_metrics_live(void *arg, struct metrics_live *out);

/* "127.0.0.1:4870, unix:/run/mstored.sock" (actual ports for port 0). */
const char *server_addresses(const struct server *s);

/*
 * Serve until SIGTERM or SIGINT, then stop accepting and reading, let
 * the jobs in flight complete and their replies flush (at most
 * SERVER_DRAIN_SECONDS) and return 0. A second signal returns at once.
 * Returns -EIO if the loop fails.
 */
#define SERVER_DRAIN_SECONDS	10
int server_run(struct server *s);

/*
 * Free the server. Call after the engine is closed: jobs it completed
 * after server_run returned are freed unanswered. Removes the Unix
 * socket files the server created. server_free(NULL) does nothing.
 */
void server_free(struct server *s);

#endif /* MST_SERVER_H */
