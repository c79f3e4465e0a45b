"""The fingerprint index: on disk, with a small bounded part in memory.

Contract:

* ``FpIndex`` is the fingerprint index, ``<pool>/dedup/fpidx``: the
  canonical physical block of every content seen by a scan, as a file of
  16-byte (fingerprint, PBN) entries sorted by (fp, pbn) (several entries
  per fp only for true collisions). It is read a chunk at a time, never
  held whole: a scan walks fingerprints in increasing order and writes the
  next version beside it (``IndexMerge``: the fingerprints it matched get
  the entries it decided, every other entry is copied through), then
  renames it over the old one. 16 bytes a unique block on disk, a window
  of entries in memory.

* ``DedupStore`` is the job's state: one SQLite file per pool,
  ``<pool>/dedup/index.db`` (WAL), and the ``FpIndex`` beside it. It holds

      leafsig(oid, leaf, sig)   xxh3 of each leaf's (lbn, pbn) list at the
                                last scan: an incremental scan skips leaves
                                whose mapping has not changed
      covered(oid, lbn, n,      the current job's shared runs: blocks lbn ..
              aoid, albn)       lbn+n-1 of object oid now map what blocks
                                albn .. of object aoid mapped when collected
                                (their own rows are stale)
      meta(key, value)          pool uuid, the job record (JSON)
      fpidx(fp, pbn)            empty: where scanners before job format 3
                                kept the index (moved to the file on open)

  beside the job's collected rows, ``job-<id>.rows`` (appended while
  collecting) and ``job-<id>.b<i>`` (sorted buckets), binary arrays of
  ``kernels.ROW``, and ``job-<id>.idx``, the next index being written;
  see ``scanner``.

  Entries are hints, never trusted: every candidate is read back and
  compared byte for byte before anything is shared, and the engine checks
  again. A stale entry (block freed or rewritten) is found that way and
  dropped. SQLite's page cache is capped (``CACHE_KIB``) and the index is
  read in windows, so a scan's memory does not grow with the pool: that is
  the "bounded in-memory part".
  Fingerprints are unsigned 64-bit; they are stored as signed (``s64``).

* ``CompactTable`` is the in-memory part used by inline dedup: a fixed-size
  open-addressing table of (fingerprint, PBN) in two ``array('Q')``, 16
  bytes a slot, lossy (a full probe window evicts). Lookups are hints too.

* ``group_by_content`` is the pure byte-for-byte confirmation: it takes a
  ``read(pbn) -> bytes`` callback and never touches a pool.

Threading: one DedupStore per scanning thread; CompactTable is guarded by
the engine's lock (it is called from the write path only).
"""

from __future__ import annotations

import json
import os
import sqlite3
from array import array

import blake3
import numpy as np

CACHE_KIB = 4096
INDEX_FILE = "fpidx"  # the fingerprint index, beside index.db
# One fingerprint-index entry: 16 bytes, fingerprints as signed 64-bit (the
# rows' order), the file sorted by (fp, pbn).
IDX = np.dtype([("fp", "<i8"), ("pbn", "<i8")])
IDX_CHUNK = 1 << 16  # entries read at once while merging (1 MiB)
SMALL_GROUP = 16  # candidates compared directly, without digests
_S64 = 1 << 63
_U64 = 1 << 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fpidx (fp INTEGER NOT NULL, pbn INTEGER NOT NULL,
                                  PRIMARY KEY (fp, pbn)) WITHOUT ROWID;  -- before format 3: moved to the file
