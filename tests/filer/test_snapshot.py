import pytest

from coppice.filer.errors import SnapshotExists, SnapshotHasClones, SnapshotNotFound

pytestmark = pytest.mark.backends("native", "rbd")


def test_busy_snapshot_cannot_be_deleted_or_renamed(runbook, unchanged):
    f = runbook
    f.clone_create("fvol_clone1", "fvol_master", "clone_base_snapshot")
    with unchanged(SnapshotHasClones, "^snapshot is busy: clone fvol_clone1 depends on it"):
        f.snap_delete("fvol_master", "clone_base_snapshot")
    with unchanged(SnapshotHasClones):
        f.snap_rename("fvol_master", "clone_base_snapshot", "other")
    assert f.snap_list("fvol_master")[0]["clones"] == ["fvol_clone1"]


def test_create_list_rename_delete(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.snap_create("v", "a")
    filer.snap_create("v", "b")
    assert [s["name"] for s in filer.snap_list("v")] == ["b", "a"]  # newest first, as 7-mode
    with unchanged(SnapshotExists):
        filer.snap_create("v", "a")
    with unchanged(SnapshotExists):
        filer.snap_rename("v", "a", "b")
    with unchanged(SnapshotNotFound):
        filer.snap_delete("v", "zz")
    filer.snap_rename("v", "a", "c")
    filer.snap_delete("v", "c")
    assert [s["name"] for s in filer.snap_list("v")] == ["b"]


def test_snap_restore_brings_data_back_and_keeps_maps(runbook):
    f = runbook
    dev = f.open_lun("/vol/fvol_master/lun0")
    dev.pwrite(0, b"changed!")
    f.lun_unmap("/vol/fvol_master/lun0", "esx1")
    f.lun_map("/vol/fvol_master/lun0", "esx1", 7)
    f.lun_create("/vol/fvol_master/lun1", "1m")
    r = f.snap_restore("fvol_master", "clone_base_snapshot")
    assert r["offline"] == []
    assert dev.pread(0, 6) == b"golden"
    lun = f.lun_info("/vol/fvol_master/lun0")
    assert lun["maps"] == [{"igroup": "esx1", "lun_id": 7}] and lun["online"]
    assert [x["name"] for x in f.lun_show()] == ["lun0"]


def test_snap_reserve(filer, unchanged):
    filer.vol_create("v", "100m")
    assert filer.snap_reserve("v") == 5
    assert filer.snap_reserve("v", 20) == 20
    assert filer.df("v")["volumes"][0]["total"] == 80 << 20
    with unchanged(Exception, "percentage"):
        filer.snap_reserve("v", 101)
