"""The NBD server: serves ``BlockDevice`` exports to any NBD client.

Contract: ``NBDServer`` owns its listening sockets (TCP and/or a Unix
socket) and every client connection accepted on them. It speaks the fixed
newstyle handshake (EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO,
STRUCTURED_REPLY, LIST/SET_META_CONTEXT with ``base:allocation``; any other
option gets NBD_REP_ERR_UNSUP) and the transmission commands READ, WRITE
(+FUA), DISC, FLUSH, TRIM, WRITE_ZEROES (+NO_HOLE) and BLOCK_STATUS, as
doc/proto.md of NetworkBlockDevice/nbd defines them.

Guarantees:
- Which exports a client sees and opens is decided only by the resolver,
  given an ``Initiator`` (TLS client-certificate CN/SAN, peer address, or
  the Unix socket). Export names the resolver refuses are reported exactly
  like names that do not exist (NBD_REP_ERR_UNKNOWN).
- With ``require_tls`` every option but STARTTLS and ABORT is refused with
  NBD_REP_ERR_TLS_REQD until TLS is up (the spec's FORCEDTLS mode).
- A request error (out of range, read-only export, device error) is
  answered with the spec's errno and the connection goes on. A protocol
  violation (bad magic, unknown client flags, a WRITE payload over 32 MiB,
  an option over 1 MiB) closes that one connection and nothing else.
- A reply to FLUSH or to a FUA command is sent only after the device call
  returned, so durability is exactly the device's. FLUSH is handled after
  every request read before it was handed to the device, so it covers
  every write whose reply was sent before the FLUSH arrived (a device that
  queues writes drains its queue in ``flush``).
- Replies may come out of request order (reads on a device with
  ``start_read``); each carries its request's handle, and a reply is never
  interleaved with another on the socket (one thread sends).
- Bounded memory per connection: at most 64 MiB of READ replies started
  and not yet sent (``_MAX_INFLIGHT_BYTES``; a client that does not read
  its replies is not read from), plus the request buffer (256 KiB) and one
  WRITE payload (at most 32 MiB); what a device queues is the device's own
  bound (an RBD LUN: 64 writes, 64 MiB).
- ``revoke(name)``, ``shutdown()``, DISC and a protocol violation finish the
  requests a connection has already read (reads in flight included), send
  their replies, flush and close the device, then close the socket.

Modules: ``wire`` encodes and decodes the messages, ``commands`` holds one
handler per transmission command; this module owns sockets, the handshake,
admission and access (who may hold which export).

Threading: one thread accepts; each connection runs in its own thread on a
blocking socket, reading requests in batches (one ``recv_into`` brings in
every pipelined request already queued) and handling them in order. For a
device without ``start_read`` (the native engine: its reads are local and
short) that thread also answers each batch with one ``sendmsg``. For a
device with it (RBD: reads wait on the network), a clear-text connection
gets a second thread, the reply sender: READs are started on the device
and their replies queued by the device's completion threads, the reader
thread goes on reading, and QD32 from one client becomes QD32 at the
device. (Writes reach such a device's own queue synchronously and fast.)
A TLS connection always uses the one-thread path. Devices must tolerate
calls from several threads at once (``BlockDevice``'s own contract). All
public methods are safe to call from any thread.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import struct
import threading
import time

from coppice.errors import CoppiceError, NotFound
from coppice.nbd import protocol as P
from coppice.nbd import wire
from coppice.nbd.blockdev import BlockDevice, ExportResolver, Initiator
from coppice.nbd.commands import HANDLERS, Export, read_done, unknown, write_batch
from coppice.nbd.wire import REQUEST_SIZE, BadRequestMagic, Replies, decode_request

log = logging.getLogger("coppice.nbd")

__all__ = ["NBDServer", "NBDServerError", "ProtocolViolation"]

_RECV_BUFFER = 256 << 10  # requests are read into this, many at a time
_SEND_BATCH_BYTES = 4 << 20  # send replies once this much is queued
_WRITE_BATCH = 64  # plain WRITEs read together go to the device in one call, up to this many
_IOV_MAX = 1024  # Linux's limit on buffers per sendmsg
# Bytes of READ replies one connection may have started and not yet sent
# (reads in flight plus replies queued): over it the connection stops
# reading requests until the client reads its replies.
_MAX_INFLIGHT_BYTES = 64 << 20
_REPLY_OVERHEAD = 32  # header bytes of a READ reply, counted with its data


class NBDServerError(CoppiceError):
    """NBD server: {detail}"""


class ProtocolViolation(CoppiceError):
    """NBD client broke the protocol: {detail}; closing that connection
    (the client must follow doc/proto.md of NetworkBlockDevice/nbd)"""


class _Disconnect(Exception):
    """The peer went away or asked to; end the connection quietly."""


def _peer_initiator(sock: socket.socket, unix: bool) -> Initiator:
    if unix:
        return Initiator(name=None, address=None, unix=True, tls=False)
    try:
        address = sock.getpeername()[0]
    except OSError:
        address = None
    if address and address.startswith("::ffff:") and "." in address:
        address = address[7:]  # IPv4-mapped IPv6: igroups name the IPv4 address
    return Initiator(name=None, address=address, unix=False, tls=False)


def _cert_name(cert: dict | None) -> str | None:
    """The initiator name a verified client certificate carries: its subject
    CN, else its first subjectAltName."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                return value
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "URI", "email", "IP Address") and value:
            return value
    return None


