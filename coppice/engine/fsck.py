"""fsck: prove that sharing is exact.

Contract: reads the committed metadata only (the caller checkpoints first)
and changes nothing. It recomputes, from the object roots down, how many
pointers reach every page and every data block, and compares with what is
stored: a page or block whose stored count is higher than its pointers is
leaked space; lower means two owners believe they own it alone (a later
free would corrupt the other); a pointer to a missing page or a free block
is dangling. ``FsckReport.clean`` is True only when every count matches.

Memory: one dict entry per page and per referenced block.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from dataclasses import dataclass, field

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

    @property
    def clean(self) -> bool:
        return not (self.leaked_blocks or self.leaked_pages or self.dangling or self.miscounted)

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
            "problems": self.problems,
        }


def fsck(pool) -> FsckReport:
    db = pool.db
    rep = FsckReport()
    page_refs_expected: dict[int, int] = defaultdict(int)
    block_refs_expected: dict[int, int] = defaultdict(int)
    visited: set[int] = set()
    stack: list[int] = []
    for _oid, root in db.execute("SELECT id, root FROM objects"):
        if root:
            page_refs_expected[root] += 1
            stack.append(root)
    while stack:
        pid = stack.pop()
        if pid in visited:
            continue
        visited.add(pid)
        row = db.execute("SELECT level, data FROM pages WHERE id=?", (pid,)).fetchone()
        if row is None:
            rep.dangling += 1
            rep.note(f"pointer to missing page {pid}")
            continue
        level, data = row
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
                    stack.append(c)
    stored_pages = dict(db.execute("SELECT id, refs FROM pages"))
    rep.pages = len(stored_pages)
    for pid, refs in stored_pages.items():
        exp = page_refs_expected.get(pid, 0)
        if exp == 0:
            rep.leaked_pages += 1
            rep.note(f"page {pid} is stored (refs {refs}) but nothing points to it")
        elif exp != refs:
            rep.miscounted += 1
            rep.note(f"page {pid}: stored refs {refs}, pointers {exp}")
    # Blocks: allocated = [1, next_pbn) minus free extents.
    next_pbn = int(db.execute("SELECT value FROM pool WHERE key='next_pbn'").fetchone()[0])
    free = sorted(db.execute("SELECT start, count FROM free_extents"))
    stored_blocks = dict(db.execute("SELECT pbn, refs FROM block_refs"))

    def is_free(p, _free=free):
        import bisect

        i = bisect.bisect_right(_free, (p, float("inf"))) - 1
        return p >= next_pbn or (i >= 0 and p < _free[i][0] + _free[i][1])

    rep.blocks = len(block_refs_expected)
    for p, exp in block_refs_expected.items():
        if is_free(p):
            rep.dangling += 1
            rep.note(f"block {p} is referenced {exp} time(s) but is free")
            continue
        refs = stored_blocks.get(p, 1)
        if refs != exp:
            rep.miscounted += 1
            rep.note(
                f"block {p}: stored refs {refs}, pointers {exp}"
                + (" (owned twice: freeing one owner would corrupt the other)" if refs < exp else "")
            )
    pos = 1
    for start, count in free + [(next_pbn, 0)]:
        for p in range(pos, start):
            if p not in block_refs_expected:
                rep.leaked_blocks += 1
                rep.note(f"block {p} is allocated but nothing references it")
        pos = start + count
    return rep
