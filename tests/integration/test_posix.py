#!/usr/bin/env python3
"""POSIX conformance of a directory against local disk: the scenario
table in posix_cases.py (open flags, read/write, link, unlink, rename,
mkdir/rmdir, truncate, chmod/chown, utimensat, permissions, shared
descriptors, shared mmap, rename and unlink while open, fcntl and flock
locks) runs step by step in a local-disk directory and in the directory
under test, once as root and once as an unprivileged user, and every
difference in a return value, an errno, or an object's type, mode,
nlink, size, owner or set of changed timestamps is a failure:
"got X, want Y (local disk)".

With --mstore the reference is a local-disk directory mounted noatime
(a bind mount of itself), since the mount keeps access times as a
noatime local file system does; KNOWN lists the other documented
differences, printed on every run and not counted. Without --mstore the
directory under test is a second local-disk
directory (the harness must then pass 100%: it proves the runs are
deterministic). With --mstore (or MST_TARGET=mstore) it is a directory on a
mount.mstore (allow_other) of a private mstored. POSIX_DIR names another directory
to test instead."""
import argparse
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
import dovelib  # noqa: E402
import posix_cases  # noqa: E402

CHILD_LIMIT = 120

# Differences that mount.mstore(8) documents, each with its reason. They
# are printed on every run and not counted as failures; anything else is.
KNOWN = {
    # (scenario, step label, object, field): reason
    ("mmap_shared", "store 'abc' at 5000 through the mapping", "f", "times"):
        "a store through a shared mapping reaches a FUSE file system when "
        "the page is written back, so mtime and ctime move at msync",
    ("mmap_shared", "msync", "f", "times"):
        "the write-back at msync moves mtime and ctime (see above)",
}


def run_scenario(base, ident, name, fn, uid, gid, on_hang=None, base_b=None):
    """Run one scenario in a child (as root or uid:gid) in base/ident/name;
    return its list of step records. A child that has not finished after
    CHILD_LIMIT seconds is reported with where it is stuck, killed, and
    on_hang() is called (to abort a hung mount). |base_b| is the same
    directory as |base| seen from host B (default: |base| itself)."""
    root = os.path.join(base, ident, name)
    root_b = os.path.join(base_b or base, ident, name)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(s, signal.SIG_DFL)    # never mstlib's cleanup here

        def emit(rec):
            os.write(w, (json.dumps(rec) + "\n").encode())
        try:
            # Even the set-up touches the directory under test: it runs
            # here, under the time limit, not in the parent.
            try:
                os.mkdir(root, 0o755)
                os.chmod(root, 0o755)
                if ident == "user":
                    os.chown(root, uid, gid)
                setup = posix_cases.SETUP.get(name)
                if setup:
                    setup(root, uid, gid)
            except OSError as e:
                emit({"n": -1, "step": "scenario set-up (as root)",
                      "result": "%s" % e, "objs": {}})
                os._exit(0)
            if ident == "user":
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            os.umask(0o022)
            os.chdir("/")
            fn(posix_cases.Ctx(root, emit, root_b))
        except BaseException as e:  # the scenario itself broke: report it
            emit({"n": -1, "step": "scenario aborted",
                  "result": "%s: %s" % (type(e).__name__, e), "objs": {}})
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + CHILD_LIMIT
    hung = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            hung = dovelib.stuck_in(pid)
            os.kill(pid, signal.SIGKILL)
            if on_hang:
                on_hang()
            break
        b = os.read(r, 65536)
        if not b:
            break
        data += b
    os.close(r)
    _, status = os.waitpid(pid, 0)
    recs = [json.loads(l) for l in data.decode().splitlines() if l.strip()]
    if hung:
        recs.append({"n": -1, "step": "child process",
                     "result": "hung for %ds after %d steps: %s" % (
                         CHILD_LIMIT, len(recs), hung), "objs": {}})
    elif status != 0:
        recs.append({"n": -1, "step": "child process",
                     "result": "died with wait status %#x (signal %d) after %d steps"
                     % (status, status & 0x7f, len(recs)), "objs": {}})
    return recs


def describe(o):
    if not o:
        return "(not recorded)"
    if "exists" in o:
        return o["exists"]
    return " ".join("%s %s" % (k, o[k]) for k in ("kind", "mode", "nlink", "size", "uid", "gid")
                    if k in o)


