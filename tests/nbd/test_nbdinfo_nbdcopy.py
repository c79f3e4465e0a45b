"""nbdinfo --list / --map and nbdcopy."""

import json
import os

from tests.nbd.conftest import MiB, run


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


def test_map_reports_holes_and_data(serve):
    # base:allocation: written ranges are data, the rest hole+zero.
    s = serve(size=8 * MiB)
    run("qemu-io", "-f", "raw", "-c", "write -P 1 1M 1M", s.uri())
    extents = json.loads(run("nbdinfo", "--map", "--json", s.uri()).stdout)
    data = [(e["offset"], e["length"]) for e in extents if e["type"] == 0]
    assert data == [(MiB, MiB)]
    assert sum(e["length"] for e in extents) == 8 * MiB
    holes = [e for e in extents if e["type"] == 3]
    assert holes and all(e["description"] == "hole,zero" for e in holes)


def test_nbdcopy_roundtrip(serve, workdir):
    # nbdcopy into an export and out of it (multi-connection) keeps every byte.
    s = serve(size=8 * MiB)
    src = os.path.join(workdir, "src.raw")
    with open(src, "wb") as f:
        f.write(os.urandom(3 * MiB))
        f.truncate(8 * MiB)
    run("nbdcopy", src, s.uri())
    out = os.path.join(workdir, "out.raw")
    run("nbdcopy", "--connections=4", s.uri(), out)
    with open(src, "rb") as a, open(out, "rb") as b:
        assert a.read() == b.read()


def test_nbdcopy_export_to_export(serve):
    # Copy between two exports of the same server.
    s = serve(size=4 * MiB)
    run("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 2M", s.uri("disk"))
    run("nbdcopy", s.uri("disk"), s.uri("other"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", s.uri("disk"), s.uri("other"))
