#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-spice-restart.sh: the SPICE server (QEMU) dies in the middle of usbreplay --spice's session and comes back.
#
# QEMU with SeaBIOS only, SPICE on 127.0.0.1 and a spicevmc usb-redir (as
# usbreplay-spice.sh). usbreplay --spice plays the recorded flash drive;
# once SeaBIOS's requests are being answered, QEMU is killed (SIGKILL: a
# crashed server, nothing said on the wire). usbreplay has no reconnect
# option (usbreplay(1)), so it must notice, say so and end with a documented
# exit code (0, 1 or 4) within 30 s, without a sanitizer report. Then QEMU
# starts again on the same port and a second usbreplay attaches the device
# there: nothing the first run left behind gets in the way.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
UR=$TOOLS/usbreplay/usbreplay
W=$UG_VM_WORK
cap=$UG_SRCDIR/tests/data/storage.raw.pcap
[ -x "$UR" ] || tap_bail "usbreplay is not built"
command -v "$UG_QEMU" >/dev/null || tap_bail "$UG_QEMU is missing"
tap_plan 7
sp=$(ug_free_port)

# qemu_start N: QEMU number N (paused, so the device is attached before SeaBIOS scans).
qemu_start() {
	_d=$W/q$1
	mkdir -p "$_d"
	timeout -k 5 150 "$UG_QEMU" -S -accel tcg -m 64 -nodefaults -no-user-config -display none \
		-no-reboot -device qemu-xhci,id=xhci -spice "port=$sp,addr=127.0.0.1,disable-ticketing=on" \
		-chardev spicevmc,name=usbredir,id=ur -device usb-redir,chardev=ur,id=redir0,bus=xhci.0 \
		-monitor "unix:$_d/mon.sock,server=on,wait=off" -pidfile "$_d/qemu.pid" \
		>"$_d/qemu.out" 2>"$_d/qemu.err" &
	echo $! >"$_d/tpid"
	ug_on_exit "kill \$(cat '$_d/qemu.pid' 2>/dev/null) 2>/dev/null"
	_i=0
	while [ ! -S "$_d/mon.sock" ] && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
}
hmp() { printf '%s\n' "$2" | timeout 10 python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(2)
def drain():
    out = b""
    try:
        while True:
            p = s.recv(65536)
            if not p: break
            out += p
            if out.endswith(b"(qemu) "): break
    except socket.timeout: pass
    return out
drain(); s.sendall(sys.stdin.read().encode()); sys.stdout.write(drain().decode(errors="replace"))' "$W/q$1/mon.sock"; }
# replay N: usbreplay number N into the server, in the background.
replay() {
	timeout -k 5 120 "$UR" -vv --spice "spice://127.0.0.1:$sp" "$cap" </dev/null \
		>"$W/replay$1.out" 2>"$W/replay$1.log" &
	echo $! >"$W/replay$1.pid"
}
# The usbredir channel's link (with -vv the main channel's is logged first).
linked='usbredir channel [0-9]+: linked'
attached() {
	_i=0
	while [ $_i -lt 60 ]; do
		hmp "$1" "info usb" | grep -q 'Speed 5000 Mb/s.*USB Redirection Device' && return 0
		sleep 0.5
		_i=$((_i + 1))
	done
	return 1
}

qemu_start 1
replay 1
ug_wait_match "$W/replay1.log" "$linked" 40 ||
	tap_bail "usbreplay never linked: $(tail -n 3 "$W/replay1.log")"
sleep 1
hmp 1 cont >/dev/null
tap_check "usbreplay's device is attached to the first QEMU" attached 1
ug_wait_match "$W/replay1.log" 'request [0-9]+:' 40
kill -KILL "$(cat "$W/q1/qemu.pid")"
t_kill=$(ug_now)
pid=$(cat "$W/replay1.pid")
wait "$pid"
rc=$?
took=$(ug_since "$t_kill")
case $rc in
0 | 1 | 4) tap_ok "usbreplay ends with a documented exit code ($rc) ${took}s after the server died" ;;
*) tap_fail "usbreplay ends with a documented exit code after the server died" "exit $rc after ${took}s" ;;
esac
if awk -v t="$took" 'BEGIN { exit !(t < 30) }'; then
	tap_ok "it noticed within 30 s (${took}s)"
else
	tap_fail "it noticed within 30 s (${took}s)"
fi
if grep -qiE 'clos|reset|lost|ended|broken' "$W/replay1.log"; then
	tap_ok "it says the connection ended ($(grep -iE 'clos|reset|lost|ended|broken' "$W/replay1.log" | tail -n 1))"
else
	tap_fail "it says the connection ended" "$(tail -n 5 "$W/replay1.log")"
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$W/replay1.log"; then
	tap_fail "no sanitizer report" "$(head -c 2000 "$W/replay1.log")"
else
	tap_ok "no sanitizer report"
fi

# The server comes back on the same port.
qemu_start 2
replay 2
if ug_wait_match "$W/replay2.log" "$linked" 40; then
	sleep 1
	hmp 2 cont >/dev/null
	tap_check "after the restart a new usbreplay attaches the device again" attached 2
else
	tap_fail "after the restart a new usbreplay attaches the device again" "$(tail -n 3 "$W/replay2.log")"
fi
hmp 2 quit >/dev/null 2>&1
pid=$(cat "$W/replay2.pid")
wait "$pid"
rc=$?
case $rc in
0 | 1) tap_ok "the second usbreplay ends with $rc when QEMU quits" ;;
*) tap_fail "the second usbreplay ends with 0 or 1 when QEMU quits" "exit $rc" "$(tail -n 3 "$W/replay2.log")" ;;
esac
tap_diag "first run said: $(tail -n 2 "$W/replay1.log")" "second run said: $(tail -n 2 "$W/replay2.log")"
