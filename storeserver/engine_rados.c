/*
 * engine_rados.c - mstored's rados back-end: the store kept in one
 * replicated Ceph RADOS pool through librados, so that several mstored
 * share one store. Owns the cluster connection, the worker threads, the
 * object and omap primitives, id allocation and path resolution; the
 * operations are engine_rados_ops.c's. It never checks a rule and then
 * writes in a second step: every rule is a guard (omap_cmp, exclusive
 * create) inside the one atomic write op that makes the change, so two
 * servers racing on one name get one winner.
 *
 * Layout (phase 1; mstored(8), BACK-ENDS). Object names are ASCII, <id>
 * is 16 lowercase hex digits; every omap value is non-empty (a missing
 * key compares equal to "" in omap_cmp), counters are 16-hex ASCII so
 * that byte order is numeric order.
 *
 *   mst.meta           omap format=1, incarn=<16hex> (next incarnation,
 *                      taken by compare-and-swap at start-up)
 *   d.<id>             a directory's head: omap a = attributes
 *                      {mode uid gid ctime atime parent kind}; for a
 *                      plain directory also its entry store (keys
 *                      below with an empty prefix). The root is
 *                      d.0000000000000001, made at the first start.
 *   m.<P>, m.<P>.<k>   the entry stores of the new/ ("N." keys) and cur/
 *                      ("C." keys) sub-directories of directory P, in
 *                      S shards (L = 'S' + S in m.<P>; none: 1) by a
 *                      hash of the name before ':', so that a flag change
 *                      new/X -> cur/X:2,S is one atomic op in one shard;
 *                      and i.<32hex idem> records (engine_rados_shard.c).
 *   b.<id>             a message body, written whole (exclusive create
 *                      + write_full + xattrs sum, loc) before its index
 *                      entry exists; never changed afterwards.
 *   f.<id>             a small ordinary file: data = contents, omap a =
 *                      attributes {size mode uid gid nlink times ver
 *                      parent}; replaced by write_full guarded by a;
 *                      n.<path> its names, o.<inc> and on the servers
 *                      holding it open (engine_rados_link.c).
 *   mst.open.<inc>, mst.orphans  open leases, files held open without
 *                      a name (engine_rados_link.c).
 *   mst.renamelock     the lock of directory moves across parents
 *                      (engine_rados_move.c).
 *   mst.ntf            watched by every server: change notices.
 *   k.<id>, mst.srv.<sid>  lock tables and server leases: LOCK across
 *                      servers (engine_rados_lock.c).
 *   q.<mailbox>        omap u = the mailbox's usage (bytes, messages),
 *                      reserved by CAS before a body is written; lim =
 *                      its limits set by ADMIN quota
 *                      (engine_rados_quota.c).
 *   mst.usage          the pool's totals for the metrics: base (a
 *                      scrub's count) + one key per server of its
 *                      changes since (engine_rados_quota.c).
 *
 * An entry store with prefix p holds: p st = 'L' or 'D' + the id of the
 * directory it belongs to (live or removed; 'F': a shard fenced by an
 * RMDIR under way, fb its cookie); p c = change counter; p t
 * = the directory's mtime; p nd = subdirectory count; p lf = log floor;
 * p n = entry count (stores made since the cap: engine_rados_shard.c);
 * p e.<name> = entry {type id size checksum mode uid gid times change
 * idem} (bit 7 of type: claimed by a move to another store, whose
 * intent is p x.<name>); p l.<counter> = log record {event, entry,
 * name}, one per counter value, the last RE_LOG_KEEP kept; a CHANGE
 * record of an entry's object leaves p t alone. Every mutation of a store
 * is ONE write op: omap_cmp(st = live), omap_cmp(c = the value read),
 * the rule's guards (absent name, entry unchanged, absent idem), then
 * the new entry, counter, mtime and log record.
 *
 * Ids: incarnation << 36 | sequence, the incarnation (20 bits, >= 1)
 * taken once per start by CAS on mst.meta, the sequence counted in
 * memory: no two servers ever hand out the same id, nothing is written
 * per id, and every id stays below 2^56 (ENG_ID_LOCAL_MIN, the mount's).
 *
 * Not yet (mstored(8)): splitting a folder's shards again once full
 * (the count is fixed per folder; a full shard answers ENOSPC); 256
 * notice buckets instead of one mst.ntf.
 *
 * Timeouts: rados_osd_op_timeout, rados_mon_op_timeout and
 * client_mount_timeout are set before connecting, so every librados
 * call ends; a timed-out call answers the job with EIO.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_rados.h"
#include "log.h"

#define RE_OP_TIMEOUT	"5"	/* seconds, OSD and monitor ops */
#define RE_MOUNT_TIMEOUT "10"	/* seconds, connecting */

static const char hexd[] = "0123456789abcdef";

void
re_hex(char *out, uint64_t v)
{
	int i;

	for (i = 15; i >= 0; i--, v >>= 4)
		out[i] = hexd[v & 15];
	out[16] = '\0';
}

int
re_unhex(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len != 16)
		return -EIO;
	for (i = 0; i < len; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			v = v << 4 | (uint64_t)(p[i] - '0');
		else if (p[i] >= 'a' && p[i] <= 'f')
			v = v << 4 | (uint64_t)(p[i] - 'a' + 10);
		else
			return -EIO;
	}
	*out = v;
	return 0;
}

void
re_oid(char *out, char c, uint64_t id)
{
	out[0] = c;
	out[1] = '.';
	re_hex(out + 2, id);
}

