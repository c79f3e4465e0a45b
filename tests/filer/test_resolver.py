import pytest

from coppice.errors import CoppiceError, NotFound
from coppice.nbd.blockdev import BlockDevice, Initiator

HOST1 = Initiator("iqn.2026-01.org.example:host1", "192.0.2.10", tls=True)
OTHER = Initiator("iqn.other", "198.51.100.1", tls=True)
NET = Initiator(None, "10.9.9.9")
ROOT = Initiator(None, None, unix=True)


@pytest.fixture
def res(runbook):
    runbook.igroup_create("lab", ["10.0.0.0/8"])
    return runbook.resolver()


def names(res, who):
    return [n for n, _ in res.list_exports(who)]


def test_initiator_sees_only_luns_mapped_to_its_igroup(runbook, res):
    assert names(res, HOST1) == [
        "/vol/fvol_master/lun0",
        "/vol/fvol_master/.snapshot/clone_base_snapshot/lun0",
    ]
    assert names(res, OTHER) == [] and names(res, NET) == []
    with pytest.raises(NotFound):
        res.open_export("/vol/fvol_master/lun0", OTHER)
    dev = res.open_export("/vol/fvol_master/lun0", HOST1)
    assert isinstance(dev, BlockDevice) and dev.pread(0, 6) == b"golden"
    snap = res.open_export("/vol/fvol_master/.snapshot/clone_base_snapshot/lun0", HOST1)
    assert snap.read_only
    runbook.lun_map("/vol/fvol_master/lun0", "lab")
    assert res.open_export("/vol/fvol_master/lun0", NET).size == 64 << 20


def test_offline_clone_lun_is_invisible_until_online(runbook, res):
    runbook.clone_create("c1", "fvol_master", "clone_base_snapshot")
    assert "/vol/c1/lun0" not in names(res, HOST1) and "/vol/c1/lun0" not in names(res, ROOT)
    with pytest.raises(NotFound):
        res.open_export("/vol/c1/lun0", HOST1)
    runbook.lun_unmap("/vol/c1/lun0", "esx1")
    runbook.lun_map("/vol/c1/lun0", "esx1", 3)
    runbook.lun_online("/vol/c1/lun0")
    assert "/vol/c1/lun0" in names(res, HOST1)


def test_unix_root_sees_everything_online(runbook, res):
    runbook.lun_create("/vol/fvol_master/unmapped", "1m")
    assert "/vol/fvol_master/unmapped" in names(res, ROOT)
    assert res.open_export("/vol/fvol_master/.snapshot/clone_base_snapshot/lun0", ROOT).read_only
    for bad in ("nope", "/vol/x/y", "/vol/fvol_master/.snapshot/zz/lun0"):
        with pytest.raises(NotFound):
            res.open_export(bad, ROOT)


def test_revoke_fires_on_unmap_offline_destroy(runbook, res):
    got = []
    res.on_revoke(got.append)
    runbook.lun_unmap("/vol/fvol_master/lun0", "esx1")
    runbook.lun_map("/vol/fvol_master/lun0", "esx1")
    runbook.lun_offline("/vol/fvol_master/lun0")
    assert got == ["/vol/fvol_master/lun0", "/vol/fvol_master/lun0"]
    got.clear()
    # a refused command revokes nothing
    with pytest.raises(CoppiceError):
        runbook.vol_destroy("fvol_master")
    assert got == []
    runbook.vol_destroy("fvol_master", force=True)
    assert set(got) == {"/vol/fvol_master/lun0", "/vol/fvol_master/.snapshot/clone_base_snapshot/lun0"}
