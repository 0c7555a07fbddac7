/*
 * engine_rados_move.c - the rados back-end's operations that take a name
 * away or move it: EXPUNGE, SETINFO (new/ <-> cur/ flag renames), RENAME
 * within one store object, and SETATTR/FSETATTR. Each decides on one
 * read of the store and commits with ONE write op guarded by both
 * stores' state and counters and both entries (the name taken, the name
 * replaced or absent), so two servers renaming onto one name with
 * NOREPLACE get one winner. What a move replaces (a body, a file object)
 * is removed only after the move committed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rados.h"
#include "log.h"
#include "reply.h"

#define PATHBUF (MST_PATH_MAX + 1)

/* --- EXPUNGE, SETINFO, RENAME --- */

int
re_op_expunge(struct rados_engine *e, struct job *j)
{
	const struct mst_msg_ref *m = &j->req.ref;
	char path[PATHBUF], ke[RE_KEY_MAX];
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rentry en;
	struct rstate st;
	struct rstore s;
	struct rres r;
	uint8_t raw[RE_ENTRY_LEN];
	int rc = re_mail_dir(e, m->mailbox, m->folder, m->sub, path,
	    sizeof path, &r);

	if (rc == 0)
		rc = re_dir_store(&r, &s);
	if (rc < 0)
		return rc;
	re_key(ke, &s, "e.", m->name.p, m->name.len);
	rc = re_store_read(e, &s, ke, NULL, NULL, &vals, &st);
	if (rc == 0 && (v = kvset_get(&vals, ke)) == NULL)
		rc = -ENOENT;
	if (rc == 0 && (v->vlen != RE_ENTRY_LEN ||
	    ren_decode(v->v, v->vlen, &en) < 0))
		rc = -EIO;
	if (rc == 0)
		memcpy(raw, v->v, RE_ENTRY_LEN);
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	if (en.type == MST_T_DIR)
		return -EISDIR;
	if (en.type != MST_T_MSG)
		return -EOPNOTSUPP;	/* ordinary files: phase 2 */
	rc = re_dir_entry(e, &s, m->name.p, m->name.len, NULL, raw, &st);
	if (rc < 0)
		return rc;
	re_remove_body(e, en.id);
	rc = reply_change_rep(j, st.c, st.t);
	return rc ? rc : re_notice(j, path, strlen(path), m->name.p,
	    m->name.len, MST_EV_REMOVE, en.id, st.c);
}

/*
 * Move the entry |fname| of store |fs| to |tname| of store |ts| (the
 * same object), replacing a message there unless |noreplace|: ONE write
 * op guarded by both stores' state and counters and both entries.
 */
struct move {
	const struct rstore *fs, *ts;
	const char *fname, *tname;
	size_t flen, tlen;
	int noreplace;
	const char *fdir, *tdir;	/* paths for notices */
	size_t fdlen, tdlen;
	int dir_ok;			/* a directory may move */
};

static int
move_apply(struct rados_engine *e, struct job *j, const struct move *mv,
    struct kvset *vals)
{
	char kf[RE_KEY_MAX], kt[RE_KEY_MAX];
	struct rstate fst, tst;
	const struct kv *fv, *tv;
	struct rentry en, tg;
	uint8_t raw[RE_ENTRY_LEN];
	int same = strcmp(mv->fs->pfx, mv->ts->pfx) == 0, rc, tries;
	uint64_t c, tc;
	int64_t now;
	rados_write_op_t op;

