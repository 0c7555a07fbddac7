/*
 * lock.h - the store-granted file locks of mstored: POSIX record locks
 * (fcntl(2) F_SETLK, F_SETLKW, F_GETLK) and flock(2) locks on ordinary
 * files, keyed by object id, with the semantics Linux gives them on a
 * local file system (mstore-protocol(7), LOCK). A pure data structure:
 * no sockets, no clock, no threads; the network layer calls it on its
 * loop thread and sends what it returns.
 */
#ifndef MST_LOCK_H
#define MST_LOCK_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

/*
 * Bounds per connection, over which a request fails with ENOLCK (as
 * fcntl(2) does when the kernel's lock table is exhausted).
 *
 * LOCK_CONN_LOCKS_MAX: held lock ranges. A Dovecot index takes a handful
 * of locks per mailbox, so 65536 is far beyond any real client, yet it
 * caps the memory one connection can pin (about 6 MB) because locks have
 * no timeout and are freed only by their owner or its connection.
 *
 * LOCK_CONN_WAITERS_MAX: F_SETLKW / blocking flock requests waiting at
 * once. Each is a caller blocked on the client host, one FUSE request
 * each; 1024 matches the server's bound on jobs in flight per connection
 * (CONN_JOBS_MAX) and keeps one connection from queueing without limit.
 */
#define LOCK_CONN_LOCKS_MAX	65536u
#define LOCK_CONN_WAITERS_MAX	1024u

struct lock_table;
struct lock_conn;

/* A reply the table owes a connection for a request that waited: granted
 * (status 0, |rep| the lock), or failed (EINTR when cancelled, EDEADLK,
 * or ENOLCK or ENOMEM when the grant could not be recorded). */
struct lock_done {
	void *ctx;		/* the lock_conn's |ctx| */
	uint32_t req_id;	/* the waiting request's id */
	int status;		/* 0 or a negative errno */
	struct mst_lock_rep rep;
};

/* NULL when out of memory. */
struct lock_table *lock_table_new(void);
/* Every lock_conn must have been freed first. NULL does nothing. */
void lock_table_free(struct lock_table *t);

/*
 * One connection's share of the table: the owner of its locks and
 * waiting requests. |ctx| is handed back in lock_done. NULL when out of
 * memory.
 */
struct lock_conn *lock_conn_new(struct lock_table *t, void *ctx);
/*
 * The connection is gone: drop its locks and waiting requests without a
 * reply (and the replies queued for it), then retry the requests of
 * other connections that waited on them; their replies are queued for
 * lock_table_next. NULL does nothing.
 */
void lock_conn_free(struct lock_conn *lc);

/* What lock_request returns for a request that now waits. */
#define LOCK_QUEUED	1

/*
 * Handle one LOCK request of |lc| with request id |req_id|. A CANCEL
 * fails every waiting request of |lc| with the same owner and id with
 * EINTR (replies through lock_table_next) and is itself answered 0, type
 * MST_LK_UN, even when nothing waits: the grant may have crossed it.
 * Results:
 *  - 0: answered now; |rep_out| is the lock granted (for MST_LK_UN and
 *    a cancel, type MST_LK_UN) or, with MST_LKF_TEST, the first
 *    conflicting lock or type MST_LK_UN when there is none.
 *  - LOCK_QUEUED: with MST_LKF_WAIT and a conflict; the reply comes later
 *    through lock_table_next.
 *  - -EAGAIN: a conflict, without MST_LKF_WAIT.
 *  - -EDEADLK: a POSIX request with MST_LKF_WAIT would wait, through a
 *    chain of waiting owners, for a lock its own owner holds. A request
 *    already waiting can fail so too when it is retried (its reply then
 *    comes through lock_table_next).
 *  - -ENOLCK: over LOCK_CONN_LOCKS_MAX (also an unlock that would split
 *    one lock in two at the bound) or LOCK_CONN_WAITERS_MAX.
 *  - -EINVAL: a type that is not MST_LK_*, start after end, or flags
 *    that make no sense together (TEST with WAIT or CANCEL, TEST of
 *    MST_LK_UN, unknown bits).
 *  - -ENOMEM.
 * Any call may queue replies for other waiters; take them with
 * lock_table_next before handling the next request.
 */
int lock_request(struct lock_conn *lc, uint32_t req_id,
    const struct mst_lock_req *q, struct mst_lock_rep *rep_out);

/* Take the oldest queued reply: 1 and |*out| filled, or 0 when none. */
int lock_table_next(struct lock_table *t, struct lock_done *out);

/* One held lock, as lock_table_list reports it. */
struct lock_info {
	const struct lock_conn *conn;
	uint64_t owner;
	uint32_t pid;
	uint8_t type;		/* MST_LK_RD or MST_LK_WR */
	uint8_t flock;		/* 1: flock(2), whole file */
	uint64_t start;
	uint64_t end;
};

/*
 * The locks held on object |id|: POSIX locks by increasing start, then
 * flock locks in the order they were granted. Fills at
 * most |cap| and returns how many there are.
 */
size_t lock_table_list(const struct lock_table *t, uint64_t id,
    struct lock_info *out, size_t cap);

/*
 * A file's table kept elsewhere (the rados back-end keeps one per file in
 * the pool and runs this algorithm on a copy, see engine_rados_lock.c):
 *
 * lock_load attaches a held lock to |lc| on object |id| exactly as
 * |li| describes it (li->conn is ignored), without the conflict and
 * merge rules: the caller loads a table that obeyed them when it was
 * dumped with lock_table_list, in its order. 0, -EINVAL (type not RD or
 * WR, start after end, a flock lock that is not whole-file) or -ENOMEM.
 *
 * lock_conflict fills |out| with the first lock of another owner that
 * |q| (RD or WR) conflicts with, as lock_request would find it, owner
 * and connection included: 1, or 0 when there is none.
 */
int lock_load(struct lock_conn *lc, uint64_t id, const struct lock_info *li);
int lock_conflict(struct lock_conn *lc, const struct mst_lock_req *q,
    struct lock_info *out);

/* Counters for tests and stats. */
size_t lock_conn_nlocks(const struct lock_conn *lc);
size_t lock_conn_nwaiters(const struct lock_conn *lc);
/* Objects with any lock or waiter. */
size_t lock_table_nfiles(const struct lock_table *t);

#endif /* MST_LOCK_H */
