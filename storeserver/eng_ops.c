/*
 * eng_ops.c - what each namespace operation does to the local engine's
 * index and log, and the dispatch of every operation. Mutations run on
 * the writer thread (ops_mutate): validate against the index, build a
 * record, batch_add() it (log append + index apply), fill the reply and
 * notices. Reads run on reader threads (ops_read) under the index
 * rwlock, which they drop before touching a body. Ordinary files'
 * contents are eng_file.c's; the shared pieces are in eng_base.c, and
 * the reply framing every back-end shares in reply.c.
 *
 * Times follow ext4, from the writer's clock in each record: a create
 * sets all three of the new entry's (and the parent's mtime and ctime);
 * names coming and going change their parents' mtime and ctime and the
 * object's ctime. PUT is "create, or cut to nothing, then write".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eng.h"
#include "log.h"
#include "reply.h"
#include "spent.h"

static int
quota_ok(const struct index *ix, struct mst_str mailbox, uint64_t size)
{
	const struct mbox *m = index_mbox((struct index *)ix, mailbox, 0);

	if (m == NULL)
		return ix->quota_bytes == 0 || size <= ix->quota_bytes;
	if (m->quota_bytes && m->bytes + size > m->quota_bytes)
		return 0;
	if (m->quota_msgs && m->msgs + 1 > m->quota_msgs)
		return 0;
	return 1;
}

static int move_node(struct engine *e, struct batch *b, struct job *j,
    struct node *n, struct node *dir, struct mst_str name,
    struct node *target);
static int remove_node(struct engine *e, struct batch *b, struct job *j,
    struct node *n);

/*
 * Staged bodies (STAGE, COMMIT). A STAGE stores a message like a
 * DELIVER, durable in the same group commit, but as "tmp/STAGE_PREFIX
 * <idem in hex>" of its mailbox folder: no mount lists a tmp/ from the
 * store, so nobody sees it. COMMIT (or a DELIVER with the same id)
 * renames it to its name in new/ or cur/, a small record: that is all
 * that waits under the kernel's lock on the target directory. A body
 * that is never committed goes when the mount drops it (UNLINK) or, if
 * the mount died or failed over, when the store sweeps it once it is
 * older than engine_conf.stage_ttl (an hour, eng_stage.c): a COMMIT
 * after that gets ESTALE and the mount sends the whole DELIVER instead.
 *
 * Spent ids: once a delivered message is gone (expunged, unlinked,
 * renamed over), the index keeps its idempotency id for a while
 * (spent.h). A DELIVER, STAGE or COMMIT resent under it is answered like
 * the first delivery (its attributes, with nlink 0 and no folder
 * fields: the message is gone) and stores nothing: without that, a
 * resent COMMIT would get ESTALE and the mount's DELIVER under the same
 * id would store the message a second time.
 *
 * Crash safety comes from the records used: a staged body is a NEW
 * record of a message (replayed, checkpointed, relocated by compaction
 * like any other), its naming a RENAME; a COMMIT is answered only once
 * the RENAME is durable, like a DELIVER.
 */
#define STAGE_PREFIX	MST_STAGE_PREFIX

static int
is_staged(const struct node *n)
{
	const struct node *p = index_parent(n);
	char nb[MST_NAME_MAX];
	struct mst_str pn;

	if (n->type != MST_T_MSG || p == NULL)
		return 0;
	pn = index_name(p, nb);
	return pn.len == 3 && memcmp(pn.p, "tmp", 3) == 0;
}

static int
same_mbox(const struct node *n, struct mst_str mailbox)
{
	const char *name = index_msg_mbox(n)->name;

	return strlen(name) == mailbox.len &&
	    memcmp(name, mailbox.p, mailbox.len) == 0;
}

