"""TEST BACKEND ONLY: a ``BlockDevice`` over one plain file.

Contract: lets the NBD server be tested (and benchmarked) before the filer
exists. Reads and writes are ``os.pread``/``os.pwrite`` on the file; trim
and write-zeroes punch holes (``fallocate``); extents come from
``SEEK_DATA``/``SEEK_HOLE``, so holes are reported as the file system sees
them. Durability is the file system's: ``flush`` and FUA are ``fdatasync``.
Thread-safe (positional I/O on one descriptor). Also holds the tiny
in-test resolver, ``DictResolver``.

``SlowReadsDevice`` is a ``FileDevice`` with ``start_read``
(``coppice.nbd.blockdev.AsyncReads``): each read completes on a thread of
its own after a delay the test chooses per request, so replies come back
out of order the way a remote store's do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable

from coppice.errors import InvalidArgument, NotFound, ReadOnly
from coppice.nbd.blockdev import EXTENT_HOLE, EXTENT_ZERO, Initiator

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class FileDevice:
    """A test-only block device backed by the file at ``path``."""

    def __init__(
        self,
        path: str,
        size: int | None = None,
        read_only: bool = False,
        block_size: int = 4096,
        can_multi_conn: bool = True,
    ):
        self.path = path
        if size is not None and not read_only:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)
            finally:
                os.close(fd)
        self.fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.block_size = block_size
        self.read_only = read_only
        self.can_trim = not read_only
        self.can_zero = not read_only
        self.can_fua = True
        self.can_multi_conn = can_multi_conn
        self.closed = False
        self.flushes = 0

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def pwrite(self, offset: int, data, fua: bool = False) -> None:
        if self.read_only:
            raise ReadOnly(detail=f"{self.path} is read-only")
        view = memoryview(data)
        while len(view):
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n
        if fua:
            os.fdatasync(self.fd)

    def trim(self, offset: int, length: int, fua: bool = False) -> None:
        if self.read_only:
            raise ReadOnly(detail=f"{self.path} is read-only")
        _fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
        if fua:
            os.fdatasync(self.fd)

    def zero(self, offset: int, length: int, may_trim: bool = True, fua: bool = False) -> None:
        if self.read_only:
            raise ReadOnly(detail=f"{self.path} is read-only")
        mode = (_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE) if may_trim else _FALLOC_FL_ZERO_RANGE
        try:
            _fallocate(self.fd, mode, offset, length)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            self.pwrite(offset, bytes(length))
        if fua:
            os.fdatasync(self.fd)

    def flush(self) -> None:
        self.flushes += 1
        os.fdatasync(self.fd)

    def extents(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        end = min(offset + length, self.size)
        out = []
        pos = offset
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                data = end  # no data after pos: hole to the end
            if data > pos:
                hole_end = min(data, end)
                out.append((pos, hole_end - pos, EXTENT_HOLE | EXTENT_ZERO))
                pos = hole_end
                continue
            hole = min(os.lseek(self.fd, pos, os.SEEK_HOLE), end)
            out.append((pos, hole - pos, 0))
            pos = hole
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class SlowReadsDevice(FileDevice):
    """A FileDevice whose reads complete asynchronously after
    ``delay(offset, length)`` seconds (default: none). ``started`` counts
    reads begun, ``in_flight`` those not yet completed."""

    def __init__(self, path: str, delay: Callable[[int, int], float] | None = None, **kw):
        super().__init__(path, **kw)
        self.delay = delay or (lambda offset, length: 0.0)
        self.lock = threading.Lock()
        self.started = 0
        self.in_flight = 0

    def start_read(self, offset: int, length: int, done) -> None:
        if offset < 0 or offset + length > self.size:
            raise InvalidArgument(detail=f"read {offset}+{length} outside {self.path}")
        with self.lock:
            self.started += 1
            self.in_flight += 1

        def run():
            try:
                data, exc = self.pread(offset, length), None
            except Exception as e:
                data, exc = None, e
            with self.lock:
                self.in_flight -= 1
            done(data, exc)

        t = threading.Timer(self.delay(offset, length), run)
        t.daemon = True
        t.start()


class DictResolver:
    """In-test ExportResolver: ``exports`` maps a name to (factory,
    description); ``allow(name, initiator)`` decides access (default: all)."""

    def __init__(
        self,
        exports: dict[str, tuple[Callable[[], object], str]] | None = None,
        allow: Callable[[str, Initiator], bool] | None = None,
    ):
        self.exports = dict(exports or {})
        self.allow = allow or (lambda name, initiator: True)
        self.callbacks: list[Callable[[str], None]] = []
        self.opened: list = []
        self.seen: list[Initiator] = []
        self.lock = threading.Lock()

    def list_exports(self, initiator: Initiator) -> list[tuple[str, str]]:
        self.seen.append(initiator)
        return [(n, d) for n, (_, d) in sorted(self.exports.items()) if self.allow(n, initiator)]

    def open_export(self, name: str, initiator: Initiator):
        self.seen.append(initiator)
        entry = self.exports.get(name)
        if entry is None or not self.allow(name, initiator):
            raise NotFound(what="export", detail=repr(name))
        dev = entry[0]()
        with self.lock:
            self.opened.append(dev)
        return dev

    def on_revoke(self, callback: Callable[[str], None]) -> None:
        self.callbacks.append(callback)

    def revoke(self, name: str) -> None:
        self.exports.pop(name, None)
        for cb in self.callbacks:
            cb(name)


class BatchingDevice(FileDevice):
    """TEST BACKEND ONLY: a ``FileDevice`` that also takes several writes in
    one call (``pwrite_many``, as the engine's LUNs do). It records the size
    of every batch, and a write touching ``bad_offsets`` fails with EIO, on
    its own or in a batch (a failing batch writes nothing)."""

    def __init__(self, path: str, **kw):
        super().__init__(path, **kw)
        self.batches: list[int] = []
        self.bad_offsets: set[int] = set()

    def pwrite(self, offset: int, data, fua: bool = False) -> None:
        if offset in self.bad_offsets:
            raise OSError(errno.EIO, f"injected failure at offset {offset}")
        super().pwrite(offset, data, fua)

    def pwrite_many(self, items) -> None:
        self.batches.append(len(items))
        if any(off in self.bad_offsets for off, _ in items):
            raise OSError(errno.EIO, "injected failure in a batch")
        for off, data in items:
            super().pwrite(off, data)
