/*
 * check_server.c - Check suite for mstored's network layer, CLI and
 * config. Runs the real binary ($MSTORED, --foreground) on a Unix socket
 * and a loopback port in a private mkdtemp directory and speaks the
 * protocol to it: libmstclient for well-formed traffic, raw sockets for
 * garbage. The "server" and "auth" test cases share one server each,
 * started and always killed (by PID, then the directory removed) by an
 * unchecked fixture, which runs in the runner and so survives a failing
 * test. Servers a test starts itself die with it (PR_SET_PDEATHSIG).
 *
 * The "locks" test case takes store-granted locks from several
 * connections (conflicts, waiting, grants on unlock and on a holder's
 * end, cancel, EDEADLK); "files" reads and writes ordinary files by
 * object id across connections, open across unlink, and the server's
 * close of what an ended connection left open. Each has a server of
 * its own.
 *
 * The "conf" test case drives conf.c directly.
 *
 * MSTORED_WRAPPER="valgrind -q --error-exitcode=99" runs every mstored
 * under that command.
 */
#include <config.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "mstclient.h"
#include "mstproto.h"
#include "testutil.h"

#define TEST_MAX_FRAME	(256u << 10)	/* the test servers' max_frame */
#define TEST_MAX_MSG	(2u << 20)	/* and max_message_size */
#define START_MS	30000		/* valgrind starts slowly */
#define REPLY_MS	10000
#define TEST_KEY	"correct horse battery staple"

enum {
	SRV_KEY = 1,		/* key_file: AUTH required */
	SRV_STALE_SOCKET = 2,	/* leave a dead socket file where it binds */
};

struct server {
	pid_t pid;
	char dir[64];
	char data[96];
	char conf[96];
	char key[96];
	char sock[96];
	char unix_addr[112];
	char tcp_addr[32];
};

/* The test case's server, from the unchecked fixture. */
static struct server srv = { .pid = -1 };

/* ---- processes and files ---- */

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "check_server: writing %s: %s\n", path,
		    strerror(errno));
		exit(EXIT_FAILURE);
	}
}

/*
 * Start mstored with |args| (NULL-terminated), stdout and stderr to
 * |out_fd| (or inherited when -1), dying with the calling process.
 */
static pid_t
spawn(const char *const *args, int out_fd)
{
	const char *argv[64], *wrap = getenv("MSTORED_WRAPPER");
	char *words = wrap && *wrap ? strdup(wrap) : NULL, *w, *save;
	pid_t parent = getpid(), pid;
	int n = 0;

	for (w = words ? strtok_r(words, " ", &save) : NULL; w && n < 32;
	    w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n++] = mstored_path();
	while (*args && n < 63)
		argv[n++] = *args++;
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
		    getppid() != parent)
			_exit(127);
		if (out_fd >= 0) {
			dup2(out_fd, STDOUT_FILENO);
			dup2(out_fd, STDERR_FILENO);
		}
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "check_server: exec %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	free(words);
	return pid;
}

/* Wait for |pid| at most |ms|; returns its wait status or -1. */
static int
wait_exit(pid_t pid, int ms)
{
	int deadline = now_ms() + ms, st;

	do {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		usleep(10000);
	} while (now_ms() < deadline);
	return -1;
}

/*
 * Run mstored with |args| to completion, collecting its output in |out|.
 * Returns the exit status, or -1 when it did not exit in time (killed).
 */
static int
run_mstored(const char *const *args, char *out, size_t cap)
{
	int p[2], st, deadline = now_ms() + START_MS;
	struct pollfd pf;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = spawn(args, p[1]);
	close(p[1]);
	pf.fd = p[0];
	pf.events = POLLIN;
	for (;;) {
		if (poll(&pf, 1, 100) > 0) {
			r = read(p[0], out + n, cap - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
			if (n == cap - 1)
				break;
		}
		if (now_ms() > deadline)
			break;
	}
	out[n] = '\0';
	close(p[0]);
	st = wait_exit(pid, deadline - now_ms() > 0 ? deadline - now_ms() : 1);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int
free_port(void)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t len = sizeof in;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof in) < 0 ||
	    getsockname(fd, (struct sockaddr *)&in, &len) < 0)
		port = -1;
	else
		port = ntohs(in.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* A socket file nobody listens on, as a crashed server leaves behind. */
static void
make_stale_socket(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) < 0) {
		fprintf(stderr, "check_server: stale socket %s: %s\n", path,
		    strerror(errno));
		exit(EXIT_FAILURE);
	}
	close(fd);
}

/* Make the directory and files of a server without starting it. */
static void
server_prepare(struct server *s, int flags, const char *extra_conf)
{
	char text[1024];

	*s = (struct server){ .pid = -1 };
	snprintf(s->dir, sizeof s->dir, "/tmp/mst-check.XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		fprintf(stderr, "check_server: mkdtemp: %s\n", strerror(errno));
		exit(EXIT_FAILURE);
	}
	snprintf(s->data, sizeof s->data, "%s/data", s->dir);
	snprintf(s->conf, sizeof s->conf, "%s/mstored.conf", s->dir);
	snprintf(s->key, sizeof s->key, "%s/key", s->dir);
	snprintf(s->sock, sizeof s->sock, "%s/sock", s->dir);
	snprintf(s->unix_addr, sizeof s->unix_addr, "unix:%s", s->sock);
	mkdir(s->data, 0700);
	write_file(s->key, TEST_KEY "\n");
	chmod(s->key, 0600);	/* mst_key_load refuses a shared key */
	snprintf(text, sizeof text,
	    "# check_server\n"
	    "max_message_size = 2M\n"
	    "max_frame = 256K   # frames above this close the connection\n"
	    "log_level = debug\n"
	    "%s%s%s\n%s",
	    flags & SRV_KEY ? "key_file = " : "",
	    flags & SRV_KEY ? s->key : "", flags & SRV_KEY ? "\n" : "",
	    extra_conf ? extra_conf : "");
	write_file(s->conf, text);
	if (flags & SRV_STALE_SOCKET)
		make_stale_socket(s->sock);
}

/*
 * Start a server and wait until both its sockets accept. Retries with
 * another port if the free one was taken meanwhile. Returns 0 or -1.
 */
static int
server_start(struct server *s, int flags, const char *extra_conf)
{
	const char *args[] = { "--foreground", "--data", s->data,
		"--listen", s->unix_addr, "--listen", s->tcp_addr,
		"--config", s->conf, NULL };
	int attempt, deadline;

	server_prepare(s, flags, extra_conf);
	for (attempt = 0; attempt < 3; attempt++) {
		snprintf(s->tcp_addr, sizeof s->tcp_addr, "127.0.0.1:%d",
		    free_port());
		s->pid = spawn(args, -1);
		deadline = now_ms() + START_MS;
		while (now_ms() < deadline) {
			if (can_connect(s->unix_addr) &&
			    can_connect(s->tcp_addr))
				return 0;
			if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
				break;
			usleep(20000);
		}
		if (now_ms() >= deadline)
			break;
		s->pid = -1;	/* exited: port race? try another */
	}
	fprintf(stderr, "check_server: mstored did not start\n");
	return -1;
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = -1;
	rm_rf(s->dir);
}

static void
plain_setup(void)
{
	server_start(&srv, 0, NULL);
}

static void
auth_setup(void)
{
	server_start(&srv, SRV_KEY, NULL);
}

/* SIGTERM first, so that a server which served a whole test case also
 * shows a clean shutdown (and, under a wrapper, its leak check); SIGKILL
 * if it does not stop in time. */
static void
shared_teardown(void)
{
	int st = srv.pid > 0 && kill(srv.pid, SIGTERM) == 0 ?
	    wait_exit(srv.pid, START_MS) : -1;

	if (st != -1) {
		srv.pid = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fprintf(stderr, "check_server: FAILURE: mstored "
			    "stopped with wait status %#x\n", st);
	}
	server_stop(&srv);
}

/* ---- protocol helpers ---- */

static struct mst_client *
client_at(const char *addr, const char *key, uint32_t max_frame)
{
	struct mst_client_opts o = {
		.name = "check_server",
		.key = (const uint8_t *)key,
		.keylen = key ? strlen(key) : 0,
		.timeout_ms = REPLY_MS,
		.max_frame = max_frame,
	};
	struct mst_client *c = NULL;
	int rc;

	ck_assert_msg(srv.pid > 0, "mstored did not start; see the log");
	rc = mst_client_connect(addr, &o, &c);
	ck_assert_msg(rc == 0, "connect %s: got %s, want success", addr,
	    strerror(-rc));
	return c;
}

static struct mst_client *
client(void)
{
	return client_at(srv.tcp_addr, NULL, 0);
}

static void
ping_ok(struct mst_client *c, uint64_t cookie)
{
	struct mst_ping p = { .cookie = cookie }, r;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[8];
	int n = mst_ping_encode(&p, b, sizeof b);

	ck_assert_int_eq(mst_client_call(c, MST_OP_PING, b, (size_t)n, &h,
	    &rp), 0);
	ck_assert_uint_eq(h.op, MST_OP_PING);
	ck_assert_uint_eq(h.flags, MST_F_REPLY);
	ck_assert_int_eq(mst_ping_decode(&r, rp, h.len), 0);
	ck_assert_uint_eq(r.cookie, cookie);
}

static void
put_hdr(uint8_t *b, uint16_t magic, uint8_t version, uint8_t op,
    uint16_t flags, uint32_t id, uint32_t len)
{
	b[0] = (uint8_t)(magic >> 8);
	b[1] = (uint8_t)magic;
	b[2] = version;
	b[3] = op;
	b[4] = (uint8_t)(flags >> 8);
	b[5] = (uint8_t)flags;
	b[6] = b[7] = 0;
	b[8] = (uint8_t)(id >> 24);
	b[9] = (uint8_t)(id >> 16);
	b[10] = (uint8_t)(id >> 8);
	b[11] = (uint8_t)id;
	b[12] = (uint8_t)(len >> 24);
	b[13] = (uint8_t)(len >> 16);
	b[14] = (uint8_t)(len >> 8);
	b[15] = (uint8_t)len;
}

static int
raw_connect(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	ck_assert_int_eq(mst_addr_parse(addr, &ss, &sl), 0);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, sl), 0);
	return fd;
}

static void
raw_write(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	ssize_t w;

	while (n > 0) {
		w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		ck_assert_msg(w > 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

static void
raw_send(int fd, unsigned op, unsigned flags, uint32_t id, const void *p,
    size_t len)
{
	uint8_t hb[MST_HDR_LEN];

	put_hdr(hb, MST_MAGIC, MST_VERSION, (uint8_t)op, (uint16_t)flags, id,
	    (uint32_t)len);
	raw_write(fd, hb, sizeof hb);
	if (len)
		raw_write(fd, p, len);
}

/* 0, -ECONNRESET when the server closed, or -ETIMEDOUT. */
static int
raw_read(int fd, void *p, size_t n, int ms)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	int deadline = now_ms() + ms;
	uint8_t *b = p;
	ssize_t r;

	while (n > 0) {
		if (poll(&pf, 1, deadline - now_ms() > 0 ?
		    deadline - now_ms() : 0) <= 0)
			return -ETIMEDOUT;
		r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ECONNRESET;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
raw_recv(int fd, struct mst_hdr *h, uint8_t *buf, size_t cap)
{
	uint8_t hb[MST_HDR_LEN];
	int rc = raw_read(fd, hb, sizeof hb, REPLY_MS);

	if (rc < 0)
		return rc;
	rc = mst_hdr_decode(h, hb, sizeof hb, MST_FRAME_LIMIT);
	/* An unknown opcode is echoed in its error reply. */
	ck_assert_msg(rc == MST_HDR_LEN || rc == -EOPNOTSUPP,
	    "reply header: %s", strerror(-rc));
	ck_assert_uint_le(h->len, cap);
	return raw_read(fd, buf, h->len, REPLY_MS);
}

/* Did the server close |fd|? Discards whatever it still sends. */
static int
peer_closed(int fd)
{
	uint8_t junk[4096];
	int deadline = now_ms() + REPLY_MS;
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	ssize_t r;

	while (now_ms() < deadline) {
		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = recv(fd, junk, sizeof junk, 0);
		if (r <= 0)
			return 1;
	}
	return 0;
}

static void
raw_hello(int fd, uint32_t max_frame, struct mst_hello_rep *rep,
    uint8_t cnonce[MST_NONCE_LEN])
{
	struct mst_hello_req q = {
		.min_version = MST_VERSION,
		.max_version = MST_VERSION,
		.max_frame = max_frame,
		.client = mst_str_of("check_server raw"),
	};
	static uint8_t rb[512];
	uint8_t b[256];
	struct mst_hdr h;
	int n;

	memset(q.nonce, 0x5a, sizeof q.nonce);
	memcpy(cnonce, q.nonce, MST_NONCE_LEN);
	n = mst_hello_req_encode(&q, b, sizeof b);
	ck_assert_int_gt(n, 0);
	raw_send(fd, MST_OP_HELLO, 0, 1, b, (size_t)n);
	ck_assert_int_eq(raw_recv(fd, &h, rb, sizeof rb), 0);
	ck_assert_uint_eq(h.status, 0);
	ck_assert_int_eq(mst_hello_rep_decode(rep, rb, h.len), 0);
}

static uint8_t *
make_body(size_t n, unsigned seed)
{
	uint8_t *b = malloc(n ? n : 1);
	size_t i;

	ck_assert_ptr_nonnull(b);
	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 9));
	return b;
}

static int
deliver_head(uint8_t *buf, size_t cap, const char *mailbox, const char *name,
    uint64_t size, uint64_t checksum)
{
	static unsigned serial;
	struct mst_deliver_req d = {
		.mailbox = mst_str_of(mailbox),
		.folder = mst_str_of(""),
		.sub = MST_SUB_NEW,
		.name = mst_str_of(name),
		.checksum = checksum,
		.body_size = size,
		.mode = 0600,
	};
	int n;

	snprintf((char *)d.idem, sizeof d.idem, "%u.%d.%s", ++serial,
	    (int)getpid(), name);
	n = mst_deliver_req_encode(&d, buf, cap);
	ck_assert_int_gt(n, 0);
	return n;
}

/* DELIVER |body| with |checksum|; returns the status as -errno. */
static int
deliver(struct mst_client *c, const char *mailbox, const char *name,
    const uint8_t *body, size_t n, uint64_t checksum, struct mst_hdr *h,
    const uint8_t **rp)
{
	uint8_t head[1024];
	int hl = deliver_head(head, sizeof head, mailbox, name, n, checksum);

	return mst_client_call_body(c, MST_OP_DELIVER, head, (size_t)hl, body,
	    n, h, rp);
}

static int
call_path(struct mst_client *c, unsigned op, const char *path,
    struct mst_hdr *h, const uint8_t **rp)
{
	struct mst_path_req q = { .path = mst_str_of(path) };
	uint8_t b[MST_PATH_MAX + 8];
	int n = mst_path_req_encode(&q, b, sizeof b);

	ck_assert_int_gt(n, 0);
	return mst_client_call(c, op, b, (size_t)n, h, rp);
}

/*
 * Engine-dependent expectations. This layer itself decides EBADMSG,
 * EFBIG, EPROTO and EAGAIN for bodies; every other answer is the
 * engine's. The placeholder engine answers each job with EOPNOTSUPP; the
 * real one needs its directories made first. Tests call make_mailbox()
 * and check the engine's answer only when it is the real engine:
 * engine_is_placeholder() is the one switch to delete once it is.
 */
static int
engine_is_placeholder(int rc)
{
	return rc == -EOPNOTSUPP;
}

/* MKDIR |mbox| (each component) and its new/, cur/, tmp/. Returns 0 or
 * the first error other than EEXIST. */
static int
make_mailbox(struct mst_client *c, const char *mbox)
{
	static const char *const subs[] = { "", "/new", "/cur", "/tmp" };
	char path[256];
	const uint8_t *rp;
	struct mst_mkdir_req q = { .mode = 0700 };
	struct mst_hdr h;
	uint8_t b[512];
	size_t i, k;
	int n, rc;

	for (i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		snprintf(path, sizeof path, "%s%s", mbox, subs[i]);
		for (k = 1; k <= strlen(path); k++) {
			if (path[k] != '/' && path[k] != '\0')
				continue;
			q.path.p = path;
			q.path.len = (uint16_t)k;
			n = mst_mkdir_req_encode(&q, b, sizeof b);
			rc = mst_client_call(c, MST_OP_MKDIR, b, (size_t)n, &h,
			    &rp);
			if (rc < 0 && rc != -EEXIST)
				return rc;
		}
	}
	return 0;
}

/* ---- handshake ---- */

START_TEST(hello_and_ping_over_tcp_and_unix)
{
	struct mst_client *t = client_at(srv.tcp_addr, NULL, 0);
	struct mst_client *u = client_at(srv.unix_addr, NULL, 0);
	const struct mst_hello_rep *ht = mst_client_hello(t);
	const struct mst_hello_rep *hu = mst_client_hello(u);

	ck_assert_uint_eq(ht->version, MST_VERSION);
	/* The local back-end keeps staged bodies. */
	ck_assert_uint_eq(ht->features,
	    MST_FEAT_WATCH | MST_FEAT_STAGE | MST_FEAT_SPOOL |
	    MST_FEAT_SOLE);
	ck_assert_uint_eq(ht->max_frame, TEST_MAX_FRAME);
	ck_assert_uint_eq(ht->max_body, TEST_MAX_MSG);
	ck_assert_msg(ht->server.len > 8 &&
	    memcmp(ht->server.p, "mstored ", 8) == 0,
	    "server name %.*s, want mstored VERSION", (int)ht->server.len,
	    ht->server.p);
	ck_assert_uint_eq(hu->server_id, ht->server_id);
	ck_assert_msg(memcmp(hu->nonce, ht->nonce, MST_NONCE_LEN) != 0,
	    "two connections got the same nonce");
	ping_ok(t, 0x0123456789abcdefull);
	ping_ok(u, 42);
	mst_client_free(t);
	mst_client_free(u);
}
END_TEST

START_TEST(hello_max_frame_is_the_smaller_one)
{
	struct mst_client *c = client_at(srv.unix_addr, NULL, MST_FRAME_MIN);

	ck_assert_uint_eq(mst_client_hello(c)->max_frame, MST_FRAME_MIN);
	ping_ok(c, 1);
	mst_client_free(c);
}
END_TEST

START_TEST(request_before_hello_is_refused)
{
	int fd = raw_connect(srv.tcp_addr);
	uint8_t cookie[8] = { 0 }, rb[2048];
	struct mst_hdr h;

	raw_send(fd, MST_OP_PING, 0, 7, cookie, sizeof cookie);
	ck_assert_int_eq(raw_recv(fd, &h, rb, sizeof rb), 0);
	ck_assert_uint_eq(h.op, MST_OP_PING);
	ck_assert_uint_eq(h.flags, MST_F_REPLY);
	ck_assert_uint_eq(h.id, 7);
	ck_assert_uint_eq(h.status, MST_S_EPROTO);
	ck_assert_msg(peer_closed(fd), "connection left open");
	close(fd);
}
END_TEST

START_TEST(second_hello_is_an_error_not_a_close)
{
	struct mst_client *c = client();
	struct mst_hello_req q = {
		.min_version = 1, .max_version = 1,
		.max_frame = MST_FRAME_DEFAULT,
	};
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[128];
	int n = mst_hello_req_encode(&q, b, sizeof b);

	ck_assert_int_eq(mst_client_call(c, MST_OP_HELLO, b, (size_t)n, &h,
	    &rp), -EPROTO);
	ping_ok(c, 2);
	mst_client_free(c);
}
END_TEST

/* ---- framing ---- */

enum garbage {
	G_HTTP,			/* not a frame at all */
	G_VERSION,		/* unknown protocol version */
	G_FLAGS,		/* reserved flag bits */
	G_OVER_SERVER_MAX,	/* length over the server's max_frame */
	G_OVER_NEGOTIATED,	/* within the server's, over the HELLO's */
	G_REPLY_FLAG,		/* a client sending a reply */
	G_STRAY_DATA,		/* DATA for no body in progress */
	G_COUNT,
};

START_TEST(garbage_closes_only_that_connection)
{
	struct mst_client *bystander = client();
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct mst_hello_rep rep;
	uint8_t hb[MST_HDR_LEN], nonce[MST_NONCE_LEN];
	int g = _i, fd = raw_connect(srv.unix_addr);

	if (g == G_OVER_NEGOTIATED || g == G_REPLY_FLAG || g == G_STRAY_DATA)
		raw_hello(fd, MST_FRAME_MIN, &rep, nonce);
	switch (g) {
	case G_HTTP:
		raw_write(fd, http, sizeof http - 1);
		break;
	case G_VERSION:
		put_hdr(hb, MST_MAGIC, 9, MST_OP_HELLO, 0, 1, 0);
		raw_write(fd, hb, sizeof hb);
		break;
	case G_FLAGS:
		put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_HELLO, 0x80, 1, 0);
		raw_write(fd, hb, sizeof hb);
		break;
	case G_OVER_SERVER_MAX:
		put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_HELLO, 0, 1,
		    TEST_MAX_FRAME + 1);
		raw_write(fd, hb, sizeof hb);
		break;
	case G_OVER_NEGOTIATED:
		put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_PING, 0, 2,
		    MST_FRAME_MIN + 1);
		raw_write(fd, hb, sizeof hb);
		break;
	case G_REPLY_FLAG:
		put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_PING, MST_F_REPLY,
		    2, 0);
		raw_write(fd, hb, sizeof hb);
		break;
	case G_STRAY_DATA:
		raw_send(fd, MST_OP_DATA, 0, 99, "xyz", 3);
		break;
	}
	ck_assert_msg(peer_closed(fd), "garbage case %d: connection left "
	    "open", g);
	close(fd);
	ping_ok(bystander, (uint64_t)g);
	mst_client_free(bystander);
}
END_TEST

