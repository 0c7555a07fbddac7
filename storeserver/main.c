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
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
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
#include "metrics.h"
#include "mstclient.h"
#include "server.h"

#ifdef HAVE_RADOS
#define RADOS_STATE	"built in"
#define RADOS_BUILT	1
#define RADOS_OPS	(&engine_rados)
#else
#define RADOS_STATE	"not built in: configure --with-rados"
#define RADOS_BUILT	0
#define RADOS_OPS	NULL
#endif

#define EXIT_OK		0
#define EXIT_FAIL	1	/* runtime failure */
#define EXIT_USAGE	2	/* bad command line or config contents */

struct args {
	const char *data;
	const char *backend;
	const char *ceph_conf;
	const char *pool;
	const char *ceph_id;
	const char *ns;
	const char *lock_lease;
	const char *config;
	char **listen;
	size_t nlisten;
	const char *user;
	const char *tls_cert;
	const char *tls_key;
	const char *metrics;
	int foreground;
	int insecure;
};

static const struct option long_opts[] = {
	{ .name = "data", .has_arg = required_argument, .val = 'd' },
	{ .name = "listen", .has_arg = required_argument, .val = 'l' },
	{ .name = "config", .has_arg = required_argument, .val = 'c' },
	{ .name = "foreground", .has_arg = no_argument, .val = 'f' },
	{ .name = "user", .has_arg = required_argument, .val = 'u' },
	{ .name = "insecure", .has_arg = no_argument, .val = 'I' },
	{ .name = "tls-cert", .has_arg = required_argument, .val = 'C' },
	{ .name = "tls-key", .has_arg = required_argument, .val = 'K' },
	{ .name = "backend", .has_arg = required_argument, .val = 'B' },
	{ .name = "ceph-conf", .has_arg = required_argument, .val = 'P' },
	{ .name = "pool", .has_arg = required_argument, .val = 'O' },
	{ .name = "ceph-id", .has_arg = required_argument, .val = 'U' },
	{ .name = "namespace", .has_arg = required_argument, .val = 'N' },
	{ .name = "lock-lease", .has_arg = required_argument, .val = 'L' },
	{ .name = "metrics", .has_arg = required_argument, .val = 'M' },
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
	    "               [--config FILE] [--foreground] [--user NAME] "
	    "[--insecure]\n"
	    "               [--tls-cert FILE --tls-key FILE]\n"
	    "               [--backend local|memory|rados]\n"
	    "               [--ceph-conf FILE --pool NAME [--ceph-id NAME] "
	    "[--namespace NAME]\n"
	    "               [--lock-lease SECONDS]]\n"
	    "               [--metrics [HOST:]PORT]\n"
	    "       mstored --help | --version\n"
	    "\n"
	    "The mstore store server: keeps the mail that mount.mstore "
	    "clients deliver.\n"
	    "\n"
	    "  -d, --data DIR        data directory (must exist): the store "
	    "with the\n"
	    "                        local back-end; local state (logs, keys) "
	    "always\n"
	    "      --backend NAME    storage back-end: local (default, in "
	    "--data),\n"
	    "                        memory (in RAM, lost at exit: for "
	    "tests) or\n"
	    "                        rados (a Ceph pool, shared by several "
	    "mstored;\n"
	    "                        %s)\n"
	    "      --ceph-conf FILE  rados: the cluster's ceph.conf\n"
	    "      --pool NAME       rados: the (replicated) pool holding the "
	    "store\n"
	    "      --ceph-id NAME    rados: Ceph client name (default admin, "
	    "i.e.\n"
	    "                        client.admin)\n"
	    "      --namespace NAME  rados: keep the store in this namespace "
	    "of the\n"
	    "                        pool, apart from other stores in it\n"
	    "      --lock-lease S    rados: the lease (seconds, default 10, "
	    "at least\n"
	    "                        5) that keeps this server's locks; not "
	    "renewed\n"
	    "                        for S - 3 s, its lock-holding "
	    "connections close\n"
	    "  -l, --listen ADDR     listen on HOST:PORT, [V6]:PORT or "
	    "unix:PATH;\n"
	    "                        repeatable (default %s)\n"
	    "  -c, --config FILE     read settings from FILE (see "
	    "mstore.conf(5));\n"
	    "                        options given here override it\n"
	    "  -f, --foreground      do not detach; log to stderr\n"
	    "  -u, --user NAME       after binding, run as user NAME (needs "
	    "root);\n"
	    "                        the data directory must be writable by "
	    "NAME\n"
	    "      --insecure        allow a non-loopback listen address "
	    "without a\n"
	    "                        key_file: anyone who reaches it may read "
	    "and\n"
	    "                        change all mail\n"
	    "      --tls-cert FILE   TCP listeners speak only TLS with this "
	    "PEM\n"
	    "                        certificate chain (Unix sockets stay "
	    "plain)\n"
	    "      --tls-key FILE    the PEM private key of --tls-cert\n"
	    "      --metrics ADDR    serve Prometheus metrics at "
	    "http://ADDR/metrics;\n"
	    "                        ADDR is HOST:PORT, [V6]:PORT or a "
	    "PORT alone\n"
	    "                        (then on 127.0.0.1); off by default\n"
	    "  -h, --help            show this help and exit\n"
	    "  -V, --version         show the version and exit\n"
	    "\n"
	    "Exit status: 0 ok, 1 runtime failure, 2 usage error. "
	    "See mstored(8).\n", RADOS_STATE, CONF_DEFAULT_LISTEN);
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

	while ((ch = getopt_long(argc, argv, "d:l:c:fu:hV", long_opts,
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
		case 'u':
			a->user = optarg;
			break;
		case 'I':
			a->insecure = 1;
			break;
		case 'C':
			a->tls_cert = optarg;
			break;
		case 'K':
			a->tls_key = optarg;
			break;
		case 'B':
			a->backend = optarg;
			break;
		case 'P':
			a->ceph_conf = optarg;
			break;
		case 'O':
			a->pool = optarg;
			break;
		case 'U':
			a->ceph_id = optarg;
			break;
		case 'N':
			a->ns = optarg;
			break;
		case 'L':
			a->lock_lease = optarg;
			break;
		case 'M':
			a->metrics = optarg;
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
	if (a->backend != NULL &&
	    conf_set(c, "backend", a->backend, &why) < 0) {
		fprintf(stderr, "mstored: --backend: %s\n", why);
		return usage_error();
	}
	if (a->ceph_conf != NULL &&
	    conf_set(c, "ceph_conf", a->ceph_conf, &why) < 0) {
		fprintf(stderr, "mstored: --ceph-conf: %s\n", why);
		return usage_error();
	}
	if (a->pool != NULL && conf_set(c, "pool", a->pool, &why) < 0) {
		fprintf(stderr, "mstored: --pool: %s\n", why);
		return usage_error();
	}
	if (a->ceph_id != NULL &&
	    conf_set(c, "ceph_id", a->ceph_id, &why) < 0) {
		fprintf(stderr, "mstored: --ceph-id: %s\n", why);
		return usage_error();
	}
	if (a->ns != NULL && conf_set(c, "namespace", a->ns, &why) < 0) {
		fprintf(stderr, "mstored: --namespace: %s\n", why);
		return usage_error();
	}
	if (a->lock_lease != NULL &&
	    conf_set(c, "lock_lease", a->lock_lease, &why) < 0) {
		fprintf(stderr, "mstored: --lock-lease: %s\n", why);
		return usage_error();
	}
	if (a->metrics != NULL &&
	    conf_set(c, "metrics", a->metrics, &why) < 0) {
		fprintf(stderr, "mstored: --metrics %s: %s\n", a->metrics, why);
		return usage_error();
	}
	if (a->user != NULL && conf_set(c, "user", a->user, &why) < 0) {
		fprintf(stderr, "mstored: --user: %s\n", why);
		return usage_error();
	}
	if (a->tls_cert != NULL &&
	    conf_set(c, "tls_cert", a->tls_cert, &why) < 0) {
		fprintf(stderr, "mstored: --tls-cert: %s\n", why);
		return usage_error();
	}
	if (a->tls_key != NULL &&
	    conf_set(c, "tls_key", a->tls_key, &why) < 0) {
		fprintf(stderr, "mstored: --tls-key: %s\n", why);
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
	if (rc == -EPROTONOSUPPORT) {
		fprintf(stderr, "mstored: backend '%s': expected local, memory "
		    "or rados\n", c->backend);
		return usage_error();
	}
	if (rc == -ENOPROTOOPT) {
		fprintf(stderr, "mstored: backend rados needs --ceph-conf FILE "
		    "and --pool NAME (or ceph_conf and pool in the config "
		    "file)\n");
		return usage_error();
	}
	if (rc < 0) {
		log_err("settings: %s", strerror(-rc));
		return EXIT_FAIL;
	}
	if (c->backend != NULL && strcmp(c->backend, "rados") == 0 &&
	    !RADOS_BUILT) {
		fprintf(stderr, "mstored: backend rados: this mstored was "
		    "built without rados support; rebuild with configure "
		    "--with-rados (needs librados-dev)\n");
		return EXIT_USAGE;
	}
	return -1;
}

/* The back-end the settings name (load_conf checked that it is built). */
static const struct engine_ops *
backend_ops(const struct conf *c)
{
	if (c->backend != NULL && strcmp(c->backend, "rados") == 0)
		return RADOS_OPS;
	if (c->backend != NULL && strcmp(c->backend, "memory") == 0)
		return &engine_memory;
	return &engine_local;
}

static int
check_data_dir(const char *path, const char *user)
{
	struct stat st;
	int err;

	if (stat(path, &st) < 0) {
		err = errno;
		log_err("data directory %s: %s%s%s", path, strerror(err),
		    user ? " for user " : "", user ? user : "");
		return -err;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("data directory %s: not a directory", path);
		return -ENOTDIR;
	}
	if (access(path, R_OK | W_OK | X_OK) < 0) {
		err = errno;
		if (user != NULL)
			log_err("data directory %s: not usable by user %s "
			    "(uid %u): %s; give that user the directory "
			    "(chown -R)", path, user, (unsigned)getuid(),
			    strerror(err));
		else
			log_err("data directory %s: not usable: %s", path,
			    strerror(err));
		return -err;
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
load_one_key(const char *setting, const char *path, struct server_key *k)
{
	int n = mst_key_load(path, k->key, sizeof k->key);

	if (n < 0) {
		log_err("%s %s: %s", setting, path, mst_key_strerror(n));
		return n;
	}
	k->len = (size_t)n;
	return 0;
}

/* key_file, and key_file_next during a rotation. Returns the number of
 * keys (0: no AUTH) or a negative errno (logged). */
static int
load_keys(const struct conf *c, struct server_key keys[SERVER_KEYS_MAX])
{
	int n = 0;

	if (c->key_file_next != NULL && c->key_file == NULL) {
		log_err("key_file_next is set without key_file: set key_file "
		    "to the key in use, key_file_next to the one coming");
		return -EINVAL;
	}
	if (c->key_file != NULL && load_one_key("key_file", c->key_file,
	    &keys[n++]) < 0)
		return -EINVAL;
	if (c->key_file_next != NULL && load_one_key("key_file_next",
	    c->key_file_next, &keys[n++]) < 0)
		return -EINVAL;
	return n;
}

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104; Unix sockets count too. */
static int
is_local_address(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

	if (mst_addr_parse(addr, &ss, &sl) < 0)
		return 0;
	switch (ss.ss_family) {
	case AF_UNIX:
		return 1;
	case AF_INET:
		return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	case AF_INET6:
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		    in6->sin6_addr.s6_addr[12] == 127);
	default:
		return 0;
	}
}

/*
 * Without a key, anyone who reaches a listener may read and change all
 * mail. Loopback and Unix sockets reach only this host; anything else
 * needs a key or an explicit --insecure. Returns -1 to go on, or the
 * exit status.
 */
static int
check_exposure(const struct conf *c, int nkeys, int insecure)
{
	size_t i;

	for (i = 0; i < c->nlisten; i++) {
		if (nkeys > 0 || is_local_address(c->listen[i]))
			continue;
		if (insecure) {
			log_warn("listening on %s without a key (--insecure): "
			    "anyone who can reach it may read and change all "
			    "mail", c->listen[i]);
			continue;
		}
		log_err("refusing to listen on %s without a key: anyone who "
		    "can reach it could read and change all mail. Set key_file "
		    "(mstore.conf(5)), listen on a loopback address or a Unix "
		    "socket, or pass --insecure if the network is trusted",
		    c->listen[i]);
		return EXIT_USAGE;
	}
	return -1;
}

/*
 * --user: resolved before anything starts, so that a bad name or a
 * non-root caller is reported at once. Returns -1 to go on, or the exit
 * status.
 */
static int
user_lookup(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(name);
	if (pw == NULL) {
		/* getpwnam(3): "not found" may come with any of these. */
		log_err("user %s: %s", name, errno == 0 || errno == ENOENT ||
		    errno == ESRCH || errno == EBADF || errno == EPERM ?
		    "no such user" : strerror(errno));
		return EXIT_USAGE;
	}
	if (geteuid() != 0) {
		log_err("user %s: only root can change to another user "
		    "(mstored runs as uid %u); leave out --user and 'user ='",
		    name, (unsigned)geteuid());
		return EXIT_USAGE;
	}
	if (pw->pw_uid == 0) {
		log_err("user %s: is root; name an unprivileged user", name);
		return EXIT_USAGE;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return -1;
}

/*
 * Drop root for good, in the only safe order: supplementary groups,
 * group, user (after setuid there is no right left to change groups).
 * Then make sure root cannot be regained. Any failure is fatal: running
 * on as root when the operator asked otherwise is not an option.
 */
static int
drop_root(const char *name, uid_t uid, gid_t gid)
{
	if (setgroups(1, &gid) < 0) {
		log_err("user %s: setgroups: %s", name, strerror(errno));
		return -1;
	}
	if (setgid(gid) < 0) {
		log_err("user %s: setgid(%u): %s", name, (unsigned)gid,
		    strerror(errno));
		return -1;
	}
	if (setuid(uid) < 0) {
		log_err("user %s: setuid(%u): %s", name, (unsigned)uid,
		    strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || getuid() != uid || geteuid() != uid ||
	    getgid() != gid || getegid() != gid) {
		log_err("user %s: root privileges could be regained", name);
		return -1;
	}
	return 0;
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
    const struct engine_ops *ops, struct engine **out)
{
	struct engine_conf ec;
	sigset_t stop, old;
	int rc;

	conf_engine(c, &ec);
	ec.done = server_job_done;
	ec.done_arg = srv;
	ec.notice = server_engine_notice;
	ec.notice_arg = srv;
	ec.fence = server_engine_fence;
	ec.fence_arg = srv;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	rc = pthread_sigmask(SIG_BLOCK, &stop, &old);
	if (rc != 0) {
		log_err("pthread_sigmask: %s", strerror(rc));
		return -rc;
	}
	rc = ops->open(&ec, out);
	/* Restoring a mask we just read cannot fail. */
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		log_err("engine %s: opening %s: %s", ops->name,
		    ops == &engine_local ? c->data : ops == &engine_memory ?
		    "the store" : c->pool, strerror(-rc));
	return rc;
}

static int
serve(const struct conf *c, int foreground, int insecure)
{
	struct server_key keys[SERVER_KEYS_MAX];
	const struct engine_ops *ops = backend_ops(c);
	struct server *srv = NULL;
	struct metrics_http *mh = NULL;
	struct engine *eng = NULL;
	const char *maddr;
	int nkeys, notify = -1, rc;
	uid_t uid = 0;
	gid_t gid = 0;

	if (c->user != NULL) {
		rc = user_lookup(c->user, &uid, &gid);
		if (rc >= 0)
			return rc;
	} else if (check_data_dir(c->data, NULL) < 0) {
		return EXIT_FAIL;
	}
	nkeys = load_keys(c, keys);
	if (nkeys < 0)
		return EXIT_FAIL;
	rc = check_exposure(c, nkeys, insecure);
	if (rc >= 0)
		return rc;
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
	rc = server_new(c, keys, (size_t)nkeys, &srv);
	explicit_bzero(keys, sizeof keys);	/* the server has its copy */
	if (rc < 0)
		return EXIT_FAIL;
	/* Bound like the listeners, before root is dropped; it serves
	 * from the loop. */
	if (c->metrics != NULL && metrics_http_open(server_base(srv),
	    c->metrics, server_metrics_live, srv, &mh) < 0) {
		server_free(srv);
		return EXIT_FAIL;
	}
	/* Listeners are bound: root is needed no more. The engine opens the
	 * data directory as the user, so every file it makes is the user's
	 * and no thread exists yet that could miss the change. */
	if (c->user != NULL && (drop_root(c->user, uid, gid) < 0 ||
	    check_data_dir(c->data, c->user) < 0)) {
		metrics_http_free(mh);
		server_free(srv);
		return EXIT_FAIL;
	}
	if (engine_open(srv, c, ops, &eng) < 0) {
		metrics_http_free(mh);
		server_free(srv);
		return EXIT_FAIL;
	}
	server_set_engine(srv, ops, eng);
	maddr = mh ? metrics_http_address(mh) : NULL;
	log_info("mstored %s started: data %s, listening on %s, engine %s, "
	    "auth %s%s%s%s%s%s%s", PACKAGE_VERSION, c->data,
	    server_addresses(srv), ops->name,
	    nkeys == 2 ? "required (two keys)" : nkeys ? "required" : "off",
	    server_tls(srv) ? ", TLS on TCP" : "", c->user ? ", user " : "",
	    c->user ? c->user : "", maddr ? ", metrics at http://" : "",
	    maddr ? maddr : "", maddr ? "/metrics" : "");
	if (!foreground)
		daemon_ready(notify);
	rc = server_run(srv);
	ops->close(eng);
	metrics_http_free(mh);
	server_free(srv);
	log_info("mstored stopped%s", rc < 0 ? " after a loop failure" : "");
	return rc < 0 ? EXIT_FAIL : EXIT_OK;
}

/*
 * The local engine's index lives in malloc's heap, and every checkpoint
 * forks (engine_local.c). fork copies the page tables, which stalls
 * every commit: about 20 ms per GiB of heap in 4 KiB pages, well under
 * 1 ms per GiB in 2 MiB ones. glibc puts its heap in transparent huge
 * pages only when told so as it starts (GLIBC_TUNABLES), and the usual
 * kernel setting ("madvise") gives them only to memory that asks. So
 * mstored starts itself again, once, with glibc.malloc.hugetlb=1 added,
 * unless the kernel gives huge pages always or never, the variable
 * names hugetlb already (the operator's choice wins), or
 * MSTORED_HUGE_PAGES=0. A failed exec changes nothing: mstored goes on
 * in small pages.
 */
static void
heap_in_huge_pages(char **argv)
{
	char mode[64] = "", tun[1024];
	const char *old = getenv("GLIBC_TUNABLES");
	const char *opt = getenv("MSTORED_HUGE_PAGES");
	FILE *f;

	if ((opt && strcmp(opt, "0") == 0) ||
	    (old && strstr(old, "glibc.malloc.hugetlb")))
		return;
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f == NULL)
		return;
	if (fgets(mode, sizeof mode, f) == NULL)
		mode[0] = '\0';
	fclose(f);
	if (strstr(mode, "[madvise]") == NULL)
		return;
	if (snprintf(tun, sizeof tun, "%s%sglibc.malloc.hugetlb=1",
	    old ? old : "", old && *old ? ":" : "") >= (int)sizeof tun ||
	    setenv("GLIBC_TUNABLES", tun, 1) < 0)
		return;
	execv("/proc/self/exe", argv);
	/* Still here: put the variable back as it was. Both calls can only
	 * fail for lack of memory, and then the child processes mstored
	 * runs see the extra setting, which is harmless. */
	if (old)
		(void)setenv("GLIBC_TUNABLES", old, 1);
	else
		(void)unsetenv("GLIBC_TUNABLES");
}

int
main(int argc, char **argv)
{
	struct args a = { 0 };
	struct conf c;
	int rc;

	heap_in_huge_pages(argv);
	/* Peers that vanish mid-write must give EPIPE, not kill us. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		perror("mstored: ignoring SIGPIPE");
		return EXIT_FAIL;
	}
	/* Checkpoints are written by a child that the engine waits for: a
	 * SIGCHLD ignored by whoever started us (it survives exec) would
	 * make the kernel reap it first and every checkpoint fail. */
	if (signal(SIGCHLD, SIG_DFL) == SIG_ERR) {
		perror("mstored: restoring SIGCHLD");
		return EXIT_FAIL;
	}
	rc = parse_args(argc, argv, &a);
	if (rc < 0) {
		conf_init(&c);
		rc = load_conf(&c, &a);
		free(a.listen);		/* copied into |c| */
		a.listen = NULL;
		if (rc < 0)
			rc = serve(&c, a.foreground, a.insecure);
		conf_free(&c);
	}
	free(a.listen);
	log_close();
	return rc;
}
