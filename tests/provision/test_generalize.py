"""Offline generalization at template import, with libguestfs over Coppice's
own NBD target: a used Linux disk (partitioned, ext4) loses its identity on
the base snapshot only, file by file as reported; --keep and
--no-generalize; disks it cannot generalize are imported with a reason.
Files are checked from outside with debugfs, not with libguestfs.

Cost: one libguestfs appliance boot (about 30 s under TCG)."""

import os
import subprocess

import pytest

from coppice.errors import InvalidArgument
from coppice.provision import template
from coppice.provision.generalize import OPERATIONS

from .guest_fs import GuestFiles, lun_to_file, make_partitioned_ext4_disk, make_used_linux_root
from .prov_helpers import filer  # noqa: F401

MID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def used_disk(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make_used_linux_root(str(root), machine_id=MID)
    return make_partitioned_ext4_disk(str(tmp_path / "golden.raw"), str(root))


@pytest.mark.slow  # one libguestfs appliance boot
def test_used_linux_disk_generalized_on_base_only(filer, used_disk, tmp_path):
    r = template.import_image(filer, "deb", used_disk, keep=["bash-history"])
    g = r["generalized"]
    assert r["is_generalized"] is True and g["done"] is True and g["method"] == "libguestfs"
    assert g["os"]["type"] == "linux" and g["os"]["distro"] == "debian" and g["os"]["root"] == "/dev/sda1"
    assert g["kept"] == ["bash-history"] and "bash-history" not in g["operations"]
    done = {e["path"]: (op, e["action"]) for op, items in g["operations"].items() for e in items}
    assert done == {
        "/etc/machine-id": ("machine-id", "emptied"),
        "/var/lib/dbus/machine-id": ("machine-id", "removed"),
        "/etc/ssh/ssh_host_ed25519_key": ("ssh-hostkeys", "removed"),
        "/etc/ssh/ssh_host_ed25519_key.pub": ("ssh-hostkeys", "removed"),
        "/var/lib/cloud/instance": ("cloud-init", "removed"),
        "/var/lib/cloud/instances/iid-golden": ("cloud-init", "removed"),
        "/var/lib/cloud/data/instance-id": ("cloud-init", "removed"),
        "/var/lib/cloud/sem/config_scripts_per_once.once": ("cloud-init", "removed"),
        "/var/log/cloud-init.log": ("logfiles", "removed"),
        "/var/log/cloud-init-output.log": ("logfiles", "removed"),
        f"/var/log/journal/{MID}": ("logfiles", "removed"),
        "/var/lib/systemd/random-seed": ("random-seed", "removed"),
        "/var/lib/systemd/credential.secret": ("random-seed", "removed"),
        "/etc/udev/rules.d/70-persistent-net.rules": ("udev-persistent-net", "removed"),
        "/var/lib/dhcp/dhclient.eth0.leases": ("dhcp-client-state", "removed"),
        "/etc/hostname": ("hostname", "reset"),
    }
    assert sorted(g["cleared"]) == sorted(done)

    base = GuestFiles(lun_to_file(filer, "/vol/tpl_deb/.snapshot/base/vm0.disk0", str(tmp_path / "b.raw")))
    imported = GuestFiles(
        lun_to_file(filer, "/vol/tpl_deb/.snapshot/imported/vm0.disk0", str(tmp_path / "i.raw"))
    )
    # base: a 0-byte machine-id (systemd makes a new one at first boot), the rest gone or reset
    assert base.read("/etc/machine-id") == b""
    for gone in [p for p, (_, action) in done.items() if action == "removed"]:
        assert not base.exists(gone), gone
    assert base.read("/etc/hostname") == b"localhost\n"
    assert base.ls("/etc/ssh") == ["sshd_config"] and base.ls("/var/lib/cloud/instances") == []
    # what is not identity stays: config, user scripts, and the operation kept (--keep)
    assert base.read("/etc/motd") == b"kept\n"
    assert base.read("/var/lib/cloud/scripts/per-boot/keep.sh") == b"# user script, kept\n"
    assert base.read("/root/.bash_history") == b"history\n"
    # imported keeps the golden VM exactly as it came
    assert imported.read("/etc/machine-id") == f"{MID}\n".encode()
    assert imported.read("/etc/ssh/ssh_host_ed25519_key") == b"PRIVATE\n"
    assert imported.read("/etc/hostname") == b"golden-vm\n"
    # the template LUN itself (the base's parent) fscks clean after the appliance wrote to it
    spec = f"{tmp_path / 'b.raw'}?offset={1 << 20}"
    fsck = subprocess.run(["e2fsck", "-fn", spec], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_no_generalize_and_bad_keep(filer, used_disk, tmp_path):
    # --no-generalize: base is the image as it came, the record says so (no appliance started)
    r = template.import_image(filer, "raw", used_disk, generalize=False)
    assert r["is_generalized"] is False and r["generalized"]["method"] == "skipped"
    assert "--no-generalize" in r["generalized"]["warnings"][0]
    base = GuestFiles(lun_to_file(filer, "/vol/tpl_raw/.snapshot/base/vm0.disk0", str(tmp_path / "b.raw")))
    assert base.read("/etc/machine-id") == f"{MID}\n".encode()
    # an unknown operation is refused before anything is made
    with pytest.raises(InvalidArgument, match="Unknown generalization operation 'machine_id'.*machine-id"):
        template.import_image(filer, "bad", used_disk, keep=["machine_id"])
    assert not filer.pool.has_volume("tpl_bad")
    assert set(OPERATIONS) >= {"machine-id", "ssh-hostkeys", "cloud-init", "logfiles", "hostname"}


def test_disk_without_file_system_is_imported_with_reason(filer, tmp_path):
    # nothing to inspect: no appliance, imported ungeneralized, the reason in the record
    img = tmp_path / "blank.raw"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"data" * 1024)
    r = template.import_image(filer, "blank", str(img))
    g = r["generalized"]
    assert r["is_generalized"] is False and g["method"] == "probe" and g["seconds"] < 5
    assert "no partition table or file system" in g["why"] and g["warnings"] == [g["why"]]


def test_encrypted_disk_is_imported_with_reason(filer, tmp_path):
    # a LUKS disk cannot be read offline: imported, not generalized, and the report says why
    img = str(tmp_path / "luks.raw")
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    subprocess.run(
        ["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
         "1000", "--key-file", str(key), img],
        check=True,
        capture_output=True,
    )  # fmt: skip
    r = template.import_image(filer, "sealed", img)
    g = r["generalized"]
    assert r["is_generalized"] is False and "encrypted (crypto_LUKS)" in g["why"]
    assert "nothing was generalized" in g["why"]
