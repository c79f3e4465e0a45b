"""`coppice`: the command line entry point (`coppice.cli.main:main`).

Contract: global ``--pool DIR`` (default ``$COPPICE_POOL``, else
``$XDG_DATA_HOME/coppice/pool`` or ``~/.local/share/coppice/pool``); one
command group per module. Exit codes are the errors' ``exit_code``.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys

import typer

from ..engine import PoolDamaged
from .common import STATE

# Every command word: (module in coppice.cli, attribute, "group" | "command").
# A run imports and builds only the one it names (a user's `coppice snap
# create` does not pay for the provisioner's modules and 150 Typer
# signatures); help, or a word not listed here, builds them all.
ENTRIES: dict[str, tuple[str, str, str]] = {
    "pool": ("pool_cmd", "app", "group"),
    "vol": ("vol_cmd", "app", "group"),
    "snap": ("snap_cmd", "app", "group"),
    "lun": ("lun_cmd", "app", "group"),
    "igroup": ("igroup_cmd", "app", "group"),
    "df": ("df_cmd", "df", "command"),
    "fsck": ("pool_cmd", "fsck", "command"),
    "scrub": ("pool_cmd", "scrub", "command"),
    "serve": ("serve_cmd", "serve", "command"),  # the daemon's owner, coppice/daemon.py
    "tls": ("tls_cmd", "app", "group"),  # over coppice/nbd/tls.py
    "nbd": ("nbd_cmd", "app", "group"),  # the NBD target's owner
    "compare": ("compare_cmd", "compare", "command"),  # coppice/provision/compare.py
    "template": ("template_cmd", "app", "group"),
    "custspec": ("custspec_cmd", "app", "group"),
    "vm": ("vm_cmd", "app", "group"),
    "datastore": ("datastore_cmd", "app", "group"),
    "sis": ("sis_cmd", "app", "group"),
}


def _global(
    pool: str | None = typer.Option(
        None,
        "--pool",
        envvar="COPPICE_POOL",
        metavar="DIR",
        help="Pool directory (default $COPPICE_POOL or a per-user data dir).",
    ),
):
    STATE.pool = pool


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI with every command word, or with ``only`` that one."""
    app = typer.Typer(
        help="Coppice: a copy-on-write filer, NBD target and VM provisioner.",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["--help"]},
    )
    app.callback()(_global)
    for name, (module, attr, kind) in ENTRIES.items():
        if only is not None and name != only:
            continue
        obj = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        if kind == "group":
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)
    return app


def command_word(argv: list[str]) -> str | None:
    """The command word ``argv`` names after the global options, if it is
    one of ``ENTRIES``."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--pool":
            i += 2
        elif a.startswith("--pool="):
            i += 1
        else:
            return a if a in ENTRIES else None
    return None


def __getattr__(name: str):
    # `from coppice.cli.main import app`: the whole CLI, built on first use.
    if name == "app":
        app = globals()["app"] = build_app()
        return app
    raise AttributeError(name)


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return build_app(command_word(args))(args=args, prog_name="coppice")
    except sqlite3.DatabaseError as e:
        # pool.db damaged where the engine found it only after opening (the
        # engine reports damage found while opening as PoolDamaged).
        typer.echo(
            f"Error: the pool's metadata database pool.db is damaged ({e}); restore it from a backup",
            err=True,
        )
        raise SystemExit(PoolDamaged.exit_code) from None


if __name__ == "__main__":
    main()
