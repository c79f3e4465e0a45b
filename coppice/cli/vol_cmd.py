"""`coppice vol`: create, show, destroy, rename, size, options (and the
`vol clone` group from clone_cmd)."""

from __future__ import annotations

import typer

from ..filer.sizes import format_size
from .common import JSON_OPT, command, console, emit_json, filer

app = typer.Typer(help="FlexVols: create, show, destroy, size, options, clones.", no_args_is_help=True)


@app.command("create")
@command
def create(
    name: str = typer.Argument(..., help="Volume name."),
    size: str = typer.Argument(..., help="Size, e.g. 20g."),
    guarantee: str = typer.Option(
        "none", "-s", "--space-guarantee", help="none (thin, default) or volume (thick)."
    ),
    snap_reserve: int | None = typer.Option(None, "--snap-reserve", help="Snapshot reserve, percent."),
    json_: bool = JSON_OPT,
):
    """Create a FlexVol (thin unless -s volume)."""
    with filer() as f:
        v = f.vol_create(name, size, guarantee=guarantee, snap_reserve=snap_reserve)
    if json_:
        return emit_json(v)
    typer.echo(
        f"Volume {name} created: {format_size(v['size'])}, "
        f"{'thin' if v['guarantee'] == 'none' else 'thick'}, snap reserve {v['snap_reserve']}%."
    )


def _vol_table(vols):
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for c in ("Volume", "Size", "Used", "Avail", "Shared", "Guarantee", "Snaps", "LUNs", "Parent", "Clones"):
        t.add_column(
            c, justify="right" if c in ("Size", "Used", "Avail", "Shared", "Snaps", "LUNs") else "left"
        )
    for v in vols:
        t.add_row(
            v["name"],
            format_size(v["size"]),
            format_size(v["used"]),
            format_size(v["available"]),
            format_size(v["shared"]),
            v["guarantee"],
            str(v["snapshots"]),
            str(v["luns"]),
            v["parent"] or "-",
            ",".join(v["clones"]) or "-",
        )
    return t


@app.command("show")
@command
def show(name: str | None = typer.Argument(None), json_: bool = JSON_OPT):
    """Show volumes: size, used, shared, parent, clones."""
    with filer() as f:
        vols = f.vol_show(name)
    if json_:
        return emit_json(vols)
    if not vols:
        return typer.echo("No volumes.")
    console().print(_vol_table(vols))


@app.command("status")
@command
def status(name: str | None = typer.Argument(None), json_: bool = JSON_OPT):
    """Same as `vol show` (7-mode spelling)."""
    show(name, json_)


@app.command("destroy")
@command
def destroy(
    name: str,
    force: bool = typer.Option(False, "-f", "--force", help="Also when LUNs are mapped."),
    children: bool = typer.Option(False, "--children", help="With -f: destroy dependent clones too."),
):
    """Destroy a volume and its snapshots (refused while clones depend on it)."""
    with filer() as f:
        gone = f.vol_destroy(name, force=force, children=children)
    for v in gone:
        typer.echo(f"Volume {v} destroyed.")


@app.command("rename")
@command
def rename(old: str, new: str):
    """Rename a volume."""
    with filer() as f:
        f.vol_rename(old, new)
    typer.echo(f"Volume {old} renamed to {new}.")


# "-N" is a size here, not an option (Click would refuse it as an unknown option)
@app.command("size", context_settings={"ignore_unknown_options": True})
@command
def size(
    name: str,
    new_size: str | None = typer.Argument(None, help="New size, or +N / -N."),
    json_: bool = JSON_OPT,
):
    """Show or set a volume's size (grow; shrink when the data fits)."""
    with filer() as f:
        v = f.vol_size(name, new_size) if new_size is not None else f.vol_info(name)
    if json_:
        return emit_json({"volume": name, "size": v["size"]})
    if new_size is None:
        typer.echo(f"vol size: Flexible volume '{name}' has size {format_size(v['size'])}.")
    else:
        typer.echo(f"vol size: Flexible volume '{name}' size set to {format_size(v['size'])}.")


@app.command("options")
@command
def options(
    name: str,
    option: str | None = typer.Argument(None),
    value: str | None = typer.Argument(None),
    json_: bool = JSON_OPT,
):
    """Show volume options, or set one: nosnap on|off, guarantee none|volume,
    snap_reserve N, snap_sched SPEC."""
    with filer() as f:
        if option is None:
            o = f.vol_options(name)
        else:
            if value is None:
                raise typer.BadParameter(f"option {option} needs a value")
            o = f.vol_set_option(name, option, value)
    if json_:
        return emit_json(o)
    if option is None:
        typer.echo(", ".join(f"{k}={_fmt(k, v)}" for k, v in o.items()))
    else:
        typer.echo(f"Volume {name}: {option} set to {value}.")


def _fmt(k, v):
    if isinstance(v, bool):
        return "on" if v else "off"
    if k == "size":
        return format_size(v)
    return v


def _register_clone():
    from .clone_cmd import app as clone_app

    app.add_typer(clone_app, name="clone")


_register_clone()
