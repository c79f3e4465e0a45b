"""/templates: import (a disk image uploaded to /uploads or in the daemon's
--import-dir), list, show, delete; /uploads: files for a later request."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ..auth import require_token
from ..ops import Model, Name, Text, build_router


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


router = build_router("templates", {"template_import": TemplateImport})

uploads = APIRouter(tags=["templates"], dependencies=[Depends(require_token)])


@uploads.put(
    "/uploads/{filename}",
    status_code=201,
    summary="upload a file (disk image, kernel, initrd) for one later request to name by the returned path",
)
async def upload(request: Request, filename: str):
    from ...provision import import_dir

    _, area = import_dir.policy_of(request.app.state)
    path = await area.receive(filename, request.stream())
    return JSONResponse({"path": path}, status_code=201)


router.include_router(uploads)
