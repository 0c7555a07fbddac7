/*
 * engine_rados_move.c - the rados back-end's operations that take a name
 * away or move it: EXPUNGE, SETINFO (new/ <-> cur/ flag renames), RENAME
 * (in one store object, or across them with a claimed intent: see "Moving
 * an entry" below), and SETATTR/FSETATTR of directories and messages.
 * Each decides on what it read and commits with write ops guarded by
 * the stores' state and counters and the entries involved (the name
 * taken, the name replaced or absent), so two servers renaming onto one
 * name with NOREPLACE get one winner. What a move replaces (a body, a
 * file's name, an empty directory) goes only after the move committed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

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
	if (rc == 0)
		rc = re_shard(e, &s, m->name.p, m->name.len);
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
	rc = re_dir_entry(e, &s, m->name.p, m->name.len, NULL, raw, &st);
	if (rc < 0)
		return rc;
	if (en.type == MST_T_MSG) {
		re_remove_body(e, en.id);
	} else {		/* an ordinary file there: one of its names */
		char fp[PATHBUF];
		int n = snprintf(fp, sizeof fp, "%s/%.*s", path,
		    (int)m->name.len, m->name.p);

		re_file_unlinked(e, en.id, fp, n > 0 && (size_t)n < sizeof fp ?
		    (size_t)n : 0);
		re_file_changed(e, j, en.id, NULL, 0);
	}
	rc = reply_change_rep(j, st.c, st.t);
	return rc ? rc : re_notice(j, path, strlen(path), m->name.p,
	    m->name.len, MST_EV_REMOVE, en.id, st.c);
}

/*
 * Moving an entry: |fname| of store |fs| to |tname| of store |ts|,
 * replacing what is there unless |noreplace|.
 *
 * In one store object (a rename inside a directory, new/ <-> cur/ of one
 * folder) it is ONE write op guarded by both stores' state and counters
 * and both entries.
 *
 * Across store objects it is three guarded writes, crash-safe by an
 * intent: (1) in the source, the entry is marked moving (bit 7 of its
 * type) and x.<name> = {time, destination} is set, guarded by the entry
 * read; (2) in the destination, the entry is set, guarded by the target
 * read (absent or the entry replaced) and the counter; (3) in the
 * source, the marked entry and its intent go, guarded by both. Every
 * operation that would change a marked entry (UNLINK, RENAME, SETINFO,
 * EXPUNGE, a rename over it) waits for the move (re_moving_wait); one
 * that finds the intent older than RE_MOVE_STALE_NS finishes it (step 3
 * when the destination holds the id, else undoes step 1). Between (2)
 * and (3) both names are visible for a moment (the local engine shows
 * one): a documented difference. A directory moving to another parent
 * takes the cluster lock mst.renamelock around the cycle check and the
 * three steps, so that two servers never move two directories into each
 * other. What a move replaces (a body, a file's name, an empty
 * directory's head) goes only after the move committed.
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

/* The rules of a move of |en| onto |tg| (|has_t|): 0 to go on, 1 for a
 * no-op (the same object), or an error. A directory target is fenced
 * (it must be empty) before it is replaced. */
static int
move_rules(struct rados_engine *e, const struct move *mv,
    const struct rentry *en, int has_t, const struct rentry *tg,
    uint64_t *fenced)
{
	struct rstore ds;
	char oid[RE_OID_MAX];
	int rc;

	if (en->type == MST_T_DIR && !mv->dir_ok)
		return -EISDIR;
	if (has_t && tg->id == en->id)
		return 1;
	if (has_t && mv->noreplace)
		return -EEXIST;
	if (has_t && tg->type == MST_T_DIR && en->type != MST_T_DIR)
		return -EISDIR;
	if (has_t && en->type == MST_T_DIR && tg->type != MST_T_DIR)
		return -ENOTDIR;
	if (has_t && tg->type == MST_T_DIR) {
		/* Its store is ts's child: plain (d.<id>) or new/cur of a
		 * folder, whose name is the target's. */
		re_store_of(&ds, tg->id, mv->ts->dir, mv->tname, mv->tlen);
		rc = re_fence_empty(e, &ds);
		if (rc == 0)
			*fenced = tg->id;
		if (rc == -ENOENT)
			rc = 0;		/* fenced already (a retry) */
		if (rc < 0)
			return rc;
	}
	if (en->type == MST_T_MSG && strcmp(mv->fs->oid, mv->ts->oid)) {
		/* Its quota is its mailbox's: not across mailboxes. */
		char mbox[MST_PATH_MAX + 1];
		int n;

		re_oid(oid, 'b', en->id);
		n = rados_getxattr(e->io, oid, "mbox", mbox, sizeof mbox - 1);
		if (n > 0 && ((size_t)n > mv->tdlen ||
		    memcmp(mbox, mv->tdir, (size_t)n) != 0 ||
		    ((size_t)n < mv->tdlen && mv->tdir[n] != '/')))
			return -EXDEV;
	}
	return 0;
}