def compare(got, want, ref_name, scenario="", known=None):
    """Differences between two runs of one scenario, one line each. A
    state that stays wrong (a size, an nlink) is reported at the first
    step that shows it, not again at every later step; a return value or
    a set of changed timestamps is reported at every step. Differences
    listed in KNOWN go to |known| instead."""
    diffs = []
    seen = set()
    repeats = 0
    for i in range(max(len(got), len(want))):
        if i >= len(got):
            w = want[i]
            diffs.append("step %d %s: not run (the run under test stopped after "
                         "%d steps); want %s (%s)" % (w["n"], w["step"], len(got),
                                                     w["result"], ref_name))
            break
        g = got[i]
        if i >= len(want):
            diffs.append("step %d %s: got %s, the %s run had no such step" % (
                g["n"], g["step"], g["result"], ref_name))
            break
        w = want[i]
        label = "step %d %s" % (w["n"], w["step"])
        if g["n"] == -1:
            diffs.append("%s: not run: %s: %s" % (label, g["step"], g["result"]))
            break
        if g["step"] != w["step"]:
            diffs.append("%s: runs diverged, got step %r" % (label, g["step"]))
            break
        if g["result"] != w["result"]:
            diffs.append("%s: got %s, want %s (%s)" % (label, g["result"],
                                                      w["result"], ref_name))
        for obj in w["objs"]:
            go, wo = g["objs"].get(obj, {}), w["objs"][obj]
            if ("exists" in go) != ("exists" in wo):
                key = (obj, "exists", describe(go), describe(wo))
                if key in seen:
                    repeats += 1
                    continue
                seen.add(key)
                diffs.append("%s: %s got %s, want %s (%s)" % (
                    label, obj, describe(go), describe(wo), ref_name))
                continue
            for k in list(wo) + [k for k in go if k not in wo]:
                gv, wv = go.get(k, "(none)"), wo.get(k, "(none)")
                if gv == wv:
                    continue
                if k != "times":
                    if (obj, k, gv, wv) in seen:
                        repeats += 1
                        continue
                    seen.add((obj, k, gv, wv))
                    diffs.append("%s: %s %s got %s, want %s (%s)" % (
                        label, obj, k, gv, wv, ref_name))
                else:
                    line = "%s: %s changed times got %s, want %s (%s)" % (
                        label, obj, gv, wv, ref_name)
                    why = KNOWN.get((scenario, w["step"], obj, k))
                    if why is not None and known is not None:
                        known.append("%s -- %s" % (line, why))
                    else:
                        diffs.append(line)
    if repeats:
        diffs.append("(%d later steps showed the same wrong state again)" % repeats)
    return diffs


