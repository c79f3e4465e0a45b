"""Batch provisioning: N VMs from a template in one call, each registered in
libvirt, customized and (optionally) started.

Contract:

* ``Provisioner(filer).provision(template, count, name_pattern, ...)``
  validates everything first — unknown template or spec, bad pattern,
  count 0 or absurd, a name already in libvirt / in Coppice / taken by a
  volume, not enough free LUN IDs in the igroup or addresses in a static
  pool — and raises before anything is created.
* Each VM then goes through the named steps of ``steps`` (``PLAN``):
  clone (FlexClone of the template's base snapshot, O(1), with an empty seed
  LUN) -> seed (its NoCloud seed from the customization spec, a static
  address leased) -> resignature (the clone, a copy of the template's
  datastore, attached and resignatured; its VM folder rewritten with the new
  identity: name, UUID, MAC, instance-id, hostname) -> map (every LUN to
  the igroup at the lowest free LUN IDs, online) -> index (the VM's
  ``VMRecord`` in the pool) -> define (libvirt: NBD disks pointing at the
  target, the seed as a SCSI cdrom) -> start (with ``start``).
  Every step registers its undo right after it acts; a failure rolls
  that VM back completely (no orphan clone, map, seed, lease or domain),
  then the batch stops (``on_error="stop"``: VMs not begun are reported
  skipped) or goes on (``"skip"``).
* Returns a ``Summary`` (``records``): per-VM results with per-stage seconds
  (``STAGES``; the index entry counts in ``map``), totals per stage, which
  VMs failed at which stage and why, the igroup and NBD address the guests
  use, and warnings (a template whose base snapshot is not generalized).
* ``parallel`` > 1 runs VMs in threads: the filer serializes its
  transactions, libvirt connections are thread-safe.
* ``fault(vm, stage)``: a test hook called at the end of every stage (after
  its undo is registered); raising there is a failure of that stage.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import threading
import time
import uuid as _uuid

from ..errors import InvalidArgument
from . import custspec as cs
from . import datastore as ds
from . import registry, steps
from . import template as tpl
from .domain_xml import random_mac
from .pattern import PatternError, compile_pattern
from .provisioning_errors import BadCount, BadNamePattern, BadVMName, StageFailed, VMExists
from .records import STAGES, Summary, Target, VMPlan, VMResult
from .revert import Revert
from .seed import build_seed_iso
from .steps import DEFAULT_IGROUP, MAX_LUN_ID, ensure_igroup, free_lun_ids, seed_size

MAX_COUNT = 4096
TEST_URI = "test:///default"
_VM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}\Z")
_SEED_ALIGN = 64 * 1024

# One VM of a batch: everything it changes in the pool (clone, seed, new
# identity, maps, index entry) is one consistency point, so a VM costs one
# commit and its syncs, and a failure rolls all of it back at once; only
# then libvirt, which sees a VM whose storage is already durable.
PLAN = (
    steps.Atomic((steps.CLONE, steps.SEED, steps.RESIGNATURE, steps.MAP, steps.INDEX)),
    steps.DEFINE,
)


# ---- names ----------------------------------------------------------------------------------


def volume_for_vm(name: str) -> str:
    return name.replace("-", "_")


def check_vm_name(name: str) -> str:
    if not isinstance(name, str) or not _VM_NAME.match(name):
        raise BadVMName(name=name, why="it does not follow the naming rule")
    return name


def expand_pattern(pattern: str, count: int, start: int = 1) -> list[str]:
    """Names for VMs start..start+count-1; checks the pattern (``pattern`` module, field {n})."""
    try:
        pat = compile_pattern(pattern, {"n"})
    except PatternError as e:
        raise BadNamePattern(pattern=pattern, why=str(e)) from None
    if count > 1 and not pat.fields:
        raise BadNamePattern(pattern=pattern, why=f"it has no {{n}}, so all {count} VMs would have one name")
    names = [pat.expand(n=i) for i in range(start, start + count)]
    for nm in names:
        try:
            check_vm_name(nm)
        except BadVMName:
            raise BadNamePattern(
                pattern=pattern,
                why=f"it gives {nm!r}, not a valid VM name (letters, digits, "
                "'-', '_', starting with a letter, at most 63 characters)",
            ) from None
    if len(set(names)) != len(names):
        raise BadNamePattern(pattern=pattern, why="it gives the same name to two VMs")
    if len({volume_for_vm(n) for n in names}) != len(names):
        raise BadNamePattern(pattern=pattern, why="two names differ only by '-' and '_'")
    return names


def new_instance_id() -> str:
    return "iid-" + _uuid.uuid4().hex[:16]


def unique_mac(used: set) -> str:
    while True:
        m = random_mac()
        if m not in used:
            used.add(m)
            return m


def generalization_warning(trec: dict) -> str | None:
    """A warning when the template's base snapshot was not generalized, else None.

    Reads the template record defensively: ``is_generalized`` (a bool), or
    ``generalized`` as a bool or a report dict (``done``, ``ok``, or ``method``
    with ``none``/``skipped`` meaning nothing was done)."""
    g = trec.get("generalized")
    why = (g.get("why") or g.get("detail")) if isinstance(g, dict) else None
    if isinstance(trec.get("is_generalized"), bool):
        ok = trec["is_generalized"]
    elif isinstance(g, bool):
        ok = g
    elif isinstance(g, dict):
        for key in ("done", "ok"):
            if key in g:
                ok = bool(g[key])
                break
        else:
            ok = g.get("method") not in (None, "", "none", "skipped")
    else:
        ok, why = False, "the template record says nothing about generalization"
    if ok:
        return None
    return (
        f"template {trec.get('name')} is not generalized"
        + (f" ({why})" if why else "")
        + ": its clones share the golden VM's identity (machine-id, SSH host keys, "
        "cloud-init state) except what the customization spec sets"
    )


def _check_lun_ids(f, trec: dict, igroup: str, count: int) -> None:
    """The igroup exists (or is the default, made on demand) and has LUN IDs for the batch."""
    if not any(g["name"] == igroup for g in f.igroup_show()) and igroup != DEFAULT_IGROUP:
        from ..filer.errors import IgroupNotFound

        raise IgroupNotFound(name=igroup)
    luns_per_vm = 1 + len(ds.vms(f, trec["volume"], trec["base_snapshot"])[0]["disks"])
    free = free_lun_ids(f, igroup)
    if free < count * luns_per_vm:
        raise BadCount(
            count=count,
            why=f"igroup {igroup} has {free} free LUN IDs and {count} VMs "
            f"need {count * luns_per_vm}; use another igroup (--igroup)",
        )


def _check_addresses(f, spec, names: list[str]) -> None:
    """A static spec's pool has an address for every VM of the batch."""
    net = cs.parse_network(spec.network)
    if net["mode"] != "static":
        return
    leased = {
        k.split("/", 1)[1] for k, _ in registry.items(f, registry.IPALLOC) if k.split("/", 1)[0] == spec.name
    }
    free = 0
    for a in cs.candidate_addresses(net):
        free += str(a) not in leased
        if free >= len(names):
            return
    from .provisioning_errors import AddressPoolExhausted

    raise AddressPoolExhausted(pool=spec.network, spec=spec.name, vm=names[free])


