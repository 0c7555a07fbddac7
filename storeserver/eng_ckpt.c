/*
 * eng_ckpt.c - incremental checkpoints: which parts of the index a
 * checkpoint writes, the part files under DIR/ckpt, and the table of
 * the files the installed manifest names. The layout is checkpoint.c's
 * (checkpoint.h); the fork, the child and the checkpointer thread are
 * engine_local.c's. Never removes a part file that the manifest on the
 * disk names.
 *
 * The index's ids are cut into shards of |per| ids. Every record applied
 * (live, and at replay) marks the shards of the ids it names with its
 * lsn (ckpt_note); a removal also marks the spent ids. A checkpoint
 * taken at lsn L writes a new file for each shard marked after the lsn
 * of the file the manifest names for it, and names the other files
 * again: a shard with no mark since its file was written holds at L
 * exactly what the file holds. So the manifest describes the index at
 * L, and restart loads it and replays from L, as with a whole-index
 * checkpoint. Ids are handed out in order, so new mail lands in the
 * last shard or two; flag changes and expunges of old mail mark the
 * shards they touch.
 *
 * Crash safety (eng_store.c, invariant 3, extended): the child writes
 * each part to a new file named by its shard and the checkpoint's
 * generation (unlinked first, so a child left over from a killed
 * mstored never writes into a file this one will name), syncs it,
 * syncs DIR/ckpt, then writes and syncs the manifest as checkpoint.tmp;
 * the checkpointer renames it over DIR/checkpoint and syncs DIR; only
 * then are part files the new manifest does not name unlinked. A crash
 * at any step leaves either manifest whole with every file it names.
 * Segment reclaim is unchanged: the manifest names one replay position,
 * and every part it names holds the index at that position.
 *
 * Locking: |mu| guards the table of named files (cur, gen, full) and
 * the files themselves: the checkpointer installs and sweeps under it,
 * a load (open, roll back under bmu) reads under it, the writer plans
 * under it. |changed| is the writer's (and the loader's, writer
 * stopped); the arrays grow only under mu. Lock order: bmu before mu.
 *
 * A store whose ids all fit one shard, and the memory engine (no
 * directory for parts), keep writing one whole-index checkpoint.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "diskio.h"
#include "eng.h"
#include "log.h"
#include "spent.h"

#define PART_NAME_LEN	25	/* "%08x-%016llx" */

struct ckstate {
	pthread_mutex_t mu;
	int dirfd;		/* DIR/ckpt; -1: whole checkpoints only */
	uint64_t per;		/* ids per shard */
	uint64_t gen;		/* installed manifest's; 0: none or whole */
	int full;		/* the next one writes every part */
	uint32_t n, cap;	/* shards in cur and changed */
	struct index_part *cur;	/* by shard: named file (gen 0: none) */
	uint64_t *changed;	/* by shard: last record's lsn; writer */
	struct index_part spent;
	uint64_t spent_changed;
	/* The last checkpoint's account, for stats; mu. */
	uint64_t last_bytes, last_parts, last_named;
};

/*
 * What one checkpoint writes, in a shared mapping so that a forked
 * child's results (each part's entry) reach the parent. The parent
 * fills it before the fork; parts[n] is the spent ids'.
 */
struct ckplan {
	size_t len;		/* of the mapping */
	uint64_t gen, per, lsn;
	int whole;		/* one whole-index file (MSCKPT03) */
	uint32_t n;
	uint64_t bytes;		/* written, parts and manifest */
	uint32_t written;	/* part files written */
	uint8_t *dirty;		/* n + 1 */
	struct index_part parts[];	/* n + 1 */
};

int
ckstate_new(struct engine *e)
{
	struct ckstate *ks = calloc(1, sizeof *ks);

	if (ks == NULL)
		return -ENOMEM;
	pthread_mutex_init(&ks->mu, NULL);
	ks->dirfd = -1;
	ks->per = e->conf.checkpoint_part_ids ? e->conf.checkpoint_part_ids :
	    INDEX_PART_IDS;
	e->ks = ks;
	return 0;
}

void
ckstate_free(struct engine *e)
{
	struct ckstate *ks = e->ks;

	if (ks == NULL)
		return;
	if (ks->dirfd >= 0)
		close(ks->dirfd);
	free(ks->cur);
	free(ks->changed);
	pthread_mutex_destroy(&ks->mu);
	free(ks);
	e->ks = NULL;
}

