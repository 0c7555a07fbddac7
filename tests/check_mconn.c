/*
 * check_mconn.c - Check suite for the mount's store connection
 * (fuse-mount/mconn.c), driven against the real mstored ($MSTORED,
 * --foreground) on a Unix socket in a private mkdtemp directory. Each
 * test that needs a server starts its own in a checked fixture and the
 * teardown kills it by PID; servers also die with the process that
 * started them (PR_SET_PDEATHSIG), so a failing test leaves none behind.
 *
 * The servers run with max_frame = 64K so that bodies and listings span
 * many frames. The "tls" test case runs the same traffic over TLS on a
 * loopback port (throwaway certificates from tests/tls-certs.sh), where
 * callers' writes and the connection thread's reads share one SSL
 * object. Worker threads never call ck_assert: they record the
 * first failure as text, which the test thread then asserts on.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mconn.h"
#include "mstclient.h"
#include "mstproto.h"
#include "testutil.h"

#define TEST_MAX_FRAME	(64u << 10)	/* the servers' max_frame */
#define START_MS	30000		/* valgrind starts slowly */
#define WAIT_MS		10000		/* for callbacks and notices */

/* A test case's private directory (unchecked fixture): removed by the
 * runner even when a test in a forked child fails before its teardown. */

/* The test's server; the fixture starts it, the teardown kills it. */
static struct server {
	pid_t pid;
	char dir[48];
	char data[64];
	char conf[64];
	char log[64];
	char addr[112];
} srv = { .pid = -1 };

/* The CA file the connections trust: "" for plaintext (tls test case). */
static char tls_ca[128];

/* ---- time, processes, files ---- */

/* Start mstored on srv's address and data; wait until it accepts. */
static void
server_start(void)
{
	const char *argv[] = { mstored_path(), "--foreground", "--data",
		srv.data, "--listen", srv.addr, "--config", srv.conf, NULL };
	pid_t parent = getpid();
	int64_t deadline;
	FILE *f;

	srv.pid = fork();
	ck_assert_int_ge(srv.pid, 0);
	if (srv.pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
		    getppid() != parent)
			_exit(127);
		f = freopen(srv.log, "a", stderr);
		if (f == NULL || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "check_mconn: exec %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	deadline = now_ms() + START_MS;
	while (!can_connect(srv.addr)) {
		ck_assert_msg(waitpid(srv.pid, NULL, WNOHANG) == 0,
		    "mstored exited at start (see %s)", srv.log);
		ck_assert_msg(now_ms() < deadline, "mstored did not start");
		sleep_ms(20);
	}
}

static void
server_kill(void)
{
	if (srv.pid > 0) {
		kill(srv.pid, SIGKILL);
		waitpid(srv.pid, NULL, 0);
	}
	srv.pid = -1;
}

static int
free_port(void)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t len = sizeof in;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&in, sizeof in) == 0 &&
	    getsockname(fd, (struct sockaddr *)&in, &len) == 0)
		port = ntohs(in.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void setup_server(void);

/* A server whose 127.0.0.1 port speaks only TLS; connections trust the
 * test CA. */
static void
setup_tls_server(void)
{
	const char *src = getenv("srcdir");
	char cmd[512], tls[96];
	FILE *f;

	srv = (struct server){ .pid = -1 };
	snprintf(srv.dir, sizeof srv.dir, "%s/t.XXXXXX", tmpbase);
	ck_assert_ptr_nonnull(mkdtemp(srv.dir));
	snprintf(tls, sizeof tls, "%s/tls", srv.dir);
	ck_assert_int_eq(mkdir(tls, 0700), 0);
	snprintf(cmd, sizeof cmd, "sh '%s/tests/tls-certs.sh' '%s'",
	    src && *src ? src : ".", tls);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
	snprintf(tls_ca, sizeof tls_ca, "%s/ca.pem", tls);
	snprintf(srv.data, sizeof srv.data, "%s/data", srv.dir);
	snprintf(srv.conf, sizeof srv.conf, "%s/mstored.conf", srv.dir);
	snprintf(srv.log, sizeof srv.log, "%s/mstored.log", srv.dir);
	snprintf(srv.addr, sizeof srv.addr, "127.0.0.1:%d", free_port());
	ck_assert_int_eq(mkdir(srv.data, 0700), 0);
	f = fopen(srv.conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "max_frame = 64K\nmax_message_size = 8M\n"
	    "tls_cert = %s/server.pem\ntls_key = %s/server.key\n", tls, tls);
	ck_assert_int_eq(fclose(f), 0);
	server_start();
}

static void
setup_server(void)
{
	FILE *f;

	srv = (struct server){ .pid = -1 };
	tls_ca[0] = '\0';
	snprintf(srv.dir, sizeof srv.dir, "%s/t.XXXXXX", tmpbase);
	ck_assert_ptr_nonnull(mkdtemp(srv.dir));
	snprintf(srv.data, sizeof srv.data, "%s/data", srv.dir);
	snprintf(srv.conf, sizeof srv.conf, "%s/mstored.conf", srv.dir);
	snprintf(srv.log, sizeof srv.log, "%s/mstored.log", srv.dir);
	snprintf(srv.addr, sizeof srv.addr, "unix:%s/sock", srv.dir);
	ck_assert_int_eq(mkdir(srv.data, 0700), 0);
	f = fopen(srv.conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "max_frame = 64K\nmax_message_size = 8M\n");
	ck_assert_int_eq(fclose(f), 0);
	server_start();
}

static void
teardown_server(void)
{
	server_kill();
	rm_rf(srv.dir);
	srv.dir[0] = '\0';
}

/* ---- the connection under test ---- */

struct events {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ups;
	int notices;
	int slow_ms;		/* on_notice takes this long first */
	char path[256], name[256];
	uint8_t event;
	struct mconn *c;	/* for up(): re-register the watch */
	const char *watch;
};

static struct events ev = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
};

static void
on_notice(void *arg, const struct mst_notify *n)
{
	struct events *e = arg;
	struct timespec slow;

	pthread_mutex_lock(&e->mu);
	slow.tv_sec = e->slow_ms / 1000;
	slow.tv_nsec = (long)(e->slow_ms % 1000) * 1000000L;
	pthread_mutex_unlock(&e->mu);
	if (slow.tv_sec || slow.tv_nsec)
		(void)nanosleep(&slow, NULL);	/* EINTR: shorter, still */
	pthread_mutex_lock(&e->mu);
	e->notices++;
	snprintf(e->path, sizeof e->path, "%.*s", n->path.len, n->path.p);
	snprintf(e->name, sizeof e->name, "%.*s", n->name.len, n->name.p);
	e->event = n->event;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void
ignore_reply(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);
}

