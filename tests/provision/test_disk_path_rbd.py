"""``vm provision --disk-path rbd`` on test:///default (no boot here;
test_boot_rbd.py boots one through qemu:///system): the domains' disks are
libvirt RBD network disks naming the clone's images in the Ceph pool, with
the pool's monitors and nothing of the Coppice host; refresh repoints
nothing (the new clone takes the old images' names), destroy and a failure
at any stage leave no image behind (fsck compares both sides); a native
pool refuses the option and changes nothing."""

import xml.etree.ElementTree as ET

import pytest

from coppice.backend.rbd import mon_hosts
from coppice.provision import custspec
from coppice.provision.facade import Provisioning
from coppice.provision.provisioner import STAGES, Provisioner, volume_for_vm
from coppice.provision.provisioning_errors import DiskPathUnsupported, InjectedFailure
from coppice.provision.records import RbdTarget
from coppice.provision.seed import read_seed_iso

from .prov_helpers import TEST_URI, filer, hv, image, snapshot_state, tpl, uniq  # noqa: F401

pytestmark = pytest.mark.backends("rbd")


def disks(xml):
    """target -> (protocol, name, [(host, port)], has auth) of each network disk."""
    out = {}
    for d in ET.fromstring(xml).iter("disk"):
        src = d.find("source")
        out[d.find("target").get("dev")] = (
            src.get("protocol"),
            src.get("name"),
            [(h.get("name"), h.get("port")) for h in src.findall("host")],
            src.find("auth") is not None or d.find("auth") is not None,
        )
    return out


def images(conf):
    import rados
    import rbd

    c = rados.Rados(conffile=conf)
    c.connect()
    try:
        io = c.open_ioctx("rbd")
        return {i["name"]: i["id"] for i in rbd.RBD().list2(io)}
    finally:
        c.shutdown()


def read_image(conf, name):
    import rados
    import rbd

    c = rados.Rados(conffile=conf)
    c.connect()
    try:
        with rbd.Image(c.open_ioctx("rbd"), name, read_only=True) as img:
            return img.read(0, img.size())
    finally:
        c.shutdown()