int64_t
re_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
re_alloc_id(struct rados_engine *e, uint64_t *out)
{
	uint64_t s = atomic_fetch_add(&e->seq, 1);

	if (s >= ((uint64_t)1 << 36)) {
		log_err("rados: ids of incarnation %" PRIu64 " exhausted; "
		    "restart mstored to take a new one", e->inc);
		return -ENOSPC;
	}
	*out = e->inc << 36 | s;
	return 0;
}

pthread_mutex_t *
re_stripe(struct rados_engine *e, const char *oid)
{
	uint64_t h = 1469598103934665603ull;

	for (; *oid; oid++)
		h = (h ^ (uint8_t)*oid) * 1099511628211ull;
	return &e->stripe[h % RE_STRIPES];
}

int
re_err(const char *what, const char *oid, int rc)
{
	log_err("rados: %s %s: %s%s", what, oid, strerror(-rc),
	    rc == -ETIMEDOUT ? " (storage timeout: answering EIO)" : "");
	return -EIO;
}

/* --- values --- */

void
er_put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void
er_put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t
er_get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint32_t
er_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

/* 'E' type id size checksum change mode uid gid mtime ctime atime idem:
 * 1 + 1 + 4*8 + 3*4 + 3*8 + 16 = 86 bytes, then 8 zero bytes (to 94;
 * stores written before they were zeroed may hold anything there, so
 * a stored entry is compared as stored, never as re-encoded). */
void
ren_encode(const struct rentry *en, uint8_t out[RE_ENTRY_LEN])
{
	uint8_t *p = out;

	memset(out, 0, RE_ENTRY_LEN);

	*p++ = 'E';
	*p++ = (uint8_t)(en->type | (en->moving ? 0x80 : 0));
	er_put64(p, en->id), p += 8;
	er_put64(p, en->size), p += 8;
	er_put64(p, en->checksum), p += 8;
	er_put64(p, en->change), p += 8;
	er_put32(p, en->mode), p += 4;
	er_put32(p, en->uid), p += 4;
	er_put32(p, en->gid), p += 4;
	er_put64(p, en->mtime), p += 8;
	er_put64(p, en->ctime), p += 8;
	er_put64(p, en->atime), p += 8;
	memcpy(p, en->idem, MST_IDEM_LEN);
}

int
ren_decode(const void *v, size_t len, struct rentry *en)
{
	const uint8_t *p = v;

	if (len != RE_ENTRY_LEN || p[0] != 'E')
		return -EIO;
	p++;
	en->type = *p & 0x7f;
	en->moving = *p++ >> 7;
	en->id = er_get64(p), p += 8;
	en->size = er_get64(p), p += 8;
	en->checksum = er_get64(p), p += 8;
	en->change = er_get64(p), p += 8;
	en->mode = er_get32(p), p += 4;
	en->uid = er_get32(p), p += 4;
	en->gid = er_get32(p), p += 4;
	en->mtime = er_get64(p), p += 8;
	en->ctime = er_get64(p), p += 8;
	en->atime = er_get64(p), p += 8;
	memcpy(en->idem, p, MST_IDEM_LEN);
	return 0;
}

void
ren_attr(const struct rentry *en, struct mst_attr *a)
{
	memset(a, 0, sizeof *a);
	a->type = en->type;
	a->id = en->id;
	a->size = en->size;
	a->mode = en->mode;
	a->uid = en->uid;
	a->gid = en->gid;
	a->nlink = 1;
	a->mtime_ns = en->mtime;
	a->ctime_ns = en->ctime;
	a->atime_ns = en->atime;
	a->change = en->change;
}

/* A directory head's attributes: 'A' mode uid gid ctime atime parent
 * kind (0 plain, MST_SUB_NEW, MST_SUB_CUR). */
#define RE_HEAD_LEN 38u

struct rhead {
	uint32_t mode, uid, gid;
	uint64_t ctime, atime, parent;
	uint8_t kind;
};

static void
head_encode(const struct rhead *h, uint8_t out[RE_HEAD_LEN])
{
	out[0] = 'A';
	er_put32(out + 1, h->mode);
	er_put32(out + 5, h->uid);
	er_put32(out + 9, h->gid);
	er_put64(out + 13, h->ctime);
	er_put64(out + 21, h->atime);
	er_put64(out + 29, h->parent);
	out[37] = h->kind;
}

static int
head_decode(const struct kv *v, struct rhead *h)
{
	const uint8_t *p = (const uint8_t *)v->v;

	if (v->vlen != RE_HEAD_LEN || p[0] != 'A')
		return -EIO;
	h->mode = er_get32(p + 1);
	h->uid = er_get32(p + 5);
	h->gid = er_get32(p + 9);
	h->ctime = er_get64(p + 13);
	h->atime = er_get64(p + 21);
	h->parent = er_get64(p + 29);
	h->kind = p[37];
	return 0;
}

/* --- omap reads --- */

void
kvset_free(struct kvset *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->a[i].k);
		free(s->a[i].v);
	}
	free(s->a);
	memset(s, 0, sizeof *s);
}

const struct kv *
kvset_get(const struct kvset *s, const char *key)
{
	size_t i, len = strlen(key);

	for (i = 0; i < s->n; i++)
		if (s->a[i].klen == len && memcmp(s->a[i].k, key, len) == 0)
			return &s->a[i];
	return NULL;
}

