/*
 * checkpoint.h - incremental checkpoints of the index (checkpoint.c;
 * the layout is drawn there and in mstored(8), "Checkpoints").
 *
 * A checkpoint in parts is a manifest ("MSCKPT04", the engine keeps it
 * where a whole-index checkpoint was kept) holding the replay position,
 * next_id, every directory, and a table of parts; each part is a file of
 * its own holding the messages and ordinary files whose ids fall in one
 * range of |per| ids (a shard), or the spent idempotency ids. A
 * checkpoint writes only the parts whose shard changed since the file
 * the last manifest names was written, and names the others' files
 * again: a shard with no change since holds the same nodes at the new
 * position as at its own, so every part named describes the index at
 * the manifest's position, and replay starts there as before.
 *
 * Saving allocates nothing once index_saver_reserve() has run (it runs
 * in a forked child); loading checks each part against its entry
 * (shard, generation, lsn, node count, size, xxh3-64) and refuses the
 * whole checkpoint on any mismatch (-EBADMSG).
 */
#ifndef MST_CHECKPOINT_H
#define MST_CHECKPOINT_H

#include <stdint.h>

#include "index.h"

#define INDEX_PART_SPENT	0xffffffffu	/* the spent ids' part */
#define INDEX_PART_IDS		16384u		/* ids per shard (default) */
#define INDEX_PART_IDS_MAX	((uint64_t)1 << 32)

/* One part as a manifest names it. */
struct index_part {
	uint32_t shard;		/* ids shard * per up to (shard + 1) * per,
				   or INDEX_PART_SPENT */
	uint64_t gen;		/* checkpoint that wrote it; 0: no file */
	uint64_t lsn;		/* the index's lsn then */
	uint64_t nodes;		/* node records in it */
	uint64_t bytes;		/* file size */
	uint64_t sum;		/* its trailing xxh3-64 */
};

/* What a loaded checkpoint was. */
struct index_ckpt {
	uint64_t gen;		/* 0: a whole-index one (MSCKPT01-03) */
	uint64_t per;
	uint32_t nparts;
	struct index_part *parts;	/* in shard order; caller frees */
};

/* Size the saver's tables for parts of |per| ids of |ix|: 0 or -ENOMEM.
 * Before the fork, with the index as the child will see it. */
int index_saver_reserve(struct index_saver *c, const struct index *ix,
    uint64_t per);
/* Gather shard |shard|'s messages and files: the node records its part
 * would hold (0: write no file). */
uint64_t index_part_collect(struct index_saver *c, struct index *ix,
    uint32_t shard, uint64_t per);
/* Write what index_part_collect gathered (|nodes| as it returned) as
 * generation |gen| of the part to |fd| (not synced); its entry in
 * *out. 0 or a negative errno. */
int index_part_write(struct index_saver *c, struct index *ix, int fd,
    uint32_t shard, uint64_t gen, uint64_t nodes, uint64_t sync_every,
    struct index_part *out);
/* The spent ids' part. */
int index_spent_write(struct index_saver *c, struct index *ix, int fd,
    uint64_t gen, uint64_t sync_every, struct index_part *out);
/* The manifest of generation |gen| naming the |nparts| parts (those with
 * gen 0 are left out), with every directory and the replay position. */
int index_save_manifest(struct index_saver *c, struct index *ix, int fd,
    uint32_t seg, uint64_t off, uint64_t gen, uint64_t per,
    const struct index_part *parts, uint32_t nparts, uint64_t sync_every);

/* Open part |shard| of generation |gen| for reading: a descriptor the
 * loader closes, or a negative errno. */
typedef int index_part_open_fn(void *arg, uint32_t shard, uint64_t gen);
/* index_load() that also loads a manifest and its parts (through
 * |popen|) and says in *out (may be NULL) what it loaded. */
int index_load_ckpt(struct index *ix, int fd, index_body_fn *body,
    void *body_arg, index_part_open_fn *popen, void *parg,
    uint32_t *seg_out, uint64_t *off_out, struct index_ckpt *out);

#endif /* MST_CHECKPOINT_H */
