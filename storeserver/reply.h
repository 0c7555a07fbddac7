/*
 * reply.h - reply frames every storage back-end builds the same way:
 * attributes, change counters, WATCH counters, STATFS, data ranges and
 * LIST/READDIR listings cut into frames of at most max_frame bytes. The
 * back-ends (engine_local's eng_*.c, engine_rados*.c) fill the protocol
 * structs from their own medium; the byte layout is decided here once.
 */
#ifndef MST_REPLY_H
#define MST_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* One attr_rep frame. 0 or -ENOMEM. */
int reply_attr_rep(struct job *j, const struct mst_attr_rep *r);
/* One change_rep frame. 0 or -ENOMEM. */
int reply_change_rep(struct job *j, uint64_t change, uint64_t mtime_ns);
/* WATCH's reply: the directory's counter. 0 or -ENOMEM. */
int reply_watch_rep(struct job *j, uint64_t change);
/* One statfs_rep frame. 0 or -ENOMEM. */
int reply_statfs_rep(struct job *j, const struct mst_statfs_rep *r);

/*
 * A data_rep frame around |n| bytes the caller has put at |p| + 16 in a
 * buffer from malloc of 16 + |n| bytes (takes ownership of |p|). With
 * |range_sum| the checksum is the range's, else |checksum|.
 */
int reply_data_frame(struct job *j, uint8_t *p, size_t n,
    uint64_t total_size, uint64_t checksum, int range_sum);

/* Builds LIST/READDIR reply frames of at most j->max_frame bytes. */
struct lister {
	struct job *j;
	uint8_t *p;
	size_t cap, used;
	uint32_t count;
	struct mst_list_rep head;
	int rc;
};

/* Start a listing whose every frame carries |change|, |mtime_ns| and
 * |flags| (MST_LIST_*). */
void lister_init(struct lister *l, struct job *j, uint64_t change,
    uint64_t mtime_ns, uint8_t flags);
/* Add one entry; a full frame goes out first. Errors stick in l->rc. */
void lister_add(struct lister *l, const struct mst_list_entry *en);
/* Send the last frame (an empty one when nothing was added) and free the
 * buffer: 0 or the first error. */
int lister_finish(struct lister *l);

#endif /* MST_REPLY_H */
