/*
 * engine_rados_ops.c - what each operation does to the RADOS objects of
 * the rados back-end (layout: engine_rados.c), with the replies and
 * errors of the local engine (eng_ops.c) built by the shared reply.c.
 * Every mutation is read, decide, then ONE guarded write op on one store
 * object; -ECANCELED means another server (or a stale read) got there
 * first, and the operation reads and decides again. Bodies are written
 * before the entry that names them and removed after the entry that
 * named them is gone, so an entry never points at a missing body; a
 * failure in between leaves at most an orphan body (scrub's to remove).
 *
 * Here: MKDIR LOOKUP READDIR RMDIR STATFS DELIVER LIST FETCH STAT
 * WATCH, GETATTR by id, and the dispatch. EXPUNGE SETINFO RENAME SETATTR
 * FSETATTR are engine_rados_move.c's, ordinary files (PUT GET UNLINK
 * WRITE READ, their attributes) engine_rados_file.c's, LINK OPEN CLOSE
 * engine_rados_link.c's, LOCK engine_rados_lock.c's, ADMIN
 * engine_rados_admin.c's.
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

/* Read a store's state keys and up to three more. */
int
re_store_read(struct rados_engine *e, const struct rstore *s, const char *k1,
    const char *k2, const char *k3, struct kvset *vals, struct rstate *st)
{
	char a[RE_KEY_MAX], b[RE_KEY_MAX], c[RE_KEY_MAX], d[RE_KEY_MAX],
	    f[RE_KEY_MAX], g[RE_KEY_MAX];
	const char *keys[] = { a, b, c, d, f, g, k1, k2, k3, NULL };
	int rc;

	re_key(g, s, "n", NULL, 0);
	re_key(a, s, "st", NULL, 0);
	re_key(b, s, "c", NULL, 0);
	re_key(c, s, "t", NULL, 0);
	re_key(d, s, "nd", NULL, 0);
	re_key(f, s, "lf", NULL, 0);
	kvset_free(vals);
	rc = re_read(e, s->oid, keys, vals, NULL, NULL, 0, NULL, NULL);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	re_state(s, vals, rc == 0, st);
	return 0;
}

/*
 * The store is not live for its directory: a MKDIR that stopped before
 * claiming a new/cur store is finished here (its parent names it); a
 * removed directory is ENOENT. Returns 0 to read again.
 */
int
re_not_live(struct rados_engine *e, const struct rstore *s,
    const struct rstate *st)
{
	if (st->dead)
		return -ENOENT;
	if (s->pfx[0] == '\0')
		return -ENOENT;		/* a plain dir's head is gone */
	return re_claim(e, s);
}

int
re_reply_entry(struct job *j, const struct rentry *en, const struct rstate *st)
{
	struct mst_attr_rep r = { .dir_change = st->c, .dir_mtime_ns = st->t };

	ren_attr(en, &r.attr);
	return reply_attr_rep(j, &r);
}

/* The same for an entry of any type: a file's or a directory's
 * attributes live with it, not in the entry. */
int
re_reply_any_entry(struct rados_engine *e, struct job *j,
    const struct rentry *en, const struct rstate *st)
{
	struct mst_attr_rep r = { .dir_change = st->c, .dir_mtime_ns = st->t };
	int rc = re_entry_attr(e, en, &r.attr);

	return rc ? rc : reply_attr_rep(j, &r);
}

int
re_notice(struct job *j, const char *dir, size_t dlen, const char *name,
    size_t nlen, uint8_t ev, uint64_t id, uint64_t change)
{
	char d[PATHBUF], n[MST_NAME_MAX + 1];

	if (dlen >= sizeof d || nlen > MST_NAME_MAX)
		return 0;
	memcpy(d, dir, dlen);
	d[dlen] = '\0';
	memcpy(n, name, nlen);
	n[nlen] = '\0';
	return job_add_notice(j, d, n, ev, id, change);
}

/* The directory part of |path| (everything before the last '/'). */
size_t
re_dir_len(const char *path, size_t len)
{
	while (len > 0 && path[len - 1] != '/')
		len--;
	return len ? len - 1 : 0;
}

void
re_remove_body(struct rados_engine *e, uint64_t id)
{
	char oid[RE_OID_MAX], mbox[MST_PATH_MAX + 1];
	int quota = 1, n = 0, rc;
	uint64_t size = 0;

	re_oid(oid, 'b', id);
	/* Its mailbox's usage gets the size back, once: only the remove
	 * that found the body gives it. */
	if ((n = rados_getxattr(e->io, oid, "mbox", mbox,
	    sizeof mbox - 1)) < 0 || rados_stat(e->io, oid, &size, NULL) < 0)
		quota = 0;
	rc = rados_remove(e->io, oid);
	if (rc < 0 && rc != -ENOENT)
		log_warn("rados: removing body %s: %s (left for scrub)", oid,
		    strerror(-rc));
	if (rc == 0 && quota)
		re_quota_give(e, mbox, (size_t)n, size);
}

/* --- DELIVER --- */

#define RE_IDEM_MAX (2 + RE_ENTRY_LEN + 2 + MST_NAME_MAX)

static void
idem_key(char *out, const uint8_t idem[MST_IDEM_LEN])
{
	unsigned i;

	memcpy(out, "i.", 2);
	for (i = 0; i < MST_IDEM_LEN; i++)
		snprintf(out + 2 + 2 * i, 3, "%02x", idem[i]);
}

/* The body object, with loc = "STORE-OID ENTRY-KEY" for GETATTR by id
 * and dir = its directory's path for notices of FSETATTR by id. */
