#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv-spice.sh: usbredirsrv --spice bridges the device VM's usb-storage into the consumer VM over SPICE; passwords; --pcap.
#
# (b) A SeaBIOS-only QEMU with a SPICE password: a wrong password (from the
# environment) ends usbredirsrv with its documented exit code 3 and a
# sentence; the right one (from a file) links. (a) The device VM exports its
# usb-storage with Debian's usbredirect --as (respawned after each session);
# the consumer VM has a usb-redir device on a spicevmc chardev and a SPICE
# server on 127.0.0.1; usbredirsrv --spice ... --from tcp:... joins them on
# the host. HMP info usb shows the device attached, the guest reads the whole
# disk and the sha256 must match the image. (c) usbredirsrv's --pcap of that
# session, finished at SIGTERM, is read by tshark with the device descriptor
# decoded. Between, the consumer VM is replaced by a new one on the same SPICE
# port: usbredirsrv reconnects and the new guest reads the disk again.
# Afterwards the same disk is read over raw usbredir TCP in a
# second consumer VM, and both guest-visible read rates are printed (no
# timing assertion).
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-480}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-460}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 16
t_start=$(ug_now)
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "$srv is not built"
ug_require qemu-system-x86_64 qemu-system-x86 tshark tshark ss iproute2
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

# wait_log NAME ERE SECONDS: a line of $UG_VM_WORK/NAME.log.
wait_log() { ug_wait_match "$UG_VM_WORK/$1.log" "$2" "$3"; }

# ---- (b) passwords ------------------------------------------------------------
pw=$UG_VM_WORK/secret
printf 'correct horse' >"$pw"
printf 'correct horse\n' >"$UG_VM_WORK/pw-good"
pp=$(ug_free_port)
ug_spawn qpw 120 qemu-system-x86_64 -machine pc -accel tcg -m 64 -nographic -nodefaults \
	-spice "port=$pp,addr=127.0.0.1,password-secret=sec0" -object "secret,id=sec0,file=$pw" \
	-device qemu-xhci,id=xhci -chardev spicevmc,name=usbredir,id=ur0 \
	-device usb-redir,chardev=ur0,bus=xhci.0,id=redir0
ug_on_exit 'ug_kill_pidfile "$UG_VM_WORK/qpw.pid"'
ug_wait_listen "$pp" 30 || tap_bail "QEMU with a SPICE password never listened on $pp"
USBREDIRSRV_SPICE_PASSWORD='battery staple' timeout 60 "$srv" \
	--spice "spice://127.0.0.1:$pp" --from tcp:127.0.0.1:9 >"$UG_VM_WORK/badpw.log" 2>&1
rc=$?
tap_is "a wrong password ends usbredirsrv with exit status 3" "$rc" 3
if grep -q "password" "$UG_VM_WORK/badpw.log" && ! grep -q "battery" "$UG_VM_WORK/badpw.log"; then
	tap_ok "the message says it is the password, and does not show it"
else
	tap_fail "the message says it is the password, and does not show it" "$(cat "$UG_VM_WORK/badpw.log")"
fi
ug_spawn goodpw 60 "$srv" --spice "spice://127.0.0.1:$pp" --spice-password-file "$UG_VM_WORK/pw-good" \
	--from tcp:127.0.0.1:9
if wait_log goodpw 'SPICE session [0-9a-f]+ connected' 30; then
	tap_ok "the right password from --spice-password-file links"
else
	tap_fail "the right password from --spice-password-file links" "$(cat "$UG_VM_WORK/goodpw.log")"
fi
ug_kill_pidfile "$UG_VM_WORK/goodpw.pid"
ug_kill_pidfile "$UG_VM_WORK/qpw.pid"

# ---- (a) the device VM's disk into the consumer VM over SPICE ---------------------
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)
vm_device_start dev --disk "$img" --id 46f4:0001 --respawn || tap_bail "cannot start the device VM"
sport=$(ug_free_port)
vm_consumer_start con --spice "$sport" --script storage --env UG_READS=2 ||
	tap_bail "cannot start the consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null ||
	tap_bail "usbredirect never listened in the device VM"
ug_wait_listen "$sport" 60 || tap_bail "the consumer VM's SPICE server never listened"
pcap=$UG_VM_WORK/spice.pcap
ug_spawn srv 400 "$srv" -v --spice "spice://127.0.0.1:$sport" \
	--from "tcp:127.0.0.1:$(vm_port dev)" --pcap "$pcap"
ug_on_exit 'ug_kill_pidfile "$UG_VM_WORK/srv.pid"'
if wait_log srv 'attached to the VM on spice usbredir channel' 60; then
	tap_ok "usbredirsrv attaches the export to the VM's usbredir channel"
else
	tap_fail "usbredirsrv attaches the export to the VM's usbredir channel" "$(tail -n 20 "$UG_VM_WORK/srv.log")"
fi
if grep -q "admits one client" "$UG_VM_WORK/srv.log"; then
	tap_ok "it warned that spice-server admits one client"
