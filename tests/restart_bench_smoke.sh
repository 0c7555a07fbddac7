#!/bin/sh
# restart-bench in miniature: 20,000 messages in 200 mailboxes, a clean
# restart (SIGTERM, a checkpoint on the way out) and a crash restart
# (SIGKILL after 2,000 more deliveries, the log tail replayed). Every
# message acknowledged must be there after each; the times and the memory
# are reported, never asserted: this host is shared.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/restart-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
timeout 120 "$src/tools/bench/restart-bench" --build "$b" -n 20000 -m 200 \
	-s 300 -w 8 -c 2000 --dir "$out" --json >"$out/json" 2>"$out/log" ||
	{ tail -30 "$out/log"; exit 1; }
python3 - "$out/json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["clean"]["messages"] == 20000, r["clean"]
assert r["crash"]["messages"] == 22000, r["crash"]
assert r["crash"]["phases"].get("replayed_records", 0) >= 2000, r["crash"]
for how in ("clean", "crash"):
    x = r[how]
    print("restart_bench_smoke: %s restart ready in %.3f s, %d messages, "
          "VmRSS %.1f MiB" % (how, x["ready_s"], x["messages"],
                              x["vmrss_mib"]))
PY
echo "restart_bench_smoke: 1 passed, 0 failed"
