#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbredirsrv-spice-auth.sh: usbredirsrv --spice --from against SeaBIOS-only QEMUs: no ticketing, two devices, passwords, TLS, a killed server, detach.
#
# No guest OS: each QEMU runs SeaBIOS with qemu-xhci, a SPICE server on
# 127.0.0.1 and one or two usb-redir devices on spicevmc chardevs, paused
# (-S) until usbredirsrv has attached, so that SeaBIOS finds the device when
# it scans USB. The device behind each --from is usbreplay in device mode
# listening on TCP, playing the recorded flash drive (tests/data/storage.raw.pcap);
# it serves one connection and exits, so a bounded loop starts it again.
# HMP "info usb" shows an attached usb-redir device at the recorded 5000 Mb/s
# (QEMU names every redirected device "USB Redirection Device"; the idle one
# shows 1.5 Mb/s) and SeaBIOS's log on the debug port shows the product
# strings it read from the device through usbredirsrv.
#   (a) disable-ticketing=on: attach without a password; stopping the --from
#       source detaches the device; SIGTERM ends usbredirsrv with 0.
#   (b) two usb-redir devices, two --from sources in one usbredirsrv.
#   (c) password-secret: wrong password, right one, then HMP
#       "expire_password spice now": exit 3 and words, never the password.
#   (d) tls-channel=usbredir with a test PKI made here by openssl: the right
#       CA attaches over TLS, a wrong CA ends with exit 4 naming the failed
#       verification (plain main channel and spice+tls:// alike).
#   (e) QEMU killed (SIGKILL) while SeaBIOS reads the device: usbredirsrv
#       says so and reconnects; the restarted QEMU on the same port gets the
#       device again. With --no-reconnect the same kill ends it with exit 4.
# Every process runs under timeout and is killed by PID.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-360}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
SRV=$TOOLS/usbredirsrv/usbredirsrv
UR=$TOOLS/usbreplay/usbreplay
W=$UG_VM_WORK
cap=$UG_SRCDIR/tests/data/storage.raw.pcap
tap_plan 32
[ -x "$SRV" ] || tap_bail "$SRV is not built"
[ -x "$UR" ] || tap_bail "$UR is not built"
ug_require "$UG_QEMU" qemu-system-x86 openssl openssl ss iproute2 python3 python3

# ---- helpers ---------------------------------------------------------------------

# wait_log NAME ERE SECONDS: a line of $W/NAME.log.
wait_log() { ug_wait_match "$W/$1.log" "$2" "$3"; }
# wait_count NAME REGEX N SECONDS: until N lines of $W/NAME.log match.
wait_count() { ug_wait_count "$W/$1.log" "$2" "$3" "$4"; }
# wait_exit NAME SECONDS: until the process of $W/NAME.pid ended; its exit
# status (through timeout, which passes it on) in $rc, 124 on our timeout.
wait_exit() {
	if ! ug_wait_gone "$W/$1.pid" "$2"; then
		rc=124
		ug_kill_pidfile "$W/$1.pid"
		return 1
	fi
	wait "$(cat "$W/$1.pid")"
	rc=$?
	return 0
}
# usb_state VM ID: "attached" (5000 Mb/s), "idle" (1.5 Mb/s) or what HMP said.
usb_state() {
	_u=$(vm_info_usb "$1" 2>/dev/null)
	case $_u in
	*"Speed 5000 Mb/s, Product USB Redirection Device, ID: $2"*) echo attached ;;
	*"Speed 1.5 Mb/s, Product USB Redirection Device, ID: $2"*) echo idle ;;
	*) printf '%s' "$_u" | tr '\n' ' ' ;;
	esac
}
# wait_usb VM ID STATE SECONDS: until usb_state is STATE; the last one in $usb.
wait_usb() {
	_i=0
	while :; do
		usb=$(usb_state "$1" "$2")
		[ "$usb" = "$3" ] && return 0
		[ $_i -ge $(($4 * 2)) ] && return 1
		sleep 0.5
		_i=$((_i + 1))
	done
}
# source_start NAME PORT: usbreplay playing the flash drive on 127.0.0.1:PORT,
# started again after each session (at most 8 times), log in $W/NAME.log.
source_start() {
	ug_spawn "$1" 300 sh -c 'n=0
		while [ $n -lt 8 ]; do
			"$0" -vv --ignore 2:14-14 --listen "127.0.0.1:$1" "$2" </dev/null
			echo "usbreplay exited with $?"
			n=$((n + 1))
		done' "$UR" "$2" "$cap"
	ug_wait_listen "$2" 20 || tap_bail "usbreplay never listened on $2: $(tail -n 3 "$W/$1.log")"
}
# bios_start VM SPICE-OPTIONS NDEVICES [QEMU ARGS]: a paused SeaBIOS-only
# QEMU with usb-redir devices redir0.. on spicevmc chardevs.
bios_start() {
	_vm=$1 _so=$2 _nd=$3
	shift 3
	_q="-S -spice $_so"
	_k=0
	while [ $_k -lt "$_nd" ]; do
		_q="$_q -chardev spicevmc,name=usbredir,id=ur$_k -device usb-redir,chardev=ur$_k,bus=xhci.0,id=redir$_k"
		_k=$((_k + 1))
	done
	vm_consumer_start "$_vm" --bios-only --qemu "$_q $*" || tap_bail "cannot start QEMU $_vm"
	_i=0
	while [ $_i -lt 100 ] && ! vm_hmp "$_vm" "info status" 2>/dev/null | grep -q paused; do
		sleep 0.1
		_i=$((_i + 1))
	done
}
# srv_start NAME SECONDS ARGS...: usbredirsrv -v in the background.
srv_start() {
	_n=$1 _t=$2
	shift 2
	ug_spawn "$_n" "$_t" "$SRV" -v "$@"
}
# seabios_products VM: the USB storage products SeaBIOS found (its debug log).
seabios_products() { vm_lines "$1" "USB MSC vendor=" | sed -n "s/.*product='\([^']*\)'.*/\1/p"; }
no_secret() { ! grep -q "$2" "$W/$1.log"; }

