"""A pool: the copy-on-write block store in one directory.

Contract (what callers may rely on):

* **Volumes, snapshots, clones.** A volume holds named objects (LUN data and
  small files). ``create_snapshot`` and ``clone_volume`` are O(objects): they
  copy the object rows and add one reference to each root page; no block or
  page is copied. Writes to a volume never change what its snapshots or
  clones read: every shared page is copied on write (``blockmap``).
* **Exact sharing.** Pages and blocks are reference counted; deleting a
  volume, snapshot or clone frees exactly what nothing else references, and
  ``fsck`` proves it.
* **Durability.** ``write`` returns once the data and its intent-log record
  are in the kernel (a ``kill -9`` loses nothing acknowledged); after
  ``flush`` (or a write with ``fua``) they survive power loss too. Metadata
  commits in consistency points, one SQLite transaction each. Every
  management operation (create, snapshot, clone, delete, resize, ...) is
  atomic and durable when it returns, and a refused one changes nothing.
* **Integrity.** Every block's checksum is verified on read; a mismatch
  raises ``BlockCorrupt`` naming the volume, object and offset, never returns
  wrong bytes.
* **Bounded memory.** Block-map pages go through a fixed-size cache.

Threading: every public method takes the pool's lock, so a pool may be used
from many threads; a process holds a pool exclusively (``pool.lock``).

Where each part lives: this module opens, commits and closes a pool and
holds its data path (read, write, trim, extents, flush); the management
calls are its mixins, each with its own contract: ``engine/namespace.py``
(volumes, objects, kv records), ``engine/snapshots.py`` (snapshots,
clones, split), ``engine/accounting.py`` (space figures),
``engine/sharing.py`` (dedup primitives), ``engine/verify.py`` (fsck,
scrub, dump). Errors are in ``engine/errors.py``, records and the naming
rule in ``engine/records.py``, the pool directory's files in
``engine/pooldir.py``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from array import array
from contextlib import contextmanager

from ..errors import CoppiceError, NoSpace
from . import blockmap, consistency_point, datapath, pooldir
from .accounting import Accounting
from .allocator import Allocator
from .checksum import block_checksum, zero_checksum
from .errors import BlockCorrupt, OutOfRange, PoolDamaged, PoolFull, PoolInUse, PoolNotFound
from .fileio import OS_FILES, Files
from .format import DEFAULT_BLOCK_SIZE, FANOUT_BITS, FANOUT_MASK, LEAF_FANOUT, LOG_WRITE
from .intent_log import IntentLog
from .namespace import Namespace
from .page_cache import PageCache
from .records import Dataset, ObjRec
from .records import SpaceInfo as SpaceInfo  # re-exported: backend/rbd.py imports it from here
from .sharing import Sharing
from .snapshots import Snapshots
from .space import FileSystemFull, SpaceGuard, is_full
from .verify import Verification

DEFAULT_CACHE_BYTES = 64 << 20
LOG_RECORD_BYTES = 64  # an intent-log record's header and trailer, rounded up
LOG_LIMIT_BYTES = 64 << 20
# The data file is preallocated ahead of the allocator, by as much as it
# holds already (at least 1 MiB, at most this): writing into space the file
# system holds runs several times faster than growing the file as it goes.
PREALLOC_MAX_BYTES = 64 << 20
PREALLOC_KEEP_FREE = 16 << 20
# What a consistency point may take of the file system (see _cp_need).
CP_FIXED_BYTES = 128 << 10
CP_PAGE_BYTES = 3 * 2 * 4096
CP_ROW_BYTES = 64


class Pool(Namespace, Snapshots, Accounting, Sharing, Verification):
    """One open pool. Its lifecycle, consistency points and data path are
    here; volumes and objects (``Namespace``), snapshots and clones
    (``Snapshots``), space figures (``Accounting``), dedup primitives
    (``Sharing``) and checks (``Verification``) are its mixins."""

    # ---- lifecycle --------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str,
        block_size: int = DEFAULT_BLOCK_SIZE,
        capacity: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        files: Files = OS_FILES,
    ) -> Pool:
        """Create a pool in directory ``path`` (created if missing, must not
        hold a pool). ``capacity`` in bytes caps the data it may hold;
        None: the file system's free space is the limit."""
        path = pooldir.make(path, block_size, capacity)
        return cls.open(path, cache_bytes=cache_bytes, files=files)

    @classmethod
    def exists(cls, path: str) -> bool:
        return os.path.exists(os.path.join(path, "pool.db"))

    @classmethod
    def open(
        cls,
        path: str,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        holder: str | None = None,
        files: Files = OS_FILES,
    ) -> Pool:
        """Open the pool at ``path`` exclusively, replaying its intent log.
        ``files`` opens the data file and the intent log (tests pass one
        that simulates power loss)."""
        path = os.path.abspath(path)
        if not cls.exists(path):
            raise PoolNotFound(path=path)
        return cls(path, cache_bytes, holder, files)

    def __init__(self, path: str, cache_bytes: int, holder: str | None, files: Files = OS_FILES):
        self.path = path
        pooldir.owner_only(path)
        self._lock = threading.RLock()
        self._lockfd = os.open(os.path.join(path, "pool.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                who = os.pread(self._lockfd, 4096, 0).decode(errors="replace").strip() or "another process"
            finally:
                os.close(self._lockfd)
            raise PoolInUse(path=path, holder=who) from None
        os.ftruncate(self._lockfd, 0)
        os.pwrite(self._lockfd, (holder or f"process {os.getpid()}").encode(), 0)
        self.db = self.data = self.log = None
        try:
            self._open(cache_bytes, files)
        except BaseException as e:
            for f in (self.log, self.data, self.db):
                if f is not None:
                    try:
                        f.close()
                    except Exception:
                        pass
            os.close(self._lockfd)
            damage = pooldir.damage(e)
            if damage is None:
                raise
            raise PoolDamaged(path=path, detail=damage) from e

    def _open(self, cache_bytes: int, files: Files) -> None:
        path = self.path
        self.db = sqlite3.connect(
            os.path.join(path, "pool.db"), isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.block_size = int(self._pool_value("block_size"))
        self.uuid = self._pool_value("uuid")
        self.data = files.open(os.path.join(path, "data", "blocks"), create=False)
        self.log = IntentLog(os.path.join(path, "intent.log"), files)
        self._zero_csum = zero_checksum(self.block_size)
        self._cache_bytes = cache_bytes
        # Inline deduplication, installed by the dedup layer: an object with
        # enabled(dataset_id) -> bool, lookup(checksum) -> PBN or 0 and
        # learn([(checksum, PBN)]). The engine verifies every candidate byte
        # for byte before sharing it.
        self.inline_dedup = None
        self._txn_depth = 0
        # Data writes bump _data_gen; _synced_gen is the gen the last
        # completed fdatasync of the data file covered. Syncs may run without
        # the lock (flush, FUA, the pre-sync before a consistency point), so
        # a write racing a sync leaves _data_gen ahead and is synced next time.
        self._data_gen = 0
        self._synced_gen = 0
        # Bytes of data file the file system holds already: writing below
        # this end reuses space, above it takes more (see _admit).
        self._data_end = -(-self.data.size() // self.block_size)
        self._prealloc = True
        self.headroom = SpaceGuard(path)
        # A consistency point failed for lack of space: the next write
        # retries it first and is refused (ENOSPC) if it still cannot commit.
        self._cp_blocked = False
        self._txn_log_mark = 0
        self.closed = False
        self._reload()
        self._replay()

    def _pool_value(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM pool WHERE key=?", (key,)).fetchone()
        if row is None:
            raise PoolDamaged(path=self.path, detail=f"pool.db has no {key!r} record")
        return row[0]

    def _reload(self) -> None:
        """(Re)build all in-memory state from the committed metadata."""
        db = self.db
        self.epoch = int(self._pool_value("epoch"))
        self.capacity = int(self._pool_value("capacity")) // self.block_size or None
        self.alloc = Allocator(
            db.execute("SELECT start, count FROM free_extents").fetchall(), int(self._pool_value("next_pbn"))
        )
        self.cache = PageCache(db, self._cache_bytes, int(self._pool_value("next_page_id")))
        self.datasets: dict[int, Dataset] = {}
        # (kind, volume id for a snapshot, name) -> dataset: O(1) lookups by name.
        self._dsidx: dict[tuple, Dataset] = {}
        self._snap_ids: dict[int, set[int]] = {}  # volume id -> its snapshots' ids
        self._clone_ids: dict[int, set[int]] = {}  # snapshot id -> ids of the volumes cloned from it
        for row in db.execute("SELECT id, kind, name, volume_id, origin_id, created, meta FROM datasets"):
            d = self.datasets[row[0]] = Dataset(*row[:6], meta=row[6])  # decoded on first use
            self._dsidx[self._dkey(d)] = d
            if d.kind == "snapshot":
                self._snap_ids.setdefault(d.volume_id, set()).add(d.id)
            elif d.origin_id is not None:
                self._clone_ids.setdefault(d.origin_id, set()).add(d.id)
        self.objects: dict[int, ObjRec] = {}
        # dataset id -> {object name -> record}: listing a volume's objects
        # costs its own objects, not the pool's.
        self._by_ds: dict[int, dict[str, ObjRec]] = {}
        for row in db.execute("SELECT id, dataset_id, name, kind, size, root, height, meta FROM objects"):
            o = self.objects[row[0]] = ObjRec(*row[:7], meta=row[7])  # decoded on first use
            self._by_ds.setdefault(o.dataset_id, {})[o.name] = o
        self._dirty_objs: dict[int, ObjRec] = {}

    def _replay(self, checkpoint: bool = True) -> None:
        """Apply the intent log's records of the committed epoch (on open,
        and after a failed commit rebuilt memory from pool.db), then
        checkpoint if asked. A record whose block does not carry the logged
        checksum was never flushed (the power went before the data); it is
        dropped. A consistency point that fails for lack of space leaves
        the records in the log and the pool open: it is retried later."""
        applied = 0
        with self._lock:
            bs = self.block_size
            for kind, oid, lbn, count, pbns, csums in self.log.records(self.epoch):
                o = self.objects.get(oid)
                if o is None:
                    continue
                if kind == LOG_WRITE:
                    for i in range(count):
                        p = pbns[i]
                        if p:
                            got = self.data.pread(bs, p * bs)
                            if len(got) != bs or block_checksum(got) != csums[i]:
                                pbns[i] = 0
                                csums[i] = 1  # marker: leave this block's mapping alone
                                continue
                            if self.alloc.is_free(p):
                                self.alloc.claim(p, 1)  # a fresh block of this epoch
                            else:
                                self.cache.incref_block(p)  # a deduplicated share
                    self._map_blocks(o, lbn, pbns, csums, skip_marked=True)
                else:
                    blockmap.clear_range(self.cache, o, lbn, lbn + count)
                    self._dirty_objs[o.id] = o
                applied += 1
            self.replayed_records = applied
            if applied:
                self._data_gen += 1
            if checkpoint and (applied or self.log.size):
                try:
                    self._checkpoint(force=True)
                except NoSpace:
                    self._cp_blocked = True

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                # If this fails (a full file system), the intent log keeps
                # every acknowledged write for the next open to replay.
                self._checkpoint()
            finally:
                self.closed = True
                self.log.close()
                self.data.close()
                self.db.close()
                os.close(self._lockfd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- consistency points ------------------------------------------------
    def _has_uncommitted(self) -> bool:
        c = self.cache
        return bool(
            c.dirty or c.freed or c.page_delta or c.block_changes() or self._dirty_objs or self.log.size
        )

    def checkpoint(self) -> None:
        """Commit everything written so far as one consistency point."""
        with self._lock:
            self._checkpoint()

    def _checkpoint(self, force: bool = False) -> None:
        if self._txn_depth:
            return  # the enclosing management transaction commits it
        if not force and not self._has_uncommitted():
            return
        consistency_point.commit(self)

    def _sync_data(self) -> None:
        # Data before the metadata that points at it.
        gen = self._data_gen
        if gen != self._synced_gen:
            self.data.sync()
            if gen > self._synced_gen:
                self._synced_gen = gen

    def _cp_due(self) -> bool:
        return self.cache.over_dirty_limit() or self.log.size > LOG_LIMIT_BYTES

    def _maybe_checkpoint(self) -> None:
        if self._cp_due():
            self._checkpoint()

    def _checkpoint_if_due(self) -> None:
        """Called by the data path *after* releasing the lock: the data
        file's fdatasync, the bulk of a consistency point's cost, runs
        without the lock so other writers and readers go on meanwhile; the
        consistency point itself then has little left to sync."""
        if self._cp_due():
            self._sync_data()
            with self._lock:
                try:
                    self._maybe_checkpoint()
                except NoSpace:
                    # The write that got here is done and in the intent log;
                    # the next one retries the consistency point first.
                    self._cp_blocked = True

    def _cp_need(self, extra_pages: int) -> int:
        """Bytes of file system the next consistency point may take in
        pool.db and its WAL (a leaf page costs three SQLite pages, written
        to the WAL and later to the database), with ``extra_pages`` more
        dirty pages than now."""
        c = self.cache
        pages = len(c.dirty) + len(c.freed) + len(c.page_delta) // 8 + extra_pages
        rows = c.block_changes() + len(self._dirty_objs) + len(self.alloc.starts)
        return CP_FIXED_BYTES + pages * CP_PAGE_BYTES + rows * CP_ROW_BYTES

    def _admit(self, consume: int, extra_pages: int, rows: int) -> None:
        """Refuse (ENOSPC, nothing changed) a write that would take
        ``consume`` bytes of file system (and add ``extra_pages`` dirty
        pages and ``rows`` refcount rows) unless the next consistency point
        keeps room to commit. A blocked or space-starved consistency point
        is tried first: committing shrinks what the next one needs."""
        if not self._cp_blocked and (
            self.headroom.admit_fast(consume + extra_pages * CP_PAGE_BYTES + rows * CP_ROW_BYTES)
            or self.headroom.admit(consume, self._cp_need(extra_pages))
        ):
            return
        if not self._txn_depth:
            self._checkpoint()
        self.headroom.check(consume, self._cp_need(extra_pages))

    @contextmanager
    def transaction(self):
        """Group management operations into one atomic, durable commit.
        An exception inside rolls all of them back."""
        with self._lock:
            self._check_open()
            if self._txn_depth == 0:
                self._checkpoint()
                if not self.headroom.admit(0, self._cp_need(16)):
                    # Nearly full: give management operations (deleting a
                    # snapshot to make room, above all) the reserve's room.
                    self.headroom.spend()
                self._txn_log_mark = self.log.size
                self.db.execute("BEGIN IMMEDIATE")
            self._txn_depth += 1
            try:
                yield self
            except BaseException as e:
                self._txn_depth -= 1
                if self._txn_depth == 0:
                    consistency_point.abort(self, self._txn_log_mark)
                    raise consistency_point.as_no_space(self, e) from e
                raise
            self._txn_depth -= 1
            if self._txn_depth == 0:
                consistency_point.commit(self, begun=True, log_mark=self._txn_log_mark)

    def _check_open(self):
        if self.closed:
            raise CoppiceError(detail=f"pool {self.path} is closed")

    # ---- data path -------------------------------------------------------------
    def _read(self, o: ObjRec, offset: int, length: int):
        if offset < 0 or length < 0 or offset + length > o.size:
            raise OutOfRange(what="read", offset=offset, length=length, name=o.name, size=o.size)
        if length == 0:
            return b""
        bs = self.block_size
        first = offset // bs
        last = (offset + length - 1) // bs
        out = self._read_blocks(o, first, last - first + 1)
        skip = offset - first * bs
        if skip or len(out) != length:
            return memoryview(out)[skip : skip + length]
        return out

    def _read_blocks(self, o: ObjRec, lbn: int, n: int):
        """The bytes of blocks [lbn, lbn+n), each verified (a bytearray, or
        bytes for one block: what ``pread`` returns needs no copy)."""
        bs = self.block_size
        if n == 1:
            # The common 4 KiB read: one leaf lookup, one pread, one checksum.
            leaf = blockmap.lookup_leaf(self.cache, o.root, o.height, lbn >> FANOUT_BITS)
            if leaf is None:
                return bytes(bs)
            slot = lbn & FANOUT_MASK
            p = leaf.ents[slot]
            if not p:
                return bytes(bs)
            data = datapath.read_block(self.data, p, leaf.ents[LEAF_FANOUT + slot], bs)
            if data is None:
                self._corrupt(o, lbn, p)
            return data
        out = bytearray(n * bs)
        omv = memoryview(out)
        end = lbn + n
        for base, leaf, _ in blockmap.iter_leaves(self.cache, o.root, o.height, lbn, end):
            s = max(lbn, base) - base
            e = min(end, base + LEAF_FANOUT) - base
            bad = datapath.read_leaf_range(
                self.data, omv, (base + s - lbn) * bs, leaf.ents, s, e, LEAF_FANOUT, bs
            )
            if bad is not None:
                self._corrupt(o, base + bad[0], bad[1])
        return out

    def _corrupt(self, o: ObjRec, lbn: int, pbn: int):
        ds = self.datasets.get(o.dataset_id)
        raise BlockCorrupt(
            where=self._ds_label(ds) if ds else "?", object=o.name, offset=lbn * self.block_size, pbn=pbn
        )

    def _write(self, o: ObjRec, offset: int, data: memoryview) -> None:
        length = len(data)
        if offset < 0 or offset + length > o.size:
            raise OutOfRange(what="write", offset=offset, length=length, name=o.name, size=o.size)
        if length == 0:
            return
        bs = self.block_size
        first = offset // bs
        end = offset + length
        last = (end - 1) // bs
        if offset % bs or end % bs:
            # Unaligned head or tail: read-modify-write those blocks.
            buf = bytearray((last - first + 1) * bs)
            if offset % bs or (end % bs and last == first):
                buf[0:bs] = self._read_blocks(o, first, 1)
            if end % bs and last != first:
                buf[-bs:] = self._read_blocks(o, last, 1)
            skip = offset - first * bs
            buf[skip : skip + length] = data
            data = memoryview(buf)
        self._write_blocks(o, first, data)

    def _allocate_written(self, o: ObjRec, m: int, n: int, records: int) -> tuple[list, int]:
        """Admit and allocate ``m`` new blocks for a write of ``n`` blocks in
        ``records`` intent-log records: (allocator runs, highest PBN + 1).
        Refuses (PoolFull, or ENOSPC through ``_admit``) having changed
        nothing; grows the data file ahead when it can."""
        bs = self.block_size
        if m and self.capacity is not None and self.alloc.used + m > self.capacity:
            # Overwrites free their old blocks only at a consistency point:
            # commit one to get them back before refusing.
            self._recycle_freed()
            if self.alloc.used + m > self.capacity:
                raise PoolFull(path=self.path, needed=m, free=max(0, self.capacity - self.alloc.used))
        alloc = self.alloc
        grow = alloc.next_pbn + max(0, m - alloc.free_below) - self._data_end
        if grow > 0 and self.headroom.near_full() and self.cache.block_changes():
            # Near full, recycle what overwrites freed before growing the
            # data file into the last free space.
            self._recycle_freed()
            alloc = self.alloc  # a failed consistency point rebuilt it
            grow = alloc.next_pbn + max(0, m - alloc.free_below) - self._data_end
        self._admit(
            max(0, grow) * bs + records * LOG_RECORD_BYTES + 16 * n,
            records * (2 + o.height) + n // LEAF_FANOUT,
            n,
        )
        if not m:
            return [], 0
        runs = alloc.allocate(m)
        top = runs[0][0] + runs[0][1] if len(runs) == 1 else max(s + c for s, c in runs)
        if top > self._data_end:
            self._preallocate(top)
        return runs, top

    def _write_blocks(self, o: ObjRec, lbn: int, mv: memoryview) -> None:
        """Redirect-on-write of whole blocks: new PBNs, one pwrite per
        contiguous run, one intent-log record, then the map update. A write
        that fails (no space) leaves everything as it was."""
        bs = self.block_size
        n = len(mv) // bs
        csums = datapath.block_checksums(mv, bs)
        zeros = datapath.zero_slots(mv, bs, csums, self._zero_csum)
        shared = self._inline_dedup_candidates(o, mv, csums, zeros) if self.inline_dedup is not None else None
        skip = sorted(set(zeros).union(shared)) if shared else zeros
        m = n - len(skip)
        runs, top = self._allocate_written(o, m, n, 1)
        if not skip and len(runs) == 1:
            # The common case: every block new, one contiguous run.
            start = runs[0][0]
            pbns = array("Q", range(start, start + n))
        else:
            pbns = datapath.spread(runs, n, skip)
            if shared:
                for i, p in shared.items():
                    pbns[i] = p
            for i in zeros:
                csums[i] = 0
            start = 0
        try:
            if start:
                self.data.pwrite_all(mv, start * bs)
            elif m:
                datapath.write_runs(self.data, mv, pbns, bs)
            self.log.append_write(self.epoch, o.id, lbn, pbns, csums)
        except OSError as e:
            self._unallocate(runs, e, m * bs)
            raise
        if m:
            self._data_gen += 1
            if top > self._data_end:
                self._data_end = top
        if shared:
            for p in shared.values():
                self.cache.incref_block(p)
        hook = self.inline_dedup
        if hook is not None and m:
            hook.learn([(csums[i], pbns[i]) for i in range(n) if pbns[i]])
        self._map_blocks(o, lbn, pbns, csums)

    def _unallocate(self, runs, e: OSError, nbytes: int) -> None:
        """A write failed after allocating ``runs``: give them back (nothing
        points at them yet); a full file system raises FileSystemFull."""
        for s, c in runs:
            self.alloc.release(s, c)
        if is_full(e):
            raise FileSystemFull(path=self.path, needed=nbytes, free=0) from None

    def _write_many(self, o: ObjRec, items) -> None:
        """Several writes to ``o``, applied in order as if one after the
        other, with one allocation, one pwrite of all their data and one
        intent-log append of all their records: what a client with many
        4 KiB writes in flight sends at once (NBD at QD32). The batch is all
        or nothing: if it raises, none of it was written.

        Only the plain case is batched (every write block-aligned and in
        range, no all-zero block, no inline dedup); anything else goes
        through ``_write`` one at a time, which is the reference (and stops
        at the first write that fails, the ones before it done, as separate
        writes would be)."""
        bs = self.block_size
        size = o.size
        plain = self.inline_dedup is None and not any(
            off % bs or len(mv) % bs or off < 0 or off + len(mv) > size or not len(mv) for off, mv in items
        )
        sums = [datapath.block_checksums(mv, bs) for _, mv in items] if plain else []
        if not plain or any(self._zero_csum in c for c in sums):
            for off, mv in items:
                self._write(o, off, mv)
            return
        n = sum(len(c) for c in sums)
        runs, top = self._allocate_written(o, n, n, len(items))
        pbns = datapath.spread(runs, n, ())
        data = b"".join(mv for _, mv in items)
        records = []
        at = 0
        for (off, _), cs in zip(items, sums, strict=True):
            m = len(cs)
            records.append((o.id, off // bs, pbns[at : at + m], cs))
            at += m
        try:
            if len(runs) == 1:
                self.data.pwrite_all(data, runs[0][0] * bs)
            else:
                datapath.write_runs(self.data, memoryview(data), pbns, bs)
            self.log.append_writes(self.epoch, records)
        except OSError as e:
            self._unallocate(runs, e, n * bs)
            raise
        self._data_gen += 1
        if top > self._data_end:
            self._data_end = top
        for _, lbn, ps, cs in records:
            self._map_blocks(o, lbn, ps, cs)

    def _recycle_freed(self) -> None:
        """Commit a consistency point (outside a management transaction)
        so the blocks overwrites freed become allocatable again."""
        if self._txn_depth or not self.cache.block_changes():
            return
        try:
            self._checkpoint()
        except NoSpace:
            self._cp_blocked = True

    def _preallocate(self, top: int) -> None:
        """Make the file system hold the data file up to past PBN ``top``
        (see PREALLOC_MAX_BYTES). Only for speed: it never spends the
        space reserve, and a file system that cannot do it is left alone."""
        if top <= self._data_end or not self._prealloc:
            return
        bs = self.block_size
        chunk = min(max(self._data_end, (1 << 20) // bs), PREALLOC_MAX_BYTES // bs)
        end = top + chunk
        extra = (end - self._data_end) * bs
        # Space preallocated is space a consistency point cannot use: only
        # while plenty stays free, or a nearly full file system would refuse
        # writes while the data file still had room.
        if not self.headroom.admit(extra, self._cp_need(0) + PREALLOC_KEEP_FREE):
            return
        preallocate = getattr(self.data, "preallocate", None)
        if preallocate is None:
            self._prealloc = False
            return
        try:
            preallocate(self._data_end * bs, extra)
        except OSError as e:
            if not is_full(e):
                self._prealloc = False  # not supported here
            return
        self._data_end = end

    def _inline_dedup_candidates(self, o: ObjRec, mv, csums, zeros) -> dict[int, int]:
        """Inline dedup: {index: PBN} of the blocks equal (byte for byte) to
        one already stored; they are mapped to it and never written."""
        hook = self.inline_dedup
        if hook is None or not hook.enabled(o.dataset_id):
            return {}
        bs = self.block_size
        zset = set(zeros)
        out = {}
        for i in range(len(csums)):
            if i in zset:
                continue
            cand = hook.lookup(csums[i])
            if (
                cand
                and not self.alloc.is_free(cand)
                and self.data.pread(bs, cand * bs) == bytes(mv[i * bs : (i + 1) * bs])
            ):
                out[i] = cand
        return out

    def _map_blocks(self, o: ObjRec, lbn: int, pbns, csums, skip_marked: bool = False) -> None:
        """Point blocks [lbn, lbn+len(pbns)) at ``pbns``; each block they
        pointed at before loses a reference (``cache.unref``)."""
        cache = self.cache
        unref = cache.unref
        n = len(pbns)
        if n == 1 and not skip_marked:
            # One block (a 4 KiB write): no slicing.
            slot = lbn & FANOUT_MASK
            ents = blockmap.mutable_leaf(cache, o, lbn >> FANOUT_BITS).ents
            old = ents[slot]
            if old:
                unref.append(old)
            ents[slot] = pbns[0]
            ents[LEAF_FANOUT + slot] = csums[0]
            self._dirty_objs[o.id] = o
            return
        i = 0
        while i < n:
            cur = lbn + i
            leaf_no = cur // LEAF_FANOUT
            slot = cur % LEAF_FANOUT
            cnt = min(n - i, LEAF_FANOUT - slot)
            leaf = blockmap.mutable_leaf(cache, o, leaf_no)
            ents = leaf.ents
            if skip_marked:
                for k in range(cnt):
                    p = pbns[i + k]
                    c = csums[i + k]
                    if not p and c == 1:
                        continue  # replay: a record whose block never reached the disk
                    old = ents[slot + k]
                    if old:
                        unref.append(old)
                    ents[slot + k] = p
                    ents[LEAF_FANOUT + slot + k] = c
            else:
                unref.frombytes(ents[slot : slot + cnt].cast("B"))  # holes go in as 0: skipped by the fold
                ents[slot : slot + cnt] = pbns[i : i + cnt]
                ents[LEAF_FANOUT + slot : LEAF_FANOUT + slot + cnt] = csums[i : i + cnt]
            i += cnt
        self._dirty_objs[o.id] = o

    def _clear(self, o: ObjRec, offset: int, length: int) -> None:
        """Trim / write-zeroes: whole blocks become holes, partial edges are
        zero-filled."""
        if offset < 0 or length < 0 or offset + length > o.size:
            raise OutOfRange(what="trim", offset=offset, length=length, name=o.name, size=o.size)
        if length == 0:
            return
        self._admit(LOG_RECORD_BYTES, 2 + o.height, 0)
        bs = self.block_size
        end = offset + length
        a = -(-offset // bs)
        b = end // bs
        if a >= b:
            self._write(o, offset, memoryview(bytes(length)))
            return
        if offset < a * bs:
            self._write(o, offset, memoryview(bytes(a * bs - offset)))
        if end > b * bs:
            self._write(o, b * bs, memoryview(bytes(end - b * bs)))
        try:
            self.log.append_clear(self.epoch, o.id, a, b - a)
        except OSError as e:
            if is_full(e):
                raise FileSystemFull(path=self.path, needed=LOG_RECORD_BYTES, free=0) from None
            raise
        blockmap.clear_range(self.cache, o, a, b)
        self._dirty_objs[o.id] = o

    def _extents(self, o: ObjRec, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(offset, length, allocated) runs, merged, covering the range."""
        if offset < 0 or length < 0 or offset + length > o.size:
            raise OutOfRange(what="extents", offset=offset, length=length, name=o.name, size=o.size)
        bs = self.block_size
        end = offset + length
        lo, hi = offset // bs, -(-end // bs)
        runs: list[list] = []

        def add(start_b, end_b, alloc):
            s, e = max(start_b * bs, offset), min(end_b * bs, end)
            if e <= s:
                return
            if runs and runs[-1][2] == alloc and runs[-1][0] + runs[-1][1] == s:
                runs[-1][1] += e - s
            else:
                runs.append([s, e - s, alloc])

        pos = lo
        for base, leaf, _ in blockmap.iter_leaves(self.cache, o.root, o.height, lo, hi):
            s = max(lo, base)
            if s > pos:
                add(pos, s, False)
            e = min(hi, base + LEAF_FANOUT)
            ents = leaf.ents
            i = s - base
            while i < e - base:
                a = bool(ents[i])
                j = i + 1
                while j < e - base and bool(ents[j]) == a:
                    j += 1
                add(base + i, base + j, a)
                i = j
            pos = e
        if pos < hi:
            add(pos, hi, False)
        return [tuple(r) for r in runs]

    def flush(self) -> None:
        """Everything acknowledged so far survives power loss on return.
        Runs without the lock (see _data_gen): data first, then the log
        records that point at it."""
        self._check_open()
        self._sync_data()
        self.log.sync()
