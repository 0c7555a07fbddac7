/*
 * engine_memory.c - the memory storage engine (mstored --backend memory):
 * the local engine over media that live in RAM and die with the process.
 * Meant for tests, where a store that needs no directory, no fdatasync
 * and no cleanup runs the suites quickly.
 *
 * Only the media differ (struct store_media in eng.h): each segment is
 * an anonymous memory file (memfd_create), and a checkpoint is another
 * one that replaces the last. Everything else -- records, the index,
 * the rules of every operation, group commit, OPEN references, LIST
 * deltas, compaction, scrub, and the rollback of a failed batch by
 * replay from the checkpoint -- is the local engine's own code, so every
 * rule it enforces holds here too. What the memory engine never gives is
 * durability: a reply still waits for its batch (and its fdatasync,
 * which on a memory file costs nothing and keeps fault injection
 * working), but a restart starts from an empty store.
 *
 * No directory is touched: the data directory (still required by
 * mstored for its local state) is not read or written by this engine.
 * The room it reports and enforces (STATFS, reserve_bytes, ENOSPC) is
 * the machine's available RAM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "eng.h"
#include "log.h"

static int
memory_attach(struct engine *e)
{
	(void)e;
	return 0;		/* a new store has no segments */
}

static int
memory_file(const char *what, const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		log_err("memfd_create %s %s: %s", what, name, strerror(errno));
	return fd;
}

static struct seg *
memory_seg_create(struct engine *e, uint32_t no)
{
	char name[32];
	int fd;

	snprintf(name, sizeof name, SEG_NAME_FMT, no);
	fd = memory_file("segment", name);
	return fd < 0 ? NULL : seg_new(e, no, fd);
}

static void
memory_seg_remove(struct engine *e, struct seg *s)
{
	(void)e;
	log_info("segment %s reclaimed", s->path);	/* freed at seg_put */
}

/* The checkpoint is replaced by the checkpointer thread while a roll
 * back may open it on another: e->ckpt_fd is guarded by this. */
static pthread_mutex_t ckpt_mu = PTHREAD_MUTEX_INITIALIZER;

/* index_load reads from the current offset and closes what it is given:
 * a duplicate, rewound (sharing the offset, so one reader at a time:
 * the opening thread, or a roll back under bmu). */
static int
memory_ckpt_open(struct engine *e)
{
	int fd = -ENOENT;

	pthread_mutex_lock(&ckpt_mu);
	if (e->ckpt_fd >= 0 && (lseek(e->ckpt_fd, 0, SEEK_SET) < 0 ||
	    (fd = dup(e->ckpt_fd)) < 0)) {
		log_err("memory checkpoint: %s", strerror(errno));
		fd = -EIO;
	}
	pthread_mutex_unlock(&ckpt_mu);
	return fd;
}

static int
memory_ckpt_create(struct engine *e)
{
	int fd = memory_file("checkpoint", "checkpoint");

	(void)e;
	return fd < 0 ? -EIO : fd;
}

/* The old checkpoint stays until the new one is whole. */
static int
memory_ckpt_install(struct engine *e, int fd)
{
	pthread_mutex_lock(&ckpt_mu);
	if (e->ckpt_fd >= 0)
		close(e->ckpt_fd);
	e->ckpt_fd = fd;
	pthread_mutex_unlock(&ckpt_mu);
	return 0;
}

static void
memory_ckpt_discard(struct engine *e, int fd)
{
	(void)e;
	close(fd);
}

/* Free: MemAvailable (what can still be had without swapping, page
 * cache included; sysinfo's free RAM leaves that out and can be small on
 * a busy host), or the free RAM where /proc is not mounted. */
static int
memory_space(struct engine *e, uint64_t *total_out, uint64_t *free_out)
{
	unsigned long long kib;
	struct sysinfo si;
	char line[128];
	FILE *f;

	(void)e;
	if (sysinfo(&si) < 0)
		return -errno;
	*total_out = (uint64_t)si.totalram * si.mem_unit;
	*free_out = (uint64_t)si.freeram * si.mem_unit;
	f = fopen("/proc/meminfo", "re");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
			*free_out = (uint64_t)kib * 1024;
			break;
		}
	fclose(f);
	return 0;
}

static void
memory_detach(struct engine *e)
{
	if (e->ckpt_fd >= 0)
		close(e->ckpt_fd);
	e->ckpt_fd = -1;
}

const struct store_media store_memory = {
	.name = "memory",
	.attach = memory_attach,
	.seg_create = memory_seg_create,
	.seg_remove = memory_seg_remove,
	.ckpt_open = memory_ckpt_open,
	.ckpt_create = memory_ckpt_create,
	.ckpt_install = memory_ckpt_install,
	.ckpt_discard = memory_ckpt_discard,
	.space = memory_space,
	.detach = memory_detach,
};

static int
memory_open(const struct engine_conf *c, struct engine **out)
{
	return engine_open_media(c, &store_memory, out);
}

const struct engine_ops engine_memory = {
	.name = "memory",
	.open = memory_open,
	.submit = engine_submit,
	.try_now = ops_try_now,
	.close = engine_close,
	.stage = 1,
};
