/*
 * conf.c - mstored's settings. Owns the key table (name, type, range,
 * default) and the mstored.conf parser: "key = value" lines, '#'
 * comments. Logs each bad line once with FILE:LINE; never exits, the
 * caller decides what a bad setting means.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "mstclient.h"

enum conf_type {
	CT_SIZE,	/* bytes, K/M/G suffix */
	CT_COUNT,	/* plain non-negative integer, 64 bits */
	CT_INT,		/* plain integer into an int */
	CT_STR,		/* a path or name, owned */
	CT_LISTEN,	/* repeatable address */
	CT_LEVEL,	/* log level */
	CT_METRICS,	/* HOST:PORT, or a PORT on 127.0.0.1; "off" */
};

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t off;
	uint64_t min, max;
};

#define KEY(n, t, lo, hi)                                                    \
	{ .name = #n, .type = (t), .off = offsetof(struct conf, n),          \
	  .min = (lo), .max = (hi) }

static const struct conf_key conf_keys[] = {
	KEY(data, CT_STR, 0, 0),
	KEY(backend, CT_STR, 0, 0),
	KEY(ceph_conf, CT_STR, 0, 0),
	KEY(pool, CT_STR, 0, 0),
	KEY(ceph_id, CT_STR, 0, 0),
	KEY(namespace, CT_STR, 0, 0),
	KEY(rados_index_shards, CT_INT, 1, 256),
	KEY(rados_index_cap, CT_INT, 16, 1000000),
	KEY(lock_lease, CT_INT, 5, 3600),
	KEY(listen, CT_LISTEN, 0, 0),
	KEY(key_file, CT_STR, 0, 0),
	KEY(key_file_next, CT_STR, 0, 0),
	KEY(tls_cert, CT_STR, 0, 0),
	KEY(tls_key, CT_STR, 0, 0),
	KEY(user, CT_STR, 0, 0),
	KEY(max_message_size, CT_SIZE, 1, MST_BODY_MAX),
	KEY(max_frame, CT_SIZE, MST_FRAME_MIN, MST_FRAME_LIMIT),
	KEY(quota_bytes, CT_SIZE, 0, UINT64_MAX),
	KEY(quota_messages, CT_COUNT, 0, UINT64_MAX),
	KEY(quota_file, CT_STR, 0, 0),
	KEY(segment_size, CT_SIZE, 1u << 20, 1ull << 40),
	KEY(segment_prealloc, CT_INT, 0, 1),
	KEY(checkpoint_bytes, CT_SIZE, 1u << 20, UINT64_MAX),
	KEY(checkpoint_part_ids, CT_COUNT, 1, UINT32_MAX),
	KEY(reserve_bytes, CT_SIZE, 0, UINT64_MAX),
	KEY(readers, CT_INT, 1, 256),
	KEY(compact_percent, CT_INT, 0, 100),
	KEY(max_connections, CT_INT, 1, 1000000),
	KEY(max_watches_per_connection, CT_INT, 0, 1 << 24),
	KEY(max_connection_memory, CT_SIZE, 1u << 20, 1ull << 40),
	KEY(max_requests_per_connection, CT_INT, 1, 1 << 20),
	KEY(handshake_timeout, CT_INT, 1, 3600),
	KEY(read_timeout, CT_INT, 1, 3600),
	KEY(idle_timeout, CT_INT, 0, 1 << 24),
	KEY(spool_timeout, CT_INT, 1, 3600),
	KEY(log, CT_STR, 0, 0),
	KEY(log_level, CT_LEVEL, 0, 0),
	KEY(metrics, CT_METRICS, 0, 0),
};

#undef KEY

void
conf_init(struct conf *c)
{
	*c = (struct conf){
		.max_message_size = 64u << 20,
		.max_frame = MST_FRAME_DEFAULT,
		.segment_size = 64u << 20,
		.segment_prealloc = 1,
		.checkpoint_bytes = 256u << 20,
		.checkpoint_part_ids = 16384,
		.reserve_bytes = 64u << 20,
		.readers = 2,
		.rados_index_shards = 4,
		.rados_index_cap = 45000,
		.compact_percent = 50,
		.lock_lease = 10,
		.max_connections = 1024,
		.max_watches_per_connection = 65536,
		.max_connection_memory = 256ull << 20,
		.max_requests_per_connection = 1024,
		.handshake_timeout = 30,
		.read_timeout = 30,
		.spool_timeout = 60,
		.log_level = LOG_LVL_INFO,
	};
}

