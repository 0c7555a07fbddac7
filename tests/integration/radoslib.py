"""radoslib - a real Ceph cluster and rados mstored for integration tests.

What test_rados*.py and test_cluster.py share:

  - skip_unless_ceph(): exit 77 (skipped) only when the Ceph daemons are
    not installed, and fail when mstored was built without the rados
    back-end;
  - Cluster: a private cluster started by tools/lab/ceph-minicluster (1 mon,
    1 mgr, 3 OSDs on 127.0.0.1), stopped by the PIDs the tool recorded
    (DIR/daemons.json) at `stop`, at exit and on SIGTERM/SIGINT/SIGHUP,
    before mstlib removes its directory;
  - servers(): N mstored --backend rados on one pool of it;
  - mount(): mount.mstore listing several servers (S1,S2,S3);
  - Client and the reply decoders: the protocol spoken directly to one
    server (the small client of tests/hostile_client.py);
  - dump_logs(): the tail of each server's and mount's log after a
    failure.
"""
import atexit
import json
import os
import shutil
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

SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
MINICLUSTER = os.path.join(SRC, "tools", "lab", "ceph-minicluster")
POOL = "mstore"
BOX = "r.example/al"

_clusters = []


def skip_unless_ceph(name):
    missing = [b for b in ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph")
               if shutil.which(b) is None and
               not os.path.exists("/usr/bin/" + b)]
    if missing:
        print("SKIP %s: the Ceph packages are not installed "
              "(missing %s; apt-get install ceph-mon ceph-osd ceph-mgr "
              "ceph-common)" % (name, ", ".join(missing)))
        sys.exit(77)
    out = subprocess.run([mstlib.MSTORED, "--help"], capture_output=True,
                         text=True).stdout
    if "rados (a Ceph pool" not in out or "not built in" in out:
        print("FAIL %s: Ceph is installed but %s was built without "
              "the rados back-end (configure --with-rados, librados-dev)"
              % (name, mstlib.MSTORED))
        sys.exit(1)


def mc(*args, timeout=180):
    """tools/lab/ceph-minicluster ARGS, its output captured."""
    return subprocess.run([MINICLUSTER] + list(args), capture_output=True,
                          text=True, timeout=timeout)