	re_key(kf, mv->fs, "e.", mv->fname, mv->flen);
	re_key(kt, mv->ts, "e.", mv->tname, mv->tlen);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, mv->fs, kf, kt, NULL, vals, &fst);
		if (rc < 0)
			return rc;
		if (!same) {
			struct kvset tv2 = { 0 };

			rc = re_store_read(e, mv->ts, NULL, NULL, NULL, &tv2,
			    &tst);
			kvset_free(&tv2);
			if (rc < 0)
				return rc;
		} else {
			tst = fst;
		}
		if (!fst.live || !tst.live) {
			rc = re_not_live(e, fst.live ? mv->ts : mv->fs,
			    fst.live ? &tst : &fst);
			if (rc < 0)
				return rc;
			continue;
		}
		if ((fv = kvset_get(vals, kf)) == NULL)
			return -ENOENT;
		if (ren_decode(fv->v, fv->vlen, &en) < 0)
			return -EIO;
		tv = kvset_get(vals, kt);
		if (tv && ren_decode(tv->v, tv->vlen, &tg) < 0)
			return -EIO;
		if (en.type == MST_T_DIR && !mv->dir_ok)
			return -EISDIR;
		if (en.type == MST_T_FILE && !same)
			return -EOPNOTSUPP;	/* its parent would change */
		if (tv && tg.id == en.id)
			return re_reply_any_entry(e, j, &en, &tst);
		if (tv && mv->noreplace)
			return -EEXIST;
		if (tv && tg.type == MST_T_DIR)
			return en.type == MST_T_DIR ? -EOPNOTSUPP : -EISDIR;
		if (tv && en.type == MST_T_DIR)
			return -ENOTDIR;

		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		now = re_now();
		re_guard_live(op, mv->fs);
		re_cmp(op, kf, fv->v, fv->vlen);
		re_cmp(op, kt, tv ? tv->v : "", tv ? tv->vlen : 0);
		/* One log record per counter value. In one store: REMOVE of
		 * the replaced entry, REMOVE of the old name, ADD of the new;
		 * across new/ and cur/ each store counts its own. */
		c = fst.c;
		tc = same ? c : tst.c;
		if (!same)
			re_guard_live(op, mv->ts);
		if (tv) {
			tc++;
			re_log(op, mv->ts, tc, MST_EV_REMOVE, &tg, mv->tname,
			    mv->tlen);
		}
		c = same ? tc + 1 : c + 1;
		re_log(op, mv->fs, c, MST_EV_REMOVE, &en, mv->fname,
		    mv->flen);
		tc = same ? c + 1 : tc + 1;
		if (same)
			c = tc;
		en.change = tc;
		en.ctime = (uint64_t)now;
		re_rm(op, kf);
		ren_encode(&en, raw);
		re_set(op, kt, raw, RE_ENTRY_LEN);
		re_log(op, mv->ts, tc, MST_EV_ADD, &en, mv->tname, mv->tlen);
		re_bump(op, mv->fs, fst.c, c, now);
		if (!same)
			re_bump(op, mv->ts, tst.c, tc, now);
		rc = re_write(e, mv->fs->oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0)
			return re_err("move entry in", mv->fs->oid, rc);
		tst.c = tc;
		tst.t = (uint64_t)now;
		if (en.type == MST_T_MSG) {
			char oid[RE_OID_MAX], loc[RE_OID_MAX + 2 +
			    RE_KEY_MAX];

			re_oid(oid, 'b', en.id);
			snprintf(loc, sizeof loc, "%s %s", mv->ts->oid, kt);
			rc = rados_setxattr(e->io, oid, "loc", loc,
			    strlen(loc));
			if (rc < 0)
				log_warn("rados: %s loc: %s", oid,
				    strerror(-rc));
		}
		if (tv && tg.type == MST_T_MSG)
			re_remove_body(e, tg.id);
		if (tv && tg.type == MST_T_FILE) {
			char foid[RE_OID_MAX];

			re_oid(foid, 'f', tg.id);	/* its only name went */
			rc = rados_remove(e->io, foid);
			if (rc < 0 && rc != -ENOENT)
				log_warn("rados: removing %s: %s (left for "
				    "scrub)", foid, strerror(-rc));
		}
		rc = re_reply_any_entry(e, j, &en, &tst);
		if (rc == 0 && tv)
			rc = re_notice(j, mv->tdir, mv->tdlen, mv->tname,
			    mv->tlen, MST_EV_REMOVE, tg.id, tc);
		if (rc == 0)
			rc = re_notice(j, mv->fdir, mv->fdlen, mv->fname,
			    mv->flen, MST_EV_REMOVE, en.id, c);
		if (rc == 0)
			rc = re_notice(j, mv->tdir, mv->tdlen, mv->tname,
			    mv->tlen, MST_EV_ADD, en.id, tc);
		return rc;
	}
	return re_err("move entry (too many races)", mv->fs->oid, -EAGAIN);
}

static int
do_move(struct rados_engine *e, struct job *j, const struct move *mv)
{
	struct kvset vals = { 0 };
	pthread_mutex_t *mu = re_stripe(e, mv->fs->oid);
	int rc;

	if (strcmp(mv->fs->oid, mv->ts->oid) != 0)
		return -EOPNOTSUPP;	/* across store objects: phase 2 */
	pthread_mutex_lock(mu);
	rc = move_apply(e, j, mv, &vals);
	pthread_mutex_unlock(mu);
	kvset_free(&vals);
	return rc;
}

int
re_op_setinfo(struct rados_engine *e, struct job *j)
{
	const struct mst_setinfo_req *q = &j->req.setinfo;
	char fp[PATHBUF], tp[PATHBUF];
	struct rres fr, tr;
	struct rstore fs, ts;
	struct move mv;
	int rc = re_mail_dir(e, q->mailbox, q->folder, q->from_sub, fp,
	    sizeof fp, &fr);

	if (rc == 0)
		rc = re_mail_dir(e, q->mailbox, q->folder, q->to_sub, tp,
		    sizeof tp, &tr);
	if (rc == 0)
		rc = re_dir_store(&fr, &fs);
	if (rc == 0)
		rc = re_dir_store(&tr, &ts);
	if (rc < 0)
		return rc;
	mv = (struct move){ .fs = &fs, .ts = &ts, .fname = q->from_name.p,
		.flen = q->from_name.len, .tname = q->to_name.p,
		.tlen = q->to_name.len,
		.noreplace = (q->flags & MST_RN_NOREPLACE) != 0,
		.fdir = fp, .fdlen = strlen(fp), .tdir = tp,
		.tdlen = strlen(tp) };
	return do_move(e, j, &mv);
}

