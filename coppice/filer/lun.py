"""LUNs: block devices inside volumes, with ONTAP's attributes and rules.

Contract: a LUN is an engine object of kind "lun" in a volume; its
attributes live in the object's meta, so snapshots and clones capture them:

    serial          str   12 characters, new for every LUN and every clone LUN
    ostype          str   linux, windows, vmware, ... (``OSTYPES``)
    online          bool  an offline LUN is served to nobody
    offline_reason  str   why the filer took it offline (clone LUN ID collisions)
    maps            list  [{"igroup": name, "lun_id": int}], see ``lun_map``
    comment         str

Rules: sizes are whole multiples of 512 bytes; a LUN in a thick volume
(guarantee volume) must fit in the volume's space outside the snapshot
reserve together with the other LUNs, a thin volume may be overcommitted
(writes then stop at the volume's size: ``space.Budget``); a LUN shrinks
below its data only with ``force``; a mapped LUN is destroyed only with
``force``; a LUN goes online only when none of its maps collides with an
online LUN's. Every mutation is one pool transaction; one that takes a LUN
away from initiators queues a revocation of its export.
"""

from __future__ import annotations

import secrets
import string

from ..engine import ObjectExists as _EngineObjectExists
from .errors import BadOption, LunBusy, LunExists, LunIdCollision, LunNotFound, LunTooSmall, VolumeFull
from .lookup import opts, require, resolve
from .lun_map import collisions, note_lun
from .names import check_lun, lun_path, parse_lun_path
from .sizes import format_size, parse_size
from .space import usage

OSTYPES = (
    "linux",
    "windows",
    "windows_2008",
    "windows_gpt",
    "vmware",
    "hyper_v",
    "xen",
    "solaris",
    "solaris_efi",
    "aix",
    "hpux",
    "netware",
    "openvms",
    "image",
)
SECTOR = 512
_SERIAL_CHARS = string.ascii_letters + string.digits


def new_serial() -> str:
    return "".join(secrets.choice(_SERIAL_CHARS) for _ in range(12))


def _lun_size(text) -> int:
    size = parse_size(text, "LUN size")
    if size % SECTOR:
        raise BadOption(
            detail=f"LUN size {text!r} is invalid: it must be a whole multiple of {SECTOR} bytes "
            f"(e.g. {format_size(-(-size // SECTOR) * SECTOR)})"
        )
    return size


def _check_thick(f, vol, path, extra: int) -> None:
    """A thick volume must hold all its LUNs at full size."""

    o = opts(f, vol)
    f.backend.require_thin(f"LUN {path} in volume {vol}", o["guarantee"])
    if o["guarantee"] != "volume" or extra <= 0 or o["size"] is None:
        return
    luns = sum(x.size for x in f.pool.list_objects(vol) if x.kind == "lun")
    total = usage(f, vol)["total"]
    if luns + extra > total:
        raise VolumeFull(
            volume=vol,
            what=f"LUN {path}",
            need=format_size(extra),
            avail=format_size(max(0, total - luns)),
            size=format_size(o["size"]),
        )


def create(f, path, size, ostype="linux", comment="") -> dict:
    vol, _, name = parse_lun_path(path)
    size = _lun_size(size)
    if ostype not in OSTYPES:
        raise BadOption(detail=f"ostype {ostype!r} is invalid: use one of {', '.join(OSTYPES)}")
    require(f, vol)
    with f.transaction():
        if f.pool.has_object(vol, name):
            raise LunExists(path=path)
        _check_thick(f, vol, path, size)
        f.backend.create_lun(
            vol,
            name,
            size,
            {
                "serial": new_serial(),
                "ostype": ostype,
                "online": True,
                "maps": [],
                "comment": comment or "",
            },
        )
        note_lun(f, vol, name)
    return info(f, path)


def _used(f, vol, name, snap, size) -> int:
    if not size:
        return 0
    h = f.backend.open_lun(vol, name, snap)
    try:
        return sum(ln for _, ln, fl in h.extents(0, size) if fl == 0)
    finally:
        h.close()


def info(f, path) -> dict:
    vol, snap, name, o = resolve(f, path, allow_snapshot=True)
    m = o.meta
    online = bool(m.get("online", True))
    return {
        "path": lun_path(vol, name, snap),
        "volume": vol,
        "snapshot": snap,
        "name": name,
        "size": o.size,
        "used": _used(f, vol, name, snap, o.size),
        "ostype": m.get("ostype", "linux"),
        "serial": m.get("serial", ""),
        "online": online if snap is None else False,
        "state": ("online" if online else "offline") if snap is None else "read-only",
        "read_only": snap is not None,
        "offline_reason": m.get("offline_reason") if snap is None else None,
        "maps": [dict(x) for x in m.get("maps", [])] if snap is None else [],
        "comment": m.get("comment", ""),
    }


