"""LUN maps: which igroup sees which LUN under which LUN ID.

Contract: a LUN's maps are the ``maps`` list in its object meta (see
``lun``). LUN IDs run 0..4095 and are unique per igroup: mapping with an ID
another LUN holds (online or not) is refused naming that LUN; an omitted ID
is the lowest free one. The only way two LUNs come to share an (igroup, ID)
is a clone or a SnapRestore copying maps; such a LUN is offline, and it
goes online only when no *online* LUN holds any of its (igroup, ID) pairs
(``collisions``). Unmapping queues a revocation of the LUN's export.
"""

from __future__ import annotations

from .errors import BadLunId, LunAlreadyMapped, LunIdInUse, LunNotMapped
from .names import lun_path

MAX_LUN_ID = 4095


def active_luns(f) -> list[tuple[str, object]]:
    """(volume name, ObjRec) of every LUN of every volume (not snapshots)."""
    pool = f.pool
    # One pass over the pool's object table: list_objects per volume is
    # O(objects) each, which made a batch of maps cubic (found by the
    # provisioner). Engine feature request: list_objects_of_kind("lun").
    with pool._lock:
        vols = {d.id: d.name for d in pool.datasets.values() if d.kind == "volume"}
        return sorted(
            (
                (vols[o.dataset_id], o)
                for o in pool.objects.values()
                if o.dataset_id in vols and o.kind == "lun"
            ),
            key=lambda x: (x[0], x[1].name),
        )


def index(f, online_only: bool = False) -> dict[tuple[str, int], list[str]]:
    """(igroup, lun_id) -> paths of the active LUNs mapped so."""
    out: dict[tuple[str, int], list[str]] = {}
    for vname, o in active_luns(f):
        if online_only and not o.meta.get("online", True):
            continue
        for m in o.meta.get("maps") or []:
            out.setdefault((m["igroup"], int(m["lun_id"])), []).append(lun_path(vname, o.name))
    return out


def ids_in_use(f, igroup: str) -> dict[int, list[str]]:
    return {i: paths for (g, i), paths in index(f).items() if g == igroup}


def lowest_free(used) -> int:
    i = 0
    while i in used:
        i += 1
    if i > MAX_LUN_ID:
        raise BadLunId(lun_id=i)
    return i


def collisions(f, path: str, online_only: bool = True, maps=None) -> list[str]:
    """Messages naming each of the LUN's maps another LUN also holds."""
    from .lun import resolve

    if maps is None:
        maps = resolve(f, path)[3].meta.get("maps") or []
    idx = index(f, online_only)
    out = []
    for m in maps:
        holders = [p for p in idx.get((m["igroup"], int(m["lun_id"])), []) if p != path]
        if holders:
            out.append(f"LUN ID {m['lun_id']} in igroup {m['igroup']} is held by {', '.join(holders)}")
    return out


def _check_id(lun_id) -> int:
    if isinstance(lun_id, bool):
        raise BadLunId(lun_id=lun_id)
    if isinstance(lun_id, str):
        if not lun_id.strip().isdigit():
            raise BadLunId(lun_id=lun_id)
        lun_id = int(lun_id)
    if not isinstance(lun_id, int) or not 0 <= lun_id <= MAX_LUN_ID:
        raise BadLunId(lun_id=lun_id)
    return lun_id


def map_lun(f, path: str, igroup: str, lun_id=None) -> int:
    from .igroup import require as require_igroup
    from .lun import resolve

    vol, _, name, o = resolve(f, path)
    if lun_id is not None:
        lun_id = _check_id(lun_id)
    require_igroup(f, igroup)
    with f.transaction():
        maps = list(o.meta.get("maps") or [])
        for m in maps:
            if m["igroup"] == igroup:
                raise LunAlreadyMapped(path=path, igroup=igroup, lun_id=m["lun_id"])
        used = ids_in_use(f, igroup)
        if lun_id is None:
            lun_id = lowest_free(used)
        elif lun_id in used:
            raise LunIdInUse(lun_id=lun_id, igroup=igroup, holder=", ".join(used[lun_id]))
        maps.append({"igroup": igroup, "lun_id": lun_id})
        f.pool.set_object_meta(vol, name, dict(o.meta, maps=maps))
    return lun_id


def unmap_lun(f, path: str, igroup: str) -> None:
    from .lun import resolve

    vol, _, name, o = resolve(f, path)
    with f.transaction():
        maps = list(o.meta.get("maps") or [])
        keep = [m for m in maps if m["igroup"] != igroup]
        if len(keep) == len(maps):
            raise LunNotMapped(path=path, igroup=igroup)
        meta = dict(o.meta, maps=keep)
        if not meta.get("online", True) and meta.get("offline_reason"):
            # the reason may be gone with the map; recompute it
            coll = collisions(f, path, online_only=False, maps=keep)
            if coll:
                meta["offline_reason"] = "; ".join(coll)
            else:
                meta.pop("offline_reason", None)
        f.pool.set_object_meta(vol, name, meta)
        f.revoke_later(path, access_only=True)


def all_maps(f) -> list[dict]:
    out = []
    for vname, o in active_luns(f):
        for m in o.meta.get("maps") or []:
            out.append(
                {
                    "path": lun_path(vname, o.name),
                    "igroup": m["igroup"],
                    "lun_id": int(m["lun_id"]),
                    "online": bool(o.meta.get("online", True)),
                }
            )
    return sorted(out, key=lambda r: (r["igroup"], r["lun_id"], r["path"]))


def remap_lowest(f, vol: str, name: str, meta: dict) -> dict:
    """Give every map of LUN ``vol``/``name`` the lowest free ID in its igroup
    and bring it online (``vol clone create --remap``); returns the new meta."""
    path = lun_path(vol, name)
    new_maps = []
    for m in meta.get("maps") or []:
        used = {i for i, paths in ids_in_use(f, m["igroup"]).items() if paths != [path]}
        used |= {x["lun_id"] for x in new_maps if x["igroup"] == m["igroup"]}
        new_maps.append({"igroup": m["igroup"], "lun_id": lowest_free(used)})
    meta = dict(meta, maps=new_maps, online=True)
    meta.pop("offline_reason", None)
    f.pool.set_object_meta(vol, name, meta)
    return meta
