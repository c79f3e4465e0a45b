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
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
import threading
import time
import uuid as _uuid
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import (
    AlreadyExists,
    Busy,
    CoppiceError,
    Corruption,
    InvalidArgument,
    NoSpace,
    NotFound,
)
from . import blockmap, consistency_point, datapath
from .allocator import Allocator
from .checksum import block_checksum, zero_checksum
from .fileio import OS_FILES, Files
from .format import (
    DEFAULT_BLOCK_SIZE,
    FORMAT_VERSION,
    LEAF_FANOUT,
    LOG_WRITE,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    SCHEMA,
)
from .intent_log import IntentLog
from .page_cache import PageCache
from .space import FileSystemFull, SpaceGuard, is_full

if TYPE_CHECKING:
    from .handle import ObjectHandle

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
MAX_NAME_BYTES = 255


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------
def owner_only(path: str) -> None:
    """Make the pool directory and everything in it owner-only (0700 / 0600).

    A pool holds every LUN's data and the custspecs' password hashes; a
    pool made under the usual umask, or by an older Coppice, would let any
    local user read them. Run at create and at every open (a few files:
    cheap). Symlinks are not followed, and only what the pool's owner owns
    is changed.
    """
    uid = os.geteuid()
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files, None]:
            p = root if name is None else os.path.join(root, name)
            st = os.lstat(p)
            if st.st_uid != uid or stat.S_ISLNK(st.st_mode):
                continue
            want = 0o700 if stat.S_ISDIR(st.st_mode) else stat.S_IMODE(st.st_mode) & 0o700
            if stat.S_IMODE(st.st_mode) != want:
                os.chmod(p, want)


class PoolNotFound(NotFound):
    """No pool at {path}: create one with `coppice pool create {path}` or point
    --pool / COPPICE_POOL at an existing pool."""


class PoolExists(AlreadyExists):
    """A pool already exists at {path}; open it instead, or choose an empty
    directory."""


class PoolInUse(Busy):
    """Pool {path} is in use by {holder}; stop that process or talk to it
    (the CLI uses a running daemon's socket automatically)."""


class VolumeNotFound(NotFound):
    """Volume {name} not found; `coppice vol show` lists the volumes."""


class VolumeExists(AlreadyExists):
    """Volume {name} already exists; choose another name."""


class SnapshotNotFound(NotFound):
    """Snapshot {snap} not found on volume {volume}; `coppice snap list
    {volume}` lists its snapshots."""


class SnapshotExists(AlreadyExists):
    """Snapshot {snap} already exists on volume {volume}; choose another name."""


class ObjectNotFound(NotFound):
    """{kind} {name} not found in {where}."""


class ObjectExists(AlreadyExists):
    """{name} already exists in volume {volume}; choose another name."""


class SnapshotBusy(Busy):
    """Snapshot {snap} of volume {volume} is busy: clone {clones} depends on
    it; split or destroy the clone first."""


class BadName(InvalidArgument):
    """Invalid {what} name {name!r}: {why}."""


class OutOfRange(InvalidArgument):
    """{what}: range {offset}+{length} is outside {name} (size {size})."""


class BlockCorrupt(Corruption):
    """Checksum mismatch reading {where} object {object} at offset {offset}
    (physical block {pbn}): the data on disk is corrupt. Run `coppice scrub`
    and restore the object from a snapshot or backup."""


class PoolDamaged(Corruption):
    """Pool {path} is damaged: {detail}. Restore the pool (or that file)
    from a backup; nothing was changed."""


def _damage(e: BaseException) -> str | None:
    """What a failure to open a pool says about its files, or None when it
    is not damage (the error then goes up as it is)."""
    if isinstance(e, PoolDamaged):
        return e.kwargs["detail"]
    if isinstance(e, sqlite3.DatabaseError):
        return f"its metadata database pool.db cannot be read ({e})"
    if isinstance(e, FileNotFoundError):
        return f"{e.filename} is missing"
    if isinstance(e, (ValueError, TypeError)):
        return f"pool.db holds an invalid value ({e})"
    return None


class PoolFull(NoSpace):
    """Pool {path} is full: {needed} more blocks needed, {free} free. Free
    space by deleting snapshots or volumes, or grow the pool's capacity."""


def validate_name(what: str, name) -> str:
    if not isinstance(name, str) or not name:
        raise BadName(what=what, name=name, why="it must be a non-empty string")
    if "/" in name:
        raise BadName(what=what, name=name, why="it must not contain '/'")
    if "\0" in name:
        raise BadName(what=what, name=name, why="it must not contain NUL")
    if name in (".", ".."):
        raise BadName(what=what, name=name, why="'.' and '..' are reserved")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadName(what=what, name=name[:40] + "...", why=f"it is longer than {MAX_NAME_BYTES} bytes")
    return name


