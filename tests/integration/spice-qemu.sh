#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# spice-qemu.sh: libusbgate's SPICE client against QEMU's spice-server: channels, attach/detach, LZ4, passwords, TLS.
#
# QEMU runs SeaBIOS only (no guest OS) with two usb-redir devices on spicevmc
# chardevs behind qemu-xhci. tests/integration/spice-client-probe (built on
# the library) links, opens both usbredir channels and plays a full-speed
# keyboard as usb-host; HMP "info usb" on a unix socket shows what QEMU made
# of it. TAP output; every QEMU is bounded by timeout and killed by PID.
set -u

probe=${UG_BUILDDIR:-.}/tests/integration/spice-client-probe
tmp=$(mktemp -d /tmp/ug-spice-qemu.XXXXXX)
. "${UG_SRCDIR:-..}/tests/integration/spice-qemu-lib.sh"
require qemu-system-x86_64 python3 openssl ss shuf timeout
require_built "$probe"

echo "1..30"

# start_probe NAME ARGS...: the probe in the background, commands through a FIFO.
start_probe() {
	name=$1
	shift
	mkfifo "$tmp/$name.in"
	timeout 120 "$probe" "$@" <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	eval "probe_pid_$name=$!"
	pids="$pids $!"
	# Hold the FIFO open so the probe sees commands, not an early EOF.
	exec 9>"$tmp/$name.in"
}

# run_probe NAME ARGS...: the probe to completion with stdin closed; sets rc.
run_probe() {
	name=$1
	shift
	timeout 60 "$probe" --timeout 30 --no-stdin "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
}

# ---- (a) no ticketing: channels, hellos, attach, enumeration with LZ4, detach -----

pa=$(free_port)
start_qemu a "port=$pa,addr=127.0.0.1,disable-ticketing=on"
start_probe a --uri "spice://127.0.0.1:$pa" --attach 0 --timeout 100 --record "$tmp" --reconnect
check "link and channel list: both usbredir channels announced" \
	'ug_wait_match $tmp/a.out "^CHANNEL usbredir 0" 15 && ug_wait_match $tmp/a.out "^CHANNEL usbredir 1" 5' \
	-- "$tmp/a.out" "$tmp/a.err"
check "QEMU's usbredir hello arrives through both channels" \
	'ug_wait_match $tmp/a.out "^HELLO 0 qemu usb-redir guest" 15 && ug_wait_match $tmp/a.out "^HELLO 1 qemu usb-redir guest" 5' \
	-- "$tmp/a.out" "$tmp/a.err"
check "device_connect sent on channel 0" 'ug_wait_match $tmp/a.out "^DEVICE_SENT 0" 5' -- "$tmp/a.out"
i=0
while [ "$i" -lt 50 ] && [ "$(usb_speed a redir0)" != "12" ]; do sleep 0.1; i=$((i + 1)); done
speed0=$(usb_speed a redir0)
speed1=$(usb_speed a redir1)
check "info usb: redir0 attached at 12 Mb/s (was 1.5), redir1 still idle at 1.5 Mb/s" \
	'[ "$speed0" = "12" ] && [ "$speed1" = "1.5" ]' -- "$tmp/a.out" "$tmp/a.err"
# SeaBIOS has finished by now; a reset makes it enumerate the attached keyboard.
hmp a system_reset >/dev/null
check "SeaBIOS reads the 2074-byte configuration descriptor through the channel" \
	'ug_wait_match $tmp/a.out "^CONTROL_BIG 0 2074" 30' -- "$tmp/a.out" "$tmp/a.err"
check "SeaBIOS then configures the device (set_configuration 1)" \
	'ug_wait_match $tmp/a.out "^SET_CONFIGURATION 0 1" 30' -- "$tmp/a.out" "$tmp/a.err"
echo stats >&9
ug_wait_match "$tmp/a.out" "^STATS" 5
lz4_sent=$(sed -n 's/^STATS .*lz4_sent=\([0-9]*\).*/\1/p' "$tmp/a.out" | tail -n 1)
check "the descriptor went as LZ4 SPICEVMC_COMPRESSED_DATA (lz4_sent=$lz4_sent) and QEMU decoded it" \
	'[ "${lz4_sent:-0}" -ge 1 ] && grep -q "^SET_CONFIGURATION 0 1" $tmp/a.out' -- "$tmp/a.out"
addr=$(hmp a "info usb" | sed -n 's/.*Device 0\.\([0-9]*\), .*ID: redir0$/\1/p')
check "info usb: the guest gave the device an address (0.$addr)" '[ "${addr:-0}" -ge 1 ]' \
	-- "$tmp/a.out"
echo detach >&9
check "device_disconnect acknowledged by QEMU" 'ug_wait_match $tmp/a.out "^DISCONNECT_ACK 0" 10' \
	-- "$tmp/a.out" "$tmp/a.err"
