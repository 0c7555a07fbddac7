#!/usr/bin/env python3
"""test_rados - two mstored on one RADOS pool (the rados back-end).

Starts a real single-host Ceph cluster (tools/lab/ceph-minicluster, memstore:
1 mon, 1 mgr, 3 OSDs on 127.0.0.1), then two mstored with --backend rados
on the same pool, and speaks the protocol to both (the small client of
tests/hostile_client.py):

  - a message delivered through server 1 is listed and fetched through
    server 2 with the right checksum;
  - a DELIVER retried with the same idempotency id (through the other
    server too) is stored once and answers the first delivery's id;
  - racing DELIVERs of one name and MKDIRs of one path through both
    servers yield exactly one winner, round after round; so do two
    NOREPLACE flag renames onto one name, and an RMDIR of an empty new/
    against a DELIVER into it (never an acknowledged message in a removed
    directory); one idem through both servers at once is stored once;
  - a folder removed and made again through server 1 is at once the new
    one through server 2 (which had the old one in its path cache);
  - SETINFO and EXPUNGE through one server are seen by the other, in
    full listings and in deltas since a counter;
  - a WATCH on server 1 hears of a delivery made through server 2;
  - small ordinary files: PUT through one server, GET through the
    other, PUT over it, WRITE APPEND, READ of a range, truncate, UNLINK;
    racing exclusive PUTs of one lock file have one winner;
  - LINK of a file through the other server (nlink 2, one name
    unlinked, the other keeps it); RENAME of files, messages and
    directories between directories, over files and empty directories,
    NOREPLACE, never a directory into its own subtree, EXDEV for a
    message leaving its mailbox;
  - a file opened through server 1 and renamed over or unlinked through
    server 2 stays readable until its last CLOSE or its connection's end,
    then is gone (OPEN answers ENOENT); one held only through a server
    that is then killed goes once that server's open lease lapses;
  - a WRITE through server 2 to a file with two names is a CHANGE
    notice on server 1 for the name in the watched directory;
  - racing cross-directory renames through both servers: two over one
    name both land in some order, NOREPLACE has one winner, one source
    moved to two places moves once, two directories moved into each
    other never both move;
  - a move left by a server that died after its first step (claim) is
    undone, and one that died after its second (destination named) is
    finished, by the next operation on the name once the claim is stale;
  - racing LINKs of two files onto one name have one winner and leave
    the loser's link count alone; a LINK racing the UNLINK of the file's
    last name leaves the file with exactly the names it has;
  - with quota_bytes set, 16 deliveries at once through two servers store
    exactly what fits, an EXPUNGE gives room back, a retry is not
    counted twice;
  - SETATTR and FSETATTR of a message (mode; a new size is EPERM) are
    seen through the other server; operations the back-end does not
    have yet answer EOPNOTSUPP and the server stays up;
  - mount.mstore on server 1: a Postfix-style tmp/ -> new/ delivery is
    read back through the mount and through server 2;
  - the mount-level cases of test_mount.py pass on a mount of server 1;
  - with the cluster stopped, a request answers EIO within the storage
    timeout instead of hanging.

Exits 77 (skipped) only when the Ceph daemons are not installed.
"""
import errno
import os
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
from radoslib import BOX, Client, attr, entries, present  # noqa: E402

ROUNDS = 200


def want(got, exp, what):
    if got != exp:
        raise AssertionError("%s: got %r, want %r" % (what, got, exp))


class Env:
    pass


