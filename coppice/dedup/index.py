"""The fingerprint index: on disk, with a small bounded part in memory.

Contract:

* ``DedupStore`` is the on-disk part: one SQLite file per pool,
  ``<pool>/dedup/index.db`` (WAL). It holds

      fpidx(fp, pbn)            the canonical physical block of every content
                                seen by a scan, keyed by fingerprint (several
                                rows per fp only for true collisions)
      leafsig(oid, leaf, sig)   xxh3 of each leaf's (lbn, pbn) list at the
                                last scan: an incremental scan skips leaves
                                whose mapping has not changed
      covered(oid, lbn, n,      the current job's shared runs: blocks lbn ..
              aoid, albn)       lbn+n-1 of object oid now map what blocks
                                albn .. of object aoid mapped when collected
                                (their own rows are stale)
      meta(key, value)          pool uuid, the job record (JSON)

  beside the job's collected rows, ``job-<id>.rows`` (appended while
  collecting) and ``job-<id>.b<i>`` (sorted buckets), binary arrays of
  ``kernels.ROW``; see ``scanner``.

  Entries are hints, never trusted: every candidate is read back and
  compared byte for byte before anything is shared, and the engine checks
  again. A stale entry (block freed or rewritten) is found that way and
  dropped. SQLite's page cache is capped (``CACHE_KIB``), so a scan's memory
  does not grow with the pool: that is the "bounded in-memory part".
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

CACHE_KIB = 4096
SMALL_GROUP = 16  # candidates compared directly, without digests
_S64 = 1 << 63
_U64 = 1 << 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fpidx (fp INTEGER NOT NULL, pbn INTEGER NOT NULL,
                                  PRIMARY KEY (fp, pbn)) WITHOUT ROWID;
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
        uuid = self.meta_get("pool_uuid")
        if uuid != pool.uuid:
            # A new pool at an old path: nothing here describes it.
            self.db.execute("BEGIN")
            for t in ("fpidx", "covered", "leafsig", "meta"):
                self.db.execute(f"DELETE FROM {t}")
            self.db.execute("INSERT INTO meta VALUES ('pool_uuid', ?)", (json.dumps(pool.uuid),))
            self.db.execute("COMMIT")

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
        return [r[0] for r in self.db.execute("SELECT pbn FROM fpidx WHERE fp=?", (s64(fp),))]

    def entries(self):
        return self.db.execute("SELECT fp, pbn FROM fpidx").fetchall()

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM fpidx").fetchone()[0]

    def recent(self, limit: int):
        """Up to ``limit`` (fp, pbn), the highest PBNs first (the newest
        data): what inline mode warms its table with."""
        return [
            (u64(f), p)
            for f, p in self.db.execute("SELECT fp, pbn FROM fpidx ORDER BY pbn DESC LIMIT ?", (limit,))
        ]


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
