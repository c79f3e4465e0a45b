import pytest

from coppice.filer.errors import LunIdCollision, NotAClone, SplitNotRunning

pytestmark = pytest.mark.backends("native", "rbd")


def test_clone_luns_come_up_offline_naming_the_collision(runbook):
    f = runbook
    parent = f.lun_info("/vol/fvol_master/lun0")
    r = f.clone_create("fvol_clone1", "fvol_master", "clone_base_snapshot")
    assert r["messages"] == [
        "LUN /vol/fvol_clone1/lun0 is offline: LUN ID 0 in igroup esx1 is held by /vol/fvol_master/lun0"
    ]
    lun = f.lun_info("/vol/fvol_clone1/lun0")
    assert not lun["online"] and lun["maps"] == [{"igroup": "esx1", "lun_id": 0}]
    assert lun["serial"] != parent["serial"]  # clone LUNs get new serial numbers
    with pytest.raises(LunIdCollision, match="LUN ID 0 in igroup esx1 is held by /vol/fvol_master/lun0"):
        f.lun_online("/vol/fvol_clone1/lun0")
    # the runbook: unmap, map with a new ID, online
    f.lun_unmap("/vol/fvol_clone1/lun0", "esx1")
    assert f.lun_map("/vol/fvol_clone1/lun0", "esx1", 3) == 3
    f.lun_online("/vol/fvol_clone1/lun0")
    assert f.open_lun("/vol/fvol_clone1/lun0").pread(0, 6) == b"golden"


def test_remap_maps_online_with_lowest_free_ids(runbook):
    f = runbook
    f.lun_create("/vol/fvol_master/other", "1m")
    f.lun_map("/vol/fvol_master/other", "esx1")  # takes ID 1
    r = f.clone_create("c1", "fvol_master", "clone_base_snapshot", remap=True)
    assert r["messages"] == []
    assert r["luns"][0]["online"] and r["luns"][0]["maps"] == [{"igroup": "esx1", "lun_id": 2}]
    r = f.clone_create("c2", "fvol_master", "clone_base_snapshot", remap=True)
    assert r["luns"][0]["maps"] == [{"igroup": "esx1", "lun_id": 3}]


def test_clone_inherits_options_but_no_schedule(runbook):
    f = runbook
    f.snap_sched("fvol_master", "0 2 6@8,12,16,20")
    f.snap_reserve("fvol_master", 10)
    f.clone_create("c1", "fvol_master", "clone_base_snapshot")
    v = f.vol_info("c1")
    assert (
        v["snap_sched"] == "0 0 0"
        and v["snap_reserve"] == 10
        and v["parent"] == "fvol_master@clone_base_snapshot"
    )
    f.clone_create("c2", "fvol_master", "clone_base_snapshot", schedule="0 1 0")
    assert f.vol_info("c2")["snap_sched"] == "0 1 0"


def test_split_removes_the_dependency(runbook):
    f = runbook
    f.clone_create("c1", "fvol_master", "clone_base_snapshot", remap=True)
    # the engine counts shared 4 KiB blocks, RBD's allocation map the bytes written
    assert f.clone_split_estimate("c1")["bytes"] == (2 * 4096 if f.backend.kind == "native" else 6000)
    f.clone_split("c1")
    st = f.clone_split_status("c1")
    assert (st["state"], st["clone"]) == ("done", False)
    f.snap_delete("fvol_master", "clone_base_snapshot")
    assert f.open_lun("/vol/c1/lun0").pread(0, 6) == b"golden"
    assert f.fsck()["clean"]
    with pytest.raises(NotAClone):
        f.clone_split_estimate("c1")


def test_split_can_stop_and_resume(filer):
    f = filer
    f.vol_create("v", "1g")
    f.lun_create("/vol/v/l", "64m")
    f.open_lun("/vol/v/l").pwrite(0, b"y" * (8 << 20))  # spans several 2 MiB leaves
    f.snap_create("v", "s")
    f.clone_create("c", "v", "s")
    steps = f.clone_split_steps("c")
    next(steps)
    next(steps)
    f.clone_split_stop("c")
    with pytest.raises(StopIteration):
        next(steps)
    st = f.clone_split_status("c")
    assert st["state"] == "stopped" and st["clone"]
    with pytest.raises(SplitNotRunning):
        f.clone_split_stop("c")
    f.clone_split("c")
    assert not f.clone_split_status("c")["clone"]
    assert f.open_lun("/vol/c/l").pread((8 << 20) - 1, 1) == b"y"
    assert f.fsck()["clean"]


def test_clone_show(runbook):
    runbook.clone_create("c1", "fvol_master", "clone_base_snapshot")
    rows = runbook.clone_show()
    assert [(r["volume"], r["parent_volume"], r["parent_snapshot"]) for r in rows] == [
        ("c1", "fvol_master", "clone_base_snapshot")
    ]