# The recorded device is QEMU's emulated usb-storage; SeaBIOS prints the
# product of its SCSI INQUIRY answer.
want_product='QEMU HARDDISK'
printf 'correct horse\n' >"$W/pw-good"
printf 'battery staple\n' >"$W/pw-bad"
printf 'correct horse' >"$W/secret"

# ---- (a) disable-ticketing=on, one device; detach -------------------------------

pa=$(ug_free_port)
da=$(ug_free_port)
source_start deva "$da"
bios_start a "port=$pa,addr=127.0.0.1,disable-ticketing=on" 1
srv_start srva 120 --spice "spice://127.0.0.1:$pa" --from "tcp:127.0.0.1:$da"
if wait_log srva "127.0.0.1:$da attached to the VM on spice usbredir channel 0" 30; then
	tap_ok "(a) no ticketing: usbredirsrv links without a password and attaches the --from export"
else
	tap_fail "(a) no ticketing: usbredirsrv links without a password and attaches the --from export" \
		"$(tail -n 10 "$W/srva.log")"
fi
vm_hmp a cont >/dev/null
if wait_usb a redir0 attached 30; then
	tap_ok "(a) HMP info usb: redir0 holds the device at 5000 Mb/s (USB Redirection Device)"
else
	tap_fail "(a) HMP info usb: redir0 holds the device at 5000 Mb/s" "info usb: $usb"
fi
vm_wait_for a "USB MSC vendor=" 40 >/dev/null
prod=$(seabios_products a)
tap_is "(a) SeaBIOS read the device's product string through usbredirsrv" "$prod" "$want_product"
if grep -q "answered from" "$W/deva.log"; then
	tap_ok "(a) the recorded device answered SeaBIOS's requests ($(grep -c 'answered from' "$W/deva.log"))"
else
	tap_fail "(a) the recorded device answered SeaBIOS's requests" "$(tail -n 5 "$W/deva.log")"
fi
# Detach: the --from source goes away (and stays away).
ug_kill_pidfile "$W/deva.pid"
if wait_usb a redir0 idle 20; then
	tap_ok "(a) stopping the --from source detaches the device: redir0 idle (1.5 Mb/s) again"
else
	tap_fail "(a) stopping the --from source detaches the device" "info usb: $usb" \
		"$(tail -n 5 "$W/srva.log")"
fi
if wait_log srva "127.0.0.1:$da detached" 10; then
	tap_ok "(a) usbredirsrv logs the detach ($(grep "detached" "$W/srva.log" | tail -n 1 | cut -c1-120))"
