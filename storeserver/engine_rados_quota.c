/*
 * engine_rados_quota.c - per-mailbox quotas of the rados back-end, and
 * the pool's totals of stored messages. Owns the objects q.<mailbox>
 * and mst.usage.
 *
 * q.<mailbox>: omap u = the mailbox's usage, 'Q' + bytes + messages (16
 * hex digits each); lim = the limits set by ADMIN quota (mstore-ctl
 * quota set), 'L' + bytes + messages, 0 meaning none. Every server
 * counts every mailbox's usage, with or without limits, so that a limit
 * set later through any server holds at once on all of them. A DELIVER
 * reserves its size by compare-and-swap of u (guarded by the value read,
 * so two servers never both take the last room), reading lim in the same
 * op, BEFORE its body is written; whoever removes a message body
 * afterwards (EXPUNGE, UNLINK, a replaced message, a delivery that did
 * not happen) gives it back. A compare-and-swap that loses backs off at
 * random and tries again, for up to Q_WAIT_MS; racing past that never
 * refuses a delivery into a mailbox without a limit (the change goes
 * uncounted, for a scrub to repair), and answers EAGAIN where a limit
 * applies. So the limit holds across servers; a
 * server that dies between the steps leaves the usage too high, never
 * too low, until a scrub counts it again (engine_rados_scrub.c), which
 * also makes the usage of mailboxes filled before usage was counted
 * everywhere. A mailbox's limits: lim if set, else its quota_file line,
 * else quota_bytes and quota_messages of mstore.conf(5).
 *
 * mst.usage: the pool's totals (messages, bytes, mailboxes holding
 * messages) for the store gauges of mstored --metrics, without walking
 * the pool. Each server adds what its own changes of u did to the
 * totals in memory, and a thread of its own writes them every second
 * (when they changed) as ONE key s.<incarnation>, 'T' + bytes +
 * messages + mailboxes, each the two's complement of a sum that may be
 * negative; guarded by the value it wrote last, because a scrub folds
 * every s.* key into the key base (what it counted) in one op guarded
 * by the object's version: the server then finds its key gone and
 * starts again from what was folded. The same thread reads the object
 * back: totals = base + the other servers' keys + this server's own
 * changes (the gauges follow this server's changes at once, others'
 * within a second or two). A server that dies loses at most its last
 * second of changes from the totals; the next scrub puts them right.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_rados.h"
#include "log.h"
#include "metrics.h"

#define Q_LEN RE_QUOTA_LEN
#define U_OID		"mst.usage"
#define U_LEN		RE_USAGE_LEN
#define U_FLUSH_MS	1000	/* own changes written this often */
#define U_PAGE		1024u

/* quota_file's lines, sorted by mailbox; set once at open. */
struct qovr {
	char *mbox;
	uint64_t bytes, msgs;
};
static struct qovr *ovr;
static size_t novr;

static int
ovr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qovr *)a)->mbox,
	    ((const struct qovr *)b)->mbox);
}

static void
quota_unload(void)
{
	size_t i;

	for (i = 0; i < novr; i++)
		free(ovr[i].mbox);
	free(ovr);
	ovr = NULL;
	novr = 0;
}

int
re_quota_load(struct rados_engine *e)
{
	char line[1024], name[MST_PATH_MAX + 1];
	unsigned long long bytes, msgs;
	const char *path = e->conf.quota_file;
	struct qovr *v;
	int lineno = 0, rc = 0;
	FILE *f;

	if (path == NULL)
		return 0;
	if ((f = fopen(path, "r")) == NULL) {
		rc = -errno;
		log_err("quota file %s: %s", path, strerror(-rc));
		return rc;
	}
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		if (line[strspn(line, " \t")] == '#' ||
		    line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%4095s %llu %llu", name, &bytes,
		    &msgs) != 3) {
			log_err("%s:%d: want 'MAILBOX BYTES MESSAGES'", path,
			    lineno);
			rc = -EINVAL;
		} else if ((v = realloc(ovr, (novr + 1) * sizeof *v)) == NULL) {
			rc = -ENOMEM;
		} else {
			ovr = v;
			ovr[novr].bytes = bytes;
			ovr[novr].msgs = msgs;
			if ((ovr[novr].mbox = strdup(name)) == NULL)
				rc = -ENOMEM;
			else
				novr++;
		}
	}
	fclose(f);
	if (rc < 0) {
		quota_unload();
		return rc;
	}
	qsort(ovr, novr, sizeof *ovr, ovr_cmp);
	log_info("rados: %zu mailbox quotas from %s", novr, path);
	return 0;
}

