/*
 * mstproto.h - libmstproto, the mstore wire format.
 *
 * Pure encode/decode: no sockets, files, clocks, threads, globals or
 * logging. The byte layouts are specified in mstore-protocol(7); the
 * comments here name the section each part implements.
 *
 * Conventions:
 *  - Every function returns int: >= 0 on success (a byte count where
 *    noted), a negative errno on failure.
 *  - Decoders fill structs with views (pointer + length) into the caller's
 *    buffer; copy what you keep. Strings on the wire are not
 *    NUL-terminated and neither are the views.
 *  - Encoders write a payload into |buf| of |cap| bytes and return its
 *    length, or -EMSGSIZE when it does not fit.
 *
 * Errors a decoder returns (mstore-protocol(7), "Malformed input"):
 *   -EPROTO            bad magic, reserved flag bits set, trailing bytes
 *                      after the last field, chunk overrun
 *   -EPROTONOSUPPORT   version byte not MST_VERSION
 *   -EMSGSIZE          frame length over the negotiated maximum
 *   -EOPNOTSUPP        unknown opcode
 *   -EBADMSG           payload ends inside a field (truncated)
 *   -EINVAL            a field holds a value outside its domain (unknown
 *                      folder kind or entry type, NUL inside a string,
 *                      empty name, "." or "..", '/' in a name, bad path)
 *   -ENAMETOOLONG      name or path longer than its limit
 *   -ELOOP             path deeper than MST_PATH_DEPTH_MAX components
 *   -EFBIG             declared body larger than MST_BODY_MAX
 * and, for a path naming the root (""), the error the operation would
 * give: -EEXIST (MKDIR, LINK), -EISDIR (PUT), -EBUSY (RENAME from or to).
 * -EFBIG also covers a WRITE that would end past MST_BODY_MAX and a
 * SETATTR or FSETATTR size over it.
 */
#ifndef MSTPROTO_H
#define MSTPROTO_H

#include <stddef.h>
#include <stdint.h>

/* Frames ("Frames"). */
#define MST_MAGIC		0x4d53u	/* "MS" */
#define MST_VERSION		1u
#define MST_HDR_LEN		16u
#define MST_FRAME_DEFAULT	(1u << 20)	/* payload bytes, 1 MiB */
#define MST_FRAME_MIN		(64u << 10)
#define MST_FRAME_LIMIT		(16u << 20)

/* Limits ("Limits"). */
#define MST_NAME_MAX		255u	/* bytes in one path component */
#define MST_PATH_MAX		4095u	/* bytes in a path */
#define MST_PATH_DEPTH_MAX	32u	/* components in a path */
#define MST_BODY_MAX		(1ull << 32)	/* bytes in one body, absolute */
#define MST_IDEM_LEN		16u	/* idempotency id */
#define MST_NONCE_LEN		32u	/* HELLO challenge nonces */
#define MST_PROOF_LEN		32u	/* HMAC-SHA256 */
#define MST_DETAIL_MAX		1024u	/* error detail text */

/* Header flags. */
#define MST_F_REPLY		0x0001u	/* answer to a request */
#define MST_F_MORE		0x0002u	/* more frames follow for this id */
#define MST_F_NOTICE		0x0004u	/* server-initiated, id 0 */
#define MST_F_ALL		0x0007u

/* Opcodes ("Operations"). */
enum mst_op {
	MST_OP_HELLO = 0x01,
	MST_OP_AUTH = 0x02,
	MST_OP_PING = 0x03,
	MST_OP_DATA = 0x04,
	MST_OP_DELIVER = 0x10,
	MST_OP_LIST = 0x11,
	MST_OP_STAT = 0x12,
	MST_OP_FETCH = 0x13,
	MST_OP_SETINFO = 0x14,
	MST_OP_EXPUNGE = 0x15,
	MST_OP_STAGE = 0x16,	/* a body made durable before its name */
	MST_OP_COMMIT = 0x17,	/* the name of a STAGEd body */
	MST_OP_SPOOL = 0x18,	/* a body gathered while it is written */
	MST_OP_LOOKUP = 0x20,
	MST_OP_MKDIR = 0x21,
	MST_OP_RMDIR = 0x22,
	MST_OP_READDIR = 0x23,
	MST_OP_PUT = 0x24,
	MST_OP_GET = 0x25,
	MST_OP_RENAME = 0x26,
	MST_OP_UNLINK = 0x27,
	MST_OP_SETATTR = 0x28,
	MST_OP_STATFS = 0x29,
	MST_OP_WATCH = 0x30,
	MST_OP_UNWATCH = 0x31,
	MST_OP_NOTIFY = 0x32,
	MST_OP_ADMIN = 0x40,
	/* Ordinary files by object id ("Ordinary files"). */
	MST_OP_GETATTR = 0x50,
	MST_OP_OPEN = 0x51,
	MST_OP_CLOSE = 0x52,
	MST_OP_READ = 0x53,
	MST_OP_WRITE = 0x54,
	MST_OP_FSETATTR = 0x55,
	MST_OP_LINK = 0x56,
	MST_OP_LOCK = 0x57,
};

