/*
 * ops_entry.c - FUSE operations on names and attributes: lookup, forget,
 * getattr, setattr, mkdir, rmdir, unlink, statfs. Each op_* is a thin
 * adapter over a do_* core that returns an errno and knows nothing of
 * FUSE replies. Names in tmp/ are local; names in new/ and cur/ come from
 * the folder cache; everything else asks the store, except a name it
 * has just said is missing, or an ordinary file's name it has just
 * answered, while nothing can have changed that (struct negset and
 * minode.pos, mount.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>

#include "mount.h"
#include "mstat.h"
#include "store.h"

/*
 * How long the kernel may keep |n|'s attributes (mu held). Ordinary
 * files: every stat asks us (we answer from memory kept fresh by our
 * own writes and the store's notices). A directory other than new/ and
 * cur/ whose attributes notices keep (watched, under a watched parent:
 * inode_attr_fresh) is kept as long as directory names are: a change
 * elsewhere invalidates it in the kernel (its contents by its own
 * notice, its mode, owner or name by its parent's), and the kernel
 * itself drops it after a change made here. Its mode and owner are what
 * every path walk through it checks. new/ and cur/ keep the attribute
 * timeout: their mtimes are how Dovecot sees new mail. The root has no
 * parent to report it, so it keeps the timeout too.
 */
static double
attr_keep(struct mount *m, struct minode *n)
{
	if (is_ofile(n) || !inode_trusted(n))
		return 0;
	if (n->attr.type == MST_T_DIR && n->folder == NULL &&
	    inode_attr_notified(n) && m->entry_timeout < 60)
		return 60;
	return m->entry_timeout;
}

void
entry_fill(struct mount *m, struct minode *n, struct fuse_entry_param *ep)
{
	struct fuse_entry_param e = { 0 };

	e.ino = n->ino;
	e.generation = 1;
	e.attr_timeout = attr_keep(m, n);
	/* Under a watched directory a change anywhere invalidates names at
	 * once: directory names may stay cached long, which also keeps paths
	 * to tmp/ resolvable while the store is briefly unreachable. Under
	 * an unwatched one (see folder.c) the kernel must ask every time.
	 * The names of ordinary files are never cached: a notice's
	 * invalidation runs on the notifier thread, after the reply that
	 * follows the notice may already have let a process go on (a lock
	 * taken), and a name kept that long would show that process the
	 * file its holder had just replaced by rename. */
	if (n->parent == NULL || !inode_dir_trusted(n->parent) ||
	    is_ofile(n))
		e.entry_timeout = 0;
	else if (n->attr.type == MST_T_DIR && m->entry_timeout < 60)
		e.entry_timeout = 60;
	else
		e.entry_timeout = m->entry_timeout;
	inode_stat(n, &e.attr);
	*ep = e;
}

void
reply_entry(fuse_req_t req, struct mount *m, struct minode *n)
{
	struct fuse_entry_param e;

	pthread_mutex_lock(&m->mu);
	if (is_ofile(n))
		ofile_settle_wait(m, n);
	entry_fill(m, n, &e);
	pthread_mutex_unlock(&m->mu);
	if (fuse_reply_entry(req, &e) == -ENOENT) {
		/* The lookup was interrupted: undo its reference. */
		pthread_mutex_lock(&m->mu);
		inode_forget(m, n, 1);
		pthread_mutex_unlock(&m->mu);
	}
}

