#!/bin/sh
# mta-bench, tiny: 40 messages through a private Postfix into a local
# directory and into a private store's mount; the JSON must parse, every
# message must arrive exactly once, and the counts must add up.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/mta-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
out=$(timeout 300 "$src/tools/lab/mta-bench" --build "$b" --json -n 40 -p 4 -u 5 \
	"dir:$work" mstore)
printf '%s\n' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rs = d["results"]
assert len(rs) == 2, rs
for r in rs:
    assert r["messages"] == 40, r
    assert r["exactly_once"] and not r["problems"], r
    assert r["rate"] > 0 and r["seconds"] > 0, r
assert rs[0]["ratio"] == 1.0 and rs[1]["ratio"] > 0, rs
assert d["ok"] is True
print("mta-bench smoke: %s %.1f msgs/s, %s %.1f msgs/s" % (
    rs[0]["target"], rs[0]["rate"], rs[1]["target"], rs[1]["rate"]))
'
echo "mta_bench_smoke: 1 passed, 0 failed"
