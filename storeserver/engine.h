/*
 * engine.h - the storage engine interface of mstored.
 *
 * The network layer (server.c) decodes a request, wraps it in a job and
 * hands it to the engine with engine->ops->submit(). The engine runs it on
 * its own threads and calls the |done| callback from one of them once the
 * job's effects are durable; the network layer then sends the reply
 * frames and fans the notices out to watchers on its loop thread.
 *
 * A job belongs to the engine from submit until |done| is called, and to
 * the network layer again afterwards (it frees it with job_free).
 *
 * Ordinary files by object id (GETATTR OPEN CLOSE READ WRITE FSETATTR
 * LINK; LOCK is the network layer's own unless the engine sets
 * engine_ops.locks, see below):
 *  - the network layer sets j->op to the MST_OP_* opcode and fills the
 *    matching j->req member (fid, read, write, fsetattr, link); WRITE's
 *    body goes in j->body/body_len as for PUT (checksum verified before
 *    submit), and j->req.write.body is not read;
 *  - OPEN and CLOSE need j->owner: a nonzero token naming the connection
 *    (the same value for every job of that connection, never reused
 *    while the engine runs). OPEN of an ordinary file takes one
 *    reference to it and CLOSE drops one (CLOSE without a reference:
 *    EBADF); while references remain, a file whose last name is removed
 *    lives on (by id only, nlink 0) and is freed at its last CLOSE.
 *    OPEN of a directory or message only answers its attributes (they
 *    need no reference: a message is gone once expunged), and CLOSE of
 *    one answers an empty frame. References live in memory only: after
 *    a restart there are none;
 *  - when a connection ends, the network layer submits one job with
 *    j->op = ENG_OP_CLOSE_OWNER and j->owner set (no payload, no req):
 *    it drops every reference that owner still holds. Its |done| is
 *    called as for any job, with status 0 and no frames: send nothing,
 *    just job_free it;
 *  - replies: GETATTR, OPEN, WRITE, FSETATTR, LINK give one attr_rep
 *    frame (dir fields of the object's first parent, 0 and 0 when it
 *    has no name left); READ gives data_rep frames like
 *    FETCH (at most max_frame - 16 bytes of data, total_size = file size,
 *    checksum = xxh3-64 of the bytes in this reply); CLOSE gives one
 *    empty frame (len 0).
 * LOCK in the engine (engine_ops.locks set, for storage that several
 * servers share): the network layer submits each LOCK as a job with
 * j->req.lock decoded and j->owner set, and the engine answers it as
 * lock.c would (mstore-protocol(7), LOCK): one lock_rep frame, or an
 * error; a request that waits keeps its job until it is granted,
 * cancelled or the connection ends. When a connection that sent LOCK
 * ends or starts draining, the network layer submits one job with
 * j->op = ENG_OP_UNLOCK_OWNER and j->owner set: its locks go, its
 * waiting requests are answered EINTR, then the job completes with
 * status 0 and no frames (send nothing).
 * An engine with engine_ops.watches set sees WATCH jobs and, after each
 * UNWATCH the network layer answered, one job with j->op =
 * ENG_OP_UNWATCH, j->owner and j->req.path set (complete it with status
 * 0 and no frames; nothing is sent): rados keeps the directories its
 * connections watch, to repair notices lost on the way.
 * Changes made by another server that shares the storage reach the
 * network layer through engine_conf.notice (see engine_notice_fn); an
 * engine that shares nothing (local) leaves it unused.
 * An engine whose locks hold across servers through a lease (rados)
 * that could not renew it in time calls engine_conf.fence with the
 * tokens of every connection holding or waiting for a lock: the network
 * layer closes them (their clients see a lost connection, as after a
 * restart, and know their locks are gone) before the engine gives the
 * records up for other servers to grant (see engine_fence_fn).
 *
 * Object id ranges: ids below ENG_ID_LOCAL_MIN (2^56) are the store's,
 * and every id an engine hands out (object ids, and the message ids of
 * replies and notices) lies in [1, 2^56). The mount numbers its local
 * files (tmp/ entries not yet delivered) in [2^56, 2^64) and relies on
 * no store id ever falling there: that is how it tells the two apart.
 */
