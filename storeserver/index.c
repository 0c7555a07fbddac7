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
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

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
 * Parent and sibling links are 32-bit as well: the distance between the
 * two nodes in units, which fits in an int32_t because the arena is at
 * most 2^31 units (16 GiB, about 120 million messages). Pointers to
 * nodes stay valid for the index's life (the reservation never moves);
 * a node's size is always node_units(nmlen), so a rename to a name of
 * another size moves the node (move_name).
 *
 * The reservation starts at a multiple of ARENA_MAX and its first unit
 * holds the index's address: index_attr() and index_msg_mbox() find the
 * index of a node from the node alone (node_index), so the tables that
 * replaced per-node fields (|acls|, |mbv|, |atimes|) need no change to
 * the callers of those functions.
 *
 * Memory per message, restart-bench's 28-byte names (docs/BENCHMARKS.md):
 * first, 208 bytes of malloc'd node and about 44 of hash buckets; then a
 * 168-byte node in the arena and about 10 bytes of buckets (1.2 entries
 * a bucket at ten million); now a 120-byte node (a 104-byte head and
 * the name packed in 16 bytes: "Names" below) and about 3 bytes of
 * buckets (htab_slot). Freed nodes are reused, never given back to the
 * system until index_free.
 */
#define ARENA_UNIT	8u
#define ARENA_MAX	((size_t)ARENA_UNIT << 31)	/* 16 GiB */
#define ARENA_MIN	((size_t)64 << 20)

_Static_assert(sizeof(struct node) == 104, "the node head is packed");
_Static_assert(sizeof(struct tomb) == 48, "a tombstone is packed");

_Static_assert((sizeof(struct node) + MST_NAME_MAX + ARENA_UNIT - 1) /
    ARENA_UNIT < INDEX_ARENA_CLASSES, "a node of the longest name fits");

#define H2N(ix, h) ((h) ? (struct node *)((ix)->arena + \
	(size_t)(h) * ARENA_UNIT) : NULL)
#define N2H(ix, n) ((uint32_t)(((const char *)(n) - (ix)->arena) / \
	ARENA_UNIT))
#define NEXT(n, off) (*(uint32_t *)((char *)(n) + (off)))
#define PN_OFF offsetof(struct node, pn_next)
#define ID_OFF offsetof(struct node, id_next)
#define IDEM_OFF offsetof(struct node, idem_next)

/* The index whose arena holds |n|. */
static struct index *
node_index(const struct node *n)
{
	return *(struct index **)((uintptr_t)n & ~(uintptr_t)(ARENA_MAX - 1));
}

/* The distance from |from| to |to| (NULL: 0), for index_link(). */
static int32_t
link_to(const struct node *from, const struct node *to)
{
	return to ? (int32_t)(((const char *)to - (const char *)from) /
	    (ptrdiff_t)ARENA_UNIT) : 0;
}

/* A node's size in units: no terminating NUL (index_name()). */
static size_t
node_units(size_t nmlen)
{
	return (offsetof(struct node, nm) + nmlen + ARENA_UNIT - 1) /
	    ARENA_UNIT;
}

/*
 * Names. Most of a Maildir name is digits and a few marks
 * ("1733500000.M614231P12345.host,S=4321:2,S"), so a name is kept as
 * 4-bit codes when they take fewer bytes than the name: codes 0-14 are
 * the characters of name_sym, 15 is followed by two codes that hold any
 * byte (high half first), and a 15 that is the last code of the last
 * byte only pads it. Every name has exactly one form (packed exactly
 * when that is shorter), so a lookup packs the name it looks for and
 * compares forms, and the hash is that of the form. The 27- and 28-byte
 * names of restart-bench ("1796551276.8229_27_38211.vm") take 16 bytes.
 */
static const char name_sym[16] = "0123456789._,:=";

/* name_sym's code + 1 of each byte, 0 for the others: a table, because
 * every node made and every lookup packs a name (a switch per byte was
 * an eighth of the CPU of loading a checkpoint). */
static const unsigned char name_codes[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
	['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['.'] = 11, ['_'] = 12, [','] = 13, [':'] = 14, ['='] = 15,
};

/* A name as the index keeps it: |p| and |len| are |buf| or the name. */
struct nform {
	const char *p;
	size_t len;
	int packed;
	char buf[MST_NAME_MAX];
};

/* The form of |name| (at most MST_NAME_MAX bytes). */
static void
name_form(struct nform *f, const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *)name;
	unsigned char *o = (unsigned char *)f->buf;
	size_t codes = len, i, k = 0;
	unsigned acc = 0, c;
	int half = 0;

	f->p = name;
	f->len = len;
	f->packed = 0;
	for (i = 0; i < len; i++)
		codes += name_codes[s[i]] ? 0 : 2;
	if ((codes + 1) / 2 >= len)
		return;
#define PUT(v) do {							\
		if (half)						\
			o[k++] = (unsigned char)(acc | (v));		\
		else							\
			acc = (unsigned)(v) << 4;			\
		half = !half;						\
	} while (0)
	for (i = 0; i < len; i++) {
		c = name_codes[s[i]];
		if (c) {
			PUT(c - 1);
		} else {
			PUT(15u);
			PUT((unsigned)s[i] >> 4);
			PUT((unsigned)s[i] & 15u);
		}
	}
	if (half)
		PUT(15u);
