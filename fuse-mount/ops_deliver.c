/*
 * ops_deliver.c - the operations that make a delivery: link() or
 * rename() of a tmp/ file into new/ or cur/ is one DELIVER carrying the
 * whole body, its checksum and a fresh idempotency id, answered only once
 * the store has made it durable (a retry after a reconnection reuses the
 * id, so the message is stored once). Renames within new/ and cur/ of one
 * folder are SETINFO; other renames are RENAME. A hard link of an
 * ordinary file is one LINK in the store; a link of a message into
 * another folder gets EXDEV, which Maildir writers (Dovecot's COPY)
 * answer by copying.
 *
 * The body goes out from the tmp/ file's own buffer (memory, or a
 * mapping of its spool file), not from a copy: the buffer is pinned
 * (fbuf_pin) from before the DELIVER is encoded until its answer is in,
 * and a write to the file meanwhile fails with ETXTBSY.
 *
 * One busy mailbox: the kernel holds the target directory's lock for
 * the whole link() or rename(), so deliveries into one new/ pass one at
 * a time. To keep that short, when other deliveries are under way in
 * the same tmp/, fsync(2) of a tmp/ file already STAGEs its body in the
 * store (durable, in a group commit shared with every
 * other writer, under no directory lock), and the link() or rename()
 * then only COMMITs the name: a small record, one round trip and one
 * commit with no body. The delivery is still acknowledged only once its
 * name is durable. A staged body fits the file while the file's
 * contents (fbuf gen), mode and owner are those it was staged with;
 * otherwise, and whenever the store lacks it, the whole DELIVER goes.
 *
 * One writer, large messages: a body of SPOOL_CHUNK bytes or more in a
 * quiet mailbox, written while no other file of the mount is open for
 * writing, travels while it is being written. After the kernel has
 * its answer to a WRITE, the thread that served it SPOOLs what the file
 * holds past its last SPOOL, in pieces of SPOOL_CHUNK, while the writer
 * goes on writing (mstore-protocol(7), SPOOL). The store keeps them in
 * memory only; the link() or rename() sends the rest and a COMMIT of the
 * same id, which the store runs as a DELIVER of the spooled bytes,
 * checked against the whole body's size and checksum and answered once
 * durable. Anything else (a SPOOL that failed, a reconnection, a file
 * changed below what was sent) ends in EINVAL or ESTALE for that COMMIT,
 * and the whole DELIVER goes, as with a staged body. A spool is a struct
 * stage (|spooled|) on the minode; one thread at a time sends it
 * (|sending|, waited for on m->spool_cv).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mount.h"
#include "store.h"

/* Pieces of a spooled body; smaller bodies travel in the DELIVER. */
#define SPOOL_CHUNK	(256u << 10)

/* Encode a DELIVER of |b| as |dir|/|name| into |head| and map its body
 * (*body_out; body_done once answered). |b| is pinned by the caller.
 * |idem|: the idempotency id, or NULL for a fresh one. Returns the
 * head's length. */
static int
deliver_encode_id(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, const struct mst_attr *sa, const uint8_t *idem,
    uint8_t *head, size_t cap, const uint8_t **body_out)
{
	char dpath[MST_PATH_MAX + 1];
	unsigned sub;
	int rc;

	pthread_mutex_lock(&m->mu);
	rc = inode_path(dir, dpath, sizeof dpath);
	sub = dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	return store_deliver_encode_id(dpath, sub, name, b, sa, idem, head,
	    cap, body_out);
}

/* The DELIVER that sent |b|'s view |p| is answered (or was never sent:
 * then |p| may be NULL, nothing was mapped). */
static void
body_done(struct mount *m, struct fbuf *b, const uint8_t *p)
{
	if (p != NULL)
		fbuf_unmap(b, p);
	pthread_mutex_lock(&m->mu);
	fbuf_unpin(b);
	pthread_mutex_unlock(&m->mu);
}

/* A delivery that never went out: give up its pin and reference. */
static void
body_done_close(struct mount *m, struct minode *n)
{
	pthread_mutex_lock(&m->mu);
	fbuf_unpin(n->buf);
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
}

/* The store's answer to a DELIVER: the new entry joins the folder cache
 * and the directory's mtime moves on. */
static int
deliver_finish(struct mount *m, struct minode *dir, const char *name,
    const struct mreply *r, struct mst_attr *attr_out)
{
	struct mst_attr_rep ar;
	int rc = r->status;

	if (rc == 0)
		rc = attr_from(r, &ar);
	if (rc < 0)
		return rc;
	*attr_out = ar.attr;
	pthread_mutex_lock(&m->mu);
	folder_put(dir->folder, name, &ar.attr);
	folder_touch(dir, ar.dir_mtime_ns);
	pthread_mutex_unlock(&m->mu);
	inval_queue(m, dir->ino, NULL);	/* the kernel's cached dir mtime */
	return 0;
}

