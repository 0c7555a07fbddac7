/*
 * engine_util.c - synchronous test driver for the storage engine.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>

#include "eng.h"
#include "engine_util.h"
#include "mstproto.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *finished;		/* guarded by mu */

static void
on_done(void *arg, struct job *j)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	j->next = finished;
	finished = j;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* Wait for a specific job. */
static void
wait_for(struct job *j)
{
	struct job **pp;

	pthread_mutex_lock(&mu);
	for (;;) {
		for (pp = &finished; *pp && *pp != j; pp = &(*pp)->next)
			;
		if (*pp) {
			*pp = j->next;
			break;
		}
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
}

int
tfinished(struct job *j)
{
	struct job *f;
	int found = 0;

	pthread_mutex_lock(&mu);
	for (f = finished; f && !found; f = f->next)
		found = f == j;
	pthread_mutex_unlock(&mu);
	return found;
}

struct job *
twait(void)
{
	struct job *j;

	pthread_mutex_lock(&mu);
	while (finished == NULL)
		pthread_cond_wait(&cv, &mu);
	j = finished;
	finished = j->next;
	pthread_mutex_unlock(&mu);
	return j;
}

void
tconf(struct tengine *t, const char *dir)
{
	memset(t, 0, sizeof *t);
	snprintf(t->dir, sizeof t->dir, "%s", dir);
	t->ops = &engine_local;
	t->conf.data_dir = t->dir;
	t->conf.max_body = 64u << 20;
	t->conf.segment_size = 64u << 20;
	t->conf.checkpoint_bytes = 256u << 20;
	t->conf.reserve_bytes = 0;
	t->conf.readers = 2;
	t->conf.compact_percent = 50;
	t->conf.done = on_done;
	/* MST_TEST_PART_IDS=N: checkpoints in parts of N ids, so that
	 * every restart of a small store loads a manifest and its parts. */
	if (getenv("MST_TEST_PART_IDS"))
		t->conf.checkpoint_part_ids =
		    (unsigned)strtoul(getenv("MST_TEST_PART_IDS"), NULL, 10);
}

int
topen(struct tengine *t)
{
	return t->ops->open(&t->conf, &t->e);
}

void
tclose(struct tengine *t)
{
	if (t->e)
		t->ops->close(t->e);
	t->e = NULL;
}

static int
decode(struct job *j)
{
	const uint8_t *p = j->payload;
	size_t n = j->payload_len;

	switch (j->op) {
	case MST_OP_DELIVER:
		return mst_deliver_req_decode(&j->req.deliver, p, n);
	case MST_OP_STAGE:
		return mst_stage_req_decode(&j->req.stage, p, n);
	case MST_OP_COMMIT:
		return mst_commit_req_decode(&j->req.commit, p, n);
	case MST_OP_LIST:
		return mst_list_req_decode(&j->req.list, p, n);
	case MST_OP_STAT:
	case MST_OP_EXPUNGE:
		return mst_msg_ref_decode(&j->req.ref, p, n);
	case MST_OP_FETCH:
		return mst_fetch_req_decode(&j->req.fetch, p, n);
	case MST_OP_SETINFO:
		return mst_setinfo_req_decode(&j->req.setinfo, p, n);
	case MST_OP_MKDIR:
		return mst_mkdir_req_decode(&j->req.mkdir, p, n);
	case MST_OP_PUT:
		return mst_put_req_decode(&j->req.put, p, n);
	case MST_OP_GET:
		return mst_get_req_decode(&j->req.get, p, n);
	case MST_OP_RENAME:
		return mst_rename_req_decode(&j->req.rename, p, n);
	case MST_OP_SETATTR:
		return mst_setattr_req_decode(&j->req.setattr, p, n);
	case MST_OP_ADMIN:
		return mst_admin_req_decode(&j->req.admin, p, n);
	case MST_OP_GETATTR:
	case MST_OP_OPEN:
	case MST_OP_CLOSE:
		return mst_id_req_decode(&j->req.fid, p, n);
	case MST_OP_READ:
		return mst_read_req_decode(&j->req.read, p, n);
	case MST_OP_WRITE:
		return mst_write_req_decode(&j->req.write, p, n);
	case MST_OP_FSETATTR:
		return mst_fsetattr_req_decode(&j->req.fsetattr, p, n);
	case MST_OP_LINK:
		return mst_link_req_decode(&j->req.link, p, n);
	case ENG_OP_CLOSE_OWNER:
		return 0;
	default:
		return mst_path_req_decode(&j->req.path, p, n);
	}
}

struct job *
tbuild(struct tengine *t, unsigned op, const void *payload, size_t len,
    const void *body, size_t bodylen)
{
	struct job *j = calloc(1, sizeof *j);

	(void)t;
	if (j == NULL)
		abort();
	j->op = (uint8_t)op;
	j->max_frame = MST_FRAME_DEFAULT;
	j->payload = malloc(len ? len : 1);
	memcpy(j->payload, payload, len);
	j->payload_len = len;
	if (body) {
		j->body = malloc(bodylen ? bodylen : 1);
		memcpy(j->body, body, bodylen);
		j->body_len = bodylen;
	}
	if (decode(j) != 0)
		abort();	/* tests build valid requests */
	return j;
}

void
tsubmit(struct tengine *t, struct job *j)
{
	t->ops->submit(t->e, j);
}

void
tpause(struct tengine *t, struct job *first)
{
	size_t queued;

	pthread_rwlock_rdlock(&t->e->mu);
	tsubmit(t, first);
	do {			/* until the writer has taken |first| */
		usleep(1000);
		pthread_mutex_lock(&t->e->wq.mu);
		queued = t->e->wq.n;
		pthread_mutex_unlock(&t->e->wq.mu);
	} while (queued > 0);
}

void
tresume(struct tengine *t)
{
	pthread_rwlock_unlock(&t->e->mu);
}

struct job *
twait_for(struct job *j)
{
	wait_for(j);
	return j;
}

struct job *
trun(struct tengine *t, unsigned op, const void *payload, size_t len,
    const void *body, size_t bodylen)
{
	struct job *j = tbuild(t, op, payload, len, body, bodylen);

	tsubmit(t, j);
	wait_for(j);
	return j;
}

static int
status_of(struct job *j)
{
	int rc = j->status;

	job_free(j);
	return rc;
}

int
t_mkdir(struct tengine *t, const char *path)
{
	struct mst_mkdir_req m = { mst_str_of(path), 0700, 5000, 5000 };
	uint8_t buf[8192];
	int n = mst_mkdir_req_encode(&m, buf, sizeof buf);

	return status_of(trun(t, MST_OP_MKDIR, buf, (size_t)n, NULL, 0));
}

int
t_mkdirs(struct tengine *t, const char *mailbox)
{
	static const char *const sub[] = { "new", "cur", "tmp" };
	char path[4096];
	size_t i;
	int rc = t_mkdir(t, mailbox);

	for (i = 0; i < 3 && (rc == 0 || rc == -EEXIST); i++) {
		snprintf(path, sizeof path, "%s/%s", mailbox, sub[i]);
		rc = t_mkdir(t, path);
	}
	return rc == -EEXIST ? 0 : rc;
}

int
t_deliver(struct tengine *t, const char *mbox, unsigned sub,
    const char *name, const void *body, size_t len, const uint8_t *idem,
    uint64_t *id_out)
{
	struct mst_deliver_req d = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.sub = (uint8_t)sub, .name = mst_str_of(name),
		.checksum = mst_checksum(body, len), .body_size = len,
		.mode = 0600, .uid = 5000, .gid = 5000,
	};
	struct mst_attr_rep a;
	uint8_t buf[8192];
	struct job *j;
	int n, rc;

	if (idem)
		memcpy(d.idem, idem, MST_IDEM_LEN);
	else if (getrandom(d.idem, MST_IDEM_LEN, 0) != MST_IDEM_LEN)
		abort();
	n = mst_deliver_req_encode(&d, buf, sizeof buf);
	j = trun(t, MST_OP_DELIVER, buf, (size_t)n, body, len);
	rc = j->status;
	if (rc == 0 && id_out) {
		if (j->nframes != 1 ||
		    mst_attr_rep_decode(&a, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else
			*id_out = a.attr.id;
	}
	job_free(j);
	return rc;
}

static int
data_of(struct job *j, void *buf, size_t cap, size_t *len_out)
{
	struct mst_data_rep r;
	int rc = j->status;

	if (rc == 0) {
		if (j->nframes != 1 ||
		    mst_data_rep_decode(&r, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else if (r.data.len > cap)
			rc = -EMSGSIZE;
		else if (r.data.len == r.total_size &&
		    mst_checksum(r.data.p, r.data.len) != r.checksum)
			rc = -EBADMSG;
		else {
			memcpy(buf, r.data.p, r.data.len);
			*len_out = r.data.len;
		}
	}
	job_free(j);
	return rc;
}

int
t_fetch(struct tengine *t, const char *mbox, uint64_t id, void *buf,
    size_t cap, size_t *len_out)
{
	struct mst_fetch_req f = { mst_str_of(mbox), id, 0, (uint32_t)cap };
	uint8_t req[4200];
	int n = mst_fetch_req_encode(&f, req, sizeof req);

	return data_of(trun(t, MST_OP_FETCH, req, (size_t)n, NULL, 0), buf, cap,
	    len_out);
}

int
t_put(struct tengine *t, const char *path, const void *body, size_t len,
    int excl)
{
	struct mst_put_req p = { .path = mst_str_of(path),
		.flags = excl ? MST_PUT_EXCL : 0, .mode = 0600,
		.checksum = mst_checksum(body, len), .body_size = len };
	uint8_t buf[8192];
	int n = mst_put_req_encode(&p, buf, sizeof buf);

	return status_of(trun(t, MST_OP_PUT, buf, (size_t)n, body, len));
}

int
t_simple(struct tengine *t, unsigned op, const char *path)
{
	struct mst_path_req p = { mst_str_of(path) };
	uint8_t buf[4200];
	int n = mst_path_req_encode(&p, buf, sizeof buf);

	return status_of(trun(t, op, buf, (size_t)n, NULL, 0));
}

int
t_rename(struct tengine *t, const char *from, const char *to)
{
	struct mst_rename_req r = { mst_str_of(from), mst_str_of(to), 0 };
	uint8_t buf[8400];
	int n = mst_rename_req_encode(&r, buf, sizeof buf);

	return status_of(trun(t, MST_OP_RENAME, buf, (size_t)n, NULL, 0));
}

int
t_setinfo(struct tengine *t, const char *mbox, unsigned fs, const char *from,
    unsigned ts, const char *to)
{
	struct mst_setinfo_req s = { mst_str_of(mbox), mst_str_of(""),
		(uint8_t)fs, mst_str_of(from), (uint8_t)ts, mst_str_of(to), 0 };
	uint8_t buf[8400];
	int n = mst_setinfo_req_encode(&s, buf, sizeof buf);

	return status_of(trun(t, MST_OP_SETINFO, buf, (size_t)n, NULL, 0));
}

int
t_expunge(struct tengine *t, const char *mbox, unsigned sub, const char *name)
{
	struct mst_msg_ref m = { mst_str_of(mbox), mst_str_of(""), (uint8_t)sub,
		mst_str_of(name) };
	uint8_t buf[8400];
	int n = mst_msg_ref_encode(&m, buf, sizeof buf);

	return status_of(trun(t, MST_OP_EXPUNGE, buf, (size_t)n, NULL, 0));
}

/* The attributes of a one-frame attr_rep reply; frees |j|. */
static int
attr_of_job(struct job *j, struct mst_attr *out)
{
	struct mst_attr_rep a;
	int rc = j->status;

	if (rc == 0 && out) {
		if (j->nframes != 1 ||
		    mst_attr_rep_decode(&a, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else
			*out = a.attr;
	}
	job_free(j);
	return rc;
}

/* The object id of a one-frame attr_rep job (freed), or its error. */
static int
id_of_job(struct job *j, uint64_t *id_out)
{
	struct mst_attr_rep a;
	int rc = j->status;

	if (rc == 0 && id_out) {
		if (j->nframes != 1 ||
		    mst_attr_rep_decode(&a, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else
			*id_out = a.attr.id;
	}
	job_free(j);
	return rc;
}

int
t_stage(struct tengine *t, const char *mbox, const void *body, size_t len,
    const uint8_t *idem, uint64_t *id_out)
{
	struct mst_stage_req s = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.checksum = mst_checksum(body, len), .body_size = len,
		.mode = 0600, .uid = 5000, .gid = 5000,
	};
	uint8_t buf[8192];
	int n;

	memcpy(s.idem, idem, MST_IDEM_LEN);
	n = mst_stage_req_encode(&s, buf, sizeof buf);
	return id_of_job(trun(t, MST_OP_STAGE, buf, (size_t)n, body, len),
	    id_out);
}

int
t_commit(struct tengine *t, const char *mbox, unsigned sub,
    const char *name, const void *body, size_t len, const uint8_t *idem,
    uint64_t *id_out)
{
	struct mst_commit_req c = {
		.mailbox = mst_str_of(mbox), .folder = mst_str_of(""),
		.sub = (uint8_t)sub, .name = mst_str_of(name),
		.checksum = mst_checksum(body, len), .body_size = len,
		.mode = 0600, .uid = 5000, .gid = 5000,
	};
	uint8_t buf[8192];
	int n;

	memcpy(c.idem, idem, MST_IDEM_LEN);
	n = mst_commit_req_encode(&c, buf, sizeof buf);
	return id_of_job(trun(t, MST_OP_COMMIT, buf, (size_t)n, NULL, 0),
	    id_out);
}

int
t_lookup(struct tengine *t, const char *path, struct mst_attr *out)
{
	struct mst_path_req p = { mst_str_of(path) };
	uint8_t buf[4200];
	int n = mst_path_req_encode(&p, buf, sizeof buf);

	return attr_of_job(trun(t, MST_OP_LOOKUP, buf, (size_t)n, NULL, 0),
	    out);
}

int
t_getattr(struct tengine *t, uint64_t id, struct mst_attr *out)
{
	struct mst_id_req q = { id };
	uint8_t buf[16];
	int n = mst_id_req_encode(&q, buf, sizeof buf);

	return attr_of_job(trun(t, MST_OP_GETATTR, buf, (size_t)n, NULL, 0),
	    out);
}

int
t_write(struct tengine *t, uint64_t id, uint64_t off, unsigned flags,
    const void *data, size_t len, struct mst_attr *out)
{
	struct mst_write_req w = { .id = id, .offset = off, .flags = flags,
		.checksum = mst_checksum(data, len), .body_size = len };
	uint8_t buf[64];
	int n = mst_write_req_encode(&w, buf, sizeof buf);

	return attr_of_job(trun(t, MST_OP_WRITE, buf, (size_t)n, data, len),
	    out);
}

int
t_read(struct tengine *t, uint64_t id, uint64_t off, uint32_t len, void *out,
    size_t *got, uint64_t *total)
{
	struct mst_read_req q = { id, off, len };
	struct mst_data_rep r;
	uint8_t buf[32];
	int n = mst_read_req_encode(&q, buf, sizeof buf), rc;
	struct job *j = trun(t, MST_OP_READ, buf, (size_t)n, NULL, 0);

	rc = j->status;
	if (rc == 0) {
		if (j->nframes != 1 ||
		    mst_data_rep_decode(&r, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else if (r.data.len > len)
			rc = -EMSGSIZE;
		else if (mst_checksum(r.data.p, r.data.len) != r.checksum)
			rc = -EBADMSG;	/* READ: the sum of what it returns */
		else {
			memcpy(out, r.data.p, r.data.len);
			*got = r.data.len;
			if (total)
				*total = r.total_size;
		}
	}
	job_free(j);
	return rc;
}

int
t_fsetattr(struct tengine *t, const struct mst_fsetattr_req *s,
    struct mst_attr *out)
{
	uint8_t buf[64];
	int n = mst_fsetattr_req_encode(s, buf, sizeof buf);

	return attr_of_job(trun(t, MST_OP_FSETATTR, buf, (size_t)n, NULL, 0),
	    out);
}

int
t_setattr(struct tengine *t, const struct mst_setattr_req *s,
    struct mst_attr *out)
{
	uint8_t buf[4300];
	int n = mst_setattr_req_encode(s, buf, sizeof buf);

	return attr_of_job(trun(t, MST_OP_SETATTR, buf, (size_t)n, NULL, 0),
	    out);
}

int
t_link(struct tengine *t, uint64_t id, const char *path)
{
	struct mst_link_req l = { id, mst_str_of(path) };
	uint8_t buf[4200];
	int n = mst_link_req_encode(&l, buf, sizeof buf);

	return status_of(trun(t, MST_OP_LINK, buf, (size_t)n, NULL, 0));
}

/* OPEN, CLOSE and ENG_OP_CLOSE_OWNER as |owner|. */
int
t_ref(struct tengine *t, unsigned op, uint64_t id, uint64_t owner)
{
	struct mst_id_req q = { id };
	uint8_t buf[16];
	int n = mst_id_req_encode(&q, buf, sizeof buf);
	struct job *j = tbuild(t, op, buf, (size_t)n, NULL, 0);

	j->owner = owner;
	tsubmit(t, j);
	return status_of(twait_for(j));
}

int
t_admin(struct tengine *t, const char *cmd, char *out, size_t cap)
{
	struct mst_admin_req a = { mst_str_of(cmd), mst_str_of("") };
	struct mst_admin_rep r;
	uint8_t buf[256];
	int n = mst_admin_req_encode(&a, buf, sizeof buf), rc;
	struct job *j = trun(t, MST_OP_ADMIN, buf, (size_t)n, NULL, 0);

	rc = j->status;
	if (rc == 0 && out) {
		if (j->nframes != 1 ||
		    mst_admin_rep_decode(&r, j->frames[0].p, j->frames[0].len))
			rc = -EPROTO;
		else
			snprintf(out, cap, "%.*s", (int)r.text.len,
			    (const char *)r.text.p);
	}
	job_free(j);
	return rc;
}

struct sbuf {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sbuf *s, const char *line)
{
	size_t n = strlen(line);

	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2;
		s->p = realloc(s->p, s->cap);
		if (s->p == NULL)
			abort();
	}
	memcpy(s->p + s->len, line, n + 1);
	s->len += n;
}

static int
cmp_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
dump_dir(struct tengine *t, const char *path, struct sbuf *lines)
{
	struct mst_path_req p = { mst_str_of(path) };
	struct mst_list_rep lr;
	struct mst_list_entry en;
	char child[4200], line[4600];
	uint8_t buf[4200], body[65536];
	size_t i, off, blen;
	int n = mst_path_req_encode(&p, buf, sizeof buf);
	struct job *j = trun(t, MST_OP_READDIR, buf, (size_t)n, NULL, 0);

	for (i = 0; j->status == 0 && i < j->nframes; i++) {
		if (mst_list_rep_decode(&lr, j->frames[i].p, j->frames[i].len))
			abort();
		off = 0;
		while (mst_list_entry_next(&en, &lr, &off) == 1) {
			snprintf(child, sizeof child, "%s%s%.*s", path,
			    *path ? "/" : "", (int)en.name.len, en.name.p);
			snprintf(line, sizeof line, "%s t=%u id=%llu size=%llu "
			    "mode=%o uid=%u change=%llu mtime=%llu\n", child,
			    en.attr.type, (unsigned long long)en.attr.id,
			    (unsigned long long)(en.attr.type == MST_T_DIR ? 0 :
			    en.attr.size), en.attr.mode, en.attr.uid,
			    (unsigned long long)en.attr.change,
			    (unsigned long long)en.attr.mtime_ns);
			sb_add(lines, line);
			sb_add(lines, "\x1f");
			if (en.attr.type == MST_T_DIR) {
				dump_dir(t, child, lines);
			} else {
				struct mst_get_req g = { mst_str_of(child), 0,
					sizeof body };
				uint8_t q[4300];
				int qn = mst_get_req_encode(&g, q, sizeof q);
				int rc = data_of(trun(t, MST_OP_GET, q,
				    (size_t)qn, NULL, 0), body, sizeof body,
				    &blen);

				snprintf(line, sizeof line, "%s body rc=%d "
				    "sum=%016llx\n", child, rc, rc ? 0ull :
				    (unsigned long long)mst_checksum(body,
				    blen));
				sb_add(lines, line);
				sb_add(lines, "\x1f");
			}
		}
	}
	job_free(j);
}

char *
t_dump(struct tengine *t)
{
	struct sbuf lines = { 0 }, out = { 0 };
	char **v = NULL, *s, *save = NULL;
	size_t n = 0, i;

	sb_add(&lines, "");
	dump_dir(t, "", &lines);
	for (s = strtok_r(lines.p, "\x1f", &save); s;
	    s = strtok_r(NULL, "\x1f", &save)) {
		v = realloc(v, (n + 1) * sizeof *v);
		v[n++] = s;
	}
	if (n > 0)		/* an empty store: v is NULL */
		qsort(v, n, sizeof *v, cmp_lines);
	sb_add(&out, "");
	for (i = 0; i < n; i++)
		sb_add(&out, v[i]);
	free(v);
	free(lines.p);
	return out.p;
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Removes the tree at |dir|, a test's data directory or a copy of one. */
void
trm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
