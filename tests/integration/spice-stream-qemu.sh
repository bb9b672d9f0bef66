#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# spice-stream-qemu.sh: the passive SPICE decoder on a real QEMU session, from a tcpdump capture and through the SPICE proxy.
#
# QEMU (SeaBIOS only) has two usb-redir devices on spicevmc chardevs. The
# SPICE client probe (tests/integration/spice-client-probe) connects through
# ug_spice_proxy (spice-stream-tool proxy) and plays a keyboard on usbredir
# channel 0; tcpdump records the proxy <-> QEMU leg on lo. Then:
#  (a) spice-stream-tool decodes the capture (ug_capture + ug_spice_stream):
#      the usbredir packets are the ones the probe exchanged (QEMU's hello
#      from the server side, the 2074-byte configuration descriptor from the
#      client, SET_CONFIGURATION 1 from QEMU), with LZ4 messages decoded,
#      and the same streams as the probe's own record of its wire bytes;
#  (b) the proxy's decode of the same session gives byte-identical usbredir
#      streams on both channels;
#  (c) HMP "info usb" shows the device attached through the proxy;
#  and damaged copies of the capture (truncated, a dropped frame, started
#  mid-stream) and a TLS session each end with a clear warning, never a crash;
#  TLS through the proxy is forwarded as it is, or, with the test PKI's
#  certificate and key, terminated on both legs and decoded.
set -u

probe=${UG_BUILDDIR:-.}/tests/integration/spice-client-probe
tool=${UG_BUILDDIR:-.}/tests/integration/spice-stream-tool
edit=${UG_SRCDIR:-..}/tests/integration/pcap-edit.py
tmp=$(mktemp -d /tmp/ug-spice-stream.XXXXXX)
. "${UG_SRCDIR:-..}/tests/integration/spice-qemu-lib.sh"
require qemu-system-x86_64 tcpdump openssl ss shuf timeout python3 cmp
require_built "$probe" "$tool"

echo "1..19"

# tcpdump is ready once it has printed "listening on".
start_tcpdump() {
	timeout 300 tcpdump -i lo -U -w "$1" "tcp port $2" >"$1.log" 2>&1 &
	tcpdump_pid=$!
	pids="$pids $tcpdump_pid"
	ug_wait_match "$1.log" "listening on" 10
}

stop_tcpdump() {
	ug_stop_tcpdump "$tcpdump_pid"
	wait "$tcpdump_pid" 2>/dev/null
}

# ---- the session -----------------------------------------------------------------

pki=$tmp/pki
mkdir -p "$pki" "$tmp/cap" "$tmp/prx"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=usbgate test CA" \
	-keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/O=usbgate/CN=127.0.0.1" \
	-keyout "$pki/server-key.pem" -out "$pki/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
	-CAcreateserial -days 2 -extfile "$pki/ext.cnf" -out "$pki/server-cert.pem" >/dev/null 2>&1

sp=$(free_port)
tp=$(free_port)
start_qemu qemu "port=$sp,tls-port=$tp,addr=127.0.0.1,disable-ticketing=on,x509-dir=$pki"

start_tcpdump "$tmp/session.pcap" "$sp"
pp=$(free_port)
timeout 200 "$tool" proxy "127.0.0.1:$pp" "127.0.0.1:$sp" "$tmp/prx" >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
proxy_pid=$!
pids="$pids $proxy_pid"
ug_wait_match "$tmp/proxy.out" "^LISTENING" 10

mkfifo "$tmp/probe.in"
mkdir -p "$tmp/rec" "$tmp/wire"
timeout 120 "$probe" --uri "spice://127.0.0.1:$pp" --attach 0 --timeout 100 --record "$tmp/rec" \
	<"$tmp/probe.in" >"$tmp/probe.out" 2>"$tmp/probe.err" &
probe_pid=$!
pids="$pids $probe_pid"
exec 9>"$tmp/probe.in"
ug_wait_match "$tmp/probe.out" "^HELLO 0 qemu usb-redir guest" 20
ug_wait_match "$tmp/probe.out" "^HELLO 1 qemu usb-redir guest" 5
ug_wait_match "$tmp/probe.out" "^DEVICE_SENT 0" 5
i=0
while [ "$i" -lt 50 ] && [ "$(usb_speed qemu redir0)" != "12" ]; do sleep 0.1; i=$((i + 1)); done
speed0=$(usb_speed qemu redir0)
hmp qemu system_reset >/dev/null
ug_wait_match "$tmp/probe.out" "^SET_CONFIGURATION 0 1" 40
addr=$(hmp qemu "info usb" | sed -n 's/.*Device 0\.\([0-9]*\), .*ID: redir0$/\1/p')
echo stats >&9
ug_wait_match "$tmp/probe.out" "^STATS" 5
echo quit >&9
exec 9>&-
wait "$probe_pid"
sleep 0.5
kill -TERM "$proxy_pid" 2>/dev/null
wait "$proxy_pid"
stop_tcpdump