int
do_deliver(struct mount *m, struct minode *dir, const char *name,
    struct fbuf *b, mode_t mode, uid_t uid, gid_t gid,
    struct mst_attr *attr_out)
{
	struct mst_attr sa = { .mode = mode, .uid = uid, .gid = gid };
	uint8_t head[2 * MST_PATH_MAX + 128];
	const uint8_t *p = NULL;
	struct mreply r;
	int rc, len;

	pthread_mutex_lock(&m->mu);
	fbuf_pin(b);
	pthread_mutex_unlock(&m->mu);
	len = deliver_encode_id(m, dir, name, b, &sa, NULL, head, sizeof head,
	    &p);
	if (len < 0) {
		body_done(m, b, NULL);
		return len;
	}
	rc = store_deliver(m, head, (size_t)len, p, (size_t)b->size, &r);
	body_done(m, b, p);
	if (rc == 0)
		rc = deliver_finish(m, dir, name, &r, attr_out);
	mreply_free(&r);
	return rc;
}

/* --- staged bodies (STAGE at fsync, COMMIT at link or rename) --- */

/*
 * Smallest body worth staging. Staging doubles the store's requests and
 * records for a message and saves, under the lock, only the body's
 * transfer, checksum and write: for 4 KiB that is far less than the
 * round trip and commit that remain, and with 32 writers into one
 * mailbox on 2 cores 4 KiB bodies went through at 0.2-1.0 of the rate
 * without staging, 64 KiB ones at 0.5-3.0 (issue12-progress.md).
 */
#define STAGE_MIN	(64u << 10)

/* A tmp/ file's body, staged in the store under |idem|; or, with
 * |spooled|, SPOOLed to the connection up to |sent|. */
struct stage {
	uint8_t idem[MST_IDEM_LEN];
	uint64_t gen;		/* the fbuf's contents it holds */
	uint64_t size, checksum;
	uint32_t mode, uid, gid;
	int spooled;		/* a spool, not a staged body */
	uint64_t sent;		/* spool: bytes sent, in order */
	int sending;		/* spool: a thread sends it (mu) */
	int broken;		/* spool: a SPOOL failed: not committed */
	int dropped;		/* spool: taken while sending: the sender
				   drops and frees it */
	char dpath[];		/* the tmp/ directory it was staged from */
};

/* mu held. A spool that a thread is sending stays with that thread,
 * which drops it (|dropped|): NULL is returned then. */
struct stage *
stage_take(struct minode *n)
{
	struct stage *st = n->stage;

	n->stage = NULL;
	if (st && st->spooled && st->sending) {
		st->dropped = 1;
		return NULL;
	}
	return st;
}

static void
dropped(void *arg, struct mreply *r)
{
	(void)arg;
	mreply_free(r);		/* ENOENT: reclaimed or committed already */
}

void
stage_drop(struct mount *m, struct stage *st)
{
	char path[MST_PATH_MAX + 1];
	struct mst_str mb, folder;
	size_t k;
	int i, n;

	if (st == NULL)
		return;
	if (st->spooled) {
		/* An empty SPOOL at offset 0 frees it in the store's memory
		 * (best effort: the connection's end frees it too). */
		(void)inode_classify(NULL, st->dpath, &mb, &folder);
		(void)store_spool_async(m, mb, st->idem, 0, NULL, 0, dropped,
		    NULL);
		free(st);
		return;
	}
	n = snprintf(path, sizeof path, "%s/%s", st->dpath, MST_STAGE_PREFIX);
	k = (size_t)n;
	for (i = 0; k + 2 < sizeof path && i < (int)MST_IDEM_LEN; i++)
		k += (size_t)snprintf(path + k, sizeof path - k, "%02x",
		    st->idem[i]);
	(void)inode_classify(NULL, st->dpath, &mb, &folder);
	/* Best effort: what is left is reclaimed by the store in time
	 * (mstored(8), "Staged bodies"). */
	if (k < sizeof path)
		(void)store_unlink_mb_async(m, mb, path, dropped, NULL);
	free(st);
}

/* Does |st| still hold |b|'s contents with |a|'s mode and owner? */
static int
stage_fits(const struct stage *st, const struct fbuf *b,
    const struct mst_attr *a)
{
	return st->gen == b->gen && st->size == b->size &&
	    st->mode == (a->mode & 07777) && st->uid == a->uid &&
	    st->gid == a->gid;
}