/* The answer to a resend under the spent id of a message gone since. */
static int
reply_spent(struct job *j, const struct spent_ent *s)
{
	struct mst_attr_rep r = { .attr = { .type = MST_T_MSG, .id = s->id,
		.size = s->size, .mode = s->mode, .uid = s->uid,
		.gid = s->gid, .nlink = 0, .mtime_ns = (uint64_t)s->mtime_ns,
		.ctime_ns = (uint64_t)s->gone_ns, .change = s->change,
		.atime_ns = (uint64_t)s->mtime_ns } };

	return reply_attr_rep(j, &r);
}

/* Give the staged body |n| its name |d|: one RENAME record. */
static int
commit_staged(struct engine *e, struct batch *b, struct job *j,
    struct node *n, const struct mst_commit_req *d)
{
	struct node *dir;
	int rc;

	if (n->size != d->body_size || n->checksum != d->checksum)
		return -EINVAL;		/* not the body that was staged */
	if (!same_mbox(n, d->mailbox))
		return -EXDEV;
	rc = mail_dir(e->ix, d->mailbox, d->folder, d->sub, &dir);
	if (rc < 0)
		return rc;
	if (index_lookup(e->ix, dir, d->name.p, d->name.len))
		return -EEXIST;
	return move_node(e, b, j, n, dir, d->name, NULL);
}

static int
do_deliver(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_deliver_req *d = &j->req.deliver;
	struct index *ix = e->ix;
	struct node *dir, *n = index_find_idem(ix, d->idem);
	struct rec r = { .type = REC_NEW, .ntype = MST_T_MSG };
	const struct spent_ent *s;
	int rc;

	if (n && is_staged(n)) {	/* staged under this id: name it */
		struct mst_commit_req c = { .mailbox = d->mailbox,
			.folder = d->folder, .sub = d->sub, .name = d->name,
			.checksum = d->checksum, .body_size = d->body_size };

		return commit_staged(e, b, j, n, &c);
	}
	if (n)				/* a retry: answer like the first */
		return reply_attr(j, n, index_parent(n));
	if ((s = spent_find(ix->spent, d->idem)) != NULL)
		return reply_spent(j, s);	/* a retry; gone since */
	rc = mail_dir(ix, d->mailbox, d->folder, d->sub, &dir);
	if (rc < 0)
		return rc;
	if (index_lookup(ix, dir, d->name.p, d->name.len))
		return -EEXIST;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	if (!quota_ok(ix, d->mailbox, j->body_len))
		return -EDQUOT;
	rc = alloc_id(e, &r.id);
	if (rc < 0)
		return rc;
	r.parent = dir->id;
	r.mtime_ns = now_ns();
	r.set_mtime_ns = (int64_t)d->mtime_ns;
	r.mode = d->mode;
	r.uid = d->uid;
	r.gid = d->gid;
	r.name = d->name;
	r.mailbox = d->mailbox;
	memcpy(r.idem, d->idem, MST_IDEM_LEN);
	r.checksum = d->checksum;
	r.size = j->body_len;
	rc = batch_add(e, b, &r, j->body);
	if (rc < 0)
		return rc;
	n = index_find_id(ix, r.id);
	rc = reply_attr(j, n, dir);
	return rc ? rc : notice(j, dir, r.name.p, r.name.len, MST_EV_ADD,
	    n->id, r.lsn);
}

/* RENAME the name |n| to |dir|/|name|, replacing |target| there. Shared
 * by SETINFO and RENAME once each has checked its own rules. */
static int
move_node(struct engine *e, struct batch *b, struct job *j, struct node *n,
    struct node *dir, struct mst_str name, struct node *target)
{
	struct rec r = { .type = REC_RENAME, .id = n->id,
		.from_parent = index_parent(n)->id, .parent = dir->id,
		.name = name, .replaced = target ? target->id : 0,
		.mtime_ns = now_ns() };
	struct node *from = index_parent(n);
	char old[MST_NAME_MAX + 1];
	size_t oldlen = index_name_copy(n, old);
	uint64_t id = n->id, tid = target ? target->id : 0;
	int rc;

