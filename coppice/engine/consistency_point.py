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

If anything fails, the transaction is rolled back (unless SQLite already
did), nothing was released and the log is intact; ``abort`` then rebuilds
the in-memory state from the committed metadata (and, for a plain
consistency point, replays the intent log, so every acknowledged write is
still there). The caller gets the original error.
"""

from __future__ import annotations

import json

from ..errors import Corruption


def commit(pool, begun: bool = False) -> None:
    """Commit the pool's in-memory state. ``begun``: the caller's
    management transaction already issued BEGIN."""
    db = pool.db
    try:
        pool._sync_data()
        if not begun:
            db.execute("BEGIN IMMEDIATE")
        _write(pool)
        db.execute("COMMIT")
    except BaseException:
        abort(pool)
        raise
    _committed(pool)


def abort(pool) -> None:
    """Roll the open transaction back and rebuild memory from pool.db."""
    if pool.db.in_transaction:
        pool.db.execute("ROLLBACK")
    pool._reload()


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
    pool.log.reset()
