/*
 * engine_rados_notify.c - change notices between the mstored that share
 * one pool (RADOS watch/notify). Every server watches the object
 * mst.ntf; after a job's change is durable, its notices go out in one
 * notify (fire and forget: the change is already committed); a server
 * hands the notices it receives from others to engine_conf.notice and
 * skips its own (its watchers were told by the job itself). It never
 * blocks a worker on a notify and never holds a lock in a callback.
 *
 * Payload: 'N', then per notice: event u8, id u64, change u64, dir
 * length u16, dir, name length u16, name (little-endian).
 *
 * REMOVE notices, own and others', also drop cached resolutions
 * (engine_rados.c); a watch error drops them all.
 *
 * Phase 1 limits (mstored(8)): one notify object for the whole pool
 * (not 256 buckets); a watch that errors is re-established by a checker
 * thread every 2 s, but notices sent while it was down are not replayed
 * (no RESET is sent for them yet).
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

static pthread_t checker;
static int checker_on;
static pthread_mutex_t ck_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ck_cv = PTHREAD_COND_INITIALIZER;
static int ck_stop;			/* guarded by ck_mu */
static int watch_broken;		/* guarded by ck_mu */

static size_t
put_str(uint8_t *p, const char *s, size_t len)
{
	p[0] = (uint8_t)len;
	p[1] = (uint8_t)(len >> 8);
	memcpy(p + 2, s, len);
	return 2 + len;
}



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
	if (!e->watching || j->nnotices == 0)
		return;
	for (i = 0; i < j->nnotices; i++)
		need += 21 + strlen(j->notices[i].dir) +
		    strlen(j->notices[i].name);
	if (need > NTF_MAX || (buf = malloc(need)) == NULL) {
		log_warn("rados: notices of one job too large or no memory: "
		    "other servers' watchers miss them");
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

/* Every 2 s (or at once after an error): a broken watch is made anew. */
static void *
checker_main(void *arg)
{
	struct rados_engine *e = arg;
	struct timespec ts;
	int broken;

	pthread_mutex_lock(&ck_mu);
	while (!ck_stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2;
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
			if (watch(e) == 0)
				log_info("rados: watch %s re-established; "
				    "notices sent meanwhile are lost", NTF_OID);
			else {
				pthread_mutex_lock(&ck_mu);
				watch_broken = 1;
				pthread_mutex_unlock(&ck_mu);
				sleep(1);
			}
		}
		pthread_mutex_lock(&ck_mu);
	}
	pthread_mutex_unlock(&ck_mu);
	return NULL;
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
}
