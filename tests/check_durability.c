/*
 * check_durability.c - Check suite for the delivery promise of the local
 * engine, driven directly with every fdatasync held (dio_hold): which
 * answers may leave before the sync and which may not. A delivery in
 * every form (COMMIT of a staged body, RENAME of a message into another
 * mailbox, a PUT into new/) waits for its sync while a flag change in
 * the same moment does not; a STAGE or COMMIT resent under its
 * idempotency id, which writes nothing, still waits for the sync of the
 * first; a store opened on a copy of the files taken while the sync is
 * held (what kill -9 leaves) has every flag-changed message under
 * exactly one name and every staged body either staged or named; a
 * flag change that was refused (ENOENT) beside a delivery whose
 * fdatasync then fails does not count as answered, so the delivery is
 * rolled back and mstored goes on instead of exiting.
 *
 * Three cases guard what was once wrong: a staged body never committed
 * in a mailbox that sees no further STAGE is still reclaimed (the
 * store's sweep), so it stops holding the mailbox's quota; a COMMIT or
 * DELIVER resent after its message was expunged is answered like the
 * first and stores nothing again (spent idempotency ids); after a
 * machine crash that loses an ordered flag change (as decided), a LIST
 * delta since a counter from before the crash is a full listing (change
 * epochs), so a mount misses nothing and drops its own view of the lost
 * change.
 *
 * A child-written checkpoint keeps the segment an unsynced relocation
 * emptied, through a crash and through the roll back of that
 * relocation; and a FETCH or READ held (DIO_BODY) between its lookup
 * of a relocated body's place and its read, while the relocation is
 * rolled back and the next batch written over it, still answers the
 * body (it answered EIO).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskio.h"
#include "eng.h"
#include "engine_util.h"
#include "index.h"
#include "log.h"
#include "mstproto.h"
#include "record.h"

static struct tengine T;
static char tmpl[64];

static void
setup(void)
{
	strcpy(tmpl, "/tmp/mst-durab-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	tconf(&T, tmpl);
	T.ops = &engine_local;
	ck_assert_int_eq(topen(&T), 0);
}

static void
teardown(void)
{
	dio_hold(DIO_SYNC, 0);
	dio_hold(DIO_BODY, 0);
	dio_stop_children(0);
	tclose(&T);
	dio_fail_at(DIO_SYNC, 0, 0);
	trm_tree(tmpl);
}

static void
reopen(void)
{
	tclose(&T);
	ck_assert_int_eq(topen(&T), 0);
}

/* A STAGE job for |body| under |idem| (not submitted). */
static struct job *
stage_job(const char *mbox, const char *body, const uint8_t *idem)
{
	size_t len = strlen(body);
	struct mst_stage_req s = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.checksum = mst_checksum(body, len), .body_size = len,
		.mode = 0600, .uid = 5000, .gid = 5000,
	};
	uint8_t buf[1024];
	int n;

	memcpy(s.idem, idem, MST_IDEM_LEN);
	n = mst_stage_req_encode(&s, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	return tbuild(&T, MST_OP_STAGE, buf, (size_t)n, body, len);
}

/* A COMMIT job naming the staged |body| |mbox|/new/|name|. */
static struct job *
commit_job(const char *mbox, const char *name, const char *body,
    const uint8_t *idem)
{
	size_t len = strlen(body);
	struct mst_commit_req c = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.sub = MST_SUB_NEW, .name = mst_str_of(name),
		.checksum = mst_checksum(body, len), .body_size = len,
		.mode = 0600, .uid = 5000, .gid = 5000,
	};
	uint8_t buf[1024];
	int n;

	memcpy(c.idem, idem, MST_IDEM_LEN);
	n = mst_commit_req_encode(&c, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	return tbuild(&T, MST_OP_COMMIT, buf, (size_t)n, NULL, 0);
}

static struct job *
rename_job(const char *from, const char *to)
{
	struct mst_rename_req r = { mst_str_of(from), mst_str_of(to), 0 };
	uint8_t buf[1024];
	int n = mst_rename_req_encode(&r, buf, sizeof buf);

	return tbuild(&T, MST_OP_RENAME, buf, (size_t)n, NULL, 0);
}

static struct job *
put_job(const char *path, const char *body)
{
	size_t len = strlen(body);
	struct mst_put_req p = { .path = mst_str_of(path), .mode = 0600,
		.uid = 5000, .gid = 5000, .checksum = mst_checksum(body, len),
		.body_size = len };
	uint8_t buf[1024];
	int n = mst_put_req_encode(&p, buf, sizeof buf);

	ck_assert_int_gt(n, 0);
	return tbuild(&T, MST_OP_PUT, buf, (size_t)n, body, len);
}

static struct job *
setinfo_job(const char *mbox, const char *from, const char *to)
{
	struct mst_setinfo_req s = { mst_str_of(mbox), mst_str_of(""),
		MST_SUB_NEW, mst_str_of(from), MST_SUB_CUR, mst_str_of(to), 0 };
	uint8_t buf[1024];
	int n = mst_setinfo_req_encode(&s, buf, sizeof buf);

	return tbuild(&T, MST_OP_SETINFO, buf, (size_t)n, NULL, 0);
}

