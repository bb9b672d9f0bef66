# SPDX-License-Identifier: LGPL-2.1-or-later
# spice-qemu-lib.sh: what spice-qemu.sh and spice-stream-qemu.sh share: TAP counters, cleanup of what they started, waits, HMP.
#
# Source it with tmp set to the test's scratch directory (mktemp -d); PIDs
# the test starts go into $pids, and the EXIT trap kills them. UG_KEEP=1
# keeps $tmp for a look afterwards.

pids=""
n=0
failed=0

cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "${UG_KEEP:-}" ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT INT TERM

ok() { n=$((n + 1)); echo "ok $n - $1"; }
# not_ok NAME [FILE...]: the last 25 lines of each FILE go with it.
not_ok() {
	n=$((n + 1))
	echo "not ok $n - $1"
	failed=1
	shift
	for f in "$@"; do
		[ -f "$f" ] && sed 's/^/#   /' "$f" | tail -n 25
	done
}
# check NAME COMMAND... [-- FILES TO SHOW ON FAILURE]: COMMAND is eval'ed.
check() {
	name=$1
	shift
	cmd=""
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		cmd="$cmd $1"
		shift
	done
	[ $# -gt 0 ] && shift
	if eval "$cmd"; then ok "$name"; else not_ok "$name" "$@"; fi
}

# require TOOL...: one failing test (the peer is missing) unless all are here.
require() {
	for t in "$@"; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "1..1"
			echo "not ok 1 - $t is missing (scripts/setup installs it)"
			exit 1
		fi
	done
}
# require_built FILE...: one failing test unless every FILE is built.
require_built() {
	for b in "$@"; do
		if [ ! -x "$b" ]; then
			echo "1..1"
			echo "not ok 1 - $b is not built"
			exit 1
		fi
	done
}

free_port() {
	while :; do
		p=$(shuf -i 20000-60000 -n 1)
		if [ -z "$(ss -Htln "sport = :$p")" ]; then
			echo "$p"
			return
		fi
	done
}

# wait_for FILE PATTERN SECONDS: until a line of FILE matches (grep -E).
wait_for() {
	i=0
	while [ "$i" -lt $(($3 * 10)) ]; do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# wait_count FILE PATTERN N SECONDS: until at least N lines of FILE match.
wait_count() {
	i=0
	while [ "$i" -lt $(($4 * 10)) ]; do
		[ "$(grep -Ec "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# hmp NAME COMMAND: one HMP command through the QMP socket $tmp/NAME.mon
# (QEMU's -qmp unix:$tmp/NAME.mon,server=on,wait=off): the whole answer,
# however slow, without CRs.
hmp() {
	timeout 30 python3 "${UG_SRCDIR:-..}/tests/vm/ugvm.py" qmp "$tmp/$1.mon" "$2" | tr -d '\r'
}

# usb_speed NAME ID: the speed HMP shows for usb-redir device ID.
usb_speed() {
	hmp "$1" "info usb" | sed -n "s/.*Speed \([0-9.]*\) Mb\/s.*ID: $2\$/\1/p"
}

# wait_running NAME: until QEMU NAME's monitor answers and the VM runs (10 s).
wait_running() {
	i=0
	while [ "$i" -lt 100 ]; do
		hmp "$1" "info status" 2>/dev/null | grep -q "running" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
