/*
 * mstore-bench.c - Maildir benchmark driver: parses the command line,
 * runs the workload (bench_work.c) against each TARGET in turn with the
 * same settings (W writer threads, each with its own session), and
 * reports rates and latency percentiles side by side, each rate as a
 * ratio to the first target's (the baseline measured in the same run).
 *
 * Threads and phases of one target's run (all under run->mu):
 *
 *   workers: session_open, setup_mailbox...  ready++  wait phase >= FILL
 *   main:    wait ready == nthreads           phase = FILL (every mailbox
 *                                            exists)
 *   workers: fill (read, mixed)              filled++ wait phase >= GO
 *   main:    wait filled == nthreads         phase = GO
 *   workers: workload until done or stop     finished++ wait CLEANUP
 *   main:    progress once a second          phase = CLEANUP (once
 *            until finished == nthreads      every writer is done, so no
 *                                            mailbox is counted or
 *                                            cleaned early)
 *   workers: count, cleanup_mailbox..., session_close; main joins,
 *            closes.
 *
 * Only the workload is timed: each operation from just before its first
 * target op to just after its last one returns. An error is never
 * dropped: each is counted, the first few are printed with the failing
 * step and strerror, and any error makes the exit status 1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bench_run.h"
#include "../cli.h"

#define PROG			"mstore-bench"
#define WRITERS_MAX		4096
#define MAILBOXES_MAX		1000000
#define PER_MAILBOX_MAX		1000000
#define SIZE_MAX_BYTES		(1ull << 30)
#define COUNT_DEFAULT		10000
#define READ_PER_MAILBOX_D	100	/* read with -d: messages per mailbox */
#define MIXED_PER_MAILBOX	10	/* mixed: per mailbox at the start */

static const struct bench_target_ops *const target_kinds[] = {
	&bench_dir_ops,
	&bench_mstore_ops,
	&bench_nfs_ops,
};

struct result {
	const char *target;
	const char *status;		/* "ok", "failed", "interrupted" */
	char error[640];
	uint64_t attempted, ops, errors, conflicts, empty, bytes, setup;
	uint64_t kind_ops[BENCH_KINDS];
	int counted;			/* in_new and in_cur are known */
	uint64_t in_new, in_cur;
	double seconds, rate;
	struct bench_hist hist;		/* every kind */
	struct bench_hist khist[BENCH_KINDS];
};

struct cfg {
	struct bench_opts o;
	const struct bench_workload *wl;
	int count_given, per_mailbox_given, seed_given, mix_given;
	struct target_spec *targets;
	size_t ntargets;
	struct bench_text *text;
	int json, quiet;
	uint8_t key[MST_KEY_MAX];
};

static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;
static int stderr_tty;
static int progress_shown;		/* guarded by print_mu */
static volatile sig_atomic_t interrupted;

/* --- messages on stderr --- */

/* Clear an unfinished progress line first. Caller holds print_mu. */
static void
clear_progress(void)
{
	if (progress_shown && stderr_tty)
		fputs("\r\033[K", stderr);
	progress_shown = 0;
}

void
bench_report_error(struct run *r, unsigned writer, const char *phase,
    int rc, const struct bench_err *e)
{
	unsigned n = atomic_fetch_add(&r->shown, 1);
	char line[640];

	snprintf(line, sizeof line, "%s%swriter %u: %s: %s", phase,
	    phase[0] ? ": " : "", writer, e->what, strerror(-rc));
	pthread_mutex_lock(&print_mu);
	if (r->first_error[0] == '\0')
		snprintf(r->first_error, sizeof r->first_error, "%s", line);
	if (n < BENCH_ERRORS_SHOWN) {
		clear_progress();
		fprintf(stderr, "%s: %s: %s\n", PROG, r->ts->arg, line);
	}
	pthread_mutex_unlock(&print_mu);
}

/* What the main thread shows while it waits for the writers. */
enum wait_kind { WAIT_SILENT, WAIT_FILL, WAIT_RUN };

static uint64_t
sum_ops(const struct worker *w)
{
	uint64_t n = 0;
	unsigned k;

	for (k = 0; k < BENCH_KINDS; k++)
		n += atomic_load_explicit(&w->ops[k], memory_order_relaxed);
	return n;
}

static void
progress(const struct run *r, struct worker *w, enum wait_kind k,
    uint64_t since_ns, uint64_t *last_ns, uint64_t *last_n)
{
	uint64_t now = cli_now_ns(), done = 0, errs = 0;
	double secs = (double)(now - since_ns) / 1e9;
	double cur = (double)(now - *last_ns) / 1e9;
	unsigned i;

	for (i = 0; i < r->o->writers; i++) {
		done += k == WAIT_FILL ? atomic_load_explicit(&w[i].filled,
		    memory_order_relaxed) : sum_ops(&w[i]);
		errs += atomic_load_explicit(&w[i].errors,
		    memory_order_relaxed);
	}
	pthread_mutex_lock(&print_mu);
	clear_progress();
	if (k == WAIT_FILL)
		fprintf(stderr, "%s: %s: setup: %" PRIu64 " of %" PRIu64
		    " messages delivered, %.0f/s%s", PROG, r->ts->arg, done,
		    r->o->per_mailbox * r->o->mailboxes,
		    secs > 0 ? (double)done / secs : 0.0,
		    stderr_tty ? "" : "\n");
	else
		fprintf(stderr, "%s: %s: %.0f s, %" PRIu64 " %s, %.0f/s "
		    "(last second %.0f/s), %" PRIu64 " errors%s", PROG,
		    r->ts->arg, secs, done, r->wl->did,
		    secs > 0 ? (double)done / secs : 0.0,
		    cur > 0 ? (double)(done - *last_n) / cur : 0.0, errs,
		    stderr_tty ? "" : "\n");
	progress_shown = 1;
	pthread_mutex_unlock(&print_mu);
	*last_ns = now;
	*last_n = done;
}

