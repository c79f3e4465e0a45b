"""Batch provisioning: N VMs from a template in one call, each registered in
libvirt, customized and (optionally) started.

Contract:

* ``Provisioner(filer).provision(template, count, name_pattern, ...)``
  validates everything first — unknown template or spec, bad pattern,
  count 0 or absurd, a name already in libvirt / in Coppice / taken by a
  volume, not enough free LUN IDs in the igroup or addresses in a static
  pool — and raises before anything is created.
* Each VM then goes through the stages ``STAGES``:
    clone        FlexClone of the template's base snapshot (O(1));
    seed         its NoCloud seed (custspec.render -> seed.build_seed_iso)
                 written into a new LUN ``<slot>.seed`` of the clone;
    resignature  the clone is a copy of the template's datastore: it is
                 attached, resignatured, and its VM folder rewritten with the
                 new identity (name, UUID, MAC, instance-id, hostname);
    map          every LUN of the clone mapped to the host's igroup with the
                 lowest free LUN IDs, online;
    define       the libvirt domain defined: new name, UUID, MAC, NBD disks
                 pointing at the target (host/port or Unix socket, TLS),
                 the seed as a SCSI cdrom; the VM entered in the pool's index;
    start        (with ``start``) the domain started.
  Every stage registers its undo right after it acts; a failure rolls
  that VM back completely (no orphan clone, map, seed, lease or domain),
  then the batch stops (``on_error="stop"``: VMs not begun are reported
  skipped) or goes on (``"skip"``).
* Returns a ``Summary``: per-VM results with per-stage seconds, totals per
  stage, which VMs failed at which stage and why.
* ``parallel`` > 1 runs VMs in threads: the filer serializes its
  transactions, libvirt connections are thread-safe.
* ``fault(vm, stage)``: a test hook called at the end of every stage (after
  its undo is registered); raising there is a failure of that stage.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import re
import string
import threading
import time
import uuid as _uuid

from ..errors import InvalidArgument
from . import custspec as cs
from . import datastore as ds
from . import registry
from . import template as tpl
from .domain_xml import (
    DirectBoot,
    Disk,
    Interface,
    NbdSource,
    parse_domain_xml,
    random_mac,
    render_domain_xml,
)
from .provisioning_errors import BadCount, BadNamePattern, BadVMName, StageFailed, VMExists
from .revert import Revert
from .seed import build_seed_iso

STAGES = ("clone", "seed", "resignature", "map", "define", "start")
DEFAULT_IGROUP = "coppice_host"
DEFAULT_INITIATORS = ("127.0.0.1", "::1")
MAX_COUNT = 4096
MAX_LUN_ID = 4095
TEST_URI = "test:///default"
_VM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}\Z")
_SEED_ALIGN = 64 * 1024


# ---- plain data -----------------------------------------------------------------------------


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class VMPlan:
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
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_totals().items()},
            "stage_per_vm_ms": {
                k: round(1000 * v / max(1, len(self.results)), 3) for k, v in self.stage_totals().items()
            },
            "vms": [r.to_dict() for r in self.results],
        }


# ---- names ----------------------------------------------------------------------------------


def volume_for_vm(name: str) -> str:
    return name.replace("-", "_")


def check_vm_name(name: str) -> str:
    if not isinstance(name, str) or not _VM_NAME.match(name):
        raise BadVMName(name=name, why="it does not follow the naming rule")
    return name


def expand_pattern(pattern: str, count: int, start: int = 1) -> list[str]:
    """Names for VMs start..start+count-1; checks the pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise BadNamePattern(pattern=pattern, why="it is empty")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as e:
        raise BadNamePattern(pattern=pattern, why=str(e)) from None
    for fld in fields:
        if fld != "n":
            raise BadNamePattern(pattern=pattern, why=f"unknown field {{{fld}}}: only {{n}} is known")
    if count > 1 and not fields:
        raise BadNamePattern(pattern=pattern, why=f"it has no {{n}}, so all {count} VMs would have one name")
    try:
        names = [pattern.format(n=i) for i in range(start, start + count)]
    except (ValueError, IndexError, KeyError) as e:
        raise BadNamePattern(pattern=pattern, why=str(e)) from None
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


