# SPDX-License-Identifier: LGPL-2.1-or-later
# usbredir-hold-relay.py: a TCP relay for usbredir that holds the usb-guest's requests after its hello on the first connection.
#
# usage: usbredir-hold-relay.py LISTEN-PORT TARGET-PORT SECONDS
# On 127.0.0.1. The first connection forwards the guest's hello (the first
# usbredir packet, always with a 12-byte header) to the target and then
# holds every further guest byte, so that the host's device offer reaches
# the guest and the guest's first request stays unanswered: a transfer in
# flight for as long as the test wants. Later connections are relayed as
# they are. Prints "held N" once it holds. Exits after SECONDS.
import select
import socket
import struct
import sys
import time

lport, tport, life = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + life
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport))
ls.listen(4)
first = True
while time.monotonic() < end:
    r, _, _ = select.select([ls], [], [], 0.5)
    if not r:
        continue
    g, _ = ls.accept()
    try:
        h = socket.create_connection(("127.0.0.1", tport), timeout=5)
    except OSError:
        g.close()
        continue
    hold, pending, passed = first, b"", 0
    first = False
    limit = None
    alive = True
    while alive and time.monotonic() < end:
        r, _, _ = select.select([g, h], [], [], 0.5)
        for s in r:
            data = s.recv(65536)
            if not data:
                alive = False
                break
            if s is h:
                g.sendall(data)
                continue
            if not hold:
                h.sendall(data)
                continue
            pending += data
            if limit is None and len(pending) >= 8:
                limit = 12 + struct.unpack_from("<I", pending, 4)[0]
            if limit is not None and passed < limit:
                n = min(limit - passed, len(pending))
                h.sendall(pending[:n])
                pending, passed = pending[n:], passed + n
                if passed == limit:
                    print("held %d" % len(pending), flush=True)
    g.close()
    h.close()
