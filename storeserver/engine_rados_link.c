/*
 * engine_rados_link.c - the lives of the rados back-end's ordinary
 * files beyond one name: LINK (a second name), the OPEN references that
 * keep a file whose last name went (R8 of the local engine, eng_file.c),
 * and what a file losing a name does to its object f.<id>.
 *
 * References: per connection (j->owner) they are counted in this
 * server's memory, as the local engine does; the store knows only which
 * servers hold some: f.<id> omap o.<inc> = "1" and on = how many such
 * keys (16 hex, absent when 0). A server's first reference to a file
 * and its last are ONE write each, guarded by o.<inc> and on; the name
 * count nlink lives in omap a. The object is removed only by a write
 * guarded by both a (nlink 0) and on (absent), so an UNLINK on one
 * server and the last CLOSE on another never both leave it, nor both
 * miss removing it. |e->omu| guards the in-memory table; the stripe
 * lock of f.<id> is held around a reference's change and the write it
 * may need, so that two of this server's workers do not race on
 * o.<inc>. Lock order: the stripe lock, then omu (never held across a
 * call to the cluster).
 *
 * A server that dies keeps its o.<inc> keys: every server holds a lease
 * mst.open.<inc> (cls_lock "live", OPEN_LEASE_S, renewed by a thread),
 * a file that loses its last name while held is first noted in
 * mst.orphans, and every OPEN_SWEEP_MS each server drops, from each
 * noted file, the keys of servers whose lease lapsed (one guarded write
 * each, removing the object with the last). A server cut off from the
 * cluster longer than the lease loses its references the same way.
 *
 * LINK raises nlink first and names the file second, so a crash in
 * between leaves nlink too high (the file outlives its names: scrub),
 * never too low (a name pointing at a removed object).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "engine_rados.h"
#include "log.h"
#include "reply.h"

static void
on_hex(char *out, uint64_t v)
{
	re_hex(out, v);
}

/* Guard that the open count is still |on| (absent when 0). */
static void
cmp_on(rados_write_op_t op, uint64_t on)
{
	char h[17];

	on_hex(h, on);
	re_cmp(op, "on", on ? h : "", on ? 16 : 0);
}

static void
set_on(rados_write_op_t op, uint64_t on)
{
	char h[17];

	if (on == 0) {
		re_rm(op, "on");
		return;
	}
	on_hex(h, on);
	re_set(op, "on", h, 16);
}

/* --- orphans: files that lost their last name while held open --- */

#define ORPHANS		"mst.orphans"
#define OPEN_LEASE_S	10	/* a server's open lease, seconds */
#define OPEN_RENEW_MS	3000
#define OPEN_SWEEP_MS	5000

static void
lease_oid(char *out, uint64_t inc)
{
	memcpy(out, "mst.open.", 9);
	re_hex(out + 9, inc);
}

/* Record |id| in mst.orphans, before it may become one (so that a sweep
 * finds it however the servers holding it end). */
static int
orphan_note(struct rados_engine *e, uint64_t id)
{
	rados_write_op_t op = rados_create_write_op();
	char k[17];
	int rc;

	if (op == NULL)
		return -ENOMEM;
	re_hex(k, id);
	rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
	re_set(op, k, "1", 1);
	rc = re_write(e, ORPHANS, op);
	return rc < 0 ? re_err("note an orphan in", ORPHANS, rc) : 0;
}

static void
orphan_forget(struct rados_engine *e, uint64_t id)
{
	rados_write_op_t op = rados_create_write_op();
	char k[17];

	if (op == NULL)
		return;
	re_hex(k, id);
	re_rm(op, k);
	(void)re_write(e, ORPHANS, op);	/* a leftover costs one read */
}

/* --- one guarded update of a file --- */

