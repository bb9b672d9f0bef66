# SPDX-License-Identifier: LGPL-2.1-or-later
# load-devices.guest.sh: consumer guest of load-devices.sh: waits for every redirected disk and the keyboard, reads each disk whole.
#
# Variables (from /ug/env): UG_DISKS, the number of 46f4:0001 disks to wait for.
# Lines printed:
#   UG-LOAD-KBD path=SYSFS                    the keyboard is there
#   UG-LOAD-SEEN disks=N uptime=S             N disks with a block device
#   UG-LOAD-DISK serial=S dev=/dev/sdX bytes=B sha256=HEX seconds=T
. /ug/guest/common.sh

kbd=$(wait_usb_device 0627:0001 "${UG_WAIT:-180}") || {
	echo "UG-FAIL no keyboard 0627:0001"
	exit 1
}
echo "UG-LOAD-KBD path=$kbd"
# usb-storage probes each disk on its own; wait until all have a size.
i=0
while :; do
	n=0
	for b in /sys/block/sd*; do
		[ -e "$b/size" ] && [ "$(cat "$b/size")" -gt 0 ] && n=$((n + 1))
	done
	[ "$n" -ge "$UG_DISKS" ] && break
	i=$((i + 1))
	[ $i -gt 1800 ] && { echo "UG-FAIL only $n of $UG_DISKS disks after 180 s"; exit 1; }
	sleep 0.1
done
echo "UG-LOAD-SEEN disks=$n uptime=$(uptime_s)"
for b in /sys/block/sd*; do
	dev=/dev/${b##*/}
	# The USB device directory is the first ancestor with a serial file.
	d=$(readlink -f "$b/device")
	serial=""
	while [ "$d" != / ]; do
		[ -r "$d/serial" ] && [ -r "$d/idVendor" ] && { serial=$(cat "$d/serial"); break; }
		d=${d%/*}
	done
	t0=$(uptime_s)
	sum=$(dd if="$dev" bs=64k iflag=direct 2>/dev/null | sha256sum | cut -c1-64)
	bytes=$(($(cat "$b/size") * 512))
	echo "UG-LOAD-DISK serial=$serial dev=$dev bytes=$bytes sha256=$sum seconds=$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }')"
done
