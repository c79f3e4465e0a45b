"""Block-map pages and the bounded cache that pages them in from pool.db.

Contract: owns every block-map page in memory and every reference-count
change not yet committed:

* clean pages live in an LRU bounded by ``capacity_bytes``; dirty pages are
  pinned (held in ``dirty``) until the next consistency point writes them,
  and the pool starts one as soon as ``over_dirty_limit`` says so. Memory is
  therefore bounded by capacity + dirty limit, never by volume size.
* reference counts of pages that are not in memory and of data blocks are
  kept as deltas (``page_delta``, ``block_delta``) applied in bulk at the
  consistency point — the hot path never queries SQLite for a refcount.
  The blocks an overwrite replaces lose one reference each; they are
  appended to ``unref`` (8 bytes a block, leaf slices at C speed) rather
  than counted in ``block_delta``, so a sustained overwrite runs several
  times longer between consistency points in less memory;
  ``unref_counts`` compacts them (sorted PBNs and counts) for the
  consistency point's fold and for exact counts in between.
* a page whose count reaches 0 is freed at once: its children lose a
  reference (iteratively, no recursion limit) and its row is deleted at the
  consistency point.

Not thread-safe: the pool's lock covers every call.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import OrderedDict, defaultdict

from ..errors import Corruption
from . import datapath
from .checksum import page_checksum
from .format import INTERIOR_BYTES, INTERIOR_FANOUT, LEAF_BYTES, LEAF_FANOUT


class MetadataCorruption(Corruption):
    """Block-map page {page} is corrupt ({detail}); run `coppice fsck` and
    restore the affected volume from a snapshot or backup."""


# Overwritten blocks held in ``unref`` before a consistency point is due:
# 2^18 (2 MiB; 1 GiB of 4 KiB overwrites), the bound the dict had. A longer
# interval was measured worse for a sustained 1 MiB overwrite: the data file
# holds the new blocks and the replaced ones until the consistency point, so
# every write lands on fresh pages the kernel must find (under memory
# pressure, 3-4x the CPU per write) instead of reusing freed, cached ones.
UNREF_LIMIT = 1 << 18


class Page:
    """One block-map page. Leaf (level 0): ``ents[0:LEAF_FANOUT]`` are PBNs,
    ``ents[LEAF_FANOUT:]`` their checksums. Interior: ``ents`` are child
    page ids."""

    __slots__ = ("id", "level", "refs", "buf", "ents")

    def __init__(self, pid: int, level: int, refs: int, buf: bytearray):
        self.id = pid
        self.level = level
        self.refs = refs
        self.buf = buf
        self.ents = memoryview(buf).cast("Q")

    @classmethod
    def empty(cls, pid: int, level: int) -> Page:
        return cls(pid, level, 1, bytearray(LEAF_BYTES if level == 0 else INTERIOR_BYTES))

    def children(self):
        """Non-zero child pointers (PBNs for a leaf, page ids above)."""
        n = LEAF_FANOUT if self.level == 0 else INTERIOR_FANOUT
        ents = self.ents
        return [ents[i] for i in range(n) if ents[i]]


class PageCache:
    def __init__(self, db: sqlite3.Connection, capacity_bytes: int, next_page_id: int):
        self.db = db
        self.capacity = max(16, capacity_bytes // LEAF_BYTES)
        self.dirty_limit = max(64, self.capacity // 2)
        self.clean: OrderedDict[int, Page] = OrderedDict()
        self.dirty: dict[int, Page] = {}
        self.freed: set[int] = set()  # page ids to delete at the CP
        self.page_delta: dict[int, int] = defaultdict(int)
        self.block_delta: dict[int, int] = defaultdict(int)
        self.unref = array("Q")  # PBNs that lost one reference each; 0 = nothing (a hole)
        self._unref_counts = None  # (PBNs ascending, counts) compacted from unref so far
        self.next_page_id = next_page_id
        self.loads = 0

    # -- lookup -------------------------------------------------------------
    def get(self, pid: int) -> Page:
        p = self.dirty.get(pid)
        if p is not None:
            return p
        p = self.clean.get(pid)
        if p is not None:
            self.clean.move_to_end(pid)
            return p
        return self._load(pid)

    def _load(self, pid: int) -> Page:
        if pid in self.freed:
            raise MetadataCorruption(page=pid, detail="pointer to a freed page")
        row = self.db.execute("SELECT level, refs, csum, data FROM pages WHERE id=?", (pid,)).fetchone()
        if row is None:
            raise MetadataCorruption(page=pid, detail="page is missing from pool.db")
        level, refs, csum, data = row
        if page_checksum(data) != csum:
            raise MetadataCorruption(page=pid, detail="checksum mismatch")
        self.loads += 1
        p = Page(pid, level, refs, bytearray(data))
        d = self.page_delta.pop(pid, 0)
        if d:
            p.refs += d
            self.dirty[pid] = p
        else:
            self._insert_clean(p)
        return p

    def _insert_clean(self, p: Page) -> None:
        self.clean[p.id] = p
        while len(self.clean) > self.capacity:
            self.clean.popitem(last=False)

    # -- mutation -----------------------------------------------------------
    def mark_dirty(self, p: Page) -> None:
        if p.id not in self.dirty:
            self.clean.pop(p.id, None)
            self.dirty[p.id] = p

    def new_page(self, level: int) -> Page:
        pid = self.next_page_id
        self.next_page_id += 1
        p = Page.empty(pid, level)
        self.dirty[pid] = p
        return p

    def cow(self, p: Page) -> Page:
        """A private copy of shared page p: the copy's children gain a
        reference, p loses one (it stays alive: it was shared)."""
        pid = self.next_page_id
        self.next_page_id += 1
        q = Page(pid, p.level, 1, bytearray(p.buf))
        self.dirty[pid] = q
        if p.level == 0:
            bd = self.block_delta
            for c in p.children():
                bd[c] += 1
        else:
            for c in p.children():
                self.incref_page(c)
        p.refs -= 1
        self.mark_dirty(p)
        return q

    def incref_page(self, pid: int) -> None:
        p = self.dirty.get(pid) or self.clean.get(pid)
        if p is not None:
            p.refs += 1
            self.mark_dirty(p)
        else:
            self.page_delta[pid] += 1

    def decref_page(self, pid: int) -> None:
        """Drop one reference; free the page and what only it held at 0."""
        stack = [pid]
        bd = self.block_delta
        while stack:
            p = self.get(stack.pop())
            p.refs -= 1
            if p.refs > 0:
                self.mark_dirty(p)
                continue
            if p.refs < 0:
                raise MetadataCorruption(page=p.id, detail="reference count below zero")
            self.dirty.pop(p.id, None)
            self.clean.pop(p.id, None)
            self.freed.add(p.id)
            if p.level == 0:
                for c in p.children():
                    bd[c] -= 1
            else:
                stack.extend(p.children())

    def incref_block(self, pbn: int) -> None:
        self.block_delta[pbn] += 1

    def incref_blocks(self, pbns) -> None:
        bd = self.block_delta
        for p in pbns:
            bd[p] += 1

    def decref_block(self, pbn: int) -> None:
        self.block_delta[pbn] -= 1

    def unref_counts(self):
        """(PBNs ascending, how many references each lost) of every block
        put in ``unref`` since the last consistency point, as numpy arrays;
        compacts ``unref`` into them."""
        import numpy as np

        if self.unref:
            a = np.frombuffer(self.unref, dtype=np.uint64).astype(np.int64)
            self.unref = array("Q")
            a = a[a != 0]
            # each entry is one lost reference: sort and count runs (a plain
            # sort, not the argsort and gathers of a weighted sum); a
            # sequential overwrite left them in order already: no sort
            if len(a) > 1 and not (a[1:] >= a[:-1]).all():
                a.sort()
            first = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1]))) if len(a) else a
            keys, counts = a[first], np.diff(np.concatenate((first, [len(a)])))
            if self._unref_counts is not None:
                keys, counts = datapath.sum_by_key(
                    np.concatenate((self._unref_counts[0], keys)),
                    np.concatenate((self._unref_counts[1], counts)),
                )
            self._unref_counts = (keys, counts.astype(np.int64))
        if self._unref_counts is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        return self._unref_counts

    def unref_compacted(self):
        """What ``unref_counts`` compacted so far (None: nothing yet)."""
        return self._unref_counts

    def pending_block_deltas(self, pbns) -> dict[int, int]:
        """{pbn: pending change of its reference count} for ``pbns``."""
        bd = self.block_delta
        out = {p: bd.get(p, 0) for p in pbns}
        if self.unref or self._unref_counts is not None:
            import numpy as np

            keys, counts = self.unref_counts()
            want = np.fromiter(out, dtype=np.int64, count=len(out))
            pos = np.searchsorted(keys, want)
            pos[pos >= len(keys)] = 0
            hit = (keys[pos] == want) if len(keys) else np.zeros(len(want), dtype=bool)
            for p, c in zip(want[hit].tolist(), counts[pos[hit]].tolist(), strict=True):
                out[p] -= c
        return out

    def block_changes(self) -> int:
        """How many block reference-count changes are pending (a bound on
        the rows the next consistency point writes)."""
        n = len(self.block_delta) + len(self.unref)
        if self._unref_counts is not None:
            n += len(self._unref_counts[0])
        return n

    def over_dirty_limit(self) -> bool:
        return (
            len(self.dirty) > self.dirty_limit
            or len(self.block_delta) > (1 << 18)
            or len(self.unref) + (len(self._unref_counts[0]) if self._unref_counts else 0) > UNREF_LIMIT
        )

    def drop_all(self) -> None:
        """Forget everything in memory (after a rolled-back transaction)."""
        self.clean.clear()
        self.dirty.clear()
        self.freed.clear()
        self.page_delta.clear()
        self.block_delta.clear()
        self.unref = array("Q")
        self._unref_counts = None

    # -- consistency point --------------------------------------------------
    def write_out(self) -> None:
        """Write dirty pages, freed pages and page-refcount deltas into the
        open transaction. Block deltas are the pool's to apply."""
        db = self.db
        if self.dirty:
            db.executemany(
                "INSERT OR REPLACE INTO pages (id, level, refs, csum, data) VALUES (?,?,?,?,?)",
                [(p.id, p.level, p.refs, page_checksum(p.buf), bytes(p.buf)) for p in self.dirty.values()],
            )
        if self.freed:
            db.executemany("DELETE FROM pages WHERE id=?", [(i,) for i in self.freed])
        if self.page_delta:
            db.executemany(
                "UPDATE pages SET refs = refs + ? WHERE id=?",
                [(d, i) for i, d in self.page_delta.items() if d],
            )

    def committed(self) -> None:
        """The consistency point committed: dirty pages become clean."""
        for p in self.dirty.values():
            self._insert_clean(p)
        self.dirty.clear()
        self.freed.clear()
        self.page_delta.clear()
        self.block_delta.clear()
        self.unref = array("Q")
        self._unref_counts = None
