#!/bin/sh
#
# bench_smoke.sh - mstore-bench end to end against a private mstored and
# a local directory: a tiny run per target must deliver every message
# without an error, --json must parse, --keep must leave exactly the
# delivered files in new/ (and none in tmp/), and a run without --keep
# must leave nothing behind, on disk or on the store. Timing is never
# asserted. Every run is under timeout(1).

. "${srcdir:-$(dirname "$0")/..}/tests/smoke_lib.sh"

if ! command -v python3 >/dev/null 2>&1; then
	echo "bench_smoke: python3 not found: skipped" >&2
	exit 77
fi

smoke_start

bench()
{
	timeout 120 "$MSTORE_BENCH" -q -w 2 -m 3 -n 50 "$@"
}

# check_json FILE NTARGETS: every target ok, delivered == 50, errors == 0.
check_json()
{
	python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
want = int(sys.argv[2])
bad = []
if len(doc["targets"]) != want:
    bad.append("%d targets, want %d" % (len(doc["targets"]), want))
for t in doc["targets"]:
    for key, val in (("status", "ok"), ("delivered", 50), ("errors", 0),
                     ("attempted", 50)):
        if t[key] != val:
            bad.append("%s: %s=%r, want %r" % (t["target"], key, t[key], val))
    if not t["deliveries_per_s"] > 0 or not t["latency_ms"]["p50"] > 0:
        bad.append("%s: no rate or latency" % t["target"])
if doc["targets"] and doc["targets"][0]["ratio"] != 1:
    bad.append("baseline ratio %r, want 1" % doc["targets"][0]["ratio"])
for b in bad:
    print("bench_smoke: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

mkdir "$tmp/d" "$tmp/d2" || exit 99

# 1. --keep: the files stay where a Maildir reader would find them.
if bench --json --keep "dir:$tmp/d" "mstore://$addr" >"$tmp/keep.json" \
    2>"$tmp/keep.err"; then
	check_json "$tmp/keep.json" 2 || fail "--keep run: bad JSON results"
else
	fail "--keep run exited $?: $(cat "$tmp/keep.err")"
fi
n=$(find "$tmp/d" -path '*/bench-*/user*/new/*' -type f | wc -l)
[ "$n" -eq 50 ] || fail "--keep: $n files in new/, want 50"
n=$(find "$tmp/d" -path '*/bench-*/user*/tmp/*' -type f | wc -l)
[ "$n" -eq 0 ] || fail "--keep: $n files left in tmp/, want 0"
n=$(timeout 60 "$MSTORE_CTL" -s "$addr" stats | sed -n 's/^messages=//p')
[ "$n" = 50 ] || fail "--keep: the store holds '$n' messages, want 50"

# 2. Without --keep: nothing is left behind.
if bench --json "dir:$tmp/d2" "mstore://$addr" >"$tmp/clean.json" \
    2>"$tmp/clean.err"; then
	check_json "$tmp/clean.json" 2 || fail "cleanup run: bad JSON results"
else
	fail "cleanup run exited $?: $(cat "$tmp/clean.err")"
fi
[ -z "$(ls -A "$tmp/d2")" ] || fail "cleanup: $tmp/d2 is not empty"
n=$(timeout 60 "$MSTORE_CTL" -s "$addr" stats | sed -n 's/^messages=//p')
[ "$n" = 50 ] || fail "cleanup: the store holds '$n' messages, want 50" \
    "(the 50 of the --keep run)"

# 3. The table: one row per target and the ratio line.
if bench "dir:$tmp/d2" "mstore://$addr" >"$tmp/table" 2>"$tmp/table.err"
then
	grep -q "^dir:$tmp/d2 .* 1\.00\$" "$tmp/table" &&
	    grep -q '^ratio: ' "$tmp/table" ||
	    fail "table output: $(cat "$tmp/table")"
else
	fail "table run exited $?: $(cat "$tmp/table.err")"
fi

# 4. Errors are counted and reported, never dropped: a target that cannot
# be reached fails the run (exit 1) and says why.
timeout 60 "$MSTORE_BENCH" -q -n 5 -t 2 "mstore://unix:$tmp/no-such" \
    >"$tmp/err.out" 2>"$tmp/err.err"
rc=$?
[ "$rc" -eq 1 ] || fail "unreachable target: exit $rc, want 1"
grep -q 'connect .*no-such' "$tmp/err.err" ||
    fail "unreachable target: no reason given: $(cat "$tmp/err.err")"

# 5. Usage errors exit 2.
timeout 60 "$MSTORE_BENCH" -n 5 -d 1 "dir:$tmp/d2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "-n with -d: want exit 2"
timeout 60 "$MSTORE_BENCH" "nfs-ish:/x" >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown target kind: want exit 2"
timeout 60 "$MSTORE_BENCH" -s 12Q "dir:$tmp/d2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad size: want exit 2"

smoke_end
