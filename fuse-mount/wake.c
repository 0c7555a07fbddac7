/*
 * wake.c - new mail as a local file-system event. IMAP servers in IDLE
 * (Dovecot: inotify on new/ and cur/ with IN_CREATE | IN_DELETE |
 * IN_DELETE_SELF | IN_MOVE | IN_MODIFY, any event wakes it) wait for the
 * kernel to report a change, and the kernel reports only changes made
 * through it: a delivery on another host reaches this mount as a store
 * notice, which FUSE cannot turn into an inotify event. So for each
 * notice about a new/ or cur/ directory, the wake thread makes a real one
 * through the mount point: mknod() of WAKE_NAME in that directory
 * (IN_CREATE; any event wakes Dovecot). The mount knows these requests by
 * the caller's id (the kernel puts the calling thread's id, not the
 * process id, in each request) and answers them here, with no store
 * request: the name is never stored, never listed (readdir of new/ and
 * cur/ comes from the folder cache), and looks absent to everyone else.
 *
 * A poke is made for every such notice, watched by inotify or not (FUSE
 * is never told of watches), so on a busy host it is paid about once per
 * delivery or expunge made elsewhere, and it is kept to 3 requests: the
 * negative LOOKUP of the name, MKNOD, and the FORGET of the number it
 * got, plus a GETATTR of a directory whose attributes the kernel no
 * longer holds. It used to cost 12: the wake thread's GETATTRs were
 * answered with no timeout, so each step of the path walk asked again
 * (and readers after it), and an unlink() followed that could only fail
 * (the entry the kernel held had no timeout, its revalidation was
 * answered "missing", twice) and left nothing but two more LOOKUPs. Now
 * its GETATTRs are answered as any other (op_getattr: from memory, with
 * the attribute timeout, for a watched directory), and after the mknod
 * the kernel is told to drop the entry (a write to the FUSE device, no
 * round trip), so the next poke of that directory finds no entry to
 * revalidate.
 *
 * Pokes are coalesced: at most one per directory per WAKE_GAP_MS, and
 * the queue holds at most WAKE_QMAX directories (more are dropped and
 * counted: IDLE readers then find the mail at their next poll).
 *
 * The wake thread is never a FUSE worker (its calls wait for workers)
 * nor the connection's receiver thread (which queues the pokes and must
 * never block). It may wait on a directory lock held by a request that
 * waits for the store; nothing else waits for it. It is joined only once
 * the session is gone, when the kernel has failed whatever call it was
 * in.
 *
 * Locking: w->mu guards the queue and the recent table; it is a leaf
 * (taken with m->mu held nowhere, and nothing is taken inside it).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "mount.h"

#define WAKE_NAME	".mstore-wake"
#define WAKE_GAP_MS	50	/* at most one poke per directory per this */
#define WAKE_QMAX	1024	/* directories waiting for a poke */
#define WAKE_RECENT	128	/* directories whose last poke is kept */
#define WAKE_ATTR_S	0.1	/* s: see wake_getattr */

struct wake_item {
	struct wake_item *next;
	fuse_ino_t ino;
	int64_t due_ms;
	char path[];		/* relative to the mount point */
};

struct wake {
	struct mount *m;
	char *root;		/* absolute mount point */
	pthread_t thread;
	int started;
	int tid;		/* the wake thread's id; atomic */
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* signalled on a new item or stop */
	struct wake_item *head;	/* guarded by mu */
	size_t n;		/* guarded by mu */
	int stop;		/* guarded by mu */
	uint64_t dropped;	/* guarded by mu */
	struct {
		fuse_ino_t ino;
		int64_t at_ms;
	} recent[WAKE_RECENT];	/* guarded by mu */
	size_t recent_next;	/* guarded by mu */
};

/* When |ino| was last poked, or a time long past. w->mu held. */
static int64_t
last_poke(const struct wake *w, fuse_ino_t ino)
{
	size_t i;

	for (i = 0; i < WAKE_RECENT; i++)
		if (w->recent[i].ino == ino)
			return w->recent[i].at_ms;
	return INT64_MIN / 2;
}

static void
note_poke(struct wake *w, fuse_ino_t ino, int64_t now)
{
	size_t i;

	for (i = 0; i < WAKE_RECENT; i++)
		if (w->recent[i].ino == ino) {
			w->recent[i].at_ms = now;
			return;
		}
	w->recent[w->recent_next].ino = ino;
	w->recent[w->recent_next].at_ms = now;
	w->recent_next = (w->recent_next + 1) % WAKE_RECENT;
}

