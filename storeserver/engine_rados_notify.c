/*
 * engine_rados_notify.c - change notices between the mstored that share
 * one pool (RADOS watch/notify), and their repair. Every server watches
 * the object mst.ntf; after a job's change is durable, its notices go
 * out in one notify (fire and forget: the change is already committed);
 * a server hands the notices it receives from others to
 * engine_conf.notice and skips its own (its watchers were told by the
 * job itself). It never blocks a worker on a notify and never holds a
 * lock in a callback.
 *
 * Payload: 'N', then per notice: event u8, id u64, change u64, dir
 * length u16, dir, name length u16, name (little-endian).
 *
 * REMOVE notices, own and others', also drop cached resolutions
 * (engine_rados.c); a watch error drops them all.
 *
 * No notice is lost for good. Notices travel outside the store, so two
 * things can lose them: this server's watch errs (the OSD timed it out
 * while the server stalled, or could not re-register it after a
 * failure), and another server dies between its commit and its notify.
 * Both are repaired from the change counters. This file keeps the table
 * of directories that this server's connections WATCH (from the WATCH
 * jobs; they go with its ENG_OP_UNWATCH and ENG_OP_CLOSE_OWNER jobs) with
 * the highest counter its watchers have been told of: the WATCH reply's,
 * then every notice's, own or received. A checker thread
 *  - polls rados_watch_check every second (and wakes at once on the
 *    watch's error callback); a broken watch is dropped and made again,
 *    and then every watched directory's counter is read: one that moved
 *    past what its watchers were told gets MST_EV_RESET (re-list) at
 *    once;
 *  - re-reads every watched directory's counter every RECHECK_MS; a
 *    counter found past the told one on two reads in a row (so not a
 *    notify still on its way) gets RESET too. That catches the notifier
 *    that died between commit and notify within 2 x RECHECK_MS.
 * A RESET carries the counter read, so the network layer sends it to
 * every watcher whose WATCH reply was older; a directory removed
 * meanwhile gets one RESET with counter UINT64_MAX.
 *
 * Limits (mstored(8)): one notify object for the whole pool (not 256
 * buckets); the re-reads are one omap read per watched directory (64 in
 * flight at once).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_rados.h"
#include "log.h"

#define NTF_OID		"mst.ntf"
#define NTF_MAX		(64u << 10)	/* bytes per notify */
#define NTF_TIMEOUT_MS	5000u
#define CHECK_MS	1000		/* rados_watch_check poll */
#define RECHECK_MS	3000		/* counters of watched dirs re-read */
#define WT_BUCKETS	1024u
#define WT_MAX		65536u		/* watched directories tracked */
#define GONE		UINT64_MAX	/* counter of a removed directory */

/* A directory some connection of this server watches. */
struct wdir {
	struct wdir *next;		/* hash chain */
	uint64_t told;			/* highest counter its watchers know */
	uint64_t gap;			/* counter past |told| read last time */
	uint64_t *owners;		/* connections (job.owner) watching */
	size_t nown, capown;
	char path[];
};

static pthread_t checker;
static int checker_on;
static pthread_mutex_t ck_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ck_cv = PTHREAD_COND_INITIALIZER;
static int ck_stop;			/* guarded by ck_mu */
static int watch_broken;		/* guarded by ck_mu */

static pthread_mutex_t wt_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wdir *wt[WT_BUCKETS];	/* guarded by wt_mu */
static size_t wt_n;			/* guarded by wt_mu */
static int wt_full_logged;		/* guarded by wt_mu */
static atomic_uint_fast64_t n_resets, n_rewatch, n_rechecks;

static size_t
put_str(uint8_t *p, const char *s, size_t len)
{
	p[0] = (uint8_t)len;
	p[1] = (uint8_t)(len >> 8);
	memcpy(p + 2, s, len);
	return 2 + len;
}

/* --- the table of watched directories --- */

static unsigned
wt_hash(const char *path)
{
	uint64_t h = 1469598103934665603ull;

	for (; *path; path++)
		h = (h ^ (uint8_t)*path) * 1099511628211ull;
	return (unsigned)(h % WT_BUCKETS);
}