int
ckpt_files_attach(struct engine *e)
{
	char path[PATH_MAX];
	int rc;

	snprintf(path, sizeof path, "%s/ckpt", e->dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		log_err("mkdir %s: %s", path, strerror(errno));
		return rc;
	}
	e->ks->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->ks->dirfd < 0) {
		rc = -errno;
		log_err("open %s: %s", path, strerror(errno));
		return rc;
	}
	return 0;
}

int
ckpt_dirfd(const struct engine *e)
{
	return e->ks->dirfd;
}

/* Room for shard |k| in the tables (mu held): 0 or -ENOMEM. */
static int
ks_grow(struct ckstate *ks, uint64_t k)
{
	struct index_part *cur;
	uint64_t *ch;
	uint32_t cap;

	if (k < ks->n)
		return 0;
	if (k >= UINT32_MAX - 1)
		return -ENOMEM;
	if (k >= ks->cap) {
		cap = ks->cap ? ks->cap : 64;
		while (cap <= k)
			cap = cap > UINT32_MAX / 2 ? UINT32_MAX - 1 : cap * 2;
		cur = realloc(ks->cur, cap * sizeof *cur);
		if (cur == NULL)
			return -ENOMEM;
		ks->cur = cur;
		ch = realloc(ks->changed, cap * sizeof *ch);
		if (ch == NULL)
			return -ENOMEM;
		ks->changed = ch;
		ks->cap = cap;
	}
	/* A shard never seen had nothing in it at the last checkpoint. */
	memset(ks->cur + ks->n, 0, (k + 1 - ks->n) * sizeof *ks->cur);
	memset(ks->changed + ks->n, 0, (k + 1 - ks->n) * sizeof *ks->changed);
	ks->n = (uint32_t)k + 1;
	return 0;
}

static void
note_id(struct ckstate *ks, uint64_t id, uint64_t lsn)
{
	uint64_t k = id / ks->per;
	int rc;

	if (id >= INDEX_ID_LIMIT)
		return;		/* index_apply refuses the record */
	if (k >= ks->n) {
		pthread_mutex_lock(&ks->mu);
		rc = ks_grow(ks, k);
		if (rc < 0)
			ks->full = 1;	/* cannot tell: write them all */
		pthread_mutex_unlock(&ks->mu);
		if (rc < 0)
			return;
	}
	if (lsn > ks->changed[k])
		ks->changed[k] = lsn;
}

void
ckpt_note(struct engine *e, const struct rec *r)
{
	struct ckstate *ks = e->ks;

	note_id(ks, r->id, r->lsn);
	if (r->replaced)
		note_id(ks, r->replaced, r->lsn);
	switch (r->type) {
	case REC_MOVE:
	case REC_RENAME:
	case REC_REMOVE:
	case REC_UNLINK:		/* may drop a delivered message */
		if (r->lsn > ks->spent_changed)
			ks->spent_changed = r->lsn;
		break;
	default:
		break;
	}
}

/* "%08x-%016llx" of |shard| and |gen|, by hand: a forked child names
 * its files, and printf may take locks. */
static void
part_name(char *buf, uint32_t shard, uint64_t gen)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 8; i++)
		buf[i] = hex[(shard >> (28 - 4 * i)) & 15];
	buf[8] = '-';
	for (i = 0; i < 16; i++)
		buf[9 + i] = hex[(gen >> (60 - 4 * i)) & 15];
	buf[PART_NAME_LEN] = '\0';
}

/* index_load_ckpt's opener of parts. */
static int
part_open(void *arg, uint32_t shard, uint64_t gen)
{
	struct engine *e = arg;
	char name[PART_NAME_LEN + 1];
	int fd, rc;

	if (e->ks->dirfd < 0)
		return -ENOENT;
	part_name(name, shard, gen);
	fd = openat(e->ks->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err("open %s/ckpt/%s: %s", e->dir, name, strerror(errno));
		return rc;
	}
	return fd;
}

/* Unlink every part file the installed manifest does not name: those a
 * newer one replaced, and those of a checkpoint that never got
 * installed. mu held. */
static void
sweep(struct engine *e)
{
	struct ckstate *ks = e->ks;
	unsigned long long gen;
	struct dirent *d;
	unsigned shard;
	int fd, keep, n = 0;
	DIR *dp;

	if (ks->dirfd < 0 || (fd = dup(ks->dirfd)) < 0)
		return;
	dp = fdopendir(fd);
	if (dp == NULL) {
		close(fd);
		return;
	}
	rewinddir(dp);
	while ((d = readdir(dp)) != NULL) {
		if (strlen(d->d_name) != PART_NAME_LEN ||
		    sscanf(d->d_name, "%8x-%16llx", &shard, &gen) != 2)
			continue;
		if (shard == INDEX_PART_SPENT)
			keep = ks->spent.gen == gen;
		else
			keep = shard < ks->n && ks->cur[shard].gen == gen;
		if (keep || gen == 0)
			continue;
		if (unlinkat(ks->dirfd, d->d_name, 0) < 0)
			log_warn("unlink %s/ckpt/%s: %s", e->dir, d->d_name,
			    strerror(errno));
		else
			n++;
	}
	closedir(dp);
	if (n)
		log_info("checkpoint: %d part file(s) no longer named removed",
		    n);
}

