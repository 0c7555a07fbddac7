#!/bin/sh
# check_corpus.sh - the committed fuzz seed corpus must be what
# tests/fuzz/mkcorpus writes today; otherwise the fuzzer starts from
# stale encodings. Fix with 'make fuzz-corpus'.
set -eu

srcdir=${srcdir:-.}
work=$(mktemp -d "${TMPDIR:-/tmp}/mstore-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

mkdir "$work/corpus"
./tests/fuzz/mkcorpus "$work/corpus"
if ! diff -r "$srcdir/tests/fuzz/corpus" "$work/corpus" >&2; then
	echo "check_corpus: tests/fuzz/corpus is stale; run 'make fuzz-corpus'" >&2
	exit 1
fi
