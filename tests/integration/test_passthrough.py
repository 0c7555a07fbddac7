#!/usr/bin/env python3
"""tmp/ files through the kernel's FUSE passthrough (mount.mstore(8),
option nopassthrough): on a kernel that offers it, a tmp/ file's writes
go to its backing file in the spool directory with no request to the
mount. A 1 MiB message written in 4 KiB pieces costs no WRITE at all,
nor a GETXATTR per write, and is delivered intact by one DELIVER; every
open of the file, a reader's too, is a passthrough open (the mount's
passthrough_opens counter). What a tmp/ file promises is the same with
passthrough and without it (each case below runs on both mounts): stat
follows the writes, a second
descriptor reads and writes the same bytes, truncation and O_TRUNC, a
write clears the set-user-ID bit, an unlinked tmp/ file is never
delivered and its spool goes, rename into cur/ delivers the exact bytes,
and a link or rename while the writer still holds the file open. With passthrough
a shared writable mapping of a tmp/ file works too. A mount killed while
a body is written acknowledges nothing, and a store restarted meanwhile
gets the message once."""
import errno
import mmap
import os
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

BOX = "example.com/pt"


def counters(m):
    out = {}
    text = os.getxattr(m.mnt, "user.mstore.requests").decode()
    for line in text.splitlines():
        side, name, val = line.split()
        out["%s %s" % (side, name)] = int(val)
    return out


def stats(m):
    text = os.getxattr(m.mnt, "user.mstore.stats").decode()
    return {k: int(v) for k, v in
            (line.split("=", 1) for line in text.splitlines())}


def opens(m):
    return stats(m)["passthrough_opens"]


def body_of(size, seed):
    return bytes(((i * 31 + seed) >> 3) & 0xff for i in range(size))


def fresh(m, name):
    mstlib.maildir(m, BOX)
    return m.path(BOX, "tmp", name)


def dest(m, sub, name):
    """A name in new/ or cur/ of this mount's own: both mounts deliver
    into one store."""
    return m.path(BOX, sub, m.tag + name)


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def write_in(fd, body, chunk):
    for off in range(0, len(body), chunk):
        piece = body[off:off + chunk]
        assert os.write(fd, piece) == len(piece)


def deliver(m, name, body, chunk):
    """Postfix's sequence: open O_EXCL, fstat, write in |chunk| pieces,
    fsync, close, link into new/, unlink."""
    tmp, dst = fresh(m, name), dest(m, "new", name)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.fstat(fd)
        write_in(fd, body, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, dst)
    os.unlink(tmp)
    return dst


def test_one_mib_in_4k_writes(m, pt):
    """The counted case: with passthrough no WRITE reaches the mount and
    the one open is a passthrough open; without it, 256 WRITEs and none.
    Either way one DELIVER, and the bytes arrive exact."""
    body = body_of(1 << 20, 3)
    deliver(m, "warm", b"warm\n", 4096)
    o0 = opens(m)
    c0 = counters(m)        # its own GETXATTR is counted in c1, once
    dst = deliver(m, "1m.4k", body, 4096)
    c1 = counters(m)
    o1 = opens(m)
    d = {k: c1.get(k, 0) - c0.get(k, 0) for k in c1}
    assert read_all(dst) == body, "delivered bytes differ"
    assert d.get("store DELIVER", 0) + d.get("store COMMIT", 0) == 1, d
    if pt:
        # No WRITE, so no SPOOL either: one DELIVER from the spool file.
        assert d.get("kernel WRITE", 0) == 0, "WRITEs: %r" % d
        assert d.get("store DELIVER", 0) == 1, d
        assert o1 - o0 == 1, "passthrough opens: %d" % (o1 - o0)
        # What is left a write(2) is the kernel's privilege check, a
        # GETXATTR of security.capability (no FUSE_HANDLE_KILLPRIV_V2,
        # so that the kernel clears set-user-ID bits itself).
        assert d.get("kernel GETXATTR", 0) <= 256 + 4, d
    else:
        assert d.get("kernel WRITE", 0) == 256, "WRITEs: %r" % d
        assert o1 == o0, "passthrough opens: %d" % (o1 - o0)


def test_stat_follows_the_writes(m, pt):
    tmp = fresh(m, "stat")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        for i in range(1, 6):
            os.write(fd, b"s" * 2000)
            assert os.fstat(fd).st_size == 2000 * i
            assert os.stat(tmp).st_size == 2000 * i
        assert os.lseek(fd, 0, os.SEEK_END) == 10000
        os.pwrite(fd, b"E", 20000)       # a hole of zeros before it
        assert os.stat(tmp).st_size == 20001
        got = os.pread(fd, 30000, 0)
        assert got == b"s" * 10000 + b"\0" * 10000 + b"E", len(got)
        ino = os.fstat(fd).st_ino
        assert os.stat(tmp).st_ino == ino   # Postfix names by it
    finally:
        os.close(fd)
    os.unlink(tmp)