static void
on_up(void *arg)
{
	struct events *e = arg;
	struct mst_path_req q;
	uint8_t buf[512];
	int n;

	pthread_mutex_lock(&e->mu);
	e->ups++;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	if (e->c == NULL || e->watch == NULL)
		return;
	q.path = mst_str_of(e->watch);
	n = mst_path_req_encode(&q, buf, sizeof buf);
	if (n < 0 || mconn_call_async(e->c, MST_OP_WATCH, buf, (size_t)n,
	    NULL, 0, 1, ignore_reply, NULL) < 0)
		fprintf(stderr, "check_mconn: up: cannot re-register\n");
}

static struct mconn *
open_conn(const char *addr, int timeout_ms)
{
	const char *servers[] = { addr };
	struct mconn_opts o = {
		.servers = servers,
		.nservers = 1,
		.timeout_ms = timeout_ms,
		.name = "check_mconn",
		.notice = on_notice,
		.up = on_up,
		.arg = &ev,
		.tls = tls_ca[0] != '\0',
		.cafile = tls_ca[0] ? tls_ca : NULL,
	};
	struct mconn *c = NULL;

	pthread_mutex_lock(&ev.mu);
	ev.ups = ev.notices = ev.slow_ms = 0;
	ev.c = NULL;
	ev.watch = NULL;
	pthread_mutex_unlock(&ev.mu);
	ck_assert_int_eq(mconn_new(&o, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

/* Wait until |*v| (guarded by ev.mu) reaches |want|; returns it. */
static int
wait_count(const int *v, int want)
{
	struct timespec ts;
	int got;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&ev.mu);
	while (*v < want &&
	    pthread_cond_timedwait(&ev.cv, &ev.mu, &ts) == 0)
		;
	got = *v;
	pthread_mutex_unlock(&ev.mu);
	return got;
}

static int
wait_connected(struct mconn *c, int want, int ms)
{
	int64_t deadline = now_ms() + ms;

	while (mconn_connected(c) != want && now_ms() < deadline)
		sleep_ms(10);
	return mconn_connected(c) == want;
}

/* ---- request helpers (return a negative errno or 0) ---- */

static int
call_path(struct mconn *c, unsigned op, const char *path, struct mreply *r)
{
	struct mst_path_req q = { .path = mst_str_of(path) };
	uint8_t buf[4200];
	int n = mst_path_req_encode(&q, buf, sizeof buf);

	if (n < 0)
		return n;
	return mconn_call(c, op, buf, (size_t)n, NULL, 0, 1, r);
}

static int
ping(struct mconn *c, uint64_t cookie)
{
	struct mst_ping q = { .cookie = cookie }, a;
	struct mreply r;
	uint8_t buf[8];
	int n = mst_ping_encode(&q, buf, sizeof buf), rc;

	if (n < 0)
		return n;
	rc = mconn_call(c, MST_OP_PING, buf, (size_t)n, NULL, 0, 1, &r);
	if (rc == 0 && (r.nframes != 1 ||
	    mst_ping_decode(&a, r.frames[0].p, r.frames[0].len) < 0 ||
	    a.cookie != cookie))
		rc = -EBADMSG;
	mreply_free(&r);
	return rc;
}

static int
attr_of(struct mreply *r, struct mst_attr_rep *a)
{
	if (r->status < 0)
		return r->status;
	if (r->nframes != 1 ||
	    mst_attr_rep_decode(a, r->frames[0].p, r->frames[0].len) < 0)
		return -EBADMSG;
	return 0;
}

static int
mkdir_at(struct mconn *c, const char *path, uint64_t *id_out)
{
	struct mst_mkdir_req q = { .path = mst_str_of(path), .mode = 0755 };
	struct mst_attr_rep a;
	struct mreply r;
	uint8_t buf[4200];
	int n = mst_mkdir_req_encode(&q, buf, sizeof buf), rc;

	if (n < 0)
		return n;
	mconn_call(c, MST_OP_MKDIR, buf, (size_t)n, NULL, 0, 0, &r);
	rc = attr_of(&r, &a);
	if (rc == 0 && a.attr.type != MST_T_DIR)
		rc = -EBADMSG;
	if (rc == 0 && id_out != NULL)
		*id_out = a.attr.id;
	mreply_free(&r);
	return rc;
}

static int
put_file(struct mconn *c, const char *path, const void *body, size_t len)
{
	struct mst_put_req q = {
		.path = mst_str_of(path),
		.mode = 0644,
		.checksum = mst_checksum(body, len),
		.body_size = len,
		.body = { (const uint8_t *)"", 0 },
	};
	struct mst_attr_rep a;
	struct mreply r;
	uint8_t buf[4200];
	int n = mst_put_req_encode(&q, buf, sizeof buf), rc;

	if (n < 0)
		return n;
	mconn_call(c, MST_OP_PUT, buf, (size_t)n, body, len, 0, &r);
	rc = attr_of(&r, &a);
	if (rc == 0 && a.attr.size != len)
		rc = -EBADMSG;
	mreply_free(&r);
	return rc;
}

/* Read a whole small file with GETs of at most one frame each. */
static int
get_file(struct mconn *c, const char *path, uint8_t **out, size_t *len_out,
    int *calls_out)
{
	struct mst_get_req q = { .path = mst_str_of(path) };
	struct mst_data_rep d;
	struct mreply r;
	uint8_t buf[4200], *all = NULL;
	uint64_t total = UINT64_MAX, sum = 0;
	size_t have = 0;
	int n, rc = 0, calls = 0;

	while (rc == 0 && have < total) {
		q.offset = have;
		q.length = TEST_MAX_FRAME - 64;
		n = mst_get_req_encode(&q, buf, sizeof buf);
		if (n < 0)
			return n;
		rc = mconn_call(c, MST_OP_GET, buf, (size_t)n, NULL, 0, 1, &r);
		calls++;
		if (rc == 0 && (r.nframes != 1 || mst_data_rep_decode(&d,
		    r.frames[0].p, r.frames[0].len) < 0))
			rc = -EBADMSG;
		if (rc == 0 && all == NULL) {
			total = d.total_size;
			sum = d.checksum;
			all = malloc(total ? total : 1);
			if (all == NULL)
				rc = -ENOMEM;
		}
		if (rc == 0 && (d.data.len > total - have ||
		    (d.data.len == 0 && have < total)))
			rc = -EBADMSG;
		if (rc == 0) {
			memcpy(all + have, d.data.p, d.data.len);
			have += d.data.len;
		}
		mreply_free(&r);
	}
	if (rc == 0 && mst_checksum(all, have) != sum)
		rc = -EBADMSG;
	if (rc < 0) {
		free(all);
		return rc;
	}
	*out = all;
	*len_out = have;
	if (calls_out != NULL)
		*calls_out = calls;
	return 0;
}

/* Count the entries called |name| in a (multi-frame) READDIR of |dir|. */
static int
count_entries(struct mconn *c, const char *dir, const char *name,
    size_t *frames_out)
{
	struct mst_list_rep lr;
	struct mst_list_entry e;
	struct mreply r;
	size_t i, off;
	int rc, count = 0;

	rc = call_path(c, MST_OP_READDIR, dir, &r);
	for (i = 0; rc == 0 && i < r.nframes; i++) {
		rc = mst_list_rep_decode(&lr, r.frames[i].p, r.frames[i].len);
		off = 0;
		while (rc >= 0 &&
		    (rc = mst_list_entry_next(&e, &lr, &off)) == 1)
			count += name == NULL || (e.name.len == strlen(name) &&
			    memcmp(e.name.p, name, e.name.len) == 0);
	}
	if (frames_out != NULL)
		*frames_out = r.nframes;
	mreply_free(&r);
	return rc < 0 ? rc : count;
}

/* A DELIVER of |body| as |mbox|/new/|name|, submitted asynchronously. */
static int
deliver_async(struct mconn *c, const char *mbox, const char *name,
    const uint8_t idem[MST_IDEM_LEN], const char *body, int retry,
    mconn_cb *cb, void *arg)
{
	struct mst_deliver_req q = {
		.mailbox = mst_str_of(mbox),
		.folder = mst_str_of(""),
		.sub = MST_SUB_NEW,
		.name = mst_str_of(name),
		.checksum = mst_checksum(body, strlen(body)),
		.body_size = strlen(body),
		.mode = 0600,
		.body = { (const uint8_t *)"", 0 },
	};
	uint8_t buf[4200];
	int n;

	memcpy(q.idem, idem, MST_IDEM_LEN);
	n = mst_deliver_req_encode(&q, buf, sizeof buf);
	if (n < 0)
		return n;
	return mconn_call_async(c, MST_OP_DELIVER, buf, (size_t)n, body,
	    strlen(body), retry, cb, arg);
}

/* An async completion the test thread can wait for. */
struct pending {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status;
	int64_t at;		/* now_ms() when completed */
};

#define PENDING_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, \
	0, 0, 0 }

static void
pending_cb(void *arg, struct mreply *r)
{
	struct pending *p = arg;

	pthread_mutex_lock(&p->mu);
	p->done++;
	p->status = r->status;
	p->at = now_ms();
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	mreply_free(r);
}

/* Wait for |p|; returns its status, or 1 when it did not complete. */
static int
pending_wait(struct pending *p, int ms)
{
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000 + 1;
	pthread_mutex_lock(&p->mu);
	while (!p->done && pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0)
		;
	rc = p->done ? p->status : 1;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

static int
ping_async(struct mconn *c, uint64_t cookie, int retry, struct pending *p)
{
	struct mst_ping q = { .cookie = cookie };
	uint8_t buf[8];
	int n = mst_ping_encode(&q, buf, sizeof buf);

	if (n < 0)
		return n;
	return mconn_call_async(c, MST_OP_PING, buf, (size_t)n, NULL, 0,
	    retry, pending_cb, p);
}

/* ---- tests without a server ---- */

START_TEST(unreachable_store_fails_with_eio_by_the_deadline)
{
	struct mconn *c = open_conn("unix:/nonexistent/mstore.sock", 300);
	int64_t t0;
	int rc;

	ck_assert_int_eq(mconn_connected(c), 0);
	t0 = now_ms();
	rc = ping(c, 1);
	ck_assert_int_eq(rc, -EIO);
	ck_assert_int_ge(now_ms() - t0, 250);
	ck_assert_int_lt(now_ms() - t0, 3000);
	t0 = now_ms();
	mconn_free(c);
	ck_assert_int_lt(now_ms() - t0, 3000);
}
END_TEST

START_TEST(bad_arguments_are_rejected)
{
	const char *none[] = { "nonsense" };
	struct mconn_opts o = { .servers = none, .nservers = 1 };
	struct mconn *c = NULL;
	struct pending p = PENDING_INIT;
	uint8_t head[8] = { 0 };
	struct mreply r;

	ck_assert_int_eq(mconn_new(&o, &c), -EINVAL);
	o.nservers = 0;
	ck_assert_int_eq(mconn_new(&o, &c), -EINVAL);
	c = open_conn("unix:/nonexistent/mstore.sock", 200);
	ck_assert_int_eq(mconn_call_async(c, MST_OP_DATA, head, 8, NULL, 0, 0,
	    pending_cb, &p), -EINVAL);
	ck_assert_int_eq(mconn_call_async(c, MST_OP_PING, head, 8, head, 8, 0,
	    pending_cb, &p), -EINVAL);
	ck_assert_int_eq(mconn_call_async(c, 0xee, head, 8, NULL, 0, 0,
	    pending_cb, &p), -EINVAL);
	ck_assert_int_eq(mconn_call(c, MST_OP_HELLO, head, 8, NULL, 0, 0, &r),
	    -EINVAL);
	ck_assert_int_eq(r.status, -EINVAL);
	ck_assert_int_eq(r.nframes, 0);
	mconn_free(c);
	ck_assert_int_eq(p.done, 0);
	mconn_free(NULL);
	mreply_free(NULL);
}
END_TEST

/* ---- concurrency ---- */

#define WORKERS		16
#define ROUNDS		200
#define BURST		8

struct worker {
	struct mconn *c;
	int idx;
	int requests;
	char err[256];
};

static void
worker_fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(w->err, sizeof w->err, fmt, ap);
	va_end(ap);
}

struct burst {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int left;
	int bad;
	uint64_t base;
};

struct burst_req {
	struct burst *b;
	uint64_t cookie;
};

static void
burst_cb(void *arg, struct mreply *r)
{
	struct burst_req *q = arg;
	struct burst *b = q->b;
	struct mst_ping a;

	pthread_mutex_lock(&b->mu);
	if (r->status != 0 || r->nframes != 1 ||
	    mst_ping_decode(&a, r->frames[0].p, r->frames[0].len) < 0 ||
	    a.cookie != q->cookie)
		b->bad++;
	b->left--;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	mreply_free(r);
}

static void
worker_burst(struct worker *w, uint64_t base)
{
	struct burst b = { PTHREAD_MUTEX_INITIALIZER,
		PTHREAD_COND_INITIALIZER, BURST, 0, base };
	struct burst_req q[BURST];
	struct mst_ping p;
	uint8_t buf[8];
	int i, rc;

	for (i = 0; i < BURST; i++) {
		q[i] = (struct burst_req){ &b, base + (uint64_t)i };
		p.cookie = q[i].cookie;
		mst_ping_encode(&p, buf, sizeof buf);
		rc = mconn_call_async(w->c, MST_OP_PING, buf, sizeof buf,
		    NULL, 0, 1, burst_cb, &q[i]);
		if (rc < 0) {
			worker_fail(w, "async ping: %s", strerror(-rc));
			pthread_mutex_lock(&b.mu);
			b.left--;
			pthread_mutex_unlock(&b.mu);
		}
	}
	pthread_mutex_lock(&b.mu);
	while (b.left > 0)
		pthread_cond_wait(&b.cv, &b.mu);
	pthread_mutex_unlock(&b.mu);
	if (b.bad)
		worker_fail(w, "%d async pings got a wrong reply", b.bad);
	w->requests += BURST;
}

static void
worker_dir(struct worker *w, const char *path)
{
	struct mst_attr_rep a;
	struct mreply r;
	uint64_t id = 0;
	int rc;

	rc = mkdir_at(w->c, path, &id);
	if (rc < 0) {
		worker_fail(w, "mkdir %s: %s", path, strerror(-rc));
		return;
	}
	call_path(w->c, MST_OP_LOOKUP, path, &r);
	rc = attr_of(&r, &a);
	mreply_free(&r);
	if (rc < 0 || a.attr.id != id || a.attr.type != MST_T_DIR)
		worker_fail(w, "lookup %s: rc %d id %llu, want id %llu", path,
		    rc, (unsigned long long)a.attr.id,
		    (unsigned long long)id);
	w->requests += 2;
}

static void
worker_file(struct worker *w, const char *path, int round)
{
	char body[3000];
	uint8_t *got = NULL;
	size_t len = (size_t)(round * 37 % 2500), i, glen = 0;
	int rc;

	for (i = 0; i < len; i++)
		body[i] = (char)('a' + (w->idx + round + (int)i) % 26);
	rc = put_file(w->c, path, body, len);
	if (rc == 0)
		rc = get_file(w->c, path, &got, &glen, NULL);
	if (rc < 0)
		worker_fail(w, "put/get %s: %s", path, strerror(-rc));
	else if (glen != len || memcmp(got, body, len) != 0)
		worker_fail(w, "get %s: %zu bytes, want %zu", path, glen, len);
	free(got);
	w->requests += 2;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char path[64];
	uint64_t base = (uint64_t)w->idx << 32;
	int i, rc;

	snprintf(path, sizeof path, "c/t%d", w->idx);
	rc = mkdir_at(w->c, path, NULL);
	if (rc < 0)
		worker_fail(w, "mkdir %s: %s", path, strerror(-rc));
	for (i = 0; i < ROUNDS && w->err[0] == '\0'; i++) {
		switch (i % 4) {
		case 0:
			rc = ping(w->c, base | (uint64_t)i);
			if (rc < 0)
				worker_fail(w, "ping: %s", strerror(-rc));
			w->requests++;
			break;
		case 1:
			snprintf(path, sizeof path, "c/t%d/d%d", w->idx, i);
			worker_dir(w, path);
			break;
		case 2:
			snprintf(path, sizeof path, "c/t%d/f%d", w->idx, i);
			worker_file(w, path, i);
			break;
		default:
			worker_burst(w, base | (uint64_t)i << 8);
			break;
		}
	}
	return NULL;
}

START_TEST(concurrent_threads_get_their_own_replies)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct worker w[WORKERS];
	pthread_t t[WORKERS];
	int i, total = 0;

	ck_assert_int_eq(mconn_connected(c), 1);
	ck_assert_int_eq(mconn_max_frame(c), TEST_MAX_FRAME);
	ck_assert_int_eq(mkdir_at(c, "c", NULL), 0);
	for (i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .c = c, .idx = i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main,
		    &w[i]), 0);
	}
	for (i = 0; i < WORKERS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_msg(w[i].err[0] == '\0', "worker %d: %s", i,
		    w[i].err);
		total += w[i].requests;
	}
	ck_assert_int_ge(total, WORKERS * ROUNDS);
	mconn_free(c);
}
END_TEST

