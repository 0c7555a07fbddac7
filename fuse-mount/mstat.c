/*
 * mstat.c - the mount's counters of mstat.h. Each is a relaxed atomic:
 * no lock, no order, and a reader sees each at some recent value. A
 * gauge is a counter that is also subtracted from (unsigned arithmetic
 * wraps back to the right value). Never changes what the mount does.
 */
#include <stdatomic.h>

#include "mstat.h"

static atomic_uint_fast64_t stats[MS_MAX];

static const char *const names[MS_MAX] = {
	[MS_CONNECTS] = "connects",
	[MS_RECONNECTS] = "reconnects",
	[MS_RESENT] = "requests_resent",
	[MS_REROUTED] = "requests_rerouted",
	[MS_TIMEOUTS] = "requests_timed_out",
	[MS_NOTICES] = "notices_received",
	[MS_FOLDER_HITS] = "folder_cache_hits",
	[MS_FOLDER_MISSES] = "folder_cache_misses",
	[MS_NEG_HITS] = "missing_name_hits",
	[MS_FILE_HITS] = "file_name_hits",
	[MS_BUF_WRITTEN] = "buffered_bytes_written",
	[MS_SPOOLS] = "spool_files_created",
	[MS_BUF_MEM] = "buffered_bytes",
	[MS_BUF_SPOOL] = "spooled_bytes",
	[MS_PT_OPENS] = "passthrough_opens",
};

void
mstat_add(enum mstat k, uint64_t v)
{
	atomic_fetch_add_explicit(&stats[k], v, memory_order_relaxed);
}

uint64_t
mstat_get(enum mstat k)
{
	return atomic_load_explicit(&stats[k], memory_order_relaxed);
}

const char *
mstat_name(enum mstat k)
{
	return names[k];
}
