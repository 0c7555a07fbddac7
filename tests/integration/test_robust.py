#!/usr/bin/env python3
"""test_robust - mount.mstore and mstored when the store pushes back.

Against the fake store of hostile.py (it answers what each case tells
it to): a DELIVER answered EAGAIN (the store short of memory for
bodies) is sent again, the same bytes and so the same idempotency id,
until it is stored or its timeout is spent, and never more often than
its back-off allows.

Against a real mstored: a spool the mount holds there and then leaves
alone is dropped after spool_timeout (and logged), and a spool gives
way to a delivery on the same connection instead of making it EAGAIN.
An ordinary file open twice is held twice by the store again after the
mount reconnects, so closing one descriptor does not let an unlink
elsewhere remove the file under the other.

Every case starts its own store and mount and stops both.
"""
import ctypes
import errno
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import mstlib   # noqa: E402

from hostile import T_MSG, attr, attr_rep  # noqa: E402

S_EAGAIN = 11
TIMEOUT = 3     # the mount's request timeout in these cases (s)


def fake_mount(opts="", timeout=TIMEOUT):
    f = hostile.Fake()
    o = "timeout=%d" % timeout + ("," + opts if opts else "")
    m = mstlib.Mount(f.addr, o).start()
    return f, m


def stop(f, m):
    m.unmount()
    f.stop()


def write_tmp(m, name, body):
    p = m.path("u", "tmp", name)
    with open(p, "wb") as fh:
        fh.write(body)
    return p


def test_deliver_eagain_is_sent_again_with_its_id():
    """The first two DELIVERs of a message are answered EAGAIN, the third
    stores it: link() succeeds, and the three carried the same bytes (the
    same idempotency id), so a store that did keep one never keeps two."""
    f, m = fake_mount()
    try:
        body = b"From: a@example.com\n\nhello\n"
        got = []

        def deliver(req):
            got.append(req.payload)
            if len(got) <= 2:
                return req.reply(status=S_EAGAIN)
            return req.reply(attr_rep(attr(T_MSG, 300, len(body),
                                           mode=0o600), 2))
        f.hook("DELIVER", deliver)
        tmp = write_tmp(m, "m1", body)
        t0 = time.monotonic()
        os.link(tmp, m.path("u", "new", "m1"))
        took = time.monotonic() - t0
        assert len(got) == 3, "DELIVERs sent: %d, want 3" % len(got)
        assert got[0] == got[1] == got[2], \
            "a resend differs from the first DELIVER (another id?)"
        assert took < TIMEOUT, "link took %.2f s" % took
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        stop(f, m)


def test_deliver_eagain_until_the_timeout_fails_with_eagain():
    """A store that answers EAGAIN for ever: link() fails with EAGAIN (a
    temporary failure: the MTA defers) within the request's timeout,
    after a bounded number of resends, all of the same bytes."""
    f, m = fake_mount()
    try:
        got = []

        def deliver(req):
            got.append(req.payload)
            return req.reply(status=S_EAGAIN)
        f.hook("DELIVER", deliver)
        tmp = write_tmp(m, "m2", b"body\n")
        t0 = time.monotonic()
        mstlib.expect_errno(errno.EAGAIN, os.link, tmp,
                            m.path("u", "new", "m2"))
        took = time.monotonic() - t0
        assert took <= TIMEOUT + 0.5, "link took %.2f s, the timeout is " \
            "%d s" % (took, TIMEOUT)
        # 10 ms doubling to 500 ms within 3 s: about 10 sends; never a
        # tight loop.
        assert 2 <= len(got) <= 20, "DELIVERs sent: %d" % len(got)
        assert all(p == got[0] for p in got), "a resend differs"
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        stop(f, m)


# --- the missing-name cache and notices already received ---

def lookups(f, name):
    with f.mu:
        return sum(1 for op, p in f.seen if op == hostile.OP["LOOKUP"] and
                   p[2:] == name)


