/*
 * fuzz_session.c - libFuzzer harness for mstored fed whole client
 * sessions: the input becomes the byte stream one client sends (HELLO,
 * AUTH, then request and DATA frames of any opcode, partial frames and
 * garbage included), driven through the real connection code of
 * storeserver/server.c (conn_new, the bufferevent callbacks, the
 * handshake, body streaming, dispatch, LOCK, WATCH and the notices) on a
 * real local engine in a fresh data directory, and the server's replies
 * are read and discarded once checked to be frames. Each input ends with
 * the client's end of input; the run returns when the server has closed
 * the connection and the engine holds no job of it, so nothing of one
 * input reaches the next.
 *
 * Least invasive drive: this file includes server.c, so the server is
 * built and run unchanged (no hook in it) on one end of a socketpair of
 * our own; the client end is an event on the server's own event_base,
 * and the loop is run until the session is over. No listener, no
 * network, no signal handler of the server's (libFuzzer keeps its own).
 *
 * FUZZ_SESSION_TRACE=1 in the environment lists every reply on stderr
 * (to check what a seed reaches).
 *
 * Input layout (tests/fuzz/mksession.c writes seeds in it):
 *   byte 0: flags
 *     bit 0  the server requires AUTH (two keys, as in key rotation)
 *     bit 1  the harness does the handshake itself: HELLO with
 *            max_frame 65536, then, with bit 0, AUTH with a valid proof
 *            (the server's nonce comes in its HELLO reply); the stream
 *            follows. Without it the stream carries its own HELLO and
 *            AUTH (a fuzzed AUTH proof fails, as it should)
 *     bit 2  the handshake's AUTH proves the second key
 *     bit 3  the peer is a TCP client, not a Unix-socket one (ADMIN
 *            rules differ)
 *     bit 4  lockstep: the stream is cut into frames by the length
 *            field of each 16-byte header (whatever the rest of the
 *            header says), and a frame is sent only once the server
 *            has no job in the engine, as a client that waits for each
 *            reply would. Without it the whole stream is pipelined, and
 *            requests that depend on each other may run in any order.
 *     bit 5  two clients: bytes 2-3 (big-endian) are the length of the
 *            second client's stream, which follows them; the first
 *            client's stream is the rest. Both connect at once with the
 *            same flags and write size, so one can WATCH what the other
 *            changes, or wait for a LOCK the other holds. Neither ends
 *            its input before both have sent everything and the engine
 *            is idle.
 *   byte 1: bytes per write(2) of the stream, 1-255; 0 writes it all
 *           at once. Small writes make the server see partial frames.
 *   the rest: the client's byte stream (bit 5: see there).
 *
 * The engine is opened on an empty directory for every input and closed
 * and removed after it, so object ids are the same in every run (the
 * first object made is id 2) and the store never grows across runs.
 */
#include "server.c"

#include <fcntl.h>

#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define F_KEY		0x01u
#define F_HANDSHAKE	0x02u
#define F_KEY2		0x04u
#define F_TCP		0x08u
#define F_LOCKSTEP	0x10u
#define F_TWO		0x20u

/* The two keys the server accepts when bit 0 is set. */
static const char *const fuzz_keys[2] = {
	"fuzz key one", "fuzz key two, the next one",
};

enum cstate {
	C_HELLO,	/* sending the harness's HELLO */
	C_WAIT,		/* waiting for the HELLO reply */
	C_PREFIX,	/* sending the harness's AUTH */
	C_STREAM,	/* sending the fuzzed stream */
	C_SENT,		/* all sent, waiting for the other client */
	C_DONE,		/* SHUT_WR done (or the server hung up) */
};

