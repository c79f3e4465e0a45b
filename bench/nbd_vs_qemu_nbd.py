#!/usr/bin/env python3
"""The NBD block target against qemu-nbd, measured with fio --ioengine=nbd.

Four figures per target — sequential write 1 MiB QD8, sequential read
1 MiB QD8, random read 4 KiB QD32, random write 4 KiB QD32 — for:

  qemu-nbd raw     qemu-nbd serving a raw file
  nbdkit file      nbdkit's file plugin serving the same raw file (a C
                   server with a thread pool: the ceiling to aim for)
  qemu-nbd qcow2   qemu-nbd serving a qcow2 overlay on a raw base
  coppice          coppice.nbd.server.NBDServer in its own process, over a
                   device made by --backend: ``engine`` (default: a LUN
                   object in a fresh pool), ``engine-clone`` (the LUN of a
                   clone of a snapshot of it: the FlexClone case, to set
                   against the qcow2 overlay), ``lun`` (a filer LUN, what
                   `coppice serve` exports) or ``file``
                   (tests/nbd/file_device, a plain file: the protocol
                   layer alone)

and a table with coppice/qemu-nbd-raw ratios. Every fio run starts after a
sync, so no write-back of a target's preparation (a copied image, a pool
filled by the server) or of an earlier run competes with the one measured.

    .venv/bin/python bench/nbd_vs_qemu_nbd.py [--size-mib 1024] [--runtime 10]
        [--backend engine|engine-clone|lun|file] [--targets raw,nbdkit,qcow2,coppice] [--dir /var/tmp]
        [--workloads write,read,randread,randwrite]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

WORKLOADS = [
    ("seq write 1M QD8", "write", "1M", 8),
    ("seq read 1M QD8", "read", "1M", 8),
    ("rand read 4K QD32", "randread", "4k", 32),
    ("rand write 4K QD32", "randwrite", "4k", 32),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not come up")


def fio(uri: str, rw: str, bs: str, depth: int, size_mib: int, runtime: int) -> tuple[float, float]:
    """(MiB/s, IOPS) of one fio run."""
    cmd = [
        "fio",
        "--name=bench",
        "--ioengine=nbd",
        f"--uri={uri}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={depth}",
        f"--size={size_mib}M",
        f"--runtime={runtime}",
        "--time_based",
        "--ramp_time=1",
        "--randrepeat=0",
        "--norandommap",
        "--output-format=json",
    ]
    # everything written before (an image prepared, the server's fill, the
    # previous run of any target) is on disk, not written back during this run
    os.sync()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"fio failed: {p.stderr}")
    out = p.stdout[p.stdout.index("{") :]  # fio prints "connected to NBD server" first
    job = json.loads(out)["jobs"][0]
    r = job["read"] if rw in ("read", "randread") else job["write"]
    return r["bw"] / 1024.0, r["iops"]


def fill(path: str, size_mib: int) -> None:
    """Write real data over the whole file, so every target reads data
    rather than holes."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(chunk)