/* ---- multi-frame replies and bodies ---- */

#define LONG_NAMES	600

static void
long_name(char *buf, int i)
{
	int n = snprintf(buf, MST_NAME_MAX + 1, "%04d-", i);

	memset(buf + n, 'x', MST_NAME_MAX - (size_t)n);
	buf[MST_NAME_MAX] = '\0';
}

START_TEST(multi_frame_readdir_is_gathered)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct pending p[LONG_NAMES];
	struct mst_mkdir_req q = { .mode = 0755 };
	struct mst_list_rep lr;
	struct mst_list_entry e;
	struct mreply r;
	char name[MST_NAME_MAX + 1], path[MST_NAME_MAX + 8];
	uint8_t buf[600], seen[LONG_NAMES] = { 0 };
	size_t i, off;
	int n, k, count = 0;

	ck_assert_int_eq(mkdir_at(c, "big", NULL), 0);
	/* Pipelined: all MKDIRs in flight at once. */
	for (k = 0; k < LONG_NAMES; k++) {
		long_name(name, k);
		snprintf(path, sizeof path, "big/%s", name);
		q.path = mst_str_of(path);
		n = mst_mkdir_req_encode(&q, buf, sizeof buf);
		ck_assert_int_gt(n, 0);
		p[k] = (struct pending)PENDING_INIT;
		ck_assert_int_eq(mconn_call_async(c, MST_OP_MKDIR, buf,
		    (size_t)n, NULL, 0, 0, pending_cb, &p[k]), 0);
	}
	for (k = 0; k < LONG_NAMES; k++)
		ck_assert_int_eq(pending_wait(&p[k], WAIT_MS), 0);

	ck_assert_int_eq(call_path(c, MST_OP_READDIR, "big", &r), 0);
	ck_assert_int_ge(r.nframes, 3);
	for (i = 0; i < r.nframes; i++) {
		ck_assert_int_le(r.frames[i].len, TEST_MAX_FRAME);
		ck_assert_int_eq(mst_list_rep_decode(&lr, r.frames[i].p,
		    r.frames[i].len), 0);
		off = 0;
		while ((n = mst_list_entry_next(&e, &lr, &off)) == 1) {
			ck_assert_int_eq(e.name.len, MST_NAME_MAX);
			k = atoi(e.name.p);
			ck_assert_int_lt(k, LONG_NAMES);
			ck_assert_int_eq(seen[k], 0);
			seen[k] = 1;
			count++;
		}
		ck_assert_int_eq(n, 0);
	}
	ck_assert_int_eq(count, LONG_NAMES);
	mreply_free(&r);
	mconn_free(c);
}
END_TEST

