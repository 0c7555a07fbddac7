/*
 * mconn.h - the mount's connection to the store: one multiplexed protocol
 * connection (pipelined requests, replies matched by id, out of order)
 * with a receiver thread, per-request timeouts, automatic reconnection
 * and server-initiated notices.
 *
 * Thread-safe: any FUSE worker thread may call in at any time.
 * Callbacks run on the receiver thread (or the timer thread for
 * timeouts); they must not block and must not call back into mconn
 * synchronously (mconn_call from a callback would deadlock).
 */
#ifndef MST_MCONN_H
#define MST_MCONN_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

struct mconn;

/* A complete reply: every frame's payload, in order (LIST and READDIR
 * replies may span frames; others have one). Owned by the caller of
 * mconn_call; release with mreply_free. */
struct mreply {
	int status;		/* 0 or a negative errno */
	size_t nframes;
	struct mreply_frame {
		uint8_t *p;
		size_t len;
	} *frames;
};

/* Frees the frames (not |r| itself, which may live on the stack) and
 * leaves |r| empty; NULL and an empty reply are fine. */
void mreply_free(struct mreply *r);

/*
 * Called exactly once per request with the complete reply, or with
 * r->status = -EIO when the store could not answer within the timeout
 * (-ETIMEDOUT is reported as -EIO so callers can hand it to the kernel
 * unchanged). The callback takes ownership of |r| (mreply_free it).
 * The struct |r| points to is valid only during the call: to keep the
 * reply, copy *r (the frames move with the copy, then do not free |r|).
 */
typedef void mconn_cb(void *arg, struct mreply *r);

/* Server-initiated NOTIFY; the struct's views die when it returns. */
typedef void mconn_notice_fn(void *arg, const struct mst_notify *n);
/* After every (re)connection, before requests flow again: re-register
 * watches etc. Runs on the connection's own thread; may call
 * mconn_call_async but not mconn_call. */
typedef void mconn_up_fn(void *arg);

struct mconn_opts {
	const char *const *servers;	/* "HOST:PORT" or "unix:PATH" */
	size_t nservers;
	const uint8_t *key;		/* shared key or NULL */
	size_t keylen;
	int timeout_ms;			/* per request; default 10000 */
	const char *name;		/* sent in HELLO */
	int tls;			/* TLS to every server (TCP only) */
	const char *cafile;		/* with tls: CA file that verifies
					   the servers (mstclient.h) */
	mconn_notice_fn *notice;
	mconn_up_fn *up;
	void *arg;			/* for notice and up */
};

/*
 * Start the connection manager and try to connect once (it keeps trying
 * in the background if that fails: 0 is returned either way unless
 * |opts| is invalid (-EINVAL; also tls without cafile or with a unix:
 * server) or memory runs out). With tls, a server whose certificate fails
 * the check is one that cannot be reached.
 */
int mconn_new(const struct mconn_opts *o, struct mconn **out);
/* Fail everything still pending with -EIO, stop the threads, free. */
void mconn_free(struct mconn *c);

/*
 * Send a request. |head| is the encoded payload of the first frame
 * without body bytes; |body| (may be NULL) follows it, split into DATA
 * frames as the negotiated frame size requires. mconn copies what it
 * needs before returning (the body too, unless MCONN_BORROW).
 *
 * |retry|: the request may be sent again after a reconnection (reads,
 * and DELIVER, which is idempotent by its id). Otherwise a request in
 * flight when the connection drops fails with -EIO.
 *
 * Returns 0, and then |cb| runs exactly once (on the connection or timer
 * thread, or in mconn_free), possibly before this returns; or, with no
 * callback: -EINVAL (no |cb|, HELLO/AUTH/DATA/NOTIFY or an unknown op,
 * a body for an op other than DELIVER, PUT and WRITE), -EMSGSIZE (|hlen| over
 * MST_FRAME_MIN), -EFBIG (|blen| over mconn_max_body), -ENOMEM, or
 * -ESHUTDOWN (mconn_free has begun).
 */
int mconn_call_async(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, int retry, mconn_cb *cb,
    void *arg);
/* mconn_call_flags: the same with |flags|: MCONN_RETRY as |retry| above;
 * MCONN_UNTIMED: no deadline (a LOCK that waits until it is granted; it
 * still fails with -EIO when the connection drops). */
#define MCONN_RETRY	0x01u
#define MCONN_UNTIMED	0x02u
/* MCONN_BORROW: |body| is not copied. The caller keeps it valid and
 * unchanged until |cb| has run (also across resends), and |cb| runs only
 * once no write from it is under way. A large DELIVER is sent from the
 * caller's buffer or mapping without a copy. */
#define MCONN_BORROW	0x04u
int mconn_call_flags(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, unsigned flags,
    mconn_cb *cb, void *arg);
/* mconn_call_until: the same, with a deadline of CLOCK_MONOTONIC ms
 * |until| when that comes before the request's own timeout (0: none). A
 * request sent again keeps the deadline of the first. */
int mconn_call_until(struct mconn *c, unsigned op, const void *head,
    size_t hlen, const void *body, size_t blen, unsigned flags,
    int64_t until, mconn_cb *cb, void *arg);
/* The same, waiting for the reply. Returns r->status (*out is filled
 * also on error; release it with mreply_free). From a callback (the
 * connection or timer thread) it returns -EDEADLK at once. */
int mconn_call(struct mconn *c, unsigned op, const void *head, size_t hlen,
    const void *body, size_t blen, int retry, struct mreply *out);

/* Is a connection up now? Negotiated limits of the current one (of the
 * last one while down; MST_FRAME_DEFAULT and MST_BODY_MAX before the
 * first). */
int mconn_connected(struct mconn *c);
/* Has everything the server sent so far been dispatched: the
 * connection up, no byte waiting in its socket, every frame read handed
 * to its callback or to the notice function (which has returned)? Then
 * a notice the server sent before this call was applied. Any thread;
 * takes c->mu briefly. */
int mconn_rx_quiet(struct mconn *c);
/* Wait, |ms| at most, until every byte the server had sent by this call
 * (in the socket, or read and not yet dispatched, or still in the
 * server's send queue behind a full receive window) has been dispatched
 * and the connection is quiet (mconn_rx_quiet): then a notice the server
 * sent before it was applied. 1 then; 0 on
 * the timeout, with the connection down, over TLS (its socket's bytes
 * are not the frames'), or on the connection's own threads. Not with
 * the caller's locks that a notice or callback takes held. */
int mconn_rx_settle(struct mconn *c, int ms);
/* The server is judged down (no answer in time): every request not yet
 * completed fails with -EIO now, as at its deadline (written ones stay
 * outstanding until the connection drops); the connection is kept. */
void mconn_fail_all(struct mconn *c);
uint32_t mconn_max_frame(struct mconn *c);
/* Requests submitted with |op| so far by this process, over every
 * connection (a resend after a reconnection is not counted again). */
uint64_t mconn_op_count(unsigned op);
uint64_t mconn_max_body(struct mconn *c);
/* The per-request timeout in ms (mconn_opts.timeout_ms or its default). */
int mconn_timeout(const struct mconn *c);
/* MST_FEAT_* the server offered in the current connection's HELLO (the
 * last one's while down; 0 before the first). */
uint32_t mconn_features(struct mconn *c);

#endif /* MST_MCONN_H */
