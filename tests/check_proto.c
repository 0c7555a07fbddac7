/*
 * check_proto.c - Check suite for libmstproto.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "mstproto.h"

START_TEST(hdr_round_trip)
{
	struct mst_hdr h = { MST_VERSION, MST_OP_PING, MST_F_REPLY, 0, 7, 8 };
	struct mst_hdr g;
	uint8_t b[MST_HDR_LEN];

	ck_assert_int_eq(mst_hdr_encode(&h, b, sizeof b), MST_HDR_LEN);
	ck_assert_int_eq(mst_hdr_decode(&g, b, sizeof b, MST_FRAME_DEFAULT),
	    MST_HDR_LEN);
	ck_assert_uint_eq(g.op, MST_OP_PING);
	ck_assert_uint_eq(g.id, 7);
	ck_assert_uint_eq(g.len, 8);
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("frame");

	tcase_add_test(tc, hdr_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
