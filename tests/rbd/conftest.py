"""Fixtures for the RBD backend's own tests: a Coppice pool on the session's
Ceph cluster (created through the CLI, as a user does), and `coppice serve`
on it as a real subprocess."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.api.conftest import Served, run_cli  # noqa: F401  (run_cli: cli())


@pytest.fixture
def rbd_pool(ceph_conf, ceph_pool):
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    d = tempfile.mkdtemp(prefix="coppice-rbd-", dir=base)
    p = os.path.join(d, "pool")
    from coppice.filer import Filer

    Filer.create(p, backend="rbd", ceph_conf=ceph_conf, ceph_pool=ceph_pool).close()
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rbd_filer(rbd_pool):
    from coppice.filer import Filer

    f = Filer.open(rbd_pool)
    yield f
    f.close()


@pytest.fixture
def rbd_served(rbd_pool):
    """`coppice serve` on the rbd pool; the caller sets it up through the CLI first."""
    started = []

    def start():
        s = Served(rbd_pool)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.stop()


def cli(pool, *args):
    r = run_cli(pool, *args)
    assert r.returncode == 0, f"coppice {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout
