"""fsck: prove that sharing is exact.

Contract: reads the committed metadata only (the caller checkpoints first)
and changes nothing. It recomputes, from the object roots down, how many
pointers reach every page and every data block, and compares with what is
stored: a page or block whose stored count is higher than its pointers is
leaked space; lower means two owners believe they own it alone (a later
free would corrupt the other); a pointer to a missing page or a free block
is dangling. Every page's checksum is verified on the way: a corrupt page
is named with the objects whose map runs through it, and what lies below it
cannot be counted, so blocks and pages nothing reachable references are
then summed up in one line rather than listed (they are most likely the
corrupt page's). Leaked blocks are listed as runs. ``FsckReport.clean`` is
True only when every page is intact and every count matches.

Memory: one dict entry per page and per referenced block.
"""

from __future__ import annotations

import bisect
from array import array
from collections import defaultdict
from dataclasses import dataclass, field

from .checksum import page_checksum
from .format import LEAF_FANOUT

MAX_LISTED = 50


@dataclass
class FsckReport:
    pages: int = 0
    blocks: int = 0
    problems: list[str] = field(default_factory=list)
    leaked_blocks: int = 0
    leaked_pages: int = 0
    dangling: int = 0
    miscounted: int = 0
    corrupt_pages: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.leaked_blocks or self.leaked_pages or self.dangling or self.miscounted or self.corrupt_pages
        )

    def note(self, msg: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(msg)

    def as_dict(self):
        return {
            "clean": self.clean,
            "pages": self.pages,
            "blocks": self.blocks,
            "leaked_blocks": self.leaked_blocks,
            "leaked_pages": self.leaked_pages,
            "dangling": self.dangling,
            "miscounted": self.miscounted,
            "corrupt_pages": self.corrupt_pages,
            "problems": self.problems,
        }


def _owner_labels(pool) -> dict[int, str]:
    """object id -> 'object NAME of volume V' (or 'of snapshot V@S')."""
    out = {}
    for o in pool.objects.values():
        d = pool.datasets.get(o.dataset_id)
        if d is None:
            where = "?"
        elif d.kind == "snapshot":
            where = f"snapshot {pool.datasets[d.volume_id].name}@{d.name}"
        else:
            where = f"volume {d.name}"
        out[o.id] = f"object {o.name} of {where}"
    return out


def fsck(pool) -> FsckReport:
    db = pool.db
    rep = FsckReport()
    page_refs_expected: dict[int, int] = defaultdict(int)
    block_refs_expected: dict[int, int] = defaultdict(int)
    visited: set[int] = set()
    stack: list[tuple[int, int]] = []
    corrupt_owners: dict[int, set[int]] = {}
    for oid, root in db.execute("SELECT id, root FROM objects"):
        if root:
            page_refs_expected[root] += 1
            stack.append((root, oid))
    while stack:
        pid, oid = stack.pop()
        if pid in corrupt_owners:
            corrupt_owners[pid].add(oid)
        if pid in visited:
            continue
        visited.add(pid)
        row = db.execute("SELECT level, csum, data FROM pages WHERE id=?", (pid,)).fetchone()
        if row is None:
            rep.dangling += 1
            rep.note(f"pointer to missing page {pid}")
            continue
        level, csum, data = row
        if page_checksum(data) != csum:
            corrupt_owners[pid] = {oid}
            continue
        ents = array("Q")
        ents.frombytes(data)
        if level == 0:
            for p in ents[:LEAF_FANOUT]:
                if p:
                    block_refs_expected[p] += 1
        else:
            for c in ents:
                if c:
                    page_refs_expected[c] += 1
                    stack.append((c, oid))
    labels = _owner_labels(pool)
    for pid, owners in sorted(corrupt_owners.items()):
        rep.corrupt_pages.append(pid)
        names = ", ".join(sorted(labels.get(o, f"object id {o}") for o in owners))
        rep.note(
            f"block-map page {pid} is corrupt (checksum mismatch); it maps part of {names}: "
            "restore that object from a snapshot or backup"
        )
    unsure = bool(corrupt_owners)  # what a corrupt page points to is unknown
    stored_pages = dict(db.execute("SELECT id, refs FROM pages"))
    rep.pages = len(stored_pages)
    for pid, refs in stored_pages.items():
        exp = page_refs_expected.get(pid, 0)
        if exp == 0:
            rep.leaked_pages += 1
            if not unsure:
                rep.note(f"page {pid} is stored (refs {refs}) but nothing points to it")
        elif exp != refs and not (unsure and exp < refs):
            rep.miscounted += 1
            rep.note(f"page {pid}: stored refs {refs}, pointers {exp}")
    # Blocks: allocated = [1, next_pbn) minus free extents.
    next_pbn = int(db.execute("SELECT value FROM pool WHERE key='next_pbn'").fetchone()[0])
    free = sorted(db.execute("SELECT start, count FROM free_extents"))
    stored_blocks = dict(db.execute("SELECT pbn, refs FROM block_refs"))

    def is_free(p, _free=free):
        i = bisect.bisect_right(_free, (p, float("inf"))) - 1
        return p >= next_pbn or (i >= 0 and p < _free[i][0] + _free[i][1])

    rep.blocks = len(block_refs_expected)
    for p, exp in block_refs_expected.items():
        if is_free(p):
            rep.dangling += 1
            rep.note(f"block {p} is referenced {exp} time(s) but is free")
            continue
        refs = stored_blocks.get(p, 1)
        if refs != exp and not (unsure and refs > exp):
            rep.miscounted += 1
            rep.note(
                f"block {p}: stored refs {refs}, pointers {exp}"
                + (" (owned twice: freeing one owner would corrupt the other)" if refs < exp else "")
            )
    leaked_runs = []
    pos = 1
    for start, count in free + [(next_pbn, 0)]:
        p = pos
        while p < start:
            if p in block_refs_expected:
                p += 1
                continue
            q = p + 1
            while q < start and q not in block_refs_expected:
                q += 1
            leaked_runs.append((p, q))
            rep.leaked_blocks += q - p
            p = q
        pos = start + count
    if unsure:
        if rep.leaked_blocks or rep.leaked_pages:
            rep.note(
                f"{rep.leaked_blocks} block(s) and {rep.leaked_pages} page(s) are not reached from any "
                "object: most likely they are the corrupt page(s)' (not listed one by one)"
            )
    else:
        for a, b in leaked_runs:
            what = f"block {a} is" if b == a + 1 else f"blocks {a}-{b - 1} are"
            rep.note(f"{what} allocated but nothing references it")
    return rep
