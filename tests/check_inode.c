/*
 * check_inode.c - the mount's inode table (fuse-mount/inode.c), without
 * FUSE or a store: the Maildir shapes inode_classify knows, store nodes
 * (made, found by number, moved, freed by FORGET, hard links), local
 * tmp/ nodes and their numbers, the (parent, name) index, the choices of
 * the memory budget (what may and may not be evicted), and paths with
 * their length limit. Links only inode.c and the layer below it (folder.c,
 * fbuf.c, util.c; see fuse-mount/mount.h): no libfuse, no ops.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"

static struct mount m;
static struct minode *root;
static struct minode *gone[16];	/* m.dir_gone's reports */
static size_t ngone;

static void
record_gone(struct mount *mt, struct minode *dir)
{
	ck_assert_ptr_eq(mt, &m);
	if (ngone < 16)
		gone[ngone] = dir;
	ngone++;
}

static void
setup(void)
{
	memset(&m, 0, sizeof m);
	m.mem_budget = 64u << 20;
	m.dir_gone = record_gone;
	ngone = 0;
	ck_assert_int_eq(inode_init(&m), 0);
	root = inode_get(&m, FUSE_ROOT_ID);
	ck_assert_ptr_nonnull(root);
}

static void
teardown(void)
{
	inode_fini(&m);
}

static struct mst_attr
dir_attr(uint64_t id)
{
	struct mst_attr a = { .type = MST_T_DIR, .id = id, .mode = 0755,
		.nlink = 2, .change = 1 };

	return a;
}

static struct mst_attr
file_attr(uint64_t id, uint32_t nlink, uint64_t change, uint64_t size)
{
	struct mst_attr a = { .type = MST_T_FILE, .id = id, .mode = 0644,
		.nlink = nlink, .change = change, .size = size };

	return a;
}

/* A store node |parent|/|name| the kernel looked up once. */
static struct minode *
remote(struct minode *parent, const char *name, struct mst_attr a)
{
	int drop = 0;
	struct minode *n = inode_remote(&m, parent, name, &a, 1, &drop);

	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(drop, 0);
	return n;
}

static const char *
path_of(const struct minode *n)
{
	static char buf[MST_PATH_MAX + 1];

	ck_assert_int_eq(inode_path(n, buf, sizeof buf), 0);
	return buf;
}

START_TEST(classify_maildir_shapes)
{
	static const struct {
		const char *path;
		enum dkind kind;
		const char *mailbox, *folder;
	} cases[] = {
		{ "user/new", DK_NEW, "user", "" },
		{ "user/cur", DK_CUR, "user", "" },
		{ "user/tmp", DK_TMP, "user", "" },
		{ "domain/user/new", DK_NEW, "domain/user", "" },
		{ "home/user/Maildir/cur", DK_CUR, "home/user/Maildir", "" },
		{ "home/user/Maildir/.Sent/new", DK_NEW, "home/user/Maildir",
		    ".Sent" },
		{ "user/.Sent/tmp", DK_TMP, "user", ".Sent" },
		{ "user/.Lists.foo/cur", DK_CUR, "user", ".Lists.foo" },
		{ "a/.Lists.foo/new", DK_NEW, "a", ".Lists.foo" },
		{ "user", DK_PLAIN, NULL, NULL },
		{ "user/Maildir", DK_PLAIN, NULL, NULL },
		{ "user/newer", DK_PLAIN, NULL, NULL },
		{ "user/new/x", DK_PLAIN, NULL, NULL },
		{ "user/NEW", DK_PLAIN, NULL, NULL },
		{ "", DK_PLAIN, NULL, NULL },
		/* The mailbox would be the mount's root. */
		{ "new", DK_PLAIN, NULL, NULL },
		{ "cur", DK_PLAIN, NULL, NULL },
		{ "tmp", DK_PLAIN, NULL, NULL },
		{ ".Sent/new", DK_PLAIN, NULL, NULL },
	};
	struct mst_str mb, fo;
	enum dkind k;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&mb, 0, sizeof mb);
		memset(&fo, 0, sizeof fo);
		k = inode_classify(&m, cases[i].path, &mb, &fo);
		ck_assert_msg(k == cases[i].kind, "%s: got kind %d, want %d",
		    cases[i].path, (int)k, (int)cases[i].kind);
		ck_assert_msg(inode_classify(&m, cases[i].path, NULL, NULL) ==
		    k, "%s: kind differs without mailbox", cases[i].path);
		if (cases[i].mailbox == NULL)
			continue;
		ck_assert_msg(mb.len == strlen(cases[i].mailbox) &&
		    memcmp(mb.p, cases[i].mailbox, mb.len) == 0,
		    "%s: got mailbox %.*s, want %s", cases[i].path,
		    (int)mb.len, mb.p, cases[i].mailbox);
		ck_assert_msg(fo.len == strlen(cases[i].folder) &&
		    memcmp(fo.p, cases[i].folder, fo.len) == 0,
		    "%s: got folder %.*s, want %s", cases[i].path,
		    (int)fo.len, fo.p, cases[i].folder);
	}
}
END_TEST

