"""libvirt domain XML: render a VM definition, read one back, rewrite one.

Contract: pure functions over strings and dataclasses — no libvirt import,
no I/O — so they test without a hypervisor and run on VM definitions read
from a datastore clone before anything is registered.

- ``render_domain_xml(DomainSpec)``: a definition that boots under QEMU TCG
  on these machines (``type='qemu'`` by default, ``<acpi/>`` so that the
  guest's ``poweroff -f`` powers off, direct kernel boot, serial console to
  a file, ``on_poweroff='destroy'``). Disks are NBD network disks (TCP, Unix
  socket, optionally TLS), RBD network disks (QEMU's librbd straight to
  Ceph: pool/image, the monitors as hosts, a cephx user whose key a
  libvirt secret holds; nothing in it names the Coppice host) or files; a
  virtio-scsi controller is added when a disk sits on the SCSI bus.
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
class RbdSource:
    """An RBD image QEMU opens itself with librbd, as OpenStack Nova's disks:
    ``pool/image`` (libvirt has no RBD namespace), the monitors as (host,
    port) (port None: Ceph's default), and for a cluster with cephx the user
    whose key the libvirt secret of usage ``secret_usage`` holds (default
    ``client.USER secret``; define it on every host that runs the VM)."""

    pool: str
    image: str
    hosts: tuple[tuple[str, int | None], ...] = ()
    auth_user: str | None = None
    secret_usage: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", tuple((h, p) for h, p in self.hosts))
        if self.auth_user and not self.secret_usage:
            object.__setattr__(self, "secret_usage", f"client.{self.auth_user} secret")


@dataclasses.dataclass(frozen=True)
class FileSource:
    path: str


Source = NbdSource | RbdSource | FileSource


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
    elif isinstance(d.source, RbdSource):
        s = d.source
        for what, v in (("pool", s.pool), ("image", s.image)):
            if not v or any(c in v for c in "/@ ") or any(ord(c) < 32 for c in v):
                raise BadDomainXML(
                    detail=f"disk {d.target}: RBD {what} {v!r} must be non-empty, without '/', '@' or spaces"
                )
        for h, port in s.hosts:
            if not h or (port is not None and not 0 < int(port) < 65536):
                raise BadDomainXML(detail=f"disk {d.target}: RBD monitor {h!r}:{port} is not HOST[:PORT]")
    elif isinstance(d.source, FileSource):
        if not d.source.path.startswith("/"):
            raise BadDomainXML(detail=f"disk {d.target}: file path {d.source.path!r} must be absolute")
    else:
        raise BadDomainXML(detail=f"disk {d.target}: unknown source {d.source!r}")


# -- the parts of a definition ---------------------------------------------------
# Each part of a definition is spelled once: its element path, how it is read
# (``_read_*``) and how it is written (``_put_*``: find or create the element,
# change nothing else). render writes every part into an empty <domain>,
# rewrite writes the parts it is asked to change into a definition it keeps
# otherwise, parse reads every part.

_SCALE_TO_MIB = {
    "b": 1 / 2**20,
    "bytes": 1 / 2**20,
    "k": 1 / 1024,
    "kib": 1 / 1024,
    "m": 1,
    "mib": 1,
    "g": 1024,
    "gib": 1024,
}
_LIFECYCLE = ("on_poweroff", "on_reboot", "on_crash")
_BOOT_PARTS = ("kernel", "initrd", "cmdline")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = text
    return e


def _child(parent: ET.Element, tag: str, pos: int | None = None) -> ET.Element:
    """parent's first <tag>, made (at ``pos``, else at the end) when missing."""
    e = parent.find(tag)
    if e is None:
        e = ET.Element(tag)
        parent.insert(len(parent) if pos is None else pos, e)
    return e


def _put_text(parent: ET.Element, tag: str, text: str, pos: int | None = None) -> ET.Element:
    e = _child(parent, tag, pos)
    e.text = text
    return e


# memory (<memory unit=...>)
def _read_memory(root: ET.Element) -> int:
    mem = root.find("memory")
    if mem is None or not mem.text:
        return 256
    return int(int(mem.text) * _SCALE_TO_MIB.get((mem.get("unit") or "KiB").lower(), 1 / 1024))


def _put_memory(root: ET.Element, mib: int) -> None:
    _put_text(root, "memory", str(mib)).set("unit", "MiB")


# <os>: machine type and direct kernel boot
def _read_os(root: ET.Element) -> tuple[str, DirectBoot | None]:
    os_el = root.find("os")
    type_el = os_el.find("type") if os_el is not None else None
    machine = (type_el.get("machine") if type_el is not None else None) or "pc"
    if os_el is None or not os_el.findtext("kernel"):
        return machine, None
    return machine, DirectBoot(
        kernel=os_el.findtext("kernel") or "",
        initrd=os_el.findtext("initrd"),
        cmdline=os_el.findtext("cmdline") or "",
    )


def _put_boot(os_el: ET.Element, **parts: str | None) -> None:
    """Set the given parts of direct kernel boot (kernel, initrd, cmdline); None: leave it."""
    for tag in _BOOT_PARTS:
        if parts.get(tag) is not None:
            _put_text(os_el, tag, parts[tag])


# a disk's <source> and the disk as Coppice models it
def _read_source(disk_el: ET.Element) -> Source | None:
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
    if kind == "network" and src.get("protocol") == "rbd":
        pool, _, image = src.get("name", "").partition("/")
        auth = src.find("auth")
        if auth is None:
            auth = disk_el.find("auth")  # libvirt's older place for it
        secret = auth.find("secret") if auth is not None else None
        return RbdSource(
            pool=pool,
            image=image,
            hosts=tuple(
                (h.get("name", ""), int(h.get("port")) if h.get("port") else None)
                for h in src.findall("host")
            ),
            auth_user=auth.get("username") if auth is not None else None,
            secret_usage=secret.get("usage") if secret is not None else None,
        )
    if kind == "file":
        return FileSource(src.get("file", ""))
    if kind == "block":
        return FileSource(src.get("dev", ""))
    return None


def _put_source(disk_el: ET.Element, src: Source) -> None:
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
    elif isinstance(src, RbdSource):
        disk_el.set("type", "network")
        s = ET.Element("source", {"protocol": "rbd", "name": f"{src.pool}/{src.image}"})
        for h, port in src.hosts:
            ET.SubElement(s, "host", {"name": h} | ({"port": str(port)} if port is not None else {}))
        if src.auth_user:
            auth = ET.SubElement(s, "auth", {"username": src.auth_user})
            ET.SubElement(auth, "secret", {"type": "ceph", "usage": str(src.secret_usage)})
        old_auth = disk_el.find("auth")
        if old_auth is not None:
            disk_el.remove(old_auth)
    else:
        disk_el.set("type", "file")
        s = ET.Element("source", {"file": src.path})
    disk_el.insert(idx, s)


def _read_disk(el: ET.Element) -> Disk | None:
    """The disk as Coppice models it; None for a source it does not model."""
    src = _read_source(el)
    if src is None:
        return None
    tgt = el.find("target")
    drv = el.find("driver")
    return Disk(
        target=tgt.get("dev", "") if tgt is not None else "",
        source=src,
        device=el.get("device", "disk"),
        bus=tgt.get("bus", "virtio") if tgt is not None else "virtio",
        readonly=el.find("readonly") is not None,
        format=(drv.get("type") if drv is not None else None) or "raw",
        serial=el.findtext("serial"),
    )


def _put_disk(devices: ET.Element, d: Disk) -> None:
    _check_disk(d)
    el = _sub(devices, "disk", type="file", device=d.device)
    # NBD: cache='none' keeps QEMU from holding writes the NBD server has not seen.
    # RBD: 'writeback' is librbd's own cache, which a guest's flush empties into
    # Ceph (what Ceph's and Nova's docs use).
    cache = {NbdSource: "none", RbdSource: "writeback"}.get(type(d.source))
    _sub(el, "driver", name="qemu", type=d.format, cache=cache)
    _put_source(el, d.source)
    _sub(el, "target", dev=d.target, bus=d.bus)
    if d.readonly:
        _sub(el, "readonly")
    if d.serial:
        _sub(el, "serial", d.serial)


# network interfaces
def _read_interface(el: ET.Element) -> Interface:
    mac = el.find("mac")
    src = el.find("source")
    model = el.find("model")
    return Interface(
        mac=mac.get("address", "") if mac is not None else "",
        type=el.get("type", "user"),
        source=(src.get("network") or src.get("bridge")) if src is not None else None,
        model=model.get("type", "virtio") if model is not None else "virtio",
    )


def _put_mac(iface_el: ET.Element, mac: str) -> None:
    _child(iface_el, "mac", 0).set("address", _check_mac(mac))


def _put_interface(devices: ET.Element, i: Interface) -> None:
    if i.type not in ("user", "network", "bridge"):
        raise BadDomainXML(detail=f"interface type {i.type!r} must be user, network or bridge")
    el = _sub(devices, "interface", type=i.type)
    _put_mac(el, i.mac)
    if i.type == "network":
        _sub(el, "source", network=i.source or "default")
    elif i.type == "bridge":
        if not i.source:
            raise BadDomainXML(detail="a bridge interface needs its bridge device as source")
        _sub(el, "source", bridge=i.source)
    _sub(el, "model", type=i.model)


# the serial console's log file
def _read_serial_log(devices: ET.Element | None) -> str | None:
    for s in devices.findall("serial") if devices is not None else []:
        src = s.find("source")
        if s.get("type") == "file" and src is not None:
            return src.get("path")
    return None


def _put_serial_log(devices: ET.Element, path: str) -> None:
    if not path.startswith("/"):
        raise BadDomainXML(detail=f"serial log {path!r} must be an absolute path")
    ser = devices.find("serial[@type='file']")
    if ser is None:
        ser = _sub(devices, "serial", type="file")
        _sub(ser, "target", port="0")
    _child(ser, "source", 0).set("path", path)


# Coppice's own metadata (<metadata><coppice:vm>)
def _read_metadata(root: ET.Element) -> dict[str, str]:
    vm = root.find(f"metadata/{{{COPPICE_NS}}}vm")
    return {child.tag.split("}", 1)[1]: child.text or "" for child in vm} if vm is not None else {}


def _put_metadata(root: ET.Element, metadata: Mapping[str, str]) -> None:
    md = _child(root, "metadata")
    old = md.find(f"{{{COPPICE_NS}}}vm")
    if old is not None:
        md.remove(old)
    vm = ET.SubElement(md, f"{{{COPPICE_NS}}}vm")
    for k, v in metadata.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", k):
            raise BadDomainXML(detail=f"metadata key {k!r} must be lower-case letters, digits, '-' or '_'")
        ET.SubElement(vm, f"{{{COPPICE_NS}}}{k}").text = str(v)


# -- render -------------------------------------------------------------------


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
    _put_text(dom, "name", spec.name)
    _put_text(dom, "uuid", _check_uuid(spec.uuid))
    if spec.metadata:
        _put_metadata(dom, spec.metadata)
    _put_memory(dom, spec.memory_mib)
    _put_text(dom, "vcpu", str(spec.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=spec.machine)
    if spec.boot:
        _put_boot(os_el, kernel=spec.boot.kernel, initrd=spec.boot.initrd, cmdline=spec.boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")
    feats = _sub(dom, "features")
    _sub(feats, "acpi")  # without it `poweroff -f` only halts and the domain keeps running
    for tag in _LIFECYCLE:
        _put_text(dom, tag, getattr(spec, tag))
    dev = _sub(dom, "devices")
    for d in spec.disks:
        _put_disk(dev, d)
    if any(d.bus == "scsi" for d in spec.disks):
        _sub(dev, "controller", type="scsi", index="0", model="virtio-scsi")
    for i in spec.interfaces:
        _put_interface(dev, i)
    if spec.serial_log:
        _put_serial_log(dev, spec.serial_log)
    _sub(dev, "memballoon", model="none")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


# -- parse --------------------------------------------------------------------


def _root(xml: str) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise BadDomainXML(detail=f"not well-formed XML: {e}") from None
    if root.tag != "domain":
        raise BadDomainXML(detail=f"root element is <{root.tag}>, not <domain>")
    return root


def list_disks(xml: str) -> list[Disk]:
    """The disks of a definition that Coppice models (NBD, RBD, file, block), in order."""
    return parse_domain_xml(xml, strict=False).disks


def parse_domain_xml(xml: str, *, strict: bool = True) -> DomainSpec:
    """The definition as a DomainSpec; with strict, a disk of an unmodelled kind is an error."""
    root = _root(xml)
    name = root.findtext("name") or ""
    machine, boot = _read_os(root)
    devices = root.find("devices")
    disks: list[Disk] = []
    for el in devices.findall("disk") if devices is not None else []:
        d = _read_disk(el)
        if d is None:
            if strict:
                tgt = el.find("target")
                raise BadDomainXML(
                    detail=f"disk {tgt.get('dev') if tgt is not None else '?'} of domain "
                    f"{name} has a source Coppice does not model (type={el.get('type')})"
                )
            continue
        disks.append(d)
    return DomainSpec(
        name=name,
        uuid=root.findtext("uuid") or "",
        memory_mib=_read_memory(root),
        vcpus=int(root.findtext("vcpu") or 1),
        domain_type=root.get("type", "qemu"),
        boot=boot,
        disks=disks,
        interfaces=[
            _read_interface(i) for i in (devices.findall("interface") if devices is not None else [])
        ],
        serial_log=_read_serial_log(devices),
        on_poweroff=root.findtext("on_poweroff") or "destroy",
        on_reboot=root.findtext("on_reboot") or "restart",
        on_crash=root.findtext("on_crash") or "destroy",
        machine=machine,
        metadata=_read_metadata(root),
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
        _put_text(root, "name", name, 0)
    if uuid is not None:
        _put_text(root, "uuid", new_uuid() if uuid == "new" else _check_uuid(uuid), 1)
    devices = _child(root, "devices")
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
            new = list(macs)
            if len(new) != len(ifaces):
                raise BadDomainXML(detail=f"{len(new)} MACs given for {len(ifaces)} interfaces")
        for i, mac in zip(ifaces, new, strict=False):
            _put_mac(i, mac)
    if disks is not None:
        _repoint_disks(devices, disks)
    if serial_log is not None:
        _put_serial_log(devices, serial_log)
    if cmdline is not None or kernel is not None or initrd is not None:
        os_el = root.find("os")
        if os_el is None:
            raise BadDomainXML(detail="the definition has no <os> element to set a kernel in")
        _put_boot(os_el, kernel=kernel, initrd=initrd, cmdline=cmdline)
    if metadata is not None:
        _put_metadata(root, metadata)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _repoint_disks(devices: ET.Element, disks: DiskMap) -> None:
    by_target = {}
    for d in devices.findall("disk"):
        t = d.find("target")
        if t is not None:
            by_target[t.get("dev")] = d
    if callable(disks):
        for el in by_target.values():
            old = _read_disk(el)
            if old is None:
                continue
            new = disks(old)
            if new is not None:
                _check_disk(dataclasses.replace(old, source=new))
                _put_source(el, new)
        return
    unknown = set(disks) - set(by_target)
    if unknown:
        raise BadDomainXML(
            detail=f"no disk with target {', '.join(sorted(unknown))}; the definition "
            f"has {', '.join(sorted(by_target)) or 'no disks'}"
        )
    for tgt, src in disks.items():
        _put_source(by_target[tgt], src)


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
