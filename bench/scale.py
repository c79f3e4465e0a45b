#!/usr/bin/env python3
"""Scale: the cost of each provisioning and management step as the pool
grows to 10,000 VMs, in one table, with the 10-VM pool as the same-run
baseline (the target: the 10,000th VM within 1.5x of the 10th).

The pool grows by provisioning customized VMs (libvirt's test:///default,
a 16 MiB template, several igroups: an igroup holds 4,096 LUN IDs and a VM
takes two). At each milestone N (10, 100, 1,000, 10,000 by default) it
provisions a sample batch whose last VM is the N-th and reports, per VM,
the stages clone, seed, resignature, map and define; then it times, each
the median of a few calls at that size, `vol create`, `snap create`,
`vol clone create`, `lun map` (into an igroup holding thousands of maps),
`vm list` (all VMs: linear by nature, so per VM as well), `df` of one
volume and `df` of the whole pool. Every VM is a FlexClone volume of the
template's snapshot and every sample adds volumes with snapshots and clones,
so the pool holds as many volumes as VMs and more. At the end it starts
`coppice serve` on the pool and prints its RSS after a `vm list` and a
`df` through it.

    .venv/bin/python bench/scale.py [--max 10000] [--fill 14] [--dir /var/tmp]

Run it nice'd on a shared machine; absolute times drift with load, the
ratios to the 10-VM row are the figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from provision import make_image  # noqa: E402  (bench/provision.py)

from coppice.filer.filer import Filer  # noqa: E402
from coppice.provision import custspec, guest_image, template  # noqa: E402
from coppice.provision import vm as vm_mod  # noqa: E402
from coppice.provision.provisioner import Provisioner, free_lun_ids  # noqa: E402

URI = "test:///default"
STAGES = ("clone", "seed", "resignature", "map", "define")
BATCH = 500  # VMs per bulk provisioning call
PER_IGROUP = 1900  # VMs per igroup: 2 LUN IDs each, an igroup has 4,096


def median_ms(fn, n: int = 5) -> float:
    ts = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


class Grower:
    def __init__(self, f: Filer, prov: Provisioner):
        self.f, self.p = f, prov
        self.count = 0
        self.igroup_no = 0
        self.total_s = 0.0
        self.igroups: list[str] = []
        self.bulk: list[tuple[int, float]] = []  # (pool size after, ms per VM)
        self._new_igroup()

    def _new_igroup(self):
        self.igroup_no += 1
        name = f"hosts{self.igroup_no}"
        self.f.igroup_create(name, [f"iqn.2026-01.org.example:h{self.igroup_no}"], protocol="nbd")
        self.igroups.append(name)

    def provision(self, n: int):
        """n more VMs, in batches that fit the current igroup; the summaries."""
        out = []
        while n > 0:
            room = min(free_lun_ids(self.f, self.igroups[-1]) // 2 - 48, PER_IGROUP)  # 48: lun map samples
            if room <= 0:
                self._new_igroup()
                continue
            k = min(n, BATCH, room)
            t = time.perf_counter()
            s = self.p.provision(
                "tiny",
                k,
                "vm{n:05}",
                "scale",
                URI,
                igroup=self.igroups[-1],
                start_index=self.count + 1,
            )
            dt = time.perf_counter() - t
            if len(s.ok) != k:
                raise SystemExit(f"provisioning failed: {s.to_dict()['failed'][:3]}")
            self.total_s += dt
            self.count += k
            n -= k
            out.append(s)
            self.bulk.append((self.count, 1000 * dt / k))
        return out


def stage_ms(summaries) -> dict:
    """Per stage, the median over the sample's VMs (ms): one VM delayed by
    the machine's other load, or the pool's first VM warming caches, does
    not stand for the step's cost at that size."""
    results = [r for s in summaries for r in s.results]
    return {k: 1000 * statistics.median(r.stages.get(k, 0.0) for r in results) for k in STAGES}


def ops_at(f: Filer, g: Grower, m: int) -> dict:
    tag = f"m{m}"
    vols = [f"sv_{tag}_{i}" for i in range(5)]
    r = {}
    r["vol create"] = median_ms(lambda i: f.vol_create(vols[i], "1g"))
    for v in vols:
        f.lun_create(f"/vol/{v}/lun0", "64m")
        dev = f.open_lun(f"/vol/{v}/lun0")
        dev.pwrite(0, os.urandom(1 << 20))
        dev.close()
    r["snap create"] = median_ms(lambda i: f.snap_create(vols[i], "base"))
    r["vol clone create"] = median_ms(lambda i: f.clone_create(f"sc_{tag}_{i}", vols[i], "base"))
    # into the fullest igroup (the one the VMs filled first)
    r["lun map"] = median_ms(lambda i: f.lun_map(f"/vol/{vols[i]}/lun0", g.igroups[0]))
    t = time.perf_counter()
    rows = vm_mod.list_(f, with_state=False)
    r["vm list"] = 1000 * (time.perf_counter() - t)
    r["vm list per VM (us)"] = 1e6 * (time.perf_counter() - t) / max(1, len(rows))
    r["df one volume"] = median_ms(lambda i: f.df(vols[i]))
    t = time.perf_counter()
    f.df()
    r["df whole pool"] = 1000 * (time.perf_counter() - t)
    return r


