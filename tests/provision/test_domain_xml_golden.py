"""Domain XML byte for byte against golden files: what render, rewrite and the
provisioner's domain_xml_for write for fixed inputs, and what parse reads
back. A change to the XML shows as a diff here; regenerate the files on
purpose with COPPICE_REGENERATE_GOLDEN=1 and review the diff."""

import json
import os
import pathlib

import pytest

from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    Interface,
    NbdSource,
    RbdSource,
    parse_domain_xml,
    render_domain_xml,
    rewrite_domain_xml,
)
from coppice.provision.records import RbdTarget, Target
from coppice.provision.steps import domain_xml_for

GOLDEN = pathlib.Path(__file__).parent / "golden"
REGENERATE = os.environ.get("COPPICE_REGENERATE_GOLDEN") == "1"

FULL = DomainSpec(
    name="web001",
    uuid="0b5c1c2e-3f51-4a8e-9c5d-2a3e4f5a6b7c",
    memory_mib=512,
    vcpus=2,
    boot=DirectBoot("/k/vmlinuz", "/k/initrd.img", "console=ttyS0 coppice.root=vda"),
    disks=[
        Disk("vda", NbdSource("/vol/ds1/vm0.disk0", host="192.0.2.1", port=10809)),
        Disk("vdb", NbdSource("/vol/ds1/vm0.disk1", socket="/run/coppice/nbd.sock", tls=True), serial="D1"),
        Disk("sda", NbdSource("/vol/ds1/vm0.seed"), device="cdrom", bus="scsi", readonly=True),
    ],
    interfaces=[Interface("52:54:00:12:34:56"), Interface("52:54:00:12:34:57", type="bridge", source="br0")],
    serial_log="/var/log/coppice/web001.log",
    metadata={"template": "tiny", "volume": "ds1", "slot": "vm0"},
)
# RBD disks as Nova writes them: monitors, a cephx user whose key a libvirt secret holds
RBD = DomainSpec(
    name="desk001",
    uuid="0b5c1c2e-3f51-4a8e-9c5d-2a3e4f5a6b7d",
    disks=[
        Disk(
            "vda",
            RbdSource(
                "vms",
                "coppice.desk001.vm0.disk0",
                hosts=(("10.0.0.1", 3300), ("mon2.example", None)),
                auth_user="libvirt",
            ),
        ),
        Disk("sda", RbdSource("vms", "coppice.desk001.vm0.seed"), device="cdrom", bus="scsi", readonly=True),
    ],
    interfaces=[Interface("52:54:00:12:34:58")],
)
PLAIN = DomainSpec(
    name="plain",
    uuid="11111111-2222-4333-8444-555555555555",
    memory_mib=128,
    domain_type="kvm",
    machine="q35",
    disks=[Disk("hda", FileSource("/images/plain.qcow2"), bus="ide", format="qcow2")],
    interfaces=[Interface("52:54:00:00:00:09", type="network", source="default", model="e1000")],
    on_reboot="destroy",
)
FOREIGN = """<domain type='qemu' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>262144</memory><vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/old/vmlinuz</kernel><cmdline>quiet</cmdline></os>
  <clock offset='utc'/>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/old/vm1.qcow2'/><target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
    <disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/>
      <target dev='vnet3'/><model type='virtio'/><alias name='net0'/></interface>
    <interface type='user'><model type='virtio'/></interface>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
  <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>
</domain>
"""


def _cases():
    yield "render_full.xml", render_domain_xml(FULL)
    yield "render_plain.xml", render_domain_xml(PLAIN)
    yield "render_rbd.xml", render_domain_xml(RBD)
    yield (
        "rewrite_foreign.xml",
        rewrite_domain_xml(
            FOREIGN,
            name="vm1-clone",
            uuid="0b5c1c2e-3f51-4a8e-9c5d-000000000001",
            macs=["52:54:00:00:00:01", "52:54:00:00:00:02"],
            disks={"vda": NbdSource("/vol/c/vm0.disk0", socket="/run/nbd.sock")},
            serial_log="/var/log/coppice/vm1-clone.log",
            cmdline="console=ttyS0",
            initrd="/new/initrd.img",
            metadata={"template": "t"},
        ),
    )
    yield "rewrite_only_name.xml", rewrite_domain_xml(FOREIGN, name="renamed")
    record = {
        "name": "web-7",
        "uuid": "0b5c1c2e-3f51-4a8e-9c5d-000000000007",
        "mac": "52:54:00:00:00:07",
        "instance_id": "iid-0123456789abcdef",
        "template": "tiny",
        "disks": [{"lun": "vm0.disk0", "target": "vda"}],
        "seed": "vm0.seed",
        "cmdline": None,
    }
    yield (
        "provisioned_vm.xml",
        domain_xml_for(
            None,
            "web_7",
            "vm0",
            record,
            Target(host="127.0.0.1", port=10809, tls=True),
            "/state",
            render_domain_xml(PLAIN),
        ),
    )
    yield (
        "provisioned_vm_rbd.xml",
        domain_xml_for(
            None,
            "web_7",
            "vm0",
            record,
            RbdTarget(pool="rbd", hosts=[["127.0.0.1", 40123]]),
            "/state",
            render_domain_xml(PLAIN),
        ),
    )
    for name, text in (
        ("render_full", render_domain_xml(FULL)),
        ("render_rbd", render_domain_xml(RBD)),
        ("foreign", FOREIGN),
    ):
        spec = parse_domain_xml(text, strict=False)
        yield f"parse_{name}.json", json.dumps(_plain(spec), indent=1, sort_keys=True) + "\n"


def _plain(obj):
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {
            "kind": type(obj).__name__,
            **{f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("name, text", list(_cases()), ids=[n for n, _ in _cases()])
def test_matches_golden_file(name, text):
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with COPPICE_REGENERATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from its golden file (regenerate on purpose only)"


def test_render_parse_render_is_stable():
    # parse reads back every modelled field: render(parse(render(s))) == render(s)
    for spec in (FULL, PLAIN, RBD):
        assert parse_domain_xml(render_domain_xml(spec)) == spec
        assert render_domain_xml(parse_domain_xml(render_domain_xml(spec))) == render_domain_xml(spec)
