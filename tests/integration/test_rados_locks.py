#!/usr/bin/env python3
"""test_rados_locks - LOCK across mstored that share one RADOS pool.

Starts a real single-host Ceph cluster (tools/lab/ceph-minicluster, memstore),
then mstored --backend rados on one pool, and speaks LOCK to them
(mstore-protocol(7)); a lock taken through one server must hold against
every other:

  - F_SETLK conflicts give EAGAIN both ways, disjoint ranges do not
    conflict, and an unlock through one server frees the range for the
    other;
  - an F_SETLKW through server B waits, and is granted when the holder on
    server A unlocks (latency printed, p50 and max of several rounds);
  - F_GETLK through B names A's holder: type, pid and range;
  - flock(2) locks exclude each other across servers, shared ones share,
    and never conflict with POSIX locks;
  - the holder's connection closed: its locks are gone and B's waiter is
    granted;
  - CANCEL of a waiting request answers it EINTR; a cycle of two owners
    of one server waiting for each other is EDEADLK, and so is a cycle
    of owners waiting in two servers; a chain without a cycle waits;
  - mstored killed with SIGKILL while holding a lock: the lock is dropped
    once its lease lapses (the time is printed) and B's waiter is granted;
    a server stopped with SIGTERM gives its locks up at once;
  - mstored stopped (SIGSTOP) past its lease (lock_lease = 6): its lock
    goes to B's waiter, and once continued it fences itself: the
    connections that held or waited for its locks are closed (the client
    reads EOF, with no grant before it), the others stay open, and it
    goes on under a new lease (its later requests see B's lock);
  - 50 rounds of two exclusive F_SETLKs racing through two servers, and
    of three through three: one winner each round;
  - the cases of test_locks.py with mount A over server 1 and mount B over
    server 2 (fcntl and flock from many processes through both mounts,
    EAGAIN, F_GETLK, a killed holder, an interrupted wait, a holder's
    mount killed);
  - through mounts, a holder's server stalled past its lease: B's process
    gets the lock, and once the server continues the holder's mount logs
    that its lock was released by the store, F_GETLK through either mount
    names B's process, and A's process cannot take it back;
  - a mount over two servers (S1,S2) holding a lock through its home
    server, which is killed: the mount logs the lock as released, and a
    new lock through the other server is granted once the dead server's
    lease lapses (F_GETLK through another mount names its new holder);
  - with the OSDs paused, a server that cannot renew its lease closes
    its lock holder's connection before the lease could lapse, and once
    they run again its old record is dropped when the old lease lapses;
  - with the cluster stopped, LOCKs sent at once all answer EIO within
    the storage timeout, never a hang.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import fcntl
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import mstlib  # noqa: E402
import hostile_client as hc  # noqa: E402

import radoslib  # noqa: E402
import test_locks  # noqa: E402
from radoslib import Client  # noqa: E402

RD, WR, UN = 1, 2, 3
WAIT, FLOCK, TEST, CANCEL = 0x01, 0x02, 0x04, 0x08
EOF = (1 << 64) - 1
LEASE = 10          # seconds: the default lock_lease (mstore.conf(5))
SHORT = 6           # lock_lease of the servers the fencing tests stall
ROUNDS = 50
_fid = [int.from_bytes(os.urandom(4), "big") << 8]


def want(got, exp, what):
    if got != exp:
        raise AssertionError("%s: got %r, want %r" % (what, got, exp))


def new_fid():
    _fid[0] += 1
    return _fid[0]


class Locker(Client):
    """A protocol connection that speaks LOCK."""

    def lock(self, fid, owner, typ, flags=0, start=0, end=EOF, pid=None,
             timeout=20.0):
        st, parts = self.call("LOCK", self.req(fid, owner, typ, flags, start,
                                               end, pid), timeout=timeout)
        return st, (rep(parts[0]) if st == 0 else None)

    def req(self, fid, owner, typ, flags, start, end, pid):
        return struct.pack(">QQIBBQQ", fid, owner,
                           1000 + owner if pid is None else pid, typ, flags,
                           start, end)

    def send_lock(self, fid, owner, typ, flags=WAIT, start=0, end=EOF,
                  pid=None):
        """Send a LOCK without waiting for its reply; its request id."""
        self.rid += 1
        self.c.send(hc.frame("LOCK", self.req(fid, owner, typ, flags, start,
                                               end, pid), self.rid))
        return self.rid

    def reply(self, rid, timeout):
        st, parts = self.c.reply(rid, timeout)
        return st, (rep(parts[0]) if st == 0 else None)

    def replies(self, rids, timeout):
        """The statuses of several requests' replies, in any order."""
        got, end = {}, time.monotonic() + timeout
        while len(got) < len(rids):
            _, flags, status, rid, _ = self.c.recv(end - time.monotonic())
            if flags & hc.F_REPLY and rid in rids:
                got[rid] = status
        return [got[r] for r in rids]

    def no_reply(self, rid, secs):
        try:
            st, _ = self.c.reply(rid, secs)
        except Exception:   # socket.timeout: still waiting, as wanted
            return
        raise AssertionError("request %d answered %d while it should "
                             "wait" % (rid, st))


