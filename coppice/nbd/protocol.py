"""NBD wire format: every magic, code, flag and struct layout, written once.

Contract: this module owns the byte layout of the NBD protocol as
doc/proto.md of NetworkBlockDevice/nbd defines it (fixed newstyle
handshake, simple and structured replies, the INFO and BLOCK_STATUS
extensions). It holds constants and precompiled ``struct.Struct`` objects
only — no I/O, no state — so any thread may use it. All integers on the
wire are big-endian ("network byte order").
"""

from __future__ import annotations

import errno as _errno
import struct

# --------------------------------------------------------------------------
# Handshake (fixed newstyle)
# --------------------------------------------------------------------------

NBDMAGIC = 0x4E42444D41474943  # ASCII "NBDMAGIC", first 8 bytes from server
IHAVEOPT = 0x49484156454F5054  # ASCII "IHAVEOPT", newstyle magic / option magic
OPT_REPLY_MAGIC = 0x0003E889045565A9  # leads every option reply

# S: 8 bytes NBDMAGIC | 8 bytes IHAVEOPT | 2 bytes handshake flags
SERVER_GREETING = struct.Struct(">QQH")
# C: 4 bytes client flags
CLIENT_FLAGS = struct.Struct(">I")
# C: 8 bytes IHAVEOPT | 4 bytes option | 4 bytes data length
OPTION_HEADER = struct.Struct(">QII")
# S: 8 bytes OPT_REPLY_MAGIC | 4 bytes option | 4 bytes reply type | 4 bytes data length
OPTION_REPLY = struct.Struct(">QIII")
# S (reply to NBD_OPT_EXPORT_NAME): 8 bytes size | 2 bytes transmission flags
#   (+ 124 zero bytes unless NBD_FLAG_C_NO_ZEROES was negotiated)
EXPORT_NAME_REPLY = struct.Struct(">QH")
EXPORT_NAME_PAD = bytes(124)

# Handshake flags (server -> client, 16 bits)
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
# Client flags (client -> server, 32 bits); any other bit => drop the connection
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1
CLIENT_FLAGS_KNOWN = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES

# Options
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4  # withdrawn; answered ERR_UNSUP like any unknown option
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11  # not implemented: 64-bit headers; answered ERR_UNSUP

OPTION_NAMES = {
    OPT_EXPORT_NAME: "EXPORT_NAME",
    OPT_ABORT: "ABORT",
    OPT_LIST: "LIST",
    OPT_PEEK_EXPORT: "PEEK_EXPORT",
    OPT_STARTTLS: "STARTTLS",
    OPT_INFO: "INFO",
    OPT_GO: "GO",
    OPT_STRUCTURED_REPLY: "STRUCTURED_REPLY",
    OPT_LIST_META_CONTEXT: "LIST_META_CONTEXT",
    OPT_SET_META_CONTEXT: "SET_META_CONTEXT",
    OPT_EXTENDED_HEADERS: "EXTENDED_HEADERS",
}

# Option reply types; errors have bit 31 set
REP_ACK = 1
REP_SERVER = 2  # data: 4 bytes name length | name | description
REP_INFO = 3  # data: 2 bytes info type | info payload
REP_META_CONTEXT = 4  # data: 4 bytes context id | context name
REP_ERR_BIT = 1 << 31
REP_ERR_UNSUP = REP_ERR_BIT | 1
REP_ERR_POLICY = REP_ERR_BIT | 2
REP_ERR_INVALID = REP_ERR_BIT | 3
REP_ERR_PLATFORM = REP_ERR_BIT | 4
REP_ERR_TLS_REQD = REP_ERR_BIT | 5
REP_ERR_UNKNOWN = REP_ERR_BIT | 6
REP_ERR_SHUTDOWN = REP_ERR_BIT | 7
REP_ERR_BLOCK_SIZE_REQD = REP_ERR_BIT | 8
REP_ERR_TOO_BIG = REP_ERR_BIT | 9

# NBD_REP_INFO payloads (after the 2-byte info type)
INFO_EXPORT = 0  # 8 bytes size | 2 bytes transmission flags
INFO_NAME = 1  # name string
INFO_DESCRIPTION = 2  # description string
INFO_BLOCK_SIZE = 3  # 4 bytes minimum | 4 bytes preferred | 4 bytes maximum
INFO_EXPORT_STRUCT = struct.Struct(">HQH")  # type, size, transmission flags
INFO_BLOCK_SIZE_STRUCT = struct.Struct(">HIII")  # type, min, preferred, max
INFO_TYPE = struct.Struct(">H")

