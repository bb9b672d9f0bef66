# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-privdrop.guest.sh: device guest of vm-privdrop.sh: the disk's node to a group, then usbredirsrv --user UID:GID.
#
# Arguments: UID GID. What a udev rule would do (GROUP=, MODE="0660") is done
# by hand for the usb-storage (46f4:0001) only; the keyboard (0627:0001)
# keeps devtmpfs's root:root 0600, so the dropped usbredirsrv cannot open it.
# Lines printed:
#   UG-NODE VID:PID PATH MODE UID GID        the device nodes, after the change
#   UG-IDS task=TID Uid=... Gid=... Groups=...  each thread of usbredirsrv, after the drop
#   UG-IDS-END                                  after the last thread's line
uid=$1
gid=$2
mkdir -p /run/udev && systemd-udevd --daemon && sleep 0.5
for d in /sys/bus/usb/devices/*; do
	[ -r "$d/idVendor" ] || continue
	id=$(cat "$d/idVendor"):$(cat "$d/idProduct")
	node=$(printf '/dev/bus/usb/%03d/%03d' "$(cat "$d/busnum")" "$(cat "$d/devnum")")
	case $id in
	46f4:0001) chgrp "$gid" "$node" && chmod 0660 "$node" ;;
	0627:0001) ;;
	*) continue ;;
	esac
	echo "UG-NODE $id $node $(stat -c '%a %u %g' "$node")"
done
usbredirsrv -v --user "$uid:$gid" --export 46f4:0001@0.0.0.0:4000 --export 0627:0001@0.0.0.0:4001 &
pid=$!
i=0
until grep -q "^Uid:[[:space:]]*$uid[[:space:]]" "/proc/$pid/status" 2>/dev/null || [ $i -ge 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
for t in /proc/$pid/task/*; do
	echo "UG-IDS task=${t##*/} $(sed -n -E 's/^(Uid|Gid|Groups):[[:space:]]*/\1=/p' "$t/status" |
		tr -s '\t ' ',' | sed 's/,$//' | tr '\n' ' ')"
done
echo "UG-IDS-END"
wait $pid
