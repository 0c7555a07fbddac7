"""mstlib - start and stop the real mstore programs for integration tests.

Every process started here is remembered by PID and killed at exit; every
mount is unmounted; every temporary directory is removed. Nothing is ever
killed by name.

The back-end of every Store comes from the environment, so that one test
file runs on each (tests/integration/on_backend.py sets these up):

  MST_BACKEND     local (default), memory, or rados;
  MST_CEPH_CONF   rados: the cluster's ceph.conf;
  MST_POOL        rados: the pool (default mstore);
  MST_CEPH_ID     rados: the client name (default admin).

With rados, each Store gets a namespace of its own in the pool (mstored
--namespace), kept across its restarts, so that every Store is a store
apart, as a fresh data directory is for local. A Store whose conf_extra
names a backend itself is left as it says.

Some cases cannot pass on some back-ends (a restart of a memory store
keeps nothing; the rados back-end's known gaps, mstored(8) BACK-ENDS):
NOT_ON_BACKEND lists them with the reason, and Runner.run prints them as
SKIP with that reason instead of running them, unless MST_RUN_ALL=1
(to see whether a gap is closed).
"""
import atexit
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("abs_top_builddir") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
MSTORED = os.environ.get("MSTORED") or os.path.join(BUILD, "storeserver", "mstored")
MOUNT = os.environ.get("MOUNT_MSTORE") or os.path.join(BUILD, "fuse-mount", "mount.mstore")
CTL = os.environ.get("MSTORE_CTL") or os.path.join(BUILD, "tools", "mstore-ctl")

BACKEND = os.environ.get("MST_BACKEND") or "local"
if BACKEND not in ("local", "memory", "rados"):
    sys.exit("mstlib: MST_BACKEND=%s: expected local, memory or rados"
             % BACKEND)
if BACKEND == "rados" and not os.environ.get("MST_CEPH_CONF"):
    sys.exit("mstlib: MST_BACKEND=rados needs MST_CEPH_CONF (the cluster's "
             "ceph.conf); tests/integration/on_backend.py rados starts one")

# Cases that do not run on a back-end: "suite.case" -> the reason. The
# suite is the name given to Runner.
_NO_RESTART = "the memory back-end keeps nothing across a restart"
_DATA_DIR = ("it puts the local back-end's data directory back to an "
             "earlier copy (a machine crash); the memory store keeps "
             "nothing to copy, and rados acknowledges a flag change only "
             "once Ceph has it, so none is lost")
NOT_ON_BACKEND = {
    "memory": {
        "shared.test_store_outage_gives_eio_then_recovers": _NO_RESTART,
        "shared.test_lost_flag_change_is_undone_in_every_mount": _DATA_DIR,
    },
    "rados": {
        "shared.test_lost_flag_change_is_undone_in_every_mount": _DATA_DIR,
    },
}



def not_run(case):
    """Why |case| ("suite.case") does not run on BACKEND, or None (also
    with MST_RUN_ALL=1)."""
    if os.environ.get("MST_RUN_ALL") == "1":
        return None
    return NOT_ON_BACKEND.get(BACKEND, {}).get(case)


_procs = []
_mounts = []
_dirs = []
_namespaces = 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tmpdir(prefix="mst-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _dirs.append(d)
    return d


def maildir(m, box):
    """Makes |box| with tmp/, new/ and cur/ on mount |m|."""
    for sub in ("", "/tmp", "/new", "/cur"):
        os.makedirs(m.path(box + sub), mode=0o700, exist_ok=True)


def deliver(m, box, name, body):
    """Delivers |body| into |box|/new/|name| on mount |m| as Postfix does:
    write and fsync in tmp/, link into new/, unlink tmp/."""
    tmp = m.path(box, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.link(tmp, m.path(box, "new", name))
    os.unlink(tmp)


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))