class Cluster:
    """The minicluster in a private directory. |stores| are tried in
    order (bluestore can fail where sparse files cannot be made; memstore
    then serves)."""

    def __init__(self, prefix="mst-ceph-", stores=("memstore",),
                 timeout=120):
        self.dir = mstlib.tmpdir(prefix)
        self.stores = stores
        self.timeout = timeout
        self.conf = None
        self.store = None
        self.running = False
        _clusters.append(self)

    def start(self):
        for store in self.stores:
            t0 = time.monotonic()
            self.running = True
            r = mc("start", self.dir, "--no-install", "--pool", POOL,
                   "--store", store, "--timeout", str(self.timeout),
                   timeout=self.timeout + 60)
            if r.returncode == 0:
                self.store = store
                self.conf = r.stdout.strip().splitlines()[-1]
                print("cluster (%s) active+clean after %.1f s" %
                      (store, time.monotonic() - t0), flush=True)
                return self
            print("ceph-minicluster start --store %s failed:\n%s%s" %
                  (store, r.stdout, r.stderr[-2000:]), flush=True)
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
            os.makedirs(self.dir)
        raise RuntimeError("no minicluster could be started")

    def ceph_json(self, *args):
        r = subprocess.run(["ceph", "-c", self.conf] + list(args) +
                           ["-f", "json"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("ceph %s: %s" % (" ".join(args), r.stderr))
        return json.loads(r.stdout)

    def rados_conf(self, extra=""):
        """mstored.conf text for the rados back-end on this cluster."""
        return ("backend = rados\nceph_conf = %s\npool = %s\n%s" %
                (self.conf, POOL, extra))

    def stop(self):
        if self.running:    # ends the daemons by their recorded PIDs
            mc("stop", self.dir, "--timeout", "30", timeout=120)
            self.running = False


def stop_clusters():
    for c in _clusters:
        c.stop()


# Registered after mstlib's cleanup, so it runs first (atexit is LIFO):
# the daemons end before their directory is removed.
atexit.register(stop_clusters)


def _on_signal(sig, frame):
    stop_clusters()
    mstlib._on_signal(sig, frame)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def servers(cluster, n, extra=""):
    """|n| mstored --backend rados on the cluster's pool, started."""
    conf = cluster.rados_conf(extra)
    return [mstlib.Store(conf).start() for _ in range(n)]


def server_list(stores):
    return ",".join(s.addr for s in stores)


def mount(stores, opts="timeout=10"):
    """mount.mstore listing every one of |stores| (S1,S2,...)."""
    return mstlib.Mount(server_list(stores), opts).start()


def dead_servers(stores):
    """Report servers that exited on their own; their count."""
    n = 0
    for s in stores:
        if s.proc is not None and s.proc.poll() is not None:
            print("FAIL mstored %s exited with %d" % (s.addr,
                                                     s.proc.returncode))
            n += 1
    return n


def dump_logs(stores, mounts=(), tail=3000):
    for x in list(stores) + list(mounts):
        print("--- %s" % x.log)
        try:
            print(open(x.log, errors="replace").read()[-tail:])
        except OSError as e:
            print(e)


class Phase:
    """An entry of run_suite's |tests| that runs several cases itself:
    fn(runner, env), for a stretch of cases that share something made
    for them (mounts, say) and call runner.run for each."""

    def __init__(self, fn):
        self.fn = fn


def run_suite(name, setup, tests, limit=90):
    """The main() of a rados suite: skip_unless_ceph, a Cluster, then
    env = setup(cluster) (with env.cluster and env.servers), each of
    |tests| under mstlib.Runner with |limit| s (a Phase runs its own),
    a server that exited counted as a failure, the servers' logs after
    any, everything stopped. Returns the exit status."""
    skip_unless_ceph(name)
    r = mstlib.Runner(name, limit=limit)
    t0 = time.monotonic()
    env = None
    cluster = Cluster()
    try:
        env = setup(cluster)
        print("cluster and %d servers up after %.1f s" % (
            len(env.servers), time.monotonic() - t0), flush=True)
    except Exception as e:
        print("FAIL %s.setup: %s" % (name, e))
        r.failed += 1
        for d in mstlib._dirs:
            log = os.path.join(d, "mstored.log")
            if os.path.exists(log):
                print(open(log, errors="replace").read()[-3000:])
        cluster.stop()
    if env is not None:
        for fn in tests:
            if isinstance(fn, Phase):
                fn.fn(r, env)
            else:
                r.run(fn, env)
        r.failed += dead_servers(env.servers)
        if r.failed:
            dump_logs(env.servers)
        for s in env.servers:
            s.kill()
        env.cluster.stop()
    print("total %.1f s" % (time.monotonic() - t0))
    return r.finish()


class Client:
    """One protocol connection, no key (the servers listen on loopback)."""

    def __init__(self, port, name=b"test_rados"):
        self.c = hc.Conn(port)
        self.rid = 10
        st, _ = self.c.call("HELLO", hc.hello_payload(name=name))
        assert st == 0, "HELLO: status %d" % st

    def call(self, op, payload, timeout=20.0):
        self.rid += 1
        return self.c.call(op, payload, rid=self.rid, timeout=timeout)

    def close(self):
        self.c.close()

    def mkdir(self, path):
        return self.call("MKDIR", hc.mkdir_req(path))[0]

    def deliver(self, name, body, sub=1, idem=None, box=BOX):
        st, parts = self.call("DELIVER", hc.deliver_req(
            name, body, sub=sub, idem=idem, box=box))
        return st, (attr(parts[0]) if st == 0 else None)

    def list(self, sub=1, since=0, box=BOX):
        st, parts = self.call("LIST", hc.s(box) + hc.s("") + bytes([sub]) +
                              struct.pack(">Q", since))
        if st:
            return st, None, None, None
        change, _mt, flags = struct.unpack_from(">QQB", parts[0])
        return st, change, flags, entries(parts)

    def fetch(self, oid, box=BOX):
        st, parts = self.call("FETCH", hc.s(box) + struct.pack(
            ">QQI", oid, 0, 1 << 20))
        if st:
            return st, None, None, None
        total, csum = struct.unpack_from(">QQ", parts[0])
        return st, total, csum, b"".join(p[16:] for p in parts)

    def ref(self, op, name, sub=1, box=BOX):
        return self.call(op, hc.s(box) + hc.s("") + bytes([sub]) +
                         hc.s(name))

    def setinfo(self, fsub, fname, tsub, tname, flags=0, box=BOX):
        return self.call("SETINFO", hc.s(box) + hc.s("") + bytes([fsub]) +
                         hc.s(fname) + bytes([tsub]) + hc.s(tname) +
                         struct.pack(">I", flags))[0]


def shard_of(name, shards=4):
    """The shard of a folder's index that holds |name| when the folder
    has |shards| of them (rados_index_shards, 4 by default): FNV-1a 64 of
    the name before its first ':' (engine_rados_shard.c)."""
    h = 1469598103934665603
    for b in name.split(":", 1)[0].encode():
        h = ((h ^ b) * 1099511628211) & 0xffffffffffffffff
    return h % shards


def attr(p):
    t, oid, size, mode, uid, gid, nlink, mt, ct, change, at = \
        struct.unpack_from(">BQQIIIIQQQQ", p)
    return dict(type=t, id=oid, size=size, change=change, nlink=nlink)


def entries(parts):
    out = {}
    for p in parts:
        count = struct.unpack_from(">I", p, 17)[0]
        o = 21
        for _ in range(count):
            kind = p[o]
            n = struct.unpack_from(">H", p, o + 1)[0]
            name = p[o + 3:o + 3 + n].decode()
            a = attr(p[o + 3 + n:])
            a["kind"] = "present" if kind == 1 else "removed"
            out.setdefault(name, []).append(a)
            o += 3 + n + 65
    return out


def present(ents):
    return {n: [a for a in v if a["kind"] == "present"][0]
            for n, v in ents.items()
            if any(a["kind"] == "present" for a in v)}
