/*
 * inode.c - the mount's inode table (layer 2, see mount.h). Owns minodes:
 * store objects known to the kernel (inode number = the store's object
 * id, stable across remounts) and local files in tmp/ or awaiting
 * delivery (numbers from MNT_LOCAL_BASE up, never reused while the mount
 * lives), their hash tables (by number, local files by (parent, name),
 * every node by (parent, name)), and the classification of Maildir
 * paths. Never does network I/O and never queues kernel work: what an
 * upper layer must do is returned (inode_remote's *drop, the eviction
 * choices) or reported through m->dir_gone. Every function here runs
 * with m->mu held unless noted.
 *
 * Also the memory budget's choices (cache_mb=). Nodes with their names,
 * folder caches (folder.c) and the tables are accounted where they are
 * allocated and freed (mem_account, util.c). Past the budget, mem_check
 * (notify.c) takes inode_evict_next's choices, least recently used
 * first, down to 90% of it: a folder cache is freed at once; a node
 * cannot be, while the kernel holds a reference, so the notifier thread
 * asks the kernel to drop its name, the kernel evicts the inode with its
 * last dentry, and the FORGET that follows frees the node. Never
 * evicted: the root, local files (tmp/, pending deliveries: their
 * contents live only here) and open files. A directory goes once
 * unreferenced and childless, with its folder cache and its watch. Both
 * LRU lists are intrusive, so each eviction is O(1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "mount.h"

static size_t
ihash(fuse_ino_t ino, size_t mask)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & mask;
}

static size_t
phash(const struct minode *parent, const char *name, size_t len,
    size_t mask)
{
	return (size_t)XXH3_64bits_withSeed(name, len,
	    (uint64_t)(uintptr_t)parent) & mask;
}

static size_t
lhash(const struct minode *parent, const char *name, size_t mask)
{
	return phash(parent, name, strlen(name), mask);
}

/* The three chained tables: by inode number, local files by (parent,
 * name), and every node by (parent, name). */
enum tkind {
	T_INO,
	T_LOCAL,
	T_NAME,
};

static struct minode **
chain_of(struct minode *x, enum tkind k)
{
	return k == T_INO ? &x->hnext : k == T_LOCAL ? &x->lnext : &x->pnext;
}

static size_t
bucket_of(const struct minode *x, enum tkind k, size_t mask)
{
	return k == T_INO ? ihash(x->ino, mask) : lhash(x->parent, x->name,
	    mask);
}

/* Grow a chained table when its load passes 1; a failed grow only costs
 * speed. */
static void
grow(struct mount *m, struct minode ***tab, size_t *mask, size_t n,
    enum tkind k)
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
			next = *chain_of(x, k);
			h = bucket_of(x, k, nm);
			*chain_of(x, k) = t[h];
			t[h] = x;
		}
	free(*tab);
	mem_account(m, (ssize_t)((nm - *mask) * sizeof *t));
	*tab = t;
	*mask = nm;
}

static void
tab_add(struct mount *m, struct minode *n, enum tkind k)
{
	struct minode ***tab = k == T_INO ? &m->itab : k == T_LOCAL ?
	    &m->ltab : &m->ptab;
	size_t *mask = k == T_INO ? &m->imask : k == T_LOCAL ? &m->lmask :
	    &m->pmask;
	size_t *cnt = k == T_INO ? &m->in : k == T_LOCAL ? &m->ln : &m->pn;
	size_t h;

	grow(m, tab, mask, *cnt + 1, k);
	h = bucket_of(n, k, *mask);
	*chain_of(n, k) = (*tab)[h];
	(*tab)[h] = n;
	(*cnt)++;
}

static void
tab_del(struct mount *m, struct minode *n, enum tkind k)
{
	struct minode **tab = k == T_INO ? m->itab : k == T_LOCAL ? m->ltab :
	    m->ptab;
	size_t mask = k == T_INO ? m->imask : k == T_LOCAL ? m->lmask :
	    m->pmask;
	size_t *cnt = k == T_INO ? &m->in : k == T_LOCAL ? &m->ln : &m->pn;
	struct minode **pp = &tab[bucket_of(n, k, mask)];

	while (*pp && *pp != n)
		pp = chain_of(*pp, k);
	if (*pp) {
		*pp = *chain_of(n, k);
		(*cnt)--;
	}
}

