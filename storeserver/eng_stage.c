/*
 * eng_stage.c - the sweep of staged bodies (STAGE, eng_ops.c) that are
 * never committed, in the local and memory engines. Owns the queue of
 * staged bodies (e->stq) and the ticker thread; the unlinks it makes are
 * ordinary UNLINK records in the writer's batch. Never walks the index
 * while the store runs.
 *
 * Why: a mount that staged a body and then died (or failed over to
 * another server) never commits or unlinks it, and the body holds its
 * mailbox's quota. A body older than engine_conf.stage_ttl (an hour) is
 * therefore unlinked by the store itself; a COMMIT of it afterwards gets
 * ESTALE and the mount sends the whole DELIVER instead, as it does when
 * the body is gone for any other reason.
 *
 * How, at the scale of ten million messages: every body staged goes on
 * the queue with the time it was staged, so the queue is in time order
 * and the oldest is at its head. At the start of every batch the writer
 * looks at the head (nothing more when it is not due), and unlinks the
 * bodies that are due, up to STAGE_SWEEP_MAX a batch. A body committed
 * or unlinked meanwhile keeps its entry, which is dropped when it comes
 * up (an id lookup); when the queue holds twice as many entries as it
 * had live ones at its last clean-up, such entries are dropped at once,
 * so its memory is bounded by twice the bodies staged at any time
 * (16 bytes each). Only at open, and after a roll back rebuilt the
 * index, are the staged bodies found by a look into the tmp/ of each
 * mailbox (and of each of its folders) that holds messages: a checkpoint
 * does not keep the queue.
 *
 * The ticker thread hands the writer an empty job every stage_ttl / 4
 * (between 1 and 60 seconds), so that a store with no other traffic
 * sweeps too: a body goes at most that long after its time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diskio.h"
#include "eng.h"
#include "log.h"

#define STAGE_TTL_S	3600		/* engine_conf.stage_ttl default */
#define STAGE_SWEEP_MAX	256		/* unlinked per batch at most */
#define STAGE_LOG_MAX	8		/* of them logged one by one */
#define STAGEQ_MIN	1024		/* entries before a clean-up */
#define TICK_MIN_S	1
#define TICK_MAX_S	60

static unsigned
ttl_s(const struct engine *e)
{
	return e->conf.stage_ttl ? e->conf.stage_ttl : STAGE_TTL_S;
}

/* A message still staged: in a tmp/, under its staged name. */
static int
staged_body(const struct node *n)
{
	const struct node *p = index_parent(n);
	char pb[MST_NAME_MAX], nb[MST_NAME_MAX];
	struct mst_str pn, nm;

	if (n->type != MST_T_MSG || p == NULL)
		return 0;
	pn = index_name(p, pb);
	nm = index_name(n, nb);
	return pn.len == 3 && memcmp(pn.p, "tmp", 3) == 0 &&
	    nm.len >= sizeof MST_STAGE_PREFIX - 1 &&
	    memcmp(nm.p, MST_STAGE_PREFIX, sizeof MST_STAGE_PREFIX - 1) == 0;
}

static struct stage_ent *
q_at(struct stageq *q, size_t i)
{
	return &q->v[(q->head + i) % q->cap];
}

