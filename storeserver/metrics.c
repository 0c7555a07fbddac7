/*
 * metrics.c - mstored's counters and their Prometheus text (exposition
 * format 0.0.4). Owns every metric's name, help text, type and buckets;
 * mstored(8), METRICS, lists them. Any thread updates them with relaxed
 * atomic adds and stores: no lock, and a scrape sees each at some recent
 * value. A histogram's _count is rendered as the sum of the bucket
 * values it read, so its buckets always add up even while another
 * thread observes. Never blocks, never logs, never does I/O.
 */
#include <config.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "mstproto.h"

#define MET_OPS		128	/* opcodes counted; others are "unknown" */
#define MET_STATUS	128	/* wire statuses (Linux errno numbers) */

typedef atomic_uint_fast64_t mctr;

#define ADD(c, v) atomic_fetch_add_explicit(&(c), (v), memory_order_relaxed)
#define SUB(c, v) atomic_fetch_sub_explicit(&(c), (v), memory_order_relaxed)
#define SET(c, v) atomic_store_explicit(&(c), (v), memory_order_relaxed)
#define GET(c) ((uint64_t)atomic_load_explicit(&(c), memory_order_relaxed))

/* Request durations, nanoseconds: 100 us to 10 s, then +Inf. */
static const uint64_t lat_le[] = {
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
	25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
	2500000000u, 5000000000u, 10000000000u,
};
#define LAT_N	(sizeof lat_le / sizeof lat_le[0])

/* Records per group commit (the writer takes at most 1024 jobs). */
static const uint64_t batch_le[] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024,
};
#define BATCH_N	(sizeof batch_le / sizeof batch_le[0])

struct hist {
	mctr b[LAT_N + 1];	/* not cumulative; the last is +Inf */
	mctr sum;		/* ns, or records */
};

static mctr requests[MET_OPS][MET_STATUS];
static struct hist req_lat[MET_OPS];
static mctr delivered, delivered_bytes, accepted, notices;
static struct hist commit_recs, sync_lat;
static mctr log_bytes;
static mctr store_set, store_msgs, store_bytes, store_mboxes;
static mctr compactions, compact_moved, compact_running, compact_size,
    compact_scanned;
static mctr scrubs, scrub_damage, scrub_running, scrub_size,
    scrub_checked;
static mctr engine_locks, engine_waiters;

int64_t
metrics_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);	/* cannot fail */
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
hist_add(struct hist *h, const uint64_t *le, size_t n, uint64_t v)
{
	size_t i;

	for (i = 0; i < n && v > le[i]; i++)
		;
	ADD(h->b[i], 1);
	ADD(h->sum, v);
}

void
metrics_request(unsigned op, unsigned status, int64_t ns)
{
	if (op >= MET_OPS || mst_op_name(op) == NULL)
		op = 0;		/* no opcode 0: "unknown" */
	if (status >= MET_STATUS)
		status = MST_S_EIO;
	ADD(requests[op][status], 1);
	hist_add(&req_lat[op], lat_le, LAT_N, ns > 0 ? (uint64_t)ns : 0);
}

void
metrics_delivered(uint64_t bytes)
{
	ADD(delivered, 1);
	ADD(delivered_bytes, bytes);
}

void
metrics_accepted(void)
{
	ADD(accepted, 1);
}

void
metrics_notice_sent(void)
{
	ADD(notices, 1);
}

void
metrics_commit(unsigned nrec, uint64_t bytes, int64_t sync_ns)
{
	hist_add(&commit_recs, batch_le, BATCH_N, nrec);
	hist_add(&sync_lat, lat_le, LAT_N, sync_ns > 0 ? (uint64_t)sync_ns : 0);
	ADD(log_bytes, bytes);
}

void
metrics_store(uint64_t msgs, uint64_t bytes, uint64_t mailboxes)
{
	SET(store_msgs, msgs);
	SET(store_bytes, bytes);
	SET(store_mboxes, mailboxes);
	SET(store_set, 1);
}

void
metrics_compact_begin(uint64_t size)
{
	SET(compact_size, size);
	SET(compact_scanned, 0);
	ADD(compact_running, 1);
}

void
metrics_compact_progress(uint64_t scanned)
{
	SET(compact_scanned, scanned);
}

void
metrics_compact_end(int ok, uint64_t moved)
{
	if (ok) {
		ADD(compactions, 1);
		SET(compact_scanned, GET(compact_size));
	}
	ADD(compact_moved, moved);
	SUB(compact_running, 1);
}

