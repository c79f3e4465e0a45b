"""Datastores: volumes that hold VMs, with a signature, as VMFS datastores do.

Contract:

* A datastore is a filer volume holding a descriptor file ``datastore.json``
  (format below), one folder of small files per VM and the VMs' LUNs. A
  snapshot captures all of it at one instant and a clone inherits all of it,
  so a clone of a datastore is a complete copy of every VM on it.
* Signature = the descriptor's ``uuid`` and ``name`` plus the serials of the
  LUNs it was signed on. A datastore is a **copy** when its uuid is already
  known among the attached datastores (another volume), or when its LUNs'
  serials are not those it was signed on (a filer clone gives every LUN a
  new serial). ``attach`` applies the host's policy to a copy:
  ``auto`` resignatures it (new uuid, name ``snap-XXXXXXXX-<name>``),
  ``ask`` and ``off`` refuse with ``DatastoreIsCopy`` (the CLI asks the
  user for ``ask`` and then calls ``resignature``).
* Every mutating function is one filer transaction: atomic, durable on
  return, and it joins an enclosing ``filer.transaction()``.

Descriptor (``datastore.json``, JSON, format 1)::

    {"format": 1,
     "uuid": "<uuid4>",                 # the signature
     "name": "<display name>",          # renamable; 'snap-XXXXXXXX-<name>' after resignature
     "lun_serials": {"<lun>": "<serial>", ...},   # LUNs the signature was written on
     "created": <unix time>, "resignatured_from": "<old uuid>" | null}

VM folder (slot = a datastore-local folder name, kept across clones)::

    <slot>.vm.json       the VM's record: name, uuid, mac, instance_id,
                         hostname, template, base_snapshot, disks, seed, ...
    <slot>.domain.xml    its libvirt definition (disks = NBD exports of
                         LUNs of this datastore), as a .vmx on VMFS
    <slot>.kernel/.initrd  direct-boot files, when the VM boots that way
    LUNs <slot>.disk0.., <slot>.seed
"""

from __future__ import annotations

import json
import re
import time
import uuid as _uuid

from ..errors import InvalidArgument
from . import registry
from .provisioning_errors import BadPolicy, DatastoreIsCopy, DatastoreNotAttached, NotADatastore

DESCRIPTOR = "datastore.json"
FORMAT = 1
POLICIES = ("auto", "ask", "off")
_SNAP_PREFIX = re.compile(r"^snap-[0-9a-f]{8}-")
_VM_SUFFIX = ".vm.json"


def vm_file(slot: str) -> str:
    return f"{slot}{_VM_SUFFIX}"


def domain_file(slot: str) -> str:
    return f"{slot}.domain.xml"


def disk_lun(slot: str, i: int = 0) -> str:
    return f"{slot}.disk{i}"


def seed_lun(slot: str) -> str:
    return f"{slot}.seed"


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise BadPolicy(policy=policy)
    return policy


# ---- descriptor ---------------------------------------------------------------------------


def new_descriptor(name: str) -> dict:
    return {
        "format": FORMAT,
        "uuid": str(_uuid.uuid4()),
        "name": name,
        "lun_serials": {},
        "created": time.time(),
        "resignatured_from": None,
    }


def is_datastore(filer, volume: str, snapshot: str | None = None) -> bool:
    return filer.vol_exists(volume) and filer.object_exists(volume, DESCRIPTOR, snapshot)


def descriptor(filer, volume: str, snapshot: str | None = None) -> dict:
    if not is_datastore(filer, volume, snapshot):
        raise NotADatastore(volume=volume)
    return json.loads(filer.file_read(volume, DESCRIPTOR, snapshot))


def write_descriptor(filer, volume: str, d: dict) -> None:
    filer.file_write(volume, DESCRIPTOR, json.dumps(d, sort_keys=True, indent=1).encode())


def current_serials(filer, volume: str) -> dict[str, str]:
    return filer.lun_serials(volume)


def create(filer, volume: str, name: str | None = None, size="1t", attach_: bool = True) -> dict:
    """A new, empty datastore on a new (thin) volume, attached."""
    with filer.transaction():
        filer.vol_create(volume, size)
        d = new_descriptor(name or volume)
        write_descriptor(filer, volume, d)
        if attach_:
            registry.put(
                filer,
                registry.DATASTORE,
                volume,
                {"uuid": d["uuid"], "name": d["name"], "attached": time.time()},
            )
    return d


def stamp(filer, volume: str, d: dict | None = None) -> dict:
    """Record the LUN serials the signature now lives on (after adding LUNs)."""
    d = dict(d or descriptor(filer, volume))
    d["lun_serials"] = current_serials(filer, volume)
    write_descriptor(filer, volume, d)
    return d


# ---- signature, attach, resignature -------------------------------------------------------


def attached(filer) -> dict[str, dict]:
    return dict(registry.items(filer, registry.DATASTORE))


def copy_reason(filer, volume: str, d: dict | None = None, known: dict | None = None) -> str | None:
    """Why the datastore on ``volume`` is a copy, or None if it is an original."""
    d = d or descriptor(filer, volume)
    known = attached(filer) if known is None else known
    for vol, rec in known.items():
        if vol != volume and rec.get("uuid") == d["uuid"]:
            return f"signature {d['uuid']} belongs to attached datastore {rec.get('name')} on volume {vol}"
    serials = d.get("lun_serials") or {}
    if serials:
        now = current_serials(filer, volume)
        moved = sorted(lun for lun, s in serials.items() if lun in now and now[lun] != s)
        if moved:
            return f"LUN {moved[0]} has serial {now[moved[0]]}, not {serials[moved[0]]} it was signed on"
    return None


