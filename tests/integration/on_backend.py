#!/usr/bin/env python3
"""on_backend - run integration test files with every Store on a back-end.

usage: on_backend.py [--store memstore|bluestore] BACKEND TEST.py [ARG...]
                     [+ TEST.py [ARG...]]...

BACKEND is local, memory or rados. Every mstlib.Store that TEST.py starts
(test_mount.py, test_posix.py, test_shared.py, test_locks.py,
test_perms.py, test_layouts.py and the others built on mstlib) then runs
mstored on that back-end; see MST_BACKEND in tests/integration/mstlib.py.

  local    the default back-end, as when the test is run by itself;
  memory   mstored --backend memory: each store in RAM;
  rados    mstored --backend rados: one private Ceph cluster
           (tools/lab/ceph-minicluster, memstore unless --store says
           otherwise) is started for the whole run (every TEST.py given,
           one after the other) and stopped at its end,
           also when the test fails or this runner is interrupted
           (SIGINT, SIGTERM, SIGHUP); each Store gets a namespace of its
           own in the cluster's pool "mstore". With MST_CEPH_CONF already
           set, that cluster is used instead (and MST_POOL, default
           mstore), and nothing is started or stopped.

Cases a back-end cannot pass are not run but printed as SKIP with the
reason (mstlib.NOT_ON_BACKEND; MST_RUN_ALL=1 runs them all).

Several test files, separated by a lone "+", run one after the other on
the same cluster. The exit status is 0 when every test passed, 1 when one
failed, 77 when all were skipped (rados: the Ceph packages are not
installed; tools/install-deps installs them), 2 for bad usage.
Environment the tests use (abs_top_builddir, MST_TARGET=mstore, ...) is
passed through. Example, from a build directory:

  abs_top_builddir=$PWD MST_TARGET=mstore \\
      python3 ../tests/integration/on_backend.py rados \\
      ../tests/integration/test_mount.py + ../tests/integration/test_locks.py
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MINICLUSTER = os.path.join(HERE, "..", "..", "tools", "lab", "ceph-minicluster")
POOL = "mstore"


class Stop(Exception):
    """A signal asked this runner to stop."""


def on_signal(sig, frame):
    raise Stop("signal %d" % sig)


def check_rados_built():
    """Skip (77) when the Ceph daemons are not installed; fail, saying
    why, when mstored lacks the rados back-end."""
    missing = [b for b in ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph")
               if shutil.which(b) is None]
    if missing:
        print("SKIP on_backend: the Ceph packages are not installed "
              "(missing %s; tools/install-deps or apt-get install ceph-mon "
              "ceph-osd ceph-mgr ceph-common)" % ", ".join(missing))
        sys.exit(77)
    build = os.environ.get("abs_top_builddir") or os.path.join(HERE, "..",
                                                               "..")
    mstored = os.environ.get("MSTORED") or os.path.join(
        build, "storeserver", "mstored")
    out = subprocess.run([mstored, "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    if "rados (a Ceph pool" not in out or "not built in" in out:
        sys.exit("on_backend: %s was built without the rados back-end "
                 "(configure --with-rados, librados-dev)" % mstored)


def start_cluster(store):
    """Start a minicluster in a new directory: (dir, ceph.conf path)."""
    d = tempfile.mkdtemp(prefix="mst-onbackend-ceph-")
    print("on_backend: starting a Ceph cluster (%s) in %s" % (store, d),
          flush=True)
    r = subprocess.run([sys.executable, MINICLUSTER, "start", d, "--store",
                        store, "--pool", POOL, "--no-install"],
                       stdout=subprocess.PIPE, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines or not os.path.exists(lines[-1]):
        stop_cluster(d)
        sys.exit("on_backend: ceph-minicluster start %s failed (exit %d)"
                 % (d, r.returncode))
    return d, lines[-1]


def stop_cluster(d):
    r = subprocess.run([sys.executable, MINICLUSTER, "stop", d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        print("on_backend: ceph-minicluster stop %s: exit %d\n%s"
              % (d, r.returncode, r.stdout), flush=True)
    else:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 3)[3],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=("memstore", "bluestore"),
                    default="memstore",
                    help="rados: the OSDs' object store (default memstore)")
    ap.add_argument("backend", choices=("local", "memory", "rados"))
    ap.add_argument("test", help="an integration test file (TEST.py)")
    ap.add_argument("args", nargs=argparse.REMAINDER,
                    help="arguments for TEST.py; + starts the next TEST.py")
    a = ap.parse_args()
    runs = [[a.test]]
    for arg in a.args:
        if arg == "+":
            runs.append([])
        else:
            runs[-1].append(arg)
    if not all(runs):
        ap.error("a test file must follow each +")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    env = dict(os.environ, MST_BACKEND=a.backend)
    cluster = None
    child = None
    try:
        if a.backend == "rados":
            check_rados_built()
        if a.backend == "rados" and not env.get("MST_CEPH_CONF"):
            cluster, conf = start_cluster(a.store)
            env["MST_CEPH_CONF"] = conf
            env["MST_POOL"] = POOL
        if a.backend == "rados":
            print("on_backend: rados cluster %s, pool %s" % (
                env["MST_CEPH_CONF"], env.get("MST_POOL") or POOL),
                flush=True)
        codes = []
        for run in runs:
            child = subprocess.Popen([sys.executable] + run, env=env)
            codes.append(child.wait())
            child = None
        if any(c not in (0, 77) for c in codes):
            return 1
        return 77 if all(c == 77 for c in codes) else 0
    except Stop as e:
        print("on_backend: stopped by %s" % e, flush=True)
        return 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if child is not None and child.poll() is None:
            child.terminate()   # mstlib cleans up on SIGTERM
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if cluster:
            stop_cluster(cluster)


if __name__ == "__main__":
    sys.exit(main())
