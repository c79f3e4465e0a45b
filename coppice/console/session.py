"""Console sessions: a cookie made from the daemon's token, and CSRF protection.

Contract: ``Sessions`` keeps sessions in the daemon's memory (a restart
signs everyone out, which is what a changed daemon should do): ``create()``
returns a new session ``{id, csrf, created, seen}`` with 256 random bits in
each of ``id`` and ``csrf``; ``get(id)`` the live one or ``None`` (expired
after ``IDLE`` seconds without a request or ``LIFETIME`` after sign-in);
``drop(id)``. At most ``MAX_SESSIONS`` live at once; the oldest goes first.

``SessionAuth`` is the ASGI middleware in front of the API. For a TCP
request without an ``Authorization`` header but with a valid ``COOKIE``:

* a safe request (GET, HEAD, OPTIONS) goes on as if it carried the
  daemon's bearer token (``scope["coppice.session"]`` names the session);
* a state-changing one must carry ``X-CSRF-Token`` equal to the session's
  CSRF token (a cross-site page cannot read it: it is only in the console's
  own HTML) and, if the browser sent ``Origin``, that origin must be the
  API's own (``Host``). Otherwise the answer is 403 ``CsrfRefused`` and the
  request never reaches a route.

A request with an unknown or expired cookie goes on unauthenticated, so
the API answers 401 as for any caller without a token. Requests over the
Unix socket and requests with their own ``Authorization`` are untouched.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from http.cookies import SimpleCookie

from ..errors import CoppiceError, Unauthorized

COOKIE = "coppice_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = 12 * 3600.0
IDLE = 2 * 3600.0
MAX_SESSIONS = 256
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CsrfRefused(Unauthorized):
    """Refused: {why}. The console sends its CSRF token with every change; reload the
    page (or sign in again) and retry. Scripts should use `Authorization: Bearer TOKEN`."""

    http_status = 403


class SignInRefused(Unauthorized):
    """Wrong token: the console's sign-in takes the daemon's API token, the content of
    {path} on the daemon's host."""

    http_status = 401


class Sessions:
    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[str, dict] = {}

    def create(self) -> dict:
        now = self._clock()
        s = {"id": secrets.token_urlsafe(32), "csrf": secrets.token_urlsafe(32), "created": now, "seen": now}
        with self._lock:
            self._expire(now)
            while len(self._live) >= MAX_SESSIONS:
                oldest = min(self._live.values(), key=lambda x: x["created"])
                del self._live[oldest["id"]]
            self._live[s["id"]] = s
        return dict(s)

    def get(self, sid: str | None) -> dict | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            s = self._live.get(sid)
            if s is None:
                return None
            if now - s["created"] > LIFETIME or now - s["seen"] > IDLE:
                del self._live[sid]
                return None
            s["seen"] = now
            return dict(s)

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._live.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [
            k for k, s in self._live.items() if now - s["created"] > LIFETIME or now - s["seen"] > IDLE
        ]:
            del self._live[sid]


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    for k, v in headers:
        if k == b"cookie":
            c = SimpleCookie()
            try:
                c.load(v.decode("latin-1"))
            except Exception:
                continue
            if COOKIE in c:
                return c[COOKIE].value
    return None


def _header(headers, name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def same_origin(scope, origin: str) -> bool:
    host = _header(scope["headers"], b"host")
    scheme = scope.get("scheme", "http")
    return bool(host) and origin == f"{scheme}://{host}"


class SessionAuth:
    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("coppice.unix"):
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        if any(k == b"authorization" for k, _ in headers):
            return await self.app(scope, receive, send)
        session = self.state.console_sessions.get(cookie_value(headers))
        if session is None:
            return await self.app(scope, receive, send)
        if scope["method"] not in SAFE_METHODS:
            why = None
            given = _header(headers, CSRF_HEADER.encode()) or ""
            origin = _header(headers, b"origin")
            if not hmac.compare_digest(given.encode(), session["csrf"].encode()):
                why = "this change came without the session's CSRF token (X-CSRF-Token)"
            elif origin is not None and not same_origin(scope, origin):
                why = f"this change came from another site ({origin})"
            if why is not None:
                return await _refuse(send, CsrfRefused(why=why))
        scope = dict(scope)
        scope["coppice.session"] = session
        token = getattr(self.state, "token", None)
        if token is not None:
            scope["headers"] = [*headers, (b"authorization", f"Bearer {token}".encode())]
        return await self.app(scope, receive, send)


async def _refuse(send, exc: CoppiceError) -> None:
    from ..api.errors import error_body

    body = json.dumps(error_body(exc)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
