/*
 * eng_base.c - what every operation of the local engine builds on:
 * reply frames (attributes, change counters, body ranges, framed by the
 * shared reply.c), notices,
 * name resolution, id allocation, and batch_add(), the one way a record
 * reaches the log and the index. Operations live above it (eng_ops.c
 * for the namespace, eng_file.c for ordinary files' contents); it calls
 * neither.
 *
 * Invariant: the writer is the only thread that changes the index, so it
 * reads the index without locking and takes the write lock only inside
 * batch_add() to apply a record (or the operation holds it across
 * several, with |b->locked|).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eng.h"
#include "log.h"
#include "reply.h"

#define PATHBUF (MST_PATH_MAX + 1)

int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
reply_attr(struct job *j, const struct node *n, const struct node *dir)
{
	struct mst_attr_rep r = { .dir_change = dir->change,
		.dir_mtime_ns = (uint64_t)dir->mtime_ns };

	index_attr(n, &r.attr);
	return reply_attr_rep(j, &r);
}

/* A file object's attributes with the dir fields of its first parent
 * (0 and 0 for an orphan, which has none). */
int
reply_fattr(struct job *j, const struct fobj *f)
{
	const struct node *dir = f->names ? index_parent(f->names) : NULL;
	struct mst_attr_rep r = { .dir_change = dir ? dir->change : 0,
		.dir_mtime_ns = dir ? (uint64_t)dir->mtime_ns : 0 };

	index_fattr(f, &r.attr);
	return reply_attr_rep(j, &r);
}

int
reply_change(struct job *j, const struct node *dir)
{
	return reply_change_rep(j, dir->change, (uint64_t)dir->mtime_ns);
}

int
notice(struct job *j, const struct node *dir, const char *name, size_t nlen,
    uint8_t ev, uint64_t id, uint64_t change)
{
	char path[PATHBUF], nm[MST_NAME_MAX + 1];

	if (index_path(dir, path, sizeof path) < 0 || nlen > MST_NAME_MAX)
		return 0;	/* cannot be named on the wire: nobody watches */
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';
	return job_add_notice(j, path, nm, ev, id, change);
}

/* MST_EV_CHANGE for every name of |f| but |skip|. */
int
notice_names(struct job *j, const struct fobj *f, const struct node *skip,
    uint64_t change)
{
	const struct node *n;
	char nb[MST_NAME_MAX];
	struct mst_str nm;
	int rc = 0;

	for (n = f->names; rc == 0 && n; n = n->link_next)
		if (n != skip) {
			nm = index_name(n, nb);
			rc = notice(j, index_parent(n), nm.p, nm.len,
			    MST_EV_CHANGE, f->id, change);
		}
	return rc;
}

/* The next object id, below the range the mount keeps for itself. */
int
alloc_id(struct engine *e, uint64_t *id_out)
{
	if (e->ix->next_id >= INDEX_ID_LIMIT) {
		log_err("object ids exhausted: next id %llu reaches the "
		    "mount's local range (2^56)",
		    (unsigned long long)e->ix->next_id);
		return -ENOSPC;
	}
	*id_out = e->ix->next_id;
	return 0;
}

/*
 * Can the batch take |nrec| more records with |bytes| of bodies? An
 * operation that writes several records asks first, so that it never
 * stops half way: -EAGAIN (wait for the next batch), -EFBIG (not even an
 * empty batch could), -ENOSPC.
 */
int
batch_room(struct engine *e, struct batch *b, int nrec, uint64_t bytes)
{
	(void)e;
	if (b->arena_cap - b->arena_used <
	    (size_t)nrec * (REC_HDR_LEN + REC_FIXED_MAX) ||
	    b->niov + 2 * nrec > b->cap ||
	    b->nscratch + nrec > b->scratch_cap)
		return b->nrec ? -EAGAIN : -EFBIG;
	if (b->pos - b->base + bytes > b->space)
		return -ENOSPC;
	return 0;
}

