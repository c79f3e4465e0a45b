"""The console's pages: sign-in, the single-page console, its static files.

Contract: ``GET /`` answers the sign-in form to a caller without a session
and the console (with the session's CSRF token in a ``<meta>``) to one
with it; ``POST /console/session`` takes a form field ``token`` and, if it
is the daemon's token, sets the session cookie (HttpOnly, SameSite=Strict,
Secure when the request came over HTTPS) and redirects to ``/``; a wrong
token answers 401 with the form and the reason, and makes no session.
``DELETE /console/session`` signs out. ``GET /console/static/NAME`` serves
the files shipped in ``coppice/console/static`` (a fixed list read at
import, so no path reaches outside it); all but ``PUBLIC`` need a session.
Every page carries a Content-Security-Policy allowing only this origin's
own scripts and styles, and refuses to be framed.
"""

from __future__ import annotations

import hmac
import html
import os
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..api.errors import Unauthorized, error_body
from . import STATIC_DIR
from .session import COOKIE, SignInRefused, same_origin

router = APIRouter(include_in_schema=False)

STATIC = {n for n in os.listdir(STATIC_DIR) if not n.startswith(".") and not n.endswith(".html")}
PUBLIC = {"console.css", "favicon.svg"}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FORM = 4096


def _template(name: str) -> str:
    with open(os.path.join(STATIC_DIR, name), encoding="utf-8") as f:
        return f.read()


def _session(request: Request):
    return request.scope.get("coppice.session")


def _login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    text = _template("login.html").replace(
        "{{error}}", f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    )
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


@router.get("/")
def index(request: Request):
    s = _session(request)
    if s is None:
        return _login_page(request)
    text = _template("console.html").replace("{{csrf}}", html.escape(s["csrf"], quote=True))
    return HTMLResponse(text, headers=SECURITY_HEADERS)


@router.post("/console/session")
async def sign_in(request: Request):
    state = request.app.state
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and not same_origin(request.scope, origin):
        return _login_page(request, f"Refused: the sign-in came from another site ({origin}).", 403)
    body = await request.body()
    if len(body) > MAX_FORM:
        return _login_page(request, "Refused: the sign-in form is too large.", 413)
    fields = parse_qs(body.decode("utf-8", "replace"))
    given = (fields.get("token") or [""])[0].strip()
    expected = getattr(state, "token", None)
    if expected is None or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(request, str(SignInRefused(path=state.token_path)), 401)
    s = state.console_sessions.create()
    r = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    r.set_cookie(
        COOKIE,
        s["id"],
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return r


@router.delete("/console/session")
def sign_out(request: Request):
    s = _session(request)
    if s is None:
        return JSONResponse(error_body(Unauthorized(path=request.app.state.token_path)), status_code=401)
    request.app.state.console_sessions.drop(s["id"])
    r = Response(status_code=204, headers=SECURITY_HEADERS)
    r.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return r


@router.get("/console/static/{name}")
def static(request: Request, name: str):
    if name not in STATIC:
        return JSONResponse(
            {"error": "NoSuchEndpoint", "message": f"No console file {name}.", "status": 404, "exit_code": 1},
            status_code=404,
        )
    if name not in PUBLIC and _session(request) is None:
        return JSONResponse(error_body(Unauthorized(path=request.app.state.token_path)), status_code=401)
    with open(os.path.join(STATIC_DIR, name), "rb") as f:
        data = f.read()
    ext = os.path.splitext(name)[1]
    return Response(data, media_type=TYPES.get(ext, "application/octet-stream"), headers=SECURITY_HEADERS)
