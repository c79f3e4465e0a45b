"""The pool's in-memory records and the rule for names.

Contract: ``Dataset`` (a volume or a snapshot) and ``ObjRec`` (a LUN or a
small file in one) mirror one row of pool.db's ``datasets`` and ``objects``
tables; the pool owns them and callers get them to read, never to change.
A record loaded from pool.db decodes its ``meta`` JSON when first read.
``SpaceInfo`` is what ``Pool.space`` answers (the RBD backend builds the
same record). ``validate_name`` is the one naming rule for volumes,
snapshots and objects: it returns the name or raises ``BadName``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import BadName

MAX_NAME_BYTES = 255


def validate_name(what: str, name) -> str:
    if not isinstance(name, str) or not name:
        raise BadName(what=what, name=name, why="it must be a non-empty string")
    if "/" in name:
        raise BadName(what=what, name=name, why="it must not contain '/'")
    if "\0" in name:
        raise BadName(what=what, name=name, why="it must not contain NUL")
    if name in (".", ".."):
        raise BadName(what=what, name=name, why="'.' and '..' are reserved")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadName(what=what, name=name[:40] + "...", why=f"it is longer than {MAX_NAME_BYTES} bytes")
    return name


@dataclass
class Dataset:
    id: int
    kind: str  # 'volume' | 'snapshot'
    name: str
    volume_id: int | None  # for a snapshot: the volume it freezes
    origin_id: int | None  # for a clone volume: the snapshot it came from
    created: float
    meta: dict = field(default_factory=dict)


@dataclass
class ObjRec:
    id: int
    dataset_id: int
    name: str
    kind: str
    size: int
    root: int
    height: int
    meta: dict = field(default_factory=dict)


def _lazy_meta(cls):
    """Make ``cls.meta`` decode its JSON text on first use. Opening a pool
    loads every dataset and object record, but a command touches a few:
    decoding all metas made opening a pool of 10,000 volumes cost ~60 ms
    of JSON alone. A record built with a dict is unchanged."""

    def get(self):
        m = self.__dict__["meta"]
        if type(m) is str:
            m = self.__dict__["meta"] = json.loads(m)
        return m

    def set_(self, value):
        self.__dict__["meta"] = value

    cls.meta = property(get, set_)
    return cls


_lazy_meta(Dataset)
_lazy_meta(ObjRec)


@dataclass
class SpaceInfo:
    logical_bytes: int
    written_blocks: int
    unique_blocks: int
    shared_blocks: int
    block_size: int

    @property
    def written_bytes(self):
        return self.written_blocks * self.block_size

    @property
    def unique_bytes(self):
        return self.unique_blocks * self.block_size

    @property
    def shared_bytes(self):
        return self.shared_blocks * self.block_size

    def as_dict(self):
        return {
            "logical_bytes": self.logical_bytes,
            "written_blocks": self.written_blocks,
            "unique_blocks": self.unique_blocks,
            "shared_blocks": self.shared_blocks,
            "written_bytes": self.written_bytes,
            "unique_bytes": self.unique_bytes,
            "shared_bytes": self.shared_bytes,
            "block_size": self.block_size,
        }
