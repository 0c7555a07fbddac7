/*
 * check_fbuf.c - local file buffers (fuse-mount/fbuf.c), without FUSE:
 * writes, reads and truncation with holes, the spill from memory to an
 * unlinked spool file past MNT_MEM_MAX and reads across that boundary,
 * fbuf_map/fbuf_unmap of both kinds, fbuf_set, pins (a view being sent
 * cannot change: writes and truncation fail with ETXTBSY), and errors.
 * Links only
 * fbuf.c and util.c (layer 1, see fuse-mount/mount.h).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mount.h"

static struct mount m;
static struct fbuf *b;
static char spool[] = "/tmp/check_fbuf-XXXXXX";

static void
setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(spool));
	m.spool = spool;
	b = fbuf_new();
	ck_assert_ptr_nonnull(b);
}

/* The spool file is unlinked at once: the directory is empty again. */
static void
teardown(void)
{
	fbuf_free(b);
	ck_assert_int_eq(rmdir(spool), 0);
	strcpy(spool, "/tmp/check_fbuf-XXXXXX");
}

/* |len| bytes of a pattern that differs at every offset mod 251. */
static uint8_t *
pattern(size_t len, uint64_t from)
{
	uint8_t *p = malloc(len ? len : 1);
	size_t i;

	ck_assert_ptr_nonnull(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)((from + i) % 251 + 1);
	return p;
}

/* The whole contents read back equal |want| (|len| bytes). */
static void
expect_contents(const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len + 16);
	ssize_t n;
	size_t i;

	ck_assert_ptr_nonnull(got);
	ck_assert_msg(b->size == len, "size: got %llu, want %zu",
	    (unsigned long long)b->size, len);
	n = fbuf_read(b, got, len + 16, 0);
	ck_assert_msg(n == (ssize_t)len, "read: got %zd, want %zu", n, len);
	if (len > 0 && memcmp(got, want, len) != 0) {
		for (i = 0; got[i] == want[i]; i++)
			;
		ck_abort_msg("byte %zu: got %u, want %u", i, got[i], want[i]);
	}
	free(got);
}

START_TEST(new_buffer_is_empty)
{
	uint8_t c;

	ck_assert_uint_eq(b->size, 0);
	ck_assert_int_eq(b->fd, -1);
	ck_assert_int_eq(fbuf_read(b, &c, 1, 0), 0);
}
END_TEST

START_TEST(write_then_read)
{
	ck_assert_int_eq(fbuf_write(b, &m, "hello, world", 12, 0), 0);
	ck_assert_int_eq(fbuf_write(b, &m, "W", 1, 7), 0);
	expect_contents((const uint8_t *)"hello, World", 12);
}
END_TEST

START_TEST(reads_stop_at_the_end)
{
	static const struct {
		uint64_t off;
		size_t len;
		ssize_t want;
	} cases[] = {
		{ 0, 4, 4 }, { 6, 100, 4 }, { 9, 1, 1 }, { 10, 5, 0 },
		{ 1000, 5, 0 }, { 3, 0, 0 },
	};
	char got[128];
	size_t i;
	ssize_t n;

	ck_assert_int_eq(fbuf_write(b, &m, "0123456789", 10, 0), 0);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		n = fbuf_read(b, got, cases[i].len, cases[i].off);
		ck_assert_msg(n == cases[i].want, "read %zu at %llu: got %zd, "
		    "want %zd", cases[i].len, (unsigned long long)cases[i].off,
		    n, cases[i].want);
		if (n > 0)
			ck_assert_mem_eq(got, "0123456789" + cases[i].off,
			    (size_t)n);
	}
}
END_TEST

START_TEST(write_past_the_end_leaves_a_hole_of_zeros)
{
	uint8_t want[20] = { 'a', 'b' };

	ck_assert_int_eq(fbuf_write(b, &m, "ab", 2, 0), 0);
	ck_assert_int_eq(fbuf_write(b, &m, "yz", 2, 18), 0);
	want[18] = 'y';
	want[19] = 'z';
	expect_contents(want, sizeof want);
}
END_TEST

/* Truncation down and up, in memory and in the spool file: what is cut
 * is gone, what is added reads as zeros. */
