#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv-spice-guest.sh: usbredirsrv --spice inside the device VM attaches its usb-storage to the consumer VM, through usbdump's SPICE proxy and then directly.
#
# The device VM runs usbredirsrv -v --spice spice://10.0.2.100:P with a
# --redirect-on-connect rule for QEMU's usb-storage (46f4:0001) and nothing
# else. Its user network forwards every connection to 10.0.2.100:P to the
# host's 127.0.0.1:P (lib.sh --guestfwd-cmd, one socat per connection: a
# SPICE client opens one per channel). (a) On P listens usbdump's SPICE
# proxy, connected to the consumer VM's SPICE port: the device attaches
# (HMP info usb, the device VM's console), the guest reads the whole disk
# and its sha256 equals the image's. usbdump, stopped with SIGTERM while
# the session is still up, exits 0; tshark reads its pcap to the end, with
# the device descriptor and the mass-storage interface decoded, and the
# bulk-in data it recorded covers the disk (the guest's reads went through
# it). (b) usbdump gone, usbredirsrv reconnects with backoff; a second
# consumer VM now has its SPICE server on P itself: the same usbredirsrv
# process attaches the disk again and the guest reads it whole. The
# guest-visible read rates of both paths are printed (no timing assertion).
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-480}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-460}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
srv=$TOOLS/usbredirsrv/usbredirsrv
USBDUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
tap_plan 17
[ -x "$srv" ] || tap_bail "$srv is not built"
[ -x "$USBDUMP" ] || tap_bail "$USBDUMP is not built"
ug_require "$UG_QEMU" qemu-system-x86 tshark tshark ss iproute2 socat socat
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
# From here: the time for a VM slot does not count.
t_start=$(ug_now)


img=$W/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)
disk_bytes=$(stat -c %s "$img")
P=$(ug_free_port)
S=$(ug_free_port)
[ "$P" != "$S" ] || S=$(ug_free_port)

# The consumers hold on after their reads: the first so that usbdump is
# stopped while the SPICE session is still up, both so that HMP can be
# asked while the device is attached (vm_stop ends them).
cat >"$W/hold.sh" <<'EOF'
. /ug/guest/storage.sh
echo "UG-HOLD"
exec sleep 600
EOF

# ---- (a) through usbdump's SPICE proxy -------------------------------------------
# Only QEMU's usb-storage: not the device VM's keyboard or serial adapter.
rules='-1,0x46f4,0x0001,-1,1|-1,-1,-1,-1,0'
# An ASan build of usbredirsrv keeps freed memory in quarantine (256 MiB
# by default): two 32 MiB sessions of bulk buffers fill the 256 MiB guest
# and the OOM killer ends it. (Without ASan it stays under 12 MiB.)
vm_device_start dev --disk "$img" --files "prog=$srv" --no-listen --guestfwd-cmd "$P" \
	--env ASAN_OPTIONS=quarantine_size_mb=16 \
	--exporter "exec usbredirsrv -v --spice spice://10.0.2.100:$P --redirect-on-connect '$rules'" ||
	tap_bail "cannot start the device VM"
vm_consumer_start con --spice "$S" --script "$W/hold.sh" || tap_bail "cannot start the consumer VM"
ug_wait_listen "$S" 60 || tap_bail "the consumer VM's SPICE server never listened on $S"
pcap=$W/proxy.pcap
ug_spawn usbdump 420 "$USBDUMP" --spice-listen "127.0.0.1:$P" --spice-connect "127.0.0.1:$S" -q -w "$pcap"
ug_wait_match "$W/usbdump.log" 'listening on' 10 || tap_bail "usbdump does not listen: $(cat "$W/usbdump.log")"
vm_wait_for dev '^UG-EXPORTER-READY' 150 >/dev/null || tap_bail "usbredirsrv never started in the device VM"

if vm_wait_for dev 'SPICE session [0-9a-f]+ connected' 60 >/dev/null; then
	tap_ok "usbredirsrv in the device VM links to SPICE through the guest forward and usbdump"
