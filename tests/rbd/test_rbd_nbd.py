"""Real clients on rbd-backed LUNs through `coppice serve`'s NBD target:
qemu-img writes and compares (against the RBD image read directly by
QEMU's rbd driver), block status from RBD's allocation map, trim and
write-zeroes, fio with crc32c verification through a clone LUN (parent and
snapshot unchanged), and kill -9 of the daemon during writes + flushes
losing no flushed block."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess

import pytest

from tests import kill9
from tests.rbd.conftest import cli

TOOLS = ("qemu-img", "qemu-io", "nbdinfo", "fio")


@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"required tools missing: {', '.join(missing)} (scripts/install.sh installs them)")


def run(*cmd, timeout=120):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def setup_pool(pool, luns=(("v", "l", "32m"),)):
    from coppice.filer import Filer

    f = Filer.open(pool)
    try:
        f.igroup_create("local", ["127.0.0.0/8"])
        for vol, lun, size in luns:
            if not f.vol_exists(vol):
                f.vol_create(vol, "1g")
            f.lun_create(f"/vol/{vol}/{lun}", size)
            f.lun_map(f"/vol/{vol}/{lun}", "local")
    finally:
        f.close()


def uri(s, path):
    return f"nbd://127.0.0.1:{s.nbd_port}/{path}"


def rbd_spec(conf, vol, lun, snap=None):
    """qemu's spec of the LUN's image (coppice.VOLUME.LUN in the pool's default namespace)."""
    return f"rbd:rbd/coppice.{vol}.{lun}{'@' + snap if snap else ''}:conf={conf}"


def test_qemu_img_compare_block_status_trim_zero(rbd_pool, rbd_served, ceph_conf, tmp_path):
    setup_pool(rbd_pool)
    s = rbd_served()
    src = tmp_path / "src.img"
    with open(src, "wb") as fh:
        fh.truncate(32 << 20)
        fh.write(random.Random(7).randbytes(4 << 20))
        fh.seek(20 << 20)
        fh.write(b"tail" * 1024)
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), uri(s, "/vol/v/l"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), uri(s, "/vol/v/l"))
    # the NBD view and the RBD image itself (QEMU's rbd driver) agree
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", uri(s, "/vol/v/l"), rbd_spec(ceph_conf, "v", "l"))
    # block status: holes where RBD has no data
    m = run("nbdinfo", "--map", uri(s, "/vol/v/l"))
    holes = [ln.split() for ln in m.splitlines() if "hole" in ln]
    assert any(int(a) >= 4 << 20 and int(b) >= 8 << 20 for a, b, *_ in holes), m
    # trim and write-zeroes reach RBD
    # (a whole 4 MiB RBD object discarded becomes a hole; RBD maps objects)
    run("qemu-io", "-f", "raw", "-c", "discard 0 4M", "-c", "write -z 20M 4k", uri(s, "/vol/v/l"))
    expect = bytearray(src.read_bytes())
    expect[0 : 4 << 20] = bytes(4 << 20)
    expect[20 << 20 : (20 << 20) + 4096] = bytes(4096)
    src.write_bytes(expect)
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), rbd_spec(ceph_conf, "v", "l"))
    m = run("nbdinfo", "--map", uri(s, "/vol/v/l"))
    assert any(ln.split()[0] == "0" and "hole" in ln for ln in m.splitlines()), m


def test_fio_crc32c_through_a_clone_lun_parent_and_snapshot_unchanged(rbd_pool, rbd_served, ceph_conf):
    setup_pool(rbd_pool, luns=(("m", "l", "32m"),))
    s = rbd_served()
    run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 8M", uri(s, "/vol/m/l"))
    cli(rbd_pool, "snap", "create", "m", "base")
    cli(rbd_pool, "vol", "clone", "create", "c", "-b", "m", "base", "--remap")
    parent = run("qemu-img", "info", "--output=json", rbd_spec(ceph_conf, "c", "l"))
    assert '"virtual-size": 33554432' in parent
    before = {
        p: hashlib.sha256(open_rbd(ceph_conf, *p)).hexdigest() for p in (("m", "l", None), ("m", "l", "base"))
    }
    run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri={uri(s, '/vol/c/l')}",
        "--rw=randwrite",
        "--bs=64k",
        "--iodepth=16",
        "--offset=16M",
        "--size=8M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--output-format=terse",
        timeout=180,
    )
    after = {p: hashlib.sha256(open_rbd(ceph_conf, *p)).hexdigest() for p in before}
    assert after == before  # the parent LUN and its snapshot never saw the clone's writes
    # the clone still reads the parent's data where fio did not write
    out = run("qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 8M", uri(s, "/vol/c/l"))
    assert "read 8388608/8388608" in out


