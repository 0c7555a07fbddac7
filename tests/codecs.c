/*
 * codecs.c - the test table of libmstproto payload layouts (see
 * codecs.h). Owns the fixed samples and the definition of a decoder's
 * contract that the unit suite and the fuzzer both enforce. Test support
 * only: it may allocate and keep static sample buffers; it never changes
 * what libmstproto accepts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs.h"

struct codecs_diff {
	char *why;
	size_t cap;
	int bad;
};

static void
diff_u64(struct codecs_diff *d, const char *pre, const char *name,
    uint64_t got, uint64_t want)
{
	if (d->bad || got == want)
		return;
	d->bad = 1;
	snprintf(d->why, d->cap, "%s%s: got %#" PRIx64 ", want %#" PRIx64,
	    pre, name, got, want);
}

static void
diff_int(struct codecs_diff *d, const char *pre, const char *name, int got,
    int want)
{
	if (d->bad || got == want)
		return;
	d->bad = 1;
	snprintf(d->why, d->cap, "%s%s: got %d (%s), want %d (%s)", pre, name,
	    got, codecs_errname(got), want, codecs_errname(want));
}

/* Byte views; a zero length never dereferences the pointer. */
static void
diff_view(struct codecs_diff *d, const char *pre, const char *name,
    const void *gp, size_t glen, const void *wp, size_t wlen)
{
	const uint8_t *g = gp, *w = wp;
	size_t i;

	if (d->bad)
		return;
	if (glen != wlen) {
		d->bad = 1;
		snprintf(d->why, d->cap, "%s%s: got length %zu, want %zu", pre,
		    name, glen, wlen);
		return;
	}
	for (i = 0; i < glen; i++)
		if (g[i] != w[i])
			break;
	if (i == glen)
		return;
	d->bad = 1;
	snprintf(d->why, d->cap, "%s%s: got byte %zu = 0x%02x, want 0x%02x",
	    pre, name, i, g[i], w[i]);
}

#define U(f)	diff_u64(d, "", #f, g->f, w->f)
#define S(f)	diff_view(d, "", #f, g->f.p, g->f.len, w->f.p, w->f.len)
#define A(f)	diff_view(d, "", #f, g->f, sizeof g->f, w->f, sizeof w->f)

static void
diff_attr(struct codecs_diff *d, const char *pre, const struct mst_attr *g,
    const struct mst_attr *w)
{
	diff_u64(d, pre, "type", g->type, w->type);
	diff_u64(d, pre, "id", g->id, w->id);
	diff_u64(d, pre, "size", g->size, w->size);
	diff_u64(d, pre, "mode", g->mode, w->mode);
	diff_u64(d, pre, "uid", g->uid, w->uid);
	diff_u64(d, pre, "gid", g->gid, w->gid);
	diff_u64(d, pre, "nlink", g->nlink, w->nlink);
	diff_u64(d, pre, "mtime_ns", g->mtime_ns, w->mtime_ns);
	diff_u64(d, pre, "ctime_ns", g->ctime_ns, w->ctime_ns);
	diff_u64(d, pre, "change", g->change, w->change);
	diff_u64(d, pre, "atime_ns", g->atime_ns, w->atime_ns);
}

static void
diff_entry(struct codecs_diff *d, const char *pre,
    const struct mst_list_entry *g, const struct mst_list_entry *w)
{
	char apre[64];

	snprintf(apre, sizeof apre, "%sattr.", pre);
	diff_u64(d, pre, "kind", g->kind, w->kind);
	diff_view(d, pre, "name", g->name.p, g->name.len, w->name.p,
	    w->name.len);
	diff_attr(d, apre, &g->attr, &w->attr);
}

static void
diff_hello_req(struct codecs_diff *d, const struct mst_hello_req *g,
    const struct mst_hello_req *w)
{
	U(min_version);
	U(max_version);
	U(features);
	U(max_frame);
	S(client);
	A(nonce);
}

static void
diff_hello_rep(struct codecs_diff *d, const struct mst_hello_rep *g,
    const struct mst_hello_rep *w)
{
	U(version);
	U(features);
	U(max_frame);
	U(max_body);
	U(server_id);
	S(server);
	A(nonce);
}

static void
diff_auth(struct codecs_diff *d, const struct mst_auth *g,
    const struct mst_auth *w)
{
	A(proof);
}

static void
diff_ping(struct codecs_diff *d, const struct mst_ping *g,
    const struct mst_ping *w)
{
	U(cookie);
}

static void
diff_deliver_req(struct codecs_diff *d, const struct mst_deliver_req *g,
    const struct mst_deliver_req *w)
{
	S(mailbox);
	S(folder);
	U(sub);
	S(name);
	A(idem);
	U(checksum);
	U(body_size);
	U(mode);
	U(uid);
	U(gid);
	U(mtime_ns);
	S(body);
}