int
ckpt_load(struct engine *e, int fd, uint32_t *seg_out, uint64_t *off_out)
{
	struct ckstate *ks = e->ks;
	struct index_ckpt ck;
	uint32_t i;
	int rc;

	pthread_mutex_lock(&ks->mu);
	rc = index_load_ckpt(e->ix, fd, store_ckpt_body, e, part_open, e, seg_out,
	    off_out, &ck);
	if (rc < 0)
		goto out;
	/* Every shard is as its file, or empty, at the manifest's lsn. */
	ks->n = 0;
	ks->gen = ck.gen;
	ks->full = ck.gen == 0 || ck.per != ks->per;
	ks->spent = (struct index_part){ .shard = INDEX_PART_SPENT,
		.lsn = e->ix->lsn };
	ks->spent_changed = 0;
	if (ks_grow(ks, (e->ix->next_id + ks->per - 1) / ks->per) < 0) {
		ks->full = 1;
		ks->n = 0;
	}
	for (i = 0; i < ks->n; i++)
		ks->cur[i] = (struct index_part){ .shard = i,
			.lsn = e->ix->lsn };
	for (i = 0; i < ck.nparts && !ks->full; i++) {
		if (ck.parts[i].shard == INDEX_PART_SPENT)
			ks->spent = ck.parts[i];
		else if (ck.parts[i].shard < ks->n)
			ks->cur[ck.parts[i].shard] = ck.parts[i];
		else
			ks->full = 1;	/* beyond next_id: damage */
	}
	ks->last_named = ks->full ? 0 : ck.nparts;
	if (ks->full) {
		ks->gen = 0;
		if (ks->n)
			memset(ks->cur, 0, ks->n * sizeof *ks->cur);
		ks->spent.gen = 0;
	}
	free(ck.parts);
out:
	pthread_mutex_unlock(&ks->mu);
	return rc;
}

void
ckpt_load_none(struct engine *e)
{
	struct ckstate *ks = e->ks;

	pthread_mutex_lock(&ks->mu);
	ks->gen = 0;
	ks->full = 0;		/* nothing yet: every shard in use is marked */
	if (ks->n) {
		memset(ks->cur, 0, ks->n * sizeof *ks->cur);
		memset(ks->changed, 0, ks->n * sizeof *ks->changed);
	}
	ks->spent = (struct index_part){ .shard = INDEX_PART_SPENT };
	ks->spent_changed = 0;
	pthread_mutex_unlock(&ks->mu);
}

void
ckpt_opened(struct engine *e)
{
	pthread_mutex_lock(&e->ks->mu);
	sweep(e);
	pthread_mutex_unlock(&e->ks->mu);
}

struct ckplan *
ckpt_plan(struct engine *e, struct index_saver *sv)
{
	struct ckstate *ks = e->ks;
	struct index *ix = e->ix;
	struct ckplan *p;
	uint64_t n = (ix->next_id + ks->per - 1) / ks->per;
	size_t len;
	uint32_t k;
	int whole = ks->dirfd < 0 || ix->next_id <= ks->per;

	pthread_mutex_lock(&ks->mu);
	if (!whole && ks_grow(ks, n ? n - 1 : 0) < 0) {
		pthread_mutex_unlock(&ks->mu);
		return NULL;
	}
	if (whole)
		n = 0;
	len = sizeof *p + (n + 1) * (sizeof *p->parts + 1);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED) {
		pthread_mutex_unlock(&ks->mu);
		return NULL;
	}
	p->len = len;
	p->gen = ks->gen + 1;
	p->per = ks->per;
	p->lsn = ix->lsn;
	p->whole = whole;
	p->n = (uint32_t)n;
	p->dirty = (uint8_t *)(p->parts + n + 1);
	for (k = 0; k < n; k++) {
		p->parts[k] = ks->cur[k];
		p->parts[k].shard = k;
		p->dirty[k] = ks->full || ks->changed[k] > ks->cur[k].lsn;
	}
	p->parts[n] = ks->spent;
	p->parts[n].shard = INDEX_PART_SPENT;
	p->dirty[n] = ks->full || ks->spent_changed > ks->spent.lsn;
	pthread_mutex_unlock(&ks->mu);
	if (!whole && index_saver_reserve(sv, ix, ks->per) < 0) {
		munmap(p, len);
		return NULL;
	}
	return p;
}

