/*
 * check_ckpt.c - Check suite for incremental checkpoints (eng_ckpt.c;
 * the "MSCKPT04" manifest and its parts, checkpoint.c): a checkpoint
 * after a few changes writes only the parts they touched and its
 * manifest, old part files go once a newer manifest names others, and a
 * restart from a manifest, its parts and the log after it equals the
 * live index. Crash safety: the files a checkpoint leaves at each of its
 * steps (a part half written, every part and half the manifest, the
 * whole manifest not yet renamed, renamed with the old parts still
 * there) each restart to exactly the live index, and so do the files of
 * a checkpoint child that failed at each of its syncs. Whole-index
 * checkpoints (MSCKPT03) of the same store load, and a store goes from
 * one kind to the other both ways. Parts are made small (a few ids) so
 * that a few hundred messages make many of them.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diskio.h"
#include "engine_util.h"
#include "mstproto.h"

#define PART_IDS	16u
#define NMSG		300

static char tmpl[64];
static struct tengine T;

static void
setup(void)
{
	strcpy(tmpl, "/tmp/mst-ckpt-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	tconf(&T, tmpl);
	T.conf.checkpoint_part_ids = PART_IDS;
	T.conf.compact_percent = 0;	/* no relocation behind our back */
	ck_assert_int_eq(topen(&T), 0);
}

static void
teardown(void)
{
	tclose(&T);
	dio_fail_at(DIO_SYNC, 0, 0);
	trm_tree(tmpl);
}

