# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-unplug.guest.sh: consumer guest of fault-unplug.sh: reads the redirected disk until it is unplugged, reports the error, then reads it whole once it is back.
#
# Variables (from /ug/env):
#   UG_PASSES    whole-disk reads to try before giving up on the unplug (20)
#   UG_WAIT      seconds to wait for the disk, its removal, its return (120)
# Lines printed:
#   UG-DISK dev=/dev/sdX bytes=N uptime=S
#   UG-READ pass=P start uptime=S / UG-READ pass=P done uptime=S
#   UG-READ-ERROR pass=P rc=RC records=F+P uptime=S dd=TEXT   the read
#                                         failed or came up short (dd's count)
#   UG-UNPLUGGED uptime=S                 the USB device left sysfs
#   UG-REPLUGGED path=SYSFS uptime=S
#   UG-RESULT sha256=HEX bytes=N dev=/dev/sdX records=F+P dd=TEXT
#                                         the whole disk, after the replug
. /ug/guest/common.sh

id=46f4:0001
wait=${UG_WAIT:-120}

# find_disk USBDIR: the sd block device under USBDIR, once it has a size.
find_disk() {
	_i=0
	while [ $_i -lt $((wait * 5)) ]; do
		for b in /sys/block/sd*; do
			[ -e "$b" ] || continue
			case $(readlink -f "$b/device") in
			"$(readlink -f "$1")"/*)
				[ "$(cat "$b/size")" -gt 0 ] && { echo "/dev/${b##*/}"; return 0; } ;;
			esac
		done
		sleep 0.2
		_i=$((_i + 1))
	done
	return 1
}

present() {
	for d in /sys/bus/usb/devices/*; do
		[ -r "$d/idVendor" ] || continue
		[ "$(cat "$d/idVendor"):$(cat "$d/idProduct")" = $id ] && return 0
	done
	return 1
}

usb=$(wait_usb_device $id "$wait") || {
	echo "UG-FAIL no USB device $id after ${wait}s"
	exit 1
}
disk=$(find_disk "$usb") || {
	echo "UG-FAIL no disk on $usb"
	exit 1
}
bytes=$(blockdev --getsize64 "$disk")
echo "UG-DISK dev=$disk bytes=$bytes uptime=$(uptime_s)"

# Whole-disk O_DIRECT reads, one after the other, so that bulk transfers
# are in flight whenever the host pulls the device. A read that ends early
# without an error counts as failed too: the disk went away under it.
want=$((bytes / 1048576))+$((bytes % 1048576 > 0))
pass=1
failed=0
while [ $pass -le "${UG_PASSES:-20}" ]; do
	echo "UG-READ pass=$pass start uptime=$(uptime_s)"
	dd if="$disk" of=/dev/null bs=1M iflag=direct 2>/tmp/dd.err
	rc=$?
	# busybox dd says only "FULL+PARTIAL records in".
	got=$(sed -n 's/^\([0-9]*+[0-9]*\) records in$/\1/p' /tmp/dd.err)
	if [ $rc -ne 0 ] || [ "$got" != "$want" ]; then
		echo "UG-READ-ERROR pass=$pass rc=$rc records=${got:-none} uptime=$(uptime_s) dd=$(tr '\n' ' ' </tmp/dd.err)"
		failed=1
		break
	fi
	echo "UG-READ pass=$pass done uptime=$(uptime_s)"
	pass=$((pass + 1))
done
[ $failed = 1 ] || {
	echo "UG-FAIL the disk was read ${UG_PASSES:-20} times and never went away"
	exit 1
}

i=0
while present; do
	i=$((i + 1))
	[ $i -gt $((wait * 10)) ] && { echo "UG-FAIL the disk failed a read but stayed"; exit 1; }
	sleep 0.1
done
echo "UG-UNPLUGGED uptime=$(uptime_s)"

usb=$(wait_usb_device $id "$wait") || {
	echo "UG-FAIL the disk did not come back after ${wait}s"
	exit 1
}
echo "UG-REPLUGGED path=$usb uptime=$(uptime_s)"
disk=$(find_disk "$usb") || {
	echo "UG-FAIL no disk on $usb after the replug"
	exit 1
}
bytes=$(blockdev --getsize64 "$disk")
sum=$(dd if="$disk" bs=1M iflag=direct 2>/tmp/dd.err | sha256sum | cut -d' ' -f1)
got=$(sed -n 's/^\([0-9]*+[0-9]*\) records in$/\1/p' /tmp/dd.err)
echo "UG-RESULT sha256=$sum bytes=$bytes dev=$disk records=${got:-none} dd=$(tr '\n' ' ' </tmp/dd.err)"
[ "$got" = "$want" ] || {
	echo "UG-FAIL the read after the replug failed or came up short"
	exit 1
}
