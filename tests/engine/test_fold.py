"""The consistency point's array code equals its one-block-at-a-time reference.

The reference-count fold (``consistency_point.fold``), the lookup of the
stored counts (``stored_refs``, range scan and by-key fallback), the
overwritten blocks kept as an array (``PageCache.unref``) and the
allocator's bulk release (``Allocator.release_sorted``) each run against
the plain-Python rule they replace, on random inputs; a pool overwritten
across several consistency points stays exact (data, snapshot, fsck)."""

import random
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coppice.engine import Pool, page_cache
from coppice.engine import allocator as allocator_mod
from coppice.engine import consistency_point as cp
from coppice.engine.allocator import Allocator
from coppice.engine.page_cache import PageCache
from coppice.errors import Corruption

pbn = st.integers(1, 5000)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(pbn, st.integers(-3, 3), max_size=200),
    st.dictionaries(pbn, st.integers(2, 6), max_size=200),
)
def test_fold_equals_reference(deltas, stored):
    try:
        want = cp.fold_reference(deltas, stored)
    except Corruption as e:
        want = e
    pbns, ds = cp.pending_deltas(deltas)
    sp = np.array(sorted(stored), dtype=np.int64)
    sr = np.array([stored[p] for p in sorted(stored)], dtype=np.int64)
    if isinstance(want, Corruption):
        with pytest.raises(Corruption) as got:
            cp.fold(pbns, ds, sp, sr)
        assert str(got.value) == str(want)
        return
    frees, deletes, (up_p, up_n) = cp.fold(pbns, ds, sp, sr)
    assert frees.tolist() == want[0]
    assert deletes.tolist() == want[1]
    assert list(zip(up_p.tolist(), up_n.tolist(), strict=True)) == want[2]


def block_refs_db(rows):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE block_refs (pbn INTEGER PRIMARY KEY, refs INTEGER NOT NULL)")
    db.executemany("INSERT INTO block_refs VALUES (?, ?)", rows)
    return db


# changes as a consistency point sees them: scattered blocks and dense runs
runs = st.lists(st.tuples(pbn, st.integers(1, 80), st.integers(1, 6)), max_size=6).map(
    lambda rs: {p for start, n, step in rs for p in range(start, start + n * step, step)}
)


@settings(max_examples=80, deadline=None)
@given(
    st.sets(pbn, max_size=300),
    runs,
    st.dictionaries(pbn, st.integers(2, 6), max_size=400),
    st.sampled_from([7, cp.STREAM_ROWS]),
)
def test_stored_refs_finds_every_row(scattered, dense, rows, stream_rows):
    wanted = scattered | dense
    if not wanted:
        wanted = {1}
    db = block_refs_db(rows.items())
    default, cp.STREAM_ROWS = cp.STREAM_ROWS, stream_rows  # 7: a range scan streams in many chunks
    try:
        sp, sr = cp.stored_refs(db, np.array(sorted(wanted), dtype=np.int64))
    finally:
        cp.STREAM_ROWS = default
    got = dict(zip(sp.tolist(), sr.tolist(), strict=True))
    # exactly the stored rows of the wanted blocks: rows of other blocks in a range are not kept
    assert got == {p: rows[p] for p in wanted if p in rows}
    assert sp.tolist() == sorted(sp.tolist())


def test_stored_refs_reads_rows_near_the_changes_only():
    # A dedup scan's consistency point: a dense run of targets at the start
    # of a pool full of shared blocks, and the blocks it freed far away. One
    # range from the lowest to the highest change would read all 200,000 rows.
    db = block_refs_db([(p, 2) for p in range(1, 200_001)])
    reads = []
    db.set_trace_callback(reads.append)
    wanted = np.array([*range(1000, 2000), *range(150_000, 150_400, 40), 300_000], dtype=np.int64)
    sp, sr = cp.stored_refs(db, wanted)
    assert sp.tolist() == [p for p in wanted.tolist() if p <= 200_000] and set(sr.tolist()) == {2}
    ranges = [q for q in reads if "BETWEEN" in q]
    assert ranges == ["SELECT pbn, refs FROM block_refs WHERE pbn BETWEEN 1000 AND 1999 ORDER BY pbn"]
    assert len([q for q in reads if " IN (" in q]) == 1  # the 11 scattered ones, by key


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=40),
    st.integers(0, 2**32),
    st.sampled_from([0, 64]),
)
def test_release_sorted_equals_release_many(ops, seed, bulk_runs):
    rng = np.random.default_rng(seed)
    a, b = Allocator([], 1), Allocator([], 1)
    held: list[int] = []
    for alloc, n in ops:
        if alloc or not held:
            runs = a.allocate(n)
            assert runs == b.allocate(n)
            held += [s + i for s, c in runs for i in range(c)]
        else:
            give = sorted(set(rng.choice(held, size=min(n, len(held)), replace=False).tolist()))
            held = [p for p in held if p not in set(give)]
            a.release_many(give)
            old = allocator_mod.BULK_RUNS
            allocator_mod.BULK_RUNS = bulk_runs  # 0: always the array merge
            try:
                b.release_sorted(np.array(give, dtype=np.int64))
            finally:
                allocator_mod.BULK_RUNS = old
        assert (a.extents(), a.next_pbn, a.free_below) == (b.extents(), b.next_pbn, b.free_below)


