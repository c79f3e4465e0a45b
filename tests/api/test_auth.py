"""Bearer token on TCP, none on the Unix socket, and a pool owned by one process."""

from __future__ import annotations

import os
import stat

import httpx

from tests.api.conftest import run_cli


def test_health_needs_no_token(served):
    # /health answers anyone; it is how scripts wait for the daemon
    r = httpx.get(served.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_calls_without_token_are_refused_with_json(served):
    # every other call needs the token: 401 with a message saying where the token is
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": served.token}):
        r = httpx.get(served.url + "/volumes", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["error"] == "Unauthorized" and "api.token" in body["message"]


def test_token_file_is_private_and_works(served):
    # the token file is mode 0600 and the token it holds opens the API
    mode = stat.S_IMODE(os.stat(os.path.join(served.pool, "api.token")).st_mode)
    assert mode == 0o600
    assert served.http.get("/volumes").status_code == 200


def test_unix_socket_needs_no_token(served):
    # the pool's socket (mode 0600) is the local root's way in, without a token
    assert stat.S_IMODE(os.stat(served.socket).st_mode) == 0o600
    r = served.unix.post("/volumes", json={"name": "v1", "size": "1g"})
    assert r.status_code == 201, r.text
    assert [v["name"] for v in served.unix.get("/volumes").json()] == ["v1"]


def test_token_survives_restart(pool_path):
    # a restart reuses the token, so configured clients keep working
    from tests.api.conftest import Served

    a = Served(pool_path)
    tok = a.token
    assert a.stop() == 0
    b = Served(pool_path)
    try:
        assert b.token == tok
        assert b.http.get("/pool").status_code == 200
    finally:
        b.stop()


def test_second_opener_gets_an_error_naming_the_daemon(served):
    # opening the pool directly while the daemon owns it fails, naming pid, API and socket
    from coppice.engine import PoolInUse
    from coppice.filer import Filer

    try:
        Filer.open(served.pool)
    except PoolInUse as e:
        msg = str(e)
    else:
        raise AssertionError("the pool opened twice")
    assert f"pid {served.pid}" in msg and served.url in msg and "coppice.sock" in msg
    # a second daemon on the same pool refuses to start with the same message
    r = run_cli(served.pool, "serve", "--api", "127.0.0.1:0", "--nbd", "127.0.0.1:0")
    assert r.returncode != 0 and f"pid {served.pid}" in r.stderr


def test_daemon_made_files_are_the_owners_only(served):
    # the token and the API socket grant the pool: nobody but the pool's owner may read or connect
    for name in ("api.token", "coppice.sock"):
        mode = stat.S_IMODE(os.stat(os.path.join(served.pool, name)).st_mode)
        assert mode == 0o600, (name, oct(mode))
