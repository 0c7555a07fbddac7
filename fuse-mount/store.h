/*
 * store.h - the store client (layer 3, see store.c and mount.h): requests
 * by path, on mail folders, and on ordinary files by object id. No FUSE
 * types: callers pass paths, ids, offsets and bytes and get attributes or
 * reply payloads back. Every function returns 0 or a negative errno
 * (store_deliver_encode: a length); the asynchronous ones (with |cb|)
 * return 0 when the request went out, and then |cb| runs exactly once
 * with the reply (see mconn.h).
 */
#ifndef MST_STORE_H
#define MST_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mconn.h"
#include "mstproto.h"

struct fbuf;
struct mount;

/* A request whose payload is one path (LOOKUP, READDIR, STATFS, ...);
 * read-only ones may be resent after a reconnection. *r is always set
 * (mreply_free it). */
int call_path(struct mount *m, unsigned op, const char *path,
    struct mreply *r);
/* The same without waiting: |cb| gets the reply (UNLINK, RMDIR). */
int store_path_async(struct mount *m, unsigned op, const char *path,
    mconn_cb *cb, void *arg);
/* EXPUNGE a message; RENAME a path; SETINFO (a rename within a mail
 * folder's new/ and cur/). |cb| gets the reply. */
int store_expunge(struct mount *m, const struct mst_msg_ref *q, mconn_cb *cb,
    void *arg);
int store_rename(struct mount *m, const struct mst_rename_req *q, mconn_cb *cb,
    void *arg);
int store_setinfo(struct mount *m, const struct mst_setinfo_req *q,
    mconn_cb *cb, void *arg);
/* The attributes of a one-frame reply. */
int attr_from(const struct mreply *r, struct mst_attr_rep *out);
/* LOOKUP |path|: its attributes. */
int store_lookup(struct mount *m, const char *path, struct mst_attr *a);
int store_statfs(struct mount *m, struct mst_statfs_rep *out);
int store_mkdir(struct mount *m, const struct mst_mkdir_req *q,
    struct mst_attr_rep *out);
/* LIST a mail folder (full or a delta, as |q| says); *r is always set
 * (mreply_free it) and holds every frame of the answer. */
int store_list(struct mount *m, const struct mst_list_req *q,
    struct mreply *r);
/* PUT |b| as |path| (exclusively when |excl|) with |a|'s mode and
 * owner; the store's attributes to *out (may be NULL). */
int put_buf(struct mount *m, const char *path, struct fbuf *b, int excl,
    const struct mst_attr *a, struct mst_attr *out);
/* put_buf with the whole reply: the directory's change counter and
 * mtime afterwards too. */
int put_buf_rep(struct mount *m, const char *path, struct fbuf *b,
    int excl, const struct mst_attr *a, struct mst_attr_rep *out);
/* Encode a DELIVER of |b| as |name| in the new/ or cur/ directory
 * |dpath| (|sub|: MST_SUB_NEW or MST_SUB_CUR) with |sa|'s mode and
 * owner, and a fresh idempotency id, into |head|; map the body
 * (*body_out; fbuf_unmap it once sent). The head's length, or a
 * negative errno (nothing mapped then). */
int store_deliver_encode(const char *dpath, unsigned sub, const char *name,
    struct fbuf *b, const struct mst_attr *sa, uint8_t *head, size_t cap,
    const uint8_t **body_out);
/* The same with the idempotency id |idem| (that of a staged body the
 * store no longer has, so that a resend still stores it once). */
int store_deliver_encode_id(const char *dpath, unsigned sub,
    const char *name, struct fbuf *b, const struct mst_attr *sa,
    const uint8_t *idem, uint8_t *head, size_t cap,
    const uint8_t **body_out);
/* Does the server of |mailbox| keep staged bodies (MST_FEAT_STAGE), and
 * is it connected now? */
int store_stages(struct mount *m, struct mst_str mailbox);
/* STAGE |q| (whose |body| view is ignored) with the |q->body_size|
 * bytes at |body|, borrowed until it returns; waits for the answer. */
int store_stage(struct mount *m, const struct mst_stage_req *q,
    const uint8_t *body, struct mreply *r);
/* COMMIT the staged body |q| names; |cb| gets the reply. Resent after a
 * reconnection: the store answers a second COMMIT of one id like the
 * first. */
int store_commit_async(struct mount *m, const struct mst_commit_req *q,
    mconn_cb *cb, void *arg);
/* Does the server of |mailbox| gather SPOOLed bodies (MST_FEAT_SPOOL),
 * and is it connected now? */
int store_spools(struct mount *m, struct mst_str mailbox);
/* Is the home server connected and the only server of its store
 * (MST_FEAT_SOLE)? Then a reply from it, a lock grant among them, comes
 * after the notices of every change it acknowledged before. */
int store_home_sole(struct mount *m);
/* The frame size of the server that serves |mailbox| now (each server
 * negotiates its own; route_max_frame is the home server's). */