int
re_op_rename(struct rados_engine *e, struct job *j)
{
	const struct mst_rename_req *q = &j->req.rename;
	struct rres from, tdir;
	struct rstore ts;
	struct move mv;
	const char *tname;
	size_t tlen;
	int rc = re_resolve_fresh(e, q->from.p, q->from.len, &from);

	if (rc == 0)
		rc = re_parent_of(e, q->to, &tdir, &ts, &tname, &tlen);
	if (rc < 0)
		return rc;
	if (from.root)
		return -EBUSY;
	/* A directory whose name makes it new/ or cur/ (or stops) would
	 * change where its entries live: phase 2. */
	if (from.type == MST_T_DIR && (re_is_sub_name(from.name, from.namelen) ||
	    re_is_sub_name(tname, tlen)) && (from.namelen != tlen ||
	    memcmp(from.name, tname, tlen) != 0 || from.parent != tdir.id))
		return -EOPNOTSUPP;
	if (from.type == MST_T_DIR && from.parent != tdir.id)
		return -EOPNOTSUPP;	/* cycle checks across parents */
	mv = (struct move){ .fs = &from.pstore, .ts = &ts,
		.fname = from.name, .flen = from.namelen, .tname = tname,
		.tlen = tlen, .noreplace = (q->flags & MST_RN_NOREPLACE) != 0,
		.fdir = q->from.p, .fdlen = re_dir_len(q->from.p, q->from.len),
		.tdir = q->to.p, .tdlen = re_dir_len(q->to.p, q->to.len),
		.dir_ok = 1 };
	return do_move(e, j, &mv);
}

/* --- SETATTR, FSETATTR: directories only in phase 1 --- */

int
re_op_setattr(struct rados_engine *e, struct job *j)
{
	const struct mst_setattr_req *q = &j->req.setattr;
	struct mst_fsetattr_req f = { .valid = q->valid, .mode = q->mode,
		.uid = q->uid, .gid = q->gid, .size = q->size,
		.mtime_ns = q->mtime_ns };
	struct mst_attr_rep a = { 0 };
	struct mst_attr pa;
	struct rres r;
	int rc;

	if (q->valid & ~MST_SA_ALL)
		return -EINVAL;
	rc = re_resolve(e, q->path.p, q->path.len, &r);
	if (rc < 0)
		return rc;
	if (r.type == MST_T_FILE) {
		rc = re_file_setattr(e, j, r.id, &f);
		if (rc == 0 && re_dir_attr(e, r.parent, &pa, NULL) == 0)
			rc = re_notice(j, q->path.p, re_dir_len(q->path.p,
			    q->path.len), r.name, r.namelen, MST_EV_CHANGE,
			    r.id, pa.change);
		return rc;
	}
	if (r.type != MST_T_DIR)
		return -EOPNOTSUPP;	/* messages: phase 2 */
	rc = re_dir_setattr(e, r.id, &f);
	if (rc == 0)
		rc = re_dir_attr(e, r.id, &a.attr, NULL);
	if (rc == 0)
		rc = re_dir_attr(e, r.root ? r.id : r.parent, &pa, NULL);
	if (rc < 0)
		return rc;
	a.dir_change = pa.change;
	a.dir_mtime_ns = pa.mtime_ns;
	rc = reply_attr_rep(j, &a);
	if (rc == 0 && !r.root)
		rc = re_notice(j, q->path.p, re_dir_len(q->path.p, q->path.len),
		    r.name, r.namelen, MST_EV_CHANGE, r.id, pa.change);
	return rc;
}

int
re_op_fsetattr(struct rados_engine *e, struct job *j)
{
	const struct mst_fsetattr_req *q = &j->req.fsetattr;
	struct mst_attr_rep a = { 0 };
	char oid[RE_OID_MAX];
	int rc;

	if (q->valid & ~MST_FSA_ALL)
		return -EINVAL;
	rc = re_dir_setattr(e, q->id, q);
	if (rc == -ENOENT) {
		re_oid(oid, 'b', q->id);
		if (rados_stat(e->io, oid, NULL, NULL) == 0)
			return -EOPNOTSUPP;	/* messages: phase 2 */
		rc = re_file_setattr(e, j, q->id, q);
		return rc == -EISDIR ? -ENOENT : rc;
	}
	if (rc == 0)
		rc = re_dir_attr(e, q->id, &a.attr, NULL);
	if (rc < 0)
		return rc;
	a.dir_change = a.attr.change;
	a.dir_mtime_ns = a.attr.mtime_ns;
	return reply_attr_rep(j, &a);
}
