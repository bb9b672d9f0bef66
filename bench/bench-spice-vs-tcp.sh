#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-spice-vs-tcp.sh: guest-visible read MB/s of one redirected disk over SPICE (usbredirsrv --spice) vs over raw usbredir TCP.
#
# One device VM exports its usb-storage with Debian's usbredirect (respawned
# after each session). Each round boots two consumer VMs one after the other,
# in alternating order so that neither path always runs first:
#   tcp    usb-redir hot-plugged on a chardev socket to the device VM (the
#          anchor: usbredirect straight into QEMU)
#   spice  usb-redir on a spicevmc chardev; usbredirsrv --spice on the host
#          joins the VM's SPICE server and the device VM's export (--from)
# Each consumer reads the whole disk UG_BENCH_READS times with O_DIRECT; a
# path's figure is the median over all its reads of all rounds, and the
# ratio spice/tcp is taken from those medians (same run, same device VM).
# Issue 7's target is >= 0.9x.
#
# Run from the build dir: UG_SRCDIR=.. UG_BUILDDIR=. sh ../bench/bench-spice-vs-tcp.sh
# Environment: UG_BENCH_MIB (disk size, default 32), UG_BENCH_READS (reads per
# consumer, default 3), UG_BENCH_ROUNDS (default 3).
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-1800}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/..}/tests/vm/lib.sh"

mib=${UG_BENCH_MIB:-32}
reads=${UG_BENCH_READS:-3}
rounds=${UG_BENCH_ROUNDS:-3}
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || { echo "bench-spice-vs-tcp: $srv is not built" >&2; exit 1; }

vm_guest || { echo "bench-spice-vs-tcp: cannot build the guest" >&2; exit 1; }
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" "$mib" || exit 1
want=$(sha256sum <"$img" | cut -c1-64)
vm_device_start dev --disk "$img" --respawn || exit 1
ug_on_exit 'vm_stop dev'
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || { echo "bench-spice-vs-tcp: exporter not ready" >&2; exit 1; }
dport=$(vm_port dev)
echo "bench-spice-vs-tcp: ${mib} MiB disk, $rounds rounds x $reads O_DIRECT reads per path, TCG, guest clock (10 ms)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# run_path PATH ROUND: one consumer VM over PATH; appends its reads to
# $UG_VM_WORK/PATH.mbps.
run_path() {
	_c=$1$2
	if [ "$1" = tcp ]; then
		vm_consumer_start "$_c" --script storage --env UG_READS="$reads" || return 1
		vm_wait_for "$_c" '^UG-RUN start' 120 >/dev/null || return 1
		# usbredirect in the device VM respawns after each session.
		vm_wait_for dev '^UG-EXPORTER-READY' 60 >/dev/null
		vm_redir_attach "$_c" "$dport" || return 1
	else
		_sp=$(ug_free_port)
		vm_consumer_start "$_c" --spice "$_sp" --script storage --env UG_READS="$reads" || return 1
		ug_wait_listen "$_sp" 60 || return 1
		ug_spawn "srv$2" 600 "$srv" --spice "spice://127.0.0.1:$_sp" --from "tcp:127.0.0.1:$dport"
	fi
	_l=$(vm_wait_for "$_c" '^UG-RESULT sha256=' 600) || { echo "$_c: no result" >&2; return 1; }
	[ "$(vm_field "$_l" sha256)" = "$want" ] || { echo "$_c: sha256 differs" >&2; return 1; }
	vm_lines "$_c" '^UG-RESULT read ' | while read -r _r; do vm_field "$_r" mbps; done >>"$UG_VM_WORK/$1.mbps"
	printf '  round %s %-5s %s MB/s\n' "$2" "$1" \
		"$(vm_lines "$_c" '^UG-RESULT read ' | while read -r _r; do vm_field "$_r" mbps; done | tr '\n' ' ')"
	vm_wait_exit "$_c" 60 || vm_stop "$_c"
	[ -f "$UG_VM_WORK/srv$2.pid" ] && ug_kill_pidfile "$UG_VM_WORK/srv$2.pid"
	return 0
}

: >"$UG_VM_WORK/tcp.mbps"
: >"$UG_VM_WORK/spice.mbps"
r=1
while [ $r -le "$rounds" ]; do
	if [ $((r % 2)) = 1 ]; then order="tcp spice"; else order="spice tcp"; fi
	for p in $order; do
		run_path "$p" "$r" || { echo "bench-spice-vs-tcp: round $r, path $p failed" >&2; exit 1; }
	done
	r=$((r + 1))
done

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
tcp=$(median "$UG_VM_WORK/tcp.mbps")
spice=$(median "$UG_VM_WORK/spice.mbps")
printf '%-6s median %8s MB/s (%s reads)\n' tcp "$tcp" "$(wc -l <"$UG_VM_WORK/tcp.mbps")"
printf '%-6s median %8s MB/s (%s reads)\n' spice "$spice" "$(wc -l <"$UG_VM_WORK/spice.mbps")"
echo "ratio spice/tcp: $(awk -v a="$spice" -v b="$tcp" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }') (target >= 0.9)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
