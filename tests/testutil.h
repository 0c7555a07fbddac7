/*
 * testutil.h - helpers the suites that run a real mstored share: clocks,
 * the binary's path, removing a test's directory, probing an address.
 */
#ifndef MST_TESTUTIL_H
#define MST_TESTUTIL_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t now_ms(void);
/* Sleep |ms| milliseconds, through EINTR. */
void sleep_ms(int ms);
/* $MSTORED, or storeserver/mstored relative to the build directory. */
const char *mstored_path(void);
/* Remove |dir| and everything below it; complains on stderr, never
 * fails the test (teardown must go on). "" does nothing. */
void rm_rf(const char *dir);
/* Does something accept connections at |addr| (HOST:PORT, unix:PATH)? */
int can_connect(const char *addr);

#endif
