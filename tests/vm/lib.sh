# SPDX-License-Identifier: LGPL-2.1-or-later
# lib.sh: shell helpers for integration tests: TAP output, free ports, bounded QEMU VMs, console markers, QMP/HMP.
#
# Source it from a test (POSIX sh): . "$UG_SRCDIR/tests/vm/lib.sh"
# See tests/vm/README.md for the whole interface; in short:
#   tap_plan N / tap_ok DESC / tap_fail DESC [DIAG] / tap_is DESC GOT WANT /
#   tap_check DESC CMD... / tap_skip DESC REASON / tap_diag TEXT / tap_bail REASON
#   ug_free_port, ug_spawn NAME SECONDS CMD..., ug_on_exit CMD, ug_now, ug_since T0
#   vm_guest, vm_disk_image FILE MIB
#   vm_device_start NAME [--disk IMG] [--exporter CMD] [--guest-port N] [--host-port N] ...
#   vm_consumer_start NAME [--connect PORT | --listen PORT | --spice PORT] [--script S] ...
#   vm_wait_for NAME REGEX SECONDS, vm_field LINE KEY, vm_wait_exit NAME SECONDS, vm_stop NAME
#   vm_qmp NAME JSON|HMP..., vm_hmp NAME CMD, vm_sendkey NAME KEY, vm_input_key NAME DEV KEY
#   vm_redir_attach NAME PORT, vm_device_add NAME ARGS, vm_device_del NAME ID, vm_reset NAME
#
# Every process a helper starts runs under `timeout`, its PID is recorded, and
# the EXIT trap kills what is still running by PID. Files go to $UG_VM_WORK,
# kept when a test failed (or with UG_VM_KEEP=1) and removed otherwise.

UG_SRCDIR=${UG_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
UG_BUILDDIR=${UG_BUILDDIR:-$(pwd)}
# Absolute, so that overlay items (libusbgate.so for the guest) resolve from
# any directory: tests/vm/README.md runs tests with UG_BUILDDIR=. .
UG_BUILDDIR=$(cd "$UG_BUILDDIR" && pwd)
UG_SRCDIR=$(cd "$UG_SRCDIR" && pwd)
UG_VM_DIR=$UG_SRCDIR/tests/vm
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-300}
UG_VM_MEM=${UG_VM_MEM:-256M}
UG_QEMU=${UG_QEMU:-qemu-system-x86_64}
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-240}
export UG_SRCDIR UG_BUILDDIR

_ug_name=$(basename "$0" .sh)
mkdir -p "$UG_BUILDDIR/tests/vm/run"
UG_VM_WORK=$(mktemp -d "$UG_BUILDDIR/tests/vm/run/$_ug_name.XXXXXX")
# Unix socket paths must stay under 108 bytes, which a deep build tree (make
# distcheck) exceeds: the QMP sockets live in a short directory of their own.
_ug_sockdir=$(mktemp -d "${TMPDIR:-/tmp}/ugvm.XXXXXX")
_ug_tap_n=0
_ug_tap_failed=0
_ug_on_exit=""

# ---- TAP ---------------------------------------------------------------------

