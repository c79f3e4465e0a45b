#!/usr/bin/env python3
"""Engine throughput in-process: sequential 1 MiB and random 4 KiB reads and
writes through the engine API (ObjectHandle), beside the same pattern on a
plain file with os.pread/os.pwrite as the baseline, in one run.

    .venv/bin/python bench/engine_io.py [--size-mib 1024] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from coppice.engine import Pool  # noqa: E402


def run(label, fn, seconds, unit_bytes):
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(64):
            fn()
            n += 1
    dt = time.perf_counter() - t0
    return n / dt, n * unit_bytes / dt / (1 << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    size = args.size_mib << 20
    tmp = tempfile.mkdtemp(prefix="coppice-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        pool = Pool.create(os.path.join(tmp, "pool"))
        pool.create_volume("v")
        pool.create_object("v", "lun0", size)
        h = pool.open_object("v", "lun0")
        raw = os.open(os.path.join(tmp, "raw.img"), os.O_RDWR | os.O_CREAT)
        os.ftruncate(raw, size)
        big = os.urandom(1 << 20)
        small = os.urandom(4096)
        rnd = random.Random(1)
        nblk = size // 4096
        pos = {"e": 0, "r": 0}

        def seq(step):
            def f():
                off = pos[step]
                pos[step] = (off + (1 << 20)) % size
                return off

            return f

        rows = []
        cases = [
            (
                "seq write 1M",
                lambda off: h.pwrite(off, big),
                lambda off: os.pwrite(raw, big, off),
                "seq",
                1 << 20,
            ),
            (
                "seq read 1M",
                lambda off: h.pread(off, 1 << 20),
                lambda off: os.pread(raw, 1 << 20, off),
                "seq",
                1 << 20,
            ),
            (
                "rand write 4K",
                lambda off: h.pwrite(off, small),
                lambda off: os.pwrite(raw, small, off),
                "rand",
                4096,
            ),
            (
                "rand read 4K",
                lambda off: h.pread(off, 4096),
                lambda off: os.pread(raw, 4096, off),
                "rand",
                4096,
            ),
        ]
        for name, eng, base, kind, unit in cases:
            res = []
            for fn in (eng, base):
                if kind == "seq":
                    nxt = seq(name)
                    pos[name] = 0

                    def call(fn=fn, nxt=nxt):
                        return fn(nxt())
                else:

                    def call(fn=fn):
                        return fn(rnd.randrange(nblk) * 4096)

                res.append(run(name, call, args.seconds, unit))
            rows.append((name, res[0], res[1]))
        pool.flush()
        print(f"{'workload':<16}{'coppice engine':>22}{'raw file (os.p*)':>22}{'ratio':>8}")
        for name, (e_ops, e_mib), (b_ops, b_mib) in rows:
            if "4K" in name:
                print(f"{name:<16}{e_ops:>16,.0f} IOPS{b_ops:>16,.0f} IOPS{e_ops / b_ops:>8.2f}")
            else:
                print(f"{name:<16}{e_mib:>15,.0f} MiB/s{b_mib:>15,.0f} MiB/s{e_mib / b_mib:>8.2f}")
        pool.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