def test_second_descriptor_sees_the_same_bytes(m, pt):
    tmp = fresh(m, "two")
    o0 = opens(m)
    fd1 = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    fd2 = None
    try:
        os.write(fd1, b"abc")
        fd2 = os.open(tmp, os.O_RDWR)
        assert os.read(fd2, 100) == b"abc"
        os.write(fd2, b"def")            # at fd2's offset: the end
        os.write(fd1, b"ghi")            # fd1's offset is 3
        assert os.pread(fd2, 100, 0) == b"abcghi"
    finally:
        os.close(fd1)
        if fd2 is not None:
            os.close(fd2)
    assert (opens(m) - o0) == (2 if pt else 0)
    os.link(tmp, dest(m, "new", "two"))
    os.unlink(tmp)
    assert read_all(dest(m, "new", "two")) == b"abcghi"


def test_truncation(m, pt):
    tmp = fresh(m, "trunc")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, body_of(5000, 9))
        os.ftruncate(fd, 100)
        assert os.fstat(fd).st_size == 100
        os.ftruncate(fd, 300)
        assert os.pread(fd, 1000, 0) == body_of(100, 9) + b"\0" * 200
    finally:
        os.close(fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new body\n")
    finally:
        os.close(fd)
    os.rename(tmp, dest(m, "new", "trunc"))
    assert read_all(dest(m, "new", "trunc")) == b"new body\n"


def test_write_clears_setuid(m, pt):
    """As the kernel does for a write through its page cache, which
    neither a direct-I/O nor a passthrough tmp/ file goes through."""
    tmp = fresh(m, "suid")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.fchmod(fd, 0o6750)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o6750
        os.write(fd, b"x")
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o0750
    os.unlink(tmp)


def _as_nobody(fn):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, \
        "the unprivileged child failed (%#x)" % st


def test_others_clear_setuid_of_any_file(m, pt):
    """A write, truncate or open(O_TRUNC) by another user, and a chown
    by root, clear set-user-ID and set-group-ID of an ordinary file and
    of a tmp/ file, whether or not the mount asked for passthrough; an
    open(O_TRUNC) by root keeps them, as on local disk."""
    mstlib.maildir(m, BOX)
    d = m.path(BOX, "suidbox")
    os.makedirs(d, exist_ok=True)
    # Searchable down to the files, writable where they are.
    top = m.path(BOX.split("/")[0])
    for p in (top, m.path(BOX), d, m.path(BOX, "tmp")):
        os.chmod(p, 0o777)
    tmpdir = m.path(BOX, "tmp")
    files = [os.path.join(d, "plain"), os.path.join(tmpdir, "suid2")]
    for f in files:
        with open(f, "wb") as fp:
            fp.write(b"abc")

        def write():
            fd = os.open(f, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)

        def trunc_open():
            os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
        for what, act in (("write", lambda: _as_nobody(write)),
                          ("truncate", lambda: _as_nobody(
                              lambda: os.truncate(f, 1))),
                          ("open(O_TRUNC)", lambda: _as_nobody(trunc_open)),
                          ("chown", lambda: os.chown(f, 0, 0))):
            os.chmod(f, 0o6777)
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o6777
            act()
            got = stat.S_IMODE(os.stat(f).st_mode)
            assert got == 0o0777, "%s after %s: %04o" % (f, what, got)
        os.chmod(f, 0o6777)
        trunc_open()
        st = os.stat(f)
        assert st.st_size == 0, "%s: %d bytes after O_TRUNC" % (f, st.st_size)
        got = stat.S_IMODE(st.st_mode)
        assert got == 0o6777, "%s after root's open(O_TRUNC): %04o" % (f, got)
        os.unlink(f)


def test_unlinked_file_is_not_delivered(m, pt):
    tmp = fresh(m, "gone")
    before = sorted(os.listdir(m.path(BOX, "new")))
    s0 = stats(m)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        write_in(fd, body_of(2 << 20, 5), 65536)
        os.unlink(tmp)
        os.write(fd, b"still writable")
        assert os.fstat(fd).st_nlink == 0
        assert not os.path.exists(tmp)
    finally:
        os.close(fd)
    assert sorted(os.listdir(m.path(BOX, "new"))) == before
    mstlib.wait_until(lambda: stats(m)["spooled_bytes"] ==
                      s0["spooled_bytes"], 10, "the spool file to go")


def test_rename_into_cur_delivers_exact_bytes(m, pt):
    """Dovecot's sequence: write in tmp/, rename straight into cur/."""
    body = body_of(300 << 10, 11)
    tmp = fresh(m, "dove")
    dst = dest(m, "cur", "dove:2,S")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        write_in(fd, body, 4096)
    finally:
        os.close(fd)
    os.rename(tmp, dst)
    assert not os.path.exists(tmp)
    assert read_all(dst) == body
    assert os.stat(dst).st_size == len(body)


def test_link_while_the_writer_holds_it_open(m, pt):
    body = body_of(70000, 13)
    tmp = fresh(m, "held")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        write_in(fd, body, 4096)
        os.link(tmp, dest(m, "new", "held"))
    finally:
        os.close(fd)
    os.unlink(tmp)
    assert read_all(dest(m, "new", "held")) == body


def test_rename_while_the_writer_holds_it_open(m, pt):
    """Renamed into cur/ with the writer's descriptor still open: the
    message reads back whole while it is open and after it is closed."""
    body = body_of(200 << 10, 29)
    tmp = fresh(m, "openmove")
    dst = dest(m, "cur", "openmove:2,S")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        write_in(fd, body, 4096)
        os.rename(tmp, dst)
        assert read_all(dst) == body
    finally:
        os.close(fd)
    assert read_all(dst) == body
    mstlib.expect_errno(errno.EPERM, os.open, dst, os.O_WRONLY)


def test_shared_mapping_is_delivered(m):
    """Passthrough only: the mapping is of the backing file (without it
    a tmp/ file cannot be mapped shared and writable)."""
    body = body_of(8192, 17)
    tmp = fresh(m, "mapped")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, len(body))
        mp = mmap.mmap(fd, len(body), mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE)
        mp[:] = body
        mp.flush()
        mp.close()
    finally:
        os.close(fd)
    os.link(tmp, dest(m, "new", "mapped"))
    os.unlink(tmp)
    assert read_all(dest(m, "new", "mapped")) == body


