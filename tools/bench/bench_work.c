/*
 * bench_work.c - the workloads of mstore-bench: what each writer does
 * between setup and cleanup (deliver, read, mixed), filling the
 * mailboxes before read and mixed, and counting what a run left.
 * Owns the timing of each operation and the counts per kind; never
 * touches a target but through its ops, and never prints but through
 * the driver's bench_report_error and bench_note.
 *
 * What the n-th message or operation is (its size, its kind, its
 * mailbox in "mixed") comes from bench_rng_derive(seed, stream, n), so
 * one seed gives every target the same work whichever writer takes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_run.h"
#include "../cli.h"

#define MAX_CONSECUTIVE_ERRORS	100	/* a writer gives up after these */

/* Streams of bench_rng_derive. */
#define STREAM_FILL		1u
#define STREAM_RUN		2u

/* mixed: a writer's cache of listings (see struct mix_slot). */
#define MIX_SLOTS_MAX		256u
#define MIX_LIST_TTL_NS		1000000000ull
#define MIX_TRIES		8u	/* mailboxes tried, races lost */

/* Count and time one successful operation of kind |k|. */
static void
done(struct worker *w, enum bench_kind k, uint64_t ns)
{
	bench_hist_add(&w->hist[k], ns);
	atomic_fetch_add_explicit(&w->ops[k], 1, memory_order_relaxed);
}

/* Count a failed operation; 1 when the writer should stop. */
static int
failed(struct worker *w, int rc, const struct bench_err *e,
    unsigned *consecutive)
{
	char why[96];

	atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
	bench_report_error(w->run, w->index, "", rc, e);
	if (++*consecutive < MAX_CONSECUTIVE_ERRORS)
		return 0;
	snprintf(why, sizeof why, "writer %u stops after %u errors in a row",
	    w->index, *consecutive);
	bench_note("%s: %s", w->run->ts->arg, why);
	return 1;
}

static int
stopping(const struct run *r)
{
	return atomic_load_explicit(&r->stop, memory_order_relaxed);
}

/* Make a new message for |mbox| in w->body, its size drawn from |r|. */
static void
compose(struct worker *w, struct bench_rng *r, unsigned mbox,
    struct bench_msg *m, char *name, size_t cap)
{
	const struct run *run = w->run;

	bench_msg_name(run->o, w->index, w->seq++, name, cap);
	m->mbox = mbox;
	m->name = name;
	m->body = w->body;
	m->len = (size_t)bench_msg_size(run->o, r);
	bench_msg_body(&w->rng, run->text, run->o, mbox, name, w->body,
	    m->len);
}

/* Compose (untimed), then deliver one message to |mbox| (timed). */
static int
timed_deliver(struct worker *w, struct bench_rng *r, unsigned mbox,
    struct bench_err *e)
{
	struct bench_msg m;
	char name[256];
	uint64_t t0;
	int rc;

	compose(w, r, mbox, &m, name, sizeof name);
	t0 = cli_now_ns();
	rc = w->run->ts->ops->deliver(w->session, &m, e);
	if (rc == 0) {
		done(w, BENCH_K_DELIVER, cli_now_ns() - t0);
		w->bytes += m.len;
	}
	return rc;
}

/* --- deliver --- */

/* Message i (over all writers) goes to mailbox i modulo M. */
static void
deliver_loop(struct worker *w)
{
	struct run *r = w->run;
	const struct bench_opts *o = r->o;
	struct bench_rng mr;
	struct bench_err e;
	unsigned consecutive = 0;
	uint64_t ticket;
	int rc;

	while (!stopping(r)) {
		ticket = atomic_fetch_add(&r->next, 1);
		if (o->count && ticket >= o->count)
			break;
		bench_rng_derive(&mr, o->seed, STREAM_RUN, ticket);
		rc = timed_deliver(w, &mr, (unsigned)(ticket % o->mailboxes),
		    &e);
		if (rc == 0)
			consecutive = 0;
		else if (failed(w, rc, &e, &consecutive))
			break;
	}
}

/* --- read --- */

/* Read message |en| of new/ of |mbox| whole and mark it seen. */
static int
read_one(struct worker *w, unsigned mbox, const struct bench_entry *en,
    struct bench_err *e)
{
	const struct bench_target_ops *ops = w->run->ts->ops;
	uint64_t t0 = cli_now_ns(), size = 0;
	int rc = ops->read(w->session, mbox, BENCH_NEW, en, &size, e);

	if (rc == 0)
		rc = ops->seen(w->session, mbox, en, e);
	if (rc == 0) {
		done(w, BENCH_K_READ, cli_now_ns() - t0);
		w->bytes += size;
	}
	return rc;
}

/*
 * An IMAP server's first look at a mailbox: list new/, read every
 * message whole, move each into cur/ as seen. Each writer takes the next
 * mailbox nobody has taken, so a mailbox has one reader at a time. The
 * listing is timed as part of the run, not of any message.
 */
