#!/usr/bin/env python3
"""Deduplication: scan throughput, RAM per unique block, inline write-path
cost, and duperemove on btrfs with the same data, printed as one table.

Data: N full copies (one LUN per volume) of S MiB of random data, so the
pool holds N x S logical and S unique after deduplication.

* **scan**: a full post-process scan (`sis start -s`) of the N copies in a
  child process; GB/s of logical data scanned, per CPU-second (the scan is
  single-threaded, so that is per core); physical used before and after.
* **RAM per unique block**: measured the same way for Coppice and
  duperemove: the peak RSS of the whole scanning process (wait4's
  ru_maxrss of the child), over the unique blocks, at two sizes; the slope
  between them is the memory that grows with the number of unique blocks
  (the rest is a fixed cost: the interpreter, SQLite's capped cache, the
  engine's capped page cache). The part of that slope that is the engine's
  block-map cache (pages held at the end, 8 KiB each) is printed apart.
  Both sizes are past the scan's fixed working sets (a bucket of rows, the
  refcount changes between consistency points, 32,768 shares): with a
  smaller copy (64 MiB) those are still filling and show up as slope.
  The scanning process does only that (open, scan, close); used space and
  fsck run in children of their own.
  Inline mode's table is fixed-size: 16 bytes a slot.
* **phases**: wall, CPU and peak RSS of collect, sort and match, for both
  sizes (the peak is the kernel's high-water mark, reset through
  /proc/self/clear_refs at each phase change).
* **inline**: MB/s writing the copies with inline off (the plain write
  path), with inline on when every block is new (pure lookup cost) and
  when every block is a duplicate.
* **duperemove**: the same files on a btrfs loop image (root, loop devices,
  btrfs-progs and duperemove needed; the column says why when it cannot
  run): `duperemove -dr`, wall and CPU time, peak RSS, used space after.

    .venv/bin/python bench/dedup.py [--copies 4] [--size-mib 1024] [--small-mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

BS = 4096
CHUNK = 1 << 20
ENGINE_CACHE = 64 << 20  # the engine default


def rss_kib(field="VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _sqlite_highwater():
    """sqlite3_memory_highwater of the library Python's sqlite3 uses (every
    connection of the process: the engine's and the scan's), or 0."""
    try:
        import ctypes
        import sqlite3  # noqa: F401  (loads the library)

        lib = ctypes.CDLL("libsqlite3.so.0")
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    except OSError:
        return lambda reset=False: 0
    return lambda reset=False: lib.sqlite3_memory_highwater(1 if reset else 0)


def data_of(size: int, seed: int = 7) -> bytes:
    part = 16 << 20  # randbytes is limited to < 256 MiB a call
    return b"".join(
        random.Random(seed * 1000 + i).randbytes(min(part, size - off))
        for i, off in enumerate(range(0, size, part))
    )


def build_pool(path: str, copies: int, data: bytes, inline: bool = False) -> dict:
    """Write the copies; returns write timing."""
    from coppice import dedup
    from coppice.engine import Pool

    pool = Pool.create(path)
    hook = dedup.attach(pool) if inline else None
    t = time.perf_counter()
    times = []
    for i in range(copies):
        v = f"v{i}"
        pool.create_volume(v)
        pool.create_object(v, "lun", len(data))
        dedup.config.set_enabled(pool, v, True)
        if inline:
            dedup.config.set_inline(pool, v, True)
        h = pool.open_object(v, "lun")
        t1 = time.perf_counter()
        for off in range(0, len(data), CHUNK):
            h.pwrite(off, memoryview(data)[off : off + CHUNK])
        pool.flush()
        times.append(time.perf_counter() - t1)
    total = time.perf_counter() - t
    used = pool.pool_space()["used_bytes"]
    pool.close()
    return {
        "first_s": times[0],
        "rest_s": sum(times[1:]),
        "total_s": total,
        "used": used,
        "hits": hook.hits if hook else 0,
    }


def child_check(path: str) -> None:
    """Runs in a child of its own, before and after the scan's: the pool's
    used space and (after) fsck. Not in the scan's process, so neither
    counts in its memory (fsck holds a map of every block)."""
    from coppice.engine import Pool

    pool = Pool.open(path, cache_bytes=ENGINE_CACHE)
    try:
        print(json.dumps({"used": pool.pool_space()["used_bytes"], "fsck_clean": pool.fsck().clean}))
    finally:
        pool.close()


def child_scan(path: str) -> None:
    """Runs in a child: open the pool, scan, close; print JSON with timings
    and counters. Its memory is measured by the parent (GNU time), as
    duperemove's is: the process does nothing but the scan."""
    from coppice import dedup
    from coppice.engine import Pool

    pool = Pool.open(path, cache_bytes=ENGINE_CACHE)
    # Per phase: wall, CPU and the peak RSS reached during it (the kernel's
    # high-water mark, reset at each phase change through clear_refs).
    phases = {}
    last = [time.perf_counter(), "start", time.process_time(), rss_kib()]

    sqlite_hw = _sqlite_highwater()

    def reset_peak() -> None:
        sqlite_hw(reset=True)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass  # not Linux, or not allowed: the peak is then the process's so far

    def progress(phase, done, total):
        now = time.perf_counter()
        if phase != last[1]:
            p = phases.setdefault(last[1], {"wall": 0.0, "cpu": 0.0, "rss_start_kib": last[3], "peak_kib": 0})
            p["wall"] += now - last[0]
            p["cpu"] += time.process_time() - last[2]
            p["peak_kib"] = max(p["peak_kib"], rss_kib("VmHWM"))
            p["sqlite_peak_kib"] = max(p.get("sqlite_peak_kib", 0), sqlite_hw() // 1024)
            reset_peak()
            last[:] = [now, phase, time.process_time(), rss_kib()]

    # Resetting the high-water mark resets the kernel's maxrss too (what
    # GNU time reports): the whole scan's peak is the largest of the peak
    # before the first reset and each phase's.
    peak_before = rss_kib("VmHWM")
    reset_peak()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    job = dedup.Scanner(pool, progress=progress).start(full=True)
    progress("end", 0, 0)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # a count, not an estimate: the engine's block-map pages held at the end
    # (8 KiB of page each; the cache is capped at ENGINE_CACHE)
    pages = len(pool.cache.clean) + len(pool.cache.dirty)
    pool.close()
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                "engine_cache_pages": pages,
                "counters": job["counters"],
                "phases": phases,
                "peak_kib": max([peak_before] + [p["peak_kib"] for p in phases.values()]),
            }
        )
    )


