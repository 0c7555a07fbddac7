#!/bin/sh
# The whole test suite, from a fresh clone on Debian 12 as root:
# install dependencies, build, run every test in a normal build and in an
# ASan+UBSan build (there without the whole-cluster system tests that
# Makefile.am lists in PLAIN_ONLY_TESTS), run each smoke fuzzer for 20 s,
# and check the tarball.
set -eu
cd "$(dirname "$0")"
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
tools/install-deps

step "configure (tree: $top)"
[ -x configure ] || ./autogen.sh >/dev/null
summary=""

run_build() {	# NAME CONFIGURE-ARGS...
	name=$1; shift
	dir="$top/build-$name"
	step "build and test: $name ($*)"
	mkdir -p "$dir"
	(cd "$dir" && "$top/configure" -q "$@" && make -j"$jobs" >/dev/null)
	rc=0
	if [ "$name" = asan ]; then
		# Not the whole-cluster system tests (Makefile.am,
		# PLAIN_ONLY_TESTS): the plain build ran them.
		tests=$(cd "$dir" && make -s print-sanitizer-tests)
		(cd "$dir" && make -j1 check TESTS="$tests") || rc=$?
	else
		(cd "$dir" && make -j1 check) || rc=$?
	fi
	# Check's summary line of every suite, and the scripts' closing lines.
	for log in "$dir"/tests/*.log "$dir"/tests/integration/*.log; do
		[ -f "$log" ] || continue
		grep -hE '^[0-9]+%: Checks: |^[A-Za-z_-]+: [0-9]+ passed, [0-9]+ failed' "$log" |
			sed "s|^|$name $(basename "$log" .log): |" || true
	done
	if [ "$rc" -ne 0 ]; then
		for log in "$dir"/tests/*.log "$dir"/tests/integration/*.log; do
			[ -f "$log" ] && grep -q ':test-result: \(FAIL\|ERROR\)' "${log%.log}.trs" 2>/dev/null &&
				{ echo "--- $log"; tail -40 "$log"; }
		done
		echo "run-tests: $name build: tests failed" >&2
		exit 1
	fi
}

run_build plain
run_build asan --enable-sanitizers

step "fuzz smoke run, 20 s per harness (ASan+UBSan)"
(cd "$top/build-asan" && make fuzz-smoke)

# Every command of mstore(7), run in a sandbox where the packages really
# install, start and purge (about a minute on an idle machine).
step "the operator's guide, every command (make check-guide)"
(cd "$top/build-plain" && make check-guide)

# The tarball is built, installed and checked once more; the full suite
# already ran twice above, so its check runs the unit suites only.
step "make distcheck (unit suites)"
(cd "$top/build-plain" && make -j"$jobs" distcheck \
	TESTS="tests/check_proto tests/check_corpus.sh tests/check_manpage.sh tests/check_engine" \
	>distcheck.log 2>&1) || {
	tail -40 "$top/build-plain/distcheck.log"; exit 1; }
grep -E 'archives ready for distribution|^mstore-.*\.tar\.gz' "$top/build-plain/distcheck.log" | head -3

echo
echo "run-tests: all passed"