check "(c) info usb: redir0 attached through the proxy at 12 Mb/s, address 0.${addr:-?}" \
	'[ "$speed0" = "12" ] && [ "${addr:-0}" -ge 1 ]' -- "$tmp/probe.out" "$tmp/probe.err" \
	"$tmp/proxy.err"
check "the probe saw QEMU enumerate the keyboard through the proxy (2074-byte descriptor, configuration 1)" \
	'grep -q "^CONTROL_BIG 0 2074" $tmp/probe.out && grep -q "^SET_CONFIGURATION 0 1" $tmp/probe.out' \
	-- "$tmp/probe.out"

# ---- (a) the capture ----------------------------------------------------------------

"$tool" capture "$tmp/session.pcap" "$tmp/cap" >"$tmp/cap.out" 2>"$tmp/cap.err"
rc=$?
check "capture decoded (rc=$rc): main channel link, MAIN_INIT and a channel list with usbredir 0 and 1" \
	'[ "$rc" -eq 0 ] && grep -q "^LINK conn=[0-9]* type=1 id=0 session=0x00000000" $tmp/cap.out && grep -q "^MAIN_INIT" $tmp/cap.out && grep -q "^CHANNELS .* 9:0" $tmp/cap.out && grep -q "^CHANNELS .* 9:1" $tmp/cap.out' \
	-- "$tmp/cap.out" "$tmp/cap.err"
session=$(sed -n 's/^MAIN_INIT conn=[0-9]* session=\(0x[0-9a-f]*\)$/\1/p' "$tmp/cap.out" | head -n 1)
check "both usbredir channels linked with the session id from MAIN_INIT ($session), mini headers" \
	'[ -n "$session" ] && grep -q "^LINK .* type=9 id=0 session=$session mini=1 error=0" $tmp/cap.out && grep -q "^LINK .* type=9 id=1 session=$session mini=1 error=0" $tmp/cap.out' \
	-- "$tmp/cap.out"
for ch in 0 1; do
	"$tool" decode "$tmp/cap/usbredir-$ch-h2g.bin" "$tmp/cap/usbredir-$ch-g2h.bin" >"$tmp/cap-$ch.pkts" 2>&1
done
check "channel 0 from the capture: QEMU's hello in the server->client (g2h) stream, the probe's in h2g" \
	'grep -q "^PKT g2h type=0 .* version=qemu usb-redir guest" $tmp/cap-0.pkts && grep -q "^PKT h2g type=0 " $tmp/cap-0.pkts && ! grep -q "^PKT h2g type=0 .*qemu usb-redir guest" $tmp/cap-0.pkts' \
	-- "$tmp/cap-0.pkts"
check "channel 0 from the capture: the 2074-byte configuration descriptor (h2g control packet) and set_configuration 1 (g2h)" \
	'grep -q "^PKT h2g type=100 .* data=2074" $tmp/cap-0.pkts && grep -q "^PKT g2h type=6 .* configuration=1" $tmp/cap-0.pkts && ! grep -q DECODE_ERROR $tmp/cap-0.pkts' \
	-- "$tmp/cap-0.pkts"
check "channel 1 from the capture: the hellos only, no decode errors" \
	'grep -q "^PKT g2h type=0 .* version=qemu usb-redir guest" $tmp/cap-1.pkts && ! grep -q DECODE_ERROR $tmp/cap-1.pkts' \
	-- "$tmp/cap-1.pkts"
lz4_h2g=$(grep -c "^LZ4 .* dir=h2g" "$tmp/cap.out")
lz4_g2h=$(grep -c "^LZ4 .* dir=g2h" "$tmp/cap.out")
lz4_sent=$(sed -n 's/^STATS .*lz4_sent=\([0-9]*\).*/\1/p' "$tmp/probe.out" | tail -n 1)
check "LZ4: $lz4_h2g COMPRESSED_DATA messages client->server decoded, as many as the probe sent ($lz4_sent); $lz4_g2h server->client" \
	'[ "$lz4_h2g" -ge 1 ] && [ "$lz4_h2g" = "${lz4_sent:-x}" ]' -- "$tmp/cap.out" "$tmp/probe.out"
