"""/igroups: initiator groups (who may see which LUNs)."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Op, Text, build_router


class IgroupCreate(Model):
    name: Name
    initiators: list[Text] = Field(default_factory=list, max_length=1024)
    ostype: Text | None = None
    protocol: Text | None = None


class IgroupShow(Model):
    name: Name | None = None


class IgroupDestroy(Model):
    force: bool = False


class Initiator(Model):
    initiator: Text


class IgroupRename(Model):
    new: Name


class IgroupSet(Model):
    ostype: Text


OPS = [
    Op("igroup_create", "POST", "/igroups", body=IgroupCreate, status=201, summary="create an igroup"),
    Op("igroup_show", "GET", "/igroups", query=IgroupShow, summary="list igroups"),
    Op("igroup_destroy", "DELETE", "/igroups/{name}", query=IgroupDestroy, summary="destroy an igroup"),
    Op("igroup_add", "POST", "/igroups/{name}/initiators", body=Initiator, summary="add an initiator"),
    Op(
        "igroup_remove",
        "DELETE",
        "/igroups/{name}/initiators",
        query=Initiator,
        summary="remove an initiator",
    ),
    Op("igroup_rename", "POST", "/igroups/{old}/rename", body=IgroupRename, summary="rename an igroup"),
    Op("igroup_set", "PUT", "/igroups/{name}/ostype", body=IgroupSet, summary="set an igroup's ostype"),
]

router = build_router(OPS, "igroups")
