"""/maps: LUN maps (LUN, igroup, LUN ID)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class MapCreate(Model):
    path: Text
    igroup: Name
    lun_id: Annotated[int, Field(ge=-(2**31), le=2**31)] | Text | None = Field(
        None, description="0..4095; omitted: the lowest free ID in the igroup"
    )


class MapRef(Model):
    path: Text
    igroup: Name


MODELS = {
    "lun_map": MapCreate,
    "lun_unmap": MapRef,
}

router = build_router("maps", MODELS)
