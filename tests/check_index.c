/*
 * check_index.c - the in-memory index (storeserver/index.c) and its
 * checkpoint (checkpoint.c), driven with records directly, no engine:
 * nodes in the arena (renames that change a node's size, names at the
 * limit), the hash tables as they grow and shrink, and a checkpoint
 * loaded back (the delayed inserts of a load) equal to what was saved.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index.h"

static uint64_t lsn;

static struct rec
rec_of(uint8_t type, uint64_t id, uint64_t parent, const char *name)
{
	struct rec r = { .type = type, .lsn = ++lsn, .id = id,
		.parent = parent, .mtime_ns = 1000000000ll * (int64_t)lsn,
		.mode = 0600, .uid = 8, .gid = 12,
		.name = { name, (uint16_t)strlen(name) } };

	return r;
}

static void
mkdir_at(struct index *ix, uint64_t id, uint64_t parent, const char *name)
{
	struct rec r = rec_of(REC_CREATE, id, parent, name);

	r.ntype = MST_T_DIR;
	r.mode = 0700;
	ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
}

/* A message |id| named |name| in |parent|, its idem and body derived
 * from |id|. */
static int
deliver(struct index *ix, uint64_t id, uint64_t parent, const char *name)
{
	struct rec r = rec_of(REC_NEW, id, parent, name);

	r.ntype = MST_T_MSG;
	r.mailbox = mst_str_of("box");
	memset(r.idem, 0, sizeof r.idem);
	memcpy(r.idem, &id, sizeof id);
	r.idem[15] = 0x5a;
	r.size = 100 + id % 1000;
	r.checksum = id * 31;
	return index_apply(ix, &r, 1, id * 4096, NULL);
}

static int
rename_to(struct index *ix, uint64_t id, uint64_t from, const char *old,
    uint64_t to, const char *name)
{
	struct rec r = rec_of(REC_RENAME, id, to, name);

	r.from_parent = from;
	r.from_name = mst_str_of(old);
	return index_apply(ix, &r, 0, 0, NULL);
}

static struct node *
find(struct index *ix, uint64_t parent, const char *name)
{
	struct node *dir = index_find_id(ix, parent);

	ck_assert_ptr_nonnull(dir);
	return index_lookup(ix, dir, name, strlen(name));
}

static void
name_of(char *buf, size_t len, char c)
{
	memset(buf, c, len);
	buf[len] = '\0';
}

START_TEST(rename_to_another_size_moves_the_node_and_every_table)
{
	struct index *ix = index_new(0, 0);
	char lng[MST_NAME_MAX + 1], mid[41], mid2[41];
	uint8_t idem[MST_IDEM_LEN] = { 0 };
	uint64_t id = 7;
	struct node *n;

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	mkdir_at(ix, 3, INDEX_ROOT_ID, "cur");
	ck_assert_int_eq(deliver(ix, 6, 2, "before"), 0);
	ck_assert_int_eq(deliver(ix, id, 2, "m"), 0);
	ck_assert_int_eq(deliver(ix, 8, 2, "after"), 0);
	name_of(lng, MST_NAME_MAX, 'L');
	name_of(mid, 40, 'M');
	/* short -> longest -> middle -> same size class -> short again,
	 * across directories */
	ck_assert_int_eq(rename_to(ix, id, 2, "m", 3, lng), 0);
	ck_assert_int_eq(rename_to(ix, id, 3, lng, 3, mid), 0);
	memcpy(mid2, mid, sizeof mid);
	mid2[39] = 'N';
	ck_assert_int_eq(rename_to(ix, id, 3, mid, 3, mid2), 0);
	ck_assert_int_eq(rename_to(ix, id, 3, mid2, 2, "m:2,S"), 0);

	ck_assert_ptr_null(find(ix, 2, "m"));
	ck_assert_ptr_null(find(ix, 3, lng));
	ck_assert_ptr_null(find(ix, 3, mid));
	ck_assert_ptr_null(find(ix, 3, mid2));
	n = find(ix, 2, "m:2,S");
	ck_assert_ptr_nonnull(n);
	ck_assert_ptr_eq(index_find_id(ix, id), n);
	memcpy(idem, &id, sizeof id);
	idem[15] = 0x5a;
	ck_assert_ptr_eq(index_find_idem(ix, idem), n);
	ck_assert_uint_eq(n->size, 100 + id);
	ck_assert_uint_eq(n->checksum, id * 31);
	ck_assert_uint_eq(n->off, id * 4096);
	ck_assert_uint_eq(n->seg, 1);
	ck_assert_ptr_eq(n->parent, index_find_id(ix, 2));
	/* its neighbours in new/ are still linked to each other and it */
	ck_assert_ptr_nonnull(find(ix, 2, "before"));
	ck_assert_ptr_nonnull(find(ix, 2, "after"));
	ck_assert_uint_eq(index_find_id(ix, 2)->x.dir->nchildren, 3);
	ck_assert_uint_eq(index_find_id(ix, 3)->x.dir->nchildren, 0);
	ck_assert_uint_eq(ix->msgs, 3);
	index_free(ix);
}
END_TEST

