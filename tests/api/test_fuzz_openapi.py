"""Requests generated from /openapi.json by hypothesis: no input makes a 5xx.

The generator reads the published schema itself (schemathesis is not a
dependency): for each operation it draws path parameters, query
parameters and JSON bodies that follow the schema most of the time and
break it (wrong types, junk, extra fields) the rest of the time. Names are
drawn partly from objects that exist, so calls reach the filer's rules
and not only validation.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Served

NAMES = ["v", "c", "s", "g", "lun0", "nope", "hourly.0", "1bad", "a/b", "..", "", "x" * 300]
LUN_PATHS = ["/vol/v/lun0", "/vol/c/lun0", "/vol/v/.snapshot/s/lun0", "/vol/v", "lun0", "/vol/nope/x"]
SKIP = {("POST", "/pool/fsck")}  # slow and uninteresting to repeat


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from coppice.filer import Filer

    p = str(tmp_path_factory.mktemp("fuzz") / "pool")
    Filer.create(p).close()
    s = Served(p)
    h = s.http
    h.post("/volumes", json={"name": "v", "size": "1g"})
    h.post("/luns", json={"path": "/vol/v/lun0", "size": "10m"})
    h.post("/igroups", json={"name": "g", "initiators": ["127.0.0.1"]})
    h.post("/maps", json={"path": "/vol/v/lun0", "igroup": "g"})
    h.post("/volumes/v/snapshots", json={"name": "s"})
    h.post("/clones", json={"new": "c", "parent": "v", "snap": "s"})
    yield s
    s.stop()


def _resolve(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def from_schema(spec, schema, name="", depth=0):
    schema = _resolve(spec, schema)
    if "anyOf" in schema:
        return st.one_of([from_schema(spec, s, name, depth) for s in schema["anyOf"]])
    t = schema.get("type")
    if t == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30)
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        pool = LUN_PATHS if "path" in name else NAMES
        return (
            st.sampled_from(pool)
            | st.text(max_size=40)
            | st.sampled_from(["1g", "10m", "0", "-5", "1e9", "0 2 6@8"])
        )
    if t == "integer":
        return st.integers(schema.get("minimum", -(2**40)) - 2, schema.get("maximum", 2**40) + 2)
    if t == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if t == "boolean":
        return st.booleans()
    if t == "null":
        return st.none()
    if t == "array":
        return st.lists(from_schema(spec, schema.get("items", {}), name, depth + 1), max_size=3)
    if t == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(spec, v, k, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(spec, v, k, depth + 1) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(fixed, optional=optional)
    return junk


def operations(spec):
    ops = []
    for path, item in spec["paths"].items():
        for verb, op in item.items():
            if (verb.upper(), path) in SKIP:
                continue
            ops.append((verb.upper(), path, op))
    return ops


@st.composite
def requests(draw, spec):
    verb, path, op = draw(st.sampled_from(operations(spec)))
    url = path
    query = {}
    for p in op.get("parameters", []):
        schema = p.get("schema", {})
        if p["in"] == "path":
            val = draw(
                st.sampled_from(NAMES[:7])
                | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
            )
            from urllib.parse import quote

            url = url.replace("{" + p["name"] + "}", quote(val, safe=""))
        elif p["in"] == "query" and (p.get("required") or draw(st.booleans())):
            v = draw(from_schema(spec, schema, p["name"]) if draw(st.integers(0, 4)) else junk)
            if v is not None and not isinstance(v, (dict, list)):
                query[p["name"]] = json.dumps(v) if isinstance(v, bool) and draw(st.booleans()) else v
    body = None
    rb = op.get("requestBody")
    if rb is not None:
        schema = rb["content"]["application/json"]["schema"]
        mode = draw(st.integers(0, 9))
        if mode < 7:
            body = draw(from_schema(spec, schema))
        elif mode < 9:
            body = draw(junk)
        else:
            base = draw(from_schema(spec, schema))
            body = dict(base, extra_field=1) if isinstance(base, dict) else base
    return verb, url, query, body


def test_no_5xx_for_any_request(daemon):
    # every generated request is answered below 500, in the JSON error shape when refused
    spec = daemon.http.get("/openapi.json").json()
    seen = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests(spec))
    def check(req):
        verb, url, query, body = req
        content = None if body is None else json.dumps(body).encode()
        r = daemon.http.request(
            verb,
            url,
            params=query,
            content=content,
            headers={"content-type": "application/json"} if content is not None else {},
        )
        seen.append(r.status_code)
        assert r.status_code < 500, (verb, url, query, body, r.status_code, r.text)
        if r.status_code >= 400:
            assert set(r.json()) >= {"error", "message", "status"}, r.text

    check()
    assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen)
