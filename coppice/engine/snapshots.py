"""Snapshots, clones and clone split.

Contract: ``Snapshots`` is the part of ``Pool`` that freezes a volume
(``create_snapshot``), brings it back (``restore_snapshot``), makes a
writable clone of a snapshot (``clone_volume``) and later cuts the clone
loose (``split_clone_steps``). A snapshot and a clone cost O(objects):
object rows are copied and each root page gains a reference; no block or
page is copied, and writes to either side never change what the other
reads (the block map copies a shared page on write). A snapshot a clone
depends on is not deleted (``SnapshotBusy``). Management calls are atomic
and durable on return; a split runs a leaf (<= 2 MiB) per step under the
lock, so client I/O goes on between steps, and a split stopped early
leaves a valid, partly split clone.

A mixin of ``Pool`` (``engine/pool.py``), over the lookups of
``engine/namespace.py`` and the pool's data path.
"""

from __future__ import annotations

import json

from ..errors import InvalidArgument
from . import blockmap
from .errors import SnapshotBusy, SnapshotExists, VolumeExists
from .format import LEAF_FANOUT
from .records import Dataset, ObjRec, validate_name


class Snapshots:
    """Snapshots and clones of a ``Pool``'s volumes."""

    # ---- snapshots ---------------------------------------------------------------
    def create_snapshot(self, volume: str, snap: str, meta: dict | None = None) -> Dataset:
        """O(objects): freeze every object of the volume at this instant."""
        validate_name("snapshot", snap)
        with self.transaction():
            v = self._volume(volume)
            if ("snapshot", v.id, snap) in self._dsidx:
                raise SnapshotExists(volume=volume, snap=snap)
            s = self._insert_dataset("snapshot", snap, v.id, None, meta or {})
            for o in self._objects_of(v):
                self._copy_object(o, s.id, o.name)
            return s

    def _copy_object(self, o: ObjRec, dataset_id: int, name: str, meta: dict | None = None) -> ObjRec:
        m = dict(o.meta) if meta is None else meta
        cur = self.db.execute(
            "INSERT INTO objects (dataset_id, name, kind, size, root, height, meta) VALUES (?,?,?,?,?,?,?)",
            (dataset_id, name, o.kind, o.size, o.root, o.height, json.dumps(m)),
        )
        n = ObjRec(cur.lastrowid, dataset_id, name, o.kind, o.size, o.root, o.height, m)
        self._index(n)
        if o.root:
            self.cache.incref_page(o.root)
        return n

    def list_snapshots(self, volume: str) -> list[Dataset]:
        with self._lock:
            return self._snapshots_of(self._volume(volume))

    def snapshot(self, volume: str, snap: str) -> Dataset:
        with self._lock:
            return self._snapshot(self._volume(volume), snap)

    def clones_of(self, volume: str, snap: str) -> list[str]:
        with self._lock:
            return [c.name for c in self._clones_of(self._snapshot(self._volume(volume), snap))]

    def delete_snapshot(self, volume: str, snap: str) -> None:
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            clones = self._clones_of(s)
            if clones:
                raise SnapshotBusy(volume=volume, snap=snap, clones=", ".join(c.name for c in clones))
            self._drop_dataset(s)

    def rename_snapshot(self, volume: str, old: str, new: str) -> None:
        validate_name("snapshot", new)
        with self.transaction():
            v = self._volume(volume)
            s = self._snapshot(v, old)
            if old == new:
                return
            if ("snapshot", v.id, new) in self._dsidx:
                raise SnapshotExists(volume=volume, snap=new)
            self.db.execute("UPDATE datasets SET name=? WHERE id=?", (new, s.id))
            self._rename_dataset(s, new)

    def set_snapshot_meta(self, volume: str, snap: str, meta: dict) -> None:
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            self.db.execute("UPDATE datasets SET meta=? WHERE id=?", (json.dumps(meta), s.id))
            s.meta = dict(meta)

    def restore_snapshot(self, volume: str, snap: str) -> None:
        """SnapRestore: the volume's objects become the snapshot's again.
        Objects present in both keep their identity (open handles stay
        valid); objects created since are deleted; deleted ones return."""
        with self.transaction():
            v = self._volume(volume)
            s = self._snapshot(v, snap)
            current = {o.name: o for o in self._objects_of(v)}
            frozen = {o.name: o for o in self._objects_of(s)}
            for name, o in current.items():
                if name not in frozen:
                    self._drop_object(o)
            for name, f in frozen.items():
                o = current.get(name)
                if o is None:
                    self._copy_object(f, v.id, name)
                    continue
                if f.root:
                    self.cache.incref_page(f.root)
                if o.root:
                    self.cache.decref_page(o.root)
                o.root, o.height, o.size, o.kind, o.meta = f.root, f.height, f.size, f.kind, dict(f.meta)
                self._dirty_objs[o.id] = o

    # ---- clones ------------------------------------------------------------------
    def clone_volume(
        self, new: str, volume: str, snap: str, meta: dict | None = None, object_meta=None
    ) -> Dataset:
        """O(objects): a writable volume whose content is the snapshot's.
        ``object_meta(name, meta) -> meta`` may rewrite each object's
        metadata in the same transaction (the filer takes clone LUNs
        offline that way)."""
        validate_name("volume", new)
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            if ("volume", None, new) in self._dsidx:
                raise VolumeExists(name=new)
            c = self._insert_dataset("volume", new, None, s.id, meta or {})
            for o in self._objects_of(s):
                m = object_meta(o.name, dict(o.meta)) if object_meta else None
                self._copy_object(o, c.id, o.name, m)
            return c

    def _origin_shared_slots(self, base: int, leaf, p: ObjRec | None) -> list[int]:
        """Slots of the clone leaf at ``base`` whose block is still the one
        the origin snapshot's object ``p`` maps at the same place."""
        if p is None or base >= self._nblocks(p):
            return []
        pleaf = blockmap.lookup_leaf(self.cache, p.root, p.height, base // LEAF_FANOUT)
        if pleaf is None:
            return []
        e, pe = leaf.ents, pleaf.ents
        if leaf is pleaf:
            return [i for i in range(LEAF_FANOUT) if e[i]]
        return [i for i in range(LEAF_FANOUT) if e[i] and e[i] == pe[i]]

    def _split_pairs(self, volume):
        v = self._volume(volume)
        if v.origin_id is None:
            return []
        s = self.datasets[v.origin_id]
        frozen = {o.name: o for o in self._objects_of(s)}
        return [(o, frozen.get(o.name)) for o in self._objects_of(v)]

    def split_estimate(self, volume: str) -> int:
        """Bytes a clone split would write: blocks still shared with the origin."""
        with self._lock:
            total = 0
            for o, p in self._split_pairs(volume):
                for base, leaf, _ in blockmap.iter_leaves(self.cache, o.root, o.height, 0, self._nblocks(o)):
                    total += len(self._origin_shared_slots(base, leaf, p))
            return total * self.block_size

    def split_clone_steps(self, volume: str):
        """Clone split as a generator: copies every block the clone still
        shares with its origin snapshot, one leaf (<= 2 MiB) per step under
        the lock, so client I/O runs between steps; yields (done, total)
        leaf counts. When it finishes the clone no longer depends on the
        snapshot. Stopping early leaves a valid, partly split clone."""
        with self._lock:
            v = self._volume(volume)
            if v.origin_id is None:
                raise InvalidArgument(detail=f"volume {volume} is not a clone; nothing to split")
            work = [(o.id, p.id if p else None) for o, p in self._split_pairs(volume)]
            total = sum(
                1
                for o, _ in self._split_pairs(volume)
                for _ in blockmap.iter_leaves(self.cache, o.root, o.height, 0, self._nblocks(o))
            )
        done = 0
        yield done, total
        for oid, pid in work:
            base = 0
            while True:
                with self._lock:
                    o = self.objects.get(oid)
                    p = self.objects.get(pid) if pid else None
                    if o is None:
                        break
                    nxt = blockmap.first_leaf(self.cache, o.root, o.height, base, self._nblocks(o))
                    if nxt is None:
                        break
                    b, leaf = nxt
                    slots = self._origin_shared_slots(b, leaf, p)
                    k = 0
                    while k < len(slots):
                        j = k + 1
                        while j < len(slots) and slots[j] == slots[k] + (j - k):
                            j += 1
                        lbn, cnt = b + slots[k], j - k
                        self._write_blocks(o, lbn, memoryview(self._read_blocks(o, lbn, cnt)))
                        k = j
                self._checkpoint_if_due()
                base = b + LEAF_FANOUT
                done += 1
                yield min(done, total), total
        with self.transaction():
            v = self._volume(volume)
            self.db.execute("UPDATE datasets SET origin_id=NULL WHERE id=?", (v.id,))
            if v.origin_id is not None:
                self._clone_ids.get(v.origin_id, set()).discard(v.id)
            v.origin_id = None
        yield total, total

    def split_clone(self, volume: str, progress=None) -> None:
        for done, total in self.split_clone_steps(volume):
            if progress:
                progress(done, total)
