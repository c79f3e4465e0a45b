"""Power loss, simulated for real: what was acknowledged as durable survives.

The engine's data file and intent log run on ``crashfs.CrashFiles``: writes
not yet synced are kept apart and, at a power cut at a random I/O call, are
dropped, kept or torn at random. Each trial (seeded) writes, trims,
flushes, checkpoints and snapshots on a fresh pool until the cut, then
opens what the disk kept (a copy of the pool directory) and checks:

* every block holds the version that was durable at the cut — the last one
  written before the last completed flush, consistency point or management
  operation — or a version written after it; never an older one, never
  garbage (a read of a block whose checksum does not match fails the test);
* every snapshot whose creation returned exists;
* fsck and scrub are clean.

The sensitivity tests prove the harness can tell: with the data file's
fdatasync taken out of ``flush``, or the intent log's, or the data sync
before a consistency point's commit, trials fail.
"""

import os
import random
import shutil
import struct
import tempfile

import pytest

from coppice.engine import Pool, consistency_point

from .crashfs import CrashFiles, PowerCut, snapshot_pool

BS = 4096
NBLOCKS = 256
ZERO = bytes(BS)
TRIALS = 60


def block(lbn: int, seq: int) -> bytes:
    return struct.pack("<QQ", lbn, seq) * (BS // 16)


class Model:
    """Every version each block was given, and which of them was durable."""

    def __init__(self):
        self.versions: dict[int, list[tuple[int, bytes]]] = {}  # lbn -> [(seq, content)]
        self.durable_seq = 0
        self.snapshots: set[str] = set()

    def attempt(self, lbn: int, seq: int, content: bytes) -> None:
        self.versions.setdefault(lbn, []).append((seq, content))

    def allowed(self, lbn: int) -> tuple[bytes, list[bytes]]:
        vs = self.versions.get(lbn, [])
        durable = ZERO
        later = []
        for seq, content in vs:
            if seq <= self.durable_seq:
                durable = content
            else:
                later.append(content)
        return durable, later


def _base_pool(root: str) -> str:
    path = os.path.join(root, "base")
    p = Pool.create(path)
    p.create_volume("v")
    p.create_object("v", "lun", NBLOCKS * BS)
    p.close()
    return path


def _workload(pool: Pool, model: Model, rnd: random.Random, steps: int) -> None:
    h = pool.open_object("v", "lun")
    seq = 0
    for _ in range(steps):
        seq += 1
        r = rnd.random()
        if r < 0.55:
            lbn = rnd.randrange(NBLOCKS - 8)
            cnt = rnd.randint(1, 8)
            for i in range(cnt):
                model.attempt(lbn + i, seq, block(lbn + i, seq))
            fua = rnd.random() < 0.05
            h.pwrite(lbn * BS, b"".join(block(lbn + i, seq) for i in range(cnt)), fua=fua)
            if fua:  # durable on return, and everything before it (the flush is pool-wide)
                model.durable_seq = seq
        elif r < 0.62:
            lbn = rnd.randrange(NBLOCKS - 8)
            cnt = rnd.randint(1, 8)
            for i in range(cnt):
                model.attempt(lbn + i, seq, ZERO)
            h.trim(lbn * BS, cnt * BS)
        elif r < 0.82:
            pool.flush()
            model.durable_seq = seq
        elif r < 0.93:
            pool.checkpoint()
            model.durable_seq = seq
        else:
            name = f"s{seq}"
            pool.create_snapshot("v", name)
            model.durable_seq = seq
            model.snapshots.add(name)


def _abandon(pool: Pool) -> None:
    """Drop a pool whose process 'lost power': no checkpoint, no close."""
    try:
        pool.db.close()
    finally:
        os.close(pool._lockfd)


def run_trial(root: str, base: str, seed: int) -> str | None:
    """One power cut; returns what went wrong, or None."""
    rnd = random.Random(seed)
    work = os.path.join(root, f"t{seed}")
    shutil.copytree(base, work)
    kind = rnd.choice(["write", "truncate", "sync"])
    files = CrashFiles(rnd, kind, rnd.randint(1, {"write": 300, "truncate": 30, "sync": 80}[kind]))
    model = Model()
    pool = Pool.open(work, cache_bytes=32 * 8192, files=files)
    try:
        _workload(pool, model, rnd, 400)
    except PowerCut:
        pass
    files.dead = True
    files.lose()
    after = os.path.join(root, f"after{seed}")
    snapshot_pool(work, after)
    _abandon(pool)
    shutil.rmtree(work)
    try:
        p = Pool.open(after)
    except Exception as e:  # noqa: BLE001  (any failure to reopen is the finding)
        return f"seed {seed}: the pool does not open after the cut: {e!r}"
    try:
        h = p.open_object("v", "lun")
        for lbn in range(NBLOCKS):
            try:
                got = bytes(h.pread(lbn * BS, BS))
            except Exception as e:  # noqa: BLE001
                return f"seed {seed}: block {lbn} does not read back: {e}"
            durable, later = model.allowed(lbn)
            if got != durable and got not in later:
                what = "zeros" if got == ZERO else f"seq {struct.unpack_from('<QQ', got)[1]}"
                want = "zeros" if durable == ZERO else f"seq {struct.unpack_from('<QQ', durable)[1]}"
                return f"seed {seed}: block {lbn} holds {what}; durable was {want} (or a later write)"
        missing = model.snapshots - {s.name for s in p.list_snapshots("v")}
        if missing:
            return f"seed {seed}: snapshots lost: {sorted(missing)}"
        rep = p.fsck()
        if not rep.clean:
            return f"seed {seed}: fsck: {rep.problems[:3]}"
        sc = p.scrub()
        if not sc.clean:
            return f"seed {seed}: scrub: {sc.errors[:3]}"
    finally:
        p.close()
        shutil.rmtree(after, ignore_errors=True)
    return None


@pytest.fixture
def crash_root():
    d = tempfile.mkdtemp(prefix="coppice-powerloss-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_power_cut_at_random_points_loses_nothing_durable(crash_root):
    base = _base_pool(crash_root)
    failures = [f for f in (run_trial(crash_root, base, seed) for seed in range(TRIALS)) if f]
    assert not failures, "\n".join(failures)


def _first_failure(crash_root, trials=TRIALS):
    base = _base_pool(crash_root)
    for seed in range(trials):
        f = run_trial(crash_root, base, seed)
        if f:
            return f
    return None


def test_harness_catches_a_flush_that_does_not_sync_the_data(crash_root, monkeypatch):
    monkeypatch.setattr(Pool, "flush", lambda self: self.log.sync())
    assert _first_failure(crash_root), "a flush without the data file's fdatasync went unnoticed"


def test_harness_catches_a_flush_that_does_not_sync_the_log(crash_root, monkeypatch):
    monkeypatch.setattr(Pool, "flush", lambda self: self._sync_data())
    assert _first_failure(crash_root), "a flush without the intent log's fdatasync went unnoticed"


def test_harness_catches_a_commit_before_the_data_is_synced(crash_root, monkeypatch):
    real = Pool._sync_data
    monkeypatch.setattr(Pool, "_sync_data", lambda self: None)
    # flush must still sync data, or this is the first mutant again
    monkeypatch.setattr(Pool, "flush", lambda self: (real(self), self.log.sync()))
    assert _first_failure(crash_root), "metadata committed before its data went unnoticed"
    assert consistency_point.commit  # the sequence under test