START_TEST(truncate_cuts_and_extends_with_zeros)
{
	static const struct {
		size_t first;		/* bytes written first */
		uint64_t cut;		/* truncated to */
		uint64_t grow;		/* then extended to */
	} cases[] = {
		{ 100, 10, 50 },		/* in memory */
		{ 100, 0, 4096 },
		{ 100, 100, 100 },
		{ 5000, 4000, 9000 },
		{ 10, 10, MNT_MEM_MAX + 100 },	/* spills as it grows */
		{ MNT_MEM_MAX + 10, 100, 300 },	/* spooled from here on */
		{ MNT_MEM_MAX + 10, MNT_MEM_MAX - 5, MNT_MEM_MAX + 5 },
	};
	size_t i, j;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t *p = pattern(cases[i].first, 0);
		uint8_t *want = calloc(1, (size_t)cases[i].grow + 1);

		ck_assert_ptr_nonnull(want);
		ck_assert_int_eq(fbuf_set(b, &m, p, cases[i].first), 0);
		ck_assert_int_eq(fbuf_truncate(b, &m, cases[i].cut), 0);
		ck_assert_msg(b->size == cases[i].cut, "case %zu cut: got %llu,"
		    " want %llu", i, (unsigned long long)b->size,
		    (unsigned long long)cases[i].cut);
		ck_assert_int_eq(fbuf_truncate(b, &m, cases[i].grow), 0);
		for (j = 0; j < cases[i].cut && j < cases[i].grow; j++)
			want[j] = p[j];
		if (i == 4)
			ck_assert_msg(b->fd >= 0, "case 4 fd: got %d, want a "
			    "spool file", b->fd);
		if (i < 4)
			ck_assert_msg(b->fd == -1, "case %zu fd: got %d, want "
			    "-1", i, b->fd);
		expect_contents(want, (size_t)cases[i].grow);
		free(want);
		free(p);
	}
}
END_TEST

START_TEST(spill_past_mem_max_keeps_every_byte)
{
	size_t half = MNT_MEM_MAX / 2, total = MNT_MEM_MAX + 4096;
	uint8_t *p = pattern(total, 0), got[64];
	ssize_t n;

	ck_assert_int_eq(fbuf_write(b, &m, p, half, 0), 0);
	ck_assert_msg(b->fd == -1, "fd before the spill: got %d, want -1",
	    b->fd);
	ck_assert_int_eq(fbuf_write(b, &m, p + half, total - half, half), 0);
	ck_assert_msg(b->fd >= 0, "fd after the spill: got %d, want >= 0",
	    b->fd);
	ck_assert_ptr_null(b->mem);
	expect_contents(p, total);
	/* One read across the old memory limit. */
	n = fbuf_read(b, got, sizeof got, MNT_MEM_MAX - 32);
	ck_assert_int_eq(n, (ssize_t)sizeof got);
	ck_assert_mem_eq(got, p + MNT_MEM_MAX - 32, sizeof got);
	free(p);
}
END_TEST

START_TEST(exactly_mem_max_stays_in_memory)
{
	uint8_t *p = pattern(MNT_MEM_MAX, 7);

	ck_assert_int_eq(fbuf_write(b, &m, p, MNT_MEM_MAX, 0), 0);
	ck_assert_int_eq(b->fd, -1);
	ck_assert_int_eq(fbuf_write(b, &m, "x", 1, MNT_MEM_MAX), 0);
	ck_assert_int_ge(b->fd, 0);
	p = realloc(p, MNT_MEM_MAX + 1);
	ck_assert_ptr_nonnull(p);
	p[MNT_MEM_MAX] = 'x';
	expect_contents(p, MNT_MEM_MAX + 1);
	free(p);
}
END_TEST

/* A spooled buffer cut to 0 keeps its spool file; mapping it must not
 * ask mmap for 0 bytes (EINVAL), so that an empty body can be sent. */
START_TEST(map_of_a_spooled_buffer_cut_to_zero)
{
	uint8_t *p = pattern(MNT_MEM_MAX + 1, 3);
	const uint8_t *v = NULL;

	ck_assert_int_eq(fbuf_write(b, &m, p, MNT_MEM_MAX + 1, 0), 0);
	ck_assert_int_ge(b->fd, 0);
	ck_assert_int_eq(fbuf_truncate(b, &m, 0), 0);
	ck_assert_uint_eq(b->size, 0);
	ck_assert_int_eq(fbuf_map(b, &v), 0);
	ck_assert_ptr_nonnull(v);
	fbuf_unmap(b, v);
	free(p);
}
END_TEST

START_TEST(map_of_memory_and_of_spool)
{
	const uint8_t *v = NULL;
	uint8_t *p = pattern(MNT_MEM_MAX + 1, 3);

	/* Empty: a valid pointer all the same. */
	ck_assert_int_eq(fbuf_map(b, &v), 0);
	ck_assert_ptr_nonnull(v);
	fbuf_unmap(b, v);
	ck_assert_int_eq(fbuf_set(b, &m, "memory", 6), 0);
	ck_assert_int_eq(fbuf_map(b, &v), 0);
	ck_assert_mem_eq(v, "memory", 6);
	fbuf_unmap(b, v);
	ck_assert_int_eq(fbuf_set(b, &m, p, MNT_MEM_MAX + 1), 0);
	ck_assert_int_ge(b->fd, 0);
	ck_assert_int_eq(fbuf_map(b, &v), 0);
	ck_assert_int_eq(memcmp(v, p, MNT_MEM_MAX + 1), 0);
	fbuf_unmap(b, v);
	/* Still readable after the unmap. */
	expect_contents(p, MNT_MEM_MAX + 1);
	free(p);
}
END_TEST

