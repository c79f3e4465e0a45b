"""/igroups: initiator groups (who may see which LUNs)."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Text, build_router


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


MODELS = {
    "igroup_create": IgroupCreate,
    "igroup_show": IgroupShow,
    "igroup_destroy": IgroupDestroy,
    "igroup_add": Initiator,
    "igroup_remove": Initiator,
    "igroup_rename": IgroupRename,
    "igroup_set": IgroupSet,
}

router = build_router("igroups", MODELS)
