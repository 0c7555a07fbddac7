/*
 * record.c - log record codec (layout drawn in record.h). Never reads past
 * a buffer's length; never allocates.
 */
#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include "record.h"
#include "wire.h"

int
rec_has_body(const struct rec *r)
{
	switch (r->type) {
	case REC_CREATE:
	case REC_NEW:
		return r->ntype == MST_T_MSG || r->ntype == MST_T_FILE;
	case REC_DATA:
	case REC_RELOCATE:
	case REC_EXTENT:
		return 1;
	default:
		return 0;
	}
}

uint64_t
rec_ext_sum(const uint8_t *body, uint32_t k)
{
	struct rd d = { body + (size_t)k * 8, 8, 0, 0 };

	return rd_u64(&d);
}

void
rec_ext_set_sum(uint8_t *body, uint32_t k, uint64_t sum)
{
	struct wr w = { body + (size_t)k * 8, 8, 0, 0 };

	wr_u64(&w, sum);
}

uint64_t
rec_ext_block(const struct rec *r, uint32_t k, size_t *len_out)
{
	uint64_t data = (uint64_t)r->nblk * 8;

	*len_out = k + 1 < r->nblk ? REC_BLOCK :
	    (size_t)(r->size - data - (uint64_t)k * REC_BLOCK);
	return data + (uint64_t)k * REC_BLOCK;
}

static void
put_fixed(struct wr *w, const struct rec *r)
{
	wr_u64(w, r->id);
	switch (r->type) {
	case REC_CREATE:
	case REC_NEW:
		wr_u64(w, r->parent);
		wr_u64(w, (uint64_t)r->mtime_ns);
		wr_u8(w, r->ntype);
		wr_u32(w, r->mode);
		wr_u32(w, r->uid);
		wr_u32(w, r->gid);
		wr_str(w, r->name);
		if (r->ntype == MST_T_MSG) {
			wr_str(w, r->mailbox);
			wr_raw(w, r->idem, MST_IDEM_LEN);
		}
		if (r->type == REC_NEW)
			wr_u64(w, (uint64_t)r->set_mtime_ns);
		break;
	case REC_DATA:
	case REC_RELOCATE:
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_MOVE:
		wr_u64(w, r->parent);
		wr_str(w, r->name);
		wr_u64(w, r->replaced);
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_REMOVE:
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_SETATTR:
		wr_u32(w, r->valid);
		wr_u32(w, r->mode);
		wr_u32(w, r->uid);
		wr_u32(w, r->gid);
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_EXTENT:
		wr_u64(w, r->first);
		wr_u64(w, r->fsize);
		wr_u64(w, (uint64_t)r->mtime_ns);
		wr_u32(w, r->flags);
		wr_u32(w, r->nblk);
		break;
	case REC_ATTR:
		wr_u32(w, r->valid);
		wr_u32(w, r->mode);
		wr_u32(w, r->uid);
		wr_u32(w, r->gid);
		wr_u64(w, r->fsize);
		wr_u64(w, (uint64_t)r->set_mtime_ns);
		wr_u64(w, (uint64_t)r->set_atime_ns);
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_LINK:
	case REC_UNLINK:
		wr_u64(w, r->parent);
		wr_str(w, r->name);
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	case REC_MARK:
		wr_u64(w, r->synced);
		break;
	case REC_RENAME:
		wr_u64(w, r->from_parent);
		wr_str(w, r->from_name);
		wr_u64(w, r->parent);
		wr_str(w, r->name);
		wr_u64(w, r->replaced);
		wr_u64(w, (uint64_t)r->mtime_ns);
		break;
	}
	if (rec_has_body(r)) {
		wr_u64(w, r->checksum);
		wr_u64(w, r->size);
	}
}

int
rec_encode(const struct rec *r, const void *body, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, REC_HDR_LEN, 0 };
	struct wr h = { buf, REC_HDR_LEN, 0, 0 };
	uint64_t len, size = rec_has_body(r) ? r->size : 0;
	XXH3_state_t st;

	if (cap < REC_HDR_LEN)
		return -EMSGSIZE;
	put_fixed(&w, r);
	if (w.err)
		return w.err;
	len = w.off - REC_HDR_LEN + size;
	if (len > UINT32_MAX)
		return -EFBIG;
	wr_u32(&h, REC_MAGIC);
	wr_u8(&h, r->type);
	wr_u8(&h, 0);
	wr_u16(&h, 0);
	wr_u32(&h, (uint32_t)len);
	wr_u32(&h, 0);
	wr_u64(&h, r->lsn);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, buf, 24);
	XXH3_64bits_update(&st, buf + REC_HDR_LEN, w.off - REC_HDR_LEN);
	if (size)
		XXH3_64bits_update(&st, body, size);
	wr_u64(&h, XXH3_64bits_digest(&st));
	return (int)w.off;
}

