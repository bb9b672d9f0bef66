#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# run-fuzz.sh: runs libFuzzer targets one after another, seeded with their corpus, and prints libFuzzer's final stats.
#
# Usage (from a build dir configured with CC=clang --enable-sanitizers
# --enable-libfuzzer): sh ../tests/hostile/run-fuzz.sh SECONDS WORKDIR TARGET...
# TARGET is a corpus name (usbredir, spice, ...). New inputs go to
# WORKDIR/TARGET-new, never into the committed corpus; crashes go to
# WORKDIR/TARGET-crash-*. One target at a time, one process each: the
# machine's cores are shared.
set -u
secs=$1
work=$2
shift 2
src=${UG_SRCDIR:-$(dirname "$0")/../..}
mkdir -p "$work"
for t in "$@"; do
	bin=tests/fuzz/fuzz-$t-lf
	[ -x "$bin" ] || { echo "$t: $bin not built"; continue; }
	mkdir -p "$work/$t-new"
	start=$(date -u +%H:%M:%S)
	"$bin" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=30 \
		-artifact_prefix="$work/$t-crash-" "$work/$t-new" "$src/tests/fuzz/corpus/$t" \
		>"$work/$t.log" 2>&1
	rc=$?
	echo "$t: start $start end $(date -u +%H:%M:%S) exit $rc"
	grep -E '^#[0-9]+.*(DONE|cov:)' "$work/$t.log" | tail -n 1
	grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/$t.log"
	ls "$work" | grep -E "^$t-crash-" || true
done
