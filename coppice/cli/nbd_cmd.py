"""`coppice nbd who [PATH]`: who may open a LUN over NBD, and who is connected.

Contract: with a LUN path, prints the igroups the LUN is mapped to (for a
snapshot LUN: those of the LUN it was taken of), each member and how the
NBD target matches it (address, network or TLS certificate name), and
whether the LUN is online; then the connections the running daemon holds
(to that LUN and its snapshot LUNs, or all of them without a path). Asks
the daemon when one serves the pool; without one, nobody can be connected
and it says so. Read-only.
"""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, emit_json, pool_path

app = typer.Typer(help="The NBD target: who may connect, who is connected.", no_args_is_help=True)

_NAME_HINT = (
    "An NBD initiator is matched by its IP address (or a network in CIDR form) "
    "or by its TLS client certificate's name; an iSCSI-style name matches only "
    "a client presenting a certificate with that name."
)


def _gather(path: str | None) -> tuple[dict, bool]:
    from ..client import connect

    remote = connect(pool_path())
    if remote is not None:
        try:
            return remote.request("GET", "/nbd/who", params={"path": path}), True
        finally:
            remote.close()
    import os

    from ..filer import Filer
    from ..filer.export_resolver import who

    f = Filer.open(pool_path(), holder=f"coppice CLI (pid {os.getpid()})")
    try:
        return who(f, path, None), False
    finally:
        f.close()


@app.command("who")
@command
def who_cmd(
    path: str | None = typer.Argument(None, help="A LUN path (/vol/V/LUN or /vol/V/.snapshot/S/LUN)."),
    json_: bool = JSON_OPT,
):
    """Which initiators a LUN's igroups let in, and who is connected."""
    data, daemon = _gather(path)
    if json_:
        return emit_json(dict(data, daemon=daemon))
    lun = data.get("lun")
    if lun is not None:
        by = lun["authorized_by"]
        state = "online" if lun["online"] else "offline"
        if by is None:
            typer.echo(f"{lun['path']}: the LUN it was taken of is gone; only the local socket may open it.")
        else:
            via = "" if by == lun["path"] else f" (authorized by {by})"
            typer.echo(f"{lun['path']}{via}: {state}")
        if not lun["igroups"] and by is not None:
            typer.echo("  not mapped to any igroup: only the local socket may open it.")
        names_only = False
        for g in lun["igroups"]:
            typer.echo(f"  igroup {g['igroup']} (LUN ID {g['lun_id']}):")
            if not g["members"]:
                typer.echo("    (no members)")
            for m in g["members"]:
                typer.echo(f"    {m['initiator']}  matched by {m['matched_by']}")
                names_only = names_only or m["matched_by"] == "TLS certificate name"
        if names_only:
            typer.echo(f"  {_NAME_HINT}")
    conns = data.get("connections")
    if not daemon:
        typer.echo("No daemon serves this pool: nobody is connected (start one with `coppice serve`).")
        return None
    typer.echo(f"Connected: {len(conns)}")
    for c in conns:
        cert = c["certificate_name"] or "-"
        tls = "tls" if c["tls"] else "plain"
        typer.echo(
            f"  {c['address']}  cert={cert}  {tls}  {c['state']}  {c['export'] or '-'}  since {c['since']}"
        )
    return None