def run_target(name: str, uri: str, size_mib: int, runtime: int) -> dict:
    res = {}
    for label, rw, bs, depth in WORKLOADS:
        res[label] = fio(uri, rw, bs, depth, size_mib, runtime)
        print(f"  {name:16s} {label:20s} {res[label][0]:9.1f} MiB/s {res[label][1]:10.0f} IOPS", flush=True)
    return res


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def qemu_nbd(image: str, fmt: str, size_mib: int, runtime: int, label: str) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [
            "qemu-nbd",
            "-f",
            fmt,
            "-x",
            "disk",
            "-p",
            str(port),
            "-b",
            "127.0.0.1",
            "-t",
            "--shared=16",
            "--cache=writeback",
            image,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        return run_target(label, f"nbd://127.0.0.1:{port}/disk", size_mib, runtime)
    finally:
        stop(proc)


def nbdkit(image: str, size_mib: int, runtime: int) -> dict:
    if shutil.which("nbdkit") is None:
        raise SystemExit("nbdkit is not installed: run scripts/install.sh (Debian package nbdkit)")
    port = free_port()
    proc = subprocess.Popen(
        ["nbdkit", "--foreground", "--port", str(port), "--ipaddr", "127.0.0.1", "file", f"file={image}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        return run_target("nbdkit file", f"nbd://127.0.0.1:{port}/", size_mib, runtime)
    finally:
        stop(proc)


def coppice(backend: str, path: str, size_mib: int, runtime: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            "--backend",
            backend,
            "--path",
            path,
            "--size-mib",
            str(size_mib),
        ]
    )
    try:
        wait_port(port, proc, timeout=120)
        return run_target(f"coppice ({backend})", f"nbd://127.0.0.1:{port}/disk", size_mib, runtime)
    finally:
        stop(proc)


# ---------------------------------------------------------------- server side


def _file_device(path: str, size: int):
    from tests.nbd.file_device import FileDevice

    return lambda: FileDevice(path, size=size)


def _lun_device(path: str, size: int):
    """What `coppice serve` exports: a filer LUN (volume size budget, online
    state and all) filled with the baselines' bytes."""
    from coppice.filer import Filer

    f = Filer.create(path + ".pool")
    f.vol_create("v", size * 2)
    f.lun_create("/vol/v/lun0", size)
    dev = f.open_lun("/vol/v/lun0")
    with open(path, "rb") as src:
        off = 0
        while True:
            chunk = src.read(8 << 20)
            if not chunk:
                break
            dev.pwrite(off, chunk)
            off += len(chunk)
    dev.close()
    f.pool.checkpoint()
    return lambda: f.open_lun("/vol/v/lun0")


def _engine_device(path: str, size: int, clone: bool = False):
    """A LUN object in a fresh engine pool beside ``path``, filled with the
    same bytes as the baselines' image; with ``clone``, the LUN of a clone
    of a snapshot of it (the FlexClone case, like qemu's qcow2 overlay)."""
    from coppice.engine import Pool

    pool = Pool.create(path + ".pool")
    pool.create_volume("v")
    pool.create_object("v", "lun0", size)
    h = pool.open_object("v", "lun0")
    with open(path, "rb") as f:
        off = 0
        while True:
            chunk = f.read(8 << 20)
            if not chunk:
                break
            h.pwrite(off, chunk)
            off += len(chunk)
    pool.checkpoint()
    vol = "v"
    if clone:
        pool.create_snapshot("v", "base")
        pool.clone_volume("c", "v", "base")
        vol = "c"
    return lambda: pool.open_object(vol, "lun0")


def serve(port: int, backend: str, path: str, size_mib: int) -> None:
    from coppice.nbd.server import NBDServer
    from tests.nbd.file_device import DictResolver

    size = size_mib << 20
    if backend == "file":
        factory = _file_device(path, size)
    elif backend == "lun":
        factory = _lun_device(path, size)
    else:
        factory = _engine_device(path, size, clone=backend == "engine-clone")
    server = NBDServer(DictResolver({"disk": (factory, "bench")}), port=port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--backend", choices=("file", "engine", "engine-clone", "lun"), default="engine")
    ap.add_argument("--targets", default="raw,nbdkit,qcow2,coppice")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument(
        "--workloads",
        default="write,read,randread,randwrite",
        help="which of the four fio workloads to run (by fio's rw name)",
    )
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.backend, a.path, a.size_mib)
        return

    wanted = a.workloads.split(",")
    known = [w[1] for w in WORKLOADS]
    unknown = [w for w in wanted if w not in known]
    if unknown or not wanted:
        raise SystemExit(
            f"--workloads: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(known)}"
        )
    WORKLOADS[:] = [w for w in WORKLOADS if w[1] in wanted]
    work = tempfile.mkdtemp(prefix="coppice-nbd-bench-", dir=a.dir)
    targets = a.targets.split(",")
    results: dict[str, dict] = {}
    try:
        raw = os.path.join(work, "base.raw")
        print(f"filling {a.size_mib} MiB test images in {work} ...", flush=True)
        fill(raw, a.size_mib)
        if "raw" in targets:
            img = os.path.join(work, "qemu.raw")
            shutil.copyfile(raw, img)
            results["qemu-nbd raw"] = qemu_nbd(img, "raw", a.size_mib, a.runtime, "qemu-nbd raw")
            os.unlink(img)
        if "nbdkit" in targets:
            img = os.path.join(work, "nbdkit.raw")
            shutil.copyfile(raw, img)
            results["nbdkit file"] = nbdkit(img, a.size_mib, a.runtime)
            os.unlink(img)
        if "qcow2" in targets:
            ov = os.path.join(work, "overlay.qcow2")
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-b", raw, "-F", "raw", ov], check=True
            )
            results["qemu-nbd qcow2"] = qemu_nbd(ov, "qcow2", a.size_mib, a.runtime, "qemu-nbd qcow2")
        if "coppice" in targets:
            img = os.path.join(work, "coppice.raw")
            shutil.copyfile(raw, img)
            results[f"coppice ({a.backend})"] = coppice(a.backend, img, a.size_mib, a.runtime)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    names = list(results)
    base = results.get("qemu-nbd raw")
    print()
    header = f"| {'workload':20s} | " + " | ".join(f"{n:>18s}" for n in names)
    if base:
        header += " | " + " | ".join(
            f"{'ratio ' + n.split(' (')[0]:>14s}" for n in names if n != "qemu-nbd raw"
        )
    print(header + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in header.strip("| ").split(" | ")) + "|")
    for label, _rw, bs, _d in WORKLOADS:
        unit = (lambda v: f"{v[0]:8.0f} MiB/s") if bs == "1M" else (lambda v: f"{v[1] / 1000:7.1f}k IOPS")
        row = f"| {label:20s} | " + " | ".join(f"{unit(results[n][label]):>18s}" for n in names)
        if base:
            ratios = []
            for n in names:
                if n == "qemu-nbd raw":
                    continue
                i = 0 if bs == "1M" else 1
                ratios.append(f"{results[n][label][i] / base[label][i]:14.2f}")
            row += " | " + " | ".join(ratios)
        print(row + " |")


if __name__ == "__main__":
    main()
