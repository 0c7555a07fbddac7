#!/usr/bin/env python3
"""test_rados_quota - quotas, store metrics and scrub progress of the
rados back-end, against a real Ceph cluster (tools/lab/ceph-minicluster,
memstore) with two mstored on one pool, neither with a limit in its
mstore.conf:

  - mstore-ctl quota set through server 1 answers in text and in --json,
    and quota get through server 2 reports the same limits at once: they
    live in the pool (q.<mailbox> omap lim), not in one server;
  - the limits hold for deliveries through either server: EDQUOT past
    the message count and past the bytes, never more stored than
    allowed; an EXPUNGE gives room back; quota set 0 0 lifts them for
    both servers; a limit set this way wins over a quota_file line;
  - /metrics of both servers before and after a known load: the
    messages, bytes and mailboxes gauges move by what was delivered and
    go down by what was expunged, on the server that did it at once and
    on the other within seconds (the pool's totals, mst.usage); the
    locks and lock_waiters gauges follow LOCKs held and waiting through
    each server and go back down;
  - scrub reports progress (stats scrub_bytes_done of scrub_bytes_total,
    the bodies, mstore-ctl --progress, the scrub metrics), sets the
    pool's totals to what it counted when nothing moved, and gives a
    mailbox whose usage object is missing (messages stored before every
    server counted usage) its usage back;
  - many deliveries at once into ONE mailbox without a limit, through
    both servers, then expunges of a third of them, also at once: none
    fails (usage accounting that races backs off, and never refuses a
    delivery), and the usage then counts exactly the messages stored.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import mstlib  # noqa: E402
import hostile_client as hc  # noqa: E402

import radoslib  # noqa: E402
from radoslib import Client, present  # noqa: E402
from test_metrics import Exposition  # noqa: E402
from test_rados_ops import kv  # noqa: E402  (key=value lines of stats)

QBOX = "q.example/limited"
MBOX = "q.example/metered"
OLDBOX = "q.example/old"
SPREAD = 10.0       # another server's changes reach the gauges within, s
RD, WR, UN = 1, 2, 3
WAIT = 0x01
EOF = (1 << 64) - 1


def want(got, exp, what):
    if got != exp:
        raise AssertionError("%s: got %r, want %r" % (what, got, exp))


class MStore(mstlib.Store):
    """mstored with a Unix socket (ADMIN quota and scrub need one) and
    --metrics on a port of its own."""

    def start(self, timeout=30):
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.metrics = "127.0.0.1:%d" % mstlib.free_port()
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [mstlib.MSTORED, "--data", self.data, "--listen", self.addr,
             "--listen", "unix:" + self.sock, "--config", self.conf,
             "--metrics", self.metrics, "--foreground"],
            stdout=logf, stderr=subprocess.STDOUT)
        mstlib._procs.append(self.proc)
        mstlib.wait_until(lambda: self.proc.poll() is not None or
                          mstlib.can_connect(self.port), timeout,
                          "mstored to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("mstored exited %d:\n%s" % (
                self.proc.returncode, open(self.log).read()))
        mstlib.wait_until(lambda: "metrics at http://%s/metrics" %
                          self.metrics in open(self.log).read(), 10,
                          "the metrics line in the log")
        return self


class Locker(Client):
    def send_lock(self, fid, owner, typ, flags=0):
        self.rid += 1
        self.c.send(hc.frame("LOCK", struct.pack(
            ">QQIBBQQ", fid, owner, 1000 + owner, typ, flags, 0, EOF),
            self.rid))
        return self.rid

    def lock(self, fid, owner, typ, flags=0):
        return self.c.reply(self.send_lock(fid, owner, typ, flags), 20)[0]


class Env:
    pass


def ctl(store, *args):
    r = subprocess.run([mstlib.CTL, "-s", "unix:" + store.sock] +
                       list(args), capture_output=True, text=True,
                       timeout=300)
    return r.returncode, r.stdout, r.stderr


def scrape(store):
    with urllib.request.urlopen("http://%s/metrics" % store.metrics,
                                timeout=10) as r:
        want(r.status, 200, "GET /metrics")
        return Exposition(r.read().decode("utf-8"))


def gauges(store):
    e = scrape(store)
    return tuple(int(e.get(n)) for n in (
        "mstored_store_messages", "mstored_store_message_bytes",
        "mstored_store_mailboxes"))


def rados(env, *args, check=True):
    r = subprocess.run(["timeout", "60", "rados", "-c", env.cluster.conf,
                        "-p", radoslib.POOL] + list(args),
                       capture_output=True, timeout=90)
    if check and r.returncode != 0:
        raise AssertionError("rados %s: %s" % (" ".join(args),
                                               r.stderr.decode()))
    return r


def maildir(c, box):
    for d in (box, box + "/new", box + "/cur", box + "/tmp"):
        want(c.mkdir(d), 0, "MKDIR " + d)


def setup(cluster):
    env = Env()
    env.cluster = cluster.start()
    conf = env.cluster.rados_conf()
    env.s1 = MStore(conf).start()
    env.s2 = MStore(conf).start()
    env.servers = (env.s1, env.s2)
    env.a = Locker(env.s1.port)
    env.b = Locker(env.s2.port)
    want(env.a.mkdir("q.example"), 0, "MKDIR q.example")
    for box in (QBOX, MBOX, OLDBOX):
        maildir(env.a, box)
    return env


def quota_get(store, box, *opts):
    rc, out, err = ctl(store, *(list(opts) + ["quota", "get", box]))
    want(rc, 0, "quota get %s: %s" % (box, err))
    return json.loads(out) if "--json" in opts else kv(out)


def test_quota_set_get_across_servers(env):
    """Set through server 1, in text and JSON; server 2 reports it."""
    rc, out, err = ctl(env.s1, "quota", "set", QBOX, "1K", "3")
    want(rc, 0, "quota set: " + err)
    got = kv(out)
    want((got["mailbox"], got["quota_bytes"], got["quota_msgs"],
          got["used_bytes"], got["used_msgs"]),
         (QBOX, "1024", "3", "0", "0"), "quota set's text")
    rc, out, err = ctl(env.s1, "--json", "quota", "set", QBOX, "1000", "3")
    want(rc, 0, "quota set --json: " + err)
    want(json.loads(out), {"mailbox": QBOX, "quota_bytes": 1000,
                           "used_bytes": 0, "quota_msgs": 3,
                           "used_msgs": 0}, "quota set --json")
    want(quota_get(env.s2, QBOX, "--json"),
         {"mailbox": QBOX, "quota_bytes": 1000, "used_bytes": 0,
          "quota_msgs": 3, "used_msgs": 0},
         "quota get --json through server 2")
    got = quota_get(env.s2, QBOX)
    want((got["quota_bytes"], got["quota_msgs"]), ("1000", "3"),
         "quota get through server 2")
    # Where it lives: the mailbox's q object, which every server reads.
    raw = os.path.join(env.s1.dir, "lim")
    rados(env, "getomapval", "q." + QBOX, "lim", raw)
    want(open(raw, "rb").read(), b"L%016x%016x" % (1000, 3),
         "lim in q." + QBOX)
    # Other mailboxes keep the default: none.
    got = quota_get(env.s2, MBOX)
    want((got["quota_bytes"], got["quota_msgs"]), ("0", "0"),
         "another mailbox")
    # Bad arguments are refused by mstore-ctl before any request.
    rc, _, err = ctl(env.s1, "quota", "set", QBOX, "lots", "3")
    want(rc != 0 and "BYTES" in err, True, "a bad BYTES: " + err)


def test_quota_enforced_on_both_servers(env):
    """3 messages or 1000 bytes, deliveries through both servers."""
    a, b = env.a, env.b
    sts = [(a if i % 2 else b).deliver("m.%d" % i, b"x" * 100,
                                       box=QBOX)[0] for i in range(5)]
    want(sts, [0, 0, 0, errno.EDQUOT, errno.EDQUOT],
         "5 deliveries under a 3-message limit")
    got = quota_get(env.s1, QBOX)
    want((got["used_msgs"], got["used_bytes"]), ("3", "300"),
         "usage after the refusals")
    # An EXPUNGE gives a message's room back, to either server.
    want(a.ref("EXPUNGE", "m.0", box=QBOX)[0], 0, "EXPUNGE m.0")
    want(b.deliver("m.5", b"x" * 100, box=QBOX)[0], 0,
         "DELIVER after an EXPUNGE")
    # The bytes: 300 stored; 428 allowed and the count no longer in the
    # way (bodies here stay within 128 bytes, the test's own xxh3).
    rc, _, err = ctl(env.s2, "quota", "set", QBOX, "428", "100")
    want(rc, 0, "quota set through server 2: " + err)
    want(a.deliver("b.1", b"y" * 100, box=QBOX)[0], 0,
         "100 bytes up to 400 (server 1)")
    want(b.deliver("b.2", b"y" * 29, box=QBOX)[0], errno.EDQUOT,
         "29 bytes over 400 of 428 (server 2)")
    want(b.deliver("b.3", b"y" * 28, box=QBOX)[0], 0,
         "28 bytes up to 428 exactly (server 2)")
    want(a.deliver("b.4", b"z", box=QBOX)[0], errno.EDQUOT,
         "one byte over (server 1)")
    got = quota_get(env.s2, QBOX)
    want((got["used_msgs"], got["used_bytes"]), ("5", "428"),
         "usage at the limit")
    # 0 0 lifts the limits for every server.
    rc, _, err = ctl(env.s1, "quota", "set", QBOX, "0", "0")
    want(rc, 0, "quota set 0 0: " + err)
    want(b.deliver("free.1", b"z" * 128, box=QBOX)[0], 0,
         "no limit after quota set 0 0")
    _, _, _, ents = a.list(box=QBOX)
    want(sorted(present(ents)), ["b.1", "b.3", "free.1", "m.1", "m.2",
                                 "m.5"], "what is stored")


def test_set_limit_wins_over_quota_file(env):
    """A third server with a quota_file line for the mailbox: the limit
    set through mstore-ctl holds there too."""
    box = "q.example/filed"
    maildir(env.a, box)
    qf = os.path.join(env.s1.dir, "quotas")
    with open(qf, "w") as f:
        f.write("%s 150 0\n" % box)
    s3 = MStore(env.cluster.rados_conf("quota_file = %s\n" % qf)).start()
    c = Client(s3.port)
    try:
        want([c.deliver("f.%d" % i, b"x" * 100, box=box)[0]
              for i in range(2)], [0, errno.EDQUOT], "quota_file: 150 B")
        want(quota_get(s3, box)["quota_bytes"], "150", "from quota_file")
        rc, _, err = ctl(env.s1, "quota", "set", box, "250", "0")
        want(rc, 0, "quota set: " + err)
        want(quota_get(s3, box)["quota_bytes"], "250", "set wins")
        want([c.deliver("g.%d" % i, b"x" * 100, box=box)[0]
              for i in range(2)], [0, errno.EDQUOT],
             "250 B through the server with the quota_file")
    finally:
        c.close()
        s3.stop()   # its last changes of the totals written at close


def wait_gauges(store, exp, what):
    last = [None]

    def ok():
        last[0] = gauges(store)
        return last[0] == exp
    try:
        mstlib.wait_until(ok, SPREAD, what)
    except TimeoutError:
        raise AssertionError("%s: got %r, want %r" % (what, last[0], exp))


def settled(env):
    """The pool's totals once both servers report the same twice, a
    second and a half apart (another server's changes take up to two
    seconds to show)."""
    last = [None]

    def same():
        g = [gauges(s) for s in env.servers]
        ok = g[0] == g[1] and g[0] == last[0]
        last[0] = g[0] if g[0] == g[1] else None
        if not ok:
            time.sleep(1.5)
        return ok
    mstlib.wait_until(same, 3 * SPREAD, "both servers' gauges to settle")
    return last[0]


def test_store_gauges_follow_the_load(env):
    """10 messages of 100 bytes into a new mailbox, half through each
    server, then 4 expunged: the pool's gauges on both servers."""
    m, b, x = settled(env)
    for i in range(10):
        c = env.a if i < 5 else env.b
        want(c.deliver("load.%d" % i, b"L" * 100, box=MBOX)[0], 0,
             "DELIVER load.%d" % i)
    # Server 2 did the last five: its own changes show at once.
    got = gauges(env.s2)
    want(got[0] >= m + 5 and got[1] >= b + 500, True,
         "server 2's own deliveries at once (%r from %r)" % (got, (m, b, x)))
    for s in env.servers:
        wait_gauges(s, (m + 10, b + 1000, x + 1),
                    "gauges of %s after 10 deliveries" % s.addr)
    for i in range(4):
        want(env.b.ref("EXPUNGE", "load.%d" % i, box=MBOX)[0], 0,
             "EXPUNGE load.%d" % i)
    want(gauges(env.s2), (m + 6, b + 600, x + 1),
         "server 2's expunges at once")
    wait_gauges(env.s1, (m + 6, b + 600, x + 1),
                "server 1 after server 2's expunges")
    e = scrape(env.s1)
    print("  pool totals: %d messages, %d bytes, %d mailboxes; delivered "
          "through server 1: %d" % (
              m + 6, b + 600, x + 1,
              int(e.get("mstored_delivered_messages_total"))))


