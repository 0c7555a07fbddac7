/*
 * main.c - mstored's entry point. Owns the command line, the start-up
 * order (settings, log, daemon, listeners, engine, loop) and the stop
 * order (loop drained, engine closed, server freed). Every failure before
 * the loop runs is reported on the terminal, also when daemonizing: the
 * parent waits until the child says it is serving, or exits with the
 * child's status.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "engine.h"
#include "log.h"
#include "mstclient.h"
#include "server.h"

#define EXIT_OK		0
#define EXIT_FAIL	1	/* runtime failure */
#define EXIT_USAGE	2	/* bad command line or config contents */

struct args {
	const char *data;
	const char *config;
	char **listen;
	size_t nlisten;
	int foreground;
};

static const struct option long_opts[] = {
	{ .name = "data", .has_arg = required_argument, .val = 'd' },
	{ .name = "listen", .has_arg = required_argument, .val = 'l' },
	{ .name = "config", .has_arg = required_argument, .val = 'c' },
	{ .name = "foreground", .has_arg = no_argument, .val = 'f' },
	{ .name = "help", .has_arg = no_argument, .val = 'h' },
	{ .name = "version", .has_arg = no_argument, .val = 'V' },
	{ 0 },
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: mstored --data DIR [--listen ADDR:PORT]... "
	    "[--listen unix:PATH]...\n"
	    "               [--config FILE] [--foreground]\n"
	    "       mstored --help | --version\n"
	    "\n"
	    "The mstore store server: keeps the mail that mount.mstore "
	    "clients deliver.\n"
	    "\n"
	    "  -d, --data DIR        data directory (must exist)\n"
	    "  -l, --listen ADDR     listen on HOST:PORT, [V6]:PORT or "
	    "unix:PATH;\n"
	    "                        repeatable (default %s)\n"
	    "  -c, --config FILE     read settings from FILE (see "
	    "mstore.conf(5));\n"
	    "                        options given here override it\n"
	    "  -f, --foreground      do not detach; log to stderr\n"
	    "  -h, --help            show this help and exit\n"
	    "  -V, --version         show the version and exit\n"
	    "\n"
	    "Exit status: 0 ok, 1 runtime failure, 2 usage error. "
	    "See mstored(8).\n", CONF_DEFAULT_LISTEN);
}

static int
usage_error(void)
{
	fprintf(stderr, "Try 'mstored --help'.\n");
	return EXIT_USAGE;
}

static int
add_listen(struct args *a, char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char **l;
	int rc = mst_addr_parse(addr, &ss, &sl);

	if (rc < 0) {
		fprintf(stderr, "mstored: --listen %s: %s\n", addr,
		    rc == -ENAMETOOLONG ? "unix socket path too long" :
		    "expected HOST:PORT, [V6]:PORT or unix:PATH "
		    "(numeric host or localhost)");
		return -EINVAL;
	}
	l = realloc(a->listen, (a->nlisten + 1) * sizeof *l);
	if (l == NULL) {
		fprintf(stderr, "mstored: out of memory\n");
		return -ENOMEM;
	}
	a->listen = l;
	a->listen[a->nlisten++] = addr;
	return 0;
}

/* Returns -1 to go on, or the exit status. */
static int
parse_args(int argc, char **argv, struct args *a)
{
	int ch;

	while ((ch = getopt_long(argc, argv, "d:l:c:fhV", long_opts,
	    NULL)) != -1) {
		switch (ch) {
		case 'd':
			a->data = optarg;
			break;
		case 'l':
			if (add_listen(a, optarg) < 0)
				return usage_error();
			break;
		case 'c':
			a->config = optarg;
			break;
		case 'f':
			a->foreground = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("mstored (%s) %s\n", PACKAGE_NAME,
			    PACKAGE_VERSION);
			return EXIT_OK;
		default:
			return usage_error();	/* getopt said why */
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mstored: unexpected argument '%s'\n",
		    argv[optind]);
		return usage_error();
	}
	return -1;
}

/* Settings: defaults, then the file, then the command line. Returns -1
 * to go on, or the exit status. */
static int
load_conf(struct conf *c, const struct args *a)
{
	const char *why;
	int rc;

	if (a->config != NULL) {
		rc = conf_load(c, a->config);
		if (rc < 0)
			return rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
	}
	if (a->data != NULL && conf_set(c, "data", a->data, &why) < 0) {
		fprintf(stderr, "mstored: --data: %s\n", why);
		return usage_error();
	}
	if (a->nlisten > 0 && conf_set_listen(c, a->listen, a->nlisten) < 0) {
		log_err("out of memory");
		return EXIT_FAIL;
	}
	rc = conf_finish(c);
	if (rc == -EDESTADDRREQ) {
		fprintf(stderr, "mstored: no data directory: give --data DIR "
		    "or set 'data' in the config file\n");
		return usage_error();
	}
	if (rc < 0) {
		log_err("settings: %s", strerror(-rc));
		return EXIT_FAIL;
	}
	return -1;
}

static int
check_data_dir(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		log_err("data directory %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("data directory %s: not a directory", path);
		return -ENOTDIR;
	}
	if (access(path, R_OK | W_OK | X_OK) < 0) {
		log_err("data directory %s: not usable: %s", path,
		    strerror(errno));
		return -errno;
	}
	return 0;
}

/* Every connection is a descriptor: make room for max_connections plus
 * the engine's files, or say why connections will be refused early. */
