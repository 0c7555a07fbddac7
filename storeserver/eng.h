/*
 * eng.h - private to the local engine (engine_local.c, eng_store.c,
 * eng_base.c, eng_ops.c, eng_file.c, eng_admin.c) and to the memory
 * engine (engine_memory.c), which is the same engine with its segments
 * and checkpoint in memory (struct store_media).
 *
 * Threads and locks:
 *  - one writer thread runs every mutation and appends the batch to the
 *    active segment; it alone changes the index, segment table and
 *    lsn; a syncer thread makes the written batches durable with one
 *    fdatasync (group commit) and answers the jobs that waited for it;
 *  - reader threads run lookups, listings and body reads;
 *  - a compactor thread moves live bodies out of sparse segments by
 *    submitting RELOCATE jobs to the writer;
 *  - a checkpointer thread waits for the child process the writer forks
 *    to write a checkpoint, then installs it.
 * Lock order: bmu before e->mu (index rwlock) before q->mu (queue
 * mutexes) and kmu. Segment
 * files are pinned with seg_get/seg_put so that a body can be read after
 * the rwlock is released even if compaction drops the segment meanwhile;
 * a roll back that cuts the active segment meanwhile is seen with
 * body_view/body_moved, and the reader looks the body up again.
 */
#ifndef MST_ENG_H
#define MST_ENG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "engine.h"
#include "index.h"
#include "record.h"

#define SEG_NAME_FMT "%08x.seg"

struct seg {
	uint32_t no;
	int fd;
	atomic_int refs;	/* table + readers; closed at 0 */
	uint64_t size;		/* durable end; writer-owned */
	uint64_t alloc;		/* pre-written: the file's length, past
				   the log's end (zeros); 0: the file
				   ends with the log; writer-owned */
	int marked;		/* its batches open with a MARK record
				   (record.h): it was pre-written */
	atomic_uint_fast64_t written;	/* end of what pwritev has put in
					   the file; readers wait for it */
	char path[];
};

struct jq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;	/* guarded by mu */
	size_t n;			/* guarded by mu */
	int stop;			/* guarded by mu */
};

/* Staged bodies in the order they were staged (eng_stage.c). */
struct stage_ent {
	uint64_t id;
	int64_t at_ns;		/* when it was staged */
};

struct stageq {
	struct stage_ent *v;	/* a ring of |cap| */
	size_t head, n, cap;
	size_t limit;		/* at this many, drop the committed ones */
};

struct quota_ovr {
	struct quota_ovr *next;
	uint64_t bytes, msgs;
	int set;		/* set by ADMIN quota (eng_quota.c): kept in
				   DIR/quotas, wins over quota_file */
	char mailbox[];
};

/* OPEN references one owner holds on one file. */
struct oref {
	struct oref *next;
	uint64_t owner, id;
	uint32_t count;
};

#define ENG_OREF_BUCKETS 64u	/* hashed by owner: a connection's
				   references share a chain */

struct engine;

/*
 * Where the segments and the checkpoint live: files under the data
 * directory (store_files, eng_store.c) or anonymous memory files that
 * vanish with the process (store_memory, engine_memory.c). Records,
 * replay, the index, every operation's rules, group commit, compaction
 * and scrub are the same code over either; only these calls differ.
 */
struct store_media {
	const char *name;
	/* Take the store (directories, lock) and put the segments it
	 * already has in the table. */
	int (*attach)(struct engine *e);
	/* A new empty segment |no| whose existence is durable, or NULL
	 * (logged). */
	struct seg *(*seg_create)(struct engine *e, uint32_t no);
	/* A segment replay no longer needs leaves the store (the table's
	 * reference is dropped by the caller). */
	void (*seg_remove)(struct engine *e, struct seg *s);
	/* The last checkpoint, read from its start: a descriptor the
	 * caller closes, or -ENOENT when there is none. */
	int (*ckpt_open)(struct engine *e);
	/* A new empty file for the next checkpoint: a descriptor, or a
	 * negative errno (logged). The engine writes and syncs it. */
	int (*ckpt_create)(struct engine *e);
	/* Make |fd|, written and synced, the checkpoint in place of the
	 * last one, durably; takes ownership of |fd|. Any thread. */
	int (*ckpt_install)(struct engine *e, int fd);
	/* Drop a checkpoint file that will not be used; takes |fd|. */
	void (*ckpt_discard)(struct engine *e, int fd);
	/* Room for the store: total and free bytes (before the reserve). */
	int (*space)(struct engine *e, uint64_t *total_out,
	    uint64_t *free_out);
	/* Release what attach took. */
	void (*detach)(struct engine *e);
};

