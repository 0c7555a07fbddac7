/*
 * ctl_cluster.c - `mstore-ctl cluster status`: a cluster of store servers
 * as one mount and the operator see it. Owns the three parts of the
 * report and the exit status made of them:
 *
 *   - the servers: the mount's routing view (the user.mstore.servers
 *     attribute of its root: up, down or left the list, which one is the
 *     home server), or the --servers list; each is also PINGed from here;
 *   - the mailboxes: the server each maps to now from the mount's point
 *     of view (the user.mstore.server attribute of the mailbox's
 *     directory), for the mailboxes named, or every Maildir found under
 *     the mount;
 *   - Ceph: `ceph --conf FILE -s`, when --ceph-conf FILE is given.
 *
 * Talks to the servers with PING only, and to the mount through its
 * attributes; nothing here changes anything. With --json (|js| set) the
 * same report is one JSON object (mstore-ctl(8), JSON OUTPUT).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../cli.h"
#include "ctl_cluster.h"
#include "json.h"
#include "mstclient.h"

#define XA_SERVERS	"user.mstore.servers"
#define XA_SERVER	"user.mstore.server"
#define SRV_MAX		64
#define WALK_DEPTH	6	/* domain/user, home/user/Maildir, ... */
#define CEPH_OUT_MAX	(64 * 1024)

struct srv {
	char addr[256];
	char state[16];		/* up, down, left; "" when no mount */
	int home;
};

/* --json: the report being built, or NULL for text on stdout. */
static struct json *js;

/* PING |addr|: its round trip in ms, or a negative errno (*why set). */
static double
ping_ms(const char *addr, const struct mst_client_opts *o, int *err)
{
	struct mst_client *c;
	struct mst_ping q, r;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint8_t buf[16];
	uint64_t t0;
	int n, rc;

	rc = mst_client_connect(addr, o, &c);
	if (rc < 0) {
		*err = rc;
		return -1;
	}
	if (getrandom(&q.cookie, sizeof q.cookie, 0) != sizeof q.cookie)
		q.cookie = (uint64_t)cli_now_ns();
	n = mst_ping_encode(&q, buf, sizeof buf);
	t0 = cli_now_ns();
	rc = mst_client_call(c, MST_OP_PING, buf, (size_t)n, &h, &rp);
	if (rc == 0)
		rc = mst_ping_decode(&r, rp, h.len);
	if (rc == 0 && r.cookie != q.cookie)
		rc = -EPROTO;
	mst_client_free(c);
	*err = rc;
	return rc < 0 ? -1 : (double)(cli_now_ns() - t0) / 1e6;
}

/* Parse the mount's view ("ADDR STATE[ home]" lines) into |v|. */
static int
parse_view(char *text, struct srv *v, int max)
{
	char *line, *save = NULL;
	int n = 0;

	for (line = strtok_r(text, "\n", &save); line && n < max;
	    line = strtok_r(NULL, "\n", &save)) {
		char home[8] = "";

		if (sscanf(line, "%255s %15s %7s", v[n].addr, v[n].state,
		    home) < 2)
			continue;
		v[n].home = strcmp(home, "home") == 0;
		n++;
	}
	return n;
}

/* A list "S1,S2 S3" into |v|. */
static int
parse_list(const char *list, struct srv *v, int max)
{
	char *copy = strdup(list), *w, *save = NULL;
	int n = 0;

	if (copy == NULL)
		return -ENOMEM;
	for (w = strtok_r(copy, ", \t\n", &save); w && n < max;
	    w = strtok_r(NULL, ", \t\n", &save)) {
		memset(&v[n], 0, sizeof v[n]);
		snprintf(v[n].addr, sizeof v[n].addr, "%s", w);
		n++;
	}
	free(copy);
	return n;
}