tap_plan() { echo "1..$1"; }
tap_diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
tap_ok() {
	_ug_tap_n=$((_ug_tap_n + 1))
	echo "ok $_ug_tap_n - $1"
}
tap_fail() {
	_ug_tap_n=$((_ug_tap_n + 1))
	_ug_tap_failed=$((_ug_tap_failed + 1))
	echo "not ok $_ug_tap_n - $1"
	shift
	[ $# -gt 0 ] && tap_diag "$@"
	return 0
}
# tap_is DESC GOT WANT: ok when the two strings are equal.
tap_is() {
	if [ "$2" = "$3" ]; then
		tap_ok "$1"
	else
		tap_fail "$1" "got:  '$2'" "want: '$3'"
	fi
}
# tap_check DESC CMD...: ok when CMD succeeds.
tap_check() {
	_d=$1
	shift
	if "$@"; then tap_ok "$_d"; else tap_fail "$_d" "failed: $*"; fi
}
# tap_skip DESC REASON: only for what the machine truly lacks; says so loudly.
tap_skip() {
	_ug_tap_n=$((_ug_tap_n + 1))
	echo "ok $_ug_tap_n - $1 # SKIP $2"
	echo "SKIP: $_ug_name: $1: $2" >&2
}
tap_bail() {
	echo "Bail out! $*"
	_ug_tap_failed=$((_ug_tap_failed + 1))
	exit 1
}

# ---- processes, ports, time ----------------------------------------------------

ug_now() { date +%s.%N; }
ug_since() { awk -v a="$1" -v b="$(ug_now)" 'BEGIN { printf "%.2f", b - a }'; }

# Prints a TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick).
ug_free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ug_wait, ug_wait_listen, ug_wait_match, ug_wait_count, ug_wait_gone.
. "$UG_SRCDIR/tests/vm/wait.sh"

# ug_on_exit CMD: run CMD (with eval) from the EXIT trap, before VMs are killed.
ug_on_exit() { _ug_on_exit="$_ug_on_exit
$1"; }

# ug_spawn NAME SECONDS CMD...: runs CMD in the background under timeout, output
# to $UG_VM_WORK/NAME.log, PID in $UG_VM_WORK/NAME.pid; killed at exit.
ug_spawn() {
	_n=$1
	_t=$2
	shift 2
	# The VM slot's descriptor (8) stays with the test and its VMs: a helper
	# process that outlived its test must not keep the slot taken.
	timeout -k 5 "$_t" "$@" >"$UG_VM_WORK/$_n.log" 2>&1 8>&- &
	echo $! >"$UG_VM_WORK/$_n.pid"
}

# ug_kill_pidfile FILE: TERM, then KILL after 3 s, the process in FILE.
ug_kill_pidfile() {
	[ -r "$1" ] || return 0
	_p=$(cat "$1")
	[ -n "$_p" ] || return 0
	kill -0 "$_p" 2>/dev/null || return 0
	kill -TERM "$_p" 2>/dev/null
	_i=0
	while kill -0 "$_p" 2>/dev/null && [ $_i -lt 30 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	kill -KILL "$_p" 2>/dev/null
	return 0
}

_ug_cleanup() {
	_rc=$?
	trap - EXIT
	[ -n "$_ug_on_exit" ] && eval "$_ug_on_exit"
	for _d in "$UG_VM_WORK"/vm-*; do
		[ -d "$_d" ] || continue
		# QEMU's own PID (from -pidfile) first: killing only the timeout
		# wrapper with KILL would leave QEMU running.
		_q=$(cat "$_d/qemu.pid" 2>/dev/null)
		if [ -n "$_q" ] && grep -q "$_d" "/proc/$_q/cmdline" 2>/dev/null; then
			ug_kill_pidfile "$_d/qemu.pid"
		fi
		ug_kill_pidfile "$_d/pid"
	done
	for _f in "$UG_VM_WORK"/*.pid; do
		[ -f "$_f" ] && ug_kill_pidfile "$_f"
	done
	if [ -f "$UG_VM_WORK/watchdog-fired" ]; then
		echo "Bail out! $_ug_name ran longer than UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT}s"
		_rc=1
	fi
	if [ $_ug_tap_failed -gt 0 ] || [ $_rc -ne 0 ] || [ "${UG_VM_KEEP:-0}" = 1 ]; then
		for _d in "$UG_VM_WORK"/vm-*; do
			[ -f "$_d/console.log" ] || continue
			tap_diag "---- last console lines of ${_d##*/vm-} ($_d/console.log):"
			tail -n 25 "$_d/console.log" | tap_diag "$(cat)"
			[ -s "$_d/qemu.err" ] && tap_diag "---- qemu stderr:" "$(tail -n 10 "$_d/qemu.err")"
		done
		tap_diag "host load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" \
			"work files kept in $UG_VM_WORK"
	else
		rm -rf "$UG_VM_WORK"
	fi
	rm -rf "$_ug_sockdir"
	exit $_rc
}
trap _ug_cleanup EXIT
trap 'exit 130' INT TERM HUP

# The whole test is bounded too: after UG_TEST_TIMEOUT seconds (0: never) a
# watchdog sends TERM to the test, whose EXIT trap then kills everything. It
# starts again once the test has its VM slot (see _ug_vm_slot), so waiting
# for one does not count.
_ug_watchdog() {
	ug_kill_pidfile "$UG_VM_WORK/watchdog.pid"
	[ "$UG_TEST_TIMEOUT" -gt 0 ] || return 0
	(
		trap 'kill $_s 2>/dev/null; exit 0' TERM
		sleep "$UG_TEST_TIMEOUT" &
		_s=$!
		wait $_s || exit 0
		: >"$UG_VM_WORK/watchdog-fired"
		kill -TERM $$
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$UG_VM_WORK/watchdog.pid"
}
_ug_watchdog

# Tests with VMs take one of UG_VM_SLOTS slots (default: the number of CPUs)
# for their whole run, machine-wide, so that VM tests started in parallel
# (make -j, several build trees) do not starve each other's TCG guests into
# their timeouts: each test boots two VMs, so with 2 CPUs two tests share them
# four VMs at most. A slot is a flock on a file in UG_VM_SLOTDIR, held by an
# inherited descriptor until the test and its VMs end. UG_VM_SLOTS=0: no limit.
_ug_slot=""
_ug_vm_slot() {
	[ -z "$_ug_slot" ] || return 0
	_ns=${UG_VM_SLOTS:-$(nproc 2>/dev/null || echo 2)}
	[ "$_ns" -gt 0 ] || { _ug_slot=none; return 0; }
	_sd=${UG_VM_SLOTDIR:-${TMPDIR:-/tmp}/usbgate-vm-slots-$(id -u)}
	mkdir -p "$_sd" || return 1
	_t0=$(date +%s)
	while :; do
		_i=1
		while [ $_i -le "$_ns" ]; do
			exec 8>>"$_sd/slot.$_i"
			if flock -n 8; then
				_ug_slot=$_i
				_w=$(($(date +%s) - _t0))
				[ $_w -gt 1 ] && tap_diag "waited ${_w}s for VM slot $_i of $_ns (other VM tests were running)"
				_ug_watchdog
				return 0
			fi
			exec 8>&-
			_i=$((_i + 1))
		done
		if [ $(($(date +%s) - _t0)) -ge "${UG_VM_SLOT_WAIT:-1800}" ]; then
			tap_bail "no free VM slot in $_sd after ${UG_VM_SLOT_WAIT:-1800}s"
		fi
		sleep 1
	done
}

# ug_require CMD PACKAGE...: fails the test (Bail out) when a peer is missing.
ug_require() {
	while [ $# -ge 2 ]; do
		command -v "$1" >/dev/null 2>&1 ||
			tap_bail "$1 not found: install the Debian package $2 (scripts/setup does)"
		shift 2
	done
}

# ---- guest -----------------------------------------------------------------------

# vm_guest: builds or finds the cached base guest; sets UG_VM_KERNEL, UG_VM_INITRD.
vm_guest() {
	_ug_vm_slot || return 1
	[ -n "${UG_VM_KERNEL:-}" ] && [ -n "${UG_VM_INITRD:-}" ] && return 0
	ug_require "$UG_QEMU" qemu-system-x86 python3 python3 busybox busybox-static \
		usbredirect usbredirect timeout coreutils flock util-linux ldd libc-bin
	_out=$(sh "$UG_VM_DIR/build-guest.sh" base) || return 1
	eval "$_out"
	export UG_VM_KERNEL UG_VM_INITRD
}

# vm_disk_image FILE MIB: a disk whose every 512-byte sector starts with
# "UGDISK sector=N of=M" followed by bytes derived from N.
vm_disk_image() { python3 "$UG_VM_DIR/ugvm.py" disk "$1" "$2"; }

# vm_dir NAME: the VM's directory (console.log, cmdline, pid, ...).
vm_dir() { echo "$UG_VM_WORK/vm-$1"; }
vm_log() { echo "$UG_VM_WORK/vm-$1/console.log"; }
# vm_port NAME [GUESTPORT]: the host port forwarded to a device VM's exporter
# (or to GUESTPORT, for ports added with --fwd).
vm_port() {
	if [ -n "${2:-}" ]; then
		cat "$UG_VM_WORK/vm-$1/hostport-$2"
	else
		cat "$UG_VM_WORK/vm-$1/hostport"
	fi
}

# _vm_overlay DIR ENVFILE ITEM...: builds DIR/overlay.cpio.gz with the guest
# scripts, /ug/env and the items (see build-guest.sh overlay).
_vm_overlay() {
	_dir=$1
	shift
	_ld=${LD_LIBRARY_PATH:-}
	[ -d "$UG_BUILDDIR/lib/.libs" ] && _ld="$UG_BUILDDIR/lib/.libs${_ld:+:$_ld}"
	LD_LIBRARY_PATH=$_ld sh "$UG_VM_DIR/build-guest.sh" overlay "$_dir/overlay.cpio.gz" \
		"dir=$UG_VM_DIR/guest:/ug/guest" "file=$_dir/env:/ug/env" "file=$_dir/run:/ug/run" "$@"
}

# _vm_launch NAME ROLE QEMU-ARGS...: boots the base guest plus the overlay
# already built in the VM's directory, in the background.
_vm_launch() {
	_ug_vm_slot || return 1
	_name=$1
	_role=$2
	shift 2
	_dir=$(vm_dir "$_name")
	_accel="-accel tcg"
	[ "${UG_VM_KVM:-0}" = 1 ] && _accel="-accel kvm -cpu host"
	# no_timer_check: on a loaded host a TCG guest can miss the IO-APIC
	# timer check and panic ("IO-APIC + timer doesn't work!").
	_klog="quiet loglevel=3"
	[ -n "${UG_VM_LOGLEVEL:-}" ] && _klog="loglevel=$UG_VM_LOGLEVEL"
	if [ "$_role" = bios ]; then
		# No guest OS: SeaBIOS's own log (it enumerates USB keyboards and
		# disks at start) goes to the console file through the debug port.
		# shellcheck disable=SC2086
		set -- $_accel -m "$UG_VM_MEM" -smp 1 -nodefaults -no-user-config \
			-display none -no-reboot -name "ug-$_name" \
			-debugcon "file:$_dir/console.log" -global isa-debugcon.iobase=0x402 \
			-qmp "unix:$_ug_sockdir/$_name.qmp,server=on,wait=off" \
			-pidfile "$_dir/qemu.pid" \
			-device qemu-xhci,id=xhci "$@"
	else
		cat "$UG_VM_INITRD" "$_dir/overlay.cpio.gz" >"$_dir/initrd.gz"
		# shellcheck disable=SC2086
		set -- $_accel -m "$UG_VM_MEM" -smp 1 -nodefaults -no-user-config \
			-display none -no-reboot -name "ug-$_name" \
			-kernel "$UG_VM_KERNEL" -initrd "$_dir/initrd.gz" \
			-append "console=ttyS0 $_klog panic=-1 no_timer_check ug.role=$_role ${UG_VM_APPEND:-}" \
			-serial "file:$_dir/console.log" -serial "file:$_dir/ttyS1.out" \
			-qmp "unix:$_ug_sockdir/$_name.qmp,server=on,wait=off" \
			-pidfile "$_dir/qemu.pid" \
			-device qemu-xhci,id=xhci "$@"
	fi
	echo "$UG_QEMU $*" >"$_dir/cmdline"
	ug_now >"$_dir/start"
	: >"$_dir/console.log"
	timeout -k 5 "$UG_VM_TIMEOUT" "$UG_QEMU" "$@" >"$_dir/qemu.out" 2>"$_dir/qemu.err" &
	echo $! >"$_dir/pid"
}

# _vm_env FILE KEY=VALUE...: writes shell assignments for /ug/env.
_vm_env() {
	_f=$1
	shift
	for _kv in "$@"; do
		_k=${_kv%%=*}
		_v=${_kv#*=}
		printf "%s='%s'\nexport %s\n" "$_k" "$(printf '%s' "$_v" | sed "s/'/'\\\\''/g")" "$_k" >>"$_f"
	done
}

# vm_device_start NAME [options]: the device VM, with usb-kbd (id kbd0),
# usb-serial (id ser0) and, with --disk, usb-storage (id stor0) on its xHCI,
# and an exporter reachable from the host only through a forwarded port.
#   --disk IMG          raw image for the usb-storage (written through)
#   --exporter CMD      command run in the guest (sh -c); default
#                       "usbredirect --device VID:PID --as 0.0.0.0:GUESTPORT"
#   --id VID:PID        the device the default exporter exports (46f4:0001)
#   --guest-port N      port the exporter listens on in the guest (4000)
#   --host-port N       127.0.0.1 port forwarded to it (default: a free one;
#                       read it back with vm_port NAME)
#   --no-listen         the exporter does not listen (it connects out):
#                       READY is printed at once
#   --fwd GUESTPORT     forward one more guest port (host port from a free
#                       one: vm_port NAME GUESTPORT); repeatable
#   --guestfwd PORT     lets the guest connect out to 10.0.2.100:4000, which
#                       QEMU forwards to 127.0.0.1:PORT on the host (for an
#                       exporter in client mode, e.g. usbredirect --to
#                       10.0.2.100:4000, against vm_consumer_start --listen PORT)
#   --guestfwd-cmd PORT lets the guest open any number of connections, at
#                       once or one after another, to 10.0.2.100:PORT (the
#                       same number): QEMU runs socat for each, connected to
#                       127.0.0.1:PORT on the host. For a SPICE client in the
#                       guest (one connection per channel), which --guestfwd's
#                       single chardev cannot carry. A connection nothing
#                       listens for on the host is accepted and closed at
#                       once; socat's messages go to
#                       $(vm_dir NAME)/guestfwd-PORT.log. Repeatable.
#   --respawn           restart the exporter whenever it exits
#   --after CMD         guest shell code run after the exporter ended, before
#                       power-off (e.g. "ug_export tmp/x.pcap")
#   --files ITEM        overlay item (prog=, file=, dir=; see build-guest.sh)
#   --env KEY=VALUE     variable for the guest scripts
#   --qemu "ARGS"       more QEMU arguments (split on blanks)
# The guest prints UG-EXPORTER-READY once the exporter listens, and powers
# off when the exporter exits (unless --respawn).
vm_device_start() {
	_name=$1
	shift
	_disk="" _exp="" _id=46f4:0001 _gport=4000 _hport="" _listen=1 _respawn=0
	_items="" _envs="" _qextra="" _gfwd="" _fwds="" _after=""
	while [ $# -gt 0 ]; do
		case $1 in
		--guestfwd) _gfwd="$_gfwd,guestfwd=tcp:10.0.2.100:4000-tcp:127.0.0.1:$2"; shift ;;
		--guestfwd-cmd)
			# slirp runs the command (split like a shell would) with the
			# guest connection as its stdin, stdout and stderr.
			ug_require socat socat
			_gfwd="$_gfwd,guestfwd=tcp:10.0.2.100:$2-cmd:socat -d -d -lf '$(vm_dir "$_name")/guestfwd-$2.log' - TCP:127.0.0.1:$2"
			shift
			;;
		--fwd) _fwds="$_fwds $2"; shift ;;
		--disk) _disk=$2; shift ;;
		--exporter) _exp=$2; shift ;;
		--id) _id=$2; shift ;;
		--guest-port) _gport=$2; shift ;;
		--host-port) _hport=$2; shift ;;
		--no-listen) _listen=0 ;;
		--respawn) _respawn=1 ;;
		--after) _after=$2; shift ;;
		--files) _items="$_items $2"; shift ;;
		--env) _envs="$_envs
