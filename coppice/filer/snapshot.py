"""Snapshots: create, list, delete, rename, SnapRestore, reserve.

Contract: a snapshot freezes every object of a volume (LUN data and LUN
attributes, small files) at one instant, O(objects). Refused: creating one
on a ``nosnap`` volume; deleting or renaming one a clone depends on
(``SnapshotHasClones``: "snapshot is busy: clone X depends on it"). SnapRestore
brings the volume's objects back to the snapshot's content; LUNs that exist
on both sides keep their live attributes (maps, online state, serial), LUNs
that come back from the snapshot come back offline if their maps collide.
Every call is one pool transaction.
"""

from __future__ import annotations

import datetime as _dt

from .errors import SnapshotExists, SnapshotHasClones, SnapshotsDisabled
from .lookup import opts, parse_percent, put_opts, require
from .names import check_snapshot, lun_path


def create(f, vol, name, by: str = "user") -> dict:
    check_snapshot(name)
    require(f, vol)
    with f.transaction():
        if opts(f, vol)["nosnap"]:
            raise SnapshotsDisabled(volume=vol)
        if name in {s.name for s in f.pool.list_snapshots(vol)}:
            raise SnapshotExists(volume=vol, snap=name)
        f.backend.create_snapshot(vol, name, {"by": by})
    return info(f, vol, name)


def info(f, vol, name, active: set | None = None) -> dict:
    s = require(f, vol, name)
    sp = f.backend.space(vol, name)
    clones = f.backend.snapshot_clones(vol, name)
    return {
        "volume": vol,
        "name": name,
        "created": s.created,
        "created_iso": _dt.datetime.fromtimestamp(s.created).isoformat(timespec="seconds"),
        "by": s.meta.get("by", "user"),
        "clones": clones,
        "busy": bool(clones),
        "written": sp.written_bytes,
        "unique": sp.unique_bytes,
    }


def list_(f, vol) -> list[dict]:
    require(f, vol)
    # 7-mode lists newest first
    return [info(f, vol, s.name) for s in reversed(f.pool.list_snapshots(vol))]


def _busy(f, vol, name):
    clones = f.backend.snapshot_clones(vol, name)
    if clones:
        raise SnapshotHasClones(volume=vol, snap=name, clones=", ".join(clones), first=clones[0])


def delete(f, vol, name) -> None:
    require(f, vol, name)
    with f.transaction():
        _busy(f, vol, name)
        for o in f.pool.list_objects(vol, name):
            if o.kind == "lun":
                f.revoke_later(lun_path(vol, o.name, name))
        f.backend.delete_snapshot(vol, name)


def rename(f, vol, old, new) -> None:
    check_snapshot(new)
    require(f, vol, old)
    with f.transaction():
        _busy(f, vol, old)
        if old != new and new in {s.name for s in f.pool.list_snapshots(vol)}:
            raise SnapshotExists(volume=vol, snap=new)
        for o in f.pool.list_objects(vol, old):
            if o.kind == "lun":
                f.revoke_later(lun_path(vol, o.name, old))
        f.backend.rename_snapshot(vol, old, new)


def restore(f, vol, name) -> dict:
    """SnapRestore of the whole volume; see the module docstring."""
    from . import lun_map

    require(f, vol, name)
    with f.transaction():
        # copies: the engine updates restored object records in place
        before = {o.name: (o.kind, dict(o.meta)) for o in f.pool.list_objects(vol)}
        f.backend.restore_snapshot(vol, name)
        lun_map.forget_volume(f, vol, [n for n, (kind, _) in before.items() if kind == "lun"])
        lun_map.note_volume(f, vol)
        after = {o.name: o for o in f.pool.list_objects(vol)}
        offline = []
        for n, o in after.items():
            path = lun_path(vol, n)
            f.revoke_later(path)
            if o.kind != "lun":
                continue
            old_kind, old_meta = before.get(n, (None, None))
            if old_kind == "lun":
                meta = dict(o.meta)
                for k in ("maps", "online", "serial", "offline_reason", "comment"):
                    if k in old_meta:
                        meta[k] = old_meta[k]
                    else:
                        meta.pop(k, None)
                f.pool.set_object_meta(vol, n, meta)
                lun_map.note_lun(f, vol, n)
            else:
                coll = lun_map.collisions(f, path, online_only=False)
                if coll:
                    meta = dict(o.meta, online=False, offline_reason="; ".join(coll))
                    f.pool.set_object_meta(vol, n, meta)
                    lun_map.note_lun(f, vol, n)
                    offline.append({"path": path, "reason": meta["offline_reason"]})
        for n, (kind, _) in before.items():
            if n not in after and kind == "lun":
                f.revoke_later(lun_path(vol, n))
    out = {"volume": vol, "snapshot": name, "offline": offline}
    cost = getattr(f.backend, "restore_cost", None)
    if cost is not None:
        out["note"] = cost(vol, name)
    return out


def reserve(f, vol, percent=None) -> int:
    require(f, vol)
    if percent is None:
        return int(opts(f, vol)["snap_reserve"])
    p = parse_percent(percent)
    with f.transaction():
        put_opts(f, vol, snap_reserve=p)
    return p
