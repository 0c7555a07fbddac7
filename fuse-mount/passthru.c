/*
 * passthru.c - the kernel's FUSE passthrough for tmp/ files, with
 * libfuse 3.14, which cannot ask for it. A tmp/ file's buffer becomes an
 * unlinked spool file registered with the FUSE device (fbuf_backing),
 * and every open of the file is answered with FOPEN_PASSTHROUGH and its
 * backing id: the kernel then reads and writes that file itself, and a
 * message written in 4 KiB pieces costs no WRITE request at all (each
 * was two cross-CPU wakeups, 12-19 us). Attributes, truncation, fsync,
 * link and rename still come here; the buffer learns its size from the
 * file (fbuf_refresh, inode_local_refresh).
 *
 * Owns the session's device I/O (fuse_session_custom_io): it reads and
 * writes /dev/fuse as libfuse would, and changes two replies on their
 * way out, never another:
 *  - INIT: when the kernel offered FUSE_PASSTHROUGH (flags2), the reply
 *    asks for it, with max_stack_depth 1: a backing file must be on a
 *    file system that stacks on nothing (ext4, xfs, tmpfs; not
 *    overlayfs), else registering it fails with ELOOP and the mount goes
 *    on without passthrough;
 *  - the one open or create reply that passthru_next announced on the
 *    sending thread: FOPEN_PASSTHROUGH and the backing id, in the
 *    fuse_open_out field that protocol 7.38 calls padding.
 * libfuse builds both replies and sends them from the thread that asks,
 * so what an interrupted open does (fuse_reply_open's -ENOENT) is
 * unchanged. Registering needs CAP_SYS_ADMIN; without it, or without
 * the kernel's offer, or with option nopassthrough, tmp/ files are
 * buffered here as before. ABI: include/uapi/linux/fuse.h, 7.40.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <syslog.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mount.h"
#include "mstat.h"

/* What protocol 7.40 added and 7.38's header lacks. */
#define PT_INIT2_PASSTHROUGH	(1u << 5)	/* FUSE_PASSTHROUGH: bit 37 */
#define PT_FOPEN_PASSTHROUGH	(1u << 7)
#define PT_STACK_DEPTH		1

/* fuse_init_out of 7.40: 7.38's, with unused[0] now max_stack_depth. */
struct pt_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2, max_stack_depth;
	uint32_t unused[6];
};
_Static_assert(sizeof(struct pt_init_out) == sizeof(struct fuse_init_out),
    "fuse_init_out");
_Static_assert(offsetof(struct pt_init_out, flags2) ==
    offsetof(struct fuse_init_out, flags2), "fuse_init_out.flags2");
_Static_assert(sizeof(struct fuse_open_out) == 16, "fuse_open_out");

/* The INIT request's unique id while its reply is due and the kernel
 * offered passthrough, 0 otherwise. */
static _Atomic uint64_t init_unique;

/* The backing id the next open or create reply of this thread names,
 * and whether one went out so. */
static __thread int next_bid;
static __thread int next_sent;

static ssize_t
pt_read(int fd, void *buf, size_t len, void *userdata)
{
	const struct fuse_in_header *in = buf;
	const struct fuse_init_in *ii = (const void *)(in + 1);
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (n >= (ssize_t)(sizeof *in + sizeof *ii) &&
	    in->opcode == FUSE_INIT && (ii->flags & FUSE_INIT_EXT) &&
	    (ii->flags2 & PT_INIT2_PASSTHROUGH)) {
		atomic_store(&init_unique, in->unique);
	}
	return n;
}

/*
 * The INIT reply (iov[1] is its fuse_init_out), with passthrough asked
 * for unless libfuse answers without extended flags or with a writeback
 * cache (the kernel refuses that pair).
 *
 * FUSE_HANDLE_KILLPRIV_V2 is not asked for. It would spare the
 * GETXATTR of security.capability that the kernel sends before every
 * passthrough write(2) (file_remove_privs on a file system without
 * SB_NOSEC), but with it the kernel stops clearing set-user-ID and
 * set-group-ID bits on write, truncate and chown of every file of the
 * mount and only flags those requests, and libfuse 3.14 does not pass
 * the flags on: the bits would stay. Without it the kernel clears them
 * itself with a SETATTR of the mode, for passthrough writes too.
 */
