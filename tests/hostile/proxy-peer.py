#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# proxy-peer.py: the two ends of a proxied usbredir session for hostile-proxy.sh: a hostile usb-guest and a usb-host sink.
#
# streams SRCDIR CASE OUTDIR
#     Writes OUTDIR/g2h and OUTDIR/h2g, the bytes each side will send in CASE,
#     made from the real SeaBIOS keyboard session of tests/data
#     (usbredir-seabios-kbd.g2h/.h2g): clean, junk, huge-length, mid-packet,
#     host-huge-length.
# host PORTFILE SEND RECV
#     Listens on a free loopback port (written to PORTFILE), accepts one
#     connection, sends SEND's bytes, and writes what it receives until EOF
#     to RECV.
# guest PORT SEND RECV EXPECT
#     Connects to 127.0.0.1:PORT, sends SEND's bytes in pieces of odd sizes,
#     reads until it has EXPECT bytes (or 20 s pass), closes, and writes what
#     it received to RECV.
# cycles PORT N SRCDIR
#     N times: connect to 127.0.0.1:PORT, send the real guest hello, read the
#     peer's hello (80 bytes), close. Prints the count of hellos received.
# host-flood PORTFILE MIB SRCDIR
#     Accepts one connection and sends the real host hello, then a control
#     packet claiming 0xffffffff bytes followed by MIB MiB of zeros, as fast
#     as the socket takes them; then reads until EOF.
# guest-slow PORT SECONDS SRCDIR OUT MIB
#     Connects, sends the real guest hello, reads nothing for SECONDS, then
#     reads what host-flood MIB sends (or until EOF), closes, and writes
#     "BYTES SHA256" to OUT.
# flood-sha MIB SRCDIR
#     Prints "BYTES SHA256" of what host-flood MIB sends.
import hashlib
import os
import random
import socket
import struct
import sys
import time


def streams(src, case, out):
    g2h = open(os.path.join(src, "tests/data/usbredir-seabios-kbd.g2h"), "rb").read()
    h2g = open(os.path.join(src, "tests/data/usbredir-seabios-kbd.h2g"), "rb").read()
    ghello = g2h[:12 + struct.unpack_from("<I", g2h, 4)[0]]
    hhello = h2g[:12 + struct.unpack_from("<I", h2g, 4)[0]]
    rnd = random.Random(9)
    if case == "clean":
        pass
    elif case == "junk":
        # The real hello, then 64 KiB of noise: nothing after the hello decodes.
        g2h = ghello + bytes(rnd.getrandbits(8) for _ in range(65536))
    elif case == "huge-length":
        # A bulk packet that claims 0xffffffff bytes, followed by 1 MiB of it.
        g2h = ghello + struct.pack("<IIQ", 101, 0xFFFFFFFF, 7) + bytes(1 << 20)
    elif case == "mid-packet":
        # The real session cut in the middle of its second packet.
        g2h = g2h[:len(ghello) + 9]
    elif case == "host-huge-length":
        h2g = hhello + struct.pack("<IIQ", 100, 0xFFFFFFFF, 1) + bytes(200000)
    else:
        raise SystemExit("unknown case " + case)
    open(os.path.join(out, "g2h"), "wb").write(g2h)
    open(os.path.join(out, "h2g"), "wb").write(h2g)


def send_pieces(c, data):
    sizes = [1, 7, 100, 4093, 65536]
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        c.sendall(data[pos:pos + n])
        pos += n
        i += 1


def host(portfile, send, recv):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    open(portfile + ".tmp", "w").write("%d\n" % s.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(60)
    send_pieces(c, open(send, "rb").read())
    got = bytearray()
    try:
        while True:
            piece = c.recv(65536)
            if not piece:
                break
            got += piece
    except OSError:
        pass
    open(recv, "wb").write(got)
    c.close()


def guest(port, send, recv, expect):
    c = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    send_pieces(c, open(send, "rb").read())
    got = bytearray()
    end = time.time() + 20
    c.settimeout(1)
    while len(got) < int(expect) and time.time() < end:
        try:
            piece = c.recv(65536)
        except socket.timeout:
            continue
        if not piece:
            break
        got += piece
    open(recv, "wb").write(got)
    c.close()


def hellos(src):
    g2h = open(os.path.join(src, "tests/data/usbredir-seabios-kbd.g2h"), "rb").read()
    h2g = open(os.path.join(src, "tests/data/usbredir-seabios-kbd.h2g"), "rb").read()
    return (g2h[:12 + struct.unpack_from("<I", g2h, 4)[0]],
            h2g[:12 + struct.unpack_from("<I", h2g, 4)[0]])


def cycles(port, n, src):
    ghello, _ = hellos(src)
    ok = 0
    for _ in range(int(n)):
        c = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        c.sendall(ghello)
        if len(read_n(c, 80)) == 80:
            ok += 1
        c.close()
    print(ok)


def read_n(c, n):
    buf = b""
    while len(buf) < n:
        piece = c.recv(n - len(buf))
        if not piece:
            break
        buf += piece
    return buf


def flood_bytes(hhello, mib):
    yield hhello + struct.pack("<IIQ", 100, 0xFFFFFFFF, 1)
    chunk = bytes(1 << 20)
    for _ in range(int(mib)):
        yield chunk


def host_flood(portfile, mib, src):
    _, hhello = hellos(src)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    open(portfile + ".tmp", "w").write("%d\n" % s.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(120)
    for piece in flood_bytes(hhello, mib):
        c.sendall(piece)
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    c.close()


def guest_slow(port, secs, src, out, mib):
    ghello, hhello = hellos(src)
    expect = sum(len(p) for p in flood_bytes(hhello, mib))
    c = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.sendall(ghello)
    time.sleep(float(secs))
    h = hashlib.sha256()
    n = 0
    c.settimeout(60)
    while n < expect:
        piece = c.recv(1 << 20)
        if not piece:
            break
        h.update(piece)
        n += len(piece)
    c.close()
    open(out, "w").write("%d %s\n" % (n, h.hexdigest()))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "streams" and len(a) == 4:
        streams(a[1], a[2], a[3])
    elif a and a[0] == "host" and len(a) == 4:
        host(a[1], a[2], a[3])
    elif a and a[0] == "guest" and len(a) == 5:
        guest(a[1], a[2], a[3], a[4])
    elif a and a[0] == "cycles" and len(a) == 4:
        cycles(a[1], a[2], a[3])
    elif a and a[0] == "host-flood" and len(a) == 4:
        host_flood(a[1], a[2], a[3])
    elif a and a[0] == "flood-sha" and len(a) == 3:
        _, hh = hellos(a[2])
        h = hashlib.sha256()
        n = 0
        for piece in flood_bytes(hh, a[1]):
            h.update(piece)
            n += len(piece)
        print(n, h.hexdigest())
    elif a and a[0] == "guest-slow" and len(a) == 6:
        guest_slow(a[1], a[2], a[3], a[4], a[5])
    else:
        sys.stderr.write("usage: see the head of proxy-peer.py\n")
        sys.exit(2)
