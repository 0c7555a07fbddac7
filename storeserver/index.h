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
 * about 110 bytes per stored message plus its name, which a Maildir
 * name's digits halve (index.c, "The arena" and "Names"; mstored(8)).
 *
 * Ordinary files (MST_T_FILE) are split in two: a name is a struct node
 * like any other entry, and the object its names share (hard links) is a
 * struct fobj holding the attributes, the size and a table of 4 KiB
 * blocks, each a location in the log (a slice of an EXTENT record, or of
 * a first-format whole body) with its own xxh3-64 sum. A write rewrites
 * only the blocks it touches (a partly covered block is merged with its
 * old bytes), so appending n bytes costs the log n + at most 8 KiB plus
 * record headers, whatever the file's size; a read verifies only the
 * blocks it returns. A truncate only cuts the table: |valid| says how
 * much of a block's stored bytes are still inside the file, the rest
 * (and any block never written, a hole) reads as zeros.
 *
 * An fobj lives while it has a name or an OPEN reference (|opens|, kept
 * by the engine, never persisted). One that lost its last name while
 * open is an orphan: reachable by id only until its last CLOSE. Replay
 * runs with no references, so it drops the object at its last UNLINK and
 * ignores the records written for it afterwards (EXTENT, ATTR of an id
 * below next_id that is not there).
 *
 * Ids: next_id counts up from 2 and is never reused. Ids from
 * INDEX_ID_LIMIT (2^56, ENG_ID_LOCAL_MIN in engine.h) up belong to the
 * mount's local tmp files: the engine refuses to hand them out (ENOSPC)
 * and replay refuses records that carry them.
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
/* Segment numbers stay below this (16 Mi segments, far more than a store
 * of any size makes at the default segment_size); larger ones in a
 * checkpoint or record are damage. */
#define INDEX_SEG_MAX	(1u << 24)
#define INDEX_TOMBS	512u	/* removals remembered per directory */
#define INDEX_ID_LIMIT	((uint64_t)1 << 56)	/* = ENG_ID_LOCAL_MIN */

struct mbox {
	struct mbox *next;	/* hash chain */
	uint32_t no;		/* ix->mbv[no] is this one */
	uint16_t len;		/* of |name|: no strlen per lookup */
	uint64_t bytes, msgs;
	uint64_t quota_bytes, quota_msgs;	/* 0: no limit */
	uint32_t ckpt_idx;	/* position in the checkpoint being written */
	char name[];
};

/* A removal remembered for LIST deltas: 48 bytes, its name (in the
 * node's form: index.c, "Names") inside when that takes at most
 * INDEX_TOMB_IN bytes, else in a malloc'd copy whose address |in|
 * holds. Read the name with index_tomb_name(). */
#define INDEX_TOMB_IN	28
struct tomb {
	uint64_t id;
	uint64_t change;	/* 0: an empty slot */
	uint8_t type;
	uint8_t packed;
	uint8_t heap;
	uint8_t len;		/* bytes of the name's form */
	char in[INDEX_TOMB_IN];
};

struct dirx {
	struct dirx *all_prev, *all_next;	/* ix->dirs */
	int64_t atime_ns;	/* the directory's */
	struct node *first;	/* children, newest first */
	uint64_t nchildren;
	uint64_t nsubdirs;	/* children that are directories */
	struct tomb *tombs;	/* ring of INDEX_TOMBS, allocated on use */
	unsigned tomb_next;
	uint64_t tomb_floor;	/* deltas since < floor need a full list */
};

/* One block of a file. len 0: a hole (reads as zeros). */
struct fblk {
	uint64_t off;		/* of its bytes in segment |seg| */
	uint64_t sum;		/* xxh3-64 of the |len| stored bytes */
	uint32_t seg;
	uint16_t len;		/* stored bytes */
	uint16_t valid;		/* of them inside the file (<= len) */
};

