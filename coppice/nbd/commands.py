"""The NBD transmission commands, one handler each.

Contract: ``HANDLERS[cmd](export, replies, flags, handle, offset, length,
payload)`` checks one request as doc/proto.md requires, calls the device,
and appends exactly one reply to ``replies`` (``wire.Replies``): success, or
the spec's errno with a message. A bad request or a failing device never
raises: the connection goes on. Only the payload of WRITE is not ``None``.
A command without a handler (CACHE, RESIZE, anything unknown) is answered
with ``unknown``. WRITEs without flags that arrive together may instead go
to ``write_batch``, as one device call (a device with ``pwrite_many``). A reply to FLUSH or to a FUA request is appended only
after the device call returned, so durability is exactly the device's; FUA
on a device without it is a flush after the change (``_fua_by_flush``).

The one exception to "appends a reply now": when the connection gives the
``Export`` a ``read_async`` (a device with ``start_read``, see
``blockdev.AsyncReads``), a checked READ is handed to it and its reply is
made later by ``read_done``, on whichever thread the device completes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from coppice.errors import CoppiceError
from coppice.nbd import protocol as P
from coppice.nbd.blockdev import BlockDevice

log = logging.getLogger("coppice.nbd")

FUA = P.CMD_FLAG_FUA
MAX_PAYLOAD = P.MAX_REQUEST_PAYLOAD


@dataclass(slots=True)
class Export:
    """What the handlers need of one connection in transmission."""

    dev: BlockDevice
    who: str  # for the log: "nbd client ADDRESS export=..."
    structured: bool
    block_status_ok: bool  # base:allocation negotiated for this export
    # (handle, offset, length) -> None: start a checked READ whose reply the
    # connection sends when the device completes it; None reads in place
    read_async: Callable[[int, int, int], None] | None = None

    def __post_init__(self):
        dev = self.dev
        self.size = dev.size
        self.read_only = dev.read_only
        self.can_fua = dev.can_fua
        self.read_flags = FUA | (P.CMD_FLAG_DF if self.structured else 0)
        # the device takes several writes in one call (``pwrite_many``)
        self.batch_writes = not dev.read_only and callable(getattr(dev, "pwrite_many", None))

    size: int = 0
    read_only: bool = False
    can_fua: bool = False
    read_flags: int = 0
    batch_writes: bool = False


def error_errno(exc: BaseException) -> int:
    if isinstance(exc, CoppiceError):
        return P.nbd_errno(getattr(exc, "errno", None))
    if isinstance(exc, OSError):
        return P.nbd_errno(exc.errno)
    return P.EIO


def _device_error(x: Export, out, handle: int, what: str, offset: int, length: int, exc: Exception) -> None:
    if isinstance(exc, (CoppiceError, OSError)):
        log.info("%s: %s %d+%d: %s", x.who, what, offset, length, exc)
    else:
        log.error("%s: %s %d+%d: unexpected device error", x.who, what, offset, length, exc_info=exc)
    out.error(handle, error_errno(exc), f"{what} failed: {exc}")


class ShortRead(CoppiceError):
    """NBD server: device returned {got} bytes for a {length}-byte read"""

    errno = 5  # EIO


def read(x: Export, out, flags, handle, offset, length, payload) -> None:
    if flags & ~x.read_flags:
        return out.error(handle, P.EINVAL, f"READ: unsupported flags {flags:#x}")
    if length == 0 or length > MAX_PAYLOAD:
        return out.error(handle, P.EINVAL, f"READ: length {length} not in 1..{MAX_PAYLOAD}")
    if offset + length > x.size:
        return out.error(handle, P.EINVAL, "READ past the end of the export")
    if x.read_async is not None:
        return x.read_async(handle, offset, length)
    try:
        data = x.dev.pread(offset, length)
    except Exception as e:
        return _device_error(x, out, handle, "READ", offset, length, e)
    return read_done(x, out, handle, offset, length, data, None)


def read_done(x: Export, out, handle, offset, length, data, exc: BaseException | None) -> None:
    """The reply to a READ the device answered with ``data`` or failed with ``exc``."""
    if exc is None and len(data) != length:
        exc = ShortRead(got=len(data), length=length)
    if exc is not None:
        return _device_error(x, out, handle, "READ", offset, length, exc)
    out.data(handle, offset, data)
    return None


def _fua_by_flush(x: Export, flags: int) -> None:
    """FUA asked of a device that cannot do it per request: flush after the
    change, so the reply still means durable."""
    if flags & FUA and not x.can_fua:
        x.dev.flush()


def write(x: Export, out, flags, handle, offset, length, payload) -> None:
    if not _write_refused(x, out, flags, handle, offset, length):
        _write_checked(x, out, flags, handle, offset, length, payload)


def _write_refused(x: Export, out, flags, handle, offset, length) -> bool:
    """The checks of one WRITE; True once its error reply is queued."""
    if flags & ~FUA:
        out.error(handle, P.EINVAL, f"WRITE: unsupported flags {flags:#x}")
    elif x.read_only:
        out.error(handle, P.EPERM, "WRITE to a read-only export")
    elif length == 0:
        out.error(handle, P.EINVAL, "WRITE of length 0")
    elif offset + length > x.size:
        out.error(handle, P.ENOSPC, "WRITE past the end of the export")
    else:
        return False
    return True


def _write_checked(x: Export, out, flags, handle, offset, length, payload) -> None:
    fua = bool(flags & FUA)
    try:
        x.dev.pwrite(offset, payload, fua and x.can_fua)
        _fua_by_flush(x, flags)
    except Exception as e:
        return _device_error(x, out, handle, "WRITE", offset, length, e)
    out.ok(handle)
    return None


def write_batch(x: Export, out, reqs: list) -> None:
    """WRITEs without flags that arrived together, ``[(handle, offset,
    length, payload)]`` in request order: each checked as ``write`` checks
    it, the valid ones given to the device in one ``pwrite_many`` (one
    lock hold, one data write, one intent-log append in the engine) and
    answered once it returns. A batch the device refuses wrote nothing (or,
    on a device's one-at-a-time path, only writes that are written again
    here unchanged): each write then goes again on its own, for its own
    reply."""
    good = [r for r in reqs if not _write_refused(x, out, 0, *r[:3])]
    if len(good) > 1:
        try:
            x.dev.pwrite_many([(offset, payload) for _, offset, _, payload in good])
        except Exception:
            pass  # answered one at a time below
        else:
            for handle, *_ in good:
                out.ok(handle)
            return
    for r in good:
        _write_checked(x, out, 0, *r)


def flush(x: Export, out, flags, handle, offset, length, payload) -> None:
    if flags & ~FUA:
        return out.error(handle, P.EINVAL, f"FLUSH: unsupported flags {flags:#x}")
    if offset or length:
        return out.error(handle, P.EINVAL, "FLUSH: offset and length must be 0")
    try:
        x.dev.flush()
    except Exception as e:
        return _device_error(x, out, handle, "FLUSH", 0, 0, e)
    out.ok(handle)
    return None


def _check_change(x: Export, out, name: str, allowed: int, flags, handle, offset, length) -> bool:
    """Common checks of TRIM and WRITE_ZEROES; False once an error is queued."""
    if flags & ~allowed:
        out.error(handle, P.EINVAL, f"{name}: unsupported flags {flags:#x}")
    elif x.read_only:
        out.error(handle, P.EPERM, f"{name} on a read-only export")
    elif name == "TRIM" and not x.dev.can_trim:
        out.error(handle, P.EINVAL, "TRIM is not supported by this export")
    elif length == 0:
        out.error(handle, P.EINVAL, f"{name} of length 0")
    else:
        return True
    return False


def trim(x: Export, out, flags, handle, offset, length, payload) -> None:
    if not _check_change(x, out, "TRIM", FUA, flags, handle, offset, length):
        return None
    if offset + length > x.size:
        return out.error(handle, P.EINVAL, "TRIM past the end of the export")
    fua = bool(flags & FUA)
    try:
        x.dev.trim(offset, length, fua and x.can_fua)
        _fua_by_flush(x, flags)
    except Exception as e:
        return _device_error(x, out, handle, "TRIM", offset, length, e)
    out.ok(handle)
    return None


def write_zeroes(x: Export, out, flags, handle, offset, length, payload) -> None:
    if not _check_change(x, out, "WRITE_ZEROES", FUA | P.CMD_FLAG_NO_HOLE, flags, handle, offset, length):
        return None
    if offset + length > x.size:
        return out.error(handle, P.ENOSPC, "WRITE_ZEROES past the end of the export")
    fua = bool(flags & FUA) and x.can_fua
    dev = x.dev
    try:
        if dev.can_zero:
            dev.zero(offset, length, not (flags & P.CMD_FLAG_NO_HOLE), fua)
        else:
            _emulate_zero(dev, offset, length, fua)
        _fua_by_flush(x, flags)
    except Exception as e:
        return _device_error(x, out, handle, "WRITE_ZEROES", offset, length, e)
    out.ok(handle)
    return None


def _emulate_zero(dev: BlockDevice, offset: int, length: int, fua: bool) -> None:
    chunk = bytes(min(length, 1 << 20))
    end = offset + length
    while offset < end:
        n = min(len(chunk), end - offset)
        dev.pwrite(offset, memoryview(chunk)[:n], fua)
        offset += n


def block_status(x: Export, out, flags, handle, offset, length, payload) -> None:
    from coppice.nbd.wire import descriptors

    if flags & ~(FUA | P.CMD_FLAG_REQ_ONE):
        return out.error(handle, P.EINVAL, f"BLOCK_STATUS: unsupported flags {flags:#x}")
    if not x.block_status_ok:
        return out.error(handle, P.EINVAL, "BLOCK_STATUS without a negotiated base:allocation context")
    if length == 0:
        return out.error(handle, P.EINVAL, "BLOCK_STATUS of length 0")
    if offset + length > x.size:
        return out.error(handle, P.EINVAL, "BLOCK_STATUS past the end of the export")
    try:
        extents = x.dev.extents(offset, length)
    except Exception as e:
        return _device_error(x, out, handle, "BLOCK_STATUS", offset, length, e)
    req_one = bool(flags & P.CMD_FLAG_REQ_ONE)
    out.block_status(handle, P.META_BASE_ALLOCATION_ID, descriptors(extents, offset, length, req_one))
    return None


def unknown(x: Export, out, cmd, handle) -> None:
    out.error(handle, P.EINVAL, f"unknown or unadvertised command {cmd}")


HANDLERS = {
    P.CMD_READ: read,
    P.CMD_WRITE: write,
    P.CMD_FLUSH: flush,
    P.CMD_TRIM: trim,
    P.CMD_WRITE_ZEROES: write_zeroes,
    P.CMD_BLOCK_STATUS: block_status,
}
