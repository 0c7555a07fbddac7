/*
 * ctl_mount.h - `mstore-ctl mount-stats MOUNTPOINT` (see ctl_mount.c).
 */
#ifndef CTL_MOUNT_H
#define CTL_MOUNT_H

#include <stddef.h>

struct json;

/*
 * Read the counters of the mount.mstore mounted at |mnt| (its root's
 * user.mstore.stats) and print them as "key=value" lines on stdout, or
 * with |js| as one JSON object there. Returns 0, or -1 with the reason
 * in |err| (a mount point that is no mstore mount, a torn value).
 */
int ctl_mount_stats(const char *mnt, struct json *js, char *err,
    size_t errcap);

#endif /* CTL_MOUNT_H */
