#!/bin/sh
# bench-list in miniature: a folder of 500 messages listed through a fresh
# mount, cold and warm, and stat'ed after a listing. Every listing must
# find every message (bench-list checks), the report section must be
# written, and the stat pass after a listing must cost the store no
# request per message (the mount answers from its folder cache). Timing
# is never asserted.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/bench-list-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
timeout 300 "$src/tools/bench/bench-list" --build "$b" --messages 500 --rounds 1 \
	--json --out "$out/BENCHMARKS.md" >"$out/json" 2>"$out/log" ||
	{ tail -30 "$out/log"; exit 1; }
python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
doc = json.load(open(os.path.join(d, "json")))
r = doc["rounds"][0]["after"]
# None per message: at most the path's directories, asked again once a
# second while the pass runs (a loaded machine makes it long).
assert r["store_requests"] < 50, r["requests"]
for key in ("cold", "warm", "stat"):
    assert r[key] > 0, (key, r)
md = open(os.path.join(d, "BENCHMARKS.md")).read()
assert "<!-- bench-list: begin -->" in md and "| after |" in md, md
print("bench_list_smoke: 500 messages listed; the stat pass cost the store "
      "%d requests and the kernel %d" % (r["store_requests"],
                                         r["kernel_requests"]))
PY
echo "bench_list_smoke: 1 passed, 0 failed"
