/*
 * fbuf.c - local file contents for tmp/ files, pending deliveries and
 * open small files: in memory up to MNT_MEM_MAX, then in an unlinked file
 * in the spool directory, so a large message never sits in RAM. Never
 * talks to the store. A DELIVER sends the body from fbuf_map's view
 * (the memory itself, or a mapping of the spool file), never a copy; the
 * buffer is pinned meanwhile so that the view cannot change under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* Move the contents to an unlinked spool file. */
static int
spill(struct fbuf *b, const struct mount *m)
{
	char path[PATH_MAX];
	int fd, rc;

	snprintf(path, sizeof path, "%s/mstore-spool-XXXXXX", m->spool);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	(void)unlink(path);	/* anonymous from here on; fd keeps it */
	rc = pwrite_all(fd, b->mem, (size_t)b->size, 0);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	free(b->mem);
	b->mem = NULL;
	b->cap = b->len = 0;
	b->fd = fd;
	mstat_add(MS_SPOOLS, 1);
	return 0;
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

	if (b->pinned)
		return -ETXTBSY;
	b->gen++;
	if (size > b->size)		/* extend with zeros */
		return fbuf_write(b, m, &zero, 1, size - 1);
	if (b->fd >= 0 && ftruncate(b->fd, (off_t)size) < 0)
		return -errno;
	held(b, -1);
	b->size = size;
	held(b, 1);
	b->len = (size_t)size;
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

void
fbuf_unmap(struct fbuf *b, const uint8_t *p)
{
	if (b->fd >= 0 && b->size > 0 && p)
		(void)munmap((void *)p, (size_t)b->size); /* valid map */
}
