/*
 * eng_ops.c - what each operation does to the local engine's index and
 * log. Mutations run on the writer thread (ops_mutate): validate against
 * the index, build a record, batch_add() it (log append + index apply),
 * fill the reply and notices. Reads run on reader threads (ops_read)
 * under the index rwlock, which they drop before touching a body.
 *
 * Invariant: the writer is the only thread that changes the index, so it
 * reads the index without locking and takes the write lock only inside
 * batch_add() to apply a record.
 *
 * Ordinary files (index.h has the layout) are written as 4 KiB blocks:
 * WRITE appends EXTENT records for just the blocks its range touches
 * (the partly covered first and last merged with their old bytes, read
 * from the batch being filled when a write in the same batch put them
 * there), so its cost is its length plus at most two blocks, never the
 * file's size. An operation that needs several records (WRITE, PUT)
 * asks batch_room() first and never stops half way. PUT is "create, or
 * cut to nothing, then write". READ verifies only the blocks it
 * returns. Times follow ext4, from the writer's clock in each record:
 * create sets all three (and the parent's mtime and ctime), data and
 * size changes mtime and ctime, attribute changes ctime; names coming
 * and going change the parents' mtime and ctime and the object's ctime.
 * Reads never change atime (as mounted noatime): a read stays a read,
 * with no log record; atime moves only by an explicit FSETATTR.
 *
 * OPEN references (|e->orefs|, by owner) are the writer's too: OPEN,
 * CLOSE and ENG_OP_CLOSE_OWNER run on the writer thread without a
 * record, and a file whose last name goes while it is open stays in the
 * index as an orphan until its last reference is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include <xxhash.h>

#include "eng.h"
#include "log.h"

#define PATHBUF (MST_PATH_MAX + 1)

int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
reply_buf(size_t cap, uint8_t **out)
{
	*out = malloc(cap);
	return *out ? 0 : -ENOMEM;
}

static int
reply_attr(struct job *j, const struct node *n, const struct node *dir)
{
	struct mst_attr_rep r = { .dir_change = dir->change,
		.dir_mtime_ns = (uint64_t)dir->mtime_ns };
	uint8_t *p;
	int len;

	index_attr(n, &r.attr);
	if (reply_buf(128, &p) < 0)
		return -ENOMEM;
	len = mst_attr_rep_encode(&r, p, 128);
	return job_add_frame(j, p, (size_t)len);
}

/* A file object's attributes with the dir fields of its first parent
 * (an orphan's own change and mtime). */
static int
reply_fattr(struct job *j, const struct fobj *f)
{
	const struct node *dir = f->names ? f->names->parent : NULL;
	struct mst_attr_rep r = {
		.dir_change = dir ? dir->change : f->change,
		.dir_mtime_ns = (uint64_t)(dir ? dir->mtime_ns : f->mtime_ns) };
	uint8_t *p;
	int len;

	index_fattr(f, &r.attr);
	if (reply_buf(128, &p) < 0)
		return -ENOMEM;
	len = mst_attr_rep_encode(&r, p, 128);
	return job_add_frame(j, p, (size_t)len);
}

static int
reply_change(struct job *j, const struct node *dir)
{
	struct mst_change_rep r = { dir->change, (uint64_t)dir->mtime_ns };
	uint8_t *p;
	int len;

	if (reply_buf(16, &p) < 0)
		return -ENOMEM;
	len = mst_change_rep_encode(&r, p, 16);
	return job_add_frame(j, p, (size_t)len);
}

static int
notice(struct job *j, const struct node *dir, const char *name, size_t nlen,
    uint8_t ev, uint64_t id, uint64_t change)
{
	char path[PATHBUF], nm[MST_NAME_MAX + 1];

	if (index_path(dir, path, sizeof path) < 0 || nlen > MST_NAME_MAX)
		return 0;	/* cannot be named on the wire: nobody watches */
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';
	return job_add_notice(j, path, nm, ev, id, change);
}

/* MST_EV_CHANGE for every name of |f| but |skip|. */
static int
notice_names(struct job *j, const struct fobj *f, const struct node *skip,
    uint64_t change)
{
	const struct node *n;
	int rc = 0;

	for (n = f->names; rc == 0 && n; n = n->link_next)
		if (n != skip)
			rc = notice(j, n->parent, n->name, n->namelen,
			    MST_EV_CHANGE, f->id, change);
	return rc;
}

/* The next object id, below the range the mount keeps for itself. */
static int
alloc_id(struct engine *e, uint64_t *id_out)
{
	if (e->ix->next_id >= INDEX_ID_LIMIT) {
		log_err("object ids exhausted: next id %llu reaches the "
		    "mount's local range (2^56)",
		    (unsigned long long)e->ix->next_id);
		return -ENOSPC;
	}
	*id_out = e->ix->next_id;
	return 0;
}

/*
 * Can the batch take |nrec| more records with |bytes| of bodies? An
 * operation that writes several records asks first, so that it never
 * stops half way: -EAGAIN (wait for the next batch), -EFBIG (not even an
 * empty batch could), -ENOSPC.
 */
