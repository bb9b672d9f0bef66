#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbdump-storage.sh: usbdump as a proxy between the consumer VM and usbredirect's usb-storage: data intact, pcap Wireshark-complete.
#
# The consumer VM's usb-redir connects to usbdump, which connects to Debian's
# usbredirect exporting QEMU's emulated usb-storage in the device VM. The
# guest reads the whole disk through the proxy. Alongside: tcpdump records the
# usbdump <-> device VM leg on lo, `usbdump -i lo` decodes the same leg live
# (and is killed with SIGKILL), and QEMU's own pcap= logs its view. Then:
# tshark on our pcap, QEMU's records against ours, `usbdump -r` of the tcpdump
# capture against the proxy's output, and the Lua dissector on the raw record.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

USBDUMP=$UG_BUILDDIR/usbdump/usbdump
RECS="python3 $UG_SRCDIR/tests/integration/usbmon-records.py"
LUA=$UG_SRCDIR/dissectors/usbredir.lua
W=$UG_VM_WORK
tap_plan 16
# tcount FILE FILTER: frames matching FILTER; "tshark-failed" when tshark
# rejects the file or the filter (so a typo cannot pass as 0).
tcount() {
	if tshark -r "$1" -Y "$2" -T fields -e frame.number >"$W/tc.out" 2>"$W/tc.err"; then
		wc -l <"$W/tc.out"
	else
		echo "tshark-failed: $(grep -v 'Running as user' "$W/tc.err" | head -2)"
	fi
}
t_start=$(ug_now)

[ -x "$USBDUMP" ] || tap_bail "usbdump not built ($USBDUMP)"
command -v tshark >/dev/null || tap_bail "tshark is missing (Debian package tshark)"
command -v tcpdump >/dev/null || tap_bail "tcpdump is missing (Debian package tcpdump)"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

vm_disk_image "$W/disk.img" 8
vm_device_start dev --disk "$W/disk.img" || tap_bail "cannot start the device VM"
vm_consumer_start con --script storage || tap_bail "cannot start the consumer VM"
dport=$(vm_port dev)
pport=$(ug_free_port)

# tcpdump sees the proxy's leg to the device VM (hostfwd on lo).
ug_spawn tcpdump 300 tcpdump -i lo -U -B 65536 -w "$W/lo.pcap" "tcp port $dport"
ug_spawn live 300 "$USBDUMP" -i lo -q -w "$W/live.pcap" "tcp port $dport"
for _ in $(seq 50); do
	grep -q 'listening on' "$W/tcpdump.log" 2>/dev/null && grep -q 'capturing on' "$W/live.log" 2>/dev/null && break
	sleep 0.1
done

ug_spawn usbdump 300 sh -c "exec '$USBDUMP' --listen 127.0.0.1:$pport --connect 127.0.0.1:$dport \
	-w '$W/proxy.pcap' --raw '$W/proxy.raw' --json >'$W/proxy.json'"

vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_fail "usbredirect listens in the device VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_fail "consumer VM reaches its test script"
# usb-redir with QEMU's own pcap log, hot-plugged, connecting to usbdump.
vm_qmp con \
	"{\"execute\": \"chardev-add\", \"arguments\": {\"id\": \"chr-redir0\", \"backend\": {\"type\": \"socket\", \"data\": {\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"$pport\"}}, \"server\": false}}}}" \
	"{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"usb-redir\", \"chardev\": \"chr-redir0\", \"id\": \"redir0\", \"bus\": \"xhci.0\", \"pcap\": \"$W/qemu.pcap\"}}" >/dev/null

# 1: data through the proxy
line=$(vm_wait_for con '^UG-RESULT sha256=' 180)
tap_is "the guest reads the whole disk through usbdump: sha256 matches" \
	"$(vm_field "$line" sha256)" "$(sha256sum <"$W/disk.img" | cut -c1-64)"
rline=$(vm_lines con '^UG-RESULT read ' | head -n 1)
line=$(vm_wait_for con '^UG-DONE' 120)
tap_is "the guest script succeeded" "$(vm_field "$line" rc)" 0

# 2: the live capture is killed hard mid-flight: its pcap must stay readable.
# live.pid is timeout's PID (ug_spawn); usbdump is its child, and SIGKILL
# must hit usbdump itself (timeout cannot pass SIGKILL on).
live=$(pgrep -P "$(cat "$W/live.pid")" usbdump | head -n 1)
if [ -n "$live" ] && kill -KILL "$live"; then
	for _ in $(seq 50); do kill -0 "$live" 2>/dev/null || break; sleep 0.1; done
else
	tap_diag "no usbdump process under $(cat "$W/live.pid") to kill"
