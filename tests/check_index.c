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

#include <xxhash.h>

#include "index.h"
#include "spent.h"

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
	ck_assert_ptr_eq(index_parent(n), index_find_id(ix, 2));
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

/* An ATTR record for |id|: |valid| of mode, uid, gid, mtime, atime. */
static int
attr_of(struct index *ix, uint64_t id, uint32_t valid, uint32_t mode,
    uint32_t uid, int64_t mtime, int64_t atime)
{
	struct rec r = rec_of(REC_ATTR, id, 0, "");

	r.name = (struct mst_str){ NULL, 0 };
	r.valid = valid;
	r.mode = mode;
	r.uid = uid;
	r.gid = 12;
	r.set_mtime_ns = mtime;
	r.set_atime_ns = atime;
	return index_apply(ix, &r, 0, 0, NULL);
}

static struct mst_attr
attr_get(struct index *ix, uint64_t id)
{
	struct mst_attr a;
	struct node *n = index_find_id(ix, id);

	ck_assert_ptr_nonnull(n);
	memset(&a, 0, sizeof a);
	index_attr(n, &a);
	return a;
}

static uint32_t
acls_held(const struct index *ix)
{
	uint32_t i, n = 0;

	for (i = 0; i < ix->acl_top; i++)
		n += ix->acls[i].refs != 0;
	return n;
}

START_TEST(mode_owner_and_atime_live_beside_the_node)
{
	struct index *ix = index_new(0, 0);
	struct mst_attr a, d0, d1;
	struct rec r;
	uint64_t i;
	char name[32];

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	/* the root (0755, 0, 0), new/ (0700, 8, 12), messages (0600) */
	for (i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "m%llu", (unsigned long long)i);
		ck_assert_int_eq(deliver(ix, 10 + i, 2, name), 0);
	}
	ck_assert_uint_eq(acls_held(ix), 3);
	ck_assert_uint_eq(ix->acls[index_find_id(ix, 10)->acl].refs, 100);
	a = attr_get(ix, 10);
	ck_assert_uint_eq(a.mode, 0600);
	ck_assert_uint_eq(a.uid, 8);
	ck_assert_uint_eq(a.gid, 12);
	ck_assert_uint_eq(a.atime_ns, a.mtime_ns);
	a = attr_get(ix, INDEX_ROOT_ID);
	ck_assert_uint_eq(a.mode, 0755);
	ck_assert_uint_eq(a.uid, 0);

	/* a mode and owner of their own, then back: the triple goes */
	ck_assert_int_eq(attr_of(ix, 11, MST_SA_MODE | MST_SA_UID, 0640, 99,
	    0, 0), 0);
	a = attr_get(ix, 11);
	ck_assert_uint_eq(a.mode, 0640);
	ck_assert_uint_eq(a.uid, 99);
	ck_assert_uint_eq(a.gid, 12);
	ck_assert_uint_eq(acls_held(ix), 4);
	ck_assert_uint_eq(attr_get(ix, 12).mode, 0600);
	ck_assert_int_eq(attr_of(ix, 11, MST_SA_MODE | MST_SA_UID, 0600, 8,
	    0, 0), 0);
	ck_assert_uint_eq(acls_held(ix), 3);
	ck_assert_uint_eq(ix->acls[index_find_id(ix, 11)->acl].refs, 100);

	/* an atime of its own is kept aside, and stays when the mtime
	 * moves; set to the mtime, it goes */
	a = attr_get(ix, 13);
	ck_assert_int_eq(attr_of(ix, 13, MST_SA_ATIME, 0, 0, 0, 777), 0);
	ck_assert_uint_eq(ix->natimes, 1);
	d0 = attr_get(ix, 13);
	ck_assert_uint_eq(d0.atime_ns, 777);
	ck_assert_uint_eq(d0.mtime_ns, a.mtime_ns);
	ck_assert_int_eq(attr_of(ix, 13, MST_SA_MTIME, 0, 0, 555, 0), 0);
	d0 = attr_get(ix, 13);
	ck_assert_uint_eq(d0.atime_ns, 777);
	ck_assert_uint_eq(d0.mtime_ns, 555);
	ck_assert_int_eq(attr_of(ix, 13, MST_SA_ATIME, 0, 0, 0, 555), 0);
	ck_assert_uint_eq(ix->natimes, 0);
	ck_assert_uint_eq(attr_get(ix, 13).atime_ns, 555);
	/* an mtime moved alone keeps the old atime */
	a = attr_get(ix, 14);
	ck_assert_int_eq(attr_of(ix, 14, MST_SA_MTIME, 0, 0, 4242, 0), 0);
	d0 = attr_get(ix, 14);
	ck_assert_uint_eq(d0.mtime_ns, 4242);
	ck_assert_uint_eq(d0.atime_ns, a.atime_ns);
	ck_assert_uint_eq(ix->natimes, 1);
	/* a removal takes its entry along, by id */
	r = rec_of(REC_UNLINK, 14, 2, "m4");
	ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
	ck_assert_uint_eq(ix->natimes, 0);
	ck_assert_ptr_null(index_find_id(ix, 14));

	/* a directory's atime stays when an entry changes its mtime */
	d0 = attr_get(ix, 2);
	ck_assert_int_eq(deliver(ix, 500, 2, "later"), 0);
	d1 = attr_get(ix, 2);
	ck_assert_uint_gt(d1.mtime_ns, d0.mtime_ns);
	ck_assert_uint_eq(d1.atime_ns, d0.atime_ns);
	ck_assert_int_eq(attr_of(ix, 2, MST_SA_ATIME, 0, 0, 0, 31), 0);
	ck_assert_uint_eq(attr_get(ix, 2).atime_ns, 31);
	ck_assert_uint_eq(ix->natimes, 0);
	index_free(ix);
}
END_TEST

