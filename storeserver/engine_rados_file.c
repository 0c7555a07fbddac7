/*
 * engine_rados_file.c - small ordinary files of the rados back-end
 * (dovecot-uidlist, subscriptions, lock files): PUT, GET, UNLINK, WRITE,
 * READ, SETATTR/FSETATTR, and their attributes for LOOKUP, listings and
 * GETATTR. A file is the
 * object f.<id>: its data is the file, omap a its attributes. Never a
 * check-then-write across two ops: the name is taken by the parent
 * store's guarded write (absent name), contents are replaced by one
 * write_full guarded by the attributes read (omap_cmp a), so readers see
 * the old contents or the new, never a mix.
 *
 * A file may have several names (LINK) and outlive them while open
 * (engine_rados_link.c); a PUT over a file is a CHANGE record in the
 * parent's log (the local engine's PRESENT in deltas), written after
 * the content, and so is every change of a file by id (WRITE,
 * FSETATTR), for each of its names (omap n.<path> of f.<id>).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rados.h"
#include "log.h"
#include "reply.h"

#define PATHBUF (MST_PATH_MAX + 1)

#define FA_LEN RE_FA_LEN

void
re_fa_encode(const struct fattr *a, uint8_t out[FA_LEN])
{
	out[0] = 'F';
	er_put64(out + 1, a->size);
	er_put32(out + 9, a->mode);
	er_put32(out + 13, a->uid);
	er_put32(out + 17, a->gid);
	er_put32(out + 21, a->nlink);
	er_put64(out + 25, a->mtime);
	er_put64(out + 33, a->ctime);
	er_put64(out + 41, a->atime);
	er_put64(out + 49, a->ver);
	er_put64(out + 57, a->parent);
}

static int
fa_decode(const struct kv *v, struct fattr *a)
{
	const uint8_t *p = (const uint8_t *)v->v;

	if (v->vlen != FA_LEN || p[0] != 'F')
		return -EIO;
	a->size = er_get64(p + 1);
	a->mode = er_get32(p + 9);
	a->uid = er_get32(p + 13);
	a->gid = er_get32(p + 17);
	a->nlink = er_get32(p + 21);
	a->mtime = er_get64(p + 25);
	a->ctime = er_get64(p + 33);
	a->atime = er_get64(p + 41);
	a->ver = er_get64(p + 49);
	a->parent = er_get64(p + 57);
	return 0;
}

int
re_fa_read(struct rados_engine *e, uint64_t id, struct fattr *a,
    uint8_t raw[FA_LEN], uint64_t *on_out)
{
	const char *keys[] = { "a", "on", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	char oid[RE_OID_MAX];
	int rc;

	re_oid(oid, 'f', id);
	rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	if (rc == 0) {
		v = kvset_get(&vals, "a");
		rc = v == NULL ? -ENOENT : fa_decode(v, a);
		if (rc == 0 && raw)
			memcpy(raw, v->v, FA_LEN);
		v = kvset_get(&vals, "on");
		if (on_out)
			*on_out = 0;
		if (rc == 0 && v && on_out)
			rc = re_unhex(v->v, v->vlen, on_out);
	}
	kvset_free(&vals);
	return rc;
}

static void
fa_attr(uint64_t id, const struct fattr *f, struct mst_attr *a)
{
	memset(a, 0, sizeof *a);
	a->type = MST_T_FILE;
	a->id = id;
	a->size = f->size;
	a->mode = f->mode;
	a->uid = f->uid;
	a->gid = f->gid;
	a->nlink = f->nlink;
	a->mtime_ns = f->mtime;
	a->ctime_ns = f->ctime;
	a->atime_ns = f->atime;
	a->change = f->ver;
}

int
re_file_attr(struct rados_engine *e, uint64_t id, struct mst_attr *a,
    struct mst_attr_rep *rep)
{
	struct mst_attr pa;
	struct fattr f;
	int rc = re_fa_read(e, id, &f, NULL, NULL);

	if (rc < 0)
		return rc;
	fa_attr(id, &f, a);
	if (rep && f.nlink && re_dir_attr(e, f.parent, &pa, NULL) == 0) {
		rep->dir_change = pa.change;
		rep->dir_mtime_ns = pa.mtime_ns;
	}
	return 0;
}

int
re_file_get(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length)
{
	const char *keys[] = { "a", NULL };
	size_t room = j->max_frame - 16, n = 0, got = 0;
	struct kvset vals = { 0 };
	rados_omap_iter_t it = NULL;
	rados_read_op_t op;
	const struct kv *v;
	struct fattr f;
	char oid[RE_OID_MAX];
	uint8_t *buf, *p;
	int rc, r1 = 0, r2 = 0, tries;

	re_oid(oid, 'f', id);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_fa_read(e, id, &f, NULL, NULL);
		if (rc < 0)
			return rc;
		/* One op reads the data and the size it was written with:
		 * a PUT in between shows as a size that does not match. */
		if ((buf = malloc(f.size + 1)) == NULL)
			return -ENOMEM;
		if ((op = rados_create_read_op()) == NULL) {
			free(buf);
			return -ENOMEM;
		}
		rados_read_op_read(op, 0, f.size + 1, (char *)buf, &got, &r1);
		rados_read_op_omap_get_vals_by_keys(op, keys, 1, &it, &r2);
		rc = rados_read_op_operate(op, e->io, oid, 0);
		if (rc == 0)
			rc = r1 < 0 ? r1 : r2;
		kvset_free(&vals);
		if (rc == 0 && it)
			rc = kvset_fill_iter(&vals, it);
		if (it)
			rados_omap_get_end(it);
		it = NULL;
		rados_release_read_op(op);
		if (rc == 0) {
			v = kvset_get(&vals, "a");
			rc = v == NULL ? -ENOENT : fa_decode(v, &f);
		}
		if (rc == 0 && got == f.size)
			break;
		free(buf);
		if (rc < 0) {
			kvset_free(&vals);
			return rc == -ENOENT ? rc : re_err("get", oid, rc);
		}
	}
	kvset_free(&vals);
	if (tries == RE_RETRIES)
		return re_err("get (changing under the read)", oid, -EAGAIN);
	if (offset < f.size)
		n = f.size - offset < length ? (size_t)(f.size - offset) :
		    length;
	if (n > room)
		n = room;
	if ((p = malloc(16 + n)) == NULL) {
		free(buf);
		return -ENOMEM;
	}
	if (n)
		memcpy(p + 16, buf + offset, n);
	rc = reply_data_frame(j, p, n, f.size, mst_checksum(buf, f.size), 0);
	free(buf);
	return rc;
}

