"""The README works as written: its two commands, and every command block
of "Using it" run in order on a fresh pool, each line exiting 0.

The only change made to the blocks is the pool's location
(`/srv/coppice/pool` becomes a temporary directory, so a test never writes
into the host's /srv) and, after a backgrounded `coppice serve &`, a wait
until its NBD port answers, as a reader waits before typing the next line.
The golden image `disk.qcow2` the second block imports is the tiny
template's disk the provisioning tests build; the VMs are started in the
real qemu:///system and destroyed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)
FENCE = re.compile(r"```sh\n(.*?)```", re.S)
NBD_PORT = 10809


def sh_blocks(path: str = README) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return FENCE.findall(f.read())


def test_the_two_commands_are_the_readmes_first_block():
    first = sh_blocks()[0]
    cmds = [ln.split("#")[0].strip() for ln in first.splitlines() if ln.strip()]
    assert cmds == ["./demo.sh", "./test.sh"]
    for c in cmds:
        assert os.access(os.path.join(ROOT, c), os.X_OK), f"{c} is not executable"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert "./test.sh" in f.read(), ".ci/run must call the README's test command"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def script_for(blocks: list[str], pool: str) -> str:
    """One bash script running ``blocks`` line by line (set -e: the first
    failing line ends it, and `set -x` names it)."""
    out = ["set -euo pipefail", f"export PATH={BIN}:$PATH", "set -x"]
    for block in blocks:
        for line in block.splitlines():
            cmd = line.split(" #")[0].rstrip()
            if not cmd.strip():
                continue
            out.append(cmd.replace("/srv/coppice/pool", pool))
            if re.match(r"\s*coppice serve\b.*&\s*$", cmd):
                out.append("echo $! > serve.pid")
                out.append(
                    f"for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/{NBD_PORT}) 2>/dev/null "
                    "&& break; sleep 0.1; done"
                )
    return "\n".join(out) + "\n"


@pytest.fixture
def readme_dir(tmp_path, tiny_template, system_libvirt):
    d = tmp_path / "work"
    d.mkdir()
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(tiny_template.disk_image), str(d / "disk.qcow2")],
        check=True,
    )
    return d


def test_using_it_runs_as_written(readme_dir, tmp_path):
    if not _port_free(NBD_PORT):
        pytest.fail(f"port {NBD_PORT} is in use: the README's `coppice serve` needs it; stop what holds it")
    blocks = sh_blocks()[1:]
    assert len(blocks) >= 2, "README lost its 'Using it' blocks"
    pool = str(tmp_path / "pool")
    script = script_for(blocks, pool)
    try:
        # Output to files, not pipes: the backgrounded daemon keeps its stdout
        # open, and a pipe would never reach end-of-file.
        with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
            r = subprocess.run(["bash", "-c", script], cwd=readme_dir, stdout=out, stderr=err, timeout=600)
        stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
        assert r.returncode == 0, f"a README line failed:\n{stderr[-3000:]}\n{stdout[-2000:]}"
        # qemu-img reached the clone's LUN through the daemon and saw its size.
        assert "virtual size: 10 GiB" in stdout, stdout
        # The VMs exist for a new process, in the real hypervisor, and are listed by Coppice.
        p = subprocess.run(
            [os.path.join(BIN, "coppice"), "--pool", pool, "vm", "list", "--json"],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        names = sorted(v["name"] for v in json.loads(p.stdout))
        assert names == [f"web{n:03}" for n in range(1, 11)]
        assert (readme_dir / "space.png").stat().st_size > 10_000
    finally:
        _cleanup(readme_dir, pool)


def _cleanup(d, pool: str) -> None:
    env = dict(os.environ, COPPICE_POOL=pool)
    coppice = os.path.join(BIN, "coppice")
    p = subprocess.run([coppice, "vm", "list", "--json"], env=env, capture_output=True, text=True)
    if p.returncode == 0:
        for v in json.loads(p.stdout):
            subprocess.run([coppice, "vm", "destroy", "-f", v["name"]], env=env, capture_output=True)
    pid_file = d / "serve.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    shutil.rmtree(pool, ignore_errors=True)