def rss_of_serve(pool: str) -> dict:
    env = dict(os.environ, COPPICE_POOL=pool)
    coppice = os.path.join(os.path.dirname(sys.executable), "coppice")
    proc = subprocess.Popen(
        [coppice, "--pool", pool, "serve", "--api", "none", "--nbd", "none", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sock = os.path.join(pool, "coppice.sock")
        t = time.monotonic()
        while not os.path.exists(sock):
            if proc.poll() is not None:
                return {"error": proc.stderr.read().decode()[-300:]}
            if time.monotonic() - t > 300:
                return {"error": "coppice serve did not open its socket in 300 s"}
            time.sleep(0.2)
        ready = time.monotonic() - t
        out = {"ready_s": ready}
        for what, argv in (("vm list", ["vm", "list", "--json"]), ("df", ["df", "--json"])):
            t = time.perf_counter()
            r = subprocess.run([coppice, "--pool", pool, *argv], env=env, capture_output=True)
            out[f"{what} via daemon s"] = time.perf_counter() - t
            if r.returncode:
                out[f"{what} error"] = r.stderr.decode()[-200:]
        with open(f"/proc/{proc.pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=int, default=10000, help="largest pool, in VMs")
    ap.add_argument("--fill", type=int, default=14, help="MiB of data added to the tiny template (16 MiB)")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the pool directory")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    milestones = [m for m in (10, 100, 1000, 10000) if m <= a.max]
    if a.max not in milestones:
        milestones.append(a.max)

    tt = guest_image.build_tiny_template(os.environ.get("COPPICE_GUEST_CACHE", "/var/cache/coppice/guest"))
    image = make_image(tt, a.dir, a.fill)
    d = tempfile.mkdtemp(prefix="bench-scale-", dir=a.dir)
    pool = os.path.join(d, "pool")
    rows = []
    try:
        f = Filer.create(pool)
        template.import_image(f, "tiny", image, kernel=tt.kernel, initrd=tt.initrd, cmdline=tt.cmdline)
        custspec.create(f, "scale", user="ops", runcmd=["true"])
        p = Provisioner(f, state_dir=os.path.join(d, "state"))
        g = Grower(f, p)
        t_all = time.perf_counter()
        for m in milestones:
            sample = min(m, 10 if m <= 100 else 25)
            g.provision(m - sample - g.count)
            st = stage_ms(g.provision(sample))
            ops = ops_at(f, g, m)
            row = {"vms": g.count, "volumes": len(f.pool.list_volumes()), "stages_ms": st, "ops_ms": ops}
            rows.append(row)
            print(
                f"N={m}: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()) + " | "
                f"{', '.join(f'{k} {v:.1f}' for k, v in ops.items())} "
                f"| provisioning so far {g.total_s:.1f} s",
                flush=True,
            )
        wall = time.perf_counter() - t_all
        total_prov = g.total_s
        n_vms = g.count
        p.close()
        f.close()
        serve = rss_of_serve(pool)
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)

    print()
    print(
        f"pool of up to {n_vms} customized VMs (libvirt {URI}, template: {2 + a.fill} MiB of data, "
        f"{len(g.igroups)} igroups); ms per VM by stage, ms per call by operation"
    )
    op_names = list(rows[0]["ops_ms"])
    hdr = f"{'VMs':>6} {'vols':>6} | " + " ".join(f"{s[:6]:>6}" for s in STAGES) + f" {'VM ms':>6} | "
    hdr += " ".join(f"{o.replace(' create', '').replace('one volume', '1vol')[:12]:>12}" for o in op_names)
    print(hdr)
    base = rows[0]
    for r in rows:
        tot = sum(r["stages_ms"].values())
        print(
            f"{r['vms']:>6} {r['volumes']:>6} | "
            + " ".join(f"{r['stages_ms'][s]:>6.1f}" for s in STAGES)
            + f" {tot:>6.1f} | "
            + " ".join(f"{r['ops_ms'][o]:>12.1f}" for o in op_names)
        )
    b_tot = sum(base["stages_ms"].values())
    print("ratio to the first row:")
    for r in rows[1:]:
        tot = sum(r["stages_ms"].values())
        print(
            f"{r['vms']:>6} {'':>6} | "
            + " ".join(f"{r['stages_ms'][s] / max(base['stages_ms'][s], 1e-9):>5.2f}x" for s in STAGES)
            + f" {tot / b_tot:>5.2f}x | "
            + " ".join(f"{r['ops_ms'][o] / max(base['ops_ms'][o], 1e-9):>11.2f}x" for o in op_names)
        )
    print("\nbulk provisioning, ms per VM by pool size: " + ", ".join(f"{n}: {ms:.1f}" for n, ms in g.bulk))
    last = sum(rows[-1]["stages_ms"].values())
    print(
        f"the {rows[-1]['vms']}th VM costs {last / b_tot:.2f}x the {rows[0]['vms']}th "
        f"(target <= 1.5x: {'met' if last / b_tot <= 1.5 else 'NOT met'}); "
        f"{n_vms} VMs provisioned in {total_prov:.0f} s of provisioning calls "
        f"({wall:.0f} s with the measurements; target 10,000 in < 300 s: "
        f"{'met' if n_vms >= 10000 and total_prov < 300 else 'NOT met' if n_vms >= 10000 else 'n/a'})"
    )
    if "VmRSS" in serve:
        print(
            f"coppice serve on the {n_vms}-VM pool: RSS {serve['VmRSS'] / 2**20:.0f} MiB, "
            f"peak {serve['VmHWM'] / 2**20:.0f} MiB, ready in {serve['ready_s']:.1f} s; "
            f"vm list via daemon {serve.get('vm list via daemon s', 0):.2f} s, "
            f"df {serve.get('df via daemon s', 0):.2f} s"
        )
    else:
        print(f"coppice serve: {serve}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "bulk": g.bulk, "total_s": total_prov, "serve": serve}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