def test_locks_gauges(env):
    """Locks held through server 1 and a LOCK waiting in server 2."""
    fid = int.from_bytes(os.urandom(4), "big") << 8
    base1 = scrape(env.s1)
    base2 = scrape(env.s2)
    l1, w2 = (int(base1.get("mstored_locks")),
              int(base2.get("mstored_lock_waiters")))
    l2 = int(base2.get("mstored_locks"))
    want(env.a.lock(fid, 1, WR), 0, "LOCK WR through server 1")
    want(env.a.lock(fid + 1, 1, RD), 0, "LOCK RD of another file")
    want(int(scrape(env.s1).get("mstored_locks")), l1 + 2,
         "server 1's locks gauge")
    rid = env.b.send_lock(fid, 2, WR, WAIT)
    mstlib.wait_until(lambda: int(scrape(env.s2).get(
        "mstored_lock_waiters")) == w2 + 1, 10, "server 2's waiter gauge")
    want(int(scrape(env.s2).get("mstored_locks")), l2,
         "server 2 holds nothing yet")
    want(env.a.lock(fid, 1, UN), 0, "UNLOCK through server 1")
    want(env.b.c.reply(rid, 20)[0], 0, "the waiter granted")
    want(int(scrape(env.s1).get("mstored_locks")), l1 + 1,
         "server 1's gauge down by one")
    e2 = scrape(env.s2)
    want((int(e2.get("mstored_locks")),
          int(e2.get("mstored_lock_waiters"))), (l2 + 1, w2),
         "server 2: the granted lock, no waiter")
    want(env.b.lock(fid, 2, UN), 0, "UNLOCK through server 2")
    want(env.a.lock(fid + 1, 1, UN), 0, "UNLOCK the other file")
    want(int(scrape(env.s1).get("mstored_locks")), l1, "server 1 back")
    want(int(scrape(env.s2).get("mstored_locks")), l2, "server 2 back")


