"""The files under the engine: the data file and the intent log.

Contract: every byte the engine writes to ``data/blocks`` or
``intent.log`` and every ``fdatasync`` it makes goes through a ``File``
opened by a ``Files`` factory, so a test can swap in files that keep
unsynced writes apart and lose or tear them at a simulated power cut
(``tests/reliability/crashfs.py``). ``sync`` is the durability point: what
was written before a ``sync`` returned survives power loss, nothing else is
promised. ``pwrite_all`` and ``append_all`` either write every byte or
raise (a short write is continued; an error propagates, the caller undoes).
"""

from __future__ import annotations

import os


class File:
    """A file on the real file system, by descriptor."""

    def __init__(self, path: str, append: bool = False, create: bool = True):
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | (os.O_APPEND if append else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o600)

    def pread(self, n: int, off: int) -> bytes:
        return os.pread(self.fd, n, off)

    def preadv(self, bufs, off: int) -> int:
        return os.preadv(self.fd, bufs, off)

    def pwrite_all(self, mv, off: int) -> None:
        w = os.pwrite(self.fd, mv, off)
        if w == len(mv):
            return
        mv = memoryview(mv)[w:]
        off += w
        while len(mv):
            w = os.pwrite(self.fd, mv, off)
            mv = mv[w:]
            off += w

    def append_all(self, data) -> None:
        """Append every byte of ``data`` (O_APPEND); continue short writes."""
        w = os.write(self.fd, data)
        if w == len(data):
            return
        mv = memoryview(data)[w:]
        while len(mv):
            w = os.write(self.fd, mv)
            mv = mv[w:]

    def read_all(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, n: int) -> None:
        os.ftruncate(self.fd, n)

    def preallocate(self, off: int, n: int) -> None:
        """Have the file system hold [off, off+n) (the file grows to cover
        it); the bytes there read as zeros until written."""
        os.posix_fallocate(self.fd, off, n)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class Files:
    """Opens the engine's files. The default is the real file system."""

    def open(self, path: str, append: bool = False, create: bool = True) -> File:
        """``create=False``: a missing file is an error (FileNotFoundError)."""
        return File(path, append, create)


OS_FILES = Files()
