/*
 * codecs.h - one row per libmstproto payload layout, for the tests: the
 * encode/decode pair, a fixed valid sample, field-by-field equality and
 * the decoder contract check. Shared by check_proto, the fuzzer and the
 * corpus generator so that all three agree on what "correct" means.
 */
#ifndef CODECS_H
#define CODECS_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

union codecs_msg {
	struct mst_hello_req hello_req;
	struct mst_hello_rep hello_rep;
	struct mst_auth auth;
	struct mst_ping ping;
	struct mst_deliver_req deliver_req;
	struct mst_attr_rep attr_rep;
	struct mst_list_req list_req;
	struct mst_list_rep list_rep;
	struct mst_msg_ref msg_ref;
	struct mst_fetch_req fetch_req;
	struct mst_data_rep data_rep;
	struct mst_setinfo_req setinfo_req;
	struct mst_change_rep change_rep;
	struct mst_path_req path_req;
	struct mst_mkdir_req mkdir_req;
	struct mst_put_req put_req;
	struct mst_get_req get_req;
	struct mst_rename_req rename_req;
	struct mst_setattr_req setattr_req;
	struct mst_statfs_rep statfs_rep;
	struct mst_watch_rep watch_rep;
	struct mst_notify notify;
	struct mst_error_rep error_rep;
	struct mst_admin_req admin_req;
	struct mst_admin_rep admin_rep;
	struct mst_id_req id_req;
	struct mst_read_req read_req;
	struct mst_write_req write_req;
	struct mst_fsetattr_req fsetattr_req;
	struct mst_link_req link_req;
	struct mst_lock_req lock_req;
	struct mst_lock_rep lock_rep;
	struct mst_stage_req stage_req;
	struct mst_commit_req commit_req;
	struct mst_spool_req spool_req;
};

struct codecs_diff;

/* Row flags. */
#define CODEC_EMPTY_OK	0x1u	/* the empty payload is valid (error_rep) */
#define CODEC_ENTRIES	0x2u	/* ends in a counted run of LIST entries */

struct codec {
	const char *name;	/* "deliver_req": mst_<name>_encode/decode */
	unsigned flags;		/* CODEC_* */
	int extra_err;		/* a decoder error beyond the common list */
	int (*encode)(const union codecs_msg *m, uint8_t *buf, size_t cap);
	int (*decode)(union codecs_msg *m, const uint8_t *p, size_t len);
	void (*sample)(union codecs_msg *m);
	/* Length of the trailing body chunk, NULL when there is none. */
	uint32_t (*chunk_len)(const union codecs_msg *m);
	void (*diff)(struct codecs_diff *d, const union codecs_msg *got,
	    const union codecs_msg *want);
};

/* In mstproto.h order. Append new rows at the end: fuzz selectors and the
 * seed corpus file names are indices into this table. */
extern const struct codec codecs[];
extern const size_t codecs_len;

/* The row named |name|, or NULL. */
const struct codec *codecs_find(const char *name);

/*
 * Fuzz input = selector byte + payload. The selector, modulo
 * codecs_nsel(), picks the frame header, a bare run of LIST entries, or
 * codecs[sel - CODECS_SEL_FIRST].
 */
#define CODECS_SEL_HDR		0u
#define CODECS_SEL_ENTRIES	1u
#define CODECS_SEL_FIRST	2u
unsigned codecs_nsel(void);

/* Whether |rc| is a result the decoder of |c| may return (0 or an error
 * documented in mstproto.h). */
int codecs_error_ok(const struct codec *c, int rc);

/* Field-by-field equality. Return 1 when equal; else 0 with
 * "field: got X, want Y" in |why|. */
int codecs_eq(const struct codec *c, const union codecs_msg *got,
    const union codecs_msg *want, char *why, size_t cap);
int codecs_entry_eq(const struct mst_list_entry *got,
    const struct mst_list_entry *want, char *why, size_t cap);

/*
 * Decoder contracts. Each decodes |p|[0..|len|) and checks that the
 * decoder either fails with an error documented for it, or succeeds and
 * the result re-encodes to the same bytes and decodes again to the same
 * fields. Return 0 when the contract holds, -1 with the reason in |why|.
 * |rc_out| (may be NULL) receives the decoder's return value.
 */
int codecs_check_decode(const struct codec *c, const uint8_t *p, size_t len,
    int *rc_out, char *why, size_t cap);
int codecs_check_hdr(const uint8_t *p, size_t len, uint32_t max_frame,
    int *rc_out, char *why, size_t cap);
/* Walks |p| as the entries of a LIST reply; *rc_out is the last
 * mst_list_entry_next result (0 at a clean end). */
int codecs_check_entries(const uint8_t *p, size_t len, int *rc_out,
    char *why, size_t cap);

/* "-EBADMSG" for a negative errno a codec may return, "0", or "other". */
const char *codecs_errname(int rc);

#endif /* CODECS_H */
