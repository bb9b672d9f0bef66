#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv.sh: usbredirsrv in the device VM exports a disk and a keyboard at once, across a consumer restart and a replug.
#
# usbredirsrv (from this build tree, with libusbgate.so) runs in the device VM
# and exports QEMU's emulated usb-storage and usb-kbd on two ports; the
# consumer VM gets both through two usb-redir devices. Session 1: the guest
# sees the keyboard's descriptors, reads the whole disk (sha256 must match the
# image), writes a block and reads it back. Then the consumer VM is stopped
# and a new one started: session 2 must work against the same usbredirsrv
# process (disk digest now includes the written block). Then the usb-storage
# is unplugged in the device VM (HMP device_del) and plugged in again
# (device_add): the consumer guest must see the unplug and the replug, and
# read the disk again. libusb's hotplug events need udev, so the device VM
# runs systemd-udevd next to usbredirsrv.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-480}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-460}
# Under heavy host load the guest kernel's IO-APIC timer check can fail
# ("IO-APIC + timer doesn't work!") and panic; skip that check.
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 25
t_start=$(ug_now)
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "$srv is not built"
udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || tap_bail "$udevd not found: install the Debian package udev"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)
lba=4096
blk=$UG_VM_WORK/block.bin
{
	printf 'UG-WRITE %s pid=%s at=%s\n' "$_ug_name" "$$" "$(ug_now)"
	head -c 4096 /dev/urandom
} | head -c 4096 >"$blk"
blk_sum=$(sha256sum <"$blk" | cut -c1-64)
cp "$img" "$UG_VM_WORK/expected.img"
dd if="$blk" of="$UG_VM_WORK/expected.img" bs=512 seek=$lba conv=notrunc 2>/dev/null
want_after=$(sha256sum <"$UG_VM_WORK/expected.img" | cut -c1-64)

guest_script=$UG_SRCDIR/tests/integration/vm-usbredirsrv.guest.sh
exports="--export 46f4:0001@0.0.0.0:4000 --export 0627:0001@0.0.0.0:4001"
exporter="mkdir -p /run/udev && systemd-udevd --daemon && sleep 0.5; usbredirsrv --list $exports | sed 's/^/UG-LIST /'; exec usbredirsrv -v $exports"
vm_device_start dev --disk "$img" --files "prog=$srv" --files "prog=$udevd" \
	--exporter "$exporter" || tap_bail "cannot start the device VM"
vm_consumer_start con1 --script "$guest_script" --files "file=$blk:/ug/block.bin" \
	--env UG_WRITE_FILE=/ug/block.bin --env UG_WRITE_LBA=$lba ||
	tap_bail "cannot start the consumer VM"

if line=$(vm_wait_for dev '^UG-EXPORTER-READY' 120); then
	tap_ok "usbredirsrv listens in the device VM ($line)"
else
	tap_fail "usbredirsrv listens in the device VM"
fi
# --list, run first in the device VM: every device, and which export takes it.
l=$(vm_lines dev '^UG-LIST .*46f4:0001 ')
case $l in
*"46f4:0001 08"*"super (5 Gb/s)"*"46f4:0001@0.0.0.0:4000"*"QEMU USB HARDDRIVE"*)
	tap_ok "--list shows the disk: class 08, SuperSpeed, serial, its export" ;;
*) tap_fail "--list shows the disk: class 08, SuperSpeed, serial, its export" "$(vm_lines dev '^UG-LIST')" ;;
esac
l=$(vm_lines dev '^UG-LIST .*0627:0001 ')
case $l in
*"0627:0001 03"*"0627:0001@0.0.0.0:4001"*) tap_ok "--list shows the keyboard: class 03, its export" ;;
*) tap_fail "--list shows the keyboard: class 03, its export" "$(vm_lines dev '^UG-LIST')" ;;
esac
l=$(vm_lines dev '^UG-LIST .*0403:6001 ')
case $l in
*"0403:6001 "*" - "*) tap_ok "--list shows the serial adapter, taken by no export" ;;
*) tap_fail "--list shows the serial adapter, taken by no export" "$(vm_lines dev '^UG-LIST')" ;;
esac
# The rig forwards one port; the keyboard's goes through a second forward.
kport=$(ug_free_port)
out=$(vm_hmp dev "hostfwd_add n0 tcp:127.0.0.1:$kport-:4001")
tap_is "second port forwarded to the keyboard's export" "$out" ""
vm_wait_for con1 '^UG-RUN start' 120 >/dev/null || tap_fail "consumer VM reaches its test script"
vm_redir_attach con1 "$(vm_port dev)" redir0
vm_redir_attach con1 "$kport" redir1

# ---- session 1: both devices at once
kd=$(vm_wait_for con1 '^UG-KBD-DESC dev idVendor=' 90)
kp=$(vm_wait_for con1 '^UG-KBD-DESC dev idProduct=' 5)
tap_is "session 1: the guest sees the keyboard's device descriptor" \
	"$(vm_field "$kd" idVendor):$(vm_field "$kp" idProduct)" "0627:0001"
ki=$(vm_wait_for con1 '^UG-KBD-DESC if ' 10)
tap_is "session 1: and its HID boot keyboard interface" \
	"$(vm_field "$ki" class) $(vm_field "$ki" subclass) $(vm_field "$ki" protocol)" "03 01 01"