int
kvset_fill_iter(struct kvset *s, rados_omap_iter_t it)
{
	char *k, *v;
	size_t kl, vl;
	struct kv *a;

	for (;;) {
		if (rados_omap_get_next2(it, &k, &v, &kl, &vl) < 0)
			return -EIO;
		if (k == NULL)
			return 0;
		if (s->n == s->cap) {
			a = realloc(s->a, (s->cap ? s->cap * 2 : 8) * sizeof *a);
			if (a == NULL)
				return -ENOMEM;
			s->a = a;
			s->cap = s->cap ? s->cap * 2 : 8;
		}
		a = &s->a[s->n];
		a->k = malloc(kl + 1);
		a->v = malloc(vl + 1);
		if (a->k == NULL || a->v == NULL) {
			free(a->k);
			free(a->v);
			return -ENOMEM;
		}
		memcpy(a->k, k, kl);
		a->k[kl] = '\0';
		if (vl)
			memcpy(a->v, v, vl);
		a->v[vl] = '\0';
		a->klen = kl;
		a->vlen = vl;
		s->n++;
	}
}

int
re_read(struct rados_engine *e, const char *oid, const char *const *keys,
    struct kvset *vals, const char *after, const char *prefix, unsigned max,
    struct kvset *page, int *more)
{
	rados_read_op_t op = rados_create_read_op();
	rados_omap_iter_t it1 = NULL, it2 = NULL;
	unsigned char m = 0;
	int r1 = 0, r2 = 0, rc;
	size_t nk = 0;

	if (op == NULL)
		return -ENOMEM;
	while (keys && keys[nk])
		nk++;
	if (nk)
		rados_read_op_omap_get_vals_by_keys(op, keys, nk, &it1, &r1);
	if (page)
		rados_read_op_omap_get_vals2(op, after, prefix, max, &it2, &m,
		    &r2);
	rc = rados_read_op_operate(op, e->io, oid, 0);
	if (rc == 0)
		rc = r1 < 0 ? r1 : r2;
	if (rc == 0 && it1)
		rc = kvset_fill_iter(vals, it1);
	if (rc == 0 && it2)
		rc = kvset_fill_iter(page, it2);
	if (rc == 0 && more)
		*more = m != 0;
	if (it1)
		rados_omap_get_end(it1);
	if (it2)
		rados_omap_get_end(it2);
	rados_release_read_op(op);
	if (rc < 0 && rc != -ENOENT && rc != -ENOMEM)
		return re_err("read", oid, rc);
	return rc;
}

/* --- stores and guarded writes --- */

static int
is_sub(const char *name, size_t len)
{
	if (len == 3 && memcmp(name, "new", 3) == 0)
		return MST_SUB_NEW;
	if (len == 3 && memcmp(name, "cur", 3) == 0)
		return MST_SUB_CUR;
	return 0;
}

static void
store_for_kind(struct rstore *s, uint64_t id, uint64_t parent, int kind)
{
	s->dir = id;
	s->shard = 0;
	if (kind && id != RE_ROOT_ID) {
		re_oid(s->oid, 'm', parent);
		strcpy(s->pfx, kind == MST_SUB_NEW ? "N." : "C.");
		s->folder = parent;
	} else {
		re_oid(s->oid, 'd', id);
		s->pfx[0] = '\0';
		s->folder = 0;
	}
}

void
re_store_of(struct rstore *s, uint64_t id, uint64_t parent, const char *name,
    size_t namelen)
{
	store_for_kind(s, id, parent, is_sub(name, namelen));
}

void
re_key(char *out, const struct rstore *s, const char *k, const char *name,
    size_t namelen)
{
	snprintf(out, RE_KEY_MAX, "%s%s%.*s", s->pfx, k, (int)namelen,
	    name ? name : "");
}

static void
st_value(char *out, char c, uint64_t id)
{
	out[0] = c;
	re_hex(out + 1, id);
}

void
re_state(const struct rstore *s, const struct kvset *vals, int exists,
    struct rstate *out)
{
	char k[RE_KEY_MAX], want[18];
	const struct kv *v;

	memset(out, 0, sizeof *out);
	out->exists = exists;
	re_key(k, s, "st", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL && v->vlen < sizeof out->st_raw) {
		memcpy(out->st_raw, v->v, v->vlen);
		out->st_len = v->vlen;
		st_value(want, 'L', s->dir);
		out->live = v->vlen == 17 && memcmp(v->v, want, 17) == 0;
		st_value(want, 'D', s->dir);
		out->dead = v->vlen == 17 && memcmp(v->v, want, 17) == 0;
		st_value(want, 'F', s->dir);
		out->fenced = v->vlen == 17 && memcmp(v->v, want, 17) == 0;
	}
	re_key(k, s, "n", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL) {
		out->has_n = 1;
		re_unhex(v->v, v->vlen, &out->n);
	}
	re_key(k, s, "c", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL)
		re_unhex(v->v, v->vlen, &out->c);
	re_key(k, s, "lf", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL)
		re_unhex(v->v, v->vlen, &out->lf);
	re_key(k, s, "nd", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL)
		re_unhex(v->v, v->vlen, &out->nd);
	re_key(k, s, "t", NULL, 0);
	if ((v = kvset_get(vals, k)) != NULL && v->vlen == 9)
		out->t = er_get64((const uint8_t *)v->v + 1);
}

void
re_cmp(rados_write_op_t op, const char *key, const void *val, size_t len)
{
	rados_write_op_omap_cmp2(op, key, LIBRADOS_CMPXATTR_OP_EQ, val,
	    strlen(key), len, NULL);
}

void
re_set(rados_write_op_t op, const char *key, const void *val, size_t len)
{
	size_t kl = strlen(key);
	const char *k = key, *v = val;

	rados_write_op_omap_set2(op, &k, &v, &kl, &len, 1);
}

void
re_rm(rados_write_op_t op, const char *key)
{
	size_t kl = strlen(key);
	const char *k = key;

	rados_write_op_omap_rm_keys2(op, &k, &kl, 1);
}

void
re_guard_live(rados_write_op_t op, const struct rstore *s)
{
	char k[RE_KEY_MAX], v[18];

	re_key(k, s, "st", NULL, 0);
	st_value(v, 'L', s->dir);
	re_cmp(op, k, v, 17);
}

