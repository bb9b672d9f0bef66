#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv-spice-hotplug.sh: usbredirsrv --spice in the device VM attaches a usb-storage plugged in after its start, found by libusb hotplug events.
#
# The consumer VM has a SPICE server on 127.0.0.1 and a usb-redir device on
# its spicevmc chardev. usbredirsrv runs in the device VM (with
# systemd-udevd, where Debian's libusb gets its hotplug events) as the SPICE
# client of that server: each guest connection to 10.0.2.100:PORT (the
# server's port) is forwarded to it by a socat QEMU starts per connection. At start the device
# VM has only its keyboard (HID, refused by the default auto-connect filter)
# and its serial adapter (present at start, and there is no
# --redirect-on-connect): nothing is attached. Then a usb-storage is plugged
# into the device VM (HMP device_add): usbredirsrv must say at -v that it
# uses hotplug events (it then has no periodic scan), select the disk by the
# auto-connect filter and attach it; the consumer guest reads the whole disk
# and its sha256 must match the image.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-420}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-400}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 8
t_start=$(ug_now)
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "$srv is not built"
udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || tap_bail "$udevd not found: install the Debian package udev"
ug_require qemu-system-x86_64 qemu-system-x86 socat socat ss iproute2
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)

sport=$(ug_free_port)
vm_consumer_start con --spice "$sport" --script storage --env UG_WAIT=300 ||
	tap_bail "cannot start the consumer VM"
ug_wait_listen "$sport" 60 || tap_bail "the consumer VM's SPICE server never listened"

exporter="mkdir -p /run/udev && systemd-udevd --daemon && sleep 0.5; exec usbredirsrv -v --spice spice://10.0.2.100:$sport"
vm_device_start dev --no-listen --guestfwd-cmd "$sport" \
	--files "prog=$srv" --files "prog=$udevd" --exporter "$exporter" \
	--qemu "-drive if=none,id=d1,file=$img,format=raw,cache=writethrough" ||
	tap_bail "cannot start the device VM"

if line=$(vm_wait_for dev 'new USB devices: from libusb hotplug events' 120); then
	tap_ok "usbredirsrv -v says it finds new devices by libusb hotplug events"
else
	tap_fail "usbredirsrv -v says it finds new devices by libusb hotplug events" \
		"$(vm_lines dev 'usbredirsrv|new USB devices' | tail -n 20)"
fi
if vm_wait_for dev 'the VM offers usbredir channel' 120 >/dev/null; then
	tap_ok "it joined the SPICE session and was offered the usbredir channel"
else
	tap_fail "it joined the SPICE session and was offered the usbredir channel" \
		"$(vm_lines dev 'usbredirsrv|SPICE' | tail -n 20)"
fi
tap_is "nothing present at start was selected (HID refused, no --redirect-on-connect)" \
	"$(vm_lines dev ': selected \(' | wc -l)" 0

out=$(vm_hmp dev "device_add usb-storage,bus=xhci.0,drive=d1,id=stor1")
tap_is "device_add of a usb-storage in the device VM after usbredirsrv started" "$out" ""
if line=$(vm_wait_for dev '46f4:0001 .*selected \(plugged in, auto-connect filter\)' 60); then
	tap_ok "usbredirsrv selects the new disk by the auto-connect filter"
else
	tap_fail "usbredirsrv selects the new disk by the auto-connect filter" \
		"$(vm_lines dev 'usbredirsrv|device' | tail -n 20)"
fi
if vm_wait_for dev 'attached to the VM on spice usbredir channel' 60 >/dev/null; then
	tap_ok "and attaches it to the VM's usbredir channel"
else
	tap_fail "and attaches it to the VM's usbredir channel" "$(vm_lines dev 'usbredirsrv|device' | tail -n 20)"
fi
line=$(vm_wait_for con '^UG-RESULT sha256=' 240) || true
tap_is "the consumer guest reads the whole disk: sha256 equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
line=$(vm_wait_for con '^UG-DONE' 60) || true
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0
vm_wait_exit con 60 || vm_stop con
vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
