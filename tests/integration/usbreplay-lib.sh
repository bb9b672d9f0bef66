# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-lib.sh: helpers the usbreplay integration tests share (sourced after tests/vm/lib.sh).

UR_BIN=$UG_BUILDDIR/usbreplay/usbreplay

# ur_build_proxy: compiles the recording proxy (tests/integration/ug-recproxy.c)
# against the build tree's libusbgate into $UG_VM_WORK/ug-recproxy.
ur_build_proxy() {
	# shellcheck disable=SC2046
	${CC:-cc} -O1 -o "$UG_VM_WORK/ug-recproxy" "$UG_SRCDIR/tests/integration/ug-recproxy.c" \
		-I"$UG_SRCDIR/lib" $(pkg-config --cflags glib-2.0 libusbredirparser-0.5) \
		-L"$UG_BUILDDIR/lib/.libs" -Wl,-rpath,"$UG_BUILDDIR/lib/.libs" -lusbgate \
		$(pkg-config --libs glib-2.0) >"$UG_VM_WORK/ug-recproxy.build.log" 2>&1
}

# ur_count NAME REGEX: how many console lines of VM NAME match.
ur_count() { vm_lines "$1" "$2" | wc -l; }