void
bench_note(const char *fmt, const char *a, const char *b)
{
	pthread_mutex_lock(&print_mu);
	clear_progress();
	fprintf(stderr, "%s: ", PROG);
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	pthread_mutex_unlock(&print_mu);
}

/* --- writers --- */

/* Wait, under run->mu, until main moves the run to |ph|. */
static void
wait_phase(struct run *r, unsigned *counter, enum phase ph)
{
	pthread_mutex_lock(&r->mu);
	(*counter)++;
	pthread_cond_broadcast(&r->cv);
	while (r->phase < ph)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

static int
setup_session(struct worker *w)
{
	struct run *r = w->run;
	const struct bench_target_ops *ops = r->ts->ops;
	struct bench_err e;
	unsigned mb;
	int rc = bench_rng_seed(&w->rng);

	if (rc < 0)
		snprintf(e.what, sizeof e.what, "getrandom");
	if (rc == 0)
		rc = ops->session_open(r->target, w->index, &w->session, &e);
	for (mb = w->index; rc == 0 && mb < r->o->mailboxes;
	    mb += r->o->writers)
		rc = ops->setup_mailbox(w->session, mb, &e);
	if (rc < 0) {
		bench_report_error(r, w->index, "setup", rc, &e);
		atomic_store(&r->abort, 1);
	}
	return rc;
}

static void
cleanup_session(struct worker *w)
{
	struct run *r = w->run;
	struct bench_err e;
	unsigned mb;
	int rc = 0;

	for (mb = w->index; !r->o->keep && rc == 0 && mb < r->o->mailboxes;
	    mb += r->o->writers) {
		rc = r->ts->ops->cleanup_mailbox(w->session, mb, &e);
		if (rc < 0) {
			atomic_fetch_add(&r->cleanup_errors, 1);
			bench_report_error(r, w->index, "cleanup", rc, &e);
		}
	}
	r->ts->ops->session_close(w->session);
	w->session = NULL;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	int rc = setup_session(w);

	wait_phase(r, &r->ready, PH_FILL);
	if (rc == 0 && r->wl->fills && !atomic_load(&r->abort))
		rc = bench_work_fill(w);
	wait_phase(r, &r->filled, PH_GO);
	if (rc == 0 && !atomic_load(&r->abort)) {
		w->start_ns = cli_now_ns();
		r->wl->run(w);
		w->end_ns = cli_now_ns();
	}
	wait_phase(r, &r->finished, PH_CLEANUP);
	if (rc == 0 && !atomic_load(&r->abort))
		(void)bench_work_count(w);	/* reports, sets count_failed */
	if (w->session)
		cleanup_session(w);
	return NULL;
}

/* --- one target --- */

static void
set_phase(struct run *r, enum phase ph)
{
	pthread_mutex_lock(&r->mu);
	r->phase = ph;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Wait until |n| writers have counted themselves in |counter|, showing
 * progress per |k| since |since_ns|. While the workload runs, end it on
 * time; in every phase, on a signal. */
static void
wait_writers(struct run *r, struct worker *w, unsigned *counter, unsigned n,
    enum wait_kind k, uint64_t since_ns, int quiet)
{
	uint64_t last_ns = since_ns, last_n = 0, now;
	struct timespec ts;

	pthread_mutex_lock(&r->mu);
	while (*counter < n) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 200 * 1000000;	/* notice signals quickly */
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (*counter >= n)
			break;
		pthread_mutex_unlock(&r->mu);
		now = cli_now_ns();
		if (interrupted)
			atomic_store(&r->stop, 1);
		if (k == WAIT_RUN && r->o->duration_ms &&
		    now - since_ns >= (uint64_t)r->o->duration_ms * 1000000u)
			atomic_store(&r->stop, 1);
		if (k != WAIT_SILENT && !quiet && now - last_ns >= 1000000000u)
			progress(r, w, k, since_ns, &last_ns, &last_n);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
}

static void
collect(struct run *r, struct worker *w, unsigned n, struct result *res)
{
	uint64_t start = UINT64_MAX, end = 0;
	unsigned i, k;

	bench_hist_init(&res->hist);
	for (k = 0; k < BENCH_KINDS; k++)
		bench_hist_init(&res->khist[k]);
	for (i = 0; i < n; i++) {
		for (k = 0; k < BENCH_KINDS; k++) {
			if (!(r->wl->kinds & (1u << k)))
				continue;
			res->kind_ops[k] += atomic_load(&w[i].ops[k]);
			bench_hist_merge(&res->khist[k], &w[i].hist[k]);
			bench_hist_merge(&res->hist, &w[i].hist[k]);
		}
		res->errors += atomic_load(&w[i].errors);
		res->conflicts += atomic_load(&w[i].conflicts);
		res->empty += atomic_load(&w[i].empty);
		res->setup += atomic_load(&w[i].filled);
		res->bytes += w[i].bytes;
		if (w[i].start_ns && w[i].start_ns < start)
			start = w[i].start_ns;
		if (w[i].end_ns > end)
			end = w[i].end_ns;
	}
	for (k = 0; k < BENCH_KINDS; k++)
		res->ops += res->kind_ops[k];
	res->attempted = res->ops + res->errors;
	if (end > start)
		res->seconds = (double)(end - start) / 1e9;
	if (res->seconds > 0)
		res->rate = (double)res->ops / res->seconds;
	if (r->first_error[0])
		snprintf(res->error, sizeof res->error, "%s", r->first_error);
}

/* What was left in new/ and cur/, once every writer has counted. */
static void
collect_counts(struct run *r, struct worker *w, unsigned n,
    struct result *res)
{
	unsigned i;

	res->counted = !atomic_load(&r->abort) &&
	    !atomic_load(&r->count_failed);
	for (i = 0; i < n; i++) {
		res->in_new += w[i].in_new;
		res->in_cur += w[i].in_cur;
	}
}

static int
worker_init(struct worker *w, struct run *r, unsigned index)
{
	unsigned k;

	w->run = r;
	w->index = index;
	w->body = malloc(r->o->size_max ? (size_t)r->o->size_max : 1);
	w->hist = calloc(BENCH_KINDS, sizeof *w->hist);
	if (w->body == NULL || w->hist == NULL)
		return ENOMEM;
	for (k = 0; k < BENCH_KINDS; k++)
		if (r->wl->kinds & (1u << k))
			bench_hist_init(&w->hist[k]);
	return 0;
}

static void
worker_free(struct worker *w)
{
	free(w->body);
	free(w->hist);
}

/* Start the writers; returns how many started. */
static unsigned
start_writers(struct run *r, struct worker *w, const struct cfg *c)
{
	unsigned i;
	int rc;

	for (i = 0; i < c->o.writers; i++) {
		rc = worker_init(&w[i], r, i);
		if (rc == 0)
			rc = pthread_create(&w[i].tid, NULL, worker_main,
			    &w[i]);
		if (rc != 0) {
			worker_free(&w[i]);
			snprintf(r->first_error, sizeof r->first_error,
			    "starting writer %u: %s", i, strerror(rc));
			bench_note("%s: %s", r->ts->arg, r->first_error);
			atomic_store(&r->abort, 1);
			break;
		}
	}
	return i;
}

static void
run_writers(struct run *r, const struct cfg *c, struct result *res)
{
	struct worker *w = calloc(c->o.writers, sizeof *w);
	unsigned n, i;

	if (w == NULL) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return;
	}
	n = start_writers(r, w, c);
	wait_writers(r, w, &r->ready, n, WAIT_SILENT, 0, 1);
	set_phase(r, PH_FILL);
	wait_writers(r, w, &r->filled, n, c->wl->fills ? WAIT_FILL :
	    WAIT_SILENT, cli_now_ns(), c->quiet);
	set_phase(r, PH_GO);
	wait_writers(r, w, &r->finished, n, WAIT_RUN, cli_now_ns(),
	    c->quiet);
	pthread_mutex_lock(&print_mu);
	clear_progress();
	pthread_mutex_unlock(&print_mu);
	collect(r, w, n, res);
	if (!c->quiet && !c->o.keep && stderr_tty)
		fprintf(stderr, "%s: %s: cleaning up...", PROG, r->ts->arg);
	set_phase(r, PH_CLEANUP);
	for (i = 0; i < n; i++)
		pthread_join(w[i].tid, NULL);
	collect_counts(r, w, n, res);
	for (i = 0; i < n; i++)
		worker_free(&w[i]);
	if (!c->quiet && !c->o.keep && stderr_tty)
		fputs("\r\033[K", stderr);
	free(w);
}

static void
run_target(const struct cfg *c, const struct target_spec *ts,
    struct result *res)
{
	struct run r = { .o = &c->o, .wl = c->wl, .ts = ts, .text = c->text };
	struct bench_err e = { "" };
	pthread_condattr_t ca;
	int rc;

	res->target = ts->arg;
	res->status = "failed";
	rc = ts->ops->open(ts->loc, &c->o, &r.target, &e);
	if (rc < 0) {
		snprintf(res->error, sizeof res->error, "%s: %s", e.what,
		    strerror(-rc));
		bench_note("%s: %s", ts->arg, res->error);
		return;
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r.cv, &ca);
	pthread_condattr_destroy(&ca);
	run_writers(&r, c, res);
	if (res->error[0] == '\0' && r.first_error[0])	/* counting */
		snprintf(res->error, sizeof res->error, "%s", r.first_error);
	if (!atomic_load(&r.abort))
		res->status = interrupted ? "interrupted" : "ok";
	rc = ts->ops->close(r.target, c->o.keep, &e);
	if (rc < 0 || atomic_load(&r.cleanup_errors)) {
		if (rc < 0)
			bench_note("%s: cleanup: %s", ts->arg, e.what);
		bench_note("%s: %s", ts->arg, "cleanup incomplete: files of "
		    "this run are left behind");
		if (res->error[0] == '\0')
			snprintf(res->error, sizeof res->error, "cleanup "
			    "incomplete");
		if (strcmp(res->status, "ok") == 0)
			res->status = "cleanup-failed";
	}
	if (atomic_load(&r.shown) > BENCH_ERRORS_SHOWN)
		fprintf(stderr, "%s: %s: %u more error(s) not shown\n", PROG,
		    ts->arg, atomic_load(&r.shown) - BENCH_ERRORS_SHOWN);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
}

/* --- report --- */

static const char *const kind_names[BENCH_KINDS] = {
	[BENCH_K_DELIVER] = "deliver",
	[BENCH_K_READ] = "read",
	[BENCH_K_EXPUNGE] = "expunge",
};

/* The JSON count of each kind. */
static const char *const kind_counts[BENCH_KINDS] = {
	[BENCH_K_DELIVER] = "delivered",
	[BENCH_K_READ] = "read",
	[BENCH_K_EXPUNGE] = "expunged",
};

static double
ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* A workload of several kinds of operation draws them from --mix. */
static int
mixes(const struct bench_workload *wl)
{
	return (wl->kinds & (wl->kinds - 1)) != 0;
}

static void
print_header(const struct cfg *c)
{
	const struct bench_opts *o = &c->o;

	printf("%s: %s", PROG, c->wl->name);
	if (mixes(c->wl))
		printf(" %u:%u:%u", o->mix[BENCH_K_DELIVER],
		    o->mix[BENCH_K_READ], o->mix[BENCH_K_EXPUNGE]);
	printf(", %u writers, ", o->writers);
	if (o->size_dist)
		printf("sizes of -s dist");
	else
		printf("%" PRIu64 "-byte messages", o->size);
	printf(", %u mailboxes", o->mailboxes);
	if (c->wl->fills)
		printf(" of %" PRIu64 " messages", o->per_mailbox);
	if (o->count)
		printf(", %" PRIu64 " %s per target", o->count, c->wl->noun);
	else
		printf(", %.1f s per target", o->duration_ms / 1000.0);
	if (o->size_dist || mixes(c->wl))
		printf(", seed %" PRIu64, o->seed);
	printf("\n\n");
}

/* mixed: how the operations came out, per kind. */
static void
print_counts(const struct result *res, size_t n, int tw)
{
	size_t i;

	printf("\n%-*s %9s %9s %9s %9s %9s\n", tw, "target", "delivered",
	    "read", "expunged", "conflicts", "empty");
	for (i = 0; i < n; i++)
		printf("%-*s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
		    " %9" PRIu64 "\n", tw, res[i].target,
		    res[i].kind_ops[BENCH_K_DELIVER],
		    res[i].kind_ops[BENCH_K_READ],
		    res[i].kind_ops[BENCH_K_EXPUNGE], res[i].conflicts,
		    res[i].empty);
}

static void
print_row(const struct result *x, int tw, double base)
{
	if (strcmp(x->status, "failed") == 0 && x->attempted == 0) {
		printf("%-*s failed: %s\n", tw, x->target, x->error);
		return;
	}
	printf("%-*s %9" PRIu64 " %6" PRIu64 " %8.2f %9.1f %8.2f %8.2f "
	    "%8.2f %8.2f ", tw, x->target, x->ops, x->errors, x->seconds,
	    x->rate, ms(bench_hist_quantile(&x->hist, 0.5)),
	    ms(bench_hist_quantile(&x->hist, 0.99)),
	    ms(bench_hist_quantile(&x->hist, 0.999)), ms(x->hist.max_ns));
	if (base > 0)
		printf("%7.2f", x->rate / base);
	else
		printf("%7s", "-");
	if (strcmp(x->status, "ok") != 0)
		printf("  (%s)", x->status);
	putchar('\n');
}

static void
print_table(const struct cfg *c, const struct result *res, size_t n)
{
	int tw = 6;
	size_t i;

	for (i = 0; i < n; i++)
		if ((int)strlen(res[i].target) > tw)
			tw = (int)strlen(res[i].target);
	print_header(c);
	printf("%-*s %9s %6s %8s %9s %8s %8s %8s %8s %7s\n", tw, "target",
	    c->wl->did, "errors", "time s", c->wl->col_rate, "p50 ms",
	    "p99 ms", "p999 ms", "max ms", "ratio");
	for (i = 0; i < n; i++)
		print_row(&res[i], tw, res[0].rate);
	if (mixes(c->wl))
		print_counts(res, n, tw);
	if (c->wl->kinds == 1u << BENCH_K_READ)
		printf("\nlatency: per message, read whole and renamed into "
		    "cur/ as seen\n");
	if (mixes(c->wl))
		printf("\nlatency: per operation of any kind (per kind with "
		    "--json); conflicts: %s\n", "messages another writer "
		    "removed first (picked again)");
	if (n > 1)
		printf("\nratio: %s of each target divided by those of %s "
		    "(the baseline)\n", c->wl->unit, res[0].target);
}

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* {"n":N,"mean":...,"max":...}, without "n" for the overall latency. */
static void
json_latency(const struct bench_hist *h, int with_n)
{
	putchar('{');
	if (with_n)
		printf("\"n\":%" PRIu64 ",", h->n);
	printf("\"mean\":%.4f,\"p50\":%.4f,\"p99\":%.4f,\"p999\":%.4f,"
	    "\"max\":%.4f}", h->n ? ms(h->sum_ns / h->n) : 0.0,
	    ms(bench_hist_quantile(h, 0.5)), ms(bench_hist_quantile(h, 0.99)),
	    ms(bench_hist_quantile(h, 0.999)), ms(h->max_ns));
}

static void
json_result(const struct cfg *c, const struct result *x, double base)
{
	unsigned k, first = 1;

	printf("{\"target\":");
	json_str(x->target);
	printf(",\"status\":\"%s\",\"error\":", x->status);
	if (x->error[0])
		json_str(x->error);
	else
		printf("null");
	printf(",\"attempted\":%" PRIu64 ",\"ops\":%" PRIu64, x->attempted,
	    x->ops);
	for (k = 0; k < BENCH_KINDS; k++)
		printf(",\"%s\":%" PRIu64, kind_counts[k], x->kind_ops[k]);
	printf(",\"conflicts\":%" PRIu64 ",\"empty\":%" PRIu64 ",\"errors\":%"
	    PRIu64 ",\"setup_delivered\":%" PRIu64, x->conflicts, x->empty,
	    x->errors, x->setup);
	if (x->counted)
		printf(",\"in_new\":%" PRIu64 ",\"in_cur\":%" PRIu64,
		    x->in_new, x->in_cur);
	else
		printf(",\"in_new\":null,\"in_cur\":null");
	printf(",\"seconds\":%.6f,\"bytes\":%" PRIu64 ",\"deliveries_per_s\":"
	    "%.3f,\"ops_per_s\":%.3f,\"unit\":\"%s\",\"latency_ms\":",
	    x->seconds, x->bytes, x->rate, x->rate, c->wl->unit);
	json_latency(&x->hist, 0);
	printf(",\"latency_by_kind\":{");
	for (k = 0; k < BENCH_KINDS; k++) {
		if (!(c->wl->kinds & (1u << k)))
			continue;
		printf("%s\"%s\":", first ? "" : ",", kind_names[k]);
		json_latency(&x->khist[k], 1);
		first = 0;
	}
	printf("},\"ratio\":");
	if (base > 0)
		printf("%.4f}", x->rate / base);
	else
		printf("null}");
}

static void
print_json(const struct cfg *c, const struct result *res, size_t n)
{
	const struct bench_opts *o = &c->o;
	size_t i;

	printf("{\"tool\":\"%s\",\"version\":\"%s\",\"workload\":\"%s\","
	    "\"unit\":\"%s\",\"writers\":%u,", PROG, PACKAGE_VERSION,
	    c->wl->name, c->wl->unit, o->writers);
	if (o->size_dist)
		printf("\"sizes\":\"dist\",\"size\":null,");
	else
		printf("\"sizes\":\"fixed\",\"size\":%" PRIu64 ",", o->size);
	printf("\"seed\":%" PRIu64 ",\"mailboxes\":%u,", o->seed,
	    o->mailboxes);
	if (c->wl->fills)
		printf("\"per_mailbox\":%" PRIu64 ",", o->per_mailbox);
	else
		printf("\"per_mailbox\":null,");
	if (mixes(c->wl))
		printf("\"mix\":{\"deliver\":%u,\"read\":%u,\"expunge\":%u},",
		    o->mix[BENCH_K_DELIVER], o->mix[BENCH_K_READ],
		    o->mix[BENCH_K_EXPUNGE]);
	else
		printf("\"mix\":null,");
	if (o->count)
		printf("\"count\":%" PRIu64 ",\"duration_s\":null,", o->count);
	else
		printf("\"count\":null,\"duration_s\":%.3f,",
		    o->duration_ms / 1000.0);
	printf("\"baseline\":");
	json_str(res[0].target);
	printf(",\"targets\":[");
	for (i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_result(c, &res[i], res[0].rate);
	}
	printf("]}\n");
}

/* --- command line --- */

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f,
	    "Usage: %s [options] TARGET...\n"
	    "       %s --help | --version\n"
	    "\n"
	    "Maildir benchmark: delivering, reading, or a mix. Runs the same "
	    "workload\nagainst each TARGET in turn and reports each rate also "
	    "as a ratio to the\nfirst TARGET's.\n"
	    "\n"
	    "Targets:\n", PROG, PROG);
	for (i = 0; i < sizeof target_kinds / sizeof target_kinds[0]; i++) {
		fprintf(f, "  %s\n", target_kinds[i]->syntax);
		if (target_kinds[i]->unavailable)
			fprintf(f, "      (%s)\n", target_kinds[i]->unavailable);
	}
	fprintf(f,
	    "\n"
	    "Options:\n"
	    "  -w, --writers W        writer threads (default 8)\n"
	    "  -s, --size SIZE|dist   message size, K/M suffixes (default "
	    "4096), or dist:\n"
	    "                         sizes of real mail, 2 KiB to 2 MiB\n"
	    "  -m, --mailboxes M      mailboxes to spread messages over "
	    "(default 100)\n"
	    "  -n, --count COUNT      operations per target (default 10000);"
	    " read: messages\n"
	    "                         to read, COUNT/M per mailbox\n"
	    "  -d, --duration SECS    run each target this long instead of "
	    "-n\n"
	    "      --workload NAME    deliver (default), read (list, read "
	    "whole, mark seen)\n"
	    "                         or mixed (deliver, read, expunge)\n"
	    "      --per-mailbox K    read, mixed: messages put in each "
	    "mailbox at setup\n"
	    "                         (read: COUNT/M, or 100 with -d; mixed: "
	    "10)\n"
	    "      --mix D:R:E        mixed: percent of deliveries, reads, "
	    "expunges\n"
	    "                         (default 70:25:5)\n"
	    "      --seed N           seed of the -s dist sizes and the mix "
	    "(default random)\n"
	    "      --write-size N     dir: targets write each message in "
	    "write()s of at most\n"
	    "                         N bytes, K/M suffixes (Postfix: 4096; "
	    "default: one)\n"
	    "  -k, --key KEYFILE      shared key for mstore:// targets\n"
	    "  -t, --timeout SECS     timeout of mstore:// and nfs:// calls "
	    "(default 10)\n"
	    "      --json             print one JSON object instead of the "
	    "table\n"
	    "      --keep             leave the mailboxes and messages in "
	    "place\n"
	    "  -q, --quiet            no progress lines on stderr\n"
	    "  -h, --help             show this help and exit\n"
	    "  -V, --version          show the version and exit\n"
	    "\n"
	    "Example: %s -w 32 dir:/var/tmp/x mstore://127.0.0.1:4870\n"
	    "Exit status: 0 ok, 1 errors or a failed target, 2 usage error. "
	    "See mstore-bench(1).\n", PROG);
}