# --------------------------------------------------------------------------
# In-memory records
# --------------------------------------------------------------------------
@dataclass
class Dataset:
    id: int
    kind: str  # 'volume' | 'snapshot'
    name: str
    volume_id: int | None  # for a snapshot: the volume it freezes
    origin_id: int | None  # for a clone volume: the snapshot it came from
    created: float
    meta: dict = field(default_factory=dict)


@dataclass
class ObjRec:
    id: int
    dataset_id: int
    name: str
    kind: str
    size: int
    root: int
    height: int
    meta: dict = field(default_factory=dict)


@dataclass
class SpaceInfo:
    logical_bytes: int
    written_blocks: int
    unique_blocks: int
    shared_blocks: int
    block_size: int

    @property
    def written_bytes(self):
        return self.written_blocks * self.block_size

    @property
    def unique_bytes(self):
        return self.unique_blocks * self.block_size

    @property
    def shared_bytes(self):
        return self.shared_blocks * self.block_size

    def as_dict(self):
        return {
            "logical_bytes": self.logical_bytes,
            "written_blocks": self.written_blocks,
            "unique_blocks": self.unique_blocks,
            "shared_blocks": self.shared_blocks,
            "written_bytes": self.written_bytes,
            "unique_bytes": self.unique_bytes,
            "shared_bytes": self.shared_bytes,
            "block_size": self.block_size,
        }


