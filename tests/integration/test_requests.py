#!/usr/bin/env python3
"""What a delivery costs through mount.mstore, in requests: the mount's
own counters (the root's user.mstore.requests) are read around each
Maildir delivery and the counts asserted, never timings. Large writes
are one WRITE each; a write(2) to a tmp/ file costs no GETXATTR; one
delivery by a lone writer is one DELIVER to the store, whatever the
size, also for a body spooled to disk, and into a quiet mailbox too (no
LOOKUP per directory of the path: notices keep their attributes); a
body of 256 KiB or more written in pieces travels while it is written
(SPOOLs of 256 KiB) and the link is one COMMIT of it, and a spool lost
with a store restart or a mount killed mid-body delivers the message
once, or not at all; one of a file removed, replaced within tmp/ or
PUT outside new/ and cur/ is dropped. In a
busy mailbox (other deliveries under way in its tmp/) the fsync of the
tmp/ file STAGEs a body of 64 KiB or more, outside any directory lock,
and the link() or rename() only COMMITs the name; there a file changed
after its fsync, or never fsynced, is one DELIVER, and a staged file
removed instead is dropped from the store. Every body arrives intact; a
write still clears the set-user-ID bit; the routing view still
answers."""
import mmap
import os
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

BOX = "example.com/req"

# The mount of the cases that count requests. With the default 1 s
# attribute timeout the kernel asks again for the root's attributes once
# a second, and the root (whose own changes no notice reports) is asked
# of the store: one LOOKUP that has nothing to do with the delivery,
# counted whenever a case's window spans that second, as it often does
# on a loaded host. With the caches kept for an hour nothing outside the
# delivery is asked within a case, so every store request counted is
# the delivery's own. What a delivery costs once the caches have run out
# is test_quiet_mailbox_costs_no_lookup_per_directory's, on a mount with
# the default timeout.
STEADY = "attr_timeout=3600"
# Every mount here takes the writes itself: with the kernel's
# passthrough (test_passthrough.py) a tmp/ file's writes, and so its
# WRITEs and SPOOLs, never reach the mount.
OWN = "allow_other,nopassthrough"


def counters(m):
    out = {}
    for line in os.getxattr(m.mnt, "user.mstore.requests").decode().splitlines():
        side, name, val = line.split()
        out["%s %s" % (side, name)] = int(val)
    return out


class Count:
    """The requests made between enter and exit, less those that read
    the counters."""

    def __init__(self, m):
        self.m = m

    def __enter__(self):
        c0 = counters(self.m)
        self.before = counters(self.m)
        self.reading = {k: self.before.get(k, 0) - c0.get(k, 0)
                        for k in self.before}
        return self

    def __exit__(self, *exc):
        after = counters(self.m)
        self.d = {k: after.get(k, 0) - self.before.get(k, 0) -
                  self.reading.get(k, 0) for k in after}
        return False

    def __getitem__(self, k):
        return self.d.get(k, 0)


def maildir(m):
    for sub in ("", "/tmp", "/new", "/cur"):
        os.makedirs(m.path(BOX + sub), mode=0o700, exist_ok=True)


def body_of(size, seed):
    return bytes(((i * 31 + seed) >> 3) & 0xff for i in range(size))


def deliver(m, name, body, chunk):
    """Postfix's sequence: open O_EXCL, fstat, write in |chunk| pieces,
    fsync, close, link into new/, unlink."""
    tmp, dst = m.path(BOX, "tmp", name), m.path(BOX, "new", name)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.fstat(fd)
        for off in range(0, len(body), chunk):
            assert os.write(fd, body[off:off + chunk]) == len(body[off:off + chunk])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, dst)
    os.unlink(tmp)
    return dst


def one_deliver(c):
    """A lone writer: one DELIVER and no other store request (PING: the
    health check, once a second, not the delivery's)."""
    assert c["store DELIVER"] == 1, c.d
    store = sum(v for k, v in c.d.items()
                if k.startswith("store ") and k != "store PING")
    assert store == 1, "store requests besides the DELIVER: %r" % c.d