DROP TABLE IF EXISTS rows;
CREATE TABLE IF NOT EXISTS covered (oid INTEGER NOT NULL, lbn INTEGER NOT NULL, n INTEGER NOT NULL,
                                    aoid INTEGER NOT NULL, albn INTEGER NOT NULL,
                                    PRIMARY KEY (oid, lbn)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leafsig (oid INTEGER NOT NULL, leaf INTEGER NOT NULL, sig INTEGER NOT NULL,
                                    PRIMARY KEY (oid, leaf)) WITHOUT ROWID;
"""


def s64(x: int) -> int:
    return x - _U64 if x >= _S64 else x


def u64(x: int) -> int:
    return x + _U64 if x < 0 else x


class DedupStore:
    def __init__(self, pool):
        d = os.path.join(pool.path, "dedup")
        os.makedirs(d, exist_ok=True)
        self.path = os.path.join(d, "index.db")
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); a power loss
        # may lose the last commits, which only repeats scan work.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.executescript(SCHEMA)
        self.index = FpIndex(os.path.join(d, INDEX_FILE))
        uuid = self.meta_get("pool_uuid")
        if uuid != pool.uuid:
            # A new pool at an old path: nothing here describes it.
            self.db.execute("BEGIN")
            for t in ("fpidx", "covered", "leafsig", "meta"):
                self.db.execute(f"DELETE FROM {t}")
            self.db.execute("INSERT INTO meta VALUES ('pool_uuid', ?)", (json.dumps(pool.uuid),))
            self.db.execute("COMMIT")
            self.index.remove()
        elif self.db.execute("SELECT 1 FROM fpidx LIMIT 1").fetchone() is not None:
            self._migrate()

    def _migrate(self) -> None:
        """An index kept by an older scanner in SQLite: into the file, once
        (under SQLite's write lock, so a second opener finds it done)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = self.db.execute("SELECT fp, pbn FROM fpidx ORDER BY fp, pbn").fetchall()
            if rows:
                a = np.array(rows, dtype=np.int64)
                merged = np.concatenate([self.index.entries_array(), _as_idx(a[:, 0], a[:, 1])])
                self.index.replace_with(np.unique(merged))  # sorted by (fp, pbn), no duplicates
                self.db.execute("DELETE FROM fpidx")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self):
        self.db.close()

    def meta_get(self, key, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def meta_put(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta_delete(self, key):
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    # ---- the canonical-block index ------------------------------------------
    def lookup(self, fp: int) -> list[int]:
        return self.index.lookup(s64(fp))

    def entries(self):
        return [(int(f), int(p)) for f, p in self.index.entries_array().tolist()]

    def count(self) -> int:
        return self.index.count()

    def recent(self, limit: int):
        """Up to ``limit`` (fp, pbn), the highest PBNs first (the newest
        data): what inline mode warms its table with."""
        return self.index.recent(limit)


def _as_idx(fps, pbns) -> np.ndarray:
    out = np.empty(len(fps), dtype=IDX)
    out["fp"] = fps
    out["pbn"] = pbns
    return out


class FpIndex:
    """The canonical block of every content a scan has seen: a file of
    ``IDX`` entries (fingerprint, PBN; 16 bytes), sorted by (fp, pbn),
    several entries per fingerprint only for true collisions. Read in
    chunks, never held whole; a scan writes the next version beside it
    (``IndexMerge``) and renames it over this one when it finishes."""

    def __init__(self, path: str):
        self.path = path

    def count(self) -> int:
        try:
            return os.path.getsize(self.path) // IDX.itemsize
        except FileNotFoundError:
            return 0

    def chunks(self):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            while True:
                a = np.fromfile(f, dtype=IDX, count=IDX_CHUNK)
                if not len(a):
                    return
                yield a

    def entries_array(self) -> np.ndarray:
        parts = list(self.chunks())
        return np.concatenate(parts) if parts else np.empty(0, dtype=IDX)

    def lookup(self, sfp: int) -> list[int]:
        """PBNs indexed for the (signed) fingerprint ``sfp``."""
        out: list[int] = []
        for a in self.chunks():
            if a["fp"][-1] < sfp:
                continue
            i, j = np.searchsorted(a["fp"], sfp, "left"), np.searchsorted(a["fp"], sfp, "right")
            out += a["pbn"][i:j].tolist()
            if j < len(a):
                break
        return out

    def recent(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (unsigned fp, pbn), the highest PBNs first."""
        if limit <= 0:
            return []
        best = np.empty(0, dtype=IDX)
        for a in self.chunks():
            best = np.concatenate([best, a])
            if len(best) > limit:
                best = best[np.argpartition(-best["pbn"], limit - 1)[:limit]]
        best = best[np.argsort(-best["pbn"], kind="stable")]
        return [(u64(f), p) for f, p in zip(best["fp"].tolist(), best["pbn"].tolist(), strict=True)]

    def replace_with(self, entries: np.ndarray) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        entries.tofile(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class IndexMerge:
    """Writes the next version of the index while a scan walks fingerprints
    in increasing order. For each fingerprint the scan matched it decides
    the complete set of entries (``decide``); every other entry of the old
    index is copied through, so the new file is sorted too. ``pos`` (old
    entries consumed) and ``out`` (entries written) are the merge's cursor:
    the scan commits them with its own, and a resumed scan truncates the
    new file to ``out`` and reads the old one from ``pos``."""

    def __init__(self, old_path: str, new_path: str, pos: int = 0, out: int = 0):
        self.old_path, self.new_path = old_path, new_path
        try:
            self.old_fd = os.open(old_path, os.O_RDONLY)
            self.n_old = os.fstat(self.old_fd).st_size // IDX.itemsize
        except FileNotFoundError:
            self.old_fd, self.n_old = None, 0
        self.fd = os.open(new_path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < out * IDX.itemsize:
            self.close()
            raise IndexMergeLost(
                f"the scan's new index file {new_path} is shorter than its committed cursor "
                "(lost in a crash): the match phase starts over"
            )
        os.ftruncate(self.fd, out * IDX.itemsize)
        self.pos, self.out = min(pos, self.n_old), out
        self._dfp: list[np.ndarray] = []
        self._efp: list[np.ndarray] = []
        self._epbn: list[np.ndarray] = []

    def close(self) -> None:
        if self.old_fd is not None:
            os.close(self.old_fd)
            self.old_fd = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _read(self, at: int, n: int) -> np.ndarray:
        n = min(n, self.n_old - at)
        if n <= 0:
            return np.empty(0, dtype=IDX)
        buf = os.pread(self.old_fd, n * IDX.itemsize, at * IDX.itemsize)
        return np.frombuffer(buf, dtype=IDX)[: len(buf) // IDX.itemsize]

    def peek(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The old entries (fps, pbns; sorted) of the sorted distinct
        fingerprints ``u``, at or after the cursor. Consumes nothing."""
        fps, pbns = [], []
        at = self.pos
        while at < self.n_old and len(u):
            a = self._read(at, IDX_CHUNK)
            at += len(a)
            f = a["fp"]
            i = np.minimum(np.searchsorted(u, f), len(u) - 1)
            m = u[i] == f
            fps.append(f[m])
            pbns.append(a["pbn"][m])
            if f[-1] >= u[-1]:
                break
        if not fps:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(fps), np.concatenate(pbns)

    def decide(self, dfps: np.ndarray, efps: np.ndarray, epbns: np.ndarray) -> None:
        """Fingerprints ``dfps`` (increasing, above all decided before) now
        have exactly the entries (efps, epbns); written at ``flush``."""
        if len(dfps):
            self._dfp.append(np.asarray(dfps, dtype=np.int64))
            self._efp.append(np.asarray(efps, dtype=np.int64))
            self._epbn.append(np.asarray(epbns, dtype=np.int64))

    def flush(self) -> None:
        """Write what is decided, with the old entries below it copied
        through (page cache only: a commit after a crash that lost it is
        found short by the next ``IndexMerge`` and the match starts over)."""
        if not self._dfp:
            return
        dfp = np.concatenate(self._dfp)
        new = _as_idx(np.concatenate(self._efp), np.concatenate(self._epbn))
        self._dfp, self._efp, self._epbn = [], [], []
        upto = dfp[-1]
        parts = []
        while self.pos < self.n_old:
            a = self._read(self.pos, IDX_CHUNK)
            f = a["fp"]
            k = int(np.searchsorted(f, upto, "right"))
            keep = a[:k]
            i = np.minimum(np.searchsorted(dfp, keep["fp"]), len(dfp) - 1)
            parts.append(keep[dfp[i] != keep["fp"]])  # decided fingerprints: replaced
            self.pos += k
            if k < len(a):
                break
        parts.append(new)
        merged = np.concatenate(parts)
        merged = merged[np.lexsort((merged["pbn"], merged["fp"]))]
        self._write(merged)

    def _write(self, a: np.ndarray) -> None:
        mv = memoryview(np.ascontiguousarray(a).view(np.uint8))
        off = self.out * IDX.itemsize
        while mv:
            n = os.pwrite(self.fd, mv, off)
            mv, off = mv[n:], off + n
        self.out += len(a)

    def finish(self) -> None:
        """The rest of the old index copied through; the new file synced."""
        self.flush()
        while self.pos < self.n_old:
            a = self._read(self.pos, IDX_CHUNK)
            self.pos += len(a)
            self._write(a)
        os.fdatasync(self.fd)


class IndexMergeLost(Exception):
    """Internal: the scanner catches it and matches again from the start."""


class CompactTable:
    """Fixed-size, lossy fingerprint -> PBN table: 16 bytes a slot."""

    PROBE = 8

    def __init__(self, max_entries: int = 1 << 20):
        n = 16
        while n < max_entries:
            n <<= 1
        self.mask = n - 1
        self.keys = array("Q", bytes(8 * n))
        self.vals = array("Q", bytes(8 * n))

    @property
    def nbytes(self) -> int:
        return (len(self.keys) + len(self.vals)) * 8

    def __len__(self):
        return len(self.keys) - self.keys.count(0)

    def get(self, fp: int) -> int:
        fp = fp or 1
        keys, m = self.keys, self.mask
        i = fp & m
        for _ in range(self.PROBE):
            k = keys[i]
            if k == fp:
                return self.vals[i]
            if not k:
                return 0
            i = (i + 1) & m
        return 0

    def put(self, fp: int, pbn: int) -> None:
        fp = fp or 1
        keys, m = self.keys, self.mask
        i = first = fp & m
        for _ in range(self.PROBE):
            k = keys[i]
            if k == fp or not k:
                keys[i] = fp
                self.vals[i] = pbn
                return
            i = (i + 1) & m
        # Probe window full: evict the entry at the home slot (it is a cache).
        keys[first] = fp
        self.vals[first] = pbn

    def clear(self) -> None:
        n = len(self.keys)
        self.keys = array("Q", bytes(8 * n))
        self.vals = array("Q", bytes(8 * n))


def group_by_content(pbns, read) -> list[list[int]]:
    """Partition ``pbns`` into classes of byte-identical blocks.

    ``read(pbn)`` returns the block's bytes (or None if it cannot be read:
    that block is left out). Blocks are bucketed by BLAKE3 digest and each
    member is then compared byte for byte with its class's first member, so
    a class never holds two different blocks whatever the fingerprints
    said. Memory: up to SMALL_GROUP blocks for a small group; for a large
    one (many colliding contents) one digest per class, not one block."""
    pbns = list(pbns)
    if len(pbns) <= SMALL_GROUP:
        # The usual case (a few copies of one block): compare with each
        # class's first member directly, its bytes held in memory.
        reps: list[tuple[bytes, list[int]]] = []
        for p in pbns:
            data = read(p)
            if data is None:
                continue
            for rd, cls in reps:
                if rd == data:
                    cls.append(p)
                    break
            else:
                reps.append((data, [p]))
        return [cls for _, cls in reps]
    classes: dict[bytes, list[list[int]]] = {}
    rep_data: dict[int, bytes] = {}
    out: list[list[int]] = []
    for p in pbns:
        data = read(p)
        if data is None:
            continue
        h = blake3.blake3(data).digest()
        bucket = classes.setdefault(h, [])
        for cls in bucket:
            rep = cls[0]
            rd = rep_data.get(rep)
            if rd is None:
                rd = read(rep)
            if rd == data:
                cls.append(p)
                break
        else:
            cls = [p]
            bucket.append(cls)
            out.append(cls)
            if len(rep_data) < 64:  # keep a few representatives' bytes to save re-reads
                rep_data[p] = data
    return out
