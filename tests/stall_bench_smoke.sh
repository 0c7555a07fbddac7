#!/bin/sh
# stall-bench in miniature: 5,000 messages, 1 MiB segments, three 4-second
# phases. Each phase must deliver without errors, the forced checkpoint
# must have been written by a child process (the commit path paid only
# its fork), and the compaction must have relocated bodies and reclaimed
# segments. Latency is reported, never asserted: this host is shared.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/stall-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
timeout 120 "$src/tools/bench/stall-bench" --build "$b" -n 5000 -m 100 \
	-w 8 -d 4 --at 1 --garbage 3M --conf segment_size=1M --dir "$out" \
	--json >"$out/json" 2>"$out/log" || { tail -30 "$out/log"; exit 1; }
python3 - "$out/json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
phases = {p["phase"]: p for p in r["phases"]}
assert sorted(phases) == ["checkpoint", "compact", "steady"], phases
for p in phases.values():
    assert p["delivered"] > 0, p
assert phases["checkpoint"]["event_s"] is not None, phases
assert r["messages"] >= 5000, r["messages"]
assert r["checkpoints_forked"] >= 2, r      # the forced one, compaction's
assert r["compacted"] >= 1 and r["relocated"] > 0, r
print("stall_bench_smoke: p999 steady %.1f ms, checkpoint %.1f ms, compact "
      "%.1f ms; %d checkpoints forked, longest fork %.2f ms"
      % (phases["steady"]["p999_ms"], phases["checkpoint"]["p999_ms"],
         phases["compact"]["p999_ms"], r["checkpoints_forked"],
         r["fork_ms_max"]))
PY
echo "stall_bench_smoke: 1 passed, 0 failed"
