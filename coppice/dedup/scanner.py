"""Post-process deduplication scans: resumable jobs that merge identical blocks.

Contract:

* **What is shared.** A scan covers the chosen volumes, their snapshots
  (clones are volumes of their own), and matches their blocks against every
  block the pool-wide fingerprint index knows, so blocks are shared within a
  volume and across volumes. Sharing a block never changes what any volume
  or snapshot reads: the scanner confirms every match byte for byte
  (``index.group_by_content``) and the engine's ``share_block`` checks the
  bytes and the mapping again.
* **Never loses a write.** ``share_block`` remaps a block only if it still
  maps the physical block the scan read; a block rewritten meanwhile is left
  alone and picked up by the next scan.
* **Beside client I/O.** The engine's lock is held for one leaf (512
  blocks) while collecting and for one block while sharing; writers run in
  between.
* **Resumable.** A job has phases ``collect`` (walk the maps, record
  (fingerprint, pbn, object, lbn) rows in ``dedup/index.db``), ``sort``
  (SQLite builds a (fp, pbn) index: an external sort with bounded memory)
  and ``match`` (walk the rows in fingerprint order, confirm, share). Each
  phase's cursor commits with its rows, so a killed scan resumes where it
  stopped and redoes at most one batch (every step is idempotent).
  ``Scanner.start`` resumes an unfinished job before starting a new one.
* **Incremental by default.** Without ``full`` a scan skips leaves whose
  (lbn, pbn) list is unchanged since the last scan ("new blocks only", like
  ``sis start``); ``full`` (``sis start -s``) re-reads everything.
* **Progress** goes to ``progress(phase, done, total)`` and, every few
  seconds and at each phase change, to the pool's kv (scope ``sis``, key
  ``job``) for ``sis status``.

Memory: one leaf of rows and one fingerprint group at a time, plus
SQLite's capped cache: it does not grow with the pool (see bench/dedup.py).

Threading: run one Scanner at a time per pool (``ScanBusy`` otherwise); it
may run in a thread beside the NBD server. ``stop()`` from another thread
pauses it at the next batch, resumable.
"""

from __future__ import annotations

import time
import uuid as _uuid
from array import array
from collections import Counter

import xxhash

from ..errors import Busy, NotFound
from . import config
from .index import DedupStore, group_by_content, s64, u64

LEAF = 512                 # blocks per engine leaf (engine.format.LEAF_FANOUT)
COLLECT_BATCH_LEAVES = 16  # leaves per commit while collecting
MATCH_BATCH_ROWS = 4096    # rows fetched per query while matching
MATCH_BATCH_GROUPS = 256   # fingerprint groups per commit while matching
CHECKPOINT_SHARES = 8192   # shares between consistency points: bounds the engine's pending refcounts
MIRROR_SECONDS = 30.0      # how often progress is mirrored to the pool kv (each is a consistency point)

_running: dict[str, "Scanner"] = {}


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