/*
 * A CHANGE record for |name| in store |s| while it names file |id|: ONE
 * write guarded by the entry and the counter. 0 (*st the store after),
 * -ENOENT when the name is gone or names another object, or an error.
 */
static int
change_record(struct rados_engine *e, const struct rstore *s,
    const char *name, size_t nlen, uint64_t id, uint64_t size,
    struct rstate *st)
{
	char ke[RE_KEY_MAX];
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rentry en;
	rados_write_op_t op;
	int rc, tries;

	re_key(ke, s, "e.", name, nlen);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, s, ke, NULL, NULL, &vals, st);
		if (rc < 0)
			break;
		if (!st->live || (v = kvset_get(&vals, ke)) == NULL ||
		    ren_decode(v->v, v->vlen, &en) < 0 || en.id != id) {
			rc = -ENOENT;
			break;
		}
		if ((op = rados_create_write_op()) == NULL) {
			rc = -ENOMEM;
			break;
		}
		re_guard_live(op, s);
		re_cmp(op, ke, v->v, v->vlen);
		re_bump(op, s, st->c, st->c + 1, -1);	/* the dir's mtime stays */
		en.size = size;
		en.moving = 0;
		re_log(op, s, st->c + 1, MST_EV_CHANGE, &en, name, nlen);
		rc = re_write(e, s->oid, op);
		if (rc == 0)
			st->c++;
		if (rc != -ECANCELED)
			break;
	}
	kvset_free(&vals);
	if (rc < 0 && rc != -ENOENT && rc != -ENOMEM)
		rc = re_err("log a change in", s->oid, rc);
	return rc;
}

