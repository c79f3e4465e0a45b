"""Shared helpers for the provisioner's business-logic tests (test:///default)."""

import os
import subprocess
import uuid

import pytest

from coppice.filer.filer import Filer
from coppice.provision import registry

TEST_URI = "test:///default"


def small_image(path, size=8 << 20, fmt="raw"):
    """A small disk image with a few non-zero blocks (and a tiny-template-like identity)."""
    raw = path + ".raw"
    with open(raw, "wb") as f:
        f.truncate(size)
        f.seek(0)
        f.write(b"not-a-coppice-template\n".ljust(4096, b"\0"))
        f.seek(1 << 20)
        f.write(b"golden data".ljust(4096, b"x"))
    if fmt == "raw":
        os.rename(raw, path)
    else:
        subprocess.run(["qemu-img", "convert", "-O", fmt, raw, path], check=True)
        os.unlink(raw)
    return path


def uniq(stem):
    """A VM name stem no other test in this process uses (test:///default is per process)."""
    return f"{stem}{uuid.uuid4().hex[:5]}x"


def snapshot_state(filer, hv):
    """Everything provisioning may create: volumes, maps, domains, index entries."""
    return {
        "volumes": sorted(filer.vol_names()),
        "maps": sorted((m["path"], m["igroup"], m["lun_id"]) for m in filer.lun_maps()),
        "domains": sorted(hv.list_domains()),
        "vms": sorted(k for k, _ in registry.items(filer, registry.VM)),
        "datastores": sorted(k for k, _ in registry.items(filer, registry.DATASTORE)),
        "leases": sorted(k for k, _ in registry.items(filer, registry.IPALLOC)),
    }


@pytest.fixture
def filer(pool_dir, backend, request):
    """A Filer on a new pool; also on rbd for tests marked backends("native", "rbd")."""
    if backend == "rbd":
        conf = request.getfixturevalue("ceph_conf")
        f = Filer.create(pool_dir, backend="rbd", ceph_conf=conf, ceph_pool="rbd")
    else:
        f = Filer.create(pool_dir)
    yield f
    f.close()


@pytest.fixture
def hv():
    from coppice.provision.hypervisor import Hypervisor

    h = Hypervisor.open(TEST_URI)
    yield h
    h.close()


@pytest.fixture
def image(tmp_path):
    return small_image(str(tmp_path / "golden.raw"))


@pytest.fixture
def tpl(filer, image):
    from coppice.provision import template

    template.import_image(filer, "gold", image, memory_mib=64)
    return "gold"
