/*
 * mstat.h - the mount's own counters beyond its request counts
 * (opcount.c): connections, retries, notices, cache hits and misses,
 * local buffers. Process-wide relaxed atomics that any thread bumps
 * without a lock; read by the root's user.mstore.stats (ops_xattr.c)
 * and `mstore-ctl mount-stats`. No FUSE types: the store client layer
 * (mconn.c, route.c) counts here too.
 */
#ifndef MST_MSTAT_H
#define MST_MSTAT_H

#include <stddef.h>
#include <stdint.h>

enum mstat {
	MS_CONNECTS,		/* connections to a store server made */
	MS_RECONNECTS,		/* of those, after one was lost */
	MS_RESENT,		/* requests sent again after a reconnection */
	MS_REROUTED,		/* requests sent again to another server */
	MS_TIMEOUTS,		/* requests failed at their deadline (EIO) */
	MS_NOTICES,		/* change notices (NOTIFY) received */
	MS_FOLDER_HITS,		/* new/ and cur/ answered from the cache */
	MS_FOLDER_MISSES,	/* ... that needed a LIST to the store */
	MS_NEG_HITS,		/* lookups of names known missing, answered
				   without the store (struct negset) */
	MS_FILE_HITS,		/* lookups of ordinary files' names, answered
				   without the store (minode.pos) */
	MS_BUF_WRITTEN,		/* bytes written into local buffers */
	MS_SPOOLS,		/* buffers moved to a spool file */
	MS_BUF_MEM,		/* gauge: bytes buffered in memory now */
	MS_BUF_SPOOL,		/* gauge: bytes in spool files now */
	MS_PT_OPENS,		/* opens answered with kernel passthrough */
	MS_MAX
};

/* Add |v| (a gauge may go down: add (uint64_t)-v). */
void mstat_add(enum mstat k, uint64_t v);
uint64_t mstat_get(enum mstat k);
/* "connects", "reconnects", ...: the key of user.mstore.stats. */
const char *mstat_name(enum mstat k);

/* opcount.c: the request counts as "key=value" lines (user.mstore.stats);
 * returns the length it needs, like snprintf. */
size_t opcount_format_kv(char *buf, size_t cap);

#endif /* MST_MSTAT_H */