else
	tap_fail "it warned that spice-server admits one client" "$(head -n 20 "$UG_VM_WORK/srv.log")"
fi
line=$(vm_wait_for con '^UG-ENUM' 120) || true
tap_is "the consumer guest enumerates the disk" "$(vm_field "$line" id)" 46f4:0001
usb=$(vm_info_usb con)
case $usb in
*"Speed 5000 Mb/s"*"ID: redir0"*) tap_ok "HMP info usb shows the device attached to redir0 at SuperSpeed" ;;
*) tap_fail "HMP info usb shows the device attached to redir0 at SuperSpeed" "info usb: $usb" ;;
esac
line=$(vm_wait_for con '^UG-RESULT sha256=' 180) || true
tap_is "sha256 of the whole disk read over SPICE equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
line=$(vm_wait_for con '^UG-DONE' 60) || true
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0
spice_mbps=$(vm_lines con '^UG-RESULT read ' | tail -n 1)
spice_mbps=$(vm_field "$spice_mbps" mbps)
vm_wait_exit con 60 || vm_stop con

# ---- the VM restarts: usbredirsrv reconnects and attaches the export again ------------
vm_consumer_start con2 --spice "$sport" --script storage ||
	tap_bail "cannot start the restarted consumer VM"
if wait_log srv 'SPICE session ended: .*reconnecting' 5; then
	tap_ok "usbredirsrv notices the VM is gone and reconnects with backoff"
else
	tap_fail "usbredirsrv notices the VM is gone and reconnects with backoff" "$(tail -n 20 "$UG_VM_WORK/srv.log")"
fi
line=$(vm_wait_for con2 '^UG-RESULT sha256=' 240) || true
tap_is "after the VM restart the export is attached again: sha256 matches" \
	"$(vm_field "$line" sha256)" "$want_sum"
sessions=$(grep -Ec 'SPICE session [0-9a-f]+ connected' "$UG_VM_WORK/srv.log")
attached=$(grep -c 'attached to the VM on spice usbredir channel' "$UG_VM_WORK/srv.log")
# While usbredirect restarts in the device VM, the port forward accepts and
# closes at once: those attempts must back off, not spin.
if [ "$sessions" -eq 2 ] && [ "$attached" -ge 2 ] && [ "$attached" -le 20 ]; then
	tap_ok "two SPICE sessions in one usbredirsrv process; $attached attach attempts (backoff)"
else
	tap_fail "two SPICE sessions in one usbredirsrv process; attach attempts with backoff" \
		"sessions=$sessions attached=$attached"
fi
vm_wait_exit con2 60 || vm_stop con2

# ---- (c) --pcap, finished at SIGTERM ------------------------------------------------
kill -TERM "$(cat "$UG_VM_WORK/srv.pid")"
if ug_wait_gone "$UG_VM_WORK/srv.pid" 10; then
	tap_ok "usbredirsrv stops on SIGTERM"
else
	tap_fail "usbredirsrv stops on SIGTERM" "$(tail -n 20 "$UG_VM_WORK/srv.log")"
fi
vid=$(timeout 60 tshark -r "$pcap" -Y usb.idVendor -T fields -e usb.idVendor 2>"$UG_VM_WORK/tshark.err" | head -n 1)
tap_is "tshark decodes the device descriptor in the --pcap (idVendor)" "$vid" 0x46f4
n=$(timeout 60 tshark -r "$pcap" -Y 'usb.bInterfaceClass == 0x08' 2>/dev/null | wc -l)
if [ "$n" -ge 1 ]; then
	tap_ok "and the configuration descriptor's mass-storage interface ($n frames)"
else
	tap_fail "and the configuration descriptor's mass-storage interface" "$(cat "$UG_VM_WORK/tshark.err")"
fi

# ---- the same disk over raw usbredir TCP, for the rate ------------------------------
vm_consumer_start tcp --script storage --env UG_READS=2 || tap_bail "cannot start the second consumer VM"
vm_wait_for tcp '^UG-RUN start' 120 >/dev/null || tap_bail "the second consumer never reached its script"
vm_redir_attach tcp "$(vm_port dev)" || tap_bail "cannot hot-plug usb-redir into the second consumer"
line=$(vm_wait_for tcp '^UG-RESULT sha256=' 180) || true
tap_is "over raw TCP the guest reads the same disk" "$(vm_field "$line" sha256)" "$want_sum"
tcp_mbps=$(vm_lines tcp '^UG-RESULT read ' | tail -n 1)
tcp_mbps=$(vm_field "$tcp_mbps" mbps)
vm_wait_exit tcp 60 || vm_stop tcp
vm_stop dev
tap_diag "guest-visible read (second pass): SPICE via usbredirsrv ${spice_mbps:-?} MB/s, raw usbredir TCP ${tcp_mbps:-?} MB/s" \
	"ratio SPICE/TCP: $(awk -v a="${spice_mbps:-0}" -v b="${tcp_mbps:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }')" \
	"whole test: $(ug_since "$t_start")s"
