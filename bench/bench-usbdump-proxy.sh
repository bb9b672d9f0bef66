#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-usbdump-proxy.sh: guest read MB/s and transfers/s with the usbdump proxy in the path vs direct, usbdump's RSS, and usbdump -r vs tcpdump -r.
#
# Part 1, one run of the VM rig: the device VM runs Debian's usbredirect
# (respawned per client) on an emulated usb-storage; a consumer VM reads the
# whole disk UG_BENCH_READS times with 1 MiB O_DIRECT reads (median MB/s), then
# UG_BENCH_SMALL 4 KiB O_DIRECT reads (transfers/s), first connected directly
# (the anchor), then through `usbdump --listen --connect -w FILE -q`. usbdump's
# VmRSS is sampled every 0.5 s during its session (flat is the target).
# Part 2: tcpdump recorded both sessions on lo; that capture is read by
# `tcpdump -r X -w /dev/null` (the anchor) and by `usbdump -r X -w FILE -q`:
# MB/s of capture file and usbdump's max RSS (targets >= 0.5x, <= 32 MiB).
#
# Run from the build dir: UG_SRCDIR=.. UG_BUILDDIR=. sh ../bench/bench-usbdump-proxy.sh
# Environment: UG_BENCH_MIB (32), UG_BENCH_READS (3), UG_BENCH_SMALL (4096).
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-1500}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-900}
. "${UG_SRCDIR:-$(dirname "$0")/..}/tests/vm/lib.sh"

mib=${UG_BENCH_MIB:-32}
reads=${UG_BENCH_READS:-3}
small=${UG_BENCH_SMALL:-4096}
usbdump=$UG_BUILDDIR/usbdump/usbdump
W=$UG_VM_WORK
[ -x "$usbdump" ] || { echo "bench-usbdump-proxy: $usbdump is not built" >&2; exit 1; }
vm_guest || { echo "bench-usbdump-proxy: cannot build the guest" >&2; exit 1; }
img=$W/disk.img
vm_disk_image "$img" "$mib"
guest=$UG_SRCDIR/bench/bench-usbredirsrv.guest.sh
[ -r "$guest" ] || guest=$UG_SRCDIR/tests/vm/guest/storage.sh

vm_device_start dev --disk "$img" --respawn || exit 1
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || { echo "exporter not ready" >&2; exit 1; }
dport=$(vm_port dev)
ug_spawn tcpdump 900 tcpdump -i lo -U -B 65536 -w "$W/both.pcap" "tcp port $dport"
sleep 1

echo "bench-usbdump-proxy: ${mib} MiB disk, $reads whole-disk reads (1 MiB) and $small reads of 4 KiB per variant; TCG; guest clock (10 ms)"
printf '%-8s %-24s %8s %10s\n' path "read MB/s (each)" median "4KiB tr/s"