/* Name of |op| ("DELIVER"), or NULL when the opcode is not defined. */
const char *mst_op_name(unsigned op);

/* HELLO features. */
#define MST_FEAT_AUTH		0x0001u	/* server requires AUTH */
#define MST_FEAT_WATCH		0x0002u	/* WATCH/NOTIFY */
#define MST_FEAT_STAGE		0x0004u	/* STAGE/COMMIT */
#define MST_FEAT_SPOOL		0x0008u	/* SPOOL, COMMIT of a spool */
#define MST_FEAT_SOLE		0x0010u	/* the store's only server: its
					   replies follow its notices */
#define MST_FEAT_ALL		0x001Fu

/* Mail folder kinds: the Maildir subdirectory a message lives in. */
#define MST_SUB_NEW		1u
#define MST_SUB_CUR		2u

/* Entry types. */
#define MST_T_DIR		1u
#define MST_T_FILE		2u	/* ordinary file */
#define MST_T_MSG		3u	/* immutable message body */

/* PUT flags. */
#define MST_PUT_EXCL		0x01u	/* fail with EEXIST if present */
#define MST_PUT_ALL		0x01u

/* RENAME and SETINFO flags. */
#define MST_RN_NOREPLACE	0x01u	/* fail with EEXIST if target exists */
#define MST_RN_ALL		0x01u

/* SETATTR valid mask. */
#define MST_SA_MODE		0x01u
#define MST_SA_UID		0x02u
#define MST_SA_GID		0x04u
#define MST_SA_SIZE		0x08u
#define MST_SA_MTIME		0x10u
#define MST_SA_ATIME		0x20u	/* FSETATTR only */
#define MST_SA_ALL		0x1fu	/* SETATTR */
#define MST_FSA_ALL		0x3fu	/* FSETATTR */

/* WRITE flags. */
#define MST_WR_APPEND		0x01u	/* at the end, whatever |offset| says */
#define MST_WR_ALL		0x01u

/* LOCK types and flags. */
#define MST_LK_RD		1u	/* shared */
#define MST_LK_WR		2u	/* exclusive */
#define MST_LK_UN		3u	/* release */
#define MST_LKF_WAIT		0x01u	/* F_SETLKW: answer once granted */
#define MST_LKF_FLOCK		0x02u	/* flock(2): whole file */
#define MST_LKF_TEST		0x04u	/* F_GETLK: name a conflict, take none */
#define MST_LKF_CANCEL		0x08u	/* give up this owner's waiting LOCK */
#define MST_LKF_ALL		0x0fu
#define MST_LK_EOF		UINT64_MAX	/* |end| of a lock to end of file */

/* NOTIFY events. */
#define MST_EV_ADD		1u	/* entry appeared */
#define MST_EV_REMOVE		2u	/* entry went away */
#define MST_EV_CHANGE		3u	/* entry's attributes changed */
#define MST_EV_RESET		4u	/* re-list: changes were not tracked */

/* LIST entry kinds. */
#define MST_LE_PRESENT		1u
#define MST_LE_REMOVED		2u

/* LIST reply flags. */
#define MST_LIST_FULL		0x01u	/* whole listing, not a delta */

