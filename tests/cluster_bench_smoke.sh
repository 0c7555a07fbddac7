#!/bin/sh
#
# cluster_bench_smoke.sh - tools/bench/cluster-bench end to end with tiny
# counts: a memstore cluster, 1 then 2 rados mstored, a 2-second window
# each. It must exit 0 and print the table with a row per server count;
# its JSON must show deliveries in every row, none failed, CPU costs for
# servers and OSDs, and a projection for 10 and 100 servers; afterwards
# its cgroups and its directory must be gone. Speed is never asserted.
# Skipped (77) only when the Ceph daemons are not installed.

LC_ALL=C
export LC_ALL

srcdir=${srcdir:-$(dirname "$0")/..}
build=${abs_top_builddir:-$(pwd)}
me=cluster_bench_smoke

for b in ceph-mon ceph-osd ceph-mgr ceph; do
	if ! command -v "$b" >/dev/null 2>&1 && [ ! -x "/usr/bin/$b" ]; then
		echo "$me: $b not installed: skipped" >&2
		exit 77
	fi
done
if [ ! -x "$build/storeserver/mstored" ] || \
    [ ! -x "$build/tools/mstore-bench" ]; then
	echo "$me: mstored or mstore-bench not built in $build" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' 0
trap 'exit 99' HUP INT TERM
mkdir "$tmp/w" || exit 99

# cluster-bench ends what it started on SIGTERM, which timeout(1) sends.
t0=$(date +%s)
timeout 240 "$srcdir/tools/bench/cluster-bench" --build "$build" --servers 1,2 \
    --warmup 0 --measure 2 --margin 6 -w 2 -m 5 --no-install \
    --workdir "$tmp/w" --json "$tmp/r.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
t1=$(date +%s)
cat "$tmp/out"
if [ $rc -ne 0 ]; then
	echo "$me: cluster-bench exited $rc:" >&2
	tail -30 "$tmp/err" >&2
	exit 1
fi
echo "$me: cluster-bench took $((t1 - t0)) s"

fails=0
fail()
{
	echo "$me: FAIL: $*" >&2
	fails=$((fails + 1))
}

grep -q '^| N servers | deliveries/s | ratio to N=1 |' "$tmp/out" ||
    fail "no table header"
grep -q '^| 1 | [0-9]' "$tmp/out" || fail "no row for 1 server"
grep -q '^| 2 | [0-9]' "$tmp/out" || fail "no row for 2 servers"
grep -q '^| 100 | [0-9]' "$tmp/out" || fail "no projection for 100 servers"

python3 - "$tmp/r.json" <<'EOF' || fail "bad JSON results"
import json, sys
doc = json.load(open(sys.argv[1]))
bad = []
rows = doc["rows"]
if [r["servers"] for r in rows] != [1, 2]:
    bad.append("rows for %r, want [1, 2]" % [r["servers"] for r in rows])
for r in rows:
    n = r["servers"]
    if not r["delivered"] > 0 or not r["rate"] > 0:
        bad.append("N=%d: nothing delivered in the window" % n)
    if r["errors"] != 0:
        bad.append("N=%d: %d failed deliveries" % (n, r["errors"]))
    if r["bench_status"] != ["ok"] * n:
        bad.append("N=%d: bench status %r" % (n, r["bench_status"]))
    if len(r["rate_per_server"]) != n or min(r["rate_per_server"]) <= 0:
        bad.append("N=%d: per-server rates %r" % (n, r["rate_per_server"]))
    for k in ("server_ms", "osd_ms"):
        if not (r[k] or 0) > 0:
            bad.append("N=%d: %s = %r" % (n, k, r[k]))
m = doc["model"]
if [p["servers"] for p in m.get("proj", [])] != [10, 100]:
    bad.append("projection %r" % m.get("proj"))
for p in m.get("proj", []):
    if not p["cpu_model"] > 0 or not p["porcupine"] > 0:
        bad.append("projection %r" % p)
cg = doc["info"].get("cgroup")
if cg:
    import os
    for ctl in ("cpu", "cpuacct"):
        if os.path.exists(os.path.join("/sys/fs/cgroup", ctl, cg)):
            bad.append("cgroup %s/%s left behind" % (ctl, cg))
for b in bad:
    print("cluster_bench_smoke: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

left=$(ls -A "$tmp/w")
[ -z "$left" ] || fail "left in its work directory: $left"

[ $fails -eq 0 ] || exit 1
echo "$me: ok"
exit 0