i=0
while [ "$i" -lt 50 ] && [ "$(usb_speed a redir0)" != "1.5" ]; do sleep 0.1; i=$((i + 1)); done
check "info usb: detach removes the device (redir0 back to 1.5 Mb/s)" \
	'[ "$(usb_speed a redir0)" = "1.5" ]' -- "$tmp/a.out"
# A hot-plugged usb-redir device brings one more channel in a later channel list.
hmp a "chardev-add spicevmc,id=ur2,name=usbredir" >/dev/null
hmp a "device_add usb-redir,chardev=ur2,bus=xhci.0,id=redir2" >/dev/null
check "hot-plugged usb-redir: channel 2 announced in a later channel list" \
	'ug_wait_match $tmp/a.out "^CHANNEL usbredir 2" 10' -- "$tmp/a.out" "$tmp/a.err"
check "QEMU's hello through the hot-plugged channel" \
	'ug_wait_match $tmp/a.out "^HELLO 2 qemu usb-redir guest" 10' -- "$tmp/a.out" "$tmp/a.err"
hmp a "device_del redir2" >/dev/null
check "device_del: the channel's connection closes, reported as channel removed" \
	'ug_wait_match $tmp/a.out "^CHANNEL_REMOVED 2" 10' -- "$tmp/a.out" "$tmp/a.err"

# The VM restarts: the same client reconnects (the caller's policy) and re-attaches.
kill "$qemu_pid_a" 2>/dev/null
wait "$qemu_pid_a" 2>/dev/null
check "server gone: the session ends with UG_E_CLOSED and a sentence" \
	'ug_wait_match $tmp/a.out "^DISCONNECTED -11 main channel 0: 127.0.0.1:$pa closed the connection" 10' \
	-- "$tmp/a.out" "$tmp/a.err"
start_qemu a "port=$pa,addr=127.0.0.1,disable-ticketing=on"
check "reconnected to the restarted VM: a new session, both channels again" \
	'ug_wait_match $tmp/a.out "count=2" 20 && ug_wait_count $tmp/a.out "^HELLO 0 " 2 10 && ug_wait_count $tmp/a.out "^HELLO 1 " 2 5' \
	-- "$tmp/a.out" "$tmp/a.err"
i=0
while [ "$i" -lt 100 ] && [ "$(usb_speed a redir0)" != "12" ]; do sleep 0.1; i=$((i + 1)); done
check "the device is attached again on the restarted VM (redir0 at 12 Mb/s)" \
	'[ "$(usb_speed a redir0)" = "12" ] && [ "$(grep -c "^DEVICE_SENT 0" $tmp/a.out)" -eq 2 ]' \
	-- "$tmp/a.out" "$tmp/a.err"
echo quit >&9
exec 9>&-
wait "$probe_pid_a"
rc=$?
check "probe exits 0 after quit" '[ "$rc" -eq 0 ]' -- "$tmp/a.out" "$tmp/a.err"
check "spice-server's one-client rule is warned about before connecting" \
	'grep -q "admits one client" $tmp/a.err' -- "$tmp/a.err"
kill "$qemu_pid_a" 2>/dev/null

# ---- (b) a password from a secret file ------------------------------------------

pb=$(free_port)
printf 'correct horse' >"$tmp/secret"
printf 'correct horse\n' >"$tmp/pw-good"
printf 'battery staple\n' >"$tmp/pw-bad"
start_qemu b "port=$pb,addr=127.0.0.1,password-secret=sec0" \
	-object "secret,id=sec0,file=$tmp/secret"
run_probe b1 --uri "spice://127.0.0.1:$pb" --password-file "$tmp/pw-good" --link-only
check "password from a file: linked, both channels listed" \
	'[ "$rc" -eq 0 ] && grep -q "^CHANNEL usbredir 1" $tmp/b1.out' -- "$tmp/b1.out" "$tmp/b1.err"
UG_TEST_SPICE_PW='correct horse' run_probe b2 --uri "spice://127.0.0.1:$pb" \
	--password-env UG_TEST_SPICE_PW --link-only
check "password from the environment: linked" '[ "$rc" -eq 0 ]' -- "$tmp/b2.out" "$tmp/b2.err"
run_probe b3 --uri "spice://127.0.0.1:$pb" --password-file "$tmp/pw-bad" --link-only
check "wrong password: exit code 3 and 'permission denied: wrong password' (rc=$rc)" \
	'[ "$rc" -eq 3 ] && grep -q "permission denied: wrong password" $tmp/b3.err' \
	-- "$tmp/b3.out" "$tmp/b3.err"
hmp b "expire_password spice now" >/dev/null
run_probe b4 --uri "spice://127.0.0.1:$pb" --password-file "$tmp/pw-good" --link-only
check "expired password: exit code 3, the message names expiry (rc=$rc)" \
	'[ "$rc" -eq 3 ] && grep -q "password has expired" $tmp/b4.err' -- "$tmp/b4.out" "$tmp/b4.err"
