#!/bin/sh
#
# nfs_smoke.sh - mstore-bench's nfs:// target end to end: tools/lab/nfs-server
# exports a fresh directory with nfs-ganesha on free 127.0.0.1 ports, and
# a tiny run through libnfs must deliver every message without an error.
# With --keep the messages must be in new/ of the exported directory (and
# none in tmp/), complete and mode 0600; without it nothing may be left.
# The read workload must leave every message in cur/ as seen, and the
# mixed one must account for every operation.
# The export must listen on 127.0.0.1 only. Timing is never asserted.
#
# Whatever happens, the trap stops what nfs-server started (by the PIDs
# in its state directory) and removes the temporary directory. Needs
# root, python3, nfs-ganesha and an mstore-bench built with libnfs; when
# any is missing, or ganesha cannot run here, the test FAILS and says
# why: a benchmark target that silently stops being tested is worse.
#
# Exit status (automake): 0 pass, 1 fail, 99 hard error.

LC_ALL=C
export LC_ALL

me=nfs_smoke
build=${abs_top_builddir:-$(pwd)}
src=${srcdir:-$(dirname "$0")/..}
MSTORE_BENCH=${MSTORE_BENCH:-$build/tools/mstore-bench}
NFS_SERVER=${NFS_SERVER:-$src/tools/lab/nfs-server}
fails=0
tmp=

die()
{
	echo "$me: FAIL: $*" >&2
	exit 1
}

fail()
{
	echo "$me: FAIL: $*" >&2
	fails=$((fails + 1))
}

[ -x "$MSTORE_BENCH" ] || {
	echo "$me: $MSTORE_BENCH not built (run from the build directory," \
	    "or set MSTORE_BENCH)" >&2
	exit 99
}
[ -r "$NFS_SERVER" ] || { echo "$me: $NFS_SERVER missing" >&2; exit 99; }
command -v python3 >/dev/null 2>&1 ||
    die "python3 not found: tools/lab/nfs-server needs it (tools/install-deps)"
if "$MSTORE_BENCH" --help | grep -q 'built without libnfs'; then
	err=$("$MSTORE_BENCH" -q -n 1 nfs://127.0.0.1/x 2>&1 >/dev/null)
	rc=$?
	case $rc:$err in
	"1:"*"built without libnfs: nfs:// targets unavailable"*) ;;
	*) echo "$me: and it does not say so with exit 1: exit $rc: $err" >&2 ;;
	esac
	die "mstore-bench was built without libnfs, so the nfs:// target" \
	    "is untested: install libnfs-dev (tools/install-deps) and" \
	    "run configure again"
fi
[ "$(id -u)" -eq 0 ] ||
    die "needs root: nfs-ganesha's VFS FSAL opens files by handle"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX") || exit 99

cleanup()
{
	if [ -f "$tmp/state/state.json" ]; then
		timeout 90 python3 "$NFS_SERVER" stop --state "$tmp/state" ||
		    echo "$me: nfs-server stop failed; see $tmp/state" >&2
	fi
	[ -f "$tmp/state/state.json" ] || rm -rf "$tmp"
}
trap 'cleanup' 0
trap 'exit 99' HUP INT TERM

mkdir "$tmp/export" || exit 99
if ! url=$(timeout 90 python3 "$NFS_SERVER" start "$tmp/export" \
    --state "$tmp/state" 2>"$tmp/start.err"); then
	sed 's/^/    /' "$tmp/start.err" >&2
	die "nfs-ganesha could not serve $tmp/export on this machine" \
	    "(nfs-server's words above)"
fi
case $url in
nfs://127.0.0.1/*\?nfsport=*\&mountport=*) ;;
*) die "nfs-server printed '$url', not an nfs://127.0.0.1/... URL" ;;
esac
nfsport=$(echo "$url" | sed 's/.*nfsport=\([0-9]*\).*/\1/')
mountport=$(echo "$url" | sed 's/.*mountport=\([0-9]*\).*/\1/')

# 127.0.0.1 only: every listening socket on the two ports is loopback.
for port in "$nfsport" "$mountport"; do
	ss -Hltn "sport = :$port" >"$tmp/ss" 2>&1 || fail "ss: $(cat "$tmp/ss")"
	[ -s "$tmp/ss" ] || fail "nothing listens on port $port"
	if awk '{ print $4 }' "$tmp/ss" |
	    grep -qvE '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):'; then
		fail "port $port listens beyond 127.0.0.1: $(cat "$tmp/ss")"
	fi
done

bench()
{
	timeout 120 "$MSTORE_BENCH" -q -w 2 -m 2 -n 40 -t 10 --json "$@"
}

