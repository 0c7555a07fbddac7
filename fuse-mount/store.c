/*
 * store.c - the mount's store client (layer 3, see mount.h): requests
 * encoded here and sent through mconn, replies decoded here. Requests
 * by path (LOOKUP, STATFS, MKDIR, READDIR, UNLINK, RMDIR, RENAME, PUT),
 * on mail folders (LIST, DELIVER, EXPUNGE, SETINFO, FETCH), and those
 * that act on an ordinary file by its object id (GETATTR, OPEN, CLOSE,
 * READ, WRITE, FSETATTR, LINK, LOCK). WATCH and UNWATCH stay with the
 * watches they keep in order (notify.c). Knows
 * nothing of FUSE and touches no mount state but the connection (and a
 * file's count of unanswered CLOSEs, inode_close_done): callers pass
 * values in and get attributes or reply payloads back.
 * Never calls up into the ops or notify.c. Every reply is checked by
 * the codecs before a field of it is used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/random.h>

#include "mount.h"
#include "route.h"
#include "store.h"

/* Large enough for any fixed part sent from here (a path and a few
 * integers). */
#define HEAD_MAX (MST_PATH_MAX + 128)

/*
 * Routing (route.c): requests that name a mailbox go to that mailbox's
 * server (MB_*, keyed by the mailbox); all others to the home server.
 * |retry| 0 or 1 becomes MCONN_RETRY.
 */
#define HOME_CALL(m, op, h, hl, b, bl, retry, out) \
	route_call((m)->route, ROUTE_HOME, 1, op, h, hl, b, bl, \
	    (retry) ? MCONN_RETRY : 0, out)
#define HOME_ASYNC(m, op, h, hl, b, bl, retry, cb, arg) \
	route_call_async((m)->route, ROUTE_HOME, 1, op, h, hl, b, bl, \
	    (retry) ? MCONN_RETRY : 0, cb, arg)
#define HOME_FLAGS(m, op, h, hl, b, bl, flags, cb, arg) \
	route_call_async((m)->route, ROUTE_HOME, 1, op, h, hl, b, bl, \
	    flags, cb, arg)
#define MB_CALL(m, mb, op, h, hl, b, bl, retry, out) \
	route_call((m)->route, (mb).p, (mb).len, op, h, hl, b, bl, \
	    (retry) ? MCONN_RETRY : 0, out)
#define MB_ASYNC(m, mb, op, h, hl, b, bl, retry, cb, arg) \
	route_call_async((m)->route, (mb).p, (mb).len, op, h, hl, b, bl, \
	    (retry) ? MCONN_RETRY : 0, cb, arg)

/* Read-only requests may be resent after a reconnection. */
static int
is_read(unsigned op)
{
	return op == MST_OP_LOOKUP || op == MST_OP_READDIR ||
	    op == MST_OP_STATFS || op == MST_OP_GET || op == MST_OP_FETCH ||
	    op == MST_OP_LIST || op == MST_OP_STAT;
}

int
call_path(struct mount *m, unsigned op, const char *path, struct mreply *r)
{
	struct mst_path_req q = { mst_str_of(path) };
	uint8_t buf[MST_PATH_MAX + 8];
	int n = mst_path_req_encode(&q, buf, sizeof buf);

	if (n < 0) {
		memset(r, 0, sizeof *r);	/* mreply_free is harmless */
		return n;
	}
	return HOME_CALL(m, op, buf, (size_t)n, NULL, 0, is_read(op),
	    r);
}

int
store_path_async(struct mount *m, unsigned op, const char *path,
    mconn_cb *cb, void *arg)
{
	struct mst_path_req q = { mst_str_of(path) };
	uint8_t buf[MST_PATH_MAX + 8];
	int n = mst_path_req_encode(&q, buf, sizeof buf);

	if (n < 0)
		return n;
	return HOME_ASYNC(m, op, buf, (size_t)n, NULL, 0,
	    is_read(op), cb, arg);
}

