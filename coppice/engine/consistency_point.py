"""The consistency point: everything in memory committed as one transaction.

Contract: ``commit`` is the one sequence by which the engine's state
reaches pool.db, used both by a plain consistency point and at the end of a
management transaction:

1. fdatasync the data file, so no committed metadata points at data that
   is not durable;
2. write dirty pages, page and block reference-count changes, changed
   object rows, the free extents and the next epoch into the open
   transaction, and COMMIT it;
3. only then release the blocks it freed to the allocator's in-memory
   view and empty the intent log (its content is committed now).

The blocks a consistency point frees are released to the allocator
inside step 2 (the free extents it commits must include them); if the
commit fails, ``abort`` rebuilds the allocator from pool.db, so a block is
never handed out while committed metadata still references it, nor twice.

If anything fails, the transaction is rolled back (unless SQLite already
did) and the log is intact; ``abort`` rebuilds the in-memory state from
the committed metadata and replays the intent log, so every acknowledged
write is still there and the pool goes on serving. Lack of space is
reported as ``NoSpace`` (ENOSPC), never as a raw SQLite error.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from ..errors import Corruption, NoSpace
from . import datapath
from .space import MetadataNoSpace, is_full

if TYPE_CHECKING:
    import numpy as np


def commit(pool, begun: bool = False, log_mark: int | None = None) -> None:
    """Commit the pool's in-memory state. ``begun``: the caller's
    management transaction already issued BEGIN; ``log_mark``: the intent
    log's size when it did (what a rollback cuts the log back to).

    A plain consistency point that fails for lack of space is retried once
    with the space reserve given back to the file system: its content is
    all in the intent log, so it can be rebuilt and committed again. A
    management transaction is not retried: it fails whole, changing
    nothing."""
    try:
        _commit_once(pool, begun)
    except BaseException as e:
        abort(pool, log_mark)
        if begun or not is_full(e) or not pool.headroom.spend():
            raise as_no_space(pool, e) from e
        try:
            _commit_once(pool, False)
        except BaseException as e2:
            abort(pool)
            raise as_no_space(pool, e2) from e2
    _committed(pool)


def _commit_once(pool, begun: bool) -> None:
    db = pool.db
    pool._sync_data()
    if not begun:
        db.execute("BEGIN IMMEDIATE")
    _write(pool)
    db.execute("COMMIT")


def abort(pool, log_mark: int | None = None) -> None:
    """Undo an uncommitted transaction: roll it back unless SQLite already
    did (it does on SQLITE_FULL and some I/O errors, and a second ROLLBACK
    would raise and skip the rest), cut the intent log back to
    ``log_mark`` (a management transaction's own records), rebuild memory
    from pool.db and replay the intent log over it, so acknowledged writes
    stay visible and their blocks stay allocated."""
    if pool.db.in_transaction:
        pool.db.execute("ROLLBACK")
    if log_mark is not None and pool.log.size > log_mark:
        pool.log.truncate(log_mark)
    pool._reload()
    pool._replay(checkpoint=False)


def as_no_space(pool, e: BaseException) -> BaseException:
    """The error to raise for ``e``: one of ours when it is lack of space."""
    if is_full(e) and not isinstance(e, NoSpace):
        return MetadataNoSpace(path=pool.path)
    return e


def _write(pool) -> None:
    """Everything in memory into the open transaction."""
    db = pool.db
    pool.cache.write_out()
    _apply_block_deltas(pool)
    if pool._dirty_objs:
        db.executemany(
            "UPDATE objects SET name=?, kind=?, size=?, root=?, height=?, meta=? WHERE id=?",
            [
                (o.name, o.kind, o.size, o.root, o.height, json.dumps(o.meta), o.id)
                for o in pool._dirty_objs.values()
            ],
        )
    db.execute("DELETE FROM free_extents")
    db.executemany("INSERT INTO free_extents (start, count) VALUES (?, ?)", pool.alloc.extents())
    for k, v in (
        ("next_pbn", pool.alloc.next_pbn),
        ("next_page_id", pool.cache.next_page_id),
        ("epoch", pool.epoch + 1),
    ):
        db.execute("UPDATE pool SET value=? WHERE key=?", (str(v), k))


def _apply_block_deltas(pool) -> None:
    """Fold pending block refcount changes into block_refs and release
    the blocks whose count reached 0 to the allocator."""
    cache = pool.cache
    n = cache.block_changes()
    if not n:
        return
    db = pool.db
    if n <= SMALL_FOLD and cache.unref_compacted() is None:
        # A management transaction's few changes: one block at a time, no
        # numpy (a CLI command that commits need not import it).
        bd = dict(cache.block_delta)
        for p in cache.unref:
            if p:
                bd[p] = bd.get(p, 0) - 1
        frees, deletes, upserts = fold_reference(bd, pool._stored_refs([p for p, d in bd.items() if d]))
        if deletes:
            db.executemany("DELETE FROM block_refs WHERE pbn=?", [(p,) for p in deletes])
        if upserts:
            db.executemany("INSERT OR REPLACE INTO block_refs (pbn, refs) VALUES (?, ?)", upserts)
        if frees:
            pool.alloc.release_many(frees)
        return
    pbns, deltas = pending_deltas(cache.block_delta, *cache.unref_counts())
    if not len(pbns):
        return
    sp, sr = stored_refs(db, pbns)
    frees, deletes, upserts = fold(pbns, deltas, sp, sr)
    if len(deletes):
        db.executemany("DELETE FROM block_refs WHERE pbn=?", ((p,) for p in deletes.tolist()))
    if len(upserts[0]):
        db.executemany(
            "INSERT OR REPLACE INTO block_refs (pbn, refs) VALUES (?, ?)",
            zip(upserts[0].tolist(), upserts[1].tolist(), strict=True),
        )
    if len(frees):
        pool.alloc.release_sorted(frees)


# Up to this many pending changes the fold runs one block at a time.
SMALL_FOLD = 4096


# The fold works on whole arrays: a sustained 4 KiB overwrite leaves one
# pending change per request (the block it replaced), up to 2^18 of them
# per consistency point, and a loop in Python over those was a third of a
# busy server's time. ``fold_reference`` is the same rule one block at a
# time; a test holds the two equal.


def pending_deltas(block_delta, unref_pbns=None, unref_counts=None) -> tuple[np.ndarray, np.ndarray]:
    """(PBNs ascending, their non-zero deltas) of a ``{pbn: delta}`` map,
    less ``unref_counts`` references of ``unref_pbns`` (ascending arrays)."""
    import numpy as np  # here, not at import: a CLI command that opens a pool need not pay for it

    n = len(block_delta)
    pbns = np.fromiter(block_delta.keys(), dtype=np.int64, count=n)
    deltas = np.fromiter(block_delta.values(), dtype=np.int64, count=n)
    if unref_pbns is not None and len(unref_pbns):
        pbns = np.concatenate((pbns, unref_pbns))
        deltas = np.concatenate((deltas, -unref_counts))
    pbns, deltas = datapath.sum_by_key(pbns, deltas)
    keep = deltas != 0
    return pbns[keep], deltas[keep]


# Changes at most CLUSTER_GAP apart form a cluster; a cluster of at least
# MIN_CLUSTER changes is read with one range scan of block_refs (at most
# CLUSTER_GAP rows per change), the rest by key, 900 at a time.
CLUSTER_GAP = 4
MIN_CLUSTER = 16
# Rows read from SQLite at a time by a range scan.
STREAM_ROWS = 4096


def stored_refs(db, pbns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(PBNs ascending, committed counts) of the block_refs rows among the
    ascending ``pbns``; a block without a row has 1 if allocated.

    Cost follows the changes, not the pool: dense clusters of changes are
    range scans that read at most CLUSTER_GAP rows per change, streamed a
    chunk at a time keeping only the rows asked for (16 bytes per change);
    scattered changes are looked up by key. One range from the lowest to
    the highest change would read every shared block between them: a dedup
    scan's consistency point spans the blocks it shared so far, which grew
    with the pool (a list of 260,000 tuples per consistency point at
    1 GiB unique)."""
    import numpy as np

    got_p: list[np.ndarray] = []
    got_r: list[np.ndarray] = []

    def keep(rows, want):
        a = np.array(rows, dtype=np.int64)
        pos = np.minimum(np.searchsorted(want, a[:, 0]), len(want) - 1)
        hit = want[pos] == a[:, 0]
        got_p.append(a[hit, 0])
        got_r.append(a[hit, 1])

    if len(pbns):
        cut = np.flatnonzero(np.diff(pbns) > CLUSTER_GAP) + 1
        starts = np.concatenate(([0], cut))
        sizes = np.diff(np.concatenate((starts, [len(pbns)])))
        dense = sizes >= MIN_CLUSTER
        for s, n in zip(starts[dense].tolist(), sizes[dense].tolist(), strict=True):
            want = pbns[s : s + n]
            cur = db.execute(
                "SELECT pbn, refs FROM block_refs WHERE pbn BETWEEN ? AND ? ORDER BY pbn",
                (int(want[0]), int(want[-1])),
            )
            while rows := cur.fetchmany(STREAM_ROWS):
                keep(rows, want)
        sparse = pbns[np.repeat(~dense, sizes)].tolist()
        for i in range(0, len(sparse), 900):  # SQLite's bound-parameter limit
            chunk = sparse[i : i + 900]
            q = "SELECT pbn, refs FROM block_refs WHERE pbn IN ({})".format(",".join("?" * len(chunk)))
            rows = db.execute(q, chunk).fetchall()
            if rows:
                keep(rows, np.array(chunk, dtype=np.int64))
    if not got_p:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    sp, sr = np.concatenate(got_p), np.concatenate(got_r)
    order = np.argsort(sp, kind="stable")
    return sp[order], sr[order]


def fold(pbns: np.ndarray, deltas: np.ndarray, sp: np.ndarray, sr: np.ndarray):
    """Apply ``deltas`` to the counts of ``pbns`` (both ascending-by-PBN
    arrays; ``sp``/``sr``: stored rows, ascending, a PBN missing there
    counts 1). Returns (frees, deletes, (upsert PBNs, their counts)):
    blocks whose count reached 0, rows to delete (count now 1 or 0), rows
    to write (count now 2 or more), each ascending."""
    import numpy as np

    old = np.ones(len(pbns), dtype=np.int64)
    found = np.zeros(len(pbns), dtype=bool)
    if len(sp):
        pos = np.searchsorted(sp, pbns)
        inside = pos < len(sp)
        found[inside] = sp[pos[inside]] == pbns[inside]
        old[found] = sr[pos[found]]
    new = old + deltas
    if (new < 0).any():
        p = int(pbns[np.argmax(new < 0)])
        raise Corruption(
            detail=f"reference count of physical block {p} would drop below zero; run `coppice fsck`"
        )
    ups = new > 1
    return pbns[new == 0], pbns[found & ~ups], (pbns[ups], new[ups])


def fold_reference(block_delta: dict, stored: dict):
    """``fold`` one block at a time over dicts: what a small consistency
    point runs, and the reference the array version is tested against.
    Returns lists in the same order."""
    frees, deletes, upserts = [], [], []
    for p in sorted(block_delta):
        d = block_delta[p]
        if not d:
            continue
        new = stored.get(p, 1) + d
        if new < 0:
            raise Corruption(
                detail=f"reference count of physical block {p} would drop below zero; run `coppice fsck`"
            )
        if new == 0:
            frees.append(p)
        if new <= 1:
            if p in stored:
                deletes.append(p)
        else:
            upserts.append((p, new))
    return frees, deletes, upserts


def _committed(pool) -> None:
    pool.cache.committed()
    pool._dirty_objs.clear()
    pool.epoch += 1
    pool._cp_blocked = False
    pool.log.reset()
    if pool.headroom.near_full():
        # SQLite's WAL grows to ~4 MiB between its own checkpoints; near
        # full, hand that space back now (what the next commit needs is in
        # the headroom estimate). A checkpoint that cannot run is harmless.
        try:
            pool.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
    pool.headroom.arm()