/* A move that fenced the empty directory target |id| named |mv->tname|
 * did not happen: it is live again. */
static void
unfence(struct rados_engine *e, const struct move *mv, uint64_t id)
{
	char k[RE_KEY_MAX], d[18], l[18];
	struct rstore ds;
	rados_write_op_t op;
	int rc;

	if (id == 0)
		return;
	re_store_of(&ds, id, mv->ts->dir, mv->tname, mv->tlen);
	if (ds.pfx[0]) {	/* new/ or cur/: maybe in shards */
		re_unfence(e, &ds);
		return;
	}
	if ((op = rados_create_write_op()) == NULL)
		return;
	re_key(k, &ds, "st", NULL, 0);
	d[0] = 'D';
	l[0] = 'L';
	re_hex(d + 1, id);
	re_hex(l + 1, id);
	re_cmp(op, k, d, 17);
	re_set(op, k, l, 17);
	rc = re_write(e, ds.oid, op);
	if (rc < 0 && rc != -ECANCELED && rc != -ENOENT)
		log_warn("rados: %s: a fenced directory stays fenced: %s",
		    ds.oid, strerror(-rc));
}

/* After a committed move: the moved object's ctime (ext4's: a rename
 * changes the inode), the body's loc, and what was replaced. */
static void
move_cleanup(struct rados_engine *e, const struct move *mv,
    const struct rentry *en, int has_t, const struct rentry *tg)
{
	const struct mst_fsetattr_req none = { .valid = 0 };
	char oid[RE_OID_MAX], kt[RE_KEY_MAX];
	char loc[RE_OID_MAX + 2 + RE_KEY_MAX];
	int rc;

	if (en->type == MST_T_FILE) {
		char from[MST_PATH_MAX + 1], to[MST_PATH_MAX + 1];
		int fl = snprintf(from, sizeof from, "%.*s%s%.*s",
		    (int)mv->fdlen, mv->fdir, mv->fdlen ? "/" : "",
		    (int)mv->flen, mv->fname);
		int tl = snprintf(to, sizeof to, "%.*s%s%.*s", (int)mv->tdlen,
		    mv->tdir, mv->tdlen ? "/" : "", (int)mv->tlen, mv->tname);

		if (fl > 0 && tl > 0 && (size_t)fl < sizeof from &&
		    (size_t)tl < sizeof to)
			re_file_touch(e, en->id, from, (size_t)fl, to,
			    (size_t)tl, mv->ts->dir);
	}
	if (en->type == MST_T_DIR && (rc = re_dir_setattr(e, en->id,
	    &none)) < 0 && rc != -ENOENT)
		log_warn("rados: directory %" PRIu64 ": ctime after a rename: "
		    "%s", en->id, strerror(-rc));

	if (en->type == MST_T_MSG) {
		re_key(kt, mv->ts, "e.", mv->tname, mv->tlen);
		re_oid(oid, 'b', en->id);
		snprintf(loc, sizeof loc, "%s %s", mv->ts->oid, kt);
		rc = rados_setxattr(e->io, oid, "loc", loc, strlen(loc));
		if (rc == 0)
			rc = rados_setxattr(e->io, oid, "dir", mv->tdir,
			    mv->tdlen);
		if (rc < 0)
			log_warn("rados: %s loc: %s", oid, strerror(-rc));
	}
	if (!has_t)
		return;
	if (tg->type == MST_T_MSG)
		re_remove_body(e, tg->id);
	else if (tg->type == MST_T_FILE) {
		char to[MST_PATH_MAX + 1];
		int tl = snprintf(to, sizeof to, "%.*s%s%.*s", (int)mv->tdlen,
		    mv->tdir, mv->tdlen ? "/" : "", (int)mv->tlen, mv->tname);

		re_file_unlinked(e, tg->id, to, tl > 0 && (size_t)tl <
		    sizeof to ? (size_t)tl : 0);
	}
	else if (tg->type == MST_T_DIR) {
		re_oid(oid, 'd', tg->id);
		rc = rados_remove(e->io, oid);
		if (rc < 0 && rc != -ENOENT)
			log_warn("rados: removing head %s: %s (left for scrub)",
			    oid, strerror(-rc));
	}
}

static int
move_reply(struct rados_engine *e, struct job *j, const struct move *mv,
    const struct rentry *en, int has_t, const struct rentry *tg,
    uint64_t c, uint64_t tc, const struct rstate *tst)
{
	int rc = re_reply_any_entry(e, j, en, tst);

	if (rc == 0 && has_t)
		rc = re_notice(j, mv->tdir, mv->tdlen, mv->tname, mv->tlen,
		    MST_EV_REMOVE, tg->id, tc);
	if (rc == 0)
		rc = re_notice(j, mv->fdir, mv->fdlen, mv->fname, mv->flen,
		    MST_EV_REMOVE, en->id, c);
	if (rc == 0)
		rc = re_notice(j, mv->tdir, mv->tdlen, mv->tname, mv->tlen,
		    MST_EV_ADD, en->id, tc);
	return rc;
}

