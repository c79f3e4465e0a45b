"""The light client: one HTTP session to a running daemon, and who serves a pool.

Contract: ``Daemon`` speaks to `coppice serve` over its Unix socket or TCP
(the standard library's ``http.client``, one kept-alive connection; an
HTTP library would cost more to import than a command takes to run): ``call(layer, method, params)`` turns one façade call into the
request the operation table (``coppice.operations``) names, and a job op
into the job's result (``follow`` yields its records meanwhile). A refused
call raises the ``CoppiceError`` the daemon raised, rebuilt from the
catalogue code in the answer (``coppice.errors.by_code``), with the same
message and exit code. The remote façades over it are in
``coppice.remote``. This module imports no server framework and none of
the filer, engine or provisioner.

``connect(pool_dir)`` decides who serves a pool, once per command:
``$COPPICE_URL`` (token from ``$COPPICE_TOKEN`` or ``POOL/api.token``)
names a daemon explicitly and must answer; else the pool's socket
``POOL/coppice.sock`` when a daemon listens on it; else None (the caller
opens the pool itself, under the pool's exclusive lock). A stale socket
left by a killed daemon is ignored. Thread-safe (one request at a time
per ``Daemon``).
"""

from __future__ import annotations

import http.client
import json as _json
import os
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlencode, urlsplit

from . import operations
from .errors import CoppiceError, DaemonError, DaemonUnreachable, InvalidArgument, NotSupported, rebuild

API_SOCKET = "coppice.sock"
TOKEN_FILE = "api.token"
_KIND_BY_COLLECTION = {
    "volumes": "volume",
    "clones": "volume",
    "snapshots": "snapshot",
    "igroups": "igroup",
    "files": "file",
}


def rebuild_error(body, status: int, url: str) -> CoppiceError:
    """The CoppiceError a daemon reported in an error body."""
    if not isinstance(body, dict) or body.get("message") is None:
        return DaemonError(url=url, status=status, detail=str(body)[:500])
    return rebuild(body.get("code"), body["message"], body.get("exit_code"), status)


def segment(value, kind: str | None = None) -> str:
    """A name as one URL path segment. A name no URL can carry ('/' in it, '', '.', '..')
    is refused here with the error the filer gives such a name."""
    if not isinstance(value, str) or "/" in value or value in ("", ".", ".."):
        if kind in ("volume", "snapshot", "LUN", "igroup", "file"):
            from .filer.names import check

            check(kind, value)
        raise InvalidArgument(detail=f"{value!r} is not a valid name")
    return quote(value, safe="")


