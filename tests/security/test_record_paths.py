"""Values read back from stored records are checked before they touch a path:
a VM folder's kernel_sha256 (joined into the boot-file directory) and the
VM index's volume, slot and LUN paths. A record edited to point elsewhere is
refused with BadRecord, and nothing is written outside the state directory."""

import os

import pytest

from coppice.provision import datastore as ds
from coppice.provision import dsclone, registry, template, vm
from coppice.provision.provisioner import Provisioner
from coppice.provision.provisioning_errors import BadRecord
from tests.provision.prov_helpers import TEST_URI, uniq

EVIL = ["../../../../tmp/coppice-evil-{}", "/tmp/coppice-evil-{}", "AB" * 32, "a" * 63, "g" * 64, 7]


@pytest.mark.parametrize("value", EVIL)
def test_boot_paths_refuse_a_digest_that_is_not_one(filer, tmp_path, value):
    # boot_paths joins the digest into state_dir/boot/<sha>: anything but 64 hex digits is refused
    tag = uniq("x")
    bad = value.format(tag) if isinstance(value, str) else value
    with pytest.raises(BadRecord) as ei:
        template.boot_paths(filer, "nope", "vm0", {"name": "v", "kernel_sha256": bad}, str(tmp_path))
    assert "kernel_sha256" in str(ei.value)
    assert not os.path.exists(f"/tmp/coppice-evil-{tag}") and not (tmp_path / "boot").exists()


def test_tampered_vm_folder_is_refused_on_register(filer, hv, tmp_path):
    # a datastore whose VM folder names a kernel digest '../..': register refuses, nothing defined or written
    ds.create(filer, "dsx", name="x")
    name = uniq("fold")
    rec = dsclone.create_vm(filer, "dsx", name, "4m")
    target = f"/tmp/coppice-evil-{uniq('k')}"
    slot = rec.pop("slot")
    ds.write_vm(filer, "dsx", slot, dict(rec, kernel_sha256="../../../.." + target))
    with pytest.raises(BadRecord):
        dsclone.register_datastore(filer, "dsx", TEST_URI, hv=hv, state_dir=str(tmp_path))
    assert not os.path.exists(target) and not hv.exists(name)
    assert registry.get(filer, registry.VM, name) is None


@pytest.mark.parametrize(
    "change",
    [
        {"volume": "../../etc"},
        {"slot": "../../x"},
        {"lun_ids": {"/vol/other/vm0.disk0": 1}},
        {"lun_ids": {"/vol/{vol}/../x": 1}},
        {"name": "a/../../b"},
    ],
)
def test_tampered_index_entry_is_refused(filer, hv, tpl, change):
    # the VM index edited by hand: show and destroy refuse it with BadRecord and change nothing
    name = uniq("idx")
    Provisioner(filer).provision(tpl, 1, name, connect_uri=TEST_URI)
    d = registry.get(filer, registry.VM, name)
    change = {
        k: ({p.replace("{vol}", d["volume"]): i for p, i in v.items()} if isinstance(v, dict) else v)
        for k, v in change.items()
    }
    registry.put(filer, registry.VM, name, dict(d, **change))
    dump = filer.dump()
    with pytest.raises(BadRecord):
        vm.show(filer, name)
    with pytest.raises(BadRecord):
        vm.destroy(filer, name, force=True)
    assert filer.dump() == dump and hv.exists(name)
