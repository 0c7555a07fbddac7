/*
 * bench_nfs.c - the nfs://HOST/EXPORT[?nfsport=N&mountport=N] target of
 * mstore-bench: NFSv3 through libnfs's synchronous API, without a kernel
 * mount. Each delivery is bench_dir.c's Maildir sequence as NFS calls:
 * create tmp/NAME exclusively (CREATE GUARDED, mode 0600: open with
 * O_CREAT|O_EXCL), WRITE (unstable, as a kernel client writes), COMMIT
 * (fsync), close, LINK into new/NAME, REMOVE of tmp/NAME. Reading is
 * bench_dir.c's too: READDIR of new/, open, READ to the end, close,
 * RENAME into cur/ with the seen flag; expunging is REMOVE. Never removes
 * anything it did not create: cleanup walks only this run's mailboxes.
 *
 * Threads: a libnfs context is not thread-safe, so every writer owns one
 * (its own connections and MOUNT) and open/close use one of their own.
 * libnfs 4.0 counts in a static variable without a lock when it makes a
 * context, so contexts are made under t->mu.
 *
 * libnfs cannot always tell a dead connection from a server's error (a
 * broken socket comes back as EIO), so after any failed step a session
 * drops its context and mounts again before its next call; the failed
 * operation counts as an error and is never retried. The exceptions are
 * a missing or stale file in the reading workloads (another writer
 * removed it first): the server answered, so the context is sound.
 * Every call has the -t timeout, so a server that stops answering fails
 * operations instead of hanging the run.
 *
 * Built without libnfs, the kind is still listed, marked unavailable.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define NFS_SYNTAX	"nfs://HOST/EXPORT[?nfsport=N&mountport=N]"

#ifdef HAVE_LIBNFS

#include <nfsc/libnfs.h>

#define NFS_URL_MAX	4096		/* as given, without "nfs://" */
#define NFS_PATH_MAX	1024		/* inside the export */
#define NFS_TIMEOUT_MS	10000		/* -t not given */

struct bench_target {
	char url[NFS_URL_MAX + 8];	/* nfs://HOST/EXPORT?... */
	char base[80];			/* /bench-PID, from the export root */
	int timeout_ms;			/* whole seconds: libnfs's unit */
	pthread_mutex_t mu;		/* guards nfs_init_context() calls */
};

struct bench_session {
	struct bench_target *t;
	struct nfs_context *nfs;	/* NULL: mount again before next use */
	char tmp[NFS_PATH_MAX];		/* path buffers: no allocation per */
	char dst[NFS_PATH_MAX];		/* message */
	uint8_t rbuf[64 << 10];		/* what READ fills, then forgets */
};

static const char *const subdirs[] = { "tmp", "new", "cur" };

/*
 * Describe the failed |call| on |a| (and |b|, or NULL) in |e| with
 * libnfs's own words, which name the NFS status, and return |rc| as an
 * errno. libnfs reports a call that timed out as -EINTR (nothing else
 * interrupts a synchronous call), so that one becomes -ETIMEDOUT.
 */
static int
nfs_fail2(struct bench_err *e, struct nfs_context *nfs, int rc,
    const char *call, const char *a, const char *b)
{
	const char *why = nfs_get_error(nfs);

	snprintf(e->what, sizeof e->what, "%.16s(%.200s%s%.200s)%s%.100s",
	    call, a, b ? ", " : "", b ? b : "", why && why[0] ? ": " : "",
	    why ? why : "");
	if (rc == -EINTR)
		return -ETIMEDOUT;
	return rc < 0 ? rc : -EIO;
}

static int
nfs_fail(struct bench_err *e, struct nfs_context *nfs, int rc,
    const char *call, const char *path)
{
	return nfs_fail2(e, nfs, rc, call, path, NULL);
}