void
re_quota_limits(const struct rados_engine *e, const char *mbox, size_t len,
    uint64_t *bytes, uint64_t *msgs)
{
	char name[MST_PATH_MAX + 1];
	struct qovr key = { .mbox = name }, *o;

	*bytes = e->conf.quota_bytes;
	*msgs = e->conf.quota_messages;
	if (novr == 0 || len > MST_PATH_MAX)
		return;
	memcpy(name, mbox, len);
	name[len] = '\0';
	if ((o = bsearch(&key, ovr, novr, sizeof *ovr, ovr_cmp)) != NULL) {
		*bytes = o->bytes;
		*msgs = o->msgs;
	}
}

static void
q_oid(char *out, size_t cap, const char *mbox, size_t len)
{
	snprintf(out, cap, "q.%.*s", (int)len, mbox);
}

int
re_quota_decode(const char *v, size_t len, uint64_t *bytes, uint64_t *msgs)
{
	if (len != Q_LEN || v[0] != 'Q' || re_unhex(v + 1, 16, bytes) < 0 ||
	    re_unhex(v + 17, 16, msgs) < 0)
		return -EIO;
	return 0;
}

void
re_quota_value(char out[RE_QUOTA_LEN + 1], uint64_t bytes, uint64_t msgs)
{
	out[0] = 'Q';
	re_hex(out + 1, bytes);
	re_hex(out + 17, msgs);
}

/* u and lim of q.<mbox> as read into |vals|: *has_u and the usage (0
 * when absent), and the limits that hold (lim, else quota_file and
 * mstore.conf). 0 or -EIO for a value that does not decode. */
static int
q_parse(const struct rados_engine *e, const char *mbox, size_t len,
    const struct kvset *vals, int *has_u, uint64_t *b, uint64_t *m,
    uint64_t *qb, uint64_t *qm)
{
	const struct kv *u = kvset_get(vals, "u"), *l = kvset_get(vals, "lim");

	*b = *m = 0;
	*has_u = u != NULL;
	if (u != NULL && re_quota_decode(u->v, u->vlen, b, m) < 0)
		return -EIO;
	if (l != NULL) {
		if (l->vlen != Q_LEN || l->v[0] != 'L' ||
		    re_unhex(l->v + 1, 16, qb) < 0 ||
		    re_unhex(l->v + 17, 16, qm) < 0)
			return -EIO;
	} else {
		re_quota_limits(e, mbox, len, qb, qm);
	}
	return 0;
}

int
re_quota_get(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t *bytes, uint64_t *msgs, uint64_t *qbytes, uint64_t *qmsgs)
{
	char oid[MST_PATH_MAX + 8];
	const char *keys[] = { "u", "lim", NULL };
	struct kvset vals = { 0 };
	int rc, has_u;

	q_oid(oid, sizeof oid, mbox, len);
	rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	if (rc == 0)
		rc = q_parse(e, mbox, len, &vals, &has_u, bytes, msgs, qbytes,
		    qmsgs);
	kvset_free(&vals);
	if (rc == -ENOENT) {
		*bytes = *msgs = 0;
		re_quota_limits(e, mbox, len, qbytes, qmsgs);
		return 0;
	}
	if (rc == -EIO)
		log_err("rados: %s holds a usage or limit that does not "
		    "decode", oid);
	return rc < 0 ? re_err("quota read", oid, rc) : 0;
}

