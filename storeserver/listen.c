/*
 * listen.c - mstored's listening sockets. Owns the listeners (TCP and
 * Unix, bound once at start, before root is dropped), the Unix socket
 * files they create (a stale one is replaced, a live server's never),
 * accepting (max_connections, and a pause when accept(2) runs out of
 * descriptors or memory) and the TLS context of the TCP listeners. Runs
 * on the network loop's thread and never blocks; knows nothing of
 * frames: each accepted socket goes to the network layer through
 * struct listen_ops, which names and serves it.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include <event2/listener.h>

#include "listen.h"
#include "log.h"
#include "mstclient.h"

#define REFUSED_LOG_SECONDS	60	/* max_connections: one line per */

struct listener {
	struct evconnlistener *ev;
	char *name;		/* as logged: actual address and port */
	char *unix_path;	/* absolute; removed at exit if still ours */
	dev_t dev;
	ino_t ino;
};

struct listen_set {
	struct event_base *base;
	const struct listen_ops *ops;
	void *arg;
	struct listener *ls;
	size_t nls;
	char *addresses;
	struct event *ev_retry;	/* accepting again after a pause */
	int closed;		/* listen_close: accept no more */
	unsigned max_conns;
	uint64_t refused;	/* over max_connections since last log */
	time_t refused_logged;
	SSL_CTX *tls;		/* NULL: TCP listeners speak plaintext */
};

static void
format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
		snprintf(buf, cap, "%s:%u", host, ntohs(in4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, cap, "unix");
	}
}

/* ---- accepting ---- */

static const char *
listener_name(const struct listen_set *ls, const struct evconnlistener *l)
{
	size_t i;

	for (i = 0; i < ls->nls; i++)
		if (ls->ls[i].ev == l)
			return ls->ls[i].name;
	return "unix";
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct listen_set *ls = arg;
	time_t now = time(NULL);
	char addr[64], host[64], *colon;
	int one = 1;

	(void)salen;
	if (ls->ops->count(ls->arg) >= ls->max_conns) {
		ls->refused++;
		if (now - ls->refused_logged >= REFUSED_LOG_SECONDS) {
			log_warn("max_connections (%u) reached: refused %llu "
			    "connection(s)", ls->max_conns,
			    (unsigned long long)ls->refused);
			ls->refused = 0;
			ls->refused_logged = now;
		}
		close(fd);
		return;
	}
	format_addr(sa, addr, sizeof addr);
	if (sa->sa_family == AF_UNIX)
		snprintf(addr, sizeof addr, "%s", listener_name(ls, l));
	snprintf(host, sizeof host, "%s", addr);
	colon = strrchr(host, ':');
	if (sa->sa_family != AF_UNIX && colon != NULL)
		*colon = '\0';		/* the port says nothing of who */
	if (sa->sa_family != AF_UNIX &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		log_debug("accept %s: TCP_NODELAY: %s", addr, strerror(errno));
	ls->ops->accept(ls->arg, fd, addr, host, sa->sa_family == AF_UNIX);
}

static void
listeners_enable(struct listen_set *ls, int on)
{
	size_t i;

	for (i = 0; i < ls->nls; i++) {
		if (ls->ls[i].ev == NULL)
			continue;
		if (on)
			evconnlistener_enable(ls->ls[i].ev);
		else
			evconnlistener_disable(ls->ls[i].ev);
	}
}

static void
on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct listen_set *ls = arg;

	(void)fd;
	(void)what;
	if (!ls->closed)
		listeners_enable(ls, 1);
}

/* accept(2) failed. Out of descriptors or memory would fail again at
 * once (the listener stays readable), so pause accepting for a second. */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	struct listen_set *ls = arg;
	struct timeval second = { .tv_sec = 1 };
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		log_warn("accept: %s: pausing new connections for 1 s",
		    strerror(err));
		listeners_enable(ls, 0);
		evtimer_add(ls->ev_retry, &second);
		return;
	}
	log_debug("accept: %s", strerror(err));
}

/* ---- listeners ---- */

/*
 * A socket file left by a previous run is removed; a live server's is
 * not (connect succeeds), and neither is anything that is not a socket.
 */
