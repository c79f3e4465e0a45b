"""Domain XML: rendered, parsed back, rewritten for a clone (pure, no libvirt)."""

import random
import xml.etree.ElementTree as ET

import pytest

from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    Interface,
    NbdSource,
    clone_domain_xml,
    parse_domain_xml,
    random_mac,
    render_domain_xml,
    rewrite_domain_xml,
)
from coppice.provision.errors import BadDomainXML


def spec(**kw):
    base = dict(
        name="web001",
        uuid="0b5c1c2e-3f51-4a8e-9c5d-2a3e4f5a6b7c",
        memory_mib=256,
        vcpus=1,
        boot=DirectBoot("/k/vmlinuz", "/k/initrd.img", "console=ttyS0 coppice.root=vda"),
        disks=[
            Disk("vda", NbdSource("/vol/ds1/web001", port=10809)),
            Disk(
                "sda",
                NbdSource("/vol/ds1/web001.seed", port=10809),
                device="cdrom",
                bus="scsi",
                readonly=True,
            ),
        ],
        interfaces=[Interface("52:54:00:12:34:56")],
        serial_log="/var/log/coppice/web001.log",
        metadata={"template": "tiny", "clone": "ds1_web001"},
    )
    base.update(kw)
    return DomainSpec(**base)


def test_render_tcg_direct_boot():
    # TCG, ACPI, direct kernel boot, serial to a file, power-off destroys
    root = ET.fromstring(render_domain_xml(spec()))
    assert root.get("type") == "qemu"
    assert root.find("features/acpi") is not None
    assert root.findtext("os/kernel") == "/k/vmlinuz"
    assert root.findtext("os/initrd") == "/k/initrd.img"
    assert root.findtext("os/cmdline") == "console=ttyS0 coppice.root=vda"
    assert root.findtext("on_poweroff") == "destroy"
    assert root.find("devices/serial[@type='file']/source").get("path") == "/var/log/coppice/web001.log"
    assert root.find("memory").text == "256" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("uuid") == "0b5c1c2e-3f51-4a8e-9c5d-2a3e4f5a6b7c"
    assert root.find("devices/interface/mac").get("address") == "52:54:00:12:34:56"


def test_render_nbd_tcp_disk():
    # an NBD disk over TCP: type network, protocol nbd, export name, host and port
    root = ET.fromstring(render_domain_xml(spec()))
    d = next(x for x in root.iter("disk") if x.find("target").get("dev") == "vda")
    assert d.get("type") == "network" and d.get("device") == "disk"
    src = d.find("source")
    assert src.get("protocol") == "nbd" and src.get("name") == "/vol/ds1/web001"
    assert src.get("tls") is None
    assert src.find("host").attrib == {"name": "127.0.0.1", "port": "10809"}
    assert d.find("target").get("bus") == "virtio"
    assert d.find("driver").get("type") == "raw"


def test_render_unix_socket_and_tls():
    # the Unix-socket transport and TLS are attributes of the same <source>
    s = spec(disks=[Disk("vda", NbdSource("root", socket="/run/coppice/nbd.sock", tls=True))])
    src = ET.fromstring(render_domain_xml(s)).find("devices/disk/source")
    assert src.get("tls") == "yes"
    assert src.find("host").attrib == {"transport": "unix", "socket": "/run/coppice/nbd.sock"}


def test_render_seed_as_file_and_scsi_controller():
    # a seed as a file cdrom on SCSI brings a virtio-scsi controller; a virtio-only VM has none
    s = spec(
        disks=[
            Disk("vda", NbdSource("root")),
            Disk("sda", FileSource("/var/lib/coppice/seed.iso"), device="cdrom", bus="scsi", readonly=True),
        ]
    )
    root = ET.fromstring(render_domain_xml(s))
    d = root.find("devices/disk[@device='cdrom']")
    assert d.get("type") == "file" and d.find("source").get("file") == "/var/lib/coppice/seed.iso"
    assert d.find("readonly") is not None
    assert root.find("devices/controller[@type='scsi']").get("model") == "virtio-scsi"
    root2 = ET.fromstring(render_domain_xml(spec(disks=[Disk("vda", NbdSource("root"))])))
    assert root2.find("devices/controller[@type='scsi']") is None


def test_parse_round_trip():
    # what render writes, parse reads back unchanged (both transports, metadata included)
    s = spec(
        disks=[
            Disk("vda", NbdSource("root", port=10810)),
            Disk("vdb", NbdSource("seed", socket="/run/s.sock", tls=True), readonly=True),
            Disk("sda", FileSource("/x/seed.iso"), device="cdrom", bus="scsi", readonly=True),
        ]
    )
    assert parse_domain_xml(render_domain_xml(s)) == s


