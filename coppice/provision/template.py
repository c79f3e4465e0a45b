"""Templates: a golden VM's disk image imported once into a datastore, with a
generalized base snapshot that every provisioned VM is cloned from.

Contract:

* ``import_image(filer, name, image, ...)`` reads any image ``qemu-img``
  reads (raw, qcow2, vmdk, vdi, vhdx, ...), makes datastore volume
  ``tpl_<name>`` holding one VM (slot ``vm0``): LUN ``vm0.disk0`` with the
  image's bytes (only the allocated ranges are written: the LUN stays
  thin), the VM's record and libvirt definition, and its direct-boot files
  when given. It takes snapshot ``imported`` (the image as it came), then
  **generalizes** the disk offline with libguestfs (``generalize``: empty
  machine-id, no SSH host keys, no cloud-init instance state, logs, random
  seed, leases, history; ``keep`` names operations to skip) unless
  ``generalize=False``, and takes the base snapshot ``base`` that clones
  are made from. The record's ``generalized`` is the report, file by file;
  ``is_generalized`` says whether the base is generalized (an image
  Coppice cannot generalize — no file system, encrypted, Windows — is
  still imported, with the report's ``why`` and a warning). Every step
  registers an undo; a failure leaves nothing behind.
* ``list_``/``show`` read the pool's template records; ``delete`` is
  refused while VMs depend on the template (``TemplateBusy``).
* Boot files (kernel, initrd) live in the datastore as small files, so a
  clone carries them; ``boot_paths`` materializes them once per content
  hash under ``state_dir/boot`` for libvirt, which needs host paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time

from . import datastore as ds
from . import registry
from .domain_xml import DirectBoot, Disk, DomainSpec, Interface, NbdSource, random_mac, render_domain_xml
from .import_dir import ImportPolicy, convert_to_raw, default_state_dir, probe_image
from .provisioning_errors import BadImage, HostPathRefused, TemplateBusy, TemplateExists, TemplateNotFound
from .records import check_digest
from .revert import Revert

SLOT = "vm0"
BASE_SNAPSHOT = "base"
IMPORTED_SNAPSHOT = "imported"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,50}\Z")
_CHUNK = 1 << 20
MAX_BOOT_FILE = 256 << 20  # a kernel or initrd larger than this is not one


def volume_for(name: str) -> str:
    return f"tpl_{name}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        from ..errors import InvalidArgument

        raise InvalidArgument(
            detail=f"template name {name!r} is invalid: use letters, digits and '_', "
            "starting with a letter, at most 51 characters"
        )
    return name


# ---- image reading ------------------------------------------------------------------------


def _data_ranges(fd: int, size: int):
    """(offset, length) of the allocated ranges of a sparse file."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        off = end


def copy_into_lun(filer, lun_path: str, raw_path: str, size: int) -> int:
    """Write the non-zero parts of a raw file into the LUN; returns bytes written."""
    dev = filer.open_lun(lun_path)
    written = 0
    try:
        with open(raw_path, "rb", buffering=0) as f:
            fd = f.fileno()
            for start, length in _data_ranges(fd, size):
                pos, end = start, start + length
                while pos < end:
                    n = min(_CHUNK, end - pos)
                    buf = os.pread(fd, n, pos)
                    if buf.count(0) != len(buf):  # zeros stay holes: the LUN is thin
                        dev.pwrite(pos, buf)
                        written += len(buf)
                    pos += n
        dev.flush()
    finally:
        dev.close()
    return written


# ---- generalization ------------------------------------------------------------------------


def generalize(filer, lun_path: str, *, keep=()) -> dict:
    """Clear what makes the golden VM one machine (``generalize.generalize_lun``): the report."""
    from .generalize import generalize_lun

    return generalize_lun(filer, lun_path, keep=keep)


# ---- boot files ----------------------------------------------------------------------------


