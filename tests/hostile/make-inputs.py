#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-inputs.py: derives the hostile inputs of tests/hostile/ from the real captures in tests/data/.
#
# Every file written here is a real capture or a real session (tests/data/,
# tests/fuzz/corpus/spice/) damaged in one named way: cut, a field flipped, a
# length rewritten, a link type changed, frames dropped. SOURCES (written next
# to the inputs) says for each file where it came from and what was done, so
# a failing row can be traced back to the session it was made from. The
# output is deterministic; the generated files are committed, and running
# this again must leave `git status` clean.
# Usage: tests/hostile/make-inputs.py [SRCDIR]
import os
import struct
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
DATA = os.path.join(SRC, "tests", "data")
OUT = os.path.join(SRC, "tests", "hostile", "inputs")
sources = []


def read(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def write(name, data, origin):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    sources.append("%s: %s" % (name, origin))


# ---- classic pcap -------------------------------------------------------------

def pcap_split(blob):
    """Returns (file header, [records]) of a little-endian classic pcap."""
    hdr, recs, off = blob[:24], [], 24
    while off + 16 <= len(blob):
        cap = struct.unpack_from("<I", blob, off + 8)[0]
        recs.append(bytearray(blob[off:off + 16 + cap]))
        off += 16 + cap
    return bytearray(hdr), recs


def pcap_join(hdr, recs):
    return bytes(hdr) + b"".join(bytes(r) for r in recs)


def tcp_payload_off(rec):
    """Offset of the TCP payload inside an Ethernet/IPv4/TCP pcap record."""
    ip = 16 + 14
    ihl = (rec[ip] & 0x0F) * 4
    tcp = ip + ihl
    doff = (rec[tcp + 12] >> 4) * 4
    return tcp + doff


def tcp_payload(rec):
    return bytes(rec[tcp_payload_off(rec):])


def frame(seq, ack, sport, dport, payload, flags=0x18, ts=0):
    """An Ethernet/IPv4/TCP record on 127.0.0.1 (checksums 0: nobody checks)."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + tcp
    eth = b"\0" * 12 + b"\x08\x00" + ip
    return bytearray(struct.pack("<IIII", ts, 0, len(eth), len(eth)) + eth)


def conn_pcap(hdr, records, cport=40001, sport=5930):
    """A pcap of one TCP connection carrying the {dir, bytes} records of a
    recorded SPICE channel connection (dir 0 client->server)."""
    seq = [1000, 5000]
    out = [frame(seq[0] - 1, 0, cport, sport, b"", 0x02),
           frame(seq[1] - 1, seq[0], sport, cport, b"", 0x12),
           frame(seq[0], seq[1], cport, sport, b"", 0x10)]
    for d, data in records:
        src, dst = (cport, sport) if d == 0 else (sport, cport)
        for i in range(0, len(data), 1400):
            piece = data[i:i + 1400]
            out.append(frame(seq[d], seq[1 - d], src, dst, piece))
            seq[d] += len(piece)
    out.append(frame(seq[0], seq[1], cport, sport, b"", 0x11))
    out.append(frame(seq[1], seq[0] + 1, sport, cport, b"", 0x11))
    return pcap_join(hdr, out)


def spice_records(name):
    """The {direction, bytes} records of a recorded SPICE connection seed."""
    with open(os.path.join(SRC, "tests", "fuzz", "corpus", "spice", name), "rb") as f:
        blob = f.read()
    out, pos = [], 1
    while pos + 3 <= len(blob):
        d, n = struct.unpack_from("<BH", blob, pos)
        pos += 3
        out.append((d & 1, blob[pos:pos + n]))
        pos += n
    return out


K = read("usbredir-kbd.pcap")
khdr, krecs = pcap_split(K)
KSRC = "tests/data/usbredir-kbd.pcap"
# Frame 4 (index 3) is the guest's hello, frame 6 (index 5) the host's hello,
# frame 8 (index 7) the host's interface_info (ep_info and device_connect follow).
assert tcp_payload(krecs[3])[:4] == struct.pack("<I", 0)
assert tcp_payload(krecs[5])[:4] == struct.pack("<I", 0)
EPI = 7
assert struct.unpack_from("<I", tcp_payload(krecs[EPI]), 0)[0] == 4  # interface_info

write("empty.pcap", b"", "nothing at all")
write("junk.pcap", b"this is not a capture file\n" * 4, "text, no capture magic")
write("header-only.pcap", bytes(khdr), KSRC + ": its 24-byte file header alone")
write("cut-record-header.pcap", K[:24 + 10], KSRC + ": cut 10 bytes into the first record header")
off = 24 + sum(len(r) for r in krecs[:EPI]) + 16 + 60
write("cut-record-data.pcap", K[:off], KSRC + ": cut 60 bytes into frame 8's data")

b = bytearray(K)
b[0:4] = b"\xde\xad\xbe\xef"
write("bad-magic.pcap", bytes(b), KSRC + ": magic replaced by deadbeef")
b = bytearray(K)
struct.pack_into("<HH", b, 4, 9, 0)
write("version-9.pcap", bytes(b), KSRC + ": major version 9")
b = bytearray(K)
struct.pack_into("<I", b, 16, 0xFFFFFFFF)
write("snaplen-ffffffff.pcap", bytes(b), KSRC + ": snaplen 0xffffffff")
h, r = pcap_split(K)
struct.pack_into("<I", r[EPI], 8, 0xFFFFFFFF)
write("caplen-ffffffff.pcap", pcap_join(h, r), KSRC + ": frame 8 caplen 0xffffffff")
h, r = pcap_split(K)
struct.pack_into("<I", r[EPI], 8, 300000)
write("caplen-300000.pcap", pcap_join(h, r), KSRC + ": frame 8 caplen 300000 (over the 262144 limit)")
h, r = pcap_split(K)
for x in r:
    struct.pack_into("<I", x, 8, 0)
    del x[16:]
write("caplen-zero.pcap", pcap_join(h, r), KSRC + ": every record with caplen 0 (no bytes kept)")
h, r = pcap_split(K)
struct.pack_into("<I", h, 20, 220)
write("linktype-usbmon.pcap", pcap_join(h, r), KSRC + ": link type rewritten to 220 (usbmon)")
h, r = pcap_split(K)
struct.pack_into("<I", h, 20, 147)
write("linktype-147.pcap", pcap_join(h, r), KSRC + ": link type rewritten to 147 (USER0)")

# ---- pcapng -------------------------------------------------------------------

N = read("lo4.pcapng")
NSRC = "tests/data/lo4.pcapng"
shb_len = struct.unpack_from("<I", N, 4)[0]
idb_len = struct.unpack_from("<I", N, shb_len + 4)[0]
first = shb_len + idb_len
write("pcapng-shb-only.pcapng", N[:shb_len], NSRC + ": its section header block alone")
write("pcapng-cut.pcapng", N[:first + 40], NSRC + ": cut 40 bytes into the first packet block")
b = bytearray(N)
struct.pack_into("<I", b, first + 4, 0xFFFFFFFF)
write("pcapng-blocklen-ffffffff.pcapng", bytes(b[:first + 4096]), NSRC + ": first packet block's total length 0xffffffff, file cut 4096 bytes after it starts")
b = bytearray(N)
struct.pack_into("<I", b, first + 20, 0xFFFFFFFF)
write("pcapng-caplen-ffffffff.pcapng", bytes(b[:first + 4096]), NSRC + ": first packet block's captured length 0xffffffff, file cut 4096 bytes after it starts")

# ---- usbredir inside the capture ------------------------------------------------


def with_payload_edit(idx, pos, fmt, value, what):
    h, r = pcap_split(K)
    p = tcp_payload_off(r[idx])
    struct.pack_into(fmt, r[idx], p + pos, value)
    return pcap_join(h, r)


write("usbredir-len-ffffffff.pcap", with_payload_edit(EPI, 4, "<I", 0xFFFFFFFF, ""),
      KSRC + ": frame 8, interface_info's usbredir length 0xffffffff")
write("usbredir-len-zero.pcap", with_payload_edit(EPI, 4, "<I", 0, ""),
      KSRC + ": frame 8, interface_info's usbredir length 0 (its type header needs 132)")
write("usbredir-type-unknown.pcap", with_payload_edit(EPI, 0, "<I", 0x7777, ""),
      KSRC + ": frame 8, interface_info's type rewritten to 0x7777")
write("hello-len-ffffffff.pcap", with_payload_edit(3, 4, "<I", 0xFFFFFFFF, ""),
      KSRC + ": frame 4, the guest hello's length 0xffffffff")
# The hellos' caps word sits after the 12-byte header and the 64-byte version.
write("hello-no-64bit-ids.pcap", with_payload_edit(5, 12 + 64, "<I", 0xDF, ""),
      KSRC + ": frame 6, the host hello's caps without bit 5 (usb_redir_cap_64bits_ids): id-width mismatch")
h, r = pcap_split(K)
write("no-hellos.pcap", pcap_join(h, r[:3] + r[6:]),
      KSRC + ": frames 4-6 (both hellos) dropped")
# A session that ends inside a packet: frame 8 keeps only its first 100
# payload bytes (ip/tcp lengths fixed up so the frame is consistent) and
# nothing follows it.
h, r = pcap_split(K)
x = bytearray(r[EPI])
p = tcp_payload_off(x)
cut = len(x) - (p + 100)
del x[p + 100:]
struct.pack_into("<II", x, 8, len(x) - 16, len(x) - 16)
struct.pack_into(">H", x, 16 + 14 + 2, struct.unpack_from(">H", x, 16 + 14 + 2)[0] - cut)
write("session-ends-mid-packet.pcap", pcap_join(h, r[:EPI] + [x]),
      KSRC + ": frames 1-8, frame 8 cut to 100 payload bytes (ends inside interface_info's data)")

# ---- SPICE --------------------------------------------------------------------

recs = spice_records("conn-usbredir0-keyboard-lz4")
write("spice-usbredir.pcap", conn_pcap(khdr, recs),
      "tests/fuzz/corpus/spice/conn-usbredir0-keyboard-lz4 (a real QEMU 7.2 usbredir channel) as TCP frames")
bad = [(d, (b"REDX" + x[4:]) if i == 0 else x) for i, (d, x) in enumerate(recs)]
write("spice-bad-magic.pcap", conn_pcap(khdr, bad),
      "spice-usbredir.pcap with the client's \"REDQ\" rewritten to \"REDX\"")

def spice_edit(recs, fn):
    """Applies fn(direction, stream) -> stream to the concatenated byte stream
    of each direction and cuts it back into the original record sizes."""
    streams = [bytearray(), bytearray()]
    for d, x in recs:
        streams[d] += x
    streams = [bytearray(fn(d, streams[d])) for d in (0, 1)]
    pos, out = [0, 0], []
    for d, x in recs:
        out.append((d, bytes(streams[d][pos[d]:pos[d] + len(x)])))
        pos[d] += len(x)
    return out


def spice_messages(d, st):
    """(offset, type, size) of every mini-header message after the link of
    direction d (0: link message, auth mechanism and ticket; 1: link reply and
    link result)."""
    off = 16 + struct.unpack_from("<I", st, 12)[0]
    off += 4 + 128 if d == 0 else 4
    out = []
    while off + 6 <= len(st):
        t, n = struct.unpack_from("<HI", st, off)
        out.append((off, t, n))
        off += 6 + n
    return out


def lz4_huge(d, st):
    for off, t, n in spice_messages(d, st):
        if t == 102:
            struct.pack_into("<I", st, off + 6 + 1, 0xFFFFFFFF)
            break
    return st


def lz4_zero(d, st):
    for off, t, n in spice_messages(d, st):
        if t == 102:
            struct.pack_into("<I", st, off + 6 + 1, 0)
            break
    return st


def size_huge(d, st):
    if d == 1:
        for off, t, n in spice_messages(d, st):
            if t == 101 or t == 102:
                struct.pack_into("<I", st, off + 2, 0xFFFFFFFF)
                break
    return st


assert any(t == 102 for d in (0, 1) for _, t, _ in
           spice_messages(d, b"".join(x for dd, x in recs if dd == d)))
write("spice-lz4-size-ffffffff.pcap", conn_pcap(khdr, spice_edit(recs, lz4_huge)),
      "spice-usbredir.pcap with the first SPICEVMC_COMPRESSED_DATA of each direction claiming 0xffffffff uncompressed bytes")
write("spice-lz4-size-zero.pcap", conn_pcap(khdr, spice_edit(recs, lz4_zero)),
      "spice-usbredir.pcap with the first SPICEVMC_COMPRESSED_DATA of each direction claiming 0 uncompressed bytes")
write("spice-msg-size-ffffffff.pcap", conn_pcap(khdr, spice_edit(recs, size_huge)),
      "spice-usbredir.pcap with the server's first SPICEVMC message claiming 0xffffffff bytes (mini header)")

# The SPICE server replies a hostile usbreplay --spice meets: the real link
# reply of tests/fuzz/corpus/spice/conn-main-head, damaged.
main = spice_records("conn-main-head")
reply = bytearray(main[1][1][:16 + struct.unpack_from("<I", main[1][1], 12)[0]])
RSRC = "tests/fuzz/corpus/spice/conn-main-head: the server's link reply"
assert reply[:4] == b"REDQ"
write("spice-reply-real.bin", bytes(reply), RSRC + ", unchanged (then the server hangs up)")
b = bytearray(reply)
b[0:4] = b"QDER"
write("spice-reply-bad-magic.bin", bytes(b), RSRC + ", magic \"QDER\"")
b = bytearray(reply)
struct.pack_into("<I", b, 4, 9)
write("spice-reply-major-9.bin", bytes(b), RSRC + ", major version 9")
b = bytearray(reply)
struct.pack_into("<I", b, 12, 0xFFFFFFFF)
write("spice-reply-size-ffffffff.bin", bytes(b), RSRC + ", size 0xffffffff")
b = bytearray(reply)
struct.pack_into("<I", b, 12, 0)
write("spice-reply-size-zero.bin", bytes(b[:16]), RSRC + ", size 0 and no body")
# Body: error u32, 162-byte key, num_common_caps u32, num_channel_caps u32, caps_offset u32.
b = bytearray(reply)
struct.pack_into("<I", b, 16 + 4 + 162, 0xFFFFFFFF)
write("spice-reply-common-caps-ffffffff.bin", bytes(b), RSRC + ", num_common_caps 0xffffffff")
b = bytearray(reply)
struct.pack_into("<I", b, 16 + 4 + 162 + 4, 0x40000000)
write("spice-reply-channel-caps-huge.bin", bytes(b), RSRC + ", num_channel_caps 0x40000000")
b = bytearray(reply)
struct.pack_into("<I", b, 16 + 4 + 162 + 8, 0xFFFFFFF0)
write("spice-reply-caps-offset-huge.bin", bytes(b), RSRC + ", caps_offset 0xfffffff0")
b = bytearray(16 + len(reply) - 16)
b[:16] = reply[:16]
struct.pack_into("<I", b, 16, 5)
write("spice-reply-need-secured.bin", bytes(b), RSRC + ", zero-filled with error 5 (need secured: a TLS-only channel)")
b = bytearray(16 + len(reply) - 16)
b[:16] = reply[:16]
struct.pack_into("<I", b, 16, 7)
write("spice-reply-permission-denied.bin", bytes(b), RSRC + ", zero-filled with error 7 (permission denied)")
b = bytearray(reply)
b[16 + 4:16 + 4 + 162] = b"\xff" * 162
write("spice-reply-bad-key.bin", bytes(b), RSRC + ", its public key overwritten with 0xff")
write("spice-reply-cut.bin", bytes(reply[:100]), RSRC + ", cut after 100 bytes (then the server hangs up)")

# ---- usbreplay captures ----------------------------------------------------------

R = read("kbd.raw.pcap")
RS = "tests/data/kbd.raw.pcap"
rh, rr = pcap_split(R)
write("replay-raw-cut.pcap", R[:len(R) - 700], RS + ": the last 700 bytes cut off (ends inside a record)")
h = bytearray(rh)
struct.pack_into("<I", h, 20, 1)
write("replay-raw-linktype-1.pcap", pcap_join(h, rr), RS + ": link type rewritten to 1 (Ethernet)")
write("replay-raw-hellos-only.pcap", pcap_join(rh, rr[:2]), RS + ": the two hello records alone (no device)")
h, r = pcap_split(R)
struct.pack_into("<I", r[4], 8, 0xFFFFFFFF)
write("replay-raw-caplen-ffffffff.pcap", pcap_join(h, r), RS + ": record 5 caplen 0xffffffff")
U = read("kbd.usbmon.pcap")
US = "tests/data/kbd.usbmon.pcap"
uh, ur = pcap_split(U)
# usbmon records: type at 8, xfer_type 9, setup 40..48; GET_DESCRIPTOR is request 6.
keep = [x for x in ur if not (x[16 + 9] == 2 and x[16 + 40 + 1] == 6)]
write("replay-usbmon-no-descriptors.pcap", pcap_join(uh, keep),
      US + ": every GET_DESCRIPTOR control record removed (%d of %d left)" % (len(keep), len(ur)))
write("replay-usbmon-cut.pcap", U[:len(U) // 2], US + ": cut in half")
h, r = pcap_split(U)
struct.pack_into("<I", r[1], 16 + 36, 0xFFFFFFFF)
write("replay-usbmon-lencap-ffffffff.pcap", pcap_join(h, r), US + ": record 2's usbmon len_cap 0xffffffff")

# ---- a hostile usb-guest (usbreplay --listen, device mode) -----------------------

G = read("usbredir-seabios-kbd.g2h")
GS = "tests/data/usbredir-seabios-kbd.g2h"
ghello = G[:12 + struct.unpack_from("<I", G, 4)[0]]
write("guest-len-ffffffff.bin", ghello + struct.pack("<IIQ", 100, 0xFFFFFFFF, 1) + bytes(65536),
      GS + ": QEMU's hello, then a control packet claiming 0xffffffff bytes and 64 KiB of zeros")
write("guest-noise.bin", ghello + bytes((i * 2654435761 >> 13) & 0xFF for i in range(65536)),
      GS + ": QEMU's hello, then 64 KiB of noise")
write("guest-len-zero.bin", ghello + struct.pack("<IIQ", 100, 0, 1) * 100,
      GS + ": QEMU's hello, then 100 control packets of length 0 (no 8-byte type header)")
write("guest-type-unknown.bin", ghello + struct.pack("<IIQ", 0x7777, 4, 1) + b"abcd",
      GS + ": QEMU's hello, then a packet of unknown type 0x7777")
write("guest-cut.bin", G[:len(ghello) + 20],
      GS + ": the real guest stream cut 20 bytes after its hello (inside a packet)")

# ---- usbredirsrv configuration files -------------------------------------------

def text(name, body, origin):
    write(name, body.encode(), origin)


EX = "usbredirsrv/usbredirsrv.conf.example"
text("conf-binary.conf", "\0\x01\x02[export\xff]\n", "binary junk, no key file")
text("conf-unknown-key.conf", "[export a]\ndevice=46f4:0001\nlisten=127.0.0.1:4000\ncolour=blue\n",
     EX + "-like, with an unknown key")
text("conf-no-device.conf", "[export a]\nlisten=127.0.0.1:4000\n", EX + "-like, export without device=")
text("conf-listen-and-connect.conf",
     "[export a]\ndevice=46f4:0001\nlisten=127.0.0.1:4000\nconnect=127.0.0.1:4001\n",
     EX + "-like, both listen= and connect=")
text("conf-bad-selector.conf", "[export a]\ndevice=zzzz:qqqq\nlisten=127.0.0.1:4000\n",
     EX + "-like, device=zzzz:qqqq")
text("conf-bad-port.conf", "[export a]\ndevice=46f4:0001\nlisten=127.0.0.1:4294967297\n",
     EX + "-like, port 4294967297")
text("conf-verbose-99.conf", "[usbredirsrv]\nverbose=99\n[export a]\ndevice=46f4:0001\nlisten=127.0.0.1:4000\n",
     EX + "-like, verbose=99")
text("conf-unknown-group.conf", "[exports]\ndevice=46f4:0001\n", "a group usbredirsrv does not know")
text("conf-huge-value.conf", "[export a]\ndevice=" + "a" * (1 << 16) + "\nlisten=127.0.0.1:4000\n",
     EX + "-like, a 64 KiB device= value")
text("conf-bad-filter.conf", "[export a]\ndevice=46f4:0001\nlisten=127.0.0.1:4000\nfilter=0x08,zz,-1\n",
     EX + "-like, filter=0x08,zz,-1")

with open(os.path.join(OUT, "SOURCES"), "w") as f:
    f.write("# Written by tests/hostile/make-inputs.py: each input and where it came from.\n")
    for line in sorted(sources):
        f.write(line + "\n")