/* Does the store's dump hold |line| (a "path " prefix)? */
static int
has(struct tengine *t, const char *line)
{
	char *dump = t_dump(t);
	int r = strstr(dump, line) != NULL;

	free(dump);
	return r;
}

static void
idem_fill(uint8_t *idem, int v)
{
	memset(idem, v, MST_IDEM_LEN);
}

/* Every delivery form waits for its fdatasync; a flag change queued
 * behind them in the same moment is answered at once. */
START_TEST(every_delivery_form_waits_for_its_sync)
{
	uint8_t idem[MST_IDEM_LEN];
	struct job *cj, *rj, *pj, *sj;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_mkdirs(&T, "o"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_CUR, "moved", "mmmm", 4,
	    NULL, NULL), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "seen", "ssss", 4,
	    NULL, NULL), 0);
	idem_fill(idem, 0x31);
	ck_assert_int_eq(t_stage(&T, "m", "staged body", 11, idem, NULL), 0);

	dio_hold(DIO_SYNC, 1);
	cj = commit_job("m", "committed", "staged body", idem);
	rj = rename_job("m/cur/moved", "o/cur/moved");
	pj = put_job("m/new/created", "direct");
	tsubmit(&T, cj);
	tsubmit(&T, rj);
	tsubmit(&T, pj);
	sj = setinfo_job("m", "seen", "seen:2,S");
	tsubmit(&T, sj);
	ck_assert_int_eq(twait_for(sj)->status, 0);
	usleep(150 * 1000);
	ck_assert_msg(!tfinished(cj), "a COMMIT was answered before its sync");
	ck_assert_msg(!tfinished(rj), "a RENAME into another mailbox was "
	    "answered before its sync");
	ck_assert_msg(!tfinished(pj), "a PUT into new/ was answered before "
	    "its sync");
	dio_hold(DIO_SYNC, 0);
	ck_assert_int_eq(twait_for(cj)->status, 0);
	ck_assert_int_eq(twait_for(rj)->status, 0);
	ck_assert_int_eq(twait_for(pj)->status, 0);
	job_free(cj);
	job_free(rj);
	job_free(pj);
	job_free(sj);
	reopen();
	ck_assert(has(&T, "m/new/committed "));
	ck_assert(has(&T, "o/cur/moved "));
	ck_assert(has(&T, "m/new/created "));
	ck_assert(has(&T, "m/cur/seen:2,S "));
}
END_TEST

/* A STAGE or COMMIT resent under its id writes nothing; it is answered
 * from the index, so it must wait for the sync of the first. */
START_TEST(resent_stage_and_commit_wait_for_the_first_sync)
{
	uint8_t idem[MST_IDEM_LEN];
	struct job *s1, *s2, *c1, *c2;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	idem_fill(idem, 0x42);
	dio_hold(DIO_SYNC, 1);
	s1 = stage_job("m", "body one", idem);
	tsubmit(&T, s1);
	usleep(100 * 1000);	/* written, its sync held */
	s2 = stage_job("m", "body one", idem);
	tsubmit(&T, s2);
	usleep(150 * 1000);
	ck_assert_msg(!tfinished(s1), "a STAGE was answered before its sync");
	ck_assert_msg(!tfinished(s2), "a resent STAGE was answered before the "
	    "sync of the first");
	dio_hold(DIO_SYNC, 0);
	ck_assert_int_eq(twait_for(s1)->status, 0);
	ck_assert_int_eq(twait_for(s2)->status, 0);

	dio_hold(DIO_SYNC, 1);
	c1 = commit_job("m", "named", "body one", idem);
	tsubmit(&T, c1);
	usleep(100 * 1000);
	c2 = commit_job("m", "named", "body one", idem);
	tsubmit(&T, c2);
	usleep(150 * 1000);
	ck_assert_msg(!tfinished(c1), "a COMMIT was answered before its sync");
	ck_assert_msg(!tfinished(c2), "a resent COMMIT was answered before "
	    "the sync of the first");
	dio_hold(DIO_SYNC, 0);
	ck_assert_int_eq(twait_for(c1)->status, 0);
	ck_assert_int_eq(twait_for(c2)->status, 0);
	job_free(s1);
	job_free(s2);
	job_free(c1);
	job_free(c2);
	reopen();
	ck_assert(has(&T, "m/new/named "));
}
END_TEST

/* What kill -9 leaves (the files as written, unsynced): a store opened
 * on a copy has each flag-changed message under one name only, and the
 * body whose COMMIT was pending either staged or named, never both. */
