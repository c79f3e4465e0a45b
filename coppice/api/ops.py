"""One table per resource maps Filer methods to HTTP calls, for both sides.

Contract: an ``Op`` says how one ``Filer`` method is reached over HTTP:
verb, path (``{param}`` segments named as the method's parameters), and
pydantic models for the body or the query whose fields are named as the
method's parameters too. ``build_router(ops)`` turns a table into a
FastAPI router whose endpoints validate the request (bad input is a 422,
never a 500), call ``app.state.filer.<method>(**params)`` and return its
JSON result; ``client_call(op)`` (used by ``coppice.client.RemoteFiler``)
turns a Python call with the Filer's signature into that same request. A
method may have several ops, chosen by ``when(params)`` (``snap_sched``
reads with GET and sets with PUT). A method returning ``None`` answers
204; one returning a scalar answers ``{result_key: value}``.

Adding a resource: write a module with ``OPS`` (and extra hand-written
routes if it needs them) and list it in ``app.RESOURCES``; the client
picks the table up by itself.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .auth import require_token
from .codec import to_jsonable

MAX_TEXT = 4096


def _clean(s: str) -> str:
    # Lone surrogates and NUL cannot be stored or echoed: refuse them here (422), not deep down (500).
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    if "\x00" in s:
        raise ValueError("text must not contain NUL")
    return s


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_clean)]
Name = Annotated[str, Field(max_length=1024), AfterValidator(_clean)]
Size = Annotated[int, Field(ge=0, le=2**62)] | Text  # bytes, or "20g"
Count = Annotated[int, Field(ge=0, le=2**31)]


class Model(BaseModel):
    """Request bodies and queries: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Op:
    method: str
    verb: str
    path: str
    body: type[Model] | None = None
    query: type[Model] | None = None
    summary: str = ""
    result_key: str | None = None
    status: int | None = None
    when: Callable[[dict], bool] | None = field(default=None, compare=False)
    path_kinds: dict = field(default_factory=dict, compare=False)  # param -> name kind for client checks

    @property
    def path_params(self) -> list[str]:
        import re

        return re.findall(r"{(\w+)}", self.path)


def filer_method(name: str):
    from ..filer.filer import Filer

    return getattr(Filer, name)


def _returns_none(op: Op) -> bool:
    try:
        hints = typing.get_type_hints(filer_method(op.method))
    except Exception:
        return False
    return "return" in hints and hints["return"] is type(None)


def get_filer(request: Request):
    return request.app.state.filer


def _endpoint(op: Op):
    none_result = _returns_none(op)
    status = op.status or (204 if none_result else 200)

    def endpoint(request: Request, **kw):
        params: dict[str, Any] = {}
        for p in op.path_params:
            params[p] = kw[p]
        for key in ("body", "query"):
            m = kw.get(key)
            if m is not None:
                # Only what the caller sent: the Filer's own defaults apply to the rest.
                params.update({k: getattr(m, k) for k in m.model_fields_set})
        filer = request.app.state.filer
        result = getattr(filer, op.method)(**params)
        if status == 204:
            return Response(status_code=204)
        out = to_jsonable(result)
        if op.result_key:
            out = {op.result_key: out}
        from fastapi.responses import JSONResponse

        return JSONResponse(out, status_code=status)

    sig = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    for p in op.path_params:
        sig.append(
            inspect.Parameter(
                p, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Path(max_length=1024)]
            )
        )
    if op.body is not None:
        sig.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=op.body))
    if op.query is not None:
        sig.append(
            inspect.Parameter(
                "query", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[op.query, Query()]
            )
        )
    endpoint.__signature__ = inspect.Signature(sig)
    endpoint.__name__ = op.method + ("_" + op.verb.lower() if op.when else "")
    endpoint.__doc__ = inspect.getdoc(filer_method(op.method)) or op.summary or op.method
    return endpoint, status


def build_router(ops: list[Op], tag: str) -> APIRouter:
    router = APIRouter(tags=[tag], dependencies=[Depends(require_token)])
    for op in ops:
        ep, status = _endpoint(op)
        router.add_api_route(
            op.path,
            ep,
            methods=[op.verb],
            status_code=status,
            summary=op.summary or op.method.replace("_", " "),
            operation_id=ep.__name__,
            responses={
                400: {"description": "bad request (JSON error)"},
                404: {"description": "not found (JSON error)"},
                409: {"description": "conflict (JSON error)"},
                422: {"description": "invalid request (JSON error)"},
            },
        )
    return router


def all_ops() -> dict[str, list[Op]]:
    """Every Filer method the API exposes -> its ops (from every resource module)."""
    from .app import RESOURCES

    out: dict[str, list[Op]] = {}
    for mod in RESOURCES:
        for op in getattr(mod, "OPS", ()):
            out.setdefault(op.method, []).append(op)
    return out