static void
free_listen(struct conf *c)
{
	size_t i;

	for (i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	free(c->listen);
	c->listen = NULL;
	c->nlisten = 0;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->data);
	free(c->backend);
	free(c->ceph_conf);
	free(c->pool);
	free(c->ceph_id);
	free(c->namespace);
	free_listen(c);
	free(c->key_file);
	free(c->key_file_next);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->user);
	free(c->quota_file);
	free(c->log);
	free(c->metrics);
	conf_init(c);
}

int
conf_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;		/* also rejects "-1" and " 1" */
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (shift && end[1] != '\0')
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int
parse_count(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

static int
add_listen(struct conf *c, const char *addr, const char **why_out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char **l, *copy;
	int rc = mst_addr_parse(addr, &ss, &sl);

	if (rc == -ENAMETOOLONG) {
		*why_out = "unix socket path too long";
		return -EINVAL;
	}
	if (rc < 0) {
		*why_out = "expected HOST:PORT, [V6]:PORT or unix:PATH "
		    "(numeric host or localhost)";
		return -EINVAL;
	}
	l = realloc(c->listen, (c->nlisten + 1) * sizeof *l);
	if (l == NULL)
		return -ENOMEM;
	c->listen = l;
	copy = strdup(addr);
	if (copy == NULL)
		return -ENOMEM;
	c->listen[c->nlisten++] = copy;
	return 0;
}

/*
 * metrics: "off", a port alone (then on 127.0.0.1: the loopback unless an
 * address is named), or HOST:PORT / [V6]:PORT as for listen, but no
 * Unix socket (Prometheus scrapes over TCP).
 */
static int
set_metrics(struct conf *c, const char *value, const char **why_out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char buf[32], *copy;
	const char *addr = value;
	uint64_t port;

	if (strcmp(value, "off") == 0) {
		free(c->metrics);
		c->metrics = NULL;
		return 0;
	}
	if (parse_count(value, &port) == 0) {
		if (port == 0 || port > 65535) {
			*why_out = "port out of range";
			return -EINVAL;
		}
		snprintf(buf, sizeof buf, "127.0.0.1:%llu",
		    (unsigned long long)port);
		addr = buf;
	}
	if (mst_addr_parse(addr, &ss, &sl) < 0 || ss.ss_family == AF_UNIX) {
		*why_out = "expected PORT, HOST:PORT or [V6]:PORT (numeric "
		    "host or localhost) or off";
		return -EINVAL;
	}
	copy = strdup(addr);
	if (copy == NULL)
		return -ENOMEM;
	free(c->metrics);
	c->metrics = copy;
	return 0;
}

static int
set_value(struct conf *c, const struct conf_key *k, const char *value,
    const char **why_out)
{
	char *base = (char *)c + k->off, *copy;
	uint64_t v;
	int rc;

	switch (k->type) {
	case CT_SIZE:
	case CT_COUNT:
	case CT_INT:
		rc = k->type == CT_SIZE ? conf_parse_size(value, &v) :
		    parse_count(value, &v);
		if (rc < 0) {
			*why_out = k->type == CT_SIZE ?
			    "expected a byte count, optionally with K, M or G" :
			    "expected a non-negative integer";
			return rc;
		}
		if (v < k->min || v > k->max) {
			*why_out = "value out of range";
			return -EINVAL;
		}
		if (k->type == CT_INT)
			*(int *)(void *)base = (int)v;
		else
			*(uint64_t *)(void *)base = v;
		return 0;
	case CT_STR:
		if (*value == '\0') {
			*why_out = "empty value";
			return -EINVAL;
		}
		copy = strdup(value);
		if (copy == NULL)
			return -ENOMEM;
		free(*(char **)(void *)base);
		*(char **)(void *)base = copy;
		return 0;
	case CT_LISTEN:
		return add_listen(c, value, why_out);
	case CT_LEVEL:
		rc = log_level_parse(value, &c->log_level);
		if (rc < 0)
			*why_out = "expected err, warn, info or debug";
		return rc;
	case CT_METRICS:
		return set_metrics(c, value, why_out);
	}
	return -EINVAL;
}

int
conf_set(struct conf *c, const char *key, const char *value,
    const char **why_out)
{
	const char *why = "out of memory";
	size_t i;
	int rc;

	for (i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++) {
		if (strcmp(conf_keys[i].name, key) != 0)
			continue;
		rc = set_value(c, &conf_keys[i], value, &why);
		if (why_out != NULL)
			*why_out = why;
		return rc;
	}
	if (why_out != NULL)
		*why_out = "unknown key";
	return -ENOENT;
}

int
conf_set_listen(struct conf *c, char *const *addrs, size_t n)
{
	const char *why;
	size_t i;
	int rc;

	free_listen(c);
	for (i = 0; i < n; i++) {
		rc = add_listen(c, addrs[i], &why);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
	    e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* A '#' starts a comment at the start of a line or after white space, so
 * values such as "/srv/mail#1" survive. */
static void
strip_comment(char *s)
{
	char *p;

	for (p = s; *p; p++) {
		if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

static int
parse_line(struct conf *c, char *line, const char *path, unsigned lineno)
{
	char *eq, *key, *value;
	const char *why;
	int rc;

	strip_comment(line);
	key = trim(line);
	if (*key == '\0')
		return 0;
	eq = strchr(key, '=');
	if (eq == NULL) {
		log_err("%s:%u: expected 'key = value'", path, lineno);
		return -EINVAL;
	}
	*eq = '\0';
	key = trim(key);
	value = trim(eq + 1);
	rc = conf_set(c, key, value, &why);
	if (rc == -ENOMEM) {
		log_err("%s:%u: out of memory", path, lineno);
		return rc;
	}
	if (rc == -ENOENT) {
		log_err("%s:%u: unknown key '%s'", path, lineno, key);
		return -EINVAL;
	}
	if (rc < 0) {
		log_err("%s:%u: %s = %s: %s", path, lineno, key, value, why);
		return -EINVAL;
	}
	return 0;
}

int
conf_load(struct conf *c, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	if (f == NULL) {
		rc = -errno;
		log_err("config file %s: %s", path, strerror(-rc));
		return rc;
	}
	while (rc == 0 && getline(&line, &cap, f) >= 0)
		rc = parse_line(c, line, path, ++lineno);
	if (rc == 0 && ferror(f)) {
		rc = -EIO;
		log_err("config file %s: read error", path);
	}
	free(line);
	fclose(f);
	return rc;
}

/* Make |*p| absolute against the current directory. */
static int
absolute(char **p)
{
	char cwd[PATH_MAX], *abs;
	size_t n;

	if (*p == NULL || (*p)[0] == '/')
		return 0;
	if (getcwd(cwd, sizeof cwd) == NULL)
		return -errno;
	n = strlen(cwd) + strlen(*p) + 2;
	abs = malloc(n);
	if (abs == NULL)
		return -ENOMEM;
	snprintf(abs, n, "%s/%s", cwd, *p);
	free(*p);
	*p = abs;
	return 0;
}

int
conf_finish(struct conf *c)
{
	const char *why;
	int rc;

	if (c->data == NULL)
		return -EDESTADDRREQ;
	if (c->backend != NULL && strcmp(c->backend, "local") != 0 &&
	    strcmp(c->backend, "memory") != 0 &&
	    strcmp(c->backend, "rados") != 0)
		return -EPROTONOSUPPORT;
	if (c->backend != NULL && strcmp(c->backend, "rados") == 0 &&
	    (c->ceph_conf == NULL || c->pool == NULL))
		return -ENOPROTOOPT;
	if (c->nlisten == 0) {
		rc = add_listen(c, CONF_DEFAULT_LISTEN, &why);
		if (rc < 0)
			return rc;
	}
	rc = absolute(&c->data);
	if (rc == 0)
		rc = absolute(&c->key_file);
	if (rc == 0)
		rc = absolute(&c->key_file_next);
	if (rc == 0)
		rc = absolute(&c->tls_cert);
	if (rc == 0)
		rc = absolute(&c->tls_key);
	if (rc == 0)
		rc = absolute(&c->quota_file);
	if (rc == 0)
		rc = absolute(&c->ceph_conf);
	if (rc == 0 && c->log != NULL && strcmp(c->log, "stderr") != 0 &&
	    strcmp(c->log, "syslog") != 0)
		rc = absolute(&c->log);
	return rc;
}

void
conf_engine(const struct conf *c, struct engine_conf *e)
{
	*e = (struct engine_conf){
		.data_dir = c->data,
		.max_body = c->max_message_size,
		.quota_bytes = c->quota_bytes,
		.quota_messages = c->quota_messages,
		.quota_file = c->quota_file,
		.segment_size = c->segment_size,
		.segment_prealloc = c->segment_prealloc,
		.checkpoint_bytes = c->checkpoint_bytes,
		.checkpoint_part_ids = (unsigned)c->checkpoint_part_ids,
		.reserve_bytes = c->reserve_bytes,
		.readers = c->readers,
		.compact_percent = c->compact_percent,
		.ceph_conf = c->ceph_conf,
		.pool = c->pool,
		.ceph_id = c->ceph_id,
		.ceph_namespace = c->namespace,
		.index_shards = (unsigned)c->rados_index_shards,
		.index_cap = (unsigned)c->rados_index_cap,
		.lock_lease = (unsigned)c->lock_lease,
	};
}
