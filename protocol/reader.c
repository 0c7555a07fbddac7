/*
 * reader.c - the incremental frame reader (mstreader.h): gathers a
 * frame's header across reads, checks it with mst_hdr_decode, then
 * gathers its payload. The mount's connection (fuse-mount/mconn.c)
 * feeds it what the socket gives; tests/fuzz/fuzz_reply feeds it
 * arbitrary bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mstreader.h"

int
mst_reader_feed(struct mst_reader *r, uint32_t max_frame, const uint8_t *p,
    size_t len, size_t *used, struct mst_hdr *h, uint8_t **pay)
{
	size_t n, off = 0;
	int rc;

	*used = 0;
	if (r->hhave < MST_HDR_LEN) {
		n = len;
		if (n > MST_HDR_LEN - r->hhave)
			n = MST_HDR_LEN - r->hhave;
		memcpy(r->hb + r->hhave, p, n);
		r->hhave += n;
		off = n;
		*used = off;
		if (r->hhave < MST_HDR_LEN)
			return 0;
		rc = mst_hdr_decode(&r->h, r->hb, MST_HDR_LEN, max_frame);
		if (rc < 0)
			return rc;
		r->pay = malloc(r->h.len ? r->h.len : 1);
		if (r->pay == NULL)
			return -ENOMEM;
		r->phave = 0;
	}
	n = len - off;
	if (n > r->h.len - r->phave)
		n = r->h.len - r->phave;
	memcpy(r->pay + r->phave, p + off, n);
	r->phave += n;
	off += n;
	*used = off;
	if (r->phave < r->h.len)
		return 0;
	*h = r->h;
	*pay = r->pay;
	r->pay = NULL;
	r->hhave = 0;
	return 1;
}

void
mst_reader_reset(struct mst_reader *r)
{
	free(r->pay);
	r->pay = NULL;
	r->hhave = 0;
}
