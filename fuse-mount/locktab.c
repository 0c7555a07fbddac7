/*
 * locktab.c - which lock owners of this mount may hold store locks on
 * which files. The store grants and keeps the locks; this table only
 * remembers who asked, so that close(2) sends an unlock to the store
 * only for an owner that may hold something, and so that a lost
 * connection can say exactly which locks went with it. An entry is made
 * before a lock request leaves (a request still in flight counts: its
 * grant could cross the close) and removed when the owner released the
 * whole file. It is conservative the other way too: a partial unlock
 * keeps the entry. Pure data; the caller serialises access (m->mu).
 */
#include <errno.h>
#include <stdlib.h>

#include "locktab.h"

struct lt_entry {
	struct lt_entry *next;
	uint64_t ino, owner;
	int kind;
};

struct locktab {
	struct lt_entry **b;
	size_t mask, n;
};

static size_t
lt_hash(uint64_t ino, uint64_t owner, int kind, size_t mask)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull ^ owner * 0xc2b2ae3d27d4eb4full ^
	    (uint64_t)kind;

	return (size_t)(h ^ (h >> 29)) & mask;
}

struct locktab *
locktab_new(void)
{
	struct locktab *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->mask = 63;
	t->b = calloc(t->mask + 1, sizeof *t->b);
	if (t->b == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

void
locktab_free(struct locktab *t)
{
	if (t == NULL)
		return;
	(void)locktab_clear(t, NULL, NULL);
	free(t->b);
	free(t);
}

static struct lt_entry **
lt_find(struct locktab *t, uint64_t ino, uint64_t owner, int kind)
{
	struct lt_entry **pp = &t->b[lt_hash(ino, owner, kind, t->mask)];

	while (*pp && ((*pp)->ino != ino || (*pp)->owner != owner ||
	    (*pp)->kind != kind))
		pp = &(*pp)->next;
	return pp;
}

/* Double the table when the load passes 1; a failed grow costs speed. */
static void
lt_grow(struct locktab *t)
{
	size_t nm = t->mask * 2 + 1, i, h;
	struct lt_entry **nb, *e, *next;

	if (t->n <= t->mask || (nb = calloc(nm + 1, sizeof *nb)) == NULL)
		return;
	for (i = 0; i <= t->mask; i++)
		for (e = t->b[i]; e; e = next) {
			next = e->next;
			h = lt_hash(e->ino, e->owner, e->kind, nm);
			e->next = nb[h];
			nb[h] = e;
		}
	free(t->b);
	t->b = nb;
	t->mask = nm;
}

int
locktab_grant(struct locktab *t, uint64_t ino, uint64_t owner, int kind)
{
	struct lt_entry **pp = lt_find(t, ino, owner, kind), *e;

	if (*pp)
		return 0;
	e = malloc(sizeof *e);
	if (e == NULL)
		return -ENOMEM;
	e->ino = ino;
	e->owner = owner;
	e->kind = kind;
	e->next = *pp;
	*pp = e;
	t->n++;
	lt_grow(t);
	return 0;
}

int
locktab_held(struct locktab *t, uint64_t ino, uint64_t owner, int kind)
{
	return *lt_find(t, ino, owner, kind) != NULL;
}

int
locktab_release(struct locktab *t, uint64_t ino, uint64_t owner, int kind)
{
	struct lt_entry **pp = lt_find(t, ino, owner, kind), *e = *pp;

	if (e == NULL)
		return 0;
	*pp = e->next;
	free(e);
	t->n--;
	return 1;
}

size_t
locktab_clear(struct locktab *t, locktab_fn *fn, void *arg)
{
	struct lt_entry *e, *next;
	size_t i, n = 0;

	for (i = 0; i <= t->mask; i++) {
		for (e = t->b[i]; e; e = next) {
			next = e->next;
			if (fn)
				fn(arg, e->ino, e->owner, e->kind);
			free(e);
			n++;
		}
		t->b[i] = NULL;
	}
	t->n = 0;
	return n;
}

size_t
locktab_count(const struct locktab *t)
{
	return t->n;
}
