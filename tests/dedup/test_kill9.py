"""A scan killed with SIGKILL (in the collect phase and in the match phase)
loses nothing: after reopening, every volume and snapshot reads the same,
fsck is clean, `sis status` shows the job pending, and the scan resumes to
completion with the pool at one copy."""

import os
import signal
import subprocess
import sys

import pytest

from coppice import dedup
from coppice.engine import Pool

from .helpers import BS, assert_clean, digest_all, make_copies, rand_bytes, used_blocks

HERE = os.path.dirname(__file__)
COPY = 4 << 20


def run_until(pool_dir, phase, min_done) -> list[str]:
    """Run the child scan in lockstep and SIGKILL it right after the batch
    that takes ``phase`` to ``min_done`` blocks; the child's progress lines."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(HERE)))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.dedup.scan_child", pool_dir],
        env=env,
        cwd=os.path.dirname(os.path.dirname(HERE)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            what, done, _ = line.split()
            if what == phase and int(done) >= min_done:
                break  # the child waits for our go: it is killed here
            child.stdin.write("go\n")
            child.stdin.flush()
        else:
            raise AssertionError(f"child never reached {phase} {min_done}; exit {child.wait()}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return lines


@pytest.mark.parametrize("phase,min_done", [("collect", 1500), ("match", 1000)])
def test_kill9_mid_scan_loses_nothing_and_resumes(pool_dir, phase, min_done):
    p = Pool.create(pool_dir)
    data = rand_bytes(COPY, 21)
    make_copies(p, 3, data)
    p.create_snapshot("v1", "snap")
    p.open_object("v1", "lun").pwrite(0, rand_bytes(64 * BS, 22))
    before = digest_all(p)
    p.close()

    lines = run_until(pool_dir, phase, min_done)

    assert not any(ln.startswith("finished") for ln in lines)
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
