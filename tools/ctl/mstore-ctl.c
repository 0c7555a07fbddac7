/*
 * mstore-ctl.c - the operator's command-line client of mstored: one
 * command per run, one connection, the protocol only (never server
 * internals). Prints results on stdout and one line per failure on
 * stderr; the exit status says which (0 ok, 1 failed, 2 usage).
 *
 * With --json every command builds one JSON document in memory (json.c)
 * and prints it at the end, so stdout holds exactly one document: the
 * result, or the error object of a failure (mstore-ctl(8), JSON OUTPUT).
 * Every failure goes through say(), which keeps its text for that object.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "../cli.h"
#include "ctl_cluster.h"
#include "ctl_mount.h"
#include "json.h"
#include "mstclient.h"

#define PROG			"mstore-ctl"
#define TIMEOUT_DEFAULT_MS	10000
#define TIMEOUT_SCRUB_MS	3600000	/* scrub reads the whole store */

struct ctl {
	const char *server;
	struct mst_client_opts o;
	int timeout_given;
	uint8_t key[MST_KEY_MAX];
	struct mst_client *c;
	int json;		/* --json: build |out|, print it at the end */
	int report;		/* |out| is a report even if the exit is 1 */
	int progress;		/* --progress, or stderr is a terminal */
	struct json out;
};

struct command {
	const char *name;
	const char *synopsis;
	const char *help;
	int min_args, max_args;
	int (*run)(struct ctl *x, int argc, char **argv);
	int long_timeout;	/* defaults to TIMEOUT_SCRUB_MS */
};

static const struct command *find_command(const char *name);

/* --- errors --- */

/* The last failure, for the --json error object. */
static struct {
	char msg[512];
	char op[16];		/* protocol operation, "" if none */
	int err;		/* its negative errno, 0 if none */
	char detail[256];	/* the server's error detail */
} last_err;

/* Print "mstore-ctl: MESSAGE" on stderr and keep MESSAGE for --json. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_err.msg, sizeof last_err.msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", PROG, last_err.msg);
}

/* A reply that does not decode: say so, exit status 1. */
static int
bad_reply(const char *op, const char *what, int rc)
{
	snprintf(last_err.op, sizeof last_err.op, "%s", op);
	last_err.err = rc;
	say("%s %s: bad reply: %s", op, what, strerror(-rc));
	return CLI_EXIT_FAIL;
}

/* A status reply (not a transport failure) is what mst_client_call saw. */
static int
is_status_reply(const struct mst_hdr *h, int rc)
{
	return (h->flags & MST_F_REPLY) && h->status != 0 &&
	    rc == -mst_status_to_errno(h->status);
}

/*
 * Report a failed request: "mstore-ctl: OP WHAT: REASON (DETAIL)".
 * Returns the exit status for it.
 */
static int
fail_op(unsigned op, const char *what, int rc, const struct mst_hdr *h,
    const uint8_t *payload)
{
	struct mst_error_rep er = { { "", 0 } };
	const char *name = mst_op_name(op);
	const char *reason = strerror(-rc);

	if (!is_status_reply(h, rc)) {
		reason = cli_connect_strerror(rc);
	} else if (h->len > 0 &&
	    mst_error_rep_decode(&er, payload, h->len) < 0) {
		er.detail.len = 0;	/* bad detail: the status says enough */
	}
	snprintf(last_err.op, sizeof last_err.op, "%s", name ? name : "?");
	last_err.err = rc;
	snprintf(last_err.detail, sizeof last_err.detail, "%.*s",
	    (int)er.detail.len, er.detail.p);
	say("%s%s%s: %s%s%.*s%s", name ? name : "?", what[0] ? " " : "", what,
	    reason, er.detail.len ? " (" : "", (int)er.detail.len,
	    er.detail.p, er.detail.len ? ")" : "");
	return CLI_EXIT_FAIL;
}

static int
usage_error(const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof msg, fmt, arg);
	say("%s", msg);
	fprintf(stderr, "Try '%s --help'.\n", PROG);
	return CLI_EXIT_USAGE;
}

/*
 * The --json document of a failure: {"error": {...}} with the message,
 * the protocol operation and errno when there is one, the server's
 * detail, and the exit status.
 */
static void
print_json_error(int status)
{
	const char *en = last_err.err ? strerrorname_np(-last_err.err) : NULL;
	struct json j;

	json_init(&j);
	json_obj_begin(&j, NULL);
	json_obj_begin(&j, "error");
	json_str(&j, "message", last_err.msg[0] ? last_err.msg :
	    "failed (see stderr)");
	if (last_err.op[0])
		json_str(&j, "op", last_err.op);
	else
		json_null(&j, "op");
	if (last_err.err) {
		json_i64(&j, "errno", -last_err.err);
		json_str(&j, "errno_name", en ? en : "");
	} else {
		json_null(&j, "errno");
		json_null(&j, "errno_name");
	}
	json_str(&j, "detail", last_err.detail);
	json_i64(&j, "exit_status", status);
	json_obj_end(&j);
	json_obj_end(&j);
	if (json_print(&j, stdout) < 0)
		fprintf(stderr, "%s: writing the JSON error failed\n", PROG);
	json_free(&j);
}

/*
 * Turn a user's path ("/a//b/", "a/b", "/") into a protocol path ("a/b",
 * "" for the root) in |buf|. Returns 0, or a usage error status after
 * saying why.
 */
static int
norm_path(const char *in, char *buf, size_t cap, struct mst_str *out)
{
	size_t n = 0;
	int rc;

	for (; *in; in++) {
		if (*in == '/' && (n == 0 || buf[n - 1] == '/'))
			continue;
		if (n + 1 >= cap)
			return usage_error("path too long: %.64s...", in);
		buf[n++] = *in;
	}
	if (n > 0 && buf[n - 1] == '/')
		n--;
	buf[n] = '\0';
	*out = mst_str_of(buf);
	rc = mst_path_check(*out);
	if (rc == -ENAMETOOLONG)
		return usage_error("path too long: %s", buf);
	if (rc == -ELOOP)
		return usage_error("path has too many components: %s", buf);
	if (rc < 0)
		return usage_error("bad path '%s': components must not be "
		    "'.' or '..'", buf);
	return 0;
}

/* --- output helpers --- */

static void
format_time(uint64_t ns, int with_ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	size_t n;

	if (localtime_r(&t, &tm) == NULL) {
		snprintf(buf, cap, "%" PRIu64, ns);
		return;
	}
	n = strftime(buf, cap, with_ns ? "%Y-%m-%dT%H:%M:%S" :
	    "%Y-%m-%d %H:%M", &tm);
	if (with_ns && n > 0 && n < cap) {
		n += (size_t)snprintf(buf + n, cap - n, ".%09u",
		    (unsigned)(ns % 1000000000u));
		if (n < cap)
			strftime(buf + n, cap - n, "%z", &tm);
	}
}

static const char *
type_name(unsigned type)
{
	switch (type) {
	case MST_T_DIR:
		return "directory";
	case MST_T_FILE:
		return "file";
	case MST_T_MSG:
		return "message";
	default:
		return "unknown";
	}
}

/* "drwxr-xr-x": 'd' directory, '-' small file, 'm' message body. */
static void
mode_string(const struct mst_attr *a, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";
	int i;

	out[0] = a->type == MST_T_DIR ? 'd' : a->type == MST_T_MSG ? 'm' :
	    a->type == MST_T_FILE ? '-' : '?';
	for (i = 0; i < 9; i++)
		out[1 + i] = (a->mode & (0400u >> i)) ? rwx[i] : '-';
	out[10] = '\0';
}

static void
print_admin_text(const struct mst_admin_rep *r)
{
	fwrite(r->text.p, 1, r->text.len, stdout);
	if (r->text.len && r->text.p[r->text.len - 1] != '\n')
		putchar('\n');
}

/* --- session commands --- */