static void
set_hex(rados_write_op_t op, const struct rstore *s, const char *k,
    uint64_t v)
{
	char key[RE_KEY_MAX], h[17];

	re_key(key, s, k, NULL, 0);
	re_hex(h, v);
	re_set(op, key, h, 16);
}

static void
set_time(rados_write_op_t op, const struct rstore *s, int64_t now)
{
	char key[RE_KEY_MAX];
	uint8_t t[9] = { 'T' };

	er_put64(t + 1, (uint64_t)now);
	re_key(key, s, "t", NULL, 0);
	re_set(op, key, t, sizeof t);
}

void
re_bump(rados_write_op_t op, const struct rstore *s, uint64_t old,
    uint64_t new, int64_t now)
{
	char key[RE_KEY_MAX], h[17], lo[RE_KEY_MAX], hi[RE_KEY_MAX];
	uint64_t floor;

	re_key(key, s, "c", NULL, 0);
	re_hex(h, old);
	if (old)
		re_cmp(op, key, h, 16);
	else
		re_cmp(op, key, "", 0);
	set_hex(op, s, "c", new);
	if (now >= 0)
		set_time(op, s, now);
	if (old >> 8 != new >> 8 && new > RE_LOG_KEEP) {
		floor = new - RE_LOG_KEEP;
		re_key(lo, s, "l.", NULL, 0);
		re_hex(h, floor);
		re_key(hi, s, "l.", h, 16);
		rados_write_op_omap_rm_range2(op, lo, strlen(lo), hi,
		    strlen(hi));
		set_hex(op, s, "lf", floor);
	}
}

void
re_log(rados_write_op_t op, const struct rstore *s, uint64_t c, uint8_t ev,
    const struct rentry *en, const char *name, size_t namelen)
{
	uint8_t v[2 + RE_ENTRY_LEN + 2 + MST_NAME_MAX];
	char key[RE_KEY_MAX], h[17];

	v[0] = 'L';
	v[1] = ev;
	ren_encode(en, v + 2);
	v[2 + RE_ENTRY_LEN] = (uint8_t)namelen;
	v[3 + RE_ENTRY_LEN] = (uint8_t)(namelen >> 8);
	memcpy(v + 4 + RE_ENTRY_LEN, name, namelen);
	re_hex(h, c);
	re_key(key, s, "l.", h, 16);
	re_set(op, key, v, 4 + RE_ENTRY_LEN + namelen);
}

int
re_write(struct rados_engine *e, const char *oid, rados_write_op_t op)
{
	int rc = rados_write_op_operate(op, e->io, oid, NULL, 0);

	rados_release_write_op(op);
	if (rc == -ECANCELED)
		atomic_fetch_add(&e->cancels, 1);
	return rc;
}

/* A new store's first keys: live for s->dir, counter |c|. */
static void
store_init(rados_write_op_t op, const struct rstore *s, uint64_t c,
    int64_t now)
{
	char k[RE_KEY_MAX], v[18];

	re_key(k, s, "st", NULL, 0);
	st_value(v, 'L', s->dir);
	re_set(op, k, v, 17);
	set_hex(op, s, "c", c);
	set_hex(op, s, "lf", c);
	set_hex(op, s, "nd", 0);
	set_hex(op, s, "n", 0);
	set_time(op, s, now);
}

int
re_claim(struct rados_engine *e, const struct rstore *s)
{
	char kst[RE_KEY_MAX], kc[RE_KEY_MAX], lo[RE_KEY_MAX], hi[RE_KEY_MAX];
	const char *keys[] = { kst, kc, NULL };
	struct kvset vals = { 0 };
	struct rstate st;
	rados_write_op_t op;
	unsigned n;
	int rc, tries;

	/* A folder's first store brings its layout (m.<P> made with L). */
	if (s->pfx[0] && (rc = re_shards(e, s, &n)) < 0)
		return rc;
	re_key(kst, s, "st", NULL, 0);
	re_key(kc, s, "c", NULL, 0);
	re_key(lo, s, "l.", NULL, 0);
	re_key(hi, s, "l/", NULL, 0);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_read(e, s->oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		re_state(s, &vals, rc == 0, &st);
		kvset_free(&vals);
		if (st.live)
			return 0;
		if (st.dead)
			return -ENOENT;
		if (st.fenced) {	/* by an RMDIR of a sharded folder */
			if ((rc = re_revive(e, s)) < 0)
				return rc;
			continue;
		}
		/* Held by another directory of this name: ours was removed
		 * and made again since it was resolved (a stale path). */
		if (st.st_len && st.st_raw[0] == 'L')
			return -ENOENT;
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_cmp(op, kst, st.st_raw, st.st_len);
		re_bump(op, s, st.c, st.c + 1, re_now());
		/* Records of an earlier directory of this name go: its
		 * deltas mean nothing to this one. */
		rados_write_op_omap_rm_range2(op, lo, strlen(lo), hi,
		    strlen(hi));
		store_init(op, s, st.c + 1, re_now());
		rc = re_write(e, s->oid, op);
		if (rc == 0)
			return 0;
		if (rc != -ECANCELED)
			return re_err("claim", s->oid, rc);
	}
	return -EIO;
}

