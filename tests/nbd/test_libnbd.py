"""libnbd's Python binding: pread/pwrite, structured replies, block status,
flush, FUA, trim, zero, and the spec's errors with client-side checks off."""

import errno
import os

import nbd
import pytest

from tests.nbd.conftest import MiB


def connect(s, export="disk", structured=True, meta=True, strict=True):
    h = nbd.NBD()
    if not structured:
        h.set_request_structured_replies(False)
    if meta:
        h.add_meta_context("base:allocation")
    if not strict:
        h.set_strict_mode(0)  # let bad requests reach the server
    h.connect_uri(s.uri(export))
    return h


def test_pwrite_pread_roundtrip_structured(serve):
    # Structured replies are negotiated and reads return what was written.
    s = serve()
    h = connect(s)
    assert h.get_structured_replies_negotiated()
    data = os.urandom(3 * MiB + 123)
    h.pwrite(data, 4097)
    assert h.pread(len(data), 4097) == data
    h.shutdown()


def test_pwrite_pread_roundtrip_simple_replies(serve):
    # Without structured replies every reply is a simple one and still correct.
    s = serve()
    h = connect(s, structured=False, meta=False)
    assert not h.get_structured_replies_negotiated()
    data = os.urandom(MiB)
    h.pwrite(data, 0)
    assert h.pread(MiB, 0) == data
    h.shutdown()


def test_many_requests_in_flight(serve):
    # 64 pipelined async writes then reads complete with the right data.
    s = serve()
    h = connect(s)
    blocks = {i: os.urandom(4096) for i in range(64)}
    for i, b in blocks.items():
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), i * 8192)
    assert h.aio_in_flight() > 1
    while h.aio_in_flight() > 0:
        h.poll(-1)
    bufs = {i: nbd.Buffer(4096) for i in blocks}
    for i in blocks:
        h.aio_pread(bufs[i], i * 8192)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for i, b in blocks.items():
        assert bufs[i].to_bytearray() == b
    h.shutdown()


def extents(h, length, offset=0, flags=0):
    out = []

    def cb(ctx, off, entries, err):
        assert ctx == "base:allocation"
        out.extend(zip(entries[0::2], entries[1::2], strict=False))
        return 0

    h.block_status(length, offset, cb, flags)
    return out


def test_block_status_holes_data_and_req_one(serve):
    # base:allocation marks written ranges as data and the rest hole|zero;
    # REQ_ONE returns a single extent.
    s = serve(size=8 * MiB)
    h = connect(s)
    assert h.can_meta_context("base:allocation")
    h.pwrite(b"x" * MiB, 2 * MiB)
    ex = extents(h, 8 * MiB)
    assert ex == [(2 * MiB, 3), (MiB, 0), (5 * MiB, 3)]
    one = extents(h, 8 * MiB, 0, nbd.CMD_FLAG_REQ_ONE)
    assert one == [(2 * MiB, 3)]
    h.trim(MiB, 2 * MiB)
    assert extents(h, 8 * MiB) == [(8 * MiB, 3)]
    h.shutdown()


def test_flush_fua_trim_zero(serve):
    # FLUSH, FUA writes, TRIM and WRITE_ZEROES (with NO_HOLE) all succeed and act.
    s = serve()
    h = connect(s)
    assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
    h.pwrite(b"\x01" * 65536, 0, nbd.CMD_FLAG_FUA)
    h.flush()
    h.zero(4096, 4096, nbd.CMD_FLAG_NO_HOLE)
    h.trim(8192, 8192)
    h.zero(16384, 4096, nbd.CMD_FLAG_FUA)
    got = h.pread(65536, 0)
    assert got[:4096] == b"\x01" * 4096 and got[4096:20480] == bytes(16384)
    assert got[20480:] == b"\x01" * (65536 - 20480)
    h.shutdown()


def err_of(fn, *args):
    with pytest.raises(nbd.Error) as ei:
        fn(*args)
    e = ei.value.errno  # libnbd gives the errno's name
    return getattr(errno, e) if isinstance(e, str) else e


def test_out_of_range_errors_and_connection_survives(serve):
    # Reads past the end get EINVAL, writes past the end ENOSPC; the
    # connection keeps working afterwards.
    s = serve(size=MiB)
    h = connect(s, strict=False)
    assert err_of(h.pread, 4096, MiB - 100) == errno.EINVAL
    assert err_of(h.pwrite, b"y" * 4096, MiB - 100) == errno.ENOSPC
    assert err_of(h.zero, 4096, MiB) == errno.ENOSPC
    assert err_of(h.trim, 4096, MiB) == errno.EINVAL
    assert err_of(h.block_status, 4096, MiB, lambda *a: 0) == errno.EINVAL
    h.pwrite(b"z" * 100, MiB - 100)
    assert h.pread(100, MiB - 100) == b"z" * 100
    h.shutdown()


def test_read_only_export_gives_eperm(serve):
    # Writes, trims and zeroes to a read-only export get EPERM; reads work.
    s = serve()
    h = connect(s, "ro", strict=False)
    assert h.is_read_only()
    assert err_of(h.pwrite, b"a" * 512, 0) == errno.EPERM
    assert err_of(h.trim, 512, 0) == errno.EPERM
    assert err_of(h.zero, 512, 0) == errno.EPERM
    assert h.pread(512, 0) == bytes(512)
    h.shutdown()


def test_unknown_export_is_refused(serve):
    # GO on a name the resolver does not know fails cleanly.
    s = serve()
    h = nbd.NBD()
    with pytest.raises(nbd.Error):
        h.connect_uri(s.uri("nope"))


def test_multi_conn_flush_visible_across_connections(serve):
    # CAN_MULTI_CONN: a write on one connection is read by another after flush.
    s = serve()
    a, b = connect(s), connect(s)
    assert a.can_multi_conn()
    a.pwrite(b"m" * 4096, 0)
    a.flush()
    assert b.pread(4096, 0) == b"m" * 4096
    a.shutdown()
    b.shutdown()