	if (target && target->id == n->id)	/* two links of one file */
		return reply_attr(j, n, index_parent(n));
	r.from_name = (struct mst_str){ old, (uint16_t)oldlen };
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, dir, name.p, name.len);	/* may have moved */
	rc = reply_attr(j, n, dir);
	/* The replaced object lost a name (and its link count): a mount
	 * that holds it open learns that from its id. */
	if (rc == 0 && tid)
		rc = notice(j, dir, name.p, name.len, MST_EV_REMOVE, tid,
		    r.lsn);
	if (rc == 0)
		rc = notice(j, from, old, oldlen, MST_EV_REMOVE, id, r.lsn);
	if (rc == 0)
		rc = notice(j, dir, name.p, name.len, MST_EV_ADD, id, r.lsn);
	return rc;
}

static int
do_setinfo(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_setinfo_req *s = &j->req.setinfo;
	struct node *fd, *td, *n, *t;
	int rc;

	rc = mail_dir(e->ix, s->mailbox, s->folder, s->from_sub, &fd);
	if (rc == 0)
		rc = mail_dir(e->ix, s->mailbox, s->folder, s->to_sub, &td);
	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, fd, s->from_name.p, s->from_name.len);
	if (n == NULL)
		return -ENOENT;
	if (n->type == MST_T_DIR)
		return -EISDIR;
	t = index_lookup(e->ix, td, s->to_name.p, s->to_name.len);
	if (t == n)
		return reply_attr(j, n, td);
	if (t && (s->flags & MST_RN_NOREPLACE))
		return -EEXIST;
	if (t && t->type == MST_T_DIR)
		return -EISDIR;
	return move_node(e, b, j, n, td, s->to_name, t);
}

/* UNLINK one name; a file with other names or OPEN references lives on. */
static int
remove_node(struct engine *e, struct batch *b, struct job *j, struct node *n)
{
	struct node *dir = index_parent(n);
	struct rec r = { .type = REC_UNLINK, .id = n->id, .parent = dir->id,
		.mtime_ns = now_ns() };
	char name[MST_NAME_MAX + 1];
	size_t len = index_name_copy(n, name);
	uint64_t id = n->id;
	/* A file with other names survives: they see a new ctime. */
	struct fobj *f = n->type == MST_T_FILE && n->x.file->nlink > 1 ?
	    n->x.file : NULL;
	int rc;

	r.name = (struct mst_str){ name, (uint16_t)len };
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	rc = reply_change(j, dir);
	if (rc == 0)
		rc = notice(j, dir, name, len, MST_EV_REMOVE, id, r.lsn);
	if (rc == 0 && f)
		rc = notice_names(j, f, NULL, r.lsn);
	return rc;
}

/* COMMIT: only ever a staged body's name (ESTALE when it is gone, unless
 * it was committed and then expunged). */
static int
do_commit(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_commit_req *d = &j->req.commit;
	struct node *n = index_find_idem(e->ix, d->idem);
	const struct spent_ent *s;

	if (n == NULL && (s = spent_find(e->ix->spent, d->idem)) != NULL)
		return reply_spent(j, s);
	if (n == NULL)
		return -ESTALE;
	if (is_staged(n))
		return commit_staged(e, b, j, n, d);
	/* Committed already (a resend): answer like the first. */
	return reply_attr(j, n, index_parent(n));
}