int
store_expunge(struct mount *m, const struct mst_msg_ref *q, mconn_cb *cb,
    void *arg)
{
	uint8_t buf[2 * MST_PATH_MAX + 16];
	int n = mst_msg_ref_encode(q, buf, sizeof buf);

	if (n < 0)
		return n;
	return MB_ASYNC(m, q->mailbox, MST_OP_EXPUNGE, buf, (size_t)n, NULL,
	    0, 0, cb, arg);
}

int
store_rename(struct mount *m, const struct mst_rename_req *q, mconn_cb *cb,
    void *arg)
{
	uint8_t buf[2 * MST_PATH_MAX + 64];
	int n = mst_rename_req_encode(q, buf, sizeof buf);

	if (n < 0)
		return n;
	return HOME_ASYNC(m, MST_OP_RENAME, buf, (size_t)n, NULL,
	    0, 0, cb, arg);
}

int
store_setinfo(struct mount *m, const struct mst_setinfo_req *q,
    mconn_cb *cb, void *arg)
{
	uint8_t buf[2 * MST_PATH_MAX + 64];
	int n = mst_setinfo_req_encode(q, buf, sizeof buf);

	if (n < 0)
		return n;
	return MB_ASYNC(m, q->mailbox, MST_OP_SETINFO, buf, (size_t)n, NULL,
	    0, 0, cb, arg);
}

int
store_bad_reply(unsigned op, int rc, const char *why)
{
	const char *name = mst_op_name(op);

	syslog(LOG_ERR, "mount.mstore: %s reply refused: %s (%s)",
	    name ? name : "unknown", why, strerror(rc < 0 ? -rc : rc));
	return -EIO;
}

/* Decode the one frame of a reply to |op| with |dec|; a reply of any
 * other shape is refused (EIO, logged). */
#define ONE_FRAME(op, dec, r, out)                                            \
	((r)->nframes != 1 ? store_bad_reply((op), -EPROTO,                  \
	    "not one frame") :                                               \
	    reply_check((op), dec((out), (r)->frames[0].p, (r)->frames[0].len)))

static int
reply_check(unsigned op, int rc)
{
	return rc < 0 ? store_bad_reply(op, rc, "malformed") : rc;
}

int
attr_from(const struct mreply *r, struct mst_attr_rep *out)
{
	return ONE_FRAME(MST_OP_LOOKUP, mst_attr_rep_decode, r, out);
}

int
store_lookup(struct mount *m, const char *path, struct mst_attr *a)
{
	struct mst_attr_rep ar;
	struct mreply r;
	int rc = call_path(m, MST_OP_LOOKUP, path, &r);

	if (rc == 0)
		rc = attr_from(&r, &ar);
	if (rc == 0)
		*a = ar.attr;
	mreply_free(&r);
	return rc;
}

int
store_statfs(struct mount *m, struct mst_statfs_rep *out)
{
	struct mreply r;
	int rc = call_path(m, MST_OP_STATFS, "", &r);

	if (rc == 0)
		rc = r.nframes == 1 ? mst_statfs_rep_decode(out,
		    r.frames[0].p, r.frames[0].len) : -EPROTO;
	mreply_free(&r);
	return rc;
}

int
store_mkdir(struct mount *m, const struct mst_mkdir_req *q,
    struct mst_attr_rep *out)
{
	struct mreply r;
	uint8_t buf[MST_PATH_MAX + 32];
	int rc, len = mst_mkdir_req_encode(q, buf, sizeof buf);

	if (len < 0)
		return len;
	rc = HOME_CALL(m, MST_OP_MKDIR, buf, (size_t)len, NULL, 0, 0,
	    &r);
	if (rc == 0)
		rc = attr_from(&r, out);
	mreply_free(&r);
	return rc;
}

