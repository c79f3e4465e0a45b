"""LUN maps: which igroup sees which LUN under which LUN ID.

Contract: a LUN's maps are the ``maps`` list in its object meta (see
``lun``). LUN IDs run 0..4095 and are unique per igroup: mapping with an ID
another LUN holds (online or not) is refused naming that LUN; an omitted ID
is the lowest free one. The only way two LUNs come to share an (igroup, ID)
is a clone or a SnapRestore copying maps; such a LUN is offline, and it
goes online only when no *online* LUN holds any of its (igroup, ID) pairs
(``collisions``). Unmapping queues a revocation of the LUN's export.

The map index (``MapIndex``, one per Filer, ``index_of(f)``): every lookup
a map, unmap, online or clone makes (who holds (igroup, ID), the lowest free
ID of an igroup, the LUNs mapped to an igroup) is answered from an
in-memory index, not by walking the pool's LUNs. It is built once from the
pool (O(LUNs), on first use after open) and kept in step by every filer
call that changes a LUN's maps, online state, path or existence
(``note_lun``, ``note_volume``, ``forget_volume``), right after the pool
call that made the change, so it mirrors the pool inside a transaction as
well. A transaction that rolls back drops it (``Filer.transaction``); the
next lookup rebuilds it. ``full_index(f)`` recounts from the pool: the
reference the tests hold the index to.
"""

from __future__ import annotations

from .errors import BadLunId, LunAlreadyMapped, LunIdInUse, LunNotMapped
from .lookup import require_igroup, resolve
from .names import lun_path

MAX_LUN_ID = 4095


def active_luns(f) -> list[tuple[str, object]]:
    """(volume name, ObjRec) of every LUN of every volume (not snapshots)."""
    pool = f.pool
    # One pass over the pool's object table: list_objects per volume is
    # O(objects) each.
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


def full_index(f, online_only: bool = False) -> dict[tuple[str, int], list[str]]:
    """(igroup, lun_id) -> paths of the active LUNs mapped so, recounted from
    every LUN of the pool: O(LUNs). The reference for ``MapIndex``."""
    out: dict[tuple[str, int], list[str]] = {}
    for vname, o in active_luns(f):
        if online_only and not o.meta.get("online", True):
            continue
        for m in o.meta.get("maps") or []:
            out.setdefault((m["igroup"], int(m["lun_id"])), []).append(lun_path(vname, o.name))
    return out


class MapIndex:
    """(igroup, LUN ID) -> the active LUNs holding it, with a bitmap of the
    used IDs per igroup. Every method is O(maps of one LUN) or O(holders of
    one ID); ``lowest_free`` is one operation on a 4096-bit integer."""

    def __init__(self):
        # path -> ((volume, lun) sort key, ((igroup, id), ...), online)
        self.by_path: dict[str, tuple[tuple[str, str], tuple[tuple[str, int], ...], bool]] = {}
        # igroup -> id -> {path: online}
        self.holders: dict[str, dict[int, dict[str, bool]]] = {}
        # igroup -> bit i set while some LUN holds ID i
        self.used: dict[str, int] = {}

    @classmethod
    def build(cls, f) -> MapIndex:
        idx = cls()
        for vname, o in active_luns(f):
            idx.set(vname, o.name, o.meta)
        return idx

    def set(self, vol: str, name: str, meta: dict | None) -> None:
        """LUN ``vol``/``name`` now has ``meta`` (None: it is gone)."""
        path = lun_path(vol, name)
        self.drop(path)
        maps = (meta or {}).get("maps") or []
        if not maps:
            return
        keys = tuple((m["igroup"], int(m["lun_id"])) for m in maps)
        online = bool(meta.get("online", True))
        self.by_path[path] = ((vol, name), keys, online)
        for g, i in keys:
            self.holders.setdefault(g, {}).setdefault(i, {})[path] = online
            self.used[g] = self.used.get(g, 0) | (1 << i)

    def drop(self, path: str) -> None:
        rec = self.by_path.pop(path, None)
        if rec is None:
            return
        for g, i in rec[1]:
            ids = self.holders[g]
            h = ids[i]
            h.pop(path, None)
            if not h:
                del ids[i]
                self.used[g] &= ~(1 << i)
            if not ids:
                del self.holders[g]
                del self.used[g]

    def _sorted(self, paths) -> list[str]:
        return sorted(paths, key=lambda p: self.by_path[p][0])

    def holders_of(self, igroup: str, lun_id: int, online_only: bool = False) -> list[str]:
        h = self.holders.get(igroup, {}).get(lun_id)
        if not h:
            return []
        return self._sorted(p for p, on in h.items() if on or not online_only)

    def ids(self, igroup: str) -> dict[int, list[str]]:
        """ID -> holders for one igroup: O(its maps)."""
        return {i: self._sorted(h) for i, h in sorted(self.holders.get(igroup, {}).items())}

    def lowest_free(self, igroup: str, also_used: int = 0) -> int:
        m = self.used.get(igroup, 0) | also_used
        i = ((m + 1) & ~m).bit_length() - 1  # the lowest clear bit
        if i > MAX_LUN_ID:
            raise BadLunId(lun_id=i)
        return i

    def free_count(self, igroup: str) -> int:
        return MAX_LUN_ID + 1 - self.used.get(igroup, 0).bit_count()

    def as_dict(self, online_only: bool = False) -> dict[tuple[str, int], list[str]]:
        """The same shape as ``full_index``, for comparing the two."""
        out = {}
        for g, ids in self.holders.items():
            for i in ids:
                paths = self.holders_of(g, i, online_only)
                if paths:
                    out[(g, i)] = paths
        return out

    def maps(self) -> list[dict]:
        out = []
        for path, (_, keys, online) in self.by_path.items():
            for g, i in keys:
                out.append({"path": path, "igroup": g, "lun_id": i, "online": online})
        return out