extern const struct store_media store_files;
extern const struct store_media store_memory;

/* The change-number epoch (eng_epoch.c, DIR/epoch). */
struct epoch {
	uint64_t base;		/* the counter after the last jump */
	uint64_t floor;		/* LIST deltas since below it: full */
	uint64_t clean;		/* lsn of a clean close, if has_clean */
	int has_clean;
};

/* How far an unclean start moves the change counter: more than the
 * records a crash can take with it. */
#define EPOCH_GAP	((uint64_t)1 << 32)

struct engine {
	struct engine_conf conf;
	const struct store_media *media;
	char *dir;			/* data directory, or the media name */
	int lock_fd;
	int log_dirfd;
	int ckpt_fd;			/* store_memory: the checkpoint */
	struct ckstate *ks;		/* checkpoint parts (eng_ckpt.c) */
	pthread_rwlock_t mu;
	struct index *ix;		/* guarded by mu */
	struct seg **segs;		/* by number; guarded by mu */
	uint32_t nsegs;			/* table size; guarded by mu */
	struct seg *active;		/* writer-owned */
	uint64_t lsn;			/* writer-owned */
	struct epoch epoch;		/* set at open, and at a roll back
					   under mu for writing */
	uint64_t ckpt_lsn;		/* writer-owned */
	uint32_t ckpt_seg;		/* writer-owned */
	uint64_t since_ckpt;		/* log bytes since; writer-owned */
	uint64_t log_bytes;		/* appended since start; writer */
	uint64_t space_free;		/* last statvfs less reserve */
	uint64_t space_log_bytes;	/* log_bytes at that statvfs */
	int64_t space_at_ms;		/* when; writer-owned */
	struct quota_ovr *quotas;	/* guarded by mu (changed by ADMIN
					   quota) */
	/* Progress for "stats" (mstore-ctl scrub --progress, compact
	 * --wait): the running scrub's log bytes checked of its total,
	 * and the compactor's passes. */
	atomic_uint_fast64_t scrub_done, scrub_total;
	atomic_int scrub_running;
	uint64_t cpasses;		/* passes ended; guarded by cmu */
	int crunning;			/* a pass is under way; cmu */
	struct oref *orefs[ENG_OREF_BUCKETS];	/* writer-owned */
	struct jq wq, rq;
	pthread_t writer, compactor, *readers;
	int nreaders;
	/*
	 * Group commit runs on two threads. The writer applies a batch,
	 * writes it, answers at once the flag changes and expunges in it
	 * (SETINFO, EXPUNGE: ordered in the log is enough for them) and
	 * hands the rest to the syncer, which answers them after the
	 * fdatasync that covers their batch. The writer meanwhile goes on
	 * with the next batch, so one fdatasync may cover several.
	 */
	pthread_t syncer;
	pthread_mutex_t bmu;		/* held by the writer through a
					   batch; a failed sync takes it to
					   roll back */
	pthread_mutex_t smu;		/* guards the s* fields */
	pthread_cond_t scv;
	struct job *sjobs, **stail;	/* written, waiting for a sync */
	struct seg *sseg;		/* where they are */
	uint64_t sbase, spos;		/* unsynced range of sseg */
	uint64_t sacked;		/* changes in it already answered */
	unsigned snrec;			/* records in it */
	int spending, sbusy, sstop;
	uint32_t synced_no;		/* the last fdatasync covered
					   segment synced_no up to */
	uint64_t synced_end;		/* synced_end; guarded by smu */
	/*
	 * Pre-written segments (eng_store.c, store_files): the spare
	 * thread fills DIR/log/spare with zeros to segment_size and syncs
	 * it; a rotation renames it to the next segment, so that the
	 * log's appends overwrite written blocks and each fdatasync
	 * flushes data only, not the file's growth (ext4 journals that).
	 */
	pthread_t spare_t;
	pthread_mutex_t spmu;
	pthread_cond_t spcv;
	int spare_fd;			/* ready, filled and synced; or -1 */
	int spare_on, spare_stop;	/* guarded by spmu */
	uint64_t spare_made;		/* spares made; spmu */
	uint64_t spare_used;		/* rotations into one; spmu */
	pthread_mutex_t wmu;		/* batch-written wakeups */
	pthread_cond_t wcv;
	uint64_t wgen;			/* batches ended; guarded by wmu */
	atomic_uint rolled;		/* roll backs that cut the active
					   segment (body_moved) */
	/*
	 * Checkpoints leave the commit path (engine_local.c): the writer,
	 * between batches and with every batch synced, forks; the child
	 * writes the index as it was at that instant and exits; the
	 * checkpointer thread waits for it, installs the file, reclaims
	 * segments (under bmu) and answers who asked.
	 */
	pthread_t ckpter;
	pthread_mutex_t kmu;
	pthread_cond_t kcv;
	int krunning, kstop;		/* guarded by kmu */
	pid_t kpid;			/* the child; kmu */
	int kfd;			/* the file it writes; kmu */
	struct ckplan *kplan;		/* what it writes; kmu */
	uint32_t kseg;			/* its replay position's segment */
	uint64_t klsn, ksince;		/* lsn, since_ckpt at the fork */
	int64_t kfork_ns, kstart_ns;	/* fork's duration, start time */
	int64_t kfork_cpu_ns;		/* the fork's CPU time */
	struct job *kjobs;		/* answered once it is installed */
	struct job *kwait, **kwtail;	/* asked for while one ran */
	uint64_t kdone;			/* written by a child; kmu */
	int64_t kfork_max_ns;		/* longest fork; kmu */
	int64_t kwrite_last_ns;		/* the last one's time; kmu */
	int kback;			/* jobs that waited are being put
					 * back in the queue; kmu */
	int kreclaim;			/* installed while batches were
					 * unsynced: the writer reclaims
					 * for rseg, rlsn, rsince; kmu */
	uint32_t rseg;
	uint64_t rlsn, rsince;
	struct seg **kgone;		/* the writer reclaimed them: the
					 * ckpter unlinks them; kmu */
	unsigned kfails;		/* failed in a row; kmu */
	int64_t kretry_ns;		/* none started by log size before
					 * this (backing off); kmu */
	pthread_mutex_t cmu;		/* compactor wakeups */
	pthread_cond_t ccv;
	int cstop, ckick;		/* guarded by cmu */
	/* Counters for "stats"; writer-owned, read racily. */
	atomic_uint_fast64_t batches, batched, syncs, relocated, compacted;
	atomic_uint_fast64_t ordered;	/* answered before their sync */
	/* Staged bodies never committed are swept once older than
	 * stage_ttl (eng_stage.c): the queue is the writer's (changed under
	 * bmu, or at open), the ticker thread makes sure a batch runs. */
	struct stageq stq;
	pthread_t ticker;
	pthread_mutex_t tmu;
	pthread_cond_t tcv;
	int tstop, tstarted;		/* guarded by tmu */
};