$2"; shift ;;
		--qemu) _qextra="$_qextra $2"; shift ;;
		*) echo "vm_device_start: unknown option $1" >&2; return 2 ;;
		esac
		shift
	done
	vm_guest || return 1
	[ -n "$_hport" ] || _hport=$(ug_free_port)
	[ -n "$_exp" ] || _exp="usbredirect --device $_id --as 0.0.0.0:$_gport"
	_dir=$(vm_dir "$_name")
	mkdir -p "$_dir"
	echo "$_hport" >"$_dir/hostport"
	echo "$_hport" >"$_dir/hostport-$_gport"
	for _gp in $_fwds; do
		_hp=$(ug_free_port)
		echo "$_hp" >"$_dir/hostport-$_gp"
		_gfwd="$_gfwd,hostfwd=tcp:127.0.0.1:$_hp-:$_gp"
	done
	: >"$_dir/env"
	_lp=$_gport
	[ $_listen = 1 ] || _lp=""
	_vm_env "$_dir/env" "UG_EXPORTER=$_exp" "UG_EXPORTER_PORT=$_lp" "UG_RESPAWN=$_respawn" \
		"UG_AFTER=$_after"
	(
		IFS='
'
		for _kv in $_envs; do _vm_env "$_dir/env" "$_kv"; done
	)
	echo '. /ug/guest/exporter.sh' >"$_dir/run"
	# shellcheck disable=SC2086
	_vm_overlay "$_dir" $_items || return 1
	set -- \
		-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$_hport-:$_gport$_gfwd" \
		-device virtio-net-pci,netdev=n0,romfile= \
		-device usb-kbd,bus=xhci.0,id=kbd0 \
		-chardev null,id=sernull -device usb-serial,bus=xhci.0,chardev=sernull,id=ser0,always-plugged=on
	if [ -n "$_disk" ]; then
		set -- "$@" -drive "if=none,id=d0,file=$_disk,format=raw,cache=writethrough" \
			-device usb-storage,bus=xhci.0,drive=d0,id=stor0
	fi
	# shellcheck disable=SC2086
	_vm_launch "$_name" device "$@" $_qextra
}