def test_scrub_progress_and_totals(env):
    """Usage removed from one mailbox (as stored before every server
    counted it) and the totals knocked off: the scrub puts both right and
    reports its progress."""
    for i in range(3):
        want(env.a.deliver("old.%d" % i, b"o" * 100, box=OLDBOX)[0], 0,
             "DELIVER old.%d" % i)
    rados(env, "rm", "q." + OLDBOX)
    got = quota_get(env.s1, OLDBOX)
    want((got["used_msgs"], got["used_bytes"]), ("0", "0"),
         "the usage object removed")
    # The totals drift: a key as a dead server would leave it, 7
    # messages that are not there.
    truth = settled(env)
    rados(env, "setomapval", "mst.usage", "s.00000000000fffff",
          "T%016x%016x%016x" % (0, 7, 0))
    wait_gauges(env.s2, (truth[0] + 7, truth[1], truth[2]),
                "the drifted totals")
    time.sleep(2.5)     # no change within the scrub's guard window
    r = subprocess.run([mstlib.CTL, "-s", "unix:" + env.s1.sock,
                        "--progress", "scrub", "settle=1"],
                       capture_output=True, text=True, timeout=300)
    want(r.returncode, 0, "scrub: %s%s" % (r.stdout, r.stderr))
    out = kv(r.stdout)
    want((out["result"], out["usage_totals"]), ("clean", "set"),
         "the scrub's result:\n" + r.stdout)
    want((int(out["total_messages"]), int(out["total_bytes"]),
          int(out["total_mailboxes"])), truth, "what the scrub counted")
    want(int(out["quota_recounted"]) >= 1, True, "usage recounted")
    m = re.search(r"scrub: done, 100% \((\d+) of (\d+) message bytes "
                  r"checked; (\d+) of (\d+) bodies\)", r.stderr)
    want(bool(m), True, "the final progress line: %r" % r.stderr)
    want((int(m.group(1)), int(m.group(2))), (truth[1], truth[1]),
         "progress bytes")
    want(m.group(3) == m.group(4) and int(m.group(3)) >= truth[0], True,
         "progress bodies: %s" % m.group(0))
    got = quota_get(env.s2, OLDBOX)
    want((got["used_msgs"], got["used_bytes"]), ("3", "300"),
         "the mailbox's usage made again")
    rc, st, err = ctl(env.s1, "stats")
    want(rc, 0, "stats: " + err)
    st = kv(st)
    want((st["scrub_running"], st["scrub_phase"], st["scrub_bytes_done"],
          st["scrub_bytes_total"]), ("0", "done", str(truth[1]),
                                     str(truth[1])), "stats after the scrub")
    e = scrape(env.s1)
    want((int(e.get("mstored_scrub_running")),
          int(e.get("mstored_scrub_size_bytes")),
          int(e.get("mstored_scrub_checked_bytes")),
          int(e.get("mstored_scrubs_total")) >= 1),
         (0, truth[1], truth[1], True), "scrub metrics")
    for s in env.servers:
        wait_gauges(s, truth, "the totals after the scrub on " + s.addr)
    keys = rados(env, "listomapkeys", "mst.usage").stdout.split()
    want(keys, [b"base"], "every server's key folded into base")
    # Changes after the fold count from it, on both servers.
    want(env.b.deliver("after.1", b"a" * 10, box=OLDBOX)[0], 0,
         "DELIVER")
    exp = (truth[0] + 1, truth[1] + 10, truth[2])
    for s in env.servers:
        wait_gauges(s, exp, "a delivery after the fold on " + s.addr)


