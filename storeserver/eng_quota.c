/*
 * eng_quota.c - per-mailbox quotas set by the operator (ADMIN quota,
 * mstore-ctl quota set) in the local and memory engines.
 *
 * A quota set this way is one more override beside the lines of
 * quota_file (mstore.conf(5)), and wins over them: it lives in the same
 * list (struct quota_ovr, with |set|), which apply_quotas() lays on the
 * index whenever it is built, and on the mailbox's usage record at
 * once. The store files keep the set ones in DIR/quotas, in
 * quota_file's format, replaced atomically (write, fsync, rename, fsync
 * of the directory) before the reply; the memory store keeps them for
 * the life of the process only. Runs on a reader thread: it takes e->mu
 * for writing to change the list and the record, never while writing
 * the file; one mutex keeps concurrent sets in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diskio.h"
#include "eng.h"
#include "log.h"

#define QUOTA_FILE	"quotas"

static pthread_mutex_t quota_file_mu = PTHREAD_MUTEX_INITIALIZER;

/* Set |name|'s override to |bytes| and |msgs| (|set|: from ADMIN quota).
 * Caller holds e->mu for writing, or has the engine to itself. */
static int
ovr_put(struct engine *e, const char *name, size_t len, uint64_t bytes,
    uint64_t msgs, int set)
{
	struct quota_ovr *q;

	for (q = e->quotas; q; q = q->next)
		if (strlen(q->mailbox) == len &&
		    memcmp(q->mailbox, name, len) == 0)
			break;
	if (q == NULL) {
		q = calloc(1, sizeof *q + len + 1);
		if (q == NULL)
			return -ENOMEM;
		memcpy(q->mailbox, name, len);
		q->next = e->quotas;
		e->quotas = q;
	}
	q->bytes = bytes;
	q->msgs = msgs;
	q->set |= set;
	return 0;
}

int
quota_set_load(struct engine *e)
{
	char path[4096], line[1024], name[MST_PATH_MAX + 1];
	unsigned long long bytes, msgs;
	int lineno = 0, rc = 0;
	FILE *f;

	if (e->media != &store_files)
		return 0;
	snprintf(path, sizeof path, "%s/%s", e->dir, QUOTA_FILE);
	f = fopen(path, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		log_err("quotas %s: %s", path, strerror(-rc));
		return rc;
	}
	while (rc == 0 && fgets(line, sizeof line, f)) {
		lineno++;
		if (line[strspn(line, " \t")] == '#' ||
		    line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%4095s %llu %llu", name, &bytes, &msgs) != 3) {
			log_err("%s:%d: want 'MAILBOX BYTES MESSAGES'", path,
			    lineno);
			rc = -EINVAL;
		} else {
			rc = ovr_put(e, name, strlen(name), bytes, msgs, 1);
		}
	}
	fclose(f);
	return rc;
}

/* The set overrides as quota_file lines, in a malloc'ed string. Caller
 * holds e->mu. */
static char *
ovr_text(const struct engine *e, size_t *len_out)
{
	const struct quota_ovr *q;
	size_t cap = 64, len = 0;
	char *t;
	int n;

	for (q = e->quotas; q; q = q->next)
		cap += strlen(q->mailbox) + 48;
	t = malloc(cap);
	if (t == NULL)
		return NULL;
	len = (size_t)snprintf(t, cap, "# set by mstore-ctl quota set\n");
	for (q = e->quotas; q; q = q->next) {
		if (!q->set)
			continue;
		n = snprintf(t + len, cap - len, "%s %" PRIu64 " %" PRIu64 "\n",
		    q->mailbox, q->bytes, q->msgs);
		len += (size_t)n;
	}
	*len_out = len;
	return t;
}

/* Replace DIR/quotas with |text|, durably. */
static int
quota_save(struct engine *e, const char *text, size_t len)
{
	int rc = dio_replace_file(e->dir, QUOTA_FILE, text, len);

	if (rc < 0)
		log_err("quota set: writing %s/%s: %s", e->dir, QUOTA_FILE,
		    strerror(-rc));
	return rc;
}

/* "MAILBOX BYTES MESSAGES" (ADMIN quota's argument, every back-end): 0,
 * or -EINVAL. */
int
engine_quota_arg(struct mst_str a, struct mst_str *name, uint64_t *bytes,
    uint64_t *msgs)
{
	char buf[MST_PATH_MAX + 64], *sp, *end;

	if (a.len >= sizeof buf)
		return -EINVAL;
	memcpy(buf, a.p, a.len);
	buf[a.len] = '\0';
	sp = strchr(buf, ' ');
	if (sp == NULL || sp == buf)
		return -EINVAL;
	*name = (struct mst_str){ a.p, (uint16_t)(sp - buf) };
	if (mst_path_check(*name) < 0 || sp[1] < '0' || sp[1] > '9')
		return -EINVAL;
	errno = 0;
	*bytes = strtoull(sp + 1, &end, 10);
	if (errno || *end != ' ' || end[1] < '0' || end[1] > '9')
		return -EINVAL;
	*msgs = strtoull(end + 1, &end, 10);
	if (errno || *end != '\0')
		return -EINVAL;
	return 0;
}

void
quota_admin(struct engine *e, struct job *j)
{
	struct mst_str name;
	uint64_t bytes, msgs;
	struct mbox *m;
	char *text = NULL, reply[MST_PATH_MAX + 96];
	size_t len = 0;
	int rc, n;

	rc = engine_quota_arg(j->req.admin.arg, &name, &bytes, &msgs);
	if (rc < 0) {
		j->status = rc;
		return;
	}
	pthread_mutex_lock(&quota_file_mu);
	pthread_rwlock_wrlock(&e->mu);
	rc = ovr_put(e, name.p, name.len, bytes, msgs, 1);
	m = rc == 0 ? index_mbox(e->ix, name, 1) : NULL;
	if (m != NULL) {
		m->quota_bytes = bytes;
		m->quota_msgs = msgs;
	} else if (rc == 0) {
		rc = -ENOMEM;
	}
	if (rc == 0 && e->media == &store_files &&
	    (text = ovr_text(e, &len)) == NULL)
		rc = -ENOMEM;
	pthread_rwlock_unlock(&e->mu);
	if (text != NULL)
		rc = quota_save(e, text, len);
	pthread_mutex_unlock(&quota_file_mu);
	free(text);
	if (rc < 0) {
		j->status = rc;
		return;
	}
	log_info("quota of %.*s set to %" PRIu64 " bytes, %" PRIu64
	    " messages", (int)name.len, name.p, bytes, msgs);
	n = snprintf(reply, sizeof reply, "mailbox=%.*s\nquota_bytes=%" PRIu64
	    "\nquota_msgs=%" PRIu64 "\n", (int)name.len, name.p, bytes, msgs);
	j->status = reply_text(j, reply, (size_t)n);
}