# run_variant NAME PORT: one consumer VM connected to 127.0.0.1:PORT.
run_variant() {
	name=$1
	vm_consumer_start "con-$name" --script "$guest" --env UG_READS="$reads" \
		--env UG_SMALL="$small" || exit 1
	vm_wait_for "con-$name" '^UG-RUN start' 120 >/dev/null || exit 1
	vm_redir_attach "con-$name" "$2" || exit 1
	line=$(vm_wait_for "con-$name" '^UG-RESULT small ' 900) || { echo "$name: no result" >&2; exit 1; }
	each=$(vm_lines "con-$name" '^UG-RESULT read ' | while read -r l; do vm_field "$l" mbps; done | tr '\n' ' ')
	med=$(echo "$each" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	tps=$(vm_field "$line" tps)
	printf '%-8s %-24s %8s %10s\n' "$name" "$each" "$med" "$tps"
	echo "$med $tps" >"$W/result-$name"
	vm_stop "con-$name"
}

run_variant direct "$dport"
# usbredirect respawns in the device VM; wait until it listens again.
vm_wait_for dev '^UG-EXPORTER-READY n=2' 120 >/dev/null || { echo "exporter not respawned" >&2; exit 1; }
pport=$(ug_free_port)
ug_spawn usbdump 900 "$usbdump" --listen "$pport" --connect "127.0.0.1:$dport" -w "$W/proxy.pcap" -q
(
	while :; do
		p=$(cat "$W/usbdump.pid" 2>/dev/null)
		# ug_spawn's PID is timeout's; usbdump is its child.
		c=$(pgrep -P "$p" usbdump 2>/dev/null | head -n 1)
		[ -n "$c" ] && sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$c/status" 2>/dev/null
		sleep 0.5
	done
) >"$W/rss.log" &
echo $! >"$W/rss.pid"
run_variant proxy "$pport"
sleep 1
ug_kill_pidfile "$W/usbdump.pid"
ug_kill_pidfile "$W/rss.pid"
read -r d_med d_tps <"$W/result-direct"
read -r p_med p_tps <"$W/result-proxy"
awk -v a="$d_med" -v s="$p_med" -v at="$d_tps" -v st="$p_tps" 'BEGIN {
	printf "ratio proxy/direct: read %.2fx, 4 KiB transfers/s %.2fx (target >= 0.95x)\n",
		(a > 0 ? s / a : 0), (at > 0 ? st / at : 0) }'
# Samples below 1 MiB are the moment of exec, before usbdump itself runs.
awk '$1 >= 1024 { n++; v[n] = $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
	END { if (!n) { print "usbdump RSS: no samples"; exit }
	printf "usbdump RSS over its session: %d samples every 0.5 s: first %d KiB, at 1/4 %d, at 1/2 %d, last %d; min %d, max %d KiB\n",
		n, v[1], v[int(n / 4) + 1], v[int(n / 2) + 1], v[n], min, max }' "$W/rss.log"

# Part 2: reading the capture of both sessions.
ug_kill_pidfile "$W/tcpdump.pid"
vm_stop dev
size=$(stat -c %s "$W/both.pcap")
cat "$W/both.pcap" >/dev/null # every reader starts with the file in the page cache
# best3 NAME CMD...: the best of three runs; "SECONDS MAXRSS_KIB" into $W/NAME.
best3() {
	_name=$1
	shift
	for _i in 1 2 3; do
		/usr/bin/time -f '%e %M' -o "$W/t.out" "$@" >/dev/null 2>"$W/$_name.log"
		echo "$? $(cat "$W/t.out")"
	done | sort -k2 -n | head -n 1 >"$W/$_name"
}
best3 tcpdump tcpdump -r "$W/both.pcap" -w /dev/null
best3 null "$usbdump" -r "$W/both.pcap" -q -w /dev/null
best3 file "$usbdump" -r "$W/both.pcap" -q -w "$W/fromcap.pcap"
read -r rc_t t_tcpdump m_tcpdump <"$W/tcpdump"
read -r rc_n t_null m_null <"$W/null"
read -r rc_f t_file m_file <"$W/file"
awk -v sz="$size" -v a="$t_tcpdump" -v b="$t_null" -v c="$t_file" -v mb2="$m_null" -v mc="$m_file" \
	-v rn="$rc_n" -v rf="$rc_f" 'BEGIN {
	mb = sz / 1000000
	if (a <= 0) a = 0.01
	if (b <= 0) b = 0.01
	if (c <= 0) c = 0.01
	printf "capture of %.0f MB (best of 3, wall clock): tcpdump -r X -w /dev/null %.2f s (%.0f MB/s)\n", mb, a, mb / a
	printf "  usbdump -r X -q -w /dev/null %.2f s (%.0f MB/s, exit %d): %.2fx, max RSS %.1f MiB\n", b, mb / b, rn, a / b, mb2 / 1024
	printf "  usbdump -r X -q -w FILE      %.2f s (%.0f MB/s, exit %d): %.2fx, max RSS %.1f MiB (targets >= 0.5x, <= 32 MiB)\n", c, mb / c, rf, a / c, mc / 1024 }'
tail -n 2 "$W/file.log"
