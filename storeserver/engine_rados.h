/*
 * engine_rados.h - private to the rados back-end (engine_rados.c: the
 * cluster connection, worker threads, object and omap primitives, path
 * resolution; engine_rados_ops.c: the operations). The layout of the
 * objects is drawn at the top of engine_rados.c.
 *
 * Threads and locks: |e->mu| guards the job queue. A store's mutations
 * by this server are serialised by one of |e->stripe| (hashed by the
 * store object's name), taken around read-counter-then-CAS so that this
 * server never cancels its own writes; rules never depend on it: every
 * write carries its guards (omap_cmp) and another server's concurrent
 * write makes it fail with -ECANCELED, after which it is re-read and
 * decided again. No lock is held while another is taken.
 */
#ifndef MST_ENGINE_RADOS_H
#define MST_ENGINE_RADOS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <rados/librados.h>

#include "engine.h"

#define RE_THREADS	16	/* workers: each runs one job at a time */
#define RE_STRIPES	64
#define RE_RETRIES	16	/* CAS attempts before giving up with EIO */
#define RE_LOG_KEEP	2048	/* log records kept per store */
#define RE_OID_MAX	40
#define RE_KEY_MAX	(8 + MST_NAME_MAX)
#define RE_ROOT_ID	1u
#define RE_ENTRY_LEN	94u	/* encoded entry: see ren_encode */
#define RE_CACHE_BUCKETS 4096u
#define RE_CACHE_MAX	65536u	/* resolutions cached, then flushed */
#define RE_OREF_BUCKETS	256u
#define RE_MOVE_STALE_NS (15 * 1000000000ll)	/* a move left this long is
						 * finished by whoever meets it */
#define RE_MOVE_WAIT_NS	(5 * 1000000000ll)	/* waiting for a move: EIO */
#define RE_SHARDS_MAX	256u	/* shards of one folder's index */
#define RE_SHARDS_DEFAULT 4u	/* rados_index_shards: mstored(8) */
#define RE_CAP_DEFAULT	45000u	/* rados_index_cap: entries per store */
#define RE_LAY_BUCKETS	1024u
#define RE_LAY_MAX	65536u	/* folder layouts cached, then flushed */

/* OPEN references of this server's connections (engine_rados_link.c):
 * |count| by (owner, id), all owners of one id in one bucket. */
struct roref {
	struct roref *next;
	uint64_t owner, id;
	uint32_t count;
};

struct rados_engine {
	struct engine_conf conf;
	rados_t cl;
	rados_ioctx_t io;
	uint64_t inc;			/* this server's incarnation */
	atomic_uint_fast64_t seq;	/* ids handed out in it */
	uint64_t instance;		/* rados_get_instance_id */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;	/* guarded by mu */
	int stop;			/* guarded by mu */
	pthread_t threads[RE_THREADS];
	int nthreads;
	pthread_mutex_t stripe[RE_STRIPES];
	pthread_mutex_t cmu;
	struct centry *cache[RE_CACHE_BUCKETS];	/* guarded by cmu */
	size_t ncache;				/* guarded by cmu */
	/* Notices of other servers' changes (watch/notify). */
	uint64_t watch_cookie;
	int watching;
	pthread_mutex_t omu;
	struct roref *orefs[RE_OREF_BUCKETS];	/* guarded by omu */
	pthread_cond_t ocv;		/* the sweeper's sleep, with omu */
	pthread_t osweeper;
	int osweeping, ostop;		/* guarded by omu */
	atomic_uint_fast64_t delivered, cancels;
	unsigned shards;		/* rados_index_shards of new folders */
	uint64_t shard_cap;		/* rados_index_cap: entries per shard
					 * and sub-directory */
	pthread_mutex_t lmu;
	struct rlay *lay[RE_LAY_BUCKETS];	/* guarded by lmu */
	size_t nlay;				/* guarded by lmu */
	atomic_uint_fast64_t raises, full_refusals;
};

/* A folder's shard count, cached (it never changes: engine_rados_shard.c). */
struct rlay {
	struct rlay *next;
	uint64_t p;		/* the folder's id: m.<p> */
	unsigned n;
};

