/*
 * netlab_net.c - netlab's small socket helpers: numeric addresses,
 * listening sockets, TCP_NODELAY, the clock and the log line. Never
 * resolves a name and never binds a wildcard address on its own.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netlab.h"

/* "65535" -> 65535; anything but 1-5 digits up to 65535 is -EINVAL. */
static int
parse_port(const char *s, uint16_t *out)
{
	unsigned long v;
	char *end;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 5)
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int
netlab_addr_parse(const char *s, struct netlab_addr *out)
{
	char host[NETLAB_ADDR_MAX];
	const char *port;
	size_t hlen;
	uint16_t p;

	memset(out, 0, sizeof *out);
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - s - 1);
		s++;
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof host || parse_port(port, &p) < 0)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		out->len = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		out->len = sizeof *sin6;
	} else {
		return -EINVAL;
	}
	netlab_addr_format((struct sockaddr *)&out->ss, out->str,
	    sizeof out->str);
	return 0;
}

int
netlab_addr_is_any(const struct netlab_addr *a)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

unsigned
netlab_addr_port(const struct netlab_addr *a)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return ntohs(sin->sin_port);
	return ntohs(sin6->sin6_port);
}

void
netlab_addr_format(const struct sockaddr *sa, char *buf, size_t n)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host))
			snprintf(buf, n, "%s:%u", host, ntohs(sin->sin_port));
		else
			snprintf(buf, n, "?");
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;

		if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host))
			snprintf(buf, n, "[%s]:%u", host,
			    ntohs(sin6->sin6_port));
		else
			snprintf(buf, n, "?");
	} else {
		snprintf(buf, n, "(family %d)", sa->sa_family);
	}
}

int
netlab_listen(struct netlab_addr *a, int *fd_out)
{
	socklen_t len = sizeof a->ss;
	int one = 1;
	int fd, rc;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(fd, SOMAXCONN) < 0)
		goto fail;
	if (getsockname(fd, (struct sockaddr *)&a->ss, &len) < 0)
		goto fail;
	a->len = len;
	netlab_addr_format((struct sockaddr *)&a->ss, a->str, sizeof a->str);
	*fd_out = fd;
	return 0;
fail:
	rc = -errno;
	(void)close(fd);	/* never used: nothing to flush, errno kept */
	return rc;
}

int
netlab_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		return -errno;
	return 0;
}

uint64_t
netlab_now_ns(void)
{
	struct timespec ts;

	/* Cannot fail with a valid clock id and pointer. */
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
netlab_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One fprintf per line, so lines of one process never interleave. */
	fprintf(stderr, "netlab: %s\n", line);
}
