"""Storage backends under the filer: where a pool's LUN data lives.

Contract: the filer keeps its control plane (volumes, snapshots, clones,
LUN records and attributes, igroups, maps, options, small files) in the
pool directory's engine either way; a ``Backend`` owns the *data* of LUN
objects and the data side of every snapshot, clone, split and restore.
Two implementations:

* ``native`` (the default): the embedded copy-on-write engine holds data
  and metadata together; every call delegates to ``coppice.engine.Pool``
  unchanged.
* ``rbd``: each LUN an RBD image ``coppice.VOLUME.LUN`` in the Ceph pool
  (see ``coppice.backend.rbd`` and docs/rbd.md).

``open_backend(pool)`` returns the backend a pool was created with (the
choice is recorded in the pool's ``kv`` scope ``backend``);
``configure(pool, kind, **options)`` records it at pool creation.
"""

from __future__ import annotations

from .base import Backend, BackendUnsupported, ThinOnly
from .native import NativeBackend

KINDS = ("native", "rbd")


def configure(pool, kind: str, **options) -> None:
    """Record, in a new pool, which backend holds its data (and how to reach it)."""
    from ..errors import InvalidArgument

    if kind not in KINDS:
        raise InvalidArgument(detail=f"backend {kind!r} is unknown: use one of {', '.join(KINDS)}")
    with pool.transaction():
        pool.kv_put("backend", "kind", kind)
        pool.kv_put("backend", "options", {k: v for k, v in options.items() if v is not None})


def require_dedup(pool, what: str) -> None:
    """Refuse ``what`` (a sis setting) on a pool whose backend has no dedup."""
    kind = pool.kv_get("backend", "kind", "native")
    if kind != "native":
        raise BackendUnsupported(what=what, backend="Ceph RBD", why="has no block deduplication")


def open_backend(pool, holder: str | None = None, creating: bool = False) -> Backend:
    kind = pool.kv_get("backend", "kind", "native")
    if kind == "native":
        return NativeBackend(pool)
    if kind == "rbd":
        from .rbd import RbdBackend

        return RbdBackend(pool, holder=holder, creating=creating, **pool.kv_get("backend", "options", {}))
    from ..errors import Corruption

    raise Corruption(detail=f"pool {pool.path} names an unknown backend {kind!r}")


__all__ = [
    "Backend",
    "BackendUnsupported",
    "NativeBackend",
    "ThinOnly",
    "configure",
    "open_backend",
    "require_dedup",
]
