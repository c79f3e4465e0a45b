"""The life of a provisioned VM after ``vm provision``: list, show, refresh,
recompose, destroy.

Contract:

* ``list_``/``show`` read the pool's VM index and ask libvirt for the state
  (``unknown`` when its libvirt cannot be reached); ``show`` adds the space
  used by this VM alone (blocks its clone does not share).
* ``refresh(name)`` discards the VM's changes: a new clone of its base
  snapshot replaces its clone under the same volume name, with the same
  identity (name, UUID, MAC, instance-id, seed) and the same LUN IDs when
  free. ``recompose(name, snapshot)`` does the same from another snapshot of
  the template volume and records it as the new base. Both refuse a running
  VM (unless ``force``, which powers it off), build the new clone under a
  temporary name first, and swap in one filer transaction: a failure leaves
  the VM as it was.
* ``destroy(name, force)`` refuses a running VM without ``force``; it
  undefines the domain, unmaps its LUNs, destroys its clone (or, on a
  datastore shared with other VMs, only its LUNs and folder), releases its
  static address and drops it from the index — in that order, so a failure
  part way can be finished by running it again.
"""

from __future__ import annotations

import secrets

from . import custspec as cs
from . import datastore as ds
from . import registry, steps
from . import template as tpl
from .provisioning_errors import VMNotFound, VMRunning
from .records import VMRecord
from .revert import Revert
from .steps import destroy_volume

# What a VM keeps across refresh and recompose: its identity and its seed.
_KEPT = (
    "name",
    "uuid",
    "mac",
    "instance_id",
    "hostname",
    "seed",
    "custspec",
    "custspec_data",
    "address",
    "n",
)


def record(filer, name: str) -> VMRecord:
    """The VM's index entry, checked (``records.VMRecord.from_dict``)."""
    d = registry.get(filer, registry.VM, name)
    if d is None:
        raise VMNotFound(name=name)
    return VMRecord.from_dict(d)


def get(filer, name: str) -> dict:
    return record(filer, name).to_dict()


def _state(hvs: dict, rec: VMRecord) -> str:
    uri = rec.uri or "test:///default"
    try:
        if uri not in hvs:
            from .hypervisor import Hypervisor

            hvs[uri] = Hypervisor.open(uri)
        hv = hvs[uri]
        return hv.state(rec.name) if hv.exists(rec.name) else "undefined"
    except Exception:
        return "unknown"


def _close(hvs: dict) -> None:
    for hv in hvs.values():
        hv.close()


def _row(rec: VMRecord, state: str) -> dict:
    return {
        "name": rec.name,
        "state": state,
        "template": rec.template,
        "base_snapshot": rec.base_snapshot,
        "clone": rec.volume,
        "uri": rec.uri,
        "hostname": rec.hostname,
        "address": rec.address,
        "mac": rec.mac,
        "uuid": rec.uuid,
    }


def _records(filer) -> list[VMRecord]:
    return [VMRecord.from_dict(d) for _, d in registry.items(filer, registry.VM)]


def list_(filer, hypervisors: dict | None = None, with_state: bool = True) -> list[dict]:
    hvs = hypervisors if hypervisors is not None else {}
    try:
        return [_row(rec, _state(hvs, rec) if with_state else "-") for rec in _records(filer)]
    finally:
        if hypervisors is None:
            _close(hvs)


def own_bytes(filer, volume: str) -> int:
    info = filer.vol_info(volume)
    return max(0, info["used"] - info["shared"])


def show(filer, name: str, hypervisors: dict | None = None) -> dict:
    rec = record(filer, name)
    hvs = hypervisors if hypervisors is not None else {}
    try:
        out = _row(rec, _state(hvs, rec))
    finally:
        if hypervisors is None:
            _close(hvs)
    vi = filer.vol_info(rec.volume) if filer.vol_exists(rec.volume) else None
    out.update(
        {
            "slot": rec.slot,
            "instance_id": rec.instance_id,
            "custspec": rec.custspec,
            "igroup": rec.igroup,
            "luns": rec.lun_ids,
            "serial_log": rec.serial_log,
            "target": rec.target,
            "created": rec.created,
            "own_bytes": max(0, vi["used"] - vi["shared"]) if vi else None,
            "shared_bytes": vi["shared"] if vi else None,
            "datastore": ds.descriptor(filer, rec.volume)["name"] if vi else None,
        }
    )
    return out


def _hv(uri: str, factory=None):
    if factory is not None:
        return factory(uri)
    from .hypervisor import Hypervisor

    return Hypervisor.open(uri)


def _others_on_volume(filer, rec: VMRecord) -> list[str]:
    return [
        k for k, v in registry.items(filer, registry.VM) if v.get("volume") == rec.volume and k != rec.name
    ]