int
store_list(struct mount *m, const struct mst_list_req *q, struct mreply *r)
{
	uint8_t buf[MST_PATH_MAX + 64];
	int n = mst_list_req_encode(q, buf, sizeof buf);

	if (n < 0) {
		memset(r, 0, sizeof *r);
		return n;
	}
	return MB_CALL(m, q->mailbox, MST_OP_LIST, buf, (size_t)n, NULL, 0, 1, r);
}

int
put_buf(struct mount *m, const char *path, struct fbuf *b, int excl,
    const struct mst_attr *a, struct mst_attr *out)
{
	struct mst_attr_rep ar;
	int rc = put_buf_rep(m, path, b, excl, a, &ar);

	if (rc == 0 && out)
		*out = ar.attr;
	return rc;
}

int
put_buf_rep(struct mount *m, const char *path, struct fbuf *b, int excl,
    const struct mst_attr *a, struct mst_attr_rep *out)
{
	struct mst_put_req q = { .path = mst_str_of(path),
		.flags = excl ? MST_PUT_EXCL : 0, .mode = a->mode,
		.uid = a->uid, .gid = a->gid };
	const uint8_t *p;
	struct mreply r;
	uint8_t head[MST_PATH_MAX + 64];
	int rc, len;

	rc = fbuf_map(b, &p);
	if (rc < 0)
		return rc;
	q.body_size = b->size;
	q.checksum = mst_checksum(p, (size_t)b->size);
	len = mst_put_req_encode(&q, head, sizeof head);
	rc = HOME_CALL(m, MST_OP_PUT, head, (size_t)len, p,
	    (size_t)b->size, 0, &r);
	fbuf_unmap(b, p);
	if (rc == 0)
		rc = attr_from(&r, out);
	mreply_free(&r);
	return rc;
}

int
store_deliver_encode(const char *dpath, unsigned sub, const char *name,
    struct fbuf *b, const struct mst_attr *sa, uint8_t *head, size_t cap,
    const uint8_t **body_out)
{
	struct mst_deliver_req q = { .name = mst_str_of(name),
		.mode = sa->mode & 07777, .uid = sa->uid, .gid = sa->gid,
		.sub = (uint8_t)sub };
	int rc, len;

	if (getrandom(q.idem, sizeof q.idem, 0) != sizeof q.idem) {
		syslog(LOG_ERR, "mount.mstore: DELIVER of %s: no random "
		    "idempotency id (getrandom: %s): EIO", name,
		    strerror(errno));
		return -EIO;
	}
	(void)inode_classify(NULL, dpath, &q.mailbox, &q.folder);
	rc = fbuf_map(b, body_out);
	if (rc < 0)
		return rc;
	q.body_size = b->size;
	q.checksum = mst_checksum(*body_out, (size_t)b->size);
	len = mst_deliver_req_encode(&q, head, cap);
	if (len < 0)
		fbuf_unmap(b, *body_out);
	return len;
}

int
store_fetch(struct mount *m, const struct mst_fetch_req *q, struct mreply *r)
{
	uint8_t head[MST_PATH_MAX + 32];
	int len = mst_fetch_req_encode(q, head, sizeof head);

	if (len < 0) {
		memset(r, 0, sizeof *r);
		return len;
	}
	return MB_CALL(m, q->mailbox, MST_OP_FETCH, head, (size_t)len, NULL, 0, 1,
	    r);
}

int
store_fetch_async(struct mount *m, const struct mst_fetch_req *q,
    mconn_cb *cb, void *arg)
{
	uint8_t head[MST_PATH_MAX + 32];
	int len = mst_fetch_req_encode(q, head, sizeof head);

	if (len < 0)
		return len;
	return MB_ASYNC(m, q->mailbox, MST_OP_FETCH, head, (size_t)len, NULL,
	    0, 1, cb, arg);
}

/* A DELIVER carries a fresh idempotency id, so it may be resent after a
 * reconnection: the store keeps the message once. */
/* The mailbox an encoded DELIVER names (its routing key); "" when the
 * head cannot be read (the server will refuse it anyway). */