void
wake_dir(struct mount *m, fuse_ino_t ino, struct mst_str path)
{
	struct wake *w = m->wake;
	struct wake_item *it, **pp;
	char p[MST_PATH_MAX + 1];
	int64_t last;

	if (w == NULL || path.len > MST_PATH_MAX)
		return;
	memcpy(p, path.p, path.len);
	p[path.len] = '\0';
	switch (inode_classify(m, p, NULL, NULL)) {
	case DK_NEW:
	case DK_CUR:
		break;
	default:
		return;		/* IDLE watches new/ and cur/ only */
	}
	pthread_mutex_lock(&w->mu);
	for (pp = &w->head; *pp; pp = &(*pp)->next)
		if ((*pp)->ino == ino)
			break;
	if (*pp || w->stop) {		/* a poke is on its way already */
		pthread_mutex_unlock(&w->mu);
		return;
	}
	if (w->n >= WAKE_QMAX || (it = malloc(sizeof *it + path.len + 1))
	    == NULL) {
		if (w->dropped++ % 1000 == 0)
			syslog(LOG_WARNING, "mount.mstore: wake queue full: %s "
			    "not poked (%llu so far); IDLE readers will see it "
			    "at their next poll", p,
			    (unsigned long long)w->dropped);
		pthread_mutex_unlock(&w->mu);
		return;
	}
	it->next = NULL;
	it->ino = ino;
	last = last_poke(w, ino);
	it->due_ms = mono_ms();
	if (it->due_ms < last + WAKE_GAP_MS)
		it->due_ms = last + WAKE_GAP_MS;
	memcpy(it->path, p, path.len + 1);
	*pp = it;
	w->n++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Create WAKE_NAME in directory |ino|, |dir| under the mount point, and
 * have the kernel drop the entry it made for it. */
static void
poke(struct wake *w, fuse_ino_t ino, const char *dir)
{
	static int warned;
	char path[PATH_MAX];
	int n = snprintf(path, sizeof path, "%s/%s/%s", w->root, dir,
	    WAKE_NAME);

	if (n < 0 || (size_t)n >= sizeof path)
		return;
	if (mknod(path, S_IFREG | 0600, 0) == 0) {
		(void)fuse_lowlevel_notify_inval_entry(w->m->se, ino, WAKE_NAME,
		    sizeof WAKE_NAME - 1);
		return;
	}
	if (errno == ENOENT)
		return;		/* the directory went away meanwhile */
	if (!warned) {		/* say it once: it would repeat per notice */
		warned = 1;
		syslog(LOG_WARNING, "mount.mstore: cannot wake IDLE readers "
		    "of %s: %s: %s (is the mount running as root?)", dir, path,
		    strerror(errno));
	}
}

/* The earliest item due; the wait until it in *wait_ms. w->mu held. */
static struct wake_item *
next_due(struct wake *w, int64_t now, int64_t *wait_ms)
{
	struct wake_item *it, *best = NULL;

	for (it = w->head; it; it = it->next)
		if (best == NULL || it->due_ms < best->due_ms)
			best = it;
	*wait_ms = best ? best->due_ms - now : -1;
	return best;
}

static void
wait_ms(struct wake *w, int64_t ms)
{
	struct timespec ts;

	if (ms < 0) {
		pthread_cond_wait(&w->cv, &w->mu);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	(void)pthread_cond_timedwait(&w->cv, &w->mu, &ts); /* then recheck */
}

static void *
wake_main(void *arg)
{
	struct wake *w = arg;
	struct wake_item *it, **pp;
	int64_t now, ms;

	__atomic_store_n(&w->tid, (int)gettid(), __ATOMIC_RELEASE);
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		now = mono_ms();
		it = next_due(w, now, &ms);
		if (it == NULL || ms > 0) {
			wait_ms(w, ms);
			continue;
		}
		for (pp = &w->head; *pp != it; pp = &(*pp)->next)
			;
		*pp = it->next;
		w->n--;
		note_poke(w, it->ino, now);
		pthread_mutex_unlock(&w->mu);
		poke(w, it->ino, it->path);
		free(it);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int
wake_start(struct mount *m, const char *mountpoint)
{
	struct wake *w = calloc(1, sizeof *w);
	pthread_condattr_t ca;

	if (w == NULL)
		return -ENOMEM;
	w->m = m;
	w->tid = -1;
	w->root = strdup(mountpoint);
	if (w->root == NULL) {
		free(w);
		return -ENOMEM;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&w->thread, NULL, wake_main, w) != 0) {
		free(w->root);
		free(w);
		return -EAGAIN;
	}
	w->started = 1;
	m->wake = w;
	return 0;
}

void
wake_stop(struct mount *m)
{
	struct wake *w = m->wake;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void
wake_free(struct mount *m)
{
	struct wake *w = m->wake;
	struct wake_item *it, *next;

	if (w == NULL)
		return;
	wake_stop(m);
	if (w->started)
		pthread_join(w->thread, NULL);
	m->wake = NULL;
	for (it = w->head; it; it = next) {
		next = it->next;
		free(it);
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->root);
	free(w);
}

/* Is |req| the wake thread's? */
static int
is_wake(fuse_req_t req)
{
	struct wake *w = mount_of(req)->wake;

	return w && fuse_req_ctx(req)->pid ==
	    (pid_t)__atomic_load_n(&w->tid, __ATOMIC_ACQUIRE);
}

/*
 * The ops below stand in front of the mount's (main.c installs them with
 * wake_ops): requests of the wake thread on WAKE_NAME are answered here,
 * everything else goes on to the ops they replaced (next_ops).
 */
static struct fuse_lowlevel_ops next_ops;

static void
wake_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (is_wake(req) && strcmp(name, WAKE_NAME) == 0)
		fuse_reply_err(req, ENOENT);
	else
		next_ops.lookup(req, parent, name);
}

/*
 * The kernel's permission checks on the path walk before mknod ask for
 * each directory's attributes; the wake thread's are answered from
 * memory, never with a store request (the notice that caused the poke
 * may have left a listing to be brought up to date: a LIST nobody asked
 * for). The new/ or cur/ being poked: kept by the kernel for WAKE_ATTR_S
 * only, which spans the second check of the same walk (search, then
 * write and search before the mknod); the kernel drops them after the
 * mknod anyway. A directory above it: with the attribute timeout when a
 * getattr would answer the same from memory (inode_attr_fresh), so that
 * the walk of the next poke, and the readers after it, find them
 * cached; otherwise with none, replacing nothing a reader would see.
 */
static void
wake_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct minode *n;
	struct stat st;

	double keep = 0;

	if (is_wake(req)) {
		pthread_mutex_lock(&m->mu);
		n = inode_get(m, ino);
		if (n) {
			inode_stat(n, &st);
			if (n->folder)
				keep = WAKE_ATTR_S;
			else if (!n->local && n->attr.type == MST_T_DIR &&
			    inode_trusted(n) && inode_attr_fresh(m, n))
				keep = m->entry_timeout;
		}
		pthread_mutex_unlock(&m->mu);
		if (n) {
			fuse_reply_attr(req, &st, keep);
			return;
		}
	}
	next_ops.getattr(req, ino, fi);
}

static void
wake_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	struct mount *m = mount_of(req);
	struct fuse_entry_param e = { 0 };

	if (!is_wake(req) || strcmp(name, WAKE_NAME) != 0 || !S_ISREG(mode)) {
		if (next_ops.mknod)
			next_ops.mknod(req, parent, name, mode, rdev);
		else
			fuse_reply_err(req, ENOSYS);
		return;
	}
	/* A number of the local range, never used by anything else; the
	 * kernel forgets it soon, and op_forget ignores numbers it does not
	 * know. */
	pthread_mutex_lock(&m->mu);
	e.ino = MNT_LOCAL_BASE + m->next_local++;
	pthread_mutex_unlock(&m->mu);
	e.generation = 1;
	e.attr.st_ino = e.ino;
	e.attr.st_mode = S_IFREG | 0600;
	e.attr.st_nlink = 1;
	e.attr.st_blksize = 4096;
	fuse_reply_entry(req, &e);
}

void
wake_ops(struct fuse_lowlevel_ops *ops)
{
	next_ops = *ops;
	ops->lookup = wake_lookup;
	ops->getattr = wake_getattr;
	ops->mknod = wake_mknod;
}
