/*
 * checkpoint.c - the index as a byte stream: index_save writes every
 * mailbox and node (parents before children) with the log position where
 * replay resumes; index_load reads it back. The file ends with an xxh3-64
 * of all bytes before it, so a torn or damaged checkpoint is refused
 * (-EBADMSG). Both stream through a 1 MiB buffer: reading the whole file
 * at once would add its size (about 140 bytes a message) to the peak
 * memory of every start. A refused checkpoint may leave the index half
 * loaded; the caller frees it and refuses to start. Atomic replacement of
 * the file (write, fsync, rename) is the engine's job.
 *
 * The save side never allocates once its saver exists and takes no lock,
 * so that it can run in a child forked from a threaded mstored (the
 * engine writes checkpoints that way, off its commit path). Every
 * |sync_every| bytes it waits for what it wrote to reach the disk, so
 * that a big checkpoint never leaves gigabytes of dirty pages for the
 * log's next fdatasync to queue behind.
 *
 * Layout (big-endian): "MSCKPT02", next_id u64, lsn u64, seg u32, off
 * u64, nmbox u32, nnodes u64; nmbox x (name str); nnodes x node; sum u64.
 * Node: id u64, parent u64, type u8, name str, mode u32, uid u32, gid
 * u32, mtime i64, ctime i64, atime i64, change u64; messages add seg u32,
 * off u64, size u64, checksum u64, mbox u32, idem[16]. A file's first
 * name adds u8 0, size u64, nb u64 and nb blocks (index u64, seg u32, off
 * u64, sum u64, len u16, valid u16; holes are left out); its other names
 * add u8 1 (a link to the object of the same id, written before).
 * Orphan files (open, no name) are not written: a restart drops them.
 *
 * After the nodes come the spent idempotency ids (spent.h), oldest
 * first: nspent u32, then nspent x (idem[16], id u64, size u64, change
 * u64, mtime i64, gone i64, mode u32, uid u32, gid u32). The magic is
 * then "MSCKPT03"; a "MSCKPT02" file is the same without them (a store
 * from before them starts with none).
 *
 * "MSCKPT01" (no atime; files as one whole body: seg, off, size,
 * checksum) still loads: such a body is read through |rd| to compute its
 * block sums.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "checkpoint.h"
#include "index.h"
#include "spent.h"
#include "wire.h"

#define CK_MAGIC "MSCKPT03"
#define CK_MAGIC_V2 "MSCKPT02"	/* no spent ids */
#define CK_MAGIC_V1 "MSCKPT01"
#define CK_SPENT_LEN (MST_IDEM_LEN + 8 * 5 + 4 * 3)
#define CK_BUF (1u << 20)
#define CK_HEAD_LEN (8 + 8 + 8 + 4 + 8 + 4 + 8)	/* magic to nnodes */
#define CK_NODE_MIN (8 + 8 + 1 + 2 + 1 + 4 * 3 + 8 * 3)	/* 1-byte name */
#define CK_BLK_LEN (8 + 4 + 8 + 8 + 2 + 2)
#define CK_MAGIC_V4 "MSCKPT04"	/* a manifest: directories + parts */
#define CK_PART_MAGIC "MSCKPP04"	/* one part of one */
#define CK_MAN_HEAD_LEN (8 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4)
#define CK_PART_HEAD_LEN (8 + 4 + 8 + 8 + 4 + 8)
#define CK_PENT_LEN (4 + 8 * 5)
#define CK_DCACHE 65536u	/* directories remembered while loading */

/* One entry of a part being written: a message, or a file object
 * (all its names). */
struct ck_slot {
	void *p;
	int file;
};

struct index_saver {
	struct ck_slot *slot;	/* index_saver_reserve: |nslot_cap| */
	size_t nslot, nslot_cap;
	struct mbox **mbl;	/* a part's mailboxes; |nmbl_cap| */
	size_t nmbl_cap;
	int fd;
	int err;
	uint64_t written;	/* bytes in the file */
	uint64_t synced;	/* of them, known to be on the disk */
	uint64_t sync_every;	/* 0: leave it to the caller's fdatasync */
	struct wr w;
	XXH3_state_t st;
	uint8_t buf[CK_BUF];
};

/* Write back what was written since the last call and wait for it. A
 * file system without it (a memory file) needs nothing: only ENOSYS,
 * EINVAL and ESPIPE say so; every other error is the disk's. */