/* Caller holds wt_mu. */
static struct wdir *
wt_find(const char *path, struct wdir ***pp_out)
{
	struct wdir **pp = &wt[wt_hash(path)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->path, path) == 0)
			break;
	if (pp_out)
		*pp_out = pp;
	return *pp;
}

/* A WATCH of |path| by |owner| answered counter |c|. */
static void
wt_watch(const char *path, size_t len, uint64_t owner, uint64_t c)
{
	struct wdir *d, **pp;
	uint64_t *o;
	size_t i;
	char p[MST_PATH_MAX + 1];

	if (len > MST_PATH_MAX)
		return;
	memcpy(p, path, len);
	p[len] = '\0';
	pthread_mutex_lock(&wt_mu);
	d = wt_find(p, &pp);
	if (d == NULL) {
		if (wt_n >= WT_MAX) {
			if (!wt_full_logged)
				log_warn("rados: over %u watched directories: "
				    "notices lost for the others are not "
				    "repaired", WT_MAX);
			wt_full_logged = 1;
			goto out;
		}
		d = calloc(1, sizeof *d + len + 1);
		if (d == NULL)
			goto out;
		memcpy(d->path, p, len + 1);
		d->told = c;
		*pp = d;
		wt_n++;
	}
	/* A second watcher's reply does not raise |told|: the first may
	 * have missed what lies between (only notices raise it). */
	if (d->told == GONE)
		d->told = c;		/* made again and watched anew */
	for (i = 0; i < d->nown; i++)
		if (d->owners[i] == owner)
			goto out;
	if (d->nown == d->capown) {
		o = realloc(d->owners, (d->capown ? d->capown * 2 : 2) *
		    sizeof *o);
		if (o == NULL)
			goto out;
		d->owners = o;
		d->capown = d->capown ? d->capown * 2 : 2;
	}
	d->owners[d->nown++] = owner;
out:
	pthread_mutex_unlock(&wt_mu);
}

/* Unlink |owner| from |d|; free |d| (unlinked from *pp) when it was the
 * last. Caller holds wt_mu. Returns whether |d| is gone. */
static int
wt_unown(struct wdir **pp, struct wdir *d, uint64_t owner)
{
	size_t i;

	for (i = 0; i < d->nown; i++)
		if (d->owners[i] == owner) {
			d->owners[i] = d->owners[--d->nown];
			break;
		}
	if (d->nown)
		return 0;
	*pp = d->next;
	free(d->owners);
	free(d);
	wt_n--;
	return 1;
}

/* |owner| sent UNWATCH of |path|. A WATCH of it still in flight may add
 * it again, as the network layer starts that watcher again too. */
static void
wt_unwatch(const char *path, size_t len, uint64_t owner)
{
	char p[MST_PATH_MAX + 1];
	struct wdir *d, **pp;

	if (len > MST_PATH_MAX)
		return;
	memcpy(p, path, len);
	p[len] = '\0';
	pthread_mutex_lock(&wt_mu);
	if ((d = wt_find(p, &pp)) != NULL)
		(void)wt_unown(pp, d, owner);
	pthread_mutex_unlock(&wt_mu);
}

/* Connection |owner| ended: its watches with it. */
static void
wt_drop_owner(uint64_t owner)
{
	struct wdir **pp, *d;
	unsigned b;

	pthread_mutex_lock(&wt_mu);
	for (b = 0; b < WT_BUCKETS; b++)
		for (pp = &wt[b]; (d = *pp) != NULL;)
			if (!wt_unown(pp, d, owner))
				pp = &d->next;
	pthread_mutex_unlock(&wt_mu);
}

/* Watchers of |dir| have been told of counter |c|. */
static void
wt_told(const char *dir, uint64_t c)
{
	struct wdir *d;

	pthread_mutex_lock(&wt_mu);
	d = wt_n ? wt_find(dir, NULL) : NULL;
	if (d && d->told != GONE && c > d->told)
		d->told = c;
	pthread_mutex_unlock(&wt_mu);
}

