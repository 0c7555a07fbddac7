/*
 * check_engine.c - Check suite for the local storage engine: append and
 * read back, rebuild equals live, torn-tail recovery at every byte offset,
 * compaction, scrub, idempotency, exclusive create, rename-replace,
 * quotas, fault injection, LIST deltas.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskio.h"
#include "engine_util.h"
#include "log.h"
#include "mstproto.h"

static char tmpl[64];
static struct tengine T;

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void
setup(void)
{
	strcpy(tmpl, "/tmp/mst-engine-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	tconf(&T, tmpl);
	ck_assert_int_eq(topen(&T), 0);
}

static void
teardown(void)
{
	tclose(&T);
	dio_fail_at(DIO_WRITE, 0, 0);
	dio_fail_at(DIO_SYNC, 0, 0);
	nftw(tmpl, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
reopen(void)
{
	tclose(&T);
	ck_assert_int_eq(topen(&T), 0);
}

static void
fill(char *b, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (char)('a' + (seed * 31 + i * 7) % 26);
}

START_TEST(deliver_then_fetch_returns_same_bytes)
{
	char body[5000], got[8192], name[64];
	uint64_t ids[50];
	size_t len;
	int i;

	ck_assert_int_eq(t_mkdir(&T, "example.com"), 0);
	ck_assert_int_eq(t_mkdirs(&T, "example.com/al"), 0);
	for (i = 0; i < 50; i++) {
		fill(body, sizeof body, (unsigned)i);
		snprintf(name, sizeof name, "%d.M1.host", i);
		ck_assert_int_eq(t_deliver(&T, "example.com/al", MST_SUB_NEW,
		    name, body, 100u * (unsigned)i, NULL, &ids[i]), 0);
	}
	for (i = 0; i < 50; i++) {
		fill(body, sizeof body, (unsigned)i);
		ck_assert_int_eq(t_fetch(&T, "example.com/al", ids[i], got,
		    sizeof got, &len), 0);
		ck_assert_uint_eq(len, 100u * (unsigned)i);
		ck_assert(memcmp(got, body, len) == 0);
	}
	reopen();
	for (i = 0; i < 50; i++) {
		fill(body, sizeof body, (unsigned)i);
		ck_assert_int_eq(t_fetch(&T, "example.com/al", ids[i], got,
		    sizeof got, &len), 0);
		ck_assert(memcmp(got, body, len) == 0);
	}
}
END_TEST

START_TEST(delivery_errors)
{
	ck_assert_int_eq(t_deliver(&T, "nobody", MST_SUB_NEW, "x", "a", 1,
	    NULL, NULL), -ENOENT);
	ck_assert_int_eq(t_mkdirs(&T, "u"), 0);
	ck_assert_int_eq(t_deliver(&T, "u", MST_SUB_NEW, "x", "a", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(t_deliver(&T, "u", MST_SUB_NEW, "x", "b", 1, NULL,
	    NULL), -EEXIST);
	ck_assert_int_eq(t_expunge(&T, "u", MST_SUB_NEW, "y"), -ENOENT);
	ck_assert_int_eq(t_simple(&T, MST_OP_RMDIR, "u/new"), -ENOTEMPTY);
	ck_assert_int_eq(t_simple(&T, MST_OP_UNLINK, "u/new"), -EISDIR);
	ck_assert_int_eq(t_simple(&T, MST_OP_RMDIR, "u/new/x"), -ENOTDIR);
	ck_assert_int_eq(t_mkdir(&T, "u/new"), -EEXIST);
	ck_assert_int_eq(t_mkdir(&T, "zz/top"), -ENOENT);
}
END_TEST

/* A mixed history; the rebuilt index must equal the live one. */
static void
history(int round)
{
	char name[64], to[80], path[128], body[300];
	int i;

	for (i = 0; i < 40; i++) {
		fill(body, sizeof body, (unsigned)(i + round * 100));
		snprintf(name, sizeof name, "%d.%d.h", round, i);
		ck_assert_int_eq(t_deliver(&T, "d/u", MST_SUB_NEW, name, body,
		    (size_t)(i * 7), NULL, NULL), 0);
		if (i % 3 == 0) {
			snprintf(to, sizeof to, "%s:2,S", name);
			ck_assert_int_eq(t_setinfo(&T, "d/u", MST_SUB_NEW, name,
			    MST_SUB_CUR, to), 0);
		}
		if (i % 5 == 0)
			ck_assert_int_eq(t_expunge(&T, "d/u", MST_SUB_NEW,
			    name), i % 3 == 0 ? -ENOENT : 0);
	}
	snprintf(path, sizeof path, "d/u/dovecot-uidlist.%d", round);
	ck_assert_int_eq(t_put(&T, path, "uidlist v1", 10, 1), 0);
	ck_assert_int_eq(t_put(&T, path, "uidlist version 2", 17, 0), 0);
	ck_assert_int_eq(t_rename(&T, path, "d/u/dovecot-uidlist"), 0);
	snprintf(path, sizeof path, "d/u/.F%d", round);
	ck_assert_int_eq(t_mkdirs(&T, path), 0);
	snprintf(path, sizeof path, "d/u/.F%d/tmp", round);
	ck_assert_int_eq(t_simple(&T, MST_OP_RMDIR, path), 0);
}

