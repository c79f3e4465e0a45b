"""Fixtures for black-box tests of the NBD server with real clients.

Each test gets its own server on a free port (and a Unix socket), serving
file-backed test devices (``file_device.FileDevice``) through an in-test
resolver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from coppice.nbd.server import NBDServer
from tests.nbd.file_device import DictResolver, FileDevice

MiB = 1 << 20


@pytest.fixture
def workdir():
    # A real file system (not tmpfs) so holes and fdatasync behave as on a pool.
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    d = tempfile.mkdtemp(prefix="coppice-nbd-", dir=base)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Served:
    """A running server plus the files behind its exports."""

    def __init__(self, server: NBDServer, resolver: DictResolver, workdir: str):
        self.server = server
        self.resolver = resolver
        self.workdir = workdir

    @property
    def port(self) -> int:
        return self.server.address[1]

    def uri(self, export: str = "disk", scheme: str = "nbd", query: str = "") -> str:
        u = f"{scheme}://127.0.0.1:{self.port}/{export}"
        return u + (f"?{query}" if query else "")

    def unix_uri(self, export: str = "disk") -> str:
        return f"nbd+unix:///{export}?socket={self.server.unix_path}"

    def path(self, export: str = "disk") -> str:
        return os.path.join(self.workdir, f"{export.strip('/').replace('/', '_')}.img")


@pytest.fixture
def serve(workdir):
    """serve(size=..., allow=..., **server_kwargs) -> Served.

    Exports: ``disk`` (read-write), ``ro`` (the same file, read-only) and
    ``other`` (a second read-write file)."""
    servers = []

    def start(size: int = 16 * MiB, allow=None, exports=None, **kwargs) -> Served:
        paths = {n: os.path.join(workdir, f"{n}.img") for n in ("disk", "other")}
        for p in paths.values():
            with open(p, "wb") as f:
                f.truncate(size)
        ex = {
            "disk": (lambda: FileDevice(paths["disk"]), "the test disk"),
            "ro": (lambda: FileDevice(paths["disk"], read_only=True), "read-only view"),
            "other": (lambda: FileDevice(paths["other"]), "another disk"),
        }
        ex.update(exports or {})
        resolver = DictResolver(ex, allow=allow)
        kwargs.setdefault("unix_path", os.path.join(workdir, "nbd.sock"))
        server = NBDServer(resolver, port=0, **kwargs).start()
        servers.append(server)
        return Served(server, resolver, workdir)

    yield start
    for s in servers:
        s.shutdown(timeout=10)


def run(*cmd, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    """Run a client program; on failure show its output."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p
