"""The connection to libvirt: the only module in Coppice that imports libvirt.

Contract: ``Hypervisor.open(uri)`` wraps one libvirt connection and offers
exactly what the provisioner needs — define, start, destroy, shutdown,
undefine, remove, lookup, list, state, XML, wait for shut-off — by domain
name, with libvirt's errors turned into ``CoppiceError``s a user can act on
(``DomainNotFound``, ``DomainExists``, ``DomainTimeout``,
``HypervisorError``). Nothing libvirt-typed leaves this module. Works with
``test:///default`` (no daemon; fast tests), ``qemu:///system`` and
``qemu:///embed?root=DIR``.

The hypervisor a command means when it names none is ``qemu:///system``
(``local_uri``; ``COPPICE_CONNECT`` and ``--connect`` name another;
libvirt's in-memory ``test:///default`` only when named).

Coppice never reconfigures the host behind a user's back. ``setup_host()``
is what ``scripts/install.sh`` runs, as root, announcing every change it
makes: the ``libvirt-qemu`` account Debian's libvirtd looks up at start,
a managed block in /etc/libvirt/qemu.conf (QEMU as root with no security
driver on hosts without systemd and the libvirt-daemon-system profiles;
the NBD TLS client directory), and libvirtd restarted only when that block
changed. ``ensure_system_libvirtd()`` writes nothing: it checks that the
host was set up (``HostNotSetUp`` names ``scripts/install.sh`` otherwise),
starts /usr/sbin/virtlogd and /usr/sbin/libvirtd when they are not running
(a machine without systemd has nothing else to start them), and waits
until the driver has answered a first call (its QEMU capability probe,
~8 s once). Idempotent and safe from concurrent processes (a file lock).

Threading: a ``Hypervisor`` is one libvirt connection; libvirt connections
are thread-safe, so threads may share one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

import libvirt

from .errors import (
    DomainExists,
    DomainNotFound,
    DomainTimeout,
    HostNotSetUp,
    HypervisorError,
    LibvirtUnavailable,
)

SYSTEM_URI = "qemu:///system"
TEST_URI = "test:///default"
QEMU_CONF = "/etc/libvirt/qemu.conf"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
_LOCK = "/run/coppice-libvirtd.lock"
_BEGIN = "# BEGIN coppice: managed by coppice.provision.hypervisor; edits between these lines are replaced"
_END = "# END coppice"

# libvirt prints every error to stderr by default; we raise them instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}

# Remove what a domain may carry besides its definition; drivers that know
# none of these refuse the flags, and we retry without them.
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


@dataclasses.dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: str  # running, shutoff, paused, ... (see _STATES)
    id: int | None  # the running domain's id, None when shut off
    persistent: bool


class Hypervisor:
    """One libvirt connection; every method takes a domain name."""

    def __init__(self, conn: libvirt.virConnect, uri: str) -> None:
        self._conn = conn
        self.uri = uri

    @classmethod
    def open(cls, uri: str = SYSTEM_URI) -> Hypervisor:
        if uri.startswith("qemu:///embed"):
            _start_event_loop()  # the embedded driver runs its event loop in our process
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            hint = (
                " Is libvirtd running? `bash scripts/install.sh` (as root) sets the host up and starts it."
                if uri.startswith("qemu:///system")
                else ""
            )
            raise LibvirtUnavailable(uri=uri, detail=f"{e.get_error_message()}.{hint}") from None
        return cls(conn, uri)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------
    def _err(self, e: libvirt.libvirtError, name: str | None = None) -> Exception:
        code = e.get_error_code()
        if name is not None and code == libvirt.VIR_ERR_NO_DOMAIN:
            return DomainNotFound(name=name, uri=self.uri)
        what = f"domain {name}: " if name else ""
        return HypervisorError(uri=self.uri, detail=what + (e.get_error_message() or str(e)))

    def _dom(self, name: str) -> libvirt.virDomain:
        try:
            return self._conn.lookupByName(name)
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None

    # -- queries ---------------------------------------------------------
    def exists(self, name: str) -> bool:
        try:
            self._conn.lookupByName(name)
            return True
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise self._err(e, name) from None

    def lookup(self, name: str) -> DomainInfo:
        d = self._dom(name)
        try:
            st = d.state()[0]
            did = d.ID()
            return DomainInfo(
                name=d.name(),
                uuid=d.UUIDString(),
                state=_STATES.get(st, str(st)),
                id=did if did >= 0 else None,
                persistent=bool(d.isPersistent()),
            )
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None

    def state(self, name: str) -> str:
        try:
            st = self._dom(name).state()[0]
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None
        return _STATES.get(st, str(st))

    def list_domains(self, *, active_only: bool = False) -> list[str]:
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if active_only else 0
        try:
            return sorted(d.name() for d in self._conn.listAllDomains(flags))
        except libvirt.libvirtError as e:
            raise self._err(e) from None

    def xml(self, name: str, *, inactive: bool = True) -> str:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        try:
            return self._dom(name).XMLDesc(flags)
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None

    # -- changes ---------------------------------------------------------
    def define(self, xml: str, *, replace: bool = False) -> str:
        """Define (persistently) the domain xml describes; return its name.

        A domain of that name already defined is refused, unless replace:
        then its definition is replaced and it keeps its UUID.
        """
        m = re.search(r"<name>\s*([^<]*?)\s*</name>", xml)
        name = m.group(1) if m else None
        if name and self.exists(name):
            if not replace:
                raise DomainExists(name=name, uri=self.uri)
            # libvirt redefines a name only under its existing UUID.
            from .domain_xml import rewrite_domain_xml

            xml = rewrite_domain_xml(xml, uuid=self.lookup(name).uuid)
        try:
            return self._conn.defineXML(xml).name()
        except libvirt.libvirtError as e:
            if (
                e.get_error_code() in (libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_ERR_DOM_EXIST)
                and "already exists" in (e.get_error_message() or "")
                and name
            ):
                raise DomainExists(name=name, uri=self.uri) from None
            raise self._err(e, name) from None

    def start(self, name: str) -> None:
        try:
            self._dom(name).create()
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None

    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI); returns at once."""
        try:
            self._dom(name).shutdown()
        except libvirt.libvirtError as e:
            raise self._err(e, name) from None

    def destroy(self, name: str) -> None:
        """Power the domain off now; a domain already off is fine."""
        d = self._dom(name)
        try:
            if d.isActive():
                d.destroy()
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:  # shut off meanwhile
                return
            raise self._err(e, name) from None

    def undefine(self, name: str) -> None:
        d = self._dom(name)
        try:
            d.undefineFlags(_UNDEFINE_FLAGS)
        except libvirt.libvirtError as e:
            if e.get_error_code() not in (
                libvirt.VIR_ERR_INVALID_ARG,
                libvirt.VIR_ERR_NO_SUPPORT,
                libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
            ):
                raise self._err(e, name) from None
            try:
                d.undefine()
            except libvirt.libvirtError as e2:
                raise self._err(e2, name) from None

    def remove(self, name: str) -> bool:
        """Destroy and undefine name if it exists; True when something was removed."""
        if not self.exists(name):
            return False
        self.destroy(name)
        try:
            self.undefine(name)
        except DomainNotFound:  # transient: gone when destroyed
            pass
        return True

    def wait_for_shutoff(self, name: str, timeout: float, *, poll: float = 0.1) -> float:
        """Wait until name is shut off (or gone, for a transient domain); return seconds waited."""
        t0 = time.monotonic()
        state = "?"
        while True:
            try:
                state = self.state(name)
            except DomainNotFound:
                return time.monotonic() - t0
            if state == "shutoff":
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise DomainTimeout(name=name, uri=self.uri, timeout=timeout, state=state)
            time.sleep(poll)


