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
/*
 * A private directory for one suite's servers: setup_base makes
 * /tmp/mst-PROGRAM.XXXXXX into tmpbase (exits when it cannot: nothing
 * can run without it), teardown_base removes it. Check fixtures.
 */
extern char tmpbase[32];
void setup_base(void);
void teardown_base(void);
/* Does something accept connections at |addr| (HOST:PORT, unix:PATH)? */
int can_connect(const char *addr);

#endif
