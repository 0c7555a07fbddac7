/*
 * engine_rados_shard.c - the rados back-end's folder index in shards,
 * so that no omap object nears Ceph's large-omap warning
 * (osd_deep_scrub_large_omap_object_key_threshold, 200,000 keys). Owns
 * the layout of a folder (how many shards, cached), which shard holds a
 * name, the directory's state over its shards (LIST's counter raise),
 * the fence of a sharded new/ or cur/ by RMDIR and its undoing, and the
 * per-store entry cap.
 *
 * Layout. The new/ and cur/ stores of folder P are kept in S objects:
 * shard 0 is m.<P> (the one object of folders made before sharding, so
 * they need no migration), shard k > 0 is m.<P>.<k> (k decimal). S is
 * omap key L = 'S' + 16 hex of m.<P>, written once, by the exclusive
 * create of m.<P> when the folder's new/ or cur/ is first used, from
 * rados_index_shards; m.<P> without L (older folders) has S = 1. S never
 * changes, so every server caches it. A name's shard is FNV-1a 64 of
 * the name up to its first ':' (the Maildir info), modulo S: new/X and
 * cur/X:2,S are in one shard, and a flag change stays ONE atomic op.
 * Each shard holds for each of N. and C. its own st c t lf nd n, the e.
 * and l. keys of its names, their x. intents and the i. records of the
 * deliveries of its names. A rule about one name (exclusive create,
 * duplicate name, idempotency, rename-over) is a guard in that name's
 * shard, as before. What is weaker: an idempotent retry is recognised
 * only under the same name (the mount resends the very request, so it
 * is); a retry of one idem under another name is stored again.
 *
 * Counters. A mutation takes the next value of its shard's counter; the
 * directory's counter is the highest over its shards. LIST raises every
 * shard below that highest value C to C (a compare-and-swap of the
 * shard's counter) before it reads any log or entry, and lists the
 * records up to C. Why a delta since C never misses a change: once the
 * raise is done every shard's counter is >= C, so each later change in
 * any shard gets a number > C and the next delta since C reads it; a
 * change numbered <= C was committed in its shard before that shard's
 * counter reached C (counters of a shard only grow, and the raise is a
 * write to the same object that is ordered after it), so it was
 * committed before the raise returned and the LIST's reads, made after,
 * see it. A change numbered > C that a LIST happened to read is left to
 * the next delta. WATCH raises the same way, so its counter may serve as
 * a since too; the re-read of watched directories after a lost watch
 * (engine_rados_notify.c) only compares the highest counter with the
 * highest one notified, and needs no raise (a raise never passes the
 * highest counter). Mutation replies and notices carry their shard's
 * counter, which may be lower than a LIST's C: a client asks for the
 * changes after a counter from LIST or WATCH (the mount does: a notice
 * only marks the folder for a delta).
 *
 * RMDIR of a sharded new/ or cur/: read shard 0 (empty, counter c0),
 * fence shards 1..S-1 one by one (st = 'F' and fb = a cookie unique to
 * this RMDIR, each guarded by the shard's st, counter, fb and
 * emptiness; a shard fenced by another RMDIR is fenced anew, so it is
 * this one's), then fence shard 0 (st = 'D', guarded by c0), then mark
 * the others 'D' (best effort: 'F' beside a dead shard 0 is dead). An
 * 'F' shard becomes live again only (a) by a mutation that meets it,
 * which reads its fb, bumps shard 0's counter (guarded live) and then
 * sets it live guarded by that fb, or (b) by the RMDIR whose cookie it
 * holds, after that RMDIR's own last step failed. Why no entry can then
 * land in a removed directory: for shard 0 to go dead, a shard k must
 * have held the winner's cookie from before that last step; (a) on k
 * read the winner's cookie, so its bump came after the winner read c0
 * and either made the last step fail or found shard 0 dead; (b) is the
 * winner itself, which does not unfence once it won, and a loser's
 * cookie is gone from every shard the winner fenced. An RMDIR that
 * died half-way leaves 'F' shards that the next mutation revives.
 *
 * Cap. Every store made since (p n = its entry count, kept by each
 * insert and removal in the same guarded op as its counter) refuses an
 * insert past rados_index_cap entries with ENOSPC and a log line:
 * 45,000 by default, so a shard holds at most 2 x 45,000 entries, about
 * as many idempotency records and 2 x 2048 log records, half the
 * warning. Stores made before have no n and no cap.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rados.h"
#include "log.h"

static uint64_t
fnv(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n--)
		h = (h ^ (uint8_t)*p++) * 1099511628211ull;
	return h;
}

void
re_lay_flush(struct rados_engine *e)
{
	struct rlay *l;
	size_t i;

	for (i = 0; i < RE_LAY_BUCKETS; i++)
		while ((l = e->lay[i]) != NULL) {
			e->lay[i] = l->next;
			free(l);
		}
	e->nlay = 0;
}

static int
lay_get(struct rados_engine *e, uint64_t p, unsigned *n)
{
	struct rlay *l;
	int found = 0;

	pthread_mutex_lock(&e->lmu);
	for (l = e->lay[p % RE_LAY_BUCKETS]; l && !found; l = l->next)
		if (l->p == p) {
			*n = l->n;
			found = 1;
		}
	pthread_mutex_unlock(&e->lmu);
	return found;
}

static void
lay_put(struct rados_engine *e, uint64_t p, unsigned n)
{
	struct rlay *l = malloc(sizeof *l);

	if (l == NULL)
		return;
	l->p = p;
	l->n = n;
	pthread_mutex_lock(&e->lmu);
	if (e->nlay >= RE_LAY_MAX)
		re_lay_flush(e);
	l->next = e->lay[p % RE_LAY_BUCKETS];
	e->lay[p % RE_LAY_BUCKETS] = l;
	e->nlay++;
	pthread_mutex_unlock(&e->lmu);
}

int
re_shards(struct rados_engine *e, const struct rstore *s, unsigned *n)
{
	const char *keys[] = { "L", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	char oid[RE_OID_MAX], h[18];
	rados_write_op_t op;
	uint64_t x;
	int rc, tries;

	*n = 1;
	if (s->pfx[0] == '\0' || s->folder == 0)
		return 0;
	if (lay_get(e, s->folder, n))
		return 0;
	re_oid(oid, 'm', s->folder);
	for (tries = 0; tries < 3; tries++) {
		rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		if (rc == 0) {
			v = kvset_get(&vals, "L");
			x = 1;
			if (v && (v->vlen != 17 || v->v[0] != 'S' ||
			    re_unhex(v->v + 1, 16, &x) < 0 || x == 0 ||
			    x > RE_SHARDS_MAX))
				rc = re_err("decode layout of", oid, -EIO);
			kvset_free(&vals);
			if (rc < 0)
				return rc;
			*n = (unsigned)x;
			lay_put(e, s->folder, *n);
			return 0;
		}
		kvset_free(&vals);
		if (rc != -ENOENT)
			return re_err("read layout of", oid, rc);
		/* The folder's first store: its layout comes with it. */
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		h[0] = 'S';
		re_hex(h + 1, e->shards);
		rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
		re_set(op, "L", h, 17);
		rc = re_write(e, oid, op);
		if (rc < 0 && rc != -EEXIST)
			return re_err("create", oid, rc);
	}
	return re_err("layout of (too many races)", oid, -EAGAIN);
}

