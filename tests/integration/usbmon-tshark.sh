#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbmon-tshark.sh: Wireshark (tshark) reads usbgate's usbmon and raw captures of a realistic session as a kernel capture.
#
# The session (a flash drive, a keyboard, a vendor iso device, the flash drive
# again behind a usb-host without 64-bit ids; built with
# libusbredirparser in both roles) is written by test-usbmon --write-session
# through the tracker, the usbmon mapping, the pcap writer and the renderers.
# tshark 4.0 then has to decode it as it decodes a usbmon capture from a
# Linux kernel, and decode the raw record with our Lua dissector.

: "${UG_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${UG_BUILDDIR:=$UG_SRCDIR/build}"
LUA="$UG_SRCDIR/dissectors/usbredir.lua"
GEN="$UG_BUILDDIR/tests/unit/test-usbmon"

echo "1..28"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { # check DESCRIPTION WANT GOT
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (want '$2', got '$3')"; fi
}

if ! command -v tshark >/dev/null 2>&1; then
	# tshark is a declared test dependency (Debian package tshark): its
	# absence is a failure, not a skip.
	i=0
	while [ $i -lt 28 ]; do not_ok "tshark is not installed (apt-get install tshark)"; i=$((i + 1)); done
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

ts() { timeout 120 tshark "$@" 2>/dev/null; }
count() { # count FILTER [extra tshark args]: frames matching a display filter
	f=$1
	shift
	ts -r "$tmp/session.pcap" "$@" -Y "$f" | wc -l | tr -d ' '
}
rcount() { # the same on the raw file, through the Lua dissector
	f=$1
	shift
	ts -X "lua_script:$LUA" -r "$tmp/session-raw.pcap" "$@" -Y "$f" | wc -l | tr -d ' '
}

if timeout 60 "$GEN" --write-session "$tmp" >"$tmp/stats"; then
	ok "session written (usbmon, raw, text, JSON)"
else
	not_ok "session written"
fi
stat() { sed -n "s/^$1=//p" "$tmp/stats"; }

# --- the usbmon file --------------------------------------------------------
frames=$(ts -r "$tmp/session.pcap" | wc -l | tr -d ' ')
check "tshark reads every usbmon record" "$(($(stat submits) + $(stat completions)))" "$frames"
check "no malformed packet at the USB layer or above" 0 "$(count '_ws.malformed')"
check "every completion has its submit (usb.request_in)" 0 \
	"$(count 'usb.urb_type == 0x43 && !usb.request_in')"
check "transfers (submits) = answered data packets + stream packets + synthesized" \
	"$(($(stat data_requests) + $(stat stream_packets) + $(stat synthesized)))" \
	"$(count 'usb.urb_type == 0x53')"
check "device descriptors decode (6 GET_DESCRIPTOR DEVICE responses)" 6 \
	"$(count 'usb.urb_type == 0x43 && usb.bDescriptorType == 1')"
check "vendor ids of the three devices" "0x046d 0x04d8 0x0781" \
	"$(ts -r "$tmp/session.pcap" -Y 'usb.idVendor' -T fields -e usb.idVendor | sort -u | tr '\n' ' ' | sed 's/ $//')"
check "configuration descriptors decode, mass storage interface seen" 2 \
	"$(count 'usb.bInterfaceClass == 0x08 && usb.bDescriptorType == 2')"
check "synthesized SET_CONFIGURATION (4) and SET_INTERFACE (2) requests" "4 2" \
	"$(count 'usb.setup.bRequest == 9 && usb.urb_type == 0x53') $(count 'usb.setup.bRequest == 11 && usb.urb_type == 0x53')"
check "synthesized GET_CONFIGURATION answers 1" 1 \
	"$(ts -r "$tmp/session.pcap" -Y 'usb.urb_type == 0x43 && usb.bConfigurationValue' -T fields -e usb.bConfigurationValue | sort -u)"
check "USBMS: six CBWs decode" 6 "$(count 'usbms.dCBWSignature == 0x43425355')"
check "SCSI: INQUIRY answer decodes" "SanDisk" \
	"$(ts -r "$tmp/session.pcap" -Y scsi.inquiry.vendor_id -T fields -e scsi.inquiry.vendor_id | tr -d ' ' | sort -u)"
