/*
 * mksession.c - writes fuzz_session's seed corpus: one file per session,
 * named "session-<what>", in the harness's layout (fuzz_session.c: a
 * flags byte, a write-size byte, then the bytes the client sends). Every
 * session is valid as a whole, so the fuzzer starts from streams that
 * reach deep into the server: the handshake with and without a key,
 * mail (DELIVER, LIST, STAT, FETCH, SETINFO, EXPUNGE), the namespace
 * (MKDIR, PUT, GET, LOOKUP, READDIR, RENAME, SETATTR, UNLINK, RMDIR,
 * STATFS), ordinary files by id (OPEN, WRITE, READ, FSETATTR, GETATTR,
 * LINK, LOCK, CLOSE), WATCH and its notices, ADMIN, bodies sent in DATA
 * frames, the refusals (before HELLO, a bad AUTH, a bad checksum, an
 * unknown opcode, a body too large), and two clients at once (notices of
 * one's changes to the other's WATCH; a LOCK waiting for the other's). Object ids are the engine's on an
 * empty store: they count up from 2 in the order objects are made.
 * Output is deterministic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mstproto.h"

/* fuzz_session.c's flags byte. */
#define F_KEY		0x01u
#define F_HANDSHAKE	0x02u
#define F_KEY2		0x04u
#define F_TCP		0x08u
#define F_LOCKSTEP	0x10u
#define F_TWO		0x20u

#define SEED_MAX	(64u << 10)

struct seed {
	uint8_t b[SEED_MAX];
	size_t len;
	uint32_t id;		/* last request id used */
};

static const char *outdir;

static void
raw(struct seed *s, const void *p, size_t len)
{
	if (len > sizeof s->b - s->len) {
		fprintf(stderr, "mksession: seed over %u bytes\n", SEED_MAX);
		exit(1);
	}
	memcpy(s->b + s->len, p, len);
	s->len += len;
}

static void
begin(struct seed *s, unsigned flags, unsigned chunk)
{
	uint8_t h[2] = { (uint8_t)flags, (uint8_t)chunk };

	s->len = 0;
	s->id = 0;
	raw(s, h, sizeof h);
}

/* A bare stream, to be joined by two(). */
static void
stream_begin(struct seed *s)
{
	s->len = 0;
	s->id = 0;
}

/* The two-client layout: |first| is the rest, |second| goes first. */
static void
two(struct seed *out, unsigned flags, unsigned chunk,
    const struct seed *first, const struct seed *second)
{
	uint8_t l[2] = { (uint8_t)(second->len >> 8), (uint8_t)second->len };

	if (second->len > 0xffff)
		abort();	/* the length field is 16 bits */
	begin(out, flags | F_TWO, chunk);
	raw(out, l, sizeof l);
	raw(out, second->b, second->len);
	raw(out, first->b, first->len);
}

static void
frame(struct seed *s, uint8_t op, uint16_t flags, uint32_t id,
    const uint8_t *p, size_t len)
{
	struct mst_hdr h = { MST_VERSION, op, flags, 0, id, (uint32_t)len };
	uint8_t hb[MST_HDR_LEN];

	if (mst_hdr_encode(&h, hb, sizeof hb) < 0)
		abort();	/* hb is MST_HDR_LEN */
	raw(s, hb, sizeof hb);
	raw(s, p, len);
}

/* One request frame from an encoder's result. */
static void
req(struct seed *s, uint8_t op, const uint8_t *p, int n)
{
	if (n < 0) {
		fprintf(stderr, "mksession: encoding %s: %d\n",
		    mst_op_name(op), n);
		exit(1);
	}
	frame(s, op, 0, ++s->id, p, (size_t)n);
}