/* Directories get their kind from their path; new/ and cur/ a cache. */
START_TEST(remote_dirs_get_kind_and_cache)
{
	struct minode *u = remote(root, "user", dir_attr(100));
	struct minode *nw = remote(u, "new", dir_attr(101));
	struct minode *tp = remote(u, "tmp", dir_attr(102));
	struct minode *pl = remote(u, "misc", dir_attr(103));

	ck_assert_int_eq(u->dkind, DK_PLAIN);
	ck_assert_int_eq(nw->dkind, DK_NEW);
	ck_assert_ptr_nonnull(nw->folder);
	ck_assert_ptr_eq(nw->folder->dir, nw);
	ck_assert_int_eq(tp->dkind, DK_TMP);
	ck_assert_ptr_null(tp->folder);
	ck_assert_int_eq(pl->dkind, DK_PLAIN);
	ck_assert_str_eq(path_of(nw), "user/new");
	ck_assert_str_eq(path_of(root), "");
	ck_assert_uint_eq(u->nchild, 3);
	/* tmp/ is trusted unwatched; the others only when watched. */
	ck_assert_int_eq(inode_dir_trusted(tp), 1);
	ck_assert_int_eq(inode_dir_trusted(nw), 0);
	nw->wstate = W_ACTIVE;
	ck_assert_int_eq(inode_dir_trusted(nw), 1);
}
END_TEST

START_TEST(remote_found_by_number_and_counted)
{
	struct minode *a = remote(root, "f", file_attr(500, 1, 1, 10));
	struct minode *b = remote(root, "f", file_attr(500, 1, 1, 10));

	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_eq(inode_get(&m, 500), a);
	ck_assert_uint_eq(a->nlookup, 2);
	ck_assert_ptr_null(inode_get(&m, 501));
	ck_assert_int_eq(is_ofile(a), 1);
	ck_assert_int_eq(is_ofile(root), 0);
}
END_TEST

/* The store's newer word on a file the kernel cached: its pages must go
 * (*drop); an older answer changes nothing. */
START_TEST(remote_file_refresh_sets_drop)
{
	static const struct {
		uint64_t change, size;
		int drop;
		uint64_t want_size;
	} cases[] = {
		{ 5, 100, 0, 100 },	/* as cached */
		{ 6, 100, 1, 100 },	/* changed */
		{ 6, 150, 1, 150 },	/* same counter, other size */
		{ 4, 10, 0, 150 },	/* older: ignored */
		{ 7, 150, 1, 150 },
	};
	struct minode *n = remote(root, "f", file_attr(600, 1, 5, 100));
	struct mst_attr a;
	uint64_t epoch;
	size_t i;
	int drop;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		a = file_attr(600, 1, cases[i].change, cases[i].size);
		drop = 0;
		epoch = n->epoch;
		ck_assert_ptr_eq(inode_remote(&m, root, "f", &a, 0, &drop), n);
		ck_assert_msg(drop == cases[i].drop, "case %zu: got drop %d, "
		    "want %d", i, drop, cases[i].drop);
		ck_assert_msg(n->epoch == epoch + (uint64_t)cases[i].drop,
		    "case %zu: got epoch %llu, want %llu", i,
		    (unsigned long long)n->epoch,
		    (unsigned long long)(epoch + (uint64_t)cases[i].drop));
		ck_assert_msg(n->attr.size == cases[i].want_size, "case %zu: "
		    "got size %llu, want %llu", i,
		    (unsigned long long)n->attr.size,
		    (unsigned long long)cases[i].want_size);
	}
	/* A stale node is dropped whatever the counter says. */
	n->stale = 1;
	drop = 0;
	a = n->attr;
	(void)inode_remote(&m, root, "f", &a, 0, &drop);
	ck_assert_int_eq(drop, 1);
	ck_assert_int_eq(n->stale, 0);
}
END_TEST

