"""The fingerprint index file: a scan's merge (old entries copied through,
the matched fingerprints' entries replaced, flushed at any points, resumed
from a committed cursor) gives exactly what a plain dict computes; entries
an older scanner kept in SQLite move into the file; ``recent`` and
``lookup`` read it as the SQLite index answered."""

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coppice.dedup import scan
from coppice.dedup.index import IDX, DedupStore, FpIndex, IndexMerge

from .helpers import BS, make_copies, rand_bytes

fp_st = st.integers(-6, 6).map(lambda x: x << 60)  # few values, both signs: collisions and order
entries_st = st.lists(st.tuples(fp_st, st.integers(1, 9)), max_size=30)


def _write(path, pairs):
    a = np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(a), dtype=IDX)
    out["fp"], out["pbn"] = a[:, 0], a[:, 1]
    out.tofile(path)


def _read(path):
    return [tuple(x) for x in np.fromfile(path, dtype=IDX).tolist()]


@settings(max_examples=80, deadline=None)
@given(
    entries_st,
    st.dictionaries(fp_st, st.lists(st.integers(1, 9), max_size=3), max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.integers(0, 8),
)
def test_merge_equals_reference(tmp_path_factory, old, decisions, flush_after, crash_at):
    d = tmp_path_factory.mktemp("idx")
    old_path, new_path = str(d / "fpidx"), str(d / "new")
    _write(old_path, old)
    ref: dict[int, set] = {}
    for f, p in set(old):
        ref.setdefault(f, set()).add(p)
    order = sorted(decisions)
    for f in order:
        ref[f] = set(decisions[f])
    expected = sorted((f, p) for f, ps in ref.items() for p in ps)

    def decide(m, f):
        # a fingerprint at a time, as _match_group decides them
        ps = sorted(set(decisions[f]))
        m.decide(np.array([f]), np.full(len(ps), f, dtype=np.int64), np.array(ps, dtype=np.int64))

    # One pass with a crash after `crash_at` decisions: the cursor of the
    # last flush is what a resumed scan starts from.
    m = IndexMerge(old_path, new_path)
    committed = (0, 0, 0)  # decisions covered, pos, out
    for i, f in enumerate(order[:crash_at]):
        decide(m, f)
        if flush_after[i % 8]:
            m.flush()
            committed = (i + 1, m.pos, m.out)
    m.close()
    done, pos, out = committed
    m = IndexMerge(old_path, new_path, pos, out)
    for i, f in enumerate(order[done:], start=done):
        decide(m, f)
        if flush_after[i % 8]:
            m.flush()
    m.finish()
    m.close()
    assert _read(new_path) == expected


@settings(max_examples=40, deadline=None)
@given(entries_st, st.integers(0, 40))
def test_recent_and_lookup_read_the_file(tmp_path_factory, pairs, limit):
    d = tmp_path_factory.mktemp("idx")
    path = str(d / "fpidx")
    _write(path, pairs)
    idx = FpIndex(path)
    uniq = sorted(set(pairs))
    assert idx.count() == len(uniq)
    got = idx.recent(limit)
    assert sorted(p for _, p in got) == sorted(p for _, p in uniq)[::-1][:limit][::-1]
    assert [p for _, p in got] == sorted((p for _, p in got), reverse=True)
    for f in {f for f, _ in uniq}:
        assert idx.lookup(f) == [p for g, p in uniq if g == f]


def test_sqlite_index_of_an_older_scanner_moves_into_the_file(pool):
    make_copies(pool, 2, rand_bytes(16 * BS, 3))
    store = DedupStore(pool)
    try:
        store.db.executemany("INSERT INTO fpidx (fp, pbn) VALUES (?, ?)", [(-5, 7), (3, 9), (3, 2)])
    finally:
        store.close()
    store = DedupStore(pool)
    try:
        assert store.entries() == [(-5, 7), (3, 2), (3, 9)]
        assert store.db.execute("SELECT COUNT(*) FROM fpidx").fetchone()[0] == 0
    finally:
        store.close()
    job = scan(pool)  # the stale entries are hints: the scan still shares what is equal
    assert job["counters"]["shared"] == 16
    store = DedupStore(pool)
    try:
        assert store.count() == 16 + 3  # the scan's blocks, and the old (unchecked) entries kept
        assert not [p for p in os.listdir(os.path.dirname(store.path)) if p.startswith("job-")]
    finally:
        store.close()


def test_resume_after_the_new_index_lost_its_tail(pool, monkeypatch):
    # A paused scan whose new index file came back shorter than its cursor
    # (a crash lost the page cache): the match phase starts over, and the
    # result is the same as an uninterrupted scan's.
    from coppice.dedup import scanner
    from coppice.dedup.scanner import Scanner

    from .helpers import assert_clean, digest_all, used_blocks

    monkeypatch.setattr(scanner, "MATCH_BATCH_ROWS", 64)  # many commits
    monkeypatch.setattr(scanner, "SORT_ROWS", 256)  # several buckets
    make_copies(pool, 3, rand_bytes(256 * BS, 21))
    make_copies(pool, 1, rand_bytes(256 * BS, 22), prefix="u")
    before = digest_all(pool)
    sc = None

    def progress(phase, done, total):
        if phase == "match" and done > total // 2:
            sc.stop()

    sc = Scanner(pool, progress=progress)
    job = sc.start()
    assert job["state"] == "paused" and job["phase"] == "match" and job["idx_out"] > 0
    store = DedupStore(pool)
    try:
        path = os.path.join(os.path.dirname(store.path), f"job-{job['id']}.idx")
    finally:
        store.close()
    os.truncate(path, (job["idx_out"] - 1) * IDX.itemsize)
    job = Scanner(pool).resume()
    assert job["state"] == "done"
    assert used_blocks(pool) == 2 * 256
    assert digest_all(pool) == before
    store = DedupStore(pool)
    try:
        assert store.count() == 2 * 256  # one entry per distinct block
        assert not os.path.exists(path)
    finally:
        store.close()
    assert_clean(pool)
