"""Space accounting: what a volume or snapshot holds, what it shares, what
the pool has left.

Contract: ``Accounting`` is the part of ``Pool`` that counts. ``space``
answers, for one volume or snapshot, its logical size, the blocks written
and how many of them are unique (freed if it alone were deleted) versus
shared with snapshots, clones or dedup partners; ``pool_space`` the
pool's used, free and total bytes, against its capacity or, without one,
the file system's free space. Counts are exact: committed reference
counts plus the pending deltas of the open consistency point. Reading
only (``pool_space`` commits a consistency point first).

The file-system headroom a write needs (the reserve a consistency point
keeps, ENOSPC before anything is written) is ``engine/space.py``'s
``SpaceGuard``, which the data path asks.

A mixin of ``Pool`` (``engine/pool.py``).
"""

from __future__ import annotations

import os

from . import blockmap
from .format import LEAF_FANOUT
from .records import ObjRec, SpaceInfo


class Accounting:
    """Reference counts and space figures of a ``Pool``."""

    # ---- reference counts --------------------------------------------------------
    def _stored_refs(self, pbns) -> dict[int, int]:
        """Committed counts of the given blocks that are shared (block_refs
        rows); a block not in the result has 1 if allocated."""
        stored: dict[int, int] = {}
        keys = list(pbns)
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[i : i + 900]
            q = "SELECT pbn, refs FROM block_refs WHERE pbn IN ({})".format(",".join("?" * len(chunk)))
            stored.update(self.db.execute(q, chunk).fetchall())
        return stored

    def _block_refs(self, pbns) -> dict[int, int]:
        """Current reference counts: committed plus pending."""
        stored = self._stored_refs(pbns)
        pending = self.cache.pending_block_deltas(pbns)
        return {p: stored.get(p, 1) + pending[p] for p in pbns}

    def _shared_blocks(self, o: ObjRec, lo: int, hi: int) -> int:
        """Blocks in [lo, hi) that another map also references: what a
        rewrite of the range would copy away from snapshots or clones."""
        n = 0
        for base, leaf, shared in blockmap.iter_leaves(self.cache, o.root, o.height, lo, hi):
            s, e = max(lo, base) - base, min(hi, base + LEAF_FANOUT) - base
            ps = [p for p in leaf.ents[s:e] if p]
            if shared:
                n += len(ps)
            elif ps:
                refs = self._block_refs(set(ps))
                n += sum(1 for p in ps if refs[p] > 1)
        return n

    # ---- space -------------------------------------------------------------------
    def space(self, volume: str, snapshot: str | None = None) -> SpaceInfo:
        """Logical size, written blocks, and how many of them are unique to
        this volume or snapshot (freed if it alone were deleted) versus
        shared with snapshots, clones or dedup partners."""
        with self._lock:
            ds = self._dataset(volume, snapshot)
            logical = written = unique = 0
            for o in self._objects_of(ds):
                logical += o.size
                root_shared = False
                for _base, leaf, shared in blockmap.iter_leaves(
                    self.cache, o.root, o.height, 0, self._nblocks(o)
                ):
                    ps = [p for p in leaf.ents[:LEAF_FANOUT] if p]
                    written += len(ps)
                    if shared or root_shared:
                        continue
                    refs = self._block_refs(set(ps))
                    unique += sum(1 for p in ps if refs[p] == 1)
            return SpaceInfo(logical, written, unique, written - unique, self.block_size)

    def pool_space(self) -> dict:
        with self._lock:
            self._checkpoint()
            bs = self.block_size
            used = self.alloc.used
            st = os.statvfs(self.path)
            fs_free = st.f_bavail * st.f_frsize
            reusable = self.alloc.free_below * bs
            if self.capacity is not None:
                total = self.capacity * bs
                free = max(0, total - used * bs)
            else:
                free = fs_free + reusable
                total = used * bs + free
            meta = sum(
                os.path.getsize(os.path.join(self.path, f))
                for f in ("pool.db", "pool.db-wal")
                if os.path.exists(os.path.join(self.path, f))
            )
            return {
                "block_size": bs,
                "used_blocks": used,
                "used_bytes": used * bs,
                "free_bytes": free,
                "total_bytes": total,
                "metadata_bytes": meta,
                "capacity_bytes": (self.capacity or 0) * bs,
            }
