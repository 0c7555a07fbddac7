/*
 * index.c - the in-memory index (see index.h). Owns nodes, hash tables,
 * mailboxes and tombstones. Never does I/O except in index_save/load
 * (checkpoint.c's job is the file; here only the byte stream).
 *
 * Invariants:
 *  1. Every node except the root has a parent directory, is in its
 *     parent's child list and in by_name under (parent id, name).
 *  2. Every node is in by_id; messages are in by_idem.
 *  3. A directory's change is the lsn of the last record that added,
 *     removed or renamed one of its entries; a node's change is the lsn
 *     of the last record that touched it.
 *  4. seg_live[s] is the sum of the body sizes of the live messages
 *     whose body is in segment s plus the stored bytes of the live file
 *     blocks there (orphans included: they are live until closed).
 *  5. A mailbox's bytes/msgs are the sums over its live messages.
 *  6. A file object is in |files| and its names (nlink of them) are on
 *     its |names| list; directories and messages are in by_id, file
 *     names are not. A directory's nsubdirs counts its directory
 *     children.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xxhash.h>

#include "index.h"
#include "spent.h"

/*
 * The arena. Nodes are the bulk of the index (one per message), so they
 * are not malloc'd one by one: the index reserves ARENA_MAX bytes of
 * address space at once (no memory until touched) and carves nodes out
 * of it in 8-byte units, with a free list per size. A node's handle is
 * its offset in units, 32 bits (0 is no node), so the three hash chains
 * cost 12 bytes a node instead of 24, and there is no allocator header.
 * Pointers to nodes stay valid for the index's life (the reservation
 * never moves); a node's size is always node_units(namelen), so a
 * rename to a name of another size moves the node (move_name).
 *
 * Memory per message, 30-byte names (restart-bench, docs/BENCHMARKS.md):
 * before, 208 bytes of malloc'd node and about 44 of hash buckets; now
 * a 168-byte node and about 9 bytes of buckets (up to 2 per bucket).
 * Freed nodes are reused, never given back to the system until
 * index_free.
 */
#define ARENA_UNIT	8u
#define ARENA_MAX	((size_t)ARENA_UNIT << 32)	/* 32 GiB */
#define ARENA_MIN	((size_t)64 << 20)

_Static_assert((sizeof(struct node) + MST_NAME_MAX + 1 + ARENA_UNIT - 1) /
    ARENA_UNIT < INDEX_ARENA_CLASSES, "a node of the longest name fits");

#define H2N(ix, h) ((h) ? (struct node *)((ix)->arena + \
	(size_t)(h) * ARENA_UNIT) : NULL)
#define N2H(ix, n) ((uint32_t)(((const char *)(n) - (ix)->arena) / \
	ARENA_UNIT))
#define NEXT(n, off) (*(uint32_t *)((char *)(n) + (off)))
#define PN_OFF offsetof(struct node, pn_next)
#define ID_OFF offsetof(struct node, id_next)
#define IDEM_OFF offsetof(struct node, idem_next)

static size_t
node_units(size_t namelen)
{
	return (offsetof(struct node, name) + namelen + 1 + ARENA_UNIT - 1) /
	    ARENA_UNIT;
}

/* Reserve the arena: as much of ARENA_MAX as the system lets us map
 * (with strict overcommit a smaller one; the index is then full sooner:
 * -ENOMEM). */
static int
arena_init(struct index *ix)
{
	size_t cap;
	void *p;

	for (cap = ARENA_MAX; cap >= ARENA_MIN; cap /= 2) {
		p = mmap(NULL, cap, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED) {
			/* Huge pages, like the rest of mstored's heap
			 * (main.c): the checkpoint's fork copies one page
			 * table entry per page, which at ten million
			 * messages took 60-170 ms in 4 KiB pages. The
			 * price is at start: the kernel zeroes each 2 MiB
			 * page at its first touch (about 0.3 s of CPU a
			 * million messages here, docs/BENCHMARKS.md). */
			(void)madvise(p, cap, MADV_HUGEPAGE);
			ix->arena = p;
			ix->arena_cap = cap;
			ix->arena_top = 1;	/* handle 0: no node */
			return 0;
		}
	}
	return -ENOMEM;
}

static struct node *
arena_alloc(struct index *ix, size_t units)
{
	uint32_t h = ix->arena_free[units];
	struct node *n;

	if (h) {
		n = H2N(ix, h);
		ix->arena_free[units] = *(uint32_t *)n;
	} else {
		if ((ix->arena_top + units) * ARENA_UNIT > ix->arena_cap)
			return NULL;
		n = H2N(ix, (uint32_t)ix->arena_top);
		ix->arena_top += units;
	}
	memset(n, 0, units * ARENA_UNIT);
	return n;
}

static void
arena_free(struct index *ix, struct node *n)
{
	size_t units = node_units(n->namelen);

	*(uint32_t *)n = ix->arena_free[units];
	ix->arena_free[units] = N2H(ix, n);
}

static uint64_t
hash_pn(uint64_t parent, const char *name, size_t len)
{
	return XXH3_64bits_withSeed(name, len, parent);
}

static uint64_t
hash_id(uint64_t id)
{
	return id * 0x9e3779b97f4a7c15ull;
}

static uint64_t
hash_idem(const uint8_t *idem)
{
	return XXH3_64bits(idem, MST_IDEM_LEN);
}

static uint64_t
node_hash(const struct node *n, size_t off)
{
	if (off == PN_OFF)
		return hash_pn(n->parent ? n->parent->id : 0, n->name,
		    n->namelen);
	if (off == ID_OFF)
		return hash_id(n->id);
	return hash_idem(n->idem);
}

static int
htab_init(struct htab *t, size_t buckets)
{
	t->b = calloc(buckets, sizeof *t->b);
	t->mask = buckets - 1;
	t->n = 0;
	return t->b ? 0 : -ENOMEM;
}