static void
read_loop(struct worker *w)
{
	struct run *r = w->run;
	struct bench_list l = { 0 };
	struct bench_err e;
	unsigned consecutive = 0;
	uint64_t mbox;
	size_t i;
	int rc;

	while (!stopping(r)) {
		mbox = atomic_fetch_add(&r->next, 1);
		if (mbox >= r->o->mailboxes)
			break;
		rc = r->ts->ops->list(w->session, (unsigned)mbox, BENCH_NEW,
		    &l, &e);
		if (rc < 0) {
			if (failed(w, rc, &e, &consecutive))
				break;
			continue;
		}
		for (i = 0; i < l.n && !stopping(r); i++) {
			rc = read_one(w, (unsigned)mbox, &l.v[i], &e);
			if (rc == 0)
				consecutive = 0;
			else if (failed(w, rc, &e, &consecutive))
				goto out;
		}
	}
out:
	bench_list_free(&l);
}

/* --- mixed --- */

/*
 * A writer's listings of new/, one slot per mailbox modulo the slot
 * count: an IMAP server keeps its view of a mailbox and looks again when
 * it is old or proved wrong. A slot is listed again after
 * MIX_LIST_TTL_NS, at its next use after a message in it was found gone
 * (another writer expunged it: a conflict, not an error), and whenever
 * it was empty, once per pick: mail may have arrived since.
 */
struct mix_slot {
	unsigned mbox;
	uint64_t listed_ns;		/* 0: list before use */
	struct bench_list l;
};

struct mix {
	struct worker *w;
	struct mix_slot *slot;
	unsigned nslots;
};

/*
 * Pick a random message of a random mailbox: the slot and index in
 * *sl_out and *i_out. Tries MIX_TRIES mailboxes. Returns 1, 0 when all
 * were empty, or a failed listing's negative errno.
 */
static int
mix_pick(struct mix *x, struct bench_rng *r, struct mix_slot **sl_out,
    size_t *i_out, struct bench_err *e)
{
	struct worker *w = x->w;
	struct mix_slot *sl;
	uint64_t start = cli_now_ns();
	unsigned t, mbox;
	int rc;

	for (t = 0; t < MIX_TRIES; t++) {
		mbox = (unsigned)(bench_rng_next(r) % w->run->o->mailboxes);
		sl = &x->slot[mbox % x->nslots];
		if (sl->mbox != mbox || sl->listed_ns == 0 ||
		    cli_now_ns() - sl->listed_ns > MIX_LIST_TTL_NS ||
		    (sl->l.n == 0 && sl->listed_ns < start)) {
			sl->mbox = mbox;
			sl->listed_ns = 0;
			rc = w->run->ts->ops->list(w->session, mbox,
			    BENCH_NEW, &sl->l, e);
			if (rc < 0)
				return rc;
			sl->listed_ns = cli_now_ns();
		}
		if (sl->l.n > 0) {
			*sl_out = sl;
			*i_out = (size_t)(bench_rng_next(r) % sl->l.n);
			return 1;
		}
	}
	return 0;
}

/*
 * Read (whole) or expunge one random message. A message another writer
 * expunged first is a conflict: counted, forgotten, and another one
 * picked. Returns 1 done (its size in *size_out), 0 when no message was
 * found in MIX_TRIES attempts, or a negative errno.
 */
static int
mix_touch(struct mix *x, enum bench_kind k, struct bench_rng *r,
    uint64_t *size_out, struct bench_err *e)
{
	struct worker *w = x->w;
	const struct bench_target_ops *ops = w->run->ts->ops;
	struct mix_slot *sl;
	unsigned t;
	size_t i;
	int rc;

	for (t = 0; t < MIX_TRIES; t++) {
		rc = mix_pick(x, r, &sl, &i, e);
		if (rc <= 0)
			return rc;
		*size_out = 0;
		if (k == BENCH_K_READ)
			rc = ops->read(w->session, sl->mbox, BENCH_NEW,
			    &sl->l.v[i], size_out, e);
		else
			rc = ops->expunge(w->session, sl->mbox, BENCH_NEW,
			    &sl->l.v[i], e);
		if (rc == -ENOENT || rc == -ESTALE) {
			atomic_fetch_add_explicit(&w->conflicts, 1,
			    memory_order_relaxed);
			bench_list_remove(&sl->l, i);
			sl->listed_ns = 0;
			continue;
		}
		if (rc < 0)
			return rc;
		if (k == BENCH_K_EXPUNGE)
			bench_list_remove(&sl->l, i);
		return 1;
	}
	return 0;
}

static enum bench_kind
mix_kind(const struct bench_opts *o, struct bench_rng *r)
{
	unsigned p = (unsigned)(bench_rng_next(r) % 100);

	if (p < o->mix[BENCH_K_DELIVER])
		return BENCH_K_DELIVER;
	if (p < o->mix[BENCH_K_DELIVER] + o->mix[BENCH_K_READ])
		return BENCH_K_READ;
	return BENCH_K_EXPUNGE;
}

