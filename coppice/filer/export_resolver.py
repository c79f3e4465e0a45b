"""Which LUNs an NBD initiator may list and open: the filer's
``coppice.nbd.blockdev.ExportResolver``.

Contract: export names are LUN paths, ``/vol/V/lun0``, and for snapshots
``/vol/V/.snapshot/S/lun0`` (read-only). A network initiator sees an active
LUN when it is online and mapped to an igroup that holds the initiator
(``igroup.matches``: its TLS/PSK name, or its IP address in a listed
network); it sees a snapshot's LUN when it sees the active LUN of the same
name. The local Unix-socket peer (root on this host) sees every online LUN
and every snapshot LUN. Anything not visible is reported NotFound, exactly
as a name that does not exist, so names cannot be probed. ``on_revoke``
registers with the Filer, which calls back after unmap, offline, destroy,
rename and SnapRestore commit.
"""

from __future__ import annotations

from ..errors import NotFound
from . import igroup as _igroup
from .names import lun_path, parse_lun_path


class ExportNotFound(NotFound):
    """Export {name} not found (or not mapped to this initiator); `coppice lun
    show -m` lists LUNs and their maps."""


class FilerExportResolver:
    def __init__(self, filer):
        self.filer = filer

    def _igroups_of(self, initiator) -> set[str]:
        return {
            name for name, rec in self.filer.pool.kv_items(_igroup.SCOPE) if _igroup.matches(rec, initiator)
        }

    def _visible(self, meta: dict, groups: set[str], initiator) -> bool:
        if not meta.get("online", True):
            return False
        if initiator.unix:
            return True
        return any(m["igroup"] in groups for m in meta.get("maps") or [])

    def list_exports(self, initiator) -> list[tuple[str, str]]:
        f = self.filer
        groups = set() if initiator.unix else self._igroups_of(initiator)
        out = []
        with f._lock:
            for v in f.pool.list_volumes():
                seen = set()
                for o in f.pool.list_objects(v.name):
                    if o.kind == "lun" and self._visible(o.meta, groups, initiator):
                        seen.add(o.name)
                        out.append((lun_path(v.name, o.name), f"LUN serial {o.meta.get('serial', '')}"))
                for s in f.pool.list_snapshots(v.name):
                    for o in f.pool.list_objects(v.name, s.name):
                        if o.kind == "lun" and (initiator.unix or o.name in seen):
                            out.append((lun_path(v.name, o.name, s.name), f"snapshot {s.name} (read-only)"))
        return out

    def open_export(self, name: str, initiator):
        from .blockdev import LunDevice

        f = self.filer
        try:
            vol, snap, lun = parse_lun_path(name, allow_snapshot=True)
        except Exception:
            raise ExportNotFound(name=name) from None
        with f._lock:
            pool = f.pool
            if not pool.has_volume(vol):
                raise ExportNotFound(name=name)
            if snap is None or not initiator.unix:
                groups = set() if initiator.unix else self._igroups_of(initiator)
                if not pool.has_object(vol, lun):
                    raise ExportNotFound(name=name)
                active = pool.object_info(vol, lun)
                if active.kind != "lun" or not self._visible(active.meta, groups, initiator):
                    raise ExportNotFound(name=name)
            if snap is not None:
                if (
                    snap not in {s.name for s in pool.list_snapshots(vol)}
                    or not pool.has_object(vol, lun, snap)
                    or pool.object_info(vol, lun, snap).kind != "lun"
                ):
                    raise ExportNotFound(name=name)
            return LunDevice(f, vol, lun, snap)

    def on_revoke(self, callback) -> None:
        self.filer.on_revoke(callback)
