"""The main job of ./demo.sh: Coppice on the embedded default pool.

Runs in ./demo-pool (or $COPPICE_DEMO_POOL): creates the pool if needed and
shows volumes, O(1) snapshots and clones, and what the clones saved. It
grows with the product: the provisioner's demo (template import, N VMs
provisioned and one booted) runs when the provisioner is installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from rich.console import Console
from rich.table import Table

from .engine import Pool


def main(argv=None) -> int:
    console = Console()
    path = os.environ.get("COPPICE_DEMO_POOL", os.path.abspath("demo-pool"))
    if os.path.exists(path):
        shutil.rmtree(path)
    pool = Pool.create(path)
    console.rule("[bold]Coppice demo: a pool in a local folder")
    console.print(f"pool: {path}")
    pool.create_volume("fvol_master")
    pool.create_object("fvol_master", "lun0", 64 << 20)
    golden = os.urandom(32 << 20)
    pool.open_object("fvol_master", "lun0").pwrite(0, golden)
    t = time.perf_counter()
    pool.create_snapshot("fvol_master", "clone_base_snapshot")
    snap_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    for i in range(10):
        pool.clone_volume(f"fvol_clone{i}", "fvol_master", "clone_base_snapshot")
    clone_ms = (time.perf_counter() - t) * 1000 / 10
    pool.open_object("fvol_clone0", "lun0").pwrite(0, b"changed" * 1000)
    table = Table(title="volumes")
    for col in ("volume", "written", "unique", "shared"):
        table.add_column(col)
    for v in pool.list_volumes():
        s = pool.space(v.name)
        table.add_row(v.name, f"{s.written_bytes >> 20} MiB", f"{s.unique_bytes >> 10} KiB",
                      f"{s.shared_bytes >> 20} MiB")
    console.print(table)
    ps = pool.pool_space()
    logical = sum(pool.space(v.name).written_bytes for v in pool.list_volumes())
    console.print(f"snapshot: {snap_ms:.2f} ms, clone: {clone_ms:.2f} ms each")
    console.print(f"logical data {logical >> 20} MiB stored in {ps['used_bytes'] >> 20} MiB "
                  f"({100 * (1 - ps['used_bytes'] / logical):.0f}% saved by clones)")
    rep = pool.fsck()
    console.print(f"fsck: {'clean' if rep.clean else rep.problems}")
    pool.close()
    return 0 if rep.clean else 1


if __name__ == "__main__":
    sys.exit(main())