static int
show_servers(const char *prog, const char *mnt, const char *list,
    const struct mst_client_opts *o)
{
	struct srv v[SRV_MAX];
	char text[SRV_MAX * 300];
	ssize_t len;
	int n, i, bad = 0;

	if (mnt != NULL) {
		len = getxattr(mnt, XA_SERVERS, text, sizeof text - 1);
		if (len < 0) {
			fprintf(stderr, "%s: %s: no routing view (%s%s)\n",
			    prog, mnt, strerror(errno), errno == ENODATA ||
			    errno == ENOTSUP ? "; not the root of an "
			    "mstore mount?" : "");
			return -1;
		}
		text[len] = '\0';
		n = parse_view(text, v, SRV_MAX);
		if (!js)
			printf("Servers (as the mount %s sees them; PING "
			    "from here):\n", mnt);
	} else {
		n = parse_list(list, v, SRV_MAX);
		if (!js)
			printf("Servers (PING from here):\n");
	}
	if (n <= 0) {
		fprintf(stderr, "%s: no servers\n", prog);
		return -1;
	}
	if (js)
		json_arr_begin(js, "servers");
	for (i = 0; i < n; i++) {
		int err = 0;
		double ms = ping_ms(v[i].addr, o, &err);
		const char *state = v[i].state[0] ? v[i].state :
		    ms >= 0 ? "up" : "down";

		if (strcmp(state, "left") != 0 &&
		    (strcmp(state, "up") != 0 || ms < 0))
			bad = 1;
		if (js) {
			json_obj_begin(js, NULL);
			json_str(js, "address", v[i].addr);
			json_str(js, "state", state);
			json_bool(js, "home", v[i].home);
			if (ms >= 0)
				json_num(js, "ping_ms", ms, 3);
			else
				json_null(js, "ping_ms");
			if (ms >= 0)
				json_null(js, "error");
			else
				json_str(js, "error",
				    cli_connect_strerror(err));
			json_obj_end(js);
			continue;
		}
		printf("  %-24s %-5s %-5s", v[i].addr, state,
		    v[i].home ? "home" : "");
		if (ms >= 0)
			printf(" PING %.3f ms\n", ms);
		else
			printf(" no answer: %s\n", cli_connect_strerror(err));
	}
	if (js)
		json_arr_end(js);
	return bad;
}

/* One mailbox: the server the mount picks for it now. */
static int
show_mailbox(const char *mnt, const char *box)
{
	char path[4096], addr[256];
	ssize_t len;

	snprintf(path, sizeof path, "%s/%s", mnt, box);
	len = getxattr(path, XA_SERVER, addr, sizeof addr - 1);
	if (len >= 0)
		addr[len] = '\0';
	if (js) {
		json_obj_begin(js, NULL);
		json_str(js, "mailbox", box);
		if (len < 0) {
			json_null(js, "server");
			json_str(js, "error", strerror(errno));
		} else {
			json_str(js, "server", addr);
			json_null(js, "error");
		}
		json_obj_end(js);
		return len < 0;
	}
	if (len < 0) {
		printf("  %-32s ? (%s)\n", box, strerror(errno));
		return 1;
	}
	printf("  %-32s %s\n", box, addr);
	return 0;
}

static int
is_dir(DIR *dp, const struct dirent *d)
{
	struct stat st;

	if (d->d_type != DT_UNKNOWN)
		return d->d_type == DT_DIR;
	return fstatat(dirfd(dp), d->d_name, &st, 0) == 0 &&
	    S_ISDIR(st.st_mode);
}

/* Every Maildir under |mnt|/|rel| (a directory holding new/ or cur/,
 * not a Maildir++ ".folder", which belongs to its mailbox). */
static int
walk(const char *mnt, const char *rel, int depth, int *count)
{
	char dir[4096], sub[4096];
	struct dirent *d;
	DIR *dp;
	int bad = 0, maildir = 0;

	if (snprintf(dir, sizeof dir, "%s%s%s", mnt, rel[0] ? "/" : "", rel) >=
	    (int)sizeof dir)
		return 0;
	dp = opendir(dir);
	if (dp == NULL)
		return 0;
	while ((d = readdir(dp)) != NULL)
		if ((strcmp(d->d_name, "new") == 0 ||
		    strcmp(d->d_name, "cur") == 0) && is_dir(dp, d))
			maildir = 1;
	if (maildir && rel[0] != '\0') {
		const char *base = strrchr(rel, '/');

		base = base ? base + 1 : rel;
		if (base[0] != '.') {
			bad |= show_mailbox(mnt, rel);
			(*count)++;
		}
	}
	rewinddir(dp);
	while (depth > 0 && (d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.' && (d->d_name[1] == '\0' ||
		    (d->d_name[1] == '.' && d->d_name[2] == '\0')))
			continue;
		if (strcmp(d->d_name, "new") == 0 ||
		    strcmp(d->d_name, "cur") == 0 ||
		    strcmp(d->d_name, "tmp") == 0 || !is_dir(dp, d))
			continue;
		if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "",
		    d->d_name) >= (int)sizeof sub)
			continue;
		bad |= walk(mnt, sub, depth - 1, count);
	}
	closedir(dp);
	return bad;
}

/* Run `ceph --conf FILE --connect-timeout S -s` with a deadline; its
 * output (stdout and stderr) to |out|. The exit status, or -1. */
