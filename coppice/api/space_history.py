"""Physical space over time: the daemon samples the pool, the console plots it.

Contract: ``SpaceHistory(pool_dir)`` is a ring of fixed-size records in
``POOL/space-history.bin`` — ``SLOTS`` samples (three days at one a
minute), so the file never grows past ~170 KiB however long the daemon
runs. ``record(sample)`` overwrites the oldest slot; ``samples(since)``
returns what the ring holds, oldest first, as dicts ``{t, used, free,
total, metadata}`` (POSIX seconds and bytes). ``task(filer)`` is the
scheduler task the daemon installs: one sample per ``interval`` seconds
(``COPPICE_SPACE_SAMPLE_SECONDS``, default 60), taken from
``filer.pool_info()``, which costs a few counters and no block walk.

A sample is written without fsync: losing the last minute of a plot after
a power cut is harmless, and a torn record (t of 0 or a value that does
not parse) is simply skipped on read. A file of another layout is
replaced, not misread.
"""

from __future__ import annotations

import os
import struct
import threading

FILE = "space-history.bin"
SLOTS = 3 * 24 * 60
MAGIC = b"CPSPACE1"
HEADER = struct.Struct("<8sII")  # magic, slots, record size
RECORD = struct.Struct("<dqqqq")  # t, used, free, total, metadata
FIELDS = ("t", "used", "free", "total", "metadata")
DEFAULT_INTERVAL = 60.0


def sample_interval() -> float:
    try:
        return max(0.5, float(os.environ.get("COPPICE_SPACE_SAMPLE_SECONDS", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


class SpaceHistory:
    def __init__(self, pool_dir: str, slots: int = SLOTS):
        self.path = os.path.join(pool_dir, FILE)
        self.slots = slots
        self._lock = threading.Lock()
        self._next: int | None = None

    # ---- file ---------------------------------------------------------------------------
    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        head = os.pread(fd, HEADER.size, 0)
        want = HEADER.pack(MAGIC, self.slots, RECORD.size)
        if head != want:  # new file, or another layout: start an empty ring
            os.ftruncate(fd, 0)
            os.pwrite(fd, want, 0)
            os.ftruncate(fd, HEADER.size + self.slots * RECORD.size)
            self._next = 0
        return fd

    def _read_all(self, fd: int) -> list[tuple[int, tuple]]:
        data = os.pread(fd, self.slots * RECORD.size, HEADER.size)
        out = []
        for i in range(len(data) // RECORD.size):
            rec = RECORD.unpack_from(data, i * RECORD.size)
            if rec[0] > 0:
                out.append((i, rec))
        return out

    # ---- API ----------------------------------------------------------------------------
    def record(self, sample: dict) -> None:
        rec = RECORD.pack(float(sample["t"]), *(int(sample[k]) for k in FIELDS[1:]))
        with self._lock:
            fd = self._open()
            try:
                if self._next is None:
                    recs = self._read_all(fd)
                    newest = max(recs, key=lambda r: r[1][0], default=None)
                    self._next = 0 if newest is None else (newest[0] + 1) % self.slots
                os.pwrite(fd, rec, HEADER.size + self._next * RECORD.size)
                self._next = (self._next + 1) % self.slots
            finally:
                os.close(fd)

    def samples(self, since: float | None = None) -> list[dict]:
        with self._lock:
            if not os.path.exists(self.path):
                return []
            fd = self._open()
            try:
                recs = [r for _, r in self._read_all(fd)]
            finally:
                os.close(fd)
        recs.sort(key=lambda r: r[0])
        return [dict(zip(FIELDS, r, strict=True)) for r in recs if since is None or r[0] >= since]


def sample(filer, now: float) -> dict:
    info = filer.pool_info()
    return {
        "t": now,
        "used": info["used_bytes"],
        "free": info["free_bytes"],
        "total": info["total_bytes"],
        "metadata": info.get("metadata_bytes") or 0,
    }


def task(filer, interval: float | None = None):
    """The scheduler task that records one sample per interval into the pool's ring."""
    from .scheduler import Task

    history = SpaceHistory(filer.path)

    def run(now: float):
        history.record(sample(filer, now))

    return Task("space_history", run, interval=interval or sample_interval())