/* Wire status codes ("Status codes"): the Linux errno numbers. */
enum mst_status {
	MST_S_OK = 0,
	MST_S_EPERM = 1,
	MST_S_ENOENT = 2,
	MST_S_EINTR = 4,
	MST_S_EIO = 5,
	MST_S_E2BIG = 7,
	MST_S_EBADF = 9,
	MST_S_EAGAIN = 11,
	MST_S_ENOMEM = 12,
	MST_S_EACCES = 13,
	MST_S_EBUSY = 16,
	MST_S_EEXIST = 17,
	MST_S_EXDEV = 18,
	MST_S_ENOTDIR = 20,
	MST_S_EISDIR = 21,
	MST_S_EINVAL = 22,
	MST_S_EFBIG = 27,
	MST_S_ENOSPC = 28,
	MST_S_EROFS = 30,
	MST_S_EMLINK = 31,
	MST_S_ERANGE = 34,
	MST_S_EDEADLK = 35,
	MST_S_ENAMETOOLONG = 36,
	MST_S_ENOLCK = 37,
	MST_S_ENOTEMPTY = 39,
	MST_S_ELOOP = 40,
	MST_S_ENODATA = 61,
	MST_S_EPROTO = 71,
	MST_S_EBADMSG = 74,
	MST_S_EOVERFLOW = 75,
	MST_S_EMSGSIZE = 90,
	MST_S_EPROTONOSUPPORT = 93,
	MST_S_EOPNOTSUPP = 95,
	MST_S_ETIMEDOUT = 110,
	MST_S_ESTALE = 116,
	MST_S_EDQUOT = 122,
	MST_S_ECANCELED = 125,
};

/* Map a wire status to a positive host errno; unknown codes give EIO. */
int mst_status_to_errno(unsigned status);
/* Map a host errno (either sign) to a wire status; unlisted ones give EIO. */
unsigned mst_errno_to_status(int err);

/* Views. */
struct mst_str {
	const char *p;
	uint16_t len;
};

struct mst_bytes {
	const uint8_t *p;
	uint32_t len;
};

/* Make a view of a NUL-terminated string (truncated at 65535 bytes). */
struct mst_str mst_str_of(const char *s);

/* Frame header ("Frames"). */
struct mst_hdr {
	uint8_t version;
	uint8_t op;
	uint16_t flags;
	uint16_t status;	/* replies: MST_S_*; requests: 0 */
	uint32_t id;		/* request id; 0 for notices */
	uint32_t len;		/* payload bytes that follow the header */
};

/* Write the 16-byte header. Returns MST_HDR_LEN or -EMSGSIZE. */
int mst_hdr_encode(const struct mst_hdr *h, uint8_t *buf, size_t cap);
/*
 * Decode a header from |len| bytes. Returns 0 when fewer than MST_HDR_LEN
 * bytes are present (need more), MST_HDR_LEN on success, or -EPROTO,
 * -EPROTONOSUPPORT, -EMSGSIZE (len > |max_frame|), -EOPNOTSUPP.
 */
int mst_hdr_decode(struct mst_hdr *h, const uint8_t *p, size_t len,
    uint32_t max_frame);

/* Entry attributes ("Attributes"), 65 bytes on the wire. */
struct mst_attr {
	uint8_t type;		/* MST_T_* */
	uint64_t id;		/* stable, unique object id (inode) */
	uint64_t size;
	uint32_t mode;		/* permission bits, 07777 */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
	uint64_t change;	/* change counter at the last modification */
	uint64_t atime_ns;
};
#define MST_ATTR_LEN		65u

/* HELLO. */
struct mst_hello_req {
	uint16_t min_version;
	uint16_t max_version;
	uint32_t features;
	uint32_t max_frame;
	struct mst_str client;	/* free text, e.g. "mount.mstore 0.1 host" */
	uint8_t nonce[MST_NONCE_LEN];
};

struct mst_hello_rep {
	uint16_t version;
	uint32_t features;
	uint32_t max_frame;	/* min of both sides' */
	uint64_t max_body;	/* largest body the server accepts */
	uint64_t server_id;	/* distinguishes store servers */
	struct mst_str server;
	uint8_t nonce[MST_NONCE_LEN];
};

/* AUTH: request carries the client's proof, reply the server's. */
struct mst_auth {
	uint8_t proof[MST_PROOF_LEN];
};

/* PING: the reply echoes the cookie. */
struct mst_ping {
	uint64_t cookie;
};

