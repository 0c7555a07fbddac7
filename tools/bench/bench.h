/*
 * bench.h - the parts of mstore-bench: the target interface every kind
 * of TARGET implements (bench_dir.c, bench_mstore.c, bench_nfs.c), the
 * message generator (bench_msg.c) and the latency histogram
 * (bench_hist.c). The driver, mstore-bench.c, owns threads, timing and
 * the report.
 *
 * Threads: the driver calls a target's open and close from the main
 * thread; each writer thread owns one session and calls the session ops
 * on it only. Targets keep no state shared between sessions except what
 * open() set up, read-only afterwards.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mstclient.h"

/* The kinds of timed operation, for counts and latencies per kind. */
enum bench_kind {
	BENCH_K_DELIVER,
	BENCH_K_READ,			/* read workload: read + rename */
	BENCH_K_EXPUNGE,
	BENCH_KINDS
};

/* Largest message of -s dist (the top of its last bucket). */
#define BENCH_DIST_MAX		(2u << 20)

/* Settings of one run, the same for every target. Read-only while the
 * writers run. */
struct bench_opts {
	unsigned writers;		/* -w */
	uint64_t size;			/* -s, bytes per message; 0 with dist */
	int size_dist;			/* -s dist: sizes of real mail */
	uint64_t size_max;		/* largest message of the run */
	uint64_t seed;			/* --seed: sizes and the op mix */
	uint64_t write_size;		/* --write-size: bytes per write(2)
					 * of dir: deliveries; 0: whole */
	unsigned mailboxes;		/* -m */
	uint64_t per_mailbox;		/* messages in each mailbox at setup */
	unsigned mix[BENCH_KINDS];	/* --mix: percent of each kind */
	uint64_t count;			/* -n; 0 when -d is used */
	int duration_ms;		/* -d; 0 when -n is used */
	int keep;			/* --keep: leave what was created */
	struct mst_client_opts client;	/* -k, -t for mstore:// */
	pid_t pid;
	char host[64];			/* for Maildir names, sanitized */
};

/* Why an op failed, for the error lines: "link(A, B)" or "DELIVER X". */
struct bench_err {
	char what[512];
};

/* One message to deliver. */
struct bench_msg {
	unsigned mbox;			/* mailbox index, < mailboxes */
	const char *name;		/* unique Maildir file name */
	const uint8_t *body;
	size_t len;
};

/* The Maildir subdirectory a message is in. */
enum bench_sub { BENCH_NEW, BENCH_CUR };

/* The flags suffix a read message gets on its way into cur/ ("seen"). */
#define BENCH_SEEN_SUFFIX	":2,S"

/* A message as a listing shows it. */
struct bench_entry {
	char *name;			/* owned by the list */
	uint64_t id;			/* the store's object id; 0 for files */
};

/* The messages of one subdirectory of one mailbox (bench_list.c). */
struct bench_list {
	struct bench_entry *v;
	size_t n, cap;
};

/* Forget the entries (keeps the array for the next listing). */
void bench_list_clear(struct bench_list *l);
void bench_list_free(struct bench_list *l);
/* Append a copy of |name| (|len| bytes). Returns 0 or -ENOMEM. */
int bench_list_add(struct bench_list *l, const char *name, size_t len,
    uint64_t id);
/* Remove entry |i| (the last one takes its place). */
void bench_list_remove(struct bench_list *l, size_t i);

struct bench_target;			/* a target's state for one run */
struct bench_session;			/* a writer's connection or handles */

/*
 * A kind of target. Every op returns 0 or a negative errno and, on
 * failure, says in |e| which step failed (operation and object).
 *
 * check:   validate |loc| (the TARGET without its scheme) while the
 *          command line is parsed; no I/O. Writes a reason to |e|.
 * open:    make this run's base (a fresh "bench-PID" directory) and
 *          whatever the sessions share. |loc| stays valid until close.
 * session_open/close: per writer thread (a connection, buffers).
 * setup_mailbox: create mailbox |mbox| (with tmp/ new/ cur/); an
 *          existing one is fine. Not timed.
 * deliver: one Maildir delivery. Timed.
 * list:    the messages in |sub| of mailbox |mbox| into |l| (cleared
 *          first): a directory listing, or LIST. Timed in the reading
 *          workloads; also counts what a run left, untimed.
 * read:    read message |en| of |sub| of |mbox| completely, as an IMAP
 *          server does to serve it; its size in *size_out. -ENOENT (or
 *          -ESTALE) when it is gone. Timed.
 * seen:    move message |en| from new/ into cur/ with BENCH_SEEN_SUFFIX
 *          appended to its name: rename(2), or SETINFO. Timed.
 * expunge: remove message |en| from |sub| of |mbox|: unlink(2), or
 *          EXPUNGE. -ENOENT when it is already gone. Timed.
 * cleanup_mailbox: remove mailbox |mbox| and every message in it. Not
 *          timed; called after all writers have finished their workload.
 * close:   remove the base unless |keep|, free the target.
 *
 * A kind this build cannot serve (its library was missing at configure
 * time) sets |unavailable| to the reason and no ops: the driver refuses
 * such a TARGET before running anything.
 */