class Busy:
    """Another delivery under way in the mailbox's tmp/ (a file written
    and not yet linked), as when several writers deliver into it."""

    def __init__(self, m, name="other"):
        self.path = m.path(BOX, "tmp", name)

    def __enter__(self):
        with open(self.path, "wb") as f:
            f.write(b"another delivery\n")
        return self

    def __exit__(self, *exc):
        os.unlink(self.path)
        return False


def staged_then_committed(c):
    """One STAGE (at fsync) and one COMMIT (at link or rename), and no
    other store request (PING: the health check, once a second, not the
    delivery's)."""
    assert c["store STAGE"] == 1, c.d
    assert c["store COMMIT"] == 1, c.d
    assert c["store DELIVER"] == 0, c.d
    store = sum(v for k, v in c.d.items()
                if k.startswith("store ") and k != "store PING")
    assert store == 2, "store requests besides STAGE, COMMIT: %r" % c.d


def spooled_then_committed(c, pieces):
    """|pieces| SPOOLs while the file was written, one COMMIT at link,
    and no other store request (PING: the health check)."""
    assert c["store SPOOL"] == pieces, c.d
    assert c["store COMMIT"] == 1, c.d
    assert c["store DELIVER"] == 0, c.d
    store = sum(v for k, v in c.d.items()
                if k.startswith("store ") and k != "store PING")
    assert store == pieces + 1, "store requests besides SPOOL, COMMIT: %r" % c.d


def check_arrived(path, body):
    with open(path, "rb") as f:
        got = f.read()
    assert got == body, "%s: %d bytes back, %d written%s" % (
        path, len(got), len(body),
        "" if len(got) != len(body) else ", contents differ")


def test_one_mib_in_4k_writes(m):
    maildir(m)
    body = body_of(1 << 20, 1)
    deliver(m, "warm", b"warm\n", 4096)     # the Maildir's first delivery
    with Count(m) as c:
        dst = deliver(m, "1m.4k", body, 4096)
    check_arrived(dst, body)
    assert c["kernel WRITE"] == 256, c.d
    assert c["kernel WRITE_BYTES"] == 1 << 20, c.d
    assert c["kernel GETXATTR"] == 0, "GETXATTR per write: %r" % c.d
    # The body went to the store in 256 KiB pieces as it was written.
    spooled_then_committed(c, 4)
    # create (with its lookup), fsync, release, link (with its lookup),
    # unlink, forget, and the kernel's permission checks on tmp/, new/.
    other = sum(v for k, v in c.d.items() if k.startswith("kernel ") and
                k not in ("kernel WRITE", "kernel WRITE_BYTES"))
    assert other <= 12, "kernel requests besides WRITE: %r" % c.d


def test_quiet_mailbox_costs_no_lookup_per_directory(m):
    """Deliveries 1.3 s apart, past the 1 s attribute cache: the watched
    directories on the path (the domain, the mailbox, its tmp/) answer
    from memory, kept fresh by notices. Only the root, whose own changes
    no notice reports, may be asked again (once a second at most)."""
    maildir(m)
    deliver(m, "q0", b"quiet\n", 4096)
    for i in range(2):
        time.sleep(1.3)
        with Count(m) as c:
            dst = deliver(m, "q%d" % (i + 1), b"quiet\n", 4096)
        check_arrived(dst, b"quiet\n")
        assert c["store DELIVER"] == 1, c.d
        assert c["store LOOKUP"] <= 1, "path walk asked the store: %r" % c.d
        other = sum(v for k, v in c.d.items() if k.startswith("store ") and
                    k not in ("store DELIVER", "store LOOKUP", "store PING"))
        assert other == 0, c.d


