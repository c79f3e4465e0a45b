"""fio --ioengine=nbd with crc32c verification, on the product's LUNs (active
and clone)."""

import pytest

from tests.nbd.conftest import run

# The client suites run on both backends: every LUN here is served once from the
# embedded engine and once from Ceph RBD.
pytestmark = pytest.mark.backends("native", "rbd")


@pytest.mark.parametrize("rw,bs,depth", [("randwrite", "4k", 32), ("write", "256k", 8)])
def test_fio_verify_crc32c(target, rw, bs, depth):
    # Every block fio writes (pipelined, QD up to 32) reads back with a valid checksum.
    s = target()
    p = run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri={s.uri()}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={depth}",
        "--size=8M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--output-format=terse",
        timeout=120,
    )
    assert "verify" not in p.stderr.lower() or "bad" not in p.stderr.lower(), p.stderr