/* The client end of one connection. */
struct client {
	int fd;
	struct event *ev_read, *ev_write;
	unsigned flags;
	size_t chunk;		/* bytes per write; 0: unlimited */
	enum cstate st;
	uint8_t cnonce[MST_NONCE_LEN];
	uint8_t prefix[256];	/* HELLO or AUTH frame being sent */
	size_t prefix_len, prefix_off;
	const uint8_t *in;	/* the stream */
	size_t in_len, in_off;
	size_t frame_end;	/* lockstep: end of the frame being sent */
	int paused;		/* lockstep: waiting for the jobs to end */
	int eof;		/* the server closed its end */
	/* Reply checking: every frame the server sends is a well-formed
	 * reply or notice within the max_frame it agreed to. */
	uint8_t rhdr[MST_HDR_LEN];
	size_t rhdr_have;
	uint64_t rskip;		/* payload bytes of the current frame left */
	uint32_t rmax;		/* max_frame agreed; server's before HELLO */
	int hello_rep;		/* collecting the HELLO reply's payload */
	uint8_t rpay[512];
	size_t rpay_have, rpay_len;
};

static char datadir[4200];
static struct server *srv;
static int trace;	/* FUZZ_SESSION_TRACE set: list every reply */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct server_key keys[2];
	struct conf c;
	size_t i;

	(void)argc;
	(void)argv;
	snprintf(datadir, sizeof datadir, "%s/data",
	    fuzz_scratch_open("session"));
	trace = getenv("FUZZ_SESSION_TRACE") != NULL;

	/* Small limits, so that the fuzzer reaches them. */
	conf_init(&c);
	c.max_message_size = 1u << 20;
	c.max_connection_memory = 2u << 20;
	c.max_requests_per_connection = 16;
	c.max_watches_per_connection = 4;
	for (i = 0; i < 2; i++) {
		keys[i].len = strlen(fuzz_keys[i]);
		memcpy(keys[i].key, fuzz_keys[i], keys[i].len);
	}
	if (server_new(&c, keys, 2, &srv) < 0)
		abort();
	/* The signals stay libFuzzer's: libevent puts back the handlers it
	 * found when the last signal event of the base goes. */
	if (event_del(srv->ev_term) < 0 || event_del(srv->ev_int) < 0 ||
	    event_del(srv->ev_hup) < 0)
		abort();
	return 0;
}

static size_t
frame_put(uint8_t *buf, size_t cap, uint8_t op, uint32_t id,
    const uint8_t *p, size_t len)
{
	struct mst_hdr h = { MST_VERSION, op, 0, 0, id, (uint32_t)len };

	if (MST_HDR_LEN + len > cap || mst_hdr_encode(&h, buf, cap) < 0)
		abort();
	memcpy(buf + MST_HDR_LEN, p, len);
	return MST_HDR_LEN + len;
}

/* The harness's HELLO: a fixed nonce, the smallest max_frame. */
static void
hello_make(struct client *s)
{
	struct mst_hello_req q = {
		.min_version = MST_VERSION,
		.max_version = MST_VERSION,
		.features = MST_FEAT_WATCH | MST_FEAT_AUTH,
		.max_frame = MST_FRAME_MIN,
		.client = mst_str_of("fuzz_session"),
	};
	uint8_t p[200];
	int n;

	memset(s->cnonce, 0x5a, sizeof s->cnonce);
	memcpy(q.nonce, s->cnonce, sizeof q.nonce);
	n = mst_hello_req_encode(&q, p, sizeof p);
	if (n < 0)
		abort();
	s->prefix_len = frame_put(s->prefix, sizeof s->prefix, MST_OP_HELLO,
	    1, p, (size_t)n);
	s->prefix_off = 0;
}

/*
 * A HELLO reply (|h|, payload in |s->rpay|) has come: the agreed
 * max_frame bounds the server's frames from now on. When it answers the
 * harness's own HELLO, which is valid, it must be a success; send AUTH
 * or start the stream.
 */
