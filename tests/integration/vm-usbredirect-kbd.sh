#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirect-kbd.sh: proves the VM rig with a keyboard: keys typed into the device VM's usb-kbd reach the consumer guest.
#
# The device VM runs usbredirect on its QEMU usb-kbd; the consumer VM gets it
# through usb-redir and reads its evdev node; keys sent with HMP sendkey on
# the device VM's monitor must arrive as the matching Linux key codes.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 7
t_start=$(ug_now)
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

# QEMU key names and the Linux key codes they must become; Esc ends the guest script.
keys="u s b g a t e 1 2 ret"
want_codes="22,31,48,34,30,20,18,2,3,28,1"

vm_device_start dev --id 0627:0001 || tap_bail "cannot start the device VM"
vm_consumer_start con --script kbd || tap_bail "cannot start the consumer VM"

if line=$(vm_wait_for dev '^UG-EXPORTER-READY' 120); then
	tap_ok "usbredirect listens in the device VM ($line)"
else
	tap_fail "usbredirect listens in the device VM"
	tap_bail "the device VM's exporter never listened; nothing else can work"
fi
vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM never reached its test script"
vm_redir_attach con "$(vm_port dev)" || tap_bail "cannot hot-plug usb-redir into the consumer VM"

if line=$(vm_wait_for con '^UG-ENUM' 90); then
	tap_is "consumer guest enumerates the redirected keyboard" "$(vm_field "$line" id)" 0627:0001
else
	tap_fail "consumer guest enumerates the redirected keyboard"
	tap_bail "no redirected keyboard in the consumer guest"
fi
desc=$(vm_wait_for con '^UG-DESC if ' 30)
tap_is "its interface is HID boot keyboard" \
	"$(vm_field "$desc" class) $(vm_field "$desc" subclass) $(vm_field "$desc" protocol)" "03 01 01"

if vm_wait_for con '^UG-KBD-READY' 60 >/dev/null; then
	tap_ok "the consumer guest opened the keyboard's event device"
else
	tap_fail "the consumer guest opened the keyboard's event device"
fi
# shellcheck disable=SC2086 # one argument per key
sent=$(vm_type dev con $keys esc)
tap_is "HMP sendkey accepted every key" "$sent" "$(echo $keys esc | wc -w)"

line=$(vm_wait_for con '^UG-RESULT keys=' 60)
tap_is "the keys arrive in the consumer guest, in order, as Linux key codes" \
	"$(vm_field "$line" keys)" "$want_codes"
line=$(vm_wait_for con '^UG-DONE' 30)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0

vm_wait_exit con 60 || vm_stop con
vm_wait_exit dev 60 || vm_stop dev
tap_diag "boot to /init: device $(vm_boot_seconds dev)s, consumer $(vm_boot_seconds con)s (guest clock)" \
	"key events seen: $(vm_lines con '^UG-KEY ' | wc -l)" \
	"whole test: $(ug_since "$t_start")s"