static void
diff_stage_req(struct codecs_diff *d, const struct mst_stage_req *g,
    const struct mst_stage_req *w)
{
	S(mailbox);
	S(folder);
	A(idem);
	U(checksum);
	U(body_size);
	U(mode);
	U(uid);
	U(gid);
	S(body);
}

static void
diff_commit_req(struct codecs_diff *d, const struct mst_commit_req *g,
    const struct mst_commit_req *w)
{
	S(mailbox);
	S(folder);
	U(sub);
	S(name);
	A(idem);
	U(checksum);
	U(body_size);
	U(mode);
	U(uid);
	U(gid);
	U(mtime_ns);
}

static void
diff_spool_req(struct codecs_diff *d, const struct mst_spool_req *g,
    const struct mst_spool_req *w)
{
	S(mailbox);
	A(idem);
	U(offset);
	U(length);
	S(data);
}

static void
diff_attr_rep(struct codecs_diff *d, const struct mst_attr_rep *g,
    const struct mst_attr_rep *w)
{
	diff_attr(d, "attr.", &g->attr, &w->attr);
	U(dir_change);
	U(dir_mtime_ns);
}

static void
diff_list_req(struct codecs_diff *d, const struct mst_list_req *g,
    const struct mst_list_req *w)
{
	S(mailbox);
	S(folder);
	U(sub);
	U(since);
}

/* The fixed fields, then both entry runs walked side by side. */
static void
diff_list_rep(struct codecs_diff *d, const struct mst_list_rep *g,
    const struct mst_list_rep *w)
{
	struct mst_list_entry ge, we;
	size_t goff = 0, woff = 0;
	unsigned i;
	int grc, wrc;
	char pre[32];

	U(change);
	U(dir_mtime_ns);
	U(flags);
	U(count);
	U(entries_len);
	for (i = 0; !d->bad; i++) {
		snprintf(pre, sizeof pre, "entries[%u].", i);
		grc = mst_list_entry_next(&ge, g, &goff);
		wrc = mst_list_entry_next(&we, w, &woff);
		diff_int(d, pre, "next", grc, wrc);
		if (grc != 1 || wrc != 1)
			break;
		diff_entry(d, pre, &ge, &we);
	}
}

static void
diff_msg_ref(struct codecs_diff *d, const struct mst_msg_ref *g,
    const struct mst_msg_ref *w)
{
	S(mailbox);
	S(folder);
	U(sub);
	S(name);
}

static void
diff_fetch_req(struct codecs_diff *d, const struct mst_fetch_req *g,
    const struct mst_fetch_req *w)
{
	S(mailbox);
	U(id);
	U(offset);
	U(length);
}

static void
diff_data_rep(struct codecs_diff *d, const struct mst_data_rep *g,
    const struct mst_data_rep *w)
{
	U(total_size);
	U(checksum);
	S(data);
}

static void
diff_setinfo_req(struct codecs_diff *d, const struct mst_setinfo_req *g,
    const struct mst_setinfo_req *w)
{
	S(mailbox);
	S(folder);
	U(from_sub);
	S(from_name);
	U(to_sub);
	S(to_name);
	U(flags);
}

static void
diff_change_rep(struct codecs_diff *d, const struct mst_change_rep *g,
    const struct mst_change_rep *w)
{
	U(dir_change);
	U(dir_mtime_ns);
}

static void
diff_path_req(struct codecs_diff *d, const struct mst_path_req *g,
    const struct mst_path_req *w)
{
	S(path);
}

static void
diff_mkdir_req(struct codecs_diff *d, const struct mst_mkdir_req *g,
    const struct mst_mkdir_req *w)
{
	S(path);
	U(mode);
	U(uid);
	U(gid);
}

static void
diff_put_req(struct codecs_diff *d, const struct mst_put_req *g,
    const struct mst_put_req *w)
{
	S(path);
	U(flags);
	U(mode);
	U(uid);
	U(gid);
	U(mtime_ns);
	U(checksum);
	U(body_size);
	S(body);
}

static void
diff_get_req(struct codecs_diff *d, const struct mst_get_req *g,
    const struct mst_get_req *w)
{
	S(path);
	U(offset);
	U(length);
}

static void
diff_rename_req(struct codecs_diff *d, const struct mst_rename_req *g,
    const struct mst_rename_req *w)
{
	S(from);
	S(to);
	U(flags);
}

static void
diff_setattr_req(struct codecs_diff *d, const struct mst_setattr_req *g,
    const struct mst_setattr_req *w)
{
	S(path);
	U(valid);
	U(mode);
	U(uid);
	U(gid);
	U(size);
	U(mtime_ns);
}

static void
diff_statfs_rep(struct codecs_diff *d, const struct mst_statfs_rep *g,
    const struct mst_statfs_rep *w)
{
	U(bytes_total);
	U(bytes_free);
	U(files_total);
	U(files_free);
	U(quota_bytes);
	U(used_bytes);
	U(quota_msgs);
	U(used_msgs);
	U(max_body);
	U(name_max);
}

static void
diff_watch_rep(struct codecs_diff *d, const struct mst_watch_rep *g,
    const struct mst_watch_rep *w)
{
	U(change);
}

static void
diff_notify(struct codecs_diff *d, const struct mst_notify *g,
    const struct mst_notify *w)
{
	S(path);
	U(event);
	S(name);
	U(id);
	U(change);
}

static void
diff_error_rep(struct codecs_diff *d, const struct mst_error_rep *g,
    const struct mst_error_rep *w)
{
	S(detail);
}

static void
diff_admin_req(struct codecs_diff *d, const struct mst_admin_req *g,
    const struct mst_admin_req *w)
{
	S(cmd);
	S(arg);
}

static void
diff_admin_rep(struct codecs_diff *d, const struct mst_admin_rep *g,
    const struct mst_admin_rep *w)
{
	S(text);
}

static void
diff_id_req(struct codecs_diff *d, const struct mst_id_req *g,
    const struct mst_id_req *w)
{
	U(id);
}

static void
diff_read_req(struct codecs_diff *d, const struct mst_read_req *g,
    const struct mst_read_req *w)
{
	U(id);
	U(offset);
	U(length);
}

static void
diff_write_req(struct codecs_diff *d, const struct mst_write_req *g,
    const struct mst_write_req *w)
{
	U(id);
	U(offset);
	U(flags);
	U(checksum);
	U(body_size);
	S(body);
}

static void
diff_fsetattr_req(struct codecs_diff *d, const struct mst_fsetattr_req *g,
    const struct mst_fsetattr_req *w)
{
	U(id);
	U(valid);
	U(mode);
	U(uid);
	U(gid);
	U(size);
	U(mtime_ns);
	U(atime_ns);
}

static void
diff_link_req(struct codecs_diff *d, const struct mst_link_req *g,
    const struct mst_link_req *w)
{
	U(id);
	S(path);
}

static void
diff_lock_req(struct codecs_diff *d, const struct mst_lock_req *g,
    const struct mst_lock_req *w)
{
	U(id);
	U(owner);
	U(pid);
	U(type);
	U(flags);
	U(start);
	U(end);
}

static void
diff_lock_rep(struct codecs_diff *d, const struct mst_lock_rep *g,
    const struct mst_lock_rep *w)
{
	U(type);
	U(pid);
	U(start);
	U(end);
}

#undef U
#undef S
#undef A

/*
 * Samples: every field set, and to a value no other field of the same
 * layout holds, so a swapped or dropped field shows in a round trip.
 */
#define MAILBOX	"example.com/al"
#define MSGNAME	"1700000000.M1P2.smtp1"
#define T0	1700000000123456789ull

static const char mail_body[] = "From: al@example.com\r\n"
				"To: bo@example.com\r\n"
				"Subject: hi\r\n\r\nhello\r\n";
static const char uidlist[] = "3 V1700000000 N5\n4 " MSGNAME "\n";

static struct mst_str
str(const char *s)
{
	return mst_str_of(s);
}

static struct mst_bytes
bytes(const void *p, size_t len)
{
	struct mst_bytes b = { p, (uint32_t)len };

	return b;
}

static void
fill(uint8_t *p, size_t n, uint8_t first)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(first + i);
}

static void
sample_attr(struct mst_attr *a, uint8_t type, uint64_t id)
{
	a->type = type;
	a->id = id;
	a->size = 1234;
	a->mode = 0640;
	a->uid = 5000;
	a->gid = 5001;
	a->nlink = 1;
	a->mtime_ns = T0 + 1;
	a->ctime_ns = T0 + 2;
	a->change = 77;
	a->atime_ns = T0 + 8;
}

static void
sample_hello_req(union codecs_msg *u)
{
	struct mst_hello_req *m = &u->hello_req;

	m->min_version = 1;
	m->max_version = 3;
	m->features = MST_FEAT_ALL;
	m->max_frame = MST_FRAME_DEFAULT;
	m->client = str("mount.mstore 0.1 smtp1");
	fill(m->nonce, sizeof m->nonce, 0x40);
}

static void
sample_hello_rep(union codecs_msg *u)
{
	struct mst_hello_rep *m = &u->hello_rep;

	m->version = MST_VERSION;
	m->features = MST_FEAT_WATCH;
	m->max_frame = 2u << 20;
	m->max_body = 1ull << 30;
	m->server_id = 0x1122334455667788ull;
	m->server = str("mstored 0.1 store1");
	fill(m->nonce, sizeof m->nonce, 0xa0);
}

static void
sample_auth(union codecs_msg *u)
{
	fill(u->auth.proof, sizeof u->auth.proof, 0x10);
}

