/*
 * index.h - the in-memory index of the local engine: the namespace tree
 * (directories, small files, messages), lookups by (parent, name), by
 * object id and by idempotency id, per-mailbox usage, per-directory change
 * counters and tombstones for LIST deltas, and live bytes per segment.
 *
 * Why in memory: the index is rebuilt from a checkpoint plus the log tail
 * at start, and every change is applied through index_apply() from the
 * same record that goes to the log, so "rebuilt equals live" holds by
 * construction. Lookups are hash probes with no I/O; the cost is memory,
 * about 230 bytes per stored message plus its name (see mstored(8)).
 *
 * Not thread-safe: the engine guards an index with its rwlock.
 */
#ifndef MST_INDEX_H
#define MST_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"
#include "record.h"

#define INDEX_ROOT_ID	1u
#define INDEX_TOMBS	512u	/* removals remembered per directory */

struct mbox {
	struct mbox *next;	/* hash chain */
	uint64_t bytes, msgs;
	uint64_t quota_bytes, quota_msgs;	/* 0: no limit */
	uint32_t ckpt_idx;	/* position in the checkpoint being written */
	char name[];
};

struct tomb {
	uint64_t id;
	uint64_t change;
	uint8_t type;
	char *name;
};

struct dirx {
	struct node *first;	/* children, newest first */
	uint64_t nchildren;
	struct tomb *tombs;	/* ring of INDEX_TOMBS, allocated on use */
	unsigned tomb_next;
	uint64_t tomb_floor;	/* deltas since < floor need a full list */
};

struct node {
	struct node *pn_next;	/* (parent, name) hash chain */
	struct node *id_next;	/* id hash chain */
	struct node *idem_next;	/* idempotency hash chain (messages) */
	struct node *sib_prev, *sib_next;
	struct node *parent;
	uint64_t id;
	uint64_t change;	/* lsn of the last change to it */
	uint64_t checksum;	/* body */
	uint64_t size;
	uint64_t off;		/* body offset in segment |seg| */
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint32_t mode, uid, gid;
	uint32_t seg;
	uint8_t type;		/* MST_T_* */
	uint16_t namelen;
	union {
		struct dirx *dir;	/* MST_T_DIR */
		struct mbox *mbox;	/* MST_T_MSG */
	} x;
	uint8_t idem[MST_IDEM_LEN];
	char name[];
};

struct htab {
	struct node **b;
	size_t mask;
	size_t n;
};

struct index {
	struct htab by_name, by_id, by_idem;
	struct mbox **mboxes;	/* hash of mailboxes */
	size_t mbox_mask, nmbox;
	struct node *root;
	uint64_t next_id;
	uint64_t lsn;		/* of the last applied record */
	uint64_t nodes, msgs, bytes;
	uint64_t *seg_live;	/* live body bytes per segment number */
	uint32_t nseg_live;
	uint64_t quota_bytes, quota_msgs;	/* defaults for new mailboxes */
};

struct index *index_new(uint64_t quota_bytes, uint64_t quota_msgs);
void index_free(struct index *ix);
/* Size the hash tables for |nodes| entries at once (loading a
 * checkpoint), instead of doubling them about log2(nodes / 1024) times
 * on the way; on failure they still grow as needed. */
void index_reserve(struct index *ix, uint64_t nodes);

struct node *index_find_id(const struct index *ix, uint64_t id);
struct node *index_lookup(const struct index *ix, const struct node *dir,
    const char *name, size_t len);
struct node *index_find_idem(const struct index *ix,
    const uint8_t idem[MST_IDEM_LEN]);
/* Walk |path| from the root: 0 and *out, -ENOENT or -ENOTDIR. */
int index_resolve(const struct index *ix, struct mst_str path,
    struct node **out);
/* Write the path of |n| ("" for the root) into |buf|; its length or
 * -ENAMETOOLONG. */
int index_path(const struct node *n, char *buf, size_t cap);
/* Mailbox usage record, created with the default quota when |create|. */
struct mbox *index_mbox(struct index *ix, struct mst_str name, int create);

/*
 * Apply one record. |seg| and |body_off| locate the record's body in the
 * log (ignored for records without one). Returns 0, -ENOMEM, or -EBADMSG
 * when the record contradicts the index (a damaged log).
 */
int index_apply(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off);

/* Account live bytes of a segment (used by apply and compaction). */
uint64_t index_seg_live(const struct index *ix, uint32_t seg);

/*
 * Checkpoint: write the whole index to |fd| with the replay position;
 * load it back. Return 0 or a negative errno (-EBADMSG for a damaged
 * file).
 */
int index_save(const struct index *ix, int fd, uint32_t seg, uint64_t off);
int index_load(struct index *ix, int fd, uint32_t *seg_out,
    uint64_t *off_out);

#endif /* MST_INDEX_H */
