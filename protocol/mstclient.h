/*
 * mstclient.h - a small blocking client for the mstore protocol, shared by
 * the mount, the tools and the tests. Built on libmstproto; owns one
 * socket (and its TLS session). Not thread-safe: one thread uses a client
 * at a time. With TLS the process must ignore SIGPIPE (OpenSSL writes
 * with write(2)).
 */
#ifndef MSTCLIENT_H
#define MSTCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "mstproto.h"

/*
 * Parse "HOST:PORT", "[V6]:PORT" or "unix:PATH" into |ss|. Numeric hosts
 * and "localhost" only (no DNS lookups on the delivery path). Returns 0,
 * -EINVAL (malformed) or -ENAMETOOLONG (unix path too long).
 */
int mst_addr_parse(const char *s, struct sockaddr_storage *ss,
    socklen_t *len_out);

/*
 * Shared-key HMAC challenge (mstore-protocol(7), "Authentication").
 * |role| is "client" or "server". Writes MST_PROOF_LEN bytes to |out|.
 */
void mst_auth_proof(const uint8_t *key, size_t keylen, const char *role,
    const uint8_t cnonce[MST_NONCE_LEN], const uint8_t snonce[MST_NONCE_LEN],
    uint8_t out[MST_PROOF_LEN]);
/* Constant-time comparison of two proofs: 1 if equal. */
int mst_auth_equal(const uint8_t a[MST_PROOF_LEN],
    const uint8_t b[MST_PROOF_LEN]);
/*
 * Read a key file into |buf| (at most |cap| bytes, trailing newline
 * removed). Returns the key length, -ENOENT/-EACCES/..., -EPERM when the
 * file grants group or others any permission (a shared key must be
 * private to its owner), -EINVAL for an empty key, -EFBIG for one longer
 * than |cap|.
 */
int mst_key_load(const char *path, uint8_t *buf, size_t cap);

/* The reason of a mst_key_load failure, for a message after the path:
 * "group or others have access to it (chmod 600 it)" for -EPERM. */
const char *mst_key_strerror(int rc);
#define MST_KEY_MAX	1024

struct mst_client;

struct mst_client_opts {
	const char *name;	/* sent in HELLO; NULL: "mstore-client" */
	const uint8_t *key;	/* shared key, NULL when none */
	size_t keylen;
	int timeout_ms;		/* connect and each reply; 0: 10000 */
	uint32_t max_frame;	/* 0: MST_FRAME_DEFAULT */
	int tls;		/* speak TLS (TCP addresses only) */
	const char *cafile;	/* with tls: PEM CA(s) the server's chain
				   must lead to; the certificate must be for
				   the HOST of the address (IP or name) */
};

/*
 * Connect, send HELLO, and AUTH when the server requires it. Returns 0
 * and a client in *out, or -ECONNREFUSED, -ETIMEDOUT, -EACCES (bad key or
 * key required), -EPROTO, -ENOMEM...; with tls also -EKEYREJECTED (the
 * server's certificate is not trusted or not for that host), -EBADMSG (no
 * certificate in cafile), -EINVAL (a unix: address, or no cafile), or the
 * errno of reading cafile.
 */
int mst_client_connect(const char *addr, const struct mst_client_opts *o,
    struct mst_client **out);
void mst_client_free(struct mst_client *c);

/* A message for a negative errno of this library: strerror, except for
 * the TLS meanings of -EKEYREJECTED, -EBADMSG and -EPROTO above. */
const char *mst_client_strerror(int rc);

/*
 * The transport under the frames, for callers that run their own loop
 * over mst_client_fd (the socket is non-blocking): read or write at most
 * |n| bytes now, through TLS when it is on. Return the count (>0), or
 * -EAGAIN with *|ev| the poll(2) event to wait for (0: retry at once),
 * -ECONNRESET at the peer's end, or another negative errno.
 */
ssize_t mst_client_read(struct mst_client *c, void *p, size_t n, short *ev);
ssize_t mst_client_write(struct mst_client *c, const void *p, size_t n,
    short *ev);
/* Bytes already decrypted and waiting: readable without poll(2). */
size_t mst_client_pending(const struct mst_client *c);
/* Write from |n| iovecs as mst_client_write does (one sendmsg(2); with
 * TLS, up to one record gathered from them). */
struct iovec;
ssize_t mst_client_writev(struct mst_client *c, const struct iovec *iov,
    int n, short *ev);
/* 1 when the connection speaks TLS. A TLS write that returned -EAGAIN may
 * have put part of a record on the wire: it must be retried with the
 * same bytes, or the connection given up. */
int mst_client_tls(const struct mst_client *c);

int mst_client_fd(const struct mst_client *c);
uint32_t mst_client_max_frame(const struct mst_client *c);
const struct mst_hello_rep *mst_client_hello(const struct mst_client *c);
/* A fresh request id, never 0. */
uint32_t mst_client_next_id(struct mst_client *c);

/* Send one frame; retries short writes. Returns 0 or a negative errno. */
int mst_client_send(struct mst_client *c, unsigned op, unsigned flags,
    uint32_t id, const void *payload, size_t len);

/*
 * Receive the next frame. The payload stays valid until the next receive.
 * Returns 0, -ETIMEDOUT, -ECONNRESET (peer closed), or a decode error.
 */
int mst_client_recv(struct mst_client *c, struct mst_hdr *h,
    const uint8_t **payload_out);

/* Called for each NOTIFY that arrives while mst_client_call waits. */
typedef void mst_notice_fn(void *arg, const struct mst_notify *n);
void mst_client_on_notice(struct mst_client *c, mst_notice_fn *fn,
    void *arg);

/*
 * Send a request and wait for its (first) reply frame. Returns the
 * reply's status as a negative errno (0 for success); transport errors
 * as for send/recv.
 */
int mst_client_call(struct mst_client *c, unsigned op, const void *payload,
    size_t len, struct mst_hdr *h, const uint8_t **reply_out);

/*
 * Send a whole body-carrying request (DELIVER or PUT): |head| is the
 * payload of the first frame without body bytes; the body is appended
 * and split into DATA frames as the frame size requires. Waits for the
 * reply like mst_client_call.
 */
int mst_client_call_body(struct mst_client *c, unsigned op,
    const void *head, size_t headlen, const void *body, size_t bodylen,
    struct mst_hdr *h, const uint8_t **reply_out);

#endif /* MSTCLIENT_H */
