"""The NBD target obeys the igroups, as an attacker would test it.

Each test plays several hosts from one machine: every address in
127.0.0.0/8 reaches the loopback interface, so a raw client bound to
127.0.0.2 is another initiator than one from 127.0.0.1. The server is the
product's (``NBDServer`` over the filer's export resolver and LUNs).
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading

from coppice.nbd import protocol as P
from tests.nbd.rawclient import RawClient, open_export
from tests.security.nbd_target import HOST_A, HOST_B, SNAP, cut, nbd_pool, refused, write  # noqa: F401


def test_snapshot_export_follows_its_lun_after_a_move_not_the_path(nbd_pool):
    # lun0 (host A) has a snapshot; lun0 is moved away and a new lun0 is
    # mapped to host B: B must not read the old LUN's snapshot, A still may.
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("ga", [HOST_A], protocol="nbd")
    f.igroup_create("gb", [HOST_B], protocol="nbd")
    f.lun_map("/vol/v/lun0", "ga")
    write(f, "/vol/v/lun0", b"secret-of-A" * 100)
    f.snap_create("v", "s1")
    f.lun_rename("/vol/v/lun0", "/vol/v/moved")
    f.lun_create("/vol/v/lun0", "4m")
    f.lun_map("/vol/v/lun0", "gb")
    s = f.serve()
    port = s.address[1]

    assert refused(port, SNAP, HOST_B)
    b = RawClient(port, source=HOST_B)
    b.greeting()
    assert b.list_exports() == ["/vol/v/lun0"]
    b.close()
    a = open_export(port, SNAP, HOST_A)
    assert a.read(0, 11) == b"secret-of-A"
    a.close()

    # the old LUN destroyed: its snapshot is no network host's any more
    f.lun_unmap("/vol/v/moved", "ga")
    f.lun_destroy("/vol/v/moved")
    assert refused(port, SNAP, HOST_A) and refused(port, SNAP, HOST_B)
    root = open_export(None, SNAP, unix_path=s.unix_path)
    assert root.read(0, 11) == b"secret-of-A"
    root.close()


def test_igroup_remove_cuts_exactly_the_removed_host(nbd_pool):
    # Both hosts are connected to the LUN and to its snapshot; removing B
    # from the igroup cuts B's two connections and nothing of A's.
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", [HOST_A, HOST_B], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    f.snap_create("v", "s1")
    port = f.serve().address[1]
    a = [open_export(port, n, HOST_A) for n in ("/vol/v/lun0", SNAP)]
    b = [open_export(port, n, HOST_B) for n in ("/vol/v/lun0", SNAP)]

    f.igroup_remove("g", HOST_B)
    assert all(cut(c) for c in b)
    assert not any(cut(c) for c in a)
    assert refused(port, "/vol/v/lun0", HOST_B) and refused(port, SNAP, HOST_B)


def test_unmap_from_one_igroup_keeps_the_other_igroups_hosts(nbd_pool):
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("ga", [HOST_A], protocol="nbd")
    f.igroup_create("gb", [HOST_B], protocol="nbd")
    f.lun_map("/vol/v/lun0", "ga")
    f.lun_map("/vol/v/lun0", "gb")
    f.snap_create("v", "s1")
    port = f.serve().address[1]
    a = [open_export(port, n, HOST_A) for n in ("/vol/v/lun0", SNAP)]
    b = [open_export(port, n, HOST_B) for n in ("/vol/v/lun0", SNAP)]

    f.lun_unmap("/vol/v/lun0", "gb")
    assert all(cut(c) for c in b)
    assert not any(cut(c) for c in a)


def test_lun_offline_cuts_its_snapshot_exports_too(nbd_pool):
    f = nbd_pool
    f.vol_create("v", "64m")
    f.igroup_create("g", [HOST_A], protocol="nbd")
    for lun in ("lun0", "lun1"):
        f.lun_create(f"/vol/v/{lun}", "4m")
        f.lun_map(f"/vol/v/{lun}", "g")
    f.snap_create("v", "s1")
    port = f.serve().address[1]
    victims = [open_export(port, n, HOST_A) for n in ("/vol/v/lun0", SNAP)]
    bystanders = [open_export(port, n, HOST_A) for n in ("/vol/v/lun1", "/vol/v/.snapshot/s1/lun1")]

    f.lun_offline("/vol/v/lun0")
    assert all(cut(c) for c in victims)
    assert not any(cut(c) for c in bystanders)
    assert refused(port, SNAP, HOST_A)
    f.lun_online("/vol/v/lun0")
    open_export(port, SNAP, HOST_A).close()


def test_handshake_flood_from_one_address_does_not_lock_out_another(nbd_pool):
    # B opens many connections and never speaks: past its per-address limit
    # it is turned away at once, and A still connects and reads.
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", [HOST_A], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    s = f.serve(max_handshakes_per_address=8, max_connections=24, handshake_timeout=2.0)
    port = s.address[1]
    flood = [socket.create_connection((HOST_A, port), source_address=(HOST_B, 0)) for _ in range(40)]
    for sock in flood:
        sock.settimeout(5)
    a = open_export(port, "/vol/v/lun0", HOST_A)
    assert a.read(0, 512) == bytes(512)

    def refused_at_once(sock) -> bool:
        # the server sends its greeting (18 bytes) to admitted peers only
        got = b""
        try:
            while len(got) < 18:
                k = sock.recv(18 - len(got))
                if not k:
                    return True
                got += k
        except ConnectionError:
            return True
        return False

    outcome = [refused_at_once(sock) for sock in flood]
    assert outcome.count(False) == 8  # the admitted ones got a greeting
    # ...and are dropped once the handshake deadline passes
    admitted = [sock for sock, r in zip(flood, outcome, strict=True) if not r]
    for sock in admitted:
        assert sock.recv(1) == b""
    for sock in flood:
        sock.close()
    assert not cut(a)
    a.close()


def test_unix_socket_is_0600_whatever_the_umask(nbd_pool):
    old = os.umask(0)
    try:
        s = nbd_pool.serve(port=None)
    finally:
        os.umask(old)
    mode = os.stat(s.unix_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert [n for n in os.listdir(os.path.dirname(s.unix_path)) if n.startswith(".nbd-sock")] == []


def test_dual_stack_listener_serves_ipv4_and_ipv6(nbd_pool):
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", [HOST_A, "::1"], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    s = f.serve(host="::")
    port = s.address[1]
    open_export(port, "/vol/v/lun0", HOST_A).close()  # IPv4, matched as 127.0.0.1
    c = RawClient(port, host="::1")
    c.greeting()
    assert c.try_go("/vol/v/lun0") == P.REP_ACK
    c.close()


def test_refusals_are_logged_once_per_connection_with_the_reason(nbd_pool, caplog):
    # The README's first step: an igroup holding only an iSCSI name, a client
    # over plain TCP. The client sees "unknown export"; the log says why.
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.lun_create("/vol/v/lun1", "4m")
    f.igroup_create("esx1", ["iqn.2026-01.org.example:host1"])
    f.lun_map("/vol/v/lun0", "esx1")
    f.igroup_create("g", [HOST_B], protocol="nbd")
    f.lun_map("/vol/v/lun1", "g")
    f.lun_offline("/vol/v/lun1")
    port = f.serve().address[1]
    with caplog.at_level(logging.DEBUG, logger="coppice.nbd"):
        c = RawClient(port, source=HOST_B)
        c.greeting()
        for _ in range(3):  # INFO, then GO twice: one line, not three
            assert c.try_go("/vol/v/lun0") == P.REP_ERR_UNKNOWN
        c.close()
        assert refused(port, "/vol/v/lun1", HOST_B)
        assert refused(port, "/vol/v/nope", HOST_B)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    mapped, offline, missing = warnings
    assert HOST_B in mapped and "'/vol/v/lun0'" in mapped
    assert "igroup esx1" in mapped and "IP address" in mapped and "certificate" in mapped
    assert "offline" in offline and "'/vol/v/lun1'" in offline
    assert "no such LUN" in missing
    # ...and the client was told nothing more than "unknown"
    c = RawClient(port, source=HOST_B)
    c.greeting()
    n = b"/vol/v/lun0"
    c.option(P.OPT_GO, len(n).to_bytes(4, "big") + n + b"\0\0")
    _opt, rep, msg = c.reply()
    c.close()
    assert rep == P.REP_ERR_UNKNOWN and b"igroup" not in msg and b"esx1" not in msg


def test_recheck_races_with_opens_never_leave_a_removed_host_connected(nbd_pool):
    # Opens racing with an igroup removal: whatever the interleaving, no
    # connection of the removed host survives the removal.
    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", [HOST_A, HOST_B], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    s = f.serve()
    port = s.address[1]
    opened: list[RawClient] = []
    stop = threading.Event()

    def opener():
        while not stop.is_set():
            c = RawClient(port, source=HOST_B)
            c.greeting()
            if c.try_go("/vol/v/lun0") == P.REP_ACK:
                opened.append(c)
            else:
                c.close()
                return

    t = threading.Thread(target=opener)
    t.start()
    for _ in range(1000):
        if len(opened) >= 3:
            break
        threading.Event().wait(0.01)
    f.igroup_remove("g", HOST_B)
    stop.set()
    t.join(10)
    assert opened and all(cut(c) for c in opened)


def test_unmap_under_a_writing_client_does_not_wait_for_it(nbd_pool):
    # A write in flight waits for the filer's lock, which the unmap's commit
    # holds while it tells the target: the target must cut, not wait for
    # that connection to finish (waiting would stall the unmap for seconds).
    import time

    f = nbd_pool
    f.vol_create("v", "64m")
    f.lun_create("/vol/v/lun0", "4m")
    f.igroup_create("g", [HOST_A], protocol="nbd")
    f.lun_map("/vol/v/lun0", "g")
    port = f.serve().address[1]
    c = open_export(port, "/vol/v/lun0", HOST_A)
    with f._lock:  # as a commit holds it
        c.request(P.CMD_WRITE, 0, 4096, data=b"w" * 4096)
        threading.Event().wait(0.3)  # the write reaches the device and waits for the lock
        t0 = time.monotonic()
        f.lun_unmap("/vol/v/lun0", "g")
        took = time.monotonic() - t0
    assert took < 5, f"unmap waited {took:.1f}s for the connection it cut"
    err, _h, _ = c.simple_reply()
    assert err == 0  # the write it had read is answered
    assert cut(c)
