/*
 * mount.h - private to mount.mstore: the mount, its inodes, local file
 * buffers and mail folder caches, and every function one file of it
 * offers the others.
 *
 * Layers, bottom to top; dependencies run one way:
 *
 *   6  main.c            options, the ops table, threads, the session
 *   5  ops_entry.c ops_dir.c ops_file.c ops_deliver.c ops_lock.c
 *                        thin op_* adapters over do_* cores
 *   4  notify.c wake.c   notices, watches, folder refresh, evictions,
 *                        kernel invalidations, the notifier thread;
 *      passthru.c        the kernel's passthrough for tmp/ files
 *   3  store.c store.h   the store client: requests encoded, replies
 *                        decoded; no FUSE types. Below it route.c,
 *                        the servers (one mconn each, health checks,
 *                        the rendezvous choice per mailbox; check_route),
 *                        and mconn.c, one connection (check_mconn).
 *                        WATCH and UNWATCH stay in notify.c, ordered
 *                        with the watch states they change.
 *   2  inode.c           the inode table, Maildir shapes, LRU/budget
 *                        choices
 *   1  util.c fbuf.c folder.c locktab.c
 *                        clocks and the memory account, local file
 *                        buffers, the pure folder listing table, lock
 *                        owners
 *
 * The rule: a file calls only functions of its own layer or of layers
 * below it, never one above. Where a lower layer needs an upper one to
 * act, it returns a flag or an outcome and the caller acts (inode_remote
 * sets *drop, node_remote queues the invalidation; inode_evict_next
 * chooses, mem_check evicts); the one hook is m->dir_gone, through which
 * the inode table reports a directory it frees. tests/check_fbuf,
 * check_folder and check_inode link layers 1 and 2 alone, without
 * libfuse: that they link proves the rule.
 *
 * Locking: m->mu guards the inode table, every minode field marked so,
 * the folder caches, the local-name and (parent, name) tables, the LRU
 * lists and the memory account. It is never held across a network call
 * or a kernel notification. m->watch_mu orders WATCH and UNWATCH of one
 * directory on the wire (notify.c). Lock order: m->watch_mu, then m->mu,
 * then m->nq_mu (notifier queue); route's and mconn's locks are below
 * all three (neither calls back into us while holding them).
 */
#ifndef MST_MOUNT_H
#define MST_MOUNT_H

#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "mconn.h"
#include "route.h"
#include "mstproto.h"

#define MNT_LOCAL_BASE	(1ull << 56)	/* inode numbers of local files */
#define MNT_MEM_MAX	(1u << 20)	/* buffer in memory up to this */
#define MNT_CACHE_MB	64		/* cache_mb= default */
#define MNT_MALLOC_COST	16	/* bytes malloc adds to each block */
/* How long a lookup answered from memory waits for the home connection
 * to dispatch what it received (route_rx_settle) before it asks the
 * store instead. */
#define MNT_RX_SETTLE_MS	20

/* |mode| once a write, truncate or chown dropped its privileges, as the
 * kernel's setattr_should_drop_suidgid() asks: no set-user-ID, nor
 * set-group-ID if group-executable. */
static inline uint32_t
mode_drop_privs(uint32_t mode)
{
	return mode & ~(uint32_t)(S_ISUID | ((mode & S_IXGRP) ? S_ISGID : 0));
}

/* An intrusive doubly-linked list; a head's next end is the most recently
 * used. A node off every list has next == NULL. */
struct lru {
	struct lru *prev, *next;
};

static inline void
lru_init(struct lru *h)
{
	h->prev = h->next = h;
}

static inline int
lru_on(const struct lru *x)
{
	return x->next != NULL;
}