# vm_consumer_start NAME [options]: the consumer VM: a usb-redir device (id
# redir0) on its xHCI, fed by one of
#   --connect PORT      chardev socket, client of 127.0.0.1:PORT; QEMU exits
#                       at start if nothing listens there, unless followed by
#   --reconnect S       retry every S seconds (also after the peer left)
#   --listen PORT       chardev socket, server on 127.0.0.1:PORT
#   --spice PORT        SPICE server on 127.0.0.1:PORT, spicevmc channel
#                       "usbredir" (--spice-opts ",..." adds -spice options)
#   (none)              no usb-redir at boot; add one with vm_redir_attach
#   --pcap FILE         usb-redir's own pcap log
#   --script NAME|PATH  guest script: storage, kbd (tests/vm/guest/NAME.sh),
#                       a path, or none (default storage)
#   --files ITEM, --env KEY=VALUE, --qemu "ARGS"  as for vm_device_start
#   --bios-only         no Linux guest: SeaBIOS alone enumerates a keyboard
#                       or disk (seconds, real control and bulk traffic); its
#                       log is the console ("USB keyboard initialized",
#                       "USB MSC vendor=..."); the redirection must be there
#                       at start (--connect/--listen/--spice), and the VM
#                       runs until vm_stop
# The guest powers off when the script ends (UG-DONE rc=N).
vm_consumer_start() {
	_name=$1
	shift
	_chr="" _spice="" _sopts="" _pcap="" _script=storage _items="" _envs="" _qextra=""
	_bios=0
	while [ $# -gt 0 ]; do
		case $1 in
		--bios-only) _bios=1 ;;
		--connect) _chr="socket,id=ur,host=127.0.0.1,port=$2"; shift ;;
		--reconnect) _chr="$_chr,reconnect=$2"; shift ;;
		--listen) _chr="socket,id=ur,host=127.0.0.1,port=$2,server=on,wait=off"; shift ;;
		--spice) _spice=$2; _chr="spicevmc,id=ur,name=usbredir"; shift ;;
		--spice-opts) _sopts=$2; shift ;;
		--pcap) _pcap=",pcap=$2"; shift ;;
		--script) _script=$2; shift ;;
		--files) _items="$_items $2"; shift ;;
		--env) _envs="$_envs