def noatime_bind(path):
    """Make |path| a noatime bind mount of itself (unmounted at exit);
    returns the reference's name for the report."""
    import subprocess
    r = subprocess.run(["mount", "--bind", path, path], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("mount --bind %s: %s" % (path, r.stderr.decode()))
    import atexit
    # Registered after mstlib's cleanup, so it runs before it (atexit is
    # last in, first out): unmounted before the directory is removed.
    atexit.register(subprocess.run, ["umount", "-l", path], check=False)
    r = subprocess.run(["mount", "-o", "remount,bind,noatime", path],
                       capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("remount noatime %s: %s" % (path, r.stderr.decode()))
    return "local disk, noatime"


def make_base(path, uid, gid):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for ident in ("root", "user"):
        d = os.path.join(path, ident)
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mstore", action="store_true",
                    help="test a directory on a mount of a private mstored")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--show", action="store_true",
                    help="print every step of both runs")
    args = ap.parse_args()
    args.mstore = args.mstore or os.environ.get("MST_TARGET") == "mstore"
    uid, gid = dovelib.mail_ids()
    ref = mstlib.tmpdir("mst-posix-ref-")
    ref_name = "local disk"
    if args.mstore:
        # The mount keeps access times as a local file system mounted
        # noatime does (reads served from the kernel's page cache never
        # reach a FUSE file system): compare with exactly that.
        ref_name = noatime_bind(ref)
    store = None
    mounts = []         # mount A (the directory under test), mount B
    made = []
    if args.mstore:
        try:
            store = mstlib.Store().start()
            for _ in range(2):
                mounts.append(mstlib.Mount(store.addr, "allow_other").start())
        except Exception as e:
            print("FAIL posix.setup: cannot start mstored and two mounts: %s" % e)
            print("posix: 0 passed, 1 failed")
            mstlib.cleanup()
            return 1
        test = mounts[0].path("posix")
        test_b = mounts[1].path("posix")
        conns = [dovelib.fuse_conn(x.mnt) for x in mounts]
        where = "mount.mstore %s (host B: a second mount, %s)" % (test, test_b)
    elif os.environ.get("POSIX_DIR"):
        test = tempfile.mkdtemp(prefix="mst-posix-", dir=os.environ["POSIX_DIR"])
        made.append(test)
        test_b = test
        where = test
    else:
        test = test_b = mstlib.tmpdir("mst-posix-test-")
        where = "a second local-disk directory %s" % test
    print("posix: %s against %s %s, as root and as %s (uid %d)" % (
        where, ref_name, ref, dovelib.MAIL_USER, uid), flush=True)
    passed = failed = 0
    results = {}
    hang = []

    def on_hang():
        """A mount hangs: note the mounts' blocked threads, abort their
        FUSE connections so the stuck child can be reaped."""
        hang.append("; ".join(t for x in mounts for t in dovelib.blocked_threads(x.proc.pid))
                    or "(none)")
        for c in conns:
            dovelib.fuse_abort(c)
    try:
        make_base(ref, uid, gid)
        make_base(test, uid, gid)
    except OSError as e:
        print("FAIL posix.setup: cannot prepare %s: %s" % (test, e))
        failed += 1
    cases = posix_cases.SCENARIOS
    if args.only:
        keep = args.only.split(",")
        cases = [c for c in cases if c[0] in keep]
    skipped = 0
    for name, fn in cases if not failed else ():
        why = mstlib.not_run("posix." + name) if args.mstore else None
        if why:
            for ident in ("root", "user"):
                skipped += 1
                print("SKIP posix.%s[%s]: not run on the %s back-end: %s" % (
                    name, ident, mstlib.BACKEND, why), flush=True)
            continue
        for ident in ("root", "user"):
            t0 = time.monotonic()
            want = run_scenario(ref, ident, name, fn, uid, gid)
            got = run_scenario(test, ident, name, fn, uid, gid,
                               on_hang=on_hang if mounts else None, base_b=test_b)
            if args.show:
                for g, w in zip(got, want):
                    print("  %s[%s] %d %s: %s | %s" % (name, ident, w["n"], w["step"],
                                                     g["result"], w["result"]))
            known = []
            diffs = compare(got, want, ref_name, name, known)
            for k in known:
                print("    known %s[%s] %s" % (name, ident, k))
            for d in diffs:
                if re.match(r"step \d+ [^:]*: got ", d):
                    where = results.setdefault(re.sub(r"^step \d+ ", "", d), [])
                    if "%s[%s]" % (name, ident) not in where:
                        where.append("%s[%s]" % (name, ident))
            if diffs:
                failed += 1
                print("FAIL posix.%s[%s]: %d difference(s) in %d steps" % (
                    name, ident, len(diffs), len(want)), flush=True)
                for d in diffs:
                    print("    %s[%s] %s" % (name, ident, d))
            else:
                passed += 1
                print("PASS posix.%s[%s] (%d steps, %.2fs)" % (
                    name, ident, len(want), time.monotonic() - t0), flush=True)
            if hang:
                # A mount hangs: its connection was aborted; start both again.
                print("    the mount hung; blocked threads: %s; the FUSE "
                      "connections were aborted and the mounts started again" % hang[0])
                for i, x in enumerate(mounts):
                    x.unmount()
                    mounts[i] = mstlib.Mount(store.addr, "allow_other", mnt=x.mnt).start()
                    conns[i] = dovelib.fuse_conn(x.mnt)
                del hang[:]
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
    for x in mounts:
        x.unmount()
    if store:
        store.stop()
    if results:
        print("posix: wrong return values and errnos (the first thing to fix):")
        for what, where in results.items():
            print("    %s  [%s]" % (what, " ".join(where)))
    print("posix: %d passed, %d failed%s" % (
        passed, failed, ", %d skipped" % skipped if skipped else ""))
    mstlib.cleanup()
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
