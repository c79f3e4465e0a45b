"""/console/api: the read models and the few actions the web console needs beyond the REST API.

Contract: every route needs the API's credentials (the bearer token, or a
console session, which ``coppice.console.session`` turns into it) and is
left out of ``/openapi.json`` (the console's own, not a public contract).
Lists are paged and searched on the server, so a pool of 10,000 volumes or
VMs sends the browser one page: ``q`` (case-insensitive substring of the
name), ``offset``, ``limit`` (1..500); each answer is ``{total, offset,
limit, rows}`` where ``total`` counts what matched.

* ``GET /console/api/overview``: pool space, counts, NBD connections, jobs
  running.
* ``GET /console/api/space?hours=H``: the space history the daemon records
  (``coppice.api.space_history``), plus a sample taken now.
* ``GET /console/api/savings[?fresh=true]``: saved by clones and by dedup,
  computed at most every ``SAVINGS_SECONDS`` however many consoles ask.
* ``GET /console/api/tree``: the volume tree flattened in display order —
  each root volume, then under it its snapshots, and under each snapshot
  the clones rooted there (recursively). A row matching ``q`` comes with
  its ancestors, so a hit is never shown out of its place in the tree.
  Without ``q``, the clones of a snapshot named in ``collapse``
  (``VOL@SNAP``, repeatable) are left out, and so are those of a snapshot
  holding more than ``AUTO_COLLAPSE`` clones unless named in ``expand``;
  such a snapshot row says ``collapsed``.
* ``GET /console/api/luns``: LUNs with their maps and open NBD connections
  (how many, and who: TLS name, address or the local socket).
* ``GET /console/api/vms``: VMs with template, snapshot, host (libvirt URI)
  and state (asked of libvirt for the rows of the page only), and
  ``hypervisors``: the URIs this daemon connects to (``--connect``).
* ``POST /console/api/vms/{name}/start|shutdown|poweroff``: the VM's power.
* ``GET /console/api/events``: server-sent events, one ``job`` event per job
  record that changed (all of them when the stream opens), so the console
  shows progress as jobs run. A stream ends after ``STREAM_SECONDS`` (the
  browser reconnects by itself) or when the daemon stops.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from .. import hypervisors
from ..auth import require_token
from ..codec import to_jsonable

router = APIRouter(prefix="/console/api", include_in_schema=False, dependencies=[Depends(require_token)])

Q = Annotated[str, Query(max_length=256)]
Offset = Annotated[int, Query(ge=0, le=2**31)]
Limit = Annotated[int, Query(ge=1, le=500)]
STREAM_SECONDS = 300.0
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
HELD_BY_SHOWN = 5
SAVINGS_SECONDS = 300.0
AUTO_COLLAPSE = 50


def _page(rows: list, offset: int, limit: int) -> dict:
    return {"total": len(rows), "offset": offset, "limit": limit, "rows": rows[offset : offset + limit]}


def _match(q: str):
    q = q.strip().lower()
    return (lambda name: True) if not q else (lambda name: q in name.lower())


@router.get("/overview")
def overview(request: Request):
    st = request.app.state
    f = st.filer
    info = f.pool_info()
    vols = f.vol_names()
    clones = sum(1 for n in vols if f.vol_parent(n) is not None)
    nbd = getattr(st, "nbd", None)
    jobs = st.jobs.list() if st.jobs is not None else []
    from ...provision import registry

    return to_jsonable(
        {
            "pool": info,
            "volumes": len(vols),
            "clones": clones,
            "luns": len(lun_paths(f)),
            "vms": len(f.kv_items(registry.VM)),
            "nbd_connections": len(nbd.connections()) if nbd is not None else None,
            "jobs_running": sum(1 for j in jobs if j["state"] in ("queued", "running")),
            "daemon": {
                k: v for k, v in (st.daemon_info or {}).items() if k in ("api_url", "nbd", "pid", "tls")
            },
        }
    )


@router.get("/space")
def space(request: Request, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24.0):
    from .. import space_history

    f = request.app.state.filer
    now = time.time()
    samples = space_history.SpaceHistory(f.path).samples(since=now - hours * 3600)
    samples.append(space_history.sample(f, now))
    return {"interval": space_history.sample_interval(), "samples": samples}


_savings_lock = threading.Lock()


@router.get("/savings")
def savings(request: Request, fresh: bool = False):
    """The pool's savings (``GET /dedup/savings``'s pool part). That walks every block map, so
    one computation serves every console for ``SAVINGS_SECONDS`` and concurrent asks wait for
    it rather than start their own; ``fresh`` recomputes."""
    from ...dedup.facade import Dedup

    st = request.app.state
    with _savings_lock:
        cached = getattr(st, "console_savings", None)
        if cached is None or fresh or time.time() - cached["at"] > SAVINGS_SECONDS:
            cached = {"at": time.time(), "pool": to_jsonable(Dedup(st.filer).sis_savings()["pool"])}
            st.console_savings = cached
    return cached


def _volume_row(name: str, depth: int, parent: tuple[str, str] | None) -> dict:
    return {
        "kind": "volume",
        "name": name,
        "depth": depth,
        "clone": parent is not None,
        "parent_volume": parent[0] if parent else None,
        "parent_snapshot": parent[1] if parent else None,
    }


def _fill_volume(filer, row: dict) -> None:
    """Space and split state: computed for the rows of one page only (they cost per volume)."""
    v = filer.vol_info(row["name"])
    row.update({k: v[k] for k in ("size", "used", "shared", "available", "luns", "snapshots")})
    row["split"] = None
    if row["clone"]:
        st = filer.clone_split_status(row["name"])
        if st["state"] not in ("none", "not a clone"):
            row["split"] = {k: st[k] for k in ("state", "done", "total")}


def _snapshot_row(s: dict, depth: int) -> dict:
    clones = s.get("clones") or []
    return {
        "kind": "snapshot",
        "name": s["name"],
        "volume": s["volume"],
        "depth": depth,
        "created": s["created"],
        "busy": s["busy"],
        # a golden image's snapshot may hold thousands of clones: a few names and the count
        "held_by": [f"clone {c}" for c in clones[:HELD_BY_SHOWN]],
        "held_by_count": len(clones),
        "unique": s.get("unique"),
    }


def tree_rows(filer) -> list[dict]:
    """Every volume and snapshot in display order (see the module docstring), each with
    ``ancestors``: the indexes of the rows above it in the tree, so a search can bring them
    along. Volume rows carry names and parentage only; ``_fill_volume`` adds the rest."""
    names = sorted(filer.vol_names())
    parents = {n: filer.vol_parent(n) for n in names}
    children: dict[tuple[str, str], list[str]] = {}
    for n, p in parents.items():
        if p is not None:
            children.setdefault(p, []).append(n)
    rows: list[dict] = []

    def add_volume(name: str, depth: int, ancestors: tuple) -> None:
        row = _volume_row(name, depth, parents[name])
        row["ancestors"] = ancestors
        rows.append(row)
        me = len(rows) - 1
        for s in sorted(filer.snap_list(name), key=lambda s: s["created"]):
            srow = _snapshot_row(s, depth + 1)
            srow["ancestors"] = (*ancestors, me)
            rows.append(srow)
            sidx = len(rows) - 1
            for c in children.get((name, s["name"]), ()):
                add_volume(c, depth + 2, (*ancestors, me, sidx))

    for name in names:
        if parents[name] is None or parents[name][0] not in parents:
            add_volume(name, 0, ())
    return rows


Keys = Annotated[list[str], Query(max_length=1000)]


def _fold(rows: list[dict], collapse: set[str], expand: set[str]) -> list[dict]:
    """Hide the clones under collapsed snapshots: those named in ``collapse`` and, unless named
    in ``expand``, those holding more than ``AUTO_COLLAPSE`` clones (a golden image's thousand
    VMs would otherwise bury every other volume)."""
    hidden: set[int] = set()
    for i, r in enumerate(rows):
        if r["kind"] != "snapshot" or not r["held_by_count"]:
            continue
        key = f"{r['volume']}@{r['name']}"
        r["collapsed"] = key in collapse or (r["held_by_count"] > AUTO_COLLAPSE and key not in expand)
        if r["collapsed"]:
            hidden.add(i)
    return [r for r in rows if not hidden.intersection(r["ancestors"])]


@router.get("/tree")
def tree(
    request: Request,
    q: Q = "",
    offset: Offset = 0,
    limit: Limit = 100,
    collapse: Keys = [],  # noqa: B006 (FastAPI copies query defaults)
    expand: Keys = [],  # noqa: B006
):
    filer = request.app.state.filer
    rows = tree_rows(filer)
    if not q.strip():
        rows = _fold(rows, set(collapse), set(expand))
    else:
        match = _match(q)
        keep: set[int] = set()
        for i, r in enumerate(rows):
            if match(r["name"]):
                keep.add(i)
                keep.update(r["ancestors"])
        for i in keep:
            rows[i]["match"] = match(rows[i]["name"])
        rows = [rows[i] for i in sorted(keep)]
    page = _page(rows, offset, limit)
    for r in page["rows"]:
        r.pop("ancestors", None)
        if r["kind"] == "volume":
            _fill_volume(filer, r)
    return to_jsonable(page)


def _nbd_clients(state) -> dict[str, list[str]]:
    """Export name -> who is connected (TLS name, address, or 'local socket'), from the target."""
    nbd = getattr(state, "nbd", None)
    out: dict[str, list[str]] = {}
    if nbd is None:
        return out
    for c in nbd.connections():
        name = c["export"] or ""
        name = name if name.startswith("/") else "/" + name
        ini = c["initiator"]
        who = "local socket" if ini.unix else (ini.name or ini.address or "?")
        out.setdefault(name, []).append(who + (" (TLS)" if c.get("tls") else ""))
    return out


@router.get("/luns")
def luns(request: Request, q: Q = "", offset: Offset = 0, limit: Limit = 100):
    st = request.app.state
    match = _match(q)
    paths = sorted(p for p in lun_paths(st.filer) if match(p))
    page = _page(paths, offset, limit)
    clients = _nbd_clients(st)
    page["rows"] = [st.filer.lun_info(p) for p in page["rows"]]  # space and maps: this page's only
    for r in page["rows"]:
        r["nbd_clients"] = clients.get(r["path"], [])
        r["nbd_connections"] = len(r["nbd_clients"])
    page["nbd_available"] = getattr(st, "nbd", None) is not None
    return to_jsonable(page)


def lun_paths(filer) -> list[str]:
    return [f"/vol/{v}/{name}" for v in filer.vol_names() for name in filer.lun_serials(v)]


def _vm_state(hvs, rec: dict) -> str:
    try:
        hv = hvs.get(rec.get("uri"))  # a URI this daemon does not allow (any more): unknown
        return hv.state(rec["name"]) if hv.exists(rec["name"]) else "undefined"
    except Exception:
        return "unknown"


def _vm_row(filer, name: str, hvs) -> dict:
    from ...errors import CoppiceError
    from ...provision import vm

    try:
        rec = vm.record(filer, name)
    except CoppiceError as e:  # one damaged record is shown as such, not a page that fails
        return {"name": name, "state": "damaged record", "error": str(e)}
    row = {
        "name": rec.name,
        "template": rec.template,
        "base_snapshot": rec.base_snapshot,
        "clone": rec.volume,
        "uri": rec.uri,
        "hostname": rec.hostname,
        "address": rec.address,
    }
    row["state"] = _vm_state(hvs, row)
    return row


@router.get("/vms")
def vms(request: Request, q: Q = "", offset: Offset = 0, limit: Limit = 100):
    from ...provision import registry

    st = request.app.state
    match = _match(q)
    names = sorted(k for k, _ in st.filer.kv_items(registry.VM) if match(k))
    page = _page(names, offset, limit)
    hvs = hypervisors.of(st)
    page["rows"] = [
        _vm_row(st.filer, n, hvs) for n in page["rows"]
    ]  # records checked, libvirt asked: page only
    page["hypervisors"] = list(hvs.allowed)  # what a provisioning request may name, default first
    return to_jsonable(page)


def _power(request: Request, name: str, action: str) -> dict:
    from ...provision import vm

    st = request.app.state
    rec = vm.get(st.filer, name)  # VMNotFound: 404, BadRecord: 409
    hv = hypervisors.of(st).get(rec.get("uri"))  # ConnectNotAllowed (403) for a URI not configured
    getattr(hv, action)(name)
    return {"name": name, "state": _vm_state(hypervisors.of(st), rec)}


@router.post("/vms/{name}/start")
def vm_start(request: Request, name: str):
    return _power(request, name, "start")


@router.post("/vms/{name}/shutdown")
def vm_shutdown(request: Request, name: str):
    return _power(request, name, "shutdown")


@router.post("/vms/{name}/poweroff")
def vm_poweroff(request: Request, name: str):
    return _power(request, name, "destroy")


def _event(kind: str, data) -> str:
    return f"event: {kind}\ndata: {json.dumps(to_jsonable(data), separators=(',', ':'))}\n\n"


@router.get("/events")
async def events(request: Request):
    st = request.app.state

    async def stream():
        seen: dict[str, float] = {}
        end = time.monotonic() + STREAM_SECONDS
        beat = time.monotonic()
        yield "retry: 2000\n\n"
        while not getattr(st, "stopping", False) and time.monotonic() < end:
            if await request.is_disconnected():
                return
            for rec in st.jobs.list() if st.jobs is not None else []:
                if seen.get(rec["id"]) != rec.get("updated"):
                    seen[rec["id"]] = rec.get("updated")
                    yield _event("job", rec)
            if time.monotonic() - beat > HEARTBEAT_SECONDS:
                beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
