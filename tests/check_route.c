/*
 * check_route.c - a mount with several servers (fuse-mount/route.c).
 * The rendezvous choice, without servers: the order is a function of
 * key and addresses only, spreads keys evenly, and when a server joins
 * it takes only the keys it now wins (about 1/N); when one leaves only
 * its own keys move. Failover, against two real mstored ($MSTORED, on
 * Unix sockets in a private directory, killed by PID in the teardown and
 * with the test process): a request that was on its way to a server as
 * the health thread judged it down moves at once, or fails at once when
 * it may not be sent again, waited for or not; never after its
 * timeout.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "route.h"
#include "testutil.h"

#define NKEYS 10000

static const char *const four[] = { "127.0.0.1:7001", "127.0.0.1:7002",
	"127.0.0.1:7003", "127.0.0.1:7004" };

static size_t
winner(const char *key, const char *const *servers, size_t n)
{
	size_t idx[ROUTE_MAX];

	route_order(key, strlen(key), servers, n, idx);
	return idx[0];
}

static void
key_of(size_t i, char *buf, size_t cap)
{
	snprintf(buf, cap, "example.com/user%zu", i);
}

START_TEST(order_is_a_permutation_by_weight)
{
	size_t idx[4], seen = 0, i;
	const char *k = "example.com/al";

	route_order(k, strlen(k), four, 4, idx);
	for (i = 0; i < 4; i++)
		seen |= (size_t)1 << idx[i];
	ck_assert_uint_eq(seen, 15);
	for (i = 1; i < 4; i++)
		ck_assert(route_weight(k, strlen(k), four[idx[i - 1]]) >=
		    route_weight(k, strlen(k), four[idx[i]]));
}
END_TEST

START_TEST(order_does_not_depend_on_list_order)
{
	const char *rev[] = { four[3], four[2], four[1], four[0] };
	char k[64];
	size_t i;

	for (i = 0; i < 500; i++) {
		key_of(i, k, sizeof k);
		ck_assert_str_eq(four[winner(k, four, 4)],
		    rev[winner(k, rev, 4)]);
	}
}
END_TEST

START_TEST(keys_spread_evenly)
{
	size_t count[4] = { 0 }, i;
	char k[64];

	for (i = 0; i < NKEYS; i++) {
		key_of(i, k, sizeof k);
		count[winner(k, four, 4)]++;
	}
	for (i = 0; i < 4; i++) {
		ck_assert_uint_gt(count[i], NKEYS / 4 * 8 / 10);
		ck_assert_uint_lt(count[i], NKEYS / 4 * 12 / 10);
	}
}
END_TEST

/* 3 -> 4 servers: only keys the new one wins move, about 1/4. */
START_TEST(joining_server_takes_only_its_share)
{
	size_t i, moved = 0;
	char k[64];

	for (i = 0; i < NKEYS; i++) {
		size_t a, b;

		key_of(i, k, sizeof k);
		a = winner(k, four, 3);
		b = winner(k, four, 4);
		if (a != b) {
			ck_assert_uint_eq(b, 3);	/* only to the new one */
			moved++;
		}
	}
	ck_assert_uint_gt(moved, NKEYS / 4 * 8 / 10);
	ck_assert_uint_lt(moved, NKEYS / 4 * 12 / 10);
}
END_TEST

/* 4 -> 3 servers (one removed from the middle): only its keys move, and
 * each goes to its second choice. */
START_TEST(leaving_server_hands_over_only_its_own)
{
	const char *three[] = { four[0], four[2], four[3] };
	size_t i, moved = 0, idx[4];
	char k[64];

	for (i = 0; i < NKEYS; i++) {
		const char *a, *b;

		key_of(i, k, sizeof k);
		route_order(k, strlen(k), four, 4, idx);
		a = four[idx[0]];
		b = three[winner(k, three, 3)];
		if (strcmp(a, b) != 0) {
			ck_assert_str_eq(a, four[1]);
			ck_assert_str_eq(b, four[idx[1]]);
			moved++;
		} else {
			ck_assert_str_ne(a, four[1]);
		}
	}
	ck_assert_uint_gt(moved, NKEYS / 4 * 8 / 10);
	ck_assert_uint_lt(moved, NKEYS / 4 * 12 / 10);
}
END_TEST

/* The weight is XXH3 of key, NUL, address: pinned so that every mount
 * (and mstore-ctl) computes the same placement. */
START_TEST(weight_is_stable)
{
	ck_assert_uint_eq(route_weight("a", 1, "b"),
	    route_weight("a", 1, "b"));
	ck_assert_uint_ne(route_weight("a", 1, "b"),
	    route_weight("a", 1, "c"));
	ck_assert_uint_ne(route_weight("ab", 2, "c"),
	    route_weight("a", 1, "bc"));
}
END_TEST

/* ---- failover, against real servers ---- */

#define NSRV		2
#define START_MS	30000	/* valgrind starts slowly */
#define CALL_MS		4000	/* the connections' request timeout */
#define MOVE_MS		2000	/* a moved request is answered within this */

