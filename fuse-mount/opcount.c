/*
 * opcount.c - counts of the kernel's requests by kind, and of the store
 * requests they caused (mconn_op_count), so that what one delivery costs
 * can be read off a running mount: the root's user.mstore.requests
 * (ops_xattr.c) and the log line at unmount. Each count is a relaxed
 * atomic add on the way into the op: no lock, no order, and a reader
 * sees each counter at some recent value. Never changes what an op does.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mount.h"
#include "mstat.h"

enum oc {
	OC_LOOKUP, OC_FORGET, OC_GETATTR, OC_SETATTR, OC_MKNOD, OC_MKDIR,
	OC_UNLINK, OC_RMDIR, OC_SYMLINK, OC_RENAME, OC_LINK, OC_OPEN, OC_READ,
	OC_WRITE, OC_STATFS, OC_RELEASE, OC_FSYNC, OC_GETXATTR,
	OC_LISTXATTR, OC_FLUSH, OC_OPENDIR, OC_READDIR, OC_RELEASEDIR,
	OC_GETLK, OC_SETLK, OC_CREATE, OC_FLOCK, OC_MAX
};

static const char *const oc_name[OC_MAX] = {
	"LOOKUP", "FORGET", "GETATTR", "SETATTR", "MKNOD", "MKDIR",
	"UNLINK", "RMDIR", "SYMLINK", "RENAME", "LINK", "OPEN", "READ",
	"WRITE", "STATFS", "RELEASE", "FSYNC", "GETXATTR", "LISTXATTR",
	"FLUSH", "OPENDIR", "READDIR", "RELEASEDIR", "GETLK", "SETLK",
	"CREATE", "FLOCK",
};

static atomic_uint_fast64_t counts[OC_MAX];
static atomic_uint_fast64_t write_bytes;	/* payload of WRITEs */
static struct fuse_lowlevel_ops inner;		/* what the counters wrap */

#define BUMP(k)	atomic_fetch_add_explicit(&counts[k], 1, memory_order_relaxed)

static void
c_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	BUMP(OC_LOOKUP);
	inner.lookup(req, parent, name);
}

static void
c_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	BUMP(OC_FORGET);
	inner.forget(req, ino, nlookup);
}

static void
c_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	BUMP(OC_FORGET);
	inner.forget_multi(req, count, f);
}

static void
c_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_GETATTR);
	inner.getattr(req, ino, fi);
}

static void
c_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st, int set,
    struct fuse_file_info *fi)
{
	BUMP(OC_SETATTR);
	inner.setattr(req, ino, st, set, fi);
}

static void
c_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	BUMP(OC_MKNOD);
	inner.mknod(req, parent, name, mode, rdev);
}

static void
c_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	BUMP(OC_MKDIR);
	inner.mkdir(req, parent, name, mode);
}

static void
c_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	BUMP(OC_UNLINK);
	inner.unlink(req, parent, name);
}

static void
c_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	BUMP(OC_RMDIR);
	inner.rmdir(req, parent, name);
}

static void
c_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
    const char *name)
{
	BUMP(OC_SYMLINK);
	inner.symlink(req, link, parent, name);
}

static void
c_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	BUMP(OC_RENAME);
	inner.rename(req, parent, name, newparent, newname, flags);
}

static void
c_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	BUMP(OC_LINK);
	inner.link(req, ino, newparent, newname);
}

static void
c_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_OPEN);
	inner.open(req, ino, fi);
}

static void
c_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	BUMP(OC_READ);
	inner.read(req, ino, size, off, fi);
}

static void
c_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	BUMP(OC_WRITE);
	atomic_fetch_add_explicit(&write_bytes, size, memory_order_relaxed);
	inner.write(req, ino, buf, size, off, fi);
}

static void
c_statfs(fuse_req_t req, fuse_ino_t ino)
{
	BUMP(OC_STATFS);
	inner.statfs(req, ino);
}

static void
c_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_RELEASE);
	inner.release(req, ino, fi);
}

static void
c_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	BUMP(OC_FSYNC);
	inner.fsync(req, ino, datasync, fi);
}

static void
c_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	BUMP(OC_GETXATTR);
	inner.getxattr(req, ino, name, size);
}

static void
c_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	BUMP(OC_LISTXATTR);
	inner.listxattr(req, ino, size);
}

static void
c_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_FLUSH);
	inner.flush(req, ino, fi);
}

static void
c_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_OPENDIR);
	inner.opendir(req, ino, fi);
}

static void
c_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	BUMP(OC_READDIR);
	inner.readdir(req, ino, size, off, fi);
}

static void
c_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	BUMP(OC_RELEASEDIR);
	inner.releasedir(req, ino, fi);
}