def running(pool) -> "Scanner | None":
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
                pool_vol = self.pool.volume(v)   # raises VolumeNotFound
                if not config.get(self.pool, pool_vol.name)["enabled"]:
                    raise config.SisNotEnabled(volume=v)
        with self._session():
            job = self.store.meta_get("job")
            if job is None or job.get("state") == "done":
                job = self._new_job(volumes, full)
            return self._run(job)

    def resume(self) -> dict | None:
        """Finish an interrupted job; None when there is none."""
        with self._session():
            job = self.store.meta_get("job")
            if job is None:
                return None
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
        db.execute("DELETE FROM rows")
        db.execute("DROP INDEX IF EXISTS rows_fp")
        job = {"id": _uuid.uuid4().hex[:12], "volumes": list(volumes),
               "volume_ids": [pool.volume(v).id for v in volumes], "full": bool(full),
               "fingerprint": "xxh3" if self.fingerprint is None else "custom",
               "state": "running", "phase": "collect", "work": work, "item": 0, "lbn": 0,
               "total_blocks": total, "done_blocks": 0, "rows": 0, "rows_done": 0, "cursor": None,
               "started": time.time(), "updated": time.time(),
               "counters": {"scanned": 0, "skipped": 0, "groups": 0, "compared": 0, "shared": 0,
                            "refused": 0, "collisions": 0, "stale": 0}}
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
            db = self.store.db
            db.execute("CREATE INDEX IF NOT EXISTS rows_fp ON rows(fp, pbn)")
            job["rows"] = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
            job["phase"] = "match"
            self._save(job)
            self._mirror(force=True)
            self._report("sort", 1, 1)
        if job["phase"] == "match":
            if not self._match(job):
                return self._paused(job)
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
        summary = {"started": job["started"], "finished": job["finished"], "full": job["full"],
                   "job": job["id"], **job["counters"]}
        db.execute("BEGIN")
        db.execute("DELETE FROM rows")
        db.execute("DROP INDEX IF EXISTS rows_fp")
        self.store.meta_delete("job")
        db.execute("COMMIT")
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

    def _collect(self, job) -> bool:
        pool, db = self.pool, self.store.db
        names = object_names(pool)
        work = job["work"]
        c = job["counters"]
        full = job["full"]
        while job["item"] < len(work):
            oid = work[job["item"]]
            nm = names.get(oid)
            if nm is None:
                job["item"] += 1
                job["lbn"] = 0
                continue
            vol, snap, name = nm
            rows: list[tuple] = []
            sigs: list[tuple] = []
            leaves = 0
            cur_leaf = None
            ents: list[tuple[int, int, int]] = []

            def close_leaf():
                nonlocal leaves
                if cur_leaf is None:
                    return
                sig = s64(xxhash.xxh3_64_intdigest(array("Q", [x for e in ents for x in e[:2]]).tobytes()))
                old = None if full else db.execute("SELECT sig FROM leafsig WHERE oid=? AND leaf=?",
                                                   (oid, cur_leaf)).fetchone()
                if old is not None and old[0] == sig:
                    c["skipped"] += len(ents)
                else:
                    for lbn, pbn, csum in ents:
                        rows.append((oid, lbn, s64(self._fp_of(pbn, csum)), pbn))
                    c["scanned"] += len(ents)
                    sigs.append((oid, cur_leaf, sig))
                leaves += 1

            def commit(next_lbn):
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO rows (oid, lbn, fp, pbn) VALUES (?,?,?,?)", rows)
                db.executemany("INSERT OR REPLACE INTO leafsig (oid, leaf, sig) VALUES (?,?,?)", sigs)
                job["done_blocks"] += max(0, next_lbn - job["lbn"])
                job["lbn"] = next_lbn
                self._save(job)
                db.execute("COMMIT")
                rows.clear()
                sigs.clear()
                self._report("collect", job["done_blocks"], job["total_blocks"])
                self._mirror()

            try:
                for lbn, pbn, csum in pool.iter_blocks(vol, name, snap, job["lbn"]):
                    leaf = lbn // LEAF
                    if leaf != cur_leaf:
                        close_leaf()
                        if leaves >= COLLECT_BATCH_LEAVES:
                            commit(leaf * LEAF)
                            leaves = 0
                            if self._stop:
                                return False
                        cur_leaf, ents = leaf, []
                    ents.append((lbn, pbn, csum))
                close_leaf()
            except NotFound:
                pass   # deleted or renamed meanwhile: the next scan sees it
            size = next((o.size for o in _objects(pool, vol, snap) if o.id == oid), 0)
            end = max(job["lbn"], -(-size // pool.block_size))
            commit(end)
            job["item"] += 1
            job["lbn"] = 0
            self._save(job)
            if self._stop:
                return False
        return True

    # ---- phase 3: match and share ---------------------------------------------
    def _match(self, job) -> bool:
        db = self.store.db
        names = object_names(self.pool)
        self._shared_at_cp = job["counters"]["shared"]
        group_fp = None
        members: list[tuple[int, int, int]] = []
        key = None if job["cursor"] is None else (job["cursor"], (1 << 63) - 1, (1 << 63) - 1, (1 << 63) - 1)
        groups_in_batch = 0
        learned: list[tuple[int, int]] = []
        db.execute("BEGIN")
        try:
            while True:
                if key is None:
                    chunk = db.execute("SELECT fp, pbn, oid, lbn FROM rows ORDER BY fp, pbn, oid, lbn LIMIT ?",
                                       (MATCH_BATCH_ROWS,)).fetchall()
                else:
                    chunk = db.execute("SELECT fp, pbn, oid, lbn FROM rows WHERE (fp, pbn, oid, lbn) > (?,?,?,?) "
                                       "ORDER BY fp, pbn, oid, lbn LIMIT ?", (*key, MATCH_BATCH_ROWS)).fetchall()
                if not chunk:
                    break
                key = chunk[-1]
                for fp, pbn, oid, lbn in chunk:
                    if fp != group_fp:
                        if members:
                            self._match_group(group_fp, members, names, learned)
                            job["cursor"] = group_fp
                            job["rows_done"] += len(members)
                            groups_in_batch += 1
                        group_fp, members = fp, []
                    members.append((pbn, oid, lbn))
                if groups_in_batch >= MATCH_BATCH_GROUPS:
                    groups_in_batch = 0
                    self._save(job)
                    db.execute("COMMIT")
                    self._learn(learned)
                    self._report("match", job["rows_done"], job["rows"])
                    self._mirror()
                    if job["counters"]["shared"] - self._shared_at_cp >= CHECKPOINT_SHARES:
                        # The engine keeps every share's refcount change in memory until
                        # its next consistency point; commit one so memory stays bounded.
                        self.pool.checkpoint()
                        self._shared_at_cp = job["counters"]["shared"]
                    if self._stop:
                        return False
                    db.execute("BEGIN")
            if members:
                self._match_group(group_fp, members, names, learned)
                job["cursor"] = group_fp
                job["rows_done"] += len(members)
            self._save(job)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._learn(learned)
        self._report("match", job["rows_done"], job["rows"])
        return True

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
        """One fingerprint: confirm which blocks are equal, share them."""
        db, pool = self.store.db, self.pool
        c = self.job["counters"]
        fp = u64(sfp)
        counts = Counter(p for p, _, _ in members)
        known = [r[0] for r in db.execute("SELECT pbn FROM fpidx WHERE fp=?", (sfp,))]
        if len(counts) == 1 and (not known or (len(known) == 1 and known[0] in counts)):
            if not known:   # a unique block: remember it as the canonical copy
                db.execute("INSERT OR IGNORE INTO fpidx (fp, pbn) VALUES (?, ?)", (sfp, members[0][0]))
            return
        c["groups"] += 1
        cands = list(dict.fromkeys(known + sorted(counts)))
        stale: set[int] = set()

        def read(p):
            data = pool.read_pbn(p)
            c["compared"] += 1
            if self._content_fp(data) != fp:
                stale.add(p)    # freed or rewritten since it was indexed / collected
                return None
            return data

        classes = group_by_content(cands, read)
        if len(classes) > 1:
            c["collisions"] += 1
        for p in stale:
            if p in known:
                c["stale"] += 1
                db.execute("DELETE FROM fpidx WHERE fp=? AND pbn=?", (sfp, p))
        for cls in classes:
            in_cls = set(cls)
            rows = [m for m in members if m[0] in in_cls]
            ranked = sorted((p for p in cls if p in counts), key=lambda p: (-counts[p], p))
            targets = [p for p in cls if p in known] + ranked
            target = targets[0]
            if rows:
                ok, tried = self._share_rows(rows, target, names)
                if not ok and tried and target in known and len(ranked) > (1 if target in ranked else 0):
                    # The indexed copy may have been freed: fall back to a live one.
                    alt = next(p for p in ranked if p != target)
                    ok2, _ = self._share_rows(rows, alt, names)
                    if ok2:
                        db.execute("DELETE FROM fpidx WHERE fp=? AND pbn=?", (sfp, target))
                        target = alt
            db.execute("INSERT OR IGNORE INTO fpidx (fp, pbn) VALUES (?, ?)", (sfp, target))
            for p in cls:
                if p != target and p in known:
                    db.execute("DELETE FROM fpidx WHERE fp=? AND pbn=?", (sfp, p))
            learned.append((fp, target))

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
            done += self.pool.share_blocks(target, batch[i:i + 256])
        ok = sum(done)
        c["shared"] += ok
        c["refused"] += len(done) - ok
        return ok, len(done)


def _objects(pool, vol, snap):
    try:
        return pool.list_objects(vol, snap)
    except NotFound:
        return []


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
