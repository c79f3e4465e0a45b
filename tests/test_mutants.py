"""The named mutants of scripts/mutants.py are all killed: each deliberate
breakage of a core promise (no-op flush, no-op zero, extents all data, no
read verification (of a range, of one block), no igroup check, no
busy-snapshot check, a skipped refcount decrement (trim, overwrite), no
dedup byte compare, no write-budget charge) makes the
tests named for it fail. Prints the table (pytest -s shows it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(1500)
def test_every_named_mutant_is_killed():
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "mutants.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    print(r.stdout)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}"
    assert "all 11 mutants killed" in r.stdout
