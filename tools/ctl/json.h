/*
 * json.h - a small JSON writer for the tools' --json output: one
 * document built in memory, then written at once, so that a command
 * that fails half way prints an error object instead of a torn
 * document. Output is pure ASCII: strings escape '"', '\\', every
 * control character and every non-ASCII character (\uXXXX, surrogate
 * pairs above U+FFFF); a byte that is not part of valid UTF-8 becomes
 * U+FFFD. Numbers are written as numbers.
 */
#ifndef JSON_H
#define JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH	16

struct json {
	char *buf;
	size_t len, cap;
	int err;		/* -ENOMEM or -E2BIG (nesting): sticky */
	int depth;
	uint8_t count[JSON_DEPTH];	/* members written at each level,
					   capped at 1: "need a comma" */
};

/* An empty writer; json_free releases its buffer. */
void json_init(struct json *j);
void json_free(struct json *j);

/*
 * Each call below writes one value. Inside an object |key| names it;
 * inside an array, and for the document itself, |key| must be NULL.
 */
void json_obj_begin(struct json *j, const char *key);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
void json_str(struct json *j, const char *key, const char *s);
/* |n| bytes of |s|, which may hold NULs and any bytes. */
void json_strn(struct json *j, const char *key, const void *s, size_t n);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
/* A finite number with up to |decimals| digits after the point. */
void json_num(struct json *j, const char *key, double v, int decimals);
void json_bool(struct json *j, const char *key, int v);
/* |n| bytes of |p| as a base64 string (RFC 4648, with padding). */
void json_base64(struct json *j, const char *key, const void *p, size_t n);
void json_null(struct json *j, const char *key);

/* The document so far, NUL-terminated (NULL after an error). */
const char *json_text(const struct json *j);

/*
 * Write the finished document and a newline to |f|. Returns 0, the
 * writer's sticky error, -EINVAL while a container is still open, or
 * -EIO when |f| fails.
 */
int json_print(struct json *j, FILE *f);

#endif /* JSON_H */
