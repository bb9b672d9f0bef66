#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# spice-seeds.py: turns SPICE sessions recorded against QEMU into tests/fuzz/corpus/spice seeds.
#
# The recordings come from tests/integration/spice-qemu.sh run with
# UG_SPICE_RECORD_DIR=DIR: the probe's --record option writes every byte of
# each channel connection as libusbgate's SPICE client sent and received it
# (inside TLS, for the TLS case), one file per channel and direction. Usage:
#   UG_SPICE_RECORD_DIR=/tmp/rec make check TESTS=tests/integration/spice-qemu.sh
#   tests/fuzz/spice-seeds.py /tmp/rec tests/fuzz/corpus/spice
# Each seed's first byte picks the fuzz target's mode (see fuzz-spice.c).
# The limit-* seeds are hand-made (see the end of main()); crashes found by
# fuzzing are added next to them under a name that says what they broke.
import os
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        return f.read()


def records(c2s, s2c):
    """Mode 0 input: {u8 dir, u16 len, bytes} records, client first."""
    out = bytearray()
    for direction, data in ((0, c2s), (1, s2c)):
        for i in range(0, len(data), 65535):
            chunk = data[i:i + 65535]
            out += struct.pack("<BH", direction, len(chunk)) + chunk
    return bytes(out)


def link_body(stream):
    size = struct.unpack_from("<I", stream, 12)[0]
    return stream[16:16 + size], 16 + size


def mini_messages(data):
    pos = 0
    while pos + 6 <= len(data):
        mtype, size = struct.unpack_from("<HI", data, pos)
        yield mtype, data[pos:pos + 6 + size]
        pos += 6 + size


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    seeds = {}
    c2s = read(os.path.join(src, "usbredir0-c2s.bin"))
    s2c = read(os.path.join(src, "usbredir0-s2c.bin"))
    seeds["conn-usbredir0-keyboard-lz4"] = b"\x00" + records(c2s, s2c)
    seeds["conn-usbredir1-hello-only"] = b"\x00" + records(
        read(os.path.join(src, "usbredir1-c2s.bin")), read(os.path.join(src, "usbredir1-s2c.bin")))
    # The main channel's first 4 KiB each way: link, MAIN_INIT, channel list, the start of PING.
    seeds["conn-main-head"] = b"\x00" + records(
        read(os.path.join(src, "main0-c2s.bin"))[:4096], read(os.path.join(src, "main0-s2c.bin"))[:4096])
    tls = os.path.join(src, "tls")
    if os.path.isdir(tls):
        # Two links on one channel: refused with "need secured", then the TLS one.
        seeds["conn-usbredir0-need-secured-then-tls"] = b"\x00" + records(
            read(os.path.join(tls, "usbredir0-c2s.bin")), read(os.path.join(tls, "usbredir0-s2c.bin")))
    mess, after_mess = link_body(c2s)
    reply, after_reply = link_body(s2c)
    seeds["link-mess-usbredir0"] = b"\x02" + mess
    seeds["link-reply-usbredir0"] = b"\x02" + reply
    # Data messages only: after the link, mechanism and ticket (client), after the result (server).
    c2s_data = c2s[after_mess + 4 + 128:]
    s2c_data = s2c[after_reply + 4:]
    seeds["headers-mini-c2s-step1"] = b"\x01\x00" + c2s_data
    seeds["headers-mini-s2c-step7"] = b"\x01\x0c" + s2c_data
    for mtype, msg in mini_messages(c2s_data):
        if mtype == 102:
            seeds["headers-mini-lz4-config-descriptor"] = b"\x01\xfe" + msg
            break
    # Hand-made from the unit tests' limit cases, not from a session.
    seeds["limit-mini-size-ffffffff"] = (b"\x01\x00" + struct.pack("<HI", 101, 0xffffffff)
                                         + b"\x00" * 8)
    seeds["limit-lz4-claims-4gib"] = (b"\x01\x00" + struct.pack("<HI", 102, 10) + b"\x01"
                                      + struct.pack("<I", 0xffffffff) + b"\x1f\x00\x01\x00\x00")
    seeds["limit-link-reply-impossible-caps"] = (
        b"\x02" + struct.pack("<I", 0) + b"\x30" * 162
        + struct.pack("<III", 0xffffffff, 0xffffffff, 178) + b"\x00" * 8)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(dst, name), "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
