"""WRITEs that arrive together go to the device in one call.

When a client has many plain WRITEs in flight (fio, qemu at a queue depth),
the server reads them in one recv and hands the run of them to a device
with ``pwrite_many`` at once (the engine then makes one allocation, one
data write and one intent-log append for all). What must not change: each
request is checked and answered on its own (a bad one in the middle gets
its own error), requests are served in order (a READ or FLUSH after
writes sees them; a later write to the same block wins), and a batch the
device refuses is retried one write at a time, so only the failing write
fails."""

from __future__ import annotations

import os
import random

import pytest

from coppice.nbd import protocol as P
from tests.nbd.conftest import MiB
from tests.nbd.file_device import BatchingDevice
from tests.nbd.rawclient import open_export

BS = 4096


@pytest.fixture
def batching(serve, workdir):
    path = os.path.join(workdir, "batch.img")
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    s = serve(exports={"batch": (lambda: BatchingDevice(path), "takes writes in batches")})
    c = open_export(s.port, "batch")
    yield s, c, path
    c.close()


def device(s) -> BatchingDevice:
    (dev,) = [d for d in s.resolver.opened if isinstance(d, BatchingDevice)]
    return dev


def request(cmd, handle, offset=0, length=0, data=b"", flags=0) -> bytes:
    return P.REQUEST.pack(P.REQUEST_MAGIC, flags, cmd, handle, offset, length) + data


def replies(c, n, reads=None) -> dict[int, tuple[int, bytes]]:
    """n simple replies, by handle; ``reads``: {handle: length} of READs."""
    reads = reads or {}
    out = {}
    for _ in range(n):
        err, handle, _ = c.simple_reply(0)
        data = c.recv_exact(reads[handle]) if handle in reads and not err else b""
        out[handle] = (err, data)
    return out


def test_writes_sent_together_are_one_device_call_and_each_is_answered(batching):
    s, c, path = batching
    rnd = random.Random(7)
    blocks = rnd.sample(range(1024), 40)
    payloads = {b: rnd.randbytes(BS) for b in blocks}
    msg = b""
    for i, b in enumerate(blocks, start=1):
        msg += request(P.CMD_WRITE, i, b * BS, BS, payloads[b])
    # a write past the end, in the middle of the others, and a zero-length one
    msg += request(P.CMD_WRITE, 100, 4 * MiB, BS, bytes(BS)) + request(P.CMD_WRITE, 101, 0, 0)
    for i, b in enumerate(blocks[:5], start=200):
        msg += request(P.CMD_WRITE, i, b * BS, BS, payloads[b][::-1])  # later writes to the same blocks
    msg += request(P.CMD_FLUSH, 300)
    c.sock.sendall(msg)
    got = replies(c, 40 + 2 + 5 + 1)
    assert got.pop(100) == (P.ENOSPC, b"") and got.pop(101) == (P.EINVAL, b"")
    assert all(err == 0 for err, _ in got.values()) and len(got) == 46
    dev = device(s)
    assert max(dev.batches) > 1, dev.batches  # they did arrive together and went as batches
    assert dev.flushes == 1
    with open(path, "rb") as f:
        disk = f.read()
    for b in blocks:
        want = payloads[b][::-1] if b in blocks[:5] else payloads[b]
        assert disk[b * BS : (b + 1) * BS] == want, b


def test_a_read_between_writes_sees_the_writes_before_it_only(batching):
    s, c, _ = batching
    a, b = os.urandom(BS), os.urandom(BS)
    msg = request(P.CMD_WRITE, 1, 8 * BS, BS, a) + request(P.CMD_WRITE, 2, 9 * BS, BS, a)
    msg += request(P.CMD_READ, 3, 8 * BS, 2 * BS)
    msg += request(P.CMD_WRITE, 4, 8 * BS, BS, b) + request(P.CMD_WRITE, 5, 9 * BS, BS, b)
    msg += request(P.CMD_READ, 6, 8 * BS, 2 * BS)
    c.sock.sendall(msg)
    got = replies(c, 6, reads={3: 2 * BS, 6: 2 * BS})
    assert got[3] == (0, a + a) and got[6] == (0, b + b)
    assert all(got[h][0] == 0 for h in (1, 2, 4, 5))


def test_a_refused_batch_is_retried_one_write_at_a_time(batching):
    s, c, path = batching
    dev = device(s)
    dev.bad_offsets.add(5 * BS)
    data = {i: bytes([i]) * BS for i in range(1, 11)}
    c.sock.sendall(b"".join(request(P.CMD_WRITE, i, i * BS, BS, data[i]) for i in data))
    got = replies(c, 10)
    assert got.pop(5)[0] == P.EIO  # only the failing write fails
    assert all(err == 0 for err, _ in got.values()) and len(got) == 9
    assert max(dev.batches) > 1
    with open(path, "rb") as f:
        disk = f.read()
    for i in data:
        assert disk[i * BS : (i + 1) * BS] == (bytes(BS) if i == 5 else data[i]), i
    # the connection goes on
    assert c.read(1 * BS, BS) == data[1]