static int
usage_error(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "%s: ", PROG);
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\nTry '%s --help'.\n", PROG);
	return CLI_EXIT_USAGE;
}

static int
parse_target(const char *arg, struct target_spec *ts)
{
	const struct bench_target_ops *k;
	struct bench_err e = { "" };
	size_t i, n;

	for (i = 0; i < sizeof target_kinds / sizeof target_kinds[0]; i++) {
		k = target_kinds[i];
		n = strlen(k->scheme);
		if (strncmp(arg, k->scheme, n) != 0)
			continue;
		if (k->unavailable) {
			fprintf(stderr, "%s: target %s: %s\n", PROG, arg,
			    k->unavailable);
			return CLI_EXIT_FAIL;
		}
		ts->arg = arg;
		ts->ops = k;
		ts->loc = arg + n;
		if (k->check(ts->loc, &e) < 0)
			return usage_error("target %s: %s", arg, e.what);
		return 0;
	}
	return usage_error("target %s: unknown kind; expected dir:PATH, "
	    "mstore://HOST:PORT or %s", arg, "nfs://HOST/EXPORT");
}

static int
opt_workload(const char *s, struct cfg *c)
{
	size_t i;

	for (i = 0; i < bench_work_nloads; i++)
		if (strcmp(s, bench_work_loads[i].name) == 0) {
			c->wl = &bench_work_loads[i];
			return 0;
		}
	return usage_error("--workload %s: unknown; the workloads are: %s",
	    s, "deliver, read, mixed");
}