START_TEST(an_emptied_mailbox_gives_its_number_back)
{
	struct index *ix = index_new(0, 0);
	struct rec r;
	struct mbox *m;
	uint32_t no;

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	ck_assert_int_eq(deliver(ix, 10, 2, "a"), 0);
	r = rec_of(REC_NEW, 11, 2, "b");
	r.ntype = MST_T_MSG;
	r.mailbox = mst_str_of("other");
	r.idem[0] = 1;
	ck_assert_int_eq(index_apply(ix, &r, 1, 0, NULL), 0);
	m = index_msg_mbox(index_find_id(ix, 11));
	ck_assert_str_eq(m->name, "other");
	ck_assert_str_eq(index_msg_mbox(index_find_id(ix, 10))->name, "box");
	no = m->no;
	ck_assert_ptr_eq(ix->mbv[no], m);
	r = rec_of(REC_UNLINK, 11, 2, "b");
	ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
	ck_assert_uint_eq(ix->nmbox, 1);
	ck_assert_ptr_null(ix->mbv[no]);
	r = rec_of(REC_NEW, 12, 2, "c");
	r.ntype = MST_T_MSG;
	r.mailbox = mst_str_of("third");
	r.idem[0] = 2;
	ck_assert_int_eq(index_apply(ix, &r, 1, 0, NULL), 0);
	m = index_msg_mbox(index_find_id(ix, 12));
	ck_assert_str_eq(m->name, "third");
	ck_assert_uint_eq(m->no, no);
	ck_assert_uint_eq(m->msgs, 1);
	index_free(ix);
}
END_TEST

START_TEST(two_indexes_each_find_their_own_tables)
{
	struct index *a = index_new(0, 0), *b = index_new(0, 0);
	struct rec r;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	mkdir_at(a, 2, INDEX_ROOT_ID, "new");
	mkdir_at(b, 2, INDEX_ROOT_ID, "new");
	ck_assert_int_eq(deliver(a, 10, 2, "x"), 0);
	r = rec_of(REC_NEW, 10, 2, "x");
	r.ntype = MST_T_MSG;
	r.mailbox = mst_str_of("bee");
	r.mode = 0444;
	ck_assert_int_eq(index_apply(b, &r, 1, 0, NULL), 0);
	ck_assert_str_eq(index_msg_mbox(index_find_id(a, 10))->name, "box");
	ck_assert_str_eq(index_msg_mbox(index_find_id(b, 10))->name, "bee");
	ck_assert_uint_eq(attr_get(a, 10).mode, 0600);
	ck_assert_uint_eq(attr_get(b, 10).mode, 0444);
	index_free(a);
	ck_assert_uint_eq(attr_get(b, 10).mode, 0444);
	index_free(b);
}
END_TEST