/* DELIVER ("DELIVER"). The body follows the fixed fields, then DATA. */
struct mst_deliver_req {
	struct mst_str mailbox;	/* placement unit, e.g. "example.com/al" */
	struct mst_str folder;	/* "" (INBOX) or a Maildir++ ".Name" path */
	uint8_t sub;		/* MST_SUB_NEW or MST_SUB_CUR */
	struct mst_str name;
	uint8_t idem[MST_IDEM_LEN];
	uint64_t checksum;	/* xxh3-64 of the whole body */
	uint64_t body_size;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t mtime_ns;
	struct mst_bytes body;	/* the part carried in this frame */
};

/* STAGE ("STAGE"): a body made durable under |idem| in the mailbox's
 * tmp/, before any name. The body follows the fixed fields, then DATA. */
struct mst_stage_req {
	struct mst_str mailbox;
	struct mst_str folder;
	uint8_t idem[MST_IDEM_LEN];
	uint64_t checksum;	/* xxh3-64 of the whole body */
	uint64_t body_size;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	struct mst_bytes body;	/* the part carried in this frame */
};

/* The name a staged body has in its tmp/ until COMMIT: this prefix and
 * the 32 lower-case hex digits of its idempotency id. */
#define MST_STAGE_PREFIX	".mst-stage-"

/* COMMIT ("COMMIT"): DELIVER's fields without the body; |idem|,
 * |checksum| and |body_size| name the STAGEd body. */
struct mst_commit_req {
	struct mst_str mailbox;
	struct mst_str folder;
	uint8_t sub;		/* MST_SUB_NEW or MST_SUB_CUR */
	struct mst_str name;
	uint8_t idem[MST_IDEM_LEN];
	uint64_t checksum;
	uint64_t body_size;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t mtime_ns;
};

/* SPOOL ("SPOOL"): |data| goes at |offset| of the body this connection
 * gathers under |idem|, in the server's memory only, while the client is
 * still writing it; a COMMIT of |idem| on the same connection delivers
 * it. Offset 0 starts the body afresh; no data at offset 0 drops it. */
struct mst_spool_req {
	struct mst_str mailbox;
	uint8_t idem[MST_IDEM_LEN];
	uint64_t offset;
	uint32_t length;	/* of |data|, which ends the frame */
	struct mst_bytes data;
};

/* Replies that carry the changed entry: DELIVER, STAGE, COMMIT,
 * SETINFO, PUT, MKDIR, SETATTR, RENAME, LOOKUP, STAT, and GETATTR, OPEN,
 * WRITE, FSETATTR, LINK (for an unlinked open file dir_change and
 * dir_mtime_ns are 0). */
struct mst_attr_rep {
	struct mst_attr attr;
	uint64_t dir_change;	/* the folder's change counter afterwards */
	uint64_t dir_mtime_ns;	/* the folder's mtime afterwards */
};

/* LIST ("LIST"). */
struct mst_list_req {
	struct mst_str mailbox;
	struct mst_str folder;
	uint8_t sub;
	uint64_t since;		/* 0: full listing; else changes after it */
};

struct mst_list_entry {
	uint8_t kind;		/* MST_LE_* */
	struct mst_str name;
	struct mst_attr attr;	/* removed entries: type, id, change */
};

/*
 * A LIST or READDIR reply frame: fixed fields, then |count| entries.
 * Decode the fixed part with mst_list_rep_decode, then walk the entries
 * with mst_list_entry_next.
 */
struct mst_list_rep {
	uint64_t change;	/* folder's change counter now */
	uint64_t dir_mtime_ns;
	uint8_t flags;		/* MST_LIST_* */
	uint32_t count;
	const uint8_t *entries;	/* view: |count| encoded entries */
	size_t entries_len;
};

/* STAT / EXPUNGE: one named entry in a mail folder. */
struct mst_msg_ref {
	struct mst_str mailbox;
	struct mst_str folder;
	uint8_t sub;
	struct mst_str name;
};

/* FETCH ("FETCH"): read a byte range of a message body by id. */
struct mst_fetch_req {
	struct mst_str mailbox;
	uint64_t id;
	uint64_t offset;
	uint32_t length;
};

/* FETCH, GET and READ replies. */
struct mst_data_rep {
	uint64_t total_size;
	uint64_t checksum;	/* xxh3-64 of the whole object; READ: of |data| */
	struct mst_bytes data;
};

