"""Device errors reach the client as their errno, per request, and the
connection goes on (a fault-injecting wrapper stacked on the test device)."""

import errno

import nbd
import pytest

from coppice.errors import Corruption, NoSpace
from tests.nbd.file_device import FileDevice


class Faulty:
    """Wraps a device; raises ``exc`` for I/O touching [bad, bad+4096)."""

    def __init__(self, dev, bad, exc):
        self._dev, self._bad, self._exc = dev, bad, exc

    def __getattr__(self, name):
        return getattr(self._dev, name)

    def _check(self, offset, length):
        if offset < self._bad + 4096 and self._bad < offset + length:
            raise self._exc

    def pread(self, offset, length):
        self._check(offset, length)
        return self._dev.pread(offset, length)

    def pwrite(self, offset, data, fua=False):
        self._check(offset, len(data))
        return self._dev.pwrite(offset, data, fua)

    def extents(self, offset, length):
        self._check(offset, length)
        return self._dev.extents(offset, length)


def err_of(fn, *args):
    with pytest.raises(nbd.Error) as ei:
        fn(*args)
    e = ei.value.errno
    return getattr(errno, e) if isinstance(e, str) else e


@pytest.mark.parametrize("structured", [True, False])
def test_checksum_failure_is_eio_and_connection_survives(serve, structured):
    # A Corruption (checksum failure) on read is EIO; neighbouring reads work.
    s = serve()
    path = s.path("disk")
    s.resolver.exports["bad"] = (
        lambda: Faulty(FileDevice(path), 8192, Corruption(detail="checksum mismatch")),
        "bad",
    )
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.add_meta_context("base:allocation")
    h.connect_uri(s.uri("bad"))
    assert err_of(h.pread, 4096, 8192) == errno.EIO
    assert h.pread(4096, 0) == bytes(4096)
    if structured:
        assert err_of(h.block_status, 65536, 0, lambda *a: 0) == errno.EIO
    h.shutdown()


def test_full_volume_is_enospc(serve):
    # NoSpace from the device is ENOSPC on the write that hit it.
    s = serve()
    path = s.path("disk")
    s.resolver.exports["full"] = (lambda: Faulty(FileDevice(path), 0, NoSpace(detail="volume full")), "full")
    h = nbd.NBD()
    h.connect_uri(s.uri("full"))
    assert err_of(h.pwrite, b"x" * 4096, 0) == errno.ENOSPC
    h.pwrite(b"y" * 4096, 65536)
    assert h.pread(4096, 65536) == b"y" * 4096
    h.shutdown()


def test_unexpected_exception_is_eio(serve):
    # A bug in a device (not a CoppiceError) is EIO for that request only.
    s = serve()
    path = s.path("disk")
    s.resolver.exports["buggy"] = (lambda: Faulty(FileDevice(path), 0, ZeroDivisionError("bug")), "buggy")
    h = nbd.NBD()
    h.connect_uri(s.uri("buggy"))
    assert err_of(h.pread, 512, 0) == errno.EIO
    assert h.pread(512, 65536) == bytes(512)
    h.shutdown()
