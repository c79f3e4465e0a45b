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
from . import registry
from . import template as tpl
from .provisioner import Target, destroy_volume, domain_xml_for, map_all, write_seed
from .provisioning_errors import VMNotFound, VMRunning


def get(filer, name: str) -> dict:
    rec = registry.get(filer, registry.VM, name)
    if rec is None:
        raise VMNotFound(name=name)
    return rec


def _state(hvs: dict, rec: dict) -> str:
    uri = rec.get("uri") or "test:///default"
    try:
        if uri not in hvs:
            from .hypervisor import Hypervisor

            hvs[uri] = Hypervisor.open(uri)
        hv = hvs[uri]
        return hv.state(rec["name"]) if hv.exists(rec["name"]) else "undefined"
    except Exception:
        return "unknown"


def _close(hvs: dict) -> None:
    for hv in hvs.values():
        hv.close()


def _row(rec: dict, state: str) -> dict:
    return {
        "name": rec["name"],
        "state": state,
        "template": rec.get("template"),
        "base_snapshot": rec.get("base_snapshot"),
        "clone": rec.get("volume"),
        "uri": rec.get("uri"),
        "hostname": rec.get("hostname"),
        "address": rec.get("address"),
        "mac": rec.get("mac"),
        "uuid": rec.get("uuid"),
    }


def list_(filer, hypervisors: dict | None = None, with_state: bool = True) -> list[dict]:
    hvs = hypervisors if hypervisors is not None else {}
    try:
        return [
            _row(rec, _state(hvs, rec) if with_state else "-")
            for _, rec in registry.items(filer, registry.VM)
        ]
    finally:
        if hypervisors is None:
            _close(hvs)


def own_bytes(filer, volume: str) -> int:
    info = filer.vol_info(volume)
    return max(0, info["used"] - info["shared"])


def show(filer, name: str, hypervisors: dict | None = None) -> dict:
    rec = get(filer, name)
    hvs = hypervisors if hypervisors is not None else {}
    try:
        out = _row(rec, _state(hvs, rec))
    finally:
        if hypervisors is None:
            _close(hvs)
    vi = filer.vol_info(rec["volume"]) if filer.vol_exists(rec["volume"]) else None
    out.update(
        {
            "slot": rec.get("slot"),
            "instance_id": rec.get("instance_id"),
            "custspec": rec.get("custspec"),
            "igroup": rec.get("igroup"),
            "luns": rec.get("lun_ids"),
            "serial_log": rec.get("serial_log"),
            "target": rec.get("target"),
            "created": rec.get("created"),
            "own_bytes": max(0, vi["used"] - vi["shared"]) if vi else None,
            "shared_bytes": vi["shared"] if vi else None,
            "datastore": ds.descriptor(filer, rec["volume"])["name"] if vi else None,
        }
    )
    return out


def _hv(uri: str, factory=None):
    if factory is not None:
        return factory(uri)
    from .hypervisor import Hypervisor

    return Hypervisor.open(uri)


def _others_on_volume(filer, rec: dict) -> list[str]:
    return [
        k
        for k, v in registry.items(filer, registry.VM)
        if v.get("volume") == rec["volume"] and k != rec["name"]
    ]


