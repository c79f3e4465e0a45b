"""Block maps: radix trees of pages from logical block number to (PBN, checksum).

Contract: pure tree algorithms over a ``PageCache``; they own no state.
An object's tree has ``height`` interior levels above its leaves (height 0:
the root is a leaf). A pointer of 0 is an absent subtree: every block under
it is a hole. Every mutation goes through ``mutable_leaf`` or
``clear_range``, which copy a page on write whenever it is shared
(``refs > 1``) — that is what keeps snapshots and clones frozen while the
volume changes, and what makes taking them O(1): they only add a reference
to a root.

Cost: a lookup touches height+1 pages; a write to an unshared path touches
the same pages and copies nothing.
"""

from __future__ import annotations

from .format import FANOUT_BITS, FANOUT_MASK, INTERIOR_BYTES, LEAF_BYTES, LEAF_FANOUT, MAX_HEIGHT
from .page_cache import Page, PageCache

_ZERO_LEAF = bytes(LEAF_BYTES)
_ZERO_INTERIOR = bytes(INTERIOR_BYTES)


def height_for(nblocks: int) -> int:
    h = 0
    cover = LEAF_FANOUT
    while cover < nblocks:
        cover <<= FANOUT_BITS
        h += 1
    if h > MAX_HEIGHT:
        raise ValueError("object too large")
    return h


def span_of(level: int) -> int:
    """Blocks covered by one page at ``level``."""
    return LEAF_FANOUT << (FANOUT_BITS * level)


def lookup_leaf(cache: PageCache, root: int, height: int, leaf_no: int) -> Page | None:
    pid = root
    if not pid:
        return None
    p = cache.get(pid)
    for level in range(height, 0, -1):
        pid = p.ents[(leaf_no >> (FANOUT_BITS * (level - 1))) & FANOUT_MASK]
        if not pid:
            return None
        p = cache.get(pid)
    return p


def mutable_leaf(cache: PageCache, obj, leaf_no: int) -> Page:
    """The leaf for ``leaf_no``, private to ``obj`` (copied where shared,
    created where absent); ``obj.root`` is updated when the root changes."""
    if not obj.root:
        p = cache.new_page(obj.height)
        obj.root = p.id
    else:
        p = cache.get(obj.root)
        if p.refs > 1:
            p = cache.cow(p)
            obj.root = p.id
        else:
            cache.mark_dirty(p)
    for level in range(obj.height, 0, -1):
        idx = (leaf_no >> (FANOUT_BITS * (level - 1))) & FANOUT_MASK
        pid = p.ents[idx]
        if not pid:
            c = cache.new_page(level - 1)
            p.ents[idx] = c.id
        else:
            c = cache.get(pid)
            if c.refs > 1:
                c = cache.cow(c)
                p.ents[idx] = c.id
            else:
                cache.mark_dirty(c)
        p = c
    return p


def iter_leaves(cache: PageCache, root: int, height: int, lo: int, hi: int):
    """Yield (first_lbn, leaf_page, path_shared) for every present leaf that
    overlaps blocks [lo, hi), in order; absent subtrees are skipped whole."""
    if not root or lo >= hi:
        return
    stack = [(root, height, 0, False)]
    while stack:
        pid, level, base, shared = stack.pop()
        p = cache.get(pid)
        shared = shared or p.refs > 1
        if level == 0:
            yield base, p, shared
            continue
        child_span = span_of(level - 1)
        first = max(0, (lo - base) // child_span)
        last = min(LEAF_FANOUT - 1, (hi - 1 - base) // child_span)
        ents = p.ents
        # Push in reverse so leaves come out in ascending order.
        for i in range(last, first - 1, -1):
            c = ents[i]
            if c:
                stack.append((c, level - 1, base + i * child_span, shared))


def first_leaf(cache: PageCache, root: int, height: int, lo: int, hi: int):
    """(first_lbn, leaf_page) of the first present leaf that overlaps
    blocks [lo, hi), or None: ``next(iter_leaves(...))`` without queueing
    every sibling on the way down (a walk that takes one leaf per call,
    under the lock each time, would queue the whole root each call)."""

    def find(pid: int, level: int, base: int):
        p = cache.get(pid)
        if level == 0:
            return base, p
        child_span = span_of(level - 1)
        ents = p.ents
        for i in range(
            max(0, (lo - base) // child_span), min(LEAF_FANOUT - 1, (hi - 1 - base) // child_span) + 1
        ):
            c = ents[i]
            if c:
                found = find(c, level - 1, base + i * child_span)
                if found is not None:
                    return found
        return None

    if not root or lo >= hi:
        return None
    return find(root, height, 0)


def clear_range(cache: PageCache, obj, lo: int, hi: int) -> None:
    """Make blocks [lo, hi) holes, dropping whole subtrees that the range
    covers (a trim of a whole 1 TiB LUN touches a handful of pages)."""
    if obj.root and lo < hi:
        obj.root = _clear(cache, obj.root, obj.height, 0, lo, hi)


def _clear(cache: PageCache, pid: int, level: int, base: int, lo: int, hi: int) -> int:
    span = span_of(level)
    if lo <= base and base + span <= hi:
        cache.decref_page(pid)
        return 0
    p = cache.get(pid)
    if level == 0:
        s = max(lo, base) - base
        e = min(hi, base + span) - base
        ents = p.ents
        if not any(ents[s:e]):
            return pid
        if p.refs > 1:
            p = cache.cow(p)
            ents = p.ents
        else:
            cache.mark_dirty(p)
        for i in range(s, e):
            b = ents[i]
            if b:
                cache.decref_block(b)
                ents[i] = 0
                ents[LEAF_FANOUT + i] = 0
        empty = p.buf == _ZERO_LEAF
    else:
        child_span = span >> FANOUT_BITS
        first = max(0, (lo - base) // child_span)
        last = min(LEAF_FANOUT - 1, (hi - 1 - base) // child_span)
        if not any(p.ents[first : last + 1]):
            return pid
        if p.refs > 1:
            p = cache.cow(p)
        else:
            cache.mark_dirty(p)
        ents = p.ents
        for i in range(first, last + 1):
            c = ents[i]
            if c:
                ents[i] = _clear(cache, c, level - 1, base + i * child_span, lo, hi)
        empty = p.buf == _ZERO_INTERIOR
    if empty:
        cache.decref_page(p.id)
        return 0
    return p.id


def grow(cache: PageCache, obj, new_height: int) -> None:
    """Raise the tree to ``new_height`` by stacking roots above the old one."""
    while obj.height < new_height:
        if obj.root:
            top = cache.new_page(obj.height + 1)
            top.ents[0] = obj.root
            obj.root = top.id
        obj.height += 1