int
re_fa_update(struct rados_engine *e, uint64_t id, re_fa_edit_fn *edit,
    void *arg, const char *what)
{
	uint8_t raw[RE_FA_LEN];
	char oid[RE_OID_MAX];
	struct fattr f;
	rados_write_op_t op;
	uint64_t on;
	int rc, tries;

	re_oid(oid, 'f', id);
	for (tries = 0; tries < RE_RETRIES; tries++) {
		rc = re_fa_read(e, id, &f, raw, &on);
		if (rc < 0)
			return rc;
		if ((op = rados_create_write_op()) == NULL)
			return -ENOMEM;
		re_cmp(op, "a", raw, RE_FA_LEN);
		cmp_on(op, on);
		rc = edit(e, id, &f, on, op, arg);
		if (rc != 0) {
			rados_release_write_op(op);
			return rc;
		}
		rc = re_write(e, oid, op);
		if (rc == 0 || rc == -ENOENT)
			return rc;
		if (rc != -ECANCELED)
			return re_err(what, oid, rc);
	}
	return re_err(what, oid, -EAGAIN);	/* too many races */
}

/* Set the attributes |f| with a new ctime and version. */
static void
fa_set_changed(rados_write_op_t op, struct fattr *f)
{
	uint8_t val[RE_FA_LEN];

	f->ctime = (uint64_t)re_now();
	f->ver++;
	re_fa_encode(f, val);
	re_set(op, "a", val, RE_FA_LEN);
}

/* Set (|set|) or remove the name key of |path|. */
static void
fa_name(rados_write_op_t op, struct mst_str path, int set)
{
	char kn[RE_NKEY_MAX];

	re_name_key(kn, path.p, path.len);
	if (set)
		re_set(op, kn, "1", 1);
	else
		re_rm(op, kn);
}

/* --- a name goes, a name moves --- */

void
re_name_key(char *out, const char *path, size_t len)
{
	out[0] = 'n';
	out[1] = '.';
	memcpy(out + 2, path, len);
	out[2 + len] = '\0';
}

static int
edit_unlinked(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	int rc;

	if (f->nlink)
		f->nlink--;
	if (f->nlink == 0 && on && (rc = orphan_note(e, id)) < 0)
		return rc;
	if (f->nlink == 0 && on == 0) {
		rados_write_op_remove(op);
		return 0;
	}
	fa_set_changed(op, f);
	fa_name(op, *(struct mst_str *)arg, 0);
	return 0;
}

void
re_file_unlinked(struct rados_engine *e, uint64_t id, const char *path,
    size_t plen)
{
	struct mst_str p = { path, (uint16_t)plen };
	int rc = re_fa_update(e, id, edit_unlinked, &p, "unlink");

	if (rc < 0 && rc != -ENOENT)
		log_warn("rados: file %016" PRIx64 " lost a name, its link "
		    "count not: %s (left for scrub)", id, strerror(-rc));
}

struct rename_arg {
	struct mst_str from, to;
	uint64_t parent;
};

static int
edit_renamed(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	const struct rename_arg *r = arg;

	(void)e, (void)id, (void)on;
	f->parent = r->parent;		/* for GETATTR's dir fields */
	fa_set_changed(op, f);
	fa_name(op, r->from, 0);
	fa_name(op, r->to, 1);
	return 0;
}

void
re_file_touch(struct rados_engine *e, uint64_t id, const char *from,
    size_t flen, const char *to, size_t tlen, uint64_t parent)
{
	struct rename_arg r = { { from, (uint16_t)flen },
		{ to, (uint16_t)tlen }, parent };
	int rc = re_fa_update(e, id, edit_renamed, &r, "rename");

	if (rc < 0 && rc != -ENOENT)
		log_warn("rados: file %016" PRIx64 ": ctime after a rename: "
		    "%s", id, strerror(-rc));
}

/* --- LINK --- */

struct link_arg {
	struct mst_str path;
	struct fattr *out;	/* the attributes written */
};