void
metrics_scrub_begin(uint64_t size)
{
	SET(scrub_size, size);
	SET(scrub_checked, 0);
	ADD(scrub_running, 1);
}

void
metrics_scrub_size(uint64_t size)
{
	SET(scrub_size, size);
}

void
metrics_engine_locks(uint64_t locks, uint64_t waiters)
{
	SET(engine_locks, locks);
	SET(engine_waiters, waiters);
}

void
metrics_scrub_progress(uint64_t checked)
{
	SET(scrub_checked, checked);
}

void
metrics_scrub_end(uint64_t damage)
{
	ADD(scrubs, 1);
	ADD(scrub_damage, damage);
	SUB(scrub_running, 1);
}

/* ---- rendering ---- */

struct out {
	char *p;
	size_t len, cap;
	int failed;
};

static void
put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *p;
	int n;

	if (o->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = 1;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		cap = o->cap * 2 + (size_t)n;
		p = realloc(o->p, cap);
		if (p == NULL) {
			o->failed = 1;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
}

static void
head(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
scalar(struct out *o, const char *name, const char *type, const char *help,
    uint64_t v)
{
	head(o, name, type, help);
	put(o, "%s %llu\n", name, (unsigned long long)v);
}

/* One histogram's series; |labels| is "" or `op="X",`. |scale| divides
 * bucket bounds and the sum (1e9 for nanoseconds to seconds, 0: as
 * integers). */
static void
hist_put(struct out *o, const char *name, const char *labels,
    const struct hist *h, const uint64_t *le, size_t n, double scale)
{
	uint64_t cum = 0, sum = GET(h->sum);
	size_t i;
	int nl = labels[0] != '\0';
	char lb[96];

	/* "op=\"X\"," -> "{op=\"X\"}" for _sum and _count. */
	snprintf(lb, sizeof lb, "%s%.*s%s", nl ? "{" : "",
	    nl ? (int)strlen(labels) - 1 : 0, labels, nl ? "}" : "");
	for (i = 0; i <= n; i++) {
		cum += GET(h->b[i]);
		if (i == n)
			put(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
			    (unsigned long long)cum);
		else if (scale > 0)
			put(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
			    (double)le[i] / scale, (unsigned long long)cum);
		else
			put(o, "%s_bucket{%sle=\"%llu\"} %llu\n", name, labels,
			    (unsigned long long)le[i], (unsigned long long)cum);
	}
	if (scale > 0)
		put(o, "%s_sum%s %.9f\n", name, lb, (double)sum / scale);
	else
		put(o, "%s_sum%s %llu\n", name, lb, (unsigned long long)sum);
	put(o, "%s_count%s %llu\n", name, lb, (unsigned long long)cum);
}

static const char *
op_label(unsigned op)
{
	const char *s = op ? mst_op_name(op) : NULL;

	return s ? s : "unknown";
}

static void
status_label(unsigned st, char *buf, size_t cap)
{
	const char *s;

	if (st == 0) {
		snprintf(buf, cap, "ok");
		return;
	}
	s = strerrorname_np(mst_status_to_errno(st));
	if (s != NULL)
		snprintf(buf, cap, "%s", s);
	else
		snprintf(buf, cap, "E%u", st);
}

static int
op_seen(unsigned op)
{
	size_t i;

	for (i = 0; i <= LAT_N; i++)
		if (GET(req_lat[op].b[i]))
			return 1;
	return 0;
}

static void
render_requests(struct out *o)
{
	char st[32], lb[64];
	unsigned op, s;
	uint64_t v;

	head(o, "mstored_requests_total", "counter",
	    "Requests answered, by operation and reply status.");
	for (op = 0; op < MET_OPS; op++)
		for (s = 0; s < MET_STATUS; s++) {
			v = GET(requests[op][s]);
			if (v == 0)
				continue;
			status_label(s, st, sizeof st);
			put(o, "mstored_requests_total{op=\"%s\",status=\"%s\"} "
			    "%llu\n", op_label(op), st, (unsigned long long)v);
		}
	head(o, "mstored_request_duration_seconds", "histogram",
	    "Time from a request's arrival to its reply, by operation.");
	for (op = 0; op < MET_OPS; op++) {
		if (!op_seen(op))
			continue;
		snprintf(lb, sizeof lb, "op=\"%s\",", op_label(op));
		hist_put(o, "mstored_request_duration_seconds", lb,
		    &req_lat[op], lat_le, LAT_N, 1e9);
	}
}

static void
render_engine(struct out *o)
{
	head(o, "mstored_commit_records", "histogram",
	    "Records made durable per group commit (local engine).");
	hist_put(o, "mstored_commit_records", "", &commit_recs, batch_le,
	    BATCH_N, 0);
	head(o, "mstored_fdatasync_duration_seconds", "histogram",
	    "Duration of each group commit's fdatasync (local engine).");
	hist_put(o, "mstored_fdatasync_duration_seconds", "", &sync_lat,
	    lat_le, LAT_N, 1e9);
	scalar(o, "mstored_log_written_bytes_total", "counter",
	    "Bytes appended to the log by group commits (local engine).",
	    GET(log_bytes));
	if (GET(store_set)) {
		scalar(o, "mstored_store_messages", "gauge",
		    "Messages in the store (rados: in the pool).",
		    GET(store_msgs));
		scalar(o, "mstored_store_message_bytes", "gauge",
		    "Bytes of the messages in the store (rados: in the pool).",
		    GET(store_bytes));
		scalar(o, "mstored_store_mailboxes", "gauge",
		    "Mailboxes holding messages (rados: in the pool).",
		    GET(store_mboxes));
	}
	scalar(o, "mstored_compactions_total", "counter",
	    "Segments emptied by compaction.", GET(compactions));
	scalar(o, "mstored_compaction_relocated_bytes_total", "counter",
	    "Live bytes compaction appended again.", GET(compact_moved));
	scalar(o, "mstored_compaction_running", "gauge",
	    "Compactions of a segment under way (0 or 1).",
	    GET(compact_running));
	scalar(o, "mstored_compaction_segment_bytes", "gauge",
	    "Size of the segment compacted last or now.", GET(compact_size));
	scalar(o, "mstored_compaction_scanned_bytes", "gauge",
	    "Bytes of that segment walked so far.", GET(compact_scanned));
	scalar(o, "mstored_scrubs_total", "counter",
	    "Scrubs finished.", GET(scrubs));
	scalar(o, "mstored_scrub_damage_total", "counter",
	    "Bad records and bodies found by scrubs.", GET(scrub_damage));
	scalar(o, "mstored_scrub_running", "gauge",
	    "Scrubs under way.", GET(scrub_running));
	scalar(o, "mstored_scrub_size_bytes", "gauge",
	    "Bytes the last or current scrub verifies (log; "
	    "rados: messages).", GET(scrub_size));
	scalar(o, "mstored_scrub_checked_bytes", "gauge",
	    "Bytes it has verified so far.", GET(scrub_checked));
}

char *
metrics_render(const struct metrics_live *live, size_t *len_out)
{
	struct out o = { .cap = 16384 };

	o.p = malloc(o.cap);
	if (o.p == NULL)
		return NULL;
	head(&o, "mstored_build_info", "gauge",
	    "Always 1; the version in its label.");
	put(&o, "mstored_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	render_requests(&o);
	scalar(&o, "mstored_delivered_messages_total", "counter",
	    "Messages acknowledged by DELIVER.", GET(delivered));
	scalar(&o, "mstored_delivered_bytes_total", "counter",
	    "Bytes of the messages acknowledged by DELIVER.",
	    GET(delivered_bytes));
	scalar(&o, "mstored_connections_accepted_total", "counter",
	    "Client connections accepted.", GET(accepted));
	scalar(&o, "mstored_notices_sent_total", "counter",
	    "NOTIFY frames queued to watching connections.", GET(notices));
	scalar(&o, "mstored_connections", "gauge",
	    "Client connections open.", live->connections);
	scalar(&o, "mstored_watches", "gauge",
	    "Directories watched, summed over connections.", live->watches);
	scalar(&o, "mstored_locks", "gauge",
	    "File locks held by this server's connections.",
	    live->locks + GET(engine_locks));
	scalar(&o, "mstored_lock_waiters", "gauge",
	    "LOCK requests waiting for a conflicting lock to go.",
	    live->lock_waiters + GET(engine_waiters));
	scalar(&o, "mstored_requests_in_flight", "gauge",
	    "Requests handed to the storage engine and not yet answered.",
	    live->jobs);
	render_engine(&o);
	if (o.failed) {
		free(o.p);
		return NULL;
	}
	*len_out = o.len;
	return o.p;
}
