import pytest

from coppice.filer.errors import BadInitiator, IgroupBusy, IgroupExists, InitiatorExists, InitiatorNotFound
from coppice.filer.igroup import matches
from coppice.nbd.blockdev import Initiator


def test_create_add_remove_show(filer, unchanged):
    g = filer.igroup_create("esx1", ["iqn.2026-01.org.example:host1"], ostype="vmware")
    assert (g["initiators"], g["protocol"], g["ostype"]) == (
        ["iqn.2026-01.org.example:host1"],
        "iscsi",
        "vmware",
    )
    filer.igroup_add("esx1", "192.0.2.0/24")
    with unchanged(InitiatorExists):
        filer.igroup_add("esx1", "IQN.2026-01.org.example:host1")
    with unchanged(IgroupExists):
        filer.igroup_create("esx1")
    with unchanged(BadInitiator):
        filer.igroup_add("esx1", "two words")
    with unchanged(BadInitiator, "not a valid one"):
        filer.igroup_add("esx1", "300.1.1.1/8")
    with unchanged(InitiatorNotFound):
        filer.igroup_remove("esx1", "host9")
    filer.igroup_remove("esx1", "192.0.2.0/24")
    assert filer.igroup_show("esx1")[0]["initiators"] == ["iqn.2026-01.org.example:host1"]


def test_matching_by_name_or_network():
    rec = {"initiators": ["host1", "10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}
    assert matches(rec, Initiator("HOST1", None, tls=True))
    assert matches(rec, Initiator(None, "10.1.2.3"))
    assert matches(rec, Initiator(None, "::ffff:10.1.2.3"))
    assert matches(rec, Initiator(None, "2001:db8::1"))
    assert matches(rec, Initiator(None, "192.0.2.7"))
    assert not matches(rec, Initiator(None, "192.0.2.8"))
    assert not matches(rec, Initiator("host2", "11.0.0.1"))


def test_destroy_busy_igroup_needs_force(filer, unchanged):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l", "1m")
    filer.igroup_create("g", ["h"])
    filer.lun_map("/vol/v/l", "g")
    with unchanged(IgroupBusy, "/vol/v/l"):
        filer.igroup_destroy("g")
    filer.igroup_destroy("g", force=True)
    assert filer.igroup_show() == [] and filer.lun_info("/vol/v/l")["maps"] == []


def test_rename_carries_maps(filer):
    filer.vol_create("v", "1g")
    filer.lun_create("/vol/v/l", "1m")
    filer.igroup_create("g", ["h"])
    filer.lun_map("/vol/v/l", "g", 4)
    filer.igroup_rename("g", "g2")
    assert filer.lun_info("/vol/v/l")["maps"] == [{"igroup": "g2", "lun_id": 4}]
    assert filer.igroup_show("g2")[0]["luns"] == [{"path": "/vol/v/l", "lun_id": 4}]