static void
itab_add(struct mount *m, struct minode *n)
{
	tab_add(m, n, T_INO);
}

static void
ltab_add(struct mount *m, struct minode *n)
{
	tab_add(m, n, T_LOCAL);
	n->parent->nlocal++;
}

static void
ltab_del(struct mount *m, struct minode *n)
{
	tab_del(m, n, T_LOCAL);
	n->parent->nlocal--;
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

/* What a node costs: the struct, its name, and malloc's share of both. */
static size_t
node_cost(const char *name)
{
	return sizeof(struct minode) + strlen(name) + 1 + 2 * MNT_MALLOC_COST;
}

/* Set |n|'s accounted size to |bytes|. */
static void
node_resize(struct mount *m, struct minode *n, size_t bytes)
{
	mem_account(m, (ssize_t)bytes - (ssize_t)n->bytes);
	if (n->evicting)
		m->mem_evicting += bytes - n->bytes;
	n->bytes = bytes;
}

static struct minode *
node_new(struct mount *m, struct minode *parent, const char *name)
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
	node_resize(m, n, node_cost(name));
	return n;
}

/* Off the eviction lists; an evicting node no longer counts as such. */
static void
node_unlist(struct mount *m, struct minode *n)
{
	lru_del(&n->lru);
	if (n->evicting) {
		m->mem_evicting -= n->bytes;
		n->evicting = 0;
	}
}

/* The kernel may be asked to drop |n|: it holds a reference, and |n| is
 * neither the root, nor local, nor open. */
static int
evictable(const struct minode *n)
{
	return n->parent != NULL && !n->local && n->nopen == 0 &&
	    n->nlookup > 0;
}

int
is_ofile(const struct minode *n)
{
	return !n->local && n->attr.type == MST_T_FILE;
}

int
ofile_refresh(struct minode *n, const struct mst_attr *a)
{
	int changed = n->stale || a->change != n->attr.change ||
	    a->size != n->attr.size;

	/* Answers cross: a GETATTR or LOOKUP answered before a WRITE that
	 * this mount has already seen answered is older than what we know.
	 * Taking it would move the size back, and the kernel would cut its
	 * pages to it. Change counters only grow. */
	if (a->change < n->attr.change)
		return n->stale;

	if (a->size < n->sz_shown)
		n->sz_shown = a->size;	/* truncated: the kernel takes it */
	n->attr = *a;
	n->stale = 0;
	n->attr_at_ms = mono_ms();
	return changed;
}

/* Track ordinary files with several links (see inode_dir_changed). */
static void
note_links(struct mount *m, struct minode *n)
{
	if (is_ofile(n) && n->attr.nlink > 1 && !lru_on(&n->hl))
		lru_add_head(&m->hlinks, &n->hl);
}

void
inode_touch(struct mount *m, struct minode *n)
{
	node_unlist(m, n);
	n->parked = 0;
	n->tick = ++m->tick;
	if (evictable(n))
		lru_add_head(&m->ilru, &n->lru);
	note_links(m, n);
}

/* tmp/ is never watched: what is in it lives here, and its own
 * attributes keep the attribute timeout as they always did. */
int
inode_dir_trusted(const struct minode *dir)
{
	return dir->wstate == W_ACTIVE || dir->dkind == DK_TMP;
}

int
inode_trusted(const struct minode *n)
{
	if (n->attr.type == MST_T_DIR)
		return inode_dir_trusted(n);
	return n->parent == NULL || inode_dir_trusted(n->parent);
}

/* A child of |p| was freed or moved away. A directory waits for its last
 * child before the kernel may be asked to drop it. */
static void
child_gone(struct mount *m, struct minode *p)
{
	if (--p->nchild == 0 && p->parked) {
		p->parked = 0;
		if (evictable(p))
			lru_add_tail(&m->ilru, &p->lru);
	}
}

/* Take |n| out of every table and list and free it; its parent may then
 * be free too (returned, or NULL). */