def show(f, path=None, volume=None, snapshots=False) -> list[dict]:
    if path is not None:
        return [info(f, path)]
    vols = [volume] if volume is not None else [v.name for v in f.pool.list_volumes()]
    out = []
    for v in vols:
        require(f, v)
        out += [info(f, lun_path(v, o.name)) for o in f.pool.list_objects(v) if o.kind == "lun"]
        if snapshots:
            for s in f.pool.list_snapshots(v):
                out += [
                    info(f, lun_path(v, o.name, s.name))
                    for o in f.pool.list_objects(v, s.name)
                    if o.kind == "lun"
                ]
    return out


def destroy(f, path, force=False) -> None:
    vol, _, name, o = resolve(f, path)
    with f.transaction():
        maps = o.meta.get("maps") or []
        if maps and not force:
            raise LunBusy(
                path=path,
                why="it is mapped to igroup "
                + ", ".join(m["igroup"] for m in maps)
                + "; unmap it first or pass -f",
            )
        f.revoke_later(path)
        f.backend.delete_lun(vol, name)
        note_lun(f, vol, name)


def resize(f, path, size, force=False) -> dict:
    vol, _, name, o = resolve(f, path)
    if isinstance(size, str) and size[:1] in "+-":
        delta = _lun_size(size[1:])
        new = o.size + delta if size[0] == "+" else o.size - delta
        if new <= 0:
            raise BadOption(
                detail=f"LUN {path} cannot shrink by {size[1:]}: it is only {format_size(o.size)}"
            )
    else:
        new = _lun_size(size)
    with f.transaction():
        if new < o.size and not force:
            h = f.backend.open_lun(vol, name)
            try:
                ends = [s + ln for s, ln, fl in h.extents(new, o.size - new) if fl == 0]
            finally:
                h.close()
            if ends:
                raise LunTooSmall(path=path, size=format_size(new), end=format_size(max(ends)))
        _check_thick(f, vol, path, new - o.size)
        f.backend.resize_lun(vol, name, new)
        # a connected client still believes the old size
        f.revoke_later(path)
    return info(f, path)


def set_online(f, path, online: bool) -> None:

    vol, _, name, o = resolve(f, path)
    with f.transaction():
        meta = dict(o.meta)
        if online:
            coll = collisions(f, path, online_only=True)
            if coll:
                raise LunIdCollision(path=path, collisions="; ".join(coll))
            meta["online"] = True
            meta.pop("offline_reason", None)
        else:
            meta["online"] = False
            meta.pop("offline_reason", None)
            f.revoke_later(path, access_only=True)
        f.pool.set_object_meta(vol, name, meta)
        note_lun(f, vol, name)


def rename(f, path, new_path) -> None:
    vol, _, name, o = resolve(f, path)
    nvol, _, nname = parse_lun_path(new_path)
    if nvol != vol:
        raise BadOption(
            detail=f"lun move cannot cross volumes ({vol} -> {nvol}); clone or copy the LUN instead"
        )
    with f.transaction():
        if name != nname and f.pool.has_object(vol, nname):
            raise LunExists(path=new_path)
        f.revoke_later(path)
        try:
            f.backend.rename_lun(vol, name, nname)
        except _EngineObjectExists:
            raise LunExists(path=new_path) from None
        note_lun(f, vol, name)
        note_lun(f, vol, nname)


def set_comment(f, path, text) -> None:
    vol, _, name, o = resolve(f, path)
    with f.transaction():
        f.pool.set_object_meta(vol, name, dict(o.meta, comment=str(text)))


def clone_create(f, new_path, parent_path, snap) -> dict:
    """`lun clone create NEW -b PARENT SNAP`: an O(1) LUN-level clone of a LUN
    as it was in snapshot ``snap`` of the same volume; a new, unmapped,
    online LUN with a new serial number."""
    vol, _, name = parse_lun_path(new_path)
    pvol, psnap, pname = parse_lun_path(parent_path)
    if pvol != vol:
        raise BadOption(detail=f"a LUN clone lives in its parent's volume: {new_path} is not in /vol/{pvol}")
    check_lun(name)
    require(f, vol, snap)
    if not f.pool.has_object(vol, pname, snap) or f.pool.object_info(vol, pname, snap).kind != "lun":
        raise LunNotFound(path=lun_path(vol, pname, snap))
    with f.transaction():
        if f.pool.has_object(vol, name):
            raise LunExists(path=new_path)
        src = f.pool.object_info(vol, pname, snap)
        _check_thick(f, vol, new_path, src.size)
        meta = {
            "serial": new_serial(),
            "ostype": src.meta.get("ostype", "linux"),
            "online": True,
            "maps": [],
            "comment": src.meta.get("comment", ""),
            "parent": lun_path(vol, pname, snap),
        }
        f.backend.clone_lun(vol, name, pname, snap, meta)
        note_lun(f, vol, name)
    return info(f, new_path)
