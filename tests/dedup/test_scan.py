"""Post-process scans: full copies shrink to one, partial overlap saves
exactly the overlap, snapshots read the same, fsck clean after every scan."""

import os

from coppice import dedup

from .helpers import BS, assert_clean, digest_all, make_copies, rand_bytes, used_blocks

COPY = 4 << 20  # 1024 blocks of random data per copy
NCOPIES = 5


def test_n_copies_shrink_to_one(pool):
    # N full copies in N volumes take N x space before and ~1 copy after a scan.
    data = rand_bytes(COPY, 1)
    make_copies(pool, NCOPIES, data)
    assert used_blocks(pool) == NCOPIES * COPY // BS
    before = digest_all(pool)
    job = dedup.scan(pool)
    assert job["state"] == "done"
    assert job["counters"]["shared"] == (NCOPIES - 1) * COPY // BS
    assert used_blocks(pool) == COPY // BS
    assert digest_all(pool) == before
    assert_clean(pool)
    s = dedup.savings(pool)["pool"]
    assert s["physical_blocks"] == COPY // BS
    assert s["saved_dedup_blocks"] == (NCOPIES - 1) * COPY // BS


def test_copies_within_one_volume(pool):
    # Duplicates inside one LUN and across LUNs of the same volume are merged.
    half = rand_bytes(COPY // 2, 2)
    pool.create_volume("v")
    for name in ("a", "b"):
        pool.create_object("v", name, COPY)
        pool.open_object("v", name).pwrite(0, half + half)
    dedup.config.set_enabled(pool, "v", True)
    dedup.scan(pool, ["v"])
    assert used_blocks(pool) == COPY // 2 // BS
    assert_clean(pool)


def test_half_overlap_saves_half(pool):
    # Two LUNs sharing 50% of their blocks: the second costs half a LUN.
    a, b, c = rand_bytes(COPY // 2, 3), rand_bytes(COPY // 2, 4), rand_bytes(COPY // 2, 5)
    pool.create_volume("x")
    pool.create_volume("y")
    pool.create_object("x", "lun", COPY)
    pool.create_object("y", "lun", COPY)
    pool.open_object("x", "lun").pwrite(0, a + b)
    pool.open_object("y", "lun").pwrite(0, c + a)  # the shared half at another offset
    for v in ("x", "y"):
        dedup.config.set_enabled(pool, v, True)
    dedup.scan(pool)
    lun = COPY // BS
    assert used_blocks(pool) == lun + lun // 2
    s = dedup.savings(pool)
    assert s["pool"]["saved_dedup_blocks"] == lun // 2
    assert s["pool"]["percent_saved"] == 25.0  # of both LUNs' data
    assert s["volumes"]["y"]["saved_dedup_blocks"] + s["volumes"]["x"]["saved_dedup_blocks"] == lun // 2
    assert bytes(pool.open_object("y", "lun").pread(0, COPY)) == c + a
    assert_clean(pool)


def test_snapshots_unchanged_and_shared(pool):
    # Snapshots of every copy keep reading the same bytes, and their blocks are merged too.
    data = rand_bytes(COPY, 6)
    vols = make_copies(pool, 3, data)
    for v in vols:
        pool.create_snapshot(v, "s1")
    # Each volume then diverges on its first quarter, so the snapshot holds the only old copy.
    for i, v in enumerate(vols):
        pool.open_object(v, "lun").pwrite(0, rand_bytes(COPY // 4, 100 + i))
    before = digest_all(pool)
    dedup.scan(pool)
    assert digest_all(pool) == before
    for v in vols:
        assert bytes(pool.open_object(v, "lun", "s1").pread(0, COPY)) == data
    # one copy of the original + 3 distinct new quarters
    assert used_blocks(pool) == COPY // BS + 3 * COPY // 4 // BS
    assert_clean(pool)


def test_clone_of_copy_keeps_content(pool):
    # Clones of deduplicated volumes read the same and cost nothing more.
    data = rand_bytes(COPY, 7)
    make_copies(pool, 2, data)
    pool.create_snapshot("v1", "base")
    pool.clone_volume("c1", "v1", "base")
    dedup.config.set_enabled(pool, "c1", True)
    dedup.scan(pool)
    assert bytes(pool.open_object("c1", "lun").pread(0, COPY)) == data
    assert used_blocks(pool) == COPY // BS
    assert_clean(pool)


def test_incremental_scan_skips_unchanged_leaves(pool):
    # A second scan reads only leaves that changed; a new copy is merged by it.
    data = rand_bytes(COPY, 8)
    make_copies(pool, 2, data)
    dedup.scan(pool)
    pool.create_volume("late")
    pool.create_object("late", "lun", COPY)
    pool.open_object("late", "lun").pwrite(0, data)
    dedup.config.set_enabled(pool, "late", True)
    job = dedup.scan(pool)
    c = job["counters"]
    assert c["shared"] == COPY // BS
    assert c["skipped"] >= COPY // BS  # the first volume's unchanged leaves
    assert used_blocks(pool) == COPY // BS
    full = dedup.scan(pool, full=True)
    assert full["counters"]["skipped"] == 0 and full["counters"]["shared"] == 0
    assert_clean(pool)


def test_zero_blocks_never_stored_and_counted_saved(pool):
    # Writing zeros costs nothing and shows up as saved_zero.
    pool.create_volume("z")
    pool.create_object("z", "lun", COPY)
    pool.open_object("z", "lun").pwrite(0, bytes(COPY // 2) + rand_bytes(COPY // 2, 9))
    s = dedup.savings(pool, "z")
    assert used_blocks(pool) == COPY // 2 // BS
    assert s["saved_zero_blocks"] == COPY // 2 // BS
    assert s["provisioned_blocks"] == s["logical_blocks"] + s["saved_zero_blocks"]


def test_scan_requires_sis_on(pool):
    # `sis start` on a volume without sis on is refused with a clear error.
    pool.create_volume("off")
    try:
        dedup.scan(pool, ["off"])
    except dedup.SisNotEnabled as e:
        assert "sis on /vol/off" in str(e)
    else:
        raise AssertionError("scan of a sis-off volume was not refused")


def test_stale_index_entry_is_dropped(pool):
    # An indexed canonical block that was freed and then reused for other
    # bytes is found stale (read back, fingerprint differs), dropped from
    # the index, and never used as a target.
    from coppice.dedup.index import DedupStore

    data = rand_bytes(COPY, 10)
    make_copies(pool, 1, data)
    dedup.scan(pool)  # indexes v0's blocks
    old = {lbn: (pbn, csum) for lbn, pbn, csum in pool.iter_blocks("v0", "lun")}
    pool.delete_volume("v0")  # frees them
    pool.checkpoint()
    # Other bytes into the freed blocks (sis off: this volume is not scanned).
    make_copies(pool, 1, rand_bytes(COPY, 11), sis=False, prefix="x")
    reused = {pbn for _, pbn, _ in pool.iter_blocks("x0", "lun")}
    assert reused & {p for p, _ in old.values()}, "the allocator did not reuse the freed blocks"
    make_copies(pool, 2, data, prefix="w")
    job = dedup.scan(pool)
    assert job["counters"]["stale"] >= len(reused & {p for p, _ in old.values()})
    store = DedupStore(pool)
    try:
        for pbn, csum in old.values():
            if pbn in reused:
                assert pbn not in store.lookup(csum)  # the stale entry is gone
    finally:
        store.close()
    assert used_blocks(pool) == 2 * COPY // BS  # x0, and one copy of data for w0 and w1
    assert bytes(pool.open_object("w1", "lun").pread(0, COPY)) == data
    assert bytes(pool.open_object("w0", "lun").pread(0, COPY)) == data
    assert_clean(pool)


def test_collect_does_not_list_a_volume_per_object(pool):
    # A volume of many objects: the scan looks each one up by name, it does
    # not list the volume's objects again for every object (O(objects^2)).
    pool.create_volume("many")
    dedup.config.set_enabled(pool, "many", True)
    block = rand_bytes(BS, 12)
    for i in range(100):
        pool.create_object("many", f"o{i}", BS)
        pool.open_object("many", f"o{i}").pwrite(0, block)
    pool.checkpoint()
    calls = []
    real = pool.list_objects
    pool.list_objects = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        job = dedup.scan(pool)
    finally:
        del pool.list_objects
    assert job["counters"]["shared"] == 99
    assert len(calls) < 10, f"{len(calls)} list_objects calls for one volume"
    assert used_blocks(pool) == 1
    assert_clean(pool)
