"""The operation table builds both sides: every row is a route whose model takes
exactly the row's fields, every remote façade has its local twin's signature,
and the client side loads no server framework."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

from coppice import operations
from coppice.api.ops import facade_class
from coppice.remote import RemoteDedup, RemoteFiler, RemoteProvisioning

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REMOTE = {"filer": RemoteFiler, "provision": RemoteProvisioning, "dedup": RemoteDedup}


def _spec():
    from fastapi import FastAPI

    from coppice.api.app import RESOURCES

    app = FastAPI()
    for mod in RESOURCES:
        app.include_router(mod.router)
    return app.openapi()


def test_every_row_is_a_route_whose_model_takes_the_rows_fields():
    spec = _spec()
    schemas = spec["components"]["schemas"]
    for op in operations.OPS:
        route = spec["paths"].get(op.path, {}).get(op.verb.lower())
        assert route is not None, f"{op.method}: no route {op.verb} {op.path}"
        fields = {p["name"] for p in route.get("parameters", []) if p["in"] == "query"}
        body = route.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        for ref in [body.get("$ref")] + [a.get("$ref") for a in body.get("anyOf", [])]:
            if ref:
                fields |= set(schemas[ref.rsplit("/", 1)[-1]]["properties"])
        assert fields == set(op.body) | set(op.query), (op.method, op.verb, fields)


def test_remote_facades_have_the_local_signatures():
    for layer, remote in REMOTE.items():
        local = facade_class(layer)
        for method in operations.by_method(layer):
            assert method in remote.__dict__, f"{remote.__name__}.{method} is missing"
            ls = inspect.signature(getattr(local, method))
            rs = inspect.signature(getattr(remote, method))
            assert list(ls.parameters) == list(rs.parameters), (layer, method)
            for name, p in ls.parameters.items():
                assert p.default == rs.parameters[name].default, (layer, method, name)
            sent = {
                p for o in operations.by_method(layer)[method] for p in (*o.body, *o.query, *o.path_params)
            }
            local_params = set(ls.parameters) - {"self", "progress", "should_stop", "resume"}
            assert sent <= local_params, (layer, method, sent - local_params)


def test_the_client_side_loads_no_server_framework(served):
    # a command through the daemon (parsing, the request, the table printed) loads none of them
    code = (
        "import sys, coppice.client, coppice.remote, coppice.operations;"
        "from coppice.cli.main import main;"
        f"sys.argv = ['coppice', '--pool', {served.pool!r}, 'vol', 'show'];"
        "exec('try: main()\\nexcept SystemExit as e: assert not e.code, e.code');"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'pydantic', 'starlette', 'httpx'));"
        "assert not bad, bad"
    )
    env = {k: v for k, v in os.environ.items() if k != "COPPICE_URL"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == "No volumes.\n"
