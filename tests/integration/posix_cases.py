"""posix_cases - the scenario table of test_posix.py.

Each scenario is a function of a Ctx that performs its steps through
ctx.step(label, fn, objects...). A step records what the call returned
(a value, or the errno name) and, for each object it names, st_mode,
st_nlink, st_size (not for directories, whose size is the file
system's business), st_uid, st_gid and which of atime, mtime and ctime
changed across the step. Objects are names relative to the scenario's
directory ("." is the directory itself) or "fd:NAME" for an open
descriptor (fstat).

A scenario runs in a child process as root or as the unprivileged user
and must do the same thing whatever the directory, so that two runs can
be compared step by step. SETUP[name], when present, runs as root before
the child starts (root-owned objects for the permission checks).
"""
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import stat
import struct
import time

AT_FDCWD = -100
RENAME_NOREPLACE = 1
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
STEP_GAP = 0.012            # longer than a clock tick: every change shows

_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _check(rc, path):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def renameat2(old, new, flags):
    _check(_libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(),
                           ctypes.c_uint(flags)), old)


def utimensat(path, atime, mtime):
    """atime and mtime are (sec, nsec) pairs; nsec may be UTIME_NOW or
    UTIME_OMIT."""
    ts = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    _check(_libc.utimensat(AT_FDCWD, path.encode(), ts, 0), path)


def _errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def fmt(v):
    if v is None:
        return "ok"
    if isinstance(v, bytes):
        if len(v) <= 32:
            return "bytes %r" % v
        return "bytes(%d) sha1 %s" % (len(v), hashlib.sha1(v).hexdigest()[:12])
    return str(v)


