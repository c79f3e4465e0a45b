"""/volumes: FlexVols — create, show, destroy, rename, size, options; small files."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ..auth import require_token
from ..ops import Model, Name, Size, Text, build_router


class VolumeCreate(Model):
    name: Name
    size: Size
    guarantee: Text | None = Field(None, description="none (thin, default) or volume (thick)")
    snap_reserve: int | Text | None = Field(None, description="percent of the volume kept for snapshots")


class VolumeShow(Model):
    name: Name | None = None


class VolumeDestroy(Model):
    force: bool = False
    children: bool = False


class Rename(Model):
    new: Name


class Resize(Model):
    size: Size


class OptionValue(Model):
    value: bool | int | Text


MODELS = {
    "vol_create": VolumeCreate,
    "vol_show": VolumeShow,
    "vol_destroy": VolumeDestroy,
    "vol_rename": Rename,
    "vol_size": Resize,
    "vol_set_option": OptionValue,
}

router = build_router("volumes", MODELS)


# Small files carry bytes: base64 in JSON, so they are hand-written routes.
class FileWrite(Model):
    data_base64: str = Field(max_length=64 << 20)


class FileRead(Model):
    snapshot: Name | None = None


files = APIRouter(tags=["volumes"], dependencies=[Depends(require_token)])


@files.put("/volumes/{vol}/files/{name}", status_code=204, summary="write a small file")
def file_write(request: Request, vol: str, name: str, body: FileWrite):
    from fastapi import Response

    from ...errors import InvalidArgument

    try:
        data = base64.b64decode(body.data_base64, validate=True)
    except ValueError:
        raise InvalidArgument(detail="data_base64 is not valid base64") from None
    request.app.state.filer.file_write(vol, name, data)
    return Response(status_code=204)


@files.get("/volumes/{vol}/files/{name}", summary="read a small file (base64)")
def file_read(request: Request, vol: str, name: str, snapshot: str | None = None):
    data = request.app.state.filer.file_read(vol, name, snapshot)
    return {"name": name, "size": len(data), "data_base64": base64.b64encode(data).decode()}


router.include_router(files)
