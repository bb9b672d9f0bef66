#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbdump-kbd.sh: usbdump proxies a redirected keyboard: keys arrive, HID reports decode, a full disk on one output is survived.
#
# The consumer VM's usb-redir connects through usbdump to Debian's usbredirect
# exporting QEMU's usb-kbd in the device VM. The usbmon pcap goes to a file,
# the raw record to /dev/full: usbdump must say so, keep the session working
# (the keys still reach the guest), finish the pcap, and exit 1.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

USBDUMP=$UG_BUILDDIR/usbdump/usbdump
RECS="python3 $UG_SRCDIR/tests/integration/usbmon-records.py"
W=$UG_VM_WORK
tap_plan 9
t_start=$(ug_now)

[ -x "$USBDUMP" ] || tap_bail "usbdump not built ($USBDUMP)"
command -v tshark >/dev/null || tap_bail "tshark is missing (Debian package tshark)"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

keys="u s b g a t e 1 2 ret"
want_codes="22,31,48,34,30,20,18,2,3,28,1"

vm_device_start dev --id 0627:0001 || tap_bail "cannot start the device VM"
vm_consumer_start con --script kbd || tap_bail "cannot start the consumer VM"
pport=$(ug_free_port)
ug_spawn usbdump 300 sh -c "exec '$USBDUMP' --listen $pport --connect 127.0.0.1:$(vm_port dev) \
	-w '$W/kbd.pcap' --raw /dev/full --json >'$W/kbd.json'"

vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_fail "usbredirect listens in the device VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_fail "consumer VM reaches its test script"
vm_redir_attach con "$pport" || tap_fail "usb-redir hot-plugged into the consumer VM"

if vm_wait_for con '^UG-KBD-READY' 90 >/dev/null; then
	tap_ok "the consumer guest opened the redirected keyboard through usbdump"
else
	tap_fail "the consumer guest opened the redirected keyboard through usbdump"
fi
# shellcheck disable=SC2086 # one argument per key
vm_type dev con $keys esc >/dev/null
line=$(vm_wait_for con '^UG-RESULT keys=' 60)
tap_is "the keys arrive in order although an output failed" "$(vm_field "$line" keys)" "$want_codes"
if grep -q 'raw record /dev/full: .*[Nn]o space left' "$W/usbdump.log"; then
	tap_ok "usbdump names the full output"
else
	tap_fail "usbdump names the full output" "$(cat "$W/usbdump.log")"
fi

vm_wait_exit con 60 || vm_stop con
for _ in $(seq 100); do kill -0 "$(cat "$W/usbdump.pid")" 2>/dev/null || break; sleep 0.1; done
wait "$(cat "$W/usbdump.pid")" 2>/dev/null
tap_is "usbdump exits 1 (an output failed) after the session" "$?" 1
tap_diag "usbdump said:" "$(cat "$W/usbdump.log")"

tcount() {
	if tshark -r "$1" -Y "$2" -T fields -e frame.number >"$W/tc.out" 2>"$W/tc.err"; then
		wc -l <"$W/tc.out"
	else
		echo "tshark-failed: $(grep -v 'Running as user' "$W/tc.err" | head -2)"
	fi
}
tap_is "tshark: no malformed frames" "$(tcount "$W/kbd.pcap" _ws.malformed)" 0
set -- $($RECS pairs "$W/kbd.pcap")
tap_is "every completion has its submit ($1 submits, $2 completions)" "$3" 0
n=$(tcount "$W/kbd.pcap" 'usb.bDescriptorType == 0x01 && usb.idVendor == 0x0627')
m=$(tcount "$W/kbd.pcap" 'usb.bDescriptorType == 0x02 && usb.bInterfaceClass == 0x03')
if [ "$n" -gt 0 ] 2>/dev/null && [ "$m" -gt 0 ] 2>/dev/null; then
	tap_ok "device ($n) and HID configuration ($m) descriptors decode"
else
	tap_fail "device and HID configuration descriptors decode" "device $n, configuration $m"
fi
# Each key is a press and a release report; all 11 keys must be there.
n=$(tcount "$W/kbd.pcap" 'usbhid.data || usbhid.boot_report.keyboard.keycode_1 || usbhid.data.array')
if [ "$n" -ge 22 ] 2>/dev/null; then
	tap_ok "HID reports decoded ($n frames)"
else
	tap_fail "HID reports decoded" "$n frames"
fi
comp=$($RECS list "$W/kbd.pcap" | grep -c '^C')
pk=$(grep -c '"dir":"h2g","type":"\(control_packet\|bulk_packet\|iso_packet\|interrupt_packet\|buffered_bulk_packet\|configuration_status\|alt_setting_status\)"' "$W/kbd.json")
tap_is "transfers in the pcap equal decoded host->guest data/status packets in --json" "$comp" "$pk"

vm_wait_exit dev 60 || vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
