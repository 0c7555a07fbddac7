/*
 * mstore-bench.c - delivery benchmark driver: parses the command line,
 * runs the workload against each TARGET in turn with the same settings
 * (W writer threads, each with its own session), and reports rates and
 * latency percentiles side by side, each rate as a ratio to the first
 * target's (the baseline measured in the same run).
 *
 * Threads and phases of one target's run (all under run->mu):
 *
 *   workers: session_open, setup_mailbox...  ready++  wait phase >= GO
 *   main:    wait ready == nthreads           phase = GO
 *   workers: workload until done or stop     finished++ wait CLEANUP
 *   main:    progress once a second          phase = CLEANUP (once
 *            until finished == nthreads      every writer is done, so no
 *                                            mailbox is cleaned early)
 *   workers: cleanup_mailbox..., session_close; main joins, closes.
 *
 * Only setup and cleanup are untimed; a delivery is timed from just
 * before the target's deliver op to just after it returns. An error is
 * never dropped: each is counted, the first few are printed with the
 * failing step and strerror, and any error makes the exit status 1.
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
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define PROG			"mstore-bench"
#define ERRORS_SHOWN		5	/* error lines printed per target */
#define MAX_CONSECUTIVE_ERRORS	100	/* a writer gives up after these */
#define WRITERS_MAX		4096
#define MAILBOXES_MAX		1000000
#define SIZE_MAX_BYTES		(1ull << 30)

static const struct bench_target_ops *const target_kinds[] = {
	&bench_dir_ops,
	&bench_mstore_ops,
	&bench_nfs_ops,
};

struct worker;

/* A workload: what each writer does between setup and cleanup. Reading
 * workloads ("read", "mixed") add their loops here and the target ops
 * they need (list, fetch) to struct bench_target_ops. */
struct workload {
	const char *name;
	void (*run)(struct worker *w);
};

static void deliver_loop(struct worker *w);

static const struct workload workloads[] = {
	{ "deliver", deliver_loop },
};

struct target_spec {
	const char *arg;			/* as given: "dir:/var/tmp/x" */
	const struct bench_target_ops *ops;
	const char *loc;			/* arg without the scheme */
};

enum phase { PH_SETUP, PH_GO, PH_CLEANUP };

struct run {
	const struct bench_opts *o;
	const struct workload *wl;
	const struct target_spec *ts;
	const struct bench_text *text;
	struct bench_target *target;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum phase phase;		/* guarded by mu */
	unsigned ready, finished;	/* guarded by mu */
	atomic_bool stop;		/* deliveries end */
	atomic_bool abort;		/* a setup failed: measure nothing */
	atomic_uint_fast64_t next;	/* next message ticket */
	atomic_uint shown;		/* errors printed so far */
	atomic_uint cleanup_errors;
	char first_error[640];		/* guarded by print_mu */
};

struct worker {
	struct run *run;
	unsigned index;
	pthread_t tid;
	struct bench_session *session;
	struct bench_rng rng;
	uint8_t *body;
	uint64_t seq;
	uint64_t start_ns, end_ns;	/* of this writer's timed phase */
	atomic_uint_fast64_t delivered;
	atomic_uint_fast64_t errors;
	struct bench_hist hist;
};

struct result {
	const char *target;
	const char *status;		/* "ok", "failed", "interrupted" */
	char error[640];
	uint64_t attempted, delivered, errors;
	double seconds, rate;
	struct bench_hist hist;
};

