/*
 * engine_rados_admin.c - the ADMIN commands of the rados back-end
 * (mstore-ctl(8)): stats, scrub (engine_rados_scrub.c), quota (limits
 * kept in q.<mailbox> for every server: engine_rados_quota.c), and
 * compact and checkpoint, which have nothing to do on RADOS and say so.
 * Owns the
 * text replies and the parsing of an ADMIN argument of KEY=VALUE words.
 *
 * compact: Ceph frees the space of a removed object itself; mstore
 * keeps no log segments on RADOS. checkpoint: every change is committed
 * on all replicas before its reply, and there is no log to replay, so a
 * checkpoint is already there. Both answer at once, successfully, so
 * that scripts written for the local engine keep working.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rados.h"
#include "log.h"

void
re_text_init(struct re_text *t)
{
	memset(t, 0, sizeof *t);
}

void
re_text_add(struct re_text *t, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *p;
	int n;

	if (t->failed)
		return;
	for (;;) {
		if (t->cap - t->len >= 256) {
			va_start(ap, fmt);
			n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
			va_end(ap);
			if (n >= 0 && (size_t)n < t->cap - t->len) {
				t->len += (size_t)n;
				return;
			}
		}
		cap = t->cap ? t->cap * 2 : 4096;
		if ((p = realloc(t->p, cap)) == NULL) {
			t->failed = 1;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* The text as the job's one ADMIN reply frame (cut to max_frame), and
 * freed. */
int
re_text_reply(struct job *j, struct re_text *t)
{
	struct mst_admin_rep r;
	uint8_t *p;
	int n;

	if (t->failed || t->p == NULL) {
		free(t->p);
		return -ENOMEM;
	}
	r.text.p = (const uint8_t *)t->p;
	r.text.len = (uint32_t)t->len;
	if (t->len + 4 > j->max_frame)
		r.text.len = (uint32_t)(j->max_frame - 4);
	p = malloc(4 + (size_t)r.text.len);
	n = p ? mst_admin_rep_encode(&r, p, 4 + (size_t)r.text.len) : -ENOMEM;
	free(t->p);
	t->p = NULL;
	return n < 0 ? n : job_add_frame(j, p, (size_t)n);
}

int
re_admin_arg(struct mst_str arg, const char *key, uint64_t *out)
{
	size_t kl = strlen(key), i = 0, end;
	uint64_t v;

	while (i < arg.len) {
		while (i < arg.len && arg.p[i] == ' ')
			i++;
		for (end = i; end < arg.len && arg.p[end] != ' '; end++)
			;
		if (end - i > kl && memcmp(arg.p + i, key, kl) == 0 &&
		    arg.p[i + kl] == '=') {
			v = 0;
			for (i += kl + 1; i < end; i++) {
				if (arg.p[i] < '0' || arg.p[i] > '9' ||
				    v > UINT64_MAX / 10 - 1)
					return -EINVAL;
				v = v * 10 + (uint64_t)(arg.p[i] - '0');
			}
			*out = v;
			return 1;
		}
		i = end;
	}
	return 0;
}

static int
stats(struct rados_engine *e, struct job *j)
{
	struct rados_pool_stat_t ps;
	struct rados_cluster_stat_t cs;
	struct re_text t;
	uint64_t resets, rewatch, rechecks;
	size_t dirs, cached;
	int rc;

	re_text_init(&t);
	re_watch_stats(&dirs, &resets, &rewatch, &rechecks);
	pthread_mutex_lock(&e->cmu);
	cached = e->ncache;
	pthread_mutex_unlock(&e->cmu);
	re_text_add(&t, "engine=rados\npool=%s\nincarnation=%" PRIu64
	    "\nclient=%" PRIu64 "\nids_used=%" PRIu64 "\ndeliveries=%" PRIu64
	    "\ncancelled_writes=%" PRIu64 "\ncached_paths=%zu\n"
	    "watching=%d\nwatched_dirs=%zu\nwatch_resets=%" PRIu64
	    "\nwatch_reestablished=%" PRIu64 "\nwatch_rechecks=%" PRIu64 "\n",
	    e->conf.pool, e->inc, e->instance,
	    (uint64_t)atomic_load(&e->seq) - 1,
	    (uint64_t)atomic_load(&e->delivered),
	    (uint64_t)atomic_load(&e->cancels), cached, e->watching, dirs,
	    resets, rewatch, rechecks);
	re_text_add(&t, "index_shards=%u\nindex_cap=%" PRIu64
	    "\nindex_counter_raises=%" PRIu64 "\nindex_full_refusals=%" PRIu64
	    "\n", e->shards, e->shard_cap,
	    (uint64_t)atomic_load(&e->raises),
	    (uint64_t)atomic_load(&e->full_refusals));
	re_scrub_stats(&t);
	rc = rados_ioctx_pool_stat(e->io, &ps);
	if (rc == 0)
		re_text_add(&t, "pool_objects=%" PRIu64 "\npool_bytes=%" PRIu64
		    "\npool_objects_degraded=%" PRIu64 "\n", ps.num_objects,
		    ps.num_bytes, ps.num_objects_degraded);
	else
		log_warn("rados: stats: pool stat: %s", strerror(-rc));
	rc = rados_cluster_stat(e->cl, &cs);
	if (rc == 0)
		re_text_add(&t, "cluster_bytes=%" PRIu64 "\n"
		    "cluster_bytes_avail=%" PRIu64 "\ncluster_objects=%" PRIu64
		    "\n", cs.kb * 1024, cs.kb_avail * 1024, cs.num_objects);
	else
		log_warn("rados: stats: cluster stat: %s", strerror(-rc));
	return re_text_reply(j, &t);
}

static int
says(struct mst_str s, const char *w)
{
	return s.len == strlen(w) && memcmp(s.p, w, s.len) == 0;
}

/* ADMIN quota: the limits go into q.<mailbox>, where every server of
 * the pool reads them with the usage at each DELIVER. */
static int
quota(struct rados_engine *e, struct job *j)
{
	struct mst_str name;
	struct re_text t;
	uint64_t bytes, msgs;
	int rc;

	rc = engine_quota_arg(j->req.admin.arg, &name, &bytes, &msgs);
	if (rc == 0)
		rc = re_quota_set(e, name.p, name.len, bytes, msgs);
	if (rc < 0)
		return rc;
	re_text_init(&t);
	re_text_add(&t, "mailbox=%.*s\nquota_bytes=%" PRIu64 "\nquota_msgs=%"
	    PRIu64 "\n", (int)name.len, name.p, bytes, msgs);
	return re_text_reply(j, &t);
}

int
re_op_admin(struct rados_engine *e, struct job *j)
{
	const struct mst_admin_req *q = &j->req.admin;
	struct re_text t;

	if (says(q->cmd, "stats"))
		return stats(e, j);
	if (says(q->cmd, "scrub"))
		return re_scrub(e, j);
	if (says(q->cmd, "quota"))
		return quota(e, j);
	re_text_init(&t);
	if (says(q->cmd, "compact"))
		re_text_add(&t, "compact=nothing to do: Ceph frees the space "
		    "of removed objects itself\n");
	else if (says(q->cmd, "checkpoint"))
		re_text_add(&t, "checkpoint=ok: every change is committed on "
		    "all replicas before its reply\n");
	else
		return -EINVAL;
	return re_text_reply(j, &t);
}
