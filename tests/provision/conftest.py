"""Fixtures for the provisioner tests: the tiny template, the system libvirt
daemon, and qemu-nbd as a stand-in NBD target (Coppice's own target is
tested in tests/nbd)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from coppice.provision.guest_image import build_tiny_template

# Shared across runs: the kernel .deb is downloaded once per machine.
GUEST_CACHE = os.environ.get("COPPICE_GUEST_CACHE", "/var/cache/coppice/guest")


@pytest.fixture(scope="session")
def tiny_template():
    return build_tiny_template(GUEST_CACHE)


# NBD TLS material for libvirt's QEMU driver (nbd_tls_x509_cert_dir is one
# directory per daemon). Fixed and kept across runs: setting it the first
# time restarts libvirtd, later runs find it in place and restart nothing.
TLS_BASE = "/var/lib/coppice/test-libvirt-nbd-tls"


def _tls_dirs():
    from coppice.nbd import tls

    server, client = f"{TLS_BASE}/server", f"{TLS_BASE}/client"
    os.makedirs(server, exist_ok=True)
    tls.init_tls_dir(server)
    if not os.path.exists(f"{client}/client-cert.pem"):
        tls.create_client_cert(server, "libvirt-qemu", client, force=True)
    return server, client


@pytest.fixture(scope="session")
def nbd_tls_dirs():
    return _tls_dirs()


@pytest.fixture(scope="session")
def system_libvirt(nbd_tls_dirs):
    from coppice.provision.hypervisor import Hypervisor, ensure_system_libvirtd

    # Configure TLS before opening the session's connection: a restart would drop it.
    ensure_system_libvirtd(tls_cert_dir=nbd_tls_dirs[1])
    h = Hypervisor.open("qemu:///system")
    yield h
    h.close()


@pytest.fixture
def workdir():
    # A real file system: qemu-nbd --cache=none opens with O_DIRECT, which tmpfs refuses.
    d = tempfile.mkdtemp(prefix="coppice-prov-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def domain_names(system_libvirt):
    """Unique domain names for one test; every one is destroyed and undefined afterwards."""
    made = []

    def make(stem):
        name = f"coppice-test-{stem}-{uuid.uuid4().hex[:6]}"
        made.append(name)
        return name

    yield make
    for n in made:
        system_libvirt.remove(n)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuNbd:
    """One qemu-nbd process serving one file as one export."""

    def __init__(self, path, export, *, socket_path=None, tls_dir=None, readonly=False):
        self.path, self.export, self.socket = path, export, socket_path
        self.port = None if socket_path else _free_port()
        cmd = ["qemu-nbd", "-f", "raw", "-t", "-x", export, "--cache=none"]
        if readonly:
            cmd.append("--read-only")
        if socket_path:
            cmd += ["-k", socket_path]
        else:
            cmd += ["-b", "127.0.0.1", "-p", str(self.port)]
        if tls_dir:
            cmd += [
                "--object",
                f"tls-creds-x509,id=tls0,dir={tls_dir},endpoint=server",
                "--tls-creds",
                "tls0",
            ]
        self.proc = subprocess.Popen(cmd + [path], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemu-nbd exited: {self.proc.stderr.read().decode()}")
            try:
                if socket_path:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(socket_path)
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def source(self, tls=False):
        from coppice.provision.domain_xml import NbdSource

        if self.socket:
            return NbdSource(self.export, socket=self.socket, tls=tls)
        return NbdSource(self.export, host="127.0.0.1", port=self.port, tls=tls)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def qemu_nbd():
    servers = []

    def start(path, export, **kw):
        s = QemuNbd(path, export, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
