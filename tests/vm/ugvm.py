#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# ugvm.py: the small helpers of the VM rig that shell does badly (kernel extraction, cpio, QMP).
#
# Subcommands (each prints errors on stderr and exits non-zero on failure):
#   vmlinux VMLINUZ OUT          extract the uncompressed ELF kernel from a bzImage
#   moddeps MODULES_DIR NAME...  print the .ko paths (relative) in load order
#   cpio STAGEDIR OUT            write a reproducible gzip'ed newc cpio of STAGEDIR
#   disk OUT MIB                 write a self-identifying disk image of MIB MiB
#   qmp SOCKET [--timeout S] JSON|@event NAME|HMP-COMMAND...
#                                run QMP commands (JSON objects) or HMP command lines
#                                (anything not starting with '{' or '@') and print the
#                                results; "@event NAME" waits for that QMP event
import gzip
import hashlib
import json
import lzma
import os
import socket
import stat
import subprocess
import sys
import time
import zlib


def die(msg):
    sys.stderr.write("ugvm: %s\n" % msg)
    sys.exit(1)


# ---- vmlinux ---------------------------------------------------------------

def _try_decompress(data, off, kind):
    """Decompresses one stream starting at off; returns bytes or None."""
    try:
        if kind == "xz":
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            return d.decompress(data[off:])
        if kind == "lzma":
            d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
            return d.decompress(data[off:])
        if kind == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return d.decompress(data[off:])
        if kind == "zstd":
            # The Python standard library has no zstd; the zstd tool does.
            p = subprocess.run(["zstd", "-dc"], input=data[off:],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            return p.stdout
    except (lzma.LZMAError, zlib.error, OSError):
        return None
    return None


def cmd_vmlinux(args):
    if len(args) != 2:
        die("usage: vmlinux VMLINUZ OUT")
    src, out = args
    with open(src, "rb") as f:
        data = f.read()
    # A bzImage is a setup stub followed by a compressed ELF; look for each
    # compressor's magic and keep the first candidate that yields an ELF image.
    magics = [("xz", b"\xfd7zXZ\x00"), ("gzip", b"\x1f\x8b\x08"),
              ("zstd", b"\x28\xb5\x2f\xfd"), ("lzma", b"\x5d\x00\x00\x00")]
    for kind, magic in magics:
        off = data.find(magic)
        while off >= 0:
            img = _try_decompress(data, off, kind)
            if img and img[:4] == b"\x7fELF":
                tmp = out + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(img)
                os.replace(tmp, out)
                return
            off = data.find(magic, off + 1)
    die("%s: no compressed ELF kernel found (xz, gzip, zstd, lzma tried)" % src)


# ---- modules ---------------------------------------------------------------

def _modname(path):
    base = os.path.basename(path)
    for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def cmd_moddeps(args):
    if len(args) < 2:
        die("usage: moddeps MODULES_DIR NAME...")
    mdir, names = args[0], args[1:]
    deps = {}
    paths = {}
    with open(os.path.join(mdir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            mod, rest = line.split(":", 1)
            n = _modname(mod)
            paths[n] = mod
            deps[n] = [_modname(d) for d in rest.split()]
    builtin = set()
    try:
        with open(os.path.join(mdir, "modules.builtin")) as f:
            builtin = {_modname(line.strip()) for line in f if line.strip()}
    except OSError:
        pass
    order = []
    seen = set()

    def visit(n, chain):
        if n in seen:
            return
        if n in chain:
            die("module dependency loop at %s" % n)
        for d in deps.get(n, []):
            visit(d, chain + [n])
        seen.add(n)
        order.append(n)

    for name in names:
        n = name.replace("-", "_")
        if n in builtin:
            continue
        if n not in paths:
            die("module %s is neither in modules.dep nor built in" % name)
        visit(n, [])
    for n in order:
        print(paths[n])


# ---- cpio ------------------------------------------------------------------

def _cpio_entry(out, ino, name, mode, data, nlink=1, rdev=(0, 0)):
    namez = name.encode() + b"\0"
    hdr = "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X" % (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(namez), 0)
    out.write(hdr.encode())
    out.write(namez)
    out.write(b"\0" * ((4 - (110 + len(namez)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def cmd_cpio(args):
    if len(args) != 2:
        die("usage: cpio STAGEDIR OUT")
    stage, out = args
    entries = []
    for root, dirs, files in os.walk(stage):
        dirs.sort()
        for n in sorted(dirs + files):
            full = os.path.join(root, n)
            entries.append(os.path.relpath(full, stage))
    entries.sort()
    tmp = out + ".tmp"
    # mtime=0 in the gzip header and in every cpio entry, uid/gid 0, inode
    # numbers from the sorted order: the same inputs give the same bytes.
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=6) as gz:
            ino = 1
            for rel in entries:
                full = os.path.join(stage, rel)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    data = os.readlink(full).encode()
                    mode = stat.S_IFLNK | 0o777
                elif stat.S_ISDIR(st.st_mode):
                    data = b""
                    mode = stat.S_IFDIR | 0o755
                elif stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as f:
                        data = f.read()
                    mode = stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)
                else:
                    die("%s: only files, directories and symlinks go into the cpio" % full)
                _cpio_entry(gz, ino, rel, mode, data,
                            nlink=2 if stat.S_ISDIR(st.st_mode) else 1)
                ino += 1
            _cpio_entry(gz, 0, "TRAILER!!!", 0, b"")
    os.replace(tmp, out)


# ---- disk ------------------------------------------------------------------

def disk_sector(lba, total):
    """The content of one 512-byte sector of the pattern disk."""
    head = ("UGDISK sector=%010d of=%010d\n" % (lba, total)).encode()
    # The filler depends on the sector number, so a misplaced or repeated
    # sector changes the digest of the whole disk.
    fill = hashlib.sha256(b"ugdisk %d" % lba).digest() * 16
    return head + fill[: 512 - len(head)]


def cmd_disk(args):
    if len(args) != 2:
        die("usage: disk OUT MIB")
    out, mib = args[0], int(args[1])
    total = mib * 2048
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        for lba in range(total):
            f.write(disk_sector(lba, total))
    os.replace(tmp, out)


# ---- QMP -------------------------------------------------------------------

class Qmp:
    def __init__(self, path, timeout):
        self.deadline = time.monotonic() + timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        greeting = self.read()
        if "QMP" not in greeting:
            die("QMP: unexpected greeting %r" % greeting)
        self.call({"execute": "qmp_capabilities"})

    def wait_event(self, name):
        """Returns the first event NAME seen since the connection opened."""
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("event") == name:
                    return self.events.pop(i)
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)

    def read(self):
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.1, self.deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except OSError as e:
                die("QMP: %s" % e)
            if not chunk:
                die("QMP: connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                die("QMP %s: %s" % (obj.get("execute"), msg["error"].get("desc")))
            return msg.get("return")


def cmd_qmp(args):
    timeout = 10.0
    if len(args) >= 2 and args[0] == "--timeout":
        timeout = float(args[1])
        args = args[2:]
    if len(args) < 2:
        die("usage: qmp SOCKET [--timeout S] JSON|HMP-COMMAND...")
    try:
        q = Qmp(args[0], timeout)
    except OSError as e:
        die("QMP %s: %s" % (args[0], e))
    for c in args[1:]:
        if c.startswith("@event "):
            ev = q.wait_event(c.split(None, 1)[1])
            print(json.dumps(ev, sort_keys=True))
        elif c.lstrip().startswith("{"):
            ret = q.call(json.loads(c))
            print(json.dumps(ret, sort_keys=True))
        else:
            ret = q.call({"execute": "human-monitor-command",
                          "arguments": {"command-line": c}})
            sys.stdout.write(ret or "")
        sys.stdout.flush()


def main():
    if len(sys.argv) < 2:
        die("usage: ugvm.py vmlinux|moddeps|cpio|disk|qmp ...")
    cmds = {"vmlinux": cmd_vmlinux, "moddeps": cmd_moddeps, "cpio": cmd_cpio,
            "disk": cmd_disk, "qmp": cmd_qmp}
    fn = cmds.get(sys.argv[1])
    if fn is None:
        die("unknown subcommand %s" % sys.argv[1])
    fn(sys.argv[2:])


if __name__ == "__main__":
    main()
