#!/usr/bin/env python3
"""One mount listing three mstored (local back-end, three separate data
directories: three stores, which is enough to see where each request
goes). Deliveries to 20 mailboxes land on the server the rendezvous hash
(XXH3 of mailbox NUL address) predicts. mstored killed with SIGKILL in
the middle of a stream of deliveries: no delivery fails, they resume
within 5 s, and the mailboxes of the dead server land on the next server
of their order; restarted, it gets its mailboxes back within a few
health intervals. An inotify reader (IDLE) on a second mount still hears
of deliveries to a mailbox that moved. A server added to servers_file
takes its share; one removed hands it over without a failed delivery."""
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
from test_idle import Inotify  # noqa: E402

NBOX = 20
BOXES = ["fo.example/u%02d" % i for i in range(NBOX)]

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def order(box, servers):
    """The mailbox's servers, preferred first (fuse-mount/route.c)."""
    def w(s):
        k = box.encode() + b"\0" + s.encode()
        return _xxh.XXH3_64bits(k, len(k))
    return sorted(servers, key=lambda s: (-w(s), s))


def ctl_ls(store, path):
    r = subprocess.run([mstlib.CTL, "-s", store.addr, "-t", "5", "ls", path],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError("mstore-ctl ls %s on %s: %s" % (
            path, store.addr, r.stderr.strip()))
    return {line.split()[-1] for line in r.stdout.splitlines() if line.split()}


def ctl_mkdirs(store):
    for box in BOXES:
        for sub in ("new", "cur", "tmp"):
            subprocess.run([mstlib.CTL, "-s", store.addr, "mkdir", "-p",
                            "%s/%s" % (box, sub)], check=True,
                           capture_output=True, timeout=20)


def deliver(m, box, name, body=None):
    tmp = m.path(box, "tmp", name)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, body or ("Subject: %s\n\nfailover\n" % name).encode())
    os.fsync(fd)
    os.close(fd)
    os.link(tmp, m.path(box, "new", name))
    os.unlink(tmp)


def where(stores, box, name):
    return [s.addr for s in stores if name in ctl_ls(s, box + "/new")]


def test_placement_follows_the_hash(stores, a):
    addrs = [s.addr for s in stores]
    per = {s: 0 for s in addrs}
    for box in BOXES:
        deliver(a, box, "place.1")
    for box in BOXES:
        want = order(box, addrs)[0]
        got = where(stores, box, "place.1")
        assert got == [want], "%s: on %s, hash says %s" % (box, got, want)
        per[want] += 1
    print("placement: %s" % per)
    assert all(per.values()), "a server got no mailbox of 20: %s" % per


class Stream:
    """Deliveries round-robin over every mailbox, from one thread, each
    one's completion time logged; any failure is kept."""

    def __init__(self, m, tag):
        self.m = m
        self.tag = tag
        self.done = []          # (monotonic time, box, name)
        self.started = []       # when each of |done| began
        self.errors = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            box = BOXES[i % NBOX]
            name = "%s.%d" % (self.tag, i)
            t0 = time.monotonic()
            try:
                deliver(self.m, box, name)
                self.done.append((time.monotonic(), box, name))
                self.started.append(t0)
            except OSError as e:
                self.errors.append((time.monotonic(), box, name, e))
            i += 1

    def resumed(self, since, boxes):
        """No failure; seconds from |since| to the end of the first
        delivery to one of |boxes| begun after it; the longest gap
        between two deliveries."""
        assert not self.errors, "deliveries failed: %s" % self.errors[:5]
        after = [t for (t, box, _), t0 in zip(self.done, self.started)
                 if t0 > since and box in boxes]
        assert after, "no delivery to the moved mailboxes"
        times = [t for t, _, _ in self.done]
        return after[0] - since, max(y - x for x, y in zip(times, times[1:]))

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(60)


