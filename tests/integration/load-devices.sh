#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# load-devices.sh: usbredirsrv in the device VM forwards 8 emulated devices at once (7 USB disks and a keyboard) to one consumer VM.
#
# The device VM gets 6 more usb-storage devices (serials UGD1..UGD6, each a
# 1 MiB pattern disk with its own first sector) on a second xHCI next to the
# rig's stor0, usb-kbd and usb-serial. usbredirsrv runs 8 exports, one port
# each (the disks by serial=, stor0 by vid:pid last, the keyboard by
# vid:pid); the consumer VM plugs 8 usb-redir devices (on two xHCIs: the rig's
# has a full-speed hub on its 4th port) and its guest reads every disk whole. Checks: all 8
# sessions start, each disk's sha256 in the guest equals its image's, the
# keyboard is there, and every session ends when the consumer goes away.
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-240}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-230}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
srv=$TOOLS/usbredirsrv/usbredirsrv
udevd=/lib/systemd/systemd-udevd
W=$UG_VM_WORK
N=6
tap_plan 6
t_start=$(ug_now)
[ -x "$srv" ] || tap_bail "$srv is not built"
[ -x "$udevd" ] || tap_bail "$udevd not found: install the Debian package udev"
vm_guest || tap_bail "cannot build the test guest (tests/vm/build-guest.sh)"

# disk K: 1 MiB pattern, first sector tagged so that every disk differs.
mkdisk() {
	vm_disk_image "$W/disk$1.img" 1 || return 1
	printf 'UGLOAD disk %s\n' "$1" | dd of="$W/disk$1.img" conv=notrunc 2>/dev/null
}
mkdisk 0 || tap_bail "cannot write the disk images"
qextra="-device qemu-xhci,id=xhci2,p2=8,p3=8"
exports=""
fwds=""
k=1
while [ $k -le $N ]; do
	mkdisk $k
	qextra="$qextra -drive if=none,id=dd$k,file=$W/disk$k.img,format=raw,cache=writethrough"
	qextra="$qextra -device usb-storage,bus=xhci2.0,drive=dd$k,id=stor$k,serial=UGD$k"
	exports="$exports --export serial=UGD$k@0.0.0.0:$((4000 + k))"
	fwds="$fwds --fwd $((4000 + k))"
	k=$((k + 1))
done
# stor0 (no serial set) goes to the first export that selects it and holds none.
exports="$exports --export 46f4:0001@0.0.0.0:4000 --export 0627:0001@0.0.0.0:4007"
fwds="$fwds --fwd 4007"
# build-guest.sh copies usbredirsrv with what ldd finds: libusbgate from the build tree.
LD_LIBRARY_PATH=$(cd "$TOOLS" && pwd)/lib/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
exporter="mkdir -p /run/udev && systemd-udevd --daemon && sleep 0.5; exec usbredirsrv -v $exports"
# shellcheck disable=SC2086
vm_device_start dev --disk "$W/disk0.img" --files "prog=$srv" --files "prog=$udevd" \
	--exporter "$exporter" --qemu "$qextra" $fwds || tap_bail "cannot start the device VM"
vm_consumer_start con --script "$UG_SRCDIR/tests/integration/load-devices.guest.sh" \
	--env UG_DISKS=$((N + 1)) --qemu "-device qemu-xhci,id=xhci2,p2=8,p3=8" ||
	tap_bail "cannot start the consumer VM"
vm_wait_for dev '^UG-EXPORTER-READY' 150 >/dev/null || tap_bail "usbredirsrv never listened in the device VM"
vm_wait_for con '^UG-RUN start' 150 >/dev/null || tap_bail "the consumer VM never reached its script"
dd=$(vm_dir dev)
# redir0 (stor0) is the rig's own port; the others through their forwards.
vm_redir_attach con "$(vm_port dev)" redir0
k=1
while [ $k -le $((N + 1)) ]; do
	hp=$(cat "$dd/hostport-$((4000 + k))")
	bus=xhci.0
	[ $k -ge 3 ] && bus=xhci2.0
	vm_qmp con \
		"{\"execute\": \"chardev-add\", \"arguments\": {\"id\": \"chr-r$k\", \"backend\": {\"type\": \"socket\", \"data\": {\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"$hp\"}}, \"server\": false}}}}" \
		"{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"usb-redir\", \"chardev\": \"chr-r$k\", \"id\": \"r$k\", \"bus\": \"$bus\"}}" >/dev/null
	k=$((k + 1))
done

i=0
while [ "$(vm_lines dev 'Message: .*export .*: session started' | wc -l)" -lt $((N + 2)) ] && [ $i -lt 600 ]; do
	sleep 0.2
	i=$((i + 1))
done
tap_is "usbredirsrv started $((N + 2)) sessions at once" \
	"$(vm_lines dev 'Message: .*export .*: session started' | wc -l)" $((N + 2))
if vm_wait_for con '^UG-LOAD-KBD ' 150 >/dev/null; then
	tap_ok "the consumer guest sees the keyboard"
else
	tap_fail "the consumer guest sees the keyboard" "$(vm_lines con '^UG-' | tail -n 5)"
fi
line=$(vm_wait_for con '^UG-LOAD-SEEN ' 150)
tap_is "the consumer guest sees $((N + 1)) disks" "$(vm_field "$line" disks)" $((N + 1))
vm_wait_count con '^UG-LOAD-DISK ' $((N + 1)) 150 >/dev/null
ok=0
bad=""
k=0
while [ $k -le $N ]; do
	want=$(sha256sum <"$W/disk$k.img" | cut -c1-64)
	if vm_lines con "^UG-LOAD-DISK .*sha256=$want" | grep -q .; then
		ok=$((ok + 1))
	else
		bad="$bad disk$k"
	fi
	k=$((k + 1))
done
tap_is "each of the $((N + 1)) disks reads whole with its image's sha256${bad:+ (wrong:$bad)}" "$ok" $((N + 1))
tap_diag "$(vm_lines con '^UG-LOAD-DISK ')"
vm_wait_exit con 60 || vm_stop con
i=0
while [ "$(vm_lines dev 'Message: .*export .*: session ended' | wc -l)" -lt $((N + 2)) ] && [ $i -lt 150 ]; do
	sleep 0.2
	i=$((i + 1))
done
tap_is "every session ended when the consumer VM went away" \
	"$(vm_lines dev 'Message: .*export .*: session ended' | wc -l)" $((N + 2))
if vm_lines dev 'ERROR|CRITICAL|AddressSanitizer|runtime error:' | grep -q .; then
	tap_fail "no errors in usbredirsrv's log" "$(vm_lines dev 'ERROR|CRITICAL|AddressSanitizer|runtime error:' | head -n 5)"
else
	tap_ok "no errors in usbredirsrv's log"
fi
vm_stop dev
tap_diag "whole test: $(ug_since "$t_start")s"
