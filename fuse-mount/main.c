/*
 * main.c - mount.mstore: command line, mount options, the FUSE session,
 * and the ops table (the top layer, see mount.h: it starts the notifier
 * and wake threads and hands the kernel's requests to the ops_*.c
 * files).
 *
 *   mount.mstore SERVER[,SERVER...] MOUNTPOINT [-f] [-o OPTIONS]
 *
 * Also the mount(8) helper for file-system type "mstore" (fstab:
 * "127.0.0.1:4870 /var/mail/vhosts mstore _netdev,allow_other 0 0").
 * Options of our own are taken out; mount(8)'s bookkeeping options are
 * dropped; the rest go to FUSE.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "mstclient.h"
#include "locktab.h"
#include "mount.h"

#define MAX_SERVERS ROUTE_MAX

struct opts {
	char *servers;
	char *mountpoint;
	int foreground;
	int debug;
	char *depth;		/* mailbox_depth=, accepted and ignored */
	int timeout_s;
	int health_ms;		/* health_interval= */
	int failover_ms;	/* failover_timeout= */
	char *servers_file;	/* servers_file= */
	char *spool;
	char *keyfile;
	int tls;		/* tls: TLS to every server */
	int nospool;		/* nospool: large bodies travel at link */
	int passthrough;	/* passthrough: tmp/ writes by the kernel */
	char *cafile;		/* cafile=: the CA that verifies them */
	double attr_timeout;
	unsigned max_threads;
	long cache_mb;
	char fuse_opts[2048];
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mount.mstore SERVER[,SERVER...] MOUNTPOINT [-f] [-o OPTIONS]\n"
	    "\n"
	    "Mount an mstore mail store where an MTA writes Maildirs.\n"
	    "SERVER is HOST:PORT or unix:PATH.\n"
	    "\n"
	    "  -f                 stay in the foreground\n"
	    "  -d                 foreground with FUSE debugging\n"
	    "  -o OPTIONS         comma-separated options:\n"
	    "     spool=DIR         where large tmp/ files go (/var/tmp)\n"
	    "     timeout=SECONDS   fail calls with EIO after this (10)\n"
	    "     keyfile=PATH      shared key for the store's AUTH\n"
	    "     tls               TLS to the servers (HOST:PORT only)\n"
	    "     cafile=PATH       CA certificate(s) that verify them\n"
	    "     attr_timeout=SECS kernel attribute/entry cache (1.0)\n"
	    "     max_threads=N     FUSE worker threads (4)\n"
	    "     cache_mb=N        memory for cached inodes and listings (64)\n"
	    "     nospool           send large bodies at link, not as written\n"
	    "     passthrough       kernel passthrough for tmp/ files (off)\n"
	    "     nopassthrough     no kernel passthrough (the default)\n"
	    "     health_interval=MS  PING each server this often (1000)\n"
	    "     failover_timeout=MS a server silent this long is down (2000)\n"
	    "     servers_file=PATH the server list, read again when it changes\n"
	    "     and FUSE options: allow_other, ... (default_permissions\n"
	    "     is always on: the kernel checks owner and mode)\n"
	    "  -h, --help         this text\n"
	    "  -V, --version      version\n"
	    "\nSee mount.mstore(8).\n");
}

static int
add_fuse_opt(struct opts *o, const char *opt)
{
	size_t used = strlen(o->fuse_opts), n = strlen(opt);

	if (used + n + 2 > sizeof o->fuse_opts)
		return -E2BIG;
	if (used)
		o->fuse_opts[used++] = ',';
	memcpy(o->fuse_opts + used, opt, n + 1);
	return 0;
}