START_TEST(rebuilt_index_equals_live_index)
{
	char *live, *rebuilt;

	ck_assert_int_eq(t_mkdir(&T, "d"), 0);
	ck_assert_int_eq(t_mkdirs(&T, "d/u"), 0);
	history(1);
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	history(2);
	live = t_dump(&T);
	ck_assert_ptr_nonnull(strstr(live, "d/u/dovecot-uidlist t=2"));
	reopen();			/* checkpoint at close */
	rebuilt = t_dump(&T);
	ck_assert_str_eq(rebuilt, live);
	free(rebuilt);
	/* Now without any checkpoint: a full replay of the log. */
	tclose(&T);
	{
		char p[300];

		snprintf(p, sizeof p, "%s/checkpoint", tmpl);
		ck_assert_int_eq(unlink(p), 0);
	}
	ck_assert_int_eq(topen(&T), 0);
	rebuilt = t_dump(&T);
	ck_assert_str_eq(rebuilt, live);
	free(rebuilt);
	free(live);
}
END_TEST

static off_t
file_size(const char *p)
{
	struct stat st;

	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_size;
}

/*
 * Cut the log at every byte offset inside its last three records: the
 * store must open, keep every record before the cut and none after.
 */
START_TEST(recovery_after_truncation_at_every_offset)
{
	char seg[300], ck[300], name[32], saved[300];
	off_t ends[4], cut, size;
	int i, kept;
	char *full;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "base", "x", 1, NULL,
	    NULL), 0);
	snprintf(seg, sizeof seg, "%s/log/00000001.seg", tmpl);
	snprintf(ck, sizeof ck, "%s/checkpoint", tmpl);
	snprintf(saved, sizeof saved, "%s/saved.seg", tmpl);
	ends[0] = file_size(seg);
	for (i = 1; i <= 3; i++) {
		snprintf(name, sizeof name, "last%d", i);
		ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, name,
		    "0123456789", 10, NULL, NULL), 0);
		ends[i] = file_size(seg);
	}
	tclose(&T);
	ck_assert_int_eq(unlink(ck), 0);	/* replay from the start */
	full = NULL;
	{
		int in = open(seg, O_RDONLY), out;
		char buf[65536];
		ssize_t n;

		out = open(saved, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		while ((n = read(in, buf, sizeof buf)) > 0)
			ck_assert_int_eq(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	size = ends[3];
	for (cut = ends[0]; cut < size; cut++) {
		char cmd[1400];

		snprintf(cmd, sizeof cmd, "cp %s %s && truncate -s %lld %s && "
		    "rm -f %s", saved, seg, (long long)cut, seg, ck);
		ck_assert_int_eq(system(cmd), 0);
		ck_assert_msg(topen(&T) == 0, "open after cut at %lld",
		    (long long)cut);
		for (kept = 0; kept < 3 && ends[kept + 1] <= cut; kept++)
			;
		full = t_dump(&T);
		for (i = 1; i <= 3; i++) {
			snprintf(name, sizeof name, "m/new/last%d ", i);
			ck_assert_msg((strstr(full, name) != NULL) ==
			    (i <= kept), "cut at %lld: last%d present=%d, "
			    "want %d", (long long)cut, i,
			    strstr(full, name) != NULL, i <= kept);
		}
		ck_assert_ptr_nonnull(strstr(full, "m/new/base "));
		free(full);
		tclose(&T);
		ck_assert_int_eq(file_size(seg), ends[kept]);
	}
	ck_assert_int_eq(topen(&T), 0);
}
END_TEST

START_TEST(torn_middle_record_refuses_to_start)
{
	char seg[300], ck[300];
	off_t mid;
	int fd;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "a", "aaaa", 4, NULL,
	    NULL), 0);
	snprintf(seg, sizeof seg, "%s/log/00000001.seg", tmpl);
	mid = file_size(seg) - 10;
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "b", "bbbb", 4, NULL,
	    NULL), 0);
	tclose(&T);
	snprintf(ck, sizeof ck, "%s/checkpoint", tmpl);
	unlink(ck);
	fd = open(seg, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "\xff", 1, mid), 1);
	close(fd);
	/* Damage before a valid record is not a torn tail: refuse. */
	ck_assert_int_eq(topen(&T), -EUCLEAN);
}
END_TEST

