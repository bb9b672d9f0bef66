#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-vm-reset.sh: the consumer VM resets (system_reset) in the middle of a disk read through usbdump's proxy.
#
# Device VM: Debian's usbredirect exports QEMU's usb-storage (a 4 MiB pattern
# disk). Consumer VM: usb-redir through usbdump; its guest starts reading the
# whole disk, and the VM is reset while the read runs. The usbredir
# connection outlives the reset (QEMU keeps the chardev), so the rebooted
# guest must enumerate the disk again through the same usbdump session and
# read it whole with the right sha256; usbdump keeps forwarding, exits 0 when
# the session ends (QEMU cancels what was in flight, which is ordinary
# usbredir), and its pcap reads in tshark with no malformed USB framing.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
USBDUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
tap_plan 6
t_start=$(ug_now)
[ -x "$USBDUMP" ] || tap_bail "usbdump not built ($USBDUMP)"
command -v tshark >/dev/null || tap_bail "tshark is missing (Debian package tshark)"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

img=$W/disk.img
vm_disk_image "$img" 4 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)

vm_device_start dev --disk "$img" --id 46f4:0001 || tap_bail "cannot start the device VM"
vm_consumer_start con --script storage || tap_bail "cannot start the consumer VM"
pport=$(ug_free_port)
ug_spawn usbdump 240 sh -c "exec '$USBDUMP' --listen $pport --connect 127.0.0.1:$(vm_port dev) \
	-q -w '$W/reset.pcap'"
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "usbredirect never listened in the device VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM never reached its script"
vm_redir_attach con "$pport" || tap_bail "cannot hot-plug usb-redir into the consumer VM"
vm_wait_for con '^UG-DISK ' 90 >/dev/null || tap_bail "the consumer guest never saw the disk"

# The read starts right after UG-DISK: reset once 512 KiB of it went through
# usbdump (its pcap grew by that much), with most of the 4 MiB still to come.
s0=$(stat -c %s "$W/reset.pcap" 2>/dev/null || echo 0)
i=0
while [ "$(stat -c %s "$W/reset.pcap" 2>/dev/null || echo 0)" -lt $((s0 + 524288)) ] && [ $i -lt 600 ]; do
	sleep 0.05
	i=$((i + 1))
done
reads_before=$(vm_lines con '^UG-RESULT sha256=' | wc -l)
if vm_reset con 150; then
	tap_ok "the consumer VM reset during the read (sha256 lines before: $reads_before) and booted again"
else
	tap_fail "the consumer VM reset during the read and booted again"
fi
if line=$(vm_wait_count con '^UG-RESULT sha256=' $((reads_before + 1)) 150); then
	tap_is "after the reset the guest reads the whole disk through the same usbdump session" \
		"$(vm_field "$line" sha256)" "$want_sum"
else
	tap_fail "after the reset the guest reads the whole disk through the same usbdump session" \
		"$(tail -n 20 "$(vm_log con)")"
fi
vm_wait_for con '^UG-DONE' 60 >/dev/null
vm_wait_exit con 60 || vm_stop con
pid=$(cat "$W/usbdump.pid")
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid" 2>/dev/null
rc=$?
tap_is "usbdump exits 0 after the session (usbdump(1))" "$rc" 0
tap_diag "usbdump said:" "$(tail -n 5 "$W/usbdump.log")"
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$W/usbdump.log"; then
	tap_fail "no sanitizer report from usbdump" "$(head -c 2000 "$W/usbdump.log")"
else
	tap_ok "no sanitizer report from usbdump"
fi
if tshark -r "$W/reset.pcap" -T fields -e frame.number >"$W/frames" 2>"$W/tshark.err"; then
	tap_ok "tshark reads the pcap ($(wc -l <"$W/frames") records)"
else
	tap_fail "tshark reads the pcap" "$(head -n 3 "$W/tshark.err")"
fi
# SCSI payloads of QEMU's usb-storage are malformed in every faithful capture
# (testing.md, Mode Sense); what must not be malformed is the USB framing.
bad=$(tshark -r "$W/reset.pcap" -Y '_ws.malformed && !scsi' 2>/dev/null | wc -l)
tap_is "no malformed records outside SCSI payloads" "$bad" 0
vm_wait_exit dev 60 || vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
