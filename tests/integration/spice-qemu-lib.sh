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
# A probe that died must not take the script with it when a command is
# written to its FIFO: the write fails instead, and the checks say why.
trap '' PIPE

. "${UG_SRCDIR:-..}/tests/vm/wait.sh"

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

# free_port: a port no socket uses, below the kernel's ephemeral range
# (32768 and up), so that no outgoing connection of a parallel test takes it
# before QEMU binds it.
free_port() {
	while :; do
		p=$(shuf -i 20000-32767 -n 1)
		if [ -z "$(ss -Htan "sport = :$p")" ]; then
			echo "$p"
			return
		fi
	done
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

# running NAME: QEMU NAME's monitor answers and the VM runs.
running() { hmp "$1" "info status" 2>/dev/null | grep -q "running"; }

# start_qemu NAME SPICE-OPTIONS [EXTRA QEMU ARGS]: a SeaBIOS-only VM with two
# usb-redir devices on spicevmc chardevs behind qemu-xhci, QMP on
# $tmp/NAME.mon, output in $tmp/NAME.qemu.log; returns once it runs and its
# SPICE port(s) listen (60 s), else says why in a TAP comment.
start_qemu() {
	name=$1
	spice=$2
	shift 2
	timeout 300 qemu-system-x86_64 -machine pc -accel tcg -m 128 -nographic -nodefaults \
		-qmp "unix:$tmp/$name.mon,server=on,wait=off" \
		-spice "$spice" "$@" \
		-device qemu-xhci,id=xhci \
		-chardev spicevmc,name=usbredir,id=ur0 -device usb-redir,chardev=ur0,bus=xhci.0,id=redir0 \
		-chardev spicevmc,name=usbredir,id=ur1 -device usb-redir,chardev=ur1,bus=xhci.0,id=redir1 \
		>"$tmp/$name.qemu.log" 2>&1 &
	pids="$pids $!"
	eval "qemu_pid_$name=$!"
	why=""
	for port in $(printf '%s\n' "$spice" | tr ',' '\n' | sed -n 's/^\(tls-\)\{0,1\}port=//p'); do
		ug_wait_listen "$port" 60 || { why="does not listen on SPICE port $port after 60 s"; break; }
	done
	[ -n "$why" ] || ug_wait 10 running "$name" || why="does not run"
	[ -z "$why" ] && return 0
	echo "# QEMU $name $why:"
	sed 's/^/#   /' "$tmp/$name.qemu.log" | tail -n 10
	return 1
}
