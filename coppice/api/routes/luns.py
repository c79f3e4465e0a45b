"""/luns: LUNs inside volumes. A LUN is named by its path (/vol/VOL/LUN), which
travels in the query or the body, never in the URL path."""

from __future__ import annotations

from ..ops import Model, Name, Op, Size, Text, build_router

LunPath = Text


class LunCreate(Model):
    path: LunPath
    size: Size
    ostype: Text | None = None
    comment: Text | None = None


class LunShow(Model):
    path: LunPath | None = None
    volume: Name | None = None
    snapshots: bool = False


class LunRef(Model):
    path: LunPath


class LunDestroy(Model):
    path: LunPath
    force: bool = False


class LunResize(Model):
    path: LunPath
    size: Size
    force: bool = False


class LunRename(Model):
    path: LunPath
    new_path: LunPath


class LunComment(Model):
    path: LunPath
    text: Text


class LunClone(Model):
    new_path: LunPath
    parent_path: LunPath
    snap: Name


OPS = [
    Op("lun_create", "POST", "/luns", body=LunCreate, status=201, summary="create a LUN"),
    Op("lun_show", "GET", "/luns", query=LunShow, summary="list LUNs"),
    Op("lun_info", "GET", "/luns/info", query=LunRef, summary="one LUN"),
    Op("lun_destroy", "DELETE", "/luns", query=LunDestroy, summary="destroy a LUN"),
    Op("lun_resize", "PUT", "/luns/size", body=LunResize, summary="resize a LUN"),
    Op("lun_online", "POST", "/luns/online", body=LunRef, summary="bring a LUN online"),
    Op("lun_offline", "POST", "/luns/offline", body=LunRef, summary="take a LUN offline (cuts NBD clients)"),
    Op("lun_rename", "POST", "/luns/rename", body=LunRename, summary="rename (move) a LUN"),
    Op("lun_comment", "PUT", "/luns/comment", body=LunComment, summary="set a LUN's comment"),
    Op(
        "lun_clone_create",
        "POST",
        "/luns/clones",
        body=LunClone,
        status=201,
        summary="clone a LUN from a snapshot inside its volume",
    ),
]

router = build_router(OPS, "luns")
