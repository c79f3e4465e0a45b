"""Dedup never merges different data: the engine's share_run compares the
bytes of both blocks, so even a checksum collision (simulated here by making
every stored checksum "match") cannot point one block at another's data."""

from __future__ import annotations

import os

from coppice.engine import datapath

BS = 4096


def pbns(pool, vol):
    return [p for _, p, _ in pool.iter_blocks(vol, "lun")]


def test_share_run_compares_bytes_even_when_checksums_collide(pool, monkeypatch):
    monkeypatch.setattr(datapath, "first_mismatch", lambda *a, **k: -1)
    a, b = os.urandom(BS), os.urandom(BS)
    for vol, data in (("a", a + a), ("b", b + a)):
        pool.create_volume(vol)
        pool.create_object(vol, "lun", 8 * BS)
        pool.open_object(vol, "lun").pwrite(0, data)
    pa, pb = pbns(pool, "a"), pbns(pool, "b")
    # Different bytes: refused, b keeps its own block and data.
    assert pool.share_run("b", "lun", None, 0, [pb[0]], [pa[0]]) == 0
    assert pbns(pool, "b")[0] == pb[0]
    assert bytes(pool.open_object("b", "lun").pread(0, BS)) == b
    # Equal bytes: shared.
    assert pool.share_run("b", "lun", None, 1, [pb[1]], [pa[0]]) == 1
    assert pbns(pool, "b")[1] == pa[0]
    assert bytes(pool.open_object("b", "lun").pread(0, 2 * BS)) == b + a
