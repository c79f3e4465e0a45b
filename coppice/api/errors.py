"""Errors of the daemon and its API, and how every error becomes JSON.

Contract: a ``CoppiceError`` raised anywhere under a request becomes
``{"error": CLASS, "message": TEXT, "status": N}`` with the error's
``http_status``; a request that fails validation becomes a 422 of the same
shape naming the bad field; anything else is a bug and becomes a 500
``InternalError`` naming a request id, and nothing of the exception: its
text and traceback go to the log under that id. Every body carries the
error's catalogue ``code``, from which the client rebuilds the class. ``RemoteFiler``
turns the JSON back into the same error class, so the CLI prints the same
line and exits with the same code with or without a daemon.
"""

from __future__ import annotations

import logging
import re
import uuid

from ..errors import (  # noqa: F401  (the client-side errors live beside the catalogue)
    Busy,
    CoppiceError,
    DaemonError,
    DaemonUnreachable,
    InternalError,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unauthorized,
)

log = logging.getLogger("coppice.api")


class JobNotFound(NotFound):
    """Job {job} not found; GET /jobs lists the jobs."""


class JobNotCancellable(Busy):
    """Job {job} is {state}: only queued or running jobs can be stopped."""


class UnknownJobKind(InvalidArgument):
    """No job kind {kind!r}: the daemon runs {kinds}."""


class ShuttingDown(Busy):
    """The daemon is shutting down and takes no new jobs; start it again
    with `coppice serve`."""

    http_status = 503


def error_body(exc: CoppiceError) -> dict:
    return {
        "error": type(exc).__name__,
        "code": type(exc).catalogue_code(),
        "message": str(exc),
        "status": exc.http_status,
        "exit_code": getattr(exc, "exit_code", 1),
    }


def _field(loc) -> str:
    # Keep field names and list indexes; drop pydantic's union-member labels ("constrained-int").
    parts = [str(p) for p in loc[1:] if isinstance(p, int) or re.fullmatch(r"[A-Za-z_]\w*", str(p))]
    return ".".join(parts) or (str(loc[0]) if loc else "request")


def validation_body(errors) -> dict:
    msgs, seen = [], set()
    for e in errors:
        f = _field(tuple(e.get("loc", ())))
        if f in seen:
            continue
        seen.add(f)
        msgs.append(f"{f}: {e.get('msg', 'invalid')}")
        if len(msgs) == 5:
            break
    return {
        "error": "InvalidRequest",
        "message": "Invalid request: "
        + "; ".join(msgs)
        + ". See /openapi.json for the fields each call takes.",
        "status": 422,
        "code": InvalidArgument.catalogue_code(),
        "exit_code": 4,
        "detail": [{"loc": list(map(str, e.get("loc", ()))), "msg": e.get("msg", "")} for e in errors[:20]],
    }


def install_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(CoppiceError)
    async def _coppice(request, exc: CoppiceError):
        status = int(getattr(exc, "http_status", 400) or 400)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(exc), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        names = {404: "NoSuchEndpoint", 405: "MethodNotAllowed"}
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"No endpoint {request.url.path}; /openapi.json lists the API."
        if exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}; /openapi.json lists the API."
        return JSONResponse(
            {
                "error": names.get(exc.status_code, "HTTPError"),
                "message": msg,
                "status": exc.status_code,
                "code": (NotFound if exc.status_code == 404 else InvalidArgument).catalogue_code(),
                "exit_code": 1,
            },
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        # The exception text stays in the log: it may hold paths, values or host details.
        rid = uuid.uuid4().hex[:16]
        log.error("internal error %s in %s %s", rid, request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(InternalError(request_id=rid)), status_code=500)
