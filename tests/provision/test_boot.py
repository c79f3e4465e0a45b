"""Real boots: the tiny template under QEMU TCG through qemu:///system, its root
disk a LUN served over NBD by Coppice's own target (TCP with igroups, Unix
socket, TLS), its identity from a NoCloud seed.

Each test checks from the serial log that the guest read its own hostname and
instance id from its seed, and from the LUN the target served that the
marker landed on that guest's disk only (the template is never written).
"""

import hashlib
import os
import subprocess
import time
import uuid

import pytest

from coppice.filer.filer import Filer
from coppice.nbd.server import NBDServer
from coppice.provision import guest_image as gi
from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    NbdSource,
    render_domain_xml,
)
from coppice.provision.guest_image import read_marker
from coppice.provision.seed import SeedConfig, build_seed_iso
from coppice.provision.template import copy_into_lun

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 90  # a boot takes ~5 s alone; two share 2 cores under TCG


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


class CoppiceTarget:
    """A pool in the test's directory served by Coppice's NBD target; each file becomes a LUN."""

    def __init__(self, workdir, *, unix=False, tls_dir=None):
        self.filer = Filer.create(f"{workdir}/pool")
        self.filer.vol_create("ds", 1 << 30)
        self.filer.igroup_create("hosts", ["127.0.0.1", "libvirt-qemu"])
        self.socket = f"{workdir}/nbd.sock" if unix else None
        ctx = None
        if tls_dir:
            from coppice.nbd.tls import server_context

            ctx = server_context(tls_dir)
        self.server = NBDServer(
            self.filer.resolver(),
            host="127.0.0.1",
            port=None if unix else 0,
            unix_path=self.socket,
            tls_context=ctx,
            require_tls=bool(ctx),
        ).start()
        self.tls = bool(ctx)

    def lun(self, name, path):
        size = -(-os.path.getsize(path) // 512) * 512
        lun = f"/vol/ds/{name}"
        self.filer.lun_create(lun, size)
        copy_into_lun(self.filer, lun, path, os.path.getsize(path))
        self.filer.lun_map(lun, "hosts")
        return lun

    def source(self, lun):
        if self.socket:
            return NbdSource(lun, socket=self.socket)
        return NbdSource(lun, host="127.0.0.1", port=self.server.address[1], tls=self.tls)

    def marker(self, lun):
        dev = self.filer.open_lun(lun)
        try:
            raw = bytes(dev.pread(gi.MARKER_OFFSET, gi.MARKER_SIZE)).split(b"\0", 1)[0]
        finally:
            dev.close()
        return raw.decode().rstrip("\n") or None

    def close(self):
        self.server.shutdown()
        self.filer.close()


@pytest.fixture
def target(workdir):
    made = []

    def make(**kw):
        t = CoppiceTarget(workdir, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def guest(template, name, root_src, seed_disk, log):
    return render_domain_xml(
        DomainSpec(
            name=name,
            memory_mib=256,
            boot=DirectBoot(template.kernel, template.initrd, template.cmdline),
            disks=[Disk("vda", root_src), seed_disk],
            serial_log=log,
        )
    )


def check_identity(log, hostname, iid, template):
    text = open(log, errors="replace").read()
    assert f"Coppice guest {hostname} login:" in text, text[-2000:]
    assert f"COPPICE-HOSTNAME={hostname}\n" in text
    assert f"COPPICE-INSTANCE={iid}\n" in text
    assert f"COPPICE-MACHINE-ID={template.machine_id or 'none'}\n" in text  # read from its own disk
    assert "COPPICE-MARKER-WRITTEN" in text
    return text


def test_boot_one_guest(tiny_template, system_libvirt, target, workdir, domain_names):
    # root over NBD (TCP, igroup by address), seed as a file on a second virtio disk: hostname from the
    # seed, marker on disk
    template_sha = sha(tiny_template.disk_image)
    name = domain_names("one")
    iid = f"iid-{uuid.uuid4()}"
    t = target()
    root = t.lun("root", tiny_template.disk_image)
    seed = f"{workdir}/seed.iso"
    ud = "#cloud-config\nruncmd: [echo hi]\n"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="alpha01", user_data=ud), seed)
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(guest(tiny_template, name, t.source(root), Disk("vdb", FileSource(seed), readonly=True), log))
    t0 = time.monotonic()
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    elapsed = time.monotonic() - t0
    text = check_identity(log, "alpha01", iid, tiny_template)
    assert f"COPPICE-USERDATA-SHA256={hashlib.sha256(ud.encode()).hexdigest()}" in text
    assert t.marker(root) == f"COPPICE-MARKER alpha01 {iid}"
    assert sha(tiny_template.disk_image) == template_sha
    assert read_marker(tiny_template.disk_image) is None
    print(f"boot to shut-off: {elapsed:.1f} s")


