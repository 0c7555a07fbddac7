/*
 * metrics_http.c - the /metrics endpoint of mstored --metrics. Owns the
 * evhttp server and its listener, on the network loop's event_base, so a
 * scrape runs between two callbacks of the loop and reads the loop's
 * own gauges without a lock. Answers GET and HEAD of /metrics with
 * metrics_render's text, other methods with 405; every other path is
 * 404. Bounded: small headers, no body, a timeout per
 * connection. Never touches the store.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "log.h"
#include "metrics.h"
#include "mstclient.h"

#define HTTP_TIMEOUT_S		10
#define HTTP_HEADERS_MAX	8192
#define HTTP_BODY_MAX		4096	/* a POST is read, then refused: 405 */
#define CONTENT_TYPE		"text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
	struct evhttp *http;
	metrics_live_fn *live;
	void *arg;
	char addr[INET6_ADDRSTRLEN + 16];
};

static void
on_metrics(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	struct metrics_live l = { 0 };
	struct evkeyvalq *hdrs;
	struct evbuffer *b;
	char *text, clen[24];
	size_t len;

	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
	case EVHTTP_REQ_HEAD:
		break;
	default:
		/* evhttp_send_error would drop the Allow header. */
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
		return;
	}
	h->live(h->arg, &l);
	text = metrics_render(&l, &len);
	b = evhttp_request_get_output_buffer(req);
	if (text == NULL || evbuffer_add(b, text, len) < 0) {
		free(text);
		log_err("metrics: out of memory rendering a scrape");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	free(text);
	hdrs = evhttp_request_get_output_headers(req);
	evhttp_add_header(hdrs, "Content-Type", CONTENT_TYPE);
	/* evhttp leaves the body out for HEAD, and its length too unless
	 * told: HEAD says what GET would send. */
	snprintf(clen, sizeof clen, "%zu", len);
	evhttp_add_header(hdrs, "Content-Length", clen);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

/* Any path but /metrics (query strings are ignored: /metrics?x=1). */
static void
on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

static void
addr_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
		snprintf(buf, cap, "%s:%u", host, ntohs(in4->sin_port));
	}
}

int
metrics_http_open(struct event_base *base, const char *addr,
    metrics_live_fn *live, void *arg, struct metrics_http **out)
{
	struct metrics_http *h;
	struct evconnlistener *lev;
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = mst_addr_parse(addr, &ss, &sl);

	if (rc < 0 || ss.ss_family == AF_UNIX) {
		log_err("metrics %s: expected HOST:PORT or [V6]:PORT", addr);
		return -EINVAL;
	}
	h = calloc(1, sizeof *h);
	if (h == NULL)
		return -ENOMEM;
	h->live = live;
	h->arg = arg;
	h->http = evhttp_new(base);
	if (h->http == NULL) {
		free(h);
		return -ENOMEM;
	}
	evhttp_set_timeout(h->http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(h->http, HTTP_HEADERS_MAX);
	evhttp_set_max_body_size(h->http, HTTP_BODY_MAX);
	if (evhttp_set_cb(h->http, "/metrics", on_metrics, h) < 0) {
		metrics_http_free(h);
		return -ENOMEM;
	}
	evhttp_set_gencb(h->http, on_other, h);
	lev = evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&ss, (int)sl);
	if (lev == NULL) {
		rc = -errno;
		if (rc == 0)
			rc = -ENOMEM;
		log_err("metrics %s: %s", addr, strerror(-rc));
		metrics_http_free(h);
		return rc;
	}
	if (evhttp_bind_listener(h->http, lev) == NULL) {
		evconnlistener_free(lev);
		metrics_http_free(h);
		return -ENOMEM;
	}
	sl = sizeof ss;
	if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss,
	    &sl) < 0)
		snprintf(h->addr, sizeof h->addr, "%s", addr);
	else
		addr_text(&ss, h->addr, sizeof h->addr);
	*out = h;
	return 0;
}

const char *
metrics_http_address(const struct metrics_http *h)
{
	return h->addr;
}

void
metrics_http_free(struct metrics_http *h)
{
	if (h == NULL)
		return;
	if (h->http != NULL)
		evhttp_free(h->http);	/* its listeners and connections */
	free(h);
}