def measured(argv: list[str], stdout=None, stderr=None) -> tuple[int, float, int]:
    """Run argv; (exit code, CPU seconds, peak RSS KiB) of that process alone.

    Measured by GNU time (``/usr/bin/time -f``), which forks the command
    itself: wait4's ru_maxrss of a child forked from this (large) process
    would report this process's memory at the fork, not the child's."""
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("bench/dedup.py measures memory with GNU time: apt-get install time")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        code = subprocess.call(
            ["/usr/bin/time", "-o", tf.name, "-f", "%e %U %S %M", *argv], stdout=stdout, stderr=stderr
        )
        _wall, user, sys_, kib = tf.read().split()[-4:]
    return code, float(user) + float(sys_), int(kib)


def _child(flag: str, path: str) -> tuple[dict, int]:
    with tempfile.TemporaryFile("w+") as out:
        code, _, kib = measured([sys.executable, __file__, flag, path], stdout=out)
        if code:
            raise SystemExit(f"the {flag} child failed with exit code {code}")
        out.seek(0)
        return json.loads(out.read().strip().splitlines()[-1]), kib


def run_scan(path: str) -> dict:
    """The scan in a child process, measured the same way as duperemove;
    used space before and after, and fsck, each in a child of its own."""
    before, _ = _child("--child-check", path)
    r, kib = _child("--child-scan", path)
    r["maxrss_kib"] = max(kib, r["peak_kib"])  # see child_scan: the phases reset the kernel's figure
    after, _ = _child("--child-check", path)
    r.update(before=before["used"], after=after["used"], fsck_clean=after["fsck_clean"])
    return r


def duperemove(tmp: str, copies: int, data: bytes) -> dict:
    """The same copies as files on btrfs, deduplicated by duperemove."""
    if os.geteuid() != 0:
        return {"skip": "needs root"}
    for tool in ("mkfs.btrfs", "duperemove", "losetup", "/usr/bin/time"):
        if not shutil.which(tool):
            return {"skip": f"{tool} not installed"}
    img = os.path.join(tmp, "btrfs.img")
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt, exist_ok=True)
    size = max(copies * len(data) * 2, 512 << 20)
    with open(img, "wb") as f:
        f.truncate(size)
    try:
        subprocess.run(["mkfs.btrfs", "-q", "-f", img], check=True, capture_output=True)
        r = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
        if r.returncode:
            return {"skip": "cannot mount a loop device: " + (r.stderr.strip().splitlines() or ["?"])[-1]}
    except (subprocess.CalledProcessError, OSError) as e:
        return {"skip": f"mkfs.btrfs failed: {e}"}
    try:
        for i in range(copies):
            with open(os.path.join(mnt, f"copy{i}"), "wb") as f:
                for off in range(0, len(data), CHUNK):
                    f.write(data[off : off + CHUNK])
        subprocess.run(["sync"], check=True)

        def used():
            subprocess.run(["btrfs", "filesystem", "sync", mnt], capture_output=True)
            st = os.statvfs(mnt)
            return (st.f_blocks - st.f_bfree) * st.f_frsize

        before = used()
        t = time.perf_counter()
        hashfile = os.path.join(tmp, "dupe.hash")
        if os.path.exists(hashfile):  # from the other size's run: start from nothing
            os.unlink(hashfile)
        errf = os.path.join(tmp, "dupe.err")
        with open(errf, "wb") as ef:
            code, cpu, kib = measured(
                ["duperemove", "-dr", "-q", f"--hashfile={hashfile}", mnt],
                stdout=subprocess.DEVNULL,
                stderr=ef,
            )
        wall = time.perf_counter() - t
        if code:
            return {"skip": f"duperemove failed: {open(errf).read().strip()[-200:]}"}
        after = used()
        return {
            "wall": wall,
            "cpu": cpu,
            "maxrss_kib": kib,
            "before": before,
            "after": after,
        }
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def gb(x):
    return x / 1e9