def _private_unix_listener(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it
    appears there: bound in a private directory, chmod-ed, then renamed
    into place (the umask is per process and other threads may change it)."""
    import tempfile

    if os.path.exists(path) or os.path.islink(path):
        os.unlink(path)  # a stale socket from an earlier run
    tmpdir = tempfile.mkdtemp(prefix=".nbd-sock-", dir=os.path.dirname(os.path.abspath(path)))
    tmp = os.path.join(tmpdir, "s")
    us = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        us.bind(tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
        us.listen(128)
    except BaseException:
        us.close()
        raise
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        os.rmdir(tmpdir)
    return us


class _Connection:
    """One client: handshake, then the transmission loop, in its own thread."""

    def __init__(self, server: NBDServer, sock: socket.socket, unix: bool):
        self.server = server
        self.sock = sock
        self.raw_sock = sock
        self.unix = unix
        self.initiator = _peer_initiator(sock, unix)
        self.tls = False
        self.structured = False
        self.meta_export: str | None = None  # export the contexts were set for
        self.meta_base_allocation = False
        self.export_name: str | None = None
        self.device: BlockDevice | None = None
        self.closing = False
        self._open_gen = 0
        self._access_gen = 0
        self._deadline: float | None = None
        self.thread: threading.Thread | None = None
        self.handshaking = True  # counted against the per-address handshake limit
        self.since = time.time()
        self._refusal_logged = False
        self._payload_buf: memoryview | None = None
        self._sender: _ReplySender | None = None  # set while transmission runs with async reads

    # ------------------------------------------------------------------ life

    def run(self) -> None:
        try:
            # One deadline for the whole handshake, so a client trickling
            # bytes cannot hold a thread forever.
            self._deadline = time.monotonic() + self.server.handshake_timeout
            if self._handshake():
                self._deadline = None
                self.sock.settimeout(None)
                self.server._handshake_done(self)
                self._transmission()
        except _Disconnect:
            pass
        except ProtocolViolation as e:
            log.warning("%s: %s", self._who(), e)
        except (TimeoutError, ConnectionError, ssl.SSLError) as e:
            log.info("%s: connection ended: %s", self._who(), e)
        except OSError as e:
            if not self.closing:
                log.info("%s: connection ended: %s", self._who(), e)
        except Exception:
            log.exception("%s: internal error; closing the connection", self._who())
        finally:
            self._cleanup()

    def cut(self) -> None:
        """Stop reading new requests; run() then finishes what it has read."""
        self.closing = True
        try:
            # Plain socket shutdown on the fd (not SSLSocket.shutdown, which
            # would drop the TLS state the pending replies still need).
            socket.socket.shutdown(self.raw_sock, socket.SHUT_RD)
        except OSError:
            pass

    def _who(self) -> str:
        i = self.initiator
        peer = "unix" if i.unix else (i.address or "?")
        name = f" cert={i.name!r}" if i.name else ""
        export = f" export={self.export_name!r}" if self.export_name is not None else ""
        return f"nbd client {peer}{name}{export}"

    def _refused(self, export: str | None, reason: str) -> None:
        """Tell the administrator, once per connection, who was refused what
        and why; the client is told only what the spec allows."""
        level = logging.DEBUG if self._refusal_logged else logging.WARNING
        self._refusal_logged = True
        what = f"export {export!r}" if export is not None else "the handshake"
        log.log(level, "%s: refused %s: %s", self._who(), what, reason)

    def _cleanup(self) -> None:
        dev, self.device = self.device, None
        if dev is not None:
            try:
                if not dev.read_only:
                    dev.flush()
            except Exception as e:
                log.warning("%s: flush on close failed: %s", self._who(), e)
            try:
                dev.close()
            except Exception as e:
                log.warning("%s: device close failed: %s", self._who(), e)
        try:
            self.sock.close()
        except OSError:
            pass
        self.server._forget(self)

    # ------------------------------------------------------------ raw I/O

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolViolation(
                        detail=f"handshake not finished in {self.server.handshake_timeout:g}s"
                    )
                self.sock.settimeout(left)
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise _Disconnect()
            got += k
        return bytes(buf)

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _sendv(self, bufs: list) -> None:
        """Send a list of byte buffers, with one sendmsg where possible."""
        if self.tls:
            # SSLSocket has no sendmsg; coalesce small replies into one record.
            small = []
            for b in bufs:
                if len(b) < 65536:
                    small.append(b)
                    continue
                if small:
                    self.sock.sendall(b"".join(small))
                    small = []
                self.sock.sendall(b)
            if small:
                self.sock.sendall(b"".join(small))
            return
        sendmsg = self.sock.sendmsg
        while bufs:
            n = sendmsg(bufs[:_IOV_MAX])
            i = 0
            nb = len(bufs)
            while i < nb:
                ln = len(bufs[i])
                if n < ln:
                    break
                n -= ln
                i += 1
            if i == nb:
                return
            bufs = bufs[i:]
            if n:
                bufs[0] = memoryview(bufs[0])[n:]

    # ---------------------------------------------------------- handshake

    def _reply(self, opt: int, rep: int, data: bytes = b"") -> None:
        self._send(wire.option_reply(opt, rep, data))

    def _error(self, opt: int, rep: int, message: str) -> None:
        self._send(wire.option_error(opt, rep, message))

    def _handshake(self) -> bool:
        """Run option haggling; True once an export is open for transmission."""
        self._send(wire.server_greeting())
        (cflags,) = P.CLIENT_FLAGS.unpack(self._recv_exact(4))
        if cflags & ~P.CLIENT_FLAGS_KNOWN:
            raise ProtocolViolation(detail=f"unknown client flags {cflags:#x}")
        fixed = bool(cflags & P.FLAG_C_FIXED_NEWSTYLE)
        self.no_zeroes = bool(cflags & P.FLAG_C_NO_ZEROES)
        server = self.server
        for _ in range(P.MAX_OPTIONS):
            magic, opt, length = P.OPTION_HEADER.unpack(self._recv_exact(16))
            if magic != P.IHAVEOPT:
                raise ProtocolViolation(detail=f"bad option magic {magic:#x}")
            if length > P.MAX_OPTION_LENGTH:
                raise ProtocolViolation(
                    detail=f"option {opt} carries {length} bytes (limit {P.MAX_OPTION_LENGTH})"
                )
            data = self._recv_exact(length) if length else b""
            if opt == P.OPT_EXPORT_NAME:
                return self._opt_export_name(data)
            if not fixed:
                raise ProtocolViolation(detail="option other than EXPORT_NAME without fixed newstyle")
            if opt == P.OPT_ABORT:
                try:
                    self._reply(opt, P.REP_ACK)
                except OSError:
                    pass  # the client may close without waiting for the ACK
                raise _Disconnect()
            if server._shutting_down or self.closing:
                self._error(opt, P.REP_ERR_SHUTDOWN, "server is shutting down")
                continue
            if server.require_tls and not self.tls and opt != P.OPT_STARTTLS:
                self._refused(
                    None, "TLS required (the server runs with --require-tls) and the client did not start it"
                )
                self._error(opt, P.REP_ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS first")
                continue
            if opt in (P.OPT_GO, P.OPT_INFO):
                if self._opt_info(opt, data):
                    return True
            elif opt == P.OPT_LIST:
                self._opt_list(opt, data)
            elif opt == P.OPT_STRUCTURED_REPLY:
                if data:
                    self._error(opt, P.REP_ERR_INVALID, "STRUCTURED_REPLY takes no data")
                else:
                    self.structured = True
                    self._reply(opt, P.REP_ACK)
            elif opt in (P.OPT_LIST_META_CONTEXT, P.OPT_SET_META_CONTEXT):
                self._opt_meta_context(opt, data)
            elif opt == P.OPT_STARTTLS:
                self._opt_starttls(opt, data)
            else:
                self._error(opt, P.REP_ERR_UNSUP, f"option {opt} is not supported")
        raise ProtocolViolation(detail=f"more than {P.MAX_OPTIONS} options in one handshake")

    @staticmethod
    def _decode_name(raw: bytes) -> str | None:
        if len(raw) > P.MAX_STRING or b"\0" in raw:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _open(self, name: str) -> BlockDevice:
        # Remember which revocation of this name (and which access change)
        # we opened after, so one racing with the open is not missed (see
        # _attach).
        self._open_gen = self.server._revocations.get(name, 0)
        self._access_gen = self.server._access_changes
        try:
            return self.server.resolver.open_export(name, self.initiator)
        except CoppiceError as e:
            self._refused(name, getattr(e, "reason", None) or str(e))
            raise

    def _transmission_flags(self, dev: BlockDevice) -> int:
        flags = P.FLAG_HAS_FLAGS | P.FLAG_SEND_FLUSH
        if dev.read_only:
            flags |= P.FLAG_READ_ONLY
        else:
            # FUA is always honoured: passed down, or emulated with a flush.
            # WRITE_ZEROES is emulated with writes where the device cannot.
            flags |= P.FLAG_SEND_FUA | P.FLAG_SEND_WRITE_ZEROES
            if dev.can_trim:
                flags |= P.FLAG_SEND_TRIM
        if self.structured:
            flags |= P.FLAG_SEND_DF  # every read is answered in one chunk
        if dev.can_multi_conn:
            flags |= P.FLAG_CAN_MULTI_CONN
        return flags

    def _opt_export_name(self, data: bytes) -> bool:
        # This option cannot be answered with an error: on any failure the
        # spec says to terminate the session.
        if self.server._shutting_down or self.closing:
            raise _Disconnect()
        name = self._decode_name(data)
        if name is None:
            raise ProtocolViolation(detail="export name is not a valid NBD string")
        if self.server.require_tls and not self.tls:
            self._refused(
                name, "TLS required (the server runs with --require-tls) and the client did not start it"
            )
            raise _Disconnect()
        try:
            dev = self._open(name)
        except CoppiceError as e:
            raise _Disconnect() from e
        self._attach(name, dev)
        self._send(wire.export_name_reply(dev.size, self._transmission_flags(dev), self.no_zeroes))
        return True

    def _attach(self, name: str, dev: BlockDevice) -> None:
        """Make ``dev`` this connection's export; owns ``dev`` from here on."""
        if self.meta_export != name:
            self.meta_base_allocation = False  # contexts were set for another export
        self.export_name = name
        if not self.server._register_export(self):
            # revoked or shut down while we were opening it
            dev.close()
            raise _Disconnect()
        self.device = dev  # from here on recheck() sees this connection
        if self.server._access_changes != self._access_gen:
            # access changed while we were opening it: decide again
            why = self.server._authorize(self, dev)
            if why:
                self._refused(name, why)
                raise _Disconnect()  # _cleanup closes the device

    def _opt_info(self, opt: int, data: bytes) -> bool:
        req = wire.decode_go_request(data, self._decode_name)
        if isinstance(req, str):
            self._error(opt, P.REP_ERR_INVALID, req)
            return False
        name, requests = req
        try:
            dev = self._open(name)
        except NotFound:
            self._error(opt, P.REP_ERR_UNKNOWN, f"export {name!r} not found")
            return False
        except CoppiceError as e:
            self._error(opt, P.REP_ERR_POLICY, f"export {name!r} refused: {e}")
            return False
        except Exception:
            log.exception("%s: opening export %r failed", self._who(), name)
            self._error(opt, P.REP_ERR_UNKNOWN, f"export {name!r} could not be opened")
            return False
        try:
            desc = self._description(name, dev) if P.INFO_DESCRIPTION in requests else None
            out = wire.info_replies(
                opt, name, dev.size, self._transmission_flags(dev), dev.block_size, requests, desc
            )
            if opt == P.OPT_GO:
                attached, dev = dev, None
                self._attach(name, attached)
            self._send(out)
            return opt == P.OPT_GO
        finally:
            if dev is not None:
                dev.close()

    def _description(self, name: str, dev: BlockDevice) -> str | None:
        desc = getattr(dev, "description", None)
        if desc:
            return str(desc)
        try:
            for n, d in self.server.resolver.list_exports(self.initiator):
                if n == name:
                    return d
        except Exception:
            return None
        return None

    def _opt_list(self, opt: int, data: bytes) -> None:
        if data:
            self._error(opt, P.REP_ERR_INVALID, "LIST takes no data")
            return
        out = [wire.list_entry(opt, n, d) for n, d in self.server.resolver.list_exports(self.initiator)]
        out.append(wire.option_reply(opt, P.REP_ACK))
        self._send(b"".join(out))

    def _opt_meta_context(self, opt: int, data: bytes) -> None:
        listing = opt == P.OPT_LIST_META_CONTEXT
        if not listing:
            # SET replaces the previous selection even when it fails.
            self.meta_export = None
            self.meta_base_allocation = False
        if not self.structured:
            self._error(opt, P.REP_ERR_INVALID, "negotiate NBD_OPT_STRUCTURED_REPLY before meta contexts")
            return
        try:
            name, queries = wire.decode_meta_context_request(data, self._decode_name)
        except (struct.error, ValueError):
            self._error(opt, P.REP_ERR_INVALID, "meta context option data is malformed")
            return
        try:
            self._open(name).close()
        except CoppiceError:
            self._error(opt, P.REP_ERR_UNKNOWN, f"export {name!r} not found")
            return
        selected = False
        if listing and not queries:
            selected = True
        for q in queries:
            if q == P.META_BASE_ALLOCATION or (listing and q == "base:"):
                selected = True
        out = b""
        if selected:
            ctx_id = P.META_BASE_ALLOCATION_ID if not listing else 0
            out += wire.meta_context_reply(opt, ctx_id, P.META_BASE_ALLOCATION)
        out += wire.option_reply(opt, P.REP_ACK)
        if not listing:
            self.meta_export = name
            self.meta_base_allocation = selected
        self._send(out)

    def _opt_starttls(self, opt: int, data: bytes) -> None:
        ctx = self.server.tls_context
        if ctx is None:
            self._error(opt, P.REP_ERR_POLICY, "TLS is not configured on this server")
            return
        if self.tls:
            self._error(opt, P.REP_ERR_INVALID, "TLS is already active")
            return
        if data:
            self._error(opt, P.REP_ERR_INVALID, "STARTTLS takes no data")
            return
        self._reply(opt, P.REP_ACK)
        try:
            tls_sock = ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            # Too late to go on in clear text: the ACK is sent.
            log.warning("%s: TLS handshake failed: %s", self._who(), e)
            raise _Disconnect() from e
        self.sock = self.raw_sock = tls_sock
        self.tls = True
        name = _cert_name(tls_sock.getpeercert())
        i = self.initiator
        self.initiator = Initiator(name=name, address=i.address, unix=i.unix, tls=True)
        if name is None and self.server.require_client_cert:
            # The TLS layer could refuse this itself, but then the log would
            # say only "handshake failed"; the administrator needs the why.
            self._refused(
                None,
                "TLS client certificate required (--require-tls; serve with "
                "--tls-client-cert-optional to accept TLS clients without one)",
            )
            raise _Disconnect()
        # Nothing negotiated in clear text survives the upgrade.
        self.structured = False
        self.meta_export = None
        self.meta_base_allocation = False

    # ------------------------------------------------------- transmission

    def _transmission(self) -> None:
        """Serve requests until DISC, EOF, a cut or a protocol violation.

        Requests are read in batches (one ``recv_into`` takes every request
        already queued) and each is answered by its command's handler into
        one ``Replies`` batch. Without a reply sender the batch goes out in
        one ``sendmsg`` before the next read (or earlier, once large); with
        one (a device with ``start_read``), READs are handed to the device
        and every reply goes through the sender, which sends in completion
        order. Either way, what was read is answered before this returns."""
        x = Export(self.device, self._who(), self.structured, self.structured and self.meta_base_allocation)
        start_read = getattr(self.device, "start_read", None)
        # TLS: an SSL object must not be read and written from two threads
        # at once, so a TLS connection keeps the one-thread path.
        if start_read is not None and not self.tls:
            self._sender = _ReplySender(self, _MAX_INFLIGHT_BYTES)
            x.read_async = self._async_reader(x, start_read, self._sender)
        try:
            self._serve_requests(x)
        finally:
            sender, self._sender = self._sender, None
            if sender is not None:
                sender.close()  # every read in flight answered (or dropped with the peer)

    def _async_reader(self, x: Export, start_read, sender: _ReplySender):
        structured = self.structured

        def read_async(handle: int, offset: int, length: int) -> None:
            cost = length + _REPLY_OVERHEAD
            sender.reserve(cost)

            def done(data, exc) -> None:
                out = Replies(structured)
                read_done(x, out, handle, offset, length, data, exc)
                sender.complete(out.take(), cost)

            try:
                start_read(offset, length, done)
            except Exception as e:
                done(None, e)

        return read_async

    def _serve_requests(self, x: Export) -> None:
        handlers = HANDLERS
        replies = Replies(self.structured)
        server = self.server
        buf = bytearray(_RECV_BUFFER)
        view = memoryview(buf)
        start = end = 0
        # Plain WRITEs whose payload is in ``buf``, not yet given to the
        # device: consecutive ones go in one ``write_batch`` call. They are
        # handed over before any other request is served (order is kept)
        # and before ``buf`` is read into again (their payloads live there).
        batch: list = []
        batching = x.batch_writes

        def hand_over() -> None:
            if batch:
                write_batch(x, replies, batch)
                batch.clear()

        while True:
            while end - start >= REQUEST_SIZE:
                try:
                    flags, cmd, handle, offset, length = decode_request(buf, start)
                except BadRequestMagic as e:
                    hand_over()
                    self._flush_replies(replies)  # the requests before it are answered
                    raise ProtocolViolation(detail=str(e)) from None
                if (
                    batching
                    and cmd == P.CMD_WRITE
                    and not flags
                    and length <= P.MAX_REQUEST_PAYLOAD
                    and end - start - REQUEST_SIZE >= length
                ):
                    start += REQUEST_SIZE
                    batch.append((handle, offset, length, view[start : start + length]))
                    start += length
                    if len(batch) >= _WRITE_BATCH:
                        hand_over()
                    continue
                hand_over()
                start += REQUEST_SIZE
                payload = None
                if cmd == P.CMD_WRITE:
                    if length > P.MAX_REQUEST_PAYLOAD:
                        self._flush_replies(replies)
                        raise ProtocolViolation(
                            detail=f"WRITE of {length} bytes exceeds the {P.MAX_REQUEST_PAYLOAD}-byte maximum"
                        )
                    if end - start >= length:
                        payload = view[start : start + length]
                        start += length
                    else:
                        payload = self._recv_payload(view[start:end], length, replies)
                        start = end = 0
                elif cmd == P.CMD_DISC:
                    self._emit(replies)
                    raise _Disconnect()
                handler = handlers.get(cmd)
                if handler is None:
                    unknown(x, replies, cmd, handle)
                else:
                    handler(x, replies, flags, handle, offset, length, payload)
                del payload
                if replies.nbytes >= _SEND_BATCH_BYTES:
                    self._emit(replies)
            hand_over()
            if self.closing or server._shutting_down:
                self._emit(replies)
                return
            if start == end:
                start = end = 0
            elif start:
                n = end - start
                buf[:n] = buf[start:end]
                start, end = 0, n
            k = self._recv_more(view[end:], replies)
            if k == 0:
                if end != start:
                    log.info("%s: closed mid-request", self._who())
                raise _Disconnect()
            if self.closing:
                # Cut while we waited: what arrives now came after the
                # revocation and is not served.
                self._flush_replies(replies)
                raise _Disconnect()
            end += k

    def _emit(self, replies: Replies) -> None:
        """Hand the queued replies to the socket (or to the reply sender)."""
        if not replies:
            return
        sender = self._sender
        if sender is None:
            self._sendv(replies.take())
        else:
            n = replies.nbytes
            sender.push(replies.take(), n)

    def _recv_more(self, mv, replies: Replies) -> int:
        """recv_into ``mv``; replies still queued go out first if, and only
        if, the read would block: a client with requests in flight gets
        one reply batch for all of them instead of one send each, and a
        client waiting for replies before it sends more is never stalled.
        With a reply sender they are handed over at once (sending does not
        hold this thread), and this waits while the connection is over its
        bound of unsent bytes, so a client that does not read its replies
        is not read from either."""
        sender = self._sender
        if sender is not None:
            self._emit(replies)
            sender.wait_room()
            return self.sock.recv_into(mv)
        if replies:
            if not self.tls:  # SSLSocket takes no recv flags
                try:
                    k = self.sock.recv_into(mv, 0, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    k = 0
                if k:
                    return k
            self._sendv(replies.take())  # before blocking, and before an EOF ends us
        return self.sock.recv_into(mv)

    def _recv_payload(self, have, length: int, replies: Replies) -> memoryview:
        """A WRITE payload still arriving: ``have`` is its start, already
        read; the rest goes straight into its own buffer, not through the
        request buffer (devices copy what they keep: see ``BlockDevice``)."""
        if self._payload_buf is None or len(self._payload_buf) < length:
            self._payload_buf = memoryview(bytearray(max(length, 1 << 20)))
        pv = self._payload_buf
        got = len(have)
        pv[:got] = have
        while got < length:
            k = self._recv_more(pv[got:length], replies)
            if k == 0 or self.closing:
                self._flush_replies(replies)
                raise _Disconnect()
            got += k
        return pv[:length]

    def _flush_replies(self, replies: Replies) -> None:
        try:
            self._emit(replies)
        except OSError:
            pass


class _ReplySender:
    """The one thread that writes a connection's replies, when its device
    completes reads asynchronously.

    The reader thread ``push``es the replies it made itself; a READ's
    completion (on the device's thread) ``complete``s the reply whose room
    the reader ``reserve``d before starting it. Replies are sent whole and
    in the order they were queued, never interleaved. ``pending`` counts
    bytes reserved or queued and not yet sent: ``reserve`` and
    ``wait_room`` hold the reader while it is over ``limit`` (one request
    may always go when nothing is pending). After a failed send the rest is
    dropped (the peer is gone; the reader sees it next). ``close`` waits
    until everything reserved is sent or dropped, then ends the thread."""

    def __init__(self, conn: _Connection, limit: int):
        self.conn = conn
        self.limit = limit
        self.cond = threading.Condition(threading.Lock())
        self.queue: list[tuple[list, int]] = []
        self.pending = 0
        self.closed = False
        self.failed: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="nbd-send", daemon=True)
        self.thread.start()

    def reserve(self, n: int) -> None:
        with self.cond:
            while self.pending and self.pending + n > self.limit:
                self.cond.wait()
            self.pending += n

    def wait_room(self) -> None:
        with self.cond:
            while self.pending > self.limit:
                self.cond.wait()

    def push(self, bufs: list, n: int) -> None:
        with self.cond:
            self.pending += n
            self.queue.append((bufs, n))
            self.cond.notify_all()

    def complete(self, bufs: list, reserved: int) -> None:
        with self.cond:
            self.queue.append((bufs, reserved))
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            while self.pending:
                self.cond.wait()
            self.closed = True
            self.cond.notify_all()
        self.thread.join()

    def _run(self) -> None:
        cond = self.cond
        while True:
            with cond:
                while not self.queue:
                    if self.closed:
                        return
                    cond.wait()
                batch, self.queue = self.queue, []
            bufs: list = []
            n = 0
            for b, k in batch:
                bufs.extend(b)
                n += k
            if self.failed is None:
                try:
                    self.conn._sendv(bufs)
                except Exception as e:  # this thread must outlive any failure, or close() waits forever
                    self.failed = e
                    log.info("%s: sending replies failed: %s", self.conn._who(), e)
            del bufs, batch
            with cond:
                self.pending -= n
                cond.notify_all()


class NBDServer:
    """An NBD server over a resolver's exports; see the module docstring.

    ``port=None`` serves no TCP (Unix socket only); ``port=0`` picks a free
    port (see ``address``); host ``::`` serves IPv6 and IPv4 (dual stack).
    The Unix socket is created mode 0600 whatever the umask: its peer is
    root's and sees every LUN. ``tls_context`` is a server
    ``ssl.SSLContext`` (``coppice.nbd.tls.server_context``); it enables
    STARTTLS, ``require_tls`` makes it mandatory, and then a client
    certificate too unless ``require_client_cert=False``.

    Admission: a peer that has not finished its handshake within
    ``handshake_timeout`` seconds is dropped, and one address may hold at
    most ``max_handshakes_per_address`` unfinished handshakes, so a peer
    flooding the port cannot lock out the initiators of other addresses;
    ``max_connections`` bounds everything.
    """

    def __init__(
        self,
        resolver: ExportResolver,
        host: str = "127.0.0.1",
        port: int | None = 10809,
        unix_path: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_tls: bool = False,
        handshake_timeout: float = 10.0,
        max_connections: int = 1024,
        max_handshakes_per_address: int = 16,
        require_client_cert: bool | None = None,
    ):
        if require_tls and tls_context is None:
            raise NBDServerError(
                detail="require_tls needs a tls_context (build one with "
                "coppice.nbd.tls.server_context(tls_dir))"
            )
        if port is None and unix_path is None:
            raise NBDServerError(detail="nothing to listen on: give a port or a unix_path")
        self.resolver = resolver
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.tls_context = tls_context
        self.require_tls = require_tls
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.max_handshakes_per_address = max_handshakes_per_address
        self.require_client_cert = require_tls if require_client_cert is None else require_client_cert
        self._handshakes: dict[str, int] = {}  # address -> unfinished handshakes
        self._limit_logged: dict[str, float] = {}  # address -> when we last said so
        self._access_changes = 0  # recheck() count
        self._listeners: list[tuple[socket.socket, bool]] = []
        self._lock = threading.RLock()  # shutdown() may run in a signal handler
        self._conns: set[_Connection] = set()
        self._revocations: dict[str, int] = {}  # export name -> revoke() count
        self._shutting_down = False
        self._stopped = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._wake_fds: tuple[int, ...] = (self._wake_r, self._wake_w)
        self._listening = False
        on_revoke = getattr(resolver, "on_revoke", None)
        if on_revoke is not None:
            # The filer calls back inside its commit, holding its lock, which
            # a connection's next write may be waiting for: cut, never wait.
            if getattr(resolver, "authorize", None) is not None:
                on_revoke(lambda name: self.revoke(name, wait=False), recheck=self.recheck)
            else:
                on_revoke(self.revoke)

    # ------------------------------------------------------------ listen

    def _bind(self) -> None:
        if self._listeners:
            return
        try:
            if self.port is not None:
                host = (self.host or "").strip("[]")
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                # "::" means every address: IPv4 too (IPV6_V6ONLY=0), so guests
                # told 127.0.0.1 reach a server started with --nbd [::]:PORT.
                dual = host == "::" and socket.has_dualstack_ipv6()
                tcp = socket.create_server(
                    (host, self.port), family=family, backlog=128, reuse_port=False, dualstack_ipv6=dual
                )
                self._listeners.append((tcp, False))
            if self.unix_path is not None:
                self._listeners.append((_private_unix_listener(self.unix_path), True))
        except OSError as e:
            for s, _ in self._listeners:
                s.close()
            self._listeners = []
            raise NBDServerError(
                detail=f"cannot listen on {self.host}:{self.port} / {self.unix_path}: {e} "
                "(is another server using it?)"
            ) from e

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) the TCP listener is bound to, once started."""
        for s, unix in self._listeners:
            if not unix:
                return s.getsockname()[:2]
        return None

    def start(self) -> NBDServer:
        """Bind and serve in a background thread; returns at once."""
        self._bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="nbd-accept", daemon=True)
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve in this thread until ``shutdown()``."""
        self._bind()
        self._accept_loop()

    def _accept_loop(self) -> None:
        self._listening = True
        sel = selectors.DefaultSelector()
        try:
            for s, unix in self._listeners:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, unix)
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            while not self._shutting_down:
                for key, _ in sel.select():
                    if key.data is None:
                        continue
                    try:
                        conn, _addr = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        if self._shutting_down:
                            break
                        log.warning("nbd: accept failed: %s", e)
                        continue
                    self._spawn(conn, key.data)
        finally:
            sel.close()
            self._stopped.set()
            if self._shutting_down:
                self._close_wake()

    def _spawn(self, sock: socket.socket, unix: bool) -> None:
        sock.setblocking(True)
        if not unix:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = _Connection(self, sock, unix)
        addr = c.initiator.address
        with self._lock:
            why = None
            if self._shutting_down:
                why = "shutting down"
            elif len(self._conns) >= self.max_connections:
                why = f"{self.max_connections} connections already open"
            elif addr is not None and self._handshakes.get(addr, 0) >= self.max_handshakes_per_address:
                why = (
                    f"{addr} already has {self.max_handshakes_per_address} unfinished handshakes "
                    "(each is dropped after "
                    f"{self.handshake_timeout:g}s)"
                )
            if why is None:
                self._conns.add(c)
                if addr is not None:
                    self._handshakes[addr] = self._handshakes.get(addr, 0) + 1
        if why is not None:
            self._log_limit(addr, why)
            sock.close()
            return
        c.thread = threading.Thread(target=c.run, name="nbd-conn", daemon=True)
        c.thread.start()

    def _log_limit(self, addr: str | None, why: str) -> None:
        # A flood would otherwise write one line per refused connection.
        now = time.monotonic()
        key = addr or "?"
        if now - self._limit_logged.get(key, -60.0) >= 10.0:
            self._limit_logged[key] = now
            log.warning("nbd: refusing a connection from %s: %s", key, why)

    def _handshake_done(self, c: _Connection) -> None:
        with self._lock:
            self._handshake_finished(c)

    def _handshake_finished(self, c: _Connection) -> None:
        if not c.handshaking:
            return
        c.handshaking = False
        addr = c.initiator.address
        if addr is not None:
            n = self._handshakes.get(addr, 0) - 1
            if n > 0:
                self._handshakes[addr] = n
            else:
                self._handshakes.pop(addr, None)

    def _forget(self, c: _Connection) -> None:
        with self._lock:
            self._handshake_finished(c)
            self._conns.discard(c)

    def _register_export(self, c: _Connection) -> bool:
        # Under the lock so a revoke() racing with GO either sees this
        # connection or is seen by it.
        with self._lock:
            return not (
                self._shutting_down or c.closing or self._revocations.get(c.export_name, 0) != c._open_gen
            )

    # ------------------------------------------------------------ control

    def connections(self) -> list[dict]:
        """What is connected, for status pages and tests."""
        with self._lock:
            return [
                {
                    "export": c.export_name,
                    "initiator": c.initiator,
                    "address": c.initiator.address,
                    "name": c.initiator.name,
                    "unix": c.initiator.unix,
                    "tls": c.tls,
                    "handshaking": c.handshaking,
                    "since": c.since,
                }
                for c in self._conns
            ]

    def _authorize(self, c: _Connection, dev: BlockDevice) -> str | None:
        authorize = getattr(self.resolver, "authorize", None)
        if authorize is None or c.export_name is None:
            return None
        try:
            return authorize(c.export_name, c.initiator, dev)
        except Exception as e:  # fail closed
            log.exception("%s: re-checking access failed", c._who())
            return f"re-checking access failed: {e}"

    def _cut_and_wait(self, victims: list[_Connection], wait: bool) -> None:
        for c in victims:
            c.cut()
        if not wait:
            return
        for c in victims:
            if c.thread is not None and c.thread is not threading.current_thread():
                c.thread.join(timeout=10)

    def revoke(self, export_name: str, wait: bool = True) -> int:
        """Cut every connection to ``export_name`` cleanly (their read
        requests are answered, the device flushed and closed), then re-check
        every other connection (the export may have been what authorized a
        snapshot export); returns how many were cut. With ``wait`` (not from
        inside a filer commit) it returns once they are closed. New opens
        are the resolver's to refuse."""
        with self._lock:
            self._revocations[export_name] = self._revocations.get(export_name, 0) + 1
            victims = [c for c in self._conns if c.export_name == export_name]
            for c in victims:
                c.cut()
        self._cut_and_wait(victims, wait)
        if victims:
            log.info("nbd: revoked %d connection(s) to %r", len(victims), export_name)
        return len(victims) + self.recheck(export_name, wait)

    def recheck(self, export_name: str | None = None, wait: bool = False) -> int:
        """Who may open what changed (``export_name`` says where, for the
        log): ask the resolver again for every open connection and cut
        exactly those it now refuses (they finish what they have read, then
        close; ``wait`` returns only then). Returns how many were cut."""
        with self._lock:
            self._access_changes += 1
            conns = [c for c in self._conns if c.device is not None and not c.closing]
        victims = []
        for c in conns:
            dev = c.device
            if dev is None:
                continue
            why = self._authorize(c, dev)
            if why:
                log.warning("%s: access withdrawn (%s); closing the connection", c._who(), why)
                victims.append(c)
        self._cut_and_wait(victims, wait)
        return len(victims)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop accepting, let every connection finish what it has read,
        flush and close every open device, then return."""
        with self._lock:
            if self._shutting_down and not self._listeners:
                return
            self._shutting_down = True
            conns = list(self._conns)
            for c in conns:
                c.cut()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=timeout)
        for s, _unix in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        if self.unix_path and any(unix for _, unix in self._listeners):
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
        self._listeners = []
        for c in conns:
            if c.thread is not None:
                c.thread.join(timeout=timeout)
                if c.thread.is_alive():
                    log.error("nbd: connection %s did not finish within %ss", c._who(), timeout)
        if self._stopped.is_set() or self._accept_thread is None and not self._listening:
            self._close_wake()
        # else: shutdown() ran inside serve_forever's thread (a signal
        # handler); the accept loop closes the pipe when it sees the flag.

    def _close_wake(self) -> None:
        with self._lock:
            fds, self._wake_fds = self._wake_fds, ()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> NBDServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()