static int
cmd_ping(struct ctl *x, int argc, char **argv)
{
	struct mst_ping q, r;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t buf[16];
	uint64_t t0, t1;
	int n, rc;

	(void)argc;
	(void)argv;
	if (getrandom(&q.cookie, sizeof q.cookie, 0) != sizeof q.cookie)
		q.cookie = (uint64_t)cli_now_ns();
	n = mst_ping_encode(&q, buf, sizeof buf);
	t0 = cli_now_ns();
	rc = mst_client_call(x->c, MST_OP_PING, buf, (size_t)n, &h, &rp);
	t1 = cli_now_ns();
	if (rc < 0)
		return fail_op(MST_OP_PING, x->server, rc, &h, rp);
	rc = mst_ping_decode(&r, rp, h.len);
	if (rc == 0 && r.cookie != q.cookie)
		rc = -EPROTO;
	if (rc < 0)
		return bad_reply("PING", x->server, rc);
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "address", x->server);
		json_strn(&x->out, "server", mst_client_hello(x->c)->server.p,
		    mst_client_hello(x->c)->server.len);
		json_num(&x->out, "time_ms", (double)(t1 - t0) / 1e6, 3);
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	printf("pong from %s (%.*s): time=%.3f ms\n", x->server,
	    (int)mst_client_hello(x->c)->server.len,
	    mst_client_hello(x->c)->server.p, (double)(t1 - t0) / 1e6);
	return CLI_EXIT_OK;
}

static int
cmd_status(struct ctl *x, int argc, char **argv)
{
	const struct mst_hello_rep *hr = mst_client_hello(x->c);

	(void)argc;
	(void)argv;
	if (x->json) {
		char id[20];

		snprintf(id, sizeof id, "%016" PRIx64, hr->server_id);
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "address", x->server);
		json_strn(&x->out, "server", hr->server.p, hr->server.len);
		json_str(&x->out, "server_id", id);
		json_u64(&x->out, "version", hr->version);
		json_u64(&x->out, "max_frame", hr->max_frame);
		json_u64(&x->out, "max_body", hr->max_body);
		json_arr_begin(&x->out, "features");
		if (hr->features & MST_FEAT_AUTH)
			json_str(&x->out, NULL, "auth");
		if (hr->features & MST_FEAT_WATCH)
			json_str(&x->out, NULL, "watch");
		json_arr_end(&x->out);
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	printf("address=%s\n", x->server);
	printf("server=%.*s\n", (int)hr->server.len, hr->server.p);
	printf("server_id=%016" PRIx64 "\n", hr->server_id);
	printf("version=%u\n", hr->version);
	printf("max_frame=%" PRIu32 "\n", hr->max_frame);
	printf("max_body=%" PRIu64 "\n", hr->max_body);
	printf("features=%s%s%s%s\n",
	    hr->features & (MST_FEAT_AUTH | MST_FEAT_WATCH) ? "" : "none",
	    hr->features & MST_FEAT_AUTH ? "auth" : "",
	    (hr->features & MST_FEAT_AUTH) && (hr->features & MST_FEAT_WATCH) ?
	    "," : "",
	    hr->features & MST_FEAT_WATCH ? "watch" : "");
	return CLI_EXIT_OK;
}

/* stats, scrub, compact, checkpoint: the command name is the ADMIN cmd;
 * |arg| its argument ("" for none). */
static int
cmd_admin(struct ctl *x, const char *cmd, const char *arg,
    struct mst_admin_rep *r)
{
	struct mst_admin_req q = { mst_str_of(cmd), mst_str_of(arg) };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t buf[64 + 512];
	int n, rc;

	n = mst_admin_req_encode(&q, buf, sizeof buf);
	rc = mst_client_call(x->c, MST_OP_ADMIN, buf, (size_t)n, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_ADMIN, cmd, rc, &h, rp);
	rc = mst_admin_rep_decode(r, rp, h.len);
	if (rc < 0)
		return bad_reply("ADMIN", cmd, rc);
	return CLI_EXIT_OK;
}

/* Is |v| (|n| bytes) a decimal count that fits a u64? */
static int
is_count(const uint8_t *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	size_t i;

	if (n == 0 || n > 20 || (n > 1 && v[0] == '0'))
		return 0;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9' ||
		    x > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
			return 0;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 1;
}

/*
 * An ADMIN reply's KEY=VALUE lines as members of the open JSON object:
 * a decimal VALUE is a number, any other a string. With |notes| (scrub),
 * only counts and |keep| keys become members; every other line goes to
 * the array "findings" as {"key": K, "text": V}, in order, so that
 * repeated lines (damage=...) are all kept.
 */
static void
admin_json(struct json *j, const struct mst_bytes *t, int notes,
    const char *const *keep)
{
	const uint8_t *val;
	size_t i, e, eq, vl, k;
	int pass, num, note;
	char key[64];
	uint64_t v;

	for (pass = 0; pass < (notes ? 2 : 1); pass++) {
		if (pass == 1)
			json_arr_begin(j, "findings");
		for (i = 0; i < t->len; i = e + 1) {
			for (e = i; e < t->len && t->p[e] != '\n'; e++)
				;
			for (eq = i; eq < e && t->p[eq] != '='; eq++)
				;
			if (eq == e || eq == i)
				continue;	/* not KEY=VALUE */
			snprintf(key, sizeof key, "%.*s", (int)(eq - i),
			    t->p + i);
			val = t->p + eq + 1;
			vl = e - eq - 1;
			num = is_count(val, vl, &v);
			note = notes && !num;
			for (k = 0; note && keep[k]; k++)
				if (strcmp(keep[k], key) == 0)
					note = 0;
			if (note != pass)
				continue;
			if (note) {
				json_obj_begin(j, NULL);
				json_str(j, "key", key);
				json_strn(j, "text", val, vl);
				json_obj_end(j);
			} else if (num) {
				json_u64(j, key, v);
			} else {
				json_strn(j, key, val, vl);
			}
		}
		if (pass == 1)
			json_arr_end(j);
	}
}

static int
cmd_admin_print(struct ctl *x, int argc, char **argv)
{
	struct mst_admin_rep r;
	int rc;

	(void)argc;
	rc = cmd_admin(x, argv[0], "", &r);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		admin_json(&x->out, &r.text, 0, NULL);
		json_obj_end(&x->out);
	} else {
		print_admin_text(&r);
	}
	return rc;
}

/* Does |text| hold the line "key=value"? */
static int
has_line(const struct mst_bytes *text, const char *line)
{
	size_t n = strlen(line), i = 0;

	while (i + n <= text->len) {
		if (memcmp(text->p + i, line, n) == 0 &&
		    (i + n == text->len || text->p[i + n] == '\n'))
			return 1;
		while (i < text->len && text->p[i] != '\n')
			i++;
		i++;
	}
	return 0;
}

/* --- progress of scrub and compact --wait --- */

/* The counter |key| of a stats reply: 1 and *out, or 0 when absent. */
static int
stat_value(const struct mst_bytes *t, const char *key, uint64_t *out)
{
	size_t n = strlen(key), i, e;

	for (i = 0; i < t->len; i = e + 1) {
		for (e = i; e < t->len && t->p[e] != '\n'; e++)
			;
		if (e - i > n && memcmp(t->p + i, key, n) == 0 &&
		    t->p[i + n] == '=')
			return is_count(t->p + i + n + 1, e - i - n - 1, out);
	}
	return 0;
}

/* ADMIN stats on |c|: 0 and the reply (valid until the next call). */
static int
stats_on(struct mst_client *c, struct mst_admin_rep *r)
{
	struct mst_admin_req q = { mst_str_of("stats"), mst_str_of("") };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t buf[64];
	int n, rc;

	n = mst_admin_req_encode(&q, buf, sizeof buf);
	rc = mst_client_call(c, MST_OP_ADMIN, buf, (size_t)n, &h, &rp);
	return rc < 0 ? rc : mst_admin_rep_decode(r, rp, h.len);
}

/* One progress report on stderr: rewritten in place on a terminal,
 * one line each otherwise. */
