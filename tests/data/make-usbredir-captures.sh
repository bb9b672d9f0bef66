#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-usbredir-captures.sh: records the real usbredir captures in tests/data/ (usbredir-*.pcap) with the VM rig and tcpdump.
#
# Run as root from a configured build directory:
#   UG_SRCDIR=.. UG_BUILDDIR=. sh ../tests/data/make-usbredir-captures.sh
# Two sessions between QEMU's usb-redir in the consumer VM and Debian's
# usbredirect in the device VM, each recorded by tcpdump on lo (the hostfwd
# port): the emulated usb-kbd (enumeration, a few keys), and the emulated
# usb-storage with a 1 MiB disk, cut to its first 400 frames with editcap
# (enumeration and the first SCSI reads) so that the file stays small.
# From the storage capture, usbredir-storage-midstream.pcap drops the first
# 40 frames: a capture that starts after the hellos.
# Without VMs: tls-only.pcap, an openssl s_server/s_client exchange on lo
# (what a TLS-wrapped usbredir or SPICE connection looks like to usbdump).
# UG_ONLY=tls records only that one.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

OUT=${UG_DATA_OUT:-$UG_SRCDIR/tests/data}
W=$UG_VM_WORK
tap_plan 3

# TLS: a throw-away self-signed key, one short exchange.
tport=$(ug_free_port)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" \
	-days 1 -subj /CN=usbgate-test 2>/dev/null
ug_spawn tcpdump-tls 60 tcpdump -i lo -U -w "$W/tls.pcap" "tcp port $tport"
for _ in $(seq 50); do grep -q 'listening on' "$W/tcpdump-tls.log" 2>/dev/null && break; sleep 0.1; done
ug_spawn s_server 30 openssl s_server -accept "127.0.0.1:$tport" -cert "$W/cert.pem" \
	-key "$W/key.pem" -naccept 1 -quiet
sleep 1
echo "usbredir over TLS would be here" | timeout 10 openssl s_client -connect "127.0.0.1:$tport" \
	-quiet >/dev/null 2>&1
sleep 1
ug_kill_pidfile "$W/tcpdump-tls.pid"
cp "$W/tls.pcap" "$OUT/tls-only.pcap"
tap_ok "TLS exchange recorded ($(stat -c %s "$OUT/tls-only.pcap") bytes)"
[ "${UG_ONLY:-}" = tls ] && exit 0

vm_guest || tap_bail "cannot build the test guest"

record() { # NAME: tcpdump on the device VM's hostfwd port into $W/NAME.pcap
	ug_spawn "tcpdump-$1" 200 tcpdump -i lo -U -w "$W/$1.pcap" "tcp port $(vm_port dev)"
	for _ in $(seq 50); do
		grep -q 'listening on' "$W/tcpdump-$1.log" 2>/dev/null && break
		sleep 0.1
	done
}

# The keyboard.
vm_device_start dev --id 0627:0001 || tap_bail "device VM"
vm_consumer_start con --script kbd || tap_bail "consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "exporter"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "consumer"
record kbd
vm_redir_attach con "$(vm_port dev)"
vm_wait_for con '^UG-KBD-READY' 90 >/dev/null || tap_bail "keyboard in the guest"
for k in u s b esc; do vm_sendkey dev "$k" >/dev/null; done
line=$(vm_wait_for con '^UG-RESULT keys=' 60)
tap_is "keys arrived" "$(vm_field "$line" keys)" "22,31,48,1"
vm_wait_exit con 60 || vm_stop con
vm_wait_exit dev 60 || vm_stop dev
sleep 1
ug_kill_pidfile "$W/tcpdump-kbd.pid"
cp "$W/kbd.pcap" "$OUT/usbredir-kbd.pcap"
rm -rf "$(vm_dir dev)" "$(vm_dir con)"

# The storage device.
vm_disk_image "$W/disk.img" 1
vm_device_start dev --disk "$W/disk.img" || tap_bail "device VM"
vm_consumer_start con --script storage || tap_bail "consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 120 >/dev/null || tap_bail "exporter"
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "consumer"
record storage
vm_redir_attach con "$(vm_port dev)"
line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_is "disk read" "$(vm_field "$line" sha256)" "$(sha256sum <"$W/disk.img" | cut -c1-64)"
vm_wait_exit con 60 || vm_stop con
vm_wait_exit dev 60 || vm_stop dev
sleep 1
ug_kill_pidfile "$W/tcpdump-storage.pid"
editcap -r "$W/storage.pcap" "$OUT/usbredir-storage.pcap" 1-400
editcap -r "$W/storage.pcap" "$OUT/usbredir-storage-midstream.pcap" 41-400
ls -l "$OUT"/usbredir-*.pcap | tap_diag "$(cat)"
