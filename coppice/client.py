"""RemoteFiler: the Filer's Python API over a running daemon's REST API.

Contract: ``RemoteFiler`` has the methods of ``coppice.filer.Filer`` that
the REST API exposes (every method in an ``OPS`` table of
``coppice.api.routes``) with the same signatures and the same return
values (the Filer returns plain JSON-able values, so they survive the trip
unchanged), plus the long operations done as daemon jobs with the same
interface (``clone_split_steps`` yields ``(done, total)``,
``clone_split``, ``scrub``). A refused call raises the same
``CoppiceError`` class with the same message and exit code the Filer
raised in the daemon, so a CLI command prints the same output either way.
Methods that need the pool in this process (``open_lun``,
``transaction``, ``resolver``) raise ``NotSupported`` naming the way to do
it through the daemon.

``connect(pool_dir)`` decides who serves a pool: ``$COPPICE_URL`` (token
from ``$COPPICE_TOKEN`` or ``POOL/api.token``) names a daemon explicitly
and must answer; else the pool's socket ``POOL/coppice.sock`` is used when
a daemon listens on it; else None (the caller opens the pool itself, under
the pool's exclusive lock). A stale socket left by a killed daemon is
ignored. Thread-safe (one httpx client with a connection pool).
"""

from __future__ import annotations

import base64
import functools
import inspect
import os
import socket
import time
from contextlib import contextmanager
from urllib.parse import quote

from .api.errors import DaemonError, DaemonUnreachable, NotSupported
from .errors import CoppiceError

API_SOCKET = "coppice.sock"
_KIND_BY_COLLECTION = {
    "volumes": "volume",
    "clones": "volume",
    "snapshots": "snapshot",
    "igroups": "igroup",
    "files": "file",
}


def _error_classes() -> dict[str, type]:
    # Import the modules whose errors can cross the wire, then index every class by name.
    from . import dedup, engine, filer  # noqa: F401
    from .filer import errors as _fe  # noqa: F401
    from .provision import custspec as _cs  # noqa: F401
    from .provision import errors as _pe  # noqa: F401

    out: dict[str, type] = {}
    todo = [CoppiceError]
    while todo:
        c = todo.pop()
        out.setdefault(c.__name__, c)
        todo.extend(c.__subclasses__())
    return out


def rebuild_error(body: dict, status: int, url: str) -> CoppiceError:
    """The CoppiceError a daemon reported, as the same class with the same message."""
    name = body.get("error") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if not name or message is None:
        return DaemonError(url=url, status=status, detail=str(body)[:500])
    cls = _error_classes().get(name)
    if cls is None:
        from .errors import InvalidArgument

        base = {404: CoppiceError, 409: CoppiceError}.get(
            status, InvalidArgument if status < 500 else CoppiceError
        )
        cls = type(
            name,
            (base,),
            {"__doc__": "{detail}", "http_status": status, "exit_code": body.get("exit_code", 1)},
        )
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.kwargs, exc.args_ = {}, ()
    if "exit_code" in body and body["exit_code"] != getattr(cls, "exit_code", None):
        exc.exit_code = body["exit_code"]
    return exc


