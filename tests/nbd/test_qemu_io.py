"""qemu-io reads, writes, discards and zeroes with pattern verification, on
the product's LUNs (active, clone, snapshot); FUA on the protocol test device."""

import pytest

from tests.nbd.conftest import MiB, run

# The client suites run on both backends: every LUN here is served once from the
# embedded engine and once from Ceph RBD.
pytestmark = pytest.mark.backends("native", "rbd")


def qio(uri, *cmds):
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    p = run(*args, uri)
    assert "error" not in p.stdout.lower() and "fail" not in p.stdout.lower(), p.stdout
    return p.stdout


def test_write_then_read_pattern(target):
    # Data written at unaligned offsets reads back with the same pattern.
    s = target()
    qio(s.uri(), "write -P 0xab 0 1M", "write -P 0xcd 1000 777", "aio_flush")
    qio(s.uri(), "read -P 0xab 0 1000", "read -P 0xcd 1000 777", "read -P 0xab 1777 10000")


def test_discard_and_write_zeroes_read_as_zero(target):
    # After discard and write-zeroes (both with and without unmap) the range reads as 0.
    s = target()
    qio(s.uri(), "write -P 0x11 0 4M", "discard 0 1M", "write -z 1M 1M", "write -z -u 2M 1M")
    qio(s.uri(), "read -P 0 0 3M", "read -P 0x11 3M 1M")


def test_fua_write(serve):
    # Protocol: a write with FUA is passed down and on the file when the reply arrives.
    s = serve()
    qio(s.uri(), "write -f -P 0x77 4096 4096")
    with open(s.path(), "rb") as f:
        f.seek(4096)
        assert f.read(4096) == b"\x77" * 4096


def test_read_only_export_refuses_writes(target):
    # A snapshot LUN: qemu-io sees it read-only; a forced write fails with EPERM.
    s = target()
    p = run("qemu-io", "-f", "raw", "-r", "-c", "read -P 0 0 64k", s.uri("ro"))
    assert "read 65536/65536" in p.stdout
    p = run("qemu-io", "-f", "raw", "-c", "write 0 4k", s.uri("ro"), check=False)
    assert (
        p.returncode != 0
        or "Operation not permitted" in p.stdout + p.stderr
        or "read-only" in (p.stdout + p.stderr).lower()
    )


def test_unix_socket(target):
    # The Unix socket serves the same exports.
    s = target()
    qio(s.unix_uri(), "write -P 0x42 0 64k")
    qio(s.uri(), "read -P 0x42 0 64k")