int
re_make_head(struct rados_engine *e, uint64_t id, uint64_t parent, int kind,
    uint32_t mode, uint32_t uid, uint32_t gid, int64_t now)
{
	struct rhead h = { .mode = mode, .uid = uid, .gid = gid,
		.ctime = (uint64_t)now, .atime = (uint64_t)now,
		.parent = parent, .kind = (uint8_t)kind };
	uint8_t a[RE_HEAD_LEN];
	char oid[RE_OID_MAX];
	struct rstore s;
	rados_write_op_t op = rados_create_write_op();
	int rc;

	if (op == NULL)
		return -ENOMEM;
	re_oid(oid, 'd', id);
	head_encode(&h, a);
	rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	re_set(op, "a", a, sizeof a);
	if (kind == 0) {
		store_for_kind(&s, id, parent, 0);
		store_init(op, &s, 1, now);
	}
	rc = re_write(e, oid, op);
	if (rc < 0 && rc != -EEXIST)
		return re_err("create", oid, rc);
	return rc;
}

int
re_msg_loc(struct rados_engine *e, uint64_t id, struct rstore *s,
    char key[RE_KEY_MAX])
{
	char oid[RE_OID_MAX], loc[RE_OID_MAX + 2 + RE_KEY_MAX + 1], *sp;
	int rc;

	re_oid(oid, 'b', id);
	rc = rados_getxattr(e->io, oid, "loc", loc, sizeof loc - 1);
	if (rc < 0)
		return rc == -ENOENT || rc == -ENODATA ? -ENOENT :
		    re_err("getxattr loc", oid, rc);
	loc[rc] = '\0';
	sp = strchr(loc, ' ');
	if (sp == NULL || (size_t)(sp - loc) >= sizeof s->oid ||
	    strlen(sp + 1) >= RE_KEY_MAX)
		return re_err("decode loc of", oid, -EIO);
	memset(s, 0, sizeof *s);
	memcpy(s->oid, loc, (size_t)(sp - loc));
	re_store_from_oid(s);
	strcpy(key, sp + 1);
	if ((key[0] == 'N' || key[0] == 'C') && key[1] == '.') {
		s->pfx[0] = key[0];
		s->pfx[1] = '.';
	}
	return 0;
}

/* --- resolution --- */

/*
 * The resolution cache: directory path -> its resolution, so that a
 * delivery does not walk the tree object by object. Only directories
 * are kept, each with all its ancestors (so a path that is not cached
 * has no cached descendant), and only while the notice watch runs:
 * every REMOVE notice, this server's or another's (a RMDIR, a RENAME of
 * a directory), drops the name and everything below it, and a watch
 * error drops everything. A removed directory found through a stale
 * entry fails its own store's live guard (ENOENT); a directory renamed
 * by another server can be reached under its old path until that
 * server's notice arrives (milliseconds), which puts a delivery into the
 * renamed folder as if it had come just before the rename.
 */
struct centry {
	struct centry *next;
	struct rres r;		/* name: offset into path, see below */
	size_t nameoff;
	size_t len;
	char path[];
};

static uint64_t
chash(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
	return h % RE_CACHE_BUCKETS;
}

static void
cache_flush_locked(struct rados_engine *e)
{
	struct centry *c, *n;
	size_t i;

	for (i = 0; i < RE_CACHE_BUCKETS; i++) {
		for (c = e->cache[i]; c; c = n) {
			n = c->next;
			free(c);
		}
		e->cache[i] = NULL;
	}
	e->ncache = 0;
}

void
re_cache_flush(struct rados_engine *e)
{
	pthread_mutex_lock(&e->cmu);
	cache_flush_locked(e);
	pthread_mutex_unlock(&e->cmu);
}

void
re_cache_drop(struct rados_engine *e, const char *dir, const char *name)
{
	char p[MST_PATH_MAX + 2];
	struct centry **pp, *c;
	size_t len, i;
	int found, n = snprintf(p, sizeof p, "%s%s%s", dir, *dir ? "/" : "",
	    name);

	if (n < 0 || (size_t)n >= sizeof p)
		return;
	len = (size_t)n;
	pthread_mutex_lock(&e->cmu);
	for (c = e->cache[chash(p, len)]; c; c = c->next)
		if (c->len == len && memcmp(c->path, p, len) == 0)
			break;
	/* Everything below it too (in any bucket); none is cached when it
	 * is not (cache_put keeps ancestors). */
	for (i = 0, found = c != NULL; found && i < RE_CACHE_BUCKETS; i++) {
		for (pp = &e->cache[i]; (c = *pp) != NULL;) {
			if (c->len >= len && memcmp(c->path, p, len) == 0 &&
			    (c->len == len || c->path[len] == '/')) {
				*pp = c->next;
				free(c);
				e->ncache--;
			} else {
				pp = &c->next;
			}
		}
	}
	pthread_mutex_unlock(&e->cmu);
}

/* Per worker thread: does this job bypass the cache, did it use it. */
static __thread int job_nocache, job_used;

int
re_cache_job(int nocache)
{
	int used = job_used;

	job_nocache = nocache;
	job_used = 0;
	return used;
}

static int
cache_get(struct rados_engine *e, const char *path, size_t len,
    struct rres *out)
{
	struct centry *c;
	int hit = 0;

	if (!e->watching || job_nocache)
		return 0;
	pthread_mutex_lock(&e->cmu);
	for (c = e->cache[chash(path, len)]; c; c = c->next)
		if (c->len == len && memcmp(c->path, path, len) == 0)
			break;
	if (c) {
		*out = c->r;
		out->name = path + c->nameoff;
		hit = job_used = 1;
	}
	pthread_mutex_unlock(&e->cmu);
	return hit;
}

