"""Every refused command prints one clear line, exits non-zero and changes
nothing (the pool dump and every --json view are identical before and after)."""

import os
import shutil
import tempfile

import pytest

from tests.cli.conftest import MODES, Cli


@pytest.fixture(scope="module")
def template():
    # built once; each test gets a copy (pool creation is the slow part)
    base = tempfile.mkdtemp(prefix="coppice-cli-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    cli = Cli(os.path.join(base, "pool"))
    cli("pool", "create")
    cli("vol", "create", "v", "100m")
    cli("lun", "create", "-s", "8m", "/vol/v/lun0")
    cli("igroup", "create", "g", "h1")
    cli("lun", "map", "/vol/v/lun0", "g", "2")
    cli("snap", "create", "v", "s")
    cli("vol", "clone", "create", "c", "-b", "v", "s")
    yield cli.pool
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def served_copy(template):
    # One daemon for the module: every refused command must leave its pool as it
    # was (checked per test), so they can share it; a daemon start per test would
    # cost a second each.
    base = tempfile.mkdtemp(prefix="coppice-cli-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    shutil.copytree(template, os.path.join(base, "pool"))
    c = Cli(os.path.join(base, "pool")).serve()
    yield c
    c.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=MODES)
def setup(request, template, pool_dir, monkeypatch):
    monkeypatch.delenv("COPPICE_URL", raising=False)
    if request.param == "daemon":
        return request.getfixturevalue("served_copy")
    shutil.copytree(template, pool_dir)
    return Cli(pool_dir)


CASES = [
    (("vol", "create", "1bad", "1g"), 4, "Invalid volume name '1bad': it starts with '1'"),
    (("vol", "create", "bad-name", "1g"), 4, "'-' is not allowed"),
    (("vol", "create", "x" * 256, "1g"), 4, "256 characters"),
    (("vol", "create", "w", "12q"), 4, "Invalid size '12q'"),
    (("vol", "create", "w", "0"), 4, "greater than zero"),
    (("vol", "create", "v", "1g"), 3, "Volume v already exists"),
    (("vol", "create", "w", "1g", "-s", "file"), 4, "guarantee 'file' is invalid"),
    (("vol", "destroy", "nope"), 2, "Volume nope not found"),
    (("vol", "destroy", "v"), 5, "snapshot is busy: clone c depends on it"),
    (("vol", "destroy", "c"), 5, "LUN /vol/c/lun0 is mapped"),
    (("vol", "size", "v", "1k"), 4, "the smallest volume is 1m"),
    (("vol", "options", "v", "nosnap", "perhaps"), 4, "takes on or off"),
    (("vol", "options", "v", "bogus", "1"), 4, "unknown volume option"),
    (("snap", "create", "v", "s"), 3, "Snapshot s already exists on volume v"),
    (("snap", "create", "v", "bad name"), 4, "Invalid snapshot name"),
    (("snap", "delete", "v", "s"), 5, "snapshot is busy: clone c depends on it"),
    (("snap", "delete", "v", "nope"), 2, "Snapshot nope not found on volume v"),
    (("snap", "rename", "v", "s", "t"), 5, "snapshot is busy"),
    (("snap", "restore", "v", "-s", "nope"), 2, "Snapshot nope not found"),
    (("snap", "reserve", "v", "150"), 4, "percentage from 0 to 100"),
    (("snap", "sched", "v", "0", "2", "6@25"), 4, "hour '25' is not 0-23"),
    (("vol", "clone", "create", "c", "-b", "v", "s"), 3, "Volume c already exists"),
    (("vol", "clone", "create", "d", "-b", "v", "nope"), 2, "Snapshot nope not found"),
    (("vol", "clone", "create", "d", "-b", "nope", "s"), 2, "Volume nope not found"),
    (("vol", "clone", "split", "start", "v"), 4, "Volume v is not a clone"),
    (("vol", "clone", "split", "stop", "c"), 2, "No clone split is running"),
    (("lun", "create", "-s", "1m", "/vol/v/lun0"), 3, "LUN /vol/v/lun0 already exists"),
    (("lun", "create", "-s", "1m", "vol/v/lun1"), 4, "does not start with /vol/"),
    (("lun", "create", "-s", "1m", "/vol/nope/lun1"), 2, "Volume nope not found"),
    (("lun", "create", "-s", "1000", "/vol/v/lun1"), 4, "multiple of 512"),
    (("lun", "create", "-s", "1m", "-t", "beos", "/vol/v/lun1"), 4, "ostype 'beos' is invalid"),
    (("lun", "create", "-s", "1m", "/vol/v/.snapshot/s/lun1"), 4, "read-only"),
    (("lun", "destroy", "/vol/v/lun0"), 5, "mapped to igroup g"),
    (("lun", "online", "/vol/c/lun0"), 5, "LUN ID 2 in igroup g is held by /vol/v/lun0"),
    (("lun", "map", "/vol/c/lun0", "g", "2"), 3, "already mapped to igroup g as LUN ID 2"),
    (("lun", "map", "/vol/v/lun0", "nope"), 2, "Initiator group nope not found"),
    (("lun", "map", "/vol/v/lun0", "g", "4096"), 4, "Invalid LUN ID 4096"),
    (("lun", "unmap", "/vol/v/lun0", "h"), 2, "is not mapped to igroup h"),
    (("lun", "resize", "/vol/v/nope", "1m"), 2, "LUN /vol/v/nope not found"),
    (("igroup", "create", "g"), 3, "Initiator group g already exists"),
    (("igroup", "create", "9g"), 4, "Invalid igroup name"),
    (("igroup", "create", "k", "300.0.0.1/8"), 4, "Invalid initiator '300.0.0.1/8'"),
    (("igroup", "add", "g", "h1"), 3, "Initiator h1 is already in igroup g"),
    (("igroup", "remove", "g", "h9"), 2, "Initiator h9 is not in igroup g"),
    (("igroup", "destroy", "g"), 5, "LUNs are mapped to it"),
    (("igroup", "destroy", "nope"), 2, "Initiator group nope not found"),
    (("df", "nope"), 2, "Volume nope not found"),
]


@pytest.mark.parametrize("args,code,message", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_refused_command_changes_nothing(setup, args, code, message):
    before = setup.dump()
    r = setup(*args, code=code)
    assert r.stderr.startswith("Error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert setup.dump() == before


def test_nosnap_volume_refuses_snapshots(setup):
    setup("vol", "options", "v", "nosnap", "on")
    before = setup.dump()
    r = setup("snap", "create", "v", "t", code=5)
    assert "Volume v has nosnap on" in r.stderr
    assert setup.dump() == before
    setup("vol", "options", "v", "nosnap", "off")  # the daemon's pool is shared by the module


def test_missing_pool_says_how_to_create_one(tmp_path):
    from tests.cli.conftest import MODES, Cli

    r = Cli(str(tmp_path / "none"))("vol", "show", code=2)
    assert "coppice pool create" in r.stderr