static void progress_say(int tty, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
progress_say(int tty, const char *fmt, ...)
{
	va_list ap;

	fputs(tty ? "\r" : "", stderr);
	fprintf(stderr, "%s: ", PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(tty ? "\033[K" : "\n", stderr);
	fflush(stderr);
}

/*
 * While the scrub request waits for its reply, a thread asks the server
 * for "stats" on a second connection and reports scrub_bytes_done of
 * scrub_bytes_total (servers whose stats lack them: the time only).
 */
struct scrub_progress {
	struct ctl *x;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;		/* guarded by mu */
	int tty;
	uint64_t t0;
};

static void
scrub_report(struct scrub_progress *p, struct mst_client *c, int last)
{
	struct mst_admin_rep r;
	uint64_t done, total, run = 0, bd, bt;
	double secs = (double)(cli_now_ns() - p->t0) / 1e9;
	char bodies[64] = "";
	int rados;

	if (c != NULL && stats_on(c, &r) == 0 &&
	    stat_value(&r.text, "scrub_bytes_done", &done) &&
	    stat_value(&r.text, "scrub_bytes_total", &total)) {
		(void)stat_value(&r.text, "scrub_running", &run); /* 0 */
		/* rados: message bytes, and the bodies as well. */
		rados = stat_value(&r.text, "scrub_bodies_done", &bd) &&
		    stat_value(&r.text, "scrub_bodies_total", &bt);
		if (rados)
			snprintf(bodies, sizeof bodies, "; %" PRIu64 " of %"
			    PRIu64 " bodies", bd, bt);
		progress_say(p->tty, "scrub: %s%3.0f%% (%" PRIu64 " of %"
		    PRIu64 " %s bytes checked%s), %.0f s", last && !run ?
		    "done, " : "", total ? 100.0 * (double)done /
		    (double)total : 100.0, done, total, rados ? "message" :
		    "log", bodies, secs);
	} else {
		progress_say(p->tty, "scrub: %s%.0f s (this server reports "
		    "no scrub progress)", last ? "done after " : "running, ",
		    secs);
	}
	if (last && p->tty)
		fputc('\n', stderr);
}

static void *
scrub_progress_main(void *arg)
{
	struct scrub_progress *p = arg;
	struct mst_client *c = NULL;
	struct timespec ts;
	int stop = 0;

	/* Quietly: without this connection the time alone is shown. */
	if (mst_client_connect(p->x->server, &p->x->o, &c) < 0)
		c = NULL;
	while (!stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += p->tty ? 1 : 5;
		pthread_mutex_lock(&p->mu);
		while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu,
		    &ts) == 0)
			;
		stop = p->stop;
		pthread_mutex_unlock(&p->mu);
		scrub_report(p, c, stop);
	}
	mst_client_free(c);
	return NULL;
}

/* ADMIN scrub |arg|, with progress on stderr when asked for. */
static int
scrub_call(struct ctl *x, const char *arg, struct mst_admin_rep *r)
{
	struct scrub_progress p = { .x = x, .tty = isatty(STDERR_FILENO),
		.t0 = cli_now_ns() };
	pthread_t t;
	int rc, started;

	if (!x->progress)
		return cmd_admin(x, "scrub", arg, r);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	started = pthread_create(&t, NULL, scrub_progress_main, &p) == 0;
	rc = cmd_admin(x, "scrub", arg, r);
	if (started) {
		pthread_mutex_lock(&p.mu);
		p.stop = 1;
		pthread_cond_signal(&p.cv);
		pthread_mutex_unlock(&p.mu);
		pthread_join(t, NULL);
	}
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
	return rc;
}

/*
 * compact: ADMIN compact starts a pass of the compactor and names it
 * (compact_pass=N, the local engine). With --wait, poll "stats" until
 * compact_passes reaches N, reporting compactions and relocated_bytes
 * as they grow; the result then carries the final counters.
 */
static int
cmd_compact(struct ctl *x, int argc, char **argv)
{
	struct mst_admin_rep r, st;
	uint64_t pass = 0, passes = 0, segs = 0, moved = 0, t0, limit;
	char text[256];
	int wait = 0, tty = isatty(STDERR_FILENO), rc, have;
	size_t len;

	if (argc == 2 && strcmp(argv[1], "--wait") == 0)
		wait = 1;
	else if (argc != 1)
		return usage_error("compact: unknown argument '%s' (there "
		    "is: --wait)", argv[1]);
	rc = cmd_admin(x, "compact", "", &r);
	if (rc != CLI_EXIT_OK)
		return rc;
	len = r.text.len < sizeof text ? r.text.len : sizeof text - 1;
	memcpy(text, r.text.p, len);	/* the next call reuses the buffer */
	r.text.p = (const uint8_t *)text;
	r.text.len = len;
	have = stat_value(&r.text, "compact_pass", &pass);
	t0 = cli_now_ns();
	limit = (uint64_t)(x->timeout_given ? x->o.timeout_ms :
	    TIMEOUT_SCRUB_MS) * 1000000u;
	while (wait && have) {
		rc = stats_on(x->c, &st);
		if (rc < 0) {
			say("compact: reading stats: %s",
			    cli_connect_strerror(rc));
			return CLI_EXIT_FAIL;
		}
		(void)stat_value(&st.text, "compactions", &segs); /* 0 */
		(void)stat_value(&st.text, "relocated_bytes", &moved);
		if (!stat_value(&st.text, "compact_passes", &passes) ||
		    passes >= pass)
			break;
		if (x->progress)
			progress_say(tty, "compact: pass %" PRIu64 " running, "
			    "%" PRIu64 " segments compacted and %" PRIu64
			    " bytes moved since the start, %.0f s", pass,
			    segs, moved, (double)(cli_now_ns() - t0) / 1e9);
		if (cli_now_ns() - t0 > limit) {
			say("compact: pass %" PRIu64 " did not end within "
			    "the timeout (-t)", pass);
			return CLI_EXIT_FAIL;
		}
		usleep(200000);
	}
	if (wait && have && x->progress) {
		progress_say(tty, "compact: pass %" PRIu64 " done, %" PRIu64
		    " segments compacted and %" PRIu64 " bytes moved since "
		    "the start, %.1f s", pass, segs, moved,
		    (double)(cli_now_ns() - t0) / 1e9);
		if (tty)
			fputc('\n', stderr);
	}
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		admin_json(&x->out, &r.text, 0, NULL);
		json_bool(&x->out, "waited", wait && have);
		if (wait && have) {
			json_u64(&x->out, "compactions", segs);
			json_u64(&x->out, "relocated_bytes", moved);
		}
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	print_admin_text(&r);
	if (wait && have)
		printf("compactions=%" PRIu64 "\nrelocated_bytes=%" PRIu64
		    "\n", segs, moved);
	return CLI_EXIT_OK;
}

