#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-unplug.sh: the USB disk usbredirsrv forwards is unplugged in the device VM in the middle of a read, then plugged in again.
#
# Device VM: QEMU's usb-storage (id stor0, serial UGUNPLUG, a 32 MiB pattern
# disk) is what libusb sees as the physical device; usbredirsrv (this build)
# exports it by serial with --pcap in the guest, next to systemd-udevd for
# libusb's hotplug events. Consumer VM: usb-redir through usbdump's proxy
# on the host (-w, a second capture), its guest (fault-unplug.guest.sh)
# reading the whole disk again and again. Once usbdump's capture shows bulk
# data flowing, HMP device_del pulls stor0. Checks: usbredirsrv keeps
# running and logs the removal; the consumer guest's read fails and its
# script says so instead of hanging, then sees the device go; what both
# captures hold so far reads whole in tshark and ends with a complete record.
# Then device_add puts the same usb-storage back (same id and serial):
# usbredirsrv offers it again on the same session and the guest reads the
# whole disk with the image's sha256. At the end usbredirsrv exits 0 on
# SIGTERM and its final pcap, of which the mid-run copy is a prefix, reads in
# tshark too.
#
# The device VM takes commands from the host on a forwarded port (a line
# per connection: "snap" copies the pcap as it is, "stop" sends SIGTERM to
# usbredirsrv) and hands its files back over another (a tar stream): the
# captures are tens of MB, too much for the rig's serial-port export.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-360}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-340}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
# build-guest.sh copies only libraries ldd names by absolute path: a relative
# UG_BUILDDIR (UG_BUILDDIR=. by hand) would leave libusbgate out of the guest.
[ -z "${UG_BUILDDIR:-}" ] || UG_BUILDDIR=$(cd "$UG_BUILDDIR" && pwd)
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
srv=$TOOLS/usbredirsrv/usbredirsrv
DUMP=$TOOLS/usbdump/usbdump
udevd=/lib/systemd/systemd-udevd
W=$UG_VM_WORK
MIB=32
tap_plan 20
t_start=$(ug_now)
[ -x "$srv" ] || tap_bail "$srv is not built"
[ -x "$DUMP" ] || tap_bail "$DUMP is not built"
[ -x "$udevd" ] || tap_bail "$udevd not found: install the Debian package udev"
command -v tshark >/dev/null || tap_bail "tshark is missing (Debian package tshark)"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

img=$W/disk.img
vm_disk_image "$img" $MIB || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)

# pcap_whole FILE: tshark reads FILE without a complaint, and its records
# end exactly at the end of the file (the last one is complete). Prints
# the record count, or what is wrong.
pcap_whole() {
	if ! tshark -r "$1" -T fields -e frame.number >"$1.frames" 2>"$1.tshark"; then
		echo "tshark failed: $(head -n 3 "$1.tshark")"
		return 1
	fi
	# (As root tshark warns that it runs as root: not about the file.)
	if grep -v 'Running as user "root"' "$1.tshark" | grep -q .; then
		echo "tshark said: $(head -n 3 "$1.tshark")"
		return 1
	fi
	python3 - "$1" "$(wc -l <"$1.frames")" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
if len(d) < 24:
    sys.exit("%d bytes: no pcap file header" % len(d))
e = "<" if d[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
off, n = 24, 0
while off < len(d):
    if off + 16 > len(d):
        sys.exit("record %d: header cut after %d of 16 bytes" % (n + 1, len(d) - off))
    incl = struct.unpack_from(e + "I", d, off + 8)[0]
    if off + 16 + incl > len(d):
        sys.exit("record %d: %d of %d bytes" % (n + 1, len(d) - off - 16, incl))
    off += 16 + incl
    n += 1
if n != int(sys.argv[2]):
    sys.exit("%d records in the file, tshark read %s" % (n, sys.argv[2]))
print(n)
PY
}
# size FILE: its size in bytes (0 when missing).
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# dev_cmd CMD ACK-REGEX: sends CMD to the device VM's command port until
# ACK-REGEX shows up once more on its console (at most 5 tries: a
# connection that slirp accepts while the guest is between two listens is
# lost).
dev_cmd() {
	_n=$(vm_lines dev "$2" | wc -l)
	_k=0
	while [ $_k -lt 5 ]; do
		python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode() + b"\n")
s.close()' "$(vm_port dev 4100)" "$1" 2>/dev/null
		vm_wait_count dev "$2" $((_n + 1)) 5 >/dev/null && return 0
		_k=$((_k + 1))
	done
	return 1
}

