/*
 * watch.c - the watch table of mstored. Owns every watched directory
 * (a hash table keyed by path), its watchers (one per connection and
 * directory), the notices held for a watcher whose WATCH is in flight,
 * the per-connection bounds (max_watches_per_connection, held bytes,
 * unread output) and the fan-out of a change's notice as NOTIFY frames.
 * Knows nothing of sockets, jobs in flight or the engine's threads: the
 * network layer calls it on its loop thread and it reaches connections
 * only through struct watch_io. It never blocks, and a notice for which
 * there is no memory is dropped with a log line, never half-sent.
 *
 * A watcher is registered when its WATCH is submitted, not when it
 * completes: the engine answers WATCH and commits changes on different
 * threads, so a change's completion can reach the loop before the
 * WATCH's even though the engine counted the change after it. Notices
 * for a watcher whose WATCH is still in flight are held; after the WATCH
 * reply those with a counter above the reply's are sent
 * (mstore-protocol(7), WATCH), and if the WATCH fails they go with it.
 * Later notices are filtered against that counter too: the engine counts
 * a change before it is durable, so a WATCH can return a counter that
 * already includes a change whose completion, and notice, reach the loop
 * after it.
 */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "watch.h"

#define WATCHER_HELD_MAX	(1u << 20)	/* held notices, see above */

struct held {
	struct held *next;
	uint64_t change;	/* the directory's counter after it */
	size_t len;
	uint8_t payload[];	/* encoded mst_notify */
};

struct watch;

struct watcher {
	struct watch_conn *wc;
	struct watch *w;
	unsigned pending;	/* WATCH jobs in flight */
	int active;		/* a WATCH succeeded: notices flow */
	uint64_t since;		/* counter its WATCH returned */
	struct held *held;	/* notices until then, oldest first */
	struct held **held_tail;
	size_t held_bytes;
	int held_over;		/* held too many: send RESET instead */
	LIST_ENTRY(watcher) by_path;
	LIST_ENTRY(watcher) by_conn;
};

/* A watched directory: hash-table entry with its watchers. */
struct watch {
	struct watch *next;	/* hash chain */
	uint64_t hash;
	size_t len;
	LIST_HEAD(, watcher) watchers;
	char path[];
};

struct watch_table {
	const struct watch_io *io;
	unsigned max_per_conn;
	struct watch **b;	/* hash buckets */
	size_t nb, n;
};

struct watch_table *
watch_table_new(const struct watch_io *io, unsigned max_per_conn)
{
	struct watch_table *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->io = io;
	t->max_per_conn = max_per_conn;
	return t;
}

void
watch_table_free(struct watch_table *t)
{
	if (t == NULL)
		return;
	assert(t->n == 0);
	free(t->b);
	free(t);
}

size_t
watch_table_count(const struct watch_table *t)
{
	return t->n;
}

static struct watch *
watch_find(const struct watch_table *t, const char *path, size_t len,
    uint64_t h)
{
	struct watch *w;

	if (t->nb == 0)
		return NULL;
	for (w = t->b[h & (t->nb - 1)]; w != NULL; w = w->next)
		if (w->hash == h && w->len == len &&
		    memcmp(w->path, path, len) == 0)
			return w;
	return NULL;
}

