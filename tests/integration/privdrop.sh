#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# privdrop.sh: usbredirsrv --user and usbdump --user drop root for good once their sockets, capture and files are open.
#
# Run as root on this host, all on 127.0.0.1, no VM. usbredirsrv exports a
# device this machine does not have: each connection still gets a whole
# usbredir session (its hello first), which is what a dropped process must
# still serve. For every tool run the checks read /proc/PID/task/*/status,
# so that every thread counts (libusb's event thread, GLib's), not just the
# main one: the four fields of Uid and Gid, Groups, and CapPrm/CapEff all
# zero. A client then connects and must get usbredirsrv's hello (type 0,
# "usbgate ..."); files opened before the drop (--pcap, -w) must hold the
# session afterwards (tshark reads them). Failures: an unknown user, a uid
# without a passwd entry and no group, an unknown user= in the key file: exit
# 2 with the documented message, and nothing listening. --user root: a
# warning, nothing dropped. Without root the whole test skips, loudly.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"

TOOLS=${UG_TOOLS_DIR:-$UG_BUILDDIR}
SRV=$TOOLS/usbredirsrv/usbredirsrv
DUMP=$TOOLS/usbdump/usbdump
W=$UG_VM_WORK
PLAN=42
[ -x "$SRV" ] || tap_bail "usbredirsrv is not built"
[ -x "$DUMP" ] || tap_bail "usbdump is not built"
tap_plan $PLAN
if [ "$(id -u)" != 0 ]; then
	_k=0
	while [ $_k -lt $PLAN ]; do
		tap_skip "privilege drop check $((_k + 1))" "needs root (running as uid $(id -u)): --user was NOT tested"
		_k=$((_k + 1))
	done
	exit 0
fi
ug_require tshark tshark ss iproute2 python3 python3

