"""FlexClones: writable volumes rooted at a snapshot, and clone split.

Contract:

* ``create`` is O(objects) and one transaction. The clone copies the
  parent's volume options except the snapshot schedule (none unless
  ``schedule`` is given). Its LUNs get new serial numbers and carry the
  parent's maps; a LUN whose map collides with another LUN's (igroup, ID)
  comes up offline with ``offline_reason`` naming the colliding map, as
  ONTAP does, so no host sees two copies under one ID. With ``remap`` every
  clone LUN instead gets the lowest free ID in each of its igroups and comes
  up online, in the same transaction.
* ``split_steps`` is the resumable step function a job runner drives: a
  generator of (done, total) that copies the blocks the clone still shares
  with its parent snapshot a bounded piece at a time (the engine's
  ``split_clone_steps``); when it finishes the clone no longer depends on the
  snapshot. It can be stopped between steps (``split_stop`` or closing the
  generator) and started again later: already-split blocks are not copied
  twice. The last status is kept in the volume's meta (``split``).
"""

from __future__ import annotations

import time

from .errors import NotAClone, SplitNotRunning, VolumeExists
from .lookup import opts, put_opts, require
from .lun_map import collisions, note_lun, note_volume, remap_lowest
from .names import check_volume, lun_path


def create(f, new, parent, snap, remap=False, schedule=None) -> dict:
    from . import lun as _lun
    from . import schedule as _sched

    check_volume(new)
    require(f, parent, snap)
    sched_text = _sched.format_schedule(_sched.parse(schedule)) if schedule is not None else "0 0 0"
    with f.transaction():
        if f.pool.has_volume(new):
            raise VolumeExists(name=new)
        p = opts(f, parent)
        meta = {k: p[k] for k in ("size", "guarantee", "snap_reserve", "nosnap")}
        meta["snap_sched"] = sched_text

        def object_meta(name, m):
            if "serial" in m or m.get("maps") is not None:
                m = dict(m, serial=_lun.new_serial())
            return m

        f.backend.clone_volume(new, parent, snap, meta, object_meta)
        note_volume(f, new)
        luns, messages = [], []
        for o in f.pool.list_objects(new):
            if o.kind != "lun":
                continue
            path = lun_path(new, o.name)
            m = dict(o.meta)
            if remap:
                m = remap_lowest(f, new, o.name, m)
            else:
                coll = collisions(f, path, online_only=False)
                if coll:
                    m["online"] = False
                    m["offline_reason"] = "; ".join(coll)
                    f.pool.set_object_meta(new, o.name, m)
                    note_lun(f, new, o.name)
                    messages.append(f"LUN {path} is offline: {m['offline_reason']}")
            luns.append(
                {
                    "path": path,
                    "online": bool(m.get("online", True)),
                    "serial": m.get("serial"),
                    "maps": m.get("maps", []),
                    "offline_reason": m.get("offline_reason"),
                }
            )
    return {
        "volume": new,
        "parent": parent,
        "snapshot": snap,
        "snap_sched": sched_text,
        "luns": luns,
        "messages": messages,
    }


def show(f) -> list[dict]:
    out = []
    for v in f.pool.list_volumes():
        origin = f.pool.origin_of(v.name)
        if origin is None:
            continue
        out.append(
            {
                "volume": v.name,
                "parent_volume": origin[0],
                "parent_snapshot": origin[1],
                "shared": f.backend.split_estimate(v.name),
                "split": opts(f, v.name).get("split"),
            }
        )
    return out


def _persist(f, vol, state: dict) -> None:
    if not f.pool.has_volume(vol):
        return
    with f.transaction():
        put_opts(f, vol, split={k: state[k] for k in ("state", "done", "total")} | {"at": time.time()})


def split_steps(f, vol):
    """See the module docstring; a generator of (done, total)."""
    require(f, vol)
    if f.pool.origin_of(vol) is None:
        raise NotAClone(volume=vol)
    return _split_gen(f, vol)


def _split_gen(f, vol):
    state = {"state": "running", "done": 0, "total": 0, "stop": False}
    f._splits[vol] = state
    _persist(f, vol, state)
    gen = f.backend.split_steps(vol)
    try:
        for done, total in gen:
            state.update(done=done, total=total)
            yield done, total
            if state["stop"]:
                gen.close()
                state["state"] = "stopped"
                _persist(f, vol, state)
                return
        state["state"] = "done"
        state["done"] = state["total"]
        _persist(f, vol, state)
    except BaseException:
        gen.close()
        state["state"] = "stopped"
        _persist(f, vol, state)
        raise
    finally:
        f._splits.pop(vol, None)
        f._budgets.clear()


def split_status(f, vol) -> dict:
    require(f, vol)
    origin = f.pool.origin_of(vol)
    live = f._splits.get(vol)
    last = opts(f, vol).get("split") or {}
    st = live if live is not None else last
    state = st.get("state") or ("none" if origin else "not a clone")
    done, total = st.get("done", 0), st.get("total", 0)
    return {
        "volume": vol,
        "clone": origin is not None,
        "parent": f"{origin[0]}@{origin[1]}" if origin else None,
        "state": state,
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else (100 if state == "done" else 0),
        "remaining_bytes": f.backend.split_estimate(vol) if origin else 0,
    }


def split_stop(f, vol) -> dict:
    require(f, vol)
    live = f._splits.get(vol)
    if live is not None:
        live["stop"] = True
    else:
        last = opts(f, vol).get("split") or {}
        if last.get("state") != "running":
            raise SplitNotRunning(volume=vol)
        # a split whose process died: record that it is no longer running
        _persist(f, vol, {"state": "stopped", "done": last.get("done", 0), "total": last.get("total", 0)})
    return split_status(f, vol)


def split_estimate(f, vol) -> dict:
    require(f, vol)
    if f.pool.origin_of(vol) is None:
        raise NotAClone(volume=vol)
    need = f.backend.split_estimate(vol)
    free = f.backend.pool_space()["free_bytes"]
    return {"volume": vol, "bytes": need, "pool_free": free, "fits": need <= free}