check "no gap, notice or error in the clean capture" \
	'! grep -Eq "^(GAP|NOTICE|ERROR|CAPTURE_GAP)" $tmp/cap.out' -- "$tmp/cap.out"

# ---- (b) the proxy ----------------------------------------------------------------------

check "(b) proxy and capture give byte-identical usbredir streams on both channels, both ways" \
	'for f in usbredir-0-h2g usbredir-0-g2h usbredir-1-h2g usbredir-1-g2h; do [ -s $tmp/cap/$f.bin ] && cmp $tmp/cap/$f.bin $tmp/prx/$f.bin || exit 1; done' \
	-- "$tmp/proxy.out" "$tmp/cap.out"
check "the proxy labels the channels and saw the same LZ4 messages" \
	'grep -q "label=spice usbredir channel 0 (127.0.0.1:$sp)" $tmp/proxy.out && [ "$(grep -c "^LZ4 .* dir=h2g" $tmp/proxy.out)" = "$lz4_h2g" ]' \
	-- "$tmp/proxy.out"

# The probe recorded every byte of each channel connection as it sent and
# received them: decoded on their own they must give the same streams.
for ch in 0 1; do
	"$tool" wire "$tmp/rec/usbredir$ch-c2s.bin" "$tmp/rec/usbredir$ch-s2c.bin" "$tmp/wire" \
		>"$tmp/wire-$ch.out" 2>&1
done
check "the probe's own recording of its wire decodes to the same usbredir streams as the capture" \
	'for f in usbredir-0-h2g usbredir-0-g2h usbredir-1-h2g usbredir-1-g2h; do cmp $tmp/cap/$f.bin $tmp/wire/$f.bin || exit 1; done' \
	-- "$tmp/wire-0.out" "$tmp/wire-1.out"

# ---- damaged captures and TLS ---------------------------------------------------------

# crashed FILE: the tool died of a signal or a sanitizer report.
damaged() {
	name=$1
	shift
	mkdir -p "$tmp/$name"
	timeout 60 "$tool" capture "$tmp/$name.pcap" "$tmp/$name" >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
}

python3 "$edit" truncate "$tmp/session.pcap" "$tmp/truncated.pcap"
damaged truncated
check "truncated capture: no crash (rc=$rc), the cut is reported" \
	'[ "$rc" -le 1 ] && ! grep -q "Sanitizer" $tmp/truncated.err && grep -Eq "TRUNCATED|truncated|cut|ends inside|-5" $tmp/truncated.out $tmp/truncated.err' \
	-- "$tmp/truncated.out" "$tmp/truncated.err"

python3 "$edit" drop "$tmp/session.pcap" "$tmp/dropped.pcap" "$sp" 2>"$tmp/dropped.edit"
damaged dropped
check "capture with a dropped frame: no crash (rc=$rc), a gap reported with its position" \
	'[ "$rc" -eq 0 ] && ! grep -q "Sanitizer" $tmp/dropped.err && grep -q "^CAPTURE_GAP .* offset=[0-9]* len=[1-9]" $tmp/dropped.out && grep -Eq "^(GAP|NOTICE) .*missing at offset" $tmp/dropped.out' \
	-- "$tmp/dropped.edit" "$tmp/dropped.out" "$tmp/dropped.err"

python3 "$edit" midstream "$tmp/session.pcap" "$tmp/mid.pcap"
damaged mid
check "capture starting mid-stream: no crash (rc=$rc), says it assumed or found no link" \
	'[ "$rc" -eq 0 ] && ! grep -q "Sanitizer" $tmp/mid.err && grep -q "mid-stream" $tmp/mid.out' \
	-- "$tmp/mid.out" "$tmp/mid.err"

start_tcpdump "$tmp/tls.pcap" "$tp"
timeout 60 "$probe" --uri "spice+tls://127.0.0.1:$tp" --ca-file "$pki/ca-cert.pem" --link-only \
	--timeout 30 --no-stdin </dev/null >"$tmp/tlsprobe.out" 2>"$tmp/tlsprobe.err"