START_TEST(idempotent_deliver_stores_once)
{
	uint8_t idem[MST_IDEM_LEN] = { 1, 2, 3, 4, 5 };
	uint64_t a = 0, b = 0;
	char st[1024];

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "one", "hello", 5,
	    idem, &a), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "one", "hello", 5,
	    idem, &b), 0);
	ck_assert_uint_eq(a, b);
	reopen();
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "one", "hello", 5,
	    idem, &b), 0);
	ck_assert_uint_eq(a, b);
	ck_assert_int_eq(t_admin(&T, "stats", st, sizeof st), 0);
	ck_assert_ptr_nonnull(strstr(st, "messages=1\n"));
}
END_TEST

/* Many concurrent idempotent retries and exclusive creates in one
 * batch: exactly one winner each. */
START_TEST(concurrent_excl_and_idempotent_have_one_winner)
{
	struct mst_put_req p = { .path = mst_str_of("m/dovecot-uidlist.lock"),
		.flags = MST_PUT_EXCL, .mode = 0600,
		.checksum = mst_checksum("1", 1), .body_size = 1 };
	struct mst_deliver_req d = { .mailbox = mst_str_of("m"),
		.folder = mst_str_of(""), .sub = MST_SUB_NEW,
		.name = mst_str_of("dup"), .checksum = mst_checksum("z", 1),
		.body_size = 1, .mode = 0600, .idem = { 9, 9, 9 } };
	uint8_t buf[512], buf2[512];
	int n = mst_put_req_encode(&p, buf, sizeof buf);
	int n2 = mst_deliver_req_encode(&d, buf2, sizeof buf2);
	int i, wins = 0, exists = 0, dok = 0;
	uint64_t did = 0;
	struct mst_attr_rep a;
	struct job *j;
	char st[1024];

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	for (i = 0; i < 64; i++) {
		tsubmit(&T, tbuild(&T, MST_OP_PUT, buf, (size_t)n, "1", 1));
		tsubmit(&T, tbuild(&T, MST_OP_DELIVER, buf2, (size_t)n2, "z",
		    1));
	}
	for (i = 0; i < 128; i++) {
		j = twait();
		if (j->op == MST_OP_PUT) {
			wins += j->status == 0;
			exists += j->status == -EEXIST;
		} else {
			ck_assert_int_eq(j->status, 0);
			ck_assert_int_eq(mst_attr_rep_decode(&a,
			    j->frames[0].p, j->frames[0].len), 0);
			if (dok++ == 0)
				did = a.attr.id;
			ck_assert_uint_eq(a.attr.id, did);
		}
		job_free(j);
	}
	ck_assert_int_eq(wins, 1);
	ck_assert_int_eq(exists, 63);
	ck_assert_int_eq(t_admin(&T, "stats", st, sizeof st), 0);
	ck_assert_ptr_nonnull(strstr(st, "messages=1\n"));
}
END_TEST