def test_received_create_notice_beats_the_missing_name_cache():
    """A name the store said is missing from a watched directory is
    answered from the mount's memory while nothing can have made it. A
    create notice for it that has reached the mount (here at the end of
    a burst of other notices, all sent before the lookup begins) must
    count even before the mount has applied it: the lookup finds the
    file, never ENOENT."""
    f, m = fake_mount()
    try:
        os.listdir(m.mnt)       # the root is watched from here on
        os.stat(m.path("u"))    # a directory the notices below name
        mstlib.wait_until(lambda: f.count("WATCH") >= 1, 5, "the WATCH")
        time.sleep(0.2)
        for rnd in range(3):
            name = b"created-%d" % rnd

            def kept():
                # Asked twice with no LOOKUP between: answered from the
                # cache (once the last round's burst is all applied).
                mstlib.expect_errno(errno.ENOENT, os.stat,
                                    m.path(name.decode()))
                n = lookups(f, name)
                mstlib.expect_errno(errno.ENOENT, os.stat,
                                    m.path(name.decode()))
                return lookups(f, name) == n
            mstlib.wait_until(kept, 10, "the missing name to be kept")
            f.tree[name] = attr(hostile.T_FILE, 400 + rnd, 0, mode=0o644)
            burst = b"".join(
                hostile.hdr(hostile.OP["NOTIFY"], hostile.F_NOTICE, 0, 0,
                            len(p)) + p
                for p in [hostile.notify(b"u", hostile.EV_CHANGE,
                                         b"n%d" % i)
                          for i in range(20000)] +
                [hostile.notify(b"", hostile.EV_ADD, name)])
            f.send_all(burst)
            try:
                os.stat(m.path(name.decode()))
            except FileNotFoundError:
                raise AssertionError("round %d: ENOENT from the cache "
                                     "after the create notice reached "
                                     "the mount" % rnd)
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        stop(f, m)


# --- CLOSE of an ordinary file, while the socket is busy ---

def test_close_waiting_for_the_socket_blocks_nothing_else():
    """The last close of an ordinary file sends CLOSE. While a large
    DELIVER holds the connection's socket (the store reads slowly), that
    CLOSE waits for it; the rest of the mount must not wait with it: a
    read answered from the mount's memory stays immediate. The CLOSE
    still goes out once the socket is free.

    The store reads nothing more until the read has been timed, or for
    |stall| seconds: a read that waited behind the CLOSE would take most
    of them, so the bound on it leaves a loaded host seconds of room and
    still fails when the read waits. The request timeout is longer than
    the stall, so that the DELIVER's writer does not give up first."""
    stall = 10
    f, m = fake_mount(timeout=2 * stall)
    release = threading.Event()
    try:
        entered = threading.Event()

        def deliver(req):
            entered.set()
            release.wait(stall)     # read nothing more meanwhile
            return b""              # answered after its last DATA

        def data(req):
            if req.flags & hostile.F_MORE:
                return b""
            return hostile.hdr(hostile.OP["DELIVER"], hostile.F_REPLY, 5,
                               req.id, 0)
        f.hook("DELIVER", deliver)
        f.hook("DATA", data)
        fd = os.open(m.path("f"), os.O_RDONLY)      # an OPEN in the store
        mstlib.wait_until(lambda: f.count("OPEN") >= 1, 5, "the OPEN")
        write_tmp(m, "big", b"x" * (32 << 20))
        # A local file: every read of it reaches the mount (direct I/O)
        # and is answered under the mount's lock, with no store request.
        write_tmp(m, "probe", b"probe\n")
        probe = os.open(m.path("u", "tmp", "probe"), os.O_RDONLY)
        errs = []

        def link():
            try:
                os.link(m.path("u", "tmp", "big"), m.path("u", "new", "big"))
            except OSError as e:
                errs.append(e)
        lt = threading.Thread(target=link)
        lt.start()
        assert entered.wait(10), "no DELIVER reached the store"
        time.sleep(0.3)             # the DELIVER's writer waits for room
        ct = threading.Thread(target=os.close, args=(fd,))
        ct.start()                  # RELEASE: CLOSE waits for the socket
        time.sleep(0.3)
        t0 = time.monotonic()
        got = os.pread(probe, 64, 0)    # served from the mount's memory
        took = time.monotonic() - t0
        release.set()
        assert got == b"probe\n", got
        ct.join(10)
        lt.join(10)
        os.close(probe)
        mstlib.wait_until(lambda: f.count("CLOSE") >= 1, 10, "the CLOSE")
        assert took < 3, "a read of a tmp/ file waited %.2f s behind " \
            "the CLOSE (the store held the socket for up to %d s)" % (
                took, stall)
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        release.set()
        stop(f, m)