static int
unix_prepare(const struct sockaddr_un *un)
{
	const char *path = un->sun_path;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		log_err("listen unix:%s: %s", path, strerror(-rc));
		return rc;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_err("listen unix:%s: file exists and is not a socket",
		    path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		log_err("listen unix:%s: socket: %s", path, strerror(-rc));
		return rc;
	}
	rc = connect(fd, (const struct sockaddr *)un, sizeof *un) == 0 ? 0 :
	    -errno;
	close(fd);
	if (rc == 0 || rc == -EAGAIN) {
		log_err("listen unix:%s: another server is listening there",
		    path);
		return -EADDRINUSE;
	}
	if (rc != -ECONNREFUSED) {
		log_err("listen unix:%s: probing the old socket: %s", path,
		    strerror(-rc));
		return rc;
	}
	if (unlink(path) < 0) {
		rc = -errno;
		log_err("listen unix:%s: removing the stale socket: %s", path,
		    strerror(-rc));
		return rc;
	}
	log_info("removed stale socket %s", path);
	return 0;
}

static int
unix_remember(struct listener *l, const char *path)
{
	char cwd[4096];
	struct stat st;
	size_t n;

	if (stat(path, &st) < 0)
		return -errno;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	if (path[0] == '/') {
		l->unix_path = strdup(path);
	} else {
		if (getcwd(cwd, sizeof cwd) == NULL)
			return -errno;
		n = strlen(cwd) + strlen(path) + 2;
		l->unix_path = malloc(n);
		if (l->unix_path != NULL)
			snprintf(l->unix_path, n, "%s/%s", cwd, path);
	}
	l->name = malloc(strlen(path) + 6);
	if (l->unix_path == NULL || l->name == NULL)
		return -ENOMEM;
	sprintf(l->name, "unix:%s", path);
	return 0;
}

/* Remove our socket file, unless someone replaced it meanwhile. */
static void
unix_remove(struct listener *l)
{
	struct stat st;

	if (l->unix_path == NULL)
		return;
	if (stat(l->unix_path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino && unlink(l->unix_path) < 0)
		log_warn("removing %s: %s", l->unix_path, strerror(errno));
	free(l->unix_path);
	l->unix_path = NULL;
}

static int
bind_socket(const char *addr, const struct sockaddr_storage *ss,
    socklen_t sl)
{
	int fd, one = 1, rc;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		rc = -errno;
		log_err("listen %s: socket: %s", addr, strerror(-rc));
		return rc;
	}
	if ((ss->ss_family != AF_UNIX && setsockopt(fd, SOL_SOCKET,
	    SO_REUSEADDR, &one, sizeof one) < 0) ||
	    (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof one) < 0)) {
		rc = -errno;
		log_err("listen %s: setsockopt: %s", addr, strerror(-rc));
		close(fd);
		return rc;
	}
	if (bind(fd, (const struct sockaddr *)ss, sl) < 0) {
		rc = -errno;
		log_err("listen %s: bind: %s%s", addr, strerror(-rc),
		    rc == -EADDRINUSE ? " (is another mstored running?)" :
		    "");
		close(fd);
		return rc;
	}
	if (listen(fd, 1024) < 0) {
		rc = -errno;
		log_err("listen %s: %s", addr, strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

static int
listener_open(struct listen_set *ls, struct listener *l, const char *addr)
{
	struct sockaddr_storage ss, bound;
	socklen_t sl, bl = sizeof bound;
	char name[80];
	int fd, rc;

	rc = mst_addr_parse(addr, &ss, &sl);
	if (rc < 0) {
		log_err("listen %s: bad address", addr);
		return rc;
	}
	if (ss.ss_family == AF_UNIX) {
		rc = unix_prepare((struct sockaddr_un *)&ss);
		if (rc < 0)
			return rc;
	}
	fd = bind_socket(addr, &ss, sl);
	if (fd < 0)
		return fd;
	if (ss.ss_family == AF_UNIX) {
		rc = unix_remember(l, ((struct sockaddr_un *)&ss)->sun_path);
	} else if (getsockname(fd, (struct sockaddr *)&bound, &bl) < 0) {
		rc = -errno;
	} else {
		format_addr((struct sockaddr *)&bound, name, sizeof name);
		l->name = strdup(name);
		rc = l->name ? 0 : -ENOMEM;
	}
	if (rc < 0) {
		log_err("listen %s: %s", addr, strerror(-rc));
		close(fd);
		return rc;
	}
	l->ev = evconnlistener_new(ls->base, on_accept, ls,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l->ev == NULL) {
		log_err("listen %s: out of memory", addr);
		close(fd);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l->ev, on_accept_error);
	return 0;
}

static int
listeners_open(struct listen_set *ls, const struct conf *c)
{
	size_t i, n = 0;
	int rc;

	ls->ls = calloc(c->nlisten, sizeof *ls->ls);
	if (ls->ls == NULL)
		return -ENOMEM;
	ls->nls = c->nlisten;
	for (i = 0; i < c->nlisten; i++) {
		rc = listener_open(ls, &ls->ls[i], c->listen[i]);
		if (rc < 0)
			return rc;
		n += strlen(ls->ls[i].name) + 2;
	}
	ls->addresses = calloc(1, n + 1);
	if (ls->addresses == NULL)
		return -ENOMEM;
	for (i = 0; i < ls->nls; i++) {
		if (i)
			strcat(ls->addresses, ", ");
		strcat(ls->addresses, ls->ls[i].name);
	}
	return 0;
}

/* ---- TLS ---- */

/* Log why the last OpenSSL call failed, after |what|. */
static void
tls_log_err(const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char buf[200];

	if (e == 0)
		snprintf(buf, sizeof buf, "%s", strerror(errno));
	else
		ERR_error_string_n(e, buf, sizeof buf);
	log_err("%s %s: %s", what, path, buf);
	ERR_clear_error();
}

/* The certificate chain and key for the TCP listeners, read now (before
 * root is dropped). TLS 1.2 at least; no client certificates. */
static int
tls_open(struct listen_set *ls, const struct conf *c)
{
	if (c->tls_cert == NULL && c->tls_key == NULL)
		return 0;
	if (c->tls_cert == NULL || c->tls_key == NULL) {
		log_err("tls_cert and tls_key go together: set both or "
		    "neither");
		return -EINVAL;
	}
	ls->tls = SSL_CTX_new(TLS_server_method());
	if (ls->tls == NULL) {
		tls_log_err("TLS:", "context");
		return -ENOMEM;
	}
	if (SSL_CTX_set_min_proto_version(ls->tls, TLS1_2_VERSION) != 1) {
		tls_log_err("TLS:", "minimum version");
		return -EINVAL;
	}
	SSL_CTX_set_options(ls->tls, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ls->tls, c->tls_cert) != 1) {
		tls_log_err("tls_cert", c->tls_cert);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ls->tls, c->tls_key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ls->tls) != 1) {
		if (ERR_GET_REASON(ERR_peek_error()) ==
		    X509_R_KEY_VALUES_MISMATCH) {
			log_err("tls_key %s does not match tls_cert %s",
			    c->tls_key, c->tls_cert);
			ERR_clear_error();
		} else {
			tls_log_err("tls_key", c->tls_key);
		}
		return -EINVAL;
	}
	return 0;
}

