"""`coppice sis` prints the same with a live daemon as without one (a scan
through the daemon is a job followed with the same progress bar)."""

from __future__ import annotations

import json
import os
import re
import shutil

from tests.api.conftest import Served

SCRIPT = [
    ["status"],
    ["on", "/vol/a"],
    ["on", "b"],
    ["on", "/vol/nope"],
    ["on", "a/b/c"],
    ["config", "-i", "on", "-s", "sun-sat@0", "/vol/a"],
    ["config"],
    ["config", "--json", "/vol/a"],
    ["config", "--json"],
    ["config", "-s", "someday", "/vol/a"],
    ["config", "-i", "on", "/vol/nope"],
    ["config", "-i", "maybe", "/vol/a"],
    ["config", "-i", "on"],
    ["config", "/vol/nope"],
    ["start", "/vol/nope"],
    ["start", "/vol/c"],
    ["start", "-s"],
    ["start", "--json"],
    ["status"],
    ["status", "-l"],
    ["status", "--json", "/vol/b"],
    ["status", "/vol/nope"],
    ["off", "/vol/b"],
    ["config"],
]


def _setup(pool: str) -> None:
    # three volumes, a and b holding the same 1 MiB (256 blocks), c without sis
    from coppice.engine import Pool

    data = os.urandom(1 << 20)
    p = Pool.open(pool)
    try:
        for v in ("a", "b", "c"):
            p.create_volume(v)
            p.create_object(v, "lun", 1 << 20)
            p.open_object(v, "lun").pwrite(0, data)
        p.flush()
    finally:
        p.close()


def _norm(text: str, pool: str) -> str:
    # what differs between two runs of the same script: paths, wall-clock times, durations
    text = text.replace(pool, "POOL")
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?", "T", text)
    text = re.sub(r"\b\d+:\d\d:\d\d\b", "H:MM:SS", text)
    text = re.sub(
        r'("(id|job|cursor)": )("[0-9a-f]+"|\d+)', r"\1X", text
    )  # a scan's random id and hash cursor
    text = re.sub(
        r'("(started|finished|updated|created|seconds|elapsed|[a-z_]*_s|[a-z_]*seconds)": )[0-9.e+-]+',
        r"\1N",
        text,
    )
    return text


def _run_all(pool, cmds):
    from typer.testing import CliRunner

    from coppice.cli.main import app

    runner = CliRunner()
    out = []
    for c in cmds:
        r = runner.invoke(app, ["--pool", pool, "sis", *c], env={"COPPICE_URL": None, "COLUMNS": "200"})
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        out.append((c, r.exit_code, r.stdout, r.stderr))
    return out


def test_sis_same_output_with_and_without_daemon(pool_path, tmp_path):
    _setup(pool_path)
    direct_pool = str(tmp_path / "direct")
    shutil.copytree(pool_path, direct_pool)

    served = Served(pool_path)
    try:
        live = _run_all(pool_path, SCRIPT)
        assert served.proc.poll() is None  # the daemon owned the pool all along
        # the scan really ran as a daemon job
        jobs = served.http.get("/jobs", params={"kind": "dedup_scan"}).json()
        assert [j["state"] for j in jobs] == ["done", "done"]
        live_reads = _run_all(pool_path, [["status", "-l"], ["config", "--json"]])
    finally:
        assert served.stop() == 0
    direct = _run_all(direct_pool, SCRIPT)
    stopped_reads = _run_all(pool_path, [["status", "-l"], ["config", "--json"]])

    for (cmd, rc_a, out_a, err_a), (_, rc_b, out_b, err_b) in zip(live, direct, strict=False):
        assert (rc_a, _norm(out_a, pool_path), _norm(err_a, pool_path)) == (
            rc_b,
            _norm(out_b, direct_pool),
            _norm(err_b, direct_pool),
        ), cmd
    for (cmd, rc_a, out_a, err_a), (_, rc_b, out_b, err_b) in zip(live_reads, stopped_reads, strict=False):
        assert (rc_a, out_a, err_a) == (rc_b, out_b, err_b), cmd
    by_cmd = {tuple(c): (rc, out, err) for c, rc, out, err in live}
    # the scan shared b's copy of a, and the bar was drawn on stderr
    rc, out, err = by_cmd[("start", "-s")]
    assert rc == 0 and "256 shared" in out and "verifying and sharing" in err, (out, err)
    assert json.loads(by_cmd[("status", "--json", "/vol/b")][1])["last_run"]["shared"] == 0
    # refused commands are refused the same way (checked above), with their exit codes
    assert by_cmd[("on", "/vol/nope")][0] == 2 and by_cmd[("start", "/vol/c")][0] == 4
