#!/bin/sh
# The whole test suite, from a fresh clone on Debian 12 as root:
# install dependencies, build, run every test in a normal build and in an
# ASan+UBSan build (there without the whole-cluster system tests that
# Makefile.am lists in PLAIN_ONLY_TESTS), run each smoke fuzzer for 20 s,
# run every command of the operator's guide, and check the tarball.
#
# On 2 cores it fits its budget (25 minutes) by overlapping, never by
# running less: tests run two at a time (make -j2 check, automake's
# parallel harness; every test takes free ports and private directories),
# the longest first; the ASan+UBSan tree, its check programs and the
# fuzzers are built while the plain build's tests run; the fuzz smoke
# run, make check-guide and distcheck run side by side. The closing table
# gives the wall time of each phase.
set -eu
cd "$(dirname "$0")"
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -ge 2 ] || jobs=2

# Started first by make -j check, so that the short ones fill in around
# them: the longest tests, longest first (the larger of a test's plain
# and ASan times in a full run at a load average of 20-30, on_rados.sh
# 290 s to test_hostile_server.py 40 s). Names not in the suite are
# ignored. The Check programs (tests/check_*) start after the scripts
# whatever their place (make schedules them last), so they are not
# listed.
SLOW_FIRST="tests/integration/on_rados.sh tests/integration/on_memory.sh
tests/integration/test_postfix.py tests/integration/test_rados_locks.py
tests/integration/test_cluster.py tests/integration/test_rados.py
tests/integration/test_rados_ops.py tests/integration/test_failover.py
tests/bench_all_smoke.sh tests/integration/test_dovecot.py
tests/integration/test_rados_osd.py tests/integration/test_rados_postfix.py
tests/integration/test_posix.py tests/mailstone_smoke.sh tests/ctl_smoke.sh
tests/integration/test_memory.py tests/cluster_bench_smoke.sh
tests/integration/test_shared.py tests/integration/test_ceph_minicluster.py
tests/integration/test_rados_shard.py tests/check_manpage.sh
tests/integration/test_hostile_server.py tests/hostile_client.py"

step() { printf '\n==> %s\n' "$*"; }

# Wall time per phase, printed at the end.
times=$(mktemp "${TMPDIR:-/tmp}/run-tests-times.XXXXXX")
t_start=$(date +%s)
t_lap=$t_start
lap() {	# PHASE: the time since the previous lap
	now=$(date +%s)
	printf '%-58s %5d s\n' "$1" $((now - t_lap)) >>"$times"
	t_lap=$now
}

# Background jobs run in sessions of their own (setsid), so that an early
# exit can stop each one with everything it started.
bg=""
cleanup() {
	for pid in $bg; do
		kill -TERM "-$pid" 2>/dev/null || true
	done
	rm -f "$times"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
bg_start() {	# LOG DIR COMMAND...: run COMMAND in DIR, in the background
	log=$1 dir=$2; shift 2
	setsid -w sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$@" \
		>"$log" 2>&1 &
	bg_pid=$!
	bg="$bg $bg_pid"
}
bg_wait() {	# PID: its exit status
	rc=0
	wait "$1" || rc=$?
	bg=$(echo "$bg" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
	return $rc
}

# TESTS, the longest first.
ordered_tests() {	# TESTS...
	slow=$(echo $SLOW_FIRST)
	for t in $slow; do
		case " $* " in *" $t "*) echo "$t" ;; esac
	done
	for t in "$@"; do
		case " $slow " in *" $t "*) ;; *) echo "$t" ;; esac
	done
}

# Check's summary line of every suite, and the scripts' closing lines;
# the end of the log of every test that failed. A failed test does not
# stop the run: every phase runs, and the run fails at the end.
failed=""
report() {	# NAME RC
	name=$1 rc=$2 dir="$top/build-$1"
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
		failed="$failed $name-tests"
	fi
}

run_check() {	# NAME TESTS...
	name=$1; shift
	dir="$top/build-$name"
	tests=$(ordered_tests "$@" | tr '\n' ' ')
	rc=0
	(cd "$dir" && make -j"$jobs" check TESTS="$tests") || rc=$?
	report "$name" "$rc"
}

step "dependencies"
tools/install-deps

