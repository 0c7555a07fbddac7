# netlab_lib.sh - sourced by netlab_smoke.sh and netns_smoke.sh. Finds
# netlab (the build directory's, or $NETLAB), makes a private temporary
# directory, starts netlab processes in the background, and on every exit
# path kills each of them by its PID, runs the script's own cleanup
# (nl_cleanup_hook) and removes the directory. A netlab must exit 0 on
# SIGTERM: under ASan and UBSan that also means no error and no leak.
# Exit statuses follow automake: 0 pass, 1 fail, 77 skip, 99 hard error.

LC_ALL=C
export LC_ALL

nl_build=${abs_top_builddir:-$(pwd)}
nl_src=${srcdir:-$(dirname "$0")/..}
NETLAB=${NETLAB:-$nl_build/tools/netlab}
NL_HELPER=$nl_src/tests/netlab_helper.py
nl_me=$(basename "$0" .sh)
nl_pids=
nl_netlabs=			# "PID:NAME" of each nl_start
nl_fails=0

if [ ! -x "$NETLAB" ]; then
	echo "$nl_me: $NETLAB not built (run from the build directory," \
	    "or set NETLAB)" >&2
	exit 99
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "$nl_me: python3 not found: skipped" >&2
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$nl_me.XXXXXX") || exit 99

# nl_stop PID: SIGTERM, 5 s to go, then SIGKILL; never leave it running.
# Returns its exit status (137 if it had to be killed).
nl_stop()
{
	kill "$1" 2>/dev/null
	nl_i=0
	while kill -0 "$1" 2>/dev/null && [ $nl_i -lt 50 ]; do
		sleep 0.1
		nl_i=$((nl_i + 1))
	done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# nl_stop_netlab NAME: stop the netlab that nl_start NAME started; it
# must exit 0 (a sanitizer's report, a leak or a hang makes it fail).
nl_stop_netlab()
{
	nl_entry=$(echo "$nl_netlabs" | tr ' ' '\n' | grep ":$1\$")
	[ -n "$nl_entry" ] || return 0
	nl_netlabs=$(echo "$nl_netlabs" | tr ' ' '\n' | grep -v ":$1\$" |
	    tr '\n' ' ')
	nl_stop "${nl_entry%%:*}"
	nl_rc=$?
	[ "$nl_rc" -eq 0 ] ||
	    fail "netlab $1 exited $nl_rc on SIGTERM, want 0 (its log below)"
	return "$nl_rc"
}

nl_cleanup_hook() { :; }

nl_cleanup()
{
	for nl_p in $nl_pids; do
		nl_stop "$nl_p"
	done
	nl_cleanup_hook
	rm -rf "$tmp"
}
trap 'nl_cleanup' 0
trap 'exit 99' HUP INT TERM

fail()
{
	echo "$nl_me: FAIL: $*" >&2
	nl_fails=$((nl_fails + 1))
}

# nl_start NAME LINES CMD...: start CMD in the background with stderr in
# $tmp/NAME.log, and wait (at most 10 s) until the log has LINES lines
# naming a listening address. Sets $nl_pid and $nl_ports (the ports of
# those lines, in order: "echo on A:P" or "A:P -> T:Q").
nl_start()
{
	nl_name=$1
	nl_lines=$2
	shift 2
	# Made here, not by the child's redirection: polled at once below.
	: >"$tmp/$nl_name.log"
	"$@" 2>>"$tmp/$nl_name.log" &
	nl_pid=$!
	nl_pids="$nl_pids $nl_pid"
	nl_netlabs="$nl_netlabs $nl_pid:$nl_name"
	nl_i=0
	while :; do
		nl_ports=$(sed -n -e 's/^netlab: echo on .*:\([0-9]*\)$/\1/p' \
		    -e 's/^netlab: [^ ]*:\([0-9]*\) -> .*/\1/p' \
		    "$tmp/$nl_name.log")
		[ "$(echo "$nl_ports" | grep -c .)" -ge "$nl_lines" ] && return
		if ! kill -0 "$nl_pid" 2>/dev/null || [ $nl_i -ge 100 ]; then
			echo "$nl_me: $nl_name did not start; its log:" >&2
			sed 's/^/    /' "$tmp/$nl_name.log" >&2
			exit 99
		fi
		sleep 0.1
		nl_i=$((nl_i + 1))
	done
}

# nl_measure ADDR:PORT [COUNT]: run --measure; sets $rtt_min to the
# smallest round trip in ms (the whole line is in $tmp/measure.out).
# Returns 1, having failed the check, if the probe fails.
nl_measure()
{
	rtt_min=
	if ! timeout 60 "$NETLAB" --measure "$1" -n "${2:-5}" \
	    >"$tmp/measure.out" 2>"$tmp/measure.err"; then
		fail "--measure $1: $(cat "$tmp/measure.err")"
		return 1
	fi
	rtt_min=$(sed -n \
	    's/^link RTT = [0-9.]* ms (.*; min \([0-9.]*\), .*/\1/p' \
	    "$tmp/measure.out")
}

# nl_at_least X Y: is X >= Y (decimal numbers)?
nl_at_least()
{
	awk -v x="$1" -v y="$2" 'BEGIN { exit !(x != "" && x + 0 >= y + 0) }'
}

nl_helper()
{
	timeout 120 python3 "$NL_HELPER" "$@"
}

# nl_end: stop every netlab still running (each must exit 0), then give
# the verdict and exit with it.
nl_end()
{
	for nl_e in $nl_netlabs; do
		nl_stop_netlab "${nl_e#*:}"
	done
	if [ "$nl_fails" -ne 0 ]; then
		echo "$nl_me: $nl_fails check(s) failed; the logs:" >&2
		for nl_log in "$tmp"/*.log; do
			[ -f "$nl_log" ] || continue
			echo "--- $(basename "$nl_log")" >&2
			sed 's/^/    /' "$nl_log" >&2
		done
		exit 1
	fi
	echo "$nl_me: OK"
	exit 0
}