# --- spools held by mstored (a real store) ---

BOX = "example.com/sp"


def requests(m, who, op):
    for line in os.getxattr(m.mnt,
                            "user.mstore.requests").decode().splitlines():
        w, o, n = line.split()
        if w == who and o == op:
            return int(n)
    return 0


def spooled_file(m, name, size):
    """A tmp/ file written 64 KiB at a time (so the mount SPOOLs it while
    it grows) and left open; returns (file object, body)."""
    body = os.urandom(size)
    s0 = requests(m, "store", "SPOOL")
    fh = open(m.path(BOX, "tmp", name), "wb", buffering=0)
    for off in range(0, size, 64 << 10):
        fh.write(body[off:off + (64 << 10)])
    mstlib.wait_until(lambda: requests(m, "store", "SPOOL") - s0 >= 2, 5,
                      "the mount to SPOOL %s" % name)
    time.sleep(0.2)             # the SPOOLs answered
    return fh, body


def deliver_open(m, fh, name, body):
    """Close the spooled file, link it into new/, check what was stored."""
    fh.close()
    os.link(m.path(BOX, "tmp", name), m.path(BOX, "new", name))
    os.unlink(m.path(BOX, "tmp", name))
    with open(m.path(BOX, "new", name), "rb") as f:
        assert f.read() == body, "%s stored wrong" % name


def store_mount(conf):
    """A store and a mount that SPOOLs as files are written: the mount
    takes their WRITEs itself (no kernel passthrough)."""
    s = mstlib.Store(conf).start()
    m = mstlib.Mount(s.addr, "nopassthrough").start()
    mstlib.maildir(m, BOX)
    return s, m


def test_held_spool_is_dropped_after_spool_timeout():
    """A file spooled and then left alone: mstored drops its spool after
    spool_timeout and logs it; the file's delivery later still stores
    the right body (the COMMIT finds no spool, the DELIVER goes)."""
    s, m = store_mount("spool_timeout = 1\n")
    try:
        fh, body = spooled_file(m, "held", 600 << 10)
        mstlib.wait_until(lambda: "(spool_timeout)" in open(s.log).read(),
                          5, "mstored to drop the unused spool")
        log = open(s.log).read()
        assert "dropped a spool of 524288 bytes: unused for 1 s " \
            "(spool_timeout)" in log, log[-2000:]
        deliver_open(m, fh, "held", body)
    finally:
        m.unmount()
        s.stop()


def test_spool_gives_way_to_a_delivery():
    """max_connection_memory 1 MiB, half of it held by a spool of a file
    still being written: a 700 KiB delivery on the same connection is
    stored at once (the spool is dropped for it), not refused with
    EAGAIN until the timeout; the spooled file is delivered whole
    later."""
    s, m = store_mount("max_connection_memory = 1M\n")
    try:
        fh, body = spooled_file(m, "big", 600 << 10)
        other = os.urandom(700 << 10)
        t0 = time.monotonic()
        mstlib.deliver(m, BOX, "other", other)
        took = time.monotonic() - t0
        assert took < 2, "the delivery took %.2f s" % took
        with open(m.path(BOX, "new", "other"), "rb") as f:
            assert f.read() == other
        deliver_open(m, fh, "big", body)
        assert sorted(os.listdir(m.path(BOX, "new"))) == ["big", "other"]
    finally:
        m.unmount()
        s.stop()


_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def first_server(key, servers):
    """The server a mount sends |key|'s requests to (fuse-mount/route.c)."""
    def w(s):
        k = key.encode() + b"\0" + s.encode()
        return _xxh.XXH3_64bits(k, len(k))
    return sorted(servers, key=lambda s: (-w(s), s))[0]


