"""Hostile and broken clients: each is answered per spec or cut off alone,
and the server keeps serving everyone else with the data intact."""

import os
import struct
import threading

import nbd
import pytest

from coppice.nbd import protocol as P
from tests.nbd.conftest import MiB
from tests.nbd.rawclient import RawClient


@pytest.fixture
def busy(serve):
    """A server plus a well-behaved libnbd client with known data on it."""
    s = serve(size=4 * MiB)
    h = nbd.NBD()
    h.connect_uri(s.uri())
    data = os.urandom(MiB)
    h.pwrite(data, MiB)
    h.flush()
    yield s, h, data
    h.shutdown()


def still_fine(h, data):
    assert h.pread(MiB, MiB) == data
    h.pwrite(b"ok", 0)
    assert h.pread(2, 0) == b"ok"


def test_unknown_client_flags_close_connection(busy):
    # Client flags with an unknown bit end that handshake (spec: MUST drop).
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting(cflags=0x80)
    assert c.closed_by_server()
    still_fine(h, data)


def test_bad_option_magic_closes_connection(busy):
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_LIST, magic=0x1122334455667788)
    assert c.closed_by_server()
    still_fine(h, data)


def test_huge_option_length_closes_connection(busy):
    # An option claiming 4 GiB of data is not read into memory.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_GO, length=0xFFFFFFFF)
    assert c.closed_by_server()
    still_fine(h, data)


def test_truncated_handshake_then_disconnect(busy):
    # A client vanishing mid-option leaves the server unharmed.
    s, h, data = busy
    for cut in (3, 18, 30):
        c = RawClient(s.port)
        c.recv_exact(18)
        c.sock.sendall((P.CLIENT_FLAGS.pack(1) + P.OPTION_HEADER.pack(P.IHAVEOPT, P.OPT_GO, 100))[:cut])
        c.close()
    still_fine(h, data)


def test_malformed_options_get_invalid_and_unknown_gets_unsup(busy):
    # Bad option data -> NBD_REP_ERR_INVALID, unknown option -> ERR_UNSUP; the
    # handshake continues and can still reach transmission.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_GO, struct.pack(">I", 1000) + b"disk")  # name overruns data
    assert c.reply()[1] == P.REP_ERR_INVALID
    c.option(P.OPT_LIST, b"junk")
    assert c.reply()[1] == P.REP_ERR_INVALID
    c.option(99, b"whatever")
    assert c.reply()[1] == P.REP_ERR_UNSUP
    c.option(P.OPT_SET_META_CONTEXT, b"\0\0\0\4disk\0\0\0\0")  # before STRUCTURED_REPLY
    assert c.reply()[1] == P.REP_ERR_INVALID
    c.option(P.OPT_STARTTLS)  # TLS not configured
    assert c.reply()[1] == P.REP_ERR_POLICY
    c.option(P.OPT_GO, struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">H", 0))  # not UTF-8
    assert c.reply()[1] == P.REP_ERR_INVALID
    size, flags = c.go("disk")
    assert size == 4 * MiB and flags & P.FLAG_HAS_FLAGS
    c.request(P.CMD_READ, MiB, 16)
    err, _, payload = c.simple_reply(16)
    assert err == 0 and payload == data[:16]
    still_fine(h, data)


def test_bad_request_magic_closes_only_that_connection(busy):
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk")
    c.request(P.CMD_READ, 0, 512, magic=0xDEADBEEF)
    assert c.closed_by_server()
    still_fine(h, data)


def test_oversized_write_closes_connection(busy):
    # A WRITE announcing more than 32 MiB of payload is a protocol violation.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk")
    c.request(P.CMD_WRITE, 0, 0xFFFFFFF0)
    assert c.closed_by_server()
    still_fine(h, data)


def test_oversized_read_and_bad_flags_get_einval_and_connection_survives(busy):
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk")
    c.request(P.CMD_READ, 0, 64 * MiB)
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_READ, 0, 512, flags=0x8000)
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_READ, 4 * MiB, 1)  # past the end
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_READ, 2**64 - 512, 1024)  # offset+length overflows 64 bits
    assert c.simple_reply()[0] == P.EINVAL
    c.request(99, 0, 0)  # unknown command
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_FLUSH, 1, 0)  # FLUSH must have zero offset/length
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_BLOCK_STATUS, 0, 512)  # no meta context negotiated
    assert c.simple_reply()[0] == P.EINVAL
    c.request(P.CMD_WRITE, 4 * MiB - 2, 4, data=b"abcd")  # past the end: ENOSPC, payload drained
    assert c.simple_reply()[0] == P.ENOSPC
    c.request(P.CMD_READ, MiB, 8)
    err, _, payload = c.simple_reply(8)
    assert err == 0 and payload == data[:8]
    c.request(P.CMD_DISC)
    assert c.closed_by_server()
    still_fine(h, data)


