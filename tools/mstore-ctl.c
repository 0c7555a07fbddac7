/*
 * mstore-ctl.c - the operator's command-line client of mstored: one
 * command per run, one connection, the protocol only (never server
 * internals). Prints results on stdout and one line per failure on
 * stderr; the exit status says which (0 ok, 1 failed, 2 usage).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "cli.h"
#include "ctl_cluster.h"
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
	fprintf(stderr, "%s: %s%s%s: %s%s%.*s%s\n", PROG, name ? name : "?",
	    what[0] ? " " : "", what, reason, er.detail.len ? " (" : "",
	    (int)er.detail.len, er.detail.p, er.detail.len ? ")" : "");
	return CLI_EXIT_FAIL;
}

static int
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", PROG);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry '%s --help'.\n", PROG);
	return CLI_EXIT_USAGE;
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
	if (rc < 0) {
		fprintf(stderr, "%s: PING %s: bad reply: %s\n", PROG,
		    x->server, strerror(-rc));
		return CLI_EXIT_FAIL;
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
	if (rc < 0) {
		fprintf(stderr, "%s: ADMIN %s: bad reply: %s\n", PROG, cmd,
		    strerror(-rc));
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static int
cmd_admin_print(struct ctl *x, int argc, char **argv)
{
	struct mst_admin_rep r;
	int rc;

	(void)argc;
	rc = cmd_admin(x, argv[0], "", &r);
	if (rc == CLI_EXIT_OK)
		print_admin_text(&r);
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
	rc = cmd_admin(x, "scrub", arg, &r);
	if (rc != CLI_EXIT_OK)
		return rc;
	print_admin_text(&r);
	if (has_line(&r.text, "result=damaged")) {
		fprintf(stderr, "%s: scrub: the store is damaged (see the "
		    "damage= lines above)\n", PROG);
		return CLI_EXIT_FAIL;
	}
	if (!has_line(&r.text, "result=clean")) {
		fprintf(stderr, "%s: scrub: the reply has no result= line\n",
		    PROG);
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

/* Print the entries of one READDIR reply frame. */
static int
print_list_frame(const uint8_t *p, size_t len)
{
	struct mst_list_rep r;
	struct mst_list_entry e;
	size_t off = 0;
	int rc = mst_list_rep_decode(&r, p, len);

	while (rc == 0 && (rc = mst_list_entry_next(&e, &r, &off)) == 1) {
		print_entry(&e);
		rc = 0;
	}
	return rc;
}

