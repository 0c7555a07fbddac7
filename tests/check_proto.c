/*
 * check_proto.c - Check suite for libmstproto. Covers the frame header,
 * a field-by-field round trip of every payload layout, every class of
 * malformed input with the error mstproto.h documents for it, names and
 * paths, body accounting, the status <-> errno table, checksums, and
 * seeded random round trips and mutations. Decoders always read from a
 * heap copy of exactly the input's length, so ASan and valgrind see any
 * read past the end. No sockets, files or clocks.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codecs.h"
#include "mstproto.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define ENC_MAX		(64u << 10)	/* room for any generated payload */
#define SEED		0x6d73746f72650001ull
#define ROUNDS		20000

static uint8_t enc[ENC_MAX];

/* A copy of |p| in a heap block of exactly |n| bytes. */
static uint8_t *
dup_exact(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(q);
	if (n)
		memcpy(q, p, n);
	return q;
}

static int
encode_sample(const struct codec *c, union codecs_msg *m)
{
	int n;

	memset(m, 0, sizeof *m);
	c->sample(m);
	n = c->encode(m, enc, sizeof enc);
	ck_assert_msg(n >= 0, "%s: encode sample: got %s (%d)", c->name,
	    codecs_errname(n), n);
	return n;
}

static const struct codec *
codec_named(const char *name)
{
	const struct codec *c = codecs_find(name);

	ck_assert_msg(c != NULL, "no codec named %s", name);
	return c;
}

/* ---- frame header ---- */

static void
put_hdr(uint8_t *b, uint16_t magic, uint8_t version, uint8_t op,
    uint16_t flags, uint32_t len)
{
	b[0] = (uint8_t)(magic >> 8);
	b[1] = (uint8_t)magic;
	b[2] = version;
	b[3] = op;
	b[4] = (uint8_t)(flags >> 8);
	b[5] = (uint8_t)flags;
	b[6] = 0;
	b[7] = 0;
	b[8] = 0x01;
	b[9] = 0x02;
	b[10] = 0x03;
	b[11] = 0x04;
	b[12] = (uint8_t)(len >> 24);
	b[13] = (uint8_t)(len >> 16);
	b[14] = (uint8_t)(len >> 8);
	b[15] = (uint8_t)len;
}

static int
decode_hdr(const uint8_t *b, size_t len, uint32_t max_frame)
{
	struct mst_hdr h;
	uint8_t *q = dup_exact(b, len);
	int rc = mst_hdr_decode(&h, q, len, max_frame);

	free(q);
	return rc;
}

/* A RESET notice names no entry: a name there (of any length) is refused
 * at decode, so no caller can be handed an unchecked one. */
START_TEST(notify_reset_with_a_name_is_refused)
{
	char name[300];
	struct mst_notify n = { .path = mst_str_of("u/new"),
		.event = MST_EV_RESET, .id = 0, .change = 1 }, out;
	uint8_t buf[512];
	int len;

	memset(name, 'x', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	n.name = mst_str_of(name);
	len = mst_notify_encode(&n, buf, sizeof buf);
	ck_assert_int_gt(len, 0);
	ck_assert_int_eq(mst_notify_decode(&out, buf, (size_t)len), -EINVAL);
	n.name = mst_str_of("");
	len = mst_notify_encode(&n, buf, sizeof buf);
	ck_assert_int_eq(mst_notify_decode(&out, buf, (size_t)len), 0);
}
END_TEST

START_TEST(hdr_encodes_documented_layout)
{
	static const uint8_t want[MST_HDR_LEN] = {
		0x4d, 0x53, 0x01, 0x10, 0x00, 0x03, 0x00, 0x7a,
		0x01, 0x02, 0x03, 0x04, 0x00, 0xa0, 0xb0, 0xc0,
	};
	struct mst_hdr h = { MST_VERSION, MST_OP_DELIVER,
		MST_F_REPLY | MST_F_MORE, MST_S_EDQUOT, 0x01020304, 0xa0b0c0 };
	uint8_t b[MST_HDR_LEN];

	ck_assert_int_eq(mst_hdr_encode(&h, b, sizeof b), MST_HDR_LEN);
	ck_assert_mem_eq(b, want, MST_HDR_LEN);
}
END_TEST

START_TEST(hdr_round_trips_every_field)
{
	static const struct mst_hdr cases[] = {
		{ MST_VERSION, MST_OP_HELLO, 0, 0, 1, 48 },
		{ MST_VERSION, MST_OP_DELIVER, MST_F_MORE, 0, UINT32_MAX,
		    MST_FRAME_LIMIT },
		{ MST_VERSION, MST_OP_LIST, MST_F_REPLY | MST_F_MORE,
		    MST_S_ENOENT, 0x80000000u, 0 },
		{ MST_VERSION, MST_OP_NOTIFY, MST_F_NOTICE, 0, 0, 100 },
		{ MST_VERSION, MST_OP_ADMIN, MST_F_ALL, 0xffff, 7, 1 },
	};
	struct mst_hdr g;
	uint8_t b[MST_HDR_LEN];
	size_t i;
	int rc;

	for (i = 0; i < NELEM(cases); i++) {
		const struct mst_hdr *w = &cases[i];

		ck_assert_int_eq(mst_hdr_encode(w, b, sizeof b), MST_HDR_LEN);
		rc = mst_hdr_decode(&g, b, sizeof b, MST_FRAME_LIMIT);
		ck_assert_msg(rc == MST_HDR_LEN, "case %zu: got %s (%d), want "
		    "16", i, codecs_errname(rc), rc);
		ck_assert_uint_eq(g.version, w->version);
		ck_assert_uint_eq(g.op, w->op);
		ck_assert_uint_eq(g.flags, w->flags);
		ck_assert_uint_eq(g.status, w->status);
		ck_assert_uint_eq(g.id, w->id);
		ck_assert_uint_eq(g.len, w->len);
	}
}
END_TEST

START_TEST(hdr_decode_returns_zero_until_header_complete)
{
	uint8_t good[MST_HDR_LEN], junk[MST_HDR_LEN];
	size_t len;
	int rc;

	put_hdr(good, MST_MAGIC, MST_VERSION, MST_OP_PING, 0, 8);
	memset(junk, 0xff, sizeof junk);	/* bad in every field */
	for (len = 0; len < MST_HDR_LEN; len++) {
		rc = decode_hdr(good, len, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == 0, "good, %zu bytes: got %s (%d), want 0",
		    len, codecs_errname(rc), rc);
		rc = decode_hdr(junk, len, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == 0, "junk, %zu bytes: got %s (%d), want 0",
		    len, codecs_errname(rc), rc);
	}
	ck_assert_int_eq(decode_hdr(good, len, MST_FRAME_DEFAULT),
	    MST_HDR_LEN);
}
END_TEST

START_TEST(hdr_decode_rejects_bad_magic)
{
	static const uint16_t magics[] = { 0, 0x534d, 0x4d54, 0x4c53, 0xffff };
	uint8_t b[MST_HDR_LEN];
	size_t i;
	int rc;

	for (i = 0; i < NELEM(magics); i++) {
		put_hdr(b, magics[i], MST_VERSION, MST_OP_PING, 0, 8);
		rc = decode_hdr(b, sizeof b, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == -EPROTO, "magic %#x: got %s (%d), want "
		    "-EPROTO", magics[i], codecs_errname(rc), rc);
	}
}
END_TEST

START_TEST(hdr_decode_rejects_other_versions)
{
	static const uint8_t versions[] = { 0, MST_VERSION + 1, 0x7f, 0xff };
	uint8_t b[MST_HDR_LEN];
	size_t i;
	int rc;

	for (i = 0; i < NELEM(versions); i++) {
		put_hdr(b, MST_MAGIC, versions[i], MST_OP_PING, 0, 8);
		rc = decode_hdr(b, sizeof b, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == -EPROTONOSUPPORT, "version %u: got %s (%d), "
		    "want -EPROTONOSUPPORT", versions[i], codecs_errname(rc),
		    rc);
	}
}
END_TEST

START_TEST(hdr_decode_rejects_length_over_max)
{
	static const struct {
		uint32_t max, len;
		int want;
	} cases[] = {
		{ MST_FRAME_DEFAULT, MST_FRAME_DEFAULT, MST_HDR_LEN },
		{ MST_FRAME_DEFAULT, MST_FRAME_DEFAULT + 1, -EMSGSIZE },
		{ MST_FRAME_MIN, MST_FRAME_MIN, MST_HDR_LEN },
		{ MST_FRAME_MIN, MST_FRAME_MIN + 1, -EMSGSIZE },
		{ MST_FRAME_LIMIT, MST_FRAME_LIMIT, MST_HDR_LEN },
		{ MST_FRAME_LIMIT, MST_FRAME_LIMIT + 1, -EMSGSIZE },
		{ MST_FRAME_LIMIT, UINT32_MAX, -EMSGSIZE },
		{ 0, 0, MST_HDR_LEN },
		{ 0, 1, -EMSGSIZE },
	};
	uint8_t b[MST_HDR_LEN];
	size_t i;
	int rc;

	for (i = 0; i < NELEM(cases); i++) {
		put_hdr(b, MST_MAGIC, MST_VERSION, MST_OP_DELIVER, 0,
		    cases[i].len);
		rc = decode_hdr(b, sizeof b, cases[i].max);
		ck_assert_msg(rc == cases[i].want, "len %u, max %u: got %s "
		    "(%d), want %s (%d)", cases[i].len, cases[i].max,
		    codecs_errname(rc), rc, codecs_errname(cases[i].want),
		    cases[i].want);
	}
}
END_TEST

START_TEST(hdr_decode_rejects_unknown_opcodes)
{
	uint8_t b[MST_HDR_LEN];
	unsigned op, defined = 0;
	int rc, want;

	for (op = 0; op < 256; op++) {
		want = mst_op_name(op) ? (int)MST_HDR_LEN : -EOPNOTSUPP;
		defined += mst_op_name(op) != NULL;
		put_hdr(b, MST_MAGIC, MST_VERSION, (uint8_t)op, 0, 0);
		rc = decode_hdr(b, sizeof b, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == want, "op %#x: got %s (%d), want %s (%d)",
		    op, codecs_errname(rc), rc, codecs_errname(want), want);
	}
	ck_assert_uint_eq(defined, 35);
}
END_TEST

START_TEST(hdr_decode_rejects_reserved_flags)
{
	uint8_t b[MST_HDR_LEN];
	unsigned bit;
	int rc, want;

	for (bit = 0; bit < 16; bit++) {
		uint16_t flag = (uint16_t)(1u << bit);

		want = (flag & MST_F_ALL) ? (int)MST_HDR_LEN : -EPROTO;
		put_hdr(b, MST_MAGIC, MST_VERSION, MST_OP_PING, flag, 8);
		rc = decode_hdr(b, sizeof b, MST_FRAME_DEFAULT);
		ck_assert_msg(rc == want, "flags %#x: got %s (%d), want %s (%d)",
		    flag, codecs_errname(rc), rc, codecs_errname(want), want);
	}
}
END_TEST

START_TEST(hdr_encode_rejects_small_buffer)
{
	struct mst_hdr h = { MST_VERSION, MST_OP_PING, 0, 0, 1, 8 };
	uint8_t b[MST_HDR_LEN + 8];
	size_t cap, j;
	int rc;

	for (cap = 0; cap < MST_HDR_LEN; cap++) {
		memset(b, 0xa5, sizeof b);
		rc = mst_hdr_encode(&h, b, cap);
		ck_assert_msg(rc == -EMSGSIZE, "cap %zu: got %s (%d), want "
		    "-EMSGSIZE", cap, codecs_errname(rc), rc);
		for (j = cap; j < sizeof b; j++)
			ck_assert_msg(b[j] == 0xa5, "cap %zu: wrote byte %zu",
			    cap, j);
	}
}
END_TEST

START_TEST(op_name_names_every_opcode)
{
	static const struct {
		unsigned op;
		const char *name;
	} ops[] = {
		{ MST_OP_HELLO, "HELLO" }, { MST_OP_AUTH, "AUTH" },
		{ MST_OP_PING, "PING" }, { MST_OP_DATA, "DATA" },
		{ MST_OP_DELIVER, "DELIVER" }, { MST_OP_LIST, "LIST" },
		{ MST_OP_STAT, "STAT" }, { MST_OP_FETCH, "FETCH" },
		{ MST_OP_SETINFO, "SETINFO" }, { MST_OP_EXPUNGE, "EXPUNGE" },
		{ MST_OP_STAGE, "STAGE" }, { MST_OP_COMMIT, "COMMIT" },
		{ MST_OP_SPOOL, "SPOOL" },
		{ MST_OP_LOOKUP, "LOOKUP" }, { MST_OP_MKDIR, "MKDIR" },
		{ MST_OP_RMDIR, "RMDIR" }, { MST_OP_READDIR, "READDIR" },
		{ MST_OP_PUT, "PUT" }, { MST_OP_GET, "GET" },
		{ MST_OP_RENAME, "RENAME" }, { MST_OP_UNLINK, "UNLINK" },
		{ MST_OP_SETATTR, "SETATTR" }, { MST_OP_STATFS, "STATFS" },
		{ MST_OP_WATCH, "WATCH" }, { MST_OP_UNWATCH, "UNWATCH" },
		{ MST_OP_NOTIFY, "NOTIFY" }, { MST_OP_ADMIN, "ADMIN" },
		{ MST_OP_GETATTR, "GETATTR" }, { MST_OP_OPEN, "OPEN" },
		{ MST_OP_CLOSE, "CLOSE" }, { MST_OP_READ, "READ" },
		{ MST_OP_WRITE, "WRITE" }, { MST_OP_FSETATTR, "FSETATTR" },
		{ MST_OP_LINK, "LINK" }, { MST_OP_LOCK, "LOCK" },
	};
	size_t i;

	for (i = 0; i < NELEM(ops); i++) {
		const char *got = mst_op_name(ops[i].op);

		ck_assert_msg(got != NULL && strcmp(got, ops[i].name) == 0,
		    "op %#x: got %s, want %s", ops[i].op, got ? got : "NULL",
		    ops[i].name);
	}
	ck_assert_ptr_null(mst_op_name(0));
	ck_assert_ptr_null(mst_op_name(0x41));
	ck_assert_ptr_null(mst_op_name(0x4f));
	ck_assert_ptr_null(mst_op_name(0x58));
	ck_assert_ptr_null(mst_op_name(256 + MST_OP_PING));
	ck_assert_ptr_null(mst_op_name(UINT_MAX));
}
END_TEST

/* ---- payloads: one loop iteration per row of codecs[] ---- */

START_TEST(payload_round_trips_field_by_field)
{
	const struct codec *c = &codecs[_i];
	union codecs_msg m, d;
	char why[256];
	uint8_t *q;
	int n, rc;

	n = encode_sample(c, &m);
	q = dup_exact(enc, (size_t)n);
	rc = c->decode(&d, q, (size_t)n);
	ck_assert_msg(rc == 0, "%s: decode: got %s (%d), want 0", c->name,
	    codecs_errname(rc), rc);
	ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why), "%s: %s",
	    c->name, why);
	free(q);
}
END_TEST