def _kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"),
                       (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "other"


class Ctx:
    def __init__(self, root, emit, root_b=None):
        self.root = root
        self.root_b = root_b or root    # the same directory seen from host B
        self.emit = emit            # called with each step's record
        self.fds = {}
        self.maps = {}
        self.n = 0

    def p(self, name):
        return self.root if name == "." else os.path.join(self.root, name)

    def q(self, name):
        """|name| through host B (another mount of the same store; on
        local disk the same directory)."""
        return self.root_b if name == "." else os.path.join(self.root_b, name)

    def _stat(self, obj):
        try:
            if obj.startswith("fd:"):
                return os.fstat(self.fds[obj[3:]])
            if obj.startswith("B:"):
                return os.lstat(self.q(obj[2:]))
            return os.lstat(self.p(obj))
        except (OSError, KeyError):
            return None

    @staticmethod
    def _describe(before, after):
        if after is None:
            return {"exists": "absent"}
        d = {"kind": _kind(after.st_mode),
             "mode": "%04o" % stat.S_IMODE(after.st_mode),
             "nlink": after.st_nlink, "uid": after.st_uid, "gid": after.st_gid}
        if d["kind"] != "dir":
            d["size"] = after.st_size
        if before is None:
            d["times"] = "new"
        elif before.st_ino != after.st_ino:
            # The name now refers to another object (a rename over it):
            # two objects' times say nothing about each other.
            d["times"] = "replaced"
        else:
            d["times"] = "".join(
                k for k, a, b in (("a", before.st_atime_ns, after.st_atime_ns),
                                  ("m", before.st_mtime_ns, after.st_mtime_ns),
                                  ("c", before.st_ctime_ns, after.st_ctime_ns))
                if a != b) or "-"
        return d

    def step(self, label, fn, *objs):
        self.n += 1
        if self.root_b != self.root:
            # Two hosts: what the other host just did reaches this one
            # by a pushed notice, not at once; only open and locks are
            # promised to see it (close-to-open). Judge the step from a
            # view that has caught up.
            time.sleep(SETTLE)
        before = {o: self._stat(o) for o in objs}
        time.sleep(STEP_GAP)
        try:
            res = fmt(fn())
        except OSError as e:
            res = "errno " + _errname(e)
        except Exception as e:  # a harness step that cannot run: say why
            res = "exception %s: %s" % (type(e).__name__, e)
        rec = {"n": self.n, "step": label, "result": res,
               "objs": {o: self._describe(before[o], self._stat(o)) for o in objs}}
        self.emit(rec)
        return res

    # Small helpers whose results do not depend on the directory.
    def open(self, fdname, name, flags, mode=0o666):
        path = self.q(name[2:]) if name.startswith("B:") else self.p(name)
        self.fds[fdname] = os.open(path, flags, mode)
        return "fd"

    def close(self, fdname):
        os.close(self.fds.pop(fdname))

    def write(self, fdname, data):
        return os.write(self.fds[fdname], data)

    def pwrite(self, fdname, data, off):
        return os.pwrite(self.fds[fdname], data, off)

    def pread(self, fdname, n, off):
        return os.pread(self.fds[fdname], n, off)

    def path(self, name):
        return self.q(name[2:]) if name.startswith("B:") else self.p(name)

    def read_file(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def make(self, name, data=b"", mode=0o644):
        fd = os.open(self.path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def in_child(self, fn):
        """Run fn in a forked child (another process, for locks); return
        its result or errno name as a string."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                out = fmt(fn())
            except OSError as e:
                out = "errno " + _errname(e)
            except Exception as e:
                out = "exception %s: %s" % (type(e).__name__, e)
            os.write(w, out.encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 4096)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        os.waitpid(pid, 0)
        return b"".join(chunks).decode()


W = os.O_WRONLY
CREAT = os.O_CREAT
EXCL = os.O_EXCL


def s_open_flags(c):
    c.step("open(f, O_CREAT|O_EXCL|O_WRONLY, 0666)", lambda: c.open("w", "f", CREAT | EXCL | W), "f", ".")
    c.step("open(f, O_CREAT|O_EXCL) existing", lambda: c.open("x", "f", CREAT | EXCL | W), "f", ".")
    c.step("write(f, 'hello world')", lambda: c.write("w", b"hello world"), "f", "fd:w")
    c.step("close(f)", lambda: c.close("w"), "f")
    c.step("open(f, O_CREAT|O_WRONLY) existing", lambda: c.open("w", "f", CREAT | W), "f", ".")
    c.step("close(f)", lambda: c.close("w"), "f")
    c.step("open(f, O_WRONLY|O_TRUNC)", lambda: c.open("w", "f", W | os.O_TRUNC), "f", ".")
    c.step("write(f, 'abc')", lambda: c.write("w", b"abc"), "f")
    c.step("close(f)", lambda: c.close("w"), "f")
    c.step("open(f, O_WRONLY|O_APPEND)", lambda: c.open("a", "f", W | os.O_APPEND), "f")
    c.step("write(f, 'def') with O_APPEND", lambda: c.write("a", b"def"), "f")
    c.step("pwrite(f, 'xyz', 0) with O_APPEND appends", lambda: c.pwrite("a", b"xyz", 0), "f")
    c.step("close(f)", lambda: c.close("a"), "f")
    c.step("read(f)", lambda: c.read_file("f"), "f")
    c.step("open(f, O_TRUNC) read-only", lambda: c.open("t", "f", os.O_RDONLY | os.O_TRUNC), "f")
    c.step("read(f) after O_RDONLY|O_TRUNC", lambda: c.read_file("f"), "f")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("open(d, O_RDONLY)", lambda: c.open("d", "d", os.O_RDONLY), "d")
    c.step("close(d)", lambda: c.close("d"), "d")
    c.step("open(d, O_WRONLY)", lambda: c.open("x", "d", W), "d")
    c.step("open(d, O_RDWR)", lambda: c.open("x", "d", os.O_RDWR), "d")
    c.step("open(d, O_CREAT|O_WRONLY)", lambda: c.open("x", "d", CREAT | W), "d")
    c.step("open(f, O_DIRECTORY)", lambda: c.open("x", "f", os.O_RDONLY | os.O_DIRECTORY), "f")
    c.step("open(missing, O_RDONLY)", lambda: c.open("x", "missing", os.O_RDONLY), ".")
    c.step("open(f/x, O_CREAT)", lambda: c.open("x", "f/x", CREAT | W), "f")
    c.step("open(e, O_CREAT|O_EXCL, 0600)", lambda: c.open("e", "e", CREAT | EXCL | W, 0o600), "e", ".")
    c.step("close(e)", lambda: c.close("e"), "e")
    c.step("listdir(.)", lambda: " ".join(sorted(os.listdir(c.root))), ".")


def s_read_write(c):
    data = bytes((i * 31 + 7) & 0xFF for i in range(10000))
    c.step("open(f, O_CREAT|O_RDWR)", lambda: c.open("f", "f", CREAT | os.O_RDWR), "f", ".")
    c.step("write(f, 10000 bytes)", lambda: c.write("f", data), "f")
    c.step("fstat(f).st_size right after write", lambda: os.fstat(c.fds["f"]).st_size, "fd:f")
    c.step("pread(f, 5000 at 100)", lambda: c.pread("f", 5000, 100), "f")
    c.step("pwrite(f, 'end', 20000) leaves a hole", lambda: c.pwrite("f", b"end", 20000), "f")
    c.step("pread(f, 16 at 15000) in the hole", lambda: c.pread("f", 16, 15000), "f")
    c.step("pread(f, 10 at 19998) across the hole's end", lambda: c.pread("f", 10, 19998), "f")
    c.step("pread(f, 10 at 30000) past EOF", lambda: c.pread("f", 10, 30000), "f")
    c.step("lseek(f, 0, SEEK_END)", lambda: os.lseek(c.fds["f"], 0, os.SEEK_END), "f")
    c.step("fsync(f)", lambda: os.fsync(c.fds["f"]), "f")
    c.step("fdatasync(f)", lambda: os.fdatasync(c.fds["f"]), "f")
    c.step("close(f)", lambda: c.close("f"), "f")
    c.step("open(f, O_RDONLY)", lambda: c.open("r", "f", os.O_RDONLY), "f")
    c.step("write(f) on an O_RDONLY descriptor", lambda: c.write("r", b"x"), "f")
    c.step("read(f, 100000) whole file", lambda: os.read(c.fds["r"], 100000), "f")
    c.step("close(f)", lambda: c.close("r"), "f")
    c.step("open(f, O_WRONLY)", lambda: c.open("w", "f", W), "f")
    c.step("read(f) on an O_WRONLY descriptor", lambda: os.read(c.fds["w"], 10), "f")
    c.step("write(f, 'HEAD') at offset 0", lambda: c.write("w", b"HEAD"), "f")
    c.step("close(f)", lambda: c.close("w"), "f")
    c.step("read(f, first 8 bytes)", lambda: c.read_file("f")[:8], "f")


def s_link(c):
    c.make("f", b"data")
    c.step("link(f, g)", lambda: os.link(c.p("f"), c.p("g")), "f", "g", ".")
    c.step("append via g", lambda: open(c.p("g"), "ab").write(b"+g"), "f", "g")
    c.step("read(f) sees the write via g", lambda: c.read_file("f"), "f", "g")
    c.step("link(f, g) existing target", lambda: os.link(c.p("f"), c.p("g")), "f", "g", ".")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("link(d, d2) of a directory", lambda: os.link(c.p("d"), c.p("d2")), "d", "d2", ".")
    c.step("link(missing, h)", lambda: os.link(c.p("missing"), c.p("h")), "h", ".")
    c.step("link(f, d/h) into a subdirectory", lambda: os.link(c.p("f"), c.p("d/h")), "f", "d/h", "d", ".")
    c.step("unlink(f)", lambda: os.unlink(c.p("f")), "f", "g", "d/h", ".")
    c.step("read(g)", lambda: c.read_file("g"), "g")
    c.step("link(g, missingdir/x)", lambda: os.link(c.p("g"), c.p("missingdir/x")), "g", ".")


def s_unlink(c):
    c.make("f", b"x")
    c.step("unlink(f)", lambda: os.unlink(c.p("f")), "f", ".")
    c.step("unlink(f) again", lambda: os.unlink(c.p("f")), "f", ".")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("unlink(d) of a directory", lambda: os.unlink(c.p("d")), "d", ".")
    c.step("unlink(f/x) through a file", lambda: c.make("g") or os.unlink(c.p("g/x")), "g", ".")
    c.step("unlink(missing/x)", lambda: os.unlink(c.p("missing/x")), ".")


def s_rename(c):
    c.make("a", b"AAA")
    c.make("b", b"BB")
    ino = {}
    c.step("stat(a).st_ino", lambda: ino.setdefault("a", os.stat(c.p("a")).st_ino) and "ok", "a")
    c.step("rename(a, b) file over file", lambda: os.rename(c.p("a"), c.p("b")), "a", "b", ".")
    c.step("b keeps a's inode and data", lambda: (os.stat(c.p("b")).st_ino == ino["a"],
                                                  c.read_file("b")), "b")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("rename(b, d) file over dir", lambda: os.rename(c.p("b"), c.p("d")), "b", "d", ".")
    c.step("mkdir(e), e/x", lambda: os.mkdir(c.p("e")) or c.make("e/x"), "e", ".")
    c.step("rename(d, e) dir over non-empty dir", lambda: os.rename(c.p("d"), c.p("e")), "d", "e", ".")
    c.step("rename(d, b) dir over file", lambda: os.rename(c.p("d"), c.p("b")), "d", "b", ".")
    c.step("mkdir(g)", lambda: os.mkdir(c.p("g")), "g", ".")
    c.step("rename(d, g) dir over empty dir", lambda: os.rename(c.p("d"), c.p("g")), "d", "g", ".")
    c.step("mkdir(g/sub)", lambda: os.mkdir(c.p("g/sub")), "g", "g/sub")
    c.step("rename(g, g/sub/x) into its own subdir", lambda: os.rename(c.p("g"), c.p("g/sub/x")), "g", "g/sub", ".")
    c.step("rename(b, b) onto itself", lambda: os.rename(c.p("b"), c.p("b")), "b", ".")
    c.step("link(b, b2)", lambda: os.link(c.p("b"), c.p("b2")), "b", "b2", ".")
    c.step("rename(b, b2) onto its own hard link", lambda: os.rename(c.p("b"), c.p("b2")), "b", "b2", ".")
    c.step("rename(missing, z)", lambda: os.rename(c.p("missing"), c.p("z")), "z", ".")
    c.step("rename(b2, g/b2) into a subdirectory", lambda: os.rename(c.p("b2"), c.p("g/b2")), "b2", "g/b2", "g", ".")
    c.step("rename(g/sub, sub2) directory out of a subdirectory", lambda: os.rename(c.p("g/sub"), c.p("sub2")), "g", "sub2", ".")
    c.make("n1", b"one")
    c.make("n2", b"two")
    c.step("renameat2(n1, n2, RENAME_NOREPLACE) existing", lambda: renameat2(c.p("n1"), c.p("n2"), RENAME_NOREPLACE), "n1", "n2", ".")
    c.step("renameat2(n1, n3, RENAME_NOREPLACE)", lambda: renameat2(c.p("n1"), c.p("n3"), RENAME_NOREPLACE), "n1", "n3", ".")
    c.step("read(n2), read(n3)", lambda: (c.read_file("n2"), c.read_file("n3")), "n2", "n3")
    c.step("listdir(.)", lambda: " ".join(sorted(os.listdir(c.root))), ".")


def s_mkdir_rmdir(c):
    c.step("mkdir(d, 0777)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("mkdir(d) existing", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("mkdir(d/e, 0700)", lambda: os.mkdir(c.p("d/e"), 0o700), "d/e", "d", ".")
    c.step("rmdir(d) non-empty", lambda: os.rmdir(c.p("d")), "d", ".")
    c.make("f", b"file")
    c.step("rmdir(f) of a file", lambda: os.rmdir(c.p("f")), "f", ".")
    c.step("mkdir(f/x) through a file", lambda: os.mkdir(c.p("f/x")), "f", ".")
    c.step("mkdir(f) over a file", lambda: os.mkdir(c.p("f")), "f", ".")
    c.step("listdir(d)", lambda: " ".join(sorted(os.listdir(c.p("d")))), "d")
    c.step("rmdir(d/e)", lambda: os.rmdir(c.p("d/e")), "d/e", "d", ".")
    c.step("rmdir(d)", lambda: os.rmdir(c.p("d")), "d", ".")
    c.step("rmdir(d) again", lambda: os.rmdir(c.p("d")), "d", ".")
    c.step("mkdir(m, 0750)", lambda: os.mkdir(c.p("m"), 0o750), "m", ".")
    c.step("mkdir(missing/x)", lambda: os.mkdir(c.p("missing/x")), ".")


def s_truncate(c):
    c.make("f", bytes(range(256)) * 4)
    c.step("truncate(f, 100) shrink", lambda: os.truncate(c.p("f"), 100), "f")
    c.step("read(f)", lambda: c.read_file("f"), "f")
    c.step("truncate(f, 5000) extend", lambda: os.truncate(c.p("f"), 5000), "f")
    c.step("read(f) last 16 bytes are zero", lambda: c.read_file("f")[-16:], "f")
    c.step("truncate(f, 5000) same size", lambda: os.truncate(c.p("f"), 5000), "f")
    c.step("open(f, O_RDWR)", lambda: c.open("f", "f", os.O_RDWR), "f")
    c.step("ftruncate(f, 10)", lambda: os.ftruncate(c.fds["f"], 10), "f", "fd:f")
    c.step("write(f, 'abc') at offset 0", lambda: c.write("f", b"abc"), "f")
    c.step("ftruncate(f, 3000)", lambda: os.ftruncate(c.fds["f"], 3000), "f")
    c.step("pread(f, 8 at 8)", lambda: c.pread("f", 8, 8), "f")
    c.step("close(f)", lambda: c.close("f"), "f")
    c.step("open(f, O_RDONLY)", lambda: c.open("r", "f", os.O_RDONLY), "f")
    c.step("ftruncate(f, 0) on an O_RDONLY descriptor", lambda: os.ftruncate(c.fds["r"], 0), "f")
    c.step("close(f)", lambda: c.close("r"), "f")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("truncate(d, 0) of a directory", lambda: os.truncate(c.p("d"), 0), "d")
    c.step("truncate(missing, 0)", lambda: os.truncate(c.p("missing"), 0), ".")
    c.step("truncate(f, 0)", lambda: os.truncate(c.p("f"), 0), "f")


def s_chmod_chown(c):
    me_u, me_g = os.getuid(), os.getgid()
    c.make("f", b"x", 0o644)
    c.step("chmod(f, 0600)", lambda: os.chmod(c.p("f"), 0o600), "f", ".")
    c.step("open(f), fchmod(0640)", lambda: c.open("f", "f", os.O_RDONLY) and os.fchmod(c.fds["f"], 0o640), "f")
    c.step("close(f)", lambda: c.close("f"), "f")
    c.step("mkdir(d), chmod(d, 0700)", lambda: os.mkdir(c.p("d")) or os.chmod(c.p("d"), 0o700), "d", ".")
    c.step("chown(f, own uid, own gid)", lambda: os.chown(c.p("f"), me_u, me_g), "f")
    c.step("chown(f, -1, -1)", lambda: os.chown(c.p("f"), -1, -1), "f")
    c.step("chmod(f, 04755) set-uid", lambda: os.chmod(c.p("f"), 0o4755), "f")
    c.step("chown(f, own uid, own gid) clears set-uid", lambda: os.chown(c.p("f"), me_u, me_g), "f")
    c.step("chmod(f, 02755) set-gid", lambda: os.chmod(c.p("f"), 0o2755), "f")
    c.step("write(f) keeps or clears set-gid", lambda: open(c.p("f"), "ab").write(b"y"), "f")
    c.step("chown(f, 1234, 1234) to another owner", lambda: os.chown(c.p("f"), 1234, 1234), "f")
    c.step("chown(d, 1234, -1) to another owner", lambda: os.chown(c.p("d"), 1234, -1), "d")
    c.step("chmod(missing, 0600)", lambda: os.chmod(c.p("missing"), 0o600), ".")


def s_utimes(c):
    A, M = (1000000000, 123456789), (1500000000, 500000000)

    def times(name):
        st = os.stat(c.p(name))
        return "atime_ns=%d mtime_ns=%d" % (st.st_atime_ns, st.st_mtime_ns)

    c.make("f", b"x")
    c.step("utimensat(f, explicit atime and mtime)", lambda: utimensat(c.p("f"), A, M) or times("f"), "f", ".")
    c.step("utimensat(f, UTIME_OMIT, explicit mtime)", lambda: utimensat(c.p("f"), (0, UTIME_OMIT), (1600000000, 7)) or times("f"), "f")
    c.step("utimensat(f, explicit atime, UTIME_OMIT)", lambda: utimensat(c.p("f"), (1100000000, 9), (0, UTIME_OMIT)) or times("f"), "f")
    c.step("utimensat(f, UTIME_OMIT, UTIME_OMIT)", lambda: utimensat(c.p("f"), (0, UTIME_OMIT), (0, UTIME_OMIT)) or times("f"), "f")
    c.step("utimensat(f, UTIME_NOW, UTIME_NOW)", lambda: utimensat(c.p("f"), (0, UTIME_NOW), (0, UTIME_NOW)), "f")
    c.step("utimensat(f, UTIME_NOW, UTIME_OMIT)", lambda: utimensat(c.p("f"), (0, UTIME_NOW), (0, UTIME_OMIT)), "f")
    c.step("utimes(f) NULL times", lambda: os.utime(c.p("f")), "f")
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("utimensat(d, explicit)", lambda: utimensat(c.p("d"), A, M) or times("d"), "d", ".")
    c.step("read(f) updates atime (relatime)", lambda: c.read_file("f"), "f")
    c.step("utimensat(missing)", lambda: utimensat(c.p("missing"), A, M), ".")


def setup_perm(root, uid, gid):
    """Root-owned objects in a scenario directory owned by the runner."""
    for name, mode in (("rootfile", 0o644), ("secret", 0o600)):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"root's data\n")
        os.chmod(os.path.join(root, name), mode)
    os.mkdir(os.path.join(root, "rootdir"), 0o755)
    os.chmod(os.path.join(root, "rootdir"), 0o755)


def s_perm(c):
    c.step("open(rootfile, O_WRONLY) 0644 root", lambda: c.open("x", "rootfile", W) and c.close("x"), "rootfile")
    c.step("open(secret, O_RDONLY) 0600 root", lambda: c.open("x", "secret", os.O_RDONLY) and c.close("x"), "secret")
    c.step("read(rootfile) 0644 root", lambda: c.read_file("rootfile"), "rootfile")
    c.step("utimensat(rootfile, explicit)", lambda: utimensat(c.p("rootfile"), (1, 0), (2, 0)), "rootfile")
    c.step("utimensat(rootfile, UTIME_NOW)", lambda: utimensat(c.p("rootfile"), (0, UTIME_NOW), (0, UTIME_NOW)), "rootfile")
    c.step("chmod(rootfile, 0666)", lambda: os.chmod(c.p("rootfile"), 0o666), "rootfile")
    c.step("truncate(secret, 0)", lambda: os.truncate(c.p("secret"), 0), "secret")
    c.step("create rootdir/x", lambda: c.make("rootdir/x"), "rootdir", "rootdir/x")
    c.step("mkdir rootdir/y", lambda: os.mkdir(c.p("rootdir/y")), "rootdir", "rootdir/y")
    c.step("rename(secret, rootdir/secret)", lambda: os.rename(c.p("secret"), c.p("rootdir/secret")), "secret", "rootdir", ".")
    c.step("rename(rootfile, moved) in own dir", lambda: os.rename(c.p("rootfile"), c.p("moved")), "rootfile", "moved", ".")
    c.step("unlink(moved) root-owned, in own dir", lambda: os.unlink(c.p("moved")), "moved", ".")
    c.step("mkdir(ro, 0500)", lambda: os.mkdir(c.p("ro"), 0o500), "ro", ".")
    c.step("create ro/x in a 0500 dir", lambda: c.make("ro/x"), "ro", "ro/x")
    c.step("chmod(ro, 0000), stat(ro/x)", lambda: os.chmod(c.p("ro"), 0) or os.stat(c.p("ro/x")).st_size, "ro")
    c.step("listdir(ro) mode 0000", lambda: " ".join(sorted(os.listdir(c.p("ro")))), "ro")
    c.step("chmod(ro, 0700)", lambda: os.chmod(c.p("ro"), 0o700), "ro")
    c.make("own", b"mine", 0o400)
    c.step("open(own, O_WRONLY) mode 0400 own file", lambda: c.open("x", "own", W) and c.close("x"), "own")


def s_shared_fds(c):
    c.step("open(f, O_CREAT|O_RDWR) as 1", lambda: c.open("1", "f", CREAT | os.O_RDWR), "f", ".")
    c.step("open(f, O_RDWR) as 2", lambda: c.open("2", "f", os.O_RDWR), "f")
    c.step("write(1, 'hello')", lambda: c.write("1", b"hello"), "f")
    c.step("fstat(2).st_size", lambda: os.fstat(c.fds["2"]).st_size, "fd:2")
    c.step("pread(2, 10 at 0)", lambda: c.pread("2", 10, 0), "f")
    c.step("pwrite(2, 'J', 0)", lambda: c.pwrite("2", b"J", 0), "f")
    c.step("pread(1, 10 at 0)", lambda: c.pread("1", 10, 0), "f")
    c.step("write(1, ' world') continues at 5", lambda: c.write("1", b" world"), "f")
    c.step("stat(f).st_size by path", lambda: os.stat(c.p("f")).st_size, "f")
    c.step("open(f, O_WRONLY|O_APPEND) as 3", lambda: c.open("3", "f", W | os.O_APPEND), "f")
    c.step("pwrite(1, 'XXXXXXXXXXXXXXXXXXXX', 11) extend", lambda: c.pwrite("1", b"X" * 20, 11), "f")
    c.step("write(3, '!') appends at the new end", lambda: c.write("3", b"!"), "f")
    c.step("read via a fresh open", lambda: c.read_file("f"), "f")
    c.step("ftruncate(2, 4)", lambda: os.ftruncate(c.fds["2"], 4), "f")
    c.step("fstat(1).st_size after ftruncate via 2", lambda: os.fstat(c.fds["1"]).st_size, "fd:1")
    c.step("pread(1, 100 at 0)", lambda: c.pread("1", 100, 0), "f")
    c.step("close 1, 2, 3", lambda: c.close("1") or c.close("2") or c.close("3"), "f")


def s_mmap_shared(c):
    size = 8192
    c.step("open(f, O_CREAT|O_RDWR) as 1", lambda: c.open("1", "f", CREAT | os.O_RDWR), "f")
    c.step("write(1, 8192 x 'a')", lambda: c.write("1", b"a" * size), "f")
    c.step("open(f, O_RDWR) as 2", lambda: c.open("2", "f", os.O_RDWR), "f")

    def do_map():
        c.maps["m"] = mmap.mmap(c.fds["2"], size, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        return bytes(c.maps["m"][0:4])
    c.step("mmap(2, MAP_SHARED)", do_map, "f")
    c.step("pwrite(1, 'XYZ', 100)", lambda: c.pwrite("1", b"XYZ", 100), "f")
    c.step("the mapping sees the write at once", lambda: bytes(c.maps["m"][98:105]), "f")

    def store():
        c.maps["m"][5000:5003] = b"abc"
    c.step("store 'abc' at 5000 through the mapping", store, "f")
    c.step("msync", lambda: c.maps["m"].flush(), "f")
    c.step("pread(1, 5 at 4999) sees the mapping's store", lambda: c.pread("1", 5, 4999), "f")
    c.step("read via a fresh open", lambda: c.read_file("f")[4999:5004], "f")
    c.step("pwrite(1, 'Q', 8191) last byte", lambda: c.pwrite("1", b"Q", 8191), "f")
    c.step("the mapping's last byte", lambda: bytes(c.maps["m"][8190:8192]), "f")
    c.step("munmap", lambda: c.maps.pop("m").close(), "f")
    c.step("close 1, 2", lambda: c.close("1") or c.close("2"), "f")
    c.step("whole file sha1", lambda: c.read_file("f"), "f")


def s_rename_open(c):
    c.step("mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("open(f, O_CREAT|O_WRONLY)", lambda: c.open("w", "f", CREAT | W), "f", ".")
    c.step("write(f, 'part1 ')", lambda: c.write("w", b"part1 "), "f")
    c.step("rename(f, g) while open", lambda: os.rename(c.p("f"), c.p("g")), "f", "g", "fd:w", ".")
    c.step("write(fd, 'part2 ') after the rename", lambda: c.write("w", b"part2 "), "g", "fd:w")
    c.step("read(g)", lambda: c.read_file("g"), "g")
    c.step("rename(g, d/h) while open", lambda: os.rename(c.p("g"), c.p("d/h")), "g", "d/h", "d", ".")
    c.step("write(fd, 'part3')", lambda: c.write("w", b"part3"), "d/h", "fd:w")
    c.step("fsync(fd)", lambda: os.fsync(c.fds["w"]), "d/h")
    c.step("close(fd)", lambda: c.close("w"), "d/h")
    c.step("read(d/h)", lambda: c.read_file("d/h"), "d/h")
    c.step("stat(f), stat(g)", lambda: (os.path.exists(c.p("f")), os.path.exists(c.p("g"))), ".")
    c.make("t", b"target")
    c.step("open(s, O_CREAT|O_RDWR)", lambda: c.open("s", "s", CREAT | os.O_RDWR), "s")
    c.step("write(s, 'new contents')", lambda: c.write("s", b"new contents"), "s")
    c.step("rename(s, t) over an existing file while open", lambda: os.rename(c.p("s"), c.p("t")), "s", "t", "fd:s", ".")
    c.step("pwrite(s, 'N', 0)", lambda: c.pwrite("s", b"N", 0), "t")
    c.step("read(t)", lambda: c.read_file("t"), "t")
    c.step("close(s)", lambda: c.close("s"), "t")


def s_unlink_open(c):
    c.step("open(f, O_CREAT|O_RDWR)", lambda: c.open("f", "f", CREAT | os.O_RDWR), "f", ".")
    c.step("write(f, 'abc')", lambda: c.write("f", b"abc"), "f")
    c.step("open(f, O_RDONLY) as r", lambda: c.open("r", "f", os.O_RDONLY), "f")
    c.step("unlink(f) while open", lambda: os.unlink(c.p("f")), "f", "fd:f", ".")
    c.step("write(f, 'def') after unlink", lambda: c.write("f", b"def"), "fd:f")
    c.step("pread(f, 10 at 0)", lambda: c.pread("f", 10, 0), "fd:f")
    c.step("pread(r, 10 at 0) other descriptor", lambda: c.pread("r", 10, 0), "fd:r")
    c.step("fstat(f).st_size", lambda: os.fstat(c.fds["f"]).st_size, "fd:f")
    c.step("ftruncate(f, 2)", lambda: os.ftruncate(c.fds["f"], 2), "fd:f")
    c.step("open(f, O_CREAT|O_EXCL) new file, same name", lambda: c.open("n", "f", CREAT | EXCL | os.O_RDWR), "f", ".")
    c.step("read(new f) is empty", lambda: c.read_file("f"), "f")
    c.step("pread(r, 10 at 0) still the old file", lambda: c.pread("r", 10, 0), "fd:r")
    c.step("close all", lambda: c.close("f") or c.close("r") or c.close("n"), "f")


def s_locks(c):
    c.make("f", b"x" * 100)

    def child_lock(start, length, lock=fcntl.LOCK_EX):
        def fn():
            fd = os.open(c.p("f"), os.O_RDWR)
            fcntl.lockf(fd, lock | fcntl.LOCK_NB, length, start)
            return "locked"
        return fn

    def child_getlk():
        fd = os.open(c.p("f"), os.O_RDWR)
        fmt_ = "hhqqi"
        arg = struct.pack(fmt_, fcntl.F_WRLCK, os.SEEK_SET, 0, 10, 0)
        res = fcntl.fcntl(fd, fcntl.F_GETLK, arg)
        typ, _, start, length, pid = struct.unpack(fmt_, res[:struct.calcsize(fmt_)])
        return "type=%s start=%d len=%d holder_is_parent=%s" % (
            {fcntl.F_WRLCK: "WR", fcntl.F_RDLCK: "RD", fcntl.F_UNLCK: "UN"}.get(typ, typ),
            start, length, pid == os.getppid())

    def child_flock():
        fd = os.open(c.p("f"), os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "locked"

    c.step("open(f, O_RDWR)", lambda: c.open("f", "f", os.O_RDWR), "f")
    c.step("fcntl F_SETLK write [0,10)", lambda: fcntl.lockf(c.fds["f"], fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0), "f")
    c.step("other process: F_SETLK write [0,10)", lambda: c.in_child(child_lock(0, 10)), "f")
    c.step("other process: F_SETLK read [5,15)", lambda: c.in_child(child_lock(5, 10, fcntl.LOCK_SH)), "f")
    c.step("other process: F_SETLK write [20,30)", lambda: c.in_child(child_lock(20, 10)), "f")
    c.step("other process: F_GETLK [0,10)", lambda: c.in_child(child_getlk), "f")
    c.step("F_SETLK unlock [0,10)", lambda: fcntl.lockf(c.fds["f"], fcntl.LOCK_UN, 10, 0), "f")
    c.step("other process: F_SETLK write [0,10) after unlock", lambda: c.in_child(child_lock(0, 10)), "f")
    c.step("flock(f, LOCK_EX)", lambda: fcntl.flock(c.fds["f"], fcntl.LOCK_EX | fcntl.LOCK_NB), "f")
    c.step("other process: flock(LOCK_EX|LOCK_NB)", lambda: c.in_child(child_flock), "f")
    c.step("flock(f, LOCK_UN)", lambda: fcntl.flock(c.fds["f"], fcntl.LOCK_UN), "f")
    c.step("other process: flock(LOCK_EX|LOCK_NB) after unlock", lambda: c.in_child(child_flock), "f")
    c.step("close(f)", lambda: c.close("f"), "f")


# ---- two hosts ---------------------------------------------------------
# Names starting "B:" are reached through host B: a second mount of the
# same store (on local disk, the same directory). What local disk gives
# two processes on one host is the reference; the mount promises it
# across hosts for what these steps use: close-to-open consistency,
# exclusive create, link and rename-over decided by the store, locks
# granted by the store, and an unlock that publishes the holder's writes
# to the next holder (Dovecot's index files depend on all of them). A
# lock on host B is taken by another process (fcntl locks are per
# process), which inherits B's descriptors.
SETTLE = 0.05   # push-invalidation allowance for a name changed on A


def _lock_read(fd, start=0, n=4096):
    """In a child: wait for a write lock on |fd|, read, unlock."""
    def fn():
        fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)
        try:
            return os.pread(fd, n, start)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0)
    return fn


def _lock_write(fd, data):
    """In a child: wait for a write lock on |fd|, write (O_APPEND), unlock."""
    def fn():
        fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)
        try:
            return os.write(fd, data)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0)
    return fn


def _try_lock(path, how=fcntl.LOCK_EX, use_flock=False):
    def fn():
        fd = os.open(path, os.O_RDWR)
        if use_flock:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
        else:
            fcntl.lockf(fd, how | fcntl.LOCK_NB, 0, 0)
        return "locked"
    return fn


def x_close_to_open(c):
    c.step("A: open(f, O_CREAT|O_WRONLY), write 'one', close",
           lambda: c.open("a", "f", CREAT | W) and c.write("a", b"one\n") and c.close("a"), "f", ".")
    c.step("B: read(f) right after A's close", lambda: c.read_file("B:f"), "B:f", "B:.")
    c.step("B: open(f, O_WRONLY|O_APPEND), write 'two', close",
           lambda: c.open("b", "B:f", W | os.O_APPEND) and c.write("b", b"two\n") and c.close("b"), "B:f")
    c.step("A: read(f) right after B's close", lambda: c.read_file("f"), "f")
    c.step("A: open(f, O_WRONLY|O_TRUNC), write '3', close",
           lambda: c.open("a", "f", W | os.O_TRUNC) and c.write("a", b"3\n") and c.close("a"), "f")
    c.step("B: stat(f).st_size", lambda: os.stat(c.q("f")).st_size, "B:f")
    c.step("B: read(f)", lambda: c.read_file("B:f"), "B:f")
    c.step("B: open(g, O_CREAT|O_EXCL), write, close",
           lambda: c.open("b", "B:g", CREAT | EXCL | W) and c.write("b", b"from B") and c.close("b"), "B:g", "B:.")
    c.step("A: read(g)", lambda: c.read_file("g"), "g", ".")
    c.step("A: listdir(.)", lambda: " ".join(sorted(os.listdir(c.root))), ".")


def x_lock_publish(c):
    c.make("f", b"hdr\n")
    c.step("B: open(f, O_RDWR) as b", lambda: c.open("b", "B:f", os.O_RDWR), "B:f")
    c.step("B: pread(b, 100 at 0)", lambda: c.pread("b", 100, 0), "B:f")
    c.step("A: open(f, O_RDWR) as a", lambda: c.open("a", "f", os.O_RDWR), "f")
    c.step("A: F_SETLKW write lock", lambda: fcntl.lockf(c.fds["a"], fcntl.LOCK_EX, 0, 0), "f")
    c.step("B, other process: F_SETLK write", lambda: c.in_child(_try_lock(c.q("f"))), "B:f")
    c.step("B, other process: F_SETLK read", lambda: c.in_child(_try_lock(c.q("f"), fcntl.LOCK_SH)), "B:f")
    c.step("A: pwrite(a, 'rec1', 4) under the lock", lambda: c.pwrite("a", b"rec1\n", 4), "f")
    c.step("A: unlock", lambda: fcntl.lockf(c.fds["a"], fcntl.LOCK_UN, 0, 0), "f")
    c.step("B, other process: lock b, pread, unlock", lambda: c.in_child(_lock_read(c.fds["b"])), "B:f")
    c.step("B: fstat(b).st_size", lambda: os.fstat(c.fds["b"]).st_size, "fd:b")
    c.step("B: pread(b, 100 at 0)", lambda: c.pread("b", 100, 0), "fd:b")

    def map_b():
        c.maps["m"] = mmap.mmap(c.fds["b"], 9, mmap.MAP_SHARED, mmap.PROT_READ)
        return bytes(c.maps["m"][0:9])
    c.step("B: mmap(b, 9, MAP_SHARED)", map_b, "fd:b")
    c.step("A: lock, pwrite(a, 'HDR', 0), unlock",
           lambda: fcntl.lockf(c.fds["a"], fcntl.LOCK_EX, 0, 0) or c.pwrite("a", b"HDR", 0)
           and fcntl.lockf(c.fds["a"], fcntl.LOCK_UN, 0, 0), "f")
    c.step("B, other process: lock b, pread, unlock", lambda: c.in_child(_lock_read(c.fds["b"], 0, 4)), "B:f")
    c.step("B: the mapping after B's lock", lambda: bytes(c.maps["m"][0:9]), "fd:b")
    c.step("munmap, close a and b", lambda: c.maps.pop("m").close() or c.close("a") or c.close("b"), "f")


def x_rename_over(c):
    c.make("list", b"v1\n")
    c.step("B: open(list, O_RDONLY) as old", lambda: c.open("old", "B:list", os.O_RDONLY), "B:list")
    c.step("B: pread(old)", lambda: c.pread("old", 100, 0), "B:list")
    c.step("A: open(list.lock, O_CREAT|O_EXCL), write 'v2', close",
           lambda: c.open("a", "list.lock", CREAT | EXCL | W, 0o600) and c.write("a", b"v2 longer\n") and c.close("a"),
           "list.lock", ".")
    c.step("B: open(list.lock, O_CREAT|O_EXCL) while A holds it",
           lambda: c.open("x", "B:list.lock", CREAT | EXCL | W, 0o600), "B:list.lock")
    c.step("A: rename(list.lock, list)", lambda: os.rename(c.p("list.lock"), c.p("list")), "list", "list.lock", ".")
    c.step("B: read(list) (50 ms later)", lambda: time.sleep(SETTLE) or c.read_file("B:list"), "B:list", "B:list.lock")
    c.step("B: pread(old) still the old file", lambda: c.pread("old", 100, 0), "fd:old")
    c.step("B: open(list.lock, O_CREAT|O_EXCL) after the rename",
           lambda: c.open("x", "B:list.lock", CREAT | EXCL | W, 0o600) and c.close("x"), "B:list.lock")
    c.step("B: rename(list.lock, list)", lambda: os.rename(c.q("list.lock"), c.q("list")), "B:list", "B:.")
    c.step("A: read(list) (50 ms later)", lambda: time.sleep(SETTLE) or c.read_file("list"), "list")
    c.step("close old", lambda: c.close("old"), "B:list")


def x_exclusive(c):
    c.step("A: open(lk, O_CREAT|O_EXCL)", lambda: c.open("a", "lk", CREAT | EXCL | W) and c.close("a"), "lk", ".")
    c.step("B: open(lk, O_CREAT|O_EXCL)", lambda: c.open("b", "B:lk", CREAT | EXCL | W), "B:lk")
    c.make("tA", b"A")
    c.make("B:tB", b"B")
    c.step("A: link(tA, lk2)", lambda: os.link(c.p("tA"), c.p("lk2")), "tA", "lk2", ".")
    c.step("B: link(tB, lk2)", lambda: os.link(c.q("tB"), c.q("lk2")), "B:tB", "B:lk2")
    c.step("A: unlink(lk2)", lambda: os.unlink(c.p("lk2")), "lk2", "tA")
    c.step("B: link(tB, lk2) after A's unlink", lambda: os.link(c.q("tB"), c.q("lk2")), "B:tB", "B:lk2")
    c.step("A: read(lk2) (50 ms later)", lambda: time.sleep(SETTLE) or c.read_file("lk2"), "lk2")
    c.step("B: unlink(lk)", lambda: os.unlink(c.q("lk")), "B:lk")
    c.step("A: open(lk, O_CREAT|O_EXCL) after B's unlink",
           lambda: c.open("a", "lk", CREAT | EXCL | W) and c.close("a"), "lk")
    c.step("A: mkdir(d)", lambda: os.mkdir(c.p("d")), "d", ".")
    c.step("B: mkdir(d)", lambda: os.mkdir(c.q("d")), "B:d")
    c.make("d/x", b"")
    time.sleep(SETTLE)      # B's view of d may lag A's create by a push
    c.step("B: rmdir(d) holding A's file", lambda: os.rmdir(c.q("d")), "B:d")
    c.step("A: unlink(d/x)", lambda: os.unlink(c.p("d/x")), "d")
    c.step("B: rmdir(d)", lambda: os.rmdir(c.q("d")), "B:d", "B:.")
    c.step("A: stat(d) (50 ms later)", lambda: time.sleep(SETTLE) or os.path.isdir(c.p("d")), ".")


def x_unlink_open(c):
    c.make("f", b"data")
    c.step("B: open(f, O_RDONLY) as b", lambda: c.open("b", "B:f", os.O_RDONLY), "B:f")
    c.step("A: unlink(f)", lambda: os.unlink(c.p("f")), "f", ".")
    c.step("B: pread(b) after A's unlink", lambda: c.pread("b", 100, 0), "fd:b")
    c.step("B: stat(f) (50 ms later)", lambda: time.sleep(SETTLE) or os.path.exists(c.q("f")), "B:.")
    c.step("close b", lambda: c.close("b"))
    c.step("A: open(g, O_CREAT|O_RDWR) as a, write", lambda: c.open("a", "g", CREAT | os.O_RDWR) and c.write("a", b"123"), "g")
    c.step("B: unlink(g) while A writes it", lambda: os.unlink(c.q("g")), "B:g", "B:.")
    c.step("A: write(a, '456') after B's unlink", lambda: c.write("a", b"456"), "fd:a")
    c.step("A: pread(a)", lambda: c.pread("a", 100, 0), "fd:a")
    c.step("close a", lambda: c.close("a"))


def x_append_both(c):
    c.step("A: open(log, O_CREAT|O_RDWR|O_APPEND) as a",
           lambda: c.open("a", "log", CREAT | os.O_RDWR | os.O_APPEND), "log", ".")
    c.step("B: open(log, O_RDWR|O_APPEND) as b", lambda: c.open("b", "B:log", os.O_RDWR | os.O_APPEND), "B:log")
    for i in range(4):
        c.step("A: lock, append 'A%d', unlock" % i,
               lambda i=i: c.in_child(_lock_write(c.fds["a"], b"A%d\n" % i)), "log")
        c.step("B: lock, append 'B%d', unlock" % i,
               lambda i=i: c.in_child(_lock_write(c.fds["b"], b"B%d\n" % i)), "B:log")
    c.step("A: pread(a) without a lock (50 ms later)",
           lambda: time.sleep(SETTLE) or c.pread("a", 1000, 0), "fd:a")
    c.step("B, other process: lock b, pread, unlock", lambda: c.in_child(_lock_read(c.fds["b"])), "fd:b")
    c.step("close a and b", lambda: c.close("a") or c.close("b"), "log")
    c.step("B: read(log)", lambda: c.read_file("B:log"), "B:log")


def x_flock(c):
    c.make("f", b"x")
    c.step("A: open(f), flock(LOCK_EX)",
           lambda: c.open("a", "f", os.O_RDWR) and fcntl.flock(c.fds["a"], fcntl.LOCK_EX), "f")
    c.step("B, other process: flock(LOCK_EX|LOCK_NB)",
           lambda: c.in_child(_try_lock(c.q("f"), use_flock=True)), "B:f")
    c.step("B, other process: flock(LOCK_SH|LOCK_NB)",
           lambda: c.in_child(_try_lock(c.q("f"), fcntl.LOCK_SH, use_flock=True)), "B:f")
    c.step("A: flock(LOCK_UN)", lambda: fcntl.flock(c.fds["a"], fcntl.LOCK_UN), "f")
    c.step("B, other process: flock(LOCK_EX|LOCK_NB) after the unlock",
           lambda: c.in_child(_try_lock(c.q("f"), use_flock=True)), "B:f")
    c.step("A: F_SETLK write lock", lambda: fcntl.lockf(c.fds["a"], fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0), "f")
    c.step("A: close(f) drops the lock", lambda: c.close("a"), "f")
    c.step("B, other process: F_SETLK write after A's close",
           lambda: c.in_child(_try_lock(c.q("f"))), "B:f")


SCENARIOS = [
    ("open_flags", s_open_flags),
    ("read_write", s_read_write),
    ("link", s_link),
    ("unlink", s_unlink),
    ("rename", s_rename),
    ("mkdir_rmdir", s_mkdir_rmdir),
    ("truncate", s_truncate),
    ("chmod_chown", s_chmod_chown),
    ("utimes", s_utimes),
    ("perm", s_perm),
    ("shared_fds", s_shared_fds),
    ("mmap_shared", s_mmap_shared),
    ("rename_open", s_rename_open),
    ("unlink_open", s_unlink_open),
    ("locks", s_locks),
    ("x_close_to_open", x_close_to_open),
    ("x_lock_publish", x_lock_publish),
    ("x_rename_over", x_rename_over),
    ("x_exclusive", x_exclusive),
    ("x_unlink_open", x_unlink_open),
    ("x_append_both", x_append_both),
    ("x_flock", x_flock),
]

SETUP = {"perm": setup_perm}
