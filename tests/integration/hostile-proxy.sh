#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# hostile-proxy.sh: usbdump's proxy between a hostile usb-guest and a usb-host on loopback: every byte forwarded, documented exit, readable pcap.
#
# For each case of tests/hostile/proxy-peer.py (the real SeaBIOS keyboard
# session, then noise, a 0xffffffff length with 1 MiB behind it, a close in
# the middle of a packet, a hostile host side), checks that the sha256 of
# what each end received equals what the other sent, that usbdump exits with
# the code usbdump(1) documents and says where decoding failed, that its peak
# RSS stays under 64 MiB, and that tshark reads the pcap it wrote.
# UG_TOOLS_DIR selects another build tree's usbdump (a sanitizer build).
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

H=$UG_SRCDIR/tests/hostile
TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
DUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
[ -x "$DUMP" ] || tap_bail "usbdump is not built"
command -v tshark >/dev/null || tap_bail "tshark is missing"

# case | expected exit | message regex
cases='clean|0|1 session, [0-9]+ usbredir packets
junk|4|session 1: guest->host offset 80: .*
huge-length|4|guest->host offset 80: packet type 101 claims 4294967295 bytes, limit 134218752
mid-packet|4|guest->host: the stream ends inside a packet: 9 bytes after offset 80 were not decoded
host-huge-length|4|host->guest offset [0-9]+: packet type 100 claims 4294967295 bytes, limit 134218752'

tap_plan 25

sha() { sha256sum <"$1" | cut -c1-64; }

# peak_rss PID FILE: samples VmHWM of PID into FILE until it exits.
peak_rss() {
	while [ -r "/proc/$1/status" ]; do
		_v=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null)
		[ -n "$_v" ] && echo "$_v" >"$2"
		sleep 0.05
	done
}

while IFS='|' read -r name want re; do
	d=$W/$name
	mkdir -p "$d"
	python3 "$H/proxy-peer.py" streams "$UG_SRCDIR" "$name" "$d"
	python3 "$H/proxy-peer.py" host "$d/hport" "$d/h2g" "$d/host-got" </dev/null \
		>"$d/host.log" 2>&1 &
	hpid=$!
	i=0
	while [ ! -s "$d/hport" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	lport=$(ug_free_port)
	timeout -k 2 60 "$DUMP" --listen "127.0.0.1:$lport" --connect "127.0.0.1:$(cat "$d/hport")" \
		-q -w "$d/out.pcap" --raw "$d/out.raw" </dev/null >"$d/usbdump.log" 2>&1 &
	dpid=$!
	ug_wait_listen "$lport" 30 || :
	# The wrapper script execs the binary, so timeout's child is usbdump.
	upid=$(pgrep -P "$dpid" | head -n 1)
	[ -n "$upid" ] && peak_rss "$upid" "$d/hwm" &
	python3 "$H/proxy-peer.py" guest "$lport" "$d/g2h" "$d/guest-got" "$(stat -c %s "$d/h2g")" \
		</dev/null >"$d/guest.log" 2>&1
	wait "$dpid"
	rc=$?
	wait "$hpid"
	tap_is "$name: the usb-host received every guest byte unchanged ($(stat -c %s "$d/g2h") bytes)" \
		"$(sha "$d/host-got")" "$(sha "$d/g2h")"
	tap_is "$name: the usb-guest received every host byte unchanged ($(stat -c %s "$d/h2g") bytes)" \
		"$(sha "$d/guest-got")" "$(sha "$d/h2g")"
	if [ "$rc" = "$want" ] && grep -qE -- "$re" "$d/usbdump.log" &&
		! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$d/usbdump.log"; then
		tap_ok "$name: usbdump exits $rc as documented, with its message"
	else
		tap_fail "$name: usbdump exits $want with /$re/" "exit $rc" "$(head -c 1500 "$d/usbdump.log")"
	fi
	hwm=$(cat "$d/hwm" 2>/dev/null || echo 0)
	if [ "$hwm" -gt 0 ] && [ "$hwm" -lt 65536 ]; then
		tap_ok "$name: usbdump's peak RSS $hwm kB (< 64 MiB)"
	else
		tap_fail "$name: usbdump's peak RSS $hwm kB (want 0 < x < 64 MiB; 0: not sampled)"
	fi
	if tshark -r "$d/out.pcap" >"$d/tshark.txt" 2>"$d/tshark.err"; then
		tap_ok "$name: tshark reads the pcap ($(wc -l <"$d/tshark.txt") records)"
	else
		tap_fail "$name: tshark reads the pcap" "$(head -n 5 "$d/tshark.err")"
	fi
done <<EOF
$cases
EOF
