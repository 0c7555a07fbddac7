/*
 * folder.c - the mail folder cache, pure: the listing of a new/ or cur/
 * directory as a hash table of names and attributes (find, put, del,
 * clear), and the application of a LIST reply to it (a full listing
 * replaces everything, a delta adds and removes; a delta whose counter
 * is below the since it answers is never applied). Each entry and the
 * table are accounted to the mount's memory budget (util.c), and a
 * folder holding a table sits on m->flru for the eviction choice
 * (inode.c). Also the names known missing from other store
 * directories (struct negset in mount.h): a short list per directory,
 * true only under the stamps it was recorded with. Sends nothing and
 * queues nothing: keeping a cache fresh (LIST, WATCH, notices) is
 * notify.c's. Every function runs with m->mu held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "mount.h"

static size_t
fhash(const char *name, size_t mask)
{
	return (size_t)XXH3_64bits(name, strlen(name)) & mask;
}

struct fentry *
folder_find(struct folder *f, const char *name)
{
	struct fentry *e;

	if (f->tab == NULL)
		return NULL;
	for (e = f->tab[fhash(name, f->mask)]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static size_t
entry_cost(size_t len)
{
	return sizeof(struct fentry) + len + 1 + MNT_MALLOC_COST;
}

static void
folder_account(struct folder *f, ssize_t delta)
{
	f->bytes += (size_t)delta;
	mem_account(f->m, delta);
}

static void
folder_grow(struct folder *f)
{
	size_t nm = f->tab ? f->mask * 2 + 1 : 63, i, h;
	struct fentry **t = calloc(nm + 1, sizeof *t), *e, *next;

	if (t == NULL)
		return;
	for (i = 0; f->tab && i <= f->mask; i++)
		for (e = f->tab[i]; e; e = next) {
			next = e->next;
			h = fhash(e->name, nm);
			e->next = t[h];
			t[h] = e;
		}
	if (f->tab)
		folder_account(f, -(ssize_t)((f->mask + 1) * sizeof *t +
		    MNT_MALLOC_COST));
	else
		lru_add_head(&f->m->flru, &f->lru);	/* evictable now */
	folder_account(f, (ssize_t)((nm + 1) * sizeof *t + MNT_MALLOC_COST));
	free(f->tab);
	f->tab = t;
	f->mask = nm;
}

/*
 * A change this mount made (its own reply: create, rename, unlink) while
 * a LIST of the folder is in flight: that LIST may have been answered
 * before the change, and applying it (a full listing replaces the table,
 * a delta sets the counter below the change) would undo the entry. The
 * store sends no notice of a change to the connection that made it, so
 * nothing else would mark the cache stale: the next use lists again.
 * folder_apply runs with refreshing already cleared.
 */
static void
folder_local_change(struct folder *f)
{
	if (f->refreshing)
		f->dirty = 1;
}

void
folder_put(struct folder *f, const char *name, const struct mst_attr *a)
{
	struct fentry *e = folder_find(f, name);
	size_t h, len;

	folder_local_change(f);
	if (e) {
		if (e->attr.id != a->id || e->attr.type != a->type)
			f->gen++;	/* another inode under the name */
		e->attr = *a;
		return;
	}
	f->gen++;
	if (f->tab == NULL || f->n > f->mask)
		folder_grow(f);
	if (f->tab == NULL)
		return;
	len = strlen(name);
	e = malloc(sizeof *e + len + 1);
	if (e == NULL) {
		f->valid = 0;		/* incomplete: list again next time */
		return;
	}
	memcpy(e->name, name, len + 1);
	e->attr = *a;
	h = fhash(name, f->mask);
	e->next = f->tab[h];
	f->tab[h] = e;
	f->n++;
	folder_account(f, (ssize_t)entry_cost(len));
}

void
folder_del(struct folder *f, const char *name)
{
	struct fentry **pp, *e;

	folder_local_change(f);
	if (f->tab == NULL)
		return;
	for (pp = &f->tab[fhash(name, f->mask)]; (e = *pp); pp = &e->next)
		if (strcmp(e->name, name) == 0) {
			*pp = e->next;
			folder_account(f, -(ssize_t)entry_cost(strlen(name)));
			free(e);
			f->n--;
			f->gen++;
			return;
		}
}

void
folder_clear(struct folder *f)
{
	struct fentry *e, *next;
	size_t i;

	for (i = 0; f->tab && i <= f->mask; i++) {
		for (e = f->tab[i]; e; e = next) {
			next = e->next;
			folder_account(f,
			    -(ssize_t)entry_cost(strlen(e->name)));
			free(e);
		}
		f->tab[i] = NULL;
	}
	f->n = 0;
	f->gen++;
}

/* Entries and table go; the struct stays with its directory. */
void
folder_drop_table(struct folder *f)
{
	folder_clear(f);
	if (f->tab)
		folder_account(f, -(ssize_t)((f->mask + 1) * sizeof *f->tab +
		    MNT_MALLOC_COST));
	free(f->tab);
	f->tab = NULL;
	f->mask = 0;
	lru_del(&f->lru);
}

struct folder *
folder_new(struct mount *m, struct minode *dir)
{
	struct folder *f = calloc(1, sizeof *f);

	if (f == NULL)
		return NULL;
	f->m = m;
	f->dir = dir;
	f->kgen = UINT64_MAX;
	f->bytes = sizeof *f + MNT_MALLOC_COST;
	mem_account(m, (ssize_t)f->bytes);
	return f;
}

void
folder_free(struct folder *f)
{
	if (f == NULL)
		return;
	folder_drop_table(f);
	folder_account(f, -(ssize_t)f->bytes);
	free(f);
}