static int
do_stage(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_stage_req *s = &j->req.stage;
	struct index *ix = e->ix;
	struct node *dir, *n = index_find_idem(ix, s->idem);
	struct rec r = { .type = REC_NEW, .ntype = MST_T_MSG };
	const struct spent_ent *sp;
	static const char hex[] = "0123456789abcdef";
	char name[sizeof STAGE_PREFIX + 2 * MST_IDEM_LEN];
	size_t i, k = sizeof STAGE_PREFIX - 1;
	int rc;

	if (n)				/* a resend: answer like the first */
		return reply_attr(j, n, index_parent(n));
	if ((sp = spent_find(ix->spent, s->idem)) != NULL)
		return reply_spent(j, sp);	/* committed, gone since */
	rc = mail_dir(ix, s->mailbox, s->folder, ENG_SUB_TMP, &dir);
	if (rc < 0)
		return rc;
	if (dir->type != MST_T_DIR)
		return -ENOTDIR;
	if (j->body_len > e->conf.max_body)
		return -EFBIG;
	if (!quota_ok(ix, s->mailbox, j->body_len))
		return -EDQUOT;
	memcpy(name, STAGE_PREFIX, k);
	for (i = 0; i < MST_IDEM_LEN; i++) {
		name[k++] = hex[s->idem[i] >> 4];
		name[k++] = hex[s->idem[i] & 15];
	}
	name[k] = '\0';
	if (index_lookup(ix, dir, name, k))
		return -EEXIST;		/* the id is in use */
	rc = alloc_id(e, &r.id);
	if (rc < 0)
		return rc;
	r.parent = dir->id;
	r.mtime_ns = now_ns();
	r.mode = s->mode;
	r.uid = s->uid;
	r.gid = s->gid;
	r.name = (struct mst_str){ name, (uint16_t)k };
	r.mailbox = s->mailbox;
	memcpy(r.idem, s->idem, MST_IDEM_LEN);
	r.checksum = s->checksum;
	r.size = j->body_len;
	rc = batch_add(e, b, &r, j->body);
	if (rc < 0)
		return rc;
	n = index_find_id(ix, r.id);
	stage_note(e, r.id, r.mtime_ns);
	/* No notice: nobody lists a tmp/ from the store. */
	return reply_attr(j, n, dir);
}

static int
do_expunge(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_msg_ref *m = &j->req.ref;
	struct node *dir, *n;
	int rc = mail_dir(e->ix, m->mailbox, m->folder, m->sub, &dir);

	if (rc < 0)
		return rc;
	n = index_lookup(e->ix, dir, m->name.p, m->name.len);
	if (n == NULL)
		return -ENOENT;
	if (n->type == MST_T_DIR)
		return -EISDIR;
	return remove_node(e, b, j, n);
}

static int
do_mkdir(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_mkdir_req *m = &j->req.mkdir;
	struct rec r = { .type = REC_NEW, .ntype = MST_T_DIR,
		.mode = m->mode, .uid = m->uid, .gid = m->gid,
		.mtime_ns = now_ns() };
	struct node *dir, *n;
	int rc = parent_of(e->ix, m->path, &dir, &r.name);

	if (rc < 0)
		return rc;
	if (index_lookup(e->ix, dir, r.name.p, r.name.len))
		return -EEXIST;
	rc = alloc_id(e, &r.id);
	if (rc < 0)
		return rc;
	r.parent = dir->id;
	rc = batch_add(e, b, &r, NULL);
	if (rc < 0)
		return rc;
	n = index_find_id(e->ix, r.id);
	rc = reply_attr(j, n, dir);
	return rc ? rc : notice(j, dir, r.name.p, r.name.len, MST_EV_ADD,
	    n->id, r.lsn);
}

static int
do_remove_path(struct engine *e, struct batch *b, struct job *j, int want_dir)
{
	struct node *n;
	int rc = index_resolve(e->ix, j->req.path.path, &n);

	if (rc < 0)
		return rc;
	if (n == e->ix->root)
		return -EBUSY;
	if (want_dir && n->type != MST_T_DIR)
		return -ENOTDIR;
	if (!want_dir && n->type == MST_T_DIR)
		return -EISDIR;
	if (want_dir && n->x.dir->nchildren)
		return -ENOTEMPTY;
	return remove_node(e, b, j, n);
}

