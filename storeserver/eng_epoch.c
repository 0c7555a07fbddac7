/*
 * eng_epoch.c - change-number epochs of the local and memory engines:
 * a restart that may have lost changes already told about moves the
 * change counter past every number handed out before, and LIST deltas
 * since a number from before that move get a full listing. Owns the
 * file DIR/epoch (the files store) and e->epoch; never touches the log
 * or the index beyond setting its counter.
 *
 * Why: change numbers are lsns. A flag change or an expunge is answered
 * once its record is in the log file, before its fdatasync, and LIST,
 * WATCH and the replies show lsns of records not yet durable. A machine
 * crash loses the tail that was not synced, and without this a restart
 * would hand the same numbers out again to other records: a mount's
 * `since` from before the crash would then name a different state, and
 * its delta would miss changes (or keep ones the store lost). The same
 * happens when a failed write is rolled back (roll_back: the index is
 * rebuilt and the rolled-back numbers would come again).
 *
 * The rule. At each start the engine reads DIR/epoch:
 *   mstore-epoch 1
 *   base B      the counter's value after the last jump (0: none)
 *   floor F     deltas since < F get a full listing
 *   clean L     only after a clean close, at lsn L
 * The start is clean when "clean L" is there and replay ended at lsn L
 * (every number handed out was durable at the close). A new store (no
 * file, no record) starts its counter at a random point in [2^40, 2^62),
 * and F there: a since that another store handed out (a mount that
 * failed over between servers with stores of their own) then falls
 * below F or above the counter, and gets a full listing, but by the
 * rarest chance. Otherwise (kill -9, a machine crash, a store from
 * before epochs, a damaged file) the counter jumps to max(lsn, B) +
 * EPOCH_GAP and F becomes that value. Every number handed out in the
 * life that ended is below it: they were at most the durable lsn plus
 * the records written but not synced at the crash (far fewer than
 * 2^32), or, when nothing of that life became durable, above B by as
 * few. Before any job runs the file is written again
 * without "clean" (write, fdatasync, rename, fsync of DIR), so a crash
 * from now on is seen as one. A roll back jumps the same way, and the
 * floor lasts across clean restarts (a since from before a crash stays
 * suspect for ever).
 *
 * The memory store keeps nothing across a start: each start is a new
 * store whose numbers must not meet the last one's, so it starts at the
 * wall clock in nanoseconds, its floor the same, and a roll back goes
 * on from the clock too: no store writes a record per nanosecond, so
 * the clock stays above every number it handed out (if it went back,
 * the counter jumps by EPOCH_GAP instead).
 *
 * Cost: a clean restart keeps every since valid (checkpoint.c gives each
 * directory its own change as the tomb floor, so a folder that did not
 * change is answered with an empty delta); only an unclean one sends
 * each mount's next LIST of each folder a full listing. LIST and WATCH
 * report a directory's counter as at least F (epoch_counter), so a
 * folder that does not change after the jump is not listed in full at
 * every later LIST.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "diskio.h"
#include "eng.h"
#include "log.h"

#define EPOCH_FILE	"epoch"
#define EPOCH_MAGIC	"mstore-epoch 1\n"
#define EPOCH_TEXT_MAX	256

/* Parse the text of DIR/epoch: 0, or -EBADMSG. */
static int
epoch_parse(const char *t, struct epoch *ep)
{
	const char *p = t + strlen(EPOCH_MAGIC);
	unsigned long long v;
	char key[8];
	int n, seen = 0;

	memset(ep, 0, sizeof *ep);
	if (strncmp(t, EPOCH_MAGIC, strlen(EPOCH_MAGIC)) != 0)
		return -EBADMSG;
	while (*p != '\0') {
		if (sscanf(p, "%7s %llu%n", key, &v, &n) != 2 || p[n] != '\n')
			return -EBADMSG;
		if (strcmp(key, "base") == 0) {
			ep->base = v;
			seen |= 1;
		} else if (strcmp(key, "floor") == 0) {
			ep->floor = v;
			seen |= 2;
		} else if (strcmp(key, "clean") == 0) {
			ep->clean = v;
			ep->has_clean = 1;
		} else {
			return -EBADMSG;
		}
		p += n + 1;
	}
	return seen == 3 ? 0 : -EBADMSG;
}

/* Read DIR/epoch: 0, -ENOENT (none), -EBADMSG, or another errno. */
static int
epoch_read(struct engine *e, struct epoch *ep)
{
	char path[4096], t[EPOCH_TEXT_MAX + 1];
	ssize_t n;
	int fd, rc;

	snprintf(path, sizeof path, "%s/%s", e->dir, EPOCH_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, t, EPOCH_TEXT_MAX);
	while (n < 0 && errno == EINTR);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	if (n == EPOCH_TEXT_MAX)
		return -EBADMSG;	/* ours are far shorter */
	t[n] = '\0';
	return epoch_parse(t, ep);
}

