"""The scan's array kernels give exactly what their pure-Python references
give, on random leaves, rows and index entries (hypothesis), including the
edge cases: empty leaves, objects ending mid-leaf, fingerprints with the
top bit set, collisions in the index, and a scan with the array path
against the same scan with every group handled one by one."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coppice import dedup
from coppice.dedup import kernels as K
from coppice.dedup import scanner

from .helpers import BS, assert_clean, digest_all, make_copies, rand_bytes, used_blocks

u64 = st.integers(0, (1 << 64) - 1)
small = st.integers(0, 7)  # few distinct values: many equal fingerprints and blocks


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, (1 << 40)), u64), min_size=K.LEAF, max_size=K.LEAF),
    st.integers(0, 3).map(lambda k: k * K.LEAF),
    st.integers(0, 2 * K.LEAF),
)
def test_leaf_rows_equals_reference(slots, base, tail):
    pbns = [p if mapped else 0 for mapped, p, _ in slots]
    csums = [c for _, _, c in slots]
    leaf = np.array(pbns + csums, dtype="<u8").tobytes()
    nb = base + tail  # the object may end inside this leaf, or before it
    lbns, p, c, sig = K.leaf_rows(base, leaf, nb)
    rl, rp, rc, rsig = K.leaf_rows_py(base, leaf, nb)
    assert lbns.tolist() == rl and p.tolist() == rp and c.tolist() == rc
    assert sig == rsig


rows_st = st.lists(st.tuples(small.map(lambda x: x - 4 << 61), small, st.integers(1, 3), small), max_size=60)


@settings(max_examples=80, deadline=None)
@given(rows_st, st.lists(st.tuples(small.map(lambda x: x - 4 << 61), small), max_size=8))
def test_sort_groups_settled_equal_reference(rows, known_pairs):
    arr = np.array(rows, dtype=K.ROW) if rows else np.empty(0, dtype=K.ROW)
    s = K.sort_rows(arr)
    ref = K.sort_rows_py(rows)
    assert [tuple(x) for x in s.tolist()] == ref
    fps = s["fp"]
    starts = K.groups(fps)
    assert starts.tolist() == K.groups_py([r[0] for r in ref])
    if not rows:
        return
    known_pairs = sorted(set(known_pairs))
    kfp = np.array([f for f, _ in known_pairs], dtype=np.int64)
    kpbn = np.array([p for _, p in known_pairs], dtype=np.int64)
    known: dict = {}
    for f, p in known_pairs:
        known.setdefault(f, []).append(p)
    cur = s["pbn"]
    ok, unk = K.settled(fps, cur, starts, kfp, kpbn)
    rok, runk = K.settled_py([r[0] for r in ref], [r[1] for r in ref], starts.tolist(), known)
    assert ok.tolist() == rok and unk.tolist() == runk


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(small, small, st.integers(0, 2), st.integers(0, 2)), max_size=40))
def test_first_mismatch_equals_reference(cols):
    pb, pa, cb, ca = (np.array([c[i] for c in cols], dtype=np.int64) for i in range(4))
    assert K.first_mismatch(pb, pa, cb, ca) == K.first_mismatch_py(
        pb.tolist(), pa.tolist(), cb.tolist(), ca.tolist()
    )


def test_array_path_and_group_by_group_path_agree(pool_dir, monkeypatch):
    # The same pool scanned twice: once with the array classification, once
    # with every group sent through _match_group (the reference path).
    from coppice.engine import Pool

    results = []
    for reference in (False, True):
        p = Pool.create(f"{pool_dir}{int(reference)}")
        data = rand_bytes(3 << 20, 31)
        make_copies(p, 3, data)
        make_copies(p, 1, rand_bytes(1 << 20, 32), prefix="u")
        p.create_snapshot("v1", "s")
        p.open_object("v1", "lun").pwrite(5 * BS, rand_bytes(7 * BS, 33))
        before = digest_all(p)
        if reference:
            monkeypatch.setattr(K, "settled", _nothing_settled)
        job = dedup.scan(p)
        monkeypatch.undo()
        assert digest_all(p) == before
        assert_clean(p)
        results.append((used_blocks(p), job["counters"]["shared"]))
        p.close()
    assert results[0] == results[1]
    assert results[0][0] == (3 << 20) // BS + (1 << 20) // BS + 7


def _nothing_settled(fps, cur, starts, known_fp, known_pbn):
    n = len(starts) - 1
    return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)


def test_many_buckets_sort_walks_in_fingerprint_order(pool, monkeypatch):
    # More rows than fit in memory at once: the sort splits them into buckets
    # by fingerprint, and the scan still finds every copy.
    monkeypatch.setattr(scanner, "SORT_ROWS", 100)
    data = rand_bytes(1 << 20, 34)
    make_copies(pool, 3, data)
    job = dedup.scan(pool)
    assert job["buckets"] == 8  # 768 rows, at most ~100 a bucket
    assert job["counters"]["shared"] == 2 * (1 << 20) // BS
    assert used_blocks(pool) == (1 << 20) // BS
    assert_clean(pool)


runs_st = st.lists(
    st.tuples(
        st.integers(1, 20), st.integers(0, 60), st.integers(1, 9), st.integers(1, 20), st.integers(0, 60)
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(runs_st, st.lists(st.tuples(st.integers(1, 20), st.integers(0, 80)), max_size=50), st.booleans())
def test_covered_resolve_equals_get(runs, rows, many_objects):
    # resolve (arrays, one pass per object with runs, or grouping the rows
    # by object when many objects have runs) against get row by row.
    cov = scanner.Covered()
    for oid, lbn, n, aoid, albn in runs:
        if cov.free_prefix(oid, lbn, n) == n:  # runs of one job never overlap
            cov.add(oid, lbn, n, aoid, albn)
    if many_objects:
        for k in range(17):  # past the threshold where rows are grouped by object
            cov.add(1000 + k, 0, 1, 1, 0)
    oids = np.array([o for o, _ in rows], dtype=np.int64)
    lbns = np.array([lb for _, lb in rows], dtype=np.int64)
    hit, toid, tlbn = cov.resolve(oids, lbns)
    for i, (oid, lbn) in enumerate(rows):
        ref = cov.get(oid, lbn)
        assert bool(hit[i]) == (ref is not None)
        assert (int(toid[i]), int(tlbn[i])) == (ref if ref is not None else (oid, lbn))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(0, 12), st.integers(1, 9)), max_size=40
    ),
    st.lists(
        st.tuples(
            st.integers(1, 3), st.integers(0, 12), st.integers(1, 4), st.integers(1, 3), st.integers(0, 12)
        ),
        max_size=8,
    ),
)
def test_current_pbns_equals_row_by_row(rows, runs):
    # The window's current PBNs in arrays (both lookups: by position within
    # small groups, and by sorting the window) against _current row by row.
    seen, uniq = set(), []
    for fp, oid, lbn, pbn in rows:
        if (oid, lbn) not in seen:  # a job collects each mapping once
            seen.add((oid, lbn))
            uniq.append((fp, pbn, oid, lbn))
    if not uniq:
        return
    w = K.sort_rows(np.array(uniq, dtype=K.ROW))
    starts = K.groups(w["fp"])
    sc = scanner.Scanner(None)
    sc.covered = scanner.Covered()
    for oid, lbn, n, aoid, albn in runs:
        if sc.covered.free_prefix(oid, lbn, n) == n:
            sc.covered.add(oid, lbn, n, aoid, albn)
    results = []
    for limit in (scanner.SMALL_GROUP_SCAN, 0):
        saved, scanner.SMALL_GROUP_SCAN = scanner.SMALL_GROUP_SCAN, limit
        try:
            results.append(sc._current_pbns(w, starts))
        finally:
            scanner.SMALL_GROUP_SCAN = saved
    (cur, ok), (cur2, ok2) = results
    assert cur.tolist() == cur2.tolist() and ok.tolist() == ok2.tolist()
    for g in np.flatnonzero(ok):
        a, b = int(starts[g]), int(starts[g + 1])
        members = list(
            zip(w["pbn"][a:b].tolist(), w["oid"][a:b].tolist(), w["lbn"][a:b].tolist(), strict=True)
        )
        assert [p for p, _, _ in sc._current(members)] == cur[a:b].tolist()
