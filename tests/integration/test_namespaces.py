#!/usr/bin/env python3
"""test_namespaces - stores in one Ceph pool are apart by namespace.

Run under on_backend.py rados (MST_BACKEND=rados), which gives every
mstlib.Store a namespace of its own in one pool (mstored --namespace):

1. what one store holds, another store of the pool does not see, and
   the other can make the same name itself;
2. a store that stops and starts again in its namespace finds its data;
3. a second mstored in the same namespace serves the same store.

Skipped (77) on any other back-end.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mstlib  # noqa: E402


def ctl(store, *args, ok=True, data=""):
    r = subprocess.run([mstlib.CTL, "-s", store.addr, "-t", "20"] +
                       list(args), input=data, capture_output=True,
                       text=True, timeout=60)
    if ok and r.returncode != 0:
        raise AssertionError("mstore-ctl %s: exit %d: %s" % (
            " ".join(args), r.returncode, r.stderr.strip()))
    return r


def names(store, path=""):
    """The entries mstore-ctl ls lists (the name ends each line)."""
    return sorted(line.split()[-1] for line in
                  ctl(store, "ls", path).stdout.splitlines() if line.strip())


def namespace_of(store):
    for line in open(store.conf):
        if line.startswith("namespace = "):
            return line.split("=", 1)[1].strip()
    raise AssertionError("%s names no namespace" % store.conf)


def test_stores_in_one_pool_do_not_see_each_other(a, b):
    assert namespace_of(a) != namespace_of(b)
    ctl(a, "mkdir", "only-a")
    ctl(a, "put", "only-a/f", data="a's\n")
    assert "only-a" in names(a)
    assert "only-a" not in names(b), names(b)
    assert ctl(b, "stat", "only-a", ok=False).returncode == 1
    ctl(b, "mkdir", "only-a")          # no EEXIST: a name of its own
    assert names(b, "only-a") == [], names(b, "only-a")
    assert names(a, "only-a") == ["f"], names(a, "only-a")


def test_restart_finds_the_store_in_its_namespace(a, b):
    ctl(a, "mkdir", "kept")
    a.stop()
    a.start()
    assert "kept" in names(a), names(a)
    assert "kept" not in names(b), names(b)


def test_second_server_in_the_namespace_serves_the_same_store(a, b):
    with open(a.conf) as f:
        conf = f.read()
    a2 = mstlib.Store(conf).start()
    try:
        assert namespace_of(a2) == namespace_of(a)
        ctl(a2, "mkdir", "through-a2")
        assert "through-a2" in names(a), names(a)
        assert "through-a2" not in names(b), names(b)
    finally:
        a2.stop()


def main():
    if mstlib.BACKEND != "rados":
        print("SKIP namespaces: needs MST_BACKEND=rados (on_backend.py rados)")
        return 77
    r = mstlib.Runner("namespaces", limit=90)
    a = mstlib.Store().start()
    b = mstlib.Store().start()
    r.run(test_stores_in_one_pool_do_not_see_each_other, a, b)
    r.run(test_restart_finds_the_store_in_its_namespace, a, b)
    r.run(test_second_server_in_the_namespace_serves_the_same_store, a, b)
    a.stop()
    b.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