struct cfg {
	struct bench_opts o;
	const struct workload *wl;
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

static void
report_error(struct run *r, unsigned writer, const char *phase, int rc,
    const struct bench_err *e)
{
	unsigned n = atomic_fetch_add(&r->shown, 1);
	char line[640];

	snprintf(line, sizeof line, "%s%swriter %u: %s: %s", phase,
	    phase[0] ? ": " : "", writer, e->what, strerror(-rc));
	pthread_mutex_lock(&print_mu);
	if (r->first_error[0] == '\0')
		snprintf(r->first_error, sizeof r->first_error, "%s", line);
	if (n < ERRORS_SHOWN) {
		clear_progress();
		fprintf(stderr, "%s: %s: %s\n", PROG, r->ts->arg, line);
	}
	pthread_mutex_unlock(&print_mu);
}

static void
progress(const struct run *r, struct worker *w, uint64_t go_ns,
    uint64_t *last_ns, uint64_t *last_n)
{
	uint64_t now = cli_now_ns(), done = 0, errs = 0;
	double secs = (double)(now - go_ns) / 1e9;
	double cur = (double)(now - *last_ns) / 1e9;
	unsigned i;

	for (i = 0; i < r->o->writers; i++) {
		done += atomic_load_explicit(&w[i].delivered,
		    memory_order_relaxed);
		errs += atomic_load_explicit(&w[i].errors,
		    memory_order_relaxed);
	}
	pthread_mutex_lock(&print_mu);
	clear_progress();
	fprintf(stderr, "%s: %s: %.0f s, %" PRIu64 " delivered, %.0f/s "
	    "(last second %.0f/s), %" PRIu64 " errors%s", PROG, r->ts->arg,
	    secs, done, secs > 0 ? (double)done / secs : 0.0,
	    cur > 0 ? (double)(done - *last_n) / cur : 0.0, errs,
	    stderr_tty ? "" : "\n");
	progress_shown = 1;
	pthread_mutex_unlock(&print_mu);
	*last_ns = now;
	*last_n = done;
}

static void
note(const char *fmt, const char *a, const char *b)
{
	pthread_mutex_lock(&print_mu);
	clear_progress();
	fprintf(stderr, "%s: ", PROG);
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	pthread_mutex_unlock(&print_mu);
}

/* --- writers --- */

static void
deliver_loop(struct worker *w)
{
	struct run *r = w->run;
	const struct bench_opts *o = r->o;
	struct bench_msg m = { .body = w->body, .len = o->size };
	struct bench_err e;
	char name[256];
	unsigned consecutive = 0;
	uint64_t ticket, t0, t1;
	int rc;

	m.name = name;
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		ticket = atomic_fetch_add(&r->next, 1);
		if (o->count && ticket >= o->count)
			break;
		m.mbox = (unsigned)(ticket % o->mailboxes);
		bench_msg_name(o, w->index, w->seq++, name, sizeof name);
		bench_msg_body(&w->rng, r->text, o, m.mbox, name, w->body,
		    o->size);
		t0 = cli_now_ns();
		rc = r->ts->ops->deliver(w->session, &m, &e);
		t1 = cli_now_ns();
		if (rc == 0) {
			bench_hist_add(&w->hist, t1 - t0);
			atomic_fetch_add_explicit(&w->delivered, 1,
			    memory_order_relaxed);
			consecutive = 0;
			continue;
		}
		atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
		report_error(r, w->index, "", rc, &e);
		if (++consecutive == MAX_CONSECUTIVE_ERRORS) {
			char why[96];

			snprintf(why, sizeof why, "writer %u stops after %u "
			    "errors in a row", w->index, consecutive);
			note("%s: %s", r->ts->arg, why);
			break;
		}
	}
}

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
		report_error(r, w->index, "setup", rc, &e);
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
			report_error(r, w->index, "cleanup", rc, &e);
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

	wait_phase(r, &r->ready, PH_GO);
	if (rc == 0 && !atomic_load(&r->abort)) {
		w->start_ns = cli_now_ns();
		r->wl->run(w);
		w->end_ns = cli_now_ns();
	}
	wait_phase(r, &r->finished, PH_CLEANUP);
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

/* Wait until |n| writers have counted themselves in |counter|. While the
 * workload runs (|go_ns| set) print progress and end it on time or on a
 * signal. */
static void
wait_writers(struct run *r, struct worker *w, unsigned *counter, unsigned n,
    uint64_t go_ns, int quiet)
{
	uint64_t last_ns = go_ns, last_n = 0, now;
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
		if (go_ns && r->o->duration_ms &&
		    now - go_ns >= (uint64_t)r->o->duration_ms * 1000000u)
			atomic_store(&r->stop, 1);
		if (go_ns && !quiet && now - last_ns >= 1000000000u)
			progress(r, w, go_ns, &last_ns, &last_n);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
}

static void
collect(struct run *r, struct worker *w, unsigned n, struct result *res)
{
	uint64_t start = UINT64_MAX, end = 0;
	unsigned i;

	bench_hist_init(&res->hist);
	for (i = 0; i < n; i++) {
		res->delivered += atomic_load(&w[i].delivered);
		res->errors += atomic_load(&w[i].errors);
		bench_hist_merge(&res->hist, &w[i].hist);
		if (w[i].start_ns && w[i].start_ns < start)
			start = w[i].start_ns;
		if (w[i].end_ns > end)
			end = w[i].end_ns;
	}
	res->attempted = res->delivered + res->errors;
	if (end > start)
		res->seconds = (double)(end - start) / 1e9;
	if (res->seconds > 0)
		res->rate = (double)res->delivered / res->seconds;
	if (r->first_error[0])
		snprintf(res->error, sizeof res->error, "%s", r->first_error);
}

