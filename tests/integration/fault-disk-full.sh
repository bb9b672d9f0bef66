#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-disk-full.sh: usbdump's outputs hit ENOSPC (a 16 KiB tmpfs, /dev/full): documented exit, the proxy keeps forwarding, what was written reads in tshark.
#
# The tmpfs lives in a private mount namespace (unshare -m, needs root: the
# test says SKIP loudly without it). The capture is the real storage session
# of tests/data; the proxy case plays the real SeaBIOS keyboard session
# through usbdump with -w /dev/full.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

H=$UG_SRCDIR/tests/hostile
TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
DUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
CAP=$UG_SRCDIR/tests/data/usbredir-storage.pcap
[ -x "$DUMP" ] || tap_bail "usbdump is not built"
command -v tshark >/dev/null || tap_bail "tshark is missing"
tap_plan 8

san() { ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$1"; }
# records FILE: how many records tshark reads from FILE (even if the last is cut).
records() { tshark -r "$1" -T fields -e frame.number 2>/dev/null | wc -l; }

# 1. -w on a full tmpfs: the usbmon pcap stops, the run says so and exits 1.
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	d=$W/full
	mkdir -p "$d/m"
	# The tmpfs vanishes with the namespace: copy what was written out of it.
	unshare -m sh -c "mount -t tmpfs -o size=16k ug-full '$d/m' || exit 1
		timeout 60 '$DUMP' -q -r '$CAP' -w '$d/m/o.pcap' >'$d/log' 2>&1
		echo \$? >'$d/rc'
		cp '$d/m/o.pcap' '$d/o.pcap'"
	rc=$(cat "$d/rc" 2>/dev/null)
	tap_is "-w on a full 16 KiB tmpfs: usbdump exits 1 (usbdump(1): an output could not be written)" "$rc" 1
	if grep -qE 'error: usbmon pcap.*/m/o\.pcap: pcap write after [0-9]+ records: No space left on device' "$d/log" &&
		san "$d/log"; then
		tap_ok "the message names the usbmon pcap's path, the records written and ENOSPC"
	else
		tap_fail "the message names the usbmon pcap's path, the records written and ENOSPC" "$(cat "$d/log")"
	fi
	said=$(sed -n 's/.* \([0-9][0-9]*\) usbmon records written.*/\1/p' "$d/log")
	got=$(records "$d/o.pcap")
	# The file ends with the last whole record: tshark reads it without error.
	if [ -n "$said" ] && [ "$got" = "$said" ] && tshark -r "$d/o.pcap" >/dev/null 2>"$d/tshark.err"; then
		tap_ok "tshark reads the $got whole records written before the disk filled, without error"
	else
		tap_fail "tshark reads the records written before the disk filled, without error" \
			"tshark $got, usbdump $said" "$(cat "$d/tshark.err" 2>/dev/null)"
	fi
else
	tap_skip "-w on a full tmpfs" "needs root and unshare -m for a private tmpfs"
	tap_skip "the message names the usbmon pcap" "needs root"
	tap_skip "tshark reads the records written" "needs root"
fi

# 2. --raw to /dev/full, -w to a real file: the pcap is complete all the same.
timeout 60 "$DUMP" -q -r "$CAP" -w "$W/ok.pcap" --raw /dev/full >"$W/raw.log" 2>&1
rc=$?
tap_is "--raw /dev/full: exit 1" "$rc" 1
if grep -qE 'raw record /dev/full: .*([Nn]o space left|error)' "$W/raw.log" && san "$W/raw.log"; then
	tap_ok "the message names the raw record /dev/full"
else
	tap_fail "the message names the raw record /dev/full" "$(cat "$W/raw.log")"
fi
if tshark -r "$W/ok.pcap" >/dev/null 2>"$W/ok.err"; then
	tap_ok "the other output is complete: tshark reads it cleanly ($(records "$W/ok.pcap") records)"
else
	tap_fail "the other output is complete" "$(cat "$W/ok.err")"
fi

# 3. The proxy with -w /dev/full keeps forwarding every byte and exits 1.
d=$W/proxy
mkdir -p "$d"
python3 "$H/proxy-peer.py" streams "$UG_SRCDIR" clean "$d"
python3 "$H/proxy-peer.py" host "$d/hport" "$d/h2g" "$d/host-got" </dev/null >"$d/host.log" 2>&1 &
hpid=$!
i=0
while [ ! -s "$d/hport" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
lport=$(ug_free_port)
timeout -k 2 60 "$DUMP" --listen "127.0.0.1:$lport" --connect "127.0.0.1:$(cat "$d/hport")" \
	-q -w /dev/full </dev/null >"$d/usbdump.log" 2>&1 &
dpid=$!
ug_wait_listen "$lport" 30 || :
python3 "$H/proxy-peer.py" guest "$lport" "$d/g2h" "$d/guest-got" "$(stat -c %s "$d/h2g")" \
	</dev/null >"$d/guest.log" 2>&1
wait "$dpid"
rc=$?
wait "$hpid"
a=$(sha256sum <"$d/host-got" | cut -c1-64)$(sha256sum <"$d/guest-got" | cut -c1-64)
b=$(sha256sum <"$d/g2h" | cut -c1-64)$(sha256sum <"$d/h2g" | cut -c1-64)
tap_is "proxy with -w /dev/full: both directions forwarded unchanged (sha256)" "$a" "$b"
if [ "$rc" = 1 ] && grep -qE 'usbmon pcap' "$d/usbdump.log" && san "$d/usbdump.log"; then
	tap_ok "proxy with -w /dev/full: exit 1 after the session, the message names the pcap"
else
	tap_fail "proxy with -w /dev/full: exit 1 after the session" "exit $rc" "$(cat "$d/usbdump.log")"
fi
