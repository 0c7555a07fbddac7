/*
 * check_folder.c - the mail folder cache (fuse-mount/folder.c), without
 * FUSE or a store: put, find and del, growth of the table, a full LIST
 * reply replacing everything, deltas adding and removing, replies of
 * several frames, names of the longest length, the memory account and
 * the eviction list; names known missing, kept only under the stamps
 * they were asked under, bounded and accounted. Links only folder.c and util.c (layer 1, see
 * fuse-mount/mount.h) and the protocol codec that builds the replies.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"

static struct mount m;
static struct minode dir;
static struct folder *f;

static void
setup(void)
{
	memset(&m, 0, sizeof m);
	memset(&dir, 0, sizeof dir);
	lru_init(&m.flru);
	f = folder_new(&m, &dir);
	ck_assert_ptr_nonnull(f);
	dir.folder = f;
}

static void
teardown(void)
{
	folder_free(f);
	ck_assert_msg(m.mem_used == 0, "mem_used after free: got %zu, "
	    "want 0", m.mem_used);
}

static struct mst_attr
attr_of(uint64_t id)
{
	struct mst_attr a = { .type = MST_T_MSG, .id = id, .size = id * 10,
		.mode = 0600, .nlink = 1, .change = id };

	return a;
}

/* One LIST reply frame: |flags|, counter |change|, and entries |names|
 * (a leading '-' marks a removal), ids from |id0| up. */
static void
frame_of(struct mreply_frame *fr, uint8_t flags, uint64_t change,
    const char *const *names, size_t n, uint64_t id0)
{
	static uint8_t ents[8][65536];
	static size_t next;
	uint8_t *buf = malloc(65536 + 64), *e = ents[next++ % 8];
	struct mst_list_rep lr = { .change = change,
		.dir_mtime_ns = change * 1000, .flags = flags };
	size_t i, off = 0;
	int rc;

	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < n; i++) {
		struct mst_list_entry en = { .kind = MST_LE_PRESENT,
			.attr = attr_of(id0 + i) };
		const char *nm = names[i];

		if (nm[0] == '-') {
			en.kind = MST_LE_REMOVED;
			nm++;
		}
		en.name = mst_str_of(nm);
		rc = mst_list_entry_encode(&en, e + off, 65536 - off);
		ck_assert_int_gt(rc, 0);
		off += (size_t)rc;
	}
	lr.count = (uint32_t)n;
	lr.entries = e;
	lr.entries_len = off;
	rc = mst_list_rep_encode(&lr, buf, 65536 + 64);
	ck_assert_int_gt(rc, 0);
	fr->p = buf;
	fr->len = (size_t)rc;
}

static void
reply_free(struct mreply *r)
{
	size_t i;

	for (i = 0; i < r->nframes; i++)
		free(r->frames[i].p);
}

/* Exactly |names| are in the cache. */
static void
expect_names(const char *const *names, size_t n)
{
	size_t i;

	ck_assert_msg(f->n == n, "entries: got %zu, want %zu", f->n, n);
	for (i = 0; i < n; i++)
		ck_assert_msg(folder_find(f, names[i]) != NULL,
		    "find %s: got NULL, want an entry", names[i]);
}

START_TEST(empty_cache_finds_nothing)
{
	ck_assert_ptr_null(folder_find(f, "x"));
	folder_del(f, "x");
	ck_assert_uint_eq(f->n, 0);
	ck_assert_int_eq(lru_on(&f->lru), 0);
}
END_TEST

START_TEST(put_find_del)
{
	struct mst_attr a = attr_of(5), b = attr_of(6);
	struct fentry *e;

	folder_put(f, "1.M1.host:2,S", &a);
	e = folder_find(f, "1.M1.host:2,S");
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->attr.id, 5);
	/* The same name again: its attributes change, no second entry. */
	folder_put(f, "1.M1.host:2,S", &b);
	ck_assert_uint_eq(f->n, 1);
	ck_assert_uint_eq(folder_find(f, "1.M1.host:2,S")->attr.id, 6);
	ck_assert_ptr_null(folder_find(f, "1.M1.host:2,"));
	folder_del(f, "other");
	ck_assert_uint_eq(f->n, 1);
	folder_del(f, "1.M1.host:2,S");
	ck_assert_uint_eq(f->n, 0);
	ck_assert_ptr_null(folder_find(f, "1.M1.host:2,S"));
}
END_TEST

