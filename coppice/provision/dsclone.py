"""The classic runbook as one call: clone a whole datastore from a snapshot,
bring its LUNs online under new LUN IDs, resignature the copy, find every
VM on it and register each in libvirt under a new name, UUID and MAC.

Contract:

* ``clone_datastore(filer, src, snap, new, register=True, uri=...)``
  validates first (source is a datastore, the snapshot exists, the new
  volume name is free, every new VM name is free in libvirt and in
  Coppice), then: FlexClone ``src@snap`` -> ``new`` with remap (every
  mapped LUN gets the lowest free ID of its igroup, online); attach by the
  host's resignature policy (``auto``: a copy is resignatured; ``ask``/
  ``off``: ``DatastoreIsCopy`` unless ``resignature=True``); then, per VM
  folder: new name (``name_pattern``, fields ``{vm}`` and ``{clone}``),
  new UUID, MAC and instance-id, its seed re-rendered with the new host
  name when it has one, its LUNs mapped, its folder rewritten, its domain
  defined. The parent's VMs, LUNs and folders are not touched.
  Any failure undoes everything (domains, index entries, the clone).
* ``register_datastore(filer, volume, uri)``: register the VMs of an
  attached datastore as they are (same names and identities) — what a
  host does when it mounts a datastore it owns.
* ``create_vm(filer, volume, name, disk_size)``: put a new VM folder with
  an empty disk LUN on a datastore (how a datastore with several VMs is
  built by hand; tests use it).
* Host policy: ``set_policy(filer, uri, policy)`` / ``get_policy``.
"""

from __future__ import annotations

import time
import uuid as _uuid

from . import custspec as cs
from . import datastore as ds
from . import registry, steps
from . import template as tpl
from .domain_xml import Disk, DomainSpec, Interface, random_mac, render_domain_xml
from .pattern import PatternError, compile_pattern
from .provisioner import TEST_URI, check_vm_name, new_instance_id, unique_mac
from .provisioning_errors import BadNamePattern, DatastoreIsCopy, VMExists
from .records import Target
from .revert import Revert
from .steps import DEFAULT_IGROUP, destroy_volume, domain_xml_for, ensure_igroup


def get_policy(filer, uri: str) -> str:
    return registry.get(filer, registry.POLICY, uri, "auto")


def set_policy(filer, uri: str, policy: str) -> None:
    registry.put(filer, registry.POLICY, uri, ds.check_policy(policy))


def create_vm(
    filer, volume: str, name: str, disk_size="64m", memory_mib: int = 128, target: Target | None = None
) -> dict:
    """A new VM folder (record, definition, empty disk LUN) on datastore ``volume``."""
    check_vm_name(name)
    target = target or Target.parse(None)
    slots = ds.vm_slots(filer, volume)
    slot = next(f"vm{i}" for i in range(len(slots) + 1) if f"vm{i}" not in slots)
    lun = ds.disk_lun(slot)
    with filer.transaction():
        filer.lun_create(f"/vol/{volume}/{lun}", disk_size)
        spec = DomainSpec(
            name=name,
            memory_mib=memory_mib,
            disks=[Disk(target="vda", source=target.source(f"/vol/{volume}/{lun}"))],
            interfaces=[Interface(mac=random_mac())],
        )
        rec = {
            "name": name,
            "uuid": spec.uuid,
            "mac": spec.interfaces[0].mac,
            "instance_id": new_instance_id(),
            "hostname": name.replace("_", "-").lower(),
            "template": None,
            "base_snapshot": None,
            "memory_mib": memory_mib,
            "vcpus": 1,
            "disks": [{"lun": lun, "target": "vda"}],
            "seed": None,
            "cmdline": None,
            "created": time.time(),
        }
        ds.write_vm(filer, volume, slot, rec, render_domain_xml(spec))
        ds.stamp(filer, volume)
    return dict(rec, slot=slot)


# Per VM of a cloned datastore (after the seed, when it has one): its folder, maps and
# index entry commit together; then libvirt.
CLONE_VM_PLAN = (steps.Atomic((steps.RESIGNATURE, steps.MAP, steps.INDEX)), steps.DEFINE)


def _clone_vm(filer, volume: str, v: dict, names: dict, used_macs: set) -> steps.VMBuild:
    """A VM of the cloned datastore with its new name and identity, ready for the steps."""
    slot = v.pop("slot")
    config = dict(
        v,
        name=names[slot],
        uuid=str(_uuid.uuid4()),
        mac=unique_mac(used_macs),
        instance_id=new_instance_id(),
        created=time.time(),
    )
    spec = None
    if config.get("seed"):
        spec = cs.CustSpec.from_dict(config.get("custspec_data") or {"name": "default"})
        config["hostname"] = cs.hostname_for(
            spec.hostname, config["name"], config.get("n") or 0, config.get("template")
        )
    else:
        config["hostname"] = config["name"].replace("_", "-").lower()
    return steps.VMBuild(
        name=config["name"],
        volume=volume,
        slot=slot,
        config=config,
        base_xml=ds.read_domain(filer, volume, slot),
        spec=spec,
        lease=bool(config.get("address")),  # the parent keeps its address; the copy leases its own
        attach=False,  # the datastore was attached once, by policy
    )


