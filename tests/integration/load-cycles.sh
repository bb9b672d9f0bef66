#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# load-cycles.sh: connect/disconnect cycles against usbredirsrv and usbdump --keep, a slow consumer, loopback-only defaults.
#
# All on 127.0.0.1, no VM. usbredirsrv runs an export whose device is absent
# (this machine has no USB hardware): each connection still gets a whole
# usbredir session (hellos exchanged, session started and ended, device
# released), which is the path that must not leak. usbdump --keep proxies
# each cycle to that usbredirsrv as a new session. File descriptors
# (/proc/PID/fd) and VmRSS are read after a warm-up and after the cycles: fds
# must be equal, RSS may grow by less than 2 MiB. UG_LOAD_CYCLES sets the
# count (default 200; bench/bench-load-cycles.sh runs 1000).
# The slow consumer: a host floods 256 MiB through usbdump's proxy to a guest
# that reads nothing for 5 s: usbdump's RSS must stay under 64 MiB (the
# proxy stops reading when its queue is full) and every byte must arrive.
# Leaks: every tool is stopped with SIGTERM and must exit 0 after its own
# teardown, so that a leak checker runs at exit; its log must then hold no
# sanitizer or valgrind report. In a build with --enable-sanitizers that is
# LeakSanitizer, ASan and UBSan (scripts/check runs this test there with
# UG_LOAD_CYCLES=1000); with UG_LOAD_VALGRIND=1 the tools run under valgrind
# --leak-check=full (default 100 cycles; VmRSS is then valgrind's, not
# asserted). A build without either still gets the fd and RSS checks.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

H=$UG_SRCDIR/tests/hostile
TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
SRV=$TOOLS/usbredirsrv/usbredirsrv
DUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
VG=${UG_LOAD_VALGRIND:-0}
N=${UG_LOAD_CYCLES:-200}
[ "$VG" = 1 ] && N=${UG_LOAD_CYCLES:-100}
[ -x "$SRV" ] || tap_bail "usbredirsrv is not built"
[ -x "$DUMP" ] || tap_bail "usbdump is not built"
tap_plan 16
# Reports go to stderr (the logs read below) whatever log_path says, and
# LeakSanitizer runs at exit even where it is not the default. ASan keeps
# freed memory in a quarantine (256 MiB by default) that VmRSS would show as
# growth; 1 MiB still catches a use of what was freed lately.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:log_path=stderr:quarantine_size_mb=1"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:log_path=stderr"
export ASAN_OPTIONS UBSAN_OPTIONS
RUN=""
if [ "$VG" = 1 ]; then
	command -v valgrind >/dev/null || tap_bail "UG_LOAD_VALGRIND=1 but valgrind is not installed"
	# libtool runs valgrind on the real program, not on its wrapper script.
	# Leaks of the tools' own heap count as errors; GLib's type system and
	# caches (possibly lost, still reachable) do not.
	RUN="$UG_BUILDDIR/libtool --mode=execute valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30"
fi

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
# child PID: the process timeout runs (the libtool wrapper execs the tool).
child() {
	_i=0
	until pgrep -P "$1" >/dev/null || [ $_i -ge 50 ]; do sleep 0.1; _i=$((_i + 1)); done
	pgrep -P "$1" | head -n 1
}
listening() {
	_i=0
	until ss -ltn "sport = :$1" | grep -q LISTEN || [ $_i -ge 100 ]; do sleep 0.1; _i=$((_i + 1)); done
	ss -ltnH "sport = :$1" | awk '{print $4}'
}
cycle() { python3 "$H/proxy-peer.py" cycles "$1" "$2" "$UG_SRCDIR"; }
# settled PID: until PID holds no TCP socket but its listeners (up to 10 s):
# the last cycle's sockets are closed when the tool reads the peer's close,
# which can come after the client has gone, so counting fds before that
# would count them.
settled() { ug_wait 10 only_listeners "$1"; }
only_listeners() { ! ss -Htanp | grep -v '^LISTEN' | grep -q "pid=$1,"; }
# flat NAME PID BEFORE-FDS BEFORE-RSS LOG: the two checks after the cycles.
flat() {
	settled "$2" || :
	_f=$(fds "$2")
	_r=$(rss "$2")
	tap_is "$1: open file descriptors after $N cycles equal those before ($3)" "$_f" "$3"
	if [ "$VG" = 1 ]; then
		tap_is "$1: valgrind reported nothing during the cycles (VmRSS, valgrind's: $4 -> $_r kB)" \
			"$(reports "$5")" ""
	elif [ -n "$_r" ] && [ $((_r - $4)) -lt 2048 ]; then
		tap_ok "$1: VmRSS $4 kB before, $_r kB after $N cycles (< 2 MiB growth)"
	else
		tap_fail "$1: VmRSS $4 kB before, ${_r:-?} kB after $N cycles (< 2 MiB growth)"
	fi
	echo "$1 cycles=$N fds=$3/$_f rss_kb=$4/$_r checker=$(checker "$2")" >>"$W/figures"
}
# checker PID: which leak checker watches the process (recorded in figures).
checker() {
	if [ "$VG" = 1 ]; then
		echo valgrind
	elif grep -q LeakSanitizer "/proc/$1/exe" 2>/dev/null; then
		echo LeakSanitizer+ASan+UBSan
	else
		echo "none (no sanitizer build; fds and RSS only)"
	fi
}
# reports LOG: the lines of LOG that come from a sanitizer, or from valgrind
# (which, with -q, prints nothing else).
reports() {
	grep -E -m 5 'ERROR: (LeakSanitizer|AddressSanitizer)|LeakSanitizer has encountered|SUMMARY: [A-Za-z]*Sanitizer|runtime error:|^==[0-9]+== ' "$1"
}
# clean NAME LOG CHECKER: after the tool exited, its log holds no report.
clean() {
	_m=$(reports "$2")
	if [ -z "$_m" ]; then
		tap_ok "$1: no leak or sanitizer report in its log at exit (checker: $3)"
	else
		tap_fail "$1: no leak or sanitizer report in its log at exit ($2)" "$_m"
	fi
}