static struct fsrv {
	pid_t pid;
	char dir[48];
	char addr[112];
} fs[NSRV];

static void
fsrv_start(struct fsrv *f)
{
	char data[80], conf[80], log[80];
	const char *argv[] = { mstored_path(), "--foreground", "--data",
		data, "--listen", f->addr, "--config", conf, NULL };
	pid_t parent = getpid();
	int64_t deadline;
	FILE *fp;

	snprintf(f->dir, sizeof f->dir, "%s/s.XXXXXX", tmpbase);
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(data, sizeof data, "%s/data", f->dir);
	snprintf(conf, sizeof conf, "%s/mstored.conf", f->dir);
	snprintf(log, sizeof log, "%s/mstored.log", f->dir);
	snprintf(f->addr, sizeof f->addr, "unix:%s/sock", f->dir);
	ck_assert_int_eq(mkdir(data, 0700), 0);
	fp = fopen(conf, "w");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fclose(fp), 0);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
		    getppid() != parent)
			_exit(127);
		fp = freopen(log, "a", stderr);
		if (fp == NULL || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	deadline = now_ms() + START_MS;
	while (!can_connect(f->addr)) {
		ck_assert_msg(waitpid(f->pid, NULL, WNOHANG) == 0,
		    "mstored exited at start (see %s)", log);
		ck_assert_msg(now_ms() < deadline, "mstored did not start");
		sleep_ms(20);
	}
}

static void
fsrv_kill(struct fsrv *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
	}
	f->pid = -1;
}

static void
setup_servers(void)
{
	size_t i;

	for (i = 0; i < NSRV; i++)
		fs[i] = (struct fsrv){ .pid = -1 };
	for (i = 0; i < NSRV; i++)
		fsrv_start(&fs[i]);
}

static void
teardown_servers(void)
{
	size_t i;

	route_test_after_pick = NULL;
	for (i = 0; i < NSRV; i++) {
		fsrv_kill(&fs[i]);
		rm_rf(fs[i].dir);
		fs[i].dir[0] = '\0';
	}
}

/* |addr|'s state in the routing view ("up", "down", "left"), or "". */
static const char *
state_of(struct route *rt, const char *addr, char *buf, size_t cap)
{
	char view[1024], *line, *save = NULL;
	size_t n = route_view(rt, view, sizeof view - 1), alen = strlen(addr);

	view[n < sizeof view - 1 ? n : sizeof view - 1] = '\0';
	buf[0] = '\0';
	for (line = strtok_r(view, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, addr, alen) == 0 && line[alen] == ' ')
			snprintf(buf, cap, "%.*s", (int)strcspn(line + alen + 1,
			    " "), line + alen + 1);
	return buf;
}

static int
wait_state(struct route *rt, const char *addr, const char *want, int ms)
{
	int64_t deadline = now_ms() + ms;
	char st[16];

	while (strcmp(state_of(rt, addr, st, sizeof st), want) != 0) {
		if (now_ms() >= deadline)
			return 0;
		sleep_ms(5);
	}
	return 1;
}

static struct route *
open_route(void)
{
	const char *addrs[NSRV];
	struct route_opts o = {
		.conn = { .servers = addrs, .nservers = NSRV,
		    .timeout_ms = CALL_MS, .name = "check_route" },
		.health_ms = 100,
		.failover_ms = 1000,
	};
	struct route *rt = NULL;
	size_t i;

	for (i = 0; i < NSRV; i++)
		addrs[i] = fs[i].addr;
	ck_assert_int_eq(route_new(&o, &rt), 0);
	for (i = 0; i < NSRV; i++)
		ck_assert_msg(wait_state(rt, fs[i].addr, "up", 10000),
		    "%s never up", fs[i].addr);
	return rt;
}

/* A key whose first server is fs[0]. */
static void
key_on_first(char *key, size_t cap)
{
	const char *addrs[NSRV];
	size_t i;

	for (i = 0; i < NSRV; i++)
		addrs[i] = fs[i].addr;
	for (i = 0;; i++) {
		snprintf(key, cap, "example.com/u%zu", i);
		if (winner(key, addrs, NSRV) == 0)
			return;
	}
}

/* The hook: the first request chosen for fs[0] waits there until fs[0]
 * is killed, judged down and its requests failed (route.c does that
 * right after it marks the server down in its view). */
static struct route *hook_rt;
static int hook_armed, hook_saw_down;
static int64_t hook_done_ms;

static void
kill_first_after_pick(const char *addr)
{
	if (!hook_armed || strcmp(addr, fs[0].addr) != 0)
		return;
	hook_armed = 0;
	fsrv_kill(&fs[0]);
	hook_saw_down = wait_state(hook_rt, fs[0].addr, "down", 10000);
	sleep_ms(300);		/* the health thread's mconn_fail_all ran */
	hook_done_ms = now_ms();
}

static void
ping_req(uint8_t *buf, size_t cap, int *len)
{
	struct mst_ping q = { 42 };

	*len = mst_ping_encode(&q, buf, cap);
	ck_assert_int_gt(*len, 0);
}