def index_of(f) -> MapIndex:
    """The filer's map index, built on first use (see the module docstring)."""
    with f._lock:
        idx = getattr(f, "_map_index", None)
        if idx is None:
            idx = f._map_index = MapIndex.build(f)
        return idx


def note_lun(f, vol: str, name: str) -> None:
    """Bring the index in step with LUN ``vol``/``name`` as the pool has it now
    (created, remapped, online/offline, or gone). Call after the pool call."""
    with f._lock:
        idx = getattr(f, "_map_index", None)
        if idx is None:
            return  # built from the pool on first use
        pool = f.pool
        o = None
        if pool.has_volume(vol) and pool.has_object(vol, name):
            o = pool.object_info(vol, name)
        idx.set(vol, name, o.meta if o is not None and o.kind == "lun" else None)


def forget_volume(f, vol: str, names) -> None:
    """Volume ``vol``'s LUNs ``names`` left the active file system (destroyed,
    renamed away, or about to be replaced by a SnapRestore)."""
    with f._lock:
        idx = getattr(f, "_map_index", None)
        if idx is not None:
            for n in names:
                idx.drop(lun_path(vol, n))


def note_volume(f, vol: str) -> None:
    """Every LUN of volume ``vol`` as the pool has it now: O(its objects)."""
    with f._lock:
        idx = getattr(f, "_map_index", None)
        if idx is None:
            return
        for o in f.pool.list_objects(vol):
            if o.kind == "lun":
                idx.set(vol, o.name, o.meta)


def ids_in_use(f, igroup: str) -> dict[int, list[str]]:
    return index_of(f).ids(igroup)


def lowest_free(used) -> int:
    i = 0
    while i in used:
        i += 1
    if i > MAX_LUN_ID:
        raise BadLunId(lun_id=i)
    return i


def collisions(f, path: str, online_only: bool = True, maps=None) -> list[str]:
    """Messages naming each of the LUN's maps another LUN also holds."""

    if maps is None:
        maps = resolve(f, path)[3].meta.get("maps") or []
    idx = index_of(f)
    out = []
    for m in maps:
        holders = [p for p in idx.holders_of(m["igroup"], int(m["lun_id"]), online_only) if p != path]
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

    vol, _, name, o = resolve(f, path)
    if lun_id is not None:
        lun_id = _check_id(lun_id)
    require_igroup(f, igroup)
    with f.transaction():
        maps = list(o.meta.get("maps") or [])
        for m in maps:
            if m["igroup"] == igroup:
                raise LunAlreadyMapped(path=path, igroup=igroup, lun_id=m["lun_id"])
        idx = index_of(f)
        if lun_id is None:
            lun_id = idx.lowest_free(igroup)
        else:
            holders = idx.holders_of(igroup, lun_id)
            if holders:
                raise LunIdInUse(lun_id=lun_id, igroup=igroup, holder=", ".join(holders))
        maps.append({"igroup": igroup, "lun_id": lun_id})
        f.pool.set_object_meta(vol, name, dict(o.meta, maps=maps))
        note_lun(f, vol, name)
    return lun_id


def unmap_lun(f, path: str, igroup: str) -> None:

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
        note_lun(f, vol, name)
        f.revoke_later(path, access_only=True)


def all_maps(f, igroup: str | None = None) -> list[dict]:
    """Every map (or those of ``igroup``), sorted by igroup, ID, path."""
    with f._lock:
        idx = index_of(f)
        if igroup is None:
            out = idx.maps()
        else:
            out = [
                {"path": p, "igroup": igroup, "lun_id": i, "online": idx.by_path[p][2]}
                for i, paths in idx.ids(igroup).items()
                for p in paths
            ]
    return sorted(out, key=lambda r: (r["igroup"], r["lun_id"], r["path"]))


def remap_lowest(f, vol: str, name: str, meta: dict) -> dict:
    """Give every map of LUN ``vol``/``name`` the lowest free ID in its igroup
    and bring it online (``vol clone create --remap``); returns the new meta."""
    idx = index_of(f)
    idx.drop(lun_path(vol, name))  # its own (copied) IDs do not count as used
    try:
        taken: dict[str, int] = {}
        new_maps = []
        for m in meta.get("maps") or []:
            g = m["igroup"]
            i = idx.lowest_free(g, taken.get(g, 0))
            taken[g] = taken.get(g, 0) | (1 << i)
            new_maps.append({"igroup": g, "lun_id": i})
        meta = dict(meta, maps=new_maps, online=True)
        meta.pop("offline_reason", None)
        f.pool.set_object_meta(vol, name, meta)
    finally:
        note_lun(f, vol, name)  # in step with the pool, whatever happened
    return meta
