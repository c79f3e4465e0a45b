"""Block-level deduplication primitives: reading block maps in bulk and
pointing blocks at an equal block already stored.

Contract: ``Sharing`` is the part of ``Pool`` the dedup layer calls.
``iter_blocks`` / ``iter_leaf_maps`` read an object's map a leaf at a time
under the lock (writers run in between). ``share_block``, ``share_blocks``
and ``share_run`` change a mapping only if the block still maps to the PBN
the scan saw and the two blocks are equal byte for byte, so no content
ever changes and different data is never merged (snapshots may be
deduplicated too). Each share is one intent-log record, durable as a
write is; the reference moves from the old block to the target.

A mixin of ``Pool`` (``engine/pool.py``).
"""

from __future__ import annotations

from array import array

from ..errors import InvalidArgument, NotFound
from . import blockmap, datapath
from .checksum import block_checksum
from .errors import BlockCorrupt
from .format import LEAF_FANOUT
from .records import ObjRec


class Sharing:
    """The dedup layer's way into a ``Pool``'s block maps."""

    # ---- reading block maps ------------------------------------------------------
    def iter_blocks(self, volume: str, name: str, snapshot: str | None = None, start_lbn: int = 0):
        """Yield (lbn, pbn, checksum) of every mapped block from ``start_lbn``
        on, a leaf at a time under the lock (writers run in between)."""
        for b, buf, nb in self.iter_leaf_maps(volume, name, snapshot, start_lbn):
            ents = memoryview(buf).cast("Q")  # the leaf's own layout (Page.ents)
            yield from [
                (b + i, ents[i], ents[LEAF_FANOUT + i])
                for i in range(max(0, start_lbn - b), LEAF_FANOUT)
                if ents[i] and b + i < nb
            ]

    def iter_leaf_maps(self, volume: str, name: str, snapshot: str | None = None, start_lbn: int = 0):
        """Yield (first_lbn, leaf, nblocks) for every present leaf from
        ``start_lbn`` on: ``leaf`` is a copy of the leaf page (LEAF_FANOUT
        little-endian u64 PBNs, 0 = hole, then their checksums), taken under
        the lock a leaf at a time; ``nblocks`` is the object's size in
        blocks then (slots past it are not data). ``iter_blocks`` in bulk,
        for callers that process a leaf with array code."""
        base = start_lbn
        while True:
            with self._lock:
                o = self._object(self._dataset(volume, snapshot), name)
                nb = self._nblocks(o)
                nxt = blockmap.first_leaf(self.cache, o.root, o.height, base, nb)
                if nxt is None:
                    return
                b, leaf = nxt
                buf = bytes(leaf.buf)
            yield b, buf, nb
            base = b + LEAF_FANOUT

    def read_pbn(self, pbn: int, checksum: int | None = None) -> bytes:
        """The bytes of physical block ``pbn`` (verified when ``checksum``)."""
        with self._lock:
            bs = self.block_size
            data = self.data.pread(bs, pbn * bs)
            data = data + bytes(bs - len(data))
            if checksum is not None and block_checksum(data) != checksum:
                raise BlockCorrupt(where="the pool", object="-", offset="-", pbn=pbn)
            return data

    # ---- sharing blocks ----------------------------------------------------------
    def share_block(
        self,
        volume: str,
        name: str,
        lbn: int,
        expected_pbn: int,
        target_pbn: int,
        snapshot: str | None = None,
    ) -> bool:
        """Point block ``lbn`` at ``target_pbn`` instead of ``expected_pbn``
        (deduplication). Done only if the block still maps to
        ``expected_pbn`` (a block rewritten since the scan read it is left
        alone) and the two blocks are equal byte for byte, so content never
        changes — which is why snapshots may be deduplicated too. Returns
        whether it shared."""
        return self.share_blocks(target_pbn, [(volume, name, snapshot, lbn, expected_pbn)])[0]

    def share_blocks(self, target_pbn: int, rows) -> list[bool]:
        """``share_block`` for many blocks with one target, under one lock
        hold: rows are (volume, object, snapshot or None, lbn, expected_pbn).
        The target is read once; each candidate is still checked against
        its current mapping and compared byte for byte. Returns, per row,
        whether it was shared."""
        out = []
        with self._lock:
            bs = self.block_size
            if not target_pbn or self.alloc.is_free(target_pbn):
                return [False] * len(rows)
            target = self.data.pread(bs, target_pbn * bs)
            if len(target) != bs:
                return [False] * len(rows)
            tcsum = block_checksum(target)
            objs: dict = {}
            for volume, name, snapshot, lbn, expected_pbn in rows:
                key = (volume, name, snapshot)
                o = objs.get(key)
                if o is None:
                    try:
                        o = objs[key] = self._object(self._dataset(volume, snapshot), name)
                    except NotFound:
                        o = objs[key] = False
                ok = bool(o) and expected_pbn not in (0, target_pbn)
                out.append(ok and self._share_one(o, lbn, expected_pbn, target_pbn, target, tcsum))
        self._checkpoint_if_due()
        return out

    def _share_one(
        self, o: ObjRec, lbn: int, expected_pbn: int, target_pbn: int, target: bytes, tcsum
    ) -> bool:
        """Map block ``lbn`` of ``o`` to ``target_pbn`` if it still maps to
        ``expected_pbn`` with the target's checksum and equal bytes."""
        leaf = blockmap.lookup_leaf(self.cache, o.root, o.height, lbn // LEAF_FANOUT)
        slot = lbn % LEAF_FANOUT
        if (
            leaf is None
            or leaf.ents[slot] != expected_pbn
            or leaf.ents[LEAF_FANOUT + slot] != tcsum
            or self.data.pread(self.block_size, expected_pbn * self.block_size) != target
        ):
            return False
        pbns, csums = array("Q", [target_pbn]), array("Q", [tcsum])
        self.log.append_write(self.epoch, o.id, lbn, pbns, csums)
        self.cache.incref_block(target_pbn)
        self._map_blocks(o, lbn, pbns, csums)  # drops the reference to expected_pbn
        return True

    def share_run(
        self, volume: str, name: str, snapshot: str | None, lbn: int, expected_pbns, target_pbns
    ) -> int:
        """Deduplicate a run of blocks at once: blocks lbn, lbn+1, ... that
        map to ``expected_pbns`` are pointed at ``target_pbns`` (same
        length, at most 512). Like ``share_blocks``, every block must still
        map to its expected PBN and equal its target byte for byte; the
        comparison reads both runs with one ``pread`` per contiguous piece.
        Shares the longest valid prefix of the run and returns its length
        (a scanner extends matches block by block, extent-style)."""
        n = len(expected_pbns)
        if n != len(target_pbns) or n > LEAF_FANOUT:
            raise InvalidArgument(detail="share_run takes equal-length runs of at most 512 blocks")
        if not n:
            return 0
        with self._lock:
            try:
                o = self._object(self._dataset(volume, snapshot), name)
            except NotFound:
                return 0
            if lbn < 0 or lbn + n > self._nblocks(o):
                return 0
            cur, csums = self._mapping(o, lbn, n)
            k = self._shareable_prefix(cur, array("Q", expected_pbns), array("Q", target_pbns))
            good = self._equal_run(cur, array("Q", target_pbns[:k]), csums) if k else 0
            if not good:
                return 0
            tgt, cs = array("Q", target_pbns[:good]), csums[:good]
            self.log.append_write(self.epoch, o.id, lbn, tgt, cs)
            self.cache.incref_blocks(tgt)
            self._map_blocks(o, lbn, tgt, cs)  # drops the references to the expected PBNs
        self._checkpoint_if_due()
        return good

    def _shareable_prefix(self, cur: array, expected: array, target: array) -> int:
        """How many leading blocks may be pointed at their target: each
        still maps its expected PBN, the target is another block, and the
        target is allocated. The checks run on whole arrays; the allocator
        is asked once per contiguous run of targets."""
        import numpy as np

        c = np.frombuffer(cur, dtype=np.uint64)[: len(target)]
        e = np.frombuffer(expected, dtype=np.uint64)
        t = np.frombuffer(target, dtype=np.uint64)
        bad = np.flatnonzero((c == 0) | (c != e) | (t == 0) | (c == t))
        k = int(bad[0]) if len(bad) else len(t)
        alloc = self.alloc
        for i, j, p in datapath.contiguous_runs(target, 0, k):
            if alloc.any_free(p, j - i):
                return i + next(x for x in range(j - i) if alloc.is_free(p + x))
        return k

    def _mapping(self, o: ObjRec, lbn: int, n: int) -> tuple[array, array]:
        """(PBNs, checksums) that blocks [lbn, lbn+n) of ``o`` map to."""
        cur = array("Q", bytes(8 * n))
        csums = array("Q", bytes(8 * n))
        for base, leaf, _ in blockmap.iter_leaves(self.cache, o.root, o.height, lbn, lbn + n):
            s, e = max(lbn, base) - base, min(lbn + n, base + LEAF_FANOUT) - base
            cur[base + s - lbn : base + e - lbn] = array("Q", leaf.ents[s:e].tolist())
            csums[base + s - lbn : base + e - lbn] = array(
                "Q", leaf.ents[LEAF_FANOUT + s : LEAF_FANOUT + e].tolist()
            )
        return cur, csums

    def _equal_run(self, cur, tgt, csums) -> int:
        """How many leading blocks of runs ``cur`` and ``tgt`` are equal byte
        for byte and match ``csums`` (the checksums stored for ``cur``, which
        must describe the shared bytes too)."""
        bs = self.block_size
        k = len(tgt)
        a = b = None
        if k == LEAF_FANOUT:  # a whole leaf, what a scan of copied data asks for: reuse two buffers
            bufs = self.__dict__.get("_share_bufs")
            if bufs is None:
                bufs = self._share_bufs = (bytearray(k * bs), bytearray(k * bs))
            a, b = bufs  # only under the pool lock, which share_run holds
        a, b = datapath.read_runs(self.data, cur, k, bs, a), datapath.read_runs(self.data, tgt, k, bs, b)
        good = datapath.equal_prefix(a, b, bs)
        bad = datapath.first_mismatch(memoryview(b)[: good * bs], bs, csums)
        return good if bad < 0 else bad
