/*
 * ops_dir.c - directory listings. A handle takes a snapshot: local files
 * for tmp/, the folder cache for new/ and cur/, one READDIR otherwise;
 * readdir then pages through it by offset. The snapshot of a new/ or cur/
 * is taken at the first readdir, which is at offset 0 because the kernel
 * keeps no listing (no cache_readdir): its cache trusts an offset in any
 * handle, but ours index one handle's snapshot. readdirplus gives
 * the attributes of every message with its name, from the folder cache,
 * so a stat after a listing needs no lookup. The folder cache is kept
 * from eviction (folder->busy) from its refresh until it is copied.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"
#include "store.h"

struct dent {
	fuse_ino_t ino;
	unsigned type;		/* DT_* */
	char *name;
};

struct dirh {
	struct dent *v;
	size_t n, cap;
	int lazy;		/* a folder: entries taken at first readdir */
};

static int
dirh_add(struct dirh *d, fuse_ino_t ino, unsigned type, const char *name,
    size_t len)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dent *v = realloc(d->v, cap * sizeof *v);

		if (v == NULL)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].name = strndup(name, len);
	if (d->v[d->n].name == NULL)
		return -ENOMEM;
	d->v[d->n].ino = ino;
	d->v[d->n].type = type;
	d->n++;
	return 0;
}

static void
dirh_free(struct dirh *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	free(d);
}

static unsigned
dt_of(unsigned type)
{
	return type == MST_T_DIR ? DT_DIR : DT_REG;
}

/* Local files under |p|, mu held. */
static int
add_local(struct mount *m, struct minode *p, struct dirh *d)
{
	struct minode *n;
	size_t i;
	int rc = 0;

	for (i = 0; i <= m->lmask && rc == 0; i++)
		for (n = m->ltab[i]; n && rc == 0; n = n->lnext)
			if (n->parent == p)
				rc = dirh_add(d, n->ino, DT_REG, n->name,
				    strlen(n->name));
	return rc;
}

static int
add_folder(struct folder *f, struct dirh *d)
{
	struct fentry *e;
	size_t i;
	int rc = 0;

	for (i = 0; f->tab && i <= f->mask && rc == 0; i++)
		for (e = f->tab[i]; e && rc == 0; e = e->next)
			rc = dirh_add(d, e->attr.id, dt_of(e->attr.type),
			    e->name, strlen(e->name));
	return rc;
}

static int
add_entry(void *arg, const struct mst_list_entry *en)
{
	return dirh_add(arg, en->attr.id, dt_of(en->attr.type), en->name.p,
	    en->name.len);
}

static int
add_remote(struct mount *m, const char *path, struct dirh *d)
{
	return store_readdir(m, path, add_entry, d);
}

/* "." and ".." of |p|, then its local files. mu held. */
static int
add_head(struct mount *m, struct minode *p, struct dirh *d)
{
	int rc = dirh_add(d, p->ino, DT_DIR, ".", 1);

	if (rc == 0)
		rc = dirh_add(d, p->parent ? p->parent->ino : p->ino, DT_DIR,
		    "..", 2);
	if (rc == 0)
		rc = add_local(m, p, d);
	return rc;
}

