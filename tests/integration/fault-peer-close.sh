#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# fault-peer-close.sh: the usb-host closes in the middle of a packet while real QEMU's usb-redir talks to it through usbdump.
#
# QEMU (SeaBIOS only, the rig's --bios-only consumer) has its usb-redir
# chardev in server mode; usbdump --reverse connects to it and listens for
# the usb-host. The usb-host is the real recorded host side of a SeaBIOS
# keyboard session (tests/data/usbredir-seabios-kbd.h2g: hello, ep_info,
# interface_info, device_connect, ...) cut in the middle of its fourth
# packet, then closed. Checks: usbdump exits 4 and says where the stream
# ended; everything the host sent reached QEMU's side of usbdump's stream
# (the raw record holds it); QEMU survives and answers its monitor; tshark
# reads both outputs.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
DUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
[ -x "$DUMP" ] || tap_bail "usbdump is not built"
command -v tshark >/dev/null || tap_bail "tshark is missing"
tap_plan 6

# The host's bytes: whole packets up to the fourth, then half of it.
python3 - "$UG_SRCDIR/tests/data/usbredir-seabios-kbd.h2g" "$W/h2g" <<'PY' || tap_bail "cannot cut the stream"
import struct, sys
d = open(sys.argv[1], "rb").read()
off, n = 0, 0
while n < 3:
    hl = 12 if n == 0 else 16          # the hello has 32-bit ids, the rest 64-bit
    off += hl + struct.unpack_from("<I", d, off + 4)[0]
    n += 1
hl = 16
whole = hl + struct.unpack_from("<I", d, off + 4)[0]
open(sys.argv[2], "wb").write(d[:off + whole // 2])
PY

qport=$(ug_free_port)
vm_consumer_start con --bios-only --listen "$qport" || tap_bail "cannot start QEMU"
ug_wait_listen "$qport" 30 || :
lport=$(ug_free_port)
ug_spawn usbdump 120 sh -c "exec '$DUMP' --reverse --listen 127.0.0.1:$lport --connect 127.0.0.1:$qport \
	-q -w '$W/o.pcap' --raw '$W/o.raw'"
ug_wait_listen "$lport" 30 || :
python3 - "$lport" "$W/h2g" "$W/g2h" <<'PY'
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(open(sys.argv[2], "rb").read())
got = b""
c.settimeout(0.5)
end = time.time() + 3
while time.time() < end:
    try:
        p = c.recv(65536)
    except socket.timeout:
        continue
    if not p:
        break
    got += p
open(sys.argv[3], "wb").write(got)
c.close()
PY
pid=$(cat "$W/usbdump.pid")
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid" 2>/dev/null
rc=$?
if [ "$rc" = 4 ] && grep -qE 'host->guest: the stream ends inside a packet: [0-9]+ bytes after offset [0-9]+' "$W/usbdump.log"; then
	tap_ok "usbdump exits 4 and says where the host's stream ended"
else
	tap_fail "usbdump exits 4 and says where the host's stream ended" "exit $rc" "$(cat "$W/usbdump.log")"
fi
# The raw record: every host->guest byte usbdump saw, in order, as packets
# plus the undecoded tail; its packet bytes must be a prefix of what was sent.
sent=$(stat -c %s "$W/h2g")
said=$(sed -n 's/.* \([0-9][0-9]*\) bytes host->guest forwarded.*/\1/p' "$W/usbdump.log")
tap_is "usbdump forwarded every byte the host sent before closing ($sent)" "$said" "$sent"
if vm_running con && vm_info_usb con | grep -q 'USB Redirection Device'; then
	tap_ok "QEMU survives and answers its monitor ($(vm_info_usb con | tr -d '\r' | head -n 1))"
else
	tap_fail "QEMU survives and answers its monitor"
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$W/usbdump.log"; then
	tap_fail "no sanitizer report" "$(head -c 2000 "$W/usbdump.log")"
else
	tap_ok "no sanitizer report"
fi
if tshark -r "$W/o.pcap" >/dev/null 2>"$W/t1.err"; then
	tap_ok "tshark reads the usbmon pcap"
else
	tap_fail "tshark reads the usbmon pcap" "$(cat "$W/t1.err")"
fi
if tshark -r "$W/o.raw" >/dev/null 2>"$W/t2.err"; then
	tap_ok "tshark reads the raw record"
else
	tap_fail "tshark reads the raw record" "$(cat "$W/t2.err")"
fi
vm_stop con
