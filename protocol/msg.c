/*
 * msg.c - payload codecs for every operation (mstore-protocol(7),
 * "Operations"). Each layout is written as a pair: the encoder and the
 * decoder list the same fields in the same order. Decoders validate
 * names, paths, enums and limits and never read past |len|; never
 * allocates.
 */
#include <errno.h>
#include <string.h>

#include "mstproto.h"
#include "wire.h"

#define WR(buf, cap) { (buf), (cap), 0, 0 }
#define RD(p, len) { (p), (len), 0, 0 }

static void
rd_check(struct rd *r, int rc)
{
	if (rc < 0)
		rd_fail(r, rc);
}

static void
rd_sub(struct rd *r, uint8_t sub)
{
	if (sub != MST_SUB_NEW && sub != MST_SUB_CUR)
		rd_fail(r, -EINVAL);
}

/* A mailbox is a non-empty path: the placement unit. */
static void
rd_mailbox(struct rd *r, struct mst_str m)
{
	rd_check(r, mst_path_check(m));
	if (!r->err && m.len == 0)
		rd_fail(r, -EINVAL);
}

/* A folder is "" (the mailbox's INBOX) or a path of Maildir++ names. */
static void
rd_folder(struct rd *r, struct mst_str f)
{
	rd_check(r, mst_path_check(f));
}

static void
wr_attr(struct wr *w, const struct mst_attr *a)
{
	wr_u8(w, a->type);
	wr_u64(w, a->id);
	wr_u64(w, a->size);
	wr_u32(w, a->mode);
	wr_u32(w, a->uid);
	wr_u32(w, a->gid);
	wr_u32(w, a->nlink);
	wr_u64(w, a->mtime_ns);
	wr_u64(w, a->ctime_ns);
	wr_u64(w, a->change);
	wr_u64(w, a->atime_ns);
}

static void
rd_attr(struct rd *r, struct mst_attr *a)
{
	a->type = rd_u8(r);
	a->id = rd_u64(r);
	a->size = rd_u64(r);
	a->mode = rd_u32(r);
	a->uid = rd_u32(r);
	a->gid = rd_u32(r);
	a->nlink = rd_u32(r);
	a->mtime_ns = rd_u64(r);
	a->ctime_ns = rd_u64(r);
	a->change = rd_u64(r);
	a->atime_ns = rd_u64(r);
	if (!r->err && (a->type < MST_T_DIR || a->type > MST_T_MSG))
		rd_fail(r, -EINVAL);
	if (a->mode & ~07777u)
		rd_fail(r, -EINVAL);
}

/* The rest of the payload is a body chunk of at most |declared| bytes. */
static struct mst_bytes
rd_rest(struct rd *r, uint64_t declared)
{
	struct mst_bytes b = { NULL, 0 };
	size_t n;

	if (r->err)
		return b;
	n = r->len - r->off;
	if (n > declared) {
		rd_fail(r, -EPROTO);
		return b;
	}
	b.p = r->p + r->off;
	b.len = (uint32_t)n;
	r->off = r->len;
	return b;
}

int
mst_hello_req_encode(const struct mst_hello_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u16(&w, m->min_version);
	wr_u16(&w, m->max_version);
	wr_u32(&w, m->features);
	wr_u32(&w, m->max_frame);
	wr_str(&w, m->client);
	wr_raw(&w, m->nonce, MST_NONCE_LEN);
	return wr_end(&w);
}

int
mst_hello_req_decode(struct mst_hello_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->min_version = rd_u16(&r);
	m->max_version = rd_u16(&r);
	m->features = rd_u32(&r);
	m->max_frame = rd_u32(&r);
	m->client = rd_str(&r);
	rd_copy(&r, m->nonce, MST_NONCE_LEN);
	if (!r.err && (m->min_version > m->max_version ||
	    m->max_frame < MST_FRAME_MIN || m->max_frame > MST_FRAME_LIMIT))
		rd_fail(&r, -EINVAL);
	return rd_end(&r);
}

