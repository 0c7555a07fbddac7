/*
 * check_lock.c - Check suite for storeserver/lock.c, the lock table,
 * driven directly (no sockets): POSIX range merge, split and conversion,
 * conflicts, EAGAIN, waiting and FIFO wake order, EDEADLK, cancel, a closed
 * connection waking waiters, flock beside POSIX, F_GETLK, the bounds,
 * and a table dumped and loaded into another (lock_load, lock_conflict).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "mstproto.h"

#define EOF_	MST_LK_EOF
#define RD	MST_LK_RD
#define WR	MST_LK_WR
#define UN	MST_LK_UN
#define FILE_ID	7u

static struct lock_table *t;
static struct lock_conn *ca, *cb, *cc;
static int ctx_a, ctx_b, ctx_c;

static void
setup(void)
{
	t = lock_table_new();
	ck_assert_ptr_nonnull(t);
	ca = lock_conn_new(t, &ctx_a);
	cb = lock_conn_new(t, &ctx_b);
	cc = lock_conn_new(t, &ctx_c);
	ck_assert(ca && cb && cc);
}

static void
teardown(void)
{
	struct lock_done d;

	lock_conn_free(ca);
	lock_conn_free(cb);
	lock_conn_free(cc);
	while (lock_table_next(t, &d))
		;
	ck_assert_uint_eq(lock_table_nfiles(t), 0);
	lock_table_free(t);
}

/* One request on FILE_ID; returns lock_request's result. */
static int
req(struct lock_conn *lc, uint32_t rid, uint64_t owner, unsigned type,
    unsigned flags, uint64_t start, uint64_t end, struct mst_lock_rep *rep)
{
	struct mst_lock_req q = {
		.id = FILE_ID,
		.owner = owner,
		.pid = 1000 + (uint32_t)owner,
		.type = (uint8_t)type,
		.flags = (uint8_t)flags,
		.start = start,
		.end = end,
	};
	struct mst_lock_rep junk;

	return lock_request(lc, rid, &q, rep ? rep : &junk);
}

static int
posix(struct lock_conn *lc, uint64_t owner, unsigned type, uint64_t start,
    uint64_t end)
{
	return req(lc, 1, owner, type, 0, start, end, NULL);
}

/* No reply is queued. */
static void
no_done(void)
{
	struct lock_done d;

	ck_assert_msg(!lock_table_next(t, &d), "unexpected reply for id %u "
	    "(status %d)", d.req_id, d.status);
}

/* The next queued reply is for |rid| of |ctx| with |status|. */
static void
want_done(void *ctx, uint32_t rid, int status)
{
	struct lock_done d;

	ck_assert_msg(lock_table_next(t, &d), "no reply, want id %u", rid);
	ck_assert_msg(d.ctx == ctx && d.req_id == rid && d.status == status,
	    "got reply id %u status %d, want id %u status %d", d.req_id,
	    d.status, rid, status);
}

/* ---- ranges of one owner ---- */

struct op {
	unsigned type;
	uint64_t start, end;
};

struct range {
	unsigned type;
	uint64_t start, end;
};

static const struct {
	const char *name;
	struct op ops[4];
	struct range want[4];
} range_cases[] = {
	{ "unlock splits a write lock",
	  { { WR, 0, 99 }, { UN, 10, 19 } },
	  { { WR, 0, 9 }, { WR, 20, 99 } } },
	{ "read inside a write lock converts that part",
	  { { WR, 0, 99 }, { RD, 10, 19 } },
	  { { WR, 0, 9 }, { RD, 10, 19 }, { WR, 20, 99 } } },
	{ "adjacent ranges of one type merge",
	  { { RD, 0, 9 }, { RD, 10, 19 } },
	  { { RD, 0, 19 } } },
	{ "adjacent below merges too",
	  { { RD, 10, 19 }, { RD, 0, 9 } },
	  { { RD, 0, 19 } } },
	{ "a range bridging two merges all three",
	  { { RD, 0, 9 }, { RD, 20, 29 }, { RD, 5, 25 } },
	  { { RD, 0, 29 } } },
	{ "converting the middle joins its neighbours",
	  { { RD, 0, 9 }, { WR, 10, 19 }, { RD, 20, 29 }, { RD, 10, 19 } },
	  { { RD, 0, 29 } } },
	{ "adjacent ranges of different types stay apart",
	  { { WR, 0, 9 }, { RD, 10, 19 } },
	  { { WR, 0, 9 }, { RD, 10, 19 } } },
	{ "write to end of file over the tail of a read",
	  { { RD, 0, 99 }, { WR, 50, EOF_ } },
	  { { RD, 0, 49 }, { WR, 50, EOF_ } } },
	{ "unlock to end of file trims",
	  { { WR, 0, EOF_ }, { UN, 100, EOF_ } },
	  { { WR, 0, 99 } } },
	{ "unlock across two locks trims both",
	  { { WR, 0, 9 }, { WR, 20, 29 }, { UN, 5, 24 } },
	  { { WR, 0, 4 }, { WR, 25, 29 } } },
	{ "unlock of the first byte of everything",
	  { { RD, 0, EOF_ }, { UN, 0, 0 } },
	  { { RD, 1, EOF_ } } },
	{ "unlock of the last byte of everything",
	  { { RD, 0, EOF_ }, { UN, EOF_, EOF_ } },
	  { { RD, 0, EOF_ - 1 } } },
	{ "unlock of all removes all",
	  { { WR, 10, 19 }, { RD, 30, 39 }, { UN, 0, EOF_ } },
	  { { 0, 0, 0 } } },
	{ "relocking the same range with the same type changes nothing",
	  { { WR, 5, 9 }, { WR, 5, 9 } },
	  { { WR, 5, 9 } } },
	{ "write over a read entirely replaces it",
	  { { RD, 10, 19 }, { WR, 0, 29 } },
	  { { WR, 0, 29 } } },
};

