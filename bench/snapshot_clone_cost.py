#!/usr/bin/env python3
"""Cost of a snapshot and of a clone versus how much the volume holds.

For 1, 10^4 and 10^6 written 4 KiB blocks, each the median of a few runs:

* in process: the engine's create_snapshot and clone_volume (each durable
  on return), with the ratio to the 1-block case (target: ratio <= 1.5,
  absolute < 20 ms);
* like for like with the baseline, a command in a new process each: the
  Coppice CLI (`coppice snap create`, `coppice vol clone create`, opening
  the pool directly) against `qemu-img snapshot -c` (an internal qcow2
  snapshot, which copies the L1 table and bumps refcounts) on a qcow2 image
  holding the same amount. Both include their process start; each tool's
  start alone (the interpreter importing the CLI, `qemu-img --version`) is
  printed beside them and subtracted in the "less start" columns.

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

from coppice.filer import Filer  # noqa: E402

BS = 4096


def fill(h, nblocks):
    chunk = 256
    buf = os.urandom(chunk * BS)
    done = 0
    while done < nblocks:
        n = min(chunk, nblocks - done)
        h.pwrite(done * BS, memoryview(buf)[: n * BS])
        done += n


def run_ms(argv, reps, env=None, vary=None) -> float:
    """Median wall time of a command in a new process (``vary(i)`` gives the
    i-th repetition's argv when each needs a new name)."""
    times = []
    for i in range(reps):
        t = time.perf_counter()
        subprocess.run(vary(i) if vary else argv, check=True, capture_output=True, env=env)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


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
    coppice = os.path.join(os.path.dirname(sys.executable), "coppice")
    rows = []
    try:
        # the floor every CLI command pays: the interpreter and the CLI's imports
        start_cli = run_ms([sys.executable, "-c", "import coppice.cli.main"], args.reps)
        start_qemu = run_ms(["qemu-img", "--version"], args.reps) if shutil.which("qemu-img") else None
        for n in sizes:
            path = os.path.join(tmp, f"pool{n}")
            f = Filer.create(path)
            f.vol_create("v", max(n * BS * 2, 1 << 30))
            f.lun_create("/vol/v/lun0", max(n, 1) * BS)
            f.file_write("v", "vm.xml", b"<domain/>")
            dev = f.open_lun("/vol/v/lun0")
            fill(dev, n)
            dev.flush()
            dev.close()
            pool = f.pool
            snap, clone = [], []
            for i in range(args.reps):
                t = time.perf_counter()
                pool.create_snapshot("v", f"s{i}")
                snap.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                pool.clone_volume(f"c{i}", "v", f"s{i}")
                clone.append((time.perf_counter() - t) * 1000)
            f.close()
            env = dict(os.environ, COPPICE_POOL=path)
            cli_snap = run_ms(None, args.reps, env, lambda i: [coppice, "snap", "create", "v", f"cli{i}"])
            cli_clone = run_ms(
                None,
                args.reps,
                env,
                lambda i: [coppice, "vol", "clone", "create", f"clic{i}", "-b", "v", f"cli{i}"],
            )
            shutil.rmtree(path)
            rows.append(
                (
                    n,
                    statistics.median(snap),
                    statistics.median(clone),
                    cli_snap,
                    cli_clone,
                    qcow2_snapshot_ms(tmp, n, args.reps),
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s1, c1 = rows[0][1], rows[0][2]
    print("in process (engine calls, durable on return):")
    print(f"{'written blocks':>15} {'snapshot ms':>12} {'ratio':>6} {'clone ms':>9} {'ratio':>6}")
    for n, s, c, *_ in rows:
        print(f"{n:>15,} {s:12.2f} {s / s1:6.2f} {c:9.2f} {c / c1:6.2f}")
    print()
    qstart = f"{start_qemu:.1f}" if start_qemu is not None else "n/a"
    print(
        f"a command in a new process each (start alone: python -c 'import coppice.cli.main' {start_cli:.1f} ms, "
        f"qemu-img --version {qstart} ms):"
    )
    print(
        f"{'written blocks':>15} {'coppice snap':>13} {'less start':>11} {'coppice clone':>14} "
        f"{'less start':>11} {'qemu-img snap':>14} {'less start':>11}"
    )
    for n, _, _, cs, cc, q in rows:
        qs = f"{q:14.1f} {q - start_qemu:11.1f}" if q is not None else f"{'n/a':>14} {'n/a':>11}"
        print(f"{n:>15,} {cs:13.1f} {cs - start_cli:11.1f} {cc:14.1f} {cc - start_cli:11.1f} {qs}")


if __name__ == "__main__":
    main()
