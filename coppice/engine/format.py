"""On-disk formats of a pool, written down once.

A pool is a directory:

    pool.db        SQLite (WAL) — every piece of metadata: datasets, objects,
                   block-map pages, shared-block reference counts, free space,
                   the consistency-point epoch. One transaction per
                   consistency point, so metadata is never torn.
    data/blocks    the data blocks: physical block number (PBN) p lives at
                   byte offset p * block_size. PBN 0 is never allocated: a
                   block-map entry of 0 means "hole, reads as zeros".
    intent.log     the intent log: one record per acknowledged write since
                   the last consistency point (see INTENT_RECORD below).

Block maps are radix trees of pages (``LEAF_FANOUT`` blocks per leaf,
``INTERIOR_FANOUT`` children per interior page) stored as rows of the
``pages`` table and shared copy-on-write between a volume, its snapshots and
its clones; ``refs`` counts the pointers to a page (object roots and interior
entries). A data block's reference count is implicit 1 while it is allocated
and listed in ``block_refs`` only when it is 2 or more.
"""

from __future__ import annotations

import struct

FORMAT_VERSION = 1
DEFAULT_BLOCK_SIZE = 4096
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 1 << 20

# --- block-map pages -------------------------------------------------------
FANOUT_BITS = 9
LEAF_FANOUT = 1 << FANOUT_BITS  # blocks mapped by one leaf page
INTERIOR_FANOUT = 1 << FANOUT_BITS  # children of one interior page
FANOUT_MASK = LEAF_FANOUT - 1
# Leaf page blob: LEAF_FANOUT little-endian u64 PBNs (0 = hole), then
# LEAF_FANOUT u64 xxh3-64 checksums of the blocks' contents.
LEAF_BYTES = LEAF_FANOUT * 16
# Interior page blob: INTERIOR_FANOUT u64 child page ids (0 = nothing below).
INTERIOR_BYTES = INTERIOR_FANOUT * 8
MAX_HEIGHT = 6  # 512**7 blocks: far beyond any size a u64 offset can hold

# --- intent log ------------------------------------------------------------
LOG_MAGIC = 0x474C5043  # "CPLG"
# Record header, little-endian:
#   u32 magic   LOG_MAGIC
#   u64 epoch   the consistency point this record follows; records of an
#               older epoch are already in pool.db and are ignored
#   u8  kind    LOG_WRITE (blocks mapped to PBNs; PBN 0 = hole) or LOG_CLEAR
#   u64 object  objects.id
#   u64 lbn     first logical block
#   u32 count   number of blocks
# LOG_WRITE then carries count u64 PBNs and count u64 checksums; LOG_CLEAR
# carries nothing. Every record ends with u64 xxh3-64 of all its bytes
# before it, so a torn tail is recognized and ignored.
LOG_HEADER = struct.Struct("<IQBQQI")
LOG_TRAILER = struct.Struct("<Q")
LOG_WRITE = 1
LOG_CLEAR = 2

# --- SQLite schema -----------------------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS pool (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- kind: 'volume' or 'snapshot'. A snapshot's volume_id is the volume it
-- freezes; a clone volume's origin_id is the snapshot it was cloned from.
CREATE TABLE IF NOT EXISTS datasets (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    volume_id  INTEGER,
    origin_id  INTEGER,
    created    REAL NOT NULL,
    meta       TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS datasets_volume_name
    ON datasets(name) WHERE kind = 'volume';
CREATE UNIQUE INDEX IF NOT EXISTS datasets_snapshot_name
    ON datasets(volume_id, name) WHERE kind = 'snapshot';
-- An object: a LUN's data or a small file. root = 0 means nothing written.
CREATE TABLE IF NOT EXISTS objects (
    id         INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    root       INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    meta       TEXT NOT NULL DEFAULT '{}',
    UNIQUE (dataset_id, name)
);
CREATE TABLE IF NOT EXISTS pages (
    id     INTEGER PRIMARY KEY,
    level  INTEGER NOT NULL,
    refs   INTEGER NOT NULL,
    csum   INTEGER NOT NULL,
    data   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS block_refs (
    pbn   INTEGER PRIMARY KEY,
    refs  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS free_extents (
    start INTEGER PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
"""
