/*
 * conf.h - mstored's settings: defaults, the mstored.conf file
 * (mstore.conf(5)) and the command line on top of it.
 */
#ifndef MST_CONF_H
#define MST_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "log.h"

#define CONF_DEFAULT_LISTEN	"127.0.0.1:4870"

struct conf {
	char *data;			/* data directory (local state, and
					   the store with backend local) */
	char *backend;			/* "local" (default), "memory" or
					   "rados" */
	char *ceph_conf;		/* rados: the cluster's ceph.conf */
	char *pool;			/* rados: the pool holding the store */
	char *ceph_id;			/* rados: client name (default admin) */
	char *namespace;		/* rados: the store's namespace in the
					   pool (default: none) */
	int rados_index_shards;		/* rados: shards of a new folder */
	int rados_index_cap;		/* rados: entries per index store */
	int lock_lease;			/* rados: lock lease, seconds */
	char **listen;			/* "ADDR:PORT" or "unix:PATH" */
	size_t nlisten;
	char *key_file;			/* NULL: no AUTH */
	char *key_file_next;		/* a second key accepted (rotation) */
	char *tls_cert;			/* PEM chain: TCP listeners speak TLS */
	char *tls_key;			/* its PEM private key */
	char *user;			/* drop root to this user */
	uint64_t max_message_size;
	uint64_t max_frame;
	uint64_t quota_bytes;
	uint64_t quota_messages;
	char *quota_file;
	uint64_t segment_size;
	int segment_prealloc;
	uint64_t checkpoint_bytes;
	uint64_t checkpoint_part_ids;	/* ids per checkpoint part */
	uint64_t reserve_bytes;
	int readers;
	int compact_percent;
	int max_connections;
	int max_watches_per_connection;	/* WATCHes beyond: ENOSPC */
	uint64_t max_connection_memory;	/* bodies + jobs, then pause */
	int max_requests_per_connection;	/* in flight, then pause */
	int handshake_timeout;		/* seconds from accept to READY */
	int read_timeout;		/* seconds for a started frame or body */
	int idle_timeout;		/* seconds with nothing at all; 0: off */
	int spool_timeout;		/* seconds a SPOOL is held unused */
	char *log;			/* "stderr", "syslog", a path; NULL:
					   by mode */
	enum log_level log_level;
	char *metrics;			/* "HOST:PORT" serving /metrics;
					   NULL: off (the default) */
};

/* Fill |c| with the defaults (no data directory, no listen address). */
void conf_init(struct conf *c);
void conf_free(struct conf *c);

/*
 * Read |path| into |c|: later lines override earlier ones, "listen" lines
 * accumulate. Logs the reason of a failure ("FILE:LINE: ...") and returns
 * -EINVAL for bad contents, or the negative errno of open/read.
 */
int conf_load(struct conf *c, const char *path);

/*
 * Set one key as a config line would. Returns 0, -ENOENT (unknown key),
 * -EINVAL (bad value) or -ENOMEM; |why_out| (may be NULL) then points to
 * a static explanation.
 */
int conf_set(struct conf *c, const char *key, const char *value,
    const char **why_out);

/* Replace every listen address with |addrs| (the command line's). */
int conf_set_listen(struct conf *c, char *const *addrs, size_t n);

/*
 * Finish: add the default listen address when none was given, and make
 * relative paths absolute (the daemon changes to "/"). Returns 0,
 * -EDESTADDRREQ when no data directory is set, -EPROTONOSUPPORT for an
 * unknown backend, -ENOPROTOOPT when backend rados lacks ceph_conf or
 * pool, or -ENOMEM.
 */
int conf_finish(struct conf *c);

/* The engine's part of the settings; |done| and |done_arg| left NULL.
 * The strings stay owned by |c|. */
void conf_engine(const struct conf *c, struct engine_conf *e);

/*
 * Parse a byte count: decimal digits with an optional K, M or G suffix
 * (powers of 1024, either case). Returns 0 or -EINVAL (also on overflow).
 */
int conf_parse_size(const char *s, uint64_t *out);

#endif /* MST_CONF_H */