static int
write_body(struct rados_engine *e, uint64_t id, const struct job *j,
    uint64_t sum, const struct rstore *s, const char *key, const char *dir)
{
	rados_write_op_t op = rados_create_write_op();
	char oid[RE_OID_MAX], h[17], loc[RE_OID_MAX + 2 + RE_KEY_MAX];
	int rc;

	if (op == NULL)
		return -ENOMEM;
	re_oid(oid, 'b', id);
	re_hex(h, sum);
	snprintf(loc, sizeof loc, "%s %s", s->oid, key);
	rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	rados_write_op_write_full(op, j->body_len ? (const char *)j->body : "",
	    j->body_len);
	rados_write_op_setxattr(op, "sum", h, 16);
	rados_write_op_setxattr(op, "loc", loc, strlen(loc));
	rados_write_op_setxattr(op, "dir", dir, strlen(dir));
	rados_write_op_setxattr(op, "mbox", j->req.deliver.mailbox.p,
	    j->req.deliver.mailbox.len);
	rc = re_write(e, oid, op);
	return rc < 0 ? re_err("write body", oid, rc) : 0;
}

static int
op_deliver(struct rados_engine *e, struct job *j)
{
	const struct mst_deliver_req *d = &j->req.deliver;
	char path[PATHBUF], ke[RE_KEY_MAX], ki[40];
	uint8_t rec[RE_IDEM_MAX], raw[RE_ENTRY_LEN];
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rstate st;
	struct rentry en;
	struct rstore s;
	struct rres r;
	pthread_mutex_t *mu;
	rados_write_op_t op;
	int64_t now;
	uint64_t id = 0;
	int rc, tries, body = 0;

	rc = re_mail_dir(e, d->mailbox, d->folder, d->sub, path, sizeof path,
	    &r);
	if (rc == 0)
		rc = re_dir_store(&r, &s);
	if (rc == 0)		/* the shard of the name: its rules are there */
		rc = re_shard(e, &s, d->name.p, d->name.len);
	if (rc < 0)
		return rc;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	re_key(ke, &s, "e.", d->name.p, d->name.len);
	idem_key(ki, d->idem);
	/* The body first, outside the store's lock: a retry that turns out
	 * to be known, or a name that is taken, removes it again. */
	rc = re_quota_take(e, d->mailbox.p, d->mailbox.len, j->body_len);
	if (rc == -EDQUOT) {
		/* A retry of a stored delivery is answered, not refused. */
		rc = re_store_read(e, &s, ki, NULL, NULL, &vals, &st);
		v = rc == 0 ? kvset_get(&vals, ki) : NULL;
		rc = v == NULL ? (rc ? rc : -EDQUOT) :
		    v->vlen >= 2 + RE_ENTRY_LEN ?
		    ren_decode(v->v + 2, RE_ENTRY_LEN, &en) : -EIO;
		if (rc == 0)
			rc = re_reply_entry(j, &en, &st);
		kvset_free(&vals);
		return rc;
	}
	if (rc < 0)
		return rc;
	rc = re_alloc_id(e, &id);
	if (rc == 0)
		rc = write_body(e, id, j, d->checksum, &s, ke, path);
	if (rc < 0) {
		re_quota_give(e, d->mailbox.p, d->mailbox.len, j->body_len);
		return rc;
	}
	body = 1;
	mu = re_stripe(e, s.oid);
	pthread_mutex_lock(mu);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, &s, ke, ki, NULL, &vals, &st);
		if (rc < 0)
			break;
		if ((v = kvset_get(&vals, ki)) != NULL) {
			/* A retry: answer like the first delivery. */
			rc = v->vlen >= 2 + RE_ENTRY_LEN ?
			    ren_decode(v->v + 2, RE_ENTRY_LEN, &en) : -EIO;
			if (rc == 0)
				rc = re_reply_entry(j, &en, &st);
			break;
		}
		if (!st.live) {
			rc = re_not_live(e, &s, &st);
			if (rc < 0)
				break;
			continue;
		}
		if (kvset_get(&vals, ke)) {
			rc = -EEXIST;
			break;
		}
		if (st.has_n && st.n >= e->shard_cap) {
			rc = re_shard_full(e, &s, st.n);
			break;
		}
		now = re_now();
		en = (struct rentry){ .type = MST_T_MSG, .id = id,
			.size = j->body_len, .checksum = d->checksum,
			.mode = d->mode, .uid = d->uid, .gid = d->gid,
			.mtime = d->mtime_ns ? d->mtime_ns : (uint64_t)now,
			.ctime = (uint64_t)now, .change = st.c + 1 };
		en.atime = en.mtime;
		memcpy(en.idem, d->idem, MST_IDEM_LEN);
		ren_encode(&en, raw);
		rec[0] = 'I';
		rec[1] = d->sub;
		memcpy(rec + 2, raw, RE_ENTRY_LEN);
		rec[2 + RE_ENTRY_LEN] = (uint8_t)d->name.len;
		rec[3 + RE_ENTRY_LEN] = (uint8_t)(d->name.len >> 8);
		memcpy(rec + 4 + RE_ENTRY_LEN, d->name.p, d->name.len);
		if ((op = rados_create_write_op()) == NULL) {
			rc = -ENOMEM;
			break;
		}
		re_guard_live(op, &s);
		re_cmp(op, ke, "", 0);
		re_cmp(op, ki, "", 0);
		re_bump(op, &s, st.c, st.c + 1, now);
		if (st.has_n)
			re_set_entries(op, &s, st.n + 1);
		re_set(op, ke, raw, RE_ENTRY_LEN);
		re_set(op, ki, rec, 4 + RE_ENTRY_LEN + d->name.len);
		re_log(op, &s, st.c + 1, MST_EV_ADD, &en, d->name.p,
		    d->name.len);
		rc = re_write(e, s.oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0) {
			/* A timed-out write may still land: its entry would
			 * name this body, so the body stays (and its
			 * reservation: usage too high, never too low). */
			rc = re_err("deliver into", s.oid, rc);
			body = 0;
			break;
		}
		st.c++;
		st.t = (uint64_t)now;
		atomic_fetch_add(&e->delivered, 1);
		rc = re_reply_entry(j, &en, &st);
		if (rc == 0)
			rc = re_notice(j, path, strlen(path), d->name.p,
			    d->name.len, MST_EV_ADD, id, st.c);
		body = 0;	/* named now: it stays */
		break;
	}
	pthread_mutex_unlock(mu);
	if (tries == RE_RETRIES)
		rc = re_err("deliver (too many races)", s.oid, -EAGAIN);
	kvset_free(&vals);
	if (body)
		re_remove_body(e, id);
	return rc;
}