START_TEST(unknown_opcode_is_an_error_not_a_close)
{
	struct mst_hello_rep rep;
	uint8_t nonce[MST_NONCE_LEN], rb[2048], cookie[8] = { 0, 0, 0, 0, 0,
		0, 0, 9 };
	int fd = raw_connect(srv.tcp_addr);
	struct mst_hdr h;

	raw_hello(fd, MST_FRAME_DEFAULT, &rep, nonce);
	raw_send(fd, 0x7e, 0, 5, "abc", 3);
	ck_assert_int_eq(raw_recv(fd, &h, rb, sizeof rb), 0);
	ck_assert_uint_eq(h.id, 5);
	ck_assert_uint_eq(h.status, MST_S_EOPNOTSUPP);
	raw_send(fd, MST_OP_PING, 0, 6, cookie, sizeof cookie);
	ck_assert_int_eq(raw_recv(fd, &h, rb, sizeof rb), 0);
	ck_assert_uint_eq(h.id, 6);
	ck_assert_uint_eq(h.status, 0);
	ck_assert_int_eq(memcmp(rb, cookie, 8), 0);
	close(fd);
}
END_TEST

START_TEST(malformed_payload_is_an_error_not_a_close)
{
	static const struct {
		unsigned op;
		uint8_t bytes[8];
		size_t len;
		unsigned status;
	} cases[] = {
		/* LOOKUP "..": a path component that is not allowed */
		{ MST_OP_LOOKUP, { 0, 2, '.', '.' }, 4, MST_S_EINVAL },
		/* LOOKUP whose string runs past the payload */
		{ MST_OP_LOOKUP, { 0, 9, 'a' }, 3, MST_S_EBADMSG },
		/* PING with trailing bytes */
		{ MST_OP_PING, { 0 }, 5, MST_S_EBADMSG },
		/* UNWATCH with trailing bytes */
		{ MST_OP_UNWATCH, { 0, 1, 'a', 'b' }, 4, MST_S_EPROTO },
	};
	struct mst_client *c = client();
	struct mst_error_rep e;
	const uint8_t *rp;
	struct mst_hdr h;
	size_t i;
	int rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = mst_client_call(c, cases[i].op, cases[i].bytes,
		    cases[i].len, &h, &rp);
		ck_assert_msg(h.status == cases[i].status,
		    "case %zu: got status %u, want %u", i, h.status,
		    cases[i].status);
		ck_assert_int_lt(rc, 0);
		ck_assert_int_eq(mst_error_rep_decode(&e, rp, h.len), 0);
	}
	ping_ok(c, 3);
	mst_client_free(c);
}
END_TEST

START_TEST(pipelined_pings_are_answered_by_id)
{
	enum { N = 64, BASE = 1000 };
	struct mst_client *c = client();
	struct mst_ping p, r;
	const uint8_t *rp;
	struct mst_hdr h;
	int seen[N] = { 0 }, i;
	uint8_t b[8];

	for (i = 0; i < N; i++) {
		p.cookie = (uint64_t)i * 3 + 1;
		mst_ping_encode(&p, b, sizeof b);
		ck_assert_int_eq(mst_client_send(c, MST_OP_PING, 0,
		    BASE + (uint32_t)i, b, sizeof b), 0);
	}
	for (i = 0; i < N; i++) {
		ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
		ck_assert_uint_eq(h.flags, MST_F_REPLY);
		ck_assert_uint_ge(h.id, BASE);
		ck_assert_uint_lt(h.id, BASE + N);
		ck_assert_msg(!seen[h.id - BASE], "id %u answered twice",
		    h.id);
		seen[h.id - BASE] = 1;
		ck_assert_int_eq(mst_ping_decode(&r, rp, h.len), 0);
		ck_assert_uint_eq(r.cookie, (uint64_t)(h.id - BASE) * 3 + 1);
	}
	mst_client_free(c);
}
END_TEST

/* A non-blocking connection that sends a burst of frames and counts the
 * replies, each id once. */
struct pump {
	int fd;
	const uint8_t *out;
	size_t outlen, sent;
	uint8_t in[1 << 16];
	size_t inlen;
	uint32_t base;
	uint8_t *seen;		/* one per request id from |base| */
	size_t nreq, replies;
};

static void
pump_init(struct pump *p, const char *addr, uint8_t *frames, size_t n,
    unsigned op, const void *payload, size_t plen)
{
	struct mst_hello_rep rep;
	uint8_t nonce[MST_NONCE_LEN], *f;
	size_t i, fl = MST_HDR_LEN + plen;

	memset(p, 0, sizeof *p);
	p->fd = raw_connect(addr);
	raw_hello(p->fd, MST_FRAME_DEFAULT, &rep, nonce);
	ck_assert_int_eq(fcntl(p->fd, F_SETFL, O_NONBLOCK), 0);
	p->base = 1000;
	p->nreq = n;
	p->seen = calloc(n, 1);
	ck_assert_ptr_nonnull(p->seen);
	for (i = 0, f = frames; i < n; i++, f += fl) {
		put_hdr(f, MST_MAGIC, MST_VERSION, (uint8_t)op, 0,
		    p->base + (uint32_t)i, (uint32_t)plen);
		memcpy(f + MST_HDR_LEN, payload, plen);
	}
	p->out = frames;
	p->outlen = n * fl;
}

static void
pump_write(struct pump *p)
{
	ssize_t w = send(p->fd, p->out + p->sent, p->outlen - p->sent,
	    MSG_NOSIGNAL);

	if (w < 0 && errno != EAGAIN && errno != EINTR)
		ck_abort_msg("send: %s", strerror(errno));
	if (w > 0)
		p->sent += (size_t)w;
}

static void
pump_read(struct pump *p)
{
	ssize_t r = recv(p->fd, p->in + p->inlen, sizeof p->in - p->inlen, 0);
	struct mst_hdr h;
	size_t off = 0;

	if (r < 0 && errno != EAGAIN && errno != EINTR)
		ck_abort_msg("recv: %s", strerror(errno));
	if (r < 0)
		return;
	if (r == 0)
		ck_abort_msg("server closed after %zu replies", p->replies);
	p->inlen += (size_t)r;
	/* No ck_assert per frame: each one messages the runner, and there
	 * are a million frames. */
	while (p->inlen - off >= MST_HDR_LEN) {
		if (mst_hdr_decode(&h, p->in + off, MST_HDR_LEN,
		    MST_FRAME_LIMIT) != MST_HDR_LEN)
			ck_abort_msg("bad reply header");
		if (p->inlen - off < MST_HDR_LEN + h.len)
			break;
		if (h.flags != MST_F_REPLY || h.id < p->base ||
		    h.id - p->base >= p->nreq || p->seen[h.id - p->base])
			ck_abort_msg("unexpected reply: id %u flags %#x", h.id,
			    h.flags);
		p->seen[h.id - p->base] = 1;
		p->replies++;
		off += MST_HDR_LEN + h.len;
	}
	memmove(p->in, p->in + off, p->inlen - off);
	p->inlen -= off;
}

/* Write the rest and read until every request is answered. */
static void
pump_finish(struct pump *p)
{
	struct pollfd pf = { .fd = p->fd };
	int deadline = now_ms() + 4 * REPLY_MS;

	while (p->replies < p->nreq) {
		if (now_ms() > deadline)
			ck_abort_msg("%zu of %zu answered", p->replies,
			    p->nreq);
		pf.events = POLLIN | (p->sent < p->outlen ? POLLOUT : 0);
		if (poll(&pf, 1, 1000) <= 0)
			continue;
		if (pf.revents & POLLOUT)
			pump_write(p);
		if (pf.revents & (POLLIN | POLLHUP | POLLERR))
			pump_read(p);
	}
	close(p->fd);
	free(p->seen);
}

/*
 * A client that sends without reading its replies is paused (the server
 * stops reading once its replies pile up) rather than let the server's
 * memory grow, and is served in full once it reads again. (Memory use
 * itself is not measured: ASan's quarantine would dominate it.)
 */
START_TEST(client_that_does_not_read_is_paused_not_dropped)
{
	enum { N = 1000000 };	/* 24 MB of PINGs and as much in replies */
	size_t fl = MST_HDR_LEN + 8;
	uint8_t *frames = malloc(N * fl), cookie[8] = { 0 };
	struct pollfd pf;
	struct pump *p = malloc(sizeof *p);

	ck_assert_ptr_nonnull(frames);
	ck_assert_msg(srv.pid > 0, "mstored did not start");
	pump_init(p, srv.unix_addr, frames, N, MST_OP_PING, cookie, 8);
	pf.fd = p->fd;
	pf.events = POLLOUT;
	while (p->sent < p->outlen && poll(&pf, 1, 1000) > 0)
		pump_write(p);
	ck_assert_msg(p->sent < p->outlen, "server read everything while its "
	    "replies were not read");
	/* It read about 8 MiB (its limit on unsent replies) plus what the
	 * socket buffers hold, not everything. */
	ck_assert_msg(p->sent < (16u << 20), "server read %zu bytes while "
	    "its replies were not read", p->sent);
	pump_finish(p);
	free(p);
	free(frames);
}
END_TEST

/*
 * Replies an engine thread writes itself (server.c) meet a socket that
 * is full: what it cannot take waits for the loop, which sends it before
 * anything else. A client that sends every request before it reads gets
 * each reply whole, once (pump_read), over a Unix socket and over TCP.
 */
START_TEST(replies_into_a_full_socket_arrive_whole_and_once)
{
	enum { N = 20000 };
	uint8_t root[2] = { 0, 0 };	/* STATFS "", a reader thread's */
	size_t fl = MST_HDR_LEN + sizeof root;
	uint8_t *frames = malloc(N * fl);
	struct pump *p = malloc(sizeof *p);
	struct pollfd pf;

	ck_assert_ptr_nonnull(frames);
	ck_assert_msg(srv.pid > 0, "mstored did not start");
	pump_init(p, _i == 0 ? srv.unix_addr : srv.tcp_addr, frames, N,
	    MST_OP_STATFS, root, sizeof root);
	pf.fd = p->fd;
	pf.events = POLLOUT;
	while (p->sent < p->outlen && poll(&pf, 1, 500) > 0)
		pump_write(p);
	pump_finish(p);
	free(p);
	free(frames);
}
END_TEST

/* More requests in flight than a connection may have in the engine: the
 * excess waits (backpressure) and every one is answered. */
START_TEST(requests_beyond_the_job_limit_are_all_answered)
{
	enum { N = 5000 };
	uint8_t root[2] = { 0, 0 };	/* STATFS "" */
	size_t fl = MST_HDR_LEN + sizeof root;
	uint8_t *frames = malloc(N * fl);
	struct pump *p = malloc(sizeof *p);

	ck_assert_ptr_nonnull(frames);
	ck_assert_msg(srv.pid > 0, "mstored did not start");
	pump_init(p, srv.tcp_addr, frames, N, MST_OP_STATFS, root,
	    sizeof root);
	pump_finish(p);
	free(p);
	free(frames);
}
END_TEST

/* ---- bodies ---- */

START_TEST(deliver_with_bad_checksum_is_ebadmsg)
{
	static const size_t sizes[] = { 0, 1000, 600u << 10 };
	struct mst_client *c = client();
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t *body;
	size_t i;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		body = make_body(sizes[i], (unsigned)i);
		ck_assert_int_eq(deliver(c, "t.example/al", "bad", body,
		    sizes[i], mst_checksum(body, sizes[i]) ^ 1, &h, &rp),
		    -EBADMSG);
		free(body);
	}
	ping_ok(c, 4);
	mst_client_free(c);
}
END_TEST

START_TEST(deliver_over_max_message_size_is_efbig)
{
	struct mst_client *c = client();
	size_t n = TEST_MAX_MSG + 1;
	uint8_t *body = make_body(n, 7);
	const uint8_t *rp;
	struct mst_hdr h;

	ck_assert_int_eq(deliver(c, "t.example/al", "big", body, n,
	    mst_checksum(body, n), &h, &rp), -EFBIG);
	free(body);
	ping_ok(c, 5);
	mst_client_free(c);
}
END_TEST

/* The server refuses from the declared size alone: it neither allocates
 * nor waits for a gigabyte, and answers when the client's frames end. */