void
stage_tmp(struct mount *m, struct minode *n)
{
	char dpath[MST_PATH_MAX + 1];
	struct mst_stage_req q = { 0 };
	struct stage *st = NULL, *old;
	const uint8_t *p = NULL;
	struct fbuf *b;
	struct mreply r;
	size_t dlen;
	int rc;

	pthread_mutex_lock(&m->mu);
	b = n->buf;
	/* Only in a busy mailbox (another delivery under way in the same
	 * tmp/): there the link() waits for the others' under the kernel's
	 * lock, and a COMMIT is shorter than a DELIVER. A lone writer
	 * would only pay a second round trip and commit. And only a body
	 * of STAGE_MIN bytes or more. Never one the kernel writes itself
	 * (passthrough): a write after the STAGE that kept its size could
	 * go unseen, and a stale body be committed. */
	if (!n->local || n->unlinked || b == NULL || b->bid > 0 ||
	    b->size < STAGE_MIN ||
	    n->parent == NULL || n->parent->dkind != DK_TMP ||
	    n->parent->nlocal < 2 ||
	    (n->stage && n->stage->spooled && !n->stage->broken) ||
	    (n->stage && !n->stage->spooled &&
	    stage_fits(n->stage, b, &n->attr)) ||
	    inode_path(n->parent, dpath, sizeof dpath) < 0) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	old = stage_take(n);
	fbuf_pin(b);		/* unchanged until the STAGE is answered */
	q.mode = n->attr.mode & 07777;
	q.uid = n->attr.uid;
	q.gid = n->attr.gid;
	pthread_mutex_unlock(&m->mu);
	stage_drop(m, old);	/* the file changed since */
	(void)inode_classify(NULL, dpath, &q.mailbox, &q.folder);
	if (!store_stages(m, q.mailbox))
		goto out;
	dlen = strlen(dpath);
	st = calloc(1, sizeof *st + dlen + 1);
	if (st == NULL ||
	    getrandom(q.idem, sizeof q.idem, 0) != sizeof q.idem ||
	    fbuf_map(b, &p) < 0) {
		free(st);
		st = NULL;
		goto out;
	}
	q.body_size = b->size;
	q.checksum = mst_checksum(p, (size_t)b->size);
	rc = store_stage(m, &q, p, &r);
	fbuf_unmap(b, p);
	mreply_free(&r);
	if (rc < 0) {
		/* ENOENT (no tmp/ in the store), EDQUOT, EIO...: the link
		 * sends the whole DELIVER, which reports what matters. */
		free(st);
		st = NULL;
		goto out;
	}
	memcpy(st->idem, q.idem, sizeof st->idem);
	st->size = q.body_size;
	st->checksum = q.checksum;
	st->mode = q.mode;
	st->uid = q.uid;
	st->gid = q.gid;
	memcpy(st->dpath, dpath, dlen + 1);
out:
	pthread_mutex_lock(&m->mu);
	fbuf_unpin(b);
	if (st) {
		st->gen = b->gen;
		if (n->stage == NULL && n->local && !n->unlinked) {
			n->stage = st;
			st = NULL;
		}
	}
	pthread_mutex_unlock(&m->mu);
	stage_drop(m, st);	/* unlinked meanwhile */
}

/* --- spooled bodies (SPOOL while written, COMMIT at link or rename) --- */

/* A SPOOL in flight: its copy of the bytes, and whose spool it is. */
struct spool_piece {
	struct mount *m;
	fuse_ino_t ino;
	uint8_t idem[MST_IDEM_LEN];
	uint8_t data[];
};

static void
spooled(void *arg, struct mreply *r)
{
	struct spool_piece *sp = arg;
	struct mount *m = sp->m;
	struct minode *n;

	if (r->status < 0) {
		/* EIO (a reconnection), EAGAIN (the store's memory bound),
		 * ...: the COMMIT would find none, so none is sent. */
		pthread_mutex_lock(&m->mu);
		n = inode_get(m, sp->ino);
		if (n && n->stage && n->stage->spooled &&
		    memcmp(n->stage->idem, sp->idem, MST_IDEM_LEN) == 0)
			n->stage->broken = 1;
		pthread_mutex_unlock(&m->mu);
	}
	mreply_free(r);
	free(sp);
}

/* Copy |len| bytes of |n|'s file at |off| and SPOOL them. mu NOT held;
 * the caller is |st|'s one sender. */
static int
spool_send(struct mount *m, struct minode *n, struct stage *st,
    uint64_t off, size_t len)
{
	struct spool_piece *sp = malloc(sizeof *sp + (len ? len : 1));
	struct mst_str mb, folder;
	ssize_t got;
	int rc;

	if (sp == NULL)
		return -ENOMEM;
	sp->m = m;
	sp->ino = n->ino;
	memcpy(sp->idem, st->idem, MST_IDEM_LEN);
	pthread_mutex_lock(&m->mu);
	got = fbuf_read(n->buf, sp->data, len, off);
	pthread_mutex_unlock(&m->mu);
	if (got != (ssize_t)len) {
		free(sp);
		return got < 0 ? (int)got : -EIO;
	}
	(void)inode_classify(NULL, st->dpath, &mb, &folder);
	rc = store_spool_async(m, mb, st->idem, off, sp->data, len, spooled,
	    sp);
	if (rc < 0)
		free(sp);
	return rc;
}