# ---- the pieces shared with vm.py and dsclone.py --------------------------------------------


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
    log = os.path.join(state_dir, "serial", f"{record['name']}.log")
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
        serial_log=log,
        metadata=meta,
    )
    return render_domain_xml(spec)


def map_all(filer, volume: str, igroup: str, luns: list[str]) -> dict:
    """Map the LUNs (lowest free IDs) and bring them online, in one transaction."""
    ids = {}
    with filer.transaction():
        for lun in luns:
            path = f"/vol/{volume}/{lun}"
            info = filer.lun_info(path)
            have = {m["igroup"]: m["lun_id"] for m in info["maps"]}
            ids[path] = have[igroup] if igroup in have else filer.lun_map(path, igroup)
            if not info["online"]:
                filer.lun_online(path)
    return ids


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
        vols = {v["name"] for v in f.vol_show()} if count > 64 else None
        for nm in names:
            if nm in in_libvirt:
                raise VMExists(name=nm, where=f"a domain of that name is defined in libvirt at {connect_uri}")
            if nm in known:
                raise VMExists(name=nm, where=f"Coppice made it on volume {known[nm]['volume']}")
            vol = volume_for_vm(nm)
            if (vol in vols) if vols is not None else f.vol_exists(vol):
                raise VMExists(name=nm, where=f"volume {vol} exists")
        hosts = [
            cs.hostname_for(spec.hostname, nm, i)
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
        if any(g["name"] == igroup for g in f.igroup_show()) or igroup == DEFAULT_IGROUP:
            luns_per_vm = 1 + sum(1 for _ in ds.vms(f, trec["volume"], trec["base_snapshot"])[0]["disks"])
            free = free_lun_ids(f, igroup)
            if free < count * luns_per_vm:
                raise BadCount(
                    count=count,
                    why=f"igroup {igroup} has {free} free LUN IDs and {count} VMs "
                    f"need {count * luns_per_vm}; use another igroup (--igroup)",
                )
        else:
            from ..filer.errors import IgroupNotFound

            raise IgroupNotFound(name=igroup)
        net = cs.parse_network(spec.network)
        if net["mode"] == "static":
            leased = {
                k.split("/", 1)[1]
                for k, _ in registry.items(f, registry.IPALLOC)
                if k.split("/", 1)[0] == spec.name
            }
            free = 0
            for a in cs.candidate_addresses(net):
                free += str(a) not in leased
                if free >= count:
                    break
            if free < count:
                from .provisioning_errors import AddressPoolExhausted

                raise AddressPoolExhausted(pool=spec.network, spec=spec.name, vm=names[free])
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
        hv = self.hypervisor(connect_uri)
        base = ds.vms(self.filer, trec["volume"], trec["base_snapshot"])
        ctx = {
            "trec": trec,
            "spec": spec,
            "hv": hv,
            "uri": connect_uri,
            "start": start,
            "igroup": igroup,
            "target": target,
            "base": base[0],
            "known": ds.attached(self.filer),
            "base_xml": ds.read_domain(self.filer, trec["volume"], trec["slot"], trec["base_snapshot"]),
            # one size for every seed of the batch (a typical seed is well under 64 KiB)
            "seed_size": seed_size(
                len(
                    build_seed_iso(
                        cs.render(
                            spec, plans[0].name, plans[0].n, plans[0].instance_id, plans[0].mac, "192.0.2.1"
                        )
                    )
                )
            )
            + _SEED_ALIGN,
        }
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
            r = self._one(p, ctx)
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
        return Summary(
            template=template,
            requested=count,
            results=results,
            seconds=time.monotonic() - t0,
            parallel=parallel,
            uri=connect_uri,
        )

    def _one(self, p: VMPlan, ctx: dict) -> VMResult:
        f = self.filer
        trec, spec, hv = ctx["trec"], ctx["spec"], ctx["hv"]
        slot = trec["slot"]
        res = VMResult(name=p.name, n=p.n, volume=p.volume, uuid=p.uuid, mac=p.mac)
        cur = {"stage": None, "t": 0.0}

        def begin(stage):
            cur["stage"], cur["t"] = stage, time.perf_counter()

        def end():
            if self.fault is not None:
                self.fault(p.name, cur["stage"])
            res.stages[cur["stage"]] = time.perf_counter() - cur["t"]

        with Revert() as rv:
            try:
                begin("clone")
                seed_path = f"/vol/{p.volume}/{ds.seed_lun(slot)}"
                with f.transaction():  # clone and its empty seed LUN: one commit
                    f.clone_create(p.volume, trec["volume"], trec["base_snapshot"], remap=True)
                    rv.add(lambda: destroy_volume(f, p.volume))
                    f.lun_create(
                        seed_path, ctx["seed_size"], ostype="linux", comment="cloud-init NoCloud seed"
                    )
                end()

                begin("seed")
                address = cs.allocate_address(f, spec, p.name)
                if address:
                    res.address = address
                    rv.add(lambda: cs.release_address(f, spec.name, address))
                cfg = cs.render(spec, p.name, p.n, p.instance_id, p.mac, address)
                # no flush: the next stage's commit syncs the data before its metadata
                write_seed(
                    f, seed_path, build_seed_iso(cfg), create=False, flush=False, size=ctx["seed_size"]
                )
                end()

                with f.transaction():  # resignature, map and the VM's index entry: one commit
                    begin("resignature")
                    base = ctx["base"]
                    record = dict(
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
                        address=address,
                        n=p.n,
                        created=time.time(),
                    )
                    record.pop("slot", None)
                    ds.attach(f, p.volume, "auto", known=ctx["known"])
                    rv.add(lambda: (ds.forget(f, p.volume), ctx["known"].pop(p.volume, None)))
                    xml = domain_xml_for(
                        f, p.volume, slot, record, ctx["target"], self.state_dir, ctx["base_xml"]
                    )
                    ds.write_vm(f, p.volume, slot, record, xml)
                    end()

                    begin("map")
                    luns = [d["lun"] for d in record["disks"]] + [record["seed"]]
                    res.lun_ids = map_all(f, p.volume, ctx["igroup"], luns)
                    rv.add(lambda: unmap_all(f, list(res.lun_ids), ctx["igroup"]))
                    registry.put(
                        f,
                        registry.VM,
                        p.name,
                        {
                            "name": p.name,
                            "volume": p.volume,
                            "slot": slot,
                            "template": trec["name"],
                            "base_snapshot": trec["base_snapshot"],
                            "uri": ctx["uri"],
                            "uuid": p.uuid,
                            "mac": p.mac,
                            "instance_id": p.instance_id,
                            "hostname": p.hostname,
                            "custspec": record["custspec"],
                            "address": address,
                            "igroup": ctx["igroup"],
                            "luns": list(res.lun_ids),
                            "lun_ids": res.lun_ids,
                            "target": ctx["target"].to_dict(),
                            "n": p.n,
                            "serial_log": os.path.join(self.state_dir, "serial", f"{p.name}.log"),
                            "created": time.time(),
                        },
                    )
                    rv.add(lambda: registry.delete(f, registry.VM, p.name))
                    end()
                    t_map = time.perf_counter()
                res.stages["map"] += time.perf_counter() - t_map  # the commit of the three stages above

                begin("define")
                hv.define(xml)
                rv.add(lambda: hv.remove(p.name))
                end()

                if ctx["start"]:
                    begin("start")
                    log = os.path.join(self.state_dir, "serial", f"{p.name}.log")
                    if os.path.exists(log):
                        os.unlink(log)
                    hv.start(p.name)
                    rv.add(lambda: hv.destroy(p.name))
                    end()
                rv.success()
                res.ok = True
            except Exception as e:
                res.failed_stage = cur["stage"]
                res.error = str(e) or type(e).__name__
                res.stages[cur["stage"]] = time.perf_counter() - cur["t"]
        res.rollback_errors = [str(e) for e in rv.errors]
        return res


def provision(
    filer,
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
    state_dir: str | None = None,
) -> Summary:
    """One-shot form of ``Provisioner.provision``."""
    p = Provisioner(filer, state_dir=state_dir)
    try:
        return p.provision(
            template,
            count,
            name_pattern,
            custspec,
            connect_uri,
            start,
            igroup,
            parallel,
            on_error,
            target,
            progress,
        )
    finally:
        p.close()


__all__ = ["Provisioner", "provision", "Target", "Summary", "VMResult", "STAGES", "StageFailed"]
