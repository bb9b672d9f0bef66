#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirect-storage.sh: proves the VM rig: Debian's usbredirect exports an emulated USB disk to a consumer VM.
#
# The device VM runs usbredirect on its QEMU usb-storage (a pattern disk made
# here); the consumer VM gets it through QEMU's usb-redir over the forwarded
# port, reads the whole disk (sha256 must match the image), writes one 4 KiB
# block and reads it back; after both VMs have powered off, the block must be
# in the image file on the host and nothing else may have changed.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 10
t_start=$(ug_now)
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
t_built=$(ug_since "$t_start")

img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)
lba=2048
blk=$UG_VM_WORK/block.bin
{
	printf 'UG-WRITE %s pid=%s at=%s\n' "$_ug_name" "$$" "$(ug_now)"
	head -c 4096 /dev/urandom
} | head -c 4096 >"$blk"
blk_sum=$(sha256sum <"$blk" | cut -c1-64)
# What the image must look like at the end: the pattern plus that one block.
cp "$img" "$UG_VM_WORK/expected.img"
dd if="$blk" of="$UG_VM_WORK/expected.img" bs=512 seek=$lba conv=notrunc 2>/dev/null
want_after=$(sha256sum <"$UG_VM_WORK/expected.img" | cut -c1-64)

# Both VMs boot at once; the usb-redir is plugged in once the exporter listens.
vm_device_start dev --disk "$img" --id 46f4:0001 || tap_bail "cannot start the device VM"
vm_consumer_start con --script storage \
	--files "file=$blk:/ug/block.bin" \
	--env UG_WRITE_FILE=/ug/block.bin --env UG_WRITE_LBA=$lba ||
	tap_bail "cannot start the consumer VM"

if line=$(vm_wait_for dev '^UG-EXPORTER-READY' 120); then
	tap_ok "usbredirect listens in the device VM ($line)"
else
	tap_fail "usbredirect listens in the device VM"
	tap_bail "the device VM's exporter never listened; nothing else can work"
fi
t_dev_ready=$(cat "$(vm_dir dev)/matched-at")
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM never reached its test script"
vm_redir_attach con "$(vm_port dev)" || tap_bail "cannot hot-plug usb-redir into the consumer VM"

if line=$(vm_wait_for con '^UG-ENUM' 90); then
	tap_is "consumer guest enumerates the redirected disk" "$(vm_field "$line" id)" 46f4:0001
else
	tap_fail "consumer guest enumerates the redirected disk"
	tap_bail "no redirected disk in the consumer guest"
fi
t_enum=$(cat "$(vm_dir con)/matched-at")
usb=$(vm_info_usb con)
case $usb in
*"Speed 5000 Mb/s"*"USB Redirection Device"* | *"USB Redirection Device"*"Speed 5000 Mb/s"*)
	tap_ok "QEMU shows the redirected device at its SuperSpeed" ;;
*) tap_fail "QEMU shows the redirected device at its SuperSpeed" "info usb: $usb" ;;
esac

line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_is "sha256 of the whole disk read in the consumer guest equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
tap_is "the guest saw the whole disk" "$(vm_field "$line" bytes)" $((16 * 1024 * 1024))
line=$(vm_wait_for con '^UG-RESULT write ' 60)
tap_is "the written block reads back in the consumer guest" \
	"$(vm_field "$line" sha256) $(vm_field "$line" readback)" "$blk_sum $blk_sum"
line=$(vm_wait_for con '^UG-DONE' 60)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0

# The consumer powers off; usbredirect sees its client leave and exits; the
# device VM then powers off, and QEMU has flushed the image when it exits.
vm_wait_exit con 60 || vm_stop con
if vm_wait_exit dev 60; then
	tap_ok "the device VM powered off after usbredirect's client left"
else
	tap_fail "the device VM powered off after usbredirect's client left"
	vm_stop dev
fi
got=$(dd if="$img" bs=512 skip=$lba count=8 2>/dev/null | sha256sum | cut -c1-64)
tap_is "the block written in the consumer landed in the device VM's image file" "$got" "$blk_sum"
tap_is "nothing else in the image changed" "$(sha256sum <"$img" | cut -c1-64)" "$want_after"

read_line=$(vm_lines con '^UG-RESULT read ' | head -n 1)
tap_diag "guest build/lookup ${t_built}s; boot to /init: device $(vm_boot_seconds dev)s, consumer $(vm_boot_seconds con)s (guest clock)" \
	"device exporter ready after ${t_dev_ready}s, disk enumerated in the consumer after ${t_enum}s (host clock from VM start)" \
	"guest-visible read through usbredirect: $(vm_field "$read_line" mbps) MB/s ($(vm_field "$read_line" bytes) bytes in $(vm_field "$read_line" seconds)s)" \
	"whole test: $(ug_since "$t_start")s"
