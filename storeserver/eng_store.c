/*
 * eng_store.c - the engine's segments and checkpoint, and replay of the
 * log after the checkpoint at start and after a failed write. Here too
 * their media for the local engine (store_files): segment files under
 * DIR/log, the checkpoint DIR/checkpoint, the lock DIR/LOCK; the memory
 * engine's media are in engine_memory.c.
 *
 * Durability order (what makes kill -9 safe):
 *  1. A batch is written at the end of the active segment, then one
 *     fdatasync covers it; only then are its jobs answered.
 *  2. A torn batch at the tail fails its record checksum at replay and
 *     is cut off: it was never acknowledged.
 *  3. A checkpoint is written to checkpoint.tmp, synced, renamed over
 *     checkpoint and the directory synced; it names the log position
 *     after the last synced batch, so replay starts there. (The writer
 *     takes it when every batch written is synced; a child process
 *     writes it, engine_local.c.) checkpoint.tmp is unlinked and made
 *     anew for each one, so a child left over from a killed mstored
 *     only ever writes to a file nobody will rename.
 *     A store whose ids span more than one shard checkpoints in parts
 *     (eng_ckpt.c): the parts go to new files under DIR/ckpt, synced
 *     with the directory before the manifest (checkpoint.tmp) is
 *     written; after the rename, files the manifest no longer names
 *     are unlinked.
 *  4. A segment is unlinked only when no live body or file block (of a
 *     named or open file) is in it and a checkpoint later than it
 *     exists, so replay never needs it. (Every part a manifest names
 *     holds the index at the manifest's one replay position.)
 *  5. Pre-written segments (segment_prealloc): a spare thread fills
 *     DIR/log/spare with zeros to segment_size and syncs it; a rotation
 *     first cuts the old segment to its log's end (ftruncate, synced),
 *     then renames the spare to the new segment's name and syncs the
 *     directory. So only the last segment can have a tail past its
 *     log, and that tail is zeros until written: its appends overwrite
 *     written blocks, and their fdatasync has no file growth for ext4
 *     to journal (on this machine 0.55-0.6x the time of an append's).
 *     Replay ends such a log at its first invalid record when every
 *     byte after it is zero. Anything else after it is a torn tail
 *     (cut) unless a valid record follows that is not torn: after a
 *     crash a pre-written tail may hold any mix of written and unwritten
 *     blocks, so each batch there opens with a MARK record saying how
 *     far the segment was synced (record.h), and a damaged record that
 *     a later MARK says was synced is damage: refuse to start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "diskio.h"
#include "eng.h"
#include "log.h"
#include "metrics.h"
#include "spent.h"
#include "checkpoint.h"

#define SCAN_BUF (4u << 20)
#define SPARE_NAME	"spare"
#define SPARE_CHUNK	(1u << 20)	/* zeros per write */
#define SPARE_PACE	(8u << 20)	/* written back before going on */
#define SPARE_RETRY_S	10		/* after a failure, or no room */

struct seg *
seg_new(struct engine *e, uint32_t no, int fd)
{
	char name[32];
	struct seg *s;
	struct stat st;
	size_t dl = strlen(e->dir);

	snprintf(name, sizeof name, SEG_NAME_FMT, no);
	s = calloc(1, sizeof *s + dl + 6 + strlen(name));
	if (s == NULL) {
		close(fd);
		return NULL;
	}
	sprintf(s->path, "%s/log/%s", e->dir, name);
	s->no = no;
	s->fd = fd;
	if (fstat(fd, &st) < 0) {
		log_err("fstat %s: %s", s->path, strerror(errno));
		close(fd);
		free(s);
		return NULL;
	}
	s->size = (uint64_t)st.st_size;
	atomic_init(&s->written, s->size);
	atomic_init(&s->refs, 1);
	return s;
}

/* store_files: the segment file |no| under DIR/log. */
static struct seg *
files_seg_open(struct engine *e, uint32_t no, int create)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof path, "%s/log/" SEG_NAME_FMT, e->dir, no);
	fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0),
	    0600);
	if (fd < 0) {
		log_err("open %s: %s", path, strerror(errno));
		return NULL;
	}
	return seg_new(e, no, fd);
}

struct seg *
seg_get(struct engine *e, uint32_t no)
{
	struct seg *s = no < e->nsegs ? e->segs[no] : NULL;

	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

void
seg_put(struct seg *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		close(s->fd);
		free(s);
	}
}

static int
seg_table_add(struct engine *e, struct seg *s)
{
	if (s->no >= e->nsegs) {
		uint32_t n = s->no + 64;
		struct seg **v = realloc(e->segs, n * sizeof *v);

		if (v == NULL)
			return -ENOMEM;
		memset(v + e->nsegs, 0, (n - e->nsegs) * sizeof *v);
		e->segs = v;
		e->nsegs = n;
	}
	e->segs[s->no] = s;
	return 0;
}