static struct mst_str
deliver_mailbox(const uint8_t *head, size_t len)
{
	struct mst_deliver_req q;

	if (mst_deliver_req_decode(&q, head, len) < 0)
		return mst_str_of("");
	return q.mailbox;
}

int
store_deliver(struct mount *m, const uint8_t *head, size_t len,
    const uint8_t *body, size_t size, struct mreply *r)
{
	struct mst_str mb = deliver_mailbox(head, len);

	/* The body is sent from the caller's buffer, which outlives the
	 * call (MCONN_BORROW). */
	return route_call(m->route, mb.p, mb.len, MST_OP_DELIVER, head, len,
	    body, size, MCONN_RETRY | MCONN_BORROW, r);
}

int
store_deliver_async(struct mount *m, const uint8_t *head, size_t len,
    const uint8_t *body, size_t size, mconn_cb *cb, void *arg)
{
	struct mst_str mb = deliver_mailbox(head, len);

	/* The caller keeps |body| until |cb| has run (MCONN_BORROW). */
	return route_call_async(m->route, mb.p, mb.len, MST_OP_DELIVER, head,
	    len, body, size, MCONN_RETRY | MCONN_BORROW, cb, arg);
}

int
store_deliver_encode_id(const char *dpath, unsigned sub, const char *name,
    struct fbuf *b, const struct mst_attr *sa, const uint8_t *idem,
    uint8_t *head, size_t cap, const uint8_t **body_out)
{
	struct mst_deliver_req q;
	uint8_t copy[2 * MST_PATH_MAX + 128];
	int len = store_deliver_encode(dpath, sub, name, b, sa, head, cap,
	    body_out);

	if (len < 0 || idem == NULL)
		return len;
	if ((size_t)len > sizeof copy)
		len = -EMSGSIZE;
	if (len >= 0) {
		memcpy(copy, head, (size_t)len);
		len = mst_deliver_req_decode(&q, copy, (size_t)len);
	}
	if (len >= 0) {
		memcpy(q.idem, idem, sizeof q.idem);
		len = mst_deliver_req_encode(&q, head, cap);
	}
	if (len < 0)
		fbuf_unmap(b, *body_out);
	return len;
}

int
store_stages(struct mount *m, struct mst_str mailbox)
{
	struct mconn *c = route_conn(m->route, mailbox.p, mailbox.len);

	/* Not while the server is unreachable: fsync would wait for the
	 * request's deadline, and link() then for its own. */
	return c != NULL && mconn_connected(c) &&
	    (mconn_features(c) & MST_FEAT_STAGE) != 0;
}

int
store_stage(struct mount *m, const struct mst_stage_req *q,
    const uint8_t *body, struct mreply *r)
{
	uint8_t head[2 * MST_PATH_MAX + 128];
	struct mst_stage_req h = *q;
	int len;

	h.body.p = NULL;
	h.body.len = 0;
	len = mst_stage_req_encode(&h, head, sizeof head);
	if (len < 0) {
		memset(r, 0, sizeof *r);
		return len;
	}
	/* Idempotent by its id: a resend answers like the first. */
	return route_call(m->route, q->mailbox.p, q->mailbox.len,
	    MST_OP_STAGE, head, (size_t)len, body, (size_t)q->body_size,
	    MCONN_RETRY | MCONN_BORROW, r);
}

int
store_spools(struct mount *m, struct mst_str mailbox)
{
	struct mconn *c = route_conn(m->route, mailbox.p, mailbox.len);

	return c != NULL && mconn_connected(c) &&
	    (mconn_features(c) & MST_FEAT_SPOOL) != 0;
}

int
store_home_sole(struct mount *m)
{
	struct mconn *c = route_conn(m->route, ROUTE_HOME, 1);

	return c != NULL && mconn_connected(c) &&
	    (mconn_features(c) & MST_FEAT_SOLE) != 0;
}