def rep(p):
    t, pid, start, end = struct.unpack_from(">BIQQ", p)
    return dict(type=t, pid=pid, start=start, end=end)


class Env:
    pass


def setup(cluster):
    env = Env()
    env.cluster = cluster.start()
    env.s1, env.s2 = env.servers = radoslib.servers(env.cluster, 2)
    env.a = Locker(env.s1.port)
    env.b = Locker(env.s2.port)
    return env


def test_setlk_conflicts_both_ways(env):
    a, b, f = env.a, env.b, new_fid()
    want(a.lock(f, 1, WR, start=0, end=99)[0], 0, "A: F_SETLK WR [0,99]")
    want(b.lock(f, 2, WR, start=50, end=60)[0], errno.EAGAIN,
         "B: WR over A's WR")
    want(b.lock(f, 2, RD, start=99, end=99)[0], errno.EAGAIN,
         "B: RD over A's WR")
    want(b.lock(f, 2, WR, start=100, end=199)[0], 0, "B: WR beside it")
    want(a.lock(f, 1, RD, start=150, end=150)[0], errno.EAGAIN,
         "A: RD over B's WR")
    want(a.lock(f, 1, UN, start=0, end=49)[0], 0, "A: unlock [0,49]")
    want(b.lock(f, 2, WR, start=0, end=49)[0], 0, "B: WR on the freed part")
    want(b.lock(f, 2, WR, start=49, end=50)[0], errno.EAGAIN,
         "B: WR across into A's remaining [50,99]")
    # Shared locks share across servers.
    g = new_fid()
    want(a.lock(g, 1, RD)[0], 0, "A: RD whole file")
    want(b.lock(g, 2, RD)[0], 0, "B: RD whole file too")
    want(b.lock(g, 2, WR)[0], errno.EAGAIN, "B: upgrade while A reads")
    want(a.lock(g, 1, UN)[0], 0, "A: unlock")
    want(b.lock(g, 2, WR)[0], 0, "B: upgrade once A is gone")
    for c, o, x in ((a, 1, f), (b, 2, f), (b, 2, g)):
        want(c.lock(x, o, UN)[0], 0, "cleanup unlock")


def test_uncontended_cost(env):
    f, lat = new_fid(), []
    for _ in range(50):
        t0 = time.monotonic()
        want(env.a.lock(f, 1, WR)[0], 0, "WR")
        want(env.a.lock(f, 1, UN)[0], 0, "UN")
        lat.append(time.monotonic() - t0)
    lat.sort()
    print("uncontended F_SETLK + unlock through one server: p50 %.1f ms, "
          "p90 %.1f ms (50 pairs)" % (lat[25] * 1e3, lat[45] * 1e3),
          flush=True)


def test_setlkw_wakes_on_unlock_across(env):
    a, b = env.a, env.b
    lat = []
    for i in range(8):
        f = new_fid()
        want(a.lock(f, 1, WR)[0], 0, "round %d: A: WR" % i)
        rid = b.send_lock(f, 2, WR, WAIT)
        b.no_reply(rid, 0.3)
        t0 = time.monotonic()
        want(a.lock(f, 1, UN)[0], 0, "round %d: A: unlock" % i)
        st, r = b.reply(rid, 10)
        lat.append(time.monotonic() - t0)
        want(st, 0, "round %d: B's F_SETLKW after A's unlock" % i)
        want((r["type"], r["start"], r["end"]), (WR, 0, EOF),
             "round %d: granted lock" % i)
        want(a.lock(f, 1, WR)[0], errno.EAGAIN, "round %d: A: WR now" % i)
        want(b.lock(f, 2, UN)[0], 0, "round %d: B: unlock" % i)
    print("F_SETLKW through B granted after A's unlock: p50 %.1f ms, max "
          "%.1f ms (%d rounds, unlock reply to grant reply)" %
          (statistics.median(lat) * 1e3, max(lat) * 1e3, len(lat)),
          flush=True)
    if max(lat) > 2.0:
        raise AssertionError("a waiter took %.2f s to wake" % max(lat))