/*
 * Make [off, off + n) of |s| readable at *p_out through the window |buf|
 * (SCAN_BUF bytes holding the file from *wbase, *wlen of them), reading
 * ahead as far as the window and |file_end| allow: one pread per window,
 * not two per record. |n| <= SCAN_BUF. -EBADMSG when the file ends
 * before off + n (a torn record), or the read's own error: a failed
 * read says nothing about the bytes, so it must never pass for a torn
 * tail and have acknowledged records cut off.
 */
static int
scan_window(struct seg *s, uint8_t *buf, uint64_t *wbase, size_t *wlen,
    uint64_t off, size_t n, uint64_t file_end, uint8_t **p_out)
{
	size_t want;
	int rc;

	if (off < *wbase || off + n > *wbase + *wlen) {
		want = file_end - off < SCAN_BUF ? (size_t)(file_end - off) :
		    SCAN_BUF;
		*wbase = off;
		*wlen = 0;
		if (want < n)
			return -EBADMSG;
		rc = dio_pread_all(s->fd, buf, want, (off_t)off);
		if (rc < 0)
			return rc;
		*wlen = want;
	}
	*p_out = buf + (off - *wbase);
	return 0;
}

int
seg_scan(struct seg *s, uint64_t off, uint64_t max_rec, scan_fn *fn,
    void *arg, uint64_t *end_out)
{
	uint8_t *buf = malloc(SCAN_BUF), *big = NULL, *hdr, *payload;
	uint64_t sum, wbase = 0, file_end = s->size;
	size_t wlen = 0;
	struct rec r;
	int len, rc = 0;

	*end_out = off;
	if (buf == NULL)
		return -ENOMEM;
	while (off < file_end) {
		memset(&r, 0, sizeof r);
		rc = scan_window(s, buf, &wbase, &wlen, off, REC_HDR_LEN,
		    file_end, &hdr);
		if (rc < 0)
			break;
		len = rec_hdr_decode(&r, hdr, max_rec, &sum);
		if (len < 0 || (uint64_t)len > file_end - off - REC_HDR_LEN) {
			rc = -EBADMSG;
			break;
		}
		if ((size_t)len <= SCAN_BUF - REC_HDR_LEN) {
			/* The window may have moved to start at this
			 * record: take the header from there. */
			rc = scan_window(s, buf, &wbase, &wlen, off,
			    REC_HDR_LEN + (size_t)len, file_end, &hdr);
			if (rc < 0)
				break;
			payload = hdr + REC_HDR_LEN;
		} else {
			free(big);
			big = malloc((size_t)len);
			if (big == NULL) {
				rc = -ENOMEM;
				break;
			}
			payload = big;
			/* The file holds all of it (checked above). */
			rc = dio_pread_all(s->fd, payload, (size_t)len,
			    (off_t)(off + REC_HDR_LEN));
			if (rc < 0)
				break;
		}
		if (!rec_verify(hdr, payload, (size_t)len, sum) ||
		    rec_decode(&r, payload, (size_t)len) < 0) {
			rc = -EBADMSG;
			break;
		}
		rc = fn(arg, &r, payload, off);
		if (rc)
			break;
		off += REC_HDR_LEN + (uint64_t)len;
	}
	*end_out = off;
	free(big);
	free(buf);
	return rc;
}

struct replay {
	struct engine *e;
	struct seg *s;
	uint64_t n;
	int marked;		/* a MARK seen in this segment */
};

static int
replay_one(void *arg, struct rec *r, const uint8_t *payload, uint64_t off)
{
	struct replay *rp = arg;
	int rc;

	if (r->type == REC_MARK) {	/* nothing for the index */
		rp->marked = 1;
		return 0;
	}
	ckpt_note(rp->e, r);
	rc = index_apply(rp->e->ix, r, rp->s->no, off + REC_HDR_LEN +
	    r->body_off, payload + r->body_off);
	if (rc < 0) {
		log_err("replay %s at %llu: record lsn %llu type %u does not "
		    "fit the index: %s", rp->s->path, (unsigned long long)off,
		    (unsigned long long)r->lsn, r->type, strerror(-rc));
		return rc;
	}
	rp->n++;
	return 0;
}

/*
 * Is there any valid record after |off|? Then the damage is not a torn
 * tail but lost acknowledged data, and we must not cut it off. Every
 * byte offset is a candidate, so the tail is read through the scan
 * window: a pread per candidate made a torn 10 MB body take seconds to
 * get past at start. 1 or 0; when the tail cannot be read (or memory is
 * short) a negative errno, never 0: the question is unanswered, and the
 * caller refuses to start rather than cut what may be durable.
 *
 * With |want_mark| (a pre-written segment, invariant 5) the whole tail
 * is searched, and 1 means that a valid MARK record says that the
 * segment was synced beyond |off|: then |off| was durable and its
 * damage is not a torn write. Valid records of batches that no MARK
 * says were synced do not count: they are torn, like the one at |off|.
 */