# The device VM: usbredirsrv in the background, the command loop in front;
# then (--after, run by exporter.sh, whose LISTEN check "listening" it uses)
# the files on port 4101. Guest code: it expands in the guest.
# shellcheck disable=SC2016
exporter='mkdir -p /run/udev && systemd-udevd --daemon && sleep 0.5
usbredirsrv -v --pcap /tmp/srv.pcap --export serial=UGUNPLUG@0.0.0.0:4000 &
srv=$!
rss() { sed -n "s/^VmRSS:[[:space:]]*\([0-9]*\).*/rss=\1kB/p" /proc/$srv/status; }
while :; do
	cmd=$(nc -l -p 4100 </dev/null)
	case $cmd in
	snap) cp /tmp/srv.pcap /tmp/snap.pcap &&
		echo "UG-SNAP bytes=$(stat -c %s /tmp/snap.pcap) $(rss)" ;;
	stop) echo "UG-STOP $(rss)"; kill -TERM $srv; break ;;
	esac
done
wait $srv'
# shellcheck disable=SC2016
after='cd / && { tar -cf - tmp/srv.pcap tmp/snap.pcap | nc -l -p 4101 >/dev/null; } &
i=0
while ! listening 4101 && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
echo "UG-SERVE-READY uptime=$(uptime_s)"
wait'
drive="if=none,id=d0,file=$img,format=raw,cache=writethrough"
stor="usb-storage,bus=xhci.0,drive=d0,id=stor0,serial=UGUNPLUG"
# build-guest.sh copies usbredirsrv with what ldd finds: libusbgate from the build tree.
LD_LIBRARY_PATH=$(cd "$TOOLS" && pwd)/lib/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
# A sanitized usbredirsrv (clang links ASan in statically) outgrows the rig's
# 256 MiB device guest: ASan holds freed bulk buffers in its quarantine.
mem=$UG_VM_MEM
real_srv=$TOOLS/usbredirsrv/.libs/usbredirsrv
[ -x "$real_srv" ] || real_srv=$srv
grep -q -a __asan_init "$real_srv" && UG_VM_MEM=1G
vm_device_start dev --files "prog=$srv" --files "prog=$udevd" --exporter "$exporter" \
	--after "$after" --fwd 4100 --fwd 4101 --qemu "-drive $drive -device $stor" ||
	tap_bail "cannot start the device VM"
UG_VM_MEM=$mem
vm_consumer_start con --script "$UG_SRCDIR/tests/integration/fault-unplug.guest.sh" ||
	tap_bail "cannot start the consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 150 >/dev/null || tap_bail "usbredirsrv never listened in the device VM"
vm_wait_for con '^UG-RUN start' 150 >/dev/null || tap_bail "the consumer VM never reached its script"
pport=$(ug_free_port)
ug_spawn usbdump 330 "$DUMP" --listen "127.0.0.1:$pport" --connect "127.0.0.1:$(vm_port dev)" \
	-q -w "$W/dump.pcap"
ug_wait_listen "$pport" 30 || :
vm_redir_attach con "$pport" || tap_bail "cannot hot-plug usb-redir into the consumer VM"
vm_wait_for con '^UG-READ pass=1 start' 150 >/dev/null ||
	tap_bail "the consumer guest never started reading: $(vm_lines con '^UG-' | tail -n 3)"

# ---- pull the disk while bulk data flows: 4 MiB more in usbdump's capture
# since the read started, and more still in the last moment.
s0=$(size "$W/dump.pcap")
i=0
while [ "$(size "$W/dump.pcap")" -lt $((s0 + 4 * 1048576)) ] && [ $i -lt 600 ]; do
	sleep 0.05
	i=$((i + 1))
done
# Then one record more (a whole bulk completion, up to 120 KiB, which a
# loaded machine may take a while to pass), and pull the disk at once.
s1=$(size "$W/dump.pcap")
i=0
while [ "$(size "$W/dump.pcap")" -le "$s1" ] && [ $i -lt 200 ]; do
	sleep 0.05
	i=$((i + 1))
