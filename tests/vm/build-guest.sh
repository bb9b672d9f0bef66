#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# build-guest.sh: builds the test guest (uncompressed Debian kernel + busybox initramfs), cached, and test overlays.
#
# Usage:
#   build-guest.sh base
#       Builds (or finds in the cache) the base guest and prints two lines,
#       "UG_VM_KERNEL=PATH" and "UG_VM_INITRD=PATH". The base holds busybox,
#       the kernel modules listed below (dependencies from modules.dep), the
#       init script tests/vm/init.sh and the programs in UG_VM_PROGS (default:
#       Debian's usbredirect) with every shared library they load.
#   build-guest.sh overlay OUT ITEM...
#       Writes OUT, a small gzip'ed cpio to append to the base initramfs (Linux
#       unpacks concatenated archives in order, later files win). ITEM is
#         prog=SRC[:DEST]  an ELF program (or a libtool wrapper, whose real
#                          binary in .libs/ is taken) with its libraries;
#                          DEST defaults to /usr/local/bin/NAME. Libraries
#                          outside /lib, /usr/lib go to /usr/local/lib, which
#                          the guest's init puts in LD_LIBRARY_PATH. ldd runs
#                          with the caller's LD_LIBRARY_PATH.
#         file=SRC:DEST    one file (mode kept)
#         dir=SRC[:DEST]   a directory tree, copied into DEST (default /)
# Environment:
#   UG_VM_CACHE  cache directory (default $UG_BUILDDIR/tests/vm/cache, or
#                ./tests/vm/cache without UG_BUILDDIR)
#   UG_VM_KVER   kernel version (default: the newest with both /boot/vmlinuz-V
#                and /lib/modules/V)
#   UG_VM_PROGS  programs for the base (default /usr/bin/usbredirect)
# The cache key hashes every input (scripts, kernel, modules, busybox, the
# programs and their libraries), so a changed input gives a new entry and an
# unchanged one is never rebuilt. Builds are serialised with flock, so tests
# running in parallel share one build.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ugvm="python3 $here/ugvm.py"
cache=${UG_VM_CACHE:-${UG_BUILDDIR:-.}/tests/vm/cache}

# Modules for both VMs; init.sh loads a role's subset (see mods_* below).
mods_device="xhci-pci usbmon virtio_net virtio_pci"
mods_consumer="xhci-pci usbmon usb-storage uas sd_mod hid usbhid hid-generic evdev usbserial ftdi_sio crct10dif_generic crc64_rocksoft_generic"
mods_all="$mods_device $mods_consumer"

die() {
	echo "build-guest: $*" >&2
	exit 1
}

pick_kver() {
	if [ -n "${UG_VM_KVER:-}" ]; then
		echo "$UG_VM_KVER"
		return
	fi
	for v in $(ls /lib/modules | sort -rV); do
		if [ -r "/boot/vmlinuz-$v" ] && [ -r "/lib/modules/$v/modules.dep" ]; then
			echo "$v"
			return
		fi
	done
	die "no readable /boot/vmlinuz-V with /lib/modules/V: install linux-image-amd64 (and make /boot/vmlinuz-* readable)"
}

# Prints the absolute paths of the shared libraries and the loader of an ELF file.
elf_libs() {
	out=$(ldd "$1" 2>&1) || {
		case $out in
		*"not a dynamic executable"*) return 0 ;;
		esac
		die "ldd $1: $out"
	}
	if echo "$out" | grep -q 'not found'; then
		die "ldd $1: missing libraries (set LD_LIBRARY_PATH?): $(echo "$out" | grep 'not found' | tr '\n' ' ')"
	fi
	echo "$out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

# A libtool wrapper script stands for the binary in .libs/ next to it.
real_prog() {
	if head -c 4 "$1" | grep -q 'ELF'; then
		echo "$1"
	elif [ -x "$(dirname "$1")/.libs/$(basename "$1")" ]; then
		echo "$(dirname "$1")/.libs/$(basename "$1")"
	elif [ -x "$(dirname "$1")/.libs/lt-$(basename "$1")" ]; then
		echo "$(dirname "$1")/.libs/lt-$(basename "$1")"
	else
		echo "$1"
	fi
}