def test_chmod_from_another_mount_is_seen(m, m2):
    """...and a change made through another mount reaches them by a
    notice, not by the cache running out."""
    maildir(m)
    # Open descriptors: fstat finds no new name to look up, only the
    # attributes the mount keeps.
    fds = [os.open(m.path(BOX), os.O_RDONLY | os.O_DIRECTORY),
           os.open(m.path(BOX, "tmp"), os.O_RDONLY | os.O_DIRECTORY)]
    try:
        os.stat(m.path(BOX, "tmp", "."))
        time.sleep(1.5)     # watches in place, attribute caches run out
        os.stat(m.path(BOX, "tmp", "."))
        os.chmod(m2.path(BOX), 0o750)
        os.chmod(m2.path(BOX, "tmp"), 0o710)
        mstlib.wait_until(
            lambda: stat.S_IMODE(os.fstat(fds[0]).st_mode) == 0o750 and
            stat.S_IMODE(os.fstat(fds[1]).st_mode) == 0o710 and
            stat.S_IMODE(os.stat(m.path(BOX)).st_mode) == 0o750 and
            stat.S_IMODE(os.stat(m.path(BOX, "tmp")).st_mode) == 0o710,
            5, "the other mount's chmod to be seen")
    finally:
        for fd in fds:
            os.close(fd)
        os.chmod(m2.path(BOX, "tmp"), 0o700)
        os.chmod(m2.path(BOX), 0o700)


def test_one_mib_in_one_write_is_one_write_request(m):
    """max_write and max_pages are 1 MiB: a page-aligned 1 MiB write(2)
    is one WRITE; an unaligned one spans 257 pages and takes two."""
    maildir(m)
    body = body_of(1 << 20, 2)
    aligned = mmap.mmap(-1, len(body))
    aligned[:] = body
    tmp = m.path(BOX, "tmp", "1m.1")
    with Count(m) as c:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        assert os.write(fd, aligned) == len(body)
        os.fsync(fd)
        os.close(fd)
    check_arrived(tmp, body)
    assert c["kernel WRITE"] == 1, "max_write below 1 MiB: %r" % c.d
    os.unlink(tmp)
    with Count(m) as c:
        dst = deliver(m, "1m.2", body, 1 << 20)
    check_arrived(dst, body)
    assert c["kernel WRITE"] <= 2, c.d
    one_deliver(c)


def test_spooled_body_is_staged_whole(m):
    """Past 1 MiB the body lives in a spool file and goes to the store
    from a mapping of it, in one STAGE (a busy mailbox)."""
    maildir(m)
    size = 3 * (1 << 20) + 4321
    body = body_of(size, 3)
    with Busy(m), Count(m) as c:
        dst = deliver(m, "3m.64k", body, 64 << 10)
    check_arrived(dst, body)
    assert c["kernel WRITE"] == (size + (64 << 10) - 1) // (64 << 10), c.d
    assert c["kernel GETXATTR"] == 0, c.d
    staged_then_committed(c)


def test_dovecot_rename_costs_the_same(m):
    maildir(m)
    body = body_of(64 << 10, 4)
    tmp, dst = m.path(BOX, "tmp", "dv.1"), m.path(BOX, "new", "dv.1")
    with Count(m) as c:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        for off in range(0, len(body), 8192):
            os.write(fd, body[off:off + 8192])
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, dst)
    check_arrived(dst, body)
    assert c["kernel WRITE"] == 8, c.d
    assert c["kernel GETXATTR"] == 0, c.d
    one_deliver(c)


def test_busy_mailbox_stages_at_fsync_and_commits_at_link(m):
    """With another delivery under way in tmp/, fsync STAGEs a body of
    64 KiB or more and link() (Postfix) or rename() (Dovecot LDA) only
    COMMITs the name; a 4 KiB body is one DELIVER still."""
    maildir(m)
    body = body_of(64 << 10, 5)
    with Busy(m):
        with Count(m) as c:
            dst = deliver(m, "busy.small", body[:4096], 4096)
        check_arrived(dst, body[:4096])
        one_deliver(c)
        with Count(m) as c:
            dst = deliver(m, "busy.link", body, 4096)
        check_arrived(dst, body)
        staged_then_committed(c)
        tmp, dst = m.path(BOX, "tmp", "busy.mv"), m.path(BOX, "new", "busy.mv")
        with Count(m) as c:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, body)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, dst)
        check_arrived(dst, body)
        staged_then_committed(c)


