"""FlexVols: create, show, destroy, rename, size, options.

Contract: a volume's options live in its engine meta (so a clone copies
them): ``size`` (bytes), ``guarantee`` ("none" = thin, the default, or
"volume" = thick: LUN sizes must fit), ``snap_reserve`` (percent of size kept
for snapshots, default 5), ``nosnap`` (bool), ``snap_sched`` (7-mode text),
``sched_last`` (last schedule slot taken), ``split`` (last clone-split
status). Every mutation is one pool transaction (via ``Filer.transaction``).
Functions take the ``Filer`` as first argument; callers use the Filer.
"""

from __future__ import annotations

from ..engine import VolumeNotFound as _EngineVolumeNotFound
from . import lun_map, schedule, snapshot, space
from .errors import (
    BadOption,
    SnapshotHasClones,
    VolumeBusy,
    VolumeExists,
    VolumeNotFound,
    VolumeTooSmall,
)
from .lookup import DEFAULTS, opts, parse_percent, put_opts, require
from .names import check_volume, lun_path
from .sizes import format_size, parse_size

GUARANTEES = ("none", "volume")
MIN_VOL_SIZE = 1 << 20
OPTIONS = ("nosnap", "guarantee", "snap_reserve", "snap_sched")


def create(f, name, size, guarantee="none", snap_reserve=None) -> dict:
    check_volume(name)
    size = parse_size(size, "volume size")
    if size < MIN_VOL_SIZE:
        raise VolumeTooSmall(
            volume=name, size=format_size(size), why=f"the smallest volume is {format_size(MIN_VOL_SIZE)}"
        )
    if guarantee not in GUARANTEES:
        raise BadOption(detail=f"guarantee {guarantee!r} is invalid: use none (thin) or volume (thick)")
    f.backend.require_thin(f"volume {name} with guarantee {guarantee}", guarantee)
    reserve = DEFAULTS["snap_reserve"] if snap_reserve is None else parse_percent(snap_reserve)
    with f.transaction():
        if f.pool.has_volume(name):
            raise VolumeExists(name=name)
        f.backend.create_volume(
            name,
            meta={
                "size": size,
                "guarantee": guarantee,
                "snap_reserve": reserve,
                "nosnap": False,
                "snap_sched": "0 0 0",
            },
        )
    return info(f, name)


def clones_of_volume(f, name) -> list[tuple[str, str]]:
    """(snapshot, clone volume) pairs for every clone of a snapshot of ``name``."""
    out = []
    for s in f.pool.list_snapshots(name):
        for c in f.backend.snapshot_clones(name, s.name):
            out.append((s.name, c))
    return out


def info(f, name) -> dict:

    v = require(f, name)
    o = opts(f, name)
    origin = f.pool.origin_of(name)
    objs = f.pool.list_objects(name)
    u = space.usage(f, name)
    return {
        "name": name,
        "size": o["size"],
        "guarantee": o["guarantee"],
        "snap_reserve": o["snap_reserve"],
        "nosnap": bool(o["nosnap"]),
        "snap_sched": o["snap_sched"],
        "parent": f"{origin[0]}@{origin[1]}" if origin else None,
        "parent_volume": origin[0] if origin else None,
        "parent_snapshot": origin[1] if origin else None,
        "clones": [c for _, c in clones_of_volume(f, name)],
        "snapshots": len(f.pool.list_snapshots(name)),
        "luns": sum(1 for x in objs if x.kind == "lun"),
        "files": sum(1 for x in objs if x.kind == "file"),
        "lun_size_total": sum(x.size for x in objs if x.kind == "lun"),
        "used": u["used"],
        "available": u["available"],
        "shared": u["shared"],
        "snap_used": u["snap_used"],
        "created": v.created,
    }


def show(f, name=None) -> list[dict]:
    if name is not None:
        return [info(f, name)]
    return [info(f, v.name) for v in f.pool.list_volumes()]


def destroy(f, name, force=False, children=False) -> list[str]:
    """Destroy a volume, its snapshots and (``children``) every clone that
    depends on it, deepest first. Refused while clones depend on it (unless
    ``children`` and ``force``) or while its LUNs are mapped (unless ``force``)."""
    require(f, name)
    with f.transaction():
        order: list[str] = []

        def visit(v):
            for snap, c in clones_of_volume(f, v):
                if not (children and force):
                    raise SnapshotHasClones(volume=v, snap=snap, clones=c, first=c)
                visit(c)
            order.append(v)

        visit(name)
        for v in order:
            mapped = [
                lun_path(v, o.name) for o in f.pool.list_objects(v) if o.kind == "lun" and o.meta.get("maps")
            ]
            if mapped and not force:
                raise VolumeBusy(name=v, why=f"LUN {', '.join(mapped)} is mapped; unmap it first or pass -f")
        for v in order:
            _revoke_all(f, v)
            luns = [o.name for o in f.pool.list_objects(v) if o.kind == "lun"]
            f.backend.delete_volume(v)
            lun_map.forget_volume(f, v, luns)
    return order


