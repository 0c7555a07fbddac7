/*
 * inode.c - the mount's inode table. Owns minodes: store objects known to
 * the kernel (inode number = the store's object id, stable across
 * remounts) and local files in tmp/ or awaiting delivery (numbers from
 * MNT_LOCAL_BASE up, never reused while the mount lives). Never does
 * network I/O; every function here runs with m->mu held unless noted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "mount.h"

static size_t
ihash(fuse_ino_t ino, size_t mask)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & mask;
}

static size_t
lhash(const struct minode *parent, const char *name, size_t mask)
{
	return (size_t)XXH3_64bits_withSeed(name, strlen(name),
	    (uint64_t)(uintptr_t)parent) & mask;
}

/* Grow a chained table when its load passes 1; a failed grow only costs
 * speed. |rehash| gives a node's bucket in the new table. */
static void
grow(struct minode ***tab, size_t *mask, size_t n, int local)
{
	size_t nm = (*mask + 1) * 2 - 1, i, h;
	struct minode **t, *x, *next;

	if (n <= *mask)
		return;
	t = calloc(nm + 1, sizeof *t);
	if (t == NULL)
		return;
	for (i = 0; i <= *mask; i++)
		for (x = (*tab)[i]; x; x = next) {
			if (local) {
				next = x->lnext;
				h = lhash(x->parent, x->name, nm);
				x->lnext = t[h];
			} else {
				next = x->hnext;
				h = ihash(x->ino, nm);
				x->hnext = t[h];
			}
			t[h] = x;
		}
	free(*tab);
	*tab = t;
	*mask = nm;
}

static void
itab_add(struct mount *m, struct minode *n)
{
	size_t h;

	grow(&m->itab, &m->imask, m->in + 1, 0);
	h = ihash(n->ino, m->imask);
	n->hnext = m->itab[h];
	m->itab[h] = n;
	m->in++;
}

static void
itab_del(struct mount *m, struct minode *n)
{
	struct minode **pp = &m->itab[ihash(n->ino, m->imask)];

	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = n->hnext;
		m->in--;
	}
}

static void
ltab_add(struct mount *m, struct minode *n)
{
	size_t h;

	grow(&m->ltab, &m->lmask, m->ln + 1, 1);
	h = lhash(n->parent, n->name, m->lmask);
	n->lnext = m->ltab[h];
	m->ltab[h] = n;
	m->ln++;
}

static void
ltab_del(struct mount *m, struct minode *n)
{
	struct minode **pp = &m->ltab[lhash(n->parent, n->name, m->lmask)];

	while (*pp && *pp != n)
		pp = &(*pp)->lnext;
	if (*pp) {
		*pp = n->lnext;
		m->ln--;
	}
}

struct minode *
inode_get(struct mount *m, fuse_ino_t ino)
{
	struct minode *n = m->itab[ihash(ino, m->imask)];

	while (n && n->ino != ino)
		n = n->hnext;
	return n;
}

int
inode_path(const struct minode *n, char *buf, size_t cap)
{
	size_t len = 0, pos;
	const struct minode *x;

	for (x = n; x->parent; x = x->parent)
		len += strlen(x->name) + (x->parent->parent ? 1u : 0u);
	if (len >= cap)
		return -ENAMETOOLONG;
	buf[len] = '\0';
	pos = len;
	for (x = n; x->parent; x = x->parent) {
		size_t l = strlen(x->name);

		pos -= l;
		memcpy(buf + pos, x->name, l);
		if (x->parent->parent)
			buf[--pos] = '/';
	}
	return 0;
}

int
inode_child_path(const struct minode *dir, const char *name, char *buf,
    size_t cap)
{
	size_t dl, nl = strlen(name);
	int rc = inode_path(dir, buf, cap);

	if (rc < 0)
		return rc;
	dl = strlen(buf);
	if (dl + (dl ? 1 : 0) + nl >= cap)
		return -ENAMETOOLONG;
	if (dl)
		buf[dl++] = '/';
	memcpy(buf + dl, name, nl + 1);
	return 0;
}

/*
 * A Maildir is known by its shape, at any depth: a directory named tmp,
 * new or cur is a Maildir subdirectory of its parent M. When M's name
 * starts with '.', M is a Maildir++ folder (".Sent", ".Lists.foo") of
 * the mailbox that holds it; otherwise M is the mailbox itself. So
 * "user/new", "domain/user/new", "home/user/Maildir/new" and
 * "home/user/Maildir/.Sent/new" are all recognised with no option, and
 * Postfix may make tmp/ and new/ before any cur/ exists.
 *
 * A mailbox needs a name (the store groups a mailbox and its folders
 * under it, and the protocol refuses an empty one), so a Maildir whose
 * mailbox would be the mount's root ("new", ".Sent/new") is not one: its
 * tmp/, new/ and cur/ are plain directories.
 */