int
re_quota_set(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t bytes, uint64_t msgs)
{
	char oid[MST_PATH_MAX + 8], v[Q_LEN + 1];
	rados_write_op_t op = rados_create_write_op();
	int rc;

	if (op == NULL)
		return -ENOMEM;
	q_oid(oid, sizeof oid, mbox, len);
	re_quota_value(v, bytes, msgs);
	v[0] = 'L';
	rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	re_set(op, "lim", v, Q_LEN);
	rc = re_write(e, oid, op);
	if (rc < 0)
		return re_err("quota set", oid, rc);
	log_info("rados: quota of %.*s set to %" PRIu64 " bytes, %" PRIu64
	    " messages (0: no limit), in %s", (int)len, mbox, bytes, msgs,
	    oid);
	return 0;
}

static void usage_note(int64_t dbytes, int64_t dmsgs, int dboxes);

/* A change of u that keeps losing its compare-and-swap (every worker of
 * every server delivering into one mailbox) backs off: a random time of
 * [step, 2 step) ms, step 1 ms doubling up to Q_STEP_MAX, until
 * Q_WAIT_MS have been spent sleeping. */
#define Q_STEP_MAX	64
#define Q_WAIT_MS	2000

/* Sleep before the next try; -ETIMEDOUT once Q_WAIT_MS are spent. */
static int
q_backoff(unsigned *seed, unsigned *step, unsigned *waited_us)
{
	struct timespec ts;
	unsigned us;

	if (*waited_us >= Q_WAIT_MS * 1000u)
		return -ETIMEDOUT;
	if (*seed == 0)
		*seed = (unsigned)(uintptr_t)seed ^ (unsigned)time(NULL) ^
		    (unsigned)clock();
	us = *step * 1000u + (unsigned)rand_r(seed) % (*step * 1000u);
	if (*step < Q_STEP_MAX)
		*step *= 2;
	*waited_us += us;
	ts.tv_sec = us / 1000000u;
	ts.tv_nsec = (long)(us % 1000000u) * 1000;
	nanosleep(&ts, NULL);
	return 0;
}

/* Add |dbytes| and |dmsgs| (signed) to the usage; with |check|, fail
 * with -EDQUOT when the limits would be passed (the local engine's
 * rule: bytes + size over quota_bytes, messages + 1 over
 * quota_messages). Lost races back off (q_backoff); when they go on
 * past Q_WAIT_MS: -EAGAIN if a limit applies to the mailbox, else 1 (the
 * change is not counted, and the usage drifts until a scrub). */