/* The counter of directory |path| from the store: 0, GONE for a removed
 * directory, or an error (not known now). */
static int
dir_counter(struct rados_engine *e, const char *path, uint64_t *c)
{
	struct kvset vals = { 0 };
	struct rstate st;
	struct rstore s;
	struct rres r;
	int rc, fresh;

	for (fresh = 0; fresh < 2; fresh++) {
		/* The cache first; a removal is believed only fresh. */
		re_cache_job(fresh);
		rc = re_resolve(e, path, strlen(path), &r);
		if (rc == 0)
			rc = re_dir_store(&r, &s);
		/* The highest counter over the shards (engine_rados_shard.c). */
		if (rc == 0)
			rc = re_dir_state(e, &s, &st, 0);
		kvset_free(&vals);
		if (rc == 0 && st.dead)
			rc = -ENOENT;
		if (rc != -ENOENT && rc != -ENOTDIR)
			break;
	}
	re_cache_job(0);
	if (rc == -ENOENT || rc == -ENOTDIR) {
		*c = GONE;
		return 0;
	}
	if (rc == 0)
		*c = st.c;
	return rc;
}

static void
send_reset(struct rados_engine *e, const char *path, uint64_t c)
{
	struct jnotice n = { .dir = (char *)path, .name = (char *)"",
		.event = MST_EV_RESET, .id = 0, .change = c };

	atomic_fetch_add(&n_resets, 1);
	log_info("rados: notices of %s may be lost (counter %s%" PRIu64
	    "): RESET to its watchers", path, c == GONE ? "gone, " : "",
	    c == GONE ? 0 : c);
	e->conf.notice(e->conf.notice_arg, &n);
}

/* One watched directory's counter read in flight. */
struct rd {
	char *path;
	struct rstore s;
	rados_read_op_t op;
	rados_completion_t c;
	rados_omap_iter_t it;
	int prval;
};

/* Start the read of |x|'s state and counter: 0, or an error (then the
 * slow path decides). */
static int
rd_start(struct rados_engine *e, struct rd *x)
{
	char kst[RE_KEY_MAX], kc[RE_KEY_MAX];
	const char *keys[] = { kst, kc };
	struct rres r;
	unsigned n;
	int rc;

	rc = re_resolve(e, x->path, strlen(x->path), &r);	/* cached */
	if (rc == 0)
		rc = re_dir_store(&r, &x->s);
	if (rc == 0)
		rc = re_shards(e, &x->s, &n);
	if (rc == 0 && n > 1)
		rc = -EXDEV;	/* several objects: the slow path reads them */
	if (rc < 0)
		return rc;
	re_key(kst, &x->s, "st", NULL, 0);
	re_key(kc, &x->s, "c", NULL, 0);
	if ((x->op = rados_create_read_op()) == NULL)
		return -ENOMEM;
	rados_read_op_omap_get_vals_by_keys(x->op, keys, 2, &x->it,
	    &x->prval);
	rc = rados_aio_create_completion2(NULL, NULL, &x->c);
	if (rc == 0)
		rc = rados_aio_read_op_operate(x->op, e->io, x->c, x->s.oid,
		    0);
	if (rc < 0) {
		if (x->c)
			rados_aio_release(x->c);
		rados_release_read_op(x->op);
		x->c = NULL;
		x->op = NULL;
	}
	return rc;
}

/* Wait for |x|'s read: its counter, GONE, or an error (not known now).
 * A directory that looks removed is read again from the objects. */