#define BIG_BODY	(3u << 20)

START_TEST(body_larger_than_a_frame_round_trips)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	uint8_t *body = malloc(BIG_BODY), *got = NULL;
	size_t i, len = 0;
	uint32_t x = 12345;
	int calls = 0;

	ck_assert_ptr_nonnull(body);
	for (i = 0; i < BIG_BODY; i++) {
		x = x * 1103515245u + 12345u;
		body[i] = (uint8_t)(x >> 16);
	}
	ck_assert_int_eq(put_file(c, "blob", body, BIG_BODY), 0);
	ck_assert_int_eq(get_file(c, "blob", &got, &len, &calls), 0);
	ck_assert_int_eq(len, BIG_BODY);
	ck_assert_int_ge(calls, (int)(BIG_BODY / TEST_MAX_FRAME));
	ck_assert(memcmp(got, body, BIG_BODY) == 0);
	free(got);
	free(body);
	mconn_free(c);
}
END_TEST

/* ---- notices ---- */

START_TEST(watch_delivers_a_notice_for_another_clients_change)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct mst_client_opts oo = { .tls = tls_ca[0] != '\0',
	    .cafile = tls_ca };
	struct mst_client *other;
	struct mst_put_req q = {
		.path = mst_str_of("w/hello"),
		.mode = 0644,
		.checksum = mst_checksum("hi", 2),
		.body_size = 2,
		.body = { (const uint8_t *)"", 0 },
	};
	struct mst_hdr h;
	struct mreply r;
	const uint8_t *rp;
	uint8_t buf[256];
	int n;

	ck_assert_int_eq(mkdir_at(c, "w", NULL), 0);
	ck_assert_int_eq(call_path(c, MST_OP_WATCH, "w", &r), 0);
	mreply_free(&r);
	ck_assert_int_eq(mst_client_connect(srv.addr, &oo, &other), 0);
	n = mst_put_req_encode(&q, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call_body(other, MST_OP_PUT, buf,
	    (size_t)n, "hi", 2, &h, &rp), 0);
	mst_client_free(other);
	ck_assert_int_eq(wait_count(&ev.notices, 1), 1);
	pthread_mutex_lock(&ev.mu);
	ck_assert_str_eq(ev.path, "w");
	ck_assert_str_eq(ev.name, "hello");
	ck_assert_int_eq(ev.event, MST_EV_ADD);
	pthread_mutex_unlock(&ev.mu);
	mconn_free(c);
}
END_TEST