static int
batch_room(struct engine *e, struct batch *b, int nrec, uint64_t bytes)
{
	(void)e;
	if (b->arena_cap - b->arena_used <
	    (size_t)nrec * (REC_HDR_LEN + REC_FIXED_MAX) ||
	    b->niov + 2 * nrec > b->cap ||
	    b->nscratch + nrec > b->scratch_cap)
		return b->nrec ? -EAGAIN : -EFBIG;
	if (b->pos - b->base + bytes > b->space)
		return -ENOSPC;
	return 0;
}

/* Resolve MAILBOX[/FOLDER]/new|cur. */
static int
mail_dir(const struct index *ix, struct mst_str mailbox, struct mst_str folder,
    uint8_t sub, struct node **out)
{
	char path[PATHBUF];
	int n;

	n = snprintf(path, sizeof path, "%.*s%s%.*s%s%s", (int)mailbox.len,
	    mailbox.p, mailbox.len ? "/" : "", (int)folder.len, folder.p,
	    folder.len ? "/" : "", sub == MST_SUB_NEW ? "new" : "cur");
	if (n < 0 || (size_t)n >= sizeof path)
		return -ENAMETOOLONG;
	return index_resolve(ix, (struct mst_str){ path, (uint16_t)n }, out);
}

/* Split PATH into its parent directory (resolved) and last name. */
static int
parent_of(const struct index *ix, struct mst_str path, struct node **dir_out,
    struct mst_str *name_out)
{
	struct mst_str dp = { path.p, 0 };
	size_t i;
	int rc;

	if (path.len == 0)
		return -EBUSY;		/* the root */
	for (i = path.len; i > 0 && path.p[i - 1] != '/'; i--)
		;
	dp.len = (uint16_t)(i ? i - 1 : 0);
	name_out->p = path.p + i;
	name_out->len = (uint16_t)(path.len - i);
	rc = index_resolve(ix, dp, dir_out);
	if (rc == 0 && (*dir_out)->type != MST_T_DIR)
		rc = -ENOTDIR;
	return rc;
}

int
batch_add(struct engine *e, struct batch *b, struct rec *r, const void *body)
{
	size_t size = rec_has_body(r) ? r->size : 0;
	uint8_t *p = b->arena + b->arena_used;
	int len, rc;

	if (b->arena_cap - b->arena_used < REC_HDR_LEN + REC_FIXED_MAX ||
	    b->niov + 2 > b->cap)
		return -EAGAIN;		/* batch full: caller retries later */
	if (size && b->pos - b->base + size > b->space)
		return -ENOSPC;
	r->lsn = e->lsn + 1;
	len = rec_encode(r, body, p, REC_HDR_LEN + REC_FIXED_MAX);
	if (len < 0)
		return len;
	if (!b->locked)
		pthread_rwlock_wrlock(&e->mu);
	rc = index_apply(e->ix, r, b->seg->no, b->pos + (uint64_t)len,
	    body);
	if (!b->locked)
		pthread_rwlock_unlock(&e->mu);
	if (rc < 0) {
		log_err("apply lsn %llu type %u: %s", (unsigned long long)r->lsn,
		    r->type, strerror(-rc));
		return rc == -EBADMSG ? -EIO : rc;
	}
	e->lsn = r->lsn;
	b->iov[b->niov++] = (struct iovec){ p, (size_t)len };
	if (size)
		b->iov[b->niov++] = (struct iovec){ (void *)body, size };
	b->arena_used += (size_t)len;
	b->pos += (uint64_t)len + size;
	b->nrec++;
	return 0;
}

static int
quota_ok(const struct index *ix, struct mst_str mailbox, uint64_t size)
{
	const struct mbox *m = index_mbox((struct index *)ix, mailbox, 0);

	if (m == NULL)
		return ix->quota_bytes == 0 || size <= ix->quota_bytes;
	if (m->quota_bytes && m->bytes + size > m->quota_bytes)
		return 0;
	if (m->quota_msgs && m->msgs + 1 > m->quota_msgs)
		return 0;
	return 1;
}

static int
do_deliver(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_deliver_req *d = &j->req.deliver;
	struct index *ix = e->ix;
	struct node *dir, *n = index_find_idem(ix, d->idem);
	struct rec r = { .type = REC_CREATE, .ntype = MST_T_MSG };
	int rc;

	if (n)				/* a retry: answer like the first */
		return reply_attr(j, n, n->parent);
	rc = mail_dir(ix, d->mailbox, d->folder, d->sub, &dir);
	if (rc < 0)
		return rc;
	if (index_lookup(ix, dir, d->name.p, d->name.len))
		return -EEXIST;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	if (!quota_ok(ix, d->mailbox, j->body_len))
		return -EDQUOT;
	rc = alloc_id(e, &r.id);
	if (rc < 0)
		return rc;
	r.parent = dir->id;
	r.mtime_ns = d->mtime_ns ? (int64_t)d->mtime_ns : now_ns();
	r.mode = d->mode;
	r.uid = d->uid;
	r.gid = d->gid;
	r.name = d->name;
	r.mailbox = d->mailbox;
	memcpy(r.idem, d->idem, MST_IDEM_LEN);
	r.checksum = d->checksum;
	r.size = j->body_len;
	rc = batch_add(e, b, &r, j->body);
	if (rc < 0)
		return rc;
	n = index_find_id(ix, r.id);
	rc = reply_attr(j, n, dir);
	return rc ? rc : notice(j, dir, n->name, n->namelen, MST_EV_ADD, n->id,
	    r.lsn);
}

