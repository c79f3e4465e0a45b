"""`coppice serve`: the one process that owns a pool while it runs.

Contract: ``Daemon(pool_dir, ...)`` opens the pool exclusively (a second
opener gets ``PoolInUse`` naming this daemon: pid, API URL, socket), then
serves, in one process:

* the NBD target over the filer's export resolver (TCP ``nbd_host:nbd_port``
  and ``POOL/nbd.sock``; TLS when ``tls_dir`` is given);
* the REST API (``coppice.api.app``) with uvicorn, on TCP
  ``api_host:api_port`` (bearer token from ``POOL/api.token``) and on the
  Unix socket ``POOL/coppice.sock`` (mode 0600, no token: only the pool's
  owner can connect). ``api_port=None`` serves the socket only; port 0
  picks a free port;
* the job runner (jobs resumed or failed with a reason at start, see
  ``coppice.api.jobs``) and the scheduler (snapshot schedules and dedup
  schedules, see ``coppice.api.scheduler``) on the injected clock.

When everything listens it prints one line to stdout,
``coppice serve: ready api=URL nbd=HOST:PORT socket=PATH pid=N``, for
scripts and tests. ``SIGTERM``/``SIGINT`` shut it down gracefully: stop the
scheduler, stop accepting API and NBD connections, finish in-flight requests
(every NBD request already read is answered, every device flushed),
interrupt jobs (resumable ones resume at the next start), flush and close
the pool. An acknowledged NBD flush is durable whether the daemon stops
cleanly or not; a clean stop also leaves no intent log to replay.

Threading: the main thread waits for a signal; uvicorn runs its event loop
in one thread, the NBD server and the job runner in their own, the
scheduler in one more.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import signal
import socket
import sys
import threading
import time

from .errors import CoppiceError, InvalidArgument

log = logging.getLogger("coppice.daemon")

API_SOCKET = "coppice.sock"
NBD_SOCKET = "nbd.sock"
DEFAULT_API_PORT = 8080
DEFAULT_NBD_PORT = 10809


class ListenFailed(CoppiceError):
    """Cannot listen on {where}: {why}. Choose another address with {option}
    (port 0 picks a free one), or stop whatever holds it."""

    exit_code = 12


def parse_hostport(text: str, default_port: int | None, what: str) -> tuple[str, int | None]:
    """'HOST:PORT', ':PORT', 'PORT', 'HOST' or 'none' -> (host, port or None)."""
    t = text.strip()
    if t.lower() in ("none", "off", "no", "-"):
        return "127.0.0.1", None
    host, port = "127.0.0.1", default_port
    if t.startswith("[") and "]" in t:  # [::1]:8080
        host, _, rest = t[1:].partition("]")
        t = rest.lstrip(":") if rest.startswith(":") else ""
        if t:
            port = t
    elif t.count(":") == 1:
        h, _, p = t.partition(":")
        host, port = h or host, p
    elif t.isdigit():
        port = t
    elif t:
        host = t
    try:
        port = int(port) if port is not None else None
        if port is not None and not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise InvalidArgument(
            detail=f"{what} {text!r} is invalid: use HOST:PORT, :PORT or PORT "
            "(0..65535; 0 picks a free port), or 'none'"
        ) from None
    return host, port


def _tcp_listener(host: str, port: int, option: str) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        s.set_inheritable(True)
        return s
    except OSError as e:
        raise ListenFailed(where=f"{host}:{port}", why=e.strerror or str(e), option=option) from None


def _unix_listener(path: str) -> socket.socket:
    # Only called while we hold the pool's lock, so an existing socket is stale.
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(path)
    except OSError as e:
        s.close()
        raise ListenFailed(where=path, why=e.strerror or str(e), option="--pool") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    s.listen(128)
    return s


class Daemon:
    def __init__(
        self,
        pool_dir: str,
        api: str = f"127.0.0.1:{DEFAULT_API_PORT}",
        nbd: str = f"127.0.0.1:{DEFAULT_NBD_PORT}",
        tls_dir: str | None = None,
        require_tls: bool = False,
        tls_client_cert_optional: bool = False,
        clock=None,
        sleep=None,
        schedule_interval: float = 60.0,
        jobs_workers: int = 2,
        graceful_timeout: float = 30.0,
        connect=None,
        import_dir: str | None = None,
    ):
        from .api.hypervisors import configured_uris

        self.connect = configured_uris(connect)  # the only libvirt URIs requests may name
        self.pool_dir = os.path.abspath(pool_dir)
        self.import_dir = os.path.abspath(import_dir) if import_dir else None
        self.api_host, self.api_port = parse_hostport(api, DEFAULT_API_PORT, "--api")
        self.nbd_host, self.nbd_port = parse_hostport(nbd, DEFAULT_NBD_PORT, "--nbd")
        self.tls_dir = tls_dir
        self.require_tls = require_tls
        self.tls_client_cert_optional = tls_client_cert_optional
        self.clock = clock or time.time
        self.sleep = sleep
        self.schedule_interval = schedule_interval
        self.jobs_workers = jobs_workers
        self.graceful_timeout = graceful_timeout
        self.socket_path = os.path.join(self.pool_dir, API_SOCKET)
        self.nbd_socket_path = os.path.join(self.pool_dir, NBD_SOCKET)
        self.filer = None
        self.jobs = None
        self.nbd = None
        self.scheduler = None
        self._servers = []
        self._uv_thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._stopped = False
        self.api_url: str | None = None

    # ---- start ------------------------------------------------------------------------
    def start(self) -> Daemon:
        """Open the pool and serve it: API, NBD target, jobs, scheduler. A
        start that fails half way closes what it had opened, in reverse."""
        from .api.auth import UnixMarker, ensure_token
        from .provision.revert import Revert

        with Revert() as revert:
            tcp = self._listen_api(revert)
            self._open_pool(revert)
            token = ensure_token(self.pool_dir)
            us = _unix_listener(self.socket_path)
            revert.add(us.close)
            self._start_jobs(revert)
            tls = self._start_nbd(revert)
            self._make_scheduler()
            self._make_app(token, tls)
            revert.add(self._close_hypervisors)
            self._start_uvicorn(tcp, us, UnixMarker(self.app))
            revert.add(self._stop_uvicorn)
            self.filer.kv_put("daemon", "last_start", self.info)
            resumed = self.jobs.recover()
            if resumed:
                log.info("resumed %d interrupted job(s): %s", len(resumed), ", ".join(resumed))
            self.scheduler.start()
            revert.success()
        return self

    def _listen_api(self, revert):
        """The API's TCP listener (None without --api), before the pool is
        opened, so the lock's holder names its address."""
        if self.api_port is None:
            return None
        tcp = _tcp_listener(self.api_host, self.api_port, "--api")
        revert.add(tcp.close)
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        self.api_url = f"http://{host}:{tcp.getsockname()[1]}"
        return tcp

    def _open_pool(self, revert) -> None:
        from .filer import Filer

        holder = (
            f"coppice serve (pid {os.getpid()}, api {self.api_url or 'unix socket only'}, "
            f"socket {self.socket_path})"
        )
        self.filer = Filer.open(self.pool_dir, holder=holder)
        revert.add(self.filer.close)
        try:
            from .dedup.facade import Dedup

            Dedup(self.filer).attach_inline()
        except Exception as e:  # dedup is optional for serving
            log.warning("inline dedup not attached: %s", e)

    def _start_jobs(self, revert) -> None:
        from .api.app import register_jobs
        from .api.jobs import JobRunner

        self.jobs = JobRunner(self.filer, workers=self.jobs_workers)
        register_jobs(self.jobs, self.filer)
        revert.add(lambda: self.jobs.shutdown(self.graceful_timeout))

    def _start_nbd(self, revert):
        """Start the NBD target; returns its TLS context (None: plain)."""
        from .nbd.server import NBDServer

        tls_ctx = None
        if self.tls_dir:
            from .nbd.tls import server_context

            tls_ctx = server_context(self.tls_dir)
        try:
            self.nbd = NBDServer(
                self.filer.resolver(),
                host=self.nbd_host,
                port=self.nbd_port,
                unix_path=self.nbd_socket_path,
                tls_context=tls_ctx,
                require_tls=self.require_tls,
                require_client_cert=self.require_tls and not self.tls_client_cert_optional,
            ).start()
        except CoppiceError as e:
            raise ListenFailed(
                where=f"NBD {self.nbd_host}:{self.nbd_port}", why=str(e), option="--nbd"
            ) from None
        revert.add(self.nbd.shutdown)
        return tls_ctx

    def _make_scheduler(self) -> None:
        from .api import space_history
        from .api.scheduler import Scheduler

        self.scheduler = Scheduler(clock=self.clock, **({"sleep": self.sleep} if self.sleep else {}))
        for task in default_tasks(self.filer, self.jobs, self.schedule_interval):
            self.scheduler.add(task)
        self.scheduler.add(space_history.task(self.filer))  # the console's space plot

    def _make_app(self, token: str, tls_ctx) -> None:
        from .api.app import create_app, register_app_jobs
        from .api.auth import token_path
        from .api.hypervisors import Hypervisors
        from .provision import import_dir

        nbd_addr = self.nbd.address
        self.info = {
            "pool": self.pool_dir,
            "pool_uuid": self.filer.uuid,
            "api_url": self.api_url,
            "socket": self.socket_path,
            "nbd": f"{nbd_addr[0]}:{nbd_addr[1]}" if nbd_addr else None,
            "nbd_socket": self.nbd_socket_path,
            "tls": bool(tls_ctx),
            "connect": self.connect,
            "pid": os.getpid(),
            "started": time.time(),
        }
        self.app = create_app(
            self.filer,
            self.jobs,
            token=token,
            token_path=token_path(self.pool_dir),
            scheduler=self.scheduler,
            nbd=self.nbd,
            daemon_info=self.info,
        )
        self.app.state.hypervisors = Hypervisors(self.connect)
        import_dir.install(self.app.state, self.filer, self.import_dir)  # host files for requests
        register_app_jobs(self.jobs, self.app)

    def _start_uvicorn(self, tcp, us, unix_app) -> None:
        import uvicorn

        def config(app):
            return uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=self.graceful_timeout,
                proxy_headers=False,
            )

        pairs = []
        if tcp is not None:
            pairs.append((uvicorn.Server(config(self.app)), tcp))
        pairs.append((uvicorn.Server(config(unix_app)), us))
        self._servers = [s for s, _ in pairs]
        failed: list[BaseException] = []

        async def main():
            await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in pairs))

        def run():
            try:
                asyncio.run(main())
            except BaseException as e:  # reported to start() below
                failed.append(e)
                log.exception("the API server stopped")

        self._uv_thread = threading.Thread(target=run, name="uvicorn", daemon=True)
        self._uv_thread.start()
        deadline = time.monotonic() + 30
        while not all(s.started for s in self._servers):
            if failed or not self._uv_thread.is_alive() or time.monotonic() > deadline:
                raise ListenFailed(
                    where=self.api_url or self.socket_path,
                    why=str(failed[0]) if failed else "the API server did not start",
                    option="--api",
                )
            time.sleep(0.01)

    # ---- stop -------------------------------------------------------------------------
    def _stop_uvicorn(self) -> None:
        for s in self._servers:
            s.should_exit = True
        if self._uv_thread is not None:
            self._uv_thread.join(self.graceful_timeout + 5)

    def _close_hypervisors(self) -> None:
        hv = getattr(getattr(self, "app", None), "state", None)
        hv = getattr(hv, "hypervisors", None)
        if hv is not None:
            hv.close_all()

    def stop(self) -> None:
        """Graceful shutdown; safe to call twice and from any thread but a request's."""
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down")
        if getattr(self, "app", None) is not None:
            self.app.state.stopping = True
        if self.scheduler is not None:
            self.scheduler.stop(self.graceful_timeout)
        # API and NBD stop accepting and finish in flight, side by side.
        nbd_stop = (
            threading.Thread(target=self.nbd.shutdown, args=(self.graceful_timeout,), name="nbd-stop")
            if self.nbd is not None
            else None
        )
        if nbd_stop:
            nbd_stop.start()
        self._stop_uvicorn()
        if self.jobs is not None:
            self.jobs.shutdown(self.graceful_timeout)
        self._close_hypervisors()
        if nbd_stop:
            nbd_stop.join(self.graceful_timeout + 5)
        try:
            self.filer.flush()
        finally:
            self.filer.close()
        for p in (self.socket_path,):
            try:
                os.unlink(p)
            except OSError:
                pass
        log.info("stopped")

    def request_stop(self, *_):
        self._stop_event.set()

    def run(self) -> int:
        """Start, print the ready line, serve until SIGTERM/SIGINT, stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        self.start()
        print(
            f"coppice serve: ready api={self.api_url or '-'} nbd={self.info['nbd'] or '-'} "
            f"socket={self.socket_path} pid={os.getpid()}",
            flush=True,
        )
        try:
            while not self._stop_event.wait(1.0):
                pass
        finally:
            self.stop()
        return 0


def default_tasks(filer, jobs, interval: float = 60.0):
    """The scheduler's tasks: snapshot schedules and dedup schedules."""
    from .api.scheduler import Task

    def snapshots(now: float):
        return filer.snap_sched_tick(_dt.datetime.fromtimestamp(now))

    def dedup_scans(now: float):
        from .dedup.facade import Dedup

        vols = Dedup(filer).due(now)
        if not vols:
            return []
        if any(j["state"] in ("queued", "running") for j in jobs.list(kind="dedup_scan")):
            return []  # one scan at a time; the schedule is still due at the next tick
        jobs.submit("dedup_scan", {"volumes": vols, "full": False, "scheduled": True})
        return vols

    return [
        Task("snap_sched", snapshots, interval=interval),
        Task("sis_schedule", dedup_scans, interval=interval),
    ]


def main(argv=None) -> int:  # `python -m coppice.daemon POOL` for systems without the CLI
    import argparse

    ap = argparse.ArgumentParser(prog="coppice-serve")
    ap.add_argument("pool")
    ap.add_argument("--api", default=f"127.0.0.1:{DEFAULT_API_PORT}")
    ap.add_argument("--nbd", default=f"127.0.0.1:{DEFAULT_NBD_PORT}")
    ap.add_argument("--tls-dir")
    ap.add_argument("--require-tls", action="store_true")
    ap.add_argument("--tls-client-cert-optional", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return Daemon(
            a.pool,
            api=a.api,
            nbd=a.nbd,
            tls_dir=a.tls_dir,
            require_tls=a.require_tls,
            tls_client_cert_optional=a.tls_client_cert_optional,
        ).run()
    except CoppiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())
