"""`coppice`: the command line entry point (`coppice.cli.main:main`).

Contract: global ``--pool DIR`` (default ``$COPPICE_POOL``, else
``$XDG_DATA_HOME/coppice/pool`` or ``~/.local/share/coppice/pool``); one
command group per module. Exit codes are the errors' ``exit_code``.
"""

from __future__ import annotations

import sqlite3

import typer

from ..engine import PoolDamaged
from . import df_cmd, igroup_cmd, lun_cmd, pool_cmd, snap_cmd, vol_cmd
from .common import STATE

app = typer.Typer(
    help="Coppice: a copy-on-write filer, NBD target and VM provisioner.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["--help"]},
)


@app.callback()
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


app.add_typer(pool_cmd.app, name="pool")
app.add_typer(vol_cmd.app, name="vol")
app.add_typer(snap_cmd.app, name="snap")
app.add_typer(lun_cmd.app, name="lun")
app.add_typer(igroup_cmd.app, name="igroup")
app.command("df")(df_cmd.df)
app.command("fsck")(pool_cmd.fsck)
app.command("scrub")(pool_cmd.scrub)
from . import serve_cmd  # noqa: E402  (daemon owner: `coppice serve`, see coppice/daemon.py)

app.command("serve")(serve_cmd.serve)

from . import tls_cmd  # noqa: E402  (`coppice tls init|client`, over coppice/nbd/tls.py)

app.add_typer(tls_cmd.app, name="tls")
from . import nbd_cmd  # noqa: E402  (`coppice nbd who`, the NBD target's owner)

app.add_typer(nbd_cmd.app, name="nbd")
from . import compare_cmd  # noqa: E402  (`coppice compare`, coppice/provision/compare.py)

app.command("compare")(compare_cmd.compare)

from . import custspec_cmd, datastore_cmd, template_cmd, vm_cmd  # noqa: E402  (provisioner's groups)

app.add_typer(template_cmd.app, name="template")
app.add_typer(custspec_cmd.app, name="custspec")
app.add_typer(vm_cmd.app, name="vm")
app.add_typer(datastore_cmd.app, name="datastore")

from . import sis_cmd  # noqa: E402

app.add_typer(sis_cmd.app, name="sis")


def main(argv=None) -> int:
    try:
        return app(args=argv, prog_name="coppice")
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
