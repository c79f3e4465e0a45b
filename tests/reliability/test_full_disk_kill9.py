"""kill -9 at any moment of the full-disk sequence loses nothing flushed.

A child (full_disk_child.py) fills a 8 MiB tmpfs through a pool: writes,
flushes, snapshots, checkpoints, refusals with ENOSPC, room made by
deleting a filler file or a snapshot, the disk filled again. It is killed with SIGKILL at random
moments, 14 times on the same pool. After every kill the pool opens (on a
full file system too), each block holds its last flushed version or a
later one (never garbage, never an older one), every snapshot whose
creation returned is there (unless its deletion began), and fsck is clean
(the shared harness: tests/kill9.py).
"""

import os
import random

from coppice.engine import Pool
from coppice.errors import NoSpace
from tests import kill9

HERE = os.path.dirname(__file__)
BS = kill9.BS
NBLOCKS = 1024
TRIALS = 14


def test_kill9_at_any_moment_of_the_full_disk_sequence(small_fs, tmp_path):
    fs = small_fs(8)
    path = os.path.join(fs.path, "pool")
    p = Pool.create(path)
    p.create_volume("v")
    p.create_object("v", "lun", NBLOCKS * BS)
    p.close()
    journal = str(tmp_path / "journal")
    rnd = random.Random(4321)
    seq_base = 0
    refusals = 0
    for trial in range(TRIALS):
        kill9.kill9(
            os.path.join(HERE, "full_disk_child.py"), [path, journal, trial, seq_base], rnd, (0.4, 1.2)
        )
        j = kill9.Journal.read(journal)
        refusals += j.refused
        pool = Pool.open(path)
        try:
            state, top, names = kill9.check(pool, j, NBLOCKS, trial)
        finally:
            try:
                pool.close()
            except NoSpace:
                pass  # the intent log keeps it; the next open replays
        seq_base = j.next_seq(top)
        kill9.restart(journal, state, names, top)
    assert refusals >= TRIALS // 2, f"only {refusals} writes were refused: the test hardly tested a full disk"
