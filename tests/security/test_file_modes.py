"""Pool files are owner-only: a local user other than the pool's owner reads
no LUN data, metadata, token or password hash, whatever the umask was when
the pool was made, and a pool made loose (an older Coppice, a careless
umask) is tightened when it is opened."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

CLI = [sys.executable, "-m", "coppice.cli.main"]


def loose(pool: str) -> list[str]:
    """Every path under ``pool`` (itself included) that group or others may use."""
    bad = []
    for root, dirs, files in os.walk(pool):
        for p in [root, *(os.path.join(root, n) for n in dirs + files)]:
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                bad.append(f"{p} {stat.filemode(st.st_mode)}")
    return bad


def cli(pool, *args):
    p = subprocess.run(CLI + ["--pool", pool, *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_a_pool_made_under_a_loose_umask_is_owner_only(tmp_path):
    pool = str(tmp_path / "pool")
    old = os.umask(0o000)
    try:
        cli(pool, "pool", "create", pool)
        cli(pool, "vol", "create", "v", "64m")
        cli(pool, "lun", "create", "-s", "8m", "/vol/v/lun0")
        cli(pool, "sis", "on", "/vol/v")
    finally:
        os.umask(old)
    names = {os.path.relpath(os.path.join(r, n), pool) for r, d, f in os.walk(pool) for n in d + f}
    assert {"pool.db", "data", "data/blocks", "intent.log"} <= names
    assert loose(pool) == []
    assert stat.S_IMODE(os.stat(pool).st_mode) == 0o700


def test_opening_a_loose_pool_tightens_it(tmp_path):
    pool = str(tmp_path / "pool")
    cli(pool, "pool", "create", pool)
    cli(pool, "vol", "create", "v", "64m")
    for root, _dirs, files in os.walk(pool):
        os.chmod(root, 0o755)
        for n in files:
            os.chmod(os.path.join(root, n), 0o644)
    assert loose(pool)
    cli(pool, "vol", "show")
    assert loose(pool) == []
