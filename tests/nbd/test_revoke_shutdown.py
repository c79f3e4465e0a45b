"""revoke() and shutdown(): open connections are cut cleanly, the device is
flushed and closed, other exports keep being served."""

import os
import time

import nbd
import pytest

from coppice.nbd.server import NBDServer, NBDServerError
from tests.nbd.conftest import MiB


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_revoke_cuts_open_connections_to_that_export(serve):
    # After revoke("disk"), its connections fail and later opens are refused;
    # a connection to "other" is untouched; the device was flushed and closed.
    s = serve()
    victim, bystander = connect(s.uri("disk")), connect(s.uri("other"))
    victim.pwrite(b"v" * 4096, 0)
    bystander.pwrite(b"b" * 4096, 0)
    assert wait_for(lambda: len(s.server.connections()) == 2)
    s.resolver.revoke("disk")  # resolver -> on_revoke -> server.revoke
    with pytest.raises(nbd.Error):
        victim.pread(4096, 0)
    with pytest.raises(nbd.Error):
        connect(s.uri("disk"))
    assert bystander.pread(4096, 0) == b"b" * 4096
    disk_devs = [d for d in s.resolver.opened if d.path == s.path("disk")]
    assert disk_devs and all(d.closed for d in disk_devs)
    assert all(d.flushes >= 1 for d in disk_devs if not d.read_only)
    with open(s.path("disk"), "rb") as f:
        assert f.read(4096) == b"v" * 4096
    bystander.shutdown()


def test_revoke_returns_count(serve):
    s = serve()
    hs = [connect(s.uri("disk")) for _ in range(3)]
    assert wait_for(lambda: len(s.server.connections()) == 3)
    assert s.server.revoke("disk") == 3
    assert s.server.revoke("disk") == 0
    for h in hs:
        with pytest.raises(nbd.Error):
            h.pread(512, 0)


def test_shutdown_flushes_and_closes_everything(serve):
    # Graceful shutdown: every device flushed and closed, sockets gone, and
    # the listening port no longer accepts.
    s = serve()
    hs = [connect(s.uri(n)) for n in ("disk", "other", "ro")]
    hs[0].pwrite(b"x" * MiB, 0)
    uri = s.uri("disk")
    t0 = time.monotonic()
    s.server.shutdown(timeout=10)
    assert time.monotonic() - t0 < 5
    assert all(d.closed for d in s.resolver.opened)
    assert all(d.flushes >= 1 for d in s.resolver.opened if not d.read_only)
    assert not os.path.exists(s.server.unix_path or "/nonexistent")
    with pytest.raises(nbd.Error):
        connect(uri)


def test_disc_flushes_device(serve):
    # A clean client disconnect flushes and closes the device it used.
    s = serve()
    h = connect(s.uri("disk"))
    h.pwrite(b"q" * 512, 0)
    h.shutdown()
    assert wait_for(lambda: all(d.closed for d in s.resolver.opened))
    assert s.resolver.opened[0].flushes >= 1


def test_server_config_errors_are_actionable():
    with pytest.raises(NBDServerError, match="tls_context"):
        NBDServer(resolver=None, require_tls=True)
    with pytest.raises(NBDServerError, match="nothing to listen on"):
        NBDServer(resolver=None, port=None)
