#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbmon-tshark.sh: Wireshark (tshark) reads usbgate's usbmon and raw captures of a realistic session as a kernel capture.
#
# The session (a flash drive, a keyboard, a vendor iso device; built with
# libusbredirparser in both roles) is written by test-usbmon --write-session
# through the tracker, the usbmon mapping, the pcap writer and the renderers.
# tshark 4.0 then has to decode it as it decodes a usbmon capture from a
# Linux kernel, and decode the raw record with our Lua dissector.

: "${UG_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${UG_BUILDDIR:=$UG_SRCDIR/build}"
LUA="$UG_SRCDIR/dissectors/usbredir.lua"
GEN="$UG_BUILDDIR/tests/unit/test-usbmon"

echo "1..25"
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
	while [ $i -lt 25 ]; do not_ok "tshark is not installed (apt-get install tshark)"; i=$((i + 1)); done
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
check "device descriptors decode (5 GET_DESCRIPTOR DEVICE responses)" 5 \
	"$(count 'usb.urb_type == 0x43 && usb.bDescriptorType == 1')"
check "vendor ids of the three devices" "0x046d 0x04d8 0x0781" \
	"$(ts -r "$tmp/session.pcap" -Y 'usb.idVendor' -T fields -e usb.idVendor | sort -u | tr '\n' ' ' | sed 's/ $//')"
check "configuration descriptors decode, mass storage interface seen" 1 \
	"$(count 'usb.bInterfaceClass == 0x08 && usb.bDescriptorType == 2')"
check "synthesized SET_CONFIGURATION (3) and SET_INTERFACE (2) requests" "3 2" \
	"$(count 'usb.setup.bRequest == 9 && usb.urb_type == 0x53') $(count 'usb.setup.bRequest == 11 && usb.urb_type == 0x53')"
check "synthesized GET_CONFIGURATION answers 1" 1 \
	"$(ts -r "$tmp/session.pcap" -Y 'usb.urb_type == 0x43 && usb.bConfigurationValue' -T fields -e usb.bConfigurationValue | sort -u)"
check "USBMS: five CBWs decode" 5 "$(count 'usbms.dCBWSignature == 0x43425355')"
check "SCSI: INQUIRY answer decodes" "SanDisk" \
	"$(ts -r "$tmp/session.pcap" -Y scsi.inquiry.vendor_id -T fields -e scsi.inquiry.vendor_id | tr -d ' ')"
check "SCSI: two READ(10) commands" 2 "$(count 'scsi_sbc.opcode == 0x28 && usbms.dCBWSignature')"
check "HID: report descriptor items decode" 1 "$(count 'usbhid.item.bTag')"
check "HID: four key reports as usbhid.data" \
	"0000040000000000 0000000000000000 0200050000000000 0000000000000000" \
	"$(ts -r "$tmp/session.pcap" -Y usbhid.data -T fields -e usbhid.data | tr '\n' ' ' | sed 's/ $//')"
check "one device number per device" "1 2 3" \
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
check "raw: transfers handed to Wireshark's USB dissector (USBMS, HID, descriptors)" "5 4 5" \
	"$(rcount 'usbms.dCBWSignature') $(rcount 'usbhid.data') $(rcount 'usb.urb_type == 0x43 && usb.bDescriptorType == 1')"
