# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv.guest.sh: consumer guest of vm-usbredirsrv.sh: keyboard descriptors, the disk checks, then unplug and replug.
#
# Variables (from /ug/env): those of storage.sh, and
#   UG_HOTPLUG   1: after the disk checks, wait for the disk to go away and
#                come back, and read its first sector again
# Lines printed (besides storage.sh's):
#   UG-KBD id=0627:0001 path=SYSFS             and UG-KBD-DESC ... (common.sh's UG-DESC)
#   UG-PHASE storage-done
#   UG-UNPLUGGED uptime=S / UG-REPLUGGED path=SYSFS uptime=S
#   UG-RESULT sector0=TEXT                     the replugged disk's first bytes
. /ug/guest/common.sh

kbd=$(wait_usb_device 0627:0001 "${UG_WAIT:-60}") || {
	echo "UG-FAIL no keyboard 0627:0001"
	exit 1
}
echo "UG-KBD id=0627:0001 path=$kbd uptime=$(uptime_s)"
print_descriptors "$kbd" | sed 's/^UG-DESC/UG-KBD-DESC/'

sh /ug/guest/storage.sh || exit 1
echo "UG-PHASE storage-done"
[ "${UG_HOTPLUG:-0}" = 1 ] || exit 0

present() {
	for d in /sys/bus/usb/devices/*; do
		[ -r "$d/idVendor" ] || continue
		[ "$(cat "$d/idVendor"):$(cat "$d/idProduct")" = 46f4:0001 ] && return 0
	done
	return 1
}
i=0
while present; do
	i=$((i + 1))
	[ $i -gt 900 ] && { echo "UG-FAIL the disk was not unplugged"; exit 1; }
	sleep 0.1
done
echo "UG-UNPLUGGED uptime=$(uptime_s)"
usb=$(wait_usb_device 46f4:0001 90) || {
	echo "UG-FAIL the disk did not come back"
	exit 1
}
echo "UG-REPLUGGED path=$usb uptime=$(uptime_s)"
disk=""
i=0
while [ -z "$disk" ] && [ $i -lt 300 ]; do
	for b in /sys/block/sd*; do
		[ -e "$b" ] || continue
		case $(readlink -f "$b/device") in
		"$(readlink -f "$usb")"/*) [ "$(cat "$b/size")" -gt 0 ] && disk=/dev/${b##*/} ;;
		esac
	done
	[ -n "$disk" ] || sleep 0.2
	i=$((i + 1))
done
[ -n "$disk" ] || { echo "UG-FAIL no disk after the replug"; exit 1; }
s0=$(dd if="$disk" bs=512 count=1 iflag=direct 2>/dev/null | head -c 15)
echo "UG-RESULT sector0=$s0 dev=$disk"
