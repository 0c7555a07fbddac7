#!/bin/sh
#
# netlab_smoke.sh - netlab end to end on 127.0.0.1, with free ports the
# kernel picks (port 0, read back from netlab's start lines): the echo
# responder, a proxy with two mappings at 5 ms one-way, and the probe.
# Bytes must come back identical (1 MiB of random data, compared with
# cmp), a round trip through the proxy must take at least 2 x 5 ms (a
# lower bound only, safe on a busy machine), half-close must work in both
# directions, a refused target must cost one connection and not the
# process, bad command lines must exit 2, a failed listen 1, and SIGTERM
# must end every netlab with status 0. Every netlab is killed by its PID on every exit path.

. "${srcdir:-$(dirname "$0")/..}/tests/netlab_lib.sh"

DELAY=5

# 1. The echo responder, and the probe straight to it.
nl_start echo 1 "$NETLAB" --echo 127.0.0.1:0
echo_port=$nl_ports
nl_measure "127.0.0.1:$echo_port" &&
    echo "$nl_me: loopback: $(cat "$tmp/measure.out")"

# 2. One process, two mappings to the same echo responder.
nl_start proxy 2 "$NETLAB" -d "$DELAY" \
    "127.0.0.1:0=127.0.0.1:$echo_port" "127.0.0.1:0=127.0.0.1:$echo_port"
# shellcheck disable=SC2086 # two port numbers, split on purpose
set -- $nl_ports
p1=$1
p2=$2
[ "$p1" != "$p2" ] || fail "two mappings, one port: $p1"
grep -q "^netlab: 127.0.0.1:$p1 -> 127.0.0.1:$echo_port, one-way delay" \
    "$tmp/proxy.log" || fail "no start line for the first mapping"

# 3. The round trip through the proxy: at least 2 x DELAY, both mappings.
for p in "$p1" "$p2"; do
	nl_measure "127.0.0.1:$p" || continue
	echo "$nl_me: through -d $DELAY: $(cat "$tmp/measure.out")"
	nl_at_least "$rtt_min" $((2 * DELAY)) || fail "port $p: smallest" \
	    "round trip '$rtt_min' ms, want >= $((2 * DELAY))"
done

# 4. 1 MiB of random bytes, sent while the echo comes back; the write
# side is shut down after the last byte and the whole echo must follow.
head -c 1048576 /dev/urandom >"$tmp/in" || exit 99
if nl_helper stream 127.0.0.1 "$p1" "$tmp/in" "$tmp/out"; then
	cmp -s "$tmp/in" "$tmp/out" || fail "1 MiB echo through the proxy" \
	    "differs: $(cmp "$tmp/in" "$tmp/out" 2>&1 | head -n 1)" \
	    "($(wc -c <"$tmp/out") bytes back)"
else
	fail "1 MiB echo through the proxy: the client failed"
fi

# 5. Half-close, client first: all sent and the write side shut down
# before reading a byte; the echo must still come back whole.
head -c 65536 /dev/urandom >"$tmp/in2" || exit 99
if nl_helper serial 127.0.0.1 "$p2" "$tmp/in2" "$tmp/out2"; then
	cmp -s "$tmp/in2" "$tmp/out2" ||
	    fail "half-close (client first): echo differs"
else
	fail "half-close (client first): the client failed"
fi

# 6. Half-close, server first: the greeter sends a line and shuts down
# its write side; the client reads to that EOF and only then sends
# 256 KiB, which must all reach the greeter through the other direction.
nl_helper greeter "$tmp/gport" "$tmp/gcount" 2>"$tmp/greeter.log" &
greeter_pid=$!
nl_pids="$nl_pids $greeter_pid"
i=0
while [ ! -s "$tmp/gport" ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ ! -s "$tmp/gport" ]; then
	echo "$nl_me: the greeter did not start" >&2
	exit 99
fi
nl_start proxy_g 1 "$NETLAB" -d 1 "127.0.0.1:0=127.0.0.1:$(cat "$tmp/gport")"
nl_helper late 127.0.0.1 "$nl_ports" 262144 ||
    fail "half-close (server first): the client failed"
wait "$greeter_pid" || fail "half-close (server first): the greeter failed"
[ "$(cat "$tmp/gcount" 2>/dev/null)" = 262144 ] ||
    fail "half-close (server first): the greeter got" \
    "'$(cat "$tmp/gcount" 2>/dev/null)' bytes, want 262144"

# 7. A target that refuses: the probe fails, netlab says why and lives.
nl_start echo_gone 1 "$NETLAB" --echo 127.0.0.1:0
gone_port=$nl_ports
nl_stop_netlab echo_gone
nl_start proxy_bad 1 "$NETLAB" -d 0 "127.0.0.1:0=127.0.0.1:$gone_port"
if timeout 60 "$NETLAB" --measure "127.0.0.1:$nl_ports" -n 1 -t 5 \
    >/dev/null 2>"$tmp/refused.err"; then
	fail "probe through a proxy to a closed port succeeded"
fi
grep -q "connect 127.0.0.1:$gone_port: Connection refused" \
    "$tmp/proxy_bad.log" || fail "no 'Connection refused' in the log"
kill -0 "$nl_pid" 2>/dev/null || fail "netlab died on a refused target"

# 8. Bad command lines exit 2 and start nothing.
for args in "0.0.0.0:0=127.0.0.1:1" "127.0.0.1:0=0.0.0.0:1" \
    "127.0.0.1:0=127.0.0.1:0" "127.0.0.1:0" "localhost:1=127.0.0.1:1" \
    "-d -1 127.0.0.1:0=127.0.0.1:1" "-d 0.5x 127.0.0.1:0=127.0.0.1:1" \
    "-b 1K 127.0.0.1:0=127.0.0.1:1" "--echo 127.0.0.1:0 -d 1" \
    "--measure 127.0.0.1:1 127.0.0.1:0=127.0.0.1:1" "-n 3" ""; do
	# $args is split on purpose: an argument list without blanks inside.
	# shellcheck disable=SC2086
	timeout 10 "$NETLAB" $args >/dev/null 2>&1
	rc=$?
	[ "$rc" -eq 2 ] || fail "netlab $args: exit $rc, want 2"
done

# 9. A listen that fails (the echo responder has the port) exits 1 and
# says why.
timeout 10 "$NETLAB" "127.0.0.1:$echo_port=127.0.0.1:1" >/dev/null \
    2>"$tmp/inuse.err"
rc=$?
[ "$rc" -eq 1 ] || fail "listen on a port in use: exit $rc, want 1"
grep -q "listen 127.0.0.1:$echo_port: Address already in use" \
    "$tmp/inuse.err" || fail "listen on a port in use: $(cat "$tmp/inuse.err")"

# 10. SIGTERM: a clean stop with status 0 and a closing line per mapping.
if nl_stop_netlab proxy; then
	[ "$(grep -c ' connections, ' "$tmp/proxy.log")" -eq 2 ] ||
	    fail "want one closing line per mapping"
fi

nl_end
