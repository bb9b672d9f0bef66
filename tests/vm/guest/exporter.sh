# SPDX-License-Identifier: LGPL-2.1-or-later
# exporter.sh: device guest: runs the exporter command (usbredirect, usbredirsrv, ...) and reports when it listens.
#
# Variables (set by lib.sh in /ug/env):
#   UG_EXPORTER       the command line, run with sh -c; its output goes to the console
#   UG_EXPORTER_PORT  guest TCP port it listens on; UG-EXPORTER-READY is printed once
#                     the port is in LISTEN state (read from /proc/net/tcp, so the
#                     one client a usbredirect serves is not used up by a probe).
#                     Empty: READY right after the start.
#   UG_RESPAWN        1: start the exporter again each time it exits
#   UG_WAIT           seconds to wait for LISTEN (default 120)
#   UG_AFTER          shell code run once the exporter is done, before power-off
#                     (e.g. "ug_export tmp/usbredirsrv.pcap")
# Lines printed:
#   UG-DEVICES VID:PID ...           the USB devices this VM has
#   UG-EXPORTER-START n=N            / UG-EXPORTER-READY n=N port=P uptime=S
#   UG-EXPORTER-EXIT n=N rc=RC       the exporter ended (with UG_RESPAWN: starts again)
. /ug/guest/common.sh

ids=""
for d in /sys/bus/usb/devices/*; do
	[ -r "$d/idVendor" ] || continue
	[ "$(cat "$d/bDeviceClass")" = 09 ] && continue
	ids="$ids $(cat "$d/idVendor"):$(cat "$d/idProduct")"
done
echo "UG-DEVICES$ids"

listening() {
	hex=$(printf '%04X' "$1")
	# Columns: sl local_address rem_address st ...; st 0A is LISTEN.
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
		awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}

n=1
while :; do
	echo "UG-EXPORTER-START n=$n"
	sh -c "$UG_EXPORTER" &
	pid=$!
	if [ -n "${UG_EXPORTER_PORT:-}" ]; then
		i=0
		while ! listening "$UG_EXPORTER_PORT"; do
			kill -0 $pid 2>/dev/null || break
			i=$((i + 1))
			[ $i -gt $((${UG_WAIT:-120} * 20)) ] && break
			sleep 0.05
		done
		listening "$UG_EXPORTER_PORT" &&
			echo "UG-EXPORTER-READY n=$n port=$UG_EXPORTER_PORT uptime=$(uptime_s)"
	else
		echo "UG-EXPORTER-READY n=$n port= uptime=$(uptime_s)"
	fi
	wait $pid
	rc=$?
	echo "UG-EXPORTER-EXIT n=$n rc=$rc"
	[ "${UG_RESPAWN:-0}" = 1 ] || break
	n=$((n + 1))
done
if [ -n "${UG_AFTER:-}" ]; then
	eval "$UG_AFTER"
fi
exit $rc
