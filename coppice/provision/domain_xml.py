"""libvirt domain XML: render a VM definition, read one back, rewrite one.

Contract: pure functions over strings and dataclasses — no libvirt import,
no I/O — so they test without a hypervisor and run on VM definitions read
from a datastore clone before anything is registered.

- ``render_domain_xml(DomainSpec)``: a definition that boots under QEMU TCG
  on these machines (``type='qemu'`` by default, ``<acpi/>`` so that the
  guest's ``poweroff -f`` powers off, direct kernel boot, serial console to
  a file, ``on_poweroff='destroy'``). Disks are NBD network disks (TCP, Unix
  socket, optionally TLS) or files; a virtio-scsi controller is added when a
  disk sits on the SCSI bus.
- ``parse_domain_xml(xml)``: the same fields back as a ``DomainSpec``.
- ``rewrite_domain_xml(xml, ...)`` / ``clone_domain_xml(xml, ...)``: the
  datastore-clone flow. Only what is asked for changes (name, UUID, MACs,
  disk sources, serial log, kernel command line, Coppice metadata); every
  other element — devices we do not model, a foreign definition's
  quirks — is kept as it was. Run-time-only state (``id=``, device aliases,
  interface target devices) is dropped so the result can be defined.

Invalid input raises ``BadDomainXML`` with what to change.
"""

from __future__ import annotations

import dataclasses
import random
import re
import uuid as _uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence

from .errors import BadDomainXML

COPPICE_NS = "https://coppice.dev/xmlns/libvirt/vm/1"
ET.register_namespace("coppice", COPPICE_NS)
# Keep the prefix libvirt uses for QEMU pass-through elements when rewriting.
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TARGET = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")
_BUSES = ("virtio", "scsi", "ide")


@dataclasses.dataclass(frozen=True)
class NbdSource:
    """An NBD export: over TCP (host, port) or a Unix socket, optionally with TLS."""

    export: str
    host: str | None = "127.0.0.1"
    port: int | None = 10809
    socket: str | None = None  # set: Unix socket transport; host and port ignored
    tls: bool = False

    def __post_init__(self) -> None:
        if self.socket is not None:  # one transport only, so equal sources compare equal
            object.__setattr__(self, "host", None)
            object.__setattr__(self, "port", None)


@dataclasses.dataclass(frozen=True)
class FileSource:
    path: str


Source = NbdSource | FileSource


@dataclasses.dataclass(frozen=True)
class Disk:
    target: str  # vda, vdb, sda, hdc
    source: Source
    device: str = "disk"  # disk | cdrom
    bus: str = "virtio"  # virtio | scsi | ide
    readonly: bool = False
    format: str = "raw"
    serial: str | None = None


@dataclasses.dataclass(frozen=True)
class DirectBoot:
    kernel: str
    initrd: str | None = None
    cmdline: str = "console=ttyS0"


@dataclasses.dataclass(frozen=True)
class Interface:
    mac: str
    type: str = "user"  # user (QEMU slirp, needs nothing on the host) | network | bridge
    source: str | None = None  # network name or bridge device
    model: str = "virtio"


@dataclasses.dataclass
class DomainSpec:
    name: str
    uuid: str = dataclasses.field(default_factory=lambda: new_uuid())
    memory_mib: int = 256
    vcpus: int = 1
    domain_type: str = "qemu"  # TCG; 'kvm' where the host has it
    boot: DirectBoot | None = None
    disks: list[Disk] = dataclasses.field(default_factory=list)
    interfaces: list[Interface] = dataclasses.field(default_factory=list)
    serial_log: str | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    machine: str = "pc"
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def new_uuid() -> str:
    return str(_uuid.uuid4())


def random_mac(rng: random.Random | None = None) -> str:
    """A MAC in QEMU's locally administered 52:54:00 range."""
    r = rng or random.SystemRandom()
    return f"52:54:00:{r.randrange(256):02x}:{r.randrange(256):02x}:{r.randrange(256):02x}"


# -- validation ----------------------------------------------------------------


