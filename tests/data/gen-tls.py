#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# gen-tls.py: one real TLS connection on loopback (python ssl, throwaway self-signed certificate).
"""Usage: gen-tls.py PORT CERT KEY

The server presents CERT/KEY; the client does not verify it (it is a
capture fixture, not a security test). Each side sends one short message
inside TLS, then both close.
"""
import socket
import ssl
import sys
import threading

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(cert, key)
cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cctx.check_hostname = False
cctx.verify_mode = ssl.CERT_NONE
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)


def serve():
    c, _ = srv.accept()
    with sctx.wrap_socket(c, server_side=True) as t:
        assert t.recv(100) == b"REDQ inside TLS"
        t.sendall(b"reply inside TLS")


th = threading.Thread(target=serve)
th.start()
with cctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as t:
    t.sendall(b"REDQ inside TLS")
    assert t.recv(100) == b"reply inside TLS"
th.join()
srv.close()
