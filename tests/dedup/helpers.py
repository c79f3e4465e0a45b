"""Shared helpers for the dedup tests: pools of full copies, content digests."""

import os
import random

import xxhash

BS = 4096


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def make_copies(pool, n: int, data: bytes, size: int | None = None, sis: bool = True, prefix: str = "v"):
    """n volumes, each with one LUN holding ``data`` at offset 0."""
    from coppice import dedup

    names = []
    for i in range(n):
        v = f"{prefix}{i}"
        pool.create_volume(v)
        pool.create_object(v, "lun", size or len(data))
        pool.open_object(v, "lun").pwrite(0, data)
        if sis:
            dedup.config.set_enabled(pool, v, True)
        names.append(v)
    pool.checkpoint()
    return names


def digest_all(pool) -> dict:
    """(volume, snapshot, object) -> xxh3 of the full content, for every dataset."""
    out = {}
    for v in pool.list_volumes():
        sets = [(None, pool.list_objects(v.name))]
        sets += [(s.name, pool.list_objects(v.name, s.name)) for s in pool.list_snapshots(v.name)]
        for snap, objs in sets:
            for o in objs:
                h = pool.open_object(v.name, o.name, snap)
                out[(v.name, snap, o.name)] = xxhash.xxh3_128_hexdigest(bytes(h.pread(0, o.size)))
    return out


def used_blocks(pool) -> int:
    return pool.pool_space()["used_blocks"]


def assert_clean(pool):
    rep = pool.fsck()
    assert rep.clean, rep.problems
