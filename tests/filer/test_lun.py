import pytest

from coppice.errors import ReadOnly
from coppice.filer.errors import (
    BadOption,
    LunBusy,
    LunExists,
    LunNotFound,
    LunOffline,
    LunTooSmall,
    VolumeFull,
    VolumeNotFound,
)

pytestmark = pytest.mark.backends("native", "rbd")


def test_create_show_attributes(filer):
    filer.vol_create("v", "1g")
    lun = filer.lun_create("/vol/v/lun0", "10m", ostype="vmware", comment="ds1")
    assert (lun["size"], lun["ostype"], lun["online"], lun["maps"], lun["comment"]) == (
        10 << 20,
        "vmware",
        True,
        [],
        "ds1",
    )
    assert len(lun["serial"]) == 12
    assert [x["path"] for x in filer.lun_show()] == ["/vol/v/lun0"]


def test_bad_creates_are_refused(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/lun0", "1m")
    with unchanged(LunExists):
        filer.lun_create("/vol/v/lun0", "1m")
    with unchanged(VolumeNotFound):
        filer.lun_create("/vol/nope/lun0", "1m")
    with unchanged(BadOption, "multiple of 512"):
        filer.lun_create("/vol/v/lun1", "1000")
    with unchanged(BadOption, "ostype"):
        filer.lun_create("/vol/v/lun1", "1m", ostype="beos")
    with unchanged(Exception, "does not start with /vol/"):
        filer.lun_create("v/lun1", "1m")
    with unchanged(LunNotFound):
        filer.lun_info("/vol/v/nope")


@pytest.mark.backends("native")  # engine-only semantics; tests/rbd asserts the rbd side
def test_thin_volume_write_past_size_is_volume_full_and_data_intact(filer):
    # a 4 MiB thin LUN in a 1 MiB volume (no reserve): writes stop at 1 MiB
    filer.vol_create("v", "1m", snap_reserve=0)
    filer.lun_create("/vol/v/l", "4m")
    dev = filer.open_lun("/vol/v/l")
    dev.pwrite(0, b"a" * (1 << 20))
    dev.pwrite(4096, b"b" * 4096)  # an overwrite allocates nothing new
    with pytest.raises(VolumeFull, match="Volume v is full"):
        dev.pwrite(1 << 20, b"c" * 4096)
    assert dev.pread(1 << 20, 4096) == bytes(4096)
    assert dev.pread(0, 4096) == b"a" * 4096 and dev.pread(4096, 4096) == b"b" * 4096
    dev.trim(0, 1 << 20)
    dev.pwrite(1 << 20, b"c" * 4096)  # trimming made room
    filer.vol_size("v", "2m")
    dev.pwrite(0, b"d" * (1 << 20))


def test_shrink_below_data_needs_force(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l", "8m")
    filer.open_lun("/vol/v/l").pwrite(5 << 20, b"x" * 4096)
    with unchanged(LunTooSmall, "holds data up to"):
        filer.lun_resize("/vol/v/l", "4m")
    assert filer.lun_resize("/vol/v/l", "6m")["size"] == 6 << 20
    assert filer.lun_resize("/vol/v/l", "+2m")["size"] == 8 << 20
    assert filer.lun_resize("/vol/v/l", "4m", force=True)["size"] == 4 << 20


def test_destroy_mapped_needs_force(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l", "1m")
    filer.igroup_create("g", ["h1"])
    filer.lun_map("/vol/v/l", "g")
    with unchanged(LunBusy, "mapped to igroup g"):
        filer.lun_destroy("/vol/v/l")
    filer.lun_destroy("/vol/v/l", force=True)
    assert filer.lun_show() == []


def test_offline_lun_refuses_io_and_snapshot_lun_is_read_only(filer):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l", "1m")
    dev = filer.open_lun("/vol/v/l")
    filer.lun_offline("/vol/v/l")
    with pytest.raises(LunOffline):
        dev.pread(0, 512)
    with pytest.raises(LunOffline):
        filer.open_lun("/vol/v/l")
    filer.open_lun("/vol/v/l", allow_offline=True).pwrite(0, b"z" * 512)
    filer.lun_online("/vol/v/l")
    assert dev.pread(0, 1) == b"z"
    filer.snap_create("v", "s")
    sdev = filer.open_lun("/vol/v/.snapshot/s/l")
    assert sdev.read_only and sdev.pread(0, 1) == b"z"
    with pytest.raises(ReadOnly):
        sdev.pwrite(0, b"q")


def test_lun_clone_and_move(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/lun0", "1m")
    filer.open_lun("/vol/v/lun0").pwrite(0, b"base")
    filer.snap_create("v", "s")
    c = filer.lun_clone_create("/vol/v/lun1", "/vol/v/lun0", "s")
    assert c["serial"] != filer.lun_info("/vol/v/lun0")["serial"] and c["maps"] == [] and c["online"]
    assert filer.open_lun("/vol/v/lun1").pread(0, 4) == b"base"
    with unchanged(LunExists):
        filer.lun_clone_create("/vol/v/lun1", "/vol/v/lun0", "s")
    with unchanged(BadOption, "cannot cross volumes"):
        filer.lun_rename("/vol/v/lun1", "/vol/w/lun1")
    filer.lun_rename("/vol/v/lun1", "/vol/v/lun2")
    assert [x["name"] for x in filer.lun_show()] == ["lun0", "lun2"]