START_TEST(declared_huge_body_is_efbig_when_the_frames_end)
{
	struct mst_client *c = client();
	uint8_t head[1024 + 5];
	const uint8_t *rp;
	struct mst_hdr h;
	int hl = deliver_head(head, sizeof head, "t.example/al", "huge",
	    1ull << 30, 0);

	memcpy(head + hl, "hello", 5);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DELIVER, MST_F_MORE, 77,
	    head, (size_t)hl + 5), 0);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DATA, 0, 77, "world", 5),
	    0);
	ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
	ck_assert_uint_eq(h.id, 77);
	ck_assert_uint_eq(h.op, MST_OP_DELIVER);
	ck_assert_uint_eq(h.status, MST_S_EFBIG);
	ping_ok(c, 6);
	mst_client_free(c);
}
END_TEST

START_TEST(body_frames_not_adding_up_are_eproto)
{
	struct mst_client *c = client();
	uint8_t head[1024 + 100];
	const uint8_t *rp;
	struct mst_hdr h;
	int hl;

	memset(head, 0, sizeof head);
	/* 50 of 100 bytes, no MORE: short */
	hl = deliver_head(head, sizeof head, "t.example/al", "short", 100, 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_DELIVER, head,
	    (size_t)hl + 50, &h, &rp), -EPROTO);
	/* all 10 bytes but MORE set: the DATA that follows is discarded */
	hl = deliver_head(head, sizeof head, "t.example/al", "long", 10, 0);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DELIVER, MST_F_MORE, 88,
	    head, (size_t)hl + 10), 0);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DATA, 0, 88, "x", 1), 0);
	ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
	ck_assert_uint_eq(h.id, 88);
	ck_assert_uint_eq(h.status, MST_S_EPROTO);
	ping_ok(c, 7);
	mst_client_free(c);
}
END_TEST

/*
 * A body in several DATA frames is assembled and handed to the engine:
 * the answer is the engine's, not this layer's EBADMSG/EFBIG/EPROTO.
 */
START_TEST(multi_frame_deliver_reaches_the_engine)
{
	static const size_t sizes[] = { 700u << 10, TEST_MAX_MSG };
	struct mst_client *c = client();
	int mk = make_mailbox(c, "t.example/mf"), rc;
	struct mst_attr_rep a;
	const uint8_t *rp;
	struct mst_hdr h;
	char name[32];
	uint8_t *body;
	size_t i;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		body = make_body(sizes[i], 11 + (unsigned)i);
		snprintf(name, sizeof name, "multi%zu", i);
		rc = deliver(c, "t.example/mf", name, body, sizes[i],
		    mst_checksum(body, sizes[i]), &h, &rp);
		free(body);
		if (engine_is_placeholder(mk)) {
			ck_assert_int_eq(rc, -EOPNOTSUPP);
			continue;
		}
		ck_assert_msg(rc == 0, "deliver %zu bytes: got %s, want "
		    "success", sizes[i], strerror(-rc));
		ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
		ck_assert_uint_eq(a.attr.type, MST_T_MSG);
		ck_assert_uint_eq(a.attr.size, sizes[i]);
	}
	mst_client_free(c);
}
END_TEST

/* HELLO offers STAGE (the local back-end keeps staged bodies); a STAGE
 * body spans DATA frames like a DELIVER's; COMMIT names it, a resend is
 * answered alike, an unknown id is ESTALE, and body bytes after a
 * COMMIT's fields are EPROTO. */
START_TEST(staged_body_spans_frames_and_commit_names_it)
{
	const size_t size = 700u << 10;
	struct mst_client *c = client();
	struct mst_stage_req s = { .mailbox = mst_str_of("t.example/st"),
		.folder = mst_str_of(""), .body_size = size, .mode = 0600 };
	struct mst_commit_req q = { .mailbox = s.mailbox, .folder = s.folder,
		.sub = MST_SUB_NEW, .name = mst_str_of("staged.1"),
		.body_size = size, .mode = 0600 };
	uint8_t head[1024], *body = make_body(size, 5);
	uint64_t sid;
	struct mst_attr_rep a;
	const uint8_t *rp;
	struct mst_hdr h;
	int n;

	ck_assert(mst_client_hello(c)->features & MST_FEAT_STAGE);
	ck_assert_int_eq(make_mailbox(c, "t.example/st"), 0);
	memset(s.idem, 0x5a, sizeof s.idem);
	memcpy(q.idem, s.idem, sizeof q.idem);
	s.checksum = q.checksum = mst_checksum(body, size);
	n = mst_stage_req_encode(&s, head, sizeof head);
	ck_assert_int_eq(mst_client_call_body(c, MST_OP_STAGE, head, (size_t)n,
	    body, size, &h, &rp), 0);
	ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
	ck_assert_uint_eq(a.attr.size, size);
	sid = a.attr.id;
	n = mst_commit_req_encode(&q, head, sizeof head);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), 0);
	ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
	ck_assert_uint_eq(a.attr.id, sid);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), 0);
	ck_assert_int_eq(call_path(c, MST_OP_LOOKUP,
	    "t.example/st/new/staged.1", &h, &rp), 0);
	/* Body bytes after the fields: malformed, not a staged body. */
	head[n] = 'x';
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n + 1,
	    &h, &rp), -EPROTO);
	memset(q.idem, 0x5b, sizeof q.idem);
	n = mst_commit_req_encode(&q, head, sizeof head);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -ESTALE);
	free(body);
	mst_client_free(c);
}
END_TEST

/* SPOOL |len| bytes of |body| at |off| under |idem|: the status. */
static int
spool(struct mst_client *c, const uint8_t *idem, const uint8_t *body,
    size_t off, size_t len)
{
	struct mst_spool_req q = { .mailbox = mst_str_of("t.example/sp"),
		.offset = off, .length = (uint32_t)len };
	uint8_t *buf = malloc(len + 1024);
	const uint8_t *rp;
	struct mst_hdr h;
	int n, rc;

	ck_assert_ptr_nonnull(buf);
	memcpy(q.idem, idem, MST_IDEM_LEN);
	q.data.p = body + off;
	q.data.len = (uint32_t)len;
	n = mst_spool_req_encode(&q, buf, len + 1024);
	ck_assert_int_gt(n, 0);
	rc = mst_client_call(c, MST_OP_SPOOL, buf, (size_t)n, &h, &rp);
	free(buf);
	return rc;
}

/* SPOOL a whole body in pieces that fit the smallest frame size. */
static void
spool_all(struct mst_client *c, const uint8_t *idem, const uint8_t *body,
    size_t size)
{
	size_t off, k;

	for (off = 0; off < size; off += k) {
		k = size - off < (48u << 10) ? size - off : 48u << 10;
		ck_assert_int_eq(spool(c, idem, body, off, k), 0);
	}
}

/*
 * HELLO offers SPOOL; a COMMIT naming a spool of its connection delivers
 * the spooled bytes (and is answered again alike when resent). A spool
 * whose size or checksum is not the COMMIT's is EINVAL and gone; a gap
 * in the offsets is EINVAL and drops it; an empty SPOOL at offset 0
 * drops it; another connection does not see it: each of those COMMITs
 * then finds no body (ESTALE) and stores nothing.
 */
START_TEST(spooled_body_is_delivered_by_its_commit_only)
{
	const size_t size = 700u << 10;
	struct mst_client *c = client(), *c2 = client();
	struct mst_commit_req q = { .mailbox = mst_str_of("t.example/sp"),
		.folder = mst_str_of(""), .sub = MST_SUB_NEW,
		.name = mst_str_of("spooled.1"), .body_size = size,
		.mode = 0600 };
	uint8_t head[1024], *body = make_body(size, 9);
	struct mst_attr_rep a;
	const uint8_t *rp;
	struct mst_hdr h;
	int n;

	ck_assert(mst_client_hello(c)->features & MST_FEAT_SPOOL);
	ck_assert_int_eq(make_mailbox(c, "t.example/sp"), 0);
	memset(q.idem, 0x6a, sizeof q.idem);
	/* The wrong checksum: EINVAL, and the spool is gone. */
	spool_all(c, q.idem, body, size);
	q.checksum = mst_checksum(body, size) + 1;
	n = mst_commit_req_encode(&q, head, sizeof head);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -EINVAL);
	q.checksum = mst_checksum(body, size);
	n = mst_commit_req_encode(&q, head, sizeof head);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -ESTALE);
	/* A gap in the offsets drops it. */
	ck_assert_int_eq(spool(c, q.idem, body, 0, 1000), 0);
	ck_assert_int_eq(spool(c, q.idem, body, 2000, 1000), -EINVAL);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -ESTALE);
	/* An empty SPOOL at offset 0 drops it. */
	spool_all(c, q.idem, body, size);
	ck_assert_int_eq(spool(c, q.idem, body, 0, 0), 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -ESTALE);
	/* Another connection's COMMIT does not see this one's spool. */
	spool_all(c, q.idem, body, size);
	ck_assert_int_eq(mst_client_call(c2, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), -ESTALE);
	ck_assert_int_eq(call_path(c, MST_OP_LOOKUP,
	    "t.example/sp/new/spooled.1", &h, &rp), -ENOENT);
	/* Its own COMMIT delivers it; a resend is answered alike. */
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), 0);
	ck_assert_int_eq(h.op, MST_OP_COMMIT);
	ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
	ck_assert_uint_eq(a.attr.type, MST_T_MSG);
	ck_assert_uint_eq(a.attr.size, size);
	ck_assert_int_eq(mst_client_call(c, MST_OP_COMMIT, head, (size_t)n,
	    &h, &rp), 0);
	ck_assert_int_eq(call_path(c, MST_OP_LOOKUP,
	    "t.example/sp/new/spooled.1", &h, &rp), 0);
	ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
	ck_assert_uint_eq(a.attr.size, size);
	free(body);
	mst_client_free(c2);
	mst_client_free(c);
}
END_TEST

/* Two bodies streaming at once on one connection stay apart. */
START_TEST(interleaved_bodies_are_kept_apart)
{
	enum { SZ = 300u << 10, CH = 100u << 10, A = 501, B = 502 };
	struct mst_client *c = client();
	int mk = make_mailbox(c, "t.example/il");
	uint8_t *ba = make_body(SZ, 1), *bb = make_body(SZ, 2);
	uint8_t *fa = malloc(1024 + CH), *fb = malloc(1024 + CH);
	int ha, hb, got_a = 0, got_b = 0, i;
	const uint8_t *rp;
	struct mst_hdr h;

	ha = deliver_head(fa, 1024, "t.example/il", "a", SZ,
	    mst_checksum(ba, SZ) + 1);
	hb = deliver_head(fb, 1024, "t.example/il", "b", SZ,
	    mst_checksum(bb, SZ));
	memcpy(fa + ha, ba, CH);
	memcpy(fb + hb, bb, CH);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DELIVER, MST_F_MORE, A, fa,
	    (size_t)ha + CH), 0);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DELIVER, MST_F_MORE, B, fb,
	    (size_t)hb + CH), 0);
	for (i = 1; i < SZ / CH; i++) {
		unsigned more = i + 1 < SZ / CH ? MST_F_MORE : 0;

		ck_assert_int_eq(mst_client_send(c, MST_OP_DATA, more, A,
		    ba + i * CH, CH), 0);
		ck_assert_int_eq(mst_client_send(c, MST_OP_DATA, more, B,
		    bb + i * CH, CH), 0);
	}
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
		ck_assert_uint_eq(h.op, MST_OP_DELIVER);
		if (h.id == A) {
			got_a++;
			ck_assert_uint_eq(h.status, MST_S_EBADMSG);
		} else {
			ck_assert_uint_eq(h.id, B);
			got_b++;
			ck_assert_uint_eq(h.status, engine_is_placeholder(mk) ?
			    MST_S_EOPNOTSUPP : MST_S_OK);
		}
	}
	ck_assert_int_eq(got_a, 1);
	ck_assert_int_eq(got_b, 1);
	free(ba);
	free(bb);
	free(fa);
	free(fb);
	mst_client_free(c);
}
END_TEST

/* ---- watches ---- */

START_TEST(unwatch_of_an_unwatched_path_is_enoent)
{
	struct mst_client *c = client();
	const uint8_t *rp;
	struct mst_hdr h;

	ck_assert_int_eq(call_path(c, MST_OP_UNWATCH, "t.example/al/new", &h,
	    &rp), -ENOENT);
	ck_assert_int_eq(call_path(c, MST_OP_UNWATCH, "a/../b", &h, &rp),
	    -EINVAL);
	mst_client_free(c);
}
END_TEST

/* WATCH registers once the engine says the directory exists; a delivery
 * by another connection then reaches the watcher as NOTIFY. */
START_TEST(watcher_is_notified_of_a_delivery)
{
	struct mst_client *a = client(), *w = client();
	int mk = make_mailbox(a, "n.example/bo"), rc;
	uint8_t *body = make_body(100, 3);
	struct mst_watch_rep wr;
	struct mst_notify n;
	const uint8_t *rp;
	struct mst_hdr h;

	rc = call_path(w, MST_OP_WATCH, "n.example/bo/new", &h, &rp);
	if (engine_is_placeholder(mk)) {
		ck_assert_int_eq(rc, -EOPNOTSUPP);
		goto out;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(mst_watch_rep_decode(&wr, rp, h.len), 0);
	ck_assert_int_eq(deliver(a, "n.example/bo", "m1", body, 100,
	    mst_checksum(body, 100), &h, &rp), 0);
	ck_assert_int_eq(mst_client_recv(w, &h, &rp), 0);
	ck_assert_uint_eq(h.op, MST_OP_NOTIFY);
	ck_assert_uint_eq(h.flags, MST_F_NOTICE);
	ck_assert_uint_eq(h.id, 0);
	ck_assert_int_eq(mst_notify_decode(&n, rp, h.len), 0);
	ck_assert_uint_eq(n.event, MST_EV_ADD);
	ck_assert_int_eq(n.name.len, 2);
	ck_assert_int_eq(memcmp(n.name.p, "m1", 2), 0);
	ck_assert_int_eq(n.path.len, 16);
	ck_assert_int_eq(memcmp(n.path.p, "n.example/bo/new", 16), 0);
	ck_assert_int_eq(call_path(w, MST_OP_UNWATCH, "n.example/bo/new", &h,
	    &rp), 0);
	ck_assert_int_eq(call_path(w, MST_OP_UNWATCH, "n.example/bo/new", &h,
	    &rp), -ENOENT);
out:
	free(body);
	mst_client_free(a);
	mst_client_free(w);
}
END_TEST

/*
 * WATCH in the middle of another connection's burst of deliveries: its
 * reply comes before any notice, no notice is at or below the counter
 * it returned, and every delivery counted after it is notified (the
 * server registers the watch when it submits it; see watch.c). LOOKUPs
 * queued ahead of the WATCH on the engine's readers make it complete
 * after some of the deliveries, whose notices are then held.
 */
START_TEST(watch_during_a_burst_misses_nothing_and_repeats_nothing)
{
	enum { N = 200, WATCH_ID = 7, LOOKUPS = 1000 };
	struct mst_client *a = client(), *w = client();
	int mk = make_mailbox(a, "b.example/cy"), i, want = 0, got = 0;
	uint64_t dir_change[N], since;
	uint8_t frame[1024], seen[N] = { 0 }, pq[64];
	struct mst_path_req q = { .path = mst_str_of("b.example/cy/new") };
	struct mst_watch_rep wr;
	struct mst_attr_rep ar;
	struct mst_notify n;
	const uint8_t *rp;
	struct mst_hdr h;
	char name[16], body[32];
	int hl, bl, k, j;

	if (engine_is_placeholder(mk))
		goto out;
	ck_assert_int_eq(mk, 0);
	for (i = 0; i < N; i++) {
		if (i == N / 2) {
			k = mst_path_req_encode(&q, pq, sizeof pq);
			for (j = 0; j < LOOKUPS; j++)
				ck_assert_int_eq(mst_client_send(w,
				    MST_OP_LOOKUP, 0, 100000 + (uint32_t)j,
				    pq, (size_t)k), 0);
			ck_assert_int_eq(mst_client_send(w, MST_OP_WATCH, 0,
			    WATCH_ID, pq, (size_t)k), 0);
		}
		snprintf(name, sizeof name, "m%d", i);
		bl = snprintf(body, sizeof body, "message %d\n", i);
		hl = deliver_head(frame, sizeof frame - sizeof body,
		    "b.example/cy", name, (uint64_t)bl,
		    mst_checksum(body, (size_t)bl));
		memcpy(frame + hl, body, (size_t)bl);
		ck_assert_int_eq(mst_client_send(a, MST_OP_DELIVER, 0,
		    1000 + (uint32_t)i, frame, (size_t)(hl + bl)), 0);
	}
	for (i = 0; i < N; i++) {
		ck_assert_int_eq(mst_client_recv(a, &h, &rp), 0);
		ck_assert_uint_eq(h.status, 0);
		ck_assert_int_eq(mst_attr_rep_decode(&ar, rp, h.len), 0);
		dir_change[h.id - 1000] = ar.dir_change;
	}
	do {
		ck_assert_int_eq(mst_client_recv(w, &h, &rp), 0);
		ck_assert_msg(h.flags & MST_F_REPLY, "notice before the "
		    "WATCH reply");
	} while (h.op == MST_OP_LOOKUP);
	ck_assert_uint_eq(h.id, WATCH_ID);
	ck_assert_int_eq(mst_watch_rep_decode(&wr, rp, h.len), 0);
	since = wr.change;
	for (i = 0; i < N; i++)
		want += dir_change[i] > since;
	while (got < want) {
		ck_assert_int_eq(mst_client_recv(w, &h, &rp), 0);
		if (h.op == MST_OP_LOOKUP)
			continue;	/* the readers answer out of order */
		ck_assert_uint_eq(h.op, MST_OP_NOTIFY);
		ck_assert_int_eq(mst_notify_decode(&n, rp, h.len), 0);
		ck_assert_msg(n.change > since, "notice at %llu, watch at %llu",
		    (unsigned long long)n.change, (unsigned long long)since);
		k = atoi(n.name.p + 1);
		ck_assert_msg(k >= 0 && k < N && !seen[k] &&
		    dir_change[k] > since, "unexpected notice for %.*s",
		    (int)n.name.len, n.name.p);
		seen[k] = 1;
		got++;
	}
out:
	mst_client_free(a);
	mst_client_free(w);
}
END_TEST

/* ---- authentication ---- */

/* ADMIN: "stats" for anyone; scrub, compact and checkpoint only over the
 * Unix socket when no key is configured (with a key, after AUTH). */
static int
admin(struct mst_client *c, const char *cmd)
{
	struct mst_admin_req a = { mst_str_of(cmd), mst_str_of("") };
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[64];
	int n = mst_admin_req_encode(&a, b, sizeof b);

	ck_assert_int_gt(n, 0);
	return mst_client_call(c, MST_OP_ADMIN, b, (size_t)n, &h, &rp);
}

START_TEST(admin_work_needs_the_unix_socket_without_a_key)
{
	struct mst_client *t = client_at(srv.tcp_addr, NULL, 0);
	struct mst_client *u = client_at(srv.unix_addr, NULL, 0);
	static const char *const work[] = { "scrub", "compact", "checkpoint" };
	size_t i;

	ck_assert_int_eq(admin(u, "stats"), 0);
	ck_assert_int_eq(admin(t, "stats"), 0);
	for (i = 0; i < 3; i++) {
		ck_assert_msg(admin(t, work[i]) == -EACCES,
		    "%s over TCP without a key: want EACCES", work[i]);
		ck_assert_msg(admin(u, work[i]) == 0,
		    "%s over the Unix socket: want success", work[i]);
	}
	ping_ok(t, 11);		/* refused, not closed */
	mst_client_free(t);
	mst_client_free(u);
}
END_TEST

/* ---- LOCK across connections ---- */

#define LOCK_OBJ	4242u	/* locks need no object in the store */
#define QUIET_MS	300	/* "no reply yet" means none within this */

static void
lock_send(struct mst_client *c, uint32_t id, uint64_t owner, uint32_t pid,
    unsigned type, unsigned flags, uint64_t start, uint64_t end)
{
	struct mst_lock_req q = {
		.id = LOCK_OBJ,
		.owner = owner,
		.pid = pid,
		.type = (uint8_t)type,
		.flags = (uint8_t)flags,
		.start = start,
		.end = end,
	};
	uint8_t b[64];
	int n = mst_lock_req_encode(&q, b, sizeof b);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_send(c, MST_OP_LOCK, 0, id, b, (size_t)n),
	    0);
}