int
mst_hello_rep_encode(const struct mst_hello_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u16(&w, m->version);
	wr_u32(&w, m->features);
	wr_u32(&w, m->max_frame);
	wr_u64(&w, m->max_body);
	wr_u64(&w, m->server_id);
	wr_str(&w, m->server);
	wr_raw(&w, m->nonce, MST_NONCE_LEN);
	return wr_end(&w);
}

int
mst_hello_rep_decode(struct mst_hello_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->version = rd_u16(&r);
	m->features = rd_u32(&r);
	m->max_frame = rd_u32(&r);
	m->max_body = rd_u64(&r);
	m->server_id = rd_u64(&r);
	m->server = rd_str(&r);
	rd_copy(&r, m->nonce, MST_NONCE_LEN);
	if (!r.err && (m->max_frame < MST_FRAME_MIN ||
	    m->max_frame > MST_FRAME_LIMIT))
		rd_fail(&r, -EINVAL);
	if (!r.err && m->max_body > MST_BODY_MAX)
		rd_fail(&r, -EFBIG);
	return rd_end(&r);
}

int
mst_auth_encode(const struct mst_auth *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_raw(&w, m->proof, MST_PROOF_LEN);
	return wr_end(&w);
}

int
mst_auth_decode(struct mst_auth *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	rd_copy(&r, m->proof, MST_PROOF_LEN);
	return rd_end(&r);
}

int
mst_ping_encode(const struct mst_ping *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->cookie);
	return wr_end(&w);
}

int
mst_ping_decode(struct mst_ping *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->cookie = rd_u64(&r);
	return rd_end(&r);
}

int
mst_deliver_req_encode(const struct mst_deliver_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_u8(&w, m->sub);
	wr_str(&w, m->name);
	wr_raw(&w, m->idem, MST_IDEM_LEN);
	wr_u64(&w, m->checksum);
	wr_u64(&w, m->body_size);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_u64(&w, m->mtime_ns);
	wr_raw(&w, m->body.p, m->body.len);
	return wr_end(&w);
}