/* Resolve MAILBOX[/FOLDER]/new|cur. */
int
mail_dir(const struct index *ix, struct mst_str mailbox, struct mst_str folder,
    uint8_t sub, struct node **out)
{
	char path[PATHBUF];
	int n;

	n = snprintf(path, sizeof path, "%.*s%s%.*s%s%s", (int)mailbox.len,
	    mailbox.p, mailbox.len ? "/" : "", (int)folder.len, folder.p,
	    folder.len ? "/" : "", sub == MST_SUB_NEW ? "new" :
	    sub == ENG_SUB_TMP ? "tmp" : "cur");
	if (n < 0 || (size_t)n >= sizeof path)
		return -ENAMETOOLONG;
	return index_resolve(ix, (struct mst_str){ path, (uint16_t)n }, out);
}

/* Split PATH into its parent directory (resolved) and last name. */
int
parent_of(const struct index *ix, struct mst_str path, struct node **dir_out,
    struct mst_str *name_out)
{
	struct mst_str dp = { path.p, 0 };
	size_t i;
	int rc;

	if (path.len == 0)
		return -EBUSY;		/* the root */
	for (i = path.len; i > 0 && path.p[i - 1] != '/'; i--)
		;
	dp.len = (uint16_t)(i ? i - 1 : 0);
	name_out->p = path.p + i;
	name_out->len = (uint16_t)(path.len - i);
	rc = index_resolve(ix, dp, dir_out);
	if (rc == 0 && (*dir_out)->type != MST_T_DIR)
		rc = -ENOTDIR;
	return rc;
}

int
batch_add(struct engine *e, struct batch *b, struct rec *r, const void *body)
{
	size_t size = rec_has_body(r) ? r->size : 0;
	uint8_t *p = b->arena + b->arena_used;
	int len, rc;

	if (b->arena_cap - b->arena_used < REC_HDR_LEN + REC_FIXED_MAX ||
	    b->niov + 2 > b->cap)
		return -EAGAIN;		/* batch full: caller retries later */
	if (size && b->pos - b->base + size > b->space)
		return -ENOSPC;
	r->lsn = e->lsn + 1;
	len = rec_encode(r, body, p, REC_HDR_LEN + REC_FIXED_MAX);
	if (len < 0)
		return len;
	if (!b->locked)
		pthread_rwlock_wrlock(&e->mu);
	ckpt_note(e, r);
	rc = index_apply(e->ix, r, b->seg->no, b->pos + (uint64_t)len,
	    body);
	if (!b->locked)
		pthread_rwlock_unlock(&e->mu);
	if (rc < 0) {
		log_err("apply lsn %llu type %u: %s", (unsigned long long)r->lsn,
		    r->type, strerror(-rc));
		return rc == -EBADMSG ? -EIO : rc;
	}
	e->lsn = r->lsn;
	b->iov[b->niov++] = (struct iovec){ p, (size_t)len };
	if (size)
		b->iov[b->niov++] = (struct iovec){ (void *)body, size };
	b->arena_used += (size_t)len;
	b->pos += (uint64_t)len + size;
	b->nrec++;
	return 0;
}

/* Read a body range for FETCH/GET; the index lock is not held. */
int
reply_body(struct engine *e, unsigned view, struct job *j, struct seg *seg,
    uint64_t off, uint64_t size, uint64_t checksum, uint64_t from,
    uint32_t want, int range_sum)
{
	size_t room = j->max_frame - 16, n = 0;
	uint8_t *p;
	int rc;

	if (from < size)
		n = size - from < want ? (size_t)(size - from) : want;
	if (n > room)
		n = room;
	if (from == 0) {
		rc = body_verify(seg, off, size, checksum);
		if (rc < 0 && body_moved(e, view))
			return -EAGAIN;	/* the place was cut meanwhile */
		if (rc == -EIO)
			log_err("body at %s offset %llu: checksum mismatch: "
			    "refusing to serve it", seg ? seg->path : "?",
			    (unsigned long long)off);
		if (rc < 0)
			return rc;
	}
	p = malloc(16 + n);
	if (p == NULL)
		return -ENOMEM;
	rc = body_read(seg, off, from, p + 16, n);
	/* Checked after the read: the verified bytes and these may be
	 * the cut ones, or another record's written there since. */
	if (body_moved(e, view))
		rc = -EAGAIN;
	if (rc < 0) {
		free(p);
		return rc;
	}
	return reply_data_frame(j, p, n, size, checksum, range_sum);
}
