/*
 * notify.c - keeping the mount's caches true to the store: folder caches
 * brought up to date by LIST (folder_refresh), WATCHes of the
 * directories the kernel looks into, the store's notices (on_notice,
 * on_up) and the kernel cache invalidations they cause, the memory
 * budget's evictions (mem_check), and the notifier thread that runs the
 * queued work. A folder cache is filled by one full LIST, then brought
 * up to date with LIST deltas (since its change counter) whenever a
 * NOTIFY has marked it dirty. Each notice becomes a kernel cache
 * invalidation, done on the notifier thread: the kernel may hold a
 * directory lock while a FUSE op waits for the store, so invalidating
 * from the connection's receiver thread could deadlock. Below the ops
 * (ops_*.c), above the caches, the inode table and the store client:
 * the layers under it report what is to be done (flags, outcomes, the
 * m->dir_gone hook) and this file does it.
 *
 * A directory's watch (minode->wstate):
 *
 *            watch_dir                 WATCH answered
 *   W_NONE -----------> W_PENDING -------------------> W_ACTIVE
 *     ^  ^   (at a use,     |  WATCH failed or refused     |
 *     |  |   1 s after a    |  (retried at a use after     |
 *     |  |   failure)       |  WATCH_RETRY_MS)             |
 *     |  +------------------+                              |
 *     +----------------------------------------------------+
 *       folder_evict, reconnection (on_up), its mailbox moved to
 *       another server (on_moved), directory freed
 *
 * Only W_ACTIVE lets a cache be trusted; otherwise each use asks the
 * store (a LIST delta; LOOKUP and no kernel caching for names and
 * attributes under it), so a refused or lost WATCH never hides a change.
 * The names known missing from a directory (struct negset) go with its
 * watch, with every notice for it (neg_gen), and all at once with a
 * reconnection or a mailbox move (neg_epoch).
 * An answer counts only for the WATCH last sent (watch_gen). WATCH and
 * UNWATCH of one path go out in the order decided, under m->watch_mu; an
 * UNWATCH is sent from the notifier thread, and not at all if the path
 * has a directory that wants its watch again by then (in the store, two
 * WATCHes of a path are one watch, which the UNWATCH would end).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "mount.h"
#include "locktab.h"
#include "mstat.h"
#include "store.h"

/* The directory minode for |path|, component by component through the
 * (parent, name) index; NULL when the mount does not hold it. mu held. */
static struct minode *
dir_by_path(struct mount *m, const char *path, size_t len)
{
	struct minode *dir = inode_get(m, FUSE_ROOT_ID);
	size_t i = 0, j;

	while (dir && i < len) {
		for (j = i; j < len && path[j] != '/'; j++)
			;
		dir = inode_find_dir(m, dir, path + i, j - i);
		i = j + 1;
	}
	return dir;
}

void
folder_evict(struct mount *m, struct folder *f)
{
	folder_drop_table(f);
	f->valid = 0;		/* the next use lists it in full */
	f->dirty = 0;
	f->dir->attr_at_ms = 0;
	watch_drop(m, f->dir);
}

struct minode *
node_remote(struct mount *m, struct minode *parent, const char *name,
    const struct mst_attr *a, int lookup)
{
	int drop = 0;
	struct minode *n = inode_remote(m, parent, name, a, lookup, &drop);
	struct negstamp st;

	neg_stamp(m, parent, &st);
	if (neg_find(parent, &st, name))
		parent->neg_gen++;	/* it is there now */
	if (n && drop)
		inval_queue(m, n->ino, NULL);
	return n;
}

/* Past the budget, evict the least recently used first, down to 90% of
 * it (inode.c chooses): a folder cache is freed at once (folder_evict);
 * a node is asked of the kernel (evict_queue), whose FORGET frees it. */
void
mem_check(struct mount *m)
{
	struct minode *n = NULL;
	struct folder *f = NULL;
	size_t work = 0;
	int64_t now;
	enum evict ev;

	pthread_mutex_lock(&m->mu);
	if (!inode_over_budget(m)) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	now = mono_ms();
	inode_evict_start(m, now);
	while ((ev = inode_evict_next(m, now, &work, &n, &f)) != EV_DONE) {
		if (ev == EV_FOLDER) {
			folder_evict(m, f);
			m->evictions++;
		} else {
			evict_queue(m, n->parent->ino, n->name);
		}
	}
	pthread_mutex_unlock(&m->mu);
}