/* --- LIST, READDIR --- */

/* One log record, decoded. */
struct lrec {
	uint64_t c;
	uint8_t ev;
	struct rentry en;
	const char *name;
	size_t namelen;
};

static int
lrec_cmp(const void *a, const void *b)
{
	const struct lrec *x = a, *y = b;
	size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
	int d = memcmp(x->name, y->name, n);

	if (d)
		return d;
	if (x->namelen != y->namelen)
		return x->namelen < y->namelen ? -1 : 1;
	return x->c < y->c ? -1 : x->c > y->c;
}

static int
same_name(const struct lrec *a, const struct lrec *b)
{
	return a->namelen == b->namelen &&
	    memcmp(a->name, b->name, a->namelen) == 0;
}

static int
lrec_decode(const struct kv *v, size_t pfxlen, struct lrec *r)
{
	const uint8_t *p = (const uint8_t *)v->v;

	if (v->klen != pfxlen + 16 || v->vlen < 4 + RE_ENTRY_LEN ||
	    p[0] != 'L' || re_unhex(v->k + pfxlen, 16, &r->c) < 0 ||
	    ren_decode(p + 2, RE_ENTRY_LEN, &r->en) < 0)
		return -EIO;
	r->ev = p[1];
	r->namelen = (size_t)p[2 + RE_ENTRY_LEN] |
	    (size_t)p[3 + RE_ENTRY_LEN] << 8;
	if (v->vlen != 4 + RE_ENTRY_LEN + r->namelen)
		return -EIO;
	r->name = (const char *)p + 4 + RE_ENTRY_LEN;
	return 0;
}

/* The attributes of an entry for a listing or LOOKUP. */
int
re_entry_attr(struct rados_engine *e, const struct rentry *en,
    struct mst_attr *a)
{
	int rc;

	if (en->type == MST_T_FILE) {
		rc = re_file_attr(e, en->id, a, NULL);
		if (rc != -ENOENT)
			return rc;
	}
	if (en->type != MST_T_DIR) {	/* or a file unlinked meanwhile */
		ren_attr(en, a);
		return 0;
	}
	rc = re_dir_attr(e, en->id, a, NULL);
	if (rc == -ENOENT) {		/* removed meanwhile: what it was */
		ren_attr(en, a);
		a->size = 4096;
		a->nlink = 2;
		return 0;
	}
	return rc;
}

/* Deltas after |since| from the log of |s|'s |nsh| shards (one: |s|
 * as it is): the newest record per name (a name's records are all in
 * its shard). */
static int
list_delta(struct rados_engine *e, struct job *j, const struct rstore *s0,
    unsigned nsh, const struct rstate *st, uint64_t since)
{
	struct kvset page = { 0 };
	struct lrec *recs = NULL, *x;
	struct mst_list_entry en;
	struct lister l;
	struct rstore sk = *s0, *s = &sk;
	char after[RE_KEY_MAX], pfx[RE_KEY_MAX], h[17];
	size_t n = 0, i, k, last, pl;
	int rc = 0, more = 1, pass, found;
	uint64_t present;
	unsigned sh;

	re_key(pfx, s, "l.", NULL, 0);
	pl = strlen(pfx);
	for (sh = 0; sh < nsh && rc == 0; sh++) {
		if (nsh > 1)
			re_shard_k(s, sh);
		re_hex(h, since);
		re_key(after, s, "l.", h, 16);
		for (more = 1; more && rc == 0; ) {
			rc = re_read(e, s->oid, NULL, NULL, after, pfx, 1024,
			    &page, &more);
			if (rc == -ENOENT && nsh > 1)
				rc = more = 0;	/* never written */
			if (rc == 0 && page.n)
				snprintf(after, sizeof after, "%s",
				    page.a[page.n - 1].k);
		}
	}
	if (rc < 0)
		goto out;
	recs = calloc(page.n ? page.n : 1, sizeof *recs);
	if (recs == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < page.n; i++) {
		if (lrec_decode(&page.a[i], pl, &recs[n]) < 0) {
			rc = re_err("decode log record", page.a[i].k, -EIO);
			goto out;
		}
		if (recs[n].c > since && recs[n].c <= st->c)
			n++;
	}
	qsort(recs, n, sizeof *recs, lrec_cmp);
	lister_init(&l, j, st->c, st->t, 0);
	/* PRESENT first, then REMOVED, as the local engine lists. */
	for (pass = 0; pass < 2 && rc == 0; pass++) {
		for (i = 0; i < n && rc == 0; i = last + 1) {
			for (last = i; last + 1 < n &&
			    same_name(&recs[last + 1], &recs[i]); last++)
				;
			x = &recs[last];
			present = x->ev != MST_EV_REMOVE ? x->en.id : 0;
			memset(&en, 0, sizeof en);
			en.name = (struct mst_str){ x->name,
				(uint16_t)x->namelen };
			if (pass == 0) {
				if (!present)
					continue;
				en.kind = MST_LE_PRESENT;
				rc = re_entry_attr(e, &x->en, &en.attr);
				if (rc == 0 && x->en.type == MST_T_MSG)
					en.attr.change = x->c;
				if (rc == 0)
					lister_add(&l, &en);
				continue;
			}
			/* The newest removal of another object than the one
			 * the name holds now. */
			for (k = last + 1, found = 0; k > i && !found; k--)
				found = recs[k - 1].ev == MST_EV_REMOVE &&
				    recs[k - 1].en.id != present;
			if (!found)
				continue;
			en.kind = MST_LE_REMOVED;
			en.attr.type = recs[k].en.type;
			en.attr.id = recs[k].en.id;
			en.attr.change = recs[k].c;
			lister_add(&l, &en);
		}
	}
	if (rc == 0)
		rc = lister_finish(&l);
	else
		(void)lister_finish(&l);	/* frees; rc already says */
out:
	free(recs);
	kvset_free(&page);
	return rc;
}