class RemoteFiler:
    """The Filer API of a daemon; see the module docstring."""

    remote = True

    def __init__(
        self,
        url: str | None = None,
        socket_path: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 0.2,
    ):
        if not url and not socket_path:
            raise NotSupported(what="RemoteFiler", why="give a daemon URL or a Unix socket path")
        import httpx

        _install()
        self.where = url or f"unix:{socket_path}"
        transport = httpx.HTTPTransport(uds=socket_path) if socket_path else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=(url or "http://coppice").rstrip("/"),
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )
        self.poll_interval = poll_interval

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- transport --------------------------------------------------------------------
    def request(self, verb: str, path: str, params: dict | None = None, json=None):
        import httpx

        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._http.request(verb, path, params=params or None, json=json)
        except httpx.TransportError as e:
            raise DaemonUnreachable(url=self.where, why=str(e) or type(e).__name__) from None
        if r.status_code == 204:
            return None
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.status_code >= 400:
            raise rebuild_error(body, r.status_code, self.where)
        return body

    def upload(self, local_path: str) -> str:
        """Send a local file to the daemon (PUT /uploads) and return the path a request
        names it by: the daemon never reads the client's host paths."""
        import os

        import httpx

        name = os.path.basename(local_path) or "upload"
        try:
            with open(os.path.expanduser(local_path), "rb") as f:
                r = self._http.put(
                    f"/uploads/{quote(name, safe='')}", content=iter(lambda: f.read(1 << 20), b"")
                )
        except httpx.TransportError as e:
            raise DaemonUnreachable(url=self.where, why=str(e) or type(e).__name__) from None
        if r.status_code >= 400:
            raise rebuild_error(r.json(), r.status_code, self.where)
        return r.json()["path"]

    def health(self) -> dict:
        return self.request("GET", "/health")

    def daemon_info(self) -> dict:
        return self.request("GET", "/daemon")

    # ---- jobs -----------------------------------------------------------------------
    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/jobs/{quote(job_id, safe='')}")

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[dict]:
        return self.request("GET", "/jobs", params={"kind": kind, "state": state})

    def follow(self, job: dict):
        """Yield a job's record each time its progress changes, until it ends;
        raise its error if it failed."""
        last = None
        while True:
            key = (job["state"], job.get("phase"), job.get("done"), job.get("total"))
            if key != last:
                last = key
                yield job
            if job["state"] in ("done", "cancelled", "interrupted"):
                return
            if job["state"] == "failed":
                raise rebuild_error(
                    {
                        "error": job.get("error_class") or "JobFailed",
                        "message": job.get("error") or "the job failed",
                    },
                    400,
                    self.where,
                )
            time.sleep(self.poll_interval)
            job = self.job(job["id"])

    # ---- the Filer's long operations, as jobs ---------------------------------------
    def clone_split_steps(self, vol: str):
        job = self.request("POST", f"/clones/{_segment(vol, 'volume')}/split")
        finished = False
        try:
            for rec in self.follow(job):
                if rec["state"] in ("running", "done") and rec.get("total") is not None:
                    yield rec.get("done") or 0, rec.get("total") or 0
            finished = True
        finally:
            if not finished:  # the caller gave up (Ctrl-C): stop the split as a local one would stop
                try:
                    self.request("DELETE", f"/clones/{_segment(vol, 'volume')}/split")
                except CoppiceError:
                    pass

    def clone_split(self, vol: str, progress=None) -> dict:
        for done, total in self.clone_split_steps(vol):
            if progress:
                progress(done, total)
        return self.clone_split_status(vol)

    def clone_split_stop(self, vol: str) -> dict:
        return self.request("DELETE", f"/clones/{_segment(vol, 'volume')}/split")

    def scrub(self, progress=None) -> dict:
        job = self.request("POST", "/pool/scrub")
        rec = job
        for rec in self.follow(job):
            if progress and rec.get("total") is not None:
                progress(rec.get("done") or 0, rec.get("total"))
        return rec.get("result")

    def run_job(self, verb: str, path: str, json=None, on_progress=None) -> dict:
        """Start a job with one call, follow it (``on_progress(record)`` at each
        change) and return its result; its error as the same class if it failed."""
        job = self.request(verb, path, json=json)
        rec = job
        for rec in self.follow(job):
            if on_progress:
                on_progress(rec)
        if rec["state"] != "done":
            raise rebuild_error(
                {
                    "error": "JobStopped",
                    "message": f"job {rec['id']} was {rec['state']}: "
                    f"{rec.get('message') or rec.get('error') or 'stopped'}",
                },
                409,
                self.where,
            )
        return rec.get("result")

    # ---- small files ----------------------------------------------------------------
    def file_write(self, vol: str, name: str, data: bytes) -> None:
        self.request(
            "PUT",
            f"/volumes/{_segment(vol, 'volume')}/files/{_segment(name, 'file')}",
            json={"data_base64": base64.b64encode(bytes(data)).decode()},
        )

    def file_read(self, vol: str, name: str, snapshot: str | None = None) -> bytes:
        r = self.request(
            "GET",
            f"/volumes/{_segment(vol, 'volume')}/files/{_segment(name, 'file')}",
            params={"snapshot": snapshot},
        )
        return base64.b64decode(r["data_base64"])

    # ---- what needs the pool in this process ------------------------------------------
    def open_lun(self, path: str, initiator=None):
        raise NotSupported(
            what="open_lun",
            why=f"the daemon ({self.where}) serves LUNs over NBD; "
            "connect to its NBD socket (POOL/nbd.sock) or port instead",
        )

    def resolver(self):
        raise NotSupported(what="resolver", why="the daemon runs the NBD target itself")

    def on_revoke(self, callback) -> None:
        raise NotSupported(what="on_revoke", why="the daemon's NBD target gets revocations itself")

    @contextmanager
    def transaction(self):
        raise NotSupported(
            what="transaction",
            why="calls over the REST API commit one by one; "
            "stop the daemon to group them, or use a single call that does the whole change",
        )
        yield self  # pragma: no cover