else
	tap_fail "(a) usbredirsrv logs the detach" "$(tail -n 5 "$W/srva.log")"
fi
# The source comes back: attached again without touching usbredirsrv.
source_start deva2 "$da"
if wait_usb a redir0 attached 30; then
	tap_ok "(a) the source back on its port: attached again (backoff retries)"
else
	tap_fail "(a) the source back on its port: attached again" "info usb: $usb" \
		"$(tail -n 5 "$W/srva.log")"
fi
kill -TERM "$(cat "$W/srva.pid")"
wait_exit srva 15
tap_is "(a) SIGTERM: usbredirsrv exits 0" "$rc" 0
if wait_usb a redir0 idle 20; then
	tap_ok "(a) and the device is gone from the VM"
else
	tap_fail "(a) and the device is gone from the VM" "info usb: $usb"
fi
vm_stop a
ug_kill_pidfile "$W/deva2.pid"

# ---- (b) two usb-redir devices, two --from sources --------------------------------

pb=$(ug_free_port)
db1=$(ug_free_port)
db2=$(ug_free_port)
source_start devb1 "$db1"
source_start devb2 "$db2"
bios_start b "port=$pb,addr=127.0.0.1,disable-ticketing=on" 2
srv_start srvb 120 --spice "spice://127.0.0.1:$pb" --from "tcp:127.0.0.1:$db1" \
	--from "tcp:127.0.0.1:$db2"
if wait_count srvb "attached to the VM on spice usbredir channel [01]" 2 30; then
	tap_ok "(b) both --from exports attached, one per usbredir channel"
else
	tap_fail "(b) both --from exports attached, one per usbredir channel" "$(tail -n 10 "$W/srvb.log")"
fi
vm_hmp b cont >/dev/null
wait_usb b redir0 attached 30
u0=$usb
wait_usb b redir1 attached 10
tap_is "(b) HMP info usb: redir0 and redir1 both hold a device at 5000 Mb/s" "$u0 $usb" "attached attached"
vm_wait_count b "USB MSC vendor=" 2 40 >/dev/null
tap_is "(b) SeaBIOS found two drives through the two channels" "$(seabios_products b | wc -l)" 2
ug_kill_pidfile "$W/devb2.pid"
wait_usb b redir1 idle 20
u1=$usb
tap_is "(b) stopping one source detaches only its device" "$(usb_state b redir0) $u1" "attached idle"
kill -TERM "$(cat "$W/srvb.pid")"
wait_exit srvb 15
vm_stop b
ug_kill_pidfile "$W/devb1.pid"

# ---- (c) passwords: wrong, right, expired ------------------------------------------

pc=$(ug_free_port)
dc=$(ug_free_port)
source_start devc "$dc"
bios_start c "port=$pc,addr=127.0.0.1,password-secret=sec0" 1 -object "secret,id=sec0,file=$W/secret"
srv_start badpw 60 --spice "spice://127.0.0.1:$pc" --spice-password-file "$W/pw-bad" \
	--from "tcp:127.0.0.1:$dc"
wait_exit badpw 30
tap_is "(c) wrong password: exit status 3 (documented)" "$rc" 3
if grep -q "wrong password" "$W/badpw.log" && no_secret badpw battery; then
	tap_ok "(c) it says 'wrong password' and does not show it ($(grep -o 'permission denied.*' "$W/badpw.log" | head -n 1))"
else
	tap_fail "(c) it says 'wrong password' and does not show it" "$(cat "$W/badpw.log")"
fi
srv_start goodpw 60 --spice "spice://127.0.0.1:$pc" --spice-password-file "$W/pw-good" \
	--from "tcp:127.0.0.1:$dc"
wait_log goodpw "attached to the VM on spice usbredir channel 0" 30
vm_hmp c cont >/dev/null
if wait_usb c redir0 attached 30; then
	tap_ok "(c) the right password from a file: attached (HMP info usb at 5000 Mb/s)"
else
	tap_fail "(c) the right password from a file: attached" "info usb: $usb" "$(tail -n 5 "$W/goodpw.log")"
