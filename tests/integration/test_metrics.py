#!/usr/bin/env python3
"""mstored --metrics: the Prometheus endpoint. A strict parser of the
text exposition format (0.0.4) reads every scrape; the counters must
move by what the test did: requests by operation and status, messages
and bytes delivered and stored, group commits, notices, connections,
watches and locks (gauges that go down again), a scrub's progress.
Histogram buckets must be cumulative and their _count must equal the
requests counted for that operation. Only GET and HEAD of /metrics
answer; the endpoint is off unless asked for and on the loopback unless
an address is named."""
import fcntl
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402

BOX = "example.com/metrics"
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = ("counter", "gauge", "histogram")


class Exposition:
    """One parsed scrape: series[(name, ((label, value), ...))] = float,
    types[family] = type."""

    def __init__(self, text):
        self.types = {}
        self.helps = {}
        self.series = {}
        if not text.endswith("\n"):
            raise AssertionError("exposition does not end with a newline")
        for n, line in enumerate(text.split("\n")[:-1], 1):
            try:
                self._line(line)
            except AssertionError as e:
                raise AssertionError("line %d %r: %s" % (n, line, e))
        for fam, t in self.types.items():
            if fam not in self.helps:
                raise AssertionError("%s has TYPE but no HELP" % fam)
            if t == "histogram":
                self._check_histogram(fam)

    def _line(self, line):
        if line == "":
            raise AssertionError("empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert len(parts) >= 3 and parts[0] == "#", "bad comment"
            kind, name = parts[1], parts[2]
            assert NAME_RE.match(name), "bad metric name"
            if kind == "HELP":
                assert len(parts) == 4 and parts[3], "HELP without text"
                assert name not in self.helps, "second HELP"
                self.helps[name] = parts[3]
            elif kind == "TYPE":
                assert len(parts) == 4 and parts[3] in TYPES, "bad TYPE"
                assert name not in self.types, "second TYPE"
                assert not any(self.family(s[0]) == name
                               for s in self.series), "TYPE after samples"
                self.types[name] = parts[3]
                if parts[3] == "counter":
                    assert name.endswith("_total"), "counter without _total"
            else:
                raise AssertionError("unknown comment kind")
            return
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)\Z", line)
        assert m, "not a sample line"
        name, labels, value = m.group(1), m.group(2), m.group(3)
        lab = ()
        if labels:
            body = labels[1:-1]
            pairs = LABEL_RE.findall(body)
            rebuilt = ",".join('%s="%s"' % p for p in pairs)
            assert rebuilt == body, "bad labels"
            keys = [k for k, _ in pairs]
            assert len(set(keys)) == len(keys), "repeated label"
            lab = tuple(sorted(pairs))
        fam = self.family(name)
        assert fam in self.types, "sample before its TYPE"
        t = self.types[fam]
        if t == "histogram":
            assert name != fam, "histogram sample without suffix"
            assert (name.endswith("_bucket")) == ("le" in dict(lab)), \
                "le only on _bucket"
        else:
            assert name == fam, "suffix on a %s" % t
        key = (name, lab)
        assert key not in self.series, "duplicate series"
        v = float(value)
        if t in ("counter", "histogram"):
            assert v >= 0, "negative %s" % t
        self.series[key] = v

    def family(self, name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.types.get(base) == "histogram":
                return base
        return name

    def _check_histogram(self, fam):
        groups = {}
        for (name, lab), v in self.series.items():
            if self.family(name) != fam:
                continue
            rest = tuple(p for p in lab if p[0] != "le")
            g = groups.setdefault(rest, {"b": []})
            if name.endswith("_bucket"):
                g["b"].append((float(dict(lab)["le"]), v))
            else:
                g[name[len(fam):]] = v
        for rest, g in groups.items():
            b = sorted(g["b"])
            assert b and b[-1][0] == float("inf"), \
                "%s%s: no +Inf bucket" % (fam, rest)
            for (le0, c0), (le1, c1) in zip(b, b[1:]):
                assert c1 >= c0, "%s%s: bucket le=%s (%d) below le=%s (%d)" % (
                    fam, rest, le1, c1, le0, c0)
            assert "_count" in g and "_sum" in g, "%s%s: no _count/_sum" % (
                fam, rest)
            assert g["_count"] == b[-1][1], \
                "%s%s: _count %d, +Inf bucket %d" % (fam, rest, g["_count"],
                                                    b[-1][1])

    def get(self, name, **labels):
        return self.series.get((name, tuple(sorted(labels.items()))), 0.0)

    def has(self, name):
        return any(k[0] == name for k in self.series)

    def sum(self, name, **labels):
        want = set(labels.items())
        return sum(v for (n, lab), v in self.series.items()
                   if n == name and want <= set(lab))


def url_of(addr):
    return "http://%s/metrics" % addr


def scrape(addr):
    with urllib.request.urlopen(url_of(addr), timeout=10) as r:
        assert r.status == 200, r.status
        ctype = r.headers.get("Content-Type")
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
        return Exposition(r.read().decode("utf-8"))


def store_with_metrics():
    port = mstlib.free_port()
    s = mstlib.Store(conf_extra="metrics = %d\n" % port).start()
    s.metrics = "127.0.0.1:%d" % port
    mstlib.wait_until(lambda: "metrics at http://%s/metrics" % s.metrics
                      in open(s.log).read(), 10, "the metrics line in the log")
    return s


def test_deliveries_move_the_counters(s, m):
    mstlib.maildir(m, BOX)
    before = scrape(s.metrics)
    sizes = [100, 2000, 30000, 4096, 1]
    for i, n in enumerate(sizes):
        mstlib.deliver(m, BOX, "m%d" % i, bytes([65 + i]) * n)
    after = scrape(s.metrics)

    def d(name, **lab):
        return after.get(name, **lab) - before.get(name, **lab)
    # One DELIVER each, or a COMMIT of a body STAGEd at fsync.
    got = d("mstored_requests_total", op="DELIVER", status="ok") + \
        d("mstored_requests_total", op="COMMIT", status="ok")
    assert got == len(sizes), "DELIVER or COMMIT ok: got %d, want %d" % (
        got, len(sizes))
    got = d("mstored_delivered_messages_total")
    assert got == len(sizes), "delivered: got %d, want %d" % (got, len(sizes))
    got = d("mstored_delivered_bytes_total")
    assert got == sum(sizes), "bytes: got %d, want %d" % (got, sum(sizes))
    if mstlib.BACKEND in ("local", "memory"):
        got = after.get("mstored_store_messages")
        assert got == len(sizes), "stored: got %d, want %d" % (got, len(sizes))
        got = after.get("mstored_store_message_bytes")
        assert got == sum(sizes), "stored bytes: got %d, want %d" % (
            got, sum(sizes))
        # Each delivery waited for a group commit of at least its record.
        got = d("mstored_commit_records_count")
        assert got >= 1, "group commits: got %d" % got
        got = d("mstored_commit_records_sum")
        assert got >= len(sizes), "records committed: got %d" % got
        assert d("mstored_fdatasync_duration_seconds_count") == \
            d("mstored_commit_records_count")
        assert d("mstored_log_written_bytes_total") > sum(sizes)
    # An expunge makes the stored count go down again.
    os.unlink(m.path(BOX, "new", "m0"))
    final = scrape(s.metrics)
    assert final.get("mstored_requests_total", op="EXPUNGE", status="ok") \
        - after.get("mstored_requests_total", op="EXPUNGE", status="ok") == 1
    if mstlib.BACKEND in ("local", "memory"):
        mstlib.wait_until(lambda: scrape(s.metrics).get(
            "mstored_store_messages") == len(sizes) - 1, 10,
            "the stored count to go down after the expunge")
        assert scrape(s.metrics).get("mstored_store_message_bytes") == \
            sum(sizes) - sizes[0]
    else:
        assert not final.has("mstored_store_messages")


def test_histograms_count_every_request(s, m):
    e = scrape(s.metrics)
    ops = set(dict(lab)["op"] for (n, lab) in e.series
              if n == "mstored_request_duration_seconds_count")
    assert "HELLO" in ops and ("DELIVER" in ops or "COMMIT" in ops), ops
    for op in ops:
        count = e.get("mstored_request_duration_seconds_count", op=op)
        total = e.sum("mstored_requests_total", op=op)
        assert count == total, "%s: histogram _count %d, requests %d" % (
            op, count, total)
    # The sum of durations is in seconds: positive and far below a minute
    # per request on any machine.
    op = "DELIVER" if "DELIVER" in ops else "COMMIT"
    c = e.get("mstored_request_duration_seconds_count", op=op)
    t = e.get("mstored_request_duration_seconds_sum", op=op)
    assert 0 < t < 60 * c, (t, c)


def test_failed_requests_are_counted_by_status(s, m):
    before = scrape(s.metrics)
    mstlib.expect_errno(2, os.stat, m.path(BOX, "no-such-dir", "x"))
    r = subprocess.run([mstlib.CTL, "-s", s.addr, "stat", "nowhere/at/all"],
                       capture_output=True, timeout=20)
    assert r.returncode != 0, r
    after = scrape(s.metrics)
    got = after.sum("mstored_requests_total", status="ENOENT") - \
        before.sum("mstored_requests_total", status="ENOENT")
    assert got >= 1, "ENOENT replies: got %d" % got


def test_connections_gauge_goes_back_down(s, m):
    base = scrape(s.metrics).get("mstored_connections")
    acc = scrape(s.metrics).get("mstored_connections_accepted_total")
    assert base >= 1, "the mount's connection: got %d" % base
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        mstlib.wait_until(lambda: scrape(s.metrics).get(
            "mstored_connections") == base + 1, 10, "connections + 1")
        e = scrape(s.metrics)
        assert e.get("mstored_connections_accepted_total") == acc + 1
    finally:
        c.close()
    mstlib.wait_until(lambda: scrape(s.metrics).get(
        "mstored_connections") == base, 10, "connections back down")


def test_watches_and_locks_gauges_go_up_and_down(s, m):
    box = "example.com/watched"
    mstlib.maildir(m, box)
    m2 = mstlib.Mount(s.addr, "allow_other").start()
    try:
        os.listdir(m2.path(box, "new"))
        e = scrape(s.metrics)
        assert e.get("mstored_watches") >= 1, "watches after a listing"
        base = scrape(s.metrics).get("mstored_locks")
        path = m.path(box, "dovecot-uidlist")
        with open(path, "w") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            got = scrape(s.metrics).get("mstored_locks")
            assert got == base + 1, "locks held: got %d, want %d" % (
                got, base + 1)
            fcntl.lockf(f, fcntl.LOCK_UN)
            mstlib.wait_until(lambda: scrape(s.metrics).get(
                "mstored_locks") == base, 10, "the lock gauge back down")
        # The other mount hears of a delivery: a notice sent.
        n0 = scrape(s.metrics).get("mstored_notices_sent_total")
        mstlib.deliver(m, box, "seen-by-m2", b"hello\n")
        mstlib.wait_until(lambda: scrape(s.metrics).get(
            "mstored_notices_sent_total") > n0, 10, "a notice sent")
        conns = scrape(s.metrics).get("mstored_connections")
    finally:
        m2.unmount()
    mstlib.wait_until(lambda: scrape(s.metrics).get(
        "mstored_connections") < conns, 10, "the unmounted mount's "
        "connection to close")


def test_only_get_and_head_of_metrics(s, m):
    for path in ("/", "/metric", "/metrics/x", "/other"):
        try:
            urllib.request.urlopen("http://%s%s" % (s.metrics, path),
                                   timeout=10)
            raise AssertionError("%s answered" % path)
        except urllib.error.HTTPError as e:
            assert e.code == 404, "%s: got %d, want 404" % (path, e.code)
    req = urllib.request.Request(url_of(s.metrics), data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("POST answered")
    except urllib.error.HTTPError as e:
        assert e.code == 405, "POST: got %d, want 405" % e.code
        assert e.headers["Allow"] == "GET, HEAD", e.headers["Allow"]
    req = urllib.request.Request(url_of(s.metrics), method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.read() == b""
        head_len = int(r.headers["Content-Length"])
    with urllib.request.urlopen(url_of(s.metrics), timeout=10) as r:
        # What GET sends, give or take the digits of counters moved by
        # the requests in between.
        assert abs(len(r.read()) - head_len) < 64, head_len


def test_off_by_default_and_port_alone_is_loopback():
    top = mstlib.tmpdir("mst-metrics-")
    d = os.path.join(top, "data")
    os.mkdir(d)
    port, mport = mstlib.free_port(), mstlib.free_port()
    log = os.path.join(top, "log")
    sock = os.path.join(top, "ctl.sock")
    with open(log, "w") as lf:
        p = subprocess.Popen([mstlib.MSTORED, "--data", d, "--foreground",
                              "--listen", "127.0.0.1:%d" % port, "--listen",
                              "unix:" + sock, "--metrics", str(mport)],
                             stdout=lf, stderr=subprocess.STDOUT)
    mstlib._procs.append(p)
    try:
        mstlib.wait_until(lambda: "/metrics" in open(log).read() or
                          p.poll() is not None, 20, "mstored to start")
        assert "metrics at http://127.0.0.1:%d/metrics" % mport in \
            open(log).read(), open(log).read()
        e = scrape("127.0.0.1:%d" % mport)
        assert e.get("mstored_scrubs_total") == 0
        r = subprocess.run([mstlib.CTL, "-s", "unix:" + sock, "scrub"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r
        e = scrape("127.0.0.1:%d" % mport)
        assert e.get("mstored_scrubs_total") == 1
        assert e.get("mstored_scrub_running") == 0
        assert e.get("mstored_scrub_checked_bytes") == \
            e.get("mstored_scrub_size_bytes")
        assert e.get("mstored_requests_total", op="ADMIN", status="ok") == 1
    finally:
        p.terminate()
        p.wait(timeout=30)
    # Without --metrics nothing listens on that port.
    with open(log, "w") as lf:
        p = subprocess.Popen([mstlib.MSTORED, "--data", d, "--foreground",
                              "--listen", "127.0.0.1:%d" % port],
                             stdout=lf, stderr=subprocess.STDOUT)
    mstlib._procs.append(p)
    try:
        mstlib.wait_until(lambda: mstlib.can_connect(port), 20,
                          "mstored to listen")
        assert not mstlib.can_connect(mport), "metrics served by default"
        assert "/metrics" not in open(log).read()
    finally:
        p.terminate()
        p.wait(timeout=30)
    for bad in ("unix:/tmp/x", "0", "host.example:99", "70000"):
        r = subprocess.run([mstlib.MSTORED, "--data", d, "--metrics", bad,
                            "--foreground"], capture_output=True, timeout=20)
        assert r.returncode == 2 and b"--metrics" in r.stderr, (bad, r)


def main():
    r = mstlib.Runner("metrics")
    s = store_with_metrics()
    m = mstlib.Mount(s.addr, "allow_other").start()
    for t in (test_deliveries_move_the_counters,
              test_histograms_count_every_request,
              test_failed_requests_are_counted_by_status,
              test_connections_gauge_goes_back_down,
              test_watches_and_locks_gauges_go_up_and_down,
              test_only_get_and_head_of_metrics):
        r.run(t, s, m)
    m.unmount()
    s.stop()
    if mstlib.BACKEND == "local":
        r.run(test_off_by_default_and_port_alone_is_loopback)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