/* Rehash into |nb| buckets (a power of two); failure to grow only costs
 * speed, so it is not an error. */
static void
htab_resize(struct index *ix, struct htab *t, size_t off, size_t nb)
{
	uint32_t *b = calloc(nb, sizeof *b), h, next;
	struct node *n;
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i <= t->mask; i++) {
		for (h = t->b[i]; h; h = next) {
			uint64_t k = node_hash(n = H2N(ix, h), off) & (nb - 1);

			next = NEXT(n, off);
			NEXT(n, off) = b[k];
			b[k] = h;
		}
	}
	free(t->b);
	t->b = b;
	t->mask = nb - 1;
}

/* Insert |n| whose hash is |hash|. */
static void
htab_add_hashed(struct index *ix, struct htab *t, struct node *n, size_t off,
    uint64_t hash)
{
	uint64_t k;

	if (t->n >= 2 * (t->mask + 1))
		htab_resize(ix, t, off, (t->mask + 1) * 2);	/* load 2 */
	k = hash & t->mask;
	NEXT(n, off) = t->b[k];
	t->b[k] = N2H(ix, n);
	t->n++;
}

/*
 * Loading a checkpoint inserts millions of nodes, each into three
 * tables far bigger than the caches: one cache (and TLB) miss after
 * another. So while ix->loading, an insert only prefetches its bucket
 * and waits in a ring of INDEX_PEND; it is done INDEX_PEND inserts
 * later, when the bucket has arrived, and so the misses overlap. Every
 * lookup while loading must come after index_load_flush().
 */
static void
htab_add(struct index *ix, struct htab *t, struct node *n, size_t off)
{
	uint64_t hash = node_hash(n, off);
	struct index_pend *p;

	if (!ix->loading) {
		htab_add_hashed(ix, t, n, off, hash);
		return;
	}
	/* Grow first, so that the prefetched bucket stays the one. */
	if (t->n + ix->npend >= 2 * (t->mask + 1))
		index_load_flush(ix);
	if (t->n >= 2 * (t->mask + 1))
		htab_resize(ix, t, off, (t->mask + 1) * 2);
	__builtin_prefetch(&t->b[hash & t->mask], 1);
	p = &ix->pend[(ix->pend_head + ix->npend) % INDEX_PEND];
	if (ix->npend == INDEX_PEND) {
		htab_add_hashed(ix, p->t, p->n, p->off, p->hash);
		ix->pend_head = (ix->pend_head + 1) % INDEX_PEND;
	} else {
		ix->npend++;
	}
	*p = (struct index_pend){ t, n, off, hash };
}

void
index_load_flush(struct index *ix)
{
	struct index_pend *p;

	for (; ix->npend; ix->npend--) {
		p = &ix->pend[ix->pend_head];
		htab_add_hashed(ix, p->t, p->n, p->off, p->hash);
		ix->pend_head = (ix->pend_head + 1) % INDEX_PEND;
	}
}

static void
htab_del(struct index *ix, struct htab *t, struct node *n, size_t off)
{
	uint32_t *pp = &t->b[node_hash(n, off) & t->mask], h = N2H(ix, n);

	while (*pp && *pp != h)
		pp = &NEXT(H2N(ix, *pp), off);
	if (*pp) {
		*pp = NEXT(n, off);
		t->n--;
	}
}

static void
htab_reserve(struct index *ix, struct htab *t, size_t off, uint64_t n)
{
	size_t nb = t->mask + 1;

	while (2 * nb < n && nb < ((size_t)1 << 40))
		nb *= 2;
	if (nb > t->mask + 1)
		htab_resize(ix, t, off, nb);
}

void
index_reserve(struct index *ix, uint64_t nodes)
{
	htab_reserve(ix, &ix->by_name, PN_OFF, nodes);
	htab_reserve(ix, &ix->by_id, ID_OFF, nodes);
	htab_reserve(ix, &ix->by_idem, IDEM_OFF, nodes);
}

struct node *
index_find_id(const struct index *ix, uint64_t id)
{
	struct node *n = H2N(ix, ix->by_id.b[hash_id(id) & ix->by_id.mask]);

	while (n && n->id != id)
		n = H2N(ix, n->id_next);
	return n;
}

struct fobj *
index_find_file(const struct index *ix, uint64_t id)
{
	struct fobj *f = ix->files[hash_id(id) & ix->file_mask];

	while (f && f->id != id)
		f = f->next;
	return f;
}

static void
files_add(struct index *ix, struct fobj *f)
{
	size_t h, i, nb;
	struct fobj **b, *g, *next;

	if (ix->nfiles > ix->file_mask) {
		nb = (ix->file_mask + 1) * 2;
		b = calloc(nb, sizeof *b);
		if (b != NULL) {	/* else only slower */
			for (i = 0; i <= ix->file_mask; i++)
				for (g = ix->files[i]; g; g = next) {
					next = g->next;
					h = hash_id(g->id) & (nb - 1);
					g->next = b[h];
					b[h] = g;
				}
			free(ix->files);
			ix->files = b;
			ix->file_mask = nb - 1;
		}
	}
	h = hash_id(f->id) & ix->file_mask;
	f->next = ix->files[h];
	ix->files[h] = f;
	ix->nfiles++;
}

static void
files_del(struct index *ix, struct fobj *f)
{
	struct fobj **pp = &ix->files[hash_id(f->id) & ix->file_mask];

	while (*pp && *pp != f)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = f->next;
		ix->nfiles--;
	}
}

uint64_t
index_change(const struct node *n)
{
	return n->type == MST_T_FILE ? n->x.file->change : n->change;
}

