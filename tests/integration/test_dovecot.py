#!/usr/bin/env python3
"""Unmodified Dovecot (LDA, IMAP, POP3) on Maildirs, two instances on one
mailbox tree: instance A on root A, instance B on root B.

Without --mstore both roots are one directory on local disk: the
reference every case must pass. With --mstore (or MST_TARGET=mstore) a
private mstored and two mounts of it are started (mount A and mount B,
allow_other) and A and B serve the same store through different mounts,
as two hosts would.
DOVECOT_ROOT_A and DOVECOT_ROOT_B, when set, name the two roots instead.

Cases:
  lda_imap_pop3              500 LDA deliveries through A; B's IMAP reads
                             them all intact, flags some, expunges half;
                             B's POP3 retrieves and deletes the rest.
  lda_two_hosts              200 LDA deliveries into one mailbox, half
                             through A and half through B at once; both
                             list all, intact, under the same UIDs.
  two_instances_same_mailbox 4 IMAP clients (2 per instance) APPEND, STORE
                             and EXPUNGE at once for 30 s or 1000
                             operations each; both end with the same
                             UIDs and flags, the ones the clients made,
                             and the bodies that were appended.
  folders                    folders made, filled (COPY, MOVE), renamed and
                             deleted through A are what B lists and reads,
                             and B's RENAME is what A sees.
  restart                    the store restarts under connected sessions
                             (--mstore only; skipped on local disk).
  store_crash                the store is killed and restarted during LDA
                             deliveries (--mstore only): each one that
                             exited 0 is there once, intact; no
                             corruption reported.
  idle                       a client IDLEs on B; each of 20 LDA
                             deliveries through A reaches it within
                             1.5 s (the median within 1 s), and so do a
                             flag change and an expunge made by an IMAP
                             client on A.
Every case also requires that neither Dovecot logged an error, a
corruption or an index rebuild while it ran."""
import argparse
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
import dovelib  # noqa: E402
from mstlib import wait_until  # noqa: E402

LDA_MESSAGES = int(os.environ.get("DOVECOT_LDA_MESSAGES", "500"))
LDA_PARALLEL = 6
MIX_SECONDS = float(os.environ.get("DOVECOT_MIX_SECONDS", "30"))
MIX_OPS = int(os.environ.get("DOVECOT_MIX_OPS", "1000"))
IDLE_DELIVERIES = 20
TWO_HOST_MESSAGES = 200
CRASH_MESSAGES = 200
# An IDLE client hears of a change made on another host through a local
# event (mount.mstore(8), New mail and IDLE): the store's notice, a poke
# (coalesced, 50 ms at most), then Dovecot's own handling of the
# inotify event; without the event it would find the change only at its
# next poll (mailbox_idle_check_interval, 30 s). The typical delivery
# must arrive within IDLE_MEDIAN_LIMIT, so a path that became
# systematically slower (a poke waiting for a 1 s attribute cache, say)
# fails; each single change within IDLE_LIMIT, half again the 1 s one
# change once took on a loaded host (about 0.4 s is usual), still below a
# poke held up by a second and far below the poll.
IDLE_MEDIAN_LIMIT = 1.0
IDLE_LIMIT = 1.5


class Skip(Exception):
    """The case does not apply to this set-up; counted as skipped."""


class Runner(mstlib.Runner):
    """mstlib.Runner with a third outcome, skipped, which is neither
    passed nor failed."""

    def __init__(self, name, limit=300):
        super().__init__(name, limit)
        self.skipped = 0

    def run(self, fn, env):
        marks = env.marks()

        def alarm(sig, frame):
            raise TimeoutError("test exceeded %ds" % self.limit)
        old = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(self.limit)
        t0 = time.monotonic()
        try:
            fn(env)
            broken = env.broken_mounts()
            if broken:
                raise AssertionError("a mount failed during the case:\n" + "\n".join(broken))
            self.passed += 1
            print("PASS %s.%s (%.2fs)" % (self.name, fn.__name__,
                                         time.monotonic() - t0), flush=True)
        except Skip as e:
            self.skipped += 1
            print("SKIP %s.%s: %s" % (self.name, fn.__name__, e), flush=True)
        except Exception as e:  # report every failure, keep going
            self.failed += 1
            print("FAIL %s.%s: %s" % (self.name, fn.__name__, e), flush=True)
            traceback.print_exc()
            env.print_error_classes(marks)
            env.print_store_side()
            try:
                broken = env.broken_mounts()
            except Exception as e2:  # the next cases will say more
                broken = ["could not restart the mounts: %s" % e2]
            for line in broken:
                print("  " + line, flush=True)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    def finish(self):
        print("%s: %d passed, %d failed, %d skipped" % (
            self.name, self.passed, self.failed, self.skipped))
        dovelib.stop_all()
        mstlib.cleanup()
        return 0 if self.failed == 0 and self.passed > 0 else 1