/* Internal job kinds beyond protocol opcodes (job->kind). */
enum {
	JK_OP = 0,
	JK_RELOCATE,		/* body in j->body, id/seg/off in j->req */
	JK_CHECKPOINT,
	JK_SWEEP,		/* the ticker's: a batch that sweeps */
};

/* A relocation request from the compactor: a message body, or with
 * |file| one block of a file (|checksum| is the block's sum). */
struct reloc {
	uint64_t id;
	uint32_t seg;
	uint64_t off;
	uint64_t checksum;
	int file;
	uint64_t block;
	uint32_t len;		/* the block's stored bytes */
};

/* eng_store.c: segments, replay, checkpoints. */
/* A table entry for segment |no| open as |fd| (takes ownership of it):
 * NULL when out of memory (|fd| is closed). */
struct seg *seg_new(struct engine *e, uint32_t no, int fd);
int store_open(struct engine *e);
void store_close(struct engine *e);
int store_rotate(struct engine *e);
/* The spare thread (invariant 5 in eng_store.c): started after the
 * store is open when segment_prealloc is set (store_files only; a spare
 * left by an earlier run is removed either way), stopped before it
 * closes. 0 or a negative errno. */
int spare_start(struct engine *e);
void spare_stop(struct engine *e);
/* Write a checkpoint now, on this thread (writer, between batches). */
int store_checkpoint(struct engine *e);
/* A checkpoint of |seg|, |lsn| taken |since| log bytes after the last
 * one is installed: account for it (writer, or bmu held) and take the
 * segments it made unneeded out of the table; store_reclaim() unlinks
 * them (any thread, bmu not needed) and frees the array. */
