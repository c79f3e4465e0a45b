"""The kill -9 harness the crash tests share: a child process works on a
pool and journals what it did; the parent kills it with SIGKILL at a random
moment, reopens the pool and checks that nothing flushed was lost.

The child writes blocks whose every 16 bytes are (lbn, seq) (``block``),
and appends to the journal (plain appends: the kernel keeps them across
kill -9) before and after each step:

    W <lbn> <count> <seq>    about to write blocks lbn..lbn+count-1 with seq
    X <seq>                  that write was refused (ENOSPC): it changed nothing
    F <seq>                  flush returned: every write with seq' <= seq that
                             was not refused is durable
    S <name>                 snapshot <name> created (durable on return)
    d <name> / D <name>      about to delete snapshot <name> / deleted

``check`` holds a reopened pool to that journal: each block holds its last
flushed version or a later one (never garbage, never an older one), every
snapshot whose creation returned is there (unless its deletion began), and
fsck is clean. ``restart`` rewrites the journal as what is on disk now, so
the next child goes on from there.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

BS = 4096
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block(lbn: int, seq: int) -> bytes:
    return struct.pack("<QQ", lbn, seq) * (BS // 16)


def kill9(child_script: str, args, rnd: random.Random, after: tuple[float, float]) -> None:
    """Run ``child_script`` with ``args`` and SIGKILL it after a random
    ``after`` (seconds); the child must still be running when it is killed,
    so every trial really interrupts the work."""
    child = subprocess.Popen(
        [sys.executable, child_script, *map(str, args)],
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    time.sleep(rnd.uniform(*after))
    child.send_signal(signal.SIGKILL)
    rc = child.wait()
    assert rc == -signal.SIGKILL, (
        f"{os.path.basename(child_script)} ended by itself (exit {rc}) before the kill"
    )


@dataclass
class Journal:
    writes: dict[int, list[int]]  # lbn -> seqs written there (refused ones left out), ascending
    flushed: int  # every write with seq <= this is durable
    snaps: set[str]  # snapshots whose creation returned and whose deletion did not begin
    refused: int  # how many writes were refused

    @classmethod
    def read(cls, path: str) -> Journal:
        writes: dict[int, list[int]] = {}
        refused: set[int] = set()
        flushed = 0
        snaps: set[str] = set()
        deleting: set[str] = set()
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 2 or not line.endswith("\n"):
                    continue  # torn by the kill
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
        return cls(writes, flushed, snaps - deleting, len(refused))

    def next_seq(self, top: int) -> int:
        """A seq above every one this journal or the disk has seen."""
        return max([top, *(max(s) for s in self.writes.values() if s)]) + 1


def check(pool, j: Journal, nblocks: int, trial: int, volume: str = "v", lun: str = "lun"):
    """Hold the reopened ``pool`` to journal ``j``; returns (state, top,
    snapshot names): state is lbn -> seq of every written block, top the
    highest seq on disk."""
    data = pool.open_object(volume, lun).pread(0, nblocks * BS)
    top = 0
    state = {}
    for lbn in range(nblocks):
        blk = bytes(data[lbn * BS : (lbn + 1) * BS])
        seqs = j.writes.get(lbn, [])
        durable = max((s for s in seqs if s <= j.flushed), default=None)
        if blk == bytes(BS):
            assert durable is None, f"trial {trial}: block {lbn} lost flushed write seq {durable}"
            continue
        got_lbn, got_seq = struct.unpack_from("<QQ", blk)
        assert blk == block(got_lbn, got_seq), f"trial {trial}: block {lbn} is torn"
        assert got_lbn == lbn, f"trial {trial}: block {lbn} holds block {got_lbn}'s data"
        assert got_seq in seqs, f"trial {trial}: block {lbn} holds seq {got_seq} never written there"
        if durable is not None:
            assert got_seq >= durable, f"trial {trial}: block {lbn} went back from {durable} to {got_seq}"
        state[lbn] = got_seq
        top = max(top, got_seq)
    names = {s.name for s in pool.list_snapshots(volume)}
    assert not (j.snaps - names), f"trial {trial}: snapshots lost: {j.snaps - names}"
    rep = pool.fsck()
    assert rep.clean, rep.problems
    return state, top, names


def restart(path: str, state: dict[int, int], names, top: int) -> None:
    """Rewrite the journal at ``path`` as the durable state on disk now:
    intents that did not land are forgotten."""
    with open(path, "w") as f:
        for name in sorted(names):
            f.write(f"S {name}\n")
        for lbn, seq in sorted(state.items()):
            f.write(f"W {lbn} 1 {seq}\n")
        f.write(f"F {top}\n")


# ---- kill -9 of `coppice serve` under a real NBD client ----------------------
# The writer (libnbd, in a subprocess) writes block i % 2048 with i, flushes,
# and logs i once the flush returned: every write before i is flushed.

# Writers by name: (writes in flight at once, writes per flush).
NBD_WRITERS = {"one-at-a-time": (1, 16), "32-in-flight": (32, 32)}

NBD_WRITER = r"""
import sys, nbd
port, path, log, depth, per_flush = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
h = nbd.NBD(); h.set_export_name(path); h.connect_tcp("127.0.0.1", str(port))
out = open(log, "a", buffering=1)
i = 0
while True:
    # `depth` writes in flight at once; once every `per_flush` writes (all acknowledged), one flush
    for _ in range(depth):
        blk = i % 2048
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(i.to_bytes(8, "little") * 512)), blk * 4096)
        i += 1
    while h.aio_in_flight():
        h.poll(-1)
    if i % per_flush == 0:
        h.flush()
        out.write(f"{i}\n")  # every write before i is flushed
"""


def served_kill9(pool: str, served, lun: str, writer: str, tmp) -> None:
    """Run an NBD writer against LUN ``lun`` (8 MiB, mapped to 127.0.0.0/8)
    of the daemon ``served`` (tests.api.conftest.Served), kill the daemon
    with SIGKILL after at least 40 flushes, reopen the pool and check
    every block holds its last flushed write or a later one, and fsck."""
    from coppice.filer import Filer

    depth, per_flush = NBD_WRITERS[writer]
    log = os.path.join(str(tmp), "flushed")
    w = subprocess.Popen(
        ["/usr/bin/python3", "-c", NBD_WRITER, str(served.nbd_port), lun, log, str(depth), str(per_flush)]
    )
    try:
        for _ in range(200):
            if os.path.exists(log) and len(open(log).read().split()) >= 40:
                break
            time.sleep(0.05)
        os.kill(served.pid, signal.SIGKILL)
        served.proc.wait(10)
    finally:
        w.kill()
        w.wait()
    flushed = int(open(log).read().split()[-1])
    assert flushed >= 40 * per_flush
    f = Filer.open(pool)
    try:
        d = f.open_lun(lun)
        data = bytes(d.pread(0, 2048 * BS))
        d.close()
        # for each block, the last write before `flushed` to it, or a later one
        for blk in range(2048):
            last = max((i for i in range(blk, flushed, 2048)), default=None)
            if last is None:
                continue
            got = int.from_bytes(data[blk * BS : blk * BS + 8], "little")
            assert got >= last and got % 2048 == blk, (blk, last, got)
        assert f.fsck()["clean"], f.fsck()["problems"]
    finally:
        f.close()