static int
do_lookup(struct mount *m, fuse_ino_t parent, const char *name,
    struct minode **out)
{
	char path[MST_PATH_MAX + 1];
	struct minode *p, *n;
	struct mst_attr a;
	struct fentry *fe;
	struct negstamp st, ps;
	int rc, known, settled;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	if (p == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	n = inode_local_find(m, p, name);
	if (n || p->dkind == DK_TMP) {
		if (n)
			n->nlookup++;
		pthread_mutex_unlock(&m->mu);
		*out = n;
		return n ? 0 : -ENOENT;
	}
	if (p->folder) {
		p->folder->busy++;	/* not evicted before the find */
		pthread_mutex_unlock(&m->mu);
		rc = folder_refresh(m, p);
		pthread_mutex_lock(&m->mu);
		p->folder->busy--;
		if (rc < 0) {
			pthread_mutex_unlock(&m->mu);
			return rc;
		}
		fe = folder_find(p->folder, name);
		n = fe ? node_remote(m, p, name, &fe->attr, 1) : NULL;
		pthread_mutex_unlock(&m->mu);
		*out = n;
		return n ? 0 : fe ? -ENOMEM : -ENOENT;
	}
	/*
	 * A name the store said is missing, while every change since has
	 * been reported (struct negset): the directory is watched, no
	 * notice came for it, this mount changed nothing in it and was
	 * granted no lock (by a server that is not SOLE). The lock
	 * matters: a notice from the store need not reach us before a
	 * lock grant (a create through another server comes by that
	 * server's RADOS notify), and a process that takes the lock its
	 * holder released after a create must find the file.
	 * Nor while the store is out of reach: notices are being lost (a
	 * reconnection then moves m->neg_epoch before any request goes).
	 * Nor while the home connection (where the notices of these
	 * directories come) holds bytes or frames not yet dispatched: a
	 * create notice among them, sent before this lookup began, would
	 * be answered ENOENT (route_rx_quiet; checked under m->mu, which
	 * on_notice takes to apply a notice). Then the lookup waits for the
	 * connection thread to dispatch them (route_rx_settle: cheaper than
	 * a LOOKUP, whose reply that thread would have to dispatch too,
	 * and with other sessions' replies streaming in it is often so)
	 * and looks again.
	 *
	 * The same holds for a name the store said is an ordinary file
	 * (Dovecot stats dovecot.index.log and its kin by name a dozen
	 * times a session): the kernel keeps no entry for it (entry_fill),
	 * but the mount may answer with the file it has, whose attributes
	 * a notice would have marked stale (inode_known_file). A rename
	 * over it, or its unlink, elsewhere comes as a notice and moves
	 * the stamps.
	 */
	for (settled = 0;; settled = 1) {
		neg_stamp(m, p, &st);
		pos_stamp(m, p, &ps);
		known = neg_find(p, &st, name) ? -1 : 0;
		n = known ? NULL : inode_known_file(m, p, name, &ps);
		if (n)
			known = 1;
		if (known == 0 || settled || route_rx_quiet(m->route))
			break;
		pthread_mutex_unlock(&m->mu);
		rc = route_rx_settle(m->route, MNT_RX_SETTLE_MS);
		pthread_mutex_lock(&m->mu);
		if (rc == 0) {
			known = 0;	/* ask the store */
			break;
		}
	}
	if (known < 0) {
		pthread_mutex_unlock(&m->mu);
		mstat_add(MS_NEG_HITS, 1);
		return -ENOENT;
	}
	if (known > 0) {
		n->nlookup++;
		inode_touch(m, n);
		pthread_mutex_unlock(&m->mu);
		mstat_add(MS_FILE_HITS, 1);
		*out = n;
		return 0;
	}
	rc = inode_child_path(p, name, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	watch_dir(m, p);
	rc = store_lookup(m, path, &a);
	if (rc == -ENOENT && st.active) {
		pthread_mutex_lock(&m->mu);
		neg_add(m, p, &st, name);	/* if nothing moved since */
		pthread_mutex_unlock(&m->mu);
	}
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	n = node_remote(m, p, name, &a, 1);
	if (n && is_ofile(n)) {
		/* Known as of the stamps taken before the LOOKUP went, if
		 * nothing moved since (not even node_remote's own). */
		n->pos = ps;
		if (!pos_current(m, p, &ps))
			n->pos.active = 0;
	}
	pthread_mutex_unlock(&m->mu);
	*out = n;
	return n ? 0 : -ENOMEM;
}

void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mount *m = mount_of(req);
	struct minode *n = NULL;
	int rc = do_lookup(m, parent, name, &n);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, m, n);
	mem_check(m);
	mem_throttle(m);
}

/* The kernel drops |count| references (numbers it does not know, such
 * as wake.c's, are ignored). */