tlsrc=$?
stop_tcpdump
damaged tls
check "TLS session (probe rc=$tlsrc): no crash (rc=$rc), reported as encrypted, nothing decoded" \
	'[ "$tlsrc" -eq 0 ] && [ "$rc" -eq 0 ] && grep -q "^ERROR .*code=-18: .*encrypted" $tmp/tls.out && grep -q "encrypted=1" $tmp/tls.out && ! grep -q "^LINK" $tmp/tls.out' \
	-- "$tmp/tls.out" "$tmp/tls.err" "$tmp/tlsprobe.err"

# The TLS port through the proxy: forwarded unchanged (the client links), reported as encrypted.
timeout 100 "$tool" proxy "127.0.0.1:$pp" "127.0.0.1:$tp" "$tmp/prx" >"$tmp/proxy2.out" 2>"$tmp/proxy2.err" &
proxy_pid=$!
pids="$pids $proxy_pid"
ug_wait_match "$tmp/proxy2.out" "^LISTENING" 10
timeout 60 "$probe" --uri "spice+tls://127.0.0.1:$pp" --ca-file "$pki/ca-cert.pem" --link-only \
	--timeout 30 --no-stdin </dev/null >"$tmp/tlsprobe2.out" 2>"$tmp/tlsprobe2.err"
tlsrc=$?
kill -TERM "$proxy_pid" 2>/dev/null
wait "$proxy_pid"
check "TLS through the proxy without keys: forwarded unchanged (probe linked, rc=$tlsrc), reported as encrypted" \
	'[ "$tlsrc" -eq 0 ] && grep -q "^ERROR .*encrypted" $tmp/proxy2.out' \
	-- "$tmp/proxy2.out" "$tmp/proxy2.err" "$tmp/tlsprobe2.err"

# With the test CA's certificate and key the proxy terminates TLS on both legs:
# the probe (trusting the CA) links every channel over TLS through it, and the
# usbredir channels are decoded in plaintext.
mkdir -p "$tmp/tlsprx"
ptp=$(free_port)
timeout 100 "$tool" proxy "127.0.0.1:$pp" "127.0.0.1:$sp" "$tmp/tlsprx" "127.0.0.1:$ptp" \
	"127.0.0.1:$tp" "$pki/server-cert.pem" "$pki/server-key.pem" "$pki/ca-cert.pem" \
	>"$tmp/proxy3.out" 2>"$tmp/proxy3.err" &
proxy_pid=$!
pids="$pids $proxy_pid"
ug_wait_match "$tmp/proxy3.out" "^LISTENING " 10
timeout 60 "$probe" --uri "spice+tls://127.0.0.1:$ptp" --ca-file "$pki/ca-cert.pem" \
	--host-subject "O=usbgate,CN=127.0.0.1" --timeout 30 --no-stdin </dev/null \
	>"$tmp/tlsprobe3.out" 2>"$tmp/tlsprobe3.err" &
probe_pid=$!
pids="$pids $probe_pid"
ug_wait_match "$tmp/tlsprobe3.out" "^HELLO 1 qemu usb-redir guest" 20
ug_wait_match "$tmp/tlsprobe3.out" "^HELLO 0 qemu usb-redir guest" 5
kill "$probe_pid" 2>/dev/null
wait "$probe_pid" 2>/dev/null
sleep 0.3
kill -TERM "$proxy_pid" 2>/dev/null
wait "$proxy_pid"
"$tool" decode "$tmp/tlsprx/usbredir-0-h2g.bin" "$tmp/tlsprx/usbredir-0-g2h.bin" >"$tmp/tls-0.pkts" 2>&1
check "TLS terminated by the proxy: the probe linked over TLS through it, channels decoded in plaintext" \
	'grep -q "^HELLO 0 qemu usb-redir guest" $tmp/tlsprobe3.out && grep -q "^LINK .* type=9 id=0 .*label=spice+tls usbredir channel 0 (127.0.0.1:$tp)" $tmp/proxy3.out && grep -q "^PKT g2h type=0 .* version=qemu usb-redir guest" $tmp/tls-0.pkts && ! grep -q "encrypted" $tmp/proxy3.out' \
	-- "$tmp/proxy3.out" "$tmp/proxy3.err" "$tmp/tlsprobe3.out" "$tmp/tlsprobe3.err"

check "the ticket never appears in any output" \
	'! grep -qi "ticket.*[0-9a-f]\{32\}" $tmp/cap.out $tmp/proxy.out' -- "$tmp/cap.out"

exit $failed