# Copies an ELF program and its libraries into a staging directory.
stage_prog() { # STAGE SRC DEST
	src=$(real_prog "$2")
	[ -r "$src" ] || die "$2: no such program"
	mkdir -p "$1$(dirname "$3")"
	cp -L "$src" "$1$3"
	chmod 755 "$1$3"
	for lib in $(elf_libs "$src"); do
		case $lib in
		/lib/* | /lib64/* | /usr/lib/* | /usr/lib64/*) dst=$lib ;;
		*) dst=/usr/local/lib/$(basename "$lib") ;;
		esac
		mkdir -p "$1$(dirname "$dst")"
		cp -L "$lib" "$1$dst"
	done
}

build_base() {
	kver=$(pick_kver)
	vmlinuz=/boot/vmlinuz-$kver
	mdir=/lib/modules/$kver
	progs=${UG_VM_PROGS:-/usr/bin/usbredirect}
	bb=$(command -v busybox) || die "busybox not found: install busybox-static"
	mkdir -p "$cache"

	# The kernel has its own key: it is big and changes rarely. Bump the
	# "extract" tag when ugvm.py's extraction changes what it writes.
	kkey=$( (echo extract-1; cat "$vmlinuz") | sha256sum | cut -c1-16)
	vmlinux=$cache/vmlinux-$kver-$kkey
	mlist=$( (for m in $mods_all; do echo "$m"; done) | sort -u)
	modpaths=$($ugvm moddeps "$mdir" $mlist)

	key=$( {
		echo "kver=$kver progs=$progs"
		echo "device: $mods_device"
		echo "consumer: $mods_consumer"
		cat "$here/build-guest.sh" "$here/init.sh" "$here/ugvm.py"
		(cd "$mdir" && sha256sum $modpaths)
		sha256sum "$bb"
		for p in $progs; do
			sha256sum "$p"
			for l in $(elf_libs "$p"); do sha256sum "$l"; done
		done
	} | sha256sum | cut -c1-16)
	initrd=$cache/initrd-base-$key.cpio.gz

	exec 9>"$cache/.lock"
	flock 9
	if [ ! -s "$vmlinux" ]; then
		$ugvm vmlinux "$vmlinuz" "$vmlinux"
	fi
	if [ ! -s "$initrd" ]; then
		stage=$(mktemp -d "$cache/stage.XXXXXX")
		trap 'rm -rf "$stage"' EXIT
		mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" \
			"$stage/dev" "$stage/proc" "$stage/sys" "$stage/tmp" "$stage/run" \
			"$stage/etc/ug" "$stage/usr/local/bin" "$stage/usr/local/lib" "$stage/ug"
		cp "$bb" "$stage/bin/busybox"
		for a in $("$bb" --list); do
			[ "$a" = busybox ] || ln -s busybox "$stage/bin/$a"
		done
		for m in $modpaths; do
			mkdir -p "$stage$mdir/$(dirname "$m")"
			cp "$mdir/$m" "$stage$mdir/$m"
		done
		# shellcheck disable=SC2086
		$ugvm moddeps "$mdir" $mods_device | sed "s|^|$mdir/|" >"$stage/etc/ug/modules.device"
		# shellcheck disable=SC2086
		$ugvm moddeps "$mdir" $mods_consumer | sed "s|^|$mdir/|" >"$stage/etc/ug/modules.consumer"
		for p in $progs; do
			stage_prog "$stage" "$p" "$p"
		done
		cp "$here/init.sh" "$stage/init"
		chmod 755 "$stage/init"
		echo "$kver" >"$stage/etc/ug/kver"
		$ugvm cpio "$stage" "$initrd"
		rm -rf "$stage"
		trap - EXIT
	fi
	# Old entries (from older sources) are pruned: the newest two of each
	# kind stay, so two configurations in turn do not rebuild each other.
	for kind in vmlinux- initrd-base-; do
		# shellcheck disable=SC2012
		ls -t "$cache" | grep "^$kind" | tail -n +3 | while read -r old; do
			rm -f "$cache/$old"
		done
	done
	touch "$vmlinux" "$initrd"
	exec 9>&-
	echo "UG_VM_KERNEL=$vmlinux"
	echo "UG_VM_INITRD=$initrd"
}

build_overlay() {
	[ $# -ge 1 ] || die "usage: build-guest.sh overlay OUT ITEM..."
	out=$1
	shift
	stage=$(mktemp -d "${out}.stage.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	for item in "$@"; do
		kind=${item%%=*}
		spec=${item#*=}
		src=${spec%%:*}
		dst=""
		case $spec in *:*) dst=${spec#*:} ;; esac
		case $kind in
		prog)
			[ -n "$dst" ] || dst=/usr/local/bin/$(basename "$src")
			stage_prog "$stage" "$src" "$dst"
			;;
		file)
			[ -n "$dst" ] || die "file=$src needs :DEST"
			mkdir -p "$stage$(dirname "$dst")"
			cp -L "$src" "$stage$dst"
			[ -x "$src" ] && chmod 755 "$stage$dst"
			;;
		dir)
			[ -n "$dst" ] || dst=/
			mkdir -p "$stage$dst"
			cp -RL "$src/." "$stage$dst"
			;;
		*) die "unknown overlay item $item (prog=, file=, dir=)" ;;
		esac
	done
	$ugvm cpio "$stage" "$out"
	rm -rf "$stage"
	trap - EXIT
}

cmd=${1:-base}
[ $# -gt 0 ] && shift
case $cmd in
base) build_base ;;
overlay) build_overlay "$@" ;;
*) die "usage: build-guest.sh base | overlay OUT ITEM..." ;;
esac