START_TEST(copy_taken_with_sync_held_is_consistent)
{
	uint8_t idem[MST_IDEM_LEN];
	char copy[96], cmd[256];
	struct tengine T2;
	struct job *cj;
	char *dump;
	int staged, named;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "a", "aaaa", 4, NULL,
	    NULL), 0);
	idem_fill(idem, 0x53);
	ck_assert_int_eq(t_stage(&T, "m", "staged", 6, idem, NULL), 0);
	dio_hold(DIO_SYNC, 1);
	cj = commit_job("m", "c", "staged", idem);
	tsubmit(&T, cj);
	/* a: new -> cur -> cur with one more flag, each answered early */
	ck_assert_int_eq(t_setinfo(&T, "m", MST_SUB_NEW, "a", MST_SUB_CUR,
	    "a:2,S"), 0);
	ck_assert_int_eq(t_setinfo(&T, "m", MST_SUB_CUR, "a:2,S", MST_SUB_CUR,
	    "a:2,RS"), 0);
	ck_assert_int_eq(t_setinfo(&T, "m", MST_SUB_NEW, "c", MST_SUB_CUR,
	    "c:2,S"), 0);
	ck_assert(!tfinished(cj));
	snprintf(copy, sizeof copy, "%s-copy", tmpl);
	snprintf(cmd, sizeof cmd, "cp -a %s %s", tmpl, copy);
	ck_assert_int_eq(system(cmd), 0);
	tconf(&T2, copy);
	T2.ops = &engine_local;
	ck_assert_int_eq(topen(&T2), 0);
	dump = t_dump(&T2);
	ck_assert_msg(strstr(dump, "m/cur/a:2,RS ") != NULL, "%s", dump);
	ck_assert_msg(strstr(dump, "m/new/a ") == NULL, "%s", dump);
	ck_assert_msg(strstr(dump, "m/cur/a:2,S ") == NULL, "%s", dump);
	staged = strstr(dump, "m/tmp/") != NULL;
	named = strstr(dump, "m/cur/c:2,S ") != NULL;
	ck_assert_msg(staged + named == 1, "%s", dump);
	ck_assert_msg(strstr(dump, "m/new/c ") == NULL, "%s", dump);
	free(dump);
	tclose(&T2);
	trm_tree(copy);
	dio_hold(DIO_SYNC, 0);
	ck_assert_int_eq(twait_for(cj)->status, 0);
	job_free(cj);
}
END_TEST

/* A SETINFO that fails (ENOENT) is answered early but changed nothing,
 * so it must not count as an answered change: when the fdatasync of an
 * unrelated DELIVER then fails, mstored rolls the DELIVER back and goes
 * on, instead of exiting (sync_failed) as if an answered change were
 * lost. */
START_TEST(failed_flag_change_does_not_turn_a_sync_error_into_an_exit)
{
	struct job *dj, *sj;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	dio_hold(DIO_SYNC, 1);
	{
		struct mst_deliver_req d = {
			.mailbox = mst_str_of("m"), .folder = mst_str_of(""),
			.sub = MST_SUB_NEW, .name = mst_str_of("d"),
			.checksum = mst_checksum("dddd", 4), .body_size = 4,
			.mode = 0600, .uid = 5000, .gid = 5000,
		};
		uint8_t req[512];
		int n;

		idem_fill(d.idem, 0x86);
		n = mst_deliver_req_encode(&d, req, sizeof req);
		dj = tbuild(&T, MST_OP_DELIVER, req, (size_t)n, "dddd", 4);
	}
	tsubmit(&T, dj);
	usleep(100 * 1000);	/* written; the syncer waits in the hold */
	sj = setinfo_job("m", "nosuch", "nosuch:2,S");
	tsubmit(&T, sj);
	ck_assert_int_eq(twait_for(sj)->status, -ENOENT);
	dio_fail_at(DIO_SYNC, 1, EIO);
	dio_hold(DIO_SYNC, 0);
	ck_assert_int_eq(twait_for(dj)->status, -EIO);
	job_free(dj);
	job_free(sj);
	/* The service goes on. */
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "e", "eeee", 4, NULL,
	    NULL), 0);
}
END_TEST

/* --- once defects: an idle stage, a resend after an expunge, a crash --- */

/* LIST of |mbox|/|sub| on |t| since |since|: *change, whether it is a full
 * listing, and whether |name| is among the present entries. */
static void
list_sub(struct tengine *t, const char *mbox, unsigned sub, uint64_t since,
    uint64_t *change, int *full, const char *name, int *found)
{
	struct mst_list_req l = { mst_str_of(mbox), mst_str_of(""),
		(uint8_t)sub, since };
	struct mst_list_rep lr;
	struct mst_list_entry en;
	uint8_t buf[256];
	size_t off = 0;
	int n = mst_list_req_encode(&l, buf, sizeof buf);
	struct job *j = trun(t, MST_OP_LIST, buf, (size_t)n, NULL, 0);

	ck_assert_int_eq(j->status, 0);
	ck_assert_int_eq(mst_list_rep_decode(&lr, j->frames[0].p,
	    j->frames[0].len), 0);
	*change = lr.change;
	*full = (lr.flags & MST_LIST_FULL) != 0;
	*found = 0;
	while (mst_list_entry_next(&en, &lr, &off) == 1)
		if (en.kind == MST_LE_PRESENT && en.name.len == strlen(name) &&
		    memcmp(en.name.p, name, en.name.len) == 0)
			*found = 1;
	job_free(j);
}

