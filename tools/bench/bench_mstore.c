/*
 * bench_mstore.c - the mstore://HOST:PORT (or mstore://unix:PATH) target
 * of mstore-bench: the native protocol, one connection per writer, one
 * DELIVER per message (random idempotency id, xxh3 checksum, the whole
 * body in one call), as mount.mstore sends it when an MTA links a file
 * from tmp/ into new/. Reads as an IMAP server on mount.mstore does:
 * LIST of new/, FETCH of every byte range until the whole body is there
 * (the checksum of the reply verified over the bytes assembled), SETINFO
 * into cur/ with the seen flag; EXPUNGE to remove. Mailboxes are MKDIRed
 * at setup; cleanup EXPUNGEs what this run delivered and RMDIRs what it
 * created, nothing else.
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
#include "../cli.h"

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
	uint8_t *body;			/* FETCH assembles a message here */
	size_t body_cap;
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
	if (hr->max_body && o->size_max > hr->max_body) {
		snprintf(e->what, sizeof e->what, "%s: message size %llu is "
		    "over the server's max_body %llu", loc,
		    (unsigned long long)o->size_max,
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
	free(s->body);
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

static void
mailbox_of(const struct bench_session *s, unsigned mbox, char *buf,
    size_t cap)
{
	snprintf(buf, cap, "%s/user%u", s->t->base, mbox);
}

static const char *
sub_name(unsigned sub)
{
	return sub == MST_SUB_NEW ? "new" : "cur";
}

static unsigned
sub_of(enum bench_sub sub)
{
	return sub == BENCH_NEW ? MST_SUB_NEW : MST_SUB_CUR;
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

	mailbox_of(s, m->mbox, mailbox, sizeof mailbox);
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

static int
list_add_frame(struct bench_list *l, const uint8_t *p, size_t len)
{
	struct mst_list_rep r;
	struct mst_list_entry en;
	size_t off = 0;
	int rc = mst_list_rep_decode(&r, p, len);

	while (rc == 0 && (rc = mst_list_entry_next(&en, &r, &off)) == 1)
		rc = en.kind == MST_LE_PRESENT ? bench_list_add(l, en.name.p,
		    en.name.len, en.attr.id) : 0;
	return rc;
}

/*
 * Send |op| (LIST or READDIR) with the payload in s->buf and collect the
 * names of every frame of the reply into |l|; s->path names the
 * directory. A missing directory is an empty one when |missing_ok|.
 */
static int
list_call(struct bench_session *s, unsigned op, size_t len,
    struct bench_list *l, int missing_ok, struct bench_err *e)
{
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	uint32_t id;
	int rc;

	bench_list_clear(l);
	rc = ensure_client(s, e);
	if (rc < 0)
		return rc;
	rc = mst_client_call(s->c, op, s->buf, len, &h, &rp);
	if (rc == -ENOENT && missing_ok)
		return 0;
	if (rc < 0)
		return call_failed(&s->c, op, s->path, rc, &h, rp, e);
	id = h.id;
	for (;;) {
		rc = list_add_frame(l, rp, h.len);
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
		/* Frames of the reply may still be on their way. */
		snprintf(e->what, sizeof e->what, "%s %.400s: %s (connection "
		    "dropped; reconnecting)", mst_op_name(op), s->path,
		    rc == -ENOMEM ? "listing" : "bad reply");
		mst_client_free(s->c);
		s->c = NULL;
	}
	return rc;
}

/* READDIR s->path into |l|; a missing directory is empty. */
static int
list_names(struct bench_session *s, struct bench_list *l,
    struct bench_err *e)
{
	struct mst_path_req q = { mst_str_of(s->path) };
	int n = mst_path_req_encode(&q, s->buf, sizeof s->buf);

	return n < 0 ? n : list_call(s, MST_OP_READDIR, (size_t)n, l, 1, e);
}

static int
mstore_list(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    struct bench_list *l, struct bench_err *e)
{
	char mailbox[96];
	struct mst_list_req q = { .folder = { "", 0 }, .sub =
		(uint8_t)sub_of(sub), .since = 0 };
	int n;

	mailbox_of(s, mbox, mailbox, sizeof mailbox);
	q.mailbox = mst_str_of(mailbox);
	snprintf(s->path, sizeof s->path, "%s/%s", mailbox,
	    sub_name(q.sub));
	n = mst_list_req_encode(&q, s->buf, sizeof s->buf);
	return n < 0 ? n : list_call(s, MST_OP_LIST, (size_t)n, l, 0, e);
}

/* A reply that does not fit the request: the connection is suspect. */
static int
bad_reply(struct bench_session *s, unsigned op, const char *why,
    struct bench_err *e)
{
	snprintf(e->what, sizeof e->what, "%s %.400s: %s (connection "
	    "dropped; reconnecting)", mst_op_name(op), s->path, why);
	mst_client_free(s->c);
	s->c = NULL;
	return -EPROTO;
}

/* Room for a body of |size| bytes, a message of this run. */
static int
body_room(struct bench_session *s, uint64_t size, struct bench_err *e)
{
	uint8_t *p;

	if (size > s->t->o->size_max) {
		snprintf(e->what, sizeof e->what, "FETCH %.400s: total_size "
		    "%llu is over the largest message of this run", s->path,
		    (unsigned long long)size);
		return -EFBIG;
	}
	if (size <= s->body_cap)
		return 0;
	p = realloc(s->body, (size_t)size);
	if (p == NULL) {
		snprintf(e->what, sizeof e->what, "FETCH %.400s: buffer",
		    s->path);
		return -ENOMEM;
	}
	s->body = p;
	s->body_cap = (size_t)size;
	return 0;
}

/*
 * One FETCH of the range at |off| into s->body. The first reply sets
 * *total and *sum; the others must agree with them (bodies are
 * immutable). Returns the bytes it added or a negative errno.
 */
static int
fetch_range(struct bench_session *s, struct mst_fetch_req *q, uint64_t off,
    uint64_t *total, uint64_t *sum, struct bench_err *e)
{
	struct mst_data_rep d;
	struct mst_hdr h = { 0 };
	const uint8_t *rp = NULL;
	int n, rc = ensure_client(s, e);

	if (rc < 0)
		return rc;
	q->offset = off;
	q->length = mst_client_max_frame(s->c) - 16;	/* data_rep: 16 */
	n = mst_fetch_req_encode(q, s->buf, sizeof s->buf);
	if (n < 0)
		return n;
	rc = mst_client_call(s->c, MST_OP_FETCH, s->buf, (size_t)n, &h, &rp);
	if (rc < 0)
		return call_failed(&s->c, MST_OP_FETCH, s->path, rc, &h, rp,
		    e);
	if (mst_data_rep_decode(&d, rp, h.len) < 0)
		return bad_reply(s, MST_OP_FETCH, "undecodable reply", e);
	if (off == 0) {
		*total = d.total_size;
		*sum = d.checksum;
		rc = body_room(s, *total, e);
		if (rc < 0)
			return rc;
	} else if (d.total_size != *total || d.checksum != *sum) {
		return bad_reply(s, MST_OP_FETCH, "the body changed between "
		    "ranges", e);
	}
	if (d.data.len > *total - off || (d.data.len == 0 && off < *total))
		return bad_reply(s, MST_OP_FETCH, "range does not fit", e);
	if (d.data.len)
		memcpy(s->body + off, d.data.p, d.data.len);
	return (int)d.data.len;
}

static int
mstore_read(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, uint64_t *size_out, struct bench_err *e)
{
	char mailbox[96];
	struct mst_fetch_req q = { .id = en->id };
	uint64_t off = 0, total = 0, sum = 0;
	int n;

	mailbox_of(s, mbox, mailbox, sizeof mailbox);
	q.mailbox = mst_str_of(mailbox);
	snprintf(s->path, sizeof s->path, "%s/%s/%s", mailbox,
	    sub_name(sub_of(sub)), en->name);
	do {
		n = fetch_range(s, &q, off, &total, &sum, e);
		if (n < 0)
			return n;
		off += (uint64_t)n;
	} while (off < total);
	if (mst_checksum(s->body, (size_t)total) != sum) {
		snprintf(e->what, sizeof e->what, "FETCH %.400s: the body "
		    "does not match the checksum of the reply", s->path);
		return -EBADMSG;
	}
	*size_out = total;
	return 0;
}

static int
mstore_seen(struct bench_session *s, unsigned mbox,
    const struct bench_entry *en, struct bench_err *e)
{
	char mailbox[96], to[MST_NAME_MAX + 1];
	struct mst_setinfo_req q = { .folder = { "", 0 },
		.from_sub = MST_SUB_NEW, .from_name = mst_str_of(en->name),
		.to_sub = MST_SUB_CUR, .flags = 0 };
	int n;

	mailbox_of(s, mbox, mailbox, sizeof mailbox);
	q.mailbox = mst_str_of(mailbox);
	n = snprintf(to, sizeof to, "%s%s", en->name, BENCH_SEEN_SUFFIX);
	snprintf(s->path, sizeof s->path, "%s/new/%s", mailbox, en->name);
	if (n < 0 || (size_t)n >= sizeof to) {
		snprintf(e->what, sizeof e->what, "SETINFO %.400s: name too "
		    "long for the seen flag", s->path);
		return -ENAMETOOLONG;
	}
	q.to_name = mst_str_of(to);
	n = mst_setinfo_req_encode(&q, s->buf, sizeof s->buf);
	return n < 0 ? n : call(s, MST_OP_SETINFO, (size_t)n, 0, e);
}

/* EXPUNGE; |ok_rc| (-ENOENT, or 0 for none) counts as success. */
static int
expunge(struct bench_session *s, const char *mailbox, unsigned sub,
    const char *name, int ok_rc, struct bench_err *e)
{
	struct mst_msg_ref q = { .mailbox = mst_str_of(mailbox),
		.folder = { "", 0 }, .sub = (uint8_t)sub,
		.name = mst_str_of(name) };
	int n = mst_msg_ref_encode(&q, s->buf, sizeof s->buf);

	snprintf(s->path, sizeof s->path, "%s/%s/%s", mailbox, sub_name(sub),
	    name);
	return n < 0 ? n : call(s, MST_OP_EXPUNGE, (size_t)n, ok_rc, e);
}

static int
mstore_expunge(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, struct bench_err *e)
{
	char mailbox[96];

	mailbox_of(s, mbox, mailbox, sizeof mailbox);
	return expunge(s, mailbox, sub_of(sub), en->name, 0, e);
}

static int
mstore_cleanup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	static const char *const dirs[] = { "/new", "/cur", "/tmp", "" };
	char mailbox[96];
	struct bench_list l = { 0 };
	size_t i, k;
	int rc;

	mailbox_of(s, mbox, mailbox, sizeof mailbox);
	for (k = 0; k < 2; k++) {	/* new/ and cur/: messages */
		snprintf(s->path, sizeof s->path, "%s%s", mailbox, dirs[k]);
		rc = list_names(s, &l, e);
		for (i = 0; rc == 0 && i < l.n; i++)
			rc = expunge(s, mailbox, k == 0 ? MST_SUB_NEW :
			    MST_SUB_CUR, l.v[i].name, -ENOENT, e);
		bench_list_free(&l);
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
	.list = mstore_list,
	.read = mstore_read,
	.seen = mstore_seen,
	.expunge = mstore_expunge,
	.cleanup_mailbox = mstore_cleanup_mailbox,
	.close = mstore_close,
};
