"""A LUN as the NBD target sees it: ``coppice.nbd.blockdev.BlockDevice``
over an engine ``ObjectHandle``.

Contract: ``LunDevice`` serves one LUN of a volume (read-write, if the LUN
is online) or of a snapshot (read-only). Every request re-checks that the
LUN still exists and, for an active LUN, is online (``LunOffline``
otherwise, unless opened with ``allow_offline`` by the filer's own users); writes and trims of a snapshot LUN raise ``ReadOnly``. Before a
write allocates blocks, the volume's ``space.Budget`` is charged, so a
write past the volume's size, or whose snapshot spill would pass it,
raises ``VolumeFull`` (ENOSPC) with nothing written. Thread-safe: the engine handle takes the pool's lock per call.
"""

from __future__ import annotations

from ..errors import ReadOnly
from .errors import LunNotFound, LunOffline
from .names import lun_path


class LunDevice:
    can_fua = True
    can_multi_conn = True  # one pool: a flush on any connection covers all writes

    def __init__(
        self, filer, volume: str, lun: str, snapshot: str | None = None, allow_offline: bool = False
    ):
        self.allow_offline = allow_offline
        self.filer = filer
        self.pool = filer.pool
        self.path = lun_path(volume, lun, snapshot)
        self.h = filer.backend.open_lun(volume, lun, snapshot)
        self._vid = self.pool.volume(volume).id
        self.read_only = snapshot is not None
        self.can_trim = self.can_zero = not self.read_only
        self.block_size = self.pool.block_size
        # a backend that keeps no per-block map (RBD) has no write budget to charge
        self._budgeted = filer.backend.block_budget
        self.can_multi_conn = getattr(self.h, "can_multi_conn", True)
        if hasattr(self.h, "start_read"):  # nbd.blockdev.AsyncReads, offered only where the backend has it
            self.start_read = self._start_read

    def _start_read(self, offset: int, length: int, done) -> None:
        self._check(False)
        self.h.start_read(offset, length, done)

    def _meta(self) -> dict:
        # the handle survives renames; its object record carries the LUN attributes
        o = self.pool.objects.get(self.h.oid)
        if o is None:
            raise LunNotFound(path=self.path)
        return o.meta

    def _check(self, write: bool) -> None:
        m = self._meta()
        if write and self.read_only:
            raise ReadOnly(detail=f"{self.path} is a snapshot LUN and read-only")
        if not self.read_only and not self.allow_offline and not m.get("online", True):
            r = m.get("offline_reason")
            raise LunOffline(path=self.path, reason=f" ({r})" if r else "")

    @property
    def size(self) -> int:
        return self.h.size

    def _holes(self, offset: int, length: int) -> int:
        return self.h.unallocated_blocks(offset, min(length, self.h.size - offset))

    def _allocated_inside(self, offset: int, length: int) -> int:
        bs = self.block_size
        a, b = -(-offset // bs) * bs, (offset + length) // bs * bs
        return sum(ln for _, ln, fl in self.h.extents(a, b - a) if not fl) // bs if b > a else 0

    def pread(self, offset: int, length: int):
        self._check(False)
        return self.h.pread(offset, length)

    def pwrite(self, offset: int, data, fua: bool = False) -> None:
        self._check(True)
        from .space import budget

        if not self._budgeted:
            self.h.pwrite(offset, data, fua)
            return
        n = len(data)
        b = budget(self.filer, self._vid)
        need = held = 0
        if b.limit is not None and 0 <= offset and offset + n <= self.h.size:
            need = self._holes(offset, n)
            if b.has_snapshots:
                # Redirect-on-write: a block the volume's snapshots hold stays
                # held by them alone once overwritten (snapshot spill).
                held = self.h.snapshot_held_blocks(offset, n)
        charge = b.reserve(need, self.block_size, f"a write to {self.path}", snap_held=held)
        try:
            self.h.pwrite(offset, data, fua)
        except BaseException:
            b.release(charge, held)
            raise

    def pwrite_many(self, items) -> None:
        """Writes ``[(offset, data)]`` in order, as one batch of the
        engine's (``ObjectHandle.pwrite_many``): charged to the volume's
        budget together when they touch disjoint blocks (then the holes
        they fill add up exactly), one at a time otherwise."""
        self._check(True)
        many = getattr(self.h, "pwrite_many", None)
        if many is None:
            for offset, data in items:
                self.pwrite(offset, data)
            return
        if not self._budgeted:
            many(items)
            return
        from .space import budget

        b = budget(self.filer, self._vid)
        if b.limit is None:
            many(items)
            return
        bs, size = self.block_size, self.h.size
        spans = sorted((off // bs, -(-(off + len(d)) // bs)) for off, d in items)
        outside = any(off < 0 or off + len(d) > size for off, d in items)
        if outside or any(a[1] > c[0] for a, c in zip(spans, spans[1:], strict=False)):
            for offset, data in items:
                self.pwrite(offset, data)
            return
        # a budgeted LUN is an engine object: its handle counts holes in one pass
        need = self.h.unallocated_blocks_many([(off, len(d)) for off, d in items])
        held = sum(self.h.snapshot_held_blocks(off, len(d)) for off, d in items) if b.has_snapshots else 0
        charge = b.reserve(need, bs, f"{len(items)} writes to {self.path}", snap_held=held)
        try:
            many(items)
        except BaseException:
            b.release(charge, held)
            raise

    def trim(self, offset: int, length: int, fua: bool = False) -> None:
        self._check(True)
        if not self._budgeted:
            self.h.trim(offset, length, fua)
            return
        from .space import budget

        b = budget(self.filer, self._vid)
        freed = held = 0
        if 0 <= offset and offset + length <= self.h.size:
            freed = self._allocated_inside(offset, length)
            bs = self.block_size
            a, e = -(-offset // bs) * bs, (offset + length) // bs * bs
            if b.limit is not None and b.has_snapshots and e > a:
                held = self.h.snapshot_held_blocks(a, e - a)
        self.h.trim(offset, length, fua)
        b.trimmed(freed, held)

    def zero(self, offset: int, length: int, may_trim: bool = True, fua: bool = False) -> None:
        if not self._budgeted:
            self._check(True)
            self.h.zero(offset, length, may_trim, fua)
            return
        # the engine never stores zeros: a zeroed range is a hole either way
        self.trim(offset, length, fua)

    def flush(self) -> None:
        self.h.flush()

    def extents(self, offset: int, length: int):
        self._check(False)
        return self.h.extents(offset, length)

    def close(self) -> None:
        self.h.close()


def open_lun_device(filer, path: str, allow_offline: bool = False) -> LunDevice:
    """Open the LUN at ``path`` (a snapshot path opens read-only); refuses an
    offline LUN unless ``allow_offline``. No access check: that is the export
    resolver's."""
    from .lookup import resolve

    vol, snap, name, o = resolve(filer, path, allow_snapshot=True)
    dev = LunDevice(filer, vol, name, snap, allow_offline)
    dev._check(False)
    return dev
