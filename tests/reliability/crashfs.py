"""Simulated power loss under the engine: files that forget what was not synced.

``CrashFiles`` is an ``engine.fileio.Files`` for ``Pool.open(files=...)``.
Every file it opens keeps two images: what the process sees (every write,
at once) and what is durable (the real file on disk, changed only by
``sync``). Writes and truncations since the last ``sync`` are kept apart,
in order. ``CrashFiles`` counts the I/O calls that change something, by kind
("write" for writes and appends, "truncate", "sync"); at the
``cut_at``-th call of kind ``cut_kind`` the power goes: that call and
every later one raises ``PowerCut``. Choosing the kind first puts cuts
inside consistency points (a sync, a truncation of the log) as often as
between writes, though writes are far more numerous. ``lose`` then decides,
per file and per unsynced change, what the disk kept: each one is kept,
dropped, or (a write) torn at a 512-byte sector boundary, independently,
the way a page cache writes back in any order. The durable images are what
a reopen sees.

SQLite's own durability is trusted, not simulated: pool.db runs with
synchronous=FULL, so a COMMIT that returned is on disk and one that did
not return is not. ``snapshot_pool`` copies the pool directory at the cut
(pool.db and its WAL as SQLite left them, the data file and intent log as
``lose`` left them), which is what a machine would find after the power
came back.
"""

from __future__ import annotations

import errno
import os
import random
import shutil


class PowerCut(BaseException):
    """The simulated power went out (BaseException: nothing may catch it
    as an ordinary error and carry on)."""


class CrashFiles:
    def __init__(self, rnd: random.Random, cut_kind: str | None = None, cut_at: int = 0):
        self.rnd = rnd
        self.cut_kind = cut_kind
        self.cut_at = cut_at
        self.ops = {"write": 0, "truncate": 0, "sync": 0}
        self.dead = False
        self.files: list[CrashFile] = []

    def open(self, path: str, append: bool = False, create: bool = True) -> CrashFile:
        f = CrashFile(self, path, create)
        self.files.append(f)
        return f

    def tick(self, kind: str) -> None:
        if self.dead:
            raise PowerCut()
        self.ops[kind] += 1
        if kind == self.cut_kind and self.ops[kind] >= self.cut_at:
            self.dead = True
            raise PowerCut()

    def lose(self) -> None:
        """Decide what of each file's unsynced changes reached the disk."""
        self.dead = True
        for f in self.files:
            f.lose(self.rnd)


class CrashFile:
    def __init__(self, fs: CrashFiles, path: str, create: bool):
        if not os.path.exists(path):
            if not create:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            open(path, "wb").close()
        self.fs = fs
        self.path = path
        with open(path, "rb") as f:
            self.view = bytearray(f.read())
        self.pending: list[tuple] = []  # ("w", offset, bytes) | ("t", size)

    # -- reads see everything the process wrote ------------------------------
    def pread(self, n: int, off: int) -> bytes:
        return bytes(self.view[off : off + n])

    def preadv(self, bufs, off: int) -> int:
        done = 0
        for b in bufs:
            chunk = self.view[off + done : off + done + len(b)]
            b[: len(chunk)] = chunk
            done += len(chunk)
            if len(chunk) < len(b):
                break
        return done

    def read_all(self) -> bytes:
        return bytes(self.view)

    def size(self) -> int:
        return len(self.view)

    # -- changes are volatile until sync --------------------------------------
    def pwrite_all(self, mv, off: int) -> None:
        self.fs.tick("write")
        data = bytes(mv)
        if off > len(self.view):
            self.view.extend(bytes(off - len(self.view)))
        self.view[off : off + len(data)] = data
        self.pending.append(("w", off, data))

    def append_all(self, data) -> None:
        self.pwrite_all(data, len(self.view))

    def truncate(self, n: int) -> None:
        self.fs.tick("truncate")
        if n < len(self.view):
            del self.view[n:]
        else:
            self.view.extend(bytes(n - len(self.view)))
        self.pending.append(("t", n))

    def sync(self) -> None:
        self.fs.tick("sync")
        for op in self.pending:
            self._apply(op)
        self.pending.clear()

    def close(self) -> None:
        pass

    # -- the power cut ----------------------------------------------------------
    def _apply(self, op) -> None:
        with open(self.path, "r+b") as f:
            if op[0] == "t":
                f.truncate(op[1])
            else:
                f.seek(op[1])
                f.write(op[2])

    def lose(self, rnd: random.Random) -> None:
        for op in self.pending:
            fate = rnd.random()
            if fate < 0.4:
                continue  # never reached the disk
            if op[0] == "w" and fate < 0.6 and len(op[2]) > 512:
                cut = rnd.randrange(1, len(op[2]) // 512 + 1) * 512
                if rnd.random() < 0.5:
                    op = ("w", op[1], op[2][:cut])  # the head landed
                else:
                    op = ("w", op[1] + cut, op[2][cut:])  # the tail landed
                if not op[2]:
                    continue
            self._apply(op)
        self.pending.clear()


def snapshot_pool(src: str, dst: str) -> None:
    """Copy what a machine would find in pool directory ``src`` after the
    power came back (call after ``CrashFiles.lose``)."""
    os.makedirs(os.path.join(dst, "data"))
    for name in ("pool.db", "pool.db-wal", "intent.log", os.path.join("data", "blocks")):
        s = os.path.join(src, name)
        if os.path.exists(s):
            shutil.copyfile(s, os.path.join(dst, name))
