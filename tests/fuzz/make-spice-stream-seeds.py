#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-spice-stream-seeds.py: writes tests/fuzz/corpus/spice-stream from the SPICE codec's real-session seeds.
#
# The conn-* seeds of tests/fuzz/corpus/spice are channel connections that
# libusbgate's SPICE client recorded against QEMU 7.2's spice-server (see
# tests/fuzz/spice-seeds.py): a mode byte, then {u8 direction, u16 length,
# bytes} records. fuzz-spice-stream reads the same records as operations
# (bit 1 of the op byte: a gap, bit 2: end, bit 3: one byte per feed), so the
# real sessions are taken over as they are and then damaged the ways a
# capture is: a gap inside the data, a start in the middle, one-byte feeds,
# a cut end. The tls-* and limit-* seeds are hand-made.
# Usage: tests/fuzz/make-spice-stream-seeds.py SRCDIR
import os
import struct
import sys


def records(blob):
    out, pos = [], 0
    while pos + 3 <= len(blob):
        op, n = struct.unpack_from("<BH", blob, pos)
        pos += 3
        out.append([op, blob[pos:pos + n]])
        pos += n
    return out


def pack(recs):
    out = bytearray()
    for op, data in recs:
        if op & 2:
            out += struct.pack("<BH", op, len(data) if isinstance(data, bytes) else data)
        else:
            out += struct.pack("<BH", op, len(data)) + data
    return bytes(out)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "."
    inp = os.path.join(src, "tests/fuzz/corpus/spice")
    outd = os.path.join(src, "tests/fuzz/corpus/spice-stream")
    os.makedirs(outd, exist_ok=True)
    seeds = {}
    for name in sorted(os.listdir(inp)):
        if not name.startswith("conn-"):
            continue
        with open(os.path.join(inp, name), "rb") as f:
            blob = f.read()
        recs = records(blob[1:])
        seeds["real-" + name[5:]] = pack(recs)
        if name == "conn-usbredir0-keyboard-lz4":
            # Records whose bytes split to one byte per feed.
            seeds["real-keyboard-lz4-bytewise"] = pack([[op | 8, d] for op, d in recs])
            # A gap in the middle of the client's data: the bytes replaced by a gap op.
            c = [r for r in recs if r[0] == 0]
            big = max(range(len(recs)), key=lambda i: len(recs[i][1]) if recs[i][0] == 0 else 0)
            op, d = recs[big]
            cut = len(d) // 2
            g = recs[:big] + [[op, d[:cut]], [op | 2, 40], [op, d[cut + 40:]]] + recs[big + 1:]
            seeds["real-keyboard-lz4-gap"] = pack(g)
            # Mid-stream: both directions without their first 300 bytes.
            m, dropped = [], [0, 0]
            for op, d in recs:
                side = op & 1
                if dropped[side] < 300:
                    k = min(300 - dropped[side], len(d))
                    dropped[side] += k
                    d = d[k:]
                if d:
                    m.append([op, d])
            seeds["real-keyboard-lz4-midstream"] = pack(m)
            # Cut short, then both ends.
            t = pack(recs)
            seeds["real-keyboard-lz4-truncated"] = t[: len(t) * 2 // 3] + bytes([4, 0, 0, 5, 0, 0])
            del c
    seeds["tls-client-hello"] = pack([[0, bytes([0x16, 3, 1, 0, 5, 1, 0, 0, 1, 3])],
                                      [1, bytes([0x16, 3, 3, 0, 2, 2, 0])]])
    link = b"REDQ" + struct.pack("<III", 2, 2, 26) + struct.pack("<IBBIII", 0, 9, 0, 0x40000000, 0, 18)
    seeds["limit-impossible-cap-count"] = pack([[0, link]])
    for name, data in seeds.items():
        with open(os.path.join(outd, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