def test_getlk_names_the_holder(env):
    a, b, f = env.a, env.b, new_fid()
    want(a.lock(f, 1, WR, start=100, end=199, pid=4242)[0], 0, "A: WR")
    st, r = b.lock(f, 2, WR, TEST, start=150, end=160)
    want(st, 0, "B: F_GETLK")
    want(r, dict(type=WR, pid=4242, start=100, end=199), "B: holder")
    st, r = b.lock(f, 2, RD, TEST, start=200, end=300)
    want((st, r["type"]), (0, UN), "B: F_GETLK beside it: none")
    want(b.lock(f, 2, RD, start=200, end=300)[0], 0, "B: RD beside it")
    st, r = a.lock(f, 1, WR, TEST, start=0, end=EOF)
    want(r, dict(type=RD, pid=1002, start=200, end=300), "A: B's holder")
    want(a.lock(f, 1, UN)[0], 0, "A: unlock")
    st, r = b.lock(f, 2, WR, TEST, start=150, end=160)
    want(r["type"], UN, "B: F_GETLK after A's unlock")
    want(b.lock(f, 2, UN)[0], 0, "B: unlock")


def test_flock_across(env):
    a, b, f = env.a, env.b, new_fid()
    want(a.lock(f, 7, WR, FLOCK)[0], 0, "A: LOCK_EX")
    want(b.lock(f, 8, WR, FLOCK)[0], errno.EAGAIN, "B: LOCK_EX|LOCK_NB")
    want(b.lock(f, 8, RD, FLOCK)[0], errno.EAGAIN, "B: LOCK_SH|LOCK_NB")
    want(b.lock(f, 9, WR)[0], 0, "B: a POSIX lock beside flock")
    st, r = b.lock(f, 8, WR, FLOCK | TEST)
    want((st, r["type"], r["pid"]), (0, WR, 1007), "B: flock holder")
    want(a.lock(f, 7, RD, FLOCK)[0], 0, "A: convert to LOCK_SH")
    want(b.lock(f, 8, RD, FLOCK)[0], 0, "B: LOCK_SH shares")
    want(a.lock(f, 7, WR, FLOCK)[0], errno.EAGAIN, "A: LOCK_EX vs B's SH")
    # A failed flock conversion has given up the old lock (flock(2)).
    want(b.lock(f, 8, WR, FLOCK)[0], 0, "B: LOCK_EX after A's try")
    rid = a.send_lock(f, 7, WR, FLOCK | WAIT)
    a.no_reply(rid, 0.3)
    want(b.lock(f, 8, UN, FLOCK)[0], 0, "B: LOCK_UN")
    want(a.reply(rid, 10)[0], 0, "A: blocking LOCK_EX granted")
    for c, o, fl in ((a, 7, FLOCK), (b, 9, 0)):
        want(c.lock(f, o, UN, fl)[0], 0, "cleanup")


def test_closed_connection_drops_its_locks(env):
    f, g = new_fid(), new_fid()
    c = Locker(env.s1.port)
    want(c.lock(f, 1, WR, start=0, end=9)[0], 0, "C on A: WR [0,9]")
    want(c.lock(g, 1, WR, FLOCK)[0], 0, "C on A: flock EX")
    want(env.b.lock(f, 2, WR, start=5, end=5)[0], errno.EAGAIN, "B: WR")
    rid = env.b.send_lock(f, 2, WR, WAIT, start=5, end=5)
    env.b.no_reply(rid, 0.3)
    t0 = time.monotonic()
    c.close()
    st, _ = env.b.reply(rid, 10)
    print("holder's connection closed: B's waiter granted after %.1f ms" %
          ((time.monotonic() - t0) * 1e3), flush=True)
    want(st, 0, "B's F_SETLKW once the holder's connection closed")
    want(env.b.lock(g, 2, WR, FLOCK)[0], 0, "B: flock EX once it closed")
    want(env.b.lock(f, 2, UN)[0], 0, "cleanup")
    want(env.b.lock(g, 2, UN, FLOCK)[0], 0, "cleanup")


