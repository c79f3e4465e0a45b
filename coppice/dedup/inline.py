"""Inline deduplication: the engine's write path asks before it allocates.

Contract: ``attach(pool)`` installs an ``InlineDedup`` as
``pool.inline_dedup`` (the filer calls it right after opening a pool; it is
harmless when no volume has inline on). The engine calls, under its lock:

* ``enabled(dataset_id)`` — is inline on for the volume being written;
* ``lookup(checksum) -> pbn or 0`` — a candidate block with that checksum;
* ``learn([(checksum, pbn), ...])`` — blocks just written (or shared).

Candidates are hints: the engine compares every one byte for byte with the
incoming block before it maps the write to it, so a stale or colliding
entry costs one read, never wrong data. The table is a ``CompactTable`` of
fixed size (16 bytes a slot; default 1 Mi slots = 16 MiB covering 4 GiB of
unique 4 KiB blocks); it is warmed from the on-disk index at attach and
kept current by every write and every post-process scan. A block the table
has forgotten is written normally and merged by the next scan.

Only the xxh3 checksum is used as the fingerprint here: it is computed by
the write path anyway, so a lookup costs one probe of the table.
"""

from __future__ import annotations

from . import config
from .index import CompactTable, DedupStore

DEFAULT_SLOTS = 1 << 20


class InlineDedup:
    def __init__(self, pool, slots: int = DEFAULT_SLOTS, warm: bool = True):
        self.pool = pool
        self.table = CompactTable(slots)
        self._enabled: set[int] = set()
        self.lookups = self.hits = 0
        self.refresh()
        if warm:
            store = DedupStore(pool)
            try:
                for fp, pbn in reversed(store.recent(len(self.table.keys) // 2)):
                    self.table.put(fp, pbn)
            finally:
                store.close()

    def refresh(self) -> None:
        """Re-read which volumes have inline on (config.update calls it)."""
        ids = set()
        for name, rec in config.all_volumes(self.pool).items():
            if rec.get("enabled") and rec.get("inline"):
                ids.add(self.pool.volume(name).id)
        self._enabled = ids

    @property
    def active(self) -> bool:
        return bool(self._enabled)

    # ---- the engine's hook ----------------------------------------------------
    def enabled(self, dataset_id: int) -> bool:
        return dataset_id in self._enabled

    def lookup(self, checksum: int) -> int:
        self.lookups += 1
        p = self.table.get(checksum)
        if p:
            self.hits += 1
        return p

    def learn(self, pairs) -> None:
        if not self._enabled:
            return  # nobody deduplicates inline: keep the write path cheap
        put = self.table.put
        for fp, pbn in pairs:
            put(fp, pbn)


def attach(pool, slots: int = DEFAULT_SLOTS) -> InlineDedup:
    """Install (or return the installed) inline hook on ``pool``."""
    hook = getattr(pool, "inline_dedup", None)
    if isinstance(hook, InlineDedup):
        hook.refresh()
        return hook
    hook = InlineDedup(pool, slots)
    pool.inline_dedup = hook
    return hook


def detach(pool) -> None:
    pool.inline_dedup = None
