#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-privdrop.sh: usbredirsrv --user in the device VM: a disk its group may open reads whole; a keyboard it may not is refused.
#
# In the device VM (root there), vm-privdrop.guest.sh gives the usb-storage's
# node /dev/bus/usb/BBB/DDD to a group (what a udev rule with GROUP= and
# MODE="0660" does) and starts usbredirsrv --user UID:GID with two exports:
# the disk and the usb-kbd, whose node stays root's. Every thread of
# usbredirsrv must then run as UID:GID with only GID. The consumer VM gets
# both: the disk must read whole with the image's sha256 and take a write
# (the device is opened per session, after the drop, through the group); the
# keyboard's session must start but the device be refused with "cannot
# open ... Access denied", as usbredirsrv(8) SECURITY says.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-400}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-380}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

tap_plan 10
t_start=$(ug_now)
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || tap_bail "$srv is not built"
udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || tap_bail "$udevd not found: install the Debian package udev"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"
# No passwd entry in the guest: a bare uid and gid, as containers use.
uid=4242
gid=4300

img=$UG_VM_WORK/disk.img
vm_disk_image "$img" 16 || tap_bail "cannot write the disk image"
want_sum=$(sha256sum <"$img" | cut -c1-64)
blk=$UG_VM_WORK/block.bin
head -c 4096 /dev/urandom >"$blk"
blk_sum=$(sha256sum <"$blk" | cut -c1-64)

vm_device_start dev --disk "$img" --files "prog=$srv" --files "prog=$udevd" \
	--files "file=$UG_SRCDIR/tests/integration/vm-privdrop.guest.sh:/ug/privdrop.sh" \
	--fwd 4001 --exporter "sh /ug/privdrop.sh $uid $gid" || tap_bail "cannot start the device VM"
vm_consumer_start con --script storage --files "file=$blk:/ug/block.bin" \
	--env UG_WRITE_FILE=/ug/block.bin --env UG_WAIT=90 || tap_bail "cannot start the consumer VM"

if line=$(vm_wait_for dev '^UG-EXPORTER-READY' 120); then
	tap_ok "usbredirsrv --user $uid:$gid listens in the device VM ($line)"
else
	tap_fail "usbredirsrv --user $uid:$gid listens in the device VM"
fi
tap_is "the disk's node belongs to group $gid, mode 660; the keyboard's stays root's" \
	"$(vm_lines dev '^UG-NODE ' | awk '{ print $2, ($2 == "46f4:0001" ? $4 " " : "") $5, $6 }' |
		sort | tr '\n' ' ')" "0627:0001 0 0 46f4:0001 660 0 $gid "
vm_wait_for dev '^UG-IDS-END' 30 >/dev/null
ids=$(vm_lines dev '^UG-IDS ' | sed 's/^UG-IDS task=[0-9]* //' | sort -u)
tap_is "every thread ($(vm_lines dev '^UG-IDS ' | wc -l)) runs as uid $uid gid $gid with only group $gid" \
	"$ids" "Uid=$uid,$uid,$uid,$uid Gid=$gid,$gid,$gid,$gid Groups=$gid "
if vm_wait_for dev "running as $uid:$gid \\(uid $uid, gid $gid, groups $gid\\) from now on" 10 >/dev/null; then
	tap_ok "usbredirsrv logged the drop"
else
	tap_fail "usbredirsrv logged the drop" "$(vm_lines dev 'usbredirsrv' | tail -n 5)"
fi

vm_wait_for con '^UG-RUN start' 120 >/dev/null || tap_bail "the consumer VM did not reach its test script"
vm_redir_attach con "$(vm_port dev)" redir0
# The keyboard too, while the consumer runs: its session starts, but its
# node is root's.
vm_redir_attach con "$(vm_port dev 4001)" redir1
line=$(vm_wait_for con '^UG-RESULT sha256=' 150)
tap_is "as uid $uid: the guest reads the whole disk, sha256 equal to the image's" \
	"$(vm_field "$line" sha256) $(vm_field "$line" bytes)" "$want_sum $((16 * 1024 * 1024))"
line=$(vm_wait_for con '^UG-RESULT write ' 60)
tap_is "as uid $uid: the written block reads back" \
	"$(vm_field "$line" sha256) $(vm_field "$line" readback)" "$blk_sum $blk_sum"
read1=$(vm_lines con '^UG-RESULT read ' | head -n 1)
if vm_wait_for dev 'export 0627:0001@0.0.0.0:4001: session started' 60 >/dev/null; then
	tap_ok "the keyboard's export starts a session"
else
	tap_fail "the keyboard's export starts a session"
fi
if line=$(vm_wait_for dev 'cannot open 0627:0001 .*Access denied' 30); then
	tap_ok "but the dropped usbredirsrv cannot open the keyboard's node, and says so"
else
	tap_fail "but the dropped usbredirsrv cannot open the keyboard's node, and says so" \
		"$(vm_lines dev '0627' | tail -n 5)"
fi
line=$(vm_wait_for con '^UG-DONE' 60)
tap_is "the consumer script succeeded" "$(vm_field "$line" rc)" 0
if vm_lines dev 'UG-EXPORTER-EXIT|AddressSanitizer|CRITICAL|assertion' | grep -q .; then
	tap_fail "usbredirsrv ran throughout without errors" \
		"$(vm_lines dev 'UG-EXPORTER-EXIT|AddressSanitizer|CRITICAL|assertion')"
else
	tap_ok "usbredirsrv ran throughout without errors"
fi
vm_wait_exit con 60 || vm_stop con
vm_stop dev
tap_diag "guest-visible read through usbredirsrv --user: $(vm_field "$read1" mbps) MB/s" \
	"whole test: $(ug_since "$t_start")s"
