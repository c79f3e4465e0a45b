"""Batch provisioning against libvirt's test:///default: what each VM gets,
and bad input refused before anything is created."""

import pytest

from coppice.errors import CoppiceError
from coppice.provision import custspec, datastore, registry, vm
from coppice.provision.provisioner import Provisioner, expand_pattern
from coppice.provision.provisioning_errors import (
    BadCount,
    BadNamePattern,
    SSHKeyUnreadable,
    TemplateNotFound,
    VMExists,
    VMRunning,
)
from coppice.provision.seed import read_seed_iso

from .prov_helpers import TEST_URI, filer, hv, image, snapshot_state, tpl, uniq  # noqa: F401

pytestmark = pytest.mark.backends("native", "rbd")


def test_provision_five_vms_each_with_its_own_identity(filer, hv, tpl):
    # 5 VMs: each a clone of the base snapshot, own UUID/MAC/instance-id, seed with its own hostname
    custspec.create(filer, "spec1", user="admin", runcmd=["echo hello"])
    stem = uniq("web")
    s = Provisioner(filer).provision(tpl, 5, stem + "{n:02}", "spec1", TEST_URI)
    assert len(s.ok) == 5 and not s.failed
    uuids, macs, ids = set(), set(), set()
    for r in s.results:
        rec = registry.get(filer, registry.VM, r.name)
        assert filer.vol_parent(rec["volume"]) == ("tpl_gold", "base")
        assert hv.exists(r.name) and hv.state(r.name) == "shutoff"
        xml = hv.xml(r.name)
        assert f"/vol/{rec['volume']}/vm0.disk0" in xml and f"/vol/{rec['volume']}/vm0.seed" in xml
        uuids.add(hv.lookup(r.name).uuid)
        macs.add(rec["mac"])
        ids.update(rec["lun_ids"].values())
        seed = vm.seed_files(filer, r.name)
        assert seed[""] == "cidata"
        assert f"local-hostname: {r.name}" in seed["meta-data"]
        assert "echo hello" in seed["user-data"] and "admin" in seed["user-data"]
        d = datastore.descriptor(filer, rec["volume"])
        assert d["name"].startswith("snap-") and d["name"].endswith("-template-gold")
        assert all(m["online"] for m in filer.lun_maps() if m["path"].startswith(f"/vol/{rec['volume']}/"))
    assert len(uuids) == 5 and len(macs) == 5 and len(ids) == 10
    assert set(s.to_dict()["stage_seconds"]) == {"clone", "seed", "resignature", "map", "define"}


def test_parallel_batch(filer, tpl):
    # 8 VMs with 4 workers all succeed
    s = Provisioner(filer).provision(tpl, 8, uniq("par") + "{n}", parallel=4)
    assert len(s.ok) == 8


def test_pattern_rules():
    # {n} formats; a pattern without {n} only for one VM; unknown fields refused
    assert expand_pattern("web{n:03}", 2) == ["web001", "web002"]
    assert expand_pattern("solo", 1) == ["solo"]
    for bad in ("web", "web{x}", "web{n", "9web{n}", "we b{n}", ""):
        with pytest.raises(BadNamePattern):
            expand_pattern(bad, 3)


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(template="nope"), TemplateNotFound),
        (dict(name_pattern="web"), BadNamePattern),
        (dict(name_pattern="bad name{n}"), BadNamePattern),
        (dict(count=0), BadCount),
        (dict(count=-3), BadCount),
        (dict(count=1_000_000), BadCount),
        (dict(count=1, name_pattern="test"), VMExists),  # test:///default's own domain
        (dict(custspec="missing"), CoppiceError),
    ],
)
def test_bad_input_creates_nothing(filer, hv, tpl, kw, err):
    # each bad input is a clear error and nothing exists afterwards that did not before
    before = snapshot_state(filer, hv)
    args = dict(template=tpl, count=3, name_pattern=uniq("bad") + "{n}")
    args.update(kw)
    with pytest.raises(err) as ei:
        Provisioner(filer).provision(
            args["template"], args["count"], args["name_pattern"], args.get("custspec"), TEST_URI
        )
    assert str(ei.value)
    assert snapshot_state(filer, hv) == before


def test_unreadable_key_refused_at_spec_creation(filer, tmp_path):
    # a customization with an unreadable key file is refused when the spec is made
    with pytest.raises(SSHKeyUnreadable):
        custspec.create(filer, "k", user="u", ssh_key_file=str(tmp_path / "missing.pub"))
    assert custspec.list_(filer) == []


def test_name_taken_by_earlier_batch(filer, hv, tpl):
    # a second batch with a colliding name is refused up front, the first batch is untouched
    stem = uniq("dup")
    Provisioner(filer).provision(tpl, 2, stem + "{n}")
    before = snapshot_state(filer, hv)
    with pytest.raises(VMExists):
        Provisioner(filer).provision(tpl, 3, stem + "{n}")
    assert snapshot_state(filer, hv) == before