ke=$(vm_wait_for con1 '^UG-KBD-DESC ep ' 10)
tap_is "session 1: and its interrupt IN endpoint" \
	"$(vm_field "$ke" address) $(vm_field "$ke" type)" "81 Interrupt"
line=$(vm_wait_for con1 '^UG-RESULT sha256=' 150)
tap_is "session 1: sha256 of the whole disk read in the guest equals the image's" \
	"$(vm_field "$line" sha256) $(vm_field "$line" bytes)" "$want_sum $((16 * 1024 * 1024))"
line=$(vm_wait_for con1 '^UG-RESULT write ' 60)
tap_is "session 1: the written block reads back" \
	"$(vm_field "$line" sha256) $(vm_field "$line" readback)" "$blk_sum $blk_sum"
line=$(vm_wait_for con1 '^UG-DONE' 60)
tap_is "session 1: the consumer script succeeded" "$(vm_field "$line" rc)" 0
read1=$(vm_lines con1 '^UG-RESULT read ' | head -n 1)
vm_wait_exit con1 60 || vm_stop con1

# usbredirsrv saw both sessions end and released the devices.
i=0
while [ "$(vm_lines dev 'Message: .*export .*: session ended' | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
tap_is "usbredirsrv ended both sessions when the consumer VM went away" \
	"$(vm_lines dev 'Message: .*export .*: session ended' | wc -l)" 2

# ---- session 2: a new consumer VM, the same usbredirsrv
vm_consumer_start con2 --script "$guest_script" --env UG_HOTPLUG=1 ||
	tap_bail "cannot start the second consumer VM"
vm_wait_for con2 '^UG-RUN start' 120 >/dev/null || tap_fail "second consumer VM reaches its script"
vm_redir_attach con2 "$(vm_port dev)" redir0
vm_redir_attach con2 "$kport" redir1
kd=$(vm_wait_for con2 '^UG-KBD-DESC dev idVendor=' 90)
tap_is "session 2: the guest sees the keyboard again" "$(vm_field "$kd" idVendor)" 0627
line=$(vm_wait_for con2 '^UG-RESULT sha256=' 150)
tap_is "session 2: whole-disk sha256 matches the image with the written block" \
	"$(vm_field "$line" sha256)" "$want_after"
tap_is "usbredirsrv was not restarted" "$(vm_lines dev '^UG-EXPORTER-(START|EXIT)' | tr '\n' ' ')" \
	"UG-EXPORTER-START n=1 "
tap_is "it started four sessions in all" \
	"$(vm_lines dev 'Message: .*export .*: session started' | wc -l)" 4

# ---- unplug and replug the disk in the device VM
vm_wait_for con2 '^UG-PHASE storage-done' 60 >/dev/null
out=$(vm_hmp dev "device_del stor0")
tap_is "device_del of the usb-storage in the device VM" "$out" ""
if line=$(vm_wait_for con2 '^UG-UNPLUGGED' 60); then
	tap_ok "the consumer guest sees the unplug"
else
	tap_fail "the consumer guest sees the unplug"
fi
if vm_wait_for dev 'device 46f4:0001 .*unplugged' 10 >/dev/null; then
	tap_ok "usbredirsrv logged the unplug (libusb hotplug)"
else
	tap_fail "usbredirsrv logged the unplug (libusb hotplug)"
fi
# A -drive's backend goes with its device; give the new device a new one.
out=$(vm_hmp dev "device_add usb-storage,bus=xhci.0,drive=d0,id=stor1")
if [ -n "$out" ]; then
	tap_diag "device_add with the old drive: $out"
	vm_hmp dev "drive_add 0 if=none,id=d1,file=$img,format=raw,cache=writethrough" >/dev/null
	out=$(vm_hmp dev "device_add usb-storage,bus=xhci.0,drive=d1,id=stor1")
fi
tap_is "device_add of a usb-storage in the device VM" "$out" ""
if line=$(vm_wait_for con2 '^UG-REPLUGGED' 90); then
	tap_ok "the consumer guest sees the replug"
else
	tap_fail "the consumer guest sees the replug"
fi
line=$(vm_wait_for con2 '^UG-RESULT sector0=' 60)
tap_is "the replugged disk reads in the consumer guest" "$(vm_field "$line" sector0)" "UGDISK"
line=$(vm_wait_for con2 '^UG-DONE' 60)
tap_is "session 2: the consumer script succeeded" "$(vm_field "$line" rc)" 0
if vm_lines dev 'UG-EXPORTER-EXIT|AddressSanitizer|CRITICAL|assertion' | grep -q .; then
	tap_fail "usbredirsrv ran throughout without errors" "$(vm_lines dev 'UG-EXPORTER-EXIT|AddressSanitizer|CRITICAL|assertion')"
else
	tap_ok "usbredirsrv ran throughout without errors"
fi

vm_wait_exit con2 60 || vm_stop con2
vm_stop dev
got=$(dd if="$img" bs=512 skip=$lba count=8 2>/dev/null | sha256sum | cut -c1-64)
tap_is "the block written in session 1 is in the device VM's image file" "$got" "$blk_sum"
tap_diag "guest-visible read through usbredirsrv (session 1): $(vm_field "$read1" mbps) MB/s" \
	"whole test: $(ug_since "$t_start")s"