/* RENAME the name |n| to |dir|/|name|, replacing |target| there. Shared
 * by SETINFO and RENAME once each has checked its own rules. */
static int
move_node(struct engine *e, struct batch *b, struct job *j, struct node *n,
    struct node *dir, struct mst_str name, struct node *target)
{
	struct rec r = { .type = REC_RENAME, .id = n->id,
		.from_parent = n->parent->id,
		.from_name = { n->name, n->namelen }, .parent = dir->id,
		.name = name, .replaced = target ? target->id : 0,
		.mtime_ns = now_ns() };
	struct node *from = n->parent;
	char old[MST_NAME_MAX + 1];
	size_t oldlen = n->namelen;
	uint64_t id = n->id;
	int rc;

	if (target && target->id == n->id)	/* two links of one file */
		return reply_attr(j, n, n->parent);
	memcpy(old, n->name, oldlen);
	r.from_name.p = old;
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, dir, name.p, name.len);	/* may have moved */
	rc = reply_attr(j, n, dir);
	if (rc == 0)
		rc = notice(j, from, old, oldlen, MST_EV_REMOVE, id, r.lsn);
	if (rc == 0)
		rc = notice(j, dir, n->name, n->namelen, MST_EV_ADD, id, r.lsn);
	return rc;
}

static int
do_setinfo(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_setinfo_req *s = &j->req.setinfo;
	struct node *fd, *td, *n, *t;
	int rc;

	rc = mail_dir(e->ix, s->mailbox, s->folder, s->from_sub, &fd);
	if (rc == 0)
		rc = mail_dir(e->ix, s->mailbox, s->folder, s->to_sub, &td);
	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, fd, s->from_name.p, s->from_name.len);
	if (n == NULL)
		return -ENOENT;
	if (n->type == MST_T_DIR)
		return -EISDIR;
	t = index_lookup(e->ix, td, s->to_name.p, s->to_name.len);
	if (t == n)
		return reply_attr(j, n, td);
	if (t && (s->flags & MST_RN_NOREPLACE))
		return -EEXIST;
	if (t && t->type == MST_T_DIR)
		return -EISDIR;
	return move_node(e, b, j, n, td, s->to_name, t);
}

/* UNLINK one name; a file with other names or OPEN references lives on. */
static int
remove_node(struct engine *e, struct batch *b, struct job *j, struct node *n)
{
	struct node *dir = n->parent;
	struct rec r = { .type = REC_UNLINK, .id = n->id, .parent = dir->id,
		.mtime_ns = now_ns() };
	char name[MST_NAME_MAX + 1];
	size_t len = n->namelen;
	uint64_t id = n->id;
	/* A file with other names survives: they see a new ctime. */
	struct fobj *f = n->type == MST_T_FILE && n->x.file->nlink > 1 ?
	    n->x.file : NULL;
	int rc;

	memcpy(name, n->name, len);
	r.name = (struct mst_str){ name, (uint16_t)len };
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	rc = reply_change(j, dir);
	if (rc == 0)
		rc = notice(j, dir, name, len, MST_EV_REMOVE, id, r.lsn);
	if (rc == 0 && f)
		rc = notice_names(j, f, NULL, r.lsn);
	return rc;
}

static int
do_expunge(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_msg_ref *m = &j->req.ref;
	struct node *dir, *n;
	int rc = mail_dir(e->ix, m->mailbox, m->folder, m->sub, &dir);

	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, dir, m->name.p, m->name.len);
	if (n == NULL)
		return -ENOENT;
	if (n->type == MST_T_DIR)
		return -EISDIR;
	return remove_node(e, b, j, n);
}

static int
do_mkdir(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_mkdir_req *m = &j->req.mkdir;
	struct rec r = { .type = REC_CREATE, .ntype = MST_T_DIR,
		.mode = m->mode, .uid = m->uid, .gid = m->gid,
		.mtime_ns = now_ns() };
	struct node *dir, *n;
	int rc = parent_of(e->ix, m->path, &dir, &r.name);

	if (rc < 0)
		return rc;
	if (index_lookup(e->ix, dir, r.name.p, r.name.len))
		return -EEXIST;
	rc = alloc_id(e, &r.id);
	if (rc < 0)
		return rc;
	r.parent = dir->id;
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_find_id(e->ix, r.id);
	rc = reply_attr(j, n, dir);
	return rc ? rc : notice(j, dir, n->name, n->namelen, MST_EV_ADD, n->id,
	    r.lsn);
}

static int
do_remove_path(struct engine *e, struct batch *b, struct job *j, int want_dir)
{
	struct node *n;
	int rc = index_resolve(e->ix, j->req.path.path, &n);

	if (rc < 0)
		return rc;
	if (n == e->ix->root)
		return -EBUSY;
	if (want_dir && n->type != MST_T_DIR)
		return -ENOTDIR;
	if (!want_dir && n->type == MST_T_DIR)
		return -EISDIR;
	if (want_dir && n->x.dir->nchildren)
		return -ENOTEMPTY;
	return remove_node(e, b, j, n);
}

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
	if (rc == 0 && mst_checksum(buf, k->len) != k->sum) {
		log_err("file %llu block %llu in segment %u at %llu: checksum "
		    "mismatch", (unsigned long long)f->id,
		    (unsigned long long)i, k->seg, (unsigned long long)k->off);
		rc = -EIO;
	}
	memset(buf + k->valid, 0, REC_BLOCK - k->valid);
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

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*
 * Write |len| bytes at |off| of |f| as EXTENT records: only the blocks
 * the range touches; the first and last are merged with their old bytes
 * when the range covers them in part. The caller checked batch_room for
 * ext_records() records. Returns the lsn of the last record in *lsn_out.
 */