static void
hello_done(struct client *s, const struct mst_hdr *h)
{
	struct mst_hello_rep r;
	struct mst_auth a;
	const char *key;
	uint8_t p[64];
	int ok, n;

	ok = h->status == 0 &&
	    mst_hello_rep_decode(&r, s->rpay, s->rpay_len) == 0;
	if (ok)
		s->rmax = r.max_frame;
	if (s->st != C_WAIT)
		return;
	if (!ok || r.max_frame != MST_FRAME_MIN ||
	    !(r.features & MST_FEAT_AUTH) != !(s->flags & F_KEY)) {
		fprintf(stderr, "fuzz_session: bad answer to a valid HELLO "
		    "(status %u)\n", h->status);
		abort();
	}
	if (!(s->flags & F_KEY)) {
		s->st = C_STREAM;
		event_add(s->ev_write, NULL);
		return;
	}
	key = fuzz_keys[s->flags & F_KEY2 ? 1 : 0];
	mst_auth_proof((const uint8_t *)key, strlen(key), "client",
	    s->cnonce, r.nonce, a.proof);
	n = mst_auth_encode(&a, p, sizeof p);
	if (n < 0)
		abort();
	s->prefix_len = frame_put(s->prefix, sizeof s->prefix, MST_OP_AUTH,
	    2, p, (size_t)n);
	s->prefix_off = 0;
	s->st = C_PREFIX;
	event_add(s->ev_write, NULL);
}

/*
 * Check the server's bytes frame by frame (they are otherwise dropped):
 * each header decodes within the max_frame in force, is a reply or a
 * NOTIFY notice with id 0, and a HELLO reply's payload is kept for
 * hello_done.
 */
static void
replies_check(struct client *s, const uint8_t *p, size_t n)
{
	struct mst_hdr h;
	size_t k;
	int rc;

	while (n > 0) {
		if (s->rskip > 0) {
			k = n < s->rskip ? n : (size_t)s->rskip;
			if (s->hello_rep) {
				memcpy(s->rpay + s->rpay_have, p, k);
				s->rpay_have += k;
			}
			s->rskip -= k;
			p += k;
			n -= k;
			if (s->rskip == 0 && s->hello_rep) {
				s->hello_rep = 0;
				(void)mst_hdr_decode(&h, s->rhdr, MST_HDR_LEN,
				    MST_FRAME_LIMIT);	/* decoded before */
				hello_done(s, &h);
			}
			continue;
		}
		k = MST_HDR_LEN - s->rhdr_have;
		if (k > n)
			k = n;
		memcpy(s->rhdr + s->rhdr_have, p, k);
		s->rhdr_have += k;
		p += k;
		n -= k;
		if (s->rhdr_have < MST_HDR_LEN)
			return;
		s->rhdr_have = 0;
		/* An unknown opcode's error reply echoes it: -EOPNOTSUPP
		 * with the rest decoded is a header as good as any. */
		rc = mst_hdr_decode(&h, s->rhdr, MST_HDR_LEN, s->rmax);
		if ((rc != MST_HDR_LEN && rc != -EOPNOTSUPP) ||
		    !(h.flags & (MST_F_REPLY | MST_F_NOTICE)) ||
		    ((h.flags & MST_F_NOTICE) && (h.id != 0 ||
		    h.op != MST_OP_NOTIFY || rc != MST_HDR_LEN))) {
			fprintf(stderr, "fuzz_session: the server sent a bad "
			    "frame header (%d): op 0x%02x flags 0x%x id %u "
			    "len %u, max_frame %u\n", rc, s->rhdr[3],
			    (unsigned)h.flags, h.id, h.len, s->rmax);
			abort();
		}
		if (trace)
			fprintf(stderr, "reply %-8s id %-3u status %-3u "
			    "flags 0x%x len %u\n", mst_op_name(h.op) ?
			    mst_op_name(h.op) : "?", h.id, h.status,
			    (unsigned)h.flags, h.len);
		s->rskip = h.len;
		if (h.op != MST_OP_HELLO)
			continue;
		if (h.status != 0) {
			hello_done(s, &h);	/* a refusal: no payload kept */
			continue;
		}
		if (h.len > sizeof s->rpay) {
			fprintf(stderr, "fuzz_session: HELLO reply of %u "
			    "bytes\n", h.len);
			abort();
		}
		s->rpay_have = 0;
		s->rpay_len = h.len;
		s->hello_rep = h.len > 0;
		if (h.len == 0)
			hello_done(s, &h);
	}
}