static void
put_seed(const struct seed *s, const char *what)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof path, "%s/session-%s", outdir, what);
	f = fopen(path, "wb");
	if (f == NULL) {
		fprintf(stderr, "mksession: open %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
	ok = fwrite(s->b, 1, s->len, f) == s->len;
	if (fclose(f) != 0 || !ok) {
		fprintf(stderr, "mksession: write %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
}

static uint8_t p[SEED_MAX];

static void
hello(struct seed *s, uint32_t max_frame)
{
	struct mst_hello_req q = {
		.min_version = MST_VERSION,
		.max_version = MST_VERSION,
		.features = MST_FEAT_WATCH,
		.max_frame = max_frame,
		.client = mst_str_of("mksession"),
	};

	memset(q.nonce, 0x11, sizeof q.nonce);
	req(s, MST_OP_HELLO, p, mst_hello_req_encode(&q, p, sizeof p));
}

static void
ping(struct seed *s, uint64_t cookie)
{
	struct mst_ping q = { cookie };

	req(s, MST_OP_PING, p, mst_ping_encode(&q, p, sizeof p));
}

static void
path_op(struct seed *s, uint8_t op, const char *path)
{
	struct mst_path_req q = { mst_str_of(path) };

	req(s, op, p, mst_path_req_encode(&q, p, sizeof p));
}

static void
mkdir_op(struct seed *s, const char *path)
{
	struct mst_mkdir_req q = { mst_str_of(path), 0755, 1000, 1000 };

	req(s, MST_OP_MKDIR, p, mst_mkdir_req_encode(&q, p, sizeof p));
}

/*
 * Send |body| with the request whose fixed part |enc| encodes: all of it
 * in the first frame when |split| is 0, else |split| bytes there and the
 * rest in DATA frames of |split| bytes.
 */
typedef int encode_fn(void *q, struct mst_bytes chunk, uint8_t *buf,
    size_t cap);

static void
body_req(struct seed *s, uint8_t op, encode_fn *enc, void *q,
    const char *body, size_t split)
{
	size_t len = strlen(body), first = split && split < len ? split : len;
	struct mst_bytes chunk = { (const uint8_t *)body, (uint32_t)first };
	uint32_t id = ++s->id;
	size_t off, n;
	int rc = enc(q, chunk, p, sizeof p);

	if (rc < 0) {
		fprintf(stderr, "mksession: encoding %s: %d\n",
		    mst_op_name(op), rc);
		exit(1);
	}
	frame(s, op, first < len ? MST_F_MORE : 0, id, p, (size_t)rc);
	for (off = first; off < len; off += n) {
		n = len - off < split ? len - off : split;
		frame(s, MST_OP_DATA, off + n < len ? MST_F_MORE : 0, id,
		    (const uint8_t *)body + off, n);
	}
}

static int
enc_put(void *q, struct mst_bytes chunk, uint8_t *buf, size_t cap)
{
	struct mst_put_req *r = q;

	r->body = chunk;
	return mst_put_req_encode(r, buf, cap);
}

static int
enc_deliver(void *q, struct mst_bytes chunk, uint8_t *buf, size_t cap)
{
	struct mst_deliver_req *r = q;

	r->body = chunk;
	return mst_deliver_req_encode(r, buf, cap);
}

static int
enc_write(void *q, struct mst_bytes chunk, uint8_t *buf, size_t cap)
{
	struct mst_write_req *r = q;

	r->body = chunk;
	return mst_write_req_encode(r, buf, cap);
}

static void
put_op(struct seed *s, const char *path, const char *body, size_t split)
{
	struct mst_put_req q = {
		.path = mst_str_of(path), .mode = 0644, .uid = 1000,
		.gid = 1000, .mtime_ns = 1700000000000000000ull,
		.checksum = mst_checksum(body, strlen(body)),
		.body_size = strlen(body),
	};

	body_req(s, MST_OP_PUT, enc_put, &q, body, split);
}

static void
deliver_op(struct seed *s, const char *mbox, unsigned sub, const char *name,
    const char *body, size_t split)
{
	struct mst_deliver_req q = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.sub = (uint8_t)sub, .name = mst_str_of(name),
		.checksum = mst_checksum(body, strlen(body)),
		.body_size = strlen(body), .mode = 0600, .uid = 1000,
		.gid = 1000, .mtime_ns = 1700000000000000000ull,
	};

	memset(q.idem, (int)strlen(name), sizeof q.idem);
	q.idem[0] = (uint8_t)name[0];
	body_req(s, MST_OP_DELIVER, enc_deliver, &q, body, split);
}

static void
write_op(struct seed *s, uint64_t id, uint64_t off, unsigned flags,
    const char *body, size_t split)
{
	struct mst_write_req q = {
		.id = id, .offset = off, .flags = flags,
		.checksum = mst_checksum(body, strlen(body)),
		.body_size = strlen(body),
	};

	body_req(s, MST_OP_WRITE, enc_write, &q, body, split);
}

static void
id_op(struct seed *s, uint8_t op, uint64_t id)
{
	struct mst_id_req q = { id };

	req(s, op, p, mst_id_req_encode(&q, p, sizeof p));
}

static void
lock_op(struct seed *s, uint64_t id, uint64_t owner, unsigned type,
    unsigned flags, uint64_t start, uint64_t end)
{
	struct mst_lock_req q = { id, owner, (uint32_t)(100 + owner),
		(uint8_t)type, (uint8_t)flags, start, end };

	req(s, MST_OP_LOCK, p, mst_lock_req_encode(&q, p, sizeof p));
}

static void
admin_op(struct seed *s, const char *cmd, const char *arg)
{
	struct mst_admin_req q = { mst_str_of(cmd), mst_str_of(arg) };

	req(s, MST_OP_ADMIN, p, mst_admin_req_encode(&q, p, sizeof p));
}

static void
mailbox(struct seed *s, const char *m)
{
	char path[256];

	mkdir_op(s, m);
	snprintf(path, sizeof path, "%s/new", m);
	mkdir_op(s, path);
	snprintf(path, sizeof path, "%s/cur", m);
	mkdir_op(s, path);
	snprintf(path, sizeof path, "%s/tmp", m);
	mkdir_op(s, path);
}

static const char msg1[] =
    "From: a@example.com\r\nTo: b@example.com\r\nSubject: seed\r\n\r\n"
    "Hello.\r\n";
static const char msg2[] =
    "From: c@example.com\r\nTo: b@example.com\r\nSubject: second\r\n\r\n"
    "A body sent in DATA frames, long enough to need a few of them.\r\n";

/* Mail: DELIVER (whole and in DATA frames), LIST, STAT, FETCH, SETINFO,
 * EXPUNGE. Ids: m 2, m/new 3, m/cur 4, m/tmp 5, the messages 6 and 7. */
static void
mail(struct seed *s)
{
	struct mst_list_req l = { mst_str_of("m"), mst_str_of(""),
		MST_SUB_NEW, 0 };
	struct mst_msg_ref r = { mst_str_of("m"), mst_str_of(""),
		MST_SUB_NEW, mst_str_of("1.seed") };
	struct mst_fetch_req f = { mst_str_of("m"), 6, 0, 4096 };
	struct mst_setinfo_req si = { mst_str_of("m"), mst_str_of(""),
		MST_SUB_NEW, mst_str_of("1.seed"), MST_SUB_CUR,
		mst_str_of("1.seed:2,S"), 0 };

	mailbox(s, "m");
	deliver_op(s, "m", MST_SUB_NEW, "1.seed", msg1, 0);
	deliver_op(s, "m", MST_SUB_NEW, "2.seed", msg2, 40);
	req(s, MST_OP_LIST, p, mst_list_req_encode(&l, p, sizeof p));
	req(s, MST_OP_STAT, p, mst_msg_ref_encode(&r, p, sizeof p));
	req(s, MST_OP_FETCH, p, mst_fetch_req_encode(&f, p, sizeof p));
	f.id = 7;
	f.offset = 10;
	f.length = 20;
	req(s, MST_OP_FETCH, p, mst_fetch_req_encode(&f, p, sizeof p));
	req(s, MST_OP_SETINFO, p, mst_setinfo_req_encode(&si, p, sizeof p));
	l.sub = MST_SUB_CUR;
	req(s, MST_OP_LIST, p, mst_list_req_encode(&l, p, sizeof p));
	l.since = 1;
	req(s, MST_OP_LIST, p, mst_list_req_encode(&l, p, sizeof p));
	r.sub = MST_SUB_CUR;
	r.name = mst_str_of("1.seed:2,S");
	req(s, MST_OP_EXPUNGE, p, mst_msg_ref_encode(&r, p, sizeof p));
}

/* The namespace by path. Ids: d 2, d/f 3. */
static void
names(struct seed *s)
{
	struct mst_get_req g = { mst_str_of("d/f"), 2, 100 };
	struct mst_rename_req rn = { mst_str_of("d/f"), mst_str_of("d/g"),
		MST_RN_NOREPLACE };
	struct mst_setattr_req sa = { mst_str_of("d/g"),
		MST_SA_MODE | MST_SA_SIZE | MST_SA_MTIME, 0600, 0, 0, 5,
		1700000000000000000ull };

	mkdir_op(s, "d");
	put_op(s, "d/f", "ordinary file contents\n", 0);
	path_op(s, MST_OP_LOOKUP, "d/f");
	req(s, MST_OP_GET, p, mst_get_req_encode(&g, p, sizeof p));
	path_op(s, MST_OP_READDIR, "d");
	path_op(s, MST_OP_READDIR, "");
	req(s, MST_OP_RENAME, p, mst_rename_req_encode(&rn, p, sizeof p));
	req(s, MST_OP_SETATTR, p, mst_setattr_req_encode(&sa, p, sizeof p));
	path_op(s, MST_OP_STATFS, "d");
	path_op(s, MST_OP_UNLINK, "d/g");
	path_op(s, MST_OP_RMDIR, "d");
}

/* Ordinary files by id. Ids: f 2. */
static void
files(struct seed *s)
{
	struct mst_read_req rd = { 2, 0, 4096 };
	struct mst_fsetattr_req fs = { 2, MST_SA_SIZE | MST_SA_ATIME, 0, 0, 0,
		3, 0, 1700000000000000000ull };
	struct mst_link_req ln = { 2, mst_str_of("h") };

	put_op(s, "f", "", 0);
	id_op(s, MST_OP_OPEN, 2);
	write_op(s, 2, 0, 0, "written by id\n", 0);
	write_op(s, 2, 0, MST_WR_APPEND, "appended in DATA frames\n", 8);
	req(s, MST_OP_READ, p, mst_read_req_encode(&rd, p, sizeof p));
	req(s, MST_OP_FSETATTR, p, mst_fsetattr_req_encode(&fs, p, sizeof p));
	id_op(s, MST_OP_GETATTR, 2);
	req(s, MST_OP_LINK, p, mst_link_req_encode(&ln, p, sizeof p));
	lock_op(s, 2, 1, MST_LK_WR, 0, 0, 99);
	lock_op(s, 2, 2, MST_LK_RD, MST_LKF_TEST, 0, MST_LK_EOF);
	lock_op(s, 2, 2, MST_LK_RD, MST_LKF_WAIT, 50, 60);
	lock_op(s, 2, 2, MST_LK_RD, MST_LKF_CANCEL, 50, 60);
	lock_op(s, 2, 3, MST_LK_RD, MST_LKF_WAIT, 0, 10);
	lock_op(s, 2, 1, MST_LK_UN, 0, 0, MST_LK_EOF);
	lock_op(s, 2, 4, MST_LK_WR, MST_LKF_FLOCK, 0, MST_LK_EOF);
	lock_op(s, 2, 4, MST_LK_UN, MST_LKF_FLOCK, 0, MST_LK_EOF);
	path_op(s, MST_OP_UNLINK, "f");
	req(s, MST_OP_READ, p, mst_read_req_encode(&rd, p, sizeof p));
	id_op(s, MST_OP_CLOSE, 2);
	id_op(s, MST_OP_OPEN, 2);
}

/* WATCH, changes that notify, UNWATCH, more watches than allowed. */
static void
watch(struct seed *s)
{
	mkdir_op(s, "w");
	path_op(s, MST_OP_WATCH, "w");
	path_op(s, MST_OP_WATCH, "");
	put_op(s, "w/x", "x", 0);
	mkdir_op(s, "w/sub");
	path_op(s, MST_OP_UNLINK, "w/x");
	path_op(s, MST_OP_UNWATCH, "w");
	path_op(s, MST_OP_WATCH, "w/sub");
	path_op(s, MST_OP_WATCH, "w");
	path_op(s, MST_OP_WATCH, "a");
	path_op(s, MST_OP_WATCH, "b");
	path_op(s, MST_OP_RMDIR, "w/sub");
}

static void
admin(struct seed *s)
{
	admin_op(s, "stats", "");
	admin_op(s, "checkpoint", "");
	admin_op(s, "scrub", "");
	admin_op(s, "compact", "");
}

/* Refusals after the handshake. */
static void
bad(struct seed *s)
{
	struct mst_put_req q = {
		.path = mst_str_of("big"), .mode = 0644,
		.body_size = 2u << 20,
	};
	struct mst_bytes none = { NULL, 0 };
	uint8_t junk[8] = { 0 };
	int n;

	put_op(s, "ok", "fine", 0);
	/* A checksum that does not match. */
	q.path = mst_str_of("sum");
	q.body_size = 4;
	q.checksum = 1;
	n = enc_put(&q, (struct mst_bytes){ (const uint8_t *)"four", 4 }, p,
	    sizeof p);
	req(s, MST_OP_PUT, p, n);
	/* Over max_message_size: refused once its DATA has come. */
	q.path = mst_str_of("big");
	q.body_size = 2u << 20;
	n = enc_put(&q, none, p, sizeof p);
	frame(s, MST_OP_PUT, MST_F_MORE, ++s->id, p, (size_t)n);
	frame(s, MST_OP_DATA, 0, s->id, junk, sizeof junk);
	/* A path that escapes, an unknown opcode, NOTIFY from a client. */
	path_op(s, MST_OP_LOOKUP, "../etc");
	frame(s, 0x7e, 0, ++s->id, junk, sizeof junk);
	frame(s, MST_OP_NOTIFY, 0, ++s->id, junk, 0);
	frame(s, MST_OP_HELLO, 0, ++s->id, junk, 0);
	ping(s, 42);
	/* DATA for no body: the connection ends. */
	frame(s, MST_OP_DATA, 0, 999, junk, sizeof junk);
}

/* One client changes the root and w/ while the other watches them. */
static void
two_watch(struct seed *out)
{
	static struct seed a, b;
	struct mst_rename_req rn = { mst_str_of("b"), mst_str_of("w/b"), 0 };
	struct mst_setattr_req sa = { mst_str_of("w"), MST_SA_MODE, 0700,
		0, 0, 0, 0 };

	stream_begin(&a);
	hello(&a, MST_FRAME_MIN);
	ping(&a, 1);
	mkdir_op(&a, "w");
	put_op(&a, "w/a", "a", 0);
	put_op(&a, "b", "b", 0);
	req(&a, MST_OP_RENAME, p, mst_rename_req_encode(&rn, p, sizeof p));
	path_op(&a, MST_OP_UNLINK, "w/a");
	req(&a, MST_OP_SETATTR, p, mst_setattr_req_encode(&sa, p, sizeof p));
	mailbox(&a, "w/m");
	deliver_op(&a, "w/m", MST_SUB_NEW, "1.x", msg1, 0);

	stream_begin(&b);
	hello(&b, MST_FRAME_MIN);
	path_op(&b, MST_OP_WATCH, "");
	ping(&b, 2);
	ping(&b, 3);
	path_op(&b, MST_OP_WATCH, "w");
	ping(&b, 4);
	path_op(&b, MST_OP_WATCH, "w/m/new");
	ping(&b, 5);
	path_op(&b, MST_OP_UNWATCH, "");
	two(out, F_LOCKSTEP, 0, &a, &b);
}

/* One client holds a lock the other waits for; the holder unlocks one
 * range and ends holding the rest. Ids: f 2. */
static void
two_lock(struct seed *out)
{
	static struct seed a, b;

	stream_begin(&a);
	put_op(&a, "f", "locked", 0);
	id_op(&a, MST_OP_OPEN, 2);
	lock_op(&a, 2, 1, MST_LK_WR, 0, 0, 99);
	lock_op(&a, 2, 1, MST_LK_RD, MST_LKF_FLOCK, 0, MST_LK_EOF);
	ping(&a, 1);
	ping(&a, 2);
	lock_op(&a, 2, 1, MST_LK_UN, 0, 0, 9);
	ping(&a, 3);
	ping(&a, 4);

	stream_begin(&b);
	ping(&b, 5);
	ping(&b, 6);
	lock_op(&b, 2, 7, MST_LK_RD, MST_LKF_WAIT, 0, 9);
	lock_op(&b, 2, 7, MST_LK_RD, MST_LKF_TEST, 0, MST_LK_EOF);
	lock_op(&b, 2, 8, MST_LK_WR, MST_LKF_WAIT, 50, 60);
	lock_op(&b, 2, 9, MST_LK_WR, MST_LKF_WAIT | MST_LKF_FLOCK, 0,
	    MST_LK_EOF);
	ping(&b, 7);
	two(out, F_KEY | F_HANDSHAKE | F_LOCKSTEP, 0, &a, &b);
}

int
main(int argc, char **argv)
{
	static struct seed s;
	struct mst_auth a;

	if (argc != 2) {
		fprintf(stderr, "usage: mksession DIR\n");
		return 2;
	}
	outdir = argv[1];

	/* The handshake. */
	begin(&s, 0, 0);
	hello(&s, MST_FRAME_MIN);
	ping(&s, 1);
	put_seed(&s, "hello-ping");

	begin(&s, F_KEY | F_HANDSHAKE, 0);
	ping(&s, 2);
	path_op(&s, MST_OP_STATFS, "");
	put_seed(&s, "auth-key1");

	begin(&s, F_KEY | F_HANDSHAKE | F_KEY2 | F_TCP, 0);
	ping(&s, 3);
	admin_op(&s, "stats", "");
	admin_op(&s, "scrub", "");
	put_seed(&s, "auth-key2-tcp");

	begin(&s, F_KEY, 0);
	hello(&s, MST_FRAME_DEFAULT);
	memset(a.proof, 0, sizeof a.proof);
	req(&s, MST_OP_AUTH, p, mst_auth_encode(&a, p, sizeof p));
	ping(&s, 4);
	put_seed(&s, "auth-wrong");

	begin(&s, F_KEY, 0);
	hello(&s, MST_FRAME_MIN);
	ping(&s, 5);
	put_seed(&s, "auth-missing");

	begin(&s, 0, 0);
	ping(&s, 6);
	hello(&s, MST_FRAME_MIN);
	put_seed(&s, "before-hello");

	/* Sessions, without a key (the stream's own HELLO) and with one. */
	/* Sessions, in lockstep (each request once the one before is
	 * answered) unless named "pipelined". */
	begin(&s, F_LOCKSTEP, 0);
	hello(&s, MST_FRAME_MIN);
	mail(&s);
	put_seed(&s, "mail");

	begin(&s, 0, 0);
	hello(&s, MST_FRAME_MIN);
	mail(&s);
	put_seed(&s, "mail-pipelined");

	begin(&s, F_KEY | F_HANDSHAKE | F_LOCKSTEP, 0);
	names(&s);
	put_seed(&s, "names");

	begin(&s, F_HANDSHAKE | F_LOCKSTEP, 0);
	files(&s);
	put_seed(&s, "files");

	begin(&s, F_HANDSHAKE, 0);
	files(&s);
	put_seed(&s, "files-pipelined");

	begin(&s, F_LOCKSTEP, 0);
	hello(&s, MST_FRAME_MIN);
	watch(&s);
	put_seed(&s, "watch");

	begin(&s, F_HANDSHAKE | F_LOCKSTEP, 0);
	admin(&s);
	put_seed(&s, "admin");

	begin(&s, F_HANDSHAKE | F_TCP | F_LOCKSTEP, 0);
	admin(&s);
	put_seed(&s, "admin-tcp");

	begin(&s, F_LOCKSTEP, 0);
	hello(&s, MST_FRAME_MIN);
	bad(&s);
	put_seed(&s, "refusals");

	/* Two clients. */
	two_watch(&s);
	put_seed(&s, "two-watch");
	two_lock(&s);
	put_seed(&s, "two-lock");

	/* Partial frames: streams written 7, 1 and 3 bytes at a time, the
	 * last two cut inside a frame. */
	begin(&s, F_LOCKSTEP, 7);
	hello(&s, MST_FRAME_MIN);
	names(&s);
	put_seed(&s, "names-partial");

	begin(&s, F_HANDSHAKE | F_LOCKSTEP, 1);
	put_op(&s, "cut", "a body whose frame never ends", 0);
	s.len -= 5;
	put_seed(&s, "cut-frame");

	begin(&s, F_HANDSHAKE | F_LOCKSTEP, 3);
	put_op(&s, "cut", "a body whose DATA never comes", 4);
	s.len -= MST_HDR_LEN + 2;
	put_seed(&s, "cut-body");
	return 0;
}