static int
num_opt(const char *val, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(val, &end, 10);
	if (errno || *val == '\0' || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* One -o word: ours, mount(8)'s (dropped), or FUSE's. */
static int
parse_opt(struct opts *o, char *w)
{
	static const char *const dropped[] = { "_netdev", "defaults", "auto",
		"noauto", "nofail", "user", "users", "nouser", "owner",
		"group", "comment", "x-systemd", NULL };
	char *eq = strchr(w, '=');
	const char *val = eq ? eq + 1 : "";
	size_t i, klen = eq ? (size_t)(eq - w) : strlen(w);
	long v;

	for (i = 0; dropped[i]; i++)
		if (strncmp(w, dropped[i], strlen(dropped[i])) == 0)
			return 0;
#define KEY(k) (klen == sizeof(k) - 1 && strncmp(w, k, klen) == 0)
	if (KEY("mailbox_depth")) {
		o->depth = w;	/* old fstab lines must still mount */
	} else if (KEY("timeout")) {
		if (num_opt(val, 1, 3600, &v) < 0)
			return -EINVAL;
		o->timeout_s = (int)v;
	} else if (KEY("health_interval")) {
		if (num_opt(val, 10, 600000, &v) < 0)
			return -EINVAL;
		o->health_ms = (int)v;
	} else if (KEY("failover_timeout")) {
		if (num_opt(val, 10, 600000, &v) < 0)
			return -EINVAL;
		o->failover_ms = (int)v;
	} else if (KEY("servers_file")) {
		o->servers_file = (char *)val;
	} else if (KEY("max_threads")) {
		if (num_opt(val, 2, 1024, &v) < 0)
			return -EINVAL;
		o->max_threads = (unsigned)v;
	} else if (KEY("cache_mb")) {
		if (num_opt(val, 1, 1L << 20, &v) < 0)
			return -EINVAL;
		o->cache_mb = v;
	} else if (KEY("attr_timeout")) {
		char *end;

		o->attr_timeout = strtod(val, &end);
		if (*val == '\0' || *end || o->attr_timeout < 0)
			return -EINVAL;
	} else if (KEY("spool")) {
		o->spool = (char *)val;
	} else if (KEY("keyfile")) {
		o->keyfile = (char *)val;
	} else if (KEY("tls")) {
		if (eq != NULL)
			return -EINVAL;
		o->tls = 1;
	} else if (KEY("nospool")) {
		if (eq != NULL)
			return -EINVAL;
		o->nospool = 1;
	} else if (KEY("passthrough") || KEY("nopassthrough")) {
		if (eq != NULL)
			return -EINVAL;
		o->passthrough = KEY("passthrough");
	} else if (KEY("cafile")) {
		o->cafile = (char *)val;
	} else {
		return add_fuse_opt(o, w);
	}
#undef KEY
	return 0;
}

/* tls needs cafile= and TCP servers (Unix sockets are plaintext). */
static int
tls_check(const struct opts *o, const char **servers, int n)
{
	int i;

	if (o->tls && o->cafile == NULL) {
		fprintf(stderr, "mount.mstore: tls needs cafile=FILE\n");
		return -EINVAL;
	}
	if (!o->tls && o->cafile != NULL) {
		fprintf(stderr, "mount.mstore: cafile= goes with tls\n");
		return -EINVAL;
	}
	for (i = 0; o->tls && i < n; i++)
		if (strncmp(servers[i], "unix:", 5) == 0) {
			fprintf(stderr, "mount.mstore: %s: tls is for "
			    "HOST:PORT servers (Unix sockets are plaintext)\n",
			    servers[i]);
			return -EINVAL;
		}
	return 0;
}

static int
parse_opts(struct opts *o, char *list)
{
	char *w, *save = NULL;
	int rc;

	for (w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		rc = parse_opt(o, w);
		if (rc < 0) {
			fprintf(stderr, "mount.mstore: bad option '%s'\n", w);
			return rc;
		}
	}
	return 0;
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, npos = 0;

	/* mount(8) passes SPEC DIR first and options after them. */
	while (optind < argc) {
		c = getopt_long(argc, argv, "+fdho:snvV", lo, NULL);
		if (c == -1) {
			if (npos == 0)
				o->servers = argv[optind];
			else if (npos == 1)
				o->mountpoint = argv[optind];
			else
				return -EINVAL;
			npos++;
			optind++;
			continue;
		}
		switch (c) {
		case 'f':
			o->foreground = 1;
			break;
		case 'd':
			o->foreground = o->debug = 1;
			break;
		case 'o':
			if (parse_opts(o, optarg) < 0)
				return -EINVAL;
			break;
		case 's':
		case 'n':
		case 'v':
			break;		/* mount(8): sloppy, no mtab, verbose */
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("mount.mstore %s\n", PACKAGE_VERSION);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	return npos == 2 ? 0 : -EINVAL;
}

static int
split_servers(char *s, const char **v)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char *w, *save = NULL;
	int n = 0;

	for (w = strtok_r(s, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (n == MAX_SERVERS || mst_addr_parse(w, &ss, &sl) < 0) {
			fprintf(stderr, "mount.mstore: bad server '%s' (want "
			    "HOST:PORT or unix:PATH)\n", w);
			return -EINVAL;
		}
		v[n++] = w;
	}
	return n ? n : -EINVAL;
}

/* The ops table: every op_* is exported by its ops_*.c file. wake.c's
 * ops are put in front of these in run(). */
static const struct fuse_lowlevel_ops mount_ops = {
	.init = op_init,
	.mknod = op_mknod,
	.symlink = op_symlink,
	.getlk = op_getlk,
	.setlk = op_setlk,
	.flock = op_flock,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.statfs = op_statfs,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.create = op_create,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.link = op_link,
	.rename = op_rename,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
};

/* The requests this mount served, one log line: what a workload cost. */
static void
log_counts(const struct opts *o)
{
	char buf[2048], *p;
	size_t len = opcount_format(buf, sizeof buf);

	if (len >= sizeof buf)
		len = sizeof buf - 1;
	buf[len] = '\0';
	for (p = buf; (p = strchr(p, '\n')) != NULL; )
		*p = p[1] ? ',' : '\0';
	syslog(LOG_INFO, "mount.mstore: %s requests: %s", o->mountpoint, buf);
}

static int
run(struct mount *m, struct opts *o, const char **servers, int nservers,
    const uint8_t *key, int keylen)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct mconn_opts co = { .servers = servers,
		.nservers = (size_t)nservers, .key = keylen > 0 ? key : NULL,
		.keylen = keylen > 0 ? (size_t)keylen : 0,
		.timeout_ms = m->timeout_ms, .name = "mount.mstore " VERSION,
		.tls = o->tls, .cafile = o->cafile,
		.notice = on_notice, .up = on_up, .arg = m };
	struct route_opts ro = { .health_ms = o->health_ms,
		.failover_ms = o->failover_ms, .moved = on_moved,
		.servers_file = o->servers_file };
	struct fuse_lowlevel_ops ops = mount_ops;
	struct fuse_loop_config *lc = NULL;
	char fsname[1024], *root = NULL;
	int rc = 1;

	snprintf(fsname, sizeof fsname, "fsname=%s,subtype=mstore", o->servers);
	if (fuse_opt_add_arg(&args, "mount.mstore") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, fsname) < 0 ||
	    /* Always: the kernel checks every caller against the stored
	     * owner and mode, as on a local disk. MTAs need allow_other,
	     * and without the checks any local user could read, change or
	     * remove anyone's mail. No option turns it off. */
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, "default_permissions") < 0 ||
	    (o->fuse_opts[0] && (fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, o->fuse_opts) < 0)) ||
	    (o->debug && fuse_opt_add_arg(&args, "-d") < 0))
		goto out;
	wake_ops(&ops);
	opcount_wrap(&ops);	/* outermost: every request is counted */
	m->se = fuse_session_new(&args, &ops, sizeof ops, m);
	if (m->se == NULL)
		goto out;
	if (fuse_set_signal_handlers(m->se) < 0)
		goto out_session;
	/* The wake thread reaches the mount by this path: absolute, since
	 * fuse_daemonize moves to "/". */
	root = realpath(o->mountpoint, NULL);
	if (root == NULL) {
		fprintf(stderr, "mount.mstore: %s: %s\n", o->mountpoint,
		    strerror(errno));
		goto out_signals;
	}
	if (fuse_session_mount(m->se, o->mountpoint) < 0)
		goto out_signals;
	/* Before the first request is read: INIT asks for it. */
	if (o->passthrough) {
		int prc = passthru_start(m);

		if (prc < 0)
			fprintf(stderr, "mount.mstore: no kernel passthrough "
			    "for tmp/ files: %s\n", strerror(-prc));
	}
	/* Threads start after the fork of fuse_daemonize. */
	if (fuse_daemonize(o->foreground) < 0)
		goto out_unmount;
	ro.conn = co;
	if (route_new(&ro, &m->route) < 0) {
		syslog(LOG_ERR, "mount.mstore: cannot start the connection");
		goto out_unmount;
	}
	if (pthread_create(&m->notifier, NULL, notifier_main, m) != 0)
		goto out_conn;
	if (pthread_create(&m->settler, NULL, settler_main, m) != 0) {
		m->sq_stop = 1;
		goto out_notifier;
	}
	if (wake_start(m, root) < 0)
		syslog(LOG_WARNING, "mount.mstore: no wake thread: IDLE "
		    "readers here see mail from other hosts only when they "
		    "poll");
	syslog(LOG_INFO, "mount.mstore: %s mounted on %s", o->servers,
	    o->mountpoint);
	lc = fuse_loop_cfg_create();
	if (lc == NULL)
		goto out_notifier;
	fuse_loop_cfg_set_max_threads(lc, o->max_threads);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	rc = fuse_session_loop_mt(m->se, lc) == 0 ? 0 : 1;
	fuse_loop_cfg_destroy(lc);
	pthread_mutex_lock(&m->mu);
	syslog(LOG_INFO, "mount.mstore: %s unmounted from %s (cache: peak "
	    "%zu KiB of %zu, %llu evictions, %llu throttled)", o->servers,
	    o->mountpoint, m->mem_peak >> 10, m->mem_budget >> 10,
	    (unsigned long long)m->evictions,
	    (unsigned long long)m->throttled);
	pthread_mutex_unlock(&m->mu);
	log_counts(o);
out_notifier:
	wake_stop(m);
	settler_stop(m);
	pthread_mutex_lock(&m->nq_mu);
	m->nq_stop = 1;
	pthread_cond_broadcast(&m->nq_cv);
	pthread_mutex_unlock(&m->nq_mu);
	pthread_join(m->notifier, NULL);
out_conn:
	route_free(m->route);
out_unmount:
	fuse_session_unmount(m->se);
out_signals:
	fuse_remove_signal_handlers(m->se);
out_session:
	fuse_session_destroy(m->se);
out:
	wake_free(m);		/* after the session: see wake.c */
	free(root);
	fuse_opt_free_args(&args);
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o = { .timeout_s = 10, .spool = "/var/tmp",
		.attr_timeout = 1.0, .max_threads = 4,
		.cache_mb = MNT_CACHE_MB, .health_ms = ROUTE_HEALTH_MS,
		.failover_ms = ROUTE_FAILOVER_MS };
	const char *servers[MAX_SERVERS];
	uint8_t key[MST_KEY_MAX];
	static char cafile[PATH_MAX], slist[PATH_MAX];
	struct mount m = { 0 };
	int nservers, keylen = 0, rc;

	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	openlog("mount.mstore", LOG_PID | (o.foreground ? LOG_PERROR : 0),
	    LOG_DAEMON);
	if (o.depth)
		syslog(LOG_NOTICE, "mount.mstore: option %s is ignored: "
		    "Maildirs are recognised by their shape at any depth",
		    o.depth);
	nservers = split_servers(o.servers, servers);
	if (nservers < 0)
		return 2;
	if (tls_check(&o, servers, nservers) < 0)
		return 2;
	/* Read at every connection, after the daemon moved to "/". */
	if (o.cafile && (realpath(o.cafile, cafile) == NULL ||
	    access(cafile, R_OK) < 0)) {
		fprintf(stderr, "mount.mstore: cafile %s: %s\n", o.cafile,
		    strerror(errno));
		return 1;
	}
	if (o.cafile)
		o.cafile = cafile;
	/* Read again from the health thread, after the move to "/". */
	if (o.servers_file && (realpath(o.servers_file, slist) == NULL ||
	    access(slist, R_OK) < 0)) {
		fprintf(stderr, "mount.mstore: servers_file %s: %s\n",
		    o.servers_file, strerror(errno));
		return 1;
	}
	if (o.servers_file)
		o.servers_file = slist;
	if (o.keyfile) {
		keylen = mst_key_load(o.keyfile, key, sizeof key);
		if (keylen < 0) {
			fprintf(stderr, "mount.mstore: keyfile %s: %s\n",
			    o.keyfile, mst_key_strerror(keylen));
			return 1;
		}
	}
	if (access(o.spool, W_OK) < 0) {
		fprintf(stderr, "mount.mstore: spool %s: %s\n", o.spool,
		    strerror(errno));
		return 1;
	}
	m.spool = o.spool;
	m.nospool = o.nospool;
	m.pt_fd = -1;
	m.timeout_ms = o.timeout_s * 1000;
	m.entry_timeout = o.attr_timeout;
	m.mem_budget = (size_t)o.cache_mb << 20;
	m.dir_gone = watch_drop;	/* inode.c reports, notify.c acts */
	pthread_mutex_init(&m.mu, NULL);
	pthread_mutex_init(&m.watch_mu, NULL);
	pthread_mutex_init(&m.nq_mu, NULL);
	pthread_cond_init(&m.nq_cv, NULL);
	pthread_mutex_init(&m.sq_mu, NULL);
	pthread_cond_init(&m.sq_cv, NULL);
	pthread_cond_init(&m.settled_cv, NULL);
	pthread_cond_init(&m.fcv, NULL);
	pthread_cond_init(&m.spool_cv, NULL);
	pthread_cond_init(&m.close_cv, NULL);
	m.locks = locktab_new();
	if (m.locks == NULL || inode_init(&m) < 0) {
		fprintf(stderr, "mount.mstore: out of memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	rc = run(&m, &o, servers, nservers, key, keylen);
	inode_fini(&m);		/* the backing ids go, then the device */
	if (m.pt_fd >= 0)
		close(m.pt_fd);
	locktab_free(m.locks);
	return rc;
}
