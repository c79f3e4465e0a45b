"""Fixtures for the real-guest tests: a Debian 12 + cloud-init image in both
layouts, built once from this directory's recipe, and booted once each as
a golden VM.

Both are cached under ``COPPICE_REALGUEST_CACHE`` (default
/var/cache/coppice/realguest) in a directory named after the hash of the
recipe (the build script, its settings and the golden boot's seed), so a
changed recipe never reuses a stale image; a fresh CI machine builds them
(one debootstrap for both layouts, ~2 min) and boots the two golden VMs
side by side (~2 min under TCG)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BUILD = HERE / "build-debian-cloudinit.sh"
CACHE = Path(os.environ.get("COPPICE_REALGUEST_CACHE", "/var/cache/coppice/realguest"))
EXTRA_PKGS = "openssh-server"
GOLDEN_NAME = "golden-vm"
# The golden VM's one boot: what every golden VM has done before it becomes a template.
GOLDEN_USER_DATA = {
    "runcmd": [
        "echo GOLDEN-BOOTED > /root/golden-marker",
        'echo "HOSTNAME-IS $(hostname) MACHINE-ID-IS $(cat /etc/machine-id)" > /dev/ttyS0',
    ],
    "power_state": {"mode": "poweroff", "condition": True},
}
GUEST_MEM_MIB = 768
TOOLS = (
    "debootstrap",
    "mkfs.ext4",
    "sfdisk",
    "partx",
    "qemu-system-x86_64",
    "qemu-img",
    "debugfs",
    "nbdcopy",
)


def _recipe_hash() -> str:
    h = hashlib.sha256()
    h.update(BUILD.read_bytes())
    h.update(f"BOOT=both EXTRA_PKGS={EXTRA_PKGS}".encode())
    h.update(repr(GOLDEN_USER_DATA).encode())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def realguest_dir():
    missing = [t for t in TOOLS if not shutil.which(t)]
    assert not missing, f"missing {', '.join(missing)}: run `bash scripts/install.sh` as root"
    assert os.geteuid() == 0, "the real-guest tests build an image (debootstrap, chroot) and need root"
    d = CACHE / _recipe_hash()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / "built").exists():
            out = d / "build"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.monotonic()
            r = subprocess.run(
                ["bash", str(BUILD), str(out)],
                env=dict(os.environ, BOOT="both", EXTRA_PKGS=EXTRA_PKGS),
                capture_output=True,
                text=True,
                timeout=1200,
            )
            assert r.returncode == 0, f"image build failed:\n{r.stderr[-4000:]}"
            (d / "build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
            (d / "built").write_text(r.stdout)
        if not (d / "golden").exists():
            _boot_goldens(d)
    return d


def _golden_seed(path: Path) -> None:
    from coppice.provision.seed import SeedConfig, build_seed_iso

    build_seed_iso(
        SeedConfig(instance_id="iid-golden", hostname=GOLDEN_NAME, user_data=GOLDEN_USER_DATA), path
    )


def qemu_cmd(disk: str, seed: str, log: str, *, direct: Path | None) -> list[str]:
    cmd = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        str(GUEST_MEM_MIB),
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{log}",
        "-drive",
        f"file={disk},format=raw,if=virtio",
        "-drive",
        f"file={seed},format=raw,if=virtio,readonly=on",
    ]
    if direct is not None:
        cmd += [
            "-kernel",
            str(direct / "vmlinuz"),
            "-initrd",
            str(direct / "initrd.img"),
            "-append",
            (direct / "cmdline.txt").read_text().strip(),
        ]
    return cmd


def _boot_goldens(d: Path) -> None:
    """Boot each layout's image once, side by side, as the golden VM; keep the booted disks."""
    work = d / "golden.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    seed = work / "seed.iso"
    _golden_seed(seed)
    procs = {}
    t0 = time.monotonic()
    for layout in ("direct", "bios"):
        disk = work / f"{layout}.raw"
        subprocess.run(
            ["cp", "--sparse=always", str(d / "build" / layout / "debian-ci.raw"), str(disk)], check=True
        )
        direct = d / "build" / "direct" if layout == "direct" else None
        procs[layout] = subprocess.Popen(
            qemu_cmd(str(disk), str(seed), str(work / f"{layout}.log"), direct=direct),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    times = {}
    for layout, p in procs.items():
        try:
            p.wait(timeout=900)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log = (work / f"{layout}.log").read_text(errors="replace")
        assert f"HOSTNAME-IS {GOLDEN_NAME} MACHINE-ID-IS" in log, (
            f"golden {layout} boot failed:\n{log[-3000:]}"
        )
        times[layout] = time.monotonic() - t0
    (work / "boot-seconds").write_text("".join(f"{k} {v:.1f}\n" for k, v in times.items()))
    os.replace(work, d / "golden")
