#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbdump-spice.sh: usbdump's SPICE proxy between usbreplay --spice and QEMU -spice, checked against a tcpdump capture of the same session.
#
# A Linux consumer VM has a usb-redir device on a spicevmc chardev and waits
# for a flash drive (tests/vm guest script "storage", UG_READS=0: it reads
# the whole disk). usbreplay --spice plays tests/data/storage.raw.pcap into
# the VM's usbredir channel through usbdump --spice-listen/--spice-connect,
# while tcpdump records the usbdump <-> QEMU leg on lo. Then: the guest
# enumerated and read the replayed disk, HMP showed the device attached,
# tshark reads usbdump's pcap without malformed frames with every completion
# paired and the descriptors decoded, usbdump -r of the tcpdump capture
# gives the same usbmon records as the proxy did, and LZ4-compressed
# SPICEVMC messages went by (counted by tshark's SPICE dissector, message
# type 102, and decoded by usbdump). Then TLS: a SeaBIOS-only QEMU with a
# SPICE tls-port, usbreplay --spice spice+tls:// through usbdump terminating
# TLS on both legs (a throwaway test CA): the device attaches and the
# session is decoded in plaintext.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

USBDUMP=$UG_BUILDDIR/usbdump/usbdump
UR_BIN=$UG_BUILDDIR/usbreplay/usbreplay
RECS="python3 $UG_SRCDIR/tests/integration/usbmon-records.py"
W=$UG_VM_WORK
tap_plan 16
tcount() {
	if tshark -r "$1" $3 -Y "$2" -T fields -e frame.number >"$W/tc.out" 2>"$W/tc.err"; then
		wc -l <"$W/tc.out"
	else
		echo "tshark-failed: $(grep -v 'Running as user' "$W/tc.err" | head -2)"
	fi
}

