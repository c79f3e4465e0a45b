#!/usr/bin/env python3
"""Named mutants: deliberate breakages of Coppice's core promises, each of
which the test suite must catch.

Contract: for every mutant in ``MUTANTS`` this copies the project's
``coppice/`` and ``tests/`` into a scratch directory, applies the one edit
(an exact text that must occur exactly once in the named file — if the code
moved on and the text is gone, that is reported as a failure, so the table
cannot silently rot), runs only the test files named for it, and records
whether they failed (the mutant is *killed*) or passed (it *survived*).
The original tree is never touched. Prints a table; exits 1 if any mutant
survived or no longer applies.

Run: ``python scripts/mutants.py [NAME ...]`` (all by default).
``tests/test_mutants.py`` runs it in the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    path: str  # relative to the project root
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest arguments (files or node ids), relative to the root


MUTANTS: list[Mutant] = [
    Mutant(
        "flush-noop",
        "FLUSH makes acknowledged writes durable",
        "coppice/engine/pool.py",
        "        self._check_open()\n        self._sync_data()\n        self.log.sync()\n",
        "        self._check_open()\n",
        ("tests/reliability/test_power_loss.py",),
    ),
    Mutant(
        "zero-noop",
        "WRITE_ZEROES reads back as zeros",
        "coppice/filer/blockdev.py",
        "        # the engine never stores zeros: a zeroed range is a hole either way\n"
        "        self.trim(offset, length, fua)\n",
        "        return\n",
        ("tests/nbd/test_product_luns.py",),
    ),
    Mutant(
        "extents-all-data",
        "BLOCK_STATUS reports holes as holes",
        "coppice/filer/blockdev.py",
        "        self._check(False)\n        return self.h.extents(offset, length)\n",
        "        self._check(False)\n        return [(offset, min(length, self.size - offset), 0)]\n",
        ("tests/nbd/test_product_luns.py",),
    ),
    Mutant(
        "read-verify-skip",
        "a corrupt block reads as EIO, never as wrong bytes",
        "coppice/engine/datapath.py",
        "        if bad >= 0:\n            return i + bad, p + bad\n",
        "        pass\n",
        ("tests/engine/test_integrity.py",),
    ),
    Mutant(
        "read-verify-skip-one",
        "a corrupt block read alone (a 4 KiB read) is EIO, never wrong bytes",
        "coppice/engine/datapath.py",
        "    if block_checksum(data) != csum:\n        return None\n",
        "    pass\n",
        ("tests/engine/test_integrity.py",),
    ),
    Mutant(
        "overwrite-unref-skip",
        "sharing is exact: an overwritten block is freed when nothing else holds it",
        "coppice/engine/pool.py",
        "            old = ents[slot]\n            if old:\n                unref.append(old)\n",
        "            old = ents[slot]\n",
        ("tests/engine/test_fold.py",),
    ),
    Mutant(
        "igroup-skip",
        "only initiators of a mapped igroup open a LUN",
        "coppice/filer/igroup.py",
        '''    """Does ``initiator`` (nbd.blockdev.Initiator) belong to igroup ``rec``?"""\n''',
        '''    """Does ``initiator`` (nbd.blockdev.Initiator) belong to igroup ``rec``?"""\n    return True\n''',
        ("tests/security/test_nbd_access.py", "tests/nbd/test_access.py"),
    ),
    Mutant(
        "busy-snapshot-skip",
        "a snapshot clones depend on is not deleted",
        "coppice/filer/snapshot.py",
        "    with f.transaction():\n        _busy(f, vol, name)\n        for o in",
        "    with f.transaction():\n        for o in",
        ("tests/filer/test_snapshot.py",),
    ),
    Mutant(
        "refcount-decrement-skip",
        "freeing is exact (fsck: stored refcounts equal pointers)",
        "coppice/engine/blockmap.py",
        "                cache.decref_block(b)\n                ents[i] = 0\n",
        "                ents[i] = 0\n",
        ("tests/engine/test_cow.py",),
    ),
    Mutant(
        "dedup-compare-skip",
        "dedup never merges different data",
        "coppice/engine/sharing.py",
        "        good = datapath.equal_prefix(a, b, bs)\n",
        "        good = len(a) // bs\n",
        ("tests/engine/test_share_compare.py", "tests/dedup/test_collision.py"),
    ),
    Mutant(
        "write-budget-skip",
        "a volume's space guarantee refuses writes past it",
        "coppice/filer/blockdev.py",
        "        if not self._budgeted:\n            self.h.pwrite(offset, data, fua)\n            return\n",
        "        if True:\n            self.h.pwrite(offset, data, fua)\n            return\n",
        ("tests/filer/test_snapshot_spill.py", "tests/filer/test_space.py"),
    ),
]


def _apply(tree: str, m: Mutant) -> str | None:
    """Apply ``m`` in ``tree``; returns why it cannot be applied, or None."""
    p = os.path.join(tree, m.path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return f"{m.path} does not exist"
    n = text.count(m.old)
    if n != 1:
        return f"the text to mutate occurs {n} times in {m.path} (expected exactly 1)"
    with open(p, "w", encoding="utf-8") as f:
        f.write(text.replace(m.old, m.new))
    return None


def _scratch_copy() -> str:
    d = tempfile.mkdtemp(prefix="coppice-mutant-")
    for part in ("coppice", "tests", "pyproject.toml", "scripts"):
        src = os.path.join(ROOT, part)
        dst = os.path.join(d, part)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build"))
        elif os.path.exists(src):
            shutil.copy2(src, dst)
    return d


def run_one(m: Mutant, timeout: float = 600) -> tuple[str, str, float]:
    """(verdict, detail, seconds): verdict is killed, SURVIVED or BROKEN."""
    tree = _scratch_copy()
    t0 = time.monotonic()
    try:
        why = _apply(tree, m) if m.path else None
        if why:
            return "BROKEN", why, 0.0
        env = dict(os.environ)
        # The scratch copy first on the path, ahead of the editable install,
        # for this process and for every subprocess the tests start.
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
        env["COPPICE_MUTANT"] = m.name
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed", f"tests timed out after {timeout:.0f} s", time.monotonic() - t0
        last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        if r.returncode == 0:
            return "SURVIVED", last, time.monotonic() - t0
        if r.returncode in (1,):  # tests ran and failed
            return "killed", last, time.monotonic() - t0
        # 2 = interrupted / collection error, 4 = usage, 5 = no tests: the mutant was not exercised.
        return "BROKEN", f"pytest exit {r.returncode}: {last}", time.monotonic() - t0
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTANTS if not argv or m.name in argv]
    unknown = set(argv) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutant(s): {', '.join(sorted(unknown))}; known: {', '.join(m.name for m in MUTANTS)}")
        return 2
    # The same tests on the unmutated scratch copy first: a kill counts only
    # if they pass without the mutant.
    tests = sorted({t for m in chosen for t in m.tests})
    verdict, detail, secs = run_one(Mutant("baseline", "", "", "", "", tuple(tests)))
    print(f"{'(no mutant)':<28} {verdict:<9} {secs:6.1f} s  {detail}", flush=True)
    if verdict != "SURVIVED":
        print("the tests fail without any mutant: fix them first")
        return 1
    rows = []
    for m in chosen:
        verdict, detail, secs = run_one(m)
        rows.append((m, verdict, detail, secs))
        print(f"{m.name:<28} {verdict:<9} {secs:6.1f} s  {detail}", flush=True)
    print()
    print("| mutant | promise broken | verdict | killed by | seconds |")
    print("|---|---|---|---|---|")
    for m, verdict, _detail, secs in rows:
        print(f"| {m.name} | {m.promise} | {verdict} | {' '.join(m.tests)} | {secs:.1f} |")
    bad = [m.name for m, v, _, _ in rows if v != "killed"]
    if bad:
        print(f"\nnot killed: {', '.join(bad)}")
        return 1
    print(f"\nall {len(rows)} mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
