"""Inline mode: full copies written to volumes with inline on cost one copy
at every moment; volumes without it are untouched; data reads back exact."""

from coppice import dedup

from .helpers import BS, assert_clean, rand_bytes, used_blocks

COPY = 2 << 20


def test_inline_keeps_n_copies_at_one(pool):
    # After every copy written (in 64 KiB writes), the pool holds ~1 copy.
    dedup.attach(pool)
    data = rand_bytes(COPY, 31)
    for i in range(4):
        v = f"v{i}"
        pool.create_volume(v)
        pool.create_object(v, "lun", COPY)
        dedup.config.set_enabled(pool, v, True)
        dedup.config.set_inline(pool, v, True)
        h = pool.open_object(v, "lun")
        for off in range(0, COPY, 64 << 10):
            h.pwrite(off, data[off : off + (64 << 10)])
            assert used_blocks(pool) <= COPY // BS
        assert used_blocks(pool) == COPY // BS
    for i in range(4):
        assert bytes(pool.open_object(f"v{i}", "lun").pread(0, COPY)) == data
    assert_clean(pool)
    s = dedup.savings(pool)["pool"]
    assert s["saved_dedup_blocks"] == 3 * COPY // BS


def test_inline_off_volume_stores_full_copy(pool):
    # Inline applies per volume: a volume without it stores its own copy.
    dedup.attach(pool)
    data = rand_bytes(COPY, 32)
    for v, inline in (("on1", True), ("plain", False)):
        pool.create_volume(v)
        pool.create_object(v, "lun", COPY)
        dedup.config.set_enabled(pool, v, True)
        dedup.config.set_inline(pool, v, inline)
    pool.open_object("on1", "lun").pwrite(0, data)
    pool.open_object("plain", "lun").pwrite(0, data)
    assert used_blocks(pool) == 2 * COPY // BS
    dedup.scan(pool)  # post-process catches what inline did not do
    assert used_blocks(pool) == COPY // BS
    assert_clean(pool)


def test_inline_uses_index_warmed_by_scan(pool):
    # A fresh hook is warmed from the on-disk index, so a copy of scanned data is free.
    data = rand_bytes(COPY, 33)
    pool.create_volume("old")
    pool.create_object("old", "lun", COPY)
    pool.open_object("old", "lun").pwrite(0, data)
    dedup.config.set_enabled(pool, "old", True)
    dedup.scan(pool)
    pool.create_volume("new")
    pool.create_object("new", "lun", COPY)
    dedup.config.set_enabled(pool, "new", True)
    dedup.config.set_inline(pool, "new", True)
    hook = dedup.attach(pool)
    assert len(hook.table) == COPY // BS
    pool.open_object("new", "lun").pwrite(0, data)
    assert used_blocks(pool) == COPY // BS
    assert hook.hits == COPY // BS


def test_inline_stale_candidate_is_verified(pool):
    # A lying table (every fingerprint -> one block) never maps a write to different data.
    hook = dedup.attach(pool)
    pool.create_volume("v")
    pool.create_object("v", "lun", COPY)
    dedup.config.set_enabled(pool, "v", True)
    dedup.config.set_inline(pool, "v", True)
    first = rand_bytes(BS, 34)
    pool.open_object("v", "lun").pwrite(0, first)
    target = next(pool.iter_blocks("v", "lun"))[1]
    hook.lookup = lambda checksum: target
    rest = rand_bytes(COPY - BS, 35)
    pool.open_object("v", "lun").pwrite(BS, rest)
    assert bytes(pool.open_object("v", "lun").pread(0, COPY)) == first + rest
    assert used_blocks(pool) == COPY // BS
    assert_clean(pool)


def test_compact_table_bounded_and_lossy():
    # The in-memory table never grows: 16 bytes a slot, old entries evicted.
    from coppice.dedup.index import CompactTable

    t = CompactTable(1024)
    assert t.nbytes == 1024 * 16
    for i in range(1, 5000):
        t.put(i * 2654435761 % (1 << 64), i)
    assert t.nbytes == 1024 * 16
    assert len(t) <= 1024
    t.put(12345, 77)
    assert t.get(12345) == 77
    assert t.get(999999937) in (0,)  # never inserted
