"""`coppice sis` commands through Typer's runner, against a real pool."""

import json

from typer.testing import CliRunner

from coppice.cli.sis_cmd import app
from coppice.engine import Pool

from .helpers import rand_bytes

runner = CliRunner()


def setup(pool_dir):
    p = Pool.create(pool_dir)
    data = rand_bytes(1 << 20, 61)
    for v in ("a", "b"):
        p.create_volume(v)
        p.create_object(v, "lun", 1 << 20)
        p.open_object(v, "lun").pwrite(0, data)
    p.close()


def sis(pool_dir, *args):
    return runner.invoke(app, [*args, "--pool", pool_dir])


def test_sis_cli_round_trip(pool_dir):
    # on, config -i/-s, start -s, status --json: the scan shares b's copy.
    setup(pool_dir)
    assert sis(pool_dir, "on", "/vol/a").exit_code == 0
    assert sis(pool_dir, "on", "b").exit_code == 0
    r = sis(pool_dir, "config", "-i", "on", "-s", "sun-sat@0", "/vol/a")
    assert r.exit_code == 0, r.output
    cfg = json.loads(sis(pool_dir, "config", "--json", "/vol/a").output)
    assert cfg == {"path": "/vol/a", "enabled": True, "inline": True, "schedule": "sun-sat@0"}
    r = sis(pool_dir, "start", "-s", "--json")
    assert r.exit_code == 0, r.output
    job = json.loads(r.output)
    assert job["state"] == "done" and job["counters"]["shared"] == 256
    st = json.loads(sis(pool_dir, "status", "--json", "/vol/b").output)
    assert st["status"] == "Idle" and st["last_run"]["shared"] == 256
    r = sis(pool_dir, "status", "-l")
    assert r.exit_code == 0 and "Last blocks shared" in r.output
    p = Pool.open(pool_dir)
    try:
        assert p.pool_space()["used_blocks"] == 256
    finally:
        p.close()


def test_sis_cli_errors(pool_dir):
    # Errors print one line and exit with the error's code.
    setup(pool_dir)
    r = sis(pool_dir, "start", "/vol/nope")
    assert r.exit_code == 2 and "not found" in r.output
    r = sis(pool_dir, "start", "/vol/a")
    assert r.exit_code == 4 and "sis on /vol/a" in r.output
    r = sis(pool_dir, "config", "-s", "someday", "/vol/a")
    assert r.exit_code == 4 and "day_list[@hour_list]" in r.output
    r = sis(pool_dir, "config", "-i", "maybe", "/vol/a")
    assert r.exit_code == 4