def mib(x):
    return f"{x / 2**20:.0f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=1024, help="size of one copy (the big run)")
    ap.add_argument(
        "--small-mib", type=int, default=256, help="size of one copy (the small run, for the slope)"
    )
    ap.add_argument("--no-duperemove", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child-scan", help=argparse.SUPPRESS)
    ap.add_argument("--child-check", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child_scan:
        child_scan(a.child_scan)
        return 0
    if a.child_check:
        child_check(a.child_check)
        return 0

    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    tmp = tempfile.mkdtemp(prefix="coppice-bench-dedup-", dir=base)
    res = {}
    try:
        n = a.copies
        runs = {}
        dupe = {}
        for label, mb in (("small", a.small_mib), ("big", a.size_mib)):
            data = data_of(mb << 20)
            path = os.path.join(tmp, f"pool-{label}")
            w = build_pool(path, n, data)
            s = run_scan(path)
            runs[label] = {"mib": mb, "write": w, "scan": s, "unique_blocks": (mb << 20) // BS}
            shutil.rmtree(path)
            dupe[label] = {"skip": "--no-duperemove"} if a.no_duperemove else duperemove(tmp, n, data)
        big, small = runs["big"], runs["small"]
        data = data_of(big["mib"] << 20)
        logical = n * len(data)
        s = big["scan"]
        du = big["unique_blocks"] - small["unique_blocks"]

        def slope(b_kib, s_kib):  # bytes of peak RSS per added unique block
            return (b_kib - s_kib) * 1024 / max(1, du)

        res["coppice"] = {
            "logical_bytes": logical,
            "unique_bytes": len(data),
            "scan_wall_s": s["wall"],
            "scan_cpu_s": s["cpu"],
            "scan_gbps": gb(logical) / s["wall"],
            "scan_gbps_per_core": gb(logical) / s["cpu"],
            "used_before": s["before"],
            "used_after": s["after"],
            "fsck_clean": s["fsck_clean"],
            "maxrss_bytes": s["maxrss_kib"] * 1024,
            "maxrss_small_bytes": small["scan"]["maxrss_kib"] * 1024,
            "engine_cache_pages": (small["scan"]["engine_cache_pages"], s["engine_cache_pages"]),
            "rss_per_unique_block_total": s["maxrss_kib"] * 1024 / big["unique_blocks"],
            "rss_per_unique_block_marginal": slope(s["maxrss_kib"], small["scan"]["maxrss_kib"]),
            # the part of that slope that is the engine's block-map page cache
            # (pages held at the end, 8 KiB each), not the scan's index
            "rss_per_unique_block_engine_cache": (
                s["engine_cache_pages"] - small["scan"]["engine_cache_pages"]
            )
            * 8192
            / max(1, du),
            "phases": s["phases"],
            "phases_small": small["scan"]["phases"],
            "counters": s["counters"],
        }
        # Inline: plain vs inline, unique data and duplicate data.
        plain = big["write"]
        path = os.path.join(tmp, "pool-inline")
        inl = build_pool(path, n, data, inline=True)
        shutil.rmtree(path)
        res["inline"] = {
            "plain_unique_mbps": len(data) / plain["first_s"] / 1e6,
            "plain_dup_mbps": (n - 1) * len(data) / plain["rest_s"] / 1e6,
            "inline_unique_mbps": len(data) / inl["first_s"] / 1e6,
            "inline_dup_mbps": (n - 1) * len(data) / inl["rest_s"] / 1e6,
            "inline_used": inl["used"],
            "inline_hits": inl["hits"],
            "table_bytes_per_slot": 16,
        }
        d = dupe["big"]
        if "skip" not in d and "skip" not in dupe["small"]:
            d["maxrss_small_kib"] = dupe["small"]["maxrss_kib"]
            d["rss_per_unique_block_total"] = d["maxrss_kib"] * 1024 / big["unique_blocks"]
            d["rss_per_unique_block_marginal"] = slope(d["maxrss_kib"], dupe["small"]["maxrss_kib"])
        res["duperemove"] = d
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    c, i, d = res["coppice"], res["inline"], res["duperemove"]
    rows = [
        ("data", f"{n} copies x {mib(c['unique_bytes'])} = {mib(c['logical_bytes'])} logical", "same files")
    ]
    if "skip" in d:
        dcol = lambda *_: f"n/a ({d['skip']})"  # noqa: E731
    else:
        dcol = None
    rows += [
        ("scan wall time", f"{c['scan_wall_s']:.2f} s", dcol() if dcol else f"{d['wall']:.2f} s"),
        (
            "scan GB/s (wall)",
            f"{c['scan_gbps']:.3f}",
            dcol() if dcol else f"{gb(c['logical_bytes']) / d['wall']:.3f}",
        ),
        (
            "scan GB/s per core (CPU s)",
            f"{c['scan_gbps_per_core']:.3f}",
            dcol() if dcol else f"{gb(c['logical_bytes']) / max(d['cpu'], 1e-9):.3f}",
        ),
        (
            "used before -> after",
            f"{mib(c['used_before'])} -> {mib(c['used_after'])}",
            dcol() if dcol else f"{mib(d['before'])} -> {mib(d['after'])}",
        ),
        (
            "peak RSS, whole process (big, small)",
            f"{mib(c['maxrss_bytes'])}, {mib(c['maxrss_small_bytes'])}",
            dcol() if dcol else f"{mib(d['maxrss_kib'] * 1024)}, {mib(d['maxrss_small_kib'] * 1024)}",
        ),
        (
            "RAM / unique block (peak RSS / unique)",
            f"{c['rss_per_unique_block_total']:.1f} B",
            dcol() if dcol else f"{d['rss_per_unique_block_total']:.1f} B",
        ),
        (
            "RAM / unique block (marginal, big - small)",
            f"{c['rss_per_unique_block_marginal']:.1f} B",
            dcol() if dcol else f"{d['rss_per_unique_block_marginal']:.1f} B",
        ),
        (
            "  of which the engine's block-map cache",
            f"{c['rss_per_unique_block_engine_cache']:.1f} B",
            "-",
        ),
        (
            "  the rest (the scan's own)",
            f"{c['rss_per_unique_block_marginal'] - c['rss_per_unique_block_engine_cache']:.1f} B",
            "-",
        ),
        (
            "engine block-map pages held (small, big)",
            "{}, {} (8 KiB each; cache capped at {} MiB)".format(
                *c["engine_cache_pages"], ENGINE_CACHE >> 20
            ),
            "-",
        ),
        ("fsck after scan", "clean" if c["fsck_clean"] else "NOT CLEAN", "-"),
        ("plain write, new data", f"{i['plain_unique_mbps']:.0f} MB/s", "-"),
        (
            "inline write, new data",
            f"{i['inline_unique_mbps']:.0f} MB/s "
            f"({100 * (i['plain_unique_mbps'] / i['inline_unique_mbps'] - 1):+.0f}% time)",
            "-",
        ),
        ("plain write, duplicate data", f"{i['plain_dup_mbps']:.0f} MB/s", "-"),
        (
            "inline write, duplicate data",
            f"{i['inline_dup_mbps']:.0f} MB/s "
            f"({100 * (i['plain_dup_mbps'] / i['inline_dup_mbps'] - 1):+.0f}% time), "
            f"used {mib(i['inline_used'])}",
            "-",
        ),
        ("inline table", "16 B/slot, fixed size", "-"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'':{w0}}  {'coppice':{w1}}  duperemove on btrfs")
    for r in rows:
        print(f"{r[0]:{w0}}  {r[1]:{w1}}  {r[2]}")
    for label, key in (("big", "phases"), ("small", "phases_small")):
        print(
            f"\nscan phases ({label} run): wall, CPU, RSS at start -> peak during the phase, "
            "SQLite's peak (all connections: the engine's and the scan's)"
        )
        for k, v in c[key].items():
            if k in ("start", "done"):
                continue
            print(
                f"  {k:8s} {v['wall']:6.2f} s  {v['cpu']:6.2f} s CPU  "
                f"{v['rss_start_kib'] / 1024:6.1f} -> {v['peak_kib'] / 1024:6.1f} MiB"
                f"  (SQLite's heap at most {v.get('sqlite_peak_kib', 0) / 1024:.1f} MiB)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