struct seg **store_checkpoint_done(struct engine *e, uint32_t seg,
    uint64_t lsn, uint64_t since);
void store_reclaim(struct engine *e, struct seg **gone);
/* index_load's reader of first-format file bodies (|arg|: the engine). */
int store_ckpt_body(void *arg, uint32_t seg, uint64_t off, void *buf,
    size_t len);
/* Largest record payload replay and scans accept. */
uint64_t store_max_record(const struct engine *e);
/* Drop and rebuild the index from checkpoint + log (after a failed
 * write). Caller holds mu for writing. */
int store_reload(struct engine *e);
struct seg *seg_get(struct engine *e, uint32_t no);
void seg_put(struct seg *s);

/*
 * Walk the records of segment |s| from |off|. |fn| gets each valid record
 * (header decoded, payload verified) and its offset; a nonzero return
 * stops the walk with that value. Returns 0 at a clean end, the stop
 * value, -EBADMSG with *end_out at the first bad record, or the error of
 * a read that failed (-EIO, -ENOMEM...) with *end_out where it stopped:
 * unread bytes are not bad ones.
 */
typedef int scan_fn(void *arg, struct rec *r, const uint8_t *payload,
    uint64_t off);
int seg_scan(struct seg *s, uint64_t off, uint64_t max_rec, scan_fn *fn,
    void *arg, uint64_t *end_out);

/*
 * A body's place, taken under the rwlock, is read after it is let go.
 * Meanwhile a failed write or sync may be rolled back (roll_back): the
 * active segment is cut back and new batches are written where the cut
 * records were. A place taken before that may point into them, though
 * the body is still live: a compaction's RELOCATE copy that was never
 * synced, whose body the reloaded index has where it was before. So a
 * reader notes body_view() (rwlock held) with the place, and when
 * body_moved() says a roll back came between, it does not answer from
 * what it read (-EAGAIN from body_wait, reply_body) but looks the body
 * up again.
 */
unsigned body_view(struct engine *e);
int body_moved(struct engine *e, unsigned view);
/* Most lookups of one body a read makes while roll backs move it. */
#define BODY_TRIES	8

/*
 * The index shows a record as soon as the writer has applied it, which is
 * before the batch's pwritev. Before reading a body ending at |end| in
 * the pinned segment |s|, wait until the writer has put it in the file:
 * 0, -ENOENT when its batch failed (the record no longer exists), or
 * -EAGAIN when a roll back came after |view| (look it up again).
 */
int body_wait(struct engine *e, struct seg *s, uint64_t end, unsigned view);

/* Read |len| bytes at |off| of a body at |seg_off| in the pinned segment
 * |s| (NULL gives -EIO). */
int body_read(struct seg *s, uint64_t seg_off, uint64_t off, void *buf,
    size_t len);
/* Verify a whole body against |checksum|: 0, -EIO on a mismatch. */
int body_verify(struct seg *s, uint64_t seg_off, uint64_t size,
    uint64_t checksum);

/* The batch a writer is filling. */
struct batch {
	struct seg *seg;
	uint64_t base, pos;		/* file offsets */
	uint64_t space;			/* bytes we may still use */
	struct iovec *iov;
	int niov, cap;
	uint8_t *arena;			/* headers + fixed parts */
	size_t arena_used, arena_cap;
	void **scratch;			/* extra bodies to free */
	int nscratch, scratch_cap;
	int nrec;
	int locked;			/* the op holds e->mu for writing:
					   batch_add must not take it */
};

/* eng_ckpt.c: incremental checkpoints (see there). */
struct ckplan;
struct index_saver;
int ckstate_new(struct engine *e);
void ckstate_free(struct engine *e);
/* store_files: DIR/ckpt, where the parts live. */
int ckpt_files_attach(struct engine *e);
/* DIR/ckpt's descriptor (a child keeps it), or -1. */
int ckpt_dirfd(const struct engine *e);
/* Record |r| is applied (writer, or replay): mark what it changes. */
void ckpt_note(struct engine *e, const struct rec *r);
/* Load the checkpoint |fd| (whole, or a manifest and its parts) into
 * e->ix and take its table of parts; ckpt_load_none() when there is no
 * checkpoint. ckpt_opened() then removes part files nobody names. */
int ckpt_load(struct engine *e, int fd, uint32_t *seg_out,
    uint64_t *off_out);