static void
raise_nofile(int max_connections)
{
	rlim_t need = (rlim_t)max_connections + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < need)
		log_warn("open files limit %llu is below max_connections + 64 "
		    "(%llu): raise it (ulimit -n) or lower max_connections",
		    (unsigned long long)rl.rlim_cur,
		    (unsigned long long)need);
}

/*
 * Detach. The parent stays until the child writes one byte to the pipe
 * (serving) or exits (failed), and exits accordingly. Returns the
 * child's end of the pipe, or -1 on failure (logged).
 */
static int
daemon_start(void)
{
	int p[2], st;
	pid_t pid;
	ssize_t r;
	char ok;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_err("pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		do
			r = read(p[0], &ok, 1);
		while (r < 0 && errno == EINTR);
		if (r == 1)
			_exit(EXIT_OK);
		if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
		    WEXITSTATUS(st) != EXIT_OK)
			_exit(WEXITSTATUS(st));
		_exit(EXIT_FAIL);
	}
	close(p[0]);
	if (setsid() < 0)
		log_warn("setsid: %s", strerror(errno));
	return p[1];
}

/* The child serves: leave the operator's directory and terminal. */
static void
daemon_ready(int fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	ssize_t w;

	if (chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
	log_echo_stderr(0);
	if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
	    dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
		log_warn("detaching from the terminal: %s", strerror(errno));
	if (null > STDERR_FILENO)
		close(null);
	do
		w = write(fd, "1", 1);
	while (w < 0 && errno == EINTR);
	close(fd);
}

static int
load_key(const struct conf *c, uint8_t *key)
{
	int n;

	if (c->key_file == NULL)
		return 0;
	n = mst_key_load(c->key_file, key, MST_KEY_MAX);
	if (n < 0)
		log_err("key_file %s: %s", c->key_file, n == -EINVAL ?
		    "empty key" : n == -EFBIG ? "longer than 1024 bytes" :
		    strerror(-n));
	return n;
}

static const char *
log_target(const struct conf *c, int foreground)
{
	if (c->log == NULL)
		return foreground ? "stderr" : "syslog";
	/* A daemon has no stderr. */
	if (!foreground && strcmp(c->log, "stderr") == 0)
		return "syslog";
	return c->log;
}

/* Engine threads inherit a mask that keeps these signals for the loop. */
static int
engine_open(struct server *srv, const struct conf *c,
    struct engine **out)
{
	struct engine_conf ec;
	sigset_t stop, old;
	int rc;

	conf_engine(c, &ec);
	ec.done = server_job_done;
	ec.done_arg = srv;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	rc = pthread_sigmask(SIG_BLOCK, &stop, &old);
	if (rc != 0) {
		log_err("pthread_sigmask: %s", strerror(rc));
		return -rc;
	}
	rc = engine_local.open(&ec, out);
	/* Restoring a mask we just read cannot fail. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		log_err("engine %s: opening %s: %s", engine_local.name,
		    c->data, strerror(-rc));
	return rc;
}

static int
serve(const struct conf *c, int foreground)
{
	uint8_t key[MST_KEY_MAX];
	struct server *srv = NULL;
	struct engine *eng = NULL;
	int keylen, notify = -1, rc;

	if (check_data_dir(c->data) < 0)
		return EXIT_FAIL;
	keylen = load_key(c, key);
	if (keylen < 0)
		return EXIT_FAIL;
	if (!foreground) {
		notify = daemon_start();
		if (notify < 0)
			return EXIT_FAIL;
	}
	rc = log_open(log_target(c, foreground), c->log_level);
	if (rc < 0) {
		log_err("log %s: %s", log_target(c, foreground),
		    strerror(-rc));
		return EXIT_FAIL;
	}
	log_echo_stderr(!foreground);
	raise_nofile(c->max_connections);
	rc = server_new(c, keylen ? key : NULL, (size_t)keylen, &srv);
	explicit_bzero(key, sizeof key);	/* the server has its copy */
	if (rc < 0)
		return EXIT_FAIL;
	if (engine_open(srv, c, &eng) < 0) {
		server_free(srv);
		return EXIT_FAIL;
	}
	server_set_engine(srv, &engine_local, eng);
	log_info("mstored %s started: data %s, listening on %s, engine %s, "
	    "auth %s", PACKAGE_VERSION, c->data, server_addresses(srv),
	    engine_local.name, keylen ? "required" : "off");
	if (!foreground)
		daemon_ready(notify);
	rc = server_run(srv);
	engine_local.close(eng);
	server_free(srv);
	log_info("mstored stopped%s", rc < 0 ? " after a loop failure" : "");
	return rc < 0 ? EXIT_FAIL : EXIT_OK;
}

int
main(int argc, char **argv)
{
	struct args a = { 0 };
	struct conf c;
	int rc;

	/* Peers that vanish mid-write must give EPIPE, not kill us. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		perror("mstored: ignoring SIGPIPE");
		return EXIT_FAIL;
	}
	rc = parse_args(argc, argv, &a);
	if (rc < 0) {
		conf_init(&c);
		rc = load_conf(&c, &a);
		free(a.listen);		/* copied into |c| */
		a.listen = NULL;
		if (rc < 0)
			rc = serve(&c, a.foreground);
		conf_free(&c);
	}
	free(a.listen);
	log_close();
	return rc;
}
