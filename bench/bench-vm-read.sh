#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-vm-read.sh: guest-visible read MB/s of a redirected USB disk, per exporter / in-path proxy, against usbredirect.
#
# Each variant boots its own device VM (exporter inside) and consumer VM
# (usb-redir), and the consumer reads the whole disk UG_BENCH_READS times
# with O_DIRECT; the figure is the median. The first variant is the anchor
# (Debian's usbredirect, connected directly) and every variant is also shown
# as a ratio to it, measured in the same run.
#
# Run from the build dir: make bench-vm
#   or: UG_SRCDIR=.. UG_BUILDDIR=. sh ../bench/bench-vm-read.sh
# Environment:
#   UG_BENCH_MIB      disk size (default 32)
#   UG_BENCH_READS    timed reads per variant (default 3)
#   UG_BENCH_VARIANTS more variants, one per line:
#       NAME|EXPORTER-CMD|FILES|PROXY-CMD
#     EXPORTER-CMD runs in the device VM (empty: usbredirect on the disk,
#     port 4000); FILES are overlay items for it (see tests/vm/README.md),
#     e.g. prog=$UG_BUILDDIR/usbredirsrv/usbredirsrv; PROXY-CMD (optional)
#     runs on the host between the consumer and the device VM, with @LISTEN@
#     and @TARGET@ replaced by its listening port and the device VM's port.
#   Example, usbdump in the path:
#     UG_BENCH_VARIANTS='usbdump-proxy|||usbdump/usbdump --listen 127.0.0.1:@LISTEN@ --connect 127.0.0.1:@TARGET@'
# Several VM pairs one after the other: the whole-run bound is per variant.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-1800}
. "${UG_SRCDIR:-$(dirname "$0")/..}/tests/vm/lib.sh"

mib=${UG_BENCH_MIB:-32}
reads=${UG_BENCH_READS:-3}
variants="usbredirect|||
${UG_BENCH_VARIANTS:-}"

vm_guest || { echo "bench-vm-read: cannot build the guest" >&2; exit 1; }
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" "$mib"
echo "bench-vm-read: ${mib} MiB disk, $reads O_DIRECT reads per variant, TCG, guest clock (10 ms)"
printf '%-20s %-28s %8s %6s %s\n' variant "read MB/s (each)" median ratio "boot dev/con (s)"

anchor=""
i=0
echo "$variants" | while IFS='|' read -r name exporter files proxy; do
	[ -n "$name" ] || continue
	i=$((i + 1))
	dev=d$i
	con=c$i
	set -- --disk "$img"
	[ -n "$exporter" ] && set -- "$@" --exporter "$exporter"
	for f in $files; do set -- "$@" --files "$f"; done
	vm_device_start "$dev" "$@" || exit 1
	vm_consumer_start "$con" --script storage --env UG_READS="$reads" || exit 1
	vm_wait_for "$dev" '^UG-EXPORTER-READY' 120 >/dev/null || { echo "$name: exporter not ready" >&2; exit 1; }
	vm_wait_for "$con" '^UG-RUN start' 120 >/dev/null || exit 1
	port=$(vm_port "$dev")
	if [ -n "$proxy" ]; then
		lport=$(ug_free_port)
		cmd=$(echo "$proxy" | sed "s/@LISTEN@/$lport/g; s/@TARGET@/$port/g")
		# shellcheck disable=SC2086
		(cd "$UG_BUILDDIR" && ug_spawn "proxy$i" 600 $cmd)
		sleep 1
		port=$lport
	fi
	vm_redir_attach "$con" "$port" || exit 1
	vm_wait_for "$con" '^UG-RESULT sha256=' 600 >/dev/null || { echo "$name: no result" >&2; exit 1; }
	each=$(vm_lines "$con" '^UG-RESULT read ' | while read -r l; do vm_field "$l" mbps; done | tr '\n' ' ')
	med=$(echo "$each" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	[ -n "$anchor" ] || anchor=$med
	ratio=$(awk -v a="$anchor" -v m="$med" 'BEGIN { printf "%.2f", (a > 0 ? m / a : 0) }')
	printf '%-20s %-28s %8s %6s %s/%s\n' "$name" "$each" "$med" "$ratio" \
		"$(vm_boot_seconds "$dev")" "$(vm_boot_seconds "$con")"
	vm_wait_exit "$con" 60 || vm_stop "$con"
	# A server-style exporter (usbredirsrv) outlives its client: stop the VM.
	vm_stop "$dev"
	[ -f "$UG_VM_WORK/proxy$i.pid" ] && ug_kill_pidfile "$UG_VM_WORK/proxy$i.pid"
done || exit 1