static int
cmd_scrub(struct ctl *x, int argc, char **argv)
{
	struct mst_admin_rep r;
	char arg[512] = "";
	size_t len = 0;
	int rc, i;

	/* KEY=VALUE words (the rados back-end's grace=, idem_expiry=...),
	 * passed on as the ADMIN argument. */
	for (i = 1; i < argc; i++) {
		if (strchr(argv[i], '=') == NULL ||
		    len + strlen(argv[i]) + 2 > sizeof arg)
			return usage_error("scrub: '%s' is not KEY=VALUE or "
			    "too long", argv[i]);
		len += (size_t)snprintf(arg + len, sizeof arg - len, "%s%s",
		    len ? " " : "", argv[i]);
	}
	rc = scrub_call(x, arg, &r);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (!has_line(&r.text, "result=clean") &&
	    !has_line(&r.text, "result=damaged")) {
		say("scrub: the reply has no result= line");
		return CLI_EXIT_FAIL;
	}
	if (x->json) {
		static const char *const keep[] = { "result", "engine",
			NULL };

		json_obj_begin(&x->out, NULL);
		admin_json(&x->out, &r.text, 1, keep);
		json_obj_end(&x->out);
		x->report = 1;	/* damage is a result, not an error */
	} else {
		print_admin_text(&r);
	}
	if (has_line(&r.text, "result=damaged")) {
		say("scrub: the store is damaged (see the %s above)",
		    x->json ? "findings" : "damage= lines");
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

/* --- namespace commands --- */

/*
 * Send a request that names one path (LOOKUP, READDIR, UNLINK, RMDIR,
 * STATFS). Returns mst_client_call's result.
 */
static int
call_path(struct ctl *x, unsigned op, struct mst_str path, struct mst_hdr *h,
    const uint8_t **rp)
{
	struct mst_path_req q = { path };
	uint8_t buf[MST_PATH_MAX + 8];
	int n = mst_path_req_encode(&q, buf, sizeof buf);

	if (n < 0)
		return n;
	return mst_client_call(x->c, op, buf, (size_t)n, h, rp);
}

/* An entry's attributes as members of the open JSON object. */
static void
attr_json(struct json *j, const struct mst_attr *a)
{
	json_str(j, "type", type_name(a->type));
	json_u64(j, "id", a->id);
	json_u64(j, "size", a->size);
	json_u64(j, "mode", a->mode);
	json_u64(j, "uid", a->uid);
	json_u64(j, "gid", a->gid);
	json_u64(j, "nlink", a->nlink);
	json_u64(j, "mtime_ns", a->mtime_ns);
	json_u64(j, "ctime_ns", a->ctime_ns);
	json_u64(j, "change", a->change);
}

static void
print_entry(const struct mst_list_entry *e)
{
	char mode[11], when[32];

	mode_string(&e->attr, mode);
	format_time(e->attr.mtime_ns, 0, when, sizeof when);
	printf("%s %5" PRIu32 " %5" PRIu32 " %10" PRIu64 " %s %8" PRIu64
	    " %.*s\n", mode, e->attr.uid, e->attr.gid, e->attr.size, when,
	    e->attr.id, (int)e->name.len, e->name.p);
}

typedef void entry_fn(void *arg, const struct mst_list_entry *e);

/* Call |fn| for each entry of one READDIR reply frame. */
static int
list_frame(const uint8_t *p, size_t len, entry_fn *fn, void *arg)
{
	struct mst_list_rep r;
	struct mst_list_entry e;
	size_t off = 0;
	int rc = mst_list_rep_decode(&r, p, len);

	while (rc == 0 && (rc = mst_list_entry_next(&e, &r, &off)) == 1) {
		fn(arg, &e);
		rc = 0;
	}
	return rc;
}

/*
 * READDIR |path| (|what| names it in messages) and call |fn| for every
 * entry, over all the reply's frames. Returns the exit status.
 */
static int
list_dir(struct ctl *x, const char *what, struct mst_str path, entry_fn *fn,
    void *arg)
{
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint32_t id;
	int rc;

	rc = call_path(x, MST_OP_READDIR, path, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_READDIR, what, rc, &h, rp);
	id = h.id;
	for (;;) {
		rc = list_frame(rp, h.len, fn, arg);
		if (rc < 0)
			break;
		if (!(h.flags & MST_F_MORE))
			return CLI_EXIT_OK;
		do {	/* the rest of the listing; notices are not ours */
			rc = mst_client_recv(x->c, &h, &rp);
		} while (rc == 0 && (h.flags & MST_F_NOTICE));
		if (rc < 0)
			return fail_op(MST_OP_READDIR, what, rc, &h, rp);
		if (h.id != id || h.status != 0) {
			rc = -EPROTO;
			break;
		}
	}
	return bad_reply("READDIR", what, rc);
}

static void
ls_print(void *arg, const struct mst_list_entry *e)
{
	(void)arg;
	print_entry(e);
}

static void
ls_json(void *arg, const struct mst_list_entry *e)
{
	struct json *j = arg;

	json_obj_begin(j, NULL);
	json_strn(j, "name", e->name.p, e->name.len);
	attr_json(j, &e->attr);
	json_obj_end(j);
}

static int
cmd_ls(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	int rc;

	rc = norm_path(argc > 1 ? argv[1] : "", pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	if (!x->json)
		return list_dir(x, pbuf, path, ls_print, NULL);
	json_obj_begin(&x->out, NULL);
	json_str(&x->out, "path", pbuf[0] ? pbuf : "/");
	json_arr_begin(&x->out, "entries");
	rc = list_dir(x, pbuf, path, ls_json, &x->out);
	json_arr_end(&x->out);
	json_obj_end(&x->out);
	return rc;
}

static int
cmd_stat(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2], mt[64], ct[64], mode[11];
	struct mst_attr_rep r;
	struct mst_str path;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int rc;

	(void)argc;
	rc = norm_path(argv[1], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	rc = call_path(x, MST_OP_LOOKUP, path, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_LOOKUP, pbuf, rc, &h, rp);
	rc = mst_attr_rep_decode(&r, rp, h.len);
	if (rc < 0)
		return bad_reply("LOOKUP", pbuf, rc);
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf[0] ? pbuf : "/");
		attr_json(&x->out, &r.attr);
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	mode_string(&r.attr, mode);
	format_time(r.attr.mtime_ns, 1, mt, sizeof mt);
	format_time(r.attr.ctime_ns, 1, ct, sizeof ct);
	printf("path=%s\ntype=%s\nid=%" PRIu64 "\nsize=%" PRIu64 "\n"
	    "mode=%04" PRIo32 " (%s)\nuid=%" PRIu32 "\ngid=%" PRIu32 "\n"
	    "nlink=%" PRIu32 "\nmtime=%s\nctime=%s\nchange=%" PRIu64 "\n",
	    pbuf[0] ? pbuf : "/", type_name(r.attr.type), r.attr.id,
	    r.attr.size, r.attr.mode, mode, r.attr.uid, r.attr.gid,
	    r.attr.nlink, mt, ct, r.attr.change);
	return CLI_EXIT_OK;
}

/* Where cat's bytes go: stdout, or a buffer for --json. */
struct sink {
	int to_buf;
	uint8_t *buf;
	size_t len, cap;
};

static int
sink_put(struct sink *k, const uint8_t *p, size_t n, uint64_t total)
{
	uint8_t *nb;

	if (!k->to_buf)
		return cli_write_all(STDOUT_FILENO, p, n);
	if (k->cap - k->len < n) {
		if (total < k->len + n || total > SIZE_MAX)
			return -EFBIG;	/* more than the file's size */
		nb = realloc(k->buf, total ? (size_t)total : 1);
		if (nb == NULL)
			return -ENOMEM;
		k->buf = nb;
		k->cap = (size_t)total;
	}
	memcpy(k->buf + k->len, p, n);
	k->len += n;
	return 0;
}

/*
 * GET the whole file in frame-sized pieces, hand each to |k| as it
 * arrives and check the xxh3 of everything against the store's checksum
 * at the end (in *sum_out). A file replaced while we read shows up as a
 * changed size or checksum between pieces.
 */
static int
get_file(struct ctl *x, const char *what, struct mst_str path,
    XXH3_state_t *st, struct sink *k, uint64_t *sum_out)
{
	struct mst_get_req q = { .path = path };
	struct mst_data_rep r;
	struct mst_hdr h = { 0 };
	uint64_t total = 0, sum = 0, got;
	const uint8_t *rp = NULL;
	uint8_t buf[MST_PATH_MAX + 32];
	int n, rc, first = 1;

	q.length = mst_client_max_frame(x->c) - 16;	/* data_rep head */
	for (;;) {
		n = mst_get_req_encode(&q, buf, sizeof buf);
		rc = mst_client_call(x->c, MST_OP_GET, buf, (size_t)n, &h, &rp);
		if (rc < 0)
			return fail_op(MST_OP_GET, what, rc, &h, rp);
		rc = mst_data_rep_decode(&r, rp, h.len);
		if (rc < 0)
			return bad_reply("GET", what, rc);
		if (!first && (r.total_size != total || r.checksum != sum)) {
			say("GET %s: the file changed while it was read; "
			    "output incomplete", what);
			return CLI_EXIT_FAIL;
		}
		first = 0;
		total = r.total_size;
		sum = r.checksum;
		if (r.data.len == 0 && q.offset < total) {
			say("GET %s: server sent no data at offset %" PRIu64
			    " of %" PRIu64, what, q.offset, total);
			return CLI_EXIT_FAIL;
		}
		XXH3_64bits_update(st, r.data.p, r.data.len);
		rc = sink_put(k, r.data.p, r.data.len, total);
		if (rc < 0) {
			say("cat %s: %s: %s", what, k->to_buf ? "keeping the "
			    "contents" : "writing stdout", strerror(-rc));
			return CLI_EXIT_FAIL;
		}
		q.offset += r.data.len;
		if (q.offset >= total)
			break;
	}
	got = XXH3_64bits_digest(st);
	if (got != sum) {
		say("cat %s: checksum mismatch: read %016" PRIx64 ", store "
		    "says %016" PRIx64 ": output is damaged", what, got, sum);
		return CLI_EXIT_FAIL;
	}
	*sum_out = sum;
	return CLI_EXIT_OK;
}

/*
 * cat: the bytes on stdout. With --json the whole file is read first
 * (small files: at most max_body), then printed as one object with its
 * size, its checksum and the contents in base64.
 */
static int
cmd_cat(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2], hex[20];
	struct sink k = { .to_buf = x->json };
	struct mst_str path;
	XXH3_state_t *st;
	uint64_t sum = 0;
	int rc;

	(void)argc;
	rc = norm_path(argv[1], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	st = XXH3_createState();
	if (st == NULL || XXH3_64bits_reset(st) != XXH_OK) {
		say("out of memory");
		XXH3_freeState(st);
		return CLI_EXIT_FAIL;
	}
	rc = get_file(x, pbuf, path, st, &k, &sum);
	XXH3_freeState(st);
	if (rc == CLI_EXIT_OK && x->json) {
		snprintf(hex, sizeof hex, "%016" PRIx64, sum);
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf);
		json_u64(&x->out, "size", k.len);
		json_str(&x->out, "checksum", hex);
		json_base64(&x->out, "content_base64", k.buf, k.len);
		json_obj_end(&x->out);
	}
	free(k.buf);
	return rc;
}

/* Parse the octal mode of --mode. */
static int
parse_mode(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (s[0] == '\0' || *end != '\0' || errno || v > 07777)
		return usage_error("bad mode '%s': expected octal, at most "
		    "07777", s);
	*out = (uint32_t)v;
	return 0;
}

/* Options of mkdir and put: --mode, -p (mkdir), --excl (put). */
struct subopts {
	uint32_t mode;
	int parents;
	int excl;
};

static int
parse_subopts(const char *cmd, int *argc, char ***argv, struct subopts *so)
{
	static const struct option mk[] = {
		{ .name = "mode", .has_arg = required_argument, .val = 'm' },
		{ .name = "parents", .has_arg = no_argument, .val = 'p' },
		{ 0 },
	};
	static const struct option pt[] = {
		{ .name = "mode", .has_arg = required_argument, .val = 'm' },
		{ .name = "excl", .has_arg = no_argument, .val = 'x' },
		{ 0 },
	};
	int is_mkdir = strcmp(cmd, "mkdir") == 0, ch, rc;

	optind = 0;	/* GNU getopt: start over on the command's argv */
	opterr = 0;
	while ((ch = getopt_long(*argc, *argv, is_mkdir ? "m:p" : "m:x",
	    is_mkdir ? mk : pt, NULL)) != -1) {
		switch (ch) {
		case 'm':
			rc = parse_mode(optarg, &so->mode);
			if (rc)
				return rc;
			break;
		case 'p':
			so->parents = 1;
			break;
		case 'x':
			so->excl = 1;
			break;
		default:
			return usage_error("%s: unknown option or missing "
			    "argument", cmd);
		}
	}
	*argc -= optind - 1;	/* keep argv[0], the command */
	(*argv)[optind - 1] = (*argv)[0];
	*argv += optind - 1;
	if (*argc != 2)
		return usage_error("%s: expected exactly one PATH", cmd);
	return 0;
}

static int
mkdir_one(struct ctl *x, struct mst_str path, uint32_t mode, int rc_ok,
    const char *what)
{
	struct mst_mkdir_req q = { .path = path, .mode = mode,
		.uid = (uint32_t)getuid(), .gid = (uint32_t)getgid() };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t buf[MST_PATH_MAX + 32];
	int n, rc;

	n = mst_mkdir_req_encode(&q, buf, sizeof buf);
	rc = mst_client_call(x->c, MST_OP_MKDIR, buf, (size_t)n, &h, &rp);
	if (rc < 0 && rc != rc_ok)
		return fail_op(MST_OP_MKDIR, what, rc, &h, rp);
	if (rc == 0 && x->json)
		json_str(&x->out, NULL, what);	/* into "created" */
	return CLI_EXIT_OK;
}

static int
cmd_mkdir(struct ctl *x, int argc, char **argv)
{
	struct subopts so = { .mode = 0755 };
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path, pre;
	size_t i;
	int rc;

	rc = parse_subopts("mkdir", &argc, &argv, &so);
	if (rc == 0)
		rc = norm_path(argv[1], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	if (x->json) {	/* {"path": P, "created": [the ones made]} */
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf[0] ? pbuf : "/");
		json_arr_begin(&x->out, "created");
	}
	rc = CLI_EXIT_OK;
	for (i = 1; so.parents && rc == 0 && i < path.len; i++) {
		if (pbuf[i] != '/')
			continue;
		pre = (struct mst_str){ pbuf, (uint16_t)i };
		pbuf[i] = '\0';
		rc = mkdir_one(x, pre, so.mode, -EEXIST, pbuf);
		pbuf[i] = '/';
	}
	/* -p of the root: it always exists */
	if (rc == 0 && !(path.len == 0 && so.parents))
		rc = mkdir_one(x, path, so.mode, so.parents ? -EEXIST : 0,
		    pbuf);
	if (x->json) {
		json_arr_end(&x->out);
		json_obj_end(&x->out);
	}
	return rc;
}

/* Read all of stdin, up to |max| bytes. */
static int
read_stdin(uint64_t max, uint8_t **out, size_t *len_out)
{
	size_t cap = 65536, len = 0;
	uint8_t *buf = malloc(cap), *nb;
	ssize_t r;

	for (;;) {
		if (buf == NULL)
			return -ENOMEM;
		if (len == cap) {
			if (cap > max)
				break;
			cap *= 2;
			nb = realloc(buf, cap);
			if (nb == NULL)
				free(buf);
			buf = nb;
			continue;
		}
		r = read(STDIN_FILENO, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			free(buf);
			return (int)r;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > max) {
		free(buf);
		return -EFBIG;
	}
	*out = buf;
	*len_out = len;
	return 0;
}

static int
cmd_put(struct ctl *x, int argc, char **argv)
{
	struct subopts so = { .mode = 0644 };
	const struct mst_hello_rep *hr = mst_client_hello(x->c);
	uint64_t max = hr->max_body ? hr->max_body : MST_BODY_MAX;
	char pbuf[MST_PATH_MAX + 2];
	struct mst_put_req q = { .uid = (uint32_t)getuid(),
		.gid = (uint32_t)getgid() };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t head[MST_PATH_MAX + 64], *body = NULL;
	size_t len = 0;
	int n, rc;

	rc = parse_subopts("put", &argc, &argv, &so);
	if (rc == 0)
		rc = norm_path(argv[1], pbuf, sizeof pbuf, &q.path);
	if (rc)
		return rc;
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "%s: put: reading the contents from the "
		    "terminal; end with Ctrl-D\n", PROG);
	rc = read_stdin(max, &body, &len);
	if (rc < 0) {
		say("put %s: reading stdin: %s%s", pbuf, strerror(-rc),
		    rc == -EFBIG ? " (larger than the server's max_body)" : "");
		return CLI_EXIT_FAIL;
	}
	q.flags = so.excl ? MST_PUT_EXCL : 0;
	q.mode = so.mode;
	q.checksum = mst_checksum(body, len);
	q.body_size = len;
	n = mst_put_req_encode(&q, head, sizeof head);
	rc = mst_client_call_body(x->c, MST_OP_PUT, head, (size_t)n, body, len,
	    &h, &rp);
	free(body);
	if (rc < 0)
		return fail_op(MST_OP_PUT, pbuf, rc, &h, rp);
	if (x->json) {
		struct mst_attr_rep r;
		char hex[20];

		rc = mst_attr_rep_decode(&r, rp, h.len);
		if (rc < 0)
			return bad_reply("PUT", pbuf, rc);
		snprintf(hex, sizeof hex, "%016" PRIx64, q.checksum);
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf);
		attr_json(&x->out, &r.attr);
		json_str(&x->out, "checksum", hex);
		json_obj_end(&x->out);
	}
	return CLI_EXIT_OK;
}