def boot_paths(filer, volume: str, slot: str, record: dict, state_dir: str) -> tuple[str | None, str | None]:
    """Host paths of the VM's kernel and initrd (materialized once per content hash)."""
    out = []
    for kind in ("kernel", "initrd"):
        sha = record.get(f"{kind}_sha256")
        if not sha:
            out.append(None)
            continue
        check_digest(sha, f"{kind}_sha256", record.get("name") or slot)  # it becomes a directory name
        path = os.path.join(state_dir, "boot", sha, "vmlinuz" if kind == "kernel" else "initrd.img")
        if not os.path.exists(path):
            data = filer.file_read(volume, f"{slot}.{kind}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + f".tmp{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        out.append(path)
    return out[0], out[1]


# ---- import --------------------------------------------------------------------------------


def import_image(
    filer,
    name: str,
    image: str,
    *,
    memory_mib: int = 256,
    vcpus: int = 1,
    os_type: str = "linux",
    kernel: str | None = None,
    initrd: str | None = None,
    cmdline: str | None = None,
    state_dir: str | None = None,
    progress=None,
    generalize: bool = True,
    keep=(),
    policy: ImportPolicy | None = None,
) -> dict:
    """See the module docstring; returns ``show(name)``. Host files (image, kernel,
    initrd) are opened under ``policy`` (``import_dir``; default: the caller's own files)."""
    from . import generalize as gen_mod

    check_name(name)
    keep = gen_mod.check_keep(keep)
    if registry.get(filer, registry.TEMPLATE, name) is not None:
        raise TemplateExists(name=name)
    volume = volume_for(name)
    if filer.vol_exists(volume):
        raise TemplateExists(name=f"{name} (volume {volume} exists)")
    policy = policy or ImportPolicy.local()
    with _open(policy, image, "image") as img:
        info = probe_image(img)
        vsize = -(-int(info["virtual-size"]) // 512) * 512
        boot = _read_boot_files(policy, kernel, initrd)
        state_dir = state_dir or default_state_dir(filer)
        step = progress or (lambda msg: None)
        t0 = time.monotonic()
        with Revert() as revert:
            step("creating datastore")
            ds.create(filer, volume, name=f"template-{name}", size=max(1 << 30, 4 * vsize))
            revert.add(lambda: (filer.vol_destroy(volume, force=True), ds.forget(filer, volume)))
            lun = f"/vol/{volume}/{ds.disk_lun(SLOT)}"
            filer.lun_create(
                lun, vsize, ostype="linux" if os_type == "linux" else "image", comment=f"template {name}"
            )
            step(f"reading {info.get('format')} image")
            written = _copy_image(filer, img, info, lun, vsize)
            vm = dict(memory_mib=memory_mib, vcpus=vcpus, os_type=os_type)
            _write_slot(filer, name, volume, lun, boot, cmdline, state_dir, vm)
            step("snapshots")
            filer.snap_create(volume, IMPORTED_SNAPSHOT)
            if generalize:
                step("generalizing (libguestfs)")
                gen = gen_mod.generalize_lun(filer, lun, keep=keep)
            else:
                gen = gen_mod.skipped(keep)
            filer.snap_create(volume, BASE_SNAPSHOT)
            rec = dict(
                vm,
                name=name,
                volume=volume,
                slot=SLOT,
                base_snapshot=BASE_SNAPSHOT,
                image=os.path.abspath(img.path),
                format=info.get("format"),
                virtual_size=vsize,
                imported_bytes=written,
                generalized=gen,
                is_generalized=bool(gen["done"]),
                boot=bool(boot),
                created=time.time(),
                import_seconds=round(time.monotonic() - t0, 3),
            )
            registry.put(filer, registry.TEMPLATE, name, rec)
            revert.add(lambda: registry.delete(filer, registry.TEMPLATE, name))
            revert.success()
        return show(filer, name)


def _read_boot_files(policy: ImportPolicy, kernel: str | None, initrd: str | None) -> dict[str, bytes]:
    """The direct-boot files named, read whole under ``policy`` (at most MAX_BOOT_FILE each)."""
    boot = {}
    for kind, path in (("kernel", kernel), ("initrd", initrd)):
        if path is not None:
            with _open(policy, path, kind) as hf:
                boot[kind] = hf.read(MAX_BOOT_FILE)
    if boot.get("initrd") is not None and "kernel" not in boot:
        raise BadImage(path=initrd, detail="an initrd needs a kernel (--kernel)")
    return boot


def _copy_image(filer, img, info: dict, lun: str, vsize: int) -> int:
    """The image's bytes into ``lun`` (converted to raw first unless it is
    raw); returns the bytes written."""
    with tempfile.TemporaryDirectory(prefix="coppice-import-", dir="/var/tmp") as tmp:
        raw = img.fd_path
        if info.get("format") != "raw":
            raw = os.path.join(tmp, "disk.raw")
            convert_to_raw(img, info["format"], raw)
        return copy_into_lun(filer, lun, raw, min(vsize, os.path.getsize(raw)))


def _write_slot(filer, name: str, volume: str, lun: str, boot: dict, cmdline, state_dir: str, vm: dict):
    """The template's VM folder in its datastore: boot files, the VM record
    and its domain XML (disk through the NBD target), and the datastore's stamp."""
    record = dict(
        vm,
        name=name,
        uuid=None,
        mac=None,
        template=name,
        base_snapshot=BASE_SNAPSHOT,
        disks=[{"lun": ds.disk_lun(SLOT), "target": "vda"}],
        seed=None,
        cmdline=cmdline or ("console=ttyS0" if boot else None),
        created=time.time(),
    )
    with filer.transaction():
        for kind, data in boot.items():
            filer.file_write(volume, f"{SLOT}.{kind}", data)
            record[f"{kind}_sha256"] = hashlib.sha256(data).hexdigest()
    kpath, ipath = boot_paths(filer, volume, SLOT, record, state_dir)
    spec = DomainSpec(
        name=f"template-{name}",
        memory_mib=vm["memory_mib"],
        vcpus=vm["vcpus"],
        boot=DirectBoot(kernel=kpath, initrd=ipath, cmdline=record["cmdline"]) if kpath else None,
        disks=[Disk(target="vda", source=NbdSource(export=lun))],
        interfaces=[Interface(mac=random_mac())],
        metadata={"template": name},
    )
    record["uuid"] = spec.uuid
    record["mac"] = spec.interfaces[0].mac
    ds.write_vm(filer, volume, SLOT, record, render_domain_xml(spec))
    ds.stamp(filer, volume)


def _open(policy: ImportPolicy, path: str, what: str):
    try:
        return policy.open(path, what)
    except HostPathRefused as e:
        raise BadImage(path=path, detail=e.kwargs["why"]) from None


def get(filer, name: str) -> dict:
    rec = registry.get(filer, registry.TEMPLATE, name)
    if rec is None or not filer.vol_exists(rec["volume"]):
        raise TemplateNotFound(name=name)
    # records written before generalization was reported as done/not done
    rec.setdefault("is_generalized", bool((rec.get("generalized") or {}).get("done")))
    return rec


def dependents(filer, name: str) -> list[str]:
    return sorted(k for k, v in registry.items(filer, registry.VM) if v.get("template") == name)


def show(filer, name: str) -> dict:
    rec = dict(get(filer, name))
    rec["vms"] = dependents(filer, name)
    rec["snapshots"] = [s["name"] for s in filer.snap_list(rec["volume"])]
    rec["datastore"] = ds.descriptor(filer, rec["volume"])["name"]
    return rec


def list_(filer) -> list[dict]:
    deps: dict[str, int] = {}
    for _, v in registry.items(filer, registry.VM):
        deps[v.get("template")] = deps.get(v.get("template"), 0) + 1
    return [dict(rec, vms=deps.get(name, 0)) for name, rec in registry.items(filer, registry.TEMPLATE)]


def delete(filer, name: str) -> None:
    rec = registry.get(filer, registry.TEMPLATE, name)
    if rec is None:
        raise TemplateNotFound(name=name)
    vms = dependents(filer, name)
    clones = [c for c in filer.vol_info(rec["volume"])["clones"]] if filer.vol_exists(rec["volume"]) else []
    if vms or clones:
        names = vms or clones
        raise TemplateBusy(
            name=name, count=len(names), vms=", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        )
    with filer.transaction():
        if filer.vol_exists(rec["volume"]):
            filer.vol_destroy(rec["volume"], force=True)
        ds.forget(filer, rec["volume"])
        registry.delete(filer, registry.TEMPLATE, name)
