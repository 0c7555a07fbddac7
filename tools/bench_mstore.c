/*
 * bench_mstore.c - the mstore://HOST:PORT (or mstore://unix:PATH) target
 * of mstore-bench: the native protocol, one connection per writer, one
 * DELIVER per message (random idempotency id, xxh3 checksum, the whole
 * body in one call), as mount.mstore sends it when an MTA links a file
 * from tmp/ into new/. Mailboxes are MKDIRed at setup; cleanup EXPUNGEs
 * what this run delivered and RMDIRs what it created, nothing else.
 *
 * A connection that fails (reset, timeout, garbled reply) is dropped and
 * the session reconnects before its next request; the failed request is
 * counted as an error, never retried behind the caller's back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

struct bench_target {
	const char *addr;		/* HOST:PORT or unix:PATH */
	const struct bench_opts *o;
	char base[64];			/* bench-PID */
};

struct bench_session {
	struct bench_target *t;
	struct mst_client *c;		/* NULL: reconnect before next use */
	struct bench_rng rng;		/* idempotency ids */
	char path[MST_PATH_MAX + 1];
	uint8_t buf[MST_PATH_MAX + 128];	/* request payloads */
};

static int
mstore_check(const char *loc, struct bench_err *e)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = mst_addr_parse(loc, &ss, &sl);

	if (rc < 0)
		snprintf(e->what, sizeof e->what, "%s: %s", loc,
		    rc == -ENAMETOOLONG ? "unix socket path too long" :
		    "expected HOST:PORT, [V6]:PORT or unix:PATH (numeric "
		    "host or localhost)");
	return rc;
}

static int
connect_to(const struct bench_target *t, struct mst_client **out,
    struct bench_err *e)
{
	int rc = mst_client_connect(t->addr, &t->o->client, out);

	if (rc < 0)
		snprintf(e->what, sizeof e->what, "connect %s%s", t->addr,
		    rc == -EACCES ? " (wrong key, or a key is needed: -k)" :
		    "");
	return rc;
}

/* A status reply (not a transport failure) is what the call saw. */
static int
is_status_reply(const struct mst_hdr *h, int rc)
{
	return (h->flags & MST_F_REPLY) && h->status != 0 &&
	    rc == -mst_status_to_errno(h->status);
}

/*
 * Describe a failed call in |e| ("OP OBJECT (detail)") and drop the
 * connection when the failure was not a status reply: its state is
 * unknown.
 */
static int
call_failed(struct mst_client **c, unsigned op, const char *obj, int rc,
    const struct mst_hdr *h, const uint8_t *payload, struct bench_err *e)
{
	struct mst_error_rep er = { { "", 0 } };
	int status = is_status_reply(h, rc);

	if (status && h->len > 0 &&
	    mst_error_rep_decode(&er, payload, h->len) < 0)
		er.detail.len = 0;
	snprintf(e->what, sizeof e->what, "%s %s%s", mst_op_name(op), obj,
	    status ? "" : " (connection dropped; reconnecting)");
	if (er.detail.len) {
		size_t n = strlen(e->what);

		snprintf(e->what + n, sizeof e->what - n, " (%.*s)",
		    (int)er.detail.len, er.detail.p);
	}
	if (!status) {
		mst_client_free(*c);
		*c = NULL;
	}
	return rc;
}

static int
ensure_client(struct bench_session *s, struct bench_err *e)
{
	return s->c ? 0 : connect_to(s->t, &s->c, e);
}

/* One request with a path_req or mkdir_req payload already in s->buf. */
static int
call(struct bench_session *s, unsigned op, size_t len, int ok_rc,
    struct bench_err *e)
{
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int rc = ensure_client(s, e);

	if (rc < 0)
		return rc;
	rc = mst_client_call(s->c, op, s->buf, len, &h, &rp);
	if (rc < 0 && rc != ok_rc)
		return call_failed(&s->c, op, s->path, rc, &h, rp, e);
	return 0;
}

static int
mkdir_path(struct bench_session *s, int ok_rc, struct bench_err *e)
{
	struct mst_mkdir_req q = { .path = mst_str_of(s->path), .mode = 0700,
		.uid = (uint32_t)getuid(), .gid = (uint32_t)getgid() };
	int n = mst_mkdir_req_encode(&q, s->buf, sizeof s->buf);

	return n < 0 ? n : call(s, MST_OP_MKDIR, (size_t)n, ok_rc, e);
}