fi
kill -TERM "$(cat "$W/goodpw.pid")"
wait_exit goodpw 15
vm_hmp c "expire_password spice now" >/dev/null
USBREDIRSRV_SPICE_PASSWORD='correct horse' srv_start expired 60 --spice "spice://127.0.0.1:$pc" \
	--from "tcp:127.0.0.1:$dc"
wait_exit expired 30
tap_is "(c) expired password (HMP expire_password spice now): exit status 3" "$rc" 3
if grep -q "expired" "$W/expired.log" && no_secret expired "correct horse" && no_secret goodpw "correct horse"; then
	tap_ok "(c) the message says the password may have expired, and never shows it"
else
	tap_fail "(c) the message says the password may have expired, and never shows it" "$(cat "$W/expired.log")"
fi
vm_stop c
ug_kill_pidfile "$W/devc.pid"

# ---- (d) TLS required on the usbredir channel ---------------------------------------

pki=$W/pki
mkdir -p "$pki" "$W/other"
{
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=usbgate test CA" \
		-keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" &&
		openssl req -newkey rsa:2048 -nodes -subj "/O=usbgate/CN=127.0.0.1" \
			-keyout "$pki/server-key.pem" -out "$pki/server.csr" &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$pki/ext.cnf" &&
		openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
			-CAcreateserial -days 2 -extfile "$pki/ext.cnf" -out "$pki/server-cert.pem" &&
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=some other CA" \
			-keyout "$W/other/key.pem" -out "$W/other/ca.pem"
} >"$W/openssl.log" 2>&1 || tap_bail "openssl could not make the test PKI: $(tail -n 3 "$W/openssl.log")"
pd=$(ug_free_port)
td=$(ug_free_port)
dd=$(ug_free_port)
source_start devd "$dd"
bios_start d "port=$pd,tls-port=$td,addr=127.0.0.1,disable-ticketing=on,x509-dir=$pki,tls-channel=usbredir" 1
srv_start tls 60 --spice "spice://127.0.0.1:$pd?tls-port=$td" --spice-ca-file "$pki/ca-cert.pem" \
	--from "tcp:127.0.0.1:$dd"
wait_log tls "attached to the VM on spice usbredir channel 0" 30
vm_hmp d cont >/dev/null
if wait_usb d redir0 attached 30 && grep -q "requires TLS" "$W/tls.log"; then
	tap_ok "(d) the usbredir channel needs TLS: usbredirsrv switches to the TLS port with the test CA and attaches"
else
	tap_fail "(d) the usbredir channel needs TLS: usbredirsrv attaches over TLS" "info usb: $usb" \
		"$(tail -n 8 "$W/tls.log")"
fi
vm_wait_for d "USB MSC vendor=" 40 >/dev/null
tap_is "(d) SeaBIOS read the product string over the TLS channel" "$(seabios_products d)" "$want_product"
kill -TERM "$(cat "$W/tls.pid")"
wait_exit tls 15
srv_start badca 60 --spice "spice://127.0.0.1:$pd?tls-port=$td" --spice-ca-file "$W/other/ca.pem" \
	--from "tcp:127.0.0.1:$dd"
wait_exit badca 30
tap_is "(d) a wrong CA for the TLS usbredir channel: exit status 4 (documented)" "$rc" 4
if grep -q "certificate verification failed" "$W/badca.log"; then
	tap_ok "(d) the message names the failed verification ($(grep -o 'certificate verification failed.*' "$W/badca.log" | head -n 1 | cut -c1-100))"
else
	tap_fail "(d) the message names the failed verification" "$(cat "$W/badca.log")"
fi
srv_start badca2 60 --spice "spice+tls://127.0.0.1:$td" --spice-ca-file "$W/other/ca.pem" \
	--from "tcp:127.0.0.1:$dd"
wait_exit badca2 30
if [ "$rc" = 4 ] && grep -q "certificate verification failed" "$W/badca2.log"; then
	tap_ok "(d) spice+tls:// with a wrong CA: exit 4, 'certificate verification failed'"
else
	tap_fail "(d) spice+tls:// with a wrong CA: exit 4, 'certificate verification failed'" "exit $rc" \
		"$(cat "$W/badca2.log")"
fi
vm_stop d
ug_kill_pidfile "$W/devd.pid"

# ---- (e) the SPICE server killed mid-transfer ----------------------------------------

