#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-capture-read.sh: ug_capture (pcap source + TCP reassembly) against tcpdump -r on large loopback captures.
#
# Usage (from the build directory, as root for the capture):
#   ../bench/bench-capture-read.sh [MB]        default 200 MB of TCP payload per capture
# Env: UG_BUILDDIR (default .), UG_BENCH_DIR (keep the captures there instead
# of a fresh /tmp directory that is removed at exit).
#
# A session is captured with tcpdump -i lo (loopback's own segments, up to
# 64 KiB per frame) and re-segmented into Ethernet-sized frames. For
# each, both readers run three times on the cached file and the best time
# counts. Prints MB/s, the ratio (issue 5 wants >= 0.5 for usbdump -r) and
# the peak RSS of each reader (GNU time, Debian package "time").
set -eu
mb=${1:-200}
builddir=${UG_BUILDDIR:-.}
bench="$builddir/bench/bench-capture"
[ -x "$bench" ] || { echo "build $bench first (make bench)" >&2; exit 1; }
dir=${UG_BENCH_DIR:-$(mktemp -d /tmp/ug-bench-capture.XXXXXX)}
mkdir -p "$dir"
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	[ -n "${UG_BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

# make_capture FILE MSS: a client streams $mb MB to a server that answers
# every 64 KiB with a short reply, in writes of varied sizes, like a busy
# usbredir session (bulk data one way, small packets the other).
make_capture() {
	cap=$1 mss=$2
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	timeout 600 tcpdump -q -i lo -B 262144 -U -w "$cap" "tcp port $port" 2>"$cap.log" & pids="$!"
	sleep 2
	timeout 600 python3 - "$port" "$mb" "$mss" <<'PY'
import random, socket, sys, threading
port, mb, mss = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def clamp(s):
    if mss:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
clamp(srv); srv.bind(("127.0.0.1", port)); srv.listen(1)
def serve():
    c, _ = srv.accept(); got = 0; mark = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += len(b)
        while got - mark >= 65536:
            c.sendall(b"ack %d\n" % got); mark += 65536
    c.close()
t = threading.Thread(target=serve); t.start()
cl = socket.socket(); clamp(cl); cl.connect(("127.0.0.1", port))
rng = random.Random(1); blob = bytes(rng.getrandbits(8) for _ in range(1 << 16))
left = mb * 1000000
while left > 0:
    n = min(left, rng.choice((512, 1500, 4096, 16384, 65536)))
    cl.sendall(blob[:n]); left -= n
cl.shutdown(socket.SHUT_WR)
while cl.recv(65536): pass
cl.close(); t.join()
PY
	# tcpdump writes behind the traffic: stop it once the file stops growing,
	# so the capture holds the whole session.
	last=-1
	while [ "$(stat -c %s "$cap")" != "$last" ]; do last=$(stat -c %s "$cap"); sleep 1; done
	kill -INT $pids; wait $pids || true; pids=""
	echo "tcpdump: $(grep -h 'dropped by kernel' "$cap.log" || echo 'no drop count')"
}

best() {  # best CMD...: the shortest of 3 runs, in seconds
	b=""
	for i in 1 2 3; do
		s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc)
		if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
	done
	echo "$b"
}
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk '/Maximum resident/ {print $NF}'; }

measure() {  # measure NAME FILE
	name=$1 cap=$2
	size=$(stat -c %s "$cap")
	frames=$(capinfos -c -M "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}')
	cat "$cap" >/dev/null   # both readers see a cached file
	t_tcpdump=$(best tcpdump -r "$cap" -w /dev/null)
	t_ug=$(best "$bench" "$cap")
	echo "== $name: $size bytes, $frames frames"
	echo "tcpdump -r -w /dev/null: $(printf '%.3f' "$t_tcpdump") s, $(echo "scale=1; $size / $t_tcpdump / 1000000" | bc) MB/s"
	echo "bench-capture:           $(printf '%.3f' "$t_ug") s, $(echo "scale=1; $size / $t_ug / 1000000" | bc) MB/s"
	echo "ratio (ug speed / tcpdump speed): $(echo "scale=2; $t_tcpdump / $t_ug" | bc)"
	echo "bench-capture says: $("$bench" "$cap")"
	if [ -x /usr/bin/time ]; then
		echo "max RSS: tcpdump $(rss tcpdump -r "$cap" -w /dev/null) KiB, bench-capture $(rss "$bench" "$cap") KiB"
	else
		echo "max RSS: not measured (install the Debian package \"time\" for /usr/bin/time)"
	fi
}

# resegment IN OUT: the same session as Ethernet would carry it. Loopback
# hands tcpdump 64 KiB GSO frames whatever the MSS, so the frames of the real
# capture are split into 1448-byte segments (IPv4 length and TCP sequence
# numbers rewritten), which gives 40x more frames per MB to read.
resegment() {
	python3 - "$1" "$2" <<'PY'
import struct, sys
src, dst = open(sys.argv[1], "rb"), open(sys.argv[2], "wb")
hdr = src.read(24); dst.write(hdr)
MSS = 1448
while True:
    rh = src.read(16)
    if len(rh) < 16: break
    sec, frac, cap, wire = struct.unpack("<IIII", rh)
    d = src.read(cap)
    ihl = (d[14] & 15) * 4
    t = 14 + ihl
    doff = (d[t + 12] >> 4) * 4
    head, pay = d[:t + doff], d[t + doff:]
    if len(pay) <= MSS or cap != wire:
        dst.write(rh + d); continue
    seq = struct.unpack(">I", d[t + 4:t + 8])[0]
    for o in range(0, len(pay), MSS):
        part = pay[o:o + MSS]
        h = bytearray(head)
        struct.pack_into(">H", h, 16, ihl + doff + len(part))
        struct.pack_into(">I", h, t + 4, (seq + o) & 0xffffffff)
        if o + MSS < len(pay):
            h[t + 13] &= ~0x09 & 0xff   # FIN and PSH belong to the last piece
        n = len(h) + len(part)
        dst.write(struct.pack("<IIII", sec, frac, n, n) + bytes(h) + part)
PY
}

make_capture "$dir/lo64k.pcap" 0
resegment "$dir/lo64k.pcap" "$dir/mss1448.pcap"
measure "loopback segments (up to 64 KiB)" "$dir/lo64k.pcap"
measure "the same, re-segmented to MSS 1448" "$dir/mss1448.pcap"
