/*
 * diskio.h - the disk calls the storage engine makes, behind a table of
 * function pointers so that tests can fail the Nth call with EIO or
 * ENOSPC (fault injection). Production uses the system calls. The
 * engine's thread starts go through here too, so that tests can fail
 * them the same way, and a checkpoint child's start, so that tests can
 * hold it before it writes.
 */
#ifndef MST_DISKIO_H
#define MST_DISKIO_H

#include <pthread.h>
#include <sys/types.h>
#include <sys/uio.h>

enum dio_call {
	DIO_WRITE,
	DIO_SYNC,
	DIO_THREAD,
	DIO_BODY,	/* dio_pread_body: a body read for a reply */
	DIO_READ,	/* dio_pread_all (not through dio_pread_body) */
	DIO_NCALLS,
};

/* Write all of |iov| at |off|; retries short writes and EINTR, advancing
 * |iov| in place (its contents are undefined afterwards). Returns 0 or a
 * negative errno. */
int dio_pwritev_all(int fd, struct iovec *iov, int iovcnt, off_t off);
/* fdatasync; 0 or a negative errno. */
int dio_fdatasync(int fd);
/* The same for a checkpoint's files: faults are injected, but a test's
 * dio_hold never keeps it waiting (a forked child could not be let go,
 * and checkpoints never waited on held log syncs). Async-signal-safe. */
int dio_fdatasync_unheld(int fd);
/* Read exactly |n| bytes at |off|: 0, -EIO on a short file, or -errno. */
int dio_pread_all(int fd, void *buf, size_t n, off_t off);
/* The same for a body or file block (body_read): tests can hold a
 * reader (DIO_BODY) between its lookup of the body's place and the
 * read. Replay and compaction read with dio_pread_all: holding this
 * does not stop them. */
int dio_pread_body(int fd, void *buf, size_t n, off_t off);
/* Replace |dir|/|name| with the |n| bytes at |p|, durably: written to
 * |name|.tmp, fsynced, renamed over |name|, and |dir| fsynced. 0, or a
 * negative errno (the caller logs it with its context). */
int dio_replace_file(const char *dir, const char *name, const void *p,
    size_t n);
/* pthread_create with default attributes: 0 or a negative errno
 * (-EAGAIN when the system is out of threads). */
int dio_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/*
 * Tests: make the |nth| next call of |which| (1 = the next one) fail with
 * |err| (positive errno); nth = 0 disarms. Thread-safe.
 */
void dio_fail_at(enum dio_call which, unsigned nth, int err);
/*
 * Tests: with |on|, every call of |which| waits (before doing anything)
 * until a call with |on| = 0 lets it and the later ones go. Thread-safe.
 */
void dio_hold(enum dio_call which, int on);
/*
 * Tests: wait until |n| calls of |which| wait on dio_hold, at most
 * |timeout_ms|: 0, or -ETIMEDOUT. Thread-safe.
 */
int dio_wait_held(enum dio_call which, unsigned n, int timeout_ms);
/*
 * Tests: with |on|, a checkpoint child forked from now on stops itself
 * (SIGSTOP) before it writes anything, and writes once the test sends
 * it SIGCONT. (A child cannot wait on dio_hold: its memory is a copy
 * of the parent's, which no dio_hold(..., 0) reaches.) Thread-safe.
 */
void dio_stop_children(int on);
/* A forked checkpoint child, before it writes: stops it if a test
 * asked (dio_stop_children). Async-signal-safe. */
void dio_child_start(void);

#endif /* MST_DISKIO_H */
