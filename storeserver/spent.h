/*
 * spent.h - idempotency ids of messages that were delivered and are gone
 * since (expunged, unlinked, or replaced by a rename over them), each
 * with the attributes its delivery was answered with. The local engine
 * looks a DELIVER, STAGE or COMMIT up here when no message carries its
 * id any more: a resend from a mount that lost the first answer, after
 * the message was expunged, is then answered like the first delivery
 * and stores nothing (mstore-protocol(7), "Idempotency").
 *
 * The index owns one (index.h): index_apply() adds a message's id when
 * it drops the message (a staged body never committed is not a
 * delivery and is not added), so the table is rebuilt by replay like
 * the rest of the index, and checkpoint.c saves and loads it.
 *
 * Bounded two ways: an entry goes once it is older than the window (by
 * the time of its removal, against the newest removal: no clock here),
 * and the oldest goes when the table holds |max| entries. Lookups are
 * one hash probe; adds are amortised O(1). Not thread-safe: guarded as
 * the index is.
 */
#ifndef MST_SPENT_H
#define MST_SPENT_H

#include <stdint.h>

#include "mstproto.h"

#define SPENT_WINDOW_S	3600u		/* default window, seconds */
#define SPENT_MAX	262144u		/* default most entries (~19 MiB) */

struct spent_ent {
	uint8_t idem[MST_IDEM_LEN];
	uint64_t id;		/* the message's object id */
	uint64_t size;
	uint64_t change;	/* lsn of its removal */
	int64_t mtime_ns;
	int64_t gone_ns;	/* when it was removed (the record's clock) */
	uint32_t mode, uid, gid;
	uint32_t next;		/* hash chain: ring slot + 1, 0 ends it */
};

struct spent;

/* An empty table with the default bounds, or NULL (out of memory). */
struct spent *spent_new(void);
void spent_free(struct spent *s);
/* Bounds: |window_s| seconds and |max| entries (0: the defaults). */
void spent_bounds(struct spent *s, unsigned window_s, unsigned max);
/* Remember |e| (its |next| is ignored). Entries older than the window
 * before it, and the oldest beyond |max|, are dropped. 0 or -ENOMEM
 * (then |e| is not remembered; the table is intact). */
int spent_add(struct spent *s, const struct spent_ent *e);
const struct spent_ent *spent_find(const struct spent *s,
    const uint8_t idem[MST_IDEM_LEN]);
/* Entries oldest first: the count, and the |i|th. */
uint32_t spent_count(const struct spent *s);
const struct spent_ent *spent_at(const struct spent *s, uint32_t i);

#endif /* MST_SPENT_H */