START_TEST(growth_keeps_every_entry)
{
	char name[32];
	struct mst_attr a;
	struct fentry *e;
	size_t i, mask0;

	a = attr_of(0);
	folder_put(f, "first", &a);
	mask0 = f->mask;
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof name, "msg%zu", i);
		a = attr_of(i + 1);
		folder_put(f, name, &a);
	}
	ck_assert_msg(f->n == 20001, "entries: got %zu, want 20001", f->n);
	ck_assert_msg(f->mask > mask0, "mask: got %zu, want more than %zu",
	    f->mask, mask0);
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof name, "msg%zu", i);
		e = folder_find(f, name);
		ck_assert_msg(e && e->attr.id == i + 1, "%s: got %llu, want "
		    "%zu", name, e ? (unsigned long long)e->attr.id : 0ull,
		    i + 1);
	}
	for (i = 0; i < 20000; i += 2) {
		snprintf(name, sizeof name, "msg%zu", i);
		folder_del(f, name);
	}
	ck_assert_uint_eq(f->n, 10001);
	ck_assert_ptr_null(folder_find(f, "msg0"));
	ck_assert_ptr_nonnull(folder_find(f, "msg1"));
}
END_TEST

/* Every byte of entries and table is accounted, and given back. */
START_TEST(memory_account_follows_entries)
{
	size_t base = m.mem_used, one;
	struct mst_attr a = attr_of(1);

	ck_assert_msg(base == f->bytes, "new folder: got %zu, want %zu",
	    base, f->bytes);
	folder_put(f, "a", &a);
	ck_assert_int_eq(lru_on(&f->lru), 1);	/* evictable now */
	ck_assert_ptr_eq(lru_tail(&m.flru), &f->lru);
	one = m.mem_used;
	ck_assert_uint_gt(one, base);
	folder_put(f, "a-longer-name", &a);
	ck_assert_uint_gt(m.mem_used, one);
	ck_assert_uint_eq(m.mem_used, f->bytes);
	folder_del(f, "a-longer-name");
	ck_assert_msg(m.mem_used == one, "after del: got %zu, want %zu",
	    m.mem_used, one);
	folder_drop_table(f);
	ck_assert_msg(m.mem_used == base, "after drop: got %zu, want %zu",
	    m.mem_used, base);
	ck_assert_int_eq(lru_on(&f->lru), 0);
	ck_assert_ptr_null(f->tab);
	ck_assert_uint_ge(m.mem_peak, one);
}
END_TEST

START_TEST(full_listing_replaces_everything)
{
	static const char *const old[] = { "a", "b", "c" };
	static const char *const now[] = { "c", "d" };
	struct mreply_frame fr;
	struct mreply r = { .nframes = 1, .frames = &fr };
	struct mst_attr a = attr_of(1);
	size_t i;

	for (i = 0; i < 3; i++)
		folder_put(f, old[i], &a);
	frame_of(&fr, MST_LIST_FULL, 42, now, 2, 100);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	expect_names(now, 2);
	ck_assert_ptr_null(folder_find(f, "a"));
	ck_assert_uint_eq(folder_find(f, "c")->attr.id, 100);
	ck_assert_uint_eq(f->change, 42);
	ck_assert_uint_eq(f->mtime_ns, 42000);
	ck_assert_int_eq(f->valid, 1);
	reply_free(&r);
}
END_TEST

START_TEST(delta_adds_and_removes)
{
	static const char *const full[] = { "a", "b", "c" };
	static const char *const delta[] = { "-b", "d", "-zzz" };
	static const char *const want[] = { "a", "c", "d" };
	struct mreply_frame fr;
	struct mreply r = { .nframes = 1, .frames = &fr };

	frame_of(&fr, MST_LIST_FULL, 1, full, 3, 1);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	reply_free(&r);
	frame_of(&fr, 0, 2, delta, 3, 10);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	expect_names(want, 3);
	ck_assert_ptr_null(folder_find(f, "b"));
	ck_assert_uint_eq(folder_find(f, "d")->attr.id, 11);
	ck_assert_uint_eq(f->change, 2);
	reply_free(&r);
}
END_TEST

/*
 * A delta must come from the state the cache was listed at: after a
 * crash of a store from before change-number epochs, or with a since
 * another store handed out, a delta's counter can be below the since
 * asked. Such a reply is recognised (the mount then lists in full); a
 * delta at or above the since, and any full listing, is not.
 */