/* The entries of |page| (keys: a prefix of |pl| bytes + the name), as
 * PRESENT. */
static int
list_add_page(struct rados_engine *e, struct lister *l,
    const struct kvset *page, size_t pl)
{
	struct mst_list_entry en;
	struct rentry re;
	size_t i;
	int rc = 0;

	for (i = 0; i < page->n && rc == 0; i++) {
		rc = ren_decode(page->a[i].v, page->a[i].vlen, &re);
		if (rc < 0)
			return re_err("decode entry", page->a[i].k, rc);
		memset(&en, 0, sizeof en);
		en.kind = MST_LE_PRESENT;
		en.name = (struct mst_str){ page->a[i].k + pl,
			(uint16_t)(page->a[i].klen - pl) };
		rc = re_entry_attr(e, &re, &en.attr);
		if (rc == 0)
			lister_add(l, &en);
	}
	return rc;
}

/* A full listing; pages of 1024 entries, each re-reading the counter;
 * if it moved, start again (three times), then take what was read. */
static int
list_full(struct rados_engine *e, struct job *j, const struct rstore *s)
{
	char pfx[RE_KEY_MAX], after[RE_KEY_MAX], kc[RE_KEY_MAX];
	char kt[RE_KEY_MAX], kst[RE_KEY_MAX];
	const char *keys[] = { kc, kt, kst, NULL };
	struct kvset page = { 0 }, vals = { 0 };
	struct rstate st, first = { 0 };
	struct lister l;
	size_t i, pl;
	int rc = 0, more, tries, moved;

	re_key(pfx, s, "e.", NULL, 0);
	re_key(kc, s, "c", NULL, 0);
	re_key(kt, s, "t", NULL, 0);
	re_key(kst, s, "st", NULL, 0);
	pl = strlen(pfx);
	for (tries = 0; tries < 4; tries++) {
		kvset_free(&page);
		snprintf(after, sizeof after, "%s", pfx);
		more = 1;
		moved = 0;
		for (i = 0; more; i++) {
			kvset_free(&vals);
			rc = re_read(e, s->oid, keys, &vals, after, pfx, 1024,
			    &page, &more);
			if (rc < 0)
				break;
			re_state(s, &vals, 1, &st);
			if (i == 0)
				first = st;
			else if (st.c != first.c)
				moved = 1;
			if (page.n)
				snprintf(after, sizeof after, "%s",
				    page.a[page.n - 1].k);
		}
		if (rc < 0 || !moved)
			break;
	}
	kvset_free(&vals);
	if (rc == 0 && !first.live)
		rc = -ENOENT;
	if (rc < 0) {
		kvset_free(&page);
		return rc == -ENOENT && first.exists == 0 ? -ENOENT : rc;
	}
	lister_init(&l, j, first.c, first.t, MST_LIST_FULL);
	rc = list_add_page(e, &l, &page, pl);
	if (rc == 0)
		rc = lister_finish(&l);
	else
		(void)lister_finish(&l);	/* frees; rc already says */
	kvset_free(&page);
	return rc;
}

/* FULL of a sharded folder at counter |st|->c: every shard's entries,
 * read after the raise (engine_rados_shard.c), so that each change up
 * to the counter is in; later ones come again in the next delta. */
static int
list_full_sharded(struct rados_engine *e, struct job *j,
    const struct rstore *s0, unsigned nsh, const struct rstate *st)
{
	char pfx[RE_KEY_MAX], after[RE_KEY_MAX];
	struct kvset page = { 0 };
	struct rstore s = *s0;
	struct lister l;
	size_t pl;
	unsigned sh;
	int rc = 0, more;

	re_key(pfx, &s, "e.", NULL, 0);
	pl = strlen(pfx);
	lister_init(&l, j, st->c, st->t, MST_LIST_FULL);
	for (sh = 0; sh < nsh && rc == 0; sh++) {
		re_shard_k(&s, sh);
		snprintf(after, sizeof after, "%s", pfx);
		for (more = 1; more && rc == 0; ) {
			kvset_free(&page);
			rc = re_read(e, s.oid, NULL, NULL, after, pfx, 1024,
			    &page, &more);
			if (rc == -ENOENT)
				rc = more = 0;	/* never written */
			if (rc == 0 && page.n)
				snprintf(after, sizeof after, "%s",
				    page.a[page.n - 1].k);
			if (rc == 0)
				rc = list_add_page(e, &l, &page, pl);
		}
	}
	kvset_free(&page);
	if (rc == 0)
		rc = lister_finish(&l);
	else
		(void)lister_finish(&l);	/* frees; rc already says */
	return rc;
}

/* LIST of a new/ or cur/ in several shards: raise the counters to the
 * highest, then the delta or the whole. */
