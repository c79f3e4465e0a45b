"""The copy-on-write block store: allocation, block maps, refcounts,
checksums, consistency points, intent log. Knows nothing of LUNs or VMs.

Public surface: ``Pool`` (and its errors), ``ObjectHandle``.
"""

from .errors import (
    BadName,
    BlockCorrupt,
    ObjectExists,
    ObjectNotFound,
    OutOfRange,
    PoolDamaged,
    PoolExists,
    PoolFull,
    PoolInUse,
    PoolNotFound,
    SnapshotBusy,
    SnapshotExists,
    SnapshotNotFound,
    VolumeExists,
    VolumeNotFound,
)
from .handle import ObjectHandle
from .pool import Pool
from .records import Dataset, ObjRec, SpaceInfo, validate_name
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
