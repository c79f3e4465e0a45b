"""Many requests in flight on one connection, answered out of order.

A device with ``start_read`` (here ``SlowReadsDevice``: each read completes
on its own thread after a delay the test picks) lets the server keep a
client's whole queue depth at the device and answer in completion order.
Real clients check that every reply matches its handle (libnbd, fio with
crc32c verification); raw sockets check the promises around it: revoke,
shutdown and DISC answer the reads in flight before closing, a protocol
violation closes only that connection, and a client that does not read its
replies stops being read from once the connection's bound is reached.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import nbd
import pytest

from coppice.nbd import protocol as P
from coppice.nbd import server as server_mod
from tests.nbd.conftest import MiB, run
from tests.nbd.file_device import SlowReadsDevice
from tests.nbd.rawclient import open_export

BS = 4096


def slow_export(s_path, delay):
    return {"slow": (lambda: SlowReadsDevice(s_path, delay=delay), "reads complete out of order")}


def serve_slow(serve, workdir, delay, **kw):
    path = os.path.join(workdir, "slow.img")
    with open(path, "wb") as f:
        f.truncate(16 * MiB)
    return serve(exports=slow_export(path, delay), **kw), path


def device(s):
    (dev,) = [d for d in s.resolver.opened if isinstance(d, SlowReadsDevice)]
    return dev


def err_value(err) -> int:
    """libnbd hands a completion callback its errno boxed."""
    return getattr(err, "value", err)


def poll_all(h):
    while h.aio_in_flight() > 0:
        h.poll(-1)


@pytest.mark.parametrize("structured", [True, False], ids=["structured", "simple"])
def test_reads_complete_out_of_order_and_each_reply_matches_its_handle(serve, workdir, structured):
    # Block i's read takes 0..20 ms, scrambled, so completions cannot come
    # back in request order; libnbd matches each reply to its request by
    # handle and would fail the command on a mismatch.
    s, path = serve_slow(serve, workdir, lambda off, n: ((off // BS) * 7 % 11) * 0.002)
    blocks = {i: os.urandom(BS) for i in range(64)}
    with open(path, "r+b") as f:
        for i, b in blocks.items():
            f.seek(i * BS)
            f.write(b)
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.connect_uri(s.uri("slow"))
    order = []
    bufs = {}

    def completed(i):
        def cb(err):
            order.append((i, err_value(err)))
            return 1

        return cb

    for i in blocks:
        bufs[i] = nbd.Buffer(BS)
        h.aio_pread(bufs[i], i * BS, completion=completed(i))
    # writes and a flush between the reads' completions go on concurrently
    new = {i: os.urandom(BS) for i in range(64, 96)}
    for i, b in new.items():
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), i * BS)
    assert h.aio_in_flight() > 32
    poll_all(h)
    h.flush()
    for i, b in blocks.items():
        assert bufs[i].to_bytearray() == b, f"block {i}: reply data is another request's"
    assert all(e == 0 for _, e in order), order
    order = [i for i, _ in order]
    assert sorted(order) == list(blocks)
    assert order != sorted(order), "replies came back in request order: nothing ran concurrently"
    for i, b in new.items():
        assert h.pread(BS, i * BS) == b
    assert device(s).started >= 64 + 32
    h.shutdown()


def test_fio_crc32c_verify_at_qd32_with_reads_completing_out_of_order(serve, workdir):
    # fio keeps 32 requests in flight on one connection and checks every
    # block it reads back against the crc32c it wrote.
    s, _ = serve_slow(serve, workdir, lambda off, n: (off // BS) % 5 * 0.001)
    run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri={s.uri('slow')}",
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=32",
        "--size=4M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--output-format=terse",
        timeout=120,
    )
    # every block was read back through start_read (fio connects more than once)
    assert sum(d.started for d in s.resolver.opened) >= 1024


@pytest.mark.parametrize("how", ["revoke", "shutdown"])
def test_revoke_and_shutdown_answer_the_reads_in_flight_first(serve, workdir, how):
    s, path = serve_slow(serve, workdir, lambda off, n: 0.3)
    data = os.urandom(32 * BS)
    with open(path, "r+b") as f:
        f.write(data)
    h = nbd.NBD()
    h.connect_uri(s.uri("slow"))
    bufs = [nbd.Buffer(BS) for _ in range(32)]
    errs = []
    for i, b in enumerate(bufs):
        h.aio_pread(b, i * BS, completion=lambda err: errs.append(err_value(err)) or 1)
    dev = None
    for _ in range(100):
        if s.resolver.opened and device(s).started == 32:
            dev = device(s)
            break
        time.sleep(0.01)
    assert dev is not None and dev.in_flight == 32
    cut = threading.Thread(
        target=(lambda: s.resolver.revoke("slow")) if how == "revoke" else (lambda: s.server.shutdown(10))
    )
    cut.start()
    poll_all(h)
    cut.join(20)
    assert errs == [0] * 32
    for i, b in enumerate(bufs):
        assert b.to_bytearray() == data[i * BS : (i + 1) * BS]
    # then, and only then, the device was closed and the connection with it
    for _ in range(100):
        if dev.closed:
            break
        time.sleep(0.01)
    assert dev.closed and dev.in_flight == 0
    with pytest.raises(nbd.Error):
        h.pread(BS, 0)


@pytest.mark.parametrize("end", ["disc", "bad magic"])
def test_disc_and_a_protocol_violation_answer_what_was_read_then_close_only_that_connection(
    serve, workdir, end
):
    s, path = serve_slow(serve, workdir, lambda off, n: 0.2 - off / BS * 0.02)
    data = os.urandom(8 * BS)
    with open(path, "r+b") as f:
        f.write(data)
    c = open_export(s.port, "slow")
    other = open_export(s.port, "disk")
    handles = [c.request(P.CMD_READ, i * BS, BS) for i in range(8)]
    if end == "disc":
        c.request(P.CMD_DISC)
    else:
        c.request(P.CMD_READ, 0, BS, magic=0x12345678)
    got = {}
    for _ in handles:
        err, handle, payload = c.simple_reply(BS)
        assert err == 0
        got[handle] = payload
    assert got == {h: data[i * BS : (i + 1) * BS] for i, h in enumerate(handles)}
    assert list(got) != handles  # the last-requested read finished first
    assert c.closed_by_server()
    assert other.read(0, BS) == bytes(BS)  # the other connection goes on
    other.close()


def test_a_protocol_violation_on_the_one_thread_path_answers_the_requests_before_it(serve):
    # A device without start_read: the reads before the bad request are
    # answered (in order) before the connection closes.
    s = serve()
    c = open_export(s.port, "disk")
    reqs = b"".join(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_READ, h, h * BS, BS) for h in (1, 2, 3))
    c.sock.sendall(reqs + P.REQUEST.pack(0x12345678, 0, P.CMD_READ, 4, 0, BS))
    assert [c.simple_reply(BS)[:2] for _ in range(3)] == [(0, 1), (0, 2), (0, 3)]
    assert c.closed_by_server()


def test_a_client_that_reads_no_replies_is_not_read_from_past_the_bound(serve, workdir, monkeypatch):
    # 64 reads of 1 MiB, no reply read: the server starts reads only while
    # their unsent replies stay under the connection's bound (4 MiB here),
    # plus what the kernel's socket buffers hold; then it stops reading.
    monkeypatch.setattr(server_mod, "_MAX_INFLIGHT_BYTES", 4 * MiB)
    s, path = serve_slow(serve, workdir, None)
    data = os.urandom(16 * MiB)
    with open(path, "r+b") as f:
        f.write(data)
    c = open_export(s.port, "slow")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sent = []

    def send_all():
        for i in range(64):
            sent.append(c.request(P.CMD_READ, (i % 16) * MiB, MiB))

    t = threading.Thread(target=send_all, daemon=True)
    t.start()
    time.sleep(1.0)
    dev = device(s)
    assert dev.started < 48, f"{dev.started} of 64 reads started with no reply read"
    got = {}
    for _ in range(64):
        err, handle, payload = c.simple_reply(MiB)
        assert err == 0
        got[handle] = payload
    t.join(10)
    assert sorted(got) == sent
    for i, h in enumerate(sent):
        assert got[h] == data[(i % 16) * MiB : (i % 16 + 1) * MiB]
    c.close()