def _segment(value, kind: str | None) -> str:
    """A name as one URL path segment. A name no URL can carry ('/' in it, '', '.', '..')
    is refused here with the error the filer gives such a name."""
    if not isinstance(value, str) or "/" in value or value in ("", ".", ".."):
        from .errors import InvalidArgument
        from .filer.names import check

        if kind in ("volume", "snapshot", "LUN", "igroup", "file"):
            check(kind, value)
        raise InvalidArgument(detail=f"{value!r} is not a valid name")
    return quote(value, safe="")


def _make_method(name: str, ops):
    from .filer.filer import Filer

    target = getattr(Filer, name)
    sig = inspect.signature(target)

    @functools.wraps(target)
    def call(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        params = {k: v for k, v in bound.arguments.items() if k != "self"}
        for k, v in list(params.items()):
            if sig.parameters[k].kind is inspect.Parameter.VAR_KEYWORD:
                params.pop(k)
                params.update(v)
        op = next((o for o in ops if o.when is None or o.when(params)), ops[0])
        path = op.path
        for p in op.path_params:
            coll = op.path.split("{" + p + "}")[0].rstrip("/").rsplit("/", 1)[-1]
            path = path.replace("{" + p + "}", _segment(params.pop(p, None), _KIND_BY_COLLECTION.get(coll)))
        from .api.codec import to_jsonable

        body = query = None
        if op.body is not None:
            body = {k: to_jsonable(params[k]) for k in op.body.model_fields if k in params}
        if op.query is not None:
            query = {k: to_jsonable(params[k]) for k in op.query.model_fields if k in params}
        out = self.request(op.verb, path, params=query, json=body)
        if op.result_key and isinstance(out, dict):
            out = out.get(op.result_key)
        return out

    return call


_installed = False


def _install() -> None:
    # Lazily, at the first RemoteFiler: a CLI run without a daemon never imports FastAPI.
    global _installed
    if _installed:
        return
    from .api.ops import all_ops

    for name, ops in all_ops().items():
        if name not in RemoteFiler.__dict__:
            setattr(RemoteFiler, name, _make_method(name, ops))
    _installed = True


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect(pool_dir: str | None) -> RemoteFiler | None:
    """The daemon serving ``pool_dir`` (or named by $COPPICE_URL), or None."""
    url = os.environ.get("COPPICE_URL")
    if url:
        token = os.environ.get("COPPICE_TOKEN")
        if token is None and pool_dir:
            from .api.auth import read_token

            token = read_token(pool_dir)
        rf = RemoteFiler(url=url, token=token)
        rf.health()  # an explicitly named daemon must answer (DaemonUnreachable otherwise)
        return rf
    if not pool_dir:
        return None
    sock = os.path.join(os.path.abspath(pool_dir), API_SOCKET)
    if os.path.exists(sock) and _socket_alive(sock):
        return RemoteFiler(socket_path=sock)
    return None