/*
 * A new spool for |n| (mu held), or NULL: only a lone writer's file in a
 * tmp/ whose server gathers spools. Lone on the whole mount: with
 * another file open for writing anywhere on it, the machine's cores
 * are busy with that delivery, and a spool's pieces (a copy, a request
 * and its answer each, and the store's gathering) cost CPU that the
 * overlap no longer gives back; the link sends the DELIVER instead.
 */
static struct stage *
spool_new(struct mount *m, struct minode *n)
{
	char dpath[MST_PATH_MAX + 1];
	struct mst_str mb, folder;
	struct stage *st;
	size_t dlen;

	if (n->parent->nlocal >= 2 ||	/* busy: fsync STAGEs instead */
	    m->writers >= 2 ||		/* busy elsewhere: DELIVER at link */
	    inode_path(n->parent, dpath, sizeof dpath) < 0)
		return NULL;
	(void)inode_classify(NULL, dpath, &mb, &folder);
	if (!store_spools(m, mb))
		return NULL;
	dlen = strlen(dpath);
	st = calloc(1, sizeof *st + dlen + 1);
	if (st == NULL)
		return NULL;
	if (getrandom(st->idem, sizeof st->idem, 0) != sizeof st->idem) {
		free(st);
		return NULL;
	}
	st->spooled = 1;
	memcpy(st->dpath, dpath, dlen + 1);
	return st;
}

struct minode *
spool_hold(struct mount *m, struct minode *n, size_t wrote)
{
	int hold;

	/* A spool starts only in a file written in pieces, at the write
	 * that makes its first SPOOL_CHUNK: a body that comes in one or
	 * two large writes has no writes left to travel during, and its
	 * DELIVER sends it from the file's buffer without a copy. */
	if (m->nospool)
		return NULL;
	pthread_mutex_lock(&m->mu);
	hold = n->local && !n->unlinked && n->buf != NULL &&
	    n->buf->bid == 0 &&	/* passthrough: no WRITEs to see */
	    n->buf->size >= SPOOL_CHUNK && n->parent != NULL &&
	    n->parent->dkind == DK_TMP &&
	    ((n->stage == NULL && wrote < SPOOL_CHUNK &&
	    n->buf->size - wrote < SPOOL_CHUNK) ||
	    (n->stage && n->stage->spooled && !n->stage->sending &&
	    n->buf->size - n->stage->sent >= SPOOL_CHUNK));
	if (hold)
		n->nopen++;	/* n stays until spool_write is done */
	pthread_mutex_unlock(&m->mu);
	return hold ? n : NULL;
}

void
spool_write(struct mount *m, struct minode *n)
{
	struct stage *st;
	uint64_t off;
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	if (n->unlinked || n->buf->pinned || n->buf->size < SPOOL_CHUNK ||
	    (n->stage && (!n->stage->spooled || n->stage->broken ||
	    n->stage->sending)) ||
	    (n->stage == NULL && (n->stage = spool_new(m, n)) == NULL)) {
		inode_close(m, n);
		pthread_mutex_unlock(&m->mu);
		return;
	}
	st = n->stage;
	st->sending = 1;
	while (rc == 0 && !st->dropped && !st->broken && !n->buf->pinned &&
	    n->buf->size - st->sent >= SPOOL_CHUNK) {
		off = st->sent;
		st->sent += SPOOL_CHUNK;
		pthread_mutex_unlock(&m->mu);
		rc = spool_send(m, n, st, off, SPOOL_CHUNK);
		pthread_mutex_lock(&m->mu);
		if (rc < 0)
			st->broken = 1;
	}
	st->sending = 0;
	pthread_cond_broadcast(&m->spool_cv);
	if (st->dropped) {		/* taken meanwhile: ours to drop */
		inode_close(m, n);
		pthread_mutex_unlock(&m->mu);
		stage_drop(m, st);
		return;
	}
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
}

/*
 * At link or rename: |st|, |n|'s spool (taken off |n|, its sender done),
 * becomes the stage that the COMMIT names: the rest of the body is
 * SPOOLed and the whole body's size and checksum are what the COMMIT
 * declares. |b| is pinned. 0, or a negative errno: then the caller drops
 * |st| and sends the whole DELIVER.
 */
static int
spool_finish(struct mount *m, struct minode *n, struct stage *st,
    struct fbuf *b, const struct mst_attr *sa)
{
	struct mst_str mb, folder;
	const uint8_t *p = NULL;
	size_t room, len;
	int rc = 0;