_event_loop_started = False
_event_loop_lock = __import__("threading").Lock()


def _start_event_loop() -> None:
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        import threading

        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _event_loop_started = True


def local_uri(uri: str | None) -> str:
    """The hypervisor a command without a daemon means: uri, else COPPICE_CONNECT, else qemu:///system."""
    if uri:
        return uri
    env = (os.environ.get("COPPICE_CONNECT") or "").replace(",", " ").split()
    return env[0] if env else SYSTEM_URI


def connect(uri: str = SYSTEM_URI, *, start_daemon: bool = True) -> Hypervisor:
    """Open uri; for qemu:///system first make sure the daemon runs (start_daemon)."""
    if start_daemon and uri == SYSTEM_URI:
        ensure_system_libvirtd()
    return Hypervisor.open(uri)


# -- the system daemon, started by hand --------------------------------------


def _pid_alive(pidfile: str) -> bool:
    try:
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    # A stale pidfile may name a recycled pid: check it is the daemon.
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return Path(pidfile).stem.split(".")[0] in os.path.basename(exe)


def _qemu_conf_block(tls_cert_dir: str | None) -> str:
    lines = [_BEGIN, 'user = "root"', 'group = "root"', 'security_driver = "none"']
    if tls_cert_dir:
        lines.append(f'nbd_tls_x509_cert_dir = "{tls_cert_dir}"')
    lines.append(_END)
    return "\n".join(lines) + "\n"


