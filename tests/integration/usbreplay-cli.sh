#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbreplay-cli.sh: table of hostile captures and bad command lines: each gets its documented exit code and a clear message.
#
# No VM: the captures are made from the shipped ones (cut, corrupted, other
# link types, impossible lengths) and from scratch with python's struct.
. "${UG_SRCDIR:-$(dirname "$0")/../..}/tests/vm/lib.sh"
. "$UG_SRCDIR/tests/integration/usbreplay-lib.sh"

[ -x "$UR_BIN" ] || tap_bail "usbreplay is not built"
W=$UG_VM_WORK
python3 - "$UG_SRCDIR/tests/data/storage.raw.pcap" "$W" <<'PY'
import struct, sys
src, w = sys.argv[1], sys.argv[2]
f = open(src, 'rb').read()
hdr = f[:24]
recs = []
off = 24
while off + 16 <= len(f):
    cap = struct.unpack_from('<I', f, off + 8)[0]
    recs.append(f[off:off + 16 + cap])
    off += 16 + cap
def write(name, data):
    open(w + '/' + name, 'wb').write(data)
def pcap(linktype, records):
    h = bytearray(hdr)
    struct.pack_into('<I', h, 20, linktype)
    return bytes(h) + b''.join(records)
def rec(body, ts=0):
    return struct.pack('<IIII', ts, 0, len(body), len(body)) + body
def raw(direction, pkt, flags=3, caps=0xff):
    tags = struct.pack('>HH8sHHIHH', 12, 8, b'usbredir', 35, 4, direction, 0, 0)
    pre = b'UGRW' + bytes([1, direction, flags, 0]) + struct.pack('>IIII', caps, 1, len(pkt), 0)
    return rec(tags + pre + pkt)
write('empty.pcap', b'')
write('junk.pcap', b'this is not a capture file at all\n' * 3)
write('header-only.pcap', hdr)
write('cut-mid-record.pcap', f[:len(f) - 1000])
write('cut-mid-header.pcap', f[:24 + 7])
write('ethernet.pcap', pcap(1, recs[:5]))
write('usb-linux-pcap.pcap', pcap(189, recs[:5]))
write('no-device.pcap', hdr + b''.join(recs[:2]))           # hellos only
# a record that claims 0xffffffff bytes of caplen
bad = bytearray(recs[2]); struct.pack_into('<I', bad, 8, 0xffffffff)
write('caplen-huge.pcap', hdr + recs[0] + recs[1] + bytes(bad))
# a usbredir packet that claims 0xffffffff bytes
pkt = struct.pack('<III', 100, 0xffffffff, 7) + b'\0' * 20
write('usbredir-length-huge.pcap', hdr + recs[0] + recs[1] + raw(0, pkt))
# a packet with length 0 where a type header is needed (device_connect)
pkt = struct.pack('<IIQ', 1, 0, 0)
write('usbredir-length-zero.pcap', hdr + recs[0] + recs[1] + raw(1, pkt))
# the raw prefix with a bad magic
bad = bytearray(recs[3]); bad[16 + 24:16 + 28] = b'XXXX'
write('bad-prefix.pcap', hdr + recs[0] + recs[1] + recs[2] + bytes(bad))
# a usbmon file with one record shorter than the usbmon header
write('usbmon-short.pcap', pcap(220, [rec(b'\0' * 20)]))
# a usbmon file with a submit and nothing else
s = struct.pack('<QBBBBHBBqiiIIBBBBBBBBiiII', 1, ord('S'), 2, 0x80, 1, 1, 0, ord('<'), 0, 0, -115, 18, 0,
                0x80, 6, 0, 1, 0, 0, 18, 0, 0, 0, 0, 0)
write('usbmon-no-descriptors.pcap', pcap(220, [rec(s)]))
# a usbmon record whose len_cap exceeds what was captured
s2 = bytearray(s); struct.pack_into('<I', s2, 36, 5000)
write('usbmon-lencap-huge.pcap', pcap(220, [rec(bytes(s2))]))
# a raw record file that is a different session's middle: ep_info first, no hello
write('mid-stream.pcap', hdr + b''.join(recs[3:20]))
PY