START_TEST(posix_ranges_merge_split_and_convert)
{
	struct lock_info got[8];
	size_t i, n, nwant = 0;

	for (i = 0; i < 4 && range_cases[_i].ops[i].type; i++)
		ck_assert_int_eq(posix(ca, 1, range_cases[_i].ops[i].type,
		    range_cases[_i].ops[i].start, range_cases[_i].ops[i].end),
		    0);
	while (nwant < 4 && range_cases[_i].want[nwant].type)
		nwant++;
	n = lock_table_list(t, FILE_ID, got, 8);
	ck_assert_msg(n == nwant, "%s: got %zu locks, want %zu",
	    range_cases[_i].name, n, nwant);
	for (i = 0; i < n; i++)
		ck_assert_msg(got[i].type == range_cases[_i].want[i].type &&
		    got[i].start == range_cases[_i].want[i].start &&
		    got[i].end == range_cases[_i].want[i].end,
		    "%s: lock %zu: got %u [%llu, %llu], want %u [%llu, %llu]",
		    range_cases[_i].name, i, got[i].type,
		    (unsigned long long)got[i].start,
		    (unsigned long long)got[i].end,
		    range_cases[_i].want[i].type,
		    (unsigned long long)range_cases[_i].want[i].start,
		    (unsigned long long)range_cases[_i].want[i].end);
	ck_assert_uint_eq(lock_conn_nlocks(ca), n);
}
END_TEST

/* ---- conflicts ---- */

static const struct {
	unsigned held, asked;
	uint64_t start, end;	/* asked range; held is [10, 19] */
	int want;
} conflict_cases[] = {
	{ RD, RD, 15, 25, 0 },
	{ RD, WR, 15, 25, -EAGAIN },
	{ WR, RD, 15, 25, -EAGAIN },
	{ WR, WR, 15, 25, -EAGAIN },
	{ WR, WR, 0, 9, 0 },		/* touching is not overlapping */
	{ WR, WR, 20, EOF_, 0 },
	{ WR, RD, 19, 19, -EAGAIN },	/* the last byte is locked */
	{ RD, WR, 0, EOF_, -EAGAIN },
};

START_TEST(conflict_needs_another_owner_an_overlap_and_a_write)
{
	struct lock_info got[4];

	ck_assert_int_eq(posix(ca, 1, conflict_cases[_i].held, 10, 19), 0);
	ck_assert_msg(posix(cb, 2, conflict_cases[_i].asked,
	    conflict_cases[_i].start, conflict_cases[_i].end) ==
	    conflict_cases[_i].want, "case %d: held %u [10,19], asked %u "
	    "[%llu,%llu]: want %d", _i, conflict_cases[_i].held,
	    conflict_cases[_i].asked,
	    (unsigned long long)conflict_cases[_i].start,
	    (unsigned long long)conflict_cases[_i].end,
	    conflict_cases[_i].want);
	/* The holder's lock is untouched either way. */
	ck_assert_uint_ge(lock_table_list(t, FILE_ID, got, 4), 1);
	ck_assert_int_eq(lock_conn_nlocks(ca), 1);
}
END_TEST