#undef PUT
	f->p = f->buf;
	f->len = k;
	f->packed = 1;
}

/* The name whose form is the |bytes| codes at |in|, into |buf|. */
static struct mst_str
name_unpack(const unsigned char *in, size_t bytes, char *buf)
{
	size_t codes = 2 * bytes, k = 0, len = 0;
	unsigned c;

#define GET(i) ((in[(i) / 2] >> ((i) % 2 ? 0 : 4)) & 15u)
	while (k < codes) {
		c = GET(k);
		if (c < 15) {
			buf[len++] = name_sym[c];
			k++;
		} else if (k + 2 < codes) {
			buf[len++] = (char)(GET(k + 1) << 4 | GET(k + 2));
			k += 3;
		} else {
			break;		/* the pad */
		}
	}
#undef GET
	return (struct mst_str){ buf, (uint16_t)len };
}

struct mst_str
index_name(const struct node *n, char *buf)
{
	if (!n->packed)
		return (struct mst_str){ n->nm, (uint16_t)n->nmlen };
	return name_unpack((const unsigned char *)n->nm, n->nmlen, buf);
}

static const char *
tomb_bytes(const struct tomb *t)
{
	const char *p;

	if (!t->heap)
		return t->in;
	memcpy(&p, t->in, sizeof p);
	return p;
}

struct mst_str
index_tomb_name(const struct tomb *t, char *buf)
{
	if (!t->packed)
		return (struct mst_str){ tomb_bytes(t), t->len };
	return name_unpack((const unsigned char *)tomb_bytes(t), t->len,
	    buf);
}

size_t
index_name_copy(const struct node *n, char *buf)
{
	struct mst_str s = index_name(n, buf);

	if (s.p != buf)
		memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	return s.len;
}

/* Reserve the arena: as much of ARENA_MAX as the system lets us map
 * (with strict overcommit a smaller one; the index is then full sooner:
 * -ENOMEM), at a multiple of ARENA_MAX. An inaccessible mapping of
 * twice that (which costs no memory and no commit charge) finds the
 * aligned address; all of it but the arena goes again. */