static void
cache_put(struct rados_engine *e, const char *path, size_t len,
    const struct rres *r)
{
	struct centry *c, *p;
	uint64_t h = chash(path, len);
	size_t dl;

	for (dl = len; dl > 0 && path[dl - 1] != '/'; dl--)
		;
	dl = dl ? dl - 1 : 0;
	if (!e->watching || (c = malloc(sizeof *c + len)) == NULL)
		return;
	c->r = *r;
	c->r.name = NULL;
	c->nameoff = (size_t)(r->name - path);
	c->len = len;
	memcpy(c->path, path, len);
	pthread_mutex_lock(&e->cmu);
	/* Only below a cached parent: a flush since the parent was looked
	 * up must not leave a child that re_cache_drop would not find. */
	for (p = dl ? e->cache[chash(path, dl)] : NULL; p; p = p->next)
		if (p->len == dl && memcmp(p->path, path, dl) == 0)
			break;
	if ((dl && p == NULL) || e->ncache >= RE_CACHE_MAX) {
		if (e->ncache >= RE_CACHE_MAX)
			cache_flush_locked(e);
		pthread_mutex_unlock(&e->cmu);
		free(c);
		return;
	}
	c->next = e->cache[h];
	e->cache[h] = c;
	e->ncache++;
	pthread_mutex_unlock(&e->cmu);
}