def test_spool_pieces_fit_the_mailboxs_server():
    """Two servers: the home one (directories, ordinary files) with
    1 MiB frames, the mailbox's with 64 KiB. A large file written in
    pieces into that mailbox is delivered whole, the mount never sends
    its mailbox's server a SPOOL larger than that server's frame (which
    it would take for a protocol error and drop the connection), and the
    message reads back whole (a read is not sized by the home server's
    frame either)."""
    a, b = mstlib.Store(), mstlib.Store()
    addrs = [a.addr, b.addr]
    home = first_server("/", addrs)
    big, small = (a, b) if home == a.addr else (b, a)
    with open(small.conf, "a") as fh:
        fh.write("max_frame = 64K\n")
    box = next("fr.example/u%d" % i for i in range(1000)
               if first_server("fr.example/u%d" % i, addrs) == small.addr)
    for st in (a, b):
        st.start()
        for sub in ("new", "cur", "tmp"):
            subprocess.run([mstlib.CTL, "-s", st.addr, "mkdir", "-p",
                            "%s/%s" % (box, sub)], check=True,
                           capture_output=True, timeout=20)
    m = mstlib.Mount(",".join(addrs), "").start()
    try:
        assert os.getxattr(m.path(box, "new"),
                           "user.mstore.server").decode() == small.addr
        body = os.urandom(600 << 10)
        with open(m.path(box, "tmp", "big"), "wb", buffering=0) as fh:
            for off in range(0, len(body), 64 << 10):
                fh.write(body[off:off + (64 << 10)])
            time.sleep(0.5)     # any SPOOL answered
        os.link(m.path(box, "tmp", "big"), m.path(box, "new", "big"))
        os.unlink(m.path(box, "tmp", "big"))
        log = open(m.log).read()
        assert "lost the connection to the store at %s" % small.addr \
            not in log, log[-2000:]
        # Read back as a reader does: whole reads of up to 128 KiB, each
        # more than the mailbox server's frame (a short one would be
        # taken for the end of the message).
        with open(m.path(box, "new", "big"), "rb") as fh:
            got = fh.read()
        assert got == body, "read %d bytes of %d back" % (len(got),
                                                         len(body))
    finally:
        m.unmount()
        a.stop()
        b.stop()


# --- holds of open files across a reconnection (a real store) ---

