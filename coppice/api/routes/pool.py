"""/pool: the pool's identity and space, df, fsck, scrub (a job), dump."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..auth import require_token
from ..ops import Model, Name, Op, build_router


class Df(Model):
    volume: Name | None = None
    savings: bool = False


OPS = [
    Op("pool_info", "GET", "/pool", summary="pool identity and space"),
    Op("df", "GET", "/pool/df", query=Df, summary="space per volume and for the pool (`df`, `df -s`)"),
    Op("fsck", "POST", "/pool/fsck", summary="check reference counts (blocks management while it runs)"),
    Op("dump", "GET", "/pool/dump", summary="every volume, snapshot and object (for tests and support)"),
]

router = build_router(OPS, "pool")
extra = APIRouter(tags=["pool"], dependencies=[Depends(require_token)])


@extra.post("/pool/scrub", status_code=202, summary="verify every block's checksum (a job)")
def scrub(request: Request):
    return JSONResponse(request.app.state.jobs.submit("scrub", {}), status_code=202)


router.include_router(extra)


def run_scrub(filer):
    def run(ctx):
        def progress(*a):
            if len(a) >= 2:
                ctx.progress("scrub", a[-2], a[-1])
            ctx.check()

        return filer.scrub(progress)

    return run