fi
wait "$(cat "$W/live.pid")" 2>/dev/null
live_rc=$?
n=$(tcount "$W/live.pcap" usbms)
if [ "$live_rc" = 137 ] && [ "$n" -gt 0 ] 2>/dev/null; then
	tap_ok "usbdump -i lo killed with SIGKILL leaves a readable pcap ($n USBMS frames)"
else
	tap_fail "usbdump -i lo killed with SIGKILL leaves a readable pcap" "exit $live_rc (want 137), $n USBMS frames" "$(tail -5 "$W/live.log")"
fi

# 3: the proxy ends with the session (the consumer VM powered off).
vm_wait_exit con 60 || vm_stop con
for _ in $(seq 100); do kill -0 "$(cat "$W/usbdump.pid")" 2>/dev/null || break; sleep 0.1; done
wait "$(cat "$W/usbdump.pid")" 2>/dev/null
rc=$?
tap_is "usbdump exits 0 when the session ends" "$rc" 0
tap_diag "usbdump said:" "$(cat "$W/usbdump.log")"
ug_stop_tcpdump "$(cat "$W/tcpdump.pid")" || tap_diag "tcpdump still runs 10 s after SIGINT"

# 4: tshark on our pcap
total=$(tcount "$W/proxy.pcap" frame)
# The one known malformed payload: QEMU's usb-storage answers Mode Sense(10)
# with fewer bytes than its Mode Data Length says (testing.md); only the
# device-to-host frames of that SCSI command are excused.
MS10='(scsi.spc.opcode == 0x5a || scsi_sbc.opcode == 0x5a) && usb.endpoint_address.direction == 1'
bad=$(tcount "$W/proxy.pcap" "_ws.malformed && !($MS10)")
excused=$(tcount "$W/proxy.pcap" "_ws.malformed && $MS10")
tap_is "tshark: no malformed frames in $total ($excused Mode Sense(10) data frames excused)" "$bad" 0
set -- $($RECS pairs "$W/proxy.pcap")
tap_is "every completion has its submit ($1 submits, $2 completions)" "$3" 0
n=$(tcount "$W/proxy.pcap" 'usb.bDescriptorType == 0x01 && usb.idVendor == 0x46f4')
m=$(tcount "$W/proxy.pcap" 'usb.bDescriptorType == 0x02 && usb.bInterfaceClass == 0x08')
if [ "$n" -gt 0 ] 2>/dev/null && [ "$m" -gt 0 ] 2>/dev/null; then
	tap_ok "device ($n) and configuration ($m) descriptors decode"
else
	tap_fail "device and configuration descriptors decode" "device $n, configuration $m"
fi
n=$(tcount "$W/proxy.pcap" 'usbms.dCBWSignature')
r=$(tcount "$W/proxy.pcap" 'scsi_sbc.opcode == 0x28')
if [ "$n" -gt 0 ] 2>/dev/null && [ "$r" -gt 0 ] 2>/dev/null; then
	tap_ok "USB mass storage decoded: $n CBWs, $r SCSI READ(10) frames"
else
	tap_fail "USB mass storage decoded" "CBWs $n, READ(10) $r"
fi
# Transfers: every usbmon completion stems from a host->guest data packet or
# a configuration/alt-setting status (synthesized control transfer).
comp=$($RECS list "$W/proxy.pcap" | grep -c '^C')
pk=$(grep -c '"dir":"h2g","type":"\(control_packet\|bulk_packet\|iso_packet\|interrupt_packet\|buffered_bulk_packet\|configuration_status\|alt_setting_status\)"' "$W/proxy.json")
tap_is "transfers in the pcap equal decoded host->guest data/status packets in --json" "$comp" "$pk"

# 5: QEMU's own view agrees with ours where it has one.
if [ -s "$W/qemu.pcap" ]; then
	out=$($RECS qemu "$W/qemu.pcap" "$W/proxy.pcap")
	set -- $out
	if [ "$2" = "$4" ] && [ "$2" -gt 0 ]; then
		tap_ok "QEMU's pcap= records all found in ours, same setup, direction, data ($out)"
	else
		tap_fail "QEMU's pcap= records all found in ours" "$out"
	fi
else
	tap_fail "QEMU's pcap= records all found in ours" "QEMU wrote no pcap"
fi