static struct minode *
node_free(struct mount *m, struct minode *n)
{
	struct minode *p = n->parent;

	tab_del(m, n, T_INO);
	if (p)
		tab_del(m, n, T_NAME);
	if (n->local && !n->unlinked)
		ltab_del(m, n);
	node_unlist(m, n);
	lru_del(&n->hl);
	if (n->attr.type == MST_T_DIR && m->dir_gone)
		m->dir_gone(m, n);	/* its watch ends (notify.c) */
	neg_drop(m, n);		/* its missing names, watched or not */
	if (n->folder) {
		folder_free(n->folder);
		n->folder = NULL;
	}
	fbuf_free(n->buf);
	node_resize(m, n, 0);
	free(n->stage);		/* never committed: the store reclaims it */
	free(n->name);
	free(n);
	if (p == NULL)
		return NULL;
	child_gone(m, p);
	return p;
}

/* Free |n| once nothing refers to it: no kernel reference, no open
 * handle, no child, no CLOSE unanswered. Local files stay until unlinked:
 * their contents live only here. The root stays. A directory that goes takes its folder cache
 * and its watch with it; its parent may follow. */
static void
maybe_free(struct mount *m, struct minode *n)
{
	while (n && n->nlookup == 0 && n->nopen == 0 && n->nchild == 0 &&
	    n->close_wait == 0 &&
	    n->parent != NULL && !(n->local && !n->unlinked))
		n = node_free(m, n);
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
		n->folder = folder_new(m, n);
}