def test_release_sorted_refuses_a_double_free():
    a = Allocator([], 1)
    a.allocate(1000)
    a.release(10, 5)
    old = allocator_mod.BULK_RUNS
    allocator_mod.BULK_RUNS = 0
    try:
        with pytest.raises(ValueError, match="free already"):
            a.release_sorted(np.array([3, 12, 40], dtype=np.int64))
    finally:
        allocator_mod.BULK_RUNS = old
    assert a.extents() == [(10, 5)]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(pbn, st.integers(-3, 3), max_size=100),
    st.lists(st.integers(0, 300), max_size=300),
    st.integers(0, 300),
)
def test_unref_counts_equal_one_decrement_each(deltas, unref, compact_at):
    """Blocks put in ``unref`` (holes as 0, some compacted early, as an
    accounting query does) count exactly as one ``block_delta`` decrement
    each, in the fold and in ``pending_block_deltas``."""
    cache = PageCache(None, 1 << 20, 1)
    want = dict(deltas)
    cache.block_delta.update(deltas)
    for i, p in enumerate(unref):
        if i == compact_at:
            cache.unref_counts()
        cache.unref.append(p)
        if p:
            want[p] = want.get(p, 0) - 1
    asked = sorted(set(want) | {1, 2, 301})
    assert cache.pending_block_deltas(asked) == {p: want.get(p, 0) for p in asked}
    pbns, ds = cp.pending_deltas(cache.block_delta, *cache.unref_counts())
    assert dict(zip(pbns.tolist(), ds.tolist(), strict=True)) == {p: d for p, d in want.items() if d}
    assert pbns.tolist() == sorted(pbns.tolist())


@pytest.mark.parametrize("small_fold", [0, 4096], ids=["arrays", "one-by-one"])
def test_sustained_overwrite_across_consistency_points_stays_exact(tmp_path, monkeypatch, small_fold):
    """4 KiB and 64 KiB overwrites of a LUN with a snapshot, past several
    consistency points due to the unref bound: every block reads back, the
    snapshot is unchanged, fsck is clean and the space figures are exact
    (the fold as arrays, and one block at a time as small ones run)."""
    monkeypatch.setattr(page_cache, "UNREF_LIMIT", 700)
    monkeypatch.setattr(cp, "SMALL_FOLD", small_fold)
    bs = 4096
    pool = Pool.create(str(tmp_path / "pool"))
    pool.create_volume("v")
    pool.create_object("v", "lun", 1024 * bs)
    h = pool.open_object("v", "lun")
    base = bytes(range(256)) * (1024 * bs // 256)
    h.pwrite(0, base)
    pool.create_snapshot("v", "s")
    rnd = random.Random(5)
    want = bytearray(base)
    epoch = pool.epoch
    for i in range(3000):
        n = 1 if i % 4 else 16
        lbn = rnd.randrange(1024 - n)
        data = bytes([i % 251 + 1]) * (n * bs)
        h.pwrite(lbn * bs, data)
        want[lbn * bs : (lbn + n) * bs] = data
        if i in (1500, 2999):
            # counted from pending changes (unref included), then from committed rows
            pending = (pool.space("v"), pool.space("v", "s"))
            pool.checkpoint()
            assert pending == (pool.space("v"), pool.space("v", "s"))
            assert 0 < pending[0].unique_blocks < 1024
    assert pool.epoch >= epoch + 3, "the unref bound should have started consistency points"
    assert bytes(h.pread(0, 1024 * bs)) == bytes(want)
    assert bytes(pool.open_object("v", "lun", snapshot="s").pread(0, 1024 * bs)) == base
    sp = pool.space("v")
    assert sp.written_blocks == 1024
    rep = pool.fsck()
    assert rep.clean, rep.problems
    pool.close()
    pool = Pool.open(str(tmp_path / "pool"))
    assert bytes(pool.open_object("v", "lun").pread(0, 1024 * bs)) == bytes(want)
    assert pool.fsck().clean
    pool.close()


def test_overwrites_in_a_pool_at_capacity_get_their_old_blocks_back(tmp_path):
    """Overwrites free the blocks they replace only at a consistency point:
    a pool whose capacity the LUN nearly fills commits one rather than
    refusing the overwrite (PoolFull) while the old blocks wait."""
    bs = 4096
    pool = Pool.create(str(tmp_path / "pool"), capacity=64 * bs)
    pool.create_volume("v")
    pool.create_object("v", "lun", 49 * bs)
    h = pool.open_object("v", "lun")
    h.pwrite(0, bytes([9]) * (49 * bs))
    for i in range(1, 4):  # 15 free: the 16th overwrite needs what the first freed
        for lbn in range(48):
            h.pwrite(lbn * bs, bytes([i]) * bs)
    assert bytes(h.pread(0, 48 * bs)) == bytes([3]) * (48 * bs)
    assert pool.fsck().clean
    pool.close()