else
	tap_fail "usbredirsrv in the device VM links to SPICE through the guest forward and usbdump" \
		"$(vm_lines dev 'usbredirsrv|SPICE' | tail -n 10)" "$(tail -n 5 "$(vm_dir dev)/guestfwd-$P.log" 2>/dev/null)"
fi
line=$(vm_wait_for dev 'device port=[0-9.-]+ attached to the VM on spice usbredir channel' 60) || true
if [ -n "$line" ]; then
	tap_ok "its console shows the usb-storage attached"
	tap_diag "${line#*Message: }"
else
	tap_fail "its console shows the usb-storage attached" "$(vm_lines dev 'usbredirsrv|SPICE|device' | tail -n 10)"
fi
line=$(vm_wait_for con '^UG-ENUM' 120) || true
tap_is "the consumer guest enumerates the disk" "$(vm_field "$line" id)" 46f4:0001
usb=$(vm_info_usb con)
case $usb in
*"Speed 5000 Mb/s"*"ID: redir0"*) tap_ok "HMP info usb shows the device attached to redir0 at SuperSpeed" ;;
*) tap_fail "HMP info usb shows the device attached to redir0 at SuperSpeed" "info usb: $usb" ;;
esac
line=$(vm_wait_for con '^UG-RESULT sha256=' 180) || true
tap_is "sha256 of the whole disk read through usbdump's SPICE proxy equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
proxy_mbps=$(vm_field "$(vm_lines con '^UG-RESULT read ' | tail -n 1)" mbps)
vm_wait_for con '^UG-HOLD' 60 >/dev/null || tap_diag "the first consumer did not reach UG-HOLD"

# usbdump stops while the session is up: the outstanding records are
# completed and the file is finished.
# (timeout passes the TERM on to usbdump and exits with its status.)
kill -TERM "$(cat "$W/usbdump.pid")"
if ug_wait_gone "$W/usbdump.pid" 20; then
	wait "$(cat "$W/usbdump.pid")"
	rc=$?
else
	rc="still running"
fi
tap_is "usbdump exits 0 on SIGTERM in the middle of the SPICE session" "$rc" 0
grep -q 'usbredir channel' "$W/usbdump.log" || tap_diag "usbdump's log:" "$(tail -n 10 "$W/usbdump.log")"
if timeout 120 tshark -r "$pcap" -T fields -E separator=/t -e usb.urb_type -e usb.transfer_type \
	-e usb.endpoint_address.direction -e usb.urb_len -e usb.bDescriptorType -e usb.idVendor \
	-e usb.bInterfaceClass >"$W/fields.txt" 2>"$W/tshark.err" &&
	! grep -Eqi 'cut short|damaged|corrupt' "$W/tshark.err"; then
	tap_ok "tshark reads usbdump's pcap to the end ($(wc -l <"$W/fields.txt") frames)"
else
	tap_fail "tshark reads usbdump's pcap to the end" "$(grep -v 'Running as user' "$W/tshark.err" | head -n 5)"
fi
vid=$(awk -F'\t' '$6 != "" { print $6; exit }' "$W/fields.txt")
tap_is "tshark decodes the device descriptor (idVendor)" "$vid" 0x46f4
n=$(awk -F'\t' '$5 ~ /(^|,)0x02(,|$)/ && $7 ~ /(^|,)0x08(,|$)/' "$W/fields.txt" | wc -l)
if [ "$n" -ge 1 ]; then
	tap_ok "and the configuration descriptor's mass-storage interface ($n frames)"
else
	tap_fail "and the configuration descriptor's mass-storage interface" "no frame with bDescriptorType 0x02 and bInterfaceClass 0x08"
fi
# Bulk-in completions carry their actual length in urb_len (usbmon), also
# where the captured data was cut.
bulk_in=$(awk -F'\t' '$1 == "'"'C'"'" && $2 == "0x03" && $3 == "1" { s += $4 } END { printf "%d", s }' "$W/fields.txt")
if [ "${bulk_in:-0}" -ge "$disk_bytes" ]; then
	tap_ok "usbdump recorded $bulk_in bulk-in bytes, at least the disk's $disk_bytes"
else
	tap_fail "usbdump recorded at least the disk's $disk_bytes bulk-in bytes" "bulk-in bytes: ${bulk_in:-none}"
fi
if vm_wait_for dev 'SPICE session ended: .*reconnecting' 30 >/dev/null; then
	tap_ok "usbredirsrv in the device VM sees the proxy go and reconnects with backoff"
else
	tap_fail "usbredirsrv in the device VM sees the proxy go and reconnects with backoff" \
		"$(vm_lines dev 'usbredirsrv|SPICE|device' | tail -n 10)"
fi
vm_stop con

# ---- (b) directly: the second consumer's SPICE server on the forwarded port --------
vm_consumer_start con2 --spice "$P" --script "$W/hold.sh" || tap_bail "cannot start the second consumer VM"
line=$(vm_wait_for con2 '^UG-RESULT sha256=' 240) || true
tap_is "without the proxy the same usbredirsrv attaches the disk again: sha256 matches" \
	"$(vm_field "$line" sha256)" "$want_sum"
direct_mbps=$(vm_field "$(vm_lines con2 '^UG-RESULT read ' | tail -n 1)" mbps)
usb=$(vm_info_usb con2)
case $usb in
*"Speed 5000 Mb/s"*"ID: redir0"*) tap_ok "HMP info usb of the second consumer shows the device attached" ;;
*) tap_fail "HMP info usb of the second consumer shows the device attached" "info usb: $usb" ;;
esac
if vm_wait_for con2 '^UG-HOLD' 60 >/dev/null; then
	tap_ok "the second consumer's storage script ran to its end"
else
	tap_fail "the second consumer's storage script ran to its end" "$(vm_lines con2 '^UG-' | tail -n 3)"
fi
vm_stop con2

sessions=$(vm_lines dev 'SPICE session [0-9a-f]+ connected' | wc -l)
attached=$(vm_lines dev 'attached to the VM on spice usbredir channel' | wc -l)
if [ "$sessions" -eq 2 ] && [ "$attached" -eq 2 ]; then
	tap_ok "one usbredirsrv process in the device VM: two SPICE sessions, the disk attached in each"
else
	tap_fail "one usbredirsrv process in the device VM: two SPICE sessions, the disk attached in each" \
		"sessions=$sessions attached=$attached" "$(vm_lines dev 'usbredirsrv|SPICE|device' | tail -n 10)"
fi
# Each SPICE session is a main channel and a usbredir channel at least,
# each its own guest connection with its own socat.
relays=$(grep -c 'starting data transfer loop' "$(vm_dir dev)/guestfwd-$P.log" 2>/dev/null)
if [ "${relays:-0}" -ge 4 ]; then
	tap_ok "the guest forward carried $relays connections (one socat each)"
else
	tap_fail "the guest forward carried at least 4 connections" "relays: ${relays:-0}" \
		"$(tail -n 10 "$(vm_dir dev)/guestfwd-$P.log" 2>/dev/null)"
fi
bad='ERROR|CRITICAL|AddressSanitizer|runtime error:|^Killed|^UG-EXPORTER-EXIT'
if vm_lines dev "$bad" | grep -q .; then
	tap_fail "usbredirsrv ran throughout, no errors in its log" "$(vm_lines dev "$bad" | head -n 5)"
else
	tap_ok "usbredirsrv ran throughout, no errors in its log"
fi
vm_stop dev
tap_diag "guest-visible read: through usbdump's SPICE proxy ${proxy_mbps:-?} MB/s, direct SPICE ${direct_mbps:-?} MB/s" \
	"usbdump: $(grep -E 'sessions?, ' "$W/usbdump.log" | tail -n 1)" \
	"whole test: $(ug_since "$t_start")s"