/* Guard the subdirectory count of |s| (|old|) and set it to |new|. */
static void
nd_guard_set(rados_write_op_t op, const struct rstore *s, uint64_t old,
    uint64_t new)
{
	char kn[RE_KEY_MAX], h[17];

	re_key(kn, s, "nd", NULL, 0);
	re_hex(h, old);
	re_cmp(op, kn, h, 16);
	if (new != old) {
		re_hex(h, new);
		re_set(op, kn, h, 16);
	}
}

/* Both stores live, or why not (0: read again). */
static int
move_live(struct rados_engine *e, const struct move *mv,
    const struct rstate *fst, const struct rstate *tst)
{
	if (!fst->live)
		return re_not_live(e, mv->fs, fst);
	if (!tst->live)
		return re_not_live(e, mv->ts, tst);
	return 1;
}

/* Decode |v| (may be NULL: *has = 0). */
static int
entry_of(const struct kv *v, struct rentry *en, int *has)
{
	*has = v != NULL;
	return v && ren_decode(v->v, v->vlen, en) < 0 ? -EIO : 0;
}

/* In one store object: ONE guarded write. */
static int
move_one_try(struct rados_engine *e, struct job *j, const struct move *mv,
    struct kvset *vals, uint64_t *fenced)
{
	char kf[RE_KEY_MAX], kt[RE_KEY_MAX];
	struct rstate fst, tst;
	const struct kv *fv, *tv;
	struct rentry en, tg;
	uint8_t raw[RE_ENTRY_LEN];
	int same = strcmp(mv->fs->pfx, mv->ts->pfx) == 0, rc, tries, has_f,
	    has_t;
	int64_t waited = 0;
	uint64_t c, tc, nd;
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
		if ((rc = move_live(e, mv, &fst, &tst)) <= 0) {
			if (rc < 0)
				return rc;
			continue;
		}
		fv = kvset_get(vals, kf);
		tv = kvset_get(vals, kt);
		if ((rc = entry_of(fv, &en, &has_f)) < 0 ||
		    (rc = entry_of(tv, &tg, &has_t)) < 0)
			return rc;
		if (!has_f)
			return -ENOENT;
		if (en.moving || (has_t && tg.moving)) {
			rc = re_moving_wait(e, en.moving ? mv->fs : mv->ts,
			    en.moving ? mv->fname : mv->tname,
			    en.moving ? mv->flen : mv->tlen, &waited);
			if (rc < 0)
				return rc;
			tries--;
			continue;
		}
		rc = move_rules(e, mv, &en, has_t, &tg, fenced);
		if (rc == 1)
			return re_reply_any_entry(e, j, &en, &tst);
		if (rc < 0)
			return rc;
		if (!same && !has_t && tst.has_n && tst.n >= e->shard_cap)
			return re_shard_full(e, mv->ts, tst.n);

		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		now = re_now();
		re_guard_live(op, mv->fs);
		re_cmp(op, kf, fv->v, fv->vlen);
		re_cmp(op, kt, has_t ? tv->v : "", has_t ? tv->vlen : 0);
		/* One log record per counter value. In one store: REMOVE of
		 * the replaced entry, REMOVE of the old name, ADD of the new;
		 * across new/ and cur/ each store counts its own. */
		c = fst.c;
		tc = same ? c : tst.c;
		if (!same)
			re_guard_live(op, mv->ts);
		if (has_t) {
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
		/* Entry counts, guarded by the counters just compared. */
		if (same && has_t && fst.has_n)
			re_set_entries(op, mv->fs, fst.n ? fst.n - 1 : 0);
		if (!same && fst.has_n)
			re_set_entries(op, mv->fs, fst.n ? fst.n - 1 : 0);
		if (!same && !has_t && tst.has_n)
			re_set_entries(op, mv->ts, tst.n + 1);
		if (has_t && tg.type == MST_T_DIR) {
			nd = tst.nd;
			nd_guard_set(op, mv->ts, nd, nd ? nd - 1 : 0);
		}
		rc = re_write(e, mv->fs->oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0)
			return re_err("move entry in", mv->fs->oid, rc);
		tst.c = tc;
		tst.t = (uint64_t)now;
		move_cleanup(e, mv, &en, has_t, &tg);
		return move_reply(e, j, mv, &en, has_t, &tg, c, tc, &tst);
	}
	return re_err("move entry (too many races)", mv->fs->oid, -EAGAIN);
}

static int
move_one(struct rados_engine *e, struct job *j, const struct move *mv,
    struct kvset *vals)
{
	uint64_t fenced = 0;
	int rc = move_one_try(e, j, mv, vals, &fenced);

