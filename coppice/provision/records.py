"""The provisioner's records as typed dataclasses: where VMs reach their disks
(``Target``: Coppice's NBD target; ``RbdTarget``: straight in Ceph RBD), a
planned VM (``VMPlan``), one VM's outcome (``VMResult``), a batch's outcome
(``Summary``) and the pool's index entry of a VM (``VMRecord``), plus the
checks every value read back from a stored record passes before it is used.

Contract:

* Every record has ``to_dict()`` (JSON-able, the shape the CLI prints with
  ``--json`` and the REST API returns) and the stored ones ``from_dict()``.
* ``VMRecord.from_dict`` and ``check_vm_config`` validate what a stored
  record says before it touches a path or a name: volume, slot, LUN and VM
  names follow their rules, ``kernel_sha256``/``initrd_sha256`` are 64
  lower-case hex digits. A record that fails is ``BadRecord``: a pool
  whose kv store or VM folder was edited by hand cannot make Coppice write
  outside its state directory.
"""

from __future__ import annotations

import dataclasses
import os
import re

from ..errors import InvalidArgument
from .domain_xml import NbdSource, RbdSource
from .provisioning_errors import BadRecord

STAGES = ("clone", "seed", "resignature", "map", "define", "start")

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SLOT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}\Z")
_VM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}\Z")


# ---- checks on values read back from records ---------------------------------------------------


def check_digest(value, what: str, record: str) -> str:
    """A SHA-256 hex digest, or BadRecord (it becomes a directory name)."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise BadRecord(what="VM", name=record, why=f"{what} {str(value)[:80]!r} is not a SHA-256 hex digest")
    return value


def check_slot(value, record: str) -> str:
    if not isinstance(value, str) or not _SLOT.match(value):
        raise BadRecord(what="VM", name=record, why=f"slot {str(value)[:80]!r} is not a VM folder name")
    return value


def _check_name(kind: str, value, record: str) -> str:
    from ..filer.errors import InvalidName
    from ..filer.names import check

    try:
        return check(kind, value)
    except InvalidName:
        raise BadRecord(
            what="VM", name=record, why=f"{kind} name {str(value)[:80]!r} breaks the naming rule"
        ) from None


def check_vm_config(d: dict, where: str) -> dict:
    """A VM folder record (``<slot>.vm.json``) whose names and digests are safe to use."""
    if not isinstance(d, dict):
        raise BadRecord(what="VM folder", name=where, why="it is not a JSON object")
    for kind in ("kernel", "initrd"):
        if d.get(f"{kind}_sha256") is not None:
            check_digest(d[f"{kind}_sha256"], f"{kind}_sha256", where)
    disks = d.get("disks") or []
    if not isinstance(disks, list):
        raise BadRecord(what="VM folder", name=where, why="disks is not a list")
    for disk in disks:
        if not isinstance(disk, dict):
            raise BadRecord(what="VM folder", name=where, why="a disk is not a JSON object")
        _check_name("LUN", disk.get("lun"), where)
    if d.get("seed") is not None:
        _check_name("LUN", d["seed"], where)
    return d


# ---- where VMs reach their disks ------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """Where VMs reach their disks: the NBD target (``coppice serve``)."""

    host: str | None = "127.0.0.1"
    port: int | None = 10809
    socket: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, text: str | None, tls: bool = False) -> Target:
        """'HOST:PORT', 'HOST', ':PORT' or 'unix:/PATH'; default from $COPPICE_NBD."""
        text = text or os.environ.get("COPPICE_NBD") or "127.0.0.1:10809"
        if text.startswith("unix:"):
            return cls(host=None, port=None, socket=text[5:], tls=tls)
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "10809")
        try:
            return cls(host=host.strip("[]") or "127.0.0.1", port=int(port or 10809), tls=tls)
        except ValueError:
            raise InvalidArgument(
                detail=f"NBD target {text!r} is invalid: use HOST:PORT or unix:/PATH"
            ) from None

    def source(self, export: str) -> NbdSource:
        return NbdSource(export=export, host=self.host, port=self.port, socket=self.socket, tls=self.tls)

    def address(self) -> str:
        """As a user types it: nbd://HOST:PORT or unix:PATH (with TLS when required)."""
        if self.socket is not None:
            where = f"unix:{self.socket}"
        else:
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            where = f"nbd://{host}:{self.port}"
        return where + (" (TLS)" if self.tls else "")

    disk_path = "nbd"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RbdTarget:
    """Where VMs reach their disks with ``--disk-path rbd``: QEMU opens each
    LUN's RBD image itself (librbd), on any host that reaches the Ceph
    monitors, as OpenStack Nova's disks; no Coppice on the data path. The
    image of ``/vol/V/L`` is ``coppice.V.L`` (the rbd backend's name rule)."""

    pool: str
    hosts: list = dataclasses.field(default_factory=list)  # [[host, port or None], ...]
    auth_user: str | None = None
    disk_path = "rbd"

    @classmethod
    def from_access(cls, access: dict) -> RbdTarget:
        """From the rbd backend's ``direct_disk_access()``."""
        return cls(
            pool=access["pool"], hosts=[list(h) for h in access["hosts"]], auth_user=access.get("auth_user")
        )

    def source(self, export: str) -> RbdSource:
        from ..backend.rbd import image_name
        from ..filer.names import parse_lun_path

        vol, _, lun = parse_lun_path(export)
        return RbdSource(
            pool=self.pool,
            image=image_name(vol, lun),
            hosts=tuple(map(tuple, self.hosts)),
            auth_user=self.auth_user,
        )

    def address(self) -> str:
        mons = ",".join(f"{h}:{p}" if p else h for h, p in self.hosts)
        return f"rbd:{self.pool} (monitors {mons or 'from the host ceph.conf'})"

    def to_dict(self) -> dict:
        return {"disk_path": "rbd", **dataclasses.asdict(self)}


