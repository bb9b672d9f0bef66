#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# gen-traffic.py: real TCP connections on loopback, recording the exact bytes sent each way.
"""Usage: gen-traffic.py ADDR PORT OUT.streams

Runs three connections one after the other between a client and a server in
this process, with TCP_NODELAY and many small writes so that each stream is
spread over many segments:
  1. starts like raw usbredir (a hello each way), then random chunks, FIN both ways;
  2. starts like SPICE ("REDQ" link header), then random chunks, FIN both ways;
  3. plain text, the server ends with FIN, the client aborts with RST.
OUT.streams gets, per connection, a line
  "conn N c2s LEN s2c LEN close fin|rst\\n"
followed by the LEN bytes the client sent, then the LEN bytes the server sent.
"""
import random
import socket
import struct
import sys
import threading
import time


def hello(version):
    v = version.encode().ljust(64, b"\0")
    caps = struct.pack("<I", 0xFF)
    return struct.pack("<III", 0, len(v) + len(caps), 0) + v + caps


def chunks(rng, first, n, maxlen):
    out = [first] if first else []
    for _ in range(n):
        out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, maxlen))))
    return out


def reader(sock, sink):
    while True:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:  # the RST of connection 3
            return
        if not b:
            return
        sink.append(b)


def talk(sock, parts, rst=False):
    """Sends parts (with small pauses), half-closes, reads until EOF."""
    got = []
    t = threading.Thread(target=reader, args=(sock, got))
    t.start()
    for p in parts:
        sock.sendall(p)
        time.sleep(0.001)
    if rst:
        t.join()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return b"".join(got)
    sock.shutdown(socket.SHUT_WR)
    t.join()
    sock.close()
    return b"".join(got)


def main():
    addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    rng = random.Random(20261125)
    plans = [
        (chunks(rng, hello("usbgate-test guest 0.1"), 80, 300),
         chunks(rng, hello("usbgate-test host 0.1"), 80, 300), False),
        (chunks(rng, b"REDQ" + struct.pack("<III", 2, 2, 26), 20, 200),
         chunks(rng, b"REDQ" + struct.pack("<III", 2, 2, 186), 20, 200), False),
        ([b"GET / HTTP/1.0\r\n\r\n"], [b"HTTP/1.0 200 OK\r\n\r\n", b"bye\n"], True),
    ]
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    with open(out, "wb") as f:
        for n, (c_parts, s_parts, rst) in enumerate(plans, 1):
            result = {}

            def serve():
                conn, _ = srv.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                got = []
                t = threading.Thread(target=reader, args=(conn, got))
                t.start()
                for p in s_parts:
                    conn.sendall(p)
                    time.sleep(0.001)
                conn.shutdown(socket.SHUT_WR)
                t.join()
                conn.close()
                result["server_got"] = b"".join(got)

            st = threading.Thread(target=serve)
            st.start()
            cli = socket.create_connection((addr, port))
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client_got = talk(cli, c_parts, rst)
            st.join()
            c2s, s2c = b"".join(c_parts), b"".join(s_parts)
            # What arrived is what was sent: the recording is the truth.
            assert result["server_got"] == c2s and client_got == s2c, "stream mismatch"
            f.write(b"conn %d c2s %d s2c %d close %s\n"
                    % (n, len(c2s), len(s2c), b"rst" if rst else b"fin"))
            f.write(c2s)
            f.write(s2c)
            time.sleep(0.05)
    srv.close()


if __name__ == "__main__":
    main()
