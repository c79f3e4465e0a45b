"""A `coppice serve` start that fails half way undoes what it had done."""

from __future__ import annotations

import socket

import pytest

from coppice.daemon import Daemon, ListenFailed
from coppice.filer import Filer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_start_releases_the_pool_and_the_api_port(tmp_path):
    # The NBD port is taken, so start fails after the API listener, the
    # pool, the unix socket and the job runner are up: all of them go again.
    pool_dir = str(tmp_path / "pool")
    Filer.create(pool_dir).close()
    api_port = _free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        d = Daemon(pool_dir, api=f"127.0.0.1:{api_port}", nbd=f"127.0.0.1:{busy.getsockname()[1]}")
        with pytest.raises(ListenFailed, match="--nbd"):
            d.start()
    Filer.open(pool_dir).close()  # the pool's lock was released
    with socket.socket() as s:
        s.bind(("127.0.0.1", api_port))  # the API listener was closed
    assert d.jobs._closing  # the job runner was shut down: it takes no more jobs