def check_name(name: str) -> None:
    if not name or len(name) > 200 or "/" in name or name.strip() != name or any(ord(c) < 32 for c in name):
        raise BadDomainXML(
            detail=f"domain name {name!r} must be 1 to 200 printable characters, "
            "with no '/' and no leading or trailing space"
        )


def _check_uuid(u: str) -> str:
    try:
        return str(_uuid.UUID(u))
    except (ValueError, AttributeError, TypeError):
        raise BadDomainXML(detail=f"uuid {u!r} is not a UUID (e.g. {new_uuid()})") from None


def _check_mac(mac: str) -> str:
    m = mac.lower()
    if not _MAC.match(m) or int(m[:2], 16) & 1:
        raise BadDomainXML(detail=f"MAC {mac!r} must be a unicast address like 52:54:00:12:34:56")
    return m


def _check_disk(d: Disk) -> None:
    if not _TARGET.match(d.target):
        raise BadDomainXML(detail=f"disk target {d.target!r} must look like vda, sdb or hdc")
    if d.bus not in _BUSES:
        raise BadDomainXML(
            detail=f"disk {d.target}: bus {d.bus!r} is not one of {', '.join(_BUSES)} "
            "(SATA needs AHCI, which the cloud kernel lacks)"
        )
    if d.device not in ("disk", "cdrom"):
        raise BadDomainXML(detail=f"disk {d.target}: device {d.device!r} must be disk or cdrom")
    if d.device == "cdrom" and d.bus == "virtio":
        raise BadDomainXML(
            detail=f"disk {d.target}: QEMU has no virtio cdrom; put the cdrom on "
            "bus 'scsi' (virtio-scsi) or 'ide', or make it a virtio disk"
        )
    if isinstance(d.source, NbdSource):
        s = d.source
        if not s.export:
            raise BadDomainXML(detail=f"disk {d.target}: NBD export name is empty")
        if s.socket is None and (not s.host or not s.port):
            raise BadDomainXML(detail=f"disk {d.target}: NBD over TCP needs host and port")
    elif isinstance(d.source, FileSource):
        if not d.source.path.startswith("/"):
            raise BadDomainXML(detail=f"disk {d.target}: file path {d.source.path!r} must be absolute")
    else:
        raise BadDomainXML(detail=f"disk {d.target}: unknown source {d.source!r}")


# -- render -------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = text
    return e


def _source_element(disk_el: ET.Element, src: Source) -> None:
    """Set disk_el's type= and (re)create its <source> for src, in place."""
    old = disk_el.find("source")
    idx = list(disk_el).index(old) if old is not None else 1 if disk_el.find("driver") is not None else 0
    if old is not None:
        disk_el.remove(old)
    if isinstance(src, NbdSource):
        disk_el.set("type", "network")
        s = ET.Element("source", {"protocol": "nbd", "name": src.export})
        if src.tls:
            s.set("tls", "yes")
        if src.socket is not None:
            ET.SubElement(s, "host", {"transport": "unix", "socket": src.socket})
        else:
            ET.SubElement(s, "host", {"name": str(src.host), "port": str(src.port)})
    else:
        disk_el.set("type", "file")
        s = ET.Element("source", {"file": src.path})
    disk_el.insert(idx, s)


def _disk_element(devices: ET.Element, d: Disk) -> None:
    _check_disk(d)
    el = _sub(devices, "disk", type="file", device=d.device)
    # Network disks: cache='none' keeps QEMU from holding writes the NBD server has not seen.
    _sub(el, "driver", name="qemu", type=d.format, cache="none" if isinstance(d.source, NbdSource) else None)
    _source_element(el, d.source)
    _sub(el, "target", dev=d.target, bus=d.bus)
    if d.readonly:
        _sub(el, "readonly")
    if d.serial:
        _sub(el, "serial", d.serial)


def _metadata_element(parent: ET.Element, metadata: Mapping[str, str]) -> None:
    md = parent.find("metadata")
    if md is None:
        md = ET.SubElement(parent, "metadata")
    old = md.find(f"{{{COPPICE_NS}}}vm")
    if old is not None:
        md.remove(old)
    vm = ET.SubElement(md, f"{{{COPPICE_NS}}}vm")
    for k, v in metadata.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", k):
            raise BadDomainXML(detail=f"metadata key {k!r} must be lower-case letters, digits, '-' or '_'")
        ET.SubElement(vm, f"{{{COPPICE_NS}}}{k}").text = str(v)