uint32_t
store_max_frame(struct mount *m, struct mst_str mailbox)
{
	struct mconn *c = route_conn(m->route, mailbox.p, mailbox.len);

	return c ? mconn_max_frame(c) : MST_FRAME_DEFAULT;
}

size_t
store_spool_max(struct mount *m, struct mst_str mailbox)
{
	return store_max_frame(m, mailbox) - HEAD_MAX;
}

int
store_spool_async(struct mount *m, struct mst_str mailbox,
    const uint8_t *idem, uint64_t off, const uint8_t *data, size_t len,
    mconn_cb *cb, void *arg)
{
	struct mst_spool_req q = { .mailbox = mailbox, .offset = off,
		.length = (uint32_t)len };
	uint8_t head[HEAD_MAX];
	int n;

	memcpy(q.idem, idem, sizeof q.idem);
	n = mst_spool_req_encode(&q, head, sizeof head);
	if (n < 0)
		return n;
	/* One frame: a SPOOL has no DATA continuation. */
	if ((size_t)n + len > store_max_frame(m, mailbox))
		return -EMSGSIZE;
	return route_call_async(m->route, mailbox.p, mailbox.len,
	    MST_OP_SPOOL, head, (size_t)n, data, len, MCONN_BORROW, cb, arg);
}

int
store_commit_async(struct mount *m, const struct mst_commit_req *q,
    mconn_cb *cb, void *arg)
{
	uint8_t head[2 * MST_PATH_MAX + 128];
	int len = mst_commit_req_encode(q, head, sizeof head);

	if (len < 0)
		return len;
	return route_call_async(m->route, q->mailbox.p, q->mailbox.len,
	    MST_OP_COMMIT, head, (size_t)len, NULL, 0, MCONN_RETRY, cb, arg);
}

int
store_unlink_mb_async(struct mount *m, struct mst_str mailbox,
    const char *path, mconn_cb *cb, void *arg)
{
	struct mst_path_req q = { mst_str_of(path) };
	uint8_t buf[MST_PATH_MAX + 8];
	int n = mst_path_req_encode(&q, buf, sizeof buf);

	if (n < 0)
		return n;
	return MB_ASYNC(m, mailbox, MST_OP_UNLINK, buf, (size_t)n, NULL, 0, 0,
	    cb, arg);
}

int
store_readdir(struct mount *m, const char *path,
    int (*each)(void *arg, const struct mst_list_entry *e), void *arg)
{
	struct mst_list_entry en;
	struct mst_list_rep lr;
	struct mreply r;
	size_t i, off;
	int rc = call_path(m, MST_OP_READDIR, path, &r);

	for (i = 0; rc == 0 && i < r.nframes; i++) {
		rc = reply_check(MST_OP_READDIR, mst_list_rep_decode(&lr,
		    r.frames[i].p, r.frames[i].len));
		off = 0;
		while (rc == 0 && (rc = reply_check(MST_OP_READDIR,
		    mst_list_entry_next(&en, &lr, &off))) == 1)
			rc = each(arg, &en);
	}
	mreply_free(&r);
	return rc;
}

int
store_change_reply(const struct mreply *r, struct mst_change_rep *out)
{
	return ONE_FRAME(MST_OP_UNLINK, mst_change_rep_decode, r, out);
}

int
store_attr_reply(const struct mreply *r, struct mst_attr_rep *out)
{
	if (r->status < 0)
		return r->status;
	return ONE_FRAME(MST_OP_GETATTR, mst_attr_rep_decode, r, out);
}

/* GETATTR, OPEN or CLOSE of |id|, answered to |cb|. */
static int
id_async(struct mount *m, unsigned op, uint64_t id, int retry, mconn_cb *cb,
    void *arg)
{
	struct mst_id_req q = { .id = id };
	uint8_t head[16];
	int len = mst_id_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	return HOME_ASYNC(m, op, head, (size_t)len, NULL, 0, retry,
	    cb, arg);
}

