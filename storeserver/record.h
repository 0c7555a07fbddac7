/*
 * record.h - log record codec of the local storage engine. Pure: no I/O.
 *
 * A record is a 32-byte header and a payload:
 *
 *   0       4      5     8       12      16          24          32
 *   +-------+------+-----+-------+-------+-----------+-----------+
 *   | magic | type | pad | len   | pad   | lsn       | checksum  |
 *   +-------+------+-----+-------+-------+-----------+-----------+
 *
 * checksum = xxh3-64 of header bytes 0..23 followed by the payload, so a
 * torn or damaged record (header or payload) never validates. The payload
 * starts with fixed fields (big-endian, strings as u16 length + bytes);
 * records that carry a body (CREATE of a message or file, DATA, RELOCATE,
 * EXTENT) end with it, so the body's file offset is the record offset +
 * 32 + len - size.
 *
 * EXTENT carries |nblk| consecutive 4 KiB blocks of an ordinary file
 * from block |first|: its body is nblk u64 xxh3-64 sums (one per block),
 * then the blocks' bytes, all REC_BLOCK long except the last (1..4096).
 * The per-block sums let a READ verify just the blocks it returns.
 *
 * Record types 1-6 are the first format and are still replayed; the
 * writer no longer emits CREATE, DATA, RELOCATE of files, MOVE, REMOVE
 * or SETATTR: NEW (CREATE with the entry's own mtime apart from the
 * clock, which its parent gets), EXTENT, ATTR, LINK, UNLINK and RENAME
 * name everything their replay needs, including the writer's clock
 * (|mtime_ns| is "now" in them), so times replay identically.
 *
 * MARK (13) opens every batch written into a pre-written segment (one
 * made at full length ahead of need, eng_store.c): |synced| is how many
 * bytes of that segment were durable (fdatasync'd) when the batch was
 * written. Such a segment's log ends at its first invalid record, and
 * after a crash its unsynced tail may hold any mix of old and new
 * blocks; replay cuts a damaged record followed by valid ones as torn
 * only when no MARK after it says that it had been synced. A MARK
 * changes nothing in the index and has lsn 0; binaries older than it
 * stop at it as at a damaged record.
 */
#ifndef MST_RECORD_H
#define MST_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

#define REC_MAGIC	0x4d535231u	/* "MSR1" */
#define REC_HDR_LEN	32u
#define REC_FIXED_MAX	(64u + 2 * (2 + MST_PATH_MAX) + MST_IDEM_LEN)

enum rec_type {
	REC_CREATE = 1,		/* new node: dir, file or message */
	REC_DATA = 2,		/* replace a file's contents */
	REC_MOVE = 3,		/* rename, possibly replacing a target */
	REC_REMOVE = 4,		/* unlink, rmdir, expunge */
	REC_SETATTR = 5,	/* mode, owner, mtime */
	REC_RELOCATE = 6,	/* compaction moved a body here */
	REC_EXTENT = 7,		/* file blocks written (or relocated) */
	REC_ATTR = 8,		/* attributes incl. size and atime */
	REC_LINK = 9,		/* another name for a file */
	REC_UNLINK = 10,	/* one name goes (unlink, rmdir, expunge) */
	REC_RENAME = 11,	/* one name moves, possibly over a target */
	REC_NEW = 12,		/* CREATE + the entry's own mtime */
	REC_MARK = 13,		/* a batch in a pre-written segment */
};

#define REC_MARK_LEN	(REC_HDR_LEN + 16u)	/* a whole MARK record */

#define REC_BLOCK	4096u	/* file block size */
#define REC_EXT_MAX	256u	/* blocks per EXTENT record */
#define REC_EXT_RELOC	0x01u	/* EXTENT flag: compaction moved them */

struct rec {
	uint8_t type;
	uint64_t lsn;
	uint64_t id;
	uint64_t parent;	/* CREATE, MOVE, LINK, UNLINK, RENAME: the
				   (new) parent */
	uint64_t from_parent;	/* RENAME: where the name was */
	struct mst_str from_name;	/* RENAME */
	uint64_t replaced;	/* MOVE: id of the node it replaced, or 0 */
	int64_t mtime_ns;	/* the writer's clock (see above) */
	int64_t set_mtime_ns;	/* ATTR with MST_SA_MTIME; NEW: the entry's
				   mtime (0: |mtime_ns|) */
	int64_t set_atime_ns;	/* ATTR with MST_SA_ATIME */
	uint64_t fsize;		/* ATTR with MST_SA_SIZE; EXTENT: file size
				   after it */
	uint64_t first;		/* EXTENT: first block number */
	uint64_t synced;	/* MARK: segment bytes durable then */
	uint32_t nblk;		/* EXTENT: blocks */
	uint32_t flags;		/* EXTENT: REC_EXT_* */
	uint8_t ntype;		/* CREATE: MST_T_* */
	uint32_t valid;		/* SETATTR, ATTR: MST_SA_* */
	uint32_t mode, uid, gid;
	struct mst_str name;	/* CREATE, MOVE, LINK, UNLINK, RENAME */
	struct mst_str mailbox;	/* CREATE of a message */
	uint8_t idem[MST_IDEM_LEN];
	uint64_t checksum;	/* of the body */
	uint64_t size;		/* body bytes */
	uint32_t body_off;	/* decode: offset of the body in the payload */
};

/* EXTENT bodies: the sum of block |k| (read or set), and the offset in
 * the body of block |k|'s bytes, with their length in *len_out. */
uint64_t rec_ext_sum(const uint8_t *body, uint32_t k);
void rec_ext_set_sum(uint8_t *body, uint32_t k, uint64_t sum);
uint64_t rec_ext_block(const struct rec *r, uint32_t k, size_t *len_out);

/* Does a record of |type| (and node type) carry a body? */
int rec_has_body(const struct rec *r);

/*
 * Encode the header and fixed fields of |r| into |buf| (REC_HDR_LEN +
 * REC_FIXED_MAX bytes) for a body of r->size bytes at |body| (NULL when
 * the record has none). Returns the bytes written to |buf| (header +
 * fixed part); the body goes to the log right after them.
 */
int rec_encode(const struct rec *r, const void *body, uint8_t *buf,
    size_t cap);

/*
 * Check a header: returns the payload length, or -EBADMSG for a bad
 * magic/type/length. |max_len| bounds the payload.
 */
int rec_hdr_decode(struct rec *r, const uint8_t hdr[REC_HDR_LEN],
    uint64_t max_len, uint64_t *sum_out);
/* Verify the checksum of header + payload. 1 if it matches. */
int rec_verify(const uint8_t hdr[REC_HDR_LEN], const uint8_t *payload,
    size_t len, uint64_t sum);
/* Decode the payload fields into |r| (views into |payload|). 0 or
 * -EBADMSG. */
int rec_decode(struct rec *r, const uint8_t *payload, size_t len);

#endif /* MST_RECORD_H */
