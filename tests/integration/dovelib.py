"""dovelib - private Dovecot instances for integration tests.

Each Dovecot(root, uid, gid, name) has its own configuration, base_dir,
state_dir and log under a private temporary directory, listens for IMAP
and POP3 on free ports of 127.0.0.1 only, and serves the users user1..
userN (password "pw") from Maildirs root/userN with Dovecot's default
settings otherwise: indexes and dovecot-uidlist beside the Maildir,
mmap on, lock_method fcntl, mail_fsync optimized. The master runs in the
foreground as our child; it is stopped by its PID (the one in
base_dir/master.pid) at exit, before mstlib unmounts anything. Nothing is
ever killed by name.

lda() runs dovecot-lda for one message as the mail uid (privileges are
dropped in the child). errors() returns the log lines a test must not
see: errors, panics, fatals, corruption and index rebuilds.
"""
import atexit
import imaplib
import os
import poplib
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

DOVECOT = os.environ.get("DOVECOT") or "/usr/sbin/dovecot"
LDA = os.environ.get("DOVECOT_LDA") or "/usr/lib/dovecot/dovecot-lda"
MAIL_USER = "mstmail"
PASSWORD = "pw"

_instances = []

# Log lines that mean Dovecot found something wrong with the files it
# keeps: errors, panics, fatals, "Corrupted transaction log", "fscking
# index file", "rebuilding indexes", and the Maildir warnings that say
# the uidlist and the directory disagree ("Expunged message reappeared",
# "Duplicate file entry", "inconsistency"). Whole words only where a
# random session id (<FscKj...>, 22 base64 characters) could hold them.
_BAD = re.compile(r"Error:|Panic:|Fatal:|corrupt|\bfsck(ing|ed)?\b|rebuild|"
                  r"Warning:.*(reappear|duplicate|inconsisten|lost|desync|"
                  r"broken|mismatch)", re.I)


def have_dovecot():
    return os.access(DOVECOT, os.X_OK) and os.access(LDA, os.X_OK)


def mail_ids():
    """uid and gid of the unprivileged mail user, created as a system
    user (no home, no shell) the first time."""
    # Another test of the suite (make -j) may be creating it at the same
    # moment: useradd then fails (the user exists, or /etc/passwd is
    # locked), so look again, for up to 10 s.
    rc = None
    for _ in range(100):
        try:
            pw = pwd.getpwnam(MAIL_USER)
            break
        except KeyError:
            pass
        if rc is None or rc != 0:
            rc = subprocess.run(["useradd", "--system", "--user-group",
                                 "--no-create-home", "--home-dir",
                                 "/nonexistent", "--shell",
                                 "/usr/sbin/nologin", MAIL_USER]).returncode
            if rc == 0:
                continue
        time.sleep(0.1)
    else:
        raise RuntimeError("could not create the user %s (useradd exit %s)"
                           % (MAIL_USER, rc))
    return pw.pw_uid, pw.pw_gid


def drop_to(uid, gid):
    """A preexec_fn that makes the child uid:gid (groups cleared)."""
    def fn():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return fn


CONF = """\
# Private instance {name}: written by tests/integration/dovelib.py.
instance_name = {name}
base_dir = {base}
state_dir = {state}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:{root}/%u
mail_max_userip_connections = 50
login_trusted_networks = 127.0.0.0/8
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lda {{
  postmaster_address = postmaster@mstore.test
}}
"""



class PortTaken(RuntimeError):
    """Dovecot could not bind a port another program took meanwhile."""


def _read_from(path, offset):
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""