static void
sample_ping(union codecs_msg *u)
{
	u->ping.cookie = 0x0102030405060708ull;
}

static void
sample_deliver_req(union codecs_msg *u)
{
	struct mst_deliver_req *m = &u->deliver_req;
	size_t n = sizeof mail_body - 1;

	m->mailbox = str(MAILBOX);
	m->folder = str(".Sent");
	m->sub = MST_SUB_CUR;
	m->name = str(MSGNAME ":2,S");
	fill(m->idem, sizeof m->idem, 0x60);
	m->checksum = mst_checksum(mail_body, n);
	m->body_size = n;
	m->mode = 0600;
	m->uid = 5000;
	m->gid = 5001;
	m->mtime_ns = T0;
	m->body = bytes(mail_body, n);
}

static void
sample_stage_req(union codecs_msg *u)
{
	struct mst_stage_req *m = &u->stage_req;
	size_t n = sizeof mail_body - 1;

	m->mailbox = str(MAILBOX);
	m->folder = str(".Sent");
	fill(m->idem, sizeof m->idem, 0x70);
	m->checksum = mst_checksum(mail_body, n);
	m->body_size = n;
	m->mode = 0600;
	m->uid = 5000;
	m->gid = 5001;
	m->body = bytes(mail_body, n);
}

static void
sample_commit_req(union codecs_msg *u)
{
	struct mst_commit_req *m = &u->commit_req;

	m->mailbox = str(MAILBOX);
	m->folder = str("");
	m->sub = MST_SUB_NEW;
	m->name = str(MSGNAME);
	fill(m->idem, sizeof m->idem, 0x70);
	m->checksum = mst_checksum(mail_body, sizeof mail_body - 1);
	m->body_size = sizeof mail_body - 1;
	m->mode = 0600;
	m->uid = 5000;
	m->gid = 5001;
	m->mtime_ns = T0;
}

static void
sample_spool_req(union codecs_msg *u)
{
	struct mst_spool_req *m = &u->spool_req;

	m->mailbox = str(MAILBOX);
	fill(m->idem, sizeof m->idem, 0x70);
	m->offset = 65536;
	m->length = sizeof mail_body - 1;
	m->data = bytes(mail_body, m->length);
}

static void
sample_attr_rep(union codecs_msg *u)
{
	sample_attr(&u->attr_rep.attr, MST_T_MSG, 42);
	u->attr_rep.dir_change = 78;
	u->attr_rep.dir_mtime_ns = T0 + 3;
}

static void
sample_list_req(union codecs_msg *u)
{
	struct mst_list_req *m = &u->list_req;

	m->mailbox = str(MAILBOX);
	m->folder = str(".Sent");
	m->sub = MST_SUB_NEW;
	m->since = 77;
}

/* Three entries: a message, a small file, and a removed message, whose
 * attributes carry only type, id and change (mstore-protocol(7)). */
static void
sample_list_rep(union codecs_msg *u)
{
	static uint8_t ents[3 * (3 + 64 + MST_ATTR_LEN)];
	struct mst_list_rep *m = &u->list_rep;
	struct mst_list_entry e[3] = {
		{ MST_LE_PRESENT, str("1700000001.M2.smtp1"), { 0 } },
		{ MST_LE_PRESENT, str("dovecot-uidlist"), { 0 } },
		{ MST_LE_REMOVED, str("1699999999.M0.smtp2"), { 0 } },
	};
	size_t off = 0, i;
	int rc;

	sample_attr(&e[0].attr, MST_T_MSG, 43);
	sample_attr(&e[1].attr, MST_T_FILE, 44);
	e[2].attr.type = MST_T_MSG;
	e[2].attr.id = 41;
	e[2].attr.change = 98;
	for (i = 0; i < 3; i++) {
		rc = mst_list_entry_encode(&e[i], ents + off, sizeof ents - off);
		if (rc < 0)
			abort();	/* ents is sized for these names */
		off += (size_t)rc;
	}
	m->change = 99;
	m->dir_mtime_ns = T0 + 4;
	m->flags = MST_LIST_FULL;
	m->count = 3;
	m->entries = ents;
	m->entries_len = off;
}

static void
sample_msg_ref(union codecs_msg *u)
{
	struct mst_msg_ref *m = &u->msg_ref;

	m->mailbox = str(MAILBOX);
	m->folder = str(".Trash");
	m->sub = MST_SUB_CUR;
	m->name = str(MSGNAME ":2,ST");
}

static void
sample_fetch_req(union codecs_msg *u)
{
	struct mst_fetch_req *m = &u->fetch_req;

	m->mailbox = str(MAILBOX);
	m->id = 42;
	m->offset = 4096;
	m->length = 65536;
}

static void
sample_data_rep(union codecs_msg *u)
{
	size_t n = sizeof mail_body - 1;

	u->data_rep.total_size = n;
	u->data_rep.checksum = mst_checksum(mail_body, n);
	u->data_rep.data = bytes(mail_body, n);
}

