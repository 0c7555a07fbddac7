#!/usr/bin/env python3
"""Permissions on mount.mstore: the mount is mounted with allow_other (as
an MTA host needs), and the kernel must still check every caller against
the stored owner and mode, as on a local disk. A mailbox owned by uid A
with a message delivered by A (tmp/ + link) is closed to another uid
(nobody): reading, listing, removing, renaming and chmod fail; A can do
all of it. Owners and modes are the store's, seen the same from a second
mount; new directories and files get the caller's uid and gid, or the
parent's gid under a set-group-ID directory (which subdirectories
inherit)."""
import errno
import os
import pickle
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

A = 5001            # the mailbox owner (a virtual mail uid)
NOBODY = 65534      # any other local user
GROUP = 5100        # a shared group for the set-group-ID directory
BODY = b"From: a@b\nSubject: private\n\nfor A only\n"


def as_user(uid, gid, fn, *args, groups=()):
    """Run fn(*args) in a child with only |uid|, |gid| and |groups|.
    Returns fn's value; an OSError in the child comes back as an OSError
    with its errno."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            res = ("ok", fn(*args))
        except OSError as e:
            res = ("errno", (e.errno, str(e)))
        except BaseException as e:  # noqa: B902 - report, never escape
            res = ("exc", repr(e))
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(res))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, val = pickle.loads(data)
    if kind == "errno":
        raise OSError(val[0], val[1])
    if kind == "exc":
        raise AssertionError("child uid %d: %s" % (uid, val))
    return val


def expect_as(uid, gid, want, fn, *args):
    """fn(*args) as |uid| must fail with one of the errnos in |want|."""
    try:
        as_user(uid, gid, fn, *args)
    except OSError as e:
        if e.errno not in want:
            raise AssertionError("uid %d %s%r: got %s, want %s" % (
                uid, fn.__name__, args, errno.errorcode.get(e.errno, e.errno),
                "/".join(errno.errorcode[w] for w in want)))
        return
    raise AssertionError("uid %d %s%r: succeeded, want %s" % (
        uid, fn.__name__, args, "/".join(errno.errorcode[w] for w in want)))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def deliver(box, name, body):
    """Postfix's sequence: tmp/ file 0600, fsync, link into new/."""
    tmp = os.path.join(box, "tmp", name)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, os.path.join(box, "new", name))
    os.unlink(tmp)


def make_box(m, box, mode):
    """As root: the user directory, owned by A with |mode|; then A makes
    tmp/ new/ cur/ (with |mode|) and delivers one message."""
    os.mkdir(m.path(box), mode)
    os.chown(m.path(box), A, A)
    os.chmod(m.path(box), mode)

    def subdirs():
        for sub in ("tmp", "new", "cur"):
            os.mkdir(m.path(box, sub), mode)
            os.chmod(m.path(box, sub), mode)
    as_user(A, A, subdirs)
    as_user(A, A, deliver, m.path(box), "1.msg", BODY)