/* A message named by |len| bytes at |name| (any bytes). */
static int
deliver_bytes(struct index *ix, uint64_t id, uint64_t parent,
    const char *name, size_t len)
{
	struct rec r = rec_of(REC_NEW, id, parent, "");

	r.name = (struct mst_str){ name, (uint16_t)len };
	r.ntype = MST_T_MSG;
	r.mailbox = mst_str_of("box");
	memcpy(r.idem, &id, sizeof id);
	r.idem[15] = 0x77;
	return index_apply(ix, &r, 1, id * 4096, NULL);
}

START_TEST(names_packed_or_not_come_back_exactly)
{
	static const char alpha[] = "0123456789._,:=";
	struct index *ix = index_new(0, 0);
	char name[MST_NAME_MAX + 1], nb[MST_NAME_MAX], path[600];
	uint64_t seed = 88172645463325252ull, i, packed = 0;
	struct mst_str nm;
	struct node *n;
	size_t len, k;

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	mkdir_at(ix, 3, INDEX_ROOT_ID, "cur");
	for (i = 0; i < 3000; i++) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		len = i < 256 ? i : seed % (MST_NAME_MAX + 1);
		if (len == 0)
			len = 1;
		for (k = 0; k < len; k++) {
			seed ^= seed << 13, seed ^= seed >> 7,
			    seed ^= seed << 17;
			/* mostly Maildir characters, sometimes any byte
			 * (NUL, '/' and 0xff too: the index takes bytes) */
			name[k] = seed % (2 + i % 7) ? alpha[seed % 15] :
			    (char)(seed >> 8);
		}
		if (len == 1 && name[0] == '\0')
			name[0] = '0';
		if (index_lookup(ix, index_find_id(ix, 2), name, len))
			continue;	/* drawn twice */
		ck_assert_int_eq(deliver_bytes(ix, 100 + i, 2, name, len), 0);
		n = index_lookup(ix, index_find_id(ix, 2), name, len);
		ck_assert_ptr_nonnull(n);
		ck_assert_uint_eq(n->id, 100 + i);
		nm = index_name(n, nb);
		ck_assert_uint_eq(nm.len, len);
		ck_assert_mem_eq(nm.p, name, len);
		packed += n->packed;
		ck_assert_uint_le(n->nmlen, len);
		/* one byte less, or one changed, is another name */
		if (len > 1)
			ck_assert_ptr_ne(index_lookup(ix,
			    index_find_id(ix, 2), name, len - 1), n);
		name[len / 2] ^= 1;
		ck_assert_ptr_ne(index_lookup(ix, index_find_id(ix, 2), name,
		    len), n);
		name[len / 2] ^= 1;
		/* the path and the tombstone of a removal hold the name */
		ck_assert_int_eq(index_path(n, path, sizeof path),
		    (int)(4 + len));
		ck_assert_mem_eq(path + 4, name, len);
		if (i % 5 == 0) {
			struct rec r = rec_of(REC_UNLINK, 100 + i, 2, "");
			unsigned form = n->nmlen;
			struct tomb *t;

			r.name = (struct mst_str){ name, (uint16_t)len };
			ck_assert_int_eq(index_apply(ix, &r, 0, 0, NULL), 0);
			t = &index_find_id(ix, 2)->x.dir->tombs[
			    (index_find_id(ix, 2)->x.dir->tomb_next +
			    INDEX_TOMBS - 1) % INDEX_TOMBS];
			nm = index_tomb_name(t, nb);
			ck_assert_uint_eq(nm.len, len);
			ck_assert_mem_eq(nm.p, name, len);
			ck_assert_uint_eq(t->id, 100 + i);
			ck_assert_uint_eq(t->heap, form > INDEX_TOMB_IN);
		}
	}
	ck_assert_uint_gt(packed, 1000);
	/* a Maildir name takes about half, and renames between forms */
	ck_assert_int_eq(deliver(ix, 9000, 2,
	    "1796551276.8229_27_38211.vm"), 0);
	n = find(ix, 2, "1796551276.8229_27_38211.vm");
	ck_assert_uint_eq(n->packed, 1);
	ck_assert_uint_eq(n->nmlen, 16);
	ck_assert_int_eq(rename_to(ix, 9000, 2, "1796551276.8229_27_38211.vm",
	    3, "1796551276.8229_27_38211.vm:2,S"), 0);
	ck_assert_int_eq(rename_to(ix, 9000, 3,
	    "1796551276.8229_27_38211.vm:2,S", 3, "plain-letters"), 0);
	n = find(ix, 3, "plain-letters");
	ck_assert_uint_eq(n->packed, 0);
	ck_assert_int_eq(rename_to(ix, 9000, 3, "plain-letters", 2,
	    "1796551276.1_1_1.vm:2,"), 0);
	n = find(ix, 2, "1796551276.1_1_1.vm:2,");
	ck_assert_ptr_nonnull(n);
	ck_assert_uint_eq(n->packed, 1);
	nm = index_name(n, nb);
	ck_assert_uint_eq(nm.len, strlen("1796551276.1_1_1.vm:2,"));
	ck_assert_mem_eq(nm.p, "1796551276.1_1_1.vm:2,", nm.len);
	/* a name as long as packing makes it stays as it is */
	ck_assert_int_eq(deliver(ix, 9001, 2, "1a"), 0);
	ck_assert_uint_eq(find(ix, 2, "1a")->packed, 0);
	/* and the longest, all digits: half of it */
	memset(name, '7', MST_NAME_MAX);
	name[MST_NAME_MAX] = '\0';
	ck_assert_int_eq(deliver(ix, 9002, 3, name), 0);
	n = find(ix, 3, name);
	ck_assert_uint_eq(n->nmlen, (MST_NAME_MAX + 1) / 2);
	nm = index_name(n, nb);
	ck_assert_uint_eq(nm.len, MST_NAME_MAX);
	ck_assert_mem_eq(nm.p, name, MST_NAME_MAX);
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
	/* attributes kept beside the nodes: a mode and owner of their own,
	 * atimes that are not the mtime (the root's and the directories'
	 * too) */
	for (i = 3; i < NMSGS; i += 11) {
		struct rec a = rec_of(REC_ATTR, 1000 + i, 0, "");

		if (index_find_id(ix, 1000 + i) == NULL)
			continue;
		a.name = (struct mst_str){ NULL, 0 };
		a.valid = i % 2 ? MST_SA_ATIME : MST_SA_MODE | MST_SA_UID;
		a.mode = 0400 + (uint32_t)(i % 3);
		a.uid = (uint32_t)i % 5;
		a.set_atime_ns = (int64_t)i * 3;
		ck_assert_int_eq(index_apply(ix, &a, 0, 0, NULL), 0);
	}
	ck_assert_uint_gt(ix->natimes, 0);
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
	ck_assert_uint_eq(back->natimes, ix->natimes);
	/* sized for the load at once: 3.5 to 4 entries a bucket */
	ck_assert_uint_ge(2 * back->by_id.n, 7 * back->by_id.nb);
	ck_assert_uint_le(back->by_id.n, 4 * back->by_id.nb);
	ck_assert_uint_ge(back->by_idem.n, 3 * back->by_idem.nb);
	ck_assert_uint_eq(acls_held(back), acls_held(ix));
	ck_assert_int_eq(back->loading, 0);
	for (i = 0; i < NMSGS; i++) {
		struct mst_attr a, b;
		char nb[MST_NAME_MAX];
		struct mst_str nm;

		n = index_find_id(ix, 1000 + i);
		m = index_find_id(back, 1000 + i);
		if (n == NULL) {
			ck_assert_ptr_null(m);
			continue;
		}
		ck_assert_ptr_nonnull(m);
		ck_assert_ptr_eq(index_find_idem(back, m->idem), m);
		nm = index_name(n, nb);
		ck_assert_ptr_eq(index_lookup(back, index_parent(m), nm.p,
		    nm.len), m);
		ck_assert_uint_eq(index_parent(m)->id, index_parent(n)->id);
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

/* A checkpoint whose only node, directory 2 ("new"), has the type byte
 * |type|, with its sum made right again: only the type is wrong. */
static void
save_with_type(const char *path, uint8_t type)
{
	static const uint8_t node[17] = { 0, 0, 0, 0, 0, 0, 0, 2,
		0, 0, 0, 0, 0, 0, 0, INDEX_ROOT_ID, MST_T_DIR };
	struct index *ix = index_new(0, 0);
	uint64_t sum;
	uint8_t *p;
	long len;
	char *b;
	FILE *f;
	int i;

	ck_assert_ptr_nonnull(ix);
	mkdir_at(ix, 2, INDEX_ROOT_ID, "new");
	save_to(ix, path);
	index_free(ix);
	b = slurp(path, &len);
	p = memmem(b, (size_t)len, node, sizeof node);
	ck_assert_ptr_nonnull(p);
	p[16] = type;
	sum = XXH3_64bits(b, (size_t)len - 8);
	for (i = 0; i < 8; i++)
		b[len - 8 + i] = (char)(sum >> (56 - 8 * i));
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(b, 1, (size_t)len, f), (size_t)len);
	ck_assert_int_eq(fclose(f), 0);
	free(b);
}

