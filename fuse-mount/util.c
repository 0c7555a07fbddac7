/*
 * util.c - the bottom of mount.mstore: clocks and the memory account,
 * shared by every layer above (see mount.h). Calls nothing of the mount.
 */
#include <time.h>

#include "mount.h"

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
ts_to_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_to_ns(&ts);
}

void
mem_account(struct mount *m, ssize_t delta)
{
	m->mem_used += (size_t)delta;
	if (m->mem_used > m->mem_peak)
		m->mem_peak = m->mem_used;
}