START_TEST(rename_replaces_atomically)
{
	char got[64];
	size_t len;
	struct mst_get_req g = { mst_str_of("m/list"), 0, 64 };
	uint8_t q[128];
	int qn;
	struct job *j;
	struct mst_data_rep r;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_put(&T, "m/list", "old", 3, 1), 0);
	ck_assert_int_eq(t_put(&T, "m/list.lock", "new contents", 12, 1), 0);
	ck_assert_int_eq(t_rename(&T, "m/list.lock", "m/list"), 0);
	ck_assert_int_eq(t_simple(&T, MST_OP_LOOKUP, "m/list.lock"), -ENOENT);
	qn = mst_get_req_encode(&g, q, sizeof q);
	j = trun(&T, MST_OP_GET, q, (size_t)qn, NULL, 0);
	ck_assert_int_eq(j->status, 0);
	ck_assert_int_eq(mst_data_rep_decode(&r, j->frames[0].p,
	    j->frames[0].len), 0);
	len = r.data.len;
	memcpy(got, r.data.p, len);
	ck_assert_uint_eq(len, 12);
	ck_assert(memcmp(got, "new contents", 12) == 0);
	job_free(j);
	ck_assert_int_eq(t_mkdir(&T, "m/dir"), 0);
	ck_assert_int_eq(t_rename(&T, "m/list", "m/dir"), -EISDIR);
	ck_assert_int_eq(t_rename(&T, "m", "m/dir/m"), -EINVAL);
}
END_TEST

START_TEST(quota_gives_edquot)
{
	tclose(&T);
	T.conf.quota_messages = 2;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "q"), 0);
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "1", "a", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "2", "a", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "3", "a", 1, NULL,
	    NULL), -EDQUOT);
	ck_assert_int_eq(t_expunge(&T, "q", MST_SUB_NEW, "1"), 0);
	ck_assert_int_eq(t_deliver(&T, "q", MST_SUB_NEW, "3", "a", 1, NULL,
	    NULL), 0);
}
END_TEST

START_TEST(failed_write_or_sync_rolls_back_and_service_continues)
{
	char *before, *after;

	ck_assert_int_eq(t_mkdirs(&T, "f"), 0);
	ck_assert_int_eq(t_deliver(&T, "f", MST_SUB_NEW, "ok1", "a", 1, NULL,
	    NULL), 0);
	before = t_dump(&T);
	dio_fail_at(DIO_WRITE, 1, ENOSPC);
	ck_assert_int_eq(t_deliver(&T, "f", MST_SUB_NEW, "bad", "b", 1, NULL,
	    NULL), -ENOSPC);
	after = t_dump(&T);
	ck_assert_str_eq(after, before);
	free(after);
	dio_fail_at(DIO_SYNC, 1, EIO);
	ck_assert_int_eq(t_deliver(&T, "f", MST_SUB_NEW, "bad2", "b", 1, NULL,
	    NULL), -EIO);
	after = t_dump(&T);
	ck_assert_str_eq(after, before);
	free(after);
	free(before);
	ck_assert_int_eq(t_deliver(&T, "f", MST_SUB_NEW, "ok2", "c", 1, NULL,
	    NULL), 0);
	reopen();
	after = t_dump(&T);
	ck_assert_ptr_nonnull(strstr(after, "f/new/ok2 "));
	ck_assert_ptr_null(strstr(after, "f/new/bad"));
	free(after);
}
END_TEST

START_TEST(reserve_gives_enospc)
{
	tclose(&T);
	T.conf.reserve_bytes = UINT64_MAX / 2;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "s"), 0);	/* no body: allowed */
	ck_assert_int_eq(t_deliver(&T, "s", MST_SUB_NEW, "1", "a", 1, NULL,
	    NULL), -ENOSPC);
}
END_TEST

