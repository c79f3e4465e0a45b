import os
import shutil
import tempfile

import pytest

BACKENDS = ("native", "rbd")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backends(*names): run the test's `filer` (and `backend`) once per named backend "
        "(native, rbd); unmarked tests run on native only",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        m = metafunc.definition.get_closest_marker("backends")
        names = m.args if m and m.args else ("native",)
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request):
    """The backend name a `filer` fixture builds its pool on (parametrized by
    the `backends` marker); for rbd, a real Ceph cluster started once per
    session and wiped after the test."""
    name = getattr(request, "param", "native")
    if name == "rbd":
        request.getfixturevalue("ceph_pool")
    return name


@pytest.fixture(scope="session")
def ceph_conf():
    """ceph.conf of a single-node cluster started once per pytest session
    (COPPICE_CEPH_CONF reuses a running one); stopped by its pids. Ceph that
    cannot start FAILS the tests that need it, with the reason."""
    if os.environ.get("COPPICE_CEPH_CONF"):
        yield os.environ["COPPICE_CEPH_CONF"]
        return
    from tests.rbd import ceph_cluster

    try:
        conf = ceph_cluster.start()
    except ceph_cluster.CephStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield conf
    finally:
        ceph_cluster.stop(conf)


@pytest.fixture
def ceph_pool(ceph_conf):
    """The Ceph pool ``rbd``, emptied (namespaces, images, claim) after the test."""
    from tests.rbd import ceph_cluster

    ceph_cluster.wipe(ceph_conf, "rbd")  # whatever an earlier, failed test left
    yield "rbd"
    ceph_cluster.wipe(ceph_conf, "rbd")


@pytest.fixture
def pool_dir():
    # Pools live on a real file system (not tmpfs) so fdatasync means something.
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    d = tempfile.mkdtemp(prefix="coppice-test-", dir=base)
    yield os.path.join(d, "pool")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pool(pool_dir):
    from coppice.engine import Pool

    p = Pool.create(pool_dir)
    yield p
    p.close()
