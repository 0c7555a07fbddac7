/*
 * engine_util.h - drive a storage engine synchronously from tests: build
 * jobs from encoded requests (as the network layer does), submit, wait.
 */
#ifndef MST_ENGINE_UTIL_H
#define MST_ENGINE_UTIL_H

#include "engine.h"

struct tengine {
	const struct engine_ops *ops;	/* engine_local unless set */
	struct engine *e;
	struct engine_conf conf;
	char dir[256];
};

/* Defaults suitable for tests in |dir| on the local engine; override
 * fields (ops among them) before topen. */
void tconf(struct tengine *t, const char *dir);
void trm_tree(const char *dir);
int topen(struct tengine *t);
void tclose(struct tengine *t);

/* Run one request; returns the finished job (caller job_free()s). */
struct job *trun(struct tengine *t, unsigned op, const void *payload,
    size_t len, const void *body, size_t bodylen);
/* Submit without waiting; tdone waits for the next completed job. */
struct job *tbuild(struct tengine *t, unsigned op, const void *payload,
    size_t len, const void *body, size_t bodylen);
void tsubmit(struct tengine *t, struct job *j);
struct job *twait(void);
/*
 * Hold the writer so that the jobs submitted next share one batch:
 * tpause submits |first| (a job that changes the index, such as a new
 * MKDIR) and returns once the writer has taken it, holding the index
 * lock for reading so that the writer waits inside that batch; the jobs
 * submitted meanwhile queue up and the writer takes them all at once
 * after tresume. No other engine call may wait in between.
 */
void tpause(struct tengine *t, struct job *first);
void tresume(struct tengine *t);

/* Convenience wrappers returning the status (negative errno or 0). */
int t_mkdir(struct tengine *t, const char *path);
int t_mkdirs(struct tengine *t, const char *mailbox);	/* + new cur tmp */
int t_deliver(struct tengine *t, const char *mbox, unsigned sub,
    const char *name, const void *body, size_t len, const uint8_t *idem,
    uint64_t *id_out);
/* STAGE |body| under |idem| in |mbox|/tmp; COMMIT it as |name| in |sub|
 * (checksum and size those of |body|); both give the object id. */
int t_stage(struct tengine *t, const char *mbox, const void *body,
    size_t len, const uint8_t *idem, uint64_t *id_out);
int t_commit(struct tengine *t, const char *mbox, unsigned sub,
    const char *name, const void *body, size_t len, const uint8_t *idem,
    uint64_t *id_out);
int t_fetch(struct tengine *t, const char *mbox, uint64_t id, void *buf,
    size_t cap, size_t *len_out);
int t_put(struct tengine *t, const char *path, const void *body, size_t len,
    int excl);
int t_simple(struct tengine *t, unsigned op, const char *path);
int t_rename(struct tengine *t, const char *from, const char *to);
int t_setinfo(struct tengine *t, const char *mbox, unsigned fs,
    const char *from, unsigned ts, const char *to);
int t_expunge(struct tengine *t, const char *mbox, unsigned sub,
    const char *name);
/* Ordinary files by id: attributes (when |out|) and the status. */
int t_lookup(struct tengine *t, const char *path, struct mst_attr *out);
int t_getattr(struct tengine *t, uint64_t id, struct mst_attr *out);
int t_write(struct tengine *t, uint64_t id, uint64_t off, unsigned flags,
    const void *data, size_t len, struct mst_attr *out);
/* READ; checks the reply's checksum of the returned bytes. */
int t_read(struct tengine *t, uint64_t id, uint64_t off, uint32_t len,
    void *out, size_t *got, uint64_t *total);
int t_fsetattr(struct tengine *t, const struct mst_fsetattr_req *s,
    struct mst_attr *out);
int t_setattr(struct tengine *t, const struct mst_setattr_req *s,
    struct mst_attr *out);
int t_link(struct tengine *t, uint64_t id, const char *path);
/* OPEN, CLOSE or ENG_OP_CLOSE_OWNER of |id| as |owner|. */
int t_ref(struct tengine *t, unsigned op, uint64_t id, uint64_t owner);
/* Wait for a job submitted with tsubmit. */
struct job *twait_for(struct job *j);
/* Has |j| finished (not yet taken by twait_for)? */
int tfinished(struct job *j);
/* ADMIN command; its text is copied into |out| (NUL-terminated). */
int t_admin(struct tengine *t, const char *cmd, char *out, size_t cap);
/* Canonical dump of the whole namespace (sorted), malloc'd. */
char *t_dump(struct tengine *t);

#endif
