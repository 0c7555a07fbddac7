#!/usr/bin/env python3
"""test_ceph_minicluster - tools/lab/ceph-minicluster starts a real Ceph cluster
(1 mon, 1 mgr, 3 memstore OSDs) in a temporary directory, and it works:

1. "start" exits 0 once every placement group is active+clean and prints
   DIR/ceph.conf last; the five daemons it recorded run and listen on
   127.0.0.1 only; "start" again says it is already running; an object
   written with "rados put" reads back byte for byte.
2. "kill-osd 1" SIGKILLs osd.1: "ceph -s" reports 2 of 3 OSDs up, the
   object still reads back and a new one can be written (min_size 2);
   "status" exits 1.
3. "start-osd 1 --wait-clean" brings it back: "ceph -s" reports 3 up and
   every placement group active+clean; both objects read back.
4. "stop" says what it stopped, and not one process it started is left
   (by the recorded PIDs, and no process at all naming the directory).

Whatever happens, the cluster is stopped by the PIDs it recorded (and,
failing that, SIGKILLed by the PIDs this test saw), before the directory
is removed. Needs root when the Ceph packages are missing (the tool
installs them); when Ceph cannot run here, the test FAILS and says why.
About 20 s on an idle machine.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mstlib  # noqa: E402

TOOL = os.environ.get("CEPH_MINICLUSTER") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "lab",
    "ceph-minicluster")
PYTHON = shutil.which("python3") or sys.executable
START_TIMEOUT = 240         # a busy machine; about 10 s when idle
DAEMONS = {"mon.a", "mgr.x", "osd.0", "osd.1", "osd.2"}

state = {"dir": None, "seen": {}}   # name/pid -> start time


def tool(*args, timeout=START_TIMEOUT):
    """Run ceph-minicluster; (exit status, stdout, stderr). On timeout it
    gets SIGTERM, so that a start cleans up after itself."""
    p = subprocess.Popen([PYTHON, TOOL] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    state["child"] = p
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, err = p.communicate(timeout=60)
        raise AssertionError("ceph-minicluster %s: no exit in %d s:\n%s" %
                             (" ".join(args), timeout, err))
    sys.stderr.write(err)
    return p.returncode, out, err


def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])


def recorded(d):
    with open(os.path.join(d, "daemons.json")) as f:
        return json.load(f)


def remember(d):
    for name, r in recorded(d).items():
        state["seen"]["%s/%d" % (name, r["pid"])] = (r["pid"], r["start"])


def alive_seen():
    return sorted(k for k, (pid, st) in state["seen"].items()
                  if start_time(pid) == st)


def procs_naming(d):
    """PIDs of the processes whose command line names |d|."""
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % e, "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if d in cmd and start_time(int(e)) is not None:
            found.append((int(e), cmd.replace("\0", " ").strip()))
    return found


def listen_addrs(pid):
    """The local addresses of the listening TCP sockets |pid| holds."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            t = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    addrs = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            c = row.split()
            if c[3] != "0A" or c[9] not in inodes:      # 0A: LISTEN
                continue
            hexip, port = c[1].split(":")
            if v6:
                addrs.append(("[%s]" % hexip, int(port, 16)))
            else:
                ip = ".".join(str(int(hexip[i:i + 2], 16))
                              for i in (6, 4, 2, 0))
                addrs.append((ip, int(port, 16)))
    return addrs


