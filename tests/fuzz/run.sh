#!/bin/sh
# run.sh [SECONDS] [HARNESS...] - build the libFuzzer harnesses with
# 'make fuzz-build' in the current (configured) build directory and run
# each (default: all of them) for SECONDS (default 30) on a scratch copy
# of its seed corpus (tests/fuzz/corpus for fuzz_decode,
# tests/fuzz/corpus-NAME for fuzz_NAME), so libFuzzer never writes into
# the source tree. Prints libFuzzer's final stats. Exits non-zero on a
# finding and leaves the reproducer in ./fuzz-findings/.
set -eu

secs=${1:-30}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS] [HARNESS...]" >&2
	exit 2
	;;
esac
[ $# -gt 0 ] && shift
harnesses=${*:-fuzz_decode fuzz_recover fuzz_reply fuzz_session}
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f Makefile ]; then
	echo "run.sh: no Makefile here; run me from a configured build" \
		"directory" >&2
	exit 2
fi

make fuzz-build

work=$(mktemp -d "${TMPDIR:-/tmp}/mstore-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
findings=$PWD/fuzz-findings
mkdir -p "$findings"

for h in $harnesses; do
	case $h in
	fuzz_decode) seeds=$here/corpus maxlen=8192 ;;
	fuzz_recover) seeds=$here/corpus-recover maxlen=65536 ;;
	fuzz_*) seeds=$here/corpus-${h#fuzz_} maxlen=65536 ;;
	*)
		echo "run.sh: unknown harness $h" >&2
		exit 2
		;;
	esac
	# Inputs that once crashed this harness run first, as regression
	# tests (tests/fuzz/findings/NAME-*).
	set -- "$here"/findings/"${h#fuzz_}"-*
	if [ -e "$1" ]; then
		echo "== $h: $# past finding(s)"
		"./tests/fuzz/$h" -runs=1 "$@" >"$work/$h.regress" 2>&1 || {
			tail -n 40 "$work/$h.regress" >&2
			echo "run.sh: $h: a past finding fails again" >&2
			exit 1
		}
	fi
	mkdir "$work/$h"
	cp "$seeds"/* "$work/$h/"
	echo "== $h, $secs s"
	rc=0
	"./tests/fuzz/$h" -max_total_time="$secs" -print_final_stats=1 \
		-max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$findings/$h-" "$work/$h" \
		>"$work/$h.log" 2>&1 || rc=$?
	grep -E '^(Done [0-9]+ runs|stat::)' "$work/$h.log" || true
	echo "corpus: $(ls "$work/$h" | wc -l) inputs"
	if [ "$rc" -ne 0 ]; then
		tail -n 40 "$work/$h.log" >&2
		echo "run.sh: $h: libFuzzer exited $rc; reproducer in" \
			"$findings/" >&2
		exit "$rc"
	fi
done
rmdir "$findings" 2>/dev/null || true
