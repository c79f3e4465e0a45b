"""/pool: the pool's identity and space, df, fsck, scrub (a job), dump."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..auth import require_token
from ..ops import Model, Name, build_router


class Df(Model):
    volume: Name | None = None
    savings: bool = False


MODELS = {
    "df": Df,
}

router = build_router("pool", MODELS)
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
