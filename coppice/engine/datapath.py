"""The block-level loops of the data path, over arrays and buffers.

Contract: pure functions of their arguments plus the file they are handed
(anything with ``pread``/``preadv``/``pwrite``, see ``fileio``). They know
nothing of pools, objects, block maps or locks: a block map's leaf is
just an ``array('Q')``-like sequence of PBNs. That is the seam where a
compiled core can replace this one module without touching the pool.

The checksum rule lives in ``checksum.block_checksum`` (xxh3-64, 0 mapped
to 1); ``block_checksums`` applies that same rule per block.

Cost: one checksum per block (≈0.6 µs per 4 KiB), one pread or pwrite per
contiguous run of PBNs, byte comparisons as one memcmp each.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from .checksum import block_checksum, xxh3_64

if TYPE_CHECKING:
    import numpy as np


def block_checksums(buf, bs: int) -> array:
    """Checksums of every ``bs``-byte block of ``buf`` (a memoryview or
    bytes whose length is a multiple of ``bs``)."""
    if len(buf) == bs:
        return array("Q", (block_checksum(buf),))
    # xxh3 straight, then the rule's 0 -> 1 over the array (a scan in C):
    # a third less per block than calling block_checksum for each.
    x = xxh3_64
    out = array("Q", [x(buf[a : a + bs]) for a in range(0, len(buf), bs)])
    if 0 in out:
        for i in range(len(out)):
            if not out[i]:
                out[i] = 1
    return out


def zero_slots(buf, bs: int, csums, zero_csum: int) -> list[int]:
    """Indices of the all-zero blocks of ``buf``. A checksum equal to the
    zero block's is confirmed byte for byte; ``bytes()`` rather than the
    memoryview itself because a memoryview compares element by element
    (~6 µs per 4 KiB), bytes with one memcmp."""
    if zero_csum not in csums:
        return []
    zero = bytes(bs)
    return [
        i for i in range(len(csums)) if csums[i] == zero_csum and bytes(buf[i * bs : (i + 1) * bs]) == zero
    ]


def contiguous_runs(pbns, lo: int, hi: int):
    """(i, j, first PBN) for each run pbns[i:j] of consecutive non-zero PBNs
    within [lo, hi): one pread or pwrite per run instead of per block.
    Long spans of an ``array("Q")`` or a leaf's ``ents`` are cut on arrays
    (a 1 MiB read, a dedup run), short ones block by block (the reference,
    and what a 4 KiB request takes)."""
    if hi - lo > RUNS_ON_ARRAYS and (
        (isinstance(pbns, array) and pbns.typecode == "Q")
        or (isinstance(pbns, memoryview) and pbns.format == "Q")  # a leaf's ents
    ):
        return _contiguous_runs_np(pbns, lo, hi)
    return _contiguous_runs_py(pbns, lo, hi)


RUNS_ON_ARRAYS = 32


def _contiguous_runs_np(pbns, lo: int, hi: int) -> list:
    import numpy as np

    a = np.frombuffer(pbns, dtype=np.uint64)[lo:hi].astype(np.int64)
    nz = a != 0
    # a run starts where a block is mapped and is not its predecessor + 1
    start = nz.copy()
    start[1:] &= ~(nz[:-1] & (a[1:] == a[:-1] + 1))
    end = nz.copy()
    end[:-1] &= ~(nz[1:] & (a[1:] == a[:-1] + 1))
    s, e = np.flatnonzero(start), np.flatnonzero(end) + 1
    return list(zip((s + lo).tolist(), (e + lo).tolist(), a[s].tolist(), strict=True))


def _contiguous_runs_py(pbns, lo: int, hi: int):
    i = lo
    while i < hi:
        p = pbns[i]
        if not p:
            i += 1
            continue
        j = i + 1
        while j < hi and pbns[j] == p + (j - i):
            j += 1
        yield i, j, p
        i = j


def spread(runs, n: int, skip) -> array:
    """PBNs for ``n`` blocks from allocator ``runs`` [(start, count)],
    handed out in order to every index not in ``skip`` (those stay 0)."""
    pbns = array("Q", bytes(8 * n))
    if not skip and len(runs) == 1:
        return array("Q", range(runs[0][0], runs[0][0] + n))
    skip = set(skip)
    nz = [i for i in range(n) if i not in skip]
    k = 0
    for start, cnt in runs:
        for j in range(cnt):
            pbns[nz[k + j]] = start + j
        k += cnt
    return pbns


def write_runs(f, buf, pbns, bs: int) -> None:
    """pwrite block i of ``buf`` at PBN pbns[i] for every non-zero PBN, one
    call per contiguous run; short writes are continued."""
    for i, j, p in contiguous_runs(pbns, 0, len(pbns)):
        f.pwrite_all(buf[i * bs : j * bs], p * bs)


def read_runs(f, pbns, k: int, bs: int, out: bytearray | None = None) -> bytearray:
    """The bytes of PBNs pbns[0:k] (holes and bytes past the end of the file
    read as zeros), one preadv per contiguous run. ``out``: a buffer of
    exactly ``k * bs`` bytes to fill instead of a new one (a caller that
    reads 2 MiB runs over and over saves the fresh pages a new buffer
    faults in each time)."""
    fresh = out is None
    if fresh:
        out = bytearray(k * bs)
    mv = memoryview(out)
    pos = 0
    for i, j, p in contiguous_runs(pbns, 0, k):
        if not fresh and i * bs > pos:
            mv[pos : i * bs] = bytes(i * bs - pos)
        got = f.preadv([mv[i * bs : j * bs]], p * bs)
        if not fresh and got < (j - i) * bs:
            mv[i * bs + got : j * bs] = bytes((j - i) * bs - got)
        pos = j * bs
    if not fresh and pos < k * bs:
        mv[pos:] = bytes(k * bs - pos)
    return out


def read_block(f, pbn: int, csum: int, bs: int):
    """The bytes of block ``pbn`` (past the end of the file: zeros), or
    None when they do not match ``csum``; the caller raises."""
    data = f.pread(bs, pbn * bs)
    if len(data) < bs:
        data += bytes(bs - len(data))
    if block_checksum(data) != csum:
        return None
    return data


def read_leaf_range(f, out_mv, dst: int, ents, s: int, e: int, csum_base: int, bs: int):
    """Read slots [s, e) of a leaf (PBNs in ``ents[0:]``, their checksums in
    ``ents[csum_base:]``) into ``out_mv`` from byte ``dst`` on and verify
    each block. Returns None, or (slot, pbn) of the first block whose bytes
    do not match its checksum; the caller raises."""
    for i, j, p in contiguous_runs(ents, s, e):
        at = dst + (i - s) * bs
        cnt = j - i
        got = f.preadv([out_mv[at : at + cnt * bs]], p * bs)
        if got < cnt * bs:
            out_mv[at + got : at + cnt * bs] = bytes(cnt * bs - got)
        bad = first_mismatch(out_mv[at : at + cnt * bs], bs, ents, csum_base + i)
        if bad >= 0:
            return i + bad, p + bad
    return None


def first_mismatch(buf, bs: int, csums, c0: int = 0) -> int:
    """Index of the first block of ``buf`` whose checksum is not
    ``csums[c0 + index]``, or -1 when all match. All blocks are hashed,
    then compared with the stored checksums in one memcmp."""
    n = len(buf) // bs
    got = block_checksums(buf, bs)
    want = csums[c0 : c0 + n]
    if got.tobytes() == want.tobytes():
        return -1
    for k in range(n):
        if got[k] != want[k]:
            return k
    return -1


def equal_prefix(a: bytearray, b: bytearray, bs: int) -> int:
    """How many leading ``bs``-byte blocks of ``a`` and ``b`` are equal.
    Whole buffers first: bytearray == is one memcmp."""
    k = len(a) // bs
    if a == b:
        return k
    good = 0
    while good < k and a[good * bs : (good + 1) * bs] == b[good * bs : (good + 1) * bs]:
        good += 1
    return good


def sum_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys ascending, the sum of the values of each), in integers."""
    import numpy as np

    if not len(keys):
        return keys, values
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[first], np.add.reduceat(values, first)