static int
opt_size(const char *s, struct bench_opts *o)
{
	if (strcmp(s, "dist") == 0) {
		o->size_dist = 1;
		o->size = 0;
		return 0;
	}
	o->size_dist = 0;
	if (cli_parse_size(s, SIZE_MAX_BYTES, &o->size) < 0)
		return usage_error("-s %s: expected bytes with an optional K, "
		    "M or G suffix, at most %s, or dist", s, "1G");
	return 0;
}

/* "D:R:E", three percentages that add up to 100. */
static int
opt_mix(const char *s, struct bench_opts *o)
{
	unsigned v[BENCH_KINDS], k;
	char *end;
	const char *p = s;
	unsigned long x;

	for (k = 0; k < BENCH_KINDS; k++) {
		errno = 0;
		x = *p >= '0' && *p <= '9' ? strtoul(p, &end, 10) : 101;
		if (x > 100 || errno != 0 ||
		    *end != (k + 1 < BENCH_KINDS ? ':' : '\0'))
			break;
		v[k] = (unsigned)x;
		p = end + 1;
	}
	if (k < BENCH_KINDS || v[0] + v[1] + v[2] != 100)
		return usage_error("--mix %s: expected %s", s, "DELIVER:READ:"
		    "EXPUNGE, percentages adding up to 100 (70:25:5)");
	memcpy(o->mix, v, sizeof v);
	return 0;
}

