"""kill -9 of `coppice serve` (the embedded engine) while a real NBD client
writes and flushes, one request at a time and 32 in flight (which the
server hands to the engine as batches): no flushed block is lost, and fsck
is clean after the restart. The same harness runs on RBD in
tests/rbd/test_rbd_nbd.py."""

from __future__ import annotations

import os

import pytest

from tests import kill9
from tests.api.conftest import Served


@pytest.mark.parametrize("writer", sorted(kill9.NBD_WRITERS))
def test_kill9_of_the_daemon_loses_no_flushed_block(tmp_path, writer):
    from coppice.filer import Filer

    pool = os.path.join(tmp_path, "pool")
    f = Filer.create(pool)
    try:
        f.igroup_create("local", ["127.0.0.0/8"])
        f.vol_create("v", "1g")
        f.lun_create("/vol/v/l", "8m")
        f.lun_map("/vol/v/l", "local")
    finally:
        f.close()
    served = Served(pool)
    try:
        kill9.served_kill9(pool, served, "/vol/v/l", writer, tmp_path)
    finally:
        if served.proc.poll() is None:
            served.stop()