START_TEST(compaction_keeps_every_live_message)
{
	char body[2000], got[4096], name[32], text[2048], *before, *after;
	uint64_t ids[300];
	size_t len;
	int i, segs_before, segs_after;
	char *p;

	tclose(&T);
	T.conf.segment_size = 64u << 10;
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(t_mkdirs(&T, "c"), 0);
	for (i = 0; i < 300; i++) {
		fill(body, sizeof body, (unsigned)i);
		snprintf(name, sizeof name, "%d", i);
		ck_assert_int_eq(t_deliver(&T, "c", MST_SUB_NEW, name, body,
		    sizeof body, NULL, &ids[i]), 0);
	}
	for (i = 0; i < 300; i++)
		if (i % 5) {
			snprintf(name, sizeof name, "%d", i);
			ck_assert_int_eq(t_expunge(&T, "c", MST_SUB_NEW, name),
			    0);
		}
	ck_assert_int_eq(t_admin(&T, "stats", text, sizeof text), 0);
	p = strstr(text, "segments=");
	segs_before = atoi(p + 9);
	before = t_dump(&T);
	ck_assert_int_eq(t_admin(&T, "compact", NULL, 0), 0);
	for (i = 0; i < 200; i++) {	/* background: wait up to 20 s */
		ck_assert_int_eq(t_admin(&T, "stats", text, sizeof text), 0);
		p = strstr(text, "segments=");
		segs_after = atoi(p + 9);
		if (segs_after * 2 < segs_before)
			break;
		usleep(100000);
	}
	ck_assert_msg(segs_after * 2 < segs_before,
	    "segments %d -> %d", segs_before, segs_after);
	for (i = 0; i < 300; i += 5) {
		fill(body, sizeof body, (unsigned)i);
		ck_assert_int_eq(t_fetch(&T, "c", ids[i], got, sizeof got,
		    &len), 0);
		ck_assert(len == sizeof body && memcmp(got, body, len) == 0);
	}
	reopen();
	after = t_dump(&T);
	ck_assert_str_eq(after, before);
	free(after);
	free(before);
}
END_TEST

START_TEST(scrub_finds_a_flipped_bit)
{
	char body[4000], text[4096], seg[300], got[8192];
	uint64_t id;
	size_t len;
	off_t at;
	uint8_t c;
	int fd;

	ck_assert_int_eq(t_mkdirs(&T, "s"), 0);
	fill(body, sizeof body, 7);
	ck_assert_int_eq(t_deliver(&T, "s", MST_SUB_NEW, "victim", body,
	    sizeof body, NULL, &id), 0);
	ck_assert_int_eq(t_admin(&T, "scrub", text, sizeof text), 0);
	ck_assert_ptr_nonnull(strstr(text, "result=clean"));
	tclose(&T);
	snprintf(seg, sizeof seg, "%s/log/00000001.seg", tmpl);
	fd = open(seg, O_RDWR);
	at = file_size(seg) - 2000;	/* inside the body */
	ck_assert_int_eq(pread(fd, &c, 1, at), 1);
	c ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);
	ck_assert_int_eq(topen(&T), 0);	/* from the checkpoint */
	ck_assert_int_eq(t_admin(&T, "scrub", text, sizeof text), 0);
	ck_assert_msg(strstr(text, "result=damaged") != NULL, "%s", text);
	ck_assert_int_eq(t_fetch(&T, "s", id, got, sizeof got, &len), -EIO);
}
END_TEST

START_TEST(list_since_returns_only_changes)
{
	struct mst_list_req l = { mst_str_of("m"), mst_str_of(""), MST_SUB_NEW,
		0 };
	struct mst_list_rep lr;
	struct mst_list_entry en;
	uint8_t buf[256];
	uint64_t since;
	size_t off;
	int n, present = 0, removed = 0;
	struct job *j;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "a", "1", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "b", "1", 1, NULL,
	    NULL), 0);
	n = mst_list_req_encode(&l, buf, sizeof buf);
	j = trun(&T, MST_OP_LIST, buf, (size_t)n, NULL, 0);
	ck_assert_int_eq(j->status, 0);
	ck_assert_int_eq(mst_list_rep_decode(&lr, j->frames[0].p,
	    j->frames[0].len), 0);
	ck_assert_uint_eq(lr.count, 2);
	ck_assert(lr.flags & MST_LIST_FULL);
	since = lr.change;
	job_free(j);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "c", "1", 1, NULL,
	    NULL), 0);
	ck_assert_int_eq(t_expunge(&T, "m", MST_SUB_NEW, "a"), 0);
	l.since = since;
	n = mst_list_req_encode(&l, buf, sizeof buf);
	j = trun(&T, MST_OP_LIST, buf, (size_t)n, NULL, 0);
	ck_assert_int_eq(mst_list_rep_decode(&lr, j->frames[0].p,
	    j->frames[0].len), 0);
	ck_assert(!(lr.flags & MST_LIST_FULL));
	off = 0;
	while (mst_list_entry_next(&en, &lr, &off) == 1) {
		if (en.kind == MST_LE_PRESENT) {
			present++;
			ck_assert(en.name.len == 1 && en.name.p[0] == 'c');
		} else {
			removed++;
			ck_assert(en.name.len == 1 && en.name.p[0] == 'a');
		}
	}
	ck_assert_int_eq(present, 1);
	ck_assert_int_eq(removed, 1);
	job_free(j);
}
END_TEST