/* A prefix that ends inside a field is -EBADMSG. Where a layout ends in
 * a body chunk, every prefix that keeps the fixed fields is a shorter
 * chunk; error_rep's empty payload is "no detail". */
START_TEST(payload_decode_rejects_truncation_at_every_offset)
{
	const struct codec *c = &codecs[_i];
	union codecs_msg m, d;
	size_t len, fixed;
	uint8_t *q;
	int n, rc, want;

	n = encode_sample(c, &m);
	fixed = (size_t)n - (c->chunk_len ? c->chunk_len(&m) : 0);
	for (len = 0; len < (size_t)n; len++) {
		want = -EBADMSG;
		if (c->chunk_len != NULL && len >= fixed)
			want = 0;
		if ((c->flags & CODEC_EMPTY_OK) && len == 0)
			want = 0;
		q = dup_exact(enc, len);
		rc = c->decode(&d, q, len);
		ck_assert_msg(rc == want, "%s: prefix %zu of %d: got %s (%d), "
		    "want %s (%d)", c->name, len, n, codecs_errname(rc), rc,
		    codecs_errname(want), want);
		if (want == 0 && c->chunk_len != NULL)
			ck_assert_msg(c->chunk_len(&d) == len - fixed,
			    "%s: prefix %zu: chunk of %u bytes, want %zu",
			    c->name, len, c->chunk_len(&d), len - fixed);
		free(q);
	}
}
END_TEST

/* Bytes after the last field are -EPROTO. In the chunked layouts they
 * would overrun the declared body (samples carry whole bodies), which is
 * -EPROTO too. A LIST reply's tail is its entry run, so stray bytes
 * there are a truncated entry: -EBADMSG. */
START_TEST(payload_decode_rejects_trailing_bytes)
{
	static const size_t extras[] = { 1, 2, 7, 64 };
	const struct codec *c = &codecs[_i];
	union codecs_msg m, d;
	size_t i;
	uint8_t *q;
	int n, rc, want;

	want = (c->flags & CODEC_ENTRIES) ? -EBADMSG : -EPROTO;
	n = encode_sample(c, &m);
	for (i = 0; i < NELEM(extras); i++) {
		memset(enc + n, 'x', extras[i]);
		q = dup_exact(enc, (size_t)n + extras[i]);
		rc = c->decode(&d, q, (size_t)n + extras[i]);
		ck_assert_msg(rc == want, "%s + %zu bytes: got %s (%d), want "
		    "%s (%d)", c->name, extras[i], codecs_errname(rc), rc,
		    codecs_errname(want), want);
		free(q);
	}
}
END_TEST

START_TEST(payload_encode_rejects_small_buffer)
{
	const struct codec *c = &codecs[_i];
	union codecs_msg m;
	uint8_t out[4096 + 16];
	size_t cap, j;
	int n, rc;

	n = encode_sample(c, &m);
	ck_assert_int_le(n, 4096);
	for (cap = 0; cap <= (size_t)n; cap++) {
		memset(out, 0xa5, sizeof out);
		rc = c->encode(&m, out, cap);
		if (cap == (size_t)n) {
			ck_assert_msg(rc == n, "%s: cap %zu: got %d, want %d",
			    c->name, cap, rc, n);
			ck_assert_mem_eq(out, enc, (size_t)n);
			break;
		}
		ck_assert_msg(rc == -EMSGSIZE, "%s: cap %zu of %d: got %s (%d), "
		    "want -EMSGSIZE", c->name, cap, n, codecs_errname(rc), rc);
		for (j = cap; j < (size_t)n + 16; j++)
			ck_assert_msg(out[j] == 0xa5, "%s: cap %zu: wrote byte "
			    "%zu", c->name, cap, j);
	}
}
END_TEST

/* ---- field domains: string fields ---- */

enum kind { K_NAME, K_PATH, K_TEXT };

struct sval {
	const char *what;
	const char *s;
	size_t n;
	int rc[3];	/* as a name, a path, free text */
};

static char n255[255], n256[256], comp256[2 + 256];
static char p4095[4095], p4096[4096], deep32[63], deep33[65];

/* 16 * 255 + 15 = 4095 bytes; 17 * 240 + 16 = 4096 bytes. */
static void
join(char *p, size_t ncomp, size_t complen, char c)
{
	size_t i;

	for (i = 0; i < ncomp; i++) {
		memset(p, c, complen);
		p += complen;
		if (i + 1 < ncomp)
			*p++ = '/';
	}
}

static const struct sval *
svals(size_t *n_out)
{
#define SV(what, lit, rn, rp, rt) { what, lit, sizeof(lit) - 1, { rn, rp, rt } }
#define SB(what, buf, rn, rp, rt) { what, buf, sizeof(buf), { rn, rp, rt } }
	static const struct sval v[] = {
		SV("NUL inside", "a\0b", -EINVAL, -EINVAL, -EINVAL),
		SV("NUL alone", "\0", -EINVAL, -EINVAL, -EINVAL),
		SV("\".\"", ".", -EINVAL, -EINVAL, 0),
		SV("\"..\"", "..", -EINVAL, -EINVAL, 0),
		SV("\"...\"", "...", 0, 0, 0),
		SV("\".x\"", ".x", 0, 0, 0),
		SV("\"a/b\"", "a/b", -EINVAL, 0, 0),
		SV("\"/\"", "/", -EINVAL, -EINVAL, 0),
		SV("leading /", "/a", -EINVAL, -EINVAL, 0),
		SV("empty component", "a//b", -EINVAL, -EINVAL, 0),
		SV("trailing /", "a/", -EINVAL, -EINVAL, 0),
		SV("\".\" component", "a/./b", -EINVAL, -EINVAL, 0),
		SV("\"..\" component", "a/../b", -EINVAL, -EINVAL, 0),
		SV("trailing \"..\"", "a/..", -EINVAL, -EINVAL, 0),
		SV("high bytes", "\xc3\xa9\xff", 0, 0, 0),
		SB("255 bytes", n255, 0, 0, 0),
		SB("256 bytes", n256, -ENAMETOOLONG, -ENAMETOOLONG, 0),
		SB("256-byte component", comp256, -ENAMETOOLONG, -ENAMETOOLONG,
		    0),
		SB("4095-byte path", p4095, -ENAMETOOLONG, 0, 0),
		SB("4096-byte path", p4096, -ENAMETOOLONG, -ENAMETOOLONG, 0),
		SB("32 components", deep32, -EINVAL, 0, 0),
		SB("33 components", deep33, -EINVAL, -ELOOP, 0),
	};
#undef SV
#undef SB

	memset(n255, 'n', sizeof n255);
	memset(n256, 'n', sizeof n256);
	memcpy(comp256, "a/", 2);
	memset(comp256 + 2, 'n', 256);
	join(p4095, 16, 255, 'p');
	join(p4096, 17, 240, 'q');
	join(deep32, 32, 1, 'a');
	join(deep33, 33, 1, 'a');
	*n_out = NELEM(v);
	return v;
}

START_TEST(name_check_follows_table)
{
	const struct sval *v;
	size_t i, n;
	int rc;

	v = svals(&n);
	for (i = 0; i < n; i++) {
		struct mst_str s = { v[i].s, (uint16_t)v[i].n };

		rc = mst_name_check(s);
		ck_assert_msg(rc == v[i].rc[K_NAME], "name %s: got %s (%d), "
		    "want %s (%d)", v[i].what, codecs_errname(rc), rc,
		    codecs_errname(v[i].rc[K_NAME]), v[i].rc[K_NAME]);
	}
	ck_assert_int_eq(mst_name_check(mst_str_of("")), -EINVAL);
}
END_TEST

START_TEST(path_check_follows_table)
{
	const struct sval *v;
	size_t i, n;
	int rc;

	v = svals(&n);
	for (i = 0; i < n; i++) {
		struct mst_str s = { v[i].s, (uint16_t)v[i].n };

		rc = mst_path_check(s);
		ck_assert_msg(rc == v[i].rc[K_PATH], "path %s: got %s (%d), "
		    "want %s (%d)", v[i].what, codecs_errname(rc), rc,
		    codecs_errname(v[i].rc[K_PATH]), v[i].rc[K_PATH]);
	}
	ck_assert_int_eq(mst_path_check(mst_str_of("")), 0);	/* root */
}
END_TEST

START_TEST(str_of_makes_views)
{
	static char big[70000];
	struct mst_str s;

	s = mst_str_of(NULL);
	ck_assert_ptr_nonnull(s.p);
	ck_assert_uint_eq(s.len, 0);
	s = mst_str_of("cur");
	ck_assert_uint_eq(s.len, 3);
	ck_assert_mem_eq(s.p, "cur", 3);
	memset(big, 'b', sizeof big - 1);
	s = mst_str_of(big);
	ck_assert_uint_eq(s.len, UINT16_MAX);
	ck_assert_ptr_eq(s.p, big);
}
END_TEST

struct sfield {
	const char *codec;
	const char *field;
	size_t off;
	enum kind kind;
	int empty_rc;	/* what "" decodes to */
	size_t max;	/* longest value the encoder takes */
};