def render_domain_xml(spec: DomainSpec) -> str:
    check_name(spec.name)
    if spec.memory_mib < 16 or spec.vcpus < 1:
        raise BadDomainXML(
            detail=f"domain {spec.name}: needs at least 16 MiB of memory and 1 vCPU "
            f"(got {spec.memory_mib} MiB, {spec.vcpus} vCPUs)"
        )
    if spec.domain_type not in ("qemu", "kvm", "test"):
        raise BadDomainXML(detail=f"domain type {spec.domain_type!r} must be qemu (TCG), kvm or test")
    targets = [d.target for d in spec.disks]
    if len(set(targets)) != len(targets):
        raise BadDomainXML(detail=f"domain {spec.name}: two disks share a target in {targets}")
    dom = ET.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    _sub(dom, "uuid", _check_uuid(spec.uuid))
    if spec.metadata:
        _metadata_element(dom, spec.metadata)
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=spec.machine)
    if spec.boot:
        _sub(os_el, "kernel", spec.boot.kernel)
        if spec.boot.initrd:
            _sub(os_el, "initrd", spec.boot.initrd)
        _sub(os_el, "cmdline", spec.boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")
    feats = _sub(dom, "features")
    _sub(feats, "acpi")  # without it `poweroff -f` only halts and the domain keeps running
    _sub(dom, "on_poweroff", spec.on_poweroff)
    _sub(dom, "on_reboot", spec.on_reboot)
    _sub(dom, "on_crash", spec.on_crash)
    dev = _sub(dom, "devices")
    for d in spec.disks:
        _disk_element(dev, d)
    if any(d.bus == "scsi" for d in spec.disks):
        _sub(dev, "controller", type="scsi", index="0", model="virtio-scsi")
    for i in spec.interfaces:
        _interface_element(dev, i)
    if spec.serial_log:
        if not spec.serial_log.startswith("/"):
            raise BadDomainXML(detail=f"serial log {spec.serial_log!r} must be an absolute path")
        ser = _sub(dev, "serial", type="file")
        _sub(ser, "source", path=spec.serial_log)
        _sub(ser, "target", port="0")
    _sub(dev, "memballoon", model="none")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def _interface_element(devices: ET.Element, i: Interface) -> None:
    if i.type not in ("user", "network", "bridge"):
        raise BadDomainXML(detail=f"interface type {i.type!r} must be user, network or bridge")
    el = _sub(devices, "interface", type=i.type)
    _sub(el, "mac", address=_check_mac(i.mac))
    if i.type == "network":
        _sub(el, "source", network=i.source or "default")
    elif i.type == "bridge":
        if not i.source:
            raise BadDomainXML(detail="a bridge interface needs its bridge device as source")
        _sub(el, "source", bridge=i.source)
    _sub(el, "model", type=i.model)


# -- parse --------------------------------------------------------------------


def _root(xml: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise BadDomainXML(detail=f"not well-formed XML: {e}") from None
    if root.tag != "domain":
        raise BadDomainXML(detail=f"root element is <{root.tag}>, not <domain>")
    return root


def _parse_source(disk_el: ET.Element) -> Source | None:
    src = disk_el.find("source")
    kind = disk_el.get("type")
    if src is None:
        return None
    if kind == "network" and src.get("protocol") == "nbd":
        host = src.find("host")
        tls = src.get("tls") == "yes"
        if host is not None and host.get("transport") == "unix":
            return NbdSource(
                export=src.get("name", ""), host=None, port=None, socket=host.get("socket"), tls=tls
            )
        name = host.get("name") if host is not None else None
        port = host.get("port") if host is not None else None
        return NbdSource(export=src.get("name", ""), host=name, port=int(port) if port else 10809, tls=tls)
    if kind == "file":
        return FileSource(src.get("file", ""))
    if kind == "block":
        return FileSource(src.get("dev", ""))
    return None


def list_disks(xml: str) -> list[Disk]:
    """The disks of a definition that Coppice models (NBD, file, block), in order."""
    return parse_domain_xml(xml, strict=False).disks


def parse_domain_xml(xml: str, *, strict: bool = True) -> DomainSpec:
    """The definition as a DomainSpec; with strict, a disk of an unmodelled kind is an error."""
    root = _root(xml)
    name = root.findtext("name") or ""
    mem = root.find("memory")
    memory_mib = 256
    if mem is not None and mem.text:
        unit = (mem.get("unit") or "KiB").lower()
        scale = {
            "b": 1 / 2**20,
            "bytes": 1 / 2**20,
            "k": 1 / 1024,
            "kib": 1 / 1024,
            "m": 1,
            "mib": 1,
            "g": 1024,
            "gib": 1024,
        }.get(unit, 1 / 1024)
        memory_mib = int(int(mem.text) * scale)
    boot = None
    os_el = root.find("os")
    if os_el is not None and os_el.findtext("kernel"):
        boot = DirectBoot(
            kernel=os_el.findtext("kernel") or "",
            initrd=os_el.findtext("initrd"),
            cmdline=os_el.findtext("cmdline") or "",
        )
    type_el = os_el.find("type") if os_el is not None else None
    disks: list[Disk] = []
    interfaces: list[Interface] = []
    serial_log = None
    devices = root.find("devices")
    for d in devices.findall("disk") if devices is not None else []:
        tgt = d.find("target")
        src = _parse_source(d)
        if src is None:
            if strict:
                raise BadDomainXML(
                    detail=f"disk {tgt.get('dev') if tgt is not None else '?'} of domain "
                    f"{name} has a source Coppice does not model (type={d.get('type')})"
                )
            continue
        drv = d.find("driver")
        disks.append(
            Disk(
                target=tgt.get("dev", "") if tgt is not None else "",
                source=src,
                device=d.get("device", "disk"),
                bus=tgt.get("bus", "virtio") if tgt is not None else "virtio",
                readonly=d.find("readonly") is not None,
                format=(drv.get("type") if drv is not None else None) or "raw",
                serial=d.findtext("serial"),
            )
        )
    for i in devices.findall("interface") if devices is not None else []:
        mac = i.find("mac")
        src = i.find("source")
        model = i.find("model")
        interfaces.append(
            Interface(
                mac=mac.get("address", "") if mac is not None else "",
                type=i.get("type", "user"),
                source=(src.get("network") or src.get("bridge")) if src is not None else None,
                model=model.get("type", "virtio") if model is not None else "virtio",
            )
        )
    for s in devices.findall("serial") if devices is not None else []:
        src = s.find("source")
        if s.get("type") == "file" and src is not None:
            serial_log = src.get("path")
            break
    md: dict[str, str] = {}
    vm = root.find(f"metadata/{{{COPPICE_NS}}}vm")
    if vm is not None:
        for child in vm:
            md[child.tag.split("}", 1)[1]] = child.text or ""
    return DomainSpec(
        name=name,
        uuid=root.findtext("uuid") or "",
        memory_mib=memory_mib,
        vcpus=int(root.findtext("vcpu") or 1),
        domain_type=root.get("type", "qemu"),
        boot=boot,
        disks=disks,
        interfaces=interfaces,
        serial_log=serial_log,
        on_poweroff=root.findtext("on_poweroff") or "destroy",
        on_reboot=root.findtext("on_reboot") or "restart",
        on_crash=root.findtext("on_crash") or "destroy",
        machine=(type_el.get("machine") if type_el is not None else None) or "pc",
        metadata=md,
    )


# -- rewrite ------------------------------------------------------------------

DiskMap = Mapping[str, Source] | Callable[[Disk], "Source | None"]


def rewrite_domain_xml(
    xml: str,
    *,
    name: str | None = None,
    uuid: str | None = None,
    macs: str | Sequence[str] = "keep",
    disks: DiskMap | None = None,
    serial_log: str | None = None,
    cmdline: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """xml with only the named parts changed.

    uuid: a UUID, or "new". macs: "keep", "new" (a fresh random MAC per
    interface) or one MAC per interface, in order. disks: target dev -> new
    source, or a function of the old Disk returning its new source (None:
    leave it). metadata: replaces Coppice's metadata block.
    """
    root = _root(xml)
    root.attrib.pop("id", None)  # a running domain's id, not part of a definition
    for parent in root.iter():
        for child in list(parent):
            if child.tag == "alias":
                parent.remove(child)
    if name is not None:
        check_name(name)
        _set_text(root, "name", name, 0)
    if uuid is not None:
        _set_text(root, "uuid", new_uuid() if uuid == "new" else _check_uuid(uuid), 1)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    ifaces = devices.findall("interface")
    for i in ifaces:
        t = i.find("target")
        if t is not None:
            i.remove(t)  # vnetN belongs to the running domain
    if macs != "keep":
        if macs == "new":
            new = [random_mac() for _ in ifaces]
        elif isinstance(macs, str):
            raise BadDomainXML(detail=f"macs must be 'keep', 'new' or a list of MACs, not {macs!r}")
        else:
            new = [_check_mac(m) for m in macs]
            if len(new) != len(ifaces):
                raise BadDomainXML(detail=f"{len(new)} MACs given for {len(ifaces)} interfaces")
        for i, mac in zip(ifaces, new, strict=False):
            m = i.find("mac")
            if m is None:
                m = ET.Element("mac")
                i.insert(0, m)
            m.set("address", mac)
    if disks is not None:
        _repoint_disks(devices, disks)
    if serial_log is not None:
        ser = devices.find("serial[@type='file']")
        if ser is None:
            ser = ET.SubElement(devices, "serial", type="file")
            ET.SubElement(ser, "target", port="0")
        src = ser.find("source")
        if src is None:
            src = ET.Element("source")
            ser.insert(0, src)
        src.set("path", serial_log)
    if cmdline is not None or kernel is not None or initrd is not None:
        os_el = root.find("os")
        if os_el is None:
            raise BadDomainXML(detail="the definition has no <os> element to set a kernel in")
        for tag, val in (("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline)):
            if val is not None:
                e = os_el.find(tag)
                if e is None:
                    e = ET.SubElement(os_el, tag)
                e.text = val
    if metadata is not None:
        _metadata_element(root, metadata)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _set_text(root: ET.Element, tag: str, text: str, pos: int) -> None:
    e = root.find(tag)
    if e is None:
        e = ET.Element(tag)
        root.insert(pos, e)
    e.text = text


def _repoint_disks(devices: ET.Element, disks: DiskMap) -> None:
    by_target = {}
    for d in devices.findall("disk"):
        t = d.find("target")
        if t is not None:
            by_target[t.get("dev")] = d
    if callable(disks):
        for tgt, el in by_target.items():
            src = _parse_source(el)
            if src is None:
                continue
            t = el.find("target")
            drv = el.find("driver")
            old = Disk(
                target=tgt,
                source=src,
                device=el.get("device", "disk"),
                bus=t.get("bus", "virtio") if t is not None else "virtio",
                readonly=el.find("readonly") is not None,
                format=(drv.get("type") if drv is not None else None) or "raw",
                serial=el.findtext("serial"),
            )
            new = disks(old)
            if new is not None:
                _check_disk(dataclasses.replace(old, source=new))
                _source_element(el, new)
        return
    unknown = set(disks) - set(by_target)
    if unknown:
        raise BadDomainXML(
            detail=f"no disk with target {', '.join(sorted(unknown))}; the definition "
            f"has {', '.join(sorted(by_target)) or 'no disks'}"
        )
    for tgt, src in disks.items():
        _source_element(by_target[tgt], src)


def clone_domain_xml(
    xml: str,
    *,
    name: str,
    disks: DiskMap | None = None,
    serial_log: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """A definition for a clone: new name, new UUID, a new MAC per interface, disks repointed."""
    return rewrite_domain_xml(
        xml, name=name, uuid="new", macs="new", disks=disks, serial_log=serial_log, metadata=metadata
    )
