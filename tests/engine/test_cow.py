"""Snapshots and clones: O(1), frozen content, exact sharing and freeing,
thin volumes, clone split, bounded memory, space accounting."""

import os
import random

import pytest

from coppice.engine import Pool

BS = 4096


def test_thin_1tib_object_costs_metadata_only(pool):
    pool.create_volume("v")
    pool.create_object("v", "big", 1 << 40)
    h = pool.open_object("v", "big")
    assert bytes(h.pread((1 << 40) - BS, BS)) == bytes(BS)
    assert pool.pool_space()["used_blocks"] == 0
    assert h.extents(0, 1 << 40) == [(0, 1 << 40, 3)]
    h.pwrite(1 << 39, b"z" * BS)
    assert pool.pool_space()["used_blocks"] == 1
    assert h.extents((1 << 39) - BS, 3 * BS) == [
        ((1 << 39) - BS, BS, 3),
        (1 << 39, BS, 0),
        ((1 << 39) + BS, BS, 3),
    ]


def test_snapshot_and_clone_touch_no_pages(pool):
    # O(1): taking a snapshot or clone writes no block-map page, however
    # much data the volume holds.
    pool.create_volume("v")
    pool.create_object("v", "lun", 4096 * BS)
    pool.open_object("v", "lun").pwrite(0, os.urandom(4096 * BS))
    pool.checkpoint()
    pages_before = pool.db.execute("SELECT count(*) FROM pages").fetchone()[0]
    pool.create_snapshot("v", "s")
    pool.clone_volume("c", "v", "s")
    assert pool.db.execute("SELECT count(*) FROM pages").fetchone()[0] == pages_before
    assert pool.pool_space()["used_blocks"] == 4096


def test_writes_never_change_snapshots_or_clones(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 1024 * BS)
    orig = os.urandom(1024 * BS)
    pool.open_object("v", "lun").pwrite(0, orig)
    pool.create_snapshot("v", "s")
    pool.clone_volume("c", "v", "s")
    pool.open_object("v", "lun").pwrite(100 * BS, b"v" * 300 * BS)
    pool.open_object("c", "lun").pwrite(500 * BS, b"c" * 300 * BS)
    assert bytes(pool.open_object("v", "lun", "s").pread(0, 1024 * BS)) == orig
    c = bytes(pool.open_object("c", "lun").pread(0, 1024 * BS))
    assert c[: 500 * BS] == orig[: 500 * BS] and c[800 * BS :] == orig[800 * BS :]
    v = bytes(pool.open_object("v", "lun").pread(0, 1024 * BS))
    assert v == orig[: 100 * BS] + b"v" * 300 * BS + orig[400 * BS :]


def test_clone_of_clone_chain_reads_at_constant_depth(pool):
    pool.create_volume("v0")
    pool.create_object("v0", "lun", 64 * BS)
    pool.open_object("v0", "lun").pwrite(0, b"a" * 64 * BS)
    prev = "v0"
    for i in range(1, 20):
        pool.create_snapshot(prev, "s")
        pool.clone_volume(f"v{i}", prev, "s")
        pool.open_object(f"v{i}", "lun").pwrite(i * BS, bytes([65 + i]) * BS)
        prev = f"v{i}"
    # Each clone's tree has the same height as the first volume's: a read
    # walks the same number of pages at depth 19 as at depth 0.
    heights = {pool.object_info(f"v{i}", "lun").height for i in range(20)}
    assert heights == {0}
    data = bytes(pool.open_object("v19", "lun").pread(0, 64 * BS))
    for i in range(1, 20):
        assert data[i * BS : (i + 1) * BS] == bytes([65 + i]) * BS
    assert pool.fsck().clean


def test_delete_frees_exactly_unshared_blocks(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 1000 * BS)
    pool.open_object("v", "lun").pwrite(0, os.urandom(1000 * BS))
    pool.create_snapshot("v", "s")
    pool.open_object("v", "lun").pwrite(0, os.urandom(100 * BS))  # 100 new, 100 held by s
    assert pool.pool_space()["used_blocks"] == 1100
    pool.delete_snapshot("v", "s")
    assert pool.pool_space()["used_blocks"] == 1000
    pool.create_snapshot("v", "s2")
    pool.clone_volume("c", "v", "s2")
    pool.open_object("c", "lun").pwrite(0, os.urandom(10 * BS))
    assert pool.pool_space()["used_blocks"] == 1010
    pool.delete_volume("c")
    assert pool.pool_space()["used_blocks"] == 1000
    pool.delete_snapshot("v", "s2")
    pool.delete_volume("v")
    assert pool.pool_space()["used_blocks"] == 0
    assert pool.db.execute("SELECT count(*) FROM pages").fetchone()[0] == 0
    assert pool.fsck().clean


