#!/bin/sh
# check_durability_defects.sh - runs the "defects" cases of
# tests/check_durability: each shows a defect of the delivery promise
# still open (see the comment at the top of check_durability.c), so this
# test is expected to fail (XFAIL_TESTS) until every one is fixed; then
# it passes, make check reports XPASS, and the cases move into the main
# suite.
exec "${abs_top_builddir:-.}/tests/check_durability" --defects