/* The next frame on |c| is the LOCK reply for |id|: its status as
 * -errno, the lock it carries in |r| on success. */
static int
lock_recv(struct mst_client *c, uint32_t id, struct mst_lock_rep *r)
{
	const uint8_t *rp;
	struct mst_hdr h;

	ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
	ck_assert_uint_eq(h.op, MST_OP_LOCK);
	ck_assert_uint_eq(h.flags, MST_F_REPLY);
	ck_assert_msg(h.id == id, "reply for id %u, want %u", h.id, id);
	if (h.status != 0)
		return -mst_status_to_errno(h.status);
	ck_assert_int_eq(mst_lock_rep_decode(r, rp, h.len), 0);
	return 0;
}

static int
lock_call(struct mst_client *c, uint64_t owner, uint32_t pid, unsigned type,
    unsigned flags, uint64_t start, uint64_t end, struct mst_lock_rep *r)
{
	uint32_t id = mst_client_next_id(c);

	lock_send(c, id, owner, pid, type, flags, start, end);
	return lock_recv(c, id, r);
}

/* Nothing arrives on |c| for QUIET_MS. */
static int
quiet(struct mst_client *c)
{
	struct pollfd pf = { .fd = mst_client_fd(c), .events = POLLIN };

	return poll(&pf, 1, QUIET_MS) == 0;
}

