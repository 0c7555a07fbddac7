#!/usr/bin/env python3
"""Maildirs recognised by their shape at any depth, with default mount
options: user/, domain/user/, home/user/Maildir/ and a Maildir++ folder
home/user/Maildir/.Sent/. First a Python tmp/ + link() delivery into each
(Postfix's sequence, with tmp/ and new/ made on the fly and no cur/ yet),
then real Postfix virtual(8) delivering to each from virtual_mailbox_maps
entries ending in '/'. Every message must be a message of the store (seen
through a second mount, immutable, renamed new/ -> cur/ as a flag
change) with its body intact."""
import errno
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "lab"))
import postfixlib  # noqa: E402
from mstlib import expect_errno, wait_until  # noqa: E402

UID = 5000
# (number, Maildir relative to the mount, top directory the administrator
# makes for the mail uid): 1-4 for the Python deliveries, 5-8 for Postfix
# (address N-4@example.com).
LAYOUTS = [
    (1, "u1/", "u1"),
    (2, "example.com/u2/", "example.com"),
    (3, "home/u3/Maildir/", "home"),
    (4, "home/u4/Maildir/.Sent/", "home"),
]
PF_LAYOUTS = [
    (5, "u5/", "u5"),
    (6, "example.com/u6/", "example.com"),
    (7, "home/u7/Maildir/", "home"),
    (8, "home/u8/Maildir/.Sent/", "home"),
]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def prepare(m, layouts):
    """The administrator's part: top directories owned by the mail uid."""
    for _, _, top in layouts:
        d = m.path(top)
        if not os.path.isdir(d):
            os.makedirs(d)
            os.chown(d, UID, UID)


def as_mail_uid(fn, *args):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(UID)
            os.setuid(UID)
            fn(*args)
            os._exit(0)
        except BaseException as e:  # noqa: B902 - report, never escape
            print("child:", repr(e), flush=True)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "%s%r as uid %d failed" % (fn.__name__, args, UID)


def postfix_like_delivery(maildir, name, body):
    """What virtual(8) does: open tmp/NAME, making tmp/ (and its parents)
    on ENOENT; write, fsync; link into new/, making new/ on ENOENT."""
    tmp = os.path.join(maildir, "tmp", name)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.join(maildir, "tmp"), 0o700)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    new = os.path.join(maildir, "new", name)
    try:
        os.link(tmp, new)
    except FileNotFoundError:
        os.mkdir(os.path.join(maildir, "new"), 0o700)
        os.link(tmp, new)
    os.unlink(tmp)


def check_message(m, m2, maildir, name, body):
    """|name| in |maildir|/new is a message of the store: the same bytes
    through the other mount, immutable, and its new/ -> cur/ rename is a
    flag change within its own folder."""
    new = m.path(maildir, "new", name)
    assert read(new) == body, "%s: body differs" % new
    assert read(m2.path(maildir, "new", name)) == body
    st = os.stat(new)
    assert st.st_ino < (1 << 56), "%s: a local file, not in the store" % new
    expect_errno(errno.EPERM, os.open, new, os.O_WRONLY)
    if not os.path.exists(m.path(maildir, "cur")):   # Postfix makes one
        os.mkdir(m.path(maildir, "cur"), 0o700)
        os.chown(m.path(maildir, "cur"), UID, UID)
    os.rename(new, m.path(maildir, "cur", name + ":2,S"))
    assert os.stat(m.path(maildir, "cur", name + ":2,S")).st_ino == st.st_ino
    wait_until(lambda: os.listdir(m2.path(maildir, "cur")) == [name + ":2,S"],
               5, "the flag change on the other mount")
    assert os.listdir(m2.path(maildir, "new")) == []


def test_python_delivery_into_each_layout(m, m2):
    prepare(m, LAYOUTS)
    for n, maildir, _ in LAYOUTS:
        body = b"From: t@example.com\nSubject: layout %d\n\nbody %s\n" % (
            n, maildir.encode())
        as_mail_uid(postfix_like_delivery, m.path(maildir), "m%d.host" % n,
                    body)
        assert sorted(os.listdir(m.path(maildir))) == ["new", "tmp"]
        check_message(m, m2, maildir, "m%d.host" % n, body)
    # The Maildir++ folder is not part of its mailbox's INBOX.
    assert os.listdir(m.path("home/u4/Maildir")) == [".Sent"]


class LayoutPostfix(postfixlib.Postfix):
    """postfixlib's private instance with our own virtual_mailbox_maps."""

    def _write_config(self):
        super()._write_config()
        vmb = os.path.join(self.conf, "vmailbox")
        with open(vmb, "w") as f:
            for n, maildir, _ in PF_LAYOUTS:
                f.write("%d@example.com %s\n" % (n - 4, maildir))
        import subprocess
        subprocess.run(["postmap", "-c", self.conf, vmb], check=True)


def test_postfix_delivers_into_each_layout(m, m2):
    prepare(m, PF_LAYOUTS)
    pf = LayoutPostfix(mstlib.tmpdir("mst-postfix-"), m.mnt, mstlib.free_port(),
                       users=1, addresses=4, uid=UID)
    pf.start()
    try:
        # smtp-source -N: message N goes to N@example.com.
        pf.send(4, 1, size=2000)

        def arrived():
            pf.flush()
            return all(os.path.isdir(m.path(md, "new")) and
                       os.listdir(m.path(md, "new"))
                       for _, md, _ in PF_LAYOUTS)
        try:
            wait_until(arrived, 40, "Postfix to deliver into every layout")
        except TimeoutError:
            print(pf.log_tail(30))
            raise
        bodies = set()
        for n, maildir, _ in PF_LAYOUTS:
            names = os.listdir(m.path(maildir, "new"))
            assert len(names) == 1, "%s: %r" % (maildir, names)
            data = read(m.path(maildir, "new", names[0]))
            head, _, body = data.partition(b"\n\n")
            assert b"Delivered-To: %d@example.com" % (n - 4) in head, head
            assert len(body) > 1500, "%s: short body %d" % (maildir, len(body))
            bodies.add(body)
            check_message(m, m2, maildir, names[0], data)
        assert len(bodies) == 1, "bodies differ between layouts"
        assert "status=sent" in pf.log_tail(40)
    finally:
        pf.stop()


def main():
    r = mstlib.Runner("layouts", limit=90)
    if not postfixlib.have_postfix():
        print("layouts: Postfix is not installed (tools/install-deps installs it)")
        print("layouts: 0 passed, 1 failed")
        return 1
    store = mstlib.Store().start()
    # Default options: no layout needs one.
    m = mstlib.Mount(store.addr, "allow_other").start()
    m2 = mstlib.Mount(store.addr, "allow_other").start()
    for t in (test_python_delivery_into_each_layout,
              test_postfix_delivers_into_each_layout):
        r.run(t, m, m2)
    m2.unmount()
    m.unmount()
    store.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
