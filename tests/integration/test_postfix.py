#!/usr/bin/env python3
"""Real Postfix on mount.mstore: a private instance on 127.0.0.1 with
virtual_mailbox_base on the mount and 100 virtual mailboxes receives
1,000 messages from smtp-source in 8 sessions; every message must arrive
exactly once with an intact body. Then the store is stopped during a
run: deliveries fail with a temporary error, Postfix defers them, the
store comes back, and again every message arrives exactly once. Last,
Postfix is started on a port another program holds, and takes another."""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import mstlib  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "lab"))
import postfixlib  # noqa: E402
from mstlib import wait_until  # noqa: E402

USERS = 100


def count_delivered(base):
    n = 0
    for u in range(USERS):
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(os.path.join(base, "example.com",
                                                 "user%d" % u, sub)))
            except FileNotFoundError:
                pass
    return n


def prepare(m):
    os.makedirs(m.path("example.com"), exist_ok=True)
    os.chown(m.path("example.com"), 5000, 5000)


def run_postfix(m, name, messages, sessions, during=None, port=None):
    root = mstlib.tmpdir("mst-postfix-")
    pf = postfixlib.Postfix(root, m.mnt, port or mstlib.free_port(),
                            users=USERS, addresses=messages)
    pf.start()
    try:
        t0 = time.monotonic()
        sender = threading.Thread(target=pf.send, args=(messages, sessions))
        sender.start()
        if during:
            during(pf)
        sender.join()

        def done():
            pf.flush()
            return count_delivered(m.mnt) >= messages and pf.queue_count() == 0
        wait_until(done, 300, "%d messages to be delivered (now %d)" %
                   (messages, count_delivered(m.mnt)))
        took = time.monotonic() - t0
        print("%s: %d messages in %.1fs (%.0f/s)" % (name, messages, took,
                                                      messages / took))
        problems = postfixlib.check_delivery(
            postfixlib.read_maildirs(m.mnt, USERS), messages)
        assert not problems, "\n".join(problems[:20]) + "\n" + pf.log_tail()
        return pf
    finally:
        pf.stop()


def test_postfix_1000_messages_exactly_once(store, m):
    prepare(m)
    run_postfix(m, "postfix", 1000, 8)


def test_store_outage_defers_then_delivers_exactly_once(store, m):
    # A fresh tree for this run.
    subprocess.run(["rm", "-rf", m.path("example.com")], check=True)
    prepare(m)

    def outage(pf):
        wait_until(lambda: count_delivered(m.mnt) >= 50, 120,
                   "the first deliveries")
        store.stop()                    # SIGTERM: in-flight work finishes
        t_down = time.monotonic()
        try:
            wait_until(lambda: "status=deferred" in pf.log_tail(400), 60,
                       "Postfix to defer deliveries while the store is down")
        except TimeoutError:
            print(pf.log_tail(30))
            raise
        time.sleep(max(0.0, 3 - (time.monotonic() - t_down)))
        store.start()
    pf = run_postfix(m, "postfix-outage", 1000, 8, during=outage)
    log = open(pf.maillog).read()
    deferred = log.count("status=deferred")
    print("postfix-outage: %d deferrals while the store was down" % deferred)
    assert deferred > 0


def test_taken_port_is_replaced(store, m):
    """Another program binds the port picked for Postfix before master(8)
    does (seen on busy machines): postfixlib takes another port."""
    subprocess.run(["rm", "-rf", m.path("example.com")], check=True)
    prepare(m)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        pf = run_postfix(m, "postfix on a taken port", 20, 1, port=taken)
    assert pf.port != taken, "still on the taken port %d" % taken
    print("port %d was taken; postfix listened on %d" % (taken, pf.port))


def main():
    r = mstlib.Runner("postfix", limit=600)
    if not postfixlib.have_postfix():
        print("postfix: Postfix is not installed (tools/install-deps installs it)")
        print("postfix: 0 passed, 1 failed")
        return 1
    store = mstlib.Store().start()
    m = mstlib.Mount(store.addr, "allow_other,timeout=2").start()
    r.run(test_postfix_1000_messages_exactly_once, store, m)
    r.run(test_store_outage_defers_then_delivers_exactly_once, store, m)
    r.run(test_taken_port_is_replaced, store, m)
    m.unmount()
    store.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
