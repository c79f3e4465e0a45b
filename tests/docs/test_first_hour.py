"""Hints where a first-hour user goes wrong, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "coppice.cli.main"]


def run(pool, *args):
    return subprocess.run(CLI + ["--pool", pool, *args], capture_output=True, text=True)


def test_names_only_igroup_explains_how_nbd_clients_are_identified(tmp_path):
    pool = str(tmp_path / "pool")
    assert run(pool, "pool", "create", pool).returncode == 0
    p = run(pool, "igroup", "create", "-i", "-t", "linux", "esx1", "iqn.2026-01.org.example:host1")
    assert p.returncode == 0, p.stderr
    assert "Initiator group esx1 created" in p.stdout
    # The hint goes to stderr, names the igroup, the three identities and the fix.
    assert "holds names only" in p.stderr
    assert "TLS client certificate" in p.stderr and "Unix socket" in p.stderr
    assert "coppice igroup add esx1 127.0.0.1" in p.stderr
    # An igroup that admits an address needs no hint; JSON output stays clean JSON.
    p = run(pool, "igroup", "create", "-i", "esx2", "iqn.2026-01.org.example:host2", "127.0.0.1", "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.lstrip().startswith("{")
    assert os.path.isdir(pool)
