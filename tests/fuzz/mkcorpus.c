/*
 * mkcorpus.c - writes the fuzzer's seed corpus: one file per input,
 * named "<selector>-<what>", holding the selector byte and a valid
 * payload (codecs.h, "Fuzz input"). One file per layout from the shared
 * samples, plus headers, a bare entry run and a few edge cases the
 * fuzzer would take long to find. Output is deterministic, so
 * check_corpus.sh can tell when the committed corpus is stale.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs.h"
#include "mstproto.h"

static uint8_t buf[1u << 16];

/* Writes |dir|/<sel>-<what> holding |sel| and |len| bytes of |p|. */
static int
put(const char *dir, unsigned sel, const char *what, const uint8_t *p,
    size_t len)
{
	char path[4096];
	uint8_t s = (uint8_t)sel;
	FILE *f;
	int ok;

	snprintf(path, sizeof path, "%s/%02u-%s", dir, sel, what);
	f = fopen(path, "wb");
	if (f == NULL) {
		fprintf(stderr, "mkcorpus: open %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	ok = fwrite(&s, 1, 1, f) == 1 && (len == 0 ||
	    fwrite(p, 1, len, f) == len);
	if (fclose(f) != 0 || !ok) {
		fprintf(stderr, "mkcorpus: write %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
put_hdr(const char *dir, const char *what, uint8_t op, uint16_t flags,
    uint32_t id, uint32_t len)
{
	struct mst_hdr h = { MST_VERSION, op, flags, 0, id, len };
	uint8_t b[MST_HDR_LEN];

	if (mst_hdr_encode(&h, b, sizeof b) < 0)
		abort();	/* b is MST_HDR_LEN */
	return put(dir, CODECS_SEL_HDR, what, b, sizeof b);
}

static int
put_msg(const char *dir, unsigned i, const char *what,
    const union codecs_msg *m)
{
	char name[128];
	int n = codecs[i].encode(m, buf, sizeof buf);

	if (n < 0) {
		fprintf(stderr, "mkcorpus: encode %s: %d\n", codecs[i].name, n);
		return -1;
	}
	snprintf(name, sizeof name, "%s%s%s", codecs[i].name,
	    *what ? "-" : "", what);
	return put(dir, CODECS_SEL_FIRST + i, name, buf, (size_t)n);
}

static unsigned
index_of(const char *name)
{
	const struct codec *c = codecs_find(name);

	if (c == NULL)
		abort();	/* names below are codecs[] rows */
	return (unsigned)(c - codecs);
}

/* Paths at MST_PATH_DEPTH_MAX components and at MST_PATH_MAX bytes. */
static int
put_edge_paths(const char *dir)
{
	static char deep[2 * MST_PATH_DEPTH_MAX - 1], longp[MST_PATH_MAX];
	unsigned i = index_of("path_req");
	union codecs_msg m;
	size_t k;

	for (k = 0; k < sizeof deep; k++)
		deep[k] = k % 2 ? '/' : 'd';
	memset(longp, 'p', sizeof longp);
	for (k = 255; k < sizeof longp; k += 256)
		longp[k] = '/';
	memset(&m, 0, sizeof m);
	m.path_req.path.p = deep;
	m.path_req.path.len = sizeof deep;
	if (put_msg(dir, i, "deep", &m) < 0)
		return -1;
	m.path_req.path.p = longp;
	m.path_req.path.len = sizeof longp;
	return put_msg(dir, i, "long", &m);
}

/* Ordinary files: a write at an offset whose body follows in DATA
 * frames, and each kind of LOCK and its "no conflict" reply. */
static int
put_file_cases(const char *dir)
{
	union codecs_msg m;
	unsigned i;

	memset(&m, 0, sizeof m);
	i = index_of("write_req");
	codecs[i].sample(&m);
	m.write_req.flags = 0;
	m.write_req.body_size = 1u << 20;	/* DATA frames follow */
	if (put_msg(dir, i, "partial", &m) < 0)
		return -1;
	i = index_of("lock_req");
	codecs[i].sample(&m);
	m.lock_req.flags = MST_LKF_TEST;
	if (put_msg(dir, i, "test", &m) < 0)
		return -1;
	m.lock_req.type = MST_LK_UN;
	m.lock_req.flags = 0;
	if (put_msg(dir, i, "unlock", &m) < 0)
		return -1;
	m.lock_req.type = MST_LK_WR;
	m.lock_req.flags = MST_LKF_FLOCK | MST_LKF_WAIT;
	m.lock_req.start = 0;
	if (put_msg(dir, i, "flock", &m) < 0)
		return -1;
	m.lock_req.flags = MST_LKF_CANCEL;
	if (put_msg(dir, i, "cancel", &m) < 0)
		return -1;
	memset(&m, 0, sizeof m);
	i = index_of("lock_rep");
	m.lock_rep.type = MST_LK_UN;
	return put_msg(dir, i, "none", &m);
}

static int
put_edge_cases(const char *dir)
{
	union codecs_msg m;
	unsigned i;

	memset(&m, 0, sizeof m);
	i = index_of("error_rep");
	if (put(dir, CODECS_SEL_FIRST + i, "error_rep-empty", NULL, 0) < 0)
		return -1;
	i = index_of("deliver_req");
	codecs[i].sample(&m);
	m.deliver_req.body_size = 1u << 20;	/* DATA frames follow */
	if (put_msg(dir, i, "partial", &m) < 0)
		return -1;
	memset(&m, 0, sizeof m);
	i = index_of("list_rep");
	if (put_msg(dir, i, "empty", &m) < 0)
		return -1;
	memset(&m, 0, sizeof m);
	i = index_of("notify");
	codecs[i].sample(&m);
	m.notify.event = MST_EV_RESET;
	m.notify.name = mst_str_of("");
	if (put_msg(dir, i, "reset", &m) < 0)
		return -1;
	if (put_file_cases(dir) < 0)
		return -1;
	return put_edge_paths(dir);
}

int
main(int argc, char **argv)
{
	union codecs_msg m;
	unsigned i;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: mkcorpus DIR\n"
		    "Write the libmstproto fuzzer's seed corpus into DIR.\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	if (put_hdr(argv[1], "hdr-request", MST_OP_DELIVER, MST_F_MORE, 7,
	    4096) < 0 ||
	    put_hdr(argv[1], "hdr-notice", MST_OP_NOTIFY, MST_F_NOTICE, 0, 40) < 0)
		return 1;
	for (i = 0; i < codecs_len; i++) {
		memset(&m, 0, sizeof m);
		codecs[i].sample(&m);
		if (put_msg(argv[1], i, "", &m) < 0)
			return 1;
		if ((codecs[i].flags & CODEC_ENTRIES) &&
		    put(argv[1], CODECS_SEL_ENTRIES, "entries",
		    m.list_rep.entries, m.list_rep.entries_len) < 0)
			return 1;
	}
	return put_edge_cases(argv[1]) < 0 ? 1 : 0;
}