/* One directory entry as stored in omap e.<name> (and in log records). */
struct rentry {
	uint8_t type;		/* MST_T_* */
	uint64_t id, size, checksum;
	uint32_t mode, uid, gid;
	uint64_t mtime, ctime, atime, change;
	uint8_t idem[MST_IDEM_LEN];
	uint8_t moving;		/* claimed by a move to another store object
				 * (stored as bit 7 of the type byte); its
				 * intent is the store's key x.<name> */
};

/* Where a directory keeps its entries: object |oid|, keys |pfx|...; the
 * store belongs to the directory whose id its state key names. */
struct rstore {
	char oid[RE_OID_MAX];
	char pfx[3];		/* "", "N." or "C." */
	uint64_t dir;		/* the directory's id */
	uint64_t folder;	/* new/cur: the folder P of m.<P>; else 0 */
	unsigned shard;		/* which shard oid names (0: m.<P>) */
};

/* A resolved path. */
struct rres {
	uint64_t id;
	uint8_t type;
	int root;
	uint64_t parent;		/* the parent directory's id */
	struct rstore pstore;		/* the parent's entry store */
	const char *name;		/* view into the request */
	size_t namelen;
	struct rentry en;		/* not for the root */
	uint8_t raw[RE_ENTRY_LEN];	/* the stored value, for cmp guards */
};

/* A store's state, as read with its counter. */
struct rstate {
	int live;			/* st names this directory, live */
	int dead;			/* st names it, removed */
	int exists;			/* the object exists */
	uint64_t c, t, lf, nd;
	uint64_t n;			/* entries, when has_n */
	int has_n;			/* p n kept (stores made since the
					 * index cap: engine_rados_shard.c) */
	int fenced;			/* st = 'F': fenced by an RMDIR of a
					 * sharded folder */
	char st_raw[20];		/* the st value as stored */
	size_t st_len;
};

/* Key/value pairs read from omap, copied. */
struct kv {
	char *k, *v;
	size_t klen, vlen;
};

struct kvset {
	struct kv *a;
	size_t n, cap;
};

void kvset_free(struct kvset *s);
const struct kv *kvset_get(const struct kvset *s, const char *key);
/* Append every pair of |it| (copied). */
int kvset_fill_iter(struct kvset *s, rados_omap_iter_t it);

/* engine_rados.c: primitives. */
void re_oid(char *out, char c, uint64_t id);
void re_hex(char *out, uint64_t v);	/* 16 hex digits + NUL */
int re_unhex(const char *p, size_t len, uint64_t *out);
int re_alloc_id(struct rados_engine *e, uint64_t *out);
int64_t re_now(void);
pthread_mutex_t *re_stripe(struct rados_engine *e, const char *oid);
/* Map an unexpected librados error to what a client gets (logged). */
int re_err(const char *what, const char *oid, int rc);

void ren_encode(const struct rentry *en, uint8_t out[RE_ENTRY_LEN]);
int ren_decode(const void *p, size_t len, struct rentry *en);
void ren_attr(const struct rentry *en, struct mst_attr *a);

/*
 * Read omap |keys| of |oid| (NULL-terminated array, may be NULL) into
 * |vals|, and when |page| is not NULL up to |max| pairs after
 * |after| with prefix |prefix| into |page| (*more set). -ENOENT when the
 * object does not exist.
 */
int re_read(struct rados_engine *e, const char *oid, const char *const *keys,
    struct kvset *vals, const char *after, const char *prefix, unsigned max,
    struct kvset *page, int *more);

/* The store of directory |id|, child of |parent| named |name|. */
void re_store_of(struct rstore *s, uint64_t id, uint64_t parent,
    const char *name, size_t namelen);
/* Key of store |s|: pfx + |k| (+ |name|). */
void re_key(char *out, const struct rstore *s, const char *k,
    const char *name, size_t namelen);
/* Decode st, c, t, lf, nd of |s| from |vals|. */
void re_state(const struct rstore *s, const struct kvset *vals, int exists,
    struct rstate *out);
/* Guard that |s| is live (st names its directory). */
void re_guard_live(rados_write_op_t op, const struct rstore *s);
void re_cmp(rados_write_op_t op, const char *key, const void *val,
    size_t len);
void re_set(rados_write_op_t op, const char *key, const void *val,
    size_t len);
void re_rm(rados_write_op_t op, const char *key);
/* Compare the counter with |old| and set it to |new|, and the dir's
 * mtime to |now| unless it is negative (a change of an entry's object,
 * not of the directory); trim the log when it crosses a multiple of
 * 256. */