static void
sample_setinfo_req(union codecs_msg *u)
{
	struct mst_setinfo_req *m = &u->setinfo_req;

	m->mailbox = str(MAILBOX);
	m->folder = str(".Sent");
	m->from_sub = MST_SUB_NEW;
	m->from_name = str(MSGNAME);
	m->to_sub = MST_SUB_CUR;
	m->to_name = str(MSGNAME ":2,S");
	m->flags = MST_RN_NOREPLACE;
}

static void
sample_change_rep(union codecs_msg *u)
{
	u->change_rep.dir_change = 100;
	u->change_rep.dir_mtime_ns = T0 + 5;
}

static void
sample_path_req(union codecs_msg *u)
{
	u->path_req.path = str(MAILBOX "/.Sent/cur");
}

static void
sample_mkdir_req(union codecs_msg *u)
{
	struct mst_mkdir_req *m = &u->mkdir_req;

	m->path = str(MAILBOX "/.Drafts");
	m->mode = 0700;
	m->uid = 5000;
	m->gid = 5001;
}

static void
sample_put_req(union codecs_msg *u)
{
	struct mst_put_req *m = &u->put_req;
	size_t n = sizeof uidlist - 1;

	m->path = str(MAILBOX "/dovecot-uidlist");
	m->flags = MST_PUT_EXCL;
	m->mode = 0600;
	m->uid = 5000;
	m->gid = 5001;
	m->mtime_ns = T0 + 6;
	m->checksum = mst_checksum(uidlist, n);
	m->body_size = n;
	m->body = bytes(uidlist, n);
}

static void
sample_get_req(union codecs_msg *u)
{
	u->get_req.path = str(MAILBOX "/dovecot-uidlist");
	u->get_req.offset = 16;
	u->get_req.length = 4096;
}

static void
sample_rename_req(union codecs_msg *u)
{
	u->rename_req.from = str(MAILBOX "/dovecot.index.tmp");
	u->rename_req.to = str(MAILBOX "/dovecot.index");
	u->rename_req.flags = MST_RN_NOREPLACE;
}

static void
sample_setattr_req(union codecs_msg *u)
{
	struct mst_setattr_req *m = &u->setattr_req;

	m->path = str(MAILBOX "/maildirsize");
	m->valid = MST_SA_ALL;
	m->mode = 0644;
	m->uid = 5000;
	m->gid = 5001;
	m->size = 12;
	m->mtime_ns = T0 + 7;
}

static void
sample_statfs_rep(union codecs_msg *u)
{
	struct mst_statfs_rep *m = &u->statfs_rep;

	m->bytes_total = 1ull << 40;
	m->bytes_free = 1ull << 39;
	m->files_total = 1000000;
	m->files_free = 999000;
	m->quota_bytes = 1ull << 30;
	m->used_bytes = 123456789;
	m->quota_msgs = 100000;
	m->used_msgs = 4242;
	m->max_body = 64ull << 20;
	m->name_max = MST_NAME_MAX;
}

static void
sample_watch_rep(union codecs_msg *u)
{
	u->watch_rep.change = 1234567;
}

static void
sample_notify(union codecs_msg *u)
{
	struct mst_notify *m = &u->notify;

	m->path = str(MAILBOX "/new");
	m->event = MST_EV_ADD;
	m->name = str("1700000001.M2.smtp1");
	m->id = 43;
	m->change = 101;
}

static void
sample_error_rep(union codecs_msg *u)
{
	u->error_rep.detail = str("mailbox " MAILBOX ": quota exceeded");
}

static void
sample_admin_req(union codecs_msg *u)
{
	u->admin_req.cmd = str("stats");
	u->admin_req.arg = str("engine");
}

static void
sample_admin_rep(union codecs_msg *u)
{
	static const char text[] = "deliveries=12\nbytes=3456\n";

	u->admin_rep.text = bytes(text, sizeof text - 1);
}

static void
sample_id_req(union codecs_msg *u)
{
	u->id_req.id = 0x0000010000000045ull;
}

static void
sample_read_req(union codecs_msg *u)
{
	u->read_req.id = 45;
	u->read_req.offset = 40;
	u->read_req.length = 8192;
}

/* An append to dovecot.index.log, as Dovecot writes it. */
static void
sample_write_req(union codecs_msg *u)
{
	struct mst_write_req *m = &u->write_req;
	size_t n = sizeof uidlist - 1;

	m->id = 46;
	m->offset = 4096;
	m->flags = MST_WR_APPEND;
	m->checksum = mst_checksum(uidlist, n);
	m->body_size = n;
	m->body = bytes(uidlist, n);
}

