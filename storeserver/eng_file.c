/*
 * eng_file.c - ordinary files' contents and lives in the local engine:
 * WRITE and READ by 4 KiB blocks, attribute changes (FSETATTR, and the
 * ext4 rules SETATTR and PUT use too), LINK, and the OPEN references
 * that keep an unlinked file alive. Builds on eng_base.c; never touches
 * the namespace beyond adding a link name.
 *
 * Blocks (index.h has the layout): WRITE appends EXTENT records for just
 * the blocks its range touches (the partly covered first and last merged
 * with their old bytes, read from the batch being filled when a write in
 * the same batch put them there), so its cost is its length plus at
 * most two blocks, never the file's size. An operation that needs
 * several records asks batch_room() first and never stops half way.
 * READ verifies only the blocks it returns; GET and FETCH of a file
 * read it all to give the whole file's checksum, as they always did.
 *
 * Times follow ext4, from the writer's clock in each record: data and
 * size changes set mtime and ctime, attribute changes ctime, a new link
 * the file's ctime and its new parent's mtime and ctime. Reads never
 * change atime (as mounted noatime): a read stays a read, with no log
 * record; atime moves only by an explicit FSETATTR.
 *
 * OPEN references (|e->orefs|, by owner) are the writer's: OPEN, CLOSE
 * and ENG_OP_CLOSE_OWNER run on the writer thread without a record, and
 * a file whose last name goes while it is open stays in the index as an
 * orphan until its last reference is dropped (index_file_put).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "eng.h"
#include "log.h"

/* --- file blocks on the writer thread --- */

/*
 * Read |len| bytes at |off| of segment |seg| as the writer sees them:
 * from the batch being filled when they are in it (not in the file yet),
 * else from the file.
 */
static int
batch_read(struct engine *e, struct batch *b, uint32_t seg, uint64_t off,
    uint8_t *buf, size_t len)
{
	uint64_t pos = b->base;
	size_t got = 0, n, skip;
	int i;

	if (seg != b->seg->no || off + len <= b->base)
		return body_read(seg < e->nsegs ? e->segs[seg] : NULL, off, 0,
		    buf, len);
	for (i = 0; i < b->niov && got < len; i++) {
		if (off + got < pos + b->iov[i].iov_len) {
			skip = (size_t)(off + got - pos);
			n = b->iov[i].iov_len - skip;
			if (n > len - got)
				n = len - got;
			memcpy(buf + got, (uint8_t *)b->iov[i].iov_base + skip,
			    n);
			got += n;
		}
		pos += b->iov[i].iov_len;
	}
	return got == len ? 0 : -EIO;
}

/*
 * A block just read into |buf| (REC_BLOCK bytes): verify its |len|
 * stored bytes against |sum| and zero what is past |valid|, so that the
 * buffer holds the file's bytes. -EIO (logged) on a mismatch: a damaged
 * block is never served nor merged into a new one.
 */
static int
block_check(uint8_t *buf, const struct fblk *k, uint64_t id, uint64_t i,
    const char *where)
{
	int rc = 0;

	if (mst_checksum(buf, k->len) != k->sum) {
		log_err("file %llu block %llu at %s offset %llu: checksum "
		    "mismatch: refusing to use it", (unsigned long long)id,
		    (unsigned long long)i, where, (unsigned long long)k->off);
		rc = -EIO;
	}
	memset(buf + k->valid, 0, REC_BLOCK - k->valid);
	return rc;
}

/* The bytes of block |i| of |f| inside the file (zeros past them) into
 * |buf| (REC_BLOCK bytes), verified against the block's sum. */
static int
block_load(struct engine *e, struct batch *b, const struct fobj *f,
    uint64_t i, uint8_t *buf)
{
	const struct fblk *k = i < f->nblk ? &f->blk[i] : NULL;
	int rc;

	memset(buf, 0, REC_BLOCK);
	if (k == NULL || k->len == 0)
		return 0;
	rc = batch_read(e, b, k->seg, k->off, buf, k->len);
	if (rc == 0)
		rc = block_check(buf, k, f->id, i, k->seg < e->nsegs &&
		    e->segs[k->seg] ? e->segs[k->seg]->path : "?");
	return rc;
}

