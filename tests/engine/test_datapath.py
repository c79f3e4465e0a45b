"""The data path's block loops keep the checksum rule: ``block_checksums``
and ``first_mismatch`` (which hash a run of blocks at once) agree with
``checksum.block_checksum`` block by block, 0 -> 1 included."""

import os
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coppice.engine import datapath
from coppice.engine.checksum import block_checksum

BS = 4096


@pytest.mark.parametrize("n", [1, 2, 7, 256])
def test_block_checksums_equal_the_rule_per_block(n):
    buf = memoryview(bytearray(os.urandom(n * BS)))
    assert datapath.block_checksums(buf, BS).tolist() == [
        block_checksum(buf[i * BS : (i + 1) * BS]) for i in range(n)
    ]


def test_a_hash_of_zero_is_stored_as_one(monkeypatch):
    real = datapath.xxh3_64
    monkeypatch.setattr(datapath, "xxh3_64", lambda b: 0 if bytes(b[:1]) == b"\0" else real(b))
    buf = bytearray(os.urandom(3 * BS))
    buf[BS] = 0
    buf[0] = buf[2 * BS] = 1
    got = datapath.block_checksums(memoryview(buf), BS)
    assert got[1] == 1 and got[0] == real(buf[:BS]) and got[2] == real(buf[2 * BS :])


@pytest.mark.parametrize("kind", ["array", "leaf"])
def test_first_mismatch_finds_the_first_bad_block(kind):
    buf = bytearray(os.urandom(16 * BS))
    sums = datapath.block_checksums(memoryview(buf), BS)
    # stored checksums at an offset, as a leaf keeps them after its PBNs
    stored = array("Q", [7, 7, 7]) + sums
    csums = stored if kind == "array" else memoryview(bytearray(stored.tobytes())).cast("Q")
    assert datapath.first_mismatch(memoryview(buf), BS, csums, 3) == -1
    assert datapath.first_mismatch(memoryview(buf)[5 * BS :], BS, csums, 8) == -1
    buf[9 * BS + 100] ^= 0xFF
    buf[12 * BS] ^= 0xFF
    assert datapath.first_mismatch(memoryview(buf), BS, csums, 3) == 9
    assert datapath.first_mismatch(memoryview(buf)[10 * BS :], BS, csums, 13) == 2


def test_read_runs_into_a_reused_buffer_equals_a_fresh_read(tmp_path):
    """A reused buffer still full of an earlier run's bytes reads exactly
    what a fresh one does: holes (PBN 0) and blocks past the end of the
    file come back as zeros, not as the old bytes."""
    from coppice.engine.fileio import OS_FILES

    bs = 4096
    path = str(tmp_path / "data")
    with open(path, "wb") as fh:
        fh.write(os.urandom(bs * 10))
    f = OS_FILES.open(path)
    try:
        pbns = array("Q", [3, 4, 0, 9, 10, 11, 0, 1])  # a hole, a run crossing the end, a hole
        fresh = datapath.read_runs(f, pbns, len(pbns), bs)
        dirty = bytearray(os.urandom(len(pbns) * bs))
        reused = datapath.read_runs(f, pbns, len(pbns), bs, dirty)
        assert reused is dirty and reused == fresh
        assert fresh[2 * bs : 3 * bs] == bytes(bs) and fresh[4 * bs : 7 * bs] == bytes(3 * bs)
        with open(path, "rb") as fh:
            data = fh.read()
        assert fresh[:bs] == data[3 * bs : 4 * bs] and fresh[3 * bs : 4 * bs] == data[9 * bs :]
    finally:
        f.close()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40)), max_size=30),
    st.integers(0, 5),
    st.integers(0, 5),
    st.booleans(),
)
def test_contiguous_runs_on_arrays_equal_block_by_block(pieces, cut_lo, cut_hi, as_view):
    # runs of consecutive PBNs, holes (0) and jumps, as leaves and dedup runs have them
    pbns, nxt = [], 1
    for kind, n in pieces:
        if kind == 0:
            pbns += [0] * n
        else:
            nxt += kind * 1000  # a jump: a new run
            pbns += list(range(nxt, nxt + n))
            nxt += n
    a = array("Q", pbns)
    seq = memoryview(bytearray(a.tobytes())).cast("Q") if as_view else a
    lo, hi = min(cut_lo, len(a)), max(min(cut_lo, len(a)), len(a) - cut_hi)
    want = list(datapath._contiguous_runs_py(seq, lo, hi))
    assert datapath._contiguous_runs_np(seq, lo, hi) == want
    assert list(datapath.contiguous_runs(seq, lo, hi)) == want
