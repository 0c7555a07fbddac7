/*
 * bench_list.c - the listings of mstore-bench's reading workloads: the
 * names (and object ids) of the messages in one Maildir subdirectory, as
 * a target's list op found them. Owns copies of the names; never does
 * I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define LIST_CAP_MAX	(SIZE_MAX / 2 / sizeof(struct bench_entry))

void
bench_list_clear(struct bench_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	l->n = 0;
}

void
bench_list_free(struct bench_list *l)
{
	bench_list_clear(l);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

int
bench_list_add(struct bench_list *l, const char *name, size_t len,
    uint64_t id)
{
	struct bench_entry *v;
	size_t cap;

	if (l->n == l->cap) {
		if (l->cap >= LIST_CAP_MAX)
			return -ENOMEM;
		cap = l->cap ? l->cap * 2 : 64;
		v = realloc(l->v, cap * sizeof *v);
		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].name = strndup(name, len);
	if (l->v[l->n].name == NULL)
		return -ENOMEM;
	l->v[l->n].id = id;
	l->n++;
	return 0;
}

void
bench_list_remove(struct bench_list *l, size_t i)
{
	free(l->v[i].name);
	l->v[i] = l->v[--l->n];
}