static int
q_change(struct rados_engine *e, const char *mbox, size_t len,
    int64_t dbytes, int64_t dmsgs, int check)
{
	char oid[MST_PATH_MAX + 8], old[Q_LEN + 1], new[Q_LEN + 1];
	const char *keys[] = { "u", "lim", NULL };
	struct kvset vals = { 0 };
	uint64_t b, m, nb, nm, qb, qm;
	rados_write_op_t op;
	unsigned seed = 0, step = 1, waited = 0;
	int rc, has_u;

	q_oid(oid, sizeof oid, mbox, len);
	for (;;) {
		has_u = 0;
		b = m = 0;
		rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		if (rc == 0)
			rc = q_parse(e, mbox, len, &vals, &has_u, &b, &m, &qb,
			    &qm);
		else if (rc == -ENOENT)
			re_quota_limits(e, mbox, len, &qb, &qm);
		if (has_u)
			memcpy(old, kvset_get(&vals, "u")->v, Q_LEN);
		kvset_free(&vals);
		if (rc == -EIO)
			log_err("rados: %s holds a usage or limit that does "
			    "not decode", oid);
		if (rc < 0 && rc != -ENOENT)
			return rc == -EIO ? rc : re_err("quota read", oid, rc);
		if (check && ((qb && b + (uint64_t)dbytes > qb) ||
		    (qm && m + 1 > qm)))
			return -EDQUOT;
		nb = dbytes < 0 && (uint64_t)-dbytes > b ? 0 :
		    b + (uint64_t)dbytes;
		nm = dmsgs < 0 && (uint64_t)-dmsgs > m ? 0 : m + (uint64_t)dmsgs;
		re_quota_value(new, nb, nm);
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_cmp(op, "u", has_u ? old : "", has_u ? Q_LEN : 0);
		re_set(op, "u", new, Q_LEN);
		rc = re_write(e, oid, op);
		if (rc == 0)
			usage_note((int64_t)(nb - b), (int64_t)(nm - m),
			    (m == 0 && nm > 0) - (m > 0 && nm == 0));
		if (rc != -ECANCELED)
			return rc < 0 ? re_err("quota", oid, rc) : 0;
		if (q_backoff(&seed, &step, &waited) < 0)
			break;
	}
	if (qb == 0 && qm == 0) {
		log_debug("rados: %s: still racing after %u ms; %+" PRId64
		    " bytes, %+" PRId64 " messages not counted (a scrub "
		    "counts them)", oid, waited / 1000, dbytes, dmsgs);
		return 1;
	}
	log_err("rados: quota %s: still racing after %u ms", oid,
	    waited / 1000);
	return -EAGAIN;
}

int
re_quota_take(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size)
{
	int rc = q_change(e, mbox, len, (int64_t)size, 1, 1);

	return rc < 0 ? rc : 0;
}

void
re_quota_give(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size)
{
	int rc = q_change(e, mbox, len, -(int64_t)size, -1, 0);

	if (rc != 0)	/* 1: still racing, no limit on the mailbox */
		log_warn("rados: quota of %.*s: giving back %" PRIu64
		    " bytes failed (%s); its usage stays too high until a "
		    "scrub", (int)len, mbox, size, rc < 0 ? strerror(-rc) :
		    "still racing");
}

/* ---- the pool's totals: mst.usage ---- */

static struct {
	pthread_mutex_t mu;	/* the thread's sleep and stop */
	pthread_cond_t cv;
	pthread_t thr;
	int started, stop;		/* guarded by mu */
	struct rados_engine *e;
	/* This server's changes since it started, two's complement. */
	atomic_uint_fast64_t b, m, x;
	/* Writing s.<inc> (the thread, a scrub): guarded by fmu. */
	pthread_mutex_t fmu;
	char last[U_LEN + 1];	/* what s.<inc> holds ("" when absent) */
	uint64_t fb, fm, fx;	/* ... decoded */
	/* Folded into base by a scrub (guarded by fmu and tmu to write,
	 * either to read). */
	uint64_t ob, om, ox;
	/* The rest of the pool: base + other servers' keys (tmu). */
	pthread_mutex_t tmu;
	uint64_t rb, rm, rx;
	int known;
} us = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.fmu = PTHREAD_MUTEX_INITIALIZER,
	.tmu = PTHREAD_MUTEX_INITIALIZER,
};

static uint64_t
clamp(uint64_t v)
{
	return (int64_t)v < 0 ? 0 : v;	/* drift below zero shows as 0 */
}

/* The gauges: the rest of the pool plus this server's own changes. */
static void
publish(void)
{
	uint64_t b, m, x;

	/* Read under tmu: of two racing publishes, the later one stores
	 * every change noted before it. */
	pthread_mutex_lock(&us.tmu);
	b = atomic_load(&us.b);
	m = atomic_load(&us.m);
	x = atomic_load(&us.x);
	if (us.known)
		metrics_store(clamp(us.rm + m - us.om),
		    clamp(us.rb + b - us.ob), clamp(us.rx + x - us.ox));
	pthread_mutex_unlock(&us.tmu);
}