static int
rd_finish(struct rados_engine *e, struct rd *x, int started, uint64_t *c)
{
	struct kvset vals = { 0 };
	struct rstate st;
	int rc = started;

	if (started == 0) {
		rados_aio_wait_for_complete(x->c);
		rc = rados_aio_get_return_value(x->c);
		if (rc == 0 && x->prval < 0)
			rc = x->prval;
		if (rc == 0)
			rc = kvset_fill_iter(&vals, x->it);
		if (x->it)
			rados_omap_get_end(x->it);
		rados_aio_release(x->c);
		rados_release_read_op(x->op);
		if (rc == 0) {
			re_state(&x->s, &vals, 1, &st);
			if (!st.dead && (st.live || st.st_len == 0))
				*c = st.c;
			else
				rc = -ENOENT;
		}
		kvset_free(&vals);
	}
	/* Gone (sure?), or in shards: read through the slow path. */
	if (rc == -ENOENT || rc == -ENOTDIR || rc == -EXDEV)
		return dir_counter(e, x->path, c);
	return rc;
}

/*
 * Read every watched directory's counter, RECHECK_WINDOW reads in
 * flight at once. With |now| (the watch was lost) a counter past the
 * told one gets RESET at once; otherwise only when it was past it at
 * the previous re-read too.
 */
#define RECHECK_WINDOW 64

static void
recheck(struct rados_engine *e, int now)
{
	int started[RECHECK_WINDOW];
	struct rd *x = NULL;
	struct wdir *d;
	size_t n = 0, i, k;
	unsigned b;
	uint64_t c;
	int reset;

	pthread_mutex_lock(&wt_mu);
	if (wt_n)
		x = calloc(wt_n, sizeof *x);
	for (b = 0; x && b < WT_BUCKETS; b++)
		for (d = wt[b]; d != NULL; d = d->next)
			if ((x[n].path = strdup(d->path)) != NULL)
				n++;
	pthread_mutex_unlock(&wt_mu);
	atomic_fetch_add(&n_rechecks, 1);
	re_cache_job(0);
	for (i = 0; i < n + RECHECK_WINDOW; i++) {
		if (i < n)
			started[i % RECHECK_WINDOW] = rd_start(e, &x[i]);
		if (i < RECHECK_WINDOW - 1 || i - (RECHECK_WINDOW - 1) >= n)
			continue;
		k = i - (RECHECK_WINDOW - 1);	/* the oldest in flight */
		if (rd_finish(e, &x[k], started[k % RECHECK_WINDOW], &c) < 0)
			continue;	/* storage trouble: next time */
		reset = 0;
		pthread_mutex_lock(&wt_mu);
		d = wt_find(x[k].path, NULL);
		if (d == NULL || d->told == GONE || c <= d->told) {
			if (d)
				d->gap = 0;
		} else if (now || (d->gap && d->gap > d->told)) {
			d->told = c;
			d->gap = 0;
			reset = 1;
		} else {
			d->gap = c;	/* a notify may be on its way */
		}
		pthread_mutex_unlock(&wt_mu);
		if (reset)
			send_reset(e, x[k].path, c);
	}
	for (i = 0; i < n; i++)
		free(x[i].path);
	free(x);
}

/* --- publishing and receiving --- */

static void
notify_done(rados_completion_t c, void *arg)
{
	int rc = rados_aio_get_return_value(c);

	(void)arg;
	/* -ETIMEDOUT: a watcher did not ack within the timeout; the
	 * notice reached the others anyway. */
	if (rc < 0 && rc != -ETIMEDOUT)
		log_warn("rados: notify %s: %s", NTF_OID, strerror(-rc));
	rados_aio_release(c);
}

/* What a completed job tells the table of watched directories. */
static void
note_job(const struct job *j)
{
	struct mst_watch_rep r;
	size_t i;

	if (j->op == MST_OP_WATCH && j->nframes &&
	    mst_watch_rep_decode(&r, j->frames[0].p, j->frames[0].len) == 0)
		wt_watch(j->req.path.path.p, j->req.path.path.len, j->owner,
		    r.change);
	if (j->op == ENG_OP_UNWATCH)
		wt_unwatch(j->req.path.path.p, j->req.path.path.len, j->owner);
	if (j->op == ENG_OP_CLOSE_OWNER)
		wt_drop_owner(j->owner);
	for (i = 0; i < j->nnotices; i++)
		wt_told(j->notices[i].dir, j->notices[i].change);
}

