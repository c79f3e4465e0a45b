#!/usr/bin/env python3
"""The two storage backends side by side, in one run, on this machine.

For each backend (``native``: the embedded engine; ``rbd``: Ceph RBD on a
single-node cluster started here, or the one COPPICE_CEPH_CONF names):

  snapshot          ``snap create`` of a volume with one 1 GiB LUN fully written
  clone, 1 block    ``vol clone create`` of a volume whose one LUN has 1 block written:
                    the first clone of the snapshot, and the median of 5 more
  clone, 1 GiB      the same with the LUN's whole 1 GiB written (O(1): same time)
  split per GiB     ``vol clone split`` (RBD: flatten) of that clone, seconds per GiB
  fio x4            seq write/read 1 MiB QD8, rand read/write 4 KiB QD32 with
                    fio --ioengine=nbd through `coppice serve` on the LUN

and, as the baseline the NBD path is measured against, the same four fio
figures straight to an RBD image of the same size in the same Ceph pool
with fio's rbd engine (librbd, no NBD, no Coppice; fio's rbd engine has no
namespace option, so the image lives in the pool's default namespace).
On a shared machine the load changes from minute to minute, so each
workload runs through `coppice serve` and straight to librbd back to back,
``--rounds`` times alternating; the table gives the mean of the rounds and
each round's own rbd/direct ratio.

    .venv/bin/python bench/backends.py [--size-mib 1024] [--runtime 5] [--rounds 2] [--backends native,rbd]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from bench.nbd_vs_qemu_nbd import WORKLOADS, fio  # noqa: E402

CHUNK = 4 << 20


def start_ceph() -> tuple[str, bool]:
    if os.environ.get("COPPICE_CEPH_CONF"):
        return os.environ["COPPICE_CEPH_CONF"], False
    from tests.rbd import ceph_cluster

    # 2 x 1 GiB LUNs, a split clone and the direct image: more than the test
    # suite's 4 GiB OSD holds (a full bluestore OSD stops and I/O hangs)
    os.environ.setdefault("CEPH_OSD_SIZE_GB", "16")
    return ceph_cluster.start(), True


def write_lun(f, path, size, pattern_seed=1) -> None:
    d = f.open_lun(path)
    try:
        buf = os.urandom(CHUNK)
        for off in range(0, size, CHUNK):
            d.pwrite(off, buf[: min(CHUNK, size - off)])
        d.flush()
    finally:
        d.close()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def filer_for(backend, path, conf):
    from coppice.filer import Filer

    if backend == "rbd":
        return Filer.create(path, backend="rbd", ceph_conf=conf, ceph_pool="rbd")
    return Filer.create(path)


def measure_backend(backend, base, conf, size, runtime, rounds=1) -> dict:
    res = {}
    pool = os.path.join(base, f"pool-{backend}")
    f = filer_for(backend, pool, conf)
    try:
        f.igroup_create("local", ["127.0.0.0/8"])
        f.vol_create("one", "4g")
        f.lun_create("/vol/one/lun0", size)
        d = f.open_lun("/vol/one/lun0")
        d.pwrite(0, b"x" * 4096)
        d.close()
        f.vol_create("full", "4g")
        f.lun_create("/vol/full/lun0", size)
        write_lun(f, "/vol/full/lun0", size)
        f.lun_map("/vol/full/lun0", "local")
        f.snap_create("one", "s")
        res["snapshot"] = timed(lambda: f.snap_create("full", "s"))
        # the first clone of each snapshot (cold), then the median of 5 more: one
        # timing on a shared machine is noise as often as it is the clone
        for label, vol in (("clone, 1 block", "one"), ("clone, 1 GiB", "full")):
            times = [timed(lambda i=i, vol=vol: f.clone_create(f"c_{vol}{i}", vol, "s")) for i in range(6)]
            res[label + ", first"] = times[0]
            res[label + ", median of 5 more"] = statistics.median(times[1:])
        split = timed(lambda: f.clone_split("c_full0"))
        res["split per GiB"] = split / (size / (1 << 30))
    finally:
        f.close()
    res["fio"], res["direct"] = fio_through_serve(
        pool, "/vol/full/lun0", size, runtime, rounds, conf if backend == "rbd" else None
    )
    return res


def fio_through_serve(pool, path, size, runtime, rounds=1, direct_conf=None) -> tuple[dict, dict]:
    """fio through `coppice serve` on ``path``: {workload: [(MiB/s, IOPS) per
    round]}; with ``direct_conf``, each round is followed at once by the
    same fio straight to an RBD image of the same size (the second dict)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COPPICE_POOL=pool)
    env.pop("COPPICE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coppice.cli.main", "serve", "--api", "none", "--nbd", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    direct = None
    try:
        line = proc.stdout.readline()
        m = re.search(r"nbd=(\S+):(\d+)", line)
        if not m:
            raise SystemExit(f"coppice serve did not start: {line!r}")
        uri = f"nbd://127.0.0.1:{m.group(2)}/{path}"
        if direct_conf is not None:
            direct = DirectImage(direct_conf, size)
        served: dict = {}
        straight: dict = {}
        for label, rw, bs, depth in WORKLOADS:
            for _ in range(rounds):
                served.setdefault(label, []).append(fio(uri, rw, bs, depth, size >> 20, runtime))
                if direct is not None:
                    straight.setdefault(label, []).append(direct.fio(rw, bs, depth, runtime))
        return served, straight
    finally:
        if direct is not None:
            direct.remove()
        proc.terminate()
        proc.wait(30)


class DirectImage:
    """An RBD image of ``size`` bytes in the pool's default namespace, filled
    with data, for fio's rbd engine (librbd straight, no NBD, no Coppice)."""

    def __init__(self, conf, size):
        import rados
        import rbd

        self.conf, self.size = conf, size
        self.name = f"bench-direct-{os.getpid()}"
        self.cluster = rados.Rados(conffile=conf)
        self.cluster.connect()
        self.io = self.cluster.open_ioctx("rbd")
        rbd.RBD().create(self.io, self.name, size, old_format=False, features=rbd.RBD_FEATURE_LAYERING)
        with rbd.Image(self.io, self.name) as img:
            buf = os.urandom(CHUNK)
            for off in range(0, size, CHUNK):
                img.write(buf[: min(CHUNK, size - off)], off)
            img.flush()

    def fio(self, rw, bs, depth, runtime) -> tuple[float, float]:
        cmd = [
            "fio",
            "--name=bench",
            "--ioengine=rbd",
            "--clientname=admin",
            "--pool=rbd",
            f"--rbdname={self.name}",
            f"--rw={rw}",
            f"--bs={bs}",
            f"--iodepth={depth}",
            f"--size={self.size >> 20}M",
            f"--runtime={runtime}",
            "--time_based",
            "--ramp_time=1",
            "--randrepeat=0",
            "--norandommap",
            "--output-format=json",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CEPH_CONF=self.conf))
        if p.returncode != 0:
            raise SystemExit(f"fio rbd failed: {p.stderr}")
        job = json.loads(p.stdout[p.stdout.index("{") :])["jobs"][0]
        r = job["read"] if rw in ("read", "randread") else job["write"]
        return r["bw"] / 1024.0, r["iops"]

    def remove(self) -> None:
        import rbd

        try:
            rbd.RBD().remove(self.io, self.name)
        finally:
            self.io.close()
            self.cluster.shutdown()