/* rm: UNLINK a file; a directory (EISDIR) gets RMDIR (must be empty). */
static int
cmd_rm(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	unsigned op = MST_OP_UNLINK;
	int rc;

	(void)argc;
	rc = norm_path(argv[1], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	rc = call_path(x, op, path, &h, &rp);
	if (rc == -EISDIR && is_status_reply(&h, rc)) {
		op = MST_OP_RMDIR;
		memset(&h, 0, sizeof h);
		rc = call_path(x, op, path, &h, &rp);
	}
	if (rc < 0)
		return fail_op(op, pbuf, rc, &h, rp);
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf);
		json_str(&x->out, "removed", op == MST_OP_RMDIR ? "directory" :
		    "file");
		json_obj_end(&x->out);
	}
	return CLI_EXIT_OK;
}

/* STATFS's space and quota fields as members of the open object. */
static void
statfs_json(struct json *j, const struct mst_statfs_rep *r)
{
	json_u64(j, "bytes_total", r->bytes_total);
	json_u64(j, "bytes_free", r->bytes_free);
	json_u64(j, "files_total", r->files_total);
	json_u64(j, "files_free", r->files_free);
	json_u64(j, "quota_bytes", r->quota_bytes);
	json_u64(j, "used_bytes", r->used_bytes);
	json_u64(j, "quota_msgs", r->quota_msgs);
	json_u64(j, "used_msgs", r->used_msgs);
}