#define SF(T, f, kind, empty, max)                                           \
	{ #T, #f, offsetof(struct mst_##T, f), kind, empty, max }

static const struct sfield str_fields[] = {
	SF(hello_req, client, K_TEXT, 0, UINT16_MAX),
	SF(hello_rep, server, K_TEXT, 0, UINT16_MAX),
	SF(deliver_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(deliver_req, folder, K_PATH, 0, UINT16_MAX),
	SF(deliver_req, name, K_NAME, -EINVAL, UINT16_MAX),
	SF(stage_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(stage_req, folder, K_PATH, 0, UINT16_MAX),
	SF(commit_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(commit_req, folder, K_PATH, 0, UINT16_MAX),
	SF(commit_req, name, K_NAME, -EINVAL, UINT16_MAX),
	SF(spool_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(list_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(list_req, folder, K_PATH, 0, UINT16_MAX),
	SF(msg_ref, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(msg_ref, folder, K_PATH, 0, UINT16_MAX),
	SF(msg_ref, name, K_NAME, -EINVAL, UINT16_MAX),
	SF(fetch_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(setinfo_req, mailbox, K_PATH, -EINVAL, UINT16_MAX),
	SF(setinfo_req, folder, K_PATH, 0, UINT16_MAX),
	SF(setinfo_req, from_name, K_NAME, -EINVAL, UINT16_MAX),
	SF(setinfo_req, to_name, K_NAME, -EINVAL, UINT16_MAX),
	SF(path_req, path, K_PATH, 0, UINT16_MAX),
	SF(mkdir_req, path, K_PATH, -EEXIST, UINT16_MAX),
	SF(put_req, path, K_PATH, -EISDIR, UINT16_MAX),
	SF(get_req, path, K_PATH, 0, UINT16_MAX),
	SF(rename_req, from, K_PATH, -EBUSY, UINT16_MAX),
	SF(rename_req, to, K_PATH, -EBUSY, UINT16_MAX),
	SF(setattr_req, path, K_PATH, 0, UINT16_MAX),
	SF(notify, path, K_PATH, 0, UINT16_MAX),
	SF(notify, name, K_NAME, -EINVAL, UINT16_MAX),
	SF(error_rep, detail, K_TEXT, 0, MST_DETAIL_MAX),
	SF(admin_req, cmd, K_TEXT, -EINVAL, UINT16_MAX),
	SF(admin_req, arg, K_TEXT, 0, UINT16_MAX),
	SF(link_req, path, K_PATH, -EEXIST, UINT16_MAX),
};

#undef SF

static void
check_str_field(const struct sfield *f, const char *what, struct mst_str s,
    int want)
{
	const struct codec *c = codec_named(f->codec);
	union codecs_msg m, d;
	char why[256];
	uint8_t *q;
	int n, rc;

	memset(&m, 0, sizeof m);
	c->sample(&m);
	memcpy((char *)&m + f->off, &s, sizeof s);
	n = c->encode(&m, enc, sizeof enc);
	ck_assert_msg(n >= 0, "%s.%s = %s: encode: got %s (%d)", f->codec,
	    f->field, what, codecs_errname(n), n);
	q = dup_exact(enc, (size_t)n);
	rc = c->decode(&d, q, (size_t)n);
	ck_assert_msg(rc == want, "%s.%s = %s: got %s (%d), want %s (%d)",
	    f->codec, f->field, what, codecs_errname(rc), rc,
	    codecs_errname(want), want);
	if (want == 0)
		ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why),
		    "%s.%s = %s: %s", f->codec, f->field, what, why);
	free(q);
}

START_TEST(string_field_rejects_values_outside_its_domain)
{
	const struct sfield *f = &str_fields[_i];
	const struct sval *v;
	size_t i, n;

	v = svals(&n);
	check_str_field(f, "\"\"", mst_str_of(""), f->empty_rc);
	for (i = 0; i < n; i++) {
		struct mst_str s = { v[i].s, (uint16_t)v[i].n };

		if (v[i].n > f->max)
			continue;
		check_str_field(f, v[i].what, s, v[i].rc[f->kind]);
	}
}
END_TEST

/* ---- field domains: numeric fields ---- */

struct ifield {
	const char *codec;
	const char *field;
	size_t off;
	size_t size;
	uint64_t val;
	int want;
};

#define IF(T, f, v, want)                                                    \
	{ #T, #f, offsetof(struct mst_##T, f),                               \
	    sizeof(((struct mst_##T *)0)->f), v, want }

static const struct ifield int_fields[] = {
	IF(hello_req, min_version, 3, 0),
	IF(hello_req, min_version, 4, -EINVAL),
	IF(hello_req, max_version, 0, -EINVAL),
	IF(hello_req, features, UINT32_MAX, 0),
	IF(hello_req, max_frame, MST_FRAME_MIN - 1, -EINVAL),
	IF(hello_req, max_frame, MST_FRAME_LIMIT + 1, -EINVAL),
	IF(hello_rep, max_frame, MST_FRAME_MIN - 1, -EINVAL),
	IF(hello_rep, max_frame, MST_FRAME_MIN, 0),
	IF(hello_rep, max_frame, MST_FRAME_LIMIT, 0),
	IF(hello_rep, max_frame, MST_FRAME_LIMIT + 1, -EINVAL),
	IF(hello_rep, max_body, MST_BODY_MAX, 0),
	IF(hello_rep, max_body, MST_BODY_MAX + 1, -EFBIG),
	IF(hello_rep, max_body, UINT64_MAX, -EFBIG),
	IF(deliver_req, sub, MST_SUB_NEW, 0),
	IF(deliver_req, sub, 0, -EINVAL),
	IF(deliver_req, sub, 3, -EINVAL),
	IF(deliver_req, sub, 0xff, -EINVAL),
	IF(deliver_req, body_size, MST_BODY_MAX, 0),
	IF(deliver_req, body_size, MST_BODY_MAX + 1, -EFBIG),
	IF(deliver_req, body_size, UINT64_MAX, -EFBIG),
	IF(deliver_req, mode, 07777, 0),
	IF(deliver_req, mode, 010000, -EINVAL),
	IF(deliver_req, mode, UINT32_MAX, -EINVAL),
	IF(stage_req, body_size, MST_BODY_MAX, 0),
	IF(stage_req, body_size, MST_BODY_MAX + 1, -EFBIG),
	IF(stage_req, mode, 07777, 0),
	IF(stage_req, mode, 010000, -EINVAL),
	IF(commit_req, sub, MST_SUB_CUR, 0),
	IF(commit_req, sub, 0, -EINVAL),
	IF(commit_req, sub, 3, -EINVAL),
	IF(commit_req, body_size, MST_BODY_MAX, 0),
	IF(commit_req, body_size, MST_BODY_MAX + 1, -EFBIG),
	IF(commit_req, mode, 010000, -EINVAL),
	IF(spool_req, offset, MST_BODY_MAX - 64, 0),
	IF(spool_req, offset, MST_BODY_MAX + 1, -EFBIG),
	IF(attr_rep, attr.type, MST_T_DIR, 0),
	IF(attr_rep, attr.type, MST_T_FILE, 0),
	IF(attr_rep, attr.type, 0, -EINVAL),
	IF(attr_rep, attr.type, 4, -EINVAL),
	IF(attr_rep, attr.mode, 07777, 0),
	IF(attr_rep, attr.mode, 010000, -EINVAL),
	IF(list_req, sub, 0, -EINVAL),
	IF(list_req, sub, 3, -EINVAL),
	IF(list_rep, flags, 0, 0),
	IF(list_rep, flags, 2, -EINVAL),
	IF(list_rep, flags, 0xff, -EINVAL),
	IF(msg_ref, sub, 0, -EINVAL),
	IF(msg_ref, sub, 3, -EINVAL),
	IF(setinfo_req, from_sub, 0, -EINVAL),
	IF(setinfo_req, from_sub, 3, -EINVAL),
	IF(setinfo_req, to_sub, 0, -EINVAL),
	IF(setinfo_req, to_sub, 3, -EINVAL),
	IF(setinfo_req, flags, 0, 0),
	IF(setinfo_req, flags, 2, -EINVAL),
	IF(setinfo_req, flags, 0x80000000u, -EINVAL),
	IF(mkdir_req, mode, 010000, -EINVAL),
	IF(put_req, flags, 0, 0),
	IF(put_req, flags, 2, -EINVAL),
	IF(put_req, flags, 0x80000000u, -EINVAL),
	IF(put_req, mode, 010000, -EINVAL),
	IF(put_req, body_size, MST_BODY_MAX, 0),
	IF(put_req, body_size, MST_BODY_MAX + 1, -EFBIG),
	IF(rename_req, flags, 0, 0),
	IF(rename_req, flags, 2, -EINVAL),
	IF(rename_req, flags, 0x80000000u, -EINVAL),
	IF(setattr_req, valid, 0, 0),
	IF(setattr_req, valid, MST_SA_ALL + 1, -EINVAL),
	IF(setattr_req, valid, 0x80000000u, -EINVAL),
	IF(setattr_req, mode, 010000, -EINVAL),
	IF(setattr_req, size, MST_BODY_MAX, 0),
	IF(setattr_req, size, MST_BODY_MAX + 1, -EFBIG),
	IF(notify, event, MST_EV_REMOVE, 0),
	IF(notify, event, MST_EV_CHANGE, 0),
	/* The sample names an entry, which a RESET may not. */
	IF(notify, event, MST_EV_RESET, -EINVAL),
	IF(notify, event, 0, -EINVAL),
	IF(notify, event, MST_EV_RESET + 1, -EINVAL),
	IF(notify, event, 0xff, -EINVAL),
	IF(write_req, flags, 0, 0),
	IF(write_req, flags, MST_WR_ALL + 1, -EINVAL),
	IF(write_req, flags, 0x80000000u, -EINVAL),
	IF(write_req, body_size, MST_BODY_MAX, 0),
	IF(write_req, body_size, MST_BODY_MAX + 1, -EFBIG),
	IF(write_req, body_size, UINT64_MAX, -EFBIG),
	IF(write_req, offset, UINT64_MAX, 0),	/* the sample appends */
	IF(fsetattr_req, valid, 0, 0),
	IF(fsetattr_req, valid, MST_SA_ATIME, 0),
	IF(fsetattr_req, valid, MST_FSA_ALL + 1, -EINVAL),
	IF(fsetattr_req, valid, 0x80000000u, -EINVAL),
	IF(fsetattr_req, mode, 07777, 0),
	IF(fsetattr_req, mode, 010000, -EINVAL),
	IF(fsetattr_req, size, MST_BODY_MAX, 0),
	IF(fsetattr_req, size, MST_BODY_MAX + 1, -EFBIG),
	IF(lock_req, type, MST_LK_RD, 0),
	IF(lock_req, type, 0, -EINVAL),
	IF(lock_req, type, MST_LK_UN + 1, -EINVAL),
	IF(lock_req, type, 0xff, -EINVAL),
	IF(lock_req, type, MST_LK_UN, -EINVAL),	/* the sample waits */
	IF(lock_req, flags, 0, 0),
	IF(lock_req, flags, MST_LKF_FLOCK, 0),
	IF(lock_req, flags, MST_LKF_TEST, 0),
	IF(lock_req, flags, MST_LKF_CANCEL, 0),
	IF(lock_req, flags, MST_LKF_ALL + 1, -EINVAL),
	IF(lock_req, flags, 0x80, -EINVAL),
	IF(lock_req, start, 0, 0),
	IF(lock_req, start, MST_LK_EOF, 0),
	IF(lock_req, end, 100, 0),
	IF(lock_req, end, 99, -EINVAL),
	IF(lock_rep, type, MST_LK_UN, 0),
	IF(lock_rep, type, 0, -EINVAL),
	IF(lock_rep, type, MST_LK_UN + 1, -EINVAL),
	IF(lock_rep, end, 9, -EINVAL),
	IF(lock_rep, end, MST_LK_EOF, 0),
};

#undef IF

static void
set_uint(void *base, size_t off, size_t size, uint64_t v)
{
	uint8_t *p = (uint8_t *)base + off;
	uint8_t v8 = (uint8_t)v;
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;

	switch (size) {
	case 1:
		memcpy(p, &v8, 1);
		break;
	case 2:
		memcpy(p, &v16, 2);
		break;
	case 4:
		memcpy(p, &v32, 4);
		break;
	case 8:
		memcpy(p, &v, 8);
		break;
	default:
		ck_abort_msg("field of %zu bytes", size);
	}
}

START_TEST(numeric_field_rejects_values_outside_its_domain)
{
	const struct ifield *f = &int_fields[_i];
	const struct codec *c = codec_named(f->codec);
	union codecs_msg m, d;
	char why[256];
	uint8_t *q;
	int n, rc;

	memset(&m, 0, sizeof m);
	c->sample(&m);
	set_uint(&m, f->off, f->size, f->val);
	n = c->encode(&m, enc, sizeof enc);
	ck_assert_int_ge(n, 0);
	q = dup_exact(enc, (size_t)n);
	rc = c->decode(&d, q, (size_t)n);
	ck_assert_msg(rc == f->want, "%s.%s = %#llx: got %s (%d), want %s (%d)",
	    f->codec, f->field, (unsigned long long)f->val, codecs_errname(rc),
	    rc, codecs_errname(f->want), f->want);
	if (f->want == 0)
		ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why),
		    "%s.%s = %#llx: %s", f->codec, f->field,
		    (unsigned long long)f->val, why);
	free(q);
}
END_TEST

/* ---- bodies ---- */

START_TEST(deliver_req_carries_partial_body_chunk)
{
	const struct codec *c = codec_named("deliver_req");
	union codecs_msg m, d;
	char why[256];
	uint8_t *q;
	int n;

	memset(&m, 0, sizeof m);
	c->sample(&m);
	m.deliver_req.body_size = 1u << 20;	/* DATA frames follow */
	n = c->encode(&m, enc, sizeof enc);
	ck_assert_int_ge(n, 0);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(c->decode(&d, q, (size_t)n), 0);
	ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why), "%s", why);
	ck_assert_uint_eq(d.deliver_req.body_size, 1u << 20);
	ck_assert_ptr_eq(d.deliver_req.body.p, q + n - m.deliver_req.body.len);
	free(q);
}
END_TEST

/* COMMIT is DELIVER's layout cut after mtime_ns: the same bytes, and a
 * DELIVER's body chunk after them is trailing garbage to COMMIT. */
START_TEST(commit_req_is_deliver_req_without_body)
{
	const struct codec *dc = codec_named("deliver_req");
	const struct codec *cc = codec_named("commit_req");
	union codecs_msg m, c, d;
	uint8_t cbuf[1024];
	int n, k;

	memset(&m, 0, sizeof m);
	dc->sample(&m);
	memset(&c, 0, sizeof c);
	c.commit_req.mailbox = m.deliver_req.mailbox;
	c.commit_req.folder = m.deliver_req.folder;
	c.commit_req.sub = m.deliver_req.sub;
	c.commit_req.name = m.deliver_req.name;
	memcpy(c.commit_req.idem, m.deliver_req.idem, MST_IDEM_LEN);
	c.commit_req.checksum = m.deliver_req.checksum;
	c.commit_req.body_size = m.deliver_req.body_size;
	c.commit_req.mode = m.deliver_req.mode;
	c.commit_req.uid = m.deliver_req.uid;
	c.commit_req.gid = m.deliver_req.gid;
	c.commit_req.mtime_ns = m.deliver_req.mtime_ns;
	n = dc->encode(&m, enc, sizeof enc);
	k = cc->encode(&c, cbuf, sizeof cbuf);
	ck_assert_int_gt(k, 0);
	ck_assert_int_eq(n, k + (int)m.deliver_req.body.len);
	ck_assert_mem_eq(enc, cbuf, (size_t)k);
	ck_assert_int_eq(cc->decode(&d, enc, (size_t)n), -EPROTO);
	ck_assert_int_eq(cc->decode(&d, cbuf, (size_t)k), 0);
	ck_assert_uint_eq(d.commit_req.body_size, m.deliver_req.body_size);
}
END_TEST

/* Declared sizes one short of the chunk, and zero: the chunk overruns. */
START_TEST(body_chunk_longer_than_declared_is_eproto)
{
	static const char *const names[] = { "deliver_req", "put_req",
		"write_req", "data_rep", "stage_req" };
	union codecs_msg m, d;
	size_t i, k;
	uint8_t *q;
	int n, rc;

	for (i = 0; i < NELEM(names); i++) {
		const struct codec *c = codec_named(names[i]);

		for (k = 0; k < 2; k++) {
			uint64_t declared;

			memset(&m, 0, sizeof m);
			c->sample(&m);
			declared = k == 0 ? c->chunk_len(&m) - 1u : 0;
			if (strcmp(c->name, "deliver_req") == 0)
				m.deliver_req.body_size = declared;
			else if (strcmp(c->name, "put_req") == 0)
				m.put_req.body_size = declared;
			else if (strcmp(c->name, "write_req") == 0)
				m.write_req.body_size = declared;
			else if (strcmp(c->name, "stage_req") == 0)
				m.stage_req.body_size = declared;
			else
				m.data_rep.total_size = declared;
			n = c->encode(&m, enc, sizeof enc);
			ck_assert_int_ge(n, 0);
			q = dup_exact(enc, (size_t)n);
			rc = c->decode(&d, q, (size_t)n);
			ck_assert_msg(rc == -EPROTO, "%s, chunk %u, declared "
			    "%llu: got %s (%d), want -EPROTO", c->name,
			    c->chunk_len(&m), (unsigned long long)declared,
			    codecs_errname(rc), rc);
			free(q);
		}
	}
}
END_TEST

struct body_step {
	uint64_t n;
	int more;
	int rc;
};

static const struct {
	const char *what;
	uint64_t want;
	size_t nsteps;
	struct body_step step[4];
} body_cases[] = {
	{ "one chunk completes", 10, 1, { { 10, 0, 1 } } },
	{ "two chunks complete", 10, 2, { { 4, 1, 0 }, { 6, 0, 1 } } },
	{ "three chunks complete", 10, 3,
	    { { 3, 1, 0 }, { 3, 1, 0 }, { 4, 0, 1 } } },
	{ "empty body", 0, 1, { { 0, 0, 1 } } },
	{ "empty chunk with MORE", 10, 2, { { 0, 1, 0 }, { 10, 0, 1 } } },
	{ "overrun in the only chunk", 10, 1, { { 11, 0, -EPROTO } } },
	{ "overrun in the last chunk", 10, 2,
	    { { 4, 1, 0 }, { 7, 0, -EPROTO } } },
	{ "overrun with MORE", 10, 2, { { 4, 1, 0 }, { 7, 1, -EPROTO } } },
	{ "overrun of an empty body", 0, 1, { { 1, 0, -EPROTO } } },
	{ "MORE on the last chunk", 10, 2,
	    { { 4, 1, 0 }, { 6, 1, -EPROTO } } },
	{ "MORE on the only chunk", 10, 1, { { 10, 1, -EPROTO } } },
	{ "MORE on an empty body", 0, 1, { { 0, 1, -EPROTO } } },
	{ "missing MORE", 10, 1, { { 4, 0, -EPROTO } } },
	{ "missing MORE on an empty chunk", 10, 1, { { 0, 0, -EPROTO } } },
	{ "body of MST_BODY_MAX", MST_BODY_MAX, 2,
	    { { MST_BODY_MAX - 1, 1, 0 }, { 1, 0, 1 } } },
	{ "overrun of MST_BODY_MAX", MST_BODY_MAX, 1,
	    { { MST_BODY_MAX + 1, 0, -EPROTO } } },
};

START_TEST(body_add_accounts_chunks)
{
	struct mst_body b = { body_cases[_i].want, 0 };
	size_t k;
	int rc;

	for (k = 0; k < body_cases[_i].nsteps; k++) {
		const struct body_step *s = &body_cases[_i].step[k];

		rc = mst_body_add(&b, (size_t)s->n, s->more);
		ck_assert_msg(rc == s->rc, "%s, step %zu (%llu bytes, more %d): "
		    "got %s (%d), want %s (%d)", body_cases[_i].what, k,
		    (unsigned long long)s->n, s->more, codecs_errname(rc), rc,
		    codecs_errname(s->rc), s->rc);
	}
}
END_TEST

/* ---- LIST ---- */

static struct mst_attr
attr_of(uint8_t type, uint64_t id)
{
	struct mst_attr a = { type, id, 4321, 0600, 5000, 5001, 1,
		1700000000000000001ull, 1700000000000000002ull, 9,
		1700000000000000003ull };

	return a;
}

/* Encodes |n| entries after the fixed part; returns the payload length. */
static int
encode_list(const struct mst_list_entry *e, size_t n, uint32_t count)
{
	static uint8_t ents[8192];
	struct mst_list_rep r = { 7, 8, MST_LIST_FULL, count, ents, 0 };
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = mst_list_entry_encode(&e[i], ents + r.entries_len,
		    sizeof ents - r.entries_len);
		ck_assert_int_ge(rc, 0);
		ck_assert_uint_eq((size_t)rc, mst_list_entry_size(&e[i]));
		r.entries_len += (size_t)rc;
	}
	rc = mst_list_rep_encode(&r, enc, sizeof enc);
	ck_assert_int_ge(rc, 0);
	return rc;
}

START_TEST(list_rep_round_trips_each_entry)
{
	static char longname[MST_NAME_MAX];
	struct mst_list_entry e[4] = {
		{ MST_LE_PRESENT, mst_str_of("1700000001.M2.smtp1:2,S"),
		    attr_of(MST_T_MSG, 43) },
		{ MST_LE_PRESENT, mst_str_of(".Sent"), attr_of(MST_T_DIR, 44) },
		{ MST_LE_PRESENT, { longname, sizeof longname },
		    attr_of(MST_T_FILE, 45) },
		{ MST_LE_REMOVED, mst_str_of("1699999999.M0.smtp2"),
		    attr_of(MST_T_MSG, 41) },
	};
	struct mst_list_rep r;
	struct mst_list_entry got;
	char why[256];
	size_t off = 0, i;
	uint8_t *q;
	int n, rc;

	memset(longname, 'l', sizeof longname);
	n = encode_list(e, NELEM(e), NELEM(e));
	q = dup_exact(enc, (size_t)n);
	rc = mst_list_rep_decode(&r, q, (size_t)n);
	ck_assert_msg(rc == 0, "got %s (%d), want 0", codecs_errname(rc), rc);
	ck_assert_uint_eq(r.change, 7);
	ck_assert_uint_eq(r.dir_mtime_ns, 8);
	ck_assert_uint_eq(r.flags, MST_LIST_FULL);
	ck_assert_uint_eq(r.count, NELEM(e));
	for (i = 0; i < NELEM(e); i++) {
		size_t before = off;

		rc = mst_list_entry_next(&got, &r, &off);
		ck_assert_msg(rc == 1, "entry %zu: got %s (%d), want 1", i,
		    codecs_errname(rc), rc);
		ck_assert_msg(codecs_entry_eq(&got, &e[i], why, sizeof why),
		    "entry %zu: %s", i, why);
		ck_assert_uint_eq(off - before, mst_list_entry_size(&e[i]));
	}
	ck_assert_int_eq(mst_list_entry_next(&got, &r, &off), 0);
	ck_assert_uint_eq(off, r.entries_len);
	free(q);
}
END_TEST

/* mstore-protocol(7): a REMOVED entry sets type, id and change, the
 * other attributes are 0, and the type must still be valid. */
START_TEST(list_rep_round_trips_removed_entry_as_documented)
{
	struct mst_list_entry e = { MST_LE_REMOVED, mst_str_of("gone"),
		{ 0 } };
	struct mst_list_rep r;
	struct mst_list_entry got;
	char why[256];
	size_t off = 0;
	uint8_t *q;
	int n, rc;

	e.attr.type = MST_T_MSG;
	e.attr.id = 41;
	e.attr.change = 98;
	n = encode_list(&e, 1, 1);
	q = dup_exact(enc, (size_t)n);
	rc = mst_list_rep_decode(&r, q, (size_t)n);
	ck_assert_msg(rc == 0, "got %s (%d), want 0", codecs_errname(rc), rc);
	ck_assert_int_eq(mst_list_entry_next(&got, &r, &off), 1);
	ck_assert_msg(codecs_entry_eq(&got, &e, why, sizeof why), "%s", why);
	free(q);

	e.attr.type = 0;
	n = encode_list(&e, 1, 1);
	q = dup_exact(enc, (size_t)n);
	rc = mst_list_rep_decode(&r, q, (size_t)n);
	ck_assert_msg(rc == -EINVAL, "type 0: got %s (%d), want -EINVAL",
	    codecs_errname(rc), rc);
	free(q);
}
END_TEST

START_TEST(list_rep_with_no_entries_round_trips)
{
	struct mst_list_rep r;
	struct mst_list_entry got;
	size_t off = 0;
	uint8_t *q;
	int n;

	n = encode_list(NULL, 0, 0);
	ck_assert_int_eq(n, 8 + 8 + 1 + 4);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_list_rep_decode(&r, q, (size_t)n), 0);
	ck_assert_uint_eq(r.count, 0);
	ck_assert_uint_eq(r.entries_len, 0);
	ck_assert_int_eq(mst_list_entry_next(&got, &r, &off), 0);
	free(q);
}
END_TEST

START_TEST(list_rep_rejects_count_that_disagrees_with_entries)
{
	static const struct {
		size_t nent;
		uint32_t count;
	} cases[] = {
		{ 3, 2 }, { 3, 4 }, { 3, 0 }, { 3, UINT32_MAX }, { 0, 1 },
		{ 1, 0 },
	};
	struct mst_list_entry e[3] = {
		{ MST_LE_PRESENT, mst_str_of("a"), attr_of(MST_T_MSG, 1) },
		{ MST_LE_PRESENT, mst_str_of("b"), attr_of(MST_T_MSG, 2) },
		{ MST_LE_REMOVED, mst_str_of("c"), attr_of(MST_T_MSG, 3) },
	};
	struct mst_list_rep r;
	size_t i;
	uint8_t *q;
	int n, rc;

	for (i = 0; i < NELEM(cases); i++) {
		n = encode_list(e, cases[i].nent, cases[i].count);
		q = dup_exact(enc, (size_t)n);
		rc = mst_list_rep_decode(&r, q, (size_t)n);
		ck_assert_msg(rc == -EBADMSG, "%zu entries, count %u: got %s "
		    "(%d), want -EBADMSG", cases[i].nent, cases[i].count,
		    codecs_errname(rc), rc);
		free(q);
	}
}
END_TEST

START_TEST(list_entry_rejects_values_outside_domain)
{
	static const struct {
		const char *what;
		uint8_t kind;
		const char *name;
		uint16_t len;	/* 0: strlen(name) */
		uint8_t type;
		uint32_t mode;
		int want;
	} cases[] = {
		{ "kind 0", 0, "m", 0, MST_T_MSG, 0600, -EINVAL },
		{ "kind 3", 3, "m", 0, MST_T_MSG, 0600, -EINVAL },
		{ "kind 255", 255, "m", 0, MST_T_MSG, 0600, -EINVAL },
		{ "type 0 when present", MST_LE_PRESENT, "m", 0, 0, 0600,
		    -EINVAL },
		{ "type 4", MST_LE_PRESENT, "m", 0, 4, 0600, -EINVAL },
		{ "type 0 when removed", MST_LE_REMOVED, "m", 0, 0, 0,
		    -EINVAL },
		{ "type 4 when removed", MST_LE_REMOVED, "m", 0, 4, 0600,
		    -EINVAL },
		{ "mode 010000", MST_LE_PRESENT, "m", 0, MST_T_MSG, 010000,
		    -EINVAL },
		{ "empty name", MST_LE_PRESENT, "", 0, MST_T_MSG, 0600,
		    -EINVAL },
		{ "name \"..\"", MST_LE_PRESENT, "..", 0, MST_T_MSG, 0600,
		    -EINVAL },
		{ "name \"a/b\"", MST_LE_PRESENT, "a/b", 0, MST_T_MSG, 0600,
		    -EINVAL },
		{ "NUL in name", MST_LE_PRESENT, "a\0b", 3, MST_T_MSG, 0600,
		    -EINVAL },
		{ "256-byte name", MST_LE_PRESENT, n256, 256, MST_T_MSG, 0600,
		    -ENAMETOOLONG },
	};
	struct mst_list_entry e[2] = {
		{ MST_LE_PRESENT, mst_str_of("ok"), attr_of(MST_T_MSG, 1) },
	};
	struct mst_list_rep r;
	struct mst_list_entry got;
	size_t i, off;
	uint8_t *q;
	int n, rc;

	memset(n256, 'n', sizeof n256);
	for (i = 0; i < NELEM(cases); i++) {
		e[1].kind = cases[i].kind;
		e[1].name.p = cases[i].name;
		e[1].name.len = cases[i].len ? cases[i].len :
		    (uint16_t)strlen(cases[i].name);
		e[1].attr = attr_of(cases[i].type, 2);
		e[1].attr.mode = cases[i].mode;
		n = encode_list(e, 2, 2);
		q = dup_exact(enc, (size_t)n);
		rc = mst_list_rep_decode(&r, q, (size_t)n);
		ck_assert_msg(rc == cases[i].want, "%s: decode: got %s (%d), "
		    "want %s (%d)", cases[i].what, codecs_errname(rc), rc,
		    codecs_errname(cases[i].want), cases[i].want);
		/* Walked by hand, the good entry comes first, then the error,
		 * and the offset stays at the bad entry. */
		off = 0;
		ck_assert_int_eq(mst_list_entry_next(&got, &r, &off), 1);
		rc = mst_list_entry_next(&got, &r, &off);
		ck_assert_msg(rc == cases[i].want, "%s: next: got %s (%d), "
		    "want %s (%d)", cases[i].what, codecs_errname(rc), rc,
		    codecs_errname(cases[i].want), cases[i].want);
		ck_assert_uint_eq(off, mst_list_entry_size(&e[0]));
		free(q);
	}
}
END_TEST

/* ---- small layouts with their own rules, and fixed byte layouts ---- */

START_TEST(error_rep_round_trips_empty_detail)
{
	struct mst_error_rep m = { { "", 0 } }, d;
	static const uint8_t zero_len[2] = { 0, 0 };
	uint8_t *q;

	ck_assert_int_eq(mst_error_rep_encode(&m, enc, sizeof enc), 0);
	ck_assert_int_eq(mst_error_rep_encode(&m, NULL, 0), 0);
	q = dup_exact(enc, 0);
	ck_assert_int_eq(mst_error_rep_decode(&d, q, 0), 0);
	ck_assert_uint_eq(d.detail.len, 0);
	ck_assert_ptr_nonnull(d.detail.p);
	free(q);
	/* An explicit zero-length string means the same. */
	q = dup_exact(zero_len, sizeof zero_len);
	ck_assert_int_eq(mst_error_rep_decode(&d, q, sizeof zero_len), 0);
	ck_assert_uint_eq(d.detail.len, 0);
	free(q);
}
END_TEST

START_TEST(error_rep_detail_limit_holds_both_ways)
{
	static char text[MST_DETAIL_MAX + 1];
	struct mst_error_rep m, d;
	uint8_t *q;
	int n;

	memset(text, 'd', sizeof text);
	m.detail.p = text;
	m.detail.len = MST_DETAIL_MAX;
	n = mst_error_rep_encode(&m, enc, sizeof enc);
	ck_assert_int_eq(n, 2 + MST_DETAIL_MAX);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_error_rep_decode(&d, q, (size_t)n), 0);
	ck_assert_uint_eq(d.detail.len, MST_DETAIL_MAX);
	free(q);

	m.detail.len = MST_DETAIL_MAX + 1;
	ck_assert_int_eq(mst_error_rep_encode(&m, enc, sizeof enc),
	    -ENAMETOOLONG);
	/* Built by hand, since the encoder refuses it. */
	enc[0] = (MST_DETAIL_MAX + 1) >> 8;
	enc[1] = (MST_DETAIL_MAX + 1) & 0xff;
	memcpy(enc + 2, text, sizeof text);
	q = dup_exact(enc, 2 + sizeof text);
	ck_assert_int_eq(mst_error_rep_decode(&d, q, 2 + sizeof text),
	    -ENAMETOOLONG);
	free(q);
}
END_TEST

START_TEST(admin_rep_text_may_hold_any_byte)
{
	static const uint8_t text[] = { 'k', '=', 0, 0xff, '\n', 0 };
	struct mst_admin_rep m = { { text, sizeof text } }, d;
	uint8_t *q;
	int n;

	n = mst_admin_rep_encode(&m, enc, sizeof enc);
	ck_assert_int_eq(n, 4 + (int)sizeof text);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_admin_rep_decode(&d, q, (size_t)n), 0);
	ck_assert_uint_eq(d.text.len, sizeof text);
	ck_assert_mem_eq(d.text.p, text, sizeof text);
	free(q);
}
END_TEST

START_TEST(ping_encodes_cookie_big_endian)
{
	static const uint8_t want[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	struct mst_ping m = { 0x0102030405060708ull };

	ck_assert_int_eq(mst_ping_encode(&m, enc, sizeof enc), 8);
	ck_assert_mem_eq(enc, want, 8);
}
END_TEST

START_TEST(path_req_encodes_length_prefixed_string)
{
	static const uint8_t want[] = { 0, 5, 'a', '/', 'c', 'u', 'r' };
	struct mst_path_req m = { mst_str_of("a/cur") };

	ck_assert_int_eq(mst_path_req_encode(&m, enc, sizeof enc),
	    (int)sizeof want);
	ck_assert_mem_eq(enc, want, sizeof want);
}
END_TEST

static void
put_be64(uint8_t *b, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		b[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* type u8; id, size u64; mode, uid, gid, nlink u32; mtime, ctime,
 * change, atime u64: 1 + 2 * 8 + 4 * 4 + 4 * 8 = 65 bytes, atime_ns
 * last (appended after change). */
START_TEST(attr_rep_encodes_attr_in_65_bytes)
{
	static const uint8_t id_be[8] = { 0, 0, 0, 0, 0, 0, 0, 42 };
	static const uint8_t change_be[8] = { 0, 0, 0, 0, 0, 0, 0, 77 };
	static const uint8_t dir_change_be[8] = { 0, 0, 0, 0, 0, 0, 0, 78 };
	union codecs_msg m;
	uint8_t atime_be[8];
	int n;

	ck_assert_uint_eq(MST_ATTR_LEN, 65);
	n = encode_sample(codec_named("attr_rep"), &m);
	ck_assert_int_eq(n, MST_ATTR_LEN + 16);
	ck_assert_uint_eq(enc[0], MST_T_MSG);
	ck_assert_mem_eq(enc + 1, id_be, 8);
	ck_assert_mem_eq(enc + 49, change_be, 8);
	put_be64(atime_be, m.attr_rep.attr.atime_ns);
	ck_assert_mem_eq(enc + 57, atime_be, 8);
	ck_assert_mem_eq(enc + MST_ATTR_LEN, dir_change_be, 8);
}
END_TEST

/* ---- ordinary files ---- */

/* Fixed sizes of the new layouts, as mstore-protocol(7) draws them. */
START_TEST(file_layouts_have_documented_sizes)
{
	static const struct {
		const char *codec;
		int len;
	} cases[] = {
		{ "id_req", 8 },
		{ "read_req", 8 + 8 + 4 },
		{ "fsetattr_req", 8 + 4 * 4 + 3 * 8 },
		{ "lock_req", 8 + 8 + 4 + 1 + 1 + 8 + 8 },
		{ "lock_rep", 1 + 4 + 8 + 8 },
	};
	union codecs_msg m;
	const struct codec *c;
	size_t i;
	int n;

	for (i = 0; i < NELEM(cases); i++) {
		n = encode_sample(codec_named(cases[i].codec), &m);
		ck_assert_msg(n == cases[i].len, "%s: got %d bytes, want %d",
		    cases[i].codec, n, cases[i].len);
	}
	c = codec_named("write_req");
	n = encode_sample(c, &m);
	ck_assert_int_eq(n, 8 + 8 + 4 + 8 + 8 + (int)c->chunk_len(&m));
	c = codec_named("link_req");
	n = encode_sample(c, &m);
	ck_assert_int_eq(n, 8 + 2 + m.link_req.path.len);
}
END_TEST

/* id, owner, pid, type, flags, start, end, big-endian. */
START_TEST(lock_req_encodes_documented_layout)
{
	static const uint8_t want[38] = {
		0, 0, 0, 0, 0, 0, 0, 49,
		0xfe, 0xed, 0xfa, 0xce, 0x12, 0x34, 0x56, 0x78,
		0, 0, 0x10, 0xe1,
		MST_LK_WR, MST_LKF_WAIT,
		0, 0, 0, 0, 0, 0, 0, 100,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	union codecs_msg m;

	ck_assert_int_eq(encode_sample(codec_named("lock_req"), &m),
	    (int)sizeof want);
	ck_assert_mem_eq(enc, want, sizeof want);
}
END_TEST

static int
decode_lock(uint8_t type, uint8_t flags, uint64_t start, uint64_t end)
{
	struct mst_lock_req m = { 49, 7, 4321, type, flags, start, end }, d;
	uint8_t *q;
	int n, rc;

	n = mst_lock_req_encode(&m, enc, sizeof enc);
	ck_assert_int_eq(n, 38);
	q = dup_exact(enc, (size_t)n);
	rc = mst_lock_req_decode(&d, q, (size_t)n);
	free(q);
	return rc;
}

START_TEST(lock_req_rejects_start_after_end)
{
	ck_assert_int_eq(decode_lock(MST_LK_RD, 0, 11, 10), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_WR, 0, MST_LK_EOF, 0), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_UN, 0, 1, 0), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_RD, 0, 10, 10), 0);
	ck_assert_int_eq(decode_lock(MST_LK_WR, 0, MST_LK_EOF, MST_LK_EOF), 0);
	ck_assert_int_eq(decode_lock(MST_LK_UN, 0, 0, MST_LK_EOF), 0);
}
END_TEST

START_TEST(lock_req_rejects_unknown_type)
{
	unsigned t;
	int rc, want;

	for (t = 0; t < 256; t++) {
		want = t >= MST_LK_RD && t <= MST_LK_UN ? 0 : -EINVAL;
		rc = decode_lock((uint8_t)t, 0, 0, MST_LK_EOF);
		ck_assert_msg(rc == want, "type %u: got %s (%d), want %s (%d)",
		    t, codecs_errname(rc), rc, codecs_errname(want), want);
	}
}
END_TEST

/* Every type with every flag byte: only the documented combinations
 * decode. */
START_TEST(lock_req_accepts_only_meaningful_flags)
{
	const unsigned ask = MST_LKF_WAIT | MST_LKF_TEST;
	unsigned t, f;
	int rc, want;

	for (t = MST_LK_RD; t <= MST_LK_UN; t++) {
		for (f = 0; f < 256; f++) {
			want = 0;
			if (f & ~MST_LKF_ALL)
				want = -EINVAL;	/* unknown bits */
			else if ((f & ask) == ask)
				want = -EINVAL;	/* waits for a test */
			else if (t == MST_LK_UN && (f & ask))
				want = -EINVAL;	/* waits for a release */
			else if ((f & MST_LKF_CANCEL) && (f & ask))
				want = -EINVAL;	/* cancel that waits */
			rc = decode_lock((uint8_t)t, (uint8_t)f, 0, MST_LK_EOF);
			ck_assert_msg(rc == want, "type %u, flags %#x: got %s "
			    "(%d), want %s (%d)", t, f, codecs_errname(rc), rc,
			    codecs_errname(want), want);
		}
	}
}
END_TEST

START_TEST(lock_req_rejects_unlock_with_wait_or_test)
{
	ck_assert_int_eq(decode_lock(MST_LK_UN, MST_LKF_WAIT, 0, 9), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_UN, MST_LKF_TEST, 0, 9), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_UN, MST_LKF_WAIT | MST_LKF_FLOCK,
	    0, MST_LK_EOF), -EINVAL);
	ck_assert_int_eq(decode_lock(MST_LK_UN, MST_LKF_FLOCK, 0, MST_LK_EOF),
	    0);
	ck_assert_int_eq(decode_lock(MST_LK_WR, MST_LKF_WAIT, 0, 9), 0);
	ck_assert_int_eq(decode_lock(MST_LK_RD, MST_LKF_TEST, 0, 9), 0);
}
END_TEST

START_TEST(lock_rep_rejects_bad_type_and_range)
{
	struct mst_lock_rep m = { MST_LK_UN, 0, 0, 0 }, d;
	uint8_t *q;
	int n;

	n = mst_lock_rep_encode(&m, enc, sizeof enc);
	ck_assert_int_eq(n, 21);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_lock_rep_decode(&d, q, (size_t)n), 0);
	ck_assert_uint_eq(d.type, MST_LK_UN);
	q[0] = 0;
	ck_assert_int_eq(mst_lock_rep_decode(&d, q, (size_t)n), -EINVAL);
	q[0] = MST_LK_UN + 1;
	ck_assert_int_eq(mst_lock_rep_decode(&d, q, (size_t)n), -EINVAL);
	q[0] = MST_LK_RD;
	q[5 + 7] = 1;	/* start 1 > end 0 */
	ck_assert_int_eq(mst_lock_rep_decode(&d, q, (size_t)n), -EINVAL);
	free(q);
}
END_TEST

