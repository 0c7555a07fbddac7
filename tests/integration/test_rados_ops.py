#!/usr/bin/env python3
"""test_rados_ops - repair of lost notices and the ADMIN commands of the
rados back-end, against a real Ceph cluster (tools/lab/ceph-minicluster,
memstore) with two mstored on one pool:

  - notices lost while server 1's watch is broken reach its watcher as
    RESET (or as the events) once the watch is back: server 1 is stopped
    (SIGSTOP) longer than the OSDs' watch timeout, so the OSD drops its
    watch and a delivery through server 2 meanwhile notifies nobody;
  - a commit whose notify never went out (another server died between
    the two; here the directory's counter is raised with the rados CLI,
    which is what such a commit leaves) reaches the watcher as RESET
    through the periodic re-read;
  - ordinary traffic gives the events and no RESET;
  - with the OSD holding the notify object's primary copy killed, a
    delivery through server 2 still reaches server 1's watcher;
  - mstore-ctl status, stats, compact and checkpoint work on rados;
  - quota_file's per-mailbox limits hold (and show in STATFS);
  - scrub: an orphan body (written, never named: what a server that
    died between body and entry leaves) is kept within the grace period
    and removed after it, while every named message stays fetchable; an
    expired idempotency record is removed (a retry with that id is then
    a new delivery); a mailbox usage that drifted is recounted; a body
    whose bytes no longer match its checksum makes scrub exit 1.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import os
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import mstlib  # noqa: E402
import hostile_client as hc  # noqa: E402

import radoslib  # noqa: E402
from radoslib import BOX, Client, present, shard_of  # noqa: E402

WATCH_TIMEOUT = 10      # osd_client_watch_timeout set for this test, s
RESET_BOUND = 20.0      # a lost notice must be repaired within this, s


def want(got, exp, what):
    if got != exp:
        raise AssertionError("%s: got %r, want %r" % (what, got, exp))


class UStore(mstlib.Store):
    """mstored with a Unix socket as well (ADMIN scrub needs one)."""

    def start(self, timeout=30):
        self.sock = os.path.join(self.dir, "ctl.sock")
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [mstlib.MSTORED, "--data", self.data, "--listen", self.addr,
             "--listen", "unix:" + self.sock, "--config", self.conf,
             "--foreground"], stdout=logf, stderr=subprocess.STDOUT)
        mstlib._procs.append(self.proc)
        mstlib.wait_until(lambda: self.proc.poll() is not None or
                          mstlib.can_connect(self.port), timeout,
                          "mstored to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("mstored exited %d:\n%s" % (
                self.proc.returncode, open(self.log).read()))
        return self


class Env:
    pass


def rados(env, *args, check=True, **kw):
    r = subprocess.run(["timeout", "60", "rados", "-c", env.cluster.conf,
                        "-p", radoslib.POOL] + list(args),
                       capture_output=True, timeout=90, **kw)
    if check and r.returncode != 0:
        raise AssertionError("rados %s: %s" % (" ".join(args),
                                               r.stderr.decode()))
    return r


def ctl(store, *args):
    addr = "unix:" + store.sock if hasattr(store, "sock") else store.addr
    r = subprocess.run([mstlib.CTL, "-s", addr] + list(args),
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout, r.stderr


def kv(text):
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, v)
    return out


def setup(cluster):
    env = Env()
    env.cluster = cluster.start()
    # A short watch timeout on the OSDs, so that a stalled server's watch
    # is dropped within the test's time (the default is 30 s).
    subprocess.run(["ceph", "-c", env.cluster.conf, "--connect-timeout",
                    "30", "config", "set", "osd", "osd_client_watch_timeout",
                    str(WATCH_TIMEOUT)], check=True, timeout=60,
                   capture_output=True)
    conf = env.cluster.rados_conf("quota_bytes = 100000000\n")
    env.s1 = UStore(conf).start()
    env.s2 = UStore(conf).start()
    env.servers = (env.s1, env.s2)
    env.a = Client(env.s1.port)
    env.b = Client(env.s2.port)
    for d in ("r.example", BOX, BOX + "/new", BOX + "/cur", BOX + "/tmp"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    return env


def notices(w, until, stop=None):
    """NOTIFY frames on |w| until |until| (monotonic) or stop(list)."""
    got = []
    while time.monotonic() < until:
        try:
            op, flags, st, rid, p = w.c.recv(max(0.05,
                                                 until - time.monotonic()))
        except (OSError, hc.Closed):
            break
        if op is None:
            break
        if flags & hc.F_NOTICE and op == hc.OP["NOTIFY"]:
            n = struct.unpack_from(">H", p)[0]
            path = p[2:2 + n].decode()
            ev = p[2 + n]
            m = struct.unpack_from(">H", p, 3 + n)[0]
            name = p[5 + n:5 + n + m].decode()
            got.append((time.monotonic(), path, ev, name))
            if stop and stop(got):
                break
    return got


def stats(store):
    rc, out, err = ctl(store, "stats")
    want(rc, 0, "mstore-ctl stats: %s" % err)
    return kv(out)


def test_events_without_reset(env):
    """Ordinary traffic: every ADD arrives, and the re-reads of the
    counters (every 3 s, a gap believed on the second) add no RESET."""
    w = Client(env.s1.port)
    try:
        want(w.call("WATCH", hc.s(BOX + "/new"))[0], 0, "WATCH")
        for i in range(20):
            want(env.b.deliver("plain.%d" % i, b"plain")[0], 0, "DELIVER")
        got = notices(w, time.monotonic() + 8)
        adds = {x[3] for x in got if x[2] == 1}
        resets = [x for x in got if x[2] == 4]
        want(adds >= {"plain.%d" % i for i in range(20)}, True,
             "all 20 ADD notices (got %d)" % len(adds))
        want(resets, [], "RESETs during ordinary traffic")
    finally:
        w.close()


def test_watched_dirs_follow_unwatch(env):
    """What the server keeps to repair notices follows WATCH, UNWATCH and
    the end of the connection."""
    base = int(stats(env.s1)["watched_dirs"])
    w = Client(env.s1.port)
    try:
        for d in ("/new", "/cur"):
            want(w.call("WATCH", hc.s(BOX + d))[0], 0, "WATCH " + d)
        want(int(stats(env.s1)["watched_dirs"]), base + 2, "two watched")
        want(w.call("UNWATCH", hc.s(BOX + "/new"))[0], 0, "UNWATCH")
        mstlib.wait_until(lambda: int(stats(env.s1)["watched_dirs"]) ==
                          base + 1, 5, "the UNWATCH to reach the engine")
    finally:
        w.close()
    mstlib.wait_until(lambda: int(stats(env.s1)["watched_dirs"]) == base,
                      5, "the connection's end to reach the engine")


def test_lost_watch_repaired(env):
    w = Client(env.s1.port)
    try:
        want(w.call("WATCH", hc.s(BOX + "/new"))[0], 0, "WATCH")
        before = stats(env.s1)
        env.s1.proc.send_signal(signal.SIGSTOP)
        try:
            # Past the OSD's watch timeout: it drops server 1's watch.
            time.sleep(WATCH_TIMEOUT + 4)
            st, a = env.b.deliver("lost.1", b"while the watch was gone")
            want(st, 0, "DELIVER through server 2")
            time.sleep(1)
        finally:
            env.s1.proc.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        got = notices(w, t0 + RESET_BOUND, stop=lambda g: any(
            x[2] == 4 or x[3] == "lost.1" for x in g))
        hit = [x for x in got if x[2] == 4 or x[3] == "lost.1"]
        want(bool(hit), True, "RESET or ADD lost.1 within %.0f s of "
             "SIGCONT (got %r)" % (RESET_BOUND, got))
        after = stats(env.s1)
        print("  %s after %.2f s; watch re-established %s -> %s, "
              "RESETs %s -> %s" % (
                  "RESET" if hit[0][2] == 4 else "ADD", hit[0][0] - t0,
                  before["watch_reestablished"],
                  after["watch_reestablished"], before["watch_resets"],
                  after["watch_resets"]))
        want(int(after["watch_reestablished"]) >
             int(before["watch_reestablished"]), True,
             "server 1 saw its watch lost and made it again")
        # The mount's next LIST shows it: nothing is lost for good.
        _, _, _, ents = env.a.list()
        want(present(ents)["lost.1"]["id"], a["id"], "lost.1 listed")
    finally:
        w.close()


def test_notify_osd_killed(env):
    """The OSD that holds mst.ntf's primary copy is killed and started
    again: a delivery through server 2 meanwhile still reaches server 1's
    watcher, as the event or as RESET."""
    m = env.cluster.ceph_json("osd", "map", radoslib.POOL, "mst.ntf")
    osd = str(m["acting_primary"])
    w = Client(env.s1.port)
    try:
        want(w.call("WATCH", hc.s(BOX + "/new"))[0], 0, "WATCH")
        r = radoslib.mc("kill-osd", env.cluster.dir, osd, "--wait-down")
        want(r.returncode, 0, "kill-osd %s: %s" % (osd, r.stderr))
        try:
            t0 = time.monotonic()
            st, _ = env.b.deliver("osd.1", b"while its OSD was down")
            want(st, 0, "DELIVER through server 2, osd.%s down" % osd)
            got = notices(w, t0 + RESET_BOUND, stop=lambda g: any(
                x[2] == 4 or x[3] == "osd.1" for x in g))
        finally:
            r = radoslib.mc("start-osd", env.cluster.dir, osd,
                            "--wait-clean", timeout=240)
        want(r.returncode, 0, "start-osd %s: %s" % (osd, r.stderr))
        hit = [x for x in got if x[2] == 4 or x[3] == "osd.1"]
        want(bool(hit), True, "the notice with osd.%s down" % osd)
        print("  osd.%s (primary of mst.ntf) down: %s %.3f s after the "
              "DELIVER was sent" % (osd, "RESET" if hit[0][2] == 4 else
                                     "ADD", hit[0][0] - t0))
    finally:
        w.close()


def m_oid(env, path):
    """m.<id of |path|>: where new/ and cur/ of |path| keep entries."""
    st, parts = env.a.call("LOOKUP", hc.s(path))
    want(st, 0, "LOOKUP " + path)
    return "m.%016x" % struct.unpack_from(">BQ", parts[0])[1]


def test_dead_notifier_repaired(env):
    """A commit whose notify never went: the watcher gets RESET from the
    periodic re-read of the counters."""
    w = Client(env.s1.port)
    try:
        # 60 other watched folders ride along: read in parallel, none
        # moved, none gets a RESET.
        others = ["r.example/w.%d" % i for i in range(60)]
        for d in others:
            want((env.b.mkdir(d), env.b.mkdir(d + "/new")), (0, 0),
                 "MKDIR " + d)
            want(w.call("WATCH", hc.s(d + "/new"))[0], 0, "WATCH " + d)
        want(w.call("WATCH", hc.s(BOX + "/cur"))[0], 0, "WATCH")
        oid = m_oid(env, BOX)
        path = os.path.join(env.s1.dir, "c.val")
        rados(env, "getomapval", oid, "C.c", path)
        c = int(open(path).read().strip(), 16)
        t0 = time.monotonic()
        rados(env, "setomapval", oid, "C.c", "%016x" % (c + 1))
        got = notices(w, t0 + RESET_BOUND,
                      stop=lambda g: any(x[2] == 4 for x in g))
        resets = [x for x in got if x[2] == 4 and x[1] == BOX + "/cur"]
        want(bool(resets), True, "RESET of %s/cur within %.0f s" % (
            BOX, RESET_BOUND))
        got += notices(w, time.monotonic() + 3.5)
        want([x[1] for x in got if x[2] == 4 and x[1] != BOX + "/cur"],
             [], "RESETs of the 60 folders that did not change")
        print("  RESET %.2f s after the silent commit (counter %d -> %d)"
              % (resets[0][0] - t0, c, c + 1))
    finally:
        w.close()


def test_ctl_status_stats(env):
    rc, out, err = ctl(env.s2, "status")
    want(rc, 0, "mstore-ctl status: " + err)
    want("server" in kv(out), True, "status names the server")
    s = stats(env.s2)
    want(s.get("engine"), "rados", "stats engine=")
    want(int(s["deliveries"]) > 0, True, "stats counts deliveries")
    want(int(s["pool_objects"]) > 0, True, "stats pool_objects")
    # stats is allowed over TCP as for the local engine.
    r = subprocess.run([mstlib.CTL, "-s", env.s2.addr, "stats"],
                       capture_output=True, text=True, timeout=60)
    want((r.returncode, "engine=rados" in r.stdout), (0, True),
         "stats over TCP")
    for cmd in ("compact", "checkpoint"):
        rc, out, err = ctl(env.s1, cmd)
        want(rc, 0, "mstore-ctl %s: %s" % (cmd, err))
        want(cmd + "=" in out, True, cmd + " says what it did")


def test_quota_file(env):
    """quota_file's per-mailbox limits hold on rados; other mailboxes
    keep the defaults (none here)."""
    qf = os.path.join(env.s1.dir, "quotas")
    with open(qf, "w") as f:
        f.write("# MAILBOX BYTES MESSAGES\nr.example/qf 250 0\n")
    s3 = UStore(env.cluster.rados_conf("quota_file = %s\n" % qf)).start()
    c = Client(s3.port)
    try:
        box = "r.example/qf"
        for d in (box, box + "/new"):
            want(c.mkdir(d), 0, "MKDIR " + d)
        sts = [c.deliver("q.%d" % i, b"x" * 100, box=box)[0]
               for i in range(3)]
        want(sts, [0, 0, errno.EDQUOT], "3 x 100 bytes under 250")
        rc, out, err = ctl(s3, "statfs", box)
        want(rc, 0, "statfs: " + err)
        s = kv(out)
        want((s["quota_bytes"], s["used_bytes"], s["used_msgs"]),
             ("250", "200", "2"), "statfs of the mailbox")
        want(c.deliver("big.1", b"y" * 120)[0], 0,
             "another mailbox keeps the default (no limit)")
    finally:
        c.close()
        s3.kill()


def scrub(env, *args, expect=0):
    t0 = time.monotonic()
    rc, out, err = ctl(env.s1, "scrub", "verify=1", *args)
    want(rc, expect, "mstore-ctl scrub %s: %s%s" % (" ".join(args), out,
                                                    err))
    r = kv(out)
    r["_secs"] = time.monotonic() - t0
    return r, out


def statfs(env):
    rc, out, err = ctl(env.s2, "statfs", BOX)
    want(rc, 0, "statfs: " + err)
    s = kv(out)
    return int(s["used_bytes"]), int(s["used_msgs"])


def same_shard_names(prefix, n, shards=4):
    """|n| names PREFIX.<i> that share one shard (an idempotency id is
    looked for in the shard of the name it comes with)."""
    cands = ["%s.%d" % (prefix, i) for i in range(200)]
    k = shard_of(cands[0], shards)
    return [c for c in cands if shard_of(c, shards) == k][:n]


def test_scrub(env):
    # Messages that must all survive every scrub.
    for i in range(10):
        want(env.a.deliver("keep.%d" % i, b"keep %d" % i * 10)[0], 0,
             "DELIVER")
    idem = os.urandom(16)
    ix, iy, iz = same_shard_names("idem", 3)
    st, first = env.b.deliver(ix, b"first", idem=idem)
    want(st, 0, "DELIVER with an idem")
    st, again = env.a.deliver(iy, b"first", idem=idem)
    want((st, again["id"]), (0, first["id"]), "a retry before expiry")
    # An orphan: a body no entry names, as a DELIVER leaves whose server
    # died between writing the body and naming it.
    orphan = "b.%016x" % ((0xfffff << 36) | 12345)
    blob = os.path.join(env.s1.dir, "orphan")
    open(blob, "wb").write(b"never named")
    rados(env, "put", orphan, blob)
    rados(env, "setxattr", orphan, "loc", m_oid(env, BOX) + " N.e.ghost")
    rados(env, "setxattr", orphan, "mbox", BOX)
    used = statfs(env)

    r, _ = scrub(env, "settle=2")
    want(r["result"], "clean", "first scrub")
    want((r["orphan_bodies"], r["orphans_in_grace"]), ("0", "1"),
         "a young orphan is kept (grace)")
    want((r["largest_store"][:2] in ("m.", "d."), r["large_stores"]),
         (True, "0"), "the largest store is named, none is large")
    want(rados(env, "stat", orphan, check=False).returncode, 0,
         "orphan still there")
    # Within its grace an unnamed body may be a delivery in flight: its
    # size counts (usage too high, never too low).
    want((r["quota_recounted"], statfs(env)), ("1", (used[0] + 11,
                                                     used[1] + 1)),
         "the young orphan counted in its mailbox's usage")
    print("  scrub 1: %s messages, %s bodies verified in %.1f s" % (
        r["messages"], r["bodies_verified"], r["_secs"]))

    # Usage drifted (a server died between reservation and entry).
    q = "q." + BOX
    rados(env, "setomapval", q, "u", "Q%016x%016x" % (used[0] + 5000,
                                                       used[1] + 3))
    want(statfs(env), (used[0] + 5000, used[1] + 3), "drifted usage")
    time.sleep(2.2)
    r, out = scrub(env, "grace=2", "idem_expiry=2", "settle=1")
    want(r["result"], "clean", "second scrub")
    want((r["orphan_bodies"], r["orphans_removed"]), ("1", "1"),
         "the orphan past its grace is removed")
    want(rados(env, "stat", orphan, check=False).returncode != 0, True,
         "orphan gone")
    want(int(r["idem_expired"]) >= 1, True, "expired idem records removed")
    want(r["quota_recounted"], "1", "usage recounted:\n" + out)
    want(statfs(env), used, "usage after the recount")
    print("  scrub 2: orphan removed, %s idem records expired, usage "
          "back to %d bytes / %d messages in %.1f s" % (
              r["idem_expired"], used[0], used[1], r["_secs"]))
    # Every named message is still there.
    _, _, _, ents = env.b.list()
    for i in range(10):
        st, _, _, data = env.b.fetch(present(ents)["keep.%d" % i]["id"])
        want((st, data), (0, b"keep %d" % i * 10), "keep.%d after" % i)
    # The idem expired: the same id is a new delivery now.
    st, later = env.b.deliver(iz, b"later", idem=idem)
    want(st, 0, "DELIVER with the expired idem")
    want(later["id"] != first["id"], True, "a new message, not a retry")

    # A body whose bytes changed under it is damage: exit 1.
    victim = "b.%016x" % first["id"]
    saved = os.path.join(env.s1.dir, "victim")
    rados(env, "get", victim, saved)
    open(blob, "wb").write(b"FIRST")
    rados(env, "put", victim, blob)
    try:
        r, out = scrub(env, expect=1)
        want((r["result"], r["bad_bodies"]), ("damaged", "1"),
             "a changed body:\n" + out)
        want(victim in out, True, "the damage line names it")
    finally:
        rados(env, "put", victim, saved)
    r, _ = scrub(env, "settle=0")
    want(r["result"], "clean", "after the body is restored")


def main():
    return radoslib.run_suite("test_rados_ops", setup, (
        test_events_without_reset,
        test_watched_dirs_follow_unwatch,
        test_lost_watch_repaired,
        test_dead_notifier_repaired,
        test_notify_osd_killed,
        test_ctl_status_stats,
        test_quota_file,
        test_scrub))


if __name__ == "__main__":
    sys.exit(main())