/* A mount learns of a flag change once it is ordered (its own answer,
 * another mount's notice, a LIST) and keeps the folder's change counter.
 * A crash of the machine loses that change (as decided) and the store
 * restarts from the durable log, where later records take the same
 * change numbers again. The mount's LIST delta since the counter it kept
 * must then not hide what changed after the restart (here a message
 * delivered into cur/): either a full listing or a delta with it. And
 * the mount that made the change, which took the message out of its new/
 * cache on the answer, must find it in new/ again. */
START_TEST(delta_since_a_lost_ordered_change_hides_nothing)
{
	char image[96], cmd[256];
	struct tengine T2;
	uint64_t seen, seen_new, now, now_new;
	int full, found, cur_ok, new_ok;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "a", "aaaa", 4, NULL,
	    NULL), 0);
	/* The durable state a machine crash goes back to. */
	snprintf(image, sizeof image, "%s-image", tmpl);
	snprintf(cmd, sizeof cmd, "cp -a %s %s", tmpl, image);
	ck_assert_int_eq(system(cmd), 0);
	list_sub(&T, "m", MST_SUB_NEW, 0, &seen_new, &full, "a", &found);
	ck_assert(found);
	ck_assert_int_eq(t_setinfo(&T, "m", MST_SUB_NEW, "a", MST_SUB_CUR,
	    "a:2,S"), 0);
	list_sub(&T, "m", MST_SUB_CUR, 0, &seen, &full, "a:2,S", &found);
	ck_assert(found);
	tconf(&T2, image);
	T2.ops = &engine_local;
	ck_assert_int_eq(topen(&T2), 0);
	ck_assert_int_eq(t_deliver(&T2, "m", MST_SUB_CUR, "b:2,", "bbbb", 4,
	    NULL, NULL), 0);
	list_sub(&T2, "m", MST_SUB_CUR, seen, &now, &full, "b:2,", &found);
	cur_ok = full || found;
	/* The mount that made the change took a out of its new/ cache on
	 * the answer; its delta of new/ must bring a back. */
	list_sub(&T2, "m", MST_SUB_NEW, seen_new, &now_new, &full, "a", &found);
	new_ok = full || found;
	ck_assert_msg(cur_ok && new_ok, "after the restart: a LIST delta of "
	    "cur/ since the change counter of the lost flag change (%llu; "
	    "the folder is at %llu now) %s the message delivered since; a "
	    "delta of new/ since before the change (%llu, now %llu) %s new/a, "
	    "which the mount that changed it took out of its cache",
	    (unsigned long long)seen, (unsigned long long)now,
	    cur_ok ? "reports" : "does not report",
	    (unsigned long long)seen_new, (unsigned long long)now_new,
	    new_ok ? "reports" : "does not report");
	tclose(&T2);
	trm_tree(image);
}
END_TEST

/* Wait up to |secs| seconds, sending nothing, for |line| to leave the
 * store's dump: whether it left. */
static int
gone_within(struct tengine *t, const char *line, int secs)
{
	int i;

	for (i = 0; i < secs * 10; i++) {
		if (!has(t, line))
			return 1;
		usleep(100 * 1000);
	}
	return !has(t, line);
}

/* A mount that STAGEs and then dies (or fails over) leaves the body in
 * tmp/. It used to be reclaimed only by a later STAGE into the same
 * tmp/: a mailbox whose deliveries go on as plain DELIVERs (no longer
 * busy) kept it for ever, restart included, holding quota. The store
 * sweeps it past its TTL, after a restart as before it, and in a store
 * that gets no request at all. */
START_TEST(never_committed_body_is_reclaimed_without_another_stage)
{
	uint8_t idem[MST_IDEM_LEN];
	int rc, left;

	tclose(&T);
	T.conf.stage_ttl = 1;
	T.conf.quota_messages = 2;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "q"), 0);
	idem_fill(idem, 0x64);
	ck_assert_int_eq(t_stage(&T, "q", "orphan", 6, idem, NULL), 0);
	sleep(2);			/* past its TTL */
	reopen();
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "1", "one", 3, NULL,
	    NULL), 0);
	rc = t_deliver(&T, "q", MST_SUB_NEW, "2", "two", 3, NULL, NULL);
	left = has(&T, "q/tmp/");
	ck_assert_msg(rc == 0 && !left, "a staged body past its TTL, after a "
	    "restart and two deliveries: %s in the store; the second delivery "
	    "into a mailbox with room for 2 messages: %s",
	    left ? "still" : "not", rc == 0 ? "stored" : strerror(-rc));
	/* Idle: no request after the STAGE, and the body still goes (TTL
	 * 1 s, a tick a second). */
	ck_assert_int_eq(t_expunge(&T, "q", MST_SUB_NEW, "2"), 0);
	idem_fill(idem, 0x65);
	ck_assert_int_eq(t_stage(&T, "q", "idle", 4, idem, NULL), 0);
	ck_assert(has(&T, "q/tmp/"));
	ck_assert_msg(gone_within(&T, "q/tmp/", 10), "a staged body in an "
	    "idle store is still there 10 s after it was staged (TTL 1 s)");
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "3", "three", 5,
	    NULL, NULL), 0);
}
END_TEST

/* The resends of |t| after the expunges of the case below: a COMMIT
 * under |cid| (message |cmsg|) and a DELIVER under |did| (message
 * |dmsg|) are answered like their first delivery, with the id it gave,
 * and neither message comes back. */
