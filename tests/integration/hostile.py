"""hostile - a fake mstored that lies, for mount.mstore's distrust tests.

It speaks just enough of mstore-protocol(7) to let mount.mstore connect
(a HELLO reply, no AUTH) and browse a tiny tree:

    /             directory
    /f            ordinary file, 11 bytes ("hello file\\n")
    /u/new/1.new  message, 11 bytes
    /u/cur/1.cur:2,S  message, 11 bytes
    /u/tmp        empty directory

Every request is answered from that tree unless the test installed an
override for its opcode (Fake.hook); an override returns the frames to
send, so it can lie about lengths, counts, names, ids and flags. Notices
go out with Fake.notify_raw. Listens on 127.0.0.1 only; one thread per
connection; every request seen is recorded in Fake.seen.
"""
import os
import socket
import struct
import threading

HDR = struct.Struct(">HBBHHII")
MAGIC = 0x4D53
F_REPLY, F_MORE, F_NOTICE = 1, 2, 4

OP = dict(HELLO=0x01, AUTH=0x02, PING=0x03, DATA=0x04, DELIVER=0x10,
          LIST=0x11, STAT=0x12, FETCH=0x13, SETINFO=0x14, EXPUNGE=0x15,
          LOOKUP=0x20, MKDIR=0x21, RMDIR=0x22, READDIR=0x23, PUT=0x24,
          GET=0x25, RENAME=0x26, UNLINK=0x27, SETATTR=0x28, STATFS=0x29,
          WATCH=0x30, UNWATCH=0x31, NOTIFY=0x32, ADMIN=0x40, GETATTR=0x50,
          OPEN=0x51, CLOSE=0x52, READ=0x53, WRITE=0x54, FSETATTR=0x55,
          LINK=0x56, LOCK=0x57)
OPNAME = {v: k for k, v in OP.items()}

T_DIR, T_FILE, T_MSG = 1, 2, 3
EV_ADD, EV_REMOVE, EV_CHANGE, EV_RESET = 1, 2, 3, 4
S_ENOENT, S_EIO = 2, 5
FEAT_WATCH = 2
T0 = 1_700_000_000 * 10**9

BODY = b"hello body\n"
FBODY = b"hello file\n"


def u16s(b):
    return struct.pack(">H", len(b)) + b


# mst_attr is 65 bytes; before atime was added (commit bde35a9 and
# older) it was 57. HOSTILE_ATTR_LEN=57 lets the same cases run against
# such an old mount.mstore, to show they catch its bugs.
ATTR_LEN = int(os.environ.get("HOSTILE_ATTR_LEN", "65"))


def attr(type_, id_, size, mode=0o755, nlink=1, change=1):
    """An mst_attr."""
    a = struct.pack(">BQQIIIIQQQQ", type_, id_, size, mode, 0, 0, nlink,
                    T0, T0, change, T0)
    return a[:ATTR_LEN]


def attr_rep(a, dir_change=1):
    return a + struct.pack(">QQ", dir_change, T0)


def list_rep(entries, count=None, flags=1, change=1):
    """entries: [(name bytes, attr bytes)]; count defaults to the truth."""
    body = b"".join(b"\x01" + u16s(n) + a for n, a in entries)
    n = len(entries) if count is None else count
    return struct.pack(">QQBI", change, T0, flags, n) + body


def data_rep(data, total=None):
    return struct.pack(">QQ", len(data) if total is None else total, 0) + data


def notify(path, event, name, id_=0, change=2):
    return u16s(path) + bytes([event]) + u16s(name) + struct.pack(">QQ", id_,
                                                                  change)


def hdr(op, flags, status, id_, n):
    return HDR.pack(MAGIC, 1, op, flags, status, id_, n)


class Req:
    def __init__(self, op, flags, id_, payload):
        self.op, self.flags, self.id, self.payload = op, flags, id_, payload

    def reply(self, payload=b"", status=0, flags=0, op=None, id_=None):
        """One encoded reply frame for this request."""
        return hdr(self.op if op is None else op, F_REPLY | flags, status,
                   self.id if id_ is None else id_, len(payload)) + payload

    def str_at(self, off=0):
        n = struct.unpack_from(">H", self.payload, off)[0]
        return self.payload[off + 2:off + 2 + n]


