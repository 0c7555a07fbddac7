#!/bin/sh
#
# bench_smoke.sh - mstore-bench end to end against a private mstored and
# a local directory: a tiny run per target must deliver every message
# without an error, --json must parse, --keep must leave exactly the
# delivered files in new/ (and none in tmp/), and a run without --keep
# must leave nothing behind, on disk or on the store. The read workload
# must read every message it put in at setup and leave each in cur/ as
# seen (on disk for dir:, by the counts listed from the store for
# mstore://); the mixed one must account for every operation. Timing is
# never asserted. Every run is under timeout(1).

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

# check_workload FILE NTARGETS WORKLOAD: the counts of a read or mixed
# run add up for every target.
check_workload()
{
	python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    doc = json.load(f)
want, wl = int(sys.argv[2]), sys.argv[3]
bad = []
def need(t, what, ok):
    if not ok:
        bad.append("%s: %s" % (t["target"], what))
if doc["workload"] != wl or len(doc["targets"]) != want:
    bad.append("workload %r with %d targets, want %r with %d" % (
        doc["workload"], len(doc["targets"]), wl, want))
for t in doc["targets"]:
    kinds = t["latency_by_kind"]
    need(t, "status %r" % t["status"], t["status"] == "ok")
    need(t, "%d errors" % t["errors"], t["errors"] == 0)
    need(t, "ops %d, attempted %d, want count %d" % (
        t["ops"], t["attempted"], doc["count"]),
        t["ops"] == doc["count"] == t["attempted"])
    need(t, "ops_per_s %r, deliveries_per_s %r" % (
        t["ops_per_s"], t["deliveries_per_s"]),
        t["ops_per_s"] == t["deliveries_per_s"] > 0)
    need(t, "unit %r, want %r" % (t["unit"], doc["unit"]),
         t["unit"] == doc["unit"])
    need(t, "no latency", t["latency_ms"]["p50"] > 0)
    if wl == "read":
        need(t, "read %d, setup_delivered %d, in_cur %r, in_new %r, "
             "ops %d" % (t["read"], t["setup_delivered"], t["in_cur"],
                         t["in_new"], t["ops"]),
             t["read"] == t["ops"] == t["setup_delivered"] == t["in_cur"]
             and t["in_new"] == 0)
        need(t, "latency kinds %r" % kinds,
             sorted(kinds) == ["read"] and kinds["read"]["n"] == t["ops"])
        need(t, "unit %r" % t["unit"], t["unit"] == "reads/s")
    else:
        d, r, x = t["delivered"], t["read"], t["expunged"]
        need(t, "delivered %d + read %d + expunged %d != ops %d" % (
            d, r, x, t["ops"]), d + r + x == t["ops"])
        need(t, "in_new %r, in_cur %r, want setup %d + delivered %d - "
             "expunged %d and 0" % (t["in_new"], t["in_cur"],
                                    t["setup_delivered"], d, x),
             t["in_new"] == t["setup_delivered"] + d - x
             and t["in_cur"] == 0)
        need(t, "latency n per kind %r" % kinds,
             [kinds[k]["n"] for k in ("deliver", "read", "expunge")]
             == [d, r, x])
        need(t, "conflicts %r, empty %r" % (t["conflicts"], t["empty"]),
             t["conflicts"] >= 0 and 0 <= t["empty"] <= d)
        need(t, "unit %r" % t["unit"], t["unit"] == "ops/s")
if wl == "read" and doc["sizes"] == "dist" and len(doc["targets"]) > 1:
    b = [t["bytes"] for t in doc["targets"]]
    if len(set(b)) != 1 or not b[0] > 0:
        bad.append("-s dist --seed: bytes read %r differ" % b)
for b in bad:
    print("bench_smoke: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}

# 4. read: every message delivered at setup is read and ends in cur/ as
# seen; the same seed gives both targets the same sizes.
mkdir "$tmp/r" || exit 99
if bench --json --keep --workload read -n 48 -s dist --seed 7 "dir:$tmp/r" \
    "mstore://$addr" >"$tmp/read.json" 2>"$tmp/read.err"; then
	check_workload "$tmp/read.json" 2 read || fail "read: bad JSON results"
else
	fail "read run exited $?: $(cat "$tmp/read.err")"
fi
n=$(find "$tmp/r" -path '*/bench-*/user*/cur/*:2,S' -type f | wc -l)
[ "$n" -eq 48 ] || fail "read: $n seen files in cur/, want 48"
n=$(find "$tmp/r" -path '*/bench-*/user*/*/*' -type f | wc -l)
[ "$n" -eq 48 ] || fail "read: $n files in the mailboxes, want 48"
# Messages larger than a frame (1 MiB): FETCH reads each in ranges.
if bench --json --workload read -n 4 -m 2 -s 1536K "mstore://$addr" \
    >"$tmp/big.json" 2>"$tmp/big.err"; then
	check_workload "$tmp/big.json" 1 read || fail "read 1.5M: bad JSON"
else
	fail "read 1.5M run exited $?: $(cat "$tmp/big.err")"
fi

# 5. mixed: every operation is a delivery, a read or an expunge, and
# what is left is what was put in minus what was expunged.
if bench --json --workload mixed -n 200 --per-mailbox 4 "dir:$tmp/d2" \
    "mstore://$addr" >"$tmp/mixed.json" 2>"$tmp/mixed.err"; then
	check_workload "$tmp/mixed.json" 2 mixed ||
	    fail "mixed: bad JSON results"
else
	fail "mixed run exited $?: $(cat "$tmp/mixed.err")"
fi
[ -z "$(ls -A "$tmp/d2")" ] || fail "mixed: $tmp/d2 is not empty"
if bench --workload mixed --mix 40:40:20 -n 100 "dir:$tmp/d2" \
    >"$tmp/mixed.table" 2>"$tmp/mixed.err"; then
	grep -q '^target .* conflicts *empty$' "$tmp/mixed.table" &&
	    grep -q '^mstore-bench: mixed 40:40:20, ' "$tmp/mixed.table" ||
	    fail "mixed table: $(cat "$tmp/mixed.table")"
else
	fail "mixed table run exited $?: $(cat "$tmp/mixed.err")"
fi

# 6. Errors are counted and reported, never dropped: a target that cannot
# be reached fails the run (exit 1) and says why.
timeout 60 "$MSTORE_BENCH" -q -n 5 -t 2 "mstore://unix:$tmp/no-such" \
    >"$tmp/err.out" 2>"$tmp/err.err"
rc=$?
[ "$rc" -eq 1 ] || fail "unreachable target: exit $rc, want 1"
grep -q 'connect .*no-such' "$tmp/err.err" ||
    fail "unreachable target: no reason given: $(cat "$tmp/err.err")"

# 7. Usage errors exit 2.
timeout 60 "$MSTORE_BENCH" -n 5 -d 1 "dir:$tmp/d2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "-n with -d: want exit 2"
timeout 60 "$MSTORE_BENCH" "nfs-ish:/x" >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown target kind: want exit 2"
timeout 60 "$MSTORE_BENCH" -s 12Q "dir:$tmp/d2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "bad size: want exit 2"
timeout 60 "$MSTORE_BENCH" --workload mixed --mix 50:40:5 "dir:$tmp/d2" \
    >/dev/null 2>&1
[ $? -eq 2 ] || fail "--mix not adding up to 100: want exit 2"
timeout 60 "$MSTORE_BENCH" --mix 70:25:5 "dir:$tmp/d2" >/dev/null 2>&1
[ $? -eq 2 ] || fail "--mix without --workload mixed: want exit 2"
timeout 60 "$MSTORE_BENCH" --workload read -n 2 -m 3 "dir:$tmp/d2" \
    >/dev/null 2>&1
[ $? -eq 2 ] || fail "read with fewer messages than mailboxes: want exit 2"

smoke_end
