"""/volumes/{vol}/snapshots: snapshots, SnapRestore, reserve, schedules."""

from __future__ import annotations

from pydantic import Field

from ..ops import Model, Name, Op, Text, build_router


class SnapCreate(Model):
    name: Name


class SnapRename(Model):
    new: Name


class Reserve(Model):
    percent: int | Text = Field(description="percent of the volume kept for snapshots")


class Sched(Model):
    spec: Text = Field(description="ONTAP `weeks days hours[@list]`, e.g. `0 2 6@8,12,16,20`; `0` disables")


OPS = [
    Op(
        "snap_create",
        "POST",
        "/volumes/{vol}/snapshots",
        body=SnapCreate,
        status=201,
        summary="create a snapshot",
    ),
    Op("snap_list", "GET", "/volumes/{vol}/snapshots", summary="list a volume's snapshots, newest first"),
    Op("snap_delete", "DELETE", "/volumes/{vol}/snapshots/{name}", summary="delete a snapshot"),
    Op(
        "snap_rename",
        "POST",
        "/volumes/{vol}/snapshots/{old}/rename",
        body=SnapRename,
        summary="rename a snapshot",
    ),
    Op("snap_restore", "POST", "/volumes/{vol}/snapshots/{name}/restore", summary="SnapRestore the volume"),
    Op(
        "snap_reserve",
        "GET",
        "/volumes/{vol}/snap-reserve",
        result_key="percent",
        when=lambda p: p.get("percent") is None,
        summary="the snapshot reserve",
    ),
    Op(
        "snap_reserve",
        "PUT",
        "/volumes/{vol}/snap-reserve",
        body=Reserve,
        result_key="percent",
        when=lambda p: p.get("percent") is not None,
        summary="set the snapshot reserve",
    ),
]

router = build_router(OPS, "snapshots")
