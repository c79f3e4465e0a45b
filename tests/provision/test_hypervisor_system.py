"""The system libvirt daemon started by hand: qemu.conf block, idempotence, real QEMU driver."""

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
from coppice.provision.errors import DomainExists, HypervisorError


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
