# SPDX-License-Identifier: LGPL-2.1-or-later
# kbd.sh: consumer guest: finds the redirected USB keyboard's event device and prints the key events it reads.
#
# Variables (set by the test in /ug/env):
#   UG_USB_ID   vendor:product to wait for (default 0627:0001, QEMU's usb-kbd)
#   UG_WAIT     seconds to wait for the device (default 120)
#   UG_KBD_END  key code whose release ends the script (default 1, Esc)
# Lines printed:
#   UG-ENUM id=VID:PID path=SYSFS uptime=S, UG-DESC ... (see common.sh)
#   UG-KBD-READY event=/dev/input/eventN     the host may type now
#   UG-KEY code=C value=V                    one per EV_KEY event (1 down, 0 up, 2 repeat)
#   UG-RESULT keys=C,C,...                   the codes pressed (value 1), in order
. /ug/guest/common.sh

id=${UG_USB_ID:-0627:0001}
wait=${UG_WAIT:-120}
end=${UG_KBD_END:-1}

usb=$(wait_usb_device "$id" "$wait") || {
	echo "UG-FAIL no USB device $id after ${wait}s"
	exit 1
}
echo "UG-ENUM id=$id path=$usb uptime=$(uptime_s)"
print_descriptors "$usb"

ev=""
i=0
while [ -z "$ev" ] && [ $i -lt $((wait * 5)) ]; do
	for e in /sys/class/input/event*; do
		[ -e "$e" ] || continue
		case $(readlink -f "$e/device") in
		"$(readlink -f "$usb")"/*) [ -c "/dev/input/${e##*/}" ] && ev=/dev/input/${e##*/} ;;
		esac
	done
	[ -n "$ev" ] || sleep 0.2
	i=$((i + 1))
done
[ -n "$ev" ] || {
	echo "UG-FAIL no input event device on $usb"
	exit 1
}

# Open the device before announcing readiness, so no event is lost: the
# reader holds it open from here on.
exec 3<"$ev"
echo "UG-KBD-READY event=$ev"
: >/tmp/keys
# struct input_event on x86-64: 16 bytes of time, u16 type, u16 code, s32
# value. One read returns whole events only, so 240 bytes is up to 10.
while :; do
	dd bs=240 count=1 <&3 2>/dev/null |
		hexdump -v -e '4/4 "%x " 2/2 " %u" 1/4 " %d" "\n"' >/tmp/ev.txt
	done_=0
	while read -r _ _ _ _ type code value; do
		[ "$type" = 1 ] || continue
		echo "UG-KEY code=$code value=$value"
		[ "$value" = 1 ] && echo "$code" >>/tmp/keys
		[ "$code" = "$end" ] && [ "$value" = 0 ] && done_=1
	done </tmp/ev.txt
	[ $done_ = 1 ] && break
done
echo "UG-RESULT keys=$(tr '\n' ',' </tmp/keys | sed 's/,$//')"
