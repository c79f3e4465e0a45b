"""Child for test_kill9: runs a slow scan of the pool, reporting progress
lines ``<phase> <done> <total>`` to a file, until the parent kills it."""

import os
import sys
import time

from coppice import dedup
from coppice.dedup import scanner
from coppice.engine import Pool


def main():
    path, report, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    scanner.COLLECT_BATCH_LEAVES = 1
    scanner.MATCH_BATCH_ROWS = 64
    scanner.MATCH_BATCH_GROUPS = 16
    scanner.MIRROR_SECONDS = 0.0
    scanner.MATCH_RUN_BLOCKS = 32  # short runs, so the kill lands mid-match
    pool = Pool.open(path)
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def progress(phase, done, total):
        os.write(fd, f"{phase} {done} {total}\n".encode())
        time.sleep(delay)

    dedup.scan(pool, progress=progress)
    os.write(fd, b"finished 0 0\n")
    pool.close()


if __name__ == "__main__":
    main()
