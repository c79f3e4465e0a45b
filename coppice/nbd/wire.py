"""NBD messages to and from bytes: request decoding, reply encoding.

Contract: pure functions and one small batching class over the layouts in
``coppice.nbd.protocol``; no sockets, no devices, no state shared between
connections. ``decode_request`` turns 28 request bytes into their fields
(raising ``BadRequestMagic`` on a wrong magic); ``Replies`` collects the
replies of one batch of requests as a list of buffers for one ``sendmsg``,
in simple or structured form as the connection negotiated; the ``option_*``
and ``info_*`` functions encode handshake replies; ``descriptors`` encodes
block-status extents. Any thread may use any of it.
"""

from __future__ import annotations

from coppice.nbd import protocol as P

REQUEST_SIZE = P.REQUEST.size  # 28
ERROR_MESSAGE_MAX = 512  # bytes of text in a structured error chunk

_unpack_request = P.REQUEST.unpack_from
_simple = P.SIMPLE_REPLY.pack
_data_header = P.STRUCTURED_DATA_HEADER.pack
_error_header = P.STRUCTURED_ERROR_HEADER.pack
_option_reply = P.OPTION_REPLY.pack


class BadRequestMagic(ValueError):
    def __init__(self, magic: int):
        super().__init__(f"bad request magic {magic:#x}")
        self.magic = magic


def decode_request(buf, pos: int) -> tuple[int, int, int, int, int]:
    """(flags, cmd, handle, offset, length) of the request at ``buf[pos:pos+28]``."""
    magic, flags, cmd, handle, offset, length = _unpack_request(buf, pos)
    if magic != P.REQUEST_MAGIC:
        raise BadRequestMagic(magic)
    return flags, cmd, handle, offset, length


def encode_request(cmd: int, handle: int, offset: int = 0, length: int = 0, flags: int = 0) -> bytes:
    """The client side of ``decode_request`` (tests and tools)."""
    return P.REQUEST.pack(P.REQUEST_MAGIC, flags, cmd, handle, offset, length)


class Replies:
    """The replies to one batch of requests, in order, ready for one
    ``sendmsg``. ``nbytes`` counts what is queued (payloads included) so the
    caller can send early when a batch of reads grows large."""

    __slots__ = ("structured", "bufs", "nbytes")

    def __init__(self, structured: bool):
        self.structured = structured
        self.bufs: list = []
        self.nbytes = 0

    def take(self) -> list:
        bufs, self.bufs, self.nbytes = self.bufs, [], 0
        return bufs

    def __bool__(self) -> bool:
        return bool(self.bufs)

    def ok(self, handle: int) -> None:
        """Success without payload (WRITE, FLUSH, TRIM, WRITE_ZEROES)."""
        self.bufs.append(_simple(P.SIMPLE_REPLY_MAGIC, 0, handle))
        self.nbytes += 16

    def data(self, handle: int, offset: int, data) -> None:
        """A successful READ: one chunk (the server always sets DF)."""
        n = len(data)
        if self.structured:
            self.bufs.append(
                _data_header(
                    P.STRUCTURED_REPLY_MAGIC,
                    P.REPLY_FLAG_DONE,
                    P.REPLY_TYPE_OFFSET_DATA,
                    handle,
                    n + 8,
                    offset,
                )
            )
        else:
            self.bufs.append(_simple(P.SIMPLE_REPLY_MAGIC, 0, handle))
        self.bufs.append(data)
        self.nbytes += n + 32

    def error(self, handle: int, err: int, message: str) -> None:
        """A failed request: the NBD errno, and in structured form a message."""
        if self.structured:
            m = message.encode("utf-8", "replace")[:ERROR_MESSAGE_MAX]
            self.bufs.append(
                _error_header(
                    P.STRUCTURED_REPLY_MAGIC,
                    P.REPLY_FLAG_DONE,
                    P.REPLY_TYPE_ERROR,
                    handle,
                    6 + len(m),
                    err,
                    len(m),
                )
                + m
            )
        else:
            self.bufs.append(_simple(P.SIMPLE_REPLY_MAGIC, err, handle))
        self.nbytes += 32

    def block_status(self, handle: int, context_id: int, descriptors: bytes) -> None:
        self.bufs.append(
            P.STRUCTURED_BLOCK_STATUS_HEADER.pack(
                P.STRUCTURED_REPLY_MAGIC,
                P.REPLY_FLAG_DONE,
                P.REPLY_TYPE_BLOCK_STATUS,
                handle,
                4 + len(descriptors),
                context_id,
            )
            + descriptors
        )
        self.nbytes += 32 + len(descriptors)