START_TEST(big_listing_spans_frames)
{
	struct mst_list_req l = { mst_str_of("m"), mst_str_of(""), MST_SUB_NEW,
		0 };
	struct mst_list_rep lr;
	char name[300];
	uint8_t buf[256];
	uint32_t total = 0;
	size_t i;
	int n;
	struct job *j;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	memset(name, 'n', 250);
	for (i = 0; i < 6000; i++) {
		snprintf(name + 240, 20, "%06zu", i);
		ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, name, "x", 1,
		    NULL, NULL), 0);
	}
	n = mst_list_req_encode(&l, buf, sizeof buf);
	j = trun(&T, MST_OP_LIST, buf, (size_t)n, NULL, 0);
	ck_assert_int_eq(j->status, 0);
	ck_assert_uint_gt(j->nframes, 1);
	for (i = 0; i < j->nframes; i++) {
		ck_assert_uint_le(j->frames[i].len, MST_FRAME_DEFAULT);
		ck_assert_int_eq(mst_list_rep_decode(&lr, j->frames[i].p,
		    j->frames[i].len), 0);
		total += lr.count;
	}
	ck_assert_uint_eq(total, 6000);
	job_free(j);
}
END_TEST

/* Deliver |n| messages with 250-byte names into m/new, |window| in
 * flight at a time (one group commit each, not one sync each). */
static void
deliver_many(size_t n, size_t window)
{
	struct mst_deliver_req d = { .mailbox = mst_str_of("m"),
		.folder = mst_str_of(""), .sub = MST_SUB_NEW,
		.checksum = mst_checksum("x", 1), .body_size = 1, .mode = 0600 };
	char name[300];
	uint8_t buf[512];
	size_t i, k, inflight = 0;
	struct job *j;
	int len;

	memset(name, 'n', 250);
	for (i = 0; i < n || inflight > 0;) {
		for (k = 0; k < window && i < n; k++, i++, inflight++) {
			snprintf(name + 240, 20, "%06zu", i);
			d.name = mst_str_of(name);
			memcpy(d.idem, &i, sizeof i);
			len = mst_deliver_req_encode(&d, buf, sizeof buf);
			tsubmit(&T, tbuild(&T, MST_OP_DELIVER, buf, (size_t)len,
			    "x", 1));
		}
		for (; inflight > 0; inflight--) {
			j = twait();
			ck_assert_int_eq(j->status, 0);
			job_free(j);
		}
	}
}

static void
flip_byte(const char *path, off_t at)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x20;
	ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

/*
 * A checkpoint several times the size of the loader's buffer reads back
 * exactly, and one damaged anywhere (a byte in the middle, the sum, a
 * cut) is refused rather than loaded.
 */