/*
 * Past the budget by a thirty-second, what the kernel has not yet let go of
 * is what holds the account up: the notifier's evictions lag, and the
 * kernel's FORGETs follow them. A worker that has just answered the
 * kernel (so holds none of its directory locks) then waits for them, at
 * most MEM_THROTTLE_MS, before it takes another request; a walk that
 * outruns the evictions slows down instead of growing the caches.
 */
#define MEM_THROTTLE_MS	100

void
mem_throttle(struct mount *m)
{
	const struct timespec step = { 0, 2 * 1000 * 1000 };
	int64_t until = 0;
	int over;

	for (;;) {
		pthread_mutex_lock(&m->mu);
		over = m->mem_used > m->mem_budget + m->mem_budget / 32;
		if (over && until == 0)
			m->throttled++;
		pthread_mutex_unlock(&m->mu);
		if (!over)
			return;
		if (until == 0)
			until = mono_ms() + MEM_THROTTLE_MS;
		else if (mono_ms() >= until)
			return;
		(void)nanosleep(&step, NULL);	/* EINTR: just check again */
	}
}

/*
 * A folder cache may be trusted while its directory is watched and no
 * notice came since the last LIST. Otherwise (never listed, evicted, a
 * notice, or not watched: the WATCH failed, was refused or is still
 * under way) every use asks the store: a LIST delta since the cached
 * change counter, or a full LIST.
 */
