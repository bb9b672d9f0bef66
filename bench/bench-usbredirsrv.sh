#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-usbredirsrv.sh: guest-visible read MB/s and transfers/s through usbredirsrv vs usbredirect, and fd/memory over connect cycles.
#
# Part 1: the same VM rig, the same disk image, in one run: the device VM runs
# Debian's usbredirect (the anchor), then usbredirsrv from this build tree;
# each time the consumer reads the whole disk UG_BENCH_READS times with 1 MiB
# O_DIRECT reads (median MB/s) and then UG_BENCH_SMALL 4 KiB O_DIRECT reads
# (transfers/s). Ratios are usbredirsrv / usbredirect.
# Part 2: with usbredirsrv still running in the device VM, a host client
# connects UG_BENCH_CYCLES times: each time it sends a usbredir hello, waits
# for device_connect (so the device is really opened and claimed) and closes
# (so it is released). The device VM prints usbredirsrv's open descriptors and
# VmRSS every 0.5 s; the figures after the first and after the last cycle are
# compared.
#
# Run from the build dir: UG_SRCDIR=.. UG_BUILDDIR=. sh ../bench/bench-usbredirsrv.sh
# Environment: UG_BENCH_MIB (32), UG_BENCH_READS (3), UG_BENCH_SMALL (1024),
# UG_BENCH_CYCLES (100), UG_BENCH_ROUNDS (2: usbredirect, usbredirsrv, twice).
UG_TEST_TIMEOUT=${UG_TEST_TIMEOUT:-900}
UG_VM_TIMEOUT=${UG_VM_TIMEOUT:-600}
UG_VM_APPEND=${UG_VM_APPEND:-no_timer_check}
. "${UG_SRCDIR:-$(dirname "$0")/..}/tests/vm/lib.sh"

mib=${UG_BENCH_MIB:-32}
reads=${UG_BENCH_READS:-3}
small=${UG_BENCH_SMALL:-1024}
cycles=${UG_BENCH_CYCLES:-100}
rounds=${UG_BENCH_ROUNDS:-2}
srv=$UG_BUILDDIR/usbredirsrv/usbredirsrv
[ -x "$srv" ] || { echo "bench-usbredirsrv: $srv is not built" >&2; exit 1; }
vm_guest || { echo "bench-usbredirsrv: cannot build the guest" >&2; exit 1; }
img=$UG_VM_WORK/disk.img
vm_disk_image "$img" "$mib"
guest=$UG_SRCDIR/bench/bench-usbredirsrv.guest.sh

stats_loop='while :; do p=$(pidof usbredirsrv); [ -n "$p" ] && echo "UG-STAT fds=$(ls /proc/$p/fd | wc -l) rss_kib=$(awk "/^VmRSS/ { print \$2 }" /proc/$p/status)"; sleep 0.5; done'

echo "bench-usbredirsrv: ${mib} MiB disk, $reads whole-disk reads (1 MiB) and $small reads of 4 KiB per exporter; TCG; guest clock (10 ms)"
printf '%-12s %-24s %8s %10s\n' exporter "read MB/s (each)" median "4KiB tr/s"

# run_variant NAME [vm_device_start options]: prints one line, leaves the
# device VM running (named dev-NAME) and stops the consumer.
run_variant() {
	name=$1
	shift
	vm_device_start "dev-$name" --disk "$img" "$@" || exit 1
	vm_consumer_start "con-$name" --script "$guest" --env UG_READS="$reads" \
		--env UG_SMALL="$small" || exit 1
	vm_wait_for "dev-$name" '^UG-EXPORTER-READY' 120 >/dev/null || { echo "$name: exporter not ready" >&2; exit 1; }
	vm_wait_for "con-$name" '^UG-RUN start' 120 >/dev/null || exit 1
	vm_redir_attach "con-$name" "$(vm_port "dev-$name")" || exit 1
	line=$(vm_wait_for "con-$name" '^UG-RESULT small ' 600) || { echo "$name: no result" >&2; exit 1; }
	each=$(vm_lines "con-$name" '^UG-RESULT read ' | while read -r l; do vm_field "$l" mbps; done | tr '\n' ' ')
	med=$(echo "$each" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	tps=$(vm_field "$line" tps)
	printf '%-12s %-24s %8s %10s\n' "$name" "$each" "$med" "$tps"
	echo "$med $tps" >"$UG_VM_WORK/result-$name"
	vm_stop "con-$name"
}

# Alternating rounds, so that load from elsewhere on the machine hits both.
r=1
while [ $r -le "$rounds" ]; do
	# Each device VM holds the image's write lock: one at a time.
	[ $r -gt 1 ] && vm_stop "dev-usbredirsrv$((r - 1))"
	run_variant "usbredirect$r"
	vm_stop "dev-usbredirect$r"
	run_variant "usbredirsrv$r" --files "prog=$srv" \
		--exporter "($stats_loop) & exec usbredirsrv --export 46f4:0001@0.0.0.0:4000"
	r=$((r + 1))
done
cat "$UG_VM_WORK"/result-usbredirect* | awk '{ m += $1; t += $2 } END { print m / NR, t / NR }' >"$UG_VM_WORK/a"
cat "$UG_VM_WORK"/result-usbredirsrv* | awk '{ m += $1; t += $2 } END { print m / NR, t / NR }' >"$UG_VM_WORK/s"
read -r a_med a_tps <"$UG_VM_WORK/a"
read -r s_med s_tps <"$UG_VM_WORK/s"
awk -v a="$a_med" -v s="$s_med" -v at="$a_tps" -v st="$s_tps" 'BEGIN {
	printf "mean of the rounds: usbredirect %.2f MB/s %.0f tr/s, usbredirsrv %.2f MB/s %.0f tr/s\n", a, at, s, st
	printf "ratio usbredirsrv/usbredirect: read %.2fx, 4 KiB transfers/s %.2fx (target >= 1.0x)\n",
		(a > 0 ? s / a : 0), (at > 0 ? st / at : 0) }'

# Part 2: connect/disconnect cycles against the running usbredirsrv.
last=dev-usbredirsrv$rounds
port=$(vm_port "$last")
last_stat() {
	sleep 1.2
	vm_lines "$last" '^UG-STAT ' | tail -n 1
}
cycle_client='
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
hello = struct.pack("<III", 0, 64 + 4, 0) + b"bench-usbredirsrv".ljust(64, b"\0") + struct.pack("<I", 0)
ok = 0
t0 = time.time()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(hello)
    buf = b""
    seen = False
    deadline = time.time() + 10
    while not seen and time.time() < deadline:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        while len(buf) >= 12:
            t, l, _ = struct.unpack("<III", buf[:12])
            if len(buf) < 12 + l:
                break
            if t == 1:
                seen = True
            buf = buf[12 + l:]
    s.close()
    ok += seen
    time.sleep(0.05)
print("cycles=%d device_connect=%d seconds=%.1f" % (n, ok, time.time() - t0))
'
python3 -c "$cycle_client" "$port" 1 >/dev/null
first=$(last_stat)
res=$(python3 -c "$cycle_client" "$port" "$cycles")
after=$(last_stat)
echo "connect/disconnect: $res"
echo "usbredirsrv after 1 cycle:  fds=$(vm_field "$first" fds) VmRSS=$(vm_field "$first" rss_kib) KiB"
echo "usbredirsrv after $((cycles + 1)) cycles: fds=$(vm_field "$after" fds) VmRSS=$(vm_field "$after" rss_kib) KiB"
vm_stop "$last"