static int
write_blocks(struct engine *e, struct batch *b, struct fobj *f, uint64_t off,
    const uint8_t *data, uint64_t len, int64_t now, uint64_t *lsn_out)
{
	static uint8_t head[REC_BLOCK], tail[REC_BLOCK];	/* writer only */
	uint64_t end = off + len, size = f->size > end ? f->size : end;
	uint64_t b0 = off / REC_BLOCK, b1 = (end - 1) / REC_BLOCK, k, first;
	uint64_t id = f->id;
	struct rec r = { .type = REC_EXTENT, .id = id, .mtime_ns = now };
	uint8_t *buf, *d;
	size_t blen, dlen;
	int rc;

	rc = block_load(e, b, f, b0, head);
	if (rc == 0 && b1 != b0)
		rc = block_load(e, b, f, b1, tail);
	if (rc < 0)
		return rc;
	if (b1 == b0)
		memcpy(tail, head, REC_BLOCK);
	for (first = b0; first <= b1; first += r.nblk) {
		r.first = first;
		r.nblk = (uint32_t)(b1 - first + 1 < REC_EXT_MAX ?
		    b1 - first + 1 : REC_EXT_MAX);
		/* Every block is whole but the file's last. */
		dlen = (size_t)((first + r.nblk - 1) * REC_BLOCK);
		dlen = (size_t)((size - dlen < REC_BLOCK ? size - dlen :
		    REC_BLOCK) + (r.nblk - 1) * (uint64_t)REC_BLOCK);
		blen = r.nblk * 8u + dlen;
		buf = malloc(blen);
		if (buf == NULL)
			return -ENOMEM;
		d = buf + r.nblk * 8u;
		if (first == b0)
			memcpy(d, head, dlen < REC_BLOCK ? dlen : REC_BLOCK);
		if (first + r.nblk - 1 == b1 && (b1 != b0 || first != b0))
			memcpy(d + (b1 - first) * REC_BLOCK, tail,
			    dlen - (b1 - first) * REC_BLOCK);
		/* The new bytes that fall in this record. */
		{
			uint64_t lo = first * REC_BLOCK, hi = lo + dlen;
			uint64_t a = off > lo ? off : lo;
			uint64_t z = end < hi ? end : hi;

			memcpy(d + (a - lo), data + (a - off), (size_t)(z - a));
		}
		for (k = 0; k < r.nblk; k++) {
			size_t bl = k + 1 < r.nblk ? REC_BLOCK :
			    dlen - k * REC_BLOCK;

			put_be64(buf + k * 8, mst_checksum(d + k * REC_BLOCK,
			    bl));
		}
		r.fsize = (first + r.nblk) * REC_BLOCK < size ?
		    (first + r.nblk) * REC_BLOCK : size;
		if (r.fsize < f->size)
			r.fsize = f->size;
		r.size = blen;
		r.checksum = mst_checksum(buf, blen);
		rc = batch_add(e, b, &r, buf);
		if (rc < 0) {
			free(buf);
			return rc;	/* batch_room said it fits: EIO */
		}
		b->scratch[b->nscratch++] = buf;	/* freed after write */
	}
	*lsn_out = r.lsn;
	return 0;
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

static int
do_write(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_write_req *w = &j->req.write;
	uint64_t off, len = j->body_len, lsn = 0;
	struct fobj *f;
	int rc = file_of(e->ix, w->id, &f);

	if (rc < 0)
		return rc;
	if (w->flags & ~MST_WR_ALL)
		return -EINVAL;
	off = (w->flags & MST_WR_APPEND) ? f->size : w->offset;
	if (off > e->conf.max_body || len > e->conf.max_body - off)
		return -EFBIG;
	if (len) {
		rc = batch_room(e, b, (int)ext_records(off, len),
		    len + 2 * REC_BLOCK + ext_records(off, len) *
		    REC_EXT_MAX * 8);
		if (rc == 0)
			rc = write_blocks(e, b, f, off, j->body, len, now_ns(),
			    &lsn);
		if (rc < 0)
			return rc;
	}
	rc = reply_fattr(j, f);
	return rc || len == 0 ? rc : notice_names(j, f, NULL, lsn);
}

/* One ATTR record; |valid| already checked against the node's type. */
static int
attr_record(struct engine *e, struct batch *b, uint64_t id, uint32_t valid,
    const struct mst_fsetattr_req *s, uint64_t *lsn_out)
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
static int
set_attrs(struct engine *e, struct batch *b, struct job *j, struct node *n,
    struct fobj *f, const struct mst_fsetattr_req *s)
{
	uint32_t valid = s->valid;
	uint64_t lsn = 0;
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
		rc = attr_record(e, b, f ? f->id : n->id, valid, s, &lsn);
		if (rc < 0)
			return rc;
	}
	if (f) {
		rc = reply_fattr(j, f);
		return rc || !valid ? rc : notice_names(j, f, NULL, lsn);
	}
	rc = reply_attr(j, n, n->parent ? n->parent : n);
	if (rc == 0 && valid && n->parent)
		rc = notice(j, n->parent, n->name, n->namelen, MST_EV_CHANGE,
		    n->id, lsn);
	return rc;
}