enum dkind
inode_classify(const struct mount *m, const char *path,
    struct mst_str *mailbox, struct mst_str *folder)
{
	const char *last = strrchr(path, '/'), *mname;
	size_t mlen, blen;
	enum dkind k;

	(void)m;
	if (last == NULL)
		return DK_PLAIN;	/* M would be the root */
	if (strcmp(last + 1, "tmp") == 0)
		k = DK_TMP;
	else if (strcmp(last + 1, "new") == 0)
		k = DK_NEW;
	else if (strcmp(last + 1, "cur") == 0)
		k = DK_CUR;
	else
		return DK_PLAIN;
	mlen = (size_t)(last - path);		/* M's path */
	for (mname = last; mname > path && mname[-1] != '/'; mname--)
		;
	blen = mname[0] == '.' ? (size_t)(mname - path) : mlen + 1;
	if (blen < 2)
		return DK_PLAIN;	/* the mailbox would be the root */
	if (mailbox) {
		mailbox->p = path;
		mailbox->len = (uint16_t)(blen - 1);
		folder->p = mname;
		folder->len = (uint16_t)(mname[0] == '.' ?
		    mlen - (size_t)(mname - path) : 0);
	}
	return k;
}

static struct minode *
node_new(struct minode *parent, const char *name)
{
	struct minode *n = calloc(1, sizeof *n);

	if (n == NULL)
		return NULL;
	n->name = strdup(name);
	if (n->name == NULL) {
		free(n);
		return NULL;
	}
	n->parent = parent;
	if (parent)
		parent->nchild++;
	return n;
}

static void
node_free(struct minode *n)
{
	if (n->parent)
		n->parent->nchild--;
	fbuf_free(n->buf);
	folder_free(n->folder);
	free(n->name);
	free(n);
}

/* Free |n| once nothing refers to it. Directories stay: they are few
 * and carry watches and folder caches. Local files stay until unlinked:
 * their contents live only here. */
static void
maybe_free(struct mount *m, struct minode *n)
{
	if (n->nlookup || n->nopen || n->nchild || n->parent == NULL ||
	    n->attr.type == MST_T_DIR || (n->local && !n->unlinked))
		return;
	itab_del(m, n);
	node_free(n);
}

static void
set_dkind(struct mount *m, struct minode *n)
{
	char path[MST_PATH_MAX + 1];

	n->dkind = DK_PLAIN;
	if (n->attr.type == MST_T_DIR &&
	    inode_path(n, path, sizeof path) == 0)
		n->dkind = inode_classify(m, path, NULL, NULL);
	if ((n->dkind == DK_NEW || n->dkind == DK_CUR) && n->folder == NULL)
		n->folder = calloc(1, sizeof *n->folder);
}

struct minode *
inode_remote(struct mount *m, struct minode *parent, const char *name,
    const struct mst_attr *a, int lookup)
{
	struct minode *n = inode_get(m, a->id);

	if (n == NULL) {
		n = node_new(parent, name);
		if (n == NULL)
			return NULL;
		n->ino = a->id;
		n->attr = *a;
		itab_add(m, n);
		set_dkind(m, n);
	} else if (is_ofile(n) && a->type == MST_T_FILE) {
		/* Newer than what the kernel cached? Then drop its pages. */
		if (ofile_refresh(n, a)) {
			n->epoch++;
			inval_queue(m, n->ino, NULL);
		}
		if (n->parent != parent || strcmp(n->name, name) != 0)
			(void)inode_move(m, n, parent, name); /* best effort */
	} else {
		n->attr = *a;
		if (n->parent != parent || strcmp(n->name, name) != 0)
			(void)inode_move(m, n, parent, name); /* best effort */
	}
	n->attr_at_ms = mono_ms();
	if (lookup)
		n->nlookup++;
	return n;
}

void
inode_dir_changed(struct mount *m, struct minode *dir, const char *name)
{
	struct minode *x;
	size_t i;

	dir->attr_at_ms = 0;
	if (name == NULL)
		return;
	/* No index by name for store objects: a walk, done only for
	 * removals and renames in ordinary directories. */
	for (i = 0; i <= m->imask; i++)
		for (x = m->itab[i]; x; x = x->hnext)
			if (is_ofile(x) && (x->attr.nlink > 1 ||
			    (x->parent == dir && strcmp(x->name, name) == 0)))
				x->stale = 1;
}

