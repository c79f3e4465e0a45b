"""The filer's cheap lookups and records, which the provisioner uses instead
of reaching into the pool: answers match the full commands, missing things
are False/None or the filer's own NotFound errors."""

import pytest

from coppice.filer.errors import SnapshotNotFound, VolumeNotFound


def test_lookups_agree_with_the_full_commands(filer):
    # vol_exists / vol_names / vol_parent / object_exists / lun_serials against vol_info and lun_show
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l0", "4m")
    filer.file_write("v", "a.json", b"{}")
    filer.snap_create("v", "s")
    filer.clone_create("c", "v", "s")
    assert filer.vol_exists("v") and not filer.vol_exists("nope")
    assert filer.vol_names() == sorted(v["name"] for v in filer.vol_show())
    assert filer.vol_parent("c") == ("v", "s") and filer.vol_parent("v") is None
    assert filer.object_exists("v", "l0") and filer.object_exists("v", "a.json", "s")
    assert not filer.object_exists("v", "b.json") and not filer.object_exists("nope", "l0")
    assert not filer.object_exists("v", "l0", "nosnap")
    assert filer.lun_serials("c") == {"l0": filer.lun_info("/vol/c/l0")["serial"]}
    assert filer.lun_serials("c") != filer.lun_serials("v")  # a clone LUN gets a new serial
    assert filer.path == filer.pool.path
    with pytest.raises(VolumeNotFound):
        filer.vol_parent("nope")
    with pytest.raises(SnapshotNotFound):
        filer.lun_serials("v", "nosnap")


def test_records_join_a_transaction(filer):
    # kv_* round-trip; a rolled-back transaction leaves no record behind
    filer.kv_put("t.scope", "k", {"a": 1})
    assert filer.kv_get("t.scope", "k") == {"a": 1} and filer.kv_get("t.scope", "x", 7) == 7
    with pytest.raises(RuntimeError), filer.transaction():
        filer.kv_put("t.scope", "k2", 2)
        raise RuntimeError("abort")
    assert filer.kv_items("t.scope") == [("k", {"a": 1})]
    filer.kv_delete("t.scope", "k")
    assert filer.kv_items("t.scope") == []