static uint64_t
ext_records(uint64_t off, uint64_t len)
{
	uint64_t nb;

	if (len == 0)
		return 0;
	nb = (off + len - 1) / REC_BLOCK - off / REC_BLOCK + 1;
	return (nb + REC_EXT_MAX - 1) / REC_EXT_MAX;
}

int
file_write_room(struct engine *e, struct batch *b, uint64_t off,
    uint64_t len, int more)
{
	uint64_t n = ext_records(off, len);

	/* The bytes written, the old ones of two partial blocks, sums. */
	return batch_room(e, b, (int)n + more, len ? len + 2 * REC_BLOCK +
	    n * REC_EXT_MAX * 8 : 0);
}

/* A write cut into EXTENT records, their bodies built before any is
 * added, so that adding them cannot fail half way. */
struct wplan {
	const uint8_t *data;
	uint64_t off, end;	/* the bytes written */
	uint64_t size;		/* the file's size afterwards */
	uint64_t b0, b1;	/* first and last block touched */
	uint8_t head[REC_BLOCK], tail[REC_BLOCK];	/* their old bytes */
	uint64_t nrec;
	uint8_t **buf;		/* record bodies */
	size_t *blen;
};

/* Blocks in the EXTENT that starts at block |first|. */
static uint32_t
run_blocks(const struct wplan *w, uint64_t first)
{
	return w->b1 - first < REC_EXT_MAX ? (uint32_t)(w->b1 - first + 1) :
	    REC_EXT_MAX;
}

/* The body of the EXTENT for blocks first .. first + nblk - 1: their
 * sums, then their bytes, every block whole but the file's last. */
static uint8_t *
extent_body(const struct wplan *w, uint64_t first, uint32_t nblk,
    size_t *len_out)
{
	uint64_t last = first + nblk - 1, lo = first * REC_BLOCK, hi, a, z;
	size_t dlen, k, bl;
	uint8_t *buf, *d;

	dlen = (size_t)((w->size - last * REC_BLOCK < REC_BLOCK ?
	    w->size - last * REC_BLOCK : REC_BLOCK) +
	    (uint64_t)(nblk - 1) * REC_BLOCK);
	*len_out = nblk * 8u + dlen;
	buf = malloc(*len_out);
	if (buf == NULL)
		return NULL;
	d = buf + nblk * 8u;
	if (first == w->b0)
		memcpy(d, w->head, dlen < REC_BLOCK ? dlen : REC_BLOCK);
	if (last == w->b1 && w->b1 != w->b0)
		memcpy(d + (w->b1 - first) * REC_BLOCK, w->tail,
		    dlen - (w->b1 - first) * REC_BLOCK);
	hi = lo + dlen;			/* the new bytes that fall here */
	a = w->off > lo ? w->off : lo;
	z = w->end < hi ? w->end : hi;
	memcpy(d + (a - lo), w->data + (a - w->off), (size_t)(z - a));
	for (k = 0; k < nblk; k++) {
		bl = k + 1 < nblk ? REC_BLOCK : dlen - k * REC_BLOCK;
		rec_ext_set_sum(buf, (uint32_t)k, mst_checksum(d + k *
		    REC_BLOCK, bl));
	}
	return buf;
}

void
file_write_free(struct wplan *w)
{
	uint64_t i;

	if (w == NULL)
		return;
	for (i = 0; w->buf && i < w->nrec; i++)
		free(w->buf[i]);
	free(w->buf);
	free(w->blen);
	free(w);
}

