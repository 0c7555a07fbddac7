/*
 * diskio.c - the engine's writes, syncs and reads, with EINTR and short
 * transfers handled once here, and a fault-injection hook for tests
 * (which covers the engine's thread starts as well), a hold that
 * keeps a call waiting until the test lets it go, and one that stops a
 * checkpoint child until the test continues it. Never logs: callers
 * decide what a failure means.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdatomic.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diskio.h"

static atomic_uint fail_nth[DIO_NCALLS];
static atomic_int fail_err[DIO_NCALLS];
static atomic_int held[DIO_NCALLS];
static unsigned waiting[DIO_NCALLS];	/* guarded by hold_mu */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static atomic_int stop_children;

void
dio_hold(enum dio_call which, int on)
{
	pthread_mutex_lock(&hold_mu);
	atomic_store(&held[which], on);
	pthread_cond_broadcast(&hold_cv);
	pthread_mutex_unlock(&hold_mu);
}

/* Wait while a test holds |which|. */
static void
hold_wait(enum dio_call which)
{
	if (!atomic_load(&held[which]))
		return;
	pthread_mutex_lock(&hold_mu);
	waiting[which]++;
	pthread_cond_broadcast(&hold_cv);	/* dio_wait_held */
	while (atomic_load(&held[which]))
		pthread_cond_wait(&hold_cv, &hold_mu);
	waiting[which]--;
	pthread_mutex_unlock(&hold_mu);
}

int
dio_wait_held(enum dio_call which, unsigned n, int timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&hold_mu);
	while (waiting[which] < n && rc == 0)
		rc = pthread_cond_timedwait(&hold_cv, &hold_mu, &ts);
	rc = waiting[which] >= n ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&hold_mu);
	return rc;
}

void
dio_stop_children(int on)
{
	atomic_store(&stop_children, on);
}

void
dio_child_start(void)
{
	/* kill(2), not raise(3): the whole child stops, and kill is
	 * async-signal-safe, which is all a child of a threaded process
	 * may call. The signal is taken before kill returns. */
	if (atomic_load(&stop_children))
		(void)kill(getpid(), SIGSTOP);
}

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
	int err;

	hold_wait(DIO_SYNC);
	err = injected(DIO_SYNC);
	if (err)
		return -err;
	return fdatasync(fd) < 0 ? -errno : 0;
}

int
dio_fdatasync_unheld(int fd)
{
	int err = injected(DIO_SYNC);

	if (err)
		return -err;
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int
pread_all(int fd, void *buf, size_t n, off_t off)
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
dio_pread_all(int fd, void *buf, size_t n, off_t off)
{
	int err = injected(DIO_READ);

	if (err)
		return -err;
	return pread_all(fd, buf, n, off);
}

int
dio_pread_body(int fd, void *buf, size_t n, off_t off)
{
	int err;

	hold_wait(DIO_BODY);
	err = injected(DIO_BODY);
	if (err)
		return -err;
	return pread_all(fd, buf, n, off);
}

int
dio_replace_file(const char *dir, const char *name, const void *p,
    size_t n)
{
	char path[4096], tmp[4096];
	const char *b = p;
	ssize_t w;
	int fd, dfd, rc = 0;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >=
	    (int)sizeof path || snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir,
	    name) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (rc == 0 && n > 0) {
		w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			rc = -errno;
		else {
			b += w;
			n -= (size_t)w;
		}
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0) {
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			rc = -errno;
		if (dfd >= 0)
			close(dfd);
	}
	return rc;
}

int
dio_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int err = injected(DIO_THREAD);

	if (err)
		return -err;
	return -pthread_create(t, NULL, fn, arg);
}
