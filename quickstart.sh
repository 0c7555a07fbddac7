#!/bin/sh
# Install what mstore needs (Debian 12, as root), build it, and run the
# demo: start a store, mount it, deliver mail through it, show the result.
set -eu
cd "$(dirname "$0")"
tools/install-deps
[ -x configure ] || ./autogen.sh
mkdir -p build-plain
cd build-plain
[ -f Makefile ] || ../configure -q
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
cd ..
tools/lab/demo build-plain