def destroy(filer, name: str, force: bool = False, hypervisor_factory=None) -> dict:
    rec = record(filer, name)
    hv = _hv(rec.uri, hypervisor_factory)
    try:
        if hv.exists(name):
            state = hv.state(name)
            if state not in ("shutoff", "crashed") and not force:
                raise VMRunning(name=name)
            hv.remove(name)
    finally:
        hv.close()
    vol = rec.volume
    if filer.vol_exists(vol):
        with filer.transaction():
            present = [p for p in rec.luns if filer.object_exists(vol, p.rsplit("/", 1)[1])]
            for path in present:
                for m in filer.lun_info(path)["maps"]:
                    filer.lun_unmap(path, m["igroup"])
            if _others_on_volume(filer, rec):
                for path in present:
                    filer.lun_destroy(path, force=True)
                for fn in (ds.vm_file(rec.slot), ds.domain_file(rec.slot)):
                    if filer.object_exists(vol, fn):
                        filer.file_delete(vol, fn)
            else:
                destroy_volume(filer, vol)
    else:
        ds.forget(filer, vol)
    cs.release_address(filer, rec.custspec, rec.address)
    registry.delete(filer, registry.VM, name)
    return {"name": name, "destroyed": True, "volume": vol}


def _swap_step(old_luns: list[str]) -> steps.Step:
    """The refreshed clone takes the VM's volume name, datastore attachment and LUN IDs."""

    def swap(flow: steps.Flow, vm: steps.VMBuild, rv: Revert) -> None:
        f = flow.filer
        kept = {p: f.lun_info(p)["maps"] for p in old_luns}
        f.vol_destroy(vm.volume, force=True)
        ds.forget(f, vm.volume)
        f.vol_rename(vm.work_volume, vm.volume)
        ds.attach(f, vm.volume, "auto")
        for p, maps in kept.items():
            for m in maps:
                f.lun_map(p, m["igroup"], m["lun_id"])

    return steps.Step("swap", "map", swap)


def _reclone(
    filer, name: str, snapshot: str | None, force: bool, state_dir: str | None, hypervisor_factory=None
) -> dict:
    rec = record(filer, name)
    trec = tpl.get(filer, rec.template)
    snap = snapshot or rec.base_snapshot
    state_dir = state_dir or tpl.default_state_dir(filer)
    vol, slot = rec.volume, rec.slot
    if _others_on_volume(filer, rec):
        from ..errors import InvalidArgument

        raise InvalidArgument(
            detail=f"VM {name} shares datastore {vol} with other VMs; refresh and recompose "
            "work on VMs with a clone of their own (made by `vm provision`)"
        )
    hv = _hv(rec.uri, hypervisor_factory)
    try:
        running = hv.exists(name) and hv.state(name) not in ("shutoff", "crashed")
        if running and not force:
            raise VMRunning(name=name)
        old = ds.read_vm(filer, vol, slot)
        seed = None
        if old.get("seed"):
            dev = filer.open_lun(f"/vol/{vol}/{old['seed']}")
            try:
                seed = bytes(dev.pread(0, dev.size))
            finally:
                dev.close()
        # the new clone's folder is the snapshot's: build the VM's record on it before cloning
        new_base = ds.vms(filer, trec["volume"], snap)
        config = dict(next((v for v in new_base if v["slot"] == slot), new_base[0]))
        config.update({k: old[k] for k in _KEPT if k in old})
        config.pop("slot", None)
        config["template"], config["base_snapshot"] = trec["name"], snap
        vm = steps.VMBuild(
            name=name,
            volume=vol,
            slot=slot,
            config=config,
            base_xml=ds.read_domain(filer, trec["volume"], slot, snap),
            work_volume=f"{vol}_r{secrets.token_hex(4)}",
            clone_from=(trec["volume"], snap),
            seed_image=(seed.rstrip(b"\0") or seed) if seed is not None else None,
            attach=False,  # the swap attaches it under the VM's volume name
            replace=True,
            created=rec.created,
        )
        flow = steps.Flow(
            filer=filer, hv=hv, uri=rec.uri, igroup=rec.igroup, target=rec.target_obj(), state_dir=state_dir
        )
        with Revert() as rv:
            steps.run(
                flow,
                vm,
                rv,
                (steps.CLONE,) + ((steps.SEED,) if seed is not None else ()) + (steps.RESIGNATURE,),
            )
            if running:
                hv.destroy(name)
            steps.run(
                flow, vm, rv, (steps.Atomic((_swap_step(rec.luns), steps.MAP)), steps.DEFINE, steps.INDEX)
            )
            rv.success()
    finally:
        hv.close()
    return show(filer, name)


def refresh(
    filer, name: str, force: bool = False, state_dir: str | None = None, hypervisor_factory=None
) -> dict:
    return _reclone(filer, name, None, force, state_dir, hypervisor_factory)


def recompose(
    filer,
    name: str,
    snapshot: str,
    force: bool = False,
    state_dir: str | None = None,
    hypervisor_factory=None,
) -> dict:
    return _reclone(filer, name, snapshot, force, state_dir, hypervisor_factory)


def seed_files(filer, name: str) -> dict:
    """The VM's seed as the guest reads it (meta-data, user-data, ...)."""
    from .seed import read_seed_iso

    rec = record(filer, name)
    vm = ds.read_vm(filer, rec.volume, rec.slot)
    dev = filer.open_lun(f"/vol/{rec.volume}/{vm['seed']}")
    try:
        return {
            k: (v.decode() if isinstance(v, bytes) else v)
            for k, v in read_seed_iso(bytes(dev.pread(0, dev.size))).items()
        }
    finally:
        dev.close()


__all__ = ["list_", "show", "destroy", "refresh", "recompose", "seed_files"]