static int
watch_grow(struct watch_table *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64, i;
	struct watch **b = calloc(nb, sizeof *b), *w, *next;

	if (b == NULL)
		return -ENOMEM;
	for (i = 0; i < t->nb; i++) {
		for (w = t->b[i]; w != NULL; w = next) {
			next = w->next;
			w->next = b[w->hash & (nb - 1)];
			b[w->hash & (nb - 1)] = w;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

/* The watcher of |path| for |wc|, made (inactive) if there is none yet;
 * watching twice is one watch. NULL when out of memory. */
static struct watcher *
watch_add(struct watch_conn *wc, const char *path, size_t len)
{
	struct watch_table *t = wc->t;
	uint64_t h = mst_checksum(path, len);
	struct watch *w = watch_find(t, path, len, h);
	struct watcher *x;

	if (w != NULL) {
		LIST_FOREACH(x, &w->watchers, by_path)
			if (x->wc == wc)
				return x;
	} else {
		if (t->n >= t->nb && watch_grow(t) < 0)
			return NULL;
		w = malloc(sizeof *w + len + 1);
		if (w == NULL)
			return NULL;
		w->hash = h;
		w->len = len;
		memcpy(w->path, path, len);
		w->path[len] = '\0';
		LIST_INIT(&w->watchers);
		w->next = t->b[h & (t->nb - 1)];
		t->b[h & (t->nb - 1)] = w;
		t->n++;
	}
	x = calloc(1, sizeof *x);
	if (x == NULL) {
		if (LIST_EMPTY(&w->watchers)) {
			t->b[h & (t->nb - 1)] = w->next;
			t->n--;
			free(w);
		}
		return NULL;
	}
	x->wc = wc;
	x->w = w;
	LIST_INSERT_HEAD(&w->watchers, x, by_path);
	LIST_INSERT_HEAD(&wc->watchers, x, by_conn);
	wc->n++;
	return x;
}

static void
held_free(struct watcher *x)
{
	struct held *h;

	while ((h = x->held) != NULL) {
		x->held = h->next;
		free(h);
	}
	x->held_bytes = 0;
}

static void
watcher_remove(struct watcher *x)
{
	struct watch_table *t = x->wc->t;
	struct watch *w = x->w, **pp;

	LIST_REMOVE(x, by_path);
	LIST_REMOVE(x, by_conn);
	x->wc->n--;
	held_free(x);
	free(x);
	if (!LIST_EMPTY(&w->watchers))
		return;
	for (pp = &t->b[w->hash & (t->nb - 1)]; *pp != w; pp = &(*pp)->next)
		;
	*pp = w->next;
	t->n--;
	free(w);
}

static struct watcher *
watcher_find(const struct watch_conn *wc, const char *path, size_t len)
{
	struct watch *w = watch_find(wc->t, path, len,
	    mst_checksum(path, len));
	struct watcher *x;

	if (w == NULL)
		return NULL;
	LIST_FOREACH(x, &w->watchers, by_path)
		if (x->wc == wc)
			return x;
	return NULL;
}

void
watch_conn_init(struct watch_conn *wc, struct watch_table *t, void *ctx,
    const char *name)
{
	wc->t = t;
	wc->ctx = ctx;
	wc->name = name;
	wc->n = 0;
	LIST_INIT(&wc->watchers);
}

void
watch_conn_clear(struct watch_conn *wc)
{
	while (!LIST_EMPTY(&wc->watchers))
		watcher_remove(LIST_FIRST(&wc->watchers));
}

int
watch_conn_full(const struct watch_conn *wc)
{
	return wc->n >= wc->t->max_per_conn;
}

int
watch_begin(struct watch_conn *wc, const char *path, size_t len)
{
	struct watcher *x = watch_add(wc, path, len);

	if (x == NULL)
		return -ENOMEM;
	x->pending++;
	return 0;
}

int
watch_end(struct watch_conn *wc, const char *path, size_t len)
{
	struct watcher *x = watcher_find(wc, path, len);

	if (x == NULL || !x->active)
		return -ENOENT;
	if (x->pending)
		x->active = 0;
	else
		watcher_remove(x);
	return 0;
}

/* Keep a notice for a watcher whose WATCH is in flight. */
static void
watcher_hold(struct watcher *x, uint64_t change, const uint8_t *p,
    size_t len)
{
	struct held *h;

	if (x->held_over)
		return;
	h = x->held_bytes + len <= WATCHER_HELD_MAX ?
	    malloc(sizeof *h + len) : NULL;
	if (h == NULL) {
		held_free(x);	/* over the bound, or out of memory */
		x->held_over = 1;
		return;
	}
	h->next = NULL;
	h->change = change;
	h->len = len;
	memcpy(h->payload, p, len);
	if (x->held == NULL)
		x->held_tail = &x->held;
	*x->held_tail = h;
	x->held_tail = &h->next;
	x->held_bytes += len;
}

void
watch_notify(struct watch_table *t, const struct jnotice *n,
    const struct watch_conn *origin)
{
	const struct watch_io *io = t->io;
	size_t dlen = strlen(n->dir);
	struct watch *w = watch_find(t, n->dir, dlen,
	    mst_checksum(n->dir, dlen));
	struct mst_notify m = {
		.path = mst_str_of(n->dir),
		.event = n->event,
		.name = mst_str_of(n->name),
		.id = n->id,
		.change = n->change,
	};
	struct watcher *x, *next;
	size_t cap, olen;
	uint8_t *buf;
	int len;

	if (w == NULL)
		return;
	cap = 2 + (size_t)m.path.len + 1 + 2 + m.name.len + 16;
	buf = malloc(cap);
	if (buf == NULL) {
		log_err("notify %s: out of memory", n->dir);
		return;
	}
	len = mst_notify_encode(&m, buf, cap);
	assert(len > 0);
	for (x = LIST_FIRST(&w->watchers); x != NULL; x = next) {
		next = LIST_NEXT(x, by_path);	/* x may go with its conn */
		if (x->wc == origin)
			continue;
		if (!x->active) {
			watcher_hold(x, n->change, buf, (size_t)len);
			continue;
		}
		if (n->change <= x->since)
			continue;	/* counted in its WATCH reply */
		olen = io->backlog(x->wc->ctx);
		if (olen > WATCHER_OUT_MAX) {
			log_warn("%s: closing watcher with %zu bytes of "
			    "unread notices", x->wc->name, olen);
			io->close(x->wc->ctx);
			continue;
		}
		io->send(x->wc->ctx, buf, (size_t)len);
	}
	free(buf);
}

/*
 * A WATCH completed: start or end its watcher. Runs after the reply;
 * |since| is the counter the reply returned, and held notices at or
 * below it are news to nobody.
 */
static void
watcher_complete(struct watcher *x, int ok, uint64_t since)
{
	const struct watch_io *io = x->wc->t->io;
	void *ctx = x->wc->ctx;		/* held by the WATCH job */
	struct held *h, *next, *list;
	struct mst_notify reset = {
		.path = { x->w->path, (uint16_t)x->w->len },
		.event = MST_EV_RESET,
		.name = { "", 0 },
	};
	uint8_t buf[2 + MST_PATH_MAX + 1 + 2 + 16];
	uint64_t x_since;
	int n, over;

	x->pending--;
	if (ok && since > x->since)
		x->since = since;
	if (!ok || x->active) {
		if (!x->active && x->pending == 0)
			watcher_remove(x);
		return;
	}
	/* Detach before sending: a failed send closes the connection, and
	 * x with it; later sends to it do nothing. */
	x->active = 1;
	x_since = x->since;
	list = x->held;
	over = x->held_over;
	x->held = NULL;
	x->held_bytes = 0;
	x->held_over = 0;
	if (over) {
		/* Too much changed meanwhile: tell the client to re-list. */
		n = mst_notify_encode(&reset, buf, sizeof buf);
		if (n > 0)
			io->send(ctx, buf, (size_t)n);
	}
	for (h = list; h != NULL; h = next) {
		next = h->next;
		if (h->change > x_since)
			io->send(ctx, h->payload, h->len);
		free(h);
	}
}

/* The counter a successful WATCH reply carries; 0 if it has none. */
static uint64_t
watch_reply_change(const struct job *j)
{
	struct mst_watch_rep r;

	if (j->status != 0 || j->nframes == 0 ||
	    mst_watch_rep_decode(&r, j->frames[0].p, j->frames[0].len) < 0)
		return 0;
	return r.change;
}

void
watch_done(struct watch_conn *wc, const struct job *j)
{
	struct watcher *x = watcher_find(wc, j->req.path.path.p,
	    j->req.path.path.len);

	if (x != NULL)
		watcher_complete(x, j->status == 0, watch_reply_change(j));
}