/* SETINFO: rename within new/ and cur/ of one folder. */
struct mst_setinfo_req {
	struct mst_str mailbox;
	struct mst_str folder;
	uint8_t from_sub;
	struct mst_str from_name;
	uint8_t to_sub;
	struct mst_str to_name;
	uint32_t flags;		/* MST_RN_* */
};

/* EXPUNGE, UNLINK, RMDIR replies and other bare acknowledgements. */
struct mst_change_rep {
	uint64_t dir_change;
	uint64_t dir_mtime_ns;
};

/* Namespace ops naming one path: LOOKUP, RMDIR, READDIR, UNLINK, STATFS,
 * WATCH, UNWATCH. */
struct mst_path_req {
	struct mst_str path;
};

struct mst_mkdir_req {
	struct mst_str path;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
};

struct mst_put_req {
	struct mst_str path;
	uint32_t flags;		/* MST_PUT_* */
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t mtime_ns;
	uint64_t checksum;
	uint64_t body_size;
	struct mst_bytes body;
};

struct mst_get_req {
	struct mst_str path;
	uint64_t offset;
	uint32_t length;
};

struct mst_rename_req {
	struct mst_str from;
	struct mst_str to;
	uint32_t flags;		/* MST_RN_* */
};

struct mst_setattr_req {
	struct mst_str path;
	uint32_t valid;		/* MST_SA_* */
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	uint64_t mtime_ns;
};

struct mst_statfs_rep {
	uint64_t bytes_total;
	uint64_t bytes_free;
	uint64_t files_total;
	uint64_t files_free;
	uint64_t quota_bytes;	/* 0: no limit */
	uint64_t used_bytes;
	uint64_t quota_msgs;	/* 0: no limit */
	uint64_t used_msgs;
	uint64_t max_body;
	uint32_t name_max;
};

/* WATCH reply: the current change counter of the watched directory. */
struct mst_watch_rep {
	uint64_t change;
};

/* NOTIFY notice (server to client, id 0, MST_F_NOTICE). */
struct mst_notify {
	struct mst_str path;	/* directory that changed */
	uint8_t event;		/* MST_EV_* */
	struct mst_str name;	/* entry, "" for MST_EV_RESET */
	uint64_t id;		/* entry's object id, 0 if none */
	uint64_t change;	/* directory's change counter after it */
};

/* ADMIN: an operator command ("stats", "scrub", "compact", "checkpoint")
 * with an optional argument; the reply is text, key=value lines. */
struct mst_admin_req {
	struct mst_str cmd;
	struct mst_str arg;
};

struct mst_admin_rep {
	struct mst_bytes text;
};

/*
 * Ordinary files by object id ("Ordinary files"). The id is the one in
 * mst_attr.id; it stays valid while any name refers to the object or any
 * connection holds it OPEN, so a file renamed or unlinked while open
 * keeps working.
 */

/* GETATTR, OPEN, CLOSE. CLOSE's reply has an empty payload. */
struct mst_id_req {
	uint64_t id;
};

struct mst_read_req {
	uint64_t id;
	uint64_t offset;
	uint32_t length;
};

/* WRITE: |body_size| bytes at |offset| (or at the end with
 * MST_WR_APPEND); the body follows the fixed fields, then DATA. The
 * reply is the attr_rep of the file afterwards: with MST_WR_APPEND the
 * data landed at attr.size - body_size. Without MST_WR_APPEND,
 * |offset| + |body_size| must not pass MST_BODY_MAX (-EFBIG). */
struct mst_write_req {
	uint64_t id;
	uint64_t offset;
	uint32_t flags;		/* MST_WR_* */
	uint64_t checksum;	/* xxh3-64 of the body */
	uint64_t body_size;
	struct mst_bytes body;
};

struct mst_fsetattr_req {
	uint64_t id;
	uint32_t valid;		/* MST_SA_*, MST_FSA_ALL */
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t atime_ns;
};

/* LINK: a new name |path| for the ordinary file |id|. */
struct mst_link_req {
	uint64_t id;
	struct mst_str path;
};

