/*
 * engine_rados_scrub.c - ADMIN scrub of the rados back-end: what a
 * server that died between two steps leaves behind, and whether every
 * message is whole. Owns one pass over the pool:
 *
 *  1. list every object (rados_nobjects_list): bodies b.*, entry stores
 *     d.* and m.*, usage objects q.*;
 *  2. read every usage object's value and object version, and the
 *     version of the pool's totals (mst.usage); wait |settle| seconds so
 *     that deliveries that had reserved room by then have named their
 *     message (a recount must not miss them);
 *  3. page through every store's omap: each message entry names a body
 *     (kept in a sorted set); each idempotency record i.* older than
 *     |idem_expiry| is removed, guarded by its value (a record rewritten
 *     meanwhile stays);
 *  4. each body: named by an entry, its checksum verified (|verify|) and
 *     its size added to its mailbox (xattr mbox, the same that gives
 *     usage back when a body goes; an unnamed one within |grace| counts
 *     too: a delivery in flight); named by none and older than |grace|
 *     (object mtime), an orphan: a DELIVER whose server died between the
 *     body and the entry, a loser of a race whose removal failed, an
 *     EXPUNGE that stopped after the entry. Before it goes its loc entry
 *     is read once more (a message moved during the pass is kept) and
 *     the remove is guarded by the loc read (cmpxattr);
 *  5. each mailbox's usage is set to what its named bodies add up to,
 *     guarded by the object version read in 2 (a mailbox that had no
 *     usage object, filled before every server counted usage, gets one
 *     by exclusive create): any reservation or give back since then
 *     fails the guard and the mailbox is reported busy, not recounted.
 *     A message entry whose body is missing is damage;
 *  6. after two seconds (every server writes its changes of the totals
 *     each second), the pool's totals are set to what was counted in 4,
 *     guarded by the version read in 2 (engine_rados_quota.c): a change
 *     anywhere meanwhile leaves them as they were (usage_totals=busy).
 *
 * Progress (stats, and the scrub metrics): message bytes checked in 4,
 * of the bytes the usage objects count (known after 2; raised if the
 * bodies turn out to hold more), and the phase.
 *
 * Arguments (ADMIN arg, KEY=N words): grace=SECONDS (3600),
 * idem_expiry=SECONDS (86400), settle=SECONDS (10, only when there are
 * usage objects), verify=0|1 (1), dry_run=0|1 (0). Progress goes to
 * the log every 5 s; the reply is the key=value report that mstore-ctl
 * prints, ending with result=clean or result=damaged (orphans removed
 * and usage recounted are repairs, not damage).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "engine_rados.h"
#include "log.h"
#include "metrics.h"

#define PAGE		1024u
#define PROGRESS_S	5
#define DAMAGE_LINES	100	/* damage= lines in the reply, at most */
#define READ_CHUNK	(4u << 20)
#define IDEM_VLEN_MIN	(4 + RE_ENTRY_LEN)
/* Omap keys per object reported as large: half of Ceph's deep-scrub
 * warning (osd_deep_scrub_large_omap_object_key_threshold, 200000). */
#define LARGE_KEYS	100000u

struct idvec {
	uint64_t *v;
	size_t n, cap;
};

struct strvec {
	char **v;
	size_t n, cap;
};

/* A usage object as read before the pass. */
struct qsnap {
	char *mbox;		/* without "q." */
	uint64_t ver, bytes, msgs, nbytes, nmsgs;
	char raw[RE_QUOTA_LEN + 1];
	int ok;
	int absent;		/* none was listed: made by the recount */
};

/* The running scrub's progress, for stats (one scrub at a time counts;
 * another started meanwhile shares them). */
static atomic_int sp_running;
static atomic_uint_fast64_t sp_done, sp_total, sp_bodies_done,
    sp_bodies_total;
static const char *_Atomic sp_phase = "none";

static void
sp_set_phase(const char *phase)
{
	atomic_store(&sp_phase, phase);
}

static void
sp_add(uint64_t bytes)
{
	uint64_t done = atomic_fetch_add(&sp_done, bytes) + bytes;

	if (done > atomic_load(&sp_total)) {
		atomic_store(&sp_total, done);
		metrics_scrub_size(done);
	}
	metrics_scrub_progress(done);
}

