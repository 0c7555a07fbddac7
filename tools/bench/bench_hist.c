/*
 * bench_hist.c - latency histogram of mstore-bench. Log-linear buckets:
 * values below 128 ns exactly, above that the top 7 significant bits, so
 * every bucket is narrower than 1/64 of its value. Fixed size, no
 * allocation; one per writer thread, merged after the run.
 */
#include <string.h>

#include "bench.h"

void
bench_hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof *h);
	h->min_ns = UINT64_MAX;
}

static unsigned
bucket_of(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * BENCH_HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - 6u;	/* keep 7 bits: v >> shift in [64, 127] */
	return (shift + 1u) * BENCH_HIST_SUB +
	    (unsigned)((v >> shift) - BENCH_HIST_SUB);
}

/* The middle of bucket |i|. */
static uint64_t
value_of(unsigned i)
{
	unsigned shift;
	uint64_t m;

	if (i < 2 * BENCH_HIST_SUB)
		return i;
	shift = i / BENCH_HIST_SUB - 1u;
	m = i % BENCH_HIST_SUB + BENCH_HIST_SUB;
	return (m << shift) + ((uint64_t)1 << shift) / 2;
}

void
bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->b[bucket_of(ns)]++;
	h->n++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void
bench_hist_merge(struct bench_hist *into, const struct bench_hist *h)
{
	unsigned i;

	for (i = 0; i < BENCH_HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
	into->n += h->n;
	into->sum_ns += h->sum_ns;
	if (h->min_ns < into->min_ns)
		into->min_ns = h->min_ns;
	if (h->max_ns > into->max_ns)
		into->max_ns = h->max_ns;
}

uint64_t
bench_hist_quantile(const struct bench_hist *h, double q)
{
	uint64_t rank, seen = 0, v;
	unsigned i;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)(q * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > h->n)
		rank = h->n;
	for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			break;
	}
	v = value_of(i);
	if (v < h->min_ns)
		v = h->min_ns;
	if (v > h->max_ns)
		v = h->max_ns;
	return v;
}