static int
nfs_check(const char *loc, struct bench_err *e)
{
	const char *slash = strchr(loc, '/');

	if (slash == NULL || slash == loc || slash[1] == '\0' ||
	    slash[1] == '?') {
		snprintf(e->what, sizeof e->what, "expected %s", NFS_SYNTAX);
		return -EINVAL;
	}
	if (strlen(loc) > NFS_URL_MAX) {
		snprintf(e->what, sizeof e->what, "URL too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

/* A new context, mounted, with this target's settings. */
static int
nfs_connect(struct bench_target *t, struct nfs_context **out,
    struct bench_err *e)
{
	struct nfs_context *nfs;
	struct nfs_url *u;
	int rc;

	pthread_mutex_lock(&t->mu);
	nfs = nfs_init_context();
	pthread_mutex_unlock(&t->mu);
	if (nfs == NULL) {
		snprintf(e->what, sizeof e->what, "nfs_init_context");
		return -ENOMEM;
	}
	/* Applies the URL's settings (nfsport=, mountport=, uid=, ...). */
	u = nfs_parse_url_dir(nfs, t->url);
	if (u == NULL) {
		rc = nfs_fail(e, nfs, -EINVAL, "parse", t->url);
		goto fail;
	}
	nfs_set_timeout(nfs, t->timeout_ms);
	nfs_set_autoreconnect(nfs, 0);	/* fail; the session remounts */
	nfs_set_dircache(nfs, 0);	/* other writers change directories */
	rc = nfs_mount(nfs, u->server, u->path);
	if (rc < 0)
		rc = nfs_fail2(e, nfs, rc, "MOUNT", u->server, u->path);
	nfs_destroy_url(u);
	if (rc < 0)
		goto fail;
	*out = nfs;
	return 0;
fail:
	nfs_destroy_context(nfs);
	return rc;
}

/* Mount again when an earlier failure dropped the context. */
static int
session_ready(struct bench_session *s, struct bench_err *e)
{
	return s->nfs ? 0 : nfs_connect(s->t, &s->nfs, e);
}

static void
session_drop(struct bench_session *s)
{
	if (s->nfs)
		nfs_destroy_context(s->nfs);
	s->nfs = NULL;
}

/*
 * /bench-PID/userMBOX[/SUB[/NAME]] into |buf|. Returns 0, or
 * -ENAMETOOLONG (with |e| filled) when it does not fit.
 */
static int
mbox_path(const struct bench_target *t, char *buf, size_t cap, unsigned mbox,
    const char *sub, const char *name, struct bench_err *e)
{
	int n = snprintf(buf, cap, "%s/user%u%s%s%s%s", t->base, mbox,
	    sub ? "/" : "", sub ? sub : "", name ? "/" : "", name ? name : "");

	if (n < 0 || (size_t)n >= cap) {
		snprintf(e->what, sizeof e->what, "path of %.200s in %.60s",
		    name ? name : "mailbox", t->base);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int
nfs_open_target(const char *loc, const struct bench_opts *o,
    struct bench_target **out, struct bench_err *e)
{
	struct bench_target *t = calloc(1, sizeof *t);
	struct nfs_context *nfs;
	char name[64];
	unsigned i;
	int rc, ms = o->client.timeout_ms ? o->client.timeout_ms :
	    NFS_TIMEOUT_MS;

	if (t == NULL)
		return -ENOMEM;
	snprintf(t->url, sizeof t->url, "nfs://%s", loc);
	t->timeout_ms = (ms + 999) / 1000 * 1000;
	pthread_mutex_init(&t->mu, NULL);
	rc = nfs_connect(t, &nfs, e);
	if (rc < 0)
		goto fail;
	for (i = 0; i < BENCH_BASE_TRIES; i++) {
		bench_base_name(o, i, name, sizeof name);
		snprintf(t->base, sizeof t->base, "/%s", name);
		rc = nfs_mkdir2(nfs, t->base, 0700);
		if (rc != -EEXIST)
			break;
	}
	if (rc < 0)
		rc = nfs_fail(e, nfs, rc, "MKDIR", t->base);
	nfs_destroy_context(nfs);
	if (rc == 0) {
		*out = t;
		return 0;
	}
fail:
	pthread_mutex_destroy(&t->mu);
	free(t);
	return rc;
}

static int
nfs_session_open(struct bench_target *t, unsigned writer,
    struct bench_session **out, struct bench_err *e)
{
	struct bench_session *s = calloc(1, sizeof *s);
	int rc;

	(void)writer;
	if (s == NULL)
		return -ENOMEM;
	s->t = t;
	rc = session_ready(s, e);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void
nfs_session_close(struct bench_session *s)
{
	/* No UMNT: ganesha keeps no list of v3 mounts to clean. */
	session_drop(s);
	free(s);
}

static int
mkdir_existing_ok(struct bench_session *s, const char *path,
    struct bench_err *e)
{
	int rc = nfs_mkdir2(s->nfs, path, 0700);

	if (rc < 0 && rc != -EEXIST) {
		rc = nfs_fail(e, s->nfs, rc, "MKDIR", path);
		session_drop(s);
		return rc;
	}
	return 0;
}

static int
nfs_setup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	size_t i;
	int rc = session_ready(s, e);

	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, NULL, NULL,
		    e);
	if (rc == 0)
		rc = mkdir_existing_ok(s, s->tmp, e);
	for (i = 0; rc == 0 && i < sizeof subdirs / sizeof subdirs[0]; i++) {
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, subdirs[i],
		    NULL, e);
		if (rc == 0)
			rc = mkdir_existing_ok(s, s->tmp, e);
	}
	return rc;
}

/* WRITE all of |m| at offset 0, as many calls as the server needs. */
static int
write_all(struct bench_session *s, struct nfsfh *fh,
    const struct bench_msg *m, struct bench_err *e)
{
	size_t off = 0;
	int n;

	while (off < m->len) {
		n = nfs_pwrite(s->nfs, fh, off, m->len - off, m->body + off);
		if (n <= 0)
			return nfs_fail(e, s->nfs, n, "WRITE", s->tmp);
		off += (size_t)n;
	}
	return 0;
}

static int
nfs_deliver(struct bench_session *s, const struct bench_msg *m,
    struct bench_err *e)
{
	struct nfsfh *fh;
	int crc, rc = session_ready(s, e);

	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, m->mbox, "tmp",
		    m->name, e);
	if (rc == 0)
		rc = mbox_path(s->t, s->dst, sizeof s->dst, m->mbox, "new",
		    m->name, e);
	if (rc < 0)
		return rc;
	rc = nfs_create(s->nfs, s->tmp, O_CREAT | O_EXCL | O_WRONLY, 0600,
	    &fh);
	if (rc < 0) {
		rc = nfs_fail(e, s->nfs, rc, "CREATE", s->tmp);
		session_drop(s);	/* tmp/NAME is not ours: keep it */
		return rc;
	}
	rc = write_all(s, fh, m, e);
	if (rc == 0 && (rc = nfs_fsync(s->nfs, fh)) < 0)
		rc = nfs_fail(e, s->nfs, rc, "COMMIT", s->tmp);
	/* Frees |fh| whatever it returns. Checked as the MTAs check
	 * close(2) on an NFS mount; after an earlier error, that one says
	 * more. */
	crc = nfs_close(s->nfs, fh);
	if (rc == 0 && crc < 0)
		rc = nfs_fail(e, s->nfs, crc, "close", s->tmp);
	if (rc == 0 && (rc = nfs_link(s->nfs, s->tmp, s->dst)) < 0)
		rc = nfs_fail2(e, s->nfs, rc, "LINK", s->tmp, s->dst);
	if (rc == 0) {
		rc = nfs_unlink(s->nfs, s->tmp);
		if (rc == 0)
			return 0;
		rc = nfs_fail(e, s->nfs, rc, "REMOVE", s->tmp);
	} else {
		/* Best effort: cleanup sweeps tmp/ too. Not after a timeout
		 * or a broken connection: it would only wait once more. */
		if (rc != -ETIMEDOUT && rc != -EIO && rc != -EFAULT)
			(void)nfs_unlink(s->nfs, s->tmp);
	}
	session_drop(s);
	return rc;
}

static const char *
sub_name(enum bench_sub sub)
{
	return sub == BENCH_NEW ? "new" : "cur";
}

/* After a failed call: keep the context only when the server said the
 * file is gone (see the top of the file). Returns |rc|. */
static int
failed(struct bench_session *s, int rc)
{
	if (rc != -ENOENT && rc != -ESTALE)
		session_drop(s);
	return rc;
}

static int
nfs_list(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    struct bench_list *l, struct bench_err *e)
{
	struct nfsdir *d;
	struct nfsdirent *de;
	int rc = session_ready(s, e);

	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox,
		    sub_name(sub), NULL, e);
	if (rc < 0)
		return rc;
	bench_list_clear(l);
	rc = nfs_opendir(s->nfs, s->tmp, &d);
	if (rc < 0)
		return failed(s, nfs_fail(e, s->nfs, rc, "READDIR", s->tmp));
	while (rc == 0 && (de = nfs_readdir(s->nfs, d)) != NULL) {
		if (strcmp(de->name, ".") == 0 || strcmp(de->name, "..") == 0)
			continue;
		rc = bench_list_add(l, de->name, strlen(de->name), 0);
		if (rc < 0)
			snprintf(e->what, sizeof e->what, "listing %.480s",
			    s->tmp);
	}
	nfs_closedir(s->nfs, d);
	return rc;
}

/*
 * libnfs 4.0 turns every failed READ into -EFAULT, with no NFS status:
 * a stale file handle too, which is what READ gets when another writer
 * removed the file after this one opened it. Whether the file is still
 * there tells the race from a real failure.
 */
static int
gone(struct bench_session *s, const char *path)
{
	struct nfs_stat_64 st;

	return nfs_stat64(s->nfs, path, &st) == -ENOENT;
}

static int
nfs_read_msg(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, uint64_t *size_out, struct bench_err *e)
{
	struct nfsfh *fh;
	uint64_t total = 0;
	int n, crc, rc = session_ready(s, e);

	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox,
		    sub_name(sub), en->name, e);
	if (rc < 0)
		return rc;
	rc = nfs_open(s->nfs, s->tmp, O_RDONLY, &fh);
	if (rc < 0)
		return failed(s, nfs_fail(e, s->nfs, rc, "open", s->tmp));
	while ((n = nfs_read(s->nfs, fh, sizeof s->rbuf, s->rbuf)) > 0)
		total += (uint64_t)n;
	if (n < 0)
		rc = nfs_fail(e, s->nfs, n, "READ", s->tmp);
	if (rc == -EFAULT && gone(s, s->tmp))
		rc = -ESTALE;
	/* Frees |fh| whatever it returns; after a READ error, that one
	 * says more. */
	crc = nfs_close(s->nfs, fh);
	if (rc == 0 && crc < 0)
		rc = nfs_fail(e, s->nfs, crc, "close", s->tmp);
	if (rc < 0)
		return failed(s, rc);
	*size_out = total;
	return 0;
}

