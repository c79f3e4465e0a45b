"""`coppice lun`: create, show, resize, destroy, online/offline, map/unmap,
move, comment, and `lun clone create`."""

from __future__ import annotations

import typer

from ..filer.sizes import format_size
from .common import JSON_OPT, command, console, emit_json, filer

app = typer.Typer(help="LUNs: create, show, resize, online/offline, map/unmap, clone.", no_args_is_help=True)
clone_app = typer.Typer(help="LUN clones inside a volume.", no_args_is_help=True)
app.add_typer(clone_app, name="clone")


@app.command("create")
@command
def create(
    path: str = typer.Argument(..., help="/vol/VOLUME/LUN"),
    size: str = typer.Option(..., "-s", "--size", help="Size, e.g. 10g."),
    ostype: str = typer.Option("linux", "-t", "--ostype"),
    comment: str = typer.Option("", "--comment"),
    json_: bool = JSON_OPT,
):
    """Create a (thin) LUN."""
    with filer() as f:
        lun = f.lun_create(path, size, ostype=ostype, comment=comment)
    if json_:
        return emit_json(lun)
    typer.echo(
        f"LUN {path} created: {format_size(lun['size'])}, ostype {lun['ostype']}, serial {lun['serial']}."
    )


def _line(lun) -> str:
    flags = ["r/o" if lun["read_only"] else "r/w", lun["state"] if not lun["read_only"] else "snapshot"]
    if lun["maps"]:
        flags.append("mapped")
    return f"        {lun['path']:<40} {format_size(lun['size']):>6} ({lun['size']})  ({', '.join(flags)})"


@app.command("show")
@command
def show(
    path: str | None = typer.Argument(None),
    maps: bool = typer.Option(False, "-m", help="Show the maps: igroup and LUN ID."),
    verbose: bool = typer.Option(False, "-v", help="All attributes."),
    volume: str | None = typer.Option(None, "--volume"),
    snapshots: bool = typer.Option(False, "--snapshots", help="Include snapshot LUNs."),
    json_: bool = JSON_OPT,
):
    """Show LUNs (with -m: their maps)."""
    from rich.table import Table

    with filer() as f:
        luns = f.lun_show(path, volume=volume, snapshots=snapshots)
    if json_:
        return emit_json(luns)
    if not luns:
        return typer.echo("No LUNs.")
    if maps:
        t = Table(box=None, pad_edge=False)
        for c in ("LUN path", "Mapped to", "LUN ID", "State"):
            t.add_column(c, justify="right" if c == "LUN ID" else "left")
        for lun in luns:
            if not lun["maps"]:
                t.add_row(lun["path"], "-", "-", lun["state"])
            for m in lun["maps"]:
                t.add_row(lun["path"], m["igroup"], str(m["lun_id"]), lun["state"])
        console().print(t)
    else:
        for lun in luns:
            typer.echo(_line(lun))
            if verbose:
                typer.echo(f"                Serial#: {lun['serial']}")
                typer.echo(f"                OS Type: {lun['ostype']}")
                typer.echo(f"                Used: {format_size(lun['used'])}")
                if lun["comment"]:
                    typer.echo(f"                Comment: {lun['comment']}")
                for m in lun["maps"]:
                    typer.echo(f"                Maps: {m['igroup']}={m['lun_id']}")
    for lun in luns:
        if lun.get("offline_reason"):
            typer.echo(f"LUN {lun['path']} is offline: {lun['offline_reason']}")


# "-N" is a size here, not an option (Click would refuse it as an unknown option)
@app.command("resize", context_settings={"ignore_unknown_options": True})
@command
def resize(
    path: str, size: str, force: bool = typer.Option(False, "-f", help="Allow shrinking below the data.")
):
    """Resize a LUN (SIZE absolute, or +N / -N)."""
    with filer() as f:
        lun = f.lun_resize(path, size, force=force)
    typer.echo(f"LUN {path} resized to {format_size(lun['size'])}.")


@app.command("destroy")
@command
def destroy(path: str, force: bool = typer.Option(False, "-f", help="Also when mapped.")):
    """Destroy a LUN (refused while mapped unless -f)."""
    with filer() as f:
        f.lun_destroy(path, force=force)
    typer.echo(f"LUN {path} destroyed.")


@app.command("online")
@command
def online(path: str):
    """Bring a LUN online (refused while one of its maps collides)."""
    with filer() as f:
        f.lun_online(path)
    typer.echo(f"LUN {path} is online.")


@app.command("offline")
@command
def offline(path: str):
    """Take a LUN offline: no initiator sees it."""
    with filer() as f:
        f.lun_offline(path)
    typer.echo(f"LUN {path} is offline.")


@app.command("map")
@command
def map_(
    path: str,
    igroup: str,
    lun_id: str | None = typer.Argument(None, help="LUN ID; default lowest free."),
    json_: bool = JSON_OPT,
):
    """Map a LUN to an igroup under a LUN ID."""
    with filer() as f:
        i = f.lun_map(path, igroup, lun_id)
    if json_:
        return emit_json({"path": path, "igroup": igroup, "lun_id": i})
    typer.echo(f"LUN {path} was mapped to initiator group {igroup}={i}.")


@app.command("unmap")
@command
def unmap(path: str, igroup: str):
    """Unmap a LUN from an igroup."""
    with filer() as f:
        f.lun_unmap(path, igroup)
    typer.echo(f"LUN {path} unmapped from initiator group {igroup}.")


@app.command("move")
@command
def move(path: str, new_path: str):
    """Rename a LUN within its volume."""
    with filer() as f:
        f.lun_rename(path, new_path)
    typer.echo(f"LUN {path} moved to {new_path}.")


@app.command("comment")
@command
def comment(path: str, text: str):
    """Set a LUN's comment."""
    with filer() as f:
        f.lun_comment(path, text)
    typer.echo(f"LUN {path}: comment set.")


@clone_app.command("create")
@command
def clone_create(
    new_path: str,
    parent: str = typer.Option(..., "-b", help="Parent LUN path."),
    snapshot: str = typer.Argument(..., help="Snapshot of the volume holding the parent LUN."),
    json_: bool = JSON_OPT,
):
    """Clone a LUN as it was in SNAPSHOT, inside the same volume (O(1))."""
    with filer() as f:
        lun = f.lun_clone_create(new_path, parent, snapshot)
    if json_:
        return emit_json(lun)
    typer.echo(f"LUN {new_path} cloned from {parent} in snapshot {snapshot}, serial {lun['serial']}.")
