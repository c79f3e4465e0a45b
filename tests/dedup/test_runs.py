"""Extent-based matching: a confirmed match is extended along both objects
and shared as runs (pool.share_run); runs stop at differing blocks, follow
misaligned copies, cross leaf boundaries, and never remap a block rewritten
between collect and match."""

from coppice import dedup
from coppice.dedup import scanner

from .helpers import BS, assert_clean, digest_all, make_copies, rand_bytes, used_blocks

LEAF = 512


def _two(pool, a: bytes, b: bytes, size: int):
    for v, data in (("a", a), ("b", b)):
        pool.create_volume(v)
        pool.create_object(v, "lun", size)
        pool.open_object(v, "lun").pwrite(0, data)
        dedup.config.set_enabled(pool, v, True)
    pool.checkpoint()


def test_runs_interrupted_by_differing_blocks(pool):
    # Every 100th block differs: the runs stop there and resume after, sharing all equal blocks.
    n = 3 * LEAF
    data = rand_bytes(n * BS, 61)
    other = bytearray(data)
    diff = list(range(50, n, 100))
    for i in diff:
        other[i * BS : (i + 1) * BS] = rand_bytes(BS, 1000 + i)
    _two(pool, data, bytes(other), n * BS)
    before = digest_all(pool)
    job = dedup.scan(pool)
    assert job["counters"]["shared"] == n - len(diff)
    assert used_blocks(pool) == n + len(diff)
    assert digest_all(pool) == before
    assert_clean(pool)


def test_misaligned_copies_are_shared(pool):
    # The same data at an lbn offset of 37 blocks (and across a leaf edge) is merged as runs.
    n = 2 * LEAF
    data = rand_bytes(n * BS, 62)
    _two(pool, data, rand_bytes(37 * BS, 63) + data, (n + 37) * BS)
    before = digest_all(pool)
    calls = []
    real = pool.share_run
    pool.share_run = lambda *a: calls.append(len(a[4])) or real(*a)
    try:
        job = dedup.scan(pool)
    finally:
        del pool.share_run
    assert job["counters"]["shared"] == n
    assert used_blocks(pool) == n + 37
    assert len(calls) < n // 16  # runs, not block by block
    assert digest_all(pool) == before
    assert_clean(pool)


def test_run_crosses_leaf_boundary(pool):
    # A run seeded in one leaf continues into the next one (one engine call may span both).
    n = 4 * LEAF
    data = rand_bytes(n * BS, 64)
    _two(pool, data, data, n * BS)
    calls = []
    real = pool.share_run
    pool.share_run = lambda *a: calls.append((a[3], len(a[4]))) or real(*a)
    try:
        job = dedup.scan(pool)
    finally:
        del pool.share_run
    assert job["counters"]["shared"] == n
    assert any(lbn // LEAF != (lbn + k - 1) // LEAF for lbn, k in calls)
    assert used_blocks(pool) == n
    assert_clean(pool)


def test_block_rewritten_between_collect_and_match(pool):
    # Blocks rewritten after collect end a run there; their new bytes survive and the rest is shared.
    n = 2 * LEAF
    data = rand_bytes(n * BS, 65)
    _two(pool, data, data, n * BS)
    fresh = rand_bytes(3 * BS, 66)
    hit = []

    def progress(phase, done, total):
        if phase == "sort" and not hit:
            pool.open_object("b", "lun").pwrite(300 * BS, fresh)  # blocks 300-302 of b
            hit.append(True)

    job = dedup.Scanner(pool, progress=progress).start()
    assert hit
    got = bytes(pool.open_object("b", "lun").pread(0, n * BS))
    assert got == data[: 300 * BS] + fresh + data[303 * BS :]
    assert bytes(pool.open_object("a", "lun").pread(0, n * BS)) == data
    assert job["counters"]["shared"] == n - 3
    assert used_blocks(pool) == n + 3
    assert_clean(pool)


def test_runs_resume_after_stop_in_match(pool):
    # A job paused mid-match resumes with its runs known (no refusals) and finishes at one copy.
    n = 4 * LEAF
    data = rand_bytes(n * BS, 67)
    make_copies(pool, 3, data)
    old = scanner.MATCH_RUN_BLOCKS, scanner.MATCH_BATCH_GROUPS
    scanner.MATCH_RUN_BLOCKS, scanner.MATCH_BATCH_GROUPS = 64, 4
    try:
        sc = dedup.Scanner(pool, progress=lambda ph, d, t: sc.stop() if ph == "match" and d else None)
        job = sc.start()
        assert job["state"] == "paused" and 0 < job["counters"]["shared"] < 2 * n
        job = dedup.Scanner(pool).start()
    finally:
        scanner.MATCH_RUN_BLOCKS, scanner.MATCH_BATCH_GROUPS = old
    assert job["state"] == "done"
    assert job["counters"]["shared"] == 2 * n and job["counters"]["refused"] == 0
    assert used_blocks(pool) == n
    assert_clean(pool)


def test_covered_intervals_merge_and_resolve():
    # Adjacent runs with the same target offset merge; lookups map into the target range.
    cov = scanner.Covered()
    cov.add(1, 100, 50, 2, 10)
    cov.add(1, 150, 50, 2, 60)
    cov.add(1, 0, 10, 3, 0)
    assert cov.runs == 2
    assert cov.get(1, 199) == (2, 109) and cov.get(1, 5) == (3, 5)
    assert cov.get(1, 200) is None and cov.get(1, 50) is None and cov.get(4, 0) is None


def test_copies_in_the_target_object_and_others(pool):
    # One group's rows: the target's object holds the data twice, two other
    # volumes once each; the target's block-map windows are read once for
    # the group and dropped when a run remaps the target's own object.
    n = 2 * LEAF
    data = rand_bytes(n * BS, 71)
    pool.create_volume("a")
    pool.create_object("a", "lun", 2 * n * BS)
    h = pool.open_object("a", "lun")
    h.pwrite(0, data)
    h.pwrite(n * BS, data)
    dedup.config.set_enabled(pool, "a", True)
    for v in ("b", "c"):
        pool.create_volume(v)
        pool.create_object(v, "lun", n * BS)
        pool.open_object(v, "lun").pwrite(0, data)
        dedup.config.set_enabled(pool, v, True)
    pool.checkpoint()
    before = digest_all(pool)
    job = dedup.scan(pool)
    assert job["counters"]["shared"] == 3 * n
    assert used_blocks(pool) == n
    assert digest_all(pool) == before
    assert_clean(pool)