/*
 * Fill in what the workload needs from what was given: the messages per
 * mailbox, the count, the mix. Returns -1, or the usage exit status.
 */
static int
settle_workload(struct cfg *c)
{
	struct bench_opts *o = &c->o;
	char m[24];

	if (o->count && o->duration_ms)
		return usage_error("%s%s", "-n and -d exclude each other", "");
	if (c->mix_given && !mixes(c->wl))
		return usage_error("--mix is for %s%s", "--workload mixed", "");
	if (c->per_mailbox_given && !c->wl->fills)
		return usage_error("--per-mailbox is for %s%s",
		    "--workload read or mixed", "");
	o->size_max = o->size_dist ? BENCH_DIST_MAX : o->size;
	if (!c->wl->fills || mixes(c->wl)) {
		if (mixes(c->wl) && !c->per_mailbox_given)
			o->per_mailbox = MIXED_PER_MAILBOX;
		if (o->count == 0 && o->duration_ms == 0)
			o->count = COUNT_DEFAULT;
		return -1;
	}
	/* read: COUNT messages to read, or K per mailbox. */
	if (c->per_mailbox_given && c->count_given)
		return usage_error("%s%s", "-n and --per-mailbox exclude each "
		    "other with --workload read", "");
	if (o->duration_ms && !c->per_mailbox_given)
		o->per_mailbox = READ_PER_MAILBOX_D;
	if (o->duration_ms == 0 && !c->per_mailbox_given) {
		o->per_mailbox = (c->count_given ? o->count : COUNT_DEFAULT) /
		    o->mailboxes;
		snprintf(m, sizeof m, "%u", o->mailboxes);
		if (o->per_mailbox == 0)
			return usage_error("-n is less than -m %s: read needs "
			    "at least one message per mailbox%s", m, "");
	}
	if (o->per_mailbox == 0)
		return usage_error("--per-mailbox 0: %s%s", "read needs at "
		    "least one message per mailbox", "");
	if (o->duration_ms == 0)
		o->count = o->per_mailbox * o->mailboxes;
	return -1;
}