static int
cmd_statfs(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_statfs_rep r;
	struct mst_str path;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int rc;

	rc = norm_path(argc > 1 ? argv[1] : "", pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	rc = call_path(x, MST_OP_STATFS, path, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_STATFS, pbuf, rc, &h, rp);
	rc = mst_statfs_rep_decode(&r, rp, h.len);
	if (rc < 0)
		return bad_reply("STATFS", pbuf, rc);
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf[0] ? pbuf : "/");
		statfs_json(&x->out, &r);
		json_u64(&x->out, "max_body", r.max_body);
		json_u64(&x->out, "name_max", r.name_max);
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	printf("path=%s\nbytes_total=%" PRIu64 "\nbytes_free=%" PRIu64 "\n"
	    "files_total=%" PRIu64 "\nfiles_free=%" PRIu64 "\n"
	    "quota_bytes=%" PRIu64 "\nused_bytes=%" PRIu64 "\n"
	    "quota_msgs=%" PRIu64 "\nused_msgs=%" PRIu64 "\n"
	    "max_body=%" PRIu64 "\nname_max=%" PRIu32 "\n",
	    pbuf[0] ? pbuf : "/", r.bytes_total, r.bytes_free,
	    r.files_total, r.files_free, r.quota_bytes, r.used_bytes,
	    r.quota_msgs, r.used_msgs, r.max_body, r.name_max);
	return CLI_EXIT_OK;
}

/* --- du and quota --- */

#define DU_DEPTH	8	/* domain/user, home/user/Maildir, ... */

/* The subdirectories of one directory, copied out of the listing. */
struct subdirs {
	char **name;
	size_t n, cap;
	int maildir;		/* it has new/ or cur/ */
	int nomem;
};

static void
subdirs_add(void *arg, const struct mst_list_entry *e)
{
	struct subdirs *d = arg;
	char **nv;

	if (e->attr.type != MST_T_DIR)
		return;
	if ((e->name.len == 3 && (memcmp(e->name.p, "new", 3) == 0 ||
	    memcmp(e->name.p, "cur", 3) == 0)))
		d->maildir = 1;
	if (d->n == d->cap) {
		nv = realloc(d->name, (d->cap ? d->cap * 2 : 16) *
		    sizeof *nv);
		if (nv == NULL) {
			d->nomem = 1;
			return;
		}
		d->name = nv;
		d->cap = d->cap ? d->cap * 2 : 16;
	}
	if ((d->name[d->n] = strndup(e->name.p, e->name.len)) == NULL)
		d->nomem = 1;
	else
		d->n++;
}

static void
subdirs_free(struct subdirs *d)
{
	while (d->n > 0)
		free(d->name[--d->n]);
	free(d->name);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* List |path|'s subdirectories into |d|, sorted by name (so du's lines
 * come in name order): the exit status. */
static int
subdirs_of(struct ctl *x, const char *path, struct subdirs *d)
{
	int rc;

	memset(d, 0, sizeof *d);
	rc = list_dir(x, path[0] ? path : "/", mst_str_of(path), subdirs_add,
	    d);
	if (rc == CLI_EXIT_OK && d->nomem) {
		say("du %s: out of memory", path);
		rc = CLI_EXIT_FAIL;
	}
	if (d->n > 1)
		qsort(d->name, d->n, sizeof *d->name, name_cmp);
	return rc;
}

struct du_box {
	uint64_t msgs, bytes;
};

/* Count the entries of new/ and cur/: messages, and ordinary files a
 * Maildir writer left there (both are mail to Dovecot). */
static void
du_count(void *arg, const struct mst_list_entry *e)
{
	struct du_box *b = arg;

	if (e->attr.type == MST_T_MSG || e->attr.type == MST_T_FILE) {
		b->msgs++;
		b->bytes += e->attr.size;
	}
}

