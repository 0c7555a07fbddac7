/*
 * wire.h - private cursor over a payload for libmstproto's codecs.
 * A writer never writes past |cap|; a reader never reads past |len|. Both
 * latch the first error, so a codec can run all its fields and check
 * once at the end.
 */
#ifndef MST_WIRE_H
#define MST_WIRE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mstproto.h"

struct wr {
	uint8_t *p;
	size_t cap;
	size_t off;
	int err;
};

struct rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	int err;
};

static inline void
wr_raw(struct wr *w, const void *src, size_t n)
{
	if (w->err)
		return;
	if (n > w->cap - w->off) {
		w->err = -EMSGSIZE;
		return;
	}
	if (n)
		memcpy(w->p + w->off, src, n);
	w->off += n;
}

static inline void
wr_u8(struct wr *w, uint8_t v)
{
	wr_raw(w, &v, 1);
}

static inline void
wr_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	wr_raw(w, b, 2);
}

static inline void
wr_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
		(uint8_t)(v >> 8), (uint8_t)v };

	wr_raw(w, b, 4);
}

static inline void
wr_u64(struct wr *w, uint64_t v)
{
	wr_u32(w, (uint32_t)(v >> 32));
	wr_u32(w, (uint32_t)v);
}

static inline void
wr_str(struct wr *w, struct mst_str s)
{
	wr_u16(w, s.len);
	wr_raw(w, s.p, s.len);
}

static inline int
wr_end(const struct wr *w)
{
	return w->err ? w->err : (int)w->off;
}

static inline const uint8_t *
rd_take(struct rd *r, size_t n)
{
	const uint8_t *q;

	if (r->err)
		return NULL;
	if (n > r->len - r->off) {
		r->err = -EBADMSG;
		return NULL;
	}
	q = r->p + r->off;
	r->off += n;
	return q;
}

static inline uint8_t
rd_u8(struct rd *r)
{
	const uint8_t *q = rd_take(r, 1);

	return q ? q[0] : 0;
}

static inline uint16_t
rd_u16(struct rd *r)
{
	const uint8_t *q = rd_take(r, 2);

	return q ? (uint16_t)(q[0] << 8 | q[1]) : 0;
}

static inline uint32_t
rd_u32(struct rd *r)
{
	const uint8_t *q = rd_take(r, 4);

	return q ? (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
		(uint32_t)q[2] << 8 | q[3] : 0;
}

static inline uint64_t
rd_u64(struct rd *r)
{
	uint64_t hi = rd_u32(r);

	return hi << 32 | rd_u32(r);
}

static inline void
rd_fail(struct rd *r, int err)
{
	if (!r->err)
		r->err = err;
}

/* A string: u16 length, bytes. NUL bytes inside are -EINVAL. */
static inline struct mst_str
rd_str(struct rd *r)
{
	struct mst_str s = { "", 0 };
	uint16_t n = rd_u16(r);
	const uint8_t *q = rd_take(r, n);

	if (q == NULL)
		return s;
	if (memchr(q, 0, n) != NULL) {
		rd_fail(r, -EINVAL);
		return s;
	}
	s.p = (const char *)q;
	s.len = n;
	return s;
}

static inline void
rd_copy(struct rd *r, void *dst, size_t n)
{
	const uint8_t *q = rd_take(r, n);

	if (q != NULL)
		memcpy(dst, q, n);
}

/* Everything must have been consumed: trailing bytes are -EPROTO. */
static inline int
rd_end(struct rd *r)
{
	if (!r->err && r->off != r->len)
		r->err = -EPROTO;
	return r->err;
}

#endif /* MST_WIRE_H */