/* A node keeps its type in 6 bits: 0x41 would have become a directory
 * made without its directory part (a NULL dereference as its atime was
 * set), 0x43 a message without a mailbox. */
START_TEST(checkpoint_node_of_unknown_type_is_refused)
{
	static const uint8_t bad[] = { 0, 4, 0x41, 0x81, 0x43, 0xff };
	char p[] = "/tmp/check_index.XXXXXX";
	struct index *back;
	uint32_t seg;
	uint64_t off;
	size_t i;
	int fd;

	fd = mkstemp(p);
	ck_assert_int_ge(fd, 0);
	close(fd);
	save_with_type(p, MST_T_DIR);	/* as saved: it loads */
	back = index_new(0, 0);
	ck_assert_ptr_nonnull(back);
	fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(index_load(back, fd, NULL, NULL, &seg, &off), 0);
	close(fd);
	ck_assert_ptr_nonnull(find(back, INDEX_ROOT_ID, "new"));
	index_free(back);
	for (i = 0; i < sizeof bad; i++) {
		save_with_type(p, bad[i]);
		back = index_new(0, 0);
		ck_assert_ptr_nonnull(back);
		fd = open(p, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		ck_assert_msg(index_load(back, fd, NULL, NULL, &seg, &off) ==
		    -EBADMSG, "type 0x%02x: not refused", bad[i]);
		close(fd);
		index_free(back);
	}
	unlink(p);
}
END_TEST

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* A checkpoint whose only file, 3 ("f" in the root, one block of 5
 * bytes), says it is |size| bytes long and has its block numbered
 * |blk|, with its sum made right again. */
static void
save_with_block(const char *path, uint64_t size, uint64_t blk)
{
	static const uint8_t node[17] = { 0, 0, 0, 0, 0, 0, 0, 3,
		0, 0, 0, 0, 0, 0, 0, INDEX_ROOT_ID, MST_T_FILE };
	struct index *ix = index_new(0, 0);
	struct rec r = rec_of(REC_CREATE, 3, INDEX_ROOT_ID, "f");
	uint8_t *p;
	long len;
	char *b;
	FILE *f;

	ck_assert_ptr_nonnull(ix);
	r.ntype = MST_T_FILE;
	r.size = 5;
	ck_assert_int_eq(index_apply(ix, &r, 1, 64, (const uint8_t *)"hello"),
	    0);
	save_to(ix, path);
	index_free(ix);
	b = slurp(path, &len);
	p = memmem(b, (size_t)len, node, sizeof node);
	ck_assert_ptr_nonnull(p);
	p += sizeof node + 2 + 1 + 3 * 4 + 4 * 8;	/* to after "change" */
	ck_assert_uint_eq(p[0], 0);		/* the file's first name */
	put_be64(p + 1, size);
	ck_assert_uint_eq(p[16], 1);		/* one block, */
	put_be64(p + 17, blk);			/* its number */
	put_be64((uint8_t *)b + len - 8, XXH3_64bits(b, (size_t)len - 8));
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(b, 1, (size_t)len, f), (size_t)len);
	ck_assert_int_eq(fclose(f), 0);
	free(b);
}

