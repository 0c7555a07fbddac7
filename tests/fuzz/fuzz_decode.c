/*
 * fuzz_decode.c - libFuzzer harness for libmstproto's decoders. The
 * first input byte selects the frame header, a bare run of LIST entries
 * or one payload layout (codecs.h, "Fuzz input"); the rest is decoded.
 * Every decoder must either fail with an error mstproto.h documents for
 * it, or succeed with a result that re-encodes to the same bytes and
 * decodes again to the same fields; anything else aborts, and so does
 * any read outside the input (ASan) or undefined behaviour (UBSan).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codecs.h"
#include "mstproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Header limits worth reaching: the smallest, the default and the
 * largest negotiable frame, picked by the selector's high bits so the
 * corpus stays valid. */
static uint32_t
max_frame_of(unsigned sel)
{
	static const uint32_t limits[] = { MST_FRAME_DEFAULT, MST_FRAME_MIN,
		MST_FRAME_LIMIT, 0 };

	return limits[(sel / codecs_nsel()) % 4];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[512];
	unsigned raw, sel;
	int rc, bad;

	if (size == 0)
		return 0;
	raw = data[0];
	sel = raw % codecs_nsel();
	data++;
	size--;
	if (sel == CODECS_SEL_HDR)
		bad = codecs_check_hdr(data, size, max_frame_of(raw), &rc, why,
		    sizeof why);
	else if (sel == CODECS_SEL_ENTRIES)
		bad = codecs_check_entries(data, size, &rc, why, sizeof why);
	else
		bad = codecs_check_decode(&codecs[sel - CODECS_SEL_FIRST], data,
		    size, &rc, why, sizeof why);
	if (bad) {
		fprintf(stderr, "fuzz_decode: %s\n", why);
		abort();
	}
	return 0;
}
