/*
 * folder.c - mail folder caches and change notices. A new/ or cur/
 * directory's listing is kept in the mount: filled by one full LIST, then
 * brought up to date with LIST deltas (since its change counter) whenever
 * a NOTIFY has marked it dirty. Every directory the kernel looks into is
 * WATCHed, and each notice becomes a kernel cache invalidation, done on
 * the notifier thread: the kernel may hold a directory lock while a FUSE
 * op waits for the store, so invalidating from the connection's receiver
 * thread could deadlock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <xxhash.h>

#include "mount.h"
#include "locktab.h"
#include "store.h"

static size_t
fhash(const char *name, size_t mask)
{
	return (size_t)XXH3_64bits(name, strlen(name)) & mask;
}

struct fentry *
folder_find(struct folder *f, const char *name)
{
	struct fentry *e;

	if (f->tab == NULL)
		return NULL;
	for (e = f->tab[fhash(name, f->mask)]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void
folder_grow(struct folder *f)
{
	size_t nm = f->tab ? f->mask * 2 + 1 : 63, i, h;
	struct fentry **t = calloc(nm + 1, sizeof *t), *e, *next;

	if (t == NULL)
		return;
	for (i = 0; f->tab && i <= f->mask; i++)
		for (e = f->tab[i]; e; e = next) {
			next = e->next;
			h = fhash(e->name, nm);
			e->next = t[h];
			t[h] = e;
		}
	free(f->tab);
	f->tab = t;
	f->mask = nm;
}

void
folder_put(struct folder *f, const char *name, const struct mst_attr *a)
{
	struct fentry *e = folder_find(f, name);
	size_t h, len;

	if (e) {
		e->attr = *a;
		return;
	}
	if (f->tab == NULL || f->n > f->mask)
		folder_grow(f);
	if (f->tab == NULL)
		return;
	len = strlen(name);
	e = malloc(sizeof *e + len + 1);
	if (e == NULL) {
		f->valid = 0;		/* incomplete: list again next time */
		return;
	}
	memcpy(e->name, name, len + 1);
	e->attr = *a;
	h = fhash(name, f->mask);
	e->next = f->tab[h];
	f->tab[h] = e;
	f->n++;
}

void
folder_del(struct folder *f, const char *name)
{
	struct fentry **pp, *e;

	if (f->tab == NULL)
		return;
	for (pp = &f->tab[fhash(name, f->mask)]; (e = *pp); pp = &e->next)
		if (strcmp(e->name, name) == 0) {
			*pp = e->next;
			free(e);
			f->n--;
			return;
		}
}

static void
folder_clear(struct folder *f)
{
	struct fentry *e, *next;
	size_t i;

	for (i = 0; f->tab && i <= f->mask; i++) {
		for (e = f->tab[i]; e; e = next) {
			next = e->next;
			free(e);
		}
		f->tab[i] = NULL;
	}
	f->n = 0;
}

void
folder_free(struct folder *f)
{
	if (f == NULL)
		return;
	folder_clear(f);
	free(f->tab);
	free(f);
}

/* Apply one LIST reply (all its frames) to the cache. mu held. */
static int
apply_list(struct folder *f, const struct mreply *r)
{
	struct mst_list_entry en;
	struct mst_list_rep lr;
	char name[MST_NAME_MAX + 1];
	size_t i, off;
	int rc;

	for (i = 0; i < r->nframes; i++) {
		rc = mst_list_rep_decode(&lr, r->frames[i].p, r->frames[i].len);
		if (rc < 0)
			return rc;
		if (i == 0 && (lr.flags & MST_LIST_FULL))
			folder_clear(f);
		off = 0;
		while ((rc = mst_list_entry_next(&en, &lr, &off)) == 1) {
			memcpy(name, en.name.p, en.name.len);
			name[en.name.len] = '\0';
			if (en.kind == MST_LE_PRESENT)
				folder_put(f, name, &en.attr);
			else
				folder_del(f, name);
		}
		if (rc < 0)
			return rc;
		f->change = lr.change;
		f->mtime_ns = lr.dir_mtime_ns;
	}
	f->valid = 1;
	return 0;
}

void
folder_touch(struct minode *dir, uint64_t mtime_ns)
{
	if (mtime_ns <= dir->attr.mtime_ns)
		return;
	dir->attr.mtime_ns = dir->attr.ctime_ns = mtime_ns;
	if (dir->folder)
		dir->folder->mtime_ns = mtime_ns;
}

int
folder_refresh(struct mount *m, struct minode *dir)
{
	char path[MST_PATH_MAX + 1];
	struct mst_list_req q = { 0 };
	struct folder *f = dir->folder;
	struct mreply r;
	uint8_t buf[MST_PATH_MAX + 64];
	int n, rc;

	watch_dir(m, dir);
	pthread_mutex_lock(&m->mu);
	if (f->valid && !f->dirty) {
		pthread_mutex_unlock(&m->mu);
		return 0;
	}
	rc = inode_path(dir, path, sizeof path);
	if (rc == 0) {
		q.sub = dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
		(void)inode_classify(m, path, &q.mailbox, &q.folder);
		q.since = f->valid ? f->change : 0;
		f->dirty = 0;	/* a notice during the LIST dirties it again */
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	n = mst_list_req_encode(&q, buf, sizeof buf);
	if (n < 0)
		return n;
	rc = mconn_call(m->conn, MST_OP_LIST, buf, (size_t)n, NULL, 0, 1, &r);
	pthread_mutex_lock(&m->mu);
	if (rc == 0)
		rc = apply_list(f, &r);
	if (rc < 0)
		f->dirty = 1;
	else {
		dir->attr.mtime_ns = dir->attr.ctime_ns = f->mtime_ns;
		dir->attr.change = f->change;
	}
	pthread_mutex_unlock(&m->mu);
	mreply_free(&r);
	return rc;
}

static void
watch_done(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);		/* a failed WATCH is retried at next use */
}