/* ---- public ---- */

int
listen_open(struct event_base *base, const struct conf *c,
    const struct listen_ops *ops, void *arg, struct listen_set **out)
{
	struct listen_set *ls = calloc(1, sizeof *ls);
	int rc = -ENOMEM;

	if (ls == NULL)
		return -ENOMEM;
	ls->base = base;
	ls->ops = ops;
	ls->arg = arg;
	ls->max_conns = (unsigned)c->max_connections;
	ls->ev_retry = evtimer_new(base, on_accept_retry, ls);
	if (ls->ev_retry == NULL)
		goto fail;
	rc = tls_open(ls, c);
	if (rc < 0)
		goto fail;
	rc = listeners_open(ls, c);
	if (rc < 0)
		goto fail;
	*out = ls;
	return 0;
fail:
	listen_free(ls);
	return rc;
}

void
listen_close(struct listen_set *ls)
{
	size_t i;

	ls->closed = 1;
	for (i = 0; i < ls->nls; i++) {
		if (ls->ls[i].ev != NULL)
			evconnlistener_free(ls->ls[i].ev);
		ls->ls[i].ev = NULL;
		unix_remove(&ls->ls[i]);
	}
}

void
listen_free(struct listen_set *ls)
{
	size_t i;

	if (ls == NULL)
		return;
	listen_close(ls);
	for (i = 0; i < ls->nls; i++)
		free(ls->ls[i].name);
	free(ls->ls);
	free(ls->addresses);
	if (ls->ev_retry)
		event_free(ls->ev_retry);
	if (ls->tls)
		SSL_CTX_free(ls->tls);
	free(ls);
}

SSL_CTX *
listen_tls(const struct listen_set *ls)
{
	return ls->tls;
}

const char *
listen_addresses(const struct listen_set *ls)
{
	return ls->addresses ? ls->addresses : "";
}
