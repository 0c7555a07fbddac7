#!/usr/bin/env python3
"""The mount's own counters, read from the root's user.mstore.stats and
through `mstore-ctl mount-stats` (text and --json): after known work
they moved as expected. Deliveries count kernel and store requests and
the bytes buffered, which go back to 0 once delivered; a large tmp/
file is spooled and unspooled; a second mount that lists a folder
receives a notice when the first delivers into it; a store restart
counts a reconnection."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

BOX = "example.com/stats"
KEYS = ("connects", "reconnects", "requests_resent", "requests_rerouted",
        "requests_timed_out", "notices_received", "folder_cache_hits",
        "folder_cache_misses", "buffered_bytes_written",
        "spool_files_created", "buffered_bytes", "spooled_bytes",
        "cache_bytes", "cache_budget_bytes", "cache_peak_bytes",
        "cache_evictions", "connected", "kernel_requests",
        "store_requests", "kernel_write_bytes", "passthrough_opens")


def stats(m):
    """The xattr, parsed strictly: key=unsigned lines, each key once."""
    text = os.getxattr(m.mnt, "user.mstore.stats").decode()
    assert text.endswith("\n"), text
    out = {}
    for line in text[:-1].split("\n"):
        mm = re.fullmatch(r"([a-z_]+(?:\.[A-Z_]+)?)=([0-9]+)", line)
        assert mm, "bad line %r" % line
        assert mm.group(1) not in out, "repeated %s" % mm.group(1)
        out[mm.group(1)] = int(mm.group(2))
    for k in KEYS:
        assert k in out, "%s missing from %s" % (k, sorted(out))
    return out


def ctl(*args):
    r = subprocess.run([mstlib.CTL] + list(args), capture_output=True,
                       timeout=20)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def delivered(s0, s1):
    return sum(s1.get("store.%s" % op, 0) - s0.get("store.%s" % op, 0)
               for op in ("DELIVER", "COMMIT"))


def test_deliveries_count_requests_and_buffers(m, m2, store):
    mstlib.maildir(m, BOX)
    s0 = stats(m)
    sizes = [10, 5000, 70000]
    for i, n in enumerate(sizes):
        mstlib.deliver(m, BOX, "d%d" % i, b"x" * n)
    s1 = stats(m)
    got = delivered(s0, s1)
    assert got == len(sizes), "deliveries to the store: got %d, want %d" % (
        got, len(sizes))
    got = s1["buffered_bytes_written"] - s0["buffered_bytes_written"]
    assert got == sum(sizes), "bytes buffered: got %d, want %d" % (
        got, sum(sizes))
    assert s1["kernel_requests"] > s0["kernel_requests"]
    assert s1["kernel.WRITE"] >= s0.get("kernel.WRITE", 0) + len(sizes)
    assert s1["store_requests"] >= s0["store_requests"] + len(sizes)
    mstlib.wait_until(lambda: stats(m)["buffered_bytes"] == 0, 10,
                      "the delivered buffers to be freed")
    assert s1["connects"] >= 1 and s1["connected"] == 1
    assert s1["cache_bytes"] > 0 and s1["cache_budget_bytes"] > 0
    assert s1["cache_peak_bytes"] >= s1["cache_bytes"]


def test_a_large_file_is_spooled_then_freed(m, m2, store):
    mstlib.maildir(m, BOX)
    s0 = stats(m)
    size = 3 << 20
    tmp = m.path(BOX, "tmp", "big")
    with open(tmp, "wb") as f:
        for _ in range(size >> 16):
            f.write(b"y" * 65536)
        f.flush()
        s1 = stats(m)
        assert s1["spool_files_created"] == s0["spool_files_created"] + 1
        assert s1["spooled_bytes"] - s0["spooled_bytes"] == size, (
            s1["spooled_bytes"], s0["spooled_bytes"])
    os.unlink(tmp)
    mstlib.wait_until(lambda: stats(m)["spooled_bytes"] ==
                      s0["spooled_bytes"], 10, "the spool file to go")


def test_notices_reach_the_other_mount(m, m2, store):
    mstlib.maildir(m, BOX)
    os.listdir(m2.path(BOX, "new"))      # m2 lists it and watches it
    s0 = stats(m2)
    assert s0["folder_cache_misses"] >= 1, s0["folder_cache_misses"]
    mstlib.deliver(m, BOX, "for-m2", b"hello\n")
    mstlib.wait_until(lambda: stats(m2)["notices_received"] >
                      s0["notices_received"], 10, "a notice at m2")
    assert "for-m2" in os.listdir(m2.path(BOX, "new"))
    s1 = stats(m2)
    assert s1["folder_cache_hits"] + s1["folder_cache_misses"] > \
        s0["folder_cache_hits"] + s0["folder_cache_misses"]


def test_a_store_restart_counts_a_reconnection(m, m2, store):
    if mstlib.BACKEND == "memory":
        return      # a restarted memory store is empty: nothing to check
    s0 = stats(m)
    store.stop()
    store.start()
    def reconnected():
        try:
            os.listdir(m.path(BOX, "new"))   # a request, to hurry it
        except OSError:
            pass
        return stats(m)["reconnects"] > s0["reconnects"]
    mstlib.wait_until(reconnected, 30, "the mount to reconnect")
    s1 = stats(m)
    assert s1["connects"] > s0["connects"]
    mstlib.wait_until(lambda: stats(m)["connected"] == 1, 10, "connected")


def test_mstore_ctl_mount_stats(m, m2, store):
    rc, out, err = ctl("mount-stats", m.mnt)
    assert rc == 0, err
    text = dict(l.split("=", 1) for l in out.splitlines())
    x = stats(m)
    for k in ("connects", "notices_received", "kernel_requests"):
        assert k in text, k
    assert int(text["connects"]) == x["connects"]
    rc, out, err = ctl("--json", "mount-stats", m.mnt)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["mount"] == m.mnt, doc.get("mount")
    assert doc["connects"] == x["connects"]
    assert isinstance(doc["kernel"], dict) and doc["kernel"]["LOOKUP"] >= 1
    assert doc["store"]["LIST"] >= 1, doc["store"]
    assert doc["kernel_requests"] >= doc["kernel"]["LOOKUP"]
    # Not a mount: a clear failure, and with --json an error object.
    d = mstlib.tmpdir("mst-notmount-")
    rc, out, err = ctl("mount-stats", d)
    assert rc == 1 and "not an mstore mount" in err, (rc, err)
    rc, out, err = ctl("--json", "mount-stats", d)
    assert rc == 1 and "error" in json.loads(out), out


def main():
    r = mstlib.Runner("mount_stats")
    store = mstlib.Store().start()
    # The mount's own buffers are counted: no kernel passthrough, which
    # takes tmp/ writes past it (test_passthrough.py counts that).
    m = mstlib.Mount(store.addr, "allow_other,nopassthrough").start()
    m2 = mstlib.Mount(store.addr, "allow_other,nopassthrough").start()
    for t in (test_deliveries_count_requests_and_buffers,
              test_a_large_file_is_spooled_then_freed,
              test_notices_reach_the_other_mount,
              test_a_store_restart_counts_a_reconnection):
        r.run(t, m, m2, store)
    if os.environ.get("MST_CTL_MOUNT_STATS", "1") == "1":
        r.run(test_mstore_ctl_mount_stats, m, m2, store)
    m2.unmount()
    m.unmount()
    store.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