	if (st->broken || st->sent > b->size)
		return -ESTALE;
	(void)inode_classify(NULL, st->dpath, &mb, &folder);
	room = store_spool_max(m, mb);
	while (rc == 0 && st->sent < b->size) {
		len = b->size - st->sent < room ? (size_t)(b->size - st->sent) :
		    room;
		rc = spool_send(m, n, st, st->sent, len);
		st->sent += len;
	}
	if (rc == 0)
		rc = fbuf_map(b, &p);
	if (rc < 0)
		return rc;
	st->size = b->size;
	st->checksum = mst_checksum(p, (size_t)b->size);
	fbuf_unmap(b, p);
	st->mode = sa->mode & 07777;
	st->uid = sa->uid;
	st->gid = sa->gid;
	st->gen = b->gen;
	return 0;
}

/*
 * A delivery by link() or rename() from tmp/, answered from mconn's
 * thread. With a staged body that still fits the file it is a COMMIT
 * of the name alone; otherwise, or when the store no longer has the
 * body (ESTALE: reclaimed, restarted from an older state, or another
 * server after a failover; EOPNOTSUPP: a server without STAGE), a
 * DELIVER with the whole body. A DELIVER after ESTALE keeps the staged
 * id, so that a COMMIT that did land is answered, not doubled.
 */
struct dwait {
	fuse_req_t req;
	struct mount *m;
	struct minode *n;	/* the tmp/ file; one nopen reference */
	struct minode *dir;	/* the target new/ or cur/ */
	struct fbuf *b;		/* n's, pinned until answered */
	const uint8_t *body;	/* b's view while a DELIVER is out */
	struct stage *st;	/* being committed, or NULL */
	struct mst_attr sa;
	int rename;		/* rename(): n moves; link(): n stays */
	char name[MST_NAME_MAX + 1];
};

static void dwait_done(void *arg, struct mreply *r);

/* Send the COMMIT or DELIVER of |w|: 0 when dwait_done will run. */
static int
dwait_send(struct dwait *w, const uint8_t *idem)
{
	uint8_t head[2 * MST_PATH_MAX + 128];
	char dpath[MST_PATH_MAX + 1];
	struct mst_commit_req q = { 0 };
	struct mst_str smb, sfolder;
	int rc, len;

	if (w->st) {
		pthread_mutex_lock(&w->m->mu);
		rc = inode_path(w->dir, dpath, sizeof dpath);
		q.sub = w->dir->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
		pthread_mutex_unlock(&w->m->mu);
		if (rc < 0)
			return rc;
		(void)inode_classify(NULL, dpath, &q.mailbox, &q.folder);
		(void)inode_classify(NULL, w->st->dpath, &smb, &sfolder);
		if (smb.len == q.mailbox.len &&
		    memcmp(smb.p, q.mailbox.p, smb.len) == 0) {
			q.name = mst_str_of(w->name);
			memcpy(q.idem, w->st->idem, sizeof q.idem);
			q.checksum = w->st->checksum;
			q.body_size = w->st->size;
			q.mode = w->st->mode;
			q.uid = w->st->uid;
			q.gid = w->st->gid;
			return store_commit_async(w->m, &q, dwait_done, w);
		}
		/* Into another mailbox: the staged body cannot move there. */
		stage_drop(w->m, w->st);
		w->st = NULL;
	}
	len = deliver_encode_id(w->m, w->dir, w->name, w->b, &w->sa, idem,
	    head, sizeof head, &w->body);
	if (len < 0) {
		w->body = NULL;		/* nothing mapped */
		return len;
	}
	rc = store_deliver_async(w->m, head, (size_t)len, w->body,
	    (size_t)w->b->size, dwait_done, w);
	if (rc < 0) {
		fbuf_unmap(w->b, w->body);
		w->body = NULL;
	}
	return rc;
}

/* The answer is in: the kernel's request is answered and |w| freed. */
static void
dwait_finish(struct dwait *w, struct mreply *r, int rc)
{
	struct mount *m = w->m;
	struct minode *n = w->n, *nn = NULL;
	struct mst_attr a;

	if (rc == 0)
		rc = deliver_finish(m, w->dir, w->name, r, &a);
	body_done(m, w->b, w->body);	/* before n can be freed */
	pthread_mutex_lock(&m->mu);
	if (w->st && !w->st->spooled && rc == -EEXIST && n->stage == NULL &&
	    stage_fits(w->st, w->b, &w->sa)) {
		n->stage = w->st;	/* still good for another name */
		w->st = NULL;
	}
	if (w->rename) {
		if (rc == 0) {
			rc = inode_move(m, n, w->dir, w->name);
			inode_delivered(m, n, &a);
		}
	} else if (rc == 0 &&
	    (nn = node_remote(m, w->dir, w->name, &a, 1)) == NULL) {
		rc = -ENOMEM;
	}
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
	/* A COMMIT that failed otherwise may have landed: its body is not
	 * dropped (the store reclaims it if not). */
	free(w->st);
	if (w->rename) {
		/* The kernel's dentry keeps the local inode: have it look
		 * again. */
		if (rc == 0)
			inval_queue(m, w->dir->ino, w->name);
		fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	} else if (rc < 0) {
		fuse_reply_err(w->req, -rc);
	} else {
		reply_entry(w->req, m, nn);
	}
	free(w);
}

