/*
 * frame.c - frame header codec, opcode names and the status <-> errno
 * table. Owns the header byte layout (mstore-protocol(7), "Frames" and
 * "Status codes"). Never reads past |len|; never allocates.
 *
 *   0      2       3    4       6        8           12          16
 *   +------+-------+----+-------+--------+-----------+-----------+
 *   |magic |version| op | flags | status | request id| length    |
 *   +------+-------+----+-------+--------+-----------+-----------+
 */
#include <errno.h>
#include <limits.h>

#include "mstproto.h"
#include "wire.h"

static const char *const op_names[256] = {
	[MST_OP_HELLO] = "HELLO",
	[MST_OP_AUTH] = "AUTH",
	[MST_OP_PING] = "PING",
	[MST_OP_DATA] = "DATA",
	[MST_OP_DELIVER] = "DELIVER",
	[MST_OP_LIST] = "LIST",
	[MST_OP_STAT] = "STAT",
	[MST_OP_FETCH] = "FETCH",
	[MST_OP_SETINFO] = "SETINFO",
	[MST_OP_EXPUNGE] = "EXPUNGE",
	[MST_OP_STAGE] = "STAGE",
	[MST_OP_COMMIT] = "COMMIT",
	[MST_OP_SPOOL] = "SPOOL",
	[MST_OP_LOOKUP] = "LOOKUP",
	[MST_OP_MKDIR] = "MKDIR",
	[MST_OP_RMDIR] = "RMDIR",
	[MST_OP_READDIR] = "READDIR",
	[MST_OP_PUT] = "PUT",
	[MST_OP_GET] = "GET",
	[MST_OP_RENAME] = "RENAME",
	[MST_OP_UNLINK] = "UNLINK",
	[MST_OP_SETATTR] = "SETATTR",
	[MST_OP_STATFS] = "STATFS",
	[MST_OP_WATCH] = "WATCH",
	[MST_OP_UNWATCH] = "UNWATCH",
	[MST_OP_NOTIFY] = "NOTIFY",
	[MST_OP_ADMIN] = "ADMIN",
	[MST_OP_GETATTR] = "GETATTR",
	[MST_OP_OPEN] = "OPEN",
	[MST_OP_CLOSE] = "CLOSE",
	[MST_OP_READ] = "READ",
	[MST_OP_WRITE] = "WRITE",
	[MST_OP_FSETATTR] = "FSETATTR",
	[MST_OP_LINK] = "LINK",
	[MST_OP_LOCK] = "LOCK",
};

const char *
mst_op_name(unsigned op)
{
	return op < 256 ? op_names[op] : NULL;
}

int
mst_hdr_encode(const struct mst_hdr *h, uint8_t *buf, size_t cap)
{
	struct wr w = { buf, cap, 0, 0 };

	wr_u16(&w, MST_MAGIC);
	wr_u8(&w, h->version);
	wr_u8(&w, h->op);
	wr_u16(&w, h->flags);
	wr_u16(&w, h->status);
	wr_u32(&w, h->id);
	wr_u32(&w, h->len);
	return wr_end(&w);
}

int
mst_hdr_decode(struct mst_hdr *h, const uint8_t *p, size_t len,
    uint32_t max_frame)
{
	struct rd r = { p, MST_HDR_LEN, 0, 0 };

	if (len < MST_HDR_LEN)
		return 0;			/* incomplete: need more bytes */
	if (rd_u16(&r) != MST_MAGIC)
		return -EPROTO;
	h->version = rd_u8(&r);
	h->op = rd_u8(&r);
	h->flags = rd_u16(&r);
	h->status = rd_u16(&r);
	h->id = rd_u32(&r);
	h->len = rd_u32(&r);
	if (h->version != MST_VERSION)
		return -EPROTONOSUPPORT;
	if (h->flags & ~MST_F_ALL)
		return -EPROTO;
	if (h->len > max_frame)
		return -EMSGSIZE;
	if (mst_op_name(h->op) == NULL)
		return -EOPNOTSUPP;
	return MST_HDR_LEN;
}

/* Wire status values are Linux errno numbers; this table makes the
 * mapping explicit so that a host with other numbering still agrees. */
static const struct {
	unsigned status;
	int err;
} status_map[] = {
	{ MST_S_EPERM, EPERM },
	{ MST_S_ENOENT, ENOENT },
	{ MST_S_EINTR, EINTR },
	{ MST_S_EIO, EIO },
	{ MST_S_E2BIG, E2BIG },
	{ MST_S_EBADF, EBADF },
	{ MST_S_EAGAIN, EAGAIN },
	{ MST_S_ENOMEM, ENOMEM },
	{ MST_S_EACCES, EACCES },
	{ MST_S_EBUSY, EBUSY },
	{ MST_S_EEXIST, EEXIST },
	{ MST_S_EXDEV, EXDEV },
	{ MST_S_ENOTDIR, ENOTDIR },
	{ MST_S_EISDIR, EISDIR },
	{ MST_S_EINVAL, EINVAL },
	{ MST_S_EFBIG, EFBIG },
	{ MST_S_ENOSPC, ENOSPC },
	{ MST_S_EROFS, EROFS },
	{ MST_S_EMLINK, EMLINK },
	{ MST_S_ERANGE, ERANGE },
	{ MST_S_EDEADLK, EDEADLK },
	{ MST_S_ENAMETOOLONG, ENAMETOOLONG },
	{ MST_S_ENOLCK, ENOLCK },
	{ MST_S_ENOTEMPTY, ENOTEMPTY },
	{ MST_S_ELOOP, ELOOP },
	{ MST_S_ENODATA, ENODATA },
	{ MST_S_EPROTO, EPROTO },
	{ MST_S_EBADMSG, EBADMSG },
	{ MST_S_EOVERFLOW, EOVERFLOW },
	{ MST_S_EMSGSIZE, EMSGSIZE },
	{ MST_S_EPROTONOSUPPORT, EPROTONOSUPPORT },
	{ MST_S_EOPNOTSUPP, EOPNOTSUPP },
	{ MST_S_ETIMEDOUT, ETIMEDOUT },
	{ MST_S_ESTALE, ESTALE },
	{ MST_S_EDQUOT, EDQUOT },
	{ MST_S_ECANCELED, ECANCELED },
};

int
mst_status_to_errno(unsigned status)
{
	size_t i;

	if (status == MST_S_OK)
		return 0;
	for (i = 0; i < sizeof status_map / sizeof status_map[0]; i++)
		if (status_map[i].status == status)
			return status_map[i].err;
	return EIO;
}

unsigned
mst_errno_to_status(int err)
{
	size_t i;

	if (err == INT_MIN)
		return MST_S_EIO;	/* no errno; and -INT_MIN overflows */
	if (err < 0)
		err = -err;
	if (err == 0)
		return MST_S_OK;
	for (i = 0; i < sizeof status_map / sizeof status_map[0]; i++)
		if (status_map[i].err == err)
			return status_map[i].status;
	return MST_S_EIO;
}
