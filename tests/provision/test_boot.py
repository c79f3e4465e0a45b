"""Real boots: the tiny template under QEMU TCG through qemu:///system, its root
disk served over NBD by qemu-nbd, its identity from a NoCloud seed.

Each test checks from the serial log that the guest read its own hostname and
instance id from its seed, and from the file qemu-nbd served that the marker
landed on that guest's disk only (the template is never written).
"""

import hashlib
import os
import subprocess
import time
import uuid

import pytest

from coppice.provision.domain_xml import DirectBoot, Disk, DomainSpec, FileSource, render_domain_xml
from coppice.provision.guest_image import read_marker
from coppice.provision.seed import SeedConfig, build_seed_iso

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 90  # a boot takes ~5 s alone; two share 2 cores under TCG


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def copy_root(template, dst):
    subprocess.run(["cp", "--sparse=always", template.disk_image, dst], check=True)
    os.chmod(dst, 0o644)
    return dst


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


def test_boot_one_guest(tiny_template, system_libvirt, qemu_nbd, workdir, domain_names):
    # root over NBD (TCP), seed as a file on a second virtio disk: hostname from the seed, marker on disk
    template_sha = sha(tiny_template.disk_image)
    name = domain_names("one")
    iid = f"iid-{uuid.uuid4()}"
    root = copy_root(tiny_template, f"{workdir}/root.raw")
    seed = f"{workdir}/seed.iso"
    ud = "#cloud-config\nruncmd: [echo hi]\n"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="alpha01", user_data=ud), seed)
    nbd = qemu_nbd(root, "root")
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(guest(tiny_template, name, nbd.source(), Disk("vdb", FileSource(seed), readonly=True), log))
    t0 = time.monotonic()
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    elapsed = time.monotonic() - t0
    text = check_identity(log, "alpha01", iid, tiny_template)
    assert f"COPPICE-USERDATA-SHA256={hashlib.sha256(ud.encode()).hexdigest()}" in text
    nbd.stop()
    assert read_marker(root) == f"COPPICE-MARKER alpha01 {iid}"
    assert sha(tiny_template.disk_image) == template_sha
    assert read_marker(tiny_template.disk_image) is None
    print(f"boot to shut-off: {elapsed:.1f} s")


def test_two_guests_in_parallel(tiny_template, system_libvirt, qemu_nbd, workdir, domain_names):
    # two guests at once, seeds served over NBD as virtio-scsi cdroms: each gets its own identity
    hv = system_libvirt
    guests = []
    for _i, host in enumerate(("web001", "web002")):
        name = domain_names(host)
        iid = f"iid-{uuid.uuid4()}"
        root = copy_root(tiny_template, f"{workdir}/{host}.raw")
        seed = f"{workdir}/{host}.iso"
        build_seed_iso(SeedConfig(instance_id=iid, hostname=host), seed)
        root_nbd = qemu_nbd(root, f"/vol/ds/{host}")  # export names may start with '/'
        seed_nbd = qemu_nbd(seed, f"/vol/ds/{host}.seed", readonly=True)
        log = f"{workdir}/{host}.log"
        hv.define(
            guest(
                tiny_template,
                name,
                root_nbd.source(),
                Disk("sda", seed_nbd.source(), device="cdrom", bus="scsi", readonly=True),
                log,
            )
        )
        guests.append((name, host, iid, root, root_nbd, log))
    t0 = time.monotonic()
    for g in guests:
        hv.start(g[0])
    for g in guests:
        hv.wait_for_shutoff(g[0], BOOT_TIMEOUT)
    print(f"two guests, start to both shut off: {time.monotonic() - t0:.1f} s")
    for _name, host, iid, root, root_nbd, log in guests:
        check_identity(log, host, iid, tiny_template)
        root_nbd.stop()
        assert read_marker(root) == f"COPPICE-MARKER {host} {iid}"
    assert read_marker(tiny_template.disk_image) is None


def test_boot_over_unix_socket_with_ide_seed(tiny_template, system_libvirt, qemu_nbd, workdir, domain_names):
    # root over NBD on a Unix socket, seed as an IDE cdrom file
    name = domain_names("unix")
    iid = f"iid-{uuid.uuid4()}"
    root = copy_root(tiny_template, f"{workdir}/root.raw")
    seed = f"{workdir}/seed.iso"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="unix01"), seed)
    nbd = qemu_nbd(root, "root", socket_path=f"{workdir}/nbd.sock")
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(
        guest(
            tiny_template,
            name,
            nbd.source(),
            Disk("hdc", FileSource(seed), device="cdrom", bus="ide", readonly=True),
            log,
        )
    )
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    check_identity(log, "unix01", iid, tiny_template)
    nbd.stop()
    assert read_marker(root) == f"COPPICE-MARKER unix01 {iid}"


def test_boot_over_tls(tiny_template, system_libvirt, nbd_tls_dirs, qemu_nbd, workdir, domain_names):
    # root over NBD with TLS (tls='yes'; libvirt's nbd_tls_x509_cert_dir holds the client cert)
    name = domain_names("tls")
    iid = f"iid-{uuid.uuid4()}"
    root = copy_root(tiny_template, f"{workdir}/root.raw")
    seed = f"{workdir}/seed.iso"
    build_seed_iso(SeedConfig(instance_id=iid, hostname="tls01"), seed)
    nbd = qemu_nbd(root, "root", tls_dir=nbd_tls_dirs[0])
    log = f"{workdir}/serial.log"
    hv = system_libvirt
    hv.define(
        guest(tiny_template, name, nbd.source(tls=True), Disk("vdb", FileSource(seed), readonly=True), log)
    )
    hv.start(name)
    hv.wait_for_shutoff(name, BOOT_TIMEOUT)
    check_identity(log, "tls01", iid, tiny_template)
    nbd.stop()
    assert read_marker(root) == f"COPPICE-MARKER tls01 {iid}"