/* One operation of the mix, ticket |ticket|. */
static int
mix_op(struct mix *x, uint64_t ticket, struct bench_err *e)
{
	struct worker *w = x->w;
	const struct bench_opts *o = w->run->o;
	struct bench_rng r;
	enum bench_kind k;
	uint64_t t0, size;
	int rc;

	bench_rng_derive(&r, o->seed, STREAM_RUN, ticket);
	k = mix_kind(o, &r);
	if (k == BENCH_K_DELIVER)
		return timed_deliver(w, &r,
		    (unsigned)(bench_rng_next(&r) % o->mailboxes), e);
	t0 = cli_now_ns();
	rc = mix_touch(x, k, &r, &size, e);
	if (rc == 1) {
		done(w, k, cli_now_ns() - t0);
		w->bytes += size;
		return 0;
	}
	if (rc < 0)
		return rc;
	/* Nothing to read or expunge where it looked: the mailboxes are
	 * drained. Deliver instead, so every ticket is one operation. */
	rc = timed_deliver(w, &r,
	    (unsigned)(bench_rng_next(&r) % o->mailboxes), e);
	if (rc == 0)
		atomic_fetch_add_explicit(&w->empty, 1, memory_order_relaxed);
	return rc;
}

/*
 * Mailstone-like: each operation is a delivery, a read of a random
 * message or an expunge of one, in the --mix proportions. Messages stay
 * in new/: reading here does not mark them seen.
 */
static void
mixed_loop(struct worker *w)
{
	struct run *r = w->run;
	const struct bench_opts *o = r->o;
	struct mix x = { .w = w };
	struct bench_err e;
	unsigned consecutive = 0, i;
	uint64_t ticket;
	int rc;

	x.nslots = o->mailboxes < MIX_SLOTS_MAX ? o->mailboxes :
	    MIX_SLOTS_MAX;
	x.slot = calloc(x.nslots, sizeof *x.slot);
	if (x.slot == NULL) {
		snprintf(e.what, sizeof e.what, "listing cache");
		(void)failed(w, -ENOMEM, &e, &consecutive);	/* stops */
		return;
	}
	while (!stopping(r)) {
		ticket = atomic_fetch_add(&r->next, 1);
		if (o->count && ticket >= o->count)
			break;
		rc = mix_op(&x, ticket, &e);
		if (rc == 0)
			consecutive = 0;
		else if (failed(w, rc, &e, &consecutive))
			break;
	}
	for (i = 0; i < x.nslots; i++)
		bench_list_free(&x.slot[i].l);
	free(x.slot);
}

/* --- setup and the count afterwards --- */

int
bench_work_fill(struct worker *w)
{
	struct run *r = w->run;
	const struct bench_opts *o = r->o;
	uint64_t total = o->per_mailbox * o->mailboxes, t;
	struct bench_rng mr;
	struct bench_msg m;
	struct bench_err e;
	char name[256];
	int rc;

	while (!stopping(r) && !atomic_load(&r->abort)) {
		t = atomic_fetch_add(&r->fill_next, 1);
		if (t >= total)
			break;
		bench_rng_derive(&mr, o->seed, STREAM_FILL, t);
		compose(w, &mr, (unsigned)(t % o->mailboxes), &m, name,
		    sizeof name);
		rc = r->ts->ops->deliver(w->session, &m, &e);
		if (rc < 0) {
			bench_report_error(r, w->index, "setup", rc, &e);
			atomic_store(&r->abort, 1);
			return rc;
		}
		atomic_fetch_add_explicit(&w->filled, 1, memory_order_relaxed);
	}
	return 0;
}

int
bench_work_count(struct worker *w)
{
	struct run *r = w->run;
	struct bench_list l = { 0 };
	struct bench_err e;
	unsigned mb;
	int rc = 0;

	for (mb = w->index; rc == 0 && mb < r->o->mailboxes;
	    mb += r->o->writers) {
		rc = r->ts->ops->list(w->session, mb, BENCH_NEW, &l, &e);
		if (rc < 0)
			break;
		w->in_new += l.n;
		rc = r->ts->ops->list(w->session, mb, BENCH_CUR, &l, &e);
		if (rc == 0)
			w->in_cur += l.n;
	}
	bench_list_free(&l);
	if (rc < 0) {
		bench_report_error(r, w->index, "count", rc, &e);
		atomic_store(&r->count_failed, 1);
	}
	return rc;
}

const struct bench_workload bench_work_loads[] = {
	{
		.name = "deliver", .unit = "deliveries/s",
		.did = "delivered", .noun = "deliveries",
		.col_rate = "deliv/s", .kinds = 1u << BENCH_K_DELIVER,
		.run = deliver_loop,
	},
	{
		.name = "read", .unit = "reads/s",
		.did = "read", .noun = "reads",
		.col_rate = "reads/s", .kinds = 1u << BENCH_K_READ,
		.fills = 1, .run = read_loop,
	},
	{
		.name = "mixed", .unit = "ops/s",
		.did = "ops", .noun = "operations",
		.col_rate = "ops/s", .kinds = (1u << BENCH_K_DELIVER) |
		    (1u << BENCH_K_READ) | (1u << BENCH_K_EXPUNGE),
		.fills = 1, .run = mixed_loop,
	},
};
const size_t bench_work_nloads = sizeof bench_work_loads /
    sizeof bench_work_loads[0];