void
re_file_changed(struct rados_engine *e, struct job *j, uint64_t id,
    const char *except, size_t elen)
{
	const char *keys[] = { "a", NULL };
	char oid[RE_OID_MAX];
	struct kvset page = { 0 }, vals = { 0 };
	const struct kv *v;
	struct fattr f;
	struct rstate st;
	struct rstore s;
	struct rres r;
	const char *path, *name;
	size_t i, plen, dl;
	int more = 0, rc;

	/* Its attributes and names in one read. */
	re_oid(oid, 'f', id);
	rc = re_read(e, oid, keys, &vals, "n.", "n.", 64, &page, &more);
	if (rc == 0)
		rc = (v = kvset_get(&vals, "a")) == NULL ? -ENOENT :
		    fa_decode(v, &f);
	kvset_free(&vals);
	if (rc < 0) {
		kvset_free(&page);
		return;
	}
	for (i = 0; i < page.n; i++) {
		path = page.a[i].k + 2;
		plen = page.a[i].klen - 2;
		if (except && plen == elen && memcmp(path, except, elen) == 0)
			continue;
		dl = re_dir_len(path, plen);
		name = path + (dl ? dl + 1 : 0);
		rc = re_resolve(e, path, dl, &r);
		if (rc == 0)
			rc = re_dir_store(&r, &s);
		if (rc == 0)
			rc = re_shard(e, &s, name, plen - (size_t)(name -
			    path));
		if (rc == 0)
			rc = change_record(e, &s, name, plen - (size_t)(name -
			    path), id, f.size, &st);
		if (rc == 0)
			(void)re_notice(j, path, dl, name, plen -
			    (size_t)(name - path), MST_EV_CHANGE, id, st.c);
	}
	kvset_free(&page);
}

/* An update's request and the attributes it wrote. */
struct fedit {
	const struct job *j;
	const struct mst_fsetattr_req *sa;	/* SETATTR and FSETATTR */
	uint64_t max;		/* e->conf.max_body */
	struct fattr out;
};

static int
edit_replace(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	struct fedit *x = arg;
	const struct job *j = x->j;
	uint8_t val[FA_LEN];
	int64_t now = re_now();

	(void)e, (void)id, (void)on;
	f->size = j->body_len;
	f->mtime = j->req.put.mtime_ns ? j->req.put.mtime_ns : (uint64_t)now;
	f->ctime = (uint64_t)now;
	f->ver++;
	re_fa_encode(f, val);
	rados_write_op_write_full(op, j->body_len ? (const char *)j->body :
	    "", j->body_len);
	re_set(op, "a", val, FA_LEN);
	x->out = *f;
	return 0;
}

/* Replace the contents of file |id| (named |name| in |s|): one guarded
 * write_full, then a CHANGE record in each of its names' directories. */
static int
file_replace(struct rados_engine *e, struct job *j, const struct rstore *s,
    uint64_t id, const char *name, size_t nlen, struct mst_attr_rep *rep)
{
	const struct mst_put_req *q = &j->req.put;
	struct rstate st = { 0 };
	struct fedit x = { .j = j };
	int rc = re_fa_update(e, id, edit_replace, &x, "put");

	if (rc < 0)
		return rc;
	fa_attr(id, &x.out, &rep->attr);
	/* The CHANGE records: best effort, the contents are in already. */
	(void)change_record(e, s, name, nlen, id, x.out.size, &st);
	re_file_changed(e, j, id, q->path.p, q->path.len);
	rep->dir_change = st.c;
	rep->dir_mtime_ns = st.t;
	return 0;
}

