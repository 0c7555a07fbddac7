#!/bin/sh
# make bench, in miniature (--quick): every target on both links, one
# busy mailbox (32 writers into one Maildir), mount against local disk
# in interleaved rounds on both links, the report and its plots
# are written, every measurement delivered without errors, and the
# sections other tools own are kept. Timing goals are
# reported by the tool, never asserted here.
set -eu
b=${abs_top_builddir:-$(pwd)}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/bench-all-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
# A section another tool owns, which the rewrite must carry over.
printf '# old report\n\n<!-- other-bench: begin -->\n## Kept section\n\nkept row\n<!-- other-bench: end -->\n' \
	>"$out/BENCHMARKS.md"
timeout 600 "$src/tools/bench/bench-all" --build "$b" --quick --out "$out/BENCHMARKS.md" >"$out/goals" 2>"$out/log" ||
	{ tail -30 "$out/log"; exit 1; }
python3 - "$out" <<'PY'
import os, re, sys
d = sys.argv[1]
md = open(os.path.join(d, "BENCHMARKS.md")).read()
for sect in ("## deliver, loopback link, 4 KiB messages",
             "## deliver, delayed link, 4 KiB messages", "## Postfix end to end"):
    assert sect in md, sect
rows = [l for l in md.splitlines() if re.match(r"\| (1|8) \| ", l)]
assert len(rows) == 4, rows
for l in rows:
    cells = [c.strip() for c in l.strip("|").split("|")]
    assert "failed" not in cells, l
    assert all(float(c) > 0 for c in cells[1:5]), l
busy = re.findall(r"^\| 4 KiB \| (\d+) \| (\d+) \| ([0-9.]+) ", md, re.M)
assert "## One busy mailbox, loopback" in md and len(busy) == 1, busy
assert all(float(x) > 0 for x in busy[0]), busy
wr = re.findall(r"^\| (loopback|delayed) \| 1 \| 4 KiB \| whole \| (\d+) \| (\d+) \| "
                r"([0-9.]+) ", md, re.M)
assert "## Mount against local disk, interleaved rounds" in md, "writes section"
assert sorted(x[0] for x in wr) == ["delayed", "loopback"], wr
assert all(float(v) > 0 for x in wr for v in x[1:]), wr
rtts = re.findall(r"measured RTT ([0-9.]+) ms", md)
assert len(rtts) == 2, rtts            # loopback and delayed
pngs = [f for f in os.listdir(d) if f.endswith(".png")]
assert len(pngs) == 2, pngs
assert "| yes |" in md and "| NO |" not in md
assert "# old report" not in md
kept = re.search(r"<!-- other-bench: begin -->\n## Kept section\n\nkept row\n"
                 r"<!-- other-bench: end -->", md)
assert kept and kept.start() > md.index("## Postfix end to end"), "section lost"
print("bench-all smoke: report with %d rows and %d plots" % (len(rows), len(pngs)))
PY
echo "bench_all_smoke: 1 passed, 0 failed"
