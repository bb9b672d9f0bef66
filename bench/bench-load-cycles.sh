#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-load-cycles.sh: 1000 connect/disconnect cycles against usbredirsrv and usbdump --keep; prints fds, RSS and the cycle rate.
#
# Runs tests/integration/load-cycles.sh with UG_LOAD_CYCLES (default 1000)
# and prints its figures; the rate is cycles per second of the whole cycle
# phase, for comparison between runs on the same machine (no assertion on
# time). In a --enable-sanitizers build the tools also run under
# LeakSanitizer; UG_LOAD_VALGRIND=1 runs them under valgrind instead (give it
# a smaller UG_LOAD_CYCLES). From a build dir: make bench-load, or
#   UG_SRCDIR=.. UG_BUILDDIR=. sh ../bench/bench-load-cycles.sh
UG_SRCDIR=${UG_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
UG_BUILDDIR=${UG_BUILDDIR:-$(pwd)}
UG_LOAD_CYCLES=${UG_LOAD_CYCLES:-1000}
export UG_SRCDIR UG_BUILDDIR UG_LOAD_CYCLES
t0=$(date +%s.%N)
out=$(sh "$UG_SRCDIR/tests/integration/load-cycles.sh")
rc=$?
t1=$(date +%s.%N)
printf '%s\n' "$out" | grep -E '^(not ok|ok|# (usbredirsrv|usbdump|slow))'
awk -v a="$t0" -v b="$t1" -v n="$UG_LOAD_CYCLES" \
	'BEGIN { printf "whole run %.1f s for 2 x %d cycles and a 256 MiB slow consumer\n", b - a, n }'
printf '%s\n' "$out" | grep -q '^not ok' && exit 1
exit $rc
