"""/volumes/{vol}/snapshots: snapshots, SnapRestore, reserve, schedules."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Text, build_router


class SnapCreate(Model):
    name: Name


class SnapRename(Model):
    new: Name


class Reserve(Model):
    percent: int | Text = Field(description="percent of the volume kept for snapshots")


MODELS = {
    "snap_create": SnapCreate,
    "snap_rename": SnapRename,
    "snap_reserve": Reserve,
}

router = build_router("snapshots", MODELS)