# --------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------
class Pool:
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
        if (
            not isinstance(block_size, int)
            or block_size < MIN_BLOCK_SIZE
            or block_size > MAX_BLOCK_SIZE
            or block_size & (block_size - 1)
        ):
            raise InvalidArgument(
                detail=f"block size {block_size!r} is invalid: use a power of two "
                f"between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} (default 4096)"
            )
        if capacity is not None and (not isinstance(capacity, int) or capacity < block_size):
            raise InvalidArgument(
                detail=f"capacity {capacity!r} is invalid: give a size in bytes of at "
                f"least one block ({block_size})"
            )
        path = os.path.abspath(path)
        if os.path.exists(os.path.join(path, "pool.db")):
            raise PoolExists(path=path)
        os.makedirs(os.path.join(path, "data"), mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        # Created 0600 before SQLite opens it: its -wal and -shm files take this mode.
        os.close(os.open(os.path.join(path, "pool.db"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(os.path.join(path, "pool.db"), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("BEGIN")
            for k, v in {
                "format_version": FORMAT_VERSION,
                "block_size": block_size,
                "epoch": 1,
                "next_pbn": 1,
                "next_page_id": 1,
                "uuid": str(_uuid.uuid4()),
                "capacity": capacity if capacity is not None else 0,
                "created": time.time(),
            }.items():
                db.execute("INSERT INTO pool (key, value) VALUES (?, ?)", (k, str(v)))
            db.execute("COMMIT")
        finally:
            db.close()
        os.close(os.open(os.path.join(path, "data", "blocks"), os.O_WRONLY | os.O_CREAT, 0o600))
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
        owner_only(path)
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
            damage = _damage(e)
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
        for row in db.execute("SELECT id, kind, name, volume_id, origin_id, created, meta FROM datasets"):
            d = self.datasets[row[0]] = Dataset(*row[:6], meta=json.loads(row[6]))
            self._dsidx[self._dkey(d)] = d
            if d.kind == "snapshot":
                self._snap_ids.setdefault(d.volume_id, set()).add(d.id)
        self.objects: dict[int, ObjRec] = {}
        # dataset id -> {object name -> record}: listing a volume's objects
        # costs its own objects, not the pool's.
        self._by_ds: dict[int, dict[str, ObjRec]] = {}
        for row in db.execute("SELECT id, dataset_id, name, kind, size, root, height, meta FROM objects"):
            o = self.objects[row[0]] = ObjRec(*row[:7], meta=json.loads(row[7]))
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
        return bool(c.dirty or c.freed or c.page_delta or c.block_delta or self._dirty_objs or self.log.size)

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
        rows = len(c.block_delta) + len(self._dirty_objs) + len(self.alloc.starts)
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

    # ---- lookups -------------------------------------------------------------
    @staticmethod
    def _dkey(d: Dataset) -> tuple:
        return (d.kind, d.volume_id if d.kind == "snapshot" else None, d.name)

    def _volume(self, name: str) -> Dataset:
        d = self._dsidx.get(("volume", None, name))
        if d is None:
            raise VolumeNotFound(name=name)
        return d

    def _snapshot(self, vol: Dataset, snap: str) -> Dataset:
        d = self._dsidx.get(("snapshot", vol.id, snap))
        if d is None:
            raise SnapshotNotFound(volume=vol.name, snap=snap)
        return d

    def _rename_dataset(self, d: Dataset, new: str) -> None:
        del self._dsidx[self._dkey(d)]
        d.name = new
        self._dsidx[self._dkey(d)] = d

    def _dataset(self, volume: str, snapshot: str | None = None) -> Dataset:
        v = self._volume(volume)
        return self._snapshot(v, snapshot) if snapshot is not None else v

    def _objects_of(self, ds: Dataset) -> list[ObjRec]:
        objs = self._by_ds.get(ds.id)
        return [objs[n] for n in sorted(objs)] if objs else []

    def _object(self, ds: Dataset, name: str) -> ObjRec:
        o = self._by_ds.get(ds.id, {}).get(name)
        if o is None:
            raise ObjectNotFound(kind="Object", name=name, where=self._ds_label(ds))
        return o

    def _index(self, o: ObjRec) -> None:
        self.objects[o.id] = o
        self._by_ds.setdefault(o.dataset_id, {})[o.name] = o

    def _ds_label(self, ds: Dataset) -> str:
        if ds.kind == "snapshot":
            return f"snapshot {ds.name} of volume {self.datasets[ds.volume_id].name}"
        return f"volume {ds.name}"

    def _snapshots_of(self, vol: Dataset) -> list[Dataset]:
        return sorted(
            (self.datasets[i] for i in self._snap_ids.get(vol.id, ())), key=lambda d: (d.created, d.id)
        )

    def _clones_of(self, snap: Dataset) -> list[Dataset]:
        return sorted(
            (d for d in self.datasets.values() if d.kind == "volume" and d.origin_id == snap.id),
            key=lambda d: d.name,
        )

    # ---- volumes ---------------------------------------------------------------
    def create_volume(self, name: str, meta: dict | None = None) -> Dataset:
        validate_name("volume", name)
        with self.transaction():
            if ("volume", None, name) in self._dsidx:
                raise VolumeExists(name=name)
            return self._insert_dataset("volume", name, None, None, meta or {})

    def _insert_dataset(self, kind, name, volume_id, origin_id, meta) -> Dataset:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO datasets (kind, name, volume_id, origin_id, created, meta) VALUES (?,?,?,?,?,?)",
            (kind, name, volume_id, origin_id, now, json.dumps(meta)),
        )
        d = Dataset(cur.lastrowid, kind, name, volume_id, origin_id, now, dict(meta))
        self.datasets[d.id] = d
        self._dsidx[self._dkey(d)] = d
        if kind == "snapshot":
            self._snap_ids.setdefault(volume_id, set()).add(d.id)
        return d

    def list_volumes(self) -> list[Dataset]:
        with self._lock:
            return sorted((d for d in self.datasets.values() if d.kind == "volume"), key=lambda d: d.name)

    def volume(self, name: str) -> Dataset:
        with self._lock:
            return self._volume(name)

    def has_volume(self, name: str) -> bool:
        with self._lock:
            return ("volume", None, name) in self._dsidx

    def origin_of(self, volume: str) -> tuple[str, str] | None:
        """(parent volume, snapshot) a clone depends on, or None."""
        with self._lock:
            v = self._volume(volume)
            if v.origin_id is None:
                return None
            s = self.datasets[v.origin_id]
            return self.datasets[s.volume_id].name, s.name

    def set_volume_meta(self, name: str, meta: dict) -> None:
        with self.transaction():
            v = self._volume(name)
            self.db.execute("UPDATE datasets SET meta=? WHERE id=?", (json.dumps(meta), v.id))
            v.meta = dict(meta)

    def rename_volume(self, old: str, new: str) -> None:
        validate_name("volume", new)
        with self.transaction():
            v = self._volume(old)
            if old == new:
                return
            if ("volume", None, new) in self._dsidx:
                raise VolumeExists(name=new)
            self.db.execute("UPDATE datasets SET name=? WHERE id=?", (new, v.id))
            self._rename_dataset(v, new)

    def delete_volume(self, name: str) -> None:
        """Destroy a volume with its snapshots. Refused while a clone depends
        on one of its snapshots."""
        with self.transaction():
            v = self._volume(name)
            for s in self._snapshots_of(v):
                clones = self._clones_of(s)
                if clones:
                    raise SnapshotBusy(volume=name, snap=s.name, clones=", ".join(c.name for c in clones))
            for s in self._snapshots_of(v):
                self._drop_dataset(s)
            self._drop_dataset(v)

    def _drop_dataset(self, ds: Dataset) -> None:
        for o in self._objects_of(ds):
            self._drop_object(o)
        self.db.execute("DELETE FROM datasets WHERE id=?", (ds.id,))
        del self.datasets[ds.id]
        del self._dsidx[self._dkey(ds)]
        if ds.kind == "snapshot":
            self._snap_ids.get(ds.volume_id, set()).discard(ds.id)

    def _drop_object(self, o: ObjRec) -> None:
        if o.root:
            self.cache.decref_page(o.root)
        self.db.execute("DELETE FROM objects WHERE id=?", (o.id,))
        del self.objects[o.id]
        objs = self._by_ds.get(o.dataset_id)
        if objs is not None:
            objs.pop(o.name, None)
            if not objs:
                del self._by_ds[o.dataset_id]
        self._dirty_objs.pop(o.id, None)

    # ---- snapshots -------------------------------------------------------------
    def create_snapshot(self, volume: str, snap: str, meta: dict | None = None) -> Dataset:
        """O(objects): freeze every object of the volume at this instant."""
        validate_name("snapshot", snap)
        with self.transaction():
            v = self._volume(volume)
            if ("snapshot", v.id, snap) in self._dsidx:
                raise SnapshotExists(volume=volume, snap=snap)
            s = self._insert_dataset("snapshot", snap, v.id, None, meta or {})
            for o in self._objects_of(v):
                self._copy_object(o, s.id, o.name)
            return s

    def _copy_object(self, o: ObjRec, dataset_id: int, name: str, meta: dict | None = None) -> ObjRec:
        m = dict(o.meta) if meta is None else meta
        cur = self.db.execute(
            "INSERT INTO objects (dataset_id, name, kind, size, root, height, meta) VALUES (?,?,?,?,?,?,?)",
            (dataset_id, name, o.kind, o.size, o.root, o.height, json.dumps(m)),
        )
        n = ObjRec(cur.lastrowid, dataset_id, name, o.kind, o.size, o.root, o.height, m)
        self._index(n)
        if o.root:
            self.cache.incref_page(o.root)
        return n

    def list_snapshots(self, volume: str) -> list[Dataset]:
        with self._lock:
            return self._snapshots_of(self._volume(volume))

    def snapshot(self, volume: str, snap: str) -> Dataset:
        with self._lock:
            return self._snapshot(self._volume(volume), snap)

    def clones_of(self, volume: str, snap: str) -> list[str]:
        with self._lock:
            return [c.name for c in self._clones_of(self._snapshot(self._volume(volume), snap))]

    def delete_snapshot(self, volume: str, snap: str) -> None:
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            clones = self._clones_of(s)
            if clones:
                raise SnapshotBusy(volume=volume, snap=snap, clones=", ".join(c.name for c in clones))
            self._drop_dataset(s)

    def rename_snapshot(self, volume: str, old: str, new: str) -> None:
        validate_name("snapshot", new)
        with self.transaction():
            v = self._volume(volume)
            s = self._snapshot(v, old)
            if old == new:
                return
            if ("snapshot", v.id, new) in self._dsidx:
                raise SnapshotExists(volume=volume, snap=new)
            self.db.execute("UPDATE datasets SET name=? WHERE id=?", (new, s.id))
            self._rename_dataset(s, new)

    def set_snapshot_meta(self, volume: str, snap: str, meta: dict) -> None:
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            self.db.execute("UPDATE datasets SET meta=? WHERE id=?", (json.dumps(meta), s.id))
            s.meta = dict(meta)

    def restore_snapshot(self, volume: str, snap: str) -> None:
        """SnapRestore: the volume's objects become the snapshot's again.
        Objects present in both keep their identity (open handles stay
        valid); objects created since are deleted; deleted ones return."""
        with self.transaction():
            v = self._volume(volume)
            s = self._snapshot(v, snap)
            current = {o.name: o for o in self._objects_of(v)}
            frozen = {o.name: o for o in self._objects_of(s)}
            for name, o in current.items():
                if name not in frozen:
                    self._drop_object(o)
            for name, f in frozen.items():
                o = current.get(name)
                if o is None:
                    self._copy_object(f, v.id, name)
                    continue
                if f.root:
                    self.cache.incref_page(f.root)
                if o.root:
                    self.cache.decref_page(o.root)
                o.root, o.height, o.size, o.kind, o.meta = f.root, f.height, f.size, f.kind, dict(f.meta)
                self._dirty_objs[o.id] = o

    # ---- clones ----------------------------------------------------------------
    def clone_volume(
        self, new: str, volume: str, snap: str, meta: dict | None = None, object_meta=None
    ) -> Dataset:
        """O(objects): a writable volume whose content is the snapshot's.
        ``object_meta(name, meta) -> meta`` may rewrite each object's
        metadata in the same transaction (the filer takes clone LUNs
        offline that way)."""
        validate_name("volume", new)
        with self.transaction():
            s = self._snapshot(self._volume(volume), snap)
            if ("volume", None, new) in self._dsidx:
                raise VolumeExists(name=new)
            c = self._insert_dataset("volume", new, None, s.id, meta or {})
            for o in self._objects_of(s):
                m = object_meta(o.name, dict(o.meta)) if object_meta else None
                self._copy_object(o, c.id, o.name, m)
            return c

    def _origin_shared_slots(self, base: int, leaf, p: ObjRec | None) -> list[int]:
        """Slots of the clone leaf at ``base`` whose block is still the one
        the origin snapshot's object ``p`` maps at the same place."""
        if p is None or base >= self._nblocks(p):
            return []
        pleaf = blockmap.lookup_leaf(self.cache, p.root, p.height, base // LEAF_FANOUT)
        if pleaf is None:
            return []
        e, pe = leaf.ents, pleaf.ents
        if leaf is pleaf:
            return [i for i in range(LEAF_FANOUT) if e[i]]
        return [i for i in range(LEAF_FANOUT) if e[i] and e[i] == pe[i]]

    def _split_pairs(self, volume):
        v = self._volume(volume)
        if v.origin_id is None:
            return []
        s = self.datasets[v.origin_id]
        frozen = {o.name: o for o in self._objects_of(s)}
        return [(o, frozen.get(o.name)) for o in self._objects_of(v)]

    def split_estimate(self, volume: str) -> int:
        """Bytes a clone split would write: blocks still shared with the origin."""
        with self._lock:
            total = 0
            for o, p in self._split_pairs(volume):
                for base, leaf, _ in blockmap.iter_leaves(self.cache, o.root, o.height, 0, self._nblocks(o)):
                    total += len(self._origin_shared_slots(base, leaf, p))
            return total * self.block_size

    def split_clone_steps(self, volume: str):
        """Clone split as a generator: copies every block the clone still
        shares with its origin snapshot, one leaf (<= 2 MiB) per step under
        the lock, so client I/O runs between steps; yields (done, total)
        leaf counts. When it finishes the clone no longer depends on the
        snapshot. Stopping early leaves a valid, partly split clone."""
        with self._lock:
            v = self._volume(volume)
            if v.origin_id is None:
                raise InvalidArgument(detail=f"volume {volume} is not a clone; nothing to split")
            work = [(o.id, p.id if p else None) for o, p in self._split_pairs(volume)]
            total = sum(
                1
                for o, _ in self._split_pairs(volume)
                for _ in blockmap.iter_leaves(self.cache, o.root, o.height, 0, self._nblocks(o))
            )
        done = 0
        yield done, total
        for oid, pid in work:
            base = 0
            while True:
                with self._lock:
                    o = self.objects.get(oid)
                    p = self.objects.get(pid) if pid else None
                    if o is None:
                        break
                    nxt = next(
                        blockmap.iter_leaves(self.cache, o.root, o.height, base, self._nblocks(o)), None
                    )
                    if nxt is None:
                        break
                    b, leaf, _ = nxt
                    slots = self._origin_shared_slots(b, leaf, p)
                    k = 0
                    while k < len(slots):
                        j = k + 1
                        while j < len(slots) and slots[j] == slots[k] + (j - k):
                            j += 1
                        lbn, cnt = b + slots[k], j - k
                        self._write_blocks(o, lbn, memoryview(self._read_blocks(o, lbn, cnt)))
                        k = j
                self._checkpoint_if_due()
                base = b + LEAF_FANOUT
                done += 1
                yield min(done, total), total
        with self.transaction():
            v = self._volume(volume)
            self.db.execute("UPDATE datasets SET origin_id=NULL WHERE id=?", (v.id,))
            v.origin_id = None
        yield total, total

    def split_clone(self, volume: str, progress=None) -> None:
        for done, total in self.split_clone_steps(volume):
            if progress:
                progress(done, total)

    # ---- objects ---------------------------------------------------------------
    def _nblocks(self, o: ObjRec) -> int:
        return -(-o.size // self.block_size)

    def create_object(
        self, volume: str, name: str, size: int, kind: str = "lun", meta: dict | None = None
    ) -> ObjRec:
        """A thin object: metadata only, whatever its size."""
        validate_name("object", name)
        self._check_size(size, name)
        with self.transaction():
            v = self._volume(volume)
            if name in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=name, volume=volume)
            h = blockmap.height_for(-(-size // self.block_size))
            m = meta or {}
            cur = self.db.execute(
                "INSERT INTO objects (dataset_id, name, kind, size, root, height, meta) VALUES (?,?,?,?,?,?,?)",
                (v.id, name, kind, size, 0, h, json.dumps(m)),
            )
            o = ObjRec(cur.lastrowid, v.id, name, kind, size, 0, h, dict(m))
            self._index(o)
            return o

    def _check_size(self, size, name):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(
                detail=f"size {size!r} for {name} is invalid: give a whole number of bytes >= 0"
            )
        if size > (1 << 60):
            raise InvalidArgument(detail=f"size {size} for {name} is too large (limit 1 EiB)")

    def clone_object(
        self, volume: str, new: str, src: str, snapshot: str | None = None, meta: dict | None = None
    ) -> ObjRec:
        """O(1) copy of object ``src`` (of a snapshot of the same volume, or
        of the volume itself) under a new name in ``volume``."""
        validate_name("object", new)
        with self.transaction():
            v = self._volume(volume)
            ds = self._snapshot(v, snapshot) if snapshot is not None else v
            o = self._object(ds, src)
            if new in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=new, volume=volume)
            return self._copy_object(o, v.id, new, meta)

    def delete_object(self, volume: str, name: str) -> None:
        with self.transaction():
            self._drop_object(self._object(self._volume(volume), name))

    def rename_object(self, volume: str, old: str, new: str) -> None:
        validate_name("object", new)
        with self.transaction():
            v = self._volume(volume)
            o = self._object(v, old)
            if old == new:
                return
            if new in self._by_ds.get(v.id, {}):
                raise ObjectExists(name=new, volume=volume)
            objs = self._by_ds[v.id]
            del objs[old]
            o.name = new
            objs[new] = o
            self._dirty_objs[o.id] = o

    def set_object_meta(self, volume: str, name: str, meta: dict) -> None:
        with self.transaction():
            o = self._object(self._volume(volume), name)
            o.meta = dict(meta)
            self._dirty_objs[o.id] = o

    def resize_object(self, volume: str, name: str, size: int) -> None:
        """Grow (thin: metadata only) or shrink (blocks past the new end are
        released) an object."""
        with self.transaction():
            o = self._object(self._volume(volume), name)
            self._check_size(size, name)
            old_nb, new_nb = self._nblocks(o), -(-size // self.block_size)
            if new_nb < old_nb:
                blockmap.clear_range(self.cache, o, new_nb, old_nb)
            elif new_nb > old_nb:
                blockmap.grow(self.cache, o, blockmap.height_for(new_nb))
            if size % self.block_size and size < o.size:
                # Zero the tail of a now-partial last block so a later grow
                # reads zeros there, not old bytes.
                last = size // self.block_size
                buf = bytearray(self._read_blocks(o, last, 1))
                buf[size % self.block_size :] = bytes(self.block_size - size % self.block_size)
                o.size = max(o.size, (last + 1) * self.block_size)
                self._write_blocks(o, last, memoryview(buf))
            o.size = size
            self._dirty_objs[o.id] = o

    def list_objects(self, volume: str, snapshot: str | None = None) -> list[ObjRec]:
        with self._lock:
            return self._objects_of(self._dataset(volume, snapshot))

    def object_info(self, volume: str, name: str, snapshot: str | None = None) -> ObjRec:
        with self._lock:
            return self._object(self._dataset(volume, snapshot), name)

    def has_object(self, volume: str, name: str, snapshot: str | None = None) -> bool:
        with self._lock:
            try:
                self._object(self._dataset(volume, snapshot), name)
                return True
            except NotFound:
                return False

    def write_file(self, volume: str, name: str, data: bytes, meta: dict | None = None) -> ObjRec:
        """Create or replace small file ``name`` with ``data``, atomically."""
        validate_name("object", name)
        with self.transaction():
            v = self._volume(volume)
            o = self._by_ds.get(v.id, {}).get(name)
            if o is not None:
                self._drop_object(o)
            o = self.create_object(volume, name, len(data), kind="file", meta=meta)
            if data:
                self._write(o, 0, memoryview(data))
            return o

    def read_file(self, volume: str, name: str, snapshot: str | None = None) -> bytes:
        with self._lock:
            o = self._object(self._dataset(volume, snapshot), name)
            return bytes(self._read(o, 0, o.size))

    def open_object(self, volume: str, name: str, snapshot: str | None = None) -> ObjectHandle:
        with self._lock:
            ds = self._dataset(volume, snapshot)
            from .handle import ObjectHandle

            return ObjectHandle(self, self._object(ds, name), read_only=ds.kind == "snapshot")

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

    def _read_blocks(self, o: ObjRec, lbn: int, n: int) -> bytearray:
        bs = self.block_size
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
                ds = self.datasets.get(o.dataset_id)
                raise BlockCorrupt(
                    where=self._ds_label(ds) if ds else "?",
                    object=o.name,
                    offset=(base + bad[0]) * bs,
                    pbn=bad[1],
                )
        return out

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

    def _write_blocks(self, o: ObjRec, lbn: int, mv: memoryview) -> None:
        """Redirect-on-write of whole blocks: new PBNs, one pwrite per
        contiguous run, one intent-log record, then the map update. A write
        that fails (no space) leaves everything as it was."""
        bs = self.block_size
        n = len(mv) // bs
        csums = datapath.block_checksums(mv, bs)
        zeros = datapath.zero_slots(mv, bs, csums, self._zero_csum)
        shared = self._inline_dedup_candidates(o, mv, csums, zeros)
        skip = sorted(set(zeros).union(shared)) if shared else zeros
        m = n - len(skip)
        if m and self.capacity is not None and self.alloc.used + m > self.capacity:
            raise PoolFull(path=self.path, needed=m, free=max(0, self.capacity - self.alloc.used))
        grow = max(0, self.alloc.next_pbn + max(0, m - self.alloc.free_below) - self._data_end)
        if grow and self.cache.block_delta and self.headroom.near_full() and not self._txn_depth:
            # Near full, recycle what overwrites freed (they come back only
            # at a consistency point) before growing the data file into the
            # last free space.
            try:
                self._checkpoint()
            except NoSpace:
                self._cp_blocked = True
            grow = max(0, self.alloc.next_pbn + max(0, m - self.alloc.free_below) - self._data_end)
        self._admit(grow * bs + LOG_RECORD_BYTES + 16 * n, 2 + n // LEAF_FANOUT + o.height, n)
        runs = self.alloc.allocate(m) if m else []
        top = (runs[0][0] + runs[0][1] if len(runs) == 1 else max(s + c for s, c in runs)) if runs else 0
        if runs:
            self._preallocate(top)
        pbns = datapath.spread(runs, n, skip)
        for i, p in shared.items():
            pbns[i] = p
        for i in zeros:
            csums[i] = 0
        try:
            if m:
                datapath.write_runs(self.data, mv, pbns, bs)
            self.log.append_write(self.epoch, o.id, lbn, pbns, csums)
        except OSError as e:
            for start, cnt in runs:
                self.alloc.release(start, cnt)
            if is_full(e):
                raise FileSystemFull(path=self.path, needed=m * bs, free=0) from None
            raise
        if m:
            self._data_gen += 1
            if top > self._data_end:
                self._data_end = top
        for p in shared.values():
            self.cache.incref_block(p)
        hook = self.inline_dedup
        if hook is not None and m:
            hook.learn([(csums[i], pbns[i]) for i in range(n) if pbns[i]])
        self._map_blocks(o, lbn, pbns, csums)

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
        cache = self.cache
        bd = cache.block_delta
        n = len(pbns)
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
                        bd[old] -= 1
                    ents[slot + k] = p
                    ents[LEAF_FANOUT + slot + k] = c
            else:
                for old in ents[slot : slot + cnt].tolist():
                    if old:
                        bd[old] -= 1
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

    # ---- deduplication primitives ------------------------------------------------
    def iter_blocks(self, volume: str, name: str, snapshot: str | None = None, start_lbn: int = 0):
        """Yield (lbn, pbn, checksum) of every mapped block from ``start_lbn``
        on, a leaf at a time under the lock (writers run in between)."""
        base = start_lbn
        while True:
            with self._lock:
                o = self._object(self._dataset(volume, snapshot), name)
                nb = self._nblocks(o)
                nxt = next(blockmap.iter_leaves(self.cache, o.root, o.height, base, nb), None)
                if nxt is None:
                    return
                b, leaf, _ = nxt
                ents = leaf.ents
                batch = [
                    (b + i, ents[i], ents[LEAF_FANOUT + i])
                    for i in range(max(0, base - b), LEAF_FANOUT)
                    if ents[i] and b + i < nb
                ]
            yield from batch
            base = b + LEAF_FANOUT

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
                nxt = next(blockmap.iter_leaves(self.cache, o.root, o.height, base, nb), None)
                if nxt is None:
                    return
                b, leaf, _ = nxt
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
            k = 0
            while (
                k < n
                and cur[k]
                and cur[k] == expected_pbns[k]
                and target_pbns[k]
                and cur[k] != target_pbns[k]
                and not self.alloc.is_free(target_pbns[k])
            ):
                k += 1
            good = self._equal_run(cur, array("Q", target_pbns[:k]), csums) if k else 0
            if not good:
                return 0
            tgt, cs = array("Q", target_pbns[:good]), csums[:good]
            self.log.append_write(self.epoch, o.id, lbn, tgt, cs)
            for p in tgt:
                self.cache.incref_block(p)
            self._map_blocks(o, lbn, tgt, cs)  # drops the references to the expected PBNs
        self._checkpoint_if_due()
        return good

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
        a, b = datapath.read_runs(self.data, cur, k, bs), datapath.read_runs(self.data, tgt, k, bs)
        good = datapath.equal_prefix(a, b, bs)
        bad = datapath.first_mismatch(memoryview(b)[: good * bs], bs, csums)
        return good if bad < 0 else bad

    # ---- accounting --------------------------------------------------------------
    def _stored_refs(self, pbns) -> dict[int, int]:
        """Committed counts of the given blocks that are shared (block_refs
        rows); a block not in the result has 1 if allocated."""
        stored: dict[int, int] = {}
        keys = list(pbns)
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[i : i + 900]
            q = "SELECT pbn, refs FROM block_refs WHERE pbn IN ({})".format(",".join("?" * len(chunk)))
            stored.update(self.db.execute(q, chunk).fetchall())
        return stored

    def _block_refs(self, pbns) -> dict[int, int]:
        """Current reference counts: committed plus pending."""
        stored = self._stored_refs(pbns)
        bd = self.cache.block_delta
        return {p: stored.get(p, 1) + bd.get(p, 0) for p in pbns}

    def _shared_blocks(self, o: ObjRec, lo: int, hi: int) -> int:
        """Blocks in [lo, hi) that another map also references: what a
        rewrite of the range would copy away from snapshots or clones."""
        n = 0
        for base, leaf, shared in blockmap.iter_leaves(self.cache, o.root, o.height, lo, hi):
            s, e = max(lo, base) - base, min(hi, base + LEAF_FANOUT) - base
            ps = [p for p in leaf.ents[s:e] if p]
            if shared:
                n += len(ps)
            elif ps:
                refs = self._block_refs(set(ps))
                n += sum(1 for p in ps if refs[p] > 1)
        return n

    def space(self, volume: str, snapshot: str | None = None) -> SpaceInfo:
        """Logical size, written blocks, and how many of them are unique to
        this volume or snapshot (freed if it alone were deleted) versus
        shared with snapshots, clones or dedup partners."""
        with self._lock:
            ds = self._dataset(volume, snapshot)
            logical = written = unique = 0
            for o in self._objects_of(ds):
                logical += o.size
                root_shared = False
                for _base, leaf, shared in blockmap.iter_leaves(
                    self.cache, o.root, o.height, 0, self._nblocks(o)
                ):
                    ps = [p for p in leaf.ents[:LEAF_FANOUT] if p]
                    written += len(ps)
                    if shared or root_shared:
                        continue
                    refs = self._block_refs(set(ps))
                    unique += sum(1 for p in ps if refs[p] == 1)
            return SpaceInfo(logical, written, unique, written - unique, self.block_size)

    def pool_space(self) -> dict:
        with self._lock:
            self._checkpoint()
            bs = self.block_size
            used = self.alloc.used
            st = os.statvfs(self.path)
            fs_free = st.f_bavail * st.f_frsize
            reusable = self.alloc.free_below * bs
            if self.capacity is not None:
                total = self.capacity * bs
                free = max(0, total - used * bs)
            else:
                free = fs_free + reusable
                total = used * bs + free
            meta = sum(
                os.path.getsize(os.path.join(self.path, f))
                for f in ("pool.db", "pool.db-wal")
                if os.path.exists(os.path.join(self.path, f))
            )
            return {
                "block_size": bs,
                "used_blocks": used,
                "used_bytes": used * bs,
                "free_bytes": free,
                "total_bytes": total,
                "metadata_bytes": meta,
                "capacity_bytes": (self.capacity or 0) * bs,
            }

    # ---- pool-level records for upper layers -------------------------------------
    def kv_get(self, scope: str, key: str, default=None):
        with self._lock:
            row = self.db.execute("SELECT value FROM kv WHERE scope=? AND key=?", (scope, key)).fetchone()
            return json.loads(row[0]) if row else default

    def kv_put(self, scope: str, key: str, value) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO kv (scope, key, value) VALUES (?,?,?)",
                (scope, key, json.dumps(value)),
            )

    def kv_delete(self, scope: str, key: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM kv WHERE scope=? AND key=?", (scope, key))

    def kv_items(self, scope: str) -> list[tuple[str, object]]:
        with self._lock:
            return [
                (k, json.loads(v))
                for k, v in self.db.execute("SELECT key, value FROM kv WHERE scope=? ORDER BY key", (scope,))
            ]

    # ---- maintenance ---------------------------------------------------------------
    def _checkpoint_for_check(self) -> None:
        """fsck and scrub read committed metadata: commit first if that can
        be done; on a full file system they check what is committed (the
        intent log's records join at the next consistency point)."""
        try:
            self._checkpoint()
        except NoSpace:
            self._cp_blocked = True

    def fsck(self):
        from .fsck import fsck

        with self._lock:
            self._checkpoint_for_check()
            return fsck(self)

    def scrub(self, progress=None):
        from .scrub import scrub

        with self._lock:
            self._checkpoint_for_check()
            return scrub(self, progress)

    def dump(self) -> dict:
        """Everything a user can observe of the pool's namespace (used by
        tests to prove a refused command changed nothing)."""
        with self._lock:
            out = {}
            for d in sorted(self.datasets.values(), key=lambda d: (d.kind, d.name, d.volume_id or 0)):
                key = d.name if d.kind == "volume" else f"{self.datasets[d.volume_id].name}@{d.name}"
                out[key] = {
                    "kind": d.kind,
                    "meta": d.meta,
                    "origin": (lambda s: f"{self.datasets[s.volume_id].name}@{s.name}")(
                        self.datasets[d.origin_id]
                    )
                    if d.origin_id
                    else None,
                    "objects": {
                        o.name: {
                            "kind": o.kind,
                            "size": o.size,
                            "meta": o.meta,
                            "content": block_checksum(bytes(self._read(o, 0, o.size)))
                            if o.size <= (64 << 20)
                            else None,
                        }
                        for o in self._objects_of(d)
                    },
                }
            out["__kv__"] = [
                list(r) for r in self.db.execute("SELECT scope, key, value FROM kv ORDER BY 1, 2")
            ]
            return out
