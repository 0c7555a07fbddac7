/*
 * bench_dir.c - the dir:PATH target of mstore-bench: any directory (local
 * disk, an NFS mount, an mstore mount), written with the Maildir delivery
 * sequence of qmail and Postfix: open(tmp/NAME, O_CREAT|O_EXCL|O_WRONLY,
 * 0600), write, fsync, close, link(tmp/NAME, new/NAME), unlink(tmp/NAME),
 * with full paths as the MTAs use them; read as an IMAP server reads:
 * readdir(3) of new/, open, read to the end, close, rename(2) into cur/
 * with the seen flag; expunged with unlink(2). Never removes anything it
 * did not create: cleanup walks only the mailboxes of this run's base
 * directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "../cli.h"

struct bench_target {
	char base[4096];	/* PATH/bench-PID */
	uint64_t write_size;	/* --write-size, 0: one write(2) */
};

struct bench_session {
	struct bench_target *t;
	char tmp[8192];		/* path buffers: no allocation per message */
	char dst[8192];
	uint8_t rbuf[64 << 10];	/* what read() fills, then forgets */
};

static const char *const subdirs[] = { "tmp", "new", "cur" };

static int
dir_check(const char *loc, struct bench_err *e)
{
	if (loc[0] == '\0') {
		snprintf(e->what, sizeof e->what, "empty PATH");
		return -EINVAL;
	}
	if (strlen(loc) > 3000) {
		snprintf(e->what, sizeof e->what, "PATH too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

static int
sys_fail(struct bench_err *e, const char *call, const char *path)
{
	int rc = -errno;

	snprintf(e->what, sizeof e->what, "%.16s(%.480s)", call, path);
	return rc;
}

/*
 * PATH/bench-PID/userMBOX[/SUB[/NAME]] into |buf|. Returns 0, or
 * -ENAMETOOLONG (with |e| filled) when it does not fit.
 */
static int
mbox_path(const struct bench_target *t, char *buf, size_t cap, unsigned mbox,
    const char *sub, const char *name, struct bench_err *e)
{
	int n = snprintf(buf, cap, "%s/user%u%s%s%s%s", t->base, mbox,
	    sub ? "/" : "", sub ? sub : "", name ? "/" : "", name ? name : "");

	if (n < 0 || (size_t)n >= cap) {
		snprintf(e->what, sizeof e->what, "path of %.200s in %.255s",
		    name ? name : "mailbox", t->base);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* |len| bytes in write(2)s of at most |piece| bytes (0: no limit), as
 * an MTA writes through its stream buffer (Postfix: 4096 bytes). */
static int
body_write(int fd, const uint8_t *p, size_t len, uint64_t piece)
{
	size_t n;
	int rc;

	if (piece == 0)
		return cli_write_all(fd, p, len);
	while (len > 0) {
		n = len < piece ? len : (size_t)piece;
		rc = cli_write_all(fd, p, n);
		if (rc < 0)
			return rc;
		p += n;
		len -= n;
	}
	return 0;
}

static int
dir_open(const char *loc, const struct bench_opts *o,
    struct bench_target **out, struct bench_err *e)
{
	struct bench_target *t = calloc(1, sizeof *t);
	char name[64];
	struct stat st;
	unsigned i;
	int rc;

	if (t == NULL)
		return -ENOMEM;
	t->write_size = o->write_size;
	if (stat(loc, &st) < 0) {
		rc = sys_fail(e, "stat", loc);
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(e->what, sizeof e->what, "%s", loc);
		rc = -ENOTDIR;
		goto fail;
	}
	for (i = 0; i < BENCH_BASE_TRIES; i++) {
		bench_base_name(o, i, name, sizeof name);
		snprintf(t->base, sizeof t->base, "%s/%s", loc, name);
		if (mkdir(t->base, 0700) == 0) {
			*out = t;
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	rc = sys_fail(e, "mkdir", t->base);
fail:
	free(t);
	return rc;
}

static int
dir_session_open(struct bench_target *t, unsigned writer,
    struct bench_session **out, struct bench_err *e)
{
	struct bench_session *s = calloc(1, sizeof *s);

	(void)writer;
	(void)e;
	if (s == NULL)
		return -ENOMEM;
	s->t = t;
	*out = s;
	return 0;
}

static void
dir_session_close(struct bench_session *s)
{
	free(s);
}

static int
dir_setup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	size_t i;
	int rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, NULL, NULL, e);

	if (rc < 0)
		return rc;
	if (mkdir(s->tmp, 0700) < 0 && errno != EEXIST)
		return sys_fail(e, "mkdir", s->tmp);
	for (i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, subdirs[i],
		    NULL, e);
		if (rc < 0)
			return rc;
		if (mkdir(s->tmp, 0700) < 0 && errno != EEXIST)
			return sys_fail(e, "mkdir", s->tmp);
	}
	return 0;
}

static int
dir_deliver(struct bench_session *s, const struct bench_msg *m,
    struct bench_err *e)
{
	int fd, rc;

	rc = mbox_path(s->t, s->tmp, sizeof s->tmp, m->mbox, "tmp", m->name,
	    e);
	if (rc == 0)
		rc = mbox_path(s->t, s->dst, sizeof s->dst, m->mbox, "new",
		    m->name, e);
	if (rc < 0)
		return rc;
	fd = open(s->tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		return sys_fail(e, "open", s->tmp);
	rc = body_write(fd, m->body, m->len, s->t->write_size);
	if (rc < 0) {
		snprintf(e->what, sizeof e->what, "write(%.480s)", s->tmp);
		goto fail;
	}
	if (fsync(fd) < 0) {
		rc = sys_fail(e, "fsync", s->tmp);
		goto fail;
	}
	/* NFS reports write errors at close: the MTAs check it, so do we. */
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = sys_fail(e, "close", s->tmp);
		goto fail;
	}
	if (link(s->tmp, s->dst) < 0) {
		rc = -errno;
		snprintf(e->what, sizeof e->what, "link(%.240s, %.240s)",
		    s->tmp, s->dst);
		goto fail;
	}
	if (unlink(s->tmp) < 0)
		return sys_fail(e, "unlink", s->tmp);
	return 0;
fail:
	if (fd >= 0)
		(void)close(fd);	/* the error being returned says more */
	(void)unlink(s->tmp);	/* best effort: cleanup sweeps tmp/ too */
	return rc;
}

static const char *
sub_name(enum bench_sub sub)
{
	return sub == BENCH_NEW ? "new" : "cur";
}

static int
dir_list(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    struct bench_list *l, struct bench_err *e)
{
	struct dirent *de;
	DIR *d;
	int rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, sub_name(sub),
	    NULL, e);

	if (rc < 0)
		return rc;
	bench_list_clear(l);
	d = opendir(s->tmp);
	if (d == NULL)
		return sys_fail(e, "opendir", s->tmp);
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		rc = bench_list_add(l, de->d_name, strlen(de->d_name), 0);
		if (rc < 0)
			snprintf(e->what, sizeof e->what, "listing %.480s",
			    s->tmp);
	}
	if (rc == 0 && errno != 0)
		rc = sys_fail(e, "readdir", s->tmp);
	closedir(d);
	return rc;
}

/* Read |fd| to its end into |buf|, again and again; the byte count in
 * *total_out. Retries EINTR. Returns 0 or a negative errno. */
static int
read_to_end(int fd, uint8_t *buf, size_t cap, uint64_t *total_out)
{
	uint64_t total = 0;
	ssize_t n;

	for (;;) {
		n = read(fd, buf, cap);
		if (n > 0)
			total += (uint64_t)n;
		else if (n == 0)
			break;
		else if (errno != EINTR)
			return -errno;
	}
	*total_out = total;
	return 0;
}

static int
dir_read(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, uint64_t *size_out, struct bench_err *e)
{
	int fd, rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox,
	    sub_name(sub), en->name, e);

	if (rc < 0)
		return rc;
	fd = open(s->tmp, O_RDONLY);
	if (fd < 0)
		return sys_fail(e, "open", s->tmp);
	rc = read_to_end(fd, s->rbuf, sizeof s->rbuf, size_out);
	if (rc < 0) {
		snprintf(e->what, sizeof e->what, "read(%.480s)", s->tmp);
		(void)close(fd);	/* the read error says more */
		return rc;
	}
	if (close(fd) < 0)
		return sys_fail(e, "close", s->tmp);
	return 0;
}

static int
dir_seen(struct bench_session *s, unsigned mbox, const struct bench_entry *en,
    struct bench_err *e)
{
	char name[512];
	int rc;

	snprintf(name, sizeof name, "%s%s", en->name, BENCH_SEEN_SUFFIX);
	rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, "new", en->name, e);
	if (rc == 0)
		rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, "cur", name,
		    e);
	if (rc < 0)
		return rc;
	if (rename(s->tmp, s->dst) < 0) {
		rc = -errno;
		snprintf(e->what, sizeof e->what, "rename(%.240s, %.240s)",
		    s->tmp, s->dst);
	}
	return rc;
}