static int
join(char *out, size_t cap, const char *a, const char *b)
{
	if ((size_t)snprintf(out, cap, "%s%s%s", a, a[0] ? "/" : "", b) >=
	    cap) {
		say("du: path too long: %s/%s", a, b);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

/* new/ and cur/ of the Maildir (or Maildir++ folder) |path|, whose
 * subdirectories are |d|. */
static int
du_maildir(struct ctl *x, const char *path, const struct subdirs *d,
    struct du_box *b)
{
	char sub[MST_PATH_MAX + 8];
	size_t i;
	int rc = CLI_EXIT_OK;

	for (i = 0; rc == CLI_EXIT_OK && i < d->n; i++) {
		if (strcmp(d->name[i], "new") != 0 &&
		    strcmp(d->name[i], "cur") != 0)
			continue;
		rc = join(sub, sizeof sub, path, d->name[i]);
		if (rc == CLI_EXIT_OK)
			rc = list_dir(x, sub, mst_str_of(sub), du_count, b);
	}
	return rc;
}

struct du {
	uint64_t boxes, msgs, bytes;
};

static void
du_report(struct ctl *x, struct du *t, const char *box,
    const struct du_box *b)
{
	t->boxes++;
	t->msgs += b->msgs;
	t->bytes += b->bytes;
	if (!x->json) {
		printf("%10" PRIu64 " %14" PRIu64 "  %s\n", b->msgs, b->bytes,
		    box);
		return;
	}
	json_obj_begin(&x->out, NULL);
	json_str(&x->out, "mailbox", box);
	json_u64(&x->out, "messages", b->msgs);
	json_u64(&x->out, "bytes", b->bytes);
	json_obj_end(&x->out);
}

/*
 * A directory that holds new/ or cur/ is a mailbox: its messages, with
 * those of its Maildir++ folders (".Name" subdirectories), are reported
 * as one line. Any other directory is walked, DU_DEPTH levels deep.
 */
static int
du_walk(struct ctl *x, struct du *t, const char *path, int depth)
{
	struct subdirs d, fd;
	struct du_box b = { 0 };
	char sub[MST_PATH_MAX + 8];
	const char *base = strrchr(path, '/');
	size_t i;
	int rc;

	rc = subdirs_of(x, path, &d);
	base = base ? base + 1 : path;
	if (rc == CLI_EXIT_OK && d.maildir && path[0] && base[0] != '.') {
		rc = du_maildir(x, path, &d, &b);
		for (i = 0; rc == CLI_EXIT_OK && i < d.n; i++) {
			if (d.name[i][0] != '.')
				continue;
			rc = join(sub, sizeof sub, path, d.name[i]);
			if (rc == CLI_EXIT_OK)
				rc = subdirs_of(x, sub, &fd);
			if (rc == CLI_EXIT_OK && fd.maildir)
				rc = du_maildir(x, sub, &fd, &b);
			subdirs_free(&fd);
		}
		if (rc == CLI_EXIT_OK)
			du_report(x, t, path, &b);
		subdirs_free(&d);
		return rc;
	}
	for (i = 0; rc == CLI_EXIT_OK && depth > 0 && i < d.n; i++) {
		if (strcmp(d.name[i], "tmp") == 0 ||
		    strcmp(d.name[i], "new") == 0 ||
		    strcmp(d.name[i], "cur") == 0)
			continue;
		rc = join(sub, sizeof sub, path, d.name[i]);
		if (rc == CLI_EXIT_OK)
			rc = du_walk(x, t, sub, depth - 1);
	}
	subdirs_free(&d);
	return rc;
}

static int
cmd_du(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	struct du t = { 0 };
	int rc;

	rc = norm_path(argc > 1 ? argv[1] : "", pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "path", pbuf[0] ? pbuf : "/");
		json_arr_begin(&x->out, "mailboxes");
	} else {
		printf("%10s %14s  %s\n", "MESSAGES", "BYTES", "MAILBOX");
	}
	rc = du_walk(x, &t, pbuf, DU_DEPTH);
	if (x->json) {
		json_arr_end(&x->out);
		json_obj_begin(&x->out, "total");
		json_u64(&x->out, "mailboxes", t.boxes);
		json_u64(&x->out, "messages", t.msgs);
		json_u64(&x->out, "bytes", t.bytes);
		json_obj_end(&x->out);
		json_obj_end(&x->out);
	} else if (rc == CLI_EXIT_OK) {
		printf("%10" PRIu64 " %14" PRIu64 "  total (%" PRIu64
		    " mailbox%s)\n", t.msgs, t.bytes, t.boxes,
		    t.boxes == 1 ? "" : "es");
	}
	return rc;
}

static int
quota_get(struct ctl *x, const char *mbox, struct mst_str path)
{
	struct mst_statfs_rep r;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int rc;

	rc = call_path(x, MST_OP_STATFS, path, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_STATFS, mbox, rc, &h, rp);
	rc = mst_statfs_rep_decode(&r, rp, h.len);
	if (rc < 0)
		return bad_reply("STATFS", mbox, rc);
	if (x->json) {
		json_obj_begin(&x->out, NULL);
		json_str(&x->out, "mailbox", mbox);
		json_u64(&x->out, "quota_bytes", r.quota_bytes);
		json_u64(&x->out, "used_bytes", r.used_bytes);
		json_u64(&x->out, "quota_msgs", r.quota_msgs);
		json_u64(&x->out, "used_msgs", r.used_msgs);
		json_obj_end(&x->out);
		return CLI_EXIT_OK;
	}
	printf("mailbox=%s\nquota_bytes=%" PRIu64 "\nused_bytes=%" PRIu64
	    "\nquota_msgs=%" PRIu64 "\nused_msgs=%" PRIu64 "\n", mbox,
	    r.quota_bytes, r.used_bytes, r.quota_msgs, r.used_msgs);
	return CLI_EXIT_OK;
}

/* ADMIN quota "MAILBOX BYTES MESSAGES" (sizes with K, M, G; 0: no
 * limit). */
static int
quota_set(struct ctl *x, const char *mbox, const char *bytes,
    const char *msgs)
{
	struct mst_admin_rep r;
	uint64_t b, m;
	char arg[MST_PATH_MAX + 64];

	if (cli_parse_size(bytes, UINT64_MAX, &b) < 0)
		return usage_error("quota set: bad BYTES '%s' (a size, K, M "
		    "or G suffix; 0: no limit)", bytes);
	if (cli_parse_count(msgs, 0, UINT64_MAX, &m) < 0)
		return usage_error("quota set: bad MESSAGES '%s' (a count; "
		    "0: no limit)", msgs);
	snprintf(arg, sizeof arg, "%s %" PRIu64 " %" PRIu64, mbox, b, m);
	return cmd_admin(x, "quota", arg, &r);
}

static int
cmd_quota(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	int rc, set = strcmp(argv[1], "set") == 0;

	if (!set && strcmp(argv[1], "get") != 0)
		return usage_error("quota: unknown subcommand '%s' (there "
		    "are: get, set)", argv[1]);
	if (argc != (set ? 5 : 3))
		return usage_error("%s", set ? "quota set: expected MAILBOX "
		    "BYTES MESSAGES" : "quota get: expected MAILBOX");
	rc = norm_path(argv[2], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	if (path.len == 0)
		return usage_error("quota: '%s' is the root, not a mailbox",
		    argv[2]);
	if (set) {
		rc = quota_set(x, pbuf, argv[3], argv[4]);
		if (rc != CLI_EXIT_OK)
			return rc;
	}
	return quota_get(x, pbuf, path);
}

/* --- a cluster of servers (ctl_cluster.c) --- */

static int
cmd_cluster(struct ctl *x, int argc, char **argv)
{
	if (strcmp(argv[1], "status") != 0)
		return usage_error("cluster: unknown subcommand '%s' (there "
		    "is: status)", argv[1]);
	return ctl_cluster_status(PROG, &x->o, x->json ? &x->out : NULL,
	    &x->report, argc - 1, argv + 1);
}

/* --- a mount's own counters (ctl_mount.c) --- */

static int
cmd_mount_stats(struct ctl *x, int argc, char **argv)
{
	char err[512];

	(void)argc;
	if (ctl_mount_stats(argv[1], x->json ? &x->out : NULL, err,
	    sizeof err) == 0)
		return CLI_EXIT_OK;
	say("%s", err);
	return CLI_EXIT_FAIL;
}

/* --- command table and main --- */

static const struct command commands[] = {
	{ "ping", "", "round-trip time of one PING", 0, 0, cmd_ping, 0 },
	{ "status", "", "server name, protocol version, frame and body "
	    "limits, features", 0, 0, cmd_status, 0 },
	{ "stats", "", "server counters (ADMIN stats)", 0, 0,
	    cmd_admin_print, 0 },
	{ "scrub", "[KEY=VALUE]...", "verify every checksum on the store "
	    "(rados: and remove orphans); exit 1 if damaged", 0, 8,
	    cmd_scrub, 1 },
	{ "compact", "[--wait]", "reclaim the space of removed data "
	    "(--wait: until done)", 0, 1, cmd_compact, 0 },
	{ "checkpoint", "", "write an index checkpoint now", 0, 0,
	    cmd_admin_print, 1 },
	{ "ls", "[PATH]", "list a directory (default: the root)", 0, 1,
	    cmd_ls, 0 },
	{ "stat", "PATH", "attributes of one entry", 1, 1, cmd_stat, 0 },
	{ "cat", "PATH", "write a small file to stdout, checksum verified",
	    1, 1, cmd_cat, 0 },
	{ "mkdir", "[-p] [--mode MODE] PATH", "create a directory", 1, 4,
	    cmd_mkdir, 0 },
	{ "put", "[--excl] [--mode MODE] PATH", "store stdin as a small "
	    "file, atomically", 1, 4, cmd_put, 0 },
	{ "rm", "PATH", "remove a small file or an empty directory", 1, 1,
	    cmd_rm, 0 },
	{ "statfs", "[PATH]", "space, counts and quota of the mailbox "
	    "holding PATH", 0, 1, cmd_statfs, 0 },
	{ "du", "[PATH]", "messages and bytes per mailbox, and the total",
	    0, 1, cmd_du, 0 },
	{ "quota", "get MAILBOX", "a mailbox's quota and usage", 2, 4,
	    cmd_quota, 0 },
	{ "quota", "set MAILBOX BYTES MESSAGES", "set a mailbox's quota "
	    "(0: no limit)", 2, 4, cmd_quota, 0 },
	{ "cluster", "status [OPTS] [MAILBOX]...", "servers and their "
	    "health, each mailbox's server,\n"
	    "                                   Ceph's health; OPTS: "
	    "--mount DIR or\n"
	    "                                   --servers LIST, --ceph-conf "
	    "FILE", 1, 64, cmd_cluster, 0 },
	{ "mount-stats", "MOUNTPOINT", "counters of a mount.mstore mount "
	    "(no server needed)", 1, 1, cmd_mount_stats, 0 },
};

static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
usage(FILE *f)
{
	size_t i;
	char syn[64];

	fprintf(f,
	    "Usage: %s [-s SERVER] [-k KEYFILE] [-t TIMEOUT] "
	    "[--tls --cafile FILE]\n"
	    "                  [--json] [--progress] COMMAND [ARGS]\n"
	    "       %s --help | --version\n"
	    "\n"
	    "Operator client of mstored, the mstore store server.\n"
	    "\n"
	    "  -s, --server SERVER   HOST:PORT, [V6]:PORT or unix:PATH\n"
	    "                        (default $%s, else %s)\n"
	    "  -k, --key KEYFILE     shared key, when the server requires "
	    "one\n"
	    "  -t, --timeout SECS    connect and reply timeout (default 10; "
	    "scrub and\n"
	    "                        checkpoint 3600)\n"
	    "      --tls             speak TLS to a HOST:PORT server; its "
	    "certificate\n"
	    "                        must lead to --cafile and name HOST\n"
	    "      --cafile FILE     PEM CA certificate(s) to trust with "
	    "--tls\n"
	    "      --json            print one JSON document on stdout "
	    "(errors too)\n"
	    "      --progress        report scrub and compact --wait "
	    "progress on stderr\n"
	    "                        (the default when stderr is a "
	    "terminal)\n"
	    "  -h, --help            show this help and exit\n"
	    "  -V, --version         show the version and exit\n"
	    "\n"
	    "Commands:\n", PROG, PROG, CLI_SERVER_ENV, CLI_SERVER_DEFAULT);
	for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		snprintf(syn, sizeof syn, "%s %s", commands[i].name,
		    commands[i].synopsis);
		fprintf(f, "  %-32s %s\n", syn, commands[i].help);
	}
	fprintf(f, "\nPaths are relative to the store's root; a leading '/' "
	    "is ignored.\n"
	    "Exit status: 0 ok, 1 the operation failed, 2 usage error. "
	    "See mstore-ctl(8).\n");
}

/* Returns -1 to go on, or the exit status. */
static int
parse_args(int argc, char **argv, struct ctl *x)
{
	static const struct option opts[] = {
		{ .name = "server", .has_arg = required_argument, .val = 's' },
		{ .name = "key", .has_arg = required_argument, .val = 'k' },
		{ .name = "timeout", .has_arg = required_argument,
		  .val = 't' },
		{ .name = "tls", .has_arg = no_argument, .val = 'T' },
		{ .name = "cafile", .has_arg = required_argument,
		  .val = 'A' },
		{ .name = "json", .has_arg = no_argument, .val = 'J' },
		{ .name = "progress", .has_arg = no_argument, .val = 'P' },
		{ .name = "help", .has_arg = no_argument, .val = 'h' },
		{ .name = "version", .has_arg = no_argument, .val = 'V' },
		{ 0 },
	};
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *keyfile = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "+s:k:t:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			x->server = optarg;
			break;
		case 'k':
			keyfile = optarg;
			break;
		case 'T':
			x->o.tls = 1;
			break;
		case 'A':
			x->o.cafile = optarg;
			break;
		case 'J':
			x->json = 1;
			break;
		case 'P':
			x->progress = 1;
			break;
		case 't':
			if (cli_parse_seconds(optarg, &x->o.timeout_ms) < 0)
				return usage_error("-t %s: expected seconds "
				    "(more than 0, at most 86400)", optarg);
			x->timeout_given = 1;
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
	}
	rc = mst_addr_parse(x->server, &ss, &sl);
	if (rc < 0)
		return usage_error(rc == -ENAMETOOLONG ? "server %s: unix "
		    "socket path too long" : "server %s: expected HOST:PORT, "
		    "[V6]:PORT or unix:PATH (numeric host or localhost)",
		    x->server);
	if (x->o.tls && x->o.cafile == NULL)
		return usage_error("%s", "--tls needs --cafile FILE");
	if (x->o.cafile != NULL && !x->o.tls)
		return usage_error("%s", "--cafile goes with --tls");
	if (x->o.tls && ss.ss_family == AF_UNIX)
		return usage_error("server %s: TLS is for HOST:PORT servers "
		    "(Unix sockets are plaintext)", x->server);
	if (keyfile && cli_key_load(PROG, keyfile, x->key, &x->o) < 0)
		return CLI_EXIT_FAIL;
	return -1;
}

