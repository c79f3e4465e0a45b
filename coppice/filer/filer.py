"""The Filer: the one Python API over a pool that the CLI, the REST API and
the provisioner use. ONTAP 7-mode semantics; no caller adds rules of its own.

Contract:

* Every mutating method is atomic: it runs in one pool transaction, so a
  refused or failed command changes nothing (``pool.dump()`` is unchanged),
  and a successful one is durable on return. Several calls can be grouped
  with ``with filer.transaction():`` (an exception rolls all of them back).
* Read methods return plain JSON-able dicts/lists (sizes in bytes), the
  same shape the CLI prints with ``--json`` and the REST API returns.
* Errors are ``coppice.errors.CoppiceError`` subclasses (``filer.errors``)
  whose message says what to do.
* Thread-safe: one re-entrant lock around management operations; the data
  path (``open_lun``) takes the pool's lock per I/O.
* Revocation: ``on_revoke(cb)`` registers ``cb(export_name)``; it is called
  after the commit of any operation that destroys a LUN (or its volume or
  snapshot), renames or resizes it, or changes its content under a client
  (SnapRestore). ``on_access_change(cb)`` is called the same way after an
  unmap, an offline or an igroup member's removal, which change only who
  may open it (the NBD target then re-checks each connection).

API summary (``path`` is a LUN path ``/vol/VOL/LUN``; sizes are bytes or
strings like "20g"; ``now`` is a datetime, default the injected clock):

  Filer.create(dir, block_size=4096, capacity=None, backend="native", ceph_conf=None,
               ceph_pool=None) / Filer.open(dir) / close()
  backend: the ``coppice.backend`` Backend holding LUN data (native engine or RBD)
  transaction(); on_revoke(cb); dump(); pool_info(); fsck(); scrub(progress=None)
  direct_disk_access() -> dict or None (how QEMU opens LUN data straight from the backend)
  resolver() -> ExportResolver for coppice.nbd
  open_lun(path, initiator=None, allow_offline=False) -> BlockDevice
  -- volumes
  vol_create(name, size, guarantee="none", snap_reserve=None) -> dict
  vol_show(name=None) -> list[dict];  vol_info(name) -> dict
  vol_destroy(name, force=False, children=False) -> list[str] destroyed
  vol_rename(old, new);  vol_size(name, size) -> dict
  vol_options(name) -> dict;  vol_set_option(name, option, value) -> dict
  -- snapshots
  snap_create(vol, name) -> dict;  snap_list(vol) -> list[dict]
  snap_delete(vol, name);  snap_rename(vol, old, new);  snap_restore(vol, name)
  snap_reserve(vol, percent=None) -> int;  snap_sched(vol, spec=None) -> dict
  snap_sched_tick(now=None, volume=None) -> list[dict] (what was created/rotated)
  -- clones
  clone_create(new, parent, snap, remap=False, schedule=None) -> dict (luns, messages)
  clone_show() -> list[dict]
  clone_split_steps(vol) -> generator of (done, total);  clone_split(vol, progress=None)
  clone_split_status(vol) -> dict;  clone_split_stop(vol);  clone_split_estimate(vol) -> dict
  -- LUNs, igroups, maps
  lun_create(path, size, ostype="linux", comment="") -> dict
  lun_show(path=None, volume=None, snapshots=False) -> list[dict];  lun_info(path) -> dict
  lun_destroy(path, force=False);  lun_resize(path, size, force=False) -> dict
  lun_online(path);  lun_offline(path);  lun_rename(path, new_path);  lun_comment(path, text)
  lun_clone_create(new_path, parent_path, snap) -> dict
  lun_map(path, igroup, lun_id=None) -> int;  lun_unmap(path, igroup);  lun_maps() -> list[dict]
  igroup_create(name, initiators=(), ostype="linux", protocol="iscsi") -> dict
  igroup_destroy(name, force=False);  igroup_add(name, initiator);  igroup_remove(name, initiator)
  igroup_show(name=None) -> list[dict];  igroup_rename(old, new);  igroup_set(name, ostype)
  -- space
  df(volume=None, savings=False) -> dict {"volumes": [...], "pool": {...}}
  -- small files (datastore descriptors, VM definitions)
  file_write(vol, name, data);  file_read(vol, name, snapshot=None) -> bytes
  file_list(vol, snapshot=None) -> list[dict];  file_delete(vol, name)
  -- cheap lookups for the layers above (no space accounting)
  path;  uuid;  flush();  vol_exists(name) -> bool;  vol_names() -> list[str];  vol_parent(name) -> (vol, snap) | None
  object_exists(vol, name, snapshot=None) -> bool;  lun_serials(vol, snapshot=None) -> {lun: serial}
  -- records: JSON values the layers above keep in the pool (templates, VMs, ...)
  kv_get(scope, key, default=None);  kv_put(scope, key, value);  kv_delete(scope, key)
  kv_items(scope) -> [(key, value)]
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from contextlib import contextmanager

from ..engine import Pool
from . import clone as _clone
from . import igroup as _igroup
from . import lookup as _lookup
from . import lun as _lun
from . import lun_map as _map
from . import schedule as _sched
from . import snapshot as _snap
from . import space as _space
from . import volume as _vol
from .names import check, lun_path


class Filer:
    """ONTAP-style management model over one pool; see the module docstring."""

    def __init__(self, pool: Pool, clock=None, backend=None, holder: str | None = None):
        from ..backend import open_backend

        self.pool = pool
        self.backend = backend or open_backend(pool, holder=holder)
        self.clock = clock or _dt.datetime.now
        self._lock = threading.RLock()
        self._revoke_cbs: list = []
        self._pending_revokes: list[tuple[str, bool]] = []
        self._access_cbs: list = []
        self._op_depth = 0
        self._budgets: dict[int, _space.Budget] = {}
        self._splits: dict[str, dict] = {}
        self._map_index = None  # lun_map.MapIndex, built on first use

    # ---- lifecycle ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str,
        block_size: int = 4096,
        capacity: int | None = None,
        clock=None,
        backend: str = "native",
        ceph_conf: str | None = None,
        ceph_pool: str | None = None,
    ) -> Filer:
        """A new pool at ``path``; ``backend="rbd"`` keeps the LUN data in
        Ceph pool ``ceph_pool`` of the cluster ``ceph_conf`` describes. A
        refused create (bad backend, Ceph unreachable, Ceph pool owned by
        another Coppice) leaves nothing behind."""
        if backend == "native":
            return cls(Pool.create(path, block_size=block_size, capacity=capacity), clock=clock)
        from ..backend import configure, open_backend

        existed = os.path.isdir(path)
        pool = Pool.create(path, block_size=block_size, capacity=capacity)
        try:
            configure(pool, backend, ceph_conf=ceph_conf, ceph_pool=ceph_pool)
            be = open_backend(pool, holder="coppice pool create", creating=True)
        except BaseException:
            pool.close()
            _remove_new_pool(path, existed)
            raise
        return cls(pool, clock=clock, backend=be)

    @classmethod
    def open(cls, path: str, clock=None, holder: str | None = None) -> Filer:
        pool = Pool.open(path, holder=holder)
        try:
            return cls(pool, clock=clock, holder=holder)
        except BaseException:
            pool.close()
            raise

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- transactions and revocation -----------------------------------------------
    @contextmanager
    def transaction(self):
        """Group filer operations into one atomic commit; revocations and
        accounting refreshes happen once, after the commit."""
        with self._lock:
            self._op_depth += 1
            if self._op_depth == 1:
                self.backend.begin()
            try:
                with self.pool.transaction():
                    yield self
            except BaseException:
                self._op_depth -= 1
                if self._op_depth == 0:
                    self._pending_revokes.clear()
                    self._budgets.clear()
                    self._map_index = None  # the pool rolled back: rebuilt on next use
                    self.backend.rollback()
                raise
            self._op_depth -= 1
            if self._op_depth == 0:
                self._budgets.clear()
                pending, self._pending_revokes = self._pending_revokes, []
                for name, access_only in dict.fromkeys(pending):
                    for cb in list(self._access_cbs if access_only else self._revoke_cbs):
                        try:
                            cb(name)
                        except Exception:  # a broken listener must not undo a committed change
                            pass
                # after the revocations: deletions the backend deferred past the commit
                self.backend.commit()

    _op = transaction

    def revoke_later(self, export_name: str, access_only: bool = False) -> None:
        """After the commit, tell listeners the export changed: its content or
        identity (``on_revoke``), or only who may open it (``access_only``:
        ``on_access_change``, so the target cuts exactly who lost access)."""
        self._pending_revokes.append((export_name, access_only))

    def on_revoke(self, callback) -> None:
        self._revoke_cbs.append(callback)

    def on_access_change(self, callback) -> None:
        self._access_cbs.append(callback)

    def now(self) -> _dt.datetime:
        return self.clock()

    # ---- pool ------------------------------------------------------------------------
    def dump(self) -> dict:
        return self.pool.dump()

    def pool_info(self) -> dict:
        info = dict(self.backend.pool_space())
        info.update(self.backend.describe())
        info["path"] = self.pool.path
        info["uuid"] = self.pool.uuid
        info["volumes"] = len(self.pool.list_volumes())
        return info

    def fsck(self) -> dict:
        return self.backend.fsck()

    def direct_disk_access(self) -> dict | None:
        return self.backend.direct_disk_access()

    def scrub(self, progress=None) -> dict:
        return self.pool.scrub(progress).as_dict()

    def resolver(self):
        from .export_resolver import FilerExportResolver

        return FilerExportResolver(self)

    def open_lun(self, path: str, initiator=None, allow_offline: bool = False):
        """A BlockDevice for the LUN (read-only for a snapshot path). With an
        ``initiator``, access is checked as the NBD target does. An offline
        LUN opens only with ``allow_offline`` (for the provisioner's own
        work on a clone LUN before it goes online, e.g. resignaturing)."""
        if initiator is not None:
            return self.resolver().open_export(path, initiator)
        from .blockdev import open_lun_device

        return open_lun_device(self, path, allow_offline)

    # ---- volumes ---------------------------------------------------------------------
    def vol_create(self, name, size, guarantee: str = "none", snap_reserve: int | None = None) -> dict:
        return _vol.create(self, name, size, guarantee, snap_reserve)

    def vol_show(self, name: str | None = None) -> list[dict]:
        return _vol.show(self, name)

    def vol_info(self, name: str) -> dict:
        return _vol.info(self, name)

    def vol_destroy(self, name: str, force: bool = False, children: bool = False) -> list[str]:
        return _vol.destroy(self, name, force, children)

    def vol_rename(self, old: str, new: str) -> None:
        _vol.rename(self, old, new)

    def vol_size(self, name: str, size) -> dict:
        return _vol.resize(self, name, size)

    def vol_options(self, name: str) -> dict:
        return _vol.options(self, name)

    def vol_set_option(self, name: str, option: str, value) -> dict:
        return _vol.set_option(self, name, option, value)

    # ---- snapshots ---------------------------------------------------------------------
    def snap_create(self, vol: str, name: str) -> dict:
        return _snap.create(self, vol, name)

    def snap_list(self, vol: str) -> list[dict]:
        return _snap.list_(self, vol)

    def snap_delete(self, vol: str, name: str) -> None:
        _snap.delete(self, vol, name)

    def snap_rename(self, vol: str, old: str, new: str) -> None:
        _snap.rename(self, vol, old, new)

    def snap_restore(self, vol: str, name: str) -> dict:
        return _snap.restore(self, vol, name)

    def snap_reserve(self, vol: str, percent=None) -> int:
        return _snap.reserve(self, vol, percent)

    def snap_sched(self, vol: str, spec: str | None = None) -> dict:
        return _sched.set_schedule(self, vol, spec)

    def snap_sched_tick(self, now: _dt.datetime | None = None, volume: str | None = None) -> list[dict]:
        return _sched.tick(self, now or self.now(), volume)

    # ---- clones ------------------------------------------------------------------------
    def clone_create(
        self, new: str, parent: str, snap: str, remap: bool = False, schedule: str | None = None
    ) -> dict:
        return _clone.create(self, new, parent, snap, remap, schedule)

    def clone_show(self) -> list[dict]:
        return _clone.show(self)

    def clone_split_steps(self, vol: str):
        return _clone.split_steps(self, vol)

    def clone_split(self, vol: str, progress=None) -> dict:
        for done, total in _clone.split_steps(self, vol):
            if progress:
                progress(done, total)
        return _clone.split_status(self, vol)

    def clone_split_status(self, vol: str) -> dict:
        return _clone.split_status(self, vol)

    def clone_split_stop(self, vol: str) -> dict:
        return _clone.split_stop(self, vol)

    def clone_split_estimate(self, vol: str) -> dict:
        return _clone.split_estimate(self, vol)

    # ---- LUNs --------------------------------------------------------------------------
    def lun_create(self, path: str, size, ostype: str = "linux", comment: str = "") -> dict:
        return _lun.create(self, path, size, ostype, comment)

    def lun_show(
        self, path: str | None = None, volume: str | None = None, snapshots: bool = False
    ) -> list[dict]:
        return _lun.show(self, path, volume, snapshots)

    def lun_info(self, path: str) -> dict:
        return _lun.info(self, path)

    def lun_destroy(self, path: str, force: bool = False) -> None:
        _lun.destroy(self, path, force)

    def lun_resize(self, path: str, size, force: bool = False) -> dict:
        return _lun.resize(self, path, size, force)

    def lun_online(self, path: str) -> None:
        _lun.set_online(self, path, True)

    def lun_offline(self, path: str) -> None:
        _lun.set_online(self, path, False)

    def lun_rename(self, path: str, new_path: str) -> None:
        _lun.rename(self, path, new_path)

    def lun_comment(self, path: str, text: str) -> None:
        _lun.set_comment(self, path, text)

    def lun_clone_create(self, new_path: str, parent_path: str, snap: str) -> dict:
        return _lun.clone_create(self, new_path, parent_path, snap)

    def lun_map(self, path: str, igroup: str, lun_id: int | None = None) -> int:
        return _map.map_lun(self, path, igroup, lun_id)

    def lun_unmap(self, path: str, igroup: str) -> None:
        _map.unmap_lun(self, path, igroup)

    def lun_maps(self) -> list[dict]:
        return _map.all_maps(self)

    # ---- igroups -----------------------------------------------------------------------
    def igroup_create(self, name: str, initiators=(), ostype: str = "linux", protocol: str = "iscsi") -> dict:
        return _igroup.create(self, name, list(initiators), ostype, protocol)

    def igroup_destroy(self, name: str, force: bool = False) -> None:
        _igroup.destroy(self, name, force)

    def igroup_add(self, name: str, initiator: str) -> dict:
        return _igroup.add(self, name, initiator)

    def igroup_remove(self, name: str, initiator: str) -> dict:
        return _igroup.remove(self, name, initiator)

    def igroup_show(self, name: str | None = None) -> list[dict]:
        return _igroup.show(self, name)

    def igroup_rename(self, old: str, new: str) -> None:
        _igroup.rename(self, old, new)

    def igroup_set(self, name: str, ostype: str) -> dict:
        return _igroup.set_ostype(self, name, ostype)

    # ---- space -------------------------------------------------------------------------
    def df(self, volume: str | None = None, savings: bool = False) -> dict:
        return _space.df(self, volume, savings)

    # ---- small files -------------------------------------------------------------------
    def file_write(self, vol: str, name: str, data: bytes) -> None:
        check("file", name)
        with self._op():
            _lookup.require(self, vol)
            existing = self.pool.has_object(vol, name)
            if existing and self.pool.object_info(vol, name).kind != "file":
                from .errors import LunExists

                raise LunExists(path=lun_path(vol, name))
            self.pool.write_file(vol, name, bytes(data))

    def file_read(self, vol: str, name: str, snapshot: str | None = None) -> bytes:
        _lookup.require(self, vol, snapshot)
        return self.pool.read_file(vol, name, snapshot)

    def file_list(self, vol: str, snapshot: str | None = None) -> list[dict]:
        _lookup.require(self, vol, snapshot)
        return [
            {"name": o.name, "size": o.size}
            for o in self.pool.list_objects(vol, snapshot)
            if o.kind == "file"
        ]

    def file_delete(self, vol: str, name: str) -> None:
        with self._op():
            _lookup.require(self, vol)
            o = self.pool.object_info(vol, name)
            if o.kind != "file":
                from .errors import BadOption

                raise BadOption(detail=f"{name} in volume {vol} is a LUN; use `coppice lun destroy`")
            self.pool.delete_object(vol, name)

    # ---- cheap lookups for the layers above --------------------------------------------
    # The provisioner asks these per VM in a batch; vol_info/lun_show would compute
    # space accounting it does not need.
    @property
    def path(self) -> str:
        """The pool's directory."""
        return self.pool.path

    @property
    def uuid(self) -> str:
        """The pool's identity (it stays when the directory moves)."""
        return self.pool.uuid

    def flush(self) -> None:
        """Every write acknowledged so far survives power loss on return."""
        self.pool.flush()

    def vol_exists(self, name: str) -> bool:
        return self.pool.has_volume(name)

    def vol_names(self) -> list[str]:
        return [v.name for v in self.pool.list_volumes()]

    def vol_parent(self, name: str) -> tuple[str, str] | None:
        """(parent volume, snapshot) of a clone; None for a volume that is no clone."""
        _lookup.require(self, name)
        return self.pool.origin_of(name)

    def object_exists(self, vol: str, name: str, snapshot: str | None = None) -> bool:
        """Whether the volume (or its snapshot) holds a LUN or file ``name``; False
        when the volume or snapshot does not exist."""
        return self.pool.has_object(vol, name, snapshot)

    def lun_serials(self, vol: str, snapshot: str | None = None) -> dict[str, str]:
        _lookup.require(self, vol, snapshot)
        return {
            o.name: o.meta.get("serial", "") for o in self.pool.list_objects(vol, snapshot) if o.kind == "lun"
        }

    # ---- records -----------------------------------------------------------------------
    # Small JSON values upper layers keep beside the filer's own metadata (one commit
    # each, joining an enclosing transaction()).
    def kv_get(self, scope: str, key: str, default=None):
        return self.pool.kv_get(scope, key, default)

    def kv_put(self, scope: str, key: str, value) -> None:
        self.pool.kv_put(scope, key, value)

    def kv_delete(self, scope: str, key: str) -> None:
        self.pool.kv_delete(scope, key)

    def kv_items(self, scope: str) -> list[tuple[str, object]]:
        return self.pool.kv_items(scope)


def _remove_new_pool(path: str, existed: bool) -> None:
    """Undo a refused ``Filer.create``: the files it made, and the directory
    if it made that too."""
    import shutil

    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in ("pool.db", "pool.db-wal", "pool.db-shm", "pool.lock", "intent.log"):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            os.unlink(p)
    shutil.rmtree(os.path.join(path, "data"), ignore_errors=True)
