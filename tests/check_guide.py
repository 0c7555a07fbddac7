#!/usr/bin/env python3
"""check_guide.py - the operator's guide, man/mstore.7, run as written.

The page marks each command block (.EX/.EE) with a comment line before it:
  .\\" guide: build    run in a copy of the source tree (builds the packages)
  .\\" guide: run      run in the sandbox; must exit 0
  .\\" guide: retry    the same, tried again for up to RETRY_SECONDS
  .\\" guide: output   what a command printed: not run
and each path under FILES that the packages install with
  .\\" guide: file

Without arguments (make check, a few seconds): the page renders without
groff warnings, every command block is marked, no block is empty, and
every marked file is installed by a package of debian/ (its .install and
.examples files, or a maintainer script that makes it).

With --full (make check-guide, root, about three minutes): copies the
source tree to a temporary directory and runs the build blocks there
(dpkg-buildpackage), runs lintian on the result when it is installed
(errors fail), then runs every run and retry block in order, as root, in a
sandbox: a child "unshare --mount --net --pid --fork" in which /etc, /usr,
/var, /srv and /mnt are overlays over the real ones (writes go to
temporary directories, thrown away), /run is an empty tmpfs and the
network is a private loopback. So the packages really install, start,
upgrade and purge; Postfix and Dovecot run with their Debian
configuration on that namespace's own 127.0.0.1, and everything started
there dies with its PID namespace. 10.0.0.5 in a block becomes 127.0.0.1.
systemd is not PID 1, so a "systemctl" script first on PATH runs what the
units say (mstored units: State/Runtime/LogsDirectory, then ExecStart as
User= with no_new_privs, as tests/check_units.sh does; postfix and
dovecot: what their Debian units run), and "apt-get update" does nothing
(no network there; the dependencies are installed). After each block the
marked files are looked for: each must have existed while the packages
were installed, and none may be left after the page's purge.

--debs DIR skips the build and uses the packages in DIR; --keep keeps the
temporary directory. Exit status 0 passed, 1 failed, 77 skipped (--full
when not root or without unshare), 99 setup error.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ME = "check_guide"
SRCDIR = os.environ.get("srcdir") or os.path.join(os.path.dirname(
    os.path.abspath(__file__)), "..")
SRCDIR = os.path.abspath(SRCDIR)
PAGE = os.path.join(SRCDIR, "man", "mstore.7")
KINDS = ("build", "run", "retry", "output")
RETRY_SECONDS = 30
BLOCK_TIMEOUT = 300
BUILD_TIMEOUT = 1800
STORE_ADDR = "10.0.0.5"
OVERLAID = ("/etc", "/usr", "/var", "/srv", "/mnt")


def fail(msg, status=1):
    print("%s: %s" % (ME, msg), file=sys.stderr)
    sys.exit(status)


# --- the page ---

def unroff(line):
    """A line of an .EX block as the reader sees it."""
    out = line
    for a, b in ((r"\(aq", "'"), (r"\(dq", '"'), (r"\(ti", "~"),
                 (r"\(ha", "^"), (r"\(ga", "`"), (r"\-", "-"), (r"\&", ""),
                 (r"\e", "\\")):
        out = out.replace(a, b)
    return out


def parse_page(path):
    """([(kind, line number, [command lines])], [file paths], problems)"""
    blocks, files, problems = [], [], []
    with open(path) as f:
        lines = f.read().split("\n")
    mark = None
    file_mark = False
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = re.match(r'^\.\\"\s*guide:\s*(\S+)\s*$', ln)
        if m:
            if m.group(1) == "file":
                file_mark = True
            elif m.group(1) in KINDS:
                mark = (m.group(1), i + 1)
            else:
                problems.append("%s:%d: unknown mark 'guide: %s'" % (
                    path, i + 1, m.group(1)))
            i += 1
            continue
        if file_mark and ln.startswith(".I "):
            files.append(ln[3:].strip().replace(r"\-", "-"))
            file_mark = False
        if ln.startswith(".EX"):
            start = i + 1
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith(".EE"):
                body.append(unroff(lines[i]))
                i += 1
            if mark is None:
                problems.append("%s:%d: a command block without a "
                                "'.\\\" guide: KIND' line before it" % (
                                    path, start))
            elif not any(b.strip() for b in body):
                problems.append("%s:%d: an empty command block" % (
                    path, start))
            else:
                blocks.append((mark[0], start, body))
            mark = None
        i += 1
    return blocks, files, problems


def render_problems(path):
    problems = []
    for dev in ("utf8", "ascii"):
        r = subprocess.run(["groff", "-t", "-man", "-T" + dev, "-ww", "-z",
                            path], capture_output=True, text=True)
        if r.returncode != 0 or r.stderr:
            problems.append("%s: groff -T%s -ww says: %s" % (
                path, dev, r.stderr.strip()))
    r = subprocess.run(["man", "-l", path], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80"))
    if r.returncode != 0 or r.stderr:
        problems.append("%s: man -l says: %s" % (path, r.stderr.strip()))
    return problems


def packaged_paths():
    """Every absolute path that debian/ installs or makes."""
    deb = os.path.join(SRCDIR, "debian")
    paths = set()
    for f in glob.glob(os.path.join(deb, "*.install")):
        for ln in open(f):
            w = ln.split()
            if not w or w[0].startswith("#"):
                continue
            if len(w) == 1:
                paths.add("/" + w[0])
            else:
                paths.add("/%s/%s" % (w[1].strip("/"), os.path.basename(w[0])))
    for f in glob.glob(os.path.join(deb, "*.examples")):
        pkg = os.path.basename(f)[:-len(".examples")]
        for ln in open(f):
            w = ln.split()
            if w and not w[0].startswith("#"):
                paths.add("/usr/share/doc/%s/examples/%s" % (
                    pkg, os.path.basename(w[0])))
    made = ""
    for f in glob.glob(os.path.join(deb, "*.postinst")):
        made += open(f).read()
    return paths, made


def static_check():
    problems = []
    if not os.path.exists(PAGE):
        fail("%s missing" % PAGE, 99)
    blocks, files, p = parse_page(PAGE)
    problems += p
    problems += render_problems(PAGE)
    kinds = [b[0] for b in blocks]
    for k in ("build", "run", "retry"):
        if k not in kinds:
            problems.append("%s: no '%s' block" % (PAGE, k))
    paths, made = packaged_paths()
    for f in files:
        if f not in paths and f not in made:
            problems.append("%s: FILES names %s, which no package of "
                            "debian/ installs or makes" % (PAGE, f))
    if not files:
        problems.append("%s: no '.\\\" guide: file' paths under FILES" % PAGE)
    for f in ("control", "rules", "changelog"):
        if not os.path.exists(os.path.join(SRCDIR, "debian", f)):
            problems.append("debian/%s missing" % f)
    return blocks, files, problems


# --- the sandbox (inside unshare) ---

SYSTEMCTL = r'''#!/usr/bin/env python3
# systemctl for check_guide.py's sandbox, where systemd is not PID 1: runs
# what the units say. See tests/check_guide.py.
import os, pwd, grp, shlex, signal, subprocess, sys, time
STATE = os.environ["GUIDE_STATE"]
ACTIONS = ("daemon-reload", "enable", "disable", "start", "stop", "restart",
           "reload", "try-restart", "is-active", "status")

def unit_file(unit):
    name = unit
    inst = None
    if "@" in unit:
        base, rest = unit.split("@", 1)
        inst = rest[:-len(".service")]
        name = base + "@.service"
    for d in ("/etc/systemd/system", "/lib/systemd/system"):
        for n in (unit, name):
            p = os.path.join(d, n)
            if os.path.exists(p):
                return p, inst
    sys.exit("systemctl (guide sandbox): no unit file for %s" % unit)

def parse(path, inst):
    kv = {}
    for ln in open(path):
        ln = ln.strip()
        if not ln or ln[0] in "#;[" or "=" not in ln:
            continue
        k, v = ln.split("=", 1)
        if inst is not None:
            v = v.replace("%i", inst)
        kv.setdefault(k, []).append(v)
    return kv

def pidfile(unit):
    return os.path.join(STATE, unit + ".pid")

def running(unit):
    try:
        pid = int(open(pidfile(unit)).read())
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return None
        return pid
    except (OSError, ValueError):
        return None

def mstored(action, unit):
    path, inst = unit_file(unit)
    kv = parse(path, inst)
    user = kv["User"][0]
    group = kv.get("Group", [user])[0]
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    if action in ("stop", "restart"):
        pid = running(unit)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not running(unit):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for d in kv.get("RuntimeDirectory", []):
            subprocess.run(["rm", "-rf", os.path.join("/run", d)])
    if action in ("start", "restart"):
        if running(unit):
            return 0
        for key, root, mkey in (("StateDirectory", "/var/lib", "StateDirectoryMode"),
                                ("RuntimeDirectory", "/run", None),
                                ("LogsDirectory", "/var/log", None)):
            for d in kv.get(key, []):
                p = os.path.join(root, d)
                os.makedirs(p, exist_ok=True)
                os.chown(p, uid, gid)
                os.chmod(p, int(kv[mkey][0], 8) if mkey and mkey in kv else 0o755)
        argv = shlex.split(kv["ExecStart"][0])
        log = open(os.path.join(STATE, unit + ".log"), "ab")
        um = int(kv.get("UMask", ["0022"])[0], 8)
        p = subprocess.Popen(["setpriv", "--reuid", str(uid), "--regid", str(gid),
                              "--clear-groups", "--no-new-privs"] + argv,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, cwd="/",
                             preexec_fn=lambda: os.umask(um))
        open(pidfile(unit), "w").write(str(p.pid))
    if action == "reload":
        pid = running(unit)
        if pid:
            os.kill(pid, signal.SIGHUP)
    if action in ("is-active", "status"):
        return 0 if running(unit) else 3
    return 0

def run(argv):
    return subprocess.run(argv).returncode

def postfix(action):
    up = subprocess.run(["postfix", "status"], capture_output=True).returncode == 0
    rc = 0
    if action in ("stop", "restart") and up:
        rc = run(["postmulti", "-i", "-", "-p", "stop"])
    if action in ("start", "restart") and (action == "restart" or not up):
        rc = run(["/usr/lib/postfix/configure-instance.sh", "-"]) or \
            run(["postmulti", "-i", "-", "-p", "start"])
    if action == "reload" and up:
        rc = run(["postmulti", "-i", "-", "-p", "reload"])
    if action in ("is-active", "status"):
        rc = 0 if up else 3
    return rc

def dovecot(action):
    pidf = "/run/dovecot/master.pid"
    def pid():
        try:
            p = int(open(pidf).read().split()[0])
            os.kill(p, 0)
            return p
        except (OSError, ValueError, IndexError):
            return None
    rc = 0
    if action in ("stop", "restart") and pid():
        p = pid()
        run(["doveadm", "stop"])
        for _ in range(200):
            try:
                os.kill(p, 0)
            except OSError:
                break
            time.sleep(0.1)
    if action in ("start", "restart") and not pid():
        rc = run(["dovecot"])
    if action == "reload" and pid():
        rc = run(["doveadm", "reload"])
    if action in ("is-active", "status"):
        rc = 0 if pid() else 3
    return rc

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    now = "--now" in sys.argv
    if not args or args[0] not in ACTIONS:
        sys.exit("systemctl (guide sandbox): not handled: %s" % " ".join(sys.argv[1:]))
    action, units = args[0], args[1:]
    if action == "daemon-reload":
        return 0
    if action in ("enable", "disable"):
        if not now:
            return 0
        action = "start" if action == "enable" else "stop"
    rc = 0
    for u in units:
        if "." not in u:
            u += ".service"
        if u.startswith("mstored"):
            r = mstored(action, u)
        elif u == "postfix.service":
            r = postfix(action)
        elif u == "dovecot.service":
            r = dovecot(action)
        else:
            sys.exit("systemctl (guide sandbox): unit %s not handled" % u)
        rc = rc or r
    return rc

sys.exit(main())
'''

APT_GET = r'''#!/bin/sh
# apt-get for check_guide.py's sandbox: "update" needs the network, which
# the sandbox does not have; everything else is the real apt-get.
for a in "$@"; do
	[ "$a" = update ] && { echo "apt-get update: skipped in the guide sandbox"; exit 0; }
done
exec /usr/bin/apt-get "$@"
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, **kw)


def inner(state):
    """PID 1 of the sandbox's namespaces: reaps every orphan (the daemons
    that the blocks start end up its children) while its child runs the
    guide; when that child is done, PID 1 exits and the kernel kills
    whatever is left in the namespace."""
    worker = os.fork()
    if worker == 0:
        try:
            os._exit(run_blocks(state))
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(99)
    while True:
        pid, status = os.wait()
        if pid == worker:
            return os.waitstatus_to_exitcode(status) or 0


def run_blocks(state):
    """Set the sandbox up and run the blocks, in order."""
    import json
    spec = json.load(open(os.path.join(state, "spec.json")))
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    for d in OVERLAID:
        name = d.strip("/")
        up = os.path.join(state, "ov", name, "upper")
        wk = os.path.join(state, "ov", name, "work")
        os.makedirs(up)
        os.makedirs(wk)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=%s,upperdir=%s,workdir=%s" % (d, up, wk), d],
                       check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"],
                   check=True)
    os.makedirs("/run/lock", mode=0o1777)
    os.chmod("/run/lock", 0o1777)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    shim = os.path.join(state, "shim")
    os.makedirs(shim)
    for name, text in (("systemctl", SYSTEMCTL), ("apt-get", APT_GET)):
        p = os.path.join(shim, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o755)
    units = os.path.join(state, "units")
    os.makedirs(units)
    # What Debian's packages make on a fresh machine, where this one's
    # were installed without: Postfix's "Internet Site" main.cf, Dovecot's
    # self-signed certificate.
    if not os.path.exists("/etc/postfix/main.cf"):
        shutil.copy("/usr/share/postfix/main.cf.debian", "/etc/postfix/main.cf")
        sh("postconf -e myhostname=mx.example.org 'mydestination=$myhostname, localhost' "
           "alias_maps=hash:/etc/aliases alias_database=hash:/etc/aliases "
           "mynetworks=127.0.0.0/8 inet_interfaces=all", check=True)
        if not os.path.exists("/etc/aliases"):
            open("/etc/aliases", "w").write("postmaster: root\n")
        sh("newaliases", check=True)
    if not os.path.exists("/etc/dovecot/private/dovecot.pem"):
        sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
           "-nodes -days 2 -subj /CN=imap.example.org "
           "-keyout /etc/dovecot/private/dovecot.key "
           "-out /etc/dovecot/private/dovecot.pem 2>/dev/null", check=True)
    # Not Debian's default, only quicker: man-db's trigger would rebuild
    # the whole man index after each dpkg run.
    if os.path.exists("/var/lib/man-db/auto-update"):
        os.unlink("/var/lib/man-db/auto-update")
    env = dict(os.environ, PATH=shim + ":/usr/sbin:/usr/bin:/sbin:/bin",
               GUIDE_STATE=units, DEBIAN_FRONTEND="noninteractive",
               LC_ALL="C.UTF-8")
    files = spec["files"]
    seen = set()

    verified = []

    def look():
        for f in files:
            if os.path.exists(f):
                seen.add(f)
        # The units as the package installed them, once: systemd-analyze
        # verify, as tests/check_units.sh does for the build's.
        unit = "/lib/systemd/system/mstored.service"
        if verified or not os.path.exists(unit) or \
                not shutil.which("systemd-analyze"):
            return
        d = os.path.join(state, "verify")
        os.makedirs(d)
        shutil.copy(unit, d)
        shutil.copy("/lib/systemd/system/mstored@.service",
                    os.path.join(d, "mstored@b.service"))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                            "./mstored.service", "./mstored@b.service"],
                           cwd=d, capture_output=True, text=True)
        verified.append((r.returncode, (r.stdout + r.stderr).strip()))

    def logs():
        out = []
        for p in sorted(glob.glob(os.path.join(units, "*.log"))) + \
                ["/var/log/mail.log", "/var/log/dovecot.log"]:
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    tail = f.readlines()[-15:]
                out.append("--- %s (last lines)\n%s" % (p, "".join(tail)))
        r = subprocess.run(["postqueue", "-p"], capture_output=True, text=True)
        out.append("--- postqueue -p\n" + r.stdout + r.stderr)
        return "\n".join(out)

    t_all = time.monotonic()
    for n, (kind, lineno, body) in enumerate(spec["blocks"], 1):
        text = "\n".join(body).replace(STORE_ADDR, "127.0.0.1") + "\n"
        script = os.path.join(state, "block%02d.sh" % n)
        with open(script, "w") as f:
            f.write(text)
        deadline = time.monotonic() + (RETRY_SECONDS if kind == "retry" else 0)
        t0 = time.monotonic()
        tries = 0
        while True:
            tries += 1
            # Output to a file, not a pipe: daemons that a block starts
            # (dovecot) keep the descriptors they inherit.
            outf = script + ".out"
            with open(outf, "w") as of:
                p = subprocess.Popen(["sh", "-e", "-x", script], env=env,
                                     cwd=spec["debs"], stdin=subprocess.DEVNULL,
                                     stdout=of, stderr=subprocess.STDOUT)
                try:
                    rc = p.wait(timeout=BLOCK_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    rc = "timeout after %d s" % BLOCK_TIMEOUT
            with open(outf, errors="replace") as of:
                out = of.read()
            if rc == 0 or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        look()
        took = time.monotonic() - t0
        if rc != 0:
            print("%s: block %d (mstore.7 line %d, %s) failed (exit %s, "
                  "%d tries, %.1f s):\n%s\n--- its output\n%s\n%s" % (
                      ME, n, lineno, kind, rc, tries, took, text,
                      out[-6000:], logs()), flush=True)
            return 1
        print("%s: block %d (line %d, %s) ok in %.1f s%s" % (
            ME, n, lineno, kind, took,
            " after %d tries" % tries if tries > 1 else ""), flush=True)
    if verified:
        rc, out = verified[0]
        if rc != 0 or out:
            print("%s: systemd-analyze verify of the installed units (exit "
                  "%d) says:\n%s" % (ME, rc, out))
            return 1
        print("%s: the installed units pass systemd-analyze verify" % ME)
    elif shutil.which("systemd-analyze"):
        print("%s: /lib/systemd/system/mstored.service was never installed" % ME)
        return 1
    missing = [f for f in files if f not in seen]
    left = [f for f in files if os.path.exists(f)]
    if missing or left:
        for f in missing:
            print("%s: FILES names %s, which was never there" % (ME, f))
        for f in left:
            print("%s: %s is still there after the purge" % (ME, f))
        return 1
    print("%s: %d blocks ran in %.0f s; the %d files of FILES were there "
          "while installed and are gone after the purge" % (
              ME, len(spec["blocks"]), time.monotonic() - t_all, len(files)),
          flush=True)
    return 0


# --- the full run, outside ---

def copy_tree(dst):
    """The source tree without build directories, VCS and caches."""
    os.makedirs(dst)
    ex = ["--exclude=./.git", "--exclude=./build-*", "--exclude=./autom4te.cache",
          "--exclude=__pycache__", "--exclude=./debian/.debhelper",
          "--exclude=./debian/tmp"]
    r = subprocess.run("tar -C %s %s -cf - . | tar -C %s -xf -" % (
        SRCDIR, " ".join(ex), dst), shell=True)
    if r.returncode != 0:
        fail("copying %s failed" % SRCDIR, 99)


def full(args, blocks, files):
    if os.geteuid() != 0:
        print("%s: SKIP: --full runs the guide as root (packages, mounts, "
              "Postfix)" % ME)
        return 77
    for prog in ("unshare", "dpkg-buildpackage", "postfix", "dovecot",
                 "curl", "groff"):
        if shutil.which(prog) is None and not (
                prog == "dovecot" and os.path.exists("/usr/sbin/dovecot")):
            print("%s: SKIP: %s is missing (tools/install-deps)" % (ME, prog))
            return 77
    tmp = tempfile.mkdtemp(prefix="mst-guide-")
    os.chmod(tmp, 0o755)
    try:
        t0 = time.monotonic()
        if args.debs:
            debs = os.path.abspath(args.debs)
        else:
            src = os.path.join(tmp, "pkg", "src")
            copy_tree(src)
            debs = os.path.dirname(src)
            env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=%d" % (
                os.cpu_count() or 2))
            for kind, lineno, body in blocks:
                if kind != "build":
                    continue
                log = os.path.join(tmp, "build.log")
                with open(log, "w") as lf:
                    try:
                        r = subprocess.run(["sh", "-e", "-x", "-c",
                                            "\n".join(body)], cwd=src, env=env,
                                           stdout=lf, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL,
                                           timeout=BUILD_TIMEOUT)
                        rc = r.returncode
                    except subprocess.TimeoutExpired:
                        rc = "timeout"
                if rc != 0:
                    print(open(log, errors="replace").read()[-8000:])
                    fail("the build block at mstore.7 line %d failed (exit %s)"
                         % (lineno, rc))
            print("%s: packages built in %.0f s: %s" % (
                ME, time.monotonic() - t0, " ".join(
                    sorted(os.path.basename(p) for p in
                           glob.glob(os.path.join(debs, "*.deb"))))), flush=True)
            if shutil.which("lintian"):
                changes = glob.glob(os.path.join(debs, "*.changes"))
                r = subprocess.run(["lintian", "--fail-on", "error"] + changes,
                                   capture_output=True, text=True, timeout=600)
                print(r.stdout + r.stderr, end="")
                if r.returncode != 0:
                    fail("lintian found errors in the packages")
                print("%s: lintian: no errors, %d warnings" % (
                    ME, sum(1 for ln in r.stdout.splitlines()
                            if ln.startswith("W: "))), flush=True)
            else:
                print("%s: lintian not installed: not run" % ME)
        for p in ("mstore-server", "mstore-client", "mstore-tools"):
            if not glob.glob(os.path.join(debs, p + "_*.deb")):
                fail("no %s package in %s" % (p, debs))
        import json
        state = os.path.join(tmp, "sandbox")
        os.makedirs(state)
        with open(os.path.join(state, "spec.json"), "w") as f:
            json.dump({"blocks": [b for b in blocks if b[0] in ("run", "retry")],
                       "files": files, "debs": debs}, f)
        p = subprocess.Popen(["unshare", "--mount", "--net", "--pid", "--fork",
                              "--mount-proc", sys.executable,
                              os.path.abspath(__file__), "--inner", state],
                             start_new_session=True)
        try:
            rc = p.wait(timeout=1500)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            fail("the sandbox run took more than 1500 s")
        if rc != 0:
            fail("the guide failed in the sandbox (exit %d)" % rc)
        print("%s: passed in %.0f s" % (ME, time.monotonic() - t0))
        return 0
    finally:
        if args.keep:
            print("%s: kept %s" % (ME, tmp))
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(
        description="Check the operator's guide man/mstore.7: statically "
        "(default), or by running it (--full).")
    ap.add_argument("--full", action="store_true",
                    help="build the packages and run every block (root)")
    ap.add_argument("--debs", metavar="DIR",
                    help="with --full: use the packages in DIR, build none")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory")
    ap.add_argument("--inner", metavar="STATE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args.inner)
    blocks, files, problems = static_check()
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        fail("FAIL: %d problem(s)" % len(problems))
    print("%s: the page renders cleanly; %d command blocks (%s), all marked; "
          "the %d files of FILES are in debian/" % (
              ME, len(blocks), ", ".join(
                  "%d %s" % (sum(1 for b in blocks if b[0] == k), k)
                  for k in KINDS if any(b[0] == k for b in blocks)),
              len(files)))
    if not args.full:
        return 0
    return full(args, blocks, files)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