static void
do_forget(struct mount *m, const struct fuse_forget_data *f, size_t count)
{
	struct minode *n;
	size_t i;

	pthread_mutex_lock(&m->mu);
	for (i = 0; i < count; i++) {
		n = inode_get(m, f[i].ino);
		if (n)
			inode_forget(m, n, f[i].nlookup);
	}
	pthread_mutex_unlock(&m->mu);
}

void
op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fuse_forget_data f = { .ino = ino, .nlookup = nlookup };

	do_forget(mount_of(req), &f, 1);
	fuse_reply_none(req);
}

void
op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	do_forget(mount_of(req), f, count);
	fuse_reply_none(req);
}

/* How long the kernel may keep |ino|'s attributes. */
static double
attr_timeout_of(struct mount *m, fuse_ino_t ino)
{
	struct minode *n;
	double t = m->entry_timeout;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n)
		t = attr_keep(m, n);
	pthread_mutex_unlock(&m->mu);
	return t;
}

/* Fresh attributes for |ino| into *st. */
static int
do_getattr(struct mount *m, fuse_ino_t ino, struct stat *st)
{
	char path[MST_PATH_MAX + 1];
	struct minode *n;
	struct mst_attr a;
	int rc = 0, fetch;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	inode_touch(m, n);
	if (!inode_trusted(n))
		n->attr_at_ms = 0;	/* no notice would say it changed */
	if (n->folder) {
		pthread_mutex_unlock(&m->mu);
		rc = folder_refresh(m, n);	/* brings the dir mtime */
		pthread_mutex_lock(&m->mu);
	} else if (is_ofile(n)) {
		pthread_mutex_unlock(&m->mu);
		rc = ofile_getattr(m, n);
		pthread_mutex_lock(&m->mu);
		ofile_settle_wait(m, n);
		if (rc == 0)
			inode_stat(n, st);
		pthread_mutex_unlock(&m->mu);
		return rc;
	}
	/* The root too: its owner and mode are the store's. Not a watched
	 * directory under a watched parent: notices keep its attributes
	 * (on_notice sets attr_at_ms to 0 when its contents change, or it
	 * itself does as an entry of its parent), so the path walk of every
	 * delivery into a quiet mailbox costs no LOOKUP per directory. */
	fetch = !n->local && !n->folder && !inode_attr_fresh(m, n);
	if (fetch)
		rc = inode_path(n, path, sizeof path);
	pthread_mutex_unlock(&m->mu);
	if (n->attr.type == MST_T_DIR && !n->folder)
		watch_dir(m, n);	/* a failed WATCH is retried at use */
	/*
	 * A directory's attributes are asked for at every step of a path
	 * walk (the kernel checks search permission). While the store is
	 * out of reach, the last ones known answer: tmp/ is local and must
	 * stay usable, and the store's own calls fail with EIO anyway.
	 */
	if (fetch && rc == 0 && n->attr.type == MST_T_DIR &&
	    !route_connected(m->route))
		fetch = 0;
	if (fetch && rc == 0) {
		rc = store_lookup(m, path, &a);
		pthread_mutex_lock(&m->mu);
		if (rc == 0) {
			n->attr = a;
			n->attr_at_ms = mono_ms();
		}
		pthread_mutex_unlock(&m->mu);
		if (rc == -EIO && n->attr.type == MST_T_DIR)
			rc = 0;		/* the same, when it just went */
	}
	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		inode_stat(n, st);
		pthread_mutex_unlock(&m->mu);
	}
	return rc;
}

void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct stat st;
	int rc = do_getattr(m, ino, &st);

	(void)fi;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout_of(m, ino));
}

/* Local files change here; everything in the store is one FSETATTR by
 * object id. */