def target_from_dict(d: dict | None) -> Target | RbdTarget:
    """A stored target (``to_dict()``) back; one without ``disk_path`` is NBD."""
    if not d:
        return Target.parse(None)
    d = dict(d)
    kind = d.pop("disk_path", "nbd")
    return RbdTarget(**d) if kind == "rbd" else Target(**d)


# ---- a batch --------------------------------------------------------------------------------


@dataclasses.dataclass
class VMPlan:
    """One VM of a batch, checked and with its new identity, before anything exists."""

    name: str
    n: int
    volume: str
    uuid: str
    mac: str
    instance_id: str
    hostname: str


@dataclasses.dataclass
class VMResult:
    name: str
    n: int
    volume: str
    ok: bool = False
    skipped: bool = False
    error: str | None = None
    failed_stage: str | None = None
    stages: dict = dataclasses.field(default_factory=dict)
    lun_ids: dict = dataclasses.field(default_factory=dict)
    uuid: str | None = None
    mac: str | None = None
    address: str | None = None
    rollback_errors: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stages"] = {k: round(v, 6) for k, v in self.stages.items()}
        return d


@dataclasses.dataclass
class Summary:
    template: str
    requested: int
    results: list
    seconds: float
    parallel: int
    uri: str
    igroup: str | None = None
    target: Target | RbdTarget | None = None
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> list:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list:
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def skipped(self) -> list:
        return [r for r in self.results if r.skipped]

    def stage_totals(self) -> dict:
        tot: dict[str, float] = {}
        for r in self.results:
            for k, v in r.stages.items():
                tot[k] = tot.get(k, 0.0) + v
        return {k: tot[k] for k in STAGES if k in tot}

    def to_dict(self) -> dict:
        done = len(self.ok)
        return {
            "template": self.template,
            "requested": self.requested,
            "created": done,
            "failed": [{"vm": r.name, "stage": r.failed_stage, "error": r.error} for r in self.failed],
            "skipped": [r.name for r in self.skipped],
            "seconds": round(self.seconds, 3),
            "per_vm_seconds": round(self.seconds / done, 6) if done else None,
            "parallel": self.parallel,
            "uri": self.uri,
            "igroup": self.igroup,
            "disk_path": self.target.disk_path if self.target else None,
            "nbd": self.target.address() if isinstance(self.target, Target) else None,
            "rbd": self.target.address() if isinstance(self.target, RbdTarget) else None,
            "warnings": list(self.warnings),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_totals().items()},
            "stage_per_vm_ms": {
                k: round(1000 * v / max(1, len(self.results)), 3) for k, v in self.stage_totals().items()
            },
            "vms": [r.to_dict() for r in self.results],
        }


# ---- the pool's index entry of a VM ---------------------------------------------------------


@dataclasses.dataclass
class VMRecord:
    """What the pool's VM index (``registry.VM``) holds for one VM Coppice made.

    The VM's folder on its datastore is the truth about its identity; this
    entry is what ``vm list`` and validation read without opening volumes,
    and where the VM's libvirt connection, igroup and LUN IDs are kept."""

    name: str
    volume: str
    slot: str
    uri: str
    uuid: str
    mac: str
    igroup: str
    lun_ids: dict = dataclasses.field(default_factory=dict)  # LUN path -> LUN ID in igroup
    target: dict | None = None  # Target.to_dict()
    template: str | None = None
    base_snapshot: str | None = None
    instance_id: str | None = None
    hostname: str | None = None
    custspec: str | None = None
    address: str | None = None
    n: int | None = None
    serial_log: str | None = None
    created: float = 0.0

    @property
    def luns(self) -> list[str]:
        return list(self.lun_ids)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["luns"] = self.luns  # older readers list the LUNs from here
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VMRecord:
        name = d.get("name") if isinstance(d, dict) else None
        if not isinstance(name, str) or not _VM_NAME.match(name):
            raise BadRecord(what="VM", name=str(name)[:80], why="its name breaks the VM naming rule")
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            rec = cls(**{k: v for k, v in d.items() if k in fields})
        except TypeError as e:
            raise BadRecord(what="VM", name=name, why=str(e)) from None
        _check_name("volume", rec.volume, name)
        check_slot(rec.slot, name)
        if not isinstance(rec.lun_ids, dict):
            raise BadRecord(what="VM", name=name, why="lun_ids is not a map of LUN path to ID")
        prefix = f"/vol/{rec.volume}/"
        for p in rec.lun_ids:
            if not isinstance(p, str) or not p.startswith(prefix):
                raise BadRecord(
                    what="VM", name=name, why=f"LUN {str(p)[:80]!r} is not on its volume {rec.volume}"
                )
            _check_name("LUN", p[len(prefix) :], name)
        return rec

    def target_obj(self) -> Target | RbdTarget:
        try:
            return target_from_dict(self.target)
        except TypeError as e:
            raise BadRecord(what="VM", name=self.name, why=f"target: {e}") from None
