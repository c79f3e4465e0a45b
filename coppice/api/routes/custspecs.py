"""/custspecs: customization specs (each guest's identity, as cloud-init NoCloud seeds)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ..auth import require_token
from ..codec import to_jsonable
from ..ops import Model, Name, Text

router = APIRouter(tags=["custspecs"], dependencies=[Depends(require_token)])


class CustSpecCreate(Model):
    name: Name
    hostname: Text = Field("vm-name", description="vm-name or a pattern with {vm} {n}")
    user: Name | None = None
    ssh_key_file: Text | None = Field(
        None, description="public key file in the daemon's --import-dir (read now)"
    )
    ssh_keys: list[Text] = Field(default_factory=list, max_length=256, description="public key lines")
    password_hash: Text | None = None
    network: Text = Field("dhcp", description="dhcp or static:NET[,gw=A][,dns=A+B]")
    runcmd: list[Text] = Field(default_factory=list, max_length=256)


@router.post("/custspecs", status_code=201, summary="create a customization spec")
def create_custspec(request: Request, body: CustSpecCreate):
    from ...provision import custspec, import_dir

    kw = body.model_dump()
    policy, _ = import_dir.policy_of(request.app.state)
    r = custspec.create(request.app.state.filer, kw.pop("name"), policy=policy, **kw)
    return JSONResponse(to_jsonable(r), status_code=201)


@router.get("/custspecs", summary="every customization spec")
def list_custspecs(request: Request):
    from ...provision import custspec

    return to_jsonable(custspec.list_(request.app.state.filer))


@router.get("/custspecs/{name}", summary="a customization spec")
def show_custspec(request: Request, name: str):
    from ...provision import custspec

    return to_jsonable(custspec.show(request.app.state.filer, name))


@router.delete(
    "/custspecs/{name}", status_code=204, summary="delete a spec (VMs made with it keep their seeds)"
)
def delete_custspec(request: Request, name: str):
    from ...provision import custspec

    custspec.delete(request.app.state.filer, name)
    return Response(status_code=204)