START_TEST(owner_is_the_connection_and_the_owner_field)
{
	ck_assert_int_eq(posix(ca, 1, WR, 0, 9), 0);
	/* Same connection, same owner: its own lock never conflicts. */
	ck_assert_int_eq(posix(ca, 1, WR, 5, 14), 0);
	/* Same connection, another owner (another process). */
	ck_assert_int_eq(posix(ca, 2, RD, 0, 0), -EAGAIN);
	/* Another connection with the same owner number. */
	ck_assert_int_eq(posix(cb, 1, RD, 0, 0), -EAGAIN);
	/* Another object is another lock space. */
	{
		struct mst_lock_req q = { .id = FILE_ID + 1, .owner = 2,
		    .type = WR, .start = 0, .end = EOF_ };
		struct mst_lock_rep r;

		ck_assert_int_eq(lock_request(cb, 9, &q, &r), 0);
		q.type = UN;
		ck_assert_int_eq(lock_request(cb, 10, &q, &r), 0);
	}
}
END_TEST

START_TEST(eagain_leaves_the_requesters_locks_as_they_were)
{
	struct lock_info got[4];
	size_t n;

	ck_assert_int_eq(posix(ca, 1, WR, 50, 59), 0);
	ck_assert_int_eq(posix(cb, 2, RD, 0, 99), -EAGAIN);
	ck_assert_int_eq(posix(cb, 2, WR, 0, 9), 0);
	/* Would convert [0,9] and extend into A's range: refused whole. */
	ck_assert_int_eq(posix(cb, 2, RD, 0, 55), -EAGAIN);
	n = lock_table_list(t, FILE_ID, got, 4);
	ck_assert_uint_eq(n, 2);
	ck_assert(got[0].conn == cb && got[0].type == WR &&
	    got[0].start == 0 && got[0].end == 9);
	ck_assert(got[1].conn == ca && got[1].start == 50);
}
END_TEST

START_TEST(grant_reply_is_the_lock_as_requested)
{
	struct mst_lock_rep r;

	ck_assert_int_eq(req(ca, 1, 3, WR, 0, 10, 20, &r), 0);
	ck_assert_uint_eq(r.type, WR);
	ck_assert_uint_eq(r.pid, 1003);
	ck_assert_uint_eq(r.start, 10);
	ck_assert_uint_eq(r.end, 20);
	ck_assert_int_eq(req(ca, 2, 3, UN, 0, 0, EOF_, &r), 0);
	ck_assert_uint_eq(r.type, UN);
	ck_assert_uint_eq(lock_table_nfiles(t), 0);
}
END_TEST

/* ---- F_GETLK ---- */

START_TEST(test_reports_the_first_conflict_and_takes_nothing)
{
	struct mst_lock_rep r;

	ck_assert_int_eq(posix(ca, 4, RD, 100, 199), 0);
	ck_assert_int_eq(posix(cb, 5, WR, 300, EOF_), 0);
	ck_assert_int_eq(req(cc, 1, 6, WR, MST_LKF_TEST, 0, EOF_, &r), 0);
	ck_assert_uint_eq(r.type, RD);
	ck_assert_uint_eq(r.pid, 1004);
	ck_assert_uint_eq(r.start, 100);
	ck_assert_uint_eq(r.end, 199);
	/* A read conflicts only with the write lock. */
	ck_assert_int_eq(req(cc, 2, 6, RD, MST_LKF_TEST, 0, EOF_, &r), 0);
	ck_assert_uint_eq(r.type, WR);
	ck_assert_uint_eq(r.pid, 1005);
	ck_assert_uint_eq(r.start, 300);
	ck_assert_uint_eq(r.end, EOF_);
	/* Nothing in the way, and the owner's own locks never are. */
	ck_assert_int_eq(req(cc, 3, 6, WR, MST_LKF_TEST, 200, 299, &r), 0);
	ck_assert_uint_eq(r.type, UN);
	ck_assert_int_eq(req(ca, 4, 4, WR, MST_LKF_TEST, 100, 199, &r), 0);
	ck_assert_uint_eq(r.type, UN);
	ck_assert_uint_eq(lock_conn_nlocks(cc), 0);
	ck_assert_int_eq(req(cc, 5, 6, WR, MST_LKF_TEST | MST_LKF_FLOCK, 0,
	    0, &r), 0);
	ck_assert_uint_eq(r.type, UN);
}
END_TEST

/* ---- waiting ---- */

