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
 *  4. seg_live[s] is the sum of the body sizes of the live nodes whose
 *     body is in segment s.
 *  5. A mailbox's bytes/msgs are the sums over its live messages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "index.h"

#define NEXT(n, off) (*(struct node **)((char *)(n) + (off)))
#define PN_OFF offsetof(struct node, pn_next)
#define ID_OFF offsetof(struct node, id_next)
#define IDEM_OFF offsetof(struct node, idem_next)

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
htab_resize(struct htab *t, size_t off, size_t nb)
{
	struct node **b = calloc(nb, sizeof *b), *n, *next;
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i <= t->mask; i++) {
		for (n = t->b[i]; n; n = next) {
			uint64_t h = node_hash(n, off) & (nb - 1);

			next = NEXT(n, off);
			NEXT(n, off) = b[h];
			b[h] = n;
		}
	}
	free(t->b);
	t->b = b;
	t->mask = nb - 1;
}

static void
htab_add(struct htab *t, struct node *n, size_t off)
{
	uint64_t h;

	if (t->n >= t->mask + 1)
		htab_resize(t, off, (t->mask + 1) * 2);	/* load passed 1 */
	h = node_hash(n, off) & t->mask;
	NEXT(n, off) = t->b[h];
	t->b[h] = n;
	t->n++;
}

static void
htab_del(struct htab *t, struct node *n, size_t off)
{
	struct node **pp = &t->b[node_hash(n, off) & t->mask];

	while (*pp && *pp != n)
		pp = &NEXT(*pp, off);
	if (*pp) {
		*pp = NEXT(n, off);
		t->n--;
	}
}

static void
htab_reserve(struct htab *t, size_t off, uint64_t n)
{
	size_t nb = t->mask + 1;

	while (nb < n && nb < ((size_t)1 << 40))
		nb *= 2;
	if (nb > t->mask + 1)
		htab_resize(t, off, nb);
}

void
index_reserve(struct index *ix, uint64_t nodes)
{
	htab_reserve(&ix->by_name, PN_OFF, nodes);
	htab_reserve(&ix->by_id, ID_OFF, nodes);
	htab_reserve(&ix->by_idem, IDEM_OFF, nodes);
}

struct node *
index_find_id(const struct index *ix, uint64_t id)
{
	struct node *n = ix->by_id.b[hash_id(id) & ix->by_id.mask];

	while (n && n->id != id)
		n = n->id_next;
	return n;
}

