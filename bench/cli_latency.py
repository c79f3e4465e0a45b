#!/usr/bin/env python3
"""Latency of one `coppice` command, as a user types it, in a large pool.

Builds a pool of N volumes (default 10,000; each with a LUN-less thin
volume), then times whole `coppice` processes: the median of R runs
(default 20) of `snap create`, `vol show NAME` and `vol list` (`vol show`
of every volume), once with the pool opened directly and once through a
running `coppice serve` (its Unix socket). Baseline in the same run:
`python -c pass` (the floor: interpreter start) and `python -c "import
coppice.cli.main"` (the CLI's imports alone). Targets (issue 16): <= 0.2 s
through the daemon, <= 0.3 s direct.

Timed as a user's shell runs it: with bytecode caches (the bench compiles
the package first and drops PYTHONDONTWRITEBYTECODE from the children's
environment; without .pyc files every command spends ~90 ms compiling).

    .venv/bin/python bench/cli_latency.py [--volumes 10000] [--runs 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build_pool(path: str, volumes: int) -> float:
    from coppice.filer import Filer

    t = time.perf_counter()
    f = Filer.create(path)
    try:
        done = 0
        while done < volumes:
            with f.transaction():  # one commit per 500 volumes: the build is setup, not what we time
                for i in range(done, min(volumes, done + 500)):
                    f.vol_create(f"v{i:05d}", "1g")
            done = min(volumes, done + 500)
    finally:
        f.close()
    return time.perf_counter() - t


def coppice(pool: str, *args) -> list[str]:
    return [sys.executable, "-m", "coppice.cli.main", "--pool", pool, *args]


CPU: dict[str, float] = {}  # command -> median CPU seconds (user + system) of the client process


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def median_seconds(argv_for_run, runs: int, env, name: str | None = None) -> float:
    """Median wall seconds of ``runs`` runs; the median CPU seconds of the
    client process go to ``CPU[name]`` (on a loaded machine wall time
    drifts with the load, the client's own CPU much less)."""
    times, cpu = [], []
    for i in range(runs):
        argv = argv_for_run(i)
        c = _children_cpu()
        t = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t)
        cpu.append(_children_cpu() - c)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    if name:
        CPU[name] = statistics.median(cpu)
    return statistics.median(times)


def commands(pool: str, tag: str):
    return [
        # a fresh snapshot name per run, and per bench run (a kept pool is reused)
        ("snap create", lambda i: coppice(pool, "snap", "create", f"v{i:05d}", f"{tag}{os.getpid()}")),
        ("vol show NAME", lambda i: coppice(pool, "vol", "show", "v00007")),
        ("vol show (all)", lambda i: coppice(pool, "vol", "show")),
    ]


def start_daemon(pool: str, env):
    proc = subprocess.Popen(
        coppice(pool, "serve", "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        raise SystemExit(f"daemon did not start: {line!r} {proc.stderr.read()[-500:]}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--keep", help="build (or reuse) the pool here instead of a temporary directory")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="coppice-cli-latency-")
    pool = a.keep or os.path.join(tmp, "pool")
    env = dict(os.environ)
    env.pop("COPPICE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "coppice")], env=env, check=True
    )
    try:
        if not os.path.exists(os.path.join(pool, "pool.db")):
            secs = build_pool(pool, a.volumes)
            print(f"pool: {a.volumes} volumes built in {secs:.1f} s ({pool})")
        floor = median_seconds(lambda i: [sys.executable, "-c", "pass"], a.runs, env, "floor")
        imports = median_seconds(
            lambda i: [sys.executable, "-c", "import coppice.cli.main"], a.runs, env, "imports"
        )
        direct = {name: median_seconds(argv, a.runs, env, f"d {name}") for name, argv in commands(pool, "d")}
        proc = start_daemon(pool, env)
        try:
            served = {
                name: median_seconds(argv, a.runs, env, f"s {name}") for name, argv in commands(pool, "s")
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        print(f"median of {a.runs} runs, seconds; pool of {a.volumes} volumes")
        print(f"{'':<18} {'wall':>17} {'client CPU':>19}")
        print(
            f"{'command':<18} {'direct':>8} {'daemon':>8} {'direct':>9} {'daemon':>9}"
            "   targets (wall): direct <= 0.30, daemon <= 0.20"
        )
        for name in direct:
            print(
                f"{name:<18} {direct[name]:>8.3f} {served[name]:>8.3f}"
                f" {CPU[f'd {name}']:>9.3f} {CPU[f's {name}']:>9.3f}"
            )
        print(
            f"{'python -c pass':<18} {floor:>8.3f} {'':>8} {CPU['floor']:>9.3f}   (floor: interpreter start)"
        )
        print(
            f"{'import cli.main':<18} {imports:>8.3f} {'':>8} {CPU['imports']:>9.3f}   (the CLI's imports alone)"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