cap=$UG_SRCDIR/tests/data/storage.raw.pcap
# name | expected exit | message pattern | arguments (capture last)
cases='empty|3|not a capture|--listen 0 W/empty.pcap
junk|3|not a capture|--listen 0 W/junk.pcap
header-only|3|no records|--listen 0 W/header-only.pcap
cut-mid-record|3|record [0-9]+: truncated|--listen 0 W/cut-mid-record.pcap
cut-mid-header|3|truncated|--listen 0 W/cut-mid-header.pcap
ethernet link type|3|link type 1;|--listen 0 W/ethernet.pcap
usb-linux link type|3|link type 189;|--listen 0 W/usb-linux-pcap.pcap
hellos only|3|no device_connect|--listen 0 W/no-device.pcap
caplen 0xffffffff|3|record|--listen 0 W/caplen-huge.pcap
usbredir length 0xffffffff|3|record 3: .*4294967295|--listen 0 W/usbredir-length-huge.pcap
usbredir length 0|3|record 3: .*length 0|--listen 0 W/usbredir-length-zero.pcap
bad raw prefix|3|record 4|--listen 0 W/bad-prefix.pcap
usbmon record too short|3|record 1: 20 bytes|--listen 0 --speed high W/usbmon-short.pcap
usbmon no descriptors|3|no device descriptor|--listen 0 --speed high W/usbmon-no-descriptors.pcap
usbmon len_cap too big|3|record 1: len_cap 5000|--listen 0 --speed high W/usbmon-lencap-huge.pcap
missing file|3|No such file|--listen 0 W/does-not-exist.pcap
memory limit|3|memory limit|--listen 0 --max-memory 65536 CAP
no capture|2|no capture file|--listen 0
two modes|2|exactly one of|--listen 0 --connect 127.0.0.1:1 CAP
no mode|2|exactly one of|CAP
guest with listen|2|use it with --connect|--guest --listen 0 CAP
password without spice|2|go with --spice|--listen 0 --password-file /dev/null CAP
bad pace|2|--pace slow|--pace slow --listen 0 CAP
bad speed|2|--speed warp|--speed warp --listen 0 CAP
bad ignore rule|2|ignore rule|--ignore 0x81:9-2 --listen 0 CAP
bad unmatched|2|--unmatched|--unmatched maybe --listen 0 CAP
bad address|2|.|--listen 127.0.0.1:99999 CAP
password in URI|2|[Pp]assword|--spice spice://127.0.0.1:5900?password=secret CAP
nobody listening|4|127.0.0.1:1|--connect 127.0.0.1:1 CAP
nobody listening, guest|4|127.0.0.1:1|--guest --connect 127.0.0.1:1 CAP'
n=$(printf '%s\n' "$cases" | wc -l)
tap_plan $((n + 4))
while IFS='|' read -r name want pat args; do
	args=$(printf '%s' "$args" | sed "s|W/|$W/|g; s|CAP|$cap|g")
	# shellcheck disable=SC2086
	timeout 30 "$UR_BIN" $args >"$W/out" 2>"$W/err"
	rc=$?
	if [ "$rc" = "$want" ] && grep -q -E -- "$pat" "$W/err"; then
		tap_ok "$name: exit $rc ($(head -n 1 "$W/err"))"
	else
		tap_fail "$name: exit $rc, want $want and /$pat/" "$(head -n 5 "$W/err")"
	fi
done <<EOF_CASES
$cases
EOF_CASES
# The usbmon path end to end: an emulated device built from a usbmon pcap
# answers the replayed guest of the same pcap with no divergence.
mon=$UG_SRCDIR/tests/data/kbd.usbmon.pcap
ug_spawn dev 30 sh -c '"$0" "$@"; echo $? >"'"$W"'/dev.rc"' "$UR_BIN" --speed high --listen 127.0.0.1:0 "$mon"
ug_wait_match "$W/dev.log" 'listening on' 10
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$W/dev.log")
timeout 30 "$UR_BIN" --guest --speed high --connect "127.0.0.1:$port" "$mon" >"$W/guest.out" 2>&1
tap_is "usbmon capture: the replayed guest against the emulated device (exit 0)" "$?" 0
ug_wait_gone "$W/dev.pid" 10
tap_check "and the emulated device pushed the keyboard's reports ($(tail -n 1 "$W/dev.log"))" \
	grep -q ' 18 stream packets' "$W/dev.log"
"$UR_BIN" --help >"$W/help" 2>&1
tap_is "--help exits 0" "$?" 0
missing=$(python3 - "$W/help" "$UG_SRCDIR/man/usbreplay.1" <<'PY'
import re, sys
help_text = open(sys.argv[1]).read()
man = open(sys.argv[2]).read().replace('\\-', '-')
opts = set(re.findall(r'--([a-z][a-z-]+)', help_text))
print(' '.join(sorted(o for o in opts if '--' + o not in man)))
PY
)
tap_is "every option of --help is in the man page" "$missing" ""