void
re_store_from_oid(struct rstore *s)
{
	size_t n = strlen(s->oid);

	s->folder = 0;
	s->shard = 0;
	if (n < 18 || s->oid[0] != 'm' || s->oid[1] != '.' ||
	    re_unhex(s->oid + 2, 16, &s->folder) < 0) {
		s->folder = 0;
		return;
	}
	if (n > 19 && s->oid[18] == '.')
		s->shard = (unsigned)strtoul(s->oid + 19, NULL, 10);
}

void
re_shard_k(struct rstore *s, unsigned k)
{
	re_oid(s->oid, 'm', s->folder);
	if (k)
		snprintf(s->oid + 18, sizeof s->oid - 18, ".%u", k);
	s->shard = k;
}

int
re_shard(struct rados_engine *e, struct rstore *s, const char *name,
    size_t nlen)
{
	const char *colon;
	unsigned n;
	int rc;

	if (s->pfx[0] == '\0' || s->folder == 0)
		return 0;
	rc = re_shards(e, s, &n);
	if (rc < 0)
		return rc;
	if ((colon = memchr(name, ':', nlen)) != NULL)
		nlen = (size_t)(colon - name);
	re_shard_k(s, n > 1 ? (unsigned)(fnv(name, nlen) % n) : 0);
	return 0;
}

uint64_t
re_entries(const struct rstore *s, const struct kvset *vals)
{
	char k[RE_KEY_MAX];
	const struct kv *v;
	uint64_t n = 0;

	re_key(k, s, "n", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL)
		re_unhex(v->v, v->vlen, &n);
	return n;
}

