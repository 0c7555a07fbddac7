#!/usr/bin/env python3
"""Mounts over TLS: a store whose TCP listener speaks only TLS (tls_cert,
tls_key, and a key_file: AUTH still applies), two mounts with
-o tls,cafile=... (one by IP address, one by the name localhost).
Mail delivered through one is read back whole through the other, and its
change notices cross over TLS. A mount with an untrusted CA, a mount
speaking plaintext to the TLS port, and bad option combinations fail
instead of reaching the store; after a store restart a TLS mount
connects again by itself. Certificates are made at run time by
tests/tls-certs.sh."""
import errno
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
from mstlib import expect_errno, wait_until  # noqa: E402

BOX = "tls.example/al"
CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                     "tls-certs.sh")


def deliver(m, name, body):
    tmp = m.path(BOX, "tmp", name)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, body)
    os.fsync(fd)
    os.close(fd)
    os.link(tmp, m.path(BOX, "new", name))
    os.unlink(tmp)


def test_delivery_through_tls_read_through_tls(a, b):
    for sub in ("", "/tmp", "/new", "/cur"):
        os.makedirs(a.path(BOX + sub), exist_ok=True)
    body = os.urandom(3 << 20)          # many frames each way
    deliver(a, "t1.host", body)
    wait_until(lambda: "t1.host" in os.listdir(b.path(BOX, "new")), 5,
               "the other TLS mount to list the message")
    with open(b.path(BOX, "new", "t1.host"), "rb") as f:
        assert f.read() == body, "bytes read back differ"
    # A change through B reaches A by a notice over TLS.
    os.rename(b.path(BOX, "new", "t1.host"),
              b.path(BOX, "cur", "t1.host:2,S"))
    wait_until(lambda: os.listdir(a.path(BOX, "new")) == [] and
               os.listdir(a.path(BOX, "cur")) == ["t1.host:2,S"], 5,
               "A to see the rename made through B")


def test_untrusted_ca_never_reaches_the_store(store, tls_dir, key):
    m = mstlib.Mount(store.addr, "tls,cafile=%s,keyfile=%s,timeout=2" % (
        os.path.join(tls_dir, "other-ca.pem"), key)).start()
    expect_errno(errno.EIO, os.listdir, m.mnt)
    m.unmount()
    log = open(m.log).read()
    assert "not trusted" in log, "mount log: " + log


def test_plaintext_to_the_tls_port_fails(store, key):
    m = mstlib.Mount(store.addr, "keyfile=%s,timeout=2" % key).start()
    expect_errno(errno.EIO, os.listdir, m.mnt)
    m.unmount()


def test_mount_reconnects_over_tls_after_a_restart(store, tls_dir, key):
    """The CA file is read again at every connection: after the store
    restarts, the mount (started with cafile= relative to its starting
    directory, which main.c makes absolute) connects over TLS again."""
    old = os.getcwd()
    os.chdir(tls_dir)
    try:
        m = mstlib.Mount(store.addr, "tls,cafile=ca.pem,keyfile=%s,"
                         "timeout=5" % key).start()
    finally:
        os.chdir(old)
    os.makedirs(m.path("rel.example/bo/new"), exist_ok=True)
    store.kill()
    store.start()
    wait_until(lambda: _lists(m.path("rel.example/bo")), 15,
               "the mount to reconnect over TLS after the restart")
    m.unmount()


def _lists(path):
    try:
        return "new" in os.listdir(path)
    except OSError as e:
        if e.errno != errno.EIO:
            raise
        return False


def run_mount(servers, opts):
    mnt = mstlib.tmpdir("mst-mnt-")
    return subprocess.run([mstlib.MOUNT, servers, mnt, "-f", "-o", opts],
                          capture_output=True, text=True, timeout=20)


def test_bad_tls_options_are_refused(store, tls_dir):
    ca = os.path.join(tls_dir, "ca.pem")
    r = run_mount(store.addr, "tls")
    assert r.returncode == 2 and "tls needs cafile" in r.stderr, r
    r = run_mount(store.addr, "cafile=" + ca)
    assert r.returncode == 2 and "goes with tls" in r.stderr, r
    r = run_mount("unix:/nonexistent.sock", "tls,cafile=" + ca)
    assert r.returncode == 2 and "plaintext" in r.stderr, r
    r = run_mount(store.addr, "tls,cafile=/nonexistent/ca.pem")
    assert r.returncode == 1 and "/nonexistent/ca.pem" in r.stderr, r


def main():
    r = mstlib.Runner("tls")
    tls_dir = mstlib.tmpdir("mst-tls-")
    subprocess.run(["sh", CERTS, tls_dir], check=True)
    key = os.path.join(tls_dir, "shared.key")
    with open(key, "w") as f:
        f.write("tls integration key\n")
    os.chmod(key, 0o600)
    store = mstlib.Store(
        "key_file = %s\ntls_cert = %s\ntls_key = %s\n" % (
            key, os.path.join(tls_dir, "server.pem"),
            os.path.join(tls_dir, "server.key"))).start()
    opts = "tls,cafile=%s,keyfile=%s,timeout=5" % (
        os.path.join(tls_dir, "ca.pem"), key)
    a = mstlib.Mount(store.addr, opts).start()
    b = mstlib.Mount("localhost:%d" % store.port, opts).start()
    r.run(test_delivery_through_tls_read_through_tls, a, b)
    r.run(test_untrusted_ca_never_reaches_the_store, store, tls_dir, key)
    r.run(test_plaintext_to_the_tls_port_fails, store, key)
    r.run(test_bad_tls_options_are_refused, store, tls_dir)
    r.run(test_mount_reconnects_over_tls_after_a_restart, store, tls_dir, key)
    a.unmount()
    b.unmount()
    store.stop()
    log = open(store.log).read()
    assert "TLS on TCP" in log, log
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