	if (rc < 0)
		unfence(e, mv, fenced);
	return rc;
}

/* x.<name>: 'X' time(8) oid-length(1) oid pfx(2) name-length(2) name. */
#define XI_MAX (1 + 8 + 1 + RE_OID_MAX + 2 + 2 + MST_NAME_MAX)

struct xintent {
	int64_t time;
	struct rstore ts;
	char name[MST_NAME_MAX + 1];
	size_t nlen;
};

static size_t
xi_encode(const struct move *mv, int64_t now, uint8_t *out)
{
	size_t ol = strlen(mv->ts->oid), n = 0;

	out[n++] = 'X';
	er_put64(out + n, (uint64_t)now), n += 8;
	out[n++] = (uint8_t)ol;
	memcpy(out + n, mv->ts->oid, ol), n += ol;
	out[n++] = (uint8_t)mv->ts->pfx[0];
	out[n++] = (uint8_t)mv->ts->pfx[1];
	out[n++] = (uint8_t)mv->tlen;
	out[n++] = (uint8_t)(mv->tlen >> 8);
	memcpy(out + n, mv->tname, mv->tlen), n += mv->tlen;
	return n;
}

static int
xi_decode(const struct kv *v, struct xintent *x)
{
	const uint8_t *p = (const uint8_t *)v->v;
	size_t ol, n = 10;

	if (v->vlen < 14 || p[0] != 'X' || (ol = p[9]) >= RE_OID_MAX ||
	    v->vlen < n + ol + 4)
		return -EIO;
	memset(x, 0, sizeof *x);
	x->time = (int64_t)er_get64(p + 1);
	memcpy(x->ts.oid, p + n, ol), n += ol;
	re_store_from_oid(&x->ts);
	x->ts.pfx[0] = (char)p[n++];
	x->ts.pfx[1] = (char)p[n++];
	x->nlen = (size_t)p[n] | (size_t)p[n + 1] << 8;
	n += 2;
	if (x->nlen > MST_NAME_MAX || v->vlen != n + x->nlen)
		return -EIO;
	memcpy(x->name, p + n, x->nlen);
	return 0;
}

/* Step 3, or undoing step 1: the marked entry |raw| of |name| in |s|
 * with its intent |xv| goes (|finish|) or is unmarked. */
static int
xmove_end(struct rados_engine *e, const struct rstore *s, const char *name,
    size_t nlen, const uint8_t *raw, const struct kv *xv, int finish)
{
	char ke[RE_KEY_MAX], kx[RE_KEY_MAX];
	uint8_t val[RE_ENTRY_LEN];
	struct kvset vals = { 0 };
	struct rentry en;
	struct rstate st;
	rados_write_op_t op;
	int64_t now;
	int rc, tries;

	re_key(ke, s, "e.", name, nlen);
	re_key(kx, s, "x.", name, nlen);
	ren_decode(raw, RE_ENTRY_LEN, &en);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, s, NULL, NULL, NULL, &vals, &st);
		kvset_free(&vals);
		if (rc < 0)
			return rc;
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		re_cmp(op, ke, raw, RE_ENTRY_LEN);
		re_cmp(op, kx, xv->v, xv->vlen);
		re_rm(op, kx);
		if (finish) {
			now = re_now();
			re_bump(op, s, st.c, st.c + 1, now);
			re_rm(op, ke);
			en.moving = 0;
			re_log(op, s, st.c + 1, MST_EV_REMOVE, &en, name, nlen);
			if (en.type == MST_T_DIR)
				nd_guard_set(op, s, st.nd, st.nd ? st.nd - 1 :
				    0);
			if (st.has_n)
				re_set_entries(op, s, st.n ? st.n - 1 : 0);
		} else {	/* the entry as stored before the claim */
			memcpy(val, raw, RE_ENTRY_LEN);
			val[1] &= 0x7f;
			re_set(op, ke, val, RE_ENTRY_LEN);
		}
		rc = re_write(e, s->oid, op);
		if (rc != -ECANCELED)
			return rc < 0 && rc != -ENOENT ?
			    re_err("end a move in", s->oid, rc) : 0;
		/* The counter moved, or the entry is no longer ours. */
		rc = re_read(e, s->oid, (const char *[]){ ke, kx, NULL },
		    &vals, NULL, NULL, 0, NULL, NULL);
		if (rc == 0 && (kvset_get(&vals, ke) == NULL ||
		    kvset_get(&vals, ke)->vlen != RE_ENTRY_LEN ||
		    memcmp(kvset_get(&vals, ke)->v, raw, RE_ENTRY_LEN) != 0 ||
		    kvset_get(&vals, kx) == NULL))
			rc = 1;
		kvset_free(&vals);
		if (rc)
			return rc < 0 ? rc : 0;	/* someone else ended it */
	}
	return re_err("end a move (too many races)", s->oid, -EAGAIN);
}

