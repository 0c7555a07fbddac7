/*
 * job.c - the job helpers of engine.h: reply frames and notices appended
 * by the engine, and freeing a job with everything it owns. Pure memory
 * management; safe from any thread that owns the job.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* Arrays grow by doubling; capacity is implied by the count (the next
 * power of two), so struct job needs no capacity fields. */
static int
grow(void **arr, size_t n, size_t elem)
{
	void *p;
	size_t cap;

	if (n != 0 && (n & (n - 1)) != 0)
		return 0;		/* room left below the power of two */
	cap = n ? n * 2 : 1;
	if (cap > SIZE_MAX / elem)
		return -ENOMEM;
	p = realloc(*arr, cap * elem);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	return 0;
}

void
job_free(struct job *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->nframes; i++)
		free(j->frames[i].p);
	free(j->frames);
	for (i = 0; i < j->nnotices; i++) {
		free(j->notices[i].dir);
		free(j->notices[i].name);
	}
	free(j->notices);
	free(j->payload);
	free(j->body);
	free(j);
}

int
job_add_frame(struct job *j, uint8_t *p, size_t len)
{
	if (grow((void **)&j->frames, j->nframes, sizeof *j->frames) < 0) {
		free(p);
		return -ENOMEM;
	}
	j->frames[j->nframes].p = p;
	j->frames[j->nframes].len = len;
	j->nframes++;
	return 0;
}

int
job_add_notice(struct job *j, const char *dir, const char *name,
    uint8_t event, uint64_t id, uint64_t change)
{
	struct jnotice *n;

	if (grow((void **)&j->notices, j->nnotices, sizeof *j->notices) < 0)
		return -ENOMEM;
	n = &j->notices[j->nnotices];
	n->dir = strdup(dir);
	n->name = strdup(name ? name : "");
	if (n->dir == NULL || n->name == NULL) {
		free(n->dir);
		free(n->name);
		return -ENOMEM;
	}
	n->event = event;
	n->id = id;
	n->change = change;
	j->nnotices++;
	return 0;
}
