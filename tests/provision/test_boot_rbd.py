"""Real boots from rbd-backed clones through qemu:///system.

1. Over NBD: the tiny template imported into a LUN of a pool whose data
   lives in Ceph RBD, snapshotted, cloned (an RBD clone v2 of the image),
   and the clone's LUN served over NBD by Coppice's target as the guest's
   root disk.
2. As a direct RBD disk (``vm provision --disk-path rbd``): the domain's
   disks are libvirt RBD network disks and QEMU opens the clone's images
   itself with librbd; no Coppice NBD target runs at all. Then refresh and
   destroy of that VM.

The guest reads its identity from its seed and writes its marker to the
clone's image only: the parent LUN and its snapshot are unchanged."""

import hashlib
import time
import uuid

import pytest

from coppice.filer.filer import Filer
from coppice.nbd.server import NBDServer
from coppice.provision import guest_image as gi
from coppice.provision import template
from coppice.provision.domain_xml import Disk, FileSource, NbdSource
from coppice.provision.facade import Provisioning
from coppice.provision.seed import SeedConfig, build_seed_iso
from coppice.provision.template import copy_into_lun
from tests.provision.test_boot import BOOT_TIMEOUT, check_identity, guest

pytestmark = pytest.mark.slow


def lun_sha(f, path):
    d = f.open_lun(path)
    try:
        return hashlib.sha256(bytes(d.pread(0, d.size))).hexdigest()
    finally:
        d.close()


def marker(f, path):
    d = f.open_lun(path)
    try:
        raw = bytes(d.pread(gi.MARKER_OFFSET, gi.MARKER_SIZE)).split(b"\0", 1)[0]
    finally:
        d.close()
    return raw.decode().rstrip("\n") or None


def test_boot_from_an_rbd_backed_clone_lun(
    tiny_template, system_libvirt, workdir, domain_names, ceph_conf, ceph_pool
):
    import os

    f = Filer.create(f"{workdir}/pool", backend="rbd", ceph_conf=ceph_conf, ceph_pool=ceph_pool)
    srv = None
    try:
        f.vol_create("tpl", 1 << 30)
        f.igroup_create("hosts", ["127.0.0.1"])
        size = -(-os.path.getsize(tiny_template.disk_image) // 512) * 512
        f.lun_create("/vol/tpl/root", size)
        copy_into_lun(f, "/vol/tpl/root", tiny_template.disk_image, os.path.getsize(tiny_template.disk_image))
        f.snap_create("tpl", "base")
        f.clone_create("vm1", "tpl", "base")
        f.lun_map("/vol/vm1/root", "hosts")
        parent_sha = lun_sha(f, "/vol/tpl/root")
        srv = NBDServer(f.resolver(), host="127.0.0.1", port=0).start()
        name = domain_names("rbd")
        iid = f"iid-{uuid.uuid4()}"
        seed = f"{workdir}/seed.iso"
        build_seed_iso(SeedConfig(instance_id=iid, hostname="rbd01", user_data="#cloud-config\n"), seed)
        log = f"{workdir}/serial.log"
        src = NbdSource("/vol/vm1/root", host="127.0.0.1", port=srv.address[1])
        hv = system_libvirt
        hv.define(guest(tiny_template, name, src, Disk("vdb", FileSource(seed), readonly=True), log))
        t0 = time.monotonic()
        hv.start(name)
        hv.wait_for_shutoff(name, BOOT_TIMEOUT)
        print(f"boot from an rbd clone LUN to shut-off: {time.monotonic() - t0:.1f} s")
        check_identity(log, "rbd01", iid, tiny_template)
        assert marker(f, "/vol/vm1/root") == f"COPPICE-MARKER rbd01 {iid}"
        assert lun_sha(f, "/vol/tpl/root") == parent_sha
        assert lun_sha(f, "/vol/tpl/.snapshot/base/root") == parent_sha
        assert f.fsck()["clean"], f.fsck()["problems"]
    finally:
        if srv is not None:
            srv.shutdown()
        f.close()


def test_provisioned_vm_boots_from_a_direct_rbd_disk(
    tiny_template, system_libvirt, workdir, ceph_conf, ceph_pool
):
    import re
    import xml.etree.ElementTree as ET

    f = Filer.create(f"{workdir}/pool", backend="rbd", ceph_conf=ceph_conf, ceph_pool=ceph_pool)
    hv = system_libvirt
    name = f"coppice-test-rbdd-{uuid.uuid4().hex[:6]}"
    try:
        t = tiny_template
        template.import_image(
            f, "tiny", t.disk_image, kernel=t.kernel, initrd=t.initrd, cmdline=t.cmdline, generalize=False
        )
        parent_sha = lun_sha(f, "/vol/tpl_tiny/vm0.disk0")
        p = Provisioning(f)
        s = p.vm_provision("tiny", name, 1, connect="qemu:///system", start=True, disk_path="rbd")
        assert s["created"] == 1, s["failed"]
        vol = name.replace("-", "_")
        xml = hv.xml(name)
        disks = {
            d.find("target").get("dev"): (
                d.get("type"),
                d.find("source").get("protocol"),
                d.find("source").get("name"),
            )
            for d in ET.fromstring(xml).iter("disk")
        }
        assert disks == {
            "vda": ("network", "rbd", f"rbd/coppice.{vol}.vm0.disk0"),
            "sda": ("network", "rbd", f"rbd/coppice.{vol}.vm0.seed"),
        }, xml
        t0 = time.monotonic()
        hv.wait_for_shutoff(name, BOOT_TIMEOUT)
        print(f"boot from a direct rbd disk to shut-off: {time.monotonic() - t0:.1f} s")
        rec = p.vm_show(name)
        log = open(rec["serial_log"], errors="replace").read().replace("\r", "")
        assert f"COPPICE-HOSTNAME={name}\n" in log, log[-2000:]
        iid = re.search(r"COPPICE-INSTANCE=(\S+)", log).group(1)
        assert iid == rec["instance_id"]
        assert marker(f, f"/vol/{vol}/vm0.disk0") == f"COPPICE-MARKER {name} {iid}"
        assert lun_sha(f, "/vol/tpl_tiny/vm0.disk0") == parent_sha
        assert lun_sha(f, "/vol/tpl_tiny/.snapshot/base/vm0.disk0") == parent_sha
        # refresh: a new clone under the same image names; the definition still names them
        p.vm_refresh(name)
        assert marker(f, f"/vol/{vol}/vm0.disk0") is None
        assert f"rbd/coppice.{vol}.vm0.disk0" in hv.xml(name)
        assert f.fsck()["clean"], f.fsck()["problems"]
        p.vm_destroy(name)
        assert not hv.exists(name)
        assert f.fsck()["clean"] and f.fsck()["rbd"]["images"] == 1  # the template's disk only
    finally:
        hv.remove(name)
        f.close()