static int
run_ceph(const char *conf, int timeout_ms, char *out, size_t cap)
{
	char tmo[32];
	const char *argv[] = { "ceph", "--conf", conf, "--connect-timeout",
		tmo, "-s", NULL };
	int fd[2], status = -1;
	size_t len = 0;
	pid_t pid;
	uint64_t end = cli_now_ns() + (uint64_t)timeout_ms * 2000000u;

	snprintf(tmo, sizeof tmo, "%d", (timeout_ms + 999) / 1000);
	if (pipe(fd) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fd[0]);
		close(fd[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fd[1], 1);
		dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "ceph: %s\n", strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	for (;;) {
		struct pollfd p = { fd[0], POLLIN, 0 };
		uint64_t now = cli_now_ns();
		ssize_t got;

		if (now >= end || poll(&p, 1, (int)((end - now) / 1000000u) +
		    1) == 0) {
			kill(pid, SIGKILL);	/* our own child */
			snprintf(out + len, cap - len, "(no answer within "
			    "%d s)\n", 2 * timeout_ms / 1000);
			len = strlen(out);
			break;
		}
		got = read(fd[0], out + len, cap - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
		out[len] = '\0';
		if (len + 1 >= cap)
			break;
	}
	out[len] = '\0';
	close(fd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int
show_ceph(const char *conf, int timeout_ms)
{
	char *out = malloc(CEPH_OUT_MAX), *line, *save = NULL, *h;
	int rc, bad;

	if (out == NULL)
		return 1;
	out[0] = '\0';
	rc = run_ceph(conf, timeout_ms, out, CEPH_OUT_MAX);
	h = strstr(out, "health: ");
	bad = rc != 0 || h == NULL || strncmp(h + 8, "HEALTH_ERR", 10) == 0;
	if (js) {
		json_obj_begin(js, "ceph");
		json_str(js, "conf", conf);
		json_i64(js, "exit_status", rc);
		if (h != NULL)
			json_strn(js, "health", h + 8, strcspn(h + 8, " \n"));
		else
			json_null(js, "health");
		json_str(js, "output", out);
		json_obj_end(js);
		free(out);
		return bad;
	}
	printf("Ceph (ceph --conf %s -s%s):\n", conf, rc == 0 ? "" :
	    ", failed");
	for (line = strtok_r(out, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save))
		printf("  %s\n", line);
	free(out);
	return bad;
}

int
ctl_cluster_status(const char *prog, const struct mst_client_opts *o,
    struct json *jout, int *reported, int argc, char **argv)
{
	static const struct option opts[] = {
		{ .name = "mount", .has_arg = required_argument, .val = 'm' },
		{ .name = "servers", .has_arg = required_argument,
		  .val = 's' },
		{ .name = "ceph-conf", .has_arg = required_argument,
		  .val = 'c' },
		{ 0 },
	};
	const char *mnt = NULL, *list = NULL, *conf = NULL;
	int ch, i, bad = 0, count = 0, rc;

	optind = 0;	/* glibc: start again, argv[0] is "status" */
	while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			mnt = optarg;
			break;
		case 's':
			list = optarg;
			break;
		case 'c':
			conf = optarg;
			break;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return CLI_EXIT_USAGE;
		}
	}
	if ((mnt == NULL) == (list == NULL)) {
		fprintf(stderr, "%s: cluster status: give --mount DIR or "
		    "--servers LIST (one of them)\nTry '%s --help'.\n", prog,
		    prog);
		return CLI_EXIT_USAGE;
	}
	if (mnt == NULL && optind < argc) {
		fprintf(stderr, "%s: cluster status: mailboxes need --mount "
		    "(their server is the mount's choice)\n", prog);
		return CLI_EXIT_USAGE;
	}
	js = jout;
	if (js)
		json_obj_begin(js, NULL);
	rc = show_servers(prog, mnt, list, o);
	if (rc < 0)
		return CLI_EXIT_FAIL;
	bad |= rc;
	if (mnt != NULL) {
		if (js)
			json_arr_begin(js, "mailboxes");
		else
			printf("Mailboxes (the server each maps to now):\n");
		for (i = optind; i < argc; i++) {
			bad |= show_mailbox(mnt, argv[i]);
			count++;
		}
		if (optind == argc)
			bad |= walk(mnt, "", WALK_DEPTH, &count);
		if (js)
			json_arr_end(js);
		else if (count == 0)
			printf("  (none found)\n");
	}
	if (conf != NULL)
		bad |= show_ceph(conf, o->timeout_ms);
	if (js) {
		json_bool(js, "healthy", !bad);
		json_obj_end(js);
	}
	*reported = 1;
	fflush(stdout);
	return bad ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
