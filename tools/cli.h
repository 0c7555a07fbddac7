/*
 * cli.h - small helpers shared by the command-line tools (mstore-ctl,
 * mstore-bench): argument parsing, key loading, connecting with a message
 * a person can act on. Nothing here knows a tool's commands.
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>
#include <stdint.h>

#include "mstclient.h"

/* Default store address and the environment variable that overrides it. */
#define CLI_SERVER_DEFAULT	"127.0.0.1:4870"
#define CLI_SERVER_ENV		"MSTORE_SERVER"

/* Exit statuses common to the tools. */
#define CLI_EXIT_OK		0
#define CLI_EXIT_FAIL		1	/* an operation failed */
#define CLI_EXIT_USAGE		2	/* bad command line */

/*
 * Parse a duration in seconds ("10", "0.5") into milliseconds. Returns 0,
 * -EINVAL (not a positive number) or -ERANGE (over a day).
 */
int cli_parse_seconds(const char *s, int *ms_out);

/*
 * Parse a byte count with an optional K, M or G suffix (powers of 1024,
 * "4096", "64K", "1M"). Returns 0, -EINVAL or -ERANGE (over |max|).
 */
int cli_parse_size(const char *s, uint64_t max, uint64_t *out);

/* Parse a decimal count in [min, max]. Returns 0, -EINVAL or -ERANGE. */
int cli_parse_count(const char *s, uint64_t min, uint64_t max,
    uint64_t *out);

/*
 * Load the shared key of |path| into |buf| (MST_KEY_MAX bytes) and point
 * |o| at it. Prints "PROG: key file PATH: REASON" and returns a negative
 * errno on failure.
 */
int cli_key_load(const char *prog, const char *path,
    uint8_t buf[MST_KEY_MAX], struct mst_client_opts *o);

/*
 * Connect to |addr| with |o|. On failure prints "PROG: connect ADDR:
 * REASON" (with a hint for the usual causes) and returns the negative
 * errno.
 */
int cli_connect(const char *prog, const char *addr,
    const struct mst_client_opts *o, struct mst_client **out);

/* What a failed connect means, for messages: strerror plus a hint. */
const char *cli_connect_strerror(int rc);

/* Write all |n| bytes to |fd|, retrying EINTR and short writes. Returns 0
 * or a negative errno. */
int cli_write_all(int fd, const void *p, size_t n);

/* Monotonic clock in nanoseconds. */
uint64_t cli_now_ns(void);

#endif /* CLI_H */