int
mst_deliver_req_decode(struct mst_deliver_req *m, const uint8_t *p,
    size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	m->sub = rd_u8(&r);
	m->name = rd_str(&r);
	rd_copy(&r, m->idem, MST_IDEM_LEN);
	m->checksum = rd_u64(&r);
	m->body_size = rd_u64(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	m->mtime_ns = rd_u64(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		rd_sub(&r, m->sub);
		rd_check(&r, mst_name_check(m->name));
		if (m->body_size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
	}
	m->body = rd_rest(&r, m->body_size);
	return rd_end(&r);
}

int
mst_stage_req_encode(const struct mst_stage_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_raw(&w, m->idem, MST_IDEM_LEN);
	wr_u64(&w, m->checksum);
	wr_u64(&w, m->body_size);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_raw(&w, m->body.p, m->body.len);
	return wr_end(&w);
}

int
mst_stage_req_decode(struct mst_stage_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	rd_copy(&r, m->idem, MST_IDEM_LEN);
	m->checksum = rd_u64(&r);
	m->body_size = rd_u64(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		if (m->body_size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
	}
	m->body = rd_rest(&r, m->body_size);
	return rd_end(&r);
}

/* COMMIT: DELIVER's layout up to mtime_ns, and nothing after it. */
int
mst_commit_req_encode(const struct mst_commit_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_u8(&w, m->sub);
	wr_str(&w, m->name);
	wr_raw(&w, m->idem, MST_IDEM_LEN);
	wr_u64(&w, m->checksum);
	wr_u64(&w, m->body_size);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_u64(&w, m->mtime_ns);
	return wr_end(&w);
}

int
mst_commit_req_decode(struct mst_commit_req *m, const uint8_t *p,
    size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	m->sub = rd_u8(&r);
	m->name = rd_str(&r);
	rd_copy(&r, m->idem, MST_IDEM_LEN);
	m->checksum = rd_u64(&r);
	m->body_size = rd_u64(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	m->mtime_ns = rd_u64(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		rd_sub(&r, m->sub);
		rd_check(&r, mst_name_check(m->name));
		if (m->body_size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
	}
	return rd_end(&r);
}

/* SPOOL: mailbox, idem, offset, length, then exactly |length| bytes. */
int
mst_spool_req_encode(const struct mst_spool_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_raw(&w, m->idem, MST_IDEM_LEN);
	wr_u64(&w, m->offset);
	wr_u32(&w, m->length);
	wr_raw(&w, m->data.p, m->data.len);
	return wr_end(&w);
}

int
mst_spool_req_decode(struct mst_spool_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	rd_copy(&r, m->idem, MST_IDEM_LEN);
	m->offset = rd_u64(&r);
	m->length = rd_u32(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		if (m->offset > MST_BODY_MAX ||
		    m->length > MST_BODY_MAX - m->offset)
			rd_fail(&r, -EFBIG);
	}
	m->data = rd_rest(&r, m->length);
	if (!r.err && m->data.len < m->length)
		rd_fail(&r, -EBADMSG);	/* cut inside the data */
	return rd_end(&r);
}

int
mst_attr_rep_encode(const struct mst_attr_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_attr(&w, &m->attr);
	wr_u64(&w, m->dir_change);
	wr_u64(&w, m->dir_mtime_ns);
	return wr_end(&w);
}

int
mst_attr_rep_decode(struct mst_attr_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	rd_attr(&r, &m->attr);
	m->dir_change = rd_u64(&r);
	m->dir_mtime_ns = rd_u64(&r);
	return rd_end(&r);
}

int
mst_list_req_encode(const struct mst_list_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_u8(&w, m->sub);
	wr_u64(&w, m->since);
	return wr_end(&w);
}

int
mst_list_req_decode(struct mst_list_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	m->sub = rd_u8(&r);
	m->since = rd_u64(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		rd_sub(&r, m->sub);
	}
	return rd_end(&r);
}

size_t
mst_list_entry_size(const struct mst_list_entry *e)
{
	return 1 + 2 + (size_t)e->name.len + MST_ATTR_LEN;
}

int
mst_list_entry_encode(const struct mst_list_entry *e, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u8(&w, e->kind);
	wr_str(&w, e->name);
	wr_attr(&w, &e->attr);
	return wr_end(&w);
}

int
mst_list_entry_next(struct mst_list_entry *e, const struct mst_list_rep *lr,
    size_t *off)
{
	struct rd r = RD(lr->entries, lr->entries_len);

	if (*off >= lr->entries_len)
		return 0;
	r.off = *off;
	e->kind = rd_u8(&r);
	e->name = rd_str(&r);
	rd_attr(&r, &e->attr);
	if (!r.err && e->kind != MST_LE_PRESENT && e->kind != MST_LE_REMOVED)
		rd_fail(&r, -EINVAL);
	if (!r.err)
		rd_check(&r, mst_name_check(e->name));
	if (r.err)
		return r.err;
	*off = r.off;
	return 1;
}

int
mst_list_rep_encode(const struct mst_list_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->change);
	wr_u64(&w, m->dir_mtime_ns);
	wr_u8(&w, m->flags);
	wr_u32(&w, m->count);
	wr_raw(&w, m->entries, m->entries_len);
	return wr_end(&w);
}

/* Walks every entry once, so a reply whose count or entries lie is
 * rejected here rather than half-way through the caller's loop. */
int
mst_list_rep_decode(struct mst_list_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);
	struct mst_list_entry e;
	size_t off = 0;
	uint32_t n = 0;
	int rc;

	m->change = rd_u64(&r);
	m->dir_mtime_ns = rd_u64(&r);
	m->flags = rd_u8(&r);
	m->count = rd_u32(&r);
	if (r.err)
		return r.err;
	if (m->flags & ~MST_LIST_FULL)
		return -EINVAL;
	m->entries = p + r.off;
	m->entries_len = len - r.off;
	while ((rc = mst_list_entry_next(&e, m, &off)) == 1)
		n++;
	if (rc < 0)
		return rc;
	return n == m->count ? 0 : -EBADMSG;
}

int
mst_msg_ref_encode(const struct mst_msg_ref *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_u8(&w, m->sub);
	wr_str(&w, m->name);
	return wr_end(&w);
}

int
mst_msg_ref_decode(struct mst_msg_ref *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	m->sub = rd_u8(&r);
	m->name = rd_str(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		rd_sub(&r, m->sub);
		rd_check(&r, mst_name_check(m->name));
	}
	return rd_end(&r);
}

int
mst_fetch_req_encode(const struct mst_fetch_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_u64(&w, m->id);
	wr_u64(&w, m->offset);
	wr_u32(&w, m->length);
	return wr_end(&w);
}

int
mst_fetch_req_decode(struct mst_fetch_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->id = rd_u64(&r);
	m->offset = rd_u64(&r);
	m->length = rd_u32(&r);
	if (!r.err)
		rd_mailbox(&r, m->mailbox);
	return rd_end(&r);
}

int
mst_data_rep_encode(const struct mst_data_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->total_size);
	wr_u64(&w, m->checksum);
	wr_raw(&w, m->data.p, m->data.len);
	return wr_end(&w);
}

int
mst_data_rep_decode(struct mst_data_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->total_size = rd_u64(&r);
	m->checksum = rd_u64(&r);
	m->data = rd_rest(&r, m->total_size);
	return rd_end(&r);
}

int
mst_setinfo_req_encode(const struct mst_setinfo_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->mailbox);
	wr_str(&w, m->folder);
	wr_u8(&w, m->from_sub);
	wr_str(&w, m->from_name);
	wr_u8(&w, m->to_sub);
	wr_str(&w, m->to_name);
	wr_u32(&w, m->flags);
	return wr_end(&w);
}

int
mst_setinfo_req_decode(struct mst_setinfo_req *m, const uint8_t *p,
    size_t len)
{
	struct rd r = RD(p, len);

	m->mailbox = rd_str(&r);
	m->folder = rd_str(&r);
	m->from_sub = rd_u8(&r);
	m->from_name = rd_str(&r);
	m->to_sub = rd_u8(&r);
	m->to_name = rd_str(&r);
	m->flags = rd_u32(&r);
	if (!r.err) {
		rd_mailbox(&r, m->mailbox);
		rd_folder(&r, m->folder);
		rd_sub(&r, m->from_sub);
		rd_check(&r, mst_name_check(m->from_name));
		rd_sub(&r, m->to_sub);
		rd_check(&r, mst_name_check(m->to_name));
		if (m->flags & ~MST_RN_ALL)
			rd_fail(&r, -EINVAL);
	}
	return rd_end(&r);
}

int
mst_change_rep_encode(const struct mst_change_rep *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->dir_change);
	wr_u64(&w, m->dir_mtime_ns);
	return wr_end(&w);
}

