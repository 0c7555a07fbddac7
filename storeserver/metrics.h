/*
 * metrics.h - mstored's counters for Prometheus (mstored(8), METRICS).
 *
 * metrics.c keeps process-wide counters, gauges and histograms that any
 * thread bumps with relaxed atomic adds (no lock, no order), and renders
 * them in the Prometheus text exposition format 0.0.4. The network loop
 * reports requests, deliveries and notices; the local engine's writer
 * its group commits, the compactor and scrub their progress. What only
 * the loop knows at the instant of a scrape (connections, watches, locks)
 * is handed to metrics_render in a struct metrics_live.
 *
 * metrics_http.c serves the rendering at /metrics through libevent's
 * evhttp, on the server's loop.
 */
#ifndef MST_METRICS_H
#define MST_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Monotonic nanoseconds, for the durations passed below. */
int64_t metrics_now_ns(void);

/* One reply to a request (its last frame): |op| MST_OP_*, |status| the
 * wire status (MST_S_*), |ns| from its arrival to the reply. */
void metrics_request(unsigned op, unsigned status, int64_t ns);
/* A DELIVER acknowledged: one message of |bytes|. */
void metrics_delivered(uint64_t bytes);
/* A connection accepted; a NOTIFY frame queued for a watcher. */
void metrics_accepted(void);
void metrics_notice_sent(void);

/* Local engine: a group commit of |nrec| records and |bytes| log bytes
 * made durable by one fdatasync that took |sync_ns|. */
void metrics_commit(unsigned nrec, uint64_t bytes, int64_t sync_ns);
/* The store now holds |msgs| messages of |bytes|, in |mailboxes|
 * mailboxes: the local engine after replay and after every group
 * commit, rados from the pool's totals (every server the same). */
void metrics_store(uint64_t msgs, uint64_t bytes, uint64_t mailboxes);

/* Compaction of one segment of |size| bytes: begin, |scanned| bytes of
 * it walked so far, end (|ok|: the segment was emptied; |moved| bytes
 * were appended again). */
void metrics_compact_begin(uint64_t size);
void metrics_compact_progress(uint64_t scanned);
void metrics_compact_end(int ok, uint64_t moved);
/* A scrub of |size| bytes of log: begin, |checked| bytes so far, end
 * with |damage| bad records and bodies found. */
void metrics_scrub_begin(uint64_t size);
void metrics_scrub_progress(uint64_t checked);
void metrics_scrub_end(uint64_t damage);
/* The scrub under way turned out to cover |size| bytes after all. */
void metrics_scrub_size(uint64_t size);
/* Engines that keep locks themselves (engine_ops.locks: rados): the
 * locks held by this server's connections and their waiting LOCKs,
 * added to the network layer's at each scrape. */
void metrics_engine_locks(uint64_t locks, uint64_t waiters);

/* What the loop counts at the time of a scrape. */
struct metrics_live {
	uint64_t connections;	/* open (not yet closed) */
	uint64_t watches;	/* directories watched, over connections */
	uint64_t locks;		/* locks held (network layer's table) */
	uint64_t lock_waiters;	/* LOCK requests waiting */
	uint64_t jobs;		/* requests in the engine */
};

/*
 * Every metric as Prometheus text (a NUL-terminated, malloc'ed string;
 * its length in *len_out), or NULL when out of memory.
 */
char *metrics_render(const struct metrics_live *live, size_t *len_out);

/* --- metrics_http.c --- */

struct metrics_http;
typedef void metrics_live_fn(void *arg, struct metrics_live *out);

/*
 * Serve GET and HEAD of /metrics on |addr| ("HOST:PORT" or "[V6]:PORT",
 * as checked by conf.c) from the loop of |base|; |live| fills the loop's
 * gauges at each scrape. Other paths get 404, other methods of /metrics
 * 405.
 * Returns 0, or a negative errno of socket(2)/bind(2)/listen(2) (logged),
 * -EINVAL for an address that does not parse, -ENOMEM.
 */
int metrics_http_open(struct event_base *base, const char *addr,
    metrics_live_fn *live, void *arg, struct metrics_http **out);
/* "127.0.0.1:9470" (the actual port for port 0). */
const char *metrics_http_address(const struct metrics_http *h);
/* Stop listening and drop its connections. NULL does nothing. */
void metrics_http_free(struct metrics_http *h);

#endif /* MST_METRICS_H */
