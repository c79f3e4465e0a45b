"""Offline generalization of a golden VM's disk: what virt-sysprep does,
with libguestfs, on a template LUN served by Coppice's own NBD target.

Contract:

* ``generalize_lun(filer, lun_path, keep=())`` clears, in the guest file
  systems on the LUN, what makes the golden VM one machine, and returns a
  report (a plain dict, see ``Report``). The LUN is served for the duration
  by a private NBD server of this process (a Unix socket in a 0700
  directory, exposing that one LUN only); the libguestfs appliance opens it
  read-write as a network disk, inspects it (``inspect_os``: partitions,
  LVM, ext4/XFS/btrfs/...), mounts the guest's file systems at their
  mount points and applies ``OPERATIONS`` minus ``keep``. Nothing else on
  the disk is touched.
* What each operation clears (the report lists every path, with what was
  done to it: ``emptied``, ``removed``, ``reset``):
  ``machine-id`` /etc/machine-id emptied (0 bytes: systemd makes a new one
  at first boot and cloud-init's seed cannot reset it), a regular
  /var/lib/dbus/machine-id removed (a symlink to /etc/machine-id is left);
  ``ssh-hostkeys`` /etc/ssh/ssh_host_* (cloud-init and sshd make new ones);
  ``cloud-init`` /var/lib/cloud/instance, instances/, data/, sem/ contents;
  ``logfiles`` /var/log/cloud-init*.log, the journal (its directory is
  named after the machine-id), *.log, rotated logs, wtmp/btmp/lastlog;
  ``random-seed`` /var/lib/systemd/random-seed and systemd's
  credential.secret; ``udev-persistent-net`` 70-persistent-net.rules;
  ``dhcp-client-state`` dhclient/dhcpcd/NetworkManager leases;
  ``bash-history`` every user's shell history; ``hostname`` /etc/hostname
  reset to ``localhost`` (the NoCloud seed's local-hostname names each VM).
* Images it cannot generalize are never an error: the report says
  ``done: False`` with ``why`` naming what was not done and why — no
  partition table or file system (a cheap ``blkid`` probe of the first
  MiBs, no appliance), an encrypted disk or partition (LUKS, BitLocker), no
  operating system found, or Windows (needs sysprep inside the guest; no
  offline sysprep exists).
* Cost: one appliance boot per call (about 30 s under TCG), which is why it
  runs once per template import and never per VM. KVM is used when the
  host has it; when the CPU lacks vmx/svm, or a KVM launch fails, the
  appliance runs under TCG (``LIBGUESTFS_BACKEND_SETTINGS=force_tcg``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

from ..errors import CoppiceError, InvalidArgument

# Operation name -> what it is about (shown by `template import --keep`'s help and in the report).
OPERATIONS = {
    "machine-id": "the machine's id (/etc/machine-id emptied, /var/lib/dbus/machine-id)",
    "ssh-hostkeys": "SSH host keys (/etc/ssh/ssh_host_*)",
    "cloud-init": "cloud-init instance state (/var/lib/cloud/instance(s), data, sem)",
    "logfiles": "logs (/var/log: cloud-init, journal, *.log, wtmp/btmp/lastlog)",
    "random-seed": "random seed and systemd credential secret (/var/lib/systemd)",
    "udev-persistent-net": "persistent network interface names (udev rules)",
    "dhcp-client-state": "DHCP leases",
    "bash-history": "shell history of every user",
    "hostname": "/etc/hostname (reset to localhost; the seed names each VM)",
}

# How many bytes of the disk's start the probe reads: every partition table
# and the superblocks blkid looks for (btrfs at 64 KiB, ISO 9660 at 32 KiB).
_PROBE_BYTES = 2 << 20
_lock = threading.Lock()  # one appliance at a time per process: each takes a core and ~1 GiB


class GeneralizeError(CoppiceError):
    """Generalizing {lun} failed: {detail}. Import with --no-generalize to skip it (clones will
    then share the golden VM's identity), or fix the cause and import again."""


class UnknownOperation(InvalidArgument):
    """Unknown generalization operation {name!r} (--keep); the operations are: {known}."""


def check_keep(keep) -> list[str]:
    out = []
    for k in keep or ():
        if k not in OPERATIONS:
            raise UnknownOperation(name=k, known=", ".join(OPERATIONS))
        out.append(k)
    return out


# ---- the report --------------------------------------------------------------------------


def _report(**kw) -> dict:
    base = {
        "done": False,
        "method": "libguestfs",
        "os": None,
        "operations": {},
        "cleared": [],
        "kept": [],
        "warnings": [],
        "why": None,
        "seconds": 0.0,
    }
    base.update(kw)
    return base


def not_generalized(why: str, *, method: str = "none", kept=()) -> dict:
    return _report(method=method, why=why, kept=list(kept), warnings=[why])


def skipped(keep=()) -> dict:
    """The report of an import told not to generalize (--no-generalize)."""
    return _report(
        method="skipped",
        why="not generalized: --no-generalize was given",
        kept=list(keep),
        warnings=["not generalized (--no-generalize): clones share the golden VM's identity"],
    )


# ---- the cheap probe ------------------------------------------------------------------------


def probe_head(head: bytes) -> dict:
    """blkid's view of the disk's first bytes: {'PTTYPE': 'dos'} or {'TYPE': 'ext4', ...} or {}."""
    if not shutil.which("blkid"):
        raise GeneralizeError(
            lun="(probe)", detail="blkid is missing: install util-linux (bash scripts/install.sh)"
        )
    with tempfile.NamedTemporaryFile(prefix="coppice-probe-") as t:
        t.write(head)
        t.flush()
        r = subprocess.run(["blkid", "-p", "-o", "export", t.name], capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            if k != "DEVNAME":
                out[k] = v
    return out


# ---- the private NBD export ----------------------------------------------------------------


class _OneExport:
    """A resolver that shows exactly one LUN of the filer, to the local peer only."""

    def __init__(self, filer, lun_path: str):
        self._inner = filer.resolver()
        self.name = lun_path

    def list_exports(self, initiator):
        return [(self.name, "template LUN being generalized")] if initiator.unix else []

    def open_export(self, name, initiator):
        from ..filer.export_resolver import ExportNotFound

        if name != self.name or not initiator.unix:
            raise ExportNotFound(name=name)
        return self._inner.filer.open_lun(name)


class _PrivateExport:
    def __init__(self, filer, lun_path: str):
        from ..nbd.server import NBDServer

        self.dir = tempfile.mkdtemp(prefix="coppice-gen-")
        os.chmod(self.dir, 0o700)
        self.socket = os.path.join(self.dir, "nbd.sock")
        self.server = NBDServer(_OneExport(filer, lun_path), port=None, unix_path=self.socket).start()

    def close(self) -> None:
        try:
            self.server.shutdown(timeout=10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- the appliance ------------------------------------------------------------------------


def kvm_usable() -> bool:
    """Whether to try KVM first: /dev/kvm opens and the CPU advertises vmx or svm."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " vmx" in flags or " svm" in flags


def _launch(socket_path: str, export: str, *, tcg: bool):
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    if tcg:
        g.set_backend_settings(["force_tcg"])
    # For protocol nbd, libguestfs takes the export name as the drive's filename.
    g.add_drive_opts(export, format="raw", protocol="nbd", server=[f"unix:{socket_path}"], readonly=False)
    g.launch()
    return g


def _open_guest(socket_path: str, export: str):
    """Launch the appliance; TCG when KVM is unusable or its launch fails. Returns (g, accel)."""
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    if kvm_usable():
        try:
            return _launch(socket_path, export, tcg=False), "kvm"
        except RuntimeError:
            pass
    try:
        return _launch(socket_path, export, tcg=True), "tcg"
    except RuntimeError as e:
        raise GeneralizeError(lun=export, detail=f"the libguestfs appliance did not start: {e}") from None


# ---- operations -------------------------------------------------------------------------


class _Ops:
    def __init__(self, g):
        self.g = g
        self.done: dict[str, list[dict]] = {}

    def _note(self, op: str, path: str, action: str) -> None:
        self.done.setdefault(op, []).append({"path": path, "action": action})

    def _is_file(self, p: str) -> bool:
        return self.g.is_file(p, followsymlinks=False)

    def _is_link(self, p: str) -> bool:
        return self.g.is_symlink(p)

    def _exists(self, p: str) -> bool:
        return self.g.exists(p) or self._is_link(p)

    def _glob(self, pattern: str) -> list[str]:
        return sorted(self.g.glob_expand_opts(pattern, directoryslash=False))

    def remove(self, op: str, pattern: str) -> None:
        for p in self._glob(pattern):
            if self.g.is_dir(p, followsymlinks=False):
                self.g.rm_rf(p)
            else:
                self.g.rm_f(p)
            self._note(op, p, "removed")

    def empty_dir(self, op: str, d: str) -> None:
        if self.g.is_dir(d, followsymlinks=False):
            for name in sorted(self.g.ls(d)):
                p = f"{d}/{name}"
                self.g.rm_rf(p)
                self._note(op, p, "removed")

    def machine_id(self) -> None:
        p = "/etc/machine-id"
        if self._is_file(p) and self.g.filesize(p) > 0:
            self.g.truncate(p)
            self._note("machine-id", p, "emptied")
        p = "/var/lib/dbus/machine-id"
        if self._is_file(p):
            self.g.rm_f(p)
            self._note("machine-id", p, "removed")

    def ssh_hostkeys(self) -> None:
        self.remove("ssh-hostkeys", "/etc/ssh/ssh_host_*")

    def cloud_init(self) -> None:
        p = "/var/lib/cloud/instance"  # a symlink to instances/<id>: removed even when dangling
        if self._exists(p):
            self.g.rm_rf(p) if self.g.is_dir(p, followsymlinks=False) else self.g.rm_f(p)
            self._note("cloud-init", p, "removed")
        for d in ("instances", "data", "sem", "handlers"):
            self.empty_dir("cloud-init", f"/var/lib/cloud/{d}")

    def logfiles(self) -> None:
        for pat in (
            "/var/log/cloud-init*.log",
            "/var/log/journal/*",
            "/var/log/*.log",
            "/var/log/*.[0-9]",
            "/var/log/*.gz",
            "/var/log/*/*.log",
            "/var/log/*/*.gz",
            "/var/log/wtmp",
            "/var/log/btmp",
            "/var/log/lastlog",
        ):
            self.remove("logfiles", pat)

    def random_seed(self) -> None:
        for p in (
            "/var/lib/systemd/random-seed",
            "/var/lib/systemd/credential.secret",
            "/var/lib/random-seed",
        ):
            if self._exists(p):
                self.g.rm_f(p)
                self._note("random-seed", p, "removed")

    def udev_persistent_net(self) -> None:
        self.remove("udev-persistent-net", "/etc/udev/rules.d/70-persistent-net.rules")

    def dhcp_client_state(self) -> None:
        for pat in (
            "/var/lib/dhcp/*.lease*",
            "/var/lib/dhclient/*",
            "/var/lib/dhcpcd/*",
            "/var/lib/NetworkManager/*.lease",
            "/var/lib/NetworkManager/dhclient-*",
            "/var/lib/systemd/network/*",
        ):
            self.remove("dhcp-client-state", pat)

    def bash_history(self) -> None:
        for home in ["/root"] + self._glob("/home/*"):
            for name in (".bash_history", ".zsh_history", ".ash_history", ".python_history", ".lesshst"):
                p = f"{home}/{name}"
                if self._exists(p):
                    self.g.rm_f(p)
                    self._note("bash-history", p, "removed")

    def hostname(self) -> None:
        p = "/etc/hostname"
        if self._is_file(p) and self.g.read_file(p).strip() not in (b"", b"localhost"):
            self.g.write(p, b"localhost\n")
            self._note("hostname", p, "reset")


def _mount_guest(g, root: str) -> None:
    mps = g.inspect_get_mountpoints(root)
    # Shortest mount point first: / before /var before /var/log.
    for mp in sorted(mps, key=lambda m: (len(m), m)):
        try:
            g.mount(mps[mp], mp)
        except RuntimeError:
            if mp == "/":
                raise


def _encrypted(g) -> list[str]:
    fss = g.list_filesystems()
    return sorted(dev for dev, t in fss.items() if t in ("crypto_LUKS", "BitLocker"))


def generalize_lun(filer, lun_path: str, *, keep=()) -> dict:
    """See the module docstring; returns the report."""
    keep = check_keep(keep)
    t0 = time.monotonic()
    dev = filer.open_lun(lun_path)
    try:
        head = bytes(dev.pread(0, min(_PROBE_BYTES, dev.size)))
    finally:
        dev.close()
    found = probe_head(head)
    if not found:
        r = not_generalized(
            "no partition table or file system found on the disk (blkid): nothing libguestfs can "
            "inspect, so nothing was generalized; give each VM its identity through the customization spec",
            method="probe",
            kept=keep,
        )
        r["seconds"] = round(time.monotonic() - t0, 3)
        return r
    if found.get("TYPE") in ("crypto_LUKS", "BitLocker"):
        r = not_generalized(
            f"the disk is encrypted ({found['TYPE']}): its file systems cannot be read offline, so nothing "
            "was generalized; generalize inside the guest (e.g. `cloud-init clean --machine-id --logs`, "
            "remove /etc/ssh/ssh_host_*) before importing",
            method="probe",
            kept=keep,
        )
        r["seconds"] = round(time.monotonic() - t0, 3)
        return r

    with _lock:
        report = _run_appliance(filer, lun_path, keep)
    dev = filer.open_lun(lun_path)
    try:
        dev.flush()
    finally:
        dev.close()
    report["seconds"] = round(time.monotonic() - t0, 3)
    return report


def _run_appliance(filer, lun_path: str, keep: list[str]) -> dict:
    export = _PrivateExport(filer, lun_path)
    try:
        g, accel = _open_guest(export.socket, lun_path)
        try:
            report = _generalize_open(g, keep)
            report["accel"] = accel
            g.shutdown()  # syncs and stops the appliance: every write reached the LUN
        finally:
            g.close()
    finally:
        export.close()
    return report


def _generalize_open(g, keep: list[str]) -> dict:
    roots = g.inspect_os()
    if not roots:
        enc = _encrypted(g)
        if enc:
            why = (
                f"encrypted {', '.join(enc)}: libguestfs cannot read them without the key, so nothing "
                "was generalized; generalize inside the guest before importing"
            )
        else:
            fss = g.list_filesystems()
            why = (
                "no operating system found on the disk (file systems: "
                f"{', '.join(f'{d} {t}' for d, t in sorted(fss.items())) or 'none'}), so nothing was generalized"
            )
        return not_generalized(why, method="libguestfs", kept=keep)
    if len(roots) > 1:
        return not_generalized(
            f"{len(roots)} operating systems on one disk ({', '.join(roots)}): not generalized, "
            "import one system per template",
            method="libguestfs",
            kept=keep,
        )
    root = roots[0]
    os_info = {
        "type": g.inspect_get_type(root),
        "distro": g.inspect_get_distro(root),
        "version": f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}",
        "product": g.inspect_get_product_name(root),
        "root": root,
    }
    if os_info["type"] == "windows":
        r = not_generalized(
            f"Windows ({os_info['product']}) needs sysprep run inside the guest (`sysprep /generalize "
            "/oobe /shutdown`) before it is imported: there is no offline sysprep, so nothing was generalized",
            method="libguestfs",
            kept=keep,
        )
        r["os"] = os_info
        return r
    if os_info["type"] != "linux":
        r = not_generalized(
            f"{os_info['type']} ({os_info['product']}): Coppice generalizes Linux guests only; nothing was "
            "generalized",
            method="libguestfs",
            kept=keep,
        )
        r["os"] = os_info
        return r
    _mount_guest(g, root)
    ops = _Ops(g)
    for name in OPERATIONS:
        if name not in keep:
            getattr(ops, name.replace("-", "_"))()
    g.sync()
    g.umount_all()
    warnings = []
    enc = _encrypted(g)
    if enc:
        warnings.append(f"encrypted {', '.join(enc)} not generalized (no key)")
    cleared = [e["path"] for items in ops.done.values() for e in items]
    return _report(
        done=True,
        os=os_info,
        operations={name: ops.done.get(name, []) for name in OPERATIONS if name not in keep},
        cleared=cleared,
        kept=keep,
        warnings=warnings,
    )


def report_lines(report: dict) -> list[str]:
    """The report for people: one line per file cleared, then warnings (prefixed ``warning:``)."""
    out = []
    if report.get("done"):
        osr = report.get("os") or {}
        out.append(
            f"Generalized {osr.get('distro')} {osr.get('product')} ({osr.get('root')}) in "
            f"{report.get('seconds')} s with libguestfs ({report.get('accel', '?')}):"
        )
        for op, items in report.get("operations", {}).items():
            for e in items:
                out.append(f"  {op:<20} {e['action']:<8} {e['path']}")
            if not items:
                out.append(f"  {op:<20} (nothing found)")
        if report.get("kept"):
            out.append(f"  kept (--keep): {', '.join(report['kept'])}")
    for w in report.get("warnings", []):
        out.append(f"warning: {w}")
    if not report.get("done"):
        out.append(
            "warning: VMs provisioned from this template may share the golden VM's identity "
            "(machine-id, SSH host keys); give each one its own inside the guest"
        )
    return out
