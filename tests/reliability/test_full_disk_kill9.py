"""kill -9 at any moment of the full-disk sequence loses nothing flushed.

A child (full_disk_child.py) fills a 8 MiB tmpfs through a pool: writes,
flushes, snapshots, checkpoints, refusals with ENOSPC, room made by
deleting a filler file or a snapshot, the disk filled again. It is killed with SIGKILL at random
moments, 14 times on the same pool. After every kill the pool opens (on a
full file system too), each block holds its last flushed version or a
later one (never garbage, never an older one), every snapshot whose
creation returned is there (unless its deletion began), and fsck is clean.
"""

import os
import random
import signal
import struct
import subprocess
import sys
import time

from coppice.engine import Pool
from coppice.errors import NoSpace

HERE = os.path.dirname(__file__)
BS = 4096
NBLOCKS = 1024
TRIALS = 14


def parse(journal):
    writes, refused, flushed = {}, set(), 0
    snaps, deleting = set(), set()
    with open(journal) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or not line.endswith("\n"):
                continue
            if parts[0] == "W":
                lbn, cnt, seq = map(int, parts[1:])
                for i in range(cnt):
                    writes.setdefault(lbn + i, []).append(seq)
            elif parts[0] == "X":
                refused.add(int(parts[1]))
            elif parts[0] == "F":
                flushed = int(parts[1])
            elif parts[0] == "S":
                snaps.add(parts[1])
            elif parts[0] == "d":
                deleting.add(parts[1])
            elif parts[0] == "D":
                snaps.discard(parts[1])
    writes = {lbn: [s for s in seqs if s not in refused] for lbn, seqs in writes.items()}
    return writes, flushed, snaps - deleting


def check(pool, writes, flushed, snaps, trial):
    data = pool.open_object("v", "lun").pread(0, NBLOCKS * BS)
    top = 0
    state = {}
    for lbn in range(NBLOCKS):
        blk = bytes(data[lbn * BS : (lbn + 1) * BS])
        seqs = writes.get(lbn, [])
        durable = max((s for s in seqs if s <= flushed), default=None)
        if blk == bytes(BS):
            assert durable is None, f"trial {trial}: block {lbn} lost flushed write seq {durable}"
            continue
        got_lbn, got_seq = struct.unpack_from("<QQ", blk)
        assert blk == struct.pack("<QQ", got_lbn, got_seq) * (BS // 16), f"block {lbn} is torn"
        assert got_lbn == lbn, f"trial {trial}: block {lbn} holds block {got_lbn}'s data"
        assert got_seq in seqs, f"trial {trial}: block {lbn} holds seq {got_seq} never written there"
        if durable is not None:
            assert got_seq >= durable, f"trial {trial}: block {lbn} went back from {durable} to {got_seq}"
        state[lbn] = got_seq
        top = max(top, got_seq)
    names = {s.name for s in pool.list_snapshots("v")}
    assert not (snaps - names), f"trial {trial}: snapshots lost: {snaps - names}"
    rep = pool.fsck()
    assert rep.clean, rep.problems
    return state, top, names


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
        child = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "full_disk_child.py"),
                path,
                journal,
                str(trial),
                str(seq_base),
            ],
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        time.sleep(rnd.uniform(0.4, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait()
        writes, flushed, snaps = parse(journal)
        with open(journal) as f:
            refusals += sum(1 for line in f if line.startswith("X "))
        pool = Pool.open(path)
        try:
            state, top, names = check(pool, writes, flushed, snaps, trial)
        finally:
            try:
                pool.close()
            except NoSpace:
                pass  # the intent log keeps it; the next open replays
        seq_base = top + 1 + max((max(s) for s in writes.values() if s), default=0)
        # The next trial starts from what is on disk now.
        with open(journal, "w") as f:
            for name in names:
                f.write(f"S {name}\n")
            for lbn, sq in state.items():
                f.write(f"W {lbn} 1 {sq}\n")
            f.write(f"F {seq_base}\n")
    assert refusals >= TRIALS // 2, f"only {refusals} writes were refused: the test hardly tested a full disk"
