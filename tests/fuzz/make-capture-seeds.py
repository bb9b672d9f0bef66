#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-capture-seeds.py: small fuzz seeds for fuzz-capture, cut from the real captures in tests/data.
"""Usage: tests/fuzz/make-capture-seeds.py   (from the source tree; needs editcap for pcapng)

Writes tests/fuzz/corpus/capture/seed-*: the first frames of each real
capture, its link-type variants (NULL, LOOP, RAW, VLAN), and damaged copies
(reordered, duplicated, cut mid-record, mid-stream start, RST connection).
"""
import os
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(HERE, "corpus", "capture")


def read_pcap(name):
    b = open(os.path.join(DATA, name), "rb").read()
    magic, = struct.unpack("<I", b[:4])
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), name
    hdr = bytearray(b[:24])
    frames, pos = [], 24
    while pos + 16 <= len(b):
        sec, frac, cap, wire = struct.unpack("<IIII", b[pos:pos + 16])
        frames.append([sec, frac, wire, b[pos + 16:pos + 16 + cap]])
        pos += 16 + cap
    return hdr, frames


def write(name, hdr, frames, linktype=None):
    h = bytearray(hdr)
    if linktype is not None:
        h[20:24] = struct.pack("<I", linktype)
    out = bytes(h) + b"".join(
        struct.pack("<IIII", s, f, len(d), w) + d for s, f, w, d in frames)
    open(os.path.join(OUT, "seed-" + name), "wb").write(out)
    return out


def relink(frames, header, strip=14, keep=0):
    """Replaces the Ethernet header (or inserts after keep bytes)."""
    out = []
    for s, f, w, d in frames:
        if keep:
            nd = d[:keep] + header + d[keep:]
        else:
            nd = header + d[strip:]
        out.append([s, f, w - len(d) + len(nd), nd])
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    h4, f4 = read_pcap("lo4.pcap")
    first = f4[:12]
    write("lo4-first12.pcap", h4, first)
    write("lo4-rst-conn.pcap", h4, f4[-11:])
    write("lo4-midstream.pcap", h4, f4[8:22])
    re = list(first)
    for i in range(3, len(re) - 1, 2):
        re[i], re[i + 1] = re[i + 1], re[i]
    write("lo4-reordered.pcap", h4, re)
    write("lo4-duplicated.pcap", h4, [x for fr in first for x in (fr, fr)])
    write("lo4-lost-frame.pcap", h4, f4[:5] + f4[6:16])
    full = write("lo4-cut.pcap", h4, first)
    open(os.path.join(OUT, "seed-lo4-cut.pcap"), "wb").write(full[:len(full) - 37])
    write("lo4-null.pcap", h4, relink(first, struct.pack("<I", 2)), 0)
    write("lo4-loop.pcap", h4, relink(first, struct.pack(">I", 2)), 108)
    write("lo4-raw.pcap", h4, relink(first, b""), 101)
    write("lo4-vlan.pcap", h4, relink(first, b"\x81\x00\x00\x2a", keep=12))
    h6, f6 = read_pcap("lo6.pcap")
    write("lo6-first12.pcap", h6, f6[:12])
    write("lo6-raw.pcap", h6, relink(f6[:12], b""), 101)
    for name in ("any4-sll.pcap", "any4-sll2.pcap", "lo4-snap200.pcap"):
        h, f = read_pcap(name)
        write(name.replace(".pcap", "-first12.pcap"), h, f[:12])
    subprocess.run(["editcap", "-r", os.path.join(DATA, "lo4.pcapng"),
                    os.path.join(OUT, "seed-lo4-first12.pcapng"), "1-12"], check=True)


if __name__ == "__main__":
    main()