START_TEST(move_renames_and_reparents)
{
	struct minode *a = remote(root, "a", dir_attr(10));
	struct minode *b = remote(root, "b", dir_attr(11));
	struct minode *f = remote(a, "f", file_attr(12, 1, 1, 0));

	ck_assert_int_eq(inode_move(&m, f, b, "g"), 0);
	ck_assert_str_eq(path_of(f), "b/g");
	ck_assert_uint_eq(a->nchild, 0);
	ck_assert_uint_eq(b->nchild, 1);
	/* A directory moved into a Maildir shape becomes one. */
	ck_assert_int_eq(inode_move(&m, a, b, "cur"), 0);
	ck_assert_int_eq(a->dkind, DK_CUR);
	ck_assert_ptr_nonnull(a->folder);
	ck_assert_ptr_eq(inode_find_dir(&m, b, "cur", 3), a);
	ck_assert_ptr_null(inode_find_dir(&m, root, "a", 1));
	/* inode_remote under another name moves the node too. */
	(void)remote(root, "h", file_attr(12, 1, 1, 0));
	ck_assert_str_eq(path_of(f), "h");
	ck_assert_uint_eq(b->nchild, 1);
}
END_TEST

START_TEST(forget_frees_and_gives_memory_back)
{
	size_t used = m.mem_used, in = m.in;
	struct minode *d = remote(root, "d", dir_attr(20));
	struct minode *f = remote(d, "f", file_attr(21, 1, 1, 0));

	f->nlookup++;		/* two lookups */
	d->wstate = W_ACTIVE;
	ck_assert_uint_eq(m.in, in + 2);
	ck_assert_uint_gt(m.mem_used, used);
	/* The directory stays while a child does. */
	inode_forget(&m, d, 1);
	ck_assert_ptr_eq(inode_get(&m, 20), d);
	inode_forget(&m, f, 1);
	ck_assert_ptr_eq(inode_get(&m, 21), f);
	ck_assert_uint_eq(ngone, 0);
	/* The last reference to the file takes its parent with it. */
	inode_forget(&m, f, 5);
	ck_assert_ptr_null(inode_get(&m, 21));
	ck_assert_ptr_null(inode_get(&m, 20));
	ck_assert_ptr_null(inode_find_dir(&m, root, "d", 1));
	ck_assert_msg(ngone == 1, "dir_gone reports: got %zu, want 1", ngone);
	ck_assert_ptr_eq(gone[0], d);
	ck_assert_uint_eq(m.in, in);
	ck_assert_msg(m.mem_used == used, "mem_used: got %zu, want %zu",
	    m.mem_used, used);
	/* The root stays whatever the kernel says. */
	inode_forget(&m, root, 100);
	ck_assert_ptr_eq(inode_get(&m, FUSE_ROOT_ID), root);
}
END_TEST

START_TEST(open_file_outlives_forget)
{
	struct minode *f = remote(root, "f", file_attr(30, 1, 1, 0));

	f->nopen++;
	inode_forget(&m, f, 1);
	ck_assert_ptr_eq(inode_get(&m, 30), f);
	inode_close(&m, f);
	ck_assert_ptr_null(inode_get(&m, 30));
}
END_TEST

/* A file with two names is one node; a change in any directory makes
 * every hard-linked file's link count suspect. */
