"""What every command group shares: the pool location, opening the Filer,
error reporting and output.

Contract: ``command`` wraps a command body so that a ``CoppiceError`` prints
one line (``Error: <message>``) on stderr and exits with the error's
``exit_code``; anything else is a bug and keeps its traceback. ``filer()``
opens the pool named by ``--pool`` / ``$COPPICE_POOL`` / the per-user
default for the duration of one command. ``emit_json`` prints JSON on
stdout and nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager

import typer
from rich.console import Console

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


@contextmanager
def filer():
    # Daemon owner's edit (coppice/client.py): when `coppice serve` serves this pool (its
    # socket POOL/coppice.sock, or $COPPICE_URL), talk to it with RemoteFiler — the same
    # methods, results and errors, so every command prints the same either way.
    from ..client import connect

    remote = connect(pool_path())
    if remote is not None:
        try:
            yield remote
        finally:
            remote.close()
        return
    from ..filer import Filer

    f = Filer.open(pool_path(), holder=f"coppice CLI (pid {os.getpid()})")
    try:
        yield f
    finally:
        f.close()


def console() -> Console:
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


def is_remote(f) -> bool:
    """`coppice serve` owns the pool: the same call goes through its REST
    API, with the same result or error."""
    return getattr(f, "remote", False)


def path_segment(name: str) -> str:
    """A name as one URL path segment of the daemon's API."""
    from ..client import _segment

    return _segment(name, None)