static void
ck_writeback(struct index_saver *c)
{
	if (sync_file_range(c->fd, (off_t)c->synced,
	    (off_t)(c->written - c->synced), SYNC_FILE_RANGE_WAIT_BEFORE |
	    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0 &&
	    errno != ENOSYS && errno != EINVAL && errno != ESPIPE)
		c->err = -errno;
	c->synced = c->written;
}

static void
ck_flush(struct index_saver *c)
{
	size_t off = 0;
	ssize_t n;

	XXH3_64bits_update(&c->st, c->buf, c->w.off);
	while (!c->err && off < c->w.off) {
		n = write(c->fd, c->buf + off, c->w.off - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			c->err = -errno;
		else
			off += (size_t)n;
	}
	c->written += off;
	if (!c->err && c->sync_every &&
	    c->written - c->synced >= c->sync_every)
		ck_writeback(c);
	c->w.off = 0;
	c->w.err = 0;
}

/* Make room for |n| bytes in the buffer. */
static void
ck_room(struct index_saver *c, size_t n)
{
	if (c->w.cap - c->w.off < n)
		ck_flush(c);
}

/* The spent ids, oldest first (allocates nothing). */
static void
save_spent(struct index_saver *c, const struct spent *sp)
{
	const struct spent_ent *e;
	uint32_t i, n = spent_count(sp);

	ck_room(c, 4);
	wr_u32(&c->w, n);
	for (i = 0; i < n; i++) {
		e = spent_at(sp, i);
		ck_room(c, CK_SPENT_LEN);
		wr_raw(&c->w, e->idem, MST_IDEM_LEN);
		wr_u64(&c->w, e->id);
		wr_u64(&c->w, e->size);
		wr_u64(&c->w, e->change);
		wr_u64(&c->w, (uint64_t)e->mtime_ns);
		wr_u64(&c->w, (uint64_t)e->gone_ns);
		wr_u32(&c->w, e->mode);
		wr_u32(&c->w, e->uid);
		wr_u32(&c->w, e->gid);
	}
}

static void
save_file(struct index_saver *c, struct index *ix, struct fobj *f)
{
	uint64_t i, nb = 0, last = f->size / REC_BLOCK + 1;

	if (f->ckpt_mark == ix->ckpt_gen) {
		wr_u8(&c->w, 1);		/* a link: written before */
		return;
	}
	f->ckpt_mark = ix->ckpt_gen;
	for (i = 0; i < f->nblk && i < last; i++)
		nb += f->blk[i].len != 0;
	wr_u8(&c->w, 0);
	wr_u64(&c->w, f->size);
	wr_u64(&c->w, nb);
	for (i = 0; i < f->nblk && i < last; i++) {
		if (f->blk[i].len == 0)
			continue;
		ck_room(c, CK_BLK_LEN);
		wr_u64(&c->w, i);
		wr_u32(&c->w, f->blk[i].seg);
		wr_u64(&c->w, f->blk[i].off);
		wr_u64(&c->w, f->blk[i].sum);
		wr_u16(&c->w, f->blk[i].len);
		wr_u16(&c->w, f->blk[i].valid);
	}
}

/* One node's record (a file's first name: with its blocks). */
static void
save_rec(struct index_saver *c, struct index *ix, const struct node *n)
{
	struct mst_attr a;
	char nb[MST_NAME_MAX];
	struct mst_str nm;

	index_attr(n, &a);
	nm = index_name(n, nb);
	ck_room(c, 128 + nm.len);
	wr_u64(&c->w, n->id);
	wr_u64(&c->w, index_parent(n)->id);
	wr_u8(&c->w, n->type);
	wr_str(&c->w, nm);
	wr_u32(&c->w, a.mode);
	wr_u32(&c->w, a.uid);
	wr_u32(&c->w, a.gid);
	wr_u64(&c->w, a.mtime_ns);
	wr_u64(&c->w, a.ctime_ns);
	wr_u64(&c->w, a.atime_ns);
	wr_u64(&c->w, a.change);
	if (n->type == MST_T_MSG) {
		wr_u32(&c->w, n->seg);
		wr_u64(&c->w, n->off);
		wr_u64(&c->w, n->size);
		wr_u64(&c->w, n->checksum);
		wr_u32(&c->w, index_msg_mbox(n)->ckpt_idx);
		wr_raw(&c->w, n->idem, MST_IDEM_LEN);
	}
	if (n->type == MST_T_FILE)
		save_file(c, ix, n->x.file);
}

static void
save_node(struct index_saver *c, struct index *ix, const struct node *n)
{
	const struct node *ch;

	save_rec(c, ix, n);
	if (n->type == MST_T_DIR)	/* depth <= MST_PATH_DEPTH_MAX */
		for (ch = n->x.dir->first; ch; ch = index_next(ch))
			save_node(c, ix, ch);
}

struct index_saver *
index_saver_new(void)
{
	struct index_saver *c = malloc(sizeof(struct index_saver));

	if (c) {
		c->slot = NULL;
		c->mbl = NULL;
		c->nslot = c->nslot_cap = c->nmbl_cap = 0;
	}
	return c;
}

void
index_saver_free(struct index_saver *c)
{
	if (c) {
		free(c->slot);
		free(c->mbl);
	}
	free(c);
}

int
index_saver_run(struct index_saver *c, struct index *ix, int fd,
    uint32_t seg, uint64_t off, uint64_t sync_every)
{
	const struct node *ch;
	struct mbox *m;
	uint32_t idx = 0;
	uint64_t sum;
	size_t i;

	c->fd = fd;
	c->err = 0;
	c->written = c->synced = 0;
	c->sync_every = sync_every;
	c->w = (struct wr){ c->buf, CK_BUF, 0, 0 };
	XXH3_64bits_reset(&c->st);
	ix->ckpt_gen++;
	wr_raw(&c->w, CK_MAGIC, 8);
	wr_u64(&c->w, ix->next_id);
	wr_u64(&c->w, ix->lsn);
	wr_u32(&c->w, seg);
	wr_u64(&c->w, off);
	wr_u32(&c->w, (uint32_t)ix->nmbox);
	wr_u64(&c->w, ix->nodes - 1);
	for (i = 0; i <= ix->mbox_mask; i++)
		for (m = ix->mboxes[i]; m; m = m->next) {
			m->ckpt_idx = idx++;
			ck_room(c, 2 + strlen(m->name));
			wr_str(&c->w, mst_str_of(m->name));
		}
	for (ch = ix->root->x.dir->first; ch; ch = index_next(ch))
		save_node(c, ix, ch);
	save_spent(c, ix->spent);
	ck_flush(c);
	sum = XXH3_64bits_digest(&c->st);
	wr_u64(&c->w, sum);
	ck_flush(c);
	return c->err;
}

int
index_save(struct index *ix, int fd, uint32_t seg, uint64_t off)
{
	struct index_saver *c = index_saver_new();
	int rc;

	if (c == NULL)
		return -ENOMEM;
	rc = index_saver_run(c, ix, fd, seg, off, 0);
	index_saver_free(c);
	return rc;
}

/*
 * Incremental checkpoints ("MSCKPT04"). The saver's part functions
 * allocate nothing either: index_saver_reserve() sizes its tables
 * before the fork.
 */
int
index_saver_reserve(struct index_saver *c, const struct index *ix,
    uint64_t per)
{
	size_t nm = ix->nmbox ? ix->nmbox : 1;

	if (per > c->nslot_cap) {
		free(c->slot);
		c->nslot_cap = 0;
		c->slot = malloc((size_t)per * sizeof *c->slot);
		if (c->slot == NULL)
			return -ENOMEM;
		c->nslot_cap = (size_t)per;
	}
	if (nm > c->nmbl_cap) {
		free(c->mbl);
		c->nmbl_cap = 0;
		c->mbl = malloc(nm * sizeof *c->mbl);
		if (c->mbl == NULL)
			return -ENOMEM;
		c->nmbl_cap = nm;
	}
	return 0;
}

static void
ck_begin(struct index_saver *c, int fd, uint64_t sync_every)
{
	c->fd = fd;
	c->err = 0;
	c->written = c->synced = 0;
	c->sync_every = sync_every;
	c->w = (struct wr){ c->buf, CK_BUF, 0, 0 };
	XXH3_64bits_reset(&c->st);
}

/* The sum after the last byte; the file's size and sum in |p|. */
static int
ck_end(struct index_saver *c, struct index_part *p)
{
	uint64_t sum;

	ck_flush(c);
	sum = XXH3_64bits_digest(&c->st);
	wr_u64(&c->w, sum);
	ck_flush(c);
	if (p) {
		p->bytes = c->written;
		p->sum = sum;
	}
	return c->err;
}

uint64_t
index_part_collect(struct index_saver *c, struct index *ix, uint32_t shard,
    uint64_t per)
{
	uint64_t id = (uint64_t)shard * per, end = id + per, n = 0;
	const struct node *nm;
	struct node *nd;
	struct fobj *f;

	c->nslot = 0;
	if (per > c->nslot_cap)
		return 0;
	for (; id < end && id < ix->next_id; id++) {
		nd = index_find_id(ix, id);
		if (nd) {
			if (nd->type != MST_T_MSG)
				continue;	/* directories: the manifest */
			c->slot[c->nslot++] = (struct ck_slot){ nd, 0 };
			n++;
			continue;
		}
		f = index_find_file(ix, id);
		if (f == NULL || f->names == NULL)
			continue;		/* orphans are not saved */
		c->slot[c->nslot++] = (struct ck_slot){ f, 1 };
		for (nm = f->names; nm; nm = nm->link_next)
			n++;
	}
	return n;
}

/* The parent a slot's records go under (a file: its first name's). */
static uint64_t
slot_key(const struct ck_slot *s)
{
	const struct node *n = s->file ? ((const struct fobj *)s->p)->names :
	    s->p;

	return index_parent(n)->id;
}

static void
slot_sift(struct ck_slot *v, size_t root, size_t n)
{
	struct ck_slot t;
	size_t ch;

	while ((ch = 2 * root + 1) < n) {
		if (ch + 1 < n && slot_key(&v[ch + 1]) > slot_key(&v[ch]))
			ch++;
		if (slot_key(&v[root]) >= slot_key(&v[ch]))
			return;
		t = v[root];
		v[root] = v[ch];
		v[ch] = t;
		root = ch;
	}
}

/*
 * Order a part's slots by parent, so that a load finds each parent
 * once for a run of its children and links them while the last one is
 * still in the cache: in id order, children of a thousand folders
 * interleave and every link missed the cache (a start took 2.5 times
 * as long). Heapsort: it allocates nothing (qsort may).
 */
static void
slots_by_parent(struct ck_slot *v, size_t n)
{
	struct ck_slot t;
	size_t i;

	for (i = n / 2; i-- > 0;)
		slot_sift(v, i, n);
	for (i = n; i-- > 1;) {
		t = v[0];
		v[0] = v[i];
		v[i] = t;
		slot_sift(v, 0, i);
	}
}

static void
part_head(struct index_saver *c, uint32_t shard, uint64_t gen,
    uint64_t lsn, uint32_t nmb, uint64_t nodes)
{
	wr_raw(&c->w, CK_PART_MAGIC, 8);
	wr_u32(&c->w, shard);
	wr_u64(&c->w, gen);
	wr_u64(&c->w, lsn);
	wr_u32(&c->w, nmb);
	wr_u64(&c->w, nodes);
}

int
index_part_write(struct index_saver *c, struct index *ix, int fd,
    uint32_t shard, uint64_t gen, uint64_t nodes, uint64_t sync_every,
    struct index_part *out)
{
	const struct node *nm;
	struct mbox *m;
	uint32_t nmb = 0;
	size_t i;

	slots_by_parent(c->slot, c->nslot);
	/* The part's own mailbox table, numbered in ckpt_idx: cleared
	 * first, so that a first sight numbers a mailbox. */
	for (i = 0; i < c->nslot; i++)
		if (!c->slot[i].file)
			index_msg_mbox(c->slot[i].p)->ckpt_idx =
			    UINT32_MAX;
	for (i = 0; i < c->nslot; i++) {
		if (c->slot[i].file)
			continue;
		m = index_msg_mbox(c->slot[i].p);
		if (m->ckpt_idx == UINT32_MAX) {
			if (nmb == c->nmbl_cap)
				return -ENOBUFS;	/* not reserved */
			m->ckpt_idx = nmb;
			c->mbl[nmb++] = m;
		}
	}
	ck_begin(c, fd, sync_every);
	ix->ckpt_gen++;
	part_head(c, shard, gen, ix->lsn, nmb, nodes);
	for (i = 0; i < nmb; i++) {
		ck_room(c, 2 + strlen(c->mbl[i]->name));
		wr_str(&c->w, mst_str_of(c->mbl[i]->name));
	}
	for (i = 0; i < c->nslot; i++) {
		if (!c->slot[i].file) {
			save_rec(c, ix, c->slot[i].p);
			continue;
		}
		for (nm = ((struct fobj *)c->slot[i].p)->names; nm;
		    nm = nm->link_next)
			save_rec(c, ix, nm);
	}
	*out = (struct index_part){ .shard = shard, .gen = gen,
		.lsn = ix->lsn, .nodes = nodes };
	return ck_end(c, out);
}

int
index_spent_write(struct index_saver *c, struct index *ix, int fd,
    uint64_t gen, uint64_t sync_every, struct index_part *out)
{
	ck_begin(c, fd, sync_every);
	part_head(c, INDEX_PART_SPENT, gen, ix->lsn, 0, 0);
	save_spent(c, ix->spent);
	*out = (struct index_part){ .shard = INDEX_PART_SPENT, .gen = gen,
		.lsn = ix->lsn };
	return ck_end(c, out);
}

/* Directories only, parents first: a directory's subdirectories are
 * found among its children, stopping once all |nsubdirs| are seen (a
 * folder of messages is not walked). */
static uint64_t
save_dirs(struct index_saver *c, struct index *ix, const struct node *d,
    int write)
{
	const struct node *ch;
	uint64_t n = 0, seen = 0;

	for (ch = d->x.dir->first; ch && seen < d->x.dir->nsubdirs;
	    ch = index_next(ch)) {
		if (ch->type != MST_T_DIR)
			continue;
		seen++;
		if (write)
			save_rec(c, ix, ch);
		n += 1 + save_dirs(c, ix, ch, write);
	}
	return n;
}

int
index_save_manifest(struct index_saver *c, struct index *ix, int fd,
    uint32_t seg, uint64_t off, uint64_t gen, uint64_t per,
    const struct index_part *parts, uint32_t nparts, uint64_t sync_every)
{
	uint32_t i, n = 0;

	for (i = 0; i < nparts; i++)
		n += parts[i].gen != 0;
	ck_begin(c, fd, sync_every);
	wr_raw(&c->w, CK_MAGIC_V4, 8);
	wr_u64(&c->w, ix->next_id);
	wr_u64(&c->w, ix->lsn);
	wr_u32(&c->w, seg);
	wr_u64(&c->w, off);
	wr_u64(&c->w, gen);
	wr_u64(&c->w, per);
	wr_u64(&c->w, save_dirs(c, ix, ix->root, 0));
	wr_u32(&c->w, n);
	for (i = 0; i < nparts; i++) {
		if (parts[i].gen == 0)
			continue;
		ck_room(c, CK_PENT_LEN);
		wr_u32(&c->w, parts[i].shard);
		wr_u64(&c->w, parts[i].gen);
		wr_u64(&c->w, parts[i].lsn);
		wr_u64(&c->w, parts[i].nodes);
		wr_u64(&c->w, parts[i].bytes);
		wr_u64(&c->w, parts[i].sum);
	}
	save_dirs(c, ix, ix->root, 1);
	return ck_end(c, NULL);
}

/* Streaming reader: the bytes before the trailing sum, hashed as read. */
struct ckr {
	int fd;
	int err;		/* read error, latched */
	uint64_t left;		/* bytes before the sum not read yet */
	size_t len, pos;	/* bytes in |buf|, and where parsing is */
	XXH3_state_t st;
	uint8_t buf[CK_BUF];
};

/* The most one mailbox name or node takes: a u16-counted string plus
 * fixed fields. Every item is parsed from at least this much buffer, so
 * a shorter one means the file ended inside it. */
#define CK_ITEM_MAX	(2u + 65535u + 256u)

/* Have at least |n| unparsed bytes in the buffer, or all that are left. */
static void
ckr_fill(struct ckr *c, size_t n)
{
	size_t room;
	ssize_t got;

	if (c->err || c->len - c->pos >= n || c->left == 0)
		return;
	memmove(c->buf, c->buf + c->pos, c->len - c->pos);
	c->len -= c->pos;
	c->pos = 0;
	while (c->left > 0 && c->len < CK_BUF) {
		room = CK_BUF - c->len;
		if (room > c->left)
			room = (size_t)c->left;
		got = read(c->fd, c->buf + c->len, room);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			c->err = got < 0 ? -errno : -EBADMSG;	/* shrank */
			return;
		}
		XXH3_64bits_update(&c->st, c->buf + c->len, (size_t)got);
		c->len += (size_t)got;
		c->left -= (uint64_t)got;
	}
}

/* A cursor over the next unparsed bytes (at least |n| when the file has
 * them); ckr_take() consumes what it read. */
static struct rd
ckr_rd(struct ckr *c, size_t n)
{
	ckr_fill(c, n);
	return (struct rd){ c->buf + c->pos, c->len - c->pos, 0, c->err };
}

static void
ckr_take(struct ckr *c, const struct rd *r)
{
	c->pos += r->off;
}

/* After the last item: nothing may be left but the sum, which must be
 * the hash of everything before it. */
static int
ckr_finish(struct ckr *c, uint64_t *sum_out)
{
	uint8_t b[8];
	struct rd r = { b, sizeof b, 0, 0 };
	size_t have = 0;
	ssize_t got;

	if (c->err)
		return c->err;
	if (c->left != 0 || c->pos != c->len)
		return -EBADMSG;	/* trailing bytes */
	while (have < sizeof b) {
		got = read(c->fd, b + have, sizeof b - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? -errno : -EBADMSG;
		have += (size_t)got;
	}
	*sum_out = rd_u64(&r);
	return *sum_out == XXH3_64bits_digest(&c->st) ? 0 : -EBADMSG;
}

struct ckload {
	struct index *ix;
	struct mbox **mb;
	uint16_t *mblen;	/* their names' lengths (a strlen a message
				   was a tenth of a start's CPU) */
	/* A part's mailboxes are only names (mbbuf at mboff[i]): its
	 * messages' creates find or make the mailbox anyway, and looking
	 * each part's thousands of names up first cost a start from parts
	 * a tenth more CPU than one from a whole checkpoint. */
	int names_only;
	char *mbbuf;
	size_t mbbuf_len, mbbuf_cap;
	uint32_t *mboff;
	uint32_t nmb;
	int v1;
	index_body_fn *body;
	void *body_arg;
	struct fobj *file;	/* the file whose blocks follow */
	uint64_t nblocks;	/* how many */
	struct node *dir;	/* the last parent found: children follow
				   their parent, so mostly the next one's */
	/* MSCKPT04: a manifest holds directories only, a part the ids
	 * from |id_lo| below |id_hi|, whose parents are all loaded (and
	 * flushed) before it: they are looked up without a flush, through
	 * |dcache|. */
	int only_dirs;
	uint64_t id_lo, id_hi;
	struct node **dcache;
};

/* A v1 file's whole body, read back to compute its block sums. */
static int
load_v1_body(struct ckload *l, struct rec *rc, uint32_t seg, uint64_t off,
    uint8_t **out)
{
	uint8_t last;

	*out = NULL;
	if (rc->size == 0)
		return 0;
	if (rc->size > SIZE_MAX || l->body == NULL)
		return -ENOMEM;
	/* The size is the checkpoint's, whose sum is checked last: the
	 * segment must hold the body's last byte before a buffer that
	 * large is made (a damaged one asked for terabytes). */
	if (off > UINT64_MAX - rc->size ||
	    l->body(l->body_arg, seg, off + rc->size - 1, &last, 1) < 0)
		return -EBADMSG;
	if ((*out = malloc((size_t)rc->size)) == NULL)
		return -ENOMEM;
	if (l->body(l->body_arg, seg, off, *out, (size_t)rc->size) < 0 ||
	    XXH3_64bits(*out, (size_t)rc->size) != rc->checksum)
		return -EBADMSG;
	return 0;
}

/* Load one node record as a REC_CREATE-equivalent and fix up the fields a
 * record does not carry (ctime, atime, change, location). */
static int
load_node(struct ckload *l, struct rd *r)
{
	struct index *ix = l->ix;
	struct rec rc = { .type = REC_CREATE };
	struct node *n, *dir, saved;
	struct fobj *f = NULL;
	uint64_t change, size = 0;
	int64_t ctime, atime;
	uint32_t seg = 0, mi;
	uint64_t off = 0;
	uint8_t *body = NULL, kind = 0;
	int err;

	rc.id = rd_u64(r);
	rc.parent = rd_u64(r);
	rc.ntype = rd_u8(r);
	rc.name = rd_str(r);
	rc.mode = rd_u32(r);
	rc.uid = rd_u32(r);
	rc.gid = rd_u32(r);
	rc.mtime_ns = (int64_t)rd_u64(r);
	ctime = (int64_t)rd_u64(r);
	atime = l->v1 ? rc.mtime_ns : (int64_t)rd_u64(r);
	change = rd_u64(r);
	rc.lsn = change;
	if (rc.ntype == MST_T_MSG || (l->v1 && rc.ntype == MST_T_FILE)) {
		seg = rd_u32(r);
		off = rd_u64(r);
		rc.size = rd_u64(r);
		rc.checksum = rd_u64(r);
	} else if (rc.ntype == MST_T_FILE) {
		kind = rd_u8(r);
		if (kind == 0) {
			size = rd_u64(r);
			l->nblocks = rd_u64(r);
		}
	}
	if (rc.ntype == MST_T_MSG) {
		mi = rd_u32(r);
		rd_copy(r, rc.idem, MST_IDEM_LEN);
		if (mi >= l->nmb)
			return -EBADMSG;
		rc.mailbox = (struct mst_str){ l->names_only ?
			l->mbbuf + l->mboff[mi] : l->mb[mi]->name,
			l->mblen[mi] };
	}
	/* The type as rec_decode checks a record's: the node keeps it in
	 * 6 bits, so 0x41 would be a directory made without its dirx (a
	 * NULL dereference at the first use), 0x43 a message without a
	 * mailbox; and a checkpoint is parsed before its sum is checked. */
	if (r->err || rc.ntype < MST_T_DIR || rc.ntype > MST_T_MSG ||
	    kind > 1 || (l->only_dirs && rc.ntype != MST_T_DIR) ||
	    (l->id_hi && (rc.id < l->id_lo || rc.id >= l->id_hi ||
	    rc.ntype == MST_T_DIR)))
		return -EBADMSG;
	if (l->dir == NULL || l->dir->id != rc.parent) {
		if (l->dcache) {
			struct node **dc = &l->dcache[rc.parent &
			    (CK_DCACHE - 1)];

			if (*dc == NULL || (*dc)->id != rc.parent)
				*dc = index_find_id(ix, rc.parent);
			l->dir = *dc;
		} else {
			index_load_flush(ix);
			l->dir = index_find_id(ix, rc.parent);
		}
	}
	dir = l->dir;
	if (dir == NULL || dir->type != MST_T_DIR)
		return -EBADMSG;
	ix->load_dir = dir;
	saved = *dir;
	if (kind == 1) {
		index_load_flush(ix);
		f = index_find_file(ix, rc.id);
		err = f ? index_load_link(ix, f, dir, rc.name) : -EBADMSG;
		return err;
	}
	if (l->v1 && rc.ntype == MST_T_FILE) {
		err = load_v1_body(l, &rc, seg, off, &body);
		if (err < 0) {
			free(body);
			return err;
		}
	}
	err = index_apply(ix, &rc, seg, off, body);
	free(body);
	if (err < 0)
		return err;
	/* apply touched the parent as a live create would: restore its own
	 * saved times and change counter. */
	dir->change = saved.change;
	dir->mtime_ns = saved.mtime_ns;
	dir->ctime_ns = saved.ctime_ns;
	if (rc.ntype == MST_T_FILE) {
		f = index_find_file(ix, rc.id);
		f->ctime_ns = ctime;
		f->atime_ns = atime;
		if (!l->v1) {
			if (size > UINT64_MAX - REC_BLOCK ||
			    l->nblocks > size / REC_BLOCK + 1)
				return -EBADMSG;
			f->size = size;
			ix->bytes += size;
			l->file = f;
		}
		return 0;
	}
	n = ix->last_new;
	n->ctime_ns = ctime;
	if (index_set_atime(ix, n, atime) < 0)
		return -ENOMEM;
	/* Its removals before the checkpoint are forgotten, and each of
	 * them moved its change: a delta since at least that misses none
	 * (a folder unchanged across a clean restart is not listed in
	 * full again). */
	if (n->type == MST_T_DIR)
		n->x.dir->tomb_floor = change;
	return 0;
}

static int
load_block(struct ckload *l, struct rd *r)
{
	struct fblk b;
	uint64_t i;

	i = rd_u64(r);
	b.seg = rd_u32(r);
	b.off = rd_u64(r);
	b.sum = rd_u64(r);
	b.len = rd_u16(r);
	b.valid = rd_u16(r);
	if (r->err)
		return -EBADMSG;
	return index_load_block(l->ix, l->file, i, &b);
}

/* The spent ids of a "MSCKPT03" file, |size| bytes long. */
static int
load_spent(struct ckr *c, struct index *ix, uint64_t size)
{
	struct spent_ent e;
	struct rd r = ckr_rd(c, 4);
	uint32_t n, i;
	int rc;

	n = rd_u32(&r);
	if (r.err || n > size / CK_SPENT_LEN)
		return -EBADMSG;
	ckr_take(c, &r);
	for (i = 0; i < n; i++) {
		r = ckr_rd(c, CK_SPENT_LEN);
		rd_copy(&r, e.idem, MST_IDEM_LEN);
		e.id = rd_u64(&r);
		e.size = rd_u64(&r);
		e.change = rd_u64(&r);
		e.mtime_ns = (int64_t)rd_u64(&r);
		e.gone_ns = (int64_t)rd_u64(&r);
		e.mode = rd_u32(&r);
		e.uid = rd_u32(&r);
		e.gid = rd_u32(&r);
		if (r.err)
			return -EBADMSG;
		ckr_take(c, &r);
		rc = spent_add(ix->spent, &e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void
ckr_init(struct ckr *c, int fd, uint64_t size)
{
	c->fd = fd;
	c->err = 0;
	c->left = size - 8;
	c->len = c->pos = 0;
	XXH3_64bits_reset(&c->st);
}

/* |n| mailbox names into |mb|. */
static int
load_mboxes(struct ckr *c, struct ckload *l, uint32_t n)
{
	struct mst_str s;
	struct rd r;
	uint32_t i;

	free(l->mb);
	free(l->mblen);
	free(l->mboff);
	l->nmb = 0;
	l->mbbuf_len = 0;
	l->mb = calloc(n ? n : 1, sizeof *l->mb);
	l->mblen = calloc(n ? n : 1, sizeof *l->mblen);
	l->mboff = calloc(n ? n : 1, sizeof *l->mboff);
	if (l->mb == NULL || l->mblen == NULL || l->mboff == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		r = ckr_rd(c, CK_ITEM_MAX);
		s = rd_str(&r);
		if (r.err)
			return -EBADMSG;
		if (l->names_only) {
			if (l->mbbuf_cap - l->mbbuf_len < s.len) {
				size_t cap = (l->mbbuf_cap + s.len) * 2;
				char *b = realloc(l->mbbuf, cap);

				if (b == NULL || cap > UINT32_MAX)
					return -ENOMEM;
				l->mbbuf = b;
				l->mbbuf_cap = cap;
			}
			memcpy(l->mbbuf + l->mbbuf_len, s.p, s.len);
			l->mboff[i] = (uint32_t)l->mbbuf_len;
			l->mbbuf_len += s.len;
		} else if ((l->mb[i] = index_mbox(l->ix, s, 1)) == NULL) {
			return -ENOMEM;
		}
		l->mblen[i] = s.len;
		ckr_take(c, &r);
	}
	l->nmb = n;
	return 0;
}

/* |n| node records, each with its blocks. */
static int
load_nodes(struct ckr *c, struct ckload *l, uint64_t n)
{
	struct rd r;
	uint64_t i;
	int rc;

	for (i = 0; i < n; i++) {
		r = ckr_rd(c, CK_ITEM_MAX);
		l->file = NULL;
		l->nblocks = 0;
		rc = load_node(l, &r);
		if (rc < 0)
			return rc;
		ckr_take(c, &r);
		for (; l->nblocks > 0; l->nblocks--) {
			r = ckr_rd(c, CK_BLK_LEN);
			rc = load_block(l, &r);
			if (rc < 0)
				return rc;
			ckr_take(c, &r);
		}
	}
	return 0;
}

/* A whole-index checkpoint ("MSCKPT01" to "03"), its magic read. */
static int
load_whole(struct ckr *c, struct ckload *l, uint64_t size, int v3,
    uint32_t *seg_out, uint64_t *off_out)
{
	struct index *ix = l->ix;
	uint64_t nnodes, lsn, next_id, sum;
	struct rd r = ckr_rd(c, CK_HEAD_LEN);
	uint32_t nmb;
	int rc;

	r.off = 8;
	next_id = rd_u64(&r);
	lsn = rd_u64(&r);
	*seg_out = rd_u32(&r);
	*off_out = rd_u64(&r);
	nmb = rd_u32(&r);
	nnodes = rd_u64(&r);
	/* Nothing is verified until the sum at the end: bound the counts by
	 * what the file can hold before sizing anything by them. */
	if (r.err || nmb > size || nnodes > size / CK_NODE_MIN)
		return -EBADMSG;
	ckr_take(c, &r);
	index_load_begin(ix, nnodes);
	index_load_prefault(ix, nnodes);	/* bounded by the file's size */
	rc = load_mboxes(c, l, nmb);
	if (rc == 0)
		rc = load_nodes(c, l, nnodes);
	if (rc == 0 && v3)
		rc = load_spent(c, ix, size);
	if (rc == 0)
		rc = ckr_finish(c, &sum);
	if (rc == 0) {
		if (next_id > ix->next_id)
			ix->next_id = next_id;
		ix->lsn = lsn;
		ix->root->x.dir->tomb_floor = lsn;
	}
	return rc;
}

/* One part named by a manifest, checked against its entry |p|. */
static int
load_part(struct ckr *c, struct ckload *l, int fd,
    const struct index_part *p, uint64_t per)
{
	struct index *ix = l->ix;
	struct stat st;
	struct rd r;
	uint64_t nodes, sum;
	uint32_t nmb;
	int rc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size != p->bytes || p->bytes < CK_PART_HEAD_LEN + 8)
		return -EBADMSG;
	ckr_init(c, fd, p->bytes);
	r = ckr_rd(c, CK_PART_HEAD_LEN);
	if (r.len < CK_PART_HEAD_LEN || memcmp(r.p, CK_PART_MAGIC, 8) != 0)
		return -EBADMSG;
	r.off = 8;
	if (rd_u32(&r) != p->shard || rd_u64(&r) != p->gen ||
	    rd_u64(&r) != p->lsn)
		return -EBADMSG;
	nmb = rd_u32(&r);
	nodes = rd_u64(&r);
	if (r.err || nodes != p->nodes || nmb > p->bytes ||
	    (p->shard == INDEX_PART_SPENT && (nmb || nodes)))
		return -EBADMSG;
	ckr_take(c, &r);
	if (p->shard == INDEX_PART_SPENT) {
		rc = load_spent(c, ix, p->bytes);
	} else {
		l->id_lo = (uint64_t)p->shard * per;
		l->id_hi = l->id_lo + per;
		l->dir = NULL;
		l->names_only = 1;
		rc = load_mboxes(c, l, nmb);
		if (rc == 0)
			rc = load_nodes(c, l, nodes);
	}
	if (rc == 0)
		rc = ckr_finish(c, &sum);
	if (rc == 0 && sum != p->sum)
		rc = -EBADMSG;
	if (rc < 0 && c->err)
		rc = c->err;
	return rc;
}

/* Part |p| opened, and the kernel asked to read all of it (advice: its
 * failure is not an error). */
static int
part_open_ahead(index_part_open_fn *popen, void *parg,
    const struct index_part *p)
{
	int fd = popen(parg, p->shard, p->gen);

	if (fd >= 0)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	return fd;
}

/*
 * The |n| parts of |pt| in order. Each part is opened CK_AHEAD parts
 * before it is loaded, and its reading starts then (POSIX_FADV_WILLNEED),
 * so that a start on a cold page cache reads the next parts from the
 * disk while it parses this one, instead of waiting for each 1 MiB
 * read in turn.
 */
#define CK_AHEAD 8u
static int
load_parts(struct ckr *c, struct ckload *l, const struct index_part *pt,
    uint32_t n, uint64_t per, index_part_open_fn *popen, void *parg)
{
	int ahead[CK_AHEAD], fd, rc = 0;
	uint32_t i;

	for (i = 0; i < CK_AHEAD; i++)
		ahead[i] = i < n ? part_open_ahead(popen, parg, &pt[i]) : -1;
	for (i = 0; rc == 0 && i < n; i++) {
		fd = ahead[i % CK_AHEAD];
		ahead[i % CK_AHEAD] = -1;
		if (fd < 0) {
			rc = fd;
			break;
		}
		rc = load_part(c, l, fd, &pt[i], per);
		close(fd);
		if (rc == 0 && i + CK_AHEAD < n)
			ahead[i % CK_AHEAD] = part_open_ahead(popen, parg,
			    &pt[i + CK_AHEAD]);
	}
	for (i = 0; i < CK_AHEAD; i++)
		if (ahead[i] >= 0)
			close(ahead[i]);
	return rc;
}

/* A manifest ("MSCKPT04"), its magic read: its directories, then every
 * part it names. */
static int
load_manifest(struct ckr *c, struct ckload *l, uint64_t size,
    index_part_open_fn *popen, void *parg, uint32_t *seg_out,
    uint64_t *off_out, struct index_ckpt *out)
{
	struct index *ix = l->ix;
	struct index_part *pt;
	uint64_t next_id, lsn, gen, per, ndirs, total, sum;
	uint32_t i, n;
	struct rd r = ckr_rd(c, CK_MAN_HEAD_LEN);
	int rc;

	r.off = 8;
	next_id = rd_u64(&r);
	lsn = rd_u64(&r);
	*seg_out = rd_u32(&r);
	*off_out = rd_u64(&r);
	gen = rd_u64(&r);
	per = rd_u64(&r);
	ndirs = rd_u64(&r);
	n = rd_u32(&r);
	if (r.err || gen == 0 || per == 0 || per > INDEX_PART_IDS_MAX ||
	    ndirs > size / CK_NODE_MIN || n > size / CK_PENT_LEN)
		return -EBADMSG;
	ckr_take(c, &r);
	pt = calloc(n ? n : 1, sizeof *pt);
	if (pt == NULL)
		return -ENOMEM;
	out->parts = pt;
	out->nparts = n;
	out->gen = gen;
	out->per = per;
	total = ndirs;
	for (i = 0; i < n; i++) {
		r = ckr_rd(c, CK_PENT_LEN);
		pt[i].shard = rd_u32(&r);
		pt[i].gen = rd_u64(&r);
		pt[i].lsn = rd_u64(&r);
		pt[i].nodes = rd_u64(&r);
		pt[i].bytes = rd_u64(&r);
		pt[i].sum = rd_u64(&r);
		/* Each part once, in order: a node loaded twice would not
		 * be noticed (loading skips the index's own checks). */
		if (r.err || pt[i].gen == 0 || pt[i].gen > gen ||
		    pt[i].lsn > lsn || (i && pt[i].shard <= pt[i - 1].shard) ||
		    (pt[i].shard != INDEX_PART_SPENT &&
		    (uint64_t)pt[i].shard >= (INDEX_ID_LIMIT + per - 1) / per) ||
		    pt[i].nodes > pt[i].bytes / CK_NODE_MIN ||
		    total + pt[i].nodes < total)
			return -EBADMSG;
		total += pt[i].nodes;
		ckr_take(c, &r);
	}
	index_load_begin(ix, total);
	l->only_dirs = 1;
	rc = load_nodes(c, l, ndirs);
	l->only_dirs = 0;
	if (rc == 0)
		rc = ckr_finish(c, &sum);
	if (rc < 0)
		return rc;
	index_load_flush(ix);
	index_load_prefault(ix, total - ndirs);	/* the sum vouches */
	l->dcache = calloc(CK_DCACHE, sizeof *l->dcache);
	if (l->dcache == NULL)
		return -ENOMEM;
	rc = load_parts(c, l, pt, n, per, popen, parg);
	if (rc == 0) {
		if (next_id > ix->next_id)
			ix->next_id = next_id;
		ix->lsn = lsn;
		ix->root->x.dir->tomb_floor = lsn;
	}
	return rc;
}

int
index_load_ckpt(struct index *ix, int fd, index_body_fn *body,
    void *body_arg, index_part_open_fn *popen, void *parg,
    uint32_t *seg_out, uint64_t *off_out, struct index_ckpt *out)
{
	struct ckload l = { .ix = ix, .body = body, .body_arg = body_arg };
	struct index_ckpt none = { 0 };
	struct ckr *c = NULL;
	struct stat st;
	struct rd r;
	int rc;

	if (out == NULL)
		out = &none;
	*out = (struct index_ckpt){ 0 };
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < 8 + 8)
		return -EBADMSG;
	c = malloc(sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	ckr_init(c, fd, (uint64_t)st.st_size);
	rc = -EBADMSG;
	r = ckr_rd(c, CK_HEAD_LEN);
	if (r.len < 8)
		goto out;
	l.v1 = memcmp(r.p, CK_MAGIC_V1, 8) == 0;
	if (memcmp(r.p, CK_MAGIC_V4, 8) == 0) {
		if (popen != NULL)
			rc = load_manifest(c, &l, (uint64_t)st.st_size, popen,
			    parg, seg_out, off_out, out);
	} else if (memcmp(r.p, CK_MAGIC, 8) == 0 || l.v1 ||
	    memcmp(r.p, CK_MAGIC_V2, 8) == 0) {
		rc = load_whole(c, &l, (uint64_t)st.st_size,
		    memcmp(r.p, CK_MAGIC, 8) == 0, seg_out, off_out);
	}
out:
	index_load_end(ix);
	if (rc < 0 && c->err)
		rc = c->err;		/* an I/O error, not bad bytes */
	if (out == &none || rc < 0) {
		free(out->parts);
		*out = (struct index_ckpt){ 0 };
	}
	free(l.mb);
	free(l.mblen);
	free(l.mboff);
	free(l.mbbuf);
	free(l.dcache);
	free(c);
	return rc;
}

int
index_load(struct index *ix, int fd, index_body_fn *body, void *body_arg,
    uint32_t *seg_out, uint64_t *off_out)
{
	return index_load_ckpt(ix, fd, body, body_arg, NULL, NULL, seg_out,
	    off_out, NULL);
}
