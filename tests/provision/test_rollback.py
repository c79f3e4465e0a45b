"""A failure at any stage rolls that VM back completely: no orphan clone,
seed, map, lease, index entry or domain; the batch stops or skips."""

import pytest

from coppice.provision import custspec
from coppice.provision.provisioner import STAGES, Provisioner
from coppice.provision.provisioning_errors import InjectedFailure

from .prov_helpers import TEST_URI, filer, hv, image, snapshot_state, tpl, uniq  # noqa: F401

pytestmark = pytest.mark.backends("native", "rbd")


def _fault_at(vm_name, stage):
    def fault(name, st):
        if name == vm_name and st == stage:
            raise InjectedFailure(stage=stage)

    return fault


@pytest.mark.parametrize("stage", STAGES)
def test_failure_at_stage_leaves_nothing(filer, hv, tpl, stage):
    # VM 2 of 3 fails at `stage`; with on_error=stop, VM 1 stays, VM 2 leaves nothing, VM 3 is never begun
    custspec.create(filer, "st", network="static:192.0.2.0/28")
    stem = uniq("rb")
    before = snapshot_state(filer, hv)
    after_first = []  # the pool as VM 1 left it, taken before VM 2 begins

    def progress(r):
        if r.name == stem + "1":
            after_first.append(filer.fsck())

    p = Provisioner(filer, fault=_fault_at(stem + "2", stage))
    s = p.provision(tpl, 3, stem + "{n}", "st", TEST_URI, start=True, on_error="stop", progress=progress)
    assert [r.name for r in s.ok] == [stem + "1"]
    assert s.failed[0].name == stem + "2" and s.failed[0].failed_stage == stage
    assert "Injected failure" in s.failed[0].error and not s.failed[0].rollback_errors
    assert [r.name for r in s.skipped] == [stem + "3"]
    after = snapshot_state(filer, hv)
    assert after["volumes"] == sorted(before["volumes"] + [stem + "1"])
    assert after["domains"] == sorted(before["domains"] + [stem + "1"])
    assert after["vms"] == [stem + "1"]
    assert after["datastores"] == sorted(before["datastores"] + [stem + "1"])
    assert not [m for m in after["maps"] if m[0].startswith(f"/vol/{stem}2/")]
    assert len(after["leases"]) == 1
    # the pool itself: consistent, and VM 2's blocks and pages all freed again
    report = filer.fsck()
    assert report["clean"] and not report["problems"], report
    assert (report["blocks"], report["pages"]) == (after_first[0]["blocks"], after_first[0]["pages"])


def test_skip_goes_on(filer, hv, tpl):
    # on_error=skip: the failed VM leaves nothing, the others are made
    stem = uniq("sk")
    p = Provisioner(filer, fault=_fault_at(stem + "2", "map"))
    s = p.provision(tpl, 3, stem + "{n}", on_error="skip")
    assert sorted(r.name for r in s.ok) == [stem + "1", stem + "3"]
    assert not filer.vol_exists(stem + "2") and not hv.exists(stem + "2")


def test_real_failure_define_rolls_back(filer, hv, tpl):
    # a genuine libvirt refusal at define (name taken meanwhile) undoes clone, seed and maps
    stem = uniq("race")
    before = snapshot_state(filer, hv)

    def fault(name, st):
        if st == "map" and name == stem + "1":  # someone defines the name between validation and define
            hv.define(
                hv.xml("test")
                .replace("<name>test</name>", f"<name>{name}</name>")
                .replace(hv.lookup("test").uuid, "00000000-0000-4000-8000-00000000abcd")
            )

    s = Provisioner(filer, fault=fault).provision(tpl, 1, stem + "{n}")
    assert s.failed and s.failed[0].failed_stage == "define"
    after = snapshot_state(filer, hv)
    assert after["volumes"] == before["volumes"] and after["maps"] == before["maps"]
    hv.remove(stem + "1")


def test_refresh_failing_midway_leaves_the_vm_as_it_was(filer, hv, tpl, monkeypatch):
    # refresh builds the new clone under a temporary name: a failure writing its folder
    # undoes that clone, and the VM keeps its volume, data, maps, definition and index entry
    from coppice.provision import datastore, registry, vm

    name = uniq("rf")
    Provisioner(filer).provision(tpl, 1, name)
    dev = filer.open_lun(f"/vol/{name}/vm0.disk0")
    dev.pwrite(2 << 20, b"keep me")
    dev.flush()
    dev.close()
    before = snapshot_state(filer, hv)
    entry, xml = registry.get(filer, registry.VM, name), hv.xml(name)

    def broken(*a, **k):
        raise OSError("disk full while writing the VM folder")

    monkeypatch.setattr(datastore, "write_vm", broken)
    with pytest.raises(OSError):
        vm.refresh(filer, name)
    assert snapshot_state(filer, hv) == before
    assert registry.get(filer, registry.VM, name) == entry and hv.xml(name) == xml
    dev = filer.open_lun(f"/vol/{name}/vm0.disk0")
    assert bytes(dev.pread(2 << 20, 7)) == b"keep me"
    dev.close()
    assert filer.fsck()["clean"]
