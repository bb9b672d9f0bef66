#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-usbreplay-vm.sh: a guest's read rate through usbredirect (recorded) against the same reads replayed by usbreplay.
#
# Run from the build dir: UG_SRCDIR=.. UG_BUILDDIR=$PWD sh ../bench/bench-usbreplay-vm.sh [MIB]
# The consumer guest reads a MIB (default 16) pattern disk whole, twice (O_DIRECT,
# timed in the guest), through usbredirect in the device VM while a
# recording proxy writes the raw record; then a fresh consumer reads it the
# same way from usbreplay --listen. The anchor is the recorded run, in the
# same script on the same machine.
. "${UG_SRCDIR:-$(dirname "$0")/..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"
mib=${1:-16}
ur_build_proxy || tap_bail "cannot build the recording proxy"
vm_guest || tap_bail "cannot build the guest"
vm_disk_image "$UG_VM_WORK/disk.img" "$mib"
vm_device_start dev --disk "$UG_VM_WORK/disk.img"
vm_consumer_start con --script storage --env UG_READS=2 --env UG_WAIT=240
vm_consumer_start con2 --script storage --env UG_READS=2 --env UG_WAIT=240
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "exporter"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "consumer"
p=$(ug_free_port)
ug_spawn proxy 400 "$UG_VM_WORK/ug-recproxy" "127.0.0.1:$p" "127.0.0.1:$(vm_port dev)" \
	"$UG_VM_WORK/rec.pcap" "$UG_VM_WORK/rec.usbmon.pcap"
ur_wait_log "$UG_VM_WORK/proxy.log" 'listening' 10 || tap_bail "proxy"
vm_redir_attach con "$p"
vm_wait_for con '^UG-DONE' 300 >/dev/null
vm_wait_exit con 60 || vm_stop con
ur_wait_pid "$UG_VM_WORK/proxy.pid" 30
vm_stop dev
q=$(ug_free_port)
t0=$(ug_now)
ug_spawn replay 400 "$UR_BIN" --listen "127.0.0.1:$q" "$UG_VM_WORK/rec.pcap"
ur_wait_log "$UG_VM_WORK/replay.log" 'listening on' 30 || tap_bail "usbreplay"
echo "usbreplay loaded $(stat -c %s "$UG_VM_WORK/rec.pcap") bytes and listens after $(ug_since "$t0") s"
vm_wait_for con2 '^UG-RUN start' 120 >/dev/null
vm_redir_attach con2 "$q"
vm_wait_for con2 '^UG-DONE' 300 >/dev/null
vm_wait_exit con2 60 || vm_stop con2
ur_wait_pid "$UG_VM_WORK/replay.pid" 30
for v in con con2; do
	vm_lines $v '^UG-RESULT (read|sha256)' | sed "s/^/$v: /"
done
r1=$(vm_lines con '^UG-RESULT read n=2' | tr ' ' '\n' | sed -n 's/^mbps=//p')
r2=$(vm_lines con2 '^UG-RESULT read n=2' | tr ' ' '\n' | sed -n 's/^mbps=//p')
echo "second whole-disk read: recorded through usbredirect ${r1:-?} MB/s, replayed by usbreplay ${r2:-?} MB/s" \
	"(ratio $(awk -v a="${r1:-0}" -v b="${r2:-0}" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "?" }'))"
tail -n 1 "$UG_VM_WORK/replay.log"
