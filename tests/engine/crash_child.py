"""Child process for test_crash: writes, flushes and snapshots forever,
journaling what it did, until the parent kills it with SIGKILL.

The journal's lines are tests/kill9.py's.
"""

import os
import random
import sys

from coppice.engine import Pool
from tests.kill9 import BS, block

NBLOCKS = 2048


def main():
    path, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rnd = random.Random(seed)
    pool = Pool.open(path, cache_bytes=64 * 8192)
    h = pool.open_object("v", "lun")
    j = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    seq = int(sys.argv[4])
    while True:
        seq += 1
        lbn = rnd.randrange(NBLOCKS - 8)
        cnt = rnd.randint(1, 8)
        os.write(j, f"W {lbn} {cnt} {seq}\n".encode())
        h.pwrite(lbn * BS, b"".join(block(lbn + i, seq) for i in range(cnt)))
        r = rnd.random()
        if r < 0.1:
            pool.flush()
            os.write(j, f"F {seq}\n".encode())
        elif r < 0.12:
            name = f"s{seq}"
            pool.create_snapshot("v", name)
            os.write(j, f"S {name}\n".encode())
        elif r < 0.13:
            pool.checkpoint()


if __name__ == "__main__":
    main()
