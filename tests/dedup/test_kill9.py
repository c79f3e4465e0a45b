"""A scan killed with SIGKILL (in the collect phase and in the match phase)
loses nothing: after reopening, every volume and snapshot reads the same,
fsck is clean, `sis status` shows the job pending, and the scan resumes to
completion with the pool at one copy."""

import os
import signal
import subprocess
import sys
import time

import pytest

from coppice import dedup
from coppice.engine import Pool

from .helpers import BS, assert_clean, digest_all, make_copies, rand_bytes, used_blocks

HERE = os.path.dirname(__file__)
COPY = 4 << 20


def run_until(pool_dir, report, phase, min_done):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(HERE)))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.dedup.scan_child", pool_dir, report, "0.01"],
        env=env,
        cwd=os.path.dirname(os.path.dirname(HERE)),
    )
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            if child.poll() is not None:
                raise AssertionError(f"child exited early with {child.returncode}")
            if os.path.exists(report):
                lines = open(report).read().split("\n")[:-1]
                hits = [ln for ln in lines if ln.split()[0] == phase and int(ln.split()[1]) >= min_done]
                if hits:
                    break
            time.sleep(0.005)
        else:
            raise AssertionError(f"child never reached {phase} {min_done}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.parametrize("phase,min_done", [("collect", 1500), ("match", 1000)])
def test_kill9_mid_scan_loses_nothing_and_resumes(pool_dir, phase, min_done):
    p = Pool.create(pool_dir)
    data = rand_bytes(COPY, 21)
    make_copies(p, 3, data)
    p.create_snapshot("v1", "snap")
    p.open_object("v1", "lun").pwrite(0, rand_bytes(64 * BS, 22))
    before = digest_all(p)
    p.close()

    report = pool_dir + ".progress"
    run_until(pool_dir, report, phase, min_done)

    assert "finished" not in open(report).read()
    p = Pool.open(pool_dir)
    try:
        assert digest_all(p) == before
        assert_clean(p)
        st = dedup.status(p, "v0")
        assert st["status"] == "Pending" and st["phase"] == phase
        job = dedup.Scanner(p).resume()
        assert job["state"] == "done"
        assert job["id"] == st["job"]["id"]  # resumed, not restarted
        assert digest_all(p) == before
        assert_clean(p)
        # one copy + the 64 rewritten blocks of v1
        assert used_blocks(p) == COPY // BS + 64
        assert dedup.status(p, "v0")["status"] == "Idle"
    finally:
        p.close()
