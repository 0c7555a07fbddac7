/*
 * check_route.c - the rendezvous choice of a mount with several servers
 * (fuse-mount/route.c), without servers: the order is a function of key
 * and addresses only, spreads keys evenly, and when a server joins it
 * takes only the keys it now wins (about 1/N); when one leaves only its
 * own keys move.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "route.h"

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
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