int
mst_change_rep_decode(struct mst_change_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->dir_change = rd_u64(&r);
	m->dir_mtime_ns = rd_u64(&r);
	return rd_end(&r);
}

int
mst_path_req_encode(const struct mst_path_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	return wr_end(&w);
}

int
mst_path_req_decode(struct mst_path_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	if (!r.err)
		rd_check(&r, mst_path_check(m->path));
	return rd_end(&r);
}

int
mst_mkdir_req_encode(const struct mst_mkdir_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	return wr_end(&w);
}

int
mst_mkdir_req_decode(struct mst_mkdir_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->path));
		if (!r.err && m->path.len == 0)
			rd_fail(&r, -EEXIST);	/* the root always exists */
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
	}
	return rd_end(&r);
}

int
mst_put_req_encode(const struct mst_put_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	wr_u32(&w, m->flags);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_u64(&w, m->mtime_ns);
	wr_u64(&w, m->checksum);
	wr_u64(&w, m->body_size);
	wr_raw(&w, m->body.p, m->body.len);
	return wr_end(&w);
}

int
mst_put_req_decode(struct mst_put_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	m->flags = rd_u32(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	m->mtime_ns = rd_u64(&r);
	m->checksum = rd_u64(&r);
	m->body_size = rd_u64(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->path));
		if (!r.err && m->path.len == 0)
			rd_fail(&r, -EISDIR);
		if (m->flags & ~MST_PUT_ALL)
			rd_fail(&r, -EINVAL);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
		if (m->body_size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
	}
	m->body = rd_rest(&r, m->body_size);
	return rd_end(&r);
}

