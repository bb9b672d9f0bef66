#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-vm.sh: records a flash drive on the VM rig, replays it to a fresh VM and replays the guest against the device.
#
# (a) The consumer guest reads QEMU's emulated usb-storage through Debian's
#     usbredirect in the device VM; a recording proxy built on libusbgate
#     (ug-recproxy.c) writes the raw record. usbreplay --listen then plays
#     the recording to a fresh consumer VM, which must enumerate the same
#     descriptors and read the same disk with the same sha256.
# (b) usbreplay --guest replays the recorded guest against usbredirect
#     exporting the same device: no divergence, exit 0, JUnit without failures.
# (c) One data byte changed in the capture: exit 1 naming the record and the
#     transfer. The capture cut short: exit 3 with a message naming the record.
# Several VMs under TCG: allow for a loaded machine.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-480}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"

tap_plan 13
t_start=$(ug_now)
[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built"
ur_build_proxy || tap_bail "cannot build the recording proxy: $(cat "$UG_VM_WORK/ug-recproxy.build.log")"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
raw=$UG_VM_WORK/storage.raw.pcap

vm_disk_image "$UG_VM_WORK/disk.img" 1
disk_sum=$(sha256sum <"$UG_VM_WORK/disk.img" | cut -c1-64)
vm_device_start dev --disk "$UG_VM_WORK/disk.img" --respawn || tap_bail "cannot start the device VM"
vm_consumer_start con --script storage --env UG_READS=0 || tap_bail "cannot start the consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "usbredirect does not listen in the device VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM does not reach its script"

# (a) record through the proxy.
p=$(ug_free_port)
ug_spawn proxy 240 "$UG_VM_WORK/ug-recproxy" "127.0.0.1:$p" "127.0.0.1:$(vm_port dev)" \
	"$raw" "$UG_VM_WORK/storage.usbmon.pcap"
ug_wait_match "$UG_VM_WORK/proxy.log" 'listening' 10 || tap_bail "the recording proxy does not listen"
vm_redir_attach con "$p" || tap_fail "usb-redir hot-plugged into the consumer VM"
rec_sum=$(vm_field "$(vm_wait_for con '^UG-RESULT sha256=' 120)" sha256)
tap_is "the recorded guest read the disk through usbredirect" "$rec_sum" "$disk_sum"
vm_wait_for con '^UG-DONE' 60 >/dev/null
vm_wait_exit con 60 || vm_stop con
ug_wait_gone "$UG_VM_WORK/proxy.pid" 30 || ug_kill_pidfile "$UG_VM_WORK/proxy.pid"
size=$(stat -c %s "$raw" 2>/dev/null || echo 0)
tap_check "the recording was written ($size bytes)" test "$size" -gt 100000

# (a) replay to a fresh consumer VM.
vm_consumer_start con2 --script storage --env UG_READS=0 || tap_bail "cannot start the second consumer VM"
vm_wait_for con2 '^UG-RUN start' 120 >/dev/null || tap_bail "the second consumer VM does not reach its script"
q=$(ug_free_port)
ug_spawn replay 240 sh -c '"$0" "$@" >"'"$UG_VM_WORK"'/replay.out"; echo $? >"'"$UG_VM_WORK"'/replay.rc"' \
	"$UR_BIN" -v --listen "127.0.0.1:$q" "$raw"
ug_wait_match "$UG_VM_WORK/replay.log" 'listening on' 10 || tap_bail "usbreplay does not listen"
vm_redir_attach con2 "$q" || tap_fail "usb-redir hot-plugged into the second consumer VM"
line=$(vm_wait_for con2 '^UG-ENUM' 120)
tap_is "the fresh guest enumerates the replayed device" "$(vm_field "$line" id)" 46f4:0001
sum2=$(vm_field "$(vm_wait_for con2 '^UG-RESULT sha256=' 120)" sha256)
tap_is "the fresh guest reads the same disk (sha256)" "$sum2" "$rec_sum"
tap_is "with the same descriptors" "$(vm_lines con2 '^UG-DESC')" "$(vm_lines con '^UG-DESC')"
tap_is "and the same disk size" "$(vm_lines con2 '^UG-DISK' | sed 's/ uptime=.*//')" \
	"$(vm_lines con '^UG-DISK' | sed 's/ uptime=.*//')"
vm_wait_for con2 '^UG-DONE' 60 >/dev/null
vm_wait_exit con2 60 || vm_stop con2
ug_wait_gone "$UG_VM_WORK/replay.pid" 30
tap_is "usbreplay in device mode found no divergence (exit 0)" "$(cat "$UG_VM_WORK/replay.rc" 2>/dev/null)" 0
tap_diag "$(tail -n 1 "$UG_VM_WORK/replay.out" 2>/dev/null)"

# (b) guest mode against usbredirect, respawned for each client.
wait_exporter() {
	_i=0
	while [ "$(ur_count dev '^UG-EXPORTER-READY')" -lt "$1" ] && [ $_i -lt 600 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
}
wait_exporter 2
timeout 120 "$UR_BIN" --guest --connect "127.0.0.1:$(vm_port dev)" --junit "$UG_VM_WORK/guest.xml" \
	"$raw" >"$UG_VM_WORK/guest.out" 2>&1
rc=$?
tap_is "usbreplay --guest against usbredirect: no divergence (exit 0)" "$rc" 0
[ $rc = 0 ] || tap_diag "$(head -n 40 "$UG_VM_WORK/guest.out")"
tap_check "its JUnit report has no failure" grep -q 'failures="0"' "$UG_VM_WORK/guest.xml"

# (c) one byte of the disk's data changed in a copy of the capture.
rec_no=$(python3 - "$raw" "$UG_VM_WORK/bad.pcap" <<'PY'
import struct, sys
src, dst = sys.argv[1], sys.argv[2]
f = bytearray(open(src, 'rb').read())
off, n, pick = 24, 0, None
while off + 16 <= len(f):
    cap = struct.unpack_from('<I', f, off + 8)[0]
    body = off + 16 + 48
    n += 1
    # host->guest bulk_packet (101) answers carrying data: the last big one.
    if f[off + 16 + 29] == 1 and struct.unpack_from('<I', f, body)[0] == 101 and cap > 48 + 16 + 10 + 4096:
        pick = (n, body + cap - 48 - 100)
    off += 16 + cap
if pick:
    f[pick[1]] ^= 0xff
    open(dst, 'wb').write(f)
    print(pick[0])
PY
)
wait_exporter 3
timeout 120 "$UR_BIN" --guest --connect "127.0.0.1:$(vm_port dev)" "$UG_VM_WORK/bad.pcap" \
	>"$UG_VM_WORK/bad.out" 2>&1
rc=$?
tap_is "one changed data byte: exit 1" "$rc" 1
if grep -q "^divergence 1: record $rec_no, request .*bulk_packet ep 0x81" "$UG_VM_WORK/bad.out" &&
	grep -q "data differs at byte" "$UG_VM_WORK/bad.out"; then
	tap_ok "the report names record $rec_no and the bulk IN transfer"
else
	tap_fail "the report names record $rec_no and the bulk IN transfer" "$(head -n 20 "$UG_VM_WORK/bad.out")"
fi

head -c $((size - 1000)) "$raw" >"$UG_VM_WORK/cut.pcap"
"$UR_BIN" --listen 127.0.0.1:0 "$UG_VM_WORK/cut.pcap" >"$UG_VM_WORK/cut.out" 2>&1
rc=$?
tap_is "a truncated capture: exit 3" "$rc" 3
if grep -q 'capture unusable: .*record [0-9]*: .*truncated' "$UG_VM_WORK/cut.out"; then
	tap_ok "with a message naming the record ($(cat "$UG_VM_WORK/cut.out"))"
else
	tap_fail "with a message naming the record" "$(cat "$UG_VM_WORK/cut.out")"
fi

vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