static int
do_setattr(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_setattr_req *s = &j->req.setattr;
	struct mst_fsetattr_req f = { .valid = s->valid & MST_SA_ALL,
		.mode = s->mode, .uid = s->uid, .gid = s->gid,
		.size = s->size, .mtime_ns = s->mtime_ns };
	struct node *n;
	int rc = index_resolve(e->ix, s->path, &n);

	if (rc < 0)
		return rc;
	if (s->valid & ~MST_SA_ALL)
		return -EINVAL;
	return set_attrs(e, b, j, n, n->type == MST_T_FILE ? n->x.file : NULL,
	    &f);
}

static int
do_fsetattr(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_fsetattr_req *s = &j->req.fsetattr;
	struct fobj *f = index_find_file(e->ix, s->id);
	struct node *n = f ? NULL : index_find_id(e->ix, s->id);

	if (f == NULL && n == NULL)
		return -ENOENT;
	return set_attrs(e, b, j, n, f, s);
}

/* PUT: create the file (or cut an existing one to nothing), then write
 * the body as blocks; all its records go in one batch. */
static int
do_put(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_put_req *p = &j->req.put;
	struct rec r = { .type = REC_CREATE, .ntype = MST_T_FILE,
		.mode = p->mode, .uid = p->uid, .gid = p->gid,
		.mtime_ns = now_ns() };
	struct mst_fsetattr_req a = { .valid = MST_SA_SIZE, .size = 0,
		.mtime_ns = p->mtime_ns };
	uint64_t len = j->body_len, lsn;
	struct node *dir, *n;
	struct fobj *f;
	int rc = parent_of(e->ix, p->path, &dir, &r.name), nrec;

	if (rc < 0)
		return rc;
	if (len > e->conf.max_body)
		return -EFBIG;
	n = index_lookup(e->ix, dir, r.name.p, r.name.len);
	if (n && (p->flags & MST_PUT_EXCL))
		return -EEXIST;
	if (n && n->type == MST_T_DIR)
		return -EISDIR;
	if (n && n->type == MST_T_MSG)
		return -EPERM;		/* message bodies are immutable */
	if (n == NULL) {
		rc = alloc_id(e, &r.id);
		if (rc < 0)
			return rc;
	}
	nrec = 1 + (int)ext_records(0, len) + (p->mtime_ns != 0);
	rc = batch_room(e, b, nrec, len + ext_records(0, len) * REC_EXT_MAX *
	    8);
	if (rc < 0)
		return rc;
	/* Readers see the old contents or the new, never the file cut to
	 * nothing in between: the records are applied under one hold of
	 * the lock (a PUT from offset 0 after the cut reads no old block,
	 * so nothing waits on the disk meanwhile). */
	pthread_rwlock_wrlock(&e->mu);
	b->locked = 1;
	if (n) {
		f = n->x.file;
		rc = attr_record(e, b, f->id, MST_SA_SIZE, &a, &lsn);
	} else {
		r.parent = dir->id;
		r.checksum = mst_checksum("", 0);	/* an empty body */
		rc = batch_add(e, b, &r, NULL);
		f = index_find_file(e->ix, r.id);
		lsn = r.lsn;
	}
	if (rc == 0 && len)
		rc = write_blocks(e, b, f, 0, j->body, len, r.mtime_ns, &lsn);
	if (rc == 0 && p->mtime_ns) {
		a.valid = MST_SA_MTIME;
		rc = attr_record(e, b, f->id, MST_SA_MTIME, &a, &lsn);
	}
	b->locked = 0;
	pthread_rwlock_unlock(&e->mu);
	if (rc < 0)
		return rc;
	rc = reply_attr(j, n ? n : f->names, dir);
	if (rc == 0 && n)
		rc = notice_names(j, f, NULL, lsn);
	if (rc == 0 && n == NULL)
		rc = notice(j, dir, f->names->name, f->names->namelen,
		    MST_EV_ADD, f->id, lsn);
	return rc;
}

static int
do_rename(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_rename_req *q = &j->req.rename;
	struct node *n, *dir, *t, *p;
	struct mst_str name;
	int rc = index_resolve(e->ix, q->from, &n);

	if (rc == 0)
		rc = parent_of(e->ix, q->to, &dir, &name);
	if (rc < 0)
		return rc;
	if (n == e->ix->root)
		return -EBUSY;
	t = index_lookup(e->ix, dir, name.p, name.len);
	if (t == n)
		return reply_attr(j, n, dir);
	if (t && (q->flags & MST_RN_NOREPLACE))
		return -EEXIST;
	if (n->type == MST_T_DIR) {
		for (p = dir; p; p = p->parent)
			if (p == n)
				return -EINVAL;
		if (t && t->type != MST_T_DIR)
			return -ENOTDIR;
		if (t && t->x.dir->nchildren)
			return -ENOTEMPTY;
	} else if (t && t->type == MST_T_DIR) {
		return -EISDIR;
	}
	return move_node(e, b, j, n, dir, name, t);
}