static void
usage_note(int64_t dbytes, int64_t dmsgs, int dboxes)
{
	atomic_fetch_add(&us.b, (uint64_t)dbytes);
	atomic_fetch_add(&us.m, (uint64_t)dmsgs);
	atomic_fetch_add(&us.x, (uint64_t)(int64_t)dboxes);
	publish();
}

void
re_usage_encode(char out[RE_USAGE_LEN + 1], uint64_t bytes, uint64_t msgs,
    uint64_t boxes)
{
	out[0] = 'T';
	re_hex(out + 1, bytes);
	re_hex(out + 17, msgs);
	re_hex(out + 33, boxes);
}

static int
usage_decode(const struct kv *v, uint64_t *b, uint64_t *m, uint64_t *x)
{
	if (v->vlen != U_LEN || v->v[0] != 'T' || re_unhex(v->v + 1, 16, b) <
	    0 || re_unhex(v->v + 17, 16, m) < 0 || re_unhex(v->v + 33, 16,
	    x) < 0)
		return -EIO;
	return 0;
}

static void
own_key(char *out, uint64_t inc)
{
	out[0] = 's';
	out[1] = '.';
	re_hex(out + 2, inc);
}

/* Every key of mst.usage into |all| (-ENOENT: none yet), and the
 * object's version. */
static int
usage_read(struct rados_engine *e, struct kvset *all, uint64_t *ver)
{
	char after[RE_KEY_MAX] = "";
	rados_read_op_t op;
	rados_omap_iter_t it;
	rados_completion_t c;
	unsigned char more = 1;
	uint64_t v0 = 0;
	int r1, rc = 0;

	while (rc == 0 && more) {
		if ((op = rados_create_read_op()) == NULL)
			return -ENOMEM;
		it = NULL;
		r1 = 0;
		more = 0;
		rados_read_op_omap_get_vals2(op, after, "", U_PAGE, &it,
		    &more, &r1);
		rc = rados_aio_create_completion2(NULL, NULL, &c);
		if (rc == 0) {
			rc = rados_aio_read_op_operate(op, e->io, c, U_OID, 0);
			if (rc == 0) {
				rados_aio_wait_for_complete(c);
				rc = rados_aio_get_return_value(c);
			}
			if (rc == 0 && v0 && rados_aio_get_version(c) != v0)
				rc = -EAGAIN;	/* changed between pages */
			if (rc == 0)
				v0 = rados_aio_get_version(c);
			rados_aio_release(c);
		}
		if (rc == 0 && r1 < 0)
			rc = r1;
		if (rc == 0 && it != NULL)
			rc = kvset_fill_iter(all, it);
		if (it != NULL)
			rados_omap_get_end(it);
		rados_release_read_op(op);
		if (rc == 0 && all->n > 0) {
			const struct kv *l = &all->a[all->n - 1];

			if (l->klen >= sizeof after)
				rc = -EIO;
			else {
				memcpy(after, l->k, l->klen);
				after[l->klen] = '\0';
			}
		}
	}
	*ver = v0;
	return rc;
}

/* This server's key was folded into base by a scrub (fmu held): what
 * it held is counted there now. */
static void
usage_folded(void)
{
	pthread_mutex_lock(&us.tmu);
	us.ob += us.fb;
	us.om += us.fm;
	us.ox += us.fx;
	us.fb = us.fm = us.fx = 0;
	us.last[0] = '\0';
	pthread_mutex_unlock(&us.tmu);
}