static void
c_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
    struct flock *lock)
{
	BUMP(OC_GETLK);
	inner.getlk(req, ino, fi, lock);
}

static void
c_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
    struct flock *lock, int sleep)
{
	BUMP(OC_SETLK);
	inner.setlk(req, ino, fi, lock, sleep);
}

static void
c_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	BUMP(OC_CREATE);
	inner.create(req, parent, name, mode, fi);
}

static void
c_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	BUMP(OC_FLOCK);
	inner.flock(req, ino, fi, op);
}

/* Put a counter in front of each op that |ops| has. Called once, before
 * the session exists. */
void
opcount_wrap(struct fuse_lowlevel_ops *ops)
{
	inner = *ops;
#define WRAP(f)	do { if (ops->f) ops->f = c_##f; } while (0)
	WRAP(lookup);
	WRAP(forget);
	WRAP(forget_multi);
	WRAP(getattr);
	WRAP(setattr);
	WRAP(mknod);
	WRAP(mkdir);
	WRAP(unlink);
	WRAP(rmdir);
	WRAP(symlink);
	WRAP(rename);
	WRAP(link);
	WRAP(open);
	WRAP(read);
	WRAP(write);
	WRAP(statfs);
	WRAP(release);
	WRAP(fsync);
	WRAP(getxattr);
	WRAP(listxattr);
	WRAP(flush);
	WRAP(opendir);
	WRAP(readdir);
	WRAP(releasedir);
	WRAP(getlk);
	WRAP(setlk);
	WRAP(create);
	WRAP(flock);
#undef WRAP
}

/*
 * The counts so far as text, "kernel NAME N" lines for the kernel's
 * requests, "kernel WRITE_BYTES N", then "store NAME N" for the store
 * requests sent; counters still at 0 are left out. Returns the length it
 * needs (like snprintf; what fits is written, NUL-terminated if cap > 0).
 */
size_t
opcount_format(char *buf, size_t cap)
{
	size_t len = 0;
	unsigned i;
	uint64_t v;
	const char *name;
	int n;

#define PUT(...) do { \
	n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, \
	    __VA_ARGS__); \
	len += n > 0 ? (size_t)n : 0; \
} while (0)
	if (cap > 0)
		buf[0] = '\0';
	for (i = 0; i < OC_MAX; i++) {
		v = atomic_load_explicit(&counts[i], memory_order_relaxed);
		if (v)
			PUT("kernel %s %llu\n", oc_name[i],
			    (unsigned long long)v);
	}
	v = atomic_load_explicit(&write_bytes, memory_order_relaxed);
	if (v)
		PUT("kernel WRITE_BYTES %llu\n", (unsigned long long)v);
	for (i = 0; i < 256; i++) {
		v = mconn_op_count(i);
		name = mst_op_name(i);
		if (v && name)
			PUT("store %s %llu\n", name, (unsigned long long)v);
	}
#undef PUT
	return len;
}

/*
 * The same counts as "key=value" lines for user.mstore.stats:
 * "kernel_requests=N" and "store_requests=N" (totals), then
 * "kernel.NAME=N" and "store.NAME=N" for each counter above 0. Returns
 * the length it needs, like opcount_format.
 */
size_t
opcount_format_kv(char *buf, size_t cap)
{
	uint64_t v, kt = 0, st = 0;
	size_t len = 0;
	const char *name;
	unsigned i;
	int n;

#define PUT(...) do { \
	n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, \
	    __VA_ARGS__); \
	len += n > 0 ? (size_t)n : 0; \
} while (0)
	if (cap > 0)
		buf[0] = '\0';
	for (i = 0; i < OC_MAX; i++)
		kt += atomic_load_explicit(&counts[i], memory_order_relaxed);
	for (i = 0; i < 256; i++)
		if (mst_op_name(i))
			st += mconn_op_count(i);
	PUT("kernel_requests=%llu\nstore_requests=%llu\n",
	    (unsigned long long)kt, (unsigned long long)st);
	for (i = 0; i < OC_MAX; i++) {
		v = atomic_load_explicit(&counts[i], memory_order_relaxed);
		if (v)
			PUT("kernel.%s=%llu\n", oc_name[i],
			    (unsigned long long)v);
	}
	v = atomic_load_explicit(&write_bytes, memory_order_relaxed);
	PUT("kernel_write_bytes=%llu\n", (unsigned long long)v);
	for (i = 0; i < 256; i++) {
		v = mconn_op_count(i);
		name = mst_op_name(i);
		if (v && name)
			PUT("store.%s=%llu\n", name, (unsigned long long)v);
	}
#undef PUT
	return len;
}
