"""Crash consistency: a child writes, flushes and snapshots; it is killed
with SIGKILL at random moments (20 trials on one pool). After every reopen,
each block holds its last flushed version or a later one (never garbage,
never an older one), every snapshot whose creation returned exists, and
fsck is clean (the shared harness: tests/kill9.py)."""

import os
import random

from coppice.engine import Pool
from tests import kill9

HERE = os.path.dirname(__file__)
BS = kill9.BS
NBLOCKS = 2048


def test_kill9_loses_no_flushed_write(pool_dir):
    p = Pool.create(pool_dir)
    p.create_volume("v")
    p.create_object("v", "lun", NBLOCKS * BS)
    p.close()
    journal = pool_dir + ".journal"
    rnd = random.Random(1234)
    seq_base = 0
    for trial in range(20):
        kill9.kill9(
            os.path.join(HERE, "crash_child.py"), [pool_dir, journal, trial, seq_base], rnd, (0.3, 1.2)
        )
        j = kill9.Journal.read(journal)
        pool = Pool.open(pool_dir)
        try:
            state, top, names = kill9.check(pool, j, NBLOCKS, trial)
        finally:
            pool.close()
        seq_base = j.next_seq(top)
        kill9.restart(journal, state, names, top)


def test_torn_log_tail_and_stale_epoch_are_ignored(pool_dir):
    p = Pool.create(pool_dir)
    p.create_volume("v")
    p.create_object("v", "lun", 64 * BS)
    h = p.open_object("v", "lun")
    h.pwrite(0, b"A" * BS)
    h.pwrite(BS, b"B" * BS)
    p.flush()
    log = os.path.join(pool_dir, "intent.log")
    size = os.path.getsize(log)
    # Simulate a crash: drop the lock and state without a checkpoint, then
    # tear the last record in half.
    os.close(p._lockfd)
    p.db.close()
    with open(log, "r+b") as f:
        f.truncate(size - 10)
    q = Pool.open(pool_dir)
    try:
        assert q.replayed_records == 1
        assert bytes(q.open_object("v", "lun").pread(0, BS)) == b"A" * BS
        assert bytes(q.open_object("v", "lun").pread(BS, BS)) == bytes(BS)
        assert q.fsck().clean
    finally:
        q.close()