void
re_scrub_stats(struct re_text *t)
{
	re_text_add(t, "scrub_running=%d\nscrub_phase=%s\n"
	    "scrub_bytes_done=%" PRIu64 "\nscrub_bytes_total=%" PRIu64
	    "\nscrub_bodies_done=%" PRIu64 "\nscrub_bodies_total=%" PRIu64
	    "\n", atomic_load(&sp_running) > 0, atomic_load(&sp_phase),
	    (uint64_t)atomic_load(&sp_done), (uint64_t)atomic_load(&sp_total),
	    (uint64_t)atomic_load(&sp_bodies_done),
	    (uint64_t)atomic_load(&sp_bodies_total));
}

struct scrub {
	struct rados_engine *e;
	struct re_text t;
	uint64_t grace, idem_expiry, settle, verify, dry_run;
	struct idvec bodies, named;
	struct strvec stores;
	struct qsnap *q;
	size_t nq;
	int64_t last;		/* monotonic s of the last progress line */
	uint64_t objects, entries, messages, idems, idem_expired;
	uint64_t bad_values, bad_bodies, missing, orphans, removed, young;
	uint64_t kept_moved, verified, qfixed, qbusy, errors, lines;
	uint64_t max_keys, large;
	uint64_t tbytes, tmsgs, tboxes;	/* counted for the totals */
	uint64_t usage_ver;		/* mst.usage's, read in 2 */
	int usage_read;			/* ... usage_ver was read */
	const char *totals;		/* what became of them */
	char max_oid[RE_OID_MAX];
};

