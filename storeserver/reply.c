/*
 * reply.c - reply frames shared by every storage back-end (reply.h):
 * fixed-size replies and the LIST/READDIR frame builder. Owns only the
 * framing: never looks at an index, a log or a RADOS object, so the
 * local and rados back-ends answer byte for byte alike.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

static int
frame_alloc(size_t cap, uint8_t **out)
{
	*out = malloc(cap);
	return *out ? 0 : -ENOMEM;
}

int
reply_attr_rep(struct job *j, const struct mst_attr_rep *r)
{
	uint8_t *p;
	int len;

	if (frame_alloc(128, &p) < 0)
		return -ENOMEM;
	len = mst_attr_rep_encode(r, p, 128);
	return job_add_frame(j, p, (size_t)len);
}

int
reply_change_rep(struct job *j, uint64_t change, uint64_t mtime_ns)
{
	struct mst_change_rep r = { change, mtime_ns };
	uint8_t *p;
	int len;

	if (frame_alloc(16, &p) < 0)
		return -ENOMEM;
	len = mst_change_rep_encode(&r, p, 16);
	return job_add_frame(j, p, (size_t)len);
}

int
reply_watch_rep(struct job *j, uint64_t change)
{
	struct mst_watch_rep w = { change };
	uint8_t *p;

	if (frame_alloc(8, &p) < 0)
		return -ENOMEM;
	mst_watch_rep_encode(&w, p, 8);
	return job_add_frame(j, p, 8);
}

int
reply_statfs_rep(struct job *j, const struct mst_statfs_rep *r)
{
	uint8_t *p;

	if (frame_alloc(128, &p) < 0)
		return -ENOMEM;
	return job_add_frame(j, p, (size_t)mst_statfs_rep_encode(r, p, 128));
}

int
reply_data_frame(struct job *j, uint8_t *p, size_t n, uint64_t total_size,
    uint64_t checksum, int range_sum)
{
	struct mst_data_rep r = { .total_size = total_size,
		.checksum = checksum };

	/* The data already sits after the fixed fields: encode those. */
	if (range_sum)
		r.checksum = mst_checksum(p + 16, n);
	mst_data_rep_encode(&r, p, 16);
	return job_add_frame(j, p, 16 + n);
}

#define LIST_HEAD_LEN 21u

void
lister_init(struct lister *l, struct job *j, uint64_t change,
    uint64_t mtime_ns, uint8_t flags)
{
	memset(l, 0, sizeof *l);
	l->j = j;
	l->cap = j->max_frame;
	l->head.change = change;
	l->head.dir_mtime_ns = mtime_ns;
	l->head.flags = flags;
}

static void
lister_flush(struct lister *l, int last)
{
	int len;

	if (l->rc || (!last && l->count == 0))
		return;
	if (l->p == NULL && (l->p = malloc(LIST_HEAD_LEN)) == NULL) {
		l->rc = -ENOMEM;
		return;
	}
	l->head.count = l->count;
	l->head.entries = NULL;
	l->head.entries_len = 0;
	len = mst_list_rep_encode(&l->head, l->p, LIST_HEAD_LEN);
	if (len < 0) {
		l->rc = len;
		return;
	}
	l->rc = job_add_frame(l->j, l->p, l->used ? l->used : LIST_HEAD_LEN);
	l->p = NULL;
	l->used = 0;
	l->count = 0;
}

void
lister_add(struct lister *l, const struct mst_list_entry *en)
{
	size_t need = mst_list_entry_size(en);

	if (l->rc)
		return;
	if (l->p && l->used + need > l->cap)
		lister_flush(l, 0);
	if (l->p == NULL) {
		l->p = malloc(l->cap);
		l->used = LIST_HEAD_LEN;
		if (l->p == NULL) {
			l->rc = -ENOMEM;
			return;
		}
	}
	l->used += (size_t)mst_list_entry_encode(en, l->p + l->used,
	    l->cap - l->used);
	l->count++;
}

int
lister_finish(struct lister *l)
{
	lister_flush(l, 1);
	free(l->p);
	l->p = NULL;
	return l->rc;
}