static int
arena_init(struct index *ix)
{
	uintptr_t base, at;
	size_t cap;
	void *p, *q;

	q = mmap(NULL, 2 * ARENA_MAX, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
	    MAP_NORESERVE, -1, 0);
	if (q == MAP_FAILED)
		return -ENOMEM;
	base = (uintptr_t)q;
	at = (base + ARENA_MAX - 1) & ~(uintptr_t)(ARENA_MAX - 1);
	for (cap = ARENA_MAX; cap >= ARENA_MIN; cap /= 2) {
		p = mmap((void *)at, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		    MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		if (p != MAP_FAILED) {
			if (at > base)
				(void)munmap(q, at - base); /* cannot fail */
			(void)munmap((char *)p + cap,
			    base + 2 * ARENA_MAX - (at + cap));
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
			/* handle 0: no node; its unit holds the index */
			*(struct index **)p = ix;
			ix->arena_top = 1;
			return 0;
		}
	}
	(void)munmap(q, 2 * ARENA_MAX);	/* ours: cannot fail */
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
	size_t units = node_units(n->nmlen);

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
		return hash_pn(n->parent_d ? index_parent(n)->id : 0, n->nm,
		    n->nmlen);
	if (off == ID_OFF)
		return hash_id(n->id);
	return hash_idem(n->idem);
}

/*
 * The tables are sized to their load, not to a power of two: a bucket
 * is picked by the high half of hash * buckets (any number of them), a
 * table grows by half once it holds HTAB_LOAD entries a bucket, and a
 * load sizes it for about 3.8. Doubling left the tables between 1 and 2
 * entries a bucket, 10 bytes a message at ten million; a load of 1.9
 * cost 6.4; now it is 3.2 (docs/BENCHMARKS.md). The price is the walk:
 * a lookup that finds nothing visits about 3.8 nodes instead of 1.9,
 * one cache miss each, some 0.2 us more per lookup at ten million;
 * loading a checkpoint only prepends, so it walks nothing.
 */
#define HTAB_LOAD	4u
#define HTAB_GROW(nb)	((nb) + (nb) / 2 + 1)

static size_t
htab_slot(const struct htab *t, uint64_t hash)
{
	return (size_t)(((unsigned __int128)hash * t->nb) >> 64);
}

static int
htab_init(struct htab *t, size_t buckets)
{
	t->b = calloc(buckets, sizeof *t->b);
	t->nb = buckets;
	t->n = 0;
	return t->b ? 0 : -ENOMEM;
}

/* Rehash into |nb| buckets; failure to grow only costs speed, so it is
 * not an error. */
static void
htab_resize(struct index *ix, struct htab *t, size_t off, size_t nb)
{
	struct htab nt = { .b = calloc(nb, sizeof *nt.b), .nb = nb,
		.n = t->n };
	uint32_t h, next;
	struct node *n;
	size_t i, k;

	if (nt.b == NULL)
		return;
	for (i = 0; i < t->nb; i++) {
		for (h = t->b[i]; h; h = next) {
			n = H2N(ix, h);
			k = htab_slot(&nt, node_hash(n, off));
			next = NEXT(n, off);
			NEXT(n, off) = nt.b[k];
			nt.b[k] = h;
		}
	}
	free(t->b);
	*t = nt;
}

/* Insert |n| whose hash is |hash|. */
static void
htab_add_hashed(struct index *ix, struct htab *t, struct node *n, size_t off,
    uint64_t hash)
{
	size_t k;

	if (t->n >= HTAB_LOAD * t->nb)
		htab_resize(ix, t, off, HTAB_GROW(t->nb));
	k = htab_slot(t, hash);
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
	if (t->n + ix->npend >= HTAB_LOAD * t->nb)
		index_load_flush(ix);
	if (t->n >= HTAB_LOAD * t->nb)
		htab_resize(ix, t, off, HTAB_GROW(t->nb));
	__builtin_prefetch(&t->b[htab_slot(t, hash)], 1);
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
	uint32_t *pp = &t->b[htab_slot(t, node_hash(n, off))], h = N2H(ix, n);

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
	size_t nb = (size_t)(n / 4 + n / 64 + 1);	/* load about 3.8 */

	if (n < ((uint64_t)1 << 40) && nb > t->nb)
		htab_resize(ix, t, off, nb);
}

void
index_reserve(struct index *ix, uint64_t nodes)
{
	htab_reserve(ix, &ix->by_name, PN_OFF, nodes);
	htab_reserve(ix, &ix->by_id, ID_OFF, nodes);
	htab_reserve(ix, &ix->by_idem, IDEM_OFF, nodes);
}

/*
 * Faulting in a loaded arena. The arena is in 2 MiB pages (arena_init)
 * so that a checkpoint's fork stays cheap; but on this kind of host
 * (a VM whose free memory goes back to its host) a fresh 2 MiB page
 * cost 1-6 s of CPU a GiB at its first touch against about 0.5 s in
 * 4 KiB pages, and that was two thirds of the CPU of loading ten
 * million messages (docs/BENCHMARKS.md). So a load faults in the part
 * of the arena it is sure to fill (none of its nodes is smaller than
 * node_units(1)) in 4 KiB pages, on a thread of its own ahead of the
 * loader (MADV_POPULATE_WRITE writes nothing: the loader may be filling
 * a page already); once the store is open (index_settle), that range
 * gets its 2 MiB pages back in the background (MADV_COLLAPSE, from a
 * thread at a lower priority), so that the start waits for neither. Until that is done a fork costs
 * more (about 50 ms a GiB of 4 KiB pages, against 1 ms). The memory is
 * the same: only pages the load fills are touched. A kernel without
 * either advice (EINVAL), or a thread that cannot start, leaves the
 * faults to the loader and the 2 MiB pages to khugepaged.
 */
#define PREFAULT_CHUNK	((size_t)2 << 20)	/* a huge page */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25	/* Linux 6.1; older C headers lack it */
#endif

struct index_prefault {
	pthread_t th;
	char *lo, *hi;		/* the range, at 2 MiB boundaries */
	int advice;		/* MADV_POPULATE_WRITE while loading, then
				   MADV_HUGEPAGE, MADV_COLLAPSE once
				   settled; 0: left in 4 KiB pages */
	int running;		/* th is to be joined */
	atomic_int stop;	/* set by prefault_join */
};

static void *
prefault_main(void *arg)
{
	struct index_prefault *pf = arg;
	size_t n;
	char *p;

	/* Behind the writer and the readers; best effort. */
	if (pf->advice == MADV_COLLAPSE)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	for (p = pf->lo; p < pf->hi && !atomic_load(&pf->stop); p += n) {
		n = (size_t)(pf->hi - p) < PREFAULT_CHUNK ?
		    (size_t)(pf->hi - p) : PREFAULT_CHUNK;
		/* A collapse can fail for one range (no 2 MiB page free
		 * just now) and work for the next. */
		if (madvise(p, n, pf->advice) < 0 &&
		    (pf->advice != MADV_COLLAPSE || errno == EINVAL))
			break;
	}
	return NULL;
}

static void
prefault_run(struct index_prefault *pf, int advice)
{
	pf->advice = advice;
	atomic_init(&pf->stop, 0);
	pf->running = pthread_create(&pf->th, NULL, prefault_main, pf) == 0;
}

static void
prefault_join(struct index_prefault *pf)
{
	if (!pf->running)
		return;
	atomic_store(&pf->stop, 1);
	/* Joining our own live thread cannot fail. */
	(void)pthread_join(pf->th, NULL);
	pf->running = 0;
}

void
index_load_prefault(struct index *ix, uint64_t nodes)
{
	uint64_t room = ix->arena_cap / ARENA_UNIT - ix->arena_top;
	uint64_t units = nodes < room / node_units(1) ? nodes *
	    node_units(1) : room;
	uintptr_t lo = (uintptr_t)ix->arena + ix->arena_top * ARENA_UNIT;
	uintptr_t hi = lo + units * ARENA_UNIT;
	struct index_prefault *pf;

	lo = (lo + PREFAULT_CHUNK - 1) & ~(uintptr_t)(PREFAULT_CHUNK - 1);
	hi &= ~(uintptr_t)(PREFAULT_CHUNK - 1);
	if (ix->prefault || hi <= lo)
		return;
	pf = calloc(1, sizeof *pf);
	if (pf == NULL)
		return;
	pf->lo = (char *)lo;
	pf->hi = (char *)hi;
	if (madvise(pf->lo, hi - lo, MADV_NOHUGEPAGE) < 0) {
		free(pf);
		return;
	}
	prefault_run(pf, MADV_POPULATE_WRITE);
	ix->prefault = pf;
}

/* The load is over: its range gets the arena's own advice again (on
 * failure it stays in 4 KiB pages, which costs only fork time), and
 * khugepaged may collapse it from now on. */
static void
prefault_done(struct index *ix)
{
	struct index_prefault *pf = ix->prefault;

	if (pf == NULL || pf->advice != MADV_POPULATE_WRITE)
		return;
	prefault_join(pf);
	pf->advice = madvise(pf->lo, (size_t)(pf->hi - pf->lo),
	    MADV_HUGEPAGE) == 0 ? MADV_HUGEPAGE : 0;
}

void
index_settle(struct index *ix)
{
	struct index_prefault *pf = ix->prefault;

	if (pf != NULL && pf->advice == MADV_HUGEPAGE && !pf->running)
		prefault_run(pf, MADV_COLLAPSE);
}

static void
prefault_free(struct index *ix)
{
	if (ix->prefault == NULL)
		return;
	prefault_join(ix->prefault);
	free(ix->prefault);
	ix->prefault = NULL;
}

void
index_load_begin(struct index *ix, uint64_t nodes)
{
	index_reserve(ix, nodes);
	ix->loading = 1;
}

void
index_load_end(struct index *ix)
{
	index_load_flush(ix);
	ix->loading = 0;
	ix->load_dir = NULL;
	prefault_done(ix);
}

struct node *
index_find_id(const struct index *ix, uint64_t id)
{
	struct node *n = H2N(ix, ix->by_id.b[htab_slot(&ix->by_id,
	    hash_id(id))]);

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

/*
 * Mode, uid and gid: nearly every message of a store has the same three
 * (those of the mount's user), so a node holds the number of its triple
 * in |acls|, counted by the nodes that hold it, instead of 12 bytes. A
 * triple no node holds any longer is freed for reuse.
 */
static uint32_t
acl_hash(uint32_t mode, uint32_t uid, uint32_t gid)
{
	return (uint32_t)((((uint64_t)uid << 32 | gid) ^ mode) *
	    0x9e3779b97f4a7c15ull >> 32);
}

/* The number of (mode, uid, gid), counted once more in *out: 0 or
 * -ENOMEM. */
static int
acl_get(struct index *ix, uint32_t mode, uint32_t uid, uint32_t gid,
    uint32_t *out)
{
	uint32_t h = acl_hash(mode, uid, gid), i, k, nb, *b;
	struct index_acl *a;

	for (i = ix->acl_b[h & ix->acl_mask]; i; i = ix->acls[i - 1].next) {
		a = &ix->acls[i - 1];
		if (a->mode == mode && a->uid == uid && a->gid == gid) {
			if (a->refs == UINT32_MAX)
				return -ENOMEM;
			a->refs++;
			*out = i - 1;
			return 0;
		}
	}
	if (ix->acl_free == 0 && ix->acl_top == ix->acl_cap) {
		if (ix->acl_cap >= UINT32_MAX / 2)
			return -ENOMEM;
		a = realloc(ix->acls, 2 * (size_t)ix->acl_cap * sizeof *a);
		if (a == NULL)
			return -ENOMEM;
		ix->acls = a;
		ix->acl_cap *= 2;
	}
	if (ix->acl_top + 1 > 2 * (ix->acl_mask + 1)) {	/* load 2 */
		nb = 2 * (ix->acl_mask + 1);
		b = calloc(nb, sizeof *b);
		if (b != NULL) {	/* else only slower */
			for (k = 0; k < ix->acl_top; k++) {
				a = &ix->acls[k];
				if (a->refs == 0)
					continue;
				h = acl_hash(a->mode, a->uid, a->gid) &
				    (nb - 1);
				a->next = b[h];
				b[h] = k + 1;
			}
			free(ix->acl_b);
			ix->acl_b = b;
			ix->acl_mask = nb - 1;
		}
	}
	if (ix->acl_free) {
		i = ix->acl_free;
		ix->acl_free = ix->acls[i - 1].next;
	} else {
		i = ++ix->acl_top;
	}
	a = &ix->acls[i - 1];
	h = acl_hash(mode, uid, gid) & ix->acl_mask;
	*a = (struct index_acl){ .mode = mode, .uid = uid, .gid = gid,
		.refs = 1, .next = ix->acl_b[h] };
	ix->acl_b[h] = i;
	*out = i - 1;
	return 0;
}

static void
acl_put(struct index *ix, uint32_t no)
{
	struct index_acl *a = &ix->acls[no];
	uint32_t *pp;

	if (--a->refs)
		return;
	pp = &ix->acl_b[acl_hash(a->mode, a->uid, a->gid) & ix->acl_mask];
	while (*pp != no + 1)
		pp = &ix->acls[*pp - 1].next;
	*pp = a->next;
	a->next = ix->acl_free;
	ix->acl_free = no + 1;
}

/*
 * Atimes: a message is read through the mount, which never sends an
 * atime for it unless asked to (utimensat), so a message's atime is its
 * mtime, and only one whose atime was set to something else keeps it
 * here (node->own_atime), by id. A directory's is in its dirx.
 */
static struct index_atime **
atime_slot(const struct index *ix, uint64_t id)
{
	struct index_atime **pp = &ix->atimes[hash_id(id) & ix->atime_mask];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static void
atime_del(struct index *ix, struct node *n)
{
	struct index_atime **pp = atime_slot(ix, n->id), *a = *pp;

	if (a) {
		*pp = a->next;
		free(a);
		ix->natimes--;
	}
	n->own_atime = 0;
}

/* Set the atime of |n|, a directory or message whose mtime is set
 * already: |a| is a new entry for it, made beforehand, or NULL when none
 * is needed (its atime is its mtime, or it has an entry already). */
static void
atime_set(struct index *ix, struct node *n, int64_t atime_ns,
    struct index_atime *a)
{
	struct index_atime **b;
	size_t i, nb;

	if (n->type == MST_T_DIR) {
		n->x.dir->atime_ns = atime_ns;
		free(a);
		return;
	}
	if (atime_ns == n->mtime_ns) {
		if (n->own_atime)
			atime_del(ix, n);
		free(a);
		return;
	}
	if (n->own_atime) {
		(*atime_slot(ix, n->id))->atime_ns = atime_ns;
		free(a);
		return;
	}
	if (ix->natimes > ix->atime_mask) {
		nb = 2 * (ix->atime_mask + 1);
		b = calloc(nb, sizeof *b);
		if (b != NULL) {	/* else only slower */
			struct index_atime *e, *next;

			for (i = 0; i <= ix->atime_mask; i++)
				for (e = ix->atimes[i]; e; e = next) {
					next = e->next;
					e->next = b[hash_id(e->id) & (nb - 1)];
					b[hash_id(e->id) & (nb - 1)] = e;
				}
			free(ix->atimes);
			ix->atimes = b;
			ix->atime_mask = nb - 1;
		}
	}
	a->id = n->id;
	a->atime_ns = atime_ns;
	b = &ix->atimes[hash_id(n->id) & ix->atime_mask];
	a->next = *b;
	*b = a;
	ix->natimes++;
	n->own_atime = 1;
}

/* The entry atime_set() will need to give |n| that atime: 0 and *out
 * (NULL if none is needed), or -ENOMEM. */
static int
atime_prepare(const struct node *n, int64_t mtime_ns, int64_t atime_ns,
    struct index_atime **out)
{
	*out = NULL;
	if (n->type == MST_T_DIR || n->own_atime || atime_ns == mtime_ns)
		return 0;
	*out = malloc(sizeof **out);
	return *out ? 0 : -ENOMEM;
}

int
index_set_atime(struct index *ix, struct node *n, int64_t atime_ns)
{
	struct index_atime *a;

	if (atime_prepare(n, n->mtime_ns, atime_ns, &a) < 0)
		return -ENOMEM;
	atime_set(ix, n, atime_ns, a);
	return 0;
}

struct mbox *
index_msg_mbox(const struct node *n)
{
	return node_index(n)->mbv[n->mbox];
}

uint64_t
index_bytes(const struct index *ix)
{
	const struct dirx *d;
	uint64_t b;

	b = ix->arena_top * ARENA_UNIT;
	b += (ix->by_name.nb + ix->by_id.nb + ix->by_idem.nb) *
	    sizeof(uint32_t);
	b += (ix->file_mask + 1 + ix->mbox_mask + 1 + ix->atime_mask + 1) *
	    sizeof(void *);
	b += ix->nfiles * sizeof(struct fobj) + ix->nmbox *
	    (sizeof(struct mbox) + 32);
	b += (uint64_t)ix->mbv_cap * (sizeof *ix->mbv + sizeof *ix->mbv_free);
	b += (uint64_t)ix->acl_cap * sizeof *ix->acls +
	    (ix->acl_mask + 1) * sizeof *ix->acl_b;
	b += ix->natimes * sizeof(struct index_atime);
	b += (uint64_t)ix->nseg_live * sizeof *ix->seg_live;
	for (d = ix->dirs; d; d = d->all_next)
		b += sizeof *d + (d->tombs ? INDEX_TOMBS *
		    sizeof *d->tombs : 0);
	return b;
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
	const struct index *ix;
	const struct index_acl *acl;

	if (n->type == MST_T_FILE) {
		index_fattr(n->x.file, a);
		return;
	}
	ix = node_index(n);
	acl = &ix->acls[n->acl];
	a->type = n->type;
	a->id = n->id;
	a->size = n->type == MST_T_DIR ? 4096 : n->size;
	a->mode = acl->mode;
	a->uid = acl->uid;
	a->gid = acl->gid;
	a->nlink = n->type == MST_T_DIR ?
	    (uint32_t)(2 + n->x.dir->nsubdirs) : 1;
	a->mtime_ns = (uint64_t)n->mtime_ns;
	a->ctime_ns = (uint64_t)n->ctime_ns;
	if (n->type == MST_T_DIR)
		a->atime_ns = (uint64_t)n->x.dir->atime_ns;
	else if (n->own_atime)
		a->atime_ns = (uint64_t)(*atime_slot(ix, n->id))->atime_ns;
	else
		a->atime_ns = (uint64_t)n->mtime_ns;
	a->change = n->change;
}

struct node *
index_lookup(const struct index *ix, const struct node *dir, const char *name,
    size_t len)
{
	struct nform f;
	uint64_t h;
	struct node *n;

	if (len > MST_NAME_MAX)
		return NULL;		/* no node has it (index_apply) */
	name_form(&f, name, len);
	h = hash_pn(dir->id, f.p, f.len);
	for (n = H2N(ix, ix->by_name.b[htab_slot(&ix->by_name, h)]); n;
	    n = H2N(ix, n->pn_next))
		if (index_parent(n) == dir && n->nmlen == f.len &&
		    n->packed == (unsigned)f.packed &&
		    memcmp(n->nm, f.p, f.len) == 0)
			return n;
	return NULL;
}

struct node *
index_find_idem(const struct index *ix, const uint8_t idem[MST_IDEM_LEN])
{
	struct node *n = H2N(ix,
	    ix->by_idem.b[htab_slot(&ix->by_idem, hash_idem(idem))]);

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
	char nb[MST_NAME_MAX];
	struct mst_str nm;

	for (m = n; m->parent_d; m = index_parent(m))
		len += index_name(m, nb).len +
		    (index_parent(m)->parent_d ? 1u : 0u);
	if (len >= cap)
		return -ENAMETOOLONG;
	buf[len] = '\0';
	pos = len;
	for (m = n; m->parent_d; m = index_parent(m)) {
		nm = index_name(m, nb);
		pos -= nm.len;
		memcpy(buf + pos, nm.p, nm.len);
		if (index_parent(m)->parent_d)
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
		if (m->len == name.len &&
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
					    m->len) & (nb - 1);

					next = m->next;
					m->next = b[mh];
					b[mh] = m;
				}
			free(ix->mboxes);
			ix->mboxes = b;
			ix->mbox_mask = nb - 1;
		}
	}
	if (ix->nmbv_free == 0 && ix->mbv_top == ix->mbv_cap) {
		uint32_t cap = ix->mbv_cap ? 2 * ix->mbv_cap : 64;
		struct mbox **v;
		uint32_t *fr;

		if (cap < ix->mbv_cap)
			return NULL;
		v = realloc(ix->mbv, (size_t)cap * sizeof *v);
		if (v == NULL)
			return NULL;
		ix->mbv = v;
		fr = realloc(ix->mbv_free, (size_t)cap * sizeof *fr);
		if (fr == NULL)
			return NULL;
		ix->mbv_free = fr;
		ix->mbv_cap = cap;
	}
	m = calloc(1, sizeof *m + name.len + 1);
	if (m == NULL)
		return NULL;
	m->no = ix->nmbv_free ? ix->mbv_free[--ix->nmbv_free] : ix->mbv_top++;
	ix->mbv[m->no] = m;
	memcpy(m->name, name.p, name.len);
	m->len = name.len;
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
	pp = &ix->mboxes[XXH3_64bits(m->name, m->len) &
	    ix->mbox_mask];
	while (*pp != NULL && *pp != m)
		pp = &(*pp)->next;
	if (*pp == NULL)
		return;
	*pp = m->next;
	ix->nmbox--;
	ix->mbv[m->no] = NULL;
	ix->mbv_free[ix->nmbv_free++] = m->no;	/* room: one per number */
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
	struct node *next = dir->x.dir->first;

	n->parent_d = link_to(n, dir);
	n->prev_d = 0;
	n->next_d = link_to(n, next);
	if (next)
		next->prev_d = link_to(next, n);
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
	char *p = NULL;

	if (d->tombs == NULL) {
		d->tombs = calloc(INDEX_TOMBS, sizeof *d->tombs);
		if (d->tombs == NULL) {
			d->tomb_floor = lsn;	/* forget: clients re-list */
			return;
		}
	}
	t = &d->tombs[d->tomb_next];
	d->tomb_next = (d->tomb_next + 1) % INDEX_TOMBS;
	if (t->change) {
		if (t->change > d->tomb_floor)
			d->tomb_floor = t->change;
		if (t->heap)
			free((void *)tomb_bytes(t));
	}
	/* the node's form as it is: no packing again */
	if (n->nmlen > INDEX_TOMB_IN && (p = malloc(n->nmlen)) == NULL) {
		t->change = 0;
		d->tomb_floor = lsn;
		return;
	}
	t->heap = p != NULL;
	if (p) {
		memcpy(p, n->nm, n->nmlen);
		memcpy(t->in, &p, sizeof p);
	} else {
		memcpy(t->in, n->nm, n->nmlen);
	}
	t->len = (uint8_t)n->nmlen;
	t->packed = (uint8_t)n->packed;
	t->id = n->id;
	t->type = n->type;
	t->change = lsn;
}

static void
detach(struct index *ix, struct node *n, uint64_t lsn)
{
	struct node *dir = index_parent(n), *prev = index_link(n, n->prev_d),
	    *next = index_next(n);

	htab_del(ix, &ix->by_name, n, PN_OFF);
	if (prev)
		prev->next_d = link_to(prev, next);
	else
		dir->x.dir->first = next;
	if (next)
		next->prev_d = link_to(next, prev);
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
			if (d->tombs[i].change && d->tombs[i].heap)
				free((void *)tomb_bytes(&d->tombs[i]));
	free(d->tombs);
	free(d);
}

/* A zeroed node named |name| (at most MST_NAME_MAX bytes: index_apply
 * and index_load_link refuse longer ones). */
static struct node *
node_alloc(struct index *ix, const char *name, size_t len, uint8_t type)
{
	struct nform f;
	struct node *n;
	struct dirx *d;

	name_form(&f, name, len);
	n = arena_alloc(ix, node_units(f.len));
	if (n == NULL)
		return NULL;
	memcpy(n->nm, f.p, f.len);
	n->nmlen = f.len;
	n->packed = (unsigned)f.packed;
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
	const struct node *p = index_parent(n);
	const struct index_acl *a = &ix->acls[n->acl];
	struct spent_ent e = { .id = n->id, .size = n->size, .change = lsn,
		.mtime_ns = n->mtime_ns, .gone_ns = now, .mode = a->mode,
		.uid = a->uid, .gid = a->gid };

	char pb[MST_NAME_MAX], nb[MST_NAME_MAX];
	struct mst_str pn = p ? index_name(p, pb) : mst_str_of(""), nm;

	if (pn.len == 3 && memcmp(pn.p, "tmp", 3) == 0 &&
	    (nm = index_name(n, nb)).len >= sizeof MST_STAGE_PREFIX - 1 &&
	    memcmp(nm.p, MST_STAGE_PREFIX, sizeof MST_STAGE_PREFIX - 1) == 0)
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
	if (n->own_atime)
		atime_del(ix, n);
	if (n->type == MST_T_MSG) {
		struct mbox *m = ix->mbv[n->mbox];

		spent_note(ix, n, lsn, now);
		htab_del(ix, &ix->by_idem, n, IDEM_OFF);
		m->bytes -= n->size;
		m->msgs--;
		mbox_drop_if_idle(ix, m);
		ix->msgs--;
		(void)seg_live_add(ix, n->seg, -(int64_t)n->size); /* exists */
		ix->bytes -= n->size;
	} else {
		dirx_free(ix, n->x.dir);
	}
	acl_put(ix, n->acl);
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
	struct mbox *m;
	uint32_t acl;
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
	if (acl_get(ix, r->mode, r->uid, r->gid, &acl) < 0) {
		if (r->ntype == MST_T_DIR)
			dirx_free(ix, n->x.dir);
		arena_free(ix, n);
		return -ENOMEM;
	}
	n->acl = acl;
	n->id = r->id;
	n->mtime_ns = entry_mtime(r);	/* and its atime */
	if (r->ntype == MST_T_DIR)
		n->x.dir->atime_ns = n->mtime_ns;
	n->ctime_ns = r->mtime_ns;
	n->change = r->lsn;
	if (r->ntype == MST_T_MSG) {
		n->seg = seg;
		n->off = body_off;
		n->size = r->size;
		n->checksum = r->checksum;
		m = index_mbox(ix, r->mailbox, 1);
		rc = m ? seg_live_add(ix, seg, (int64_t)r->size) : -ENOMEM;
		if (rc < 0) {
			if (m)
				mbox_drop_if_idle(ix, m);
			acl_put(ix, acl);
			arena_free(ix, n);
			return rc;
		}
		ix->bytes += r->size;
		n->mbox = m->no;
		memcpy(n->idem, r->idem, MST_IDEM_LEN);
		m->bytes += r->size;
		m->msgs++;
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

/* Give the directory or message |n| the attributes |a| (mode, uid,
 * gid and times) and the change |lsn|: 0, or -ENOMEM with nothing
 * changed. */
static int
node_set_attr(struct index *ix, struct node *n, const struct mst_attr *a,
    uint64_t lsn)
{
	const struct index_acl *o = &ix->acls[n->acl];
	struct index_atime *at;
	uint32_t acl = n->acl;

	if ((o->mode != a->mode || o->uid != a->uid || o->gid != a->gid) &&
	    acl_get(ix, a->mode, a->uid, a->gid, &acl) < 0)
		return -ENOMEM;
	if (atime_prepare(n, (int64_t)a->mtime_ns, (int64_t)a->atime_ns,
	    &at) < 0) {
		if (acl != n->acl)
			acl_put(ix, acl);
		return -ENOMEM;
	}
	if (acl != n->acl) {
		acl_put(ix, n->acl);
		n->acl = acl;
	}
	n->mtime_ns = (int64_t)a->mtime_ns;
	n->ctime_ns = (int64_t)a->ctime_ns;
	n->change = lsn;
	atime_set(ix, n, (int64_t)a->atime_ns, at);
	return 0;
}

/* SETATTR (first format: no ctime) and ATTR. */
static int
apply_attr(struct index *ix, const struct rec *r)
{
	struct fobj *f = index_find_file(ix, r->id);
	struct node *n = f ? NULL : index_find_id(ix, r->id);
	struct mst_attr a;

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
	if (f)
		index_fattr(f, &a);
	else
		index_attr(n, &a);
	if (r->valid & MST_SA_MODE)
		a.mode = r->mode;
	if (r->valid & MST_SA_UID)
		a.uid = r->uid;
	if (r->valid & MST_SA_GID)
		a.gid = r->gid;
	if (r->type == REC_SETATTR) {
		if (r->valid & MST_SA_MTIME)
			a.mtime_ns = (uint64_t)r->mtime_ns;
	} else {
		if (r->valid & MST_SA_SIZE)
			a.mtime_ns = (uint64_t)r->mtime_ns;
		if (r->valid & MST_SA_MTIME)
			a.mtime_ns = (uint64_t)r->set_mtime_ns;
		if (r->valid & MST_SA_ATIME)
			a.atime_ns = (uint64_t)r->set_atime_ns;
		if (r->valid)
			a.ctime_ns = (uint64_t)r->mtime_ns;
	}
	if (n)
		return node_set_attr(ix, n, &a, r->lsn);
	if (r->type == REC_ATTR && (r->valid & MST_SA_SIZE))
		blk_resize(ix, f, r->fsize);	/* checked above */
	f->mode = a.mode;
	f->uid = a.uid;
	f->gid = a.gid;
	f->mtime_ns = (int64_t)a.mtime_ns;
	f->ctime_ns = (int64_t)a.ctime_ns;
	f->atime_ns = (int64_t)a.atime_ns;
	f->change = r->lsn;
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
	struct node *old, *p, *from = index_parent(n), *m, **pp, *c;
	struct nform f;

	if (dir == NULL || dir->type != MST_T_DIR || n == ix->root)
		return -EBADMSG;
	for (p = dir; p; p = index_parent(p))
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
	name_form(&f, name.p, name.len);
	if (node_units(f.len) != node_units(n->nmlen)) {
		m = arena_alloc(ix, node_units(f.len));
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
			for (c = n->x.dir->first; c; c = index_next(c))
				c->parent_d = link_to(c, m);
		arena_free(ix, n);
	}
	memcpy(m->nm, f.p, f.len);
	m->nmlen = f.len;
	m->packed = (unsigned)f.packed;
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
	p = index_parent(n);
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
	/* No write ends past MST_BODY_MAX (max_message_size), so neither
	 * does a stored block: one beyond is damage, not a block table of
	 * terabytes to reserve (the checkpoint's sum is checked last). */
	if (b->len == 0 || b->len > REC_BLOCK || b->valid > b->len ||
	    i >= MST_BODY_MAX / REC_BLOCK || i >= blocks_for(f->size) ||
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
	ix->acl_cap = 16;
	ix->acls = calloc(ix->acl_cap, sizeof *ix->acls);
	ix->acl_mask = 15;
	ix->acl_b = calloc(ix->acl_mask + 1, sizeof *ix->acl_b);
	ix->atime_mask = 63;
	ix->atimes = calloc(ix->atime_mask + 1, sizeof *ix->atimes);
	if (ix->acls && ix->acl_b && arena_init(ix) == 0)
		ix->root = node_alloc(ix, "", 0, MST_T_DIR);
	ix->spent = spent_new();
	if (ix->mboxes == NULL || ix->files == NULL || ix->root == NULL ||
	    ix->atimes == NULL || ix->spent == NULL ||
	    acl_get(ix, 0755, 0, 0, &ix->root->acl) < 0 ||
	    htab_init(&ix->by_name, 1024) < 0 ||
	    htab_init(&ix->by_id, 1024) < 0 ||
	    htab_init(&ix->by_idem, 1024) < 0) {
		index_free(ix);
		return NULL;
	}
	ix->root->id = INDEX_ROOT_ID;
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
	struct index_atime *a, *an;

	if (ix == NULL)
		return;
	prefault_free(ix);
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
	if (ix->atimes)
		for (i = 0; i <= ix->atime_mask; i++)
			for (a = ix->atimes[i]; a; a = an) {
				an = a->next;
				free(a);
			}
	free(ix->atimes);
	free(ix->acls);
	free(ix->acl_b);
	free(ix->mbv);
	free(ix->mbv_free);
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
