#!/usr/bin/env python3
"""netlab_helper.py - the peers of the netlab smoke tests: plain sockets,
no netlab code, so the tests check netlab against an independent client
and server. Every socket has a timeout; every mode exits non-zero with a
message on failure.

  stream HOST PORT IN OUT   send IN while reading into OUT, shut down the
                            write side after the last byte, read to EOF
  serial HOST PORT IN OUT   send all of IN, shut down the write side, and
                            only then read to EOF into OUT
  greeter PORTFILE COUNTFILE
                            listen on 127.0.0.1:0 (port into PORTFILE),
                            accept one connection, send "hello\\n", shut
                            down the write side, then count the bytes the
                            peer still sends until its EOF (into COUNTFILE)
  late HOST PORT N          read the greeting to EOF, then send N bytes,
                            shut down, and expect EOF
"""
import os
import socket
import sys
import threading

TIMEOUT = 60


def connect(host, port):
    s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, f=None):
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            return n
        n += len(b)
        if f is not None:
            f.write(b)


def stream(host, port, inp, outp):
    s = connect(host, port)
    with open(inp, "rb") as f:
        data = f.read()
    err = []

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send)
    t.start()
    with open(outp, "wb") as f:
        read_all(s, f)
    t.join()
    s.close()
    if err:
        raise err[0]


def serial(host, port, inp, outp):
    s = connect(host, port)
    with open(inp, "rb") as f:
        s.sendall(f.read())
    s.shutdown(socket.SHUT_WR)
    with open(outp, "wb") as f:
        read_all(s, f)
    s.close()


def greeter(portfile, countfile):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(TIMEOUT)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    # Renamed into place, so the test never reads half a port number.
    os.rename(portfile + ".tmp", portfile)
    s, _ = ls.accept()
    s.settimeout(TIMEOUT)
    s.sendall(b"hello\n")
    s.shutdown(socket.SHUT_WR)
    n = read_all(s)
    s.close()
    ls.close()
    with open(countfile, "w") as f:
        f.write("%d\n" % n)


def late(host, port, n):
    s = connect(host, port)
    got = b""
    while True:
        b = s.recv(100)
        if not b:
            break
        got += b
    if got != b"hello\n":
        sys.exit("late: greeting %r, want b'hello\\n'" % got)
    s.sendall(b"x" * int(n))
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":
        sys.exit("late: bytes after the greeter's EOF")
    s.close()


MODES = {"stream": (stream, 4), "serial": (serial, 4),
         "greeter": (greeter, 2), "late": (late, 3)}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MODES or \
            len(sys.argv) - 2 != MODES[sys.argv[1]][1]:
        sys.exit(__doc__)
    try:
        MODES[sys.argv[1]][0](*sys.argv[2:])
    except OSError as e:
        sys.exit("netlab_helper %s: %s" % (sys.argv[1], e))