/* Write this server's key if its changes moved since: 0 or an error. */
static int
usage_flush_locked(struct rados_engine *e)
{
	char key[20], v[U_LEN + 1];
	const char *keys[] = { NULL, NULL };
	struct kvset vals = { 0 };
	const struct kv *kv;
	uint64_t b, m, x;
	rados_write_op_t op;
	int rc, tries;

	own_key(key, e->inc);
	keys[0] = key;
	for (tries = 0; tries < RE_RETRIES; tries++) {
		b = atomic_load(&us.b) - us.ob;
		m = atomic_load(&us.m) - us.om;
		x = atomic_load(&us.x) - us.ox;
		if (us.last[0] != '\0' ? b == us.fb && m == us.fm &&
		    x == us.fx : b == 0 && m == 0 && x == 0)
			return 0;
		re_usage_encode(v, b, m, x);
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_cmp(op, key, us.last, strlen(us.last));
		re_set(op, key, v, U_LEN);
		rc = re_write(e, U_OID, op);
		if (rc == 0) {
			memcpy(us.last, v, sizeof v);
			us.fb = b;
			us.fm = m;
			us.fx = x;
			return 0;
		}
		if (rc != -ECANCELED)
			return rc;
		/* A scrub folded the key into base: what it held is
		 * counted there, and the key starts again from 0. */
		rc = re_read(e, U_OID, keys, &vals, NULL, NULL, 0, NULL, NULL);
		kv = rc == 0 ? kvset_get(&vals, key) : NULL;
		if (kv == NULL && us.last[0] != '\0') {
			usage_folded();
		} else if (kv != NULL && kv->vlen == U_LEN && usage_decode(kv,
		    &b, &m, &x) == 0) {
			/* Not what this server wrote last: take it. */
			memcpy(us.last, kv->v, U_LEN);
			us.last[U_LEN] = '\0';
			us.fb = b;
			us.fm = m;
			us.fx = x;
		}
		kvset_free(&vals);
		if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	return -EAGAIN;
}

int
re_usage_flush(struct rados_engine *e)
{
	int rc;

	pthread_mutex_lock(&us.fmu);
	rc = usage_flush_locked(e);
	pthread_mutex_unlock(&us.fmu);
	return rc;
}

/* Read mst.usage back: the rest of the pool. */
static int
usage_refresh(struct rados_engine *e)
{
	struct kvset all = { 0 };
	char key[20];
	uint64_t ver, b, m, x, rb = 0, rm = 0, rx = 0;
	size_t i;
	int rc, mine = 0;

	own_key(key, e->inc);
	/* With fmu, this server writes nothing meanwhile: a key it wrote
	 * and that is not there was folded by a scrub. */
	pthread_mutex_lock(&us.fmu);
	rc = usage_read(e, &all, &ver);
	for (i = 0; rc == 0 && i < all.n; i++) {
		if (strcmp(all.a[i].k, key) == 0) {
			mine = 1;
			continue;	/* this server's: from memory */
		}
		if (strcmp(all.a[i].k, "base") != 0 &&
		    strncmp(all.a[i].k, "s.", 2) != 0)
			continue;
		if (usage_decode(&all.a[i], &b, &m, &x) < 0) {
			log_warn("rados: %s: key %s does not decode; the "
			    "store gauges leave it out", U_OID, all.a[i].k);
			continue;
		}
		rb += b;
		rm += m;
		rx += x;
	}
	kvset_free(&all);
	if (rc == -ENOENT)
		rc = 0;		/* nothing counted yet */
	if (rc == 0 && !mine && us.last[0] != '\0')
		usage_folded();
	pthread_mutex_unlock(&us.fmu);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&us.tmu);
	us.rb = rb;
	us.rm = rm;
	us.rx = rx;
	us.known = 1;
	pthread_mutex_unlock(&us.tmu);
	publish();
	return 0;
}

static void *
usage_main(void *arg)
{
	struct rados_engine *e = arg;
	struct timespec ts;
	int stop = 0, rc, failing = 0;

	while (!stop) {
		rc = re_usage_flush(e);
		if (rc == 0)
			rc = usage_refresh(e);
		if (rc < 0 && !failing)
			log_warn("rados: the pool's totals (%s): %s; the store "
			    "gauges may lag until it works again", U_OID,
			    strerror(-rc));
		failing = rc < 0;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)U_FLUSH_MS * 1000000;
		while (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&us.mu);
		while (!us.stop && pthread_cond_timedwait(&us.cv, &us.mu,
		    &ts) == 0)
			;
		stop = us.stop;
		pthread_mutex_unlock(&us.mu);
	}
	rc = re_usage_flush(e);		/* the last changes */
	if (rc < 0)
		log_warn("rados: writing this server's totals to %s at close: "
		    "%s (the next scrub counts them)", U_OID, strerror(-rc));
	return NULL;
}

