"""`coppice snap`: create, list, delete, rename, restore, reserve, sched."""

from __future__ import annotations

import datetime as _dt

import typer

from ..filer.sizes import format_size
from .common import JSON_OPT, command, console, emit_json, filer

app = typer.Typer(
    help="Snapshots: create, list, delete, rename, restore, reserve, schedules.", no_args_is_help=True
)


@app.command("create")
@command
def create(volume: str, name: str, json_: bool = JSON_OPT):
    """Create snapshot NAME of VOLUME (O(1))."""
    with filer() as f:
        s = f.snap_create(volume, name)
    if json_:
        return emit_json(s)
    typer.echo(f"Snapshot {name} of volume {volume} created.")


@app.command("list")
@command
def list_(volume: str, json_: bool = JSON_OPT):
    """List VOLUME's snapshots, newest first."""
    from rich.table import Table

    with filer() as f:
        snaps = f.snap_list(volume)
    if json_:
        return emit_json(snaps)
    typer.echo(f"Volume {volume}")
    if not snaps:
        return typer.echo("No snapshots exist.")
    t = Table(box=None, pad_edge=False)
    for c in ("date", "name", "written", "unique", "busy"):
        t.add_column(c)
    for s in snaps:
        t.add_row(
            s["created_iso"].replace("T", " "),
            s["name"],
            format_size(s["written"]),
            format_size(s["unique"]),
            f"(busy,vclone: {', '.join(s['clones'])})" if s["busy"] else "",
        )
    console().print(t)


@app.command("delete")
@command
def delete(volume: str, name: str):
    """Delete a snapshot (refused while a clone depends on it)."""
    with filer() as f:
        f.snap_delete(volume, name)
    typer.echo(f"Snapshot {name} of volume {volume} deleted.")


@app.command("rename")
@command
def rename(volume: str, old: str, new: str):
    """Rename a snapshot."""
    with filer() as f:
        f.snap_rename(volume, old, new)
    typer.echo(f"Snapshot {old} of volume {volume} renamed to {new}.")


@app.command("restore")
@command
def restore(
    volume: str, snapshot: str = typer.Option(..., "-s", help="Snapshot to restore."), json_: bool = JSON_OPT
):
    """SnapRestore: bring VOLUME back to SNAPSHOT."""
    with filer() as f:
        r = f.snap_restore(volume, snapshot)
    if json_:
        return emit_json(r)
    typer.echo(f"Volume {volume}: revert successful to snapshot {snapshot}.")
    if r.get("note"):
        typer.echo(r["note"])
    for o in r["offline"]:
        typer.echo(f"Warning: LUN {o['path']} is offline: {o['reason']}")


@app.command("reserve")
@command
def reserve(volume: str, percent: str | None = typer.Argument(None), json_: bool = JSON_OPT):
    """Show or set the snapshot reserve (percent of the volume)."""
    with filer() as f:
        p = f.snap_reserve(volume, percent)
    if json_:
        return emit_json({"volume": volume, "snap_reserve": p})
    typer.echo(f"Volume {volume}: current snapshot reserve is {p}%.")


def _parse_now(now: str | None):
    if now is None:
        return None
    try:
        return _dt.datetime.fromisoformat(now)
    except ValueError:
        from ..filer.errors import BadOption

        raise BadOption(detail=f"--now {now!r} is not an ISO date-time such as 2024-03-03T08:00") from None


def _print_tick(actions, json_):
    if json_:
        return emit_json(actions)
    if not actions:
        return typer.echo("No scheduled snapshots were due.")
    for a in actions:
        extra = ""
        if a["deleted"]:
            extra += f"; deleted {', '.join(a['deleted'])}"
        if a["renamed"]:
            extra += "; renamed " + ", ".join(f"{o}->{n}" for o, n in a["renamed"])
        typer.echo(f"Volume {a['volume']}: created {a['created']}{extra}.")


@app.command("sched")
@command
def sched(
    volume: str | None = typer.Argument(None),
    spec: list[str] | None = typer.Argument(None, help="weeks days hours[@list]; 0 disables."),
    run_now: bool = typer.Option(False, "--run-now", help="Run a schedule tick now."),
    now: str | None = typer.Option(None, "--now", help="The clock for --run-now (ISO date-time)."),
    json_: bool = JSON_OPT,
):
    """Show or set snapshot schedules (7-mode: weeks days hours[@list])."""
    with filer() as f:
        if run_now:
            if spec:
                f.snap_sched(volume, " ".join(spec))
            return _print_tick(f.snap_sched_tick(_parse_now(now), volume), json_)
        if volume is None:
            rows = [f.snap_sched(v["name"]) for v in f.vol_show()]
        else:
            rows = [f.snap_sched(volume, " ".join(spec) if spec else None)]
    if json_:
        return emit_json(rows if volume is None else rows[0])
    for r in rows:
        typer.echo(f"Volume {r['volume']}: {r['text']}")


@app.command("sched-tick")
@command
def sched_tick(
    volume: str | None = typer.Argument(None),
    now: str | None = typer.Option(None, "--now", help="The clock (ISO date-time)."),
    json_: bool = JSON_OPT,
):
    """Take the scheduled snapshots due now (what the daemon runs)."""
    with filer() as f:
        actions = f.snap_sched_tick(_parse_now(now), volume)
    _print_tick(actions, json_)