#ifndef MST_ENGINE_H
#define MST_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "mstproto.h"

struct engine;
struct job;

/* Internal opcode: drop every OPEN reference of j->owner (see above). */
#define ENG_OP_CLOSE_OWNER	0xF0
/* Internal opcode: drop every lock and waiting LOCK of j->owner (engines
 * with engine_ops.locks only). */
#define ENG_OP_UNLOCK_OWNER	0xF1
/* Internal opcode: j->owner no longer watches j->req.path (engines with
 * engine_ops.watches only). */
#define ENG_OP_UNWATCH		0xF2
/* Internal opcode of the network layer only: a fence (engine_fence_fn)
 * carried to its loop; never submitted to an engine. */
#define ENG_OP_FENCE		0xF3
/* First object id reserved for the mount's local files (2^56). */
#define ENG_ID_LOCAL_MIN	((uint64_t)1 << 56)

/* One reply frame's payload. */
struct jframe {
	uint8_t *p;
	size_t len;
};

/* One change to push to watchers of |dir| once the job completes. */
struct jnotice {
	char *dir;		/* directory path, owned */
	char *name;		/* entry name, owned */
	uint8_t event;		/* MST_EV_* */
	uint64_t id;
	uint64_t change;
};

struct job {
	/* Set by the network layer before submit. */
	uint8_t op;		/* MST_OP_* */
	uint8_t reply_op;	/* the reply's opcode, when not |op| (a
				   COMMIT of a spool runs as a DELIVER) */
	uint32_t id;		/* request id, echoed in the reply */
	uint32_t max_frame;	/* reply frames must not exceed it */
	void *conn;		/* opaque to the engine */
	uint64_t owner;		/* OPEN, CLOSE, ENG_OP_CLOSE_OWNER: the
				   connection's nonzero token */
	int64_t start_ns;	/* when the request arrived (metrics.h
				   clock); the engine ignores it */
	uint8_t answered;	/* the network layer's, once |done| is
				   called: who sends the reply */
	uint8_t *payload;	/* owned: the first frame's payload */
	size_t payload_len;
	uint8_t *body;		/* owned: whole DELIVER/PUT body, or NULL */
	size_t body_len;
	union {			/* decoded views into |payload| */
		struct mst_deliver_req deliver;
		struct mst_stage_req stage;
		struct mst_commit_req commit;
		struct mst_list_req list;
		struct mst_msg_ref ref;		/* STAT, EXPUNGE */
		struct mst_fetch_req fetch;
		struct mst_setinfo_req setinfo;
		struct mst_path_req path;	/* LOOKUP RMDIR READDIR UNLINK
						   STATFS */
		struct mst_mkdir_req mkdir;
		struct mst_put_req put;
		struct mst_get_req get;
		struct mst_rename_req rename;
		struct mst_setattr_req setattr;
		struct mst_admin_req admin;
		struct mst_id_req fid;		/* GETATTR OPEN CLOSE */
		struct mst_read_req read;
		struct mst_write_req write;	/* body in j->body */
		struct mst_fsetattr_req fsetattr;
		struct mst_link_req link;
		struct mst_lock_req lock;	/* engine_ops.locks */
	} req;

	/* Filled by the engine. */
	int status;		/* 0 or a negative errno */
	struct jframe *frames;	/* reply payloads, in order */
	size_t nframes;
	struct jnotice *notices;
	size_t nnotices;

	/* Engine-private. */
	struct job *next;
	uint64_t lsn;		/* durable once the log reaches it */
	int kind;
};

void job_free(struct job *j);
/* Append a reply frame that takes ownership of |p|. -ENOMEM on failure
 * (and |p| is freed). */
int job_add_frame(struct job *j, uint8_t *p, size_t len);
/* Append a notice (copies |dir| and |name|). */
int job_add_notice(struct job *j, const char *dir, const char *name,
    uint8_t event, uint64_t id, uint64_t change);
/* ADMIN quota's argument "MAILBOX BYTES MESSAGES", as every back-end
 * reads it (eng_quota.c): 0, or -EINVAL. */
int engine_quota_arg(struct mst_str a, struct mst_str *name, uint64_t *bytes,
    uint64_t *msgs);