static int
valid_record_after(struct seg *s, uint64_t off, uint64_t max_rec,
    int want_mark)
{
	uint8_t *buf = malloc(SCAN_BUF), *hdr, *p;
	uint64_t sum, pos, wbase = 0;
	size_t wlen = 0;
	struct rec r;
	int len, found = 0, rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	for (pos = off + 1; want_mark && pos + REC_HDR_LEN <= s->size; pos++) {
		rc = scan_window(s, buf, &wbase, &wlen, pos, REC_MARK_LEN,
		    s->size, &hdr);
		if (rc == -EBADMSG) {	/* too near the end for a MARK */
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		if (hdr[0] != (REC_MAGIC >> 24) || hdr[4] != REC_MARK)
			continue;
		memset(&r, 0, sizeof r);
		len = rec_hdr_decode(&r, hdr, max_rec, &sum);
		if (len == (int)(REC_MARK_LEN - REC_HDR_LEN) &&
		    rec_verify(hdr, hdr + REC_HDR_LEN, (size_t)len, sum) &&
		    rec_decode(&r, hdr + REC_HDR_LEN, (size_t)len) == 0 &&
		    r.synced > off) {
			found = 1;
			break;
		}
	}
	for (pos = off + 1; !want_mark && !found && rc == 0 &&
	    pos + REC_HDR_LEN <= s->size; pos++) {
		rc = scan_window(s, buf, &wbase, &wlen, pos, REC_HDR_LEN,
		    s->size, &hdr);
		if (rc < 0)
			break;
		len = rec_hdr_decode(&r, hdr, max_rec, &sum);
		if (len < 0 || (uint64_t)len > s->size - pos - REC_HDR_LEN)
			continue;
		if ((size_t)len <= SCAN_BUF - REC_HDR_LEN) {
			rc = scan_window(s, buf, &wbase, &wlen, pos,
			    REC_HDR_LEN + (size_t)len, s->size, &hdr);
			found = rc == 0 && rec_verify(hdr, hdr + REC_HDR_LEN,
			    (size_t)len, sum);
			continue;
		}
		p = malloc((size_t)len);
		rc = p ? dio_pread_all(s->fd, p, (size_t)len,
		    (off_t)(pos + REC_HDR_LEN)) : -ENOMEM;
		found = rc == 0 && rec_verify(hdr, p, (size_t)len, sum);
		free(p);
	}
	free(buf);
	return rc < 0 ? rc : found;
}

uint64_t
store_max_record(const struct engine *e)
{
	uint64_t ext = (uint64_t)REC_EXT_MAX * (8 + REC_BLOCK);

	return (e->conf.max_body > ext ? e->conf.max_body : ext) +
	    REC_FIXED_MAX;
}

/* Is every byte of |s| from |off| to its end zero? 1, 0, or a negative
 * errno. */
static int
tail_is_zero(struct seg *s, uint64_t off)
{
	uint8_t *buf = malloc(SCAN_BUF);
	size_t n, i;
	int rc = 1;

	if (buf == NULL)
		return -ENOMEM;
	for (; rc == 1 && off < s->size; off += n) {
		n = s->size - off < SCAN_BUF ? (size_t)(s->size - off) :
		    SCAN_BUF;
		if (dio_pread_all(s->fd, buf, n, (off_t)off) < 0) {
			rc = -EIO;
			break;
		}
		for (i = 0; i < n; i++)
			if (buf[i]) {
				rc = 0;
				break;
			}
	}
	free(buf);
	return rc;
}

/* Does |s| open with a valid MARK record (it was pre-written)? */
static int
seg_opens_with_mark(struct seg *s, uint64_t max_rec)
{
	uint8_t b[REC_MARK_LEN];
	struct rec r = { 0 };
	uint64_t sum;

	return s->size >= REC_MARK_LEN &&
	    dio_pread_all(s->fd, b, sizeof b, 0) == 0 &&
	    rec_hdr_decode(&r, b, max_rec, &sum) ==
	    (int)(REC_MARK_LEN - REC_HDR_LEN) && r.type == REC_MARK &&
	    rec_verify(b, b + REC_HDR_LEN, REC_MARK_LEN - REC_HDR_LEN, sum);
}

/*
 * The last segment's log ends at |end|, before its file does (invariant
 * 5 in the header). 1: the rest is zeros, a pre-written tail to keep;
 * 0: a torn tail to cut off (in a pre-written segment, also valid
 * records of batches never synced); -EUCLEAN: damage before records
 * that were durable; another negative errno: the tail cannot be read.
 */
static int
tail_kind(struct replay *rp, uint64_t end, uint64_t max_rec)
{
	int z, mark, rc;

	z = tail_is_zero(rp->s, end);
	if (z != 0)
		return z;
	mark = rp->marked || seg_opens_with_mark(rp->s, max_rec);
	if (mark)
		rp->marked = 1;
	rc = valid_record_after(rp->s, end, max_rec, mark);
	return rc < 0 ? rc : rc ? -EUCLEAN : 0;
}

/* Replay every segment from the checkpoint position; cut a torn tail. */
static int
replay(struct engine *e, uint32_t seg, uint64_t off)
{
	struct replay rp = { .e = e };
	uint64_t end, total = 0;
	uint32_t no, last = 0;
	int rc, kind = -EUCLEAN;

	/* Ask for the whole tail at once (advice: its failure is not an
	 * error): after a cold boot each 4 MiB window of seg_scan would
	 * otherwise wait for its read in turn. */
	for (no = seg; no < e->nsegs; no++)
		if (e->segs[no])
			(void)posix_fadvise(e->segs[no]->fd, (off_t)(no == seg ?
			    off : 0), 0, POSIX_FADV_WILLNEED);
	for (no = 0; no < e->nsegs; no++)
		if (e->segs[no])
			last = no;
	for (no = seg; no < e->nsegs; no++) {
		if ((rp.s = e->segs[no]) == NULL)
			continue;
		rp.marked = 0;
		rc = seg_scan(rp.s, no == seg ? off : 0, store_max_record(e),
		    replay_one, &rp, &end);
		total += end - (no == seg ? off : 0);
		if (rc == -EBADMSG && no == last)
			kind = tail_kind(&rp, end, store_max_record(e));
		if (rc == -EBADMSG && no == last && kind < 0 &&
		    kind != -EUCLEAN) {
			log_err("%s: bad record at %llu, and what follows it "
			    "cannot be read to tell a torn tail from damage: "
			    "%s: refusing to start", rp.s->path,
			    (unsigned long long)end, strerror(-kind));
			return kind;
		}
		rp.s->marked = rp.marked;
		if (rc == -EBADMSG && no == last && kind == 1) {
			log_info("%s: log ends at %llu of %llu pre-written "
			    "bytes", rp.s->path, (unsigned long long)end,
			    (unsigned long long)rp.s->size);
			rp.s->alloc = rp.s->size;
			rp.s->size = end;
			atomic_store(&rp.s->written, end);
			rp.s->marked = 1;
		} else if (rc == -EBADMSG && no == last && kind == 0) {
			log_warn("%s: torn tail at %llu (%llu bytes never "
			    "acknowledged), cut off", rp.s->path,
			    (unsigned long long)end,
			    (unsigned long long)(rp.s->size - end));
			if (ftruncate(rp.s->fd, (off_t)end) < 0)
				return -errno;
			/* dio_fdatasync returns its error and need not set
			 * errno (an injected one never does): -errno here
			 * was whatever an earlier call left, even 0. */
			rc = dio_fdatasync(rp.s->fd);
			if (rc < 0) {
				log_err("fdatasync %s after cutting its torn "
				    "tail: %s", rp.s->path, strerror(-rc));
				return rc;
			}
			rp.s->size = end;
			atomic_store(&rp.s->written, end);
		} else if (rc == -EBADMSG) {
			log_err("%s: damaged record at %llu: refusing to start "
			    "(run a scrub, restore the segment)", rp.s->path,
			    (unsigned long long)end);
			return -EUCLEAN;
		} else if (rc < 0) {
			log_err("%s: replay stopped at %llu: %s: refusing to "
			    "start", rp.s->path, (unsigned long long)end,
			    strerror(-rc));
			return rc;
		}
	}
	e->since_ckpt = total;
	e->lsn = e->ix->lsn;
	log_info("replayed %llu records (%llu log bytes) after checkpoint lsn "
	    "%llu", (unsigned long long)rp.n, (unsigned long long)total,
	    (unsigned long long)e->ckpt_lsn);
	return 0;
}

static void
apply_quotas(struct engine *e)
{
	struct quota_ovr *q;
	struct mbox *m;

	for (q = e->quotas; q; q = q->next) {
		m = index_mbox(e->ix, mst_str_of(q->mailbox), 1);
		if (m) {
			m->quota_bytes = q->bytes;
			m->quota_msgs = q->msgs;
		}
	}
}

int
store_ckpt_body(void *arg, uint32_t seg, uint64_t off, void *buf, size_t len)
{
	struct engine *e = arg;

	return body_read(seg < e->nsegs ? e->segs[seg] : NULL, off, 0, buf,
	    len);
}

/*
 * Where a start's time goes, for the log: wall clock against the CPU of
 * the process, what it read from the disk, and its context switches.
 * A wall time far above the CPU time with many preemptions (involuntary
 * switches) is a wait for a CPU on a loaded host; with many waits
 * (voluntary switches) and blocks read, a wait for the disk.
 */
struct start_clock {
	int64_t ns;
	struct rusage ru;
};

static void
start_clock_read(struct start_clock *c)
{
	c->ns = metrics_now_ns();
	/* RUSAGE_SELF with a valid buffer cannot fail. */
	(void)getrusage(RUSAGE_SELF, &c->ru);
}

static double
tv_diff(struct timeval a, struct timeval b)
{
	return (double)(b.tv_sec - a.tv_sec) +
	    (double)(b.tv_usec - a.tv_usec) / 1e6;
}

static void
start_clock_log(const struct engine *e, const char *what,
    const struct start_clock *a)
{
	struct start_clock b;

	start_clock_read(&b);
	log_info("%s: %s in %.2f s: CPU %.2f s user, %.2f s system; "
	    "%.1f MiB read from the disk; %ld waits, %ld preemptions",
	    e->dir, what, (double)(b.ns - a->ns) / 1e9,
	    tv_diff(a->ru.ru_utime, b.ru.ru_utime),
	    tv_diff(a->ru.ru_stime, b.ru.ru_stime),
	    (double)(b.ru.ru_inblock - a->ru.ru_inblock) * 512.0 / 1048576.0,
	    b.ru.ru_nvcsw - a->ru.ru_nvcsw, b.ru.ru_nivcsw - a->ru.ru_nivcsw);
}

/* Build the index from checkpoint + log into e->ix. */
static int
build_index(struct engine *e)
{
	struct start_clock t;
	uint32_t seg = 0;
	uint64_t off = 0;
	int fd, rc;

	e->ix = index_new(e->conf.quota_bytes, e->conf.quota_messages);
	if (e->ix == NULL)
		return -ENOMEM;
	spent_bounds(e->ix->spent, e->conf.spent_window, e->conf.spent_max);
	fd = e->media->ckpt_open(e);
	if (fd == -ENOENT)
		ckpt_load_none(e);
	if (fd >= 0) {
		start_clock_read(&t);
		rc = ckpt_load(e, fd, &seg, &off);
		close(fd);
		if (rc < 0) {
			log_err("%s/checkpoint: %s: refusing to start", e->dir,
			    strerror(-rc));
			return rc;
		}
		start_clock_log(e, "checkpoint loaded", &t);
	} else if (fd != -ENOENT) {
		return fd;
	}
	e->ckpt_seg = seg;
	e->ckpt_lsn = e->ix->lsn;
	apply_quotas(e);
	start_clock_read(&t);
	rc = replay(e, seg, off);
	if (rc == 0)
		start_clock_log(e, "log replayed", &t);
	if (rc == 0)
		index_mbox_sweep(e->ix);
	if (rc == 0)
		stage_rebuild(e);
	if (rc == 0)
		index_settle(e->ix);
	return rc;
}

int
store_reload(struct engine *e)
{
	int rc;

	index_free(e->ix);
	e->ix = NULL;
	rc = build_index(e);
	return rc ? rc : epoch_start(e, 1);
}

static int
files_open_segments(struct engine *e)
{
	char path[PATH_MAX];
	struct dirent *d;
	struct seg *s;
	unsigned no;
	char tail;
	DIR *dp;
	int rc = 0;

	snprintf(path, sizeof path, "%s/log", e->dir);
	dp = opendir(path);
	if (dp == NULL)
		return -errno;
	while (rc == 0 && (d = readdir(dp)) != NULL) {
		if (sscanf(d->d_name, "%8x.se%c", &no, &tail) != 2 ||
		    tail != 'g' || strlen(d->d_name) != 12)
			continue;
		s = files_seg_open(e, no, 0);
		rc = s ? seg_table_add(e, s) : -EIO;
		if (rc < 0)
			seg_put(s);
		else if (e->active == NULL || no > e->active->no)
			e->active = s;
	}
	closedir(dp);
	return rc;
}

int
store_rotate(struct engine *e)
{
	struct seg *s, *a = e->active;
	int rc;

	/* Invariant 5: only the last segment has a tail past its log. */
	if (a && a->alloc > a->size) {
		if (ftruncate(a->fd, (off_t)a->size) < 0 ||
		    fdatasync(a->fd) < 0) {
			log_err("cut %s to %llu: %s", a->path,
			    (unsigned long long)a->size, strerror(errno));
			return -EIO;
		}
		a->alloc = 0;
	}
	s = e->media->seg_create(e, a ? a->no + 1 : 1);
	if (s == NULL)
		return -EIO;
	pthread_rwlock_wrlock(&e->mu);
	rc = seg_table_add(e, s);
	if (rc == 0)
		e->active = s;
	pthread_rwlock_unlock(&e->mu);
	if (rc < 0)
		seg_put(s);
	return rc;
}

/* store_files: DIR/log, DIR/LOCK held with flock, the segments. */
static int
files_attach(struct engine *e)
{
	char path[PATH_MAX];
	int rc;

	snprintf(path, sizeof path, "%s/log", e->dir);
	if ((mkdir(e->dir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(path, 0700) < 0 && errno != EEXIST)) {
		rc = -errno;
		log_err("mkdir %s: %s", path, strerror(errno));
		return rc;
	}
	e->log_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof path, "%s/LOCK", e->dir);
	e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (e->log_dirfd < 0 || e->lock_fd < 0) {
		rc = -errno;
		log_err("open %s: %s", path, strerror(errno));
		return rc;
	}
	if (flock(e->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		log_err("%s is in use by another mstored", e->dir);
		return -EBUSY;
	}
	rc = ckpt_files_attach(e);
	return rc < 0 ? rc : files_open_segments(e);
}

int
store_open(struct engine *e)
{
	struct start_clock t;
	int rc;

	start_clock_read(&t);
	rc = e->media->attach(e);
	if (rc == 0)
		rc = build_index(e);
	if (rc == 0)
		ckpt_opened(e);
	if (rc == 0)
		rc = epoch_start(e, 0);
	if (rc == 0 && e->active == NULL)
		rc = store_rotate(e);
	if (rc == 0)
		start_clock_log(e, "store opened", &t);
	/* Loading freed its buffers inside the heap, whose 2 MiB pages
	 * (main.c) keep them resident: about 6 MiB at ten million
	 * messages, 0.6 bytes a message. Give those pages back. */
	(void)malloc_trim(0);	/* 1 or 0: released or nothing to */
	return rc;
}

/*
 * The spare under the name of segment |no|, if one is ready: its
 * descriptor, or -1. Renamed under spmu so that the spare thread never
 * makes the next one under the old name meanwhile.
 */
static int
spare_take(struct engine *e, uint32_t no)
{
	char from[PATH_MAX], to[PATH_MAX];
	int fd = -1;

	if (!e->spare_on)
		return -1;
	snprintf(from, sizeof from, "%s/log/" SPARE_NAME, e->dir);
	snprintf(to, sizeof to, "%s/log/" SEG_NAME_FMT, e->dir, no);
	pthread_mutex_lock(&e->spmu);
	if (e->spare_fd >= 0) {
		if (rename(from, to) == 0) {
			fd = e->spare_fd;
			e->spare_used++;
		} else {
			log_warn("rename %s to %s: %s", from, to,
			    strerror(errno));
			close(e->spare_fd);
			(void)unlink(from);
		}
		e->spare_fd = -1;
		pthread_cond_broadcast(&e->spcv);	/* make the next */
	}
	pthread_mutex_unlock(&e->spmu);
	return fd;
}

/* store_files: a new segment file, pre-written when a spare is ready,
 * and its name synced in DIR/log. */
static struct seg *
files_seg_create(struct engine *e, uint32_t no)
{
	int fd = spare_take(e, no);
	struct seg *s = fd >= 0 ? seg_new(e, no, fd) : files_seg_open(e, no, 1);

	if (s != NULL && fd >= 0) {
		s->alloc = s->size;
		s->size = 0;
		atomic_store(&s->written, 0);
		s->marked = 1;
	}
	if (s != NULL && fsync(e->log_dirfd) < 0) {
		log_err("fsync %s/log: %s", e->dir, strerror(errno));
		seg_put(s);
		return NULL;
	}
	return s;
}

static void
files_seg_remove(struct engine *e, struct seg *s)
{
	(void)e;
	if (unlink(s->path) < 0)
		log_warn("unlink %s: %s", s->path, strerror(errno));
	else
		log_info("segment %s reclaimed", s->path);
}

static int
files_ckpt_open(struct engine *e)
{
	char path[PATH_MAX];
	int fd, rc;

	snprintf(path, sizeof path, "%s/checkpoint", e->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		rc = -errno;
		log_err("open %s: %s", path, strerror(errno));
		return rc;
	}
	return fd < 0 ? -ENOENT : fd;
}

static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* store_files: a fresh DIR/checkpoint.tmp (see invariant 3). */
static int
files_ckpt_create(struct engine *e)
{
	char tmp[PATH_MAX];
	int fd, rc;

	snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", e->dir);
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		log_err("unlink %s: %s", tmp, strerror(errno));
		return rc;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		log_err("open %s: %s", tmp, strerror(errno));
		return rc;
	}
	return fd;
}

/* store_files: checkpoint.tmp (written and synced) renamed over
 * checkpoint, the directory synced (invariant 3). */
static int
files_ckpt_install(struct engine *e, int fd)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	int rc = 0;

	close(fd);
	snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", e->dir);
	snprintf(path, sizeof path, "%s/checkpoint", e->dir);
	if (rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(e->dir);
	return rc;
}

static void
files_ckpt_discard(struct engine *e, int fd)
{
	char tmp[PATH_MAX];

	close(fd);
	snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", e->dir);
	if (unlink(tmp) < 0 && errno != ENOENT)
		log_warn("unlink %s: %s", tmp, strerror(errno));
}

static int
files_space(struct engine *e, uint64_t *total_out, uint64_t *free_out)
{
	struct statvfs sv;

	if (statvfs(e->dir, &sv) < 0)
		return -errno;
	*total_out = (uint64_t)sv.f_blocks * sv.f_frsize;
	*free_out = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

static void
files_detach(struct engine *e)
{
	if (e->log_dirfd >= 0)
		close(e->log_dirfd);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
	e->log_dirfd = e->lock_fd = -1;
}

const struct store_media store_files = {
	.name = "files",
	.attach = files_attach,
	.seg_create = files_seg_create,
	.seg_remove = files_seg_remove,
	.ckpt_open = files_ckpt_open,
	.ckpt_create = files_ckpt_create,
	.ckpt_install = files_ckpt_install,
	.ckpt_discard = files_ckpt_discard,
	.space = files_space,
	.detach = files_detach,
};

/*
 * A checkpoint naming |seg| (the replay position's segment), taken at
 * |lsn| when |since| log bytes had been written since the last one, is
 * installed. Segments older than it with nothing live in them are no
 * longer needed (invariant 4): they leave the table under the rwlock
 * and are returned, NULL-terminated, for store_reclaim() to unlink once
 * the caller lets the writer go on (unlinking 64 MiB can take 100 ms).
 * The writer is between batches (bmu held, or the writer itself).
 */
struct seg **
store_checkpoint_done(struct engine *e, uint32_t seg, uint64_t lsn,
    uint64_t since)
{
	struct seg **gone = calloc((size_t)e->nsegs + 1, sizeof *gone);
	uint32_t no, n = 0;

	e->ckpt_seg = seg;
	e->ckpt_lsn = lsn;
	e->since_ckpt = e->since_ckpt > since ? e->since_ckpt - since : 0;
	if (gone == NULL)
		return NULL;	/* reclaimed after the next one */
	pthread_rwlock_wrlock(&e->mu);
	for (no = 0; no < seg && no < e->nsegs; no++) {
		if (e->segs[no] && e->segs[no] != e->active &&
		    index_seg_live(e->ix, no) == 0) {
			gone[n++] = e->segs[no];
			e->segs[no] = NULL;
		}
	}
	pthread_rwlock_unlock(&e->mu);
	return gone;
}

void
store_reclaim(struct engine *e, struct seg **gone)
{
	size_t i;

	for (i = 0; gone && gone[i]; i++) {
		e->media->seg_remove(e, gone[i]);
		seg_put(gone[i]);
	}
	free(gone);
}

/* Write a checkpoint here and now, on the caller's thread: the writer
 * at the end, or when no child can be forked. */
int
store_checkpoint(struct engine *e)
{
	struct index_saver *sv = index_saver_new();
	struct ckplan *p = sv ? ckpt_plan(e, sv) : NULL;
	uint32_t seg = e->active->no;
	int fd, rc;

	fd = p ? e->media->ckpt_create(e) : -ENOMEM;
	if (fd < 0) {
		ckpt_plan_free(p);
		index_saver_free(sv);
		return fd;
	}
	rc = ckpt_write(e, p, sv, fd, seg, e->active->size, 0);
	if (rc < 0) {
		e->media->ckpt_discard(e, fd);
	} else {
		rc = ckpt_install(e, p, fd);
	}
	ckpt_plan_free(p);
	index_saver_free(sv);
	if (rc < 0) {
		log_err("checkpoint of %s: %s", e->dir, strerror(-rc));
		return rc;
	}
	store_reclaim(e, store_checkpoint_done(e, seg, e->ix->lsn,
	    e->since_ckpt));
	log_info("checkpoint at lsn %llu: %llu messages, %llu nodes",
	    (unsigned long long)e->ckpt_lsn,
	    (unsigned long long)e->ix->msgs, (unsigned long long)e->ix->nodes);
	return 0;
}

void
store_close(struct engine *e)
{
	uint32_t no;

	for (no = 0; no < e->nsegs; no++)
		seg_put(e->segs[no]);
	free(e->segs);
	e->segs = NULL;
	index_free(e->ix);
	e->ix = NULL;
	stage_free(e);
	e->media->detach(e);
	ckstate_free(e);
}

unsigned
body_view(struct engine *e)
{
	return atomic_load(&e->rolled);
}

/* roll_back counts the roll back, under the write lock, before it cuts
 * the file: a reader that read cut or rewritten bytes sees it here. */
int
body_moved(struct engine *e, unsigned view)
{
	return atomic_load(&e->rolled) != view;
}

int
body_wait(struct engine *e, struct seg *s, uint64_t end, unsigned view)
{
	struct timespec ts;
	uint64_t gen;
	int ok, moved;

	if (body_moved(e, view))
		return -EAGAIN;
	if (s == NULL || atomic_load(&s->written) >= end)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;	/* a batch takes milliseconds: a safety net */
	pthread_mutex_lock(&e->wmu);
	gen = e->wgen;
	/* The record is in the batch being written now: when that batch
	 * ends (gen moves on), it is either in the file or gone. A roll
	 * back that ended before gen was read is seen by body_moved: the
	 * place may have been a relocation's, cut with it. */
	while (atomic_load(&s->written) < end && e->wgen == gen &&
	    !body_moved(e, view) &&
	    pthread_cond_timedwait(&e->wcv, &e->wmu, &ts) == 0)
		;
	ok = atomic_load(&s->written) >= end;
	moved = body_moved(e, view);
	pthread_mutex_unlock(&e->wmu);
	return moved ? -EAGAIN : ok ? 0 : -ENOENT;
}

int
body_read(struct seg *s, uint64_t seg_off, uint64_t off, void *buf,
    size_t len)
{
	if (s == NULL)
		return -EIO;
	return dio_pread_body(s->fd, buf, len, (off_t)(seg_off + off));
}

/* Runs for every GET and FETCH from offset 0, so the buffer is only as
 * large as the body (most are a few KiB): a fixed 1 MiB one can cost an
 * mmap and munmap per read, and under ASan it made reads of small
 * messages about 20 times slower. */
int
body_verify(struct seg *s, uint64_t seg_off, uint64_t size, uint64_t checksum)
{
	size_t chunk = size < (1u << 20) ? (size ? (size_t)size : 1) :
	    1u << 20, n;
	uint8_t *buf = malloc(chunk);
	XXH3_state_t st;
	uint64_t off;
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	XXH3_64bits_reset(&st);
	for (off = 0; rc == 0 && off < size; off += n) {
		n = size - off < chunk ? (size_t)(size - off) : chunk;
		rc = body_read(s, seg_off, off, buf, n);
		if (rc == 0)
			XXH3_64bits_update(&st, buf, n);
	}
	free(buf);
	if (rc == 0 && XXH3_64bits_digest(&st) != checksum)
		rc = -EIO;
	return rc;
}

/* Enough room for a spare and the reserve, with one segment to spare? */
static int
spare_room(struct engine *e, uint64_t size)
{
	uint64_t total, freeb;

	if (e->media->space(e, &total, &freeb) < 0)
		return 0;
	return freeb > e->conf.reserve_bytes + 2 * size;
}

/* DIR/log/spare, |size| bytes of zeros written and synced: its
 * descriptor, or a negative errno (logged, but not when stopped). */
static int
spare_fill(struct engine *e, uint64_t size)
{
	char path[PATH_MAX];
	uint8_t *zero = calloc(1, SPARE_CHUNK);
	uint64_t off = 0;
	ssize_t w;
	int fd, rc = 0, stop;

	snprintf(path, sizeof path, "%s/log/" SPARE_NAME, e->dir);
	if (zero == NULL)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		log_warn("open %s: %s", path, strerror(errno));
		free(zero);
		return rc;
	}
	while (rc == 0 && off < size) {
		pthread_mutex_lock(&e->spmu);
		stop = e->spare_stop;
		pthread_mutex_unlock(&e->spmu);
		if (stop) {
			rc = -ECANCELED;
			break;
		}
		w = pwrite(fd, zero, size - off < SPARE_CHUNK ?
		    (size_t)(size - off) : SPARE_CHUNK, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		off += (uint64_t)w;
		/* Paced, so that the log's syncs do not queue behind a
		 * whole segment of zeros. */
		if (off % SPARE_PACE == 0 && sync_file_range(fd,
		    (off_t)(off - SPARE_PACE), SPARE_PACE,
		    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		    SYNC_FILE_RANGE_WAIT_AFTER) < 0)
			rc = -errno;
	}
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	free(zero);
	if (rc < 0) {
		if (rc != -ECANCELED)
			log_warn("making %s: %s", path, strerror(-rc));
		close(fd);
		(void)unlink(path);
		return rc;
	}
	return fd;
}

/* The spare thread: keeps one spare ready (invariant 5). */
static void *
spare_main(void *arg)
{
	struct engine *e = arg;
	uint64_t size = e->conf.segment_size;
	struct timespec ts;
	int fd;

	pthread_mutex_lock(&e->spmu);
	while (!e->spare_stop) {
		if (e->spare_fd >= 0) {
			pthread_cond_wait(&e->spcv, &e->spmu);
			continue;
		}
		pthread_mutex_unlock(&e->spmu);
		fd = spare_room(e, size) ? spare_fill(e, size) : -ENOSPC;
		pthread_mutex_lock(&e->spmu);
		if (fd >= 0 && e->spare_stop) {
			close(fd);
		} else if (fd >= 0) {
			e->spare_fd = fd;
			e->spare_made++;
		} else if (!e->spare_stop) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += SPARE_RETRY_S;
			(void)pthread_cond_timedwait(&e->spcv, &e->spmu, &ts);
		}
	}
	pthread_mutex_unlock(&e->spmu);
	return NULL;
}

int
spare_start(struct engine *e)
{
	char path[PATH_MAX];
	int rc;

	if (e->media != &store_files)
		return 0;
	/* One left by an earlier run may not be whole: make it anew. */
	snprintf(path, sizeof path, "%s/log/" SPARE_NAME, e->dir);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("unlink %s: %s", path, strerror(errno));
	if (!e->conf.segment_prealloc)
		return 0;
	rc = dio_thread_start(&e->spare_t, spare_main, e);
	if (rc == 0)
		e->spare_on = 1;
	return rc;
}

void
spare_stop(struct engine *e)
{
	char path[PATH_MAX];

	if (!e->spare_on)
		return;
	pthread_mutex_lock(&e->spmu);
	e->spare_stop = 1;
	pthread_cond_broadcast(&e->spcv);
	pthread_mutex_unlock(&e->spmu);
	pthread_join(e->spare_t, NULL);
	e->spare_on = 0;
	if (e->spare_fd >= 0) {
		close(e->spare_fd);
		e->spare_fd = -1;
	}
	snprintf(path, sizeof path, "%s/log/" SPARE_NAME, e->dir);
	(void)unlink(path);
}