int
file_write_prepare(struct engine *e, struct batch *b, const struct fobj *f,
    uint64_t off, const uint8_t *data, uint64_t len, struct wplan **out)
{
	struct wplan *w = calloc(1, sizeof *w);
	uint64_t i, size = f ? f->size : 0;
	int rc = 0;

	*out = NULL;
	if (w == NULL)
		return -ENOMEM;
	w->data = data;
	w->off = off;
	w->end = off + len;
	w->size = size > w->end ? size : w->end;
	w->b0 = off / REC_BLOCK;
	w->b1 = (w->end - 1) / REC_BLOCK;
	w->nrec = ext_records(off, len);
	w->buf = calloc(w->nrec, sizeof *w->buf);
	w->blen = calloc(w->nrec, sizeof *w->blen);
	if (w->buf == NULL || w->blen == NULL)
		rc = -ENOMEM;
	if (rc == 0 && f)
		rc = block_load(e, b, f, w->b0, w->head);
	if (rc == 0 && f && w->b1 != w->b0)
		rc = block_load(e, b, f, w->b1, w->tail);
	for (i = 0; rc == 0 && i < w->nrec; i++) {
		uint64_t first = w->b0 + i * REC_EXT_MAX;

		w->buf[i] = extent_body(w, first, run_blocks(w, first),
		    &w->blen[i]);
		if (w->buf[i] == NULL)
			rc = -ENOMEM;
	}
	if (rc < 0) {
		file_write_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int
file_write_apply(struct engine *e, struct batch *b, struct fobj *f,
    struct wplan *w, int64_t now, uint64_t *lsn_out)
{
	struct rec r = { .type = REC_EXTENT, .id = f->id, .mtime_ns = now };
	uint64_t i;
	int rc = 0;

	for (i = 0; rc == 0 && i < w->nrec; i++) {
		r.first = w->b0 + i * REC_EXT_MAX;
		r.nblk = run_blocks(w, r.first);
		r.fsize = (r.first + r.nblk) * REC_BLOCK < w->size ?
		    (r.first + r.nblk) * REC_BLOCK : w->size;
		if (r.fsize < f->size)
			r.fsize = f->size;
		r.size = w->blen[i];
		r.checksum = mst_checksum(w->buf[i], w->blen[i]);
		rc = batch_add(e, b, &r, w->buf[i]);	/* room was checked */
		if (rc == 0) {
			b->scratch[b->nscratch++] = w->buf[i];	/* freed after
								   the write */
			w->buf[i] = NULL;
			*lsn_out = r.lsn;
		}
	}
	return rc;
}

/* The object of a file id, or the error the id deserves. */
static int
file_of(const struct index *ix, uint64_t id, struct fobj **out)
{
	struct node *n;

	*out = index_find_file(ix, id);
	if (*out)
		return 0;
	n = index_find_id(ix, id);
	if (n == NULL)
		return -ENOENT;
	return n->type == MST_T_DIR ? -EISDIR : -EPERM;
}

int
file_write(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_write_req *q = &j->req.write;
	uint64_t off, len = j->body_len, lsn = 0;
	struct wplan *w;
	struct fobj *f;
	int rc = file_of(e->ix, q->id, &f);

	if (rc < 0)
		return rc;
	if (q->flags & ~MST_WR_ALL)
		return -EINVAL;
	off = (q->flags & MST_WR_APPEND) ? f->size : q->offset;
	if (off > e->conf.max_body || len > e->conf.max_body - off)
		return -EFBIG;
	if (len) {
		rc = file_write_room(e, b, off, len, 0);
		if (rc == 0)
			rc = file_write_prepare(e, b, f, off, j->body, len, &w);
		if (rc < 0)
			return rc;
		/* One hold of the lock for all the records: no reader sees
		 * part of the write. */
		pthread_rwlock_wrlock(&e->mu);
		b->locked = 1;
		rc = file_write_apply(e, b, f, w, now_ns(), &lsn);
		b->locked = 0;
		pthread_rwlock_unlock(&e->mu);
		file_write_free(w);
		if (rc < 0)
			return rc;
	}
	rc = reply_fattr(j, f);
	return rc || len == 0 ? rc : notice_names(j, f, NULL, lsn);
}

/* One ATTR record; |valid| already checked against the node's type. */
int
file_attr_record(struct engine *e, struct batch *b, uint64_t id,
    uint32_t valid, const struct mst_fsetattr_req *s, uint64_t *lsn_out)
{
	struct rec r = { .type = REC_ATTR, .id = id, .valid = valid,
		.mode = s->mode, .uid = s->uid, .gid = s->gid,
		.fsize = s->size, .set_mtime_ns = (int64_t)s->mtime_ns,
		.set_atime_ns = (int64_t)s->atime_ns, .mtime_ns = now_ns() };
	int rc;

	rc = batch_add(e, b, &r, NULL);
	*lsn_out = r.lsn;
	return rc;
}

/*
 * SETATTR and FSETATTR of the entry |n| (NULL for an orphan file) or
 * file |f|. ext4's rules: any change sets ctime; a size change (even to
 * the same size) sets mtime too; explicit times are taken as given.
 */
int
file_set_attrs(struct engine *e, struct batch *b, struct job *j,
    struct node *n, struct fobj *f, const struct mst_fsetattr_req *s)
{
	uint32_t valid = s->valid;
	uint64_t lsn = 0;
	char nb[MST_NAME_MAX];
	struct mst_str nm;
	int rc;

	if (valid & ~MST_FSA_ALL)
		return -EINVAL;
	if (f == NULL && (valid & MST_SA_SIZE)) {
		if (n->type == MST_T_DIR)
			return -EISDIR;
		if (s->size != n->size)
			return -EPERM;	/* message bodies are immutable */
		valid &= ~MST_SA_SIZE;
	}
	if ((valid & MST_SA_SIZE) && s->size > e->conf.max_body)
		return -EFBIG;
	if (valid) {
		rc = file_attr_record(e, b, f ? f->id : n->id, valid, s, &lsn);
		if (rc < 0)
			return rc;
	}
	if (f) {
		rc = reply_fattr(j, f);
		return rc || !valid ? rc : notice_names(j, f, NULL, lsn);
	}
	rc = reply_attr(j, n, index_dir_of(n));
	if (rc == 0 && valid && index_parent(n)) {
		nm = index_name(n, nb);
		rc = notice(j, index_parent(n), nm.p, nm.len, MST_EV_CHANGE,
		    n->id, lsn);
	}
	return rc;
}

int
file_fsetattr(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_fsetattr_req *s = &j->req.fsetattr;
	struct fobj *f = index_find_file(e->ix, s->id);
	struct node *n = f ? NULL : index_find_id(e->ix, s->id);

	if (f == NULL && n == NULL)
		return -ENOENT;
	return file_set_attrs(e, b, j, n, f, s);
}

int
file_link(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_link_req *l = &j->req.link;
	struct rec r = { .type = REC_LINK, .id = l->id, .mtime_ns = now_ns() };
	struct node *dir, *n = NULL;
	struct fobj *f = index_find_file(e->ix, l->id);
	int rc;

	if (f == NULL) {
		n = index_find_id(e->ix, l->id);
		if (n == NULL)
			return -ENOENT;
		return n->type == MST_T_MSG ? -EXDEV : -EPERM;
	}
	if (f->nlink == 0)
		return -ENOENT;		/* as linkat of an unlinked file */
	if (f->nlink >= 65000)
		return -EMLINK;
	if (l->path.len == 0)
		return -EEXIST;		/* the root */
	rc = parent_of(e->ix, l->path, &dir, &r.name);
	if (rc < 0)
		return rc;
	if (index_lookup(e->ix, dir, r.name.p, r.name.len))
		return -EEXIST;
	r.parent = dir->id;
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, dir, r.name.p, r.name.len);
	rc = reply_attr(j, n, dir);
	if (rc == 0)
		rc = notice_names(j, f, n, r.lsn);
	return rc ? rc : notice(j, dir, r.name.p, r.name.len, MST_EV_ADD,
	    f->id, r.lsn);
}

int
file_relocate_block(struct engine *e, struct batch *b, struct job *j)
{
	const struct reloc *rl = (const struct reloc *)j->payload;
	struct fobj *f = index_find_file(e->ix, rl->id);
	const struct fblk *k = f && rl->block < f->nblk ?
	    &f->blk[rl->block] : NULL;
	struct rec r = { .type = REC_EXTENT, .id = rl->id, .nblk = 1,
		.first = rl->block, .flags = REC_EXT_RELOC };
	uint8_t *buf;
	int rc;

	if (k == NULL || k->len == 0 || k->seg != rl->seg ||
	    k->off != rl->off || k->sum != rl->checksum ||
	    k->len != j->body_len)
		return -ESTALE;		/* changed meanwhile: nothing to do */
	rc = batch_room(e, b, 1, 8 + j->body_len);
	if (rc < 0)
		return rc == -EFBIG ? -ESTALE : rc;
	buf = malloc(8 + j->body_len);
	if (buf == NULL)
		return -ENOMEM;
	rec_ext_set_sum(buf, 0, k->sum);
	memcpy(buf + 8, j->body, j->body_len);
	r.fsize = f->size;
	r.mtime_ns = f->mtime_ns;
	r.size = 8 + j->body_len;
	r.checksum = mst_checksum(buf, r.size);
	rc = batch_add(e, b, &r, buf);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	b->scratch[b->nscratch++] = buf;
	return 0;
}

/* --- OPEN references (writer thread; e->orefs is writer-owned) --- */

static struct oref **
oref_slot(struct engine *e, uint64_t owner, uint64_t id)
{
	struct oref **pp = &e->orefs[(owner * 0x9e3779b97f4a7c15ull) >> 58];

	while (*pp && ((*pp)->owner != owner || (*pp)->id != id))
		pp = &(*pp)->next;
	return pp;
}

int
file_open(struct engine *e, struct job *j)
{
	struct fobj *f = index_find_file(e->ix, j->req.fid.id);
	struct node *n;
	struct oref **pp;

	if (j->owner == 0)
		return -EINVAL;
	if (f == NULL) {	/* directories and messages: nothing to keep */
		n = index_find_id(e->ix, j->req.fid.id);
		return n ? reply_attr(j, n, index_dir_of(n)) :
		    -ENOENT;
	}
	pp = oref_slot(e, j->owner, f->id);
	if (*pp == NULL) {
		*pp = calloc(1, sizeof **pp);
		if (*pp == NULL)
			return -ENOMEM;
		(*pp)->owner = j->owner;
		(*pp)->id = f->id;
	}
	(*pp)->count++;
	pthread_rwlock_wrlock(&e->mu);
	f->opens++;
	pthread_rwlock_unlock(&e->mu);
	return reply_fattr(j, f);
}

/* Drop |o|'s references (all of them, or one) and free it when none
 * is left. */
static void
oref_drop(struct engine *e, struct oref **pp, int all)
{
	struct oref *o = *pp;
	struct fobj *f = index_find_file(e->ix, o->id);
	uint32_t n = all ? o->count : 1;

	o->count -= n;
	if (f) {		/* else a failed batch's reload dropped it */
		pthread_rwlock_wrlock(&e->mu);
		index_file_put(e->ix, f, n);
		pthread_rwlock_unlock(&e->mu);
	}
	if (o->count == 0) {
		*pp = o->next;
		free(o);
	}
}

int
file_close(struct engine *e, struct job *j)
{
	struct oref **pp;
	uint8_t *p;

	if (j->owner == 0)
		return -EINVAL;
	pp = oref_slot(e, j->owner, j->req.fid.id);
	if (*pp)
		oref_drop(e, pp, 0);
	else if (index_find_file(e->ix, j->req.fid.id))
		return -EBADF;		/* never opened by this owner */
	else if (index_find_id(e->ix, j->req.fid.id) == NULL)
		return -ENOENT;
	p = malloc(1);
	return p ? job_add_frame(j, p, 0) : -ENOMEM;
}

void
file_close_owner(struct engine *e, uint64_t owner)
{
	struct oref **pp = &e->orefs[(owner * 0x9e3779b97f4a7c15ull) >> 58];

	while (*pp) {
		if ((*pp)->owner == owner)
			oref_drop(e, pp, 1);
		else
			pp = &(*pp)->next;
	}
}

void
orefs_reapply(struct engine *e)
{
	struct oref *o;
	struct fobj *f;
	size_t i;

	for (i = 0; i < ENG_OREF_BUCKETS; i++)
		for (o = e->orefs[i]; o; o = o->next)
			if ((f = index_find_file(e->ix, o->id)) != NULL)
				f->opens += o->count;
}

void
orefs_free(struct engine *e)
{
	struct oref *o;
	size_t i;

	for (i = 0; i < ENG_OREF_BUCKETS; i++)
		while ((o = e->orefs[i]) != NULL) {
			e->orefs[i] = o->next;
			free(o);
		}
}

/* --- file reads (reader threads) --- */

/* A snapshot of the blocks a read needs, taken under the rwlock, with
 * their segments pinned so that the read needs no lock. */
struct rblk {
	struct seg *s;		/* NULL: a hole */
	struct fblk b;
};

struct rplan {
	uint64_t id, size;
	uint64_t b0, nb;	/* blocks b0 .. b0 + nb - 1 */
	struct rblk *blk;
	unsigned view;		/* body_view() when it was taken */
};

static int
plan_file(struct engine *e, const struct fobj *f, uint64_t from, uint64_t n,
    struct rplan *p)
{
	uint64_t k;
	const struct fblk *b;

	p->id = f->id;
	p->size = f->size;
	p->view = body_view(e);
	p->b0 = from / REC_BLOCK;
	p->nb = n ? (from + n - 1) / REC_BLOCK - p->b0 + 1 : 0;
	p->blk = calloc(p->nb ? (size_t)p->nb : 1, sizeof *p->blk);
	if (p->blk == NULL)
		return -ENOMEM;
	for (k = 0; k < p->nb; k++) {
		if (p->b0 + k >= f->nblk)
			continue;
		b = &f->blk[p->b0 + k];
		if (b->len == 0)
			continue;
		p->blk[k].s = seg_get(e, b->seg);
		p->blk[k].b = *b;
	}
	return 0;
}

static void
plan_free(struct rplan *p)
{
	uint64_t k;

	for (k = 0; k < p->nb; k++)
		seg_put(p->blk[k].s);
	free(p->blk);
}

/* Block k of the plan as the file's bytes (zeros past |valid|). */
static int
plan_block(struct engine *e, const struct rplan *p, uint64_t k, uint8_t *buf)
{
	const struct rblk *r = &p->blk[k];
	int rc;

	memset(buf, 0, REC_BLOCK);
	if (r->b.len == 0)
		return 0;
	rc = body_wait(e, r->s, r->b.off + r->b.len, p->view);
	if (rc == 0)
		rc = body_read(r->s, r->b.off, 0, buf, r->b.len);
	/* A roll back cut the place (a relocated block): no mismatch to
	 * report, the block is looked up again (file_reply_data). */
	if (body_moved(e, p->view))
		return -EAGAIN;
	if (rc == 0)
		rc = block_check(buf, &r->b, p->id, p->b0 + k,
		    r->s ? r->s->path : "?");
	return rc;
}

/*
 * A data_rep of [from, from + n) of the planned file. With |whole| the
 * plan covers the whole file and the checksum is the whole file's (GET,
 * FETCH); else it is the returned bytes' (READ).
 */
static int
reply_file(struct engine *e, struct job *j, const struct rplan *p,
    uint64_t from, size_t n, int whole)
{
	struct mst_data_rep r = { .total_size = p->size };
	uint8_t blk[REC_BLOCK], *out = malloc(16 + n);
	uint64_t k, base, fl, lo, hi;
	XXH3_state_t st;
	int rc = 0;

	if (out == NULL)
		return -ENOMEM;
	XXH3_64bits_reset(&st);
	for (k = 0; rc == 0 && k < p->nb; k++) {
		base = (p->b0 + k) * REC_BLOCK;
		fl = p->size - base < REC_BLOCK ? p->size - base : REC_BLOCK;
		rc = plan_block(e, p, k, blk);
		if (rc < 0)
			break;
		if (whole)
			XXH3_64bits_update(&st, blk, (size_t)fl);
		lo = from > base ? from : base;
		hi = from + n < base + fl ? from + n : base + fl;
		if (lo < hi)
			memcpy(out + 16 + (lo - from), blk + (lo - base),
			    (size_t)(hi - lo));
	}
	if (rc == 0 && body_moved(e, p->view))
		rc = -EAGAIN;	/* some bytes may be cut or rewritten ones */
	if (rc < 0) {
		free(out);
		return rc;
	}
	r.checksum = whole ? XXH3_64bits_digest(&st) :
	    mst_checksum(out + 16, n);
	mst_data_rep_encode(&r, out, 16);
	return job_add_frame(j, out, 16 + n);
}

/* Bytes a reply from |from| may carry. */
static size_t
reply_len(const struct job *j, uint64_t size, uint64_t from, uint64_t want)
{
	uint64_t n = from < size ? size - from : 0;

	if (n > want)
		n = want;
	if (n > j->max_frame - 16)
		n = j->max_frame - 16;
	return (size_t)n;
}

/* GET, FETCH (whole-file checksum) and READ (range checksum) of a file;
 * called with the rwlock held for reading, which it releases. */
int
file_reply_data(struct engine *e, struct job *j, const struct fobj *f,
    uint64_t from, uint64_t want, int whole)
{
	struct rplan p;
	uint64_t id = f->id;
	size_t n;
	int rc, tries = 0;

	for (;;) {
		n = reply_len(j, f->size, from, want);
		rc = whole ? plan_file(e, f, 0, f->size, &p) :
		    plan_file(e, f, from, n, &p);
		pthread_rwlock_unlock(&e->mu);
		if (rc < 0)
			return rc;
		rc = reply_file(e, j, &p, from, n, whole);
		plan_free(&p);
		/* A roll back cut a block's place: plan it again from the
		 * reloaded index. */
		if (rc != -EAGAIN || ++tries == BODY_TRIES)
			break;
		pthread_rwlock_rdlock(&e->mu);
		f = index_find_file(e->ix, id);
		if (f == NULL) {
			pthread_rwlock_unlock(&e->mu);
			return -ENOENT;
		}
	}
	return rc == -EAGAIN ? -EIO : rc;
}

/* GETATTR of a file or a message by id; the caller holds e->mu (read). */
int
file_getattr_locked(struct engine *e, struct job *j)
{
	struct fobj *f = index_find_file(e->ix, j->req.fid.id);
	struct node *n;

	if (f)
		return reply_fattr(j, f);
	n = index_find_id(e->ix, j->req.fid.id);
	return n ? reply_attr(j, n, index_dir_of(n)) : -ENOENT;
}

int
file_getattr(struct engine *e, struct job *j)
{
	int rc;

	pthread_rwlock_rdlock(&e->mu);
	rc = file_getattr_locked(e, j);
	pthread_rwlock_unlock(&e->mu);
	return rc;
}

/* One try of file_read: -EAGAIN when a roll back cut the message's
 * place before it was read. */
static int
read_once(struct engine *e, struct job *j)
{
	const struct mst_read_req *q = &j->req.read;
	struct fobj *f;
	struct node *n;
	struct seg *seg;
	uint64_t off, size, sum;
	unsigned view;
	int rc;

	pthread_rwlock_rdlock(&e->mu);
	view = body_view(e);
	f = index_find_file(e->ix, q->id);
	if (f)
		return file_reply_data(e, j, f, q->offset, q->length, 0);
	n = index_find_id(e->ix, q->id);
	if (n == NULL || n->type == MST_T_DIR) {
		pthread_rwlock_unlock(&e->mu);
		return n ? -EISDIR : -ENOENT;
	}
	seg = seg_get(e, n->seg);
	off = n->off;
	size = n->size;
	sum = n->checksum;
	pthread_rwlock_unlock(&e->mu);
	rc = body_wait(e, seg, off + size, view);
	if (rc == 0)
		rc = reply_body(e, view, j, seg, off, size, sum, q->offset,
		    q->length, 1);
	seg_put(seg);
	return rc;
}

/* READ: files by blocks; messages like FETCH but with the range's sum. */
int
file_read(struct engine *e, struct job *j)
{
	int rc, tries = 0;

	/* A roll back cut the body's place: where is it now? */
	while ((rc = read_once(e, j)) == -EAGAIN && ++tries < BODY_TRIES)
		;
	return rc == -EAGAIN ? -EIO : rc;
}
