"""Finding what a filer call names, and a volume's options.

Contract: the bottom of the filer's helper modules (it imports only
``errors`` and ``names``), so every other one takes its lookups from here
and the imports among them point one way. ``require`` returns the engine
record of a volume or one of its snapshots, ``resolve`` the LUN at a path,
``require_igroup`` an igroup's record; each raises the filer's NotFound
naming what is missing and changes nothing. ``opts`` is a volume's options
with their defaults filled in, ``put_opts`` changes some of them (call it
inside ``Filer.transaction``), ``parse_percent`` parses a snapshot-reserve
percentage. Functions take the ``Filer`` as first argument.
"""

from __future__ import annotations

from .errors import BadOption, IgroupNotFound, LunNotFound, SnapshotNotFound, VolumeNotFound
from .names import parse_lun_path

# A volume's options and their defaults (what ``volume`` documents).
DEFAULTS = {"size": None, "guarantee": "none", "snap_reserve": 5, "nosnap": False, "snap_sched": "0 0 0"}
# The pool kv scope of igroup records (``igroup``).
IGROUP_SCOPE = "igroup"


def require(f, name, snapshot: str | None = None):
    """The engine Dataset of volume ``name`` (or its snapshot), or a clear NotFound."""
    if not isinstance(name, str) or not f.pool.has_volume(name):
        raise VolumeNotFound(name=name)
    if snapshot is not None:
        if snapshot not in {s.name for s in f.pool.list_snapshots(name)}:
            raise SnapshotNotFound(volume=name, snap=snapshot)
        return f.pool.snapshot(name, snapshot)
    return f.pool.volume(name)


def opts(f, name) -> dict:
    o = dict(DEFAULTS)
    o.update(require(f, name).meta)
    return o


def put_opts(f, name, **changes) -> dict:
    meta = dict(require(f, name).meta)
    meta.update(changes)
    f.pool.set_volume_meta(name, meta)
    return meta


def parse_percent(v) -> int:
    try:
        p = int(str(v).rstrip("%"))
    except ValueError:
        raise BadOption(
            detail=f"snapshot reserve {v!r} is invalid: give a percentage from 0 to 100"
        ) from None
    if not 0 <= p <= 100:
        raise BadOption(detail=f"snapshot reserve {v!r} is invalid: give a percentage from 0 to 100")
    return p


def resolve(f, path, allow_snapshot: bool = False):
    """(volume, snapshot, name, ObjRec) of the LUN at ``path``, or LunNotFound."""
    vol, snap, name = parse_lun_path(path, allow_snapshot)
    require(f, vol, snap)
    if not f.pool.has_object(vol, name, snap):
        raise LunNotFound(path=path)
    o = f.pool.object_info(vol, name, snap)
    if o.kind != "lun":
        raise LunNotFound(path=path)
    return vol, snap, name, o


def require_igroup(f, name) -> dict:
    """The record of igroup ``name``, or IgroupNotFound."""
    if not isinstance(name, str):
        raise IgroupNotFound(name=name)
    rec = f.pool.kv_get(IGROUP_SCOPE, name)
    if rec is None:
        raise IgroupNotFound(name=name)
    return rec