static int
path_op(struct bench_session *s, unsigned op, int ok_rc, struct bench_err *e)
{
	struct mst_path_req q = { mst_str_of(s->path) };
	int n = mst_path_req_encode(&q, s->buf, sizeof s->buf);

	return n < 0 ? n : call(s, op, (size_t)n, ok_rc, e);
}

static int
mstore_open(const char *loc, const struct bench_opts *o,
    struct bench_target **out, struct bench_err *e)
{
	struct bench_target *t = calloc(1, sizeof *t);
	struct bench_session s = { 0 };
	const struct mst_hello_rep *hr;
	unsigned i;
	int rc;

	if (t == NULL)
		return -ENOMEM;
	t->addr = loc;
	t->o = o;
	s.t = t;
	rc = ensure_client(&s, e);
	if (rc < 0)
		goto fail;
	hr = mst_client_hello(s.c);
	if (hr->max_body && o->size > hr->max_body) {
		snprintf(e->what, sizeof e->what, "%s: message size %llu is "
		    "over the server's max_body %llu", loc,
		    (unsigned long long)o->size,
		    (unsigned long long)hr->max_body);
		rc = -EFBIG;
		goto fail;
	}
	for (i = 0; i < BENCH_BASE_TRIES; i++) {
		bench_base_name(o, i, t->base, sizeof t->base);
		snprintf(s.path, sizeof s.path, "%s", t->base);
		rc = mkdir_path(&s, 0, e);
		if (rc != -EEXIST)
			break;
	}
	if (rc < 0)
		goto fail;
	mst_client_free(s.c);
	*out = t;
	return 0;
fail:
	mst_client_free(s.c);
	free(t);
	return rc;
}

static int
mstore_session_open(struct bench_target *t, unsigned writer,
    struct bench_session **out, struct bench_err *e)
{
	struct bench_session *s = calloc(1, sizeof *s);
	int rc;

	(void)writer;
	if (s == NULL)
		return -ENOMEM;
	s->t = t;
	rc = bench_rng_seed(&s->rng);
	if (rc < 0)
		snprintf(e->what, sizeof e->what, "getrandom");
	if (rc == 0)
		rc = ensure_client(s, e);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void
mstore_session_close(struct bench_session *s)
{
	mst_client_free(s->c);
	free(s);
}

static int
mstore_setup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	static const char *const subs[] = { "", "/new", "/cur", "/tmp" };
	size_t i;
	int rc;

