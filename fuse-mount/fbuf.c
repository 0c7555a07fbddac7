/*
 * fbuf.c - local file contents for tmp/ files, pending deliveries and
 * open small files: in memory up to MNT_MEM_MAX, then in an unlinked file
 * in the spool directory, so a large message never sits in RAM. Never
 * talks to the store. A DELIVER sends the body from fbuf_map's view
 * (the memory itself, or a mapping of the spool file), never a copy; the
 * buffer is pinned meanwhile so that the view cannot change under it.
 *
 * A buffer may also be a backing file of the kernel's FUSE passthrough
 * (fbuf_backing): then the kernel writes into its spool file directly,
 * without a request, and the buffer learns its size from the file
 * (fbuf_refresh). Never talks to FUSE beyond the device's two backing
 * ioctls.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount.h"
#include "mstat.h"

/* Count what |b| holds into the gauges (|sign| 1) or out (-1): in
 * memory or in its spool file. */
static void
held(const struct fbuf *b, int sign)
{
	mstat_add(b->fd >= 0 ? MS_BUF_SPOOL : MS_BUF_MEM,
	    sign > 0 ? b->size : (uint64_t)0 - b->size);
}

struct fbuf *
fbuf_new(void)
{
	struct fbuf *b = calloc(1, sizeof *b);

	if (b)
		b->fd = -1;
	return b;
}

void
fbuf_free(struct fbuf *b)
{
	if (b == NULL)
		return;
	held(b, -1);
	/* The kernel keeps its own reference while a file it opened with
	 * this backing is open; the id goes now. Best effort: only ENOENT
	 * (never registered, or the connection is gone) can come back. */
	if (b->bid > 0)
		(void)ioctl(b->ctl, PT_IOC_BACKING_CLOSE, &b->bid);
	if (b->fd >= 0)
		close(b->fd);
	free(b->mem);
	free(b);
}

