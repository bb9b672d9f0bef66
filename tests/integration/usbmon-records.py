#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# usbmon-records.py: reads usbmon pcaps (link type 220) for the usbdump integration tests.
#
#   usbmon-records.py list FILE             one line per record, without timestamps
#   usbmon-records.py pairs FILE            "submits completions orphans": completions without a submit
#   usbmon-records.py rawcount FILE         packets in a raw record (link type 252): fragments at offset 0
#   usbmon-records.py qemu QEMU.pcap OURS.pcap
#       checks that every transfer QEMU's own usb-redir pcap= logged appears in ours,
#       in order, with the same direction, endpoint, setup bytes and data (QEMU cuts
#       non-control data at 256 bytes, logs bus 0, control ids 0 and every error as
#       -EREMOTEIO, so those are not compared); prints "matched N of M" and the
#       first mismatch.
import struct
import sys


def frames(path, want_linktype):
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        linktype = struct.unpack(end + "I", hdr[20:24])[0]
        if linktype != want_linktype:
            raise SystemExit("%s: link type %d, not %d" % (path, linktype, want_linktype))
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            caplen = struct.unpack(end + "IIII", rh)[2]
            rec = f.read(caplen)
            if len(rec) < caplen:
                return
            yield rec


def cmd_rawcount(path):
    # 24 bytes of exported-PDU tags, then "UGRW" ver dir flags 0, caps, session,
    # total, offset (big-endian).
    n = 0
    for rec in frames(path, 252):
        if rec[24:28] != b"UGRW":
            raise SystemExit("%s: record without the UGRW prefix" % path)
        if struct.unpack(">I", rec[44:48])[0] == 0:
            n += 1
    print(n)


def records(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            end = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            end = ">"
        else:
            raise SystemExit("%s: not a classic pcap file" % path)
        linktype = struct.unpack(end + "I", hdr[20:24])[0]
        if linktype != 220:
            raise SystemExit("%s: link type %d, not 220" % (path, linktype))
        n = 0
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            _, _, caplen, _ = struct.unpack(end + "IIII", rh)
            rec = f.read(caplen)
            if len(rec) < caplen:
                return
            n += 1
            if len(rec) < 64:
                raise SystemExit("%s: record %d has %d bytes" % (path, n, len(rec)))
            (urb_id, typ, xfer, ep, dev, bus, fsetup, fdata, _sec, _usec, status, length,
             len_cap) = struct.unpack("<QcBBBHccqiiII", rec[:40])
            setup = rec[40:48]
            ndesc = struct.unpack("<I", rec[60:64])[0]
            data = rec[64 + 16 * ndesc:] if xfer == 0 else rec[64:]
            yield {
                "n": n, "id": urb_id, "type": typ.decode(), "xfer": xfer, "ep": ep, "dev": dev,
                "bus": bus, "fsetup": fsetup, "fdata": fdata, "status": status,
                "length": length, "len_cap": len_cap, "setup": setup, "data": data,
            }


def line(r):
    setup = r["setup"].hex() if r["fsetup"] == b"\0" else "-"
    return "%s %d %02x %d %d %d %d %d %s %s" % (
        r["type"], r["id"], r["ep"], r["xfer"], r["dev"], r["bus"], r["status"], r["length"],
        setup, r["data"].hex())


def cmd_list(path):
    for r in records(path):
        print(line(r))


def cmd_pairs(path):
    open_ids = set()
    subs = comps = orphans = 0
    for r in records(path):
        key = (r["bus"], r["dev"], r["id"])
        if r["type"] == "S":
            subs += 1
            open_ids.add(key)
        elif r["type"] in ("C", "E"):
            comps += 1
            if key in open_ids:
                open_ids.discard(key)
            else:
                orphans += 1
    print(subs, comps, orphans)


def cmd_qemu(qpath, opath):
    ours = list(records(opath))
    pos = 0
    matched = total = 0
    first_bad = None
    for q in records(qpath):
        total += 1
        want_data = q["data"]
        cut = len(want_data) < q["length"] or q["xfer"] != 2 and len(want_data) >= 256

        def same(o):
            if o["type"] != q["type"] or o["xfer"] != q["xfer"] or o["ep"] != q["ep"]:
                return False
            if q["fsetup"] == b"\0" and (o["fsetup"] != b"\0" or o["setup"] != q["setup"]):
                return False
            if cut:
                return o["data"][:len(want_data)] == want_data
            return o["data"] == want_data

        j = pos
        while j < len(ours) and not same(ours[j]):
            j += 1
        if j < len(ours):
            matched += 1
            pos = j + 1
        elif first_bad is None:
            first_bad = "QEMU record %d not found after our record %d: %s" % (
                q["n"], pos, line(q)[:200])
    print("matched %d of %d" % (matched, total))
    if first_bad:
        print(first_bad)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "list":
        cmd_list(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "pairs":
        cmd_pairs(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "rawcount":
        cmd_rawcount(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "qemu":
        cmd_qemu(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__ or "usage: usbmon-records.py list|pairs FILE | qemu Q OURS")