def test_provision_refresh_destroy_with_rbd_disks(filer, hv, tpl, ceph_conf):
    p = Provisioning(filer)
    stem = uniq("rd")
    custspec.create(filer, "ops", user="ops", network="static:192.0.2.0/28", runcmd=["echo hi"])
    s = p.vm_provision(tpl, stem + "{n}", 2, "ops", connect=TEST_URI, disk_path="rbd")
    assert s["created"] == 2 and s["disk_path"] == "rbd" and s["nbd"] is None, s
    mons = [
        (h, str(port)) for h, port in mon_hosts(open(ceph_conf).read().split("mon host =")[1].split("\n")[0])
    ]
    assert mons and s["rbd"].startswith("rbd:rbd (monitors ")
    names = [stem + "1", stem + "2"]
    for n in names:
        vol = volume_for_vm(n)
        got = disks(hv.xml(n))
        # auth none on the test cluster: no <auth>; the monitors, never the Coppice host's NBD port
        assert got == {
            "vda": ("rbd", f"rbd/coppice.{vol}.vm0.disk0", mons, False),
            "sda": ("rbd", f"rbd/coppice.{vol}.vm0.seed", mons, False),
        }
        assert "nbd" not in hv.xml(n)
        # QEMU reads the seed from the image itself: it holds this VM's identity
        seed = read_seed_iso(read_image(ceph_conf, f"coppice.{vol}.vm0.seed"))
        assert f"local-hostname: {n}" in seed["meta-data"].decode()
        assert "ops" in seed["user-data"].decode() and "192.0.2." in seed["network-config"].decode()
    # refresh: a new clone, under the same image names, so the definition is unchanged
    vol = volume_for_vm(names[0])
    before = images(ceph_conf)
    dev = filer.open_lun(f"/vol/{vol}/vm0.disk0")
    dev.pwrite(0, b"changed by the guest".ljust(4096, b"\0"))
    dev.close()
    xml0 = hv.xml(names[0])
    p.vm_refresh(names[0])
    after = images(ceph_conf)
    disk = f"coppice.{vol}.vm0.disk0"
    assert after[disk] != before[disk]  # a new image took the name...
    assert read_image(ceph_conf, disk)[:20] != b"changed by the guest"  # ...with the base's data
    assert disks(hv.xml(names[0])) == disks(xml0)
    assert not [i for i in after if "_r" in i or "~deleted" in i], after  # no temporary or old image left
    assert filer.fsck()["clean"], filer.fsck()["problems"]
    # recompose onto another snapshot of the template: the same names again
    p.vm_recompose(names[0], "imported")
    assert disks(hv.xml(names[0])) == disks(xml0) and images(ceph_conf)[disk] != after[disk]
    assert filer.fsck()["clean"], filer.fsck()["problems"]
    # destroy: its images go, the other VM's stay
    p.vm_destroy(names[0])
    left = images(ceph_conf)
    assert not [i for i in left if i.startswith(f"coppice.{vol}.")], left
    assert f"coppice.{volume_for_vm(names[1])}.vm0.disk0" in left
    assert not hv.exists(names[0])
    assert filer.fsck()["clean"], filer.fsck()["problems"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_failure_at_any_stage_leaves_no_image(filer, hv, tpl, ceph_conf, stage):
    stem = uniq("rf")

    def fault(name, st):
        if name == stem + "2" and st == stage:
            raise InjectedFailure(stage=stage)

    target = RbdTarget.from_access(filer.direct_disk_access())
    before = snapshot_state(filer, hv)
    s = Provisioner(filer, fault=fault).provision(
        tpl, 2, stem + "{n}", None, TEST_URI, start=True, target=target
    )
    assert [r.name for r in s.ok] == [stem + "1"] and s.failed[0].failed_stage == stage
    assert not s.failed[0].rollback_errors
    after = snapshot_state(filer, hv)
    assert after["volumes"] == sorted(before["volumes"] + [stem + "1"])
    assert after["domains"] == sorted(before["domains"] + [stem + "1"])
    assert not [i for i in images(ceph_conf) if i.startswith(f"coppice.{stem}2.")]
    report = filer.fsck()  # on rbd: every coppice.* image is some LUN's, and the other way round
    assert report["clean"], report["problems"]


@pytest.mark.backends("native")
def test_disk_path_rbd_on_a_native_pool_is_refused_and_changes_nothing(filer, hv, tpl):
    before = snapshot_state(filer, hv)
    p = Provisioning(filer)
    with pytest.raises(DiskPathUnsupported, match="--disk-path nbd") as e:
        p.vm_provision(tpl, uniq("nr") + "{n}", 1, connect=TEST_URI, disk_path="rbd")
    assert "embedded engine" in str(e.value) and "--backend rbd" in str(e.value)
    with pytest.raises(DiskPathUnsupported):
        p.vm_provision_check(tpl, uniq("nr") + "{n}", 1, connect=TEST_URI, disk_path="rbd")
    assert snapshot_state(filer, hv) == before


@pytest.mark.backends("native")
def test_cli_disk_path_rbd_on_a_native_pool_names_what_to_do(tmp_path):
    from tests.api.conftest import run_cli

    pool = str(tmp_path / "pool")
    assert run_cli(pool, "pool", "create", pool).returncode == 0
    r = run_cli(pool, "vm", "provision", "--template", "t", "--name", "v{n}", "--disk-path", "rbd")
    assert r.returncode != 0
    assert "--disk-path nbd" in r.stderr and "pool create --backend rbd" in r.stderr, r.stderr
    r = run_cli(pool, "vm", "provision", "--template", "t", "--name", "v{n}", "--disk-path", "iscsi")
    assert r.returncode != 0 and "use nbd or rbd" in r.stderr, r.stderr
