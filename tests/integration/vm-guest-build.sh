#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-guest-build.sh: the test guest's build is cached, reproducible, and holds what the VM tests rely on.
#
# Builds the base guest twice into two fresh caches (no VM is booted) and
# checks: an uncompressed ELF kernel, byte-identical initramfs archives, reuse
# of the cache on a second call, the modules of each role in dependency
# order, usbredirect with every library ldd names, and a test overlay.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

ug_require cpio cpio python3 python3 busybox busybox-static usbredirect usbredirect
tap_plan 8
build="sh $UG_VM_DIR/build-guest.sh"

out=$(UG_VM_CACHE=$UG_VM_WORK/a $build base) || tap_bail "build-guest.sh base failed"
eval "$out"
k1=$UG_VM_KERNEL
i1=$UG_VM_INITRD
tap_is "the kernel is an uncompressed ELF image" "$(head -c 4 "$k1" | od -An -c | tr -d ' ')" '177ELF'

# The second call must find the cache: same files, same inode, nothing new.
ino=$(stat -c %i "$i1")
n=$(ls "$UG_VM_WORK/a" | wc -l)
out=$(UG_VM_CACHE=$UG_VM_WORK/a $build base)
eval "$out"
tap_is "a second call reuses the cached guest" "$UG_VM_INITRD $(stat -c %i "$UG_VM_INITRD") $(ls "$UG_VM_WORK/a" | wc -l)" "$i1 $ino $n"

out=$(UG_VM_CACHE=$UG_VM_WORK/b $build base) || tap_bail "build-guest.sh base (second cache) failed"
eval "$out"
tap_check "two builds give byte-identical initramfs archives" cmp -s "$i1" "$UG_VM_INITRD"

list=$UG_VM_WORK/list
zcat "$i1" | cpio -it --quiet >"$list" 2>/dev/null
missing=""
for f in init bin/busybox bin/sh usr/bin/usbredirect etc/ug/modules.device etc/ug/modules.consumer; do
	grep -qx "$f" "$list" || missing="$missing $f"
done
tap_is "the initramfs has init, busybox, usbredirect and the module lists" "$missing" ""

missing=""
for l in $(ldd /usr/bin/usbredirect | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
	grep -qx "${l#/}" "$list" || missing="$missing $l"
done
tap_is "every library ldd names for usbredirect, and the loader, is in it" "$missing" ""

kver=$(zcat "$i1" | cpio -i --quiet --to-stdout etc/ug/kver 2>/dev/null)
mods=$(zcat "$i1" | cpio -i --quiet --to-stdout etc/ug/modules.consumer 2>/dev/null | sed 's|.*/||')
order=$(echo "$mods" | grep -n -x -E 'usbcore.ko|xhci-hcd.ko|xhci-pci.ko|scsi_mod.ko|usb-storage.ko|hid.ko|usbhid.ko' | cut -d: -f2 | tr '\n' ' ')
tap_is "consumer modules load dependencies first (kernel $kver)" "$order" \
	"usbcore.ko xhci-hcd.ko xhci-pci.ko scsi_mod.ko usb-storage.ko hid.ko usbhid.ko "
dmods=$(zcat "$i1" | cpio -i --quiet --to-stdout etc/ug/modules.device 2>/dev/null | sed 's|.*/||' | tr '\n' ' ')
# The device VM's emulated devices must stay free for the exporter (libusb).
have=""
for m in xhci-pci.ko virtio_net.ko usbmon.ko usb-storage.ko sd_mod.ko usbhid.ko; do
	case " $dmods" in *" $m "*) have="$have $m" ;; esac
done
tap_is "the device role loads xHCI, usbmon and virtio-net but no class driver" "$have" \
	" xhci-pci.ko virtio_net.ko usbmon.ko"

echo "hello from the host" >"$UG_VM_WORK/hello"
$build overlay "$UG_VM_WORK/ov.cpio.gz" "file=$UG_VM_WORK/hello:/ug/hello" "prog=/usr/bin/usbredirect:/usr/local/bin/ur2" >/dev/null
got=$(zcat "$UG_VM_WORK/ov.cpio.gz" | cpio -i --quiet --to-stdout ug/hello 2>/dev/null)
tap_is "an overlay carries a test's files" "$got $(zcat "$UG_VM_WORK/ov.cpio.gz" | cpio -it --quiet 2>/dev/null | grep -c -x -E 'usr/local/bin/ur2|lib/x86_64-linux-gnu/libusbredirhost.so.1')" \
	"hello from the host 2"
