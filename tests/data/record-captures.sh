#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# record-captures.sh: records the shipped captures on the VM rig (usb-storage and usb-kbd through usbredirect).
#
# Run from a build dir: UG_SRCDIR=.. UG_BUILDDIR=. sh ../tests/data/record-captures.sh OUTDIR
# Writes OUTDIR/storage.raw.pcap, storage.usbmon.pcap, kbd.raw.pcap, kbd.usbmon.pcap.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"
out=${1:?usage: record-captures.sh OUTDIR}
mkdir -p "$out"
tap_plan 2
ur_build_proxy || tap_bail "cannot build the recording proxy"
vm_guest || tap_bail "cannot build the guest"

# 1. The flash drive: a 1 MiB pattern disk, enumerated, read whole once
#    (sha256) by the consumer guest.
vm_disk_image "$UG_VM_WORK/disk.img" 1
vm_device_start dev --disk "$UG_VM_WORK/disk.img"
vm_consumer_start con --script storage --env UG_READS=0
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "exporter"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "consumer"
p=$(ug_free_port)
ug_spawn proxy 200 "$UG_VM_WORK/ug-recproxy" "127.0.0.1:$p" "127.0.0.1:$(vm_port dev)" \
	"$out/storage.raw.pcap" "$out/storage.usbmon.pcap"
ug_wait_match "$UG_VM_WORK/proxy.log" 'listening' 10 || tap_bail "proxy"
vm_redir_attach con "$p"
line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_diag "$line"
vm_wait_for con '^UG-DONE' 60 >/dev/null
vm_wait_exit con 60 || vm_stop con
ug_wait_gone "$UG_VM_WORK/proxy.pid" 20
vm_stop dev
tap_check "storage recorded" test -s "$out/storage.raw.pcap"

# 2. The keyboard: typed "usbgate" and Enter, then Esc ends the guest script.
vm_device_start dev2 --id 0627:0001
vm_consumer_start con2 --script kbd
vm_wait_for dev2 '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "exporter 2"
vm_wait_for con2 '^UG-RUN start' 120 >/dev/null || tap_bail "consumer 2"
p=$(ug_free_port)
ug_spawn proxy2 200 "$UG_VM_WORK/ug-recproxy" "127.0.0.1:$p" "127.0.0.1:$(vm_port dev2)" \
	"$out/kbd.raw.pcap" "$out/kbd.usbmon.pcap"
ug_wait_match "$UG_VM_WORK/proxy2.log" 'listening' 10 || tap_bail "proxy 2"
vm_redir_attach con2 "$p"
vm_wait_for con2 '^UG-KBD-READY' 90 >/dev/null
for k in u s b g a t e ret esc; do vm_sendkey dev2 "$k" >/dev/null; done
line=$(vm_wait_for con2 '^UG-RESULT keys=' 60)
tap_diag "$line"
vm_wait_exit con2 60 || vm_stop con2
ug_wait_gone "$UG_VM_WORK/proxy2.pid" 20
vm_stop dev2
tap_check "keyboard recorded" test -s "$out/kbd.raw.pcap"
ls -l "$out" | sed 's/^/# /'