static int
do_setattr(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_setattr_req *s = &j->req.setattr;
	struct mst_fsetattr_req f = { .valid = s->valid & MST_SA_ALL,
		.mode = s->mode, .uid = s->uid, .gid = s->gid,
		.size = s->size, .mtime_ns = s->mtime_ns };
	struct node *n;
	int rc = index_resolve(e->ix, s->path, &n);

	if (rc < 0)
		return rc;
	if (s->valid & ~MST_SA_ALL)
		return -EINVAL;
	return file_set_attrs(e, b, j, n, n->type == MST_T_FILE ?
	    n->x.file : NULL, &f);
}

/* PUT: create the file (or cut an existing one to nothing), then write
 * the body as blocks; all its records go in one batch. */
static int
do_put(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_put_req *p = &j->req.put;
	struct rec r = { .type = REC_NEW, .ntype = MST_T_FILE,
		.mode = p->mode, .uid = p->uid, .gid = p->gid,
		.mtime_ns = now_ns() };
	struct mst_fsetattr_req a = { .valid = MST_SA_SIZE, .size = 0,
		.mtime_ns = p->mtime_ns };
	uint64_t len = j->body_len, lsn;
	struct wplan *w = NULL;
	struct node *dir, *n;
	struct fobj *f;
	int rc = parent_of(e->ix, p->path, &dir, &r.name);

	if (rc < 0)
		return rc;
	if (len > e->conf.max_body)
		return -EFBIG;
	n = index_lookup(e->ix, dir, r.name.p, r.name.len);
	if (n && (p->flags & MST_PUT_EXCL))
		return -EEXIST;
	if (n && n->type == MST_T_DIR)
		return -EISDIR;
	if (n && n->type == MST_T_MSG)
		return -EPERM;		/* message bodies are immutable */
	if (n == NULL) {
		rc = alloc_id(e, &r.id);
		if (rc < 0)
			return rc;
	}
	rc = file_write_room(e, b, 0, len, 1 + (p->mtime_ns != 0));
	if (rc == 0 && len)
		rc = file_write_prepare(e, b, NULL, 0, j->body, len, &w);
	if (rc < 0)
		return rc;
	/* Readers see the old contents or the new, never the file cut to
	 * nothing in between: the records go in under one hold of the
	 * lock, their bodies built beforehand. */
	pthread_rwlock_wrlock(&e->mu);
	b->locked = 1;
	if (n) {
		f = n->x.file;
		rc = file_attr_record(e, b, f->id, MST_SA_SIZE, &a, &lsn);
	} else {
		r.parent = dir->id;
		r.checksum = mst_checksum("", 0);	/* an empty body */
		rc = batch_add(e, b, &r, NULL);
		f = index_find_file(e->ix, r.id);
		lsn = r.lsn;
	}
	if (rc == 0 && w)
		rc = file_write_apply(e, b, f, w, r.mtime_ns, &lsn);
	if (rc == 0 && p->mtime_ns) {
		a.valid = MST_SA_MTIME;
		rc = file_attr_record(e, b, f->id, MST_SA_MTIME, &a, &lsn);
	}
	b->locked = 0;
	pthread_rwlock_unlock(&e->mu);
	file_write_free(w);
	if (rc < 0)
		return rc;
	rc = reply_attr(j, n ? n : f->names, dir);
	if (rc == 0 && n)
		rc = notice_names(j, f, NULL, lsn);
	if (rc == 0 && n == NULL)
		rc = notice(j, dir, r.name.p, r.name.len, MST_EV_ADD, f->id,
		    lsn);
	return rc;
}

