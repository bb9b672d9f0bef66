# SPDX-License-Identifier: LGPL-2.1-or-later
# common.sh: helpers the guest-side scripts source (busybox sh inside the test guest).

uptime_s() {
	read -r up _ </proc/uptime
	echo "$up"
}

# Seconds between two uptime readings, and a rate in MB/s (10^6 bytes).
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate_mbps() { awk -v n="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.01; printf "%.2f", n / s / 1000000 }'; }

# Prints the sysfs directory of the first non-hub USB device behind a
# (redirected) root port whose vendor:product is $1 (empty: any), waiting up
# to $2 seconds.
wait_usb_device() {
	want=$1
	deadline=$(awk -v u="$(uptime_s)" -v t="$2" 'BEGIN { print u + t }')
	while :; do
		for d in /sys/bus/usb/devices/*; do
			[ -r "$d/idVendor" ] || continue
			[ "$(cat "$d/bDeviceClass")" = 09 ] && continue
			id="$(cat "$d/idVendor"):$(cat "$d/idProduct")"
			if [ -z "$want" ] || [ "$id" = "$want" ]; then
				echo "$d"
				return 0
			fi
		done
		if awk -v u="$(uptime_s)" -v d="$deadline" 'BEGIN { exit !(u > d) }'; then
			return 1
		fi
		sleep 0.2
	done
}

# Prints the device's descriptors as UG-DESC lines, from sysfs: the fields
# the kernel parsed, then the raw descriptor bytes it read, in hex.
print_descriptors() {
	d=$1
	for f in idVendor idProduct bcdDevice bDeviceClass bDeviceSubClass \
		bDeviceProtocol bMaxPacketSize0 bNumConfigurations \
		bConfigurationValue bmAttributes bMaxPower speed version \
		manufacturer product serial; do
		[ -r "$d/$f" ] && echo "UG-DESC dev $f=$(cat "$d/$f" | tr -s ' ' | sed 's/^ //; s/ $//')"
	done
	for i in "$d"/*:*; do
		[ -r "$i/bInterfaceClass" ] || continue
		n=${i##*/}
		echo "UG-DESC if $n class=$(cat "$i/bInterfaceClass") subclass=$(cat "$i/bInterfaceSubClass") protocol=$(cat "$i/bInterfaceProtocol") endpoints=$(cat "$i/bNumEndpoints")"
		for e in "$i"/ep_*; do
			[ -r "$e/bEndpointAddress" ] || continue
			echo "UG-DESC ep $n address=$(cat "$e/bEndpointAddress") attributes=$(cat "$e/bmAttributes") maxpacket=$(cat "$e/wMaxPacketSize") type=$(cat "$e/type")"
		done
	done
	echo "UG-DESC raw $(hexdump -v -e '1/1 "%02x"' "$d/descriptors")"
}

# ug_export PATH...: sends files to the host as one tar stream on the second
# serial port (host: vm_exported NAME DIR), then prints UG-EXPORTED. Once per
# boot: the host reads a single archive. Paths are stored relative to /.
ug_export() {
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	(cd / && tar -cf - "$@") >/dev/ttyS1
	echo "UG-EXPORTED $*"
}
