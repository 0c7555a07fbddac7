#!/usr/bin/env python3
"""test_rados_postfix - two Postfix instances, two servers, one RADOS pool.

Starts a real single-host Ceph cluster (tools/lab/ceph-minicluster, memstore),
two mstored --backend rados on the same pool, and a mount of each. Two
private Postfix instances (tools/lab/postfixlib.py), each delivering through
its own mount, receive at once the same 500 addresses (N@example.com for
user N % 100): 5 messages per user per instance, 1,000 in all, into the
same 100 Maildirs. Then, read back through both mounts:

  - each of the 100 users has exactly 10 messages, the same names and
    the same bytes through either mount;
  - every address was delivered exactly twice (once by each instance,
    Delivered-To), every Message-ID is present exactly once;
  - both Postfix queues are empty and neither logged a bounce.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "lab"))
import mstlib  # noqa: E402
import radoslib  # noqa: E402
import postfixlib  # noqa: E402

USERS = 100
PER_USER = 5                    # messages per user per instance
ADDRESSES = USERS * PER_USER    # 1..500, user N % 100
SESSIONS = 8


def header(data, name):
    head = data.partition(b"\n\n")[0]
    key = name.lower().encode() + b":"
    for line in head.split(b"\n"):
        if line.lower().startswith(key):
            return line.split(b":", 1)[1].strip().decode()
    return None


def read_all(base):
    """{user: {name: bytes}} of new/ and cur/ under base."""
    out = {}
    for u in range(USERS):
        d = {}
        for sub in ("new", "cur"):
            p = os.path.join(base, "example.com", "user%d" % u, sub)
            try:
                names = os.listdir(p)
            except FileNotFoundError:
                continue
            assert len(names) == len(set(names)), "%s lists a name twice" % p
            for n in names:
                with open(os.path.join(p, n), "rb") as f:
                    d[sub + "/" + n] = f.read()
        out[u] = d
    return out


def count(base):
    n = 0
    for u in range(USERS):
        try:
            n += len(os.listdir(os.path.join(base, "example.com",
                                             "user%d" % u, "new")))
        except FileNotFoundError:
            pass
    return n


def test_two_postfix_two_servers_exactly_once(env):
    os.makedirs(env.m1.path("example.com"), exist_ok=True)
    os.chown(env.m1.path("example.com"), 5000, 5000)
    pfs = []
    for m in (env.m1, env.m2):
        pf = postfixlib.Postfix(mstlib.tmpdir("mst-postfix-"), m.mnt,
                                mstlib.free_port(), users=USERS,
                                addresses=ADDRESSES)
        env.postfixes.append(pf)
        pfs.append(pf.start())
    t0 = time.monotonic()
    errs = []

    def send(pf):
        try:
            pf.send(ADDRESSES, SESSIONS, timeout=120)
        except Exception as e:
            errs.append(repr(e))
    ts = [threading.Thread(target=send, args=(pf,)) for pf in pfs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, "smtp-source: %s" % errs

    def done():
        for pf in pfs:
            pf.flush()
        return (count(env.m1.mnt) >= 2 * ADDRESSES and
                all(pf.queue_count() == 0 for pf in pfs))
    try:
        mstlib.wait_until(done, 100, "%d messages (now %d)" % (
            2 * ADDRESSES, count(env.m1.mnt)))
    except TimeoutError:
        for pf in pfs:
            print(pf.log_tail(20))
        raise
    took = time.monotonic() - t0
    print("2 Postfix instances: %d messages in %.1f s (%.0f/s)" % (
        2 * ADDRESSES, took, 2 * ADDRESSES / took), flush=True)
    a = read_all(env.m1.mnt)
    b = read_all(env.m2.mnt)
    problems = []
    ids = {}
    rcpts = {}
    for u in range(USERS):
        if a[u] != b[u]:
            problems.append("user%d: the two mounts differ (%d vs %d "
                            "messages)" % (u, len(a[u]), len(b[u])))
        if len(a[u]) != 2 * PER_USER:
            problems.append("user%d: %d messages, want %d" % (
                u, len(a[u]), 2 * PER_USER))
        for name, data in a[u].items():
            mid = header(data, "Message-ID")
            rcpt = header(data, "Delivered-To")
            if mid is None or rcpt is None:
                problems.append("user%d/%s: no Message-ID or Delivered-To"
                                % (u, name))
                continue
            ids.setdefault(mid, []).append("user%d/%s" % (u, name))
            rcpts[rcpt] = rcpts.get(rcpt, 0) + 1
            n = int(rcpt.split("@")[0])
            if n % USERS != u:
                problems.append("user%d/%s: for %s" % (u, name, rcpt))
    for mid, where in ids.items():
        if len(where) != 1:
            problems.append("Message-ID %s stored %d times: %s" % (
                mid, len(where), where))
    if len(ids) != 2 * ADDRESSES:
        problems.append("%d Message-IDs, want %d" % (len(ids), 2 * ADDRESSES))
    for n in range(1, ADDRESSES + 1):
        if rcpts.get("%d@example.com" % n, 0) != 2:
            problems.append("%d@example.com delivered %d times, want 2" % (
                n, rcpts.get("%d@example.com" % n, 0)))
    for pf in pfs:
        log = open(pf.maillog).read()
        bounced = log.count("status=bounced")
        sent = log.count("status=sent")
        deferred = log.count("status=deferred")
        print("  %s: %d sent, %d deferred, %d bounced" % (
            pf.root, sent, deferred, bounced))
        if bounced:
            problems.append("%s: %d bounces" % (pf.root, bounced))
        if sent != ADDRESSES:
            problems.append("%s: %d status=sent, want %d" % (
                pf.root, sent, ADDRESSES))
    assert not problems, "\n".join(problems[:20])
    print("  100 users x %d messages, each once, the same through both "
          "mounts" % (2 * PER_USER))


class Env:
    pass


def run_all(r, env, t0):
    ok = False
    try:
        env.cluster.start()
        print("cluster up after %.1f s" % (time.monotonic() - t0),
              flush=True)
        env.s1, env.s2 = radoslib.servers(env.cluster, 2)
        env.m1 = mstlib.Mount(env.s1.addr, "allow_other,timeout=10").start()
        env.m2 = mstlib.Mount(env.s2.addr, "allow_other,timeout=10").start()
        ok = True
    except Exception as e:
        print("FAIL test_rados_postfix.setup: %s" % e)
        r.failed += 1
    if ok:
        r.run(test_two_postfix_two_servers_exactly_once, env)
        for pf in env.postfixes:
            pf.stop()
        env.postfixes = []
        r.failed += radoslib.dead_servers((env.s1, env.s2))
        if r.failed:
            radoslib.dump_logs((env.s1, env.s2), (env.m1, env.m2))
        env.m1.unmount()
        env.m2.unmount()
        env.s1.kill()
        env.s2.kill()
    env.cluster.stop()
    print("total %.1f s" % (time.monotonic() - t0))
    return r.finish()


def main():
    radoslib.skip_unless_ceph("test_rados_postfix")
    if not postfixlib.have_postfix():
        print("FAIL test_rados_postfix: Postfix is not installed "
              "(tools/install-deps installs it)")
        return 1
    r = mstlib.Runner("test_rados_postfix", limit=150)
    t0 = time.monotonic()
    env = Env()
    env.cluster = radoslib.Cluster("mst-ceph-pf-", timeout=90)
    env.postfixes = []

    def stop_all():
        for pf in env.postfixes:    # postfix stop, then its master by PID
            pf.stop()
        env.postfixes = []
        env.cluster.stop()

    def on_signal(sig, frame):
        stop_all()                  # before mstlib removes their directories
        radoslib._on_signal(sig, frame)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        return run_all(r, env, t0)
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
