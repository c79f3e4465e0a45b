"""Test helpers that make and read guest file systems from outside, with
e2fsprogs only (mkfs.ext4 -d, debugfs) and sfdisk: no root, no mounts,
no libguestfs — so a check does not trust the code it checks."""

from __future__ import annotations

import json
import os
import subprocess

PART_START = 1 << 20  # partition 1 at sector 2048, as the real guest recipe makes it


def _need(tool: str) -> None:
    import shutil

    assert shutil.which(tool), f"{tool} is missing: run `bash scripts/install.sh` (Debian e2fsprogs, fdisk)"


def make_used_linux_root(root: str, *, machine_id: str = "0123456789abcdef0123456789abcdef") -> dict:
    """A small Debian-looking root tree carrying everything a golden VM that has booted carries."""
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nID=debian\n',
        "etc/debian_version": "12.8\n",
        "etc/fstab": "LABEL=golden / ext4 defaults 0 1\n",
        "etc/hosts": "127.0.0.1 localhost\n",
        "etc/hostname": "golden-vm\n",
        "etc/machine-id": machine_id + "\n",
        "var/lib/dbus/machine-id": machine_id + "\n",
        "etc/ssh/sshd_config": "# kept\n",
        "etc/ssh/ssh_host_ed25519_key": "PRIVATE\n",
        "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA golden\n",
        "var/lib/cloud/instances/iid-golden/obj.pkl": "pickle\n",
        "var/lib/cloud/data/instance-id": "iid-golden\n",
        "var/lib/cloud/sem/config_scripts_per_once.once": "done\n",
        "var/lib/cloud/scripts/per-boot/keep.sh": "# user script, kept\n",
        "var/lib/systemd/random-seed": "seed\n",
        "var/lib/systemd/credential.secret": "secret\n",
        f"var/log/journal/{machine_id}/system.journal": "journal\n",
        "var/log/cloud-init.log": "log\n",
        "var/log/cloud-init-output.log": "log\n",
        "var/lib/dhcp/dhclient.eth0.leases": "lease\n",
        "etc/udev/rules.d/70-persistent-net.rules": "rule\n",
        "root/.bash_history": "history\n",
        "home/ops/.bash_history": "history\n",
        "usr/bin/true": "",
        "etc/motd": "kept\n",
    }
    for rel, body in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(body)
    os.symlink("usr/bin", os.path.join(root, "bin"))
    os.symlink("/var/lib/cloud/instances/iid-golden", os.path.join(root, "var/lib/cloud/instance"))
    return files


def make_partitioned_ext4_disk(path: str, root: str, size: int = 64 << 20) -> str:
    """An MBR disk with one Linux partition at 1 MiB holding an ext4 copy of root (sparse raw)."""
    _need("mkfs.ext4")
    _need("sfdisk")
    fs = path + ".fs"
    with open(fs, "wb") as f:
        f.truncate(size - PART_START)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "golden", "-d", root, fs], check=True)
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(
        ["sfdisk", "-q", path], input=b"label: dos\nunit: sectors\n\nstart=2048, type=83\n", check=True
    )
    subprocess.run(
        ["dd", f"if={fs}", f"of={path}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"], check=True
    )
    os.unlink(fs)
    return path


def lun_to_file(filer, lun_path: str, out: str) -> str:
    """A sparse raw copy of a LUN (or a snapshot's LUN), read through the filer."""
    dev = filer.open_lun(lun_path)
    try:
        size = dev.size
        with open(out, "wb") as f:
            f.truncate(size)
            off, step = 0, 4 << 20
            while off < size:
                buf = bytes(dev.pread(off, min(step, size - off)))
                if buf.count(0) != len(buf):
                    f.seek(off)
                    f.write(buf)
                off += len(buf)
    finally:
        dev.close()
    return out


def fs_offset(disk: str) -> int:
    """Where the root file system starts: partition 1 when there is a partition table, else 0."""
    r = subprocess.run(["sfdisk", "--json", disk], capture_output=True, text=True)
    if r.returncode != 0:
        return 0
    parts = json.loads(r.stdout)["partitiontable"].get("partitions") or []
    return parts[0]["start"] * 512 if parts else 0


class GuestFiles:
    """Read-only view of the ext4 root file system of a raw disk, through debugfs."""

    def __init__(self, disk: str):
        _need("debugfs")
        self.spec = f"{disk}?offset={fs_offset(disk)}"

    def _debugfs(self, request: str) -> subprocess.CompletedProcess:
        return subprocess.run(["debugfs", "-R", request, self.spec], capture_output=True)

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if not self.exists(path):
            return None
        return self._debugfs(f"cat {path}").stdout

    def exists(self, path: str) -> bool:
        r = self._debugfs(f"stat {path}")
        return b"Inode:" in r.stdout

    def ls(self, path: str) -> list[str]:
        r = self._debugfs(f"ls -p {path}")
        names = []
        for line in r.stdout.decode(errors="replace").splitlines():
            parts = line.strip("/").split("/")
            if len(parts) >= 5 and parts[4] not in (".", ".."):
                names.append(parts[4])
        return sorted(names)