START_TEST(retryable_request_queued_as_its_server_goes_down_moves_at_once)
{
	struct route *rt = open_route();
	struct mreply r;
	char key[64];
	uint8_t buf[16];
	int len, rc;
	int64_t took;

	key_on_first(key, sizeof key);
	ping_req(buf, sizeof buf, &len);
	hook_rt = rt;
	hook_armed = 1;
	hook_saw_down = 0;
	route_test_after_pick = kill_first_after_pick;
	rc = route_call(rt, key, strlen(key), MST_OP_PING, buf, (size_t)len,
	    NULL, 0, MCONN_RETRY, &r);
	took = now_ms() - hook_done_ms;
	route_test_after_pick = NULL;
	mreply_free(&r);
	ck_assert_msg(hook_saw_down, "the killed server was never judged "
	    "down");
	ck_assert_msg(rc == 0, "got %d, want 0 (answered by %s)", rc,
	    fs[1].addr);
	ck_assert_msg(took < MOVE_MS, "answered %lld ms after its server "
	    "was judged down, want < %d (the timeout is %d)",
	    (long long)took, MOVE_MS, CALL_MS);
	route_free(rt);
}
END_TEST

static void
note_reply(void *arg, struct mreply *r)
{
	int *out = arg;

	__atomic_store_n(out, r->status == 0 ? 1 : r->status,
	    __ATOMIC_SEQ_CST);
	mreply_free(r);
}

START_TEST(other_request_queued_as_its_server_goes_down_fails_at_once)
{
	struct route *rt = open_route();
	char key[64];
	uint8_t buf[16];
	int len, rc, got = 0;
	int64_t deadline;

	key_on_first(key, sizeof key);
	ping_req(buf, sizeof buf, &len);
	hook_rt = rt;
	hook_armed = 1;
	hook_saw_down = 0;
	route_test_after_pick = kill_first_after_pick;
	rc = route_call_async(rt, key, strlen(key), MST_OP_PING, buf,
	    (size_t)len, NULL, 0, 0, note_reply, &got);
	route_test_after_pick = NULL;
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(hook_saw_down, "the killed server was never judged "
	    "down");
	deadline = hook_done_ms + MOVE_MS;
	while (__atomic_load_n(&got, __ATOMIC_SEQ_CST) == 0 &&
	    now_ms() < deadline)
		sleep_ms(5);
	ck_assert_msg(__atomic_load_n(&got, __ATOMIC_SEQ_CST) == -EIO,
	    "got %d %lld ms after its server was judged down, want EIO "
	    "within %d (the timeout is %d)",
	    __atomic_load_n(&got, __ATOMIC_SEQ_CST),
	    (long long)(now_ms() - hook_done_ms), MOVE_MS, CALL_MS);
	route_free(rt);
}
END_TEST

/* The same, waited for (route_call without MCONN_RETRY: MKDIR, LINK,
 * PUT, a lock's release): EIO at once, not after the whole timeout. */
START_TEST(waited_request_queued_as_its_server_goes_down_fails_at_once)
{
	struct route *rt = open_route();
	struct mreply r;
	char key[64];
	uint8_t buf[16];
	int len, rc;
	int64_t took;

	key_on_first(key, sizeof key);
	ping_req(buf, sizeof buf, &len);
	hook_rt = rt;
	hook_armed = 1;
	hook_saw_down = 0;
	hook_done_ms = 0;
	route_test_after_pick = kill_first_after_pick;
	rc = route_call(rt, key, strlen(key), MST_OP_PING, buf, (size_t)len,
	    NULL, 0, 0, &r);
	took = now_ms() - hook_done_ms;
	route_test_after_pick = NULL;
	mreply_free(&r);
	ck_assert_msg(hook_saw_down, "the request never went through the "
	    "choice of a server that then went down");
	ck_assert_msg(rc == -EIO, "got %d, want EIO", rc);
	ck_assert_msg(took < MOVE_MS, "failed %lld ms after its server was "
	    "judged down, want < %d (the timeout is %d)", (long long)took,
	    MOVE_MS, CALL_MS);
	route_free(rt);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("rendezvous");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, order_is_a_permutation_by_weight);
	tcase_add_test(tc, order_does_not_depend_on_list_order);
	tcase_add_test(tc, keys_spread_evenly);
	tcase_add_test(tc, joining_server_takes_only_its_share);
	tcase_add_test(tc, leaving_server_hands_over_only_its_own);
	tcase_add_test(tc, weight_is_stable);
	suite_add_tcase(s, tc);
	tc = tcase_create("failover");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, setup_base, teardown_base);
	tcase_add_checked_fixture(tc, setup_servers, teardown_servers);
	tcase_add_test(tc,
	    retryable_request_queued_as_its_server_goes_down_moves_at_once);
	tcase_add_test(tc,
	    other_request_queued_as_its_server_goes_down_fails_at_once);
	tcase_add_test(tc,
	    waited_request_queued_as_its_server_goes_down_fails_at_once);
	suite_add_tcase(s, tc);
	/* Writes to a server that died must not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
