/*
 * watch.h - the watch table of mstored: which connection watches which
 * directory (WATCH, UNWATCH), the per-connection bounds on watching, and
 * the fan-out of change notices to watchers as NOTIFY payloads. Runs on
 * the network loop's thread only; reaches a connection through the
 * watch_io functions the network layer gives it.
 */
#ifndef MST_WATCH_H
#define MST_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "engine.h"

struct watch_table;
struct watcher;

/*
 * How the table reaches a connection, given as |ctx|. The network layer
 * implements these; each may be called from inside any watch_* call
 * that sends.
 */
struct watch_io {
	/* Queue one NOTIFY frame with payload |p|; nothing once |ctx| is
	 * closed. May close |ctx| (out of memory): see watch_conn_clear. */
	void (*send)(void *ctx, const uint8_t *p, size_t len);
	/* Bytes queued to |ctx| and not yet written. */
	size_t (*backlog)(void *ctx);
	/* Close |ctx|: it does not read its notices. The table has logged
	 * why; the close must call watch_conn_clear on its watch_conn. */
	void (*close)(void *ctx);
};

/* One connection's part of the table; the connection embeds it. */
struct watch_conn {
	struct watch_table *t;
	void *ctx;		/* handed to watch_io */
	const char *name;	/* for logs; lives as long as the conn */
	unsigned n;		/* directories watched (or being) */
	LIST_HEAD(, watcher) watchers;
};

/* |io| is borrowed for the table's life; |max_per_conn| bounds the
 * directories one connection watches. NULL when out of memory. */
struct watch_table *watch_table_new(const struct watch_io *io,
    unsigned max_per_conn);
/* Every watch_conn must have been cleared first. NULL does nothing. */
void watch_table_free(struct watch_table *t);
/* Directories watched by anyone. */
size_t watch_table_count(const struct watch_table *t);

void watch_conn_init(struct watch_conn *wc, struct watch_table *t,
    void *ctx, const char *name);
/* The connection is gone: drop its watchers and the notices they held. */
void watch_conn_clear(struct watch_conn *wc);
/* 1 when |wc| watches as many directories as it may: a new WATCH fails
 * with ENOSPC. */
int watch_conn_full(const struct watch_conn *wc);

/*
 * A WATCH of |path| is about to go to the engine: register its watcher
 * (inactive, holding notices) now, because the engine answers WATCH and
 * commits changes on different threads. Watching twice is one watch.
 * 0 or -ENOMEM.
 */
int watch_begin(struct watch_conn *wc, const char *path, size_t len);
/* That WATCH job |j| completed and its reply is sent: start the watcher
 * (sending the held notices it has not seen) or, if it failed, end it. */
void watch_done(struct watch_conn *wc, const struct job *j);
/*
 * UNWATCH of |path|: 0, or -ENOENT when |wc| has no active watch on it.
 * A WATCH still in flight keeps the watcher, inactive, and starts it
 * again when it succeeds: requests complete in their own order.
 */
int watch_end(struct watch_conn *wc, const char *path, size_t len);

/*
 * Send |n| to every watcher of n->dir except |origin| (NULL: none), the
 * connection whose request made the change: it learns of it from the
 * reply (mstore-protocol(7), NOTIFY). A watcher with more than
 * WATCHER_OUT_MAX bytes unread is closed rather than allowed to grow
 * without bound.
 */
#define WATCHER_OUT_MAX		(16u << 20)
void watch_notify(struct watch_table *t, const struct jnotice *n,
    const struct watch_conn *origin);

#endif /* MST_WATCH_H */