static int
resolve(struct rados_engine *e, const char *path, size_t len,
    struct rres *out, int use_cache)
{
	char key[RE_KEY_MAX];
	const char *keys[] = { key, NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rstore s;
	uint64_t cur = RE_ROOT_ID;
	size_t i = 0, n, dl;
	int rc;

	memset(out, 0, sizeof *out);
	out->id = RE_ROOT_ID;
	out->type = MST_T_DIR;
	out->root = 1;
	store_for_kind(&s, RE_ROOT_ID, 0, 0);
	/* Start below the longest cached prefix: the path, or its parent. */
	for (dl = len; dl > 0 && path[dl - 1] != '/'; dl--)
		;
	dl = dl ? dl - 1 : 0;
	if (use_cache && len && cache_get(e, path, len, out))
		i = len;
	else if (use_cache && dl && cache_get(e, path, dl, out))
		i = dl + 1;
	if (i) {
		cur = out->id;
		re_store_of(&s, out->id, out->parent, out->name, out->namelen);
	}
	while (i < len) {
		for (n = 0; i + n < len && path[i + n] != '/'; n++)
			;
		if (n == 0 || n > MST_NAME_MAX)
			return -EINVAL;
		if (out->type != MST_T_DIR)
			return -ENOTDIR;
		if ((rc = re_shard(e, &s, path + i, n)) < 0)
			return rc;
		re_key(key, &s, "e.", path + i, n);
		rc = re_read(e, s.oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		if (rc < 0) {
			kvset_free(&vals);
			return rc;
		}
		v = kvset_get(&vals, key);
		if (v == NULL || ren_decode(v->v, v->vlen, &out->en) < 0) {
			rc = v ? re_err("decode entry", key, -EIO) : -ENOENT;
			kvset_free(&vals);
			return rc;
		}
		memcpy(out->raw, v->v, RE_ENTRY_LEN);
		kvset_free(&vals);
		out->root = 0;
		out->parent = cur;
		out->pstore = s;
		out->name = path + i;
		out->namelen = n;
		out->id = out->en.id;
		out->type = out->en.type;
		if (out->type == MST_T_DIR) {
			re_store_of(&s, out->id, cur, path + i, n);
			if (use_cache)
				cache_put(e, path, i + n, out);
		}
		cur = out->id;
		i += n + (i + n < len);
	}
	return 0;
}

int
re_resolve(struct rados_engine *e, const char *path, size_t len,
    struct rres *out)
{
	return resolve(e, path, len, out, 1);
}

int
re_resolve_fresh(struct rados_engine *e, const char *path, size_t len,
    struct rres *out)
{
	return resolve(e, path, len, out, 0);
}

int
re_mail_dir(struct rados_engine *e, struct mst_str mailbox,
    struct mst_str folder, uint8_t sub, char *buf, size_t cap,
    struct rres *out)
{
	int n = snprintf(buf, cap, "%.*s%s%.*s%s%s", (int)mailbox.len,
	    mailbox.p, mailbox.len ? "/" : "", (int)folder.len, folder.p,
	    folder.len ? "/" : "", sub == MST_SUB_NEW ? "new" : "cur");

	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return re_resolve(e, buf, (size_t)n, out);
}

int
re_dir_store(const struct rres *r, struct rstore *s)
{
	if (r->type != MST_T_DIR)
		return -ENOTDIR;
	if (r->root)
		store_for_kind(s, RE_ROOT_ID, 0, 0);
	else
		re_store_of(s, r->id, r->parent, r->name, r->namelen);
	return 0;
}

static int
read_state(struct rados_engine *e, const struct rstore *s,
    struct rstate *st)
{
	char k1[RE_KEY_MAX], k2[RE_KEY_MAX], k3[RE_KEY_MAX], k4[RE_KEY_MAX];
	const char *keys[] = { k1, k2, k3, k4, NULL };
	struct kvset vals = { 0 };
	int rc;

	re_key(k1, s, "st", NULL, 0);
	re_key(k2, s, "c", NULL, 0);
	re_key(k3, s, "t", NULL, 0);
	re_key(k4, s, "nd", NULL, 0);
	rc = re_read(e, s->oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	re_state(s, &vals, rc == 0, st);
	kvset_free(&vals);
	return rc == -ENOENT ? 0 : rc;
}

int
re_dir_attr(struct rados_engine *e, uint64_t id, struct mst_attr *a,
    struct rstate *st_out)
{
	const char *keys[] = { "a", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	char oid[RE_OID_MAX];
	struct rhead h = { 0 };
	struct rstore s;
	struct rstate st;
	int rc;

	re_oid(oid, 'd', id);
	rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	if (rc == 0) {
		v = kvset_get(&vals, "a");
		rc = v == NULL ? -ENOENT : head_decode(v, &h);
	}
	kvset_free(&vals);
	if (rc < 0)
		return rc;
	store_for_kind(&s, id, h.parent, h.kind);
	rc = h.kind ? re_dir_state(e, &s, &st, 0) : read_state(e, &s, &st);
	if (rc < 0)
		return rc;
	if (st.dead)
		return -ENOENT;
	memset(a, 0, sizeof *a);
	a->type = MST_T_DIR;
	a->id = id;
	a->size = 4096;
	a->mode = h.mode;
	a->uid = h.uid;
	a->gid = h.gid;
	a->nlink = (uint32_t)(2 + st.nd);
	a->mtime_ns = st.t;
	a->ctime_ns = st.t > h.ctime ? st.t : h.ctime;
	a->atime_ns = h.atime;
	a->change = st.c;
	if (st_out)
		*st_out = st;
	return 0;
}

int
re_dir_setattr(struct rados_engine *e, uint64_t id,
    const struct mst_fsetattr_req *q)
{
	const char *keys[] = { "a", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	char oid[RE_OID_MAX], raw[RE_HEAD_LEN];
	uint8_t a[RE_HEAD_LEN];
	struct rhead h;
	struct rstore s;
	rados_write_op_t op;
	int rc, tries;

	re_oid(oid, 'd', id);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		v = rc == 0 ? kvset_get(&vals, "a") : NULL;
		if (rc == 0)
			rc = v == NULL ? -ENOENT : head_decode(v, &h);
		if (rc == 0)
			memcpy(raw, v->v, RE_HEAD_LEN);
		kvset_free(&vals);
		if (rc < 0)
			return rc;
		if (q->valid & MST_SA_SIZE)
			return -EISDIR;
		if (q->valid & MST_SA_MODE)
			h.mode = q->mode & 07777;
		if (q->valid & MST_SA_UID)
			h.uid = q->uid;
		if (q->valid & MST_SA_GID)
			h.gid = q->gid;
		if (q->valid & MST_SA_ATIME)
			h.atime = q->atime_ns;
		h.ctime = (uint64_t)re_now();
		head_encode(&h, a);
		store_for_kind(&s, id, h.parent, h.kind);
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		re_cmp(op, "a", raw, RE_HEAD_LEN);
		re_set(op, "a", a, RE_HEAD_LEN);
		if ((q->valid & MST_SA_MTIME) && s.pfx[0] == '\0')
			set_time(op, &s, (int64_t)q->mtime_ns);
		rc = re_write(e, oid, op);
		if (rc == -ECANCELED)
			continue;
		if (rc < 0)
			return re_err("set attributes of", oid, rc);
		if ((q->valid & MST_SA_MTIME) && s.pfx[0] != '\0') {
			/* A new/ or cur/ keeps its mtime in the folder's
			 * object: set there while the store is this dir's. */
			if ((op = rados_create_write_op()) == NULL)
				return -ENOMEM;
			re_guard_live(op, &s);
			set_time(op, &s, (int64_t)q->mtime_ns);
			rc = re_write(e, s.oid, op);
			if (rc < 0 && rc != -ECANCELED)
				return re_err("set mtime in", s.oid, rc);
		}
		return 0;
	}
	return re_err("set attributes (too many races)", oid, -EAGAIN);
}

/* --- start-up --- */

static int
take_incarnation(struct rados_engine *e)
{
	const char *keys[] = { "incarn", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	uint64_t inc;
	char old[17], new[17];
	rados_write_op_t op;
	int rc, tries;

	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_read(e, "mst.meta", keys, &vals, NULL, NULL, 0, NULL,
		    NULL);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		inc = 1;
		v = kvset_get(&vals, "incarn");
		if (v && re_unhex(v->v, v->vlen, &inc) < 0)
			inc = 0;
		kvset_free(&vals);
		if (inc == 0 || inc >= (1u << 20)) {
			log_err("rados: mst.meta incarn is damaged or exhausted");
			return -EIO;
		}
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		re_hex(old, inc);
		re_hex(new, inc + 1);
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_cmp(op, "incarn", v ? old : "", v ? 16 : 0);
		re_set(op, "incarn", new, 16);
		re_set(op, "format", "1", 1);
		rc = re_write(e, "mst.meta", op);
		if (rc == 0) {
			e->inc = inc;
			return 0;
		}
		if (rc != -ECANCELED)
			return re_err("take incarnation", "mst.meta", rc);
	}
	return -EIO;
}

static int
connect_cluster(struct rados_engine *e)
{
	const struct engine_conf *c = &e->conf;
	char who[128];
	int rc;

	snprintf(who, sizeof who, "client.%s",
	    c->ceph_id ? c->ceph_id : "admin");
	rc = rados_create2(&e->cl, "ceph", who, 0);
	if (rc < 0) {
		log_err("rados: creating a cluster handle for %s: %s", who,
		    strerror(-rc));
		return rc;
	}
	rc = rados_conf_read_file(e->cl, c->ceph_conf);
	if (rc < 0) {
		log_err("rados: reading ceph config %s: %s",
		    c->ceph_conf ? c->ceph_conf : "(default)", strerror(-rc));
		return rc;
	}
	if (rados_conf_set(e->cl, "rados_osd_op_timeout", RE_OP_TIMEOUT) < 0 ||
	    rados_conf_set(e->cl, "rados_mon_op_timeout", RE_OP_TIMEOUT) < 0 ||
	    rados_conf_set(e->cl, "client_mount_timeout",
	    RE_MOUNT_TIMEOUT) < 0) {
		log_err("rados: setting the timeouts failed");
		return -EINVAL;
	}
	rc = rados_connect(e->cl);
	if (rc < 0) {
		log_err("rados: connecting to the cluster of %s as %s: %s",
		    c->ceph_conf, who, strerror(-rc));
		return rc;
	}
	rc = rados_ioctx_create(e->cl, c->pool, &e->io);
	if (rc < 0) {
		log_err("rados: pool %s: %s%s", c->pool, strerror(-rc),
		    rc == -ENOENT ? " (create it: ceph osd pool create NAME; "
		    "it must be replicated, omap needs it)" : "");
		return rc;
	}
	/* Every object and watch of this store, apart from other stores
	 * in the pool. */
	if (c->ceph_namespace != NULL)
		rados_ioctx_set_namespace(e->io, c->ceph_namespace);
	e->instance = rados_get_instance_id(e->cl);
	return 0;
}

/* --- threads --- */

static void *
worker_main(void *arg)
{
	struct rados_engine *e = arg;
	struct job *j;

	for (;;) {
		pthread_mutex_lock(&e->mu);
		while (e->head == NULL && !e->stop)
			pthread_cond_wait(&e->cv, &e->mu);
		j = e->head;
		if (j == NULL) {
			pthread_mutex_unlock(&e->mu);
			return NULL;
		}
		e->head = j->next;
		if (e->head == NULL)
			e->tail = NULL;
		pthread_mutex_unlock(&e->mu);
		j->next = NULL;
		re_run(e, j);
		if (j->status == 0)
			re_publish(e, j);
		e->conf.done(e->conf.done_arg, j);
	}
}

static void
rados_submit(struct engine *eng, struct job *j)
{
	struct rados_engine *e = (struct rados_engine *)eng;

	if (j->op == MST_OP_LOCK || j->op == ENG_OP_UNLOCK_OWNER) {
		re_lock_submit(e, j);	/* engine_rados_lock.c */
		return;
	}
	j->next = NULL;
	pthread_mutex_lock(&e->mu);
	if (e->tail)
		e->tail->next = j;
	else
		e->head = j;
	e->tail = j;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void
re_free(struct rados_engine *e)
{
	int i;

	if (e->io)
		rados_ioctx_destroy(e->io);
	if (e->cl)
		rados_shutdown(e->cl);
	for (i = 0; i < RE_STRIPES; i++)
		pthread_mutex_destroy(&e->stripe[i]);
	cache_flush_locked(e);
	re_lay_flush(e);
	pthread_mutex_destroy(&e->lmu);
	re_orefs_free(e);
	pthread_cond_destroy(&e->ocv);
	pthread_mutex_destroy(&e->omu);
	pthread_mutex_destroy(&e->cmu);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
}

static void
rados_close(struct engine *eng)
{
	struct rados_engine *e = (struct rados_engine *)eng;
	int i;

	if (e == NULL)
		return;
	pthread_mutex_lock(&e->mu);
	e->stop = 1;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	for (i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	re_usage_stop(e);
	re_lock_stop(e);
	re_orefs_stop(e);
	re_watch_stop(e);
	log_info("rados: closed (incarnation %" PRIu64 ", %" PRIu64
	    " deliveries, %" PRIu64 " guarded writes cancelled by a race)",
	    e->inc, (uint64_t)e->delivered, (uint64_t)e->cancels);
	re_free(e);
}

static int
rados_open(const struct engine_conf *c, struct engine **out)
{
	struct rados_engine *e = calloc(1, sizeof *e);
	int i, rc;

	if (e == NULL)
		return -ENOMEM;
	e->conf = *c;
	pthread_mutex_init(&e->mu, NULL);
	pthread_mutex_init(&e->cmu, NULL);
	pthread_mutex_init(&e->lmu, NULL);
	pthread_mutex_init(&e->omu, NULL);
	e->shards = c->index_shards ? c->index_shards : RE_SHARDS_DEFAULT;
	if (e->shards > RE_SHARDS_MAX)
		e->shards = RE_SHARDS_MAX;
	e->shard_cap = c->index_cap ? c->index_cap : RE_CAP_DEFAULT;
	pthread_cond_init(&e->ocv, NULL);
	pthread_cond_init(&e->cv, NULL);
	for (i = 0; i < RE_STRIPES; i++)
		pthread_mutex_init(&e->stripe[i], NULL);
	atomic_init(&e->seq, 1);
	if (c->pool == NULL) {
		log_err("rados: no pool: give --pool NAME or 'pool =' "
		    "(mstore.conf(5))");
		re_free(e);
		return -EINVAL;
	}
	rc = connect_cluster(e);
	if (rc == 0)
		rc = take_incarnation(e);
	if (rc == 0) {
		rc = re_make_head(e, RE_ROOT_ID, 0, 0, 0755, 0, 0, re_now());
		if (rc == -EEXIST)
			rc = 0;
	}
	if (rc == 0)
		rc = re_quota_load(e);
	if (rc == 0)
		rc = re_watch_start(e);
	if (rc < 0) {
		re_free(e);
		return rc;
	}
	re_orefs_start(e);
	re_usage_start(e);
	for (i = 0; i < RE_THREADS; i++) {
		rc = pthread_create(&e->threads[i], NULL, worker_main, e);
		if (rc != 0) {
			log_err("rados: starting a worker thread: %s",
			    strerror(rc));
			*out = (struct engine *)e;
			rados_close((struct engine *)e);
			return -rc;
		}
		e->nthreads++;
	}
	log_info("rados: pool %s, incarnation %" PRIu64 ", client %" PRIu64,
	    c->pool, e->inc, e->instance);
	*out = (struct engine *)e;
	return 0;
}

const struct engine_ops engine_rados = {
	.name = "rados",
	.open = rados_open,
	.submit = rados_submit,
	.close = rados_close,
	.locks = 1,
	.watches = 1,
};