def backend_conf():
    """mstore.conf lines that put a new store on BACKEND."""
    global _namespaces
    if BACKEND == "local":
        return ""
    if BACKEND == "memory":
        return "backend = memory\n"
    _namespaces += 1
    text = ("backend = rados\nceph_conf = %s\npool = %s\n"
            "namespace = mst-%d-%d-%s\n" % (
                os.environ["MST_CEPH_CONF"],
                os.environ.get("MST_POOL") or "mstore", os.getpid(),
                _namespaces, os.urandom(4).hex()))
    if os.environ.get("MST_CEPH_ID"):
        text += "ceph_id = %s\n" % os.environ["MST_CEPH_ID"]
    return text


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Store:
    """An mstored on 127.0.0.1:port with its data in a private directory,
    on the back-end MST_BACKEND names (see above)."""

    def __init__(self, conf_extra="", port=None, data=None):
        self.dir = tmpdir("mst-store-")
        self.data = data or os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.port = port or free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.conf = os.path.join(self.dir, "mstored.conf")
        with open(self.conf, "w") as f:
            if "backend" not in conf_extra:
                f.write(backend_conf())
            f.write(conf_extra)
        self.log = os.path.join(self.dir, "mstored.log")
        self.proc = None

    def start(self, timeout=30):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [MSTORED, "--data", self.data, "--listen", self.addr,
             "--config", self.conf, "--foreground"],
            stdout=logf, stderr=subprocess.STDOUT)
        _procs.append(self.proc)
        wait_until(lambda: self.proc.poll() is not None or can_connect(self.port),
                   timeout, "mstored to listen")
        if self.proc.poll() is not None:
            raise RuntimeError("mstored exited %d:\n%s" % (self.proc.returncode,
                                                         open(self.log).read()))
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(timeout=30)

    def stop(self):
        self.kill(signal.SIGTERM)


def _mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == mnt:
                return True
    return False


class Mount:
    """mount.mstore in the foreground on a private mount point."""

    def __init__(self, servers, opts="", mnt=None):
        self.mnt = mnt or tmpdir("mst-mnt-")
        self.servers = servers
        self.opts = opts
        self.log = self.mnt.rstrip("/") + ".log"
        self.proc = None

    def start(self, timeout=20):
        args = [MOUNT, self.servers, self.mnt, "-f"]
        if self.opts:
            args += ["-o", self.opts]
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        _procs.append(self.proc)
        _mounts.append(self.mnt)
        wait_until(lambda: self.proc.poll() is not None or _mounted(self.mnt),
                   timeout, "the mount to appear")
        if self.proc.poll() is not None:
            raise RuntimeError("mount.mstore exited %d:\n%s" %
                               (self.proc.returncode, open(self.log).read()))
        return self

    def path(self, *p):
        return os.path.join(self.mnt, *p)

    def unmount(self):
        if _mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], check=False)
            if r.returncode != 0:   # something still open: detach lazily
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False)
        if self.proc:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def cleanup():
    for mnt in reversed(_mounts):
        if _mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
    for p in reversed(_procs):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    for d in reversed(_dirs):
        shutil.rmtree(d, ignore_errors=True)
        if d.startswith(tempfile.gettempdir()):
            for suffix in (".log",):
                try:
                    os.unlink(d.rstrip("/") + suffix)
                except OSError:
                    pass


atexit.register(cleanup)


def _on_signal(sig, frame):
    cleanup()
    sys.exit(128 + sig)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


class Runner:
    """A tiny test runner: named test functions, a hard time limit each,
    and the closing line 'N passed, N failed'."""

    def __init__(self, name, limit=120):
        self.name = name
        self.limit = limit
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, fn, *args):
        why = not_run("%s.%s" % (self.name, fn.__name__))
        if why:
            self.skipped += 1
            print("SKIP %s.%s: not run on the %s back-end: %s" % (
                self.name, fn.__name__, BACKEND, why), flush=True)
            return
        def alarm(sig, frame):
            raise TimeoutError("test exceeded %ds" % self.limit)
        old = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(self.limit)
        t0 = time.monotonic()
        try:
            fn(*args)
            self.passed += 1
            print("PASS %s.%s (%.2fs)" % (self.name, fn.__name__,
                                         time.monotonic() - t0), flush=True)
        except Exception as e:  # report every failure, keep going
            self.failed += 1
            import traceback
            print("FAIL %s.%s: %s" % (self.name, fn.__name__, e), flush=True)
            traceback.print_exc()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    def finish(self):
        print("%s: %d passed, %d failed%s%s" % (
            self.name, self.passed, self.failed,
            ", %d skipped" % self.skipped if self.skipped else "",
            " (back-end %s)" % BACKEND if BACKEND != "local" else ""))
        cleanup()
        return 0 if self.failed == 0 and self.passed > 0 else 1


def expect_errno(err, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != err:
            raise AssertionError("%s%r: got %s, want %s" % (
                fn.__name__, args, errno.errorcode.get(e.errno, e.errno),
                errno.errorcode[err]))
        return
    raise AssertionError("%s%r: succeeded, want %s" % (fn.__name__, args,
                                                      errno.errorcode[err]))
