"""Post-process deduplication scans: resumable jobs that merge identical blocks.

Contract:

* **What is shared.** A scan covers the chosen volumes, their snapshots
  (clones are volumes of their own), and matches their blocks against every
  block the pool-wide fingerprint index knows, so blocks are shared within a
  volume and across volumes. Sharing a block never changes what any volume
  or snapshot reads: the scanner confirms every fingerprint group's match
  byte for byte (``index.group_by_content``), and the engine's
  ``share_blocks`` / ``share_run`` compare the bytes and check the mapping
  again under its lock before remapping anything.
* **Extent-based.** A confirmed match of block (B, L) with target (A, M)
  seeds a run: the scanner extends it along L+1, M+1, ... while the
  checksums in both objects' block maps (read now, a leaf window at a
  time) agree, and hands it to the engine's
  ``share_run`` (up to 512 blocks a call), which confirms the bytes and
  shares the longest valid prefix. Each run is kept as an interval (B's
  lbns -> A's lbns; in memory and in the ``covered`` table, so a resumed
  job knows them): when a remapped row's fingerprint group comes up, its
  current PBN is its run target's, usually the group's target already, so
  the group is settled without reads or engine calls.
* **Never loses a write.** The engine remaps a block only if it still maps
  the physical block the scan collected (or, in a run, read from the map);
  a block rewritten meanwhile is
  left alone (a run stops there) and picked up by the next scan.
* **Beside client I/O.** The engine's lock is held for one leaf (512
  blocks) while collecting and for one ``share_run`` (at most 512 blocks) or
  ``share_blocks`` batch while sharing; writers run in between.
* **Resumable.** A job has phases ``collect`` (walk the maps a leaf at a
  time, append (fingerprint, pbn, object, lbn) rows to the job's rows file),
  ``sort`` (the rows into bucket files by fingerprint range, each sorted in
  memory) and ``match`` (walk the buckets in fingerprint order a window at a
  time; settle in bulk the groups the arrays show need nothing, confirm and
  share the others). Each phase's cursor commits in ``dedup/index.db`` after
  the data it covers is synced, so a killed scan resumes where it stopped
  and redoes at most one batch (every step is idempotent).
  ``Scanner.start`` resumes an unfinished job before starting a new one.
* **Incremental by default.** Without ``full`` a scan skips leaves whose
  (lbn, pbn) list is unchanged since the last scan ("new blocks only", like
  ``sis start``); ``full`` (``sis start -s``) re-reads everything.
* **Progress** goes to ``progress(phase, done, total)`` and, every few
  seconds and at each phase change, to the pool's kv (scope ``sis``, key
  ``job``) for ``sis status``.

Memory: a collect batch of rows (COLLECT_BATCH_LEAVES leaves, one buffer
filled in place), two buffers of the largest bucket (about SORT_ROWS rows,
32 bytes each) while sorting, one bucket while matching, SQLite's capped
cache, and the run intervals (32 bytes a run; runs are up to
MATCH_RUN_BLOCKS long): fixed, whatever the pool's size. The collect and
sort buffers are anonymous mappings of their own, returned to the system
when the phase ends. bench/dedup.py prints the peak RSS of each phase and
how much of the RSS growth with the pool is the engine's block-map cache.

Threading: run one Scanner at a time per pool (``ScanBusy`` otherwise); it
may run in a thread beside the NBD server. ``stop()`` from another thread
pauses it at the next batch, resumable.
"""

from __future__ import annotations

import glob
import mmap
import os
import time
import uuid as _uuid
from array import array
from bisect import bisect_right
from collections import Counter

import numpy as np
import xxhash

from ..errors import Busy, NotFound
from . import config
from . import kernels as K
from .index import DedupStore, IndexMerge, IndexMergeLost, group_by_content, u64

LEAF = 512  # blocks per engine leaf (engine.format.LEAF_FANOUT)
COLLECT_BATCH_LEAVES = 64  # leaves per commit while collecting
# Rows sorted in memory at once (2 MiB of rows; the sort holds about three
# times that): more are first split into buckets by fingerprint, so the
# scan's working memory does not grow with the pool.
SORT_ROWS = 1 << 16
SMALL_GROUP_SCAN = 16  # moved rows' targets looked up by position in groups up to this size
MATCH_BATCH_ROWS = 8192  # rows classified at once while matching (one commit each)
JOB_FORMAT = 3  # rows in files of kernels.ROW, sorted in buckets; the index rewritten as a file
MATCH_BATCH_GROUPS = 256  # fingerprint groups per commit while matching
MATCH_BATCH_SHARES = 16384  # ... or blocks shared, whichever comes first
MATCH_RUN_BLOCKS = 8192  # longest run one seed extends to (share_run calls of <= RUN_CALL blocks)
RUN_CALL = 512  # blocks per engine share_run call (its maximum)
CHECKPOINT_SHARES = 32768  # shares between consistency points: bounds the engine's pending refcounts
MIRROR_SECONDS = 30.0  # how often progress is mirrored to the pool kv (each is a consistency point)

_running: dict[str, Scanner] = {}


class ScanBusy(Busy):
    """A deduplication scan is already running on pool {path}; wait for it
    (`coppice sis status`) or stop it (`coppice sis stop`)."""


def _xxh(data) -> int:
    return xxhash.xxh3_64_intdigest(data) or 1


