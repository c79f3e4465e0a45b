"""`coppice igroup`: create, destroy, add, remove, show, rename, set."""

from __future__ import annotations

import typer

from .common import JSON_OPT, command, emit_json, filer

app = typer.Typer(help="Initiator groups: who may see mapped LUNs.", no_args_is_help=True)


@app.command("create")
@command
def create(
    name: str,
    initiators: list[str] | None = typer.Argument(None, help="Initiator names or IP networks."),
    iscsi: bool = typer.Option(False, "-i", help="iSCSI-style igroup (the default)."),
    fcp: bool = typer.Option(False, "-f", help="FCP igroup."),
    nbd: bool = typer.Option(False, "-n", help="NBD igroup."),
    ostype: str = typer.Option("linux", "-t", "--ostype"),
    json_: bool = JSON_OPT,
):
    """Create an igroup: `igroup create -i -t linux esx1 iqn.…`."""
    protocol = "fcp" if fcp else "nbd" if nbd else "iscsi"
    with filer() as f:
        g = f.igroup_create(name, initiators or [], ostype=ostype, protocol=protocol)
    if json_:
        return emit_json(g)
    typer.echo(f"Initiator group {name} created ({protocol}, {ostype}, {len(g['initiators'])} initiator(s)).")
    _hint(g)


def _hint(g: dict) -> None:
    from ..filer.igroup import nbd_identity_hint

    hint = nbd_identity_hint(g)
    if hint:
        typer.echo(hint, err=True)


@app.command("destroy")
@command
def destroy(name: str, force: bool = typer.Option(False, "-f", help="Unmap its LUNs first.")):
    """Destroy an igroup (refused while LUNs are mapped to it unless -f)."""
    with filer() as f:
        f.igroup_destroy(name, force=force)
    typer.echo(f"Initiator group {name} destroyed.")


@app.command("add")
@command
def add(name: str, initiator: str):
    """Add an initiator (name or IP network) to an igroup."""
    with filer() as f:
        f.igroup_add(name, initiator)
    typer.echo(f"Initiator {initiator} added to {name}.")


@app.command("remove")
@command
def remove(name: str, initiator: str):
    """Remove an initiator from an igroup."""
    with filer() as f:
        f.igroup_remove(name, initiator)
    typer.echo(f"Initiator {initiator} removed from {name}.")


@app.command("rename")
@command
def rename(old: str, new: str):
    """Rename an igroup (its maps follow)."""
    with filer() as f:
        f.igroup_rename(old, new)
    typer.echo(f"Initiator group {old} renamed to {new}.")


@app.command("set")
@command
def set_(name: str, attribute: str, value: str):
    """Set an igroup attribute: ostype."""
    from ..filer.errors import BadOption

    if attribute != "ostype":
        raise BadOption(detail=f"unknown igroup attribute {attribute!r}: use ostype")
    with filer() as f:
        f.igroup_set(name, value)
    typer.echo(f"Initiator group {name}: ostype set to {value}.")


@app.command("show")
@command
def show(name: str | None = typer.Argument(None), json_: bool = JSON_OPT):
    """Show igroups, their initiators and mapped LUNs."""
    with filer() as f:
        groups = f.igroup_show(name)
    if json_:
        return emit_json(groups)
    if not groups:
        return typer.echo("No initiator groups.")
    for g in groups:
        typer.echo(f"    {g['name']} ({g['protocol']}) (ostype: {g['ostype']}):")
        for i in g["initiators"]:
            typer.echo(f"        {i}")
        for lun in g["luns"]:
            typer.echo(f"        LUN {lun['lun_id']}: {lun['path']}")