check "SCSI: two READ(10) commands" 2 "$(count 'scsi_sbc.opcode == 0x28 && usbms.dCBWSignature')"
check "HID: report descriptor items decode" 1 "$(count 'usbhid.item.bTag')"
check "HID: four key reports as usbhid.data" \
	"0000040000000000 0000000000000000 0200050000000000 0000000000000000" \
	"$(ts -r "$tmp/session.pcap" -Y usbhid.data -T fields -e usbhid.data | tr '\n' ' ' | sed 's/ $//')"
check "one device number per device" "1 2 3 4" \
	"$(ts -r "$tmp/session.pcap" -T fields -e usb.device_address | sort -u | tr '\n' ' ' | sed 's/ $//')"
check "iso: 10 records, IN completions carry data" "10 3" \
	"$(count 'usb.transfer_type == 0') $(count 'usb.transfer_type == 0 && usb.urb_type == 0x43 && usb.iso.data')"
check "the 512 KiB read is cut to 262144 bytes with its true length" "524288 262080 262144" \
	"$(ts -r "$tmp/session.pcap" -Y 'usb.urb_type == 0x43 && usb.urb_len == 524288' -T fields -e usb.urb_len -e usb.data_len -e frame.cap_len | tr '\t' ' ')"
check "the cancelled read completes with -ENOENT" 1 "$(count 'usb.urb_status == -2')"

# --- text and JSON ------------------------------------------------------------
check "one text line per usbredir packet" "$(stat packets)" "$(wc -l <"$tmp/session.txt" | tr -d ' ')"
if python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    json.loads(line)
    n += 1
print(n)' "$tmp/session.json" >"$tmp/jsoncount" 2>"$tmp/jsonerr"; then
	check "every JSON line parses, one per packet" "$(stat packets)" "$(cat "$tmp/jsoncount")"
else
	not_ok "every JSON line parses: $(head -c 300 "$tmp/jsonerr")"
fi

# --- the raw file through the Lua dissector ----------------------------------
ts -X "lua_script:$LUA" -r "$tmp/session-raw.pcap" -V >"$tmp/raw-V.txt"
if grep -q "Lua Error" "$tmp/raw-V.txt"; then
	not_ok "Lua dissector runs without errors: $(grep -m1 'Lua Error' "$tmp/raw-V.txt")"
else
	ok "Lua dissector runs without errors"
fi
check "raw: no malformed packets, every packet decoded by usbredir" "0 $(stat packets)" \
	"$(rcount '_ws.malformed') $(rcount 'usbredir.type')"
data_packets=$(python3 -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) if 100 <= json.loads(l)["type_num"] <= 104))' "$tmp/session.json")
check "raw: Lua and the C renderer agree on the data packets; fields decode" \
	"$data_packets 0781:5567 GET_DESCRIPTOR DEVICE len 18" \
	"$(rcount 'usbredir.type >= 100') $(ts -X "lua_script:$LUA" -r "$tmp/session-raw.pcap" -Y 'usbredir.vendor_id' -T fields -e usbredir.vendor_id -e usbredir.product_id | head -1 | sed 's/0x0*\([0-9a-f]*\)\t0x\([0-9a-f]*\)/0\1:\2/') $(ts -X "lua_script:$LUA" -r "$tmp/session-raw.pcap" -Y 'usbredir.dir == 1 && usbredir.request_name contains "DEVICE"' -T fields -e usbredir.request_name | head -1)"
check "raw: transfers handed to Wireshark's USB dissector (USBMS, HID, descriptors)" "6 4 6" \
	"$(rcount 'usbms.dCBWSignature') $(rcount 'usbhid.data') $(rcount 'usb.urb_type == 0x43 && usb.bDescriptorType == 1')"
check "raw: 32-bit ids (session 4) decode, the CBW reaches USBMS" "0 $(grep -c '^#4 \|#4 ' "$tmp/session.txt") 1" \
	"$(rcount 'usbredir.session == 4 && usbredir.prefix.flags & 2') $(rcount 'usbredir.session == 4 && usbredir.type') $(rcount 'usbredir.session == 4 && usbms.dCBWSignature')"

