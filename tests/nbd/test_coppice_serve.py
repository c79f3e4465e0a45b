"""The real clients against `coppice serve` itself: the daemon's NBD target
over filer LUNs (active, clone, snapshot), block status and write-zeroes
checked there; its log says why an export was refused; `coppice nbd who`
shows who may open a LUN and who is connected."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import nbd
import pytest

from tests.api.conftest import Served, run_cli
from tests.nbd.conftest import MiB, run


@pytest.fixture
def pool_dir():
    d = tempfile.mkdtemp(prefix="coppice-serve-", dir="/var/tmp")
    p = os.path.join(d, "pool")
    from coppice.filer import Filer

    f = Filer.create(p)
    f.vol_create("v", "256m")
    f.lun_create("/vol/v/lun0", 8 * MiB)  # the README's first try: an iSCSI-named igroup
    f.igroup_create("esx1", ["iqn.2026-01.org.example:host1"])
    f.lun_map("/vol/v/lun0", "esx1")
    f.lun_create("/vol/v/lun1", 8 * MiB)
    f.igroup_create("local", ["127.0.0.1"], protocol="nbd")
    f.lun_map("/vol/v/lun1", "local")
    dev = f.open_lun("/vol/v/lun1")
    dev.pwrite(0, b"\x5a" * (2 * MiB))
    dev.close()
    f.snap_create("v", "golden")
    f.clone_create("c", "v", "golden", remap=True)
    f.close()
    yield p
    shutil.rmtree(d, ignore_errors=True)


def data_runs(uri):
    extents = json.loads(run("nbdinfo", "--map", "--json", uri).stdout)
    return [(e["offset"], e["length"]) for e in extents if e["type"] & 1 == 0]


def test_clients_against_coppice_serve(pool_dir):
    s = Served(pool_dir)
    try:
        base = f"nbd://127.0.0.1:{s.nbd_port}/"
        lun, clone, snap = base + "/vol/v/lun1", base + "/vol/c/lun1", base + "/vol/v/.snapshot/golden/lun1"
        info = json.loads(run("qemu-img", "info", "--output=json", clone).stdout)
        assert info["virtual-size"] == 8 * MiB
        for uri in (lun, clone, snap):
            assert data_runs(uri) == [(0, 2 * MiB)]
        run("qemu-io", "-f", "raw", "-c", "write -z 0 1M", "-c", "write -P 7 4M 4k", clone)
        run("qemu-io", "-f", "raw", "-c", "read -P 0 0 1M", "-c", "read -P 0x5a 1M 1M", clone)
        assert data_runs(clone) == [(MiB, MiB), (4 * MiB, 4096)]
        assert data_runs(lun) == [(0, 2 * MiB)]
        run("qemu-img", "compare", "-f", "raw", "-F", "raw", lun, snap)

        # the README's first try: refused, told "not found", and the log says why
        p = run("qemu-img", "info", base + "/vol/v/lun0", check=False)
        assert p.returncode != 0 and "not found" in p.stderr

        # who may open what, who is connected
        h = nbd.NBD()
        h.connect_uri(lun)
        try:
            out = run_cli(pool_dir, "nbd", "who", "/vol/v/lun1")
            assert out.returncode == 0, out.stderr
            assert "igroup local" in out.stdout and "127.0.0.1  matched by address" in out.stdout
            assert "Connected: 1" in out.stdout and "/vol/v/lun1" in out.stdout.split("Connected")[1]
            out = run_cli(pool_dir, "nbd", "who", "/vol/v/lun0")
            assert "matched by TLS certificate name" in out.stdout and "Connected: 0" in out.stdout
        finally:
            h.shutdown()
    finally:
        assert s.stop() == 0
    assert "refused export '/vol/v/lun0'" in s.stderr
    line = next(x for x in s.stderr.splitlines() if "refused export '/vol/v/lun0'" in x)
    assert "127.0.0.1" in line and "igroup esx1" in line and "IP address" in line

    out = run_cli(pool_dir, "nbd", "who", "/vol/v/.snapshot/golden/lun1")
    assert out.returncode == 0, out.stderr
    assert "authorized by /vol/v/lun1" in out.stdout and "No daemon serves this pool" in out.stdout