int
mst_get_req_encode(const struct mst_get_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	wr_u64(&w, m->offset);
	wr_u32(&w, m->length);
	return wr_end(&w);
}

int
mst_get_req_decode(struct mst_get_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	m->offset = rd_u64(&r);
	m->length = rd_u32(&r);
	if (!r.err)
		rd_check(&r, mst_path_check(m->path));
	return rd_end(&r);
}

int
mst_rename_req_encode(const struct mst_rename_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->from);
	wr_str(&w, m->to);
	wr_u32(&w, m->flags);
	return wr_end(&w);
}

int
mst_rename_req_decode(struct mst_rename_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->from = rd_str(&r);
	m->to = rd_str(&r);
	m->flags = rd_u32(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->from));
		rd_check(&r, mst_path_check(m->to));
		if (!r.err && (m->from.len == 0 || m->to.len == 0))
			rd_fail(&r, -EBUSY);	/* the root cannot move */
		if (m->flags & ~MST_RN_ALL)
			rd_fail(&r, -EINVAL);
	}
	return rd_end(&r);
}

int
mst_setattr_req_encode(const struct mst_setattr_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	wr_u32(&w, m->valid);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_u64(&w, m->size);
	wr_u64(&w, m->mtime_ns);
	return wr_end(&w);
}

int
mst_setattr_req_decode(struct mst_setattr_req *m, const uint8_t *p,
    size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	m->valid = rd_u32(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	m->size = rd_u64(&r);
	m->mtime_ns = rd_u64(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->path));
		if (m->valid & ~MST_SA_ALL)
			rd_fail(&r, -EINVAL);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
		if (m->size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
	}
	return rd_end(&r);
}

int
mst_statfs_rep_encode(const struct mst_statfs_rep *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->bytes_total);
	wr_u64(&w, m->bytes_free);
	wr_u64(&w, m->files_total);
	wr_u64(&w, m->files_free);
	wr_u64(&w, m->quota_bytes);
	wr_u64(&w, m->used_bytes);
	wr_u64(&w, m->quota_msgs);
	wr_u64(&w, m->used_msgs);
	wr_u64(&w, m->max_body);
	wr_u32(&w, m->name_max);
	return wr_end(&w);
}

int
mst_statfs_rep_decode(struct mst_statfs_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->bytes_total = rd_u64(&r);
	m->bytes_free = rd_u64(&r);
	m->files_total = rd_u64(&r);
	m->files_free = rd_u64(&r);
	m->quota_bytes = rd_u64(&r);
	m->used_bytes = rd_u64(&r);
	m->quota_msgs = rd_u64(&r);
	m->used_msgs = rd_u64(&r);
	m->max_body = rd_u64(&r);
	m->name_max = rd_u32(&r);
	return rd_end(&r);
}

int
mst_watch_rep_encode(const struct mst_watch_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->change);
	return wr_end(&w);
}

int
mst_watch_rep_decode(struct mst_watch_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->change = rd_u64(&r);
	return rd_end(&r);
}

int
mst_notify_encode(const struct mst_notify *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->path);
	wr_u8(&w, m->event);
	wr_str(&w, m->name);
	wr_u64(&w, m->id);
	wr_u64(&w, m->change);
	return wr_end(&w);
}