def register_datastore(
    filer,
    volume: str,
    uri: str = TEST_URI,
    igroup: str = DEFAULT_IGROUP,
    target: Target | None = None,
    hv=None,
    state_dir: str | None = None,
) -> list[dict]:
    """Register every VM of an attached datastore as it is (same names and identities)."""
    target = target or Target.parse(None)
    state_dir = state_dir or tpl.default_state_dir(filer)
    own_hv = hv is None
    if hv is None:
        from .hypervisor import Hypervisor

        hv = Hypervisor.open(uri)
    out = []
    try:
        reason = ds.copy_reason(filer, volume)
        if reason is not None:
            d = ds.descriptor(filer, volume)
            raise DatastoreIsCopy(name=d["name"], volume=volume, uuid=d["uuid"], other=reason)
        if registry.get(filer, registry.DATASTORE, volume) is None:
            ds.attach(filer, volume, "off")
        ensure_igroup(filer, igroup)
        vms = ds.vms(filer, volume)
        for v in vms:
            if hv.exists(v["name"]) or registry.get(filer, registry.VM, v["name"]) is not None:
                raise VMExists(name=v["name"], where=f"defined in libvirt at {uri} or known to Coppice")
        flow = steps.Flow(filer=filer, hv=hv, uri=uri, igroup=igroup, target=target, state_dir=state_dir)
        with Revert() as rv:
            for v in vms:
                slot = v.pop("slot")
                vm = steps.VMBuild(
                    name=v["name"],
                    volume=volume,
                    slot=slot,
                    config=v,
                    base_xml=ds.read_domain(filer, volume, slot),
                )
                vm.xml = domain_xml_for(filer, volume, slot, v, target, state_dir, vm.base_xml)
                steps.run(flow, vm, rv, (steps.MAP, steps.DEFINE, steps.INDEX))
                out.append(
                    {"name": v["name"], "slot": slot, "uuid": v["uuid"], "mac": v["mac"], "luns": vm.lun_ids}
                )
            rv.success()
    finally:
        if own_hv:
            hv.close()
    return out


def _clone_names(parent_vms: list[dict], name_pattern: str, new: str) -> dict[str, str]:
    """slot -> the new name of each VM of the cloned datastore, checked."""
    try:
        pattern = compile_pattern(name_pattern, {"vm", "clone"}, numbers=())
    except PatternError as e:
        raise BadNamePattern(pattern=name_pattern, why=f"{e}; use {{vm}} and {{clone}}") from None
    names = {
        v["slot"]: check_vm_name(pattern.expand(vm=v["name"], clone=new.replace("_", "-")))
        for v in parent_vms
    }
    if len(set(names.values())) != len(names):
        raise BadNamePattern(pattern=name_pattern, why="it gives two VMs the same name")
    return names


def _attach_copy(filer, new: str, policy: str, resignature: bool | None, parent: dict) -> dict:
    """Attach the cloned datastore: by the host's policy, or resignatured when asked."""
    if resignature is None and policy != "auto":
        return ds.attach(filer, new, policy)  # raises DatastoreIsCopy for a copy
    if not resignature:
        return ds.attach(filer, new, "auto")
    reason = ds.copy_reason(filer, new, ds.descriptor(filer, new))
    d = ds.resignature(filer, new)
    return {
        "volume": new,
        "old_name": parent["name"],
        "copy": reason is not None,
        "reason": reason,
        "resignatured": True,
        "name": d["name"],
        "uuid": d["uuid"],
    }


def clone_datastore(
    filer,
    src: str,
    snap: str,
    new: str,
    register: bool = True,
    uri: str = TEST_URI,
    igroup: str = DEFAULT_IGROUP,
    target: Target | None = None,
    name_pattern: str = "{vm}-{clone}",
    resignature: bool | None = None,
    start: bool = False,
    hv=None,
    state_dir: str | None = None,
) -> dict:
    """See the module docstring; returns what was done."""
    target = target or Target.parse(None)
    state_dir = state_dir or tpl.default_state_dir(filer)
    t0 = time.monotonic()
    ds.descriptor(filer, src, snap)  # NotADatastore / SnapshotNotFound before anything
    from ..filer.names import check_volume

    check_volume(new)
    if filer.vol_exists(new):
        from ..filer.errors import VolumeExists

        raise VolumeExists(name=new)
    policy = get_policy(filer, uri)
    names = _clone_names(ds.vms(filer, src, snap), name_pattern, new)
    own_hv = hv is None
    if register and hv is None:
        from .hypervisor import Hypervisor

        hv = Hypervisor.open(uri)
    try:
        if register:
            for nm in names.values():
                if hv.exists(nm):
                    raise VMExists(name=nm, where=f"a domain of that name is defined in libvirt at {uri}")
                if registry.get(filer, registry.VM, nm) is not None:
                    raise VMExists(name=nm, where="Coppice knows a VM of that name")
            ensure_igroup(filer, igroup)
        out = {"volume": new, "parent": f"{src}@{snap}", "vms": []}
        with Revert() as rv:
            c = filer.clone_create(new, src, snap, remap=True)
            rv.add(lambda: destroy_volume(filer, new))
            out["luns"] = c["luns"]
            out["datastore"] = _attach_copy(filer, new, policy, resignature, ds.descriptor(filer, src, snap))
            if register:
                flow = steps.Flow(
                    filer=filer, hv=hv, uri=uri, igroup=igroup, target=target, state_dir=state_dir
                )
                used_macs = {v.get("mac") for _, v in registry.items(filer, registry.VM)}
                for v in ds.vms(filer, new):
                    vm = _clone_vm(filer, new, v, names, used_macs)
                    plan = (
                        ((steps.SEED,) if vm.spec else ()) + CLONE_VM_PLAN + ((steps.START,) if start else ())
                    )
                    steps.run(flow, vm, rv, plan)
                    out["vms"].append(
                        {
                            "name": vm.name,
                            "from": v["name"],
                            "slot": vm.slot,
                            "uuid": vm.config["uuid"],
                            "mac": vm.config["mac"],
                            "luns": vm.lun_ids,
                        }
                    )
            rv.success()
    finally:
        if own_hv and hv is not None:
            hv.close()
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


__all__ = ["clone_datastore", "register_datastore", "create_vm", "get_policy", "set_policy"]