# The usbmon records the Lua dissector rebuilds from the raw file are the
# ones lib/usbmon.c wrote (type, transfer type, endpoint, device, status,
# URB length; captured lengths differ only where the raw record is fragmented).
fields="-T fields -e usb.urb_type -e usb.transfer_type -e usb.endpoint_address -e usb.device_address -e usb.urb_status -e usb.urb_len -e usb.setup.bRequest"
ts -r "$tmp/session.pcap" $fields -Y usb >"$tmp/fields-c.txt"
# Frames with two records (stream data) give both values of each field: split them.
ts -X "lua_script:$LUA" -r "$tmp/session-raw.pcap" $fields -Y usb -E occurrence=a -E aggregator=/s >"$tmp/fields-lua-agg.txt"
python3 - "$tmp/fields-lua-agg.txt" "$tmp/fields-lua.txt" <<'PY'
import sys
out = open(sys.argv[2], 'w')
for line in open(sys.argv[1]):
    cols = [c.split(' ') for c in line.rstrip('\n').split('\t')]
    n = max(len(c) for c in cols)
    for i in range(n):
        out.write('\t'.join(c[i] if i < len(c) else '' for c in cols) + '\n')
PY
if cmp -s "$tmp/fields-c.txt" "$tmp/fields-lua.txt"; then
	ok "Lua rebuilds the same usbmon records as lib/usbmon.c ($(wc -l <"$tmp/fields-c.txt" | tr -d ' ') records)"
else
	not_ok "Lua and lib/usbmon.c records differ: $(diff "$tmp/fields-c.txt" "$tmp/fields-lua.txt" | head -4 | tr '\n' ' ')"
fi

# Hostile raw records (random types, lengths that lie, cut headers, broken
# prefixes, stray fragments): the dissector must flag them, not fail.
python3 - "$tmp/hostile.pcap" <<'PY'
import random, struct, sys
random.seed(7)
types = list(range(0, 28)) + list(range(100, 105)) + [55, 200]
recs = []
for i in range(400):
    t = random.choice(types)
    flags = random.choice([0, 1, 2, 3])
    caps = random.choice([0, 0xff, 0x1e, random.getrandbits(32)])
    n = random.choice([0, 1, 2, 3, 5, 8, 10, 60, 64, 68, 100, 132, 160, 288, 300])
    body = bytes(random.getrandbits(8) for _ in range(n))
    length = random.choice([n, n + 5, max(0, n - 3), random.getrandbits(32)])
    hdr = struct.pack('<II', t, length)
    hdr += struct.pack('<Q', random.getrandbits(64)) if flags & 2 else struct.pack('<I', random.getrandbits(32))
    if random.random() < 0.05:
        hdr = hdr[:random.randint(0, len(hdr))]
        body = b''
    pkt = hdr + body
    total = len(pkt) if random.random() > 0.1 else len(pkt) + random.randint(1, 1000)
    off = 0 if random.random() > 0.1 else random.randint(1, total)
    pre = b'UGRW' + bytes([1, random.getrandbits(1), flags, 0]) + struct.pack('>IIII', caps, random.randint(0, 5), total, off)
    if random.random() < 0.03:
        pre = b'XXXX' + pre[4:]
    tags = struct.pack('>HH', 12, 8) + b'usbredir' + struct.pack('>HHI', 35, 4, random.getrandbits(1)) + struct.pack('>HH', 0, 0)
    recs.append(tags + pre + pkt)
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b23c4d, 2, 4, 0, 0, 262144, 252))
    for i, r in enumerate(recs):
        f.write(struct.pack('<IIII', i, 0, len(r), len(r)) + r)
PY
hostile=$(ts -X "lua_script:$LUA" -r "$tmp/hostile.pcap" -V | grep -c "Lua Error")
shorts=$(ts -X "lua_script:$LUA" -r "$tmp/hostile.pcap" -Y usbredir.short | wc -l | tr -d ' ')
if [ "$hostile" = 0 ] && [ "$shorts" -gt 0 ]; then
	ok "hostile raw records: no Lua error, $shorts flagged as short"
else
	not_ok "hostile raw records: $hostile Lua errors, $shorts flagged as short"
fi