int
mst_notify_decode(struct mst_notify *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->path = rd_str(&r);
	m->event = rd_u8(&r);
	m->name = rd_str(&r);
	m->id = rd_u64(&r);
	m->change = rd_u64(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->path));
		if (m->event < MST_EV_ADD || m->event > MST_EV_RESET)
			rd_fail(&r, -EINVAL);
		else if (m->event != MST_EV_RESET)
			rd_check(&r, mst_name_check(m->name));
		else if (m->name.len != 0)
			rd_fail(&r, -EINVAL);	/* RESET names nothing */
	}
	return rd_end(&r);
}

int
mst_error_rep_encode(const struct mst_error_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	if (m->detail.len > MST_DETAIL_MAX)
		return -ENAMETOOLONG;
	if (m->detail.len)
		wr_str(&w, m->detail);
	return wr_end(&w);
}

int
mst_error_rep_decode(struct mst_error_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->detail.p = "";
	m->detail.len = 0;
	if (len == 0)
		return 0;
	m->detail = rd_str(&r);
	if (!r.err && m->detail.len > MST_DETAIL_MAX)
		rd_fail(&r, -ENAMETOOLONG);
	return rd_end(&r);
}

int
mst_admin_req_encode(const struct mst_admin_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_str(&w, m->cmd);
	wr_str(&w, m->arg);
	return wr_end(&w);
}

int
mst_admin_req_decode(struct mst_admin_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->cmd = rd_str(&r);
	m->arg = rd_str(&r);
	if (!r.err && m->cmd.len == 0)
		rd_fail(&r, -EINVAL);
	return rd_end(&r);
}

int
mst_admin_rep_encode(const struct mst_admin_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u32(&w, m->text.len);
	wr_raw(&w, m->text.p, m->text.len);
	return wr_end(&w);
}

int
mst_admin_rep_decode(struct mst_admin_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->text.len = rd_u32(&r);
	m->text.p = rd_take(&r, m->text.len);
	return rd_end(&r);
}

/*
 * Ordinary files by object id ("Ordinary files"). The id is opaque
 * here: any value may name an object, and the store answers ENOENT for
 * one it does not know.
 */

int
mst_id_req_encode(const struct mst_id_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	return wr_end(&w);
}

int
mst_id_req_decode(struct mst_id_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->id = rd_u64(&r);
	return rd_end(&r);
}

int
mst_read_req_encode(const struct mst_read_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	wr_u64(&w, m->offset);
	wr_u32(&w, m->length);
	return wr_end(&w);
}

int
mst_read_req_decode(struct mst_read_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->id = rd_u64(&r);
	m->offset = rd_u64(&r);
	m->length = rd_u32(&r);
	return rd_end(&r);
}

int
mst_write_req_encode(const struct mst_write_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	wr_u64(&w, m->offset);
	wr_u32(&w, m->flags);
	wr_u64(&w, m->checksum);
	wr_u64(&w, m->body_size);
	wr_raw(&w, m->body.p, m->body.len);
	return wr_end(&w);
}

/* A write that would end past MST_BODY_MAX can never succeed; with
 * MST_WR_APPEND the offset is not used, so only the size is checked. */