static int
edit_link(struct rados_engine *e, uint64_t id, struct fattr *f,
    uint64_t on, rados_write_op_t op, void *arg)
{
	struct link_arg *l = arg;

	(void)e, (void)id, (void)on;
	if (f->nlink == 0)
		return -ENOENT;		/* as linkat of an unlinked file */
	if (f->nlink >= 65000)
		return -EMLINK;
	f->nlink++;
	fa_set_changed(op, f);
	fa_name(op, l->path, 1);
	*l->out = *f;
	return 0;
}

int
re_op_link(struct rados_engine *e, struct job *j)
{
	const struct mst_link_req *l = &j->req.link;
	struct mst_attr_rep rep = { 0 };
	struct rentry en = { .type = MST_T_FILE, .id = l->id };
	char oid[RE_OID_MAX];
	struct rstate st;
	struct rstore s;
	struct rres dir;
	struct fattr f;
	const char *name;
	size_t nlen;
	int rc;

	rc = re_fa_read(e, l->id, &f, NULL, NULL);
	if (rc == -ENOENT) {
		re_oid(oid, 'b', l->id);
		if (rados_stat(e->io, oid, NULL, NULL) == 0)
			return -EXDEV;	/* messages: one name, one folder */
		re_oid(oid, 'd', l->id);
		return rados_stat(e->io, oid, NULL, NULL) == 0 ? -EPERM :
		    -ENOENT;
	}
	if (rc < 0)
		return rc;
	if (f.nlink == 0)
		return -ENOENT;
	if (l->path.len == 0)
		return -EEXIST;		/* the root */
	rc = re_parent_of(e, l->path, &dir, &s, &name, &nlen);
	if (rc < 0)
		return rc;
	rc = re_fa_update(e, l->id, edit_link, &(struct link_arg){ l->path,
	    &f }, "link");
	if (rc < 0)
		return rc;
	en.mode = f.mode;
	en.uid = f.uid;
	en.gid = f.gid;
	en.mtime = f.mtime;
	en.ctime = f.ctime;
	en.atime = f.atime;
	en.size = f.size;
	rc = re_dir_entry(e, &s, name, nlen, &en, NULL, &st);
	if (rc == -EEXIST || rc == -ENOENT) {
		/* never named: undo */
		re_file_unlinked(e, l->id, l->path.p, l->path.len);
		return rc;
	}
	if (rc < 0)		/* a timed-out write may name it: nlink stays */
		return rc;
	rc = re_file_attr(e, l->id, &rep.attr, NULL);
	if (rc < 0)
		return rc;
	rep.dir_change = st.c;
	rep.dir_mtime_ns = st.t;
	rc = reply_attr_rep(j, &rep);
	if (rc == 0)
		rc = re_notice(j, l->path.p, re_dir_len(l->path.p,
		    l->path.len), name, nlen, MST_EV_ADD, l->id, st.c);
	if (rc == 0)	/* its other names: a new ctime and link count */
		re_file_changed(e, j, l->id, l->path.p, l->path.len);
	return rc;
}

/* --- OPEN references --- */

static struct roref **
oref_slot(struct rados_engine *e, uint64_t owner, uint64_t id)
{
	struct roref **pp = &e->orefs[(id * 0x9e3779b97f4a7c15ull) >> 56];

	while (*pp && ((*pp)->owner != owner || (*pp)->id != id))
		pp = &(*pp)->next;
	return pp;
}

/* How many references this server holds on |id| (omu held). */
static uint64_t
oref_server_count(struct rados_engine *e, uint64_t id)
{
	struct roref *o = e->orefs[(id * 0x9e3779b97f4a7c15ull) >> 56];
	uint64_t n = 0;

	for (; o; o = o->next)
		if (o->id == id)
			n += o->count;
	return n;
}

struct hold_arg {
	int take;
	char ko[RE_OID_MAX];	/* o.<this server's incarnation> */
	int removed;
};