static int
do_link(struct engine *e, struct batch *b, struct job *j)
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
	return rc ? rc : notice(j, dir, n->name, n->namelen, MST_EV_ADD,
	    f->id, r.lsn);
}

int
ops_relocate_block(struct engine *e, struct batch *b, struct job *j)
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
	put_be64(buf, k->sum);
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

static int
do_open(struct engine *e, struct job *j)
{
	struct fobj *f = index_find_file(e->ix, j->req.fid.id);
	struct node *n;
	struct oref **pp;

	if (j->owner == 0)
		return -EINVAL;
	if (f == NULL) {	/* directories and messages: nothing to keep */
		n = index_find_id(e->ix, j->req.fid.id);
		return n ? reply_attr(j, n, n->parent ? n->parent : n) :
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

static int
do_close(struct engine *e, struct job *j)
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

static void
close_owner(struct engine *e, uint64_t owner)
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

void
ops_mutate(struct engine *e, struct batch *b, struct job *j)
{
	int rc;

	switch (j->op) {
	case MST_OP_WRITE:
		rc = do_write(e, b, j);
		break;
	case MST_OP_FSETATTR:
		rc = do_fsetattr(e, b, j);
		break;
	case MST_OP_LINK:
		rc = do_link(e, b, j);
		break;
	case MST_OP_OPEN:
		rc = do_open(e, j);
		break;
	case MST_OP_CLOSE:
		rc = do_close(e, j);
		break;
	case ENG_OP_CLOSE_OWNER:
		close_owner(e, j->owner);
		rc = 0;
		break;
	case MST_OP_DELIVER:
		rc = do_deliver(e, b, j);
		break;
	case MST_OP_SETINFO:
		rc = do_setinfo(e, b, j);
		break;
	case MST_OP_EXPUNGE:
		rc = do_expunge(e, b, j);
		break;
	case MST_OP_MKDIR:
		rc = do_mkdir(e, b, j);
		break;
	case MST_OP_RMDIR:
		rc = do_remove_path(e, b, j, 1);
		break;
	case MST_OP_UNLINK:
		rc = do_remove_path(e, b, j, 0);
		break;
	case MST_OP_PUT:
		rc = do_put(e, b, j);
		break;
	case MST_OP_RENAME:
		rc = do_rename(e, b, j);
		break;
	case MST_OP_SETATTR:
		rc = do_setattr(e, b, j);
		break;
	default:
		rc = -EOPNOTSUPP;
	}
	j->status = rc;
}

/* --- reads --- */

/* Builds LIST/READDIR reply frames of at most max_frame bytes. */
struct lister {
	struct job *j;
	uint8_t *p;
	size_t cap, used;
	uint32_t count;
	struct mst_list_rep head;
	int rc;
};

#define LIST_HEAD_LEN 21u

static void
lister_flush(struct lister *l, int last)
{
	int len;

	if (l->rc || (!last && l->count == 0))
		return;
	if (l->p == NULL && (l->p = malloc(LIST_HEAD_LEN)) == NULL) {
		l->rc = -ENOMEM;
		return;
	}
	l->head.count = l->count;
	l->head.entries = NULL;
	l->head.entries_len = 0;
	len = mst_list_rep_encode(&l->head, l->p, LIST_HEAD_LEN);
	if (len < 0) {
		l->rc = len;
		return;
	}
	l->rc = job_add_frame(l->j, l->p, l->used ? l->used : LIST_HEAD_LEN);
	l->p = NULL;
	l->used = 0;
	l->count = 0;
}

static void
lister_add(struct lister *l, const struct mst_list_entry *en)
{
	size_t need = mst_list_entry_size(en);

	if (l->rc)
		return;
	if (l->p && l->used + need > l->cap)
		lister_flush(l, 0);
	if (l->p == NULL) {
		l->p = malloc(l->cap);
		l->used = LIST_HEAD_LEN;
		if (l->p == NULL) {
			l->rc = -ENOMEM;
			return;
		}
	}
	l->used += (size_t)mst_list_entry_encode(en, l->p + l->used,
	    l->cap - l->used);
	l->count++;
}

static int
list_dir(struct job *j, const struct node *dir, uint64_t since)
{
	struct lister l = { .j = j, .cap = j->max_frame };
	struct mst_list_entry en;
	const struct node *c;
	const struct tomb *t;
	unsigned i;

	if (dir->type != MST_T_DIR)
		return -ENOTDIR;
	if (since < dir->x.dir->tomb_floor)
		since = 0;
	l.head.change = dir->change;
	l.head.dir_mtime_ns = (uint64_t)dir->mtime_ns;
	l.head.flags = since == 0 ? MST_LIST_FULL : 0;
	for (c = dir->x.dir->first; c; c = c->sib_next) {
		if (index_change(c) <= since)
			continue;
		en.kind = MST_LE_PRESENT;
		en.name = (struct mst_str){ c->name, c->namelen };
		index_attr(c, &en.attr);
		lister_add(&l, &en);
	}
	for (i = 0; since && dir->x.dir->tombs && i < INDEX_TOMBS; i++) {
		t = &dir->x.dir->tombs[i];
		if (t->name == NULL || t->change <= since)
			continue;
		memset(&en, 0, sizeof en);
		en.kind = MST_LE_REMOVED;
		en.name = mst_str_of(t->name);
		en.attr.type = t->type;
		en.attr.id = t->id;
		en.attr.change = t->change;
		lister_add(&l, &en);
	}
	lister_flush(&l, 1);
	free(l.p);
	return l.rc;
}

/* Read a body range for FETCH/GET; the index lock is not held. */
static int
reply_body(struct job *j, struct seg *seg, uint64_t off, uint64_t size,
    uint64_t checksum, uint64_t from, uint32_t want, int range_sum)
{
	struct mst_data_rep r = { .total_size = size, .checksum = checksum };
	size_t room = j->max_frame - 16, n = 0;
	uint8_t *p;
	int rc;

	if (from < size)
		n = size - from < want ? (size_t)(size - from) : want;
	if (n > room)
		n = room;
	if (from == 0) {
		rc = body_verify(seg, off, size, checksum);
		if (rc == -EIO)
			log_err("body at %s offset %llu: checksum mismatch: "
			    "refusing to serve it", seg ? seg->path : "?",
			    (unsigned long long)off);
		if (rc < 0)
			return rc;
	}
	p = malloc(16 + n);
	if (p == NULL)
		return -ENOMEM;
	rc = body_read(seg, off, from, p + 16, n);
	if (rc < 0) {
		free(p);
		return rc;
	}
	/* The data already sits after the fixed fields: encode those. */
	if (range_sum)
		r.checksum = mst_checksum(p + 16, n);
	mst_data_rep_encode(&r, p, 16);
	return job_add_frame(j, p, 16 + n);
}

/* --- file reads (reader threads) --- */

/* A snapshot of the blocks a read needs, taken under the rwlock, with
 * their segments pinned so that the read needs no lock. */
struct rblk {
	struct seg *s;		/* NULL: a hole */
	uint64_t off, sum;
	uint16_t len, valid;
};

struct rplan {
	uint64_t id, size;
	uint64_t b0, nb;	/* blocks b0 .. b0 + nb - 1 */
	struct rblk *blk;
};

static int
plan_file(struct engine *e, const struct fobj *f, uint64_t from, uint64_t n,
    struct rplan *p)
{
	uint64_t k;
	const struct fblk *b;

	p->id = f->id;
	p->size = f->size;
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
		p->blk[k].off = b->off;
		p->blk[k].sum = b->sum;
		p->blk[k].len = b->len;
		p->blk[k].valid = b->valid;
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
	const struct rblk *b = &p->blk[k];
	int rc;

	memset(buf, 0, REC_BLOCK);
	if (b->len == 0)
		return 0;
	rc = body_wait(e, b->s, b->off + b->len);
	if (rc == 0)
		rc = body_read(b->s, b->off, 0, buf, b->len);
	if (rc == 0 && mst_checksum(buf, b->len) != b->sum) {
		log_err("file %llu block %llu at %s offset %llu: checksum "
		    "mismatch: refusing to serve it", (unsigned long long)p->id,
		    (unsigned long long)(p->b0 + k), b->s ? b->s->path : "?",
		    (unsigned long long)b->off);
		rc = -EIO;
	}
	memset(buf + b->valid, 0, REC_BLOCK - b->valid);
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
static int
read_file(struct engine *e, struct job *j, const struct fobj *f,
    uint64_t from, uint64_t want, int whole)
{
	struct rplan p;
	size_t n = reply_len(j, f->size, from, want);
	int rc;

	rc = whole ? plan_file(e, f, 0, f->size, &p) :
	    plan_file(e, f, from, n, &p);
	pthread_rwlock_unlock(&e->mu);
	if (rc < 0)
		return rc;
	rc = reply_file(e, j, &p, from, n, whole);
	plan_free(&p);
	return rc;
}

static int
do_getattr(struct engine *e, struct job *j)
{
	struct fobj *f;
	struct node *n;
	int rc;

	pthread_rwlock_rdlock(&e->mu);
	f = index_find_file(e->ix, j->req.fid.id);
	n = f ? NULL : index_find_id(e->ix, j->req.fid.id);
	if (f)
		rc = reply_fattr(j, f);
	else if (n)
		rc = reply_attr(j, n, n->parent ? n->parent : n);
	else
		rc = -ENOENT;
	pthread_rwlock_unlock(&e->mu);
	return rc;
}

/* READ: files by blocks; messages like FETCH but with the range's sum. */
static int
do_read(struct engine *e, struct job *j)
{
	const struct mst_read_req *q = &j->req.read;
	struct fobj *f;
	struct node *n;
	struct seg *seg;
	uint64_t off, size, sum;
	int rc;

	pthread_rwlock_rdlock(&e->mu);
	f = index_find_file(e->ix, q->id);
	if (f)
		return read_file(e, j, f, q->offset, q->length, 0);
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
	rc = body_wait(e, seg, off + size);
	if (rc == 0)
		rc = reply_body(j, seg, off, size, sum, q->offset, q->length,
		    1);
	seg_put(seg);
	return rc;
}

static int
read_locked(struct engine *e, struct job *j, struct node **body_out,
    struct fobj **file_out)
{
	struct index *ix = e->ix;
	struct node *n, *dir;
	int rc;

	*body_out = NULL;
	*file_out = NULL;
	switch (j->op) {
	case MST_OP_LIST:
		rc = mail_dir(ix, j->req.list.mailbox, j->req.list.folder,
		    j->req.list.sub, &dir);
		return rc ? rc : list_dir(j, dir, j->req.list.since);
	case MST_OP_READDIR:
		rc = index_resolve(ix, j->req.path.path, &dir);
		return rc ? rc : list_dir(j, dir, 0);
	case MST_OP_STAT:
		rc = mail_dir(ix, j->req.ref.mailbox, j->req.ref.folder,
		    j->req.ref.sub, &dir);
		if (rc < 0)
			return rc;
		n = index_lookup(ix, dir, j->req.ref.name.p,
		    j->req.ref.name.len);
		return n ? reply_attr(j, n, dir) : -ENOENT;
	case MST_OP_LOOKUP:
		rc = index_resolve(ix, j->req.path.path, &n);
		return rc ? rc : reply_attr(j, n, n->parent ? n->parent : n);
	case MST_OP_FETCH:
		*file_out = index_find_file(ix, j->req.fetch.id);
		if (*file_out)
			return 0;
		n = index_find_id(ix, j->req.fetch.id);
		if (n == NULL)
			return -ENOENT;
		*body_out = n;
		return n->type == MST_T_DIR ? -EISDIR : 0;
	case MST_OP_GET:
		rc = index_resolve(ix, j->req.get.path, &n);
		if (rc == 0 && n->type == MST_T_DIR)
			rc = -EISDIR;
		if (rc == 0 && n->type == MST_T_FILE)
			*file_out = n->x.file;
		else
			*body_out = rc ? NULL : n;
		return rc;
	case MST_OP_WATCH:
		rc = index_resolve(ix, j->req.path.path, &n);
		if (rc == 0 && n->type != MST_T_DIR)
			rc = -ENOTDIR;
		if (rc == 0) {
			struct mst_watch_rep w = { n->change };
			uint8_t *p = malloc(8);

			if (p == NULL)
				return -ENOMEM;
			mst_watch_rep_encode(&w, p, 8);
			rc = job_add_frame(j, p, 8);
		}
		return rc;
	}
	return -EOPNOTSUPP;
}

static int
do_statfs(struct engine *e, struct job *j)
{
	struct mst_statfs_rep r = { .max_body = e->conf.max_body,
		.name_max = MST_NAME_MAX };
	struct statvfs sv;
	struct mbox *m;
	uint8_t *p;
	uint64_t freeb;

	if (statvfs(e->dir, &sv) < 0)
		return -errno;
	freeb = (uint64_t)sv.f_bavail * sv.f_frsize;
	r.bytes_total = (uint64_t)sv.f_blocks * sv.f_frsize;
	r.bytes_free = freeb > e->conf.reserve_bytes ?
	    freeb - e->conf.reserve_bytes : 0;
	pthread_rwlock_rdlock(&e->mu);
	r.files_total = e->ix->nodes + r.bytes_free / 4096;
	r.files_free = r.bytes_free / 4096;
	m = index_mbox(e->ix, j->req.path.path, 0);
	if (m) {
		r.quota_bytes = m->quota_bytes;
		r.used_bytes = m->bytes;
		r.quota_msgs = m->quota_msgs;
		r.used_msgs = m->msgs;
	}
	pthread_rwlock_unlock(&e->mu);
	p = malloc(128);
	if (p == NULL)
		return -ENOMEM;
	return job_add_frame(j, p, (size_t)mst_statfs_rep_encode(&r, p, 128));
}

void
ops_read(struct engine *e, struct job *j)
{
	struct node *n;
	struct fobj *f;
	struct seg *seg = NULL;
	uint64_t off = 0, size = 0, sum = 0, from;
	uint32_t want;
	int rc;

	if (j->op == MST_OP_STATFS) {
		j->status = do_statfs(e, j);
		return;
	}
	if (j->op == MST_OP_GETATTR) {
		j->status = do_getattr(e, j);
		return;
	}
	if (j->op == MST_OP_READ) {
		j->status = do_read(e, j);
		return;
	}
	if (j->op == MST_OP_ADMIN) {
		admin_run(e, j);
		return;
	}
	pthread_rwlock_rdlock(&e->mu);
	rc = read_locked(e, j, &n, &f);
	if (rc == 0 && f) {
		from = j->op == MST_OP_FETCH ? j->req.fetch.offset :
		    j->req.get.offset;
		want = j->op == MST_OP_FETCH ? j->req.fetch.length :
		    j->req.get.length;
		j->status = read_file(e, j, f, from, want, 1);
		return;
	}
	if (rc == 0 && n) {
		seg = seg_get(e, n->seg);	/* pinned past the unlock */
		off = n->off;
		size = n->size;
		sum = n->checksum;
	}
	pthread_rwlock_unlock(&e->mu);
	if (rc == 0 && n) {
		from = j->op == MST_OP_FETCH ? j->req.fetch.offset :
		    j->req.get.offset;
		want = j->op == MST_OP_FETCH ? j->req.fetch.length :
		    j->req.get.length;
		rc = body_wait(e, seg, off + size);
		if (rc == 0)
			rc = reply_body(j, seg, off, size, sum, from, want,
			    0);
		seg_put(seg);
	}
	j->status = rc;
}
