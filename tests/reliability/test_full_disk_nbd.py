"""A full file system seen through NBD, the way a client meets it.

The product's NBD server serves a filer LUN from a pool on an 8 MiB tmpfs;
a libnbd client writes and flushes until the server answers ENOSPC. Every
write acknowledged before reads back through NBD, the daemon keeps serving
(a refused write is refused again, reads go on), and once the file system
is grown the same connection writes again; after the server stops and the
pool is reopened, every acknowledged write is there and fsck is clean.
"""

import errno
import os

import nbd

from coppice.filer import Filer
from coppice.nbd.server import NBDServer

CHUNK = 64 << 10


def _connect(server, export):
    h = nbd.NBD()
    h.connect_uri(f"nbd://127.0.0.1:{server.address[1]}/{export}")  # the export name is the LUN path
    return h


def _enospc(e: nbd.Error) -> bool:
    return e.errno in ("ENOSPC", errno.ENOSPC)  # libnbd gives the name


def _fill(h, acked, start, limit):
    for i in range(start, limit):
        data = os.urandom(CHUNK)
        try:
            h.pwrite(data, i * CHUNK)
            h.flush()
        except nbd.Error as e:
            return i, e
        acked[i] = data
    raise AssertionError("the file system never filled up")


def test_full_file_system_through_nbd(small_fs):
    fs = small_fs(8)
    path = os.path.join(fs.path, "pool")
    f = Filer.create(path)
    f.vol_create("v", 1 << 30)
    f.lun_create("/vol/v/disk", 256 << 20)
    f.igroup_create("local", ["127.0.0.1"], protocol="nbd")
    f.lun_map("/vol/v/disk", "local")
    server = NBDServer(f.resolver(), port=0, unix_path=os.path.join(fs.path, "nbd.sock")).start()
    acked = {}
    try:
        h = _connect(server, "/vol/v/disk")
        refused, err = _fill(h, acked, 0, 1024)
        assert _enospc(err), err
        assert len(acked) > 20
        for i, d in acked.items():
            assert h.pread(CHUNK, i * CHUNK) == d, f"chunk {i} lost"
        try:
            h.pwrite(os.urandom(CHUNK), refused * CHUNK)
            raise AssertionError("a write on a full file system was accepted")
        except nbd.Error as e:
            assert _enospc(e), e
        assert h.pread(CHUNK, refused * CHUNK) == bytes(CHUNK)
        fs.resize(16)
        more, _ = _fill(h, acked, refused, 2048)
        assert more > refused + 20
        h.shutdown()
    finally:
        server.shutdown(timeout=10)
        f.close()
    f = Filer.open(path)
    try:
        dev = f.open_lun("/vol/v/disk")
        for i, d in acked.items():
            assert bytes(dev.pread(i * CHUNK, CHUNK)) == d, f"chunk {i} lost after reopen"
        rep = f.fsck()
        assert rep["clean"], rep["problems"]
    finally:
        f.close()