/* Start the writers; returns how many started. */
static unsigned
start_writers(struct run *r, struct worker *w, const struct cfg *c)
{
	unsigned i;
	int rc;

	for (i = 0; i < c->o.writers; i++) {
		w[i].run = r;
		w[i].index = i;
		bench_hist_init(&w[i].hist);
		w[i].body = malloc(c->o.size ? c->o.size : 1);
		rc = w[i].body ? pthread_create(&w[i].tid, NULL, worker_main,
		    &w[i]) : ENOMEM;
		if (rc != 0) {
			free(w[i].body);
			snprintf(r->first_error, sizeof r->first_error,
			    "starting writer %u: %s", i, strerror(rc));
			note("%s: %s", r->ts->arg, r->first_error);
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
	uint64_t go;

	if (w == NULL) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return;
	}
	n = start_writers(r, w, c);
	wait_writers(r, w, &r->ready, n, 0, 1);
	go = cli_now_ns();
	set_phase(r, PH_GO);
	wait_writers(r, w, &r->finished, n, go, c->quiet);
	pthread_mutex_lock(&print_mu);
	clear_progress();
	pthread_mutex_unlock(&print_mu);
	collect(r, w, n, res);
	if (!c->quiet && !c->o.keep && stderr_tty)
		fprintf(stderr, "%s: %s: cleaning up...", PROG, r->ts->arg);
	set_phase(r, PH_CLEANUP);
	for (i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		free(w[i].body);
	}
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
		note("%s: %s", ts->arg, res->error);
		return;
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r.cv, &ca);
	pthread_condattr_destroy(&ca);
	run_writers(&r, c, res);
	if (!atomic_load(&r.abort))
		res->status = interrupted ? "interrupted" : "ok";
	rc = ts->ops->close(r.target, c->o.keep, &e);
	if (rc < 0 || atomic_load(&r.cleanup_errors)) {
		if (rc < 0)
			note("%s: cleanup: %s", ts->arg, e.what);
		note("%s: %s", ts->arg, "cleanup incomplete: files of this "
		    "run are left behind");
		if (res->error[0] == '\0')
			snprintf(res->error, sizeof res->error, "cleanup "
			    "incomplete");
		if (strcmp(res->status, "ok") == 0)
			res->status = "cleanup-failed";
	}
	if (atomic_load(&r.shown) > ERRORS_SHOWN)
		fprintf(stderr, "%s: %s: %u more error(s) not shown\n", PROG,
		    ts->arg, atomic_load(&r.shown) - ERRORS_SHOWN);
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
}

/* --- report --- */