static int
pwrite_all(int fd, const void *p, size_t len, uint64_t off)
{
	const char *c = p;
	ssize_t n;

	while (len > 0) {
		n = pwrite(fd, c, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		c += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* A new unlinked file in the spool directory holding |b|'s contents:
 * its descriptor, or a negative errno. O_TMPFILE where the spool's file
 * system has it (one call, never named), else a named file unlinked at
 * once. */
static int
spool_file(const struct fbuf *b, const struct mount *m)
{
	char path[PATH_MAX];
	int fd, rc;

	fd = open(m->spool, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR ||
	    errno == EINVAL)) {
		snprintf(path, sizeof path, "%s/mstore-spool-XXXXXX",
		    m->spool);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			(void)unlink(path);	/* anonymous; fd keeps it */
	}
	if (fd < 0)
		return -errno;
	rc = pwrite_all(fd, b->mem, (size_t)b->size, 0);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Move the contents to an unlinked spool file. */
static int
spill(struct fbuf *b, const struct mount *m)
{
	int fd = spool_file(b, m);

	if (fd < 0)
		return fd;
	free(b->mem);
	b->mem = NULL;
	b->cap = b->len = 0;
	b->fd = fd;
	mstat_add(MS_SPOOLS, 1);
	return 0;
}

/* What the file's attributes say of its contents: its size and its
 * last change. */
static void
file_stamp(const struct stat *st, uint64_t *size, uint64_t *stamp)
{
	*size = (uint64_t)st->st_size;
	*stamp = (uint64_t)st->st_ctim.tv_sec * 1000000000u +
	    (uint64_t)st->st_ctim.tv_nsec;
}

/* A change the mount made itself to a backing file (truncation) is not
 * one fbuf_refresh reports as the kernel's. */
static void
restamp(struct fbuf *b)
{
	uint64_t size;
	struct stat st;

	if (b->bid > 0 && fstat(b->fd, &st) == 0)
		file_stamp(&st, &size, &b->stamp);
}

static int fbuf_write_held(struct fbuf *b, const struct mount *m,
    const void *p, size_t len, uint64_t off);

/* The gauges follow the buffer across the write (and a spill). */
int
fbuf_write(struct fbuf *b, const struct mount *m, const void *p, size_t len,
    uint64_t off)
{
	int rc;

	if (b->pinned)
		return -ETXTBSY;
	held(b, -1);
	rc = fbuf_write_held(b, m, p, len, off);
	held(b, 1);
	if (rc == 0)
		mstat_add(MS_BUF_WRITTEN, len);
	return rc;
}

static int
fbuf_write_held(struct fbuf *b, const struct mount *m, const void *p,
    size_t len, uint64_t off)
{
	uint64_t end = off + len;
	size_t cap;
	uint8_t *nm;
	int rc;

	if (b->pinned)
		return -ETXTBSY;
	b->gen++;
	if (b->fd < 0 && end > MNT_MEM_MAX) {
		rc = spill(b, m);
		if (rc < 0)
			return rc;
	}
	if (b->fd >= 0) {
		rc = pwrite_all(b->fd, p, len, off);
		if (rc == 0 && end > b->size)
			b->size = end;
		return rc;
	}
	if (end > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < end)
			cap *= 2;
		nm = realloc(b->mem, cap);
		if (nm == NULL)
			return -ENOMEM;
		b->mem = nm;
		b->cap = cap;
	}
	if (off > b->size)
		memset(b->mem + b->size, 0, (size_t)(off - b->size));
	memcpy(b->mem + off, p, len);
	if (end > b->size)
		b->size = end;
	b->len = (size_t)b->size;
	return 0;
}

ssize_t
fbuf_read(const struct fbuf *b, void *p, size_t len, uint64_t off)
{
	ssize_t n;

	if (off >= b->size)
		return 0;
	if (len > b->size - off)
		len = (size_t)(b->size - off);
	if (b->fd < 0) {
		memcpy(p, b->mem + off, len);
		return (ssize_t)len;
	}
	do
		n = pread(b->fd, p, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

int
fbuf_truncate(struct fbuf *b, const struct mount *m, uint64_t size)
{
	static const uint8_t zero = 0;
	int rc;

	if (b->pinned)
		return -ETXTBSY;
	b->gen++;
	if (size > b->size) {		/* extend with zeros */
		rc = fbuf_write(b, m, &zero, 1, size - 1);
		if (rc == 0)
			restamp(b);
		return rc;
	}
	if (b->fd >= 0 && ftruncate(b->fd, (off_t)size) < 0)
		return -errno;
	held(b, -1);
	b->size = size;
	held(b, 1);
	b->len = (size_t)size;
	restamp(b);
	return 0;
}

int
fbuf_set(struct fbuf *b, const struct mount *m, const void *p, size_t len)
{
	int rc = fbuf_truncate(b, m, 0);

	return rc ? rc : len ? fbuf_write(b, m, p, len, 0) : 0;
}

int
fbuf_map(struct fbuf *b, const uint8_t **p_out)
{
	void *p;

	/* A spooled buffer cut to 0 keeps its file: mmap of 0 bytes would
	 * fail with EINVAL, and there is nothing to map. */
	if (b->fd < 0 || b->size == 0) {
		*p_out = b->fd < 0 && b->mem ? b->mem : (const uint8_t *)"";
		return 0;
	}
	p = mmap(NULL, (size_t)b->size, PROT_READ, MAP_SHARED, b->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*p_out = p;
	return 0;
}

void
fbuf_pin(struct fbuf *b)
{
	b->pinned++;
}

void
fbuf_unpin(struct fbuf *b)
{
	if (b->pinned > 0)
		b->pinned--;
}

int
fbuf_backing(struct fbuf *b, const struct mount *m, int ctl)
{
	struct pt_backing_map map = { 0 };
	struct stat st;
	int fd, id;

	if (b->bid > 0)
		return 0;
	if (b->pinned)
		return -ETXTBSY;
	fd = b->fd >= 0 ? b->fd : spool_file(b, m);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		id = -errno;
		goto fail;
	}
	map.fd = fd;
	id = ioctl(ctl, PT_IOC_BACKING_OPEN, &map);
	if (id <= 0) {
		id = id < 0 ? -errno : -EPROTO;
		goto fail;
	}
	if (b->fd < 0) {		/* the contents live in the file now */
		held(b, -1);
		free(b->mem);
		b->mem = NULL;
		b->cap = b->len = 0;
		b->fd = fd;
		held(b, 1);
		mstat_add(MS_SPOOLS, 1);
	}
	b->bid = id;
	b->ctl = ctl;
	file_stamp(&st, &b->size, &b->stamp);
	return 0;
fail:
	if (fd != b->fd)
		close(fd);
	return id;
}

int
fbuf_refresh(struct fbuf *b)
{
	uint64_t size, stamp;
	struct stat st;

	if (b->bid <= 0 || b->pinned || fstat(b->fd, &st) < 0)
		return 0;	/* fstat of our own descriptor cannot fail */
	file_stamp(&st, &size, &stamp);
	if (size == b->size && stamp == b->stamp)
		return 0;
	if (size > b->size)
		mstat_add(MS_BUF_WRITTEN, size - b->size);
	held(b, -1);
	b->size = size;
	b->len = (size_t)size;
	held(b, 1);
	b->stamp = stamp;
	b->gen++;
	return 1;
}

void
fbuf_unmap(struct fbuf *b, const uint8_t *p)
{
	if (b->fd >= 0 && b->size > 0 && p)
		(void)munmap((void *)p, (size_t)b->size); /* valid map */
}