/* ---- faults ---- */

struct stopped_caller {
	struct mconn *c;
	int rc[3];
	int64_t ms[3];
};

static void *
stopped_main(void *arg)
{
	struct stopped_caller *s = arg;
	int64_t t0;
	int i;

	for (i = 0; i < 3; i++) {
		t0 = now_ms();
		s->rc[i] = ping(s->c, (uint64_t)i);
		s->ms[i] = now_ms() - t0;
	}
	return NULL;
}

START_TEST(stopped_server_times_out_then_recovers)
{
	struct mconn *c = open_conn(srv.addr, 500);
	struct stopped_caller s[4];
	pthread_t t[4];
	uint8_t *body;
	int64_t t0;
	int i, j;

	ck_assert_int_eq(ping(c, 1), 0);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	for (i = 0; i < 4; i++) {
		s[i] = (struct stopped_caller){ .c = c };
		ck_assert_int_eq(pthread_create(&t[i], NULL, stopped_main,
		    &s[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		for (j = 0; j < 3; j++) {
			ck_assert_int_eq(s[i].rc[j], -EIO);
			ck_assert_int_ge(s[i].ms[j], 400);
			ck_assert_int_lt(s[i].ms[j], 3000);
		}
	}
	/* Timeouts alone do not drop the connection. */
	ck_assert_int_eq(mconn_connected(c), 1);

	/* A body that fills the socket fails in time too (and, cut off
	 * mid-request, costs the connection). */
	body = calloc(1, BIG_BODY);
	ck_assert_ptr_nonnull(body);
	t0 = now_ms();
	ck_assert_int_eq(put_file(c, "stuck", body, BIG_BODY), -EIO);
	ck_assert_int_lt(now_ms() - t0, 3000);
	free(body);

	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	ck_assert_msg(wait_connected(c, 1, WAIT_MS), "did not reconnect");
	ck_assert_int_eq(ping(c, 2), 0);
	ck_assert_int_eq(mkdir_at(c, "after", NULL), 0);
	mconn_free(c);
}
END_TEST

START_TEST(free_fails_pending_requests_without_hanging)
{
	struct mconn *c = open_conn(srv.addr, 30000);
	struct pending p[10];
	int64_t t0;
	int i;

	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	for (i = 0; i < 10; i++) {
		p[i] = (struct pending)PENDING_INIT;
		ck_assert_int_eq(ping_async(c, (uint64_t)i, i & 1, &p[i]), 0);
	}
	t0 = now_ms();
	mconn_free(c);
	ck_assert_int_lt(now_ms() - t0, 3000);
	for (i = 0; i < 10; i++) {
		ck_assert_int_eq(p[i].done, 1);
		ck_assert_int_eq(p[i].status, -EIO);
	}
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
}
END_TEST

static void
make_mailbox(struct mconn *c)
{
	ck_assert_int_eq(mkdir_at(c, "dom", NULL), 0);
	ck_assert_int_eq(mkdir_at(c, "dom/u", NULL), 0);
	ck_assert_int_eq(mkdir_at(c, "dom/u/tmp", NULL), 0);
	ck_assert_int_eq(mkdir_at(c, "dom/u/new", NULL), 0);
	ck_assert_int_eq(mkdir_at(c, "dom/u/cur", NULL), 0);
}

START_TEST(restarted_server_reconnects_and_a_queued_retry_succeeds_once)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS), *c2;
	struct pending d = PENDING_INIT, q = PENDING_INIT, d2 = PENDING_INIT;
	uint8_t idem[MST_IDEM_LEN];

	ck_assert_int_eq(wait_count(&ev.ups, 1), 1);
	make_mailbox(c);
	pthread_mutex_lock(&ev.mu);
	ev.c = c;
	ev.watch = "dom/u/new";
	pthread_mutex_unlock(&ev.mu);

	server_kill();
	ck_assert_msg(wait_connected(c, 0, WAIT_MS), "drop not noticed");
	/* Submitted during the outage: both wait for the reconnection. */
	ck_assert_int_eq(getrandom(idem, sizeof idem, 0), (ssize_t)sizeof idem);
	ck_assert_int_eq(deliver_async(c, "dom/u", "1.host", idem,
	    "Subject: hi\n\nbody\n", 1, pending_cb, &d), 0);
	ck_assert_int_eq(ping_async(c, 7, 0, &q), 0);
	sleep_ms(300);
	ck_assert_int_eq(d.done, 0);
	server_start();

	ck_assert_int_eq(pending_wait(&d, WAIT_MS), 0);
	ck_assert_int_eq(pending_wait(&q, WAIT_MS), 0);
	ck_assert_int_eq(d.done, 1);
	ck_assert_int_eq(wait_count(&ev.ups, 2), 2);
	ck_assert_int_eq(mconn_connected(c), 1);
	ck_assert_int_eq(count_entries(c, "dom/u/new", "1.host", NULL), 1);
	/* up() re-registered the watch on the new connection: a delivery
	 * through another connection is noticed (a connection is not told
	 * of its own changes). */
	c2 = open_conn(srv.addr, WAIT_MS);
	ck_assert_int_eq(getrandom(idem, sizeof idem, 0), (ssize_t)sizeof idem);
	ck_assert_int_eq(deliver_async(c2, "dom/u", "2.host", idem,
	    "Subject: again\n\nbody\n", 1, pending_cb, &d2), 0);
	ck_assert_int_eq(pending_wait(&d2, WAIT_MS), 0);
	ck_assert_int_ge(wait_count(&ev.notices, 1), 1);
	pthread_mutex_lock(&ev.mu);
	ck_assert_str_eq(ev.name, "2.host");
	pthread_mutex_unlock(&ev.mu);
	mconn_free(c2);
	mconn_free(c);
}
END_TEST

START_TEST(request_in_flight_at_a_crash_is_resent_once_if_retryable)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct pending d = PENDING_INIT, q = PENDING_INIT;
	uint8_t idem[MST_IDEM_LEN];
	int64_t t0;

	make_mailbox(c);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(getrandom(idem, sizeof idem, 0), (ssize_t)sizeof idem);
	ck_assert_int_eq(deliver_async(c, "dom/u", "2.host", idem,
	    "Subject: crash\n\nbody\n", 1, pending_cb, &d), 0);
	ck_assert_int_eq(ping_async(c, 9, 0, &q), 0);
	sleep_ms(200);		/* both written, neither answered */
	t0 = now_ms();
	server_kill();
	/* The non-retryable one fails with the connection, not later. */
	ck_assert_int_eq(pending_wait(&q, WAIT_MS), -EIO);
	ck_assert_int_lt(q.at - t0, 3000);
	ck_assert_int_eq(d.done, 0);
	server_start();
	ck_assert_int_eq(pending_wait(&d, WAIT_MS), 0);
	ck_assert_int_eq(count_entries(c, "dom/u/new", "2.host", NULL), 1);
	ck_assert_int_eq(count_entries(c, "dom/u/new", NULL, NULL), 1);
	mconn_free(c);
	ck_assert_int_eq(d.done, 1);
}
END_TEST

