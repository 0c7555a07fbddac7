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
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

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

static void
attr_of(const struct node *n, struct mst_attr *a)
{
	a->type = n->type;
	a->id = n->id;
	a->size = n->type == MST_T_DIR ? 4096 : n->size;
	a->mode = n->mode;
	a->uid = n->uid;
	a->gid = n->gid;
	a->nlink = n->type == MST_T_DIR ? 2 : 1;
	a->mtime_ns = (uint64_t)n->mtime_ns;
	a->ctime_ns = (uint64_t)n->ctime_ns;
	a->change = n->change;
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

	attr_of(n, &r.attr);
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
	pthread_rwlock_wrlock(&e->mu);
	rc = index_apply(e->ix, r, b->seg->no, b->pos + (uint64_t)len);
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
	r.id = ix->next_id;
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

/* MOVE |n| to |dir|/|name|, replacing what is there. Shared by SETINFO
 * and RENAME once each has checked its own rules. */
static int
move_node(struct engine *e, struct batch *b, struct job *j, struct node *n,
    struct node *dir, struct mst_str name, struct node *target)
{
	struct rec r = { .type = REC_MOVE, .id = n->id, .parent = dir->id,
		.name = name, .replaced = target ? target->id : 0,
		.mtime_ns = now_ns() };
	struct node *from = n->parent;
	char old[MST_NAME_MAX + 1];
	size_t oldlen = n->namelen;
	int rc;

	memcpy(old, n->name, oldlen);
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_find_id(e->ix, r.id);	/* a longer name moved it */
	rc = reply_attr(j, n, dir);
	if (rc == 0)
		rc = notice(j, from, old, oldlen, MST_EV_REMOVE, n->id, r.lsn);
	if (rc == 0)
		rc = notice(j, dir, n->name, n->namelen, MST_EV_ADD, n->id,
		    r.lsn);
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

static int
remove_node(struct engine *e, struct batch *b, struct job *j, struct node *n)
{
	struct rec r = { .type = REC_REMOVE, .id = n->id,
		.mtime_ns = now_ns() };
	struct node *dir = n->parent;
	char name[MST_NAME_MAX + 1];
	size_t len = n->namelen;
	uint64_t id = n->id;
	int rc;

	memcpy(name, n->name, len);
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	rc = reply_change(j, dir);
	return rc ? rc : notice(j, dir, name, len, MST_EV_REMOVE, id, r.lsn);
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
	r.id = e->ix->next_id;
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

static int
do_put(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_put_req *p = &j->req.put;
	struct rec r = { .type = REC_CREATE, .ntype = MST_T_FILE,
		.mode = p->mode, .uid = p->uid, .gid = p->gid,
		.checksum = p->checksum, .size = j->body_len,
		.mtime_ns = p->mtime_ns ? (int64_t)p->mtime_ns : now_ns() };
	struct node *dir, *n;
	int rc = parent_of(e->ix, p->path, &dir, &r.name);

	if (rc < 0)
		return rc;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	n = index_lookup(e->ix, dir, r.name.p, r.name.len);
	if (n && (p->flags & MST_PUT_EXCL))
		return -EEXIST;
	if (n && n->type == MST_T_DIR)
		return -EISDIR;
	if (n && n->type == MST_T_MSG)
		return -EPERM;		/* message bodies are immutable */
	if (n) {
		r.type = REC_DATA;
		r.id = n->id;
	} else {
		r.id = e->ix->next_id;
		r.parent = dir->id;
	}
	rc = batch_add(e, b, &r, j->body);
	if (rc < 0)
		return rc;
	n = index_find_id(e->ix, r.id);
	rc = reply_attr(j, n, dir);
	return rc ? rc : notice(j, dir, n->name, n->namelen,
	    r.type == REC_CREATE ? MST_EV_ADD : MST_EV_CHANGE, n->id, r.lsn);
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

/* Truncate or extend a small file: its new contents as a DATA record. */
static int
resize_file(struct engine *e, struct batch *b, struct node *n, uint64_t size)
{
	struct rec r = { .type = REC_DATA, .id = n->id, .size = size,
		.mtime_ns = now_ns() };
	struct seg *seg;
	uint8_t *buf;
	int rc;

	if (size > e->conf.max_body)
		return -EFBIG;
	if (b->nscratch == b->scratch_cap)
		return -EAGAIN;
	buf = calloc(1, size ? size : 1);
	if (buf == NULL)
		return -ENOMEM;
	/* Writer thread: the segment table cannot change under us. */
	seg = seg_get(e, n->seg);
	rc = body_read(seg, n->off, 0, buf, n->size < size ? n->size : size);
	seg_put(seg);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	r.checksum = mst_checksum(buf, size);
	rc = batch_add(e, b, &r, buf);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	b->scratch[b->nscratch++] = buf;	/* freed after the write */
	return 0;
}

static int
do_setattr(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_setattr_req *s = &j->req.setattr;
	struct rec r = { .type = REC_SETATTR, .valid = s->valid & ~MST_SA_SIZE,
		.mode = s->mode, .uid = s->uid, .gid = s->gid,
		.mtime_ns = (int64_t)s->mtime_ns };
	struct node *n;
	int rc = index_resolve(e->ix, s->path, &n);

	if (rc < 0)
		return rc;
	if ((s->valid & MST_SA_SIZE) && s->size != n->size) {
		if (n->type == MST_T_DIR)
			return -EISDIR;
		if (n->type == MST_T_MSG)
			return -EPERM;	/* message bodies are immutable */
		rc = resize_file(e, b, n, s->size);
		if (rc < 0)
			return rc;
	}
	if (r.valid) {
		r.id = n->id;
		rc = batch_add(e, b, &r, NULL);
		if (rc < 0)
			return rc;
	}
	rc = reply_attr(j, n, n->parent ? n->parent : n);
	if (rc == 0 && n->parent)
		rc = notice(j, n->parent, n->name, n->namelen, MST_EV_CHANGE,
		    n->id, n->change);
	return rc;
}

void
ops_mutate(struct engine *e, struct batch *b, struct job *j)
{
	int rc;

	switch (j->op) {
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
		if (c->change <= since)
			continue;
		en.kind = MST_LE_PRESENT;
		en.name = (struct mst_str){ c->name, c->namelen };
		attr_of(c, &en.attr);
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
    uint64_t checksum, uint64_t from, uint32_t want)
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
	mst_data_rep_encode(&r, p, 16);
	return job_add_frame(j, p, 16 + n);
}

static int
read_locked(struct engine *e, struct job *j, struct node **body_out)
{
	struct index *ix = e->ix;
	struct node *n, *dir;
	int rc;

	*body_out = NULL;
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
		n = index_find_id(ix, j->req.fetch.id);
		if (n == NULL)
			return -ENOENT;
		*body_out = n;
		return n->type == MST_T_DIR ? -EISDIR : 0;
	case MST_OP_GET:
		rc = index_resolve(ix, j->req.get.path, &n);
		if (rc == 0 && n->type == MST_T_DIR)
			rc = -EISDIR;
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
	struct seg *seg = NULL;
	uint64_t off = 0, size = 0, sum = 0, from;
	uint32_t want;
	int rc;

	if (j->op == MST_OP_STATFS) {
		j->status = do_statfs(e, j);
		return;
	}
	if (j->op == MST_OP_ADMIN) {
		admin_run(e, j);
		return;
	}
	pthread_rwlock_rdlock(&e->mu);
	rc = read_locked(e, j, &n);
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
			rc = reply_body(j, seg, off, size, sum, from, want);
		seg_put(seg);
	}
	j->status = rc;
}
