/*
 * check_locktab.c - the mount's table of lock owners (fuse-mount/
 * locktab.c), without FUSE: who may hold locks, release of one kind
 * leaving the other, clearing after a lost connection, and growth.
 */
#include <check.h>
#include <stdlib.h>

#include "locktab.h"

static struct locktab *t;

static void
setup(void)
{
	t = locktab_new();
	ck_assert_ptr_nonnull(t);
}

static void
teardown(void)
{
	locktab_free(t);
}

START_TEST(empty_table_holds_nothing)
{
	ck_assert_int_eq(locktab_held(t, 7, 1, LT_POSIX), 0);
	ck_assert_int_eq(locktab_release(t, 7, 1, LT_POSIX), 0);
	ck_assert_uint_eq(locktab_count(t), 0);
}
END_TEST

START_TEST(grant_is_per_inode_owner_and_kind)
{
	ck_assert_int_eq(locktab_grant(t, 7, 1, LT_POSIX), 0);
	ck_assert_int_eq(locktab_held(t, 7, 1, LT_POSIX), 1);
	ck_assert_int_eq(locktab_held(t, 7, 1, LT_FLOCK), 0);
	ck_assert_int_eq(locktab_held(t, 7, 2, LT_POSIX), 0);
	ck_assert_int_eq(locktab_held(t, 8, 1, LT_POSIX), 0);
}
END_TEST

START_TEST(second_grant_of_same_key_is_one_entry)
{
	ck_assert_int_eq(locktab_grant(t, 7, 1, LT_POSIX), 0);
	ck_assert_int_eq(locktab_grant(t, 7, 1, LT_POSIX), 0);
	ck_assert_uint_eq(locktab_count(t), 1);
	ck_assert_int_eq(locktab_release(t, 7, 1, LT_POSIX), 1);
	ck_assert_int_eq(locktab_held(t, 7, 1, LT_POSIX), 0);
}
END_TEST

START_TEST(release_of_posix_keeps_flock)
{
	ck_assert_int_eq(locktab_grant(t, 7, 1, LT_POSIX), 0);
	ck_assert_int_eq(locktab_grant(t, 7, 1, LT_FLOCK), 0);
	ck_assert_int_eq(locktab_release(t, 7, 1, LT_POSIX), 1);
	ck_assert_int_eq(locktab_held(t, 7, 1, LT_FLOCK), 1);
	ck_assert_uint_eq(locktab_count(t), 1);
}
END_TEST

struct seen {
	size_t n;
	uint64_t sum;
};

static void
count_lost(void *arg, uint64_t ino, uint64_t owner, int kind)
{
	struct seen *s = arg;

	s->n++;
	s->sum += ino * 1000 + owner * 10 + (uint64_t)kind;
}

START_TEST(clear_reports_every_entry_once)
{
	struct seen s = { 0 };

	ck_assert_int_eq(locktab_grant(t, 1, 2, LT_POSIX), 0);
	ck_assert_int_eq(locktab_grant(t, 3, 4, LT_FLOCK), 0);
	ck_assert_uint_eq(locktab_clear(t, count_lost, &s), 2);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_uint_eq(s.sum, 1000 + 20 + 1 + 3000 + 40 + 2);
	ck_assert_uint_eq(locktab_count(t), 0);
	ck_assert_int_eq(locktab_held(t, 1, 2, LT_POSIX), 0);
}
END_TEST

START_TEST(many_entries_survive_growth)
{
	uint64_t i;

	for (i = 0; i < 5000; i++)
		ck_assert_int_eq(locktab_grant(t, i, i * 31 + 1, LT_POSIX), 0);
	ck_assert_uint_eq(locktab_count(t), 5000);
	for (i = 0; i < 5000; i++)
		ck_assert_int_eq(locktab_held(t, i, i * 31 + 1, LT_POSIX), 1);
	for (i = 0; i < 5000; i += 2)
		ck_assert_int_eq(locktab_release(t, i, i * 31 + 1, LT_POSIX),
		    1);
	ck_assert_uint_eq(locktab_count(t), 2500);
	for (i = 0; i < 5000; i++)
		ck_assert_int_eq(locktab_held(t, i, i * 31 + 1, LT_POSIX),
		    (int)(i & 1));
}
END_TEST

START_TEST(free_of_null_does_nothing)
{
	locktab_free(NULL);
}
END_TEST

static Suite *
locktab_suite(void)
{
	Suite *s = suite_create("locktab");
	TCase *tc = tcase_create("table");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, empty_table_holds_nothing);
	tcase_add_test(tc, grant_is_per_inode_owner_and_kind);
	tcase_add_test(tc, second_grant_of_same_key_is_one_entry);
	tcase_add_test(tc, release_of_posix_keeps_flock);
	tcase_add_test(tc, clear_reports_every_entry_once);
	tcase_add_test(tc, many_entries_survive_growth);
	tcase_add_test(tc, free_of_null_does_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(locktab_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
