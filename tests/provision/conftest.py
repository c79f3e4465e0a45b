"""Fixtures for the provisioner tests: the tiny template and the system
libvirt daemon (set up by scripts/install.sh; the fixtures only check it
and start it when stopped). Boots serve their disks from Coppice's own NBD
target."""

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

    # Checks that scripts/install.sh set libvirt up with this TLS directory; changes nothing.
    ensure_system_libvirtd(tls_cert_dir=nbd_tls_dirs[1])
    h = Hypervisor.open("qemu:///system")
    yield h
    h.close()


@pytest.fixture
def workdir():
    # A real file system under /var/tmp: pools and serial logs of booted guests live here.
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
