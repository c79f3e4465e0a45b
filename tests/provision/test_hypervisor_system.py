"""The system libvirt daemon started by hand: qemu.conf block, idempotence, real QEMU driver."""

import json
import os

import pytest

from coppice.provision import hypervisor as hvmod
from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    NbdSource,
    render_domain_xml,
)
from coppice.provision.errors import DomainExists, HostNotSetUp, HypervisorError


def test_qemu_conf_block_managed(tmp_path):
    # our block is added once, replaced in place, and conflicting settings are commented out
    conf = tmp_path / "qemu.conf"
    conf.write_text('# site settings\nvnc_listen = "0.0.0.0"\nuser = "qemu"\n')
    assert hvmod._configure_qemu_conf(str(conf), None) is True
    text = conf.read_text()
    assert 'vnc_listen = "0.0.0.0"' in text and '# (coppice) user = "qemu"' in text
    assert 'user = "root"' in text and 'security_driver = "none"' in text
    assert hvmod._configure_qemu_conf(str(conf), None) is False  # idempotent: no restart needed
    assert hvmod._configure_qemu_conf(str(conf), "/etc/tls") is True
    assert 'nbd_tls_x509_cert_dir = "/etc/tls"' in conf.read_text()
    assert hvmod._configure_qemu_conf(str(conf), None) is False  # an earlier TLS dir is kept
    assert conf.read_text().count("# BEGIN coppice") == 1


def test_ensure_is_idempotent_and_fast(system_libvirt):
    # a second call with the daemon up only checks it
    before = open("/run/libvirtd.pid").read().strip()
    hvmod.ensure_system_libvirtd()
    assert hvmod._pid_alive("/run/libvirtd.pid") and hvmod._pid_alive("/run/virtlogd.pid")
    assert open("/run/libvirtd.pid").read().strip() == before  # not restarted


def test_real_driver_accepts_our_definitions(system_libvirt, domain_names, tiny_template):
    # the QEMU driver (not only the test driver) accepts NBD TCP, unix, TLS and file seed disks
    hv = system_libvirt
    name = domain_names("def")
    xml = render_domain_xml(
        DomainSpec(
            name=name,
            boot=DirectBoot(tiny_template.kernel, tiny_template.initrd, tiny_template.cmdline),
            disks=[
                Disk("vda", NbdSource("root", port=10809)),
                Disk("vdb", NbdSource("data", socket="/run/coppice/nbd.sock", tls=True)),
                Disk("sda", FileSource("/var/tmp/seed.iso"), device="cdrom", bus="scsi", readonly=True),
            ],
            serial_log="/var/tmp/x.log",
            metadata={"template": "tiny"},
        )
    )
    hv.define(xml)
    assert hv.state(name) == "shutoff"
    assert "tiny" in hv.xml(name)
    with pytest.raises(DomainExists):
        hv.define(xml)
    hv.undefine(name)
    assert not hv.exists(name)


def test_real_driver_refuses_virtio_cdrom(system_libvirt, domain_names):
    # what we refuse up front, QEMU's driver refuses too (the test driver would not)
    name = domain_names("bad")
    xml = render_domain_xml(DomainSpec(name=name, disks=[Disk("vdb", FileSource("/x.iso"), readonly=True)]))
    xml = xml.replace('device="disk"', 'device="cdrom"')
    with pytest.raises(HypervisorError):
        system_libvirt.define(xml)


def test_connect_starts_or_finds_the_daemon(system_libvirt):
    # connect() is the one call a command needs: daemon checked, connection open
    with hvmod.connect() as hv:
        assert isinstance(hv.list_domains(), list)


def test_ensure_changes_no_configuration(system_libvirt, tmp_path):
    # the daemon is checked and started, never reconfigured: a host not set up is told to run install.sh
    conf = tmp_path / "qemu.conf"
    conf.write_text('user = "qemu"\n')
    with pytest.raises(HostNotSetUp, match="scripts/install.sh") as e:
        hvmod.ensure_system_libvirtd(tls_cert_dir="/nonexistent/tls", qemu_conf=str(conf))
    assert "nbd_tls_x509_cert_dir" in str(e.value)
    assert conf.read_text() == 'user = "qemu"\n'
    before = open("/run/libvirtd.pid").read().strip()
    hvmod.ensure_system_libvirtd()
    assert open("/run/libvirtd.pid").read().strip() == before


def test_default_vm_provision_is_visible_to_a_new_process(tiny_template, system_libvirt, tmp_path):
    # no --connect, no COPPICE_CONNECT: the VM is defined in qemu:///system, not in a process's test driver
    import subprocess
    import sys
    import uuid

    pool = str(tmp_path / "pool")
    env = {k: v for k, v in os.environ.items() if k not in ("COPPICE_CONNECT", "COPPICE_URL", "COPPICE_NBD")}
    env["COPPICE_POOL"] = pool

    def cli(*a):
        r = subprocess.run(
            [sys.executable, "-m", "coppice.cli.main", *a], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, (a, r.stdout, r.stderr)
        return r.stdout

    cli("pool", "create", pool)
    t = tiny_template
    cli("template", "import", "tiny", "--image", t.disk_image, "--kernel", t.kernel, "--initrd", t.initrd)
    stem = f"dflt{uuid.uuid4().hex[:6]}"
    try:
        out = cli("vm", "provision", "--template", "tiny", "--count", "1", "--name", stem + "{n}")
        assert "1 of 1 VMs provisioned" in out, out
        r = subprocess.run(
            ["virsh", "-c", "qemu:///system", "domstate", f"{stem}1"], capture_output=True, text=True
        )
        assert r.returncode == 0 and r.stdout.strip() == "shut off", r.stdout + r.stderr
        show = json.loads(cli("vm", "show", "--json", f"{stem}1"))
        assert show["uri"] == "qemu:///system" and show["state"] == "shutoff", show
    finally:
        system_libvirt.remove(f"{stem}1")