	for (i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		snprintf(s->path, sizeof s->path, "%s/user%u%s", s->t->base,
		    mbox, subs[i]);
		rc = mkdir_path(s, -EEXIST, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
mstore_deliver(struct bench_session *s, const struct bench_msg *m,
    struct bench_err *e)
{
	char mailbox[96];
	struct mst_deliver_req q = {
		.folder = { "", 0 },
		.sub = MST_SUB_NEW,
		.name = mst_str_of(m->name),
		.checksum = mst_checksum(m->body, m->len),
		.body_size = m->len,
		.mode = 0600,
		.uid = (uint32_t)getuid(),
		.gid = (uint32_t)getgid(),
	};
	uint64_t idem[2] = { bench_rng_next(&s->rng), bench_rng_next(&s->rng) };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int n, rc;

	snprintf(mailbox, sizeof mailbox, "%s/user%u", s->t->base, m->mbox);
	q.mailbox = mst_str_of(mailbox);
	memcpy(q.idem, idem, MST_IDEM_LEN);
	n = mst_deliver_req_encode(&q, s->buf, sizeof s->buf);
	if (n < 0) {
		snprintf(e->what, sizeof e->what, "encoding DELIVER %s/new/%s",
		    mailbox, m->name);
		return n;
	}
	rc = ensure_client(s, e);
	if (rc < 0)
		return rc;
	rc = mst_client_call_body(s->c, MST_OP_DELIVER, s->buf, (size_t)n,
	    m->body, m->len, &h, &rp);
	if (rc < 0) {
		snprintf(s->path, sizeof s->path, "%s/new/%s", mailbox,
		    m->name);
		return call_failed(&s->c, MST_OP_DELIVER, s->path, rc, &h, rp,
		    e);
	}
	return 0;
}

/* Names listed in one directory, copied out of the reply frames. */
struct names {
	char **v;
	size_t n, cap;
};

static void
names_free(struct names *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int
names_add_frame(struct names *l, const uint8_t *p, size_t len)
{
	struct mst_list_rep r;
	struct mst_list_entry en;
	size_t off = 0;
	char **v;
	int rc = mst_list_rep_decode(&r, p, len);

	while (rc == 0 && (rc = mst_list_entry_next(&en, &r, &off)) == 1) {
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 64;
			v = realloc(l->v, l->cap * sizeof *v);
			if (v == NULL)
				return -ENOMEM;
			l->v = v;
		}
		l->v[l->n] = strndup(en.name.p, en.name.len);
		if (l->v[l->n] == NULL)
			return -ENOMEM;
		l->n++;
		rc = 0;
	}
	return rc;
}

/* READDIR s->path into |l| (every frame of the reply). */
static int
list_names(struct bench_session *s, struct names *l, struct bench_err *e)
{
	struct mst_path_req q = { mst_str_of(s->path) };
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint32_t id;
	int n, rc = ensure_client(s, e);

	if (rc < 0)
		return rc;
	n = mst_path_req_encode(&q, s->buf, sizeof s->buf);
	rc = mst_client_call(s->c, MST_OP_READDIR, s->buf, (size_t)n, &h, &rp);
	if (rc == -ENOENT)
		return 0;		/* never created: nothing to remove */
	if (rc < 0)
		return call_failed(&s->c, MST_OP_READDIR, s->path, rc, &h, rp,
		    e);
	id = h.id;
	for (;;) {
		rc = names_add_frame(l, rp, h.len);
		if (rc < 0 || !(h.flags & MST_F_MORE))
			break;
		do {
			rc = mst_client_recv(s->c, &h, &rp);
		} while (rc == 0 && (h.flags & MST_F_NOTICE));
		if (rc == 0 && (h.id != id || h.status != 0))
			rc = -EPROTO;
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		snprintf(e->what, sizeof e->what, "READDIR %.400s: bad reply",
		    s->path);
		mst_client_free(s->c);
		s->c = NULL;
	}
	return rc;
}

static int
expunge(struct bench_session *s, const char *mailbox, unsigned sub,
    const char *name, struct bench_err *e)
{
	struct mst_msg_ref q = { .mailbox = mst_str_of(mailbox),
		.folder = { "", 0 }, .sub = (uint8_t)sub,
		.name = mst_str_of(name) };
	int n = mst_msg_ref_encode(&q, s->buf, sizeof s->buf);

	snprintf(s->path, sizeof s->path, "%s/%s/%s", mailbox,
	    sub == MST_SUB_NEW ? "new" : "cur", name);
	return n < 0 ? n : call(s, MST_OP_EXPUNGE, (size_t)n, -ENOENT, e);
}

static int
mstore_cleanup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	static const char *const dirs[] = { "/new", "/cur", "/tmp", "" };
	char mailbox[96];
	struct names l;
	size_t i, k;
	int rc;

	snprintf(mailbox, sizeof mailbox, "%s/user%u", s->t->base, mbox);
	for (k = 0; k < 2; k++) {	/* new/ and cur/: messages */
		memset(&l, 0, sizeof l);
		snprintf(s->path, sizeof s->path, "%s%s", mailbox, dirs[k]);
		rc = list_names(s, &l, e);
		for (i = 0; rc == 0 && i < l.n; i++)
			rc = expunge(s, mailbox, k == 0 ? MST_SUB_NEW :
			    MST_SUB_CUR, l.v[i], e);
		names_free(&l);
		if (rc < 0)
			return rc;
	}
	for (k = 0; k < sizeof dirs / sizeof dirs[0]; k++) {
		snprintf(s->path, sizeof s->path, "%s%s", mailbox, dirs[k]);
		rc = path_op(s, MST_OP_RMDIR, -ENOENT, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
mstore_close(struct bench_target *t, int keep, struct bench_err *e)
{
	struct bench_session s = { .t = t };
	int rc = 0;

	if (!keep) {
		snprintf(s.path, sizeof s.path, "%s", t->base);
		rc = path_op(&s, MST_OP_RMDIR, 0, e);
	}
	mst_client_free(s.c);
	free(t);
	return rc;
}

const struct bench_target_ops bench_mstore_ops = {
	.scheme = "mstore://",
	.syntax = "mstore://HOST:PORT or mstore://unix:PATH",
	.check = mstore_check,
	.open = mstore_open,
	.session_open = mstore_session_open,
	.session_close = mstore_session_close,
	.setup_mailbox = mstore_setup_mailbox,
	.deliver = mstore_deliver,
	.cleanup_mailbox = mstore_cleanup_mailbox,
	.close = mstore_close,
};
