#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-usbredirect-reverse.sh: the other direction of the rig: the consumer's usb-redir listens, usbredirect connects out to it.
#
# The consumer VM's usb-redir chardev is a server on a host port; the device
# VM reaches it only through QEMU's guestfwd (10.0.2.100:4000 in the guest),
# where usbredirect --to connects. The consumer reads the whole disk.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 3
t_start=$(ug_now)
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 8 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)

port=$(ug_free_port)
vm_consumer_start con --listen "$port" --script storage || tap_bail "cannot start the consumer VM"
# The server socket exists once QEMU has parsed its options; the device VM's
# usbredirect connects tens of seconds later at the earliest.
vm_device_start dev --disk "$img" --no-listen --guestfwd "$port" \
	--exporter "usbredirect --device 46f4:0001 --to 10.0.2.100:4000" ||
	tap_bail "cannot start the device VM"

if line=$(vm_wait_for con '^UG-ENUM' 120); then
	tap_is "consumer guest enumerates the disk usbredirect connected out with" "$(vm_field "$line" id)" 46f4:0001
else
	tap_fail "consumer guest enumerates the disk usbredirect connected out with"
	tap_bail "no redirected disk in the consumer guest"
fi
line=$(vm_wait_for con '^UG-RESULT sha256=' 120)
tap_is "sha256 of the whole disk read in the consumer guest equals the image's" \
	"$(vm_field "$line" sha256)" "$want_sum"
line=$(vm_wait_for con '^UG-DONE' 60)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0
vm_wait_exit con 60 || vm_stop con
# slirp does not pass the host side's close on to a guestfwd connection, so
# usbredirect in the device VM never learns that its peer left: stop it.
vm_stop dev
read_line=$(vm_lines con '^UG-RESULT read ' | head -n 1)
tap_diag "read through usbredirect (client mode): $(vm_field "$read_line" mbps) MB/s" \
	"whole test: $(ug_since "$t_start")s"