static int
q_push(struct stageq *q, uint64_t id, int64_t at_ns)
{
	struct stage_ent *v;
	size_t cap, i;

	if (q->n == q->cap) {
		cap = q->cap ? 2 * q->cap : 64;
		v = malloc(cap * sizeof *v);
		if (v == NULL)
			return -ENOMEM;
		for (i = 0; i < q->n; i++)
			v[i] = *q_at(q, i);
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	*q_at(q, q->n) = (struct stage_ent){ id, at_ns };
	q->n++;
	return 0;
}

/* Drop the entries of bodies no longer staged, keeping the order. */
static void
q_clean(struct engine *e)
{
	struct stageq *q = &e->stq;
	struct node *n;
	size_t i, k = 0;

	for (i = 0; i < q->n; i++) {
		n = index_find_id(e->ix, q_at(q, i)->id);
		if (n && staged_body(n))
			*q_at(q, k++) = *q_at(q, i);
	}
	q->n = k;
	q->limit = 2 * k > STAGEQ_MIN ? 2 * k : STAGEQ_MIN;
}

void
stage_note(struct engine *e, uint64_t id, int64_t at_ns)
{
	if (e->stq.n >= e->stq.limit)
		q_clean(e);
	if (q_push(&e->stq, id, at_ns) < 0)
		log_warn("staged body %llu: out of memory for the sweep's "
		    "queue; it is swept only after a restart",
		    (unsigned long long)id);
}

/* Unlink the staged body |n| in |b|: 0, or a negative errno (-EAGAIN:
 * the batch is full). */
static int
reclaim(struct engine *e, struct batch *b, struct node *n, int64_t now,
    int say)
{
	struct rec r = { .type = REC_UNLINK, .id = n->id,
		.parent = index_parent(n)->id, .mtime_ns = now };
	char name[MST_NAME_MAX + 1], dir[MST_PATH_MAX + 1];
	uint64_t size = n->size;
	int64_t age = now - n->ctime_ns;
	int rc;

	r.name = (struct mst_str){ name, (uint16_t)index_name_copy(n, name) };
	if (say && index_path(index_parent(n), dir, sizeof dir) < 0)
		strcpy(dir, "?");
	rc = batch_add(e, b, &r, NULL);
	if (rc == 0 && say)
		log_info("reclaimed staged body %s/%s: %llu bytes, staged %llds "
		    "ago and never committed", dir, name,
		    (unsigned long long)size,
		    (long long)(age / 1000000000));
	return rc;
}

void
stage_sweep(struct engine *e, struct batch *b)
{
	struct stageq *q = &e->stq;
	int64_t now, cutoff;
	uint64_t bytes = 0, size;
	struct stage_ent s;
	struct node *n;
	int k = 0, rc;

	if (q->n == 0)
		return;
	now = now_ns();
	cutoff = now - (int64_t)ttl_s(e) * 1000000000;
	while (q->n > 0 && q_at(q, 0)->at_ns <= cutoff &&
	    k < STAGE_SWEEP_MAX) {
		s = *q_at(q, 0);
		n = index_find_id(e->ix, s.id);
		if (n && !staged_body(n))
			n = NULL;	/* committed or unlinked since */
		if (n && n->ctime_ns <= cutoff) {
			size = n->size;
			rc = reclaim(e, b, n, now, k < STAGE_LOG_MAX);
			if (rc == -EAGAIN)
				break;		/* the next batch goes on */
			if (rc < 0) {
				log_err("sweep of staged body %llu: %s",
				    (unsigned long long)s.id, strerror(-rc));
				break;
			}
			k++;
			bytes += size;
			n = NULL;	/* gone */
		}
		q->head = (q->head + 1) % q->cap;
		q->n--;
		if (n)			/* staged later than it says */
			stage_note(e, s.id, n->ctime_ns);
	}
	if (k)
		log_info("sweep: reclaimed %d staged bodies (%llu bytes) older "
		    "than %us that were never committed", k,
		    (unsigned long long)bytes, ttl_s(e));
}

static int
cmp_at(const void *a, const void *b)
{
	const struct stage_ent *x = a, *y = b;

	return x->at_ns < y->at_ns ? -1 : x->at_ns > y->at_ns;
}

/* Queue the staged bodies in |dir|/tmp. */
static int
scan_tmp(struct engine *e, const struct node *dir)
{
	const struct node *tmp = index_lookup(e->ix, dir, "tmp", 3), *c;

	if (tmp == NULL || tmp->type != MST_T_DIR)
		return 0;
	for (c = tmp->x.dir->first; c; c = index_next(c))
		if (staged_body(c) && q_push(&e->stq, c->id, c->ctime_ns) < 0)
			return -ENOMEM;
	return 0;
}

void
stage_rebuild(struct engine *e)
{
	struct index *ix = e->ix;
	struct stageq *q = &e->stq;
	const struct node *c;
	struct node *d;
	struct mbox *m;
	size_t i;
	int rc = 0;

	q->head = q->n = 0;
	for (i = 0; rc == 0 && i <= ix->mbox_mask; i++)
		for (m = ix->mboxes[i]; rc == 0 && m; m = m->next) {
			if (index_resolve(ix, mst_str_of(m->name), &d) < 0 ||
			    d->type != MST_T_DIR)
				continue;
			rc = scan_tmp(e, d);
			for (c = d->x.dir->first; rc == 0 && c;
			    c = index_next(c))
				if (c->type == MST_T_DIR)
					rc = scan_tmp(e, c);
		}
	if (rc < 0)
		log_warn("staged bodies: out of memory for the sweep's queue; "
		    "%zu of them will be swept", q->n);
	if (q->n > 1)			/* from 0: nothing was taken yet */
		qsort(q->v, q->n, sizeof *q->v, cmp_at);
	q->limit = 2 * q->n > STAGEQ_MIN ? 2 * q->n : STAGEQ_MIN;
	if (q->n)
		log_info("%zu staged bodies not committed yet; swept %us after "
		    "they were staged", q->n, ttl_s(e));
}

void
stage_free(struct engine *e)
{
	free(e->stq.v);
	memset(&e->stq, 0, sizeof e->stq);
}

static unsigned
tick_s(const struct engine *e)
{
	unsigned t = ttl_s(e) / 4;

	return t < TICK_MIN_S ? TICK_MIN_S : t > TICK_MAX_S ? TICK_MAX_S : t;
}

/* Hand the writer one JK_SWEEP job and wait until it is done. */
static void
tick(struct engine *e, struct waiter *w)
{
	struct job *j = calloc(1, sizeof *j);

	if (j == NULL)
		return;			/* the next tick, or the next batch */
	j->kind = JK_SWEEP;
	engine_internal(e, j, w);
	pthread_mutex_lock(&w->mu);
	while (w->pending > 0)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

static void *
ticker_main(void *arg)
{
	struct engine *e = arg;
	struct waiter w = { .pending = 0 };
	struct timespec ts;

	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	pthread_mutex_lock(&e->tmu);
	for (;;) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += tick_s(e);
		while (!e->tstop &&
		    pthread_cond_timedwait(&e->tcv, &e->tmu, &ts) == 0)
			;
		if (e->tstop)
			break;
		pthread_mutex_unlock(&e->tmu);
		tick(e, &w);
		pthread_mutex_lock(&e->tmu);
	}
	pthread_mutex_unlock(&e->tmu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return NULL;
}

int
stage_start(struct engine *e)
{
	int rc;

	pthread_mutex_init(&e->tmu, NULL);
	pthread_cond_init(&e->tcv, NULL);
	e->tstop = 0;
	rc = dio_thread_start(&e->ticker, ticker_main, e);
	e->tstarted = rc == 0;
	return rc;
}

/* Before the writer's queue stops: a tick in flight is answered. */
void
stage_stop(struct engine *e)
{
	if (!e->tstarted)
		return;
	pthread_mutex_lock(&e->tmu);
	e->tstop = 1;
	pthread_cond_broadcast(&e->tcv);
	pthread_mutex_unlock(&e->tmu);
	pthread_join(e->ticker, NULL);
	e->tstarted = 0;
}
