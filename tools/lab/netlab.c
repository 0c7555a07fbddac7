/*
 * netlab.c - netlab's command line: parses the mappings and options,
 * runs the proxy or the echo responder on one libevent loop until
 * SIGTERM or SIGINT, or runs the round-trip probe and prints its line.
 * Knows nothing of mstore's protocol; never listens on a wildcard
 * address. See netlab(1).
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <event2/event.h>

#include "../cli.h"
#include "netlab.h"

#define EXIT_USAGE		2
#define MAPPINGS_MAX		64
#define MEASURE_COUNT_DEFAULT	10
#define MEASURE_TIMEOUT_MS	10000

enum { OPT_ECHO = 256, OPT_MEASURE };

struct mapping {
	struct netlab_addr listen, target;
	struct proxy *proxy;
};

struct opts {
	uint64_t delay_ns;
	size_t buf_max;
	const char *echo;		/* --echo ADDR, or NULL */
	const char *measure;		/* --measure ADDR, or NULL */
	unsigned count;			/* -n */
	int timeout_ms;			/* -t */
	int delay_set, buf_set, count_set, timeout_set;
};

static void
usage(FILE *f)
{
	fprintf(f,
"usage: netlab [-d DELAY_MS] [-b SIZE] LISTEN_ADDR:PORT=TARGET_ADDR:PORT\n"
"              [more mappings...]\n"
"       netlab --echo ADDR:PORT\n"
"       netlab --measure ADDR:PORT [-n COUNT] [-t SECONDS]\n"
"       netlab --help | --version\n"
"\n"
"A TCP proxy that delays every byte, in each direction, by a one-way\n"
"delay, so that a benchmark on one machine sees a network's round trips.\n"
"Each mapping listens on LISTEN (a specific address such as 127.0.0.1,\n"
"never a wildcard; port 0 picks a free port) and forwards each connection\n"
"to TARGET. Addresses are numeric: A.B.C.D:PORT or [V6]:PORT.\n"
"\n"
"  -d, --delay MS       one-way delay in milliseconds, fractions allowed\n"
"                       (default 0.25: a round trip of 0.5 ms)\n"
"  -b, --buffer SIZE    bytes held per direction and connection before\n"
"                       the sender is no longer read (K, M suffixes;\n"
"                       default 1M)\n"
"      --echo ADDR:PORT answer every connection with its own bytes\n"
"      --measure ADDR:PORT\n"
"                       time a connect and COUNT small round trips to an\n"
"                       echo responder (directly or through a netlab) and\n"
"                       print \"link RTT = X ms (...)\"\n"
"  -n, --count COUNT    round trips for --measure (default %d)\n"
"  -t, --timeout SECONDS\n"
"                       limit for the connect and each round trip\n"
"                       (default %d)\n"
"  -h, --help           this text\n"
"  -V, --version        the version\n"
"\n"
"Logs one line per mapping at start and one per mapping at exit on\n"
"stderr. Runs until SIGTERM or SIGINT. Exit status: 0 done, 1 failed,\n"
"2 bad command line.\n",
	    MEASURE_COUNT_DEFAULT, MEASURE_TIMEOUT_MS / 1000);
}

/* "0.25" ms -> 250000 ns. Returns 0, -EINVAL or -ERANGE. */
static int
parse_delay(const char *s, uint64_t *ns_out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (s[0] == '\0' || *end != '\0' || errno || !isfinite(v) || v < 0)
		return -EINVAL;
	if (v > NETLAB_DELAY_MAX_MS)
		return -ERANGE;
	*ns_out = (uint64_t)(v * 1e6 + 0.5);
	return 0;
}

/* Parse "LISTEN=TARGET". Prints why not and returns -EINVAL. */
static int
parse_mapping(const char *arg, struct mapping *m)
{
	char listen[2 * NETLAB_ADDR_MAX];
	const char *eq = strchr(arg, '=');
	size_t n = eq ? (size_t)(eq - arg) : 0;

	if (eq == NULL || n >= sizeof listen) {
		fprintf(stderr, "netlab: %s: want LISTEN_ADDR:PORT="
		    "TARGET_ADDR:PORT\n", arg);
		return -EINVAL;
	}
	memcpy(listen, arg, n);
	listen[n] = '\0';
	if (netlab_addr_parse(listen, &m->listen) < 0 ||
	    netlab_addr_parse(eq + 1, &m->target) < 0) {
		fprintf(stderr, "netlab: %s: addresses are A.B.C.D:PORT or "
		    "[V6]:PORT, numeric\n", arg);
		return -EINVAL;
	}
	if (netlab_addr_is_any(&m->listen)) {
		fprintf(stderr, "netlab: %s: listen on a specific address "
		    "(127.0.0.1, a namespace's), not a wildcard\n", arg);
		return -EINVAL;
	}
	if (netlab_addr_is_any(&m->target) ||
	    netlab_addr_port(&m->target) == 0) {
		fprintf(stderr, "netlab: %s: the target needs a specific "
		    "address and a port\n", arg);
		return -EINVAL;
	}
	return 0;
}