static int
list_sharded(struct rados_engine *e, struct job *j, struct rstore *s,
    unsigned nsh, uint64_t since)
{
	struct rstate st;
	int rc, tries;

	re_shard_k(s, 0);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_dir_state(e, s, &st, 1);
		if (rc < 0)
			return rc;
		if (st.live)
			break;
		if ((rc = re_not_live(e, s, &st)) < 0)
			return rc;
	}
	if (tries == RE_RETRIES)
		return re_err("list (too many races)", s->oid, -EAGAIN);
	/* A since above the counter is not this folder's: in full. */
	if (since && since >= st.lf && since <= st.c)
		return list_delta(e, j, s, nsh, &st, since);
	return list_full_sharded(e, j, s, nsh, &st);
}

static int
list_dir(struct rados_engine *e, struct job *j, const struct rres *r,
    uint64_t since)
{
	struct kvset vals = { 0 };
	struct rstate st;
	struct rstore s;
	unsigned nsh;
	int rc = re_dir_store(r, &s);

	if (rc == 0)
		rc = re_shards(e, &s, &nsh);
	if (rc < 0)
		return rc;
	if (nsh > 1)
		return list_sharded(e, j, &s, nsh, since);
	if (since) {
		rc = re_store_read(e, &s, NULL, NULL, NULL, &vals, &st);
		kvset_free(&vals);
		if (rc < 0)
			return rc;
		if (!st.live) {
			rc = re_not_live(e, &s, &st);
			return rc < 0 ? rc : list_full(e, j, &s);
		}
		if (since >= st.lf && since <= st.c)
			return list_delta(e, j, &s, 1, &st, since);
	}
	rc = list_full(e, j, &s);
	if (rc == -ENOENT && s.pfx[0]) {	/* a store never claimed */
		rc = re_claim(e, &s);
		if (rc == 0)
			rc = list_full(e, j, &s);
	}
	return rc;
}

static int
op_list(struct rados_engine *e, struct job *j)
{
	const struct mst_list_req *q = &j->req.list;
	char path[PATHBUF];
	struct rres r;
	int rc = re_mail_dir(e, q->mailbox, q->folder, q->sub, path,
	    sizeof path, &r);

	return rc ? rc : list_dir(e, j, &r, q->since);
}

static int
op_readdir(struct rados_engine *e, struct job *j)
{
	struct rres r;
	int rc = re_resolve(e, j->req.path.path.p, j->req.path.path.len, &r);

	return rc ? rc : list_dir(e, j, &r, 0);
}

/* --- LOOKUP, STAT, STATFS, WATCH --- */

/* attr_rep of a resolved path with its parent's dir fields. */
static int
reply_resolved(struct rados_engine *e, struct job *j, const struct rres *r)
{
	struct mst_attr_rep a = { 0 };
	struct kvset vals = { 0 };
	struct rstate st;
	int rc;

	if (r->root) {
		rc = re_dir_attr(e, RE_ROOT_ID, &a.attr, NULL);
		a.dir_change = a.attr.change;
		a.dir_mtime_ns = a.attr.mtime_ns;
		return rc ? rc : reply_attr_rep(j, &a);
	}
	/* A directory must still be there (a removed one is ENOENT, not
	 * what it was, as a listing would show it). */
	rc = r->type == MST_T_DIR ? re_dir_attr(e, r->id, &a.attr, NULL) :
	    re_entry_attr(e, &r->en, &a.attr);
	if (rc == 0)
		rc = re_store_read(e, &r->pstore, NULL, NULL, NULL, &vals, &st);
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	a.dir_change = st.c;
	a.dir_mtime_ns = st.t;
	return reply_attr_rep(j, &a);
}

static int
op_lookup(struct rados_engine *e, struct job *j)
{
	struct rres r;
	int rc = re_resolve(e, j->req.path.path.p, j->req.path.path.len, &r);

	return rc ? rc : reply_resolved(e, j, &r);
}

static int
op_stat(struct rados_engine *e, struct job *j)
{
	const struct mst_msg_ref *m = &j->req.ref;
	char path[PATHBUF], ke[RE_KEY_MAX];
	struct kvset vals = { 0 };
	struct mst_attr_rep a = { 0 };
	const struct kv *v;
	struct rentry en;
	struct rstate st;
	struct rstore s;
	struct rres r;
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
	if (rc == 0 && st.dead)
		rc = -ENOENT;
	if (rc == 0 && (v = kvset_get(&vals, ke)) == NULL)
		rc = -ENOENT;
	if (rc == 0)
		rc = ren_decode(v->v, v->vlen, &en);
	if (rc == 0)
		rc = re_entry_attr(e, &en, &a.attr);
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	a.dir_change = st.c;
	a.dir_mtime_ns = st.t;
	return reply_attr_rep(j, &a);
}

static int
op_statfs(struct rados_engine *e, struct job *j)
{
	struct mst_statfs_rep r = { .max_body = e->conf.max_body,
		.name_max = MST_NAME_MAX };
	struct rados_cluster_stat_t cs;
	uint64_t freeb;
	int rc = rados_cluster_stat(e->cl, &cs);

	if (rc < 0)
		return re_err("cluster stat", "-", rc);
	r.bytes_total = cs.kb * 1024;
	freeb = cs.kb_avail * 1024;
	r.bytes_free = freeb > e->conf.reserve_bytes ?
	    freeb - e->conf.reserve_bytes : 0;
	r.files_total = cs.num_objects + r.bytes_free / 4096;
	r.files_free = r.bytes_free / 4096;
	rc = re_quota_get(e, j->req.path.path.p, j->req.path.path.len,
	    &r.used_bytes, &r.used_msgs, &r.quota_bytes, &r.quota_msgs);
	if (rc < 0)
		return rc;
	return reply_statfs_rep(j, &r);
}