static int
decode_write(const struct mst_write_req *m)
{
	struct mst_write_req d;
	uint8_t *q;
	int n, rc;

	n = mst_write_req_encode(m, enc, sizeof enc);
	ck_assert_int_ge(n, 0);
	q = dup_exact(enc, (size_t)n);
	rc = mst_write_req_decode(&d, q, (size_t)n);
	free(q);
	return rc;
}

START_TEST(write_req_rejects_unknown_flags)
{
	union codecs_msg m;
	unsigned bit;
	int rc, want;

	for (bit = 0; bit < 32; bit++) {
		encode_sample(codec_named("write_req"), &m);
		m.write_req.flags = 1u << bit;
		want = (m.write_req.flags & MST_WR_ALL) ? 0 : -EINVAL;
		rc = decode_write(&m.write_req);
		ck_assert_msg(rc == want, "flags %#x: got %s (%d), want %s (%d)",
		    m.write_req.flags, codecs_errname(rc), rc,
		    codecs_errname(want), want);
	}
}
END_TEST

/* The chunk after the fixed fields may be shorter than body_size (DATA
 * frames follow) but never longer. */
START_TEST(write_req_rejects_body_over_declared_size)
{
	union codecs_msg m;
	uint32_t chunk;

	encode_sample(codec_named("write_req"), &m);
	chunk = m.write_req.body.len;
	ck_assert_uint_gt(chunk, 1);
	m.write_req.body_size = chunk - 1;
	ck_assert_int_eq(decode_write(&m.write_req), -EPROTO);
	m.write_req.body_size = 0;
	ck_assert_int_eq(decode_write(&m.write_req), -EPROTO);
	m.write_req.body_size = chunk;
	ck_assert_int_eq(decode_write(&m.write_req), 0);
	m.write_req.body_size = 1u << 20;	/* DATA frames follow */
	ck_assert_int_eq(decode_write(&m.write_req), 0);
	m.write_req.body_size = MST_BODY_MAX + 1;
	ck_assert_int_eq(decode_write(&m.write_req), -EFBIG);
}
END_TEST