def _configure_qemu_conf(path: str, tls_cert_dir: str | None) -> bool:
    """Write our managed block into qemu.conf; True when the file changed."""
    p = Path(path)
    old = p.read_text() if p.exists() else ""
    keep: list[str] = []
    inside = False
    managed = ("user", "group", "security_driver", "nbd_tls_x509_cert_dir")
    for line in old.splitlines():
        if line.startswith("# BEGIN coppice"):
            inside = True
            continue
        if inside:
            if line.startswith(_END):
                inside = False
            continue
        # The same key set twice is ambiguous; ours win, theirs are commented out.
        if re.match(r"\s*({})\s*=".format("|".join(managed)), line):
            line = "# (coppice) " + line
        keep.append(line)
    if tls_cert_dir is None:
        # Keep a TLS directory configured earlier: dropping it would break TLS disks.
        m = re.search(r'^nbd_tls_x509_cert_dir = "([^"]*)"', old, re.M)
        tls_cert_dir = m.group(1) if m else None
    body = "\n".join(keep).rstrip("\n")
    new = (body + "\n\n" if body else "") + _qemu_conf_block(tls_cert_dir)
    if new == old:
        return False
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".coppice-tmp")
    tmp.write_text(new)
    os.replace(tmp, p)
    return True


def _ensure_qemu_account() -> list[str]:
    """Create the libvirt-qemu system user and group libvirt's QEMU driver looks up at start.

    Debian's libvirtd resolves its built-in default user before it reads
    qemu.conf, so the account must exist even though qemu.conf says root;
    the libvirt-daemon-system package would create it, but drags in systemd.
    """
    import grp
    import pwd

    made = []
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        _run_root(["groupadd", "--system", "libvirt-qemu"])
        made.append("created the system group libvirt-qemu")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        made.append("created the system user libvirt-qemu (no login, no home)")
        _run_root(
            [
                "useradd",
                "--system",
                "--gid",
                "libvirt-qemu",
                "--no-create-home",
                "--home-dir",
                "/var/lib/libvirt",
                "--shell",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            ]
        )
    return made


def _run_root(cmd: list[str]) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise LibvirtUnavailable(uri=SYSTEM_URI, detail=f"{cmd[0]}: {e}") from None
    if r.returncode not in (0, 9):  # 9: created meanwhile by a concurrent caller
        raise LibvirtUnavailable(
            uri=SYSTEM_URI, detail=f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}"
        )


