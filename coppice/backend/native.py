"""The native backend: the embedded copy-on-write engine (the default).

Contract: every call is the ``coppice.engine.Pool`` call of the same
meaning, unchanged; data and control plane are one SQLite transaction, so
``begin``/``commit``/``rollback`` have nothing of their own to do.
"""

from __future__ import annotations

from .base import Backend


class NativeBackend(Backend):
    kind = "native"
    label = "the embedded engine"

    # volumes
    def create_volume(self, name, meta):
        return self.pool.create_volume(name, meta=meta)

    def delete_volume(self, name):
        self.pool.delete_volume(name)

    def rename_volume(self, old, new):
        self.pool.rename_volume(old, new)

    # LUN objects
    def create_lun(self, vol, name, size, meta):
        return self.pool.create_object(vol, name, size, kind="lun", meta=meta)

    def delete_lun(self, vol, name):
        self.pool.delete_object(vol, name)

    def resize_lun(self, vol, name, size):
        self.pool.resize_object(vol, name, size)

    def rename_lun(self, vol, old, new):
        self.pool.rename_object(vol, old, new)

    def clone_lun(self, vol, new, parent, snap, meta):
        return self.pool.clone_object(vol, new, parent, snap, meta=meta)

    def open_lun(self, vol, name, snapshot=None):
        return self.pool.open_object(vol, name, snapshot)

    # snapshots
    def create_snapshot(self, vol, snap, meta):
        return self.pool.create_snapshot(vol, snap, meta=meta)

    def delete_snapshot(self, vol, snap):
        self.pool.delete_snapshot(vol, snap)

    def rename_snapshot(self, vol, old, new):
        self.pool.rename_snapshot(vol, old, new)

    def restore_snapshot(self, vol, snap):
        self.pool.restore_snapshot(vol, snap)

    def snapshot_clones(self, vol, snap) -> list[str]:
        return self.pool.clones_of(vol, snap)

    # clones
    def clone_volume(self, new, parent, snap, meta, object_meta=None):
        return self.pool.clone_volume(new, parent, snap, meta=meta, object_meta=object_meta)

    def split_steps(self, vol):
        return self.pool.split_clone_steps(vol)

    def split_estimate(self, vol) -> int:
        return self.pool.split_estimate(vol)

    # space and checks
    def space(self, vol, snapshot=None):
        return self.pool.space(vol, snapshot)

    def pool_space(self) -> dict:
        return self.pool.pool_space()

    def fsck(self) -> dict:
        return self.pool.fsck().as_dict()
