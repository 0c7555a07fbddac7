/*
 * scratch.c - what the engine-driving fuzz harnesses (fuzz_recover,
 * fuzz_session) set up before their first input: one scratch directory
 * per process, on /dev/shm when it is writable and $TMPDIR is not set
 * (tmpfs keeps the engine's fdatasync calls cheap), removed at exit; and
 * the server's log sent to /dev/null, since garbage input makes it log
 * an error per input and libFuzzer's own output would drown in them.
 * A failure here is the harness's, not the code under test's, so it
 * aborts instead of returning.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "scratch.h"

static char scratch[4096];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the tree at |path|; aborts if that fails, since the runs'
 * directories would pile up. */
void
fuzz_rm_tree(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 &&
	    errno != ENOENT) {
		perror(path);
		abort();
	}
}

static void
scratch_remove(void)
{
	fuzz_rm_tree(scratch);
}

/* Makes the scratch directory mstore-fuzz-NAME.XXXXXX and returns its
 * path, valid until exit. */
const char *
fuzz_scratch_open(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL && access("/dev/shm", W_OK) == 0)
		tmp = "/dev/shm";
	snprintf(scratch, sizeof scratch, "%s/mstore-fuzz-%s.XXXXXX",
	    tmp ? tmp : "/tmp", name);
	if (mkdtemp(scratch) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(scratch_remove);
	if (log_open("/dev/null", LOG_LVL_ERR) < 0)
		abort();
	return scratch;
}