int
re_op_put(struct rados_engine *e, struct job *j)
{
	const struct mst_put_req *q = &j->req.put;
	struct mst_attr_rep rep = { 0 };
	struct rentry en = { .type = MST_T_FILE }, old;
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rstate st;
	struct rstore s;
	struct rres dir;
	struct fattr f = { 0 };
	uint8_t val[FA_LEN];
	char oid[RE_OID_MAX], ke[RE_KEY_MAX], kn[RE_NKEY_MAX];
	const char *name;
	size_t nlen;
	rados_write_op_t op;
	int64_t now = re_now();
	int rc, tries;

	rc = re_parent_of(e, q->path, &dir, &s, &name, &nlen);
	if (rc < 0)
		return rc;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	re_key(ke, &s, "e.", name, nlen);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, &s, ke, NULL, NULL, &vals, &st);
		if (rc == 0 && !st.live) {
			rc = re_not_live(e, &s, &st);
			if (rc == 0)
				continue;
		}
		if (rc < 0)
			break;
		v = kvset_get(&vals, ke);
		if (v && ren_decode(v->v, v->vlen, &old) < 0) {
			rc = -EIO;
			break;
		}
		if (v && (q->flags & MST_PUT_EXCL))
			rc = -EEXIST;
		else if (v && old.type == MST_T_DIR)
			rc = -EISDIR;
		else if (v && old.type == MST_T_MSG)
			rc = -EPERM;	/* message bodies are immutable */
		else if (v)
			rc = file_replace(e, j, &s, old.id, name, nlen, &rep);
		if (v) {
			kvset_free(&vals);
			if (rc == 0) {
				rc = reply_attr_rep(j, &rep);
				if (rc == 0)
					rc = re_notice(j, q->path.p,
					    re_dir_len(q->path.p, q->path.len),
					    name, nlen, MST_EV_CHANGE, old.id,
					    rep.dir_change);
			}
			return rc;
		}
		/* A new file: its object whole, then its name. */
		if (en.id == 0) {
			rc = re_alloc_id(e, &en.id);
			if (rc < 0)
				break;
			f = (struct fattr){ .size = j->body_len,
				.mode = q->mode, .uid = q->uid, .gid = q->gid,
				.nlink = 1, .ctime = (uint64_t)now,
				.ver = 1, .parent = dir.id };
			f.mtime = f.atime = q->mtime_ns ? q->mtime_ns :
			    (uint64_t)now;
			re_fa_encode(&f, val);
			re_oid(oid, 'f', en.id);
			if ((op = rados_create_write_op()) == NULL) {
				rc = -ENOMEM;
				break;
			}
			rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE,
			    NULL);
			rados_write_op_write_full(op, j->body_len ?
			    (const char *)j->body : "", j->body_len);
			re_set(op, "a", val, FA_LEN);
			re_name_key(kn, q->path.p, q->path.len);
			re_set(op, kn, "1", 1);
			rc = re_write(e, oid, op);
			if (rc < 0) {
				rc = re_err("create", oid, rc);
				en.id = 0;
				break;
			}
		}
		en.mode = q->mode;
		en.uid = q->uid;
		en.gid = q->gid;
		en.mtime = f.mtime;
		en.ctime = f.ctime;
		en.atime = f.atime;
		en.size = f.size;
		kvset_free(&vals);
		rc = re_dir_entry(e, &s, name, nlen, &en, NULL, &st);
		if (rc == -EEXIST)
			continue;	/* lost a race: read and decide again */
		if (rc < 0 && rc != -ENOENT)
			en.id = 0;	/* a timed-out write may name it */
		if (rc < 0)
			break;
		fa_attr(en.id, &f, &rep.attr);
		rep.dir_change = st.c;
		rep.dir_mtime_ns = st.t;
		rc = reply_attr_rep(j, &rep);
		if (rc == 0)
			rc = re_notice(j, q->path.p, re_dir_len(q->path.p,
			    q->path.len), name, nlen, MST_EV_ADD, en.id, st.c);
		return rc;
	}
	kvset_free(&vals);
	if (en.id) {			/* made, never named */
		re_oid(oid, 'f', en.id);
		(void)rados_remove(e->io, oid);	/* orphan otherwise: scrub */
	}
	return tries == RE_RETRIES ? re_err("put (too many races)", ke,
	    -EAGAIN) : rc;
}

int
re_op_get(struct rados_engine *e, struct job *j)
{
	const struct mst_get_req *q = &j->req.get;
	struct rres r;
	int rc = re_resolve(e, q->path.p, q->path.len, &r);

	if (rc < 0)
		return rc;
	if (r.type == MST_T_DIR)
		return -EISDIR;
	if (r.type == MST_T_MSG)
		return re_fetch_body(e, j, r.id, q->offset, q->length);
	return re_file_get(e, j, r.id, q->offset, q->length);
}

