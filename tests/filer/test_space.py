import pytest

from coppice.filer.errors import VolumeFull

pytestmark = pytest.mark.backends("native", "rbd")


@pytest.mark.backends("native")  # engine-only semantics; tests/rbd asserts the rbd side
def test_df_splits_active_and_snapshot_space(filer):
    # 8m volume, 25% reserve: 6m for the active file system, 2m for snapshots
    filer.vol_create("v", "8m", snap_reserve=25)
    filer.lun_create("/vol/v/l", "16m")
    dev = filer.open_lun("/vol/v/l")
    dev.pwrite(0, b"a" * (1 << 20))
    filer.snap_create("v", "s1")
    dev.pwrite(0, b"b" * (1 << 20))  # the old 1m is now held only by s1
    r = filer.df("v")["volumes"][0]
    assert (r["total"], r["used"], r["snap_reserve"], r["snap_used"]) == (6 << 20, 1 << 20, 2 << 20, 1 << 20)
    filer.snap_create("v", "s2")
    dev.pwrite(0, b"c" * (1 << 20))
    filer.snap_create("v", "s3")
    dev.pwrite(0, b"d" * (1 << 20))
    r = filer.df("v")["volumes"][0]
    # 3m held by snapshots: 1m spills past the 2m reserve into the active space
    assert (r["snap_used"], r["used"], r["available"]) == (3 << 20, 2 << 20, 4 << 20)
    # copy-on-write spill is charged to the write budget at its next recompute
    # (after any management operation), see space.py
    filer.lun_comment("/vol/v/l", "recount")
    with pytest.raises(VolumeFull):
        dev.pwrite(1 << 20, b"e" * ((4 << 20) + 4096))
    dev.pwrite(1 << 20, b"e" * (4 << 20))  # exactly what is left


def test_df_savings_counts_clone_sharing(runbook):
    runbook.clone_create("c1", "fvol_master", "clone_base_snapshot", remap=True)
    d = runbook.df(savings=True)
    c1 = next(r for r in d["volumes"] if r["volume"] == "c1")
    assert c1["saved"] > 0 and d["pool"]["logical"] > d["pool"]["used"]