void
re_publish(struct rados_engine *e, const struct job *j)
{
	uint8_t *buf, *p;
	size_t i, dl, nl, need = 1;
	rados_completion_t c;
	int rc;

	for (i = 0; i < j->nnotices; i++)
		if (j->notices[i].event == MST_EV_REMOVE)
			re_cache_drop(e, j->notices[i].dir,
			    j->notices[i].name);
	if (!e->watching)
		return;
	note_job(j);
	if (j->nnotices == 0)
		return;
	for (i = 0; i < j->nnotices; i++)
		need += 21 + strlen(j->notices[i].dir) +
		    strlen(j->notices[i].name);
	if (need > NTF_MAX || (buf = malloc(need)) == NULL) {
		log_warn("rados: notices of one job too large or no memory: "
		    "other servers' watchers get RESET instead");
		return;
	}
	p = buf;
	*p++ = 'N';
	for (i = 0; i < j->nnotices; i++) {
		dl = strlen(j->notices[i].dir);
		nl = strlen(j->notices[i].name);
		*p++ = j->notices[i].event;
		er_put64(p, j->notices[i].id);
		er_put64(p + 8, j->notices[i].change);
		p += 16;
		p += put_str(p, j->notices[i].dir, dl);
		p += put_str(p, j->notices[i].name, nl);
	}
	rc = rados_aio_create_completion2(NULL, notify_done, &c);
	if (rc == 0) {
		rc = rados_aio_notify(e->io, NTF_OID, c, (const char *)buf,
		    (int)(p - buf), NTF_TIMEOUT_MS, NULL, NULL);
		if (rc < 0)
			rados_aio_release(c);
	}
	if (rc < 0)
		log_warn("rados: notify %s: %s", NTF_OID, strerror(-rc));
	free(buf);
}

/* Decode one payload and hand each notice to the network layer. */
static void
deliver(struct rados_engine *e, const uint8_t *p, size_t len)
{
	char dir[MST_PATH_MAX + 1], name[MST_NAME_MAX + 1];
	struct jnotice n;
	size_t dl, nl;

	if (len == 0 || p[0] != 'N')
		return;
	p++, len--;
	while (len >= 21) {
		n.event = p[0];
		n.id = er_get64(p + 1);
		n.change = er_get64(p + 9);
		dl = (size_t)p[17] | (size_t)p[18] << 8;
		if (dl > MST_PATH_MAX || len < 19 + dl + 2)
			return;
		memcpy(dir, p + 19, dl);
		dir[dl] = '\0';
		nl = (size_t)p[19 + dl] | (size_t)p[20 + dl] << 8;
		if (nl > MST_NAME_MAX || len < 21 + dl + nl)
			return;
		memcpy(name, p + 21 + dl, nl);
		name[nl] = '\0';
		n.dir = dir;
		n.name = name;
		if (n.event == MST_EV_REMOVE)
			re_cache_drop(e, dir, name);
		wt_told(dir, n.change);
		e->conf.notice(e->conf.notice_arg, &n);
		p += 21 + dl + nl;
		len -= 21 + dl + nl;
	}
}

static void
on_notify(void *arg, uint64_t notify_id, uint64_t cookie,
    uint64_t notifier_id, void *data, size_t len)
{
	struct rados_engine *e = arg;
	int rc;

	if (notifier_id != e->instance)
		deliver(e, data, len);
	rc = rados_notify_ack(e->io, NTF_OID, notify_id, cookie, NULL, 0);
	if (rc < 0)
		log_warn("rados: notify ack: %s", strerror(-rc));
}

static void
on_watch_error(void *arg, uint64_t cookie, int err)
{
	log_warn("rados: watch %s (cookie %" PRIu64 ") lost: %s; "
	    "re-establishing it", NTF_OID, cookie, strerror(-err));
	/* Notices may be lost meanwhile: no cached path is trusted. */
	re_cache_flush(arg);
	pthread_mutex_lock(&ck_mu);
	watch_broken = 1;
	pthread_cond_signal(&ck_cv);
	pthread_mutex_unlock(&ck_mu);
}

