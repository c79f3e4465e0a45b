"""/dedup: sis settings, savings, status and scans (scans are jobs).

The scan job resumes after a daemon restart: the dedup scanner keeps its
own cursor, and ``Scanner.start`` picks an unfinished scan up first.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ...errors import InvalidArgument
from ..auth import require_token
from ..codec import to_jsonable
from ..ops import Model, Name, Text

router = APIRouter(tags=["dedup"], dependencies=[Depends(require_token)])


class SisConfig(Model):
    enabled: bool | None = None
    inline: bool | None = None
    schedule: Text | None = Field(None, description="day_list[@hour_list], e.g. sun-sat@0; - for none")


class ScanStart(Model):
    volumes: list[Name] | None = Field(None, max_length=1024, description="default: every sis-enabled volume")
    full: bool = Field(False, description="rescan everything, not only new blocks (`sis start -s`)")


def _pool(request):
    return request.app.state.filer.pool


@router.get("/dedup", summary="sis status of every volume (state, progress, last run)")
def status(request: Request, volume: str | None = None):
    from ... import dedup

    return to_jsonable(dedup.status(_pool(request), volume))


@router.get("/dedup/savings", summary="space saved by dedup and by clones (`df -s`)")
def savings(request: Request, volume: str | None = None):
    from ... import dedup

    return to_jsonable(dedup.savings(_pool(request), volume))


@router.get("/dedup/volumes", summary="every volume's sis settings, by volume name")
def all_configs(request: Request):
    from ... import dedup

    return to_jsonable(dedup.config.all_volumes(_pool(request)))


@router.get("/dedup/volumes/{vol}", summary="a volume's sis settings")
def get_config(request: Request, vol: str):
    from ... import dedup

    pool = _pool(request)
    pool.volume(vol)  # VolumeNotFound
    return to_jsonable(dedup.config.get(pool, vol))


@router.put("/dedup/volumes/{vol}", summary="change a volume's sis settings (on/off, inline, schedule)")
def put_config(request: Request, vol: str, body: SisConfig):
    from ... import dedup

    pool = _pool(request)
    pool.volume(vol)
    if body.enabled is not None:
        dedup.config.set_enabled(pool, vol, body.enabled)
    if body.inline is not None:
        dedup.config.set_inline(pool, vol, body.inline)
    if body.schedule is not None:
        dedup.config.set_schedule(pool, vol, body.schedule)
    inline = getattr(pool, "inline_dedup", None)
    if inline is not None and hasattr(inline, "refresh"):
        inline.refresh()
    return to_jsonable(dedup.config.get(pool, vol))


@router.post("/dedup/scans", status_code=202, summary="start a post-process scan (a job; poll /jobs/{id})")
def start_scan(request: Request, body: ScanStart | None = None):
    body = body or ScanStart()
    state = request.app.state
    if body.volumes is not None and not body.volumes:
        raise InvalidArgument(detail="volumes is empty: name at least one volume, or omit it for all")
    for j in state.jobs.list(kind="dedup_scan"):
        if j["state"] in ("queued", "running"):
            return JSONResponse(j, status_code=202)
    from ... import dedup

    pool = state.filer.pool
    for v in body.volumes or ():
        pool.volume(v)
        if not dedup.config.get(pool, v)["enabled"]:
            raise dedup.SisNotEnabled(volume=v)
    job = state.jobs.submit("dedup_scan", {"volumes": body.volumes, "full": body.full})
    return JSONResponse(job, status_code=202)


@router.get("/dedup/scans/pending", summary="the unfinished scan the next start resumes first, if any")
def pending_scan(request: Request):
    from ...dedup.status import _job

    job, live = _job(_pool(request))
    if job is not None and (live or job.get("state") == "done"):
        job = None  # a running scan is not pending: `POST /dedup/scans` follows it
    return {"pending": to_jsonable({k: v for k, v in job.items() if k != "work"}) if job else None}


def run_scan(pool):
    """The dedup_scan job kind: a Scanner that pauses when the job is asked to stop."""

    def run(ctx):
        from ...dedup import Scanner

        sc = None

        def progress(phase, done, total):
            ctx.progress(phase, done, total)
            if ctx.stopping and sc is not None:
                sc.stop()

        sc = Scanner(pool, progress=progress)
        if ctx.attempt > 1 and sc.pending() is not None:
            result = sc.resume()
        else:
            result = sc.start(ctx.params.get("volumes"), bool(ctx.params.get("full")))
        if isinstance(result, dict) and result.get("state") == "paused":
            ctx.check()
        return {k: v for k, v in (result or {}).items() if k not in ("work",)}

    return run