/* At an offset, the write must end by MST_BODY_MAX; an append has no
 * offset to check. */
START_TEST(write_req_rejects_end_past_body_max)
{
	union codecs_msg m;
	struct mst_write_req *w = &m.write_req;

	encode_sample(codec_named("write_req"), &m);
	w->flags = 0;
	w->offset = MST_BODY_MAX - w->body_size;
	ck_assert_int_eq(decode_write(w), 0);
	w->offset++;
	ck_assert_int_eq(decode_write(w), -EFBIG);
	w->offset = UINT64_MAX;
	ck_assert_int_eq(decode_write(w), -EFBIG);
	w->flags = MST_WR_APPEND;
	ck_assert_int_eq(decode_write(w), 0);
}
END_TEST

START_TEST(write_req_carries_partial_body_chunk)
{
	const struct codec *c = codec_named("write_req");
	union codecs_msg m, d;
	char why[256];
	uint8_t *q;
	int n;

	memset(&m, 0, sizeof m);
	c->sample(&m);
	m.write_req.body_size = 1u << 20;
	n = c->encode(&m, enc, sizeof enc);
	ck_assert_int_ge(n, 0);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(c->decode(&d, q, (size_t)n), 0);
	ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why), "%s", why);
	ck_assert_ptr_eq(d.write_req.body.p, q + n - m.write_req.body.len);
	free(q);
}
END_TEST

