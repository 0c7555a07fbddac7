/*
 * check_watch.c - Check suite for the watch table (storeserver/watch.c)
 * as the network layer drives it, in process: the real server.c,
 * listen.c and watch.c on a Unix socket in a private mkdtemp directory,
 * its loop on a thread of its own, and a fake engine in place of the
 * local one. The fake answers WATCH with a fixed change counter and
 * anything else with EOPNOTSUPP, at once, and has a thread of its own
 * that calls engine_conf.notice as a back-end does for a change made by
 * another server sharing its storage. Clients speak the protocol
 * through libmstclient. Each test runs in its own process (Check's
 * fork mode), which ends the server with SIGTERM.
 */
#include <config.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "engine.h"
#include "mstclient.h"
#include "mstproto.h"
#include "server.h"
#include "testutil.h"

#define WATCH_CHANGE	5	/* the counter every WATCH reply carries */

/* The fake engine: what engine_conf the server gave it. */
struct engine {
	struct engine_conf conf;
};

static char dir[64];
static char addr[96];
static struct server *srv;
static struct engine fake;
static pthread_t loop;

static int
fake_open(const struct engine_conf *c, struct engine **out)
{
	fake.conf = *c;
	*out = &fake;
	return 0;
}

/* Answer at once, from the loop's own thread: done may be called from
 * any thread. */
static void
fake_submit(struct engine *e, struct job *j)
{
	struct mst_watch_rep r = { .change = WATCH_CHANGE };
	uint8_t *p;
	int n;

	if (j->op == MST_OP_WATCH) {
		p = malloc(16);
		ck_assert_ptr_nonnull(p);
		n = mst_watch_rep_encode(&r, p, 16);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(job_add_frame(j, p, (size_t)n), 0);
	} else {
		j->status = -EOPNOTSUPP;
	}
	e->conf.done(e->conf.done_arg, j);
}

static void
fake_close(struct engine *e)
{
	(void)e;
}

static const struct engine_ops fake_ops = {
	.name = "fake",
	.open = fake_open,
	.submit = fake_submit,
	.close = fake_close,
};

static void *
run_loop(void *arg)
{
	(void)arg;
	ck_assert_int_eq(server_run(srv), 0);
	return NULL;
}

/* A server on unix:DIR/sock with the fake engine, wired as mstored
 * wires a back-end (done and notice to the server). */
static void
setup(void)
{
	char *listen[1] = { addr };
	struct engine_conf ec = {
		.done = server_job_done,
		.notice = server_engine_notice,
	};
	struct engine *e;
	struct conf c;

	snprintf(dir, sizeof dir, "/tmp/mst-check_watch.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(addr, sizeof addr, "unix:%s/sock", dir);
	ck_assert_int_eq(log_open("stderr", LOG_LVL_WARN), 0);
	conf_init(&c);
	ck_assert_int_eq(conf_set_listen(&c, listen, 1), 0);
	ck_assert_int_eq(server_new(&c, NULL, 0, &srv), 0);
	conf_free(&c);
	ec.done_arg = srv;
	ec.notice_arg = srv;
	ck_assert_int_eq(fake_ops.open(&ec, &e), 0);
	server_set_engine(srv, &fake_ops, e);
	ck_assert_int_eq(pthread_create(&loop, NULL, run_loop, NULL), 0);
}

static void
teardown(void)
{
	ck_assert_int_eq(raise(SIGTERM), 0);
	ck_assert_int_eq(pthread_join(loop, NULL), 0);
	fake_ops.close(&fake);
	server_free(srv);
	rm_rf(dir);
}

static struct mst_client *
client(void)
{
	struct mst_client_opts o = { .timeout_ms = 5000 };
	struct mst_client *c;

	ck_assert_int_eq(mst_client_connect(addr, &o, &c), 0);
	return c;
}

static void
watch(struct mst_client *c, const char *path)
{
	struct mst_path_req q = { .path = mst_str_of(path) };
	struct mst_watch_rep r;
	uint8_t b[MST_PATH_MAX + 8];
	const uint8_t *rp;
	struct mst_hdr h;
	int n = mst_path_req_encode(&q, b, sizeof b);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_WATCH, b, (size_t)n, &h,
	    &rp), 0);
	ck_assert_int_eq(mst_watch_rep_decode(&r, rp, h.len), 0);
	ck_assert_uint_eq(r.change, WATCH_CHANGE);
}

/* What the fake engine's own thread reports, as another server's. */
struct change {
	const char *dir, *name;
	uint8_t event;
	uint64_t id, change;
};

/*
 * The engine thread: one notice per change, each built in a buffer
 * that is scribbled over as soon as the call returns, since the
 * engine only lends it.
 */