void
index_fattr(const struct fobj *f, struct mst_attr *a)
{
	a->type = MST_T_FILE;
	a->id = f->id;
	a->size = f->size;
	a->mode = f->mode;
	a->uid = f->uid;
	a->gid = f->gid;
	a->nlink = f->nlink;
	a->mtime_ns = (uint64_t)f->mtime_ns;
	a->ctime_ns = (uint64_t)f->ctime_ns;
	a->atime_ns = (uint64_t)f->atime_ns;
	a->change = f->change;
}

void
index_attr(const struct node *n, struct mst_attr *a)
{
	if (n->type == MST_T_FILE) {
		index_fattr(n->x.file, a);
		return;
	}
	a->type = n->type;
	a->id = n->id;
	a->size = n->type == MST_T_DIR ? 4096 : n->size;
	a->mode = n->mode;
	a->uid = n->uid;
	a->gid = n->gid;
	a->nlink = n->type == MST_T_DIR ?
	    (uint32_t)(2 + n->x.dir->nsubdirs) : 1;
	a->mtime_ns = (uint64_t)n->mtime_ns;
	a->ctime_ns = (uint64_t)n->ctime_ns;
	a->atime_ns = (uint64_t)n->atime_ns;
	a->change = n->change;
}

struct node *
index_lookup(const struct index *ix, const struct node *dir, const char *name,
    size_t len)
{
	uint64_t h = hash_pn(dir->id, name, len);
	struct node *n = H2N(ix, ix->by_name.b[h & ix->by_name.mask]);

	for (; n; n = H2N(ix, n->pn_next))
		if (n->parent == dir && n->namelen == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

struct node *
index_find_idem(const struct index *ix, const uint8_t idem[MST_IDEM_LEN])
{
	struct node *n = H2N(ix,
	    ix->by_idem.b[hash_idem(idem) & ix->by_idem.mask]);

	while (n && memcmp(n->idem, idem, MST_IDEM_LEN) != 0)
		n = H2N(ix, n->idem_next);
	return n;
}

int
index_resolve(const struct index *ix, struct mst_str path, struct node **out)
{
	struct node *n = ix->root;
	size_t i = 0, j;

	while (i < path.len) {
		if (n->type != MST_T_DIR)
			return -ENOTDIR;
		for (j = i; j < path.len && path.p[j] != '/'; j++)
			;
		n = index_lookup(ix, n, path.p + i, j - i);
		if (n == NULL)
			return -ENOENT;
		i = j + 1;
	}
	*out = n;
	return 0;
}

int
index_path(const struct node *n, char *buf, size_t cap)
{
	size_t len = 0, pos;
	const struct node *m;

	for (m = n; m->parent; m = m->parent)
		len += m->namelen + (m->parent->parent ? 1u : 0u);
	if (len >= cap)
		return -ENAMETOOLONG;
	buf[len] = '\0';
	pos = len;
	for (m = n; m->parent; m = m->parent) {
		pos -= m->namelen;
		memcpy(buf + pos, m->name, m->namelen);
		if (m->parent->parent)
			buf[--pos] = '/';
	}
	return (int)len;
}

struct mbox *
index_mbox(struct index *ix, struct mst_str name, int create)
{
	uint64_t h = XXH3_64bits(name.p, name.len);
	struct mbox *m = ix->mboxes[h & ix->mbox_mask];

	for (; m; m = m->next)
		if (strlen(m->name) == name.len &&
		    memcmp(m->name, name.p, name.len) == 0)
			return m;
	if (!create)
		return NULL;
	if (ix->nmbox > ix->mbox_mask) {
		size_t nb = (ix->mbox_mask + 1) * 2, i;
		struct mbox **b = calloc(nb, sizeof *b), *next;

		if (b != NULL) {
			for (i = 0; i <= ix->mbox_mask; i++)
				for (m = ix->mboxes[i]; m; m = next) {
					uint64_t mh = XXH3_64bits(m->name,
					    strlen(m->name)) & (nb - 1);

					next = m->next;
					m->next = b[mh];
					b[mh] = m;
				}
			free(ix->mboxes);
			ix->mboxes = b;
			ix->mbox_mask = nb - 1;
		}
	}
	m = calloc(1, sizeof *m + name.len + 1);
	if (m == NULL)
		return NULL;
	memcpy(m->name, name.p, name.len);
	m->quota_bytes = ix->quota_bytes;
	m->quota_msgs = ix->quota_msgs;
	m->next = ix->mboxes[h & ix->mbox_mask];
	ix->mboxes[h & ix->mbox_mask] = m;
	ix->nmbox++;
	return m;
}

/*
 * A mailbox whose last message went and whose quota is the default's is
 * forgotten, so that the mailbox count (stats) goes down when mailboxes
 * are emptied and removed; the next delivery makes it again. One with a
 * quota of its own (quota_file, ADMIN quota) stays: the record holds it.
 */
static void
mbox_drop_if_idle(struct index *ix, struct mbox *m)
{
	struct mbox **pp;

	if (m->msgs != 0 || m->quota_bytes != ix->quota_bytes ||
	    m->quota_msgs != ix->quota_msgs)
		return;
	pp = &ix->mboxes[XXH3_64bits(m->name, strlen(m->name)) &
	    ix->mbox_mask];
	while (*pp != NULL && *pp != m)
		pp = &(*pp)->next;
	if (*pp == NULL)
		return;
	*pp = m->next;
	ix->nmbox--;
	free(m);
}

void
index_mbox_sweep(struct index *ix)
{
	struct mbox *m, *next;
	size_t i;

	for (i = 0; i <= ix->mbox_mask; i++)
		for (m = ix->mboxes[i]; m; m = next) {
			next = m->next;
			mbox_drop_if_idle(ix, m);
		}
}

/*
 * Segment numbers come from checkpoints and records, which may be damaged
 * (a checkpoint is parsed before its checksum is checked): one beyond
 * INDEX_SEG_MAX is refused as damage rather than sized for, so a bad
 * number can neither wrap the table size nor allocate gigabytes.
 */
static int
seg_live_add(struct index *ix, uint32_t seg, int64_t delta)
{
	if (seg >= INDEX_SEG_MAX)
		return -EBADMSG;
	if (seg >= ix->nseg_live) {
		uint32_t n = seg + 64;	/* < 2^24 + 64: no wrap */
		uint64_t *v = realloc(ix->seg_live, (size_t)n * sizeof *v);

		if (v == NULL)
			return -ENOMEM;
		memset(v + ix->nseg_live, 0, (n - ix->nseg_live) * sizeof *v);
		ix->seg_live = v;
		ix->nseg_live = n;
	}
	ix->seg_live[seg] += (uint64_t)delta;
	return 0;
}

uint64_t
index_seg_live(const struct index *ix, uint32_t seg)
{
	return seg < ix->nseg_live ? ix->seg_live[seg] : 0;
}

static void
attach(struct index *ix, struct node *n, struct node *dir)
{
	n->parent = dir;
	n->sib_prev = NULL;
	n->sib_next = dir->x.dir->first;
	if (n->sib_next)
		n->sib_next->sib_prev = n;
	dir->x.dir->first = n;
	dir->x.dir->nchildren++;
	if (n->type == MST_T_DIR)
		dir->x.dir->nsubdirs++;
	htab_add(ix, &ix->by_name, n, PN_OFF);
}

static void
tomb_add(struct node *dir, const struct node *n, uint64_t lsn)
{
	struct dirx *d = dir->x.dir;
	struct tomb *t;

	if (d->tombs == NULL) {
		d->tombs = calloc(INDEX_TOMBS, sizeof *d->tombs);
		if (d->tombs == NULL) {
			d->tomb_floor = lsn;	/* forget: clients re-list */
			return;
		}
	}
	t = &d->tombs[d->tomb_next];
	d->tomb_next = (d->tomb_next + 1) % INDEX_TOMBS;
	if (t->name) {
		if (t->change > d->tomb_floor)
			d->tomb_floor = t->change;
		free(t->name);
	}
	t->name = strndup(n->name, n->namelen);
	if (t->name == NULL) {
		d->tomb_floor = lsn;
		return;
	}
	t->id = n->id;
	t->type = n->type;
	t->change = lsn;
}

static void
detach(struct index *ix, struct node *n, uint64_t lsn)
{
	struct node *dir = n->parent;

	htab_del(ix, &ix->by_name, n, PN_OFF);
	if (n->sib_prev)
		n->sib_prev->sib_next = n->sib_next;
	else
		dir->x.dir->first = n->sib_next;
	if (n->sib_next)
		n->sib_next->sib_prev = n->sib_prev;
	dir->x.dir->nchildren--;
	if (n->type == MST_T_DIR)
		dir->x.dir->nsubdirs--;
	tomb_add(dir, n, lsn);
}

static void
dirx_free(struct index *ix, struct dirx *d)
{
	unsigned i;

	if (d == NULL)
		return;
	if (d->all_prev)
		d->all_prev->all_next = d->all_next;
	else
		ix->dirs = d->all_next;
	if (d->all_next)
		d->all_next->all_prev = d->all_prev;
	if (d->tombs)
		for (i = 0; i < INDEX_TOMBS; i++)
			free(d->tombs[i].name);
	free(d->tombs);
	free(d);
}

/* A zeroed node named |name| (at most MST_NAME_MAX bytes: index_apply
 * and index_load_link refuse longer ones). */
static struct node *
node_alloc(struct index *ix, const char *name, size_t len, uint8_t type)
{
	struct node *n = arena_alloc(ix, node_units(len));
	struct dirx *d;

	if (n == NULL)
		return NULL;
	memcpy(n->name, name, len);
	n->namelen = len;
	n->type = type;
	if (type == MST_T_DIR) {
		d = n->x.dir = calloc(1, sizeof *n->x.dir);
		if (d == NULL) {
			arena_free(ix, n);
			return NULL;
		}
		d->all_next = ix->dirs;
		if (d->all_next)
			d->all_next->all_prev = d;
		ix->dirs = d;
	}
	return n;
}

/* --- file blocks --- */

/* Make room for block |i| (entries past the old end are holes). */
static int
blk_reserve(struct fobj *f, uint64_t i)
{
	uint64_t n;
	struct fblk *v;

	if (i < f->nblk)
		return 0;
	n = f->nblk ? f->nblk : 4;
	while (n <= i)
		n *= 2;
	if (n > SIZE_MAX / sizeof *v)
		return -ENOMEM;
	v = realloc(f->blk, (size_t)n * sizeof *v);
	if (v == NULL)
		return -ENOMEM;
	memset(v + f->nblk, 0, (size_t)(n - f->nblk) * sizeof *v);
	f->blk = v;
	f->nblk = n;
	return 0;
}

/* Point block |i| (reserved) somewhere else; seg_live of |b->seg| must
 * already have room (seg_live_add(ix, seg, 0)). */
static void
blk_set(struct index *ix, struct fobj *f, uint64_t i, const struct fblk *b)
{
	struct fblk *o = &f->blk[i];

	if (o->len)
		(void)seg_live_add(ix, o->seg, -(int64_t)o->len); /* exists */
	*o = *b;
	if (b->len)
		(void)seg_live_add(ix, b->seg, (int64_t)b->len);
}

static uint64_t
blocks_for(uint64_t size)
{
	return size / REC_BLOCK + (size % REC_BLOCK ? 1 : 0);
}

/* Cut or grow to |size|: blocks past it go, the last one keeps only
 * what is inside. Growing leaves a hole. */
static void
blk_resize(struct index *ix, struct fobj *f, uint64_t size)
{
	static const struct fblk hole;
	uint64_t i, keep = blocks_for(size);

	for (i = keep; i < f->nblk && i < blocks_for(f->size); i++)
		blk_set(ix, f, i, &hole);
	if (size % REC_BLOCK && keep - 1 < f->nblk &&
	    f->blk[keep - 1].valid > size % REC_BLOCK)
		f->blk[keep - 1].valid = (uint16_t)(size % REC_BLOCK);
	ix->bytes += size - f->size;
	f->size = size;
}

/* A first-format whole body (CREATE or DATA of a file): its blocks. */
static int
blk_whole_body(struct index *ix, struct fobj *f, uint32_t seg,
    uint64_t body_off, const uint8_t *body, uint64_t size)
{
	struct fblk b = { .seg = seg };
	uint64_t i, n = blocks_for(size);

	if ((n && (body == NULL || blk_reserve(f, n - 1) < 0)) ||
	    seg_live_add(ix, seg, 0) < 0)
		return -ENOMEM;
	blk_resize(ix, f, 0);
	for (i = 0; i < n; i++) {
		b.len = b.valid = (uint16_t)(size - i * REC_BLOCK < REC_BLOCK ?
		    size - i * REC_BLOCK : REC_BLOCK);
		b.off = body_off + i * REC_BLOCK;
		b.sum = XXH3_64bits(body + i * REC_BLOCK, b.len);
		blk_set(ix, f, i, &b);
	}
	ix->bytes += size;
	f->size = size;
	return 0;
}

static void
fobj_drop(struct index *ix, struct fobj *f)
{
	blk_resize(ix, f, 0);
	files_del(ix, f);
	free(f->blk);
	free(f);
}

void
index_file_put(struct index *ix, struct fobj *f, uint32_t n)
{
	f->opens = f->opens > n ? f->opens - n : 0;
	if (f->opens == 0 && f->nlink == 0) {
		ix->orphans--;
		fobj_drop(ix, f);
	}
}

/* A delivered message |n| goes: its id is spent (spent.h). A body still
 * staged (tmp/, MST_STAGE_PREFIX) was never delivered, and out of memory
 * only forgets the id (a resend would then store the message again). */
static void
spent_note(struct index *ix, const struct node *n, uint64_t lsn, int64_t now)
{
	const struct node *p = n->parent;
	struct spent_ent e = { .id = n->id, .size = n->size, .change = lsn,
		.mtime_ns = n->mtime_ns, .gone_ns = now, .mode = n->mode,
		.uid = n->uid, .gid = n->gid };

	if (p && p->namelen == 3 && memcmp(p->name, "tmp", 3) == 0 &&
	    n->namelen >= sizeof MST_STAGE_PREFIX - 1 &&
	    memcmp(n->name, MST_STAGE_PREFIX, sizeof MST_STAGE_PREFIX - 1) == 0)
		return;
	memcpy(e.idem, n->idem, MST_IDEM_LEN);
	(void)spent_add(ix->spent, &e);	/* -ENOMEM: see above */
}

/* Drop |n| (already detached) from every table and free it. A file's
 * object goes with its last name unless it is open; |now| is its new
 * ctime when it lives on. */
static void
node_drop(struct index *ix, struct node *n, uint64_t lsn, int64_t now)
{
	struct node **pp;
	struct fobj *f;

	ix->nodes--;
	if (n->type == MST_T_FILE) {
		f = n->x.file;
		for (pp = &f->names; *pp && *pp != n; pp = &(*pp)->link_next)
			;
		if (*pp)
			*pp = n->link_next;
		f->nlink--;
		f->ctime_ns = now;
		f->change = lsn;
		arena_free(ix, n);
		if (f->nlink == 0 && f->opens == 0)
			fobj_drop(ix, f);
		else if (f->nlink == 0)
			ix->orphans++;
		return;
	}
	htab_del(ix, &ix->by_id, n, ID_OFF);
	if (n->type == MST_T_MSG) {
		spent_note(ix, n, lsn, now);
		htab_del(ix, &ix->by_idem, n, IDEM_OFF);
		n->x.mbox->bytes -= n->size;
		n->x.mbox->msgs--;
		mbox_drop_if_idle(ix, n->x.mbox);
		ix->msgs--;
		(void)seg_live_add(ix, n->seg, -(int64_t)n->size); /* exists */
		ix->bytes -= n->size;
	} else {
		dirx_free(ix, n->x.dir);
	}
	arena_free(ix, n);
}

static void
dir_touch(struct node *dir, uint64_t lsn, int64_t mtime_ns)
{
	dir->change = lsn;
	dir->mtime_ns = mtime_ns;
	dir->ctime_ns = mtime_ns;
}

/* A new name |name| in |dir| for the file |f|. */
static int
link_name(struct index *ix, struct fobj *f, struct node *dir,
    struct mst_str name)
{
	struct node *n = node_alloc(ix, name.p, name.len, MST_T_FILE);

	if (n == NULL)
		return -ENOMEM;
	n->id = f->id;
	n->x.file = f;
	n->link_next = f->names;
	f->names = n;
	if (f->nlink++ == 0 && f->opens)
		ix->orphans--;		/* not reachable today: no linkat of
					   an unlinked file */
	attach(ix, n, dir);
	ix->nodes++;
	return 0;
}

/* A new entry's mtime and atime: its own (a delivered message keeps its
 * tmp file's), else the record's clock, which is always its ctime and
 * its parent's mtime and ctime. */
static int64_t
entry_mtime(const struct rec *r)
{
	return r->type == REC_NEW && r->set_mtime_ns ? r->set_mtime_ns :
	    r->mtime_ns;
}

static int
create_file(struct index *ix, const struct rec *r, struct node *dir,
    uint32_t seg, uint64_t body_off, const uint8_t *body)
{
	struct fobj *f = calloc(1, sizeof *f);
	int rc;

	if (f == NULL)
		return -ENOMEM;
	f->id = r->id;
	f->mode = r->mode;
	f->uid = r->uid;
	f->gid = r->gid;
	f->mtime_ns = f->atime_ns = entry_mtime(r);
	f->ctime_ns = r->mtime_ns;
	f->change = r->lsn;
	rc = blk_whole_body(ix, f, seg, body_off, body, r->size);
	if (rc == 0)
		rc = link_name(ix, f, dir, r->name);
	if (rc < 0) {
		blk_resize(ix, f, 0);
		free(f->blk);
		free(f);
		return rc;
	}
	files_add(ix, f);
	return 0;
}

static int
apply_create(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off, const uint8_t *body)
{
	struct node *dir, *n;
	int rc;

	if (ix->loading && ix->load_dir && ix->load_dir->id == r->parent) {
		dir = ix->load_dir;
	} else {
		index_load_flush(ix);
		dir = index_find_id(ix, r->parent);
	}
	if (dir == NULL || dir->type != MST_T_DIR || r->id >= INDEX_ID_LIMIT)
		return -EBADMSG;
	/* A checkpoint is checked whole by its sum when it has been read
	 * (and refused then, index and all), and what it holds was written
	 * from an index that passed these checks: they were three hash
	 * probes per node, most of the time of a start. */
	if (!ix->loading && (index_lookup(ix, dir, r->name.p, r->name.len) ||
	    index_find_id(ix, r->id) || index_find_file(ix, r->id)))
		return -EBADMSG;
	if (r->ntype == MST_T_FILE) {
		rc = create_file(ix, r, dir, seg, body_off, body);
		if (rc < 0)
			return rc;
		goto done;
	}
	n = node_alloc(ix, r->name.p, r->name.len, r->ntype);
	if (n == NULL)
		return -ENOMEM;
	n->id = r->id;
	n->mode = r->mode;
	n->uid = r->uid;
	n->gid = r->gid;
	n->mtime_ns = n->atime_ns = entry_mtime(r);
	n->ctime_ns = r->mtime_ns;
	n->change = r->lsn;
	if (r->ntype == MST_T_MSG) {
		n->seg = seg;
		n->off = body_off;
		n->size = r->size;
		n->checksum = r->checksum;
		rc = seg_live_add(ix, seg, (int64_t)r->size);
		if (rc < 0) {
			arena_free(ix, n);
			return rc;
		}
		ix->bytes += r->size;
		n->x.mbox = index_mbox(ix, r->mailbox, 1);
		if (n->x.mbox == NULL) {
			arena_free(ix, n);
			return -ENOMEM;
		}
		memcpy(n->idem, r->idem, MST_IDEM_LEN);
		n->x.mbox->bytes += r->size;
		n->x.mbox->msgs++;
		ix->msgs++;
		htab_add(ix, &ix->by_idem, n, IDEM_OFF);
	}
	htab_add(ix, &ix->by_id, n, ID_OFF);
	attach(ix, n, dir);
	ix->nodes++;
	ix->last_new = n;
done:
	dir_touch(dir, r->lsn, r->mtime_ns);
	if (r->id >= ix->next_id)
		ix->next_id = r->id + 1;
	return 0;
}

/* First-format DATA and RELOCATE: a message's or file's whole body. */
static int
apply_body(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off, const uint8_t *body)
{
	struct fobj *f = index_find_file(ix, r->id);
	struct node *n;
	int rc;

	if (f) {
		if (r->type == REC_RELOCATE && r->size != f->size)
			return -EBADMSG;
		rc = blk_whole_body(ix, f, seg, body_off, body, r->size);
		if (rc == 0 && r->type == REC_DATA) {
			f->mtime_ns = f->ctime_ns = r->mtime_ns;
			f->change = r->lsn;
		}
		return rc;
	}
	n = index_find_id(ix, r->id);
	if (n == NULL || n->type != MST_T_MSG || r->size != n->size)
		return -EBADMSG;
	rc = seg_live_add(ix, seg, (int64_t)r->size);
	if (rc < 0)
		return rc;
	(void)seg_live_add(ix, n->seg, -(int64_t)n->size); /* exists */
	n->seg = seg;
	n->off = body_off;
	n->checksum = r->checksum;
	return 0;
}

/* Orphans are dropped at replay; records for them may follow. */
static int
gone_file(const struct index *ix, uint64_t id)
{
	return id < ix->next_id && index_find_id(ix, id) == NULL;
}

static int
apply_extent(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off, const uint8_t *body)
{
	struct fobj *f = index_find_file(ix, r->id);
	struct fblk b = { .seg = seg };
	size_t len;
	uint64_t at;
	uint32_t i;

	if (f == NULL)
		return gone_file(ix, r->id) ? 0 : -EBADMSG;
	if (body == NULL || blk_reserve(f, r->first + r->nblk - 1) < 0 ||
	    seg_live_add(ix, seg, 0) < 0)
		return -ENOMEM;
	at = rec_ext_block(r, r->nblk - 1, &len);
	if (r->flags & REC_EXT_RELOC) {
		for (i = 0; i < r->nblk; i++) {
			struct fblk *o = &f->blk[r->first + i];

			if (o->len == 0 || o->sum != rec_ext_sum(body, i))
				return -EBADMSG;
		}
	} else if ((r->first + r->nblk - 1) * REC_BLOCK + len > r->fsize ||
	    r->fsize < f->size) {
		return -EBADMSG;
	}
	for (i = 0; i < r->nblk; i++) {
		at = rec_ext_block(r, i, &len);
		b.len = (uint16_t)len;
		b.valid = r->flags & REC_EXT_RELOC ?
		    f->blk[r->first + i].valid : b.len;
		b.off = body_off + at;
		b.sum = rec_ext_sum(body, i);
		blk_set(ix, f, r->first + i, &b);
	}
	if (r->flags & REC_EXT_RELOC)
		return 0;
	ix->bytes += r->fsize - f->size;
	f->size = r->fsize;
	f->mtime_ns = f->ctime_ns = r->mtime_ns;
	f->change = r->lsn;
	return 0;
}

/* SETATTR (first format: no ctime) and ATTR. */
static int
apply_attr(struct index *ix, const struct rec *r)
{
	struct fobj *f = index_find_file(ix, r->id);
	struct node *n = f ? NULL : index_find_id(ix, r->id);
	uint32_t *mode, *uid, *gid;
	int64_t *mtime, *ctime, *atime;

	if (f == NULL && n == NULL)
		return r->type == REC_ATTR && gone_file(ix, r->id) ? 0 :
		    -EBADMSG;
	/* Refuse before changing anything: a refused record must leave no
	 * trace (batch_add writes no record then, and replay may cut it off
	 * as a torn tail), not its mode and owner without its size. */
	if (r->type == REC_ATTR && (r->valid & MST_SA_SIZE) &&
	    (f == NULL || (r->fsize > f->size &&
	    r->fsize - 1 > UINT64_MAX - REC_BLOCK)))
		return -EBADMSG;
	if (f) {
		mode = &f->mode, uid = &f->uid, gid = &f->gid;
		mtime = &f->mtime_ns, ctime = &f->ctime_ns;
		atime = &f->atime_ns;
		f->change = r->lsn;
	} else {
		mode = &n->mode, uid = &n->uid, gid = &n->gid;
		mtime = &n->mtime_ns, ctime = &n->ctime_ns;
		atime = &n->atime_ns;
		n->change = r->lsn;
	}
	if (r->valid & MST_SA_MODE)
		*mode = r->mode;
	if (r->valid & MST_SA_UID)
		*uid = r->uid;
	if (r->valid & MST_SA_GID)
		*gid = r->gid;
	if (r->type == REC_SETATTR) {
		if (r->valid & MST_SA_MTIME)
			*mtime = r->mtime_ns;
		return 0;
	}
	if (r->valid & MST_SA_SIZE) {
		blk_resize(ix, f, r->fsize);	/* checked above */
		*mtime = r->mtime_ns;
	}
	if (r->valid & MST_SA_MTIME)
		*mtime = r->set_mtime_ns;
	if (r->valid & MST_SA_ATIME)
		*atime = r->set_atime_ns;
	if (r->valid)
		*ctime = r->mtime_ns;
	return 0;
}

/*
 * Move the name |n| to |dir|/|name|, dropping the name |old| there (which
 * replay checked is |replaced|). The name is stored inline: one of
 * another size in the arena needs a new node, and every pointer to the
 * old one is re-linked.
 */
static int
move_name(struct index *ix, struct node *n, struct node *dir,
    struct mst_str name, uint64_t replaced, uint64_t lsn, int64_t now)
{
	struct node *old, *p, *from = n->parent, *m, **pp, *c;

	if (dir == NULL || dir->type != MST_T_DIR || n == ix->root)
		return -EBADMSG;
	for (p = dir; p; p = p->parent)
		if (p == n)
			return -EBADMSG;	/* into its own subtree */
	old = index_lookup(ix, dir, name.p, name.len);
	if (old == n)
		return 0;			/* rename onto itself */
	if ((old ? old->id : 0) != replaced || (old && old->id == n->id))
		return -EBADMSG;
	if (old && old->type == MST_T_DIR && old->x.dir->nchildren)
		return -EBADMSG;
	m = n;
	if (node_units(name.len) != node_units(n->namelen)) {
		m = arena_alloc(ix, node_units(name.len));
		if (m == NULL)
			return -ENOMEM;
	}
	if (old) {
		detach(ix, old, lsn);
		node_drop(ix, old, lsn, now);
	}
	detach(ix, n, lsn);
	if (m != n) {
		memcpy(m, n, sizeof *n);
		if (n->type == MST_T_FILE) {
			for (pp = &n->x.file->names; *pp != n;
			    pp = &(*pp)->link_next)
				;
			*pp = m;
		} else {
			htab_del(ix, &ix->by_id, n, ID_OFF);
			htab_add(ix, &ix->by_id, m, ID_OFF);
		}
		if (n->type == MST_T_MSG) {
			htab_del(ix, &ix->by_idem, n, IDEM_OFF);
			htab_add(ix, &ix->by_idem, m, IDEM_OFF);
		}
		if (n->type == MST_T_DIR)
			for (c = n->x.dir->first; c; c = c->sib_next)
				c->parent = m;
		arena_free(ix, n);
	}
	memcpy(m->name, name.p, name.len);
	m->name[name.len] = '\0';
	m->namelen = name.len;
	attach(ix, m, dir);
	if (m->type == MST_T_FILE) {
		m->x.file->change = lsn;
		m->x.file->ctime_ns = now;
	} else {
		m->change = lsn;
		m->ctime_ns = now;
	}
	dir_touch(from, lsn, now);
	dir_touch(dir, lsn, now);
	return 0;
}

/* The name of |id| in |parent| called |name|. */
static struct node *
find_name(const struct index *ix, uint64_t parent, struct mst_str name,
    uint64_t id)
{
	struct node *dir = index_find_id(ix, parent), *n;

	if (dir == NULL || dir->type != MST_T_DIR)
		return NULL;
	n = index_lookup(ix, dir, name.p, name.len);
	return n && n->id == id ? n : NULL;
}

/* First format: MOVE and REMOVE name a node by id; a file had one name. */
static struct node *
node_by_id(const struct index *ix, uint64_t id)
{
	struct fobj *f = index_find_file(ix, id);

	if (f)
		return f->nlink == 1 ? f->names : NULL;
	return index_find_id(ix, id);
}

static int
remove_name(struct index *ix, struct node *n, uint64_t lsn, int64_t now)
{
	struct node *p;

	if (n == NULL || n == ix->root ||
	    (n->type == MST_T_DIR && n->x.dir->nchildren))
		return -EBADMSG;
	p = n->parent;
	detach(ix, n, lsn);
	node_drop(ix, n, lsn, now);
	dir_touch(p, lsn, now);
	return 0;
}

static int
apply_link(struct index *ix, const struct rec *r)
{
	struct fobj *f = index_find_file(ix, r->id);
	struct node *dir = index_find_id(ix, r->parent);
	int rc;

	if (f == NULL || dir == NULL || dir->type != MST_T_DIR ||
	    index_lookup(ix, dir, r->name.p, r->name.len))
		return -EBADMSG;
	rc = link_name(ix, f, dir, r->name);
	if (rc < 0)
		return rc;
	f->ctime_ns = r->mtime_ns;
	f->change = r->lsn;
	dir_touch(dir, r->lsn, r->mtime_ns);
	return 0;
}

int
index_apply(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off, const uint8_t *body)
{
	int rc;

	if (r->name.len > MST_NAME_MAX)
		return -EBADMSG;	/* no node holds it (index.h) */
	switch (r->type) {
	case REC_CREATE:
	case REC_NEW:
		rc = apply_create(ix, r, seg, body_off, body);
		break;
	case REC_DATA:
	case REC_RELOCATE:
		rc = apply_body(ix, r, seg, body_off, body);
		break;
	case REC_EXTENT:
		rc = apply_extent(ix, r, seg, body_off, body);
		break;
	case REC_MOVE: {
		struct node *n = node_by_id(ix, r->id);

		rc = n ? move_name(ix, n, index_find_id(ix, r->parent),
		    r->name, r->replaced, r->lsn, r->mtime_ns) : -EBADMSG;
		break;
	}
	case REC_RENAME: {
		struct node *n = find_name(ix, r->from_parent, r->from_name,
		    r->id);

		rc = n ? move_name(ix, n, index_find_id(ix, r->parent),
		    r->name, r->replaced, r->lsn, r->mtime_ns) : -EBADMSG;
		break;
	}
	case REC_REMOVE:
		rc = remove_name(ix, node_by_id(ix, r->id), r->lsn,
		    r->mtime_ns);
		break;
	case REC_UNLINK:
		rc = remove_name(ix, find_name(ix, r->parent, r->name, r->id),
		    r->lsn, r->mtime_ns);
		break;
	case REC_SETATTR:
	case REC_ATTR:
		rc = apply_attr(ix, r);
		break;
	case REC_LINK:
		rc = apply_link(ix, r);
		break;
	default:
		return -EBADMSG;
	}
	if (rc == 0 && r->lsn > ix->lsn)
		ix->lsn = r->lsn;
	return rc;
}

int
index_load_link(struct index *ix, struct fobj *f, struct node *dir,
    struct mst_str name)
{
	if (dir->type != MST_T_DIR || name.len > MST_NAME_MAX ||
	    index_lookup(ix, dir, name.p, name.len))
		return -EBADMSG;
	return link_name(ix, f, dir, name);
}

int
index_load_block(struct index *ix, struct fobj *f, uint64_t i,
    const struct fblk *b)
{
	if (b->len == 0 || b->len > REC_BLOCK || b->valid > b->len ||
	    i >= blocks_for(f->size) ||
	    (i + 1 == blocks_for(f->size) && f->size % REC_BLOCK &&
	    b->valid > f->size % REC_BLOCK))
		return -EBADMSG;
	if (blk_reserve(f, i) < 0 || seg_live_add(ix, b->seg, 0) < 0)
		return -ENOMEM;
	blk_set(ix, f, i, b);
	return 0;
}

struct index *
index_new(uint64_t quota_bytes, uint64_t quota_msgs)
{
	struct index *ix = calloc(1, sizeof *ix);

	if (ix == NULL)
		return NULL;
	ix->quota_bytes = quota_bytes;
	ix->quota_msgs = quota_msgs;
	ix->mbox_mask = 63;
	ix->mboxes = calloc(ix->mbox_mask + 1, sizeof *ix->mboxes);
	ix->file_mask = 1023;
	ix->files = calloc(ix->file_mask + 1, sizeof *ix->files);
	if (arena_init(ix) == 0)
		ix->root = node_alloc(ix, "", 0, MST_T_DIR);
	ix->spent = spent_new();
	if (ix->mboxes == NULL || ix->files == NULL || ix->root == NULL ||
	    ix->spent == NULL ||
	    htab_init(&ix->by_name, 1024) < 0 ||
	    htab_init(&ix->by_id, 1024) < 0 ||
	    htab_init(&ix->by_idem, 1024) < 0) {
		index_free(ix);
		return NULL;
	}
	ix->root->id = INDEX_ROOT_ID;
	ix->root->mode = 0755;
	htab_add(ix, &ix->by_id, ix->root, ID_OFF);
	ix->nodes = 1;
	ix->next_id = INDEX_ROOT_ID + 1;
	return ix;
}

void
index_free(struct index *ix)
{
	size_t i;
	struct fobj *f, *fnext;
	struct mbox *m, *mn;

	if (ix == NULL)
		return;
	/* Nodes go with the arena, unvisited: a walk of millions of them
	 * took seconds at every stop. */
	while (ix->dirs)
		dirx_free(ix, ix->dirs);
	if (ix->files)
		for (i = 0; i <= ix->file_mask; i++)
			for (f = ix->files[i]; f; f = fnext) {
				fnext = f->next;
				free(f->blk);
				free(f);
			}
	if (ix->mboxes)
		for (i = 0; i <= ix->mbox_mask; i++)
			for (m = ix->mboxes[i]; m; m = mn) {
				mn = m->next;
				free(m);
			}
	free(ix->mboxes);
	free(ix->files);
	free(ix->by_name.b);
	free(ix->by_id.b);
	free(ix->by_idem.b);
	free(ix->seg_live);
	spent_free(ix->spent);
	if (ix->arena)
		munmap(ix->arena, ix->arena_cap);
	free(ix);
}