START_TEST(hard_links_are_one_node_and_go_stale)
{
	struct minode *a = remote(root, "a", dir_attr(40));
	struct minode *b = remote(root, "b", dir_attr(41));
	struct minode *x = remote(a, "x", file_attr(42, 2, 1, 0));
	struct minode *y = remote(b, "y", file_attr(42, 2, 1, 0));
	struct minode *z = remote(b, "z", file_attr(43, 1, 1, 0));
	struct minode *w = remote(a, "w", file_attr(44, 1, 1, 0));

	ck_assert_ptr_eq(x, y);
	ck_assert_uint_eq(x->nlookup, 2);
	ck_assert_str_eq(path_of(x), "b/y");
	/* No name (a mkdir, a create): the directory's attributes only. */
	a->attr_at_ms = 1;
	inode_dir_changed(&m, a, NULL);
	ck_assert_int_eq(a->attr_at_ms, 0);
	ck_assert_int_eq(x->stale, 0);
	ck_assert_int_eq(w->stale, 0);
	/* A name: that file, and every hard-linked one wherever it is. */
	inode_dir_changed(&m, a, "w");
	ck_assert_int_eq(w->stale, 1);
	ck_assert_int_eq(x->stale, 1);
	ck_assert_int_eq(z->stale, 0);
	/* A file down to one link leaves the list at the next change. */
	x->stale = 0;
	x->attr.nlink = 1;
	inode_dir_changed(&m, b, "z");
	ck_assert_int_eq(z->stale, 1);
	ck_assert_int_eq(x->stale, 0);
	ck_assert_int_eq(lru_on(&x->hl), 0);
}
END_TEST

/* Is |name| answered from memory in |dir|: known missing, or known as
 * an ordinary file by its name? */
static int
known_missing(struct minode *dir, const char *name)
{
	struct negstamp now;

	neg_stamp(&m, dir, &now);
	return neg_find(dir, &now, name);
}

static struct minode *
known_file(struct minode *dir, const char *name)
{
	struct negstamp now;

	pos_stamp(&m, dir, &now);
	return inode_known_file(&m, dir, name, &now);
}

/* A mailbox directory, watched under a watched parent, its attributes
 * kept by notices; |a| and |b| known as files, "x" known missing. */
static struct minode *
watched_box(struct minode **a, struct minode **b)
{
	struct minode *u = remote(root, "u", dir_attr(60));
	struct negstamp st;

	root->wstate = u->wstate = W_ACTIVE;
	*a = remote(u, "a", file_attr(61, 1, 1, 0));
	*b = remote(u, "b", file_attr(62, 1, 1, 0));
	pos_stamp(&m, u, &st);
	(*a)->pos = (*b)->pos = st;
	neg_stamp(&m, u, &st);
	neg_add(&m, u, &st, "x");
	return u;
}

/* A change this mount makes to one name forgets that name only; no
 * name given, every name. */
START_TEST(own_change_forgets_its_name_only)
{
	struct minode *a, *b, *u = watched_box(&a, &b);

	ck_assert_ptr_eq(known_file(u, "a"), a);
	ck_assert(known_missing(u, "x"));
	inode_dir_changed(&m, u, "a");
	ck_assert_ptr_null(known_file(u, "a"));
	ck_assert_ptr_eq(known_file(u, "b"), b);
	ck_assert(known_missing(u, "x"));
	inode_dir_changed(&m, u, "x");		/* made here */
	ck_assert(!known_missing(u, "x"));
	ck_assert_ptr_eq(known_file(u, "b"), b);
	inode_dir_changed(&m, u, NULL);
	ck_assert_ptr_null(known_file(u, "b"));
	neg_drop(&m, u);
}
END_TEST

/* The reply to an own change says what came and went, and the
 * directory's mtime, when nothing else moved the stamps meanwhile. */