$2"; shift ;;
		--qemu) _qextra="$_qextra $2"; shift ;;
		*) echo "vm_consumer_start: unknown option $1" >&2; return 2 ;;
		esac
		shift
	done
	_dir=$(vm_dir "$_name")
	mkdir -p "$_dir"
	if [ $_bios = 0 ]; then
		vm_guest || return 1
		: >"$_dir/env"
		(
			IFS='
'
			for _kv in $_envs; do _vm_env "$_dir/env" "$_kv"; done
		)
		case $_script in
		none) : >"$_dir/run" ;;
		*/*) cp "$_script" "$_dir/run" ;;
		*) echo ". /ug/guest/$_script.sh" >"$_dir/run" ;;
		esac
		# shellcheck disable=SC2086
		_vm_overlay "$_dir" $_items || return 1
	fi
	set --
	if [ -n "$_spice" ]; then
		set -- -spice "port=$_spice,addr=127.0.0.1,disable-ticketing=on$_sopts"
	fi
	if [ -n "$_chr" ]; then
		set -- "$@" -chardev "$_chr" -device "usb-redir,chardev=ur,id=redir0,bus=xhci.0$_pcap"
	fi
	_role=consumer
	[ $_bios = 1 ] && _role=bios
	# shellcheck disable=SC2086
	_vm_launch "$_name" $_role "$@" $_qextra
}

# ---- watching and driving a VM -------------------------------------------------

# vm_running NAME: true while the VM's QEMU runs.
vm_running() { kill -0 "$(cat "$(vm_dir "$1")/pid")" 2>/dev/null; }

# vm_wait_for NAME REGEX SECONDS: waits for a console line matching the
# extended REGEX and prints it (the first one). Returns 1 on timeout, 2 when
# the VM ended without printing it. The host seconds from the VM's start to
# the match are then in "$(vm_dir NAME)/matched-at".
# _vm_complete FILE: the complete (newline-terminated) lines of FILE, so that
# a line the guest is still writing is never taken for a result (nor
# counted); _vm_grep_complete FILE ERE: the first of them that matches.
_vm_complete() { head -n "$(wc -l <"$1" 2>/dev/null || echo 0)" "$1" 2>/dev/null; }
_vm_grep_complete() { _vm_complete "$1" | grep -a -E -m 1 -- "$2" | tr -d '\r'; }

vm_wait_for() {
	_dir=$(vm_dir "$1")
	_end=$(awk -v n="$(date +%s)" -v t="$3" 'BEGIN { print n + t }')
	while :; do
		_line=$(_vm_grep_complete "$_dir/console.log" "$2")
		if [ -n "$_line" ]; then
			ug_since "$(cat "$_dir/start")" >"$_dir/matched-at"
			echo "$_line"
			return 0
		fi
		if ! vm_running "$1"; then
			# One last look: the line may have come with the exit.
			_line=$(_vm_grep_complete "$_dir/console.log" "$2")
			if [ -n "$_line" ]; then
				ug_since "$(cat "$_dir/start")" >"$_dir/matched-at"
				echo "$_line"
				return 0
			fi
			echo "vm_wait_for $1: VM ended without /$2/" >&2
			return 2
		fi
		if [ "$(date +%s)" -ge "$_end" ]; then
			echo "vm_wait_for $1: no /$2/ after $3 s" >&2
			return 1
		fi
		sleep 0.1
	done
}

# vm_wait_count NAME REGEX N SECONDS: waits until N console lines match and
# prints the Nth (for markers that repeat: a reboot, a respawned exporter).
vm_wait_count() {
	_dir=$(vm_dir "$1")
	_end=$(($(date +%s) + $4))
	while :; do
		_c=$(_vm_complete "$_dir/console.log" | grep -a -c -E -- "$2")
		if [ "${_c:-0}" -ge "$3" ]; then
			ug_since "$(cat "$_dir/start")" >"$_dir/matched-at"
			_vm_complete "$_dir/console.log" | grep -a -E -- "$2" | sed -n "$3p" | tr -d '\r'
			return 0
		fi
		vm_running "$1" || { echo "vm_wait_count $1: VM ended with $_c of $3 /$2/" >&2; return 2; }
		[ "$(date +%s)" -ge "$_end" ] && { echo "vm_wait_count $1: $_c of $3 /$2/ after $4 s" >&2; return 1; }
		sleep 0.1
	done
}

# vm_exported NAME DIR: unpacks into DIR what the guest sent with ug_export
# (a tar stream on its second serial port, $(vm_dir NAME)/ttyS1.out). Call it
# after the guest printed UG-EXPORTED (or powered off).
vm_exported() {
	mkdir -p "$2"
	tar -xf "$(vm_dir "$1")/ttyS1.out" -C "$2"
}

# vm_lines NAME REGEX: every console line matching REGEX (so far).
vm_lines() { _vm_complete "$(vm_log "$1")" | grep -a -E -- "$2" | tr -d '\r'; }

# vm_field LINE KEY: the value of KEY=VALUE in a marker line.
vm_field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# vm_boot_seconds NAME: guest uptime when /init started (from UG-BOOT).
vm_boot_seconds() { vm_field "$(vm_lines "$1" '^UG-BOOT init ' | head -n 1)" uptime; }

# vm_wait_exit NAME SECONDS: waits for QEMU to exit; 1 if it still runs.
vm_wait_exit() {
	_p=$(cat "$(vm_dir "$1")/pid")
	_i=0
	while kill -0 "$_p" 2>/dev/null; do
		[ $_i -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		_i=$((_i + 1))
	done
	wait "$_p" 2>/dev/null
	return 0
}

# vm_stop NAME: asks QEMU to quit (which flushes its disks), kills it by PID
# if it does not exit within 10 s.
vm_stop() {
	vm_running "$1" || return 0
	vm_qmp "$1" '{"execute": "quit"}' >/dev/null 2>&1
	vm_wait_exit "$1" 10 && return 0
	ug_kill_pidfile "$(vm_dir "$1")/qemu.pid"
	ug_kill_pidfile "$(vm_dir "$1")/pid"
}

# vm_qmp NAME CMD...: each CMD is a QMP command in JSON ({"execute": ...}),
# whose return value is printed as JSON, or an HMP command line, whose text
# output is printed.
vm_qmp() {
	_s="$_ug_sockdir/$1.qmp"
	shift
	timeout 30 python3 "$UG_VM_DIR/ugvm.py" qmp "$_s" "$@"
}
vm_hmp() { vm_qmp "$1" "$2"; }
vm_info_usb() { vm_hmp "$1" "info usb"; }
# vm_wait_usb NAME ERE SECONDS: until HMP info usb matches ERE; prints what
# it said last either way (1 when it never matched).
vm_wait_usb() {
	_wu_i=0
	while :; do
		_wu_info=$(vm_info_usb "$1")
		printf '%s' "$_wu_info" | grep -Eq -- "$2" && { echo "$_wu_info"; return 0; }
		[ $_wu_i -ge $(($3 * 2)) ] && { echo "$_wu_info"; return 1; }
		sleep 0.5
		_wu_i=$((_wu_i + 1))
	done
}
vm_sendkey() { vm_hmp "$1" "sendkey $2"; }
# vm_type DEV CON KEY...: HMP sendkey of each KEY into DEV's usb-kbd, whose
# events CON's kbd script prints as UG-KEY lines. QEMU's usb-kbd queues only
# 16 events until its interrupt endpoint is polled through the whole chain,
# so the first key goes alone and the rest once CON has printed it. Prints
# how many keys HMP accepted.
vm_type() {
	_vt_dev=$1 _vt_con=$2
	shift 2
	_vt_n=0
	vm_sendkey "$_vt_dev" "$1" >/dev/null && _vt_n=$((_vt_n + 1))
	shift
	vm_wait_for "$_vt_con" '^UG-KEY ' 60 >/dev/null
	for _vt_k in "$@"; do
		vm_sendkey "$_vt_dev" "$_vt_k" >/dev/null && _vt_n=$((_vt_n + 1))
	done
	echo "$_vt_n"
}
# vm_reset NAME [SECONDS]: a real reset, back to the guest's /init (waits
# for its next UG-BOOT init line, default 120 s). -no-reboot turns resets
# into exits, and after a reset SeaBIOS resets the machine twice more itself,
# so the reboot action stays "reset" until /init runs again, then goes back
# to "shutdown" so that guest reboots and panics still end QEMU.
vm_reset() {
	_n=$(vm_lines "$1" '^UG-BOOT init ' | wc -l)
	vm_qmp "$1" '{"execute": "set-action", "arguments": {"reboot": "reset"}}' \
		'{"execute": "system_reset"}' >/dev/null || return 1
	vm_wait_count "$1" '^UG-BOOT init ' $((_n + 1)) "${2:-120}" >/dev/null
	_rc=$?
	vm_qmp "$1" '{"execute": "set-action", "arguments": {"reboot": "shutdown"}}' >/dev/null
	return $_rc
}
vm_device_add() { vm_hmp "$1" "device_add $2"; }
vm_device_del() { vm_hmp "$1" "device_del $2"; }

# vm_input_key NAME DEVICE-ID QCODE: presses and releases one key on one
# keyboard (HMP sendkey goes to whichever keyboard QEMU routes input to;
# this names the device, e.g. kbd0).
vm_input_key() {
	_ev='{"type": "key", "data": {"down": %s, "key": {"type": "qcode", "data": "%s"}}}'
	# shellcheck disable=SC2059
	_dn=$(printf "$_ev" true "$3")
	# shellcheck disable=SC2059
	_up=$(printf "$_ev" false "$3")
	vm_qmp "$1" \
		"{\"execute\": \"input-send-event\", \"arguments\": {\"device\": \"$2\", \"events\": [$_dn]}}" \
		"{\"execute\": \"input-send-event\", \"arguments\": {\"device\": \"$2\", \"events\": [$_up]}}" >/dev/null
}

# vm_redir_attach NAME PORT [ID]: hot-plugs a usb-redir (id ID, default
# redir0) connected to 127.0.0.1:PORT into a running consumer VM.
vm_redir_attach() {
	_id=${3:-redir0}
	vm_qmp "$1" \
		"{\"execute\": \"chardev-add\", \"arguments\": {\"id\": \"chr-$_id\", \"backend\": {\"type\": \"socket\", \"data\": {\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"$2\"}}, \"server\": false}}}}" \
		"{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"usb-redir\", \"chardev\": \"chr-$_id\", \"id\": \"$_id\", \"bus\": \"xhci.0\"}}" >/dev/null
}
