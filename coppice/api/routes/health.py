"""/health (no token) and /daemon: is it up, what does it serve."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Depends, Request

from ..auth import require_token

router = APIRouter(tags=["daemon"])


@router.get("/health", summary="liveness; needs no token")
def health(request: Request):
    st = request.app.state
    return {
        "status": "stopping" if getattr(st, "stopping", False) else "ok",
        "pool_uuid": getattr(getattr(st.filer, "pool", None), "uuid", None),
    }


@router.get(
    "/daemon", dependencies=[Depends(require_token)], summary="the daemon: pid, pool, listeners, uptime"
)
def daemon(request: Request):
    st = request.app.state
    info = dict(getattr(st, "daemon_info", {}) or {})
    info["pid"] = os.getpid()
    started = info.get("started")
    info["uptime"] = time.time() - started if started else None
    nbd = getattr(st, "nbd", None)
    if nbd is not None:
        info["nbd_connections"] = [
            {
                "export": c["export"],
                "unix": c["initiator"].unix,
                "address": c["initiator"].address,
                "tls": c["tls"],
            }
            for c in nbd.connections()
        ]
    sched = getattr(st, "scheduler", None)
    info["scheduler"] = sched.status() if sched is not None else []
    return info
