"""The tiny bootable "golden VM" template, built from Debian packages only.

Contract: ``build_tiny_template(cache_dir)`` returns a ``TinyTemplate``: a
Debian cloud kernel, a busybox initramfs and a small raw template disk, all
plain files under ``cache_dir``, plus the kernel command line to boot them
with (direct kernel boot: kernel and initrd live outside the disk and the
domain XML references them). Nothing is installed on the host: the kernel
comes from ``apt-get download linux-image-cloud-amd64`` (its versioned
dependency, really) + ``dpkg -x``; busybox from the host's busybox-static
(or downloaded the same way). The only network it touches is the Debian
mirror apt is configured for, once per cache.

Guarantees:
- Cached: a second call returns at once; files are only (re)built when
  missing. Each artefact is written to a temporary name and renamed, and a
  file lock serializes concurrent builders, so a reader never sees half a
  file. The build directory's name carries a hash of the recipe (init
  script, module list, disk layout), so a changed recipe never reuses a
  stale initramfs.
- Fresh machine: about 5 s (26 MB kernel .deb download dominates) — well
  under a minute.

What the guest does on every boot (its /init, busybox sh):
1. loads, with insmod, the modules in ``MODULES`` order (dependencies first,
   virtio_ring before virtio as ENVIRONMENT.md found): virtio PCI + virtio
   block for its disks, virtio-scsi + sr_mod + cdrom for a seed on a SCSI
   cdrom, libata + ata_piix for one on an IDE cdrom, isofs to read the seed;
2. waits for its root disk (``coppice.root=vda`` on the command line) and
   for a block device whose ISO 9660 volume label is ``cidata`` (any
   /dev/vd* or /dev/sr*; a virtio disk, a virtio-scsi cdrom or an IDE cdrom);
3. reads the NoCloud seed: ``local-hostname`` and ``instance-id`` from
   meta-data, and hashes user-data;
4. sets the hostname and prints to the serial console::

       Coppice guest <hostname> login:
       COPPICE-HOSTNAME=<hostname>
       COPPICE-INSTANCE=<instance-id>
       COPPICE-MACHINE-ID=<machine-id found in the disk's identity region>
       COPPICE-USERDATA-SHA256=<sha256 of user-data>

5. writes ``COPPICE-MARKER <hostname> <instance-id>\\n`` (NUL-padded to
   512 bytes) at ``MARKER_OFFSET`` of its root disk, fsyncs it (a FLUSH
   reaches the NBD server), prints ``COPPICE-MARKER-WRITTEN``;
6. ``poweroff -f`` (ACPI power off: the domain needs ``<acpi/>``), unless
   the command line says ``coppice.poweroff=0``, then it gives a shell on
   the console.

Template disk layout (raw, ``DISK_SIZE`` bytes; this is its whole format):

    offset 0        4 KiB  header: b"COPPICE-TEMPLATE v1\\n" then
                           "key=value\\n" lines (kernel version, layout),
                           NUL padded
    offset 4 KiB    4 KiB  identity region: "machine-id=<32 hex>\\n", NUL
                           padded, where a guest would keep its identity;
                           the template is built generalized: the region
                           is empty, so its clones print
                           COPPICE-MACHINE-ID=none
    offset 1 MiB    512 B  marker sector, zero in the template; the guest
                           writes its marker here on each boot
    the rest               zeros (sparse)
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from .errors import GuestImageError, KernelPackageUnavailable

DEFAULT_CACHE_DIR = "/var/cache/coppice/guest"
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"

# Disk layout (see the module docstring).
TEMPLATE_MAGIC = b"COPPICE-TEMPLATE v1\n"
HEADER_SIZE = 4096
IDENTITY_OFFSET = 4096
IDENTITY_SIZE = 4096
MARKER_OFFSET = 1024 * 1024
MARKER_SIZE = 512
DISK_SIZE = 64 * 1024 * 1024

# Load order matters: each module after its dependencies (checked against
# the modules' own depends= at build time).
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "scsi_common",
    "scsi_mod",
    "virtio_scsi",
    "cdrom",
    "sr_mod",
    "libata",
    "ata_piix",
    "isofs",
)

BASE_CMDLINE = "console=ttyS0 panic=-1 loglevel=4 coppice.root=vda"

INIT_SCRIPT = r"""#!/bin/sh
# Coppice tiny guest /init: see coppice/provision/guest_image.py.
export PATH=/bin:/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
say() { echo "coppice-init: $*"; }

