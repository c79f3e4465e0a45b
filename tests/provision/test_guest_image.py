"""The tiny template: what the build produces, without booting it (boots: test_boot.py)."""

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from coppice.provision import guest_image as gi
from coppice.provision.errors import GuestImageError


def cpio_list(initrd):
    out = subprocess.run(
        ["cpio", "-it", "--quiet"],
        input=gzip.decompress(Path(initrd).read_bytes()),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().split()


def test_files_exist_and_cached(tiny_template):
    # kernel, initrd, disk are plain files; a second build returns at once with the same files
    for p in (tiny_template.kernel, tiny_template.initrd, tiny_template.disk_image):
        assert os.path.getsize(p) > 0
    mtimes = [
        os.path.getmtime(p) for p in (tiny_template.kernel, tiny_template.initrd, tiny_template.disk_image)
    ]
    again = gi.build_tiny_template(Path(tiny_template.kernel).parent.parent)
    assert again == tiny_template
    assert mtimes == [os.path.getmtime(p) for p in (again.kernel, again.initrd, again.disk_image)]
    assert "console=ttyS0" in tiny_template.cmdline and "coppice.root=vda" in tiny_template.cmdline


def test_initramfs_contents(tiny_template):
    # /init, busybox, /dev/console and every module the guest loads are in the archive
    names = cpio_list(tiny_template.initrd)
    for n in ("init", "bin/busybox", "bin/sh", "dev/console", "etc/coppice-modules"):
        assert n in names
    for m in gi.MODULES:
        assert f"lib/modules/{m}.ko" in names


def test_module_order_respects_dependencies(tiny_template):
    # each module is loaded after every module it depends on; virtio_ring before virtio
    moddir = (
        Path(tiny_template.kernel).parent.parent
        / f"kernel-{tiny_template.kernel_version}"
        / "lib"
        / "modules"
        / tiny_template.kernel_version
    )
    order = [n for n, _ in gi.resolve_modules(moddir)]
    for i, (name, path) in enumerate(gi.resolve_modules(moddir)):
        for dep in gi.module_depends(path):
            assert order.index(dep) < i, (name, dep)
    assert (
        order.index("virtio_ring")
        < order.index("virtio")
        < order.index("virtio_pci")
        < order.index("virtio_blk")
    )
    with pytest.raises(GuestImageError, match="not found"):
        gi.resolve_modules(moddir, wanted=("no_such_module",))


def test_template_disk_layout(tiny_template):
    # header at 0, an empty identity region at 4 KiB (built generalized), an empty marker sector
    # at 1 MiB, 64 MiB raw
    disk = tiny_template.disk_image
    assert os.path.getsize(disk) == gi.DISK_SIZE
    assert gi.is_template_disk(disk)
    head = Path(disk).read_bytes()[: gi.HEADER_SIZE]
    assert head.startswith(b"COPPICE-TEMPLATE v1\n")
    assert f"kernel={tiny_template.kernel_version}".encode() in head
    assert gi.read_identity(disk) == {} and tiny_template.machine_id == ""
    assert Path(disk).read_bytes()[gi.IDENTITY_OFFSET : gi.IDENTITY_OFFSET + gi.IDENTITY_SIZE] == bytes(
        gi.IDENTITY_SIZE
    )
    assert gi.read_marker(disk) is None


def test_cpio_writer_round_trip(tmp_path):
    # our newc writer is read by GNU cpio: names, modes, symlinks and device nodes
    a = gi._Cpio()
    a.dir("d")
    a.file("d/f", b"hello", 0o750)
    a.symlink("d/l", "f")
    a.chardev("d/c", 5, 1)
    out = subprocess.run(["cpio", "-itv", "--quiet"], input=a.finish(), capture_output=True, check=True)
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("drwxr-xr-x")
    assert lines[1].startswith("-rwxr-x---") and lines[1].endswith("d/f")
    assert lines[2].startswith("lrwxrwxrwx") and lines[2].endswith("d/l -> f")
    assert lines[3].startswith("crw-------") and "5," in lines[3]


def test_missing_kernel_deb_is_a_clear_error(tmp_path):
    with pytest.raises(GuestImageError, match="linux-image"):
        gi.build_tiny_template(tmp_path, kernel_deb=str(tmp_path / "linux-image-nope.deb"))