def _spawn_daemon(path: str) -> None:
    # The directories the libvirt-daemon-system package would have made.
    for d in (
        "/var/log/libvirt",
        "/var/log/libvirt/qemu",
        "/var/lib/libvirt",
        "/var/cache/libvirt",
        "/run/libvirt",
    ):
        os.makedirs(d, exist_ok=True)
    if not os.access(path, os.X_OK):
        raise LibvirtUnavailable(
            uri=SYSTEM_URI,
            detail=f"{path} is missing; install the Debian "
            "packages libvirt-daemon and libvirt-daemon-driver-qemu "
            "(bash scripts/install.sh)",
        )
    r = subprocess.run(
        [path, "--daemon"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
        start_new_session=True,
    )
    if r.returncode != 0:
        raise LibvirtUnavailable(
            uri=SYSTEM_URI, detail=f"{path} --daemon exited {r.returncode}: {r.stderr.strip()[-400:]}"
        )


def _stop_libvirtd(timeout: float = 15.0) -> None:
    try:
        pid = int(Path("/run/libvirtd.pid").read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    raise LibvirtUnavailable(uri=SYSTEM_URI, detail=f"libvirtd (pid {pid}) did not stop within {timeout} s")


def _answers(uri: str) -> str | None:
    """None when uri answers a real call, else libvirt's reason."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        return e.get_error_message()
    try:
        conn.getCapabilities()  # the first one waits for the QEMU probe
        conn.listAllDomains(0)
        return None
    except libvirt.libvirtError as e:
        return e.get_error_message()
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def configured_tls_dir(qemu_conf: str = QEMU_CONF) -> str | None:
    """The nbd_tls_x509_cert_dir qemu.conf names, if any."""
    try:
        text = Path(qemu_conf).read_text()
    except OSError:
        return None
    m = re.search(r'^\s*nbd_tls_x509_cert_dir\s*=\s*"([^"]*)"', text, re.M)
    return m.group(1) if m else None


def _check_host(tls_cert_dir: str | None, qemu_conf: str) -> None:
    import pwd

    missing = []
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        missing.append("the libvirt-qemu account libvirtd looks up at start")
    if tls_cert_dir and configured_tls_dir(qemu_conf) != tls_cert_dir:
        missing.append(f"nbd_tls_x509_cert_dir = {tls_cert_dir!r} in {qemu_conf}")
    if missing:
        raise HostNotSetUp(uri=SYSTEM_URI, missing="; ".join(missing))


def ensure_system_libvirtd(
    *, tls_cert_dir: str | None = None, timeout: float = 90.0, qemu_conf: str = QEMU_CONF
) -> None:
    """Make qemu:///system answer, starting virtlogd and libvirtd if needed; changes no configuration.

    tls_cert_dir: the NBD TLS client directory libvirt must have been set up
    with (``setup_host``), for disks with tls='yes'.
    """
    if _answers(SYSTEM_URI) is None and (not tls_cert_dir or configured_tls_dir(qemu_conf) == tls_cert_dir):
        return
    if os.geteuid() != 0:
        raise LibvirtUnavailable(
            uri=SYSTEM_URI,
            detail="the system libvirt daemon is not running (or not set up) and only root can start it; "
            "run `bash scripts/install.sh` as root, or name another hypervisor with --connect",
        )
    _check_host(tls_cert_dir, qemu_conf)
    Path(_LOCK).parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _start_daemons()
        _wait_answering(timeout, qemu_conf)


def _start_daemons() -> None:
    import logging

    for pidfile, path in (("/run/virtlogd.pid", VIRTLOGD), ("/run/libvirtd.pid", LIBVIRTD)):
        if not _pid_alive(pidfile):
            logging.getLogger(__name__).warning("starting %s (not running)", path)
            _spawn_daemon(path)


def _wait_answering(timeout: float, qemu_conf: str) -> None:
    t0 = time.monotonic()
    deadline = t0 + timeout
    reason = _answers(SYSTEM_URI)
    while reason is not None:
        if time.monotonic() > deadline:
            raise LibvirtUnavailable(
                uri=SYSTEM_URI, detail=f"libvirtd did not answer within {timeout} s: {reason}"
            )
        if not _pid_alive("/run/libvirtd.pid") and time.monotonic() > t0 + 5:
            raise LibvirtUnavailable(
                uri=SYSTEM_URI,
                detail=f"libvirtd exited at start ({reason}); check {qemu_conf} and run `{LIBVIRTD} -v` to see why",
            )
        time.sleep(0.2)
        reason = _answers(SYSTEM_URI)


# -- host setup: run by scripts/install.sh, never by a command or a test -----------------

DEFAULT_TLS_BASE = "/var/lib/coppice/test-libvirt-nbd-tls"


def setup_host(
    *,
    tls_base: str | None = DEFAULT_TLS_BASE,
    qemu_conf: str = QEMU_CONF,
    announce=print,
    timeout: float = 90.0,
) -> list[str]:
    """Set this host up for qemu:///system (as root); announce and return every change made."""
    changes: list[str] = []

    def say(msg: str) -> None:
        changes.append(msg)
        announce(f"coppice host setup: {msg}")

    if os.geteuid() != 0:
        raise LibvirtUnavailable(uri=SYSTEM_URI, detail="host setup needs root")
    for made in _ensure_qemu_account():
        say(made)
    tls_client = None
    if tls_base:
        from ..nbd import tls

        server, tls_client = f"{tls_base}/server", f"{tls_base}/client"
        if not os.path.exists(f"{tls_client}/client-cert.pem"):
            os.makedirs(server, exist_ok=True)
            tls.init_tls_dir(server)
            tls.create_client_cert(server, "libvirt-qemu", tls_client, force=True)
            say(f"made an NBD TLS CA in {server} and libvirt's client certificate in {tls_client}")
    if _configure_qemu_conf(qemu_conf, tls_client):
        say(
            f"wrote the coppice block in {qemu_conf}: QEMU runs as root with security_driver none "
            "(no systemd or AppArmor profiles from libvirt-daemon-system here)"
            + (f", nbd_tls_x509_cert_dir {tls_client}" if tls_client else "")
        )
        if _pid_alive("/run/libvirtd.pid"):
            _stop_libvirtd()
            say("restarted libvirtd to read it (running guests keep running)")
    Path(_LOCK).parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for pidfile, path in (("/run/virtlogd.pid", VIRTLOGD), ("/run/libvirtd.pid", LIBVIRTD)):
            if not _pid_alive(pidfile):
                _spawn_daemon(path)
                say(f"started {path}")
        _wait_answering(timeout, qemu_conf)
    return changes


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["setup-host"]:
        sys.exit("usage: python -m coppice.provision.hypervisor setup-host")
    setup_host()
