"""/clones: FlexClones — create, show, split (a job), split status/stop/estimate."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..auth import require_token
from ..ops import Model, Name, Text, build_router


class CloneCreate(Model):
    new: Name
    parent: Name
    snap: Name
    remap: bool = False
    schedule: Text | None = None


MODELS = {
    "clone_create": CloneCreate,
}

router = build_router("clones", MODELS)
extra = APIRouter(tags=["clones"], dependencies=[Depends(require_token)])


def _split_job(runner, vol: str):
    for j in reversed(runner.list(kind="clone_split")):
        if j["params"].get("volume") == vol and j["state"] in ("queued", "running"):
            return j
    return None


@extra.post(
    "/clones/{vol}/split",
    status_code=202,
    summary="start splitting a clone from its parent (a job; poll /jobs/{id})",
)
def split_start(request: Request, vol: str):
    state = request.app.state
    state.filer.clone_split_estimate(vol)  # refuse at once what cannot split (not a clone, no volume)
    running = _split_job(state.jobs, vol)
    if running is not None:
        return JSONResponse(running, status_code=202)
    return JSONResponse(state.jobs.submit("clone_split", {"volume": vol}), status_code=202)


@extra.delete("/clones/{vol}/split", summary="stop a running split (what is split stays split)")
def split_stop(request: Request, vol: str):
    state = request.app.state
    job = _split_job(state.jobs, vol)
    if job is not None:
        state.jobs.cancel(job["id"])
        state.jobs.wait(job["id"], timeout=30)
    return state.filer.clone_split_stop(vol) if job is None else state.filer.clone_split_status(vol)


router.include_router(extra)


def run_split(filer):
    """The clone_split job kind: steps with progress, stops between steps."""

    def run(ctx):
        vol = ctx.params["volume"]
        ctx.progress("split", 0, None)
        for done, total in filer.clone_split_steps(vol):
            ctx.progress("split", done, total)
            if ctx.stopping:
                break
        ctx.check()
        return filer.clone_split_status(vol)

    return run