void re_bump(rados_write_op_t op, const struct rstore *s, uint64_t old,
    uint64_t new, int64_t now);
/* A log record at counter |c|. */
void re_log(rados_write_op_t op, const struct rstore *s, uint64_t c,
    uint8_t ev, const struct rentry *en, const char *name, size_t namelen);
int re_write(struct rados_engine *e, const char *oid, rados_write_op_t op);

/*
 * Make |s| (a new/ or cur/ store in m.<parent>) live for directory
 * s->dir, whose name the parent holds: used when MKDIR stopped between
 * naming the directory and claiming its store. 0, -ENOENT when s->dir is
 * dead, or an error.
 */
int re_claim(struct rados_engine *e, const struct rstore *s);

/* Where message |id| is named, from its body's loc xattr ("OID KEY"):
 * its store (s->dir unknown: 0) and the entry's key. 0, -ENOENT (no
 * such body) or -EIO. */
int re_msg_loc(struct rados_engine *e, uint64_t id, struct rstore *s,
    char key[RE_KEY_MAX]);
/* Resolve |path| ("" is the root), through the cache of directories. */
int re_resolve(struct rados_engine *e, const char *path, size_t len,
    struct rres *out);
/* The same from the objects only: for RMDIR and RENAME. */
int re_resolve_fresh(struct rados_engine *e, const char *path, size_t len,
    struct rres *out);
/* Forget the directory |dir|/|name| and everything below it. */
void re_cache_drop(struct rados_engine *e, const char *dir,
    const char *name);
void re_cache_flush(struct rados_engine *e);
/* Start a job's run on this thread, bypassing the cache with |nocache|;
 * returns whether the previous run used a cached resolution. */
int re_cache_job(int nocache);
/* MAILBOX[/FOLDER]/new|cur into |buf| (for notices), then resolve it. */
int re_mail_dir(struct rados_engine *e, struct mst_str mailbox,
    struct mst_str folder, uint8_t sub, char *buf, size_t cap,
    struct rres *out);
/* The store of a resolved directory (ENOTDIR otherwise). */
int re_dir_store(const struct rres *r, struct rstore *s);
/* A directory's attributes from its head and store; *st_out the store's
 * state (may be NULL). */
int re_dir_attr(struct rados_engine *e, uint64_t id, struct mst_attr *a,
    struct rstate *st_out);

/* SETATTR/FSETATTR of directory |id| (mode uid gid mtime atime; SIZE:
 * EISDIR), one CAS of its head: 0, -ENOENT or an error. */
int re_dir_setattr(struct rados_engine *e, uint64_t id,
    const struct mst_fsetattr_req *q);
/* Create the head of directory |id| (and, for a plain one, its store):
 * 0, -EEXIST or an error. */
int re_make_head(struct rados_engine *e, uint64_t id, uint64_t parent,
    int kind, uint32_t mode, uint32_t uid, uint32_t gid, int64_t now);

/* engine_rados_shard.c: a folder's new/ and cur/ index in shards. */
/* Point the new/ or cur/ store |s| at the shard that holds |name| (a
 * plain directory's store is left as it is): 0 or an error. */
int re_shard(struct rados_engine *e, struct rstore *s, const char *name,
    size_t nlen);
/* The shard count of |s|'s folder (1 for a plain directory). */
int re_shards(struct rados_engine *e, const struct rstore *s, unsigned *n);
/* The folder and shard of |s| from its oid (m.<P>[.<k>]; else none). */
void re_store_from_oid(struct rstore *s);
/* |s| pointed at shard |k|. */
void re_shard_k(struct rstore *s, unsigned k);
/* The directory's state over all its shards: c and t the highest, nd
 * the sum, live/dead shard 0's. With |raise|, every live shard whose
 * counter is below the highest is raised to it first (for LIST), and
 * shards not yet claimed are claimed. */
int re_dir_state(struct rados_engine *e, const struct rstore *s,
    struct rstate *st, int raise);
/* The entries of |s| at the cap: log and answer ENOSPC. */
int re_shard_full(struct rados_engine *e, const struct rstore *s,
    uint64_t n);
/* Entries in store |s|, from the p n key in |vals| (0 when absent). */
uint64_t re_entries(const struct rstore *s, const struct kvset *vals);
/* Set the entry count of |s| to |n| in |op| (guarded by the counter). */
void re_set_entries(rados_write_op_t op, const struct rstore *s,
    uint64_t n);
