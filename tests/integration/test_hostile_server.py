#!/usr/bin/env python3
"""test_hostile_server - mount.mstore must distrust the store.

Each case mounts mount.mstore against a fresh hostile fake store
(hostile.py), makes the file-system call that sends the request the fake
lies in answer to, and checks that the call fails cleanly (or returns sane
data), that the mount process is still alive and still answers a stat of
its root, and, where the mount documents it, that its log names what it
refused. A memory error (a sanitizer build aborts on one) kills the mount
and fails the case.
"""
import errno
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import mstlib   # noqa: E402

from hostile import (F_MORE, F_NOTICE, F_REPLY, OP, T_FILE, T_MSG, attr,  # noqa: E402
                     attr_rep, data_rep, hdr, list_rep, notify)

# HOSTILE_MOUNT_OPTS adds options, e.g. "mailbox_depth=1" for a
# mount.mstore from before Maildirs were recognised by their shape.
OPTS = ",".join(o for o in ("timeout=3",
                            os.environ.get("HOSTILE_MOUNT_OPTS", "")) if o)
# errors a refused reply may surface as: EIO is the documented one; the
# decoders' own codes are told apart and reported (see finding()), and
# every finding fails the run.
CLEAN = (errno.EIO, errno.EPROTO, errno.EBADMSG, errno.EINVAL,
         errno.ENAMETOOLONG)
findings = []


def finding(msg):
    findings.append(msg)
    print("FINDING: %s" % msg, flush=True)


def setup(max_frame=None):
    f = hostile.Fake(max_frame=max_frame)
    m = mstlib.Mount(f.addr, OPTS).start()
    return f, m


def log_of(m):
    with open(m.log, errors="replace") as fh:
        return fh.read()


def alive(f, m, what):
    """The mount survived: process running, root answers, no sanitizer
    report in its log."""
    time.sleep(0.3)
    log = log_of(m)
    if m.proc.poll() is not None:
        raise AssertionError("%s: mount.mstore died (exit %s); log:\n%s" %
                             (what, m.proc.returncode, log[-3000:]))
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        if bad in log:
            raise AssertionError("%s: sanitizer report:\n%s" % (what,
                                                              log[-3000:]))
    # the root must still answer (the fake may have been dropped and
    # reconnected meanwhile; give that a moment)
    mstlib.wait_until(lambda: _stat_ok(m.mnt), 15, "a stat of the root")


