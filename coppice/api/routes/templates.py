"""/templates: import (a disk image uploaded to /uploads or in the daemon's
--import-dir), list, show, delete; /uploads: files for a later request."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ..auth import require_token
from ..codec import to_jsonable
from ..ops import Model, Name, Text

router = APIRouter(tags=["templates"], dependencies=[Depends(require_token)])


class TemplateImport(Model):
    name: Name
    image: Text = Field(
        description="path of a disk image (raw, qcow2, vmdk, vdi, vhdx, vpc) in the daemon's "
        "--import-dir, or as PUT /uploads/{filename} returned it"
    )
    memory_mib: int = Field(256, ge=1, le=1 << 24)
    vcpus: int = Field(1, ge=1, le=4096)
    os_type: Name = "linux"
    kernel: Text | None = None
    initrd: Text | None = None
    cmdline: Text | None = None
    generalize: bool = Field(
        True, description="clear the golden VM's identity on the base snapshot (libguestfs)"
    )
    keep: list[Text] = Field(default_factory=list, description="generalization operations to skip")


@router.post("/templates", status_code=201, summary="import a disk image as a template (datastore tpl_NAME)")
def import_template(request: Request, body: TemplateImport):
    from ...provision import import_dir, template

    policy, uploads = import_dir.policy_of(request.app.state)
    kw = body.model_dump()
    try:
        r = template.import_image(
            request.app.state.filer, kw.pop("name"), kw.pop("image"), policy=policy, **kw
        )
    finally:
        for p in (body.image, body.kernel, body.initrd):
            uploads.discard(p)  # an upload serves one request
    return JSONResponse(to_jsonable(r), status_code=201)


@router.put(
    "/uploads/{filename}",
    status_code=201,
    summary="upload a file (disk image, kernel, initrd) for one later request to name by the returned path",
)
async def upload(request: Request, filename: str):
    from ...provision import import_dir

    _, uploads = import_dir.policy_of(request.app.state)
    path = await uploads.receive(filename, request.stream())
    return JSONResponse({"path": path}, status_code=201)


@router.get("/templates", summary="every template")
def list_templates(request: Request):
    from ...provision import template

    return to_jsonable(template.list_(request.app.state.filer))


@router.get("/templates/{name}", summary="a template and the VMs that depend on it")
def show_template(request: Request, name: str):
    from ...provision import template

    return to_jsonable(template.show(request.app.state.filer, name))


@router.delete(
    "/templates/{name}", status_code=204, summary="delete a template (refused while VMs depend on it)"
)
def delete_template(request: Request, name: str):
    from ...provision import template

    template.delete(request.app.state.filer, name)
    return Response(status_code=204)
