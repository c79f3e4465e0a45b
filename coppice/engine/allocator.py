"""Free-space allocator for data blocks.

Contract: owns the set of free PBNs: the free extents below ``next_pbn``
plus everything at or above it (the data file is sparse and grows on
demand). ``allocate`` prefers the lowest free extents and hands out runs as
long as possible, so a sequential write lands contiguously and reads back
with one ``pread``. Blocks freed by a consistency point come back through
``release`` only after that consistency point has committed: a block the
committed metadata still references is never handed out twice.

Not thread-safe; the pool's lock covers it. Memory is one list entry per
free extent.
"""

from __future__ import annotations

import bisect

# release_sorted: up to this many runs one release() each, more merged as arrays.
BULK_RUNS = 64


class Allocator:
    def __init__(self, extents: list[tuple[int, int]], next_pbn: int):
        # Parallel sorted lists: starts[i], counts[i] of free extents.
        self.starts: list[int] = []
        self.counts: list[int] = []
        for s, c in sorted(extents):
            if c > 0:
                self._append_merge(s, c)
        self.next_pbn = max(1, next_pbn)  # PBN 0 means "hole"
        self.free_below = sum(self.counts)

    def _append_merge(self, s: int, c: int) -> None:
        if self.starts and self.starts[-1] + self.counts[-1] == s:
            self.counts[-1] += c
        else:
            self.starts.append(s)
            self.counts.append(c)

    @property
    def used(self) -> int:
        """Blocks allocated (PBN 0 excluded)."""
        return self.next_pbn - 1 - self.free_below

    def allocate(self, n: int) -> list[tuple[int, int]]:
        """n blocks as a list of (start, count) runs. Free extents are
        consumed from the highest one down (O(1) list pops, where taking the
        lowest would shift the whole list), each from its start, so a run
        stays ascending and contiguous."""
        runs = []
        starts, counts = self.starts, self.counts
        while n and starts:
            s, c = starts[-1], counts[-1]
            take = min(c, n)
            runs.append((s, take))
            if take == c:
                starts.pop()
                counts.pop()
            else:
                starts[-1] = s + take
                counts[-1] = c - take
            self.free_below -= take
            n -= take
        if n:
            runs.append((self.next_pbn, n))
            self.next_pbn += n
        return runs

    def claim(self, pbn: int, n: int = 1) -> None:
        """Mark [pbn, pbn+n) allocated (intent-log replay re-takes the exact
        blocks the log names). They must be free."""
        end = pbn + n
        if pbn >= self.next_pbn:
            if pbn > self.next_pbn:
                self.release(self.next_pbn, pbn - self.next_pbn)
            self.next_pbn = end
            return
        i = bisect.bisect_right(self.starts, pbn) - 1
        if i < 0 or self.starts[i] + self.counts[i] < end:
            # Partly above next_pbn is fine: claim the part below first.
            if i >= 0 and self.starts[i] + self.counts[i] == self.next_pbn and end > self.next_pbn:
                tail = end - self.next_pbn
                self.claim(pbn, n - tail)
                self.next_pbn = end
                return
            raise ValueError(f"PBNs {pbn}..{end - 1} are not free")
        s, c = self.starts[i], self.counts[i]
        del self.starts[i]
        del self.counts[i]
        pieces = []
        if pbn > s:
            pieces.append((s, pbn - s))
        if end < s + c:
            pieces.append((end, s + c - end))
        for j, (ps, pc) in enumerate(pieces):
            self.starts.insert(i + j, ps)
            self.counts.insert(i + j, pc)
        self.free_below -= n

    def release(self, pbn: int, n: int = 1) -> None:
        """Return [pbn, pbn+n) to the free set, merging neighbours."""
        if n <= 0:
            return
        end = pbn + n
        if end == self.next_pbn:
            # Shrink the high-water mark instead of keeping a tail extent.
            self.next_pbn = pbn
            while self.starts and self.starts[-1] + self.counts[-1] == self.next_pbn:
                self.next_pbn = self.starts[-1]
                self.free_below -= self.counts[-1]
                self.starts.pop()
                self.counts.pop()
            return
        i = bisect.bisect_left(self.starts, pbn)
        merge_prev = i > 0 and self.starts[i - 1] + self.counts[i - 1] == pbn
        merge_next = i < len(self.starts) and self.starts[i] == end
        if merge_prev and merge_next:
            self.counts[i - 1] += n + self.counts[i]
            del self.starts[i]
            del self.counts[i]
        elif merge_prev:
            self.counts[i - 1] += n
        elif merge_next:
            self.starts[i] = pbn
            self.counts[i] += n
        else:
            self.starts.insert(i, pbn)
            self.counts.insert(i, n)
        self.free_below += n

    def release_many(self, pbns) -> None:
        """Release single blocks, coalescing runs first."""
        run_start = run_len = None
        for p in sorted(pbns):
            if run_start is not None and p == run_start + run_len:
                run_len += 1
                continue
            if run_start is not None:
                self.release(run_start, run_len)
            run_start, run_len = p, 1
        if run_start is not None:
            self.release(run_start, run_len)

    def release_sorted(self, pbns) -> None:
        """Release the blocks of ``pbns``, an ascending numpy array of
        distinct allocated PBNs (what a consistency point frees). A few runs
        go through ``release``; many (a sustained random overwrite frees
        one scattered block per request) are merged with the free extents
        in one pass over arrays, where one ``release`` each would shift the
        extent lists once per block."""
        import numpy as np

        if not len(pbns):
            return
        cut = np.flatnonzero(np.diff(pbns) != 1) + 1
        rstarts = pbns[np.concatenate(([0], cut))]
        rcounts = np.diff(np.concatenate(([0], cut, [len(pbns)])))
        if len(rstarts) <= BULK_RUNS:
            for s, c in zip(rstarts.tolist(), rcounts.tolist(), strict=True):
                self.release(s, c)
            return
        if int(pbns[-1]) >= self.next_pbn or int(pbns[0]) < 1:
            raise ValueError(f"PBNs {int(pbns[0])}..{int(pbns[-1])} are not all allocated")
        starts = np.concatenate((np.asarray(self.starts, dtype=np.int64), rstarts))
        counts = np.concatenate((np.asarray(self.counts, dtype=np.int64), rcounts))
        order = np.argsort(starts, kind="stable")
        starts, counts = starts[order], counts[order]
        ends = starts + counts
        if (starts[1:] < ends[:-1]).any():
            i = int(np.argmax(starts[1:] < ends[:-1]))
            raise ValueError(f"PBNs from {int(starts[i + 1])} are free already")
        # Merge extents that touch: a new extent starts where none ended.
        head = np.concatenate(([True], starts[1:] != ends[:-1]))
        first = np.flatnonzero(head)
        mstarts = starts[first]
        mcounts = np.add.reduceat(counts, first)
        self.starts = mstarts.tolist()
        self.counts = mcounts.tolist()
        self.free_below = int(mcounts.sum())
        # A free extent ending at the high-water mark lowers it instead.
        if self.starts and self.starts[-1] + self.counts[-1] == self.next_pbn:
            self.next_pbn = self.starts.pop()
            self.free_below -= self.counts.pop()

    def any_free(self, start: int, n: int) -> bool:
        """Whether any of PBNs [start, start+n) is free (one search: the
        extents are disjoint and sorted, so the last one starting before
        the range's end is the only one that can reach into it)."""
        end = start + n
        if end > self.next_pbn:
            return True
        i = bisect.bisect_right(self.starts, end - 1) - 1
        return i >= 0 and self.starts[i] + self.counts[i] > start

    def is_free(self, pbn: int) -> bool:
        if pbn >= self.next_pbn:
            return True
        i = bisect.bisect_right(self.starts, pbn) - 1
        return i >= 0 and pbn < self.starts[i] + self.counts[i]

    def extents(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.counts, strict=False))