static void
dwait_done(void *arg, struct mreply *r)
{
	struct dwait *w = arg;
	uint8_t idem[MST_IDEM_LEN];
	int rc = r->status;

	if (w->st && (rc == -ESTALE || rc == -EOPNOTSUPP)) {
		/* The store lacks the staged body: send all of it. */
		mreply_free(r);
		memcpy(idem, w->st->idem, sizeof idem);
		free(w->st);
		w->st = NULL;
		rc = dwait_send(w, idem);
		if (rc == 0)
			return;
		memset(r, 0, sizeof *r);
		dwait_finish(w, r, rc);
		return;
	}
	if (w->st && (rc == -EINVAL || rc == -EXDEV)) {
		/* Not this body after all: drop it, send the whole one. A
		 * spool is gone from the store already. */
		mreply_free(r);
		if (w->st->spooled)
			free(w->st);
		else
			stage_drop(w->m, w->st);
		w->st = NULL;
		rc = dwait_send(w, NULL);
		if (rc == 0)
			return;
		memset(r, 0, sizeof *r);
		dwait_finish(w, r, rc);
		return;
	}
	dwait_finish(w, r, rc);
	mreply_free(r);
}

/*
 * Deliver the local file |n| as |dir|/|name| (link: |rename| 0; rename:
 * 1). n->nopen holds one reference for the delivery on entry and n->buf
 * is pinned, both given up when it is answered. Returns 0 when
 * dwait_done will answer the kernel, or a negative errno (then the
 * caller still owns both).
 */
static int
dwait_start(struct mount *m, fuse_req_t req, struct minode *n,
    struct minode *dir, const char *name, const struct mst_attr *sa,
    int rename)
{
	struct dwait *w = calloc(1, sizeof *w);
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->req = req;
	w->m = m;
	w->n = n;
	w->dir = dir;
	w->b = n->buf;
	w->sa = *sa;
	w->rename = rename;
	strcpy(w->name, name);
	pthread_mutex_lock(&m->mu);
	while (n->stage && n->stage->spooled && n->stage->sending)
		pthread_cond_wait(&m->spool_cv, &m->mu);
	w->st = stage_take(n);
	if (w->st && w->st->spooled) {
		pthread_mutex_unlock(&m->mu);
		if (spool_finish(m, n, w->st, w->b, sa) < 0) {
			stage_drop(m, w->st);	/* the DELIVER goes */
			w->st = NULL;
		}
	} else if (w->st && !stage_fits(w->st, w->b, sa)) {
		pthread_mutex_unlock(&m->mu);
		stage_drop(m, w->st);	/* changed since its fsync */
		w->st = NULL;
	} else {
		pthread_mutex_unlock(&m->mu);
	}
	rc = dwait_send(w, NULL);
	if (rc < 0) {
		pthread_mutex_lock(&m->mu);
		if (w->st && !w->st->spooled && n->stage == NULL) {
			n->stage = w->st;	/* not used: keep it */
			w->st = NULL;
		}
		pthread_mutex_unlock(&m->mu);
		if (w->st && w->st->spooled)
			stage_drop(m, w->st);	/* the store's memory */
		else
			free(w->st);
		free(w);
	}
	return rc;
}

/*
 * link(tmp/X, new/Y): deliver, and keep tmp/X as it is. The request goes
 * out and the worker thread returns; the reply to the kernel is sent
 * when the store has answered (dwait_done), so a worker is not held for
 * a round trip and a group commit.
 */
static int
do_link(struct mount *m, fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	struct minode *src, *dir;
	struct mst_attr sa;
	int rc;

	if (strlen(newname) > MST_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&m->mu);
	src = inode_get(m, ino);
	dir = inode_get(m, newparent);
	if (src && dir && is_ofile(src) && dir->dkind == DK_PLAIN) {
		pthread_mutex_unlock(&m->mu);
		rc = ofile_link(m, src, dir, newname);
		if (rc == 0)
			reply_entry(req, m, src);
		return rc;
	}
	if (src == NULL || dir == NULL)
		rc = -ESTALE;
	else if (!src->local || dir->folder == NULL)
		rc = -EXDEV;
	else if (inode_local_find(m, dir, newname) ||
	    folder_find(dir->folder, newname))
		rc = -EEXIST;
	else
		rc = 0;
	if (rc == 0) {
		src->nopen++;		/* until dwait_finish */
		inode_local_refresh(src);	/* what the kernel wrote */
		fbuf_pin(src->buf);
		sa = src->attr;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	rc = dwait_start(m, req, src, dir, newname, &sa, 0);
	if (rc < 0)
		body_done_close(m, src);
	return rc;			/* 0: dwait_done replies */
}

void
op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	int rc = do_link(mount_of(req), req, ino, newparent, newname);

	if (rc < 0)
		fuse_reply_err(req, -rc);
}

