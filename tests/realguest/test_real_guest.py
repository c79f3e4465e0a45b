"""The proof on a real guest: a Debian 12 + cloud-init golden VM that has
booted once, in both disk layouts (unpartitioned ext4 with direct kernel
boot; MBR + GRUB booted by the firmware), imported as templates (generalized
offline by libguestfs), provisioned 2 + 2 VMs with a customization spec
through qemu:///system over `coppice serve`'s NBD target, all four booted
side by side under TCG; then each clone's disk is read from outside
(nbdcopy from the daemon's target, debugfs): hostname = VM name, runcmd
marker written, machine-id non-empty and its own, SSH host keys its own,
the template's base unchanged. Then `vm recompose` onto a new template
snapshot: the VM comes back with its own identity again.

Prints the per-VM identity table, boot-to-hostname times and import times
(pytest -s, or the captured output of a failure)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.api.conftest import Served
from tests.provision.guest_fs import GuestFiles

from .conftest import GOLDEN_NAME

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
URI = "qemu:///system"
RUNCMD = [
    "echo COPPICE-MARKER $(hostname) > /root/marker",
    'echo "HOSTNAME-IS $(hostname)" > /dev/ttyS0',
    "sync",
    "systemctl poweroff --no-block",
]


class Cli:
    def __init__(self, pool: str):
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("COPPICE_URL", "COPPICE_CONNECT", "COPPICE_NBD")
        }
        self.env.update(COPPICE_POOL=pool, COLUMNS="200")

    def __call__(self, *args, json_out=False):
        r = subprocess.run(
            [sys.executable, "-m", "coppice.cli.main", *args, *(["--json"] if json_out else [])],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
        return json.loads(r.stdout) if json_out else r.stdout


def _export_to_file(sock: str, export: str, out: str) -> str:
    # the daemon's Unix socket (root on this host sees every LUN and snapshot)
    r = subprocess.run(
        ["nbdcopy", f"nbd+unix:///{export}?socket={sock}", out], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return out


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _identity(files: GuestFiles) -> dict:
    keys = {}
    for name in files.ls("/etc/ssh"):
        if name.startswith("ssh_host_") and name.endswith(".pub"):
            keys[name] = (files.read(f"/etc/ssh/{name}") or b"").split()[1].decode()
    return {
        "hostname": (files.read("/etc/hostname") or b"").decode().strip(),
        "marker": (files.read("/root/marker") or b"").decode().strip(),
        "machine_id": (files.read("/etc/machine-id") or b"").decode().strip(),
        "host_keys": keys,
        "golden_marker": files.exists("/root/golden-marker"),
    }


def _boot_side_by_side(hv, vms: dict, timeout: float = 1200) -> dict:
    """Start every VM at once; seconds from start to its 'HOSTNAME-IS <name>' line, then wait for shut-off."""
    offsets = {
        n: os.path.getsize(v["serial_log"]) if os.path.exists(v["serial_log"]) else 0 for n, v in vms.items()
    }
    t0 = {}
    for n in vms:
        t0[n] = time.monotonic()
        hv.start(n)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(vms) and time.monotonic() < deadline:
        for n, v in vms.items():
            if n in seen or not os.path.exists(v["serial_log"]):
                continue
            with open(v["serial_log"], "rb") as f:
                text = f.read()
            # a log libvirt truncated at start is read from its beginning
            if f"HOSTNAME-IS {n}".encode() in (text[offsets[n] :] if len(text) >= offsets[n] else text):
                seen[n] = time.monotonic() - t0[n]
        time.sleep(0.5)
    for n in vms:
        hv.wait_for_shutoff(n, timeout=max(60.0, deadline - time.monotonic()))
    missing = [n for n in vms if n not in seen]
    assert not missing, {n: open(vms[n]["serial_log"], errors="replace").read()[-3000:] for n in missing}
    return seen


def test_golden_vm_to_clones_with_their_own_identity(realguest_dir, monkeypatch):
    from coppice.provision.hypervisor import Hypervisor

    monkeypatch.delenv("COPPICE_CONNECT", raising=False)
    d = realguest_dir
    golden, build = d / "golden", d / "build"
    work = tempfile.mkdtemp(prefix="coppice-realguest-", dir="/var/tmp")
    pool = os.path.join(work, "pool")
    cli = Cli(pool)
    served = None
    names: list[str] = []
    hv = Hypervisor.open(URI)
    report: list[str] = [
        f"image build {(d / 'build-seconds').read_text().strip()} s (cached across local runs)"
    ]
    report += [
        f"golden boot (side by side) {line}" for line in (golden / "boot-seconds").read_text().splitlines()
    ]
    try:
        cli("pool", "create", pool)
        direct = ["--kernel", str(build / "direct/vmlinuz"), "--initrd", str(build / "direct/initrd.img")]
        direct += ["--cmdline", (build / "direct/cmdline.txt").read_text().strip()]
        common = ["--memory", "768", "--vcpus", "1"]
        # import time with and without generalization, same image, same run
        t = time.monotonic()
        cli(
            "template",
            "import",
            "plain",
            "--image",
            str(golden / "direct.raw"),
            "--no-generalize",
            *direct,
            *common,
        )
        t_plain = time.monotonic() - t
        imports = {}
        for layout, extra in (("direct", direct), ("bios", [])):
            t = time.monotonic()
            imports[layout] = cli(
                "template", "import", f"deb_{layout}", "--image", str(golden / f"{layout}.raw"), *extra, *common,
                json_out=True,
            )  # fmt: skip
            imports[layout]["wall"] = time.monotonic() - t
        report.append(
            f"template import (2 GiB image): --no-generalize {t_plain:.1f} s; generalized direct "
            f"{imports['direct']['wall']:.1f} s, bios {imports['bios']['wall']:.1f} s "
            f"(libguestfs {imports['direct']['generalized']['seconds']} / {imports['bios']['generalized']['seconds']} s)"
        )
        for layout, r in imports.items():
            g = r["generalized"]
            assert r["is_generalized"] and g["os"]["distro"] == "debian", g
            assert g["os"]["root"] == ("/dev/sda" if layout == "direct" else "/dev/sda1"), g["os"]
            ops = {op: [e["path"] for e in items] for op, items in g["operations"].items()}
            assert ops["machine-id"][0] == "/etc/machine-id", ops
            assert {"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"} <= set(
                ops["ssh-hostkeys"]
            )
            assert (
                "/var/lib/cloud/instance" in ops["cloud-init"]
                and "/var/lib/systemd/random-seed" in ops["random-seed"]
            )
            assert any(p.startswith("/var/log/journal/") for p in ops["logfiles"]), ops["logfiles"]

        cli("custspec", "create", "rg", *[a for c in RUNCMD for a in ("--runcmd", c)])
        served = Served(pool, extra_args=("--connect", URI))
        sock = served.socket.replace("coppice.sock", "nbd.sock")
        assert os.path.exists(sock), sock
        base_sha = {}
        for layout in imports:
            base = f"/vol/tpl_deb_{layout}/.snapshot/base/vm0.disk0"
            base_sha[layout] = _sha(_export_to_file(sock, base, os.path.join(work, f"base-{layout}.raw")))
            gold = GuestFiles(os.path.join(work, f"base-{layout}.raw"))
            assert gold.read("/etc/machine-id") == b"", "the base snapshot is not generalized"
            os.unlink(os.path.join(work, f"base-{layout}.raw"))
        golden_id = {
            layout: _identity(GuestFiles(str(golden / f"{layout}.raw"))) for layout in ("direct", "bios")
        }
        for gid in golden_id.values():
            assert gid["hostname"] == GOLDEN_NAME and len(gid["machine_id"]) == 32 and gid["host_keys"], gid

        stem = f"rg{uuid.uuid4().hex[:4]}"
        vms = {}
        for layout in ("direct", "bios"):
            out = cli("vm", "provision", "--template", f"deb_{layout}", "--count", "2", "--name",
                      f"{stem}{layout[0]}{{n}}", "--customize", "rg")  # fmt: skip
            assert "2 of 2 VMs provisioned" in out, out
            for n in (1, 2):
                name = f"{stem}{layout[0]}{n}"
                names.append(name)
                vms[name] = dict(cli("vm", "show", name, json_out=True), layout=layout)
        for v in vms.values():
            assert v["uri"] == URI and v["target"]["port"] == served.nbd_port, v
        booted = _boot_side_by_side(hv, vms)

        rows = {}
        for name, v in vms.items():
            disk = _export_to_file(sock, f"/vol/{v['clone']}/vm0.disk0", os.path.join(work, f"{name}.raw"))
            rows[name] = dict(_identity(GuestFiles(disk)), layout=v["layout"], boot=booted[name])
            os.unlink(disk)
        report.append("per-VM identity (read from each clone's disk after it powered off):")
        report.append(
            f"  {'VM':<10} {'layout':<7} {'boot→hostname':>13}  {'hostname':<10} {'machine-id':<32}  "
            f"{'libvirt UUID':<36}  ssh ed25519 host key (tail)"
        )
        for name, r in [("golden", dict(golden_id["direct"], layout="direct", boot=0.0)),
                        ("golden", dict(golden_id["bios"], layout="bios", boot=0.0))] + list(rows.items()):  # fmt: skip
            key = r["host_keys"].get("ssh_host_ed25519_key.pub", "-")
            uid = vms[name]["uuid"] if name in vms else "-"
            report.append(
                f"  {name:<10} {r['layout']:<7} {r['boot']:>11.1f} s  {r['hostname']:<10} {r['machine_id']:<32}  "
                f"{uid:<36}  …{key[-16:]}"
            )
        for name, r in rows.items():
            gid = golden_id[r["layout"]]
            assert r["hostname"] == name, r
            assert r["marker"] == f"COPPICE-MARKER {name}", r
            assert r["golden_marker"], "the clone is not a clone of the golden VM"
            assert len(r["machine_id"]) == 32 and r["machine_id"] != gid["machine_id"], r
            assert r["host_keys"] and set(r["host_keys"]) == set(gid["host_keys"]), r
            assert not set(r["host_keys"].values()) & set(gid["host_keys"].values()), (
                "a golden SSH host key survived"
            )
        for a in rows:
            for b in rows:
                if a < b:
                    assert rows[a]["machine_id"] != rows[b]["machine_id"], (a, b)
                    assert not set(rows[a]["host_keys"].values()) & set(rows[b]["host_keys"].values()), (a, b)
        for layout in imports:
            base = f"/vol/tpl_deb_{layout}/.snapshot/base/vm0.disk0"
            after = _sha(_export_to_file(sock, base, os.path.join(work, f"base-{layout}.raw")))
            os.unlink(os.path.join(work, f"base-{layout}.raw"))
            assert after == base_sha[layout], f"the {layout} template's base changed"

        # recompose onto a new template snapshot: the VM comes back with an identity of its own again
        first = names[0]
        cli("snap", "create", "tpl_deb_direct", "v2")
        cli("vm", "recompose", first, "--snapshot", "v2")
        again = _boot_side_by_side(hv, {first: vms[first]})
        disk = _export_to_file(sock, f"/vol/{vms[first]['clone']}/vm0.disk0", os.path.join(work, "re.raw"))
        re_id = _identity(GuestFiles(disk))
        report.append(
            f"  {first:<10} recomposed onto tpl_deb_direct@v2: boot→hostname {again[first]:.1f} s, hostname "
            f"{re_id['hostname']}, machine-id {re_id['machine_id']} (VM UUID {vms[first]['uuid']}), "
            f"new SSH host keys"
        )
        assert re_id["hostname"] == first and re_id["marker"] == f"COPPICE-MARKER {first}", re_id
        # a fresh clone of v2 booted: cloud-init made new host keys; the machine-id is this VM's again
        # (systemd derives it from the VM's SMBIOS UUID, which recompose keeps), never another machine's
        assert re_id["host_keys"] and not set(re_id["host_keys"].values()) & set(
            rows[first]["host_keys"].values()
        )
        others = {golden_id["direct"]["machine_id"]} | {
            r["machine_id"] for n, r in rows.items() if n != first
        }
        assert len(re_id["machine_id"]) == 32 and re_id["machine_id"] not in others, re_id
        uuid_hex = vms[first]["uuid"].replace("-", "")
        assert (
            re_id["machine_id"] in (uuid_hex, rows[first]["machine_id"]) or re_id["machine_id"] not in others
        )
    finally:
        print("\n" + "\n".join(report))
        for n in names:
            try:
                hv.remove(n)
            except Exception:
                pass
        if served is not None and served.proc.poll() is None:
            served.stop()
        hv.close()
        shutil.rmtree(work, ignore_errors=True)