static void
on_client_read(evutil_socket_t fd, short what, void *arg)
{
	static uint8_t buf[64u << 10];
	struct client *s = arg;
	ssize_t n;

	(void)what;
	for (;;) {
		n = read(fd, buf, sizeof buf);
		if (n > 0) {
			replies_check(s, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* End of input, or a reset: the server closed. */
		s->eof = 1;
		event_del(s->ev_read);
		return;
	}
}

static void
client_done(struct client *s)
{
	s->st = C_DONE;
	event_del(s->ev_write);
	/* The end of input: the server drains and closes. Fails only when
	 * the server has closed already. */
	(void)shutdown(s->fd, SHUT_WR);
}

/* All sent; the ends come together (a watcher outlives the changes). */
static void
client_sent(struct client *s)
{
	s->st = C_SENT;
	event_del(s->ev_write);
}

/* Lockstep: where the frame that starts at |s->in_off| ends. */
static size_t
next_frame_end(const struct client *s)
{
	const uint8_t *h = s->in + s->in_off;
	size_t left = s->in_len - s->in_off;
	uint64_t len;

	if (left < MST_HDR_LEN)
		return s->in_len;
	len = MST_HDR_LEN + ((uint64_t)h[12] << 24 | (uint64_t)h[13] << 16 |
	    (uint64_t)h[14] << 8 | h[15]);
	return len < left ? s->in_off + (size_t)len : s->in_len;
}

static void
on_client_write(evutil_socket_t fd, short what, void *arg)
{
	struct client *s = arg;
	const uint8_t *p;
	size_t len;
	ssize_t n;

	(void)what;
	switch (s->st) {
	case C_HELLO:
	case C_PREFIX:
		p = s->prefix + s->prefix_off;
		len = s->prefix_len - s->prefix_off;
		break;
	case C_STREAM:
		if ((s->flags & F_LOCKSTEP) && s->in_off == s->frame_end) {
			if (srv->njobs > 0) {
				/* LLVMFuzzerTestOneInput's loop resumes us. */
				s->paused = 1;
				event_del(s->ev_write);
				return;
			}
			s->frame_end = next_frame_end(s);
		}
		p = s->in + s->in_off;
		len = (s->flags & F_LOCKSTEP ? s->frame_end : s->in_len) -
		    s->in_off;
		if (s->chunk && len > s->chunk)
			len = s->chunk;
		break;
	default:
		event_del(s->ev_write);
		return;
	}
	if (len == 0) {
		n = 0;
	} else {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return;
		if (n < 0) {
			/* EPIPE, ECONNRESET: the server hung up. */
			client_done(s);
			return;
		}
	}
	if (s->st == C_STREAM) {
		s->in_off += (size_t)n;
		if (s->in_off == s->in_len)
			client_sent(s);
		return;
	}
	s->prefix_off += (size_t)n;
	if (s->prefix_off < s->prefix_len)
		return;
	if (s->st == C_HELLO) {
		s->st = C_WAIT;
		event_del(s->ev_write);
	} else {
		s->st = C_STREAM;
	}
}

static void
client_start(struct client *s, int fd, unsigned flags, size_t chunk,
    const uint8_t *in, size_t len)
{
	s->fd = fd;
	s->flags = flags;
	s->chunk = chunk;
	s->in = in;
	s->in_len = len;
	s->rmax = srv->max_frame;
	s->ev_read = event_new(srv->base, fd, EV_READ | EV_PERSIST,
	    on_client_read, s);
	s->ev_write = event_new(srv->base, fd, EV_WRITE | EV_PERSIST,
	    on_client_write, s);
	if (s->ev_read == NULL || s->ev_write == NULL ||
	    event_add(s->ev_read, NULL) < 0 ||
	    event_add(s->ev_write, NULL) < 0)
		abort();
	if (flags & F_HANDSHAKE) {
		hello_make(s);
		s->st = C_HELLO;
	} else {
		s->st = C_STREAM;
	}
}

/* A socketpair: one end to conn_new, as on_accept would, the other to
 * |s|. */
static void
connect_one(struct client *s, unsigned flags, size_t chunk,
    const uint8_t *in, size_t len)
{
	unsigned before = srv->nconns;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) < 0) {
		perror("socketpair");
		abort();
	}
	client_start(s, sv[1], flags, chunk, in, len);
	srv->serial++;		/* the token must be nonzero */
	conn_new(srv, sv[0], flags & F_TCP ? "conn fuzz (127.0.0.1:1)" :
	    "conn fuzz (unix)", flags & F_TCP ? "127.0.0.1" : "unix:fuzz",
	    !(flags & F_TCP));
	if (srv->nconns != before + 1)
		abort();
}