static int
do_rename(struct engine *e, struct batch *b, struct job *j)
{
	const struct mst_rename_req *q = &j->req.rename;
	struct node *n, *dir, *t, *p;
	struct mst_str name;
	int rc = index_resolve(e->ix, q->from, &n);

	if (rc == 0)
		rc = parent_of(e->ix, q->to, &dir, &name);
	if (rc < 0)
		return rc;
	if (n == e->ix->root)
		return -EBUSY;
	t = index_lookup(e->ix, dir, name.p, name.len);
	if (t == n)
		return reply_attr(j, n, dir);
	if (t && (q->flags & MST_RN_NOREPLACE))
		return -EEXIST;
	if (n->type == MST_T_DIR) {
		for (p = dir; p; p = index_parent(p))
			if (p == n)
				return -EINVAL;
		if (t && t->type != MST_T_DIR)
			return -ENOTDIR;
		if (t && t->x.dir->nchildren)
			return -ENOTEMPTY;
	} else if (t && t->type == MST_T_DIR) {
		return -EISDIR;
	}
	return move_node(e, b, j, n, dir, name, t);
}

void
ops_mutate(struct engine *e, struct batch *b, struct job *j)
{
	int rc;

	switch (j->op) {
	case MST_OP_WRITE:
		rc = file_write(e, b, j);
		break;
	case MST_OP_FSETATTR:
		rc = file_fsetattr(e, b, j);
		break;
	case MST_OP_LINK:
		rc = file_link(e, b, j);
		break;
	case MST_OP_OPEN:
		rc = file_open(e, j);
		break;
	case MST_OP_CLOSE:
		rc = file_close(e, j);
		break;
	case ENG_OP_CLOSE_OWNER:
		file_close_owner(e, j->owner);
		rc = 0;
		break;
	case MST_OP_DELIVER:
		rc = do_deliver(e, b, j);
		break;
	case MST_OP_STAGE:
		rc = do_stage(e, b, j);
		break;
	case MST_OP_COMMIT:
		rc = do_commit(e, b, j);
		break;
	case MST_OP_SETINFO:
		rc = do_setinfo(e, b, j);
		break;
	case MST_OP_EXPUNGE:
		rc = do_expunge(e, b, j);
		break;
	case MST_OP_MKDIR:
		rc = do_mkdir(e, b, j);
		break;
	case MST_OP_RMDIR:
		rc = do_remove_path(e, b, j, 1);
		break;
	case MST_OP_UNLINK:
		rc = do_remove_path(e, b, j, 0);
		break;
	case MST_OP_PUT:
		rc = do_put(e, b, j);
		break;
	case MST_OP_RENAME:
		rc = do_rename(e, b, j);
		break;
	case MST_OP_SETATTR:
		rc = do_setattr(e, b, j);
		break;
	default:
		rc = -EOPNOTSUPP;
	}
	j->status = rc;
}

/* --- reads --- */

/*
 * A delta since |since| holds every entry changed after it and every
 * removal after it that the tombs still know. Otherwise the listing is
 * full: a since below the tomb floor (removals forgotten), below the
 * epoch's floor (from before a crash or a roll back: it may name a
 * state the store lost, eng_epoch.c), or above the store's counter (not
 * one of this store's numbers).
 */
static int
list_dir(const struct engine *e, struct job *j, const struct node *dir,
    uint64_t since)
{
	struct lister l;
	struct mst_list_entry en;
	const struct node *c;
	const struct tomb *t;
	char nb[MST_NAME_MAX];
	unsigned i;

	if (dir->type != MST_T_DIR)
		return -ENOTDIR;
	if (since < dir->x.dir->tomb_floor || since < e->epoch.floor ||
	    since > e->ix->lsn)
		since = 0;
	lister_init(&l, j, epoch_counter(e, dir->change),
	    (uint64_t)dir->mtime_ns, since == 0 ? MST_LIST_FULL : 0);
	for (c = dir->x.dir->first; c; c = index_next(c)) {
		if (index_change(c) <= since)
			continue;
		en.kind = MST_LE_PRESENT;
		en.name = index_name(c, nb);
		index_attr(c, &en.attr);
		lister_add(&l, &en);
	}
	for (i = 0; since && dir->x.dir->tombs && i < INDEX_TOMBS; i++) {
		t = &dir->x.dir->tombs[i];
		if (t->change == 0 || t->change <= since)
			continue;
		memset(&en, 0, sizeof en);
		en.kind = MST_LE_REMOVED;
		en.name = index_tomb_name(t, nb);
		en.attr.type = t->type;
		en.attr.id = t->id;
		en.attr.change = t->change;
		lister_add(&l, &en);
	}
	return lister_finish(&l);
}