static void
resends_answered_once(struct tengine *t, const char *when,
    const uint8_t *cid, uint64_t cmsg, const uint8_t *did, uint64_t dmsg)
{
	uint64_t got[3] = { 0, 0, 0 };
	int rc[3];

	rc[0] = t_commit(t, "m", MST_SUB_NEW, "x", "once", 4, cid, &got[0]);
	/* What a mount sends after an ESTALE (from an older store). */
	rc[1] = t_deliver(t, "m", MST_SUB_NEW, "x", "once", 4, cid, &got[1]);
	rc[2] = t_deliver(t, "m", MST_SUB_NEW, "y", "twice", 5, did, &got[2]);
	ck_assert_msg(rc[0] == 0 && rc[1] == 0 && rc[2] == 0 &&
	    got[0] == cmsg && got[1] == cmsg && got[2] == dmsg, "%s: resent "
	    "COMMIT: %s (id %llu, first %llu); DELIVER under its id: %s (id "
	    "%llu); resent DELIVER: %s (id %llu, first %llu)", when,
	    rc[0] ? strerror(-rc[0]) : "ok", (unsigned long long)got[0],
	    (unsigned long long)cmsg, rc[1] ? strerror(-rc[1]) : "ok",
	    (unsigned long long)got[1], rc[2] ? strerror(-rc[2]) : "ok",
	    (unsigned long long)got[2], (unsigned long long)dmsg);
	ck_assert_msg(!has(t, "m/new/x ") && !has(t, "m/new/y "), "%s: an "
	    "expunged message came back: delivered twice under one "
	    "idempotency id", when);
}

/* A COMMIT landed, its answer was lost, and the message was expunged
 * before the mount resent it: the resend used to get ESTALE, and the
 * mount then sent the DELIVER under the same id (ops_deliver.c
 * dwait_done), which the store took as new: the message was delivered
 * twice. A plain DELIVER resent after an expunge had the same hole.
 * Both are answered like the first delivery, by the running store, by
 * one started on what kill -9 leaves (replay) and after a clean restart
 * (the checkpoint). */
START_TEST(commit_resent_after_expunge_does_not_deliver_again)
{
	uint8_t idem[MST_IDEM_LEN], did[MST_IDEM_LEN];
	char image[96], cmd[256];
	uint64_t cmsg, dmsg;
	struct tengine T2;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	idem_fill(idem, 0x75);
	ck_assert_int_eq(t_stage(&T, "m", "once", 4, idem, NULL), 0);
	ck_assert_int_eq(t_commit(&T, "m", MST_SUB_NEW, "x", "once", 4, idem,
	    &cmsg), 0);
	ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, "x"), 0);
	idem_fill(did, 0x76);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "y", "twice", 5, did,
	    &dmsg), 0);
	ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, "y"), 0);
	resends_answered_once(&T, "running", idem, cmsg, did, dmsg);
	snprintf(image, sizeof image, "%s-image", tmpl);
	snprintf(cmd, sizeof cmd, "cp -a %s %s", tmpl, image);
	ck_assert_int_eq(system(cmd), 0);
	tconf(&T2, image);
	T2.ops = &engine_local;
	ck_assert_int_eq(topen(&T2), 0);
	resends_answered_once(&T2, "after kill -9", idem, cmsg, did, dmsg);
	tclose(&T2);
	trm_tree(image);
	reopen();
	resends_answered_once(&T, "after a restart", idem, cmsg, did, dmsg);
}
END_TEST

/* --- a checkpoint written by its own process --- */

/* Bytes of segment 1 that the index still places messages in. */
static uint64_t
live_in_segment_1(void)
{
	uint64_t live;

	pthread_rwlock_rdlock(&T.e->mu);
	live = index_seg_live(T.e->ix, 1);
	pthread_rwlock_unlock(&T.e->mu);
	return live;
}

/*
 * Ask for a checkpoint and hold its child before it writes: the child
 * stops itself (dio_stop_children) and stays stopped until the caller
 * sends it SIGCONT. Its pid, and the ADMIN job in *ck. (Stopping it
 * from here with SIGSTOP raced with the child: a small index is written
 * in about a millisecond, and under load the child had often exited,
 * a zombie not yet reaped, when the signal came.)
 */
