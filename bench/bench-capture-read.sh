#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-capture-read.sh: ug_capture (pcap source + TCP reassembly) against tcpdump -r on one large loopback capture.
#
# Usage (from the build directory, as root for the capture):
#   ../bench/bench-capture-read.sh [MB]        default 200 MB of TCP payload
# Env: UG_BUILDDIR (default .), UG_BENCH_DIR (default a fresh /tmp directory).
# Prints MB/s of both readers, the ratio (issue 5 wants >= 0.5 for usbdump -r)
# and the peak RSS of each (GNU time, Debian package "time").
set -eu
mb=${1:-200}
builddir=${UG_BUILDDIR:-.}
bench="$builddir/bench/bench-capture"
[ -x "$bench" ] || { echo "build $bench first (make bench)" >&2; exit 1; }
dir=${UG_BENCH_DIR:-$(mktemp -d /tmp/ug-bench-capture.XXXXXX)}
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	[ -n "${UG_BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cap="$dir/big.pcap"

# The traffic: a client streams $mb MB to a server that answers every
# 64 KiB with a short reply, in writes of varied sizes, like a busy usbredir
# session (bulk data one way, small packets the other).
timeout 300 tcpdump -q -i lo -B 262144 -U -w "$cap" "tcp port $port" 2>/dev/null & pids="$!"
sleep 2
timeout 300 python3 - "$port" "$mb" <<'PY'
import random, socket, sys, threading
port, mb = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(1)
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
cl = socket.create_connection(("127.0.0.1", port))
rng = random.Random(1); blob = bytes(rng.getrandbits(8) for _ in range(1 << 16))
left = mb * 1000000
while left > 0:
    n = min(left, rng.choice((512, 1500, 4096, 16384, 65536)))
    cl.sendall(blob[:n]); left -= n
cl.shutdown(socket.SHUT_WR)
while cl.recv(65536): pass
cl.close(); t.join()
PY
sleep 1
kill -INT $pids; wait $pids || true; pids=""
size=$(stat -c %s "$cap")
echo "capture: $cap, $size bytes, $(capinfos -c -M "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}') frames"

# Warm the page cache so both readers see the same conditions.
cat "$cap" >/dev/null
best() {  # best() CMD...: the shortest of 3 runs, in seconds
	b=""
	for i in 1 2 3; do
		s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc)
		if [ -z "$b" ] || [ "$(echo "$t < $b" | bc)" = 1 ]; then b=$t; fi
	done
	echo "$b"
}
t_tcpdump=$(best tcpdump -r "$cap" -w /dev/null)
t_ug=$(best "$bench" "$cap")
mbps() { echo "scale=1; $size / $1 / 1000000" | bc; }
echo "tcpdump -r -w /dev/null: $t_tcpdump s, $(mbps "$t_tcpdump") MB/s"
echo "bench-capture:           $t_ug s, $(mbps "$t_ug") MB/s"
echo "ratio (ug / tcpdump speed): $(echo "scale=2; $t_tcpdump / $t_ug" | bc)"
"$bench" "$cap"
if [ -x /usr/bin/time ]; then
	rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk '/Maximum resident/ {print $NF}'; }
	echo "max RSS: tcpdump $(rss tcpdump -r "$cap" -w /dev/null) KiB, bench-capture $(rss "$bench" "$cap") KiB"
else
	echo "max RSS: not measured (install the Debian package \"time\" for /usr/bin/time)"
fi