typedef void engine_done_fn(void *arg, struct job *j);
/* A change made by another server that shares the storage: the engine
 * calls this from its own threads, once per change; |n| and its strings
 * are only borrowed for the call. The network layer fans it out to
 * watchers of n->dir exactly like a job's notices. */
typedef void engine_notice_fn(void *arg, const struct jnotice *n);
/* Self-fencing: close every connection whose token is among |owners|
 * (|n| of them, borrowed for the call). Called from an engine thread,
 * never the network layer's; returns once the connections are closed
 * (or after a bounded wait if the network layer is not running), so the
 * engine may then let others take the locks they held. */
typedef void engine_fence_fn(void *arg, const uint64_t *owners, size_t n);

struct engine_conf {
	const char *data_dir;
	uint64_t max_body;		/* largest message, bytes */
	uint64_t quota_bytes;		/* default per mailbox; 0: none */
	uint64_t quota_messages;	/* default per mailbox; 0: none */
	const char *quota_file;		/* per-mailbox overrides, or NULL */
	uint64_t segment_size;		/* bytes per segment file */
	int segment_prealloc;		/* local: write the next segment
					   ahead of need (eng_store.c) */
	uint64_t checkpoint_bytes;	/* log bytes between checkpoints */
	uint64_t reserve_bytes;		/* free space kept back: ENOSPC */
	int readers;			/* reader threads */
	int compact_percent;		/* compact segments below this live % */
	const char *ceph_conf;		/* rados: ceph.conf path */
	const char *pool;		/* rados: the pool */
	const char *ceph_id;		/* rados: client name, NULL: admin */
	const char *ceph_namespace;	/* rados: the store's namespace in
					   the pool, NULL: the default one */
	unsigned index_shards;		/* rados: shards of a new folder's
					   index, 0: the default */
	unsigned index_cap;		/* rados: entries per index store,
					   0: the default */
	engine_done_fn *done;		/* called from engine threads */
	void *done_arg;
	engine_notice_fn *notice;	/* others' changes, engine threads;
					   NULL/unused by the local engine */
	void *notice_arg;
	engine_fence_fn *fence;		/* lock lease lapsed, engine threads;
					   NULL: nobody to close */
	void *fence_arg;
	unsigned lock_lease;		/* rados: lock lease, seconds (>= 5);
					   0: the default, 10 */
	unsigned stage_ttl;		/* local: seconds before a staged body
					   never committed is reclaimed; 0:
					   the default, 3600 (tests set it) */
	unsigned spent_window;		/* local: seconds a delivered message's
					   idempotency id is remembered after
					   it is gone; 0: 3600 (spent.h) */
	unsigned spent_max;		/* local: most such ids; 0: 262144 */
	unsigned checkpoint_part_ids;	/* local: ids per checkpoint part;
					   0: 16384 (checkpoint.h) */
};

struct engine_ops {
	const char *name;
	/* Open or create the store; replays the log. */
	int (*open)(const struct engine_conf *c, struct engine **out);
	/* Run |j| asynchronously; |done| is called exactly once. */
	void (*submit)(struct engine *e, struct job *j);
	/* Or answer |j| at once on the calling thread, if that needs no
	 * wait (no lock held by another thread, no I/O): 1 done (j->status
	 * and the reply set; |done| is not called), 0 submit it instead.
	 * NULL: every job is submitted. */
	int (*try_now)(struct engine *e, struct job *j);
	/* Finish queued work, checkpoint, stop threads, free. */
	void (*close)(struct engine *e);
	/* 1: LOCK goes to the engine (its locks must hold across servers
	 * that share the storage); 0: the network layer's lock.c. */
	int locks;
	/* 1: the engine is told of UNWATCH too (ENG_OP_UNWATCH). */
	int watches;
	/* 1: STAGE and COMMIT (HELLO offers MST_FEAT_STAGE); 0: the network
	 * layer refuses them with EOPNOTSUPP. */
	int stage;
};

extern const struct engine_ops engine_local;
/* The local engine with its log and checkpoint in RAM: for tests. */
extern const struct engine_ops engine_memory;
/* Built with configure --with-rados (HAVE_RADOS) only. */
extern const struct engine_ops engine_rados;

#endif /* MST_ENGINE_H */