def test_staged_body_that_no_longer_fits_is_delivered_whole(m):
    """In a busy mailbox, a tmp/ file written again after its fsync, or
    never fsynced, is one DELIVER at link(): the store never names a body
    the file no longer holds. A staged file removed instead of linked is
    dropped from the store (UNLINK)."""
    maildir(m)
    tmp = m.path(BOX, "tmp", "chg")
    big = body_of(64 << 10, 6)      # staged from 64 KiB
    with Busy(m):
        with Count(m) as c:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, big)
            os.fsync(fd)
            os.write(fd, b"second\n")
            os.close(fd)
            os.link(tmp, m.path(BOX, "new", "chg"))
            os.unlink(tmp)
        check_arrived(m.path(BOX, "new", "chg"), big + b"second\n")
        assert c["store STAGE"] == 1 and c["store DELIVER"] == 1, c.d
        assert c["store COMMIT"] == 0 and c["store UNLINK"] == 1, c.d
        with Count(m) as c:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, big)
            os.close(fd)
            os.rename(tmp, m.path(BOX, "new", "nofsync"))
        check_arrived(m.path(BOX, "new", "nofsync"), big)
        assert c["store DELIVER"] == 1 and c["store STAGE"] == 0, c.d
        with Count(m) as c:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, big)
            os.fsync(fd)
            os.close(fd)
            os.unlink(tmp)
        assert c["store STAGE"] == 1 and c["store UNLINK"] == 1, c.d
        assert c["store COMMIT"] == 0 and c["store DELIVER"] == 0, c.d


def test_routing_view_still_answers(m):
    maildir(m)
    assert os.getxattr(m.path(BOX), "user.mstore.server").decode()
    assert "user.mstore.requests" in os.listxattr(m.mnt)


def new_names(m):
    return sorted(os.listdir(m.path(BOX, "new")))


def test_spool_cut_by_a_store_restart_is_delivered_once(m, stores):
    """The store restarts (kill -9) while a 1 MiB body is being written
    and spooled: the spool is gone with the connection, the mount
    reconnects, and the link still delivers the message, once, intact
    (its COMMIT finds no spool and the whole DELIVER goes, or the failed
    SPOOL already told the mount to send it). The new store replaces
    stores[0]."""
    maildir(m)
    body = body_of(1 << 20, 7)
    before = new_names(m)
    tmp, dst = m.path(BOX, "tmp", "cut.1"), m.path(BOX, "new", "cut.1")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        for off in range(0, 512 << 10, 4096):
            os.write(fd, body[off:off + 4096])
        old = stores[0]
        old.kill()
        stores[0] = mstlib.Store(port=old.port, data=old.data).start()
        for off in range(512 << 10, len(body), 4096):
            os.write(fd, body[off:off + 4096])
        os.fsync(fd)
    finally:
        os.close(fd)
    deadline = time.time() + 20
    while True:     # link() fails with EIO until the mount is back
        try:
            os.link(tmp, dst)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    os.unlink(tmp)
    check_arrived(dst, body)
    assert new_names(m) == sorted(before + ["cut.1"]), new_names(m)


