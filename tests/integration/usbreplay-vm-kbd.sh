#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-vm-kbd.sh: replays the recorded keyboard (tests/data/kbd.raw.pcap) to a fresh consumer VM at the recorded pace.
#
# The recording holds a consumer guest typing "usbgate", Enter and Esc on
# QEMU's usb-kbd through usbredirect. Replayed with --pace recorded, the
# pushed interrupt reports must reach a fresh guest's evdev node as the same
# Linux key codes, in order. The guest's kernel starts receiving as soon as
# the keyboard is enumerated; --stream-delay holds the reports until the
# guest script holds the event device open (a few seconds after enumerating
# on a loaded machine; the test prints how long it took). This test also covers
# --connect: QEMU's usb-redir chardev is the listening side here.
# Several VMs under TCG: allow for a loaded machine.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-300}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"

tap_plan 4
[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
q=$(ug_free_port)
vm_consumer_start con --script kbd --listen "$q" || tap_bail "cannot start the consumer VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM does not reach its script"
ug_spawn replay 200 sh -c '"$0" "$@" >"'"$UG_VM_WORK"'/replay.out"; echo $? >"'"$UG_VM_WORK"'/replay.rc"' \
	"$UR_BIN" -v --pace recorded --stream-delay 12000 --connect "127.0.0.1:$q" "$UG_SRCDIR/tests/data/kbd.raw.pcap"
line=$(vm_wait_for con '^UG-ENUM' 90)
tap_is "the guest enumerates the replayed keyboard" "$(vm_field "$line" id)" 0627:0001
t_enum=$(cat "$(vm_dir con)/matched-at")
if vm_wait_for con '^UG-KBD-READY' 90 >/dev/null; then
	tap_diag "the guest held the event device open $(awk -v a="$t_enum" -v b="$(cat "$(vm_dir con)/matched-at")" \
		'BEGIN { printf "%.1f", b - a }') s after it enumerated the keyboard (--stream-delay 12 s)"
fi
line=$(vm_wait_for con '^UG-RESULT keys=' 90)
tap_is "the recorded keys arrive, in order" "$(vm_field "$line" keys)" "22,31,48,34,30,20,18,28,1"
vm_wait_for con '^UG-DONE' 30 >/dev/null
vm_wait_exit con 60 || vm_stop con
ug_wait_gone "$UG_VM_WORK/replay.pid" 30
rc=$(cat "$UG_VM_WORK/replay.rc" 2>/dev/null)
tap_check "usbreplay ended with a report (exit ${rc:-none})" test -n "$rc"
tap_check "and pushed the recorded reports" grep -q ' [1-9][0-9]* stream packets' "$UG_VM_WORK/replay.out"
tap_diag "$(tail -n 1 "$UG_VM_WORK/replay.out")"