static int
opt_count(const char *opt, const char *s, uint64_t min, uint64_t max,
    uint64_t *out)
{
	char lim[96];

	if (cli_parse_count(s, min, max, out) == 0)
		return 0;
	snprintf(lim, sizeof lim, "%s: expected a number from %" PRIu64
	    " to %" PRIu64, s, min, max);
	return usage_error("%s %s", opt, lim);
}

static void
host_name(char *buf, size_t cap)
{
	size_t i;

	if (gethostname(buf, cap) < 0 || buf[0] == '\0')
		snprintf(buf, cap, "localhost");
	buf[cap - 1] = '\0';
	/* '/' and ':' cannot appear in a Maildir name's host part. */
	for (i = 0; buf[i]; i++)
		if (buf[i] == '/' || buf[i] == ':' || buf[i] < 0x21 ||
		    buf[i] > 0x7e)
			buf[i] = '_';
}

/* Returns -1 to go on, or the exit status. */
static int
parse_args(int argc, char **argv, struct cfg *c)
{
	enum { O_JSON = 256, O_KEEP, O_WORKLOAD, O_PER_MAILBOX, O_MIX,
		O_SEED, O_WRITE_SIZE };
	static const struct option opts[] = {
		{ "writers", required_argument, NULL, 'w' },
		{ "size", required_argument, NULL, 's' },
		{ "mailboxes", required_argument, NULL, 'm' },
		{ "count", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "key", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 't' },
		{ "workload", required_argument, NULL, O_WORKLOAD },
		{ "per-mailbox", required_argument, NULL, O_PER_MAILBOX },
		{ "mix", required_argument, NULL, O_MIX },
		{ "seed", required_argument, NULL, O_SEED },
		{ "write-size", required_argument, NULL, O_WRITE_SIZE },
		{ "json", no_argument, NULL, O_JSON },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *keyfile = NULL;
	uint64_t v;
	size_t i;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "w:s:m:n:d:k:t:qhV", opts,
	    NULL)) != -1) {
		rc = 0;
		switch (ch) {
		case 'w':
			rc = opt_count("-w", optarg, 1, WRITERS_MAX, &v);
			c->o.writers = (unsigned)v;
			break;
		case 's':
			rc = opt_size(optarg, &c->o);
			break;
		case 'm':
			rc = opt_count("-m", optarg, 1, MAILBOXES_MAX, &v);
			c->o.mailboxes = (unsigned)v;
			break;
		case 'n':
			rc = opt_count("-n", optarg, 1, UINT64_MAX / 2,
			    &c->o.count);
			c->count_given = 1;
			break;
		case 'd':
			if (cli_parse_seconds(optarg, &c->o.duration_ms) < 0)
				return usage_error("-d %s: expected seconds "
				    "(more than 0, at most %s)", optarg,
				    "86400");
			break;
		case 'k':
			keyfile = optarg;
			break;
		case 't':
			if (cli_parse_seconds(optarg,
			    &c->o.client.timeout_ms) < 0)
				return usage_error("-t %s: expected seconds "
				    "(more than 0, at most %s)", optarg,
				    "86400");
			break;
		case O_WORKLOAD:
			rc = opt_workload(optarg, c);
			break;
		case O_PER_MAILBOX:
			rc = opt_count("--per-mailbox", optarg, 0,
			    PER_MAILBOX_MAX, &c->o.per_mailbox);
			c->per_mailbox_given = 1;
			break;
		case O_MIX:
			rc = opt_mix(optarg, &c->o);
			c->mix_given = 1;
			break;
		case O_SEED:
			rc = opt_count("--seed", optarg, 0, UINT64_MAX,
			    &c->o.seed);
			c->seed_given = 1;
			break;
		case O_WRITE_SIZE:
			if (cli_parse_size(optarg, SIZE_MAX_BYTES,
			    &c->o.write_size) < 0 || c->o.write_size == 0)
				return usage_error("--write-size %s: expected "
				    "bytes with an optional K, M or G suffix, "
				    "more than 0, at most %s", optarg, "1G");
			break;
		case O_JSON:
			c->json = 1;
			break;
		case O_KEEP:
			c->o.keep = 1;
			break;
		case 'q':
			c->quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("%s %s\n", PROG, PACKAGE_VERSION);
			return CLI_EXIT_OK;
		default:
			fprintf(stderr, "Try '%s --help'.\n", PROG);
			return CLI_EXIT_USAGE;
		}
		if (rc)
			return rc;
	}
	rc = settle_workload(c);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return usage_error("%s%s", "missing TARGET", "");
	c->ntargets = (size_t)(argc - optind);
	c->targets = calloc(c->ntargets, sizeof *c->targets);
	if (c->targets == NULL)
		return usage_error("%s%s", "out of memory", "");
	for (i = 0; i < c->ntargets; i++) {
		rc = parse_target(argv[optind + (int)i], &c->targets[i]);
		if (rc)
			return rc;
	}
	if (keyfile && cli_key_load(PROG, keyfile, c->key, &c->o.client) < 0)
		return CLI_EXIT_FAIL;
	return -1;
}