void
re_set_entries(rados_write_op_t op, const struct rstore *s, uint64_t n)
{
	char k[RE_KEY_MAX], h[17];

	re_key(k, s, "n", NULL, 0);
	re_hex(h, n);
	re_set(op, k, h, 16);
}

int
re_shard_full(struct rados_engine *e, const struct rstore *s, uint64_t n)
{
	atomic_fetch_add(&e->full_refusals, 1);
	log_err("rados: %s%s holds %" PRIu64 " entries, the cap "
	    "(rados_index_cap %" PRIu64 "): insert refused (ENOSPC); a folder "
	    "made with more shards (rados_index_shards) holds more", s->oid,
	    s->pfx[0] == 'N' ? " new/" : s->pfx[0] == 'C' ? " cur/" : "", n,
	    e->shard_cap);
	return -ENOSPC;
}

/* Raise shard |s|'s counter from |old| to |c| (unless it is already
 * there): 0 or an error. */
static int
raise_to(struct rados_engine *e, const struct rstore *s, uint64_t old,
    uint64_t c)
{
	char kc[RE_KEY_MAX], h[17];
	const char *keys[] = { kc, NULL };
	struct kvset vals = { 0 };
	rados_write_op_t op;
	int rc, tries;

	re_key(kc, s, "c", NULL, 0);
	for (tries = 0; tries < RE_RETRIES && old < c; tries++) {
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_hex(h, old);
		if (old)
			re_cmp(op, kc, h, 16);
		else
			re_cmp(op, kc, "", 0);
		re_hex(h, c);
		re_set(op, kc, h, 16);
		rc = re_write(e, s->oid, op);
		if (rc == 0) {
			atomic_fetch_add(&e->raises, 1);
			return 0;
		}
		if (rc != -ECANCELED)
			return re_err("raise the counter of", s->oid, rc);
		/* Moved meanwhile: read it again. */
		rc = re_read(e, s->oid, keys, &vals, NULL, NULL, 0, NULL,
		    NULL);
		old = 0;
		if (rc == 0 && kvset_get(&vals, kc))
			re_unhex(kvset_get(&vals, kc)->v,
			    kvset_get(&vals, kc)->vlen, &old);
		kvset_free(&vals);
		if (rc < 0 && rc != -ENOENT)
			return re_err("read the counter of", s->oid, rc);
	}
	return old >= c ? 0 : re_err("raise a counter (too many races)",
	    s->oid, -EAGAIN);
}

int
re_dir_state(struct rados_engine *e, const struct rstore *s,
    struct rstate *st, int raise)
{
	struct kvset vals = { 0 };
	struct rstate x, *all = NULL;
	struct rstore k;
	unsigned n, i;
	uint64_t c = 0;
	int rc;

	rc = re_shards(e, s, &n);
	if (rc < 0)
		return rc;
	k = *s;
	if (n > 1 && (all = calloc(n, sizeof *all)) == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (n > 1)
			re_shard_k(&k, i);
		rc = re_store_read(e, &k, NULL, NULL, NULL, &vals, &x);
		kvset_free(&vals);
		if (rc < 0)
			break;
		if (i == 0) {
			*st = x;
			st->nd = 0;
			st->n = 0;
			if (!x.live)	/* the caller decides */
				break;
		}
		if (all)
			all[i] = x;
		st->nd += x.nd;
		st->n += x.n;
		if (x.c > st->c)
			st->c = x.c;
		if (x.t > st->t)
			st->t = x.t;
		if (x.lf > st->lf)
			st->lf = x.lf;
	}
	if (rc == 0 && raise && all && st->live) {
		c = st->c;
		for (i = 1; i < n && rc == 0; i++) {
			/* Raised without its st: a shard not claimed yet
			 * keeps the counter when it is (store_init). */
			re_shard_k(&k, i);
			rc = raise_to(e, &k, all[i].c, c);
		}
		/* Shard 0 too: its counter may be the lower one. */
		if (rc == 0 && all[0].c < c) {
			re_shard_k(&k, 0);
			rc = raise_to(e, &k, all[0].c, c);
		}
	}
	free(all);
	return rc;
}

/* Set st of |s| from |from| ('L', 'F' or 'D' + its directory) to |to|,
 * guarded by it and, when |fb| is not NULL, by the fencer key fb = |fb|
 * (16 hex): 0, -ECANCELED or an error. */