START_TEST(setlk_conflict_across_connections_is_eagain)
{
	struct mst_client *a = client(), *b = client_at(srv.unix_addr, NULL,
	    0);
	struct mst_lock_rep r;

	ck_assert_int_eq(lock_call(a, 1, 501, MST_LK_WR, 0, 0, 99, &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_WR);
	ck_assert_uint_eq(r.pid, 501);
	ck_assert_uint_eq(r.start, 0);
	ck_assert_uint_eq(r.end, 99);
	/* Same owner number, other connection: another owner. */
	ck_assert_int_eq(lock_call(b, 1, 502, MST_LK_RD, 0, 50, 50, &r),
	    -EAGAIN);
	ck_assert_int_eq(lock_call(b, 1, 502, MST_LK_WR, 0, 100, MST_LK_EOF,
	    &r), 0);
	/* F_GETLK names the holder. */
	ck_assert_int_eq(lock_call(b, 2, 503, MST_LK_RD, MST_LKF_TEST, 0,
	    MST_LK_EOF, &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_WR);
	ck_assert_uint_eq(r.pid, 501);
	ck_assert_uint_eq(r.start, 0);
	ck_assert_uint_eq(r.end, 99);
	ck_assert_int_eq(lock_call(a, 1, 501, MST_LK_WR, MST_LKF_TEST, 0, 99,
	    &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_UN);
	/* flock is another lock space. */
	ck_assert_int_eq(lock_call(b, 7, 502, MST_LK_WR, MST_LKF_FLOCK, 0, 0,
	    &r), 0);
	ck_assert_int_eq(lock_call(a, 8, 501, MST_LK_RD, MST_LKF_FLOCK, 0, 0,
	    &r), -EAGAIN);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(setlkw_waits_and_is_granted_when_the_holder_unlocks)
{
	struct mst_client *a = client(), *b = client();
	struct mst_lock_rep r;

	ck_assert_int_eq(lock_call(a, 1, 601, MST_LK_WR, 0, 0, MST_LK_EOF,
	    &r), 0);
	lock_send(b, 900, 2, 602, MST_LK_RD, MST_LKF_WAIT, 10, 19);
	ck_assert_msg(quiet(b), "SETLKW answered while the lock is held");
	/* A waiting LOCK holds up nothing else on its connection. */
	ping_ok(b, 21);
	ck_assert_int_eq(lock_call(a, 1, 601, MST_LK_UN, 0, 0, MST_LK_EOF,
	    &r), 0);
	ck_assert_int_eq(lock_recv(b, 900, &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_RD);
	ck_assert_uint_eq(r.pid, 602);
	ck_assert_uint_eq(r.start, 10);
	ck_assert_uint_eq(r.end, 19);
	/* And now it is B's: A conflicts. */
	ck_assert_int_eq(lock_call(a, 1, 601, MST_LK_WR, 0, 15, 15, &r),
	    -EAGAIN);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(setlkw_is_granted_when_the_holders_connection_closes)
{
	struct mst_client *a = client(), *b = client(), *c = client();
	struct mst_lock_rep r;

	ck_assert_int_eq(lock_call(a, 1, 701, MST_LK_WR, 0, 0, MST_LK_EOF,
	    &r), 0);
	ck_assert_int_eq(lock_call(a, 1, 701, MST_LK_RD, MST_LKF_FLOCK, 0, 0,
	    &r), 0);
	lock_send(b, 910, 2, 702, MST_LK_WR, MST_LKF_WAIT, 0, 0);
	lock_send(c, 920, 3, 703, MST_LK_WR, MST_LKF_WAIT | MST_LKF_FLOCK, 0,
	    0);
	ck_assert(quiet(b) && quiet(c));
	mst_client_free(a);
	ck_assert_int_eq(lock_recv(b, 910, &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_WR);
	ck_assert_int_eq(lock_recv(c, 920, &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_WR);
	mst_client_free(b);
	mst_client_free(c);
}
END_TEST

START_TEST(cancelled_setlkw_fails_with_eintr)
{
	struct mst_client *a = client(), *b = client();
	struct mst_lock_rep r;
	const uint8_t *rp;
	struct mst_hdr h;
	int seen = 0, i;

	ck_assert_int_eq(lock_call(a, 1, 801, MST_LK_WR, 0, 0, 0, &r), 0);
	lock_send(b, 930, 5, 802, MST_LK_WR, MST_LKF_WAIT, 0, 0);
	ck_assert(quiet(b));
	lock_send(b, 931, 5, 802, MST_LK_WR, MST_LKF_CANCEL, 0, 0);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(mst_client_recv(b, &h, &rp), 0);
		ck_assert_uint_eq(h.op, MST_OP_LOCK);
		if (h.id == 930) {
			ck_assert_uint_eq(h.status, MST_S_EINTR);
			seen |= 1;
		} else {
			ck_assert_uint_eq(h.id, 931);
			ck_assert_uint_eq(h.status, 0);
			ck_assert_int_eq(mst_lock_rep_decode(&r, rp, h.len), 0);
			ck_assert_uint_eq(r.type, MST_LK_UN);
			seen |= 2;
		}
	}
	ck_assert_int_eq(seen, 3);
	/* Given up: A's unlock grants B nothing. */
	ck_assert_int_eq(lock_call(a, 1, 801, MST_LK_UN, 0, 0, 0, &r), 0);
	ck_assert(quiet(b));
	ck_assert_int_eq(lock_call(b, 5, 802, MST_LK_WR, MST_LKF_TEST, 0, 0,
	    &r), 0);
	ck_assert_uint_eq(r.type, MST_LK_UN);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

/*
 * HELLO's SOLE: a lock granted at its holder's unlock comes after the
 * notices of every change the holder had been answered, also when that
 * answer left from an engine thread (server.c) and the unlock reached
 * the loop before the change's completion did.
 */
START_TEST(lock_granted_at_unlock_follows_the_holders_notices)
{
	enum { ROUNDS = 40 };
	struct mst_client *a = client(), *b = client();
	uint8_t *body = make_body(100, 5);
	uint64_t sum = mst_checksum(body, 100);
	struct mst_lock_rep r;
	struct mst_notify n;
	const uint8_t *rp;
	struct mst_hdr h;
	char name[16];
	int i, seen;

	ck_assert_int_eq(make_mailbox(a, "so.example/lk"), 0);
	ck_assert_int_eq(call_path(b, MST_OP_WATCH, "so.example/lk/new", &h,
	    &rp), 0);
	for (i = 0; i < ROUNDS; i++) {
		ck_assert_int_eq(lock_call(a, 1, 1001, MST_LK_WR, 0, 0, 0, &r),
		    0);
		lock_send(b, 5000 + (uint32_t)i, 2, 1002, MST_LK_WR,
		    MST_LKF_WAIT, 0, 0);
		ping_ok(b, 7000 + (uint64_t)i);	/* the LOCK waits now */
		snprintf(name, sizeof name, "m%d", i);
		ck_assert_int_eq(deliver(a, "so.example/lk", name, body, 100,
		    sum, &h, &rp), 0);
		lock_send(a, 6000 + (uint32_t)i, 1, 1001, MST_LK_UN, 0, 0, 0);
		seen = 0;
		for (;;) {
			ck_assert_int_eq(mst_client_recv(b, &h, &rp), 0);
			if (h.op == MST_OP_LOCK)
				break;
			ck_assert_uint_eq(h.op, MST_OP_NOTIFY);
			ck_assert_int_eq(mst_notify_decode(&n, rp, h.len), 0);
			if (n.name.len == strlen(name) &&
			    memcmp(n.name.p, name, n.name.len) == 0)
				seen = 1;
		}
		ck_assert_msg(seen, "round %d: the lock was granted before "
		    "the notice of %s", i, name);
		ck_assert_uint_eq(h.id, 5000 + (uint32_t)i);
		ck_assert_uint_eq(h.status, 0);
		ck_assert_int_eq(lock_recv(a, 6000 + (uint32_t)i, &r), 0);
		ck_assert_int_eq(lock_call(b, 2, 1002, MST_LK_UN, 0, 0, 0,
		    &r), 0);
	}
	free(body);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(setlkw_that_would_deadlock_is_edeadlk)
{
	struct mst_client *a = client(), *b = client();
	struct mst_lock_rep r;

	ck_assert_int_eq(lock_call(a, 1, 851, MST_LK_WR, 0, 0, 0, &r), 0);
	ck_assert_int_eq(lock_call(b, 1, 852, MST_LK_WR, 0, 1, 1, &r), 0);
	lock_send(a, 940, 1, 851, MST_LK_WR, MST_LKF_WAIT, 1, 1);
	ck_assert(quiet(a));
	ck_assert_int_eq(lock_call(b, 1, 852, MST_LK_WR, MST_LKF_WAIT, 0, 0,
	    &r), -EDEADLK);
	ck_assert_int_eq(lock_call(b, 1, 852, MST_LK_UN, 0, 1, 1, &r), 0);
	ck_assert_int_eq(lock_recv(a, 940, &r), 0);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(malformed_lock_is_einval_not_a_close)
{
	struct mst_client *c = client();
	struct mst_lock_rep r;

	ck_assert_int_eq(lock_call(c, 1, 1, 9, 0, 0, 0, &r), -EINVAL);
	ck_assert_int_eq(lock_call(c, 1, 1, MST_LK_RD, 0, 10, 9, &r),
	    -EINVAL);
	ck_assert_int_eq(lock_call(c, 1, 1, MST_LK_RD, MST_LKF_TEST |
	    MST_LKF_WAIT, 0, 9, &r), -EINVAL);
	ping_ok(c, 22);
	mst_client_free(c);
}
END_TEST

/* ---- ordinary files by id ---- */

#define FDIR	"files.example/fo"

/* PUT |path| with |body|; returns the new object's id. */
static uint64_t
put_file(struct mst_client *c, const char *path, const char *body)
{
	size_t n = strlen(body);
	struct mst_put_req q = {
		.path = mst_str_of(path),
		.mode = 0600,
		.checksum = mst_checksum(body, n),
		.body_size = n,
	};
	struct mst_attr_rep a;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[MST_PATH_MAX + 128];
	int hl = mst_put_req_encode(&q, b, sizeof b), rc;

	ck_assert_int_gt(hl, 0);
	rc = mst_client_call_body(c, MST_OP_PUT, b, (size_t)hl, body, n, &h,
	    &rp);
	ck_assert_msg(rc == 0, "PUT %s: %s", path, strerror(-rc));
	ck_assert_int_eq(mst_attr_rep_decode(&a, rp, h.len), 0);
	ck_assert_uint_eq(a.attr.type, MST_T_FILE);
	ck_assert_uint_ne(a.attr.id, 0);
	return a.attr.id;
}

/* GETATTR, OPEN or CLOSE of |id|; the status as -errno. */
static int
call_id(struct mst_client *c, unsigned op, uint64_t id,
    struct mst_attr_rep *a)
{
	struct mst_id_req q = { .id = id };
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[16];
	int n = mst_id_req_encode(&q, b, sizeof b), rc;

	rc = mst_client_call(c, op, b, (size_t)n, &h, &rp);
	if (rc == 0 && a != NULL)
		ck_assert_int_eq(mst_attr_rep_decode(a, rp, h.len), 0);
	if (rc == 0 && op == MST_OP_CLOSE)
		ck_assert_uint_eq(h.len, 0);
	return rc;
}

/* WRITE |data| at |offset| (or appended); fills |a| on success. */
static int
write_at(struct mst_client *c, uint64_t id, uint64_t offset, unsigned flags,
    const void *data, size_t n, uint64_t checksum, struct mst_attr_rep *a)
{
	struct mst_write_req q = {
		.id = id,
		.offset = offset,
		.flags = flags,
		.checksum = checksum,
		.body_size = n,
	};
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[64];
	int hl = mst_write_req_encode(&q, b, sizeof b), rc;

	ck_assert_int_gt(hl, 0);
	rc = mst_client_call_body(c, MST_OP_WRITE, b, (size_t)hl, data, n, &h,
	    &rp);
	if (rc == 0)
		ck_assert_int_eq(mst_attr_rep_decode(a, rp, h.len), 0);
	return rc;
}

/* READ up to |cap| bytes at |offset| into |out| (every reply frame);
 * returns the byte count or -errno. */
static long
read_at(struct mst_client *c, uint64_t id, uint64_t offset, uint8_t *out,
    size_t cap)
{
	struct mst_read_req q = { .id = id, .offset = offset,
	    .length = (uint32_t)cap };
	struct mst_data_rep d;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[32];
	int n = mst_read_req_encode(&q, b, sizeof b), rc;
	size_t got = 0;

	rc = mst_client_call(c, MST_OP_READ, b, (size_t)n, &h, &rp);
	for (;;) {
		if (rc < 0)
			return rc;
		ck_assert_int_eq(mst_data_rep_decode(&d, rp, h.len), 0);
		ck_assert_uint_eq(d.checksum, mst_checksum(d.data.p,
		    d.data.len));
		ck_assert_uint_le(got + d.data.len, cap);
		memcpy(out + got, d.data.p, d.data.len);
		got += d.data.len;
		if (!(h.flags & MST_F_MORE))
			return (long)got;
		rc = mst_client_recv(c, &h, &rp);
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(h.op, MST_OP_READ);
		rc = h.status ? -mst_status_to_errno(h.status) : 0;
	}
}

static void
read_is(struct mst_client *c, uint64_t id, const char *want)
{
	uint8_t buf[4096];
	long n = read_at(c, id, 0, buf, sizeof buf);

	ck_assert_msg(n >= 0, "READ %llu: %s", (unsigned long long)id,
	    strerror((int)-n));
	ck_assert_msg((size_t)n == strlen(want) && memcmp(buf, want,
	    (size_t)n) == 0, "READ got \"%.*s\", want \"%s\"", (int)n, buf,
	    want);
}

START_TEST(write_is_read_through_another_connection)
{
	struct mst_client *a = client(), *b = client();
	struct mst_attr_rep at;
	uint64_t id;

	ck_assert_int_eq(make_mailbox(a, FDIR), 0);
	id = put_file(a, FDIR "/dovecot.index.log", "hello");
	ck_assert_int_eq(write_at(a, id, 5, 0, " world", 6,
	    mst_checksum(" world", 6), &at), 0);
	ck_assert_uint_eq(at.attr.id, id);
	ck_assert_uint_eq(at.attr.size, 11);
	read_is(b, id, "hello world");
	/* An append lands at the end, whatever the offset says. */
	ck_assert_int_eq(write_at(b, id, 0, MST_WR_APPEND, "!", 1,
	    mst_checksum("!", 1), &at), 0);
	ck_assert_uint_eq(at.attr.size, 12);
	read_is(a, id, "hello world!");
	ck_assert_int_eq(call_id(a, MST_OP_GETATTR, id, &at), 0);
	ck_assert_uint_eq(at.attr.size, 12);
	ck_assert_uint_eq(at.attr.type, MST_T_FILE);
	/* Holds are per connection: B cannot close A's. */
	ck_assert_int_eq(call_id(a, MST_OP_OPEN, id, &at), 0);
	ck_assert_int_eq(call_id(b, MST_OP_CLOSE, id, NULL), -EBADF);
	ck_assert_int_eq(call_id(a, MST_OP_CLOSE, id, NULL), 0);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(write_with_a_bad_checksum_is_ebadmsg)
{
	struct mst_client *c = client();
	size_t n = 600u << 10;	/* several DATA frames */
	uint8_t *body = make_body(n, 3);
	struct mst_attr_rep at;
	uint64_t id;

	ck_assert_int_eq(make_mailbox(c, FDIR), 0);
	id = put_file(c, FDIR "/dovecot.index.cache", "x");
	ck_assert_int_eq(write_at(c, id, 0, 0, body, n,
	    mst_checksum(body, n) ^ 1, &at), -EBADMSG);
	ck_assert_int_eq(call_id(c, MST_OP_GETATTR, id, &at), 0);
	ck_assert_uint_eq(at.attr.size, 1);
	ck_assert_int_eq(write_at(c, id, 0, 0, body, n, mst_checksum(body, n),
	    &at), 0);
	ck_assert_uint_eq(at.attr.size, n);
	free(body);
	mst_client_free(c);
}
END_TEST

START_TEST(open_file_survives_unlink_until_close)
{
	struct mst_client *a = client(), *b = client();
	struct mst_attr_rep at;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t buf[16];
	uint64_t id;

	ck_assert_int_eq(make_mailbox(a, FDIR), 0);
	id = put_file(a, FDIR "/open-unlink", "still here");
	ck_assert_int_eq(call_id(a, MST_OP_OPEN, id, &at), 0);
	ck_assert_uint_eq(at.attr.id, id);
	ck_assert_int_eq(call_path(b, MST_OP_UNLINK, FDIR "/open-unlink", &h,
	    &rp), 0);
	ck_assert_int_eq(call_path(b, MST_OP_LOOKUP, FDIR "/open-unlink", &h,
	    &rp), -ENOENT);
	/* Unlinked but open: by id it reads and writes on. */
	read_is(b, id, "still here");
	ck_assert_int_eq(write_at(b, id, 0, MST_WR_APPEND, ".", 1,
	    mst_checksum(".", 1), &at), 0);
	read_is(a, id, "still here.");
	ck_assert_int_eq(call_id(a, MST_OP_CLOSE, id, NULL), 0);
	ck_assert_int_eq(read_at(b, id, 0, buf, sizeof buf), -ENOENT);
	mst_client_free(a);
	mst_client_free(b);
}
END_TEST

START_TEST(connection_end_closes_what_it_opened)
{
	struct mst_client *a = client(), *b = client();
	struct mst_attr_rep at;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t buf[16];
	int64_t deadline;
	uint64_t id;
	long n;

	ck_assert_int_eq(make_mailbox(a, FDIR), 0);
	id = put_file(a, FDIR "/open-close", "orphan");
	ck_assert_int_eq(call_id(a, MST_OP_OPEN, id, &at), 0);
	ck_assert_int_eq(call_id(a, MST_OP_OPEN, id, &at), 0);
	ck_assert_int_eq(call_path(b, MST_OP_UNLINK, FDIR "/open-close", &h,
	    &rp), 0);
	read_is(b, id, "orphan");
	/* A goes without CLOSE: the server closes for it. */
	mst_client_free(a);
	deadline = now_ms() + REPLY_MS;
	while ((n = read_at(b, id, 0, buf, sizeof buf)) >= 0 &&
	    now_ms() < deadline)
		sleep_ms(20);
	ck_assert_int_eq(n, -ENOENT);
	mst_client_free(b);
}
END_TEST

START_TEST(link_fsetattr_and_a_second_name)
{
	struct mst_client *c = client();
	struct mst_fsetattr_req q = {
		.valid = MST_SA_SIZE | MST_SA_MODE,
		.size = 3,
		.mode = 0640,
	};
	struct mst_link_req l = { .path = mst_str_of(FDIR "/lock.tmp.2") };
	struct mst_attr_rep at;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[MST_PATH_MAX + 64];
	uint64_t id;
	int n;

	ck_assert_int_eq(make_mailbox(c, FDIR), 0);
	id = put_file(c, FDIR "/lock.tmp", "abcdef");
	q.id = id;
	n = mst_fsetattr_req_encode(&q, b, sizeof b);
	ck_assert_int_eq(mst_client_call(c, MST_OP_FSETATTR, b, (size_t)n, &h,
	    &rp), 0);
	ck_assert_int_eq(mst_attr_rep_decode(&at, rp, h.len), 0);
	ck_assert_uint_eq(at.attr.size, 3);
	ck_assert_uint_eq(at.attr.mode & 07777, 0640);
	read_is(c, id, "abc");
	l.id = id;
	n = mst_link_req_encode(&l, b, sizeof b);
	ck_assert_int_eq(mst_client_call(c, MST_OP_LINK, b, (size_t)n, &h,
	    &rp), 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_LINK, b, (size_t)n, &h,
	    &rp), -EEXIST);
	ck_assert_int_eq(call_path(c, MST_OP_UNLINK, FDIR "/lock.tmp", &h,
	    &rp), 0);
	ck_assert_int_eq(call_path(c, MST_OP_LOOKUP, FDIR "/lock.tmp.2", &h,
	    &rp), 0);
	ck_assert_int_eq(mst_attr_rep_decode(&at, rp, h.len), 0);
	ck_assert_uint_eq(at.attr.id, id);
	read_is(c, id, "abc");
	mst_client_free(c);
}
END_TEST

/* Encode a request of |op| whose path (or mailbox, or one of two paths)
 * is |p|; the other fields are valid. Returns the payload length. */
static int
encode_with_path(unsigned op, struct mst_str p, uint8_t *b, size_t cap)
{
	struct mst_str ok = mst_str_of("t.example/al"), name = mst_str_of("n1");

	switch (op) {
	case MST_OP_LOOKUP:
	case MST_OP_RMDIR:
	case MST_OP_READDIR:
	case MST_OP_UNLINK:
	case MST_OP_STATFS:
	case MST_OP_WATCH: {
		struct mst_path_req q = { .path = p };
		return mst_path_req_encode(&q, b, cap);
	}
	case MST_OP_MKDIR: {
		struct mst_mkdir_req q = { .path = p, .mode = 0700 };
		return mst_mkdir_req_encode(&q, b, cap);
	}
	case MST_OP_PUT: {
		struct mst_put_req q = { .path = p, .mode = 0600,
		    .checksum = mst_checksum("", 0) };
		return mst_put_req_encode(&q, b, cap);
	}
	case MST_OP_GET: {
		struct mst_get_req q = { .path = p, .length = 10 };
		return mst_get_req_encode(&q, b, cap);
	}
	case MST_OP_RENAME: {
		struct mst_rename_req q = { .from = ok, .to = p };
		return mst_rename_req_encode(&q, b, cap);
	}
	case MST_OP_SETATTR: {
		struct mst_setattr_req q = { .path = p };
		return mst_setattr_req_encode(&q, b, cap);
	}
	case MST_OP_LINK: {
		struct mst_link_req q = { .id = 1, .path = p };
		return mst_link_req_encode(&q, b, cap);
	}
	case MST_OP_LIST: {
		struct mst_list_req q = { .mailbox = p, .sub = MST_SUB_NEW };
		return mst_list_req_encode(&q, b, cap);
	}
	case MST_OP_STAT:
	case MST_OP_EXPUNGE: {
		struct mst_msg_ref q = { .mailbox = ok, .folder = p,
		    .sub = MST_SUB_NEW, .name = name };
		return mst_msg_ref_encode(&q, b, cap);
	}
	case MST_OP_FETCH: {
		struct mst_fetch_req q = { .mailbox = p, .id = 1,
		    .length = 10 };
		return mst_fetch_req_encode(&q, b, cap);
	}
	case MST_OP_SETINFO: {
		struct mst_setinfo_req q = { .mailbox = p, .from_sub =
		    MST_SUB_NEW, .from_name = name, .to_sub = MST_SUB_CUR,
		    .to_name = name };
		return mst_setinfo_req_encode(&q, b, cap);
	}
	case MST_OP_DELIVER: {
		struct mst_deliver_req q = { .mailbox = p, .sub = MST_SUB_NEW,
		    .name = name, .checksum = mst_checksum("", 0),
		    .mode = 0600 };
		return mst_deliver_req_encode(&q, b, cap);
	}
	default:
		ck_abort_msg("no encoder for op %#x", op);
		return -1;
	}
}

/* Every request that names a path is checked at the store: "..", an
 * absolute path, an empty or NUL-bearing component, an overlong name and
 * a path deeper than MST_PATH_DEPTH_MAX are refused with the specific
 * error, and the connection goes on. */
START_TEST(every_path_carrying_op_checks_its_path)
{
	static const unsigned ops[] = {
		MST_OP_LOOKUP, MST_OP_RMDIR, MST_OP_READDIR, MST_OP_UNLINK,
		MST_OP_STATFS, MST_OP_WATCH, MST_OP_MKDIR, MST_OP_PUT,
		MST_OP_GET, MST_OP_RENAME, MST_OP_SETATTR, MST_OP_LINK,
		MST_OP_LIST, MST_OP_STAT, MST_OP_EXPUNGE, MST_OP_FETCH,
		MST_OP_SETINFO, MST_OP_DELIVER,
	};
	static char longname[MST_NAME_MAX + 8], deep[2 * MST_PATH_DEPTH_MAX + 8];
	struct {
		struct mst_str path;
		int want;
	} bad[] = {
		{ mst_str_of("../etc"), -EINVAL },
		{ mst_str_of("t.example/../../etc"), -EINVAL },
		{ mst_str_of("/etc/passwd"), -EINVAL },
		{ mst_str_of("a//b"), -EINVAL },
		{ mst_str_of("a/./b"), -EINVAL },
		{ { .p = "a\0b", .len = 3 }, -EINVAL },
		{ mst_str_of(longname), -ENAMETOOLONG },
		{ mst_str_of(deep), -ELOOP },
	};
	struct mst_client *c = client();
	uint8_t b[MST_PATH_MAX + 512];
	const uint8_t *rp;
	struct mst_hdr h;
	size_t i, k;
	int n, rc;

	memset(longname, 'x', MST_NAME_MAX + 1);
	for (k = 0; k <= MST_PATH_DEPTH_MAX; k++)
		memcpy(deep + 2 * k, k ? "/d" : "dd", 2);
	bad[6].path = mst_str_of(longname);
	bad[7].path = mst_str_of(deep);
	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
			n = encode_with_path(ops[i], bad[k].path, b, sizeof b);
			ck_assert_int_gt(n, 0);
			rc = mst_client_call(c, ops[i], b, (size_t)n, &h, &rp);
			ck_assert_msg(rc == bad[k].want, "%s with path "
			    "\"%.*s\": got %s, want %s", mst_op_name(ops[i]),
			    (int)bad[k].path.len, bad[k].path.p,
			    strerror(-rc), strerror(-bad[k].want));
		}
	}
	ping_ok(c, 50);
	mst_client_free(c);
}
END_TEST

/* max_message_size bounds every body, not only DELIVER's. */
START_TEST(put_and_write_over_max_message_size_are_efbig)
{
	struct mst_client *c = client();
	size_t n = TEST_MAX_MSG + 1;
	uint8_t *body = make_body(n, 9);
	struct mst_put_req q = {
		.path = mst_str_of(FDIR "/big"),
		.mode = 0600,
		.checksum = mst_checksum(body, n),
		.body_size = n,
	};
	struct mst_attr_rep a;
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[MST_PATH_MAX + 128];
	int hl = mst_put_req_encode(&q, b, sizeof b);
	uint64_t id;

	ck_assert_int_gt(hl, 0);
	ck_assert_int_eq(mst_client_call_body(c, MST_OP_PUT, b, (size_t)hl,
	    body, n, &h, &rp), -EFBIG);
	id = put_file(c, FDIR "/small", "small");
	ck_assert_int_eq(write_at(c, id, 0, 0, body, n,
	    mst_checksum(body, n), &a), -EFBIG);
	read_is(c, id, "small");
	free(body);
	ping_ok(c, 51);
	mst_client_free(c);
}
END_TEST

START_TEST(admin_work_is_allowed_after_auth)
{
	struct mst_client *t = client_at(srv.tcp_addr, TEST_KEY, 0);

	ck_assert_int_eq(admin(t, "stats"), 0);
	ck_assert_int_eq(admin(t, "scrub"), 0);
	ck_assert_int_eq(admin(t, "checkpoint"), 0);
	mst_client_free(t);
}
END_TEST

START_TEST(auth_with_the_right_key_succeeds)
{
	struct mst_client *t = client_at(srv.tcp_addr, TEST_KEY, 0);
	struct mst_client *u = client_at(srv.unix_addr, TEST_KEY, 0);

	ck_assert_uint_eq(mst_client_hello(t)->features,
	    MST_FEAT_AUTH | MST_FEAT_WATCH | MST_FEAT_STAGE | MST_FEAT_SPOOL |
	    MST_FEAT_SOLE);
	ping_ok(t, 8);
	ping_ok(u, 9);
	mst_client_free(t);
	mst_client_free(u);
}
END_TEST

START_TEST(auth_with_a_wrong_key_is_eacces)
{
	struct mst_client_opts o = {
		.key = (const uint8_t *)"wrong key",
		.keylen = 9,
		.timeout_ms = REPLY_MS,
	};
	struct mst_client *c = NULL;

	ck_assert_msg(srv.pid > 0, "mstored did not start");
	ck_assert_int_eq(mst_client_connect(srv.tcp_addr, &o, &c), -EACCES);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(auth_without_a_key_fails)
{
	struct mst_client_opts o = { .timeout_ms = REPLY_MS };
	struct mst_client *c = NULL;

	ck_assert_msg(srv.pid > 0, "mstored did not start");
	ck_assert_int_eq(mst_client_connect(srv.unix_addr, &o, &c), -EACCES);
	ck_assert_ptr_null(c);
}
END_TEST

/* The server itself refuses and closes, whatever a client library does:
 * a request instead of AUTH, or AUTH with a bad proof. */
START_TEST(server_refuses_and_closes_without_valid_auth)
{
	struct mst_hello_rep rep;
	uint8_t nonce[MST_NONCE_LEN], rb[2048], zero[MST_PROOF_LEN] = { 0 };
	int fd = raw_connect(srv.tcp_addr);
	struct mst_hdr h;

	raw_hello(fd, MST_FRAME_DEFAULT, &rep, nonce);
	ck_assert_uint_eq(rep.features & MST_FEAT_AUTH, MST_FEAT_AUTH);
	if (_i == 0)
		raw_send(fd, MST_OP_PING, 0, 2, zero, 8);
	else
		raw_send(fd, MST_OP_AUTH, 0, 2, zero, sizeof zero);
	ck_assert_int_eq(raw_recv(fd, &h, rb, sizeof rb), 0);
	ck_assert_uint_eq(h.id, 2);
	ck_assert_uint_eq(h.status, MST_S_EACCES);
	ck_assert_msg(peer_closed(fd), "connection left open");
	close(fd);
}
END_TEST

/* ---- command line, config and lifecycle ---- */

static void
expect_run(const char *const *args, int want, const char *want_text)
{
	static char out[16384];
	int st = run_mstored(args, out, sizeof out);

	ck_assert_msg(st == want, "mstored %s: exit %d, want %d; output:\n%s",
	    args[0], st, want, out);
	if (want_text)
		ck_assert_msg(strstr(out, want_text) != NULL,
		    "mstored %s: output lacks \"%s\":\n%s", args[0],
		    want_text, out);
}

START_TEST(help_and_version_exit_zero)
{
	const char *help[] = { "--help", NULL };
	const char *version[] = { "--version", NULL };

	expect_run(help, 0, "Usage: mstored");
	expect_run(version, 0, "mstored (mstore) " PACKAGE_VERSION);
}
END_TEST

START_TEST(bad_usage_exits_two)
{
	const char *bogus[] = { "--bogus", NULL };
	const char *addr[] = { "--data", "/tmp", "--listen", "nowhere",
		NULL };
	const char *nodata[] = { "--foreground", NULL };
	const char *extra[] = { "--data", "/tmp", "stray", NULL };

	expect_run(bogus, 2, "--help");
	expect_run(addr, 2, "--listen nowhere");
	expect_run(nodata, 2, "no data directory");
	expect_run(extra, 2, "stray");
}
END_TEST

/* Settings that cannot work are refused at start, with the reason. */
START_TEST(unworkable_security_settings_are_refused)
{
	struct server s;
	const char *args[] = { "--foreground", "--data", s.data, "--listen",
		s.unix_addr, "--config", s.conf, NULL };
	const char *user[] = { "--foreground", "--user",
		"no-such-user-here", "--data", s.data, "--listen",
		s.unix_addr, NULL };
	char extra[160];

	server_prepare(&s, 0, NULL);
	snprintf(extra, sizeof extra, "key_file_next = %s\n", s.key);
	rm_rf(s.dir);
	server_prepare(&s, 0, extra);
	expect_run(args, 1, "key_file_next is set without key_file");
	expect_run(user, 2, "user no-such-user-here: no such user");
	rm_rf(s.dir);
}
END_TEST

START_TEST(bad_config_exits_two_naming_file_and_line)
{
	struct server s;
	const char *args[] = { "--foreground", "--config", s.conf, NULL };
	char want[128];

	server_prepare(&s, 0, "colour = blue\n");
	snprintf(want, sizeof want, "%s:6: unknown key 'colour'", s.conf);
	expect_run(args, 2, want);
	server_prepare(&s, 0, "max_frame = 1K\n");
	snprintf(want, sizeof want, "%s:6: max_frame = 1K", s.conf);
	expect_run(args, 2, want);
	rm_rf(s.dir);
}
END_TEST

START_TEST(unusable_files_exit_one)
{
	const char *conf[] = { "--data", "/tmp", "--config",
		"/nonexistent/mstored.conf", NULL };
	const char *data[] = { "--foreground", "--data", "/nonexistent/data",
		NULL };

	expect_run(conf, 1, "/nonexistent/mstored.conf");
	expect_run(data, 1, "/nonexistent/data");
}
END_TEST

START_TEST(address_in_use_exits_one)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t len = sizeof in;
	struct server s;
	char addr[32];
	const char *fg[] = { "--foreground", "--data", s.data, "--listen",
		addr, NULL };
	const char *bg[] = { "--data", s.data, "--listen", addr, NULL };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&in, &len), 0);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(in.sin_port));
	server_prepare(&s, 0, NULL);
	expect_run(fg, 1, "Address already in use");
	/* Also when detaching: the parent reports the child's failure. */
	expect_run(bg, 1, "Address already in use");
	close(fd);
	rm_rf(s.dir);
}
END_TEST

START_TEST(live_unix_socket_is_not_taken_over)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	struct server s;
	const char *args[] = { "--foreground", "--data", s.data, "--listen",
		s.unix_addr, NULL };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	server_prepare(&s, 0, NULL);
	snprintf(un.sun_path, sizeof un.sun_path, "%s", s.sock);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	expect_run(args, 1, "another server is listening");
	close(fd);
	rm_rf(s.dir);
}
END_TEST

/* SIGTERM |s|'s mstored: it must exit 0 in time. */
static void
sigterm_expect_exit_zero(struct server *s)
{
	int ws;

	ck_assert_int_eq(kill(s->pid, SIGTERM), 0);
	ws = wait_exit(s->pid, START_MS);
	if (ws < 0)
		server_stop(s);
	ck_assert_msg(ws >= 0, "mstored did not exit after SIGTERM");
	ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
	    "wait status %#x, want exit 0", ws);
}

/* SIGTERM with a client connected: exit 0, socket file removed. The
 * server starts over a stale socket file, which it must replace. */
START_TEST(sigterm_exits_zero)
{
	struct server s;
	struct mst_client *c;
	struct stat st;

	ck_assert_int_eq(server_start(&s, SRV_STALE_SOCKET, NULL), 0);
	srv = s;	/* client_at checks srv.pid */
	c = client_at(s.unix_addr, NULL, 0);
	ping_ok(c, 10);
	sigterm_expect_exit_zero(&s);
	ck_assert_int_ne(stat(s.sock, &st), 0);
	mst_client_free(c);
	s.pid = -1;
	server_stop(&s);
}
END_TEST

/* backend = memory serves the same protocol from RAM: a mailbox, a
 * delivery and a file read back, nothing written to the data directory,
 * a clean SIGTERM; an unknown back-end is a usage error. */
START_TEST(memory_backend_serves_and_writes_no_file)
{
	const char *bogus[] = { "--data", "/tmp", "--backend", "paper",
		NULL };
	uint8_t *body = make_body(3000, 7);
	struct mst_client *c;
	const uint8_t *rp;
	struct mst_hdr h;
	struct server s;
	struct dirent *d;
	uint64_t id;
	DIR *dp;
	int n = 0;

	expect_run(bogus, 2, "expected local, memory or rados");
	ck_assert_int_eq(server_start(&s, 0, "backend = memory\n"), 0);
	srv = s;	/* client_at checks srv.pid */
	c = client_at(s.unix_addr, NULL, 0);
	ping_ok(c, 11);
	ck_assert_int_eq(make_mailbox(c, "m"), 0);
	ck_assert_int_eq(deliver(c, "m", "one", body, 3000,
	    mst_checksum(body, 3000), &h, &rp), 0);
	ck_assert_int_eq(deliver(c, "m", "one", body, 3000,
	    mst_checksum(body, 3000), &h, &rp), -EEXIST);
	id = put_file(c, "m/f", "in memory");
	read_is(c, id, "in memory");
	dp = opendir(s.data);
	ck_assert_ptr_nonnull(dp);
	while ((d = readdir(dp)) != NULL)
		if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
			n++;
	closedir(dp);
	ck_assert_msg(n == 0, "got %d entries in %s, want 0", n, s.data);
	sigterm_expect_exit_zero(&s);
	mst_client_free(c);
	free(body);
	s.pid = -1;
	server_stop(&s);
	srv.pid = -1;
}
END_TEST

/* Lines of |path| holding |text| (and |also|, unless NULL). */
static int
count_lines_with(const char *path, const char *also, const char *text)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int n = 0;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof line, f) != NULL)
		n += strstr(line, text) != NULL &&
		    (also == NULL || strstr(line, also) != NULL);
	fclose(f);
	return n;
}