static ssize_t
init_reply(struct mount *m, int fd, const struct iovec *iov)
{
	struct pt_init_out o;
	struct iovec v[2] = { iov[0], { &o, sizeof o } };
	ssize_t n;
	int ask;

	memcpy(&o, iov[1].iov_base, sizeof o);
	ask = (o.flags & FUSE_INIT_EXT) && !(o.flags & FUSE_WRITEBACK_CACHE);
	if (ask) {
		o.flags2 |= PT_INIT2_PASSTHROUGH;
		o.max_stack_depth = PT_STACK_DEPTH;
	}
	n = writev(fd, v, 2);
	atomic_store(&init_unique, 0);
	if (n >= 0 && ask) {
		atomic_store(&m->pt_on, 1);
		syslog(LOG_INFO, "mount.mstore: kernel passthrough for tmp/ "
		    "files (spool %s)", m->spool);
	}
	return n;
}

/* An open reply (fuse_open_out) or a create reply (fuse_entry_out, then
 * fuse_open_out) in iov[1], sent naming next_bid. */
static ssize_t
open_reply(int fd, const struct iovec *iov)
{
	struct fuse_open_out o;
	size_t head = iov[1].iov_len - sizeof o;
	struct iovec v[3] = { iov[0], { iov[1].iov_base, head },
		{ &o, sizeof o } };
	ssize_t n;

	memcpy(&o, (const char *)iov[1].iov_base + head, sizeof o);
	o.open_flags |= PT_FOPEN_PASSTHROUGH;
	o.open_flags &= ~(uint32_t)FOPEN_DIRECT_IO;
	o.padding = (uint32_t)next_bid;		/* 7.40: backing_id */
	next_bid = 0;
	if (head == 0) {
		v[1] = v[2];
		n = writev(fd, v, 2);
	} else {
		n = writev(fd, v, 3);
	}
	next_sent = n >= 0;
	if (next_sent)
		mstat_add(MS_PT_OPENS, 1);
	return n;
}

static ssize_t
pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	uint64_t init = atomic_load(&init_unique);

	if (init != 0 && out->unique == init && out->error == 0 &&
	    count == 2 && iov[1].iov_len == sizeof(struct pt_init_out))
		return init_reply(userdata, fd, iov);
	if (next_bid > 0 && out->unique != 0 && out->error == 0 &&
	    count == 2 && (iov[1].iov_len == sizeof(struct fuse_open_out) ||
	    iov[1].iov_len == sizeof(struct fuse_entry_out) +
	    sizeof(struct fuse_open_out)))
		return open_reply(fd, iov);
	return writev(fd, iov, count);
}

int
passthru_start(struct mount *m)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
	};
	int fd = fuse_session_fd(m->se), rc;

	/* Backing ids are closed when a buffer is freed, which may be after
	 * the session and its descriptor are gone (inode_fini): this one
	 * stays until main.c closes it. */
	m->pt_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (m->pt_fd < 0)
		return -errno;
	rc = fuse_session_custom_io(m->se, &io, fd);
	if (rc < 0) {
		close(m->pt_fd);
		m->pt_fd = -1;
	}
	return rc;
}

void
passthru_next(int bid)
{
	next_bid = bid;
	next_sent = 0;
}

int
passthru_sent(void)
{
	return next_sent;
}

int
passthru_back(struct mount *m, struct minode *n)
{
	int rc;

	if (m->pt_fd < 0 || !atomic_load(&m->pt_on) || n->buf == NULL)
		return -EOPNOTSUPP;
	rc = fbuf_backing(n->buf, m, m->pt_fd);
	/* Refused for every file (not allowed, the spool stacked, no such
	 * ioctl): passthrough ends for the mount, said once. Anything else
	 * (no descriptor or space for a spool file) is this file's only. */
	if ((rc == -EPERM || rc == -ELOOP || rc == -ENOTTY ||
	    rc == -EOPNOTSUPP || rc == -EINVAL) &&
	    atomic_exchange(&m->pt_on, 0))
		syslog(LOG_NOTICE, "mount.mstore: no kernel passthrough for "
		    "tmp/ files: registering a backing file in %s: %s",
		    m->spool, strerror(-rc));
	return rc;
}
