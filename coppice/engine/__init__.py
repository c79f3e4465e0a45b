"""The copy-on-write block store: allocation, block maps, refcounts,
checksums, consistency points, intent log. Knows nothing of LUNs or VMs.

Public surface: ``Pool`` (and its errors), ``ObjectHandle``.
"""

from .handle import ObjectHandle
from .pool import (
    BadName,
    BlockCorrupt,
    Dataset,
    ObjectExists,
    ObjectNotFound,
    ObjRec,
    OutOfRange,
    Pool,
    PoolDamaged,
    PoolExists,
    PoolFull,
    PoolInUse,
    PoolNotFound,
    SnapshotBusy,
    SnapshotExists,
    SnapshotNotFound,
    SpaceInfo,
    VolumeExists,
    VolumeNotFound,
    validate_name,
)
from .space import FileSystemFull, MetadataNoSpace

__all__ = [
    "Pool",
    "ObjectHandle",
    "Dataset",
    "ObjRec",
    "SpaceInfo",
    "validate_name",
    "BadName",
    "BlockCorrupt",
    "FileSystemFull",
    "MetadataNoSpace",
    "ObjectExists",
    "ObjectNotFound",
    "OutOfRange",
    "PoolDamaged",
    "PoolExists",
    "PoolFull",
    "PoolInUse",
    "PoolNotFound",
    "SnapshotBusy",
    "SnapshotExists",
    "SnapshotNotFound",
    "VolumeExists",
    "VolumeNotFound",
]
