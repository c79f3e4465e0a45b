"""/nbd/who: which initiators a LUN's igroups would let in, and who is
connected to the daemon's NBD target (``coppice nbd who``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth import require_token

router = APIRouter(tags=["nbd"])


@router.get(
    "/nbd/who",
    dependencies=[Depends(require_token)],
    summary="who may open a LUN over NBD (its igroups and their members) and who is connected",
)
def who(request: Request, path: str | None = None):
    from ...filer.export_resolver import who as _who

    st = request.app.state
    nbd = getattr(st, "nbd", None)
    return _who(st.filer, path, nbd.connections() if nbd is not None else [])
