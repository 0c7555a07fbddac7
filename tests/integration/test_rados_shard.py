#!/usr/bin/env python3
"""test_rados_shard - the rados back-end's folder index in shards
(engine_rados_shard.c), against a real Ceph cluster
(tools/lab/ceph-minicluster, memstore) with three mstored on one pool, all
with rados_index_shards = 4 and the third with rados_index_cap = 16:

  - deliveries through two servers land in all four shard objects
    (m.<P>, m.<P>.1 .. m.<P>.3, read with `rados listomapkeys`), whose
    layout key L says 4, and no name is in two shards;
  - LIST through the other server returns exactly every message, full
    and as a delta since an earlier counter, while deliveries through
    both servers run: applying every delta to the first full listing
    gives the final full listing, no name missed, none extra;
  - a flag change (new/X -> cur/X:2,S) stays in X's shard, and expunges
    and flag changes show in the deltas of new/ and cur/;
  - racing DELIVERs of one name through two servers: one wins, the
    other is EEXIST; an idempotent retry through the other server is
    answered with the first message, stored once;
  - RMDIR of a sharded new/ that holds messages is ENOTEMPTY and leaves
    it working; emptied, it goes, and a DELIVER then is ENOENT;
  - past rados_index_cap entries in a shard's new/, a DELIVER is
    ENOSPC, logged, and nothing beyond the cap is stored.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import mstlib  # noqa: E402
import hostile_client as hc  # noqa: E402

import radoslib  # noqa: E402
from radoslib import BOX, Client, present, shard_of  # noqa: E402

SHARDS = 4
CAP = 16


def want(got, exp, what):
    if got != exp:
        raise AssertionError("%s: got %r, want %r" % (what, got, exp))


class Env:
    pass


def rados(env, *args):
    r = subprocess.run(["timeout", "60", "rados", "-c", env.cluster.conf,
                        "-p", radoslib.POOL] + list(args),
                       capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        raise AssertionError("rados %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def setup(cluster):
    env = Env()
    env.cluster = cluster.start()
    base = "rados_index_shards = %d\n" % SHARDS
    conf = env.cluster.rados_conf(base)
    env.s1 = mstlib.Store(conf).start()
    env.s2 = mstlib.Store(conf).start()
    env.s3 = mstlib.Store(env.cluster.rados_conf(
        base + "rados_index_cap = %d\n" % CAP)).start()
    env.servers = (env.s1, env.s2, env.s3)
    env.a = Client(env.s1.port)
    env.b = Client(env.s2.port)
    env.c = Client(env.s3.port)
    for d in ("r.example", BOX, BOX + "/new", BOX + "/cur", BOX + "/tmp"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    return env


def shard_keys(env, marker_prefix, marker):
    """{oid: [omap keys]} of the shard objects of the folder whose new/
    holds the entry |marker| (N.e.<marker>)."""
    objs = [o for o in rados(env, "ls").split() if o.startswith("m.")]
    keys = {o: rados(env, "listomapkeys", o).split() for o in objs}
    base = [o for o, ks in keys.items()
            if marker_prefix + marker in ks]
    assert len(base) == 1, "the shard holding %s: %r" % (marker, base)
    p = base[0][:18]        # m.<16 hex>
    return {o: ks for o, ks in keys.items() if o[:18] == p}


def test_spread_and_layout(env):
    for i in range(120):
        cl = env.a if i % 2 else env.b
        st, _ = cl.deliver("spread.%03d" % i, b"body %d" % i)
        want(st, 0, "DELIVER spread.%03d" % i)
    sk = shard_keys(env, "N.e.", "spread.000")
    p = min(sk, key=len)
    want(sorted(sk), sorted([p] + ["%s.%d" % (p, k)
                                   for k in range(1, SHARDS)]),
         "the shard objects")
    out = os.path.join(env.s1.dir, "L")
    rados(env, "getomapval", p, "L", out)
    want(open(out, "rb").read(), b"S%016x" % SHARDS, "layout key L of " + p)
    seen = {}
    for o, ks in sk.items():
        names = [k[4:] for k in ks if k.startswith("N.e.spread.")]
        want(len(names) > 0, True, "%s holds some of the messages" % o)
        for n in names:
            want(n in seen, False, "%s in %s and %s" % (n, seen.get(n), o))
            seen[n] = o
        want("N.n" in ks, True, "%s keeps an entry count" % o)
    want(len(seen), 120, "every message in exactly one shard")
    for n, o in seen.items():
        k = int(o[19:]) if len(o) > 18 else 0
        want(k, shard_of(n), "the shard of " + n)


def names(ents):
    return set(present(ents))


def apply_delta(cur, ents):
    for n, v in ents.items():
        if any(a["kind"] == "present" for a in v):
            cur.add(n)
        elif n in cur:
            cur.discard(n)


def test_list_full_and_delta_under_load(env):
    st, c0, flags, ents = env.b.list()
    want(st, 0, "full LIST")
    have = names(ents)
    want(set("spread.%03d" % i for i in range(120)) <= have, True,
         "the full LIST through the other server has every message")
    errors = []

    def load(cl, tag):
        for i in range(60):
            st, _ = cl.deliver("load.%s.%02d" % (tag, i), b"x")
            if st:
                errors.append("DELIVER load.%s.%02d: %d" % (tag, i, st))

    ts = [threading.Thread(target=load, args=(Client(s.port), t))
          for s, t in ((env.s1, "a"), (env.s2, "b"))]
    for t in ts:
        t.start()
    since, rounds = c0, 0
    lister = Client(env.s2.port)
    while any(t.is_alive() for t in ts) or rounds == 0:
        st, c, _, d = lister.list(since=since)
        want(st, 0, "LIST delta since %d" % since)
        want(c >= since, True, "the counter only grows")
        apply_delta(have, d)
        since = c
        rounds += 1
    for t in ts:
        t.join()
    want(errors, [], "deliveries under load")
    st, c, _, d = lister.list(since=since)
    apply_delta(have, d)
    st, cf, _, full = env.a.list()
    want(st, 0, "final full LIST")
    want(sorted(have ^ names(full)), [],
         "deltas (%d rounds) applied to the first listing vs the last "
         "full listing" % rounds)
    want(len([n for n in have if n.startswith("load.")]), 120,
         "every delivery under load")
    want(int(stats(env.s2)["index_counter_raises"]) > 0, True,
         "LISTs through server 2 raised shard counters")
    print("%d delta rounds under load, counter %d -> %d" % (rounds, c0, cf))
    lister.close()


def test_flag_change_expunge(env):
    st, c0n, _, _ = env.b.list(sub=1)
    st, c0c, _, _ = env.b.list(sub=2)
    sk = shard_keys(env, "N.e.", "spread.000")
    before = [o for o, ks in sk.items() if "N.e.spread.000" in ks]
    for i in range(5):
        want(env.a.setinfo(1, "spread.%03d" % i, 2, "spread.%03d:2,S" % i),
             0, "SETINFO spread.%03d" % i)
        want(env.b.ref("EXPUNGE", "spread.%03d" % (10 + i))[0], 0,
             "EXPUNGE spread.%03d" % (10 + i))
    sk = shard_keys(env, "C.e.", "spread.000:2,S")
    after = [o for o, ks in sk.items() if "C.e.spread.000:2,S" in ks]
    want(after, before, "the flag change stays in the name's shard")
    want([o for o, ks in sk.items() if "N.e.spread.000" in ks], [],
         "spread.000 left new/")
    st, _, _, d = env.a.list(sub=1, since=c0n)
    gone = set(n for n, v in d.items()
               if all(a["kind"] == "removed" for a in v))
    want(set("spread.%03d" % i for i in list(range(5)) +
             list(range(10, 15))) <= gone, True,
         "the new/ delta removes the moved and the expunged: %r" % gone)
    st, _, _, d = env.a.list(sub=2, since=c0c)
    want(set("spread.%03d:2,S" % i for i in range(5)) <= names(d), True,
         "the cur/ delta has the flag-changed ones")
    st, _, _, full = env.b.list(sub=2)
    want(set("spread.%03d:2,S" % i for i in range(5)) <= names(full), True,
         "the full cur/ listing")


def test_race_and_idem(env):
    for i in range(8):
        res = []
        name = "race.%d" % i
        ts = [threading.Thread(target=lambda cl: res.append(
            cl.deliver(name, b"r")[0]), args=(cl,))
            for cl in (Client(env.s1.port), Client(env.s2.port))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        want(sorted(res), [0, errno.EEXIST], "racing DELIVERs of " + name)
    idem = os.urandom(16)
    st, first = env.a.deliver("idem.1", b"once", idem=idem)
    want(st, 0, "DELIVER idem.1")
    st, again = env.b.deliver("idem.1", b"once", idem=idem)
    want((st, again["id"]), (0, first["id"]), "the retry through server 2")
    _, _, _, full = env.a.list()
    want(len(full.get("idem.1", [])), 1, "stored once")
    # What is weaker than local (mstored(8)): the id is looked for in the
    # shard of the name it comes with, so under a name in another shard
    # the same id is a new delivery.
    other = [n for n in ("idem.o.%d" % i for i in range(50))
             if shard_of(n) != shard_of("idem.1")][0]
    st, moved = env.b.deliver(other, b"once", idem=idem)
    want(st, 0, "the same idem under %s (another shard)" % other)
    want(moved["id"] != first["id"], True, "stored again, as documented")


def test_rmdir_sharded(env):
    box = "r.example/rm"
    for d in (box, box + "/new", box + "/cur"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    for i in range(12):
        want(env.b.deliver("m.%d" % i, b"x", box=box)[0], 0, "DELIVER m.%d"
             % i)
    want(env.a.call("RMDIR", hc.s(box + "/new"))[0], errno.ENOTEMPTY,
         "RMDIR of a sharded new/ with messages")
    want(env.b.deliver("after", b"x", box=box)[0], 0,
         "DELIVER after the refused RMDIR")
    for n in ["m.%d" % i for i in range(12)] + ["after"]:
        want(env.b.ref("EXPUNGE", n, box=box)[0], 0, "EXPUNGE " + n)
    want(env.a.call("RMDIR", hc.s(box + "/new"))[0], 0,
         "RMDIR of the emptied new/")
    want(env.b.deliver("late", b"x", box=box)[0], errno.ENOENT,
         "DELIVER into the removed new/")
    want(env.b.list(box=box)[0], errno.ENOENT, "LIST of the removed new/")


def test_cap_enospc(env):
    box = "r.example/cap"
    for d in (box, box + "/new", box + "/cur"):
        want(env.c.mkdir(d), 0, "MKDIR " + d)
    stored, refused = 0, 0
    for i in range(SHARDS * CAP + 40):
        st, _ = env.c.deliver("c.%03d" % i, b"x", box=box)
        if st == 0:
            stored += 1
        else:
            want(st, errno.ENOSPC, "DELIVER c.%03d past the cap" % i)
            refused += 1
    want(stored <= SHARDS * CAP, True, "at most the cap per shard stored")
    want(refused > 0, True, "some refused")
    sk = shard_keys(env, "N.e.", "c.000")
    for o, ks in sk.items():
        n = len([k for k in ks if k.startswith("N.e.")])
        want(n <= CAP, True, "%s holds %d entries (cap %d)" % (o, n, CAP))
    _, _, _, full = env.c.list(box=box)
    want(len(full), stored, "LIST has every stored one")
    log = open(env.s3.log, errors="replace").read()
    want("rados_index_cap" in log and "ENOSPC" in log, True,
         "the refusal is logged")
    st = stats(env.s3)
    want((st["index_shards"], st["index_cap"], st["index_full_refusals"]),
         (str(SHARDS), str(CAP), str(refused)), "mstore-ctl stats")


def stats(store):
    r = subprocess.run([mstlib.CTL, "-s", store.addr, "stats"],
                       capture_output=True, text=True, timeout=60)
    want(r.returncode, 0, "mstore-ctl stats: " + r.stderr)
    return dict(line.split("=", 1) for line in r.stdout.splitlines()
                if "=" in line)


def main():
    return radoslib.run_suite("test_rados_shard", setup, (
        test_spread_and_layout,
        test_list_full_and_delta_under_load,
        test_flag_change_expunge,
        test_race_and_idem,
        test_rmdir_sharded,
        test_cap_enospc))


if __name__ == "__main__":
    sys.exit(main())