static int
op_watch(struct rados_engine *e, struct job *j)
{
	struct kvset vals = { 0 };
	struct rstate st;
	struct rstore s;
	struct rres r;
	int rc = re_resolve(e, j->req.path.path.p, j->req.path.path.len, &r);

	if (rc == 0)
		rc = re_dir_store(&r, &s);
	/* The highest counter over the shards, the others raised to it as
	 * by LIST, so that it may serve as a LIST's since: see
	 * engine_rados_shard.c. */
	if (rc == 0)
		rc = re_dir_state(e, &s, &st, 1);
	if (rc == 0 && !st.live) {
		rc = re_not_live(e, &s, &st);
		if (rc == 0)
			rc = re_dir_state(e, &s, &st, 1);
	}
	kvset_free(&vals);
	return rc ? rc : reply_watch_rep(j, st.c);
}

/* --- MKDIR, RMDIR --- */

/* Insert or remove a directory entry in store |s| (ONE guarded op):
 * |en| NULL removes |name| when it still holds |raw|. */
int
re_dir_entry(struct rados_engine *e, const struct rstore *s, const char *name,
    size_t nlen, struct rentry *en, const uint8_t *raw, struct rstate *out)
{
	char ke[RE_KEY_MAX], kn[RE_KEY_MAX], h[17];
	struct kvset vals = { 0 };
	uint8_t val[RE_ENTRY_LEN], want[RE_ENTRY_LEN];
	const struct kv *v;
	struct rentry old;
	pthread_mutex_t *mu = re_stripe(e, s->oid);
	rados_write_op_t op;
	int64_t now, waited = 0;
	int rc, tries;

	re_key(ke, s, "e.", name, nlen);
	re_key(kn, s, "nd", NULL, 0);
	if (raw) {	/* as it is when no move claims it */
		memcpy(want, raw, RE_ENTRY_LEN);
		want[1] &= 0x7f;
	}
	pthread_mutex_lock(mu);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, s, ke, NULL, NULL, &vals, out);
		if (rc < 0)
			break;
		if (!out->live) {
			rc = re_not_live(e, s, out);
			if (rc < 0)
				break;
			continue;
		}
		v = kvset_get(&vals, ke);
		if (en && v) {
			rc = -EEXIST;
			break;
		}
		if (en && out->has_n && out->n >= e->shard_cap) {
			rc = re_shard_full(e, s, out->n);
			break;
		}
		if (!en && v && ren_decode(v->v, v->vlen, &old) == 0 &&
		    old.moving) {	/* wait for the move that claimed it */
			rc = re_moving_wait(e, s, name, nlen, &waited);
			if (rc < 0)
				break;
			tries--;
			continue;
		}
		if (!en && (v == NULL || v->vlen != RE_ENTRY_LEN ||
		    memcmp(v->v, want, RE_ENTRY_LEN) != 0)) {
			rc = -ENOENT;
			break;
		}
		if ((op = rados_create_write_op()) == NULL) {
			rc = -ENOMEM;
			break;
		}
		now = re_now();
		re_guard_live(op, s);
		re_bump(op, s, out->c, out->c + 1, now);
		re_hex(h, out->nd);
		re_cmp(op, kn, h, 16);
		if (en) {
			re_cmp(op, ke, "", 0);
			en->change = out->c + 1;
			ren_encode(en, val);
			re_set(op, ke, val, RE_ENTRY_LEN);
			re_log(op, s, out->c + 1, MST_EV_ADD, en, name, nlen);
		} else {
			re_cmp(op, ke, want, RE_ENTRY_LEN);
			re_rm(op, ke);
			ren_decode(want, RE_ENTRY_LEN, &old);
			re_log(op, s, out->c + 1, MST_EV_REMOVE, &old, name,
			    nlen);
		}
		if ((en ? en->type : old.type) == MST_T_DIR) {
			re_hex(h, en ? out->nd + 1 : out->nd - 1);
			re_set(op, kn, h, 16);
		}
		if (out->has_n)
			re_set_entries(op, s, en ? out->n + 1 :
			    out->n ? out->n - 1 : 0);
		rc = re_write(e, s->oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0) {
			rc = re_err("update entry in", s->oid, rc);
			break;
		}
		out->c++;
		out->t = (uint64_t)now;
		break;
	}
	pthread_mutex_unlock(mu);
	kvset_free(&vals);
	if (tries == RE_RETRIES)
		rc = re_err("update entry (too many races)", s->oid, -EAGAIN);
	return rc;
}

int
re_is_sub_name(const char *p, size_t n)
{
	if (n == 3 && memcmp(p, "new", 3) == 0)
		return MST_SUB_NEW;
	if (n == 3 && memcmp(p, "cur", 3) == 0)
		return MST_SUB_CUR;
	return 0;
}

/* Split |path| into its resolved parent directory and last name. */
int
re_parent_of(struct rados_engine *e, struct mst_str path, struct rres *dir,
    struct rstore *s, const char **name, size_t *nlen)
{
	size_t dl;
	int rc;

	if (path.len == 0)
		return -EBUSY;
	dl = re_dir_len(path.p, path.len);
	*name = path.p + (dl ? dl + 1 : 0);
	*nlen = path.len - (size_t)(*name - path.p);
	rc = re_resolve(e, path.p, dl, dir);
	if (rc == 0)
		rc = re_dir_store(dir, s);
	if (rc == 0)
		rc = re_shard(e, s, *name, *nlen);
	return rc;
}