/* Both in new/ or cur/ of the same mailbox folder? Then it is SETINFO. */
static int
same_folder(struct mount *m, const char *a, const char *b,
    struct mst_setinfo_req *q)
{
	struct mst_str ma, fa, mb, fb;
	enum dkind ka = inode_classify(m, a, &ma, &fa);
	enum dkind kb = inode_classify(m, b, &mb, &fb);

	if ((ka != DK_NEW && ka != DK_CUR) || (kb != DK_NEW && kb != DK_CUR))
		return 0;
	if (ma.len != mb.len || fa.len != fb.len ||
	    memcmp(ma.p, mb.p, ma.len) || memcmp(fa.p, fb.p, fa.len))
		return 0;
	q->mailbox = ma;
	q->folder = fa;
	q->from_sub = ka == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	q->to_sub = kb == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
	return 1;
}

/* A local file moves: deliver it, PUT it, or move it within tmp/. */
static int
rename_local(struct mount *m, fuse_req_t req, struct minode *n,
    struct minode *np, const char *newname, unsigned flags)
{
	char path[MST_PATH_MAX + 1];
	struct stage *st = NULL;
	struct minode *old;
	struct mst_attr a;
	int rc;

	pthread_mutex_lock(&m->mu);
	inode_local_refresh(n);		/* what the kernel wrote */
	a = n->attr;
	if (np->dkind == DK_TMP) {
		old = inode_local_find(m, np, newname);
		rc = old && (flags & RENAME_NOREPLACE) ? -EEXIST : 0;
		if (rc == 0 && old) {
			st = stage_take(old);
			inode_local_unlink(m, old);
		}
		if (rc == 0)
			rc = inode_move(m, n, np, newname);
		pthread_mutex_unlock(&m->mu);
		/* The file replaced was never delivered: its spool or
		 * staged body goes, as for an unlink. */
		stage_drop(m, st);
		return rc;
	}
	if (np->folder) {
		if (strlen(newname) > MST_NAME_MAX) {
			pthread_mutex_unlock(&m->mu);
			return -ENAMETOOLONG;
		}
		n->nopen++;		/* until dwait_finish */
		fbuf_pin(n->buf);
		pthread_mutex_unlock(&m->mu);
		rc = dwait_start(m, req, n, np, newname, &a, 1);
		if (rc < 0) {
			body_done_close(m, n);
			return rc;
		}
		return 1;		/* dwait_done replies */
	}
	n->nopen++;
	/* The PUT sends the whole body: a spool or staged body of it is
	 * of no use, and would stay in the store's memory. */
	st = stage_take(n);
	rc = inode_child_path(np, newname, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	stage_drop(m, st);
	if (rc == 0)
		rc = put_buf(m, path, n->buf, flags & RENAME_NOREPLACE, &a, &a);
	pthread_mutex_lock(&m->mu);
	if (rc == 0) {
		rc = inode_move(m, n, np, newname);
		inode_delivered(m, n, &a);
	}
	inode_close(m, n);
	pthread_mutex_unlock(&m->mu);
	/* The kernel's dentry keeps the local inode: have it look again. */
	if (rc == 0)
		inval_queue(m, np->ino, newname);
	return rc;
}

/* A rename within the store, answered from mconn's thread. Directory
 * minodes are never freed, so |p| and |np| outlive the request. */
struct move_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *p, *np;
	struct ownstamp ps, nps;	/* before the request went */
	char name[MST_NAME_MAX + 1], newname[MST_NAME_MAX + 1];
};

/* What the rename tells of its store directories (not folders: those
 * are the folder cache's): the names it moved are forgotten, and, if
 * nothing else moved them meanwhile, the old name is known missing,
 * the file known by its new one, and a directory's attributes are the
 * reply's (one record changed both at one time; the reply's are the new
 * parent's, so only for a rename within one directory). */
