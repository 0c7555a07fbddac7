# smoke_lib.sh - sourced by the tools' smoke tests (ctl_smoke.sh,
# bench_smoke.sh). Starts a private mstored in a fresh temporary directory
# and makes sure that, on every exit path, the server is killed by its PID
# and the directory removed.
#
# Finds the programs in the build directory, which is the current
# directory when "make check" runs the tests; override with $MSTORED,
# $MSTORE_CTL, $MSTORE_BENCH. Exit statuses follow automake: 0 pass,
# 1 fail, 77 skip, 99 hard error.

LC_ALL=C
export LC_ALL

smoke_build=${abs_top_builddir:-$(pwd)}
MSTORED=${MSTORED:-$smoke_build/storeserver/mstored}
MSTORE_CTL=${MSTORE_CTL:-$smoke_build/tools/mstore-ctl}
MSTORE_BENCH=${MSTORE_BENCH:-$smoke_build/tools/mstore-bench}
smoke_me=$(basename "$0" .sh)
smoke_pid=
smoke_fails=0

for smoke_prog in "$MSTORED" "$MSTORE_CTL" "$MSTORE_BENCH"; do
	if [ ! -x "$smoke_prog" ]; then
		echo "$smoke_me: $smoke_prog not built (run from the build" \
		    "directory, or set MSTORED/MSTORE_CTL/MSTORE_BENCH)" >&2
		exit 99
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$smoke_me.XXXXXX") || exit 99

smoke_cleanup()
{
	if [ -n "$smoke_pid" ]; then
		kill "$smoke_pid" 2>/dev/null
		# Give it 5 s to stop cleanly, then kill -9; never leave it.
		smoke_i=0
		while kill -0 "$smoke_pid" 2>/dev/null && [ $smoke_i -lt 50 ]
		do
			sleep 0.1
			smoke_i=$((smoke_i + 1))
		done
		kill -9 "$smoke_pid" 2>/dev/null
		wait "$smoke_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap 'smoke_cleanup' 0
trap 'exit 99' HUP INT TERM

# fail MESSAGE: record a failed check and go on.
fail()
{
	echo "$smoke_me: FAIL: $*" >&2
	smoke_fails=$((smoke_fails + 1))
}

# smoke_start [key]: start mstored on a Unix socket in $tmp; sets $addr.
# With "key", the server requires the shared key in $tmp/key. Waits until
# it answers PING (at most 10 s) or says why it did not start.
smoke_start()
{
	mkdir "$tmp/data" || exit 99
	addr=unix:$tmp/sock
	: >"$tmp/mstored.conf"
	smoke_key=
	if [ "${1:-}" = key ]; then
		echo "smoke-test-key-$$" >"$tmp/key" || exit 99
		chmod 600 "$tmp/key" || exit 99	# shared keys must be private
		echo "key_file = $tmp/key" >"$tmp/mstored.conf"
		smoke_key="-k $tmp/key"
	fi
	"$MSTORED" --config "$tmp/mstored.conf" --data "$tmp/data" \
	    --listen "$addr" --foreground >"$tmp/mstored.log" 2>&1 &
	smoke_pid=$!
	smoke_i=0
	# $smoke_key is unquoted on purpose: empty, or an option and a path
	# without blanks (mktemp's).
	while ! timeout 5 "$MSTORE_CTL" $smoke_key -t 1 -s "$addr" ping \
	    >/dev/null 2>&1
	do
		if ! kill -0 "$smoke_pid" 2>/dev/null || [ $smoke_i -ge 100 ]
		then
			echo "$smoke_me: mstored did not start; its log:" >&2
			sed 's/^/    /' "$tmp/mstored.log" >&2
			exit 99
		fi
		sleep 0.1
		smoke_i=$((smoke_i + 1))
	done
}

# smoke_end: print the verdict and exit with it.
smoke_end()
{
	if [ "$smoke_fails" -ne 0 ]; then
		echo "$smoke_me: $smoke_fails check(s) failed; mstored log:" >&2
		sed 's/^/    /' "$tmp/mstored.log" >&2
		exit 1
	fi
	echo "$smoke_me: OK"
	exit 0
}