class Env:
    """The two roots, the two instances and, with --mstore, the store."""

    def __init__(self, mstore):
        self.mstore = mstore
        self.store = None
        self.mounts = []
        self.conns = []
        self.uid, self.gid = dovelib.mail_ids()
        ra, rb = os.environ.get("DOVECOT_ROOT_A"), os.environ.get("DOVECOT_ROOT_B")
        if mstore:
            self.store = mstlib.Store().start()
            ma = mstlib.Mount(self.store.addr, "allow_other").start()
            mb = mstlib.Mount(self.store.addr, "allow_other").start()
            self.mounts = [ma, mb]
            self.conns = [dovelib.fuse_conn(ma.mnt), dovelib.fuse_conn(mb.mnt)]
            self.where = "mounts %s (A) and %s (B) of one store" % (ma.mnt, mb.mnt)
            ra, rb = ma.path("dovecot"), mb.path("dovecot")
            os.mkdir(ra, 0o755)
            os.chown(ra, self.uid, self.gid)
            wait_until(lambda: os.path.isdir(rb), 5,
                       "mount B to see the directory made through mount A")
        elif ra and rb:
            self.where = "DOVECOT_ROOT_A=%s, DOVECOT_ROOT_B=%s" % (ra, rb)
        else:
            ra = rb = mstlib.tmpdir("mst-maildirs-")
            os.chmod(ra, 0o755)
            os.chown(ra, self.uid, self.gid)
            self.where = "local disk %s (A and B)" % ra
        self.root_a, self.root_b = ra, rb
        self.a = dovelib.Dovecot(ra, self.uid, self.gid, "a").start()
        self.b = dovelib.Dovecot(rb, self.uid, self.gid, "b").start()

    def broken_mounts(self):
        """A report for each mount whose process has exited or that leaves
        requests unanswered with nothing running (hung); each is torn down
        (its FUSE connection aborted if it hangs) and started again on the
        same mount point, so the next case starts on a working pair."""
        out = []
        for i, m in enumerate(self.mounts):
            name = "mount %s (%s, pid %d)" % ("AB"[i], m.mnt, m.proc.pid)
            if m.proc.poll() is not None:
                rc = m.proc.returncode
                how = "killed by signal %d" % -rc if rc < 0 else "exit status %d" % rc
                out.append("%s died: %s; the end of its log:\n%s" % (
                    name, how, log_tail(m.log)))
            else:
                end = time.monotonic() + 5
                while (dovelib.fuse_waiting(self.conns[i]) or 0) > 0 and \
                        time.monotonic() < end:
                    time.sleep(0.1)
                n = dovelib.fuse_waiting(self.conns[i])
                if not n:
                    continue
                threads = dovelib.blocked_threads(m.proc.pid)
                out.append("%s hangs: %d request(s) unanswered 5 s after the case "
                           "ended; its blocked threads:\n      %s\n  the end of its log:\n%s" % (
                               name, n, "\n      ".join(threads) or "(none)",
                               log_tail(m.log)))
                dovelib.fuse_abort(self.conns[i])
            m.unmount()
            self.mounts[i] = mstlib.Mount(self.store.addr, "allow_other",
                                          mnt=m.mnt).start()
            self.conns[i] = dovelib.fuse_conn(m.mnt)
        return out

    def print_store_side(self, n=25):
        """After a failure: what the mounts and the store logged, info
        lines and the mount's (un)mount lines left out (the last |n| of
        each), which says whether an error Dovecot saw came from the
        store, the connection or the mount."""
        logs = [("mount %s" % "AB"[i], m.log) for i, m in enumerate(self.mounts)]
        if self.store:
            logs.append(("mstored", self.store.log))
        for name, path in logs:
            try:
                with open(path, errors="replace") as f:
                    lines = [l for l in f if not re.search(
                        r"\binfo\b|mount\.mstore: .* (mounted|unmounted)", l)]
            except OSError:
                continue
            print("  %s logged %d line(s) besides info%s" % (
                name, len(lines), ", the last:" if lines else ""))
            for line in lines[-n:]:
                print("    " + line.rstrip(), flush=True)

    def teardown(self):
        dovelib.stop_all()
        for i, m in enumerate(self.mounts):
            if m.proc.poll() is None and dovelib.fuse_waiting(self.conns[i]):
                print("  mount %s: requests still unanswered after Dovecot "
                      "stopped; aborting its FUSE connection" % "AB"[i])
                dovelib.fuse_abort(self.conns[i])
            m.unmount()
        if self.store:
            self.store.stop()

    def marks(self):
        return (len(self.a.errors()), len(self.b.errors()))

    def new_errors(self, marks):
        return (self.a.errors()[marks[0]:], self.b.errors()[marks[1]:])

    def assert_no_errors(self, marks):
        ea, eb = self.new_errors(marks)
        if ea or eb:
            raise AssertionError("Dovecot logged %d error line(s) in A, %d in B; "
                                 "by kind:\n%s" % (len(ea), len(eb),
                                                   self.classes_text(ea, eb)))

    def classes_text(self, ea, eb):
        out = []
        for name, lines in (("A", ea), ("B", eb)):
            roots = ((self.root_a,) if self.root_a == self.root_b
                     else (self.root_a, self.root_b))
            for n, key, example in dovelib.error_classes(lines, roots)[:15]:
                out.append("  %s %5dx %s" % (name, n, example))
        return "\n".join(out)

    def print_error_classes(self, marks):
        ea, eb = self.new_errors(marks)
        if ea or eb:
            print("  Dovecot log errors during this case (%d in A, %d in B), by kind:\n%s"
                  % (len(ea), len(eb), self.classes_text(ea, eb)), flush=True)


# ---- messages ---------------------------------------------------------

