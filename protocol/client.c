/*
 * client.c - blocking protocol client: connect, optional TLS (chain and
 * host name verified against a CA file), HELLO/AUTH, framed send/receive
 * with timeouts. Owns its socket, its TLS session and one receive buffer;
 * never interprets payloads beyond HELLO, AUTH and NOTIFY. Every byte
 * goes through mst_client_read/mst_client_write, so TLS and plaintext
 * share one path.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mstclient.h"

struct mst_client {
	int fd;
	SSL_CTX *tls_ctx;
	SSL *tls;		/* NULL: plaintext */
	uint8_t *gather;	/* TLS: iovecs gathered into one record */
	int timeout_ms;
	uint32_t max_frame;
	uint32_t next_id;
	uint8_t *rbuf;		/* one payload, max_frame bytes */
	uint8_t *sbuf;		/* header + one payload */
	struct mst_hello_rep hello;
	char server[128];	/* hello.server points here */
	mst_notice_fn *notice;
	void *notice_arg;
};

int
mst_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len_out)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	char host[64];
	const char *colon;
	char *end;
	unsigned long port;
	size_t hl;

	memset(ss, 0, sizeof *ss);
	if (strncmp(s, "unix:", 5) == 0) {
		if (s[5] == '\0')
			return -EINVAL;
		if (strlen(s + 5) >= sizeof un->sun_path)
			return -ENAMETOOLONG;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s + 5);
		*len_out = sizeof *un;
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon == NULL || colon == s)
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno || port > 65535)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[' && colon[-1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof host)
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len_out = sizeof *in4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len_out = sizeof *in6;
		return 0;
	}
	return -EINVAL;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until |fd| is ready for |ev| or the deadline passes. */
static int
wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int64_t left;
	int rc;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* What a failed SSL_read/SSL_write/SSL_connect returning |r| means:
 * -EAGAIN with *ev set to the poll event to wait for, or an error. */
static int
tls_result(SSL *s, int r, short *ev)
{
	int e = SSL_get_error(s, r), err = errno;
	unsigned long why = ERR_peek_error();

	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_WANT_READ:
		*ev = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*ev = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		if (err == EINTR) {
			*ev = 0;
			return -EAGAIN;
		}
		if (r == 0 || err == 0 || err == EPIPE || err == EAGAIN)
			return -ECONNRESET;
		return -err;
	default:
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
		if (ERR_GET_REASON(why) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return -ECONNRESET;	/* closed without close_notify */
#endif
		return -EPROTO;
	}
}

ssize_t
mst_client_write(struct mst_client *c, const void *p, size_t n, short *ev)
{
	ssize_t w;
	int r;

	*ev = POLLOUT;
	if (c->tls != NULL) {
		r = SSL_write(c->tls, p, n > INT32_MAX ? INT32_MAX : (int)n);
		return r > 0 ? r : tls_result(c->tls, r, ev);
	}
	w = send(c->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return w;
	if (errno == EINTR || errno == EAGAIN)
		return -EAGAIN;
	return errno == EPIPE ? -ECONNRESET : -errno;
}

ssize_t
mst_client_read(struct mst_client *c, void *p, size_t n, short *ev)
{
	ssize_t r;
	int t;

	*ev = POLLIN;
	if (c->tls != NULL) {
		t = SSL_read(c->tls, p, n > INT32_MAX ? INT32_MAX : (int)n);
		return t > 0 ? t : tls_result(c->tls, t, ev);
	}
	r = recv(c->fd, p, n, MSG_DONTWAIT);
	if (r > 0)
		return r;
	if (r == 0)
		return -ECONNRESET;
	if (errno == EINTR || errno == EAGAIN)
		return -EAGAIN;
	return -errno;
}

#define GATHER_MAX	16384	/* one TLS record */

ssize_t
mst_client_writev(struct mst_client *c, const struct iovec *iov, int n,
    short *ev)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov,
	    .msg_iovlen = (size_t)n };
	size_t len = 0, k;
	ssize_t w;
	int i;

	*ev = POLLOUT;
	if (c->tls == NULL) {
		w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w >= 0)
			return w;
		if (errno == EINTR || errno == EAGAIN)
			return -EAGAIN;
		return errno == EPIPE ? -ECONNRESET : -errno;
	}
	if (n == 1 || iov[0].iov_len >= GATHER_MAX)
		return mst_client_write(c, iov[0].iov_base, iov[0].iov_len,
		    ev);
	/* A frame header and the start of its payload in one record. The
	 * same iovecs gather the same bytes, as a retried SSL_write needs. */
	for (i = 0; i < n && len < GATHER_MAX; i++) {
		k = iov[i].iov_len < GATHER_MAX - len ? iov[i].iov_len :
		    GATHER_MAX - len;
		memcpy(c->gather + len, iov[i].iov_base, k);
		len += k;
	}
	return mst_client_write(c, c->gather, len, ev);
}