def _stat_ok(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def fails_cleanly(what, fn, *args, ok=CLEAN):
    """fn must raise OSError with an errno in |ok|; returns the errno."""
    try:
        r = fn(*args)
    except OSError as e:
        if e.errno not in ok:
            raise AssertionError("%s: got %s, want one of %s" % (
                what, errno.errorcode.get(e.errno, e.errno),
                [errno.errorcode[x] for x in ok]))
        if e.errno != errno.EIO and errno.EIO in ok:
            finding("%s: refused with %s, not the documented EIO" %
                    (what, errno.errorcode[e.errno]))
        return e.errno
    raise AssertionError("%s: succeeded (%r), want a refusal" % (what, r))


def wants_log(m, what, *needles):
    log = log_of(m)
    if not any(n in log for n in needles):
        finding("%s: refused, but the log says nothing about it" % what)


def read_file(path, n=None, off=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        if off:
            os.lseek(fd, off, os.SEEK_SET)
        return os.read(fd, n or (1 << 20))
    finally:
        os.close(fd)


# --- bug 1: NOTIFY names ---

def test_notify_reset_long_name():
    """A RESET notice whose name (unchecked by the decoder) is 300 bytes:
    the old on_notice copied it into char name[256]."""
    f, m = setup()
    assert os.listdir(m.path("u", "new")) == ["1.new"]
    mstlib.wait_until(lambda: f.count("WATCH") >= 3, 5, "the WATCHes")
    f.notify_raw(notify(b"u/new", hostile.EV_RESET, b"A" * 300))
    f.notify_raw(notify(b"u/new", hostile.EV_RESET, b"B" * 4000))
    alive(f, m, "RESET notice with a 300-byte name")
    assert os.listdir(m.path("u", "new")) == ["1.new"]
    log = log_of(m)
    # Refused at decode (a RESET names nothing) or, past the decoder, by
    # the mount's own length check: either way it must say so.
    if "NOTIFY that does not decode was refused" not in log and \
            "300-byte name refused" not in log:
        raise AssertionError("the log does not say the notice was refused")
    m.unmount()


def test_notify_bad_names():
    """ADD notices naming '..', 'a/b', a 300-byte name or a path with
    '..': the decoder refuses them; the mount drops the connection and
    reconnects, and nothing outside the mount is touched."""
    f, m = setup()
    os.listdir(m.path("u", "new"))
    for path, name in ((b"u/new", b".."), (b"u/new", b"a/b"),
                       (b"u/new", b"C" * 300), (b"u/../../etc", b"x"),
                       (b"/etc", b"passwd")):
        f.notify_raw(notify(path, hostile.EV_ADD, name, 100))
        alive(f, m, "ADD notice %r in %r" % (name[:20], path))
    assert os.listdir(m.path("u", "new")) == ["1.new"]
    m.unmount()


def test_notify_not_a_notice():
    """A NOTIFY that claims to be a reply, and a notice with an id."""
    f, m = setup()
    os.listdir(m.path("u", "new"))
    f.notify_raw(notify(b"u/new", hostile.EV_ADD, b"x", 100),
                 flags=F_NOTICE | F_MORE)
    alive(f, m, "NOTIFY notice with MORE")
    f.notify_raw(notify(b"u/new", hostile.EV_ADD, b"x", 100), id_=77)
    alive(f, m, "NOTIFY notice with id 77")
    m.unmount()


# --- bug 2: data replies larger than asked ---

def test_fetch_more_than_asked():
    """FETCH replies always carry a whole frame of data, whatever was
    asked for. With a 64 KiB frame the kernel's 128 KiB reads take the
    synchronous path: the old mount copied the surplus past the end of
    its read buffer."""
    f = hostile.Fake(max_frame=64 << 10)
    big = 1 << 20
    f.msgs[1] = [(b"1.new", attr(T_MSG, 100, big, mode=0o600))]
    chunk = b"Z" * ((64 << 10) - 16)

    def fat(req):
        return req.reply(data_rep(chunk, big))
    f.hook("FETCH", fat)
    m = mstlib.Mount(f.addr, OPTS).start()
    try:
        data = read_file(m.path("u", "new", "1.new"), 128 << 10)
    except OSError as e:
        if e.errno not in CLEAN:
            alive(f, m, "FETCH reply with more data than asked")
            raise
        data = None
    if data is not None:
        finding("FETCH surplus: read returned %d bytes instead of failing" %
                len(data))
        assert len(data) <= 128 << 10
    alive(f, m, "FETCH reply with more data than asked")
    wants_log(m, "FETCH reply with more than asked", "FETCH", "more than")
    m.unmount()


def test_fetch_small_more_than_asked():
    """The asynchronous path: an 11-byte message, FETCH answered with 5000
    bytes (total_size says 5000 too)."""
    f = hostile.Fake()
    f.hook("FETCH", lambda req: req.reply(data_rep(b"Q" * 5000)))
    m = mstlib.Mount(f.addr, OPTS).start()
    fails_cleanly("read of a message, FETCH surplus", read_file,
                  m.path("u", "new", "1.new"))
    alive(f, m, "small FETCH surplus")
    wants_log(m, "FETCH surplus (async)", "FETCH", "more than")
    m.unmount()


def test_read_more_than_asked():
    """READ of an ordinary file answered with more bytes than asked."""
    f = hostile.Fake()

    def fat(req):
        _id, _off, ln = struct.unpack_from(">QQI", req.payload)
        return req.reply(data_rep(b"R" * (ln + 4096), 1 << 30))
    f.hook("READ", fat)
    f.hook("GET", lambda req: req.reply(data_rep(b"R" * (1 << 19), 1 << 30)))
    m = mstlib.Mount(f.addr, OPTS).start()
    try:
        data = read_file(m.path("f"))
        assert len(data) <= len(hostile.FBODY), \
            "read returned %d bytes of an %d-byte file" % (
                len(data), len(hostile.FBODY))
        finding("READ surplus: read succeeded with %d bytes" % len(data))
    except OSError as e:
        if e.errno not in CLEAN:
            raise
    alive(f, m, "READ reply with more data than asked")
    wants_log(m, "READ surplus", "READ", "more than")
    m.unmount()


def test_data_total_disagrees():
    """A data reply whose total_size is smaller than the data it carries."""
    f = hostile.Fake()
    f.hook("FETCH", lambda req: req.reply(data_rep(hostile.BODY, 3)))
    f.hook("READ", lambda req: req.reply(data_rep(hostile.FBODY, 3)))
    f.hook("GET", lambda req: req.reply(data_rep(hostile.FBODY, 3)))
    m = mstlib.Mount(f.addr, OPTS).start()
    fails_cleanly("message read, total_size < data", read_file,
                  m.path("u", "new", "1.new"))
    fails_cleanly("file read, total_size < data", read_file, m.path("f"))
    alive(f, m, "data reply with total_size < data")
    m.unmount()


# --- bug 3: open of a message for writing ---

def test_open_message_wronly():
    """open(cur/<message>, O_WRONLY) is EPERM; the old mount then freed
    an uninitialised handle pointer: after a read-only open and close on
    the same worker thread (two at most), the stale pointer left on its stack
    is the handle just freed, so the free is a double free."""
    f = hostile.Fake()
    m = mstlib.Mount(f.addr, OPTS + ",max_threads=2").start()
    p = m.path("u", "cur", "1.cur:2,S")
    for i in range(20):
        for fl in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND):
            assert read_file(p) == hostile.BODY
            try:
                os.close(os.open(p, fl))
            except OSError as e:
                if e.errno != errno.EPERM:
                    alive(f, m, "open(O_WRONLY) of a message")
                    raise AssertionError("open(%#o) of a message: %s, "
                                         "want EPERM" % (fl, e))
            else:
                raise AssertionError("open(%#o) of a message succeeded" % fl)
    alive(f, m, "open of a message for writing")
    assert read_file(p) == hostile.BODY
    m.unmount()


# --- listings ---

def _list_case(what, entries, count=None, dir_=("u", "new")):
    f = hostile.Fake()
    f.hook("LIST", lambda req: req.reply(list_rep(entries, count)))
    m = mstlib.Mount(f.addr, OPTS).start()
    try:
        names = os.listdir(m.path(*dir_))
    except OSError as e:
        if e.errno not in CLEAN:
            raise AssertionError("%s: %s" % (what, e))
        if e.errno != errno.EIO:
            finding("%s: refused with %s, not the documented EIO" %
                    (what, errno.errorcode[e.errno]))
        wants_log(m, what, "LIST")
        names = None
    if names is not None:
        bad = [n for n in names if "/" in n or n in (".", "..") or
               len(n.encode()) > 255]
        if bad:
            raise AssertionError("%s: listing shows %r" % (what, bad))
        finding("%s: listing accepted: %r" % (what, [n[:20] for n in names]))
    alive(f, m, what)
    m.unmount()


def test_list_count_exceeds():
    _list_case("LIST count 5 with 1 entry",
               [(b"1.new", attr(T_MSG, 100, 11))], count=5)


def test_list_count_short():
    _list_case("LIST count 0 with 1 entry",
               [(b"1.new", attr(T_MSG, 100, 11))], count=0)


def test_list_name_300():
    _list_case("LIST entry with a 300-byte name",
               [(b"N" * 300, attr(T_MSG, 100, 11))])


def test_list_name_slash():
    _list_case("LIST entry named '../../etc/passwd'",
               [(b"../../etc/passwd", attr(T_MSG, 100, 11))])


def test_list_name_dotdot():
    _list_case("LIST entry named '..'", [(b"..", attr(T_MSG, 100, 11))])


def test_list_dir_in_mail_folder():
    """A mail folder listing that names a directory or an ordinary file:
    mail folders hold only messages."""
    _list_case("LIST entry of type DIR in new/",
               [(b"sub", attr(hostile.T_DIR, 300, 0))])


def test_list_absurd_size():
    """A message listed with size 2^63 (over MST_BODY_MAX) and nlink 2^32-1:
    stat must not report it, a read must not trust it."""
    f = hostile.Fake()
    a = bytearray(attr(T_MSG, 100, 1 << 63, mode=0o600))
    struct.pack_into(">I", a, 29, 0xffffffff)          # nlink
    f.msgs[1] = [(b"1.new", bytes(a))]
    m = mstlib.Mount(f.addr, OPTS).start()
    p = m.path("u", "new", "1.new")
    try:
        st = os.stat(p)
        if st.st_size > 1 << 32:
            finding("LIST entry size 2^63 accepted: st_size=%d" % st.st_size)
        data = read_file(p)
        assert data == hostile.BODY, "read %d bytes" % len(data)
    except OSError as e:
        if e.errno not in CLEAN + (errno.ENOENT,):
            raise
        if e.errno != errno.EIO:
            finding("LIST entry size 2^63: refused with %s, not EIO" %
                    errno.errorcode[e.errno])
    alive(f, m, "LIST entry size 2^63")
    m.unmount()


def test_readdir_bad_names():
    for nm in (b"x/y", b"..", b"M" * 300):
        f = hostile.Fake()
        f.hook("READDIR", lambda req, nm=nm: req.reply(list_rep(
            [(nm, attr(T_FILE, 300, 1))])))
        m = mstlib.Mount(f.addr, OPTS).start()
        fails_cleanly("READDIR entry %r" % nm[:20], os.listdir, m.mnt)
        wants_log(m, "READDIR entry %r" % nm[:20], "READDIR")
        alive(f, m, "READDIR entry %r" % nm[:20])
        m.unmount()


# --- attributes ---

def test_absurd_sizes():
    """LOOKUP of a file answering size 2^63 and mode 0xffffffff."""
    f = hostile.Fake()
    f.tree[b"f"] = attr(T_FILE, 200, 1 << 63, mode=0o644)
    m = mstlib.Mount(f.addr, OPTS).start()
    try:
        st = os.stat(m.path("f"))
        if st.st_size > 1 << 32:
            finding("LOOKUP attr size 2^63 accepted: stat says st_size=%d "
                    "(over MST_BODY_MAX)" % st.st_size)
    except OSError as e:
        if e.errno not in CLEAN:
            raise
        if e.errno != errno.EIO:
            finding("LOOKUP attr size 2^63: refused with %s, not EIO" %
                    errno.errorcode[e.errno])
    alive(f, m, "size 2^63")
    m.unmount()
    f = hostile.Fake()
    bad = bytearray(attr(T_FILE, 200, 11))
    struct.pack_into(">I", bad, 17, 0xffffffff)        # mode
    f.tree[b"f"] = bytes(bad)
    m = mstlib.Mount(f.addr, OPTS).start()
    fails_cleanly("LOOKUP attr mode 0xffffffff", os.stat, m.path("f"))
    alive(f, m, "mode 0xffffffff")
    m.unmount()


def test_lookup_type_mismatch():
    """LOOKUP of u/new answering an ordinary file; of the root's 'f'
    answering a message; and an id 0."""
    f = hostile.Fake()
    f.tree[b"u/new"] = attr(T_FILE, 3, 11)
    f.tree[b"f"] = attr(hostile.T_DIR, 0, 0)
    m = mstlib.Mount(f.addr, OPTS).start()
    for p in (m.path("u", "new"), m.path("f")):
        try:
            os.stat(p)
            os.listdir(p) if os.path.isdir(p) else read_file(p)
        except OSError:
            pass
    alive(f, m, "type mismatch / id 0")
    m.unmount()


# --- framing ---

def test_reply_unknown_id():
    """A reply frame for an id never sent, then one for a sent id with the
    wrong opcode."""
    f, m = setup()

    def stray(req):
        return req.reply(attr_rep(f.root), id_=0x7777) + \
            req.reply(attr_rep(f.root), op=OP["STAT"])
    f.hook("LOOKUP", stray)
    try:
        os.stat(m.path("u", "cur", "nonexistent"))
    except OSError as e:
        if e.errno not in CLEAN + (errno.ENOENT,):
            raise
    f.unhook("LOOKUP")
    alive(f, m, "reply for an unknown id")
    wants_log(m, "reply for an unknown id", "lost the connection",
              "Protocol error")
    m.unmount()


def test_more_never_ends():
    """A READDIR reply that keeps setting MORE: 200 frames of 60 KiB. The
    mount must bound what it collects and fail the call."""
    f, m = setup()
    one = list_rep([(b"x%05d" % i, attr(T_FILE, 1000 + i, 1))
                    for i in range(800)])

    def endless(req):
        return b"".join(req.reply(one, flags=F_MORE) for _ in range(200))
    f.hook("READDIR", endless)
    fails_cleanly("READDIR reply with MORE that never ends", os.listdir,
                  m.mnt, ok=CLEAN + (errno.ETIMEDOUT,))
    f.unhook("READDIR")
    alive(f, m, "endless MORE")
    m.unmount()


def test_more_then_silence():
    """One MORE frame and then nothing: the call must time out (EIO)."""
    f, m = setup()
    f.hook("READDIR", lambda req: req.reply(list_rep([]), flags=F_MORE))
    t0 = time.monotonic()
    fails_cleanly("READDIR MORE then silence", os.listdir, m.mnt)
    assert time.monotonic() - t0 < 30
    f.unhook("READDIR")
    alive(f, m, "MORE then silence")
    m.unmount()


def test_oversized_frame():
    """A header announcing a frame over the negotiated maximum."""
    f, m = setup()
    f.hook("LOOKUP", lambda req: hdr(req.op, F_REPLY, 0, req.id, 64 << 20))
    fails_cleanly("LOOKUP answered with a 64 MiB frame header", os.stat,
                  m.path("u", "cur", "zz"), ok=CLEAN + (errno.ENOENT,))
    f.unhook("LOOKUP")
    alive(f, m, "oversized frame")
    m.unmount()


def test_hello_lies():
    """HELLO replies with max_frame 0 or 4 GiB (outside 64 KiB..16 MiB):
    the mount may come up (it retries the store in the background) but
    must never use that store: calls fail with EIO and the log says the
    store could not be reached."""
    for mf in (0, 0xffffffff):
        f = hostile.Fake(max_frame=mf)
        m = mstlib.Mount(f.addr, OPTS).start()
        fails_cleanly("listdir with HELLO max_frame=%#x" % mf, os.listdir,
                      m.mnt, ok=(errno.EIO,))
        assert f.count("HELLO") >= 1 and f.count("LOOKUP") == 0 and \
            f.count("READDIR") == 0, "the store was used after its HELLO"
        assert m.proc.poll() is None, "mount.mstore died"
        if "cannot reach the store" not in log_of(m):
            raise AssertionError("the log does not say the store was "
                                 "refused:\n" + log_of(m))
        m.unmount()
        f.stop()


CASES = [test_notify_reset_long_name, test_notify_bad_names,
         test_notify_not_a_notice, test_fetch_more_than_asked,
         test_fetch_small_more_than_asked, test_read_more_than_asked,
         test_data_total_disagrees, test_open_message_wronly,
         test_list_count_exceeds, test_list_count_short, test_list_name_300,
         test_list_name_slash, test_list_name_dotdot,
         test_list_dir_in_mail_folder, test_list_absurd_size,
         test_readdir_bad_names,
         test_absurd_sizes, test_lookup_type_mismatch, test_reply_unknown_id,
         test_more_never_ends, test_more_then_silence, test_oversized_frame,
         test_hello_lies]


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("hostile: needs root and /dev/fuse")
        return 77
    only = set(sys.argv[1:])
    r = mstlib.Runner("hostile", limit=120)
    for fn in CASES:
        if not only or fn.__name__ in only:
            r.run(fn)
    # A finding is a bad reply the mount handled less well than it
    # promises (an errno other than EIO, no log line, something used):
    # each counts as a failure.
    print("hostile: %d findings" % len(findings))
    r.failed += len(findings)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