def resignature_name(name: str) -> str:
    return f"snap-{_uuid.uuid4().hex[:8]}-{_SNAP_PREFIX.sub('', name)}"


def resignature(filer, volume: str, name: str | None = None) -> dict:
    """New signature (uuid, name ``snap-XXXXXXXX-<name>`` unless given,
    serials of the LUNs now); the datastore is attached under it."""
    with filer.transaction():
        d = descriptor(filer, volume)
        old = d["uuid"]
        d = dict(d, uuid=str(_uuid.uuid4()), name=name or resignature_name(d["name"]), resignatured_from=old)
        d = stamp(filer, volume, d)
        registry.put(
            filer, registry.DATASTORE, volume, {"uuid": d["uuid"], "name": d["name"], "attached": time.time()}
        )
    return d


def attach(filer, volume: str, policy: str = "auto", known: dict | None = None) -> dict:
    """Attach the datastore on ``volume``; a copy is handled by ``policy``.

    Returns {volume, name, uuid, copy, resignatured, reason, old_name}.
    ``known``: the attached set, when the caller keeps it (batch speed).
    """
    check_policy(policy)
    with filer.transaction():
        d = descriptor(filer, volume)
        reason = copy_reason(filer, volume, d, known)
        out = {
            "volume": volume,
            "old_name": d["name"],
            "old_uuid": d["uuid"],
            "copy": reason is not None,
            "reason": reason,
            "resignatured": False,
        }
        if reason is not None:
            if policy != "auto":
                other = reason
                raise DatastoreIsCopy(name=d["name"], volume=volume, uuid=d["uuid"], other=other)
            d = resignature(filer, volume)
            out["resignatured"] = True
        else:
            registry.put(
                filer,
                registry.DATASTORE,
                volume,
                {"uuid": d["uuid"], "name": d["name"], "attached": time.time()},
            )
        out.update(name=d["name"], uuid=d["uuid"])
        if known is not None:
            known[volume] = {"uuid": d["uuid"], "name": d["name"]}
    return out


def detach(filer, volume: str) -> None:
    if registry.get(filer, registry.DATASTORE, volume) is None:
        raise DatastoreNotAttached(volume=volume)
    registry.delete(filer, registry.DATASTORE, volume)


def forget(filer, volume: str) -> None:
    """Drop the attachment record of a volume that is gone (no error if none)."""
    registry.delete(filer, registry.DATASTORE, volume)


def rename(filer, volume: str, new_name: str) -> dict:
    if not new_name or not new_name.isprintable() or len(new_name) > 255:
        raise InvalidArgument(detail=f"datastore name {new_name!r} must be 1 to 255 printable characters")
    with filer.transaction():
        d = dict(descriptor(filer, volume), name=new_name)
        write_descriptor(filer, volume, d)
        if registry.get(filer, registry.DATASTORE, volume) is not None:
            registry.put(
                filer,
                registry.DATASTORE,
                volume,
                {"uuid": d["uuid"], "name": new_name, "attached": time.time()},
            )
    return d


# ---- VM folders -----------------------------------------------------------------------------


def vm_slots(filer, volume: str, snapshot: str | None = None) -> list[str]:
    return sorted(
        f["name"][: -len(_VM_SUFFIX)]
        for f in filer.file_list(volume, snapshot)
        if f["name"].endswith(_VM_SUFFIX)
    )


def read_vm(filer, volume: str, slot: str, snapshot: str | None = None) -> dict:
    """The VM folder's record, its names and digests checked before anyone uses them."""
    from .records import check_vm_config

    where = f"{volume}{'@' + snapshot if snapshot else ''}/{vm_file(slot)}"
    try:
        d = json.loads(filer.file_read(volume, vm_file(slot), snapshot))
    except ValueError as e:
        from .provisioning_errors import BadRecord

        raise BadRecord(what="VM folder", name=where, why=f"it is not JSON ({e})") from None
    return check_vm_config(d, where)


def read_domain(filer, volume: str, slot: str, snapshot: str | None = None) -> str:
    return filer.file_read(volume, domain_file(slot), snapshot).decode()


def write_vm(filer, volume: str, slot: str, record: dict, domain_xml: str | None = None) -> None:
    with filer.transaction():
        filer.file_write(volume, vm_file(slot), json.dumps(record, sort_keys=True, indent=1).encode())
        if domain_xml is not None:
            filer.file_write(volume, domain_file(slot), domain_xml.encode())


def vms(filer, volume: str, snapshot: str | None = None) -> list[dict]:
    return [dict(read_vm(filer, volume, s, snapshot), slot=s) for s in vm_slots(filer, volume, snapshot)]


# ---- show -----------------------------------------------------------------------------------


def list_volumes(filer) -> list[str]:
    return [v for v in filer.vol_names() if filer.object_exists(v, DESCRIPTOR)]


def info(filer, volume: str, known: dict | None = None) -> dict:
    d = descriptor(filer, volume)
    known = attached(filer) if known is None else known
    rec = known.get(volume)
    origin = filer.vol_parent(volume)
    return {
        "volume": volume,
        "name": d["name"],
        "uuid": d["uuid"],
        "attached": rec is not None and rec.get("uuid") == d["uuid"],
        "copy_of": copy_reason(filer, volume, d, known)
        if rec is None or rec.get("uuid") != d["uuid"]
        else None,
        "resignatured_from": d.get("resignatured_from"),
        "parent": f"{origin[0]}@{origin[1]}" if origin else None,
        "vms": [r.get("name") for r in vms(filer, volume)],
        "luns": sorted(current_serials(filer, volume)),
    }


def show(filer, volume: str | None = None) -> list[dict]:
    known = attached(filer)
    vols = [volume] if volume is not None else list_volumes(filer)
    return [info(filer, v, known) for v in vols]
