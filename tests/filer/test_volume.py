import pytest

from coppice.filer.errors import (
    BadOption,
    SnapshotHasClones,
    SnapshotsDisabled,
    VolumeBusy,
    VolumeExists,
    VolumeFull,
    VolumeNotFound,
    VolumeTooSmall,
)

pytestmark = pytest.mark.backends("native", "rbd")


def test_create_and_show(filer):
    # vol create NAME SIZE makes a thin volume with a 5% snapshot reserve
    v = filer.vol_create("fvol_master", "20g")
    assert (v["size"], v["guarantee"], v["snap_reserve"], v["snap_sched"]) == (20 << 30, "none", 5, "0 0 0")
    assert [x["name"] for x in filer.vol_show()] == ["fvol_master"]


def test_duplicate_bad_and_small_are_refused(filer, unchanged):
    filer.vol_create("v", "1g")
    with unchanged(VolumeExists, "already exists"):
        filer.vol_create("v", "1g")
    with unchanged(Exception, "starts with"):
        filer.vol_create("9v", "1g")
    with unchanged(VolumeTooSmall, "smallest volume"):
        filer.vol_create("w", "4k")
    with unchanged(BadOption, "guarantee"):
        filer.vol_create("w", "1g", guarantee="file")
    with unchanged(VolumeNotFound):
        filer.vol_info("nope")


def test_resize_grows_and_shrinks_only_when_data_fits(filer, unchanged):
    filer.vol_create("v", "8m")
    filer.lun_create("/vol/v/l", "16m")
    dev = filer.open_lun("/vol/v/l")
    dev.pwrite(0, b"x" * (6 << 20))
    assert filer.vol_size("v", "+8m")["size"] == 16 << 20
    with unchanged(VolumeTooSmall, "holds 6m"):
        filer.vol_size("v", "4m")
    assert filer.vol_size("v", "7m")["size"] == 7 << 20


def test_destroy_refused_while_clone_depends(runbook, unchanged):
    f = runbook
    f.clone_create("c1", "fvol_master", "clone_base_snapshot")
    with unchanged(SnapshotHasClones, "snapshot is busy: clone c1 depends on it"):
        f.vol_destroy("fvol_master", force=True)
    with unchanged(VolumeBusy, "mapped"):
        f.vol_destroy("c1")
    # -f --children destroys the clone tree, deepest first
    assert f.vol_destroy("fvol_master", force=True, children=True) == ["c1", "fvol_master"]
    assert f.vol_show() == [] and f.fsck()["clean"]


def test_nosnap_refuses_snapshots(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.vol_set_option("v", "nosnap", "on")
    with unchanged(SnapshotsDisabled, "nosnap on"):
        filer.snap_create("v", "s")
    filer.vol_set_option("v", "nosnap", "off")
    filer.snap_create("v", "s")
    with unchanged(BadOption, "on or off"):
        filer.vol_set_option("v", "nosnap", "maybe")
    with unchanged(BadOption, "unknown volume option"):
        filer.vol_set_option("v", "fractional", "1")


@pytest.mark.backends("native")  # engine-only semantics; tests/rbd asserts the rbd side
def test_thick_volume_holds_its_luns(filer, unchanged):
    # guarantee volume: LUN sizes must fit outside the snapshot reserve
    filer.vol_create("v", "100m", guarantee="volume", snap_reserve=0)
    filer.lun_create("/vol/v/a", "60m")
    with unchanged(VolumeFull, "LUN /vol/v/b needs 60m"):
        filer.lun_create("/vol/v/b", "60m")
    with unchanged(VolumeFull):
        filer.lun_resize("/vol/v/a", "101m")
    # thin volume: overcommit allowed
    filer.vol_set_option("v", "guarantee", "none")
    filer.lun_create("/vol/v/b", "60m")
    with unchanged(VolumeTooSmall, "thick"):
        filer.vol_set_option("v", "guarantee", "volume")


def test_rename(filer, unchanged):
    filer.vol_create("a", "1g")
    filer.vol_create("b", "1g")
    with unchanged(VolumeExists):
        filer.vol_rename("a", "b")
    filer.vol_rename("a", "c")
    assert [v["name"] for v in filer.vol_show()] == ["b", "c"]