/* A request on an id answered with an attribute record, waited for. */
static int
id_call(struct mount *m, unsigned op, uint64_t id, struct mst_attr *out)
{
	struct mst_id_req q = { .id = id };
	struct mst_attr_rep ar;
	struct mreply r;
	uint8_t head[16];
	int rc, len = mst_id_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	rc = HOME_CALL(m, op, head, (size_t)len, NULL, 0, 1, &r);
	if (rc == 0)
		rc = store_attr_reply(&r, &ar);
	if (rc == 0)
		*out = ar.attr;
	mreply_free(&r);
	return rc;
}

int
store_getattr(struct mount *m, uint64_t id, struct mst_attr *out)
{
	return id_call(m, MST_OP_GETATTR, id, out);
}

int
store_open(struct mount *m, uint64_t id, struct mst_attr *out)
{
	return id_call(m, MST_OP_OPEN, id, out);
}

int
store_getattr_async(struct mount *m, uint64_t id, mconn_cb *cb, void *arg)
{
	return id_async(m, MST_OP_GETATTR, id, 1, cb, arg);
}

static void
held(void *arg, struct mreply *r)
{
	uint64_t *id = arg;

	if (r->status < 0 && r->status != -ENOENT)
		syslog(LOG_WARNING, "mount.mstore: OPEN of object %llu: %s "
		    "(an unlink elsewhere may now remove it while open here)",
		    (unsigned long long)*id, strerror(-r->status));
	mreply_free(r);
	free(id);
}

int
store_hold(struct mount *m, uint64_t id)
{
	uint64_t *arg = malloc(sizeof *arg);
	int rc;

	if (arg == NULL)
		return -ENOMEM;
	*arg = id;
	rc = id_async(m, MST_OP_OPEN, id, 0, held, arg);
	if (rc < 0)
		free(arg);
	return rc;
}

struct closing {
	struct mount *m;
	struct minode *n;	/* kept while n->close_wait counts this */
};

static void
close_done(struct mount *m, struct minode *n)
{
	pthread_mutex_lock(&m->mu);
	inode_close_done(m, n);
	pthread_mutex_unlock(&m->mu);
}

/*
 * A CLOSE ends one of the holds its connection took (a lost one ends with
 * the connection anyway). Until it is answered or failed it counts in
 * n->close_wait: one that was never written when the connection dropped
 * is sent on the next connection, after on_up took the holds again, so
 * rehold takes one for it too, which it then ends. One written on the
 * old connection fails (not to be sent again) before on_up runs.
 */
static void
closed(void *arg, struct mreply *r)
{
	struct closing *cl = arg;

	mreply_free(r);
	close_done(cl->m, cl->n);
	free(cl);
}

int
store_close(struct mount *m, struct minode *n, uint64_t id)
{
	struct closing *cl = malloc(sizeof *cl);
	int rc = -ENOMEM;

	/* Not sent, the hold stays until the connection ends: the file is
	 * kept longer, never let go while open here. */
	if (cl != NULL) {
		cl->m = m;
		cl->n = n;
		rc = id_async(m, MST_OP_CLOSE, id, 0, closed, cl);
	}
	if (rc < 0) {
		free(cl);
		close_done(m, n);
	}
	return rc;
}

int
store_read(struct mount *m, uint64_t id, uint64_t off, uint32_t len,
    mconn_cb *cb, void *arg)
{
	struct mst_read_req q = { .id = id, .offset = off, .length = len };
	uint8_t head[32];
	int n = mst_read_req_encode(&q, head, sizeof head);

	if (n < 0)
		return n;
	return HOME_ASYNC(m, MST_OP_READ, head, (size_t)n, NULL,
	    0, 1, cb, arg);
}

int
store_data_reply(unsigned op, const struct mreply *r, size_t want,
    struct mst_data_rep *d)
{
	int rc = r->status;