static int
idvec_add(struct idvec *v, uint64_t id)
{
	uint64_t *p;

	if (v->n == v->cap) {
		p = realloc(v->v, (v->cap ? v->cap * 2 : 1024) * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		v->v = p;
		v->cap = v->cap ? v->cap * 2 : 1024;
	}
	v->v[v->n++] = id;
	return 0;
}

static int
strvec_add(struct strvec *v, const char *s)
{
	char **p;

	if (v->n == v->cap) {
		p = realloc(v->v, (v->cap ? v->cap * 2 : 256) * sizeof *p);
		if (p == NULL)
			return -ENOMEM;
		v->v = p;
		v->cap = v->cap ? v->cap * 2 : 256;
	}
	if ((v->v[v->n] = strdup(s)) == NULL)
		return -ENOMEM;
	v->n++;
	return 0;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
idvec_has(const struct idvec *v, uint64_t id)
{
	return bsearch(&id, v->v, v->n, sizeof *v->v, u64_cmp) != NULL;
}

static int64_t
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
progress(struct scrub *sc, const char *phase, uint64_t done, uint64_t of)
{
	int64_t now = mono_s();

	if (now - sc->last < PROGRESS_S)
		return;
	sc->last = now;
	if (of)
		log_info("rados: scrub: %s %" PRIu64 " of %" PRIu64, phase,
		    done, of);
	else
		log_info("rados: scrub: %s %" PRIu64, phase, done);
}

static void
damage(struct scrub *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
damage(struct scrub *sc, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (sc->lines++ >= DAMAGE_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	re_text_add(&sc->t, "damage=%s\n", line);
}

static int qsnap_cmp(const void *a, const void *b);

/* 1: every object, by kind. */
static int
list_pool(struct scrub *sc)
{
	rados_list_ctx_t ctx;
	const char *oid;
	uint64_t id;
	int rc;

	rc = rados_nobjects_list_open(sc->e->io, &ctx);
	if (rc < 0)
		return re_err("list objects of", sc->e->conf.pool, rc);
	while ((rc = rados_nobjects_list_next(ctx, &oid, NULL, NULL)) == 0) {
		sc->objects++;
		progress(sc, "objects listed", sc->objects, 0);
		if (oid[0] == 'b' && oid[1] == '.' && strlen(oid) == 18 &&
		    re_unhex(oid + 2, 16, &id) == 0) {
			rc = idvec_add(&sc->bodies, id);
		} else if ((oid[0] == 'd' || oid[0] == 'm') &&
		    oid[1] == '.') {
			/* Every entry store, whatever follows the id (a
			 * folder shard's .<k>): a store missed here
			 * would make its messages' bodies look orphaned
			 * (the loc check before a removal still keeps
			 * them). */
			rc = strvec_add(&sc->stores, oid);
		} else if (oid[0] == 'q' && oid[1] == '.') {
			struct qsnap *q = realloc(sc->q, (sc->nq + 1) *
			    sizeof *q);

			if (q == NULL)
				rc = -ENOMEM;
			else {
				sc->q = q;
				memset(&q[sc->nq], 0, sizeof *q);
				if ((q[sc->nq].mbox = strdup(oid + 2)) == NULL)
					rc = -ENOMEM;
				else
					sc->nq++;
			}
		}
		if (rc < 0)
			break;
	}
	rados_nobjects_list_close(ctx);
	if (rc == -ENOENT)
		rc = 0;		/* the end */
	if (rc < 0)
		return rc == -ENOMEM ? rc : re_err("list objects of",
		    sc->e->conf.pool, rc);
	qsort(sc->bodies.v, sc->bodies.n, sizeof *sc->bodies.v, u64_cmp);
	if (sc->nq)
		qsort(sc->q, sc->nq, sizeof *sc->q, qsnap_cmp);
	return 0;
}

/* 2: one usage object's value and version. */
static void
quota_snap(struct scrub *sc, struct qsnap *q)
{
	char oid[MST_PATH_MAX + 8];
	const char *keys[] = { "u" };
	rados_read_op_t op = rados_create_read_op();
	rados_omap_iter_t it = NULL;
	rados_completion_t c = NULL;
	char *k, *v;
	size_t kl, vl;
	int r1 = 0, rc;

	snprintf(oid, sizeof oid, "q.%s", q->mbox);
	if (op == NULL)
		return;
	rados_read_op_omap_get_vals_by_keys(op, keys, 1, &it, &r1);
	rc = rados_aio_create_completion2(NULL, NULL, &c);
	if (rc == 0)
		rc = rados_aio_read_op_operate(op, sc->e->io, c, oid, 0);
	if (rc == 0) {
		rados_aio_wait_for_complete(c);
		rc = rados_aio_get_return_value(c);
		if (rc == 0)
			q->ver = rados_aio_get_version(c);
	}
	if (rc == 0 && r1 < 0)
		rc = r1;
	if (rc == 0 && rados_omap_get_next2(it, &k, &v, &kl, &vl) == 0 &&
	    k != NULL && vl == RE_QUOTA_LEN &&
	    re_quota_decode(v, vl, &q->bytes, &q->msgs) == 0) {
		memcpy(q->raw, v, RE_QUOTA_LEN);
		q->ok = 1;
	}
	if (it)
		rados_omap_get_end(it);
	if (c)
		rados_aio_release(c);
	rados_release_read_op(op);
	if (rc < 0 && rc != -ENOENT) {
		sc->errors++;
		log_warn("rados: scrub: reading %s: %s", oid, strerror(-rc));
	}
}

/* Remove expired idempotency records of |oid|, each guarded by its
 * value: in one op, or one by one when another server changed one. */
static void
idem_remove(struct scrub *sc, const char *oid, struct kvset *ex)
{
	rados_write_op_t op;
	size_t i, k;
	int rc = -ECANCELED;

	if (ex->n == 0 || sc->dry_run) {
		sc->idem_expired += sc->dry_run ? ex->n : 0;
		return;
	}
	if ((op = rados_create_write_op()) != NULL) {
		for (i = 0; i < ex->n; i++) {
			re_cmp(op, ex->a[i].k, ex->a[i].v, ex->a[i].vlen);
			re_rm(op, ex->a[i].k);
		}
		rc = re_write(sc->e, oid, op);
	}
	if (rc == 0) {
		sc->idem_expired += ex->n;
		return;
	}
	for (k = 0; k < ex->n; k++) {
		if ((op = rados_create_write_op()) == NULL)
			break;
		re_cmp(op, ex->a[k].k, ex->a[k].v, ex->a[k].vlen);
		re_rm(op, ex->a[k].k);
		rc = re_write(sc->e, oid, op);
		if (rc == 0)
			sc->idem_expired++;
		else if (rc != -ECANCELED) {
			sc->errors++;
			log_warn("rados: scrub: removing %s %s: %s", oid,
			    ex->a[k].k, strerror(-rc));
		}
	}
}

/* Is |k| an entry key ("e.", "N.e." or "C.e." + name)? */
static int
entry_key(const char *k, size_t kl)
{
	if (kl > 2 && memcmp(k, "e.", 2) == 0)
		return 1;
	return kl > 4 && (k[0] == 'N' || k[0] == 'C') &&
	    memcmp(k + 1, ".e.", 3) == 0;
}

/* 3: one store's entries and idempotency records. */
static int
scan_store(struct scrub *sc, const char *oid)
{
	struct kvset page = { 0 }, ex = { 0 };
	char after[RE_KEY_MAX + 64] = "";
	struct rentry en;
	const struct kv *v;
	uint64_t cutoff, now = (uint64_t)re_now(), keys = 0;
	size_t i;
	int more = 1, rc = 0;

	cutoff = now > sc->idem_expiry * 1000000000ull ?
	    now - sc->idem_expiry * 1000000000ull : 0;
	while (more) {
		kvset_free(&page);
		rc = re_read(sc->e, oid, NULL, NULL, after, "", PAGE, &page,
		    &more);
		if (rc < 0)
			break;
		keys += page.n;
		for (i = 0; i < page.n; i++) {
			v = &page.a[i];
			if (entry_key(v->k, v->klen)) {
				sc->entries++;
				if (ren_decode(v->v, v->vlen, &en) < 0) {
					sc->bad_values++;
					damage(sc, "%s: undecodable entry "
					    "%.*s", oid, (int)v->klen, v->k);
					continue;
				}
				if (en.type != MST_T_MSG)
					continue;
				sc->messages++;
				if (idvec_add(&sc->named, en.id) < 0) {
					rc = -ENOMEM;
					break;
				}
			} else if (oid[0] == 'm' && v->klen == 34 &&
			    memcmp(v->k, "i.", 2) == 0) {
				sc->idems++;
				if (v->vlen < IDEM_VLEN_MIN || v->v[0] != 'I' ||
				    ren_decode(v->v + 2, RE_ENTRY_LEN,
				    &en) < 0) {
					sc->bad_values++;
					damage(sc, "%s: undecodable idempotency "
					    "record %.*s", oid, (int)v->klen, v->k);
					continue;
				}
				if (en.ctime >= cutoff)
					continue;
				if (ex.n == ex.cap) {
					struct kv *a = realloc(ex.a,
					    (ex.cap ? ex.cap * 2 : 64) *
					    sizeof *a);

					if (a == NULL) {
						rc = -ENOMEM;
						break;
					}
					ex.a = a;
					ex.cap = ex.cap ? ex.cap * 2 : 64;
				}
				ex.a[ex.n] = *v;	/* moved, not copied */
				memset(&page.a[i], 0, sizeof page.a[i]);
				ex.n++;
			}
		}
		if (rc < 0)
			break;
		if (page.n) {
			const struct kv *l = &page.a[page.n - 1];

			/* The last key may have moved to ex: its copy
			 * there is the same key. */
			if (l->k == NULL)
				l = &ex.a[ex.n - 1];
			if (l->klen >= sizeof after) {
				rc = -EIO;
				break;
			}
			memcpy(after, l->k, l->klen);
			after[l->klen] = '\0';
		}
		/* A page's worth at a time: batches stay small. */
		if (ex.n >= 256 || !more) {
			idem_remove(sc, oid, &ex);
			kvset_free(&ex);
		}
	}
	kvset_free(&page);
	kvset_free(&ex);
	if (keys > sc->max_keys) {
		sc->max_keys = keys;
		snprintf(sc->max_oid, sizeof sc->max_oid, "%s", oid);
	}
	if (keys > LARGE_KEYS) {
		/* One object per folder until sharding comes (mstored(8)):
		 * Ceph warns past 200000 keys. */
		sc->large++;
		re_text_add(&sc->t, "large_store=%s %" PRIu64 " omap keys\n",
		    oid, keys);
		log_warn("rados: scrub: %s holds %" PRIu64 " omap keys; Ceph "
		    "warns of large omap objects past 200000", oid, keys);
	}
	if (rc == -ENOENT)
		rc = 0;		/* removed meanwhile */
	return rc;
}

/* A body's checksum against its xattr sum: 0, or 1 when it differs. */
static int
verify_body(struct scrub *sc, const char *oid, uint64_t size)
{
	char sum[17], *buf;
	XXH3_state_t *st;
	uint64_t want, off = 0;
	int n, rc = 0, bad;

	n = rados_getxattr(sc->e->io, oid, "sum", sum, 16);
	if (n != 16 || re_unhex(sum, 16, &want) < 0)
		return n == -ENOENT ? 0 : 1;
	buf = malloc(READ_CHUNK);
	st = XXH3_createState();
	if (buf == NULL || st == NULL) {
		free(buf);
		XXH3_freeState(st);
		return 0;
	}
	XXH3_64bits_reset(st);
	while (off < size) {
		n = rados_read(sc->e->io, oid, buf, READ_CHUNK, off);
		if (n <= 0) {
			rc = n;
			break;
		}
		XXH3_64bits_update(st, buf, (size_t)n);
		off += (uint64_t)n;
	}
	bad = rc == 0 && XXH3_64bits_digest(st) != want;
	free(buf);
	XXH3_freeState(st);
	if (rc < 0 && rc != -ENOENT) {
		sc->errors++;
		log_warn("rados: scrub: reading %s: %s", oid, strerror(-rc));
	}
	sc->verified += rc == 0;
	return bad;
}

/* Does the entry the body's loc xattr names still name body |id|? *loc
 * gets the xattr (for the guarded remove). */
static int
loc_names(struct scrub *sc, uint64_t id, char *loc, size_t cap, int *len)
{
	const char *keys[2] = { NULL, NULL };
	char oid[RE_OID_MAX], *sp, store[RE_OID_MAX + 1];
	struct kvset vals = { 0 };
	const struct kv *v;
	struct rentry en;
	int n, named = 0;

	re_oid(oid, 'b', id);
	n = rados_getxattr(sc->e->io, oid, "loc", loc, cap - 1);
	*len = n;
	if (n < 0)
		return 0;
	loc[n] = '\0';
	sp = strchr(loc, ' ');
	if (sp == NULL || (size_t)(sp - loc) >= sizeof store)
		return 0;
	memcpy(store, loc, (size_t)(sp - loc));
	store[sp - loc] = '\0';
	keys[0] = sp + 1;
	if (re_read(sc->e, store, keys, &vals, NULL, NULL, 0, NULL,
	    NULL) == 0 && (v = kvset_get(&vals, sp + 1)) != NULL &&
	    ren_decode(v->v, v->vlen, &en) == 0 && en.id == id)
		named = 1;
	kvset_free(&vals);
	return named;
}

/* An orphan body older than the grace period goes, guarded by its loc
 * (a body renamed meanwhile has a new loc and stays). Returns 1 when it
 * stays: young (a delivery in flight, whose reservation counts), or
 * named after all. */
static int
orphan(struct scrub *sc, uint64_t id)
{
	char oid[RE_OID_MAX], loc[RE_OID_MAX + 2 + RE_KEY_MAX + 1];
	rados_write_op_t op;
	time_t mt = 0;
	uint64_t size;
	int rc, len;

	re_oid(oid, 'b', id);
	rc = rados_stat(sc->e->io, oid, &size, &mt);
	if (rc < 0)
		return 0;	/* removed meanwhile */
	/* Signed: a server whose clock runs ahead writes mtimes in the
	 * future, and those bodies are young. */
	if ((int64_t)time(NULL) - (int64_t)mt < (int64_t)sc->grace) {
		sc->young++;
		return 1;
	}
	if (loc_names(sc, id, loc, sizeof loc, &len)) {
		sc->kept_moved++;	/* named again during the pass */
		return 1;
	}
	sc->orphans++;
	if (sc->dry_run)
		return 0;
	if ((op = rados_create_write_op()) == NULL)
		return 0;
	if (len >= 0)
		rados_write_op_cmpxattr(op, "loc", LIBRADOS_CMPXATTR_OP_EQ,
		    loc, (size_t)len);
	else
		rados_write_op_assert_exists(op);
	rados_write_op_remove(op);
	rc = re_write(sc->e, oid, op);
	if (rc == 0) {
		sc->removed++;
		log_info("rados: scrub: removed orphan body %s (%" PRIu64
		    " bytes, no entry names it)", oid, size);
	} else if (rc != -ECANCELED && rc != -ENOENT) {
		sc->errors++;
		log_warn("rados: scrub: removing %s: %s", oid, strerror(-rc));
	}
	return 0;
}

static int
qsnap_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qsnap *)a)->mbox,
	    ((const struct qsnap *)b)->mbox);
}

