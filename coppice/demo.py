"""The main job of ./demo.sh: Coppice on the embedded default pool.

Contract: works in ./demo-pool (or $COPPICE_DEMO_POOL), starting fresh each
run (the previous run's VMs are destroyed and undefined first, its pool
removed). It shows the storage layer (O(1) snapshot and clones, what they
share) and then the provisioner (``coppice.provision.demo.run_demo``): the
tiny template built and imported, a handful of VMs provisioned, one booted
for real to its login banner showing its own hostname, and the savings.
Exits non-zero if fsck finds anything wrong at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from rich.console import Console


def _cleanup(path: str, console: Console) -> None:
    if not os.path.exists(path):
        return
    try:
        from .filer import Filer
        from .provision import vm

        f = Filer.open(path)
        try:
            for rec in vm.list_(f, with_state=False):
                try:
                    vm.destroy(f, rec["name"], force=True)
                except Exception as e:  # the pool goes anyway; say what stayed behind
                    console.print(f"[yellow]could not remove VM {rec['name']} of the last run: {e}[/]")
        finally:
            f.close()
    except Exception as e:
        console.print(f"[yellow]previous demo pool unreadable ({e}); removing it[/]")
    shutil.rmtree(path, ignore_errors=True)


def _storage_tour(path: str, console: Console) -> None:
    from .filer import Filer

    f = Filer.create(path)
    try:
        f.vol_create("fvol_master", "1g")
        f.lun_create("/vol/fvol_master/lun0", "256m")
        dev = f.open_lun("/vol/fvol_master/lun0")
        dev.pwrite(0, os.urandom(32 << 20))
        dev.close()
        t = time.perf_counter()
        f.snap_create("fvol_master", "clone_base_snapshot")
        snap_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        for i in range(5):
            f.clone_create(f"fvol_clone{i}", "fvol_master", "clone_base_snapshot", remap=True)
        clone_ms = (time.perf_counter() - t) * 1000 / 5
        console.print(
            f"snap create: {snap_ms:.1f} ms; vol clone create: {clone_ms:.1f} ms per clone "
            f"(5 clones of a LUN holding 32 MiB)"
        )
        df = f.df(savings=True)["pool"]
        mib = lambda b: f"{b / (1 << 20):.0f} MiB"  # noqa: E731
        console.print(
            f"pool: {mib(df['logical'])} of data in 6 volumes stored in {mib(df['used'])}; "
            f"saved by clones {mib(df['saved_clones'])}"
        )
        for i in range(5):
            f.vol_destroy(f"fvol_clone{i}")
        f.snap_delete("fvol_master", "clone_base_snapshot")
        f.vol_destroy("fvol_master")
    finally:
        f.close()


def main(argv=None) -> int:
    console = Console()
    path = os.environ.get("COPPICE_DEMO_POOL", os.path.abspath("demo-pool"))
    console.rule("[bold]Coppice demo: a pool in a local folder")
    console.print(f"pool: {path}")
    _cleanup(path, console)
    console.rule("storage: snapshots and FlexClones")
    _storage_tour(path, console)
    console.rule("provisioning: one golden VM, many clones")
    from .provision.demo import run_demo

    out = run_demo(path, console)
    from .filer import Filer

    f = Filer.open(path)
    try:
        rep = f.fsck()
    finally:
        f.close()
    console.print(f"fsck: {'clean' if rep['clean'] else rep['problems']}")
    console.print(f"\nTry: .venv/bin/coppice --pool {path} vm list | vol clone show | lun show -m | df -s")
    ok = rep["clean"] and bool(out.get("vms"))
    if os.geteuid() == 0 and not out.get("banner"):
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