for m in $(cat /etc/coppice-modules); do
    insmod /lib/modules/$m.ko || say "insmod $m failed"
done

root=vda; stay=0
for a in $(cat /proc/cmdline); do
    case "$a" in
        coppice.root=*) root="${a#coppice.root=}" ;;
        coppice.poweroff=0) stay=1 ;;
    esac
done

i=0
while [ ! -b "/dev/$root" ] && [ $i -lt 300 ]; do usleep 100000; i=$((i+1)); done
[ -b "/dev/$root" ] || say "root disk /dev/$root did not appear"

label() { dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' \000' | tr A-Z a-z; }
seed=""
i=0
while [ -z "$seed" ] && [ $i -lt 100 ]; do
    for d in /dev/vd* /dev/sr*; do
        [ -b "$d" ] || continue
        [ "$d" = "/dev/$root" ] && continue
        if [ "$(label "$d")" = "cidata" ]; then seed="$d"; break; fi
    done
    [ -n "$seed" ] || { usleep 100000; i=$((i+1)); }
done

val() { sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1 | tr -d "\"'\r"; }
host=coppice-template; iid=none; udsha=none
if [ -n "$seed" ] && mount -t iso9660 -o ro "$seed" /mnt/seed; then
    say "seed $seed"
    if [ -f /mnt/seed/meta-data ]; then
        h=$(val local-hostname /mnt/seed/meta-data); [ -n "$h" ] && host="$h"
        v=$(val instance-id /mnt/seed/meta-data); [ -n "$v" ] && iid="$v"
    fi
    [ -f /mnt/seed/user-data ] && udsha=$(sha256sum < /mnt/seed/user-data | cut -d ' ' -f 1)
    umount /mnt/seed
else
    say "no cidata seed found"
fi

hostname "$host"
mid=$(dd if="/dev/$root" bs=4096 skip=1 count=1 2>/dev/null | tr -d '\000' | sed -n 's/^machine-id=//p' | head -n 1)
echo
echo "Coppice guest $(hostname) login:"
echo "COPPICE-HOSTNAME=$(hostname)"
echo "COPPICE-INSTANCE=$iid"
echo "COPPICE-MACHINE-ID=${mid:-none}"
echo "COPPICE-USERDATA-SHA256=$udsha"

if printf 'COPPICE-MARKER %s %s\n' "$host" "$iid" | dd of="/dev/$root" bs=512 seek=2048 count=1 conv=notrunc,sync,fsync 2>/dev/null; then
    sync
    echo "COPPICE-MARKER-WRITTEN"
else
    echo "COPPICE-MARKER-FAILED"
fi

if [ "$stay" = 1 ]; then
    exec setsid cttyhack sh