def object_names(pool) -> dict[int, tuple[str, str | None, str]]:
    """oid -> (volume, snapshot or None, object name) for the whole pool."""
    out = {}
    for v in pool.list_volumes():
        for o in pool.list_objects(v.name):
            out[o.id] = (v.name, None, o.name)
        for s in pool.list_snapshots(v.name):
            for o in pool.list_objects(v.name, s.name):
                out[o.id] = (v.name, s.name, o.name)
    return out


class Covered:
    """The runs this job shared, as intervals: blocks [lbn, lbn+n) of object
    ``oid`` now map what blocks [albn, albn+n) of ``aoid`` mapped when
    collected. Per object, sorted arrays of starts, ends and targets (32
    bytes a run; adjacent runs with the same target offset merge)."""

    def __init__(self):
        self.maps: dict[int, tuple[array, array, array, array]] = {}
        self.runs = 0
        self.version = 0  # changes with every add
        self._np: dict[int, tuple] = {}
        self._np_version = -1

    def __bool__(self) -> bool:
        return self.runs > 0

    def get(self, oid: int, lbn: int):
        """(aoid, albn) whose collected block (oid, lbn) maps now, or None."""
        m = self.maps.get(oid)
        if m is None:
            return None
        starts, ends, aoids, albns = m
        i = bisect_right(starts, lbn) - 1
        if i < 0 or lbn >= ends[i]:
            return None
        return aoids[i], albns[i] + lbn - starts[i]

    def __contains__(self, key) -> bool:
        return self.get(*key) is not None

    def add(self, oid: int, lbn: int, n: int, aoid: int, albn: int) -> None:
        m = self.maps.get(oid)
        if m is None:
            m = self.maps[oid] = (array("q"), array("q"), array("q"), array("q"))
        starts, ends, aoids, albns = m
        self.version += 1
        self._np.clear()  # its views hold the arrays' buffers, which must resize now
        i = bisect_right(starts, lbn)
        if i and ends[i - 1] == lbn and aoids[i - 1] == aoid and albns[i - 1] + lbn - starts[i - 1] == albn:
            ends[i - 1] = lbn + n
            return
        starts.insert(i, lbn)
        ends.insert(i, lbn + n)
        aoids.insert(i, aoid)
        albns.insert(i, albn)
        self.runs += 1

    @property
    def nbytes(self) -> int:
        return 32 * self.runs

    def free_prefix(self, oid: int, lbn: int, n: int) -> int:
        """How many of blocks lbn, lbn+1, ... (at most n) no run covers."""
        m = self.maps.get(oid)
        if m is None:
            return n
        starts, ends = m[0], m[1]
        i = bisect_right(starts, lbn) - 1
        if i >= 0 and lbn < ends[i]:
            return 0
        if i + 1 < len(starts):
            return min(n, starts[i + 1] - lbn)
        return n

    def _arrays(self, oid: int):
        """The runs of ``oid`` as int64 arrays (views, rebuilt after an add)."""
        if self._np_version != self.version:
            self._np = {}
            self._np_version = self.version
        a = self._np.get(oid)
        if a is None:
            a = self._np[oid] = tuple(np.frombuffer(x, dtype=np.int64) for x in self.maps[oid])
        return a

    def resolve(self, oids: np.ndarray, lbns: np.ndarray):
        """For rows (oid, lbn): (covered mask, target oids, target lbns), one
        level deep, in arrays; ``get`` row by row is the reference."""
        hit = np.zeros(len(oids), dtype=bool)
        toid = oids.copy()
        tlbn = lbns.copy()
        if not self.runs or not len(oids):
            return hit, toid, tlbn
        if len(self.maps) <= 16:
            # Few objects have runs: one pass over the rows per object is
            # cheaper than grouping the rows by object.
            cand = self.maps.keys()
        else:
            u = np.sort(oids)
            cand = [int(o) for o in u[np.concatenate(([True], u[1:] != u[:-1]))] if int(o) in self.maps]
        for oid in cand:
            sel = np.flatnonzero(oids == oid)
            if not len(sel):
                continue
            starts, ends, aoids, albns = self._arrays(oid)
            lb = lbns[sel]
            i = np.searchsorted(starts, lb, "right") - 1
            j = np.maximum(i, 0)
            inside = (i >= 0) & (lb < ends[j])
            sel, j, lb = sel[inside], j[inside], lb[inside]
            hit[sel] = True
            toid[sel] = aoids[j]
            tlbn[sel] = albns[j] + lb - starts[j]
        return hit, toid, tlbn


def running(pool) -> Scanner | None:
    return _running.get(pool.path)