static inline void
lru_del(struct lru *x)
{
	if (x->next == NULL)
		return;
	x->prev->next = x->next;
	x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/* Put |x| at the hot end of |h| (moving it there if on a list). */
static inline void
lru_add_head(struct lru *h, struct lru *x)
{
	lru_del(x);
	x->next = h->next;
	x->prev = h;
	h->next->prev = x;
	h->next = x;
}

/* Put |x| at the cold end of |h|. */
static inline void
lru_add_tail(struct lru *h, struct lru *x)
{
	lru_del(x);
	x->prev = h->prev;
	x->next = h;
	h->prev->next = x;
	h->prev = x;
}

/* The coldest node of |h|, or NULL. */
static inline struct lru *
lru_tail(const struct lru *h)
{
	return h->prev == h ? NULL : h->prev;
}

#define LRU_ENTRY(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* A directory's WATCH in the store. Only W_ACTIVE lets the mount trust
 * what it cached of the directory; in the other states every use asks
 * the store again. */
enum wstate {
	W_NONE = 0,		/* not watched (never, failed, or UNWATCHed) */
	W_PENDING,		/* WATCH sent, no answer yet */
	W_ACTIVE,		/* the store sends notices */
};

/* Where a directory sits in a Maildir. */
enum dkind {
	DK_PLAIN = 0,		/* anything else */
	DK_TMP,			/* MAILBOX[/FOLDER]/tmp: local only */
	DK_NEW,			/* MAILBOX[/FOLDER]/new */
	DK_CUR,			/* MAILBOX[/FOLDER]/cur */
};

/* A local file's contents: memory, spilled to an unlinked spool file
 * past MNT_MEM_MAX. */
struct fbuf {
	uint8_t *mem;
	size_t len, cap;
	int fd;			/* spool file or -1 */
	uint64_t size;		/* logical size */
	unsigned pinned;	/* DELIVERs sending from a view of it */
	uint64_t gen;		/* bumped by every change of the contents */
	/* A backing file of the kernel's passthrough (fbuf_backing): */
	int bid;		/* its backing id, or 0: not one */
	int ctl;		/* the FUSE device it is registered with */
	uint64_t stamp;		/* fd's ctime when size was last taken */
};

/* The kernel's FUSE passthrough (Linux 6.9, protocol 7.40), which the
 * kernel headers and libfuse 3.14 this builds with do not know:
 * include/uapi/linux/fuse.h. A backing file is registered with the
 * FUSE device and named by its id in an open's reply (passthru.c). */
struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN	_IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE	_IOW(229, 2, uint32_t)

/* One entry of a mail folder cache. */
struct fentry {
	struct fentry *next;
	struct mst_attr attr;
	char name[];
};

/* The cached listing of a new/ or cur/ directory, kept fresh by WATCH
 * notices and LIST deltas. All guarded by m->mu. */
struct folder {
	struct fentry **tab;
	size_t mask, n;
	uint64_t change;	/* as of the last LIST */
	uint64_t mtime_ns;
	int valid;		/* a full listing was applied */
	int dirty;		/* a notice came after the last LIST */
	int busy;		/* being refreshed or read: not evicted */
	int refreshing;		/* a LIST in flight: others wait (m->fcv) */
	uint64_t gen;		/* bumped by every change of the entries */
	uint64_t kgen;		/* gen the kernel's readdir cache holds, or
				   UINT64_MAX: none trusted */
	size_t bytes;		/* accounted to m->mem_used */
	uint64_t tick;		/* m->tick at its last use */
	struct lru lru;		/* on m->flru while it has a table */
	struct mount *m;
	struct minode *dir;	/* whose listing this is */
};

/*
 * Names known missing from an ordinary store directory (not new/, cur/
 * or tmp/), so that a repeated lookup of one (Dovecot probes files its
 * sessions never create) costs no store round trip. Each is true only
 * under the stamps it was recorded with: the mount's neg_epoch (moved
 * by every lock grant unless the home server is SOLE, every directory
 * this mount moves, every reconnection and mailbox move), the
 * directory's neg_gen (moved by every notice for it, a change this
 * mount makes to it without saying which name, a name moved into it
 * from elsewhere, and a lookup that found a name it held) and its
 * watch_gen, and only while the directory's watch is W_ACTIVE and the
 * store is connected. A change this mount makes to one name forgets
 * that name only (inode_dir_changed): no other name of the directory
 * moved, and any other host's change comes as a notice. Names only, at
 * most NEG_MAX; guarded by m->mu. See folder.c and ops_entry.c.
 *
 * |own| is the directory's own_gen, moved by each of this mount's
 * changes to it: an answer to a lookup asked before one of them is not
 * recorded (it may be of the name before the change), but what was
 * recorded stays true for the other names, so finding ignores it.
 */
#define NEG_MAX		32
struct negstamp {
	uint64_t epoch, gen, wgen, own;
	int active;		/* the directory's watch was W_ACTIVE */
};

struct negset {
	struct negstamp at;	/* every name below is missing as of it */
	size_t n;
	char *names[NEG_MAX];
};

struct stage;			/* ops_deliver.c */

struct minode {
	struct minode *hnext;	/* ino hash chain */
	struct minode *lnext;	/* local (parent, name) chain */
	struct minode *pnext;	/* (parent, name) chain of every minode */
	struct lru lru;		/* m->ilru (evictable) or m->elru (evicting) */
	struct lru hl;		/* m->hlinks: ordinary file, nlink > 1 */
	uint64_t tick;		/* m->tick at its last use */
	size_t bytes;		/* accounted to m->mem_used */
	int evicting;		/* on m->elru: the kernel was asked to drop it */
	int parked;		/* off m->ilru until its last child goes */
	int64_t evict_ms;	/* when it went on m->elru */
	fuse_ino_t ino;
	uint64_t nlookup;	/* kernel references */
	int nopen;		/* open handles */
	int nchild;		/* minodes whose parent this is */
	struct minode *parent;	/* guarded by m->mu */
	char *name;		/* guarded by m->mu */
	struct mst_attr attr;	/* guarded by m->mu */
	int64_t attr_at_ms;	/* when attr was fetched */
	int local;		/* not in the store (tmp/ or pending) */
	int store_open;		/* ordinary file: an OPEN held in the store */
	int closing;		/* ordinary file: CLOSEs being sent (mu) */
	int close_wait;		/* ordinary file: CLOSEs decided and not yet
				   answered or failed; keeps it in memory
				   (mu, notify.c rehold) */
	/* Ordinary file: WRITEs from this host not yet seen through by the
	 * kernel, and the size the kernel had before them (ops_file.c). */
	int wr_busy;		/* in flight: stat answers wr_base */
	uint64_t wr_base;
	int wr_settle;		/* answered, the kernel's size not yet
				   moved: stat waits (ops_file.c) */
	/* The largest size a stat or lookup of it has answered, or the
	 * kernel is known to have (a settle done), since its size last
	 * went down: no answer goes below it (inode_stat). */
	uint64_t sz_shown;
	int stale;		/* changed elsewhere: fetch attributes again */
	uint64_t epoch;		/* bumped by every change made elsewhere */
	int unlinked;		/* local, removed: freed at last close */
	enum wstate wstate;	/* directories: guarded by m->mu */
	uint64_t watch_gen;	/* the WATCH in flight (m->watch_seq) */
	int64_t watch_retry_ms;	/* no WATCH again before this */
	enum dkind dkind;	/* directories */
	struct fbuf *buf;	/* local contents */
	struct folder *folder;	/* DK_NEW/DK_CUR */
	struct negset *neg;	/* other directories: missing names */
	uint64_t neg_gen;	/* see struct negset */
	uint64_t own_gen;	/* changes this mount made in it (negstamp) */
	/*
	 * Ordinary file: its name in its parent was the store's as of
	 * these stamps (pos_stamp: the parent's neg_gen and watch as for
	 * struct negset, but m->pos_epoch for the mount-wide one); while
	 * they hold, a lookup of the name is answered from memory.
	 * m->pos_epoch moves with every lock grant, reconnection, mailbox
	 * move, directory renamed elsewhere, and directory this mount
	 * moves (watches are by path); a change this mount makes to one
	 * name of a directory forgets that name only (inode_dir_changed),
	 * so a session's own creates, renames and unlinks do not undo the
	 * names it knows of its other files, nor those of other
	 * mailboxes. A name this mount itself created or renamed a file
	 * to is known from the reply (inode_own_done).
	 */
	struct negstamp pos;
	struct stage *stage;	/* tmp/ file: its body STAGEd in the store
				   (ops_deliver.c); one malloc, owned */
	int nlocal;		/* directories: local files in it, not
				   unlinked (tmp/: deliveries under way) */
	int pt_opens;		/* handles opened with passthrough (mu) */
};

/* An open file. */
struct fhandle {
	struct minode *n;
	int ofile;		/* ordinary store file: I/O by object id */
	int append;		/* O_APPEND: writes land at the store's end */
	struct fbuf *buf;	/* small files: whole contents; NULL msgs */
	int own_buf;		/* buf is the handle's, not the inode's */
	int dirty;		/* buf differs from the store */
	int writable;
	int writer;		/* counted in m->writers */
	int delivered;		/* pending new/cur file: DELIVER done */
	int pt;			/* opened with passthrough (pt_opens) */
	char mailbox[MST_PATH_MAX + 1];	/* messages: for FETCH */
};

/* Work for the notifier thread: a kernel cache invalidation, an UNWATCH
 * of a directory the mount stopped caching, or WATCHes to send again
 * after a reconnection. */
struct inval {
	struct inval *next;
	fuse_ino_t parent;
	char *name;		/* NULL: the inode itself */
	char *unwatch;		/* not NULL: UNWATCH this path instead */
	fuse_ino_t *rewatch;	/* not NULL: WATCH these directories */
	size_t nrewatch;
	void (*after)(void *arg);	/* run once it is done, or NULL */
	void *after_arg;
};

struct mount {
	struct fuse_session *se;
	struct route *route;	/* the store servers (route.c) */
	struct wake *wake;	/* new mail as local events; may be NULL */
	char *spool;
	int timeout_ms;
	double entry_timeout;	/* seconds */
	pthread_mutex_t mu;
	struct minode **itab;	/* guarded by mu */
	size_t imask, in;
	struct minode **ltab;	/* local nodes by (parent, name) */
	size_t lmask, ln;
	struct minode **ptab;	/* every node by (parent, name) */
	size_t pmask, pn;
	uint64_t next_local;	/* guarded by mu */
	unsigned writers;	/* guarded by mu: open handles that may write
				   a local file (ops_file.c): deliveries
				   under way on this mount */
	/* The memory budget (cache_mb=): minodes with their names, folder
	 * caches and the tables, all guarded by mu. */
	size_t mem_budget;	/* bytes */
	size_t mem_used;	/* accounted now */
	size_t mem_evicting;	/* of that, nodes the kernel was asked to drop */
	size_t mem_peak;
	uint64_t evictions;	/* nodes and folder caches evicted */
	uint64_t throttled;	/* waits in mem_throttle */
	uint64_t tick;		/* use counter for the LRU order */
	struct lru ilru;	/* nodes the kernel may be asked to drop */
	struct lru elru;	/* nodes it was asked to drop, oldest first */
	struct lru flru;	/* folder caches holding a table */
	struct lru hlinks;	/* ordinary files with more than one link */
	pthread_mutex_t watch_mu;
	uint64_t watch_seq;	/* guarded by mu */
	int64_t watch_log_ms;	/* guarded by mu: last failed-WATCH log */
	uint64_t watch_failed;	/* guarded by mu: since that log */
	struct locktab *locks;	/* guarded by mu: who may hold locks */
	uint64_t neg_epoch;	/* guarded by mu: see struct negset */
	uint64_t pos_epoch;	/* guarded by mu: see minode.pos */
	pthread_mutex_t nq_mu;
	pthread_cond_t nq_cv;
	struct inval *nq_head, *nq_tail;	/* guarded by nq_mu */
	struct inval *eq_head, *eq_tail;	/* evictions; guarded by nq_mu */
	int nq_stop;		/* guarded by nq_mu */
	pthread_t notifier;
	/* Sizes the kernel is given after a write (ops_file.c). */
	pthread_mutex_t sq_mu;
	pthread_cond_t sq_cv;
	struct settle *sq_head, *sq_tail;	/* guarded by sq_mu */
	int sq_stop;		/* guarded by sq_mu */
	pthread_t settler;
	pthread_cond_t settled_cv;	/* with mu: a wr_settle reached 0 */
	pthread_cond_t fcv;	/* with mu: a folder's LIST is in */
	pthread_cond_t spool_cv;	/* with mu: a SPOOL sender is done */
	pthread_cond_t close_cv;	/* with mu: a CLOSE is on its way */
	int nospool;		/* nospool: no SPOOL while a file is written */
	/* The kernel's passthrough for tmp/ files (passthru.c): pt_fd is
	 * the FUSE device backing files are registered with (-1: option
	 * nopassthrough); pt_on is set once the kernel agreed to it at
	 * INIT, and cleared if registering a backing file is refused. */
	int pt_fd;
	atomic_int pt_on;
	/* A directory minode is about to be freed (mu held): the inode
	 * table calls this, set by main.c to watch_drop, so its watch ends
	 * without inode.c knowing of watches. NULL: nothing to do. */
	void (*dir_gone)(struct mount *m, struct minode *dir);
};

/* ------------------------------------------------------------------
 * Layer 1: util.c, fbuf.c, folder.c (and locktab.c, locktab.h).
 */

/* util.c: clocks and the memory account. */
int64_t mono_ms(void);
uint64_t ts_to_ns(const struct timespec *ts);
uint64_t now_ns(void);		/* CLOCK_REALTIME in ns */
/* Change the memory account by |delta| bytes. mu held. */
void mem_account(struct mount *m, ssize_t delta);

/* fbuf.c */
struct fbuf *fbuf_new(void);
void fbuf_free(struct fbuf *b);
int fbuf_write(struct fbuf *b, const struct mount *m, const void *p,
    size_t len, uint64_t off);
ssize_t fbuf_read(const struct fbuf *b, void *p, size_t len, uint64_t off);
int fbuf_truncate(struct fbuf *b, const struct mount *m, uint64_t size);
/* A contiguous view of the whole contents (maps a spool file). */
int fbuf_map(struct fbuf *b, const uint8_t **p_out);
void fbuf_unmap(struct fbuf *b, const uint8_t *p);
/* While pinned (a store request sends from a view, not a copy), writes
 * and truncation fail with -ETXTBSY: the view must not change or move.
 * Pins nest; the caller serialises them with the writes. */
void fbuf_pin(struct fbuf *b);
void fbuf_unpin(struct fbuf *b);
/* Replace the contents with |len| bytes. */
int fbuf_set(struct fbuf *b, const struct mount *m, const void *p,
    size_t len);
/* Make |b| a backing file for the kernel's passthrough: its contents
 * move to a spool file (if in memory), registered with the FUSE device
 * |ctl|. From then on the kernel may write it directly; b->bid is the
 * id to answer opens with. 0, or a negative errno with |b| as before
 * (EPERM: not allowed here; ETXTBSY: pinned). */
int fbuf_backing(struct fbuf *b, const struct mount *m, int ctl);
/* A backing file: take its size from the file. 1 if it changed since
 * the last look (writes through the kernel: gen moves), else 0. A
 * pinned buffer is not looked at: its view's size stays. */
int fbuf_refresh(struct fbuf *b);

/* folder.c: the pure listing table; every function with mu held. */
/* An empty cache of directory |dir|, accounted to |m|. */
struct folder *folder_new(struct mount *m, struct minode *dir);
struct fentry *folder_find(struct folder *f, const char *name);
void folder_put(struct folder *f, const char *name,
    const struct mst_attr *a);
void folder_del(struct folder *f, const char *name);
void folder_clear(struct folder *f);		/* every entry goes */
/* Entries and table go (off m->flru); the struct stays. */
void folder_drop_table(struct folder *f);
void folder_free(struct folder *f);
/* Apply one LIST reply (all its frames): a full listing replaces the
 * entries, a delta adds and removes; sets change, mtime_ns and valid. 0
 * or a negative errno (the cache may then be partly updated): a frame
 * that does not decode, or an entry that is not a message (a mail
 * folder holds nothing else), is -EPROTO or the decoder's error. */
int folder_apply(struct folder *f, const struct mreply *r);
/* Is |r| a delta that cannot follow |since| (its counter is below it:
 * the store's numbers went back, as a store from before change-number
 * epochs does after a crash, or |since| is another store's)? Then it
 * must not be applied; the folder is listed in full instead. A reply
 * that does not decode is left to folder_apply to refuse. */
int folder_delta_stale(const struct mreply *r, uint64_t since);
/* Missing names (struct negset). The stamps of |dir| now. */
void neg_stamp(const struct mount *m, const struct minode *dir,
    struct negstamp *st);
/* The stamps of ordinary files' names in |dir| now (minode.pos), and
 * whether |at| still holds (the watch active). */
void pos_stamp(const struct mount *m, const struct minode *dir,
    struct negstamp *st);
int pos_current(const struct mount *m, const struct minode *dir,
    const struct negstamp *at);
/* Is |name| known missing from |dir|, its stamps being |now|? Only if
 * it was recorded under the same stamps, the watch active. */
int neg_find(const struct minode *dir, const struct negstamp *now,
    const char *name);
/* The store said |name| is missing from |dir|, asked under stamps |at|:
 * record it, unless the stamps moved since (|dir|'s are read now) or the
 * watch was not active. A full set is emptied first. */
void neg_add(struct mount *m, struct minode *dir,
    const struct negstamp *at, const char *name);
/* Every name of |dir| goes (the set too). */
void neg_drop(struct mount *m, struct minode *dir);
/* |name| is no longer known missing from |dir| (this mount made it). */
void neg_del(struct mount *m, struct minode *dir, const char *name);
/* Has nothing but one change by this mount moved the stamps of |dir|
 * since |at| (taken as |now| is, neg_stamp or pos_stamp, before the
 * change was sent)? Then its reply is all that changed in |dir|. */
int stamp_own_only(const struct negstamp *at, const struct negstamp *now);
/* This mount changed |dir| (the store's reply says when): no notice
 * comes for our own changes, so move its mtime forward here. */
void folder_touch(struct minode *dir, uint64_t mtime_ns);

/* ------------------------------------------------------------------
 * Layer 2: inode.c, the inode table. Every function with mu held unless
 * noted.
 */
int inode_init(struct mount *m);
void inode_fini(struct mount *m);
struct minode *inode_get(struct mount *m, fuse_ino_t ino);
/* Find or create the minode for a store object under |parent|; takes
 * a kernel reference when |lookup|. Sets *drop when the kernel's pages
 * of an ordinary file it cached must go (the caller queues that:
 * node_remote does). */
struct minode *inode_remote(struct mount *m, struct minode *parent,
    const char *name, const struct mst_attr *a, int lookup, int *drop);
struct minode *inode_local_find(struct mount *m, struct minode *parent,
    const char *name);
/* The directory |parent|/|name| (|len| bytes, not NUL-terminated), from
 * the (parent, name) index, or NULL. */
struct minode *inode_find_dir(struct mount *m, const struct minode *parent,
    const char *name, size_t len);
/* May the attributes the mount holds for store object |n| (not a folder)
 * answer a getattr without the store? While notices keep them (a
 * watched directory under a watched parent) until one says they moved,
 * else for the attribute timeout after they were fetched. mu held. */
int inode_attr_fresh(const struct mount *m, const struct minode *n);
/* Do notices report every change of directory |n|'s attributes (its
 * own watch its contents, its parent's its entry)? */
int inode_attr_notified(const struct minode *n);
/* The ordinary file |parent|/|name| whose name is known (minode.pos) as
 * of the stamps |now| of |parent|, or NULL. */
struct minode *inode_known_file(struct mount *m, const struct minode *parent,
    const char *name, const struct negstamp *now);
/* Is ordinary file |n| known by its name now (as inode_known_file would
 * find it)? Then its attributes are as fresh as a lookup's answer from
 * memory: a change elsewhere would have marked it stale. */
int inode_file_known(const struct mount *m, const struct minode *n);
/* |parent|/|name| was removed from the store: a directory minode by that
 * name loses its name, so notices and paths no longer reach it. */
void inode_detach_dir(struct mount *m, struct minode *parent,
    const char *name);
/* |n| was used: it becomes the most recently used, and if the kernel was
 * asked to drop it, that no longer counts. */
void inode_touch(struct mount *m, struct minode *n);
/* May the attributes cached for |n| be trusted for their time? Not when
 * the directory they depend on is not watched. */
int inode_trusted(const struct minode *n);
/* May the names cached in directory |dir| be trusted? */
int inode_dir_trusted(const struct minode *dir);
struct minode *inode_local_new(struct mount *m, struct minode *parent,
    const char *name, mode_t mode);
void inode_local_unlink(struct mount *m, struct minode *n);
/*
 * A local file is now in the store as |a| (delivered, or PUT). The kernel
 * may still reach it by its local inode number (a renamed dentry keeps
 * its inode), so it stays as an alias of the store object: reads go to
 * the store, writes to a message are refused.
 */
void inode_delivered(struct mount *m, struct minode *n,
    const struct mst_attr *a);
/* Something in the store directory |dir| changed through this mount:
 * fetch its attributes (mtime, ctime, link count) again at the next
 * getattr (unless inode_own_done may keep the reply's); the ordinary
 * files named |name| in it, and every hard-linked one, are stale too
 * (their link counts moved). |name| NULL: no name of it is known
 * missing or present any more (its neg_gen); else only |name| is
 * forgotten (inode_name_changed), the change moving own_gen. */
void inode_dir_changed(struct mount *m, struct minode *dir,
    const char *name);
/* The second name a change made through this mount moved in |dir|
 * (a rename within it): forgotten as inode_dir_changed's |name|. */
void inode_name_changed(struct mount *m, struct minode *dir,
    const char *name);
/*
 * What a change this mount sends to the store directory |dir| is
 * checked against when its reply comes (inode_own_stamp, before it is
 * sent): the name stamps, and whether notices kept the directory's
 * attributes (a watched directory under a watched parent, fetched).
 */
struct ownstamp {
	struct negstamp neg, pos;
	int attr_kept;
};
void inode_own_stamp(const struct mount *m, const struct minode *dir,
    struct ownstamp *os);
/* The change was made and inode_dir_changed ran for it: if nothing else
 * moved |dir|'s stamps since |os| (no notice for it, no lock grant from
 * a server that is not SOLE, no reconnection), what the reply says is
 * all that changed there. |gone| (or NULL) is known missing now; |came|
 * (or NULL), an ordinary file this mount created or renamed into |dir|,
 * is known by its name; when |dir_change| is not 0, it and
 * |dir_mtime_ns| are the directory's change counter and mtime (and
 * ctime) afterwards, the only attributes that a file's name coming or
 * going moves, and it answers getattr from memory again. */
void inode_own_done(struct mount *m, struct minode *dir,
    const struct ownstamp *os, const char *gone, struct minode *came,
    uint64_t dir_change, uint64_t dir_mtime_ns);
/* Re-parent and rename a minode; no name is known missing from
 * |parent| any more, nor from |n| (struct negset). */
int inode_move(struct mount *m, struct minode *n, struct minode *parent,
    const char *name);
/* A rename of |n| this mount made, its directories told of it with
 * inode_dir_changed: as inode_move, but the other names of |parent|
 * stay known. */
int inode_rename(struct mount *m, struct minode *n, struct minode *parent,
    const char *name);
/* Drop |nlookup| kernel references; frees unused inodes. */
void inode_forget(struct mount *m, struct minode *n, uint64_t nlookup);
/* Release an open handle's reference. */
void inode_close(struct mount *m, struct minode *n);
/* A CLOSE of |n| counted in n->close_wait was answered or failed (mu
 * held); |n| may go. */
void inode_close_done(struct mount *m, struct minode *n);
/* Path of |n| relative to the store root. 0 or -ENAMETOOLONG. */
int inode_path(const struct minode *n, char *buf, size_t cap);
/* Path of |dir|/|name|. */
int inode_child_path(const struct minode *dir, const char *name, char *buf,
    size_t cap);
/* Split a directory path into mailbox, folder and kind, by the shape of
 * the path alone (see inode.c): |m| is not consulted. */
enum dkind inode_classify(const struct mount *m, const char *path,
    struct mst_str *mailbox, struct mst_str *folder);
/* A local file written by the kernel directly (passthrough, see
 * fbuf_refresh): learn its size, and as a write does, drop its
 * set-user-ID bit (and set-group-ID if group-executable). */
void inode_local_refresh(struct minode *n);
/* The attributes of |n|; a local file's are refreshed first. */
void inode_stat(struct minode *n, struct stat *st);
/* Whether stat must not show the store's size yet (see inode.c). */
int inode_size_held(const struct minode *n);
/* Owner of a new file (|dir| 0) or directory made by |ctx| in |parent|,
 * as a local disk decides it: the caller's uid; the parent's gid if the
 * parent is set-group-ID (new directories then inherit the bit), else
 * the caller's gid. Sets a->uid and a->gid, may add S_ISGID to a->mode. */
void inode_new_owner(const struct minode *parent, const struct fuse_ctx *ctx,
    int dir, struct mst_attr *a);
/* An ordinary file of the store (not a message, not local)? */
int is_ofile(const struct minode *n);
/* The store's word on ordinary file |n| now: |a| replaces its attributes
 * (unless older than what is known), and if the file changed since the
 * kernel cached it, 1 is returned (the caller drops the kernel's
 * pages). */
int ofile_refresh(struct minode *n, const struct mst_attr *a);
/* The memory budget's choices (the actions are mem_check's, notify.c).
 * Over the budget, not counting what the kernel was asked to drop? */
int inode_over_budget(const struct mount *m);
/* Before a pass: nodes the kernel did not drop in time count again. */
void inode_evict_start(struct mount *m, int64_t now);
enum evict {
	EV_DONE = 0,		/* down to 90% of the budget, or nothing left */
	EV_NODE,		/* ask the kernel to drop *n_out (counted) */
	EV_FOLDER,		/* free *f_out's table now (the caller must) */
};
/* The next eviction of a pass, least recently used first; |work| counts
 * the pass's steps (bounded). Never the root, local files, open files,
 * nor a directory with children (parked until its last child goes). */
enum evict inode_evict_next(struct mount *m, int64_t now, size_t *work,
    struct minode **n_out, struct folder **f_out);

/* ------------------------------------------------------------------
 * Layer 3: store.c, the store client: declared in store.h (no FUSE
 * types).
 */

/* ------------------------------------------------------------------
 * Layer 4: notify.c and wake.c: notices, watches, invalidation.
 */
/* passthru.c: the kernel's passthrough with libfuse 3.14. Install the
 * device I/O that asks for it at INIT (before the session loop runs);
 * 0 or a negative errno (then the mount works without it). */
int passthru_start(struct mount *m);
/* The next open or create reply this thread sends names backing file
 * |bid| (0: none again); passthru_sent says whether it went so. */
void passthru_next(int bid);
int passthru_sent(void);
/* A new tmp/ file |n| (mu held): back its buffer for passthrough if the
 * kernel agreed to it. 0 when backed; otherwise the file stays with the
 * mount's own buffer, as without passthrough. */
int passthru_back(struct mount *m, struct minode *n);

/* inode_remote, and the kernel's pages dropped when it says so. mu
 * held. */
struct minode *node_remote(struct mount *m, struct minode *parent,
    const char *name, const struct mst_attr *a, int lookup);
/* Over the budget? Then evict the least recently used folder caches and
 * ask the kernel to drop its coldest inodes, down to 90% of it. Called
 * after operations that allocate; mu NOT held. */
void mem_check(struct mount *m);
/* Far past the budget, wait (100 ms at most) for the kernel to let go of
 * evicted entries. Only after the kernel has had its answer; mu NOT
 * held. */
void mem_throttle(struct mount *m);
/* Bring a new/ or cur/ cache up to date; mu NOT held. */
int folder_refresh(struct mount *m, struct minode *dir);
/* WATCH |dir| unless watched or a WATCH is under way (async; a failed
 * one is retried at a later use, at most once a second); mu NOT held. */
void watch_dir(struct mount *m, struct minode *dir);
/* The mount stops caching |dir| (mu held): its folder cache goes, it is
 * marked unwatched and the notifier thread UNWATCHes its path. */
void folder_evict(struct mount *m, struct folder *f);
/* |dir| is freed (mu held): UNWATCH its path if it was watched. */
void watch_drop(struct mount *m, struct minode *dir);
/* mconn callbacks. */
void on_notice(void *arg, const struct mst_notify *n);
void on_up(void *arg);
/* route.c: mailboxes moved to other servers; watch them again there. */
void on_moved(void *arg);
/* Kernel invalidations, queued for the notifier thread. */
void inval_queue(struct mount *m, fuse_ino_t parent, const char *name);
/* Ask the kernel to drop |parent|/|name| to free memory: queued behind
 * every other notifier work. */
void evict_queue(struct mount *m, fuse_ino_t parent, const char *name);
/* Invalidate inode |ino| (pages and attributes), then call |after| on the
 * notifier thread: for replies that must not reach the kernel before the
 * invalidation has. If memory runs out, |after| runs at once. */
void inval_then(struct mount *m, fuse_ino_t ino, void (*after)(void *),
    void *arg);
void *notifier_main(void *arg);
void *settler_main(void *arg);
void settler_stop(struct mount *m);
/* Wait (mu held) until the kernel has the size of |n| that a stat would
 * answer; see ops_file.c. */
void ofile_settle_wait(struct mount *m, struct minode *n);

/* wake.c: new mail becomes a local file-system event (inotify) for IDLE
 * readers on this host. */
int wake_start(struct mount *m, const char *mountpoint);
/* Queue a poke of |path| (new/ or cur/; other directories are ignored).
 * Never blocks: called from the connection's receiver thread. */
void wake_dir(struct mount *m, fuse_ino_t ino, struct mst_str path);
void wake_stop(struct mount *m);	/* no more pokes */
/* Join the wake thread: only once the FUSE session is destroyed (it may
 * be inside a call to the mount). */
void wake_free(struct mount *m);
/* Put the wake thread's own request handling in front of |ops| (the ops
 * it replaces are kept and called for everything else). */
void wake_ops(struct fuse_lowlevel_ops *ops);

/* opcount.c: requests by kind, kernel's and store's. */
void opcount_wrap(struct fuse_lowlevel_ops *ops);
size_t opcount_format(char *buf, size_t cap);

/* ------------------------------------------------------------------
 * Layer 5: ops_*.c, the FUSE operations: each op_* a thin adapter over
 * a do_* core that returns 0 or a negative errno. main.c puts them in
 * its ops table.
 */
static inline struct mount *
mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Reply helpers shared by the ops files. */
void reply_entry(fuse_req_t req, struct mount *m, struct minode *n);
/* The kernel's entry for |n| (mu held): how long it may keep the name
 * and the attributes. */
void entry_fill(struct mount *m, struct minode *n,
    struct fuse_entry_param *e);
/* Deliver a local buffer as |dir|/|name|; fills *attr_out. */
int do_deliver(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, mode_t mode, uid_t uid, gid_t gid,
    struct mst_attr *attr_out);

/* ops_entry.c */
void op_init(void *userdata, struct fuse_conn_info *conn);
void op_lookup(fuse_req_t, fuse_ino_t, const char *);
void op_forget(fuse_req_t, fuse_ino_t, uint64_t);
void op_forget_multi(fuse_req_t, size_t, struct fuse_forget_data *);
void op_getattr(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
void op_setattr(fuse_req_t, fuse_ino_t, struct stat *, int,
    struct fuse_file_info *);
void op_mkdir(fuse_req_t, fuse_ino_t, const char *, mode_t);
void op_unlink(fuse_req_t, fuse_ino_t, const char *);
void op_rmdir(fuse_req_t, fuse_ino_t, const char *);
void op_statfs(fuse_req_t, fuse_ino_t);
void op_mknod(fuse_req_t, fuse_ino_t, const char *, mode_t, dev_t);
void op_symlink(fuse_req_t, const char *, fuse_ino_t, const char *);
/* ops_dir.c */
void op_opendir(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
void op_readdirplus(fuse_req_t, fuse_ino_t, size_t, off_t,
    struct fuse_file_info *);
void op_readdir(fuse_req_t, fuse_ino_t, size_t, off_t,
    struct fuse_file_info *);
void op_releasedir(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
/* ops_file.c */
void op_create(fuse_req_t, fuse_ino_t, const char *, mode_t,
    struct fuse_file_info *);
void op_open(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
void op_read(fuse_req_t, fuse_ino_t, size_t, off_t, struct fuse_file_info *);
void op_write(fuse_req_t, fuse_ino_t, const char *, size_t, off_t,
    struct fuse_file_info *);
void op_flush(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
void op_fsync(fuse_req_t, fuse_ino_t, int, struct fuse_file_info *);
void op_release(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
/* Ordinary store files. */
int ofile_link(struct mount *m, struct minode *src, struct minode *dir,
    const char *name);
int ofile_setattr(struct mount *m, struct minode *n, const struct stat *st,
    int set);
int ofile_getattr(struct mount *m, struct minode *n);
/* ops_deliver.c */
/* fsync(2) of a tmp/ file: make its body durable in the store now, as a
 * staged body, so that its link() or rename() into new/ or cur/ only
 * commits a name (COMMIT). Best effort: on any failure, or with a store
 * that does not offer MST_FEAT_STAGE, the link sends the whole DELIVER
 * as before. Never holds mu across the round trip. */
void stage_tmp(struct mount *m, struct minode *n);
/* A tmp/ file goes without being delivered (unlink): its staged body,
 * taken off |n| with mu held (stage_take), is dropped in the store;
 * stage_drop without mu. */
struct stage *stage_take(struct minode *n);
void stage_drop(struct mount *m, struct stage *st);
/* A tmp/ file was written (|wrote| bytes): if it holds a SPOOL_CHUNK
 * past its last SPOOL, |n| is returned with one nopen reference held for
 * spool_write, else NULL. After the kernel has its answer, spool_write sends those
 * bytes in pieces while the writer goes on, and gives the reference
 * back. Mu NOT held. */
struct minode *spool_hold(struct mount *m, struct minode *n, size_t wrote);
void spool_write(struct mount *m, struct minode *n);
void op_link(fuse_req_t, fuse_ino_t, fuse_ino_t, const char *);
void op_rename(fuse_req_t, fuse_ino_t, const char *, fuse_ino_t,
    const char *, unsigned int);
/* ops_xattr.c: the routing view (user.mstore.servers, .server) */
void op_getxattr(fuse_req_t, fuse_ino_t, const char *, size_t);
void op_listxattr(fuse_req_t, fuse_ino_t, size_t);
/* ops_lock.c */
void op_getlk(fuse_req_t, fuse_ino_t, struct fuse_file_info *,
    struct flock *);
void op_setlk(fuse_req_t, fuse_ino_t, struct fuse_file_info *,
    struct flock *, int);
void op_flock(fuse_req_t, fuse_ino_t, struct fuse_file_info *, int);
/* Release the POSIX locks of |owner| on |n| (flush) or its flock lock
 * (release); 0 or a negative errno. */
int lock_release(struct mount *m, struct minode *n, uint64_t owner,
    int flock);

#endif /* MST_MOUNT_H */