static int
st_swap(struct rados_engine *e, const struct rstore *s, char from, char to,
    const char *fb)
{
	char k[RE_KEY_MAX], kf[RE_KEY_MAX], a[18], b[18];
	rados_write_op_t op = rados_create_write_op();

	if (op == NULL)
		return -ENOMEM;
	re_key(k, s, "st", NULL, 0);
	a[0] = from;
	b[0] = to;
	re_hex(a + 1, s->dir);
	re_hex(b + 1, s->dir);
	re_cmp(op, k, a, 17);
	if (fb) {
		re_key(kf, s, "fb", NULL, 0);
		re_cmp(op, kf, fb, 16);
	}
	re_set(op, k, b, 17);
	return re_write(e, s->oid, op);
}

/* Shards 1..|upto|-1 of |s| that this RMDIR (|cookie|) fenced and still
 * holds: live again. Only after its own fence of shard 0 failed, so no
 * RMDIR has won meanwhile: one that did re-fenced every shard with its
 * own cookie first. */
static void
unfence_upto(struct rados_engine *e, const struct rstore *s, unsigned upto,
    const char *cookie)
{
	struct rstore k = *s;
	unsigned i;
	int rc;

	for (i = 1; i < upto; i++) {
		re_shard_k(&k, i);
		rc = st_swap(e, &k, 'F', 'L', cookie);
		if (rc < 0 && rc != -ECANCELED && rc != -ENOENT)
			log_warn("rados: %s: a fenced shard stays fenced "
			    "(the next change revives it): %s", k.oid,
			    strerror(-rc));
	}
}

void
re_unfence(struct rados_engine *e, const struct rstore *s)
{
	struct rstore k = *s;
	unsigned n = 1, i;
	int rc;

	(void)re_shards(e, s, &n);
	for (i = 0; i < n; i++) {
		if (n > 1)
			re_shard_k(&k, i);
		rc = st_swap(e, &k, 'D', 'L', NULL);
		if (rc < 0 && rc != -ECANCELED && rc != -ENOENT)
			log_warn("rados: %s: a fenced directory stays fenced: "
			    "%s", k.oid, strerror(-rc));
	}
}

/* The state of store |k|, whether it holds an entry, and its fencer
 * key (|fb|: 17 bytes, "" when absent): 0 or an error. */
static int
peek(struct rados_engine *e, const struct rstore *k, struct rstate *st,
    int *nonempty, char *fb)
{
	char pfx[RE_KEY_MAX], kst[RE_KEY_MAX], kc[RE_KEY_MAX], kf[RE_KEY_MAX];
	const char *keys[] = { kst, kc, kf, NULL };
	struct kvset vals = { 0 }, page = { 0 };
	const struct kv *v;
	int rc, more;

	re_key(pfx, k, "e.", NULL, 0);
	re_key(kst, k, "st", NULL, 0);
	re_key(kc, k, "c", NULL, 0);
	re_key(kf, k, "fb", NULL, 0);
	rc = re_read(e, k->oid, keys, &vals, pfx, pfx, 1, &page, &more);
	if (rc == 0 || rc == -ENOENT)
		re_state(k, &vals, rc == 0, st);
	fb[0] = '\0';
	if (rc == 0 && (v = kvset_get(&vals, kf)) != NULL && v->vlen == 16)
		memcpy(fb, v->v, 17);
	*nonempty = page.n > 0;
	kvset_free(&vals);
	kvset_free(&page);
	return rc == -ENOENT ? 0 : rc;
}

/* Set st of |k| to |to| + its directory, guarded by st, the counter and
 * the fencer key as read (|st|, |oldfb|); with |cookie| the fencer key
 * becomes it (|create|: the object may not exist yet). */
static int
fence_write(struct rados_engine *e, const struct rstore *k,
    const struct rstate *st, const char *oldfb, const char *cookie,
    char to, int create)
{
	char kst[RE_KEY_MAX], kc[RE_KEY_MAX], kf[RE_KEY_MAX], h[17], v[18];
	rados_write_op_t op = rados_create_write_op();

	if (op == NULL)
		return -ENOMEM;
	re_key(kst, k, "st", NULL, 0);
	re_key(kc, k, "c", NULL, 0);
	re_key(kf, k, "fb", NULL, 0);
	if (create)
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	re_cmp(op, kst, st->st_raw, st->st_len);
	re_hex(h, st->c);
	re_cmp(op, kc, st->c ? h : "", st->c ? 16 : 0);
	if (cookie) {
		re_cmp(op, kf, oldfb, strlen(oldfb));
		re_set(op, kf, cookie, 16);
	}
	v[0] = to;
	re_hex(v + 1, k->dir);
	re_set(op, kst, v, 17);
	return re_write(e, k->oid, op);
}

