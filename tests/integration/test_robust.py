#!/usr/bin/env python3
"""test_robust - mount.mstore and mstored when the store pushes back.

Cases against the fake store of hostile.py (it answers what each case
tells it to): a DELIVER answered EAGAIN (the store short of memory for
bodies) is sent again, the same bytes and so the same idempotency id,
until it is stored or its timeout is spent, and never more often than
its back-off allows.

Every case starts its own fake store and mount and stops both.
"""
import errno
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import mstlib   # noqa: E402

from hostile import T_MSG, attr, attr_rep  # noqa: E402

S_EAGAIN = 11
TIMEOUT = 3     # the mount's request timeout in these cases (s)


def fake_mount(opts=""):
    f = hostile.Fake()
    o = "timeout=%d" % TIMEOUT + ("," + opts if opts else "")
    m = mstlib.Mount(f.addr, o).start()
    return f, m


def stop(f, m):
    m.unmount()
    f.stop()


def write_tmp(m, name, body):
    p = m.path("u", "tmp", name)
    with open(p, "wb") as fh:
        fh.write(body)
    return p


def test_deliver_eagain_is_sent_again_with_its_id():
    """The first two DELIVERs of a message are answered EAGAIN, the third
    stores it: link() succeeds, and the three carried the same bytes (the
    same idempotency id), so a store that did keep one never keeps two."""
    f, m = fake_mount()
    try:
        body = b"From: a@example.com\n\nhello\n"
        got = []

        def deliver(req):
            got.append(req.payload)
            if len(got) <= 2:
                return req.reply(status=S_EAGAIN)
            return req.reply(attr_rep(attr(T_MSG, 300, len(body),
                                           mode=0o600), 2))
        f.hook("DELIVER", deliver)
        tmp = write_tmp(m, "m1", body)
        t0 = time.monotonic()
        os.link(tmp, m.path("u", "new", "m1"))
        took = time.monotonic() - t0
        assert len(got) == 3, "DELIVERs sent: %d, want 3" % len(got)
        assert got[0] == got[1] == got[2], \
            "a resend differs from the first DELIVER (another id?)"
        assert took < TIMEOUT, "link took %.2f s" % took
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        stop(f, m)


def test_deliver_eagain_until_the_timeout_fails_with_eagain():
    """A store that answers EAGAIN for ever: link() fails with EAGAIN (a
    temporary failure: the MTA defers) within the request's timeout,
    after a bounded number of resends, all of the same bytes."""
    f, m = fake_mount()
    try:
        got = []

        def deliver(req):
            got.append(req.payload)
            return req.reply(status=S_EAGAIN)
        f.hook("DELIVER", deliver)
        tmp = write_tmp(m, "m2", b"body\n")
        t0 = time.monotonic()
        mstlib.expect_errno(errno.EAGAIN, os.link, tmp,
                            m.path("u", "new", "m2"))
        took = time.monotonic() - t0
        assert took <= TIMEOUT + 0.5, "link took %.2f s, the timeout is " \
            "%d s" % (took, TIMEOUT)
        # 10 ms doubling to 500 ms within 3 s: about 10 sends; never a
        # tight loop.
        assert 2 <= len(got) <= 20, "DELIVERs sent: %d" % len(got)
        assert all(p == got[0] for p in got), "a resend differs"
        assert m.proc.poll() is None, "mount.mstore died"
    finally:
        stop(f, m)


CASES = [test_deliver_eagain_is_sent_again_with_its_id,
         test_deliver_eagain_until_the_timeout_fails_with_eagain]


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("robust: needs root and /dev/fuse")
        return 77
    only = set(sys.argv[1:])
    r = mstlib.Runner("robust", limit=60)
    for fn in CASES:
        if not only or fn.__name__ in only:
            r.run(fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