def test_vm_list_show_destroy(filer, hv, tpl):
    # list shows state and template; show the space of the VM alone; destroy refuses running without force
    stem = uniq("life")
    Provisioner(filer).provision(tpl, 2, stem + "{n}", start=True)
    rows = {r["name"]: r for r in vm.list_(filer)}
    assert rows[stem + "1"]["state"] == "running" and rows[stem + "1"]["template"] == tpl
    info = vm.show(filer, stem + "1")
    # RBD counts a clone's own bytes from its allocation map (copy-up extents), the engine in blocks
    own_limit = 64 * 1024 if filer.backend.kind == "native" else 4 << 20
    assert info["own_bytes"] < own_limit and info["clone"] == stem + "1"
    with pytest.raises(VMRunning):
        vm.destroy(filer, stem + "1")
    vm.destroy(filer, stem + "1", force=True)
    assert not hv.exists(stem + "1") and not filer.vol_exists(stem + "1")
    assert stem + "1" not in {r["name"] for r in vm.list_(filer)}
    assert not [m for m in filer.lun_maps() if m["path"].startswith(f"/vol/{stem}1/")]
    hv.destroy(stem + "2")
    vm.destroy(filer, stem + "2")
    assert not hv.exists(stem + "2")


def test_refresh_discards_changes_keeps_identity(filer, hv, tpl):
    # refresh: the clone's writes are gone, name/UUID/MAC/seed/LUN IDs are the same
    name = uniq("ref")
    Provisioner(filer).provision(tpl, 1, name)
    before = vm.show(filer, name)
    seed_before = vm.seed_files(filer, name)
    dev = filer.open_lun(f"/vol/{name}/vm0.disk0")
    dev.pwrite(2 << 20, b"dirty" * 1000)
    dev.flush()
    dev.close()
    assert vm.show(filer, name)["own_bytes"] > 0
    after = vm.refresh(filer, name)
    for k in ("uuid", "mac", "luns", "hostname"):
        assert after[k] == before[k]
    assert hv.lookup(name).uuid == before["uuid"]
    assert vm.seed_files(filer, name)["meta-data"] == seed_before["meta-data"]
    dev = filer.open_lun(f"/vol/{name}/vm0.disk0")
    assert bytes(dev.pread(2 << 20, 5)) == b"\0" * 5
    dev.close()


def test_recompose_moves_to_newer_snapshot(filer, tpl):
    # recompose --snapshot S: the VM now sees the template's newer content, keeps its identity
    name = uniq("rec")
    Provisioner(filer).provision(tpl, 1, name)
    dev = filer.open_lun("/vol/tpl_gold/vm0.disk0")
    dev.pwrite(3 << 20, b"v2 patch")
    dev.flush()
    dev.close()
    filer.snap_create("tpl_gold", "v2")
    before = vm.show(filer, name)
    after = vm.recompose(filer, name, "v2")
    assert after["base_snapshot"] == "v2" and after["uuid"] == before["uuid"]
    assert filer.vol_parent(name) == ("tpl_gold", "v2")
    dev = filer.open_lun(f"/vol/{name}/vm0.disk0")
    assert bytes(dev.pread(3 << 20, 8)) == b"v2 patch"
    dev.close()


def test_summary_names_igroup_target_and_warns_of_an_ungeneralized_template(filer, tpl):
    # the output says where guests reach their disks; a template of unknown layout was not generalized
    from coppice.provision.provisioner import Target

    s = Provisioner(filer).provision(tpl, 1, uniq("sum"), target=Target.parse("192.0.2.7:10900", tls=True))
    d = s.to_dict()
    assert d["igroup"] == "coppice_host" and d["nbd"] == "nbd://192.0.2.7:10900 (TLS)"
    assert len(d["warnings"]) == 1 and "not generalized" in d["warnings"][0] and tpl in d["warnings"][0]


@pytest.mark.parametrize(
    "generalized, warns",
    [
        ({"method": "coppice-tiny", "cleared": ["machine-id"]}, False),
        ({"done": True, "method": "libguestfs"}, False),
        ({"done": False, "method": "libguestfs", "why": "no OS found"}, True),
        ({"method": "skipped"}, True),
        ({"method": "none", "why": "unknown disk layout"}, True),
        ({"ok": True, "method": "virt-sysprep"}, False),
        ({"ok": False}, True),
        (True, False),
        (False, True),
        (None, True),
        ("garbage", True),
    ],
)
def test_generalization_flag_read_defensively(generalized, warns):
    from coppice.provision.provisioner import generalization_warning

    w = generalization_warning({"name": "t", "generalized": generalized})
    assert (w is not None) == warns
    assert generalization_warning({"name": "t", "generalized": generalized, "is_generalized": True}) is None