static int
op_mkdir(struct rados_engine *e, struct job *j)
{
	const struct mst_mkdir_req *m = &j->req.mkdir;
	struct mst_attr_rep a = { 0 };
	struct rentry en = { .type = MST_T_DIR };
	struct rstate st;
	struct rstore s, cs;
	struct rres dir;
	const char *name;
	size_t nlen;
	int64_t now = re_now();
	char oid[RE_OID_MAX];
	int rc, kind;

	rc = re_parent_of(e, m->path, &dir, &s, &name, &nlen);
	if (rc < 0)
		return rc;
	kind = re_is_sub_name(name, nlen);
	rc = re_alloc_id(e, &en.id);
	if (rc == 0)
		rc = re_make_head(e, en.id, dir.id, kind, m->mode, m->uid,
		    m->gid, now);
	if (rc < 0)
		return rc == -EEXIST ? -EIO : rc;
	en.mode = m->mode;
	en.uid = m->uid;
	en.gid = m->gid;
	en.mtime = en.ctime = en.atime = (uint64_t)now;
	rc = re_dir_entry(e, &s, name, nlen, &en, NULL, &st);
	if (rc == -EEXIST || rc == -ENOENT) {
		re_oid(oid, 'd', en.id);
		(void)rados_remove(e->io, oid);	/* never named: unused */
	}
	if (rc < 0)	/* else (EIO) it may be named: the head stays */
		return rc;
	if (kind) {
		re_store_of(&cs, en.id, dir.id, name, nlen);
		rc = re_claim(e, &cs);
		if (rc < 0)
			return rc;
	}
	rc = re_dir_attr(e, en.id, &a.attr, NULL);
	if (rc < 0)
		return rc;
	a.dir_change = st.c;
	a.dir_mtime_ns = st.t;
	rc = reply_attr_rep(j, &a);
	return rc ? rc : re_notice(j, m->path.p, re_dir_len(m->path.p,
	    m->path.len), name, nlen, MST_EV_ADD, en.id, st.c);
}

static int
op_rmdir(struct rados_engine *e, struct job *j)
{
	struct mst_str p = j->req.path.path;
	struct rstate st;
	struct rstore cs;
	struct rres r;
	char oid[RE_OID_MAX];
	int rc = re_resolve_fresh(e, p.p, p.len, &r);

	if (rc < 0)
		return rc;
	if (r.root)
		return -EBUSY;
	if (r.type != MST_T_DIR)
		return -ENOTDIR;
	re_dir_store(&r, &cs);
	rc = re_fence_empty(e, &cs);
	if (rc == 0 || rc == -ENOENT)
		rc = re_dir_entry(e, &r.pstore, r.name, r.namelen, NULL, r.raw,
		    &st);
	if (rc < 0)
		return rc;
	re_oid(oid, 'd', r.id);
	if (rados_remove(e->io, oid) < 0)
		log_warn("rados: removing head %s failed (left for scrub)",
		    oid);
	rc = reply_change_rep(j, st.c, st.t);
	return rc ? rc : re_notice(j, p.p, re_dir_len(p.p, p.len), r.name,
	    r.namelen, MST_EV_REMOVE, r.id, st.c);
}

/* --- FETCH, GETATTR, OPEN, CLOSE --- */

/* FETCH, and GET of a message: a data_rep of body |id| from |offset|;
 * the whole body is verified against its checksum when |offset| is 0. */
static int
fetch_body(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length, int range_sum)
{
	size_t room = j->max_frame - 16, n, got = 0, all = 0;
	rados_read_op_t op;
	rados_xattrs_iter_t xi = NULL;
	char oid[RE_OID_MAX];
	const char *xn, *xv;
	size_t xl;
	uint64_t size = 0, sum = 0;
	uint8_t *p = NULL, *whole = NULL;
	int rc, r1 = 0, r2 = 0, r3 = 0, have_sum = 0;

	re_oid(oid, 'b', id);
	n = length < room ? length : room;
	if ((p = malloc(16 + n)) == NULL)
		return -ENOMEM;
	if ((op = rados_create_read_op()) == NULL) {
		free(p);
		return -ENOMEM;
	}
	rados_read_op_stat(op, &size, NULL, &r1);
	rados_read_op_getxattrs(op, &xi, &r2);
	rados_read_op_read(op, offset, n, (char *)p + 16, &got, &r3);
	rc = rados_read_op_operate(op, e->io, oid, 0);
	if (rc == 0)
		rc = r1 < 0 ? r1 : r2 < 0 ? r2 : r3;
	while (rc == 0 && xi && rados_getxattrs_next(xi, &xn, &xv, &xl) == 0 &&
	    xn)
		if (strcmp(xn, "sum") == 0 && re_unhex(xv, xl, &sum) == 0)
			have_sum = 1;
	if (xi)
		rados_getxattrs_end(xi);
	rados_release_read_op(op);
	if (rc == -ENOENT) {
		free(p);
		re_oid(oid, 'd', id);
		return rados_stat(e->io, oid, NULL, NULL) == 0 ? -EISDIR :
		    -ENOENT;
	}
	if (rc == 0 && !have_sum)
		rc = -EIO;
	if (rc < 0) {
		free(p);
		return re_err("fetch", oid, rc);
	}
	if (offset == 0) {
		/* The whole body is verified before any of it is served. */
		if (got == size) {
			rc = mst_checksum(p + 16, got) == sum ? 0 : -EIO;
		} else if ((whole = malloc(size)) == NULL) {
			rc = -ENOMEM;
		} else {
			rc = rados_read(e->io, oid, (char *)whole, size, 0);
			if (rc >= 0) {
				all = (size_t)rc;
				rc = all == size &&
				    mst_checksum(whole, size) == sum ? 0 : -EIO;
			} else {
				rc = re_err("fetch", oid, rc);
			}
			free(whole);
		}
		if (rc == -EIO)
			log_err("rados: body %s: checksum mismatch: refusing "
			    "to serve it", oid);
		if (rc < 0) {
			free(p);
			return rc;
		}
	}
	return reply_data_frame(j, p, got, size, sum, range_sum);
}

int
re_fetch_body(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length)
{
	return fetch_body(e, j, id, offset, length, 0);
}

int
re_read_body_range(struct rados_engine *e, struct job *j, uint64_t id,
    uint64_t offset, uint32_t length)
{
	return fetch_body(e, j, id, offset, length, 1);
}

