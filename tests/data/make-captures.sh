#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-captures.sh: records the loopback captures in tests/data/ (needs root, tcpdump, dumpcap).
# Usage: tests/data/make-captures.sh [OUTDIR]   (default: the directory of this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

record() {  # record NAME ADDR
	name=$1 addr=$2 port=$(free_port)
	pids=""
	if [ "$name" = lo4 ]; then
		# One session, five recorders: the same bytes in several formats.
		timeout 60 tcpdump -q -i lo -U -w "$out/lo4.pcap" "tcp port $port" 2>/dev/null & pids="$pids $!"
		timeout 60 tcpdump -q -i lo -s 200 -U -w "$out/lo4-snap200.pcap" "tcp port $port" 2>/dev/null & pids="$pids $!"
		timeout 60 tcpdump -q -i any -y LINUX_SLL -U -w "$out/any4-sll.pcap" "tcp port $port" 2>/dev/null & pids="$pids $!"
		timeout 60 tcpdump -q -i any -y LINUX_SLL2 -U -w "$out/any4-sll2.pcap" "tcp port $port" 2>/dev/null & pids="$pids $!"
		timeout 60 dumpcap -q -i lo -f "tcp port $port" -w "$out/lo4.pcapng" 2>/dev/null & pids="$pids $!"
	else
		timeout 60 tcpdump -q -i lo -U -w "$out/$name.pcap" "tcp port $port" 2>/dev/null & pids="$pids $!"
	fi
	sleep 2   # let every recorder attach its filter
	timeout 60 python3 "$here/gen-traffic.py" "$addr" "$port" "$out/$name.streams"
	sleep 1
	for p in $pids; do kill -INT "$p"; done
	for p in $pids; do wait "$p" || true; done
	pids=""
}

record lo4 127.0.0.1
record lo6 ::1

# A TLS connection (throwaway self-signed certificate made here).
tmp=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=usbgate-test -days 1 \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
port=$(free_port)
timeout 60 tcpdump -q -i lo -U -w "$out/lo4-tls.pcap" "tcp port $port" 2>/dev/null & pids="$!"
sleep 2
timeout 60 python3 "$here/gen-tls.py" "$port" "$tmp/cert.pem" "$tmp/key.pem"
sleep 1
kill -INT $pids; wait $pids || true; pids=""
rm -rf "$tmp"
chmod 644 "$out"/*.pcap "$out"/*.pcapng "$out"/*.streams
ls -l "$out"/lo4* "$out"/any4* "$out"/lo6*