def destroy(filer, name: str, force: bool = False, hypervisor_factory=None) -> dict:
    rec = get(filer, name)
    hv = _hv(rec["uri"], hypervisor_factory)
    try:
        if hv.exists(name):
            state = hv.state(name)
            if state not in ("shutoff", "crashed") and not force:
                raise VMRunning(name=name)
            hv.remove(name)
    finally:
        hv.close()
    vol = rec["volume"]
    if filer.vol_exists(vol):
        with filer.transaction():
            for path in rec.get("luns") or []:
                if filer.object_exists(vol, path.rsplit("/", 1)[1]):
                    for m in filer.lun_info(path)["maps"]:
                        filer.lun_unmap(path, m["igroup"])
            if _others_on_volume(filer, rec):
                for path in rec.get("luns") or []:
                    if filer.object_exists(vol, path.rsplit("/", 1)[1]):
                        filer.lun_destroy(path, force=True)
                for fn in (ds.vm_file(rec["slot"]), ds.domain_file(rec["slot"])):
                    if filer.object_exists(vol, fn):
                        filer.file_delete(vol, fn)
            else:
                destroy_volume(filer, vol)
    else:
        ds.forget(filer, vol)
    cs.release_address(filer, rec.get("custspec"), rec.get("address"))
    registry.delete(filer, registry.VM, name)
    return {"name": name, "destroyed": True, "volume": vol}


def _reclone(
    filer, name: str, snapshot: str | None, force: bool, state_dir: str | None, hypervisor_factory=None
) -> dict:
    rec = get(filer, name)
    trec = tpl.get(filer, rec["template"])
    snap = snapshot or rec["base_snapshot"]
    state_dir = state_dir or tpl.default_state_dir(filer)
    vol, slot = rec["volume"], rec["slot"]
    if _others_on_volume(filer, rec):
        from ..errors import InvalidArgument

        raise InvalidArgument(
            detail=f"VM {name} shares datastore {vol} with other VMs; refresh and recompose "
            "work on VMs with a clone of their own (made by `vm provision`)"
        )
    hv = _hv(rec["uri"], hypervisor_factory)
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
        tmp = f"{vol}_r{secrets.token_hex(4)}"
        filer.clone_create(tmp, trec["volume"], snap, remap=True)
        try:
            new_base = ds.vms(filer, tmp, None)
            base = next((v for v in new_base if v["slot"] == slot), new_base[0])
            record = dict(
                base,
                **{
                    k: old[k]
                    for k in (
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
                    if k in old
                },
            )
            record.pop("slot", None)
            record["template"], record["base_snapshot"] = trec["name"], snap
            if seed is not None:
                write_seed(filer, f"/vol/{tmp}/{old['seed']}", seed.rstrip(b"\0") or seed)
            target = Target(**rec["target"]) if rec.get("target") else Target.parse(None)
            base_xml = ds.read_domain(filer, tmp, slot)
            xml = domain_xml_for(filer, vol, slot, record, target, state_dir, base_xml)
            ds.write_vm(filer, tmp, slot, record, xml)
            if running:
                hv.destroy(name)
            with filer.transaction():
                old_ids = {p: filer.lun_info(p)["maps"] for p in rec.get("luns") or []}
                filer.vol_destroy(vol, force=True)
                ds.forget(filer, vol)
                filer.vol_rename(tmp, vol)
                ds.attach(filer, vol, "auto")
                ids = {}
                for p, maps in old_ids.items():
                    for m in maps:
                        ids[p] = filer.lun_map(p, m["igroup"], m["lun_id"])
                luns = [d["lun"] for d in record["disks"]] + ([record["seed"]] if record.get("seed") else [])
                ids.update(map_all(filer, vol, rec["igroup"], luns))
        except BaseException:
            if filer.vol_exists(tmp):
                destroy_volume(filer, tmp)
            raise
        hv.define(xml, replace=True)
    finally:
        hv.close()
    rec = dict(rec, base_snapshot=snap, lun_ids=ids, luns=list(ids))
    registry.put(filer, registry.VM, name, rec)
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

    rec = get(filer, name)
    vm = ds.read_vm(filer, rec["volume"], rec["slot"])
    dev = filer.open_lun(f"/vol/{rec['volume']}/{vm['seed']}")
    try:
        return {
            k: (v.decode() if isinstance(v, bytes) else v)
            for k, v in read_seed_iso(bytes(dev.pread(0, dev.size))).items()
        }
    finally:
        dev.close()


__all__ = ["list_", "show", "destroy", "refresh", "recompose", "seed_files"]