def make_message(user, tag, n, rng):
    """A message with a distinct subject and a body whose last line is the
    sha256 of the lines before it, 200 B to ~30 KiB."""
    lines = []
    for i in range(rng.choice((3, 10, 40, 150, 400))):
        lines.append("%s line %d %s" % (tag, i, "%016x" % rng.getrandbits(64) * 3))
    payload = "\n".join(lines) + "\n"
    subject = "%s-%04d" % (tag, n)
    head = ("From: sender@mstore.test\nTo: %s@mstore.test\nSubject: %s\n"
            "Message-ID: <%s.%d@mstore.test>\nDate: Sat, 5 Dec 2026 12:00:00 +0000\n"
            "\n" % (user, subject, subject, os.getpid()))
    check = "checksum %s\n" % hashlib.sha256(payload.encode()).hexdigest()
    return subject, (head + payload + check).encode()


def body_is_intact(data):
    """The body's checksum line matches the lines before it."""
    text = data.decode(errors="replace")
    _, _, body = text.partition("\n\n")
    payload, _, last = body.rstrip("\n").rpartition("\n")
    return last == "checksum " + hashlib.sha256((payload + "\n").encode()).hexdigest()


def subject_of(data):
    m = re.search(rb"^Subject: (\S+)", data, re.M)
    return m.group(1).decode() if m else None


def lf(data):
    return data.replace(b"\r\n", b"\n")


def ok(resp, what):
    typ, data = resp
    assert typ == "OK", "%s: %s %r" % (what, typ, data)
    return data


def uid_flags(conn):
    """{uid: frozenset(flags without \\Recent)} of the selected mailbox."""
    uids = ok(conn.uid("SEARCH", None, "ALL"), "UID SEARCH ALL")[0].split()
    if not uids:
        return {}
    out = {}
    for item in ok(conn.uid("FETCH", "1:*", "(FLAGS)"), "UID FETCH 1:* FLAGS"):
        if item is None:
            continue
        if isinstance(item, tuple):
            item = item[0]
        m = re.search(rb"UID (\d+)", item)
        f = re.search(rb"FLAGS \(([^)]*)\)", item)
        if m and f:
            out[int(m.group(1))] = frozenset(
                x for x in f.group(1).decode().split() if x != "\\Recent")
    return out


def fetch_bodies(conn):
    """{uid: message bytes (LF line ends)} of the selected mailbox."""
    out = {}
    for item in ok(conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])"), "UID FETCH BODY[]"):
        if isinstance(item, tuple):
            m = re.search(rb"UID (\d+)", item[0])
            assert m, "FETCH response without UID: %r" % item[0][:80]
            out[int(m.group(1))] = lf(item[1])
    return out


def maildir_files(root, user):
    """Names in root/user/new and root/user/cur (what a file listing of
    the Maildir shows)."""
    names = {}
    for sub in ("new", "cur"):
        try:
            names[sub] = sorted(os.listdir(os.path.join(root, user, sub)))
        except FileNotFoundError:
            names[sub] = []
    return names


