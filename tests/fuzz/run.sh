#!/bin/sh
# run.sh [SECONDS] - build the libmstproto fuzzer with 'make fuzz' in the
# current (configured) build directory and run it for SECONDS (default 30)
# on a scratch copy of the seed corpus, so libFuzzer never writes into the
# source tree. Prints libFuzzer's final stats. Exits non-zero on a finding
# and leaves the reproducer in ./fuzz-findings/.
set -eu

secs=${1:-30}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]" >&2
	exit 2
	;;
esac
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f Makefile ]; then
	echo "run.sh: no Makefile here; run me from a configured build" \
		"directory" >&2
	exit 2
fi

make fuzz

work=$(mktemp -d "${TMPDIR:-/tmp}/mstore-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir "$work/corpus"
cp "$here"/corpus/* "$work/corpus/"
findings=$PWD/fuzz-findings
mkdir -p "$findings"

rc=0
./tests/fuzz/fuzz_decode -max_total_time="$secs" -print_final_stats=1 \
	-max_len=8192 -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$findings/" "$work/corpus" >"$work/log" 2>&1 || rc=$?

grep -E '^(Done [0-9]+ runs|stat::)' "$work/log" || true
if [ "$rc" -ne 0 ]; then
	tail -n 40 "$work/log" >&2
	echo "run.sh: libFuzzer exited $rc; reproducer in $findings/" >&2
	exit "$rc"
fi
rmdir "$findings" 2>/dev/null || true
