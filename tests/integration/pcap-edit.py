#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# pcap-edit.py: damages a classic pcap of loopback TCP (Ethernet link type) the ways real captures are damaged.
#
#   pcap-edit.py truncate IN OUT         the file cut at 60% of its bytes, inside a record
#   pcap-edit.py drop IN OUT PORT        one data frame from PORT's side dropped in the middle
#                                        of the largest connection (a gap the peer's ACK shows)
#   pcap-edit.py midstream IN OUT        the first 40% of the data frames (SYNs and links) dropped
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    head, pos, recs = blob[:24], 24, []
    while pos + 16 <= len(blob):
        incl = struct.unpack_from("<I", blob, pos + 8)[0]
        recs.append(blob[pos:pos + 16 + incl])
        pos += 16 + incl
    return head, recs


def tcp(rec):
    """(src port, dst port, payload length) of an Ethernet/IPv4/TCP frame, else None."""
    f = rec[16:]
    if len(f) < 14 + 20 or struct.unpack_from(">H", f, 12)[0] != 0x0800:
        return None
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 6:
        return None
    total = struct.unpack_from(">H", ip, 2)[0]
    t = ip[ihl:]
    sport, dport = struct.unpack_from(">HH", t, 0)
    doff = (t[12] >> 4) * 4
    return sport, dport, total - ihl - doff


def write(path, head, recs):
    with open(path, "wb") as f:
        f.write(head)
        for r in recs:
            f.write(r)


def main():
    op, src, dst = sys.argv[1:4]
    head, recs = read(src)
    if op == "truncate":
        with open(src, "rb") as f:
            blob = f.read()
        with open(dst, "wb") as f:
            f.write(blob[: len(blob) * 6 // 10])
        return
    data = [i for i, r in enumerate(recs) if (tcp(r) or (0, 0, 0))[2] > 0]
    if op == "drop":
        port = int(sys.argv[4])
        mine = [i for i in data if tcp(recs[i])[0] == port and tcp(recs[i])[2] >= 20]
        # The connection with the most such frames (the busiest channel).
        by_conn = {}
        for i in mine:
            by_conn.setdefault(tcp(recs[i])[1], []).append(i)
        frames = max(by_conn.values(), key=len)
        victim = frames[len(frames) // 2]
        sys.stderr.write("dropped frame %d (%d bytes from port %d to %d)\n" %
                         (victim + 1, tcp(recs[victim])[2], port, tcp(recs[victim])[1]))
        write(dst, head, recs[:victim] + recs[victim + 1:])
    elif op == "midstream":
        first = data[len(data) * 4 // 10]
        write(dst, head, recs[first:])
    else:
        sys.exit("unknown operation " + op)


if __name__ == "__main__":
    main()