def ctl_ls(env, path):
    """Names listed by `mstore-ctl ls` in the store (None without one)."""
    if not env.store:
        return None
    r = subprocess.run([mstlib.CTL, "-s", env.store.addr, "ls", path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "mstore-ctl ls %s: exit %d: %s" % (
        path, r.returncode, r.stderr.strip())
    return sorted(l.rsplit(" ", 1)[-1] for l in r.stdout.splitlines() if l.strip())


def log_tail(path, n=12):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)\n"


def maildir_flags(name):
    return name.partition(":2,")[2] if ":2," in name else ""


# ---- cases ------------------------------------------------------------

def lda_imap_pop3(env):
    marks = env.marks()
    user = "user1"
    rng = random.Random(1)
    msgs = dict(make_message(user, "lda", n, rng) for n in range(LDA_MESSAGES))

    t0 = time.monotonic()
    results = env.a.lda_many(user, msgs, LDA_PARALLEL)
    failed = [(s, rc, err.strip()) for s, (rc, err) in sorted(results.items()) if rc != 0]
    hung = [f for f in failed if f[1] is None and "not started" not in f[2]]
    assert not hung, "%d dovecot-lda hung (%d delivered before); first: %s" % (
        len(hung), len(results) - len(failed), hung[0][2])
    assert not failed, "%d of %d LDA deliveries failed, first: %s" % (
        len(failed), len(msgs), failed[0])
    print("  lda: %d deliveries through A in %.1fs" % (len(msgs), time.monotonic() - t0))

    # B's IMAP sees every message, byte for byte.
    c = env.b.imap(user)
    n = int(ok(c.select("INBOX"), "SELECT INBOX")[0])
    assert n == len(msgs), "B: SELECT INBOX: %d messages, want %d" % (n, len(msgs))
    bodies = fetch_bodies(c)
    assert len(bodies) == len(msgs), "B: UID FETCH BODY[]: %d messages, want %d" % (
        len(bodies), len(msgs))
    by_subject = {}
    for uid, data in bodies.items():
        s = subject_of(data)
        assert s in msgs, "B: UID %d: unknown subject %r" % (uid, s)
        assert s not in by_subject, "B: %s delivered twice (UIDs %d, %d)" % (
            s, by_subject[s], uid)
        assert body_is_intact(data), "B: UID %d (%s): checksum line does not match" % (uid, s)
        assert data == msgs[s], "B: UID %d (%s): body differs from what LDA was given" % (uid, s)
        by_subject[s] = uid

    # Flags and expunges through B.
    order = sorted(msgs)
    seen = [by_subject[s] for i, s in enumerate(order) if i % 3 == 0]
    flagged = [by_subject[s] for i, s in enumerate(order) if i % 5 == 0]
    gone = [by_subject[s] for i, s in enumerate(order) if i % 2 == 1]
    for uids, flag in ((seen, "\\Seen"), (flagged, "\\Flagged"), (gone, "\\Deleted")):
        ok(c.uid("STORE", ",".join(map(str, uids)), "+FLAGS.SILENT", "(%s)" % flag),
           "B: UID STORE +FLAGS %s" % flag)
    ok(c.expunge(), "B: EXPUNGE")
    want = {}
    for i, s in enumerate(order):
        if i % 2 == 1:
            continue
        f = set()
        if i % 3 == 0:
            f.add("\\Seen")
        if i % 5 == 0:
            f.add("\\Flagged")
        want[by_subject[s]] = frozenset(f)
    got = uid_flags(c)
    assert got == want, "B: after STORE and EXPUNGE: %s" % diff_flags(got, want)
    c.logout()
    ca = env.a.imap(user)
    ok(ca.select("INBOX"), "A: SELECT INBOX")
    got = uid_flags(ca)
    assert got == want, "A sees B's flags and expunges: %s" % diff_flags(got, want)
    ca.logout()

    # The Maildir holds exactly the remaining messages, with their flags
    # in the file names.
    files = maildir_files(env.root_a, user)
    names = files["new"] + files["cur"]
    assert len(names) == len(want), "Maildir %s/%s: %d files in new/+cur/, want %d" % (
        env.root_a, user, len(names), len(want))
    n_seen = sum(1 for x in names if "S" in maildir_flags(x))
    n_flag = sum(1 for x in names if "F" in maildir_flags(x))
    w_seen = sum(1 for f in want.values() if "\\Seen" in f)
    w_flag = sum(1 for f in want.values() if "\\Flagged" in f)
    assert (n_seen, n_flag) == (w_seen, w_flag), (
        "Maildir file names: %d with S, %d with F; want %d, %d" % (
            n_seen, n_flag, w_seen, w_flag))
    for sub in ("new", "cur"):
        listed = ctl_ls(env, "dovecot/%s/%s" % (user, sub))
        if listed is not None:
            assert listed == files[sub], (
                "mstore-ctl ls dovecot/%s/%s lists %d names, mount A %d" % (
                    user, sub, len(listed), len(files[sub])))

    # B's POP3 retrieves the rest intact and deletes them.
    remaining = {s: msgs[s] for i, s in enumerate(order) if i % 2 == 0}
    p = env.b.pop3(user)
    count, _ = p.stat()
    assert count == len(remaining), "B: POP3 STAT: %d messages, want %d" % (
        count, len(remaining))
    got_subjects = set()
    for i in range(1, count + 1):
        _, lines, _ = p.retr(i)
        data = b"\n".join(lines) + b"\n"
        s = subject_of(data)
        assert s in remaining, "B: POP3 RETR %d: subject %r not expected" % (i, s)
        assert data == remaining[s], "B: POP3 RETR %d (%s): body differs" % (i, s)
        got_subjects.add(s)
        p.dele(i)
    assert got_subjects == set(remaining), "B: POP3: %d distinct messages, want %d" % (
        len(got_subjects), len(remaining))
    p.quit()
    files = maildir_files(env.root_a, user)
    assert files["new"] + files["cur"] == [], (
        "Maildir after POP3 DELE/QUIT: %d files left in new/+cur/" % (
            len(files["new"]) + len(files["cur"])))
    ca = env.a.imap(user)
    n = int(ok(ca.select("INBOX"), "A: SELECT INBOX")[0])
    assert n == 0, "A: SELECT INBOX after POP3 deleted all: %d messages" % n
    ca.logout()
    env.assert_no_errors(marks)


def lda_two_hosts(env):
    """Two hosts deliver into one mailbox at once: half of the messages
    through A's dovecot-lda, half through B's, concurrently. Each instance
    then lists every message exactly once, intact, and both give each
    message the same UID."""
    marks = env.marks()
    user = "user5"
    rng = random.Random(5)
    msgs = dict(make_message(user, "two", n, rng) for n in range(TWO_HOST_MESSAGES))
    keys = sorted(msgs)
    halves = {"A": {k: msgs[k] for k in keys[0::2]},
              "B": {k: msgs[k] for k in keys[1::2]}}
    res = {}
    threads = [threading.Thread(target=lambda n=n, i=i: res.update(
                   {n: i.lda_many(user, halves[n], LDA_PARALLEL // 2)}), daemon=True)
               for n, i in (("A", env.a), ("B", env.b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("A", "B"):
        failed = [(k, rc, err.strip()) for k, (rc, err) in sorted(res[name].items())
                  if rc != 0]
        assert not failed, "%s: %d of %d LDA deliveries failed, first: %s" % (
            name, len(failed), len(halves[name]), failed[0])
    uids = {}
    for name, inst in (("A", env.a), ("B", env.b)):
        c = inst.imap(user)
        n = int(ok(c.select("INBOX"), "%s: SELECT INBOX" % name)[0])
        assert n == len(msgs), "%s: SELECT INBOX: %d messages, want %d" % (
            name, n, len(msgs))
        seen = {}
        for uid, data in fetch_bodies(c).items():
            s = subject_of(data)
            assert s in msgs, "%s: UID %d: unknown subject %r" % (name, uid, s)
            assert s not in seen, "%s: %s listed twice (UIDs %d, %d)" % (
                name, s, seen[s], uid)
            assert data == msgs[s], "%s: UID %d (%s): body differs" % (name, uid, s)
            seen[s] = uid
        assert len(seen) == len(msgs), "%s: %d distinct messages, want %d" % (
            name, len(seen), len(msgs))
        uids[name] = seen
        c.logout()
    differ = [s for s in msgs if uids["A"][s] != uids["B"][s]]
    assert not differ, "A and B give %d messages different UIDs, e.g. %s: A %d, B %d" % (
        len(differ), differ[0], uids["A"][differ[0]], uids["B"][differ[0]])
    env.assert_no_errors(marks)


def mailbox_names(conn, cmd="LIST"):
    """Names from LIST (or LSUB) "" "*"."""
    typ, data = (conn.list if cmd == "LIST" else conn.lsub)()
    assert typ == "OK", "%s: %s %r" % (cmd, typ, data)
    names = set()
    for item in data:
        if isinstance(item, tuple):
            item = item[0]
        if item:
            m = re.match(rb'\(.*?\) (?:"."|NIL|".*?") (.*)$', item)
            if m:
                names.add(m.group(1).strip(b'"').decode())
    return names


def select_bodies(conn, box, name):
    n = int(ok(conn.select(box), "%s: SELECT %s" % (name, box))[0])
    return n, (fetch_bodies(conn) if n else {})


def folders(env):
    """Folders made, filled, renamed and deleted on one host are what the
    other host lists and reads: CREATE, SUBSCRIBE, COPY (Dovecot links
    the files between Maildir++ folders), MOVE, RENAME of a folder with
    a child, DELETE."""
    marks = env.marks()
    user = "user6"
    rng = random.Random(6)
    msgs = dict(make_message(user, "fold", n, rng) for n in range(10))
    for subject, msg in sorted(msgs.items()):
        rc, err = env.a.lda(user, msg)
        assert rc == 0, "LDA %s: exit %s: %s" % (subject, rc, err.strip())
    ca = env.a.imap(user)
    ok(ca.select("INBOX"), "A: SELECT INBOX")
    for box in ("Sent", "Archive", "Archive.2026"):
        ok(ca.create(box), "A: CREATE %s" % box)
    ok(ca.subscribe("Sent"), "A: SUBSCRIBE Sent")
    ok(ca.uid("STORE", "1", "+FLAGS.SILENT", "(\\Flagged)"), "A: STORE")
    ok(ca.uid("COPY", "1:3", "Sent"), "A: UID COPY 1:3 Sent")
    ok(ca.uid("MOVE", "4:6", "Archive.2026"), "A: UID MOVE 4:6 Archive.2026")
    inbox = fetch_bodies(ca)
    assert len(inbox) == 7, "A: INBOX after the MOVE: %d messages, want 7" % len(inbox)

    cb = env.b.imap(user)
    names = mailbox_names(cb)
    want = {"INBOX", "Sent", "Archive", "Archive.2026"}
    assert names == want, "B: LIST: %s, want %s" % (sorted(names), sorted(want))
    subs = mailbox_names(cb, "LSUB")
    assert subs == {"Sent"}, "B: LSUB: %s, want ['Sent']" % sorted(subs)
    for box, n_want in (("INBOX", 7), ("Sent", 3), ("Archive.2026", 3), ("Archive", 0)):
        n, bodies = select_bodies(cb, box, "B")
        assert n == n_want, "B: SELECT %s: %d messages, want %d" % (box, n, n_want)
        for uid, data in bodies.items():
            s = subject_of(data)
            assert msgs.get(s) == data, "B: %s UID %d (%s): body differs" % (box, uid, s)
    ok(cb.select("Sent"), "B: SELECT Sent")
    flags = uid_flags(cb)
    assert sorted(flags.values(), key=sorted) == sorted(
        [frozenset({"\\Flagged"}), frozenset(), frozenset()], key=sorted), (
        "B: Sent flags %s, want one \\Flagged copy" % flags)
    ok(cb.select("INBOX"), "B: SELECT INBOX")
    ok(cb.rename("Archive", "Old"), "B: RENAME Archive Old")
    cb.logout()

    names = mailbox_names(ca)
    want = {"INBOX", "Sent", "Old", "Old.2026"}
    assert names == want, "A: LIST after B's RENAME: %s, want %s" % (
        sorted(names), sorted(want))
    n, bodies = select_bodies(ca, "Old.2026", "A")
    assert n == 3 and all(msgs.get(subject_of(d)) == d for d in bodies.values()), (
        "A: Old.2026 after the RENAME: %d messages (want 3), bodies intact: %s" % (
            n, all(msgs.get(subject_of(d)) == d for d in bodies.values())))
    ok(ca.select("INBOX"), "A: SELECT INBOX")
    ok(ca.delete("Sent"), "A: DELETE Sent")
    ca.logout()
    cb = env.b.imap(user)
    names = mailbox_names(cb)
    assert "Sent" not in names, "B: LIST after A's DELETE Sent: %s" % sorted(names)
    typ, data = cb.select("Sent")
    assert typ != "OK", "B: SELECT of the deleted Sent succeeded: %r" % data
    cb.logout()
    home = os.path.join(env.root_a, user)
    present = sorted(x for x in os.listdir(home) if x.startswith("."))
    assert ".Sent" not in present and ".Old.2026" in present, (
        "Maildir++ folders in %s: %s" % (home, present))
    env.assert_no_errors(marks)


def diff_flags(got, want):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(u for u in set(got) & set(want) if got[u] != want[u])
    out = "%d UIDs, want %d" % (len(got), len(want))
    if missing:
        out += "; missing UIDs %s" % missing[:10]
    if extra:
        out += "; unexpected UIDs %s" % extra[:10]
    for u in wrong[:10]:
        out += "; UID %d flags %s, want %s" % (u, sorted(got[u]), sorted(want[u]))
    return out


class Mix:
    """The shared record of what the concurrent clients did."""

    def __init__(self):
        self.lock = threading.Lock()
        self.appended = {}          # uid -> subject
        self.bodies = {}            # uid -> message (LF line ends)
        self.deleted = set()        # uids marked \Deleted (all get expunged)
        self.flags = {}             # uid -> set of flags a STORE added
        self.problems = []
        self.ops = {"append": 0, "store": 0, "expunge": 0}


def mix_client(env, inst, label, user, mix, seed, deadline):
    rng = random.Random(seed)
    try:
        c = inst.imap(user)
        ok(c.select("INBOX"), "%s: SELECT" % label)
        n = 0
        while n < MIX_OPS and time.monotonic() < deadline:
            n += 1
            visible = [int(x) for x in ok(c.uid("SEARCH", None, "ALL"),
                                          "%s: UID SEARCH" % label)[0].split()]
            with mix.lock:
                live = [u for u in visible if u not in mix.deleted]
            r = rng.random()
            if r < 0.4 or len(live) < 5:
                subject, msg = make_message(user, "mix-%s" % label, n, rng)
                typ, data = c.append("INBOX", None, None, msg.replace(b"\n", b"\r\n"))
                if typ != "OK":
                    raise AssertionError("%s: APPEND: %s %r" % (label, typ, data))
                m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                if not m:
                    raise AssertionError("%s: APPEND reply without APPENDUID: %r" % (label, data))
                with mix.lock:
                    uid = int(m.group(1))
                    if uid in mix.appended:
                        raise AssertionError("%s: APPENDUID %d given twice (%s and %s)" % (
                            label, uid, mix.appended[uid], subject))
                    mix.appended[uid] = subject
                    mix.bodies[uid] = msg
                    mix.ops["append"] += 1
            elif r < 0.75:
                uid = rng.choice(live)
                flag = rng.choice(("\\Seen", "\\Flagged", "\\Answered", "$Label1"))
                typ, data = c.uid("STORE", str(uid), "+FLAGS.SILENT", "(%s)" % flag)
                if typ != "OK" and b"EXPUNGEISSUED" not in b" ".join(
                        x for x in data if isinstance(x, bytes)):
                    raise AssertionError("%s: UID STORE %d +FLAGS %s: %s %r" % (
                        label, uid, flag, typ, data))
                with mix.lock:
                    mix.flags.setdefault(uid, set()).add(flag)
                    mix.ops["store"] += 1
            else:
                uid = rng.choice(live)
                ok(c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"),
                   "%s: UID STORE %d +FLAGS \\Deleted" % (label, uid))
                with mix.lock:
                    mix.deleted.add(uid)
                ok(c.expunge(), "%s: EXPUNGE" % label)
                with mix.lock:
                    mix.ops["expunge"] += 1
        c.logout()
    except Exception as e:
        with mix.lock:
            mix.problems.append("%s: %s: %s" % (label, type(e).__name__, e))


def two_instances_same_mailbox(env):
    marks = env.marks()
    user = "user2"
    mix = Mix()
    deadline = time.monotonic() + MIX_SECONDS
    threads = []
    for i, (inst, name) in enumerate(((env.a, "A"), (env.a, "A"), (env.b, "B"),
                                      (env.b, "B"))):
        label = "%s%d" % (name, i)
        t = threading.Thread(target=mix_client, daemon=True,
                             args=(env, inst, label, user, mix, 100 + i, deadline))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(MIX_SECONDS + 120)
        assert not t.is_alive(), "an IMAP client hung for %ds" % (MIX_SECONDS + 120)
    print("  mix: %d APPEND, %d STORE, %d EXPUNGE from 4 clients" % (
        mix.ops["append"], mix.ops["store"], mix.ops["expunge"]))
    assert not mix.problems, "IMAP clients failed:\n" + "\n".join(mix.problems)

    # One last EXPUNGE removes anything marked \Deleted whose own EXPUNGE
    # raced with another client's.
    ca = env.a.imap(user)
    ok(ca.select("INBOX"), "A: SELECT")
    ok(ca.expunge(), "A: EXPUNGE")
    want = {u: frozenset(mix.flags.get(u, ())) for u in mix.appended
            if u not in mix.deleted}
    got_a = uid_flags(ca)
    ca.logout()
    cb = env.b.imap(user)
    ok(cb.select("INBOX"), "B: SELECT")
    got_b = uid_flags(cb)
    assert got_a == got_b, "A and B disagree: A %s" % diff_flags(got_a, got_b)
    assert got_a == want, "A and B agree, but not with what the clients did: %s" % (
        diff_flags(got_a, want))
    bodies = fetch_bodies(cb) if got_b else {}
    cb.logout()
    bad = sorted(u for u in want if bodies.get(u) != mix.bodies[u])
    assert not bad, "B: %d of %d messages differ from what was appended (UIDs %s)" % (
        len(bad), len(want), bad[:10])
    env.assert_no_errors(marks)


def restart(env):
    if not env.store:
        raise Skip("a store restart needs --mstore (nothing to restart on local disk)")
    marks = env.marks()
    user = "user3"
    rng = random.Random(3)
    for n in range(20):
        _, msg = make_message(user, "rst", n, rng)
        rc, err = env.a.lda(user, msg)
        assert rc == 0, "LDA before the restart: exit %d: %s" % (rc, err.strip())
    ca, cb = env.a.imap(user), env.b.imap(user)
    ok(ca.select("INBOX"), "A: SELECT")
    ok(cb.select("INBOX"), "B: SELECT")
    ok(ca.uid("STORE", "1:10", "+FLAGS.SILENT", "(\\Seen)"), "A: STORE \\Seen")
    ok(cb.uid("STORE", "5:15", "+FLAGS.SILENT", "(\\Flagged)"), "B: STORE \\Flagged")
    ok(ca.noop(), "A: NOOP")
    ok(cb.noop(), "B: NOOP")
    before_a, before_b = uid_flags(ca), uid_flags(cb)
    assert before_a == before_b and len(before_a) == 20, (
        "before the restart A and B disagree: %s" % diff_flags(before_a, before_b))

    env.store.stop()
    env.store.start()

    for c, name in ((ca, "A"), (cb, "B")):
        ok(c.noop(), "%s: NOOP on the session open across the restart" % name)
        got = uid_flags(c)
        assert got == before_a, "%s after the store restart: %s" % (
            name, diff_flags(got, before_a))
    ok(ca.uid("STORE", "20", "+FLAGS.SILENT", "(\\Answered)"), "A: STORE after restart")
    _, msg = make_message(user, "rst", 99, rng)
    rc, err = env.a.lda(user, msg)
    assert rc == 0, "LDA after the restart: exit %d: %s" % (rc, err.strip())
    ok(cb.noop(), "B: NOOP")
    got = uid_flags(cb)
    assert len(got) == 21 and "\\Answered" in got.get(20, ()), (
        "B after the restart sees %d messages (want 21), UID 20 flags %s" % (
            len(got), sorted(got.get(20, ()))))
    for c in (ca, cb):
        c.logout()
    env.assert_no_errors(marks)


_CORRUPTION = re.compile(r"Panic:|corrupt|\bfsck(ing|ed)?\b|rebuild|reappear|duplicate|inconsisten",
                         re.I)


def store_crash(env):
    """The store is killed (SIGKILL) and restarted while dovecot-lda
    delivers through A: every delivery that exited 0 is in the mailbox
    exactly once and intact, a failed one (exit 75, the MTA would retry)
    at most once, A and B agree on the UIDs, and no Dovecot index or
    uidlist is reported corrupt. Errors logged while the store was down
    are expected (I/O errors) and only listed."""
    if not env.store:
        raise Skip("a store crash needs --mstore (nothing to crash on local disk)")
    marks = env.marks()
    user = "user7"
    rng = random.Random(7)
    msgs = dict(make_message(user, "crash", n, rng) for n in range(CRASH_MESSAGES))
    todo = sorted(msgs)
    results = {}
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                key = todo.pop(0)
            rc, err = env.a.lda(user, msgs[key], timeout=60)
            with lock:
                results[key] = (rc, err)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) >= CRASH_MESSAGES // 4, 120,
               "the first deliveries before the crash")
    env.store.kill()                # SIGKILL
    time.sleep(1)
    env.store.start()
    for t in threads:
        t.join(600)
        assert not t.is_alive(), "a dovecot-lda worker never finished"
    delivered = {k for k, (rc, _) in results.items() if rc == 0}
    hung = [(k, err) for k, (rc, err) in results.items() if rc is None]
    print("  crash: %d of %d deliveries exited 0, %d failed (exit 75 or other), "
          "%d hung" % (len(delivered), len(msgs), len(msgs) - len(delivered) - len(hung),
                       len(hung)))
    assert not hung, "dovecot-lda hung across the store crash: %s" % hung[0][1]
    uids = {}
    for name, inst in (("A", env.a), ("B", env.b)):
        c = inst.imap(user)
        ok(c.select("INBOX"), "%s: SELECT INBOX after the crash" % name)
        seen = {}
        for uid, data in fetch_bodies(c).items():
            s = subject_of(data)
            assert s in msgs, "%s: UID %d: unknown subject %r" % (name, uid, s)
            assert s not in seen, "%s: %s is in the mailbox twice (UIDs %d, %d)" % (
                name, s, seen[s], uid)
            assert data == msgs[s], "%s: UID %d (%s): body differs" % (name, uid, s)
            seen[s] = uid
        c.logout()
        lost = sorted(delivered - set(seen))
        assert not lost, "%s: %d deliveries that exited 0 are missing, e.g. %s" % (
            name, len(lost), lost[:5])
        uids[name] = seen
    assert uids["A"] == uids["B"], "A and B disagree on the mailbox after the crash"
    ea, eb = env.new_errors(marks)
    bad = [l for l in ea + eb if _CORRUPTION.search(l)]
    if ea or eb:
        print("  crash: Dovecot logged (expected while the store was down):\n%s"
              % env.classes_text(ea, eb))
    assert not bad, "Dovecot reported corruption after the store crash:\n%s" % (
        "\n".join(bad[:20]))


def idle(env):
    marks = env.marks()
    user = "user4"
    rng = random.Random(4)
    _, msg = make_message(user, "idle", 0, rng)
    rc, err = env.a.lda(user, msg)
    assert rc == 0, "LDA: exit %d: %s" % (rc, err.strip())
    idler = dovelib.Idler(env.b.imap_port, user)
    base = idler.exists
    assert base == 1, "B: SELECT before IDLE: %d messages, want 1" % base
    lat, missed = [], []
    for n in range(1, IDLE_DELIVERIES + 1):
        _, msg = make_message(user, "idle", n, rng)
        rc, err = env.a.lda(user, msg)
        done = time.monotonic()
        assert rc == 0, "LDA %d: exit %d: %s" % (n, rc, err.strip())
        at = idler.wait_exists(base + n, 3.0)
        if at is None:
            missed.append(n)
        else:
            lat.append(max(0.0, at - done))
        time.sleep(0.05)

    # An IMAP client on A flags one message and expunges another: B's
    # IDLE client hears of both (untagged FETCH, then EXPUNGE).
    ca = env.a.imap(user)
    ok(ca.select("INBOX"), "A: SELECT")
    pos = idler.mark()
    ok(ca.uid("STORE", "2", "+FLAGS.SILENT", "(\\Flagged)"), "A: UID STORE 2 +FLAGS")
    done = time.monotonic()
    at = idler.wait_for(rb"^\* 2 FETCH .*\\Flagged", 3.0, pos)
    flag_lat = None if at is None else max(0.0, at - done)
    pos = idler.mark()
    ok(ca.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"), "A: UID STORE 3 +FLAGS")
    ok(ca.expunge(), "A: EXPUNGE")
    done = time.monotonic()
    at = idler.wait_for(rb"^\* 3 EXPUNGE", 3.0, pos)
    exp_lat = None if at is None else max(0.0, at - done)
    ca.logout()
    idler.close()
    lat.sort()
    if lat:
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print("  idle: %d/%d EXISTS within 3 s of LDA exit; p50 %.0f ms, p99 %.0f ms" % (
            len(lat), IDLE_DELIVERIES, p50 * 1000, p99 * 1000))
    assert not missed, ("%d of %d deliveries through A never reached B's IDLE "
                        "client within 3 s (deliveries %s); the EXISTS count "
                        "stayed at %d" % (len(missed), IDLE_DELIVERIES, missed,
                                          idler.exists))
    slow = [x for x in lat if x > IDLE_LIMIT]
    assert not slow, "%d deliveries took over %.1f s to reach IDLE: %s" % (
        len(slow), IDLE_LIMIT, ["%.2f" % x for x in slow])
    assert p50 <= IDLE_MEDIAN_LIMIT, (
        "deliveries reached IDLE in %.2f s (median), over %.1f s: %s" % (
            p50, IDLE_MEDIAN_LIMIT, ["%.2f" % x for x in lat]))
    print("  idle: a flag change made through A reached B's IDLE client in %s, "
          "an expunge in %s" % tuple("%.0f ms" % (x * 1000) if x is not None else "never (3 s)"
                                     for x in (flag_lat, exp_lat)))
    assert flag_lat is not None and flag_lat <= IDLE_LIMIT, (
        "a flag change through A did not reach B's IDLE client within %.1f s "
        "(no untagged FETCH with \\Flagged)" % IDLE_LIMIT)
    assert exp_lat is not None and exp_lat <= IDLE_LIMIT, (
        "an expunge through A did not reach B's IDLE client within %.1f s "
        "(no untagged EXPUNGE)" % IDLE_LIMIT)
    env.assert_no_errors(marks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mstore", action="store_true",
                    help="run against two mounts of a private mstored")
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()
    args.mstore = args.mstore or os.environ.get("MST_TARGET") == "mstore"
    r = Runner("dovecot")
    if not dovelib.have_dovecot():
        print("dovecot: Dovecot is not installed (tools/install-deps installs it)")
        print("dovecot: 0 passed, 1 failed")
        return 1
    try:
        env = Env(args.mstore)
    except Exception as e:
        print("FAIL dovecot.setup: %s" % e, flush=True)
        traceback.print_exc()
        r.failed += 1
        return r.finish()
    print("dovecot: Maildirs on %s" % env.where, flush=True)
    for t in (lda_imap_pop3, lda_two_hosts, two_instances_same_mailbox, folders,
              restart, store_crash, idle):
        if not args.only or t.__name__ in args.only.split(","):
            r.run(t, env)
    env.teardown()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