static int
nfs_seen(struct bench_session *s, unsigned mbox, const struct bench_entry *en,
    struct bench_err *e)
{
	char name[512];
	int rc = session_ready(s, e);

	snprintf(name, sizeof name, "%s%s", en->name, BENCH_SEEN_SUFFIX);
	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox, "new",
		    en->name, e);
	if (rc == 0)
		rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, "cur", name,
		    e);
	if (rc < 0)
		return rc;
	rc = nfs_rename(s->nfs, s->tmp, s->dst);
	if (rc < 0)
		return failed(s, nfs_fail2(e, s->nfs, rc, "RENAME", s->tmp,
		    s->dst));
	return 0;
}

static int
nfs_expunge(struct bench_session *s, unsigned mbox, enum bench_sub sub,
    const struct bench_entry *en, struct bench_err *e)
{
	int rc = session_ready(s, e);

	if (rc == 0)
		rc = mbox_path(s->t, s->tmp, sizeof s->tmp, mbox,
		    sub_name(sub), en->name, e);
	if (rc < 0)
		return rc;
	rc = nfs_unlink(s->nfs, s->tmp);
	if (rc < 0)
		return failed(s, nfs_fail(e, s->nfs, rc, "REMOVE", s->tmp));
	return 0;
}

/* REMOVE every entry of |dir| (files only: we create no subdirectories
 * there), then RMDIR |dir|. A missing |dir| is fine. */