/*
 * LOCK: POSIX record locks (owner = the process's lock owner, ranges
 * [start, end], end inclusive, MST_LK_EOF to the end of the file) or,
 * with MST_LKF_FLOCK, flock(2) locks (owner = the open file, whole
 * file: the store ignores |start| and |end|; send 0 and MST_LK_EOF).
 * The two kinds never conflict with each other. Decoding refuses
 * (-EINVAL) a type outside MST_LK_*, unknown flags, |start| > |end|,
 * and MST_LKF_WAIT or MST_LKF_TEST combined with each other, with
 * MST_LK_UN or with MST_LKF_CANCEL.
 */
struct mst_lock_req {
	uint64_t id;
	uint64_t owner;
	uint32_t pid;		/* reported to F_GETLK callers */
	uint8_t type;		/* MST_LK_* */
	uint8_t flags;		/* MST_LKF_* */
	uint64_t start;
	uint64_t end;
};

/* LOCK reply. With MST_LKF_TEST: the first conflicting lock, or type
 * MST_LK_UN when there is none; otherwise the lock as granted. */
struct mst_lock_rep {
	uint8_t type;
	uint32_t pid;
	uint64_t start;
	uint64_t end;
};

/* Error replies may carry one string of detail (may be absent). */
struct mst_error_rep {
	struct mst_str detail;
};

/*
 * Encoders and decoders. Each pair covers one payload layout; the opcode
 * that uses it is the caller's choice (several ops share a layout).
 */
#define MST_CODEC(T)                                                         \
	int mst_##T##_encode(const struct mst_##T *m, uint8_t *buf,          \
	    size_t cap);                                                     \
	int mst_##T##_decode(struct mst_##T *m, const uint8_t *p, size_t len)

MST_CODEC(hello_req);
MST_CODEC(hello_rep);
MST_CODEC(auth);
MST_CODEC(ping);
MST_CODEC(deliver_req);
MST_CODEC(stage_req);
MST_CODEC(commit_req);
MST_CODEC(spool_req);
MST_CODEC(attr_rep);
MST_CODEC(list_req);
MST_CODEC(list_rep);
MST_CODEC(msg_ref);
MST_CODEC(fetch_req);
MST_CODEC(data_rep);
MST_CODEC(setinfo_req);
MST_CODEC(change_rep);
MST_CODEC(path_req);
MST_CODEC(mkdir_req);
MST_CODEC(put_req);
MST_CODEC(get_req);
MST_CODEC(rename_req);
MST_CODEC(setattr_req);
MST_CODEC(statfs_rep);
MST_CODEC(watch_rep);
MST_CODEC(notify);
MST_CODEC(error_rep);
MST_CODEC(admin_req);
MST_CODEC(admin_rep);
MST_CODEC(id_req);
MST_CODEC(read_req);
MST_CODEC(write_req);
MST_CODEC(fsetattr_req);
MST_CODEC(link_req);
MST_CODEC(lock_req);
MST_CODEC(lock_rep);

#undef MST_CODEC

/*
 * LIST/READDIR entries. mst_list_entry_encode appends one entry; the
 * caller counts them and writes the fixed part with mst_list_rep_encode
 * (whose |entries| view it fills in). mst_list_entry_next decodes the
 * entry at *off and advances it; returns 1 for an entry, 0 at the end,
 * or a negative errno.
 */
int mst_list_entry_encode(const struct mst_list_entry *e, uint8_t *buf,
    size_t cap);
int mst_list_entry_next(struct mst_list_entry *e, const struct mst_list_rep *r,
    size_t *off);
/* Encoded size of an entry; lets a server fill a frame exactly. */
size_t mst_list_entry_size(const struct mst_list_entry *e);

/*
 * Validation shared by both ends ("Names and paths"). Return 0, -EINVAL,
 * -ENAMETOOLONG or -ELOOP.
 */
int mst_name_check(struct mst_str name);
int mst_path_check(struct mst_str path);

/* Streaming body assembly: DELIVER/PUT bodies across DATA frames. */
struct mst_body {
	uint64_t want;		/* declared body_size */
	uint64_t have;		/* bytes accepted so far */
};

/*
 * Account |n| more body bytes. Returns 0 while more are expected, 1 when
 * the body is complete, -EPROTO when |n| overruns the declared size or
 * |more| disagrees with what remains (MORE set on the last chunk, or
 * clear before it).
 */
int mst_body_add(struct mst_body *b, size_t n, int more);

/* xxh3-64 of a buffer; the checksum every body carries. */
uint64_t mst_checksum(const void *p, size_t len);

#endif /* MSTPROTO_H */