static int
read_locked(struct engine *e, struct job *j, struct node **body_out,
    struct fobj **file_out)
{
	struct index *ix = e->ix;
	struct node *n, *dir;
	int rc;

	*body_out = NULL;
	*file_out = NULL;
	switch (j->op) {
	case MST_OP_LIST:
		rc = mail_dir(ix, j->req.list.mailbox, j->req.list.folder,
		    j->req.list.sub, &dir);
		return rc ? rc : list_dir(e, j, dir, j->req.list.since);
	case MST_OP_READDIR:
		rc = index_resolve(ix, j->req.path.path, &dir);
		return rc ? rc : list_dir(e, j, dir, 0);
	case MST_OP_STAT:
		rc = mail_dir(ix, j->req.ref.mailbox, j->req.ref.folder,
		    j->req.ref.sub, &dir);
		if (rc < 0)
			return rc;
		n = index_lookup(ix, dir, j->req.ref.name.p,
		    j->req.ref.name.len);
		return n ? reply_attr(j, n, dir) : -ENOENT;
	case MST_OP_LOOKUP:
		rc = index_resolve(ix, j->req.path.path, &n);
		return rc ? rc : reply_attr(j, n, index_dir_of(n));
	case MST_OP_FETCH:
		*file_out = index_find_file(ix, j->req.fetch.id);
		if (*file_out)
			return 0;
		n = index_find_id(ix, j->req.fetch.id);
		if (n == NULL)
			return -ENOENT;
		*body_out = n;
		return n->type == MST_T_DIR ? -EISDIR : 0;
	case MST_OP_GET:
		rc = index_resolve(ix, j->req.get.path, &n);
		if (rc == 0 && n->type == MST_T_DIR)
			rc = -EISDIR;
		if (rc == 0 && n->type == MST_T_FILE)
			*file_out = n->x.file;
		else
			*body_out = rc ? NULL : n;
		return rc;
	case MST_OP_WATCH:
		rc = index_resolve(ix, j->req.path.path, &n);
		if (rc == 0 && n->type != MST_T_DIR)
			rc = -ENOTDIR;
		return rc ? rc : reply_watch_rep(j, epoch_counter(e,
		    n->change));
	}
	return -EOPNOTSUPP;
}

static int
do_statfs(struct engine *e, struct job *j)
{
	struct mst_statfs_rep r = { .max_body = e->conf.max_body,
		.name_max = MST_NAME_MAX };
	struct mbox *m;
	uint64_t freeb;
	int rc;

	rc = e->media->space(e, &r.bytes_total, &freeb);
	if (rc < 0)
		return rc;
	r.bytes_free = freeb > e->conf.reserve_bytes ?
	    freeb - e->conf.reserve_bytes : 0;
	pthread_rwlock_rdlock(&e->mu);
	r.files_total = e->ix->nodes + r.bytes_free / 4096;
	r.files_free = r.bytes_free / 4096;
	m = index_mbox(e->ix, j->req.path.path, 0);
	if (m) {
		r.quota_bytes = m->quota_bytes;
		r.used_bytes = m->bytes;
		r.quota_msgs = m->quota_msgs;
		r.used_msgs = m->msgs;
	} else {	/* empty, or no mailbox: what a delivery would get */
		r.quota_bytes = e->ix->quota_bytes;
		r.quota_msgs = e->ix->quota_msgs;
	}
	pthread_rwlock_unlock(&e->mu);
	return reply_statfs_rep(j, &r);
}