START_TEST(own_change_reply_is_kept_when_nothing_else_moved)
{
	struct minode *a, *b, *u = watched_box(&a, &b), *c;
	struct ownstamp os;

	u->attr_at_ms = mono_ms();
	inode_own_stamp(&m, u, &os);
	ck_assert_int_eq(os.attr_kept, 1);
	inode_dir_changed(&m, u, "a");		/* unlink a */
	ck_assert_int_eq(u->attr_at_ms, 0);
	inode_own_done(&m, u, &os, "a", NULL, 7, 7000);
	ck_assert(known_missing(u, "a"));
	ck_assert(known_missing(u, "x"));
	ck_assert_uint_eq(u->attr.mtime_ns, 7000);
	ck_assert_uint_eq(u->attr.ctime_ns, 7000);
	ck_assert_uint_eq(u->attr.change, 7);
	ck_assert(inode_attr_fresh(&m, u));

	/* A create of c: known by its name from the reply. */
	inode_own_stamp(&m, u, &os);
	inode_dir_changed(&m, u, "c");
	c = remote(u, "c", file_attr(63, 1, 1, 0));
	inode_own_done(&m, u, &os, NULL, c, 0, 0);
	ck_assert_ptr_eq(known_file(u, "c"), c);
	ck_assert(!inode_attr_fresh(&m, u));	/* no counter: asked */

	/* A notice for the directory meanwhile: nothing is kept. */
	u->attr_at_ms = mono_ms();
	inode_own_stamp(&m, u, &os);
	u->neg_gen++;
	inode_dir_changed(&m, u, "b");
	inode_own_done(&m, u, &os, "b", NULL, 9, 9000);
	ck_assert(!known_missing(u, "b"));
	ck_assert(!inode_attr_fresh(&m, u));
	ck_assert_uint_eq(u->attr.change, 7);

	/* An older counter than known is not taken. */
	u->attr_at_ms = mono_ms();
	inode_own_stamp(&m, u, &os);
	inode_dir_changed(&m, u, "d");
	inode_own_done(&m, u, &os, "d", NULL, 5, 5000);
	ck_assert(!inode_attr_fresh(&m, u));
	ck_assert(known_missing(u, "d"));

	/* Attributes not kept by notices before (parent unwatched): not
	 * made fresh by the reply. */
	root->wstate = W_NONE;
	u->attr_at_ms = mono_ms();
	inode_own_stamp(&m, u, &os);
	ck_assert_int_eq(os.attr_kept, 0);
	neg_drop(&m, u);
}
END_TEST

/* A lookup answered before one of this mount's changes is not recorded:
 * it may be of the name before the change. */
START_TEST(answer_asked_before_an_own_change_is_not_recorded)
{
	struct minode *a, *b, *u = watched_box(&a, &b);
	struct negstamp at;

	neg_stamp(&m, u, &at);
	inode_dir_changed(&m, u, "y");		/* made y meanwhile */
	neg_add(&m, u, &at, "y");
	ck_assert(!known_missing(u, "y"));
	pos_stamp(&m, u, &at);
	ck_assert(pos_current(&m, u, &at));
	inode_dir_changed(&m, u, "z");
	ck_assert(!pos_current(&m, u, &at));
	neg_drop(&m, u);
}
END_TEST

/* An own rename keeps the other names; inode_move (a name found moved)
 * forgets them. */
START_TEST(own_rename_keeps_the_other_names)
{
	struct minode *a, *b, *u = watched_box(&a, &b);

	inode_dir_changed(&m, u, "b2");
	inode_name_changed(&m, u, "b");
	ck_assert_int_eq(inode_rename(&m, b, u, "b2"), 0);
	ck_assert_ptr_eq(known_file(u, "a"), a);
	ck_assert(known_missing(u, "x"));
	ck_assert_int_eq(inode_move(&m, b, u, "b3"), 0);
	ck_assert_ptr_null(known_file(u, "a"));
	ck_assert(!known_missing(u, "x"));
	neg_drop(&m, u);
}
END_TEST