static void
sample_fsetattr_req(union codecs_msg *u)
{
	struct mst_fsetattr_req *m = &u->fsetattr_req;

	m->id = 47;
	m->valid = MST_FSA_ALL;
	m->mode = 0600;
	m->uid = 5000;
	m->gid = 5001;
	m->size = 40;
	m->mtime_ns = T0 + 9;
	m->atime_ns = T0 + 10;
}

static void
sample_link_req(union codecs_msg *u)
{
	u->link_req.id = 48;
	u->link_req.path = str(MAILBOX "/dovecot-uidlist.lock");
}

static void
sample_lock_req(union codecs_msg *u)
{
	struct mst_lock_req *m = &u->lock_req;

	m->id = 49;
	m->owner = 0xfeedface12345678ull;
	m->pid = 4321;
	m->type = MST_LK_WR;
	m->flags = MST_LKF_WAIT;
	m->start = 100;
	m->end = MST_LK_EOF;
}

static void
sample_lock_rep(union codecs_msg *u)
{
	u->lock_rep.type = MST_LK_RD;
	u->lock_rep.pid = 1234;
	u->lock_rep.start = 10;
	u->lock_rep.end = 19;
}

static uint32_t
chunk_deliver_req(const union codecs_msg *m)
{
	return m->deliver_req.body.len;
}

static uint32_t
chunk_stage_req(const union codecs_msg *m)
{
	return m->stage_req.body.len;
}

static uint32_t
chunk_put_req(const union codecs_msg *m)
{
	return m->put_req.body.len;
}

static uint32_t
chunk_write_req(const union codecs_msg *m)
{
	return m->write_req.body.len;
}

static uint32_t
chunk_data_rep(const union codecs_msg *m)
{
	return m->data_rep.data.len;
}

/* Adapters from the union to each typed codec. */
#define ADAPT(T)                                                             \
	static int enc_##T(const union codecs_msg *m, uint8_t *b, size_t cap) \
	{                                                                    \
		return mst_##T##_encode(&m->T, b, cap);                      \
	}                                                                    \
	static int dec_##T(union codecs_msg *m, const uint8_t *p, size_t n)  \
	{                                                                    \
		return mst_##T##_decode(&m->T, p, n);                        \
	}                                                                    \
	static void diffu_##T(struct codecs_diff *d,                         \
	    const union codecs_msg *g, const union codecs_msg *w)            \
	{                                                                    \
		diff_##T(d, &g->T, &w->T);                                   \
	}

ADAPT(hello_req)
ADAPT(hello_rep)
ADAPT(auth)
ADAPT(ping)
ADAPT(deliver_req)
ADAPT(attr_rep)
ADAPT(list_req)
ADAPT(list_rep)
ADAPT(msg_ref)
ADAPT(fetch_req)
ADAPT(data_rep)
ADAPT(setinfo_req)
ADAPT(change_rep)
ADAPT(path_req)
ADAPT(mkdir_req)
ADAPT(put_req)
ADAPT(get_req)
ADAPT(rename_req)
ADAPT(setattr_req)
ADAPT(statfs_rep)
ADAPT(watch_rep)
ADAPT(notify)
ADAPT(error_rep)
ADAPT(admin_req)
ADAPT(admin_rep)
ADAPT(id_req)
ADAPT(read_req)
ADAPT(write_req)
ADAPT(fsetattr_req)
ADAPT(link_req)
ADAPT(lock_req)
ADAPT(lock_rep)
ADAPT(stage_req)
ADAPT(commit_req)
ADAPT(spool_req)