struct node *
index_lookup(const struct index *ix, const struct node *dir, const char *name,
    size_t len)
{
	uint64_t h = hash_pn(dir->id, name, len);
	struct node *n = ix->by_name.b[h & ix->by_name.mask];

	for (; n; n = n->pn_next)
		if (n->parent == dir && n->namelen == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

struct node *
index_find_idem(const struct index *ix, const uint8_t idem[MST_IDEM_LEN])
{
	struct node *n = ix->by_idem.b[hash_idem(idem) & ix->by_idem.mask];

	while (n && memcmp(n->idem, idem, MST_IDEM_LEN) != 0)
		n = n->idem_next;
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

static int
seg_live_add(struct index *ix, uint32_t seg, int64_t delta)
{
	if (seg >= ix->nseg_live) {
		uint32_t n = seg + 64;
		uint64_t *v = realloc(ix->seg_live, n * sizeof *v);

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
	htab_add(&ix->by_name, n, PN_OFF);
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

	htab_del(&ix->by_name, n, PN_OFF);
	if (n->sib_prev)
		n->sib_prev->sib_next = n->sib_next;
	else
		dir->x.dir->first = n->sib_next;
	if (n->sib_next)
		n->sib_next->sib_prev = n->sib_prev;
	dir->x.dir->nchildren--;
	tomb_add(dir, n, lsn);
}

static void
dirx_free(struct dirx *d)
{
	unsigned i;

	if (d == NULL)
		return;
	if (d->tombs)
		for (i = 0; i < INDEX_TOMBS; i++)
			free(d->tombs[i].name);
	free(d->tombs);
	free(d);
}

static struct node *
node_alloc(const char *name, size_t len, uint8_t type)
{
	struct node *n = calloc(1, sizeof *n + len + 1);

	if (n == NULL)
		return NULL;
	memcpy(n->name, name, len);
	n->namelen = (uint16_t)len;
	n->type = type;
	if (type == MST_T_DIR) {
		n->x.dir = calloc(1, sizeof *n->x.dir);
		if (n->x.dir == NULL) {
			free(n);
			return NULL;
		}
	}
	return n;
}

/* Drop |n| (already detached) from every table and free it. */
static void
node_drop(struct index *ix, struct node *n)
{
	htab_del(&ix->by_id, n, ID_OFF);
	ix->nodes--;
	if (n->type == MST_T_MSG) {
		htab_del(&ix->by_idem, n, IDEM_OFF);
		n->x.mbox->bytes -= n->size;
		n->x.mbox->msgs--;
		ix->msgs--;
	}
	if (n->type != MST_T_DIR) {
		(void)seg_live_add(ix, n->seg, -(int64_t)n->size); /* exists */
		ix->bytes -= n->size;
	} else {
		dirx_free(n->x.dir);
	}
	free(n);
}

static void
dir_touch(struct node *dir, uint64_t lsn, int64_t mtime_ns)
{
	dir->change = lsn;
	dir->mtime_ns = mtime_ns;
	dir->ctime_ns = mtime_ns;
}

static int
apply_create(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off)
{
	struct node *dir = index_find_id(ix, r->parent), *n;

	if (dir == NULL || dir->type != MST_T_DIR ||
	    index_lookup(ix, dir, r->name.p, r->name.len) ||
	    index_find_id(ix, r->id))
		return -EBADMSG;
	n = node_alloc(r->name.p, r->name.len, r->ntype);
	if (n == NULL)
		return -ENOMEM;
	n->id = r->id;
	n->mode = r->mode;
	n->uid = r->uid;
	n->gid = r->gid;
	n->mtime_ns = n->ctime_ns = r->mtime_ns;
	n->change = r->lsn;
	if (r->ntype == MST_T_DIR) {
		n->x.dir->tomb_floor = 0;
	} else {
		n->seg = seg;
		n->off = body_off;
		n->size = r->size;
		n->checksum = r->checksum;
		if (seg_live_add(ix, seg, (int64_t)r->size) < 0) {
			free(n);
			return -ENOMEM;
		}
		ix->bytes += r->size;
	}
	if (r->ntype == MST_T_MSG) {
		n->x.mbox = index_mbox(ix, r->mailbox, 1);
		if (n->x.mbox == NULL) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n->idem, r->idem, MST_IDEM_LEN);
		n->x.mbox->bytes += r->size;
		n->x.mbox->msgs++;
		ix->msgs++;
		htab_add(&ix->by_idem, n, IDEM_OFF);
	}
	htab_add(&ix->by_id, n, ID_OFF);
	attach(ix, n, dir);
	ix->nodes++;
	dir_touch(dir, r->lsn, r->mtime_ns);
	if (r->id >= ix->next_id)
		ix->next_id = r->id + 1;
	return 0;
}

static int
apply_body(struct index *ix, const struct rec *r, struct node *n, uint32_t seg,
    uint64_t body_off)
{
	if (n->type == MST_T_DIR ||
	    (r->type == REC_RELOCATE && r->size != n->size))
		return -EBADMSG;
	if (seg_live_add(ix, seg, (int64_t)r->size) < 0)
		return -ENOMEM;
	(void)seg_live_add(ix, n->seg, -(int64_t)n->size); /* exists */
	ix->bytes += r->size - n->size;
	if (n->type == MST_T_MSG)
		n->x.mbox->bytes += r->size - n->size;
	n->seg = seg;
	n->off = body_off;
	n->size = r->size;
	n->checksum = r->checksum;
	if (r->type == REC_DATA) {
		n->mtime_ns = n->ctime_ns = r->mtime_ns;
		n->change = r->lsn;
	}
	return 0;
}

static int
apply_move(struct index *ix, const struct rec *r, struct node *n)
{
	struct node *dir = index_find_id(ix, r->parent), *old, *p;

	if (dir == NULL || dir->type != MST_T_DIR || n == ix->root)
		return -EBADMSG;
	for (p = dir; p; p = p->parent)
		if (p == n)
			return -EBADMSG;	/* into its own subtree */
	old = index_lookup(ix, dir, r->name.p, r->name.len);
	if (old == n)
		return 0;			/* rename onto itself */
	if ((old ? old->id : 0) != r->replaced)
		return -EBADMSG;
	if (old) {
		if (old->type == MST_T_DIR && old->x.dir->nchildren)
			return -EBADMSG;
		detach(ix, old, r->lsn);
		node_drop(ix, old);
	}
	if (r->name.len > n->namelen) {
		struct node *m;

		/* The name is stored inline: grow the node. Every pointer to
		 * it is in the tables and lists, so re-link them. */
		htab_del(&ix->by_id, n, ID_OFF);
		if (n->type == MST_T_MSG)
			htab_del(&ix->by_idem, n, IDEM_OFF);
		p = n->parent;
		detach(ix, n, r->lsn);
		m = realloc(n, sizeof *n + r->name.len + 1);
		if (m == NULL) {
			attach(ix, n, p);
			htab_add(&ix->by_id, n, ID_OFF);
			if (n->type == MST_T_MSG)
				htab_add(&ix->by_idem, n, IDEM_OFF);
			return -ENOMEM;
		}
		n = m;
		if (n->type == MST_T_DIR) {
			struct node *c;

			for (c = n->x.dir->first; c; c = c->sib_next)
				c->parent = n;
		}
		htab_add(&ix->by_id, n, ID_OFF);
		if (n->type == MST_T_MSG)
			htab_add(&ix->by_idem, n, IDEM_OFF);
		dir_touch(p, r->lsn, r->mtime_ns);
	} else {
		p = n->parent;
		detach(ix, n, r->lsn);
		dir_touch(p, r->lsn, r->mtime_ns);
	}
	memcpy(n->name, r->name.p, r->name.len);
	n->name[r->name.len] = '\0';
	n->namelen = r->name.len;
	attach(ix, n, dir);
	n->change = r->lsn;
	n->ctime_ns = r->mtime_ns;
	dir_touch(dir, r->lsn, r->mtime_ns);
	return 0;
}

int
index_apply(struct index *ix, const struct rec *r, uint32_t seg,
    uint64_t body_off)
{
	struct node *n = NULL, *p;
	int rc = 0;

	if (r->type != REC_CREATE) {
		n = index_find_id(ix, r->id);
		if (n == NULL)
			return -EBADMSG;
	}
	switch (r->type) {
	case REC_CREATE:
		rc = apply_create(ix, r, seg, body_off);
		break;
	case REC_DATA:
	case REC_RELOCATE:
		rc = apply_body(ix, r, n, seg, body_off);
		break;
	case REC_MOVE:
		rc = apply_move(ix, r, n);
		break;
	case REC_REMOVE:
		if (n == ix->root ||
		    (n->type == MST_T_DIR && n->x.dir->nchildren))
			return -EBADMSG;
		p = n->parent;
		detach(ix, n, r->lsn);
		node_drop(ix, n);
		dir_touch(p, r->lsn, r->mtime_ns);
		break;
	case REC_SETATTR:
		if (r->valid & MST_SA_MODE)
			n->mode = r->mode;
		if (r->valid & MST_SA_UID)
			n->uid = r->uid;
		if (r->valid & MST_SA_GID)
			n->gid = r->gid;
		if (r->valid & MST_SA_MTIME)
			n->mtime_ns = r->mtime_ns;
		n->change = r->lsn;
		break;
	default:
		return -EBADMSG;
	}
	if (rc == 0 && r->lsn > ix->lsn)
		ix->lsn = r->lsn;
	return rc;
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
	ix->root = node_alloc("", 0, MST_T_DIR);
	if (ix->mboxes == NULL || ix->root == NULL ||
	    htab_init(&ix->by_name, 1024) < 0 ||
	    htab_init(&ix->by_id, 1024) < 0 ||
	    htab_init(&ix->by_idem, 1024) < 0) {
		if (ix->root)
			dirx_free(ix->root->x.dir);
		free(ix->root);
		ix->root = NULL;
		index_free(ix);
		return NULL;
	}
	ix->root->id = INDEX_ROOT_ID;
	ix->root->mode = 0755;
	htab_add(&ix->by_id, ix->root, ID_OFF);
	ix->nodes = 1;
	ix->next_id = INDEX_ROOT_ID + 1;
	return ix;
}

void
index_free(struct index *ix)
{
	size_t i;
	struct node *n, *next;
	struct mbox *m, *mn;

	if (ix == NULL)
		return;
	if (ix->by_id.b) {
		for (i = 0; i <= ix->by_id.mask; i++)
			for (n = ix->by_id.b[i]; n; n = next) {
				next = n->id_next;
				if (n->type == MST_T_DIR)
					dirx_free(n->x.dir);
				free(n);
			}
	}
	if (ix->mboxes)
		for (i = 0; i <= ix->mbox_mask; i++)
			for (m = ix->mboxes[i]; m; m = mn) {
				mn = m->next;
				free(m);
			}
	free(ix->mboxes);
	free(ix->by_name.b);
	free(ix->by_id.b);
	free(ix->by_idem.b);
	free(ix->seg_live);
	free(ix);
}