def descriptors(extents, offset: int, length: int, req_one: bool) -> bytes:
    """Encode device extents as base:allocation descriptors covering a prefix
    of [offset, offset+length): clipped, adjacent equal runs merged."""
    end = offset + length
    pos = offset
    lens: list[int] = []
    flags: list[int] = []
    for e_off, e_len, e_flags in extents:
        e_end = e_off + e_len
        if e_end <= pos:
            continue
        if e_off > pos:
            break  # a gap: the device did not describe it; stop here
        n = min(e_end, end) - pos
        f = e_flags & (P.STATE_HOLE | P.STATE_ZERO)
        if flags and flags[-1] == f:
            lens[-1] += n
        else:
            if req_one and lens:
                break
            lens.append(n)
            flags.append(f)
        pos += n
        if pos >= end:
            break
    if not lens:
        return P.BLOCK_DESCRIPTOR.pack(length, 0)  # "status unknown" is always true
    pack = P.BLOCK_DESCRIPTOR.pack
    return b"".join(pack(n, f) for n, f in zip(lens, flags, strict=False))


# ---------------------------------------------------------------- handshake


def option_reply(opt: int, rep: int, data: bytes = b"") -> bytes:
    return _option_reply(P.OPT_REPLY_MAGIC, opt, rep, len(data)) + data


def option_error(opt: int, rep: int, message: str) -> bytes:
    return option_reply(opt, rep, message.encode("utf-8", "replace")[: P.MAX_STRING])


def server_greeting() -> bytes:
    return P.SERVER_GREETING.pack(P.NBDMAGIC, P.IHAVEOPT, P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES)


def export_name_reply(size: int, flags: int, no_zeroes: bool) -> bytes:
    reply = P.EXPORT_NAME_REPLY.pack(size, flags)
    return reply if no_zeroes else reply + P.EXPORT_NAME_PAD


def list_entry(opt: int, name: str, description: str | None) -> bytes:
    n = name.encode("utf-8")[: P.MAX_STRING]
    d = (description or "").encode("utf-8", "replace")[: P.MAX_STRING]
    return option_reply(opt, P.REP_SERVER, P.U32.pack(len(n)) + n + d)


def info_replies(
    opt: int, name: str, size: int, flags: int, block_size: int, requests: set[int], description: str | None
) -> bytes:
    """The NBD_REP_INFO replies to GO/INFO, then the final ACK."""
    replies = [P.INFO_EXPORT_STRUCT.pack(P.INFO_EXPORT, size, flags)]
    if P.INFO_NAME in requests:
        replies.append(P.INFO_TYPE.pack(P.INFO_NAME) + name.encode("utf-8"))
    if P.INFO_DESCRIPTION in requests and description:
        replies.append(
            P.INFO_TYPE.pack(P.INFO_DESCRIPTION) + description.encode("utf-8", "replace")[: P.MAX_STRING]
        )
    # Sent unasked too: min 1 means "no alignment needed", which every
    # client accepts, and the maximum tells it to split big requests.
    preferred = block_size
    if preferred < 512 or preferred & (preferred - 1) or preferred > P.MAX_REQUEST_PAYLOAD:
        preferred = 4096
    replies.append(P.INFO_BLOCK_SIZE_STRUCT.pack(P.INFO_BLOCK_SIZE, 1, preferred, P.MAX_REQUEST_PAYLOAD))
    return b"".join(option_reply(opt, P.REP_INFO, r) for r in replies) + option_reply(opt, P.REP_ACK)


def meta_context_reply(opt: int, context_id: int, context: str) -> bytes:
    return option_reply(opt, P.REP_META_CONTEXT, P.U32.pack(context_id) + context.encode())


def decode_meta_context_request(data: bytes, decode_name) -> tuple[str, list[str]]:
    """(export name, queries) of LIST/SET_META_CONTEXT option data; raises
    ValueError (or struct.error) when truncated, trailing or not UTF-8."""
    (namelen,) = P.U32.unpack_from(data, 0)
    pos = 4 + namelen
    name = decode_name(data[4:pos])
    (nqueries,) = P.U32.unpack_from(data, pos)
    pos += 4
    queries = []
    for _ in range(nqueries):
        (qlen,) = P.U32.unpack_from(data, pos)
        pos += 4
        queries.append(decode_name(data[pos : pos + qlen]))
        pos += qlen
    if pos != len(data) or name is None or None in queries:
        raise ValueError("truncated, trailing or non-UTF-8 data")
    return name, queries


def decode_go_request(data: bytes, decode_name) -> tuple[str, set[int]] | str:
    """(export name, requested info types) of GO/INFO option data, or the
    reason it is malformed."""
    if len(data) < 6:
        return "GO/INFO data too short"
    (namelen,) = P.U32.unpack_from(data, 0)
    if 4 + namelen + 2 > len(data):
        return "GO/INFO export name overruns the option"
    name = decode_name(data[4 : 4 + namelen])
    (nreq,) = P.U16.unpack_from(data, 4 + namelen)
    if name is None or len(data) != 4 + namelen + 2 + 2 * nreq:
        return "GO/INFO data is malformed"
    return name, {P.U16.unpack_from(data, 6 + namelen + 2 * i)[0] for i in range(nreq)}
