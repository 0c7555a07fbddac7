#!/usr/bin/env python3
"""Integration tests of mount.mstore on a real mstored: the Postfix and
qmail delivery sequences, flag renames and expunges, errors, direct
creates, dotlock files, inode numbers, directory mtimes, two mounts of one
store, a store outage and a dotlock race across two mounts."""
import errno
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
from mstlib import expect_errno  # noqa: E402

BOX = "example.com/al"


def maildir(m, box=BOX):
    for sub in ("", "/tmp", "/new", "/cur"):
        os.makedirs(m.path(box + sub), mode=0o700, exist_ok=True)


def write_tmp(m, name, body, box=BOX):
    """open(O_CREAT|O_EXCL), write, fsync, fstat, close: Postfix's first
    half. Returns the tmp file's inode number."""
    fd = os.open(m.path(box, "tmp", name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        assert os.write(fd, body) == len(body)
        os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_ino


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_postfix_sequence(m):
    maildir(m)
    body = b"From: a@b\nSubject: hi\n\n" + b"x" * 5000 + b"\n"
    ino1 = write_tmp(m, "1.V1I1.host", body)
    ino2 = write_tmp(m, "2.V1I2.host", b"other")
    assert ino1 != ino2 and ino1 and ino2, "tmp inodes must be unique"
    expect_errno(errno.EEXIST, os.open, m.path(BOX, "tmp", "1.V1I1.host"),
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    name = "1.V%xI%x.host" % (os.stat(m.mnt).st_dev, ino1)
    os.link(m.path(BOX, "tmp", "1.V1I1.host"), m.path(BOX, "new", name))
    os.unlink(m.path(BOX, "tmp", "1.V1I1.host"))
    expect_errno(errno.ENOENT, os.stat, m.path(BOX, "tmp", "1.V1I1.host"))
    assert read(m.path(BOX, "new", name)) == body
    assert os.stat(m.path(BOX, "new", name)).st_size == len(body)
    # A duplicate final name is EEXIST; a missing source ENOENT.
    expect_errno(errno.EEXIST, os.link, m.path(BOX, "tmp", "2.V1I2.host"),
                 m.path(BOX, "new", name))
    expect_errno(errno.ENOENT, os.link, m.path(BOX, "tmp", "nothere"),
                 m.path(BOX, "new", "x"))
    os.unlink(m.path(BOX, "tmp", "2.V1I2.host"))
    assert name in os.listdir(m.path(BOX, "new"))
    assert os.listdir(m.path(BOX, "tmp")) == []


def test_qmail_rename_then_flags_and_expunge(m):
    # The rename() delivery of qmail-style writers; Exim's appendfile
    # (maildir_format) delivers the same way, which mount.mstore(8) cites.
    maildir(m)
    write_tmp(m, "q1", b"qmail body\n")
    os.rename(m.path(BOX, "tmp", "q1"), m.path(BOX, "new", "q1.host"))
    expect_errno(errno.ENOENT, os.stat, m.path(BOX, "tmp", "q1"))
    assert read(m.path(BOX, "new", "q1.host")) == b"qmail body\n"
    ino = os.stat(m.path(BOX, "new", "q1.host")).st_ino
    # IMAP's first look: new/ -> cur/ with flags, then a flag change.
    os.rename(m.path(BOX, "new", "q1.host"), m.path(BOX, "cur", "q1.host:2,"))
    expect_errno(errno.ENOENT, os.stat, m.path(BOX, "new", "q1.host"))
    os.rename(m.path(BOX, "cur", "q1.host:2,"), m.path(BOX, "cur", "q1.host:2,S"))
    st = os.stat(m.path(BOX, "cur", "q1.host:2,S"))
    assert st.st_ino == ino, "a rename keeps the inode number"
    assert read(m.path(BOX, "cur", "q1.host:2,S")) == b"qmail body\n"
    expect_errno(errno.ENOENT, os.rename, m.path(BOX, "cur", "gone"),
                 m.path(BOX, "cur", "gone2"))
    os.unlink(m.path(BOX, "cur", "q1.host:2,S"))
    expect_errno(errno.ENOENT, os.stat, m.path(BOX, "cur", "q1.host:2,S"))
    expect_errno(errno.ENOENT, os.unlink, m.path(BOX, "cur", "q1.host:2,S"))


def test_message_is_immutable(m):
    maildir(m)
    write_tmp(m, "im", b"fixed")
    os.rename(m.path(BOX, "tmp", "im"), m.path(BOX, "new", "im"))
    expect_errno(errno.EPERM, os.open, m.path(BOX, "new", "im"), os.O_WRONLY)
    assert read(m.path(BOX, "new", "im")) == b"fixed"
    time.sleep(0.2)     # the kernel drops the renamed entry: a fresh lookup
    expect_errno(errno.EPERM, os.open, m.path(BOX, "new", "im"), os.O_WRONLY)
    assert os.stat(m.path(BOX, "new", "im")).st_ino < (1 << 56)


def test_direct_create_in_new_is_delivered_at_close(m):
    maildir(m)
    fd = os.open(m.path(BOX, "new", "direct.host"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"direct ")
    os.write(fd, b"delivery\n")
    os.close(fd)
    assert read(m.path(BOX, "new", "direct.host")) == b"direct delivery\n"


def test_dir_mtime_changes_with_contents(m):
    maildir(m)
    before = os.stat(m.path(BOX, "new")).st_mtime_ns
    time.sleep(0.01)
    write_tmp(m, "mt", b"m")
    os.rename(m.path(BOX, "tmp", "mt"), m.path(BOX, "new", "mt.host"))
    after = os.stat(m.path(BOX, "new")).st_mtime_ns
    assert after > before, "new/ mtime %d -> %d" % (before, after)


def test_dovecot_files_lock_and_rename_over(m):
    maildir(m)
    lock = m.path(BOX, "dovecot-uidlist.lock")
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    expect_errno(errno.EEXIST, os.open, lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, b"3 V1 N2\n1 a\n")
    os.close(fd)
    os.rename(lock, m.path(BOX, "dovecot-uidlist"))
    expect_errno(errno.ENOENT, os.stat, lock)
    assert read(m.path(BOX, "dovecot-uidlist")) == b"3 V1 N2\n1 a\n"
    # Rewrite in place, append, truncate: whole-file semantics.
    with open(m.path(BOX, "dovecot-uidlist"), "ab") as f:
        f.write(b"2 b\n")
    assert read(m.path(BOX, "dovecot-uidlist")) == b"3 V1 N2\n1 a\n2 b\n"
    os.truncate(m.path(BOX, "dovecot-uidlist"), 8)
    assert read(m.path(BOX, "dovecot-uidlist")) == b"3 V1 N2\n"
    with open(m.path(BOX, "maildirfolder"), "wb"):
        pass
    assert os.stat(m.path(BOX, "maildirfolder")).st_size == 0


def test_owner_and_mode_are_kept(m):
    maildir(m)
    os.makedirs(m.path("example.com/own/tmp"), exist_ok=True)
    os.makedirs(m.path("example.com/own/new"), exist_ok=True)
    # The kernel checks owners and modes: uid 5000 needs its own Maildir.
    for d in ("own", "own/tmp", "own/new"):
        os.chown(m.path("example.com", d), 5000, 5000)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(5000)
            os.setuid(5000)
            fd = os.open(m.path("example.com/own/tmp/o1"),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, b"owned")
            os.close(fd)
            os.link(m.path("example.com/own/tmp/o1"), m.path("example.com/own/new/o1"))
            os.unlink(m.path("example.com/own/tmp/o1"))
            os._exit(0)
        except BaseException as e:
            print("child:", e, flush=True)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "uid 5000 delivery failed"
    st = os.stat(m.path("example.com/own/new/o1"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (5000, 5000, 0o600), st


def test_large_message_spools_and_spans_frames(m):
    """5 MiB: over the 1 MiB memory limit of a tmp/ file (it spills to the
    spool) and over the 1 MiB frame (the body goes in DATA frames)."""
    maildir(m)
    body = bytes((i * 7 + i // 4096) & 0xFF for i in range(5 << 20))
    write_tmp(m, "big", body)
    os.rename(m.path(BOX, "tmp", "big"), m.path(BOX, "new", "big.host"))
    assert read(m.path(BOX, "new", "big.host")) == body
    write_tmp(m, "big2", body[::-1])
    os.link(m.path(BOX, "tmp", "big2"), m.path(BOX, "new", "big2.host"))
    os.unlink(m.path(BOX, "tmp", "big2"))
    assert read(m.path(BOX, "new", "big2.host")) == body[::-1]


def test_statfs(m):
    sv = os.statvfs(m.mnt)
    assert sv.f_blocks > 0 and sv.f_namemax == 255


def _helper_pids(mnt):
    """PIDs of mount.mstore processes serving |mnt| (the daemon mount(8)
    started for this test: its command line names our private mount
    point)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"mount.mstore") and mnt.encode() in argv:
            pids.append(int(d))
    return pids


def test_fstab_mount_and_umount(store):
    """mount -T FSTAB (an fstab of our own, so /etc/fstab is untouched)
    runs /sbin/mount.mstore as mount(8) does; umount ends it cleanly."""
    import subprocess
    helper = "/sbin/mount.mstore"
    made_link = False
    if not os.path.exists(helper):
        os.symlink(mstlib.MOUNT, helper)
        made_link = True
    mnt = mstlib.tmpdir("mst-fstab-")
    fstab = os.path.join(mstlib.tmpdir("mst-fstab-etc-"), "fstab")
    with open(fstab, "w") as f:
        f.write("%s %s mstore _netdev,allow_other,timeout=3 0 0\n" % (store.addr, mnt))
    try:
        r = subprocess.run(["mount", "-T", fstab, mnt], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, "mount -T: %s%s" % (r.stdout, r.stderr)
        assert mstlib._mounted(mnt)
        with open("/proc/self/mountinfo") as f:
            line = [l for l in f if l.split()[4] == mnt][0]
        assert "fuse.mstore" in line, line
        pids = _helper_pids(mnt)
        assert len(pids) == 1, pids
        os.makedirs(os.path.join(mnt, "fstab.test/u/tmp"), exist_ok=True)
        os.makedirs(os.path.join(mnt, "fstab.test/u/new"), exist_ok=True)
        with open(os.path.join(mnt, "fstab.test/u/tmp/f1"), "wb") as f:
            f.write(b"via fstab\n")
        os.rename(os.path.join(mnt, "fstab.test/u/tmp/f1"),
                  os.path.join(mnt, "fstab.test/u/new/f1"))
        r = subprocess.run(["umount", mnt], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, "umount: %s" % r.stderr
        assert not mstlib._mounted(mnt)
        mstlib.wait_until(lambda: not os.path.exists("/proc/%d" % pids[0]), 10,
                          "mount.mstore to exit after umount")
    finally:
        if mstlib._mounted(mnt):
            subprocess.run(["umount", "-l", mnt], check=False)
        for pid in _helper_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        if made_link:
            os.unlink(helper)


def main():
    r = mstlib.Runner("mount")
    store = mstlib.Store().start()
    m = mstlib.Mount(store.addr, "allow_other").start()
    for t in (test_postfix_sequence, test_qmail_rename_then_flags_and_expunge,
              test_message_is_immutable,
              test_direct_create_in_new_is_delivered_at_close,
              test_dir_mtime_changes_with_contents,
              test_dovecot_files_lock_and_rename_over,
              test_owner_and_mode_are_kept,
              test_large_message_spools_and_spans_frames, test_statfs):
        r.run(t, m)
    r.run(test_fstab_mount_and_umount, store)
    m.unmount()
    store.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