def test_structured_error_chunk_for_bad_read(busy):
    # With structured replies a failed READ gets an error chunk with a message.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk", structured=True)
    handle = c.request(P.CMD_READ, 4 * MiB, 512)
    magic, flags, typ, rhandle, payload = c.any_reply()
    assert magic == P.STRUCTURED_REPLY_MAGIC and typ == P.REPLY_TYPE_ERROR
    assert flags & P.REPLY_FLAG_DONE and rhandle == handle
    err, mlen = struct.unpack_from(">IH", payload)
    assert err == P.EINVAL and b"past the end" in payload[6 : 6 + mlen]
    c.request(P.CMD_READ, MiB, 4)
    magic, flags, typ, _, payload = c.any_reply()
    assert typ == P.REPLY_TYPE_OFFSET_DATA and payload == struct.pack(">Q", MiB) + data[:4]


def test_disconnect_mid_write_payload(busy):
    # A client dying halfway through a WRITE's payload writes nothing partial
    # into other clients' view and the server carries on.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk")
    c.sock.sendall(P.REQUEST.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 1, MiB, MiB) + b"\0" * 1000)
    c.close()
    still_fine(h, data)


def test_disconnect_with_requests_in_flight(busy):
    # Pipelined reads then an abrupt close: the server drops the replies quietly.
    s, h, data = busy
    c = RawClient(s.port)
    c.greeting()
    c.go("disk")
    for _i in range(50):
        c.request(P.CMD_READ, 0, MiB)
    c.sock.setsockopt(
        __import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER, struct.pack("ii", 1, 0)
    )  # RST, not FIN
    c.close()
    still_fine(h, data)


def test_many_bad_clients_in_parallel(busy):
    # A burst of garbage connections does not disturb a working client.
    s, h, data = busy

    def garbage(i):
        try:
            c = RawClient(s.port)
            c.recv_exact(18)
            c.sock.sendall(os.urandom(64 + i))
            c.closed_by_server()
            c.close()
        except OSError:
            pass

    threads = [threading.Thread(target=garbage, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for _ in range(20):
        still_fine(h, data)
    for t in threads:
        t.join()
    still_fine(h, data)


def test_export_name_path_and_no_zeroes(serve):
    # NBD_OPT_EXPORT_NAME: size+flags, with or without the 124 zero bytes;
    # an unknown name makes the server hang up (it cannot send an error).
    s = serve(size=MiB)
    for cflags, pad in ((P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES, 0), (P.FLAG_C_FIXED_NEWSTYLE, 124)):
        c = RawClient(s.port)
        c.greeting(cflags)
        c.option(P.OPT_EXPORT_NAME, b"disk")
        size, flags = P.EXPORT_NAME_REPLY.unpack(c.recv_exact(10))
        assert size == MiB and flags & P.FLAG_SEND_FLUSH
        assert c.recv_exact(pad) == bytes(pad)
        c.request(P.CMD_READ, 0, 8)
        assert c.simple_reply(8) == (0, 1, bytes(8))
        c.close()
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_EXPORT_NAME, b"missing")
    assert c.closed_by_server()


def test_abort_is_acked(serve):
    s = serve()
    c = RawClient(s.port)
    c.greeting()
    c.option(P.OPT_ABORT)
    assert c.reply()[1] == P.REP_ACK
    assert c.closed_by_server()


def test_info_does_not_enter_transmission(serve):
    # NBD_OPT_INFO answers with INFO_EXPORT/NAME/DESCRIPTION/BLOCK_SIZE and
    # leaves the client in option haggling.
    s = serve(size=MiB)
    c = RawClient(s.port)
    c.greeting()
    n = b"disk"
    c.option(
        P.OPT_INFO, struct.pack(">I", len(n)) + n + struct.pack(">HHH", 2, P.INFO_NAME, P.INFO_DESCRIPTION)
    )
    infos = {}
    for _opt, rep, d in c.replies_until_final():
        if rep == P.REP_INFO:
            infos[struct.unpack_from(">H", d)[0]] = d[2:]
        else:
            assert rep == P.REP_ACK
    assert infos[P.INFO_NAME] == b"disk"
    assert infos[P.INFO_DESCRIPTION] == b"the test disk"
    assert struct.unpack(">QH", infos[P.INFO_EXPORT])[0] == MiB
    assert struct.unpack(">III", infos[P.INFO_BLOCK_SIZE]) == (1, 4096, 32 * MiB)
    c.option(P.OPT_INFO, struct.pack(">I", 3) + b"bad" + struct.pack(">H", 0))
    assert c.reply()[1] == P.REP_ERR_UNKNOWN
    c.go("disk")


def test_slow_handshake_is_cut_at_the_deadline(serve):
    # A client trickling its handshake is dropped when the deadline passes,
    # however often it sends a byte.
    import time

    s = serve(handshake_timeout=0.5)
    c = RawClient(s.port)
    c.greeting()
    t0 = time.monotonic()
    header = P.OPTION_HEADER.pack(P.IHAVEOPT, P.OPT_LIST, 0)
    try:
        for b in header:
            c.sock.sendall(bytes([b]))
            time.sleep(0.1)
    except OSError:
        pass
    assert c.closed_by_server()
    assert time.monotonic() - t0 < 3
