"""The CLI prints the same with a live daemon as without one."""

from __future__ import annotations

import re

from tests.api.conftest import Served

SCRIPT = [
    ["vol", "create", "v1", "1g"],
    ["lun", "create", "-s", "10m", "-t", "linux", "/vol/v1/lun0"],
    ["igroup", "create", "-i", "-t", "linux", "g1", "127.0.0.1"],
    ["lun", "map", "/vol/v1/lun0", "g1"],
    ["snap", "create", "v1", "base"],
    ["vol", "clone", "create", "c1", "-b", "v1", "base"],
    ["lun", "unmap", "/vol/c1/lun0", "g1"],
    ["lun", "map", "/vol/c1/lun0", "g1", "3"],
    ["lun", "online", "/vol/c1/lun0"],
    ["snap", "sched", "c1", "0"],
    ["vol", "clone", "split", "start", "c1"],
    # refused commands: same message and exit code
    ["vol", "create", "v1", "1g"],
    ["vol", "show", "nope"],
    ["lun", "map", "/vol/v1/lun0", "g1", "3"],
    ["vol", "create", "bad/name", "1g"],
    ["snap", "delete", "v1", "nothere"],
    ["lun", "create", "-s", "lots", "/vol/v1/lun1"],
]

READS = [
    ["vol", "show"],
    ["vol", "show", "--json"],
    ["lun", "show"],
    ["lun", "show", "-m"],
    ["lun", "show", "--json"],
    ["igroup", "show"],
    ["snap", "list", "v1"],
    ["snap", "list", "v1", "--json"],
    ["vol", "clone", "show"],
    ["df"],
    ["df", "-s"],
    ["pool", "info"],
    ["snap", "sched", "c1"],
    ["vol", "options", "v1"],
]


def _serials(pool: str) -> set[str]:
    # LUN serials are random (ONTAP-style, letters and maybe digits): read the real ones
    from coppice.filer import Filer

    f = Filer.open(pool)
    try:
        return {lun["serial"] for lun in f.lun_show(snapshots=True) if lun.get("serial")}
    finally:
        f.close()


def _norm(text: str, pool: str, serials: set[str] = frozenset()) -> str:
    # what differs between two pools made by the same commands: paths, serials, times, uuids
    text = text.replace(pool, "POOL")
    for s in serials:
        text = text.replace(s, "S")
    text = re.sub(r"(serial )[A-Za-z0-9]{12}\b", r"\1S", text)
    text = re.sub(r'("serial": ")[^"]+', r"\1S", text)
    text = re.sub(r'("created(_iso)?": )[^,\n]+', r"\1T", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?", "T", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(
        r"\b[A-Za-z0-9]{12}\b",
        lambda m: "S" if re.search(r"\d", m.group()) and re.search(r"[A-Za-z]", m.group()) else m.group(),
        text,
    )
    return text


def _host_free_masked(text: str) -> str:
    # The host file system's free space moves on its own (other processes write):
    # the pool's "N free" figure is not the CLI's to reproduce byte for byte.
    text = re.sub(r"[\d.]+[kmgtpe]? free\b", "N free", text)
    return re.sub(r'("free(_bytes)?": )\d+', r"\1N", text)


def _run_all(pool, cmds):
    # In-process (typer's CliRunner): the same Typer app as the `coppice` command, 100x faster.
    from typer.testing import CliRunner

    from coppice.cli.main import app

    runner = CliRunner()
    out = []
    for c in cmds:
        r = runner.invoke(app, ["--pool", pool, *c], env={"COPPICE_URL": None, "COLUMNS": "200"})
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        out.append((c, r.exit_code, r.stdout, r.stderr))
    return out


def test_same_output_with_and_without_daemon(pool_path, tmp_path):
    from coppice.filer import Filer

    direct_pool = str(tmp_path / "direct")
    Filer.create(direct_pool).close()

    served = Served(pool_path)
    try:
        live = _run_all(pool_path, SCRIPT)
        # the commands really went through the daemon: it still owns the pool
        assert served.proc.poll() is None
        live_reads = _run_all(pool_path, READS)
    finally:
        assert served.stop() == 0
    direct = _run_all(direct_pool, SCRIPT)
    stopped_reads = _run_all(pool_path, READS)

    sa, sb = _serials(pool_path), _serials(direct_pool)
    for (cmd, rc_a, out_a, err_a), (_, rc_b, out_b, err_b) in zip(live, direct, strict=False):
        assert (rc_a, _norm(out_a, pool_path, sa), _norm(err_a, pool_path, sa)) == (
            rc_b,
            _norm(out_b, direct_pool, sb),
            _norm(err_b, direct_pool, sb),
        ), cmd
    assert any(rc for _, rc, _, _ in live) and any(not rc for _, rc, _, _ in live)
    # the same pool read through the daemon and then directly: byte for byte the same,
    # but for the host's free space
    for (cmd, rc_a, out_a, err_a), (_, rc_b, out_b, err_b) in zip(live_reads, stopped_reads, strict=False):
        assert (rc_a, _host_free_masked(out_a), err_a) == (rc_b, _host_free_masked(out_b), err_b), cmd
        assert rc_a == 0, (cmd, err_a)