static int
dir_expunge(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, struct bench_err *e)
{
	int rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, sub_name(sub),
	    en->name, e);

	if (rc < 0)
		return rc;
	if (unlink(s->tmp) < 0)
		return sys_fail(e, "unlink", s->tmp);
	return 0;
}

/* Remove every entry of |dir| (files only: we create no subdirectories
 * there), then |dir| itself. */
static int
empty_and_remove(const char *dir, char *buf, size_t cap, struct bench_err *e)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : sys_fail(e, "opendir", dir);
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(buf, cap, "%s/%s", dir, de->d_name) >=
		    cap) {
			snprintf(e->what, sizeof e->what, "path of %.255s in "
			    "%.240s", de->d_name, dir);
			rc = -ENAMETOOLONG;
		} else if (unlink(buf) < 0 && errno != ENOENT) {
			rc = sys_fail(e, "unlink", buf);
		}
	}
	if (rc == 0 && errno != 0)
		rc = sys_fail(e, "readdir", dir);
	closedir(d);
	if (rc == 0 && rmdir(dir) < 0 && errno != ENOENT)
		rc = sys_fail(e, "rmdir", dir);
	return rc;
}

static int
dir_cleanup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	size_t i;
	int rc;

	for (i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
		rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, subdirs[i],
		    NULL, e);
		if (rc == 0)
			rc = empty_and_remove(s->dst, s->tmp, sizeof s->tmp,
			    e);
		if (rc < 0)
			return rc;
	}
	rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, NULL, NULL, e);
	if (rc < 0)
		return rc;
	if (rmdir(s->dst) < 0 && errno != ENOENT)
		return sys_fail(e, "rmdir", s->dst);
	return 0;
}

static int
dir_close(struct bench_target *t, int keep, struct bench_err *e)
{
	int rc = 0;

	if (!keep && rmdir(t->base) < 0)
		rc = sys_fail(e, "rmdir", t->base);
	free(t);
	return rc;
}

const struct bench_target_ops bench_dir_ops = {
	.scheme = "dir:",
	.syntax = "dir:PATH",
	.check = dir_check,
	.open = dir_open,
	.session_open = dir_session_open,
	.session_close = dir_session_close,
	.setup_mailbox = dir_setup_mailbox,
	.deliver = dir_deliver,
	.list = dir_list,
	.read = dir_read,
	.seen = dir_seen,
	.expunge = dir_expunge,
	.cleanup_mailbox = dir_cleanup_mailbox,
	.close = dir_close,
};
