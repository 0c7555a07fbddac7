/*
 * fuzz_reply.c - libFuzzer harness for what the mount does with the bytes
 * a store server sends: the incremental frame reader fuse-mount/mconn.c
 * uses (mst_reader_feed, protocol/reader.c), fed in reads of a fuzzed
 * size as rx_read does, and for every whole frame
 * the checks and reply decoders the mount applies: the notice checks of
 * rx_notice then mst_notify_decode and notify.c's name rule, and by
 * opcode mst_attr_rep_decode, mst_data_rep_decode with the "want" bound
 * of store_data_reply, mst_list_rep_decode with the mst_list_entry_next
 * loop of folder.c/store.c, mst_change_rep_decode, mst_statfs_rep_decode,
 * mst_watch_rep_decode and mst_lock_rep_decode.
 *
 * Input: byte 0 picks the frame limit, byte 1 the read size (1-256
 * bytes), bytes 2-5 the READ "want" (little-endian), the rest is the
 * stream from the server.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mstproto.h"
#include "mstreader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
	struct mst_reader rd;
	uint32_t max_frame;
	uint32_t want;
};

/* What the mount's consumers rely on once a decoder said yes. */
static void
check_name(struct mst_str s)
{
	if (s.len > MST_NAME_MAX)
		abort();	/* name[MST_NAME_MAX + 1] in folder.c */
}

static void
on_list(const uint8_t *p, size_t len)
{
	struct mst_list_rep lr;
	struct mst_list_entry en;
	char name[MST_NAME_MAX + 1];
	size_t off = 0, prev = 0;
	int rc;

	if (mst_list_rep_decode(&lr, p, len) < 0)
		return;
	while ((rc = mst_list_entry_next(&en, &lr, &off)) == 1) {
		check_name(en.name);
		if (off <= prev || off > lr.entries_len)
			abort();	/* must advance inside the entries */
		prev = off;
		memcpy(name, en.name.p, en.name.len);
		name[en.name.len] = '\0';
	}
}

static void
on_frame(struct rd *r, const struct mst_hdr *h, uint8_t *pay)
{
	union {
		struct mst_notify n;
		struct mst_attr_rep a;
		struct mst_data_rep d;
		struct mst_change_rep c;
		struct mst_statfs_rep s;
		struct mst_watch_rep w;
		struct mst_lock_rep l;
	} u;

	if (h->flags & MST_F_NOTICE) {
		/* rx_notice */
		if (h->id != 0 || h->op != MST_OP_NOTIFY || h->status != 0 ||
		    (h->flags & (MST_F_REPLY | MST_F_MORE)))
			return;
		if (mst_notify_decode(&u.n, pay, h->len) >= 0 &&
		    u.n.name.len <= MST_NAME_MAX) {
			char name[MST_NAME_MAX + 1];	/* notify.c */

			memcpy(name, u.n.name.p, u.n.name.len);
			name[u.n.name.len] = '\0';
		}
		return;
	}
	if (!(h->flags & MST_F_REPLY) || h->id == 0 || h->status != 0)
		return;
	switch (h->op) {
	case MST_OP_GETATTR:
	case MST_OP_LOOKUP:
	case MST_OP_OPEN:
	case MST_OP_WRITE:
	case MST_OP_FSETATTR:
	case MST_OP_LINK:
	case MST_OP_SETATTR:
	case MST_OP_MKDIR:
	case MST_OP_PUT:
		(void)mst_attr_rep_decode(&u.a, pay, h->len);
		break;
	case MST_OP_READ:
	case MST_OP_GET:
	case MST_OP_FETCH:
		if (mst_data_rep_decode(&u.d, pay, h->len) == 0 &&
		    u.d.data.len <= r->want && u.d.data.len > h->len)
			abort();	/* the data must lie in the frame */
		break;
	case MST_OP_READDIR:
	case MST_OP_LIST:
		on_list(pay, h->len);
		break;
	case MST_OP_RENAME:
	case MST_OP_UNLINK:
	case MST_OP_RMDIR:
		(void)mst_change_rep_decode(&u.c, pay, h->len);
		break;
	case MST_OP_STATFS:
		(void)mst_statfs_rep_decode(&u.s, pay, h->len);
		break;
	case MST_OP_WATCH:
		(void)mst_watch_rep_decode(&u.w, pay, h->len);
		break;
	case MST_OP_LOCK:
		(void)mst_lock_rep_decode(&u.l, pay, h->len);
		break;
	}
}

/* rx_consume: one step of the reader, then the frame's handling.
 * Returns the bytes used, or < 0 when the stream breaks the protocol
 * (the mount drops the connection). */
static int
consume(struct rd *r, const uint8_t *buf, size_t len)
{
	struct mst_hdr h;
	size_t used;
	uint8_t *pay;
	int rc;

	rc = mst_reader_feed(&r->rd, r->max_frame, buf, len, &used, &h, &pay);
	if (rc < 0)
		return rc;
	if (used == 0 || used > len)
		abort();	/* the mount's loop needs progress */
	if (rc == 1) {
		if (h.len > r->max_frame || pay == NULL)
			abort();
		on_frame(r, &h, pay);
		free(pay);
	}
	return (int)used;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t limits[] = { MST_FRAME_MIN, MST_FRAME_DEFAULT,
		256, 4096 };
	struct rd r = { .max_frame = 0 };
	size_t chunk, off = 6, end, at;
	int rc = 0;

	if (size < 6)
		return 0;
	r.max_frame = limits[data[0] & 3];
	chunk = (size_t)data[1] + 1;
	r.want = (uint32_t)data[2] | (uint32_t)data[3] << 8 |
	    (uint32_t)data[4] << 16 | (uint32_t)data[5] << 24;
	while (rc >= 0 && off < size) {
		end = off + chunk < size ? off + chunk : size;
		for (at = off; at < end; at += (size_t)rc) {
			rc = consume(&r, data + at, end - at);
			if (rc <= 0)
				break;	/* the mount drops the connection */
		}
		off = end;
	}
	mst_reader_reset(&r.rd);	/* rx_reset */
	return 0;
}