def test_cancel_and_local_deadlock(env):
    a, b, f, g = env.a, env.b, new_fid(), new_fid()
    want(a.lock(f, 1, WR)[0], 0, "A: WR f")
    rid = b.send_lock(f, 2, WR, WAIT)
    b.no_reply(rid, 0.2)
    cid = b.send_lock(f, 2, WR, CANCEL)
    want(b.replies([cid, rid], 5), [0, errno.EINTR],
         "B: CANCEL answered, the cancelled F_SETLKW EINTR")
    want(b.lock(f, 2, WR)[0], errno.EAGAIN, "B: nothing was granted")
    # Owners 1 and 3 of one server: 1 holds f, 3 holds g; 1 waits on g;
    # 3 asking for f would wait for itself.
    want(a.lock(g, 3, WR)[0], 0, "A owner 3: WR g")
    rid = a.send_lock(g, 1, WR, WAIT)
    a.no_reply(rid, 0.2)
    want(a.lock(f, 3, WR, WAIT)[0], errno.EDEADLK,
         "A owner 3: F_SETLKW on f closes a cycle")
    want(a.lock(g, 3, UN)[0], 0, "A owner 3: unlock g")
    want(a.reply(rid, 5)[0], 0, "owner 1 granted g")
    for x in (f, g):
        want(a.lock(x, 1, UN)[0], 0, "cleanup")


def test_deadlock_across_servers(env):
    a, b, f, g, h = env.a, env.b, new_fid(), new_fid(), new_fid()
    want(a.lock(f, 1, WR)[0], 0, "A owner 1: WR f")
    want(b.lock(g, 2, WR)[0], 0, "B owner 2: WR g")
    rid = a.send_lock(g, 1, WR, WAIT)       # 1 waits for 2 (on B)
    a.no_reply(rid, 0.3)
    want(b.lock(f, 2, WR, WAIT)[0], errno.EDEADLK,
         "B owner 2: F_SETLKW on f closes a cycle through A")
    want(b.lock(f, 2, WR, WAIT | FLOCK)[0], 0,
         "B owner 2: flock on f (flock never deadlocks with POSIX)")
    want(b.lock(f, 2, UN, FLOCK)[0], 0, "B owner 2: flock unlock")
    # A chain without a cycle waits: 4 (on B) waits for 1, who waits
    # for 2, who waits for nobody.
    want(a.lock(h, 3, WR)[0], 0, "A owner 3: WR h")
    rid4 = b.send_lock(f, 4, WR, WAIT)
    b.no_reply(rid4, 0.5)
    want(b.lock(g, 2, UN)[0], 0, "B owner 2: unlock g")
    want(a.reply(rid, 10)[0], 0, "A owner 1: granted g")
    want(a.lock(f, 1, UN)[0], 0, "A owner 1: unlock f")
    want(b.reply(rid4, 10)[0], 0, "B owner 4: granted f")
    for c, o, x in ((a, 1, g), (a, 3, h), (b, 4, f)):
        want(c.lock(x, o, UN)[0], 0, "cleanup")