def ceph(d, *args, timeout=30):
    r = subprocess.run(["ceph", "-c", os.path.join(d, "ceph.conf"),
                        "--connect-timeout", "20"] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("ceph %s: exit %d: %s" % (
            " ".join(args), r.returncode, r.stderr.strip()))
    return r.stdout


def status_json(d):
    return json.loads(ceph(d, "-s", "-f", "json"))


def rados(d, *args):
    r = subprocess.run(["rados", "-c", os.path.join(d, "ceph.conf"),
                        "-p", "mstore"] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError("rados %s: exit %d: %s" % (
            " ".join(args), r.returncode, r.stderr.strip()))


def put_get(d, name, data):
    src = os.path.join(state["work"], name + ".in")
    dst = os.path.join(state["work"], name + ".out")
    if data is not None:
        with open(src, "wb") as f:
            f.write(data)
        rados(d, "put", name, src)
    else:
        with open(src, "rb") as f:
            data = f.read()
    if os.path.exists(dst):
        os.unlink(dst)
    rados(d, "get", name, dst)
    with open(dst, "rb") as f:
        got = f.read()
    if got != data:
        raise AssertionError("object %s: read %d bytes, wrote %d (or they "
                             "differ)" % (name, len(got), len(data)))


def wait_status(d, pred, what, secs=60):
    end = time.monotonic() + secs
    st = None
    while time.monotonic() < end:
        st = status_json(d)
        if pred(st):
            return st
        time.sleep(0.5)
    raise AssertionError("ceph -s never showed %s; last: osdmap %s, pgs %s"
                         % (what, st["osdmap"], st["pgmap"].get(
                             "pgs_by_state")))


def all_clean(st):
    pg = st["pgmap"]
    return st["osdmap"]["num_up_osds"] == 3 and pg["num_pgs"] > 0 and \
        sum(s["count"] for s in pg.get("pgs_by_state", [])
            if s["state_name"] == "active+clean") == pg["num_pgs"]


# --- the tests ---

def test_start():
    d = state["dir"]
    t = time.monotonic()
    rc, out, err = tool("start", d)
    assert rc == 0, "start: exit %d" % rc
    print("start (memstore) to active+clean: %.1f s" %
          (time.monotonic() - t), flush=True)
    remember(d)
    lines = out.strip().split("\n")
    assert lines[-1] == os.path.join(d, "ceph.conf"), \
        "last line of stdout: %r" % lines[-1]
    recs = recorded(d)
    assert set(recs) == DAEMONS, "recorded: %s" % sorted(recs)
    for name, r in sorted(recs.items()):
        assert start_time(r["pid"]) == r["start"], "%s not running" % name
        addrs = listen_addrs(r["pid"])
        assert addrs, "%s listens nowhere" % name
        wrong = [a for a in addrs if a[0] != "127.0.0.1"]
        assert not wrong, "%s listens on %s" % (name, wrong)
        with open("/proc/%d/status" % r["pid"]) as f:
            rss = [l.split()[1] for l in f if l.startswith("VmRSS:")][0]
        print("  %s PID %d RSS %d MiB, listening on %s" % (
            name, r["pid"], int(rss) // 1024,
            " ".join("%s:%d" % a for a in sorted(addrs))), flush=True)
    rc, out, err = tool("start", d)
    assert rc == 0 and "already running" in err, \
        "start on a running cluster: exit %d: %s" % (rc, err)
    assert out.strip().split("\n")[-1] == os.path.join(d, "ceph.conf")
    assert recorded(d) == recs, "a second start changed daemons.json"
    st = status_json(d)
    assert all_clean(st), "ceph -s after start: %s" % st["pgmap"]
    put_get(d, "obj1", os.urandom(65536 + 17))


def test_osd_failure():
    d = state["dir"]
    before = recorded(d)["osd.1"]
    rc, out, err = tool("kill-osd", d, "1")
    assert rc == 0, "kill-osd: exit %d" % rc
    assert start_time(before["pid"]) is None, "osd.1 still runs"
    t = time.monotonic()
    wait_status(d, lambda s: s["osdmap"]["num_up_osds"] == 2,
                "2 of 3 OSDs up")
    print("osd.1 reported down after %.1f s" % (time.monotonic() - t),
          flush=True)
    text = ceph(d, "osd", "tree")
    assert any(l.split()[-4:-2] == ["osd.1", "down"]
               for l in text.split("\n") if "osd.1" in l), text
    put_get(d, "obj1", None)
    put_get(d, "obj2", os.urandom(4096))
    rc, out, err = tool("status", d)
    assert rc == 1, "status with osd.1 down: exit %d" % rc
    assert "osd.1  not running" in out, out
    t = time.monotonic()
    rc, out, err = tool("start-osd", d, "1", "--wait-clean")
    assert rc == 0, "start-osd: exit %d" % rc
    print("osd.1 back, active+clean after %.1f s" % (time.monotonic() - t),
          flush=True)
    remember(d)
    wait_status(d, all_clean, "3 OSDs up and every pg active+clean", 30)
    put_get(d, "obj1", None)
    put_get(d, "obj2", None)
    rc, out, err = tool("status", d)
    assert rc == 0, "status: exit %d:\n%s" % (rc, out)


def test_stop():
    d = state["dir"]
    assert {k.split("/")[0] for k in state["seen"]} == DAEMONS, \
        "daemons seen: %s" % sorted(state["seen"])
    rc, out, err = tool("stop", d)
    assert rc == 0, "stop: exit %d" % rc
    for name in DAEMONS:
        assert name in err, "stop does not say it stopped %s: %s" % (name,
                                                                      err)
    left = alive_seen()
    assert not left, "still running after stop: %s" % left
    left = procs_naming(d)
    assert not left, "processes naming %s after stop: %s" % (d, left)
    assert recorded(d) == {}, "daemons.json after stop: %s" % recorded(d)
    rc, out, err = tool("stop", d)
    assert rc == 0 and "nothing" in err, "second stop: %d %s" % (rc, err)


# --- cleanup, by PID only ---

def cleanup():
    d = state.get("dir")
    if d is None:
        return
    try:
        busy = bool(recorded(d))
    except (OSError, ValueError):
        busy = False
    if busy:
        try:
            tool("stop", d, "--timeout", "20", timeout=120)
        except Exception as e:       # fall back to the PIDs seen below
            print("cleanup: stop failed: %s" % e, flush=True)
        try:
            remember(d)
        except (OSError, ValueError):
            pass
    for key in alive_seen():
        pid, st = state["seen"][key]
        print("cleanup: SIGKILL %s" % key, flush=True)
        if start_time(pid) == st:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state["work"], ignore_errors=True)
    state["dir"] = None


def on_signal(sig, frame):
    p = state.get("child")
    if p is not None and p.poll() is None:
        p.terminate()           # it cleans up after itself, and unlocks DIR
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    cleanup()
    sys.exit(128 + sig)


def main():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    state["work"] = tempfile.mkdtemp(prefix="mst-ceph-")
    state["dir"] = os.path.join(state["work"], "cluster")
    print("cluster in %s" % state["dir"], flush=True)
    r = mstlib.Runner("test_ceph_minicluster", limit=START_TIMEOUT + 60)
    try:
        r.run(test_start)
        if r.failed == 0:
            r.run(test_osd_failure)
        r.run(test_stop)
    finally:
        cleanup()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