static int
do_setattr(struct mount *m, fuse_ino_t ino, const struct stat *st, int set)
{
	struct minode *n;
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	n = inode_get(m, ino);
	if (n == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	if (!n->local) {
		pthread_mutex_unlock(&m->mu);
		return ofile_setattr(m, n, st, set);
	}
	/* Writes the kernel made before this change take their effect
	 * (set-user-ID) first, not on what it sets. */
	inode_local_refresh(n);
	if (set & FUSE_SET_ATTR_SIZE)
		rc = fbuf_truncate(n->buf, m, (uint64_t)st->st_size);
	if (set & FUSE_SET_ATTR_MODE)
		n->attr.mode = st->st_mode & 07777;
	if (set & FUSE_SET_ATTR_UID)
		n->attr.uid = st->st_uid;
	if (set & FUSE_SET_ATTR_GID)
		n->attr.gid = st->st_gid;
	if (set & FUSE_SET_ATTR_MTIME)
		n->attr.mtime_ns = ts_to_ns(&st->st_mtim);
	if (set & FUSE_SET_ATTR_MTIME_NOW)
		n->attr.mtime_ns = now_ns();
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
    struct fuse_file_info *fi)
{
	struct mount *m = mount_of(req);
	struct stat st;
	int rc = do_setattr(m, ino, attr, to_set);

	(void)fi;
	if (rc == 0)
		rc = do_getattr(m, ino, &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, attr_timeout_of(m, ino));
}

static int
do_mkdir(struct mount *m, fuse_ino_t parent, const char *name, mode_t mode,
    const struct fuse_ctx *ctx, struct minode **out)
{
	struct mst_attr own = { .mode = mode & 07777 };
	struct mst_mkdir_req q = { 0 };
	char path[MST_PATH_MAX + 1];
	struct mst_attr_rep ar;
	struct minode *p;
	int rc;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	rc = p ? inode_child_path(p, name, path, sizeof path) : -ESTALE;
	if (rc == 0)
		inode_new_owner(p, ctx, 1, &own);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	q.path = mst_str_of(path);
	q.mode = own.mode;
	q.uid = own.uid;
	q.gid = own.gid;
	rc = store_mkdir(m, &q, &ar);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->mu);
	inode_dir_changed(m, p, name);	/* its link count moved */
	*out = node_remote(m, p, name, &ar.attr, 1);
	pthread_mutex_unlock(&m->mu);
	return *out ? 0 : -ENOMEM;
}

void
op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct mount *m = mount_of(req);
	struct minode *n = NULL;
	int rc = do_mkdir(m, parent, name, mode, fuse_req_ctx(req), &n);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, m, n);
}

/* A removal answered from mconn's thread; |p| is a directory minode that
 * the kernel holds until the reply, so it is not freed before. */
struct remove_wait {
	fuse_req_t req;
	struct mount *m;
	struct minode *p;
	int dir;
	struct ownstamp os;	/* |p|'s, before the request went */
	char name[MST_NAME_MAX + 1];
};

static void
removed(void *arg, struct mreply *r)
{
	struct remove_wait *w = arg;
	struct mount *m = w->m;
	struct mst_change_rep cr = { 0 };
	int rc = r->status;

	if (rc == 0) {
		pthread_mutex_lock(&m->mu);
		if (store_change_reply(r, &cr) == 0)
			folder_touch(w->p, cr.dir_mtime_ns);
		else
			cr.dir_change = 0;
		if (w->p->folder) {
			folder_del(w->p->folder, w->name);
		} else {
			inode_dir_changed(m, w->p, w->name);
			/* The name is gone; an rmdir moved the link count,
			 * which the reply does not say. */
			inode_own_done(m, w->p, &w->os, w->name, NULL,
			    w->dir ? 0 : cr.dir_change, cr.dir_mtime_ns);
		}
		if (w->dir)
			inode_detach_dir(m, w->p, w->name);
		pthread_mutex_unlock(&m->mu);
		inval_queue(m, w->p->ino, NULL);
	}
	mreply_free(r);
	fuse_reply_err(w->req, rc < 0 ? -rc : 0);
	free(w);
}

/*
 * RMDIR, UNLINK or EXPUNGE of |parent|/|name|. Local files go at once
 * (0 or a negative errno); a request to the store returns 1 and removed()
 * answers the kernel.
 */
