#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbredirsrv-cli.sh: usbredirsrv on this host (no USB needed): exit codes, sessions, SIGHUP reload, --connect backoff, SIGTERM.
#
# Peers are small python3 clients and servers on 127.0.0.1 that speak just
# enough usbredir: read the usb-host's hello (type 0, version "usbgate ...").
# Without USB devices every export runs sessions with no device, which is
# enough to prove the daemon's plumbing; the device side is proven on the VM
# rig (vm-usbredirsrv.sh).
set -u
UG_BUILDDIR=${UG_BUILDDIR:-$(pwd)}
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/wait.sh"
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
work=$(mktemp -d "${TMPDIR:-/tmp}/ug-srv-cli.XXXXXX")
pids=""
n=0
failed=0
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	if [ $failed -gt 0 ]; then
		for f in "$work"/*.log; do
			[ -f "$f" ] && sed "s|^|# $(basename "$f"): |" "$f" | tail -n 20
		done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for d in "$@"; do echo "# $d"; done; }
is() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "got:  '$2'" "want: '$3'"; fi; }

command -v python3 >/dev/null || { echo "Bail out! python3 not found: install the Debian package python3"; exit 1; }
[ -x "$srv" ] || { echo "Bail out! $srv is not built"; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# hello ADDRESS: prints the version string of the usbredir hello read there
# (TCP port or unix path), or "none".
hello() {
	python3 - "$1" <<'PY'
import socket, struct, sys
a = sys.argv[1]
try:
    if a.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(a)
    else:
        s = socket.create_connection(("127.0.0.1", int(a)), timeout=5)
    buf = b""
    while len(buf) < 12 + 64:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    t, l, _ = struct.unpack("<III", buf[:12])
    print(buf[12:76].split(b"\0")[0].decode() if t == 0 and l >= 68 else "bad type %d" % t)
except Exception as e:
    print("none")
PY
}

# start NAME ARGS...: runs usbredirsrv in the background under timeout.
start() {
	_name=$1
	shift
	timeout -k 10 120 "$srv" "$@" >"$work/$_name.log" 2>&1 &
	eval "pid_$_name=$!"
	pids="$pids $!"
}
# daemon_pid PID: the usbredirsrv that timeout PID runs (the libtool wrapper
# execs it in place), or nothing when it is gone.
daemon_pid() { pgrep -P "$1" usbredirsrv | head -n 1; }

echo "1..22"

"$srv" --version >"$work/v.log" 2>&1
is "--version exits 0" "$?:$(head -c 11 "$work/v.log")" "0:usbredirsrv"
"$srv" >/dev/null 2>&1
is "no exports and no --list is a usage error (2)" "$?" 2
"$srv" --export 46f4:zz@127.0.0.1:1 >"$work/e.log" 2>&1
rc=$?
is "a bad device selector is a usage error (2) naming it" "$rc:$(grep -c 'is not VID:PID' "$work/e.log")" "2:1"
"$srv" --export 46f4:0001@127.0.0.1:99999 >/dev/null 2>&1
is "a bad port is a usage error (2)" "$?" 2
"$srv" --filter '0x03,-1' --list >/dev/null 2>&1
is "bad filter rules are a usage error (2)" "$?" 2
printf '[export a]\ndevice=46f4:0001\n' >"$work/bad.conf"
"$srv" --config "$work/bad.conf" >"$work/c.log" 2>&1
is "a config group without listen/connect is a usage error (2)" "$?:$(grep -c 'exactly one of listen= and connect=' "$work/c.log")" "2:1"
"$srv" --list --export '*@127.0.0.1:4000' >"$work/l.log" 2>&1
is "--list exits 0" "$?" 0

# Port in use: exit 1.
python3 -c "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1]); sys.stdout.flush(); time.sleep(10)" >"$work/holder.port" &
pids="$pids $!"
i=0
while [ ! -s "$work/holder.port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
p1=$(cat "$work/holder.port")
timeout 10 "$srv" --export "46f4:0001@127.0.0.1:$p1" >"$work/inuse.log" 2>&1
is "an address in use is a failure (1) naming the address" "$?:$(grep -c "127.0.0.1:$p1" "$work/inuse.log")" "1:1"

# Two exports, a TCP and a unix one; sessions one after another.
p2=$(free_port)
sock=$work/x.sock
cat >"$work/srv.conf" <<CONF
[usbredirsrv]
verbose=1

[export stick]
device=46f4:0001
listen=127.0.0.1:$p2
CONF
start main --config "$work/srv.conf" --export "port=1-3@unix:$sock" --pcap "$work/main.pcap"
ug_wait_match "$work/main.log" 'ready: 2 exports' 10 || fail "usbredirsrv starts" "$(cat "$work/main.log")"
v=$(hello "$p2")
is "a TCP client gets usbredirsrv's hello" "${v%% *}" "usbgate"
v=$(hello "$sock")
is "a unix-socket client gets the hello" "${v%% *}" "usbgate"
v=$(hello "$p2")
is "the next client after a disconnect gets a new session" "${v%% *}" "usbgate"
# The daemon logs the end of a session when it reads the client's close,
# which can come after hello() has returned.
ug_wait_count "$work/main.log" 'export stick: session ended' 2 30 || :
is "journald-style fields: the export's name is in its messages" \
	"$(grep -c 'export stick: session ended' "$work/main.log")" 2

# SIGHUP: a new export appears, the old one is kept. It goes to the daemon
# itself: timeout forwards a SIGHUP but also arms its -k KILL with it, which
# then killed the daemon 10 s later, before the SIGTERM below when the
# machine was loaded.
p3=$(free_port)
printf '\n[export kbd]\ndevice=0627:0001\nlisten=127.0.0.1:%s\n' "$p3" >>"$work/srv.conf"
kill -HUP "$(daemon_pid "$pid_main")"
ug_wait_match "$work/main.log" "export kbd: device 0627:0001, listening" 10 || true
v=$(hello "$p3")
is "after SIGHUP the new export serves" "${v%% *}" "usbgate"
is "and the unchanged one kept running" "$(grep -c 'export stick: removed' "$work/main.log")" 0

# --spice usage: its options need it; a bad URI; an unreachable server.
"$srv" --from tcp:127.0.0.1:1 >"$work/f.log" 2>&1
is "--from without --spice is a usage error (2)" "$?:$(grep -c 'need --spice' "$work/f.log")" "2:1"
"$srv" --spice 'http://127.0.0.1:1' >"$work/u.log" 2>&1
is "a URI that is not spice:// is a usage error (2)" "$?" 2
"$srv" --spice 'spice://127.0.0.1:1' --spice-password-file "$work/no-such-file" >"$work/pf.log" 2>&1
is "an unreadable password file is a usage error (2)" "$?" 2
p5=$(free_port)
timeout 60 "$srv" --spice "spice://127.0.0.1:$p5" --from tcp:127.0.0.1:1 --no-reconnect \
	>"$work/nr.log" 2>&1
rc=$?
is "--no-reconnect: an unreachable SPICE server is exit status 4, with a message" \
	"$rc:$(grep -c "SPICE: .*127.0.0.1:$p5" "$work/nr.log")" "4:1"

# --connect: QEMU's side listens late; usbredirsrv retries with backoff.
p4=$(free_port)
start conn -v --connect "46f4:0001@127.0.0.1:$p4"
# Two refused attempts (about 250 ms, then 500 ms apart) before listening.
ug_wait_count "$work/conn.log" 'failed, next in' 2 30 || :
got=$(python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $p4)); s.listen(); s.settimeout(10)
c, _ = s.accept(); c.settimeout(5)
d = c.recv(76)
print(d[12:19].decode(errors='replace'))
")
retries=$(grep -c 'failed, next in' "$work/conn.log")
is "--connect retries until the listener appears, then sends its hello" \
	"$got:$([ "$retries" -ge 2 ] && echo retried)" "usbgate:retried"

# SIGTERM: clean exit 0. If a process is still there after 5 s, its
# threads' stacks go to the TAP log (gdb, when installed) before the KILL.
for t in $pid_main $pid_conn; do
	[ -n "$(daemon_pid "$t")" ] || echo "# usbredirsrv under timeout $t was gone before the SIGTERM"
done
kill -TERM "$pid_main" "$pid_conn"
for t in $pid_main $pid_conn; do
	c=$(daemon_pid "$t")
	i=0
	while [ -n "$c" ] && kill -0 "$c" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if [ -n "$c" ] && kill -0 "$c" 2>/dev/null && command -v gdb >/dev/null; then
		echo "# usbredirsrv $c still runs 5 s after SIGTERM; its threads:"
		gdb -p "$c" -batch -ex "thread apply all bt" 2>/dev/null | grep -E '^#|^Thread' | sed 's/^/#   /'
	fi
done
wait "$pid_main"
rc1=$?
wait "$pid_conn"
rc2=$?
is "SIGTERM: both exit 0 and say so" "$rc1 $rc2 $(grep -c 'stopped' "$work/main.log")" "0 0 1"
# --pcap: finished at SIGTERM, a usbmon pcap tshark reads (the sessions had
# no device, so only the file's form can be checked here; the VM test
# vm-usbredirsrv-spice.sh checks decoded descriptors).
lt=$(python3 -c "import struct,sys; h=open(sys.argv[1],'rb').read(24); print(struct.unpack('<I', h[20:24])[0] if len(h)==24 else 'short')" "$work/main.pcap" 2>&1)
tshark -r "$work/main.pcap" >/dev/null 2>"$work/tshark.log"
is "--pcap: a finished usbmon pcap (link type 220) that tshark reads" "$lt:$?" "220:0"
[ -e "$sock" ] && fail "the unix socket file is removed at exit" || ok "the unix socket file is removed at exit"
[ $failed -eq 0 ]
