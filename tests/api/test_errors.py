"""Errors are JSON with the CoppiceError's message and a 4xx for the caller's mistakes."""

from __future__ import annotations

import json


def test_not_found_is_404_with_the_filer_message(served):
    # a missing volume: 404, the error class, its catalogue code and the same message the CLI prints
    r = served.http.get("/volumes/nope")
    assert r.status_code == 404
    assert r.json() == {
        "error": "VolumeNotFound",
        "code": 104,
        "status": 404,
        "exit_code": 2,
        "message": "Volume nope not found; `coppice vol show` lists the volumes.",
    }


def test_conflict_is_409(served):
    # creating what exists: 409
    assert served.http.post("/volumes", json={"name": "v", "size": "1g"}).status_code == 201
    r = served.http.post("/volumes", json={"name": "v", "size": "1g"})
    assert r.status_code == 409 and r.json()["error"] == "VolumeExists"


def test_bad_input_is_4xx_never_500(served):
    # wrong types, unknown fields, bad names, bad sizes, bad JSON: 4xx with a message
    cases = [
        ("POST", "/volumes", {"name": "v", "size": 1.5}),
        ("POST", "/volumes", {"name": "v"}),
        ("POST", "/volumes", {"name": "v", "size": "1g", "colour": "red"}),
        ("POST", "/volumes", {"name": "1bad", "size": "1g"}),
        ("POST", "/volumes", {"name": "v", "size": "lots"}),
        ("POST", "/volumes", {"name": "v\ud800", "size": "1g"}),
        ("POST", "/maps", {"path": "/vol/x/y", "igroup": "g", "lun_id": "abc"}),
        ("POST", "/luns", {"path": "nowhere", "size": "1g"}),
    ]
    for verb, path, body in cases:
        # json.dumps escapes lone surrogates as \\udXXX, as a hostile client would send them
        r = served.http.request(
            verb, path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.json()["message"]
    r = served.http.post("/volumes", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "InvalidRequest"


def test_unknown_endpoint_and_method_are_json(served):
    # routing errors use the same JSON shape
    r = served.http.get("/nothing/here")
    assert r.status_code == 404 and r.json()["error"] == "NoSuchEndpoint"
    r = served.http.patch("/volumes")
    assert r.status_code == 405 and r.json()["error"] == "MethodNotAllowed"


def test_openapi_lists_every_resource(served):
    # /openapi.json is published and covers the resources of the issue
    spec = served.http.get("/openapi.json").json()
    paths = set(spec["paths"])
    for p in (
        "/pool",
        "/volumes",
        "/volumes/{vol}/snapshots",
        "/clones",
        "/clones/{vol}/split",
        "/luns",
        "/igroups",
        "/maps",
        "/volumes/{vol}/schedule",
        "/schedules",
        "/dedup",
        "/dedup/scans",
        "/jobs",
        "/jobs/{job_id}",
        "/health",
    ):
        assert p in paths, p


def test_a_bug_answers_a_request_id_and_logs_the_detail(pool_dir, caplog):
    # a 500 tells the caller nothing of the exception; the log has it under the same id
    from fastapi.testclient import TestClient

    from coppice.api.app import create_app
    from coppice.filer import Filer

    f = Filer.create(pool_dir)
    try:

        def broken(name=None):
            raise RuntimeError("secret detail /etc/shadow")

        f.vol_show = broken
        with TestClient(create_app(f), raise_server_exceptions=False) as c:
            with caplog.at_level("ERROR", logger="coppice.api"):
                r = c.get("/volumes")
    finally:
        f.close()
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "InternalError" and body["exit_code"] == 15 and body["code"] == 16
    assert "secret" not in r.text and "RuntimeError" not in r.text
    rid = body["message"].split("(request ")[1].split(")")[0]
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged and "secret detail" in str(logged[0].exc_info[1])