static pid_t
stop_checkpoint_child(struct job **ck)
{
	struct mst_admin_req a = { mst_str_of("checkpoint"), mst_str_of("") };
	char path[64], buf[256], *p, st = '?';
	uint8_t abuf[64];
	pid_t pid = 0;
	FILE *f;
	int i, n = mst_admin_req_encode(&a, abuf, sizeof abuf);

	ck_assert_int_gt(n, 0);
	dio_stop_children(1);
	*ck = tbuild(&T, MST_OP_ADMIN, abuf, (size_t)n, NULL, 0);
	tsubmit(&T, *ck);
	for (i = 0; i < 20000 && pid == 0; i++) {
		pthread_mutex_lock(&T.e->kmu);
		pid = T.e->krunning ? T.e->kpid : 0;
		pthread_mutex_unlock(&T.e->kmu);
		/* Answered with no child seen: it was written on the
		 * commit path (no fork), and nothing was held. */
		ck_assert_msg(pid > 0 || !tfinished(*ck), "the checkpoint "
		    "was answered before a child of it was seen");
		if (pid == 0)
			usleep(1000);
	}
	/* The child has its copy of the flag; later ones (the restart's
	 * own checkpoint) run freely. */
	dio_stop_children(0);
	ck_assert_msg(pid > 0, "no checkpoint child started in 20 s");
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	for (i = 0; i < 2000 && st != 'T' && st != 'Z'; i++) {
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
		st = p ? p[2] : '?';
		fclose(f);
		if (st != 'T' && st != 'Z')
			usleep(10000);
	}
	/* A zombie finished without being held: the case would prove
	 * nothing, so it fails rather than pass by luck. */
	ck_assert_msg(st == 'T', "checkpoint child state %c, not stopped",
	    st);
	return pid;
}

/* A FETCH of message |id| in "m" (not submitted). */
static struct job *
fetch_job(uint64_t id)
{
	struct mst_fetch_req f = { mst_str_of("m"), id, 0, 8192 };
	uint8_t buf[256];
	int n = mst_fetch_req_encode(&f, buf, sizeof buf);

	ck_assert_int_gt(n, 0);
	return tbuild(&T, MST_OP_FETCH, buf, (size_t)n, NULL, 0);
}

/* Wait (at most 20 s) until a roll back after |before| is done. */
static void
wait_roll_back(unsigned before)
{
	int i;

	for (i = 0; i < 20000 && atomic_load(&T.e->rolled) == before; i++)
		usleep(1000);
	ck_assert_msg(atomic_load(&T.e->rolled) != before, "no roll back");
	/* Counted under the write lock it reloads under: done once the
	 * read lock is taken. */
	pthread_rwlock_rdlock(&T.e->mu);
	pthread_rwlock_unlock(&T.e->mu);
}

/*
 * The checkpoint child writes the index as it was at the fork, while
 * the writer goes on. Meanwhile the compactor moves the one live
 * message X out of segment 1, and that batch waits for its sync when
 * the checkpoint is installed. Segment 1 must stay: the checkpoint
 * still places X there, and if that sync fails (roll back) or the
 * machine crashes (the file cut back to what was synced), X is read
 * from it. The compactor then moves X again and segment 1 goes.
 */
START_TEST(checkpoint_keeps_segments_that_unsynced_batches_emptied)
{
	char body[4096], name[16], seg1[300], cmd[900], crash[80];
	uint8_t out[8192];
	struct tengine C;
	struct job *ck;
	uint64_t xid;
	struct stat sb;
	unsigned rolled;
	size_t got;
	pid_t child;
	int i;

	tclose(&T);
	T.conf.segment_size = 64u << 10;
	T.conf.checkpoint_bytes = 1ull << 40;
	T.conf.compact_percent = 0;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	memset(body, 'x', sizeof body);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "X", body,
	    sizeof body, NULL, &xid), 0);
	for (i = 0; i < 30; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, name, body,
		    sizeof body, NULL, NULL), 0);
	}
	for (i = 0; i < 30; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, name), 0);
	}
	ck_assert_int_eq(t_mkdirs(&T, "barrier"), 0);	/* all synced */
	snprintf(seg1, sizeof seg1, "%s/log/00000001.seg", tmpl);
	ck_assert_int_eq(stat(seg1, &sb), 0);

	child = stop_checkpoint_child(&ck);
	dio_hold(DIO_SYNC, 1);
	/* The active segment's synced length: what a crash leaves. */
	snprintf(cmd, sizeof cmd, "%s/log/%08x.seg", tmpl, T.e->active->no);
	ck_assert_int_eq(stat(cmd, &sb), 0);
	T.e->conf.compact_percent = 50;
	compact_kick(T.e);
	/* The compactor's relocation of X is applied and written, and
	 * waits for its sync (held) like the compactor itself. */
	for (i = 0; i < 2000 && live_in_segment_1() != 0; i++)
		usleep(10000);
	ck_assert_msg(live_in_segment_1() == 0, "the compactor did not "
	    "move X out of segment 1");
	ck_assert_int_eq(kill(child, SIGCONT), 0);
	ck = twait_for(ck);
	ck_assert_int_eq(ck->status, 0);
	job_free(ck);
	ck_assert_msg(access(seg1, F_OK) == 0, "segment 1 was reclaimed "
	    "while the batch that emptied it waited for its sync");

	/* A machine crash now: every file as it is, the active segment
	 * cut back to its synced length. */
	snprintf(crash, sizeof crash, "%s.crash", tmpl);
	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s && rm -f %s/LOCK"
	    " && truncate -s %lld %s/log/%08x.seg", crash, tmpl, crash, crash,
	    (long long)sb.st_size, crash, T.e->active->no);
	ck_assert_int_eq(system(cmd), 0);
	tconf(&C, crash);
	C.ops = &engine_local;
	ck_assert_int_eq(topen(&C), 0);
	ck_assert_int_eq(t_fetch(&C, "m", xid, out, sizeof out, &got), 0);
	ck_assert_int_eq(got, sizeof body);
	tclose(&C);
	trm_tree(crash);

	/* The relocation's sync fails: rolled back, X is in segment 1
	 * again. Every FETCH answers it, while the roll back runs and
	 * after. (Polled until one succeeded, this once read X as EIO on
	 * the next FETCH: the first had read the relocated copy, the next
	 * read it as the roll back cut it; fetch_across_a_roll_back_of_a_
	 * relocation holds that order.) */
	T.e->conf.compact_percent = 0;	/* X stays put for the check */
	rolled = atomic_load(&T.e->rolled);
	dio_fail_at(DIO_SYNC, 1, EIO);
	dio_hold(DIO_SYNC, 0);
	for (i = 0; i < 20000 && atomic_load(&T.e->rolled) == rolled; i++) {
		ck_assert_int_eq(t_fetch(&T, "m", xid, out, sizeof out, &got),
		    0);
		ck_assert_int_eq(got, sizeof body);
	}
	wait_roll_back(rolled);
	ck_assert_uint_eq(live_in_segment_1(), sizeof body);
	ck_assert_int_eq(t_fetch(&T, "m", xid, out, sizeof out, &got), 0);
	ck_assert_int_eq(got, sizeof body);
	ck_assert_msg(access(seg1, F_OK) == 0, "segment 1 was reclaimed "
	    "with X in it after the roll back");

	/* The compactor tries again: X moves, durably this time, and
	 * segment 1 goes with the checkpoint it asks for. */
	T.e->conf.compact_percent = 50;
	compact_kick(T.e);
	for (i = 0; i < 2000 && access(seg1, F_OK) == 0; i++) {
		ck_assert_int_eq(t_fetch(&T, "m", xid, out, sizeof out, &got),
		    0);
		usleep(10000);
	}
	ck_assert_msg(access(seg1, F_OK) != 0, "segment 1 was not reclaimed "
	    "once X had left it");
	ck_assert_uint_eq(live_in_segment_1(), 0);
	ck_assert_int_eq(t_fetch(&T, "m", xid, out, sizeof out, &got), 0);
	ck_assert_int_eq(got, sizeof body);

	/* After a restart X is read wherever the compactor left it. */
	ck_assert_int_eq(t_mkdirs(&T, "after"), 0);
	reopen();
	ck_assert_int_eq(t_fetch(&T, "m", xid, out, sizeof out, &got), 0);
	ck_assert_int_eq(got, sizeof body);
}
END_TEST

