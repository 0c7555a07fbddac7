/*
 * mkrecover.c - writes the seed corpus of fuzz_recover: runs the local
 * engine on a few operations of every record kind (mailboxes,
 * deliveries, flag changes, expunges, files written by path and by id,
 * links, renames, removals) in a scratch directory and stores what it
 * left on disk in fuzz_recover's input layout (flags byte, segment
 * length, segment, checkpoint): a log replayed from scratch, a
 * checkpoint with a log tail after it, the final checkpoint, and torn
 * variants. Ids and times differ from run to run, so the seeds are
 * regenerated with 'make fuzz-corpus' rather than checked for staleness.
 *
 * usage: mkrecover OUTDIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_util.h"
#include "log.h"
#include "mstproto.h"

static char scratch[] = "/tmp/mstore-mkrecover.XXXXXX";

static int
slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t n = 0, cap = 0, got;

	if (f == NULL)
		return -errno;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			p = realloc(p, cap);
			if (p == NULL)
				abort();
		}
		got = fread(p + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	*out = p;
	*len = n;
	return 0;
}

/* OUTDIR/recover-<what>: the fuzz_recover input for |seg| and, when
 * |ck| is not NULL, the checkpoint |ck|. */
static void
put(const char *dir, const char *what, const uint8_t *seg, size_t seglen,
    const uint8_t *ck, size_t cklen)
{
	char path[4096];
	uint8_t h[5] = { ck != NULL, (uint8_t)seglen, (uint8_t)(seglen >> 8),
		(uint8_t)(seglen >> 16), (uint8_t)(seglen >> 24) };
	FILE *f;
	int ok;

	snprintf(path, sizeof path, "%s/recover-%s", dir, what);
	f = fopen(path, "wb");
	if (f == NULL) {
		fprintf(stderr, "mkrecover: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	ok = fwrite(h, 1, sizeof h, f) == sizeof h &&
	    (seglen == 0 || fwrite(seg, 1, seglen, f) == seglen) &&
	    (ck == NULL || cklen == 0 || fwrite(ck, 1, cklen, f) == cklen);
	if (fclose(f) != 0 || !ok) {
		fprintf(stderr, "mkrecover: write %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
}

static void
must(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "mkrecover: %s: %s\n", what, strerror(-rc));
		exit(1);
	}
}

/* Snapshot DIR's segment and checkpoint (NULL when there is none). */
static void
snap(const char *dir, uint8_t **seg, size_t *seglen, uint8_t **ck,
    size_t *cklen)
{
	char path[4200];

	snprintf(path, sizeof path, "%s/log/00000001.seg", dir);
	must(slurp(path, seg, seglen), path);
	snprintf(path, sizeof path, "%s/checkpoint", dir);
	*ck = NULL;
	*cklen = 0;
	if (slurp(path, ck, cklen) == -ENOENT)
		*ck = NULL;
}

int
main(int argc, char **argv)
{
	struct tengine t;
	struct mst_attr a;
	char cmd[4200], out[256];
	uint8_t *seg1, *ck1, *seg2, *ck2;
	size_t seg1len, ck1len, seg2len, ck2len;
	uint64_t id;

	if (argc != 2) {
		fprintf(stderr, "usage: mkrecover OUTDIR\n");
		return 2;
	}
	if (mkdtemp(scratch) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	log_open("/dev/null", LOG_LVL_ERR);
	tconf(&t, scratch);
	t.conf.readers = 1;
	must(topen(&t), "open");
	must(t_mkdirs(&t, "alice"), "mkdirs");
	must(t_deliver(&t, "alice", MST_SUB_NEW, "1.host", "Subject: a\r\n\r\n"
	    "hello\r\n", 21, NULL, &id), "deliver");
	must(t_deliver(&t, "alice", MST_SUB_NEW, "2.host", "Subject: b\r\n\r\n"
	    "bye\r\n", 19, NULL, NULL), "deliver");
	must(t_setinfo(&t, "alice", MST_SUB_NEW, "1.host", MST_SUB_CUR,
	    "1.host:2,S"), "setinfo");
	must(t_mkdir(&t, "etc"), "mkdir");
	must(t_put(&t, "etc/sieve", "keep;\n", 6, 0), "put");
	must(t_admin(&t, "checkpoint", out, sizeof out), "checkpoint");
	/* After the checkpoint: a log tail of other kinds of record. */
	must(t_expunge(&t, "alice", MST_SUB_NEW, "2.host"), "expunge");
	must(t_lookup(&t, "etc/sieve", &a), "lookup");
	must(t_write(&t, a.id, 6, 0, "stop;\n", 6, NULL), "write");
	must(t_link(&t, a.id, "etc/sieve.bak"), "link");
	must(t_rename(&t, "etc/sieve.bak", "etc/old"), "rename");
	must(t_put(&t, "etc/gone", "x", 1, 0), "put");
	must(t_simple(&t, MST_OP_UNLINK, "etc/gone"), "unlink");
	snap(scratch, &seg1, &seg1len, &ck1, &ck1len);
	tclose(&t);
	snap(scratch, &seg2, &seg2len, &ck2, &ck2len);
	if (ck1 == NULL || ck2 == NULL) {
		fprintf(stderr, "mkrecover: no checkpoint was written\n");
		return 1;
	}

	put(argv[1], "log-only", seg2, seg2len, NULL, 0);
	put(argv[1], "ckpt-and-tail", seg1, seg1len, ck1, ck1len);
	put(argv[1], "final-ckpt", seg2, seg2len, ck2, ck2len);
	put(argv[1], "torn-tail", seg1, seg1len - 7, ck1, ck1len);
	put(argv[1], "torn-ckpt", seg2, seg2len, ck2, ck2len / 2);
	put(argv[1], "empty", NULL, 0, NULL, 0);

	free(seg1);
	free(ck1);
	free(seg2);
	free(ck2);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	return system(cmd) == 0 ? 0 : 1;
}