static int
watch(struct rados_engine *e)
{
	int rc = rados_write(e->io, NTF_OID, "", 0, 0);	/* exists */

	if (rc == 0)
		rc = rados_watch2(e->io, NTF_OID, &e->watch_cookie, on_notify,
		    on_watch_error, e);
	if (rc < 0)
		log_err("rados: watching %s: %s", NTF_OID, strerror(-rc));
	return rc;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Every CHECK_MS (or at once after an error): a broken watch is made
 * anew and the watched directories' counters are read; every RECHECK_MS
 * they are read anyway (see the top of the file).
 */
static void *
checker_main(void *arg)
{
	struct rados_engine *e = arg;
	struct timespec ts;
	int64_t next = mono_ms() + RECHECK_MS;
	int broken, repaired = 0;

	pthread_mutex_lock(&ck_mu);
	while (!ck_stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += CHECK_MS / 1000;
		if (!watch_broken)
			pthread_cond_timedwait(&ck_cv, &ck_mu, &ts);
		if (ck_stop)
			break;
		broken = watch_broken;
		watch_broken = 0;
		pthread_mutex_unlock(&ck_mu);
		if (!broken && rados_watch_check(e->io, e->watch_cookie) < 0)
			broken = 1;
		if (broken) {
			re_cache_flush(e);
			(void)rados_unwatch2(e->io, e->watch_cookie);
			if (watch(e) == 0) {
				atomic_fetch_add(&n_rewatch, 1);
				log_info("rados: watch %s re-established; "
				    "reading the watched directories' "
				    "counters", NTF_OID);
				repaired = 1;
			} else {
				pthread_mutex_lock(&ck_mu);
				watch_broken = 1;
				pthread_mutex_unlock(&ck_mu);
				sleep(1);
			}
		}
		if (repaired || mono_ms() >= next) {
			/* Notices may have been lost while the watch was
			 * down: what moved is RESET at once. */
			recheck(e, repaired);
			repaired = 0;
			next = mono_ms() + RECHECK_MS;
		}
		pthread_mutex_lock(&ck_mu);
	}
	pthread_mutex_unlock(&ck_mu);
	return NULL;
}

void
re_watch_stats(size_t *dirs, uint64_t *resets, uint64_t *rewatches,
    uint64_t *rechecks)
{
	pthread_mutex_lock(&wt_mu);
	*dirs = wt_n;
	pthread_mutex_unlock(&wt_mu);
	*resets = atomic_load(&n_resets);
	*rewatches = atomic_load(&n_rewatch);
	*rechecks = atomic_load(&n_rechecks);
}

int
re_watch_start(struct rados_engine *e)
{
	int rc;

	if (e->conf.notice == NULL)
		return 0;		/* nobody to tell: no watch */
	rc = watch(e);
	if (rc < 0)
		return rc;
	e->watching = 1;
	ck_stop = 0;
	rc = pthread_create(&checker, NULL, checker_main, e);
	if (rc != 0) {
		log_err("rados: starting the watch checker: %s", strerror(rc));
		(void)rados_unwatch2(e->io, e->watch_cookie);
		e->watching = 0;
		return -rc;
	}
	checker_on = 1;
	return 0;
}

void
re_watch_stop(struct rados_engine *e)
{
	struct wdir *d;
	unsigned b;

	if (checker_on) {
		pthread_mutex_lock(&ck_mu);
		ck_stop = 1;
		pthread_cond_signal(&ck_cv);
		pthread_mutex_unlock(&ck_mu);
		pthread_join(checker, NULL);
		checker_on = 0;
	}
	if (e->watching) {
		(void)rados_unwatch2(e->io, e->watch_cookie);
		(void)rados_watch_flush(e->cl);
		e->watching = 0;
	}
	pthread_mutex_lock(&wt_mu);
	for (b = 0; b < WT_BUCKETS; b++)
		while ((d = wt[b]) != NULL) {
			wt[b] = d->next;
			free(d->owners);
			free(d);
		}
	wt_n = 0;
	pthread_mutex_unlock(&wt_mu);
}
