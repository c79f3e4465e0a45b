import json

import pytest
from typer.testing import CliRunner

from coppice.cli.main import app


class Cli:
    def __init__(self, pool_dir):
        self.pool = pool_dir
        self.runner = CliRunner()

    def __call__(self, *args, code=0):
        r = self.runner.invoke(app, ["--pool", self.pool, *map(str, args)])
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        assert r.exit_code == code, f"coppice {' '.join(map(str, args))} -> {r.exit_code}\n{r.output}"
        return r

    def json(self, *args):
        return json.loads(self(*args, "--json").stdout)

    def dump(self):
        """Everything observable: the pool's namespace and every --json view."""
        from coppice.engine import Pool

        p = Pool.open(self.pool)
        try:
            d = p.dump()
        finally:
            p.close()
        vols = self.json("vol", "show")
        for v in vols:
            v.pop("available")  # the host file system's free space moves on its own
        return {
            "pool": d,
            "vol": vols,
            "lun": self.json("lun", "show", "--snapshots"),
            "igroup": self.json("igroup", "show"),
            "snap": {v["name"]: self.json("snap", "list", v["name"]) for v in vols},
        }


@pytest.fixture
def cli(pool_dir):
    c = Cli(pool_dir)
    c("pool", "create")
    return c
