"""An open object: the engine side of a LUN export.

Contract: ``ObjectHandle`` implements the BlockDevice calls the NBD target
makes (pread, pwrite, trim, zero, flush, extents, and the space questions
a write budget asks) over one object of a ``Pool``, each under the pool's
lock. It survives renames (it holds the object's id) and fails with
``ObjectNotFound`` once the object is deleted. A snapshot's objects open
read-only.
"""

from __future__ import annotations

from ..errors import ReadOnly
from . import blockmap
from .errors import ObjectNotFound, OutOfRange
from .format import LEAF_FANOUT
from .records import ObjRec


class ObjectHandle:
    """An open object: the engine side of a LUN export. Implements the
    BlockDevice calls the NBD target makes (pread, pwrite, trim, zero,
    flush, extents). Survives renames; fails with NotFound once the object
    is deleted."""

    # BlockDevice capabilities. Flush is pool-wide (one data file, one
    # intent log), so a flush on any connection covers every connection's
    # writes: multi-conn is safe.
    can_trim = True
    can_zero = True
    can_fua = True
    can_multi_conn = True

    def __init__(self, pool, o: ObjRec, read_only: bool):  # pool: the engine Pool that opened it
        self.pool = pool
        self.oid = o.id
        self.name = o.name
        self.read_only = read_only
        self.block_size = pool.block_size

    def _obj(self) -> ObjRec:
        o = self.pool.objects.get(self.oid)
        if o is None:
            raise ObjectNotFound(kind="Object", name=self.name, where="the pool (it was deleted)")
        return o

    @property
    def size(self) -> int:
        return self._obj().size

    @property
    def meta(self) -> dict:
        """The object's metadata (a copy)."""
        return dict(self._obj().meta)

    def exists(self) -> bool:
        return self.oid in self.pool.objects

    def unallocated_blocks(self, offset: int, length: int) -> int:
        """Blocks touched by [offset, offset+length) that are holes: what a
        write there would newly allocate (a space budget's question, asked
        before every write, so it is a walk of the range's leaves only)."""
        return self.unallocated_blocks_many([(offset, length)])

    def unallocated_blocks_many(self, ranges) -> int:
        """``unallocated_blocks`` summed over ``[(offset, length)]``, under
        one hold of the pool's lock (a batch of writes asks it once)."""
        p = self.pool
        bs = p.block_size
        cache = p.cache
        holes = 0
        with p._lock:
            o = self._obj()
            for offset, length in ranges:
                if offset < 0 or length < 0 or offset + length > o.size:
                    raise OutOfRange(
                        what="unallocated_blocks", offset=offset, length=length, name=o.name, size=o.size
                    )
                lo, hi = offset // bs, -(-(offset + length) // bs)
                if hi - lo == 1:  # one block (a 4 KiB write): one leaf lookup
                    leaf = blockmap.lookup_leaf(cache, o.root, o.height, lo // LEAF_FANOUT)
                    holes += leaf is None or not leaf.ents[lo % LEAF_FANOUT]
                    continue
                holes += hi - lo
                for base, leaf, _ in blockmap.iter_leaves(cache, o.root, o.height, lo, hi):
                    s, e = max(lo, base) - base, min(hi, base + LEAF_FANOUT) - base
                    holes -= e - s - leaf.ents[s:e].tolist().count(0)
        return holes

    def snapshot_held_blocks(self, offset: int, length: int) -> int:
        """Blocks of [offset, offset+length) that one of this volume's own
        snapshots also maps, at the same place of the same-named object: a
        write or trim there leaves them held by the snapshot alone (ONTAP's
        snapshot spill). Cost: one leaf lookup per snapshot per leaf."""
        p = self.pool
        bs = p.block_size
        with p._lock:
            o = self._obj()
            if offset < 0 or length < 0 or offset + length > o.size:
                raise OutOfRange(
                    what="snapshot_held_blocks", offset=offset, length=length, name=o.name, size=o.size
                )
            ds = p.datasets.get(o.dataset_id)
            if ds is None or ds.kind != "volume":
                return 0
            frozen = [
                x
                for x in (p._by_ds.get(sid, {}).get(o.name) for sid in p._snap_ids.get(ds.id, ()))
                if x is not None and x.root
            ]
            if not frozen:
                return 0
            lo, hi = offset // bs, -(-(offset + length) // bs)
            n = 0
            for base, leaf, _ in blockmap.iter_leaves(p.cache, o.root, o.height, lo, hi):
                s, e = max(lo, base) - base, min(hi, base + LEAF_FANOUT) - base
                cur = leaf.ents[s:e].tolist()
                held = [False] * (e - s)
                for so in frozen:
                    if base >= p._nblocks(so):
                        continue
                    sl = blockmap.lookup_leaf(p.cache, so.root, so.height, base // LEAF_FANOUT)
                    if sl is None:
                        continue
                    theirs = sl.ents[s:e].tolist()
                    for i, c in enumerate(cur):
                        if c and c == theirs[i]:
                            held[i] = True
                n += sum(held)
            return n

    def shared_blocks(self, offset: int, length: int) -> int:
        """Blocks of [offset, offset+length) shared with a snapshot, clone or
        dedup partner: a write there allocates new space even though the
        object already holds data at that place."""
        p = self.pool
        bs = p.block_size
        with p._lock:
            o = self._obj()
            if offset < 0 or length < 0 or offset + length > o.size:
                raise OutOfRange(what="shared_blocks", offset=offset, length=length, name=o.name, size=o.size)
            return p._shared_blocks(o, offset // bs, -(-(offset + length) // bs))

    def _writable(self):
        if self.read_only:
            raise ReadOnly(detail=f"{self.name} is a snapshot object and read-only")

    def pread(self, offset: int, length: int):
        p = self.pool
        with p._lock:
            return p._read(self._obj(), offset, length)

    def pwrite(self, offset: int, data, fua: bool = False) -> None:
        self._writable()
        p = self.pool
        with p._lock:
            p._write(self._obj(), offset, data if isinstance(data, memoryview) else memoryview(data))
        if fua:
            p.flush()
        p._checkpoint_if_due()

    def pwrite_many(self, items) -> None:
        """Writes ``[(offset, data), ...]`` applied in order, as one batch
        (see ``Pool._write_many``): one lock hold, one data write, one
        intent-log append. Acknowledged like ``pwrite`` without FUA."""
        self._writable()
        p = self.pool
        mv = [(off, d if isinstance(d, memoryview) else memoryview(d)) for off, d in items]
        with p._lock:
            p._write_many(self._obj(), mv)
        p._checkpoint_if_due()

    def trim(self, offset: int, length: int, fua: bool = False) -> None:
        self._writable()
        p = self.pool
        with p._lock:
            p._clear(self._obj(), offset, length)
        if fua:
            p.flush()
        p._checkpoint_if_due()

    def zero(self, offset: int, length: int, may_trim: bool = True, fua: bool = False) -> None:
        # Thin pool: zeros are never stored, with or without may_trim.
        self.trim(offset, length, fua)

    def flush(self) -> None:
        self.pool.flush()

    def extents(self, offset: int, length: int):
        p = self.pool
        with p._lock:
            return [(s, n, 0 if a else 3) for s, n, a in p._extents(self._obj(), offset, length)]

    def close(self) -> None:
        pass