int
re_op_unlink(struct rados_engine *e, struct job *j)
{
	struct mst_str p = j->req.path.path;
	struct rstate st;
	struct rres r;
	int rc = re_resolve(e, p.p, p.len, &r);

	if (rc < 0)
		return rc;
	if (r.root)
		return -EBUSY;
	if (r.type == MST_T_DIR)
		return -EISDIR;
	rc = re_dir_entry(e, &r.pstore, r.name, r.namelen, NULL, r.raw, &st);
	if (rc < 0)
		return rc;
	if (r.type == MST_T_MSG) {
		re_remove_body(e, r.id);
	} else {
		re_file_unlinked(e, r.id, p.p, p.len);
		re_file_changed(e, j, r.id, NULL, 0);	/* its other names */
	}
	rc = reply_change_rep(j, st.c, st.t);
	return rc ? rc : re_notice(j, p.p, re_dir_len(p.p, p.len), r.name,
	    r.namelen, MST_EV_REMOVE, r.id, st.c);
}

/* file_of: f.<id>'s attributes, or why there is no such file. */
static int
file_of(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint8_t raw[FA_LEN])
{
	char oid[RE_OID_MAX];
	int rc = re_fa_read(e, id, f, raw, NULL);

	if (rc != -ENOENT)
		return rc;
	re_oid(oid, 'b', id);
	if (rados_stat(e->io, oid, NULL, NULL) == 0)
		return -EPERM;		/* message bodies are immutable */
	re_oid(oid, 'd', id);
	if (rados_stat(e->io, oid, NULL, NULL) == 0)
		return -EISDIR;
	return -ENOENT;
}

/* Reply with the file's attributes as written and its parent's fields. */
static int
reply_fa(struct rados_engine *e, struct job *j, uint64_t id,
    const struct fattr *f)
{
	struct mst_attr_rep rep = { 0 };
	struct mst_attr pa;

	fa_attr(id, f, &rep.attr);
	if (re_dir_attr(e, f->parent, &pa, NULL) == 0) {
		rep.dir_change = pa.change;
		rep.dir_mtime_ns = pa.mtime_ns;
	}
	return reply_attr_rep(j, &rep);
}

/*
 * WRITE: one op guarded by the attributes read, so an APPEND lands at
 * the end it saw (the reply's size says where) and no reader sees part
 * of it. Phase 1 sends no notice for it (the file's names are not kept
 * with it yet).
 */
static int
edit_write(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	struct fedit *x = arg;
	const struct mst_write_req *q = &x->j->req.write;
	uint64_t off = (q->flags & MST_WR_APPEND) ? f->size : q->offset,
	    len = x->j->body_len;
	uint8_t val[FA_LEN];

	(void)e, (void)id, (void)on;
	x->out = *f;
	if (off > x->max || len > x->max - off)
		return -EFBIG;
	if (len == 0)
		return 1;
	if (off + len > f->size)
		f->size = off + len;
	f->mtime = f->ctime = (uint64_t)re_now();
	f->ver++;
	re_fa_encode(f, val);
	rados_write_op_write(op, (const char *)x->j->body, len, off);
	re_set(op, "a", val, FA_LEN);
	x->out = *f;
	return 0;
}

int
re_op_write(struct rados_engine *e, struct job *j)
{
	const struct mst_write_req *q = &j->req.write;
	struct fedit x = { .j = j, .max = e->conf.max_body };
	struct fattr f;
	int rc;

	if (q->flags & ~MST_WR_ALL)
		return -EINVAL;
	rc = re_fa_update(e, q->id, edit_write, &x, "write");
	if (rc == -ENOENT)	/* a message (EPERM), a dir, or nothing */
		return (rc = file_of(e, q->id, &f, NULL)) ? rc : -ENOENT;
	if (rc < 0)
		return rc;
	rc = reply_fa(e, j, q->id, &x.out);
	if (rc == 0 && j->body_len)
		re_file_changed(e, j, q->id, NULL, 0);
	return rc;
}

