#!/bin/sh
#
# netns_smoke.sh - tools/lab/netns-lab with a unique namespace name: "up"
# must give a namespace with lo up and a link-local veth pair, a TCP
# connection from the host must reach a listener inside (netlab --echo),
# also through a netlab on 127.0.0.1 with 1 ms one-way, and "down" must
# remove the namespace, the veth pair and its record, and refuse a name it
# did not make. Needs root and working ip netns: skips (77) without them.
# The namespace is removed on every exit path, by netns-lab down or, if
# that fails, by hand.

. "${srcdir:-$(dirname "$0")/..}/tests/netlab_lib.sh"

NETNS_LAB=${NETNS_LAB:-$nl_src/tools/lab/netns-lab}
ns=nlt$$
ns_up=0

if [ "$(id -u)" -ne 0 ]; then
	echo "$nl_me: needs root: skipped" >&2
	exit 77
fi
if ! command -v ip >/dev/null 2>&1 ||
    ! ip netns add "${ns}p" >/dev/null 2>&1; then
	echo "$nl_me: ip netns does not work here: skipped" >&2
	exit 77
fi
# A veth pair into the probe namespace; deleting the namespace deletes it.
ip link add "nl-${ns}p" type veth peer name veth0 netns "${ns}p" \
    >/dev/null 2>&1
veth=$?
ip netns del "${ns}p" || exit 99
if [ "$veth" -ne 0 ]; then
	echo "$nl_me: veth pairs do not work here: skipped" >&2
	exit 77
fi

nl_cleanup_hook()
{
	[ "$ns_up" -eq 1 ] || return 0
	if ! sh "$NETNS_LAB" down "$ns" 2>>"$tmp/down.err"; then
		echo "$nl_me: netns-lab down $ns failed; removing by hand" >&2
		ip link del "nl-$ns" 2>/dev/null
		ip netns del "$ns" 2>/dev/null
		rm -f "/run/netns-lab/$ns"
	fi
}

# 1. up: the addresses, lo and the pair.
ns_up=1
if ! sh "$NETNS_LAB" up "$ns" >"$tmp/up.out" 2>"$tmp/up.err"; then
	echo "$nl_me: netns-lab up $ns failed: $(cat "$tmp/up.err")" >&2
	exit 1
fi
host_addr=$(sed -n 's/^host_addr=//p' "$tmp/up.out")
ns_addr=$(sed -n 's/^ns_addr=//p' "$tmp/up.out")
case $host_addr/$ns_addr in
169.254.*.1/169.254.*.2) ;;
*)	echo "$nl_me: up printed: $(cat "$tmp/up.out")" >&2
	exit 1 ;;
esac
ip -n "$ns" -o link show lo | grep -q '[<,]UP[,>]' ||
    fail "lo is not up inside $ns"
ip -o -4 addr show dev "nl-$ns" | grep -q " $host_addr/30 " ||
    fail "nl-$ns does not have $host_addr/30"
ip -n "$ns" -o -4 addr show dev veth0 | grep -q " $ns_addr/30 " ||
    fail "veth0 in $ns does not have $ns_addr/30"
sh "$NETNS_LAB" up "$ns" >/dev/null 2>&1 && fail "a second up $ns worked"

# 2. A listener inside, reached from the host directly and through netlab.
nl_start echo 1 ip netns exec "$ns" "$NETLAB" --echo "$ns_addr:0"
echo_port=$nl_ports
nl_measure "$ns_addr:$echo_port" &&
    echo "$nl_me: host -> namespace: $(cat "$tmp/measure.out")"
nl_start proxy 1 "$NETLAB" -d 1 "127.0.0.1:0=$ns_addr:$echo_port"
proxy_port=$nl_ports
if nl_measure "127.0.0.1:$proxy_port"; then
	echo "$nl_me: through -d 1: $(cat "$tmp/measure.out")"
	nl_at_least "$rtt_min" 2 ||
	    fail "smallest round trip '$rtt_min' ms through -d 1, want >= 2"
fi
head -c 262144 /dev/urandom >"$tmp/in" || exit 99
if nl_helper stream 127.0.0.1 "$proxy_port" "$tmp/in" "$tmp/out"; then
	cmp -s "$tmp/in" "$tmp/out" || fail "echo from the namespace differs"
else
	fail "256 KiB through netlab into the namespace: the client failed"
fi

# 3. down: stop what runs inside, then everything up made is gone.
nl_stop_netlab proxy
nl_stop_netlab echo
if sh "$NETNS_LAB" down "$ns" 2>"$tmp/down.err"; then
	ns_up=0
else
	fail "netns-lab down $ns: $(cat "$tmp/down.err")"
fi
[ -e "/run/netns/$ns" ] && fail "namespace $ns still exists after down"
ip link show "nl-$ns" >/dev/null 2>&1 && fail "nl-$ns still exists"
[ -e "/run/netns-lab/$ns" ] && fail "the record of $ns is still there"
sh "$NETNS_LAB" down "$ns" >/dev/null 2>&1 && fail "a second down worked"
sh "$NETNS_LAB" up "bad name" >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad NAME: want exit 2"

nl_end