/* No write ends past MST_BODY_MAX: a block beyond is damage, which had
 * the load reserve a block table for it (48 TiB for block 2^40). */
START_TEST(checkpoint_file_block_past_body_max_is_refused)
{
	static const struct {
		uint64_t size, blk;
		int want;
	} cases[] = {
		{ MST_BODY_MAX, MST_BODY_MAX / REC_BLOCK - 1, 0 },
		{ (uint64_t)1 << 60, MST_BODY_MAX / REC_BLOCK, -EBADMSG },
		{ (uint64_t)1 << 60, (uint64_t)1 << 40, -EBADMSG },
	};
	char p[] = "/tmp/check_index.XXXXXX";
	struct index *back;
	uint32_t seg;
	uint64_t off;
	size_t i;
	int fd, rc;

	fd = mkstemp(p);
	ck_assert_int_ge(fd, 0);
	close(fd);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		save_with_block(p, cases[i].size, cases[i].blk);
		back = index_new(0, 0);
		ck_assert_ptr_nonnull(back);
		fd = open(p, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		rc = index_load(back, fd, NULL, NULL, &seg, &off);
		close(fd);
		ck_assert_msg(rc == cases[i].want, "block %llu: got %d, want %d",
		    (unsigned long long)cases[i].blk, rc, cases[i].want);
		if (rc == 0)
			ck_assert_uint_eq(index_find_file(back, 3)->size,
			    cases[i].size);
		index_free(back);
	}
	unlink(p);
}
END_TEST

