# SPDX-License-Identifier: LGPL-2.1-or-later
# storage.sh: consumer guest: finds the redirected USB disk, reads it whole, writes one block and reads it back.
#
# Variables (set by the test in /ug/env):
#   UG_USB_ID       vendor:product to wait for (default 46f4:0001, QEMU's usb-storage)
#   UG_WAIT         seconds to wait for the device and its disk (default 120)
#   UG_WRITE_FILE   a file to write to the disk (default: none, read only)
#   UG_WRITE_LBA    where to write it, in 512-byte sectors (default 2048)
#   UG_READS        how many timed whole-disk reads (default 1)
# Lines printed:
#   UG-ENUM id=VID:PID path=SYSFS uptime=S
#   UG-DESC ...                              (see common.sh)
#   UG-DISK dev=/dev/sdX bytes=N uptime=S
#   UG-RESULT read n=I bytes=N seconds=S mbps=R      one per timed read
#   UG-RESULT sha256=HEX bytes=N                     digest of the whole disk
#   UG-RESULT write lba=L bytes=N sha256=HEX readback=HEX
. /ug/guest/common.sh

id=${UG_USB_ID:-46f4:0001}
wait=${UG_WAIT:-120}
lba=${UG_WRITE_LBA:-2048}

usb=$(wait_usb_device "$id" "$wait") || {
	echo "UG-FAIL no USB device $id after ${wait}s"
	exit 1
}
echo "UG-ENUM id=$id path=$usb uptime=$(uptime_s)"
print_descriptors "$usb"

disk=""
i=0
while [ -z "$disk" ] && [ $i -lt $((wait * 5)) ]; do
	for b in /sys/block/sd*; do
		[ -e "$b" ] || continue
		case $(readlink -f "$b/device") in
		"$(readlink -f "$usb")"/*) disk=/dev/${b##*/} ;;
		esac
	done
	# The disk node appears with its capacity only after the SCSI scan.
	[ -n "$disk" ] && [ "$(cat /sys/block/${disk#/dev/}/size)" -gt 0 ] || { disk=""; sleep 0.2; }
	i=$((i + 1))
done
[ -n "$disk" ] || {
	echo "UG-FAIL no disk on $usb"
	exit 1
}
bytes=$(blockdev --getsize64 "$disk")
echo "UG-DISK dev=$disk bytes=$bytes uptime=$(uptime_s)"

# O_DIRECT reads bypass the page cache, so every byte crosses the redirection.
n=1
while [ $n -le "${UG_READS:-1}" ]; do
	t0=$(uptime_s)
	dd if="$disk" of=/dev/null bs=1M iflag=direct 2>/dev/null || {
		echo "UG-FAIL read $n of $disk"
		exit 1
	}
	t1=$(uptime_s)
	s=$(elapsed "$t0" "$t1")
	echo "UG-RESULT read n=$n bytes=$bytes seconds=$s mbps=$(rate_mbps "$bytes" "$s")"
	n=$((n + 1))
done
sum=$(dd if="$disk" bs=1M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
echo "UG-RESULT sha256=$sum bytes=$bytes"

if [ -n "${UG_WRITE_FILE:-}" ]; then
	wbytes=$(stat -c %s "$UG_WRITE_FILE")
	wsum=$(sha256sum <"$UG_WRITE_FILE" | cut -d' ' -f1)
	dd if="$UG_WRITE_FILE" of="$disk" bs="$wbytes" count=1 oflag=direct,seek_bytes \
		seek=$((lba * 512)) conv=notrunc,fsync 2>/dev/null || {
		echo "UG-FAIL write at lba $lba"
		exit 1
	}
	sync
	echo 3 >/proc/sys/vm/drop_caches
	rsum=$(dd if="$disk" bs="$wbytes" count=1 iflag=direct,skip_bytes skip=$((lba * 512)) 2>/dev/null |
		sha256sum | cut -d' ' -f1)
	echo "UG-RESULT write lba=$lba bytes=$wbytes sha256=$wsum readback=$rsum"
fi
