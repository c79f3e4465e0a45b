"""Fixtures for black-box tests of the NBD server with real clients.

``target`` (and ``product``) serve the product: filer LUNs (active, clone,
snapshot) through the filer's export resolver and the NBD server, which is
what the client suites (qemu-img, qemu-io, nbdinfo, nbdcopy, fio) run
against. ``serve`` serves file-backed test devices
(``file_device.FileDevice``) through an in-test resolver, for tests about
the protocol alone (malformed input, fault injection, revocation
mechanics). Each test gets its own server on a free port and a Unix socket.
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


# Which Debian package brings each client program (scripts/install.sh installs them).
TOOLS = {
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "qemu-nbd": "qemu-utils",
    "nbdinfo": "libnbd-bin",
    "nbdcopy": "libnbd-bin",
    "fio": "fio",
}


def run(*cmd, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    """Run a client program; on failure show its output. A program that is
    not installed fails the test (these clients are the product's contract)."""
    if shutil.which(cmd[0]) is None:
        pkg = TOOLS.get(cmd[0], "its Debian package")
        pytest.fail(f"{cmd[0]} is not installed: run scripts/install.sh (it installs {pkg})", pytrace=False)
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


# --------------------------------------------------------------------------
# The product: filer LUNs behind the product's resolver and NBD server
# --------------------------------------------------------------------------

LUN_PATHS = {
    # what a client test calls an export -> the LUN path served for it, per kind
    "lun": {"disk": "/vol/v/disk", "other": "/vol/v/other", "ro": "/vol/v/.snapshot/ro/disk"},
    "clone": {"disk": "/vol/c/disk", "other": "/vol/c/other", "ro": "/vol/c/.snapshot/ro/disk"},
}


class ProductServed(Served):
    """The product's NBD server over a filer pool: volume ``v`` with LUNs
    ``disk`` and ``other`` mapped to an igroup holding 127.0.0.1; for
    ``kind="clone"`` the exports are the LUNs of ``c``, a FlexClone of ``v``
    (remapped online). ``ro`` names a snapshot LUN of ``disk`` (read-only,
    taken when the target started). Export names are LUN paths; ``uri()``
    accepts the short names above or any LUN path."""

    def __init__(self, server, filer, workdir, kind):
        super().__init__(server, None, workdir)
        self.filer = filer
        self.kind = kind

    def export(self, name: str) -> str:
        return LUN_PATHS[self.kind].get(name, name)

    def uri(self, export: str = "disk", scheme: str = "nbd", query: str = "") -> str:
        return super().uri("/" + self.export(export).lstrip("/"), scheme, query)

    def unix_uri(self, export: str = "disk") -> str:
        return f"nbd+unix:///{self.export(export)}?socket={self.server.unix_path}"

    def path(self, export: str = "disk") -> str:
        raise AssertionError("a LUN has no backing file; read it through the filer or a client")


@pytest.fixture
def product(workdir, backend, request):
    """product(kind="lun"|"clone", size=16 MiB, **server_kwargs) -> ProductServed,
    on the embedded engine, or on Ceph RBD as well in a module marked
    ``backends("native", "rbd")``."""
    from coppice.filer import Filer

    started = []
    ceph = request.getfixturevalue("ceph_conf") if backend == "rbd" else None

    def start(kind: str = "lun", size: int = 16 * MiB, **kwargs) -> ProductServed:
        where = os.path.join(workdir, f"pool{len(started)}")
        if ceph:
            f = Filer.create(where, backend="rbd", ceph_conf=ceph, ceph_pool="rbd")
        else:
            f = Filer.create(where)
        f.vol_create("v", 8 * size)
        for lun in ("disk", "other"):
            f.lun_create(f"/vol/v/{lun}", size)
        f.igroup_create("local", ["127.0.0.1"], protocol="nbd")
        for lun in ("disk", "other"):
            f.lun_map(f"/vol/v/{lun}", "local")
        if kind == "clone":
            f.snap_create("v", "base")
            f.clone_create("c", "v", "base", remap=True)
        vol = "c" if kind == "clone" else "v"
        f.snap_create(vol, "ro")
        kwargs.setdefault("unix_path", os.path.join(workdir, f"nbd{len(started)}.sock"))
        server = NBDServer(f.resolver(), port=0, **kwargs).start()
        started.append((server, f))
        return ProductServed(server, f, workdir, kind)

    yield start
    for server, f in started:
        server.shutdown(timeout=10)
        f.close()


@pytest.fixture(params=["lun", "clone"])
def target(request, product):
    """The client suites' target: the product's active and clone LUNs."""

    def start(size: int = 16 * MiB, **kwargs) -> ProductServed:
        return product(request.param, size, **kwargs)

    return start


def assert_map(runs, expected, backend: str, size: int, touched=None) -> None:
    """The data runs a client saw (``runs``) against the runs that hold data
    (``expected``). The engine reports them exactly. RBD reports a RADOS
    object's extent from its start to its last written byte (its allocation
    map has no holes inside an object, and a zeroed range stays allocated),
    so on rbd the runs must cover every byte of ``expected`` and lie within
    the objects (4 MiB each) that writes or zeroes ever ``touched`` (default:
    ``expected``), never beyond them: documented in docs/rbd.md."""
    if backend != "rbd":
        assert runs == expected
        return
    obj = 4 * MiB
    for s, n in expected:
        assert any(a <= s and s + n <= a + m for a, m in runs), (
            f"written {s}+{n} not reported as data: {runs}"
        )
    written_objects = {b for s, n in (touched or expected) for b in range(s // obj, -(-(s + n) // obj))}
    for a, m in runs:
        assert {b for b in range(a // obj, -(-(a + m) // obj))} <= written_objects, (
            f"data run {a}+{m} lies outside the written objects {sorted(written_objects)}: {runs}"
        )
    assert all(0 <= a and a + m <= size for a, m in runs)
