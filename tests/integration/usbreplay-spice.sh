#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-spice.sh: usbreplay --spice plays the recorded flash drive into a SeaBIOS-only QEMU's SPICE usbredir channel.
#
# No guest OS: QEMU with SeaBIOS, qemu-xhci, SPICE and a spicevmc usb-redir,
# started paused so that the device is there before SeaBIOS scans USB (a
# system_reset would close the spicevmc channel). usbreplay links through the
# library's SPICE client; after "cont" HMP "info usb" must show the
# redirected device attached at the recorded speed (QEMU names a redirected
# device "USB Redirection Device" whatever it is), and SeaBIOS's enumeration
# must be answered from the recording (the JSON report counts it).
# Several VMs under TCG: allow for a loaded machine.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-240}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"

tap_plan 7
[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built"
command -v "$UG_QEMU" >/dev/null || tap_bail "$UG_QEMU is missing"
cap=$UG_SRCDIR/tests/data/storage.raw.pcap
d=$(vm_dir bios)
mkdir -p "$d"
sp=$(ug_free_port)
# vm_qmp talks to lib.sh's short socket path for a VM of this name.
qmp=$_ug_sockdir/bios.qmp
timeout -k 5 120 "$UG_QEMU" -S -accel tcg -m 64 -nodefaults -no-user-config -display none -no-reboot \
	-device qemu-xhci,id=xhci -spice "port=$sp,addr=127.0.0.1,disable-ticketing=on" \
	-chardev spicevmc,name=usbredir,id=ur -device usb-redir,chardev=ur,id=redir0,bus=xhci.0 \
	-qmp "unix:$qmp,server=on,wait=off" -pidfile "$d/qemu.pid" \
	>"$d/qemu.out" 2>"$d/qemu.err" &
echo $! >"$d/pid"
i=0
while [ ! -S "$qmp" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
before=$(vm_info_usb bios)
tap_check "idle usb-redir before usbreplay (${before:-no answer})" \
	sh -c "printf '%s' '$before' | grep -q 'Speed 1.5 Mb/s.*USB Redirection Device'"

ug_spawn replay 100 sh -c '"$0" "$@" >"'"$UG_VM_WORK"'/replay.json"; echo $? >"'"$UG_VM_WORK"'/replay.rc"' \
	"$UR_BIN" -vv --json --spice "spice://127.0.0.1:$sp" "$cap"
# The usbredir channel's own line: with -vv the main channel's link is
# logged first. QEMU sends its usbredir hello only once the VM runs.
ug_wait_match "$UG_VM_WORK/replay.log" 'usbredir channel [0-9]+: linked' 30
tap_check "usbreplay linked the SPICE usbredir channel" \
	grep -q -E 'usbredir channel [0-9]+: linked' "$UG_VM_WORK/replay.log"
sleep 1
vm_hmp bios cont >/dev/null
info=$(vm_wait_usb bios 'Speed 5000 Mb/s' 30)
tap_check "HMP info usb: the replayed flash drive is attached at 5000 Mb/s ($info)" \
	sh -c "printf '%s' '$info' | grep -q 'Speed 5000 Mb/s, Product USB Redirection Device, ID: redir0'"
tap_check "usbreplay -v says when it offered the device (after QEMU's hello)" \
	grep -q -E 'guest hello: device 46f4:0001 offered' "$UG_VM_WORK/replay.log"
i=0
while [ $i -lt 40 ] && [ "$(grep -c 'request [0-9]*:' "$UG_VM_WORK/replay.log")" -lt 10 ]; do
	sleep 0.5
	i=$((i + 1))
done
sleep 3
vm_hmp bios quit >/dev/null 2>&1
ug_wait_gone "$UG_VM_WORK/replay.pid" 30
json=$(cat "$UG_VM_WORK/replay.json" 2>/dev/null)
req=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["requests"])' 2>/dev/null)
matched=$(printf '%s' "$json" | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(s["matched"] + s["reused"])' 2>/dev/null)
tap_check "SeaBIOS's requests reached usbreplay (${req:-none})" test "${req:-0}" -gt 0
tap_check "and were answered from the recording (${matched:-none})" test "${matched:-0}" -gt 0
tap_check "the report is valid JSON with a result" \
	sh -c "printf '%s' '$json' | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"summary\"][\"result\"] in (\"matched\", \"diverged\")'"
tap_diag "$(grep -c 'answered from' "$UG_VM_WORK/replay.log") answered, $(grep -c 'no recorded transfer matches' "$UG_VM_WORK/replay.log") unmatched (SeaBIOS's SCSI commands differ from Linux's)"
