/*
 * diskio.c - the engine's writes, syncs and reads, with EINTR and short
 * transfers handled once here, and a fault-injection hook for tests
 * (which covers the engine's thread starts as well). Never logs:
 * callers decide what a failure means.
 */
#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "diskio.h"

static atomic_uint fail_nth[DIO_NCALLS];
static atomic_int fail_err[DIO_NCALLS];

void
dio_fail_at(enum dio_call which, unsigned nth, int err)
{
	atomic_store(&fail_err[which], err);
	atomic_store(&fail_nth[which], nth);
}

/* Count down an armed fault; returns the errno to inject, or 0. */
static int
injected(enum dio_call which)
{
	unsigned n = atomic_load(&fail_nth[which]);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&fail_nth[which], &n, n - 1))
			return n == 1 ? atomic_load(&fail_err[which]) : 0;
	}
	return 0;
}

int
dio_pwritev_all(int fd, struct iovec *iov, int iovcnt, off_t off)
{
	ssize_t w;
	int err;

	err = injected(DIO_WRITE);
	if (err)
		return -err;
	while (iovcnt > 0) {
		w = pwritev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += w;
		while (iovcnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int
dio_fdatasync(int fd)
{
	int err = injected(DIO_SYNC);

	if (err)
		return -err;
	return fdatasync(fd) < 0 ? -errno : 0;
}

int
dio_pread_all(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;
	ssize_t r;

	while (n > 0) {
		r = pread(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int
dio_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int err = injected(DIO_THREAD);

	if (err)
		return -err;
	return -pthread_create(t, NULL, fn, arg);
}
