"""Block status and write-zeroes where they matter: on the product's clone
and snapshot LUNs, seen through nbdinfo --map and qemu-io.

A clone starts with its parent snapshot's blocks: they must be reported as
data, zeroing them must read back zeros in the clone and leave the parent's
snapshot untouched, and a snapshot LUN must keep the map it had when it was
taken while its LUN changes."""

import json

import pytest

from tests.nbd.conftest import MiB, assert_map, run

# The client suites run on both backends: every LUN here is served once from the
# embedded engine and once from Ceph RBD.
pytestmark = pytest.mark.backends("native", "rbd")


def data_runs(uri):
    extents = json.loads(run("nbdinfo", "--map", "--json", uri).stdout)
    assert sum(e["length"] for e in extents) > 0
    return [(e["offset"], e["length"]) for e in extents if e["type"] & 1 == 0]


def qio(uri, *cmds, read_only=False):
    args = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for c in cmds:
        args += ["-c", c]
    p = run(*args, uri)
    assert "error" not in p.stdout.lower() and "fail" not in p.stdout.lower(), p.stdout
    return p.stdout


def test_clone_inherits_data_zeroes_its_own_copy_only(product, backend):
    s = product("lun", size=8 * MiB)
    qio(s.uri("/vol/v/disk"), "write -P 0x61 0 2M")
    s.filer.snap_create("v", "golden")
    s.filer.clone_create("c", "v", "golden", remap=True)
    clone, golden = s.uri("/vol/c/disk"), s.uri("/vol/v/.snapshot/golden/disk")
    assert_map(data_runs(clone), [(0, 2 * MiB)], backend, 8 * MiB)
    # write-zeroes (may punch) and write-zeroes with NO_HOLE, discard: all read 0
    qio(clone, "write -z -u 0 512k", "write -z 512k 512k", "discard 1M 512k")
    qio(clone, "read -P 0 0 1536k", "read -P 0x61 1536k 512k")
    assert_map(data_runs(clone), [(1536 * 1024, 512 * 1024)], backend, 8 * MiB, touched=[(0, 2 * MiB)])
    # the parent and its snapshot still hold every byte
    qio(golden, "read -P 0x61 0 2M", read_only=True)
    qio(s.uri("/vol/v/disk"), "read -P 0x61 0 2M")
    assert_map(data_runs(golden), [(0, 2 * MiB)], backend, 8 * MiB)


def test_snapshot_lun_keeps_its_map_and_bytes_while_the_lun_changes(product, backend):
    s = product("lun", size=8 * MiB)
    disk = s.uri("/vol/v/disk")
    qio(disk, "write -P 0x33 1M 1M")
    s.filer.snap_create("v", "before")
    snap = s.uri("/vol/v/.snapshot/before/disk")
    qio(disk, "write -P 0x44 4M 1M", "write -z 1M 1M")
    assert_map(data_runs(disk), [(4 * MiB, MiB)], backend, 8 * MiB, touched=[(MiB, MiB), (4 * MiB, MiB)])
    assert_map(data_runs(snap), [(MiB, MiB)], backend, 8 * MiB)  # nothing of what came after
    qio(snap, "read -P 0x33 1M 1M", "read -P 0 4M 1M", read_only=True)
    p = run("qemu-io", "-f", "raw", "-c", "write -z 1M 1M", snap, check=False)
    assert p.returncode != 0 or "read-only" in (p.stdout + p.stderr).lower()
    qio(snap, "read -P 0x33 1M 1M", read_only=True)