/* A message's entry from its body's loc xattr ("OID KEY"). */
static int
msg_attr(struct rados_engine *e, uint64_t id, struct mst_attr_rep *a)
{
	char key[RE_KEY_MAX];
	const char *keys[2] = { key, NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rentry en;
	struct rstore s;
	struct rstate st;
	int rc = re_msg_loc(e, id, &s, key);

	if (rc < 0)
		return rc;
	rc = re_read(e, s.oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	v = rc == 0 ? kvset_get(&vals, key) : NULL;
	if (rc == 0 && (v == NULL || ren_decode(v->v, v->vlen, &en) < 0 ||
	    en.id != id))
		rc = -ENOENT;	/* expunged, or moved under another name */
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	rc = re_store_read(e, &s, NULL, NULL, NULL, &vals, &st);
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	ren_attr(&en, &a->attr);
	a->dir_change = st.c;
	a->dir_mtime_ns = st.t;
	return 0;
}

static int
op_getattr(struct rados_engine *e, struct job *j)
{
	struct mst_attr_rep a = { 0 };
	uint64_t id = j->req.fid.id;
	int rc = msg_attr(e, id, &a);

	if (rc == -ENOENT)
		rc = re_file_attr(e, id, &a.attr, &a);
	if (rc == -ENOENT) {
		rc = re_dir_attr(e, id, &a.attr, NULL);
		if (rc == 0) {
			a.dir_change = a.attr.change;
			a.dir_mtime_ns = a.attr.mtime_ns;
		}
	}
	return rc ? rc : reply_attr_rep(j, &a);
}

static int
op_close(struct rados_engine *e, struct job *j)
{
	char oid[RE_OID_MAX];
	uint8_t *p;

	re_oid(oid, 'b', j->req.fid.id);
	if (rados_stat(e->io, oid, NULL, NULL) < 0) {
		re_oid(oid, 'd', j->req.fid.id);
		if (rados_stat(e->io, oid, NULL, NULL) < 0)
			return -ENOENT;
	}
	p = malloc(1);
	return p ? job_add_frame(j, p, 0) : -ENOMEM;
}

/* --- dispatch --- */

static int
run_op(struct rados_engine *e, struct job *j)
{
	int rc;

	switch (j->op) {
	case MST_OP_DELIVER:
		rc = op_deliver(e, j);
		break;
	case MST_OP_LIST:
		rc = op_list(e, j);
		break;
	case MST_OP_READDIR:
		rc = op_readdir(e, j);
		break;
	case MST_OP_LOOKUP:
		rc = op_lookup(e, j);
		break;
	case MST_OP_STAT:
		rc = op_stat(e, j);
		break;
	case MST_OP_STATFS:
		rc = op_statfs(e, j);
		break;
	case MST_OP_WATCH:
		rc = op_watch(e, j);
		break;
	case MST_OP_MKDIR:
		rc = op_mkdir(e, j);
		break;
	case MST_OP_RMDIR:
		rc = op_rmdir(e, j);
		break;
	case MST_OP_FETCH:
		rc = re_fetch_body(e, j, j->req.fetch.id, j->req.fetch.offset,
		    j->req.fetch.length);
		if (rc == -ENOENT)
			rc = re_file_get(e, j, j->req.fetch.id,
			    j->req.fetch.offset, j->req.fetch.length);
		break;
	case MST_OP_PUT:
		rc = re_op_put(e, j);
		break;
	case MST_OP_GET:
		rc = re_op_get(e, j);
		break;
	case MST_OP_UNLINK:
		rc = re_op_unlink(e, j);
		break;
	case MST_OP_SETATTR:
		rc = re_op_setattr(e, j);
		break;
	case MST_OP_WRITE:
		rc = re_op_write(e, j);
		break;
	case MST_OP_READ:
		rc = re_op_read(e, j);
		break;
	case MST_OP_FSETATTR:
		rc = re_op_fsetattr(e, j);
		break;
	case MST_OP_OPEN:
		rc = re_op_open(e, j);
		if (rc == -ENOENT)	/* no file: a message or a dir */
			rc = op_getattr(e, j);
		break;
	case MST_OP_GETATTR:
		rc = op_getattr(e, j);
		break;
	case MST_OP_CLOSE:
		rc = re_op_close(e, j);
		if (rc == -ENOENT)
			rc = op_close(e, j);
		break;
	case ENG_OP_CLOSE_OWNER:
		re_close_owner(e, j->owner);
		rc = 0;
		break;
	case MST_OP_LINK:
		rc = re_op_link(e, j);
		break;
	case MST_OP_EXPUNGE:
		rc = re_op_expunge(e, j);
		break;
	case MST_OP_SETINFO:
		rc = re_op_setinfo(e, j);
		break;
	case MST_OP_RENAME:
		rc = re_op_rename(e, j);
		break;
	case MST_OP_ADMIN:
		rc = re_op_admin(e, j);	/* engine_rados_admin.c */
		break;
	case ENG_OP_UNWATCH:
		rc = 0;		/* engine_rados_notify.c forgets it */
		break;
	default:
		rc = -EOPNOTSUPP;	/* phase 2: see mstored(8) */
	}
	return rc;
}

void
re_run(struct rados_engine *e, struct job *j)
{
	size_t i;
	int rc;

	re_cache_job(0);
	rc = run_op(e, j);
	/* ENOENT through a cached path may be a directory that another
	 * server removed and made again before its notice arrived: once
	 * more from the objects (ENOENT changed nothing). */
	if (rc == -ENOENT && re_cache_job(1)) {
		for (i = 0; i < j->nframes; i++)
			free(j->frames[i].p);
		j->nframes = 0;
		rc = run_op(e, j);
	}
	if (rc == -ETIMEDOUT)
		rc = -EIO;
	if (rc < 0 && j->nframes) {
		for (i = 0; i < j->nframes; i++)
			free(j->frames[i].p);
		j->nframes = 0;
	}
	j->status = rc;
}