U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")

# Transmission flags (server -> client, 16 bits)
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_ROTATIONAL = 1 << 4
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8
FLAG_SEND_RESIZE = 1 << 9
FLAG_SEND_CACHE = 1 << 10
FLAG_SEND_FAST_ZERO = 1 << 11

# --------------------------------------------------------------------------
# Transmission
# --------------------------------------------------------------------------

REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# C: 4 bytes magic | 2 bytes command flags | 2 bytes type | 8 bytes handle
#    | 8 bytes offset | 4 bytes length   (28 bytes; WRITE: + length bytes)
REQUEST = struct.Struct(">IHHQQI")
# S: 4 bytes magic | 4 bytes error | 8 bytes handle (16 bytes; READ: + data)
SIMPLE_REPLY = struct.Struct(">IIQ")
# S: 4 bytes magic | 2 bytes flags | 2 bytes type | 8 bytes handle
#    | 4 bytes payload length   (20 bytes)
STRUCTURED_REPLY = struct.Struct(">IHHQI")
# Structured header followed by an OFFSET_DATA chunk's 8-byte offset (28 bytes)
STRUCTURED_DATA_HEADER = struct.Struct(">IHHQIQ")
# Structured header + NBD_REPLY_TYPE_ERROR payload: 4 bytes errno | 2 bytes msg len
STRUCTURED_ERROR_HEADER = struct.Struct(">IHHQIIH")
# Structured header + BLOCK_STATUS payload start: 4 bytes metadata context id
STRUCTURED_BLOCK_STATUS_HEADER = struct.Struct(">IHHQII")
# Block status descriptor: 4 bytes extent length | 4 bytes status flags
BLOCK_DESCRIPTOR = struct.Struct(">II")

# Commands
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5  # not advertised; answered EINVAL
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7
CMD_RESIZE = 8  # not advertised; answered EINVAL

COMMAND_NAMES = {
    CMD_READ: "READ",
    CMD_WRITE: "WRITE",
    CMD_DISC: "DISC",
    CMD_FLUSH: "FLUSH",
    CMD_TRIM: "TRIM",
    CMD_CACHE: "CACHE",
    CMD_WRITE_ZEROES: "WRITE_ZEROES",
    CMD_BLOCK_STATUS: "BLOCK_STATUS",
    CMD_RESIZE: "RESIZE",
}

# Command flags (16 bits)
CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

# Structured reply flags and chunk types
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

# base:allocation metadata context
META_BASE_ALLOCATION = "base:allocation"
META_BASE_ALLOCATION_ID = 1  # our id for it; any value the client echoes back
STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1

# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------

MAX_STRING = 4096  # spec: strings MUST be no longer than 4096 bytes
MAX_REQUEST_PAYLOAD = 32 << 20  # largest READ/WRITE we serve (also INFO_BLOCK_SIZE max)
MAX_OPTION_LENGTH = 1 << 20  # larger option data => treated as denial of service
MAX_OPTIONS = 4096  # options per handshake before we hang up

# --------------------------------------------------------------------------
# Errors: the only values the spec allows in a reply's error field
# --------------------------------------------------------------------------

EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

_NBD_ERRNOS = {EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN}
# Host errno -> NBD errno, for host values that are not NBD values themselves
_ERRNO_MAP = {
    _errno.EROFS: EPERM,
    _errno.EACCES: EPERM,
    _errno.EDQUOT: ENOSPC,  # spec: SHOULD map EDQUOT and EFBIG to ENOSPC
    _errno.EFBIG: ENOSPC,
    _errno.EOPNOTSUPP: ENOTSUP,
    _errno.ENOENT: EIO,  # the device lost its backing object mid-request
    _errno.EBUSY: EIO,
    _errno.ENXIO: EINVAL,
}


def nbd_errno(host_errno: int | None) -> int:
    """Map a host errno to one the NBD spec allows (EINVAL when unknown, as
    qemu and nbdkit do)."""
    if host_errno is None:
        return EIO
    if host_errno in _NBD_ERRNOS:
        return host_errno
    return _ERRNO_MAP.get(host_errno, EINVAL)
