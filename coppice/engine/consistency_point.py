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

from ..errors import Corruption, NoSpace
from .space import MetadataNoSpace, is_full


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
    frees = _apply_block_deltas(pool)
    if frees:
        pool.alloc.release_many(frees)
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


def _apply_block_deltas(pool) -> list[int]:
    """Fold pending block refcount changes into block_refs; return the
    PBNs whose count reached 0."""
    deltas = {p: d for p, d in pool.cache.block_delta.items() if d}
    if not deltas:
        return []
    db = pool.db
    stored = pool._stored_refs(deltas)
    frees, deletes, upserts = [], [], []
    for p, d in deltas.items():
        old = stored.get(p, 1)
        new = old + d
        if new < 0:
            raise Corruption(
                detail=f"reference count of physical block {p} would drop below zero; run `coppice fsck`"
            )
        if new == 0:
            frees.append(p)
        if new <= 1:
            if p in stored:
                deletes.append((p,))
        else:
            upserts.append((p, new))
    if deletes:
        db.executemany("DELETE FROM block_refs WHERE pbn=?", deletes)
    if upserts:
        db.executemany("INSERT OR REPLACE INTO block_refs (pbn, refs) VALUES (?, ?)", upserts)
    return frees


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
