/*
 * engine_rados_quota.c - per-mailbox quotas of the rados back-end. A
 * mailbox's usage is the omap value u of the object q.<mailbox>:
 * 'Q' + bytes + messages (16 hex digits each). A DELIVER reserves its
 * size by compare-and-swap of u (guarded by the value read, so two
 * servers never both take the last room) BEFORE its body is written;
 * whoever removes a message body afterwards (EXPUNGE, UNLINK, a
 * replaced message, a delivery that did not happen) gives it back. So
 * the limit holds across servers; a server that dies between the steps
 * leaves the usage too high, never too low, until a scrub counts it
 * again (engine_rados_scrub.c).
 * Limits are quota_bytes and quota_messages of mstore.conf(5), and per
 * mailbox the lines of quota_file (read when the store opens, the local
 * engine's format), the same on every server. Without any limit nothing
 * is read or written here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_rados.h"
#include "log.h"

#define Q_LEN RE_QUOTA_LEN

/* quota_file's lines, sorted by mailbox; set once at open. */
struct qovr {
	char *mbox;
	uint64_t bytes, msgs;
};
static struct qovr *ovr;
static size_t novr;

static int
ovr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qovr *)a)->mbox,
	    ((const struct qovr *)b)->mbox);
}

static void
quota_unload(void)
{
	size_t i;

	for (i = 0; i < novr; i++)
		free(ovr[i].mbox);
	free(ovr);
	ovr = NULL;
	novr = 0;
}

int
re_quota_load(struct rados_engine *e)
{
	char line[1024], name[MST_PATH_MAX + 1];
	unsigned long long bytes, msgs;
	const char *path = e->conf.quota_file;
	struct qovr *v;
	int lineno = 0, rc = 0;
	FILE *f;

	if (path == NULL)
		return 0;
	if ((f = fopen(path, "r")) == NULL) {
		rc = -errno;
		log_err("quota file %s: %s", path, strerror(-rc));
		return rc;
	}
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		if (line[strspn(line, " \t")] == '#' ||
		    line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%4095s %llu %llu", name, &bytes,
		    &msgs) != 3) {
			log_err("%s:%d: want 'MAILBOX BYTES MESSAGES'", path,
			    lineno);
			rc = -EINVAL;
		} else if ((v = realloc(ovr, (novr + 1) * sizeof *v)) == NULL) {
			rc = -ENOMEM;
		} else {
			ovr = v;
			ovr[novr].bytes = bytes;
			ovr[novr].msgs = msgs;
			if ((ovr[novr].mbox = strdup(name)) == NULL)
				rc = -ENOMEM;
			else
				novr++;
		}
	}
	fclose(f);
	if (rc < 0) {
		quota_unload();
		return rc;
	}
	qsort(ovr, novr, sizeof *ovr, ovr_cmp);
	log_info("rados: %zu mailbox quotas from %s", novr, path);
	return 0;
}

int
re_quota_on(const struct rados_engine *e)
{
	return e->conf.quota_bytes || e->conf.quota_messages || novr;
}

void
re_quota_limits(const struct rados_engine *e, const char *mbox, size_t len,
    uint64_t *bytes, uint64_t *msgs)
{
	char name[MST_PATH_MAX + 1];
	struct qovr key = { .mbox = name }, *o;

	*bytes = e->conf.quota_bytes;
	*msgs = e->conf.quota_messages;
	if (novr == 0 || len > MST_PATH_MAX)
		return;
	memcpy(name, mbox, len);
	name[len] = '\0';
	if ((o = bsearch(&key, ovr, novr, sizeof *ovr, ovr_cmp)) != NULL) {
		*bytes = o->bytes;
		*msgs = o->msgs;
	}
}

static void
q_oid(char *out, size_t cap, const char *mbox, size_t len)
{
	snprintf(out, cap, "q.%.*s", (int)len, mbox);
}

int
re_quota_decode(const char *v, size_t len, uint64_t *bytes, uint64_t *msgs)
{
	if (len != Q_LEN || v[0] != 'Q' || re_unhex(v + 1, 16, bytes) < 0 ||
	    re_unhex(v + 17, 16, msgs) < 0)
		return -EIO;
	return 0;
}

static int
q_decode(const struct kv *v, uint64_t *bytes, uint64_t *msgs)
{
	return re_quota_decode(v->v, v->vlen, bytes, msgs);
}

void
re_quota_value(char out[RE_QUOTA_LEN + 1], uint64_t bytes, uint64_t msgs)
{
	out[0] = 'Q';
	re_hex(out + 1, bytes);
	re_hex(out + 17, msgs);
}

int
re_quota_usage(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t *bytes, uint64_t *msgs)
{
	char oid[MST_PATH_MAX + 8];
	const char *keys[] = { "u", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	int rc;

	*bytes = *msgs = 0;
	q_oid(oid, sizeof oid, mbox, len);
	rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
	if (rc == 0 && (v = kvset_get(&vals, "u")) != NULL)
		rc = q_decode(v, bytes, msgs);
	kvset_free(&vals);
	return rc == -ENOENT ? 0 : rc;
}

/* Add |dbytes| and |dmsgs| (signed) to the usage; with |check|, fail
 * with -EDQUOT when the limits would be passed (the local engine's
 * rule: bytes + size over quota_bytes, messages + 1 over
 * quota_messages). */
static int
q_change(struct rados_engine *e, const char *mbox, size_t len,
    int64_t dbytes, int64_t dmsgs, int check)
{
	char oid[MST_PATH_MAX + 8], old[Q_LEN + 1], new[Q_LEN + 1];
	const char *keys[] = { "u", NULL };
	struct kvset vals = { 0 };
	const struct kv *v;
	uint64_t b, m, qb, qm;
	rados_write_op_t op;
	int rc, tries;

	re_quota_limits(e, mbox, len, &qb, &qm);
	q_oid(oid, sizeof oid, mbox, len);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		b = m = 0;
		rc = re_read(e, oid, keys, &vals, NULL, NULL, 0, NULL, NULL);
		v = rc == 0 ? kvset_get(&vals, "u") : NULL;
		if (v && q_decode(v, &b, &m) < 0)
			rc = -EIO;
		if (v)
			memcpy(old, v->v, Q_LEN);
		kvset_free(&vals);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (check && ((qb && b + (uint64_t)dbytes > qb) ||
		    (qm && m + 1 > qm)))
			return -EDQUOT;
		b = dbytes < 0 && (uint64_t)-dbytes > b ? 0 : b + (uint64_t)dbytes;
		m = dmsgs < 0 && (uint64_t)-dmsgs > m ? 0 : m + (uint64_t)dmsgs;
		re_quota_value(new, b, m);
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		re_cmp(op, "u", v ? old : "", v ? Q_LEN : 0);
		re_set(op, "u", new, Q_LEN);
		rc = re_write(e, oid, op);
		if (rc != -ECANCELED)
			return rc < 0 ? re_err("quota", oid, rc) : 0;
	}
	return re_err("quota (too many races)", oid, -EAGAIN);
}

int
re_quota_take(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size)
{
	if (!re_quota_on(e))
		return 0;
	return q_change(e, mbox, len, (int64_t)size, 1, 1);
}

void
re_quota_give(struct rados_engine *e, const char *mbox, size_t len,
    uint64_t size)
{
	if (!re_quota_on(e))
		return;
	if (q_change(e, mbox, len, -(int64_t)size, -1, 0) < 0)
		log_warn("rados: quota of %.*s: giving back %" PRIu64
		    " bytes failed; its usage stays too high", (int)len, mbox,
		    size);
}
