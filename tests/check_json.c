/*
 * check_json.c - Check suite for the tools' JSON writer (tools/ctl/json.c):
 * string escaping of quotes, backslashes, every control character,
 * UTF-8 of each length, surrogate pairs, and each kind of broken UTF-8;
 * commas and nesting; numbers; base64 (RFC 4648's test vectors); the
 * errors it reports. Every expected
 * output is also the form Python's json module reads back.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

struct esc_case {
	const char *in;
	size_t len;
	const char *want;
};

#define C(s, w)	{ s, sizeof(s) - 1, w }

static const struct esc_case esc_cases[] = {
	C("", "\"\""),
	C("plain ascii 0-9 ~", "\"plain ascii 0-9 ~\""),
	C("a\"b", "\"a\\\"b\""),
	C("a\\b", "\"a\\\\b\""),
	C("/", "\"/\""),
	C("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\""),
	C("\x01\x02\x1f", "\"\\u0001\\u0002\\u001f\""),
	C("a\0b", "\"a\\u0000b\""),
	C("\x7f", "\"\\u007f\""),
	/* UTF-8 of 2, 3 and 4 bytes */
	C("\xc3\xa9", "\"\\u00e9\""),			/* e acute */
	C("\xe2\x82\xac", "\"\\u20ac\""),		/* euro */
	C("\xef\xbf\xbf", "\"\\uffff\""),
	C("\xf0\x9f\x93\xa7", "\"\\ud83d\\udce7\""),	/* U+1F4E7 */
	C("\xf4\x8f\xbf\xbf", "\"\\udbff\\udfff\""),	/* U+10FFFF */
	/* broken UTF-8: each bad byte is U+FFFD, the rest survives */
	C("\xff", "\"\\ufffd\""),
	C("\x80x", "\"\\ufffdx\""),			/* lone continuation */
	C("\xc3", "\"\\ufffd\""),			/* cut at the end */
	C("\xc3x", "\"\\ufffdx\""),			/* cut by ASCII */
	C("\xc0\xaf", "\"\\ufffd\\ufffd\""),		/* overlong '/' */
	C("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""),	/* overlong */
	C("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""),	/* surrogate */
	C("\xf4\x90\x80\x80",
	    "\"\\ufffd\\ufffd\\ufffd\\ufffd\""),	/* over U+10FFFF */
	C("\xf8\x88\x80\x80\x80",
	    "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""),	/* 5-byte form */
	C("\xe2\x82", "\"\\ufffd\\ufffd\""),		/* cut 3-byte */
	C("ok\xe2\x82\xac\xff\"", "\"ok\\u20ac\\ufffd\\\"\""),
};

START_TEST(string_escaping_matches_table)
{
	const struct esc_case *c = &esc_cases[_i];
	struct json j;

	json_init(&j);
	json_strn(&j, NULL, c->in, c->len);
	ck_assert_ptr_nonnull(json_text(&j));
	ck_assert_msg(strcmp(json_text(&j), c->want) == 0,
	    "case %d: got %s, want %s", _i, json_text(&j), c->want);
	json_free(&j);
}
END_TEST

START_TEST(output_is_ascii_for_every_byte)
{
	uint8_t in[256];
	struct json j;
	const char *t;
	size_t i;

	for (i = 0; i < sizeof in; i++)
		in[i] = (uint8_t)i;
	json_init(&j);
	json_strn(&j, NULL, in, sizeof in);
	t = json_text(&j);
	ck_assert_ptr_nonnull(t);
	for (i = 0; t[i]; i++)
		ck_assert_msg((unsigned char)t[i] >= 0x20 &&
		    (unsigned char)t[i] < 0x7f, "byte %zu is 0x%02x", i,
		    (unsigned char)t[i]);
	/* 0x80..0xff alone are never valid UTF-8: 128 replacements */
	ck_assert_ptr_nonnull(strstr(t, "~\\u007f\\ufffd\\ufffd"));
	json_free(&j);
}
END_TEST

START_TEST(keys_are_escaped_too)
{
	struct json j;

	json_init(&j);
	json_obj_begin(&j, NULL);
	json_u64(&j, "a\"\n", 1);
	json_obj_end(&j);
	ck_assert_str_eq(json_text(&j), "{\"a\\\"\\n\":1}");
	json_free(&j);
}
END_TEST

START_TEST(commas_and_nesting)
{
	struct json j;

	json_init(&j);
	json_obj_begin(&j, NULL);
	json_str(&j, "s", "x");
	json_u64(&j, "u", UINT64_MAX);
	json_i64(&j, "i", INT64_MIN);
	json_arr_begin(&j, "a");
	json_u64(&j, NULL, 1);
	json_obj_begin(&j, NULL);
	json_obj_end(&j);
	json_arr_begin(&j, NULL);
	json_arr_end(&j);
	json_null(&j, NULL);
	json_arr_end(&j);
	json_bool(&j, "t", 1);
	json_bool(&j, "f", 0);
	json_num(&j, "ms", 1.23456, 3);
	json_num(&j, "nan", 0.0 / 0.0, 3);
	json_obj_end(&j);
	ck_assert_str_eq(json_text(&j), "{\"s\":\"x\","
	    "\"u\":18446744073709551615,\"i\":-9223372036854775808,"
	    "\"a\":[1,{},[],null],\"t\":true,\"f\":false,\"ms\":1.235,"
	    "\"nan\":null}");
	json_free(&j);
}
END_TEST

START_TEST(base64_of_each_tail_length)
{
	static const struct { const char *in, *want; } c[] = {
		{ "", "\"\"" },
		{ "f", "\"Zg==\"" },
		{ "fo", "\"Zm8=\"" },
		{ "foo", "\"Zm9v\"" },
		{ "foob", "\"Zm9vYg==\"" },
		{ "fooba", "\"Zm9vYmE=\"" },
		{ "foobar", "\"Zm9vYmFy\"" },
		{ "\xff\xfe\x00", "\"//4A\"" },
	};
	struct json j;
	size_t i;

	for (i = 0; i < NELEM(c); i++) {
		json_init(&j);
		json_base64(&j, NULL, c[i].in, i == NELEM(c) - 1 ? 3 :
		    strlen(c[i].in));
		ck_assert_msg(strcmp(json_text(&j), c[i].want) == 0,
		    "case %zu: got %s, want %s", i, json_text(&j),
		    c[i].want);
		json_free(&j);
	}
}
END_TEST

START_TEST(print_refuses_an_open_document)
{
	struct json j;
	FILE *f = fopen("/dev/null", "w");

	ck_assert_ptr_nonnull(f);
	json_init(&j);
	json_obj_begin(&j, NULL);
	ck_assert_int_eq(json_print(&j, f), -EINVAL);
	json_obj_end(&j);
	ck_assert_int_eq(json_print(&j, f), 0);
	json_obj_end(&j);	/* one close too many */
	ck_assert_int_eq(json_print(&j, f), -EINVAL);
	ck_assert_ptr_null(json_text(&j));
	json_free(&j);
	fclose(f);
}
END_TEST

START_TEST(nesting_deeper_than_the_limit_is_an_error)
{
	struct json j;
	int i;

	json_init(&j);
	for (i = 0; i <= JSON_DEPTH; i++)
		json_arr_begin(&j, NULL);
	ck_assert_int_eq(j.err, -E2BIG);
	ck_assert_ptr_null(json_text(&j));
	json_free(&j);
}
END_TEST

static Suite *
json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("writer");

	tcase_add_loop_test(tc, string_escaping_matches_table, 0,
	    (int)NELEM(esc_cases));
	tcase_add_test(tc, output_is_ascii_for_every_byte);
	tcase_add_test(tc, keys_are_escaped_too);
	tcase_add_test(tc, commas_and_nesting);
	tcase_add_test(tc, base64_of_each_tail_length);
	tcase_add_test(tc, print_refuses_an_open_document);
	tcase_add_test(tc, nesting_deeper_than_the_limit_is_an_error);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
