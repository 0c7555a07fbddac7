#!/usr/bin/env python3
"""test_rados_osd - an OSD dies under delivery load on the rados back-end.

Starts a real single-host Ceph cluster (tools/lab/ceph-minicluster, bluestore:
1 mon, 1 mgr, 3 OSDs; pool size 3, min_size 2), one mstored --backend
rados and mount.mstore on it. Verifier threads deliver continuously into
8 mailboxes (their entry objects in several placement groups) the way
Postfix does (write tmp/NAME, fsync, link it into new/NAME, unlink
tmp/NAME) and log every acknowledged delivery with its checksum (SHA-256) and
time. During the load osd.1 is SIGKILLed (ceph-minicluster kill-osd);
after a while it is started again (start-osd --wait-clean). Then:

  - the longest gap between two acknowledged deliveries (the stall the
    OSD's death caused) is printed and stays below STALL_MAX, and so is
    the slowest single delivery;
  - no delivery failed for good (a step that fails is retried under the
    same name, as an MTA's retry would, until DELIVER_DEADLINE);
  - every acknowledged message is present exactly once with the right
    checksum, read through the mount and through a second mstored on the
    same pool (LIST + FETCH);
  - the cluster is active+clean again (ceph pg stat), and the time it took
    after the restart is printed.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import hashlib
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import mstlib  # noqa: E402
import radoslib  # noqa: E402
from radoslib import mc  # noqa: E402

# Several mailboxes, so that their entry objects lie in several placement
# groups: some have the killed OSD as primary, some as a replica.
BOXES = ["o.example/load%d" % i for i in range(8)]
WORKERS = 3
LOAD_BEFORE = 4.0       # seconds of load before the kill
DOWN_FOR = 10.0         # seconds the OSD stays dead under load
LOAD_AFTER = 3.0        # seconds of load after active+clean again
STALL_MAX = 12.0        # the longest gap between acknowledged deliveries
DELIVER_DEADLINE = 60.0  # a message not stored by then failed for good
OSD = 1


class Verifier:
    """Postfix-style deliveries through the mount, every acknowledged one
    logged (name, SHA-256, time) to a list and a log file."""

    def __init__(self, mnt, logpath):
        self.mnt = mnt
        self.acked = []              # (monotonic time, name, SHA-256, box)
        self.failed = []             # (name, last error): failed for good
        self.retried = 0             # steps that failed and were retried
        self.slowest = (0.0, None, 0.0)  # (seconds, name, began at)
        self.errors = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.log = open(logpath, "w")
        self.threads = []

    def deliver(self, w, i):
        name = "%d.W%dI%d.osdtest" % (int(time.time()), w, i)
        body = (b"From: v@o.example\r\nMessage-ID: <%s@o.example>\r\n\r\n" %
                name.encode() + os.urandom(900).hex().encode() + b"\r\n")
        csum = hashlib.sha256(body).hexdigest()
        box = os.path.join(self.mnt, BOXES[(w + i) % len(BOXES)])
        tmp = os.path.join(box, "tmp", name)
        new = os.path.join(box, "new", name)
        began = time.monotonic()
        end = began + DELIVER_DEADLINE
        stage = 0
        last = None
        while time.monotonic() < end:
            try:
                if stage == 0:
                    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC,
                                 0o600)
                    try:
                        os.write(fd, body)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    stage = 1
                if stage == 1:
                    try:
                        os.link(tmp, new)
                    except FileExistsError:
                        # An earlier link that answered an error had
                        # been stored: it must be this very message.
                        with open(new, "rb") as f:
                            if f.read() != body:
                                raise AssertionError(
                                    "%s: another body under the name" % name)
                    stage = 2
                if stage == 2:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                    now = time.monotonic()
                    with self.lock:
                        self.acked.append((now, name, csum, box))
                        self.log.write("%.3f %s %s\n" % (now, name, csum))
                        if now - began > self.slowest[0]:
                            self.slowest = (now - began, name, began)
                    return
            except OSError as e:
                last = e
                with self.lock:
                    self.retried += 1
                    k = errno.errorcode.get(e.errno, str(e.errno))
                    self.errors[k] = self.errors.get(k, 0) + 1
                time.sleep(0.2)
        with self.lock:
            self.failed.append((name, repr(last)))

    def run(self, w):
        i = 0
        while not self.stop.is_set():
            i += 1
            self.deliver(w, i)

    def start(self):
        for w in range(WORKERS):
            t = threading.Thread(target=self.run, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(DELIVER_DEADLINE + 10)
        self.log.close()
        return all(not t.is_alive() for t in self.threads)

    def count(self):
        with self.lock:
            return len(self.acked)


def longest_stall(acked, t_from, t_to):
    """The longest gap between acknowledged deliveries in [t_from, t_to]."""
    times = sorted(a[0] for a in acked)
    times = [t_from] + [t for t in times if t_from <= t <= t_to] + [t_to]
    gap, at = 0.0, t_from
    for a, b in zip(times, times[1:]):
        if b - a > gap:
            gap, at = b - a, a
    return gap, at


def check_all_once(env, v):
    """Every acknowledged message exactly once, right checksum, through
    the mount and through the second server."""
    extra = 0
    for b in BOXES:
        extra += check_box(env, b, [a for a in v.acked
                                    if a[3] == env.m.path(b)])
    return extra


def check_box(env, box, acked):
    want = {name: csum for _, name, csum, _ in acked}
    assert len(want) == len(acked), "a name acknowledged twice"
    names = os.listdir(os.path.join(env.m.mnt, box, "new"))
    dup = len(names) - len(set(names))
    assert dup == 0, "%d names listed twice through the mount" % dup
    got = set(names)
    missing = sorted(set(want) - got)
    assert not missing, "%d acknowledged messages missing through the " \
        "mount, e.g. %s" % (len(missing), missing[:5])
    # Every delivery ran to its end (acknowledged, or failed for good,
    # which is asserted before): nothing else may be in new/.
    extra = sorted(got - set(want))
    bad = []
    for n in want:
        with open(os.path.join(env.m.mnt, box, "new", n), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != want[n]:
                bad.append(n)
    assert not bad, "wrong checksum through the mount: %s" % bad[:5]
    c = radoslib.Client(env.s2.port)
    try:
        st, _, _, ents = c.list(box=box)
        assert st == 0, "LIST through server 2: %d" % st
        twice = [n for n, v2 in ents.items()
                 if len([a for a in v2 if a["kind"] == "present"]) > 1]
        assert not twice, "listed twice through server 2: %s" % twice[:5]
        pres = radoslib.present(ents)
        miss2 = sorted(set(want) - set(pres))
        assert not miss2, "%d missing through server 2, e.g. %s" % (
            len(miss2), miss2[:5])
        bad = []
        for n, csum in want.items():
            st, total, fcsum, data = c.fetch(pres[n]["id"], box=box)
            if st != 0 or len(data) != total or \
                    hashlib.sha256(data).hexdigest() != csum:
                bad.append((n, st))
        assert not bad, "FETCH through server 2 wrong: %s" % bad[:5]
    finally:
        c.close()
    return len(extra)


class Env:
    pass


def test_osd_killed_under_load(env):
    v = Verifier(env.m.mnt, os.path.join(env.cluster.dir, "acked.log"))
    v.start()
    t_start = time.monotonic()
    try:
        mstlib.wait_until(lambda: v.count() >= 20, 60,
                          "the first 20 deliveries")
        time.sleep(LOAD_BEFORE)
        n_before = v.count()
        t_kill = time.monotonic()
        r = mc("kill-osd", env.cluster.dir, str(OSD), "--wait-down",
               timeout=60)
        assert r.returncode == 0, "kill-osd: %s%s" % (r.stdout, r.stderr)
        print("osd.%d killed after %d deliveries (down in %.1f s)" %
              (OSD, n_before, time.monotonic() - t_kill), flush=True)
        time.sleep(DOWN_FOR)
        n_down = v.count() - n_before
        t_restart = time.monotonic()
        r = mc("start-osd", env.cluster.dir, str(OSD), "--wait-clean",
               "--timeout", "90", timeout=120)
        t_clean = time.monotonic()
        assert r.returncode == 0, "start-osd: %s%s" % (r.stdout, r.stderr)
        print("osd.%d restarted: active+clean after %.1f s" %
              (OSD, t_clean - t_restart), flush=True)
        time.sleep(LOAD_AFTER)
    finally:
        joined = v.finish()
    t_end = time.monotonic()
    assert joined, "a verifier thread is stuck in a syscall"
    before, _ = longest_stall(v.acked, t_start + 1, t_kill)
    whole, at = longest_stall(v.acked, t_kill, t_end)
    print("deliveries: %d acknowledged (%d while osd.%d was down), "
          "%d steps retried %s, %d failed for good" %
          (len(v.acked), n_down, OSD, v.retried, v.errors, len(v.failed)))
    print("longest stall between acknowledged deliveries: %.2f s from "
          "the kill on (it began %.1f s after the kill); %.2f s before it"
          % (whole, at - t_kill, before))
    print("slowest single delivery: %.2f s (began %.1f s after the kill)"
          % (v.slowest[0], v.slowest[2] - t_kill))
    print("time back to active+clean after start-osd: %.1f s" %
          (t_clean - t_restart))
    assert not v.failed, "deliveries failed for good: %s" % v.failed[:5]
    assert n_down > 0, "no delivery while the OSD was down"
    assert whole < STALL_MAX, "stall of %.1f s (max %.1f)" % (whole,
                                                                STALL_MAX)
    assert v.slowest[0] < STALL_MAX, "a delivery took %.1f s (max %.1f)" % (
        v.slowest[0], STALL_MAX)
    unacked = check_all_once(env, v)
    assert unacked == 0, "%d messages in new/ never acknowledged" % unacked
    print("all %d acknowledged messages present exactly once with the "
          "right checksum (mount and server 2), nothing else" % len(v.acked))
    st = env.cluster.ceph_json("pg", "stat")
    pgs = st.get("pg_summary", st).get("num_pg_by_state", [])
    states = {p["name"]: p["num"] for p in pgs}
    assert list(states) == ["active+clean"], "PG states: %r" % states


def main():
    radoslib.skip_unless_ceph("test_rados_osd")
    r = mstlib.Runner("test_rados_osd", limit=170)
    t0 = time.monotonic()
    env = Env()
    # Bluestore for a restart that keeps the OSD's data; memstore when
    # sparse files cannot be made here.
    env.cluster = radoslib.Cluster("mst-ceph-osd-",
                                   ("bluestore", "memstore"), 90)
    try:
        return run_all(r, env, t0)
    finally:
        env.cluster.stop()      # by the PIDs in DIR/daemons.json


def run_all(r, env, t0):
    ok = False
    try:
        env.cluster.start()
        env.s1, env.s2 = radoslib.servers(env.cluster, 2)
        env.m = mstlib.Mount(env.s1.addr, "timeout=10").start()
        os.makedirs(env.m.path("o.example"))
        for b in BOXES:
            for d in (b, b + "/new", b + "/cur", b + "/tmp"):
                os.makedirs(env.m.path(d))
        ok = True
    except Exception as e:
        print("FAIL test_rados_osd.setup: %s" % e)
        r.failed += 1
    if ok:
        r.run(test_osd_killed_under_load, env)
        r.failed += radoslib.dead_servers((env.s1, env.s2))
        if r.failed:
            radoslib.dump_logs((env.s1, env.s2), (env.m,))
        env.m.unmount()
        env.s1.kill()
        env.s2.kill()
    env.cluster.stop()
    print("total %.1f s" % (time.monotonic() - t0))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