START_TEST(local_nodes_numbered_from_2_56)
{
	struct minode *t = remote(remote(root, "u", dir_attr(50)), "tmp",
	    dir_attr(51));
	struct minode *a = inode_local_new(&m, t, "1.a", 0600);
	struct minode *b = inode_local_new(&m, t, "1.b", 0640);
	struct stat st;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_msg(a->ino == MNT_LOCAL_BASE, "first: got %llu, want %llu",
	    (unsigned long long)a->ino, (unsigned long long)MNT_LOCAL_BASE);
	ck_assert_uint_eq(b->ino, MNT_LOCAL_BASE + 1);
	ck_assert_uint_eq(MNT_LOCAL_BASE, 1ull << 56);
	ck_assert_int_eq(a->local, 1);
	ck_assert_int_eq(is_ofile(a), 0);
	ck_assert_ptr_eq(inode_local_find(&m, t, "1.a"), a);
	ck_assert_ptr_null(inode_local_find(&m, t, "1.c"));
	ck_assert_ptr_null(inode_local_find(&m, root, "1.a"));
	ck_assert_ptr_eq(inode_get(&m, b->ino), b);
	ck_assert_int_eq(fbuf_write(a->buf, &m, "abc", 3, 0), 0);
	inode_stat(a, &st);
	ck_assert_int_eq(st.st_size, 3);
	ck_assert_int_eq(st.st_mode, S_IFREG | 0600);
	ck_assert_uint_eq(st.st_nlink, 1);
	ck_assert_uint_gt(st.st_mtim.tv_sec, 0);
	/* Without references a local node stays: its contents live here. */
	inode_forget(&m, a, 0);
	ck_assert_ptr_eq(inode_get(&m, a->ino), a);
	/* Unlinked and unused: gone at once. */
	inode_local_unlink(&m, b);
	ck_assert_ptr_null(inode_get(&m, MNT_LOCAL_BASE + 1));
	ck_assert_ptr_null(inode_local_find(&m, t, "1.b"));
	/* Unlinked while open: nlink 0, freed at the last close. */
	a->nopen++;
	inode_local_unlink(&m, a);
	ck_assert_ptr_null(inode_local_find(&m, t, "1.a"));
	inode_stat(a, &st);
	ck_assert_uint_eq(st.st_nlink, 0);
	inode_close(&m, a);
	ck_assert_ptr_null(inode_get(&m, MNT_LOCAL_BASE));
	/* Numbers are never reused. */
	a = inode_local_new(&m, t, "1.a", 0600);
	ck_assert_uint_eq(a->ino, MNT_LOCAL_BASE + 2);
}
END_TEST

/* A delivered local file becomes a store object under its local number. */
START_TEST(delivered_local_node_is_a_store_alias)
{
	struct minode *nw = remote(remote(root, "u", dir_attr(60)), "new",
	    dir_attr(61));
	struct minode *a = inode_local_new(&m, nw, "1.x", 0600);
	struct mst_attr msg = { .type = MST_T_MSG, .id = 62, .nlink = 1 };

	ck_assert_ptr_nonnull(a);
	a->nopen++;
	inode_delivered(&m, a, &msg);
	ck_assert_int_eq(a->local, 0);
	ck_assert_ptr_null(inode_local_find(&m, nw, "1.x"));
	ck_assert_uint_eq(a->attr.id, 62);
	ck_assert_uint_ge(a->ino, MNT_LOCAL_BASE);
	inode_close(&m, a);	/* no kernel reference: freed */
	ck_assert_ptr_null(inode_get(&m, MNT_LOCAL_BASE));
}
END_TEST

START_TEST(name_index_finds_directories_only)
{
	struct minode *u = remote(root, "user", dir_attr(70));
	struct minode *d = remote(u, "Maildir", dir_attr(71));

	(void)remote(u, "file", file_attr(72, 1, 1, 0));
	ck_assert_ptr_eq(inode_find_dir(&m, root, "user", 4), u);
	/* |len| bytes of a longer string. */
	ck_assert_ptr_eq(inode_find_dir(&m, root, "user/Maildir", 4), u);
	ck_assert_ptr_eq(inode_find_dir(&m, u, "Maildir/new", 7), d);
	ck_assert_ptr_null(inode_find_dir(&m, root, "use", 3));
	ck_assert_ptr_null(inode_find_dir(&m, u, "file", 4));
	ck_assert_ptr_null(inode_find_dir(&m, root, "Maildir", 7));
	/* Removed from the store: the name no longer reaches it. */
	inode_detach_dir(&m, u, "Maildir");
	ck_assert_ptr_null(inode_find_dir(&m, u, "Maildir", 7));
	ck_assert_str_eq(d->name, "");
	ck_assert_ptr_eq(inode_get(&m, 71), d);
}
END_TEST