START_TEST(fsetattr_req_rejects_unknown_valid_bits)
{
	struct mst_fsetattr_req m = { 47, 0, 0600, 1, 2, 3, 4, 5 }, d;
	unsigned bit;
	uint8_t *q;
	int n, rc, want;

	for (bit = 0; bit < 32; bit++) {
		m.valid = 1u << bit;
		want = (m.valid & MST_FSA_ALL) ? 0 : -EINVAL;
		n = mst_fsetattr_req_encode(&m, enc, sizeof enc);
		ck_assert_int_eq(n, 48);
		q = dup_exact(enc, (size_t)n);
		rc = mst_fsetattr_req_decode(&d, q, (size_t)n);
		ck_assert_msg(rc == want, "valid %#x: got %s (%d), want %s (%d)",
		    m.valid, codecs_errname(rc), rc, codecs_errname(want),
		    want);
		free(q);
	}
	/* SETATTR keeps its narrower mask: MST_SA_ATIME is FSETATTR's. */
	ck_assert_uint_eq(MST_SA_ATIME & MST_SA_ALL, 0);
	ck_assert_uint_eq(MST_FSA_ALL, MST_SA_ALL | MST_SA_ATIME);
}
END_TEST

START_TEST(link_req_rejects_root_path)
{
	struct mst_link_req m = { 48, { "", 0 } }, d;
	uint8_t *q;
	int n;

	n = mst_link_req_encode(&m, enc, sizeof enc);
	ck_assert_int_eq(n, 10);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_link_req_decode(&d, q, (size_t)n), -EEXIST);
	free(q);
	m.path = mst_str_of("a/b");
	n = mst_link_req_encode(&m, enc, sizeof enc);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(mst_link_req_decode(&d, q, (size_t)n), 0);
	ck_assert_uint_eq(d.id, 48);
	ck_assert_uint_eq(d.path.len, 3);
	ck_assert_mem_eq(d.path.p, "a/b", 3);
	free(q);
}
END_TEST

/* ---- status codes ---- */

static const struct {
	unsigned status;
	unsigned wire;	/* the number mstproto.h fixes on the wire */
	int err;
} statuses[] = {
	{ MST_S_OK, 0, 0 },
	{ MST_S_EPERM, 1, EPERM },
	{ MST_S_ENOENT, 2, ENOENT },
	{ MST_S_EINTR, 4, EINTR },
	{ MST_S_EIO, 5, EIO },
	{ MST_S_E2BIG, 7, E2BIG },
	{ MST_S_EBADF, 9, EBADF },
	{ MST_S_EAGAIN, 11, EAGAIN },
	{ MST_S_ENOMEM, 12, ENOMEM },
	{ MST_S_EACCES, 13, EACCES },
	{ MST_S_EBUSY, 16, EBUSY },
	{ MST_S_EEXIST, 17, EEXIST },
	{ MST_S_EXDEV, 18, EXDEV },
	{ MST_S_ENOTDIR, 20, ENOTDIR },
	{ MST_S_EISDIR, 21, EISDIR },
	{ MST_S_EINVAL, 22, EINVAL },
	{ MST_S_EFBIG, 27, EFBIG },
	{ MST_S_ENOSPC, 28, ENOSPC },
	{ MST_S_EROFS, 30, EROFS },
	{ MST_S_EMLINK, 31, EMLINK },
	{ MST_S_ERANGE, 34, ERANGE },
	{ MST_S_EDEADLK, 35, EDEADLK },
	{ MST_S_ENAMETOOLONG, 36, ENAMETOOLONG },
	{ MST_S_ENOLCK, 37, ENOLCK },
	{ MST_S_ENOTEMPTY, 39, ENOTEMPTY },
	{ MST_S_ELOOP, 40, ELOOP },
	{ MST_S_ENODATA, 61, ENODATA },
	{ MST_S_EPROTO, 71, EPROTO },
	{ MST_S_EBADMSG, 74, EBADMSG },
	{ MST_S_EOVERFLOW, 75, EOVERFLOW },
	{ MST_S_EMSGSIZE, 90, EMSGSIZE },
	{ MST_S_EPROTONOSUPPORT, 93, EPROTONOSUPPORT },
	{ MST_S_EOPNOTSUPP, 95, EOPNOTSUPP },
	{ MST_S_ETIMEDOUT, 110, ETIMEDOUT },
	{ MST_S_ESTALE, 116, ESTALE },
	{ MST_S_EDQUOT, 122, EDQUOT },
	{ MST_S_ECANCELED, 125, ECANCELED },
};

static int
is_listed_status(unsigned s)
{
	size_t i;

	for (i = 0; i < NELEM(statuses); i++)
		if (statuses[i].status == s)
			return 1;
	return 0;
}

static int
is_listed_errno(int e)
{
	size_t i;

	for (i = 0; i < NELEM(statuses); i++)
		if (statuses[i].err == e)
			return 1;
	return 0;
}

START_TEST(status_round_trips_every_code)
{
	size_t i;
	int err;
	unsigned st;

	for (i = 0; i < NELEM(statuses); i++) {
		ck_assert_msg(statuses[i].status == statuses[i].wire,
		    "status %u: wire number %u", statuses[i].status,
		    statuses[i].wire);
		err = mst_status_to_errno(statuses[i].status);
		ck_assert_msg(err == statuses[i].err, "status %u: got errno %d, "
		    "want %d", statuses[i].status, err, statuses[i].err);
		st = mst_errno_to_status(err);
		ck_assert_msg(st == statuses[i].status, "errno %d: got status "
		    "%u, want %u", err, st, statuses[i].status);
		st = mst_errno_to_status(-err);
		ck_assert_msg(st == statuses[i].status, "errno -%d: got status "
		    "%u, want %u", err, st, statuses[i].status);
	}
}
END_TEST

START_TEST(unknown_status_maps_to_eio)
{
	static const unsigned big[] = { 4096, 65535, 65536, UINT_MAX };
	unsigned s;
	size_t i;
	int err;

	for (s = 0; s < 1024; s++) {
		if (is_listed_status(s))
			continue;
		err = mst_status_to_errno(s);
		ck_assert_msg(err == EIO, "status %u: got %d, want EIO", s, err);
	}
	for (i = 0; i < NELEM(big); i++)
		ck_assert_int_eq(mst_status_to_errno(big[i]), EIO);
}
END_TEST

START_TEST(unlisted_errno_maps_to_eio)
{
	static const int big[] = { 4096, INT_MAX, -INT_MAX, INT_MIN };
	unsigned st;
	size_t i;
	int e;

	for (e = 1; e < 1024; e++) {
		if (is_listed_errno(e))
			continue;
		st = mst_errno_to_status(e);
		ck_assert_msg(st == MST_S_EIO, "errno %d: got %u, want EIO", e,
		    st);
		st = mst_errno_to_status(-e);
		ck_assert_msg(st == MST_S_EIO, "errno -%d: got %u, want EIO", e,
		    st);
	}
	for (i = 0; i < NELEM(big); i++) {
		st = mst_errno_to_status(big[i]);
		ck_assert_msg(st == MST_S_EIO, "errno %d: got %u, want EIO",
		    big[i], st);
	}
}
END_TEST

/* ---- checksums ---- */

START_TEST(checksum_matches_xxh3_reference_vectors)
{
	static const char fox[] = "The quick brown fox jumps over the lazy dog";

	ck_assert_uint_eq(mst_checksum("", 0), 0x2d06800538d394c2ull);
	ck_assert_uint_eq(mst_checksum("abc", 3), 0x78af5f94892f3950ull);
	ck_assert_uint_eq(mst_checksum(fox, sizeof fox - 1),
	    0xce7d19a5418fb365ull);
}
END_TEST

/* Lengths at xxh3's internal size-class edges. */
START_TEST(checksum_equals_xxh3_64bits)
{
	static const size_t lens[] = { 0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240,
		241, 1024, 1025, 4096, 4097 };
	static uint8_t buf[4097];
	size_t i;

	for (i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (i = 0; i < NELEM(lens); i++)
		ck_assert_msg(mst_checksum(buf, lens[i]) ==
		    XXH3_64bits(buf, lens[i]), "length %zu", lens[i]);
}
END_TEST

START_TEST(checksum_changes_on_any_one_bit_flip)
{
	static uint8_t body[300];
	uint64_t orig;
	size_t bit;

	memcpy(body, "From: al@example.com\r\n\r\n", 24);
	orig = mst_checksum(body, sizeof body);
	for (bit = 0; bit < 8 * sizeof body; bit++) {
		body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		ck_assert_msg(mst_checksum(body, sizeof body) != orig,
		    "bit %zu flipped, checksum unchanged", bit);
		body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	ck_assert_uint_eq(mst_checksum(body, sizeof body), orig);
}
END_TEST

/* A bit flipped in transit decodes fine (the codec does not verify) and
 * the receiver's checksum catches it. */
START_TEST(checksum_mismatch_detected_after_body_bit_flip)
{
	const struct codec *c = codec_named("deliver_req");
	union codecs_msg m, d;
	uint8_t *q;
	int n;

	n = encode_sample(c, &m);
	q = dup_exact(enc, (size_t)n);
	ck_assert_int_eq(c->decode(&d, q, (size_t)n), 0);
	ck_assert_uint_eq(mst_checksum(d.deliver_req.body.p,
	    d.deliver_req.body.len), d.deliver_req.checksum);
	q[n - 3] ^= 0x04;
	ck_assert_int_eq(c->decode(&d, q, (size_t)n), 0);
	ck_assert_uint_ne(mst_checksum(d.deliver_req.body.p,
	    d.deliver_req.body.len), d.deliver_req.checksum);
	free(q);
}
END_TEST

/* ---- seeded random round trips and mutations ---- */

#define ARENA	(64u << 10)

struct gen {
	uint64_t s;	/* xorshift64* state, never 0 */
	uint8_t *arena;	/* strings and bodies of the current message */
	size_t used;
	struct mst_list_entry ents[8];	/* the last list_rep's entries */
	size_t nents;
};

static uint64_t
rnd(struct gen *g)
{
	g->s ^= g->s >> 12;
	g->s ^= g->s << 25;
	g->s ^= g->s >> 27;
	return g->s * 0x2545f4914f6cdd1dull;
}

static uint64_t
below(struct gen *g, uint64_t n)
{
	return rnd(g) % n;
}

/* Uniform in [lo, hi]. */
static uint64_t
between(struct gen *g, uint64_t lo, uint64_t hi)
{
	if (hi - lo == UINT64_MAX)
		return rnd(g);
	return lo + below(g, hi - lo + 1);
}

/* Field values lean on the edges, where codecs break. */
static uint64_t
rnd_u64(struct gen *g)
{
	switch (below(g, 8)) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX;
	case 2:
		return below(g, 1000);
	}
	return rnd(g);
}

static uint32_t
rnd_u32(struct gen *g)
{
	return (uint32_t)rnd_u64(g);
}

static uint16_t
rnd_u16(struct gen *g)
{
	return (uint16_t)rnd_u64(g);
}

/* In [lo, hi]; short lengths are common, both limits frequent. */
static size_t
rnd_len(struct gen *g, size_t lo, size_t hi)
{
	switch (below(g, 8)) {
	case 0:
		return lo;
	case 1:
		return hi;
	case 2:
		return (size_t)between(g, lo, hi);
	}
	return (size_t)between(g, lo, hi - lo < 16 ? hi : lo + 16);
}

static uint8_t *
arena_take(struct gen *g, size_t n)
{
	uint8_t *p;

	ck_assert_uint_le(n, ARENA - g->used);
	p = g->arena + g->used;
	g->used += n;
	return p;
}

static void
rnd_fill(struct gen *g, uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(g);
}

/* Any bytes but NUL and '/', and never "." or "..". */
static void
rnd_comp(struct gen *g, uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		do
			p[i] = (uint8_t)between(g, 1, 255);
		while (p[i] == '/');
	if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		p[0] = 'x';
}

static struct mst_str
view(const uint8_t *p, size_t n)
{
	struct mst_str s = { (const char *)p, (uint16_t)n };

	return s;
}

static struct mst_str
gen_name(struct gen *g)
{
	size_t n = rnd_len(g, 1, MST_NAME_MAX);
	uint8_t *p = arena_take(g, n);

	rnd_comp(g, p, n);
	return view(p, n);
}

/* Depth and component lengths chosen so the path fits MST_PATH_MAX. */
static struct mst_str
gen_path(struct gen *g, int nonempty)
{
	size_t depth, max, i, n, off = 0;
	uint8_t *p;

	switch (below(g, 16)) {
	case 0:
		depth = nonempty ? 1 : 0;
		break;
	case 1:
		depth = MST_PATH_DEPTH_MAX;
		break;
	case 2:
		depth = 16;	/* 16 components of 255 fill MST_PATH_MAX */
		break;
	default:
		depth = (size_t)between(g, 1, 4);
	}
	if (depth == 0)
		return mst_str_of("");
	max = (MST_PATH_MAX - (depth - 1)) / depth;
	if (max > MST_NAME_MAX)
		max = MST_NAME_MAX;
	p = arena_take(g, depth * (max + 1));
	for (i = 0; i < depth; i++) {
		if (i > 0)
			p[off++] = '/';
		n = rnd_len(g, 1, max);
		rnd_comp(g, p + off, n);
		off += n;
	}
	return view(p, off);
}

/* Free text: any bytes but NUL. */
static struct mst_str
gen_text(struct gen *g, size_t lo, size_t hi)
{
	size_t n = rnd_len(g, lo, hi), i;
	uint8_t *p = arena_take(g, n);

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)between(g, 1, 255);
	return view(p, n);
}