BUSY = "q.example/busy"
BUSY_CLIENTS = 16   # connections, half to each server
BUSY_EACH = 12      # deliveries per connection


def on_all(env, work):
    """work(client, k) on BUSY_CLIENTS connections at once, k-th
    through server k % 2; the statuses of every call, by connection."""
    clients = [Client(env.servers[k % 2].port) for k in range(BUSY_CLIENTS)]
    out = [None] * BUSY_CLIENTS
    go = threading.Barrier(BUSY_CLIENTS)

    def run(k):
        try:
            go.wait(30)
            out[k] = work(clients[k], k)
        except Exception as ex:     # reported below, with the rest
            out[k] = ex
    threads = [threading.Thread(target=run, args=(k,))
               for k in range(BUSY_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    want([t.is_alive() for t in threads], [False] * BUSY_CLIENTS,
         "every connection done within 120 s")
    return out


def failed(out):
    """(connection, call, status or exception) of every call of
    on_all's |out| that did not answer 0."""
    bad = []
    for k, sts in enumerate(out):
        if not isinstance(sts, list):
            bad.append((k, None, repr(sts)))
            continue
        bad.extend((k, i, st) for i, st in enumerate(sts) if st != 0)
    return bad


def test_concurrent_unlimited_deliveries(env):
    """No limit on the mailbox: many workers of both servers race on its
    usage object; every delivery and expunge succeeds, and the usage
    ends exactly at what is stored."""
    maildir(env.a, BUSY)
    body = b"c" * 100
    sent = on_all(env, lambda c, k: [
        c.deliver("busy.%d.%d" % (k, i), body, box=BUSY)[0]
        for i in range(BUSY_EACH)])
    want(failed(sent), [], "%d deliveries at once, no quota: "
         "(connection, try, status) of those that failed" %
         (BUSY_CLIENTS * BUSY_EACH))
    got = quota_get(env.s2, BUSY)
    want((got["quota_bytes"], got["quota_msgs"], got["used_msgs"],
          got["used_bytes"]),
         ("0", "0", str(BUSY_CLIENTS * BUSY_EACH),
          str(BUSY_CLIENTS * BUSY_EACH * len(body))),
         "usage after the deliveries")
    # A third expunged, at once, each through the other server than the
    # one that delivered it.
    gone = on_all(env, lambda c, k: [
        c.ref("EXPUNGE", "busy.%d.%d" % ((k + 1) % BUSY_CLIENTS, i),
              box=BUSY)[0]
        for i in range(0, BUSY_EACH, 3)])
    want(failed(gone), [], "expunges at once: (connection, try, status) "
         "of those that failed")
    _, _, _, ents = env.a.list(box=BUSY)
    left = len(present(ents))
    want(left, BUSY_CLIENTS * (BUSY_EACH - len(range(0, BUSY_EACH, 3))),
         "messages left")
    for s in env.servers:
        got = quota_get(s, BUSY)
        want((got["used_msgs"], got["used_bytes"]),
             (str(left), str(left * len(body))),
             "usage after the expunges, through " + s.addr)
    for s in env.servers:
        log = open(s.log).read()
        for bad in ("too many races", "giving back", "still racing"):
            want(bad in log, False, "%r in the log of %s" % (bad, s.addr))


def main():
    return radoslib.run_suite("test_rados_quota", setup, (
        test_quota_set_get_across_servers,
        test_quota_enforced_on_both_servers,
        test_set_limit_wins_over_quota_file,
        test_store_gauges_follow_the_load,
        test_locks_gauges,
        test_scrub_progress_and_totals,
        test_concurrent_unlimited_deliveries))


if __name__ == "__main__":
    sys.exit(main())
