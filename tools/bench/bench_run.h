/*
 * bench_run.h - between mstore-bench's driver (mstore-bench.c: threads,
 * phases, progress, report, command line) and its workloads
 * (bench_work.c: what each writer does between setup and cleanup). The
 * targets never see this.
 *
 * Locks: run->mu and the driver's print lock are never held together.
 * Counters a writer bumps while the workload runs are atomics, read by
 * the progress line; the rest of a worker is its own until it counts
 * itself finished under run->mu, after which the main thread reads it.
 */
#ifndef BENCH_RUN_H
#define BENCH_RUN_H

#include <pthread.h>
#include <stdatomic.h>

#include "bench.h"

#define BENCH_ERRORS_SHOWN	5	/* error lines printed per target */

struct worker;

/* A workload: what each writer does between setup and cleanup. */
struct bench_workload {
	const char *name;
	const char *unit;		/* "deliveries/s": the rate's unit */
	const char *did;		/* "delivered": progress, table */
	const char *noun;		/* "deliveries": "-n" of them */
	const char *col_rate;		/* "deliv/s": table column */
	unsigned kinds;			/* 1u << BENCH_K_* it times */
	int fills;			/* messages are delivered at setup */
	void (*run)(struct worker *w);
};

extern const struct bench_workload bench_work_loads[];
extern const size_t bench_work_nloads;

enum phase { PH_SETUP, PH_FILL, PH_GO, PH_CLEANUP };

struct target_spec {
	const char *arg;			/* as given: "dir:/var/tmp/x" */
	const struct bench_target_ops *ops;
	const char *loc;			/* arg without the scheme */
};

struct run {
	const struct bench_opts *o;
	const struct bench_workload *wl;
	const struct target_spec *ts;
	const struct bench_text *text;
	struct bench_target *target;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum phase phase;		/* guarded by mu */
	unsigned ready, filled, finished;	/* guarded by mu */
	atomic_bool stop;		/* the workload ends */
	atomic_bool abort;		/* a setup failed: measure nothing */
	atomic_bool count_failed;	/* what was left is unknown */
	atomic_uint_fast64_t next;	/* next ticket of the workload */
	atomic_uint_fast64_t fill_next;	/* next message of the setup */
	atomic_uint shown;		/* errors printed so far */
	atomic_uint cleanup_errors;
	char first_error[640];		/* guarded by the print lock */
};

struct worker {
	struct run *run;
	unsigned index;
	pthread_t tid;
	struct bench_session *session;
	struct bench_rng rng;		/* message text */
	uint8_t *body;			/* size_max bytes */
	uint64_t seq;			/* of this writer's message names */
	uint64_t start_ns, end_ns;	/* of this writer's timed phase */
	atomic_uint_fast64_t ops[BENCH_KINDS];	/* succeeded, per kind */
	atomic_uint_fast64_t errors;
	atomic_uint_fast64_t conflicts;	/* mixed: lost a race, picked again */
	atomic_uint_fast64_t empty;	/* mixed: found nothing, delivered */
	atomic_uint_fast64_t filled;	/* messages delivered at setup */
	uint64_t bytes;			/* of the timed operations */
	uint64_t in_new, in_cur;	/* counted after the workload */
	struct bench_hist *hist;	/* [BENCH_KINDS], of its kinds */
};

/* Print (the first few) and remember an error of |writer| in |phase|
 * ("" while the workload runs, "setup", "count", "cleanup"). */
void bench_report_error(struct run *r, unsigned writer, const char *phase,
    int rc, const struct bench_err *e);
/* One line on stderr, "mstore-bench: " and |fmt| with |a| and |b|. */
void bench_note(const char *fmt, const char *a, const char *b);

/*
 * Setup, after every mailbox exists: deliver o->per_mailbox messages
 * into each mailbox, all writers sharing the work. Not timed. Returns 0,
 * or the first failure's errno after reporting it and aborting the run.
 */
int bench_work_fill(struct worker *w);

/*
 * After the workload, before cleanup: count the messages left in new/
 * and cur/ of this writer's mailboxes into w->in_new and w->in_cur. Not
 * timed. Returns 0, or a negative errno after reporting it.
 */
int bench_work_count(struct worker *w);

#endif /* BENCH_RUN_H */