#define ROW(T, flags, extra, chunk)                                          \
	{ #T, flags, extra, enc_##T, dec_##T, sample_##T, chunk, diffu_##T }

const struct codec codecs[] = {
	ROW(hello_req, 0, 0, NULL),
	ROW(hello_rep, 0, 0, NULL),
	ROW(auth, 0, 0, NULL),
	ROW(ping, 0, 0, NULL),
	ROW(deliver_req, 0, 0, chunk_deliver_req),
	ROW(attr_rep, 0, 0, NULL),
	ROW(list_req, 0, 0, NULL),
	ROW(list_rep, CODEC_ENTRIES, 0, NULL),
	ROW(msg_ref, 0, 0, NULL),
	ROW(fetch_req, 0, 0, NULL),
	ROW(data_rep, 0, 0, chunk_data_rep),
	ROW(setinfo_req, 0, 0, NULL),
	ROW(change_rep, 0, 0, NULL),
	ROW(path_req, 0, 0, NULL),
	ROW(mkdir_req, 0, -EEXIST, NULL),	/* MKDIR of the root */
	ROW(put_req, 0, -EISDIR, chunk_put_req),	/* PUT to the root */
	ROW(get_req, 0, 0, NULL),
	ROW(rename_req, 0, -EBUSY, NULL),	/* RENAME of the root */
	ROW(setattr_req, 0, 0, NULL),
	ROW(statfs_rep, 0, 0, NULL),
	ROW(watch_rep, 0, 0, NULL),
	ROW(notify, 0, 0, NULL),
	ROW(error_rep, CODEC_EMPTY_OK, 0, NULL),
	ROW(admin_req, 0, 0, NULL),
	ROW(admin_rep, 0, 0, NULL),
	ROW(id_req, 0, 0, NULL),
	ROW(read_req, 0, 0, NULL),
	ROW(write_req, 0, 0, chunk_write_req),
	ROW(fsetattr_req, 0, 0, NULL),
	ROW(link_req, 0, -EEXIST, NULL),	/* LINK to the root */
	ROW(lock_req, 0, 0, NULL),
	ROW(lock_rep, 0, 0, NULL),
	ROW(stage_req, 0, 0, chunk_stage_req),
	ROW(commit_req, 0, 0, NULL),
	ROW(spool_req, 0, 0, NULL),
};
const size_t codecs_len = sizeof codecs / sizeof codecs[0];

const struct codec *
codecs_find(const char *name)
{
	size_t i;

	for (i = 0; i < codecs_len; i++)
		if (strcmp(codecs[i].name, name) == 0)
			return &codecs[i];
	return NULL;
}

unsigned
codecs_nsel(void)
{
	return CODECS_SEL_FIRST + (unsigned)codecs_len;
}

/* The payload decoder errors of mstproto.h, "Malformed input". */
static int
payload_error_ok(int rc)
{
	switch (rc) {
	case -EPROTO:
	case -EBADMSG:
	case -EINVAL:
	case -ENAMETOOLONG:
	case -ELOOP:
	case -EFBIG:
		return 1;
	}
	return 0;
}

int
codecs_error_ok(const struct codec *c, int rc)
{
	return rc == 0 || payload_error_ok(rc) ||
	    (c->extra_err != 0 && rc == c->extra_err);
}

int
codecs_eq(const struct codec *c, const union codecs_msg *got,
    const union codecs_msg *want, char *why, size_t cap)
{
	struct codecs_diff d = { why, cap, 0 };

	c->diff(&d, got, want);
	return !d.bad;
}

int
codecs_entry_eq(const struct mst_list_entry *got,
    const struct mst_list_entry *want, char *why, size_t cap)
{
	struct codecs_diff d = { why, cap, 0 };

	diff_entry(&d, "", got, want);
	return !d.bad;
}

static int
same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

int
codecs_check_decode(const struct codec *c, const uint8_t *p, size_t len,
    int *rc_out, char *why, size_t cap)
{
	union codecs_msg m, again;
	char fwhy[256];
	uint8_t *buf;
	int rc, n, ret = -1;

	rc = c->decode(&m, p, len);
	if (rc_out != NULL)
		*rc_out = rc;
	if (rc != 0) {
		if (codecs_error_ok(c, rc))
			return 0;
		snprintf(why, cap, "%s: decode: got %s (%d), not documented",
		    c->name, codecs_errname(rc), rc);
		return -1;
	}
	/* Re-encoding never needs more than the decoded bytes. */
	buf = malloc(len ? len : 1);
	if (buf == NULL) {
		snprintf(why, cap, "%s: out of memory", c->name);
		return -1;
	}
	n = c->encode(&m, buf, len);
	if (n < 0) {
		snprintf(why, cap, "%s: re-encode: got %s (%d), want %zu bytes",
		    c->name, codecs_errname(n), n, len);
		goto out;
	}
	/* error_rep may spell an empty detail as a zero-length string; the
	 * encoder then writes nothing. Every other layout is canonical. */
	if (!same_bytes(buf, (size_t)n, p, len) &&
	    !((c->flags & CODEC_EMPTY_OK) && n == 0)) {
		snprintf(why, cap, "%s: re-encoding (%d bytes) differs from "
		    "the decoded input (%zu bytes)", c->name, n, len);
		goto out;
	}
	rc = c->decode(&again, buf, (size_t)n);
	if (rc != 0) {
		snprintf(why, cap, "%s: decode of re-encoding: got %s (%d), "
		    "want 0", c->name, codecs_errname(rc), rc);
		goto out;
	}
	if (!codecs_eq(c, &again, &m, fwhy, sizeof fwhy)) {
		snprintf(why, cap, "%s: after re-encoding: %s", c->name, fwhy);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

static int
hdr_error_ok(int rc)
{
	return rc == -EPROTO || rc == -EPROTONOSUPPORT || rc == -EMSGSIZE ||
	    rc == -EOPNOTSUPP;
}

int
codecs_check_hdr(const uint8_t *p, size_t len, uint32_t max_frame,
    int *rc_out, char *why, size_t cap)
{
	struct mst_hdr h, again;
	uint8_t b[MST_HDR_LEN];
	struct codecs_diff d = { why, cap, 0 };
	int rc, n;

	rc = mst_hdr_decode(&h, p, len, max_frame);
	if (rc_out != NULL)
		*rc_out = rc;
	if (len < MST_HDR_LEN) {
		if (rc == 0)
			return 0;
		snprintf(why, cap, "hdr: %zu bytes: got %s (%d), want 0", len,
		    codecs_errname(rc), rc);
		return -1;
	}
	if (rc != (int)MST_HDR_LEN) {
		if (hdr_error_ok(rc))
			return 0;
		snprintf(why, cap, "hdr: got %s (%d), not documented",
		    codecs_errname(rc), rc);
		return -1;
	}
	n = mst_hdr_encode(&h, b, sizeof b);
	if (n != (int)MST_HDR_LEN || memcmp(b, p, MST_HDR_LEN) != 0) {
		snprintf(why, cap, "hdr: re-encoding differs (rc %d)", n);
		return -1;
	}
	rc = mst_hdr_decode(&again, b, sizeof b, max_frame);
	diff_int(&d, "hdr: ", "decode of re-encoding", rc, (int)MST_HDR_LEN);
	diff_u64(&d, "hdr.", "version", again.version, h.version);
	diff_u64(&d, "hdr.", "op", again.op, h.op);
	diff_u64(&d, "hdr.", "flags", again.flags, h.flags);
	diff_u64(&d, "hdr.", "status", again.status, h.status);
	diff_u64(&d, "hdr.", "id", again.id, h.id);
	diff_u64(&d, "hdr.", "len", again.len, h.len);
	return d.bad ? -1 : 0;
}

/* One entry at |p|[0..|size|): re-encodes to the same bytes and decodes
 * to the same fields. */
static int
check_entry(const struct mst_list_entry *e, const uint8_t *p, size_t size,
    char *why, size_t cap)
{
	struct mst_list_rep lr = { 0 };
	struct mst_list_entry again;
	char fwhy[256];
	uint8_t *buf;
	size_t off = 0;
	int n, rc, ret = -1;

	buf = malloc(size);
	if (buf == NULL) {
		snprintf(why, cap, "entries: out of memory");
		return -1;
	}
	n = mst_list_entry_encode(e, buf, size);
	if (n < 0 || !same_bytes(buf, (size_t)n, p, size)) {
		snprintf(why, cap, "entries: re-encoding differs (rc %d, want "
		    "%zu bytes)", n, size);
		goto out;
	}
	lr.entries = buf;
	lr.entries_len = size;
	rc = mst_list_entry_next(&again, &lr, &off);
	if (rc != 1 || off != size) {
		snprintf(why, cap, "entries: decode of re-encoding: got %s "
		    "(%d) at %zu, want 1 at %zu", codecs_errname(rc), rc, off,
		    size);
		goto out;
	}
	if (!codecs_entry_eq(&again, e, fwhy, sizeof fwhy)) {
		snprintf(why, cap, "entries: after re-encoding: %s", fwhy);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

int
codecs_check_entries(const uint8_t *p, size_t len, int *rc_out, char *why,
    size_t cap)
{
	struct mst_list_rep lr = { 0 };
	struct mst_list_entry e;
	size_t off = 0, prev, size;
	int rc;

	lr.entries = p;
	lr.entries_len = len;
	for (;;) {
		prev = off;
		rc = mst_list_entry_next(&e, &lr, &off);
		if (rc_out != NULL)
			*rc_out = rc;
		if (rc != 1)
			break;
		size = mst_list_entry_size(&e);
		if (off - prev != size) {
			snprintf(why, cap, "entries: entry at %zu took %zu "
			    "bytes, mst_list_entry_size says %zu", prev,
			    off - prev, size);
			return -1;
		}
		if (check_entry(&e, p + prev, size, why, cap) < 0)
			return -1;
	}
	if (rc < 0 && off != prev) {
		snprintf(why, cap, "entries: offset moved on error %s",
		    codecs_errname(rc));
		return -1;
	}
	if (rc == 0 || payload_error_ok(rc))
		return 0;
	snprintf(why, cap, "entries: got %s (%d), not documented",
	    codecs_errname(rc), rc);
	return -1;
}

const char *
codecs_errname(int rc)
{
	switch (rc) {
	case 0:
		return "0";
	case -EPROTO:
		return "-EPROTO";
	case -EPROTONOSUPPORT:
		return "-EPROTONOSUPPORT";
	case -EMSGSIZE:
		return "-EMSGSIZE";
	case -EOPNOTSUPP:
		return "-EOPNOTSUPP";
	case -EBADMSG:
		return "-EBADMSG";
	case -EINVAL:
		return "-EINVAL";
	case -ENAMETOOLONG:
		return "-ENAMETOOLONG";
	case -ELOOP:
		return "-ELOOP";
	case -EFBIG:
		return "-EFBIG";
	case -EEXIST:
		return "-EEXIST";
	case -EISDIR:
		return "-EISDIR";
	case -EBUSY:
		return "-EBUSY";
	}
	return "other";
}
