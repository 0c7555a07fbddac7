/*
 * cli.c - helpers shared by the command-line tools: number parsing, key
 * loading, connecting, whole writes, the clock. Prints only the messages
 * its header promises; never exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int
cli_parse_seconds(const char *s, int *ms_out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (s[0] == '\0' || *end != '\0' || errno || !(v > 0))
		return -EINVAL;
	if (v > 86400)
		return -ERANGE;
	*ms_out = (int)(v * 1000 + 0.999);	/* round up: 0.0001 s is 1 ms */
	return 0;
}

int
cli_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int
cli_parse_size(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0' && strcmp(end + 1, "iB") != 0)
		return -EINVAL;
	if (v > (max >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int
cli_key_load(const char *prog, const char *path, uint8_t buf[MST_KEY_MAX],
    struct mst_client_opts *o)
{
	int n = mst_key_load(path, buf, MST_KEY_MAX);

	if (n < 0) {
		fprintf(stderr, "%s: key file %s: %s\n", prog, path,
		    mst_key_strerror(n));
		return n;
	}
	o->key = buf;
	o->keylen = (size_t)n;
	return 0;
}

const char *
cli_connect_strerror(int rc)
{
	switch (rc) {
	case -ECONNREFUSED:
		return "Connection refused (is mstored running and "
		    "listening there?)";
	case -ENOENT:
		return "No such socket (is mstored running and listening "
		    "there?)";
	case -EACCES:
		return "authentication failed (wrong key, or the server "
		    "requires one: -k KEYFILE)";
	case -ETIMEDOUT:
		return "no answer within the timeout (-t)";
	case -EPROTO:
	case -EPROTONOSUPPORT:
	case -EBADMSG:
		return "protocol error (is that an mstored of a compatible "
		    "version?)";
	case -ECONNRESET:
		return "the server closed the connection";
	case -EINVAL:
		return "bad address: expected HOST:PORT, [V6]:PORT or "
		    "unix:PATH (numeric host or localhost)";
	default:
		return strerror(-rc);
	}
}

int
cli_connect(const char *prog, const char *addr,
    const struct mst_client_opts *o, struct mst_client **out)
{
	int rc = mst_client_connect(addr, o, out);
	const char *why = cli_connect_strerror(rc);

	if (rc < 0 && o != NULL && o->tls) {
		if (rc == -EKEYREJECTED || rc == -EBADMSG || rc == -EPROTO)
			why = mst_client_strerror(rc);
		else if (rc == -EINVAL)
			why = "TLS needs a HOST:PORT server (Unix sockets "
			    "are plaintext) and a CA file";
		else if (o->cafile != NULL && access(o->cafile, R_OK) < 0) {
			/* -EACCES is also a refused AUTH: ask the file */
			fprintf(stderr, "%s: CA file %s: %s\n", prog,
			    o->cafile, strerror(errno));
			return rc;
		}
	}
	if (rc < 0)
		fprintf(stderr, "%s: connect %s: %s\n", prog, addr, why);
	return rc;
}

int
cli_write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

uint64_t
cli_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