/*
 * A reader looks a body's place up under the index lock and reads it
 * after. The compactor moves X out of segment 1; the batch with the
 * RELOCATE waits for its sync, and a FETCH of X takes X's new place
 * and is held before it reads (DIO_BODY). The sync fails: the roll back
 * cuts the active segment, the reloaded index has X in segment 1 again,
 * and the next delivery is written where the cut record was. Let go,
 * the FETCH answers X. (It answered EIO: it read the cut place, then
 * another record's bytes. Unheld, a FETCH just after the failed sync
 * did the same, once in a full run of the suite.)
 */
START_TEST(fetch_across_a_roll_back_of_a_relocation)
{
	char body[4096], other[4096], name[16];
	struct mst_data_rep d;
	struct job *fj;
	uint64_t xid;
	unsigned rolled;
	int i;

	tclose(&T);
	T.conf.segment_size = 64u << 10;
	T.conf.checkpoint_bytes = 1ull << 40;
	T.conf.compact_percent = 0;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	memset(body, 'x', sizeof body);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "X", body,
	    sizeof body, NULL, &xid), 0);
	/* X and 15 more fill segment 1; the expunges go to segment 2,
	 * which X's relocation does not fill: no rotation follows it. */
	for (i = 0; i < 15; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, name, body,
		    sizeof body, NULL, NULL), 0);
	}
	for (i = 0; i < 15; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, name), 0);
	}
	ck_assert_int_eq(t_mkdirs(&T, "barrier"), 0);
	ck_assert_uint_eq(T.e->active->no, 2);

	dio_hold(DIO_SYNC, 1);
	T.e->conf.compact_percent = 50;
	compact_kick(T.e);
	for (i = 0; i < 2000 && live_in_segment_1() != 0; i++)
		usleep(10000);
	ck_assert_msg(live_in_segment_1() == 0, "the compactor did not "
	    "move X out of segment 1");
	T.e->conf.compact_percent = 0;	/* no second move after the roll back */

	dio_hold(DIO_BODY, 1);
	fj = fetch_job(xid);
	tsubmit(&T, fj);
	ck_assert_int_eq(dio_wait_held(DIO_BODY, 1, 20000), 0);
	rolled = atomic_load(&T.e->rolled);
	dio_fail_at(DIO_SYNC, 1, EIO);
	dio_hold(DIO_SYNC, 0);
	wait_roll_back(rolled);
	ck_assert_uint_eq(live_in_segment_1(), sizeof body);
	memset(other, 'o', sizeof other);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "Y", other,
	    sizeof other, NULL, NULL), 0);
	ck_assert_uint_eq(T.e->active->no, 2);	/* written over the cut */
	dio_hold(DIO_BODY, 0);

	fj = twait_for(fj);
	ck_assert_int_eq(fj->status, 0);
	ck_assert_int_eq(fj->nframes, 1);
	ck_assert_int_eq(mst_data_rep_decode(&d, fj->frames[0].p,
	    fj->frames[0].len), 0);
	ck_assert_uint_eq(d.data.len, sizeof body);
	ck_assert(memcmp(d.data.p, body, sizeof body) == 0);
	job_free(fj);
}
END_TEST

