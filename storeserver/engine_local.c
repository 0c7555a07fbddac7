/*
 * engine_local.c - the local storage engine: an append-only log of
 * checksummed records in segment files plus an in-memory index rebuilt
 * from a checkpoint and the log tail (see index.h for why in memory).
 *
 * This file owns the threads and the group commit. The writer thread
 * takes every queued mutation at once (up to BATCH_MAX), applies each to
 * the index while appending its record to one write, and hands the
 * written batch to the syncer thread, which makes it durable with one
 * fdatasync and only then completes its jobs. While the syncer waits for
 * the disk the writer goes on with the next batch, so one fdatasync
 * covers every batch written meanwhile. A lone delivery therefore waits
 * for one fdatasync and no timer; under load batches grow with it.
 *
 * Two kinds of change are answered earlier: a flag change (SETINFO, a
 * rename within new/ and cur/) and an expunge are completed as soon as
 * their batch is in the log file (ordered behind every earlier record,
 * in the page cache), before its fdatasync. Killing mstored loses none
 * of them; a crash of the machine loses at most the batches not yet
 * synced, that is the last group commit of flag changes and expunges,
 * and never a message: every other change, deliveries first, is
 * answered only once durable. When such an fdatasync fails, mstored
 * exits (a roll back would undo changes already answered) and restart
 * recovers from the log; a failed sync of other changes only is rolled
 * back as before and the service continues.
 *
 * Readers may see a change in the index while its batch is still being
 * written or synced; no reply to a durable change and no notice of it
 * leaves before the sync, and a crash in that window only loses what
 * nobody was told succeeded.
 *
 * Checkpoints are off the commit path. Writing the whole index from the
 * writer stalled every commit for as long as it took (seconds at a
 * million messages). Now the writer, between batches and once every
 * written batch is synced, only forks: the child holds a copy-on-write
 * image of the index as it was at that instant, writes it as the new
 * checkpoint (pacing its writes, checkpoint.c), syncs it and exits,
 * while the writer goes on committing. The checkpointer thread waits
 * for the child, installs the file (eng_store.c, invariant 3), reclaims
 * the segments it made unneeded and answers who asked. The commit path
 * pays the fork: page tables, a few milliseconds per GiB of index unless
 * the heap is in huge pages (mstored asks glibc for them, main.c), plus
 * a copy of each page the writer then changes. One checkpoint runs at a
 * time; one asked for meanwhile follows it. When fork fails the writer
 * writes the checkpoint itself, as before, and says so in the log.
 *
 * Why a fork and not a checkpoint built beside the running index: a
 * fuzzy one needs replay to know, record by record, what a chunk
 * written at another instant already holds; the image a fork gives is
 * exact. It is also incremental (eng_ckpt.c): the child writes only the
 * parts of the index changed since the files the last manifest names,
 * and the parts it names again are exact at the fork's instant too,
 * since nothing changed them since; so replay stays as it was.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diskio.h"
#include "eng.h"
#include "log.h"
#include "metrics.h"

#define BATCH_MAX	1024
#define ARENA_CAP	(4u << 20)
#define CKPT_WRITEBACK	(8u << 20)	/* a checkpoint's dirty bytes */

static void
jq_init(struct jq *q)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->head = q->tail = NULL;
	q->n = 0;
	q->stop = 0;
}

