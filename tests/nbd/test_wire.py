"""nbd/wire: the byte layouts the handlers and the handshake rely on."""

import struct

import pytest

from coppice.nbd import protocol as P
from coppice.nbd import wire


def test_request_roundtrip_and_bad_magic():
    raw = wire.encode_request(P.CMD_WRITE, 0xDEADBEEF, 4096, 512, P.CMD_FLAG_FUA)
    assert len(raw) == wire.REQUEST_SIZE
    assert wire.decode_request(b"xx" + raw, 2) == (P.CMD_FLAG_FUA, P.CMD_WRITE, 0xDEADBEEF, 4096, 512)
    with pytest.raises(wire.BadRequestMagic, match="0x12345678"):
        wire.decode_request(struct.pack(">I", 0x12345678) + raw[4:], 0)


def test_descriptors_clip_merge_and_req_one():
    H, Z = P.STATE_HOLE, P.STATE_ZERO
    ext = [(0, 4096, 0), (4096, 4096, 0), (8192, 8192, H | Z), (16384, 4096, 0)]
    d = wire.descriptors(ext, 1024, 16384, req_one=False)
    assert [P.BLOCK_DESCRIPTOR.unpack_from(d, i) for i in range(0, len(d), 8)] == [
        (7168, 0),
        (8192, 3),
        (1024, 0),
    ]
    assert wire.descriptors(ext, 1024, 16384, req_one=True) == P.BLOCK_DESCRIPTOR.pack(7168, 0)
    # a device that describes nothing: "status unknown" over the whole range
    assert wire.descriptors([], 0, 512, req_one=False) == P.BLOCK_DESCRIPTOR.pack(512, 0)


def test_replies_simple_and_structured():
    r = wire.Replies(structured=False)
    r.ok(1)
    r.data(2, 0, b"abc")
    r.error(3, P.EIO, "x")
    bufs = r.take()
    assert not r and r.nbytes == 0
    assert bufs[0] == P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, 1)
    assert bufs[1:3] == [P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, 2), b"abc"]
    assert bufs[3] == P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, P.EIO, 3)
    s = wire.Replies(structured=True)
    s.error(9, P.EINVAL, "m" * 2000)
    (chunk,) = s.take()
    magic, flags, typ, handle, length, err, mlen = P.STRUCTURED_ERROR_HEADER.unpack_from(chunk)
    assert (magic, flags, typ, handle, err) == (
        P.STRUCTURED_REPLY_MAGIC,
        P.REPLY_FLAG_DONE,
        P.REPLY_TYPE_ERROR,
        9,
        P.EINVAL,
    )
    assert mlen == wire.ERROR_MESSAGE_MAX and length == 6 + mlen == len(chunk) - 20


def test_go_and_meta_context_decoding():
    name = b"/vol/v/lun0"
    go = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, P.INFO_NAME)
    dec = lambda b: b.decode()  # noqa: E731
    assert wire.decode_go_request(go, dec) == ("/vol/v/lun0", {P.INFO_NAME})
    assert wire.decode_go_request(go[:-1], dec) == "GO/INFO data is malformed"
    assert wire.decode_go_request(b"\0\0", dec) == "GO/INFO data too short"
    q = b"base:allocation"
    meta = struct.pack(">I", len(name)) + name + struct.pack(">II", 1, len(q)) + q
    assert wire.decode_meta_context_request(meta, dec) == ("/vol/v/lun0", ["base:allocation"])
    with pytest.raises(ValueError):
        wire.decode_meta_context_request(meta + b"x", dec)