uint32_t store_max_frame(struct mount *m, struct mst_str mailbox);
/* The most body bytes one SPOOL may carry to the server of |mailbox|
 * (its frame size less the head). */
size_t store_spool_max(struct mount *m, struct mst_str mailbox);
/* SPOOL |len| bytes at |off| of the body |idem| names; |data| is
 * borrowed until |cb| has run. Never resent after a reconnection: the
 * new connection has no spool, and the COMMIT finds none. */
int store_spool_async(struct mount *m, struct mst_str mailbox,
    const uint8_t *idem, uint64_t off, const uint8_t *data, size_t len,
    mconn_cb *cb, void *arg);
/* UNLINK |path| through the server of |mailbox|; |cb| gets the reply. */
int store_unlink_mb_async(struct mount *m, struct mst_str mailbox,
    const char *path, mconn_cb *cb, void *arg);

int store_getattr(struct mount *m, uint64_t id, struct mst_attr *out);
int store_getattr_async(struct mount *m, uint64_t id, mconn_cb *cb,
    void *arg);
/* OPEN: the store keeps the file for this connection even after its
 * last name goes, until store_close or the connection ends. store_open
 * waits and gives the file's attributes (-ENOENT: it is gone already);
 * store_hold does not wait (a failure is logged). */
int store_open(struct mount *m, uint64_t id, struct mst_attr *out);
int store_hold(struct mount *m, uint64_t id);
/* CLOSE of |id| for |n|, counted in n->close_wait by the caller: the
 * count goes down (inode_close_done) once it is answered or failed,
 * here when it cannot be sent at all. */
int store_close(struct mount *m, struct minode *n, uint64_t id);
int store_read(struct mount *m, uint64_t id, uint64_t off, uint32_t len,
    mconn_cb *cb, void *arg);
/* WRITE |len| bytes at |off| (at the end with |append|). The body is
 * copied before this returns. */
int store_write(struct mount *m, uint64_t id, uint64_t off, int append,
    const void *p, size_t len, mconn_cb *cb, void *arg);
int store_fsetattr(struct mount *m, const struct mst_fsetattr_req *q,
    struct mst_attr *out);
int store_link(struct mount *m, uint64_t id, const char *path,
    struct mst_attr_rep *out);
/* LOCK; one with MST_LKF_WAIT has no deadline (it waits until granted,
 * cancelled, or the connection drops). */
int store_lock(struct mount *m, const struct mst_lock_req *q, mconn_cb *cb,
    void *arg);

/* LOCK with MST_LKF_TEST (F_GETLK): it changes nothing, so it is resent
 * after a reconnection. */
int store_lock_test(struct mount *m, const struct mst_lock_req *q,
    mconn_cb *cb, void *arg);

/* LOCK, waiting for the answer (never with MST_LKF_WAIT). */
int store_lock_sync(struct mount *m, const struct mst_lock_req *q,
    struct mst_lock_rep *out);

/* FETCH a range of a message (resent after a reconnection); *r is always
 * set (mreply_free it). */
int store_fetch(struct mount *m, const struct mst_fetch_req *q,
    struct mreply *r);
int store_fetch_async(struct mount *m, const struct mst_fetch_req *q,
    mconn_cb *cb, void *arg);

/* Send an encoded DELIVER with its mapped body, which is not copied: it
 * must stay mapped and unchanged until store_deliver returns or the
 * callback of store_deliver_async has run (fbuf_pin). Resent after a
 * reconnection. */
int store_deliver(struct mount *m, const uint8_t *head, size_t len,
    const uint8_t *body, size_t size, struct mreply *r);
int store_deliver_async(struct mount *m, const uint8_t *head, size_t len,
    const uint8_t *body, size_t size, mconn_cb *cb, void *arg);

/* READDIR |path|: |each| gets every entry, in order, until it returns
 * non-zero (then that is returned). */
int store_readdir(struct mount *m, const char *path,
    int (*each)(void *arg, const struct mst_list_entry *e), void *arg);

/* A reply to |op| that cannot be used (|rc| says why the decoder refused
 * it): logged once, and the call fails with -EIO. Returns -EIO. */
int store_bad_reply(unsigned op, int rc, const char *why);

/* Reply decoders: -EPROTO for a reply of the wrong shape, and a READ or
 * FETCH reply carrying more than |want| bytes is refused as -EPROTO. */
int store_attr_reply(const struct mreply *r, struct mst_attr_rep *out);
int store_data_reply(unsigned op, const struct mreply *r, size_t want,
    struct mst_data_rep *d);
int store_lock_reply(const struct mreply *r, struct mst_lock_rep *out);
/* The change reply of UNLINK, RMDIR or EXPUNGE (a successful one). */
int store_change_reply(const struct mreply *r, struct mst_change_rep *out);

#endif /* MST_STORE_H */
