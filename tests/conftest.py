import os
import shutil
import tempfile

import pytest


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