/* An ordinary file's object, shared by its names. */
struct fobj {
	struct fobj *next;	/* id hash chain */
	struct node *names;	/* its names, linked by node->link_next */
	uint64_t id;
	uint64_t size;
	uint64_t change;	/* lsn of the last change to it */
	int64_t mtime_ns, ctime_ns, atime_ns;
	uint32_t mode, uid, gid;
	uint32_t nlink;		/* names */
	uint32_t opens;		/* OPEN references; never persisted */
	uint64_t nblk;		/* entries in |blk|; those past the size's
				   last block are holes */
	struct fblk *blk;
	uint64_t ckpt_mark;	/* checkpoint that saved it already */
};

/*
 * A node lives in its index's arena (index.c), and is packed to what a
 * message needs in memory for a lookup or an attribute without I/O:
 *  - links to other nodes are 32-bit: the hash chains hold handles
 *    (offsets in the arena in 8-byte units), parent and siblings the
 *    signed distance to the node linked, in the same units (0: none);
 *    read them with index_parent() and index_next();
 *  - mode, uid and gid are one number in the index's table of distinct
 *    triples (|acl|), and the mailbox one in its table of mailboxes
 *    (index_msg_mbox());
 *  - a message's atime is its mtime unless |own_atime|: then it is kept
 *    in a side table of the index (a directory's is in its dirx);
 *  - a size below 2^40 (bodies are at most MST_BODY_MAX), a segment
 *    below INDEX_SEG_MAX, an offset below 2^48, a name of at most
 *    MST_NAME_MAX bytes;
 *  - a name mostly of digits (as Maildir names are) is packed in 4-bit
 *    codes (index.c, "Names"): read it with index_name().
 * index_attr() puts the attributes together again. A node finds its
 * index through the arena's alignment (index.c, "The arena"). Before
 * the arena a message cost about 260 bytes of memory with a 30-byte
 * Maildir name, 168 bytes with the arena, 120 now; see index.c.
 */
struct node {
	int32_t parent_d;	/* distance to the parent */
	int32_t prev_d, next_d;	/* to the siblings (children: newest
				   first) */
	uint32_t pn_next;	/* (parent, name) hash chain */
	uint32_t id_next;	/* id hash chain */
	uint32_t idem_next;	/* idempotency hash chain (messages) */
	uint32_t acl;		/* mode, uid, gid: index.c, acl_get() */
	uint32_t mbox;		/* MST_T_MSG: number of its mailbox */
	uint64_t id;		/* a file's name: its object's id */
	/* The rest but the name is unused in a file's name: see x.file. */
	uint64_t change;	/* lsn of the last change to it */
	uint64_t checksum;	/* body */
	uint64_t size : 40;
	uint64_t seg : 24;	/* the body's segment */
	uint64_t off : 48;	/* body offset in segment |seg| */
	uint64_t type : 6;	/* MST_T_* */
	uint64_t own_atime : 1;	/* a message's atime is not its mtime */
	uint64_t packed : 1;	/* |nm| holds 4-bit codes */
	uint64_t nmlen : 8;	/* bytes in |nm| */
	int64_t mtime_ns;
	int64_t ctime_ns;
	union {
		uint8_t idem[MST_IDEM_LEN];	/* MST_T_MSG */
		struct {
			union {
				struct dirx *dir;	/* MST_T_DIR */
				struct fobj *file;	/* MST_T_FILE */
			} x;
			struct node *link_next;	/* MST_T_FILE: other names
						   of the same file */
		};
	};
	char nm[];		/* the name, as index_name() reads it */
};

/* The node |d| units of 8 bytes away from |n|, or NULL for 0. */
static inline struct node *
index_link(const struct node *n, int32_t d)
{
	return d ? (struct node *)((uintptr_t)n + (uintptr_t)(intptr_t)d *
	    8u) : NULL;
}

/* The directory |n| is in (NULL: the root). */
static inline struct node *
index_parent(const struct node *n)
{
	return index_link(n, n->parent_d);
}

/* The directory |n| is in, or the root itself for the root. */
static inline struct node *
index_dir_of(const struct node *n)
{
	return n->parent_d ? index_parent(n) : (struct node *)n;
}

