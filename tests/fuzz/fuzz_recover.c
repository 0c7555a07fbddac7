/*
 * fuzz_recover.c - libFuzzer harness for the local engine's recovery:
 * arbitrary bytes become a segment file and, optionally, a checkpoint in
 * a fresh data directory, the engine opens it (checkpoint load, log
 * replay, torn-tail cut), the namespace is walked the way clients would
 * (READDIR, GET, READ, LIST of every directory, then an ADMIN scrub) and
 * the engine is closed. Refusing to start is fine; crashing, hanging or
 * leaking is not.
 *
 * Input layout (tests/fuzz/mkrecover.c writes seeds in it):
 * byte 0 is flags (bit 0: a checkpoint follows the segment),
 * bytes 1-4 the segment's length (little-endian, clamped to what
 * remains), then the segment file DIR/log/00000001.seg, then the rest is
 * DIR/checkpoint.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_util.h"
#include "log.h"
#include "mstproto.h"
#include "scratch.h"

#define WALK_DEPTH	6	/* directories below the root */
#define WALK_ENTRIES	64	/* entries visited per directory */
#define WALK_BYTES	4096	/* GET/READ length */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *base;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	base = fuzz_scratch_open("recover");
	return 0;
}

static void
put_file(const char *path, const uint8_t *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || (len && fwrite(p, 1, len, f) != len) ||
	    fclose(f) != 0) {
		perror(path);
		abort();	/* the harness's own I/O, not the engine's */
	}
}

static void
walk_file(struct tengine *t, const char *path, uint64_t id)
{
	struct mst_get_req g = { mst_str_of(path), 0, WALK_BYTES };
	struct mst_read_req r = { id, 0, WALK_BYTES };
	struct mst_id_req o = { id };
	uint8_t q[MST_PATH_MAX + 64];
	int n;

	if ((n = mst_get_req_encode(&g, q, sizeof q)) > 0)
		job_free(trun(t, MST_OP_GET, q, (size_t)n, NULL, 0));
	if ((n = mst_id_req_encode(&o, q, sizeof q)) > 0)
		job_free(trun(t, MST_OP_GETATTR, q, (size_t)n, NULL, 0));
	if ((n = mst_read_req_encode(&r, q, sizeof q)) > 0)
		job_free(trun(t, MST_OP_READ, q, (size_t)n, NULL, 0));
}

static void
walk_list(struct tengine *t, const char *path)
{
	struct mst_list_req l = { mst_str_of(path), mst_str_of(""),
		MST_SUB_NEW, 0 };
	uint8_t q[MST_PATH_MAX + 64];
	int n;

	if ((n = mst_list_req_encode(&l, q, sizeof q)) > 0)
		job_free(trun(t, MST_OP_LIST, q, (size_t)n, NULL, 0));
	l.sub = MST_SUB_CUR;
	if ((n = mst_list_req_encode(&l, q, sizeof q)) > 0)
		job_free(trun(t, MST_OP_LIST, q, (size_t)n, NULL, 0));
}

static void
walk_dir(struct tengine *t, const char *path, int depth)
{
	struct mst_path_req p = { mst_str_of(path) };
	struct mst_list_rep lr;
	struct mst_list_entry en;
	char *child;
	uint8_t q[MST_PATH_MAX + 64];
	size_t i, off, seen = 0;
	struct job *j;
	int n = mst_path_req_encode(&p, q, sizeof q);

	if (n <= 0)
		return;
	j = trun(t, MST_OP_READDIR, q, (size_t)n, NULL, 0);
	child = malloc(MST_PATH_MAX + 2);
	if (child == NULL)
		abort();
	for (i = 0; j->status == 0 && i < j->nframes; i++) {
		/* The engine's own replies must always decode. */
		if (mst_list_rep_decode(&lr, j->frames[i].p, j->frames[i].len))
			abort();
		off = 0;
		while (seen < WALK_ENTRIES &&
		    (n = mst_list_entry_next(&en, &lr, &off)) == 1) {
			seen++;
			if (snprintf(child, MST_PATH_MAX + 1, "%s%s%.*s", path,
			    *path ? "/" : "", (int)en.name.len,
			    (const char *)en.name.p) > (int)MST_PATH_MAX)
				continue;
			if (en.attr.type == MST_T_DIR) {
				if (depth < WALK_DEPTH)
					walk_dir(t, child, depth + 1);
			} else {
				walk_file(t, child, en.attr.id);
			}
		}
		if (n < 0)
			abort();
	}
	job_free(j);
	if (*path)
		walk_list(t, path);
	free(child);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tengine t;
	char dir[4200], path[4300], out[256];
	size_t seglen;

	if (size < 5)
		return 0;
	seglen = (size_t)data[1] | (size_t)data[2] << 8 |
	    (size_t)data[3] << 16 | (size_t)data[4] << 24;
	if (seglen > size - 5)
		seglen = size - 5;
	snprintf(dir, sizeof dir, "%s/d", base);
	snprintf(path, sizeof path, "%s/log", dir);
	if (mkdir(dir, 0700) < 0 || mkdir(path, 0700) < 0) {
		perror(path);
		abort();
	}
	snprintf(path, sizeof path, "%s/log/00000001.seg", dir);
	put_file(path, data + 5, seglen);
	if (data[0] & 1) {
		snprintf(path, sizeof path, "%s/checkpoint", dir);
		put_file(path, data + 5 + seglen, size - 5 - seglen);
	}

	tconf(&t, dir);
	t.conf.readers = 1;		/* the fewest the engine runs */
	t.conf.max_body = 1u << 20;
	t.conf.segment_size = 1u << 20;
	if (topen(&t) == 0) {
		walk_dir(&t, "", 0);
		t_admin(&t, "scrub", out, sizeof out);
		tclose(&t);
	}
	fuzz_rm_tree(dir);
	return 0;
}
