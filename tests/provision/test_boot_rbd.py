"""A real boot from an rbd-backed clone LUN: the tiny template imported into
a LUN of a pool whose data lives in Ceph RBD, snapshotted, cloned (an RBD
clone v2 of the image), and the clone's LUN served over NBD by Coppice's
target as the guest's root disk. The guest reads its identity from its
seed and writes its marker to the clone's image only: the parent LUN and
its snapshot are unchanged."""

import hashlib
import time
import uuid

import pytest

from coppice.filer.filer import Filer
from coppice.nbd.server import NBDServer
from coppice.provision import guest_image as gi
from coppice.provision.domain_xml import Disk, FileSource, NbdSource
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
