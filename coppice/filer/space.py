"""Space accounting the ONTAP way: `df`, snapshot reserve, and the write
budget that makes a volume full at its size.

Contract:

* ``usage(f, vol)``: ``active`` = bytes of blocks the active file system
  maps (shared ones included, as ONTAP's df counts a FlexClone's blocks);
  ``snap_used`` = bytes held only by the volume's snapshots; the snapshot
  reserve (``snap_reserve`` % of size) absorbs ``snap_used`` and what spills
  over counts against the active space. ``total`` = size - reserve,
  ``used`` = active + spill, ``available`` = total - used, capped by the
  pool's free space. Exact at the moment of the call; O(written blocks).
* ``Budget``: the per-volume counter the LUN block devices consult before a
  write; a write that would allocate past ``total`` raises ``VolumeFull``
  before any byte is written. It counts newly allocated blocks (holes being
  filled) and the snapshot spill a write or trim causes: blocks it moves
  out of the active file system while the volume's own snapshots still
  hold them grow ``snap_used``, and whatever passes the reserve counts.
* ``df(f, vol, savings)``: rows for `coppice df [-s]`. With savings, the
  dedup layer's ``coppice.dedup.report.savings`` fills ``saved_dedup`` and
  ``saved_clones`` when it is installed (a try-import: the hook); otherwise
  clone/snapshot savings are the active file system's shared blocks.
"""

from __future__ import annotations

import threading

from .errors import VolumeFull
from .lookup import opts, require
from .sizes import format_size


