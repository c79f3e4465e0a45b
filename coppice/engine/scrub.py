"""scrub: read every allocated, referenced block and verify its checksum.

Contract: reads the committed metadata (the caller checkpoints first) and
every block it references, each block once however many volumes share it,
in physical order with coalesced reads; changes nothing. Reports each
corrupt block with every place that references it (volume or snapshot,
object, byte offset), so a user knows what to restore. Every block-map
page on the way is verified against its checksum too: a corrupt page is
reported (``{"page": id, ...}``) with the objects whose map runs through
it, and the blocks below it are not read (their checksums live in it).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from .checksum import block_checksum, page_checksum
from .format import LEAF_FANOUT


@dataclass
class ScrubReport:
    blocks_checked: int = 0
    bytes_checked: int = 0
    errors: list[dict] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors

    def as_dict(self):
        return {
            "clean": self.clean,
            "blocks_checked": self.blocks_checked,
            "bytes_checked": self.bytes_checked,
            "errors": self.errors,
        }


def _label(pool, ds_id):
    d = pool.datasets.get(ds_id)
    if d is None:
        return "?"
    if d.kind == "snapshot":
        return f"{pool.datasets[d.volume_id].name}@{d.name}"
    return d.name


def _place(pool, oid: int, offset: int) -> dict:
    o = pool.objects.get(oid)
    return {
        "dataset": _label(pool, o.dataset_id) if o else "?",
        "object": o.name if o else "?",
        "offset": offset,
    }


def scrub(pool, progress=None) -> ScrubReport:
    db = pool.db
    bs = pool.block_size
    # pbn -> (checksum, [(object id, lbn)]) ; leaves shared by many objects
    # are read once, their owners remembered for reporting.
    stack = [
        (root, oid, 0, height)
        for oid, root, height in db.execute("SELECT id, root, height FROM objects")
        if root
    ]
    seen_pages: dict[int, tuple] = {}
    blocks: dict[int, tuple[int, list]] = {}
    bad_pages: dict[int, list] = {}  # page id -> [(object id, first lbn)]
    while stack:
        pid, oid, base, level = stack.pop()
        if pid in bad_pages:
            if len(bad_pages[pid]) < 8:
                bad_pages[pid].append((oid, base))
            continue
        row = seen_pages.get(pid)
        if row is None:
            r = db.execute("SELECT level, csum, data FROM pages WHERE id=?", (pid,)).fetchone()
            if r is None:
                continue
            if page_checksum(r[2]) != r[1]:
                bad_pages[pid] = [(oid, base)]
                continue
            ents = array("Q")
            ents.frombytes(r[2])
            row = seen_pages[pid] = (r[0], ents)
        lvl, ents = row
        if lvl == 0:
            for i in range(LEAF_FANOUT):
                p = ents[i]
                if p:
                    ent = blocks.get(p)
                    if ent is None:
                        blocks[p] = (ents[LEAF_FANOUT + i], [(oid, base + i)])
                    elif len(ent[1]) < 8:
                        ent[1].append((oid, base + i))
        else:
            span = LEAF_FANOUT << (9 * (lvl - 1))
            for i, c in enumerate(ents):
                if c:
                    stack.append((c, oid, base + i * span, lvl - 1))
    seen_pages.clear()
    rep = ScrubReport()
    for pid, owners in sorted(bad_pages.items()):
        rep.errors.append(
            {
                "page": pid,
                "problem": "block-map page checksum mismatch: the blocks it maps cannot be located or verified",
                "references": [_place(pool, o, lbn * bs) for o, lbn in owners],
            }
        )
    order = sorted(blocks)
    total = len(order)
    i = 0
    while i < total:
        j = i + 1
        while j < total and j - i < 256 and order[j] == order[i] + (j - i):
            j += 1
        data = pool.data.pread((j - i) * bs, order[i] * bs)
        data = data + bytes((j - i) * bs - len(data))
        mv = memoryview(data)
        for k in range(j - i):
            p = order[i + k]
            csum, owners = blocks[p]
            if block_checksum(mv[k * bs : (k + 1) * bs]) != csum:
                rep.errors.append({"pbn": p, "references": [_place(pool, o, lbn * bs) for o, lbn in owners]})
        rep.blocks_checked += j - i
        rep.bytes_checked += (j - i) * bs
        if progress:
            progress(rep.blocks_checked, total)
        i = j
    return rep