/* The next (older) entry of the same directory, or NULL. */
static inline struct node *
index_next(const struct node *n)
{
	return index_link(n, n->next_d);
}

/* A chained hash table of node handles; up to 4 entries a bucket. */
struct htab {
	uint32_t *b;
	size_t nb;		/* buckets (any number: index.c) */
	size_t n;
};

#define INDEX_ARENA_CLASSES 64	/* node sizes, in 8-byte units */
#define INDEX_PEND	16	/* inserts in flight while loading */

struct spent;
struct index_prefault;

struct index {
	char *arena;		/* nodes; see index.c */
	size_t arena_cap;	/* bytes reserved */
	uint64_t arena_top;	/* 8-byte units handed out so far */
	uint32_t arena_free[INDEX_ARENA_CLASSES];	/* freed, by size */
	struct dirx *dirs;	/* every directory's dirx */
	int loading;		/* index_load runs: skip its own checks */
	struct index_prefault *prefault;	/* after a load (index.c) */
	struct node *last_new;	/* made by the last CREATE or NEW */
	struct node *load_dir;	/* while loading: the parent of the next */
	struct index_pend {	/* while loading: inserts not done yet */
		struct htab *t;
		struct node *n;
		size_t off;
		uint64_t hash;
	} pend[INDEX_PEND];
	unsigned pend_head, npend;
	struct htab by_name, by_id, by_idem;	/* by_id: no file names */
	struct fobj **files;	/* hash of file objects by id */
	size_t file_mask, nfiles;
	uint64_t orphans;	/* file objects with no name left */
	uint64_t ckpt_gen;	/* checkpoints written (fobj->ckpt_mark) */
	struct mbox **mboxes;	/* hash of mailboxes */
	size_t mbox_mask, nmbox;
	struct mbox **mbv;	/* mailboxes by number (node->mbox) */
	uint32_t *mbv_free;	/* numbers free for reuse, a stack */
	uint32_t mbv_cap, mbv_top, nmbv_free;
	struct index_acl {	/* a (mode, uid, gid) of nodes (node->acl) */
		uint32_t mode, uid, gid;
		uint32_t refs;	/* nodes holding it; 0: free */
		uint32_t next;	/* hash chain, or free list: number + 1 */
	} *acls;
	uint32_t *acl_b;	/* hash buckets: number + 1, 0 ends */
	uint32_t acl_mask, acl_cap, acl_top, acl_free;
	struct index_atime {	/* a message's own atime (node->own_atime) */
		struct index_atime *next;
		uint64_t id;
		int64_t atime_ns;
	} **atimes;		/* hash by id */
	size_t atime_mask, natimes;
	struct node *root;
	uint64_t next_id;
	uint64_t lsn;		/* of the last applied record */
	uint64_t nodes, msgs, bytes;
	uint64_t *seg_live;	/* live body bytes per segment number */
	uint32_t nseg_live;
	uint64_t quota_bytes, quota_msgs;	/* defaults for new mailboxes */
	struct spent *spent;	/* ids of delivered messages gone since
				   (spent.h); saved by the checkpoint */
};

struct index *index_new(uint64_t quota_bytes, uint64_t quota_msgs);
void index_free(struct index *ix);
/* Size the hash tables for |nodes| entries at once (loading a
 * checkpoint), instead of doubling them about log2(nodes / 1024) times
 * on the way; on failure they still grow as needed. */
void index_reserve(struct index *ix, uint64_t nodes);
/* Loading a checkpoint of |nodes| nodes: index_reserve and skip the
 * index's own checks (ix->loading). index_load_prefault: fault in the
 * arena for |nodes| more nodes on another thread meanwhile (index.c,
 * "Faulting in a loaded arena"); call it only with a count the
 * checkpoint's sum has vouched for, or one its file's size bounds.
 * index_load_end() flushes the delayed inserts and ends the loading.
 * index_settle(), once the log is replayed too: the loaded arena gets
 * its 2 MiB pages back in the background, until done or index_free. */