done
s2=$(size "$W/dump.pcap")
out=$(vm_device_del dev stor0)
t_del=$(ug_now)
if [ $((s2 - s0)) -ge $((4 * 1048576)) ] && [ "$s2" -gt "$s1" ]; then
	tap_ok "bulk data was flowing when the disk was pulled (capture +$(((s2 - s0) / 1024)) KiB since the read began, +$(((s2 - s1) / 1024)) KiB in the last $((i * 50 + 50)) ms)"
else
	tap_fail "bulk data was flowing when the disk was pulled" "capture sizes: $s0 at the start of the read, then $s1, $s2"
fi
tap_is "device_del stor0 in the device VM" "$out" ""
if line=$(vm_wait_for dev 'export .*: device .* unplugged' 30); then
	tap_ok "usbredirsrv logs the removal (${line#*export })"
else
	tap_fail "usbredirsrv logs the removal" "$(vm_lines dev 'usbredirsrv|export' | tail -n 5)"
fi
if line=$(vm_wait_for con '^UG-READ-ERROR ' 90); then
	tap_ok "the consumer guest's read fails and its script says so (pass $(vm_field "$line" pass), dd rc=$(vm_field "$line" rc), records $(vm_field "$line" records) of $((MIB))+0)"
	tap_diag "the guest reported the failed read $(ug_since "$t_del")s after device_del: $line"
else
	tap_fail "the consumer guest's read fails and its script says so" "$(vm_lines con '^UG-' | tail -n 5)"
fi
if vm_wait_for con '^UG-UNPLUGGED' 90 >/dev/null; then
	tap_ok "the consumer guest sees the device go away"
else
	tap_fail "the consumer guest sees the device go away" "$(vm_lines con '^UG-' | tail -n 5)"
fi
# usbdump's capture so far, copied as it is on disk now.
cp "$W/dump.pcap" "$W/dump-unplugged.pcap"
if n=$(pcap_whole "$W/dump-unplugged.pcap"); then
	tap_ok "usbdump's capture so far reads whole in tshark, its last record complete ($n records, $(size "$W/dump-unplugged.pcap") bytes)"
else
	tap_fail "usbdump's capture so far reads whole in tshark, its last record complete" "$n"
fi
if dev_cmd snap '^UG-SNAP '; then
	tap_ok "usbredirsrv still runs after the removal; its pcap so far copied ($(vm_lines dev '^UG-SNAP ' | tail -n 1))"
else
	tap_fail "usbredirsrv still runs after the removal; its pcap so far copied" "$(vm_lines dev '.' | tail -n 5)"
fi

# ---- plug the same usb-storage back (its -drive went with it: add it again)
out=$(vm_hmp dev "drive_add 0 $drive")
case $out in
OK* | "") ;;
*) tap_diag "drive_add: $out" ;;
esac
np=$(vm_lines dev 'export .*: device .* present' | wc -l)
out=$(vm_device_add dev "$stor")
tap_is "device_add of the same usb-storage (id stor0, serial UGUNPLUG)" "$out" ""
if line=$(vm_wait_count dev 'export .*: device .* present' $((np + 1)) 60); then
	tap_ok "usbredirsrv picks it up again (hotplug: ${line#*export })"
else
	tap_fail "usbredirsrv picks it up again (hotplug)" "$(vm_lines dev 'export' | tail -n 5)"
fi
if vm_wait_for con '^UG-REPLUGGED' 120 >/dev/null; then
	tap_ok "the consumer guest sees the disk come back, on the same usbredir session"
else
	tap_fail "the consumer guest sees the disk come back" "$(vm_lines con '^UG-' | tail -n 5)"
fi
line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_is "the guest reads the whole replugged disk: sha256 of $MIB MiB equals the image's" \
	"$(vm_field "$line" sha256) $(vm_field "$line" bytes)" "$want_sum $((MIB * 1048576))"
line=$(vm_wait_for con '^UG-DONE' 60)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0

# ---- the consumer leaves: one session, ended; usbdump and usbredirsrv finish.
vm_wait_exit con 60 || vm_stop con
i=0
while ! vm_lines dev 'export .*: session ended' | grep -q . && [ $i -lt 150 ]; do
	sleep 0.2
	i=$((i + 1))
done
tap_is "usbredirsrv held one session throughout and ended it when the consumer left" \
	"$(vm_lines dev 'export .*: session started' | wc -l) $(vm_lines dev 'export .*: session ended' | wc -l)" "1 1"
