"""The libvirt wrapper against libvirt's built-in test:///default driver (no daemon)."""

import uuid

import pytest

from coppice.provision.domain_xml import (
    DirectBoot,
    Disk,
    DomainSpec,
    FileSource,
    NbdSource,
    render_domain_xml,
)
from coppice.provision.errors import DomainExists, DomainNotFound, HypervisorError, LibvirtUnavailable
from coppice.provision.hypervisor import TEST_URI, Hypervisor


@pytest.fixture
def hv():
    h = Hypervisor.open(TEST_URI)
    yield h
    h.close()


def xml(name, **kw):
    return render_domain_xml(
        DomainSpec(
            name=name,
            domain_type="test",
            boot=DirectBoot("/k", "/i", "console=ttyS0"),
            disks=[
                Disk("vda", NbdSource("root", port=10809)),
                Disk("sda", FileSource("/seed.iso"), device="cdrom", bus="scsi", readonly=True),
            ],
            **kw,
        )
    )


def test_define_start_destroy_undefine(hv):
    # the full life cycle, with states as the wrapper names them
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert not hv.exists(name)
    assert hv.define(xml(name)) == name
    assert hv.exists(name) and name in hv.list_domains()
    assert hv.state(name) == "shutoff"
    hv.start(name)
    info = hv.lookup(name)
    assert info.state == "running" and info.id is not None and info.persistent
    assert name in hv.list_domains(active_only=True)
    hv.destroy(name)
    hv.destroy(name)  # already off: fine
    assert hv.wait_for_shutoff(name, 5) < 5
    hv.undefine(name)
    assert not hv.exists(name)


def test_define_refuses_existing_name(hv):
    # a second definition with the same name is refused, not silently merged
    name = f"t-{uuid.uuid4().hex[:8]}"
    hv.define(xml(name))
    try:
        with pytest.raises(DomainExists, match=name):
            hv.define(xml(name))
        hv.define(xml(name, memory_mib=512), replace=True)
    finally:
        hv.remove(name)


def test_xml_round_trip_keeps_nbd_disks(hv):
    # what libvirt stores keeps our NBD source and metadata
    name = f"t-{uuid.uuid4().hex[:8]}"
    hv.define(xml(name, metadata={"template": "tiny"}))
    try:
        out = hv.xml(name)
        assert 'protocol="nbd"' in out or "protocol='nbd'" in out
        assert "coppice.dev/xmlns" in out and "tiny" in out
    finally:
        hv.remove(name)


def test_missing_domain_errors(hv):
    # every per-domain call on an unknown name says which domain and how to list them
    for call in (hv.start, hv.destroy, hv.undefine, hv.state, hv.lookup, hv.xml):
        with pytest.raises(DomainNotFound, match="nope-xyz"):
            call("nope-xyz")
    assert hv.remove("nope-xyz") is False
    assert hv.wait_for_shutoff("nope-xyz", 1) < 1  # gone counts as off


def test_timeout_on_running_domain(hv):
    from coppice.provision.errors import DomainTimeout

    with pytest.raises(DomainTimeout, match="did not shut off"):
        hv.wait_for_shutoff("test", 0.3)  # the driver's built-in domain runs forever


def test_bad_xml_is_a_hypervisor_error(hv):
    with pytest.raises(HypervisorError):
        hv.define("<domain type='test'><name>x</name></domain>")


def test_unreachable_uri():
    with pytest.raises(LibvirtUnavailable):
        Hypervisor.open("qemu+unix:///system?socket=/nonexistent/sock")