def test_killed_mount_acknowledges_nothing(store):
    """kill -9 of the mount while a body is written: fsync and link
    fail, and no other mount ever sees the message."""
    k = mstlib.Mount(store.addr, "allow_other").start()
    watcher = mstlib.Mount(store.addr, "allow_other").start()
    tmp = fresh(k, "killed")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        write_in(fd, body_of(512 << 10, 19), 4096)
        k.proc.kill()
        k.proc.wait()
        try:
            os.fsync(fd)
            raise AssertionError("fsync succeeded on a dead mount")
        except OSError as e:
            assert e.errno in (errno.ENOTCONN, errno.EIO), e
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    mstlib.expect_errno(errno.ENOTCONN, os.link, tmp,
                        k.path(BOX, "new", "killed"))
    k.unmount()
    time.sleep(0.2)
    assert "killed" not in os.listdir(watcher.path(BOX, "new"))
    watcher.unmount()


def test_store_restart_mid_body_delivers_once(m, stores):
    """The store is killed and started again (same data) while the body
    is being written: the link still delivers it, once, intact."""
    body = body_of(1 << 20, 23)
    tmp = fresh(m, "restart")
    before = set(os.listdir(m.path(BOX, "new")))
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        write_in(fd, body[:len(body) // 2], 4096)
        old = stores[0]
        old.kill()
        stores[0] = mstlib.Store(port=old.port, data=old.data).start()
        write_in(fd, body[len(body) // 2:], 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
    dst = m.path(BOX, "new", "restart")
    deadline = time.monotonic() + 20
    while True:                  # EIO until the mount has reconnected
        try:
            os.link(tmp, dst)
            break
        except OSError as e:
            if e.errno != errno.EIO or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    os.unlink(tmp)
    assert set(os.listdir(m.path(BOX, "new"))) - before == {"restart"}
    assert read_all(dst) == body


BOTH = (test_one_mib_in_4k_writes,
        test_stat_follows_the_writes,
        test_second_descriptor_sees_the_same_bytes,
        test_truncation,
        test_write_clears_setuid,
        test_others_clear_setuid_of_any_file,
        test_unlinked_file_is_not_delivered,
        test_rename_into_cur_delivers_exact_bytes,
        test_link_while_the_writer_holds_it_open,
        test_rename_while_the_writer_holds_it_open)


def main():
    r = mstlib.Runner("passthrough")
    store = mstlib.Store().start()
    pt = mstlib.Mount(store.addr, "allow_other,passthrough").start()
    own = mstlib.Mount(store.addr, "allow_other,nopassthrough").start()
    pt.tag, own.tag = "pt-", "own-"
    mstlib.maildir(pt, BOX)
    # The kernel here must offer passthrough (CONFIG_FUSE_PASSTHROUGH,
    # Linux 6.9+) and the mount run as root: otherwise the mount goes
    # on without it, which the first case reports as a failure.
    for t in BOTH:
        r.run(t, pt, True)
        r.run(t, own, False)
    r.run(test_shared_mapping_is_delivered, pt)
    r.run(test_killed_mount_acknowledges_nothing, store)
    stores = [store]
    r.run(test_store_restart_mid_body_delivers_once, pt, stores)
    own.unmount()
    pt.unmount()
    stores[0].stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
