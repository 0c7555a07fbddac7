/*
 * ctl_cluster.h - `mstore-ctl cluster status` (see ctl_cluster.c).
 */
#ifndef CTL_CLUSTER_H
#define CTL_CLUSTER_H

#include "mstclient.h"

/* Run "status [--mount DIR | --servers LIST] [--ceph-conf FILE]
 * [MAILBOX...]" (|argv|[0] is "status"); the connection options |o|
 * (key, TLS, timeout) are used for each PING. Returns the exit status. */
int ctl_cluster_status(const char *prog, const struct mst_client_opts *o,
    int argc, char **argv);

#endif /* CTL_CLUSTER_H */