void re_lay_flush(struct rados_engine *e);
/* Fence the empty directory store |s| (st = dead, guarded by its
 * counter; a new/ or cur/ in shards: every shard, as the file's comment
 * says): 0, -ENOTEMPTY, -ENOENT (not live) or an error. */
int re_fence_empty(struct rados_engine *e, const struct rstore *s);
/* Undo a fence of the directory store |s| (every shard): best effort. */
void re_unfence(struct rados_engine *e, const struct rstore *s);
/* Shard |s| is fenced ('F') by an RMDIR: revive it, first bumping shard
 * 0's counter so that the RMDIR fails. 0 (read again), -ENOENT (the
 * directory is gone) or an error. */
int re_revive(struct rados_engine *e, const struct rstore *s);

/* engine_rados_notify.c: cross-server notices through watch/notify. */
int re_watch_start(struct rados_engine *e);
void re_watch_stop(struct rados_engine *e);
/* Publish a completed job's notices to the other servers. */
void re_publish(struct rados_engine *e, const struct job *j);
/* Watched directories, RESETs sent, watches re-made, re-reads. */
void re_watch_stats(size_t *dirs, uint64_t *resets, uint64_t *rewatches,
    uint64_t *rechecks);

/* engine_rados_ops.c: the operations, and what engine_rados_file.c
 * shares with them. */
void re_run(struct rados_engine *e, struct job *j);
/* Read a store's state keys (st c t nd lf) and up to three more. */
int re_store_read(struct rados_engine *e, const struct rstore *s,
    const char *k1, const char *k2, const char *k3, struct kvset *vals,
    struct rstate *st);
/* |s| is not live: claim an unclaimed new/cur store (0: read again) or
 * -ENOENT for a removed directory. */
int re_not_live(struct rados_engine *e, const struct rstore *s,
    const struct rstate *st);
int re_reply_entry(struct job *j, const struct rentry *en,
    const struct rstate *st);
int re_notice(struct job *j, const char *dir, size_t dlen, const char *name,
    size_t nlen, uint8_t ev, uint64_t id, uint64_t change);
/* Length of the directory part of |path|. */
size_t re_dir_len(const char *path, size_t len);
void re_remove_body(struct rados_engine *e, uint64_t id);
int re_entry_attr(struct rados_engine *e, const struct rentry *en,
    struct mst_attr *a);
int re_parent_of(struct rados_engine *e, struct mst_str path,
    struct rres *dir, struct rstore *s, const char **name, size_t *nlen);
/* Insert |en| as |name| in |s|, or with |en| NULL remove |name| while it
 * still holds |raw|: ONE guarded write; |out| the store afterwards. */
int re_dir_entry(struct rados_engine *e, const struct rstore *s,
    const char *name, size_t nlen, struct rentry *en, const uint8_t *raw,
    struct rstate *out);

int re_fetch_body(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length);
/* attr_rep of an entry of any type (files' and dirs' attributes live
 * with them, not in the entry). */
int re_reply_any_entry(struct rados_engine *e, struct job *j,
    const struct rentry *en, const struct rstate *st);
/* MST_SUB_NEW / MST_SUB_CUR for a name "new" / "cur", else 0. */
int re_is_sub_name(const char *p, size_t n);

/* engine_rados_move.c: EXPUNGE SETINFO RENAME SETATTR FSETATTR. */
int re_op_expunge(struct rados_engine *e, struct job *j);
int re_op_setinfo(struct rados_engine *e, struct job *j);
int re_op_rename(struct rados_engine *e, struct job *j);
int re_op_setattr(struct rados_engine *e, struct job *j);
int re_op_fsetattr(struct rados_engine *e, struct job *j);

/* engine_rados_admin.c: ADMIN (stats scrub compact checkpoint), and a
 * growing text for its replies. */