/*
 * The same for a block of an ordinary file, read with READ: the
 * compactor moves the block, the READ is held before it reads the new
 * place, the sync fails, and the READ answers the block from where the
 * reloaded index has it.
 */
START_TEST(file_read_across_a_roll_back_of_a_relocation)
{
	char blk[4000], body[4096], other[4096], name[16];
	struct mst_read_req q = { 0, 0, sizeof blk };
	struct mst_data_rep d;
	struct mst_attr a;
	struct job *rj;
	uint8_t buf[64];
	unsigned rolled;
	int i, n;

	tclose(&T);
	T.conf.segment_size = 64u << 10;
	T.conf.checkpoint_bytes = 1ull << 40;
	T.conf.compact_percent = 0;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdir(&T, "d"), 0);
	ck_assert_int_eq(t_put(&T, "d/f", "", 0, 1), 0);
	ck_assert_int_eq(t_lookup(&T, "d/f", &a), 0);
	ck_assert_uint_eq(a.type, MST_T_FILE);
	memset(blk, 'b', sizeof blk);
	ck_assert_int_eq(t_write(&T, a.id, 0, 0, blk, sizeof blk, NULL), 0);
	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	memset(body, 'x', sizeof body);
	for (i = 0; i < 15; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, name, body,
		    sizeof body, NULL, NULL), 0);
	}
	for (i = 0; i < 15; i++) {
		snprintf(name, sizeof name, "f%d", i);
		ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, name), 0);
	}
	ck_assert_int_eq(t_mkdirs(&T, "barrier"), 0);
	ck_assert_uint_eq(T.e->active->no, 2);
	ck_assert_uint_eq(live_in_segment_1(), sizeof blk);

	dio_hold(DIO_SYNC, 1);
	T.e->conf.compact_percent = 50;
	compact_kick(T.e);
	for (i = 0; i < 2000 && live_in_segment_1() != 0; i++)
		usleep(10000);
	ck_assert_msg(live_in_segment_1() == 0, "the compactor did not "
	    "move the block out of segment 1");
	T.e->conf.compact_percent = 0;

	dio_hold(DIO_BODY, 1);
	q.id = a.id;
	n = mst_read_req_encode(&q, buf, sizeof buf);
	ck_assert_int_gt(n, 0);
	rj = tbuild(&T, MST_OP_READ, buf, (size_t)n, NULL, 0);
	tsubmit(&T, rj);
	ck_assert_int_eq(dio_wait_held(DIO_BODY, 1, 20000), 0);
	rolled = atomic_load(&T.e->rolled);
	dio_fail_at(DIO_SYNC, 1, EIO);
	dio_hold(DIO_SYNC, 0);
	wait_roll_back(rolled);
	ck_assert_uint_eq(live_in_segment_1(), sizeof blk);
	memset(other, 'o', sizeof other);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "Y", other,
	    sizeof other, NULL, NULL), 0);
	ck_assert_uint_eq(T.e->active->no, 2);	/* written over the cut */
	dio_hold(DIO_BODY, 0);

	rj = twait_for(rj);
	ck_assert_int_eq(rj->status, 0);
	ck_assert_int_eq(rj->nframes, 1);
	ck_assert_int_eq(mst_data_rep_decode(&d, rj->frames[0].p,
	    rj->frames[0].len), 0);
	ck_assert_uint_eq(d.data.len, sizeof blk);
	ck_assert(memcmp(d.data.p, blk, sizeof blk) == 0);
	job_free(rj);
}
END_TEST

static Suite *
durability_suite(void)
{
	Suite *s = suite_create("durability");
	TCase *tc = tcase_create("promise");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_delivery_form_waits_for_its_sync);
	tcase_add_test(tc, resent_stage_and_commit_wait_for_the_first_sync);
	tcase_add_test(tc, copy_taken_with_sync_held_is_consistent);
	tcase_add_test(tc,
	    failed_flag_change_does_not_turn_a_sync_error_into_an_exit);
	tcase_add_test(tc,
	    never_committed_body_is_reclaimed_without_another_stage);
	tcase_add_test(tc, commit_resent_after_expunge_does_not_deliver_again);
	tcase_add_test(tc, delta_since_a_lost_ordered_change_hides_nothing);
	tcase_add_test(tc,
	    checkpoint_keeps_segments_that_unsynced_batches_emptied);
	tcase_add_test(tc, fetch_across_a_roll_back_of_a_relocation);
	tcase_add_test(tc, file_read_across_a_roll_back_of_a_relocation);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	log_open("stderr", LOG_LVL_ERR);
	sr = srunner_create(durability_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