static int
empty_and_remove(struct bench_session *s, const char *dir,
    struct bench_err *e)
{
	struct nfsdir *d;
	struct nfsdirent *de;
	int n, rc = nfs_opendir(s->nfs, dir, &d);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return nfs_fail(e, s->nfs, rc, "READDIR", dir);
	while (rc == 0 && (de = nfs_readdir(s->nfs, d)) != NULL) {
		if (strcmp(de->name, ".") == 0 || strcmp(de->name, "..") == 0)
			continue;
		n = snprintf(s->tmp, sizeof s->tmp, "%s/%s", dir, de->name);
		if (n < 0 || (size_t)n >= sizeof s->tmp) {
			snprintf(e->what, sizeof e->what, "path of %.255s in "
			    "%.240s", de->name, dir);
			rc = -ENAMETOOLONG;
		} else if ((rc = nfs_unlink(s->nfs, s->tmp)) == -ENOENT) {
			rc = 0;
		} else if (rc < 0) {
			rc = nfs_fail(e, s->nfs, rc, "REMOVE", s->tmp);
		}
	}
	nfs_closedir(s->nfs, d);
	if (rc == 0 && (rc = nfs_rmdir(s->nfs, dir)) < 0 && rc != -ENOENT)
		return nfs_fail(e, s->nfs, rc, "RMDIR", dir);
	return rc == -ENOENT ? 0 : rc;
}

