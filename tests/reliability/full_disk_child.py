"""Child process for test_full_disk_kill9: on a small file system it writes,
flushes, snapshots and checkpoints until the disk is full, frees room (a
filler file, old snapshots) and goes on, journaling what it did, until the
parent kills it with SIGKILL.

The journal's lines are tests/kill9.py's.
"""

import os
import random
import sys

from coppice.engine import Pool
from coppice.errors import NoSpace
from tests.kill9 import BS, block

NBLOCKS = 1024


def fill(path, leave):
    st = os.statvfs(os.path.dirname(path))
    size = st.f_bavail * st.f_frsize - leave
    if size > 0:
        with open(path, "wb") as f:
            try:
                f.write(bytes(size))
            except OSError:
                pass


def main():
    path, journal, seed, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(seed)
    filler = os.path.join(os.path.dirname(path), "filler")
    pool = Pool.open(path, cache_bytes=64 * 8192)
    h = pool.open_object("v", "lun")
    j = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    refused = 0
    since_room = 10**9
    while True:
        if since_room > 150 and not os.path.exists(filler):
            # Fill the disk again, leaving a little: the next writes,
            # snapshots and consistency points run into ENOSPC.
            fill(filler, rnd.choice([16 << 10, 128 << 10, 512 << 10]))
            since_room = 0
        since_room += 1
        seq += 1
        lbn = rnd.randrange(NBLOCKS - 4)
        cnt = rnd.randint(1, 4)
        os.write(j, f"W {lbn} {cnt} {seq}\n".encode())
        try:
            h.pwrite(lbn * BS, b"".join(block(lbn + i, seq) for i in range(cnt)))
        except NoSpace:
            os.write(j, f"X {seq}\n".encode())
            refused += 1
            if refused % 4 == 0 and os.path.exists(filler):
                os.unlink(filler)
                since_room = 0
            elif refused % 4 == 0:
                snaps = pool.list_snapshots("v")
                if snaps:
                    os.write(j, f"d {snaps[0].name}\n".encode())
                    try:
                        pool.delete_snapshot("v", snaps[0].name)
                        os.write(j, f"D {snaps[0].name}\n".encode())
                    except NoSpace:
                        pass
            continue
        r = rnd.random()
        try:
            if r < 0.3:
                pool.flush()
                os.write(j, f"F {seq}\n".encode())
            elif r < 0.36 and len(pool.list_snapshots("v")) < 3:
                pool.create_snapshot("v", f"s{seq}")
                os.write(j, f"S s{seq}\n".encode())
            elif r < 0.39:
                pool.checkpoint()
        except NoSpace:
            pass


if __name__ == "__main__":
    main()