# ---- the provisioner ------------------------------------------------------------------------


class Provisioner:
    def __init__(self, filer, state_dir: str | None = None, hypervisor_factory=None, fault=None):
        self.filer = filer
        self.state_dir = state_dir or tpl.default_state_dir(filer)
        self._hv_factory = hypervisor_factory
        self.fault = fault
        self._hvs: dict[str, object] = {}
        self._lock = threading.Lock()

    def hypervisor(self, uri: str):
        with self._lock:
            if uri not in self._hvs:
                if self._hv_factory is not None:
                    self._hvs[uri] = self._hv_factory(uri)
                else:
                    from .hypervisor import Hypervisor

                    self._hvs[uri] = Hypervisor.open(uri)
            return self._hvs[uri]

    def close(self) -> None:
        for hv in self._hvs.values():
            try:
                hv.close()
            except Exception:
                pass
        self._hvs.clear()

    # -- validation ------------------------------------------------------------------------
    def plan(
        self,
        template: str,
        count: int,
        name_pattern: str,
        custspec: str | None = None,
        connect_uri: str = TEST_URI,
        igroup: str = DEFAULT_IGROUP,
        start_index: int = 1,
    ):
        """Everything checked, nothing created: (template record, spec, [VMPlan])."""
        f = self.filer
        if isinstance(count, bool) or not isinstance(count, int):
            raise BadCount(count=count, why="give a whole number")
        if count < 1:
            raise BadCount(count=count, why="make at least one VM")
        if count > MAX_COUNT:
            raise BadCount(
                count=count,
                why=f"at most {MAX_COUNT} VMs per batch (one igroup holds {MAX_LUN_ID + 1} LUN IDs)",
            )
        trec = tpl.get(f, template)
        spec = cs.get(f, custspec) if custspec else cs.CustSpec(name="default")
        names = expand_pattern(name_pattern, count, start_index)
        hv = self.hypervisor(connect_uri)
        in_libvirt = set(hv.list_domains())
        known = dict(registry.items(f, registry.VM))
        for nm in names:
            if nm in in_libvirt:
                raise VMExists(name=nm, where=f"a domain of that name is defined in libvirt at {connect_uri}")
            if nm in known:
                raise VMExists(name=nm, where=f"Coppice made it on volume {known[nm]['volume']}")
            vol = volume_for_vm(nm)
            if f.vol_exists(vol):  # O(1); vol_show would compute every volume's space
                raise VMExists(name=nm, where=f"volume {vol} exists")
        hosts = [
            cs.hostname_for(spec.hostname, nm, i, trec["name"])
            for i, nm in zip(range(start_index, start_index + count), names, strict=False)
        ]
        from .seed import check_hostname

        for h in hosts:
            check_hostname(h)
        if len(set(hosts)) != len(hosts) and spec.hostname != "vm-name":
            raise InvalidArgument(
                detail=f"customization spec {spec.name} gives two VMs the host name "
                f"{next(h for h in hosts if hosts.count(h) > 1)}; use {{vm}} or {{n}} in it"
            )
        _check_lun_ids(f, trec, igroup, count)
        _check_addresses(f, spec, names)
        used_macs = {v.get("mac") for v in known.values()}
        plans = [
            VMPlan(
                name=nm,
                n=i,
                volume=volume_for_vm(nm),
                uuid=str(_uuid.uuid4()),
                mac=unique_mac(used_macs),
                instance_id=new_instance_id(),
                hostname=h,
            )
            for i, nm, h in zip(range(start_index, start_index + count), names, hosts, strict=False)
        ]
        return trec, spec, plans

    # -- the batch -------------------------------------------------------------------------
    def provision(
        self,
        template: str,
        count: int,
        name_pattern: str,
        custspec: str | None = None,
        connect_uri: str = TEST_URI,
        start: bool = False,
        igroup: str = DEFAULT_IGROUP,
        parallel: int = 1,
        on_error: str = "stop",
        target: Target | None = None,
        progress=None,
        start_index: int = 1,
    ) -> Summary:
        if on_error not in ("stop", "skip"):
            raise InvalidArgument(detail=f"on_error {on_error!r} is invalid: use stop or skip")
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 64:
            raise InvalidArgument(detail=f"parallel {parallel!r} is invalid: use 1 to 64 workers")
        trec, spec, plans = self.plan(
            template, count, name_pattern, custspec, connect_uri, igroup, start_index
        )
        target = target or Target.parse(None)
        ensure_igroup(self.filer, igroup)
        os.makedirs(os.path.join(self.state_dir, "serial"), exist_ok=True)
        f = self.filer
        flow = steps.Flow(
            filer=f,
            hv=self.hypervisor(connect_uri),
            uri=connect_uri,
            igroup=igroup,
            target=target,
            state_dir=self.state_dir,
            known=ds.attached(f),
            fault=self.fault,
        )
        base = ds.vms(f, trec["volume"], trec["base_snapshot"])[0]
        base.pop("slot", None)
        base_xml = ds.read_domain(f, trec["volume"], trec["slot"], trec["base_snapshot"])
        # one size for every seed of the batch (a typical seed is well under 64 KiB)
        p0 = plans[0]
        size = (
            seed_size(
                len(
                    build_seed_iso(
                        cs.render(spec, p0.name, p0.n, p0.instance_id, p0.mac, "192.0.2.1", trec["name"])
                    )
                )
            )
            + _SEED_ALIGN
        )
        stop = threading.Event()
        t0 = time.monotonic()
        results: list[VMResult] = []

        def run(p: VMPlan) -> VMResult:
            if stop.is_set():
                return VMResult(
                    name=p.name,
                    n=p.n,
                    volume=p.volume,
                    skipped=True,
                    error="not attempted: an earlier VM failed and on_error is stop",
                )
            r = self._one(flow, p, trec, spec, base, base_xml, size, start)
            if not r.ok and on_error == "stop":
                stop.set()
            if progress:
                progress(r)
            return r

        if parallel == 1:
            results = [run(p) for p in plans]
        else:
            with cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="provision") as ex:
                results = list(ex.map(run, plans))
        warning = generalization_warning(trec)
        return Summary(
            template=template,
            requested=count,
            results=results,
            seconds=time.monotonic() - t0,
            parallel=parallel,
            uri=connect_uri,
            igroup=igroup,
            target=target,
            warnings=[warning] if warning else [],
        )

    def _one(self, flow, p: VMPlan, trec, spec, base, base_xml, size, start) -> VMResult:
        """One VM through ``PLAN`` (and start); a failure undoes all it did."""
        slot = trec["slot"]
        config = dict(
            base,
            name=p.name,
            uuid=p.uuid,
            mac=p.mac,
            instance_id=p.instance_id,
            hostname=p.hostname,
            seed=ds.seed_lun(slot),
            template=trec["name"],
            base_snapshot=trec["base_snapshot"],
            custspec=spec.name if spec.created else None,
            custspec_data=spec.to_dict(),
            address=None,
            n=p.n,
            created=time.time(),
        )
        vm = steps.VMBuild(
            name=p.name,
            volume=p.volume,
            slot=slot,
            config=config,
            base_xml=base_xml,
            clone_from=(trec["volume"], trec["base_snapshot"]),
            seed_size=size,
            spec=spec,
            lease=True,
        )
        res = VMResult(name=p.name, n=p.n, volume=p.volume, uuid=p.uuid, mac=p.mac)
        with Revert() as rv:
            try:
                steps.run(flow, vm, rv, PLAN + ((steps.START,) if start else ()))
                rv.success()
                res.ok = True
            except Exception as e:
                res.failed_stage = vm.failed_stage
                res.error = str(e) or type(e).__name__
        res.stages, res.lun_ids, res.address = vm.stages, vm.lun_ids, config.get("address")
        res.rollback_errors = [str(e) for e in rv.errors]
        return res


def provision(filer, *args, state_dir: str | None = None, **kw) -> Summary:
    """One-shot form of ``Provisioner.provision`` (the same arguments)."""
    p = Provisioner(filer, state_dir=state_dir)
    try:
        return p.provision(*args, **kw)
    finally:
        p.close()


__all__ = ["Provisioner", "provision", "Target", "Summary", "VMResult", "STAGES", "StageFailed"]
