"""The block-device interface the NBD target serves, and nothing more.

Contract: the NBD layer knows the filer only through ``BlockDevice`` (one
open export) and ``ExportResolver`` (which exports an initiator may list and
open). Like nbdkit's plugin API, capabilities are data (``can_*``), and
wrappers (read-only snapshot views, statistics, fault injection in tests)
stack around a device without the server noticing.

Errors: a device raises ``coppice.errors.CoppiceError`` subclasses; the
server answers the request with that error's ``errno`` (EIO for a checksum
failure, ENOSPC for a full volume, EPERM for a read-only export, EINVAL for a
bad range) and keeps the connection.

Threading: a device may be called from several threads at once; it does its
own locking. Buffers: the ``data`` given to ``pwrite`` is the server's
receive buffer, valid only during the call; a device that keeps it longer
(a write queue) copies it.

Asynchronous reads (optional): a device whose reads wait on a remote store
(RBD) may also implement ``AsyncReads.start_read``. The server then keeps
many READs of one connection in flight and answers each when it completes,
in completion order (the NBD handle says which request a reply is for).
Writes need no such method: a device that acknowledges writes before they
are durable (a write-back queue, as RBD's) returns from ``pwrite`` at once
and makes them durable in ``flush`` or on FUA. A device without
``start_read`` is read synchronously, one request at a time per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Extent flags, as NBD's base:allocation context defines them.
EXTENT_HOLE = 1  # NBD_STATE_HOLE: no storage allocated
EXTENT_ZERO = 2  # NBD_STATE_ZERO: reads as zeros


@runtime_checkable
class BlockDevice(Protocol):
    size: int  # bytes
    block_size: int  # preferred I/O granularity (the pool's block size)
    read_only: bool
    can_trim: bool
    can_zero: bool
    can_fua: bool
    can_multi_conn: bool  # flush on one connection covers writes of all

    def pread(self, offset: int, length: int) -> bytes: ...

    def pwrite(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None: ...

    def trim(self, offset: int, length: int, fua: bool = False) -> None: ...

    def zero(self, offset: int, length: int, may_trim: bool = True, fua: bool = False) -> None: ...

    def flush(self) -> None: ...

    def extents(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(offset, length, flags) runs covering [offset, offset+length)
        in order, flags a combination of EXTENT_HOLE and EXTENT_ZERO."""
        ...

    def close(self) -> None: ...


ReadDone = Callable[[bytes | None, BaseException | None], None]


@runtime_checkable
class AsyncReads(Protocol):
    def start_read(self, offset: int, length: int, done: ReadDone) -> None:
        """Start reading ``length`` bytes at ``offset`` and return at once.

        Exactly once, from any thread (possibly before this returns),
        ``done(data, None)`` or ``done(None, error)`` follows. The data must
        include every write whose ``pwrite`` returned before this call. An
        error raised here (a bad range, an offline LUN) means the read was
        not started and ``done`` is never called. ``done`` must not block
        for long: it runs on the device's completion thread."""
        ...


@dataclass(frozen=True)
class Initiator:
    """Who is on the other end of a connection.

    ``name`` is the TLS client certificate's CN/SAN or the PSK identity when
    TLS authenticated the peer, else None; ``address`` is the peer's IP
    address (None on a Unix socket); ``unix`` is True for the local socket.
    """

    name: str | None
    address: str | None
    unix: bool = False
    tls: bool = False


class ExportResolver(Protocol):
    def list_exports(self, initiator: Initiator) -> list[tuple[str, str]]:
        """(export name, description) of every export this initiator may open."""
        ...

    def open_export(self, name: str, initiator: Initiator) -> BlockDevice:
        """Open an export, or raise NotFound (also when access is denied, so
        a client cannot probe for names it may not see)."""
        ...

    def on_revoke(self, callback: Callable[[str], None]) -> None:
        """Register ``callback(export_name)``: called when an export is
        unmapped or taken offline, so the server cuts its connections."""
        ...