def _mean(runs) -> tuple[float, float]:
    return statistics.fmean(r[0] for r in runs), statistics.fmean(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=5)
    ap.add_argument(
        "--rounds", type=int, default=2, help="fio runs per workload, served and direct alternating"
    )
    ap.add_argument("--backends", default="native,rbd")
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    size = a.size_mib << 20
    backends = a.backends.split(",")
    conf, started = start_ceph()
    base = tempfile.mkdtemp(prefix="coppice-bench-backends-", dir=a.dir)
    try:
        from tests.rbd import ceph_cluster

        if not started:
            ceph_cluster.wipe(conf, "rbd")
        results = {}
        for b in backends:
            print(f"measuring {b} ...", flush=True)
            results[b] = measure_backend(b, base, conf, size, a.runtime, a.rounds)
            if b == "rbd":
                ceph_cluster.wipe(conf, "rbd")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if started:
            from tests.rbd import ceph_cluster

            ceph_cluster.stop(conf)
    print(f"\nLUN {a.size_mib} MiB, fio runtime {a.runtime} s\n")
    print(f"| operation | {' | '.join(backends)} |")
    print("|---|" + "---|" * len(backends))
    clones = [f"clone, {w}, {n}" for w in ("1 block", "1 GiB") for n in ("first", "median of 5 more")]
    for k in ("snapshot", *clones, "split per GiB"):
        print(f"| {k} (ms) | " + " | ".join(f"{results[b][k] * 1000:.1f}" for b in backends) + " |")
    print()
    direct = results["rbd"]["direct"] if "rbd" in results else {}
    print(f"fio: mean of {a.rounds} round(s); each round served then direct, back to back\n")
    print(
        f"| fio (MiB/s, IOPS) | {' | '.join(f'coppice serve, {b}' for b in backends)} | librbd direct "
        "| rbd/direct | per round |"
    )
    print("|---|" + "---|" * (len(backends) + 3))
    for label, *_ in WORKLOADS:
        cells = []
        for b in backends:
            mib, iops = _mean(results[b]["fio"][label])
            cells.append(f"{mib:.1f} MiB/s, {iops:.0f}")
        if label in direct:
            d = _mean(direct[label])
            ratio = _mean(results["rbd"]["fio"][label])[1] / d[1] if d[1] else float("nan")
            rounds = ", ".join(
                f"{s[1] / r[1]:.2f}" if r[1] else "nan"
                for s, r in zip(results["rbd"]["fio"][label], direct[label], strict=True)
            )
            tail = f" | {d[0]:.1f} MiB/s, {d[1]:.0f} | {ratio:.2f} | {rounds} |"
        else:
            tail = " | - | - | - |"
        print(f"| {label} | " + " | ".join(cells) + tail)


if __name__ == "__main__":
    main()
