"""The engine's errors: what a pool refuses or finds wrong, each a class
whose docstring is the message (``coppice.errors`` gives each a stable
code, an exit code, an HTTP status and an errno).

Contract: every error the pool raises for a caller's mistake or a damaged
pool is defined here (the file-system space errors live beside the guard
that raises them, ``engine/space.py``; a corrupt metadata page in
``engine/page_cache.py``). Raising one means nothing was changed, except
``BlockCorrupt``, which a read raises instead of returning wrong bytes.
"""

from __future__ import annotations

from ..errors import AlreadyExists, Busy, Corruption, InvalidArgument, NoSpace, NotFound


class PoolNotFound(NotFound):
    """No pool at {path}: create one with `coppice pool create {path}` or point
    --pool / COPPICE_POOL at an existing pool."""


class PoolExists(AlreadyExists):
    """A pool already exists at {path}; open it instead, or choose an empty
    directory."""


class PoolInUse(Busy):
    """Pool {path} is in use by {holder}; stop that process or talk to it
    (the CLI uses a running daemon's socket automatically)."""


class VolumeNotFound(NotFound):
    """Volume {name} not found; `coppice vol show` lists the volumes."""


class VolumeExists(AlreadyExists):
    """Volume {name} already exists; choose another name."""


class SnapshotNotFound(NotFound):
    """Snapshot {snap} not found on volume {volume}; `coppice snap list
    {volume}` lists its snapshots."""


class SnapshotExists(AlreadyExists):
    """Snapshot {snap} already exists on volume {volume}; choose another name."""


class ObjectNotFound(NotFound):
    """{kind} {name} not found in {where}."""


class ObjectExists(AlreadyExists):
    """{name} already exists in volume {volume}; choose another name."""


class SnapshotBusy(Busy):
    """Snapshot {snap} of volume {volume} is busy: clone {clones} depends on
    it; split or destroy the clone first."""


class BadName(InvalidArgument):
    """Invalid {what} name {name!r}: {why}."""


class OutOfRange(InvalidArgument):
    """{what}: range {offset}+{length} is outside {name} (size {size})."""


class BlockCorrupt(Corruption):
    """Checksum mismatch reading {where} object {object} at offset {offset}
    (physical block {pbn}): the data on disk is corrupt. Run `coppice scrub`
    and restore the object from a snapshot or backup."""


class PoolDamaged(Corruption):
    """Pool {path} is damaged: {detail}. Restore the pool (or that file)
    from a backup; nothing was changed."""


class PoolFull(NoSpace):
    """Pool {path} is full: {needed} more blocks needed, {free} free. Free
    space by deleting snapshots or volumes, or grow the pool's capacity."""