def test_kill_during_deliveries(stores, a, state):
    addrs = [s.addr for s in stores]
    owned = {s.addr: [b for b in BOXES if order(b, addrs)[0] == s.addr]
             for s in stores}
    victim = max(stores, key=lambda s: len(owned[s.addr]))
    moved = owned[victim.addr]
    state["victim"], state["moved"] = victim, moved
    with Stream(a, "k") as st:
        time.sleep(2)
        t_kill = time.monotonic()
        victim.kill(signal.SIGKILL)
        time.sleep(8)
    resume, gap = st.resumed(t_kill, moved)
    print("failover: killed %s (%d of %d mailboxes); the first delivery "
          "to one of its mailboxes begun after the kill ended %.2f s after "
          "it; longest gap between "
          "deliveries %.2f s; %d delivered, 0 failed"
          % (victim.addr, len(moved), NBOX, resume, gap, len(st.done)))
    assert resume < 5, "resumed after %.2f s" % resume
    assert gap < 5, "stalled %.2f s" % gap
    live = [s for s in stores if s is not victim]
    live_addrs = [s.addr for s in live]
    listing = {(s.addr, box): ctl_ls(s, box + "/new")
               for s in live for box in BOXES}
    for t, box, name in st.done:
        if t <= t_kill + 0.5:
            continue        # may have gone to the victim before it died
        want = order(box, live_addrs)[0]
        got = [s for s in live_addrs if name in listing[(s, box)]]
        assert got == [want], "%s/%s after the kill: on %s, want %s" % (
            box, name, got, want)
    state["stream"] = st.done


def test_restarted_server_gets_its_mailboxes_back(stores, a, state):
    victim, moved = state["victim"], state["moved"]
    victim.start()
    t0 = time.monotonic()
    box, i = moved[0], 0
    while True:
        name = "back.%d" % i
        deliver(a, box, name)
        if name in ctl_ls(victim, box + "/new"):
            break
        assert time.monotonic() - t0 < 10, \
            "%s not back on %s after 10 s" % (box, victim.addr)
        i += 1
        time.sleep(0.1)
    took = time.monotonic() - t0
    print("return: %s serves %s again %.2f s after its restart"
          % (victim.addr, box, took))
    assert took < 6, took
    # Every mailbox it owns comes back, not only that one.
    for b in moved:
        deliver(a, b, "back.all")
        assert where(stores, b, "back.all") == [victim.addr], b
    # Nothing of the stream is lost, and each message is stored once but
    # for the one DELIVER possibly in flight at the kill (with separate
    # stores the first copy is on the dead server; on shared storage its
    # idempotency id makes it one).
    doubles = 0
    names = {(s.addr, b): ctl_ls(s, b + "/new") for s in stores for b in BOXES}
    for _, b, name in state["stream"]:
        n = sum(name in names[(s.addr, b)] for s in stores)
        assert n >= 1, "%s/%s lost" % (b, name)
        doubles += n > 1
    print("stream: %d messages, %d stored on two servers" %
          (len(state["stream"]), doubles))
    assert doubles <= 1, doubles


def test_watch_follows_a_moved_mailbox(stores, a, b, state):
    victim, moved = state["victim"], state["moved"]
    box = moved[-1]
    ino = Inotify()
    try:
        for sub in ("new", "cur"):
            os.listdir(b.path(box, sub))
            ino.watch(b.path(box, sub))
        time.sleep(0.3)
        deliver(a, box, "w.before")
        assert ino.read(2.0), "no event before the kill"
        victim.kill(signal.SIGKILL)
        time.sleep(4)       # both mounts: down, moved, watched again
        ino.drain()
        t0 = time.monotonic()
        deliver(a, box, "w.after")
        ev = ino.read(3.0)
        assert ev, "no inotify event on B for the moved mailbox"
        print("watch: moved mailbox %s, event on the other mount %.0f ms "
              "after the delivery" % (box, (ev[0][0] - t0) * 1000))
        assert "w.after" in os.listdir(b.path(box, "new"))
    finally:
        ino.close()
    victim.start()


