/*
 * locktab.h - the mount's record of which lock owners may hold store
 * locks on which files (see locktab.c). Not thread-safe: the caller
 * serialises access.
 */
#ifndef MST_LOCKTAB_H
#define MST_LOCKTAB_H

#include <stddef.h>
#include <stdint.h>

#define LT_POSIX	1	/* fcntl(2) record locks */
#define LT_FLOCK	2	/* flock(2) locks */

struct locktab;

/* NULL when memory runs out. */
struct locktab *locktab_new(void);
void locktab_free(struct locktab *t);
/* |owner| may now hold locks of |kind| on |ino|: 0, or -ENOMEM. */
int locktab_grant(struct locktab *t, uint64_t ino, uint64_t owner, int kind);
int locktab_held(struct locktab *t, uint64_t ino, uint64_t owner, int kind);
/* |owner| released all its locks of |kind| on |ino|: 1 if it may have held
 * some, else 0. */
int locktab_release(struct locktab *t, uint64_t ino, uint64_t owner,
    int kind);
/* Forget every entry, calling |fn| (may be NULL) for each; returns how
 * many there were. */
typedef void locktab_fn(void *arg, uint64_t ino, uint64_t owner, int kind);
size_t locktab_clear(struct locktab *t, locktab_fn *fn, void *arg);
size_t locktab_count(const struct locktab *t);

#endif /* MST_LOCKTAB_H */
