"""A deliberately minimal NBD client speaking raw bytes, for tests that must
send what real clients never would (bad magics, huge lengths, truncation)."""

from __future__ import annotations

import socket
import struct

from coppice.nbd import protocol as P


class RawClient:
    def __init__(
        self,
        port: int | None = None,
        unix_path: str | None = None,
        timeout: float = 10,
        source: str | None = None,
        host: str = "127.0.0.1",
    ):
        """``source`` binds the client's address (any of 127.0.0.0/8 works
        on Linux), so one test can play several hosts."""
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection(
                (host, port), timeout=timeout, source_address=(source, 0) if source else None
            )
        self.handle = 0

    def close(self):
        self.sock.close()

    def recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError(f"server closed after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    # handshake ------------------------------------------------------------

    def greeting(self, cflags: int = P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES) -> int:
        magic, ihaveopt, hflags = P.SERVER_GREETING.unpack(self.recv_exact(18))
        assert (magic, ihaveopt) == (P.NBDMAGIC, P.IHAVEOPT)
        self.sock.sendall(P.CLIENT_FLAGS.pack(cflags))
        return hflags

    def option(self, opt: int, data: bytes = b"", magic: int = P.IHAVEOPT, length: int | None = None):
        self.sock.sendall(P.OPTION_HEADER.pack(magic, opt, len(data) if length is None else length) + data)

    def reply(self) -> tuple[int, int, bytes]:
        magic, opt, rep, length = P.OPTION_REPLY.unpack(self.recv_exact(20))
        assert magic == P.OPT_REPLY_MAGIC
        return opt, rep, self.recv_exact(length)

    def replies_until_final(self) -> list[tuple[int, int, bytes]]:
        out = []
        while True:
            r = self.reply()
            out.append(r)
            if r[1] not in (P.REP_SERVER, P.REP_INFO, P.REP_META_CONTEXT):
                return out

    def go(self, name: str = "disk", structured: bool = False, meta: bool = False) -> tuple[int, int]:
        """Negotiate and enter transmission; returns (size, transmission flags)."""
        if structured:
            self.option(P.OPT_STRUCTURED_REPLY)
            assert self.reply()[1] == P.REP_ACK
        if meta:
            n = name.encode()
            q = P.META_BASE_ALLOCATION.encode()
            self.option(
                P.OPT_SET_META_CONTEXT, struct.pack(">I", len(n)) + n + struct.pack(">II", 1, len(q)) + q
            )
            reps = self.replies_until_final()
            assert reps[-1][1] == P.REP_ACK, reps
        n = name.encode()
        self.option(P.OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        size = flags = None
        for _opt, rep, data in self.replies_until_final():
            if rep == P.REP_INFO and struct.unpack_from(">H", data)[0] == P.INFO_EXPORT:
                _, size, flags = P.INFO_EXPORT_STRUCT.unpack(data)
            elif rep != P.REP_INFO and rep != P.REP_ACK:
                raise AssertionError(f"GO failed with reply {rep:#x}: {data!r}")
        return size, flags

    # transmission ---------------------------------------------------------

    def request(
        self,
        cmd: int,
        offset: int = 0,
        length: int = 0,
        flags: int = 0,
        data: bytes = b"",
        magic: int = P.REQUEST_MAGIC,
    ) -> int:
        self.handle += 1
        self.sock.sendall(P.REQUEST.pack(magic, flags, cmd, self.handle, offset, length) + data)
        return self.handle

    def simple_reply(self, payload: int = 0) -> tuple[int, int, bytes]:
        magic, err, handle = P.SIMPLE_REPLY.unpack(self.recv_exact(16))
        assert magic == P.SIMPLE_REPLY_MAGIC, hex(magic)
        return err, handle, (self.recv_exact(payload) if payload and not err else b"")

    def any_reply(self) -> tuple[int, int, int, int, bytes]:
        """(magic, flags/err, type, handle, payload) of a simple or structured reply
        (simple replies carry no payload here)."""
        head = self.recv_exact(4)
        (magic,) = struct.unpack(">I", head)
        if magic == P.SIMPLE_REPLY_MAGIC:
            err, handle = struct.unpack(">IQ", self.recv_exact(12))
            return magic, err, -1, handle, b""
        assert magic == P.STRUCTURED_REPLY_MAGIC, hex(magic)
        flags, typ, handle, length = struct.unpack(">HHQI", self.recv_exact(16))
        return magic, flags, typ, handle, self.recv_exact(length)

    # conveniences for access tests -----------------------------------------

    def try_go(self, name: str) -> int:
        """Send GO for ``name``; the final reply type (REP_ACK if it opened)."""
        n = name.encode()
        self.option(P.OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        return self.replies_until_final()[-1][1]

    def list_exports(self) -> list[str]:
        self.option(P.OPT_LIST)
        out = []
        for _opt, rep, data in self.replies_until_final():
            if rep == P.REP_SERVER:
                (n,) = struct.unpack_from(">I", data)
                out.append(data[4 : 4 + n].decode())
        return out

    def read(self, offset: int, length: int) -> bytes:
        """A READ in transmission (simple replies); raises on an error reply."""
        h = self.request(P.CMD_READ, offset, length)
        err, handle, data = self.simple_reply(length)
        assert handle == h
        if err:
            raise OSError(err, f"READ failed with NBD error {err}")
        return data


def open_export(port: int, name: str, source: str | None = None, unix_path: str | None = None) -> RawClient:
    """A client in transmission on ``name``, from address ``source``."""
    c = RawClient(port, unix_path=unix_path, source=source)
    c.greeting()
    rep = c.try_go(name)
    assert rep == P.REP_ACK, f"GO {name} from {source or 'unix'} refused ({rep:#x})"
    return c