static void
sh(const char *fmt, const char *a, const char *b)
{
	char cmd[1024];

	snprintf(cmd, sizeof cmd, fmt, a, b);
	ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

/* A number from the engine's stats. */
static unsigned long long
stat_in(struct tengine *t, const char *key)
{
	char st[4096], *p;
	char k[64];

	ck_assert_int_eq(t_admin(t, "stats", st, sizeof st), 0);
	snprintf(k, sizeof k, "\n%s=", key);
	p = strstr(st, k);
	ck_assert_msg(p != NULL, "no %s in stats", key);
	return strtoull(p + strlen(k), NULL, 10);
}

static unsigned long long
stat_of(const char *key)
{
	return stat_in(&T, key);
}

/* Part files under |dir|/ckpt. */
static int
count_parts(const char *dir)
{
	char path[300];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(path, sizeof path, "%s/ckpt", dir);
	dp = opendir(path);
	ck_assert_ptr_nonnull(dp);
	while ((d = readdir(dp)) != NULL)
		n += d->d_name[0] != '.';
	closedir(dp);
	return n;
}

static void
deliver_n(const char *mbox, int from, int n)
{
	char name[64], body[256];
	int i;

	for (i = from; i < from + n; i++) {
		snprintf(name, sizeof name, "%d.M%d.host", i, i);
		snprintf(body, sizeof body, "message %d of the store", i);
		ck_assert_int_eq(t_deliver(&T, mbox, MST_SUB_NEW, name, body,
		    strlen(body), NULL, NULL), 0);
	}
}

/* A store with messages in two mailboxes, an ordinary file with two
 * names, and a checkpoint of all of it. */
static void
fill_store(void)
{
	uint64_t id;

	ck_assert_int_eq(t_mkdirs(&T, "u"), 0);
	ck_assert_int_eq(t_mkdirs(&T, "v"), 0);
	ck_assert_int_eq(t_mkdir(&T, "u/.Sent"), 0);
	ck_assert_int_eq(t_put(&T, "u/dovecot-uidlist", "3 V1 N4\n", 8, 0),
	    0);
	deliver_n("u", 0, NMSG / 2);
	ck_assert_int_eq(t_lookup(&T, "u/dovecot-uidlist", NULL), 0);
	{
		struct mst_attr a;

		ck_assert_int_eq(t_lookup(&T, "u/dovecot-uidlist", &a), 0);
		id = a.id;
	}
	ck_assert_int_eq(t_link(&T, id, "v/uidlist-link"), 0);
	deliver_n("v", NMSG / 2, NMSG / 2);
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
}

/* The live index, and a restart (with a checkpoint at close) giving it
 * back. */
static void
assert_reopen_equal(void)
{
	char *live = t_dump(&T), *back;

	tclose(&T);
	ck_assert_int_eq(topen(&T), 0);
	back = t_dump(&T);
	ck_assert_str_eq(back, live);
	free(back);
	free(live);
}

START_TEST(a_checkpoint_after_few_changes_writes_few_parts)
{
	unsigned long long all, bytes_all, parts, bytes;

	fill_store();
	all = stat_of("checkpoint_parts_written_last");
	bytes_all = stat_of("checkpoint_bytes_last");
	/* ~300 messages and a few directories over parts of 16 ids. */
	ck_assert_uint_ge(all, NMSG / PART_IDS);
	ck_assert_int_eq(count_parts(tmpl), (int)stat_of("checkpoint_parts"));

	/* New mail takes the newest ids: one or two parts. */
	deliver_n("u", 1000, 3);
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	parts = stat_of("checkpoint_parts_written_last");
	bytes = stat_of("checkpoint_bytes_last");
	ck_assert_uint_ge(parts, 1);
	ck_assert_uint_le(parts, 2);
	ck_assert_msg(bytes * 4 < bytes_all, "after 3 deliveries %llu "
	    "bytes, the whole store %llu", bytes, bytes_all);
	ck_assert_int_eq(count_parts(tmpl), (int)stat_of("checkpoint_parts"));

	/* An expunge of an old message: its part and the spent ids. A
	 * flag change of another old one: its part. */
	ck_assert_int_eq(t_expunge(&T, "u", MST_SUB_NEW, "3.M3.host"), 0);
	ck_assert_int_eq(t_setinfo(&T, "v", MST_SUB_NEW, "200.M200.host",
	    MST_SUB_CUR, "200.M200.host:2,S"), 0);
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	parts = stat_of("checkpoint_parts_written_last");
	ck_assert_uint_eq(parts, 3);
	ck_assert_int_eq(count_parts(tmpl), (int)stat_of("checkpoint_parts"));

	/* Nothing changed: the manifest alone. */
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	ck_assert_uint_eq(stat_of("checkpoint_parts_written_last"), 0);

	/* A write to the file with two names: its part only. */
	{
		struct mst_attr a;

		ck_assert_int_eq(t_lookup(&T, "v/uidlist-link", &a), 0);
		ck_assert_int_eq(t_write(&T, a.id, 8, 0, "5 M\n", 4, NULL),
		    0);
	}
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	ck_assert_uint_eq(stat_of("checkpoint_parts_written_last"), 1);
	assert_reopen_equal();
	ck_assert_uint_eq(stat_of("messages"), NMSG + 3 - 1);
}
END_TEST

static void
copy_dir(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", to, from, to);
	ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

/* A copy of the store's files as a kill -9 would leave them (the engine
 * is running: no checkpoint at close). */
static void
snapshot(const char *to)
{
	copy_dir(tmpl, to);
}

/* Open the store in |dir| and compare it with |want|; every part file
 * left there is one its manifest names. */
static void
assert_restarts_to(const char *dir, const char *want)
{
	struct tengine R;
	char *got;

	tconf(&R, dir);
	R.conf.checkpoint_part_ids = PART_IDS;
	R.conf.compact_percent = 0;
	ck_assert_int_eq(topen(&R), 0);
	got = t_dump(&R);
	ck_assert_str_eq(got, want);
	free(got);
	/* What the crash left and no manifest names is gone. */
	ck_assert_int_eq(count_parts(dir),
	    (int)stat_in(&R, "checkpoint_parts"));
	tclose(&R);
}

START_TEST(a_crash_at_each_step_of_a_checkpoint_restarts_exact)
{
	char pre[128], post[128], img[128], cmd[1024];
	char *live;

	snprintf(pre, sizeof pre, "%s.pre", tmpl);
	snprintf(post, sizeof post, "%s.post", tmpl);
	snprintf(img, sizeof img, "%s.img", tmpl);
	fill_store();
	/* Changes of every kind after that checkpoint. */
	deliver_n("v", 2000, 20);
	ck_assert_int_eq(t_expunge(&T, "u", MST_SUB_NEW, "7.M7.host"), 0);
	ck_assert_int_eq(t_setinfo(&T, "v", MST_SUB_NEW, "160.M160.host",
	    MST_SUB_CUR, "160.M160.host:2,RS"), 0);
	ck_assert_int_eq(t_simple(&T, MST_OP_UNLINK, "v/uidlist-link"), 0);
	ck_assert_int_eq(t_mkdirs(&T, "w"), 0);
	deliver_n("w", 3000, 5);
	live = t_dump(&T);
	snapshot(pre);		/* the old manifest and its parts */
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	ck_assert_uint_ge(stat_of("checkpoint_parts_written_last"), 3);
	snapshot(post);		/* the new one, old parts gone */

	/* 1. The child dies inside a part: one new part, half written. */
	copy_dir(pre, img);
	snprintf(cmd, sizeof cmd, "cd %s/ckpt && for f in *; do "
	    "[ -e %s/ckpt/$f ] || { cp $f %s/ckpt/$f; "
	    "truncate -s $(( $(stat -c %%s $f) / 2 )) %s/ckpt/$f; break; }; "
	    "done", post, pre, img, img);
	ck_assert_int_eq(system(cmd), 0);
	assert_restarts_to(img, live);

	/* 2. Every part written, the manifest half written. */
	copy_dir(pre, img);
	snprintf(cmd, sizeof cmd, "cp -n %s/ckpt/* %s/ckpt/ && "
	    "head -c $(( $(stat -c %%s %s/checkpoint) / 2 )) "
	    "%s/checkpoint > %s/checkpoint.tmp", post, img, post, post, img);
	ck_assert_int_eq(system(cmd), 0);
	assert_restarts_to(img, live);

	/* 3. The manifest whole and synced, not renamed yet. */
	copy_dir(pre, img);
	snprintf(cmd, sizeof cmd, "cp -n %s/ckpt/* %s/ckpt/ && "
	    "cp %s/checkpoint %s/checkpoint.tmp", post, img, post, img);
	ck_assert_int_eq(system(cmd), 0);
	assert_restarts_to(img, live);

	/* 4. Renamed, the parts it no longer names not removed yet. */
	copy_dir(pre, img);
	snprintf(cmd, sizeof cmd, "cp -n %s/ckpt/* %s/ckpt/ && "
	    "cp %s/checkpoint %s/checkpoint", post, img, post, img);
	ck_assert_int_eq(system(cmd), 0);
	assert_restarts_to(img, live);

	/* 5. Removed: the checkpoint done. */
	assert_restarts_to(post, live);

	/* A part the manifest names, damaged or missing: refused. */
	copy_dir(post, img);
	snprintf(cmd, sizeof cmd, "f=$(ls %s/ckpt | tail -1); "
	    "printf '\\377' | dd of=%s/ckpt/$f bs=1 seek=40 conv=notrunc "
	    "2>/dev/null", img, img);
	ck_assert_int_eq(system(cmd), 0);
	{
		struct tengine R;

		tconf(&R, img);
		R.conf.checkpoint_part_ids = PART_IDS;
		ck_assert_int_eq(topen(&R), -EBADMSG);
		sh("f=$(ls %s/ckpt | tail -1); rm %s/ckpt/$f", img, img);
		ck_assert_int_eq(topen(&R), -ENOENT);
	}
	sh("rm -rf %s %s", pre, post);
	sh("rm -rf %s%s", img, "");
	free(live);
}
END_TEST

/*
 * The child fails at each of its syncs in turn (the first part, a later
 * one, the manifest): the checkpoint is refused, the files it left and
 * the log restart to the live index (as after a kill -9 then), and the
 * next checkpoint succeeds and removes what the failed one left.
 */
START_TEST(a_child_failing_at_each_sync_leaves_a_store_that_restarts_exact)
{
	char img[128];
	char *live;
	unsigned nth, parts;

	snprintf(img, sizeof img, "%s.img", tmpl);
	fill_store();
	for (nth = 1; nth <= 6; nth++) {
		deliver_n("u", 5000 + 40 * (int)nth, 40);	/* 3-4 parts */
		ck_assert_int_eq(t_expunge(&T, "v", MST_SUB_NEW,
		    nth == 1 ? "151.M151.host" : nth == 2 ? "152.M152.host" :
		    nth == 3 ? "153.M153.host" : nth == 4 ? "154.M154.host" :
		    nth == 5 ? "155.M155.host" : "156.M156.host"), 0);
		live = t_dump(&T);
		/* Only the child syncs from here until it is answered: the
		 * store is idle and compaction is off. */
		dio_fail_at(DIO_SYNC, nth, EIO);
		ck_assert_int_ne(t_admin(&T, "checkpoint", NULL, 0), 0);
		dio_fail_at(DIO_SYNC, 0, 0);
		snapshot(img);
		assert_restarts_to(img, live);
		ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
		parts = (unsigned)stat_of("checkpoint_parts_written_last");
		ck_assert_uint_ge(parts, 3);
		ck_assert_int_eq(count_parts(tmpl),
		    (int)stat_of("checkpoint_parts"));
		free(live);
	}
	assert_reopen_equal();
	sh("rm -rf %s%s", img, "");
}
END_TEST

/* Stores checkpointed whole (MSCKPT03: parts larger than every id)
 * load with parts configured, whose first checkpoint writes every part;
 * and back. */
START_TEST(whole_and_part_checkpoints_replace_each_other)
{
	char *live, *back;

	tclose(&T);
	T.conf.checkpoint_part_ids = 1u << 30;
	ck_assert_int_eq(topen(&T), 0);
	fill_store();
	ck_assert_int_eq(count_parts(tmpl), 0);
	live = t_dump(&T);
	tclose(&T);
	T.conf.checkpoint_part_ids = PART_IDS;
	ck_assert_int_eq(topen(&T), 0);
	back = t_dump(&T);
	ck_assert_str_eq(back, live);
	free(back);
	ck_assert_int_eq(t_admin(&T, "checkpoint", NULL, 0), 0);
	ck_assert_uint_ge(stat_of("checkpoint_parts_written_last"),
	    NMSG / PART_IDS);
	assert_reopen_equal();
	free(live);
	live = t_dump(&T);
	tclose(&T);
	T.conf.checkpoint_part_ids = 1u << 30;
	ck_assert_int_eq(topen(&T), 0);
	back = t_dump(&T);
	ck_assert_str_eq(back, live);
	free(back);
	free(live);
	tclose(&T);		/* a whole checkpoint: the parts go */
	ck_assert_int_eq(count_parts(tmpl), 0);
	ck_assert_int_eq(topen(&T), 0);
}
END_TEST

static Suite *
ckpt_suite(void)
{
	Suite *s = suite_create("ckpt");
	TCase *tc = tcase_create("local");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, a_checkpoint_after_few_changes_writes_few_parts);
	tcase_add_test(tc, a_crash_at_each_step_of_a_checkpoint_restarts_exact);
	tcase_add_test(tc,
	    a_child_failing_at_each_sync_leaves_a_store_that_restarts_exact);
	tcase_add_test(tc, whole_and_part_checkpoints_replace_each_other);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ckpt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
