#!/bin/sh
# tools/bench/mailstone in miniature: one round, local disk and two mounts
# of one store, postal sending through Postfix and rabid retrieving and
# deleting through Dovecot POP3 at the same time, for a few seconds or
# 400 messages. Asserted: both runs sent and retrieved mail, every message
# postal logged was delivered and retrieved exactly once (what Postfix
# delivered equals what rabid retrieved; at most one per postal thread
# was accepted as postal was stopped and so not logged), the Maildirs and
# the queue are empty, and postal, rabid, Dovecot and Postfix reported no
# error. The report section and the plot are written. Timing is never
# asserted.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/mailstone-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
timeout 120 "$src/tools/bench/mailstone" --build "$b" --rounds 1 --seconds 6 \
	--warmup 2 --messages 400 --users 10 --smtp-threads 4 --pop-threads 4 \
	--drain 60 --json --quiet --out "$out/BENCHMARKS.md" --plot "$out/m.png" \
	>"$out/json" 2>"$out/log" || { cat "$out/log"; tail -c 3000 "$out/json"; exit 1; }
python3 - "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
doc = json.load(open(os.path.join(d, "json")))
runs = doc["runs"]
assert sorted(r["target"] for r in runs) == ["local", "mount"], runs
for r in runs:
    where = "%s: " % r["target"]
    assert r["problems"] == [], where + "; ".join(r["problems"])
    assert r["sent"] > 0 and r["retrieved"] > 0, where + str(r)
    assert r["delivered"] == r["retrieved"], where + "delivered %d, retrieved %d" % (
        r["delivered"], r["retrieved"])
    assert r["sent"] <= r["retrieved"] <= r["sent"] + 4, where + "sent %d, retrieved %d" % (
        r["sent"], r["retrieved"])
    assert r["retrieved"] - r["unlogged"] == r["sent"], where + str(r)
    assert r["left"] == 0, where + "%d left" % r["left"]
    assert r["errors"] == {"postal": 0, "rabid": 0, "dovecot": 0}, where + str(r["errors"])
    assert r["deferred"] == 0 and r["bounced"] == 0, where + str(r)
    assert r["smtp_per_s"] > 0 and r["pop3_per_s"] > 0, where + str(r)
assert doc["ok"] is True
md = open(os.path.join(d, "BENCHMARKS.md")).read()
assert "<!-- mailstone: begin -->" in md and "<!-- mailstone: end -->" in md, md
assert "| 1 | mstore mounts |" in md and "| 1 | local disk |" in md, md
assert os.path.getsize(os.path.join(d, "m.png")) > 1000
print("mailstone_smoke: %s" % "; ".join(
    "%s sent %d, retrieved %d (%.0f and %.0f msgs/s)" % (
        r["target"], r["sent"], r["retrieved"], r["smtp_per_s"], r["pop3_per_s"])
    for r in runs))
PY
echo "mailstone_smoke: 1 passed, 0 failed"