static int
edit_hold(struct rados_engine *e, uint64_t id, struct fattr *f, uint64_t on,
    rados_write_op_t op, void *arg)
{
	struct hold_arg *h = arg;

	(void)e, (void)id;
	h->removed = 0;
	if (h->take) {
		re_cmp(op, h->ko, "", 0);
		re_set(op, h->ko, "1", 1);
		set_on(op, on + 1);
		return 0;
	}
	re_cmp(op, h->ko, "1", 1);
	if (on <= 1 && f->nlink == 0) {
		rados_write_op_remove(op);
		h->removed = 1;
		return 0;
	}
	re_rm(op, h->ko);
	set_on(op, on ? on - 1 : 0);
	return 0;
}

/*
 * This server starts (|take|) or stops holding file |id|: ONE write of
 * o.<inc> and on; stopping removes the object when it has no name and
 * no other server holds it. 0, -ENOENT (taking: the file is gone), or
 * an error.
 */
static int
server_hold(struct rados_engine *e, uint64_t id, int take)
{
	struct hold_arg h = { .take = take };
	int rc;

	re_oid(h.ko, 'o', e->inc);
	rc = re_fa_update(e, id, edit_hold, &h, take ? "open" : "close");
	if (rc == 0 && h.removed)
		orphan_forget(e, id);
	return rc == -ENOENT && !take ? 0 : rc;
}

/* Take (|d| = 1) or drop (|d| = -1, or all of them with |all|) the
 * references of |owner| on |id|: 0, -EBADF (none to drop), -ENOENT. */
static int
oref_change(struct rados_engine *e, uint64_t owner, uint64_t id, int d,
    int all)
{
	char oid[RE_OID_MAX];
	pthread_mutex_t *mu;
	struct roref **pp, *o;
	uint64_t before, after;
	int rc = 0, held = 0;

	re_oid(oid, 'f', id);
	mu = re_stripe(e, oid);
	pthread_mutex_lock(mu);
	pthread_mutex_lock(&e->omu);
	pp = oref_slot(e, owner, id);
	before = oref_server_count(e, id);
	pthread_mutex_unlock(&e->omu);
	if (d < 0 && *pp == NULL) {
		pthread_mutex_unlock(mu);
		return -EBADF;
	}
	if (d > 0 && before == 0) {
		rc = server_hold(e, id, 1);
		held = rc == 0;
	}
	pthread_mutex_lock(&e->omu);
	pp = oref_slot(e, owner, id);
	if (rc == 0 && d > 0 && *pp == NULL) {
		if ((o = calloc(1, sizeof *o)) == NULL) {
			rc = -ENOMEM;
		} else {
			o->owner = owner;
			o->id = id;
			*pp = o;
		}
	}
	if (rc == 0 && d > 0)
		(*pp)->count++;
	if (rc == 0 && d < 0) {
		o = *pp;
		o->count -= all ? o->count : 1;
		if (o->count == 0) {
			*pp = o->next;
			free(o);
		}
	}
	after = oref_server_count(e, id);
	pthread_mutex_unlock(&e->omu);
	if ((before || held) && after == 0) {
		int r2 = server_hold(e, id, 0);

		if (r2 < 0)
			log_warn("rados: %s: dropping this server's hold: %s",
			    oid, strerror(-r2));
	}
	pthread_mutex_unlock(mu);
	return rc;
}

int
re_op_open(struct rados_engine *e, struct job *j)
{
	struct mst_attr_rep rep = { 0 };
	uint64_t id = j->req.fid.id;
	struct fattr f;
	int rc;

	if (j->owner == 0)
		return -EINVAL;
	rc = re_fa_read(e, id, &f, NULL, NULL);
	if (rc < 0)
		return rc;
	rc = oref_change(e, j->owner, id, 1, 0);
	if (rc == 0)
		rc = re_file_attr(e, id, &rep.attr, &rep);
	if (rc == 0)
		rc = reply_attr_rep(j, &rep);
	return rc;
}

