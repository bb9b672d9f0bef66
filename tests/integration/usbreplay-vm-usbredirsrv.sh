#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-vm-usbredirsrv.sh: replays the shipped flash drive's guest (recorded through usbredirect) against usbredirsrv.
#
# The device VM exports the same emulated usb-storage (same 1 MiB pattern
# disk) with usbgate's own usbredirsrv instead of usbredirect; usbreplay
# --guest sends the recorded guest's requests of tests/data/storage.raw.pcap
# and must find every answer as recorded (exit 0), in JSON and JUnit.
# Several VMs under TCG: allow for a loaded machine.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-300}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"

tap_plan 4
[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built"
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "usbredirsrv is not built"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
vm_disk_image "$UG_VM_WORK/disk.img" 1
vm_device_start dev --disk "$UG_VM_WORK/disk.img" --files "prog=$srv" \
	--exporter "usbredirsrv --export 46f4:0001@0.0.0.0:4000" || tap_bail "cannot start the device VM"
if vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null; then
	tap_ok "usbredirsrv listens in the device VM"
else
	tap_bail "usbredirsrv does not listen in the device VM"
fi
timeout 120 "$UR_BIN" --guest --json --junit "$UG_VM_WORK/guest.xml" \
	--connect "127.0.0.1:$(vm_port dev)" "$UG_SRCDIR/tests/data/storage.raw.pcap" \
	>"$UG_VM_WORK/guest.json" 2>"$UG_VM_WORK/guest.err"
rc=$?
tap_is "usbreplay --guest against usbredirsrv: no divergence (exit 0)" "$rc" 0
[ $rc = 0 ] || tap_diag "$(cat "$UG_VM_WORK/guest.err")" "$(head -c 2000 "$UG_VM_WORK/guest.json")"
n=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["matched"] if s["completed"] else -1)' \
	"$UG_VM_WORK/guest.json" 2>/dev/null)
tap_check "every recorded request was sent and answered as recorded (${n:-none})" test "${n:-0}" -gt 50
tap_check "its JUnit report has no failure" grep -q 'failures="0"' "$UG_VM_WORK/guest.xml"
vm_stop dev