/* A DELIVER whose body of |len| bytes is borrowed (MCONN_BORROW), not
 * copied: it goes out from |body| itself, several frames long. */
static int
deliver_borrowed(struct mconn *c, const char *name, const uint8_t *body,
    size_t len, mconn_cb *cb, void *arg)
{
	struct mst_deliver_req q = {
		.mailbox = mst_str_of("dom/u"),
		.folder = mst_str_of(""),
		.sub = MST_SUB_NEW,
		.name = mst_str_of(name),
		.checksum = mst_checksum(body, len),
		.body_size = len,
		.mode = 0600,
		.body = { (const uint8_t *)"", 0 },
	};
	uint8_t buf[4200];
	int n;

	if (getrandom(q.idem, sizeof q.idem, 0) != sizeof q.idem)
		return -EIO;
	n = mst_deliver_req_encode(&q, buf, sizeof buf);
	if (n < 0)
		return n;
	return mconn_call_flags(c, MST_OP_DELIVER, buf, (size_t)n, body, len,
	    MCONN_RETRY | MCONN_BORROW, cb, arg);
}

/* The store checks the body against the checksum sent in the head: a
 * borrowed body spanning frames arrives intact, also when sent again
 * after a crash, and the message is stored once. */
START_TEST(borrowed_body_is_sent_intact_and_resent_after_a_crash)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct pending d1 = PENDING_INIT, d2 = PENDING_INIT;
	size_t len = 3 * TEST_MAX_FRAME + 17, i;
	uint8_t *body = malloc(len);
	uint32_t x = 777;

	ck_assert_ptr_nonnull(body);
	for (i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		body[i] = (uint8_t)(x >> 16);
	}
	make_mailbox(c);
	ck_assert_int_eq(deliver_borrowed(c, "b1.host", body, len,
	    pending_cb, &d1), 0);
	ck_assert_int_eq(pending_wait(&d1, WAIT_MS), 0);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(deliver_borrowed(c, "b2.host", body, len,
	    pending_cb, &d2), 0);
	sleep_ms(200);
	server_kill();
	server_start();
	ck_assert_int_eq(pending_wait(&d2, WAIT_MS), 0);
	ck_assert_int_eq(count_entries(c, "dom/u/new", "b1.host", NULL), 1);
	ck_assert_int_eq(count_entries(c, "dom/u/new", "b2.host", NULL), 1);
	ck_assert_int_eq(count_entries(c, "dom/u/new", NULL, NULL), 2);
	mconn_free(c);
	free(body);		/* only now: the callbacks have run */
}
END_TEST

/* A borrowed DELIVER that is completed while its writer still sends it
 * (mconn_fail_all: its server was judged down) is called back by that
 * writer. The callback takes a lock of the caller's, as the mount's
 * callbacks take the mount's lock, and a thread holding that lock sends
 * a request (the mount sends a CLOSE so). */
struct held {
	pthread_mutex_t lk;	/* the caller's lock */
	struct mconn *c;
	const uint8_t *body;
	size_t len;
	int rc;			/* deliver_borrowed's */
	int status;		/* the callback's */
	int called;
};

static void
held_cb(void *arg, struct mreply *r)
{
	struct held *h = arg;

	pthread_mutex_lock(&h->lk);
	h->status = r->status;
	h->called = 1;
	pthread_mutex_unlock(&h->lk);
	mreply_free(r);
}

static void *
held_writer(void *arg)
{
	struct held *h = arg;

	h->rc = deliver_borrowed(h->c, "h.host", h->body, h->len, held_cb,
	    h);
	return NULL;
}

/* The writer calls back only once it let go of the connection's socket:
 * otherwise the sender waits for the socket, which the writer holds, and
 * the writer waits for the lock, which the sender holds, until the
 * sender's deadline. */
START_TEST(held_callback_runs_after_its_writer_lets_go_of_the_socket)
{
	struct mconn *c = open_conn(srv.addr, 5000);
	struct held h = { .lk = PTHREAD_MUTEX_INITIALIZER, .c = c,
		.len = 2u << 20, .rc = 1 };
	struct pending p = PENDING_INIT;
	uint8_t *body = calloc(1, h.len);
	pthread_t t;
	int64_t took;
	int rc;

	ck_assert_ptr_nonnull(body);
	h.body = body;
	make_mailbox(c);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, held_writer, &h), 0);
	sleep_ms(300);		/* its write fills the socket and waits */
	mconn_fail_all(c);	/* completed mid-write: the callback waits */
	pthread_mutex_lock(&h.lk);
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	sleep_ms(500);		/* the write ends; the writer calls back */
	took = now_ms();
	rc = ping_async(c, 7, 0, &p);
	took = now_ms() - took;
	pthread_mutex_unlock(&h.lk);
	pthread_join(t, NULL);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(took < 1000, "sending a PING took %lld ms, want < 1000 "
	    "(the timeout is 5000)", (long long)took);
	ck_assert_int_eq(pending_wait(&p, WAIT_MS), 0);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_int_eq(h.called, 1);
	ck_assert_int_eq(h.status, -EIO);
	mconn_free(c);
	free(body);		/* only now: the callbacks have run */
}
END_TEST