/* A pinned buffer's view stays as it was: no write, no truncation, no
 * spill may move or change it; nested pins all have to go. */
START_TEST(pinned_buffer_refuses_changes_until_unpinned)
{
	const uint8_t *v = NULL;
	uint8_t *p = pattern(MNT_MEM_MAX + 1, 5);

	ck_assert_int_eq(fbuf_set(b, &m, "body", 4), 0);
	fbuf_pin(b);
	fbuf_pin(b);
	ck_assert_int_eq(fbuf_map(b, &v), 0);
	ck_assert_int_eq(fbuf_write(b, &m, "X", 1, 0), -ETXTBSY);
	ck_assert_int_eq(fbuf_write(b, &m, p, MNT_MEM_MAX + 1, 0), -ETXTBSY);
	ck_assert_int_eq(fbuf_truncate(b, &m, 0), -ETXTBSY);
	ck_assert_int_eq(fbuf_truncate(b, &m, 100), -ETXTBSY);
	ck_assert_int_eq(fbuf_set(b, &m, "other", 5), -ETXTBSY);
	ck_assert_int_lt(b->fd, 0);		/* not spilled */
	ck_assert_mem_eq(v, "body", 4);
	fbuf_unmap(b, v);
	fbuf_unpin(b);
	ck_assert_int_eq(fbuf_write(b, &m, "X", 1, 0), -ETXTBSY);
	fbuf_unpin(b);
	ck_assert_int_eq(fbuf_write(b, &m, "B", 1, 0), 0);
	expect_contents((const uint8_t *)"Body", 4);
	/* A spooled one the same. */
	ck_assert_int_eq(fbuf_set(b, &m, p, MNT_MEM_MAX + 1), 0);
	fbuf_pin(b);
	ck_assert_int_eq(fbuf_truncate(b, &m, 1), -ETXTBSY);
	ck_assert_int_eq(fbuf_write(b, &m, "X", 1, 7), -ETXTBSY);
	fbuf_unpin(b);
	fbuf_unpin(b);		/* one too many: no effect */
	expect_contents(p, MNT_MEM_MAX + 1);
	free(p);
}
END_TEST

START_TEST(set_replaces_the_contents)
{
	ck_assert_int_eq(fbuf_set(b, &m, "a long first text", 17), 0);
	ck_assert_int_eq(fbuf_set(b, &m, "short", 5), 0);
	expect_contents((const uint8_t *)"short", 5);
	ck_assert_int_eq(fbuf_set(b, &m, NULL, 0), 0);
	ck_assert_uint_eq(b->size, 0);
}
END_TEST

/* A spool directory that is not there: the spill fails with its errno,
 * and what was in memory stays as it was. */
START_TEST(spill_into_a_missing_spool_fails_and_keeps_memory)
{
	struct mount bad = { .spool = "/nonexistent/check_fbuf" };
	uint8_t *p = pattern(MNT_MEM_MAX + 1, 0);
	int rc;

	ck_assert_int_eq(fbuf_write(b, &bad, "kept", 4, 0), 0);
	rc = fbuf_write(b, &bad, p, MNT_MEM_MAX + 1, 0);
	ck_assert_msg(rc == -ENOENT, "got %d, want %d", rc, -ENOENT);
	ck_assert_int_eq(b->fd, -1);
	expect_contents((const uint8_t *)"kept", 4);
	rc = fbuf_truncate(b, &bad, MNT_MEM_MAX + 1);
	ck_assert_msg(rc == -ENOENT, "truncate: got %d, want %d", rc,
	    -ENOENT);
	free(p);
}
END_TEST

START_TEST(free_of_null_does_nothing)
{
	fbuf_free(NULL);
}
END_TEST

static Suite *
fbuf_suite(void)
{
	Suite *s = suite_create("fbuf");
	TCase *tc = tcase_create("buffer");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, new_buffer_is_empty);
	tcase_add_test(tc, write_then_read);
	tcase_add_test(tc, reads_stop_at_the_end);
	tcase_add_test(tc, write_past_the_end_leaves_a_hole_of_zeros);
	tcase_add_test(tc, truncate_cuts_and_extends_with_zeros);
	tcase_add_test(tc, spill_past_mem_max_keeps_every_byte);
	tcase_add_test(tc, exactly_mem_max_stays_in_memory);
	tcase_add_test(tc, map_of_memory_and_of_spool);
	tcase_add_test(tc, set_replaces_the_contents);
	tcase_add_test(tc, pinned_buffer_refuses_changes_until_unpinned);
	tcase_add_test(tc, spill_into_a_missing_spool_fails_and_keeps_memory);
	tcase_add_test(tc, free_of_null_does_nothing);
	tcase_add_test(tc, map_of_a_spooled_buffer_cut_to_zero);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(fbuf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