int
folder_refresh(struct mount *m, struct minode *dir)
{
	char path[MST_PATH_MAX + 1];
	struct mst_list_req q = { 0 };
	struct folder *f = dir->folder;
	struct mreply r;
	int rc;

	watch_dir(m, dir);
	pthread_mutex_lock(&m->mu);
	f->tick = ++m->tick;
	if (f->tab)
		lru_add_head(&m->flru, &f->lru);
	/* One LIST of a folder at a time: a delta must meet the cache it
	 * was asked for, and two in flight could be applied out of order
	 * (lookups and listings of one directory run in parallel). */
	while (f->refreshing)
		pthread_cond_wait(&m->fcv, &m->mu);
	if (f->valid && !f->dirty && dir->wstate == W_ACTIVE) {
		pthread_mutex_unlock(&m->mu);
		mstat_add(MS_FOLDER_HITS, 1);
		return 0;
	}
	rc = inode_path(dir, path, sizeof path);
	if (rc == 0) {
		q.sub = dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
		(void)inode_classify(m, path, &q.mailbox, &q.folder);
		q.since = f->valid ? f->change : 0;
		f->dirty = 0;	/* a notice during the LIST dirties it again */
		f->busy++;	/* a delta must meet the cache it was asked for */
		f->refreshing = 1;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	mstat_add(MS_FOLDER_MISSES, 1);
	rc = store_list(m, &q, &r);
	if (rc == 0 && q.since && folder_delta_stale(&r, q.since)) {
		/* Not a delta of what we hold (mstore-protocol(7), LIST):
		 * a delta would be short, so the whole listing. */
		syslog(LOG_NOTICE, "mount.mstore: LIST %s since %llu: the "
		    "store's counter is below it; listing in full", path,
		    (unsigned long long)q.since);
		mreply_free(&r);
		q.since = 0;
		rc = store_list(m, &q, &r);
	}
	pthread_mutex_lock(&m->mu);
	f->busy--;
	f->refreshing = 0;
	pthread_cond_broadcast(&m->fcv);
	if (rc == 0 && (rc = folder_apply(f, &r)) < 0) {
		/* Partly applied at most: list it whole next time. */
		f->valid = 0;
		rc = store_bad_reply(MST_OP_LIST, rc, "listing refused");
	}
	if (rc < 0)
		f->dirty = 1;
	else {
		dir->attr.mtime_ns = dir->attr.ctime_ns = f->mtime_ns;
		dir->attr.change = f->change;
	}
	pthread_mutex_unlock(&m->mu);
	mreply_free(&r);
	mem_check(m);		/* a full listing may have passed the budget */
	return rc;
}

/* Failed WATCHes are logged at most once a minute, with a count. */
#define WATCH_LOG_GAP_MS	60000
/* A directory whose WATCH failed is not watched again sooner. */
#define WATCH_RETRY_MS		1000

struct watch_wait {
	struct mount *m;
	fuse_ino_t ino;
	uint64_t gen;
};

/*
 * The store's answer to a WATCH. Only the WATCH last sent for a directory
 * that still wants it counts (an eviction, a reconnection or the
 * directory's end since then left it W_NONE with another generation).
 * On success, changes between what was cached and the counter the store
 * returned were missed: the cache is checked again at its next use. A
 * failure leaves the directory unwatched, so every use of it asks the
 * store, and the next use after WATCH_RETRY_MS tries again.
 */
static void
watch_done(void *arg, struct mreply *r)
{
	struct watch_wait *w = arg;
	struct mount *m = w->m;
	struct mst_watch_rep wr = { 0 };
	struct minode *d;
	int rc = r->status, logit = 0;
	uint64_t failed = 0;

	if (rc == 0)
		rc = r->nframes == 1 ? mst_watch_rep_decode(&wr,
		    r->frames[0].p, r->frames[0].len) : -EPROTO;
	mreply_free(r);
	pthread_mutex_lock(&m->mu);
	d = inode_get(m, w->ino);
	if (d && d->watch_gen == w->gen && d->wstate == W_PENDING) {
		if (rc == 0) {
			d->wstate = W_ACTIVE;
			d->attr_at_ms = 0;
			if (d->folder && (!d->folder->valid ||
			    d->folder->change != wr.change))
				d->folder->dirty = 1;
		} else {
			d->wstate = W_NONE;
			d->watch_retry_ms = mono_ms() + WATCH_RETRY_MS;
			m->watch_failed++;
			if (mono_ms() - m->watch_log_ms >= WATCH_LOG_GAP_MS) {
				m->watch_log_ms = mono_ms();
				failed = m->watch_failed;
				m->watch_failed = 0;
				logit = 1;
			}
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (logit)
		syslog(LOG_WARNING, "mount.mstore: WATCH refused or failed "
		    "(%s; %llu since the last report): those directories are "
		    "checked with the store at every use", strerror(-rc),
		    (unsigned long long)failed);
	free(w);
}

/* WATCH or UNWATCH |path| on its server: a mail folder's new/ and cur/
 * on its mailbox's server (route.c), any other directory on the home
 * server. */
static int
watch_call(struct mount *m, const char *path, unsigned op,
    const uint8_t *buf, size_t n, mconn_cb *cb, void *arg)
{
	struct mst_str mb, folder;

	if (inode_classify(NULL, path, &mb, &folder) == DK_PLAIN)
		mb = mst_str_of(ROUTE_HOME);
	return route_call_async(m->route, mb.p, mb.len, op, buf, n, NULL, 0,
	    0, cb, arg);
}

/* Send a WATCH for directory |ino| if it wants one. watch_mu keeps it in
 * order with UNWATCHes of the same path (see unwatch_send). */
static void
watch_ino(struct mount *m, fuse_ino_t ino)
{
	char path[MST_PATH_MAX + 1];
	struct mst_path_req q = { 0 };
	struct watch_wait *w = NULL;
	uint8_t buf[MST_PATH_MAX + 8];
	struct minode *d;
	int n = -1;

	pthread_mutex_lock(&m->watch_mu);
	pthread_mutex_lock(&m->mu);
	d = inode_get(m, ino);
	if (d && d->attr.type == MST_T_DIR && d->wstate == W_NONE &&
	    d->dkind != DK_TMP && mono_ms() >= d->watch_retry_ms &&
	    inode_path(d, path, sizeof path) == 0 &&
	    (w = malloc(sizeof *w)) != NULL) {
		q.path = mst_str_of(path);
		n = mst_path_req_encode(&q, buf, sizeof buf);
		if (n >= 0) {
			d->wstate = W_PENDING;
			d->watch_gen = ++m->watch_seq;
			w->m = m;
			w->ino = ino;
			w->gen = d->watch_gen;
		}
	}
	pthread_mutex_unlock(&m->mu);
	if (n >= 0 && watch_call(m, path, MST_OP_WATCH, buf, (size_t)n,
	    watch_done, w) < 0) {
		pthread_mutex_lock(&m->mu);
		d = inode_get(m, ino);
		if (d && d->watch_gen == w->gen) {
			d->wstate = W_NONE;
			d->watch_retry_ms = mono_ms() + WATCH_RETRY_MS;
		}
		pthread_mutex_unlock(&m->mu);
		free(w);
	} else if (n < 0) {
		free(w);
	}
	pthread_mutex_unlock(&m->watch_mu);
}

void
watch_dir(struct mount *m, struct minode *dir)
{
	int want;

	pthread_mutex_lock(&m->mu);
	want = dir->wstate == W_NONE && dir->dkind != DK_TMP &&
	    mono_ms() >= dir->watch_retry_ms;
	pthread_mutex_unlock(&m->mu);
	if (want)
		watch_ino(m, dir->ino);
}

static void
inval_free(struct inval *iv)
{
	free(iv->name);
	free(iv->unwatch);
	free(iv->rewatch);
	free(iv);
}

/*
 * Append |iv| to the notifier's main queue (|low| 0) or its low-priority
 * queue (evictions: done when nothing else waits); nq_mu held. 0, or
 * -ESHUTDOWN when the notifier has returned (m->nq_stop 2, at unmount):
 * the connection still brings notices until it is freed after that, and
 * nothing would run or free what they queue. The caller then drops |iv|
 * with inval_drop, once nq_mu is let go.
 */
static int
nq_append(struct mount *m, struct inval *iv, int low)
{
	struct inval **head = low ? &m->eq_head : &m->nq_head;
	struct inval **tail = low ? &m->eq_tail : &m->nq_tail;

	if (m->nq_stop > 1)
		return -ESHUTDOWN;
	if (*tail)
		(*tail)->next = iv;
	else
		*head = iv;
	*tail = iv;
	pthread_cond_signal(&m->nq_cv);
	return 0;
}

/* Work that no notifier will run: its |after| runs at once, as when
 * memory runs out (see inval_then). nq_mu not held. */
static void
inval_drop(struct inval *iv)
{
	if (iv->after)
		iv->after(iv->after_arg);
	inval_free(iv);
}

static void
nq_push(struct mount *m, struct inval *iv, int low)
{
	int rc;

	pthread_mutex_lock(&m->nq_mu);
	rc = nq_append(m, iv, low);
	pthread_mutex_unlock(&m->nq_mu);
	if (rc < 0)
		inval_drop(iv);
}

/* Queue an UNWATCH of |path| for the notifier thread; mu held. */
static void
unwatch_queue(struct mount *m, const char *path)
{
	struct inval *iv = calloc(1, sizeof *iv);

	if (iv == NULL || (iv->unwatch = strdup(path)) == NULL) {
		free(iv);	/* the watch lasts until the connection ends */
		return;
	}
	nq_push(m, iv, 1);
}

void
evict_queue(struct mount *m, fuse_ino_t parent, const char *name)
{
	struct inval *iv = calloc(1, sizeof *iv);

	if (iv == NULL || (iv->name = strdup(name)) == NULL) {
		free(iv);	/* it stays; expired from m->elru later */
		return;
	}
	iv->parent = parent;
	nq_push(m, iv, 1);
}

void
watch_drop(struct mount *m, struct minode *dir)
{
	char path[MST_PATH_MAX + 1];

	if (dir->wstate != W_NONE && inode_path(dir, path, sizeof path) == 0)
		unwatch_queue(m, path);
	dir->wstate = W_NONE;
	dir->watch_gen = ++m->watch_seq;	/* a late answer is ignored */
	dir->watch_retry_ms = 0;
	neg_drop(m, dir);	/* unwatched: nothing says a name came */
}

static void
unwatch_done(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);	/* -ENOENT: a reconnection already ended it */
}

/* On the notifier thread: UNWATCH |path| unless a directory by that path
 * wants its watch again (a WATCH sent since then was one watch in the
 * store, which this UNWATCH would end). */
static void
unwatch_send(struct mount *m, const char *path)
{
	struct mst_path_req q = { mst_str_of(path) };
	uint8_t buf[MST_PATH_MAX + 8];
	struct minode *d;
	int n = mst_path_req_encode(&q, buf, sizeof buf), skip;

	if (n < 0)
		return;
	pthread_mutex_lock(&m->watch_mu);
	pthread_mutex_lock(&m->mu);
	d = dir_by_path(m, path, strlen(path));
	skip = d && d->wstate != W_NONE;
	pthread_mutex_unlock(&m->mu);
	/* If it cannot be sent, the watch ends with the connection; its
	 * notices find no directory here meanwhile. */
	if (!skip && watch_call(m, path, MST_OP_UNWATCH, buf, (size_t)n,
	    unwatch_done, NULL) < 0)
		syslog(LOG_DEBUG, "mount.mstore: UNWATCH %s not sent", path);
	pthread_mutex_unlock(&m->watch_mu);
}

void
on_notice(void *arg, const struct mst_notify *nt)
{
	struct mount *m = arg;
	char name[MST_NAME_MAX + 1];
	struct minode *dir, *f;
	fuse_ino_t ino = 0, file = 0;

	if (nt->name.len > MST_NAME_MAX) {
		syslog(LOG_ERR, "mount.mstore: notice with a %u-byte name "
		    "refused", (unsigned)nt->name.len);
		return;
	}
	memcpy(name, nt->name.p, nt->name.len);
	name[nt->name.len] = '\0';
	pthread_mutex_lock(&m->mu);
	dir = dir_by_path(m, nt->path.p, nt->path.len);
	if (dir) {
		ino = dir->ino;
		if (dir->folder)
			dir->folder->dirty = 1;
		dir->attr_at_ms = 0;		/* refetch its attributes */
		dir->neg_gen++;		/* a name may have come */
	}
	/* An ordinary file changed elsewhere: its attributes and the
	 * kernel's pages of it are stale (see ops_file.c). */
	f = nt->id ? inode_get(m, nt->id) : NULL;
	if (f && is_ofile(f)) {
		f->stale = 1;
		f->epoch++;
		file = f->ino;
	}
	/* A directory changed as an entry (its mode, owner, name): its
	 * attributes are asked for again (see do_getattr); renamed, its
	 * watch no longer follows it, so no name is known missing. */
	if (f && f->attr.type == MST_T_DIR) {
		f->attr_at_ms = 0;
		m->neg_epoch++;
		m->pos_epoch++;
		file = f->ino;	/* the kernel's too (see attr_keep) */
	}
	pthread_mutex_unlock(&m->mu);
	if (file)
		inval_queue(m, file, NULL);
	if (ino == 0)
		return;
	if (nt->event != MST_EV_RESET)
		inval_queue(m, ino, name);
	inval_queue(m, ino, NULL);
	wake_dir(m, ino, nt->path);	/* IDLE readers here: see wake.c */
}

static void
lost_lock(void *arg, uint64_t ino, uint64_t owner, int kind)
{
	(void)arg;
	syslog(LOG_WARNING, "mount.mstore: the %s lock(s) of owner %llx on "
	    "inode %llu were released by the store when the connection "
	    "dropped", kind == LT_FLOCK ? "flock" : "fcntl",
	    (unsigned long long)owner, (unsigned long long)ino);
}

/*
 * The store dropped this mount's OPENs of |n| with the old connection:
 * take them again, as many as the mount counts, since every local close
 * sends one CLOSE and the store keeps a count per connection. One OPEN
 * for two descriptors would let the first close end the store's hold
 * while the second is open, and an unlink elsewhere then removes the
 * file under it. A CLOSE not yet answered (n->close_wait) was never
 * written on the old connection (those written failed with it before
 * on_up): it goes out on this one, after these OPENs, so it gets one of
 * its own to end. m->mu held (store_hold does not wait).
 */
static void
rehold(struct mount *m, const struct minode *n)
{
	int k, rc = 0;

	for (k = 0; k < n->store_open + n->close_wait && rc == 0; k++)
		rc = store_hold(m, n->attr.id);
	if (rc < 0)
		syslog(LOG_WARNING, "mount.mstore: OPEN of object %llu after "
		    "reconnecting: %s (an unlink elsewhere may now remove it "
		    "while open here)", (unsigned long long)n->attr.id,
		    strerror(-rc));
}

/* After a reconnection notices may have been missed: every cache is
 * suspect and every watch must be registered again. The WATCHes go from
 * the notifier thread (this is the connection's thread, and watch_ino
 * takes watch_mu, which a worker may hold while it sends). */
static void
renew_all(struct mount *m, int lost)
{
	struct inval *iv = calloc(1, sizeof *iv);
	struct minode *n;
	size_t i, cap = 0;

	pthread_mutex_lock(&m->mu);
	m->neg_epoch++;		/* missed notices: no name is known missing */
	m->pos_epoch++;		/* nor present (minode.pos) */
	for (i = 0; i <= m->imask; i++)
		for (n = m->itab[i]; n; n = n->hnext) {
			if (n->folder)
				n->folder->dirty = 1;
			n->attr_at_ms = 0;
			if (is_ofile(n)) {
				n->stale = 1;
				n->epoch++;
			}
			if (lost)
				rehold(m, n);
			if (n->wstate == W_NONE)
				continue;
			n->wstate = W_NONE;
			n->watch_gen = ++m->watch_seq;
			n->watch_retry_ms = 0;
			if (iv && iv->nrewatch == cap) {
				fuse_ino_t *v = realloc(iv->rewatch,
				    (cap = cap ? cap * 2 : 64) * sizeof *v);

				if (v == NULL)
					continue;	/* watched at next use */
				iv->rewatch = v;
			}
			if (iv)
				iv->rewatch[iv->nrewatch++] = n->ino;
		}
	/* The store released this mount's locks with the old connection. */
	if (lost)
		(void)locktab_clear(m->locks, lost_lock, NULL);
	pthread_mutex_unlock(&m->mu);
	if (iv && iv->nrewatch)
		nq_push(m, iv, 0);
	else if (iv) {
		free(iv->rewatch);
		free(iv);
	}
}

void
on_up(void *arg)
{
	renew_all(arg, 1);
}

/* Mailboxes moved between servers (one went down, came back, joined or
 * left; route.c): their watches are sent again, now to their new server,
 * and every folder cache is checked with a LIST delta. The home server's
 * OPENs and locks are untouched: they move only when its connection is
 * lost (on_up). */
void
on_moved(void *arg)
{
	renew_all(arg, 0);
}

void
inval_then(struct mount *m, fuse_ino_t ino, void (*after)(void *), void *arg)
{
	struct inval *iv = calloc(1, sizeof *iv);

	if (iv == NULL) {
		after(arg);
		return;
	}
	iv->parent = ino;
	iv->after = after;
	iv->after_arg = arg;
	nq_push(m, iv, 0);
}

void
inval_queue(struct mount *m, fuse_ino_t parent, const char *name)
{
	struct inval *iv = calloc(1, sizeof *iv);
	int rc;

	if (iv == NULL)
		return;		/* the attribute timeout bounds staleness */
	iv->parent = parent;
	iv->name = name ? strdup(name) : NULL;
	pthread_mutex_lock(&m->nq_mu);
	if (name == NULL) {
		struct inval *q;

		/* One pending inode invalidation covers any number. */
		for (q = m->nq_head; q; q = q->next)
			if (q->parent == parent && q->name == NULL &&
			    q->after == NULL)
				break;
		if (q) {
			pthread_mutex_unlock(&m->nq_mu);
			free(iv);
			return;
		}
	}
	rc = nq_append(m, iv, 0);
	pthread_mutex_unlock(&m->nq_mu);
	if (rc < 0)
		inval_drop(iv);
}

/* One item of work on the notifier thread. */
static void
inval_run(struct mount *m, struct inval *iv)
{
	size_t i;

	if (iv->unwatch) {
		unwatch_send(m, iv->unwatch);
	} else if (iv->rewatch) {
		for (i = 0; i < iv->nrewatch; i++)
			watch_ino(m, iv->rewatch[i]);
	} else if (iv->name) {
		/* -ENOENT just means the kernel had nothing cached. */
		(void)fuse_lowlevel_notify_inval_entry(m->se, iv->parent,
		    iv->name, strlen(iv->name));
	} else {
		(void)fuse_lowlevel_notify_inval_inode(m->se, iv->parent, 0,
		    0);
	}
	if (iv->after)
		iv->after(iv->after_arg);
}

void *
notifier_main(void *arg)
{
	struct mount *m = arg;
	struct inval *iv;

	for (;;) {
		pthread_mutex_lock(&m->nq_mu);
		while (m->nq_head == NULL && m->eq_head == NULL && !m->nq_stop)
			pthread_cond_wait(&m->nq_cv, &m->nq_mu);
		iv = m->nq_head;
		if (iv) {
			m->nq_head = iv->next;
			if (m->nq_head == NULL)
				m->nq_tail = NULL;
		} else if ((iv = m->eq_head) != NULL) {
			m->eq_head = iv->next;
			if (m->eq_head == NULL)
				m->eq_tail = NULL;
		} else {
			m->nq_stop = 2;	/* stopped: see nq_append */
		}
		pthread_mutex_unlock(&m->nq_mu);
		if (iv == NULL)
			return NULL;
		inval_run(m, iv);
		inval_free(iv);
	}
}
