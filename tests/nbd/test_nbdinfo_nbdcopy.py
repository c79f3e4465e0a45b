"""nbdinfo --list / --map and nbdcopy against the product's LUNs (active and
clone); the listing's descriptions also on the protocol test device."""

import json
import os

import pytest

from tests.nbd.conftest import MiB, assert_map, run

# The client suites run on both backends: every LUN here is served once from the
# embedded engine and once from Ceph RBD.
pytestmark = pytest.mark.backends("native", "rbd")


def test_list_shows_every_export_with_description(serve):
    # NBD_OPT_LIST and NBD_OPT_INFO: names, descriptions, sizes, flags.
    s = serve(size=8 * MiB)
    info = json.loads(run("nbdinfo", "--list", "--json", s.uri()).stdout)
    exports = {e["export-name"]: e for e in info["exports"]}
    assert set(exports) == {"disk", "ro", "other"}
    assert exports["disk"]["description"] == "the test disk"
    assert exports["disk"]["export-size"] == 8 * MiB
    assert exports["ro"]["is_read_only"] is True
    assert exports["disk"]["is_read_only"] is False
    assert exports["disk"]["can_multi_conn"] is True
    assert exports["disk"]["block_size_maximum"] == 32 * MiB
    assert exports["disk"]["block_size_preferred"] == 4096


def test_map_reports_holes_and_data(target, backend):
    # base:allocation: written ranges are data, the rest hole+zero.
    s = target(size=8 * MiB)
    run("qemu-io", "-f", "raw", "-c", "write -P 1 1M 1M", s.uri())
    extents = json.loads(run("nbdinfo", "--map", "--json", s.uri()).stdout)
    data = [(e["offset"], e["length"]) for e in extents if e["type"] == 0]
    assert_map(data, [(MiB, MiB)], backend, 8 * MiB)
    assert sum(e["length"] for e in extents) == 8 * MiB
    holes = [e for e in extents if e["type"] == 3]
    assert holes and all(e["description"] == "hole,zero" for e in holes)


def test_nbdcopy_roundtrip(target, workdir):
    # nbdcopy into an export and out of it (multi-connection) keeps every byte.
    s = target(size=8 * MiB)
    src = os.path.join(workdir, "src.raw")
    with open(src, "wb") as f:
        f.write(os.urandom(3 * MiB))
        f.truncate(8 * MiB)
    run("nbdcopy", src, s.uri())
    out = os.path.join(workdir, "out.raw")
    run("nbdcopy", "--connections=4", s.uri(), out)
    with open(src, "rb") as a, open(out, "rb") as b:
        assert a.read() == b.read()


def test_nbdcopy_export_to_export(target):
    # Copy between two exports of the same server.
    s = target(size=4 * MiB)
    run("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 2M", s.uri("disk"))
    run("nbdcopy", s.uri("disk"), s.uri("other"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", s.uri("disk"), s.uri("other"))


def test_list_shows_the_luns_this_host_may_open(product, backend):
    # Over TCP from 127.0.0.1 (in igroup "local"): both LUNs and the snapshot
    # LUN of each, with serial / snapshot descriptions and LUN sizes.
    s = product(size=8 * MiB)
    s.filer.lun_create("/vol/v/unmapped", 8 * MiB)
    info = json.loads(run("nbdinfo", "--list", "--json", s.uri()).stdout)
    exports = {e["export-name"]: e for e in info["exports"]}
    assert set(exports) == {
        "/vol/v/disk",
        "/vol/v/other",
        "/vol/v/.snapshot/ro/disk",
        "/vol/v/.snapshot/ro/other",
    }
    serial = s.filer.lun_info("/vol/v/disk")["serial"]
    assert exports["/vol/v/disk"]["description"] == f"LUN serial {serial}"
    assert exports["/vol/v/disk"]["export-size"] == 8 * MiB
    assert exports["/vol/v/disk"]["is_read_only"] is False
    assert exports["/vol/v/.snapshot/ro/disk"]["is_read_only"] is True
    # multi-conn: on the engine a flush on any connection covers every
    # connection's writes; an RBD LUN's connections hold image handles of their own
    assert exports["/vol/v/disk"]["can_multi_conn"] is (backend == "native")