struct minode *
inode_local_find(struct mount *m, struct minode *parent, const char *name)
{
	struct minode *n;

	if (m->ltab == NULL)
		return NULL;
	for (n = m->ltab[lhash(parent, name, m->lmask)]; n; n = n->lnext)
		if (n->parent == parent && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

struct minode *
inode_local_new(struct mount *m, struct minode *parent, const char *name,
    mode_t mode)
{
	struct minode *n = node_new(parent, name);
	struct timespec ts;

	if (n == NULL)
		return NULL;
	n->buf = fbuf_new();
	if (n->buf == NULL) {
		node_free(n);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	n->ino = MNT_LOCAL_BASE + m->next_local++;
	n->local = 1;
	n->attr.type = MST_T_FILE;
	n->attr.id = n->ino;
	n->attr.mode = mode & 07777;
	n->attr.nlink = 1;
	n->attr.mtime_ns = n->attr.ctime_ns =
	    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	itab_add(m, n);
	ltab_add(m, n);
	return n;
}

void
inode_local_unlink(struct mount *m, struct minode *n)
{
	if (!n->local || n->unlinked)
		return;
	ltab_del(m, n);
	n->unlinked = 1;
	maybe_free(m, n);
}

void
inode_delivered(struct mount *m, struct minode *n, const struct mst_attr *a)
{
	if (n->local && !n->unlinked)
		ltab_del(m, n);
	n->local = 0;
	n->attr = *a;
	n->attr_at_ms = mono_ms();
	maybe_free(m, n);
}

int
inode_move(struct mount *m, struct minode *n, struct minode *parent,
    const char *name)
{
	char *nm = strdup(name);

	if (nm == NULL)
		return -ENOMEM;
	if (n->local && !n->unlinked)
		ltab_del(m, n);
	n->parent->nchild--;
	parent->nchild++;
	n->parent = parent;
	free(n->name);
	n->name = nm;
	if (n->local && !n->unlinked)
		ltab_add(m, n);
	if (n->attr.type == MST_T_DIR)
		set_dkind(m, n);
	return 0;
}

void
inode_forget(struct mount *m, struct minode *n, uint64_t nlookup)
{
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	maybe_free(m, n);
}

void
inode_close(struct mount *m, struct minode *n)
{
	if (n->nopen > 0)
		n->nopen--;
	maybe_free(m, n);
}

void
inode_stat(const struct minode *n, struct stat *st)
{
	const struct mst_attr *a = &n->attr;

	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_mode = (a->type == MST_T_DIR ? S_IFDIR : S_IFREG) |
	    (a->mode & 07777);
	st->st_nlink = n->local && n->unlinked ? 0 : a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)(n->local && n->buf ? n->buf->size : a->size);
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim.tv_sec = (time_t)(a->mtime_ns / 1000000000u);
	st->st_mtim.tv_nsec = (long)(a->mtime_ns % 1000000000u);
	st->st_ctim.tv_sec = (time_t)(a->ctime_ns / 1000000000u);
	st->st_ctim.tv_nsec = (long)(a->ctime_ns % 1000000000u);
	st->st_atim.tv_sec = (time_t)(a->atime_ns / 1000000000u);
	st->st_atim.tv_nsec = (long)(a->atime_ns % 1000000000u);
	if (a->atime_ns == 0)
		st->st_atim = st->st_mtim;	/* local files keep none */
}

void
inode_new_owner(const struct minode *parent, const struct fuse_ctx *ctx,
    int dir, struct mst_attr *a)
{
	a->uid = ctx->uid;
	a->gid = ctx->gid;
	if (parent->attr.mode & S_ISGID) {
		a->gid = parent->attr.gid;
		if (dir)
			a->mode |= S_ISGID;
	}
}

int
inode_init(struct mount *m)
{
	struct minode *root;

	m->imask = 1023;
	m->itab = calloc(m->imask + 1, sizeof *m->itab);
	m->lmask = 255;
	m->ltab = calloc(m->lmask + 1, sizeof *m->ltab);
	root = node_new(NULL, "");
	if (m->itab == NULL || m->ltab == NULL || root == NULL) {
		free(root);
		return -ENOMEM;
	}
	root->ino = FUSE_ROOT_ID;
	root->attr.type = MST_T_DIR;
	root->attr.id = 1;
	root->attr.mode = 0755;
	root->attr.nlink = 2;
	root->nlookup = 1;
	itab_add(m, root);
	return 0;
}

void
inode_fini(struct mount *m)
{
	struct minode *n, *next;
	size_t i;

	for (i = 0; m->itab && i <= m->imask; i++)
		for (n = m->itab[i]; n; n = next) {
			next = n->hnext;
			fbuf_free(n->buf);
			folder_free(n->folder);
			free(n->name);
			free(n);
		}
	free(m->itab);
	free(m->ltab);
	m->itab = m->ltab = NULL;
}
