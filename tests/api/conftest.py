"""Fixtures: a real `coppice serve` subprocess on a temp pool with free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def coppice_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "coppice.cli.main", *args]


def run_cli(pool: str, *args, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", COPPICE_POOL=pool)
    env.pop("COPPICE_URL", None)
    env.update(env_extra or {})
    return subprocess.run(coppice_cmd(*args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


class Served:
    """A running daemon: its process, addresses and an authenticated client."""

    def __init__(self, pool: str, extra_args=()):
        self.pool = pool
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("COPPICE_URL", None)
        self.proc = subprocess.Popen(
            coppice_cmd("--pool", pool, "serve", "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0", *extra_args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.proc.kill()
            raise RuntimeError(f"daemon did not start: {line!r} {self.proc.stderr.read()}")
        m = re.search(r"api=(\S+) nbd=(\S+):(\d+) socket=(\S+) pid=(\d+)", line)
        self.url, self.nbd_host, self.nbd_port, self.socket, self.pid = (
            m.group(1),
            m.group(2),
            int(m.group(3)),
            m.group(4),
            int(m.group(5)),
        )
        with open(os.path.join(pool, "api.token")) as f:
            self.token = f.read().strip()
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        self.unix = httpx.Client(
            base_url="http://coppice", transport=httpx.HTTPTransport(uds=self.socket), timeout=30
        )

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        self.http.close()
        self.unix.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


@pytest.fixture
def pool_path(backend, request):
    """A new pool's directory; on rbd too for tests marked backends("native", "rbd")."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    d = tempfile.mkdtemp(prefix="coppice-api-", dir=base)
    p = os.path.join(d, "pool")
    from coppice.filer import Filer

    if backend == "rbd":
        conf = request.getfixturevalue("ceph_conf")
        Filer.create(p, backend="rbd", ceph_conf=conf, ceph_pool="rbd").close()
    else:
        Filer.create(p).close()
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(pool_path):
    s = Served(pool_path)
    yield s
    if s.proc.poll() is None:
        s.stop()