int
mst_client_tls(const struct mst_client *c)
{
	return c->tls != NULL;
}

size_t
mst_client_pending(const struct mst_client *c)
{
	return c->tls != NULL ? (size_t)SSL_pending(c->tls) : 0;
}

/* The one place that handles EINTR and short writes. */
static int
write_all(struct mst_client *c, const uint8_t *p, size_t n)
{
	int64_t deadline = now_ms() + c->timeout_ms;
	ssize_t w;
	short ev;
	int rc;

	while (n > 0) {
		w = mst_client_write(c, p, n, &ev);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w != -EAGAIN)
			return w < 0 ? (int)w : -EIO;
		if (ev == 0)
			continue;
		rc = wait_fd(c->fd, ev, deadline);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The one place that handles EINTR and short reads. */
static int
read_all(struct mst_client *c, uint8_t *p, size_t n, int64_t deadline)
{
	ssize_t r;
	short ev;
	int rc;

	while (n > 0) {
		r = mst_client_read(c, p, n, &ev);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r != -EAGAIN)
			return (int)r;
		if (ev == 0)
			continue;
		rc = wait_fd(c->fd, ev, deadline);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int
mst_client_send(struct mst_client *c, unsigned op, unsigned flags,
    uint32_t id, const void *payload, size_t len)
{
	struct mst_hdr h = {
		.version = MST_VERSION,
		.op = (uint8_t)op,
		.flags = (uint16_t)flags,
		.id = id,
		.len = (uint32_t)len,
	};

	if (len > c->max_frame)
		return -EMSGSIZE;
	mst_hdr_encode(&h, c->sbuf, MST_HDR_LEN);
	if (len && payload != c->sbuf + MST_HDR_LEN)
		memcpy(c->sbuf + MST_HDR_LEN, payload, len);
	return write_all(c, c->sbuf, MST_HDR_LEN + len);
}

int
mst_client_recv(struct mst_client *c, struct mst_hdr *h,
    const uint8_t **payload_out)
{
	uint8_t hb[MST_HDR_LEN];
	int64_t deadline = now_ms() + c->timeout_ms;
	int rc;

	rc = read_all(c, hb, sizeof hb, deadline);
	if (rc < 0)
		return rc;
	rc = mst_hdr_decode(h, hb, sizeof hb, c->max_frame);
	if (rc < 0)
		return rc;
	rc = read_all(c, c->rbuf, h->len, deadline);
	if (rc < 0)
		return rc;
	*payload_out = c->rbuf;
	return 0;
}

void
mst_client_on_notice(struct mst_client *c, mst_notice_fn *fn, void *arg)
{
	c->notice = fn;
	c->notice_arg = arg;
}

static int
await_reply(struct mst_client *c, uint32_t id, struct mst_hdr *h,
    const uint8_t **reply_out)
{
	struct mst_notify n;
	int rc;

	for (;;) {
		rc = mst_client_recv(c, h, reply_out);
		if (rc < 0)
			return rc;
		if (h->flags & MST_F_NOTICE) {
			if (c->notice && h->op == MST_OP_NOTIFY &&
			    mst_notify_decode(&n, *reply_out, h->len) == 0)
				c->notice(c->notice_arg, &n);
			continue;
		}
		if (!(h->flags & MST_F_REPLY) || h->id != id)
			return -EPROTO;	/* blocking use: one request at a time */
		return -mst_status_to_errno(h->status);
	}
}

int
mst_client_call(struct mst_client *c, unsigned op, const void *payload,
    size_t len, struct mst_hdr *h, const uint8_t **reply_out)
{
	uint32_t id = mst_client_next_id(c);
	int rc = mst_client_send(c, op, 0, id, payload, len);

	if (rc < 0)
		return rc;
	return await_reply(c, id, h, reply_out);
}

int
mst_client_call_body(struct mst_client *c, unsigned op, const void *head,
    size_t headlen, const void *body, size_t bodylen, struct mst_hdr *h,
    const uint8_t **reply_out)
{
	uint32_t id = mst_client_next_id(c);
	const uint8_t *b = body;
	size_t room, chunk;
	unsigned more;
	int rc;

	if (headlen > c->max_frame)
		return -EMSGSIZE;
	room = c->max_frame - headlen;
	chunk = bodylen < room ? bodylen : room;
	more = chunk < bodylen ? MST_F_MORE : 0;
	memcpy(c->sbuf + MST_HDR_LEN, head, headlen);
	if (chunk)
		memcpy(c->sbuf + MST_HDR_LEN + headlen, b, chunk);
	rc = mst_client_send(c, op, more, id, c->sbuf + MST_HDR_LEN,
	    headlen + chunk);
	b += chunk;
	bodylen -= chunk;
	while (rc == 0 && bodylen > 0) {
		chunk = bodylen < c->max_frame ? bodylen : c->max_frame;
		bodylen -= chunk;
		rc = mst_client_send(c, MST_OP_DATA, bodylen ? MST_F_MORE : 0,
		    id, b, chunk);
		b += chunk;
	}
	if (rc < 0)
		return rc;
	return await_reply(c, id, h, reply_out);
}

uint32_t
mst_client_next_id(struct mst_client *c)
{
	if (++c->next_id == 0)
		c->next_id = 1;
	return c->next_id;
}

int
mst_client_fd(const struct mst_client *c)
{
	return c->fd;
}

uint32_t
mst_client_max_frame(const struct mst_client *c)
{
	return c->max_frame;
}

const struct mst_hello_rep *
mst_client_hello(const struct mst_client *c)
{
	return &c->hello;
}

static int
open_socket(struct mst_client *c, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, rc, err;
	socklen_t el = sizeof err;

	rc = mst_addr_parse(addr, &ss, &sl);
	if (rc < 0)
		return rc;
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (c->fd < 0)
		return -errno;
	if (ss.ss_family != AF_UNIX &&
	    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	rc = wait_fd(c->fd, POLLOUT, now_ms() + c->timeout_ms);
	if (rc < 0)
		return rc;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		return -errno;
	return -err;
}

/* The HOST of "HOST:PORT" or "[V6]:PORT" into |host|. */
static int
addr_host(const char *addr, char *host, size_t cap)
{
	const char *colon = strrchr(addr, ':');
	size_t hl;

	if (colon == NULL)
		return -EINVAL;
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2 && colon[-1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl == 0 || hl >= cap)
		return -EINVAL;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	return 0;
}

/*
 * TLS client handshake: TLS 1.2 at least, the chain checked against
 * |o->cafile| and the certificate against the HOST of |addr| (its IP
 * address for a numeric host, the name otherwise).
 */
static int
tls_start(struct mst_client *c, const char *addr,
    const struct mst_client_opts *o)
{
	struct in6_addr a6;
	char host[64];
	int64_t deadline = now_ms() + c->timeout_ms;
	short ev;
	int r, rc;

	if (strncmp(addr, "unix:", 5) == 0 || o->cafile == NULL)
		return -EINVAL;		/* TLS is for TCP, and needs a CA */
	rc = addr_host(addr, host, sizeof host);
	if (rc < 0)
		return rc;
	if (access(o->cafile, R_OK) < 0)
		return -errno;
	c->tls_ctx = SSL_CTX_new(TLS_client_method());
	if (c->tls_ctx == NULL ||
	    SSL_CTX_set_min_proto_version(c->tls_ctx, TLS1_2_VERSION) != 1)
		goto nomem;
	if (SSL_CTX_load_verify_locations(c->tls_ctx, o->cafile, NULL) != 1) {
		ERR_clear_error();
		return -EBADMSG;	/* no certificate in it */
	}
	SSL_CTX_set_verify(c->tls_ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c->tls_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	c->tls = SSL_new(c->tls_ctx);
	c->gather = malloc(GATHER_MAX);
	if (c->tls == NULL || c->gather == NULL ||
	    SSL_set_fd(c->tls, c->fd) != 1)
		goto nomem;
	if (inet_pton(AF_INET, host, &a6) == 1 ||
	    inet_pton(AF_INET6, host, &a6) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->tls),
		    host) != 1)
			goto nomem;
	} else if (SSL_set1_host(c->tls, host) != 1 ||
	    SSL_set_tlsext_host_name(c->tls, host) != 1) {
		goto nomem;
	}
	for (;;) {
		r = SSL_connect(c->tls);
		if (r == 1)
			return 0;
		if (SSL_get_verify_result(c->tls) != X509_V_OK) {
			ERR_clear_error();
			return -EKEYREJECTED;
		}
		rc = tls_result(c->tls, r, &ev);
		if (rc != -EAGAIN)
			return rc;
		if (ev != 0 && (rc = wait_fd(c->fd, ev, deadline)) < 0)
			return rc;
	}
nomem:
	ERR_clear_error();
	return -ENOMEM;
}

const char *
mst_client_strerror(int rc)
{
	switch (rc) {
	case -EKEYREJECTED:
		return "the server's TLS certificate is not trusted by the "
		    "CA file or not for this host";
	case -EBADMSG:
		return "no usable certificate in the CA file";
	case -EPROTO:
		return "protocol error (a TLS server spoken to in plaintext, "
		    "or the reverse?)";
	default:
		return strerror(-rc);
	}
}

static int
handshake(struct mst_client *c, const struct mst_client_opts *o)
{
	struct mst_hello_req hq = {
		.min_version = MST_VERSION,
		.max_version = MST_VERSION,
		.features = MST_FEAT_ALL,
		.max_frame = c->max_frame,
		.client = mst_str_of(o->name ? o->name : "mstore-client"),
	};
	struct mst_auth a, sa;
	struct mst_hdr h;
	const uint8_t *rp;
	uint8_t buf[512];
	int n, rc;

	if (getrandom(hq.nonce, sizeof hq.nonce, 0) != sizeof hq.nonce)
		return -EIO;
	n = mst_hello_req_encode(&hq, buf, sizeof buf);
	if (n < 0)
		return n;
	rc = mst_client_call(c, MST_OP_HELLO, buf, (size_t)n, &h, &rp);
	if (rc < 0)
		return rc;
	rc = mst_hello_rep_decode(&c->hello, rp, h.len);
	if (rc < 0)
		return rc;
	n = c->hello.server.len < sizeof c->server ? c->hello.server.len :
	    (int)sizeof c->server - 1;
	memcpy(c->server, c->hello.server.p, (size_t)n);
	c->server[n] = '\0';
	c->hello.server.p = c->server;
	c->hello.server.len = (uint16_t)n;
	if (c->hello.max_frame < c->max_frame)
		c->max_frame = c->hello.max_frame;
	/* A client holding a key insists on mutual proof: a server that does
	 * not ask for AUTH cannot prove it knows the key. */
	if (!(c->hello.features & MST_FEAT_AUTH))
		return o->key ? -EACCES : 0;
	if (o->key == NULL)
		return -EACCES;
	mst_auth_proof(o->key, o->keylen, "client", hq.nonce, c->hello.nonce,
	    a.proof);
	n = mst_auth_encode(&a, buf, sizeof buf);
	rc = mst_client_call(c, MST_OP_AUTH, buf, (size_t)n, &h, &rp);
	if (rc < 0)
		return rc;
	rc = mst_auth_decode(&sa, rp, h.len);
	if (rc < 0)
		return rc;
	mst_auth_proof(o->key, o->keylen, "server", hq.nonce, c->hello.nonce,
	    a.proof);
	return mst_auth_equal(a.proof, sa.proof) ? 0 : -EACCES;
}

int
mst_client_connect(const char *addr, const struct mst_client_opts *o,
    struct mst_client **out)
{
	static const struct mst_client_opts defaults;
	struct mst_client *c;
	int rc;

	if (o == NULL)
		o = &defaults;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	c->fd = -1;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
	c->max_frame = o->max_frame ? o->max_frame : MST_FRAME_DEFAULT;
	if (c->max_frame < MST_FRAME_MIN || c->max_frame > MST_FRAME_LIMIT) {
		rc = -EINVAL;
		goto fail;
	}
	c->rbuf = malloc(c->max_frame);
	c->sbuf = malloc(MST_HDR_LEN + c->max_frame);
	if (c->rbuf == NULL || c->sbuf == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = open_socket(c, addr);
	if (rc < 0)
		goto fail;
	if (o->tls) {
		rc = tls_start(c, addr, o);
		if (rc < 0)
			goto fail;
	}
	rc = handshake(c, o);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	mst_client_free(c);
	return rc;
}

void
mst_client_free(struct mst_client *c)
{
	if (c == NULL)
		return;
	/* No close_notify: frames delimit themselves, the server takes a
	 * bare close as the end, and a write here could raise SIGPIPE on a
	 * socket the caller already shut down. */
	if (c->tls != NULL)
		SSL_free(c->tls);
	if (c->tls_ctx != NULL)
		SSL_CTX_free(c->tls_ctx);
	free(c->gather);
	if (c->fd >= 0)
		close(c->fd);
	free(c->rbuf);
	free(c->sbuf);
	free(c);
}
