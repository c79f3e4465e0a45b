"""`datastore clone SRC SNAP NEW --register`: the classic runbook on a
datastore with 3 VMs — new names, resignature detected and applied, the
parent's VMs untouched."""

import pytest

from coppice.provision import datastore as ds
from coppice.provision import dsclone, registry
from coppice.provision.provisioning_errors import DatastoreIsCopy, VMExists

from .prov_helpers import TEST_URI, filer, hv, snapshot_state, uniq  # noqa: F401

pytestmark = pytest.mark.backends("native", "rbd")


def _three_vm_datastore(filer, hv, vol):
    ds.create(filer, vol, name="prod")
    names = [uniq(f"app{i}") for i in range(3)]
    for n in names:
        dsclone.create_vm(filer, vol, n, "16m")
        dev = filer.open_lun(f"/vol/{vol}/{ds.vms(filer, vol)[-1]['slot']}.disk0")
        dev.pwrite(0, f"disk of {n}".encode())
        dev.flush()
        dev.close()
    dsclone.register_datastore(filer, vol, TEST_URI, hv=hv)
    filer.snap_create(vol, "clone_base")
    return names


def test_clone_register_three_vms(filer, hv):
    # all 3 VMs registered under new names with new UUIDs/MACs; copy detected and resignatured
    names = _three_vm_datastore(filer, hv, "fvol_master")
    parent = {n: (hv.lookup(n).uuid, hv.xml(n)) for n in names}
    parent_maps = [m for m in filer.lun_maps() if m["path"].startswith("/vol/fvol_master/")]
    out = dsclone.clone_datastore(filer, "fvol_master", "clone_base", "fvol_clone1", uri=TEST_URI, hv=hv)
    a = out["datastore"]
    assert a["copy"] and a["resignatured"] and "fvol_master" in a["reason"]
    assert (
        a["name"].startswith("snap-")
        and a["name"].endswith("-prod")
        and len(a["name"]) == len("snap-12345678-prod")
    )
    d = ds.descriptor(filer, "fvol_clone1")
    assert d["uuid"] != ds.descriptor(filer, "fvol_master")["uuid"] and d["resignatured_from"]
    assert len(out["vms"]) == 3
    new_ids = set()
    for v in out["vms"]:
        assert v["name"] == f"{v['from']}-fvol-clone1"
        info = hv.lookup(v["name"])
        assert info.uuid == v["uuid"] and info.uuid not in {u for u, _ in parent.values()}
        xml = hv.xml(v["name"])
        assert "/vol/fvol_clone1/" in xml and "/vol/fvol_master/" not in xml and v["mac"] in xml
        new_ids.update(v["luns"].values())
        rec = registry.get(filer, registry.VM, v["name"])
        assert rec["volume"] == "fvol_clone1"
        # the clone's disk holds its parent's data: a whole-datastore copy
        dev = filer.open_lun(next(iter(v["luns"])))
        assert bytes(dev.pread(0, 7)) == b"disk of"
        dev.close()
    assert all(m["online"] for m in filer.lun_maps() if m["path"].startswith("/vol/fvol_clone1/"))
    assert not new_ids & {m["lun_id"] for m in parent_maps}
    # the parent's VMs, maps and folders are untouched
    for n, (u, xml) in parent.items():
        assert hv.lookup(n).uuid == u and hv.xml(n) == xml
    assert [m for m in filer.lun_maps() if m["path"].startswith("/vol/fvol_master/")] == parent_maps
    assert sorted(v["name"] for v in ds.vms(filer, "fvol_master")) == sorted(names)


def test_policy_ask_refuses_without_resignature(filer, hv):
    # resignature=ask: a copy is refused (nothing left behind) until resignature is asked for
    _three_vm_datastore(filer, hv, "dsa")
    dsclone.set_policy(filer, TEST_URI, "ask")
    before = snapshot_state(filer, hv)
    with pytest.raises(DatastoreIsCopy):
        dsclone.clone_datastore(filer, "dsa", "clone_base", "dsa_c", uri=TEST_URI, hv=hv)
    assert snapshot_state(filer, hv) == before
    out = dsclone.clone_datastore(filer, "dsa", "clone_base", "dsa_c", uri=TEST_URI, hv=hv, resignature=True)
    assert out["datastore"]["resignatured"] and len(out["vms"]) == 3


def test_copy_detected_by_serials_when_parent_detached(filer, hv):
    # a copy whose original is not attached is still found: its LUN serials are not the signed ones
    _three_vm_datastore(filer, hv, "dsb")
    out = dsclone.clone_datastore(filer, "dsb", "clone_base", "dsb_c", register=False, hv=hv)
    ds.detach(filer, "dsb")
    ds.forget(filer, "dsb_c")
    filer.snap_create("dsb", "again")
    filer.clone_create("dsb_d", "dsb", "again")
    reason = ds.copy_reason(filer, "dsb_d")
    assert reason and "serial" in reason
    assert out["datastore"]["copy"]


def test_name_collision_refused_up_front(filer, hv):
    # a new name already in libvirt: refused before the clone is made
    names = _three_vm_datastore(filer, hv, "dsc")
    before = snapshot_state(filer, hv)
    with pytest.raises(VMExists):
        dsclone.clone_datastore(filer, "dsc", "clone_base", "dsc_c", uri=TEST_URI, hv=hv, name_pattern="{vm}")
    assert snapshot_state(filer, hv) == before
    assert names
