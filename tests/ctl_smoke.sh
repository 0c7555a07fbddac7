#!/bin/sh
#
# ctl_smoke.sh - mstore-ctl against a private mstored that requires a
# shared key (-k): no key or a wrong one fails; ping, status, stats,
# mkdir, put and cat round trip (binary-safe, larger than one frame), ls,
# stat, statfs, rm, scrub result=clean, checkpoint; a failing operation
# exits 1 with the op and strerror; bad usage exits 2.
# Every command runs under timeout(1), so a hang fails instead of blocking.

. "${srcdir:-$(dirname "$0")/..}/tests/smoke_lib.sh"

smoke_start key

ctl()
{
	timeout 60 "$MSTORE_CTL" -s "$addr" -k "$tmp/key" "$@"
}

# expect STATUS DESCRIPTION COMMAND...: run, compare the exit status.
expect()
{
	want=$1
	what=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$what: exit $got, want $want; stderr: $(cat "$tmp/err")"
		return 1
	fi
	return 0
}

expect 1 "ping without the key" timeout 60 "$MSTORE_CTL" -s "$addr" ping &&
    { grep -q 'authentication failed' "$tmp/err" ||
    fail "no-key message: $(cat "$tmp/err")"; }
echo wrong-key >"$tmp/wrong"
expect 1 "ping with a wrong key" timeout 60 "$MSTORE_CTL" -s "$addr" \
    -k "$tmp/wrong" ping
expect 0 "ping" ctl ping &&
    { grep -q 'time=[0-9.]* ms' "$tmp/out" || fail "ping output: $(cat "$tmp/out")"; }
expect 0 "status" ctl status &&
    { grep -q '^max_frame=[0-9]' "$tmp/out" &&
    grep -q '^features=auth' "$tmp/out" ||
    fail "status output: $(cat "$tmp/out")"; }
expect 0 "stats" ctl stats &&
    { grep -q '^batches=[0-9]' "$tmp/out" || fail "stats output: $(cat "$tmp/out")"; }

expect 0 "mkdir -p" ctl mkdir -p dom.example/al/new
expect 1 "mkdir of an existing directory" ctl mkdir dom.example &&
    { grep -q 'MKDIR dom.example: File exists' "$tmp/err" ||
    fail "mkdir error message: $(cat "$tmp/err")"; }

# Binary data, 2.5 MiB: several GET and PUT frames.
head -c 2621440 /dev/urandom >"$tmp/blob"
expect 0 "put" ctl put dom.example/al/blob <"$tmp/blob"
expect 0 "cat" ctl cat /dom.example/al/blob &&
    { cmp -s "$tmp/out" "$tmp/blob" || fail "cat returned other bytes than put"; }
printf 'replaced\n' >"$tmp/small"
expect 0 "put replacing" ctl put dom.example/al/blob <"$tmp/small"
expect 0 "cat after replace" ctl cat dom.example/al/blob &&
    { cmp -s "$tmp/out" "$tmp/small" || fail "cat after replace: $(cat "$tmp/out")"; }
expect 1 "put --excl over an existing file" ctl put --excl dom.example/al/blob <"$tmp/small"
: >"$tmp/empty"
expect 0 "put of an empty file" ctl put dom.example/al/empty <"$tmp/empty"
expect 0 "cat of an empty file" ctl cat dom.example/al/empty &&
    { [ -s "$tmp/out" ] && fail "cat of an empty file printed bytes"; }

expect 0 "ls" ctl ls dom.example/al &&
    { grep -q ' blob$' "$tmp/out" && grep -q '^d.* new$' "$tmp/out" ||
    fail "ls output: $(cat "$tmp/out")"; }
expect 0 "stat" ctl stat dom.example/al/blob &&
    { grep -q '^size=9$' "$tmp/out" && grep -q '^type=file$' "$tmp/out" ||
    fail "stat output: $(cat "$tmp/out")"; }
expect 0 "statfs" ctl statfs dom.example/al &&
    { grep -q '^name_max=255$' "$tmp/out" || fail "statfs output: $(cat "$tmp/out")"; }

expect 1 "cat of a missing file" ctl cat dom.example/al/nope &&
    { grep -q 'GET dom.example/al/nope: No such file or directory' "$tmp/err" ||
    fail "cat error message: $(cat "$tmp/err")"; }
expect 0 "rm of a file" ctl rm dom.example/al/blob
expect 1 "stat after rm" ctl stat dom.example/al/blob
expect 1 "rm of a non-empty directory" ctl rm dom.example/al
expect 0 "rm of an empty directory" ctl rm dom.example/al/new

expect 0 "scrub" ctl scrub &&
    { grep -q '^result=clean$' "$tmp/out" || fail "scrub output: $(cat "$tmp/out")"; }
expect 0 "checkpoint" ctl checkpoint
expect 0 "compact" ctl compact

# Usage errors: exit 2 without touching the server.
expect 2 "unknown command" ctl frobnicate
expect 2 "missing argument" ctl cat
expect 2 "too many arguments" ctl stat a b
expect 2 "bad timeout" ctl -t zero ping
expect 2 "bad server address" timeout 60 "$MSTORE_CTL" -s nonsense ping
expect 2 "bad path" ctl stat a/../b
expect 2 "no command" ctl
expect 0 "--help" timeout 60 "$MSTORE_CTL" --help
# A server that is not there: the operation fails (1), not the usage.
expect 1 "unreachable server" timeout 60 "$MSTORE_CTL" -t 2 \
    -s "unix:$tmp/no-such-socket" ping

smoke_end