START_TEST(delta_below_its_since_is_stale)
{
	static const char *const full[] = { "a", "b" };
	static const char *const delta[] = { "-a" };
	struct mreply_frame fr;
	struct mreply r = { .nframes = 1, .frames = &fr };

	frame_of(&fr, MST_LIST_FULL, 50, full, 2, 1);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	ck_assert_int_eq(folder_delta_stale(&r, 60), 0);	/* full */
	reply_free(&r);
	frame_of(&fr, 0, 40, delta, 1, 1);
	ck_assert_int_eq(folder_delta_stale(&r, f->change), 1);
	ck_assert_int_eq(folder_delta_stale(&r, 40), 0);
	ck_assert_int_eq(folder_delta_stale(&r, 39), 0);
	reply_free(&r);
	frame_of(&fr, 0, 50, delta, 1, 1);
	ck_assert_int_eq(folder_delta_stale(&r, f->change), 0);
	reply_free(&r);
	r.nframes = 0;
	ck_assert_int_eq(folder_delta_stale(&r, 1), 0);
	expect_names(full, 2);
}
END_TEST

/* A full listing in several frames: only the first clears. */
START_TEST(full_listing_in_several_frames)
{
	static const char *const one[] = { "a", "b" };
	static const char *const two[] = { "c" };
	static const char *const want[] = { "a", "b", "c" };
	struct mreply_frame fr[2];
	struct mreply r = { .nframes = 2, .frames = fr };
	struct mst_attr x = attr_of(9);

	folder_put(f, "stale", &x);
	frame_of(&fr[0], MST_LIST_FULL, 5, one, 2, 1);
	frame_of(&fr[1], MST_LIST_FULL, 6, two, 1, 3);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	expect_names(want, 3);
	ck_assert_uint_eq(f->change, 6);
	reply_free(&r);
}
END_TEST

START_TEST(longest_names)
{
	char a[MST_NAME_MAX + 1], b[MST_NAME_MAX + 1];
	const char *names[2] = { a, b };
	struct mreply_frame fr;
	struct mreply r = { .nframes = 1, .frames = &fr };

	memset(a, 'a', MST_NAME_MAX);
	a[MST_NAME_MAX] = '\0';
	memcpy(b, a, sizeof b);
	b[MST_NAME_MAX - 1] = 'b';	/* differs in the last byte only */
	frame_of(&fr, MST_LIST_FULL, 1, names, 2, 1);
	ck_assert_int_eq(folder_apply(f, &r), 0);
	expect_names(names, 2);
	ck_assert_uint_eq(folder_find(f, a)->attr.id, 1);
	ck_assert_uint_eq(folder_find(f, b)->attr.id, 2);
	ck_assert_uint_eq(strlen(folder_find(f, b)->name), MST_NAME_MAX);
	folder_del(f, a);
	ck_assert_ptr_null(folder_find(f, a));
	ck_assert_ptr_nonnull(folder_find(f, b));
	reply_free(&r);
}
END_TEST

/* A reply that does not decode is refused; the cache is not marked as
 * listed. */
START_TEST(malformed_reply_is_refused)
{
	uint8_t junk[5] = { 1, 2, 3, 4, 5 };
	struct mreply_frame fr = { junk, sizeof junk };
	struct mreply r = { .nframes = 1, .frames = &fr };
	int rc = folder_apply(f, &r);

	ck_assert_msg(rc < 0, "got %d, want a negative errno", rc);
	ck_assert_int_eq(f->valid, 0);
}
END_TEST