[ -x "$USBDUMP" ] || tap_bail "usbdump is not built ($USBDUMP)"
[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built ($UR_BIN)"
for t in tshark tcpdump python3 openssl "$UG_QEMU"; do
	command -v "$t" >/dev/null || tap_bail "$t is missing (scripts/setup installs it)"
done
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

# Usage: the SPICE proxy needs both addresses; TLS termination needs its
# certificate, key and both TLS addresses.
"$USBDUMP" --spice-listen 127.0.0.1:1 -q >"$W/usage.out" 2>&1
r1=$?
"$USBDUMP" --spice-listen 127.0.0.1:1 --spice-connect 127.0.0.1:2 --tls-cert x.pem -q \
	>>"$W/usage.out" 2>&1
r2=$?
tap_check "usage errors exit 2 ($r1, $r2) and say what is missing" \
	sh -c "[ $r1 = 2 ] && [ $r2 = 2 ] && grep -q 'needs both --spice-listen and --spice-connect' '$W/usage.out' && grep -q 'TLS termination needs' '$W/usage.out'"

sp=$(ug_free_port)
vm_consumer_start con --spice "$sp" --script storage --env UG_READS=0 ||
	tap_bail "cannot start the consumer VM"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM does not reach its script"

ug_spawn tcpdump 300 tcpdump -i lo -U -w "$W/session.pcap" "tcp port $sp"
ug_wait_match "$W/tcpdump.log" 'listening on' 10 || tap_bail "tcpdump does not start"

pp=$(ug_free_port)
ug_spawn usbdump 280 sh -c '"$0" "$@" >"'"$W"'/dump.json"; echo $? >"'"$W"'/dump.rc"' \
	"$USBDUMP" --spice-listen "127.0.0.1:$pp" --spice-connect "127.0.0.1:$sp" \
	-w "$W/proxy.pcap" --raw "$W/proxy.raw" --json
ug_wait_match "$W/usbdump.log" 'listening on' 10 || tap_bail "usbdump does not listen"

ug_spawn replay 240 "$UR_BIN" -v --spice "spice://127.0.0.1:$pp" "$UG_SRCDIR/tests/data/storage.raw.pcap"
line=$(vm_wait_for con '^UG-ENUM' 120)
tap_is "the guest enumerates the replayed flash drive through usbdump" "$(vm_field "$line" id)" 46f4:0001
info=$(vm_info_usb con)
tap_check "HMP info usb: redir0 attached (${info:-no answer})" \
	sh -c "printf '%s' '$info' | grep -q 'ID: redir0' && ! printf '%s' '$info' | grep -q 'Speed 1.5 Mb/s.*ID: redir0'"
sum=$(vm_field "$(vm_wait_for con '^UG-RESULT sha256=' 120)" sha256)
# The recording is of tests/vm/ugvm.py's 1 MiB pattern disk (tests/data/README).
vm_disk_image "$W/disk.img" 1
disk_sum=$(sha256sum <"$W/disk.img" | cut -c1-64)
tap_is "the guest read the recorded disk whole through usbdump (sha256)" "${sum:-none}" "$disk_sum"
vm_wait_for con '^UG-DONE' 60 >/dev/null
vm_wait_exit con 60 || vm_stop con
ug_wait_gone "$W/replay.pid" 30 || ug_kill_pidfile "$W/replay.pid"
ug_wait_gone "$W/usbdump.pid" 30
rc=$(cat "$W/dump.rc" 2>/dev/null)
tap_is "usbdump exits 0 when the SPICE session ends" "${rc:-still running}" 0
[ "${rc:-}" = 0 ] || tap_diag "$(tail -n 20 "$W/usbdump.log")"
ug_kill_pidfile "$W/usbdump.pid"
ug_stop_tcpdump "$(cat "$W/tcpdump.pid")"

# tshark on usbdump's pcap.
total=$(tcount "$W/proxy.pcap" frame)
# QEMU's usb-storage answers Mode Sense(10) with fewer bytes than its Mode
# Data Length says (testing.md): those device-to-host frames are excused.
MS10='(scsi.spc.opcode == 0x5a || scsi_sbc.opcode == 0x5a) && usb.endpoint_address.direction == 1'
bad=$(tcount "$W/proxy.pcap" "_ws.malformed && !($MS10)")
tap_is "tshark: no malformed frames in usbdump's pcap ($total frames)" "$bad" 0
set -- $($RECS pairs "$W/proxy.pcap")
tap_is "every completion has its submit (${1:-?} submits, ${2:-?} completions)" "${3:-none}" 0
n=$(tcount "$W/proxy.pcap" 'usb.bDescriptorType == 0x01 && usb.idVendor == 0x46f4')
m=$(tcount "$W/proxy.pcap" 'usb.bDescriptorType == 0x02 && usb.bInterfaceClass == 0x08')
tap_check "device ($n) and configuration ($m) descriptors decode" \
	sh -c "[ '$n' -gt 0 ] && [ '$m' -gt 0 ]" 2>/dev/null

# The same session from the tcpdump capture.
"$USBDUMP" -r "$W/session.pcap" -w "$W/file.pcap" -q >"$W/file.out" 2>"$W/file.err"
frc=$?
tap_is "usbdump -r of the tcpdump capture exits 0" "$frc" 0
[ "$frc" = 0 ] || tap_diag "$(tail -n 20 "$W/file.err")"
$RECS list "$W/proxy.pcap" >"$W/proxy.list" 2>&1
$RECS list "$W/file.pcap" >"$W/file.list" 2>&1
np=$(wc -l <"$W/proxy.list")
tap_check "usbdump -r of the capture gives the same $np usbmon records as the SPICE proxy" \
	sh -c "[ '$np' -gt 100 ] && cmp -s '$W/proxy.list' '$W/file.list'"
cmp -s "$W/proxy.list" "$W/file.list" || tap_diag "$(diff "$W/proxy.list" "$W/file.list" | head -n 10)"

# The LZ4 path: tshark's SPICE dissector counts COMPRESSED_DATA (type 102)
# on the usbredir channels, usbdump decoded as many.
lz=$(tshark -r "$W/session.pcap" -d "tcp.port==$sp,spice" -T fields -e spice.message_type 2>/dev/null |
	tr ',' '\n' | grep -c '^102$')
ours=$(sed -n 's/.* SPICE (.*usbredir channels, .* other channels, \([0-9]*\) LZ4 messages).*/\1/p' "$W/file.err")
tap_check "LZ4: tshark sees ${lz:-0} SPICEVMC_COMPRESSED_DATA messages, usbdump decoded ${ours:-none}" \
	sh -c "[ '${lz:-0}' -gt 0 ] && [ '${ours:-0}' -gt 0 ]"
nj=$(grep -c '^{' "$W/dump.json")
tap_check "usbdump --json printed $nj packet lines" test "$nj" -gt 100
tap_diag "usbdump -r said:" "$(grep -v '^$' "$W/file.err" | tail -n 4)"
ours=$(sed -n 's/.*SPICE: .* \([0-9]*\) LZ4 messages host->guest.*/\1/p' "$W/usbdump.log")
tap_check "the SPICE proxy decoded ${ours:-no} LZ4 messages from usbreplay" test "${ours:-0}" -gt 0

# ---- TLS terminated by usbdump ----------------------------------------------------
pki=$W/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=usbgate test CA" \
	-keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/O=usbgate/CN=127.0.0.1" \
	-keyout "$pki/server-key.pem" -out "$pki/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
	-CAcreateserial -days 2 -extfile "$pki/ext.cnf" -out "$pki/server-cert.pem" >/dev/null 2>&1
d=$(vm_dir bios)
mkdir -p "$d"
sp=$(ug_free_port)
tp=$(ug_free_port)
timeout -k 5 120 "$UG_QEMU" -S -accel tcg -m 64 -nodefaults -no-user-config -display none -no-reboot \
	-device qemu-xhci,id=xhci \
	-spice "port=$sp,tls-port=$tp,addr=127.0.0.1,disable-ticketing=on,x509-dir=$pki" \
	-chardev spicevmc,name=usbredir,id=ur -device usb-redir,chardev=ur,id=redir0,bus=xhci.0 \
	-qmp "unix:$_ug_sockdir/bios.qmp,server=on,wait=off" -pidfile "$d/qemu.pid" \
	>"$d/qemu.out" 2>"$d/qemu.err" &
echo $! >"$d/pid"
i=0
while [ ! -S "$_ug_sockdir/bios.qmp" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
pp=$(ug_free_port)
ptp=$(ug_free_port)
ug_spawn usbdump2 100 sh -c '"$0" "$@" >"'"$W"'/dump2.json"; echo $? >"'"$W"'/dump2.rc"' \
	"$USBDUMP" --spice-listen "127.0.0.1:$pp" --spice-connect "127.0.0.1:$sp" \
	--spice-tls-listen "127.0.0.1:$ptp" --spice-tls-connect "127.0.0.1:$tp" \
	--tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" --tls-ca "$pki/ca-cert.pem" \
	-w "$W/tls.pcap" --json
ug_wait_match "$W/usbdump2.log" 'SPICE over TLS' 10 || tap_diag "usbdump with TLS does not listen: $(cat "$W/usbdump2.log")"
ug_spawn replay2 100 "$UR_BIN" -v --spice "spice+tls://127.0.0.1:$ptp" --ca-file "$pki/ca-cert.pem" \
	"$UG_SRCDIR/tests/data/storage.raw.pcap"
ug_wait_match "$W/replay2.log" 'usbredir channel [0-9]+: linked' 30
sleep 1
vm_hmp bios cont >/dev/null
info=$(vm_wait_usb bios 'Speed 5000 Mb/s' 30)
tap_check "TLS through usbdump: HMP info usb shows the replayed drive attached ($info)" \
	sh -c "printf '%s' '$info' | grep -q 'Speed 5000 Mb/s, Product USB Redirection Device, ID: redir0'"
sleep 3
vm_hmp bios quit >/dev/null 2>&1
ug_wait_gone "$W/replay2.pid" 30 || ug_kill_pidfile "$W/replay2.pid"
ug_wait_gone "$W/usbdump2.pid" 30 || ug_kill_pidfile "$W/usbdump2.pid"
tap_check "usbdump terminated TLS: channels named spice+tls, nothing reported encrypted" \
	sh -c "grep -q 'spice+tls usbredir channel 0' '$W/usbdump2.log' && ! grep -q 'TLS: forwarded as it is' '$W/usbdump2.log'"
nt=$(grep -c '"type":"control_packet"' "$W/dump2.json")
set -- $($RECS pairs "$W/tls.pcap")
tap_check "the TLS session was decoded in plaintext ($nt control packets, ${1:-?} submits, ${3:-?} orphans)" \
	sh -c "[ '$nt' -gt 0 ] && [ '${1:-0}' -gt 0 ] && [ '${3:-x}' = 0 ]"
tap_diag "usbdump (TLS) said:" "$(tail -n 3 "$W/usbdump2.log")"