/*
 * The connection thread writes what callbacks submit. While such a write
 * waits for room in the socket it reads replies (so that neither side
 * blocks the other), and it holds send_mu all the while. A reply read
 * then must not have its callback run there: the callback may wait for a
 * lock of the mount's, whose holder may be sending (the mount sends a
 * CLOSE under its lock), and that sender waits for send_mu until its
 * deadline, with every reply unread meanwhile.
 */
struct flusher {
	pthread_mutex_t lk;	/* the caller's lock, as the mount's */
	pthread_mutex_t mu;	/* guards the fields below */
	struct mconn *c;
	const uint8_t *body;
	size_t len;
	int put_rc;		/* mconn_call_async of the PUT */
	int put_sent;
	int entered;		/* the PING's callback began */
	int status;		/* the PING's */
	struct pending put;
};

/* The PING's callback takes the caller's lock. */
static void
flusher_ping_done(void *arg, struct mreply *r)
{
	struct flusher *f = arg;

	pthread_mutex_lock(&f->mu);
	f->entered = 1;
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_lock(&f->lk);
	pthread_mutex_lock(&f->mu);
	f->status = r->status;
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_unlock(&f->lk);
	mreply_free(r);
}

/* On the timer thread (an expired request's callback): a PUT that the
 * connection thread will write, too large for the socket to take. */
static void
flusher_submit_put(void *arg, struct mreply *r)
{
	struct flusher *f = arg;
	struct mst_put_req q = {
		.path = mst_str_of("flushed"),
		.mode = 0644,
		.checksum = mst_checksum(f->body, f->len),
		.body_size = f->len,
		.body = { (const uint8_t *)"", 0 },
	};
	uint8_t buf[512];
	int n = mst_put_req_encode(&q, buf, sizeof buf), rc;

	mreply_free(r);
	rc = n < 0 ? n : mconn_call_async(f->c, MST_OP_PUT, buf, (size_t)n,
	    f->body, f->len, 0, pending_cb, &f->put);
	pthread_mutex_lock(&f->mu);
	f->put_rc = rc;
	f->put_sent = 1;
	pthread_mutex_unlock(&f->mu);
}

static int
flusher_get(struct flusher *f, const int *v)
{
	int x;

	pthread_mutex_lock(&f->mu);
	x = *v;
	pthread_mutex_unlock(&f->mu);
	return x;
}

static int
flusher_wait(struct flusher *f, const int *v, int ms)
{
	int64_t deadline = now_ms() + ms;

	while (!flusher_get(f, v) && now_ms() < deadline)
		sleep_ms(10);
	return flusher_get(f, v);
}

START_TEST(reply_read_during_a_queued_write_is_called_back_after_it)
{
	struct mconn *c = open_conn(srv.addr, 3000);
	struct flusher f = { .lk = PTHREAD_MUTEX_INITIALIZER,
		.mu = PTHREAD_MUTEX_INITIALIZER, .c = c, .len = BIG_BODY,
		.put = PENDING_INIT };
	struct pending p = PENDING_INIT;
	uint8_t *body = calloc(1, BIG_BODY);
	struct mst_ping q = { .cookie = 1 };
	uint8_t buf[8];
	int64_t took;
	int n, rc;

	ck_assert_ptr_nonnull(body);
	f.body = body;
	ck_assert_int_eq(ping(c, 1), 0);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	/* Expires at 3 s; its callback, on the timer thread, submits the
	 * PUT, which the connection thread then writes until the socket
	 * is full. */
	n = mst_ping_encode(&q, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mconn_call_async(c, MST_OP_PING, buf, (size_t)n,
	    NULL, 0, 0, flusher_submit_put, &f), 0);
	sleep_ms(2500);
	/* Written before the PUT, answered while the PUT is written. */
	ck_assert_int_eq(mconn_call_async(c, MST_OP_PING, buf, (size_t)n,
	    NULL, 0, 0, flusher_ping_done, &f), 0);
	ck_assert_msg(flusher_wait(&f, &f.put_sent, WAIT_MS), "no PUT");
	ck_assert_int_eq(f.put_rc, 0);
	sleep_ms(200);		/* the connection thread's write waits */
	pthread_mutex_lock(&f.lk);
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	ck_assert_msg(flusher_wait(&f, &f.entered, WAIT_MS),
	    "the PING was not called back");
	took = now_ms();
	rc = ping_async(c, 2, 0, &p);
	took = now_ms() - took;
	pthread_mutex_unlock(&f.lk);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(took < 1000, "sending a PING took %lld ms, want < 1000 "
	    "(the timeout is 3000)", (long long)took);
	ck_assert_int_eq(pending_wait(&p, WAIT_MS), 0);
	ck_assert_int_eq(pending_wait(&f.put, WAIT_MS), 0);
	ck_assert_int_eq(flusher_get(&f, &f.status), 0);
	mconn_free(c);
	free(body);
}
END_TEST

/* ---- the log ---- */

/* stderr, where mconn logs, goes to |path| until log_end. */
static int
log_begin(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), saved;

	ck_assert_int_ge(fd, 0);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
	return saved;
}

static void
log_end(int saved)
{
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
}

/* How many lines of |path| contain every string of |want| (NULL-ended). */
static int
log_lines(const char *path, const char *const *want)
{
	char line[1024];
	int n = 0, i, all;
	FILE *f = fopen(path, "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f) != NULL) {
		for (i = 0, all = 1; want[i] != NULL && all; i++)
			all = strstr(line, want[i]) != NULL;
		n += all;
	}
	fclose(f);
	return n;
}

/* An EIO that a program sees through the mount must be explainable from
 * the mount's log alone: each way mconn ends a request with EIO says so,
 * with the operation, and a reply that comes late is logged before it
 * reaches the deadline. */
