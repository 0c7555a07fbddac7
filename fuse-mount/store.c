/*
 * store.c - the mount's store-client layer for ordinary files: the
 * requests that act on a file by its object id (GETATTR, OPEN, CLOSE,
 * READ, WRITE, FSETATTR, LINK, LOCK), encoded here and sent through
 * mconn. Knows nothing of FUSE and touches no mount state: callers pass
 * values in and get attributes or reply payloads back. Every reply is
 * checked by the codecs before a field of it is used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "mount.h"
#include "store.h"

/* Large enough for any fixed part sent from here (a path and a few
 * integers). */
#define HEAD_MAX (MST_PATH_MAX + 128)

int
store_attr_reply(const struct mreply *r, struct mst_attr_rep *out)
{
	if (r->status < 0)
		return r->status;
	if (r->nframes != 1)
		return -EPROTO;
	return mst_attr_rep_decode(out, r->frames[0].p, r->frames[0].len);
}

/* GETATTR or OPEN of |id|: its attributes. */
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
	rc = mconn_call(m->conn, op, head, (size_t)len, NULL, 0,
	    op == MST_OP_GETATTR, &r);
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
store_getattr_async(struct mount *m, uint64_t id, mconn_cb *cb, void *arg)
{
	struct mst_id_req q = { .id = id };
	uint8_t head[16];
	int len = mst_id_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	return mconn_call_async(m->conn, MST_OP_GETATTR, head, (size_t)len,
	    NULL, 0, 1, cb, arg);
}

int
store_open(struct mount *m, uint64_t id, struct mst_attr *out)
{
	return id_call(m, MST_OP_OPEN, id, out);
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
	struct mst_id_req q = { .id = id };
	uint8_t head[16];
	uint64_t *arg;
	int rc, len = mst_id_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	arg = malloc(sizeof *arg);
	if (arg == NULL)
		return -ENOMEM;
	*arg = id;
	rc = mconn_call_async(m->conn, MST_OP_OPEN, head, (size_t)len, NULL,
	    0, 0, held, arg);
	if (rc < 0)
		free(arg);
	return rc;
}

static void
closed(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);	/* a lost CLOSE ends with the connection anyway */
}

int
store_close(struct mount *m, uint64_t id)
{
	struct mst_id_req q = { .id = id };
	uint8_t head[16];
	int len = mst_id_req_encode(&q, head, sizeof head);

	if (len < 0)
		return len;
	return mconn_call_async(m->conn, MST_OP_CLOSE, head, (size_t)len,
	    NULL, 0, 0, closed, NULL);
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
	return mconn_call_async(m->conn, MST_OP_READ, head, (size_t)n, NULL,
	    0, 1, cb, arg);
}

int
store_data_reply(const struct mreply *r, size_t want, struct mst_data_rep *d)
{
	int rc = r->status;

	if (rc == 0)
		rc = r->nframes == 1 ? mst_data_rep_decode(d, r->frames[0].p,
		    r->frames[0].len) : -EPROTO;
	if (rc == 0 && d->data.len > want)
		rc = -EPROTO;	/* more than asked for: never trusted */
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
	/* Not resent after a reconnection: an append must not land twice. */
	return mconn_call_async(m->conn, MST_OP_WRITE, head, (size_t)n, p, len,
	    0, cb, arg);
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
	rc = mconn_call(m->conn, MST_OP_FSETATTR, head, (size_t)len, NULL, 0,
	    0, &r);
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
	rc = mconn_call(m->conn, MST_OP_LINK, head, (size_t)len, NULL, 0, 0,
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
	return mconn_call_flags(m->conn, MST_OP_LOCK, head, (size_t)len, NULL,
	    0, flags, cb, arg);
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
	rc = mconn_call(m->conn, MST_OP_LOCK, head, (size_t)len, NULL, 0, 0,
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
	if (r->nframes != 1)
		return -EPROTO;
	return mst_lock_rep_decode(out, r->frames[0].p, r->frames[0].len);
}
