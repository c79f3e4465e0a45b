"""The API's bearer token: created once, required on TCP, not on the Unix socket.

Contract: ``ensure_token(pool_dir)`` returns the token stored in
``POOL/api.token`` (mode 0600, created with 256 random bits at the first
start; an existing file is reused so clients keep working across
restarts). ``require_token`` is a FastAPI dependency: a request that came
over the pool's Unix socket (the ASGI scope carries ``coppice.unix``,
set by the daemon's socket wrapper) passes, since only the socket's owner
can connect (mode 0600); any other request needs ``Authorization: Bearer
TOKEN`` and is refused with 401 otherwise. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets

from fastapi import Request

from .errors import Unauthorized

TOKEN_FILE = "api.token"


def token_path(pool_dir: str) -> str:
    return os.path.join(pool_dir, TOKEN_FILE)


def ensure_token(pool_dir: str) -> str:
    path = token_path(pool_dir)
    try:
        with open(path) as f:
            tok = f.read().strip()
        if tok:
            os.chmod(path, 0o600)
            return tok
    except FileNotFoundError:
        pass
    tok = secrets.token_urlsafe(32)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (tok + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return tok


def read_token(pool_dir: str) -> str | None:
    try:
        with open(token_path(pool_dir)) as f:
            return f.read().strip() or None
    except OSError:
        return None


class UnixMarker:
    """ASGI wrapper for the Unix-socket server: marks its requests as local."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["coppice.unix"] = True
        await self.app(scope, receive, send)


def require_token(request: Request) -> None:
    if request.scope.get("coppice.unix"):
        return
    state = request.app.state
    expected = getattr(state, "token", None)
    if expected is None:  # an app built without auth (in-process tests)
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized(path=getattr(state, "token_path", TOKEN_FILE))
