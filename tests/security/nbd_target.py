"""A product NBD target for security tests: a filer pool and the product's
``NBDServer`` over its export resolver, plus raw clients that play several
hosts (every address in 127.0.0.0/8 reaches loopback, so a client bound to
127.0.0.2 is another initiator than one from 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from coppice.filer import Filer
from coppice.nbd import protocol as P
from coppice.nbd.server import NBDServer
from tests.nbd.rawclient import RawClient

MiB = 1 << 20
HOST_A, HOST_B = "127.0.0.1", "127.0.0.2"
SNAP = "/vol/v/.snapshot/s1/lun0"


@pytest.fixture
def nbd_pool():
    """A Filer with ``serve(**server_kwargs) -> NBDServer`` and ``dir``."""
    d = tempfile.mkdtemp(prefix="coppice-sec-", dir="/var/tmp")
    f = Filer.create(os.path.join(d, "pool"))
    servers = []

    def serve(**kw) -> NBDServer:
        kw.setdefault("unix_path", os.path.join(d, "nbd.sock"))
        kw.setdefault("port", 0)
        s = NBDServer(f.resolver(), **kw).start()
        servers.append(s)
        return s

    f.serve = serve
    f.dir = d
    yield f
    for s in servers:
        s.shutdown(timeout=10)
    f.close()
    shutil.rmtree(d, ignore_errors=True)


def write(f, path, data, offset=0):
    dev = f.open_lun(path)
    dev.pwrite(offset, data)
    dev.close()


def refused(port, name, source):
    c = RawClient(port, source=source)
    c.greeting()
    try:
        return c.try_go(name) == P.REP_ERR_UNKNOWN
    finally:
        c.close()


def cut(c: RawClient) -> bool:
    """True once the server has closed this transmission connection."""
    try:
        c.read(0, 512)
    except (EOFError, ConnectionError, OSError):
        return True
    return False