struct minode *
inode_remote(struct mount *m, struct minode *parent, const char *name,
    const struct mst_attr *a, int lookup, int *drop)
{
	struct minode *n = inode_get(m, a->id);

	if (n == NULL) {
		n = node_new(m, parent, name);
		if (n == NULL)
			return NULL;
		n->ino = a->id;
		n->attr = *a;
		itab_add(m, n);
		tab_add(m, n, T_NAME);
		set_dkind(m, n);
	} else if (is_ofile(n) && a->type == MST_T_FILE) {
		/* Newer than what the kernel cached? Then its pages go
		 * (the caller queues that). */
		if (ofile_refresh(n, a)) {
			n->epoch++;
			*drop = 1;
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
	inode_touch(m, n);
	return n;
}

struct minode *
inode_find_dir(struct mount *m, const struct minode *parent,
    const char *name, size_t len)
{
	struct minode *x;

	if (m->ptab == NULL)
		return NULL;
	for (x = m->ptab[phash(parent, name, len, m->pmask)]; x; x = x->pnext)
		if (x->parent == parent && x->attr.type == MST_T_DIR &&
		    strncmp(x->name, name, len) == 0 && x->name[len] == '\0')
			return x;
	return NULL;
}

/* Do notices tell the mount every change of directory |n|'s attributes?
 * Its own watch reports its contents (a tmp/ has none in the store), its
 * parent's its entry (chmod, chown, rename, rmdir). mu held. */
static int
notified(const struct minode *n)
{
	return n->attr.type == MST_T_DIR && n->parent != NULL &&
	    (n->wstate == W_ACTIVE || n->dkind == DK_TMP) &&
	    n->parent->wstate == W_ACTIVE;
}

int
inode_attr_notified(const struct minode *n)
{
	return notified(n);
}

int
inode_attr_fresh(const struct mount *m, const struct minode *n)
{
	return n->attr_at_ms != 0 && (notified(n) || mono_ms() -
	    n->attr_at_ms < (int64_t)(m->entry_timeout * 1000));
}

/* Is |x| known as |x->name| of |parent|, its stamps being |now|? */
static int
name_known(const struct minode *x, const struct minode *parent,
    const struct negstamp *now)
{
	const struct negstamp *p = &x->pos;

	return x->parent == parent && is_ofile(x) && !x->stale &&
	    now->active && p->active && p->epoch == now->epoch &&
	    p->gen == now->gen && p->wgen == now->wgen;
}

struct minode *
inode_known_file(struct mount *m, const struct minode *parent,
    const char *name, const struct negstamp *now)
{
	struct minode *x;

	if (m->ptab == NULL || !now->active)
		return NULL;
	for (x = m->ptab[lhash(parent, name, m->pmask)]; x; x = x->pnext)
		if (name_known(x, parent, now) && strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

int
inode_file_known(const struct mount *m, const struct minode *n)
{
	struct negstamp now;

	if (n->parent == NULL)
		return 0;
	pos_stamp(m, n->parent, &now);
	return name_known(n, n->parent, &now);
}

void
inode_detach_dir(struct mount *m, struct minode *parent, const char *name)
{
	struct minode *x;

	while ((x = inode_find_dir(m, parent, name, strlen(name))) != NULL) {
		tab_del(m, x, T_NAME);
		x->name[0] = '\0';
		tab_add(m, x, T_NAME);
	}
}

void
inode_name_changed(struct mount *m, struct minode *dir, const char *name)
{
	struct minode *x;

	/* Neither known missing, nor known as the file it was: it is the
	 * store's to say again, unless inode_own_done knows better. */
	neg_del(m, dir, name);
	for (x = m->ptab[lhash(dir, name, m->pmask)]; x; x = x->pnext)
		if (x->parent == dir && is_ofile(x) &&
		    strcmp(x->name, name) == 0) {
			x->stale = 1;
			x->pos.active = 0;
		}
}

void
inode_dir_changed(struct mount *m, struct minode *dir, const char *name)
{
	struct minode *x;
	struct lru *l, *next;

	dir->attr_at_ms = 0;
	/* Other directories keep their names: this mount's own changes
	 * reach only the directories it names here and in inode_move. A
	 * change of one name forgets that name; the others did not move,
	 * and a change from elsewhere comes as a notice (struct negset). */
	dir->own_gen++;
	if (name == NULL) {
		dir->neg_gen++;		/* which names: not said */
		return;
	}
	inode_name_changed(m, dir, name);
	/* A link count may have moved on any other name of a hard-linked
	 * file; the list forgets those that no longer have several. */
	for (l = m->hlinks.next; l != &m->hlinks; l = next) {
		next = l->next;
		x = LRU_ENTRY(l, struct minode, hl);
		if (is_ofile(x) && x->attr.nlink > 1)
			x->stale = 1;
		else
			lru_del(l);
	}
}

void
inode_own_stamp(const struct mount *m, const struct minode *dir,
    struct ownstamp *os)
{
	neg_stamp(m, dir, &os->neg);
	pos_stamp(m, dir, &os->pos);
	os->attr_kept = dir->attr_at_ms != 0 && notified(dir);
}

void
inode_own_done(struct mount *m, struct minode *dir,
    const struct ownstamp *os, const char *gone, struct minode *came,
    uint64_t dir_change, uint64_t dir_mtime_ns)
{
	struct negstamp now;

	neg_stamp(m, dir, &now);
	if (gone && stamp_own_only(&os->neg, &now))
		neg_add(m, dir, &now, gone);
	pos_stamp(m, dir, &now);
	if (!stamp_own_only(&os->pos, &now))
		return;
	if (came && is_ofile(came) && came->parent == dir && !came->stale)
		came->pos = now;
	/*
	 * The directory's other attributes (owner, mode, link count) are
	 * what notices kept: a change of them from elsewhere moves
	 * m->pos_epoch (on_notice), and this mount's own mkdir, rmdir and
	 * directory renames pass no counter. Change counters only grow: an
	 * older one is not taken.
	 */
	if (os->attr_kept && dir_change != 0 && dir_mtime_ns != 0 &&
	    dir_change > dir->attr.change && notified(dir)) {
		dir->attr.change = dir_change;
		dir->attr.mtime_ns = dir->attr.ctime_ns = dir_mtime_ns;
		dir->attr_at_ms = mono_ms();
	}
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
	struct minode *n = node_new(m, parent, name);

	if (n == NULL)
		return NULL;
	n->buf = fbuf_new();
	if (n->buf == NULL) {
		node_resize(m, n, 0);
		parent->nchild--;
		free(n->name);
		free(n);
		return NULL;
	}
	n->ino = MNT_LOCAL_BASE + m->next_local++;
	n->local = 1;
	n->attr.type = MST_T_FILE;
	n->attr.id = n->ino;
	n->attr.mode = mode & 07777;
	n->attr.nlink = 1;
	n->attr.mtime_ns = n->attr.ctime_ns = now_ns();
	itab_add(m, n);
	ltab_add(m, n);
	tab_add(m, n, T_NAME);
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
	inode_touch(m, n);		/* a store object now: evictable */
	maybe_free(m, n);
}

/* Re-parent and rename |n|; |own|: a rename this mount made, whose
 * directories inode_dir_changed has told. */
static int
move_node(struct mount *m, struct minode *n, struct minode *parent,
    const char *name, int own)
{
	char *nm = strdup(name);

	if (nm == NULL)
		return -ENOMEM;
	if (n->local && !n->unlinked)
		ltab_del(m, n);
	tab_del(m, n, T_NAME);
	parent->nchild++;
	child_gone(m, n->parent);
	n->parent = parent;
	free(n->name);
	n->name = nm;
	node_resize(m, n, node_cost(nm));
	if (n->local && !n->unlinked)
		ltab_add(m, n);
	tab_add(m, n, T_NAME);
	if (n->attr.type == MST_T_DIR)
		set_dkind(m, n);
	/* A name came to |parent| (no notice comes for ours); a moved
	 * directory's watch is of its old path. No name known missing
	 * from either holds, nor one asked for before now; of a rename
	 * this mount made, inode_dir_changed forgot the names it moved. */
	if (!own)
		parent->neg_gen++;
	n->neg_gen++;
	if (n->attr.type == MST_T_DIR) {
		/* The watches below it are of old paths. */
		m->neg_epoch++;
		m->pos_epoch++;
	}
	return 0;
}

int
inode_move(struct mount *m, struct minode *n, struct minode *parent,
    const char *name)
{
	return move_node(m, n, parent, name, 0);
}

int
inode_rename(struct mount *m, struct minode *n, struct minode *parent,
    const char *name)
{
	return move_node(m, n, parent, name, 1);
}

void
inode_forget(struct mount *m, struct minode *n, uint64_t nlookup)
{
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	if (n->nlookup == 0)
		node_unlist(m, n);	/* nothing left to ask the kernel */
	maybe_free(m, n);
}

void
inode_close(struct mount *m, struct minode *n)
{
	if (n->nopen > 0)
		n->nopen--;
	if (n->nopen == 0 && n->nlookup > 0 && !lru_on(&n->lru))
		inode_touch(m, n);	/* just used: evictable again */
	maybe_free(m, n);
}

/* Kept meanwhile so that a reconnection still finds the CLOSE counted
 * (notify.c rehold) and a later open of the file the same node. */
void
inode_close_done(struct mount *m, struct minode *n)
{
	if (n->close_wait > 0)
		n->close_wait--;
	maybe_free(m, n);
}

/* --- the memory budget --- */

/* How long the kernel may take to drop an inode it was asked to drop
 * before the mount stops counting on it (a name it holds in use, or by
 * another link, keeps it). */
#define EVICT_WAIT_MS	2000
/* Work of one eviction pass at most; the next operation goes on. */
#define EVICT_BATCH	16384

/* Nodes the kernel has not dropped in time are counted in full again and
 * go back to the hot end of the LRU list: retried after a full cycle. */
static void
evict_expire(struct mount *m, int64_t now)
{
	struct lru *l;
	struct minode *n;

	while ((l = lru_tail(&m->elru)) != NULL) {
		n = LRU_ENTRY(l, struct minode, lru);
		if (now - n->evict_ms < EVICT_WAIT_MS)
			break;
		node_unlist(m, n);
		if (evictable(n))
			lru_add_head(&m->ilru, &n->lru);
	}
}

/* Take the coldest node |n| off the LRU list and, if the kernel may be
 * asked to drop it, count it as evicting: 1 (the caller asks), else 0. */
static int
evict_node(struct mount *m, struct minode *n, int64_t now)
{
	lru_del(&n->lru);
	if (!evictable(n) || n->name[0] == '\0')
		return 0;		/* re-listed when used again */
	if (n->attr.type == MST_T_DIR && n->nchild > 0) {
		n->parked = 1;		/* back when its last child goes */
		return 0;
	}
	/* Asking the kernel to forget the name ends its last reference
	 * to the inode (FUSE evicts an inode with its last dentry), and
	 * the FORGET that follows frees the node. */
	n->evicting = 1;
	n->evict_ms = now;
	m->mem_evicting += n->bytes;
	lru_add_head(&m->elru, &n->lru);
	m->evictions++;
	return 1;
}

/* Over the budget, counting what the kernel has not yet let go of: the
 * batches already asked for count towards the 90%, so a kernel slow to
 * forget does not make every check evict more. */
int
inode_over_budget(const struct mount *m)
{
	return m->mem_used > m->mem_budget &&
	    m->mem_used - m->mem_evicting > m->mem_budget / 10 * 9;
}

void
inode_evict_start(struct mount *m, int64_t now)
{
	evict_expire(m, now);
}

enum evict
inode_evict_next(struct mount *m, int64_t now, size_t *work,
    struct minode **n_out, struct folder **f_out)
{
	struct lru *il, *fl;
	struct minode *n;
	struct folder *f;
	size_t target = m->mem_budget / 10 * 9;

	while (m->mem_used - m->mem_evicting > target &&
	    (*work)++ < EVICT_BATCH) {
		il = lru_tail(&m->ilru);
		fl = lru_tail(&m->flru);
		n = il ? LRU_ENTRY(il, struct minode, lru) : NULL;
		f = fl ? LRU_ENTRY(fl, struct folder, lru) : NULL;
		if (n == NULL && f == NULL)
			break;
		if (f && (n == NULL || f->tick <= n->tick)) {
			if (f->busy) {
				f->tick = ++m->tick;
				lru_add_head(&m->flru, &f->lru);
				continue;
			}
			*f_out = f;
			return EV_FOLDER;
		}
		if (evict_node(m, n, now)) {
			*n_out = n;
			return EV_NODE;
		}
	}
	return EV_DONE;
}

/* WRITEs of this host in flight: stat answers the size from before them
 * (see struct settle in ops_file.c). */
int
inode_size_held(const struct minode *n)
{
	return n->wr_busy > 0;
}

void
inode_local_refresh(struct minode *n)
{
	if (!n->local || n->buf == NULL || fbuf_refresh(n->buf) == 0)
		return;
	/* The kernel drops privileges for a write through its page cache
	 * only; a passthrough write goes to the backing file, whose own
	 * bits are not these. */
	n->attr.mode = mode_drop_privs(n->attr.mode);
}

void
inode_stat(struct minode *n, struct stat *st)
{
	const struct mst_attr *a = &n->attr;

	inode_local_refresh(n);
	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_mode = (a->type == MST_T_DIR ? S_IFDIR : S_IFREG) |
	    (a->mode & 07777);
	st->st_nlink = n->local && n->unlinked ? 0 : a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)(n->local && n->buf ? n->buf->size : a->size);
	if (inode_size_held(n) && (uint64_t)st->st_size > n->wr_base)
		st->st_size = (off_t)n->wr_base;
	/*
	 * Nor below a size answered before, or one the kernel is known to
	 * have: wr_base is the size from before a run of WRITEs, and a WRITE
	 * that starts while an earlier one is still settling keeps it,
	 * though the kernel took the earlier write's size when its writer
	 * ran again (it sends the next WRITE only after that). Answered now
	 * while a WRITE is in flight, that older size would be a stat's
	 * result (the kernel returns what we answer even when it ignores
	 * it), or the kernel's new size, cutting its pages: a reader that
	 * mapped the size its fstat gave finds the file shorter. What this
	 * mount has answered the kernel already has by the time a WRITE is
	 * in flight. Not above the file's own size (truncated elsewhere).
	 */
	if (is_ofile(n)) {
		if ((uint64_t)st->st_size < n->sz_shown &&
		    n->sz_shown <= a->size)
			st->st_size = (off_t)n->sz_shown;
		n->sz_shown = (uint64_t)st->st_size;
	}
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
	m->pmask = 1023;
	m->ptab = calloc(m->pmask + 1, sizeof *m->ptab);
	lru_init(&m->ilru);
	lru_init(&m->elru);
	lru_init(&m->flru);
	lru_init(&m->hlinks);
	mem_account(m, (ssize_t)((m->imask + m->lmask + m->pmask + 3) *
	    sizeof(struct minode *)));
	root = node_new(m, NULL, "");
	if (m->itab == NULL || m->ltab == NULL || m->ptab == NULL ||
	    root == NULL) {
		if (root)
			free(root->name);
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
			neg_drop(m, n);
			free(n->stage);
			free(n->name);
			free(n);
		}
	free(m->itab);
	free(m->ltab);
	free(m->ptab);
	m->itab = m->ltab = m->ptab = NULL;
}
