#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# peer.py: a hostile network peer on 127.0.0.1 for the hostile-input and proxy tests.
#
# serve FILE PORTFILE [spice]
#     Listen on a free loopback port (written to PORTFILE), accept one
#     connection, (with "spice": first read the client's SPICE link message,
#     header and body), send FILE's bytes, then hang up once the client has
#     closed or after 10 seconds. Every connection after the first gets FILE
#     as well, so a client that retries meets the same server.
# send PORT FILE
#     Connect to 127.0.0.1:PORT (retrying for 10 s), send FILE's bytes, read
#     until the peer closes or 5 s pass, close.
# Exit status 0 when at least one client connected (serve) or the connection
# was made (send), 1 otherwise.
import socket
import struct
import sys
import time


def read_exact(c, n):
    buf = b""
    while len(buf) < n:
        piece = c.recv(n - len(buf))
        if not piece:
            break
        buf += piece
    return buf


def serve(path, portfile, spice):
    with open(path, "rb") as f:
        data = f.read()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % s.getsockname()[1])
    import os
    os.rename(portfile + ".tmp", portfile)
    s.settimeout(30)
    served = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            c, _ = s.accept()
        except socket.timeout:
            break
        served += 1
        c.settimeout(10)
        try:
            if spice:
                hdr = read_exact(c, 16)
                if len(hdr) == 16:
                    size = struct.unpack_from("<I", hdr, 12)[0]
                    read_exact(c, min(size, 4096))
            c.sendall(data)
            end = time.time() + 10
            while time.time() < end and c.recv(4096):
                pass
        except OSError:
            pass
        c.close()
        s.settimeout(3)
    return 0 if served else 1


def send(port, path):
    with open(path, "rb") as f:
        data = f.read()
    c = None
    end = time.time() + 10
    while c is None and time.time() < end:
        try:
            c = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        except OSError:
            time.sleep(0.1)
    if c is None:
        return 1
    try:
        c.sendall(data)
        c.settimeout(1)
        end = time.time() + 5
        while time.time() < end:
            try:
                if not c.recv(65536):
                    break
            except socket.timeout:
                continue
    except OSError:
        pass
    c.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "spice"))
    if len(sys.argv) == 4 and sys.argv[1] == "send":
        sys.exit(send(sys.argv[2], sys.argv[3]))
    sys.stderr.write("usage: peer.py serve FILE PORTFILE [spice] | send PORT FILE\n")
    sys.exit(2)