static int
moved_dirs(struct mount *m, struct move_wait *w,
    const struct mst_attr_rep *ar)
{
	/* A rename between two links of one file leaves both names: the
	 * old one is not known gone then. */
	const char *gone = ar->attr.type == MST_T_FILE && ar->attr.nlink > 1 ?
	    NULL : w->name;
	struct minode *n;
	int same = w->p == w->np, rc = 0;

	if (!w->np->folder)
		inode_dir_changed(m, w->np, w->newname);
	if (!w->p->folder && same)
		inode_name_changed(m, w->p, w->name);
	else if (!w->p->folder)
		inode_dir_changed(m, w->p, w->name);
	n = inode_get(m, ar->attr.id);
	if (n && is_ofile(n))	/* its ctime moved, not its data */
		(void)ofile_refresh(n, &ar->attr);
	if (n && (rc = inode_rename(m, n, w->np, w->newname)) < 0)
		n = NULL;
	if (!w->np->folder)
		inode_own_done(m, w->np, &w->nps, same ? gone : NULL, n,
		    same && ar->attr.type != MST_T_DIR ? ar->dir_change : 0,
		    ar->dir_mtime_ns);
	if (!w->p->folder && !same)
		inode_own_done(m, w->p, &w->ps, gone, NULL, 0, 0);
	return rc;
}

static void
moved(void *arg, struct mreply *r)
{
	struct move_wait *w = arg;
	struct mount *m = w->m;
	struct mst_attr_rep ar;
	struct minode *n;
	int rc = r->status;

	if (rc == 0)
		rc = attr_from(r, &ar);
	mreply_free(r);
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		if (w->p->folder)
			folder_del(w->p->folder, w->name);
		if (w->np->folder)
			folder_put(w->np->folder, w->newname, &ar.attr);
		/* One record changed both directories, at one time. */
		folder_touch(w->p, ar.dir_mtime_ns);
		folder_touch(w->np, ar.dir_mtime_ns);
		if (w->p->folder && w->np->folder) {
			n = inode_get(m, ar.attr.id);
			if (n)
				rc = inode_move(m, n, w->np, w->newname);
		} else {
			rc = moved_dirs(m, w, &ar);
		}
		pthread_mutex_unlock(&m->mu);
		inval_queue(m, w->p->ino, NULL);
		if (w->np != w->p)
			inval_queue(m, w->np->ino, NULL);
	}
	fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	free(w);
}

/* Returns 0, a negative errno, or 1 when a callback answers the kernel. */
static int
do_rename(struct mount *m, fuse_req_t req, fuse_ino_t parent,
    const char *name, fuse_ino_t newparent, const char *newname,
    unsigned flags)
{
	char from[MST_PATH_MAX + 1], to[MST_PATH_MAX + 1];
	char fdir[MST_PATH_MAX + 1], tdir[MST_PATH_MAX + 1];
	struct mst_setinfo_req si = { 0 };
	struct mst_rename_req rn = { 0 };
	struct minode *p, *np, *n;
	struct move_wait *w;
	int rc, setinfo;

	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;		/* RENAME_EXCHANGE, WHITEOUT */
	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	np = inode_get(m, newparent);
	if (p == NULL || np == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	n = inode_local_find(m, p, name);
	if (n) {
		pthread_mutex_unlock(&m->mu);
		return rename_local(m, req, n, np, newname, flags);
	}
	if (p->dkind == DK_TMP || np->dkind == DK_TMP) {
		pthread_mutex_unlock(&m->mu);
		return p->dkind == DK_TMP ? -ENOENT : -EXDEV;
	}
	rc = inode_child_path(p, name, from, sizeof from);
	if (rc == 0)
		rc = inode_child_path(np, newname, to, sizeof to);
	if (rc == 0)
		rc = inode_path(p, fdir, sizeof fdir);
	if (rc == 0)
		rc = inode_path(np, tdir, sizeof tdir);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	setinfo = same_folder(m, fdir, tdir, &si);
	if (setinfo) {
		si.from_name = mst_str_of(name);
		si.to_name = mst_str_of(newname);
		si.flags = flags & RENAME_NOREPLACE ? MST_RN_NOREPLACE : 0;
	} else {
		rn.from = mst_str_of(from);
		rn.to = mst_str_of(to);
		rn.flags = flags & RENAME_NOREPLACE ? MST_RN_NOREPLACE : 0;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -ENOMEM;
	w->req = req;
	w->m = m;
	w->p = p;
	w->np = np;
	pthread_mutex_lock(&m->mu);
	inode_own_stamp(m, p, &w->ps);
	inode_own_stamp(m, np, &w->nps);
	pthread_mutex_unlock(&m->mu);
	snprintf(w->name, sizeof w->name, "%s", name);
	snprintf(w->newname, sizeof w->newname, "%s", newname);
	rc = setinfo ? store_setinfo(m, &si, moved, w) :
	    store_rename(m, &rn, moved, w);
	if (rc < 0) {
		free(w);
		return rc;
	}
	return 1;			/* moved() replies */
}

void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	int rc = do_rename(mount_of(req), req, parent, name, newparent,
	    newname, flags);

	if (rc != 1)
		fuse_reply_err(req, rc < 0 ? -rc : 0);
}
