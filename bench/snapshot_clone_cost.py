#!/usr/bin/env python3
"""Cost of a snapshot and of a clone versus how much the volume holds.

For 1, 10^4 and 10^6 written 4 KiB blocks: median time of create_snapshot
and of clone_volume (each durable on return), with the ratio to the 1-block
case. Target: ratio <= 1.5, absolute < 20 ms. Baseline in the same run:
`qemu-img snapshot -c` (an internal qcow2 snapshot, which copies the L1
table and bumps refcounts) on a qcow2 image holding the same amount.

    .venv/bin/python bench/snapshot_clone_cost.py [--max-blocks 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from coppice.engine import Pool  # noqa: E402

BS = 4096


def fill(h, nblocks):
    chunk = 256
    buf = os.urandom(chunk * BS)
    done = 0
    while done < nblocks:
        n = min(chunk, nblocks - done)
        h.pwrite(done * BS, memoryview(buf)[: n * BS])
        done += n


def qcow2_snapshot_ms(tmp, nblocks, reps=3):
    if not shutil.which("qemu-img"):
        return None
    img = os.path.join(tmp, f"q{nblocks}.qcow2")
    raw = os.path.join(tmp, "fill.raw")
    with open(raw, "wb") as f:
        left = nblocks * BS
        blk = os.urandom(1 << 20)
        while left > 0:
            f.write(blk[: min(left, 1 << 20)])
            left -= 1 << 20
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, img], check=True)
    os.unlink(raw)
    times = []
    for i in range(reps):
        t = time.perf_counter()
        subprocess.run(["qemu-img", "snapshot", "-c", f"s{i}", img], check=True)
        times.append((time.perf_counter() - t) * 1000)
    os.unlink(img)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-blocks", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    sizes = [n for n in (1, 10_000, 1_000_000) if n <= args.max_blocks]
    tmp = tempfile.mkdtemp(prefix="coppice-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    rows = []
    try:
        for n in sizes:
            pool = Pool.create(os.path.join(tmp, f"pool{n}"))
            pool.create_volume("v")
            pool.create_object("v", "lun0", max(n, 1) * BS)
            pool.write_file("v", "vm.xml", b"<domain/>")
            fill(pool.open_object("v", "lun0"), n)
            pool.checkpoint()
            snap, clone = [], []
            for i in range(args.reps):
                t = time.perf_counter()
                pool.create_snapshot("v", f"s{i}")
                snap.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                pool.clone_volume(f"c{i}", "v", f"s{i}")
                clone.append((time.perf_counter() - t) * 1000)
            pool.close()
            shutil.rmtree(os.path.join(tmp, f"pool{n}"))
            rows.append((n, statistics.median(snap), statistics.median(clone), qcow2_snapshot_ms(tmp, n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s1, c1 = rows[0][1], rows[0][2]
    print(
        f"{'written blocks':>15} {'snapshot ms':>12} {'ratio':>6} {'clone ms':>9} {'ratio':>6} {'qcow2 snap ms':>14}"
    )
    for n, s, c, q in rows:
        qs = f"{q:14.1f}" if q is not None else f"{'n/a':>14}"
        print(f"{n:>15,} {s:12.2f} {s / s1:6.2f} {c:9.2f} {c / c1:6.2f} {qs}")


if __name__ == "__main__":
    main()