void ckpt_load_none(struct engine *e);
void ckpt_opened(struct engine *e);
/* What a checkpoint of the index as it is now writes (writer, between
 * batches, before the fork; |sv| is reserved for it): NULL when out of
 * memory. ckpt_write() writes it (the child, or the writer), each part
 * synced, then the manifest or whole file to |mfd|, synced (every sync
 * through dio_fdatasync_unheld, so tests can fail any one);
 * ckpt_install() installs |mfd| (media ckpt_install) and then removes
 * the parts no longer named. */
struct ckplan *ckpt_plan(struct engine *e, struct index_saver *sv);
void ckpt_plan_free(struct ckplan *p);
int ckpt_write(struct engine *e, struct ckplan *p, struct index_saver *sv,
    int mfd, uint32_t seg, uint64_t off, uint64_t sync_every);
int ckpt_install(struct engine *e, struct ckplan *p, int mfd);
/* The last installed checkpoint: bytes written, part files written,
 * part files its manifest names. */
void ckpt_stats(struct engine *e, uint64_t *bytes_out, uint64_t *parts_out,
    uint64_t *named_out);

/* eng_base.c: what every operation builds on. */
int64_t now_ns(void);
/* Append a record to |b| and apply it to the index. */
int batch_add(struct engine *e, struct batch *b, struct rec *r,
    const void *body);
/*
 * Can the batch take |nrec| more records with |bytes| of bodies? An
 * operation that writes several records asks first, so that it never
 * stops half way: 0, -EAGAIN (wait for the next batch), -EFBIG (not even
 * an empty batch could), -ENOSPC.
 */
int batch_room(struct engine *e, struct batch *b, int nrec, uint64_t bytes);
/* The next object id (-ENOSPC at the mount's range, logged). */
int alloc_id(struct engine *e, uint64_t *id_out);
/* Resolve MAILBOX[/FOLDER]/new|cur|tmp (|sub| MST_SUB_NEW, MST_SUB_CUR or
 * ENG_SUB_TMP, where STAGE keeps bodies not yet named). */
#define ENG_SUB_TMP	0u
int mail_dir(const struct index *ix, struct mst_str mailbox,
    struct mst_str folder, uint8_t sub, struct node **out);
/* Split PATH into its parent directory (resolved) and last name. */
int parent_of(const struct index *ix, struct mst_str path,
    struct node **dir_out, struct mst_str *name_out);
/* One attr_rep frame: of |n| with |dir|'s fields; of a file object with
 * its first parent's (0 and 0 for an orphan). */
int reply_attr(struct job *j, const struct node *n, const struct node *dir);
int reply_fattr(struct job *j, const struct fobj *f);
int reply_change(struct job *j, const struct node *dir);
/* A data_rep of a message body range (verified whole when |from| is 0);
 * its checksum is the body's, or with |range_sum| the range's. -EAGAIN,
 * and no reply, when a roll back came after |view| (body_moved). */
int reply_body(struct engine *e, unsigned view, struct job *j,
    struct seg *seg, uint64_t off, uint64_t size, uint64_t checksum,
    uint64_t from, uint32_t want, int range_sum);
/* A notice for |name| in |dir|; MST_EV_CHANGE for every name of |f| but
 * |skip|. */
int notice(struct job *j, const struct node *dir, const char *name,
    size_t nlen, uint8_t ev, uint64_t id, uint64_t change);
int notice_names(struct job *j, const struct fobj *f, const struct node *skip,
    uint64_t change);

/* eng_ops.c: the namespace, and the dispatch of every operation. */
void ops_mutate(struct engine *e, struct batch *b, struct job *j);
void ops_read(struct engine *e, struct job *j);
/* engine_ops.try_now of the local and memory engines (eng_ops.c). */
int ops_try_now(struct engine *e, struct job *j);

/* eng_file.c: ordinary files' contents, links and OPEN references. The
 * op functions fill |j|'s reply and return 0 or a negative errno. */
int file_write(struct engine *e, struct batch *b, struct job *j);
int file_fsetattr(struct engine *e, struct batch *b, struct job *j);
int file_link(struct engine *e, struct batch *b, struct job *j);
int file_open(struct engine *e, struct job *j);
int file_close(struct engine *e, struct job *j);
void file_close_owner(struct engine *e, uint64_t owner);
/* Reader threads. */
int file_getattr(struct engine *e, struct job *j);
int file_getattr_locked(struct engine *e, struct job *j);
int file_read(struct engine *e, struct job *j);
/* GET and FETCH (|whole|: the whole file's checksum) or READ of |f|;
 * called with e->mu held for reading, which it releases. */