# A bare port means 127.0.0.1 for both tools (usbredirsrv(8), usbdump(1)).
sport=$(ug_free_port)
timeout -k 5 600 $RUN "$SRV" --export "46f4:0001@$sport" </dev/null >"$W/srv.log" 2>&1 &
stpid=$!
ug_on_exit "kill $stpid 2>/dev/null"
tap_is "usbredirsrv --export DEV@PORT listens on 127.0.0.1 only" "$(listening "$sport")" "127.0.0.1:$sport"
spid=$(child "$stpid")
srv_checker=$(checker "$spid")

got=$(cycle "$sport" 20)
settled "$spid" || :
f0=$(fds "$spid")
r0=$(rss "$spid")
got=$(cycle "$sport" "$N")
tap_is "usbredirsrv: $N connect/disconnect cycles, each answered with its hello" "$got" "$N"
flat usbredirsrv "$spid" "$f0" "$r0" "$W/srv.log"

dport=$(ug_free_port)
timeout -k 5 600 $RUN "$DUMP" --keep --listen "$dport" --connect "127.0.0.1:$sport" -q -w "$W/keep.pcap" \
	</dev/null >"$W/dump.log" 2>&1 &
dtpid=$!
ug_on_exit "kill $dtpid 2>/dev/null"
tap_is "usbdump --listen PORT listens on 127.0.0.1 only" "$(listening "$dport")" "127.0.0.1:$dport"
dpid=$(child "$dtpid")
dump_checker=$(checker "$dpid")
got=$(cycle "$dport" 20)
settled "$dpid" || :
f0=$(fds "$dpid")
r0=$(rss "$dpid")
got=$(cycle "$dport" "$N")
tap_is "usbdump --keep: $N proxied sessions, each answered with usbredirsrv's hello" "$got" "$N"
flat "usbdump --keep" "$dpid" "$f0" "$r0" "$W/dump.log"
kill -TERM "$dpid" 2>/dev/null
wait "$dtpid"
tap_is "usbdump --keep exits 0 on SIGTERM after the cycles" "$?" 0
clean "usbdump --keep" "$W/dump.log" "$dump_checker"
if tshark -r "$W/keep.pcap" >/dev/null 2>"$W/keep.err"; then
	tap_ok "tshark reads the pcap of $((N + 20)) sessions"
else
	tap_fail "tshark reads the pcap of $((N + 20)) sessions" "$(head -n 3 "$W/keep.err")"
fi
kill -TERM "$spid" 2>/dev/null
wait "$stpid"
tap_is "usbredirsrv exits 0 on SIGTERM after the cycles" "$?" 0
clean usbredirsrv "$W/srv.log" "$srv_checker"

# The slow consumer.
MIB=256
d=$W/slow
mkdir -p "$d"
python3 "$H/proxy-peer.py" host-flood "$d/hport" $MIB "$UG_SRCDIR" </dev/null >"$d/host.log" 2>&1 &
hpid=$!
i=0
while [ ! -s "$d/hport" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
lport=$(ug_free_port)
# Not under valgrind: its own heap would make the peak meaningless.
timeout -k 2 180 "$DUMP" --listen "$lport" --connect "127.0.0.1:$(cat "$d/hport")" -q \
	</dev/null >"$d/usbdump.log" 2>&1 &
dtpid=$!
listening "$lport" >/dev/null
python3 "$H/proxy-peer.py" guest-slow "$lport" 5 "$UG_SRCDIR" "$d/got" $MIB </dev/null >"$d/guest.log" 2>&1 &
gpid=$!
dpid=$(child "$dtpid")
slow_checker=$(checker "$dpid")
[ "$VG" = 1 ] && slow_checker="none (not run under valgrind)"
peak=0
while kill -0 "$gpid" 2>/dev/null; do
	v=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$dpid/status" 2>/dev/null)
	[ -n "$v" ] && peak=$v
	sleep 0.2
done
wait "$dtpid"
wait "$hpid"
clean "usbdump (slow consumer)" "$d/usbdump.log" "$slow_checker"
echo "slow-consumer mib=$MIB usbdump_peak_rss_kb=$peak" >>"$W/figures"
if [ "$peak" -gt 0 ] && [ "$peak" -lt 65536 ]; then
	tap_ok "slow consumer: usbdump's peak RSS $peak kB while $MIB MiB waited (< 64 MiB)"
else
	tap_fail "slow consumer: usbdump's peak RSS $peak kB while $MIB MiB waited (< 64 MiB)"
fi
tap_is "slow consumer: every byte arrived unchanged" "$(cat "$d/got" 2>/dev/null)" \
	"$(python3 "$H/proxy-peer.py" flood-sha $MIB "$UG_SRCDIR")"
tap_diag "$(cat "$W/figures")"