static double
ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void
print_table(const struct cfg *c, const struct result *res, size_t n)
{
	int tw = 6;
	size_t i;
	double base = res[0].rate;

	for (i = 0; i < n; i++)
		if ((int)strlen(res[i].target) > tw)
			tw = (int)strlen(res[i].target);
	printf("%s: %s, %u writers, %" PRIu64 "-byte messages, %u mailboxes, "
	    , PROG, c->wl->name, c->o.writers, c->o.size, c->o.mailboxes);
	if (c->o.count)
		printf("%" PRIu64 " deliveries per target\n\n", c->o.count);
	else
		printf("%.1f s per target\n\n", c->o.duration_ms / 1000.0);
	printf("%-*s %9s %6s %8s %9s %8s %8s %8s %8s %7s\n", tw, "target",
	    "delivered", "errors", "time s", "deliv/s", "p50 ms", "p99 ms",
	    "p999 ms", "max ms", "ratio");
	for (i = 0; i < n; i++) {
		const struct result *x = &res[i];

		if (strcmp(x->status, "failed") == 0 && x->attempted == 0) {
			printf("%-*s failed: %s\n", tw, x->target, x->error);
			continue;
		}
		printf("%-*s %9" PRIu64 " %6" PRIu64 " %8.2f %9.1f %8.2f %8.2f "
		    "%8.2f %8.2f ", tw, x->target, x->delivered, x->errors,
		    x->seconds, x->rate, ms(bench_hist_quantile(&x->hist, 0.5)),
		    ms(bench_hist_quantile(&x->hist, 0.99)),
		    ms(bench_hist_quantile(&x->hist, 0.999)),
		    ms(x->hist.max_ns));
		if (base > 0)
			printf("%7.2f", x->rate / base);
		else
			printf("%7s", "-");
		if (strcmp(x->status, "ok") != 0)
			printf("  (%s)", x->status);
		putchar('\n');
	}
	if (n > 1)
		printf("\nratio: deliveries/s of each target divided by those "
		    "of %s (the baseline)\n", res[0].target);
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

static void
json_result(const struct result *x, double base)
{
	const struct bench_hist *h = &x->hist;

	printf("{\"target\":");
	json_str(x->target);
	printf(",\"status\":\"%s\",\"error\":", x->status);
	if (x->error[0])
		json_str(x->error);
	else
		printf("null");
	printf(",\"attempted\":%" PRIu64 ",\"delivered\":%" PRIu64
	    ",\"errors\":%" PRIu64 ",\"seconds\":%.6f,\"deliveries_per_s\":"
	    "%.3f,\"latency_ms\":{\"mean\":%.4f,\"p50\":%.4f,\"p99\":%.4f,"
	    "\"p999\":%.4f,\"max\":%.4f},\"ratio\":", x->attempted,
	    x->delivered, x->errors, x->seconds, x->rate,
	    h->n ? ms(h->sum_ns / h->n) : 0.0,
	    ms(bench_hist_quantile(h, 0.5)), ms(bench_hist_quantile(h, 0.99)),
	    ms(bench_hist_quantile(h, 0.999)), ms(h->max_ns));
	if (base > 0)
		printf("%.4f}", x->rate / base);
	else
		printf("null}");
}

static void
print_json(const struct cfg *c, const struct result *res, size_t n)
{
	size_t i;

	printf("{\"tool\":\"%s\",\"version\":\"%s\",\"workload\":\"%s\","
	    "\"writers\":%u,\"size\":%" PRIu64 ",\"mailboxes\":%u,", PROG,
	    PACKAGE_VERSION, c->wl->name, c->o.writers, c->o.size,
	    c->o.mailboxes);
	if (c->o.count)
		printf("\"count\":%" PRIu64 ",\"duration_s\":null,",
		    c->o.count);
	else
		printf("\"count\":null,\"duration_s\":%.3f,",
		    c->o.duration_ms / 1000.0);
	printf("\"baseline\":");
	json_str(res[0].target);
	printf(",\"targets\":[");
	for (i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_result(&res[i], res[0].rate);
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
	    "Maildir delivery benchmark. Runs the same workload against each "
	    "TARGET in\nturn and reports each rate also as a ratio to the "
	    "first TARGET's.\n"
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
	    "  -s, --size SIZE        message size, K/M suffixes (default "
	    "4096)\n"
	    "  -m, --mailboxes M      mailboxes to spread messages over "
	    "(default 100)\n"
	    "  -n, --count COUNT      deliveries per target (default 10000)\n"
	    "  -d, --duration SECS    run each target this long instead of "
	    "-n\n"
	    "      --workload NAME    deliver (the only one so far)\n"
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
	enum { O_JSON = 256, O_KEEP, O_WORKLOAD };
	static const struct option opts[] = {
		{ "writers", required_argument, NULL, 'w' },
		{ "size", required_argument, NULL, 's' },
		{ "mailboxes", required_argument, NULL, 'm' },
		{ "count", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "key", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 't' },
		{ "workload", required_argument, NULL, O_WORKLOAD },
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
			if (cli_parse_size(optarg, SIZE_MAX_BYTES,
			    &c->o.size) < 0)
				return usage_error("-s %s: expected bytes "
				    "with an optional K, M or G suffix, at "
				    "most %s", optarg, "1G");
			break;
		case 'm':
			rc = opt_count("-m", optarg, 1, MAILBOXES_MAX, &v);
			c->o.mailboxes = (unsigned)v;
			break;
		case 'n':
			rc = opt_count("-n", optarg, 1, UINT64_MAX / 2,
			    &c->o.count);
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
			c->wl = NULL;
			for (i = 0; i < sizeof workloads / sizeof workloads[0];
			    i++)
				if (strcmp(optarg, workloads[i].name) == 0)
					c->wl = &workloads[i];
			if (c->wl == NULL)
				return usage_error("--workload %s: unknown; "
				    "the workloads are: %s", optarg,
				    "deliver");
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
	if (c->o.count && c->o.duration_ms)
		return usage_error("%s%s", "-n and -d exclude each other", "");
	if (c->o.count == 0 && c->o.duration_ms == 0)
		c->o.count = 10000;
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
		    .client = { .name = PROG " " PACKAGE_VERSION } },
		.wl = &workloads[0],
	};
	struct result *res;
	size_t i, ran = 0;
	int rc, status = CLI_EXIT_OK;

	rc = parse_args(argc, argv, &c);
	if (rc >= 0) {
		free(c.targets);
		return rc;
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
		    (c.o.count && res[i].delivered != c.o.count))
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
