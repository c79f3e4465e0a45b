"""The steps that turn a clone into a registered VM, written once and used by
every flow that makes one: ``vm provision`` (provisioner), ``datastore
clone --register`` and ``datastore register`` (dsclone), ``vm refresh`` and
``vm recompose`` (vm).

Contract:

* A ``VMBuild`` is one VM on its way: its names, its folder record
  (``config``, what ``<slot>.vm.json`` will hold), the definition it is
  built on, and what the steps fill in (address, LUN IDs, domain XML,
  seconds per stage). A ``Flow`` is what a whole batch shares (filer,
  libvirt connection, igroup, NBD target, state directory).
* Steps, in the order flows use them::

    clone        FlexClone of (volume, snapshot) into the VM's volume, with an
                 empty seed LUN when the VM gets a new seed
    seed         its NoCloud seed: rendered from a customization spec (a
                 static address leased first) or a given image copied
    resignature  the datastore attached (a copy is resignatured), the domain
                 XML rendered, the VM folder written with the new identity
    map          every LUN of the VM mapped to the igroup, lowest free LUN IDs,
                 online
    index        the VM entered in the pool's index (``VMRecord``)
    define       the libvirt domain defined (or replaced)
    start        the domain started

  Each step acts, then registers its undo on the ``Revert`` it is given
  (map undoes only the maps it made), so a failure at any later point
  undoes exactly what was done.
* ``run(flow, vm, revert, plan)``: a plan is a sequence of steps and
  ``Atomic`` groups (steps in one filer transaction, one commit). Seconds
  go to ``vm.stages`` under each step's stage (``records.STAGES``; the
  commit of a group counts for its last step); ``flow.fault(vm, stage)``
  (a test hook) is called at the end of each stage, after its undo is
  registered. On an exception ``vm.failed_stage`` names the stage and the
  exception propagates.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

from . import custspec as cs
from . import datastore as ds
from . import registry
from . import template as tpl
from .domain_xml import DirectBoot, Disk, Interface, parse_domain_xml, render_domain_xml
from .records import Target, VMRecord
from .revert import Revert
from .seed import build_seed_iso

DEFAULT_IGROUP = "coppice_host"
DEFAULT_INITIATORS = ("127.0.0.1", "::1")
MAX_LUN_ID = 4095
_SEED_ALIGN = 64 * 1024


@dataclasses.dataclass
class Flow:
    """What every VM of one operation shares."""

    filer: object
    hv: object
    uri: str
    igroup: str
    target: Target
    state_dir: str
    known: dict | None = None  # attached datastores, kept across a batch (attach is then O(1))
    fault: Callable | None = None


@dataclasses.dataclass
class VMBuild:
    """One VM going through the steps."""

    name: str
    volume: str  # where the VM lives when done
    slot: str
    config: dict  # its folder record as it is being built
    base_xml: str  # the definition its own is built on (hardware kept)
    work_volume: str = ""  # where the steps write (a temporary clone before a swap); default: volume
    clone_from: tuple[str, str] | None = None  # (volume, snapshot) the clone step clones
    seed_size: int | None = None  # the clone step makes an empty seed LUN of this size
    spec: cs.CustSpec | None = None  # the seed step renders the seed from it...
    seed_image: bytes | None = None  # ...or writes this image
    lease: bool = False  # the seed step leases a static address of the spec
    attach: bool = True  # the resignature step attaches the datastore
    replace: bool = False  # the define step replaces an existing definition
    created: float | None = None  # index entry's creation time (kept by refresh)
    lun_ids: dict = dataclasses.field(default_factory=dict)
    xml: str | None = None
    stages: dict = dataclasses.field(default_factory=dict)
    failed_stage: str | None = None

    def __post_init__(self) -> None:
        self.work_volume = self.work_volume or self.volume

    @property
    def luns(self) -> list[str]:
        c = self.config
        return [d["lun"] for d in c["disks"]] + ([c["seed"]] if c.get("seed") else [])


# ---- pieces the steps share ------------------------------------------------------------------


def ensure_igroup(filer, igroup: str) -> None:
    if not any(g["name"] == igroup for g in filer.igroup_show()):
        if igroup != DEFAULT_IGROUP:
            from ..filer.errors import IgroupNotFound

            raise IgroupNotFound(name=igroup)
        filer.igroup_create(igroup, DEFAULT_INITIATORS, ostype="linux", protocol="nbd")


def free_lun_ids(filer, igroup: str) -> int:
    used = {m["lun_id"] for m in filer.lun_maps() if m["igroup"] == igroup}
    return MAX_LUN_ID + 1 - len(used)


def seed_size(iso_len: int) -> int:
    return max(_SEED_ALIGN, -(-iso_len // _SEED_ALIGN) * _SEED_ALIGN)


def write_seed(
    filer, path: str, iso: bytes, create: bool = True, flush: bool = True, size: int | None = None
) -> None:
    size = size or seed_size(len(iso))
    if create:
        filer.lun_create(path, size, ostype="linux", comment="cloud-init NoCloud seed")
    dev = filer.open_lun(path)
    try:
        if len(iso) > dev.size:
            filer.lun_resize(path, seed_size(len(iso)))
        elif not create:
            dev.zero(0, dev.size)
        dev.pwrite(0, iso)
        if flush:
            dev.flush()
    finally:
        dev.close()


def serial_log(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, "serial", f"{name}.log")


def domain_xml_for(
    filer, volume: str, slot: str, record: dict, target: Target, state_dir: str, base_xml: str
) -> str:
    """The libvirt definition of the VM in ``record``, built on the datastore's
    definition ``base_xml`` (hardware kept; identity, disks, boot, log replaced)."""
    spec = parse_domain_xml(base_xml, strict=False)
    disks = [
        Disk(target=d["target"], source=target.source(f"/vol/{volume}/{d['lun']}")) for d in record["disks"]
    ]
    if record.get("seed"):
        disks.append(
            Disk(
                target="sda",
                source=target.source(f"/vol/{volume}/{record['seed']}"),
                device="cdrom",
                bus="scsi",
                readonly=True,
            )
        )
    kernel, initrd = tpl.boot_paths(filer, volume, slot, record, state_dir)
    boot = (
        DirectBoot(kernel=kernel, initrd=initrd, cmdline=record.get("cmdline") or "console=ttyS0")
        if kernel
        else spec.boot
    )
    ifaces = (
        [dataclasses.replace(spec.interfaces[0], mac=record["mac"])]
        if spec.interfaces
        else [Interface(mac=record["mac"])]
    )
    meta = {
        "template": record.get("template") or "",
        "volume": volume,
        "slot": slot,
        "instance-id": record.get("instance_id") or "",
    }
    spec = dataclasses.replace(
        spec,
        name=record["name"],
        uuid=record["uuid"],
        disks=disks,
        boot=boot,
        interfaces=ifaces + list(spec.interfaces[1:]),
        serial_log=serial_log(state_dir, record["name"]),
        metadata=meta,
    )
    return render_domain_xml(spec)


def map_all(filer, volume: str, igroup: str, luns: list[str]) -> tuple[dict, list[str]]:
    """Map the LUNs (lowest free IDs) and bring them online, in one transaction:
    ({path: LUN ID}, [paths this call mapped])."""
    ids, made = {}, []
    with filer.transaction():
        for lun in luns:
            path = f"/vol/{volume}/{lun}"
            info = filer.lun_info(path)
            have = {m["igroup"]: m["lun_id"] for m in info["maps"]}
            if igroup in have:
                ids[path] = have[igroup]
            else:
                ids[path] = filer.lun_map(path, igroup)
                made.append(path)
            if not info["online"]:
                filer.lun_online(path)
    return ids, made


def unmap_all(filer, paths, igroup: str) -> None:
    for p in paths:
        try:
            filer.lun_unmap(p, igroup)
        except Exception:
            pass  # already unmapped or gone: nothing left to undo


def destroy_volume(filer, volume: str) -> None:
    if filer.vol_exists(volume):
        filer.vol_destroy(volume, force=True)
    ds.forget(filer, volume)


# ---- the steps -------------------------------------------------------------------------------


def _clone(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    f = flow.filer
    parent, snapshot = vm.clone_from
    f.clone_create(vm.work_volume, parent, snapshot, remap=True)
    rv.add(lambda: destroy_volume(f, vm.work_volume))
    if vm.seed_size:
        f.lun_create(
            f"/vol/{vm.work_volume}/{vm.config['seed']}",
            vm.seed_size,
            ostype="linux",
            comment="cloud-init NoCloud seed",
        )


def _seed(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    f, c = flow.filer, vm.config
    path = f"/vol/{vm.work_volume}/{c['seed']}"
    create = not f.object_exists(vm.work_volume, c["seed"])
    if vm.seed_image is not None:
        write_seed(f, path, vm.seed_image, create=create)
        return
    spec = vm.spec
    if vm.lease:
        c["address"] = address = cs.allocate_address(f, spec, vm.name)
        if address:
            rv.add(lambda: cs.release_address(f, spec.name, address))
    cfg = cs.render(
        spec, vm.name, c.get("n") or 0, c["instance_id"], c["mac"], c.get("address"), c.get("template")
    )
    # no flush: the commit that follows (the VM's transaction, or the next atomic group's) syncs
    # data before its metadata
    write_seed(f, path, build_seed_iso(cfg), create=create, flush=False, size=vm.seed_size)


def _resignature(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    f = flow.filer
    if vm.attach:
        ds.attach(f, vm.work_volume, "auto", known=flow.known)

        def forget():
            ds.forget(f, vm.work_volume)
            if flow.known is not None:
                flow.known.pop(vm.work_volume, None)

        rv.add(forget)
    vm.xml = domain_xml_for(f, vm.volume, vm.slot, vm.config, flow.target, flow.state_dir, vm.base_xml)
    ds.write_vm(f, vm.work_volume, vm.slot, vm.config, vm.xml)


def _map(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    f = flow.filer
    vm.lun_ids, made = map_all(f, vm.volume, flow.igroup, vm.luns)
    rv.add(lambda: unmap_all(f, made, flow.igroup))


def _index(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    f, c = flow.filer, vm.config
    rec = VMRecord(
        name=vm.name,
        volume=vm.volume,
        slot=vm.slot,
        uri=flow.uri,
        uuid=c["uuid"],
        mac=c["mac"],
        igroup=flow.igroup,
        lun_ids=dict(vm.lun_ids),
        target=flow.target.to_dict(),
        template=c.get("template"),
        base_snapshot=c.get("base_snapshot"),
        instance_id=c.get("instance_id"),
        hostname=c.get("hostname"),
        custspec=c.get("custspec"),
        address=c.get("address"),
        n=c.get("n"),
        serial_log=serial_log(flow.state_dir, vm.name),
        created=vm.created or time.time(),
    )
    registry.put(f, registry.VM, vm.name, rec.to_dict())
    rv.add(lambda: registry.delete(f, registry.VM, vm.name))


def _define(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    if vm.replace:
        flow.hv.define(vm.xml, replace=True)
        return
    flow.hv.define(vm.xml)
    rv.add(lambda: flow.hv.remove(vm.name))


def _start(flow: Flow, vm: VMBuild, rv: Revert) -> None:
    log = serial_log(flow.state_dir, vm.name)
    if os.path.exists(log):  # the serial log then holds this boot only
        os.unlink(log)
    flow.hv.start(vm.name)
    rv.add(lambda: flow.hv.destroy(vm.name))


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    stage: str  # the stage its seconds count in
    act: Callable[[Flow, VMBuild, Revert], None]


@dataclasses.dataclass(frozen=True)
class Atomic:
    """Steps that commit together (one filer transaction)."""

    steps: tuple[Step, ...]


CLONE = Step("clone", "clone", _clone)
SEED = Step("seed", "seed", _seed)
RESIGNATURE = Step("resignature", "resignature", _resignature)
MAP = Step("map", "map", _map)
INDEX = Step("index", "map", _index)
DEFINE = Step("define", "define", _define)
START = Step("start", "start", _start)


def run(flow: Flow, vm: VMBuild, rv: Revert, plan) -> None:
    """Run the plan's steps on ``vm``; see the module docstring."""
    flat = [s for item in plan for s in (item.steps if isinstance(item, Atomic) else (item,))]
    i = 0
    for item in plan:
        group = item.steps if isinstance(item, Atomic) else (item,)
        if isinstance(item, Atomic):
            with flow.filer.transaction():
                for s in group:
                    _one_step(flow, vm, rv, s, flat, i)
                    i += 1
                t = time.perf_counter()
                vm.failed_stage = group[-1].stage  # a failing commit fails the group's last stage
            vm.stages[group[-1].stage] += time.perf_counter() - t
        else:
            _one_step(flow, vm, rv, item, flat, i)
            i += 1
    vm.failed_stage = None


def _one_step(flow, vm, rv, step: Step, flat, i: int) -> None:
    vm.failed_stage = step.stage
    t = time.perf_counter()
    try:
        step.act(flow, vm, rv)
        last_of_stage = i + 1 == len(flat) or flat[i + 1].stage != step.stage
        if flow.fault is not None and last_of_stage:
            flow.fault(vm.name, step.stage)
    finally:
        vm.stages[step.stage] = vm.stages.get(step.stage, 0.0) + time.perf_counter() - t