pe=$(ug_free_port)
de=$(ug_free_port)
re=$(ug_free_port)
source_start deve "$de"
# Between usbredirsrv and the source, a relay lets QEMU's hello through and
# then holds SeaBIOS's requests (first connection only): the device is
# offered and attached, and SeaBIOS's first request is in flight, for sure,
# when QEMU is killed.
ug_spawn relaye 300 python3 "$UG_SRCDIR/tests/integration/usbredir-hold-relay.py" "$re" "$de" 290
ug_wait_listen "$re" 20 || tap_bail "the relay never listened: $(cat "$W/relaye.log")"
bios_start e1 "port=$pe,addr=127.0.0.1,disable-ticketing=on" 1
srv_start srve 200 --spice "spice://127.0.0.1:$pe" --from "tcp:127.0.0.1:$re"
wait_log srve "attached to the VM on spice usbredir channel 0" 30
vm_hmp e1 cont >/dev/null
wait_log relaye "^held" 30
wait_usb e1 redir0 attached 30
vm_wait_for e1 "XHCI port #1: .*Super" 30 >/dev/null
sleep 1
answered=$(grep -c "request [0-9]*:" "$W/deve.log")
scanned=$(vm_lines e1 "storage@" | wc -l)
kill -KILL "$(cat "$(vm_dir e1)/qemu.pid")"
vm_wait_exit e1 10
tap_is "(e) QEMU was killed with SeaBIOS's first request in flight (relay held, answered, identified)" \
	"$(grep -c '^held' "$W/relaye.log") $answered $scanned" "1 0 0"
if wait_log srve "SPICE session ended: .*reconnecting" 20; then
	tap_ok "(e) QEMU killed while SeaBIOS reads: usbredirsrv says the session ended and reconnects"
else
	tap_fail "(e) QEMU killed while SeaBIOS reads: usbredirsrv says so and reconnects" \
		"$(tail -n 8 "$W/srve.log")"
fi
if kill -0 "$(cat "$W/srve.pid")" 2>/dev/null; then
	tap_ok "(e) usbredirsrv is still running while the server is gone"
else
	tap_fail "(e) usbredirsrv is still running while the server is gone" "$(tail -n 8 "$W/srve.log")"
fi
bios_start e2 "port=$pe,addr=127.0.0.1,disable-ticketing=on" 1
wait_count srve "attached to the VM on spice usbredir channel 0" 2 40
vm_hmp e2 cont >/dev/null
if wait_usb e2 redir0 attached 30; then
	tap_ok "(e) QEMU restarted on the same port: the device is attached again (HMP info usb)"
else
	tap_fail "(e) QEMU restarted on the same port: the device is attached again" "info usb: $usb" \
		"$(tail -n 8 "$W/srve.log")"
fi
vm_wait_for e2 "USB MSC vendor=" 40 >/dev/null
tap_is "(e) and SeaBIOS on the restarted QEMU reads its product string" "$(seabios_products e2)" \
	"$want_product"
tap_is "(e) two SPICE sessions in one usbredirsrv process" \
	"$(grep -Ec 'SPICE session [0-9a-f]+ connected' "$W/srve.log")" 2
kill -TERM "$(cat "$W/srve.pid")"
wait_exit srve 15
# --no-reconnect: the same kill ends usbredirsrv instead.
srv_start oneshot 60 --no-reconnect --spice "spice://127.0.0.1:$pe" --from "tcp:127.0.0.1:$re"
wait_usb e2 redir0 attached 30
kill -KILL "$(cat "$(vm_dir e2)/qemu.pid")"
vm_wait_exit e2 10
wait_exit oneshot 20
tap_is "(e) --no-reconnect: the killed server ends usbredirsrv with exit status 4 (documented)" "$rc" 4
if grep -Eq "closed the connection|reset" "$W/oneshot.log"; then
	tap_ok "(e) and it says why ($(grep -E 'closed the connection|reset' "$W/oneshot.log" | tail -n 1 | cut -c1-120))"
else
	tap_fail "(e) and it says why" "$(tail -n 5 "$W/oneshot.log")"
fi
ug_kill_pidfile "$W/relaye.pid"
ug_kill_pidfile "$W/deve.pid"
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$W"/*.log; then
	tap_fail "no sanitizer report in any log" "$(grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' "$W"/*.log)"
else
	tap_ok "no sanitizer report in any log"
fi
