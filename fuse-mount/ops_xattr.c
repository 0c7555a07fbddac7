/*
 * ops_xattr.c - the mount's routing view, read-only, as extended
 * attributes (what `mstore-ctl cluster status` reads; see route.c):
 *
 *   user.mstore.servers  on the mount's root: one line per server ever
 *                        listed, "ADDR up|down|left[ home]";
 *   user.mstore.server   on any directory: the address of the server
 *                        that serves it as a mailbox now (DELIVER, LIST,
 *                        FETCH of its new/ and cur/), as the mount picks
 *                        it; on the root, and on a directory that cannot
 *                        be a mailbox, the home server;
 *   user.mstore.requests on the mount's root: the requests served so far
 *                        by kind, "kernel OP N" and "store OP N" lines
 *                        (opcount.c), for measuring what a workload
 *                        costs (tools/bench/mount-requests);
 *   user.mstore.stats    on the mount's root: every counter of the mount
 *                        as "key=value" lines (mstat.c, opcount.c, the
 *                        memory account), what `mstore-ctl mount-stats`
 *                        prints.
 *
 * Nothing goes to the store: the answers come from the router's table.
 * Every other name is ENODATA; nothing can be set (the kernel answers
 * EOPNOTSUPP, there being no setxattr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"
#include "mstat.h"

#define XA_SERVERS	"user.mstore.servers"
#define XA_SERVER	"user.mstore.server"
#define XA_REQUESTS	"user.mstore.requests"
#define XA_STATS	"user.mstore.stats"
#define XA_STATS_MAX	8192
#define XA_COUNTS_MAX	4096
#define XA_VIEW_MAX	(ROUTE_MAX * 80)

/* Reply with |len| bytes of |v| as xattr data (size 0: the length). */
static void
reply_value(fuse_req_t req, const char *v, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
}

/* The routing key of directory |ino|: its mailbox, as for the new/ in
 * it (or itself when it is a tmp/, new/ or cur/); "/" for the root and
 * for what cannot be a mailbox. 0, -ENOTDIR or -ESTALE. */
static int
dir_key(struct mount *m, fuse_ino_t ino, char *path, size_t cap,
    struct mst_str *key)
{
	struct mst_str folder;
	struct minode *n;
	size_t len;
	int rc;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n == NULL)
		rc = -ESTALE;
	else if (n->attr.type != MST_T_DIR)
		rc = -ENOTDIR;
	else
		rc = inode_path(n, path, cap - 4);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	*key = mst_str_of(ROUTE_HOME);
	if (inode_classify(m, path, key, &folder) != DK_PLAIN)
		return 0;
	len = strlen(path);
	memcpy(path + len, "/new", 5);
	if (inode_classify(m, path, key, &folder) == DK_PLAIN)
		*key = mst_str_of(ROUTE_HOME);
	return 0;
}

/* user.mstore.stats: the counters, then the memory account (m->mu),
 * then the request counts. Returns the length it needs. */
static size_t
stats_format(struct mount *m, char *buf, size_t cap)
{
	size_t len = 0, used, budget, peak;
	uint64_t evictions;
	unsigned i;
	int n;

	for (i = 0; i < MS_MAX; i++) {
		n = snprintf(len < cap ? buf + len : NULL, len < cap ?
		    cap - len : 0, "%s=%llu\n", mstat_name(i),
		    (unsigned long long)mstat_get(i));
		len += n > 0 ? (size_t)n : 0;
	}
	pthread_mutex_lock(&m->mu);
	used = m->mem_used;
	budget = m->mem_budget;
	peak = m->mem_peak;
	evictions = m->evictions;
	pthread_mutex_unlock(&m->mu);
	n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0,
	    "cache_bytes=%zu\ncache_budget_bytes=%zu\ncache_peak_bytes=%zu\n"
	    "cache_evictions=%llu\nconnected=%d\n", used, budget,
	    peak, (unsigned long long)evictions, route_connected(m->route));
	len += n > 0 ? (size_t)n : 0;
	return len + opcount_format_kv(len < cap ? buf + len : NULL,
	    len < cap ? cap - len : 0);
}

void
op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct mount *m = mount_of(req);
	char path[MST_PATH_MAX + 8], addr[256];
	struct mst_str key;
	char *view;
	size_t len;
	int rc;

	if (ino == FUSE_ROOT_ID && strcmp(name, XA_SERVERS) == 0) {
		view = malloc(XA_VIEW_MAX);
		if (view == NULL) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		len = route_view(m->route, view, XA_VIEW_MAX);
		if (len > XA_VIEW_MAX)
			fuse_reply_err(req, E2BIG);
		else
			reply_value(req, view, len, size);
		free(view);
		return;
	}
	if (ino == FUSE_ROOT_ID && strcmp(name, XA_REQUESTS) == 0) {
		char counts[XA_COUNTS_MAX];

		len = opcount_format(counts, sizeof counts);
		if (len >= sizeof counts)
			fuse_reply_err(req, E2BIG);
		else
			reply_value(req, counts, len, size);
		return;
	}
	if (ino == FUSE_ROOT_ID && strcmp(name, XA_STATS) == 0) {
		view = malloc(XA_STATS_MAX);
		if (view == NULL) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		len = stats_format(m, view, XA_STATS_MAX);
		if (len >= XA_STATS_MAX)
			fuse_reply_err(req, E2BIG);
		else
			reply_value(req, view, len, size);
		free(view);
		return;
	}
	if (strcmp(name, XA_SERVER) != 0) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	rc = dir_key(m, ino, path, sizeof path, &key);
	if (rc == -ENOTDIR) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (rc == 0)
		rc = route_server_of(m->route, key.p, key.len, addr,
		    sizeof addr);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_value(req, addr, (size_t)rc, size);
}

void
op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct mount *m = mount_of(req);
	static const char both[] = XA_SERVERS "\0" XA_SERVER "\0"
	    XA_REQUESTS "\0" XA_STATS;
	struct minode *n;
	int dir;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	dir = n != NULL && n->attr.type == MST_T_DIR;
	pthread_mutex_unlock(&m->mu);
	if (ino == FUSE_ROOT_ID)
		reply_value(req, both, sizeof both, size);
	else if (dir)
		reply_value(req, XA_SERVER, sizeof XA_SERVER, size);
	else
		reply_value(req, "", 0, size);
}