/*
 * LOOKUP, STAT and GETATTR answered on the network layer's thread
 * (engine_ops.try_now): a look in the index, no body and no I/O. A
 * reader thread would cost two thread hand-offs (the queue, then the
 * completion back to the loop), which on a busy host take more CPU than
 * the look itself; Dovecot's sessions send several of these per
 * message. Only if the index lock is free at once: while the writer
 * holds or waits for it, the job goes to a reader as before, so the
 * loop never waits. What they see is what a reader would: the index,
 * changes included as soon as applied (see engine_local.c).
 */
int
ops_try_now(struct engine *e, struct job *j)
{
	struct node *n, *dir;
	int rc;

	if (j->op != MST_OP_LOOKUP && j->op != MST_OP_STAT &&
	    j->op != MST_OP_GETATTR)
		return 0;
	if (pthread_rwlock_tryrdlock(&e->mu) != 0)
		return 0;
	j->status = 0;
	j->kind = JK_OP;
	switch (j->op) {
	case MST_OP_LOOKUP:
		rc = index_resolve(e->ix, j->req.path.path, &n);
		if (rc == 0)
			rc = reply_attr(j, n, index_dir_of(n));
		break;
	case MST_OP_STAT:
		rc = mail_dir(e->ix, j->req.ref.mailbox, j->req.ref.folder,
		    j->req.ref.sub, &dir);
		if (rc == 0) {
			n = index_lookup(e->ix, dir, j->req.ref.name.p,
			    j->req.ref.name.len);
			rc = n ? reply_attr(j, n, dir) : -ENOENT;
		}
		break;
	default:		/* MST_OP_GETATTR */
		rc = file_getattr_locked(e, j);
		break;
	}
	pthread_rwlock_unlock(&e->mu);
	j->status = rc;
	return 1;
}

void
ops_read(struct engine *e, struct job *j)
{
	struct node *n;
	struct fobj *f;
	struct seg *seg;
	uint64_t off, size, sum, from;
	uint32_t want;
	unsigned view;
	int rc, tries = 0;

	if (j->op == MST_OP_STATFS) {
		j->status = do_statfs(e, j);
		return;
	}
	if (j->op == MST_OP_GETATTR) {
		j->status = file_getattr(e, j);
		return;
	}
	if (j->op == MST_OP_READ) {
		j->status = file_read(e, j);
		return;
	}
	if (j->op == MST_OP_ADMIN) {
		admin_run(e, j);
		return;
	}
	from = j->op == MST_OP_FETCH ? j->req.fetch.offset :
	    j->op == MST_OP_GET ? j->req.get.offset : 0;
	want = j->op == MST_OP_FETCH ? j->req.fetch.length :
	    j->op == MST_OP_GET ? j->req.get.length : 0;
	for (;;) {
		pthread_rwlock_rdlock(&e->mu);
		view = body_view(e);
		rc = read_locked(e, j, &n, &f);
		if (rc == 0 && f) {
			j->status = file_reply_data(e, j, f, from, want, 1);
			return;
		}
		if (rc < 0 || n == NULL) {
			pthread_rwlock_unlock(&e->mu);
			break;
		}
		seg = seg_get(e, n->seg);	/* pinned past the unlock */
		off = n->off;
		size = n->size;
		sum = n->checksum;
		pthread_rwlock_unlock(&e->mu);
		rc = body_wait(e, seg, off + size, view);
		if (rc == 0)
			rc = reply_body(e, view, j, seg, off, size, sum, from,
			    want, 0);
		seg_put(seg);
		/* A roll back cut the place: where is the body now? */
		if (rc != -EAGAIN || ++tries == BODY_TRIES)
			break;
	}
	j->status = rc == -EAGAIN ? -EIO : rc;
}