static struct mst_bytes
gen_bytes(struct gen *g, size_t hi)
{
	struct mst_bytes b;
	size_t n = rnd_len(g, 0, hi);
	uint8_t *p = arena_take(g, n);

	rnd_fill(g, p, n);
	b.p = p;
	b.len = (uint32_t)n;
	return b;
}

/* A declared body size that |chunk| bytes can start: [chunk, limit]. */
static uint64_t
gen_declared(struct gen *g, uint32_t chunk, uint64_t limit)
{
	switch (below(g, 4)) {
	case 0:
		return chunk;
	case 1:
		return limit;
	}
	return between(g, chunk, limit);
}

static uint8_t
gen_sub(struct gen *g)
{
	return (uint8_t)between(g, MST_SUB_NEW, MST_SUB_CUR);
}

static void
gen_attr(struct gen *g, struct mst_attr *a)
{
	a->type = (uint8_t)between(g, MST_T_DIR, MST_T_MSG);
	a->id = rnd_u64(g);
	a->size = rnd_u64(g);
	a->mode = rnd_u32(g) & 07777u;
	a->uid = rnd_u32(g);
	a->gid = rnd_u32(g);
	a->nlink = rnd_u32(g);
	a->mtime_ns = rnd_u64(g);
	a->ctime_ns = rnd_u64(g);
	a->change = rnd_u64(g);
	a->atime_ns = rnd_u64(g);
}

static void
gen_hello_req(struct gen *g, union codecs_msg *u)
{
	struct mst_hello_req *m = &u->hello_req;

	m->min_version = rnd_u16(g);
	m->max_version = rnd_u16(g);
	if (m->min_version > m->max_version) {
		uint16_t t = m->min_version;

		m->min_version = m->max_version;
		m->max_version = t;
	}
	m->features = rnd_u32(g);
	m->max_frame = (uint32_t)gen_declared(g, MST_FRAME_MIN,
	    MST_FRAME_LIMIT);
	m->client = gen_text(g, 0, 300);
	rnd_fill(g, m->nonce, sizeof m->nonce);
}

static void
gen_hello_rep(struct gen *g, union codecs_msg *u)
{
	struct mst_hello_rep *m = &u->hello_rep;

	m->version = rnd_u16(g);
	m->features = rnd_u32(g);
	m->max_frame = (uint32_t)gen_declared(g, MST_FRAME_MIN,
	    MST_FRAME_LIMIT);
	m->max_body = gen_declared(g, 0, MST_BODY_MAX);
	m->server_id = rnd_u64(g);
	m->server = gen_text(g, 0, 300);
	rnd_fill(g, m->nonce, sizeof m->nonce);
}

static void
gen_auth(struct gen *g, union codecs_msg *u)
{
	rnd_fill(g, u->auth.proof, sizeof u->auth.proof);
}

static void
gen_ping(struct gen *g, union codecs_msg *u)
{
	u->ping.cookie = rnd_u64(g);
}

static void
gen_deliver_req(struct gen *g, union codecs_msg *u)
{
	struct mst_deliver_req *m = &u->deliver_req;

	m->mailbox = gen_path(g, 1);
	m->folder = gen_path(g, 0);
	m->sub = gen_sub(g);
	m->name = gen_name(g);
	rnd_fill(g, m->idem, sizeof m->idem);
	m->checksum = rnd_u64(g);
	m->body = gen_bytes(g, 512);
	m->body_size = gen_declared(g, m->body.len, MST_BODY_MAX);
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
	m->mtime_ns = rnd_u64(g);
}

static void
gen_stage_req(struct gen *g, union codecs_msg *u)
{
	struct mst_stage_req *m = &u->stage_req;

	m->mailbox = gen_path(g, 1);
	m->folder = gen_path(g, 0);
	rnd_fill(g, m->idem, sizeof m->idem);
	m->checksum = rnd_u64(g);
	m->body = gen_bytes(g, 512);
	m->body_size = gen_declared(g, m->body.len, MST_BODY_MAX);
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
}

static void
gen_commit_req(struct gen *g, union codecs_msg *u)
{
	struct mst_commit_req *m = &u->commit_req;

	m->mailbox = gen_path(g, 1);
	m->folder = gen_path(g, 0);
	m->sub = gen_sub(g);
	m->name = gen_name(g);
	rnd_fill(g, m->idem, sizeof m->idem);
	m->checksum = rnd_u64(g);
	m->body_size = rnd_u64(g) % (MST_BODY_MAX + 1);
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
	m->mtime_ns = rnd_u64(g);
}

static void
gen_spool_req(struct gen *g, union codecs_msg *u)
{
	struct mst_spool_req *m = &u->spool_req;

	m->mailbox = gen_path(g, 1);
	rnd_fill(g, m->idem, sizeof m->idem);
	m->data = gen_bytes(g, 512);
	m->length = m->data.len;
	m->offset = rnd_u64(g) % (MST_BODY_MAX - m->data.len + 1);
}

static void
gen_attr_rep(struct gen *g, union codecs_msg *u)
{
	gen_attr(g, &u->attr_rep.attr);
	u->attr_rep.dir_change = rnd_u64(g);
	u->attr_rep.dir_mtime_ns = rnd_u64(g);
}

static void
gen_list_req(struct gen *g, union codecs_msg *u)
{
	u->list_req.mailbox = gen_path(g, 1);
	u->list_req.folder = gen_path(g, 0);
	u->list_req.sub = gen_sub(g);
	u->list_req.since = rnd_u64(g);
}

/* Removed entries carry either type, id and change, as documented, or
 * full attributes. */
static void
gen_list_rep(struct gen *g, union codecs_msg *u)
{
	struct mst_list_rep *m = &u->list_rep;
	uint8_t *p;
	size_t i, size = 0;
	int rc;

	g->nents = (size_t)below(g, NELEM(g->ents) + 1);
	for (i = 0; i < g->nents; i++) {
		struct mst_list_entry *e = &g->ents[i];

		memset(e, 0, sizeof *e);
		e->kind = (uint8_t)between(g, MST_LE_PRESENT, MST_LE_REMOVED);
		e->name = gen_name(g);
		if (e->kind == MST_LE_REMOVED && below(g, 2)) {
			e->attr.type = (uint8_t)between(g, MST_T_DIR, MST_T_MSG);
			e->attr.id = rnd_u64(g);
			e->attr.change = rnd_u64(g);
		} else {
			gen_attr(g, &e->attr);
		}
		size += mst_list_entry_size(e);
	}
	p = arena_take(g, size);
	m->entries = p;
	m->entries_len = size;
	for (i = 0; i < g->nents; i++) {
		rc = mst_list_entry_encode(&g->ents[i], p, size);
		ck_assert_int_ge(rc, 0);
		p += rc;
		size -= (size_t)rc;
	}
	m->change = rnd_u64(g);
	m->dir_mtime_ns = rnd_u64(g);
	m->flags = (uint8_t)(rnd(g) & MST_LIST_FULL);
	m->count = (uint32_t)g->nents;
}

static void
gen_msg_ref(struct gen *g, union codecs_msg *u)
{
	u->msg_ref.mailbox = gen_path(g, 1);
	u->msg_ref.folder = gen_path(g, 0);
	u->msg_ref.sub = gen_sub(g);
	u->msg_ref.name = gen_name(g);
}

static void
gen_fetch_req(struct gen *g, union codecs_msg *u)
{
	u->fetch_req.mailbox = gen_path(g, 1);
	u->fetch_req.id = rnd_u64(g);
	u->fetch_req.offset = rnd_u64(g);
	u->fetch_req.length = rnd_u32(g);
}

static void
gen_data_rep(struct gen *g, union codecs_msg *u)
{
	u->data_rep.data = gen_bytes(g, 512);
	u->data_rep.total_size = gen_declared(g, u->data_rep.data.len,
	    UINT64_MAX);
	u->data_rep.checksum = rnd_u64(g);
}

static void
gen_setinfo_req(struct gen *g, union codecs_msg *u)
{
	struct mst_setinfo_req *m = &u->setinfo_req;

	m->mailbox = gen_path(g, 1);
	m->folder = gen_path(g, 0);
	m->from_sub = gen_sub(g);
	m->from_name = gen_name(g);
	m->to_sub = gen_sub(g);
	m->to_name = gen_name(g);
	m->flags = (uint32_t)rnd(g) & MST_RN_ALL;
}

static void
gen_change_rep(struct gen *g, union codecs_msg *u)
{
	u->change_rep.dir_change = rnd_u64(g);
	u->change_rep.dir_mtime_ns = rnd_u64(g);
}

static void
gen_path_req(struct gen *g, union codecs_msg *u)
{
	u->path_req.path = gen_path(g, 0);
}

static void
gen_mkdir_req(struct gen *g, union codecs_msg *u)
{
	u->mkdir_req.path = gen_path(g, 1);
	u->mkdir_req.mode = rnd_u32(g) & 07777u;
	u->mkdir_req.uid = rnd_u32(g);
	u->mkdir_req.gid = rnd_u32(g);
}

static void
gen_put_req(struct gen *g, union codecs_msg *u)
{
	struct mst_put_req *m = &u->put_req;

	m->path = gen_path(g, 1);
	m->flags = (uint32_t)rnd(g) & MST_PUT_ALL;
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
	m->mtime_ns = rnd_u64(g);
	m->checksum = rnd_u64(g);
	m->body = gen_bytes(g, 512);
	m->body_size = gen_declared(g, m->body.len, MST_BODY_MAX);
}

static void
gen_get_req(struct gen *g, union codecs_msg *u)
{
	u->get_req.path = gen_path(g, 0);
	u->get_req.offset = rnd_u64(g);
	u->get_req.length = rnd_u32(g);
}

static void
gen_rename_req(struct gen *g, union codecs_msg *u)
{
	u->rename_req.from = gen_path(g, 1);
	u->rename_req.to = gen_path(g, 1);
	u->rename_req.flags = (uint32_t)rnd(g) & MST_RN_ALL;
}

static void
gen_setattr_req(struct gen *g, union codecs_msg *u)
{
	struct mst_setattr_req *m = &u->setattr_req;

	m->path = gen_path(g, 0);
	m->valid = (uint32_t)rnd(g) & MST_SA_ALL;
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
	m->size = gen_declared(g, 0, MST_BODY_MAX);
	m->mtime_ns = rnd_u64(g);
}

static void
gen_statfs_rep(struct gen *g, union codecs_msg *u)
{
	struct mst_statfs_rep *m = &u->statfs_rep;

	m->bytes_total = rnd_u64(g);
	m->bytes_free = rnd_u64(g);
	m->files_total = rnd_u64(g);
	m->files_free = rnd_u64(g);
	m->quota_bytes = rnd_u64(g);
	m->used_bytes = rnd_u64(g);
	m->quota_msgs = rnd_u64(g);
	m->used_msgs = rnd_u64(g);
	m->max_body = rnd_u64(g);
	m->name_max = rnd_u32(g);
}

static void
gen_watch_rep(struct gen *g, union codecs_msg *u)
{
	u->watch_rep.change = rnd_u64(g);
}

static void
gen_notify(struct gen *g, union codecs_msg *u)
{
	struct mst_notify *m = &u->notify;

	m->path = gen_path(g, 0);
	m->event = (uint8_t)between(g, MST_EV_ADD, MST_EV_RESET);
	m->name = m->event == MST_EV_RESET ? mst_str_of("") : gen_name(g);
	m->id = rnd_u64(g);
	m->change = rnd_u64(g);
}

static void
gen_error_rep(struct gen *g, union codecs_msg *u)
{
	u->error_rep.detail = gen_text(g, 0, MST_DETAIL_MAX);
}

static void
gen_admin_req(struct gen *g, union codecs_msg *u)
{
	u->admin_req.cmd = gen_text(g, 1, 64);
	u->admin_req.arg = gen_text(g, 0, 300);
}

static void
gen_admin_rep(struct gen *g, union codecs_msg *u)
{
	u->admin_rep.text = gen_bytes(g, 2000);
}

static void
gen_id_req(struct gen *g, union codecs_msg *u)
{
	u->id_req.id = rnd_u64(g);
}

static void
gen_read_req(struct gen *g, union codecs_msg *u)
{
	u->read_req.id = rnd_u64(g);
	u->read_req.offset = rnd_u64(g);
	u->read_req.length = rnd_u32(g);
}

/* Without MST_WR_APPEND the write must end by MST_BODY_MAX. */
static void
gen_write_req(struct gen *g, union codecs_msg *u)
{
	struct mst_write_req *m = &u->write_req;

	m->id = rnd_u64(g);
	m->flags = (uint32_t)rnd(g) & MST_WR_ALL;
	m->checksum = rnd_u64(g);
	m->body = gen_bytes(g, 512);
	m->body_size = gen_declared(g, m->body.len, MST_BODY_MAX);
	if (m->flags & MST_WR_APPEND)
		m->offset = rnd_u64(g);
	else
		m->offset = gen_declared(g, 0, MST_BODY_MAX - m->body_size);
}

static void
gen_fsetattr_req(struct gen *g, union codecs_msg *u)
{
	struct mst_fsetattr_req *m = &u->fsetattr_req;

	m->id = rnd_u64(g);
	m->valid = (uint32_t)rnd(g) & MST_FSA_ALL;
	m->mode = rnd_u32(g) & 07777u;
	m->uid = rnd_u32(g);
	m->gid = rnd_u32(g);
	m->size = gen_declared(g, 0, MST_BODY_MAX);
	m->mtime_ns = rnd_u64(g);
	m->atime_ns = rnd_u64(g);
}