def race_rounds(clients, what):
    """ROUNDS rounds of exclusive F_SETLKs of |clients| at once (owner
    i + 1 each): exactly one winner every round."""
    n = len(clients)
    out = [None] * n
    fid = new_fid()

    def run(i, bar, f):
        bar.wait()
        out[i] = clients[i].lock(f, i + 1, WR)[0]
    wins = [0] * n
    for k in range(ROUNDS):
        bar = threading.Barrier(n)
        # Even rounds race to create a table, odd ones to change one.
        f = fid + k * 2 if k % 2 == 0 else fid + 1
        ts = [threading.Thread(target=run, args=(i, bar, f))
              for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        want(sorted(out), [0] + [errno.EAGAIN] * (n - 1),
             "round %d: %s" % (k, what))
        w = out.index(0)
        wins[w] += 1
        want(clients[w].lock(f, w + 1, UN)[0], 0, "round %d: unlock" % k)
    _fid[0] = fid + ROUNDS * 2
    print("%s: winners by server %s over %d rounds" % (what, wins, ROUNDS),
          flush=True)


def test_racing_exclusive_locks_one_winner(env):
    race_rounds([env.a, env.b], "two exclusive F_SETLKs through two "
                "servers")


def test_racing_through_three_servers(env):
    s3 = radoslib.servers(env.cluster, 1)[0]
    try:
        race_rounds([env.a, env.b, Locker(s3.port)], "three exclusive "
                    "F_SETLKs through three servers")
    finally:
        s3.kill()


class Holder:
    """A server of its own (killed at the end; lock_lease |lease|) with a
    client holding WR on a new file (pid 777), and B's F_SETLKW waiting
    behind it."""

    def __init__(self, env, lease=LEASE):
        self.env = env
        self.lease = lease
        extra = "lock_lease = %d\n" % lease if lease != LEASE else ""
        self.s = radoslib.servers(env.cluster, 1, extra)[0]
        self.c = Locker(self.s.port)
        self.f = new_fid()
        want(self.c.lock(self.f, 1, WR, pid=777)[0], 0, "holder: WR")
        self.rid = env.b.send_lock(self.f, 2, WR, WAIT)
        env.b.no_reply(self.rid, 0.3)

    def signal_and_wait(self, sig, what, then=None):
        """Send |sig| to the holder's server (then call |then|); B's
        grant, its seconds."""
        t0 = time.monotonic()
        self.s.kill(sig)
        if then is not None:
            then()
        st, _ = self.env.b.reply(self.rid, self.lease + 10)
        dt = time.monotonic() - t0
        print("mstored %s: B's waiter granted after %.2f s (lease %d s)" %
              (what, dt, self.lease), flush=True)
        want(st, 0, "B's F_SETLKW once the holder's server is %s" % what)
        return dt

    def end(self):
        self.s.kill(signal.SIGCONT)
        self.s.kill()


def test_server_killed_its_locks_lapse(env):
    h = Holder(env)
    try:
        g = new_fid()
        want(h.c.lock(g, 1, WR, FLOCK)[0], 0, "holder: flock EX")

        def getlk():    # the dead holder is named until its lease lapses
            st, r = env.a.lock(h.f, 3, RD, TEST)
            want((st, r["pid"]), (0, 777), "F_GETLK right after the kill")
        dt = h.signal_and_wait(signal.SIGKILL, "killed with SIGKILL", getlk)
        if dt > LEASE + 3:
            raise AssertionError("took %.1f s, lease is %d s" % (dt, LEASE))
        want(env.a.lock(g, 3, WR, FLOCK)[0], 0, "A: flock EX of the dead")
        want(env.b.lock(h.f, 2, UN)[0], 0, "cleanup")
        want(env.a.lock(g, 3, UN, FLOCK)[0], 0, "cleanup")
    finally:
        h.end()


def test_server_stopped_gives_its_locks_up_at_once(env):
    h = Holder(env)
    try:
        dt = h.signal_and_wait(signal.SIGTERM, "stopped with SIGTERM")
        if dt > 3:
            raise AssertionError("took %.1f s after a clean stop" % dt)
        want(env.b.lock(h.f, 2, UN)[0], 0, "cleanup")
    finally:
        h.end()


def closed_by_server(conn, rid, secs, what):
    """|conn| (a Locker) must be closed by its server within |secs|, with
    no grant of request |rid| before the EOF; the seconds it took."""
    frames, dt = conn.c.closed_within(secs)
    if dt is None:
        raise AssertionError("%s: connection still open %d s after SIGCONT"
                             % (what, secs))
    for _op, flags, status, got, _p in frames:
        if flags & hc.F_REPLY and got == rid and status == 0:
            raise AssertionError("%s: granted before its connection was "
                                 "closed" % what)
    return dt


def test_stalled_server_closes_its_lock_holders(env):
    h = Holder(env, SHORT)
    try:
        c, f, b = h.c, h.f, env.b
        # Through the same server: a connection waiting for B's lock on g
        # (closed too), one that locked and unlocked, and one that never
        # locked (both left open).
        g = new_fid()
        want(b.lock(g, 2, WR)[0], 0, "B: WR g")
        w = Locker(h.s.port)
        wrid = w.send_lock(g, 4, WR, WAIT)
        w.no_reply(wrid, 0.3)
        u = Locker(h.s.port)
        k = new_fid()
        want(u.lock(k, 5, WR)[0], 0, "U: WR")
        want(u.lock(k, 5, UN)[0], 0, "U: unlock")
        idle = Locker(h.s.port)
        h.signal_and_wait(signal.SIGSTOP, "stalled (SIGSTOP)")
        t0 = time.monotonic()
        h.s.kill(signal.SIGCONT)
        dt = closed_by_server(c, 0, 10, "the holder")
        closed_by_server(w, wrid, 10, "the waiter")
        print("stalled mstored continued: its holder's connection closed "
              "after %.0f ms" % (dt * 1e3), flush=True)
        # The others stay, and see B's lock: the records are given up.
        st, r = idle.lock(f, 3, WR, TEST, timeout=30)
        want((st, r["type"], r["pid"]), (0, WR, 1002),
             "stalled server, an untouched connection: F_GETLK names B")
        want(u.lock(f, 5, WR)[0], errno.EAGAIN,
             "stalled server, U: WR against B's lock")
        want(b.lock(f, 2, UN)[0], 0, "B: unlock")
        n = Locker(h.s.port)
        want(n.lock(f, 3, WR)[0], 0, "stalled server: WR, new lease")
        want(b.lock(f, 2, WR)[0], errno.EAGAIN, "B: WR against it")
        want(n.lock(f, 3, UN)[0], 0, "cleanup")
        want(b.lock(g, 2, UN)[0], 0, "cleanup")
        log = open(h.s.log).read()
        for line in ("closing the 2 client connection(s)", "given up"):
            if line not in log:
                raise AssertionError("the stalled server did not log %r:\n"
                                     "%s" % (line, log[-2000:]))
        print("fenced %.1f s after SIGCONT was sent, log: %s" % (
            time.monotonic() - t0, [x for x in log.splitlines()
                                    if "closing the" in x][0]), flush=True)
    finally:
        h.end()


def wait_fd(r, secs, what):
    """A byte from pipe |r| within |secs| (a hold_lock child's "ready")."""
    ready, _, _ = select.select([r], [], [], secs)
    if not ready:
        raise AssertionError("%s: not within %d s" % (what, secs))
    test_locks.wait_ready(r)


def wait_log(m, text, secs, what):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if text in open(m.log, errors="replace").read():
            return
        time.sleep(0.1)
    raise AssertionError("%s: %r not in %s within %d s:\n%s" % (
        what, text, m.log, secs, open(m.log).read()[-2000:]))


LOST = "released by the store when the connection dropped"


def cannot_lock(path, what):
    """F_SETLK of the whole of |path| must fail with EAGAIN/EACCES."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLK,
                    test_locks.flock_struct(fcntl.F_WRLCK))
        raise AssertionError("%s: F_SETLK granted" % what)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
    finally:
        os.close(fd)


def holder_pid(path):
    fd = os.open(path, os.O_RDWR)
    try:
        t, _, _, pid = test_locks.getlk(fd, fcntl.F_WRLCK)
        return t, pid
    finally:
        os.close(fd)


def kill_children(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
            os.waitpid(p, 0)
        except OSError:
            pass


def test_mount_told_when_its_server_stalls(env, b):
    """Mount A over a server of its own, mount B over server 2."""
    s = radoslib.servers(env.cluster, 1, "lock_lease = %d\n" % SHORT)[0]
    a = mstlib.Mount(s.addr, "timeout=30").start()
    kids, fds = [], []
    name = "stalled-%d" % new_fid()
    try:
        open(a.path(test_locks.DIR, name), "wb").close()
        r, w = os.pipe()
        r2, w2 = os.pipe()
        fds += [r, w, r2, w2]
        kids.append(test_locks.hold_lock(a.path(test_locks.DIR, name),
                                         fcntl.F_WRLCK, 0, 0, w))
        wait_fd(r, 10, "A's process: F_SETLKW")
        cannot_lock(b.path(test_locks.DIR, name), "B while A holds")
        s.kill(signal.SIGSTOP)
        t0 = time.monotonic()
        kids.append(test_locks.hold_lock(b.path(test_locks.DIR, name),
                                         fcntl.F_WRLCK, 0, 0, w2))
        wait_fd(r2, SHORT + 10, "B's process: F_SETLKW while A's server "
                "is stalled")
        print("mount B's process got the lock %.1f s after A's server "
              "stalled (lease %d s)" % (time.monotonic() - t0, SHORT),
              flush=True)
        s.kill(signal.SIGCONT)
        t1 = time.monotonic()
        wait_log(a, LOST, 10, "A's mount after its server continued")
        print("A's mount logged its lock released %.2f s after SIGCONT" %
              (time.monotonic() - t1), flush=True)
        for m, who in ((b, "B"), (a, "A")):
            want(holder_pid(m.path(test_locks.DIR, name)),
                 (fcntl.F_WRLCK, kids[1]), "F_GETLK through %s's mount" % who)
        cannot_lock(a.path(test_locks.DIR, name),
                    "A's mount after its lock was given up")
    finally:
        s.kill(signal.SIGCONT)
        kill_children(kids)
        for x in fds:
            os.close(x)
        a.unmount()
        s.kill()


def test_failover_mount_reports_its_lock_lost(env, b):
    """A mount over two servers of its own; B (server 2) observes."""
    ss = radoslib.servers(env.cluster, 2, "lock_lease = %d\n" % SHORT)
    m = radoslib.mount(ss, "timeout=10")
    kids, fds = [], []
    name = "failover-%d" % new_fid()
    try:
        homes = [ln.split()[0] for ln in os.getxattr(
            m.mnt, "user.mstore.servers").decode().splitlines()
            if "home" in ln.split()[2:]]
        want(len(homes), 1, "one home server")
        home = [x for x in ss if x.addr == homes[0]][0]
        other = [x for x in ss if x is not home][0]
        path = m.path(test_locks.DIR, name)
        open(path, "wb").close()
        r, w = os.pipe()
        r2, w2 = os.pipe()
        fds += [r, w, r2, w2]
        kids.append(test_locks.hold_lock(path, fcntl.F_WRLCK, 0, 0, w))
        wait_fd(r, 10, "P: F_SETLKW through the two-server mount")
        want(holder_pid(b.path(test_locks.DIR, name)),
             (fcntl.F_WRLCK, kids[0]), "F_GETLK through B: P")
        t0 = time.monotonic()
        home.kill()
        wait_log(m, LOST, 15, "the mount after its home server died")
        print("two-server mount: home %s killed, lock reported lost after "
              "%.2f s" % (home.addr, time.monotonic() - t0), flush=True)
        # A new lock through the other server: once the dead server's
        # lease lapses (its record is dropped), never silently P's.
        kids.append(test_locks.hold_lock(path, fcntl.F_WRLCK, 0, 0, w2))
        wait_fd(r2, SHORT + 10, "Q: F_SETLKW through %s" % other.addr)
        print("two-server mount: Q's lock through %s granted %.2f s after "
              "the kill (lease %d s)" % (other.addr, time.monotonic() - t0,
                                         SHORT), flush=True)
        want(holder_pid(b.path(test_locks.DIR, name)),
             (fcntl.F_WRLCK, kids[1]), "F_GETLK through B: Q")
        want(holder_pid(path), (fcntl.F_WRLCK, kids[1]),
             "F_GETLK through the two-server mount: Q")
    finally:
        kill_children(kids)
        for x in fds:
            os.close(x)
        m.unmount()
        for x in ss:
            x.kill()


def ceph(env, *args):
    r = subprocess.run(["ceph", "-c", env.cluster.conf] + list(args),
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("ceph %s: %s" % (" ".join(args), r.stderr))


def test_paused_osds_fence_before_the_lease_lapses(env):
    """The OSDs paused (ceph osd pause): the server cannot renew its lease
    and closes its lock holder's connection within lock_lease - 3 s of
    its last renewal, before the lease could lapse (nobody else can have
    been granted the lock yet), while a connection without locks stays."""
    s = radoslib.servers(env.cluster, 1, "lock_lease = %d\n" % SHORT)[0]
    paused = False
    try:
        c, d, f = Locker(s.port), Locker(s.port), new_fid()
        want(c.lock(f, 1, WR, pid=777)[0], 0, "holder: WR")
        ceph(env, "osd", "pause")
        paused = True
        dt = closed_by_server(c, 0, 20, "the holder, OSDs paused")
        # The server says how long after the send of its last renewal
        # that succeeded it closed the holder: lock_lease - 3 s and a
        # little, well before the lease can lapse at the OSD (which
        # counts from its receipt). Clients see the pause only once their
        # OSD map has it, so renewals may still succeed for a moment after
        # the command returns: the time from the pause is only printed.
        m = re.search(r"was not renewed for (\d+\.\d) s",
                      open(s.log).read())
        if m is None:
            raise AssertionError("no fencing line in the log:\n" +
                                 open(s.log).read()[-2000:])
        late = float(m.group(1))
        print("OSDs paused: the holder's connection closed %.2f s after the "
              "pause, %.1f s after the last renewal (lease %d s)" % (
                  dt, late, SHORT), flush=True)
        if late > SHORT - 2:
            raise AssertionError("closed %.1f s after the last renewal: "
                                 "too close to the %d s lease" % (late, SHORT))
        ceph(env, "osd", "unpause")
        paused = False
        # Its old record is dropped once the old lease lapses: a new
        # owner through the same server waits for that, then holds it.
        n = Locker(s.port)
        want(n.lock(f, 3, WR, WAIT, timeout=SHORT + 15)[0], 0,
             "after unpause: F_SETLKW through the same server")
        want(env.b.lock(f, 2, WR)[0], errno.EAGAIN, "B: WR against it")
        st, r = d.lock(f, 4, WR, TEST)
        want((st, r["pid"]), (0, 1003), "the lockless connection: F_GETLK")
        want(n.lock(f, 3, UN)[0], 0, "cleanup")
        log = open(s.log).read()
        if "closing the 1 client connection(s)" not in log:
            raise AssertionError("the server did not log closing its "
                                 "holder:\n" + log[-2000:])
    finally:
        if paused:
            ceph(env, "osd", "unpause")
        s.kill()


def test_storage_down_answers_eio(env):
    env.cluster.stop()
    t0 = time.monotonic()
    rids = [env.a.send_lock(new_fid(), 1, WR, 0) for _ in range(4)]
    sts = env.a.replies(rids, 40)
    took = time.monotonic() - t0
    want(sts, [errno.EIO] * 4, "4 LOCKs with the cluster stopped")
    print("4 LOCKs with the cluster stopped: all EIO after %.1f s" % took,
          flush=True)
    if took > 20:
        raise AssertionError("EIO only after %.1f s" % took)


def mount_phase(r, env):
    """test_locks.py's cases on two mounts, one on each server, then the
    mount-level cases of a stalled and of a failed-over server."""
    mounts = []
    try:
        mounts = [mstlib.Mount(env.s1.addr, "timeout=5").start(),
                  mstlib.Mount(env.s2.addr, "timeout=5").start()]
        os.makedirs(mounts[0].path(test_locks.DIR), exist_ok=True)
    except Exception as e:
        print("FAIL test_rados_locks: mounts: %s" % e)
        r.failed += 1
    failed = r.failed
    if len(mounts) == 2:
        a, b = mounts
        for fn in (test_locks.test_fcntl_mutual_exclusion_across_mounts,
                   test_locks.test_flock_mutual_exclusion_across_mounts,
                   test_locks.test_setlk_eagain_and_getlk_names_holder,
                   test_locks.test_lock_freed_when_holder_killed,
                   test_locks.test_waiting_lock_interrupted_by_signal):
            r.run(fn, a, b)
        r.run(test_locks.test_lock_freed_when_mount_goes, env.s1, b)
        r.run(test_mount_told_when_its_server_stalls, env, b)
        r.run(test_failover_mount_reports_its_lock_lost, env, b)
    if r.failed > failed:
        radoslib.dump_logs((), mounts)
    for m in mounts:
        m.unmount()


def main():
    return radoslib.run_suite("test_rados_locks", setup, (
        test_setlk_conflicts_both_ways,
        test_uncontended_cost,
        test_setlkw_wakes_on_unlock_across,
        test_getlk_names_the_holder,
        test_flock_across,
        test_closed_connection_drops_its_locks,
        test_cancel_and_local_deadlock,
        test_deadlock_across_servers,
        test_racing_exclusive_locks_one_winner,
        test_racing_through_three_servers,
        test_server_killed_its_locks_lapse,
        test_server_stopped_gives_its_locks_up_at_once,
        test_stalled_server_closes_its_lock_holders,
        radoslib.Phase(mount_phase),
        test_paused_osds_fence_before_the_lease_lapses,
        test_storage_down_answers_eio))


if __name__ == "__main__":
    sys.exit(main())