def check_owner(path, uid, gid, mode, kind):
    st = os.stat(path)
    got = (st.st_uid, st.st_gid, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    want = (uid, gid, kind, mode)
    assert got == want, "%s: got uid %d gid %d type %o mode %o, want uid %d " \
        "gid %d type %o mode %o" % ((path,) + got + want)


def test_owner_and_mode_reach_the_kernel(m, m2):
    os.mkdir(m.path("perm"), 0o755)
    make_box(m, "perm/a", 0o700)
    make_box(m, "perm/b", 0o755)
    for mnt in (m, m2):     # the store's values, not this mount's memory
        check_owner(mnt.path("perm/a"), A, A, 0o700, stat.S_IFDIR)
        check_owner(mnt.path("perm/a/new"), A, A, 0o700, stat.S_IFDIR)
        check_owner(mnt.path("perm/a/new/1.msg"), A, A, 0o600, stat.S_IFREG)
        check_owner(mnt.path("perm/b/new/1.msg"), A, A, 0o600, stat.S_IFREG)
        check_owner(mnt.mnt, 0, 0, 0o755, stat.S_IFDIR)


def test_other_user_is_refused(m, m2):
    for mnt in (m, m2):
        a, b = mnt.path("perm/a"), mnt.path("perm/b")
        # A 0700 mailbox: nothing inside it can even be reached.
        expect_as(NOBODY, NOBODY, (errno.EACCES,), os.listdir, a)
        expect_as(NOBODY, NOBODY, (errno.EACCES,), read, a + "/new/1.msg")
        expect_as(NOBODY, NOBODY, (errno.EACCES,), os.unlink, a + "/new/1.msg")
        expect_as(NOBODY, NOBODY, (errno.EACCES,), os.stat, a + "/new/1.msg")
        # A 0755 mailbox: the names are visible, but the 0600 message is
        # not readable, and only its owner may change or remove it.
        assert os.listdir(b + "/new") == ["1.msg"]
        assert as_user(NOBODY, NOBODY, os.listdir, b + "/new") == ["1.msg"]
        expect_as(NOBODY, NOBODY, (errno.EACCES,), read, b + "/new/1.msg")
        expect_as(NOBODY, NOBODY, (errno.EACCES, errno.EPERM), os.unlink,
                  b + "/new/1.msg")
        expect_as(NOBODY, NOBODY, (errno.EACCES,), os.rename,
                  b + "/new/1.msg", b + "/cur/1.msg:2,S")
        expect_as(NOBODY, NOBODY, (errno.EPERM,), os.chmod, b + "/new/1.msg",
                  0o644)
        expect_as(NOBODY, NOBODY, (errno.EPERM,), os.chmod, b, 0o777)
        expect_as(NOBODY, NOBODY, (errno.EACCES,), deliver, b, "evil", b"x")
        expect_as(NOBODY, NOBODY, (errno.EACCES,), os.mkdir,
                  mnt.path("perm/c"))
    # Nothing was changed by any of it.
    check_owner(m.path("perm/b/new/1.msg"), A, A, 0o600, stat.S_IFREG)
    check_owner(m.path("perm/b"), A, A, 0o755, stat.S_IFDIR)
    assert read(m.path("perm/b/new/1.msg")) == BODY


def test_owner_can_read_list_and_remove(m, m2):
    a = m.path("perm/a")
    assert as_user(A, A, read, a + "/new/1.msg") == BODY
    assert as_user(A, A, os.listdir, a + "/new") == ["1.msg"]
    as_user(A, A, os.rename, a + "/new/1.msg", a + "/cur/1.msg:2,S")
    # The other mount hears of each change by the store's notice, within
    # milliseconds but not synchronously: look until it has.
    eventually(lambda: as_user(A, A, read, m2.path("perm/a/cur/1.msg:2,S"))
               == BODY, "m2 to read the renamed message")
    as_user(A, A, os.chmod, a + "/cur/1.msg:2,S", 0o640)
    eventually(lambda: check_owner(m2.path("perm/a/cur/1.msg:2,S"), A, A,
                                   0o640, stat.S_IFREG) or True,
               "m2 to show the new mode")
    as_user(A, A, os.unlink, a + "/cur/1.msg:2,S")
    assert as_user(A, A, os.listdir, a + "/cur") == []
    eventually(lambda: os.listdir(m2.path("perm/a/cur")) == [],
               "m2 to see the unlink")


def eventually(pred, what, timeout=2.0):
    """Retry |pred| (exceptions count as not yet) until it holds."""
    end = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
            err = "%s: still false" % what
        except (OSError, AssertionError) as e:
            err = "%s: %s" % (what, e)
        if time.monotonic() > end:
            raise AssertionError("after %.1fs, %s" % (timeout, err))
        time.sleep(0.02)


def test_new_entries_get_caller_and_setgid_group(m, m2):
    sg = m.path("perm/shared")
    os.mkdir(sg)
    os.chown(sg, 0, GROUP)
    os.chmod(sg, 0o2775)

    def make():
        os.mkdir(sg + "/box", 0o770)
        for sub in ("tmp", "new", "cur"):
            os.mkdir(sg + "/box/" + sub, 0o770)
        deliver(sg + "/box", "g.msg", b"group\n")
        os.mkdir(sg + "/own", 0o700)
    as_user(A, A, make, groups=(GROUP,))

    def checks(mnt):
        # Under a set-group-ID directory: the parent's group, and
        # directories carry the bit on, as ext4 does.
        check_owner(mnt.path("perm/shared/box"), A, GROUP, 0o2770, stat.S_IFDIR)
        check_owner(mnt.path("perm/shared/box/new"), A, GROUP, 0o2770,
                    stat.S_IFDIR)
        check_owner(mnt.path("perm/shared/box/new/g.msg"), A, GROUP, 0o600,
                    stat.S_IFREG)
        # Elsewhere: the caller's own uid and gid.
        check_owner(mnt.path("perm/shared/own"), A, GROUP, 0o2700, stat.S_IFDIR)
        check_owner(mnt.path("perm/a/new"), A, A, 0o700, stat.S_IFDIR)
        return True
    checks(m)
    eventually(lambda: checks(m2), "the other mount to show the owners")


def main():
    r = mstlib.Runner("perms")
    os.umask(0)         # modes below are exactly what each call asks for
    store = mstlib.Store().start()
    # allow_other only: default_permissions must be on without asking.
    m = mstlib.Mount(store.addr, "allow_other").start()
    # Asking for it as well still mounts.
    m2 = mstlib.Mount(store.addr, "allow_other,default_permissions").start()
    for t in (test_owner_and_mode_reach_the_kernel, test_other_user_is_refused,
              test_owner_can_read_list_and_remove,
              test_new_entries_get_caller_and_setgid_group):
        r.run(t, m, m2)
    m2.unmount()
    m.unmount()
    store.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