static int
nfs_cleanup_mailbox(struct bench_session *s, unsigned mbox,
    struct bench_err *e)
{
	size_t i;
	int rc = session_ready(s, e);

	for (i = 0; rc == 0 && i < sizeof subdirs / sizeof subdirs[0]; i++) {
		rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, subdirs[i],
		    NULL, e);
		if (rc == 0)
			rc = empty_and_remove(s, s->dst, e);
	}
	if (rc == 0)
		rc = mbox_path(s->t, s->dst, sizeof s->dst, mbox, NULL, NULL,
		    e);
	if (rc == 0 && (rc = nfs_rmdir(s->nfs, s->dst)) < 0 && rc != -ENOENT)
		rc = nfs_fail(e, s->nfs, rc, "RMDIR", s->dst);
	if (rc == -ENOENT)
		rc = 0;
	if (rc < 0)
		session_drop(s);
	return rc;
}

static int
nfs_close_target(struct bench_target *t, int keep, struct bench_err *e)
{
	struct nfs_context *nfs;
	int rc = 0;

	if (!keep) {
		rc = nfs_connect(t, &nfs, e);
		if (rc == 0) {
			rc = nfs_rmdir(nfs, t->base);
			if (rc < 0)
				rc = nfs_fail(e, nfs, rc, "RMDIR", t->base);
			nfs_destroy_context(nfs);
		}
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
	return rc;
}

const struct bench_target_ops bench_nfs_ops = {
	.scheme = "nfs://",
	.syntax = NFS_SYNTAX,
	.check = nfs_check,
	.open = nfs_open_target,
	.session_open = nfs_session_open,
	.session_close = nfs_session_close,
	.setup_mailbox = nfs_setup_mailbox,
	.deliver = nfs_deliver,
	.list = nfs_list,
	.read = nfs_read_msg,
	.seen = nfs_seen,
	.expunge = nfs_expunge,
	.cleanup_mailbox = nfs_cleanup_mailbox,
	.close = nfs_close_target,
};

#else /* !HAVE_LIBNFS */

const struct bench_target_ops bench_nfs_ops = {
	.scheme = "nfs://",
	.syntax = NFS_SYNTAX,
	.unavailable = "built without libnfs: nfs:// targets unavailable",
};

#endif /* HAVE_LIBNFS */