START_TEST(paths_and_their_limit)
{
	struct minode *a = remote(root, "a", dir_attr(80));
	struct minode *b = remote(a, "bb", dir_attr(81));
	struct minode *c = remote(b, "ccc", file_attr(82, 1, 1, 0));
	static const struct {
		int child;	/* inode_child_path(b, "dd") */
		size_t cap;
		int want;
		const char *path;
	} cases[] = {
		{ 0, 9, 0, "a/bb/ccc" },
		{ 0, 8, -ENAMETOOLONG, NULL },
		{ 0, 1, -ENAMETOOLONG, NULL },
		{ 1, 8, 0, "a/bb/dd" },
		{ 1, 7, -ENAMETOOLONG, NULL },
		{ 1, 4, -ENAMETOOLONG, NULL },	/* the directory fits no more */
	};
	char buf[64];
	size_t i;
	int rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = cases[i].child ? inode_child_path(b, "dd", buf,
		    cases[i].cap) : inode_path(c, buf, cases[i].cap);
		ck_assert_msg(rc == cases[i].want, "case %zu: got %d, want %d",
		    i, rc, cases[i].want);
		if (rc == 0)
			ck_assert_msg(strcmp(buf, cases[i].path) == 0,
			    "case %zu: got %s, want %s", i, buf,
			    cases[i].path);
	}
	ck_assert_int_eq(inode_child_path(root, "top", buf, sizeof buf), 0);
	ck_assert_str_eq(buf, "top");
	ck_assert_int_eq(inode_path(root, buf, 1), 0);
	ck_assert_str_eq(buf, "");
}
END_TEST

/* Run one eviction pass as mem_check does; the nodes chosen go to
 * |out|. Folder caches chosen are dropped here (folder_evict's part in
 * the cache) and counted in *nf. */
static size_t
evict_pass(struct minode **out, size_t cap, size_t *nf)
{
	struct minode *n;
	struct folder *f;
	size_t work = 0, k = 0;
	enum evict ev;

	if (!inode_over_budget(&m))
		return 0;
	inode_evict_start(&m, mono_ms());
	while ((ev = inode_evict_next(&m, mono_ms(), &work, &n, &f)) !=
	    EV_DONE) {
		if (ev == EV_FOLDER) {
			folder_drop_table(f);
			(*nf)++;
		} else {
			ck_assert_uint_lt(k, cap);
			out[k++] = n;
		}
	}
	return k;
}

/*
 * Least recently used first; never the root, a local file or an open
 * file; a directory with children is parked until its last child goes.
 */
START_TEST(eviction_choices)
{
	struct minode *a = remote(root, "a", file_attr(90, 1, 1, 0));
	struct minode *d = remote(root, "d", dir_attr(91));
	struct minode *c = remote(d, "c", file_attr(92, 1, 1, 0));
	struct minode *b = remote(root, "b", file_attr(93, 1, 1, 0));
	struct minode *o = remote(root, "o", file_attr(94, 1, 1, 0));
	struct minode *l = inode_local_new(&m, root, "l", 0600);
	struct minode *got[8], *want[] = { a, c, b };
	size_t n, nf = 0, i;

	ck_assert_ptr_nonnull(l);
	l->nlookup = 1;
	inode_touch(&m, l);
	o->nopen++;
	inode_touch(&m, o);		/* open: off the list */
	m.mem_budget = m.mem_used;	/* at the budget: nothing to do */
	ck_assert_int_eq(inode_over_budget(&m), 0);
	ck_assert_uint_eq(evict_pass(got, 8, &nf), 0);
	m.mem_budget = 1;
	ck_assert_int_eq(inode_over_budget(&m), 1);
	n = evict_pass(got, 8, &nf);
	ck_assert_msg(n == 3, "nodes chosen: got %zu, want 3", n);
	for (i = 0; i < 3; i++)
		ck_assert_msg(got[i] == want[i], "choice %zu: got %s, want %s",
		    i, got[i]->name, want[i]->name);
	ck_assert_int_eq(d->parked, 1);
	ck_assert_int_eq(a->evicting, 1);
	ck_assert_uint_eq(m.evictions, 3);
	ck_assert_uint_eq(m.mem_evicting, a->bytes + b->bytes + c->bytes);
	/* Nothing more while the kernel has not let go. */
	ck_assert_uint_eq(evict_pass(got, 8, &nf), 0);
	/* Its FORGET frees c; the parked directory is next. */
	inode_forget(&m, c, 1);
	ck_assert_int_eq(d->parked, 0);
	n = evict_pass(got, 8, &nf);
	ck_assert_msg(n == 1 && got[0] == d, "after the child: got %zu "
	    "choices, want d alone", n);
	/* Used again: no longer counted as evicting. */
	inode_touch(&m, a);
	ck_assert_int_eq(a->evicting, 0);
	ck_assert_uint_eq(m.mem_evicting, b->bytes + d->bytes);
	ck_assert_uint_eq(nf, 0);
}
END_TEST