START_TEST(big_checkpoint_round_trips_and_damage_is_refused)
{
	char ck[300], *live, *rebuilt;
	off_t size;

	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	deliver_many(12000, 512);
	live = t_dump(&T);
	reopen();			/* checkpoint at close, then loaded */
	rebuilt = t_dump(&T);
	ck_assert_str_eq(rebuilt, live);
	free(rebuilt);
	tclose(&T);
	snprintf(ck, sizeof ck, "%s/checkpoint", tmpl);
	size = file_size(ck);
	ck_assert_int_gt(size, 3 << 20);
	flip_byte(ck, size / 2);
	ck_assert_int_eq(topen(&T), -EBADMSG);
	flip_byte(ck, size / 2);
	flip_byte(ck, size - 1);
	ck_assert_int_eq(topen(&T), -EBADMSG);
	flip_byte(ck, size - 1);
	ck_assert_int_eq(truncate(ck, size - 9), 0);
	ck_assert_int_eq(topen(&T), -EBADMSG);
	ck_assert_int_eq(truncate(ck, 0), 0);
	ck_assert_int_eq(topen(&T), -EBADMSG);
	ck_assert_int_eq(unlink(ck), 0);	/* a full replay instead */
	ck_assert_int_eq(topen(&T), 0);
	rebuilt = t_dump(&T);
	ck_assert_str_eq(rebuilt, live);
	free(rebuilt);
	free(live);
}
END_TEST

/*
 * The torn-tail check reads every byte offset of a damaged tail; with a
 * body larger than its read window (4 MiB) it must still cut a torn tail
 * and still find a valid record beyond the damage.
 */
START_TEST(big_torn_tail_is_cut_and_damage_before_a_record_is_not)
{
	size_t big = 10u << 20;
	char seg[300], ck[300], *body = malloc(big), *dump;
	off_t start, end;

	ck_assert_ptr_nonnull(body);
	fill(body, big, 7);
	ck_assert_int_eq(t_mkdirs(&T, "m"), 0);
	snprintf(seg, sizeof seg, "%s/log/00000001.seg", tmpl);
	snprintf(ck, sizeof ck, "%s/checkpoint", tmpl);
	start = file_size(seg);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "big", body, big,
	    NULL, NULL), 0);
	end = file_size(seg);
	ck_assert_int_eq(t_deliver(&T, "m", MST_SUB_NEW, "after", "a", 1,
	    NULL, NULL), 0);
	tclose(&T);
	/* A byte of the big body flipped: the record after it is intact,
	 * so this is damage, not a torn tail. */
	ck_assert_int_eq(unlink(ck), 0);
	flip_byte(seg, start + 4096);
	ck_assert_int_eq(topen(&T), -EUCLEAN);
	flip_byte(seg, start + 4096);
	/* Cut 1 MiB before the big record's end: torn, nothing after. */
	ck_assert_int_eq(truncate(seg, end - (1 << 20)), 0);
	ck_assert_int_eq(topen(&T), 0);
	ck_assert_int_eq(file_size(seg), start);
	dump = t_dump(&T);
	ck_assert_ptr_null(strstr(dump, "m/new/big "));
	ck_assert_ptr_null(strstr(dump, "m/new/after "));
	free(dump);
	free(body);
}
END_TEST

static Suite *
engine_suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("local");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, deliver_then_fetch_returns_same_bytes);
	tcase_add_test(tc, delivery_errors);
	tcase_add_test(tc, rebuilt_index_equals_live_index);
	tcase_add_test(tc, recovery_after_truncation_at_every_offset);
	tcase_add_test(tc, torn_middle_record_refuses_to_start);
	tcase_add_test(tc, idempotent_deliver_stores_once);
	tcase_add_test(tc, concurrent_excl_and_idempotent_have_one_winner);
	tcase_add_test(tc, rename_replaces_atomically);
	tcase_add_test(tc, quota_gives_edquot);
	tcase_add_test(tc, failed_write_or_sync_rolls_back_and_service_continues);
	tcase_add_test(tc, reserve_gives_enospc);
	tcase_add_test(tc, compaction_keeps_every_live_message);
	tcase_add_test(tc, scrub_finds_a_flipped_bit);
	tcase_add_test(tc, list_since_returns_only_changes);
	tcase_add_test(tc, big_listing_spans_frames);
	tcase_add_test(tc, big_checkpoint_round_trips_and_damage_is_refused);
	tcase_add_test(tc, big_torn_tail_is_cut_and_damage_before_a_record_is_not);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(engine_suite());
	int failed;

	log_open("stderr", LOG_LVL_ERR);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
