"""Child for test_kill9: runs a scan of the pool in small batches and, after
each batch, prints ``<phase> <done> <total>`` and waits for the parent's go
(one line on stdin) before going on, so the parent kills it at a known
point, with no timing involved."""

import sys

from coppice import dedup
from coppice.dedup import scanner
from coppice.engine import Pool


def main():
    path = sys.argv[1]
    scanner.COLLECT_BATCH_LEAVES = 1
    scanner.MATCH_BATCH_ROWS = 64
    scanner.MATCH_BATCH_GROUPS = 16
    scanner.MIRROR_SECONDS = 0.0
    scanner.MATCH_RUN_BLOCKS = 32  # short runs, so the kill lands mid-match
    pool = Pool.open(path)

    def progress(phase, done, total):
        print(phase, done, total, flush=True)
        if not sys.stdin.readline():
            raise SystemExit("parent gone")

    dedup.scan(pool, progress=progress)
    print("finished 0 0", flush=True)
    pool.close()


if __name__ == "__main__":
    main()