void
engine_enqueue(struct jq *q, struct job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->n++;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* Put |list| (ending at |last|) back at the head of the queue. */
static void
jq_requeue(struct jq *q, struct job *list, struct job *last, size_t n)
{
	pthread_mutex_lock(&q->mu);
	last->next = q->head;
	q->head = list;
	if (q->tail == NULL)
		q->tail = last;
	q->n += n;
	pthread_mutex_unlock(&q->mu);
}

/* Take up to |max| jobs; blocks until there is one or the queue stops
 * (then returns NULL once it is empty). */
static struct job *
jq_take(struct jq *q, size_t max)
{
	struct job *head, *j;
	size_t n = 1;

	pthread_mutex_lock(&q->mu);
	while (q->head == NULL && !q->stop)
		pthread_cond_wait(&q->cv, &q->mu);
	head = q->head;
	if (head) {
		for (j = head; j->next && n < max; j = j->next)
			n++;
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
		j->next = NULL;
		q->n -= n;
	}
	pthread_mutex_unlock(&q->mu);
	return head;
}

static void
jq_stop(struct jq *q)
{
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* Drop a reply that must not be sent (its batch failed). */
static void
job_drop_reply(struct job *j)
{
	size_t i;

	for (i = 0; i < j->nframes; i++)
		free(j->frames[i].p);
	for (i = 0; i < j->nnotices; i++) {
		free(j->notices[i].dir);
		free(j->notices[i].name);
	}
	free(j->frames);
	free(j->notices);
	j->frames = NULL;
	j->notices = NULL;
	j->nframes = j->nnotices = 0;
}

int
reply_text(struct job *j, const char *text, size_t len)
{
	struct mst_admin_rep r = { { (const uint8_t *)text, (uint32_t)len } };
	uint8_t *p;
	int n;

	if (len + 4 > j->max_frame)
		r.text.len = (uint32_t)(j->max_frame - 4);
	p = malloc(4 + (size_t)r.text.len);
	if (p == NULL)
		return -ENOMEM;
	n = mst_admin_rep_encode(&r, p, 4 + (size_t)r.text.len);
	return job_add_frame(j, p, (size_t)n);
}

static void
complete(struct engine *e, struct job *j)
{
	struct waiter *w;

	if (j->kind == JK_OP) {
		e->conf.done(e->conf.done_arg, j);
		return;
	}
	w = j->conn;
	free(j->payload);
	free(j->body);
	job_drop_reply(j);
	free(j);
	pthread_mutex_lock(&w->mu);
	w->pending--;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

#define SPACE_FRESH_MS	100		/* statvfs at most this often */
#define SPACE_SLACK	(256u << 20)	/* unless this close to the limit */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The writer's own steps between batches (a drain of the syncer, a
 * rotation, a fork, a reclaim) and the syncer's fdatasync hold up every
 * delivery behind them: one that takes WRITER_SLOW_MS or more is logged
 * with what it was, so that a latency spike seen by clients can be
 * traced to its cause in the log.
 */
#define WRITER_SLOW_MS	50

/* A step's start: the clock, and the thread's CPU time, which tells a
 * step that worked (CPU) from one that waited (disk, lock, or a turn on
 * a busy host's CPUs). */
struct wclock {
	int64_t ns, cpu_ns;
};

static struct wclock
wclock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);	/* cannot fail */
	return (struct wclock){ metrics_now_ns(),
		(int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec };
}

static void
writer_slow(const struct engine *e, const char *what, struct wclock t0)
{
	struct wclock t1 = wclock_now();

	if (t1.ns - t0.ns >= (int64_t)WRITER_SLOW_MS * 1000000)
		log_info("%s: %s took %.1f ms (%.1f ms of CPU)", e->dir, what,
		    (double)(t1.ns - t0.ns) / 1e6,
		    (double)(t1.cpu_ns - t0.cpu_ns) / 1e6);
}

/*
 * Bytes the next batch may append before ENOSPC (free space less the
 * reserve). statvfs costs as much as a small delivery, so its answer is
 * reused for SPACE_FRESH_MS, less what the log grew meanwhile, while a
 * comfortable margin remains; near the limit every batch asks afresh.
 */
static uint64_t
space_left(struct engine *e)
{
	uint64_t total, freeb, grown = e->log_bytes - e->space_log_bytes;
	int64_t now = mono_ms();

	if (now - e->space_at_ms < SPACE_FRESH_MS &&
	    e->space_free > grown + SPACE_SLACK)
		return e->space_free - grown;
	if (e->media->space(e, &total, &freeb) < 0)
		return UINT64_MAX;	/* the write itself will tell */
	e->space_free = freeb > e->conf.reserve_bytes ?
	    freeb - e->conf.reserve_bytes : 0;
	e->space_at_ms = now;
	e->space_log_bytes = e->log_bytes;
	return e->space_free;
}

static int
do_relocate(struct engine *e, struct batch *b, struct job *j)
{
	const struct reloc *rl = (const struct reloc *)j->payload;
	struct node *n;
	struct rec r = { .type = REC_RELOCATE, .id = rl->id,
		.checksum = rl->checksum, .size = j->body_len };

	if (rl->file)
		return file_relocate_block(e, b, j);
	n = index_find_id(e->ix, rl->id);
	if (n == NULL || n->seg != rl->seg || n->off != rl->off)
		return -ESTALE;		/* changed meanwhile: nothing to do */
	r.mtime_ns = n->mtime_ns;
	return batch_add(e, b, &r, j->body);
}

/*
 * Cut segment |s| back to |base| (nothing after it was answered),
 * rebuild the index from disk, and fail every job of |jobs| that was
 * going to succeed. The writer is between batches or is the caller.
 *
 * Readers take a body's place under the read lock and read it after,
 * and what is cut can be a compaction's RELOCATE of a message that
 * stays live where it was: a reader that read the cut place answered
 * that message with EIO or ENOENT (or, once the next batch was written
 * there, found another record's bytes). So the count (e->rolled), the
 * cut and the reload are one write-locked step: a reader's view and
 * place are both from before it, and body_moved() tells the reader
 * that the place may be gone, or both from after it. (The lock is held
 * across the ftruncate and fdatasync too; a roll back is rare, and the
 * reload under it takes longer.)
 */
static void
roll_back(struct engine *e, struct seg *s, uint64_t base, struct job *jobs,
    int rc)
{
	struct job *j;
	int r2;

	log_err("write or sync of %s from offset %llu: %s; rolling back",
	    s->path, (unsigned long long)base, strerror(-rc));
	pthread_rwlock_wrlock(&e->mu);
	atomic_fetch_add(&e->rolled, 1);
	atomic_store(&s->written, base);
	if (ftruncate(s->fd, (off_t)base) < 0 || fdatasync(s->fd) < 0) {
		log_err("ftruncate/fdatasync %s: %s: cannot roll back, "
		    "exiting so that restart recovers from the log",
		    s->path, strerror(errno));
		abort();
	}
	s->size = base;
	s->alloc = 0;			/* the file ends there now */
	r2 = store_reload(e);
	if (r2 == 0)
		orefs_reapply(e);	/* orphans are gone with the reload */
	pthread_rwlock_unlock(&e->mu);
	if (r2 < 0) {
		log_err("reload index after failed write: %s: exiting",
		    strerror(-r2));
		abort();
	}
	for (j = jobs; j; j = j->next) {
		if (j->status == 0) {
			job_drop_reply(j);
			j->status = rc == -ENOSPC ? -ENOSPC : -EIO;
		}
	}
}

/* Answered once ordered in the log, before the fdatasync. */
static int
answered_ordered(const struct job *j)
{
	return j->kind == JK_OP && (j->op == MST_OP_SETINFO ||
	    j->op == MST_OP_EXPUNGE);
}

/* Hand the written batch's durable jobs to the syncer. */
static void
sync_handoff(struct engine *e, const struct batch *b, struct job *durable,
    struct job **dtail, uint64_t nordered)
{
	pthread_mutex_lock(&e->smu);
	if (!e->spending) {
		e->sseg = b->seg;
		e->sbase = b->base;
		e->snrec = 0;
	}
	e->spos = b->pos;
	e->snrec += (unsigned)b->nrec;
	e->sacked += nordered;
	if (durable) {
		*e->stail = durable;
		e->stail = dtail;
	}
	e->spending = 1;
	pthread_cond_broadcast(&e->scv);
	pthread_mutex_unlock(&e->smu);
}

/* Is a written batch not yet durable? */
static int
sync_pending(struct engine *e)
{
	int r;

	pthread_mutex_lock(&e->smu);
	r = e->spending || e->sbusy;
	pthread_mutex_unlock(&e->smu);
	return r;
}

/* Wait until every written batch is durable and answered (before a
 * rotation, a checkpoint, or the end). Writer thread, bmu not held. */
static void
sync_drain(struct engine *e)
{
	pthread_mutex_lock(&e->smu);
	while (e->spending || e->sbusy)
		pthread_cond_wait(&e->scv, &e->smu);
	pthread_mutex_unlock(&e->smu);
}

/*
 * Open the batch in a pre-written segment with its MARK (record.h):
 * how far that segment was synced before this batch. Replay takes
 * damage before that point for damage, not for a torn write.
 */
static void
batch_mark(struct engine *e, struct batch *b)
{
	struct rec r = { .type = REC_MARK };
	int len;

	pthread_mutex_lock(&e->smu);
	if (e->synced_no == b->seg->no)
		r.synced = e->synced_end;
	pthread_mutex_unlock(&e->smu);
	len = rec_encode(&r, NULL, b->arena, REC_MARK_LEN);
	if (len != (int)REC_MARK_LEN) {
		log_err("encode MARK: %d", len);
		abort();
	}
}

static void
run_batch(struct engine *e, struct batch *b, struct job *jobs)
{
	struct job *j, *next, *done = NULL, **dtail = &done;
	struct job *now = NULL, **ntail = &now;
	struct job *defer = NULL, *dlast = NULL;
	size_t ndefer = 0;
	uint64_t nordered = 0;
	int i, rc = 0;

	b->seg = e->active;
	b->base = b->pos = e->active->size;
	b->niov = b->nrec = b->nscratch = 0;
	b->arena_used = 0;
	if (b->seg->marked) {		/* room for its MARK, first */
		b->iov[0] = (struct iovec){ b->arena, REC_MARK_LEN };
		b->niov = 1;
		b->arena_used = REC_MARK_LEN;
		b->pos += REC_MARK_LEN;
	}
	b->space = space_left(e);
	stage_sweep(e, b);		/* staged bodies past their time */
	for (j = jobs; j; j = next) {
		next = j->next;
		if (j->kind == JK_RELOCATE)
			j->status = do_relocate(e, b, j);
		else if (j->kind == JK_SWEEP)
			j->status = 0;	/* the sweep above was its job */
		else
			ops_mutate(e, b, j);
		if (j->status == -EAGAIN) {	/* batch full: next one */
			j->next = NULL;
			if (dlast)
				dlast->next = j;
			else
				defer = j;
			dlast = j;
			ndefer++;
			continue;
		}
		j->next = NULL;
		if (answered_ordered(j)) {
			*ntail = j;
			ntail = &j->next;
			/* Only a change made is lost with the sync; a
			 * refused one must not make its failure fatal. */
			if (j->status == 0)
				nordered++;
		} else {
			*dtail = j;
			dtail = &j->next;
		}
	}
	if (b->seg->marked && b->nrec)
		batch_mark(e, b);
	else if (b->nrec == 0)
		b->pos = b->base;	/* nothing to write, not even a MARK */
	if (b->nrec) {
		rc = dio_pwritev_all(b->seg->fd, b->iov, b->niov,
		    (off_t)b->base);
		if (rc < 0) {
			*dtail = now;	/* none answered yet: all fail */
			now = NULL;
			roll_back(e, b->seg, b->base, done, rc);
		} else {
			b->seg->size = b->pos;
			atomic_store(&b->seg->written, b->pos);
			e->since_ckpt += b->pos - b->base;
			e->log_bytes += b->pos - b->base;
			atomic_fetch_add(&e->batches, 1);
			atomic_fetch_add(&e->batched, (uint64_t)b->nrec);
			atomic_fetch_add(&e->ordered, nordered);
		}
		/* The writer alone changes the index: no lock to read it. */
		metrics_store(e->ix->msgs, e->ix->bytes, e->ix->nmbox);
	}
	if (b->nrec) {			/* readers waiting in body_wait */
		pthread_mutex_lock(&e->wmu);
		e->wgen++;
		pthread_cond_broadcast(&e->wcv);
		pthread_mutex_unlock(&e->wmu);
	}
	for (i = 0; i < b->nscratch; i++)
		free(b->scratch[i]);
	if (defer)
		jq_requeue(&e->wq, defer, dlast, ndefer);
	/* The syncer answers the rest once they are durable. A job that
	 * wrote nothing may still rest on a batch not yet synced (a
	 * DELIVER retried with its idempotency id, answered from the
	 * index): it waits for the next sync too. */
	if (rc == 0 && (b->nrec || sync_pending(e))) {
		sync_handoff(e, b, done, dtail, nordered);
		done = NULL;
	}
	for (j = now; j; j = next) {
		next = j->next;
		complete(e, j);
	}
	for (j = done; j; j = next) {	/* nothing to wait for */
		next = j->next;
		complete(e, j);
	}
}

/*
 * An fdatasync failed: every batch written since the range began is
 * undone. With bmu the writer is between batches, so nothing more is
 * written meanwhile. Changes already answered cannot be undone; then
 * the process exits and restart recovers from the log.
 */
static void
sync_failed(struct engine *e, struct seg *s, uint64_t base, uint64_t acked,
    struct job **jobs, int rc)
{
	struct job **tail = jobs;

	pthread_mutex_lock(&e->bmu);
	pthread_mutex_lock(&e->smu);
	while (*tail)
		tail = &(*tail)->next;
	if (e->spending) {	/* written after the failed range began */
		*tail = e->sjobs;
		acked += e->sacked;
		e->sjobs = NULL;
		e->stail = &e->sjobs;
		e->sacked = 0;
		e->spending = 0;
	}
	pthread_mutex_unlock(&e->smu);
	if (acked > 0) {
		log_err("fdatasync %s: %s: %llu flag changes or expunges were "
		    "already answered; exiting so that restart recovers from "
		    "the log", s->path, strerror(-rc),
		    (unsigned long long)acked);
		abort();
	}
	roll_back(e, s, base, *jobs, rc);
	pthread_mutex_lock(&e->wmu);
	e->wgen++;
	pthread_cond_broadcast(&e->wcv);
	pthread_mutex_unlock(&e->wmu);
	pthread_mutex_unlock(&e->bmu);
}

static void *
syncer_main(void *arg)
{
	struct engine *e = arg;
	struct job *jobs, *j, *next;
	uint64_t base, pos, acked;
	unsigned nrec;
	struct seg *s;
	struct wclock t0;
	int rc;

	pthread_mutex_lock(&e->smu);
	for (;;) {
		while (!e->spending && !e->sstop)
			pthread_cond_wait(&e->scv, &e->smu);
		if (!e->spending)
			break;
		jobs = e->sjobs;
		s = e->sseg;
		base = e->sbase;
		pos = e->spos;
		nrec = e->snrec;
		acked = e->sacked;
		e->sjobs = NULL;
		e->stail = &e->sjobs;
		e->sacked = 0;
		e->spending = 0;
		e->sbusy = 1;
		pthread_mutex_unlock(&e->smu);
		t0 = wclock_now();
		rc = dio_fdatasync(s->fd);
		writer_slow(e, "the log's fdatasync", t0);
		if (rc < 0) {
			sync_failed(e, s, base, acked, &jobs, rc);
		} else {
			atomic_fetch_add(&e->syncs, 1);
			metrics_commit(nrec, pos - base,
			    metrics_now_ns() - t0.ns);
			pthread_mutex_lock(&e->smu);
			e->synced_no = s->no;
			e->synced_end = pos;
			pthread_mutex_unlock(&e->smu);
		}
		for (j = jobs; j; j = next) {
			next = j->next;
			complete(e, j);
		}
		pthread_mutex_lock(&e->smu);
		e->sbusy = 0;
		pthread_cond_broadcast(&e->scv);
	}
	pthread_mutex_unlock(&e->smu);
	return NULL;
}

static struct job *
collect_checkpoints(struct job *jobs, struct job **rest_out)
{
	struct job *ck = NULL, *rest = NULL, *j, *next;

	for (j = jobs; j; j = next) {
		next = j->next;
		if (j->kind == JK_CHECKPOINT ||
		    (j->op == MST_OP_ADMIN && j->kind == JK_OP)) {
			j->next = ck;
			ck = j;
		} else {
			j->next = rest;
			rest = j;
		}
	}
	*rest_out = rest;
	return ck;
}

/* Answer the jobs that asked for a checkpoint (ADMIN checkpoint, the
 * compactor's requests): its result |rc|. */
static void
ckpt_answer(struct engine *e, struct job *ck, int rc)
{
	struct job *j, *next;

	for (j = ck; j; j = next) {
		next = j->next;
		j->status = rc;
		if (rc == 0 && j->kind == JK_OP)
			j->status = reply_text(j, "checkpoint=ok\n", 14);
		complete(e, j);
	}
}

/*
 * Is a checkpoint being written? Then |ck| waits for the next one,
 * which starts once it is done: one taken now would miss nothing, but
 * two children would hold two copies of every page the writer changes.
 */
static int
ckpt_busy(struct engine *e, struct job *ck)
{
	struct job *j, *next;
	int busy;

	pthread_mutex_lock(&e->kmu);
	busy = e->krunning;
	for (j = busy ? ck : NULL; j; j = next) {
		next = j->next;
		j->next = NULL;
		*e->kwtail = j;
		e->kwtail = &j->next;
	}
	pthread_mutex_unlock(&e->kmu);
	return busy;
}

/* Close every descriptor but 0-2, |keep| and |keep2| (-1: none): the
 * child must not hold the store's lock, sockets or segments open after
 * mstored lets go. */
static void
close_others(int keep, int keep2)
{
	unsigned lo = 3;
	int k[2], i;

	k[0] = keep < keep2 ? keep : keep2;
	k[1] = keep < keep2 ? keep2 : keep;
	for (i = 0; i < 2; i++) {
		if (k[i] < (int)lo)
			continue;
		if ((unsigned)k[i] > lo)	/* best effort */
			(void)close_range(lo, (unsigned)k[i] - 1, 0);
		lo = (unsigned)k[i] + 1;
	}
	(void)close_range(lo, ~0u, 0);
}

/*
 * The forked child: the index as it was at the fork, to |fd|. It
 * allocates nothing, takes no lock and logs nothing (other threads of
 * the parent held them at the fork); its exit status is 0 or an errno.
 * It dies with the writer thread that forked it (PR_SET_PDEATHSIG), so
 * a killed mstored leaves no writer behind.
 */
static void __attribute__((noreturn))
ckpt_child(struct engine *e, struct ckplan *p, struct index_saver *sv, int fd,
    uint32_t seg, uint64_t off, pid_t parent)
{
	int rc;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(ESRCH);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	close_others(fd, ckpt_dirfd(e));
	dio_child_start();	/* tests may hold it here */
	rc = ckpt_write(e, p, sv, fd, seg, off, CKPT_WRITEBACK);
	_exit(rc == 0 ? 0 : -rc > 0 && -rc < 256 ? -rc : EIO);
}

/*
 * Start a checkpoint for the jobs |ck| (may be NULL). The writer, between
 * batches (bmu held), with every written batch synced. Forks under the
 * rwlock, read, so that no ADMIN quota change is half made in the image.
 */
static void
ckpt_start(struct engine *e, struct job *ck)
{
	struct index_saver *sv = index_saver_new();
	struct ckplan *p = sv ? ckpt_plan(e, sv) : NULL;
	uint32_t seg = e->active->no;
	uint64_t off = e->active->size;
	pid_t parent = getpid(), pid = -1;
	struct timespec c0 = { 0, 0 }, c1 = { 0, 0 };
	int64_t t0 = 0;
	int fd, err = ENOMEM, rc;

	fd = p ? e->media->ckpt_create(e) : -ENOMEM;
	if (fd >= 0) {
		pthread_rwlock_rdlock(&e->mu);
		t0 = metrics_now_ns();
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
		pid = fork();
		if (pid == 0)
			ckpt_child(e, p, sv, fd, seg, off, parent);
		err = errno;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
		pthread_rwlock_unlock(&e->mu);
	}
	index_saver_free(sv);
	if (pid < 0) {
		ckpt_plan_free(p);
		if (fd >= 0)
			e->media->ckpt_discard(e, fd);
		log_warn("checkpoint: cannot fork a child to write it (%s); "
		    "writing it on the commit path", strerror(err));
		rc = store_checkpoint(e);
		ckpt_answer(e, ck, rc);
		compact_kick(e);
		return;
	}
	pthread_mutex_lock(&e->kmu);
	e->krunning = 1;
	e->kpid = pid;
	e->kfd = fd;
	e->kplan = p;
	e->kseg = seg;
	e->klsn = e->ix->lsn;
	e->ksince = e->since_ckpt;
	e->kfork_ns = metrics_now_ns() - t0;
	e->kfork_cpu_ns = (int64_t)(c1.tv_sec - c0.tv_sec) * 1000000000 +
	    (c1.tv_nsec - c0.tv_nsec);
	e->kstart_ns = t0;
	if (e->kfork_ns > e->kfork_max_ns)
		e->kfork_max_ns = e->kfork_ns;
	e->kjobs = ck;
	pthread_cond_broadcast(&e->kcv);
	pthread_mutex_unlock(&e->kmu);
}

/* Is every written batch synced? The caller holds bmu, so no batch is
 * being written. */
static int
sync_idle(struct engine *e)
{
	int idle;

	pthread_mutex_lock(&e->smu);
	idle = !e->spending && !e->sbusy;
	pthread_mutex_unlock(&e->smu);
	return idle;
}

/*
 * A checkpoint was installed while written batches waited for their
 * sync. Which segments it made unneeded must not be judged from the
 * index now: it holds those batches (a relocation out of a segment, an
 * expunge), and if their sync fails or the machine crashes, the
 * checkpoint still points into the segments they emptied. The writer
 * reclaims once it has drained the syncer (ckpt_reclaim_pending).
 */
static void
ckpt_defer_reclaim(struct engine *e, uint32_t seg, uint64_t lsn,
    uint64_t since)
{
	pthread_mutex_lock(&e->kmu);
	e->kreclaim = 1;
	e->rseg = seg;
	e->rlsn = lsn;
	e->rsince = since;
	pthread_mutex_unlock(&e->kmu);
}

/*
 * Segments the writer found unneeded go to the checkpointer thread to be
 * unlinked: unlinking and closing a 64 MiB segment took 50-100 ms on a
 * loaded host (stall-bench at ten million messages), and every delivery
 * waited behind the writer meanwhile. One list at a time; a second one
 * while the first waits is unlinked here after all.
 */
static void
reclaim_handoff(struct engine *e, struct seg **gone)
{
	if (gone != NULL && gone[0] != NULL) {
		pthread_mutex_lock(&e->kmu);
		if (e->kgone == NULL && !e->kstop) {
			e->kgone = gone;
			gone = NULL;
			pthread_cond_broadcast(&e->kcv);
		}
		pthread_mutex_unlock(&e->kmu);
	}
	store_reclaim(e, gone);
}

/* The writer, between batches: reclaim for a checkpoint installed
 * while batches were unsynced, once they are synced. */
static void
ckpt_reclaim_pending(struct engine *e)
{
	struct seg **gone = NULL;
	uint64_t lsn, since;
	uint32_t seg;
	int pending;

	pthread_mutex_lock(&e->kmu);
	pending = e->kreclaim;
	e->kreclaim = 0;
	seg = e->rseg;
	lsn = e->rlsn;
	since = e->rsince;
	pthread_mutex_unlock(&e->kmu);
	if (!pending)
		return;
	sync_drain(e);
	pthread_mutex_lock(&e->bmu);
	if (lsn >= e->ckpt_lsn)	/* not passed by one written since */
		gone = store_checkpoint_done(e, seg, lsn, since);
	pthread_mutex_unlock(&e->bmu);
	reclaim_handoff(e, gone);
}

/*
 * A checkpoint failed (its child could not write the file, or could not
 * be waited for). Retrying after every batch would fork and write the
 * whole index again and again; one started by the log's size waits 1 s,
 * then twice as long after each further failure, up to 5 minutes. An
 * ADMIN checkpoint is still tried at once. kmu held.
 */
static void
ckpt_back_off(struct engine *e)
{
	int64_t wait_ns = (int64_t)1000000000 << (e->kfails < 8 ?
	    e->kfails : 8);

	if (wait_ns > (int64_t)300 * 1000000000)
		wait_ns = (int64_t)300 * 1000000000;
	e->kfails++;
	e->kretry_ns = metrics_now_ns() + wait_ns;
	log_warn("checkpoint: failed %u time(s) in a row; the next one "
	    "started by the log's size waits %.0f s", e->kfails,
	    (double)wait_ns / 1e9);
}

/* Is a checkpoint started by the log's size to wait (ckpt_back_off)? */
static int
ckpt_backing_off(struct engine *e)
{
	int wait;

	pthread_mutex_lock(&e->kmu);
	wait = e->kretry_ns != 0 && metrics_now_ns() < e->kretry_ns;
	pthread_mutex_unlock(&e->kmu);
	return wait;
}

/* Wait for the child |pid|: 0, or the error it wrote the file with. */
static int
ckpt_reap(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(st))
		return WEXITSTATUS(st) ? -WEXITSTATUS(st) : 0;
	log_err("checkpoint child %d killed by signal %d", (int)pid,
	    WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return -EINTR;
}

/* The checkpointer thread: see the comment at the top. */
static void *
ckpter_main(void *arg)
{
	struct engine *e = arg;
	struct job *ck, *wait, *j, *next;
	struct ckplan *plan;
	struct seg **gone;
	uint64_t lsn, since;
	int64_t fork_ns, fork_cpu_ns, start_ns;
	uint32_t seg;
	pid_t pid;
	int fd, rc;

	pthread_mutex_lock(&e->kmu);
	for (;;) {
		while (!e->krunning && !e->kstop && e->kgone == NULL)
			pthread_cond_wait(&e->kcv, &e->kmu);
		if (e->kgone != NULL) {	/* reclaim_handoff */
			gone = e->kgone;
			e->kgone = NULL;
			pthread_mutex_unlock(&e->kmu);
			store_reclaim(e, gone);
			pthread_mutex_lock(&e->kmu);
			continue;
		}
		if (!e->krunning)
			break;
		pid = e->kpid;
		fd = e->kfd;
		plan = e->kplan;
		e->kplan = NULL;
		seg = e->kseg;
		lsn = e->klsn;
		since = e->ksince;
		fork_ns = e->kfork_ns;
		fork_cpu_ns = e->kfork_cpu_ns;
		start_ns = e->kstart_ns;
		ck = e->kjobs;
		e->kjobs = NULL;
		pthread_mutex_unlock(&e->kmu);
		rc = ckpt_reap(pid);
		if (rc < 0)
			e->media->ckpt_discard(e, fd);
		else
			rc = ckpt_install(e, plan, fd);
		ckpt_plan_free(plan);
		if (rc == 0) {
			gone = NULL;
			pthread_mutex_lock(&e->bmu);
			if (sync_idle(e))
				gone = store_checkpoint_done(e, seg, lsn, since);
			else
				ckpt_defer_reclaim(e, seg, lsn, since);
			pthread_mutex_unlock(&e->bmu);
			store_reclaim(e, gone);
			/* The fork's own CPU time tells a busy host from
			 * a large page table. */
			log_info("checkpoint at lsn %llu: fork %.2f ms (%.2f ms "
			    "of CPU), written in %.2f s by its own process",
			    (unsigned long long)lsn, (double)fork_ns / 1e6,
			    (double)fork_cpu_ns / 1e6,
			    (double)(metrics_now_ns() - start_ns) / 1e9);
		} else {
			log_err("checkpoint of %s at lsn %llu: %s", e->dir,
			    (unsigned long long)lsn, strerror(-rc));
		}
		compact_kick(e);
		/* Counted before it is answered: stats read after the
		 * answer include it. */
		pthread_mutex_lock(&e->kmu);
		if (rc == 0) {
			e->kdone++;
			e->kwrite_last_ns = metrics_now_ns() - start_ns;
			e->kfails = 0;
			e->kretry_ns = 0;
		} else {
			ckpt_back_off(e);
		}
		pthread_mutex_unlock(&e->kmu);
		ckpt_answer(e, ck, rc);
		pthread_mutex_lock(&e->kmu);
		wait = e->kwait;
		e->kwait = NULL;
		e->kwtail = &e->kwait;
		e->krunning = 0;
		e->kback = wait != NULL;
		pthread_cond_broadcast(&e->kcv);
		pthread_mutex_unlock(&e->kmu);
		/* Those asked meanwhile go back to the writer, which starts
		 * the next checkpoint for them; at the end, ckpt_idle()
		 * waits until they are in its queue. */
		for (j = wait; j; j = next) {
			next = j->next;
			engine_enqueue(&e->wq, j);
		}
		pthread_mutex_lock(&e->kmu);
		if (e->kback) {
			e->kback = 0;
			pthread_cond_broadcast(&e->kcv);
		}
	}
	pthread_mutex_unlock(&e->kmu);
	return NULL;
}

/* Wait until no checkpoint is being written (the writer, at the end). */
static void
ckpt_idle(struct engine *e)
{
	pthread_mutex_lock(&e->kmu);
	while (e->krunning || e->kback)
		pthread_cond_wait(&e->kcv, &e->kmu);
	pthread_mutex_unlock(&e->kmu);
}

/* Apply and write a batch of jobs in arrival order (|jobs| is newest
 * first, as collect_checkpoints leaves it). */
static void
run_jobs(struct engine *e, struct batch *b, struct job *jobs)
{
	struct job *rev = NULL, *j, *next;

	for (j = jobs; j; j = next) {
		next = j->next;
		j->next = rev;
		rev = j;
	}
	if (rev) {
		pthread_mutex_lock(&e->bmu);
		run_batch(e, b, rev);
		pthread_mutex_unlock(&e->bmu);
	}
}

static void *
writer_main(void *arg)
{
	struct engine *e = arg;
	struct batch b = { 0 };
	struct job *jobs, *ck, *rest, *last = NULL;
	int want_ckpt, rotate, rc;
	struct wclock t0;

	b.cap = 2 * BATCH_MAX + 8;
	b.iov = calloc((size_t)b.cap, sizeof *b.iov);
	b.arena_cap = ARENA_CAP;
	b.arena = malloc(b.arena_cap);
	b.scratch_cap = BATCH_MAX;
	b.scratch = calloc((size_t)b.scratch_cap, sizeof *b.scratch);
	if (b.iov == NULL || b.arena == NULL || b.scratch == NULL) {
		log_err("writer: out of memory");
		abort();
	}
	while ((jobs = jq_take(&e->wq, BATCH_MAX)) != NULL) {
		/* ADMIN "checkpoint" jobs and internal checkpoint requests
		 * are answered once a checkpoint taken after this batch is
		 * written. Keep the others in arrival order. */
		ck = collect_checkpoints(jobs, &rest);
		t0 = wclock_now();
		run_jobs(e, &b, rest);
		writer_slow(e, "writing a batch", t0);
		t0 = wclock_now();
		ckpt_reclaim_pending(e);
		writer_slow(e, "a reclaim after a checkpoint", t0);
		rotate = e->active->size >= e->conf.segment_size;
		want_ckpt = ck != NULL ||
		    (e->since_ckpt >= e->conf.checkpoint_bytes &&
		    !ckpt_backing_off(e));
		if (want_ckpt && ckpt_busy(e, ck))
			want_ckpt = 0;	/* |ck| waits for the next one */
		/* A new segment and a checkpoint start from a durable log. */
		t0 = wclock_now();
		if (rotate || want_ckpt)
			sync_drain(e);
		writer_slow(e, "waiting for the log's sync", t0);
		pthread_mutex_lock(&e->bmu);
		t0 = wclock_now();
		if (rotate && store_rotate(e) < 0)
			log_err("cannot start a new segment; staying on %s",
			    e->active->path);
		writer_slow(e, "a new segment", t0);
		t0 = wclock_now();
		if (want_ckpt)
			ckpt_start(e, ck);
		writer_slow(e, "starting a checkpoint", t0);
		pthread_mutex_unlock(&e->bmu);
	}
	/* The end: the running checkpoint first; what was asked for
	 * meanwhile is back in the queue, and the final checkpoint,
	 * written here, answers it. */
	ckpt_idle(e);
	while ((jobs = jq_take(&e->wq, BATCH_MAX)) != NULL) {
		ck = collect_checkpoints(jobs, &rest);
		run_jobs(e, &b, rest);
		while (ck) {
			jobs = ck->next;
			ck->next = last;
			last = ck;
			ck = jobs;
		}
	}
	sync_drain(e);
	rc = store_checkpoint(e);
	if (rc < 0)
		log_warn("final checkpoint failed; the next start replays "
		    "the log");
	ckpt_answer(e, last, rc);
	free(b.iov);
	free(b.arena);
	free(b.scratch);
	return NULL;
}

static void *
reader_main(void *arg)
{
	struct engine *e = arg;
	struct job *j;

	while ((j = jq_take(&e->rq, 1)) != NULL) {
		ops_read(e, j);
		complete(e, j);
	}
	return NULL;
}

static int
load_quotas(struct engine *e)
{
	char line[1024], name[MST_PATH_MAX + 1];
	unsigned long long bytes, msgs;
	struct quota_ovr *q;
	int lineno = 0;
	FILE *f;

	if (e->conf.quota_file == NULL)
		return 0;
	f = fopen(e->conf.quota_file, "r");
	if (f == NULL) {
		log_err("quota file %s: %s", e->conf.quota_file,
		    strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof line, f)) {
		lineno++;
		if (line[strspn(line, " \t")] == '#' ||
		    line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%4095s %llu %llu", name, &bytes, &msgs) != 3) {
			log_err("%s:%d: want 'MAILBOX BYTES MESSAGES'",
			    e->conf.quota_file, lineno);
			fclose(f);
			return -EINVAL;
		}
		q = calloc(1, sizeof *q + strlen(name) + 1);
		if (q == NULL) {
			fclose(f);
			return -ENOMEM;
		}
		strcpy(q->mailbox, name);
		q->bytes = bytes;
		q->msgs = msgs;
		q->next = e->quotas;
		e->quotas = q;
	}
	fclose(f);
	return 0;
}

int
engine_open_media(const struct engine_conf *c, const struct store_media *m,
    struct engine **out)
{
	struct engine *e = calloc(1, sizeof *e);
	pthread_rwlockattr_t ra;
	int i, rc;

	if (e == NULL)
		return -ENOMEM;
	e->conf = *c;
	e->media = m;
	e->lock_fd = e->log_dirfd = e->ckpt_fd = -1;
	e->dir = strdup(m == &store_files ? c->data_dir : m->name);
	pthread_rwlockattr_init(&ra);
	/* Readers must not starve the writer, or deliveries would wait. */
	pthread_rwlockattr_setkind_np(&ra,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->mu, &ra);
	pthread_rwlockattr_destroy(&ra);
	jq_init(&e->wq);
	jq_init(&e->rq);
	pthread_mutex_init(&e->cmu, NULL);
	pthread_cond_init(&e->ccv, NULL);
	pthread_mutex_init(&e->wmu, NULL);
	pthread_cond_init(&e->wcv, NULL);
	pthread_mutex_init(&e->bmu, NULL);
	pthread_mutex_init(&e->smu, NULL);
	pthread_cond_init(&e->scv, NULL);
	e->stail = &e->sjobs;
	pthread_mutex_init(&e->kmu, NULL);
	pthread_cond_init(&e->kcv, NULL);
	e->kwtail = &e->kwait;
	pthread_mutex_init(&e->spmu, NULL);
	pthread_cond_init(&e->spcv, NULL);
	e->spare_fd = -1;
	if (e->dir == NULL || ckstate_new(e) < 0) {
		free(e->dir);
		free(e);
		return -ENOMEM;
	}
	rc = load_quotas(e);
	if (rc == 0)
		rc = quota_set_load(e);
	if (rc == 0)
		rc = store_open(e);
	if (rc < 0) {
		store_close(e);
		engine_close(e);
		return rc;
	}
	log_info("store %s: %llu messages, %llu bytes, %llu mailboxes, lsn "
	    "%llu", e->dir, (unsigned long long)e->ix->msgs,
	    (unsigned long long)e->ix->bytes,
	    (unsigned long long)e->ix->nmbox, (unsigned long long)e->lsn);
	metrics_store(e->ix->msgs, e->ix->bytes, e->ix->nmbox);
	e->nreaders = c->readers > 0 ? c->readers : 2;
	e->readers = calloc((size_t)e->nreaders, sizeof *e->readers);
	rc = e->readers ? dio_thread_start(&e->writer, writer_main, e) :
	    -ENOMEM;
	if (rc < 0) {
		log_err("store %s: cannot start the writer thread: %s", e->dir,
		    strerror(-rc));
		/* No thread runs yet. engine_close joins every thread (and
		 * closes the store) when e->readers is set, so clear it:
		 * joining a thread never started is undefined behaviour. */
		free(e->readers);
		e->readers = NULL;
		store_close(e);
		engine_close(e);
		return rc;
	}
	if (dio_thread_start(&e->syncer, syncer_main, e) < 0 ||
	    dio_thread_start(&e->ckpter, ckpter_main, e) < 0)
		abort();	/* the writer's batches wait for them */
	for (i = 0; i < e->nreaders; i++)
		if (dio_thread_start(&e->readers[i], reader_main, e) < 0)
			abort();	/* cannot run without them */
	if (dio_thread_start(&e->compactor, compactor_main, e) < 0)
		abort();
	if (stage_start(e) < 0)
		abort();	/* staged bodies would hold quota for ever */
	if (spare_start(e) < 0)
		log_warn("store %s: cannot start the spare thread; segments "
		    "grow as they are written", e->dir);
	*out = e;
	return 0;
}

static int
local_open(const struct engine_conf *c, struct engine **out)
{
	return engine_open_media(c, &store_files, out);
}

void
engine_submit(struct engine *e, struct job *j)
{
	j->status = 0;
	j->kind = JK_OP;
	switch (j->op) {
	case MST_OP_DELIVER:
	case MST_OP_STAGE:
	case MST_OP_COMMIT:
	case MST_OP_SETINFO:
	case MST_OP_EXPUNGE:
	case MST_OP_MKDIR:
	case MST_OP_RMDIR:
	case MST_OP_PUT:
	case MST_OP_RENAME:
	case MST_OP_UNLINK:
	case MST_OP_SETATTR:
	case MST_OP_WRITE:
	case MST_OP_FSETATTR:
	case MST_OP_LINK:
	case MST_OP_OPEN:
	case MST_OP_CLOSE:
	case ENG_OP_CLOSE_OWNER:
		engine_enqueue(&e->wq, j);
		return;
	case MST_OP_ADMIN:
		if (j->req.admin.cmd.len == 10 &&
		    memcmp(j->req.admin.cmd.p, "checkpoint", 10) == 0) {
			engine_enqueue(&e->wq, j);
			return;
		}
		engine_enqueue(&e->rq, j);
		return;
	case MST_OP_LIST:
	case MST_OP_STAT:
	case MST_OP_FETCH:
	case MST_OP_LOOKUP:
	case MST_OP_READDIR:
	case MST_OP_GET:
	case MST_OP_STATFS:
	case MST_OP_WATCH:
	case MST_OP_GETATTR:
	case MST_OP_READ:
		engine_enqueue(&e->rq, j);
		return;
	}
	j->status = -EOPNOTSUPP;
	e->conf.done(e->conf.done_arg, j);
}

/* Threads first (the writer checkpoints on its way out), then files. */
void
engine_close(struct engine *e)
{
	struct quota_ovr *q;
	int i;

	if (e->readers) {
		stage_stop(e);		/* it feeds the writer too */
		/* The compactor feeds the writer: stop it first. */
		pthread_mutex_lock(&e->cmu);
		e->cstop = 1;
		pthread_cond_broadcast(&e->ccv);
		pthread_mutex_unlock(&e->cmu);
		pthread_join(e->compactor, NULL);
		jq_stop(&e->wq);
		pthread_join(e->writer, NULL);	/* drains the syncer */
		spare_stop(e);		/* no rotation after the writer */
		pthread_mutex_lock(&e->smu);
		e->sstop = 1;
		pthread_cond_broadcast(&e->scv);
		pthread_mutex_unlock(&e->smu);
		pthread_join(e->syncer, NULL);
		pthread_mutex_lock(&e->kmu);	/* idle: the writer waited */
		e->kstop = 1;
		pthread_cond_broadcast(&e->kcv);
		pthread_mutex_unlock(&e->kmu);
		pthread_join(e->ckpter, NULL);
		jq_stop(&e->rq);
		for (i = 0; i < e->nreaders; i++)
			pthread_join(e->readers[i], NULL);
		epoch_close(e);		/* every batch is durable now */
		store_close(e);
		orefs_free(e);
		log_info("store %s closed at lsn %llu", e->dir,
		    (unsigned long long)e->lsn);
	}
	while ((q = e->quotas) != NULL) {
		e->quotas = q->next;
		free(q);
	}
	free(e->readers);
	free(e->dir);
	free(e);
}

void
engine_internal(struct engine *e, struct job *j, struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	w->pending++;
	pthread_mutex_unlock(&w->mu);
	j->conn = w;
	engine_enqueue(&e->wq, j);
}

const struct engine_ops engine_local = {
	.name = "local",
	.open = local_open,
	.submit = engine_submit,
	.try_now = ops_try_now,
	.close = engine_close,
	.stage = 1,
};