int
mst_write_req_decode(struct mst_write_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->id = rd_u64(&r);
	m->offset = rd_u64(&r);
	m->flags = rd_u32(&r);
	m->checksum = rd_u64(&r);
	m->body_size = rd_u64(&r);
	if (!r.err) {
		if (m->flags & ~MST_WR_ALL)
			rd_fail(&r, -EINVAL);
		if (m->body_size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
		else if (!(m->flags & MST_WR_APPEND) &&
		    m->offset > MST_BODY_MAX - m->body_size)
			rd_fail(&r, -EFBIG);
	}
	m->body = rd_rest(&r, m->body_size);
	return rd_end(&r);
}

int
mst_fsetattr_req_encode(const struct mst_fsetattr_req *m, uint8_t *buf,
    size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	wr_u32(&w, m->valid);
	wr_u32(&w, m->mode);
	wr_u32(&w, m->uid);
	wr_u32(&w, m->gid);
	wr_u64(&w, m->size);
	wr_u64(&w, m->mtime_ns);
	wr_u64(&w, m->atime_ns);
	return wr_end(&w);
}

int
mst_fsetattr_req_decode(struct mst_fsetattr_req *m, const uint8_t *p,
    size_t len)
{
	struct rd r = RD(p, len);

	m->id = rd_u64(&r);
	m->valid = rd_u32(&r);
	m->mode = rd_u32(&r);
	m->uid = rd_u32(&r);
	m->gid = rd_u32(&r);
	m->size = rd_u64(&r);
	m->mtime_ns = rd_u64(&r);
	m->atime_ns = rd_u64(&r);
	if (!r.err) {
		if (m->valid & ~MST_FSA_ALL)
			rd_fail(&r, -EINVAL);
		if (m->mode & ~07777u)
			rd_fail(&r, -EINVAL);
		if (m->size > MST_BODY_MAX)
			rd_fail(&r, -EFBIG);
	}
	return rd_end(&r);
}

int
mst_link_req_encode(const struct mst_link_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	wr_str(&w, m->path);
	return wr_end(&w);
}

int
mst_link_req_decode(struct mst_link_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->id = rd_u64(&r);
	m->path = rd_str(&r);
	if (!r.err) {
		rd_check(&r, mst_path_check(m->path));
		if (!r.err && m->path.len == 0)
			rd_fail(&r, -EEXIST);	/* the root always exists */
	}
	return rd_end(&r);
}

static int
lock_type_ok(uint8_t type)
{
	return type >= MST_LK_RD && type <= MST_LK_UN;
}

int
mst_lock_req_encode(const struct mst_lock_req *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u64(&w, m->id);
	wr_u64(&w, m->owner);
	wr_u32(&w, m->pid);
	wr_u8(&w, m->type);
	wr_u8(&w, m->flags);
	wr_u64(&w, m->start);
	wr_u64(&w, m->end);
	return wr_end(&w);
}

/*
 * Flag combinations that ask for two things at once are refused here, so
 * the store sees only meaningful requests: a release never waits and
 * never tests, a test never waits, and a cancel is neither a wait nor a
 * test (it names the waiting request by owner and id).
 */
int
mst_lock_req_decode(struct mst_lock_req *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);
	const unsigned ask = MST_LKF_WAIT | MST_LKF_TEST;

	m->id = rd_u64(&r);
	m->owner = rd_u64(&r);
	m->pid = rd_u32(&r);
	m->type = rd_u8(&r);
	m->flags = rd_u8(&r);
	m->start = rd_u64(&r);
	m->end = rd_u64(&r);
	if (r.err)
		return r.err;
	if (!lock_type_ok(m->type) || (m->flags & ~MST_LKF_ALL) ||
	    m->start > m->end)
		rd_fail(&r, -EINVAL);
	if ((m->flags & ask) == ask)
		rd_fail(&r, -EINVAL);
	if ((m->type == MST_LK_UN || (m->flags & MST_LKF_CANCEL)) &&
	    (m->flags & ask))
		rd_fail(&r, -EINVAL);
	return rd_end(&r);
}

int
mst_lock_rep_encode(const struct mst_lock_rep *m, uint8_t *buf, size_t cap)
{
	struct wr w = WR(buf, cap);

	wr_u8(&w, m->type);
	wr_u32(&w, m->pid);
	wr_u64(&w, m->start);
	wr_u64(&w, m->end);
	return wr_end(&w);
}

int
mst_lock_rep_decode(struct mst_lock_rep *m, const uint8_t *p, size_t len)
{
	struct rd r = RD(p, len);

	m->type = rd_u8(&r);
	m->pid = rd_u32(&r);
	m->start = rd_u64(&r);
	m->end = rd_u64(&r);
	if (!r.err && (!lock_type_ok(m->type) || m->start > m->end))
		rd_fail(&r, -EINVAL);
	return rd_end(&r);
}
