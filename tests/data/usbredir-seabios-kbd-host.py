# SPDX-License-Identifier: LGPL-2.1-or-later
# Minimal fake usb-host: announces a full-speed HID keyboard to QEMU's usb-redir,
# answers control requests, and records both byte streams.
import socket, struct, sys, time
port = int(sys.argv[1]); out = sys.argv[2]
CAPS = (1<<1)|(1<<2)|(1<<3)|(1<<4)|(1<<5)|(1<<6)   # cdv filter ack mps 64ids 32bl
h2g = bytearray(); g2h = bytearray()
s = None
for i in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.1)
s.settimeout(0.5)
peer_caps = None
def hdr64(): return peer_caps is not None and (peer_caps & (1<<5))
def send(t, body, pid=0, force32=False):
    if hdr64() and not force32:
        b = struct.pack('<IIQ', t, len(body), pid) + body
    else:
        b = struct.pack('<III', t, len(body), pid) + body
    h2g.extend(b); s.sendall(b)
send(0, b'usbgate capture host'.ljust(64, b'\0') + struct.pack('<I', CAPS), force32=True)
dev = bytes([18,1,0x10,0x01,0,0,0,8, 0x27,0x06, 0x01,0x00, 0x00,0x01, 1,2,0,1])
hid_report = bytes([5,1,9,6,0xa1,1,5,7,0x19,0xe0,0x29,0xe7,0x15,0,0x25,1,0x75,1,0x95,8,0x81,2,0x95,1,0x75,8,0x81,1,0x95,6,0x75,8,0x15,0,0x25,0x65,5,7,0x19,0,0x29,0x65,0x81,0,0xc0])
cfg = bytes([9,2,34,0,1,1,0,0xa0,50, 9,4,0,0,1,3,1,1,0, 9,0x21,0x11,0x01,0,1,0x22,len(hid_report),0, 7,5,0x81,3,8,0,10])
strings = {0: bytes([4,3,9,4]), 1: 'usbgate'.encode('utf-16-le'), 2: 'test keyboard'.encode('utf-16-le')}
buf = bytearray(); sent_dev = False; deadline = time.time() + 12
def ep_info():
    t = [255]*32; iv=[0]*32; itf=[0]*32; mps=[0]*32
    t[0]=0; t[16]=0; mps[0]=8; mps[16]=8
    t[17]=3; iv[17]=10; mps[17]=8
    return bytes(t)+bytes(iv)+bytes(itf)+struct.pack('<32H',*mps)
while time.time() < deadline:
    try:
        d = s.recv(65536)
        if not d: break
        buf.extend(d); g2h.extend(d)
    except socket.timeout:
        pass
    while True:
        hl = 16 if (hdr64() and peer_caps is not None and len(g2h) > 80) else 12
        if peer_caps is None: hl = 12
        if len(buf) < hl: break
        t, ln = struct.unpack_from('<II', buf)
        if len(buf) < hl + ln: break
        pid = struct.unpack_from('<Q' if hl == 16 else '<I', buf, 8)[0]
        body = bytes(buf[hl:hl+ln]); del buf[:hl+ln]
        if t == 0:
            peer_caps = struct.unpack_from('<I', body, 64)[0]
            send(5, ep_info())
            send(4, struct.pack('<I', 1) + bytes([0]+[0]*31) + bytes([3]+[0]*31) + bytes([1]+[0]*31) + bytes([1]+[0]*31))
            send(1, struct.pack('<BBBBHHH', 1, 0, 0, 0, 0x0627, 0x0001, 0x0100))
        elif t == 100:
            ep, req, rt, st, val, idx, length = struct.unpack_from('<BBBBHHH', body)
            data = b''; status = 0
            if rt & 0x80:
                if req == 6 and val >> 8 == 1: data = dev
                elif req == 6 and val >> 8 == 2: data = cfg
                elif req == 6 and val >> 8 == 3: data = strings.get(val & 0xff, b'')
                elif req == 6 and val >> 8 == 0x22: data = hid_report
                elif req == 0: data = b'\0\0'
                else: status = 4
                if data and (val >> 8) == 3: data = bytes([len(data)+ (0 if (val&0xff)==0 else 2), 3]) + (data[2:] if (val&0xff)==0 else data)
                data = data[:length]
            send(100, struct.pack('<BBBBHHH', ep, req, rt, status, val, idx, len(data)) + data, pid)
        elif t == 6:   # set_configuration -> configuration_status (+ ep/interface info again)
            send(5, ep_info())
            send(4, struct.pack('<I', 1) + bytes([0]+[0]*31) + bytes([3]+[0]*31) + bytes([1]+[0]*31) + bytes([1]+[0]*31))
            send(8, bytes([0, body[0]]), pid)
        elif t == 7:
            send(8, bytes([0, 1]), pid)
        elif t == 10:
            send(11, bytes([0, body[0], 0]), pid)
        elif t == 9:
            send(5, ep_info())
            send(4, struct.pack('<I', 1) + bytes([0]+[0]*31) + bytes([3]+[0]*31) + bytes([1]+[0]*31) + bytes([1]+[0]*31))
            send(11, bytes([0, body[0], body[1]]), pid)
        elif t == 15:  # start_interrupt_receiving
            send(17, bytes([0, body[0]]), pid)
            for k in range(3):
                send(103, struct.pack('<BBH', body[0], 0, 8) + bytes([0,0,4+k,0,0,0,0,0]), 1000+k)
        elif t == 16:
            send(17, bytes([0, body[0]]), pid)
        elif t == 103 and not (body[0] & 0x80):
            send(103, struct.pack('<BBH', body[0], 0, 0), pid)
        elif t == 21:  # cancel
            pass
open(out + '.g2h', 'wb').write(g2h); open(out + '.h2g', 'wb').write(h2g)
print('g2h', len(g2h), 'h2g', len(h2g))
