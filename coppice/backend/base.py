"""The backend interface: what the filer needs of storage.

Contract (every method is called by the filer inside ``Filer.transaction``
unless noted; ``meta`` dicts are the filer's LUN/volume attributes, which
the backend stores in the control plane unchanged apart from keys of its
own):

* Volumes are namespaces of objects: ``create_volume``, ``delete_volume``,
  ``rename_volume``.
* LUN objects: ``create_lun``, ``delete_lun``, ``resize_lun``,
  ``rename_lun``, ``clone_lun`` (O(1) from a snapshot of the same volume),
  ``open_lun`` -> a handle with ``pread``/``pwrite``/``trim``/``zero``/
  ``flush``/``extents``/``size`` (the ``coppice.nbd`` block-device calls)
  plus ``unallocated_blocks``/``snapshot_held_blocks`` for the write budget,
  and ``oid`` (the control-plane record it serves).
* Snapshots of a volume (one instant across all of its LUNs):
  ``create_snapshot``, ``delete_snapshot``, ``rename_snapshot``,
  ``restore_snapshot`` (rollback), ``snapshot_clones`` (what makes a
  snapshot busy).
* Clones: ``clone_volume`` (O(LUNs)), ``split_steps`` (a generator of
  (done, total) that detaches the clone from its snapshot),
  ``split_estimate`` (bytes a split writes).
* Space: ``space(vol, snap)`` (a ``SpaceInfo``), ``usage_override`` (None,
  or the whole ``space.usage`` row when the backend keeps its own
  accounting), ``pool_space()``.
* ``fsck()`` checks its own side and that both sides agree.
* ``begin()``/``commit()``/``rollback()`` bracket the outermost filer
  transaction: a backend whose store is not the pool's SQLite database
  undoes its own side on rollback and does irreversible deletions only
  after the commit.
* Capabilities: ``thin_only`` (a thick guarantee is refused with
  ``ThinOnly``), ``dedup`` (False: ``sis`` is refused with
  ``BackendUnsupported``), ``block_budget`` (the filer's per-block write
  budget applies).
* ``close()`` releases the ownership lock.
"""

from __future__ import annotations

from ..errors import InvalidArgument


class ThinOnly(InvalidArgument):
    """{what} is refused: this pool's data lives on {backend}, which is thin
    only; use guarantee none (the default)."""


class BackendUnsupported(InvalidArgument):
    """{what} is not available on this pool: its data lives on {backend},
    which {why}."""


class Backend:
    """Base class; see the module docstring. Subclasses implement every method."""

    kind = "?"
    label = "?"
    thin_only = False
    dedup = True
    block_budget = True

    def __init__(self, pool):
        self.pool = pool

    # transactions
    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": self.kind}

    def direct_disk_access(self) -> dict | None:
        """How a hypervisor opens LUN data without Coppice (the rbd backend:
        pool, monitors, cephx user); None when only Coppice's NBD target can."""
        return None

    def require_thin(self, what: str, guarantee: str) -> None:
        if self.thin_only and guarantee != "none":
            raise ThinOnly(what=what, backend=self.label)

    def require_dedup(self, what: str) -> None:
        if not self.dedup:
            raise BackendUnsupported(what=what, backend=self.label, why="has no block deduplication")

    def usage_override(self, f, vol: str, size: int | None):
        return None