/* Find the command, connect, run it: the exit status. */
static int
run(struct ctl *x, int argc, char **argv)
{
	const struct command *cmd;
	int rc, nargs;

	if (optind >= argc)
		return usage_error("%s", "missing COMMAND");
	cmd = find_command(argv[optind]);
	if (cmd == NULL)
		return usage_error("unknown command '%s'", argv[optind]);
	nargs = argc - optind - 1;
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_error(nargs < cmd->min_args ? "%s: missing "
		    "argument" : "%s: too many arguments", cmd->name);
	if (!x->timeout_given)
		x->o.timeout_ms = cmd->long_timeout ? TIMEOUT_SCRUB_MS :
		    TIMEOUT_DEFAULT_MS;
	if (isatty(STDERR_FILENO))
		x->progress = 1;
	/* cluster talks to servers of its own choosing; mount-stats to
	 * none */
	if (cmd->run != cmd_cluster && cmd->run != cmd_mount_stats) {
		rc = cli_connect(PROG, x->server, &x->o, &x->c);
		if (rc < 0) {
			snprintf(last_err.op, sizeof last_err.op, "connect");
			last_err.err = rc;
			snprintf(last_err.msg, sizeof last_err.msg,
			    "connect %s: %s", x->server,
			    cli_connect_strerror(rc));
			return CLI_EXIT_FAIL;
		}
	}
	return cmd->run(x, argc - optind, argv + optind);
}

int
main(int argc, char **argv)
{
	struct ctl x = { .o = { .name = PROG " " PACKAGE_VERSION } };
	int rc;

	/* A server gone mid-write must be an error, not a signal (OpenSSL
	 * writes with write(2)). */
	signal(SIGPIPE, SIG_IGN);
	x.server = getenv(CLI_SERVER_ENV);
	if (x.server == NULL || x.server[0] == '\0')
		x.server = CLI_SERVER_DEFAULT;
	json_init(&x.out);
	rc = parse_args(argc, argv, &x);
	if (rc < 0)
		rc = run(&x, argc, argv);
	mst_client_free(x.c);
	if (x.json && x.out.len > 0 && (rc == CLI_EXIT_OK || x.report)) {
		int jr = json_print(&x.out, stdout);

		if (jr < 0) {
			say("--json: %s", strerror(-jr));
			rc = CLI_EXIT_FAIL;
		}
	} else if (x.json && rc != CLI_EXIT_OK) {
		print_json_error(rc);
	}
	json_free(&x.out);
	if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
		fprintf(stderr, "%s: writing stdout: %s\n", PROG,
		    strerror(errno));
		rc = CLI_EXIT_FAIL;
	}
	return rc;
}