def test_hung_server_detected_by_health_checks(stores, a):
    """SIGSTOP: the connection stays up, only the PINGs go unanswered;
    failover_timeout (2 s) after the last answered one it is down."""
    addrs = [s.addr for s in stores]
    # The restarted server is back (2 health intervals) before this.
    time.sleep(3)
    frozen = stores[1]
    mine = [b for b in BOXES if order(b, addrs)[0] == frozen.addr]
    assert mine, "no mailbox on %s" % frozen.addr
    with Stream(a, "h") as st:
        time.sleep(1.5)
        t_stop = time.monotonic()
        frozen.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(7)
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
    resume, gap = st.resumed(t_stop, mine)
    print("hung server: %s stopped; its mailboxes served again after "
          "%.2f s; longest gap between deliveries %.2f s; %d delivered, "
          "0 failed" % (frozen.addr, resume, gap, len(st.done)))
    assert resume < 5, resume
    assert gap < 5, gap
    # Continued, it gets its mailboxes back.
    t0 = time.monotonic()

    def back():
        back.i += 1
        name = "cont.%d" % back.i
        deliver(a, mine[0], name)
        return where(stores, mine[0], name) == [frozen.addr]
    back.i = 0
    mstlib.wait_until(back, 8, "the continued server to serve again")
    print("hung server: back %.2f s after SIGCONT" % (time.monotonic() - t0))


def test_servers_file_join_and_leave(stores):
    s1, s2, s3 = stores
    lst = os.path.join(mstlib.tmpdir("mst-list-"), "servers")
    with open(lst, "w") as f:
        f.write("%s,%s\n" % (s1.addr, s2.addr))
    c = mstlib.Mount("%s,%s" % (s1.addr, s2.addr),
                     "servers_file=%s,health_interval=200" % lst).start()
    two = [s1.addr, s2.addr]
    for box in BOXES:
        deliver(c, box, "two.1")
        assert where(stores, box, "two.1") == [order(box, two)[0]], box
    # Join: s3 listed (rewritten atomically, as an operator would).
    with open(lst + ".new", "w") as f:
        f.write("# three now\n%s\n%s\n%s\n" % (s1.addr, s2.addr, s3.addr))
    os.rename(lst + ".new", lst)
    three = [s1.addr, s2.addr, s3.addr]
    t0 = time.monotonic()

    def joined():
        joined.i += 1
        name = "join.%d" % joined.i
        deliver(c, joined.box, name)
        return where(stores, joined.box, name) == [s3.addr]
    joined.i = 0
    joined.box = next(bx for bx in BOXES if order(bx, three)[0] == s3.addr)
    mstlib.wait_until(joined, 5, "s3 to take its share")
    print("join: %s took its share %.2f s after the list changed"
          % (s3.addr, time.monotonic() - t0))
    for box in BOXES:
        deliver(c, box, "three.1")
        assert where(stores, box, "three.1") == [order(box, three)[0]], box
    # Leave: s2 taken out; deliveries go on, none fails.
    with open(lst + ".new", "w") as f:
        f.write("%s %s\n" % (s1.addr, s3.addr))
    os.rename(lst + ".new", lst)
    with Stream(c, "leave") as st:
        time.sleep(1.5)
    assert not st.errors, st.errors[:5]
    assert st.done, "no delivery while s2 left"
    for box in BOXES:
        deliver(c, box, "left.1")
        assert where(stores, box, "left.1") == \
            [order(box, [s1.addr, s3.addr])[0]], box
    print("leave: %d deliveries while %s left the list, 0 failed"
          % (len(st.done), s2.addr))
    c.unmount()


def main():
    r = mstlib.Runner("failover", limit=120)
    stores = [mstlib.Store().start() for _ in range(3)]
    for s in stores:
        ctl_mkdirs(s)
    servers = ",".join(s.addr for s in stores)
    a = mstlib.Mount(servers, "timeout=10").start()
    b = mstlib.Mount(servers, "timeout=10").start()
    state = {}
    r.run(test_placement_follows_the_hash, stores, a)
    r.run(test_kill_during_deliveries, stores, a, state)
    if "stream" in state:
        r.run(test_restarted_server_gets_its_mailboxes_back, stores, a, state)
        r.run(test_watch_follows_a_moved_mailbox, stores, a, b, state)
    r.run(test_hung_server_detected_by_health_checks, stores, a)
    r.run(test_servers_file_join_and_leave, stores)
    a.unmount()
    b.unmount()
    for s in stores:
        s.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