struct bench_target_ops {
	const char *scheme;		/* "dir:", "mstore://" */
	const char *syntax;		/* for --help: "dir:PATH" */
	const char *unavailable;	/* NULL, or why this build lacks it */
	int (*check)(const char *loc, struct bench_err *e);
	int (*open)(const char *loc, const struct bench_opts *o,
	    struct bench_target **out, struct bench_err *e);
	int (*session_open)(struct bench_target *t, unsigned writer,
	    struct bench_session **out, struct bench_err *e);
	void (*session_close)(struct bench_session *s);
	int (*setup_mailbox)(struct bench_session *s, unsigned mbox,
	    struct bench_err *e);
	int (*deliver)(struct bench_session *s, const struct bench_msg *m,
	    struct bench_err *e);
	int (*list)(struct bench_session *s, unsigned mbox,
	    enum bench_sub sub, struct bench_list *l, struct bench_err *e);
	int (*read)(struct bench_session *s, unsigned mbox,
	    enum bench_sub sub, const struct bench_entry *en,
	    uint64_t *size_out, struct bench_err *e);
	int (*seen)(struct bench_session *s, unsigned mbox,
	    const struct bench_entry *en, struct bench_err *e);
	int (*expunge)(struct bench_session *s, unsigned mbox,
	    enum bench_sub sub, const struct bench_entry *en,
	    struct bench_err *e);
	int (*cleanup_mailbox)(struct bench_session *s, unsigned mbox,
	    struct bench_err *e);
	int (*close)(struct bench_target *t, int keep, struct bench_err *e);
};

extern const struct bench_target_ops bench_dir_ops;
extern const struct bench_target_ops bench_mstore_ops;
extern const struct bench_target_ops bench_nfs_ops;

/* How many "bench-PID", "bench-PID-2", ... a target tries for its base. */
#define BENCH_BASE_TRIES	100

/* Name of the base directory for attempt |i| (0-based). */
void bench_base_name(const struct bench_opts *o, unsigned i, char *buf,
    size_t cap);

/* --- messages (bench_msg.c) --- */

/* xoshiro256**: fast, per thread, seeded from getrandom. */
struct bench_rng {
	uint64_t s[4];
};

int bench_rng_seed(struct bench_rng *r);
uint64_t bench_rng_next(struct bench_rng *r);
/*
 * The state for event |n| of |stream| of a run seeded with |seed|: what
 * happens to the n-th message or operation depends on the seed only,
 * not on which writer took it or when.
 */
void bench_rng_derive(struct bench_rng *r, uint64_t seed, uint64_t stream,
    uint64_t n);

/*
 * The size of a message: -s SIZE, or one drawn from |r| with -s dist
 * (see mstore-bench(1), "Message sizes"): 2-4 KiB 40%, 4-16 KiB 35%,
 * 16-64 KiB 15%, 64-256 KiB 8%, 256 KiB-2 MiB 2%.
 */
uint64_t bench_msg_size(const struct bench_opts *o, struct bench_rng *r);

/*
 * A Maildir name "TIME.PID_WRITER_SEQ.HOST" in |buf| (at most 255
 * bytes). Returns its length.
 */
size_t bench_msg_name(const struct bench_opts *o, unsigned writer,
    uint64_t seq, char *buf, size_t cap);

/*
 * Random text lines of random words, made once and shared read-only by
 * the writers, so that composing a message costs little more than a
 * memcpy: on a small machine the client's CPU is the server's too.
 */
#define BENCH_TEXT_LINES	4096u

struct bench_text {
	uint8_t *p;				/* lines, each ending in LF */
	uint32_t off[BENCH_TEXT_LINES + 1];	/* line i: p + off[i] */
};

/* Returns NULL when out of memory or without random bytes. */
struct bench_text *bench_text_new(void);
void bench_text_free(struct bench_text *t);

/*
 * Fill |buf| with exactly |size| bytes of an RFC 5322 message to mailbox
 * |mbox|: headers (Message-ID from |name|, random subject and sender),
 * a blank line, then lines of |t| in random order, the last one or two
 * made up to fit. Different per call.
 */
void bench_msg_body(struct bench_rng *r, const struct bench_text *t,
    const struct bench_opts *o, unsigned mbox, const char *name,
    uint8_t *buf, size_t size);

/* --- latency histogram (bench_hist.c) --- */

/* Log-linear buckets of nanoseconds: 64 per power of two, so a
 * percentile is off by less than 1%. */
#define BENCH_HIST_SUB		64u
#define BENCH_HIST_BUCKETS	(BENCH_HIST_SUB * 59u)

struct bench_hist {
	uint64_t n;
	uint64_t sum_ns;
	uint64_t min_ns, max_ns;
	uint64_t b[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *h);
/* The |q| quantile (0 < q <= 1) in nanoseconds; 0 when empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

#endif /* BENCH_H */
