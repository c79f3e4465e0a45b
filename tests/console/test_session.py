"""Console sign-in, sessions and CSRF against a real `coppice serve`, without a browser (httpx)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import Served, pool_path

PUBLIC = {("GET", "/"), ("POST", "/console/session"), ("GET", "/console/static/{name}")}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from coppice.filer import Filer

    p = str(tmp_path_factory.mktemp("console-auth") / "pool")
    Filer.create(p).close()
    s = Served(p)
    yield s
    s.stop()


def sign_in(d: Served) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=d.url, timeout=30)
    r = c.post("/console/session", data={"token": d.token})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = c.get("/").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    return c, csrf


def console_routes():
    from coppice.api.routes.console import router as api_router
    from coppice.console.pages import router as pages_router

    out = []
    for r in [*pages_router.routes, *api_router.routes]:
        for m in r.methods:
            out.append((m, r.path))
    return sorted(out)


def test_every_console_route_needs_a_session(daemon):
    routes = console_routes()
    assert len(routes) >= 10, routes
    anon = httpx.Client(base_url=daemon.url, timeout=30)
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"{\w+}", "x", path)
        r = anon.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code, r.text[:200])
    # the console's script is behind the session too; only the sign-in page's stylesheet is public
    assert anon.get("/console/static/console.js").status_code == 401
    assert anon.get("/console/static/console.css").status_code == 200
    assert anon.get("/console/static/../pages.py").status_code == 404
    # the page at / without a session is the sign-in form, and gives away no CSRF token
    page = anon.get("/")
    assert page.status_code == 200 and 'name="token"' in page.text and "csrf-token" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # a made-up cookie is no session
    forged = httpx.Client(base_url=daemon.url, timeout=30, cookies={"coppice_session": "made-up"})
    assert forged.get("/console/api/overview").status_code == 401


def test_wrong_token_is_refused_and_makes_no_session(daemon):
    c = httpx.Client(base_url=daemon.url, timeout=30)
    for bad in ("", "wrong", daemon.token[:-1], daemon.token + "x"):
        r = c.post("/console/session", data={"token": bad})
        assert r.status_code == 401, bad
        assert "Wrong token" in r.text and "set-cookie" not in r.headers
    assert c.get("/console/api/overview").status_code == 401
    # a sign-in posted from another site is refused even with the right token
    r = c.post("/console/session", data={"token": daemon.token}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_session_cookie_is_httponly_samesite_strict(daemon):
    c = httpx.Client(base_url=daemon.url, timeout=30)
    r = c.post("/console/session", data={"token": daemon.token})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert c.get("/console/api/overview").json()["volumes"] == 0
    assert c.get("/console/static/console.js").status_code == 200


def test_changes_need_the_csrf_token(daemon):
    c, csrf = sign_in(daemon)
    body = {"name": "csrfvol", "size": "1g"}

    def names():
        return [v["name"] for v in daemon.http.get("/volumes").json()]

    # the cookie alone reads, but does not change anything
    assert c.get("/volumes").status_code == 200
    r = c.post("/volumes", json=body)
    assert r.status_code == 403 and r.json()["error"] == "CsrfRefused", r.text
    r = c.post("/volumes", json=body, headers={"X-CSRF-Token": "not-" + csrf})
    assert r.status_code == 403
    r = c.post("/volumes", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["message"]
    # another session's CSRF token does not fit this session
    _, other_csrf = sign_in(daemon)
    assert c.post("/volumes", json=body, headers={"X-CSRF-Token": other_csrf}).status_code == 403
    assert "csrfvol" not in names()
    assert c.delete("/console/session").status_code == 403  # signing out is a change too
    # with the token (and the console's own origin) it goes through
    r = c.post("/volumes", json=body, headers={"X-CSRF-Token": csrf, "Origin": daemon.url})
    assert r.status_code == 201, r.text
    assert "csrfvol" in names()
    # signing out ends the session: the same cookie, replayed, no longer reads anything
    sid = c.cookies.get("coppice_session")
    assert sid
    assert c.delete("/console/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    replay = httpx.Client(base_url=daemon.url, timeout=30, cookies={"coppice_session": sid})
    assert replay.get("/volumes").status_code == 401


def test_job_events_stream_and_a_prompt_stop(pool_path):
    """The event stream sends a job's records as it runs; a daemon asked to stop while a
    console holds the stream open stops at once, not after the graceful timeout."""
    import json
    import time

    d = Served(pool_path)
    try:
        c, csrf = sign_in(d)
        with c.stream("GET", "/console/api/events") as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
            r = c.post("/pool/scrub", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 202, r.text
            job_id, states, kind = r.json()["id"], [], None
            for line in events.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "job":
                    rec = json.loads(line[6:])
                    if rec["id"] == job_id:
                        states.append(rec["state"])
                        if rec["state"] in ("done", "failed"):
                            break
            assert states[-1] == "done", states  # a job submitted after the stream opened
            t = time.monotonic()
            rc = d.stop()
            took = time.monotonic() - t
        assert rc == 0 and took < 10, (rc, took)
    finally:
        if d.proc.poll() is None:
            d.stop()