/* Beyond max_connections a new connection is closed at once; when one
 * goes, a new one is served again. */
START_TEST(max_connections_is_enforced)
{
	struct server s;
	struct mst_client *a, *b, *c = NULL;
	struct mst_client_opts o = { .timeout_ms = REPLY_MS };
	char log[128], extra[192];
	int rc, deadline;

	snprintf(log, sizeof log, "/tmp/mst-check-maxconn.%d.log",
	    (int)getpid());
	snprintf(extra, sizeof extra, "max_connections = 2\nlog = %s\n",
	    log);
	ck_assert_int_eq(server_start(&s, 0, extra), 0);
	srv = s;
	/* server_start's probes may still hold slots: wait them out */
	deadline = now_ms() + REPLY_MS;
	do {
		a = b = NULL;
		rc = mst_client_connect(s.tcp_addr, &o, &a);
		if (rc == 0)
			rc = mst_client_connect(s.unix_addr, &o, &b);
		if (rc < 0)
			mst_client_free(a);
	} while (rc < 0 && now_ms() < deadline && usleep(50000) == 0);
	ck_assert_msg(rc == 0, "two connections: %s", strerror(-rc));
	rc = mst_client_connect(s.tcp_addr, &o, &c);
	ck_assert_msg(rc == -ECONNRESET || rc == -EPIPE,
	    "third connection: got %s, want it closed", strerror(-rc));
	mst_client_free(a);
	deadline = now_ms() + REPLY_MS;
	do
		rc = mst_client_connect(s.tcp_addr, &o, &c);
	while (rc < 0 && now_ms() < deadline && usleep(50000) == 0);
	ck_assert_int_eq(rc, 0);
	ping_ok(c, 11);
	ck_assert_int_eq(count_lines_with(log, NULL,
	    "max_connections (2) reached: refused"), 1);
	mst_client_free(b);
	mst_client_free(c);
	server_stop(&s);
	unlink(log);
}
END_TEST

/* The body nftw() looks for, and whether damage_body() found it. */
static const uint8_t *damage_pat;
static size_t damage_len;
static int damaged;

/* Flip one byte in the middle of the first copy of damage_pat in a
 * regular file under the data directory (the log segment holding it). */
static int
damage_body(const char *path, const struct stat *st, int type, struct FTW *f)
{
	uint8_t *buf, *hit, flip;
	int fd;

	(void)f;
	if (type != FTW_F || damaged || (size_t)st->st_size < damage_len)
		return 0;
	fd = open(path, O_RDWR);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	buf = malloc((size_t)st->st_size);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pread(fd, buf, (size_t)st->st_size, 0),
	    st->st_size);
	hit = memmem(buf, (size_t)st->st_size, damage_pat, damage_len);
	if (hit != NULL) {
		flip = (uint8_t)~hit[damage_len / 2];
		ck_assert_int_eq(pwrite(fd, &flip, 1,
		    (off_t)(hit - buf) + (off_t)damage_len / 2), 1);
		damaged = 1;
	}
	free(buf);
	close(fd);
	return 0;
}

/* A message body damaged on disk is answered EIO, and the server's log
 * names the operation that got it: no EIO reaches a client unlogged. */
START_TEST(eio_replies_are_logged)
{
	struct server s;
	struct mst_client *c;
	struct mst_get_req q = { .path = mst_str_of("e.example/io/new/m1"),
	    .length = 4096 };
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t *body = make_body(4096, 11), b[512];
	char log[128], extra[192];
	int n, deadline;

	snprintf(log, sizeof log, "/tmp/mst-check-eio.%d.log", (int)getpid());
	snprintf(extra, sizeof extra, "log = %s\n", log);
	ck_assert_int_eq(server_start(&s, 0, extra), 0);
	srv = s;
	c = client();
	ck_assert_int_eq(make_mailbox(c, "e.example/io"), 0);
	ck_assert_int_eq(deliver(c, "e.example/io", "m1", body, 4096,
	    mst_checksum(body, 4096), &h, &rp), 0);
	damage_pat = body;
	damage_len = 4096;
	damaged = 0;
	ck_assert_int_eq(nftw(s.data, damage_body, 16, FTW_PHYS), 0);
	ck_assert_msg(damaged, "the body was not found under %s", s.data);
	n = mst_get_req_encode(&q, b, sizeof b);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_GET, b, (size_t)n, &h,
	    &rp), -EIO);
	deadline = now_ms() + REPLY_MS;
	while (count_lines_with(log, NULL, "GET answered EIO") == 0 &&
	    now_ms() < deadline)
		usleep(20000);
	ck_assert_int_eq(count_lines_with(log, NULL, "GET answered EIO"), 1);
	ping_ok(c, 12);
	mst_client_free(c);
	free(body);
	server_stop(&s);
	srv.pid = -1;
	unlink(log);
}
END_TEST

/* SIGHUP reopens a log file that was moved away (rotation). */
START_TEST(sighup_reopens_the_log_file)
{
	struct server s;
	char extra[192], log[128], moved[144];
	struct stat st;
	int deadline, found = 0;

	snprintf(log, sizeof log, "/tmp/mst-check-hup.%d.log", (int)getpid());
	snprintf(moved, sizeof moved, "%s.1", log);
	snprintf(extra, sizeof extra, "log = %s\n", log);
	ck_assert_int_eq(server_start(&s, 0, extra), 0);
	ck_assert_int_eq(rename(log, moved), 0);
	ck_assert_int_eq(kill(s.pid, SIGHUP), 0);
	deadline = now_ms() + REPLY_MS;
	while (!found && now_ms() < deadline) {
		found = stat(log, &st) == 0 && st.st_size > 0;
		usleep(20000);
	}
	server_stop(&s);
	unlink(log);
	unlink(moved);
	ck_assert_msg(found, "no new log file after SIGHUP");
}
END_TEST

/* Without --foreground: the parent exits 0 once the daemon serves. The
 * daemon is found by its socket's peer credentials and stopped. */
START_TEST(daemon_detaches_once_serving)
{
	struct server s;
	char log[128], conf_extra[160];
	const char *args[] = { "--data", s.data, "--listen", s.unix_addr,
		"--config", s.conf, NULL };
	static char out[4096];
	struct ucred cred = { 0 };
	socklen_t cl = sizeof cred;
	int st, fd, gone = 0, deadline;
	struct stat sb;

	snprintf(log, sizeof log, "/tmp/mst-check-daemon.%d.log",
	    (int)getpid());
	snprintf(conf_extra, sizeof conf_extra, "log = %s\n", log);
	server_prepare(&s, 0, conf_extra);
	st = run_mstored(args, out, sizeof out);
	fd = st == 0 ? raw_connect(s.unix_addr) : -1;
	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred,
	    &cl) == 0 && cred.pid > 0) {
		kill(cred.pid, SIGTERM);
		deadline = now_ms() + START_MS;
		while (!gone && now_ms() < deadline) {
			gone = stat(s.sock, &sb) < 0;
			usleep(20000);
		}
		if (!gone)
			kill(cred.pid, SIGKILL);
	}
	if (fd >= 0)
		close(fd);
	rm_rf(s.dir);
	unlink(log);
	ck_assert_msg(st == 0, "exit %d, want 0; output:\n%s", st, out);
	ck_assert_msg(cred.pid > 0, "no daemon behind %s", s.unix_addr);
	ck_assert_msg(gone, "daemon %d did not stop on SIGTERM",
	    (int)cred.pid);
}
END_TEST

/* ---- safe defaults, limits and privileges ---- */

/* Start mstored with |args| and tell whether |addr| came to accept
 * connections; the server is stopped at once either way. */
static int
serves_then_stop(const char *const *args, const char *addr)
{
	pid_t pid = spawn(args, -1);
	int deadline = now_ms() + START_MS, up = 0;

	while (!up && now_ms() < deadline &&
	    waitpid(pid, NULL, WNOHANG) != pid) {
		up = can_connect(addr);
		if (!up)
			usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return up;
}

/* 0.0.0.0 reaches beyond this host: no key means no start, unless the
 * operator says --insecure; with a key it starts. */
START_TEST(non_loopback_listen_needs_a_key_or_insecure)
{
	struct server s;
	char any[32], local[32], want[96];
	int port = free_port();
	const char *plain[] = { "--foreground", "--data", s.data, "--listen",
		any, "--config", s.conf, NULL };
	const char *insecure[] = { "--foreground", "--insecure", "--data",
		s.data, "--listen", any, "--config", s.conf, NULL };

	snprintf(any, sizeof any, "0.0.0.0:%d", port);
	snprintf(local, sizeof local, "127.0.0.1:%d", port);
	snprintf(want, sizeof want, "refusing to listen on %s without a key",
	    any);
	server_prepare(&s, 0, NULL);
	expect_run(plain, 2, want);
	ck_assert_msg(serves_then_stop(insecure, local),
	    "--insecure: did not serve on %s", any);
	rm_rf(s.dir);
	server_prepare(&s, SRV_KEY, NULL);
	ck_assert_msg(serves_then_stop(plain, local),
	    "with key_file: did not serve on %s", any);
	rm_rf(s.dir);
}
END_TEST

/* A key file that group or others may read is no secret: every loader
 * refuses it, and mstored does not start. */
START_TEST(key_file_readable_by_others_is_refused)
{
	struct server s;
	const char *args[] = { "--foreground", "--data", s.data, "--listen",
		s.unix_addr, "--config", s.conf, NULL };
	uint8_t key[MST_KEY_MAX];
	static const mode_t bad[] = { 0640, 0604, 0620, 0602 };
	size_t i;

	server_prepare(&s, SRV_KEY, NULL);
	ck_assert_int_eq(mst_key_load(s.key, key, sizeof key),
	    (int)strlen(TEST_KEY));
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_int_eq(chmod(s.key, bad[i]), 0);
		ck_assert_msg(mst_key_load(s.key, key, sizeof key) == -EPERM,
		    "mode %o: got %d, want -EPERM", (unsigned)bad[i],
		    mst_key_load(s.key, key, sizeof key));
	}
	ck_assert_int_eq(chmod(s.key, 0640), 0);
	expect_run(args, 1, "group or others have access to it");
	ck_assert_int_eq(chmod(s.key, 0400), 0);
	ck_assert_int_eq(mst_key_load(s.key, key, sizeof key),
	    (int)strlen(TEST_KEY));
	rm_rf(s.dir);
}
END_TEST