START_TEST(waiters_are_granted_in_arrival_order)
{
	/* A holds; B and C want writes, D a read, all waiting. */
	ck_assert_int_eq(posix(ca, 1, WR, 0, EOF_), 0);
	ck_assert_int_eq(req(cb, 20, 2, WR, MST_LKF_WAIT, 0, 9, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 30, 3, WR, MST_LKF_WAIT, 5, 5, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(ca, 40, 4, RD, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	no_done();
	ck_assert_uint_eq(lock_conn_nwaiters(cb), 1);

	ck_assert_int_eq(posix(ca, 1, UN, 0, EOF_), 0);
	want_done(&ctx_b, 20, 0);	/* first come, and the others */
	no_done();			/* conflict with it */
	ck_assert_int_eq(posix(cb, 2, UN, 0, EOF_), 0);
	want_done(&ctx_c, 30, 0);
	want_done(&ctx_a, 40, 0);	/* [0,0] is clear of [5,5] */
	no_done();
	ck_assert_uint_eq(lock_conn_nwaiters(cb), 0);
	ck_assert_uint_eq(lock_conn_nlocks(cc), 1);
	ck_assert_uint_eq(lock_conn_nlocks(ca), 1);
}
END_TEST

START_TEST(every_waiter_that_no_longer_conflicts_is_granted)
{
	ck_assert_int_eq(posix(ca, 1, WR, 0, 9), 0);
	ck_assert_int_eq(posix(ca, 1, WR, 20, 29), 0);
	ck_assert_int_eq(req(cb, 2, 2, RD, MST_LKF_WAIT, 0, 29, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 3, 3, RD, MST_LKF_WAIT, 0, 29, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 4, 4, WR, MST_LKF_WAIT, 25, 25, NULL),
	    LOCK_QUEUED);
	/* Half the way cleared: still waiting. */
	ck_assert_int_eq(posix(ca, 1, UN, 0, 9), 0);
	no_done();
	/* A downgrade to read is enough for the readers. */
	ck_assert_int_eq(posix(ca, 1, RD, 20, 29), 0);
	want_done(&ctx_b, 2, 0);
	want_done(&ctx_c, 3, 0);
	no_done();			/* the writer waits for all three */
	ck_assert_uint_eq(lock_conn_nwaiters(cc), 1);
}
END_TEST

START_TEST(new_request_is_granted_past_waiters_when_clear)
{
	ck_assert_int_eq(posix(ca, 1, RD, 0, 9), 0);
	ck_assert_int_eq(req(cb, 2, 2, WR, MST_LKF_WAIT, 0, 9, NULL),
	    LOCK_QUEUED);
	/* Linux has no fairness: a compatible reader gets in. */
	ck_assert_int_eq(posix(cc, 3, RD, 0, 9), 0);
	ck_assert_int_eq(posix(ca, 1, UN, 0, 9), 0);
	no_done();
	ck_assert_int_eq(posix(cc, 3, UN, 0, 9), 0);
	want_done(&ctx_b, 2, 0);
}
END_TEST

START_TEST(waiting_upgrade_is_granted_when_the_other_reader_leaves)
{
	struct lock_info got[2];

	ck_assert_int_eq(posix(ca, 1, RD, 0, 99), 0);
	ck_assert_int_eq(posix(cb, 2, RD, 0, 99), 0);
	ck_assert_int_eq(req(ca, 7, 1, WR, MST_LKF_WAIT, 0, 99, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(posix(cb, 2, UN, 0, EOF_), 0);
	want_done(&ctx_a, 7, 0);
	ck_assert_uint_eq(lock_table_list(t, FILE_ID, got, 2), 1);
	ck_assert_uint_eq(got[0].type, WR);
}
END_TEST

START_TEST(waiting_for_oneself_through_others_is_edeadlk)
{
	/* A holds 0, B holds 1, C holds 2. */
	ck_assert_int_eq(posix(ca, 1, WR, 0, 0), 0);
	ck_assert_int_eq(posix(cb, 2, WR, 1, 1), 0);
	ck_assert_int_eq(posix(cc, 3, WR, 2, 2), 0);
	/* A waits for B, B for C: a chain, no cycle yet. */
	ck_assert_int_eq(req(ca, 10, 1, WR, MST_LKF_WAIT, 1, 1, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cb, 20, 2, WR, MST_LKF_WAIT, 2, 2, NULL),
	    LOCK_QUEUED);
	/* C waiting for A would close it. */
	ck_assert_int_eq(req(cc, 30, 3, WR, MST_LKF_WAIT, 0, 0, NULL),
	    -EDEADLK);
	/* Without WAIT it is a plain conflict; another owner on C's
	 * connection is not in the cycle. */
	ck_assert_int_eq(req(cc, 31, 3, WR, 0, 0, 0, NULL), -EAGAIN);
	ck_assert_int_eq(req(cc, 32, 4, WR, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	no_done();
	/* C gives way: B, then A, then C's other owner get their turn. */
	ck_assert_int_eq(posix(cc, 3, UN, 0, EOF_), 0);
	want_done(&ctx_b, 20, 0);
	no_done();
	ck_assert_int_eq(posix(cb, 2, UN, 0, EOF_), 0);
	want_done(&ctx_a, 10, 0);
	ck_assert_int_eq(posix(ca, 1, UN, 0, EOF_), 0);
	want_done(&ctx_c, 32, 0);
}
END_TEST

START_TEST(two_owners_of_one_connection_can_deadlock)
{
	ck_assert_int_eq(posix(ca, 1, RD, 0, 9), 0);
	ck_assert_int_eq(posix(ca, 2, RD, 10, 19), 0);
	ck_assert_int_eq(req(ca, 5, 1, WR, MST_LKF_WAIT, 10, 10, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(ca, 6, 2, WR, MST_LKF_WAIT, 0, 0, NULL),
	    -EDEADLK);
	/* flock has no deadlock detection, as on Linux. */
	ck_assert_int_eq(req(cb, 7, 1, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_int_eq(req(cb, 8, 2, WR, MST_LKF_FLOCK | MST_LKF_WAIT, 0, 0,
	    NULL), LOCK_QUEUED);
	ck_assert_int_eq(posix(ca, 2, UN, 0, EOF_), 0);
	want_done(&ctx_a, 5, 0);
	no_done();
}
END_TEST

START_TEST(cancel_fails_the_waiting_request_with_eintr)
{
	struct mst_lock_rep r;

	ck_assert_int_eq(posix(ca, 1, WR, 0, 9), 0);
	ck_assert_int_eq(req(cb, 11, 2, WR, MST_LKF_WAIT, 0, 9, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 12, 2, WR, MST_LKF_WAIT, 0, 9, NULL),
	    LOCK_QUEUED);
	/* Another owner's cancel touches nothing of B's. */
	ck_assert_int_eq(req(cb, 13, 3, WR, MST_LKF_CANCEL, 0, 9, &r), 0);
	no_done();
	ck_assert_int_eq(req(cb, 14, 2, WR, MST_LKF_CANCEL, 0, 9, &r), 0);
	ck_assert_uint_eq(r.type, UN);
	want_done(&ctx_b, 11, -EINTR);
	no_done();
	ck_assert_uint_eq(lock_conn_nwaiters(cb), 0);
	/* C (same owner number, another connection) still waits. */
	ck_assert_int_eq(posix(ca, 1, UN, 0, 9), 0);
	want_done(&ctx_c, 12, 0);
	/* Cancelling when nothing waits is still OK. */
	ck_assert_int_eq(req(cb, 15, 2, WR, MST_LKF_CANCEL, 0, 9, &r), 0);
	no_done();
}
END_TEST

START_TEST(closed_connection_wakes_its_waiters_and_gets_no_replies)
{
	ck_assert_int_eq(posix(ca, 1, WR, 0, EOF_), 0);
	ck_assert_int_eq(req(ca, 2, 1, RD, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_int_eq(req(cb, 21, 2, RD, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 31, 3, WR, MST_LKF_WAIT | MST_LKF_FLOCK, 0,
	    0, NULL), LOCK_QUEUED);
	ck_assert_int_eq(req(cc, 32, 3, WR, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	/* C goes: its waiters vanish without a reply. */
	lock_conn_free(cc);
	cc = NULL;
	no_done();
	ck_assert_uint_eq(lock_conn_nwaiters(cb), 1);
	/* A goes: B's read is granted. */
	lock_conn_free(ca);
	ca = NULL;
	want_done(&ctx_b, 21, 0);
	no_done();
	ck_assert_uint_eq(lock_conn_nlocks(cb), 1);
}
END_TEST

START_TEST(replies_queued_for_a_closed_connection_are_dropped)
{
	ck_assert_int_eq(posix(ca, 1, WR, 0, 0), 0);
	ck_assert_int_eq(req(cb, 5, 2, WR, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(posix(ca, 1, UN, 0, 0), 0);
	/* B's grant is queued; B closes before it is sent. */
	lock_conn_free(cb);
	cb = NULL;
	no_done();
	ck_assert_int_eq(posix(cc, 3, WR, 0, 0), 0);
}
END_TEST

/* ---- flock ---- */

START_TEST(flock_and_posix_never_conflict)
{
	ck_assert_int_eq(posix(ca, 1, WR, 0, EOF_), 0);
	ck_assert_int_eq(req(cb, 1, 2, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	/* Each kind still conflicts within itself. */
	ck_assert_int_eq(req(ca, 1, 1, RD, MST_LKF_FLOCK, 0, 0, NULL),
	    -EAGAIN);
	ck_assert_int_eq(posix(cb, 2, RD, 0, 0), -EAGAIN);
	/* Unlocking one kind leaves the other. */
	ck_assert_int_eq(req(cb, 1, 2, UN, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_int_eq(posix(cb, 2, RD, 0, 0), -EAGAIN);
	ck_assert_int_eq(req(ca, 1, 1, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_uint_eq(lock_conn_nlocks(ca), 2);
}
END_TEST

START_TEST(flock_shared_then_converted_by_its_owner)
{
	struct lock_info got[4];
	struct mst_lock_rep r;

	ck_assert_int_eq(req(ca, 1, 1, RD, MST_LKF_FLOCK, 0, 0, &r), 0);
	ck_assert_uint_eq(r.start, 0);
	ck_assert_uint_eq(r.end, EOF_);
	ck_assert_int_eq(req(cb, 1, 2, RD, MST_LKF_FLOCK, 0, 0, NULL), 0);
	/* B's upgrade conflicts with A's shared lock. As flock(2) says,
	 * conversion is not atomic: B's shared lock is gone. */
	ck_assert_int_eq(req(cb, 2, 2, WR, MST_LKF_FLOCK, 0, 0, NULL),
	    -EAGAIN);
	ck_assert_uint_eq(lock_conn_nlocks(cb), 0);
	/* A alone now: its upgrade succeeds and is one lock. */
	ck_assert_int_eq(req(ca, 2, 1, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_uint_eq(lock_table_list(t, FILE_ID, got, 4), 1);
	ck_assert_uint_eq(got[0].type, WR);
	ck_assert_uint_eq(got[0].flock, 1);
	/* Downgrade, and B's shared lock fits again. */
	ck_assert_int_eq(req(ca, 3, 1, RD, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_int_eq(req(cb, 3, 2, RD, MST_LKF_FLOCK, 0, 0, NULL), 0);
}
END_TEST

START_TEST(blocking_flock_waits_for_the_holder)
{
	ck_assert_int_eq(req(ca, 1, 1, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	ck_assert_int_eq(req(cb, 8, 2, RD, MST_LKF_FLOCK | MST_LKF_WAIT, 0,
	    0, NULL), LOCK_QUEUED);
	ck_assert_int_eq(req(ca, 2, 1, UN, MST_LKF_FLOCK, 0, 0, NULL), 0);
	want_done(&ctx_b, 8, 0);
	ck_assert_uint_eq(lock_conn_nlocks(cb), 1);
}
END_TEST

/* ---- bounds and bad requests ---- */

START_TEST(bad_requests_are_einval)
{
	ck_assert_int_eq(posix(ca, 1, 0, 0, 9), -EINVAL);
	ck_assert_int_eq(posix(ca, 1, 4, 0, 9), -EINVAL);
	ck_assert_int_eq(posix(ca, 1, RD, 10, 9), -EINVAL);
	ck_assert_int_eq(req(ca, 1, 1, UN, MST_LKF_TEST, 0, 9, NULL),
	    -EINVAL);
	ck_assert_int_eq(req(ca, 1, 1, RD, MST_LKF_TEST | MST_LKF_WAIT, 0, 9,
	    NULL), -EINVAL);
	ck_assert_int_eq(req(ca, 1, 1, RD, 0x80, 0, 9, NULL), -EINVAL);
	ck_assert_uint_eq(lock_table_nfiles(t), 0);
}
END_TEST

START_TEST(locks_over_the_bound_are_enolck)
{
	struct mst_lock_req q = { .owner = 1, .type = RD, .end = EOF_ };
	struct mst_lock_rep r;
	uint64_t i;

	/* The bound is per connection, over all objects. */
	for (i = 0; i < LOCK_CONN_LOCKS_MAX - 3; i++) {
		q.id = 1000 + i;
		ck_assert_int_eq(lock_request(ca, 1, &q, &r), 0);
	}
	ck_assert_int_eq(posix(ca, 1, WR, 0, 0), 0);
	ck_assert_int_eq(posix(ca, 1, RD, 1, 1), 0);
	ck_assert_int_eq(posix(ca, 1, WR, 2, 2), 0);
	ck_assert_uint_eq(lock_conn_nlocks(ca), LOCK_CONN_LOCKS_MAX);
	ck_assert_int_eq(posix(ca, 1, RD, 100, 199), -ENOLCK);
	ck_assert_int_eq(req(ca, 1, 1, RD, MST_LKF_FLOCK, 0, 0, NULL),
	    -ENOLCK);
	/* A conversion that merges needs no more room. */
	ck_assert_int_eq(posix(ca, 1, WR, 0, 2), 0);
	ck_assert_uint_eq(lock_conn_nlocks(ca), LOCK_CONN_LOCKS_MAX - 2);
	ck_assert_int_eq(posix(ca, 1, RD, 10, 19), 0);
	ck_assert_int_eq(posix(ca, 1, RD, 30, 39), 0);
	/* At the bound, an unlock that would split a lock in two cannot;
	 * one that trims or removes can. */
	ck_assert_int_eq(posix(ca, 1, UN, 12, 13), -ENOLCK);
	ck_assert_int_eq(posix(ca, 1, UN, 10, 14), 0);
	ck_assert_int_eq(posix(ca, 1, UN, 30, 39), 0);
	ck_assert_uint_eq(lock_conn_nlocks(ca), LOCK_CONN_LOCKS_MAX - 1);
	/* Other connections are not held back by it. */
	ck_assert_int_eq(posix(cb, 2, RD, 100, 199), 0);
	ck_assert_int_eq(posix(ca, 1, RD, 100, 199), 0);
}
END_TEST

START_TEST(waiters_over_the_bound_are_enolck)
{
	uint32_t i;

	ck_assert_int_eq(posix(ca, 1, WR, 0, EOF_), 0);
	for (i = 0; i < LOCK_CONN_WAITERS_MAX; i++)
		ck_assert_int_eq(req(cb, 100 + i, 2 + i, RD, MST_LKF_WAIT, i,
		    i, NULL), LOCK_QUEUED);
	ck_assert_int_eq(req(cb, 99, 1, RD, MST_LKF_WAIT, 0, 0, NULL),
	    -ENOLCK);
	/* Without WAIT it is the conflict that answers. */
	ck_assert_int_eq(req(cb, 98, 1, RD, 0, 0, 0, NULL), -EAGAIN);
	ck_assert_int_eq(req(cc, 97, 1, RD, MST_LKF_WAIT, 0, 0, NULL),
	    LOCK_QUEUED);
	ck_assert_int_eq(posix(ca, 1, UN, 0, EOF_), 0);
	for (i = 0; i < LOCK_CONN_WAITERS_MAX; i++)
		want_done(&ctx_b, 100 + i, 0);
	want_done(&ctx_c, 97, 0);
	no_done();
}
END_TEST

START_TEST(many_objects_each_in_its_own_entry)
{
	struct mst_lock_req q = { .owner = 1, .type = WR, .end = EOF_ };
	struct mst_lock_rep r;
	uint64_t id;

	for (id = 1; id <= 5000; id++) {
		q.id = id;
		ck_assert_int_eq(lock_request(ca, 1, &q, &r), 0);
	}
	ck_assert_uint_eq(lock_table_nfiles(t), 5000);
	q.owner = 2;
	for (id = 1; id <= 5000; id += 997) {
		q.id = id;
		ck_assert_int_eq(lock_request(cb, 1, &q, &r), -EAGAIN);
	}
	q.id = 5001;
	ck_assert_int_eq(lock_request(cb, 1, &q, &r), 0);
	lock_conn_free(ca);
	ca = NULL;
	ck_assert_uint_eq(lock_table_nfiles(t), 1);
}
END_TEST

/* ---- a table kept elsewhere: dump, load into a fresh table, go on ---- */

START_TEST(dumped_table_loads_into_another_and_behaves_the_same)
{
	struct lock_table *t2 = lock_table_new();
	struct lock_conn *la = lock_conn_new(t2, &ctx_a);
	struct lock_conn *lb = lock_conn_new(t2, &ctx_b);
	struct lock_info li[8], li2[8], c;
	struct mst_lock_req q = { .id = FILE_ID, .owner = 2, .pid = 1002,
	    .type = WR, .start = 15, .end = 15 };
	struct mst_lock_rep r;
	size_t n, i;

	ck_assert(t2 && la && lb);
	ck_assert_int_eq(posix(ca, 1, RD, 0, 9), 0);
	ck_assert_int_eq(posix(ca, 1, WR, 20, 29), 0);
	ck_assert_int_eq(posix(cb, 2, RD, 5, 12), 0);
	ck_assert_int_eq(req(cb, 1, 3, WR, MST_LKF_FLOCK, 0, 0, NULL), 0);
	n = lock_table_list(t, FILE_ID, li, 8);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(lock_load(li[i].conn == ca ? la : lb,
		    FILE_ID, &li[i]), 0);
	ck_assert_uint_eq(lock_table_list(t2, FILE_ID, li2, 8), n);
	for (i = 0; i < n; i++) {
		ck_assert(li2[i].conn == (li[i].conn == ca ? la : lb));
		ck_assert(li2[i].owner == li[i].owner &&
		    li2[i].pid == li[i].pid && li2[i].type == li[i].type &&
		    li2[i].flock == li[i].flock &&
		    li2[i].start == li[i].start && li2[i].end == li[i].end);
	}
	/* The loaded copy decides as the original does. */
	ck_assert_int_eq(lock_conflict(lb, &q, &c), 0);
	q.start = q.end = 25;
	ck_assert_int_eq(lock_conflict(lb, &q, &c), 1);
	ck_assert(c.conn == la && c.owner == 1 && c.pid == 1001 &&
	    c.type == WR && c.start == 20 && c.end == 29);
	ck_assert_int_eq(lock_request(lb, 1, &q, &r), -EAGAIN);
	ck_assert_int_eq(lock_request(la, 1, &(struct
	    mst_lock_req){ .id = FILE_ID, .owner = 1, .type = UN,
	    .start = 0, .end = EOF_ }, &r), 0);
	ck_assert_int_eq(lock_request(lb, 1, &q, &r), 0);
	q.flags = MST_LKF_FLOCK;
	q.owner = 9;
	ck_assert_int_eq(lock_conflict(la, &q, &c), 1);
	ck_assert(c.conn == lb && c.owner == 3 && c.flock);
	/* Bad records are refused. */
	li[0].type = UN;
	ck_assert_int_eq(lock_load(la, FILE_ID, &li[0]), -EINVAL);
	li[0].type = RD;
	li[0].start = 10;
	li[0].end = 9;
	ck_assert_int_eq(lock_load(la, FILE_ID, &li[0]), -EINVAL);
	li[3].start = 1;
	ck_assert_int_eq(lock_load(la, FILE_ID, &li[3]), -EINVAL);
	lock_conn_free(la);
	lock_conn_free(lb);
	ck_assert_uint_eq(lock_table_nfiles(t2), 0);
	lock_table_free(t2);
}
END_TEST

static Suite *
lock_suite(void)
{
	Suite *s = suite_create("lock");
	TCase *tr = tcase_create("ranges");
	TCase *tw = tcase_create("waiting");
	TCase *tf = tcase_create("flock");
	TCase *tb = tcase_create("bounds");

	tcase_add_checked_fixture(tr, setup, teardown);
	tcase_add_loop_test(tr, posix_ranges_merge_split_and_convert, 0,
	    (int)(sizeof range_cases / sizeof range_cases[0]));
	tcase_add_loop_test(tr,
	    conflict_needs_another_owner_an_overlap_and_a_write, 0,
	    (int)(sizeof conflict_cases / sizeof conflict_cases[0]));
	tcase_add_test(tr, owner_is_the_connection_and_the_owner_field);
	tcase_add_test(tr, eagain_leaves_the_requesters_locks_as_they_were);
	tcase_add_test(tr, grant_reply_is_the_lock_as_requested);
	tcase_add_test(tr, test_reports_the_first_conflict_and_takes_nothing);
	tcase_add_test(tr,
	    dumped_table_loads_into_another_and_behaves_the_same);
	suite_add_tcase(s, tr);

	tcase_add_checked_fixture(tw, setup, teardown);
	tcase_add_test(tw, waiters_are_granted_in_arrival_order);
	tcase_add_test(tw, every_waiter_that_no_longer_conflicts_is_granted);
	tcase_add_test(tw, new_request_is_granted_past_waiters_when_clear);
	tcase_add_test(tw,
	    waiting_upgrade_is_granted_when_the_other_reader_leaves);
	tcase_add_test(tw, waiting_for_oneself_through_others_is_edeadlk);
	tcase_add_test(tw, two_owners_of_one_connection_can_deadlock);
	tcase_add_test(tw, cancel_fails_the_waiting_request_with_eintr);
	tcase_add_test(tw,
	    closed_connection_wakes_its_waiters_and_gets_no_replies);
	tcase_add_test(tw, replies_queued_for_a_closed_connection_are_dropped);
	suite_add_tcase(s, tw);

	tcase_add_checked_fixture(tf, setup, teardown);
	tcase_add_test(tf, flock_and_posix_never_conflict);
	tcase_add_test(tf, flock_shared_then_converted_by_its_owner);
	tcase_add_test(tf, blocking_flock_waits_for_the_holder);
	suite_add_tcase(s, tf);

	tcase_add_checked_fixture(tb, setup, teardown);
	tcase_set_timeout(tb, 60);
	tcase_add_test(tb, bad_requests_are_einval);
	tcase_add_test(tb, locks_over_the_bound_are_enolck);
	tcase_add_test(tb, waiters_over_the_bound_are_enolck);
	tcase_add_test(tb, many_objects_each_in_its_own_entry);
	suite_add_tcase(s, tb);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(lock_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
