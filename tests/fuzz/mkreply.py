#!/usr/bin/env python3
"""mkreply.py SRCDIR OUTDIR - writes the seed corpus of fuzz_reply.

Each seed is fuzz_reply's input (frame limit selector, read size, READ
"want", then a server's byte stream) made of real reply frames: the
payloads are the decoders' seeds from SRCDIR (tests/fuzz/corpus, written
by mkcorpus from the shared codec samples) wrapped in the headers a
server sends for the opcodes the mount decodes them for. Deterministic;
run by 'make fuzz-corpus'.
"""
import os
import struct
import sys

MAGIC, VERSION = 0x4D53, 1
F_REPLY, F_MORE, F_NOTICE = 1, 2, 4
OP = dict(LIST=0x11, FETCH=0x13, LOOKUP=0x20, READDIR=0x23, GET=0x25,
          RENAME=0x26, STATFS=0x29, WATCH=0x30, NOTIFY=0x32, GETATTR=0x50,
          READ=0x53, WRITE=0x54, LOCK=0x57)


def hdr(op, flags, rid, payload, status=0):
    return struct.pack(">HBBHHII", MAGIC, VERSION, op, flags, status, rid,
                       len(payload)) + payload


def main():
    src, out = sys.argv[1], sys.argv[2]

    def pay(name):
        with open(os.path.join(src, name), "rb") as f:
            return f.read()[1:]

    attr, data = pay("07-attr_rep"), pay("12-data_rep")
    lst, lst0 = pay("09-list_rep"), pay("09-list_rep-empty")
    seeds = {
        "attr": hdr(OP["GETATTR"], F_REPLY, 1, attr),
        "lookup-write": hdr(OP["LOOKUP"], F_REPLY, 2, attr) +
        hdr(OP["WRITE"], F_REPLY, 3, attr),
        "read": hdr(OP["READ"], F_REPLY, 4, data),
        "fetch-get": hdr(OP["FETCH"], F_REPLY, 5, data) +
        hdr(OP["GET"], F_REPLY, 6, data),
        "readdir-more": hdr(OP["READDIR"], F_REPLY | F_MORE, 7, lst) +
        hdr(OP["READDIR"], F_REPLY, 7, lst0),
        "list": hdr(OP["LIST"], F_REPLY, 8, lst),
        "change": hdr(OP["RENAME"], F_REPLY, 9, pay("14-change_rep")),
        "statfs": hdr(OP["STATFS"], F_REPLY, 10, pay("21-statfs_rep")),
        "watch": hdr(OP["WATCH"], F_REPLY, 11, pay("22-watch_rep")),
        "notify": hdr(OP["NOTIFY"], F_NOTICE, 0, pay("23-notify")) +
        hdr(OP["NOTIFY"], F_NOTICE, 0, pay("23-notify-reset")),
        "lock": hdr(OP["LOCK"], F_REPLY, 12, pay("33-lock_rep")) +
        hdr(OP["LOCK"], F_REPLY, 13, pay("33-lock_rep-none")),
        "error": hdr(OP["READ"], F_REPLY, 14, pay("24-error_rep"),
                     status=2),
    }
    for name, stream in sorted(seeds.items()):
        for limit, chunk in ((0, 255), (2, 6)):
            head = bytes([limit, chunk]) + struct.pack("<I", 4096)
            path = os.path.join(out, "reply-%s-%d" % (name, chunk + 1))
            with open(path, "wb") as f:
                f.write(head + stream)


if __name__ == "__main__":
    main()