int
folder_apply(struct folder *f, const struct mreply *r)
{
	struct mst_list_entry en;
	struct mst_list_rep lr;
	char name[MST_NAME_MAX + 1];
	size_t i, off;
	int rc;

	for (i = 0; i < r->nframes; i++) {
		rc = mst_list_rep_decode(&lr, r->frames[i].p, r->frames[i].len);
		if (rc < 0)
			return rc;
		if (i == 0 && (lr.flags & MST_LIST_FULL))
			folder_clear(f);
		off = 0;
		while ((rc = mst_list_entry_next(&en, &lr, &off)) == 1) {
			memcpy(name, en.name.p, en.name.len);
			name[en.name.len] = '\0';
			if (en.kind == MST_LE_PRESENT &&
			    en.attr.type != MST_T_MSG)
				return -EPROTO;	/* folders hold messages */
			if (en.kind == MST_LE_PRESENT)
				folder_put(f, name, &en.attr);
			else
				folder_del(f, name);
		}
		if (rc < 0)
			return rc;
		f->change = lr.change;
		f->mtime_ns = lr.dir_mtime_ns;
	}
	f->valid = 1;
	return 0;
}

int
folder_delta_stale(const struct mreply *r, uint64_t since)
{
	struct mst_list_rep lr;

	if (r->nframes == 0 || mst_list_rep_decode(&lr, r->frames[0].p,
	    r->frames[0].len) < 0 || (lr.flags & MST_LIST_FULL))
		return 0;
	return lr.change < since;
}

void
folder_touch(struct minode *dir, uint64_t mtime_ns)
{
	if (mtime_ns <= dir->attr.mtime_ns)
		return;
	dir->attr.mtime_ns = dir->attr.ctime_ns = mtime_ns;
	if (dir->folder)
		dir->folder->mtime_ns = mtime_ns;
}

void
neg_stamp(const struct mount *m, const struct minode *dir,
    struct negstamp *st)
{
	st->epoch = m->neg_epoch;
	st->gen = dir->neg_gen;
	st->wgen = dir->watch_gen;
	st->own = dir->own_gen;
	st->active = dir->wstate == W_ACTIVE;
}

/* What was recorded under |a| still holds under |b|: this mount's own
 * changes forgot their names themselves (struct negset). */
static int
neg_holds(const struct negstamp *a, const struct negstamp *b)
{
	return a->active && b->active && a->epoch == b->epoch &&
	    a->gen == b->gen && a->wgen == b->wgen;
}

/* An answer asked for under |a| may be recorded under |b|: nothing
 * moved, not even a change of this mount's. */
static int
neg_same(const struct negstamp *a, const struct negstamp *b)
{
	return neg_holds(a, b) && a->own == b->own;
}

int
stamp_own_only(const struct negstamp *at, const struct negstamp *now)
{
	return neg_holds(at, now) && now->own == at->own + 1;
}

static size_t
neg_cost(const char *name)
{
	return strlen(name) + 1 + MNT_MALLOC_COST;
}

static void
neg_empty(struct mount *m, struct negset *s)
{
	while (s->n > 0) {
		s->n--;
		mem_account(m, -(ssize_t)neg_cost(s->names[s->n]));
		free(s->names[s->n]);
	}
}

void
pos_stamp(const struct mount *m, const struct minode *dir,
    struct negstamp *st)
{
	neg_stamp(m, dir, st);
	st->epoch = m->pos_epoch;
}

int
pos_current(const struct mount *m, const struct minode *dir,
    const struct negstamp *at)
{
	struct negstamp now;

	pos_stamp(m, dir, &now);
	return neg_same(at, &now);
}

int
neg_find(const struct minode *dir, const struct negstamp *now,
    const char *name)
{
	const struct negset *s = dir->neg;
	size_t i;

	if (s == NULL || !neg_holds(&s->at, now))
		return 0;
	for (i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return 1;
	return 0;
}

void
neg_add(struct mount *m, struct minode *dir, const struct negstamp *at,
    const char *name)
{
	struct negstamp now;
	struct negset *s;
	char *copy;

	neg_stamp(m, dir, &now);
	if (!neg_same(at, &now) || neg_find(dir, &now, name))
		return;
	if ((s = dir->neg) == NULL) {
		if ((s = calloc(1, sizeof *s)) == NULL)
			return;
		mem_account(m, (ssize_t)(sizeof *s + MNT_MALLOC_COST));
		dir->neg = s;
	}
	if (!neg_holds(&s->at, &now) || s->n == NEG_MAX)
		neg_empty(m, s);	/* stale, or full: start again */
	s->at = now;
	if ((copy = strdup(name)) == NULL)
		return;
	mem_account(m, (ssize_t)neg_cost(copy));
	s->names[s->n++] = copy;
}

void
neg_del(struct mount *m, struct minode *dir, const char *name)
{
	struct negset *s = dir->neg;
	size_t i;

	for (i = 0; s != NULL && i < s->n; i++)
		if (strcmp(s->names[i], name) == 0) {
			mem_account(m, -(ssize_t)neg_cost(s->names[i]));
			free(s->names[i]);
			s->names[i] = s->names[--s->n];
			return;
		}
}

void
neg_drop(struct mount *m, struct minode *dir)
{
	if (dir->neg == NULL)
		return;
	neg_empty(m, dir->neg);
	free(dir->neg);
	dir->neg = NULL;
	mem_account(m, -(ssize_t)(sizeof(struct negset) + MNT_MALLOC_COST));
}
