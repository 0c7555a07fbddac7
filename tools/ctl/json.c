/*
 * json.c - the tools' JSON writer (see json.h). Owns the escaping rules:
 * the output is ASCII whatever the input bytes, so a name with control
 * characters, UTF-8 or broken UTF-8 can never break the document or a
 * terminal. Builds in memory only; never writes until json_print.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void
json_init(struct json *j)
{
	memset(j, 0, sizeof *j);
}

void
json_free(struct json *j)
{
	free(j->buf);
	memset(j, 0, sizeof *j);
}

static void
put(struct json *j, const char *s, size_t n)
{
	size_t cap;
	char *nb;

	if (j->err)
		return;
	if (j->cap - j->len < n + 1) {
		cap = j->cap ? j->cap : 256;
		while (cap - j->len < n + 1)
			cap *= 2;
		nb = realloc(j->buf, cap);
		if (nb == NULL) {
			j->err = -ENOMEM;
			return;
		}
		j->buf = nb;
		j->cap = cap;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

static void
puts_(struct json *j, const char *s)
{
	put(j, s, strlen(s));
}

/*
 * The length of the valid UTF-8 sequence at |p| (at most |n| bytes) and
 * its code point, or 0 when it is not one: overlong forms, surrogates,
 * code points over U+10FFFF and cut sequences are not.
 */
static size_t
utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		len = 2;
		*cp = p[0] & 0x1Fu;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		len = 3;
		*cp = p[0] & 0x0Fu;
		if (p[0] == 0xE0)
			lo = 0xA0;
		else if (p[0] == 0xED)
			hi = 0x9F;	/* no surrogates */
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		len = 4;
		*cp = p[0] & 0x07u;
		if (p[0] == 0xF0)
			lo = 0x90;
		else if (p[0] == 0xF4)
			hi = 0x8F;	/* at most U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 1; i < len; i++) {
		if (i > 1 && (p[i] < 0x80 || p[i] > 0xBF))
			return 0;
		*cp = (*cp << 6) | (p[i] & 0x3Fu);
	}
	return len;
}

static void
put_u16(struct json *j, uint32_t u)
{
	static const char hex[] = "0123456789abcdef";
	char b[6] = { '\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15],
		hex[(u >> 4) & 15], hex[u & 15] };

	put(j, b, sizeof b);
}

static void
put_string(struct json *j, const uint8_t *p, size_t n)
{
	size_t i = 0, k;
	uint32_t cp;

	put(j, "\"", 1);
	while (i < n) {
		k = utf8_next(p + i, n - i, &cp);
		if (k == 0) {
			cp = 0xFFFD;	/* not UTF-8: the replacement char */
			k = 1;
		}
		i += k;
		switch (cp) {
		case '"':
			put(j, "\\\"", 2);
			continue;
		case '\\':
			put(j, "\\\\", 2);
			continue;
		case '\n':
			put(j, "\\n", 2);
			continue;
		case '\r':
			put(j, "\\r", 2);
			continue;
		case '\t':
			put(j, "\\t", 2);
			continue;
		case '\b':
			put(j, "\\b", 2);
			continue;
		case '\f':
			put(j, "\\f", 2);
			continue;
		}
		if (cp >= 0x20 && cp < 0x7F) {
			char c = (char)cp;

			put(j, &c, 1);
		} else if (cp < 0x10000) {
			put_u16(j, cp);
		} else {
			cp -= 0x10000;
			put_u16(j, 0xD800 | (cp >> 10));
			put_u16(j, 0xDC00 | (cp & 0x3FF));
		}
	}
	put(j, "\"", 1);
}

/* The comma and key before a value. */
static void
member(struct json *j, const char *key)
{
	if (j->depth > 0 && j->count[j->depth - 1])
		put(j, ",", 1);
	if (j->depth > 0)
		j->count[j->depth - 1] = 1;
	if (key != NULL) {
		put_string(j, (const uint8_t *)key, strlen(key));
		put(j, ":", 1);
	}
}

static void
open_(struct json *j, const char *key, const char *brace)
{
	member(j, key);
	if (j->depth >= JSON_DEPTH) {
		if (j->err == 0)
			j->err = -E2BIG;
		return;
	}
	j->count[j->depth++] = 0;
	puts_(j, brace);
}

static void
close_(struct json *j, const char *brace)
{
	if (j->depth == 0) {
		if (j->err == 0)
			j->err = -EINVAL;
		return;
	}
	j->depth--;
	puts_(j, brace);
}

void
json_obj_begin(struct json *j, const char *key)
{
	open_(j, key, "{");
}

void
json_obj_end(struct json *j)
{
	close_(j, "}");
}

void
json_arr_begin(struct json *j, const char *key)
{
	open_(j, key, "[");
}

void
json_arr_end(struct json *j)
{
	close_(j, "]");
}

void
json_strn(struct json *j, const char *key, const void *s, size_t n)
{
	member(j, key);
	put_string(j, s, n);
}

void
json_str(struct json *j, const char *key, const char *s)
{
	json_strn(j, key, s, strlen(s));
}

void
json_u64(struct json *j, const char *key, uint64_t v)
{
	char b[24];

	member(j, key);
	snprintf(b, sizeof b, "%" PRIu64, v);
	puts_(j, b);
}

void
json_i64(struct json *j, const char *key, int64_t v)
{
	char b[24];

	member(j, key);
	snprintf(b, sizeof b, "%" PRId64, v);
	puts_(j, b);
}

void
json_num(struct json *j, const char *key, double v, int decimals)
{
	char b[64];

	member(j, key);
	if (!isfinite(v)) {	/* JSON has no NaN or infinity */
		puts_(j, "null");
		return;
	}
	snprintf(b, sizeof b, "%.*f", decimals, v);
	puts_(j, b);
}

void
json_bool(struct json *j, const char *key, int v)
{
	member(j, key);
	puts_(j, v ? "true" : "false");
}

void
json_base64(struct json *j, const char *key, const void *p, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *b = p;
	uint32_t v;
	size_t i;
	char q[4];

	member(j, key);
	put(j, "\"", 1);
	for (i = 0; i < n; i += 3) {
		v = (uint32_t)b[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)b[i + 1] << 8;
		if (i + 2 < n)
			v |= b[i + 2];
		q[0] = b64[v >> 18];
		q[1] = b64[(v >> 12) & 63];
		q[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? b64[v & 63] : '=';
		put(j, q, 4);
	}
	put(j, "\"", 1);
}

void
json_null(struct json *j, const char *key)
{
	member(j, key);
	puts_(j, "null");
}

const char *
json_text(const struct json *j)
{
	return j->err ? NULL : j->buf ? j->buf : "";
}

int
json_print(struct json *j, FILE *f)
{
	if (j->err)
		return j->err;
	if (j->depth != 0)
		return -EINVAL;
	if (fwrite(j->buf, 1, j->len, f) != j->len || putc('\n', f) == EOF)
		return -EIO;
	return 0;
}