int
re_moving_wait(struct rados_engine *e, const struct rstore *s,
    const char *name, size_t nlen, int64_t *since)
{
	char ke[RE_KEY_MAX], kx[RE_KEY_MAX], kt[RE_KEY_MAX];
	const char *keys[] = { ke, kx, NULL };
	struct kvset vals = { 0 }, tv = { 0 };
	const struct kv *v, *xv, *t;
	struct xintent x;
	struct rentry en, tg;
	uint8_t raw[RE_ENTRY_LEN];
	int64_t now = re_now();
	int rc;

	if (*since == 0)
		*since = now;
	re_key(ke, s, "e.", name, nlen);
	re_key(kx, s, "x.", name, nlen);
	rc = re_read(e, s->oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	v = rc == 0 ? kvset_get(&vals, ke) : NULL;
	xv = rc == 0 ? kvset_get(&vals, kx) : NULL;
	if (rc < 0 || v == NULL || ren_decode(v->v, v->vlen, &en) < 0 ||
	    !en.moving) {
		kvset_free(&vals);
		return rc == -ENOENT ? 0 : rc;	/* moved on: read again */
	}
	memcpy(raw, v->v, RE_ENTRY_LEN);
	if (xv == NULL || xi_decode(xv, &x) < 0) {
		/* A mark without its intent: never written so; undone. */
		log_warn("rados: %s %s: moving without an intent", s->oid, ke);
		rc = -EIO;
	} else if (now - x.time > RE_MOVE_STALE_NS) {
		/* Its server left it: finish it if the destination names
		 * the object, else undo the mark. */
		re_key(kt, &x.ts, "e.", x.name, x.nlen);
		rc = re_read(e, x.ts.oid, (const char *[]){ kt, NULL }, &tv,
		    NULL, NULL, 0, NULL, NULL);
		t = rc == 0 ? kvset_get(&tv, kt) : NULL;
		if (rc == 0 || rc == -ENOENT)
			rc = xmove_end(e, s, name, nlen, raw, xv, t &&
			    ren_decode(t->v, t->vlen, &tg) == 0 &&
			    tg.id == en.id);
		kvset_free(&tv);
		if (rc == 0)
			log_info("rados: %s %.*s: a move left by its server "
			    "was ended", s->oid, (int)nlen, name);
	} else if (now - *since > RE_MOVE_WAIT_NS) {
		rc = re_err("wait for a move of", ke, -ETIMEDOUT);
	} else {
		struct timespec ts = { 0, 5 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	kvset_free(&vals);
	return rc;
}

/* Step 1: claim the source entry |raw| (mark it, set the intent). */
static int
xmove_claim(struct rados_engine *e, const struct move *mv, const char *kf,
    const uint8_t *raw, uint8_t *marked, uint8_t *xi, size_t *xlen)
{
	char kx[RE_KEY_MAX];
	rados_write_op_t op;
	int rc;

	re_key(kx, mv->fs, "x.", mv->fname, mv->flen);
	memcpy(marked, raw, RE_ENTRY_LEN);	/* as stored, bit 7 set */
	marked[1] |= 0x80;
	*xlen = xi_encode(mv, re_now(), xi);
	if ((op = rados_create_write_op()) == NULL)
		return -ENOMEM;
	re_guard_live(op, mv->fs);
	re_cmp(op, kf, raw, RE_ENTRY_LEN);
	re_cmp(op, kx, "", 0);
	re_set(op, kf, marked, RE_ENTRY_LEN);
	re_set(op, kx, xi, *xlen);
	rc = re_write(e, mv->fs->oid, op);
	return rc < 0 && rc != -ECANCELED ? re_err("claim a move in",
	    mv->fs->oid, rc) : rc;
}

/* Across store objects: claim, name in the destination, unname. */
static int
move_across(struct rados_engine *e, struct job *j, const struct move *mv)
{
	char kf[RE_KEY_MAX], kt[RE_KEY_MAX];
	uint8_t raw[RE_ENTRY_LEN], marked[RE_ENTRY_LEN], xi[XI_MAX];
	uint8_t val[RE_ENTRY_LEN];
	struct kvset fv = { 0 }, tv = { 0 };
	struct rstate fst, tst;
	const struct kv *f, *t;
	struct rentry en, tg;
	struct kv xkv;
	size_t xlen = 0;
	int64_t waited = 0, now;
	int rc = 0, tries, has_f, has_t = 0, claimed = 0, named = 0;
	uint64_t tc = 0, fenced = 0;
	rados_write_op_t op;

	re_key(kf, mv->fs, "e.", mv->fname, mv->flen);
	re_key(kt, mv->ts, "e.", mv->tname, mv->tlen);
	for (tries = 0; tries < RE_RETRIES && !named; tries++) {
		rc = claimed ? 0 : re_store_read(e, mv->fs, kf, NULL, NULL,
		    &fv, &fst);
		if (rc == 0)
			rc = re_store_read(e, mv->ts, kt, NULL, NULL, &tv,
			    &tst);
		if (rc < 0)
			break;
		if ((rc = move_live(e, mv, claimed ? &tst : &fst, &tst)) <= 0) {
			if (rc < 0)
				break;
			continue;
		}
		f = claimed ? NULL : kvset_get(&fv, kf);
		t = kvset_get(&tv, kt);
		if ((!claimed && (rc = entry_of(f, &en, &has_f)) < 0) ||
		    (rc = entry_of(t, &tg, &has_t)) < 0)
			break;
		if (!claimed && !has_f) {
			rc = -ENOENT;
			break;
		}
		if ((!claimed && en.moving) || (has_t && tg.moving)) {
			rc = (!claimed && en.moving) ?
			    re_moving_wait(e, mv->fs, mv->fname, mv->flen,
			    &waited) : re_moving_wait(e, mv->ts, mv->tname,
			    mv->tlen, &waited);
			if (rc < 0)
				break;
			tries--;
			continue;
		}
		rc = move_rules(e, mv, &en, has_t, &tg, &fenced);
		if (rc == 1 && !claimed) {
			rc = re_reply_any_entry(e, j, &en, &tst);
			break;
		}
		if (rc != 0)		/* (1: a second name of a file) */
			break;
		if (!claimed) {
			memcpy(raw, f->v, RE_ENTRY_LEN);
			rc = xmove_claim(e, mv, kf, raw, marked, xi, &xlen);
			if (rc == -ECANCELED)
				continue;
			if (rc < 0)
				break;
			claimed = 1;
		}
		/* Step 2. */
		if (!has_t && tst.has_n && tst.n >= e->shard_cap) {
			rc = re_shard_full(e, mv->ts, tst.n);
			break;
		}
		if ((op = rados_create_write_op()) == NULL) {
			rc = -ENOMEM;
			break;
		}
		now = re_now();
		tc = tst.c;
		re_guard_live(op, mv->ts);
		re_cmp(op, kt, has_t ? t->v : "", has_t ? t->vlen : 0);
		if (has_t)
			re_log(op, mv->ts, ++tc, MST_EV_REMOVE, &tg, mv->tname,
			    mv->tlen);
		en.moving = 0;
		en.change = ++tc;
		en.ctime = (uint64_t)now;
		ren_encode(&en, val);
		re_set(op, kt, val, RE_ENTRY_LEN);
		re_log(op, mv->ts, tc, MST_EV_ADD, &en, mv->tname, mv->tlen);
		re_bump(op, mv->ts, tst.c, tc, now);
		nd_guard_set(op, mv->ts, tst.nd, tst.nd +
		    (en.type == MST_T_DIR) - (has_t && tg.type == MST_T_DIR));
		if (!has_t && tst.has_n)
			re_set_entries(op, mv->ts, tst.n + 1);
		rc = re_write(e, mv->ts->oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0) {
			rc = re_err("move entry into", mv->ts->oid, rc);
			claimed = 0;	/* may have landed: left to roll on */
			break;
		}
		named = 1;
		tst.c = tc;
		tst.t = (uint64_t)now;
	}
	kvset_free(&fv);
	kvset_free(&tv);
	xkv = (struct kv){ .v = (char *)xi, .vlen = xlen };
	if (!named && claimed) {	/* undo step 1 */
		int r2 = xmove_end(e, mv->fs, mv->fname, mv->flen, marked,
		    &xkv, 0);

		if (r2 < 0)
			log_warn("rados: undoing a move's claim in %s: %s "
			    "(ended by the next one to meet it)", mv->fs->oid,
			    strerror(-r2));
		if (rc == 1)	/* the target is another name of the file */
			rc = re_reply_any_entry(e, j, &en, &tst);
	}
	if (!named && rc != 0)
		unfence(e, mv, fenced);
	if (!named)
		return tries == RE_RETRIES ? re_err("move (too many races)",
		    mv->ts->oid, -EAGAIN) : rc;
	/* Step 3. */
	rc = xmove_end(e, mv->fs, mv->fname, mv->flen, marked, &xkv, 1);
	if (rc < 0)
		log_warn("rados: a move into %s is not finished in %s: %s "
		    "(finished by the next one to meet it)", mv->ts->oid,
		    mv->fs->oid, strerror(-rc));
	rc = re_store_read(e, mv->fs, NULL, NULL, NULL, &fv, &fst);
	kvset_free(&fv);
	if (rc < 0)
		fst.c = 0;
	move_cleanup(e, mv, &en, has_t, &tg);
	return move_reply(e, j, mv, &en, has_t, &tg, fst.c, tc, &tst);
}

static int
do_move(struct rados_engine *e, struct job *j, const struct move *mv)
{
	struct kvset vals = { 0 };
	pthread_mutex_t *mu = re_stripe(e, mv->fs->oid);
	int rc;

	if (strcmp(mv->fs->oid, mv->ts->oid) != 0)
		return move_across(e, j, mv);
	pthread_mutex_lock(mu);
	rc = move_one(e, j, mv, &vals);
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
	/* A flag change keeps the name before ':': one shard, one op. */
	if (rc == 0)
		rc = re_shard(e, &fs, q->from_name.p, q->from_name.len);
	if (rc == 0)
		rc = re_shard(e, &ts, q->to_name.p, q->to_name.len);
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

/* The cluster-wide lock of directory moves across parents. */
static int
rename_lock(struct rados_engine *e, char cookie[17], int take)
{
	static atomic_uint_fast64_t n;
	struct timeval tv = { 30, 0 };
	int64_t end = re_now() + RE_MOVE_WAIT_NS * 2;
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	int rc;

	if (!take) {
		rc = rados_unlock(e->io, "mst.renamelock", "rename", cookie);
		if (rc < 0)
			log_warn("rados: unlocking mst.renamelock: %s (it "
			    "expires in 30 s)", strerror(-rc));
		return 0;
	}
	re_hex(cookie, e->inc << 36 | (atomic_fetch_add(&n, 1) &
	    0xfffffffffull));
	for (;;) {
		rc = rados_lock_exclusive(e->io, "mst.renamelock", "rename",
		    cookie, "directory move across parents", &tv, 0);
		if (rc == 0)
			return 0;
		if (rc != -EBUSY && rc != -EEXIST)
			return re_err("lock", "mst.renamelock", rc);
		if (re_now() > end)
			return re_err("lock", "mst.renamelock", -ETIMEDOUT);
		nanosleep(&ts, NULL);
	}
}

/* EINVAL when directory |id| is |to|'s directory or one of its
 * ancestors (under the rename lock, ancestry does not change). */
static int
not_into_itself(struct rados_engine *e, uint64_t id, struct mst_str to)
{
	struct rres r;
	size_t i, dl = re_dir_len(to.p, to.len);
	int rc;

	for (i = 1; i <= dl; i++) {
		if (i < dl && to.p[i] != '/')
			continue;
		rc = re_resolve_fresh(e, to.p, i, &r);
		if (rc < 0)
			return rc;
		if (r.id == id)
			return -EINVAL;
	}
	return 0;
}

int
re_op_rename(struct rados_engine *e, struct job *j)
{
	const struct mst_rename_req *q = &j->req.rename;
	struct rres from, tdir;
	struct rstore ts;
	struct move mv;
	const char *tname;
	char cookie[17];
	size_t tlen;
	int rc = re_resolve_fresh(e, q->from.p, q->from.len, &from), locked;

	if (rc == 0)
		rc = re_parent_of(e, q->to, &tdir, &ts, &tname, &tlen);
	if (rc < 0)
		return rc;
	if (from.root)
		return -EBUSY;
	/* A directory whose name makes it new/ or cur/ (or stops) would
	 * change where its entries live. */
	if (from.type == MST_T_DIR && (re_is_sub_name(from.name, from.namelen) ||
	    re_is_sub_name(tname, tlen)) && (from.namelen != tlen ||
	    memcmp(from.name, tname, tlen) != 0 || from.parent != tdir.id))
		return -EOPNOTSUPP;
	locked = from.type == MST_T_DIR && from.parent != tdir.id;
	if (locked) {
		if ((rc = rename_lock(e, cookie, 1)) < 0)
			return rc;
		rc = re_resolve_fresh(e, q->from.p, q->from.len, &from);
		if (rc == 0)
			rc = from.type == MST_T_DIR ?
			    not_into_itself(e, from.id, q->to) : -EAGAIN;
		if (rc < 0) {
			rename_lock(e, cookie, 0);
			return rc == -EAGAIN ? re_op_rename(e, j) : rc;
		}
	}
	mv = (struct move){ .fs = &from.pstore, .ts = &ts,
		.fname = from.name, .flen = from.namelen, .tname = tname,
		.tlen = tlen, .noreplace = (q->flags & MST_RN_NOREPLACE) != 0,
		.fdir = q->from.p, .fdlen = re_dir_len(q->from.p, q->from.len),
		.tdir = q->to.p, .tdlen = re_dir_len(q->to.p, q->to.len),
		.dir_ok = 1 };
	rc = do_move(e, j, &mv);
	if (locked)
		rename_lock(e, cookie, 0);
	return rc;
}

/* --- SETATTR, FSETATTR --- */

/*
 * SETATTR/FSETATTR of the message |name| in store |s| (ext4's rules as
 * the local engine's file_set_attrs: a size other than its own is
 * EPERM, any change sets ctime): ONE write guarded by the entry and the
 * counter, with a CHANGE record. |dir| names the directory for the
 * notice (NULL: none, FSETATTR by id).
 */
static int
msg_setattr(struct rados_engine *e, struct job *j, const struct rstore *s,
    const char *name, size_t nlen, const char *dir, size_t dlen,
    const struct mst_fsetattr_req *q)
{
	char ke[RE_KEY_MAX];
	uint8_t val[RE_ENTRY_LEN];
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rentry en;
	struct rstate st;
	rados_write_op_t op;
	uint32_t valid = q->valid;
	int64_t now, waited = 0;
	int rc, tries;

	re_key(ke, s, "e.", name, nlen);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, s, ke, NULL, NULL, &vals, &st);
		if (rc == 0 && !st.live) {
			rc = re_not_live(e, s, &st);
			if (rc == 0)
				continue;
		}
		if (rc < 0)
			break;
		if ((v = kvset_get(&vals, ke)) == NULL) {
			rc = -ENOENT;
			break;
		}
		if (ren_decode(v->v, v->vlen, &en) < 0) {
			rc = re_err("decode entry", ke, -EIO);
			break;
		}
		if (en.type != MST_T_MSG) {
			rc = -ENOENT;	/* replaced since it was resolved */
			break;
		}
		if (en.moving) {
			rc = re_moving_wait(e, s, name, nlen, &waited);
			if (rc < 0)
				break;
			tries--;
			continue;
		}
		if ((valid & MST_SA_SIZE) && q->size != en.size) {
			rc = -EPERM;	/* message bodies are immutable */
			break;
		}
		valid &= ~MST_SA_SIZE;
		if (valid == 0) {
			rc = re_reply_entry(j, &en, &st);
			break;
		}
		now = re_now();
		if (valid & MST_SA_MODE)
			en.mode = q->mode & 07777;
		if (valid & MST_SA_UID)
			en.uid = q->uid;
		if (valid & MST_SA_GID)
			en.gid = q->gid;
		if (valid & MST_SA_MTIME)
			en.mtime = q->mtime_ns;
		if (valid & MST_SA_ATIME)
			en.atime = q->atime_ns;
		en.ctime = (uint64_t)now;
		en.change = st.c + 1;
		ren_encode(&en, val);
		if ((op = rados_create_write_op()) == NULL) {
			rc = -ENOMEM;
			break;
		}
		re_guard_live(op, s);
		re_cmp(op, ke, v->v, v->vlen);
		re_bump(op, s, st.c, st.c + 1, -1);	/* the dir's mtime stays */
		re_set(op, ke, val, RE_ENTRY_LEN);
		re_log(op, s, st.c + 1, MST_EV_CHANGE, &en, name, nlen);
		rc = re_write(e, s->oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0) {
			rc = re_err("set attributes in", s->oid, rc);
			break;
		}
		st.c++;
		rc = re_reply_entry(j, &en, &st);
		if (rc == 0 && dir)
			rc = re_notice(j, dir, dlen, name, nlen, MST_EV_CHANGE,
			    en.id, st.c);
		break;
	}
	kvset_free(&vals);
	if (tries == RE_RETRIES)
		rc = re_err("set attributes (too many races)", s->oid, -EAGAIN);
	return rc;
}

/* FSETATTR of message |id|: its store and name from its body's loc
 * ("OID KEY"), the store's directory from its st. */
static int
msg_fsetattr(struct rados_engine *e, struct job *j,
    const struct mst_fsetattr_req *q)
{
	char oid[RE_OID_MAX], key[RE_KEY_MAX], kst[RE_KEY_MAX];
	char dir[MST_PATH_MAX + 1];
	const char *keys[] = { kst, NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rstore s;
	size_t pl;
	int rc = re_msg_loc(e, q->id, &s, key), n;

	if (rc < 0)
		return rc;
	pl = strlen(s.pfx);
	if (strncmp(key + pl, "e.", 2) != 0)
		return -EIO;
	re_key(kst, &s, "st", NULL, 0);
	rc = re_read(e, s.oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	v = rc == 0 ? kvset_get(&vals, kst) : NULL;
	if (rc == 0 && (v == NULL || v->vlen != 17 ||
	    re_unhex(v->v + 1, 16, &s.dir) < 0))
		rc = -ENOENT;
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	/* Its directory's path for the notice (none if unknown). */
	re_oid(oid, 'b', q->id);
	n = rados_getxattr(e->io, oid, "dir", dir, sizeof dir - 1);
	return msg_setattr(e, j, &s, key + pl + 2, strlen(key + pl + 2),
	    n >= 0 ? dir : NULL, n >= 0 ? (size_t)n : 0, q);
}


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
	if (r.type == MST_T_FILE)	/* notices for each of its names */
		return re_file_setattr(e, j, r.id, &f);
	if (r.type == MST_T_MSG)
		return msg_setattr(e, j, &r.pstore, r.name, r.namelen,
		    q->path.p, re_dir_len(q->path.p, q->path.len), &f);
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
			return msg_fsetattr(e, j, q);
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