def test_two_guests_in_parallel(tiny_template, system_libvirt, target, workdir, domain_names):
    # two guests at once, seeds served over NBD as virtio-scsi cdroms: each gets its own identity
    hv = system_libvirt
    t = target()
    guests = []
    for _i, host in enumerate(("web001", "web002")):
        name = domain_names(host)
        iid = f"iid-{uuid.uuid4()}"
        root = t.lun(host, tiny_template.disk_image)  # export names start with '/'
        seed = f"{workdir}/{host}.iso"
        build_seed_iso(SeedConfig(instance_id=iid, hostname=host), seed)
        seed_lun = t.lun(f"{host}.seed", seed)
        log = f"{workdir}/{host}.log"
        hv.define(
            guest(
                tiny_template,
                name,
                t.source(root),
                Disk("sda", t.source(seed_lun), device="cdrom", bus="scsi", readonly=True),
                log,
            )
        )
        guests.append((name, host, iid, root, log))
    t0 = time.monotonic()
    for g in guests:
        hv.start(g[0])
    for g in guests:
        hv.wait_for_shutoff(g[0], BOOT_TIMEOUT)
    print(f"two guests, start to both shut off: {time.monotonic() - t0:.1f} s")
    for _name, host, iid, root, log in guests:
        check_identity(log, host, iid, tiny_template)
        assert t.marker(root) == f"COPPICE-MARKER {host} {iid}"
    assert read_marker(tiny_template.disk_image) is None


def test_boot_over_unix_socket_with_ide_seed(tiny_template, system_libvirt, target, workdir, domain_names):
    # root over NBD on the target's Unix socket, seed as an IDE cdrom file
    name = domain_names("unix")
    iid = f"iid-{uuid.uuid4()}"
    t = target(unix=True)
    root = t.lun("root", tiny_template.disk_image)
    seed = f"{workdir}/seed.iso"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="unix01"), seed)
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(
        guest(
            tiny_template,
            name,
            t.source(root),
            Disk("hdc", FileSource(seed), device="cdrom", bus="ide", readonly=True),
            log,
        )
    )
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    check_identity(log, "unix01", iid, tiny_template)
    assert t.marker(root) == f"COPPICE-MARKER unix01 {iid}"


def test_boot_over_tls(tiny_template, system_libvirt, nbd_tls_dirs, target, workdir, domain_names):
    # root over NBD with TLS required (tls='yes'; libvirt's nbd_tls_x509_cert_dir holds the client
    # cert, whose CN libvirt-qemu is the initiator the igroup names)
    name = domain_names("tls")
    iid = f"iid-{uuid.uuid4()}"
    t = target(tls_dir=nbd_tls_dirs[0])
    root = t.lun("root", tiny_template.disk_image)
    seed = f"{workdir}/seed.iso"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="tls01"), seed)
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(guest(tiny_template, name, t.source(root), Disk("vdb", FileSource(seed), readonly=True), log))
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    check_identity(log, "tls01", iid, tiny_template)
    assert t.marker(root) == f"COPPICE-MARKER tls01 {iid}"
