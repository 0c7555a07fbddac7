/*
 * ctl_mount.c - `mstore-ctl mount-stats`: a mount's own counters, read
 * from the user.mstore.stats extended attribute of its root (the mount
 * answers it from memory; nothing goes to a store server). Owns the
 * parsing of that value, "key=value" lines with unsigned values, and
 * its JSON form: the plain keys as numbers, "kernel.OP" and "store.OP"
 * gathered into the objects "kernel" and "store".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "ctl_mount.h"
#include "json.h"

#define XA_STATS	"user.mstore.stats"
#define STATS_MAX	65536

/* The value, NUL-terminated, in a malloc'ed buffer; NULL with |err|. */
static char *
read_stats(const char *mnt, char *err, size_t errcap)
{
	char *buf = malloc(STATS_MAX + 1);
	ssize_t n;

	if (buf == NULL) {
		snprintf(err, errcap, "mount-stats %s: out of memory", mnt);
		return NULL;
	}
	n = getxattr(mnt, XA_STATS, buf, STATS_MAX);
	if (n < 0) {
		if (errno == ENODATA || errno == ENOTSUP)
			snprintf(err, errcap, "mount-stats %s: not an mstore "
			    "mount (the root of a mount.mstore mount has %s)",
			    mnt, XA_STATS);
		else
			snprintf(err, errcap, "mount-stats %s: %s", mnt,
			    strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* Split "key=value\n" at |p|: 0 and the parts, or -1 (not that shape). */
static int
parse_line(char *p, char **key, uint64_t *v, char **next)
{
	char *nl = strchr(p, '\n'), *eq, *end;

	if (nl == NULL)
		return -1;
	*nl = '\0';
	*next = nl + 1;
	eq = strchr(p, '=');
	if (eq == NULL || eq == p || eq[1] < '0' || eq[1] > '9')
		return -1;
	*eq = '\0';
	errno = 0;
	*v = strtoull(eq + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*key = p;
	return 0;
}

/* The members whose key starts with |prefix| ("kernel."), as object
 * |name| of |js|, named without the prefix. */
static void
json_group(struct json *js, const char *name, const char *prefix,
    char **keys, const uint64_t *vals, size_t n)
{
	size_t i, pl = strlen(prefix);

	json_obj_begin(js, name);
	for (i = 0; i < n; i++)
		if (strncmp(keys[i], prefix, pl) == 0)
			json_u64(js, keys[i] + pl, vals[i]);
	json_obj_end(js);
}

int
ctl_mount_stats(const char *mnt, struct json *js, char *err, size_t errcap)
{
	char *text = read_stats(mnt, err, errcap), *p, *next, *keys[1024];
	uint64_t vals[1024];
	size_t n = 0, i;

	if (text == NULL)
		return -1;
	if (js == NULL) {
		fputs(text, stdout);
		free(text);
		return 0;
	}
	for (p = text; *p != '\0'; p = next, n++) {
		if (n == 1024 || parse_line(p, &keys[n], &vals[n], &next) < 0) {
			snprintf(err, errcap, "mount-stats %s: %s: a line that "
			    "is not key=value: %.60s", mnt, XA_STATS, p);
			free(text);
			return -1;
		}
	}
	json_obj_begin(js, NULL);
	json_str(js, "mount", mnt);
	for (i = 0; i < n; i++)
		if (strchr(keys[i], '.') == NULL)
			json_u64(js, keys[i], vals[i]);
	json_group(js, "kernel", "kernel.", keys, vals, n);
	json_group(js, "store", "store.", keys, vals, n);
	json_obj_end(js);
	free(text);
	return 0;
}