def open_rbd(conf, vol, lun, snap):
    import rados
    import rbd

    c = rados.Rados(conffile=conf)
    c.connect()
    try:
        io = c.open_ioctx("rbd")
        with rbd.Image(io, f"coppice.{vol}.{lun}", snapshot=snap, read_only=True) as img:
            return img.read(0, img.size())
    finally:
        c.shutdown()


def test_qd64_reads_and_writes_on_one_connection_complete_out_of_order(rbd_pool, rbd_served):
    # One libnbd connection keeps up to 260 requests in flight; READs run
    # concurrently in librbd and are answered as they complete, so 4 KiB
    # reads sent behind a 4 MiB one overtake it. Every reply carries its
    # own request's data (libnbd matches it by handle).
    import nbd

    setup_pool(rbd_pool, luns=(("v", "l", "32m"),))
    s = rbd_served()
    h = nbd.NBD()
    h.connect_uri(uri(s, "/vol/v/l"))
    rnd = random.Random(15)
    big = rnd.randbytes(16 << 20)
    h.pwrite(big, 16 << 20)
    small = {i: rnd.randbytes(4096) for i in range(256)}
    for i, b in small.items():
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), i * 4096)
        while h.aio_in_flight() >= 64:
            h.poll(-1)
    while h.aio_in_flight():
        h.poll(-1)
    h.flush()
    # each round: four 4 MiB reads, each followed by 64 reads of 4 KiB;
    # replies are numbered in request order and recorded in arrival order
    reordered = False
    for _round in range(20):
        order = []
        bigbufs, bufs = {}, {}
        seq = 0
        for k in range(4):
            bigbufs[k] = nbd.Buffer(4 << 20)
            h.aio_pread(
                bigbufs[k],
                (16 + 4 * k) << 20,
                completion=lambda e, n=seq, o=order: o.append((n, e.value)) or 1,
            )
            seq += 1
            for i in range(k * 64, k * 64 + 64):
                bufs[i] = nbd.Buffer(4096)
                h.aio_pread(
                    bufs[i], i * 4096, completion=lambda e, n=seq, o=order: o.append((n, e.value)) or 1
                )
                seq += 1
        while h.aio_in_flight():
            h.poll(-1)
        assert all(e == 0 for _, e in order), order
        assert sorted(n for n, _ in order) == list(range(seq))
        for k, b in bigbufs.items():
            assert b.to_bytearray() == big[k * (4 << 20) : (k + 1) * (4 << 20)], f"big read {k}"
        for i, b in small.items():
            assert bufs[i].to_bytearray() == b, f"block {i}"
        if [n for n, _ in order] != list(range(seq)):
            reordered = True
            print(f"replies overtook earlier requests in round {_round + 1}")
            break
    assert reordered, "every reply came back in request order: reads did not run concurrently"
    h.shutdown()


def test_fio_crc32c_at_qd32_on_one_connection(rbd_pool, rbd_served):
    setup_pool(rbd_pool, luns=(("v", "l", "32m"),))
    s = rbd_served()
    for rw in ("randwrite", "randrw"):
        run(
            "fio",
            f"--name=verify-{rw}",
            "--ioengine=nbd",
            f"--uri={uri(s, '/vol/v/l')}",
            f"--rw={rw}",
            "--bs=4k",
            "--iodepth=32",
            "--size=8M",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--output-format=terse",
            timeout=180,
        )


@pytest.mark.parametrize("writer", sorted(kill9.NBD_WRITERS))
def test_kill9_during_writes_and_flushes_loses_no_flushed_block(rbd_pool, rbd_served, tmp_path, writer):
    setup_pool(rbd_pool, luns=(("v", "l", "8m"),))
    # a restart on the same host takes the pool over (the dead holder's RADOS lock is broken)
    kill9.served_kill9(rbd_pool, rbd_served(), "/vol/v/l", writer, tmp_path)