void
re_usage_start(struct rados_engine *e)
{
	pthread_condattr_t ca;
	int rc;

	us.e = e;
	atomic_store(&us.b, 0);
	atomic_store(&us.m, 0);
	atomic_store(&us.x, 0);
	us.last[0] = '\0';
	us.fb = us.fm = us.fx = us.ob = us.om = us.ox = 0;
	us.known = 0;
	us.stop = 0;
	rc = usage_refresh(e);
	if (rc < 0)
		log_warn("rados: reading the pool's totals (%s): %s", U_OID,
		    strerror(-rc));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&us.cv);
	pthread_cond_init(&us.cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&us.thr, NULL, usage_main, e);
	if (rc != 0)
		log_err("rados: starting the totals thread: %s; the store "
		    "gauges stay at their first value", strerror(rc));
	us.started = rc == 0;
}

void
re_usage_stop(struct rados_engine *e)
{
	(void)e;
	if (!us.started)
		return;
	pthread_mutex_lock(&us.mu);
	us.stop = 1;
	pthread_cond_signal(&us.cv);
	pthread_mutex_unlock(&us.mu);
	pthread_join(us.thr, NULL);
	us.started = 0;
}

int
re_usage_snapshot(struct rados_engine *e, uint64_t *ver)
{
	struct kvset all = { 0 };
	int rc;

	rc = re_usage_flush(e);
	if (rc == 0)
		rc = usage_read(e, &all, ver);
	kvset_free(&all);
	if (rc == -ENOENT) {
		*ver = 0;
		rc = 0;
	}
	return rc;
}

int
re_usage_fold(struct rados_engine *e, uint64_t ver, uint64_t bytes,
    uint64_t msgs, uint64_t boxes)
{
	struct kvset all = { 0 };
	char v[U_LEN + 1];
	rados_write_op_t op;
	uint64_t now;
	size_t i;
	int rc;

	/* This server's last changes, then nothing may have moved; fmu
	 * held until its own key's fate is known. */
	pthread_mutex_lock(&us.fmu);
	rc = usage_flush_locked(e);
	if (rc == 0)
		rc = usage_read(e, &all, &now);
	if (rc == -ENOENT) {
		now = 0;
		rc = 0;
	}
	if (rc == 0 && now != ver)
		rc = -ECANCELED;
	if (rc == 0 && (op = rados_create_write_op()) == NULL)
		rc = -ENOMEM;
	if (rc == 0) {
		if (ver)
			rados_write_op_assert_version(op, ver);
		else
			rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE,
			    NULL);
		for (i = 0; i < all.n; i++)
			if (strncmp(all.a[i].k, "s.", 2) == 0)
				re_rm(op, all.a[i].k);
		re_usage_encode(v, bytes, msgs, boxes);
		re_set(op, "base", v, U_LEN);
		rc = re_write(e, U_OID, op);
		if (rc == -ERANGE || rc == -EOVERFLOW || rc == -EEXIST)
			rc = -ECANCELED;
	}
	if (rc == 0 && us.last[0] != '\0')
		usage_folded();
	pthread_mutex_unlock(&us.fmu);
	kvset_free(&all);
	if (rc == 0) {
		log_info("rados: the pool's totals set to what the scrub "
		    "counted: %" PRIu64 " messages, %" PRIu64 " bytes, %"
		    PRIu64 " mailboxes", msgs, bytes, boxes);
		(void)usage_refresh(e);	/* logged by the thread if it fails */
	}
	return rc;
}
