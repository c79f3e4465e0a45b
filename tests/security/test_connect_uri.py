"""An API token is not root on the host: the libvirt URI of a request is one
the daemon was configured with when it started, never an arbitrary one
(issue 13). Against a real `coppice serve`."""

import json
import os
import time

import pytest

from tests.api.conftest import Served, pool_path  # noqa: F401
from tests.provision.prov_helpers import small_image


@pytest.fixture
def default_daemon(pool_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("COPPICE_CONNECT", raising=False)
    s = Served(pool_path)
    yield s
    if s.proc.poll() is None:
        s.stop()


def _fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _hostile(tmp_path):
    marker = tmp_path / "pwned"
    secret = tmp_path / "secret.xml"
    secret.write_text("<node><domain type='test'><name>LEAKED-FIRST-LINE</name></domain></node>\n")
    embed_root = tmp_path / "made-by-embed"
    return (
        marker,
        secret,
        embed_root,
        [
            f"qemu+ext:///system?command=/bin/sh%20-c%20'touch%20{marker}'",
            f"qemu+ext://x/system?command=/usr/bin/touch&socket={marker}",
            f"test://{secret}",
            f"qemu:///embed?root={embed_root}",
            "qemu+ssh://root@127.0.0.1/system",
            "lxc:///system",
        ],
    )


def test_arbitrary_uris_refused_everywhere(default_daemon, tmp_path):
    s = default_daemon
    marker, secret, embed_root, uris = _hostile(tmp_path)
    fds = _fds(s.pid)
    for uri in uris:
        calls = [
            ("POST", "/vms", {"template": "t", "count": 1, "name": "x{n}", "connect": uri}),
            (
                "POST",
                "/datastores/clones",
                {"src": "a", "snap": "b", "new": "c", "register": True, "connect": uri},
            ),
            ("POST", "/datastores/tpl_t/register", {"connect": uri}),
            ("POST", "/datastores/tpl_t/attach", {"connect": uri}),
            ("PUT", "/datastores/policy", {"connect": uri, "policy": "auto"}),
        ]
        for method, path, body in calls:
            r = s.http.request(method, path, json=body)
            assert r.status_code == 403, (method, path, uri, r.status_code, r.text)
            e = r.json()
            assert e["error"] == "ConnectNotAllowed", e
            assert uri in e["message"] and "qemu:///system" in e["message"] and "--connect" in e["message"], e
            assert "LEAKED" not in r.text
        r = s.http.get("/datastores/policy", params={"connect": uri})
        assert r.status_code == 403 and r.json()["error"] == "ConnectNotAllowed", r.text
    # nothing ran, nothing was read or created, and no connection was kept per distinct value
    assert not marker.exists() and not embed_root.exists()
    for i in range(40):
        r = s.http.get("/datastores/policy", params={"connect": f"test:///default?n={i}"})
        assert r.status_code == 403
    time.sleep(0.2)
    assert _fds(s.pid) <= fds + 2, "the daemon kept something open per refused URI"
    assert s.http.get("/datastores/policy").json() == {"connect": "qemu:///system", "policy": "auto"}
    # the refusals changed nothing: no policy stored for any of them
    assert s.stop() == 0


def test_configured_uri_is_the_default_and_only_one(pool_path, tmp_path, monkeypatch):  # noqa: F811
    # `coppice serve --connect test:///default`: requests naming none get it, naming another are refused
    monkeypatch.delenv("COPPICE_CONNECT", raising=False)
    img = small_image(str(tmp_path / "g.raw"))
    s = Served(pool_path, extra_args=("--connect", "test:///default", "--import-dir", str(tmp_path)))
    try:
        r = s.http.post("/templates", json={"name": "t", "image": img})
        assert r.status_code == 201, r.text
        r = s.http.post("/vms", json={"template": "t", "count": 1, "name": "cu{n}"})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        for _ in range(300):
            j = s.http.get(f"/jobs/{job}").json()
            if j["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert j["state"] == "done", j
        vm = s.http.get("/vms/cu1").json()
        assert vm["uri"] == "test:///default" and vm["state"] != "unknown", json.dumps(vm)
        r = s.http.post(
            "/vms", json={"template": "t", "count": 1, "name": "cv{n}", "connect": "qemu:///system"}
        )
        assert r.status_code == 403 and "test:///default" in r.json()["message"], r.text
    finally:
        assert s.stop() == 0