void
watch_dir(struct mount *m, struct minode *dir)
{
	char path[MST_PATH_MAX + 1];
	struct mst_path_req q = { 0 };
	uint8_t buf[MST_PATH_MAX + 8];
	int n = -1;

	pthread_mutex_lock(&m->mu);
	if (!dir->watched && inode_path(dir, path, sizeof path) == 0) {
		dir->watched = 1;
		q.path = mst_str_of(path);
		n = mst_path_req_encode(&q, buf, sizeof buf);
	}
	pthread_mutex_unlock(&m->mu);
	if (n >= 0 && mconn_call_async(m->conn, MST_OP_WATCH, buf, (size_t)n,
	    NULL, 0, 1, watch_done, NULL) < 0) {
		pthread_mutex_lock(&m->mu);
		dir->watched = 0;
		pthread_mutex_unlock(&m->mu);
	}
}

/* Find the directory minode for |path| by walking cached children. */
static struct minode *
dir_by_path(struct mount *m, const char *path, size_t len)
{
	struct minode *dir = inode_get(m, FUSE_ROOT_ID), *c;
	size_t i = 0, j, k;

	while (dir && i < len) {
		for (j = i; j < len && path[j] != '/'; j++)
			;
		c = NULL;
		for (k = 0; k <= m->imask && c == NULL; k++) {
			struct minode *x;

			for (x = m->itab[k]; x; x = x->hnext)
				if (x->parent == dir &&
				    x->attr.type == MST_T_DIR &&
				    strlen(x->name) == j - i &&
				    memcmp(x->name, path + i, j - i) == 0) {
					c = x;
					break;
				}
		}
		dir = c;
		i = j + 1;
	}
	return dir;
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
	}
	/* An ordinary file changed elsewhere: its attributes and the
	 * kernel's pages of it are stale (see ops_file.c). */
	f = nt->id ? inode_get(m, nt->id) : NULL;
	if (f && is_ofile(f)) {
		f->stale = 1;
		f->epoch++;
		file = f->ino;
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

/* After a reconnection notices may have been missed: every cache is
 * suspect and every watch must be registered again. */
void
on_up(void *arg)
{
	struct mount *m = arg;
	struct minode *n, **dirs = NULL;
	size_t i, nd = 0, cap = 0;

	pthread_mutex_lock(&m->mu);
	for (i = 0; i <= m->imask; i++)
		for (n = m->itab[i]; n; n = n->hnext) {
			if (n->folder)
				n->folder->dirty = 1;
			n->attr_at_ms = 0;
			if (is_ofile(n)) {
				n->stale = 1;
				n->epoch++;
			}
			/* The store dropped this mount's OPENs and locks
			 * with the old connection. */
			if (n->store_open)
				(void)store_hold(m, n->attr.id);
			if (!n->watched)
				continue;
			n->watched = 0;
			if (nd == cap) {
				struct minode **v = realloc(dirs,
				    (cap = cap ? cap * 2 : 64) * sizeof *v);

				if (v == NULL)
					break;
				dirs = v;
			}
			dirs[nd++] = n;
		}
	/* The store released this mount's locks with the old connection. */
	(void)locktab_clear(m->locks, lost_lock, NULL);
	pthread_mutex_unlock(&m->mu);
	for (i = 0; i < nd; i++)
		watch_dir(m, dirs[i]);	/* directories are never freed */
	free(dirs);
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
	pthread_mutex_lock(&m->nq_mu);
	if (m->nq_tail)
		m->nq_tail->next = iv;
	else
		m->nq_head = iv;
	m->nq_tail = iv;
	pthread_cond_signal(&m->nq_cv);
	pthread_mutex_unlock(&m->nq_mu);
}

void
inval_queue(struct mount *m, fuse_ino_t parent, const char *name)
{
	struct inval *iv = calloc(1, sizeof *iv);

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
	if (m->nq_tail)
		m->nq_tail->next = iv;
	else
		m->nq_head = iv;
	m->nq_tail = iv;
	pthread_cond_signal(&m->nq_cv);
	pthread_mutex_unlock(&m->nq_mu);
}

void *
notifier_main(void *arg)
{
	struct mount *m = arg;
	struct inval *iv;

	for (;;) {
		pthread_mutex_lock(&m->nq_mu);
		while (m->nq_head == NULL && !m->nq_stop)
			pthread_cond_wait(&m->nq_cv, &m->nq_mu);
		iv = m->nq_head;
		if (iv) {
			m->nq_head = iv->next;
			if (m->nq_head == NULL)
				m->nq_tail = NULL;
		}
		pthread_mutex_unlock(&m->nq_mu);
		if (iv == NULL)
			return NULL;
		/* -ENOENT just means the kernel had nothing cached. */
		if (iv->name)
			(void)fuse_lowlevel_notify_inval_entry(m->se,
			    iv->parent, iv->name, strlen(iv->name));
		else
			(void)fuse_lowlevel_notify_inval_inode(m->se,
			    iv->parent, 0, 0);
		if (iv->after)
			iv->after(iv->after_arg);
		free(iv->name);
		free(iv);
	}
}