/* Replace DIR/epoch with |ep|, durably (the memory store keeps none). */
static int
epoch_write(struct engine *e, const struct epoch *ep)
{
	char t[EPOCH_TEXT_MAX];
	int rc, len;

	if (e->media != &store_files)
		return 0;
	len = snprintf(t, sizeof t, EPOCH_MAGIC "base %" PRIu64 "\nfloor %"
	    PRIu64 "\n", ep->base, ep->floor);
	if (ep->has_clean)
		len += snprintf(t + len, sizeof t - (size_t)len, "clean %"
		    PRIu64 "\n", ep->clean);
	rc = dio_replace_file(e->dir, EPOCH_FILE, t, (size_t)len);
	if (rc < 0)
		log_err("writing %s/%s: %s", e->dir, EPOCH_FILE, strerror(-rc));
	return rc;
}

enum start { START_CLEAN, START_NEW, START_UNCLEAN };

/* A new store's first number: random in [2^40, 2^62), so that a since
 * one store handed out falls outside another's range (below its floor,
 * or above its counter) but by the rarest chance. */
static uint64_t
random_base(void)
{
	struct timespec ts;
	uint64_t r;

	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
		clock_gettime(CLOCK_REALTIME, &ts);
		r = (uint64_t)ts.tv_sec * 1000000000u ^ (uint64_t)ts.tv_nsec *
		    0x9e3779b97f4a7c15u ^ (uint64_t)getpid() << 32;
	}
	return ((uint64_t)1 << 40) + r % (((uint64_t)1 << 62) -
	    ((uint64_t)1 << 40));
}

/* What the last life left in DIR/epoch, and which kind of start this
 * is. A new store's |ep|->base is where its numbers start: random for
 * the files store, the wall clock in nanoseconds for the memory store
 * (above every number an earlier process handed out). */
static int
epoch_last(struct engine *e, struct epoch *ep, enum start *kind)
{
	struct timespec ts;
	int rc;

	memset(ep, 0, sizeof *ep);
	*kind = START_UNCLEAN;
	if (e->media != &store_files) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ep->base = (uint64_t)ts.tv_sec * 1000000000u +
		    (uint64_t)ts.tv_nsec;
		*kind = START_NEW;
		return 0;
	}
	rc = epoch_read(e, ep);
	if (rc == -ENOENT) {
		if (e->ix->lsn == 0) {
			ep->base = random_base();
			*kind = START_NEW;
		}
		return 0;	/* else a store from before epochs */
	}
	if (rc == -EBADMSG) {
		log_warn("%s/%s is damaged: taken as after a crash", e->dir,
		    EPOCH_FILE);
		memset(ep, 0, sizeof *ep);
		return 0;
	}
	if (rc < 0) {
		log_err("%s/%s: %s", e->dir, EPOCH_FILE, strerror(-rc));
		return rc;
	}
	if (ep->has_clean && ep->clean == e->ix->lsn)
		*kind = START_CLEAN;
	return 0;
}

int
epoch_start(struct engine *e, int rolled_back)
{
	static const char *const why[] = { "", "a new store",
		"not closed cleanly" };
	struct epoch ep;
	enum start kind;
	uint64_t top;
	int rc;

	rc = epoch_last(e, &ep, &kind);
	if (rc < 0)
		return rc;
	/* The memory store's clock is above every number it handed out,
	 * rolled back ones included: a roll back there starts from it. */
	if (rolled_back && e->media == &store_files)
		kind = START_UNCLEAN;
	/* What this life already took (a roll back after a jump). */
	if (e->epoch.base > ep.base)
		ep.base = e->epoch.base;
	if (e->epoch.floor > ep.floor)
		ep.floor = e->epoch.floor;
	top = e->ix->lsn > ep.base ? e->ix->lsn : ep.base;
	if (kind != START_CLEAN) {
		if (top > UINT64_MAX - 2 * EPOCH_GAP) {
			log_err("%s: change counter at %" PRIu64 ": no room "
			    "for another epoch", e->dir, top);
			return -EOVERFLOW;
		}
		ep.base = ep.floor = kind == START_NEW && top > e->ix->lsn ?
		    top : top + EPOCH_GAP;
		log_info("%s: %s: change numbers go on from %" PRIu64
		    " (lsn %" PRIu64 "); a LIST since an earlier one gets a "
		    "full listing", e->dir, rolled_back ?
		    "a write was rolled back" : why[kind], ep.base,
		    e->ix->lsn);
		e->ix->lsn = ep.base;
	}
	e->lsn = e->ix->lsn;
	ep.has_clean = 0;
	ep.clean = 0;
	rc = epoch_write(e, &ep);
	if (rc == 0)
		e->epoch = ep;
	return rc;
}

void
epoch_close(struct engine *e)
{
	struct epoch ep = e->epoch;

	ep.has_clean = 1;
	ep.clean = e->lsn;
	if (epoch_write(e, &ep) < 0)
		log_warn("%s: the next start takes this close as a crash",
		    e->dir);
}

uint64_t
epoch_counter(const struct engine *e, uint64_t change)
{
	return change > e->epoch.floor ? change : e->epoch.floor;
}