/* The usage object of |mbox| (sc->q is sorted by list_pool). */
static struct qsnap *
quota_of(struct scrub *sc, const char *mbox)
{
	struct qsnap key = { .mbox = (char *)mbox };

	return bsearch(&key, sc->q, sc->nq, sizeof *sc->q, qsnap_cmp);
}

/* The same, made (in order) when no usage object was listed: its
 * mailbox's messages predate usage counted by every server. NULL when
 * out of memory. */
static struct qsnap *
quota_of_make(struct scrub *sc, const char *mbox)
{
	struct qsnap *q = quota_of(sc, mbox);
	size_t lo = 0, hi = sc->nq, mid;

	if (q != NULL)
		return q;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (strcmp(sc->q[mid].mbox, mbox) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	q = realloc(sc->q, (sc->nq + 1) * sizeof *q);
	if (q == NULL)
		return NULL;
	sc->q = q;
	memmove(&q[lo + 1], &q[lo], (sc->nq - lo) * sizeof *q);
	memset(&q[lo], 0, sizeof *q);
	if ((q[lo].mbox = strdup(mbox)) == NULL) {
		memmove(&q[lo], &q[lo + 1], (sc->nq - lo) * sizeof *q);
		return NULL;
	}
	q[lo].absent = 1;
	sc->nq++;
	return &q[lo];
}

/* 4: every body. */
static void
check_bodies(struct scrub *sc)
{
	char oid[RE_OID_MAX], mbox[MST_PATH_MAX + 1];
	struct qsnap *q;
	uint64_t id, size;
	size_t i;
	int n, named;

	qsort(sc->named.v, sc->named.n, sizeof *sc->named.v, u64_cmp);
	sp_set_phase("bodies");
	atomic_store(&sp_bodies_total, sc->bodies.n);
	for (i = 0; i < sc->bodies.n; i++) {
		progress(sc, "bodies checked", i, sc->bodies.n);
		atomic_store(&sp_bodies_done, i);
		id = sc->bodies.v[i];
		re_oid(oid, 'b', id);
		named = idvec_has(&sc->named, id);
		/* A young unnamed body is a delivery in flight: its
		 * reservation counts (usage too high, never too low). */
		if (!named && !orphan(sc, id))
			continue;
		if (rados_stat(sc->e->io, oid, &size, NULL) < 0)
			continue;	/* expunged meanwhile */
		if (named && sc->verify && verify_body(sc, oid, size)) {
			sc->bad_bodies++;
			damage(sc, "%s: body checksum mismatch (%" PRIu64
			    " bytes)", oid, size);
		}
		sp_add(size);
		sc->tbytes += size;
		sc->tmsgs++;
		n = rados_getxattr(sc->e->io, oid, "mbox", mbox,
		    sizeof mbox - 1);
		if (n < 0)
			continue;
		mbox[n] = '\0';
		if ((q = quota_of_make(sc, mbox)) != NULL) {
			sc->tboxes += q->nmsgs == 0;
			q->nbytes += size;
			q->nmsgs++;
		} else {
			sc->errors++;
			log_warn("rados: scrub: out of memory counting the "
			    "usage of %s", mbox);
		}
	}
	atomic_store(&sp_bodies_done, sc->bodies.n);
	/* Named but missing: damage, unless it went since the pass read
	 * its entry (EXPUNGE removes the entry first) or came after the
	 * listing (DELIVER writes the body first). */
	for (i = 0; i < sc->named.n; i++) {
		id = sc->named.v[i];
		if (i && sc->named.v[i - 1] == id)
			continue;
		if (idvec_has(&sc->bodies, id))
			continue;
		re_oid(oid, 'b', id);
		if (rados_stat(sc->e->io, oid, NULL, NULL) != -ENOENT)
			continue;
		sc->missing++;
		damage(sc, "%s: named by an entry, but the body is missing",
		    oid);
	}
}

/* 5: usage set to what was counted, guarded by the version read. */
static void
recount(struct scrub *sc)
{
	char oid[MST_PATH_MAX + 8], v[RE_QUOTA_LEN + 1];
	rados_write_op_t op;
	struct qsnap *q;
	size_t i;
	int rc;

	for (i = 0; i < sc->nq; i++) {
		q = &sc->q[i];
		if (q->ver == 0 && !q->absent)
			continue;	/* not read */
		if (q->ok && q->bytes == q->nbytes && q->msgs == q->nmsgs)
			continue;
		if (q->absent && q->nmsgs == 0)
			continue;
		re_text_add(&sc->t, "quota=%s bytes %" PRIu64 " -> %" PRIu64
		    ", messages %" PRIu64 " -> %" PRIu64 "\n", q->mbox,
		    q->bytes, q->nbytes, q->msgs, q->nmsgs);
		if (sc->dry_run)
			continue;
		snprintf(oid, sizeof oid, "q.%s", q->mbox);
		re_quota_value(v, q->nbytes, q->nmsgs);
		if ((op = rados_create_write_op()) == NULL)
			continue;
		if (q->absent)	/* made since the listing: busy */
			rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE,
			    NULL);
		else
			rados_write_op_assert_version(op, q->ver);
		re_cmp(op, "u", q->ok ? q->raw : "", q->ok ? RE_QUOTA_LEN : 0);
		re_set(op, "u", v, RE_QUOTA_LEN);
		rc = re_write(sc->e, oid, op);
		if (rc == 0) {
			sc->qfixed++;
			log_info("rados: scrub: usage of %s recounted: %" PRIu64
			    " bytes, %" PRIu64 " messages (was %" PRIu64
			    ", %" PRIu64 ")", q->mbox, q->nbytes, q->nmsgs,
			    q->bytes, q->msgs);
		} else if (rc == -ERANGE || rc == -EOVERFLOW ||
		    rc == -ECANCELED || rc == -EEXIST) {
			sc->qbusy++;
			re_text_add(&sc->t, "quota_busy=%s (changed during "
			    "the scrub; not recounted)\n", q->mbox);
		} else {
			sc->errors++;
			log_warn("rados: scrub: recounting %s: %s", oid,
			    strerror(-rc));
		}
	}
}