check "the password appears in no message" \
	'! grep -q "battery\|correct horse" $tmp/b3.err $tmp/b3.out $tmp/b1.err' -- "$tmp/b3.err"
kill "$qemu_pid_b" 2>/dev/null

# ---- (c) TLS required on the usbredir channels ------------------------------------

pki=$tmp/pki
mkdir -p "$pki" "$tmp/other"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=usbgate test CA" \
	-keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/O=usbgate/CN=127.0.0.1" \
	-keyout "$pki/server-key.pem" -out "$pki/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
	-CAcreateserial -days 2 -extfile "$pki/ext.cnf" -out "$pki/server-cert.pem" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=some other CA" \
	-keyout "$tmp/other/key.pem" -out "$tmp/other/ca.pem" >/dev/null 2>&1
pc=$(free_port)
tc=$(free_port)
start_qemu c "port=$pc,tls-port=$tc,addr=127.0.0.1,disable-ticketing=on,x509-dir=$pki,tls-channel=usbredir"
mkdir -p "$tmp/tlsrec"
start_probe c --uri "spice://127.0.0.1:$pc?tls-port=$tc" --ca-file "$pki/ca-cert.pem" \
	--timeout 60 --record "$tmp/tlsrec"
check "plain main channel, usbredir 'need secured' handled by reconnecting over TLS" \
	'ug_wait_match $tmp/c.out "^HELLO 1 qemu usb-redir guest" 20 && ug_wait_match $tmp/c.out "^HELLO 0 qemu usb-redir guest" 5 && grep -q "requires TLS, reconnecting" $tmp/c.err' \
	-- "$tmp/c.out" "$tmp/c.err"
echo quit >&9
exec 9>&-
wait "$probe_pid_c"
run_probe c2 --uri "spice+tls://127.0.0.1:$tc" --ca-file "$pki/ca-cert.pem" \
	--host-subject "O=usbgate,CN=127.0.0.1" --link-only
check "spice+tls:// with the test CA and host subject: linked" '[ "$rc" -eq 0 ]' \
	-- "$tmp/c2.out" "$tmp/c2.err"
run_probe c3 --uri "spice+tls://127.0.0.1:$tc" --ca-file "$tmp/other/ca.pem" --link-only
check "TLS with a wrong CA: exit code 4 and 'certificate verification failed' (rc=$rc)" \
	'[ "$rc" -eq 4 ] && grep -q "certificate verification failed" $tmp/c3.err' \
	-- "$tmp/c3.out" "$tmp/c3.err"
run_probe c4 --uri "spice://127.0.0.1:$pc" --timeout 20
check "plain link to the TLS-only channel without a TLS port: 'need secured' in words, exit 4 (rc=$rc)" \
	'[ "$rc" -eq 4 ] && grep -q "need secured" $tmp/c4.err' -- "$tmp/c4.out" "$tmp/c4.err"
openssl x509 -in "$pki/server-cert.pem" -pubkey -noout >"$tmp/server-pub.pem"
openssl x509 -in "$pki/ca-cert.pem" -pubkey -noout >"$tmp/ca-pub.pem"
run_probe c6 --uri "spice+tls://127.0.0.1:$tc" --pubkey "$tmp/server-pub.pem" --link-only
check "TLS with the server's public key pinned (no CA given): linked" '[ "$rc" -eq 0 ]' \
	-- "$tmp/c6.out" "$tmp/c6.err"
run_probe c7 --uri "spice+tls://127.0.0.1:$tc" --pubkey "$tmp/ca-pub.pem" --link-only
check "TLS with another key pinned: exit code 4, 'does not match the pinned key' (rc=$rc)" \
	'[ "$rc" -eq 4 ] && grep -q "does not match the pinned key" $tmp/c7.err' \
	-- "$tmp/c7.out" "$tmp/c7.err"
run_probe c5 --uri "spice+tls://127.0.0.1:$tc" --ca-file "$pki/ca-cert.pem" \
	--host-subject "O=someone else,CN=127.0.0.1" --link-only
check "TLS with a wrong host subject: exit code 4 (rc=$rc)" \
	'[ "$rc" -eq 4 ] && grep -q "does not match the expected host subject" $tmp/c5.err' \
	-- "$tmp/c5.out" "$tmp/c5.err"
kill "$qemu_pid_c" 2>/dev/null

# Seeds for tests/fuzz/corpus/spice come from these recordings (see spice-seeds.sh).
if [ -n "${UG_SPICE_RECORD_DIR:-}" ]; then
	mkdir -p "$UG_SPICE_RECORD_DIR"
	cp "$tmp"/*.bin "$UG_SPICE_RECORD_DIR"/ 2>/dev/null
	mkdir -p "$UG_SPICE_RECORD_DIR/tls"
	cp "$tmp"/tlsrec/*.bin "$UG_SPICE_RECORD_DIR/tls"/ 2>/dev/null
fi

exit $failed