void
ckpt_plan_free(struct ckplan *p)
{
	if (p)
		munmap(p, p->len);
}

/* A new file for part |shard| of generation |gen|: see the top. */
static int
part_create(int dirfd, uint32_t shard, uint64_t gen)
{
	char name[PART_NAME_LEN + 1];
	int fd;

	part_name(name, shard, gen);
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600);
	return fd < 0 ? -errno : fd;
}

/* One part: gathered, written, synced. */
static int
write_part(struct engine *e, struct ckplan *p, struct index_saver *sv,
    uint32_t k, uint64_t sync_every)
{
	struct index_part *out = &p->parts[k];
	uint64_t nodes = 0;
	int fd, rc;

	if (k == p->n) {
		if (spent_count(e->ix->spent) == 0) {
			*out = (struct index_part){ .shard = INDEX_PART_SPENT,
				.lsn = p->lsn };
			return 0;
		}
	} else {
		nodes = index_part_collect(sv, e->ix, k, p->per);
		if (nodes == 0) {
			*out = (struct index_part){ .shard = k, .lsn = p->lsn };
			return 0;
		}
	}
	fd = part_create(e->ks->dirfd, k == p->n ? INDEX_PART_SPENT : k,
	    p->gen);
	if (fd < 0)
		return fd;
	if (k == p->n)
		rc = index_spent_write(sv, e->ix, fd, p->gen, sync_every, out);
	else
		rc = index_part_write(sv, e->ix, fd, k, p->gen, nodes,
		    sync_every, out);
	if (rc == 0)
		rc = dio_fdatasync_unheld(fd);
	close(fd);
	if (rc == 0) {
		p->bytes += out->bytes;
		p->written++;
	}
	return rc;
}

int
ckpt_write(struct engine *e, struct ckplan *p, struct index_saver *sv,
    int mfd, uint32_t seg, uint64_t off, uint64_t sync_every)
{
	uint32_t k;
	int rc = 0;

	if (p->whole) {
		rc = index_saver_run(sv, e->ix, mfd, seg, off, sync_every);
		return rc < 0 ? rc : dio_fdatasync_unheld(mfd);
	}
	for (k = 0; rc == 0 && k <= p->n; k++)
		if (p->dirty[k])
			rc = write_part(e, p, sv, k, sync_every);
	if (rc == 0 && p->written && fsync(e->ks->dirfd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = index_save_manifest(sv, e->ix, mfd, seg, off, p->gen,
		    p->per, p->parts, p->n + 1, sync_every);
	return rc < 0 ? rc : dio_fdatasync_unheld(mfd);
}

int
ckpt_install(struct engine *e, struct ckplan *p, int mfd)
{
	struct ckstate *ks = e->ks;
	struct stat st;
	uint32_t k, named = 0;
	int rc;

	if (fstat(mfd, &st) == 0)
		p->bytes += (uint64_t)st.st_size;
	pthread_mutex_lock(&ks->mu);
	rc = e->media->ckpt_install(e, mfd);
	if (rc < 0)
		goto out;
	if (p->whole) {
		/* The parts start again from a whole write. */
		ks->gen = 0;
		ks->full = 1;
		if (ks->n)
			memset(ks->cur, 0, ks->n * sizeof *ks->cur);
		ks->spent.gen = 0;
	} else {
		ks->gen = p->gen;
		ks->full = 0;
		for (k = 0; k < p->n && k < ks->n; k++) {
			ks->cur[k] = p->parts[k];
			named += p->parts[k].gen != 0;
		}
		ks->spent = p->parts[p->n];
		named += ks->spent.gen != 0;
	}
	ks->last_bytes = p->bytes;
	ks->last_parts = p->written;
	ks->last_named = named;
	sweep(e);
out:
	pthread_mutex_unlock(&ks->mu);
	return rc;
}

void
ckpt_stats(struct engine *e, uint64_t *bytes_out, uint64_t *parts_out,
    uint64_t *named_out)
{
	pthread_mutex_lock(&e->ks->mu);
	*bytes_out = e->ks->last_bytes;
	*parts_out = e->ks->last_parts;
	*named_out = e->ks->last_named;
	pthread_mutex_unlock(&e->ks->mu);
}
