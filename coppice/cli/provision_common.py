"""What the provisioner's command groups share: a local Filer on the pool.

Contract: ``local_filer()`` opens the pool in this process (the provisioner
needs the pool itself: its clones, seeds and kv index). A pool held by a
running `coppice serve` is reported with PoolInUse; stop the daemon, or
provision through it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from .common import pool_path


@contextmanager
def local_filer():
    from ..filer import Filer
    f = Filer.open(pool_path(), holder=f"coppice CLI (pid {os.getpid()})")
    try:
        yield f
    finally:
        f.close()