/* READ of a file (a range; checksum of the bytes returned), or of a
 * message body. */
int
re_op_read(struct rados_engine *e, struct job *j)
{
	const struct mst_read_req *q = &j->req.read;
	const char *keys[] = { "a", NULL };
	size_t room = j->max_frame - 16, n, got = 0;
	struct kvset vals = { 0 };
	rados_omap_iter_t it = NULL;
	rados_read_op_t op;
	const struct kv *v;
	char oid[RE_OID_MAX];
	struct fattr f;
	uint8_t *p;
	int rc, r1 = 0, r2 = 0;

	n = q->length < room ? q->length : room;
	if ((p = malloc(16 + n)) == NULL)
		return -ENOMEM;
	re_oid(oid, 'f', q->id);
	if ((op = rados_create_read_op()) == NULL) {
		free(p);
		return -ENOMEM;
	}
	rados_read_op_read(op, q->offset, n, (char *)p + 16, &got, &r1);
	rados_read_op_omap_get_vals_by_keys(op, keys, 1, &it, &r2);
	rc = rados_read_op_operate(op, e->io, oid, 0);
	if (rc == 0)
		rc = r1 < 0 ? r1 : r2;
	if (rc == 0 && it)
		rc = kvset_fill_iter(&vals, it);
	if (it)
		rados_omap_get_end(it);
	rados_release_read_op(op);
	if (rc == 0) {
		v = kvset_get(&vals, "a");
		rc = v == NULL ? -ENOENT : fa_decode(v, &f);
	}
	kvset_free(&vals);
	if (rc == -ENOENT) {
		free(p);
		rc = file_of(e, q->id, &f, NULL);
		if (rc == -EPERM)	/* a message: its body, range summed */
			return re_read_body_range(e, j, q->id, q->offset,
			    q->length);
		return rc < 0 ? rc : -EIO;
	}
	if (rc < 0) {
		free(p);
		return re_err("read", oid, rc);
	}
	if (got > f.size)
		got = 0;
	return reply_data_frame(j, p, got, f.size, 0, 1);
}

static int
edit_setattr(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	struct fedit *x = arg;
	const struct mst_fsetattr_req *q = x->sa;
	uint64_t now = (uint64_t)re_now();
	uint8_t val[FA_LEN];

	(void)e, (void)id, (void)on;
	if (q->valid & MST_SA_MODE)
		f->mode = q->mode & 07777;
	if (q->valid & MST_SA_UID)
		f->uid = q->uid;
	if (q->valid & MST_SA_GID)
		f->gid = q->gid;
	if (q->valid & MST_SA_SIZE) {
		f->size = q->size;
		f->mtime = now;
		rados_write_op_truncate(op, q->size);
	}
	if (q->valid & MST_SA_MTIME)
		f->mtime = q->mtime_ns;
	if (q->valid & MST_SA_ATIME)
		f->atime = q->atime_ns;
	if (q->valid)
		f->ctime = now;
	f->ver++;
	re_fa_encode(f, val);
	re_set(op, "a", val, FA_LEN);
	x->out = *f;
	return 0;
}

/* SETATTR/FSETATTR of a file: one CAS of its attributes (and a
 * truncate in the same op), ext4's time rules. */
int
re_file_setattr(struct rados_engine *e, struct job *j, uint64_t id,
    const struct mst_fsetattr_req *q)
{
	struct fedit x = { .j = j, .sa = q };
	struct fattr f;
	int rc;

	if ((q->valid & MST_SA_SIZE) && q->size > e->conf.max_body)
		return -EFBIG;
	rc = re_fa_update(e, id, edit_setattr, &x, "set attributes of");
	if (rc == -ENOENT)	/* a message (EPERM), a dir, or nothing */
		return (rc = file_of(e, id, &f, NULL)) ? rc : -ENOENT;
	if (rc < 0)
		return rc;
	rc = reply_fa(e, j, id, &x.out);
	if (rc == 0 && q->valid)
		re_file_changed(e, j, id, NULL, 0);
	return rc;
}
