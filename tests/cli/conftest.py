"""The CLI as a user runs it, twice: with the pool opened by the command
itself, and through a live `coppice serve` on the same pool (the command
finds its socket). Every test taking ``cli`` runs in both modes and must
print the same; ``Cli.dump`` is everything observable, to prove a refused
command changed nothing."""

import json

import pytest
from typer.testing import CliRunner

from coppice.cli.main import app

MODES = ["direct", "daemon"]


class Cli:
    def __init__(self, pool_dir, served=None):
        self.pool = pool_dir
        self.served = served
        self.runner = CliRunner()

    def __call__(self, *args, code=0):
        r = self.runner.invoke(app, ["--pool", self.pool, *map(str, args)])
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        assert r.exit_code == code, f"coppice {' '.join(map(str, args))} -> {r.exit_code}\n{r.output}"
        return r

    def json(self, *args):
        return json.loads(self(*args, "--json").stdout)

    def serve(self):
        """Start a daemon on this pool; from now on commands go through it."""
        from tests.api.conftest import Served

        self.served = Served(self.pool)
        return self

    def stop(self):
        if self.served is not None and self.served.proc.poll() is None:
            self.served.stop()
        self.served = None

    def pool_dump(self):
        if self.served is not None:  # the daemon holds the pool's lock: ask it
            r = self.served.unix.get("/pool/dump")
            assert r.status_code == 200, r.text
            return r.json()
        from coppice.engine import Pool

        p = Pool.open(self.pool)
        try:
            return p.dump()
        finally:
            p.close()

    def dump(self):
        """Everything observable: the pool's namespace and every --json view."""
        vols = self.json("vol", "show")
        for v in vols:
            v.pop("available")  # the host file system's free space moves on its own
        return {
            "pool": self.pool_dump(),
            "vol": vols,
            "lun": self.json("lun", "show", "--snapshots"),
            "igroup": self.json("igroup", "show"),
            "snap": {v["name"]: self.json("snap", "list", v["name"]) for v in vols},
        }


@pytest.fixture(params=MODES)
def cli(request, pool_dir, monkeypatch):
    monkeypatch.delenv("COPPICE_URL", raising=False)
    c = Cli(pool_dir)
    c("pool", "create")
    if request.param == "daemon":
        c.serve()
    yield c
    c.stop()
