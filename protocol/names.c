/*
 * names.c - names, paths, string views and body accounting shared by both
 * ends (mstore-protocol(7), "Names and paths", "Bodies"). Pure checks:
 * never allocates, never reads past a view's length.
 */
#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include "mstproto.h"

struct mst_str
mst_str_of(const char *s)
{
	struct mst_str v = { s, 0 };
	size_t n = s ? strlen(s) : 0;

	if (s == NULL)
		v.p = "";
	v.len = (uint16_t)(n > UINT16_MAX ? UINT16_MAX : n);
	return v;
}

int
mst_name_check(struct mst_str name)
{
	if (name.len == 0)
		return -EINVAL;
	if (name.len > MST_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name.p, '/', name.len) || memchr(name.p, 0, name.len))
		return -EINVAL;
	if ((name.len == 1 && name.p[0] == '.') ||
	    (name.len == 2 && name.p[0] == '.' && name.p[1] == '.'))
		return -EINVAL;
	return 0;
}

/* Relative, '/'-separated, no empty, "." or ".." components; "" is the
 * root. */
int
mst_path_check(struct mst_str path)
{
	size_t start = 0, i, depth = 0;
	struct mst_str comp;
	int rc;

	if (path.len > MST_PATH_MAX)
		return -ENAMETOOLONG;
	if (path.len == 0)
		return 0;
	for (i = 0; i <= path.len; i++) {
		if (i < path.len && path.p[i] != '/')
			continue;
		comp.p = path.p + start;
		comp.len = (uint16_t)(i - start);
		rc = mst_name_check(comp);
		if (rc < 0)
			return rc;
		if (++depth > MST_PATH_DEPTH_MAX)
			return -ELOOP;
		start = i + 1;
	}
	return 0;
}

int
mst_body_add(struct mst_body *b, size_t n, int more)
{
	if (n > b->want - b->have)
		return -EPROTO;
	b->have += n;
	if (b->have == b->want)
		return more ? -EPROTO : 1;
	return more ? 0 : -EPROTO;
}

uint64_t
mst_checksum(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}