def _revoke_all(f, v):
    for o in f.pool.list_objects(v):
        if o.kind == "lun":
            f.revoke_later(lun_path(v, o.name))
    for s in f.pool.list_snapshots(v):
        for o in f.pool.list_objects(v, s.name):
            if o.kind == "lun":
                f.revoke_later(lun_path(v, o.name, s.name))


def rename(f, old, new) -> None:
    check_volume(new)
    require(f, old)
    with f.transaction():
        if old != new and f.pool.has_volume(new):
            raise VolumeExists(name=new)
        _revoke_all(f, old)
        luns = [o.name for o in f.pool.list_objects(old) if o.kind == "lun"]
        try:
            f.backend.rename_volume(old, new)
        except _EngineVolumeNotFound:
            raise VolumeNotFound(name=old) from None
        lun_map.forget_volume(f, old, luns)
        lun_map.note_volume(f, new)


def resize(f, name, size) -> dict:
    """``vol size``: grow always; shrink only when the data (and, for a thick
    volume, the LUNs) still fit. ``size`` may be "+10g"/"-10g" for relative."""

    o = opts(f, name)
    cur = o["size"] or 0
    if isinstance(size, str) and size[:1] in "+-":
        delta = parse_size(size[1:], "size change")
        new = cur + delta if size[0] == "+" else cur - delta
    else:
        new = parse_size(size, "volume size")
    if new < MIN_VOL_SIZE:
        raise VolumeTooSmall(
            volume=name,
            size=format_size(max(new, 0)),
            why=f"the smallest volume is {format_size(MIN_VOL_SIZE)}",
        )
    with f.transaction():
        if new < cur:
            u = space.usage(f, name, size=new)
            if u["used"] > u["total"]:
                raise VolumeTooSmall(
                    volume=name,
                    size=format_size(new),
                    why=f"it holds {format_size(u['used'])} and only "
                    f"{format_size(u['total'])} would remain outside the snapshot reserve",
                )
            luns = sum(x.size for x in f.pool.list_objects(name) if x.kind == "lun")
            if o["guarantee"] == "volume" and luns > u["total"]:
                raise VolumeTooSmall(
                    volume=name,
                    size=format_size(new),
                    why=f"its LUNs total {format_size(luns)} and it is thick (guarantee volume)",
                )
        put_opts(f, name, size=new)
    return info(f, name)


def options(f, name) -> dict:
    o = opts(f, name)
    return {k: o[k] for k in ("nosnap", "guarantee", "snap_reserve", "snap_sched")} | {"size": o["size"]}


def _onoff(option, value) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).lower()
    if v in ("on", "true", "yes", "1"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    raise BadOption(detail=f"option {option} takes on or off, not {value!r}")


def set_option(f, name, option, value) -> dict:
    require(f, name)
    option = option.replace("-", "_")
    if option in ("nosnap", "no_snap"):
        with f.transaction():
            put_opts(f, name, nosnap=_onoff("nosnap", value))
    elif option == "guarantee":
        if value not in GUARANTEES:
            raise BadOption(detail=f"guarantee {value!r} is invalid: use none (thin) or volume (thick)")
        f.backend.require_thin(f"guarantee {value} on volume {name}", value)
        with f.transaction():
            if value == "volume":
                u = space.usage(f, name)
                luns = sum(x.size for x in f.pool.list_objects(name) if x.kind == "lun")
                if luns > u["total"]:
                    raise VolumeTooSmall(
                        volume=name,
                        size=format_size(u["size"]),
                        why=f"its LUNs total {format_size(luns)}, more than the "
                        f"{format_size(u['total'])} a thick volume can guarantee",
                    )
            put_opts(f, name, guarantee=value)
    elif option in ("snap_reserve", "reserve"):
        snapshot.reserve(f, name, value)
    elif option in ("snap_sched", "schedule"):
        schedule.set_schedule(f, name, value)
    else:
        raise BadOption(
            detail=f"unknown volume option {option!r}: use one of nosnap, guarantee, snap_reserve, snap_sched"
        )
    return options(f, name)