static int
cmd_ls(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint32_t id;
	int rc;

	rc = norm_path(argc > 1 ? argv[1] : "", pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	rc = call_path(x, MST_OP_READDIR, path, &h, &rp);
	if (rc < 0)
		return fail_op(MST_OP_READDIR, pbuf, rc, &h, rp);
	id = h.id;
	for (;;) {
		rc = print_list_frame(rp, h.len);
		if (rc < 0)
			break;
		if (!(h.flags & MST_F_MORE))
			return CLI_EXIT_OK;
		do {	/* the rest of the listing; notices are not ours */
			rc = mst_client_recv(x->c, &h, &rp);
		} while (rc == 0 && (h.flags & MST_F_NOTICE));
		if (rc < 0)
			return fail_op(MST_OP_READDIR, pbuf, rc, &h, rp);
		if (h.id != id || h.status != 0) {
			rc = -EPROTO;
			break;
		}
	}
	fprintf(stderr, "%s: READDIR %s: bad reply: %s\n", PROG, pbuf,
	    strerror(-rc));
	return CLI_EXIT_FAIL;
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
	if (rc < 0) {
		fprintf(stderr, "%s: LOOKUP %s: bad reply: %s\n", PROG, pbuf,
		    strerror(-rc));
		return CLI_EXIT_FAIL;
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

/*
 * GET the whole file in frame-sized pieces, write each to stdout as it
 * arrives and check the xxh3 of everything against the store's checksum
 * at the end. A file replaced while we read shows up as a changed size
 * or checksum between pieces.
 */
static int
get_to_stdout(struct ctl *x, const char *what, struct mst_str path,
    XXH3_state_t *st)
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
		if (rc < 0) {
			fprintf(stderr, "%s: GET %s: bad reply: %s\n", PROG,
			    what, strerror(-rc));
			return CLI_EXIT_FAIL;
		}
		if (!first && (r.total_size != total || r.checksum != sum)) {
			fprintf(stderr, "%s: GET %s: the file changed while "
			    "it was read; output incomplete\n", PROG, what);
			return CLI_EXIT_FAIL;
		}
		first = 0;
		total = r.total_size;
		sum = r.checksum;
		if (r.data.len == 0 && q.offset < total) {
			fprintf(stderr, "%s: GET %s: server sent no data at "
			    "offset %" PRIu64 " of %" PRIu64 "\n", PROG, what,
			    q.offset, total);
			return CLI_EXIT_FAIL;
		}
		XXH3_64bits_update(st, r.data.p, r.data.len);
		rc = cli_write_all(STDOUT_FILENO, r.data.p, r.data.len);
		if (rc < 0) {
			fprintf(stderr, "%s: cat %s: writing stdout: %s\n",
			    PROG, what, strerror(-rc));
			return CLI_EXIT_FAIL;
		}
		q.offset += r.data.len;
		if (q.offset >= total)
			break;
	}
	got = XXH3_64bits_digest(st);
	if (got != sum) {
		fprintf(stderr, "%s: cat %s: checksum mismatch: read %016"
		    PRIx64 ", store says %016" PRIx64 ": output is damaged\n",
		    PROG, what, got, sum);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static int
cmd_cat(struct ctl *x, int argc, char **argv)
{
	char pbuf[MST_PATH_MAX + 2];
	struct mst_str path;
	XXH3_state_t *st;
	int rc;

	(void)argc;
	rc = norm_path(argv[1], pbuf, sizeof pbuf, &path);
	if (rc)
		return rc;
	st = XXH3_createState();
	if (st == NULL || XXH3_64bits_reset(st) != XXH_OK) {
		fprintf(stderr, "%s: out of memory\n", PROG);
		XXH3_freeState(st);
		return CLI_EXIT_FAIL;
	}
	rc = get_to_stdout(x, pbuf, path, st);
	XXH3_freeState(st);
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
	if (path.len == 0 && so.parents)
		return CLI_EXIT_OK;	/* the root always exists */
	for (i = 1; so.parents && i < path.len; i++) {
		if (pbuf[i] != '/')
			continue;
		pre = (struct mst_str){ pbuf, (uint16_t)i };
		pbuf[i] = '\0';
		rc = mkdir_one(x, pre, so.mode, -EEXIST, pbuf);
		pbuf[i] = '/';
		if (rc)
			return rc;
	}
	return mkdir_one(x, path, so.mode, so.parents ? -EEXIST : 0, pbuf);
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
		fprintf(stderr, "%s: put %s: reading stdin: %s%s\n", PROG,
		    pbuf, strerror(-rc), rc == -EFBIG ?
		    " (larger than the server's max_body)" : "");
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
	return CLI_EXIT_OK;
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
	if (rc < 0) {
		fprintf(stderr, "%s: STATFS %s: bad reply: %s\n", PROG, pbuf,
		    strerror(-rc));
		return CLI_EXIT_FAIL;
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

/* --- a cluster of servers (ctl_cluster.c) --- */

static int
cmd_cluster(struct ctl *x, int argc, char **argv)
{
	if (strcmp(argv[1], "status") != 0)
		return usage_error("cluster: unknown subcommand '%s' (there "
		    "is: status)", argv[1]);
	return ctl_cluster_status(PROG, &x->o, argc - 1, argv + 1);
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
	{ "compact", "", "start reclaiming the space of removed data", 0, 0,
	    cmd_admin_print, 0 },
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
	{ "cluster", "status [OPTS] [MAILBOX]...", "servers and their "
	    "health, each mailbox's server,\n"
	    "                                   Ceph's health; OPTS: "
	    "--mount DIR or\n"
	    "                                   --servers LIST, --ceph-conf "
	    "FILE", 1, 64, cmd_cluster, 0 },
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
	    "                  COMMAND [ARGS]\n"
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

int
main(int argc, char **argv)
{
	struct ctl x = { .o = { .name = PROG " " PACKAGE_VERSION } };
	const struct command *cmd;
	int rc, nargs;

	/* A server gone mid-write must be an error, not a signal (OpenSSL
	 * writes with write(2)). */
	signal(SIGPIPE, SIG_IGN);
	x.server = getenv(CLI_SERVER_ENV);
	if (x.server == NULL || x.server[0] == '\0')
		x.server = CLI_SERVER_DEFAULT;
	rc = parse_args(argc, argv, &x);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return usage_error("%s", "missing COMMAND");
	cmd = find_command(argv[optind]);
	if (cmd == NULL)
		return usage_error("unknown command '%s'", argv[optind]);
	nargs = argc - optind - 1;
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_error(nargs < cmd->min_args ? "%s: missing "
		    "argument" : "%s: too many arguments", cmd->name);
	if (!x.timeout_given)
		x.o.timeout_ms = cmd->long_timeout ? TIMEOUT_SCRUB_MS :
		    TIMEOUT_DEFAULT_MS;
	/* cluster talks to servers of its own choosing */
	if (cmd->run != cmd_cluster &&
	    cli_connect(PROG, x.server, &x.o, &x.c) < 0)
		return CLI_EXIT_FAIL;
	rc = cmd->run(&x, argc - optind, argv + optind);
	mst_client_free(x.c);
	if (rc == CLI_EXIT_OK && fflush(stdout) != 0) {
		fprintf(stderr, "%s: writing stdout: %s\n", PROG,
		    strerror(errno));
		rc = CLI_EXIT_FAIL;
	}
	return rc;
}
