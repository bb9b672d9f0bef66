#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirsrv-connect.sh: usbredirsrv --connect with real QEMU: the consumer's usb-redir listens, usbredirsrv connects out and exports the disk.
#
# The consumer VM's usb-redir chardev is a server on a host port; the device
# VM reaches it only through QEMU's guestfwd (10.0.2.100:4000 in the guest).
# QEMU connects a tcp guestfwd when it starts, so the consumer starts first
# (retrying with backoff until a listener appears is covered on the host by
# usbredirsrv-cli.sh). The consumer guest reads the whole disk.
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 5
t_start=$(ug_now)
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "$srv is not built"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 8 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)

port=$(ug_free_port)
vm_consumer_start con --listen "$port" --script storage || tap_bail "cannot start the consumer VM"
vm_device_start dev --disk "$img" --no-listen --guestfwd "$port" --files "prog=$srv" \
	--exporter "exec usbredirsrv -v --connect 46f4:0001@10.0.2.100:4000" ||
	tap_bail "cannot start the device VM"
if line=$(vm_wait_for dev '^UG-EXPORTER-READY' 120); then
	tap_ok "usbredirsrv starts in the device VM"
else
	tap_fail "usbredirsrv starts in the device VM"
fi
if line=$(vm_wait_for con '^UG-ENUM' 120); then
	tap_is "the consumer guest enumerates the disk usbredirsrv connected out with" \
		"$(vm_field "$line" id)" 46f4:0001
else
	tap_fail "the consumer guest enumerates the disk usbredirsrv connected out with"
fi
line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_is "sha256 of the whole disk read in the consumer guest equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
line=$(vm_wait_for con '^UG-DONE' 60)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0
if vm_lines dev 'Message: .*session started' | grep -q .; then
	tap_ok "usbredirsrv logged the session"
else
	tap_fail "usbredirsrv logged the session"
fi
vm_wait_exit con 60 || vm_stop con
# slirp does not pass the host side's close on to a guestfwd connection.
vm_stop dev
read_line=$(vm_lines con '^UG-RESULT read ' | head -n 1)
tap_diag "read through usbredirsrv --connect: $(vm_field "$read_line" mbps) MB/s" \
	"whole test: $(ug_since "$t_start")s"