def _query_value(v):
    # FastAPI reads booleans in a query as true/false
    return ("true" if v else "false") if isinstance(v, bool) else v


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    from .api.codec import to_jsonable  # plain Python, no server framework

    return to_jsonable(v)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("coppice", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Daemon:
    """An HTTP session to one daemon; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        socket_path: str | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 0.2,
    ):
        if not url and not socket_path:
            raise NotSupported(what="a daemon client", why="give a daemon URL or a Unix socket path")
        self.where = url or f"unix:{socket_path}"
        self._socket_path = socket_path
        self._url = urlsplit(url) if url else None
        if self._url is not None and self._url.scheme not in ("http", "https"):
            raise InvalidArgument(detail=f"COPPICE_URL {url!r} is not an http:// or https:// URL")
        self._prefix = (self._url.path.rstrip("/") if self._url else "") or ""
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.poll_interval = poll_interval
        self._tables: dict[str, dict] = {}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._socket_path:
                self._conn = _UnixConnection(self._socket_path, self._timeout)
            else:
                cls = (
                    http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
                )
                self._conn = cls(self._url.hostname, self._url.port, timeout=self._timeout)
        return self._conn

    def _exchange(self, verb: str, target: str, body, headers: dict) -> tuple[int, bytes]:
        # A kept-alive connection the daemon closed meanwhile fails on first use: retry once, fresh
        # (a file body is sent once: its retry would send nothing).
        for attempt in (1, 2) if not hasattr(body, "read") else (2,):
            conn = self._connection()
            try:
                conn.request(verb, target, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, OSError) as e:
                conn.close()
                self._conn = None
                if attempt == 2 or isinstance(e, (ConnectionRefusedError, FileNotFoundError, TimeoutError)):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- transport --------------------------------------------------------------------
    def request(self, verb: str, path: str, params: dict | None = None, json=None):
        params = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        target = self._prefix + path + ("?" + urlencode(params) if params else "")
        headers = dict(self._headers)
        body = None
        if json is not None:
            body = _json.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        try:
            with self._lock:
                status, raw = self._exchange(verb, target, body, headers)
        except OSError as e:
            why = e.strerror or str(e) or type(e).__name__
            raise DaemonUnreachable(url=self.where, why=why) from None
        if status == 204:
            return None
        try:
            out = _json.loads(raw)
        except ValueError:
            out = raw.decode("utf-8", "replace")
        if status >= 400:
            raise rebuild_error(out, status, self.where)
        return out

    def upload(self, local_path: str) -> str:
        """Send a local file to the daemon (PUT /uploads) and return the path a request
        names it by: the daemon never reads the client's host paths."""
        path = os.path.expanduser(local_path)
        name = os.path.basename(path) or "upload"
        headers = dict(self._headers)
        try:
            with open(path, "rb") as f:
                headers["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                headers["Content-Type"] = "application/octet-stream"
                with self._lock:
                    status, raw = self._exchange(
                        "PUT", f"{self._prefix}/uploads/{quote(name, safe='')}", f, headers
                    )
        except OSError as e:
            raise DaemonUnreachable(url=self.where, why=e.strerror or str(e) or type(e).__name__) from None
        out = _json.loads(raw) if raw else {}
        if status >= 400:
            raise rebuild_error(out, status, self.where)
        return out["path"]

    # ---- the operation table ------------------------------------------------------------
    def call(self, layer: str, method: str, params: dict, progress: Callable[[dict], None] | None = None):
        """One façade call: the request its op names; a job op's result."""
        table = self._tables.get(layer)
        if table is None:
            table = self._tables[layer] = operations.by_method(layer)
        params = {k: v for k, v in params.items() if v is not None}
        op = operations.choose(table[method], params)
        path = op.path
        for p in op.path_params:
            coll = op.path.split("{" + p + "}")[0].rstrip("/").rsplit("/", 1)[-1]
            path = path.replace("{" + p + "}", segment(params.get(p), _KIND_BY_COLLECTION.get(coll)))
        body = {k: _jsonable(params[k]) for k in op.body if k in params} if op.body else None
        query = {k: _jsonable(params[k]) for k in op.query if k in params} if op.query else None
        out = self.request(op.verb, path, params=query, json=body)
        if op.job:
            return self.finish(out, progress)
        if op.result_key and isinstance(out, dict):
            out = out.get(op.result_key)
        return out

    # ---- jobs -----------------------------------------------------------------------
    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/jobs/{quote(job_id, safe='')}")

    def jobs(self, kind: str | None = None, state: str | None = None) -> list[dict]:
        return self.request("GET", "/jobs", params={"kind": kind, "state": state})

    def cancel(self, job_id: str) -> dict:
        return self.request("DELETE", f"/jobs/{quote(job_id, safe='')}")

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
                raise rebuild(
                    job.get("error_code"),
                    job.get("error") or "the job failed",
                    job.get("exit_code"),
                    400,
                )
            time.sleep(self.poll_interval)
            job = self.job(job["id"])

    def finish(self, job: dict, on_progress: Callable[[dict], None] | None = None):
        """Follow a job (``on_progress(record)`` at each change) to its result;
        a job stopped before the end raises ``JobIncomplete``."""
        from .errors import JobIncomplete

        rec = job
        for rec in self.follow(job):
            if on_progress:
                on_progress(rec)
        if rec["state"] != "done":
            raise JobIncomplete(
                job=rec["id"], state=rec["state"], why=rec.get("message") or rec.get("error") or "stopped"
            )
        return rec.get("result")


def read_token(pool_dir: str) -> str | None:
    try:
        with open(os.path.join(pool_dir, TOKEN_FILE)) as f:
            return f.read().strip() or None
    except OSError:
        return None


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


def connect(pool_dir: str | None) -> Daemon | None:
    """The daemon serving ``pool_dir`` (or named by $COPPICE_URL), or None."""
    url = os.environ.get("COPPICE_URL")
    if url:
        token = os.environ.get("COPPICE_TOKEN")
        if token is None and pool_dir:
            token = read_token(pool_dir)
        d = Daemon(url=url, token=token)
        d.request("GET", "/health")  # an explicitly named daemon must answer (DaemonUnreachable otherwise)
        return d
    if not pool_dir:
        return None
    sock = os.path.join(os.path.abspath(pool_dir), API_SOCKET)
    if os.path.exists(sock) and _socket_alive(sock):
        return Daemon(socket_path=sock)
    return None
