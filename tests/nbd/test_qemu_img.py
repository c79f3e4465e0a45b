"""qemu-img against the product: filer LUNs (active and clone) served by the
product's NBD server: info, convert both ways, compare."""

import json
import os

import pytest

from tests.nbd.conftest import MiB, run

# The client suites run on both backends: every LUN here is served once from the
# embedded engine and once from Ceph RBD.
pytestmark = pytest.mark.backends("native", "rbd")


def test_info_reports_size_and_raw_format(target):
    # qemu-img sees the export's exact size through NBD_OPT_GO.
    s = target(size=16 * MiB)
    info = json.loads(run("qemu-img", "info", "--output=json", s.uri()).stdout)
    assert info["virtual-size"] == 16 * MiB
    assert info["format"] == "raw"


def test_convert_into_export_and_back_is_identical(target, workdir):
    # An image written into an export reads back byte for byte, holes included.
    s = target(size=8 * MiB)
    src = os.path.join(workdir, "src.raw")
    with open(src, "wb") as f:
        f.truncate(8 * MiB)
        f.seek(MiB)
        f.write(os.urandom(MiB))
        f.seek(5 * MiB)
        f.write(b"\xaa" * 4096)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, s.uri())
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", src, s.uri())
    back = os.path.join(workdir, "back.qcow2")
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", s.uri(), back)
    run("qemu-img", "compare", "-F", "qcow2", s.uri(), back)


def test_convert_skips_holes_reported_by_block_status(target, workdir):
    # A mostly-empty export converts to a qcow2 that allocates only the data.
    s = target(size=64 * MiB)
    run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 32M 1M", s.uri())
    out = os.path.join(workdir, "sparse.qcow2")
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", s.uri(), out)
    mapped = json.loads(run("qemu-img", "map", "--output=json", out).stdout)
    data = sum(e["length"] for e in mapped if e["data"])
    assert data == MiB


def test_compare_detects_a_difference(target, workdir):
    # compare fails once one byte differs: reads are not served from a stale copy.
    s = target(size=4 * MiB)
    copy = os.path.join(workdir, "copy.raw")
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", s.uri(), copy)
    run("qemu-io", "-f", "raw", "-c", "write -P 1 100 1", s.uri())
    p = run("qemu-img", "compare", "-f", "raw", "-F", "raw", copy, s.uri(), check=False)
    assert p.returncode == 1
