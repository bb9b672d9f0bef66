#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbdump-cli.sh: usbdump's options, messages and exit codes without VMs: usage, unusable input, full disk, proxy --reverse --keep.
UG_SRCDIR=${UG_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
UG_BUILDDIR=${UG_BUILDDIR:-$(pwd)}
U=$UG_BUILDDIR/usbdump/usbdump
D=$UG_SRCDIR/tests/data
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; printf '# %s\n' "$@"; }
# expect DESC CODE REGEX CMD...: exit code CODE and stderr matching REGEX.
expect() {
	desc=$1 code=$2 re=$3
	shift 3
	timeout 60 "$@" >"$T/out" 2>"$T/err"
	rc=$?
	if [ "$rc" = "$code" ] && grep -q -E -- "$re" "$T/err"; then
		ok "$desc"
	else
		notok "$desc" "exit $rc (want $code)" "$(head -c 600 "$T/err")"
	fi
}
echo "1..13"
expect "no source: usage, exit 2" 2 'exactly one source' "$U"
expect "unknown option: exit 2" 2 'Unknown option' "$U" --frobnicate
expect "proxy without --connect: exit 2" 2 'both --listen and --connect' "$U" --listen 4000
expect "bad address: exit 2" 2 'connect' "$U" --listen 127.0.0.1:0 --connect 'host:notaport'
expect "missing file: exit 1" 1 'usbdump: error: .*nosuch' "$U" -r "$T/nosuch.pcap"
printf 'this is not a capture\n' >"$T/text.pcap"
expect "not a capture: exit 3" 3 'usbdump: error' "$U" -r "$T/text.pcap"
expect "a capture without usbredir: exit 3" 3 'no usbredir connection found' "$U" -r "$D/usbredir-storage-midstream.pcap" -q
expect "only TLS: exit 3, said" 3 'no usbredir found: 1 TLS connection' "$U" -r "$D/tls-only.pcap" -q
expect "the keyboard capture decodes: exit 0 and a summary" 0 '1 session, [0-9]+ usbredir packets' "$U" -r "$D/usbredir-kbd.pcap" -q -w "$T/k.pcap"
expect "a capture cut inside a packet: exit 4, named" 4 'ends inside a packet' "$U" -r "$D/usbredir-storage.pcap" -q
expect "mid-stream with --port: decoded, assumed caps said" 4 'assumed caps 0xff' "$U" -r "$D/usbredir-storage-midstream.pcap" -q \
	--port "$(tshark -r "$D/usbredir-storage-midstream.pcap" -c 1 -T fields -e tcp.srcport 2>/dev/null)"
expect "output to /dev/full: exit 1, the output named" 1 'usbmon pcap /dev/full: .*[Nn]o space' "$U" -r "$D/usbredir-kbd.pcap" -q -w /dev/full
# The proxy the other way round, two sessions in a row, then SIGINT.
if python3 - "$U" >"$T/proxy.out" 2>&1 <<'PY'
import socket, struct, subprocess, sys, time
ud = sys.argv[1]
def hello(v): return struct.pack("<III", 0, 68, 0) + v.ljust(64, b"\0") + struct.pack("<I", 0xff)
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
L, C = port(), port()
gs = socket.socket(); gs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
gs.bind(("127.0.0.1", C)); gs.listen(1); gs.settimeout(10)
p = subprocess.Popen([ud, "--reverse", "--keep", "--json", "--listen", str(L), "--connect",
                      "127.0.0.1:%d" % C], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
for i in range(2):
    for _ in range(300):
        try:
            h = socket.create_connection(("127.0.0.1", L)); break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("usbdump --reverse never listened on %d" % L)
    g, _ = gs.accept(); g.settimeout(10); h.settimeout(10)
    g.sendall(hello(b"qemu usb-redir guest 7.2.22")); h.sendall(hello(b"usbredir 0.13.0"))
    assert h.recv(100) == hello(b"qemu usb-redir guest 7.2.22")
    assert g.recv(100) == hello(b"usbredir 0.13.0")
    h.close(); assert g.recv(10) == b""; g.close()
time.sleep(0.3)
p.send_signal(2)
out, err = p.communicate(timeout=10)
out = out.decode()
assert p.returncode == 0, (p.returncode, err)
assert out.count('"dir":"g2h","type":"hello"') == 2 and out.count('"dir":"h2g","type":"hello"') == 2, out
assert b"2 sessions, 4 usbredir packets" in err, err
PY
then
	ok "proxy --reverse --keep: two sessions forwarded and decoded with the right directions, SIGINT exits 0"
else
	notok "proxy --reverse --keep: two sessions forwarded and decoded with the right directions, SIGINT exits 0" "$(cat "$T/proxy.out")"
fi
[ $fails = 0 ]