/* The snapshot of folder directory |p|: its cache, fresh. */
static int
fill_folder(struct mount *m, struct minode *p, struct dirh *d)
{
	int rc;

	pthread_mutex_lock(&m->mu);
	p->folder->busy++;	/* not evicted until copied */
	pthread_mutex_unlock(&m->mu);
	rc = folder_refresh(m, p);
	pthread_mutex_lock(&m->mu);
	p->folder->busy--;
	if (rc == 0)
		rc = add_head(m, p, d);
	if (rc == 0)
		rc = add_folder(p->folder, d);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* The listing of |ino| into a new handle; for a folder, whether the
 * kernel may cache it (*cache) and keep what it cached (*keep). */
static int
do_opendir(struct mount *m, fuse_ino_t ino, struct dirh **out, int *cache,
    int *keep)
{
	char path[MST_PATH_MAX + 1];
	struct dirh *d = calloc(1, sizeof *d);
	struct folder *f;
	struct minode *p;
	int rc;

	*cache = *keep = 0;
	if (d == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&m->mu);
	p = inode_get(m, ino);
	rc = p ? inode_path(p, path, sizeof path) : -ESTALE;
	if (rc == 0) {
		inode_touch(m, p);
		if (p->folder)
			p->folder->busy++;	/* not evicted before use */
	}
	pthread_mutex_unlock(&m->mu);
	if (rc == 0 && p->folder) {
		/* Fresh now, so that an unreachable store fails the
		 * opendir; the entries are copied at readdir. */
		rc = folder_refresh(m, p);
		pthread_mutex_lock(&m->mu);
		f = p->folder;
		f->busy--;
		d->lazy = 1;
		/* The kernel is not let cache the listing (*cache stays 0):
		 * it would trust an offset of one handle's snapshot in
		 * another's, or resume a handle's listing in a cache it has
		 * lost, and a listing then skips names. */
		pthread_mutex_unlock(&m->mu);
	} else if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		rc = add_head(m, p, d);
		pthread_mutex_unlock(&m->mu);
		if (rc == 0 && p->dkind != DK_TMP) {
			watch_dir(m, p);
			rc = add_remote(m, path, d);
		}
	}
	if (rc < 0) {
		dirh_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void
op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct dirh *d = NULL;
	int cache, keep;
	int rc = do_opendir(m, ino, &d, &cache, &keep);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = (unsigned)cache;
	fi->keep_cache = (unsigned)keep;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirh_free(d);		/* interrupted: no releasedir */
	mem_check(m);		/* a listing may have grown a cache */
	mem_throttle(m);
}

/* The handle's entries, taken now if it is a folder's first readdir. */
static int
dirh_ready(struct mount *m, fuse_ino_t ino, struct dirh *d)
{
	struct minode *p;
	int rc;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, ino);
	if (p)
		inode_touch(m, p);	/* in use: the last to evict */
	pthread_mutex_unlock(&m->mu);
	if (!d->lazy)
		return 0;
	if (p == NULL || p->folder == NULL)
		return -ESTALE;
	rc = fill_folder(m, p, d);
	if (rc == 0)
		d->lazy = 0;
	mem_check(m);
	return rc;
}

static void
do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi, int plus)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	struct mount *m = mount_of(req);
	struct fuse_entry_param e;
	struct minode *p = NULL, *n;
	struct fentry *fe;
	size_t used = 0, len;
	char *buf;
	int rc = dirh_ready(m, ino, d);

	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	buf = malloc(size);
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (plus) {
		pthread_mutex_lock(&m->mu);
		p = inode_get(m, ino);
		if (p && p->folder == NULL)
			p = NULL;	/* names only: the kernel looks up */
	}
	for (; off >= 0 && (size_t)off < d->n; off++) {
		if (!plus) {
			struct stat st = { 0 };

			st.st_ino = d->v[off].ino;
			st.st_mode = d->v[off].type << 12;
			len = fuse_add_direntry(req, buf + used, size - used,
			    d->v[off].name, &st, off + 1);
			if (len > size - used)
				break;
			used += len;
			continue;
		}
		memset(&e, 0, sizeof e);
		e.attr.st_ino = d->v[off].ino;
		e.attr.st_mode = d->v[off].type << 12;
		n = NULL;
		/* A message still in the cache: its attributes, and a
		 * kernel reference the entry hands over. */
		if (p && d->v[off].type == DT_REG &&
		    (fe = folder_find(p->folder, d->v[off].name)) != NULL &&
		    (n = node_remote(m, p, d->v[off].name, &fe->attr, 1)))
			entry_fill(m, n, &e);
		len = fuse_add_direntry_plus(req, buf + used, size - used,
		    d->v[off].name, &e, off + 1);
		if (len > size - used) {
			if (n)
				inode_forget(m, n, 1);	/* not sent */
			break;
		}
		used += len;
	}
	if (plus)
		pthread_mutex_unlock(&m->mu);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

void
op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);

	do_readdir(req, ino, size, off, fi, 1);
	mem_check(m);		/* the entries made minodes */
}

void
op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dirh_free((struct dirh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}