def test_split_copies_shared_blocks_then_parent_snapshot_deletes(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 600 * BS)
    data = os.urandom(600 * BS)
    pool.open_object("v", "lun").pwrite(0, data)
    pool.create_snapshot("v", "s")
    pool.clone_volume("c", "v", "s")
    pool.open_object("c", "lun").pwrite(0, b"q" * 100 * BS)
    assert pool.split_estimate("c") == 500 * BS
    steps = list(pool.split_clone_steps("c"))
    assert steps[-1][0] == steps[-1][1]
    assert pool.origin_of("c") is None
    assert pool.split_estimate("c") == 0
    assert pool.space("c").unique_blocks == 600
    pool.delete_snapshot("v", "s")
    pool.delete_volume("v")
    assert bytes(pool.open_object("c", "lun").pread(0, 600 * BS)) == b"q" * 100 * BS + data[100 * BS :]
    assert pool.pool_space()["used_blocks"] == 600
    assert pool.fsck().clean


def test_space_accounting(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 100 * BS)
    pool.open_object("v", "lun").pwrite(0, os.urandom(80 * BS))
    pool.create_snapshot("v", "s")
    pool.open_object("v", "lun").pwrite(0, os.urandom(30 * BS))
    v, s = pool.space("v"), pool.space("v", "s")
    assert (v.logical_bytes, v.written_blocks) == (100 * BS, 80)
    # 30 rewritten blocks are the volume's alone, 30 old ones the snapshot's.
    assert v.unique_blocks == 30 and v.shared_blocks == 50
    assert s.unique_blocks == 30 and s.shared_blocks == 50
    assert pool.pool_space()["used_blocks"] == 110


def test_memory_is_bounded_by_the_page_cache(pool_dir):
    p = Pool.create(pool_dir, cache_bytes=32 * 8192)
    p.create_volume("v")
    p.create_object("v", "lun", 1 << 30)
    h = p.open_object("v", "lun")
    blk = b"m" * BS
    for i in range(0, 1 << 18, 512):  # touch 512 distinct leaves
        h.pwrite(i * BS, blk)
    p.checkpoint()
    assert len(p.cache.clean) + len(p.cache.dirty) <= p.cache.capacity + p.cache.dirty_limit
    for i in range(0, 1 << 18, 512):
        assert bytes(h.pread(i * BS, BS)) == blk
    assert len(p.cache.clean) <= p.cache.capacity
    assert p.cache.loads > 512  # pages really were paged back in
    p.close()


def test_restore_snapshot(pool):
    pool.create_volume("v")
    pool.create_object("v", "a", 10 * BS)
    pool.open_object("v", "a").pwrite(0, b"1" * 10 * BS)
    pool.create_snapshot("v", "s")
    h = pool.open_object("v", "a")
    h.pwrite(0, b"2" * 10 * BS)
    pool.create_object("v", "later", BS)
    pool.restore_snapshot("v", "s")
    assert bytes(h.pread(0, 10 * BS)) == b"1" * 10 * BS  # the open handle follows
    assert [o.name for o in pool.list_objects("v")] == ["a"]
    assert pool.fsck().clean


def test_files_and_resize(pool):
    pool.create_volume("v")
    pool.write_file("v", "vm.xml", b"<domain/>")
    pool.write_file("v", "vm.xml", b"<domain>two</domain>")
    assert pool.read_file("v", "vm.xml") == b"<domain>two</domain>"
    pool.create_object("v", "lun", 10 * BS)
    h = pool.open_object("v", "lun")
    h.pwrite(0, b"r" * 10 * BS)
    pool.resize_object("v", "lun", 5 * BS + 100)
    pool.resize_object("v", "lun", 1 << 40)
    assert bytes(h.pread(5 * BS, 200)) == b"r" * 100 + bytes(100)
    assert bytes(h.pread(6 * BS, BS)) == bytes(BS)
    assert pool.fsck().clean


def test_unaligned_io(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 10 * BS)
    h = pool.open_object("v", "lun")
    ref = bytearray(10 * BS)
    for off, ln in [(1, 10), (BS - 3, 7), (2 * BS + 100, 3 * BS), (9 * BS + 4000, 96)]:
        pay = os.urandom(ln)
        h.pwrite(off, pay)
        ref[off : off + ln] = pay
    h.trim(BS + 5, BS)
    ref[BS + 5 : 2 * BS + 5] = bytes(BS)
    assert bytes(h.pread(0, 10 * BS)) == bytes(ref)
    assert bytes(h.pread(3, 5000)) == bytes(ref[3:5003])