/* Nodes the kernel keeps past EVICT_WAIT_MS count in full again. */
START_TEST(eviction_expires_when_the_kernel_keeps_a_node)
{
	struct minode *a = remote(root, "a", file_attr(95, 1, 1, 0));
	struct minode *got[4], *n;
	struct folder *f;
	size_t work = 0, nf = 0;

	m.mem_budget = 1;
	ck_assert_uint_eq(evict_pass(got, 4, &nf), 1);
	ck_assert_uint_eq(m.mem_evicting, a->bytes);
	inode_evict_start(&m, mono_ms() + 60000);
	ck_assert_int_eq(a->evicting, 0);
	ck_assert_uint_eq(m.mem_evicting, 0);
	ck_assert_int_eq(inode_evict_next(&m, mono_ms(), &work, &n, &f),
	    EV_NODE);
	ck_assert_ptr_eq(n, a);
}
END_TEST

/* A folder cache older than every node goes first; a busy one never. */
START_TEST(eviction_of_folder_caches)
{
	struct minode *nw = remote(remote(root, "u", dir_attr(96)), "new",
	    dir_attr(97));
	struct mst_attr x = { .type = MST_T_MSG, .id = 98 };
	struct minode *got[8];
	size_t nf = 0;

	folder_put(nw->folder, "msg", &x);
	ck_assert_ptr_nonnull(nw->folder->tab);
	m.mem_budget = 1;
	nw->folder->busy = 1;
	(void)evict_pass(got, 8, &nf);
	ck_assert_uint_eq(nf, 0);
	ck_assert_ptr_nonnull(nw->folder->tab);
	nw->folder->busy = 0;
	nw->folder->tick = 0;	/* the coldest */
	lru_add_tail(&m.flru, &nw->folder->lru);
	inode_evict_start(&m, mono_ms() + 60000);
	(void)evict_pass(got, 8, &nf);
	ck_assert_uint_eq(nf, 1);
	ck_assert_ptr_null(nw->folder->tab);
}
END_TEST

static Suite *
inode_suite(void)
{
	Suite *s = suite_create("inode");
	TCase *tc = tcase_create("table");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, classify_maildir_shapes);
	tcase_add_test(tc, remote_dirs_get_kind_and_cache);
	tcase_add_test(tc, remote_found_by_number_and_counted);
	tcase_add_test(tc, remote_file_refresh_sets_drop);
	tcase_add_test(tc, move_renames_and_reparents);
	tcase_add_test(tc, forget_frees_and_gives_memory_back);
	tcase_add_test(tc, open_file_outlives_forget);
	tcase_add_test(tc, hard_links_are_one_node_and_go_stale);
	tcase_add_test(tc, own_change_forgets_its_name_only);
	tcase_add_test(tc, own_change_reply_is_kept_when_nothing_else_moved);
	tcase_add_test(tc, answer_asked_before_an_own_change_is_not_recorded);
	tcase_add_test(tc, own_rename_keeps_the_other_names);
	tcase_add_test(tc, local_nodes_numbered_from_2_56);
	tcase_add_test(tc, delivered_local_node_is_a_store_alias);
	tcase_add_test(tc, name_index_finds_directories_only);
	tcase_add_test(tc, paths_and_their_limit);
	tcase_add_test(tc, eviction_choices);
	tcase_add_test(tc, eviction_expires_when_the_kernel_keeps_a_node);
	tcase_add_test(tc, eviction_of_folder_caches);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(inode_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
