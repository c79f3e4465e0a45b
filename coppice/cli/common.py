"""What every command group shares: the pool location, opening the Filer,
error reporting and output.

Contract: ``command`` wraps a command body so that a ``CoppiceError`` prints
one line (``Error: <message>``) on stderr and exits with the error's
``exit_code``; anything else is a bug and keeps its traceback.
``filer()``, ``provisioning()`` and ``dedup()`` give one command the
façade of a layer for the pool named by ``--pool`` / ``$COPPICE_POOL`` /
the per-user default: the daemon's when `coppice serve` serves the pool,
else the pool opened in this process. That choice is made here, once; no
command knows which it got. ``emit_json`` prints JSON on
stdout and nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager

import typer

from ..errors import CoppiceError


class State:
    pool: str | None = None


STATE = State()


def default_pool() -> str:
    env = os.environ.get("COPPICE_POOL")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "coppice", "pool")


def pool_path() -> str:
    return STATE.pool or default_pool()


class Session:
    """One command's way in: the façade of each layer, local or remote, chosen once."""

    def __init__(self, filer, provisioning_factory, dedup_factory):
        self.filer = filer
        self._make = {"provision": provisioning_factory, "dedup": dedup_factory}
        self._made: dict = {}

    def layer(self, name: str):
        if name not in self._made:
            self._made[name] = self._make[name]()
        return self._made[name]

    def close(self) -> None:
        for f in self._made.values():
            f.close()
        self.filer.close()


def open_session() -> Session:
    """The daemon serving the pool when one runs (its socket POOL/coppice.sock, or
    $COPPICE_URL), else the pool opened here under its lock; decided once."""
    from ..client import connect

    daemon = connect(pool_path())
    if daemon is not None:
        from ..remote import RemoteDedup, RemoteFiler, RemoteProvisioning

        return Session(RemoteFiler(daemon), lambda: RemoteProvisioning(daemon), lambda: RemoteDedup(daemon))
    from ..filer import Filer

    f = Filer.open(pool_path(), holder=f"coppice CLI (pid {os.getpid()})")

    def provisioning():
        from ..provision.facade import Provisioning

        return Provisioning(f)

    def dedup():
        from ..dedup.facade import Dedup

        return Dedup(f)

    return Session(f, provisioning, dedup)


@contextmanager
def _layer(name: str | None):
    s = open_session()
    try:
        yield s.filer if name is None else s.layer(name)
    finally:
        s.close()


@contextmanager
def session():
    """Every layer's façade for one command, over one pool opening (``Session``)."""
    s = open_session()
    try:
        yield s
    finally:
        s.close()


def filer():
    """The Filer API for one command (``Filer`` or ``RemoteFiler``)."""
    return _layer(None)


def provisioning():
    """The Provisioning API for one command (``Provisioning`` or ``RemoteProvisioning``)."""
    return _layer("provision")


def dedup():
    """The Dedup API for one command (``Dedup`` or ``RemoteDedup``)."""
    return _layer("dedup")


def console():
    from rich.console import Console

    # Not a terminal (pipes, tests): wide enough that tables never wrap.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False)


def err(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)


def warn(message: str) -> None:
    typer.echo(f"Warning: {message}")


def command(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CoppiceError as e:
            err(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


JSON_OPT = typer.Option(False, "--json", help="Print JSON for programs instead of text.")
