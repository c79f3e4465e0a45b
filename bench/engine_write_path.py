#!/usr/bin/env python3
"""The engine's per-request cost, driven the way the NBD server drives it.

A LUN object is filled sequentially (1 MiB writes, then a consistency
point), then each workload calls ``ObjectHandle.pwrite`` / ``pread`` with a
``memoryview`` payload, as ``coppice/nbd/commands.py`` does, for a fixed
number of requests, consistency points included (a sustained 4 KiB
overwrite folds one reference-count change per request at each one):

  rand write 4K   random 4 KiB overwrites (each frees the block it replaces)
  rand read 4K    random 4 KiB reads (checksum verified)
  seq write 1M    1 MiB overwrites in order
  seq read 1M     1 MiB reads in order

It prints microseconds per request (wall clock, and CPU time of the
process: the figure a busy server pays) of this tree beside the same workloads
run by another revision of Coppice (``--baseline-rev``, default ``main``;
its ``coppice/`` is taken from git into a scratch directory and run in a
child process on the same machine right after), and the cost of the bare
``os.pwrite``/``os.pread`` on a raw file as the floor. ``--profile``
prints a cProfile of the random 4 KiB overwrites (this tree only).

    .venv/bin/python bench/engine_write_path.py [--size-mib 512] [--ops 200000]
        [--baseline-rev main | --no-baseline] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def measure(size_mib: int, ops: int, profile: bool, workdir: str) -> dict:
    """µs per request of each workload, in this process's ``coppice``."""
    from coppice.engine import Pool

    size = size_mib << 20
    pool = Pool.create(os.path.join(workdir, "pool"))
    pool.create_volume("v")
    pool.create_object("v", "lun0", size)
    h = pool.open_object("v", "lun0")
    big = bytearray(os.urandom(1 << 20))
    for off in range(0, size, 1 << 20):
        big[:8] = off.to_bytes(8, "little")
        h.pwrite(off, memoryview(big))
    pool.checkpoint()
    pool.flush()
    rnd = random.Random(7)
    nblk = size // 4096
    small = memoryview(bytearray(os.urandom(4096)))
    out = {}

    def rand_write(n):
        for _ in range(n):
            small[0] = (small[0] + 1) & 255
            h.pwrite(rnd.randrange(nblk) * 4096, small)

    def rand_read(n):
        for _ in range(n):
            h.pread(rnd.randrange(nblk) * 4096, 4096)

    def seq(fn):
        pos = [0]

        def run(n):
            for _ in range(n):
                fn(pos[0])
                pos[0] = (pos[0] + (1 << 20)) % size

        return run

    mv_big = memoryview(big)
    cases = [
        ("rand write 4K", rand_write, ops),
        ("rand read 4K", rand_read, ops),
        ("seq write 1M", seq(lambda off: h.pwrite(off, mv_big)), max(64, ops // 64)),
        ("seq read 1M", seq(lambda off: h.pread(off, 1 << 20)), max(64, ops // 64)),
    ]
    for name, fn, n in cases:
        fn(min(n, 2000))  # warm the page cache and the code paths
        t0, c0 = time.perf_counter(), time.process_time()
        fn(n)
        out[name] = ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6)
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        rand_write(ops)
        pr.disable()
        pstats.Stats(pr, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
        pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    pool.close()
    return out


def floor(size_mib: int, ops: int, workdir: str) -> dict:
    """The same requests as bare os.pwrite/os.pread on a raw file."""
    size = size_mib << 20
    fd = os.open(os.path.join(workdir, "raw.img"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        big = os.urandom(1 << 20)
        for off in range(0, size, 1 << 20):
            os.pwrite(fd, big, off)
        small = os.urandom(4096)
        rnd = random.Random(7)
        nblk = size // 4096
        out = {}
        for name, fn, n in (
            ("rand write 4K", lambda: os.pwrite(fd, small, rnd.randrange(nblk) * 4096), ops),
            ("rand read 4K", lambda: os.pread(fd, 4096, rnd.randrange(nblk) * 4096), ops),
        ):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                fn()
            out[name] = ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6)
        pos = 0
        n = max(64, ops // 64)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            os.pwrite(fd, big, pos)
            pos = (pos + (1 << 20)) % size
        out["seq write 1M"] = ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            os.pread(fd, 1 << 20, pos)
            pos = (pos + (1 << 20)) % size
        out["seq read 1M"] = ((time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6)
        return out
    finally:
        os.close(fd)


def baseline(rev: str, args, workdir: str) -> dict:
    """Run this script's ``measure`` against ``rev``'s coppice package."""
    src = os.path.join(workdir, "baseline-src")
    os.makedirs(src)
    arch = subprocess.run(["git", "-C", ROOT, "archive", rev, "coppice"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", src], input=arch.stdout, check=True)
    p = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--size-mib",
            str(args.size_mib),
            "--ops",
            str(args.ops),
            "--dir",
            workdir,
        ],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        cwd=src,
    )
    if p.returncode != 0:
        raise SystemExit(f"baseline run failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--baseline-rev", default="main")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/var/tmp"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        work = tempfile.mkdtemp(prefix="coppice-ewp-", dir=a.dir)
        try:
            print(json.dumps(measure(a.size_mib, a.ops, False, work)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    sys.path.insert(0, ROOT)
    work = tempfile.mkdtemp(prefix="coppice-ewp-", dir=a.dir)
    try:
        cols = {}
        os.makedirs(os.path.join(work, "this"))
        cols["this tree"] = measure(a.size_mib, a.ops, a.profile, os.path.join(work, "this"))
        if not a.no_baseline:
            cols[f"baseline {a.baseline_rev}"] = baseline(a.baseline_rev, a, work)
        cols["raw file os.p*"] = floor(a.size_mib, a.ops, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = list(cols)
    for k, what in ((0, "wall-clock"), (1, "CPU (user+system) of the process")):
        print(f"\nµs per request, {what}; {a.ops} 4 KiB requests, LUN of {a.size_mib} MiB (lower is better)")
        head = f"| {'workload':14s} | " + " | ".join(f"{n:>16s}" for n in names)
        if len(names) == 3:
            head += " | baseline/this"
        print(head + " |")
        print("|" + "|".join("-" * (len(c) + 2) for c in head.strip("| ").split(" | ")) + "|")
        for w in cols[names[0]]:
            row = f"| {w:14s} | " + " | ".join(f"{cols[n][w][k]:16.1f}" for n in names)
            if len(names) == 3:
                row += f" | {cols[names[1]][w][k] / cols[names[0]][w][k]:13.2f}"
            print(row + " |")


if __name__ == "__main__":
    main()