START_TEST(touch_moves_mtime_forward_only)
{
	static const struct {
		uint64_t touch, want;
	} cases[] = {
		{ 100, 100 }, { 50, 100 }, { 100, 100 }, { 200, 200 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		folder_touch(&dir, cases[i].touch);
		ck_assert_msg(dir.attr.mtime_ns == cases[i].want,
		    "touch %llu: got %llu, want %llu",
		    (unsigned long long)cases[i].touch,
		    (unsigned long long)dir.attr.mtime_ns,
		    (unsigned long long)cases[i].want);
		ck_assert_uint_eq(dir.attr.ctime_ns, cases[i].want);
		ck_assert_uint_eq(f->mtime_ns, cases[i].want);
	}
}
END_TEST

START_TEST(clear_empties_but_keeps_the_table)
{
	struct mst_attr a = attr_of(1);

	folder_put(f, "a", &a);
	folder_put(f, "b", &a);
	folder_clear(f);
	ck_assert_uint_eq(f->n, 0);
	ck_assert_ptr_null(folder_find(f, "a"));
	ck_assert_ptr_nonnull(f->tab);
	folder_put(f, "c", &a);
	ck_assert_ptr_nonnull(folder_find(f, "c"));
}
END_TEST

/* Missing names (struct negset): |dir| watched, stamps as now. */
static void
neg_record(const char *name)
{
	struct negstamp at;

	neg_stamp(&m, &dir, &at);
	neg_add(&m, &dir, &at, name);
}

static int
neg_known(const char *name)
{
	struct negstamp now;

	neg_stamp(&m, &dir, &now);
	return neg_find(&dir, &now, name);
}

START_TEST(missing_names_kept_under_their_stamps)
{
	dir.wstate = W_ACTIVE;
	ck_assert(!neg_known("dovecot.index.cache"));
	neg_record("dovecot.index.cache");
	ck_assert(neg_known("dovecot.index.cache"));
	ck_assert(!neg_known("dovecot.index"));
	neg_record("dovecot.index.cache");	/* once only */
	ck_assert_uint_eq(dir.neg->n, 1);

	dir.neg_gen++;			/* a notice for the directory */
	ck_assert(!neg_known("dovecot.index.cache"));
	neg_record("x");
	ck_assert(neg_known("x"));
	ck_assert(!neg_known("dovecot.index.cache"));	/* emptied */

	m.neg_epoch++;			/* a lock grant, a local change */
	ck_assert(!neg_known("x"));
	neg_record("x");
	dir.watch_gen++;		/* watched again */
	ck_assert(!neg_known("x"));
	neg_record("x");
	dir.wstate = W_PENDING;		/* not watched */
	ck_assert(!neg_known("x"));
	dir.wstate = W_ACTIVE;
	ck_assert(neg_known("x"));
	neg_drop(&m, &dir);
	ck_assert_ptr_null(dir.neg);
	ck_assert(!neg_known("x"));
}
END_TEST

START_TEST(missing_name_asked_before_a_change_is_not_kept)
{
	struct negstamp at;

	dir.wstate = W_ACTIVE;
	/* Each change between the LOOKUP's send and its ENOENT. */
	neg_stamp(&m, &dir, &at);
	dir.neg_gen++;
	neg_add(&m, &dir, &at, "a");
	ck_assert(!neg_known("a"));
	neg_stamp(&m, &dir, &at);
	m.neg_epoch++;
	neg_add(&m, &dir, &at, "a");
	ck_assert(!neg_known("a"));
	neg_stamp(&m, &dir, &at);
	dir.watch_gen++;
	neg_add(&m, &dir, &at, "a");
	ck_assert(!neg_known("a"));
	/* Asked while the WATCH was still in flight. */
	dir.wstate = W_PENDING;
	neg_stamp(&m, &dir, &at);
	dir.wstate = W_ACTIVE;
	neg_add(&m, &dir, &at, "a");
	ck_assert(!neg_known("a"));
	ck_assert(dir.neg == NULL || dir.neg->n == 0);
	neg_drop(&m, &dir);
}
END_TEST

START_TEST(missing_names_are_bounded_and_accounted)
{
	char name[32];
	size_t used = m.mem_used, i;

	dir.wstate = W_ACTIVE;
	for (i = 0; i < NEG_MAX; i++) {
		snprintf(name, sizeof name, "n%zu", i);
		neg_record(name);
	}
	ck_assert_uint_eq(dir.neg->n, NEG_MAX);
	ck_assert(neg_known("n0"));
	ck_assert(m.mem_used > used);
	neg_record("one.more");		/* full: starts again */
	ck_assert(neg_known("one.more"));
	ck_assert(!neg_known("n0"));
	ck_assert_uint_eq(dir.neg->n, 1);
	neg_drop(&m, &dir);
	ck_assert_uint_eq(m.mem_used, used);
}
END_TEST

static Suite *
folder_suite(void)
{
	Suite *s = suite_create("folder");
	TCase *tc = tcase_create("cache");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, empty_cache_finds_nothing);
	tcase_add_test(tc, put_find_del);
	tcase_add_test(tc, growth_keeps_every_entry);
	tcase_add_test(tc, memory_account_follows_entries);
	tcase_add_test(tc, full_listing_replaces_everything);
	tcase_add_test(tc, delta_adds_and_removes);
	tcase_add_test(tc, delta_below_its_since_is_stale);
	tcase_add_test(tc, full_listing_in_several_frames);
	tcase_add_test(tc, longest_names);
	tcase_add_test(tc, malformed_reply_is_refused);
	tcase_add_test(tc, touch_moves_mtime_forward_only);
	tcase_add_test(tc, clear_empties_but_keeps_the_table);
	tcase_add_test(tc, missing_names_kept_under_their_stamps);
	tcase_add_test(tc, missing_name_asked_before_a_change_is_not_kept);
	tcase_add_test(tc, missing_names_are_bounded_and_accounted);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(folder_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