NOBODY_UID=$(id -u nobody)
NOBODY_GID=$(id -g nobody)
NOBODY_GROUPS=$(id -G nobody | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
NOBODY_GROUP=$(id -gn nobody)
# A uid and gid no database entry has.
free_id() {
	_id=$2
	while getent "$1" "$_id" >/dev/null; do _id=$((_id + 1)); done
	echo "$_id"
}
XUID=$(free_id passwd 4242)
XGID=$(free_id group 4300)

# The PID of the process listening on 127.0.0.1:PORT (waits up to 10 s).
listener_pid() {
	_i=0
	until ss -ltnpH "sport = :$1" | grep -q 'pid=' || [ $_i -ge 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	ss -ltnpH "sport = :$1" | sed -n 's/.*pid=\([0-9]*\),.*/\1/p' | head -n 1
}
# The PID of the program NAME (or lt-NAME) running below ROOT (waits up to
# 10 s). The match is on the executable, not the command name: libtool's
# wrapper script is called NAME too, and so are the subshells it forks
# before it execs the program, which end at once.
descendant() {
	_i=0
	while [ $_i -lt 100 ]; do
		for _p in $(ps -e -o pid=,ppid=,comm= | awk -v root="$1" -v name="$2" '
			{ parent[$1] = $2; comm[$1] = $3 }
			END {
				for (p in comm) {
					if (comm[p] != name && comm[p] != "lt-" name) continue
					for (q = p; q in parent && q != 1; q = parent[q])
						if (q == root) { print p; break }
				}
			}'); do
			case $(readlink "/proc/$_p/exe" 2>/dev/null) in
			*/"$2" | */"lt-$2") echo "$_p"; return 0 ;;
			esac
		done
		sleep 0.1
		_i=$((_i + 1))
	done
}
# wait_log FILE BRE: up to 10 s for a line (basic regexps: the patterns
# hold literal parentheses).
wait_log() { ug_wait 10 grep -q -- "$2" "$1" 2>/dev/null; }
# field PID NAME: NAME's value in every thread's status, whitespace squeezed,
# one line per distinct value (so one line when all threads agree).
field() {
	for _t in /proc/"$1"/task/*; do
		sed -n "s/^$2:[[:space:]]*//p" "$_t/status"
	done | awk '{ $1 = $1; print }' | sort -u
}
threads() { ls /proc/"$1"/task | wc -l; }
# check_ids WHAT PID UID GID GROUPS: four checks on every thread.
check_ids() {
	_n=$(threads "$2")
	tap_is "$1: Uid real/effective/saved/fs of all $_n threads" "$(field "$2" Uid)" "$3 $3 $3 $3"
	tap_is "$1: Gid real/effective/saved/fs of all $_n threads" "$(field "$2" Gid)" "$4 $4 $4 $4"
	tap_is "$1: supplementary groups of all $_n threads" \
		"$(field "$2" Groups | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')" "$5"
	tap_is "$1: no capability left (CapPrm, CapEff) in any thread" \
		"$(field "$2" CapPrm) $(field "$2" CapEff)" "0000000000000000 0000000000000000"
}

# The usb-guest side: the real guest hello (QEMU's, from tests/data), then
# usbredirsrv's answer; prints "TYPE VERSION" of the first packet back.
# With "all", the rest of that guest's session follows (SeaBIOS's control
# requests, which the usbmon outputs record though no device answers); with
# a PID after "all", that process gets a SIGINT the moment the last of the
# guest's packets is sent.
cat >"$W/hello.py" <<'EOF'
import os, signal, socket, struct, sys, time
g = open(sys.argv[2] + "/tests/data/usbredir-seabios-kbd.g2h", "rb").read()
hello = g[:12 + struct.unpack_from("<I", g, 4)[0]]
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(hello)
def read(n):
    b = b""
    while len(b) < n:
        p = c.recv(n - len(b))
        if not p:
            break
        b += p
    return b
h = read(12)
if len(h) < 12:
    print("closed after %d bytes" % len(h))
    sys.exit(0)
t, length, _ = struct.unpack("<III", h)
body = read(min(length, 4096))
print(t, body[:64].split(b"\0")[0].decode("ascii", "replace").split(" ")[0])
if sys.argv[3:4] == ["all"]:
    c.sendall(g[len(hello):])
    if sys.argv[4:]:
        os.kill(int(sys.argv[4]), signal.SIGINT)
    time.sleep(0.5)
c.close()
EOF
hello() { python3 "$W/hello.py" "$1" "$UG_SRCDIR" ${2:-} ${3:-} 2>&1; }
records() { tshark -r "$1" 2>/dev/null | wc -l; }
# The usbmon submissions (URB type 'S') of a pcap: the guest's requests.
submissions() { tshark -r "$1" -Y 'usb.urb_type == 0x53' 2>/dev/null | wc -l; }

# ---- usbredirsrv --user nobody ---------------------------------------------------
port=$(ug_free_port)
timeout -k 5 120 "$SRV" --user nobody --export "46f4:0001@$port" --pcap "$W/srv.pcap" \
	</dev/null >"$W/srv.log" 2>&1 &
tpid=$!
ug_on_exit "kill $tpid 2>/dev/null"
spid=$(listener_pid "$port")
ug_on_exit "kill $spid 2>/dev/null"
tap_check "usbredirsrv --user nobody logs the drop" \
	wait_log "$W/srv.log" "running as nobody:$NOBODY_GROUP (uid $NOBODY_UID, gid $NOBODY_GID, groups "
check_ids "usbredirsrv --user nobody" "$spid" "$NOBODY_UID" "$NOBODY_GID" "$NOBODY_GROUPS"
tap_is "usbredirsrv as nobody: a client gets the usbredir hello (type 0)" "$(hello "$port")" "0 usbgate"
tap_is "usbredirsrv as nobody: a second client too" "$(hello "$port" all)" "0 usbgate"
kill -TERM "$spid"
wait $tpid
tap_is "usbredirsrv as nobody: SIGTERM, exit 0" "$?" 0
n=$(records "$W/srv.pcap")
if [ "$n" -gt 0 ]; then
	tap_ok "usbredirsrv as nobody: --pcap (opened as root) holds the sessions: $n records"
else
	tap_fail "usbredirsrv as nobody: --pcap (opened as root) holds the sessions" "$(tail -n 5 "$W/srv.log")"
fi

# ---- user= in the key file: a bare uid and gid -------------------------------------
port=$(ug_free_port)
cat >"$W/srv.conf" <<EOF
[usbredirsrv]
user=$XUID:$XGID

[export absent]
device=46f4:0001
listen=127.0.0.1:$port
EOF
timeout -k 5 120 "$SRV" --config "$W/srv.conf" </dev/null >"$W/srv2.log" 2>&1 &
tpid=$!
ug_on_exit "kill $tpid 2>/dev/null"
spid=$(listener_pid "$port")
ug_on_exit "kill $spid 2>/dev/null"
tap_check "user=$XUID:$XGID (no passwd entry) logs the drop" \
	wait_log "$W/srv2.log" "running as $XUID:$XGID (uid $XUID, gid $XGID, groups $XGID)"
check_ids "user=$XUID:$XGID" "$spid" "$XUID" "$XGID" "$XGID"
tap_is "usbredirsrv as uid $XUID: a client gets the usbredir hello" "$(hello "$port")" "0 usbgate"
# SIGHUP re-reads the file as the dropped user: a new export on a port
# below 1024 cannot be bound any more, and the running one keeps serving.
chmod 0644 "$W/srv.conf"
chmod 0755 "$W"
cat >>"$W/srv.conf" <<EOF

[export low]
device=46f4:0002
listen=127.0.0.1:1
EOF
kill -HUP "$spid"
tap_check "after the drop, SIGHUP cannot bind a port below 1024 (logged)" \
	wait_log "$W/srv2.log" "listen on 127.0.0.1:1: .*ermission denied"
tap_is "after that SIGHUP the export still serves" "$(hello "$port")" "0 usbgate"
kill -TERM "$spid"
wait $tpid
tap_is "usbredirsrv as uid $XUID: SIGTERM, exit 0" "$?" 0

# ---- --user 65534 (a number with a passwd entry) -----------------------------------
port=$(ug_free_port)
timeout -k 5 120 "$SRV" --user "$NOBODY_UID" --export "46f4:0001@$port" \
	</dev/null >"$W/srv3.log" 2>&1 &
tpid=$!
ug_on_exit "kill $tpid 2>/dev/null"
spid=$(listener_pid "$port")
ug_on_exit "kill $spid 2>/dev/null"
wait_log "$W/srv3.log" "ready"
tap_is "--user $NOBODY_UID: Uid of every thread" "$(field "$spid" Uid)" \
	"$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID"
tap_check "--user $NOBODY_UID is named nobody in the log" wait_log "$W/srv3.log" "running as nobody:"
kill -TERM "$spid"
wait $tpid

# ---- failures: exit 2, a message, nothing bound --------------------------------------
# expect_usage WHAT WANT-MESSAGE CMD...: exit 2 and exactly that stderr.
expect_usage() {
	_what=$1
	_want=$2
	shift 2
	timeout -k 5 20 "$@" </dev/null >"$W/out.log" 2>"$W/err.log"
	_rc=$?
	tap_is "$_what: exit 2" "$_rc" 2
	tap_is "$_what: message" "$(cat "$W/err.log")" "$_want"
}
port=$(ug_free_port)
expect_usage "usbredirsrv --user ug-no-such-user" \
	'usbredirsrv: --user: no user "ug-no-such-user" in the passwd database' \
	"$SRV" --user ug-no-such-user --export "46f4:0001@$port"
tap_is "usbredirsrv --user ug-no-such-user: nothing listened on $port" \
	"$(ss -ltnH "sport = :$port" | wc -l)" 0
expect_usage "usbredirsrv --user $XUID (no passwd entry, no group)" \
	"usbredirsrv: --user: uid $XUID has no passwd entry, so no primary group: give one, as $XUID:GID" \
	"$SRV" --user "$XUID" --export "46f4:0001@$port"
sed -i "s/^user=.*/user=nobody:ug-no-such-group/" "$W/srv.conf"
expect_usage "user=nobody:ug-no-such-group in the key file" \
	"usbredirsrv: $W/srv.conf: [usbredirsrv]: user: no group \"ug-no-such-group\" in the group database" \
	"$SRV" --config "$W/srv.conf"

# ---- --user root: a warning, nothing dropped ---------------------------------------
port=$(ug_free_port)
timeout -k 5 120 "$SRV" --user root --export "46f4:0001@$port" </dev/null >"$W/srv4.log" 2>&1 &
tpid=$!
ug_on_exit "kill $tpid 2>/dev/null"
spid=$(listener_pid "$port")
ug_on_exit "kill $spid 2>/dev/null"
wait_log "$W/srv4.log" "ready"
tap_check "--user root: warns that nothing is dropped" \
	grep -q "WARNING.*--user: root:root (uid 0, gid 0, groups .*) is root: privileges are not dropped" \
	"$W/srv4.log"
tap_is "--user root: still uid 0" "$(field "$spid" Uid)" "0 0 0 0"

# ---- usbdump --user nobody, proxy in front of that usbredirsrv ------------------------
dport=$(ug_free_port)
timeout -k 5 120 "$DUMP" --user nobody --listen "$dport" --connect "127.0.0.1:$port" -q \
	-w "$W/proxy.pcap" </dev/null >"$W/dump.log" 2>&1 &
dtpid=$!
ug_on_exit "kill $dtpid 2>/dev/null"
dpid=$(listener_pid "$dport")
ug_on_exit "kill $dpid 2>/dev/null"
tap_check "usbdump --user nobody (proxy) logs the drop" wait_log "$W/dump.log" "running as nobody:"
check_ids "usbdump --user nobody (proxy)" "$dpid" "$NOBODY_UID" "$NOBODY_GID" "$NOBODY_GROUPS"
tap_is "usbdump as nobody: the client gets usbredirsrv's hello through the proxy" \
	"$(hello "$dport" all)" "0 usbgate"
# Without --keep the proxy ends with its session.
wait $dtpid
tap_is "usbdump as nobody: the session ends, exit 0" "$?" 0
n=$(records "$W/proxy.pcap")
if [ "$n" -gt 0 ]; then
	tap_ok "usbdump as nobody: -w (opened as root) holds the session: $n records"
else
	tap_fail "usbdump as nobody: -w (opened as root) holds the session" "$(tail -n 5 "$W/dump.log")"
fi

expect_usage "usbdump --user ug-no-such-user" \
	'usbdump: error: --user: no user "ug-no-such-user" in the passwd database' \
	"$DUMP" --user ug-no-such-user --listen "$dport" --connect "127.0.0.1:$port"

# ---- usbdump -i lo --user nobody: the capture handle outlives root ------------------
timeout -k 5 120 "$DUMP" -i lo --user nobody -q -w "$W/live.pcap" "tcp port $port" \
	</dev/null >"$W/live.log" 2>&1 &
ltpid=$!
ug_on_exit "kill $ltpid 2>/dev/null"
lpid=$(descendant "$ltpid" usbdump)
ug_on_exit "kill $lpid 2>/dev/null"
wait_log "$W/live.log" "capturing on lo"
tap_is "usbdump -i lo --user nobody: Uid of every thread" "$(field "$lpid" Uid)" \
	"$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID"
# The SIGINT comes the moment the guest's last request is on the wire: the
# kernel hands frames over in blocks (50 ms), and a stop first reads what it
# still holds, so every request captured before the signal is recorded.
hello "$port" all "$lpid" >/dev/null
wait $ltpid
tap_is "usbdump -i lo as nobody: SIGINT, exit 0" "$?" 0
n=$(submissions "$W/live.pcap")
if [ "$n" -gt 0 ] && [ "$n" = "$(submissions "$W/proxy.pcap")" ]; then
	tap_ok "usbdump -i lo as nobody: -w holds the session captured after the drop, every request up to the SIGINT: $n, as the proxy's"
else
	tap_fail "usbdump -i lo as nobody: -w holds the session captured after the drop, every request up to the SIGINT" \
		"$n requests, the proxy recorded $(submissions "$W/proxy.pcap")" "$(tail -n 5 "$W/live.log")"
fi

kill -TERM "$spid"
wait $tpid