fi
poweroff -f
"""


@dataclasses.dataclass(frozen=True)
class TinyTemplate:
    """Files for one direct-kernel-boot guest; the disk is the template (copy it, never boot it in place)."""

    kernel: str
    initrd: str
    disk_image: str
    cmdline: str
    kernel_version: str
    machine_id: str
    disk_size: int = DISK_SIZE
    root_target: str = "vda"


def _recipe_hash() -> str:
    h = hashlib.sha256()
    h.update(INIT_SCRIPT.encode())
    h.update(",".join(MODULES).encode())
    h.update(f"{DISK_SIZE}:{MARKER_OFFSET}:{IDENTITY_OFFSET}".encode())
    h.update(TEMPLATE_MAGIC)
    h.update(b"built-generalized")
    return h.hexdigest()[:12]


def build_tiny_template(
    cache_dir: str | os.PathLike | None = None, *, kernel_deb: str | None = None
) -> TinyTemplate:
    """Build (or reuse) the tiny template under cache_dir and return its files.

    kernel_deb: a linux-image-*-cloud-amd64 .deb to use instead of
    downloading one (offline machines).
    """
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GuestImageError(detail=f"cannot create cache directory {cache}: {e}") from e
    with open(cache / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        kroot, kver = _kernel_tree(cache, kernel_deb)
        out = cache / f"tiny-{kver}-{_recipe_hash()}"
        out.mkdir(exist_ok=True)
        kernel = out / "vmlinuz"
        if not kernel.exists():
            _atomic_copy(kroot / "boot" / f"vmlinuz-{kver}", kernel)
        initrd = out / "initrd.img"
        if not initrd.exists():
            _atomic_write(initrd, build_initramfs(kroot / "lib" / "modules" / kver, _busybox(cache)))
        disk = out / "template.raw"
        if not disk.exists():
            _write_template_disk(disk, kver)
        machine_id = read_identity(disk).get("machine-id", "")
        return TinyTemplate(
            kernel=str(kernel),
            initrd=str(initrd),
            disk_image=str(disk),
            cmdline=BASE_CMDLINE,
            kernel_version=kver,
            machine_id=machine_id,
        )


# -- kernel -----------------------------------------------------------------


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GuestImageError(detail=f"{' '.join(cmd)}: {e}") from e
    if r.returncode != 0:
        raise GuestImageError(detail=f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def _kernel_package() -> str:
    # The metapackage only depends on the versioned kernel; download that.
    try:
        out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", KERNEL_METAPACKAGE])
    except GuestImageError as e:
        raise KernelPackageUnavailable(package=KERNEL_METAPACKAGE, detail=str(e)) from e
    m = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", out)
    if not m:
        raise KernelPackageUnavailable(
            package=KERNEL_METAPACKAGE, detail="apt-cache shows no versioned linux-image dependency"
        )
    return m.group(1)


def _apt_download(package: str, debs: Path) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        os.chmod(tmp, 0o777)  # let apt's _apt user write there (else a warning, not an error)
        try:
            _run(["apt-get", "download", "-q", package], cwd=Path(tmp))
        except GuestImageError as e:
            raise KernelPackageUnavailable(package=package, detail=str(e)) from e
        got = list(Path(tmp).glob(f"{package}_*.deb"))
        if not got:
            raise KernelPackageUnavailable(package=package, detail="apt-get download produced no .deb")
        dst = debs / got[0].name
        os.replace(got[0], dst)
        return dst


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).strip()


def _kernel_tree(cache: Path, kernel_deb: str | None) -> tuple[Path, str]:
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    if kernel_deb:
        deb = Path(kernel_deb)
        if not deb.is_file():
            raise KernelPackageUnavailable(package=str(deb), detail="no such file")
    else:
        # Reuse any kernel already unpacked rather than asking apt again.
        for done in sorted(cache.glob("kernel-*/.complete")):
            kver = done.parent.name[len("kernel-") :]
            return done.parent, kver
        deb = _apt_download(_kernel_package(), debs)
    pkg = _deb_field(deb, "Package")
    m = re.fullmatch(r"linux-image-(.+)", pkg)
    if not m:
        raise KernelPackageUnavailable(package=pkg, detail="not a linux-image package")
    kver = m.group(1)
    kroot = cache / f"kernel-{kver}"
    if not (kroot / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix=".kernel-", dir=cache))
        try:
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
            if not (tmp / "boot" / f"vmlinuz-{kver}").exists():
                raise GuestImageError(detail=f"{deb} holds no boot/vmlinuz-{kver}")
            (tmp / ".complete").write_text(pkg + "\n")
            shutil.rmtree(kroot, ignore_errors=True)
            os.replace(tmp, kroot)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return kroot, kver


def _busybox(cache: Path) -> Path:
    host = Path("/bin/busybox")
    if host.is_file() and _is_static_elf(host):
        return host
    deb = _apt_download("busybox-static", cache / "debs")
    tree = cache / "busybox-static"
    if not (tree / "bin" / "busybox").exists():
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
    return tree / "bin" / "busybox"


def _is_static_elf(path: Path) -> bool:
    # A dynamically linked ELF carries a PT_INTERP program header (type 3).
    import struct

    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", hdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", ph, i * phentsize)[0] != 3 for i in range(phnum))


# -- modules and initramfs ---------------------------------------------------


def _find_modules(moddir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in moddir.rglob("*.ko"):
        found[p.stem.replace("-", "_")] = p
    return found


def module_depends(ko: Path) -> list[str]:
    """The modules ko needs loaded first (its .modinfo depends= field)."""
    data = ko.read_bytes()
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def resolve_modules(moddir: Path, wanted=MODULES) -> list[tuple[str, Path]]:
    """wanted, in order, with every dependency placed before its user."""
    avail = _find_modules(moddir)
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise GuestImageError(detail=f"module dependency cycle: {' -> '.join(stack + (name,))}")
        if name not in avail:
            raise GuestImageError(detail=f"kernel module {name} not found under {moddir}")
        for dep in module_depends(avail[name]):
            visit(dep, stack + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return [(n, avail[n]) for n in order]


class _Cpio:
    """A cpio archive in the 'newc' format (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nameb = name.encode() + b"\x00"
        fields = [
            self.ino,
            mode,
            0,
            0,
            2 if stat.S_ISDIR(mode) else 1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(nameb),
            0,
        ]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + nameb)
        self.buf.write(b"\x00" * (-(len(hdr) + len(nameb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\x00" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initramfs(moddir: Path, busybox: Path) -> bytes:
    """A gzip'd newc cpio: busybox, /init, the modules MODULES needs, /dev/console."""
    mods = resolve_modules(Path(moddir))
    a = _Cpio()
    for d in (
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "etc",
        "root",
        "mnt",
        "mnt/seed",
        "lib",
        "lib/modules",
        "usr",
        "usr/bin",
        "usr/sbin",
    ):
        a.dir(d)
    # Without /dev/console in the archive the kernel starts init with no stdio.
    a.chardev("dev/console", 5, 1)
    a.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    a.symlink("bin/sh", "busybox")
    a.file("init", INIT_SCRIPT.encode(), 0o755)
    a.file("etc/coppice-modules", ("\n".join(n for n, _ in mods) + "\n").encode())
    for name, path in mods:
        a.file(f"lib/modules/{name}.ko", path.read_bytes())
    return gzip.compress(a.finish(), compresslevel=6, mtime=0)


# -- template disk -------------------------------------------------------------


def template_header(kernel_version: str) -> bytes:
    lines = (
        TEMPLATE_MAGIC
        + (
            f"kernel={kernel_version}\n"
            f"identity-offset={IDENTITY_OFFSET}\n"
            f"marker-offset={MARKER_OFFSET}\n"
            f"disk-size={DISK_SIZE}\n"
        ).encode()
    )
    return lines.ljust(HEADER_SIZE, b"\x00")


def identity_region(machine_id: str | None) -> bytes:
    body = f"machine-id={machine_id}\n".encode() if machine_id else b""
    return body.ljust(IDENTITY_SIZE, b"\x00")


def _write_template_disk(path: Path, kernel_version: str) -> None:
    # Built generalized: a disk with no file system is nothing libguestfs can
    # generalize at import, so the template never carries a machine-id.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.truncate(DISK_SIZE)  # sparse: only the header and identity hold data
        f.write(template_header(kernel_version))
        f.write(identity_region(None))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o444)  # the template is copied or cloned, never booted in place
    os.replace(tmp, path)


def read_identity(disk: str | os.PathLike) -> dict[str, str]:
    """The key=value pairs of a template disk's identity region."""
    with open(disk, "rb") as f:
        f.seek(IDENTITY_OFFSET)
        raw = f.read(IDENTITY_SIZE).rstrip(b"\x00").decode(errors="replace")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def read_marker(disk: str | os.PathLike) -> str | None:
    """The marker line the guest wrote at MARKER_OFFSET, or None if the sector is empty."""
    with open(disk, "rb") as f:
        f.seek(MARKER_OFFSET)
        raw = f.read(MARKER_SIZE).split(b"\x00", 1)[0]
    return raw.decode(errors="replace").rstrip("\n") or None


def is_template_disk(disk: str | os.PathLike) -> bool:
    with open(disk, "rb") as f:
        return f.read(len(TEMPLATE_MAGIC)) == TEMPLATE_MAGIC


# -- helpers -----------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise GuestImageError(detail=f"{src} is missing from the unpacked kernel package")
    _atomic_write(dst, src.read_bytes())
