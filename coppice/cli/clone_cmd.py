"""`coppice vol clone`: create, show, split start|status|stop|estimate."""

from __future__ import annotations

import typer

from ..filer.sizes import format_size
from .common import JSON_OPT, command, console, emit_json, filer, warn

app = typer.Typer(help="FlexClones: writable volumes from a snapshot, and clone split.", no_args_is_help=True)
split_app = typer.Typer(help="Make a clone independent of its parent snapshot.", no_args_is_help=True)
app.add_typer(split_app, name="split")


@app.command("create")
@command
def create(
    new: str = typer.Argument(..., help="Name of the clone volume."),
    parent: str = typer.Option(..., "-b", help="Parent volume."),
    snapshot: str = typer.Argument(..., help="Parent snapshot the clone is rooted at."),
    remap: bool = typer.Option(
        False, "--remap", help="Map the clone's LUNs with the lowest free IDs and bring them online."
    ),
    sched: str | None = typer.Option(None, "--sched", help="Snapshot schedule for the clone (default none)."),
    json_: bool = JSON_OPT,
):
    """Create a FlexClone of PARENT's SNAPSHOT (O(1))."""
    with filer() as f:
        r = f.clone_create(new, parent, snapshot, remap=remap, schedule=sched)
    if json_:
        return emit_json(r)
    typer.echo(f"Creation of clone volume '{new}' has completed (parent {parent}, snapshot {snapshot}).")
    for m in r["messages"]:
        warn(m)
    if remap:
        for lun in r["luns"]:
            ids = ", ".join(f"{m['igroup']}:{m['lun_id']}" for m in lun["maps"]) or "unmapped"
            typer.echo(f"LUN {lun['path']} online, mapped {ids}.")


@app.command("show")
@command
def show(json_: bool = JSON_OPT):
    """The clone tree: every clone with its parent volume and snapshot."""
    from rich.table import Table

    with filer() as f:
        rows = f.clone_show()
    if json_:
        return emit_json(rows)
    if not rows:
        return typer.echo("No clones.")
    t = Table(box=None, pad_edge=False)
    for c in ("Clone", "Parent volume", "Parent snapshot", "Shared", "Split"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            r["volume"],
            r["parent_volume"],
            r["parent_snapshot"],
            format_size(r["shared"]),
            (r["split"] or {}).get("state", "-"),
        )
    console().print(t)


@split_app.command("start")
@command
def split_start(volume: str, json_: bool = JSON_OPT):
    """Split a clone from its parent snapshot (copies the shared blocks)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with filer() as f:
        est = f.clone_split_estimate(volume)
        if not json_:
            typer.echo(
                f"Clone volume '{volume}' will be split from its parent; {format_size(est['bytes'])} to copy."
            )
        steps = f.clone_split_steps(volume)
        con = console()
        with Progress(
            TextColumn("split {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=con,
            transient=True,
            disable=json_ or not con.is_terminal,
        ) as bar:
            task = bar.add_task(volume, total=None)
            for done, total in steps:
                bar.update(task, completed=done, total=total or 1)
        st = f.clone_split_status(volume)
    if json_:
        return emit_json(st)
    typer.echo(f"Clone volume '{volume}' has been split from its parent volume.")


@split_app.command("status")
@command
def split_status(volume: str, json_: bool = JSON_OPT):
    """Progress of a clone split."""
    with filer() as f:
        st = f.clone_split_status(volume)
    if json_:
        return emit_json(st)
    if not st["clone"] and st["state"] in ("none", "not a clone"):
        return typer.echo(f"Volume '{volume}' is not a clone.")
    typer.echo(
        f"Volume '{volume}': split {st['state']}, {st['percent']}% "
        f"({st['done']}/{st['total']} steps), {format_size(st['remaining_bytes'])} still shared."
    )


@split_app.command("stop")
@command
def split_stop(volume: str, json_: bool = JSON_OPT):
    """Stop a clone split (it can be started again later)."""
    with filer() as f:
        st = f.clone_split_stop(volume)
    if json_:
        return emit_json(st)
    typer.echo(f"Clone split of '{volume}' stopped.")


@split_app.command("estimate")
@command
def split_estimate(volume: str, json_: bool = JSON_OPT):
    """Space a split will need."""
    with filer() as f:
        e = f.clone_split_estimate(volume)
    if json_:
        return emit_json(e)
    typer.echo(
        f"An estimated {format_size(e['bytes'])} available storage is required in the pool "
        f"to split clone volume '{volume}' from its parent ({format_size(e['pool_free'])} free)."
    )