START_TEST(name_longer_than_name_max_is_refused)
{
	struct index *ix = index_new(0, 0);
	char lng[MST_NAME_MAX + 2];

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	name_of(lng, MST_NAME_MAX + 1, 'x');
	ck_assert_int_eq(deliver(ix, 5, 2, lng), -EBADMSG);
	ck_assert_int_eq(ix->msgs, 0);
	lng[MST_NAME_MAX] = '\0';
	ck_assert_int_eq(deliver(ix, 5, 2, lng), 0);
	ck_assert_ptr_nonnull(find(ix, 2, lng));
	index_free(ix);
}
END_TEST

/* The whole index as a checkpoint file, in |path|. */
static void
save_to(struct index *ix, const char *path)
{
	FILE *f = fopen(path, "w+");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(index_save(ix, fileno(f), 3, 12345), 0);
	ck_assert_int_eq(fclose(f), 0);
}

static char *
slurp(const char *path, long *len)
{
	FILE *f = fopen(path, "r");
	char *b;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	*len = ftell(f);
	rewind(f);
	b = malloc((size_t)*len + 1);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(fread(b, 1, (size_t)*len, f), (size_t)*len);
	fclose(f);
	return b;
}

#define NDIRS	40u
#define NMSGS	30000u

START_TEST(checkpoint_of_many_nodes_loads_back_the_same)
{
	struct index *ix = index_new(0, 0), *back;
	char name[64], p1[] = "/tmp/check_index.XXXXXX", p2[64];
	struct rec r;
	struct node *n, *m;
	uint32_t seg;
	uint64_t off, i, d;
	long l1, l2;
	char *b1, *b2;
	int fd;

	ck_assert_ptr_nonnull(ix);
	fd = mkstemp(p1);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(p2, sizeof p2, "%s.2", p1);
	for (d = 0; d < NDIRS; d++) {
		snprintf(name, sizeof name, "box%llu", (unsigned long long)d);
		mkdir_at(ix, 10 + d, INDEX_ROOT_ID, name);
	}
	/* a file with two names: its link is loaded with a lookup */
	r = rec_of(REC_CREATE, 100, 10, "dovecot-uidlist");
	r.ntype = MST_T_FILE;
	ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
	r = rec_of(REC_LINK, 100, 11, "uidlist-link");
	ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
	for (i = 0; i < NMSGS; i++) {
		snprintf(name, sizeof name, "1796550580.M%lluP4242.host",
		    (unsigned long long)i);
		ck_assert_int_eq(deliver(ix, 1000 + i, 10 + i % NDIRS, name),
		    0);
	}
	/* some go, some get longer names (flags) */
	for (i = 0; i < NMSGS; i += 7) {
		snprintf(name, sizeof name, "1796550580.M%lluP4242.host",
		    (unsigned long long)i);
		if (i % 2) {
			r = rec_of(REC_UNLINK, 1000 + i, 10 + i % NDIRS, name);
			ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
		} else {
			char to[80];

			snprintf(to, sizeof to, "%s:2,FRS", name);
			ck_assert_int_eq(rename_to(ix, 1000 + i,
			    10 + i % NDIRS, name, 10 + (i + 1) % NDIRS, to),
			    0);
		}
	}
	save_to(ix, p1);

	back = index_new(0, 0);
	ck_assert_ptr_nonnull(back);
	fd = open(p1, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(index_load(back, fd, NULL, NULL, &seg, &off), 0);
	close(fd);
	ck_assert_uint_eq(seg, 3);
	ck_assert_uint_eq(off, 12345);
	ck_assert_uint_eq(back->nodes, ix->nodes);
	ck_assert_uint_eq(back->msgs, ix->msgs);
	ck_assert_uint_eq(back->bytes, ix->bytes);
	ck_assert_uint_eq(back->lsn, ix->lsn);
	ck_assert_uint_eq(back->by_name.n, ix->by_name.n);
	ck_assert_uint_eq(back->by_id.n, ix->by_id.n);
	ck_assert_uint_eq(back->by_idem.n, ix->by_idem.n);
	ck_assert_int_eq(back->loading, 0);
	for (i = 0; i < NMSGS; i++) {
		struct mst_attr a, b;

		n = index_find_id(ix, 1000 + i);
		m = index_find_id(back, 1000 + i);
		if (n == NULL) {
			ck_assert_ptr_null(m);
			continue;
		}
		ck_assert_ptr_nonnull(m);
		ck_assert_ptr_eq(index_find_idem(back, m->idem), m);
		ck_assert_ptr_eq(index_lookup(back, m->parent, n->name,
		    n->namelen), m);
		ck_assert_uint_eq(m->parent->id, n->parent->id);
		memset(&a, 0, sizeof a);	/* padding: compared too */
		memset(&b, 0, sizeof b);
		index_attr(n, &a);
		index_attr(m, &b);
		ck_assert_mem_eq(&a, &b, sizeof a);
		ck_assert_uint_eq(m->seg, n->seg);
		ck_assert_uint_eq(m->off, n->off);
		ck_assert_uint_eq(m->checksum, n->checksum);
	}
	ck_assert_ptr_nonnull(find(back, 11, "uidlist-link"));
	ck_assert_uint_eq(index_find_file(back, 100)->nlink, 2);

	/* and it writes the same bytes again, once loaded twice: a load
	 * reverses each directory's children (newest first) */
	save_to(back, p2);
	index_free(back);
	back = index_new(0, 0);
	ck_assert_ptr_nonnull(back);
	fd = open(p2, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(index_load(back, fd, NULL, NULL, &seg, &off), 0);
	close(fd);
	save_to(back, p2);
	b1 = slurp(p1, &l1);
	b2 = slurp(p2, &l2);
	ck_assert_int_eq(l1, l2);
	ck_assert_mem_eq(b1, b2, (size_t)l1);
	free(b1);
	free(b2);
	unlink(p1);
	unlink(p2);
	index_free(back);
	index_free(ix);
}
END_TEST

START_TEST(damaged_checkpoint_is_refused_and_freed)
{
	struct index *ix = index_new(0, 0), *back;
	char p[] = "/tmp/check_index.XXXXXX", name[32];
	uint32_t seg;
	uint64_t off, i;
	long len;
	char *b;
	FILE *f;
	int fd;

	ck_assert_ptr_nonnull(ix);
	fd = mkstemp(p);
	ck_assert_int_ge(fd, 0);
	close(fd);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof name, "m%llu", (unsigned long long)i);
		ck_assert_int_eq(deliver(ix, 10 + i, 2, name), 0);
	}
	save_to(ix, p);
	b = slurp(p, &len);
	b[len / 2] ^= 0x40;	/* inside some node: the sum no longer fits */
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(b, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	free(b);
	back = index_new(0, 0);
	ck_assert_ptr_nonnull(back);
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(index_load(back, fd, NULL, NULL, &seg, &off),
	    -EBADMSG);
	close(fd);
	index_free(back);	/* half loaded: the caller frees it */
	unlink(p);
	index_free(ix);
}
END_TEST

static Suite *
index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, rename_to_another_size_moves_the_node_and_every_table);
	tcase_add_test(tc, name_longer_than_name_max_is_refused);
	tcase_add_test(tc, checkpoint_of_many_nodes_loads_back_the_same);
	tcase_add_test(tc, damaged_checkpoint_is_refused_and_freed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(index_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