def test_shared_blocks_counts_what_a_rewrite_would_copy(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 100 * BS)
    h = pool.open_object("v", "lun")
    h.pwrite(0, os.urandom(60 * BS))
    assert h.shared_blocks(0, 100 * BS) == 0
    pool.create_snapshot("v", "s")
    assert h.shared_blocks(0, 100 * BS) == 60
    h.pwrite(0, os.urandom(10 * BS))
    assert h.shared_blocks(0, 100 * BS) == 50
    assert h.shared_blocks(5 * BS, 10 * BS) == 5
    assert h.meta == {} and h.exists()
    pool.delete_object("v", "lun")
    assert not h.exists()


def test_object_index_follows_renames_and_deletes(pool):
    pool.create_volume("v")
    for n in ("b", "a", "c"):
        pool.create_object("v", n, BS)
    pool.rename_object("v", "b", "z")
    pool.delete_object("v", "c")
    assert [o.name for o in pool.list_objects("v")] == ["a", "z"]
    pool.create_snapshot("v", "s")
    pool.close()
    p2 = Pool.open(pool.path)
    try:
        assert [o.name for o in p2.list_objects("v", "s")] == ["a", "z"]
        assert p2.has_object("v", "z") and not p2.has_object("v", "b")
    finally:
        p2.close()


def test_unallocated_blocks(pool):
    pool.create_volume("v")
    pool.create_object("v", "lun", 2000 * BS)
    h = pool.open_object("v", "lun")
    assert h.unallocated_blocks(0, 2000 * BS) == 2000
    h.pwrite(10 * BS, os.urandom(600 * BS))  # spans two leaves
    assert h.unallocated_blocks(0, 2000 * BS) == 1400
    assert h.unallocated_blocks(5 * BS + 1, 10 * BS) == 5  # blocks 5..15 touched, 5..9 holes
    assert h.unallocated_blocks(600 * BS, 20 * BS) == 10
    # one block at a time (the batch path's one-leaf lookup), summed under one lock hold
    singles = [(b * BS, BS) for b in (0, 9, 10, 609, 610, 1999)] + [(3 * BS + 7, 1)]
    assert [h.unallocated_blocks(o, n) for o, n in singles] == [1, 1, 0, 0, 1, 1, 1]
    assert h.unallocated_blocks_many(singles + [(5 * BS + 1, 10 * BS)]) == 5 + 5


def test_share_run_shares_the_equal_prefix_only(pool):
    pool.create_volume("a")
    pool.create_volume("b")
    data = os.urandom(64 * BS)
    for v in ("a", "b"):
        pool.create_object(v, "lun", 64 * BS)
    pool.open_object("a", "lun").pwrite(0, data)
    other = bytearray(data)
    other[40 * BS] ^= 1  # block 40 differs
    pool.open_object("b", "lun").pwrite(0, bytes(other))
    pool.checkpoint()
    pa = [p for _, p, _ in pool.iter_blocks("a", "lun")]
    pb = [p for _, p, _ in pool.iter_blocks("b", "lun")]
    used = pool.pool_space()["used_blocks"]
    assert pool.share_run("b", "lun", None, 0, pb[:64], pa[:64]) == 40
    assert pool.pool_space()["used_blocks"] == used - 40
    assert bytes(pool.open_object("b", "lun").pread(0, 64 * BS)) == bytes(other)
    # Past the differing block, equal blocks share again.
    assert pool.share_run("b", "lun", None, 41, pb[41:50], pa[41:50]) == 9
    # A stale expectation (the block was rewritten since) shares nothing.
    pool.open_object("b", "lun").pwrite(50 * BS, b"z" * BS)
    assert pool.share_run("b", "lun", None, 50, pb[50:52], pa[50:52]) == 0
    assert pool.fsck().clean


def test_first_leaf_is_the_first_leaf_iter_leaves_yields(pool):
    from coppice.engine import blockmap

    pool.create_volume("v")
    # 4 TiB of blocks: a three-level map, written sparsely (absent subtrees at each level)
    pool.create_object("v", "lun", 1 << 40)
    h = pool.open_object("v", "lun")
    rnd = random.Random(5)
    spots = sorted({rnd.randrange(1 << 28) for _ in range(60)} | {0, 511, 512, (1 << 28) - 1})
    for b in spots:
        h.pwrite(b * BS, bytes([b % 251 + 1]) * BS)
    o = pool._object(pool._dataset("v", None), "lun")
    assert o.height >= 2
    n = pool._nblocks(o)
    for lo in [0, 1, 511, 512, 513, n - 1] + [rnd.randrange(n) for _ in range(200)] + spots:
        it = next(blockmap.iter_leaves(pool.cache, o.root, o.height, lo, n), None)
        got = blockmap.first_leaf(pool.cache, o.root, o.height, lo, n)
        assert (got is None and it is None) or (got[0], got[1]) == (it[0], it[1]), lo
    assert blockmap.first_leaf(pool.cache, o.root, o.height, spots[-1] + 1, n) is None