/* Fence shard |k| (not 0) for the RMDIR |cookie|, also when another
 * fenced it (a crashed or racing RMDIR: it is ours then): 0,
 * -ENOTEMPTY, -ENOENT, -EAGAIN (read again) or an error. */
static int
fence_one(struct rados_engine *e, const struct rstore *k, const char *cookie)
{
	char fb[17];
	struct rstate st;
	int rc, nonempty;

	if ((rc = peek(e, k, &st, &nonempty, fb)) < 0)
		return rc;
	if (st.dead)
		return -ENOENT;
	/* Live for another directory of this name: ours is stale. (Dead
	 * or fenced for an earlier one: never claimed by ours, fenced.) */
	if (st.st_len && !st.live && !st.fenced && st.st_raw[0] == 'L')
		return -ENOENT;
	if (nonempty)
		return -ENOTEMPTY;
	rc = fence_write(e, k, &st, fb, cookie, 'F', 1);
	if (rc == -ECANCELED)
		return -EAGAIN;
	return rc < 0 ? re_err("fence shard", k->oid, rc) : 0;
}

int
re_fence_empty(struct rados_engine *e, const struct rstore *s)
{
	struct rstore k = *s;
	struct rstate st;
	char fb[17], cookie[17] = "";
	uint64_t id;
	unsigned n, i;
	int rc, tries, again, nonempty;

	if ((rc = re_shards(e, s, &n)) < 0)
		return rc;
	if (n > 1) {		/* who fences: unique over the servers */
		if ((rc = re_alloc_id(e, &id)) < 0)
			return rc;
		re_hex(cookie, id);
	}
	for (tries = 0; tries < RE_RETRIES; tries++) {
		if (n > 1)
			re_shard_k(&k, 0);
		/* Shard 0's counter first: any change or revival after
		 * this read makes the last step fail. */
		if ((rc = peek(e, &k, &st, &nonempty, fb)) < 0)
			break;
		if (!st.live) {
			rc = re_not_live(e, &k, &st);
			if (rc < 0)
				break;
			continue;
		}
		if (nonempty) {
			rc = -ENOTEMPTY;
			break;
		}
		for (i = 1, again = 0; i < n && rc == 0; i++) {
			re_shard_k(&k, i);
			while ((rc = fence_one(e, &k, cookie)) == -EAGAIN &&
			    ++again < RE_RETRIES)
				;
		}
		if (rc < 0) {
			unfence_upto(e, s, i - 1, cookie);
			if (rc == -EAGAIN)
				rc = -EIO;
			break;
		}
		if (n > 1)
			re_shard_k(&k, 0);
		rc = fence_write(e, &k, &st, NULL, NULL, 'D', 0);
		if (rc == 0) {
			for (i = 1; i < n; i++) {
				re_shard_k(&k, i);
				(void)st_swap(e, &k, 'F', 'D', cookie);
			}
			break;
		}
		if (n > 1)
			unfence_upto(e, s, n, cookie);
		if (rc != -ECANCELED) {
			rc = re_err("fence directory", k.oid, rc);
			break;
		}
	}
	return tries == RE_RETRIES ? -EIO : rc;
}

int
re_revive(struct rados_engine *e, const struct rstore *s)
{
	struct kvset vals = { 0 };
	struct rstore z = *s;
	struct rstate st, ks;
	char fb[17];
	rados_write_op_t op;
	int rc, tries, nonempty;

	/* The fencer as read now: the revival holds only against it. */
	if ((rc = peek(e, s, &ks, &nonempty, fb)) < 0)
		return rc;
	if (!ks.fenced)
		return 0;		/* read again */
	re_shard_k(&z, 0);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_store_read(e, &z, NULL, NULL, NULL, &vals, &st);
		kvset_free(&vals);
		if (rc < 0)
			return rc;
		if (!st.live)
			return -ENOENT;	/* the RMDIR finished */
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		re_guard_live(op, &z);
		re_bump(op, &z, st.c, st.c + 1, -1);
		rc = re_write(e, z.oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0)
			return re_err("revive (shard 0)", z.oid, rc);
		rc = st_swap(e, s, 'F', 'L', fb[0] ? fb : NULL);
		if (rc < 0 && rc != -ECANCELED)
			return re_err("revive", s->oid, rc);
		return 0;	/* or fenced again since: read again */
	}
	return re_err("revive (too many races)", z.oid, -EAGAIN);
}