/* The index's spent ids (spent.c) take removal times from checkpoints,
 * damaged ones too: one near INT64_MIN overflowed the window test and
 * dropped the entries before it. */
START_TEST(spent_time_near_int64_min_drops_nothing)
{
	struct spent *s = spent_new();
	struct spent_ent e = { .id = 10, .gone_ns = 0 };
	uint8_t first[MST_IDEM_LEN] = { 1 };

	ck_assert_ptr_nonnull(s);
	memcpy(e.idem, first, sizeof first);
	ck_assert_int_eq(spent_add(s, &e), 0);
	e.idem[0] = 2;
	e.id = 11;
	e.gone_ns = INT64_MIN;
	ck_assert_int_eq(spent_add(s, &e), 0);
	ck_assert_uint_eq(spent_count(s), 2);
	ck_assert_ptr_nonnull(spent_find(s, first));
	/* a removal past the window of both still ages them out */
	e.idem[0] = 3;
	e.id = 12;
	e.gone_ns = (int64_t)SPENT_WINDOW_S * 1000000000 + 1;
	ck_assert_int_eq(spent_add(s, &e), 0);
	ck_assert_uint_eq(spent_count(s), 1);
	ck_assert_uint_eq(spent_at(s, 0)->id, 12);
	spent_free(s);
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
	tcase_add_test(tc, mode_owner_and_atime_live_beside_the_node);
	tcase_add_test(tc, an_emptied_mailbox_gives_its_number_back);
	tcase_add_test(tc, two_indexes_each_find_their_own_tables);
	tcase_add_test(tc, names_packed_or_not_come_back_exactly);
	tcase_add_test(tc, checkpoint_of_many_nodes_loads_back_the_same);
	tcase_add_test(tc, damaged_checkpoint_is_refused_and_freed);
	tcase_add_test(tc, checkpoint_node_of_unknown_type_is_refused);
	tcase_add_test(tc, checkpoint_file_block_past_body_max_is_refused);
	tcase_add_test(tc, spent_time_near_int64_min_drops_nothing);
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
