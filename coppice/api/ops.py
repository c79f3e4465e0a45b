"""REST routes built from the operation table (``coppice.operations``).

Contract: ``build_router(resource, models)`` turns the table's ops of one
resource into a FastAPI router. Each endpoint validates the request with
the pydantic model the route module names for that method (bad input is a
422, never a 500), calls the method on the app's façade of the op's layer
(``app.state.facades[layer]``: the Filer, Provisioning or Dedup) with the
parameters the caller sent (the façade's own defaults apply to the rest),
and answers its JSON result; a method returning ``None`` answers 204. A
job op checks the request first (the façade's ``<method>_check``, so a
refusal is this call's 4xx), then starts the job and answers 202 with its
record. The models' field names must equal the op's ``body``/``query``
names (``tests/api/test_operations.py``).
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import operations
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


def facade_class(layer: str) -> type:
    """The local façade class of a layer (its signatures and return types)."""
    if layer == "filer":
        from ..filer.filer import Filer

        return Filer
    if layer == "provision":
        from ..provision.facade import Provisioning

        return Provisioning
    from ..dedup.facade import Dedup

    return Dedup


def _returns_none(op: operations.Op) -> bool:
    try:
        hints = typing.get_type_hints(getattr(facade_class(op.layer), op.method))
    except Exception:
        return False
    return "return" in hints and hints["return"] is type(None)


def _params(op: operations.Op, kw: dict) -> dict[str, Any]:
    params: dict[str, Any] = {p: kw[p] for p in op.path_params}
    for key in ("body", "query"):
        m = kw.get(key)
        if m is not None:
            # Only what the caller sent: the façade's own defaults apply to the rest.
            fields = type(m).model_fields
            params.update({(fields[k].alias or k): getattr(m, k) for k in m.model_fields_set})
    return params


def _endpoint(op: operations.Op, model: type[Model] | None):
    status = op.status or (202 if op.job else 204 if _returns_none(op) else 200)

    def endpoint(request: Request, **kw):
        params = _params(op, kw)
        state = request.app.state
        facade = state.facades[op.layer]
        if op.job:
            return _start_job(state, facade, op, params)
        result = getattr(facade, op.method)(**params)
        if status == 204:
            return Response(status_code=204)
        out = to_jsonable(result)
        if op.result_key:
            out = {op.result_key: out}
        return JSONResponse(out, status_code=status)

    sig = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    for p in op.path_params:
        sig.append(
            inspect.Parameter(
                p, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Path(max_length=1024)]
            )
        )
    if op.body:
        # A body whose every field is optional may be left out altogether.
        optional = all(not f.is_required() for f in model.model_fields.values())
        sig.append(
            inspect.Parameter(
                "body",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=model | None if optional else model,
                default=None if optional else inspect.Parameter.empty,
            )
        )
    if op.query:
        sig.append(
            inspect.Parameter("query", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[model, Query()])
        )
    endpoint.__signature__ = inspect.Signature(sig)
    endpoint.__name__ = op.method + ("_" + op.verb.lower() if op.only_if or _twin(op) else "")
    endpoint.__doc__ = inspect.getdoc(getattr(facade_class(op.layer), op.method)) or op.summary or op.method
    return endpoint, status


def _twin(op: operations.Op) -> bool:
    return any(o is not op and o.layer == op.layer and o.method == op.method for o in operations.OPS)


def _start_job(state, facade, op: operations.Op, params: dict):
    if op.single:
        for j in state.jobs.list(kind=op.job):
            if j["state"] in ("queued", "running"):
                return JSONResponse(j, status_code=202)
    check = getattr(facade, op.method + "_check", None)
    if check is not None:
        check(**params)  # everything checked before the job starts: errors are this call's 4xx
    return JSONResponse(state.jobs.submit(op.job, to_jsonable(params)), status_code=202)


def build_router(resource: str, models: dict[str, type[Model]] | None = None) -> APIRouter:
    """The routes of one resource of the table; ``models``: method (or "method VERB"
    when its two ops take different fields) -> its body or query model."""
    models = models or {}
    router = APIRouter(tags=[resource], dependencies=[Depends(require_token)])
    for op in operations.of(resource=resource):
        model = models.get(f"{op.method} {op.verb}", models.get(op.method)) if (op.body or op.query) else None
        if (op.body or op.query) and model is None:
            raise TypeError(f"{op.method}: the table sends {op.body or op.query} but no model validates them")
        ep, status = _endpoint(op, model)
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