void
bench_base_name(const struct bench_opts *o, unsigned i, char *buf,
    size_t cap)
{
	if (i == 0)
		snprintf(buf, cap, "bench-%d", (int)o->pid);
	else
		snprintf(buf, cap, "bench-%d-%u", (int)o->pid, i + 1);
}

/* A seed of 32 bits: short enough to type back with --seed. */
static int
pick_seed(uint64_t *out)
{
	uint32_t x;

	if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x)
		return -1;
	*out = x;
	return 0;
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void
catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int
main(int argc, char **argv)
{
	struct cfg c = {
		.o = { .writers = 8, .size = 4096, .mailboxes = 100,
		    .mix = { 70, 25, 5 },
		    .client = { .name = PROG " " PACKAGE_VERSION } },
		.wl = &bench_work_loads[0],
	};
	struct result *res;
	size_t i, ran = 0;
	int rc, status = CLI_EXIT_OK;

	rc = parse_args(argc, argv, &c);
	if (rc >= 0) {
		free(c.targets);
		return rc;
	}
	if (!c.seed_given && pick_seed(&c.o.seed) < 0) {
		fprintf(stderr, "%s: getrandom: %s\n", PROG, strerror(errno));
		free(c.targets);
		return CLI_EXIT_FAIL;
	}
	c.o.pid = getpid();
	host_name(c.o.host, sizeof c.o.host);
	stderr_tty = isatty(STDERR_FILENO);
	res = calloc(c.ntargets, sizeof *res);
	c.text = bench_text_new();
	if (res == NULL || c.text == NULL) {
		fprintf(stderr, "%s: cannot make the message text: out of "
		    "memory or no random bytes\n", PROG);
		free(res);
		free(c.targets);
		return CLI_EXIT_FAIL;
	}
	catch_signals();
	for (i = 0; i < c.ntargets && !interrupted; i++, ran++)
		run_target(&c, &c.targets[i], &res[i]);
	if (ran > 0) {
		if (c.json)
			print_json(&c, res, ran);
		else
			print_table(&c, res, ran);
	}
	for (i = 0; i < ran; i++)
		if (strcmp(res[i].status, "ok") != 0 || res[i].errors ||
		    !res[i].counted || (c.o.count && res[i].ops != c.o.count))
			status = CLI_EXIT_FAIL;
	if (interrupted) {
		fprintf(stderr, "%s: interrupted\n", PROG);
		status = CLI_EXIT_FAIL;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "%s: writing stdout: %s\n", PROG,
		    strerror(errno));
		status = CLI_EXIT_FAIL;
	}
	bench_text_free(c.text);
	free(res);
	free(c.targets);
	return status;
}
