"""/volumes/{vol}/schedule and /schedules: `snap sched` policies and the scheduler."""

from __future__ import annotations

import datetime as _dt

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ..auth import require_token
from ..ops import Model, Name, Text, build_router


class Sched(Model):
    spec: Text = Field(description="ONTAP `weeks days hours[@list]`, e.g. `0 2 6@8,12,16,20`; `0` disables")


class Tick(Model):
    now: _dt.datetime | None = Field(None, description="the time to run the schedules at (default: now)")
    volume: Name | None = None


MODELS = {
    "snap_sched": Sched,
    "snap_sched_tick": Tick,
}

router = build_router("schedules", MODELS)
extra = APIRouter(tags=["schedules"], dependencies=[Depends(require_token)])


@extra.get("/schedules", summary="every volume's snapshot schedule, and the daemon's scheduler tasks")
def schedules(request: Request):
    filer = request.app.state.filer
    vols = {}
    for v in filer.vol_show():
        name = v.get("name") if isinstance(v, dict) else None
        if name:
            try:
                vols[name] = filer.snap_sched(name)
            except Exception as e:  # a volume destroyed meanwhile
                vols[name] = {"error": str(e)}
    sched = getattr(request.app.state, "scheduler", None)
    return {"volumes": vols, "tasks": sched.status() if sched is not None else []}


router.include_router(extra)