step "configure (tree: $top): build-plain, build-asan (--enable-sanitizers)"
[ -x configure ] || ./autogen.sh >/dev/null
mkdir -p "$top/build-plain" "$top/build-asan"
(cd "$top/build-plain" && "$top/configure" -q) &
cfg_plain=$!
(cd "$top/build-asan" && "$top/configure" -q --enable-sanitizers) &
cfg_asan=$!
rc=0
wait "$cfg_plain" || rc=$?
wait "$cfg_asan" || rc=$?
[ "$rc" -eq 0 ] || { echo "run-tests: configure failed" >&2; exit 1; }
lap "configure, both trees"

step "build: plain"
(cd "$top/build-plain" && make -j"$jobs" >/dev/null)
lap "build: plain"

# The ASan+UBSan tree: programs, check programs (make check with no
# tests), fuzzers and their seed generators, while the plain tests run.
step "build: asan, in the background (build-asan/build.log)"
bg_start "$top/build-asan/build.log" "$top/build-asan" sh -c \
	'make -j'"$jobs"' >/dev/null && make -j'"$jobs"' check TESTS= >/dev/null &&
	make fuzz-build tests/fuzz/mkrecover tests/fuzz/mksession >/dev/null'
asan_build=$bg_pid

step "test: plain (make -j$jobs check)"
run_check plain $(cd "$top/build-plain" && make -s print-tests)
lap "test: plain (and the asan build beside it)"

step "build: asan (waiting for it)"
bg_wait "$asan_build" || {
	tail -40 "$top/build-asan/build.log"
	echo "run-tests: asan build failed" >&2
	exit 1
}
lap "build: asan, what was left of it"

# Not the whole-cluster system tests (Makefile.am, PLAIN_ONLY_TESTS): the
# plain build ran them.
step "test: asan (make -j$jobs check, without PLAIN_ONLY_TESTS)"
run_check asan $(cd "$top/build-asan" && make -s print-sanitizer-tests)
lap "test: asan"

# Side by side: the fuzz smoke run (20 s per harness, ASan+UBSan), every
# command of mstore(7) in a sandbox where the packages really install,
# start and purge (make check-guide, about a minute on an idle machine),
# and the tarball built, installed and checked once more; the full suite
# already ran twice above, so its check runs the unit suites only.
step "fuzz smoke run, make check-guide, make distcheck (unit suites), side by side"
bg_start "$top/build-asan/fuzz-smoke.log" "$top/build-asan" make fuzz-smoke
fuzz=$bg_pid
bg_start "$top/build-plain/check-guide.log" "$top/build-plain" make check-guide
guide=$bg_pid
bg_start "$top/build-plain/distcheck.log" "$top/build-plain" make -j"$jobs" \
	distcheck TESTS="tests/check_proto tests/check_corpus.sh tests/check_manpage.sh tests/check_engine"
dist=$bg_pid
bg_wait "$fuzz" || failed="$failed fuzz-smoke"
step "fuzz smoke run (build-asan/fuzz-smoke.log)"
grep -E '^== |^Done [0-9]+ runs|^corpus: ' \
	"$top/build-asan/fuzz-smoke.log" || true
bg_wait "$guide" || failed="$failed check-guide"
step "make check-guide (build-plain/check-guide.log)"
grep -vE '^make(\[[0-9]+\])?: ' "$top/build-plain/check-guide.log" | tail -15
bg_wait "$dist" || failed="$failed distcheck"
step "make distcheck (build-plain/distcheck.log)"
grep -E 'archives ready for distribution|^mstore-.*\.tar\.gz' \
	"$top/build-plain/distcheck.log" | head -3 || true
lap "fuzz smoke, check-guide, distcheck (side by side)"
for f in $failed; do
	case $f in
	fuzz-smoke) log=$top/build-asan/fuzz-smoke.log ;;
	check-guide) log=$top/build-plain/check-guide.log ;;
	distcheck) log=$top/build-plain/distcheck.log ;;
	*) continue ;;		# the tests' logs are shown above
	esac
	echo "--- $log"
	tail -40 "$log"
	echo "run-tests: $f failed" >&2
done

step "wall time per phase"
cat "$times"
printf '%-58s %5d s\n' "total" $(($(date +%s) - t_start))

echo
if [ -n "$failed" ]; then
	echo "run-tests: failed:$failed" >&2
	exit 1
fi
echo "run-tests: all passed"
