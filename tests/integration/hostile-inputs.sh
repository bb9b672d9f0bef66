#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# hostile-inputs.sh: runs every row of tests/hostile/TABLE: documented exit code, clear message, no crash, bounded memory and time.
#
# Environment:
#   UG_TOOLS_DIR     build tree whose tools run (default UG_BUILDDIR), e.g. a
#                    clang --enable-sanitizers build: then ASan's own limits
#                    replace prlimit (ASan reserves terabytes of address
#                    space) and any sanitizer report fails the row.
#   UG_HOSTILE_TABLE another table of the same format (tests/hostile/pending/TABLE
#                    to check whether pending findings are fixed).
#   UG_HOSTILE_MEM   address-space limit in MiB (default 512).
# Each row runs under timeout 20 s; a signal, a timeout or a sanitizer report
# fails it whatever the exit code.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

H=$UG_SRCDIR/tests/hostile
TABLE=${UG_HOSTILE_TABLE:-$H/TABLE}
TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
MEM=${UG_HOSTILE_MEM:-512}
W=$UG_VM_WORK
LONGPATH=$(printf 'a%.0s' $(seq 1 200))

asan=0
grep -q -- '-fsanitize=address' "$TOOLS/Makefile" 2>/dev/null && asan=1

tool_path() {
	case $1 in
	usbdump) echo "$TOOLS/usbdump/usbdump" ;;
	usbredirsrv) echo "$TOOLS/usbredirsrv/usbredirsrv" ;;
	usbreplay) echo "$TOOLS/usbreplay/usbreplay" ;;
	spice-stream-tool) echo "$TOOLS/tests/integration/spice-stream-tool" ;;
	*) echo "" ;;
	esac
}

trim() { printf '%s' "$1" | sed 's/^ *//; s/ *$//'; }

rows=$(grep -E '^[a-z][0-9]+ *\|' "$TABLE")
tap_plan "$(printf '%s\n' "$rows" | grep -c .)"
[ $asan = 1 ] && tap_diag "tools from $TOOLS (sanitizer build: ASan limits instead of prlimit)"

while IFS='|' read -r id cmd input code re; do
	id=$(trim "$id")
	# An empty table (no pending rows) still yields one empty line here.
	[ -n "$id" ] || continue
	cmd=$(trim "$cmd")
	input=$(trim "$input")
	code=$(trim "$code")
	re=$(trim "$re")
	out=$W/$id
	mkdir -p "$out"
	peer=""
	port=""
	case $input in
	-) in="" ;;
	inputs/*|pending/*) in=$H/$input ;;
	data/*) in=$UG_SRCDIR/tests/$input ;;
	peer-spice:*)
		in=$H/${input#peer-spice:}
		python3 "$H/peer.py" serve "$in" "$out/port" spice </dev/null >"$out/peer.log" 2>&1 &
		peer=$!
		i=0
		while [ ! -s "$out/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		port=$(cat "$out/port" 2>/dev/null)
		;;
	guest:*)
		# A hostile usb-guest: connects (retrying) to the port the tool listens on.
		in=$H/${input#guest:}
		port=$(ug_free_port)
		python3 "$H/peer.py" send "$port" "$in" </dev/null >"$out/peer.log" 2>&1 &
		peer=$!
		;;
	*) in=$input ;;
	esac
	# Placeholders are replaced word by word, so paths with spaces stay one word.
	set -f
	set -- $cmd
	set +f
	bin=$(tool_path "$1")
	shift
	if [ -z "$bin" ] || [ ! -x "$bin" ]; then
		tap_fail "$id: $cmd" "tool not built: $bin"
		[ -n "$peer" ] && kill "$peer" 2>/dev/null
		continue
	fi
	for a; do
		a=$(printf '%s' "$a" | sed -e "s|@IN@|$in|g" -e "s|@OUT@|$out|g" -e "s|@PORT@|$port|g" \
			-e "s|@DATA@|$UG_SRCDIR/tests/data|g" -e "s|@LONGPATH@|$LONGPATH|g")
		set -- "$@" "$a"
		shift
	done
	if [ $asan = 1 ]; then
		ASAN_OPTIONS="malloc_limit_mb=$MEM:allocator_may_return_null=0:detect_leaks=1:abort_on_error=0" \
			timeout -k 2 20 "$bin" "$@" </dev/null >"$out/out" 2>&1
	else
		timeout -k 2 20 prlimit --as=$((MEM * 1024 * 1024)) -- "$bin" "$@" </dev/null >"$out/out" 2>&1
	fi
	rc=$?
	[ -n "$peer" ] && { kill "$peer" 2>/dev/null; wait "$peer" 2>/dev/null; }
	why=""
	if [ $rc -ge 124 ]; then
		why="exit $rc: timeout or signal"
	elif grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|MemorySanitizer' "$out/out"; then
		why="sanitizer report"
	elif [ "$rc" != "$code" ]; then
		why="exit $rc, want $code"
	elif ! grep -qE -- "$re" "$out/out"; then
		why="message does not match /$re/"
	fi
	if [ -z "$why" ]; then
		tap_ok "$id: $input: exit $rc"
	else
		tap_fail "$id: $input: $cmd" "$why" "$(head -c 1500 "$out/out")"
	fi
done <<EOF
$rows
EOF