static int
do_remove(struct mount *m, fuse_req_t req, fuse_ino_t parent,
    const char *name, int dir)
{
	struct mst_msg_ref q = { 0 };
	char path[MST_PATH_MAX + 1], dpath[MST_PATH_MAX + 1];
	struct remove_wait *w;
	struct minode *p, *n;
	int rc, expunge;

	pthread_mutex_lock(&m->mu);
	p = inode_get(m, parent);
	if (p == NULL) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	n = dir ? NULL : inode_local_find(m, p, name);
	if (n || (!dir && p->dkind == DK_TMP)) {
		struct stage *st = n ? stage_take(n) : NULL;

		if (n)
			inode_local_unlink(m, n);
		pthread_mutex_unlock(&m->mu);
		stage_drop(m, st);	/* staged, never delivered */
		return n ? 0 : -ENOENT;
	}
	rc = inode_child_path(p, name, path, sizeof path);
	expunge = rc == 0 && !dir && p->folder;
	if (expunge) {
		rc = inode_path(p, dpath, sizeof dpath);
		q.sub = p->dkind == DK_NEW ? MST_SUB_NEW : MST_SUB_CUR;
		q.name = mst_str_of(name);
		(void)inode_classify(m, dpath, &q.mailbox, &q.folder);
	}
	w = rc == 0 ? calloc(1, sizeof *w) : NULL;
	if (w)
		inode_own_stamp(m, p, &w->os);
	pthread_mutex_unlock(&m->mu);
	if (rc < 0)
		return rc;
	if (w == NULL)
		return -ENOMEM;
	w->req = req;
	w->m = m;
	w->p = p;
	w->dir = dir;
	snprintf(w->name, sizeof w->name, "%s", name);
	rc = expunge ? store_expunge(m, &q, removed, w) :
	    store_path_async(m, dir ? MST_OP_RMDIR : MST_OP_UNLINK, path,
	    removed, w);
	if (rc < 0) {
		free(w);
		return rc;
	}
	return 1;
}

void
op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = do_remove(mount_of(req), req, parent, name, 0);

	if (rc != 1)
		fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void
op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = do_remove(mount_of(req), req, parent, name, 1);

	if (rc != 1)
		fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static int
do_statfs(struct mount *m, struct statvfs *sv)
{
	struct mst_statfs_rep s;
	int rc = store_statfs(m, &s);

	if (rc < 0)
		return rc;
	memset(sv, 0, sizeof *sv);
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_blocks = s.bytes_total / 4096;
	sv->f_bfree = sv->f_bavail = s.bytes_free / 4096;
	sv->f_files = s.files_total;
	sv->f_ffree = sv->f_favail = s.files_free;
	sv->f_namemax = s.name_max;
	return 0;
}

void
op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int rc = do_statfs(mount_of(req), &sv);

	(void)ino;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &sv);
}

/* Special files and symbolic links have no place in a mail store: they
 * are refused, and the log says why. */
void
op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	(void)parent;
	(void)rdev;
	syslog(LOG_NOTICE, "mount.mstore: mknod %s (type 0%o) refused: only "
	    "regular files and directories are stored", name,
	    (unsigned)(mode & S_IFMT));
	fuse_reply_err(req, EPERM);
}

void
op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
    const char *name)
{
	(void)link;
	(void)parent;
	syslog(LOG_NOTICE, "mount.mstore: symlink %s refused: only regular "
	    "files and directories are stored", name);
	fuse_reply_err(req, EPERM);
}

/*
 * The kernel must not drop a file's pages because its mtime moved: our
 * own writes move it, and pages dropped under a shared mmap are costly.
 * Pages go when the store says another host changed the file (see
 * ops_file.c). Locks are ours (ops_lock.c), so they hold across hosts.
 */
void
op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* A write(2) of up to 1 MiB is one WRITE (libfuse asks the kernel
	 * for the pages, max_pages, that this needs). */
	conn->max_write = MNT_MEM_MAX;
	if (conn->capable & FUSE_CAP_POSIX_LOCKS)
		conn->want |= FUSE_CAP_POSIX_LOCKS;
	if (conn->capable & FUSE_CAP_FLOCK_LOCKS)
		conn->want |= FUSE_CAP_FLOCK_LOCKS;
	/*
	 * Lookups and listings of one directory may run at once: the
	 * mount's state is under m->mu, never held across a store call;
	 * a folder's LIST is one at a time (folder_refresh); two lookups
	 * of one name find or make one minode under m->mu. Creates,
	 * links, renames and unlinks still hold the directory's lock.
	 */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* A listing of new/ or cur/ carries every message's attributes. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
}