START_TEST(every_eio_and_late_reply_is_logged_with_its_operation)
{
	static const char *const expired[] = { "1 request(s)",
		"got no answer within 500 ms", "the first a PING, sent",
		": EIO", NULL };
	static const char *const late[] = { "answered a PING after",
		"the timeout is 2000 ms", NULL };
	static const char *const lost[] = { "1 request(s) written",
		"failed with the connection", "the first a PING", ": EIO",
		NULL };
	static const char *const judged[] = { "2 request(s)",
		"failed when it was judged down", "the first a PING", NULL };
	struct pending p = PENDING_INIT, q = PENDING_INIT, r = PENDING_INIT;
	char path[160];
	struct mconn *c;
	int saved;

	snprintf(path, sizeof path, "%s/mconn.log", srv.dir);
	saved = log_begin(path);

	/* A deadline. */
	c = open_conn(srv.addr, 500);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(ping(c, 1), -EIO);
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	mconn_free(c);

	/* A late reply: after half the timeout, before all of it. */
	c = open_conn(srv.addr, 2000);
	ck_assert_int_eq(ping(c, 2), 0);
	ck_assert_int_eq(log_lines(path, late), 0);
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(ping_async(c, 3, 0, &p), 0);
	sleep_ms(1300);
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	ck_assert_int_eq(pending_wait(&p, WAIT_MS), 0);

	/* The server judged down (route.c's health check). */
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(ping_async(c, 4, 0, &q), 0);
	ck_assert_int_eq(ping_async(c, 5, 1, &r), 0);
	sleep_ms(200);
	mconn_fail_all(c);
	ck_assert_int_eq(pending_wait(&q, WAIT_MS), -EIO);
	ck_assert_int_eq(pending_wait(&r, WAIT_MS), -EIO);
	ck_assert_int_eq(kill(srv.pid, SIGCONT), 0);
	mconn_free(c);

	/* A lost connection, with a written request that may not be sent
	 * again. */
	c = open_conn(srv.addr, WAIT_MS);
	p = (struct pending)PENDING_INIT;
	ck_assert_int_eq(kill(srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(ping_async(c, 6, 0, &p), 0);
	sleep_ms(200);
	server_kill();
	ck_assert_int_eq(pending_wait(&p, WAIT_MS), -EIO);
	mconn_free(c);

	log_end(saved);
	ck_assert_int_eq(log_lines(path, expired), 1);
	ck_assert_int_eq(log_lines(path, late), 1);
	ck_assert_int_eq(log_lines(path, judged), 1);
	ck_assert_int_eq(log_lines(path, lost), 1);
}
END_TEST
/* mconn_rx_settle returns once what the server had sent is dispatched:
 * a notice being applied (its handler made slow here) is done by then,
 * though the connection was not quiet when the wait began. */
START_TEST(settle_waits_for_a_notice_being_applied)
{
	struct mconn *c = open_conn(srv.addr, WAIT_MS);
	struct mst_client_opts oo = { .tls = 0 };
	struct mst_client *other;
	struct mst_put_req q = {
		.path = mst_str_of("s/hello"),
		.mode = 0644,
		.checksum = mst_checksum("hi", 2),
		.body_size = 2,
		.body = { (const uint8_t *)"", 0 },
	};
	struct mst_hdr h;
	struct mreply r;
	const uint8_t *rp;
	uint8_t buf[256];
	int n, i, notices;

	ck_assert_int_eq(mkdir_at(c, "s", NULL), 0);
	ck_assert_int_eq(call_path(c, MST_OP_WATCH, "s", &r), 0);
	mreply_free(&r);
	ck_assert_int_eq(mconn_rx_settle(c, WAIT_MS), 1);	/* quiet */
	pthread_mutex_lock(&ev.mu);
	ev.slow_ms = 300;
	pthread_mutex_unlock(&ev.mu);
	ck_assert_int_eq(mst_client_connect(srv.addr, &oo, &other), 0);
	n = mst_put_req_encode(&q, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call_body(other, MST_OP_PUT, buf,
	    (size_t)n, "hi", 2, &h, &rp), 0);
	mst_client_free(other);
	for (i = 0; i < WAIT_MS && mconn_rx_quiet(c); i++)
		usleep(1000);		/* until the notice is on its way */
	ck_assert_msg(!mconn_rx_quiet(c), "no notice came");
	ck_assert_int_eq(mconn_rx_settle(c, WAIT_MS), 1);
	pthread_mutex_lock(&ev.mu);
	notices = ev.notices;
	pthread_mutex_unlock(&ev.mu);
	ck_assert_int_eq(notices, 1);
	mconn_free(c);
}
END_TEST

static Suite *
mconn_suite(void)
{
	Suite *s = suite_create("mconn");
	TCase *tc;

	tc = tcase_create("offline");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unreachable_store_fails_with_eio_by_the_deadline);
	tcase_add_test(tc, bad_arguments_are_rejected);
	suite_add_tcase(s, tc);

	tc = tcase_create("server");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup_base, teardown_base);
	tcase_add_checked_fixture(tc, setup_server, teardown_server);
	tcase_add_test(tc, concurrent_threads_get_their_own_replies);
	tcase_add_test(tc, multi_frame_readdir_is_gathered);
	tcase_add_test(tc, body_larger_than_a_frame_round_trips);
	tcase_add_test(tc, watch_delivers_a_notice_for_another_clients_change);
	tcase_add_test(tc, settle_waits_for_a_notice_being_applied);
	suite_add_tcase(s, tc);

	tc = tcase_create("tls");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup_base, teardown_base);
	tcase_add_checked_fixture(tc, setup_tls_server, teardown_server);
	tcase_add_test(tc, concurrent_threads_get_their_own_replies);
	tcase_add_test(tc, multi_frame_readdir_is_gathered);
	tcase_add_test(tc, body_larger_than_a_frame_round_trips);
	tcase_add_test(tc, watch_delivers_a_notice_for_another_clients_change);
	tcase_add_test(tc, stopped_server_times_out_then_recovers);
	tcase_add_test(tc,
	    restarted_server_reconnects_and_a_queued_retry_succeeds_once);
	tcase_add_test(tc,
	    request_in_flight_at_a_crash_is_resent_once_if_retryable);
	suite_add_tcase(s, tc);

	tc = tcase_create("faults");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup_base, teardown_base);
	tcase_add_checked_fixture(tc, setup_server, teardown_server);
	tcase_add_test(tc, stopped_server_times_out_then_recovers);
	tcase_add_test(tc, free_fails_pending_requests_without_hanging);
	tcase_add_test(tc,
	    restarted_server_reconnects_and_a_queued_retry_succeeds_once);
	tcase_add_test(tc,
	    request_in_flight_at_a_crash_is_resent_once_if_retryable);
	tcase_add_test(tc,
	    borrowed_body_is_sent_intact_and_resent_after_a_crash);
	tcase_add_test(tc,
	    held_callback_runs_after_its_writer_lets_go_of_the_socket);
	tcase_add_test(tc,
	    reply_read_during_a_queued_write_is_called_back_after_it);
	tcase_add_test(tc,
	    every_eio_and_late_reply_is_logged_with_its_operation);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(mconn_suite());
	int failed;

	/* Writes to a server that died must not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
