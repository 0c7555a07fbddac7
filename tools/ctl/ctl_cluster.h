/*
 * ctl_cluster.h - `mstore-ctl cluster status` (see ctl_cluster.c).
 */
#ifndef CTL_CLUSTER_H
#define CTL_CLUSTER_H

#include "mstclient.h"

struct json;

/* Run "status [--mount DIR | --servers LIST] [--ceph-conf FILE]
 * [MAILBOX...]" (|argv|[0] is "status"); the connection options |o|
 * (key, TLS, timeout) are used for each PING. With |js| the report is
 * one JSON object written there instead of text on stdout. Returns the
 * exit status; *|reported| is set when the report is complete (exit 1
 * then means something is unhealthy, not that the command failed). */
int ctl_cluster_status(const char *prog, const struct mst_client_opts *o,
    struct json *js, int *reported, int argc, char **argv);

#endif /* CTL_CLUSTER_H */