static void
gen_link_req(struct gen *g, union codecs_msg *u)
{
	u->link_req.id = rnd_u64(g);
	u->link_req.path = gen_path(g, 1);
}

/* Two ends in order, and only the flag combinations the decoder
 * takes: WAIT and TEST exclude each other, UN and CANCEL take
 * neither. */
static void
gen_lock_range(struct gen *g, uint64_t *start, uint64_t *end)
{
	uint64_t a = rnd_u64(g), b = rnd_u64(g);

	*start = a < b ? a : b;
	*end = a < b ? b : a;
	if (below(g, 4) == 0)
		*end = MST_LK_EOF;
}

static void
gen_lock_req(struct gen *g, union codecs_msg *u)
{
	struct mst_lock_req *m = &u->lock_req;
	unsigned ask = MST_LKF_WAIT | MST_LKF_TEST;

	m->id = rnd_u64(g);
	m->owner = rnd_u64(g);
	m->pid = rnd_u32(g);
	m->type = (uint8_t)between(g, MST_LK_RD, MST_LK_UN);
	m->flags = (uint8_t)(rnd(g) & MST_LKF_ALL);
	if ((m->flags & ask) == ask)
		m->flags &= (uint8_t)~(below(g, 2) ? MST_LKF_WAIT :
		    MST_LKF_TEST);
	if (m->type == MST_LK_UN || (m->flags & MST_LKF_CANCEL))
		m->flags &= (uint8_t)~ask;
	gen_lock_range(g, &m->start, &m->end);
}

static void
gen_lock_rep(struct gen *g, union codecs_msg *u)
{
	u->lock_rep.type = (uint8_t)between(g, MST_LK_RD, MST_LK_UN);
	u->lock_rep.pid = rnd_u32(g);
	gen_lock_range(g, &u->lock_rep.start, &u->lock_rep.end);
}

static const struct {
	const char *name;
	void (*gen)(struct gen *g, union codecs_msg *m);
} gens[] = {
#define G(T)	{ #T, gen_##T }
	G(hello_req), G(hello_rep), G(auth), G(ping), G(deliver_req),
	G(attr_rep), G(list_req), G(list_rep), G(msg_ref), G(fetch_req),
	G(data_rep), G(setinfo_req), G(change_rep), G(path_req),
	G(mkdir_req), G(put_req), G(get_req), G(rename_req),
	G(setattr_req), G(statfs_rep), G(watch_rep), G(notify),
	G(error_rep), G(admin_req), G(admin_rep), G(id_req), G(read_req),
	G(write_req), G(fsetattr_req), G(link_req), G(lock_req),
	G(lock_rep), G(stage_req), G(commit_req), G(spool_req),
#undef G
};

static struct gen *
gen_new(uint64_t seed)
{
	struct gen *g = calloc(1, sizeof *g);

	ck_assert_ptr_nonnull(g);
	g->arena = malloc(ARENA);
	ck_assert_ptr_nonnull(g->arena);
	g->s = seed;
	return g;
}

static void
gen_free(struct gen *g)
{
	if (g == NULL)
		return;
	free(g->arena);
	free(g);
}

/* A random valid message for |c|, encoded into enc; returns its length. */
static int
gen_encode(struct gen *g, const struct codec *c, union codecs_msg *m)
{
	size_t i;
	int n;

	for (i = 0; i < NELEM(gens); i++)
		if (strcmp(gens[i].name, c->name) == 0)
			break;
	ck_assert_msg(i < NELEM(gens), "%s: no generator", c->name);
	g->used = 0;
	g->nents = 0;
	memset(m, 0, sizeof *m);
	gens[i].gen(g, m);
	n = c->encode(m, enc, sizeof enc);
	ck_assert_msg(n >= 0, "%s: encode: got %s (%d)", c->name,
	    codecs_errname(n), n);
	return n;
}

START_TEST(every_codec_has_a_generator)
{
	ck_assert_uint_eq(NELEM(gens), codecs_len);
}
END_TEST

START_TEST(random_messages_round_trip)
{
	struct gen *g = gen_new(SEED);
	union codecs_msg m, d;
	struct mst_list_entry e;
	char why[256];
	size_t off, k;
	uint8_t *q;
	int i, n, rc;

	for (i = 0; i < ROUNDS; i++) {
		const struct codec *c = &codecs[(size_t)i % codecs_len];

		n = gen_encode(g, c, &m);
		q = dup_exact(enc, (size_t)n);
		rc = c->decode(&d, q, (size_t)n);
		ck_assert_msg(rc == 0, "round %d, %s: got %s (%d), want 0", i,
		    c->name, codecs_errname(rc), rc);
		ck_assert_msg(codecs_eq(c, &d, &m, why, sizeof why),
		    "round %d, %s: %s", i, c->name, why);
		for (k = 0, off = 0; (c->flags & CODEC_ENTRIES) &&
		    k < g->nents; k++) {
			rc = mst_list_entry_next(&e, &d.list_rep, &off);
			ck_assert_int_eq(rc, 1);
			ck_assert_msg(codecs_entry_eq(&e, &g->ents[k], why,
			    sizeof why), "round %d, entry %zu: %s", i, k, why);
		}
		free(q);
	}
	gen_free(g);
}
END_TEST

/* Flips, overwrites, truncations, insertions, deletions and length-field
 * surgery; returns the new length (at most |cap|). */
static size_t
mutate(struct gen *g, uint8_t *p, size_t len, size_t cap)
{
	static const uint8_t hot[] = { 0, 0xff, '/', '.', 1, 0x7f, 0x80 };
	int k, times = (int)between(g, 1, 4);
	size_t at;

	for (k = 0; k < times; k++) {
		at = len ? (size_t)below(g, len) : 0;
		switch (below(g, 7)) {
		case 0:
			if (len)
				p[at] ^= (uint8_t)(1u << below(g, 8));
			break;
		case 1:
			if (len)
				p[at] = (uint8_t)rnd(g);
			break;
		case 2:
			if (len)
				p[at] = hot[below(g, sizeof hot)];
			break;
		case 3:
			len = (size_t)below(g, len + 1);
			break;
		case 4:
			if (len < cap) {
				memmove(p + at + 1, p + at, len - at);
				p[at] = (uint8_t)rnd(g);
				len++;
			}
			break;
		case 5:
			if (len) {
				memmove(p + at, p + at + 1, len - at - 1);
				len--;
			}
			break;
		case 6:
			if (len >= 2) {
				uint16_t v = (uint16_t)rnd_len(g, 0, 300);

				at = (size_t)below(g, len - 1);
				p[at] = (uint8_t)(v >> 8);
				p[at + 1] = (uint8_t)v;
			}
			break;
		}
	}
	return len;
}

/* Every mutated input goes through every decoder; each must keep its
 * contract (codecs_check_decode). Some mutants must still decode and
 * some must fail, or the test is not testing anything. */
START_TEST(random_mutations_return_documented_errors)
{
	struct gen *g = gen_new(SEED ^ 0x9e3779b97f4a7c15ull);
	union codecs_msg m;
	unsigned accepted = 0, rejected = 0;
	char why[512];
	size_t len, k;
	uint8_t *q;
	int i, n, rc;

	for (i = 0; i < ROUNDS; i++) {
		const struct codec *c = &codecs[(size_t)i % codecs_len];

		n = gen_encode(g, c, &m);
		len = mutate(g, enc, (size_t)n, sizeof enc);
		q = dup_exact(enc, len);
		for (k = 0; k < codecs_len; k++) {
			ck_assert_msg(codecs_check_decode(&codecs[k], q, len,
			    &rc, why, sizeof why) == 0, "round %d (%s mutated): "
			    "%s", i, c->name, why);
			if (&codecs[k] != c)
				continue;
			if (rc == 0)
				accepted++;
			else
				rejected++;
		}
		ck_assert_msg(codecs_check_hdr(q, len, MST_FRAME_DEFAULT, &rc,
		    why, sizeof why) == 0, "round %d: %s", i, why);
		ck_assert_msg(codecs_check_entries(q, len, &rc, why,
		    sizeof why) == 0, "round %d: %s", i, why);
		free(q);
	}
	ck_assert_uint_gt(accepted, ROUNDS / 20);
	ck_assert_uint_gt(rejected, ROUNDS / 20);
	gen_free(g);
}
END_TEST

/* The samples and the random messages must keep the contract the fuzzer
 * checks too, or a fuzz finding could be a harness bug. */
START_TEST(samples_keep_decoder_contract)
{
	const struct codec *c = &codecs[_i];
	union codecs_msg m;
	char why[512];
	uint8_t *q;
	int n, rc;

	n = encode_sample(c, &m);
	q = dup_exact(enc, (size_t)n);
	ck_assert_msg(codecs_check_decode(c, q, (size_t)n, &rc, why,
	    sizeof why) == 0, "%s", why);
	ck_assert_msg(rc == 0, "%s: got %s (%d), want 0", c->name,
	    codecs_errname(rc), rc);
	free(q);
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;
	int nc = (int)codecs_len;

	tc = tcase_create("frame");
	tcase_add_test(tc, hdr_encodes_documented_layout);
	tcase_add_test(tc, hdr_round_trips_every_field);
	tcase_add_test(tc, hdr_decode_returns_zero_until_header_complete);
	tcase_add_test(tc, hdr_decode_rejects_bad_magic);
	tcase_add_test(tc, hdr_decode_rejects_other_versions);
	tcase_add_test(tc, hdr_decode_rejects_length_over_max);
	tcase_add_test(tc, hdr_decode_rejects_unknown_opcodes);
	tcase_add_test(tc, hdr_decode_rejects_reserved_flags);
	tcase_add_test(tc, hdr_encode_rejects_small_buffer);
	tcase_add_test(tc, op_name_names_every_opcode);
	suite_add_tcase(s, tc);

	tc = tcase_create("payload");
	tcase_add_loop_test(tc, payload_round_trips_field_by_field, 0, nc);
	tcase_add_loop_test(tc, payload_decode_rejects_truncation_at_every_offset,
	    0, nc);
	tcase_add_loop_test(tc, payload_decode_rejects_trailing_bytes, 0, nc);
	tcase_add_loop_test(tc, payload_encode_rejects_small_buffer, 0, nc);
	tcase_add_loop_test(tc, samples_keep_decoder_contract, 0, nc);
	tcase_add_loop_test(tc, string_field_rejects_values_outside_its_domain,
	    0, (int)NELEM(str_fields));
	tcase_add_loop_test(tc, numeric_field_rejects_values_outside_its_domain,
	    0, (int)NELEM(int_fields));
	tcase_add_test(tc, deliver_req_carries_partial_body_chunk);
	tcase_add_test(tc, commit_req_is_deliver_req_without_body);
	tcase_add_test(tc, body_chunk_longer_than_declared_is_eproto);
	tcase_add_test(tc, error_rep_round_trips_empty_detail);
	tcase_add_test(tc, error_rep_detail_limit_holds_both_ways);
	tcase_add_test(tc, admin_rep_text_may_hold_any_byte);
	tcase_add_test(tc, ping_encodes_cookie_big_endian);
	tcase_add_test(tc, path_req_encodes_length_prefixed_string);
	tcase_add_test(tc, attr_rep_encodes_attr_in_65_bytes);
	tcase_add_test(tc, notify_reset_with_a_name_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, file_layouts_have_documented_sizes);
	tcase_add_test(tc, lock_req_encodes_documented_layout);
	tcase_add_test(tc, lock_req_rejects_start_after_end);
	tcase_add_test(tc, lock_req_rejects_unknown_type);
	tcase_add_test(tc, lock_req_accepts_only_meaningful_flags);
	tcase_add_test(tc, lock_req_rejects_unlock_with_wait_or_test);
	tcase_add_test(tc, lock_rep_rejects_bad_type_and_range);
	tcase_add_test(tc, write_req_rejects_unknown_flags);
	tcase_add_test(tc, write_req_rejects_body_over_declared_size);
	tcase_add_test(tc, write_req_rejects_end_past_body_max);
	tcase_add_test(tc, write_req_carries_partial_body_chunk);
	tcase_add_test(tc, fsetattr_req_rejects_unknown_valid_bits);
	tcase_add_test(tc, link_req_rejects_root_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("list");
	tcase_add_test(tc, list_rep_round_trips_each_entry);
	tcase_add_test(tc, list_rep_round_trips_removed_entry_as_documented);
	tcase_add_test(tc, list_rep_with_no_entries_round_trips);
	tcase_add_test(tc, list_rep_rejects_count_that_disagrees_with_entries);
	tcase_add_test(tc, list_entry_rejects_values_outside_domain);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_test(tc, name_check_follows_table);
	tcase_add_test(tc, path_check_follows_table);
	tcase_add_test(tc, str_of_makes_views);
	suite_add_tcase(s, tc);

	tc = tcase_create("body");
	tcase_add_loop_test(tc, body_add_accounts_chunks, 0,
	    (int)NELEM(body_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("status");
	tcase_add_test(tc, status_round_trips_every_code);
	tcase_add_test(tc, unknown_status_maps_to_eio);
	tcase_add_test(tc, unlisted_errno_maps_to_eio);
	suite_add_tcase(s, tc);

	tc = tcase_create("checksum");
	tcase_add_test(tc, checksum_matches_xxh3_reference_vectors);
	tcase_add_test(tc, checksum_equals_xxh3_64bits);
	tcase_add_test(tc, checksum_changes_on_any_one_bit_flip);
	tcase_add_test(tc, checksum_mismatch_detected_after_body_bit_flip);
	suite_add_tcase(s, tc);

	/* Sanitizer builds run these several times slower. */
	tc = tcase_create("random");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_codec_has_a_generator);
	tcase_add_test(tc, random_messages_round_trip);
	tcase_add_test(tc, random_mutations_return_documented_errors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