# check_json FILE: the one target ok, 40 delivered, no error.
check_json()
{
	python3 - "$1" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
bad = []
if len(doc["targets"]) != 1:
    bad.append("%d targets, want 1" % len(doc["targets"]))
for t in doc["targets"]:
    for key, val in (("status", "ok"), ("delivered", 40), ("errors", 0),
                     ("attempted", 40)):
        if t[key] != val:
            bad.append("%s=%r, want %r" % (key, t[key], val))
    if not t["deliveries_per_s"] > 0 or not t["latency_ms"]["p50"] > 0:
        bad.append("no rate or latency")
for b in bad:
    print("nfs_smoke: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# 1. --keep: the files are where a Maildir reader on the server finds them.
if bench --keep "$url" >"$tmp/keep.json" 2>"$tmp/keep.err"; then
	check_json "$tmp/keep.json" || fail "--keep run: bad JSON results"
else
	fail "--keep run exited $?: $(cat "$tmp/keep.err")"
fi
new_files()
{
	find "$tmp/export" -path '*/bench-*/user*/new/*' -type f "$@"
}
n=$(new_files | wc -l)
[ "$n" -eq 40 ] || fail "--keep: $n files in new/, want 40"
n=$(new_files ! -size 4096c | wc -l)
[ "$n" -eq 0 ] || fail "--keep: $n files in new/ are not 4096 bytes"
n=$(new_files ! -perm 0600 | wc -l)
[ "$n" -eq 0 ] || fail "--keep: $n files in new/ are not mode 0600"
n=$(find "$tmp/export" -path '*/bench-*/user*/tmp/*' -type f | wc -l)
[ "$n" -eq 0 ] || fail "--keep: $n files left in tmp/, want 0"
n=$(find "$tmp/export" -path '*/bench-*/user*' -prune -type d | wc -l)
[ "$n" -eq 2 ] || fail "--keep: $n mailboxes, want 2"

# 2. Without --keep: the run removes all it created, and only that.
before=$(find "$tmp/export" | sort | cksum)
if bench "$url" >"$tmp/clean.json" 2>"$tmp/clean.err"; then
	check_json "$tmp/clean.json" || fail "cleanup run: bad JSON results"
else
	fail "cleanup run exited $?: $(cat "$tmp/clean.err")"
fi
[ "$(find "$tmp/export" | sort | cksum)" = "$before" ] ||
    fail "cleanup run: the export differs from before it"

# check_workload FILE WORKLOAD: the counts of a read or mixed run add up.
check_workload()
{
	python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
wl = sys.argv[2]
bad = []
ts = doc["targets"]
if doc["workload"] != wl or len(ts) != 1:
    bad.append("workload %r, %d targets" % (doc["workload"], len(ts)))
for t in ts:
    for key, val in (("status", "ok"), ("errors", 0),
                     ("ops", doc["count"]), ("attempted", doc["count"])):
        if t[key] != val:
            bad.append("%s=%r, want %r" % (key, t[key], val))
    if not t["ops_per_s"] == t["deliveries_per_s"] > 0:
        bad.append("ops_per_s %r, deliveries_per_s %r" % (
            t["ops_per_s"], t["deliveries_per_s"]))
    d, r, x = t["delivered"], t["read"], t["expunged"]
    if wl == "read":
        if not (r == t["setup_delivered"] == t["in_cur"] == t["ops"]
                and t["in_new"] == 0):
            bad.append("read %d, setup %d, in_cur %r, in_new %r" % (
                r, t["setup_delivered"], t["in_cur"], t["in_new"]))
    else:
        if d + r + x != t["ops"]:
            bad.append("delivered %d + read %d + expunged %d != ops %d"
                       % (d, r, x, t["ops"]))
        if t["in_new"] != t["setup_delivered"] + d - x:
            bad.append("in_new %r, want %d + %d - %d" % (
                t["in_new"], t["setup_delivered"], d, x))
for b in bad:
    print("nfs_smoke: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# 3. read: every message read whole and renamed into cur/ as seen.
if bench --keep --workload read "$url" >"$tmp/read.json" 2>"$tmp/read.err"
then
	check_workload "$tmp/read.json" read || fail "read: bad JSON results"
else
	fail "read run exited $?: $(cat "$tmp/read.err")"
fi
n=$(find "$tmp/export" -path '*/bench-*/user*/cur/*:2,S' -type f \
    -size 4096c | wc -l)
[ "$n" -eq 40 ] || fail "read: $n seen 4096-byte files in cur/, want 40"
n=$(find "$tmp/export" -path '*/bench-*/user*/cur/*' -type f | wc -l)
[ "$n" -eq 40 ] || fail "read: $n files in cur/, want 40"

# 4. mixed: the counts add up, and nothing is left behind.
before=$(find "$tmp/export" | sort | cksum)
if bench --workload mixed -n 60 --per-mailbox 3 "$url" >"$tmp/mixed.json" \
    2>"$tmp/mixed.err"; then
	check_workload "$tmp/mixed.json" mixed || fail "mixed: bad JSON results"
else
	fail "mixed run exited $?: $(cat "$tmp/mixed.err")"
fi
[ "$(find "$tmp/export" | sort | cksum)" = "$before" ] ||
    fail "mixed run: the export differs from before it"

# 5. A wrong export is an error with a reason, exit 1.
timeout 60 "$MSTORE_BENCH" -q -n 2 -t 5 \
    "nfs://127.0.0.1$tmp/no-such?nfsport=$nfsport&mountport=$mountport" \
    >/dev/null 2>"$tmp/bad.err"
rc=$?
[ $rc -eq 1 ] || fail "missing export: exit $rc, want 1"
grep -q 'MOUNT(' "$tmp/bad.err" ||
    fail "missing export: no reason given: $(cat "$tmp/bad.err")"

# 6. stop ends exactly what start started.
pids=$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(" ".join(str(s[k]["pid"]) for k in ("ganesha", "rpcbind") if s[k]))' \
    "$tmp/state/state.json")
timeout 90 python3 "$NFS_SERVER" stop --state "$tmp/state" \
    2>"$tmp/stop.err" || fail "stop failed: $(cat "$tmp/stop.err")"
for pid in $pids; do
	state=$(ps -o stat= -p "$pid" 2>/dev/null)
	case $state in
	'' | Z*) ;;
	*) fail "PID $pid still runs after stop" ;;
	esac
done

if [ "$fails" -ne 0 ]; then
	echo "$me: $fails check(s) failed; end of the ganesha log:" >&2
	tail -n 20 "$tmp/state/ganesha.log" 2>/dev/null | sed 's/^/    /' >&2
	exit 1
fi
echo "$me: OK"
exit 0