def test_clone_gets_new_identity_and_disks():
    # a clone: new name, new UUID, new MAC; disks repointed; everything else kept
    old = render_domain_xml(spec())
    new = clone_domain_xml(
        old,
        name="web002",
        disks={"vda": NbdSource("/vol/ds1_clone/web001", host="10.1.1.1", port=10809)},
        serial_log="/var/log/coppice/web002.log",
    )
    a, b = parse_domain_xml(old), parse_domain_xml(new)
    assert b.name == "web002"
    assert b.uuid != a.uuid
    assert b.interfaces[0].mac != a.interfaces[0].mac and b.interfaces[0].mac.startswith("52:54:00:")
    assert b.disks[0].source == NbdSource("/vol/ds1_clone/web001", host="10.1.1.1", port=10809)
    assert b.disks[1] == a.disks[1]  # untouched
    assert b.serial_log == "/var/log/coppice/web002.log"
    assert (b.boot, b.memory_mib, b.metadata) == (a.boot, a.memory_mib, a.metadata)


def test_rewrite_with_function_and_nbd_to_file():
    # a function may repoint every disk (here: move all exports to a new volume, seed to a file)
    def move(disk):
        if disk.device == "cdrom":
            return FileSource("/seeds/web001.iso")
        return NbdSource(disk.source.export.replace("/vol/ds1/", "/vol/ds2/"), port=10900)

    new = parse_domain_xml(rewrite_domain_xml(render_domain_xml(spec()), disks=move))
    assert new.disks[0].source == NbdSource("/vol/ds2/web001", port=10900)
    assert new.disks[1].source == FileSource("/seeds/web001.iso")
    root = ET.fromstring(rewrite_domain_xml(render_domain_xml(spec()), disks=move))
    assert root.find("devices/disk[@device='cdrom']").get("type") == "file"


def test_rewrite_keeps_foreign_elements_and_drops_runtime_state():
    # elements Coppice does not model survive; id=, aliases and vnet targets do not
    live = """<domain type='qemu' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
      <name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
      <memory unit='KiB'>262144</memory><vcpu>2</vcpu>
      <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
      <clock offset='utc'/>
      <devices>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
          <source file='/old/vm1.qcow2'/><target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
        <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/>
          <target dev='vnet3'/><model type='virtio'/><alias name='net0'/></interface>
        <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
      </devices>
      <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>
    </domain>"""
    out = rewrite_domain_xml(
        live,
        name="vm1-clone",
        uuid="new",
        macs=["52:54:00:00:00:01"],
        disks={"vda": NbdSource("vm1-clone-root")},
    )
    root = ET.fromstring(out)
    assert root.get("id") is None
    assert not list(root.iter("alias"))
    assert root.find("devices/interface/target") is None
    assert root.find("devices/interface/mac").get("address") == "52:54:00:00:00:01"
    assert root.find("clock").get("offset") == "utc"
    assert root.find("devices/rng") is not None
    assert "qemu:commandline" in out and "ns0" not in out
    p = parse_domain_xml(out)
    assert p.memory_mib == 256 and p.vcpus == 2
    assert p.disks[0].source == NbdSource("vm1-clone-root") and p.disks[0].format == "qcow2"


def test_metadata_replaced():
    # the Coppice metadata block is replaced as a whole, other metadata kept
    x = render_domain_xml(spec()).replace("<metadata>", "<metadata><other xmlns='urn:x'>keep</other>")
    out = rewrite_domain_xml(x, metadata={"template": "t2"})
    assert parse_domain_xml(out).metadata == {"template": "t2"}
    assert "keep" in out


@pytest.mark.parametrize(
    "bad, why",
    [
        (dict(name="a/b"), "name"),
        (dict(name=""), "name"),
        (dict(uuid="not-a-uuid"), "uuid"),
        (dict(memory_mib=1), "memory"),
        (dict(interfaces=[Interface("01:00:5e:00:00:01")]), "MAC"),
        (dict(disks=[Disk("vda", NbdSource("x")), Disk("vda", NbdSource("y"))]), "target"),
        (dict(disks=[Disk("sda", FileSource("/s.iso"), device="cdrom", bus="virtio")]), "cdrom"),
        (dict(disks=[Disk("sda", FileSource("/s.iso"), bus="sata")]), "SATA"),
        (dict(disks=[Disk("vda", FileSource("relative.raw"))]), "absolute"),
        (dict(disks=[Disk("vda", NbdSource(""))]), "export"),
        (dict(serial_log="log.txt"), "absolute"),
    ],
)
def test_bad_specs_refused(bad, why):
    # each mistake is refused with a message naming it
    with pytest.raises(BadDomainXML, match=why):
        render_domain_xml(spec(**bad))


def test_rewrite_unknown_target_and_bad_xml():
    x = render_domain_xml(spec())
    with pytest.raises(BadDomainXML, match="no disk with target vdz"):
        rewrite_domain_xml(x, disks={"vdz": NbdSource("x")})
    with pytest.raises(BadDomainXML, match="well-formed"):
        parse_domain_xml("<domain>")
    with pytest.raises(BadDomainXML, match="<pool>"):
        parse_domain_xml("<pool/>")
    with pytest.raises(BadDomainXML, match="2 MACs"):
        rewrite_domain_xml(x, macs=["52:54:00:00:00:01", "52:54:00:00:00:02"])


def test_random_mac_locally_administered():
    rng = random.Random(1)
    macs = {random_mac(rng) for _ in range(200)}
    assert all(m.startswith("52:54:00:") for m in macs) and len(macs) > 190
