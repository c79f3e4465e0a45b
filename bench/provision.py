"""Provisioning N VMs with libvirt's test driver, against full copies and
qcow2 linked clones of the same template.

    python bench/provision.py [--n 1,10,100,1000] [--budget 60] [--parallel 1]

For each N: Coppice total and per-VM seconds by stage (clone, seed,
resignature, map, define); `qemu-img convert` of the template per VM (full
copy); `qemu-img create -b` per VM (qcow2 linked clone). Baselines stop at
the largest N whose estimate fits in the budget. Target: 1,000 VMs < 60 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coppice.filer.filer import Filer  # noqa: E402
from coppice.provision import custspec, guest_image, template  # noqa: E402
from coppice.provision.provisioner import Provisioner  # noqa: E402


def make_image(tt, base: str, fill_mib: int) -> str:
    """The tiny template's disk, plus fill_mib MiB of incompressible data past 2 MiB
    (a golden image holds an OS; the tiny one holds 8 KiB)."""
    if not fill_mib:
        return tt.disk_image
    path = os.path.join(base, f"bench-template-{fill_mib}m.raw")
    if not os.path.exists(path):
        with open(tt.disk_image, "rb") as src, open(path + ".tmp", "wb") as dst:
            dst.write(src.read(2 << 20))
            for _ in range(fill_mib):
                dst.write(os.urandom(1 << 20))
            dst.truncate(max(dst.tell(), tt.disk_size))
        os.replace(path + ".tmp", path)
    return path


def coppice_run(n: int, tt, base: str, parallel: int) -> dict:
    d = tempfile.mkdtemp(prefix=f"bench-prov-{n}-", dir=base)
    try:
        f = Filer.create(os.path.join(d, "pool"))
        template.import_image(f, "tiny", tt.image, kernel=tt.kernel, initrd=tt.initrd, cmdline=tt.cmdline)
        custspec.create(f, "bench", user="ops", runcmd=["true"])
        p = Provisioner(f)
        t0 = time.perf_counter()
        s = p.provision(
            "tiny", n, f"b{os.getpid()}n{n}v{{n:04}}", "bench", "test:///default", parallel=parallel
        )
        total = time.perf_counter() - t0
        assert len(s.ok) == n, s.to_dict()["failed"][:3]
        hv = p.hypervisor("test:///default")
        for r in s.results:  # leave the per-process test driver clean for the next N
            hv.remove(r.name)
        p.close()
        f.close()
        return {"total": total, "stages": s.to_dict()["stage_per_vm_ms"]}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def baseline(n: int, tt, base: str, kind: str, budget: float) -> float | None:
    d = tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=base)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            out = os.path.join(d, f"vm{i}")
            if kind == "copy":
                cmd = ["qemu-img", "convert", "-O", "raw", tt.image, out]
            else:
                cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", tt.image, out]
            subprocess.run(cmd, check=True, capture_output=True)
            if time.perf_counter() - t0 > budget:
                return None
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1,10,100,1000")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds a baseline may take per N")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument(
        "--fill", type=int, default=256, help="MiB of data in the template (0: the tiny one as is)"
    )
    a = ap.parse_args()
    import dataclasses

    tt = guest_image.build_tiny_template(os.environ.get("COPPICE_GUEST_CACHE", "/var/cache/coppice/guest"))
    image = make_image(tt, a.dir, a.fill)

    class T:  # the template files, with the (filled) image
        pass

    t2 = T()
    t2.__dict__.update(dataclasses.asdict(tt), image=image, disk_size=os.path.getsize(image))
    tt = t2
    rows = []
    skip = {"copy": False, "qcow2": False}
    for n in [int(x) for x in a.n.split(",")]:
        c = coppice_run(n, tt, a.dir, a.parallel)
        b = {}
        for kind in ("copy", "qcow2"):
            b[kind] = None if skip[kind] else baseline(n, tt, a.dir, kind, a.budget)
            skip[kind] = skip[kind] or b[kind] is None
        rows.append((n, c, b))
        st = c["stages"]
        print(
            f"N={n}: coppice {c['total']:.2f} s ({1000 * c['total'] / n:.1f} ms/VM: "
            + ", ".join(f"{k} {v:.1f}" for k, v in st.items())
            + ")",
            flush=True,
        )
    print()
    print(
        f"template: tiny + {a.fill} MiB of data ({tt.disk_size >> 20} MiB raw); libvirt test:///default; "
        f"parallel={a.parallel}; baselines copy the disk only (no seed, no libvirt define)"
    )
    print(
        f"{'N':>5} | {'coppice s':>9} | {'ms/VM':>6} | {'clone':>6} {'seed':>6} {'resig':>6} {'map':>6} {'define':>6} "
        f"| {'full copy s':>11} | {'qcow2 -b s':>10} | {'vs copy':>7}"
    )
    for n, c, b in rows:
        st = c["stages"]
        cp = f"{b['copy']:.2f}" if b["copy"] is not None else "> budget"
        q2 = f"{b['qcow2']:.2f}" if b["qcow2"] is not None else "> budget"
        ratio = f"{b['copy'] / c['total']:.1f}x" if b["copy"] else "-"
        print(
            f"{n:>5} | {c['total']:>9.2f} | {1000 * c['total'] / n:>6.1f} | "
            + " ".join(f"{st.get(k, 0):>6.1f}" for k in ("clone", "seed", "resignature", "map", "define"))
            + f" | {cp:>11} | {q2:>10} | {ratio:>7}"
        )
    big = [r for r in rows if r[0] >= 1000]
    if big:
        print(
            f"target 1,000 VMs < 60 s: {'met' if big[0][1]['total'] < 60 else 'NOT met'} "
            f"({big[0][1]['total']:.1f} s)"
        )


if __name__ == "__main__":
    main()