void index_load_begin(struct index *ix, uint64_t nodes);
void index_load_prefault(struct index *ix, uint64_t nodes);
void index_load_end(struct index *ix);
void index_settle(struct index *ix);

/* The name of |n|: its bytes in the node, or unpacked into |buf| (room
 * for MST_NAME_MAX bytes). */
struct mst_str index_name(const struct node *n, char *buf);
/* The same for a tombstone. */
struct mst_str index_tomb_name(const struct tomb *t, char *buf);
/* The same copied into |buf| (room for MST_NAME_MAX + 1 bytes) and
 * ended by a NUL: its length. */
size_t index_name_copy(const struct node *n, char *buf);

/* A directory or message by id (never a file: index_find_file). */
struct node *index_find_id(const struct index *ix, uint64_t id);
struct fobj *index_find_file(const struct index *ix, uint64_t id);
/* Change counter of an entry (a file name: its object's). */
uint64_t index_change(const struct node *n);
/* A message's mailbox. */
struct mbox *index_msg_mbox(const struct node *n);
/* Set the atime of a directory or message (checkpoint loading): 0 or
 * -ENOMEM. */
int index_set_atime(struct index *ix, struct node *n, int64_t atime_ns);
/* The bytes the index holds in memory: its arena as far as handed out,
 * hash tables and the tables beside them (not file objects' blocks). */
uint64_t index_bytes(const struct index *ix);
/* Attributes of an entry, or of a file object. */
void index_attr(const struct node *n, struct mst_attr *a);
void index_fattr(const struct fobj *f, struct mst_attr *a);
/* Drop |n| OPEN references: frees an orphan at its last. */
void index_file_put(struct index *ix, struct fobj *f, uint32_t n);
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
/* Forget every mailbox record that holds no message and only the default
 * quota (a checkpoint written before such records were dropped as they
 * emptied may carry them). */
void index_mbox_sweep(struct index *ix);

/*
 * Apply one record. |seg| and |body_off| locate the record's body in the
 * log and |body| is its bytes (all three ignored for records without
 * one). Returns 0, -ENOMEM, or -EBADMSG when the record contradicts the
 * index (a damaged log).
 */
int index_apply(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off, const uint8_t *body);

/* Checkpoint loading: another name |name| in |dir| for |f| (no times
 * touched), and a block of |f|. 0 or -ENOMEM / -EBADMSG. While
 * ix->loading, hash inserts are delayed (index.c): index_load_flush()
 * does them, and must come before any lookup. */
void index_load_flush(struct index *ix);
int index_load_link(struct index *ix, struct fobj *f, struct node *dir,
    struct mst_str name);
int index_load_block(struct index *ix, struct fobj *f, uint64_t i,
    const struct fblk *b);

/* Account live bytes of a segment (used by apply and compaction). */
uint64_t index_seg_live(const struct index *ix, uint32_t seg);

/*
 * Checkpoint: write the whole index to |fd| with the replay position;
 * load it back. Return 0 or a negative errno (-EBADMSG for a damaged
 * file).
 */
int index_save(struct index *ix, int fd, uint32_t seg, uint64_t off);
/*
 * The same in two steps, for a child forked to write it: the saver (its
 * 1 MiB buffer) is made before the fork, and running it then allocates
 * nothing and takes no lock. Every |sync_every| bytes (0: never) it
 * waits for what it wrote to be on the disk. The file is not synced.
 */
struct index_saver;
struct index_saver *index_saver_new(void);
void index_saver_free(struct index_saver *s);
int index_saver_run(struct index_saver *s, struct index *ix, int fd,
    uint32_t seg, uint64_t off, uint64_t sync_every);
/* Reads |len| bytes at |off| of segment |seg| (first-format checkpoints
 * only): 0 or a negative errno. */
typedef int index_body_fn(void *arg, uint32_t seg, uint64_t off, void *buf,
    size_t len);
int index_load(struct index *ix, int fd, index_body_fn *body, void *body_arg,
    uint32_t *seg_out, uint64_t *off_out);

#endif /* MST_INDEX_H */