#define NEXT_KEY	"the next key, after rotation"

/* While key_file and key_file_next are both set, a client with either
 * key gets in (and verifies the server's proof); any other key does not. */
START_TEST(rotation_accepts_the_old_and_the_new_key)
{
	struct server s;
	char next[64], extra[128];
	struct mst_client *a, *b, *c = NULL;
	struct mst_client_opts o = {
		.key = (const uint8_t *)"neither of them",
		.keylen = 15,
		.timeout_ms = REPLY_MS,
	};

	snprintf(next, sizeof next, "/tmp/mst-check-next.%d", (int)getpid());
	write_file(next, NEXT_KEY "\n");
	ck_assert_int_eq(chmod(next, 0600), 0);
	snprintf(extra, sizeof extra, "key_file_next = %s\n", next);
	ck_assert_int_eq(server_start(&s, SRV_KEY, extra), 0);
	srv = s;
	a = client_at(s.tcp_addr, TEST_KEY, 0);
	b = client_at(s.tcp_addr, NEXT_KEY, 0);
	ping_ok(a, 1);
	ping_ok(b, 2);
	ck_assert_int_eq(mst_client_connect(s.tcp_addr, &o, &c), -EACCES);
	mst_client_free(a);
	mst_client_free(b);
	server_stop(&s);
	srv.pid = -1;
	unlink(next);
}
END_TEST


/* A guesser does not fill the log: one line per peer address per
 * window, however many attempts, then the count of the others; every
 * attempt still fails. */
START_TEST(failed_logins_are_logged_once_per_peer_window)
{
	struct server s;
	char log[128], extra[160];
	struct mst_client *c = NULL;
	struct mst_client_opts o = {
		.key = (const uint8_t *)"wrong key",
		.keylen = 9,
		.timeout_ms = REPLY_MS,
	};
	int i;

	snprintf(log, sizeof log, "/tmp/mst-check-auth.%d.log",
	    (int)getpid());
	snprintf(extra, sizeof extra, "log = %s\n", log);
	ck_assert_int_eq(server_start(&s, SRV_KEY, extra), 0);
	srv = s;
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(mst_client_connect(s.tcp_addr, &o, &c),
		    -EACCES);
	c = client_at(s.tcp_addr, TEST_KEY, 0);	/* the log is written */
	ping_ok(c, 3);
	mst_client_free(c);
	ck_assert_int_eq(count_lines_with(log, NULL,
	    "authentication failed"), 1);
	ck_assert_msg(count_lines_with(log, "(127.0.0.1:",
	    "): authentication failed") == 1,
	    "the failure line names no peer address");
	/* The count of those not logged is reported by the next minute,
	 * or at the latest when the server stops. */
	ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
	ck_assert_int_ge(wait_exit(s.pid, START_MS), 0);
	s.pid = -1;
	ck_assert_int_eq(count_lines_with(log, NULL,
	    "authentication failed 4 more time(s) from 127.0.0.1 "), 1);
	server_stop(&s);
	srv.pid = -1;
	unlink(log);
}
END_TEST

/* Time until the server closes |fd|, in ms, or -1 after REPLY_MS. */
static int
ms_until_closed(int fd)
{
	int64_t t0 = now_ms();

	return peer_closed(fd) ? (int)(now_ms() - t0) : -1;
}

/* A peer that sends part of a frame, or starts a body and sends no
 * more DATA, or never finishes its handshake, is cut off after its
 * timeout, while another client is served all along. */
START_TEST(stalled_senders_are_cut_off_others_are_served)
{
	struct server s;
	struct mst_client *a, *b, *c, *ok;
	uint8_t hb[MST_HDR_LEN], head[1024];
	int fd, ms, hl;

	ck_assert_int_eq(server_start(&s, 0, "read_timeout = 1\n"
	    "handshake_timeout = 2\n"), 0);
	srv = s;
	ok = client_at(s.unix_addr, NULL, 0);

	/* half a header */
	a = client_at(s.tcp_addr, NULL, 0);
	put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_PING, 0, 9, 8);
	raw_write(mst_client_fd(a), hb, 7);
	/* a whole header, half its payload */
	b = client_at(s.tcp_addr, NULL, 0);
	raw_write(mst_client_fd(b), hb, sizeof hb);
	raw_write(mst_client_fd(b), "1234", 4);
	/* a body begun, no DATA after it */
	c = client_at(s.tcp_addr, NULL, 0);
	hl = deliver_head(head, sizeof head, "t.example/al", "stall", 10, 0);
	memcpy(head + hl, "hello", 5);
	ck_assert_int_eq(mst_client_send(c, MST_OP_DELIVER, MST_F_MORE, 5,
	    head, (size_t)hl + 5), 0);
	/* no handshake at all */
	fd = raw_connect(s.tcp_addr);

	ping_ok(ok, 20);
	ms = ms_until_closed(mst_client_fd(a));
	ck_assert_msg(ms >= 0, "half a header: not closed");
	ms = ms_until_closed(mst_client_fd(b));
	ck_assert_msg(ms >= 0, "half a payload: not closed");
	ms = ms_until_closed(mst_client_fd(c));
	ck_assert_msg(ms >= 0, "stalled body: not closed");
	ping_ok(ok, 21);
	ms = ms_until_closed(fd);
	ck_assert_msg(ms >= 0, "no handshake: not closed");
	ping_ok(ok, 22);
	close(fd);
	mst_client_free(a);
	mst_client_free(b);
	mst_client_free(c);
	mst_client_free(ok);
	server_stop(&s);
	srv.pid = -1;
}
END_TEST

/* The read deadline is for the whole frame: trickling one byte at a
 * time does not extend it. */
START_TEST(trickled_frame_is_cut_off_at_read_timeout)
{
	struct server s;
	struct mst_client *a;
	uint8_t hb[MST_HDR_LEN];
	int64_t t0;
	int i, closed = 0;

	ck_assert_int_eq(server_start(&s, 0, "read_timeout = 2\n"), 0);
	srv = s;
	a = client_at(s.tcp_addr, NULL, 0);
	put_hdr(hb, MST_MAGIC, MST_VERSION, MST_OP_PING, 0, 9, 8);
	t0 = now_ms();
	for (i = 0; i < (int)sizeof hb && !closed; i++) {
		if (send(mst_client_fd(a), hb + i, 1, MSG_NOSIGNAL) != 1)
			closed = 1;
		usleep(400000);
	}
	ck_assert_msg(closed || peer_closed(mst_client_fd(a)),
	    "a trickling sender was not cut off");
	ck_assert_msg(now_ms() - t0 < 6000,
	    "cut off after %d ms, want about 2000",
	    (int)(now_ms() - t0));
	mst_client_free(a);
	server_stop(&s);
	srv.pid = -1;
}
END_TEST

/* idle_timeout closes a connection with nothing pending; a watcher's
 * silence is its normal state, so a watcher stays. */
START_TEST(idle_timeout_spares_watchers)
{
	struct server s;
	struct mst_client *idle, *watcher;
	struct mst_path_req q = { .path = mst_str_of("") };	/* the root */
	const uint8_t *rp;
	struct mst_hdr h;
	uint8_t b[128];
	int n = mst_path_req_encode(&q, b, sizeof b);

	ck_assert_int_eq(server_start(&s, 0, "idle_timeout = 1\n"), 0);
	srv = s;
	idle = client_at(s.tcp_addr, NULL, 0);
	watcher = client_at(s.tcp_addr, NULL, 0);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call(watcher, MST_OP_WATCH, b, (size_t)n,
	    &h, &rp), 0);
	ck_assert_msg(peer_closed(mst_client_fd(idle)),
	    "idle connection left open");
	ping_ok(watcher, 30);
	mst_client_free(idle);
	mst_client_free(watcher);
	server_stop(&s);
	srv.pid = -1;
}
END_TEST

/* "Uid:\t65534\t65534\t65534\t65534" and the like from /proc. */
static int
proc_status_has(pid_t pid, const char *line_start)
{
	char path[64], line[256];
	FILE *f;
	int found = 0;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof line, f) != NULL)
		found = strncmp(line, line_start, strlen(line_start)) == 0;
	fclose(f);
	return found;
}

/* --user: as root, mstored serves as that user (real, effective, saved
 * and file-system ids), with no supplementary groups left; a data
 * directory that user cannot write is a clear start-up error. Not as
 * root, --user is refused with a reason. */
START_TEST(user_drops_root_after_binding)
{
	struct server s;
	const char *args[] = { "--foreground", "--user", "nobody", "--data",
		s.data, "--listen", s.unix_addr, "--listen", s.tcp_addr,
		"--config", s.conf, NULL };
	struct mst_client *c;
	int deadline, up = 0;
	pid_t pid;

	server_prepare(&s, 0, NULL);
	snprintf(s.tcp_addr, sizeof s.tcp_addr, "127.0.0.1:%d", free_port());
	if (geteuid() != 0) {
		expect_run(args, 2, "only root can change to another user");
		rm_rf(s.dir);
		return;
	}
	ck_assert_int_eq(chmod(s.dir, 0711), 0);
	expect_run(args, 1, "not usable by user nobody");
	ck_assert_int_eq(chown(s.data, 65534, 65534), 0);
	pid = spawn(args, -1);
	deadline = now_ms() + START_MS;
	while (!up && now_ms() < deadline &&
	    waitpid(pid, NULL, WNOHANG) != pid) {
		up = can_connect(s.unix_addr) && can_connect(s.tcp_addr);
		if (!up)
			usleep(20000);
	}
	srv = s;
	srv.pid = up ? pid : -1;
	if (up) {
		c = client_at(s.tcp_addr, NULL, 0);
		ping_ok(c, 40);
		mst_client_free(c);
	}
	ck_assert_msg(up, "mstored --user nobody did not serve");
	ck_assert_msg(proc_status_has(pid,
	    "Uid:\t65534\t65534\t65534\t65534"), "uids are not nobody's");
	ck_assert_msg(proc_status_has(pid,
	    "Gid:\t65534\t65534\t65534\t65534"), "gids are not nobody's");
	ck_assert_msg(proc_status_has(pid, "Groups:\t65534"),
	    "supplementary groups left");
	server_stop(&s);
	srv.pid = -1;
}
END_TEST

/* ---- conf.c, directly ---- */

START_TEST(sizes_parse_with_suffixes)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t want;
	} cases[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "64K", 0, 64u << 10 },
		{ "64k", 0, 64u << 10 },
		{ "3M", 0, 3u << 20 },
		{ "1G", 0, 1u << 30 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "17179869183G", 0, 17179869183ull << 30 },
		{ "17179869184G", -EINVAL, 0 },		/* 2^64 */
		{ "99999999999999999999", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1KB", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
		{ "1T", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
	};
	uint64_t v;
	size_t i;
	int rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		v = 0;
		rc = conf_parse_size(cases[i].in, &v);
		ck_assert_msg(rc == cases[i].rc, "\"%s\": got rc %d, want %d",
		    cases[i].in, rc, cases[i].rc);
		if (rc == 0)
			ck_assert_msg(v == cases[i].want, "\"%s\": got %llu, "
			    "want %llu", cases[i].in, (unsigned long long)v,
			    (unsigned long long)cases[i].want);
	}
}
END_TEST

START_TEST(keys_check_their_values)
{
	static const struct {
		const char *key, *value;
		int rc;
	} cases[] = {
		{ "max_frame", "64K", 0 },
		{ "max_frame", "1K", -EINVAL },
		{ "max_frame", "17M", -EINVAL },
		{ "max_message_size", "0", -EINVAL },
		{ "max_message_size", "4G", 0 },
		{ "max_message_size", "5G", -EINVAL },
		{ "readers", "0", -EINVAL },
		{ "readers", "4", 0 },
		{ "readers", "4K", -EINVAL },
		{ "compact_percent", "101", -EINVAL },
		{ "quota_messages", "100000", 0 },
		{ "log_level", "debug", 0 },
		{ "log_level", "verbose", -EINVAL },
		{ "listen", "unix:/run/x.sock", 0 },
		{ "listen", "[::1]:4870", 0 },
		{ "listen", "example.com:4870", -EINVAL },
		{ "listen", "127.0.0.1", -EINVAL },
		{ "key_file", "", -EINVAL },
		{ "key_file_next", "/etc/mstore/key.next", 0 },
		{ "user", "", -EINVAL },
		{ "user", "mstore", 0 },
		{ "max_connection_memory", "512K", -EINVAL },
		{ "max_connection_memory", "64M", 0 },
		{ "max_requests_per_connection", "0", -EINVAL },
		{ "max_requests_per_connection", "16", 0 },
		{ "handshake_timeout", "0", -EINVAL },
		{ "handshake_timeout", "5", 0 },
		{ "read_timeout", "3601", -EINVAL },
		{ "read_timeout", "7", 0 },
		{ "read_timeout", "7s", -EINVAL },
		{ "idle_timeout", "0", 0 },
		{ "colour", "blue", -ENOENT },
	};
	const char *why;
	struct conf c;
	size_t i;
	int rc;

	conf_init(&c);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		why = NULL;
		rc = conf_set(&c, cases[i].key, cases[i].value, &why);
		ck_assert_msg(rc == cases[i].rc, "%s = %s: got %d (%s), want "
		    "%d", cases[i].key, cases[i].value, rc, why ? why : "",
		    cases[i].rc);
		ck_assert_msg(rc == 0 || (why && *why), "%s: no reason",
		    cases[i].key);
	}
	ck_assert_uint_eq(c.max_frame, 64u << 10);
	ck_assert_uint_eq(c.max_message_size, 4ull << 30);
	ck_assert_int_eq(c.readers, 4);
	ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
	ck_assert_uint_eq(c.nlisten, 2);
	ck_assert_str_eq(c.key_file_next, "/etc/mstore/key.next");
	ck_assert_str_eq(c.user, "mstore");
	ck_assert_uint_eq(c.max_connection_memory, 64u << 20);
	ck_assert_int_eq(c.max_requests_per_connection, 16);
	ck_assert_int_eq(c.handshake_timeout, 5);
	ck_assert_int_eq(c.read_timeout, 7);
	ck_assert_int_eq(c.idle_timeout, 0);
	conf_free(&c);
}
END_TEST

/* The defaults mstore.conf(5) documents. */
START_TEST(limit_defaults_are_as_documented)
{
	struct conf c;

	conf_init(&c);
	ck_assert_int_eq(c.max_connections, 1024);
	ck_assert_uint_eq(c.max_connection_memory, 256u << 20);
	ck_assert_int_eq(c.max_requests_per_connection, 1024);
	ck_assert_int_eq(c.handshake_timeout, 30);
	ck_assert_int_eq(c.read_timeout, 30);
	ck_assert_int_eq(c.idle_timeout, 0);
	ck_assert_ptr_null(c.key_file_next);
	ck_assert_ptr_null(c.user);
	conf_free(&c);
}
END_TEST

START_TEST(config_file_lines_comments_and_overrides)
{
	char dir[] = "/tmp/mst-conf.XXXXXX", path[64];
	struct conf c;
	char *const cli[] = { "127.0.0.1:1" };

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/mstored.conf", dir);
	write_file(path,
	    "# comment\n"
	    "\n"
	    "   data = /srv/mail#1   # a '#' inside a value stays\n"
	    "listen = 127.0.0.1:4870\n"
	    "listen=unix:/run/mstored.sock\n"
	    "max_frame = 128K\n"
	    "max_frame = 256K\n"
	    "\tquota_file = quotas\r\n");
	conf_init(&c);
	ck_assert_int_eq(conf_load(&c, path), 0);
	ck_assert_str_eq(c.data, "/srv/mail#1");
	ck_assert_uint_eq(c.nlisten, 2);
	ck_assert_str_eq(c.listen[1], "unix:/run/mstored.sock");
	ck_assert_uint_eq(c.max_frame, 256u << 10);
	ck_assert_str_eq(c.quota_file, "quotas");
	/* The command line's addresses replace the file's. */
	ck_assert_int_eq(conf_set_listen(&c, cli, 1), 0);
	ck_assert_uint_eq(c.nlisten, 1);
	ck_assert_int_eq(conf_finish(&c), 0);
	ck_assert_msg(c.quota_file[0] == '/', "relative path kept: %s",
	    c.quota_file);
	conf_free(&c);

	write_file(path, "data = /srv\nlisten 127.0.0.1:1\n");
	conf_init(&c);
	ck_assert_int_eq(conf_load(&c, path), -EINVAL);
	conf_free(&c);
	rm_rf(dir);
}
END_TEST

START_TEST(finish_needs_data_and_adds_the_default_address)
{
	struct conf c;
	const char *why;

	conf_init(&c);
	ck_assert_int_eq(conf_finish(&c), -EDESTADDRREQ);
	ck_assert_int_eq(conf_set(&c, "data", "rel/dir", &why), 0);
	ck_assert_int_eq(conf_finish(&c), 0);
	ck_assert_uint_eq(c.nlisten, 1);
	ck_assert_str_eq(c.listen[0], CONF_DEFAULT_LISTEN);
	ck_assert_msg(c.data[0] == '/' && strstr(c.data, "/rel/dir"),
	    "data %s, want an absolute path", c.data);
	conf_free(&c);
}
END_TEST

