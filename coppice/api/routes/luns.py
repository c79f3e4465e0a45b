"""/luns: LUNs inside volumes. A LUN is named by its path (/vol/VOL/LUN), which
travels in the query or the body, never in the URL path."""

from __future__ import annotations

from ..ops import Model, Name, Size, Text, build_router

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


MODELS = {
    "lun_create": LunCreate,
    "lun_show": LunShow,
    "lun_info": LunRef,
    "lun_destroy": LunDestroy,
    "lun_resize": LunResize,
    "lun_online": LunRef,
    "lun_offline": LunRef,
    "lun_rename": LunRename,
    "lun_comment": LunComment,
    "lun_clone_create": LunClone,
}

router = build_router("luns", MODELS)