class Dovecot:
    """One private Dovecot serving Maildirs under |root| as uid:gid."""

    def __init__(self, root, uid, gid, name, users=8):
        self.root = root
        self.uid = uid
        self.gid = gid
        self.name = name
        self.dir = mstlib.tmpdir("mst-dovecot-%s-" % name)
        os.chmod(self.dir, 0o755)       # auth (user dovecot) reads the users
        self.base = os.path.join(self.dir, "run")
        self.state = os.path.join(self.dir, "state")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.users = os.path.join(self.dir, "users")
        self._pick_ports()
        self.proc = None
        self.pid = None
        for d in (self.base, self.state):
            os.makedirs(d, mode=0o755, exist_ok=True)
        # dovecot-lda runs as the mail uid and logs to the same file.
        with open(self.log, "a"):
            pass
        os.chown(self.log, uid, gid)
        os.chmod(self.log, 0o644)
        with open(self.users, "w") as f:
            for n in range(1, users + 1):
                user = "user%d" % n
                home = os.path.join(root, user)
                f.write("%s:{PLAIN}%s:%d:%d::%s::userdb_mail=maildir:%s\n" % (
                    user, PASSWORD, uid, gid, home, home))
        os.chmod(self.users, 0o644)
        self._write_conf()

    def _pick_ports(self):
        self.imap_port = mstlib.free_port()
        self.pop3_port = mstlib.free_port()
        while self.pop3_port == self.imap_port:
            self.pop3_port = mstlib.free_port()

    def _write_conf(self):
        with open(self.conf, "w") as f:
            f.write(CONF.format(name=self.name, base=self.base,
                                state=self.state, log=self.log, uid=self.uid,
                                gid=self.gid, root=self.root,
                                users=self.users, imap_port=self.imap_port,
                                pop3_port=self.pop3_port))
        os.chmod(self.conf, 0o644)

    def start(self, timeout=30):
        """Starts Dovecot and waits until it listens. The ports were free
        when they were picked; when another program took one before
        Dovecot bound it, new ones are picked, a few times."""
        for attempt in range(4):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == 3:
                    raise
                self._pick_ports()
                self._write_conf()

    def _start(self, timeout):
        out_path = os.path.join(self.dir, "dovecot.out")
        mark = (os.path.getsize(out_path) if os.path.exists(out_path)
                else 0, os.path.getsize(self.log))
        out = open(out_path, "a")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdout=out, stderr=subprocess.STDOUT)
        _instances.append(self)
        pidfile = os.path.join(self.base, "master.pid")

        def master_pid():
            # Dovecot creates master.pid before it writes the number.
            try:
                with open(pidfile) as f:
                    words = f.read().split()
            except FileNotFoundError:
                return None
            return int(words[0]) if words else None

        def up():
            if self.proc.poll() is not None:
                return True
            return (master_pid() is not None and
                    mstlib.can_connect(self.imap_port) and
                    mstlib.can_connect(self.pop3_port))
        mstlib.wait_until(up, timeout, "dovecot %s to listen" % self.name)
        if self.proc.poll() is not None:
            said = _read_from(out_path, mark[0]) + _read_from(self.log,
                                                              mark[1])
            if "Address already in use" in said:
                _instances.remove(self)
                raise PortTaken(said)
            raise RuntimeError("dovecot %s exited %d:\n%s%s" % (
                self.name, self.proc.returncode,
                open(out_path).read(), self.log_tail()))
        self.pid = master_pid()
        if self.pid != self.proc.pid:
            raise RuntimeError("dovecot %s: master.pid says %d, started %d" % (
                self.name, self.pid, self.proc.pid))
        return self

    def stop(self, timeout=20):
        """SIGTERM to the master (it stops its children), SIGKILL if it
        has not exited within |timeout|."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def lda(self, user, message, timeout=30):
        """Deliver |message| (bytes) to |user| with dovecot-lda as the mail
        uid. Returns (exit code, stderr text); 0 is delivered, 75 a
        temporary failure, None a dovecot-lda that did not finish in
        |timeout| seconds (the text then says where it was stuck)."""
        p = subprocess.Popen([LDA, "-c", self.conf, "-e", "-d", user,
                              "-f", "sender@mstore.test"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd="/",
                             preexec_fn=drop_to(self.uid, self.gid))
        try:
            _, err = p.communicate(message, timeout=timeout)
            return p.returncode, err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            where = stuck_in(p.pid)
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                where += "; SIGKILL did not end it"
            return None, "dovecot-lda (pid %d) hung for %ds: %s" % (
                p.pid, timeout, where)

    def lda_many(self, user, messages, parallel, stop_on_hang=True):
        """Deliver |messages| ({key: bytes}) with |parallel| dovecot-lda
        at a time; returns {key: (exit code, stderr)}. Once one hangs the
        rest are not started (key -> (None, "not started")). The worker
        threads are daemons, so a delivery stuck in the kernel cannot keep
        the test from ending."""
        todo = list(messages.items())
        out = {}
        lock = threading.Lock()
        hung = []

        def worker():
            while True:
                with lock:
                    if not todo or hung:
                        return
                    key, msg = todo.pop()
                rc, err = self.lda(user, msg)
                with lock:
                    out[key] = (rc, err)
                    if rc is None and stop_on_hang:
                        hung.append(key)
        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for key, _ in todo:
            out[key] = (None, "not started: an earlier dovecot-lda hung")
        return out

    def imap(self, user, timeout=30):
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=timeout)
        c.login(user, PASSWORD)
        return c

    def pop3(self, user, timeout=30):
        c = poplib.POP3("127.0.0.1", self.pop3_port, timeout=timeout)
        c.user(user)
        c.pass_(PASSWORD)
        return c

    def errors(self):
        """Every log line that is an error, a panic, a fatal, a report of
        corruption or an index fsck/rebuild."""
        try:
            with open(self.log, errors="replace") as f:
                return [l.rstrip("\n") for l in f if _BAD.search(l)]
        except FileNotFoundError:
            return []

    def log_tail(self, n=30):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no log)\n"


def error_classes(lines, roots=()):
    """Group log lines by their message with times, PIDs, session ids and
    numbers taken out: [(count, class, first example)], most frequent
    first, so a failure names each kind of problem once."""
    classes = {}
    for line in lines:
        msg = re.sub(r"^\w{3} \d+ [\d:]+ ", "", line)
        for i, r in enumerate(roots):
            msg = msg.replace(r, "ROOT%s" % "AB"[i] if len(roots) > 1 else "ROOT")
        key = re.sub(r"<[^>]*>", "", msg)
        key = re.sub(r"\d+", "N", key)
        key = re.sub(r"[0-9a-f]{8,}", "X", key)
        if key not in classes:
            classes[key] = [0, msg]
        classes[key][0] += 1
    return sorted(((n, k, ex) for k, (n, ex) in classes.items()),
                  key=lambda x: -x[0])


def stuck_in(pid):
    """Where a process waits in the kernel: its wchan and the top of its
    kernel stack (root can read /proc/PID/stack)."""
    try:
        with open("/proc/%d/wchan" % pid) as f:
            wchan = f.read().strip() or "-"
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "pid %d has exited" % pid
    try:
        with open("/proc/%d/stack" % pid) as f:
            frames = [l.split()[1].split("+")[0] for l in f if len(l.split()) > 1]
    except OSError:
        frames = []
    return "state %s, wchan %s, kernel stack %s" % (
        state, wchan, " < ".join(frames[:6]) or "(unreadable)")


def blocked_threads(pid):
    """stuck_in() of each thread of |pid| that sleeps uninterruptibly (D)."""
    out = []
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return out
    for tid in tids:
        where = stuck_in(tid)
        if where.startswith("state D"):
            out.append("thread %d: %s" % (tid, where))
    return out


FUSECTL = "/sys/fs/fuse/connections"


def fuse_conn(mnt):
    """The FUSE connection number of the mount at |mnt| (the minor device
    number of the file system)."""
    return os.minor(os.stat(mnt).st_dev)


def _fusectl():
    if not os.listdir(FUSECTL):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL],
                       check=False, capture_output=True)
    return os.path.isdir(FUSECTL)


def fuse_waiting(conn):
    """Requests of connection |conn| the daemon has not answered yet
    (None when it cannot be read)."""
    try:
        _fusectl()
        with open("%s/%d/waiting" % (FUSECTL, conn)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def fuse_abort(conn):
    """Abort FUSE connection |conn|: every waiting request fails with
    ENOTCONN, so processes stuck on a hung mount can end."""
    try:
        _fusectl()
        with open("%s/%d/abort" % (FUSECTL, conn), "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def stop_all():
    for d in reversed(_instances):
        d.stop()


atexit.register(stop_all)


def _on_signal(sig, frame):
    """Stop Dovecot before mstlib unmounts what it serves from."""
    stop_all()
    mstlib._on_signal(sig, frame)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


class Idler:
    """One IMAP connection in IDLE, read by raw socket (imaplib has no
    IDLE). wait_exists(n) waits for an untagged 'n EXISTS' with n at
    least the given count and returns the monotonic time it arrived."""

    def __init__(self, port, user, mailbox="INBOX", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.exists = 0
        self.exists_at = None
        self.tag = 0
        self.lines = []
        self._line()                        # greeting
        self._cmd('LOGIN %s "%s"' % (user, PASSWORD))
        self._cmd("SELECT %s" % mailbox)
        self.sock.sendall(b"I1 IDLE\r\n")
        while True:
            line = self._line()
            if line.startswith(b"+"):
                break
            if line.startswith(b"I1 "):
                raise RuntimeError("IDLE refused: %r" % line)

    def _line(self, deadline=None):
        while b"\r\n" not in self.buf:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("IMAP server closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.lines.append((time.monotonic(), line))
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            self.exists = int(m.group(1))
            self.exists_at = time.monotonic()
        return line

    def _cmd(self, cmd):
        self.tag += 1
        tag = b"C%d" % self.tag
        self.sock.sendall(tag + b" " + cmd.encode() + b"\r\n")
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%s: %r" % (cmd, line))
                return

    def wait_exists(self, n, timeout):
        """Time the EXISTS count reached |n|, or None after |timeout|."""
        deadline = time.monotonic() + timeout
        try:
            while self.exists < n:
                self._line(deadline)
        except socket.timeout:
            return None
        return self.exists_at

    def mark(self):
        """A position in the received lines, for wait_for()."""
        return len(self.lines)

    def wait_for(self, pattern, timeout, since):
        """Time the first line after position |since| that matches the
        regular expression |pattern| (bytes) arrived, or None after
        |timeout|."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        pos = since
        try:
            while True:
                while pos < len(self.lines):
                    at, line = self.lines[pos]
                    pos += 1
                    if rx.search(line):
                        return at
                self._line(deadline)
        except socket.timeout:
            return None

    def close(self):
        try:
            self.sock.settimeout(5)
            self.sock.sendall(b"DONE\r\nI2 LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()