def setup(cluster):
    env = Env()
    env.cluster = cluster.start()
    env.s1, env.s2 = env.servers = radoslib.servers(env.cluster, 2)
    env.a = Client(env.s1.port)
    env.b = Client(env.s2.port)
    for d in ("r.example", BOX, BOX + "/new", BOX + "/cur", BOX + "/tmp"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    return env


def test_deliver_on_one_fetch_on_other(env):
    body = b"From: a@r.example\r\nSubject: across\r\n\r\nhello rados\r\n"
    st, a = env.a.deliver("across.1", body)
    want(st, 0, "DELIVER through server 1")
    st, change, flags, ents = env.b.list()
    want(st, 0, "LIST through server 2")
    want(flags & 1, 1, "a since-0 LIST is FULL")
    want(present(ents)["across.1"]["id"], a["id"], "listed id")
    st, total, csum, data = env.b.fetch(a["id"])
    want(st, 0, "FETCH through server 2")
    want(data, body, "fetched body")
    want(total, len(body), "total size")
    want(csum, hc.xxh3(body), "checksum of the fetched body")
    want(a["id"] < 1 << 56, True, "store ids stay below 2^56")


def test_idempotent_retry_across_servers(env):
    idem = os.urandom(16)
    st1, a1 = env.a.deliver("idem.1", b"once", idem=idem)
    st2, a2 = env.b.deliver("idem.1", b"once", idem=idem)
    st3, a3 = env.a.deliver("idem.1", b"once", idem=idem)
    want((st1, st2, st3), (0, 0, 0), "DELIVER, then two retries")
    want((a2["id"], a3["id"]), (a1["id"], a1["id"]),
         "retries answer the first delivery's id")
    _, _, _, ents = env.b.list()
    want(len(ents["idem.1"]), 1, "idem.1 listed once")
    # A different idem under the taken name is a different message.
    st, _ = env.b.deliver("idem.1", b"twice", idem=os.urandom(16))
    want(st, errno.EEXIST, "another idem, same name")


def race(fa, fb):
    """Run fa and fb at once (a barrier, then both requests)."""
    out = [None, None]
    bar = threading.Barrier(2)

    def run(i, f):
        bar.wait()
        out[i] = f()
    ts = [threading.Thread(target=run, args=(0, fa)),
          threading.Thread(target=run, args=(1, fb))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_racing_exclusive_creates_one_winner(env):
    wins = {0: 0, 1: 0}
    for i in range(ROUNDS):
        name = "race.%d" % i
        (sa, aa), (sb, ab) = race(
            lambda: env.a.deliver(name, b"from server 1"),
            lambda: env.b.deliver(name, b"from server 2"))
        want(sorted([sa, sb]), [0, errno.EEXIST],
             "round %d: statuses of two DELIVERs of %s" % (i, name))
        winner = aa if sa == 0 else ab
        wins[0 if sa == 0 else 1] += 1
        st, _, _, data = env.b.fetch(winner["id"])
        want(data, b"from server 1" if sa == 0 else b"from server 2",
             "round %d: the winner's body" % i)
        path = BOX + "/dir.%d" % i
        sa, sb = race(lambda: env.a.mkdir(path), lambda: env.b.mkdir(path))
        want(sorted([sa, sb]), [0, errno.EEXIST],
             "round %d: statuses of two MKDIRs of %s" % (i, path))
    _, _, _, ents = env.a.list()
    for i in range(ROUNDS):
        want(len(ents["race.%d" % i]), 1, "race.%d listed once" % i)
    st, parts = env.b.call("READDIR", hc.s(BOX))
    want(st, 0, "READDIR " + BOX)
    names = entries(parts)
    for i in range(ROUNDS):
        want(len(names.get("dir.%d" % i, [])), 1, "dir.%d listed once" % i)
    print("  %d rounds: server 1 won %d, server 2 won %d" % (
        ROUNDS, wins[0], wins[1]))


def test_racing_rules_hold(env):
    """Same idem at once through both servers; RMDIR of an empty new/
    against a DELIVER into it; two flag renames onto one name with
    NOREPLACE."""
    outcomes = {}
    for i in range(ROUNDS // 4):
        idem = os.urandom(16)
        (sa, aa), (sb, ab) = race(
            lambda: env.a.deliver("same.%d" % i, b"same", idem=idem),
            lambda: env.b.deliver("same.%d" % i, b"same", idem=idem))
        want((sa, sb, aa["id"]), (0, 0, ab["id"]),
             "round %d: one idem through both servers at once" % i)
        box = "r.example/rm.%d" % i
        want((env.a.mkdir(box), env.a.mkdir(box + "/new")), (0, 0),
             "MKDIR " + box)
        lag = 0.001 * (i % 4)   # shift the overlap round by round

        def rmdir():
            time.sleep(lag)
            return env.a.call("RMDIR", hc.s(box + "/new"))[0]
        srm, (sdl, _) = race(
            rmdir, lambda: env.b.deliver("m", b"into a dying dir", box=box))
        want((srm, sdl) in ((0, errno.ENOENT), (errno.ENOTEMPTY, 0)), True,
             "round %d: RMDIR %d and DELIVER %d" % (i, srm, sdl))
        outcomes[srm] = outcomes.get(srm, 0) + 1
        st, _ = env.b.call("LOOKUP", hc.s(box + "/new"))
        want(st, errno.ENOENT if srm == 0 else 0,
             "round %d: new/ after the race" % i)
        env.a.deliver("x.%d" % i, b"x")
        env.a.deliver("y.%d" % i, b"y")
        sa, sb = race(
            lambda: env.a.setinfo(1, "x.%d" % i, 2, "t.%d" % i, flags=1),
            lambda: env.b.setinfo(1, "y.%d" % i, 2, "t.%d" % i, flags=1))
        want(sorted([sa, sb]), [0, errno.EEXIST],
             "round %d: two NOREPLACE renames onto one name" % i)
    _, _, _, ents = env.b.list(sub=2)
    for i in range(ROUNDS // 4):
        want(len(ents["t.%d" % i]), 1, "t.%d listed once" % i)
    print("  RMDIR against DELIVER: RMDIR won %d, DELIVER won %d" % (
        outcomes.get(0, 0), outcomes.get(errno.ENOTEMPTY, 0)))


def test_dir_remade_elsewhere(env):
    """Server 2 knows a folder; server 1 removes it and makes it again:
    server 2 delivers into the new one at once, never the dead one."""
    for i in range(20):
        box = "r.example/re.%d" % i
        for d in (box, box + "/new"):
            want(env.a.mkdir(d), 0, "MKDIR " + d)
        want(env.b.deliver("first", b"1", box=box)[0], 0, "DELIVER first")
        want(env.b.ref("EXPUNGE", "first", box=box)[0], 0, "EXPUNGE first")
        want(env.a.call("RMDIR", hc.s(box + "/new"))[0], 0, "RMDIR new/")
        want(env.b.call("LOOKUP", hc.s(box + "/new"))[0], errno.ENOENT,
             "round %d: LOOKUP of the removed new/ through server 2" % i)
        want(env.a.mkdir(box + "/new"), 0, "MKDIR new/ again")
        st, a = env.b.deliver("second", b"2", box=box)
        want(st, 0, "round %d: DELIVER into the new new/ via server 2" % i)
        _, _, _, ents = env.a.list(box=box)
        want(sorted(present(ents)), ["second"],
             "round %d: the new new/ lists the delivery" % i)


def statfs_usage(c, box):
    st, parts = c.call("STATFS", hc.s(box))
    want(st, 0, "STATFS " + box)
    f = struct.unpack_from(">QQQQQQQQQI", parts[0])
    return f[4], f[5], f[7]        # quota_bytes, used_bytes, used_msgs


def test_quota_across_servers(env):
    """Two more servers with quota_bytes = 1000 on the same pool: 16
    deliveries of 100 bytes at once, half through each, and exactly 10
    are stored; an expunge gives room back; a retry is not counted."""
    s3, s4 = radoslib.servers(env.cluster, 2, "quota_bytes = 1000\n")
    box = "r.example/q"
    try:
        c3 = Client(s3.port)
        for d in (box, box + "/new"):
            want(c3.mkdir(d), 0, "MKDIR " + d)
        conns = [Client((s3 if i % 2 else s4).port) for i in range(16)]
        out = [None] * 16
        bar = threading.Barrier(16)

        def run(i):
            bar.wait()
            out[i] = conns[i].deliver("q.%d" % i, b"%100d" % i, box=box)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        sts = sorted(st for st, _ in out)
        want(sts, [0] * 10 + [errno.EDQUOT] * 6,
             "16 deliveries of 100 bytes under a 1000-byte quota")
        want(statfs_usage(c3, box), (1000, 1000, 10), "usage after them")
        ok = [i for i in range(16) if out[i][0] == 0]
        want(conns[0].ref("EXPUNGE", "q.%d" % ok[0], box=box)[0], 0,
             "EXPUNGE one")
        want(statfs_usage(c3, box)[1:], (900, 9), "usage after EXPUNGE")
        idem = os.urandom(16)
        want(c3.deliver("q.again", b"%100d" % 1, box=box, idem=idem)[0], 0,
             "DELIVER into the room it gave back")
        c4 = Client(s4.port)
        want(c4.deliver("q.again", b"%100d" % 1, box=box, idem=idem)[0], 0,
             "the same DELIVER retried through the other server")
        want(statfs_usage(c4, box)[1:], (1000, 10), "a retry is not counted")
        want(c4.deliver("q.full", b"x", box=box)[0], errno.EDQUOT,
             "one byte over")
        for c in conns + [c3, c4]:
            c.close()
    finally:
        s3.kill()
        s4.kill()


def test_setinfo_expunge_seen_across(env):
    st, a = env.a.deliver("flags.1", b"flag me")
    want(st, 0, "DELIVER")
    _, cnew, _, _ = env.b.list(sub=1)
    _, ccur, _, _ = env.b.list(sub=2)
    want(env.b.setinfo(1, "flags.1", 2, "flags.1:2,S"), 0,
         "SETINFO new -> cur through server 2")
    _, _, _, ents = env.a.list(sub=1)
    want("flags.1" in present(ents), False, "gone from new/ on server 1")
    _, _, _, ents = env.a.list(sub=2)
    want(present(ents)["flags.1:2,S"]["id"], a["id"], "in cur/, same id")
    st, c2, flags, d = env.a.list(sub=1, since=cnew)
    want((st, flags & 1), (0, 0), "delta of new/ since the counter")
    want([x["kind"] for x in d["flags.1"]], ["removed"], "delta of new/")
    st, _, flags, d = env.a.list(sub=2, since=ccur)
    want([x["kind"] for x in d["flags.1:2,S"]], ["present"], "delta of cur/")
    want(list(d), ["flags.1:2,S"], "only the change since the counter")
    # NOREPLACE onto a taken name, then EXPUNGE through the other server.
    env.a.deliver("flags.2", b"other")
    want(env.a.setinfo(1, "flags.2", 2, "flags.1:2,S", flags=1),
         errno.EEXIST, "SETINFO NOREPLACE onto a taken name")
    st, _ = env.a.ref("EXPUNGE", "flags.1:2,S", sub=2)
    want(st, 0, "EXPUNGE through server 1")
    st, _ = env.b.ref("STAT", "flags.1:2,S", sub=2)
    want(st, errno.ENOENT, "STAT through server 2 after EXPUNGE")
    st, _, _, _ = env.b.fetch(a["id"])
    want(st, errno.ENOENT, "FETCH of the expunged body")
    st, _ = env.b.ref("EXPUNGE", "flags.1:2,S", sub=2)
    want(st, errno.ENOENT, "a second EXPUNGE")


def next_notice(w, name, timeout=5.0):
    """The first NOTIFY for |name| on connection |w| within |timeout|:
    (path, event, name, id), or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        op, flags, st, rid, p = w.c.recv(end - time.monotonic())
        if flags & hc.F_NOTICE and op == hc.OP["NOTIFY"]:
            n = struct.unpack_from(">H", p)[0]
            m = struct.unpack_from(">H", p, 3 + n)[0]
            got = (p[2:2 + n].decode(), p[2 + n],
                   p[5 + n:5 + n + m].decode(),
                   struct.unpack_from(">Q", p, 5 + n + m)[0])
            if got[2] == name:
                return got
    return None


def test_notice_across_servers(env):
    w = Client(env.s1.port)
    try:
        st, _ = w.call("WATCH", hc.s(BOX + "/new"))
        want(st, 0, "WATCH on server 1")
        t0 = time.monotonic()
        st, a = env.b.deliver("notice.1", b"notice me")
        want(st, 0, "DELIVER through server 2")
        got = next_notice(w, "notice.1")
        want(got and (got[0], got[1], got[3]), (BOX + "/new", 1, a["id"]),
             "NOTIFY on server 1 of a delivery through server 2")
        print("  notice after %.1f ms" % ((time.monotonic() - t0) * 1000))
    finally:
        w.close()


def put(c, path, body, excl=False):
    st, parts = c.call("PUT", hc.s(path) + struct.pack(
        ">IIIIQQQ", 1 if excl else 0, 0o644, 0, 0, 0, hc.xxh3(body),
        len(body)) + body)
    return st, (attr(parts[0]) if st == 0 else None)


def get(c, path):
    st, parts = c.call("GET", hc.s(path) + struct.pack(">QI", 0, 1 << 20))
    if st:
        return st, None, None
    total, csum = struct.unpack_from(">QQ", parts[0])
    data = b"".join(p[16:] for p in parts)
    want(len(data), total, "GET " + path + ": whole file")
    return st, csum, data


def test_small_files_across_servers(env):
    path = BOX + "/dovecot-uidlist"
    st, a = put(env.a, path, b"3 V1 N1\n")
    want(st, 0, "PUT a new file through server 1")
    st, csum, data = get(env.b, path)
    want((st, data, csum), (0, b"3 V1 N1\n", hc.xxh3(b"3 V1 N1\n")),
         "GET through server 2")
    st, a2 = put(env.b, path, b"3 V1 N2\n1 a\n")
    want((st, a2["id"], a2["size"]), (0, a["id"], 12),
         "PUT over it through server 2: same file, new size")
    st, _, data = get(env.a, path)
    want(data, b"3 V1 N2\n1 a\n", "the new contents through server 1")
    st, parts = env.a.call("LOOKUP", hc.s(path))
    want((st, attr(parts[0])["size"]), (0, 12), "LOOKUP's size")
    want(put(env.a, path, b"x", excl=True)[0], errno.EEXIST,
         "PUT EXCL of a taken name")
    want(put(env.a, BOX + "/new", b"x")[0], errno.EISDIR, "PUT over a dir")
    env.a.deliver("msg.put", b"m")
    want(put(env.b, BOX + "/new/msg.put", b"x")[0], errno.EPERM,
         "PUT over a message")
    add = b"2 b\n"
    st, parts = env.b.call("WRITE", struct.pack(">QQIQQ", a["id"], 0, 1,
                                                hc.xxh3(add), len(add)) + add)
    want((st, attr(parts[0])["size"] if st == 0 else None), (0, 16),
         "WRITE APPEND through server 2")
    st, parts = env.a.call("READ", struct.pack(">QQI", a["id"], 8, 100))
    total, csum = struct.unpack_from(">QQ", parts[0]) if st == 0 else (0, 0)
    want((st, total, parts[0][16:], csum),
         (0, 16, b"1 a\n2 b\n", hc.xxh3(b"1 a\n2 b\n")),
         "READ of a range through server 1")
    st, _ = env.a.call("FSETATTR", struct.pack(">QIIIIQQQ", a["id"], 8, 0,
                                               0, 0, 8, 0, 0))
    want(st, 0, "FSETATTR size 8 (truncate) through server 1")
    want(get(env.b, path)[2], b"3 V1 N2\n", "GET after the truncate")
    want(env.a.call("UNLINK", hc.s(path))[0], 0, "UNLINK through server 1")
    want(get(env.b, path)[0], errno.ENOENT, "GET through server 2 after it")
    wins = 0
    for i in range(ROUNDS // 4):
        lock = BOX + "/dovecot-uidlist.lock.%d" % i
        (sa, _), (sb, _) = race(
            lambda: put(env.a, lock, b"server 1", excl=True),
            lambda: put(env.b, lock, b"server 2", excl=True))
        want(sorted([sa, sb]), [0, errno.EEXIST],
             "round %d: two exclusive PUTs of one lock file" % i)
        want(get(env.a, lock)[2], b"server 1" if sa == 0 else b"server 2",
             "round %d: the winner's contents" % i)
        wins += sa == 0
    print("  %d dotlock rounds: server 1 won %d" % (ROUNDS // 4, wins))


# --- namespace operations across store objects (LINK, RENAME, OPEN) ---


def rename(c, a, b, flags=0):
    return c.call("RENAME", hc.s(a) + hc.s(b) + struct.pack(">I", flags))[0]


def lookup(c, path):
    st, parts = c.call("LOOKUP", hc.s(path))
    return st, (attr(parts[0]) if st == 0 else None)


def readdir_names(c, path):
    st, parts = c.call("READDIR", hc.s(path))
    want(st, 0, "READDIR " + path)
    return sorted(n for n, v in entries(parts).items()
                  if any(a["kind"] == "present" for a in v))


def by_id(c, op, oid):
    st, parts = c.call(op, struct.pack(">Q", oid))
    return st, (attr(parts[0]) if st == 0 and parts and parts[0] else None)


def test_link_and_rename_files_across_dirs(env):
    """LINK gives a file a second name (nlink 2), seen through the other
    server; RENAME moves files, messages and directories between
    directories; a directory cannot move into its own subtree; EXDEV for
    a message leaving its mailbox, EXDEV/EPERM for LINK of a message or a
    directory, as the local engine answers."""
    top = BOX + "/ns"
    for d in (top, top + "/d1", top + "/d2", top + "/d1/sub"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    st, f = put(env.a, top + "/d1/f", b"file one")
    want(st, 0, "PUT d1/f")
    st, parts = env.b.call("LINK", struct.pack(">Q", f["id"]) +
                           hc.s(top + "/d2/g"))
    want(st, 0, "LINK d1/f -> d2/g through server 2")
    want(attr(parts[0])["nlink"], 2, "nlink after LINK")
    want(lookup(env.a, top + "/d2/g")[1]["id"], f["id"], "d2/g is d1/f")
    want(get(env.a, top + "/d2/g")[2], b"file one", "GET d2/g")
    st, _ = env.a.call("LINK", struct.pack(">Q", f["id"]) +
                       hc.s(top + "/d2/g"))
    want(st, errno.EEXIST, "LINK onto a taken name")
    st, m = env.a.deliver("linkme", b"m")
    want(env.a.call("LINK", struct.pack(">Q", m["id"]) +
                    hc.s(top + "/m"))[0], errno.EXDEV, "LINK of a message")
    want(env.a.call("LINK", struct.pack(">Q", lookup(env.a, top)[1]["id"]) +
                    hc.s(top + "/dl"))[0], errno.EPERM, "LINK of a dir")
    # UNLINK one name: the other keeps the file.
    want(env.b.call("UNLINK", hc.s(top + "/d1/f"))[0], 0, "UNLINK d1/f")
    want((get(env.a, top + "/d2/g")[2], lookup(env.a, top + "/d2/g")[1]
          ["nlink"]), (b"file one", 1), "d2/g after the other name went")
    # RENAME a file to another directory, then over another file there.
    want(rename(env.a, top + "/d2/g", top + "/d1/h"), 0,
         "RENAME d2/g -> d1/h (another directory)")
    want(lookup(env.b, top + "/d2/g")[0], errno.ENOENT, "d2/g gone")
    want(get(env.b, top + "/d1/h")[2], b"file one", "d1/h through server 2")
    st, o = put(env.b, top + "/d2/other", b"other")
    want(rename(env.b, top + "/d1/h", top + "/d2/other"), 0,
         "RENAME d1/h over d2/other")
    want(get(env.a, top + "/d2/other")[2], b"file one", "d2/other now")
    want(by_id(env.a, "GETATTR", o["id"])[0], errno.ENOENT,
         "the replaced file is gone")
    want(rename(env.a, top + "/d2/other", top + "/d1/h", flags=1), 0,
         "RENAME NOREPLACE onto a free name in another directory")
    put(env.a, top + "/d2/taken", b"t")
    want(rename(env.a, top + "/d1/h", top + "/d2/taken", flags=1),
         errno.EEXIST, "RENAME NOREPLACE onto a taken name")
    # Directories: into another parent, over an empty one, not into itself.
    want(rename(env.a, top + "/d1/sub", top + "/d2/sub"), 0,
         "RENAME of a directory to another parent")
    want(env.b.mkdir(top + "/d2/sub/deeper"), 0, "MKDIR in the moved dir")
    want(readdir_names(env.b, top + "/d1"), ["h"], "d1 after the moves")
    want(readdir_names(env.a, top + "/d2"), ["sub", "taken"],
         "d2 after the moves")
    want(rename(env.b, top + "/d2", top + "/d2/sub/deeper/d2"),
         errno.EINVAL, "RENAME of a directory into its own subtree")
    want(rename(env.b, top + "/d2/sub", top + "/d2/sub/deeper/x"),
         errno.EINVAL, "... into its own child")
    want(env.a.mkdir(top + "/d1/empty"), 0, "MKDIR d1/empty")
    want(rename(env.a, top + "/d2/sub", top + "/d1/h"), errno.ENOTDIR,
         "a directory over a file")
    want(rename(env.a, top + "/d1/h", top + "/d1/empty"), errno.EISDIR,
         "a file over a directory")
    want(rename(env.a, top + "/d1", top + "/d2/sub"), errno.ENOTEMPTY,
         "a directory over a non-empty one")
    want(rename(env.a, top + "/d2/sub", top + "/d1/empty"), 0,
         "a directory over an empty one in another parent")
    want(lookup(env.b, top + "/d1/empty/deeper")[0], 0,
         "its contents under the new name")
    # Messages between folders of one mailbox, not to another mailbox.
    want(env.a.mkdir(BOX + "/.Sent"), 0, "MKDIR .Sent")
    for d in ("new", "cur"):
        env.a.mkdir(BOX + "/.Sent/" + d)
    st, m2 = env.a.deliver("tomove", b"moving message")
    want(rename(env.b, BOX + "/new/tomove", BOX + "/.Sent/cur/tomove:2,S"),
         0, "RENAME of a message into another folder")
    st, parts = env.a.call("LIST", hc.s(BOX) + hc.s(".Sent") + bytes([2]) +
                           struct.pack(">Q", 0))
    want(present(entries(parts))["tomove:2,S"]["id"], m2["id"],
         "the message listed in the other folder")
    want(env.a.fetch(m2["id"])[3], b"moving message", "and fetched")
    _, _, _, ents = env.a.list()
    want("tomove" in present(ents), False, "gone from new/")
    for d in ("r.example/other", "r.example/other/new"):
        env.a.mkdir(d)
    want(rename(env.a, BOX + "/.Sent/cur/tomove:2,S",
                "r.example/other/new/x"), errno.EXDEV,
         "RENAME of a message to another mailbox")
    # An ordinary file in new/ is EXPUNGEd like a message (its name goes).
    st, x = put(env.a, BOX + "/new/plain-file", b"not a message")
    want(env.b.ref("EXPUNGE", "plain-file")[0], 0, "EXPUNGE of a file in new/")
    want(by_id(env.a, "GETATTR", x["id"])[0], errno.ENOENT, "the file is gone")


def test_open_references_across_servers(env):
    """A file opened through server 1 and unlinked (or renamed over)
    through server 2 stays readable by id until its last CLOSE, then is
    gone; OPEN of the gone id is ENOENT (the mount's ESTALE); CLOSE
    without an OPEN is EBADF; a connection's end drops its references."""
    top = BOX + "/open"
    want(env.a.mkdir(top), 0, "MKDIR " + top)
    st, f = put(env.a, top + "/idx", b"old index")
    o1 = Client(env.s1.port)
    o2 = Client(env.s1.port)
    try:
        want(by_id(env.a, "CLOSE", f["id"])[0], errno.EBADF,
             "CLOSE without OPEN")
        want(by_id(o1, "OPEN", f["id"])[0], 0, "OPEN on server 1")
        want(by_id(o2, "OPEN", f["id"])[0], 0, "OPEN by a second connection")
        put(env.b, top + "/idx.tmp", b"new index")
        want(rename(env.b, top + "/idx.tmp", top + "/idx"), 0,
             "RENAME over the open file through server 2")
        st, a = by_id(env.b, "GETATTR", f["id"])
        want((st, a["nlink"]), (0, 0), "the replaced file: nlink 0")
        st, parts = env.b.call("READ", struct.pack(">QQI", f["id"], 0, 100))
        want((st, parts[0][16:] if st == 0 else None), (0, b"old index"),
             "READ of the open orphan through server 2")
        want(get(env.a, top + "/idx")[2], b"new index", "the new file")
        want(by_id(o1, "CLOSE", f["id"])[0], 0, "CLOSE by one")
        want(by_id(env.b, "GETATTR", f["id"])[0], 0,
             "still there while the other holds it")
        o2.close()              # the connection's end drops its reference
        o2 = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if by_id(env.b, "GETATTR", f["id"])[0] == errno.ENOENT:
                break
            time.sleep(0.05)
        want(by_id(env.b, "GETATTR", f["id"])[0], errno.ENOENT,
             "gone after the last reference")
        want(by_id(env.a, "OPEN", f["id"])[0], errno.ENOENT,
             "OPEN of a gone file")
        # Unlinked on server 2 while open on server 1: each round.
        for i in range(ROUNDS // 10):
            st, g = put(env.a, top + "/u.%d" % i, b"round %d" % i)
            (so, _), su = race(
                lambda: by_id(o1, "OPEN", g["id"]),
                lambda: env.b.call("UNLINK", hc.s(top + "/u.%d" % i))[0])
            want(su, 0, "round %d: UNLINK" % i)
            if so == 0:
                st, parts = o1.call("READ", struct.pack(">QQI", g["id"], 0,
                                                        100))
                want((st, parts[0][16:]), (0, b"round %d" % i),
                     "round %d: READ after the unlink elsewhere" % i)
                want(by_id(o1, "CLOSE", g["id"])[0], 0, "CLOSE")
            else:
                want(so, errno.ENOENT, "round %d: OPEN after UNLINK" % i)
            want(by_id(env.b, "GETATTR", g["id"])[0], errno.ENOENT,
                 "round %d: gone after UNLINK and CLOSE" % i)
    finally:
        o1.close()
        if o2:
            o2.close()


def race_renames(env, r, a, b, flags=0):
    """RENAME r+a[0] to r+a[1] through server 1 and r+b[0] to r+b[1]
    through server 2 at once."""
    return race(lambda: rename(env.a, r + a[0], r + a[1], flags),
                lambda: rename(env.b, r + b[0], r + b[1], flags))


def test_racing_moves_across_dirs(env):
    """Two servers racing cross-directory renames keep the local engine's
    rules: over one name both land in some order (one file left, the
    other gone); with NOREPLACE one wins; one source moved to two places
    moves once; two directories moved into each other never both move."""
    top = BOX + "/xr"
    want(env.a.mkdir(top), 0, "MKDIR " + top)
    outcomes = {}
    for i in range(ROUNDS // 10):
        r = "%s/%d" % (top, i)
        for d in (r, r + "/p", r + "/q", r + "/t", r + "/x", r + "/y"):
            want(env.a.mkdir(d), 0, "MKDIR " + d)
        _, fa = put(env.a, r + "/p/a", b"a")
        _, fb = put(env.a, r + "/q/b", b"b")
        sa, sb = race_renames(env, r, ("/p/a", "/t/n"), ("/q/b", "/t/n"))
        want((sa, sb), (0, 0), "round %d: two renames over one name" % i)
        _, n = lookup(env.a, r + "/t/n")
        want(n["id"] in (fa["id"], fb["id"]), True, "round %d: t/n" % i)
        lost = fb["id"] if n["id"] == fa["id"] else fa["id"]
        want(by_id(env.b, "GETATTR", lost)[0], errno.ENOENT,
             "round %d: the file renamed over is gone" % i)
        want((readdir_names(env.b, r + "/p"), readdir_names(env.b, r + "/q"),
              readdir_names(env.b, r + "/t")), ([], [], ["n"]),
             "round %d: the directories after it" % i)
        put(env.a, r + "/p/c", b"c")
        put(env.a, r + "/q/d", b"d")
        for (a, b, flags, lose, left, what) in (
                (("/p/c", "/t/m"), ("/q/d", "/t/m"), 1, errno.EEXIST, 1,
                 "two NOREPLACE renames onto one name"),
                (("/t/n", "/p/n"), ("/t/n", "/q/n"), 0, errno.ENOENT, 2,
                 "one source renamed to two places")):
            sa, sb = race_renames(env, r, a, b, flags)
            want(sorted([sa, sb]), [0, lose], "round %d: %s" % (i, what))
            want(sum(len(readdir_names(env.b, r + d)) for d in ("/p", "/q")),
                 left, "round %d: %s: what is left" % (i, what))
        sa, sb = race_renames(env, r, ("/x", "/y/x"), ("/y", "/x/y"))
        want(0 in (sa, sb) and (sa, sb) != (0, 0), True,
             "round %d: x into y and y into x: %d, %d" % (i, sa, sb))
        want(sa in (0, errno.ENOENT, errno.EINVAL) and
             sb in (0, errno.ENOENT, errno.EINVAL), True,
             "round %d: the loser's status %d, %d" % (i, sa, sb))
        left = [n for n in ("x", "y") if n in readdir_names(env.a, r)]
        want(len(left), 1, "round %d: one of x, y left in the parent" % i)
        other = "y" if left == ["x"] else "x"
        want(lookup(env.b, "%s/%s/%s" % (r, left[0], other))[0], 0,
             "round %d: the other inside it" % i)
        outcomes[(sa, sb)] = outcomes.get((sa, sb), 0) + 1
    print("  directory move races (server 1, server 2): %s" % outcomes)


def test_racing_links(env):
    """LINK of two files onto one name through both servers: one wins,
    the loser's link count is unchanged; LINK against the UNLINK of the
    file's last name: the file ends with exactly the names it has."""
    top = BOX + "/lr"
    want(env.a.mkdir(top), 0, "MKDIR " + top)
    outcomes = {}
    for i in range(ROUNDS // 10):
        _, fa = put(env.a, "%s/a.%d" % (top, i), b"a")
        _, fb = put(env.a, "%s/b.%d" % (top, i), b"b")
        to = "%s/l.%d" % (top, i)
        sa, sb = race(
            lambda: env.a.call("LINK", struct.pack(">Q", fa["id"]) +
                               hc.s(to))[0],
            lambda: env.b.call("LINK", struct.pack(">Q", fb["id"]) +
                               hc.s(to))[0])
        want(sorted([sa, sb]), [0, errno.EEXIST],
             "round %d: two LINKs onto one name" % i)
        won, lost = (fa, fb) if sa == 0 else (fb, fa)
        want((lookup(env.b, to)[1]["id"],
              by_id(env.b, "GETATTR", won["id"])[1]["nlink"],
              by_id(env.b, "GETATTR", lost["id"])[1]["nlink"]),
             (won["id"], 2, 1), "round %d: the names and link counts" % i)
        last = "%s/%s.%d" % (top, "b" if lost is fb else "a", i)
        sl, su = race(
            lambda: env.a.call("LINK", struct.pack(">Q", lost["id"]) +
                               hc.s("%s/m.%d" % (top, i)))[0],
            lambda: env.b.call("UNLINK", hc.s(last))[0])
        want(su, 0, "round %d: UNLINK of the last name" % i)
        want(sl in (0, errno.ENOENT), True, "round %d: LINK %d" % (i, sl))
        st, a = by_id(env.a, "GETATTR", lost["id"])
        named = lookup(env.a, "%s/m.%d" % (top, i))[0] == 0
        if sl == 0:
            want((st, a["nlink"], named), (0, 1, True),
                 "round %d: linked before the unlink took it" % i)
        else:
            want((st, named), (errno.ENOENT, False),
                 "round %d: unlinked first, gone" % i)
        outcomes[sl] = outcomes.get(sl, 0) + 1
    print("  LINK against the last UNLINK: %s" % outcomes)


def rados_cli(env, *args, data=None):
    """The rados CLI on the test pool (what a dead server leaves behind
    is written with it)."""
    r = subprocess.run(["rados", "-c", env.cluster.conf, "-p",
                        radoslib.POOL] + list(args), input=data,
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("rados %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def leave_a_move(env, src, name, dst, age_s):
    """Claim entry |name| of directory |src| for a move to |dst| as a
    server does in a move's first step, dated |age_s| seconds ago (the
    server then dies)."""
    soid = "d.%016x" % lookup(env.a, src)[1]["id"]
    doid = "d.%016x" % lookup(env.a, dst)[1]["id"]
    tmp = os.path.join(mstlib.tmpdir("mst-rf-"), "v")
    rados_cli(env, "getomapval", soid, "e." + name, tmp)
    raw = open(tmp, "rb").read()
    marked = raw[:1] + bytes([raw[1] | 0x80]) + raw[2:]
    when = time.time_ns() - int(age_s * 1e9)
    intent = (b"X" + struct.pack("<Q", when) + bytes([len(doid)]) +
              doid.encode() + b"\0\0" + struct.pack("<H", len(name)) +
              name.encode())
    for key, val in (("e." + name, marked), ("x." + name, intent)):
        with open(tmp, "wb") as f:
            f.write(val)
        rados_cli(env, "setomapval", soid, key, "--input-file", tmp)
    return doid, raw


def test_move_left_by_dead_server_is_ended(env):
    """A move whose server died after claiming its source (step 1) is
    undone by the next server to meet it once its intent is stale, so an
    UNLINK of the name succeeds; one that died after naming the
    destination (step 2) is finished: the source goes, the destination
    keeps the file. A fresh claim makes others wait, not fail."""
    top = BOX + "/rf"
    for d in (top, top + "/src", top + "/dst"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    _, f1 = put(env.a, top + "/src/f1", b"one")
    leave_a_move(env, top + "/src", "f1", top + "/dst", 20)
    want(env.b.call("UNLINK", hc.s(top + "/src/f1"))[0], 0,
         "UNLINK of a name a dead server's move claimed (undone)")
    want(lookup(env.a, top + "/dst/f1")[0], errno.ENOENT,
         "the undone move named nothing")
    _, f2 = put(env.a, top + "/src/f2", b"two")
    doid, raw = leave_a_move(env, top + "/src", "f2", top + "/dst", 20)
    tmp = os.path.join(mstlib.tmpdir("mst-rf-"), "v")
    with open(tmp, "wb") as f:
        f.write(raw)
    rados_cli(env, "setomapval", doid, "e.f2", "--input-file", tmp)
    want(rename(env.b, top + "/src/f2", top + "/src/f3"), errno.ENOENT,
         "RENAME of a name whose move reached its destination (finished)")
    want((lookup(env.a, top + "/src/f2")[0],
          lookup(env.a, top + "/dst/f2")[1]["id"]), (errno.ENOENT, f2["id"]),
         "the finished move: the source gone, the destination kept")
    _, f4 = put(env.a, top + "/src/f4", b"four")
    leave_a_move(env, top + "/src", "f4", top + "/dst", 13)
    t0 = time.monotonic()
    want(env.b.call("UNLINK", hc.s(top + "/src/f4"))[0], 0,
         "UNLINK of a name claimed 13 s ago: waits, then undoes it")
    print("  the UNLINK waited %.1f s for the claim to go stale" %
          (time.monotonic() - t0))


def test_dead_openers_references_dropped(env):
    """A file held open only through a server that is killed (SIGKILL)
    after its last name went is removed by the others once that server's
    open lease lapses; one held through a live server stays."""
    s3 = mstlib.Store(open(env.s1.conf).read()).start()
    top = BOX + "/dead-open"
    want(env.a.mkdir(top), 0, "MKDIR " + top)
    _, f = put(env.a, top + "/held", b"held by a dying server")
    _, g = put(env.a, top + "/kept", b"held by a live server")
    c3 = Client(s3.port)
    o1 = Client(env.s1.port)
    try:
        want(by_id(c3, "OPEN", f["id"])[0], 0, "OPEN on server 3")
        want(by_id(o1, "OPEN", g["id"])[0], 0, "OPEN on server 1")
        for n in ("held", "kept"):
            want(env.b.call("UNLINK", hc.s(top + "/" + n))[0], 0,
                 "UNLINK " + n + " through server 2")
        s3.kill()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if by_id(env.b, "GETATTR", f["id"])[0] == errno.ENOENT:
                break
            time.sleep(0.2)
        took = time.monotonic() - t0
        want(by_id(env.b, "GETATTR", f["id"])[0], errno.ENOENT,
             "the dead server's orphan is removed")
        st, parts = o1.call("READ", struct.pack(">QQI", g["id"], 0, 100))
        want((st, parts[0][16:] if st == 0 else None),
             (0, b"held by a live server"), "the live server's stays")
        print("  the dead server's orphan removed %.1f s after the kill"
              % took)
    finally:
        o1.close()
        c3.close()
        s3.kill()


def test_file_changes_notified_for_each_name(env):
    """A WRITE by id through server 2 to a file with two names is a
    CHANGE notice on server 1 for the name in the watched directory, and
    the listing there shows the new size."""
    top = BOX + "/fnote"
    for d in (top, top + "/w", top + "/o"):
        want(env.a.mkdir(d), 0, "MKDIR " + d)
    _, f = put(env.a, top + "/o/file", b"1\n")
    want(env.b.call("LINK", struct.pack(">Q", f["id"]) +
                    hc.s(top + "/w/name"))[0], 0, "LINK into the watched dir")
    w = Client(env.s1.port)
    try:
        st, parts = w.call("WATCH", hc.s(top + "/w"))
        want(st, 0, "WATCH on server 1")
        add = b"2\n"
        st, _ = env.b.call("WRITE", struct.pack(">QQIQQ", f["id"], 0, 1,
                                                hc.xxh3(add), len(add)) + add)
        want(st, 0, "WRITE APPEND through server 2")
        want(next_notice(w, "name"), (top + "/w", 3, "name", f["id"]),
             "NOTIFY CHANGE on server 1 of a WRITE through server 2")
        st, parts = env.a.call("READDIR", hc.s(top + "/w"))
        want(entries(parts)["name"][0]["size"], 4, "the size listed")
    finally:
        w.close()


def test_unsupported_is_eopnotsupp(env):
    """And SETATTR of a directory and of a message, which are there."""
    st, parts = env.a.call("SETATTR", hc.s(BOX + "/new/across.1") +
                           struct.pack(">IIIIQQ", 1, 0o640, 0, 0, 0, 0))
    want(st, 0, "SETATTR (mode) of a message")
    st, parts = env.b.ref("STAT", "across.1")
    want(struct.unpack_from(">BQQI", parts[0])[3] & 0o7777, 0o640,
         "the message's mode through the other server")
    oid = attr(parts[0])["id"]
    st, _ = env.b.call("FSETATTR", struct.pack(">QIIIIQQQ", oid, 8, 0, 0,
                                               0, 1, 0, 0))
    want(st, errno.EPERM, "FSETATTR size of a message (immutable)")
    st, _ = env.b.call("FSETATTR", struct.pack(">QIIIIQQQ", oid, 1, 0o600,
                                               0, 0, 0, 0, 0))
    want(st, 0, "FSETATTR (mode) of a message by id")
    st, parts = env.a.ref("STAT", "across.1")
    want(struct.unpack_from(">BQQI", parts[0])[3] & 0o7777, 0o600,
         "its mode through server 1")
    st, parts = env.a.call("SETATTR", hc.s(BOX + "/tmp") + struct.pack(
        ">IIIIQQ", 7, 0o700, 5000, 5001, 0, 0))
    want(st, 0, "SETATTR of a directory")
    st, parts = env.b.call("LOOKUP", hc.s(BOX + "/tmp"))
    t, oid, size, mode, uid, gid = struct.unpack_from(">BQQIII", parts[0])
    want((mode & 0o7777, uid, gid), (0o700, 5000, 5001),
         "its owner and mode through the other server")
    st, _ = env.a.call("ADMIN", hc.s("stats") + hc.s(""))
    want(st, 0, "ADMIN stats (test_rados_ops.py has the rest)")
    st, _, _, _ = env.a.list()
    want(st, 0, "LIST after them: the server is still up")


def test_mount_postfix_delivery(env):
    m = mstlib.Mount(env.s1.addr).start()
    try:
        body = b"From: pf@r.example\r\nSubject: via mount\r\n\r\npostfix\r\n"
        tmp = m.path(BOX, "tmp", "1.V1I1.host")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, body)
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, m.path(BOX, "new", "1.V1I1.host"))
        os.unlink(tmp)
        with open(m.path(BOX, "new", "1.V1I1.host"), "rb") as f:
            want(f.read(), body, "read back through the mount")
        want("1.V1I1.host" in os.listdir(m.path(BOX, "new")), True,
             "listed in new/ through the mount")
        _, _, _, ents = env.b.list()
        a = present(ents)["1.V1I1.host"]
        st, _, csum, data = env.b.fetch(a["id"])
        want((st, data, csum), (0, body, hc.xxh3(body)),
             "the mount's delivery fetched through server 2")
        os.rename(m.path(BOX, "new", "1.V1I1.host"),
                  m.path(BOX, "cur", "1.V1I1.host:2,S"))
        _, _, _, ents = env.b.list(sub=2)
        want(present(ents)["1.V1I1.host:2,S"]["id"], a["id"],
             "flag rename through the mount, seen on server 2")
    finally:
        m.unmount()


def test_mount_suite_on_rados(env):
    """test_mount.py's mount-level cases (qmail and Postfix sequences,
    immutable messages, Dovecot's lock/rename/append/truncate files,
    owners and modes, a 5 MiB message, statfs) on a mount of server 1."""
    import test_mount
    m = mstlib.Mount(env.s1.addr, "allow_other").start()
    try:
        for t in (test_mount.test_postfix_sequence,
                  test_mount.test_qmail_rename_then_flags_and_expunge,
                  test_mount.test_message_is_immutable,
                  test_mount.test_direct_create_in_new_is_delivered_at_close,
                  test_mount.test_dir_mtime_changes_with_contents,
                  test_mount.test_dovecot_files_lock_and_rename_over,
                  test_mount.test_owner_and_mode_are_kept,
                  test_mount.test_large_message_spools_and_spans_frames,
                  test_mount.test_statfs):
            try:
                t(m)
            except Exception as e:
                raise AssertionError("test_mount.%s on rados: %r" % (
                    t.__name__, e))
            print("  test_mount.%s: ok" % t.__name__)
    finally:
        m.unmount()


def test_storage_down_answers_eio(env):
    env.cluster.stop()
    t0 = time.monotonic()
    st, _ = env.a.deliver("down.1", b"nobody home")
    took = time.monotonic() - t0
    want(st, errno.EIO, "DELIVER with the cluster stopped")
    want(took < 15, True, "EIO within the storage timeout (%.1fs)" % took)
    print("  EIO after %.1f s" % took)


def main():
    return radoslib.run_suite("test_rados", setup, (
        test_deliver_on_one_fetch_on_other,
        test_idempotent_retry_across_servers,
        test_racing_exclusive_creates_one_winner,
        test_racing_rules_hold,
        test_dir_remade_elsewhere,
        test_setinfo_expunge_seen_across,
        test_notice_across_servers,
        test_small_files_across_servers,
        test_link_and_rename_files_across_dirs,
        test_open_references_across_servers,
        test_racing_moves_across_dirs,
        test_racing_links,
        test_move_left_by_dead_server_is_ended,
        test_file_changes_notified_for_each_name,
        test_dead_openers_references_dropped,
        test_quota_across_servers,
        test_unsupported_is_eopnotsupp,
        test_mount_postfix_delivery,
        test_mount_suite_on_rados,
        test_storage_down_answers_eio), limit=150)


if __name__ == "__main__":
    sys.exit(main())
