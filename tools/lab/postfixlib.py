"""postfixlib - a private Postfix instance for tests and benchmarks.

Its own config, queue and data directories under one temporary directory,
smtpd on 127.0.0.1:PORT only, virtual(8) delivering into Maildirs under a
given base directory as uid/gid 5000. Started with `postfix -c DIR start`
and stopped with `postfix -c DIR stop` (and its master killed by PID if
that fails)."""
import os
import shutil
import socket
import subprocess
import time

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
virtual   unix  - n n -  - virtual
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def have_postfix():
    return shutil.which("postfix") is not None and shutil.which("smtp-source") is not None


class Postfix:
    def __init__(self, root, base, port, users=100, addresses=1000, uid=5000):
        """Deliver mail for N@example.com (N in 1..addresses) to the
        Maildir example.com/user(N % users)/ under |base|."""
        self.root = root
        self.base = base
        self.port = port
        self.uid = uid
        self.conf = os.path.join(root, "etc")
        self.queue = os.path.join(root, "queue")
        self.data = os.path.join(root, "data")
        self.maillog = os.path.join(root, "maillog")
        self.users = users
        self.addresses = addresses
        os.chmod(root, 0o755)   # the postfix user must reach the queue
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        os.chown(self.data, _uid("postfix"), _gid("postfix"))
        self._write_config()

    def _write_config(self):
        main = {
            "compatibility_level": "3.6",
            "config_directory": self.conf,
            "queue_directory": self.queue,
            "data_directory": self.data,
            "myhostname": "mx.mstore.test",
            "mydomain": "mstore.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relayhost": "",
            "virtual_mailbox_domains": "example.com",
            "virtual_mailbox_base": self.base,
            "virtual_mailbox_maps": "hash:%s/vmailbox" % self.conf,
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.uid,
            "virtual_minimum_uid": "100",
            "virtual_destination_concurrency_limit": "20",
            "virtual_destination_recipient_limit": "1",
            "default_process_limit": "64",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.root,
            "smtputf8_enable": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "maximal_queue_lifetime": "1h",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "in_flow_delay": "0",
        }
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        self._write_master()
        with open(os.path.join(self.conf, "vmailbox"), "w") as f:
            for n in range(1, self.addresses + 1):
                f.write("%d@example.com example.com/user%d/\n" % (n, n % self.users))
        subprocess.run(["postmap", "-c", self.conf,
                        os.path.join(self.conf, "vmailbox")], check=True)

    def _write_master(self):
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen="127.0.0.1:%d" % self.port))

    def postfix(self, *args, check=True):
        return subprocess.run(["postfix", "-c", self.conf] + list(args),
                              check=check, capture_output=True, text=True)

    def start(self):
        r = self.postfix("check", check=False)
        if r.returncode != 0:
            raise RuntimeError("postfix check failed: %s%s\n%s" % (
                r.stdout, r.stderr, self.log_tail()))
        # The port was free when it was picked; on a busy machine another
        # program may take it before master(8) binds it. Then take
        # another, a few times.
        for attempt in range(4):
            mark = self.log_size()
            r = self.postfix("start", check=False)
            if r.returncode == 0:
                return self
            if attempt == 3 or "Address already in use" not in \
                    self.log_since(mark):
                break
            self.port = _free_port()
            self._write_master()
        raise RuntimeError("postfix start failed: %s%s\n%s" % (
            r.stdout, r.stderr, self.log_tail()))

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        pid = self.master_pid()
        self.postfix("stop", check=False)
        if pid:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def flush(self):
        self.postfix("flush", check=False)

    def queue_count(self):
        n = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n

    def log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.maillog, errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=40):
        try:
            with open(self.maillog) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no maillog)"

    def send(self, messages, sessions, size=4096, timeout=600):
        """smtp-source: |messages| messages, one recipient each, numbered
        1..messages by -N (recipient N@example.com)."""
        cmd = ["smtp-source", "-s", str(sessions), "-m", str(messages),
               "-l", str(size), "-N", "-f", "sender@mstore.test",
               "-t", "@example.com", "127.0.0.1:%d" % self.port]
        return subprocess.run(cmd, check=True, timeout=timeout,
                              capture_output=True, text=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


def _gid(name):
    import grp
    return grp.getgrnam(name).gr_gid


def read_maildirs(base, users):
    """Every delivered message under base/example.com/user*/{new,cur}:
    returns a list of (path, bytes)."""
    out = []
    for u in range(users):
        for sub in ("new", "cur"):
            d = os.path.join(base, "example.com", "user%d" % u, sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    out.append((os.path.join(d, n), f.read()))
    return out


def check_delivery(messages, addresses):
    """Each recipient 1..addresses exactly once, every body identical and
    whole. Returns a list of problems (empty when all is well)."""
    seen = {}
    bodies = set()
    problems = []
    for path, data in messages:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            problems.append("%s: no header/body separator" % path)
            continue
        rcpt = None
        for line in head.split(b"\n"):
            if line.lower().startswith(b"delivered-to:"):
                rcpt = line.split(b":", 1)[1].strip().decode()
                break
        if rcpt is None:
            problems.append("%s: no Delivered-To" % path)
            continue
        seen[rcpt] = seen.get(rcpt, 0) + 1
        bodies.add(body)
    for n in range(1, addresses + 1):
        a = "%d@example.com" % n
        if seen.get(a, 0) != 1:
            problems.append("%s delivered %d times" % (a, seen.get(a, 0)))
    if len(bodies) > 1:
        problems.append("%d different bodies (want 1)" % len(bodies))
    return problems