int file_reply_data(struct engine *e, struct job *j, const struct fobj *f,
    uint64_t from, uint64_t want, int whole);
/* SETATTR and FSETATTR of the entry |n| or the file |f| (ext4 rules). */
int file_set_attrs(struct engine *e, struct batch *b, struct job *j,
    struct node *n, struct fobj *f, const struct mst_fsetattr_req *s);
/* One ATTR record of |id|; its lsn in *lsn_out. */
int file_attr_record(struct engine *e, struct batch *b, uint64_t id,
    uint32_t valid, const struct mst_fsetattr_req *s, uint64_t *lsn_out);
/*
 * A write of |len| bytes at |off| of |f| as EXTENT records, in three
 * steps so that the records can go in with others under one hold of the
 * index lock: ask file_write_room() (with |more| other records of the
 * operation), build every record with file_write_prepare() (|f| NULL:
 * a file that will be empty, as after PUT's cut; otherwise the partly
 * covered first and last blocks are read), add them with
 * file_write_apply() (the last one's lsn in *lsn_out), then
 * file_write_free().
 */
struct wplan;
int file_write_room(struct engine *e, struct batch *b, uint64_t off,
    uint64_t len, int more);
int file_write_prepare(struct engine *e, struct batch *b,
    const struct fobj *f, uint64_t off, const uint8_t *data, uint64_t len,
    struct wplan **out);
int file_write_apply(struct engine *e, struct batch *b, struct fobj *f,
    struct wplan *w, int64_t now, uint64_t *lsn_out);
void file_write_free(struct wplan *w);
/* JK_RELOCATE of a file block: an EXTENT record with REC_EXT_RELOC, or
 * -ESTALE when the block moved meanwhile. */
int file_relocate_block(struct engine *e, struct batch *b, struct job *j);
/* After store_reload: count the OPEN references into the new index. */
void orefs_reapply(struct engine *e);
void orefs_free(struct engine *e);

/* Internal jobs (compactor) complete to a waiter instead of |done|. */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;		/* guarded by mu */
};

void engine_internal(struct engine *e, struct job *j, struct waiter *w);

/* eng_admin.c */
void *compactor_main(void *arg);
void admin_run(struct engine *e, struct job *j);
void compact_kick(struct engine *e);

/* eng_stage.c: staged bodies never committed. */
/* A body staged as |id| at |at_ns| (writer). */
void stage_note(struct engine *e, uint64_t id, int64_t at_ns);
/* Unlink, in |b|, the staged bodies older than stage_ttl (writer, at
 * the start of each batch: costs nothing when none is due). */
void stage_sweep(struct engine *e, struct batch *b);
/* Find every staged body in the index just built (at open, after a roll
 * back). */
void stage_rebuild(struct engine *e);
/* The ticker thread, which has the writer run a batch now and then so
 * that an idle store sweeps too. */
int stage_start(struct engine *e);
void stage_stop(struct engine *e);
void stage_free(struct engine *e);

/* eng_quota.c: ADMIN quota (|j|'s arg "MAILBOX BYTES MESSAGES"), and at
 * open the quotas it set before (DIR/quotas; the memory store keeps
 * none). */
void quota_admin(struct engine *e, struct job *j);
int quota_set_load(struct engine *e);

/* eng_epoch.c. After the index is built (at open, and again after a
 * roll back with |rolled_back|): move the change counter past every
 * number handed out before unless the last close was clean, and write
 * DIR/epoch without its clean mark. 0 or a negative errno. */
int epoch_start(struct engine *e, int rolled_back);
/* After the last batch is durable: mark the close clean. */
void epoch_close(struct engine *e);
/* A directory's counter as LIST and WATCH report it: never below the
 * epoch's floor, so that it serves as a since of this epoch. */
uint64_t epoch_counter(const struct engine *e, uint64_t change);

/* engine_local.c */
/* The engine over |m|: engine_local's open is this over store_files. */
int engine_open_media(const struct engine_conf *c,
    const struct store_media *m, struct engine **out);
void engine_submit(struct engine *e, struct job *j);
void engine_close(struct engine *e);
void engine_enqueue(struct jq *q, struct job *j);
/* Reply text for ADMIN as a single admin_rep frame. */
int reply_text(struct job *j, const char *text, size_t len);

#endif /* MST_ENG_H */