/* 6: the pool's totals set to what was counted, unless anything moved
 * since 2 (engine_rados_quota.c). */
static void
totals(struct scrub *sc)
{
	int rc;

	sc->totals = "dry_run";
	if (sc->dry_run)
		return;
	sc->totals = "busy";
	if (!sc->usage_read)
		return;
	sp_set_phase("totals");
	sleep(2);	/* every server's changes written by now */
	rc = re_usage_fold(sc->e, sc->usage_ver, sc->tbytes, sc->tmsgs,
	    sc->tboxes);
	if (rc == 0)
		sc->totals = "set";
	else if (rc != -ECANCELED) {
		sc->errors++;
		log_warn("rados: scrub: setting the pool's totals: %s",
		    strerror(-rc));
	}
}

static void
begin_progress(void)
{
	atomic_fetch_add(&sp_running, 1);
	atomic_store(&sp_done, 0);
	atomic_store(&sp_total, 0);
	atomic_store(&sp_bodies_done, 0);
	atomic_store(&sp_bodies_total, 0);
	sp_set_phase("listing");
}

/* The end: done is the total, as the local engine leaves it. */
static void
end_progress(const struct scrub *sc)
{
	atomic_store(&sp_total, atomic_load(&sp_done));
	metrics_scrub_size(atomic_load(&sp_done));
	metrics_scrub_progress(atomic_load(&sp_done));
	metrics_scrub_end(sc->bad_values + sc->bad_bodies + sc->missing);
	sp_set_phase("done");
	atomic_fetch_sub(&sp_running, 1);
}