def store_stat(s, key):
    r = subprocess.run([mstlib.CTL, "-s", s.addr, "stats"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        k, _, v = line.partition("=")
        if k == key:
            return int(v)
    raise AssertionError("no %s in mstore-ctl stats:\n%s" % (key, r.stdout))


def mount_stat(m, key):
    for line in os.getxattr(m.mnt, "user.mstore.stats").decode().splitlines():
        k, _, v = line.partition("=")
        if k == key:
            return int(v)
    raise AssertionError("no %s in user.mstore.stats" % key)


def test_file_open_twice_stays_held_after_a_reconnection():
    """An ordinary file open twice through a mount: the store holds it
    once per open (each close sends one CLOSE) and forgets every hold of
    a connection when it ends. After the store restarts and the mount
    reconnects, one descriptor is closed and another mount unlinks the
    file: the store still keeps it for the descriptor left open (an
    open orphan), which reads it whole; once that one is closed too,
    nothing holds it."""
    s, m = store_mount("")
    m2 = mstlib.Mount(s.addr, "").start()
    fds = []
    try:
        body = b"open twice, closed once\n" * 1000
        with open(m2.path(BOX, "twice"), "wb") as fh:
            fh.write(body)
        fds = [os.open(m.path(BOX, "twice"), os.O_RDONLY) for _ in "ab"]
        opens = requests(m, "store", "OPEN")
        r0 = mount_stat(m, "reconnects")
        s.stop()
        s.start()

        def back():
            try:
                os.listdir(m.path(BOX))     # a request, to hurry it
            except OSError:
                pass
            return mount_stat(m, "reconnects") > r0 and \
                mount_stat(m, "connected") == 1 and \
                mount_stat(m2, "connected") == 1
        mstlib.wait_until(back, 30, "both mounts to reconnect")
        mstlib.wait_until(lambda: requests(m, "store", "OPEN") > opens, 10,
                          "the OPENs taken again")
        closes = requests(m, "store", "CLOSE")
        os.close(fds.pop(0))
        mstlib.wait_until(lambda: requests(m, "store", "CLOSE") > closes, 10,
                          "the CLOSE of the first descriptor")
        # Answered after the CLOSE (the store's writer takes both in
        # order): the hold is what the CLOSE left of it from here on.
        held_after_unlink(s, m, m2, fds, body)
    finally:
        for fd in fds:
            os.close(fd)
        m2.unmount()
        m.unmount()
        s.stop()


def held_after_unlink(s, m, m2, fds, body):
    """Once the holds are what the closes left of them: a request
    answered after those closes, an unlink of "twice" through m2, and
    fds[0], still open through m, reads the whole body of the open
    orphan the store keeps, until its close lets the file go."""
    with open(m.path(BOX, "after-close"), "wb") as fh:
        fh.write(b"x")
        os.fsync(fh.fileno())
    os.unlink(m2.path(BOX, "twice"))
    orphans = store_stat(s, "open_orphans")
    try:
        got = os.pread(fds[0], len(body) + 1, 0)
    except OSError as e:
        raise AssertionError("the descriptor still open cannot read "
                             "the unlinked file: %s (open orphans in "
                             "the store: %d)" % (e, orphans))
    assert got == body, "read %d bytes, want %d" % (len(got), len(body))
    assert orphans == 1, "open orphans in the store: %d, want 1" % orphans
    os.close(fds.pop(0))
    mstlib.wait_until(lambda: store_stat(s, "open_orphans") == 0, 10,
                      "the store to let the file go after the last close")
    assert m.proc.poll() is None, "mount.mstore died"


def test_close_queued_while_disconnected_ends_no_new_hold():
    """A file open twice through a mount; the store dies and one
    descriptor is closed while the mount is disconnected, so its CLOSE
    waits in the queue for the next connection. On reconnecting the
    mount takes the file's holds again (the store forgot them with the
    old connection) before that CLOSE goes out: the CLOSE must end a
    hold of its own, not the one of the descriptor still open. An unlink
    through another mount then leaves an open orphan that the open
    descriptor reads whole, until its close."""
    s, m = store_mount("")
    m2 = mstlib.Mount(s.addr, "").start()
    fds = []
    try:
        body = b"closed while the store was away\n" * 1000
        with open(m2.path(BOX, "twice"), "wb") as fh:
            fh.write(body)
        fds = [os.open(m.path(BOX, "twice"), os.O_RDONLY) for _ in "ab"]
        r0 = mount_stat(m, "reconnects")
        s.kill(signal.SIGKILL)
        mstlib.wait_until(lambda: mount_stat(m, "connected") == 0, 10,
                          "the mount to see the store gone")
        closes = requests(m, "store", "CLOSE")
        os.close(fds.pop(0))
        mstlib.wait_until(lambda: requests(m, "store", "CLOSE") > closes, 10,
                          "the CLOSE queued while disconnected")
        assert mount_stat(m, "connected") == 0, "reconnected too early"
        s.start()
        mstlib.wait_until(lambda: mount_stat(m, "reconnects") > r0 and
                          mount_stat(m, "connected") == 1 and
                          mount_stat(m2, "connected") == 1, 30,
                          "both mounts to reconnect")
        # Sent after the queued CLOSE and answered after it (the store
        # takes one connection's requests in order): from here the holds
        # are what that CLOSE left of them.
        held_after_unlink(s, m, m2, fds, body)
    finally:
        for fd in fds:
            os.close(fd)
        m2.unmount()
        m.unmount()
        s.stop()


CASES = [test_deliver_eagain_is_sent_again_with_its_id,
         test_deliver_eagain_until_the_timeout_fails_with_eagain,
         test_received_create_notice_beats_the_missing_name_cache,
         test_close_waiting_for_the_socket_blocks_nothing_else,
         test_held_spool_is_dropped_after_spool_timeout,
         test_spool_gives_way_to_a_delivery,
         test_spool_pieces_fit_the_mailboxs_server,
         test_file_open_twice_stays_held_after_a_reconnection,
         test_close_queued_while_disconnected_ends_no_new_hold]


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("robust: needs root and /dev/fuse")
        return 77
    only = set(sys.argv[1:])
    r = mstlib.Runner("robust", limit=60)
    for fn in CASES:
        if not only or fn.__name__ in only:
            r.run(fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
