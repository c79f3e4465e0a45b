"""The pool directory: its files, their modes, and making a new one.

Contract: a pool is one directory holding ``pool.db`` (SQLite, WAL mode:
the metadata), ``data/blocks`` (the data file), ``intent.log`` and
``pool.lock``; everything in it is owner-only. ``make`` creates those
files for a new pool (refusing a directory that holds one, or a block
size or capacity that cannot work) and leaves nothing open; ``Pool.open``
then opens them. ``owner_only`` fixes the modes of an existing pool;
``damage`` says what a failure to open a pool tells about its files.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import uuid as _uuid

from ..errors import InvalidArgument
from .errors import PoolDamaged, PoolExists
from .format import FORMAT_VERSION, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SCHEMA


def owner_only(path: str) -> None:
    """Make the pool directory and everything in it owner-only (0700 / 0600).

    A pool holds every LUN's data and the custspecs' password hashes; a
    pool made under the usual umask, or by an older Coppice, would let any
    local user read them. Run at create and at every open (a few files:
    cheap). Symlinks are not followed, and only what the pool's owner owns
    is changed.
    """
    uid = os.geteuid()
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files, None]:
            p = root if name is None else os.path.join(root, name)
            st = os.lstat(p)
            if st.st_uid != uid or stat.S_ISLNK(st.st_mode):
                continue
            want = 0o700 if stat.S_ISDIR(st.st_mode) else stat.S_IMODE(st.st_mode) & 0o700
            if stat.S_IMODE(st.st_mode) != want:
                os.chmod(p, want)


def damage(e: BaseException) -> str | None:
    """What a failure to open a pool says about its files, or None when it
    is not damage (the error then goes up as it is)."""
    if isinstance(e, PoolDamaged):
        return e.kwargs["detail"]
    if isinstance(e, sqlite3.DatabaseError):
        return f"its metadata database pool.db cannot be read ({e})"
    if isinstance(e, FileNotFoundError):
        return f"{e.filename} is missing"
    if isinstance(e, (ValueError, TypeError)):
        return f"pool.db holds an invalid value ({e})"
    return None


def make(path: str, block_size: int, capacity: int | None) -> str:
    """Create a new pool's files in directory ``path`` (created if missing,
    must not hold a pool); returns its absolute path."""
    if (
        not isinstance(block_size, int)
        or block_size < MIN_BLOCK_SIZE
        or block_size > MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise InvalidArgument(
            detail=f"block size {block_size!r} is invalid: use a power of two "
            f"between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} (default 4096)"
        )
    if capacity is not None and (not isinstance(capacity, int) or capacity < block_size):
        raise InvalidArgument(
            detail=f"capacity {capacity!r} is invalid: give a size in bytes of at "
            f"least one block ({block_size})"
        )
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "pool.db")):
        raise PoolExists(path=path)
    os.makedirs(os.path.join(path, "data"), mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    # Created 0600 before SQLite opens it: its -wal and -shm files take this mode.
    os.close(os.open(os.path.join(path, "pool.db"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(os.path.join(path, "pool.db"), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        for k, v in {
            "format_version": FORMAT_VERSION,
            "block_size": block_size,
            "epoch": 1,
            "next_pbn": 1,
            "next_page_id": 1,
            "uuid": str(_uuid.uuid4()),
            "capacity": capacity if capacity is not None else 0,
            "created": time.time(),
        }.items():
            db.execute("INSERT INTO pool (key, value) VALUES (?, ?)", (k, str(v)))
        db.execute("COMMIT")
    finally:
        db.close()
    os.close(os.open(os.path.join(path, "data", "blocks"), os.O_WRONLY | os.O_CREAT, 0o600))
    return path