/* Parse the options into |o|; returns the index of the first operand or
 * -1 after printing a usage error. Exits for --help and --version. */
static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "delay", required_argument, NULL, 'd' },
		{ "buffer", required_argument, NULL, 'b' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "echo", required_argument, NULL, OPT_ECHO },
		{ "measure", required_argument, NULL, OPT_MEASURE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "d:b:n:t:hV", longopts, NULL))
	    != -1) {
		switch (c) {
		case 'd':
			o->delay_set = 1;
			if (parse_delay(optarg, &o->delay_ns) == 0)
				break;
			fprintf(stderr, "netlab: -d %s: want milliseconds "
			    "from 0 to %d\n", optarg, NETLAB_DELAY_MAX_MS);
			return -1;
		case 'b':
			o->buf_set = 1;
			if (cli_parse_size(optarg, NETLAB_BUF_MAX, &v) == 0 &&
			    v >= NETLAB_BUF_MIN) {
				o->buf_max = (size_t)v;
				break;
			}
			fprintf(stderr, "netlab: -b %s: want bytes from 64K "
			    "to 1024M\n", optarg);
			return -1;
		case 'n':
			o->count_set = 1;
			if (cli_parse_count(optarg, 1, MEASURE_COUNT_MAX,
			    &v) == 0) {
				o->count = (unsigned)v;
				break;
			}
			fprintf(stderr, "netlab: -n %s: want 1 to %d\n",
			    optarg, MEASURE_COUNT_MAX);
			return -1;
		case 't':
			o->timeout_set = 1;
			if (cli_parse_count(optarg, 1, 3600, &v) == 0) {
				o->timeout_ms = (int)v * 1000;
				break;
			}
			fprintf(stderr, "netlab: -t %s: want seconds from 1 "
			    "to 3600\n", optarg);
			return -1;
		case OPT_ECHO:
			o->echo = optarg;
			break;
		case OPT_MEASURE:
			o->measure = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("netlab (%s) %s\n", PACKAGE_NAME,
			    PACKAGE_VERSION);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	return optind;
}

/* Which options go with which mode; prints the complaint. */
static int
check_mode(const struct opts *o, int operands)
{
	const char *bad = NULL;

	if (o->echo && o->measure)
		bad = "--echo and --measure are separate runs";
	else if ((o->echo || o->measure) && operands > 0)
		bad = "mappings go without --echo and --measure";
	else if ((o->echo || o->measure) && (o->delay_set || o->buf_set))
		bad = "-d and -b are for mappings";
	else if (!o->measure && (o->count_set || o->timeout_set))
		bad = "-n and -t are for --measure";
	else if (!o->echo && !o->measure && operands == 0)
		bad = "nothing to do: give a mapping, --echo or --measure";
	else if (operands > MAPPINGS_MAX)
		bad = "too many mappings (at most 64)";
	if (bad == NULL)
		return 0;
	fprintf(stderr, "netlab: %s (netlab --help)\n", bad);
	return -EINVAL;
}

static int
run_measure(const struct opts *o)
{
	struct netlab_addr a;
	struct measure m;
	int rc;

	if (netlab_addr_parse(o->measure, &a) < 0 || netlab_addr_is_any(&a)) {
		fprintf(stderr, "netlab: --measure %s: want a specific "
		    "A.B.C.D:PORT or [V6]:PORT\n", o->measure);
		return EXIT_USAGE;
	}
	rc = measure_run(&a, o->count, o->timeout_ms, &m);
	if (rc < 0) {
		netlab_log("measure %s: %s%s", a.str, strerror(-rc),
		    rc == -EPROTO ? " (is it an echo responder?)" : "");
		return 1;
	}
	printf("link RTT = %.3f ms (median of %u round trips; min %.3f, "
	    "max %.3f; connect %.3f ms; %s)\n", m.rtt_median_ns / 1e6,
	    m.count, m.rtt_min_ns / 1e6, m.rtt_max_ns / 1e6,
	    m.connect_ns / 1e6, a.str);
	return fflush(stdout) == 0 ? 0 : 1;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;		/* always EV_SIGNAL */
	netlab_log("%s: stopping", strsignal((int)sig));
	if (event_base_loopbreak(arg) < 0)
		exit(1);	/* cannot happen with a valid base */
}

/*
 * A loop whose timers keep microseconds: PRECISE_TIMER makes libevent
 * use CLOCK_MONOTONIC and a timerfd instead of the coarse clock and
 * epoll's millisecond timeout (see netlab_proxy.c).
 */
static struct event_base *
base_new(void)
{
	struct event_config *cfg;
	struct event_base *base = NULL;

	/*
	 * Linux lets a timer of an ordinary thread fire up to 50 us late
	 * (timer slack) to batch wake-ups; at 0.25 ms per hop that is a
	 * fifth of the delay. 1 ns asks for no slack.
	 */
	if (prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) < 0)
		netlab_log("prctl(PR_SET_TIMERSLACK): %s; delays may run "
		    "up to 50 us long", strerror(errno));
	cfg = event_config_new();
	if (cfg == NULL)
		return NULL;
	if (event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0)
		base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

/* Open the echo responder or every mapping, logging each. */
static int
open_all(struct event_base *base, const struct opts *o, struct mapping *m,
    int nm, struct echo **echo_out)
{
	struct netlab_addr a;
	int rc;

	if (o->echo) {
		if (netlab_addr_parse(o->echo, &a) < 0 ||
		    netlab_addr_is_any(&a)) {
			fprintf(stderr, "netlab: --echo %s: want a specific "
			    "A.B.C.D:PORT or [V6]:PORT\n", o->echo);
			return -EINVAL;
		}
		rc = echo_open(base, &a, echo_out);
		if (rc < 0) {
			netlab_log("echo %s: %s", o->echo, strerror(-rc));
			return rc;
		}
		netlab_log("echo on %s", a.str);
		return 0;
	}
	for (int i = 0; i < nm; i++) {
		/* On failure m[i].listen is left as given, for the message. */
		rc = proxy_open(base, &m[i].listen, &m[i].target, o->delay_ns,
		    o->buf_max, &m[i].proxy);
		if (rc < 0) {
			netlab_log("listen %s: %s", m[i].listen.str,
			    strerror(-rc));
			return rc;
		}
		netlab_log("%s -> %s, one-way delay %.3f ms, %zu bytes per "
		    "direction", m[i].listen.str, m[i].target.str,
		    o->delay_ns / 1e6, o->buf_max);
	}
	return 0;
}

static int
run_loop(const struct opts *o, struct mapping *m, int nm)
{
	static const int sigs[] = { SIGTERM, SIGINT };
	struct event *sev[2] = { NULL, NULL };
	struct echo *echo = NULL;
	struct event_base *base;
	int rc = 1;

	base = base_new();
	if (base == NULL) {
		netlab_log("cannot create the event loop");
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		sev[i] = evsignal_new(base, sigs[i], on_signal, base);
		if (sev[i] == NULL || evsignal_add(sev[i], NULL) < 0) {
			netlab_log("cannot catch %s", strsignal(sigs[i]));
			goto out;
		}
	}
	if (open_all(base, o, m, nm, &echo) < 0)
		goto out;
	if (event_base_dispatch(base) < 0) {
		netlab_log("event loop failed");
		goto out;
	}
	rc = 0;
out:
	echo_close(echo);
	for (int i = 0; i < nm; i++) {
		unsigned open = proxy_close(m[i].proxy);

		if (open > 0)
			netlab_log("%s: closed %u open connections",
			    m[i].listen.str, open);
	}
	for (int i = 0; i < 2; i++)
		if (sev[i] != NULL)
			event_free(sev[i]);
	event_base_free(base);
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o = {
		.delay_ns = 250000,
		.buf_max = NETLAB_BUF_DEFAULT,
		.count = MEASURE_COUNT_DEFAULT,
		.timeout_ms = MEASURE_TIMEOUT_MS,
	};
	struct mapping *m;
	int first, nm, rc;

	first = parse_opts(argc, argv, &o);
	if (first < 0)
		return EXIT_USAGE;
	nm = argc - first;
	if (check_mode(&o, nm) < 0)
		return EXIT_USAGE;
	if (o.measure)
		return run_measure(&o);
	m = calloc(nm > 0 ? (size_t)nm : 1, sizeof *m);
	if (m == NULL) {
		netlab_log("out of memory");
		return 1;
	}
	for (int i = 0; i < nm; i++) {
		if (parse_mapping(argv[first + i], &m[i]) < 0) {
			free(m);
			return EXIT_USAGE;
		}
	}
	/* A peer that vanishes must be an EPIPE for one connection, not a
	 * signal that ends every connection. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		netlab_log("signal(SIGPIPE): %s", strerror(errno));
		free(m);
		return 1;
	}
	rc = run_loop(&o, m, nm);
	free(m);
	libevent_global_shutdown();
	return rc;
}
