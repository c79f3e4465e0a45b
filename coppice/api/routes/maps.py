"""/maps: LUN maps (LUN, igroup, LUN ID)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..ops import Model, Name, Op, Text, build_router


class MapCreate(Model):
    path: Text
    igroup: Name
    lun_id: Annotated[int, Field(ge=-(2**31), le=2**31)] | Text | None = Field(
        None, description="0..4095; omitted: the lowest free ID in the igroup"
    )


class MapRef(Model):
    path: Text
    igroup: Name


OPS = [
    Op(
        "lun_map",
        "POST",
        "/maps",
        body=MapCreate,
        status=201,
        result_key="lun_id",
        summary="map a LUN to an igroup",
    ),
    Op("lun_unmap", "DELETE", "/maps", query=MapRef, summary="unmap a LUN from an igroup (cuts NBD clients)"),
    Op("lun_maps", "GET", "/maps", summary="every LUN map"),
]

router = build_router(OPS, "maps")