	if (rc == 0)
		rc = ONE_FRAME(op, mst_data_rep_decode, r, d);
	if (rc == 0 && d->data.len > want)	/* never trusted */
		rc = store_bad_reply(op, -EPROTO, "more data than asked for");
	if (rc == 0 && d->data.len > d->total_size)
		rc = store_bad_reply(op, -EPROTO, "more data than the whole");
	return rc;
}

int
store_write(struct mount *m, uint64_t id, uint64_t off, int append,
    const void *p, size_t len, mconn_cb *cb, void *arg)
{
	struct mst_write_req q = { .id = id, .offset = off,
		.flags = append ? MST_WR_APPEND : 0,
		.checksum = mst_checksum(p, len), .body_size = len };
	uint8_t head[64];
	int n = mst_write_req_encode(&q, head, sizeof head);

	if (n < 0)
		return n;
	/* A write at an offset may be sent again after a reconnection: the
	 * same bytes land in the same place (a store restart under Dovecot
	 * otherwise failed its log write with EIO). An append may not: it
	 * would land twice. */
	return HOME_ASYNC(m, MST_OP_WRITE, head, (size_t)n, p, len,
	    !append, cb, arg);
}

int
store_fsetattr(struct mount *m, const struct mst_fsetattr_req *q,
    struct mst_attr *out)
{
	struct mst_attr_rep ar;
	struct mreply r;
	uint8_t head[64];
	int rc, len = mst_fsetattr_req_encode(q, head, sizeof head);

	if (len < 0)
		return len;
	/* Setting attributes to given values is idempotent: resent after a
	 * reconnection like a write at an offset. */
	rc = HOME_CALL(m, MST_OP_FSETATTR, head, (size_t)len, NULL, 0,
	    1, &r);
	if (rc == 0)
		rc = store_attr_reply(&r, &ar);
	if (rc == 0)
		*out = ar.attr;
	mreply_free(&r);
	return rc;
}

int
store_link(struct mount *m, uint64_t id, const char *path,
    struct mst_attr_rep *out)
{
	struct mst_link_req q = { .id = id, .path = mst_str_of(path) };
	struct mreply r;
	uint8_t head[HEAD_MAX];
	int rc, len = mst_link_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	rc = HOME_CALL(m, MST_OP_LINK, head, (size_t)len, NULL, 0, 0,
	    &r);
	if (rc == 0)
		rc = store_attr_reply(&r, out);
	mreply_free(&r);
	return rc;
}

int
store_lock(struct mount *m, const struct mst_lock_req *q, mconn_cb *cb,
    void *arg)
{
	uint8_t head[64];
	int len = mst_lock_req_encode(q, head, sizeof head);
	unsigned flags = (q->flags & MST_LKF_WAIT) ? MCONN_UNTIMED : 0;

	if (len < 0)
		return len;
	return HOME_FLAGS(m, MST_OP_LOCK, head, (size_t)len, NULL,
	    0, flags, cb, arg);
}

int
store_lock_test(struct mount *m, const struct mst_lock_req *q, mconn_cb *cb,
    void *arg)
{
	uint8_t head[64];
	int len = mst_lock_req_encode(q, head, sizeof head);

	if (len < 0)
		return len;
	return HOME_ASYNC(m, MST_OP_LOCK, head, (size_t)len, NULL,
	    0, 1, cb, arg);
}

int
store_lock_sync(struct mount *m, const struct mst_lock_req *q,
    struct mst_lock_rep *out)
{
	struct mreply r;
	uint8_t head[64];
	int rc, len = mst_lock_req_encode(q, head, sizeof head);

	if (len < 0)
		return len;
	rc = HOME_CALL(m, MST_OP_LOCK, head, (size_t)len, NULL, 0, 0,
	    &r);
	if (rc == 0)
		rc = store_lock_reply(&r, out);
	mreply_free(&r);
	return rc;
}

int
store_lock_reply(const struct mreply *r, struct mst_lock_rep *out)
{
	if (r->status < 0)
		return r->status;
	return ONE_FRAME(MST_OP_LOCK, mst_lock_rep_decode, r, out);
}