static void
scrub_free(struct scrub *sc)
{
	size_t i;

	free(sc->bodies.v);
	free(sc->named.v);
	for (i = 0; i < sc->stores.n; i++)
		free(sc->stores.v[i]);
	free(sc->stores.v);
	for (i = 0; i < sc->nq; i++)
		free(sc->q[i].mbox);
	free(sc->q);
	free(sc->t.p);
}

static int
args(struct scrub *sc, struct mst_str a)
{
	struct {
		const char *key;
		uint64_t *to;
	} k[] = {
		{ "grace", &sc->grace }, { "idem_expiry", &sc->idem_expiry },
		{ "settle", &sc->settle }, { "verify", &sc->verify },
		{ "dry_run", &sc->dry_run },
	};
	size_t i;

	sc->grace = 3600;
	sc->idem_expiry = 86400;
	sc->settle = 10;
	sc->verify = 1;
	for (i = 0; i < sizeof k / sizeof k[0]; i++)
		if (re_admin_arg(a, k[i].key, k[i].to) < 0)
			return -EINVAL;
	return 0;
}

int
re_scrub(struct rados_engine *e, struct job *j)
{
	struct scrub sc = { .e = e };
	int64_t t0 = mono_s();
	size_t i;
	int rc, damaged;

	re_text_init(&sc.t);
	if (args(&sc, j->req.admin.arg) < 0)
		return -EINVAL;
	log_info("rados: scrub of pool %s: orphan grace %" PRIu64 " s, idem "
	    "expiry %" PRIu64 " s%s", e->conf.pool, sc.grace, sc.idem_expiry,
	    sc.dry_run ? ", dry run" : "");
	sc.last = t0;
	begin_progress();
	rc = list_pool(&sc);
	/* The totals' version first: a change of theirs after it may
	 * have been missed by the usage objects' read. */
	if (rc == 0 && re_usage_snapshot(e, &sc.usage_ver) == 0)
		sc.usage_read = 1;
	sp_set_phase("usage");
	for (i = 0; rc == 0 && i < sc.nq; i++) {
		quota_snap(&sc, &sc.q[i]);
		if (sc.q[i].ok)
			atomic_fetch_add(&sp_total, sc.q[i].bytes);
	}
	metrics_scrub_begin(atomic_load(&sp_total));
	if (rc == 0 && sc.nq && sc.settle) {
		log_info("rados: scrub: %zu usage objects read; waiting %" PRIu64
		    " s for deliveries in flight", sc.nq, sc.settle);
		sp_set_phase("settle");
		sleep((unsigned)sc.settle);
	}
	sp_set_phase("stores");
	for (i = 0; rc == 0 && i < sc.stores.n; i++) {
		progress(&sc, "stores scanned", i, sc.stores.n);
		rc = scan_store(&sc, sc.stores.v[i]);
	}
	if (rc == 0) {
		check_bodies(&sc);
		sp_set_phase("recount");
		recount(&sc);
		totals(&sc);
	}
	end_progress(&sc);
	if (rc < 0) {
		scrub_free(&sc);
		return rc;
	}
	damaged = sc.bad_values || sc.bad_bodies || sc.missing;
	re_text_add(&sc.t, "engine=rados\nobjects=%" PRIu64 "\nstores=%zu\n"
	    "entries=%" PRIu64 "\nmessages=%" PRIu64 "\nbodies=%zu\n"
	    "bodies_verified=%" PRIu64 "\nbad_bodies=%" PRIu64
	    "\nmissing_bodies=%" PRIu64 "\nbad_values=%" PRIu64
	    "\norphan_bodies=%" PRIu64 "\norphans_removed=%" PRIu64
	    "\norphans_in_grace=%" PRIu64 "\nidem_records=%" PRIu64
	    "\nidem_expired=%" PRIu64 "\nquota_mailboxes=%zu\n"
	    "quota_recounted=%" PRIu64 "\nquota_busy=%" PRIu64
	    "\nusage_totals=%s\ntotal_messages=%" PRIu64 "\ntotal_bytes=%"
	    PRIu64 "\ntotal_mailboxes=%" PRIu64
	    "\nlargest_store=%s %" PRIu64 " keys\nlarge_stores=%" PRIu64
	    "\nerrors=%" PRIu64 "\nseconds=%" PRId64 "\nresult=%s\n",
	    sc.objects, sc.stores.n, sc.entries, sc.messages, sc.bodies.n,
	    sc.verified, sc.bad_bodies, sc.missing, sc.bad_values, sc.orphans,
	    sc.removed, sc.young, sc.idems, sc.idem_expired, sc.nq, sc.qfixed,
	    sc.qbusy, sc.totals, sc.tmsgs, sc.tbytes, sc.tboxes,
	    sc.max_oid[0] ? sc.max_oid : "-", sc.max_keys,
	    sc.large, sc.errors, mono_s() - t0,
	    damaged ? "damaged" : "clean");
	if (damaged)
		log_err("rados: scrub of %s: %" PRIu64 " bad bodies, %" PRIu64
		    " missing, %" PRIu64 " undecodable values", e->conf.pool,
		    sc.bad_bodies, sc.missing, sc.bad_values);
	else
		log_info("rados: scrub of %s clean: %" PRIu64 " messages, %"
		    PRIu64 " orphan bodies removed, %" PRIu64 " idempotency "
		    "records expired, %" PRIu64 " usages recounted",
		    e->conf.pool, sc.messages, sc.removed, sc.idem_expired,
		    sc.qfixed);
	rc = re_text_reply(j, &sc.t);
	sc.t.p = NULL;
	scrub_free(&sc);
	return rc;
}
