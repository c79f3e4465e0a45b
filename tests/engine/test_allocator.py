"""The allocator hands out each free block once and merges what returns."""

from hypothesis import given, settings
from hypothesis import strategies as st

from coppice.engine.allocator import Allocator


def test_sequential_allocation_is_contiguous():
    a = Allocator([], 1)
    assert a.allocate(256) == [(1, 256)]
    assert a.allocate(10) == [(257, 10)]
    assert a.used == 266


def test_release_merges_and_lowers_high_water():
    a = Allocator([], 1)
    a.allocate(100)
    a.release(10, 5)
    a.release(15, 5)
    assert a.extents() == [(10, 10)]
    a.release(50, 51)  # the tail: next_pbn drops instead
    assert a.next_pbn == 50
    assert a.used == 39


def test_claim_takes_exact_blocks():
    a = Allocator([(10, 10)], 100)
    a.claim(12, 2)
    assert a.extents() == [(10, 2), (14, 6)]
    a.claim(150, 1)  # above the high-water mark
    assert a.next_pbn == 151 and a.is_free(120) and not a.is_free(150)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=60))
def test_never_hands_out_a_block_twice(ops):
    a = Allocator([], 1)
    held: set[int] = set()
    for alloc, n in ops:
        if alloc or not held:
            got = [p for s, c in a.allocate(n) for p in range(s, s + c)]
            assert not held & set(got)
            assert 0 not in got
            held |= set(got)
        else:
            give = sorted(held)[:n]
            a.release_many(give)
            held -= set(give)
        assert a.used == len(held)
        for p in list(held)[:20]:
            assert not a.is_free(p)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 30)), max_size=40),
    st.integers(0, 400),
    st.integers(1, 60),
    st.randoms(use_true_random=False),
)
def test_any_free_equals_asking_each_block(ops, start, n, rnd):
    a = Allocator([], 1)
    held: list[int] = []
    for alloc, k in ops:
        if alloc or not held:
            for s, c in a.allocate(k):
                held += range(s, s + c)
        else:
            rnd.shuffle(held)
            for p in held[:k]:
                a.release(p, 1)
            held = held[k:]
    assert a.any_free(start, n) == any(a.is_free(p) for p in range(start, start + n))
