"""Headroom on the pool's file system, so a consistency point can always commit.

Contract: the data path asks ``admit(consume, keep)`` before a write that
takes ``consume`` more bytes of the file system (data-file growth plus its
intent-log record): it answers True only if ``keep`` bytes (what the next
consistency point needs in pool.db and its WAL) stay free afterwards. A
write refused here changes nothing and is reported as ENOSPC; the pool
serves again as soon as the file system has room, with no restart.

Behind the estimate sits a reserve file (``reserve``, preallocated): if a
consistency point still fails for lack of space, ``spend`` frees the
reserve and the consistency point is retried once; ``arm`` takes the
reserve back when space returns. While it is spent, writes are admitted
only with the reserve's size free on top.

Cost: one ``statvfs`` per write only while the file system is within
``NEAR`` of full; farther, ``admit_fast`` spends a budget (what each write
may take, its metadata included) with one subtraction, and a full check
runs each time ``BUDGET_MAX`` of it is spent (others use the file system
too; a write that still finds it full is refused by the kernel, changing
nothing, and the reserve covers a consistency point).
"""

from __future__ import annotations

import errno
import os

from ..errors import NoSpace

NEAR = 4 << 20  # this close to full, every write checks the file system
BUDGET_MAX = 32 << 20
MIN_RESERVE = 256 << 10
MAX_RESERVE = 4 << 20


class FileSystemFull(NoSpace):
    """The file system holding pool {path} is full: {needed} bytes needed,
    {free} free beyond the room kept for committing metadata. Free space on
    that file system or grow it; the pool serves again at once, without a
    restart."""


class MetadataNoSpace(NoSpace):
    """Pool {path} could not commit its metadata: the file system holding it
    is full. Every acknowledged write is kept in the intent log; free space
    on that file system or grow it and the pool commits and serves again."""


def is_full(e: BaseException) -> bool:
    """Did ``e`` fail for lack of space (an OSError, SQLite's SQLITE_FULL,
    or one of ours)?"""
    code = getattr(e, "sqlite_errorcode", None)
    return (
        code == 13  # SQLITE_FULL
        or isinstance(e, OSError)
        and e.errno in (errno.ENOSPC, errno.EDQUOT)
        or isinstance(e, NoSpace)
    )


class SpaceGuard:
    def __init__(self, path: str):
        self.path = path
        self.reserve_path = os.path.join(path, "reserve")
        st = os.statvfs(path)
        total = st.f_blocks * st.f_frsize
        self.reserve_bytes = max(MIN_RESERVE, min(MAX_RESERVE, total // 64))
        self.armed = False
        self._free = 0
        self._budget = 0
        self._room = 0  # free beyond what was needed at the last check, less what was spent since
        self.arm()

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        self._free = st.f_bavail * st.f_frsize
        return self._free

    def admit_fast(self, cost: int) -> bool:
        """Spend ``cost`` (a write's bytes plus what it adds to the next
        consistency point) from the budget the last full check left; False:
        make the full check (``admit``)."""
        b = self._budget - cost
        if b > 0:
            self._budget = b
            self._room -= cost
            return True
        return False

    def near_full(self) -> bool:
        """Within ``2 * NEAR`` of the limit, as far as the last check and
        what was admitted since tell?"""
        return self._room < 2 * NEAR

    def admit(self, consume: int, keep: int) -> bool:
        need = consume + keep
        if not self.armed:
            self.arm()
        free = self.free_bytes()
        if not self.armed:
            need += self.reserve_bytes
        self._room = free - need
        if free < need:
            self._budget = 0
            return False
        self._free -= consume
        self._budget = min(BUDGET_MAX, free - need - NEAR)
        return True

    def arm(self) -> bool:
        """Take the reserve (again); False if the file system lacks room."""
        if self.armed:
            return True
        try:
            fd = os.open(self.reserve_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.reserve_bytes)
            self.armed = True
        except OSError:
            os.ftruncate(fd, 0)  # a partial reservation would only hide space
        finally:
            os.close(fd)
        self._budget = 0
        return self.armed

    def spend(self) -> bool:
        """Give the reserve to the file system; True if there was one."""
        if not self.armed:
            return False
        with open(self.reserve_path, "r+b") as f:
            f.truncate(0)
        self.armed = False
        self._budget = 0
        return True

    def check(self, consume: int, keep: int) -> None:
        if not self.admit(consume, keep):
            raise FileSystemFull(path=self.path, needed=consume, free=max(0, self._free - keep))
