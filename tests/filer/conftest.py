import datetime as dt

import pytest

from coppice.filer import Filer


class Clock:
    def __init__(self):
        self.now = dt.datetime(2024, 3, 4, 7, 30)  # a Monday

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def filer(pool_dir, clock, backend, request):
    """A Filer on a new pool; on the rbd backend when the test is marked
    ``@pytest.mark.backends("native", "rbd")`` (once per backend)."""
    if backend == "rbd":
        conf = request.getfixturevalue("ceph_conf")
        f = Filer.create(pool_dir, clock=clock, backend="rbd", ceph_conf=conf, ceph_pool="rbd")
    else:
        f = Filer.create(pool_dir, clock=clock)
    yield f
    f.close()


@pytest.fixture
def runbook(filer):
    """The FlexClone runbook's starting point: a volume with a mapped LUN
    holding data, and a snapshot of it."""
    f = filer
    f.vol_create("fvol_master", "1g")
    f.lun_create("/vol/fvol_master/lun0", "64m")
    f.igroup_create("esx1", ["iqn.2026-01.org.example:host1"])
    f.lun_map("/vol/fvol_master/lun0", "esx1")
    dev = f.open_lun("/vol/fvol_master/lun0")
    dev.pwrite(0, b"golden" * 1000)
    dev.close()
    f.snap_create("fvol_master", "clone_base_snapshot")
    return f


@pytest.fixture
def unchanged(filer):
    """Assert a refused call changes nothing: ``with unchanged(): ...``."""
    from contextlib import contextmanager

    @contextmanager
    def check(exc=Exception, match=None):
        before = filer.dump()
        with pytest.raises(exc, match=match) as ei:
            yield ei
        assert filer.dump() == before

    return check