int
re_op_close(struct rados_engine *e, struct job *j)
{
	uint8_t *p;
	struct fattr f;
	int rc;

	if (j->owner == 0)
		return -EINVAL;
	rc = oref_change(e, j->owner, j->req.fid.id, -1, 0);
	if (rc == -EBADF) {
		rc = re_fa_read(e, j->req.fid.id, &f, NULL, NULL);
		if (rc == 0)
			rc = -EBADF;	/* never opened by this owner */
	}
	if (rc < 0)
		return rc;
	p = malloc(1);
	return p ? job_add_frame(j, p, 0) : -ENOMEM;
}

void
re_close_owner(struct rados_engine *e, uint64_t owner)
{
	struct roref *o;
	uint64_t id;
	size_t i;

	for (i = 0; i < RE_OREF_BUCKETS; i++) {
		for (;;) {
			pthread_mutex_lock(&e->omu);
			for (o = e->orefs[i]; o && o->owner != owner;
			    o = o->next)
				;
			id = o ? o->id : 0;
			pthread_mutex_unlock(&e->omu);
			if (o == NULL)
				break;
			(void)oref_change(e, owner, id, -1, 1); /* logged */
		}
	}
}

void
re_orefs_free(struct rados_engine *e)
{
	struct roref *o;
	size_t i;

	for (i = 0; i < RE_OREF_BUCKETS; i++)
		while ((o = e->orefs[i]) != NULL) {
			e->orefs[i] = o->next;
			free(o);
		}
}

/* --- the open lease and the sweep of dead servers' references --- */

static int
lease_take(struct rados_engine *e, uint8_t flags)
{
	struct timeval tv = { OPEN_LEASE_S, 0 };
	char oid[RE_OID_MAX];

	lease_oid(oid, e->inc);
	return rados_lock_exclusive(e->io, oid, "live", "mstored",
	    "mstored open references", &tv, flags);
}

/* Does server |inc| still hold its lease? 1, 0, or an error. */
static int
inc_alive(struct rados_engine *e, uint64_t inc)
{
	char oid[RE_OID_MAX], tag[64], clients[256], cookies[256], addrs[256];
	size_t tl = sizeof tag, cl = sizeof clients, kl = sizeof cookies,
	    al = sizeof addrs;
	int excl = 0;
	ssize_t n;

	if (inc == e->inc)
		return 1;
	lease_oid(oid, inc);
	n = rados_list_lockers(e->io, oid, "live", &excl, tag, &tl, clients,
	    &cl, cookies, &kl, addrs, &al);
	if (n == -ENOENT)
		return 0;
	if (n < 0)
		return re_err("list lockers of", oid, (int)n);
	return n > 0;
}

/* Drop the references of dead servers on orphan |id|; the object goes
 * with the last. */
static void
sweep_one(struct rados_engine *e, uint64_t id)
{
	uint8_t raw[RE_FA_LEN];
	char oid[RE_OID_MAX];
	struct kvset page = { 0 };
	struct fattr f;
	rados_write_op_t op;
	uint64_t on, inc;
	size_t i;
	int rc, more = 0, dropped = 0;

	re_oid(oid, 'f', id);
	rc = re_fa_read(e, id, &f, raw, &on);
	if (rc == -ENOENT || (rc == 0 && (f.nlink || on == 0))) {
		orphan_forget(e, id);	/* gone, named again, or held by none */
		return;
	}
	if (rc == 0)
		rc = re_read(e, oid, NULL, NULL, "o.", "o.", 1024, &page,
		    &more);
	for (i = 0; rc == 0 && i < page.n; i++) {
		if (re_unhex(page.a[i].k + 2, page.a[i].klen - 2, &inc) < 0 ||
		    inc_alive(e, inc) != 0)
			continue;
		/* One server at a time, each guarded by what was read. */
		if ((op = rados_create_write_op()) == NULL)
			break;
		cmp_on(op, on);
		re_cmp(op, page.a[i].k, "1", 1);
		if (on <= 1) {
			re_cmp(op, "a", raw, RE_FA_LEN);
			rados_write_op_remove(op);
		} else {
			re_rm(op, page.a[i].k);
			set_on(op, on - 1);
		}
		rc = re_write(e, oid, op);
		if (rc < 0)
			break;		/* changed meanwhile: the next sweep */
		dropped++;
		if (--on == 0) {
			orphan_forget(e, id);
			log_info("rados: %s: removed, unlinked and held open "
			    "only by servers that are gone", oid);
		}
	}
	if (dropped && on)
		log_info("rados: %s: dropped the references of %d gone "
		    "server(s)", oid, dropped);
	kvset_free(&page);
}

static void
sweep(struct rados_engine *e)
{
	struct kvset page = { 0 };
	uint64_t id;
	size_t i;
	int more = 0;

	if (re_read(e, ORPHANS, NULL, NULL, "", "", 1024, &page, &more) < 0) {
		kvset_free(&page);
		return;
	}
	for (i = 0; i < page.n; i++)
		if (re_unhex(page.a[i].k, page.a[i].klen, &id) == 0)
			sweep_one(e, id);
	kvset_free(&page);
}

static void *
sweeper_main(void *arg)
{
	struct rados_engine *e = arg;
	struct timespec ts;
	int64_t last_sweep = 0, now;
	int rc;

	pthread_mutex_lock(&e->omu);
	while (!e->ostop) {
		pthread_mutex_unlock(&e->omu);
		rc = lease_take(e, LIBRADOS_LOCK_FLAG_MUST_RENEW);
		if (rc == -ENOENT)	/* lapsed: take it again */
			rc = lease_take(e, 0);
		if (rc < 0)
			log_warn("rados: renewing the open lease: %s (other "
			    "servers may drop this server's references)",
			    strerror(-rc));
		now = re_now();
		if (now - last_sweep >= OPEN_SWEEP_MS * 1000000ll) {
			sweep(e);
			last_sweep = now;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += OPEN_RENEW_MS / 1000;
		pthread_mutex_lock(&e->omu);
		if (!e->ostop)
			pthread_cond_timedwait(&e->ocv, &e->omu, &ts);
	}
	pthread_mutex_unlock(&e->omu);
	return NULL;
}

void
re_orefs_start(struct rados_engine *e)
{
	int rc = lease_take(e, 0);

	if (rc < 0) {
		log_warn("rados: taking the open lease: %s (this server's "
		    "OPEN references may be dropped by others)",
		    strerror(-rc));
	}
	rc = pthread_create(&e->osweeper, NULL, sweeper_main, e);
	if (rc != 0) {
		log_err("rados: starting the open-lease thread: %s",
		    strerror(rc));
		return;
	}
	e->osweeping = 1;
}

void
re_orefs_stop(struct rados_engine *e)
{
	struct roref *o;
	uint64_t owner;
	size_t i;
	char oid[RE_OID_MAX];
	int rc;

	if (e->osweeping) {
		pthread_mutex_lock(&e->omu);
		e->ostop = 1;
		pthread_cond_broadcast(&e->ocv);
		pthread_mutex_unlock(&e->omu);
		pthread_join(e->osweeper, NULL);
		e->osweeping = 0;
	}
	/* References still held (connections not ended) go now. */
	for (i = 0; i < RE_OREF_BUCKETS;) {
		pthread_mutex_lock(&e->omu);
		o = e->orefs[i];
		owner = o ? o->owner : 0;
		pthread_mutex_unlock(&e->omu);
		if (o)
			re_close_owner(e, owner);	/* frees them all */
		else
			i++;
	}
	lease_oid(oid, e->inc);
	rc = rados_unlock(e->io, oid, "live", "mstored");
	if (rc < 0 && rc != -ENOENT)
		log_warn("rados: giving up the open lease: %s", strerror(-rc));
}
