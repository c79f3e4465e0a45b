"""Web console list pages at scale: one page of the tree, VMs and LUNs against the full listing.

A pool with N clones of one snapshot (default 10,000) and N VM records is served by a real
`coppice serve`; each call is timed (median of 3) next to the REST API call that lists
everything, which is what a console without server-side paging would have to fetch.

    .venv/bin/python bench/console_lists.py [--count N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build(pool: str, n: int) -> None:
    from coppice.filer import Filer
    from coppice.provision import registry

    with Filer.create(pool) as f:
        f.vol_create("gold", "20g")
        f.lun_create("/vol/gold/lun0", "1g")
        f.snap_create("gold", "base")
        for i in range(n):
            f.clone_create(f"c{i:05d}", "gold", "base")
            name = f"vm{i:05d}"
            registry.put(
                f,
                registry.VM,
                name,
                {
                    "name": name,
                    "volume": f"c{i:05d}",
                    "slot": name,
                    "uri": "test:///default",
                    "igroup": "coppice_host",
                    "uuid": str(uuid.UUID(int=i + 1)),
                    "mac": f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                    "template": "gold",
                    "base_snapshot": "base",
                },
            )


PAIRS = [
    ("/volumes", "/console/api/tree?limit=100&expand=gold@base"),
    ("/volumes", "/console/api/tree?offset={far}&limit=100&expand=gold@base"),
    ("/volumes", "/console/api/tree?q=c00099"),
    ("/vms", "/console/api/vms?limit=100"),
    ("/vms", "/console/api/vms?q=vm00099"),
    ("/luns", "/console/api/luns?limit=100"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one on /var/tmp)")
    a = ap.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="coppice-bench-console-", dir="/var/tmp")
    pool = os.path.join(work, "pool")
    t = time.monotonic()
    build(pool, a.count)
    print(f"pool with {a.count} clones and {a.count} VM records built in {time.monotonic() - t:.1f} s")
    cmd = [sys.executable, "-m", "coppice.cli.main", "--pool", pool, "serve", "--api", "127.0.0.1:0"]
    cmd += ["--nbd", "127.0.0.1:0", "--connect", "test:///default"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = re.search(r"api=(\S+)", proc.stdout.readline()).group(1)
        with open(os.path.join(pool, "api.token")) as f:
            token = f.read().strip()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600)

        def timed(path: str) -> tuple[float, int]:
            runs = []
            for _ in range(3):
                t0 = time.monotonic()
                r = c.get(path)
                runs.append(time.monotonic() - t0)
                r.raise_for_status()
            return statistics.median(runs), len(r.content)

        print(
            f"{'console page':58s} {'ms':>7s} {'KiB':>7s} | {'full listing (baseline)':24s} {'ms':>7s} {'KiB':>7s}"
        )
        for full, page in PAIRS:
            page = page.format(far=max(0, a.count - 1000))
            pt, ps = timed(page)
            ft, fs = timed(full)
            print(
                f"{page:58s} {pt * 1000:7.0f} {ps / 1024:7.0f} | {full:24s} {ft * 1000:7.0f} {fs / 1024:7.0f}"
            )
    finally:
        proc.terminate()
        proc.wait(60)
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
