/*
 * testutil.c - see testutil.h. Test support only: no Check calls, so a
 * helper never aborts a teardown.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mstclient.h"
#include "testutil.h"

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

const char *
mstored_path(void)
{
	const char *p = getenv("MSTORED");

	return p && *p ? p : "storeserver/mstored";
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

void
rm_rf(const char *dir)
{
	if (dir[0] != '\0' &&
	    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 &&
	    errno != ENOENT)
		fprintf(stderr, "%s: removing %s: %s\n",
		    program_invocation_short_name, dir, strerror(errno));
}

char tmpbase[32];

void
setup_base(void)
{
	snprintf(tmpbase, sizeof tmpbase, "/tmp/mst-%s.XXXXXX",
	    program_invocation_short_name);
	if (mkdtemp(tmpbase) == NULL) {
		fprintf(stderr, "%s: mkdtemp: %s\n",
		    program_invocation_short_name, strerror(errno));
		exit(EXIT_FAILURE);
	}
}

void
teardown_base(void)
{
	rm_rf(tmpbase);
	tmpbase[0] = '\0';
}

int
can_connect(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, ok;

	if (mst_addr_parse(addr, &ss, &sl) < 0)
		return 0;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&ss, sl) == 0;
	close(fd);
	return ok;
}
