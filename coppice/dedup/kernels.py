"""The scan's per-block work as array code (numpy), with a pure-Python
reference of each kernel that the tests hold it equal to.

Contract: every function here is pure (no pool, no store). Rows are the
scan's collected mappings, a structured array ``ROW`` of (fp, pbn, oid, lbn),
32 bytes each, fingerprints as signed 64-bit (SQLite's integer order).

* ``leaf_rows(base, leaf, nb)``: the mapped slots of one engine leaf page
  (below ``nb`` blocks) as (lbns, pbns, csums) and the leaf's signature (xxh3
  of its (lbn, pbn) pairs: an incremental scan skips a leaf whose signature
  has not changed).
* ``sort_rows(rows)``: rows in fingerprint order (stable).
* ``groups(rows)``: start offsets of the runs of equal fingerprints.
* ``settled(fps, cur, starts, known_fp, known_pbn)``: which groups need
  no sharing and no index change beyond "remember this block": their rows
  map one physical block now (``cur``) and the index knows none or exactly
  that one; and which of those the index does not know yet.
* ``first_mismatch(pb, pa, cb, ca)``: how far a run of blocks B onto
  blocks A can extend: up to the first hole, differing checksum, or block
  already shared.

The ``*_py`` functions are the reference implementations.
"""

from __future__ import annotations

from array import array

import numpy as np
import xxhash

from .index import s64

LEAF = 512
ROW = np.dtype([("fp", "<i8"), ("pbn", "<i8"), ("oid", "<i8"), ("lbn", "<i8")])


def leaf_rows(base: int, leaf: bytes, nb: int):
    ents = np.frombuffer(leaf, dtype="<u8")
    pbns, csums = ents[:LEAF], ents[LEAF:]
    idx = np.flatnonzero(pbns)
    if base + LEAF > nb:
        idx = idx[idx < nb - base]
    lbns = idx.astype("<u8") + base
    p = pbns[idx]
    pairs = np.empty((len(idx), 2), dtype="<u8")
    pairs[:, 0] = lbns
    pairs[:, 1] = p
    sig = s64(xxhash.xxh3_64_intdigest(pairs.tobytes()))
    return lbns, p, csums[idx], sig


def leaf_rows_py(base: int, leaf: bytes, nb: int):
    ents = array("Q", leaf)
    rows = [(base + i, ents[i], ents[LEAF + i]) for i in range(LEAF) if ents[i] and base + i < nb]
    sig = s64(xxhash.xxh3_64_intdigest(array("Q", [x for r in rows for x in r[:2]]).tobytes()))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], sig


def make_rows(fps, pbns, oid: int, lbns) -> np.ndarray:
    return fill_rows(np.empty(len(pbns), dtype=ROW), fps, pbns, oid, lbns)


def fill_rows(out: np.ndarray, fps, pbns, oid: int, lbns) -> np.ndarray:
    """Rows of one object's leaf written into ``out`` (a slice of a batch buffer)."""
    out["fp"] = np.asarray(fps, dtype="<u8").view("<i8")
    out["pbn"] = pbns
    out["oid"] = oid
    out["lbn"] = lbns
    return out


def sort_rows(rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """By fingerprint, stable (rows of one fingerprint keep their order);
    into ``out`` (as long as ``rows``) when given."""
    # np.take, not rows[order]: fancy indexing of a structured array goes
    # field by field through a slow generic path (about 15x slower here).
    # mode="clip" (the indices are in range anyway): with the default mode
    # numpy gathers into a temporary and copies it into ``out``.
    return np.take(rows, np.argsort(rows["fp"], kind="stable"), out=out, mode="clip")


def sort_rows_py(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: r[0])


def groups(fps: np.ndarray) -> np.ndarray:
    """Start offsets of the groups of equal fingerprints (sorted input), and
    the end: ``starts[i]:starts[i+1]`` is group i."""
    if not len(fps):
        return np.zeros(1, dtype=np.int64)
    cut = np.flatnonzero(fps[1:] != fps[:-1]) + 1
    return np.concatenate(([0], cut, [len(fps)])).astype(np.int64)


def groups_py(fps) -> list[int]:
    out = [0] if len(fps) else []
    out += [i for i in range(1, len(fps)) if fps[i] != fps[i - 1]]
    return out + [len(fps)]


def settled(fps, cur, starts, known_fp, known_pbn):
    """Per group (``starts`` from ``groups``): (settled, unknown). ``cur`` is
    the physical block each row maps now; ``known_fp`` (sorted) and
    ``known_pbn`` are the index's entries for these fingerprints."""
    first = starts[:-1]
    gfp = fps[first]
    one_pbn = np.minimum.reduceat(cur, first) == np.maximum.reduceat(cur, first)
    lo = np.searchsorted(known_fp, gfp, "left")
    nknown = np.searchsorted(known_fp, gfp, "right") - lo
    if len(known_pbn):
        kp = known_pbn[np.minimum(lo, len(known_pbn) - 1)]
    else:
        kp = np.zeros(len(first), dtype=np.int64)
    unknown = nknown == 0
    ok = one_pbn & (unknown | ((nknown == 1) & (kp == cur[first])))
    return ok, ok & unknown


def settled_py(fps, cur, starts, known: dict) -> tuple[list[bool], list[bool]]:
    ok, unk = [], []
    for g in range(len(starts) - 1):
        a, b = starts[g], starts[g + 1]
        members = set(cur[a:b])
        k = known.get(fps[a], [])
        s = len(members) == 1 and (not k or k == [cur[a]])
        ok.append(s)
        unk.append(s and not k)
    return ok, unk


def first_mismatch(pb, pa, cb, ca) -> int:
    """Length of the prefix where both map a block (non-zero), checksums
    agree and the blocks differ."""
    bad = (pb == 0) | (pa == 0) | (cb != ca) | (pb == pa)
    i = np.flatnonzero(bad)
    return int(i[0]) if len(i) else len(pb)


def first_mismatch_py(pb, pa, cb, ca) -> int:
    for i in range(len(pb)):
        if not pb[i] or not pa[i] or cb[i] != ca[i] or pb[i] == pa[i]:
            return i
    return len(pb)
