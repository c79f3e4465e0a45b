"""The web console: the page an administrator opens first, served by `coppice serve` at ``/``.

Contract: ``install(app)`` (called by ``coppice.api.app.create_app``) adds
to the API app

* the pages: ``GET /`` (the sign-in form without a session, the console
  with one), ``POST /console/session`` (sign in with the daemon's token:
  a session cookie, HttpOnly and SameSite=Strict), ``DELETE
  /console/session`` (sign out) and ``/console/static/*`` (the console's
  script and styles, shipped in this package; only the sign-in page's
  stylesheet is public);
* the session layer (``session.SessionAuth``): a request carrying a valid
  session cookie is authenticated as if it carried the daemon's bearer
  token, so the console's script calls the REST API itself and shows its
  own errors; a state-changing request (POST, PUT, PATCH, DELETE) with a
  session must also carry the session's CSRF token in ``X-CSRF-Token``
  and, when the browser sends one, an ``Origin`` equal to the API's own,
  or it is refused with 403 and nothing runs;
* the console's own read models and actions (``coppice.api.routes.console``):
  paged and searchable volume tree, LUNs and VMs, space history, VM
  start/stop, and live job events (server-sent events).

Every change the console makes is a call to the REST API itself (the
console's own routes only read, and power VMs), so the console can do
exactly what the API allows, and a refusal reads as the API wrote it.
"""

from __future__ import annotations

import os

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def install(app) -> None:
    from ..api.routes import console as console_routes
    from . import pages
    from .session import SessionAuth, Sessions

    app.state.console_sessions = Sessions()
    app.add_middleware(SessionAuth, state=app.state)
    app.include_router(pages.router)
    app.include_router(console_routes.router)