/* The session is over: every client ended, the server closed every
 * connection and has no job in the engine. */
static int
session_over(const struct client *cl, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!cl[i].eof || cl[i].st != C_DONE)
			return 0;
	return srv->nconns == 0 && srv->njobs == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client cl[2];
	struct engine_conf ec = {
		.data_dir = datadir,
		.max_body = srv->max_body,
		.segment_size = 1u << 20,
		.checkpoint_bytes = 256u << 10,
		.readers = 1,
		.compact_percent = 50,
		.done = server_job_done,
		.done_arg = srv,
	};
	struct engine *eng;
	size_t i, n = 1, len2 = 0, sent;
	unsigned flags;

	if (size < 2)
		return 0;
	flags = data[0];
	if (flags & F_TWO) {
		if (size < 4)
			return 0;
		len2 = (size_t)data[2] << 8 | data[3];
		if (len2 > size - 4)
			len2 = size - 4;
		n = 2;
	}
	srv->nkeys = flags & F_KEY ? 2 : 0;
	if (engine_local.open(&ec, &eng) < 0) {
		perror("fuzz_session: opening the engine");
		abort();
	}
	server_set_engine(srv, &engine_local, eng);

	memset(cl, 0, sizeof cl);
	if (n == 1) {
		connect_one(&cl[0], flags, data[1], data + 2, size - 2);
	} else {
		connect_one(&cl[0], flags, data[1], data + 4 + len2,
		    size - 4 - len2);
		connect_one(&cl[1], flags, data[1], data + 4, len2);
	}

	/* Run the loop until the session is over (libFuzzer's -timeout
	 * catches one that never ends). */
	while (!session_over(cl, n)) {
		sent = 0;
		for (i = 0; i < n; i++) {
			if (cl[i].eof && cl[i].st != C_DONE)
				client_done(&cl[i]);
			if (cl[i].paused && srv->njobs == 0) {
				cl[i].paused = 0;
				event_add(cl[i].ev_write, NULL);
			}
			sent += cl[i].st >= C_SENT;
		}
		if (sent == n && srv->njobs == 0)
			for (i = 0; i < n; i++)
				if (cl[i].st == C_SENT)
					client_done(&cl[i]);
		if (session_over(cl, n))
			break;
		if (event_base_loop(srv->base, EVLOOP_ONCE) < 0)
			abort();
	}
	if (watch_table_count(srv->watches) != 0)
		abort();	/* every watch went with its connection */

	for (i = 0; i < n; i++) {
		event_free(cl[i].ev_read);
		event_free(cl[i].ev_write);
		close(cl[i].fd);
	}
	engine_local.close(eng);
	server_set_engine(srv, NULL, NULL);
	fuzz_rm_tree(datadir);
	return 0;
}
