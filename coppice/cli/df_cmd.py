"""`coppice df [-s] [VOL]`: used, available, snapshot reserve; with -s what
clones, snapshots and deduplication saved."""

from __future__ import annotations

import typer

from ..filer.sizes import format_size
from .common import JSON_OPT, command, console, emit_json, filer


def _k(n) -> str:
    return str(n // 1024)


@command
def df(
    volume: str | None = typer.Argument(None),
    savings: bool = typer.Option(False, "-s", help="Space saved by clones, snapshots and dedup."),
    human: bool = typer.Option(False, "-h", help="Sizes as 20g rather than KiB."),
    json_: bool = JSON_OPT,
):
    """Space per volume (7-mode df)."""
    from rich.table import Table

    with filer() as f:
        d = f.df(volume, savings=savings)
    if json_:
        return emit_json(d)
    fmt = format_size if human else _k
    t = Table(box=None, pad_edge=False)
    if savings:
        for c in ("Filesystem", "used", "saved", "%saved", "clones", "dedup"):
            t.add_column(c, justify="left" if c == "Filesystem" else "right")
        for r in d["volumes"]:
            t.add_row(
                r["path"],
                fmt(r["used"]),
                fmt(r["saved"]),
                f"{r['saved_pct']}%",
                fmt(r["saved_clones"]),
                fmt(r["saved_dedup"]),
            )
    else:
        unit = "" if human else "kbytes"
        for c in ("Filesystem", unit or "total", "used", "avail", "capacity"):
            t.add_column(c, justify="left" if c == "Filesystem" else "right")
        for r in d["volumes"]:
            t.add_row(
                r["path"], fmt(r["total"]), fmt(r["used"]), fmt(r["available"]), f"{r['capacity_pct']}%"
            )
            t.add_row(
                r["path"] + ".snapshot",
                fmt(r["snap_reserve"]),
                fmt(r["snap_used"]),
                fmt(r["snap_available"]),
                f"{r['snap_capacity_pct']}%",
            )
    console().print(t)
    p = d["pool"]
    line = f"pool: {format_size(p['used'])} used, {format_size(p['free'])} free"
    if savings and "logical" in p:
        line += (
            f"; {format_size(p['logical'])} logical, saved {format_size(p['saved_clones'])} by clones/snapshots"
            f" and {format_size(p['saved_dedup'])} by dedup"
        )
    typer.echo(line)
