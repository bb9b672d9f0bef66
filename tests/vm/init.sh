#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# init.sh: /init of the test guest: mounts, loads the role's modules, brings up eth0, runs /ug/run, powers off.
#
# Kernel command line parameters it reads:
#   ug.role=device|consumer   which module list to load (default consumer)
#   ug.net=0|1                configure eth0 as 10.0.2.15/24 via 10.0.2.2
#                             (default 1 for the device role)
# Marker lines on the console (the host waits for them):
#   UG-BOOT init uptime=S     /init reached (S: guest seconds since boot)
#   UG-BOOT modules uptime=S  modules loaded
#   UG-NET up uptime=S        eth0 configured and slirp greeted
#   UG-RUN start              /ug/run (from the test's overlay) starts
#   UG-DONE rc=N              /ug/run returned N; the guest powers off next
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin
export LD_LIBRARY_PATH=/usr/local/lib
export HOME=/tmp

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

uptime_s() {
	read -r up _ </proc/uptime
	echo "$up"
}
echo "UG-BOOT init uptime=$(uptime_s)"

role=consumer
net=""
for arg in $(cat /proc/cmdline); do
	case $arg in
	ug.role=*) role=${arg#ug.role=} ;;
	ug.net=*) net=${arg#ug.net=} ;;
	esac
done
if [ -z "$net" ]; then
	net=0
	[ "$role" = device ] && net=1
fi

# Debian's kernel has the USB stack as modules; the base build resolved their
# dependencies and load order from modules.dep.
if [ -r "/etc/ug/modules.$role" ]; then
	while read -r ko; do
		insmod "$ko" 2>/tmp/insmod.err || {
			# A module that is already there (built in, or pulled in
			# before) is fine; anything else is worth a line.
			grep -q 'File exists' /tmp/insmod.err ||
				echo "UG-WARN insmod $ko: $(cat /tmp/insmod.err)"
		}
	done <"/etc/ug/modules.$role"
fi
echo "UG-BOOT modules uptime=$(uptime_s)"

ip link set lo up
if [ "$net" = 1 ]; then
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	ip link set eth0 up
	ip addr add 10.0.2.15/24 dev eth0
	ip route add default via 10.0.2.2
	# slirp stalls the first connection from the host for seconds unless
	# the guest has talked to it before: greet the gateway once.
	arping -c 1 -w 1 -I eth0 10.0.2.2 >/dev/null 2>&1
	echo "UG-NET up uptime=$(uptime_s)"
fi

rc=0
if [ -r /ug/run ]; then
	[ -r /ug/env ] && . /ug/env
	echo "UG-RUN start"
	sh /ug/run
	rc=$?
fi
echo "UG-DONE rc=$rc"
sync
poweroff -f
# Not reached unless poweroff failed; with -no-reboot QEMU exits here too.
reboot -f