/* tls_cert and tls_key are paths: the daemon's "/" must not change them. */
START_TEST(tls_files_are_made_absolute)
{
	struct conf c;
	const char *why;

	conf_init(&c);
	ck_assert_ptr_null(c.tls_cert);
	ck_assert_ptr_null(c.tls_key);
	ck_assert_int_eq(conf_set(&c, "data", "/srv", &why), 0);
	ck_assert_int_eq(conf_set(&c, "tls_cert", "certs/a.pem", &why), 0);
	ck_assert_int_eq(conf_set(&c, "tls_key", "/etc/k.pem", &why), 0);
	ck_assert_int_eq(conf_finish(&c), 0);
	ck_assert_msg(c.tls_cert[0] == '/' &&
	    strstr(c.tls_cert, "/certs/a.pem") != NULL,
	    "tls_cert %s, want an absolute path", c.tls_cert);
	ck_assert_str_eq(c.tls_key, "/etc/k.pem");
	conf_free(&c);
}
END_TEST

/* ---- TLS ---- */

/* Throwaway CA and certificates (tests/tls-certs.sh) for the "tls" test
 * case; removed by its teardown. */
static char tls_dir[64];

static void
tls_path(char *buf, size_t cap, const char *file)
{
	snprintf(buf, cap, "%s/%s", tls_dir, file);
}

static void
tls_make_certs(void)
{
	const char *src = getenv("srcdir");
	char cmd[512];

	snprintf(tls_dir, sizeof tls_dir, "/tmp/mst-tls.XXXXXX");
	if (mkdtemp(tls_dir) == NULL) {
		fprintf(stderr, "check_server: mkdtemp: %s\n", strerror(errno));
		exit(EXIT_FAILURE);
	}
	snprintf(cmd, sizeof cmd, "sh '%s/tests/tls-certs.sh' '%s'",
	    src && *src ? src : ".", tls_dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "check_server: %s failed\n", cmd);
		exit(EXIT_FAILURE);
	}
}

/* The config lines of a TLS server with the certificate |name|. */
static void
tls_conf(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "tls_cert = %s/%s.pem\ntls_key = %s/%s.key\n",
	    tls_dir, name, tls_dir, name);
}

static void
tls_setup(void)
{
	char extra[512];

	signal(SIGPIPE, SIG_IGN);	/* OpenSSL writes with write(2) */
	tls_make_certs();
	tls_conf(extra, sizeof extra, "server");
	server_start(&srv, SRV_KEY, extra);
}

static void
tls_teardown(void)
{
	shared_teardown();
	rm_rf(tls_dir);
}

/* Connect over TLS trusting |ca| (a file of tls_dir); the result code. */
static int
tls_connect(const char *addr, const char *ca, const char *key,
    struct mst_client **out)
{
	char cafile[128];
	struct mst_client_opts o = {
		.name = "check_server",
		.key = (const uint8_t *)key,
		.keylen = key ? strlen(key) : 0,
		.timeout_ms = REPLY_MS,
		.tls = 1,
		.cafile = cafile,
	};

	tls_path(cafile, sizeof cafile, ca);
	*out = NULL;
	return mst_client_connect(addr, &o, out);
}

static struct mst_client *
tls_client_at(const char *addr)
{
	struct mst_client *c;
	int rc;

	ck_assert_msg(srv.pid > 0, "mstored did not start; see the log");
	rc = tls_connect(addr, "ca.pem", TEST_KEY, &c);
	ck_assert_msg(rc == 0, "TLS connect %s: %s", addr,
	    mst_client_strerror(rc));
	return c;
}

/* "localhost:PORT" for the shared server's TCP address. */
static void
localhost_addr(char *buf, size_t cap)
{
	snprintf(buf, cap, "localhost%s", strrchr(srv.tcp_addr, ':'));
}

START_TEST(tls_with_the_right_ca_and_key_serves)
{
	struct mst_client *c = tls_client_at(srv.tcp_addr), *l;
	char addr[48];
	size_t n = 600u << 10;		/* several frames each way */
	char *body = malloc(n + 1);
	uint8_t *back = malloc(n);
	uint64_t id;
	size_t i;
	long got;

	ck_assert_ptr_nonnull(body);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(mst_client_hello(c)->features,
	    MST_FEAT_AUTH | MST_FEAT_WATCH | MST_FEAT_STAGE | MST_FEAT_SPOOL |
	    MST_FEAT_SOLE);
	ping_ok(c, 41);
	/* The name in the certificate also matches. */
	localhost_addr(addr, sizeof addr);
	l = tls_client_at(addr);
	ping_ok(l, 42);
	for (i = 0; i < n; i++)
		body[i] = (char)('a' + (i * 7 + i / 4099) % 26);
	body[n] = '\0';
	ck_assert_int_eq(make_mailbox(c, "tls.example/al"), 0);
	id = put_file(c, "tls.example/al/big", body);
	for (i = 0; i < n; i += (size_t)got) {
		got = read_at(l, id, i, back + i, n - i);
		ck_assert_int_gt(got, 0);
	}
	ck_assert_int_eq(memcmp(back, body, n), 0);
	free(body);
	free(back);
	mst_client_free(c);
	mst_client_free(l);
}
END_TEST

START_TEST(tls_still_needs_the_shared_key)
{
	struct mst_client *c;

	ck_assert_msg(srv.pid > 0, "mstored did not start");
	ck_assert_int_eq(tls_connect(srv.tcp_addr, "ca.pem", NULL, &c),
	    -EACCES);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(tls_connect(srv.tcp_addr, "ca.pem", "wrong key",
	    &c), -EACCES);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(tls_with_another_ca_is_refused)
{
	struct mst_client *c;
	int rc;

	ck_assert_msg(srv.pid > 0, "mstored did not start");
	rc = tls_connect(srv.tcp_addr, "other-ca.pem", TEST_KEY, &c);
	ck_assert_msg(rc == -EKEYREJECTED, "got %s", mst_client_strerror(rc));
	ck_assert_ptr_null(c);
	/* A CA file that holds no certificate, and one that is missing. */
	rc = tls_connect(srv.tcp_addr, "server.key", TEST_KEY, &c);
	ck_assert_msg(rc == -EBADMSG, "got %s", mst_client_strerror(rc));
	rc = tls_connect(srv.tcp_addr, "missing.pem", TEST_KEY, &c);
	ck_assert_int_eq(rc, -ENOENT);
	/* TLS is for TCP: the Unix socket stays plaintext. */
	ck_assert_int_eq(tls_connect(srv.unix_addr, "ca.pem", TEST_KEY, &c),
	    -EINVAL);
}
END_TEST

/* A plaintext client on the TLS port fails at once, and the TLS
 * connection open meanwhile and the Unix socket go on serving. */
START_TEST(plaintext_on_the_tls_port_fails_cleanly)
{
	struct mst_client *t = tls_client_at(srv.tcp_addr), *p = NULL;
	struct mst_client *u = client_at(srv.unix_addr, TEST_KEY, 0);
	struct mst_client_opts o = { .key = (const uint8_t *)TEST_KEY,
	    .keylen = strlen(TEST_KEY), .timeout_ms = REPLY_MS };
	int64_t t0 = now_ms();
	uint8_t junk[4096];
	int fd, rc;

	rc = mst_client_connect(srv.tcp_addr, &o, &p);
	ck_assert_msg(rc == -ECONNRESET || rc == -EPROTO,
	    "plaintext HELLO on the TLS port: %s", strerror(-rc));
	ck_assert_ptr_null(p);
	ck_assert_int_lt(now_ms() - t0, REPLY_MS / 2);
	/* Garbage too: the server closes that connection. */
	fd = raw_connect(srv.tcp_addr);
	memset(junk, 0x5a, sizeof junk);
	raw_write(fd, junk, sizeof junk);
	ck_assert(peer_closed(fd));
	close(fd);
	ping_ok(t, 51);
	ping_ok(u, 52);
	mst_client_free(t);
	mst_client_free(u);
}
END_TEST

/* A certificate from the right CA for another name is refused, by IP
 * address and by name. */
START_TEST(tls_certificate_for_another_name_is_refused)
{
	struct server s;
	struct mst_client *c;
	char extra[512], addr[48];
	int rc;

	tls_conf(extra, sizeof extra, "wrongname");
	ck_assert_int_eq(server_start(&s, SRV_KEY, extra), 0);
	rc = tls_connect(s.tcp_addr, "ca.pem", TEST_KEY, &c);
	ck_assert_msg(rc == -EKEYREJECTED, "by IP: %s",
	    mst_client_strerror(rc));
	snprintf(addr, sizeof addr, "localhost%s", strrchr(s.tcp_addr, ':'));
	rc = tls_connect(addr, "ca.pem", TEST_KEY, &c);
	ck_assert_msg(rc == -EKEYREJECTED, "by name: %s",
	    mst_client_strerror(rc));
	server_stop(&s);
}
END_TEST

/* Unusable TLS files stop the start with the file named. */
START_TEST(unusable_tls_files_exit_one)
{
	struct server s;
	char cert[128], key[128], wkey[128];
	const char *missing[] = { "--foreground", "--data", s.data,
		"--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key",
		"/nonexistent/tls.key", NULL };
	const char *mismatch[] = { "--foreground", "--data", s.data,
		"--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key",
		wkey, NULL };
	const char *alone[] = { "--foreground", "--data", s.data,
		"--listen", "127.0.0.1:0", "--tls-cert", cert, NULL };
	const char *notcert[] = { "--foreground", "--data", s.data,
		"--listen", "127.0.0.1:0", "--tls-cert", key, "--tls-key",
		key, NULL };

	tls_path(cert, sizeof cert, "server.pem");
	tls_path(key, sizeof key, "server.key");
	tls_path(wkey, sizeof wkey, "wrongname.key");
	server_prepare(&s, 0, NULL);
	expect_run(missing, 1, "tls_key /nonexistent/tls.key");
	expect_run(mismatch, 1, "does not match tls_cert");
	expect_run(alone, 1, "tls_cert and tls_key go together");
	expect_run(notcert, 1, "tls_cert ");
	server_stop(&s);
}
END_TEST

static Suite *
server_suite(void)
{
	Suite *s = suite_create("server");
	TCase *tc = tcase_create("server");
	TCase *tk = tcase_create("locks");
	TCase *to = tcase_create("files");
	TCase *ta = tcase_create("auth");
	TCase *tl = tcase_create("lifecycle");
	TCase *tf = tcase_create("conf");
	TCase *tt = tcase_create("tls");

	tcase_add_unchecked_fixture(tc, plain_setup, shared_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, hello_and_ping_over_tcp_and_unix);
	tcase_add_test(tc, hello_max_frame_is_the_smaller_one);
	tcase_add_test(tc, request_before_hello_is_refused);
	tcase_add_test(tc, second_hello_is_an_error_not_a_close);
	tcase_add_loop_test(tc, garbage_closes_only_that_connection, 0,
	    G_COUNT);
	tcase_add_test(tc, unknown_opcode_is_an_error_not_a_close);
	tcase_add_test(tc, malformed_payload_is_an_error_not_a_close);
	tcase_add_test(tc, pipelined_pings_are_answered_by_id);
	tcase_add_test(tc, client_that_does_not_read_is_paused_not_dropped);
	tcase_add_test(tc, requests_beyond_the_job_limit_are_all_answered);
	tcase_add_loop_test(tc, replies_into_a_full_socket_arrive_whole_and_once,
	    0, 2);
	tcase_add_test(tc, deliver_with_bad_checksum_is_ebadmsg);
	tcase_add_test(tc, deliver_over_max_message_size_is_efbig);
	tcase_add_test(tc, declared_huge_body_is_efbig_when_the_frames_end);
	tcase_add_test(tc, body_frames_not_adding_up_are_eproto);
	tcase_add_test(tc, multi_frame_deliver_reaches_the_engine);
	tcase_add_test(tc, staged_body_spans_frames_and_commit_names_it);
	tcase_add_test(tc, spooled_body_is_delivered_by_its_commit_only);
	tcase_add_test(tc, interleaved_bodies_are_kept_apart);
	tcase_add_test(tc, unwatch_of_an_unwatched_path_is_enoent);
	tcase_add_test(tc, watcher_is_notified_of_a_delivery);
	tcase_add_test(tc,
	    watch_during_a_burst_misses_nothing_and_repeats_nothing);
	tcase_add_test(tc, admin_work_needs_the_unix_socket_without_a_key);
	suite_add_tcase(s, tc);

	tcase_add_unchecked_fixture(tk, plain_setup, shared_teardown);
	tcase_set_timeout(tk, 60);
	tcase_add_test(tk, setlk_conflict_across_connections_is_eagain);
	tcase_add_test(tk, setlkw_waits_and_is_granted_when_the_holder_unlocks);
	tcase_add_test(tk,
	    setlkw_is_granted_when_the_holders_connection_closes);
	tcase_add_test(tk, cancelled_setlkw_fails_with_eintr);
	tcase_add_test(tk, setlkw_that_would_deadlock_is_edeadlk);
	tcase_add_test(tk, lock_granted_at_unlock_follows_the_holders_notices);
	tcase_add_test(tk, malformed_lock_is_einval_not_a_close);
	suite_add_tcase(s, tk);

	tcase_add_unchecked_fixture(to, plain_setup, shared_teardown);
	tcase_set_timeout(to, 60);
	tcase_add_test(to, write_is_read_through_another_connection);
	tcase_add_test(to, write_with_a_bad_checksum_is_ebadmsg);
	tcase_add_test(to, open_file_survives_unlink_until_close);
	tcase_add_test(to, connection_end_closes_what_it_opened);
	tcase_add_test(to, link_fsetattr_and_a_second_name);
	tcase_add_test(to, every_path_carrying_op_checks_its_path);
	tcase_add_test(to, put_and_write_over_max_message_size_are_efbig);
	suite_add_tcase(s, to);

	tcase_add_unchecked_fixture(ta, auth_setup, shared_teardown);
	tcase_set_timeout(ta, 60);
	tcase_add_test(ta, auth_with_the_right_key_succeeds);
	tcase_add_test(ta, auth_with_a_wrong_key_is_eacces);
	tcase_add_test(ta, auth_without_a_key_fails);
	tcase_add_test(ta, admin_work_is_allowed_after_auth);
	tcase_add_loop_test(ta, server_refuses_and_closes_without_valid_auth,
	    0, 2);
	suite_add_tcase(s, ta);

	tcase_set_timeout(tl, 120);
	tcase_add_unchecked_fixture(tt, tls_setup, tls_teardown);
	tcase_set_timeout(tt, 120);
	tcase_add_test(tt, tls_with_the_right_ca_and_key_serves);
	tcase_add_test(tt, tls_still_needs_the_shared_key);
	tcase_add_test(tt, tls_with_another_ca_is_refused);
	tcase_add_test(tt, plaintext_on_the_tls_port_fails_cleanly);
	tcase_add_test(tt, tls_certificate_for_another_name_is_refused);
	tcase_add_test(tt, unusable_tls_files_exit_one);
	suite_add_tcase(s, tt);

	tcase_add_test(tl, help_and_version_exit_zero);
	tcase_add_test(tl, bad_usage_exits_two);
	tcase_add_test(tl, memory_backend_serves_and_writes_no_file);
	tcase_add_test(tl, unworkable_security_settings_are_refused);
	tcase_add_test(tl, bad_config_exits_two_naming_file_and_line);
	tcase_add_test(tl, unusable_files_exit_one);
	tcase_add_test(tl, address_in_use_exits_one);
	tcase_add_test(tl, live_unix_socket_is_not_taken_over);
	tcase_add_test(tl, sigterm_exits_zero);
	tcase_add_test(tl, max_connections_is_enforced);
	tcase_add_test(tl, eio_replies_are_logged);
	tcase_add_test(tl, sighup_reopens_the_log_file);
	tcase_add_test(tl, daemon_detaches_once_serving);
	tcase_add_test(tl, non_loopback_listen_needs_a_key_or_insecure);
	tcase_add_test(tl, key_file_readable_by_others_is_refused);
	tcase_add_test(tl, rotation_accepts_the_old_and_the_new_key);
	tcase_add_test(tl, failed_logins_are_logged_once_per_peer_window);
	tcase_add_test(tl, stalled_senders_are_cut_off_others_are_served);
	tcase_add_test(tl, trickled_frame_is_cut_off_at_read_timeout);
	tcase_add_test(tl, idle_timeout_spares_watchers);
	tcase_add_test(tl, user_drops_root_after_binding);
	suite_add_tcase(s, tl);

	tcase_add_test(tf, sizes_parse_with_suffixes);
	tcase_add_test(tf, keys_check_their_values);
	tcase_add_test(tf, limit_defaults_are_as_documented);
	tcase_add_test(tf, config_file_lines_comments_and_overrides);
	tcase_add_test(tf, finish_needs_data_and_adds_the_default_address);
	tcase_add_test(tf, tls_files_are_made_absolute);
	suite_add_tcase(s, tf);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(server_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