def test_mount_killed_mid_body_delivers_nothing(store, m):
    """A mount killed (kill -9) while a body is being spooled: its
    connection ends, the store drops the spool, and no message appears;
    the store serves the next delivery."""
    maildir(m)
    before = new_names(m)
    k = mstlib.Mount(store.addr, OWN).start()
    fd = os.open(k.path(BOX, "tmp", "killed.1"),
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    body = body_of(768 << 10, 8)
    for off in range(0, len(body), 4096):
        os.write(fd, body[off:off + 4096])
    k.proc.kill()
    k.proc.wait()
    try:
        os.close(fd)
    except OSError:
        pass
    k.unmount()
    time.sleep(0.5)
    assert new_names(m) == before, new_names(m)
    dst = deliver(m, "after.kill", body, 4096)
    check_arrived(dst, body)
    assert new_names(m) == sorted(before + ["after.kill"]), new_names(m)


def test_nospool_sends_the_body_at_link(store):
    """With -o nospool a 1 MiB body in 4 KiB writes is one DELIVER."""
    n = mstlib.Mount(store.addr, OWN + ",nospool," + STEADY).start()
    try:
        maildir(n)
        body = body_of(1 << 20, 9)
        deliver(n, "warm.ns", b"warm\n", 4096)
        with Count(n) as c:
            dst = deliver(n, "1m.nospool", body, 4096)
        check_arrived(dst, body)
        one_deliver(c)
    finally:
        n.unmount()


def spools_since(m, c):
    """SPOOLs sent since |c| began."""
    return counters(m).get("store SPOOL", 0) - c.before.get("store SPOOL", 0)


def wait_spools(m, c, n):
    """SPOOLs sent since |c| began, once |n| have been or after 20 s."""
    deadline = time.time() + 20
    while spools_since(m, c) < n and time.time() < deadline:
        time.sleep(0.05)
    return spools_since(m, c)


def write_spooled(m, path):
    """768 KiB in 4 KiB writes to a new file at |path|: three SPOOL
    pieces, which may still be on their way when it returns."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    for off in range(0, 768 << 10, 4096):
        os.write(fd, b"x" * 4096)
    os.close(fd)


def test_writer_in_another_mailbox_turns_spooling_off(m):
    """A 1 MiB body in 4 KiB writes while a file in another mailbox's
    tmp/ is open for writing (another delivery under way on this mount,
    so no core is free for the overlap) is not spooled: one DELIVER at
    link. Once that file is closed, a lone writer's body spools again."""
    maildir(m)
    other = "example.com/req2"
    for sub in ("", "/tmp", "/new", "/cur"):
        os.makedirs(m.path(other + sub), mode=0o700, exist_ok=True)
    body = body_of(1 << 20, 11)
    fd = os.open(m.path(other, "tmp", "writing.1"),
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"another delivery, still being written\n")
        with Count(m) as c:
            dst = deliver(m, "1m.busy-elsewhere", body, 4096)
        check_arrived(dst, body)
        one_deliver(c)
    finally:
        os.close(fd)
        os.unlink(m.path(other, "tmp", "writing.1"))
    with Count(m) as c:
        dst = deliver(m, "1m.alone-again", body, 4096)
    check_arrived(dst, body)
    spooled_then_committed(c, 4)


def test_spool_of_a_file_removed_undelivered_is_dropped(m):
    """A spooled tmp/ file removed instead of linked: nothing is
    delivered, and the store is told to drop the spool (an empty SPOOL
    at offset 0), no other request.

    Every piece goes from a thread that served a WRITE, after the writer
    has its answer, and is counted when it is handed to the connection;
    one piece at a time is sent. A file removed while a piece is on its
    way stops its spool there: the pieces not yet sent never go, and the
    drop goes after the one in flight (or, before the first piece, no
    spool is started at all). So how many pieces go before unlink() is
    timing: the case waits for all three before it removes the file
    (with 768 KiB written they always go), then for the drop, and
    asserts exactly those four."""
    maildir(m)
    before = new_names(m)
    tmp = m.path(BOX, "tmp", "gone.1")
    with Count(m) as c:
        write_spooled(m, tmp)
        pieces = wait_spools(m, c, 3)
        assert pieces == 3, "%d SPOOLs of 768 KiB written" % pieces
        os.unlink(tmp)
        # The drop may still be on its way when unlink() returns: the
        # sender of the last piece sends it after that piece.
        wait_spools(m, c, 4)
    assert c["store SPOOL"] == 4, c.d      # 3 pieces and the drop
    assert c["store DELIVER"] == 0 and c["store COMMIT"] == 0, c.d
    assert new_names(m) == before, new_names(m)


def test_spool_of_a_file_replaced_in_tmp_is_dropped(m):
    """A spooled tmp/ file replaced by rename() within tmp/ was never
    delivered either: its spool is dropped as for an unlink (it was
    left in the store's memory for as long as the connection lasted),
    and the file that replaced it is removed with no request."""
    maildir(m)
    before = new_names(m)
    big = m.path(BOX, "tmp", "replaced.1")
    small = m.path(BOX, "tmp", "replaced.2")
    with Count(m) as c:
        write_spooled(m, big)
        pieces = wait_spools(m, c, 3)
        assert pieces == 3, "%d SPOOLs of 768 KiB written" % pieces
        with open(small, "wb") as f:
            f.write(b"a small body\n")
        os.rename(small, big)
        wait_spools(m, c, 4)
        os.unlink(big)
    assert c["store SPOOL"] == 4, c.d      # 3 pieces and the drop
    assert c["store DELIVER"] == 0 and c["store COMMIT"] == 0, c.d
    assert new_names(m) == before, new_names(m)


def test_spool_of_a_file_put_outside_a_folder_is_dropped(m):
    """A spooled tmp/ file renamed out of tmp/ to a plain file (the
    maildir's own directory, not new/ or cur/) is one PUT of the whole
    body: its spool is of no use then and is dropped (it was left in
    the store's memory for as long as the connection lasted)."""
    maildir(m)
    src, dst = m.path(BOX, "tmp", "put.1"), m.path(BOX, "put.1")
    with Count(m) as c:
        write_spooled(m, src)
        pieces = wait_spools(m, c, 3)
        assert pieces == 3, "%d SPOOLs of 768 KiB written" % pieces
        os.rename(src, dst)
        wait_spools(m, c, 4)
    assert c["store SPOOL"] == 4, c.d      # 3 pieces and the drop
    assert c["store PUT"] == 1, c.d
    assert c["store DELIVER"] == 0 and c["store COMMIT"] == 0, c.d
    with open(dst, "rb") as f:
        assert f.read() == b"x" * (768 << 10)
    os.unlink(dst)


def main():
    r = mstlib.Runner("requests")
    store = mstlib.Store().start()
    m = mstlib.Mount(store.addr, OWN).start()
    m2 = mstlib.Mount(store.addr, OWN).start()
    r.run(test_chmod_from_another_mount_is_seen, m, m2)
    m2.unmount()
    r.run(test_quiet_mailbox_costs_no_lookup_per_directory, m)
    m.unmount()
    # The cases that count requests: a mount whose caches do not run out
    # within a case (see STEADY).
    m = mstlib.Mount(store.addr, OWN + "," + STEADY).start()
    for t in (test_one_mib_in_4k_writes,
              test_one_mib_in_one_write_is_one_write_request,
              test_spooled_body_is_staged_whole,
              test_dovecot_rename_costs_the_same,
              test_busy_mailbox_stages_at_fsync_and_commits_at_link,
              test_staged_body_that_no_longer_fits_is_delivered_whole,
              test_routing_view_still_answers,
              test_writer_in_another_mailbox_turns_spooling_off,
              test_spool_of_a_file_removed_undelivered_is_dropped,
              test_spool_of_a_file_replaced_in_tmp_is_dropped,
              test_spool_of_a_file_put_outside_a_folder_is_dropped):
        r.run(t, m)
    r.run(test_mount_killed_mid_body_delivers_nothing, store, m)
    r.run(test_nospool_sends_the_body_at_link, store)
    stores = [store]
    r.run(test_spool_cut_by_a_store_restart_is_delivered_once, m, stores)
    m.unmount()
    stores[0].stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