static void *
engine_thread(void *arg)
{
	const struct change *ch = arg;
	char d[MST_PATH_MAX + 1], nm[256];
	struct jnotice n = { .dir = d, .name = nm };

	for (; ch->dir != NULL; ch++) {
		snprintf(d, sizeof d, "%s", ch->dir);
		snprintf(nm, sizeof nm, "%s", ch->name);
		n.event = ch->event;
		n.id = ch->id;
		n.change = ch->change;
		fake.conf.notice(fake.conf.notice_arg, &n);
		memset(d, 'X', sizeof d - 1);
		memset(nm, 'X', sizeof nm - 1);
	}
	return NULL;
}

static void
report(const struct change *ch)
{
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, engine_thread, (void *)ch),
	    0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
}

/* The next frame |c| gets is a PING reply: nothing came before it. */
static void
nothing_pending(struct mst_client *c)
{
	struct mst_ping q = { .cookie = 77 }, r;
	uint8_t b[8];
	const uint8_t *rp;
	struct mst_hdr h;
	int n = mst_ping_encode(&q, b, sizeof b);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mst_client_call(c, MST_OP_PING, b, (size_t)n, &h,
	    &rp), 0);
	ck_assert_uint_eq(h.op, MST_OP_PING);
	ck_assert_int_eq(mst_ping_decode(&r, rp, h.len), 0);
	ck_assert_uint_eq(r.cookie, 77);
}

static void
expect_notify(struct mst_client *c, const char *path, const char *name,
    uint8_t event, uint64_t id, uint64_t change)
{
	const uint8_t *rp;
	struct mst_notify n;
	struct mst_hdr h;

	ck_assert_int_eq(mst_client_recv(c, &h, &rp), 0);
	ck_assert_uint_eq(h.op, MST_OP_NOTIFY);
	ck_assert_uint_eq(h.flags, MST_F_NOTICE);
	ck_assert_uint_eq(h.id, 0);
	ck_assert_int_eq(mst_notify_decode(&n, rp, h.len), 0);
	ck_assert_uint_eq(n.path.len, strlen(path));
	ck_assert_int_eq(memcmp(n.path.p, path, n.path.len), 0);
	ck_assert_uint_eq(n.name.len, strlen(name));
	ck_assert_int_eq(memcmp(n.name.p, name, n.name.len), 0);
	ck_assert_uint_eq(n.event, event);
	ck_assert_uint_eq(n.id, id);
	ck_assert_uint_eq(n.change, change);
}

/* Another server's delivery into a/new reaches the connection that
 * watches a/new, as NOTIFY, and not the one that watches b/new. */
START_TEST(engine_notice_reaches_the_watcher_only)
{
	static const struct change ch[] = {
		{ "x.example/a/new", "m1", MST_EV_ADD, 42, 6 },
		{ NULL, NULL, 0, 0, 0 },
	};
	struct mst_client *wa = client(), *wb = client();

	watch(wa, "x.example/a/new");
	watch(wb, "x.example/b/new");
	report(ch);
	expect_notify(wa, "x.example/a/new", "m1", MST_EV_ADD, 42, 6);
	/* The fan-out that sent wa's notice is over: wb got nothing. */
	nothing_pending(wb);
	nothing_pending(wa);
	mst_client_free(wa);
	mst_client_free(wb);
}
END_TEST

/* As for a job's notices, a change the WATCH reply already counted is
 * not sent again; a later one is, in order. */
START_TEST(engine_notice_at_or_below_the_watch_counter_is_not_sent)
{
	static const struct change ch[] = {
		{ "x.example/a/cur", "old", MST_EV_REMOVE, 7, WATCH_CHANGE },
		{ "x.example/a/cur", "new1", MST_EV_ADD, 8, WATCH_CHANGE + 1 },
		{ "x.example/a/cur", "new2", MST_EV_CHANGE, 8, WATCH_CHANGE + 2 },
		{ NULL, NULL, 0, 0, 0 },
	};
	struct mst_client *w = client();

	watch(w, "x.example/a/cur");
	report(ch);
	expect_notify(w, "x.example/a/cur", "new1", MST_EV_ADD, 8,
	    WATCH_CHANGE + 1);
	expect_notify(w, "x.example/a/cur", "new2", MST_EV_CHANGE, 8,
	    WATCH_CHANGE + 2);
	nothing_pending(w);
	mst_client_free(w);
}
END_TEST

static Suite *
watch_suite(void)
{
	Suite *s = suite_create("watch");
	TCase *tc = tcase_create("engine notices");

	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, engine_notice_reaches_the_watcher_only);
	tcase_add_test(tc,
	    engine_notice_at_or_below_the_watch_counter_is_not_sent);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(watch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