int
rec_hdr_decode(struct rec *r, const uint8_t hdr[REC_HDR_LEN],
    uint64_t max_len, uint64_t *sum_out)
{
	struct rd d = { hdr, REC_HDR_LEN, 0, 0 };
	uint32_t len;

	if (rd_u32(&d) != REC_MAGIC)
		return -EBADMSG;
	r->type = rd_u8(&d);
	(void)rd_take(&d, 3);		/* padding */
	len = rd_u32(&d);
	(void)rd_u32(&d);		/* padding */
	r->lsn = rd_u64(&d);
	*sum_out = rd_u64(&d);
	if (r->type < REC_CREATE || r->type > REC_MARK || len < 8 ||
	    len > max_len)
		return -EBADMSG;
	return (int)len;
}

int
rec_verify(const uint8_t hdr[REC_HDR_LEN], const uint8_t *payload,
    size_t len, uint64_t sum)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, hdr, 24);
	XXH3_64bits_update(&st, payload, len);
	return XXH3_64bits_digest(&st) == sum;
}

int
rec_decode(struct rec *r, const uint8_t *payload, size_t len)
{
	struct rd d = { payload, len, 0, 0 };

	r->id = rd_u64(&d);
	switch (r->type) {
	case REC_CREATE:
	case REC_NEW:
		r->parent = rd_u64(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		r->ntype = rd_u8(&d);
		r->mode = rd_u32(&d);
		r->uid = rd_u32(&d);
		r->gid = rd_u32(&d);
		r->name = rd_str(&d);
		if (r->ntype == MST_T_MSG) {
			r->mailbox = rd_str(&d);
			rd_copy(&d, r->idem, MST_IDEM_LEN);
		}
		if (r->type == REC_NEW)
			r->set_mtime_ns = (int64_t)rd_u64(&d);
		if (r->ntype < MST_T_DIR || r->ntype > MST_T_MSG)
			rd_fail(&d, -EBADMSG);
		break;
	case REC_DATA:
	case REC_RELOCATE:
	case REC_REMOVE:
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	case REC_MOVE:
		r->parent = rd_u64(&d);
		r->name = rd_str(&d);
		r->replaced = rd_u64(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	case REC_SETATTR:
		r->valid = rd_u32(&d);
		r->mode = rd_u32(&d);
		r->uid = rd_u32(&d);
		r->gid = rd_u32(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	case REC_EXTENT:
		r->first = rd_u64(&d);
		r->fsize = rd_u64(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		r->flags = rd_u32(&d);
		r->nblk = rd_u32(&d);
		if (r->nblk == 0 || r->nblk > REC_EXT_MAX ||
		    r->first > UINT64_MAX / REC_BLOCK - REC_EXT_MAX)
			rd_fail(&d, -EBADMSG);
		break;
	case REC_ATTR:
		r->valid = rd_u32(&d);
		r->mode = rd_u32(&d);
		r->uid = rd_u32(&d);
		r->gid = rd_u32(&d);
		r->fsize = rd_u64(&d);
		r->set_mtime_ns = (int64_t)rd_u64(&d);
		r->set_atime_ns = (int64_t)rd_u64(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	case REC_LINK:
	case REC_UNLINK:
		r->parent = rd_u64(&d);
		r->name = rd_str(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	case REC_MARK:
		r->synced = rd_u64(&d);
		break;
	case REC_RENAME:
		r->from_parent = rd_u64(&d);
		r->from_name = rd_str(&d);
		r->parent = rd_u64(&d);
		r->name = rd_str(&d);
		r->replaced = rd_u64(&d);
		r->mtime_ns = (int64_t)rd_u64(&d);
		break;
	}
	r->size = 0;
	if (rec_has_body(r)) {
		r->checksum = rd_u64(&d);
		r->size = rd_u64(&d);
		if (!d.err && r->size != len - d.off)
			rd_fail(&d, -EBADMSG);
		if (!d.err && r->type == REC_EXTENT &&
		    (r->size <= (uint64_t)r->nblk * 8 + (r->nblk - 1) *
		    (uint64_t)REC_BLOCK ||
		    r->size > (uint64_t)r->nblk * (8 + REC_BLOCK)))
			rd_fail(&d, -EBADMSG);
		r->body_off = (uint32_t)d.off;
		d.off = d.len;
	}
	if (d.err || d.off != d.len)
		return -EBADMSG;
	return 0;
}
