/*
 * spent.c - the table of spent idempotency ids (see spent.h). Owns a
 * ring of entries in the order they were added (oldest at |head|) and a
 * chained hash over it by id, the chains linking ring slots. Never does
 * I/O and never reads a clock: the window is measured between removal
 * times, so replay rebuilds the same table the live store had.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "spent.h"

struct spent {
	struct spent_ent *ring;
	uint32_t cap, head, n;
	uint32_t *bucket;	/* slot + 1 of a chain's first, 0: empty */
	uint32_t mask;		/* buckets - 1 (a power of two) */
	int64_t window_ns;
	uint32_t max;
};

static uint32_t
bucket_of(const struct spent *s, const uint8_t *idem)
{
	return (uint32_t)(XXH3_64bits(idem, MST_IDEM_LEN) & s->mask);
}

struct spent *
spent_new(void)
{
	struct spent *s = calloc(1, sizeof *s);

	if (s)
		spent_bounds(s, 0, 0);
	return s;
}

void
spent_free(struct spent *s)
{
	if (s == NULL)
		return;
	free(s->ring);
	free(s->bucket);
	free(s);
}

static void
drop_oldest(struct spent *s)
{
	uint32_t slot = s->head, *pp;

	pp = &s->bucket[bucket_of(s, s->ring[slot].idem)];
	while (*pp != slot + 1)
		pp = &s->ring[*pp - 1].next;
	*pp = s->ring[slot].next;
	s->head = (s->head + 1) % s->cap;
	s->n--;
}

void
spent_bounds(struct spent *s, unsigned window_s, unsigned max)
{
	s->window_ns = (int64_t)(window_s ? window_s : SPENT_WINDOW_S) *
	    1000000000;
	s->max = max ? max : SPENT_MAX;
	while (s->n > s->max)
		drop_oldest(s);
}

/* Room for more entries: the ring in order from slot 0, rehashed. */
static int
grow(struct spent *s)
{
	uint32_t cap = s->cap ? 2 * s->cap : 64, nb = 1, i, k, h;
	struct spent_ent *ring;
	uint32_t *bucket;

	if (cap > s->max)
		cap = s->max;
	while (nb < cap)
		nb <<= 1;
	ring = malloc((size_t)cap * sizeof *ring);
	bucket = calloc(nb, sizeof *bucket);
	if (ring == NULL || bucket == NULL) {
		free(ring);
		free(bucket);
		return -ENOMEM;
	}
	for (i = 0; i < s->n; i++)
		ring[i] = s->ring[(s->head + i) % s->cap];
	free(s->ring);
	free(s->bucket);
	s->ring = ring;
	s->bucket = bucket;
	s->cap = cap;
	s->head = 0;
	s->mask = nb - 1;
	for (k = 0; k < s->n; k++) {
		h = bucket_of(s, ring[k].idem);
		ring[k].next = bucket[h];
		bucket[h] = k + 1;
	}
	return 0;
}

int
spent_add(struct spent *s, const struct spent_ent *e)
{
	uint32_t slot, h;

	/* A time within the window of INT64_MIN has nothing older than
	 * the window before it, and the subtraction would overflow (a
	 * damaged checkpoint's time: its sum is checked last). */
	while (s->n > 0 && e->gone_ns >= INT64_MIN + s->window_ns &&
	    s->ring[s->head].gone_ns < e->gone_ns - s->window_ns)
		drop_oldest(s);
	if (spent_find(s, e->idem))
		return 0;		/* one delivery per id */
	if (s->n == s->max)
		drop_oldest(s);
	if (s->n == s->cap && grow(s) < 0)
		return -ENOMEM;
	slot = (s->head + s->n) % s->cap;
	s->ring[slot] = *e;
	h = bucket_of(s, e->idem);
	s->ring[slot].next = s->bucket[h];
	s->bucket[h] = slot + 1;
	s->n++;
	return 0;
}

const struct spent_ent *
spent_find(const struct spent *s, const uint8_t idem[MST_IDEM_LEN])
{
	uint32_t k;

	if (s->n == 0)
		return NULL;
	for (k = s->bucket[bucket_of(s, idem)]; k; k = s->ring[k - 1].next)
		if (memcmp(s->ring[k - 1].idem, idem, MST_IDEM_LEN) == 0)
			return &s->ring[k - 1];
	return NULL;
}

uint32_t
spent_count(const struct spent *s)
{
	return s->n;
}

const struct spent_ent *
spent_at(const struct spent *s, uint32_t i)
{
	return i < s->n ? &s->ring[(s->head + i) % s->cap] : NULL;
}