struct re_text {
	char *p;
	size_t len, cap;
	int failed;
};
void re_text_init(struct re_text *t);
void re_text_add(struct re_text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The text as the job's ADMIN reply (frees it). */
int re_text_reply(struct job *j, struct re_text *t);
/* KEY=N in the ADMIN argument (space-separated words): 1 and *out, 0
 * when absent, -EINVAL when not a number. */
int re_admin_arg(struct mst_str arg, const char *key, uint64_t *out);
int re_op_admin(struct rados_engine *e, struct job *j);
/* engine_rados_scrub.c: the scrub of orphan bodies, expired idempotency
 * records and quota usage. */
int re_scrub(struct rados_engine *e, struct job *j);
/* The running or last scrub's progress as stats lines (scrub_running,
 * scrub_phase, scrub_bytes_done/total, scrub_bodies_done/total). */
void re_scrub_stats(struct re_text *t);

/* engine_rados_quota.c: per-mailbox usage and limits in q.<mailbox>, the
 * pool's totals in mst.usage. */
/* The usage value: 'Q' + bytes + messages, 16 hex digits each. */
#define RE_QUOTA_LEN 33u
void re_quota_value(char out[RE_QUOTA_LEN + 1], uint64_t bytes,
    uint64_t msgs);
int re_quota_decode(const char *v, size_t len, uint64_t *bytes,
    uint64_t *msgs);
/* Read quota_file (if any): 0, or an error to refuse to start with. */
int re_quota_load(struct rados_engine *e);
/* The limits of mailbox |mbox| from mstore.conf and quota_file (0:
 * none); a limit set by ADMIN quota, in q.<mbox>, wins over them. */
void re_quota_limits(const struct rados_engine *e, const char *mbox,
    size_t len, uint64_t *bytes, uint64_t *msgs);
/* Reserve |size| bytes and one message: 0, -EDQUOT or an error. */
int re_quota_take(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size);
/* Give a reservation or a removed message back (best effort, logged). */
void re_quota_give(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size);
/* A mailbox's usage and the limits that hold for it: 0 or an error. */
int re_quota_get(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t *bytes, uint64_t *msgs, uint64_t *qbytes, uint64_t *qmsgs);
/* ADMIN quota: set a mailbox's limits (0: none) for every server of the
 * pool. 0 or an error. */
int re_quota_set(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t bytes, uint64_t msgs);
/* The pool's totals: 'T' + bytes + messages + mailboxes (16 hex each). */
#define RE_USAGE_LEN 49u
void re_usage_encode(char out[RE_USAGE_LEN + 1], uint64_t bytes,
    uint64_t msgs, uint64_t boxes);
/* Start and stop the thread that writes this server's changes of the
 * totals and reads the others' (the store gauges of the metrics). */
void re_usage_start(struct rados_engine *e);
void re_usage_stop(struct rados_engine *e);
/* Write this server's changes of the totals now: 0 or an error. */
int re_usage_flush(struct rados_engine *e);
/* For a scrub: flush, then mst.usage's version (0: no object yet). */
int re_usage_snapshot(struct rados_engine *e, uint64_t *ver);
/* For a scrub: set the totals to what it counted and fold every
 * server's key into them, if mst.usage is still at |ver| after this
 * server's flush: 0, -ECANCELED (it moved: busy) or an error. */
int re_usage_fold(struct rados_engine *e, uint64_t ver, uint64_t bytes,
    uint64_t msgs, uint64_t boxes);

/* engine_rados_file.c: small ordinary files f.<id>. Omap a = the
 * attributes, 'F' size mode uid gid nlink mtime ctime atime ver parent
 * (65 bytes); on = how many servers hold OPEN references (16 hex,
 * absent when none), o.<inc> = 1 while server <inc> holds some. The
 * object goes when nlink and on are both 0, by ONE op guarded by both. */
#define RE_FA_LEN 65u

struct fattr {
	uint64_t size;
	uint32_t mode, uid, gid, nlink;
	uint64_t mtime, ctime, atime, ver, parent;
};

void re_fa_encode(const struct fattr *a, uint8_t out[RE_FA_LEN]);
/*
 * What an update does to f.<id>, given its attributes |f| and open count
 * |on| as read: adds to |op| (which already guards a and on) and returns
 * 0 to write it, 1 to write nothing, or an error to write nothing.
 */
typedef int re_fa_edit_fn(struct rados_engine *e, uint64_t id,
    struct fattr *f, uint64_t on, rados_write_op_t op, void *arg);
/* Read f.<id>, edit, write guarded by what was read; again when another
 * write came first (engine_rados_link.c). 0, 1 (the edit wrote
 * nothing), -ENOENT (no such file), the edit's error, or an error
 * (logged, |what| names the update). */
int re_fa_update(struct rados_engine *e, uint64_t id, re_fa_edit_fn *edit,
    void *arg, const char *what);
/* f.<id>'s attributes, the raw value (may be NULL) for a cmp guard and
 * its open count (may be NULL): 0, -ENOENT or an error. */
int re_fa_read(struct rados_engine *e, uint64_t id, struct fattr *a,
    uint8_t raw[RE_FA_LEN], uint64_t *on_out);
/* A file's attributes; with |rep| also its parent's dir fields. */
int re_file_attr(struct rados_engine *e, uint64_t id, struct mst_attr *a,
    struct mst_attr_rep *rep);
int re_file_get(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length);
int re_op_put(struct rados_engine *e, struct job *j);
int re_op_get(struct rados_engine *e, struct job *j);
int re_op_unlink(struct rados_engine *e, struct job *j);
int re_op_write(struct rados_engine *e, struct job *j);
/* READ of a file, or of a message (re_read_body_range). */
int re_op_read(struct rados_engine *e, struct job *j);
int re_file_setattr(struct rados_engine *e, struct job *j, uint64_t id,
    const struct mst_fsetattr_req *q);
/* engine_rados_link.c: LINK, OPEN references, and a file losing a name. */
int re_op_link(struct rados_engine *e, struct job *j);
/* OPEN of a file: a reference of j->owner; -ENOENT when |id| is no file
 * (a directory's or message's OPEN is a GETATTR). */
int re_op_open(struct rados_engine *e, struct job *j);
/* CLOSE of a file: 0, -EBADF without a reference, -ENOENT when |id| is
 * no file. */
int re_op_close(struct rados_engine *e, struct job *j);
void re_close_owner(struct rados_engine *e, uint64_t owner);
/* Take this server's open lease mst.open.<inc> and start the thread
 * that renews it and drops dead servers' references (a failure is
 * logged: references then outlive this server until scrubbed). */
void re_orefs_start(struct rados_engine *e);
/* Stop it, drop every reference left, give the lease up. */
void re_orefs_stop(struct rados_engine *e);
void re_orefs_free(struct rados_engine *e);
/* A file's names are kept with it as omap keys n.<path> (for the
 * notices of its changes; an ancestor's rename leaves them stale, and
 * those notices then reach nobody). re_name_key: the key of |path|
 * (|out| RE_NKEY_MAX bytes). */
#define RE_NKEY_MAX (2 + MST_PATH_MAX + 1)
void re_name_key(char *out, const char *path, size_t len);
/* File |id| lost its name |path|: nlink - 1, and the object goes with
 * its last name unless some server holds it open (best effort,
 * logged). */
void re_file_unlinked(struct rados_engine *e, uint64_t id, const char *path,
    size_t plen);
/* A file renamed from |from| to |to| in directory |parent|: its ctime,
 * name key and parent (best effort, logged). */
void re_file_touch(struct rados_engine *e, uint64_t id, const char *from,
    size_t flen, const char *to, size_t tlen, uint64_t parent);
/* CHANGE of file |id| for every name it has: a CHANGE record in each
 * name's directory (so deltas and watchers see it) and a notice;
 * |except| (may be NULL) is a name already done. Best effort. */
void re_file_changed(struct rados_engine *e, struct job *j, uint64_t id,
    const char *except, size_t elen);

/* engine_rados_move.c: the entry |name| of |s| is marked moving (a move
 * to another store object claimed it): wait for the move (0: read
 * again), finish or undo it when its server left it (0), or -EIO after
 * RE_MOVE_WAIT_NS. |*since| (0 at first) is the wait's start. */
int re_moving_wait(struct rados_engine *e, const struct rstore *s,
    const char *name, size_t nlen, int64_t *since);

/* engine_rados_ops.c: READ of a message body (checksum of the range). */
int re_read_body_range(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length);

/* engine_rados_lock.c: LOCK and ENG_OP_UNLOCK_OWNER jobs, run by its own
 * thread (started at the first); stop answers waiters EINTR and gives
 * up the lease. */
void re_lock_submit(struct rados_engine *e, struct job *j);
void re_lock_stop(struct rados_engine *e);

/* Little-endian integers in stored values (engine_rados.c). */
void er_put64(uint8_t *p, uint64_t v);
void er_put32(uint8_t *p, uint32_t v);
uint64_t er_get64(const uint8_t *p);
uint32_t er_get32(const uint8_t *p);

#endif /* MST_ENGINE_RADOS_H */
