/*
 * mstreader.h - the incremental frame reader: bytes as they arrive from
 * a stream (any split), whole frames out. Pure: no I/O, no threads.
 */
#ifndef MST_READER_H
#define MST_READER_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

struct mst_reader {
	uint8_t hb[MST_HDR_LEN];	/* header bytes gathered so far */
	size_t hhave;
	struct mst_hdr h;
	uint8_t *pay;		/* h.len bytes once the header is complete */
	size_t phave;
};

/* Zero-initialised (or after mst_reader_reset) the reader is empty. */

/*
 * Take bytes from |p| (|len| > 0) until one frame is whole or |p| is
 * used up; *used says how many were taken. Returns 1 with the frame's
 * header in *h and its payload in *pay (malloc'd, the caller frees it;
 * never NULL, even for an empty payload), 0 when more bytes are needed
 * (all of |p| was taken), or a negative errno: mst_hdr_decode's against
 * |max_frame|, or -ENOMEM. After an error the stream is unusable.
 */
int mst_reader_feed(struct mst_reader *r, uint32_t max_frame,
    const uint8_t *p, size_t len, size_t *used, struct mst_hdr *h,
    uint8_t **pay);
/* Drop a partly read frame; the reader is empty again. */
void mst_reader_reset(struct mst_reader *r);

#endif /* MST_READER_H */