def _written_blocks(pool, vol, snapshot=None) -> int:
    n, bs = 0, pool.block_size
    for o in pool.list_objects(vol, snapshot):
        if o.size:
            h = pool.open_object(vol, o.name, snapshot)
            n += -(-sum(ln for _, ln, fl in h.extents(0, o.size) if fl == 0) // bs)
    return n


def _pbn_set(pool, vol, snapshot=None) -> set[int]:
    out: set[int] = set()
    for o in pool.list_objects(vol, snapshot):
        out.update(p for _, p, _ in pool.iter_blocks(vol, o.name, snapshot))
    return out


def usage(f, vol: str, size: int | None = None, light: bool = False) -> dict:
    """See the module docstring. ``light`` skips the shared-block count (a
    reference-count lookup per block), which the write budget does not need."""

    pool = f.pool
    bs = pool.block_size
    o = opts(f, vol)
    size = size if size is not None else o["size"]
    own = f.backend.usage_override(f, vol, size)
    if own is not None:  # a backend with its own accounting (RBD)
        return own
    snaps = pool.list_snapshots(vol)
    sp = None if light else pool.space(vol)
    active = (_written_blocks(pool, vol) if light else sp.written_blocks) * bs
    snap_used = 0
    reserve_guess = 0 if size is None else size * int(o["snap_reserve"]) // 100
    exact = True
    if snaps and light and sum(_written_blocks(pool, vol, s.name) for s in snaps) * bs <= reserve_guess:
        snaps = []  # the snapshots cannot spill past the reserve: skip the exact count
        exact = False
    if snaps:
        act = _pbn_set(pool, vol)
        held: set[int] = set()
        for s in snaps:
            held |= _pbn_set(pool, vol, s.name)
        snap_used = len(held - act) * bs
    pool_free = pool.pool_space()["free_bytes"]
    if size is None:  # a volume made below the filer: only the pool limits it
        reserve = 0
        total = active + pool_free
    else:
        reserve = size * int(o["snap_reserve"]) // 100
        total = size - reserve
    spill = max(0, snap_used - reserve)
    used = active + spill
    avail = max(0, min(total - used, pool_free))
    return {
        "volume": vol,
        "size": size,
        "total": total,
        "used": used,
        "available": avail,
        "active": active,
        "shared": sp.shared_bytes if sp else None,
        "snap_reserve": reserve,
        "snap_used": snap_used,
        "snap_available": max(0, reserve - snap_used),
        "spill": spill,
        "logical": sp.logical_bytes if sp else None,
        "block_size": bs,
        "snap_used_exact": exact,
    }


class Budget:
    """How many more blocks volume ``vid`` may allocate; thread-safe.

    ``used`` = active + spill (blocks); ``snap_used`` = blocks held only by
    the volume's snapshots, or None until a write first needs it exactly
    (``exact_snap_used`` computes it, O(written blocks), once per budget)."""

    def __init__(
        self,
        used_blocks: int,
        limit_blocks: int | None,
        label: str,
        size: int | None,
        has_snapshots: bool = False,
        snap_used: int | None = 0,
        reserve_blocks: int = 0,
        exact_snap_used=None,
    ):
        self.used = used_blocks
        self.limit = limit_blocks
        self.label = label
        self.size = size
        self.has_snapshots = has_snapshots
        self.snap_used = snap_used
        self.reserve_blocks = reserve_blocks
        self._exact = exact_snap_used
        self.lock = threading.Lock()

    def _spill_delta(self, held: int) -> int:
        if held <= 0:
            return 0
        if self.snap_used is None:
            self.snap_used = self._exact()
        r = self.reserve_blocks
        return max(0, self.snap_used + held - r) - max(0, self.snap_used - r)

    def reserve(self, blocks: int, bs: int, what: str, snap_held: int = 0) -> int:
        """Charge ``blocks`` newly allocated plus the spill of ``snap_held``
        blocks leaving the active file system; returns the charge (give it
        back with ``release(charge, snap_held)`` if the write fails)."""
        if self.limit is None or (blocks <= 0 and snap_held <= 0):
            return 0
        with self.lock:
            need = max(0, blocks) + self._spill_delta(snap_held)
            if need > 0 and self.used + need > self.limit:
                raise VolumeFull(
                    volume=self.label,
                    what=what,
                    need=format_size(need * bs),
                    avail=format_size(max(0, self.limit - self.used) * bs),
                    size=format_size(self.size),
                )
            self.used += need
            if snap_held > 0:
                self.snap_used += snap_held
            return need

    def release(self, blocks: int, snap_held: int = 0) -> None:
        if self.limit is None:
            return
        with self.lock:
            if blocks > 0:
                self.used = max(0, self.used - blocks)
            if snap_held > 0 and self.snap_used is not None:
                self.snap_used = max(0, self.snap_used - snap_held)

    def trimmed(self, freed: int, snap_held: int) -> None:
        """A trim freed ``freed`` active blocks, ``snap_held`` of which the
        snapshots keep: the active space shrinks, the spill may grow. Never
        refused: removing data must always work."""
        if self.limit is None:
            return
        with self.lock:
            spill = self._spill_delta(snap_held)
            self.used = max(0, self.used - max(0, freed) + spill)
            if snap_held > 0:
                self.snap_used += snap_held


def budget(f, vid: int) -> Budget:
    with f._lock:
        b = f._budgets.get(vid)
        if b is None:
            ds = f.pool.datasets.get(vid)
            name = ds.name
            u = usage(f, name, light=True)
            bs = f.pool.block_size
            limit = None if u["size"] is None else u["total"] // bs
            has_snaps = bool(f.pool.list_snapshots(name))
            b = Budget(
                u["used"] // bs,
                limit,
                name,
                u["size"],
                has_snapshots=has_snaps,
                snap_used=u["snap_used"] // bs if u["snap_used_exact"] else None,
                reserve_blocks=u["snap_reserve"] // bs,
                exact_snap_used=lambda: usage(f, name)["snap_used"] // bs,
            )
            f._budgets[vid] = b
        return b


def df(f, volume: str | None = None, savings: bool = False) -> dict:

    vols = [volume] if volume is not None else [v.name for v in f.pool.list_volumes()]
    for v in vols:
        require(f, v)
    rows = []
    report = None
    if savings and f.backend.dedup:
        try:
            from ..dedup import report as _report  # the dedup layer's hook, when installed

            report = _report
        except ImportError:
            report = None
    for v in vols:
        u = usage(f, v)
        row = {
            "volume": v,
            "path": f"/vol/{v}/",
            "total": u["total"],
            "used": u["used"],
            "available": u["available"],
            "capacity_pct": _pct(u["used"], u["total"]),
            "snap_reserve": u["snap_reserve"],
            "snap_used": u["snap_used"],
            "snap_available": u["snap_available"],
            "snap_capacity_pct": _pct(u["snap_used"], u["snap_reserve"]),
        }
        if savings:
            row.update(_savings(f, v, u, report))
        rows.append(row)
    ps = f.backend.pool_space()
    out = {
        "volumes": rows,
        "pool": {
            "used": ps["used_bytes"],
            "free": ps["free_bytes"],
            "total": ps["total_bytes"],
            "block_size": ps["block_size"],
        },
    }
    if savings and volume is None:
        if f.backend.dedup:
            out["pool"].update(_pool_savings(f, report))
        else:  # no dedup: the pool's savings are the clones' and snapshots' sharing
            out["pool"].update(
                logical=sum(r["logical"] for r in rows),
                saved_clones=sum(r["saved_clones"] for r in rows),
                saved_dedup=0,
            )
    return out


def _pct(a, b) -> int:
    return round(100 * a / b) if b else 0


def _savings(f, v, u, report) -> dict:
    if report is not None:
        s = report.savings(f.pool, v)
        logical = s.get("logical_bytes", 0)
        clones = s.get("saved_clones_bytes", 0)
        dedup = s.get("saved_dedup_bytes", 0)
    else:
        logical = u["active"]
        clones = u["shared"]
        dedup = 0
    saved = clones + dedup
    return {
        "logical": logical,
        "saved": saved,
        "saved_clones": clones,
        "saved_dedup": dedup,
        "saved_pct": _pct(saved, logical),
    }


def _pool_savings(f, report) -> dict:
    pool = f.pool
    if report is not None:
        s = report.savings(pool)["pool"]
        return {
            "logical": s.get("logical_bytes", 0),
            "saved_clones": s.get("saved_clones_bytes", 0),
            "saved_dedup": s.get("saved_dedup_bytes", 0),
        }
    logical = 0
    for v in pool.list_volumes():
        logical += _written_blocks(pool, v.name)
        for s in pool.list_snapshots(v.name):
            logical += _written_blocks(pool, v.name, s.name)
    logical *= pool.block_size
    used = pool.pool_space()["used_bytes"]
    return {"logical": logical, "saved_clones": max(0, logical - used), "saved_dedup": 0}