# 6: usbdump -r of the tcpdump capture gives the same transfers as the proxy.
# On a loaded machine the kernel may drop frames of a live capture, tcpdump's
# too; usbdump -r must then report the gap (exit 4) and agree up to it.
"$USBDUMP" -r "$W/lo.pcap" -w "$W/fromcap.pcap" --json >"$W/fromcap.json" 2>"$W/fromcap.log"
rc=$?
$RECS list "$W/proxy.pcap" >"$W/proxy.list"
$RECS list "$W/fromcap.pcap" >"$W/fromcap.list"
sed 's/"ts":[^,]*,//; s/"session":[0-9]*,//' "$W/proxy.json" >"$W/a.json"
sed 's/"ts":[^,]*,//; s/"session":[0-9]*,//' "$W/fromcap.json" >"$W/b.json"
# agree A B: how many first lines of B equal those of A.
agree() { awk 'NR == FNR { a[FNR] = $0; next } { if (a[FNR] != $0) { print FNR - 1; found = 1; exit } } END { if (!found) print FNR }' "$1" "$2"; }
if grep -q 'bytes missing' "$W/fromcap.log"; then
	tap_diag "tcpdump lost frames: $(grep 'dropped by kernel' "$W/tcpdump.log")"
	tap_is "usbdump -r of a capture with lost frames reports the gap with exit 4" "$rc" 4
	n=$(agree "$W/proxy.list" "$W/fromcap.list")
	if [ "$n" -ge 20 ] 2>/dev/null; then
		tap_ok "usbdump -r yields the proxy's usbmon records up to the gap ($n records)"
	else
		tap_fail "usbdump -r yields the proxy's usbmon records up to the gap" "$n agree"
	fi
	n=$(agree "$W/a.json" "$W/b.json")
	if [ "$n" -ge 20 ] 2>/dev/null; then
		tap_ok "usbdump -r decodes the same usbredir packets up to the gap ($n)"
	else
		tap_fail "usbdump -r decodes the same usbredir packets up to the gap" "$n agree"
	fi
else
	tap_is "usbdump -r of the tcpdump capture exits 0" "$rc" 0
	[ $rc = 0 ] || tap_diag "$(cat "$W/fromcap.log")"
	if cmp -s "$W/proxy.list" "$W/fromcap.list"; then
		tap_ok "usbdump -r yields the same usbmon records as the proxy ($(wc -l <"$W/proxy.list") records)"
	else
		tap_fail "usbdump -r yields the same usbmon records as the proxy" "$(diff "$W/proxy.list" "$W/fromcap.list" | head -5 | cut -c1-200)"
	fi
	tap_check "usbdump -r decodes the same usbredir packets (--json without times)" cmp -s "$W/a.json" "$W/b.json"
fi

# 7: the raw record
n=$($RECS rawcount "$W/proxy.raw")
p=$(grep -c '"dir"' "$W/proxy.json")
tap_is "the raw record holds every decoded packet ($(tcount "$W/proxy.raw" frame) frames)" "$n" "$p"
if [ -f "$LUA" ]; then
	bad=$(tshark -X "lua_script:$LUA" -r "$W/proxy.raw" -Y '_ws.malformed' 2>&1 | grep -vc 'Running as user')
	dec=$(tshark -X "lua_script:$LUA" -r "$W/proxy.raw" -Y usbredir 2>/dev/null | wc -l)
	tap_is "the Lua dissector decodes the raw record without malformed packets ($dec usbredir frames)" "$bad" 0
else
	tap_skip "Lua dissector on the raw record" "dissectors/usbredir.lua is not in this tree yet"
fi

# 8: the live capture decoded the same session, up to where it was killed.
# On a loaded machine libpcap may drop frames of the live capture (they show
# as gaps in its log); then only the records before the first gap must agree.
$RECS list "$W/live.pcap" >"$W/live.list"
n=$(wc -l <"$W/live.list")
same=$(agree "$W/proxy.list" "$W/live.list")
if grep -q 'bytes missing' "$W/live.log"; then
	tap_diag "the live capture lost frames: $(grep -c 'bytes missing' "$W/live.log") gaps"
	if [ "$same" -ge 20 ] 2>/dev/null; then
		tap_ok "usbdump -i lo decoded the same records as the proxy up to its first gap ($same of $n)"
	else
		tap_fail "usbdump -i lo decoded the same records as the proxy up to its first gap" "$same of $n"
	fi
elif [ "$n" -gt 0 ] && [ "$same" = "$n" ]; then
	tap_ok "usbdump -i lo decoded the same records as the proxy ($n before SIGKILL)"
else
	tap_fail "usbdump -i lo decoded the same records as the proxy" "$same of $n agree"
fi

vm_wait_exit dev 60 || vm_stop dev
tap_diag "guest read through usbdump: $(vm_field "$rline" mbps) MB/s" \
	"records: $(wc -l <"$W/proxy.list"), frames in tcpdump capture: $(tcount "$W/lo.pcap" frame)" \
	"whole test: $(ug_since "$t_start")s"
