/*
 * eng_admin.c - background compaction, scrub and the ADMIN commands of
 * the local engine.
 *
 * Compaction never blocks deliveries: the compactor thread reads a sparse
 * sealed segment itself and hands each still-live body to the writer as
 * a RELOCATE job, which the writer batches with deliveries like any other
 * record. When nothing live is left in the segment, a checkpoint is
 * requested; the writer reclaims the file after it (eng_store.c,
 * invariant 4).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "eng.h"
#include "log.h"
#include "metrics.h"

#define RELOC_WINDOW	64		/* relocations in flight */
#define COMPACT_PERIOD	30		/* seconds between looks */

void
compact_kick(struct engine *e)
{
	pthread_mutex_lock(&e->cmu);
	e->ckick = 1;
	pthread_cond_signal(&e->ccv);
	pthread_mutex_unlock(&e->cmu);
}

static int
compact_stopping(struct engine *e)
{
	int stop;

	pthread_mutex_lock(&e->cmu);
	stop = e->cstop;
	pthread_mutex_unlock(&e->cmu);
	return stop;
}

static void
wait_pending(struct waiter *w, int max)
{
	pthread_mutex_lock(&w->mu);
	while (w->pending > max)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

struct compact {
	struct engine *e;
	struct seg *s;
	struct waiter w;
	uint64_t moved;
};

/* Hand one body (or file block) to the writer to append again. */
static int
submit_reloc(struct compact *c, const struct reloc *src, const uint8_t *data,
    size_t len)
{
	struct reloc *rl;
	struct job *j;

	if (compact_stopping(c->e))
		return -ECANCELED;
	j = calloc(1, sizeof *j);
	rl = malloc(sizeof *rl);
	if (j == NULL || rl == NULL || (len &&
	    (j->body = malloc(len)) == NULL)) {
		if (j)
			free(j->body);
		free(j);
		free(rl);
		return -ENOMEM;
	}
	memcpy(j->body, data, len);
	j->body_len = len;
	*rl = *src;
	j->payload = (uint8_t *)rl;
	j->kind = JK_RELOCATE;
	j->op = MST_OP_DATA;
	engine_internal(c->e, j, &c->w);
	c->moved += len;
	wait_pending(&c->w, RELOC_WINDOW);
	return 0;
}

/*
 * The live blocks of file |f| whose bytes are in this record's body
 * [lo, hi) of segment |seg|: an EXTENT's own blocks, or any block of a
 * first-format whole body. Caller holds the rwlock.
 */
static size_t
live_blocks(const struct fobj *f, const struct rec *r, uint32_t seg,
    uint64_t lo, uint64_t hi, struct reloc *out, size_t cap)
{
	uint64_t k, from = 0, to = f->nblk;
	size_t n = 0;

	if (r->type == REC_EXTENT) {
		from = r->first;
		to = r->first + r->nblk;
	}
	for (k = from; k < to && k < f->nblk && n < cap; k++) {
		const struct fblk *b = &f->blk[k];

		if (b->len == 0 || b->seg != seg || b->off < lo ||
		    b->off + b->len > hi)
			continue;
		out[n] = (struct reloc){ .id = f->id, .seg = seg,
			.off = b->off, .checksum = b->sum, .file = 1,
			.block = k };
		out[n].len = b->len;
		n++;
	}
	return n;
}

static int
relocate_file(struct compact *c, struct rec *r, const uint8_t *payload,
    uint64_t off)
{
	struct engine *e = c->e;
	uint64_t body = off + REC_HDR_LEN + r->body_off;
	struct reloc *v;
	struct fobj *f;
	size_t n, i, cap;
	int rc = 0;

	cap = r->type == REC_EXTENT ? r->nblk : r->size / REC_BLOCK + 1;
	v = calloc(cap, sizeof *v);
	if (v == NULL)
		return -ENOMEM;
	pthread_rwlock_rdlock(&e->mu);
	f = index_find_file(e->ix, r->id);
	n = f ? live_blocks(f, r, c->s->no, body, body + r->size, v, cap) : 0;
	pthread_rwlock_unlock(&e->mu);
	for (i = 0; rc == 0 && i < n; i++)
		rc = submit_reloc(c, &v[i], payload + (v[i].off - off -
		    REC_HDR_LEN), v[i].len);
	free(v);
	return rc;
}

static int
relocate_one(void *arg, struct rec *r, const uint8_t *payload, uint64_t off)
{
	struct compact *c = arg;
	struct engine *e = c->e;
	uint64_t body_off = off + REC_HDR_LEN + r->body_off;
	struct reloc rl = { .id = r->id, .seg = c->s->no, .off = body_off,
		.checksum = r->checksum };
	struct node *n;
	int live, file;

	metrics_compact_progress(off);
	if (!rec_has_body(r))
		return 0;
	pthread_rwlock_rdlock(&e->mu);
	file = index_find_file(e->ix, r->id) != NULL;
	n = file ? NULL : index_find_id(e->ix, r->id);
	live = n && n->seg == c->s->no && n->off == body_off;
	pthread_rwlock_unlock(&e->mu);
	if (file)
		return relocate_file(c, r, payload, off);
	if (!live)
		return 0;
	return submit_reloc(c, &rl, payload + r->body_off, r->size);
}

static void
request_checkpoint(struct engine *e, struct waiter *w)
{
	struct job *j = calloc(1, sizeof *j);

	if (j == NULL)
		return;
	j->kind = JK_CHECKPOINT;
	engine_internal(e, j, w);
	wait_pending(w, 0);
}

/* The sealed segment with the lowest live share under the threshold. */
static struct seg *
pick_segment(struct engine *e)
{
	struct seg *best = NULL, *s;
	uint64_t live, bl = 0;
	uint32_t no;

	pthread_rwlock_rdlock(&e->mu);
	for (no = 0; no < e->nsegs; no++) {
		s = e->segs[no];
		if (s == NULL || s == e->active || s->size == 0)
			continue;
		live = index_seg_live(e->ix, no);
		if (live * 100 >= s->size * (uint64_t)e->conf.compact_percent)
			continue;
		if (best == NULL || live * best->size < bl * s->size) {
			best = s;
			bl = live;
		}
	}
	if (best)
		atomic_fetch_add(&best->refs, 1);
	pthread_rwlock_unlock(&e->mu);
	return best;
}

static void
compact_segment(struct engine *e, struct seg *s)
{
	struct compact c = { .e = e, .s = s };
	uint64_t end, live;
	int rc;

	pthread_mutex_init(&c.w.mu, NULL);
	pthread_cond_init(&c.w.cv, NULL);
	/* Under the lock: a roll back's reload frees e->ix. */
	pthread_rwlock_rdlock(&e->mu);
	live = index_seg_live(e->ix, s->no);
	pthread_rwlock_unlock(&e->mu);
	log_info("compacting %s (%llu of %llu bytes live)", s->path,
	    (unsigned long long)live, (unsigned long long)s->size);
	metrics_compact_begin(s->size);
	rc = seg_scan(s, 0, store_max_record(e), relocate_one,
	    &c, &end);
	wait_pending(&c.w, 0);
	if (rc < 0 && rc != -ECANCELED)
		log_err("compacting %s stopped at %llu: %s", s->path,
		    (unsigned long long)end, strerror(-rc));
	if (rc == 0) {
		request_checkpoint(e, &c.w);
		atomic_fetch_add(&e->compacted, 1);
		atomic_fetch_add(&e->relocated, c.moved);
	}
	metrics_compact_end(rc == 0, c.moved);
	pthread_mutex_destroy(&c.w.mu);
	pthread_cond_destroy(&c.w.cv);
}

void *
compactor_main(void *arg)
{
	struct engine *e = arg;
	struct timespec ts;
	struct seg *s;

	for (;;) {
		pthread_mutex_lock(&e->cmu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += COMPACT_PERIOD;
		while (!e->cstop && !e->ckick &&
		    pthread_cond_timedwait(&e->ccv, &e->cmu, &ts) == 0)
			;
		e->ckick = 0;
		if (e->cstop) {
			pthread_mutex_unlock(&e->cmu);
			return NULL;
		}
		e->crunning = 1;
		pthread_mutex_unlock(&e->cmu);
		while (!compact_stopping(e) && (s = pick_segment(e)) != NULL) {
			compact_segment(e, s);
			seg_put(s);
		}
		pthread_mutex_lock(&e->cmu);
		e->crunning = 0;
		e->cpasses++;
		pthread_mutex_unlock(&e->cmu);
	}
}

/*
 * ADMIN compact: wake the compactor and name the pass that will look at
 * the store after this request: the next one, or the one after when a
 * pass is under way (it may have picked its segments already). A client
 * waits for compact_passes (stats) to reach it.
 */
static void
compact_request(struct engine *e, struct job *j)
{
	char buf[64];
	uint64_t pass;
	int n;

	pthread_mutex_lock(&e->cmu);
	pass = e->cpasses + (e->crunning ? 2 : 1);
	e->ckick = 1;
	pthread_cond_signal(&e->ccv);
	pthread_mutex_unlock(&e->cmu);
	n = snprintf(buf, sizeof buf, "compact=started\ncompact_pass=%llu\n",
	    (unsigned long long)pass);
	j->status = reply_text(j, buf, (size_t)n);
}

/* --- scrub --- */

struct scrub {
	struct seg *s;
	uint64_t done;		/* bytes of the segments before |s| */
	uint64_t records, bodies, blocks, bad_bodies;
	char *report;
	size_t rlen, rcap;
};

static void
report(struct scrub *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#include <stdarg.h>

static void
report(struct scrub *sc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sc->rcap - sc->rlen < 256) {
		size_t cap = sc->rcap ? sc->rcap * 2 : 4096;
		char *p = realloc(sc->report, cap);

		if (p == NULL)
			return;
		sc->report = p;
		sc->rcap = cap;
	}
	va_start(ap, fmt);
	n = vsnprintf(sc->report + sc->rlen, sc->rcap - sc->rlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		sc->rlen += (size_t)n < sc->rcap - sc->rlen ? (size_t)n :
		    sc->rcap - sc->rlen - 1;
}

/* An EXTENT's block sums against its blocks. */
static void
scrub_blocks(struct scrub *sc, const struct rec *r, const uint8_t *body,
    uint64_t off)
{
	uint64_t at;
	uint32_t k;
	size_t len;

	for (k = 0; k < r->nblk; k++) {
		at = rec_ext_block(r, k, &len);
		sc->blocks++;
		if (XXH3_64bits(body + at, len) == rec_ext_sum(body, k))
			continue;
		sc->bad_bodies++;
		report(sc, "damage=%s offset %llu: file %llu block %llu "
		    "checksum mismatch\n", sc->s->path,
		    (unsigned long long)off, (unsigned long long)r->id,
		    (unsigned long long)(r->first + k));
	}
}

static int
scrub_one(void *arg, struct rec *r, const uint8_t *payload, uint64_t off)
{
	struct scrub *sc = arg;

	metrics_scrub_progress(sc->done + off);
	sc->records++;
	if (!rec_has_body(r))
		return 0;
	sc->bodies++;
	if (XXH3_64bits(payload + r->body_off, r->size) != r->checksum) {
		sc->bad_bodies++;
		report(sc, "damage=%s offset %llu: body checksum mismatch "
		    "(id %llu)\n", sc->s->path, (unsigned long long)off,
		    (unsigned long long)r->id);
	} else if (r->type == REC_EXTENT) {
		scrub_blocks(sc, r, payload + r->body_off, off);
	}
	return 0;
}

/* Scrub progress for stats: the log bytes there are to check. */
static void
scrub_progress_begin(struct engine *e)
{
	uint64_t total = 0;
	uint32_t no;

	pthread_rwlock_rdlock(&e->mu);
	for (no = 0; no < e->nsegs; no++)
		if (e->segs[no] != NULL)
			total += e->segs[no]->size;
	pthread_rwlock_unlock(&e->mu);
	atomic_store(&e->scrub_done, 0);
	atomic_store(&e->scrub_total, total);
	atomic_fetch_add(&e->scrub_running, 1);
}

static void
scrub_progress_end(struct engine *e)
{
	uint64_t done = atomic_load(&e->scrub_done);

	/* Segments may have grown meanwhile: done is the bytes checked. */
	if (done > atomic_load(&e->scrub_total))
		atomic_store(&e->scrub_total, done);
	else
		atomic_store(&e->scrub_done, atomic_load(&e->scrub_total));
	atomic_fetch_sub(&e->scrub_running, 1);
}

/* Verify every record checksum and every body checksum in every segment. */
static void
scrub(struct engine *e, struct job *j)
{
	struct scrub sc = { 0 };
	uint64_t end, bad_records = 0, segs = 0, bytes = 0, size;
	uint32_t no, n;
	int rc;

	scrub_progress_begin(e);
	pthread_rwlock_rdlock(&e->mu);
	n = e->nsegs;
	for (no = 0; no < n; no++)
		if (e->segs[no] != NULL)
			bytes += e->segs[no]->size;
	pthread_rwlock_unlock(&e->mu);
	metrics_scrub_begin(bytes);
	bytes = 0;
	for (no = 0; no < n; no++) {
		pthread_rwlock_rdlock(&e->mu);
		sc.s = seg_get(e, no);
		pthread_rwlock_unlock(&e->mu);
		if (sc.s == NULL)
			continue;
		segs++;
		size = sc.s->size;	/* durable end; may grow meanwhile */
		rc = seg_scan(sc.s, 0, store_max_record(e),
		    scrub_one, &sc, &end);
		bytes += end;
		sc.done = bytes;
		metrics_scrub_progress(bytes);
		if (rc < 0 && end < size) {
			bad_records++;
			report(&sc, "damage=%s offset %llu: bad record; %llu "
			    "bytes after it unchecked\n", sc.s->path,
			    (unsigned long long)end,
			    (unsigned long long)(size - end));
		}
		seg_put(sc.s);
		atomic_fetch_add(&e->scrub_done, end);
	}
	report(&sc, "segments=%llu\nbytes=%llu\nrecords=%llu\nbodies=%llu\n"
	    "file_blocks=%llu\nbad_records=%llu\nbad_bodies=%llu\n"
	    "result=%s\n",
	    (unsigned long long)segs, (unsigned long long)bytes,
	    (unsigned long long)sc.records, (unsigned long long)sc.bodies,
	    (unsigned long long)sc.blocks,
	    (unsigned long long)bad_records,
	    (unsigned long long)sc.bad_bodies,
	    bad_records || sc.bad_bodies ? "damaged" : "clean");
	metrics_scrub_end(bad_records + sc.bad_bodies);
	if (bad_records || sc.bad_bodies)
		log_err("scrub of %s: %llu bad records, %llu bad bodies",
		    e->dir, (unsigned long long)bad_records,
		    (unsigned long long)sc.bad_bodies);
	else
		log_info("scrub of %s: %llu records clean", e->dir,
		    (unsigned long long)sc.records);
	scrub_progress_end(e);
	j->status = sc.report ? reply_text(j, sc.report, sc.rlen) : -ENOMEM;
	free(sc.report);
}

static void
stats(struct engine *e, struct job *j)
{
	char buf[2048];
	uint64_t segs = 0, log_bytes = 0, cb, cp, cn;
	struct index *ix = e->ix;
	uint32_t no;
	int n;

	pthread_rwlock_rdlock(&e->mu);
	for (no = 0; no < e->nsegs; no++)
		if (e->segs[no]) {
			segs++;
			log_bytes += e->segs[no]->size;
		}
	n = snprintf(buf, sizeof buf,
	    "engine=%s\nmessages=%llu\nmessage_bytes=%llu\nnodes=%llu\n"
	    "files=%llu\nopen_orphans=%llu\n"
	    "mailboxes=%llu\nsegments=%llu\nlog_bytes=%llu\nlsn=%llu\n"
	    "batches=%llu\nbatched_records=%llu\nsyncs=%llu\n"
	    "compactions=%llu\nrelocated_bytes=%llu\n"
	    "index_bytes_estimate=%llu\n",
	    e->media == &store_memory ? "memory" : "local",
	    (unsigned long long)ix->msgs, (unsigned long long)ix->bytes,
	    (unsigned long long)ix->nodes, (unsigned long long)ix->nfiles,
	    (unsigned long long)ix->orphans, (unsigned long long)ix->nmbox,
	    (unsigned long long)segs, (unsigned long long)log_bytes,
	    (unsigned long long)ix->lsn,
	    (unsigned long long)atomic_load(&e->batches),
	    (unsigned long long)atomic_load(&e->batched),
	    (unsigned long long)atomic_load(&e->syncs),
	    (unsigned long long)atomic_load(&e->compacted),
	    (unsigned long long)atomic_load(&e->relocated),
	    (unsigned long long)index_bytes(ix));
	pthread_rwlock_unlock(&e->mu);
	/* Flag changes and expunges answered once in the log, before the
	 * fdatasync that made them durable (engine_local.c). */
	n += snprintf(buf + n, sizeof buf - (size_t)n, "ordered=%llu\n",
	    (unsigned long long)atomic_load(&e->ordered));
	/* Pre-written segments made, and rotations into one (eng_store.c,
	 * invariant 5). */
	pthread_mutex_lock(&e->spmu);
	n += snprintf(buf + n, sizeof buf - (size_t)n,
	    "spares_made=%llu\nspares_used=%llu\n",
	    (unsigned long long)e->spare_made,
	    (unsigned long long)e->spare_used);
	pthread_mutex_unlock(&e->spmu);
	pthread_mutex_lock(&e->cmu);
	n += snprintf(buf + n, sizeof buf - (size_t)n,
	    "scrub_running=%d\nscrub_bytes_done=%llu\n"
	    "scrub_bytes_total=%llu\ncompact_running=%d\n"
	    "compact_passes=%llu\n", atomic_load(&e->scrub_running) > 0,
	    (unsigned long long)atomic_load(&e->scrub_done),
	    (unsigned long long)atomic_load(&e->scrub_total), e->crunning,
	    (unsigned long long)e->cpasses);
	pthread_mutex_unlock(&e->cmu);
	/* Checkpoints written by a child (engine_local.c): the commit path
	 * paid only the fork. */
	pthread_mutex_lock(&e->kmu);
	n += snprintf(buf + n, sizeof buf - (size_t)n,
	    "checkpoints=%llu\ncheckpoint_running=%d\n"
	    "checkpoint_fork_us_last=%llu\ncheckpoint_fork_us_max=%llu\n"
	    "checkpoint_write_ms_last=%llu\n", (unsigned long long)e->kdone,
	    e->krunning, (unsigned long long)(e->kfork_ns / 1000),
	    (unsigned long long)(e->kfork_max_ns / 1000),
	    (unsigned long long)(e->kwrite_last_ns / 1000000));
	pthread_mutex_unlock(&e->kmu);
	/* What the last one wrote (eng_ckpt.c): parts of an incremental
	 * checkpoint, and the parts its manifest names. */
	ckpt_stats(e, &cb, &cp, &cn);
	n += snprintf(buf + n, sizeof buf - (size_t)n,
	    "checkpoint_bytes_last=%llu\ncheckpoint_parts_written_last=%llu\n"
	    "checkpoint_parts=%llu\n", (unsigned long long)cb,
	    (unsigned long long)cp, (unsigned long long)cn);
	j->status = reply_text(j, buf, (size_t)n);
}

void
admin_run(struct engine *e, struct job *j)
{
	struct mst_str c = j->req.admin.cmd;

	if (c.len == 5 && memcmp(c.p, "stats", 5) == 0) {
		stats(e, j);
	} else if (c.len == 5 && memcmp(c.p, "scrub", 5) == 0) {
		scrub(e, j);
	} else if (c.len == 7 && memcmp(c.p, "compact", 7) == 0) {
		compact_request(e, j);
	} else if (c.len == 5 && memcmp(c.p, "quota", 5) == 0) {
		quota_admin(e, j);
	} else {
		j->status = -EINVAL;
	}
}