pid=$(cat "$W/usbdump.pid")
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid" 2>/dev/null
rc=$?
tap_is "usbdump exits 0 after the session (usbdump(1))" "$rc" 0
dev_cmd stop '^UG-EXPORTER-EXIT' || tap_diag "the device VM did not take the stop command"
tap_diag "usbredirsrv's VmRSS after the removal: $(vm_field "$(vm_lines dev '^UG-SNAP ' | tail -n 1)" rss)," \
	"at the end: $(vm_field "$(vm_lines dev '^UG-STOP ' | tail -n 1)" rss)"
tap_is "usbredirsrv ran throughout (started once) and exits 0 on SIGTERM (usbredirsrv(8))" \
	"$(vm_lines dev '^UG-EXPORTER-(START|EXIT)' | tr '\n' ' ')" "UG-EXPORTER-START n=1 UG-EXPORTER-EXIT n=1 rc=0 "
# An unplug is ordinary operation: warnings (the failed submit, the answer
# usbredirhost still sends after its device_disconnect) but no errors.
bad_re='usbredirsrv-(CRITICAL|ERROR)|AddressSanitizer|LeakSanitizer|runtime error:|Segmentation'
if vm_lines dev "$bad_re" | grep -q .; then
	tap_fail "no errors in usbredirsrv's log" "$(vm_lines dev "$bad_re" | head -n 5)"
else
	tap_ok "no errors in usbredirsrv's log"
fi
tap_diag "usbredirsrv's warnings:" "$(vm_lines dev 'usbredirsrv-WARNING' | sed 's/.*WARNING \*\*: [0-9:.]*: //')"

# ---- usbredirsrv's captures, from the device VM
vm_wait_for dev '^UG-SERVE-READY' 60 >/dev/null
python3 - "$(vm_port dev 4101)" "$W/srv.tar" <<'PY'
import socket, sys, time
end = time.time() + 60
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
        got = b""
        while True:
            p = s.recv(1 << 20)
            if not p:
                break
            got += p
        s.close()
    except OSError:
        got = b""
    if got:
        open(sys.argv[2], "wb").write(got)
        break
    time.sleep(0.5)
PY
mkdir -p "$W/srv"
tar -xf "$W/srv.tar" -C "$W/srv" 2>"$W/tar.err"
snap=$W/srv/tmp/snap.pcap
final=$W/srv/tmp/srv.pcap
if n=$(pcap_whole "$snap"); then
	tap_ok "usbredirsrv's pcap as it was after the removal reads whole in tshark, its last record complete ($n records, $(size "$snap") bytes)"
else
	tap_fail "usbredirsrv's pcap as it was after the removal reads whole in tshark" "$n" "$(cat "$W/tar.err")"
fi
# What the copy ends with: the transfer the unplug cut short, as usbmon
# shows it (-ESHUTDOWN), unless the disk went between two transfers.
tap_diag "last records of the copy (urb type, transfer type, endpoint, status, data):" \
	"$(tshark -r "$snap" -T fields -e usb.urb_type -e usb.transfer_type -e usb.endpoint_address \
		-e usb.urb_status -e usb.data_len 2>/dev/null | tail -n 3)"
if n=$(pcap_whole "$final") && cmp -s -n "$(size "$snap")" "$snap" "$final"; then
	tap_ok "its final pcap reads whole too ($n records, $(size "$final") bytes) and begins with that copy"
else
	tap_fail "its final pcap reads whole too and begins with that copy" "$n"
fi
if n=$(pcap_whole "$W/dump.pcap"); then
	tap_ok "usbdump's final capture reads whole too ($n records, $(size "$W/dump.pcap") bytes)"
else
	tap_fail "usbdump's final capture reads whole too" "$n"
fi
# SCSI payloads of QEMU's usb-storage are malformed in every faithful capture
# (testing.md, Mode Sense); what must not be malformed is the USB framing.
bad=$(tshark -r "$final" -Y '_ws.malformed && !scsi' 2>/dev/null | wc -l)
bad2=$(tshark -r "$W/dump.pcap" -Y '_ws.malformed && !scsi' 2>/dev/null | wc -l)
tap_is "no malformed records outside SCSI payloads in either final capture" "$bad $bad2" "0 0"
vm_wait_exit dev 60 || vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