class Fake:
    """The hostile store. Start it, point mount.mstore at .addr."""

    MAX_FRAME = 1 << 20

    def __init__(self, max_frame=None):
        self.max_frame = self.MAX_FRAME if max_frame is None else max_frame
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.hooks = {}
        self.seen = []
        self.conns = []
        self.nconnect = 0
        self.mu = threading.Lock()
        self.stopped = False
        self.root = attr(T_DIR, 1, 0, nlink=3)
        self.tree = {
            b"": self.root,
            b"f": attr(T_FILE, 200, len(FBODY), mode=0o644),
            b"u": attr(T_DIR, 2, 0, nlink=5),
            b"u/new": attr(T_DIR, 3, 0, nlink=2),
            b"u/cur": attr(T_DIR, 4, 0, nlink=2),
            b"u/tmp": attr(T_DIR, 5, 0, nlink=2),
        }
        self.msgs = {  # sub -> [(name, attr)]
            1: [(b"1.new", attr(T_MSG, 100, len(BODY), mode=0o600))],
            2: [(b"1.cur:2,S", attr(T_MSG, 101, len(BODY), mode=0o600))],
        }
        self.bodies = {100: BODY, 101: BODY, 200: FBODY}
        threading.Thread(target=self._accept, daemon=True).start()

    # --- test-facing ---

    def hook(self, opname, fn):
        """fn(req) -> bytes of frames to send, or None for the default."""
        self.hooks[OP[opname]] = fn

    def unhook(self, opname):
        self.hooks.pop(OP[opname], None)

    def count(self, opname):
        with self.mu:
            return sum(1 for op, _ in self.seen if op == OP[opname])

    def notify_raw(self, payload, flags=F_NOTICE, op=None, id_=0):
        frame = hdr(OP["NOTIFY"] if op is None else op, flags, 0, id_,
                    len(payload)) + payload
        self.send_all(frame)

    def send_all(self, data):
        with self.mu:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sendall(data)
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.mu:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    # --- the server ---

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.mu:
                self.conns.append(c)
                self.nconnect += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _recv(c, n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b

    def _serve(self, c):
        try:
            while True:
                magic, ver, op, flags, status, id_, n = HDR.unpack(
                    self._recv(c, 16))
                payload = self._recv(c, n) if n else b""
                req = Req(op, flags, id_, payload)
                with self.mu:
                    self.seen.append((op, payload))
                out = None
                fn = self.hooks.get(op)
                if fn is not None:
                    out = fn(req)
                if out is None:
                    out = self.default(req)
                if out:
                    c.sendall(out)
        except (EOFError, OSError):
            pass
        finally:
            with self.mu:
                if c in self.conns:
                    self.conns.remove(c)
            c.close()

    def _by_id(self, id_):
        for a in self.tree.values():
            if struct.unpack_from(">Q", a, 1)[0] == id_:
                return a
        for ents in self.msgs.values():
            for _, a in ents:
                if struct.unpack_from(">Q", a, 1)[0] == id_:
                    return a
        return None

    def default(self, req):
        op = OPNAME.get(req.op)
        p = req.payload
        if op == "HELLO":
            rep = struct.pack(">HIIQQ", 1, FEAT_WATCH, self.max_frame,
                              1 << 32, 0x5151) + u16s(b"hostile") + bytes(32)
            return req.reply(rep)
        if op == "PING":
            return req.reply(p)
        if op in ("LOOKUP", "STAT"):
            path = req.str_at()
            a = self.tree.get(path)
            if a is None and path.startswith(b"u/"):
                parent, _, name = path.rpartition(b"/")
                sub = {b"u/new": 1, b"u/cur": 2}.get(parent)
                for n, ma in self.msgs.get(sub, []):
                    if n == name:
                        a = ma
            if a is None:
                return req.reply(status=S_ENOENT)
            return req.reply(attr_rep(a))
        if op in ("GETATTR", "OPEN"):
            a = self._by_id(struct.unpack_from(">Q", p)[0])
            if a is None:
                return req.reply(status=S_ENOENT)
            return req.reply(attr_rep(a, 0))
        if op == "CLOSE":
            return req.reply()
        if op == "READDIR":
            path = req.str_at()
            pre = path + b"/" if path else b""
            ents = [(k[len(pre):], a) for k, a in self.tree.items()
                    if k and k.startswith(pre) and b"/" not in k[len(pre):]]
            return req.reply(list_rep(ents))
        if op == "LIST":
            mb = req.str_at()
            fo = req.str_at(2 + len(mb))
            sub = p[4 + len(mb) + len(fo)]
            return req.reply(list_rep(self.msgs.get(sub, [])))
        if op == "WATCH":
            return req.reply(struct.pack(">Q", 1))
        if op == "UNWATCH":
            return req.reply()
        if op == "STATFS":
            return req.reply(struct.pack(">QQQQQQQQQI", 1 << 30, 1 << 29,
                                         1000, 900, 0, 0, 0, 0, 1 << 32, 255))
        if op == "FETCH":
            mb = req.str_at()
            id_, off, ln = struct.unpack_from(">QQI", p, 2 + len(mb))
            body = self.bodies.get(id_, b"")
            return req.reply(data_rep(body[off:off + ln], len(body)))
        if op == "GET":
            path = req.str_at()
            off, ln = struct.unpack_from(">QI", p, 2 + len(path))
            id_ = {b"f": 200}.get(path)
            if id_ is None:
                return req.reply(status=S_ENOENT)
            body = self.bodies[id_]
            return req.reply(data_rep(body[off:off + ln], len(body)))
        if op == "READ":
            id_, off, ln = struct.unpack_from(">QQI", p)
            body = self.bodies.get(id_, b"")
            return req.reply(data_rep(body[off:off + ln], len(body)))
        return req.reply(status=S_EIO)