class Scanner:
    """One post-process scan job over a pool.

    ``fingerprint(data) -> int`` replaces the engine's xxh3 checksum as the
    fingerprint (tests inject a colliding one); by default the checksum
    already stored in the block map is used, so unique blocks are never
    read."""

    def __init__(self, pool, fingerprint=None, progress=None):
        self.pool = pool
        self.fingerprint = fingerprint
        self.progress = progress
        self.store: DedupStore | None = None
        self._stop = False
        self._last_mirror = 0.0
        self.job: dict | None = None
        self._target_windows: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    # ---- public ---------------------------------------------------------------
    def stop(self) -> None:
        """Pause at the next batch; the job stays resumable."""
        self._stop = True

    def pending(self) -> dict | None:
        store = DedupStore(self.pool)
        try:
            return store.meta_get("job")
        finally:
            store.close()

    def start(self, volumes: list[str] | None = None, full: bool = False) -> dict:
        """Resume an unfinished job if there is one, else scan ``volumes``
        (default: every volume with sis enabled). Returns the job's summary
        (``job['state']`` is 'done' or 'paused')."""
        if volumes is not None:
            for v in volumes:
                pool_vol = self.pool.volume(v)  # raises VolumeNotFound
                if not config.get(self.pool, pool_vol.name)["enabled"]:
                    raise config.SisNotEnabled(volume=v)
        with self._session():
            job = self.store.meta_get("job")
            if job is not None and job.get("format") != JOB_FORMAT and job.get("state") != "done":
                # a job of an older scanner: its collected rows are in a form
                # this one does not read; scanning again only repeats work
                job = self._new_job(job.get("volumes"), job.get("full", False))
            if job is None or job.get("state") == "done":
                job = self._new_job(volumes, full)
            return self._run(job)

    def resume(self) -> dict | None:
        """Finish an interrupted job; None when there is none."""
        with self._session():
            job = self.store.meta_get("job")
            if job is None:
                return None
            if job.get("format") != JOB_FORMAT:
                job = self._new_job(job.get("volumes"), job.get("full", False))
            return self._run(job)

    # ---- job lifecycle --------------------------------------------------------
    class _Session:
        def __init__(self, sc):
            self.sc = sc

        def __enter__(self):
            sc = self.sc
            other = _running.get(sc.pool.path)
            if other is not None and other is not sc:
                raise ScanBusy(path=sc.pool.path)
            _running[sc.pool.path] = sc
            sc.store = DedupStore(sc.pool)
            sc._stop = False

        def __exit__(self, *exc):
            sc = self.sc
            try:
                sc.store.close()
            finally:
                sc.store = None
                _running.pop(sc.pool.path, None)

    def _session(self):
        return Scanner._Session(self)

    def _new_job(self, volumes, full) -> dict:
        pool = self.pool
        if volumes is None:
            volumes = [n for n, rec in config.all_volumes(pool).items() if rec["enabled"]]
        work, total = [], 0
        bs = pool.block_size
        for v in volumes:
            objs = list(pool.list_objects(v))
            for s in pool.list_snapshots(v):
                objs += pool.list_objects(v, s.name)
            for o in objs:
                work.append(o.id)
                total += -(-o.size // bs)
        live = set(object_names(pool))
        db = self.store.db
        db.execute("BEGIN")
        # Leaf signatures of deleted objects describe nothing any more.
        stale = [(oid,) for (oid,) in db.execute("SELECT DISTINCT oid FROM leafsig") if oid not in live]
        db.executemany("DELETE FROM leafsig WHERE oid=?", stale)
        db.execute("DELETE FROM covered")
        self._remove_job_files()
        job = {
            "format": JOB_FORMAT,
            "id": _uuid.uuid4().hex[:12],
            "volumes": list(volumes),
            "volume_ids": [pool.volume(v).id for v in volumes],
            "full": bool(full),
            "fingerprint": "xxh3" if self.fingerprint is None else "custom",
            "state": "running",
            "phase": "collect",
            "work": work,
            "item": 0,
            "lbn": 0,
            "total_blocks": total,
            "done_blocks": 0,
            "rows": 0,
            "rows_bytes": 0,
            "rows_done": 0,
            "buckets": 0,
            "bucket": 0,
            "row": 0,
            "idx_pos": 0,
            "idx_out": 0,
            "started": time.time(),
            "updated": time.time(),
            "counters": {
                "scanned": 0,
                "skipped": 0,
                "groups": 0,
                "compared": 0,
                "shared": 0,
                "refused": 0,
                "collisions": 0,
                "stale": 0,
            },
        }
        self.store.meta_put("job", job)
        db.execute("COMMIT")
        return job

    def _run(self, job: dict) -> dict:
        self.job = job
        job["state"] = "running"
        self._mirror(force=True)
        if job["phase"] == "collect":
            if not self._collect(job):
                return self._paused(job)
            job["phase"] = "sort"
            self._save(job)
            self._mirror(force=True)
        if job["phase"] == "sort":
            self._report("sort", 0, 1)
            self._sort(job)
            job["phase"] = "match"
            job["bucket"] = job["row"] = 0
            self._save(job)
            self._mirror(force=True)
            _unlink(self._rows_path(job))
            self._report("sort", 1, 1)
        if job["phase"] == "match":
            if not self._match(job):
                return self._paused(job)
        if job["phase"] == "publish":
            # the new index, complete and synced, replaces the old one
            if os.path.exists(self._new_index_path(job)):
                os.replace(self._new_index_path(job), self.store.index.path)
        return self._finish(job)

    def _paused(self, job):
        job["state"] = "paused"
        self._save(job)
        self._mirror(force=True)
        return job

    def _finish(self, job) -> dict:
        pool, db = self.pool, self.store.db
        job["state"] = "done"
        job["phase"] = "done"
        job["finished"] = time.time()
        summary = {
            "started": job["started"],
            "finished": job["finished"],
            "full": job["full"],
            "job": job["id"],
            **job["counters"],
        }
        db.execute("BEGIN")
        db.execute("DELETE FROM covered")
        self.store.meta_delete("job")
        db.execute("COMMIT")
        self._remove_job_files()
        by_id = {v.id: v.name for v in pool.list_volumes()}
        for vid in job["volume_ids"]:
            if vid in by_id:
                config.update(pool, by_id[vid], last_run=summary)
        pool.kv_delete(config.SCOPE, "job")
        self._report("done", 1, 1)
        return job

    def _save(self, job) -> None:
        job["updated"] = time.time()
        self.store.meta_put("job", job)

    def _mirror(self, force=False) -> None:
        now = time.monotonic()
        if force or now - self._last_mirror >= MIRROR_SECONDS:
            self._last_mirror = now
            j = {k: v for k, v in self.job.items() if k != "work"}
            self.pool.kv_put(config.SCOPE, "job", j)

    def _report(self, phase, done, total) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    # ---- phase 1: collect -----------------------------------------------------
    def _fp_of(self, pbn: int, csum: int) -> int:
        if self.fingerprint is None:
            return csum
        return (self.fingerprint(self.pool.read_pbn(pbn, csum)) & ((1 << 64) - 1)) or 1

    # ---- the job's row files ------------------------------------------------------
    def _dir(self) -> str:
        return os.path.dirname(self.store.path)

    def _rows_path(self, job) -> str:
        return os.path.join(self._dir(), f"job-{job['id']}.rows")

    def _new_index_path(self, job) -> str:
        return os.path.join(self._dir(), f"job-{job['id']}.idx")

    def _bucket_path(self, job, i: int) -> str:
        return os.path.join(self._dir(), f"job-{job['id']}.b{i}")

    def _remove_job_files(self) -> None:
        for p in glob.glob(os.path.join(self._dir(), "job-*")):
            _unlink(p)

    # ---- phase 1: collect -----------------------------------------------------
    def _fp_of(self, pbn: int, csum: int) -> int:
        if self.fingerprint is None:
            return csum
        return (self.fingerprint(self.pool.read_pbn(pbn, csum)) & ((1 << 64) - 1)) or 1

    def _collect(self, job) -> bool:
        """Walk the maps a leaf at a time; rows go to the job's rows file
        (appended, synced, then its length committed with the cursor, so a
        resumed job truncates it to what its cursor covers)."""
        pool, db = self.pool, self.store.db
        names = object_names(pool)
        work = job["work"]
        c = job["counters"]
        full = job["full"]
        # One batch buffer for the whole collect (a commit's worth of
        # leaves), filled in place: no array per leaf, no joined copy.
        batch = _Scratch(K.ROW, COLLECT_BATCH_LEAVES * LEAF).arr
        fd = os.open(self._rows_path(job), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, job["rows_bytes"])
            os.lseek(fd, job["rows_bytes"], os.SEEK_SET)
            while job["item"] < len(work):
                oid = work[job["item"]]
                nm = names.get(oid)
                if nm is None:
                    job["item"] += 1
                    job["lbn"] = 0
                    continue
                vol, snap, name = nm
                old = {} if full else dict(db.execute("SELECT leaf, sig FROM leafsig WHERE oid=?", (oid,)))
                sigs: list[tuple] = []
                leaves = 0
                filled = [0]  # rows in batch

                def commit(next_lbn):
                    nrows = filled[0]
                    if nrows:
                        _writev_all(fd, [batch[:nrows]])
                        os.fdatasync(fd)
                    db.execute("BEGIN")
                    db.executemany("INSERT OR REPLACE INTO leafsig (oid, leaf, sig) VALUES (?,?,?)", sigs)
                    job["rows"] += nrows
                    job["rows_bytes"] += nrows * K.ROW.itemsize
                    job["done_blocks"] += max(0, next_lbn - job["lbn"])
                    job["lbn"] = next_lbn
                    self._save(job)
                    db.execute("COMMIT")
                    filled[0] = 0
                    sigs.clear()
                    self._report("collect", job["done_blocks"], job["total_blocks"])
                    self._mirror()

                try:
                    for base, leaf, nb in pool.iter_leaf_maps(vol, name, snap, job["lbn"]):
                        if leaves >= COLLECT_BATCH_LEAVES:
                            commit(base)
                            leaves = 0
                            if self._stop:
                                return False
                        lbns, pbns, csums, sig = K.leaf_rows(base, leaf, nb)
                        if not len(lbns):
                            continue
                        if old.get(base // LEAF) == sig:
                            c["skipped"] += len(lbns)
                        else:
                            if self.fingerprint is None:
                                fps = csums
                            else:
                                fps = [self._fp_of(int(p), int(x)) for p, x in zip(pbns, csums, strict=True)]
                            k = filled[0]
                            K.fill_rows(batch[k : k + len(lbns)], fps, pbns, oid, lbns)
                            filled[0] = k + len(lbns)
                            c["scanned"] += len(lbns)
                            sigs.append((oid, base // LEAF, sig))
                        leaves += 1
                except NotFound:
                    pass  # deleted or renamed meanwhile: the next scan sees it
                size = _size_of(pool, vol, snap, name, oid)
                end = max(job["lbn"], -(-size // pool.block_size))
                commit(end)
                job["item"] += 1
                job["lbn"] = 0
                self._save(job)
                if self._stop:
                    return False
        finally:
            os.close(fd)
        return True

    # ---- phase 2: sort --------------------------------------------------------
    def _sort(self, job) -> None:
        """The rows file into ``buckets`` files, each sorted by fingerprint;
        a bucket holds a range of fingerprints, so walking the buckets
        in order walks all rows in fingerprint order with at most
        SORT_ROWS (about) in memory. Idempotent: a resumed sort starts over.

        Rows are read into and gathered into two buffers reused for every
        chunk and bucket (grown only for a bucket larger than any before):
        allocating and freeing arrays of a few MiB per chunk leaves the
        allocator's heap fragmented and the process's RSS higher."""
        n = job["rows"]
        nb = 1
        while n > SORT_ROWS * nb:
            nb *= 2
        job["buckets"] = nb
        src = self._rows_path(job)
        rows_buf, out_buf = _Scratch(K.ROW, min(n, SORT_ROWS)), _Scratch(K.ROW, min(n, SORT_ROWS))
        if nb == 1:
            rows = _read_rows(src, 0, n, rows_buf)
            _save_array(self._bucket_path(job, 0), K.sort_rows(rows, out=out_buf.get(len(rows))))
            return
        shift = np.uint64(64 - (nb.bit_length() - 1))
        sign = np.uint64(1 << 63)
        for i in range(nb):
            _unlink(self._bucket_path(job, i))
        done = 0
        sizes = np.zeros(nb, dtype=np.int64)
        while done < n:
            chunk = _read_rows(src, done, min(SORT_ROWS, n - done), rows_buf)
            done += len(chunk)
            # signed order: flip the sign bit, then the top bits are the bucket
            b = (chunk["fp"].view(np.uint64) ^ sign) >> shift
            order = np.argsort(b, kind="stable")
            chunk = np.take(chunk, order, out=out_buf.get(len(chunk)), mode="clip")  # no temporary
            counts = np.bincount(b.astype(np.int64), minlength=nb)
            sizes += counts
            cuts = np.concatenate(([0], np.cumsum(counts)))
            for i in range(nb):
                if cuts[i + 1] > cuts[i]:
                    # opened per chunk: thousands of buckets stay under the fd limit
                    fd = os.open(self._bucket_path(job, i), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    try:
                        _writev_all(fd, [chunk[cuts[i] : cuts[i + 1]]])
                    finally:
                        os.close(fd)
        chunk = rows = None
        rows_buf.get(int(sizes.max()))  # the largest bucket, once
        out_buf.get(int(sizes.max()))
        for i in range(nb):
            p = self._bucket_path(job, i)
            if os.path.exists(p):
                rows = _read_rows(p, 0, os.path.getsize(p) // K.ROW.itemsize, rows_buf)
                _save_array(p, K.sort_rows(rows, out=out_buf.get(len(rows))))

    # ---- phase 3: match and share ---------------------------------------------
    def _match(self, job) -> bool:
        """Walk the sorted buckets a window of rows at a time. Groups the
        arrays show need nothing (one physical block, known to the index or
        new) are settled in bulk; each other group goes through
        ``_match_group`` (confirm, share, extend into runs)."""
        db = self.store.db
        names = object_names(self.pool)
        self._shared_at_cp = job["counters"]["shared"]
        self._shared_at_commit = job["counters"]["shared"]
        self.covered = Covered()
        for oid, lbn, n, aoid, albn in db.execute(
            "SELECT oid, lbn, n, aoid, albn FROM covered ORDER BY oid, lbn"
        ):
            self.covered.add(oid, lbn, n, aoid, albn)
        learned: list[tuple[int, int]] = []
        try:
            self.merge = IndexMerge(
                self.store.index.path, self._new_index_path(job), job["idx_pos"], job["idx_out"]
            )
        except IndexMergeLost:
            # the new index lost its tail in a crash: match everything again
            # (every step is idempotent; shares already done are settled)
            for k in ("bucket", "row", "rows_done", "idx_pos", "idx_out"):
                job[k] = 0
            _unlink(self._new_index_path(job))
            self.merge = IndexMerge(self.store.index.path, self._new_index_path(job))
        self._groups_in_batch = 0
        self._report("match", job["rows_done"], job["rows"])
        db.execute("BEGIN")
        try:
            while job["bucket"] < job["buckets"]:
                p = self._bucket_path(job, job["bucket"])
                rows = np.fromfile(p, dtype=K.ROW) if os.path.exists(p) else np.empty(0, dtype=K.ROW)
                while job["row"] < len(rows):
                    if not self._match_window(job, rows, names, learned):
                        return False
                job["bucket"] += 1
                job["row"] = 0
                if not self._commit_match(job, learned):
                    return False
            self.merge.finish()  # the rest copied through, synced
            job["idx_pos"], job["idx_out"] = self.merge.pos, self.merge.out
            job["phase"] = "publish"
            self._save(job)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self.merge.close()
        self._learn(learned)
        self._report("match", job["rows_done"], job["rows"])
        return True

    def _known_of(self, sfp: int) -> list[int]:
        """The old index's PBNs for fingerprint ``sfp`` (of the current window)."""
        kfp, kpbn = self._window_known
        i, j = np.searchsorted(kfp, sfp, "left"), np.searchsorted(kfp, sfp, "right")
        return kpbn[i:j].tolist()

    def _current_pbns(self, w: np.ndarray, starts: np.ndarray):
        """The block each row of window ``w`` maps now, as ``_current`` does
        row by row, and a per-group flag: False where a row cannot be
        resolved in arrays (left to ``_match_group``)."""
        cur = w["pbn"].copy()
        ok = np.ones(len(starts) - 1, dtype=bool)
        if not self.covered:
            return cur, ok
        hit, toid, tlbn = self.covered.resolve(w["oid"], w["lbn"])
        if not hit.any():
            return cur, ok
        size = np.diff(starts)
        gid = np.repeat(np.arange(len(starts) - 1), size)
        keys = (w["oid"] << 40) | w["lbn"]
        moved = np.flatnonzero(hit)
        rk = (toid[moved] << 40) | tlbn[moved]
        g = gid[moved]
        longest = int(size[g].max())
        if longest <= SMALL_GROUP_SCAN:
            # Groups are small (a few copies): look for each moved row's
            # target among its group's rows, one position at a time.
            src = np.full(len(moved), -1, dtype=np.int64)
            first, n = starts[g], size[g]
            for k in range(longest):
                r = np.where(k < n, first + k, 0)
                m = (k < n) & (keys[r] == rk) & ~hit[r] & (src < 0)  # in the group, and not moved itself
                src[m] = r[m]
            found = src >= 0
        else:
            order = np.argsort(keys)  # (oid, lbn) is unique among a job's rows: no ties
            sk = keys[order]
            j = np.minimum(np.searchsorted(sk, rk), len(sk) - 1)
            src = order[j]
            found = (sk[j] == rk) & (gid[src] == g) & ~hit[src]  # in the group, and not moved itself
        cur[moved[found]] = w["pbn"][src[found]]
        bad = moved[~found]
        ok[gid[bad]] = False
        return cur, ok

    def _match_window(self, job, rows, names, learned) -> bool:
        """One window of whole groups from job['row']; False to stop."""
        c = job["counters"]
        pos = job["row"]
        end = min(len(rows), pos + MATCH_BATCH_ROWS)
        if end < len(rows):  # extend to the end of the last group
            tail = np.flatnonzero(rows["fp"][end:] != rows["fp"][end - 1])
            end = end + int(tail[0]) if len(tail) else len(rows)
        w = rows[pos:end]
        fps = w["fp"]
        starts = K.groups(fps)
        kfp, kpbn = self.merge.peek(fps[starts[:-1]])
        self._window_known = (kfp, kpbn)
        version = self.covered.version
        cur, resolvable = self._current_pbns(w, starts)
        ok, unknown = K.settled(fps, cur, starts, kfp, kpbn)
        ok &= resolvable
        g, ng = 0, len(starts) - 1
        while g < ng:
            if ok[g]:
                h = g
                while h < ng and ok[h]:
                    h += 1
                # Settled: each group's one entry is the block all its rows
                # map (new, or the one the index already has).
                first = starts[g:h]
                self.merge.decide(fps[first], fps[first], cur[first])
                job["rows_done"] += int(starts[h] - starts[g])
                g = h
                continue
            a, b = int(starts[g]), int(starts[g + 1])
            members = sorted(
                zip(w["pbn"][a:b].tolist(), w["oid"][a:b].tolist(), w["lbn"][a:b].tolist(), strict=True)
            )
            self._match_group(int(fps[a]), members, names, learned)
            job["rows_done"] += b - a
            job["row"] = pos + b
            g += 1
            self._groups_in_batch += 1
            if (
                self._groups_in_batch >= MATCH_BATCH_GROUPS
                or c["shared"] - self._shared_at_commit >= MATCH_BATCH_SHARES
            ):
                if not self._commit_match(job, learned):
                    return False
            if self.covered.version != version:
                return True  # runs moved rows: classify the rest again
        job["row"] = end
        return self._commit_match(job, learned)

    def _commit_match(self, job, learned) -> bool:
        """Commit the cursor with the batch's index changes; False to stop."""
        db = self.store.db
        self._groups_in_batch = 0
        self.merge.flush()
        job["idx_pos"], job["idx_out"] = self.merge.pos, self.merge.out
        self._save(job)
        db.execute("COMMIT")
        self._shared_at_commit = job["counters"]["shared"]
        self._learn(learned)
        self._report("match", job["rows_done"], job["rows"])
        self._mirror()
        self._maybe_checkpoint()
        if self._stop:
            return False
        db.execute("BEGIN")
        return True

    def _maybe_checkpoint(self) -> None:
        c = self.job["counters"]
        if c["shared"] - self._shared_at_cp >= CHECKPOINT_SHARES:
            # The engine keeps every share's refcount change in memory until
            # its next consistency point; commit one so memory stays bounded.
            self.pool.checkpoint()
            self._shared_at_cp = c["shared"]

    def _learn(self, learned) -> None:
        hook = getattr(self.pool, "inline_dedup", None)
        if learned and hook is not None and self.fingerprint is None:
            hook.learn(learned)
        learned.clear()

    def _content_fp(self, data: bytes) -> int:
        if self.fingerprint is None:
            return _xxh(data)
        return (self.fingerprint(data) & ((1 << 64) - 1)) or 1

    def _match_group(self, sfp: int, members, names, learned) -> None:
        """One fingerprint: confirm which blocks are equal, share them; the
        index's entries for it are decided here."""
        known = self._known_of(sfp)
        entries = self._match_group_entries(sfp, members, names, learned, known)
        e = sorted(entries)
        self.merge.decide(np.array([sfp], dtype=np.int64), np.full(len(e), sfp, dtype=np.int64), e)

    def _match_group_entries(self, sfp: int, members, names, learned, known: list[int]) -> set[int]:
        pool = self.pool
        c = self.job["counters"]
        fp = u64(sfp)
        entries = set(known)
        if self.covered:
            members = self._current(members)
            if not members:
                return entries
        counts = Counter(p for p, _, _ in members)
        if len(counts) == 1 and (not known or (len(known) == 1 and known[0] in counts)):
            if not known:  # a unique block: remember it as the canonical copy
                entries.add(members[0][0])
            return entries
        c["groups"] += 1
        cands = list(dict.fromkeys(known + sorted(counts)))
        stale: set[int] = set()

        def read(p):
            data = pool.read_pbn(p)
            c["compared"] += 1
            if self._content_fp(data) != fp:
                stale.add(p)  # freed or rewritten since it was indexed / collected
                return None
            return data

        classes = group_by_content(cands, read)
        if len(classes) > 1:
            c["collisions"] += 1
        for p in stale:
            if p in known:
                c["stale"] += 1
                entries.discard(p)
        for cls in classes:
            in_cls = set(cls)
            rows = [m for m in members if m[0] in in_cls]
            ranked = sorted((p for p in cls if p in counts), key=lambda p: (-counts[p], p))
            targets = [p for p in cls if p in known] + ranked
            target = targets[0]
            if rows:
                at = next((m for m in members if m[0] == target), None)
                if at is not None:
                    ok, tried = self._share_runs(rows, at, names)
                else:
                    ok, tried = self._share_rows(rows, target, names)
                if not ok and tried and target in known and len(ranked) > (1 if target in ranked else 0):
                    # The indexed copy may have been freed: fall back to a live one.
                    alt = next(p for p in ranked if p != target)
                    ok2, _ = self._share_rows(rows, alt, names)
                    if ok2:
                        entries.discard(target)
                        target = alt
            entries.add(target)
            for p in cls:
                if p != target and p in known:
                    entries.discard(p)
            learned.append((fp, target))
        return entries

    def _current(self, members):
        """The group's rows with the PBNs they map now: a row a run remapped
        maps its run target's collected block, a row of this same group
        (equal fingerprints are what runs extend over). Rows whose target
        cannot be resolved are left out (not shared this scan)."""
        cov = self.covered
        by_loc = {(oid, lbn): pbn for pbn, oid, lbn in members}
        out = []
        for pbn, oid, lbn in members:
            loc = (oid, lbn)
            for _ in range(8):  # a run's target may itself have been remapped later
                nxt = cov.get(*loc)
                if nxt is None:
                    break
                loc = nxt
            else:
                continue
            if loc != (oid, lbn):
                pbn = by_loc.get(loc)
                if pbn is None:
                    continue
            out.append((pbn, oid, lbn))
        return out

    def _share_runs(self, rows, at, names) -> tuple[int, int]:
        """Share each row onto the target row ``at`` = (pbn, oid, lbn) and
        extend each match into a run; returns (blocks shared, rows tried)."""
        c = self.job["counters"]
        ok = tried = 0
        # The target's block-map windows, read once for all the group's rows
        # (each copy's run reads the same ones). Only hints, like any window:
        # share_run checks the target is still allocated and equal byte for
        # byte, and a window of an object a run then remaps is dropped.
        self._target_windows = {}
        for row in rows:
            if row[0] == at[0]:
                continue
            if (row[1], row[2]) in self.covered:
                # Remapped by a run onto a block that is not this group's
                # target: move it one block at a time (its neighbours' rows are stale).
                done, n = self._share_rows([row], at[0], names)
                self._forget_windows(row[1])
                ok += done
                tried += n
                continue
            tried += 1
            k = self._extend(row, at, names)
            if k:
                ok += k
            else:
                c["refused"] += 1
        self._target_windows = {}
        return ok, tried

    def _forget_windows(self, oid: int) -> None:
        """Drop the target windows of ``oid`` (its map just changed)."""
        if any(k[0] == oid for k in self._target_windows):
            self._target_windows = {k: v for k, v in self._target_windows.items() if k[0] != oid}

    def _extend(self, row, at, names) -> int:
        """Remap blocks lbnB, lbnB+1, ... of row's object onto the blocks
        at lbnA, lbnA+1, ... of the target's object, for as long as both map
        blocks whose checksums agree (read from the block maps now, a leaf
        window at a time); the engine confirms every block byte for byte.
        Returns the blocks shared."""
        db, pool, cov = self.store.db, self.pool, self.covered
        c = self.job["counters"]
        _, oid_b, lbn_b = row
        _, oid_a, lbn_a = at
        nm_b, nm_a = names.get(oid_b), names.get(oid_a)
        if nm_b is None or nm_a is None:
            return 0
        vol, snap, name = nm_b
        limit = MATCH_RUN_BLOCKS
        if oid_a == oid_b:
            # Overlapping source and target ranges would only shift blocks around.
            limit = min(limit, abs(lbn_a - lbn_b))
        total = 0
        while total < limit:
            n = min(RUN_CALL, limit - total)
            lb, la = lbn_b + total, lbn_a + total
            pb, cb = _window(pool, nm_b, lb, n)
            key = (oid_a, la, n)
            if key not in self._target_windows:
                self._target_windows[key] = _window(pool, nm_a, la, n)
            pa, ca = self._target_windows[key]
            # Stop at a hole, a different checksum, a block already shared,
            # or a block a run remapped.
            k = K.first_mismatch(pb, pa, cb, ca)
            k = cov.free_prefix(oid_a, la, cov.free_prefix(oid_b, lb, k))
            if not k:
                break
            got = pool.share_run(vol, name, snap, lb, pb[:k].tolist(), pa[:k].tolist())
            if got:
                self._forget_windows(oid_b)
                cov.add(oid_b, lb, got, oid_a, la)
                db.execute(
                    "INSERT OR REPLACE INTO covered (oid, lbn, n, aoid, albn) VALUES (?,?,?,?,?)",
                    (oid_b, lb, got, oid_a, la),
                )
                c["shared"] += got
                total += got
                self._maybe_checkpoint()
            if got < k or k < n:
                break
        return total

    def _share_rows(self, rows, target, names) -> tuple[int, int]:
        c = self.job["counters"]
        batch = []
        for pbn, oid, lbn in rows:
            if pbn == target:
                continue
            nm = names.get(oid)
            if nm is None:
                continue
            vol, snap, name = nm
            batch.append((vol, name, snap, lbn, pbn))
        if not batch:
            return 0, 0
        # One engine call per 256 rows of a fingerprint group: one lock hold
        # and the target read once, short enough that client I/O waits little.
        done = []
        for i in range(0, len(batch), 256):
            done += self.pool.share_blocks(target, batch[i : i + 256])
        ok = sum(done)
        c["shared"] += ok
        c["refused"] += len(done) - ok
        return ok, len(done)


def _window(pool, nm, lbn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """PBNs and checksums of blocks [lbn, lbn+n) of object ``nm`` now (0 for
    holes, past its end, or when it is gone); n <= LEAF."""
    vol, snap, name = nm
    pb = np.zeros(n, dtype=np.int64)
    cs = np.zeros(n, dtype=np.int64)
    try:
        for base, leaf, nb in pool.iter_leaf_maps(vol, name, snap, lbn - lbn % LEAF):
            if base >= lbn + n:
                break
            s, e = max(lbn, base), min(lbn + n, base + LEAF, nb)
            if e > s:
                ents = np.frombuffer(leaf, dtype=np.int64)
                pb[s - lbn : e - lbn] = ents[s - base : e - base]
                cs[s - lbn : e - lbn] = ents[LEAF + s - base : LEAF + e - base]
    except NotFound:
        pass
    return pb, cs


class _Scratch:
    """One reusable array of ``dtype``: ``get(k)`` is a view of k elements,
    the array replaced by a larger one when k exceeds it. The array lives
    in an anonymous mapping of its own, so its pages go back to the system
    as soon as it is dropped, rather than staying in the allocator's heap
    (fragmented by the phase's other arrays) for the rest of the scan."""

    def __init__(self, dtype, k: int = 0):
        self.dtype = np.dtype(dtype)
        self.arr = np.empty(0, dtype=self.dtype)
        if k:
            self.get(k)

    def get(self, k: int) -> np.ndarray:
        if k > len(self.arr):
            self.arr = np.empty(0, dtype=self.dtype)  # the old mapping goes first
            self.arr = np.frombuffer(mmap.mmap(-1, k * self.dtype.itemsize), dtype=self.dtype)
        return self.arr[:k]


def _read_rows(path: str, first: int, count: int, buf: _Scratch) -> np.ndarray:
    """Rows [first, first+count) of the rows file ``path``, read into ``buf``."""
    out = buf.get(count)
    mv = memoryview(out.view(np.uint8))
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        while got < len(mv):
            k = os.preadv(fd, [mv[got:]], first * K.ROW.itemsize + got)
            if not k:
                break
            got += k
    finally:
        os.close(fd)
    return out[: got // K.ROW.itemsize]


def _writev_all(fd: int, arrays) -> None:
    bufs = [memoryview(np.ascontiguousarray(a).view(np.uint8)) for a in arrays if len(a)]
    while bufs:
        n = os.writev(fd, bufs[:512])  # within IOV_MAX
        while n and bufs:
            if n >= len(bufs[0]):
                n -= len(bufs[0])
                bufs.pop(0)
            else:
                bufs[0] = bufs[0][n:]
                n = 0


def _save_array(path: str, arr: np.ndarray) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _writev_all(fd, [arr])
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _size_of(pool, vol, snap, name, oid) -> int:
    """Size of object ``oid`` (``vol``/``snap``/``name``): one lookup by name,
    not a walk of the dataset's objects (that made a collect pass
    O(objects^2)); 0 when it is gone or the name now holds another object."""
    try:
        o = pool.object_info(vol, name, snap)
    except NotFound:
        return 0
    return o.size if o.id == oid else 0


def scan(pool, volumes=None, full=False, fingerprint=None, progress=None) -> dict:
    """Run (or resume) a scan to completion in this thread; its summary."""
    return Scanner(pool, fingerprint=fingerprint, progress=progress).start(volumes, full)


def run_due(pool, now=None) -> list[str]:
    """What the daemon's scheduler calls: scan every volume whose schedule
    is due; returns their names."""
    vols = config.due(pool, now)
    if vols:
        scan(pool, vols)
    return vols
